/* lora.h — LoRA adapters (Hu et al. 2021) on the linears of the general block,
 * saved and loaded in PEFT's directory format (DESIGN.md §3).
 *
 * Each adapted linear W (OC, C) of the block (qkv, attn_proj, fc, fc_proj)
 * gets A (r, C) and B (OC, r):
 *
 *   y = x W^T + b + (alpha / r) · (x A^T) B^T
 *
 * A starts as PEFT's default, kaiming_uniform_(a = sqrt(5)) = U(-1/sqrt(C), 1/sqrt(C)),
 * and B at zero, so an attached adapter starts as the identity. The base is
 * FROZEN while an adapter is attached: its gradient array is freed and never
 * computed (the block's gradient views are NULL, so the linears skip dW and
 * db and pass only d input on). The adapters live in an allocation of their
 * own (parameters and gradients), and lm_model_trainable (model.h) returns
 * that table: the optimiser, clipping and optimizer.safetensors cover only it.
 * A task head that starts untrained (classify, scalar, tokens, qa) is trained
 * along, as a copy in the same allocation (PEFT's modules_to_save); the LM
 * head is not.
 *
 * On disk (PEFT): DIR/adapter_config.json (peft_type "LORA", r, lora_alpha,
 * target_modules, ...) and DIR/adapter_model.safetensors with
 *   base_model.model.<HF module>.lora_A.weight  (r, in)
 *   base_model.model.<HF module>.lora_B.weight  (out, r)
 * where the HF module is the family's Hugging Face name of the linear
 * (GPT-2: transformer.h.0.attn.c_attn), and base_model.model.<HF name> for a
 * trained head (GPT-2: score.weight). A linear lmkit fuses but HF stores as
 * several modules (Llama's q_proj/k_proj/v_proj and gate_proj/up_proj, BERT's
 * query/key/value) gets one adapter per module, each on its rows of the fused
 * matrix, so PEFT's adapters of those families load and save unchanged, with
 * any subset of the modules (PEFT's Llama default is q_proj and v_proj).
 * Shared layers (ALBERT) are refused.
 *
 * Inference (src/infer) runs the base's own kernels: lm_lora_merge the
 * adapter first (lmkit generate --adapter does). */
#ifndef LM_MODEL_LORA_H
#define LM_MODEL_LORA_H

#include <stdint.h>
#include "lmkit.h"
#include "model/model.h"

/* Which linears of every block get an adapter. */
typedef enum {
  LM_LORA_ALL_LINEAR = 0,   /* qkv, attn_proj, fc, fc_proj */
  LM_LORA_ATTN,             /* qkv, attn_proj */
  LM_LORA_MLP,              /* fc, fc_proj */
} lm_lora_targets;

typedef struct {
  int64_t rank;             /* r >= 1 */
  float alpha;              /* lora_alpha: the update is scaled by alpha / r */
  lm_lora_targets targets;
  uint64_t seed;            /* A's initialisation */
  const char *base_model;   /* adapter_config.json base_model_name_or_path (NULL: none) */
} lm_lora_opts;

/* "all-linear" | "attn" | "mlp" -> *out; an error naming the value otherwise. */
lm_status lm_lora_targets_parse(const char *s, lm_lora_targets *out);
const char *lm_lora_targets_name(lm_lora_targets t);

/* Attaches a new adapter to m (none may be attached): the base is frozen from here on. Call
 * before lm_model_reserve (an existing reservation is redone). */
lm_status lm_lora_attach(lm_model *m, const lm_lora_opts *o);
/* Attaches the PEFT adapter in dir (adapter_config.json + adapter_model.safetensors) to m, whose
 * shapes it must fit: every module target_modules names must have its lora_A/lora_B, and the file
 * holds nothing else but the trained head. Errors name the file and field or tensor. */
lm_status lm_lora_load(lm_model *m, const char *dir);
/* Writes the attached adapter to dir as PEFT does (each file atomically). */
lm_status lm_lora_save(const lm_model *m, const char *dir);
/* Folds the adapter into the base, W += (alpha / r) · B A (and a trained head's copy back into
 * the model), then detaches it: m is a plain model again. */
lm_status lm_lora_merge(lm_model *m);
/* Removes the adapter without merging (the base is unchanged); no-op without one. */
void lm_lora_detach(lm_model *m);
/* Switches the adapters off (0) or on (1) in the forward pass: off, the model computes its frozen
 * base (DPO's reference policy). Backward needs them on. */
void lm_lora_enable(lm_model *m, int on);
int lm_lora_attached(const lm_model *m);
/* The attached adapter's r, alpha, and the number of its trainable values (0, 0, 0 without). */
void lm_lora_info(const lm_model *m, int64_t *rank, float *alpha, int64_t *n_params);

/* dir/adapter_config.json's base_model_name_or_path, malloc'ed (an error when absent). */
lm_status lm_lora_base_model(const char *dir, char **path);
/* dir holds a PEFT adapter (adapter_config.json)? */
int lm_lora_is_adapter_dir(const char *dir);

/* internal (model.c): the activations for batches of B x T, and a head tensor trained as a copy */
lm_status lm_lora_reserve(lm_model *m, int64_t B, int64_t T);
float *lm_lora_head_tensor(const lm_model *m, const char *name, int grad);

#endif
