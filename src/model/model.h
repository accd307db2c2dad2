/* model.h — the transformer inside lmkit: family → blocks → head.
 *
 *   ids ──family embeddings──► emb (N,C) ──L general blocks──► [final norm] ──► hidden (N,C) ──head──► loss
 *
 * The family (family.h, families/) supplies the embeddings, its tensors and
 * its Hugging Face names; the blocks are the one general block (block.h); the
 * head (heads.h) turns hidden states into logits and a loss. model.c wires
 * them together and never asks which family or head it runs.
 *
 * Memory: params, grads (and the optimiser's moments, in src/train) are each
 * one allocation of n_params floats, indexed by the parameter table below.
 * Activations live in arenas sized from (config, B, T) by lm_model_reserve();
 * nothing is allocated inside a training step.
 *
 * Training step: lm_model_reserve once for the largest (B, T), then per step
 * lm_model_zero_grad, lm_forward, lm_backward (accumulates into m->grads).
 * lm_forward validates the batch (lm_batch_check) and returns NAN, with
 * lm_last_error() set, for a bad one; lm_backward after such a forward does
 * nothing. */
#ifndef LM_MODEL_H
#define LM_MODEL_H

#include <stddef.h>
#include <stdint.h>
#include "lmkit.h"
#include "model/block.h"
#include "model/family.h"
#include "base/base.h"

#define LM_MAX_NAME 96

typedef struct {
  char name[LM_MAX_NAME];   /* internal name, e.g. "h.3.attn.c_attn.weight" */
  int ndim;
  int64_t shape[2];         /* internal layout: linear weights are (out, in) */
  size_t offset, numel;     /* into the flat parameter array, in floats */
  int decay;                /* AdamW weight decay applies (linear weights only) */
} lm_param_info;

/* One batch, for every family and head; fields a head does not use stay NULL. */
struct lm_batch {
  const int32_t *ids;       /* (B,T) */
  const int32_t *segments;  /* (B,T) token type ids, or NULL (all 0; families with segments) */
  const uint8_t *mask;      /* (B,T) 1 = real token, 0 = padding; NULL = all real */
  /* (B,T) packing (causal models): where each token's example begins in its row. Positions restart
   * there and attention stays inside the example (block-diagonal). NULL: one example per row. */
  const int32_t *starts;
  const int32_t *targets;   /* LM head: (B,T) next-token ids, -1 = no loss; NULL = no loss */
  const int32_t *mlm_labels;/* (B,T) target id or -1; NULL = no MLM loss (pretrain, mlm heads) */
  const int32_t *nsp_labels;/* (B) 0 = is next, 1 = random, -1 = none; NULL = no NSP loss (pretrain head) */
  const int32_t *labels;    /* classify: (B); tokens: (B,T) with -1 ignored; qa: (B,2) start,end (-1: none); or NULL */
  const float *values;      /* scalar head: (B) regression targets, loss = mean squared error; or NULL */
  /* Encoder-decoders (cfg.n_enc_layer > 0): the encoder's input enc_ids (B,S) and its padding mask
   * enc_mask (B,S) (1 = real; NULL = all real). ids (B,T) are then the decoder's input (the labels
   * shifted right after decoder_start_token_id) and targets the labels. */
  const int32_t *enc_ids;
  const uint8_t *enc_mask;
  int64_t S;
  /* The caller's own loss (reward, DPO, PPO...): d loss / d head output, shaped as lm_head_output
   * (scalar (B), classify (B,L), LM (N,V), ...). When set, lm_backward starts from it instead of
   * the head's loss. For the LM head it may be the logits buffer itself (lm_model_logits),
   * overwritten in place, which saves an (N,V) buffer. */
  const float *dout;
  int64_t B, T;
  /* Token losses (LM targets, MLM labels) are the mean over the batch's labelled tokens; when
   * loss_count > 0 they are the sum divided by loss_count instead. A data-parallel rank training
   * on its share of a job's batch sets it to the job's count / ranks, so that the ranks' mean is
   * the job's mean (objectives/share.c). 0: the batch's own count. */
  float loss_count;
  /* NEFTune (training only): uniform noise of magnitude alpha / sqrt(T * C) added to the
   * embeddings, drawn from noise_rng. 0: none. */
  float neftune_alpha;
  lm_rng *noise_rng;
  /* Knowledge distillation (DistilBERT; pretrain and mlm heads). With mlm_soft_targets non-NULL
   * the MLM part of the loss becomes
   *   distill_alpha_ce * tau^2 * mean over the M rows of KL(p || softmax(z / tau))
   *   + distill_alpha_mlm * (MLM cross-entropy mean over the labels)          [+ NSP mean]
   * where z (M,V) are the MLM logits, tau = distill_temperature (> 0) and p = mlm_soft_targets
   * (M,V): the teacher's softmax(z_teacher / tau) at the rows of lm_model_mlm_rows (the positions
   * with an MLM label, in order; all B*T without labels). The tau^2 keeps the gradient of the
   * soft term at the scale of the hard one as tau grows (Hinton et al. 2015). */
  const float *mlm_soft_targets;
  float distill_alpha_ce, distill_alpha_mlm, distill_temperature;
};

typedef struct {
  float *wte;                    /* (V, C) token embedding (every family) */
  float *wpe;                    /* (maxT, C) learned positions, or NULL */
  lm_block_weights *h;           /* (L) */
  float *lnf_w, *lnf_b;          /* (C) final norm (pre-LN models) */
  /* encoder-decoders: the encoder's blocks (n_enc_layer) and final norm; relative position bias
   * tables (rel_buckets, NH) of the decoder and the encoder, or NULL */
  lm_block_weights *enc_h;
  float *enc_lnf_w, *enc_lnf_b;
  float *rel_bias, *enc_rel_bias;
} lm_weights;

typedef struct {
  int64_t B, T;                  /* sizes the arena was built for */
  float *arena; size_t arena_floats;
  float *emb;                    /* (N,C) embedding output = layer 0 input */
  lm_layer_acts *layer;          /* (L) */
  float *lnf, *lnf_mean, *lnf_rstd; /* (N,C), (N), (N) */
  float *dres_a, *dres_b;        /* (N,C) backward: d(residual stream) and scratch */
  lm_block_scratch scratch;      /* backward workspace shared by the blocks */
  int32_t *pos;                  /* (N) position ids t of row b*T + t */
  uint64_t *drop_bits;           /* every dropout mask (the layers' drop_* and drop_emb point into it), or NULL */
  uint64_t *drop_emb;            /* (N,C) bits: the embeddings' dropout mask, or NULL */
  /* encoder-decoders: the encoder's embeddings' mask (B*S,C) and, where the family drops the final
   * norms' outputs (T5), those of the decoder (N,C) and of the encoder (B*S,C); else NULL */
  uint64_t *drop_enc_emb, *drop_lnf, *drop_enc_out;
  int dropped;                   /* the last forward drew and applied dropout masks */
  int ckpt;                      /* activation checkpointing: layers > 0 share layer 0's buffers but res2 */
  /* encoder-decoders (model.c reserve_encdec), in an arena of their own: the encoder's embeddings,
   * layers and output enc_out (B*S,C) with its norm statistics; denc (B*S,C) its gradient; the
   * relative position biases (NH, 2T-1) of the decoder and (NH, 2S-1) of the encoder and their
   * gradients */
  float *ed_arena;
  float *enc_emb, *enc_out, *enc_mean, *enc_rstd, *denc;
  lm_layer_acts *enc_layer;
  float *bias, *dbias, *enc_bias, *enc_dbias;
} lm_acts;

struct lm_model {
  lm_config cfg;
  const lm_family *fam;
  lm_param_info *info; int n_info;
  size_t n_params;
  float *params;                 /* (n_params) */
  float *grads;                  /* (n_params), allocated by lm_model_reserve(..., need_grads) */
  lm_weights w, g;               /* views into params and grads */
  float *rope;                   /* (n_positions, hs) RoPE cos|sin table (lm_rope_table), or NULL */
  /* Linears kept quantized for inference (Q8_0/Q4_0 blocks of a GGUF file, gguf_model.c), or NULL:
   * every linear is f32. LM_QL_PER_LAYER entries per layer (LM_QL_*), then the LM head; an entry
   * whose data is NULL stays f32. params hold the same weights dequantized, for everything else;
   * reserving gradients drops the blocks (training changes the f32 weights). */
  struct lm_qmat *qlin;
  /* Inference-only (lm_gguf_model_load with qonly; generate, chat, serve, ask): the tensors kept in
   * qlin have no f32 values. params is then an address range of params_map bytes reserved without
   * memory (lm_model_alloc_qonly) in which only the other tensors are readable (lm_model_keep), so a
   * stray read of an absent weight faults instead of returning zeros; lm_model_reserve, saving,
   * export and LoRA refuse such a model. qlin then has one more entry, the token embedding
   * (LM_QL_EMB(m); for tied embeddings the head's entry serves), looked up row by row. */
  int qonly;
  size_t params_map;
  lm_acts acts;
  int have_acts;
  void *fam_state;               /* the family's activations (family.h reserve/free_state) */
  void *head_state;              /* the head's activations (heads.c) */
  const float *hidden;           /* (B,T,C) the head's input in the last forward */
  char **label_names;            /* (num_labels) id2label of a loaded classifier, kept for saving; or NULL */
  int ok;                        /* the last forward succeeded: backward may run */
  struct lm_lora *lora;          /* the attached LoRA adapter (lora.h) or NULL; while attached the base is frozen */
  lm_rng *dropout_rng;           /* training mode: dropout masks are drawn from it (lm_model_set_training) */
  int dropout_off;               /* dropout disabled for this run whatever the config says (DPO, reward) */
  int checkpoint;                /* recompute each block's activations in backward (lm_model_set_checkpointing) */
  struct lm_mm *mm;              /* the linears' product engine (kernels/mm.h): NULL = fp32, else bf16 */
  /* optional: called by lm_backward after each block of the (decoder) stack "h.N" is done, in
   * reverse layer order, so that data parallelism (src/train/dist.c) starts reducing that block's
   * gradients while the rest of backward runs; NULL: nothing */
  void (*on_block_grads)(void *user, int64_t layer);
  void *on_block_grads_user;
};

/* Training mode: forward passes draw dropout masks from rng (the trainer's, checkpointed, so a resumed
 * run draws the same masks); NULL: evaluation mode, no dropout. Only a forward with gradients
 * reserved (lm_model_reserve need_grads) drops. */
void lm_model_set_training(lm_model *m, lm_rng *rng);

/* Activation checkpointing for the next lm_model_reserve with gradients: each block keeps only its
 * output; backward runs the block's forward again (same inputs, masks and kernels: the same bits)
 * before its backward, so activation memory is one block's plus (N,C) per layer. Gradients are
 * bit-identical to the plain path; a backward costs one more forward. */
void lm_model_set_checkpointing(lm_model *m, int on);

/* The precision of the linears' products (lm_precision, include/lmkit.h): bf16 gives the model a
 * oneDNN engine (kernels/mm.h) that keeps a bf16 copy of each weight, rounded once and reused until
 * lm_model_weights_changed (the trainer calls it after each optimiser step). LM_ERR_UNSUPPORTED,
 * the model staying fp32, when the CPU has no bf16 products. */
lm_status lm_model_set_precision(lm_model *m, int precision);
void lm_model_weights_changed(lm_model *m);

/* The parameters an optimiser trains: the LoRA adapter's own table when one is attached (the base
 * is frozen and has no gradients), else every parameter of the model. grads is NULL until
 * lm_model_reserve(..., need_grads = 1). Offsets in info index params and grads. */
typedef struct {
  const lm_param_info *info; int n_info;
  size_t n_params;
  float *params, *grads;
} lm_trainable;
lm_trainable lm_model_trainable(const lm_model *m);   /* src/model/lora.c */
/* A tensor's values (grad = 0) or gradient (grad = 1) by internal name, wherever it lives (a head
 * that a LoRA adapter trains lives in the adapter's allocation); NULL when absent or not trained. */
float *lm_model_param(const lm_model *m, const char *name, int grad);

/* Builds the parameter table for cfg and allocates params (zeroed). */
lm_status lm_model_alloc(lm_model **out, const lm_config *cfg);
/* Initialisation: norms 1, biases 0, every other tensor N(0, std) with std from the family
 * (GPT-2: residual projections / sqrt(2 L), positions 0.01), then the family's own touches. */
void lm_model_init_weights(lm_model *m, uint64_t seed);
/* One tensor as lm_model_init_weights would draw it (a head the loaded file lacks). */
void lm_model_init_tensor(lm_model *m, const lm_param_info *p, lm_rng *r);
const lm_param_info *lm_model_find_param(const lm_model *m, const char *name);
enum { LM_QL_QKV, LM_QL_ATTN_PROJ, LM_QL_FC, LM_QL_FC_PROJ, LM_QL_PER_LAYER };
#define LM_QL_HEAD(m) (LM_QL_PER_LAYER * (m)->cfg.n_layer)        /* the LM head's qlin entry */
#define LM_QL_EMB(m) (LM_QL_PER_LAYER * (m)->cfg.n_layer + 1)     /* the token embedding's (qonly models) */
#define LM_QL_COUNT(m) (LM_QL_PER_LAYER * (m)->cfg.n_layer + 2)   /* entries of qlin */
void lm_model_drop_quant(lm_model *m);   /* frees qlin */
/* As lm_model_alloc, but params is reserved address space (model.h qonly); lm_model_keep makes a
 * tensor's values real, zeroed memory. */
lm_status lm_model_alloc_qonly(lm_model **out, const lm_config *cfg);
lm_status lm_model_keep(lm_model *m, const lm_param_info *p);
/* out (n,C) = the token embedding's rows ids (n): f32 rows, or quantized rows dequantized (qonly) */
void lm_model_embed_rows(const lm_model *m, const int32_t *ids, int64_t n, float *out);
/* an error naming `what` when m is inference-only (qonly), else LM_OK */
lm_status lm_model_check_f32(const lm_model *m, const char *what);
float *lm_model_tensor(const lm_model *m, const float *base, const char *name);   /* base + offset, or NULL */
/* Sizes the activations for batches of up to B sequences of up to T tokens (T <= n_positions). */
lm_status lm_model_reserve(lm_model *m, int64_t B, int64_t T, int need_grads);
void lm_model_zero_grad(lm_model *m);

/* Every id, segment and label in range and the batch fits the reserved sizes; errors name the field. */
lm_status lm_batch_check(const lm_model *m, const lm_batch *b);
/* Forward; returns the head's loss (NAN when the batch has no labels, or is bad). For the
 * pretrain head *aux_a / *aux_b (either may be NULL) receive the MLM and NSP means (NAN when
 * absent); other heads set them to NAN. Keeps activations for backward. */
float lm_forward(lm_model *m, const lm_batch *b, float *aux_a, float *aux_b);
/* Backward of the loss of the last forward (same batch), or of b->dout; ACCUMULATES into m->grads. */
void lm_backward(lm_model *m, const lm_batch *b);

/* The LM-head shorthand: ids (B,T), targets (B,T) or NULL, key_mask (B,T) or NULL.
 * Returns the mean loss over targets >= 0 (NaN if there are none). */
float lm_model_forward(lm_model *m, const int32_t *ids, const int32_t *targets, const uint8_t *key_mask,
                       int64_t B, int64_t T);
void lm_model_backward(lm_model *m, const int32_t *ids, const int32_t *targets, const uint8_t *key_mask,
                       int64_t B, int64_t T);

/* Loads the directory with another head (a pre-trained model for fine-tuning): the base
 * model's tensors are loaded; the head's only when the directory has that very head (and,
 * num_labels > 0, as many labels), else initialised with `seed`. num_labels <= 0 keeps the
 * config's. lm_model_load (lmkit.h) loads the head config.json names. */
lm_status lm_model_load_head(lm_model **out, const char *dir, int head, int64_t num_labels, uint64_t seed);

#endif
