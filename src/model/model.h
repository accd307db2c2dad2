/* model.h — the transformer model inside lmkit: a parameter table over one
 * contiguous allocation, the general block of DESIGN.md §3, and the decoder
 * forward/backward used for training and evaluation.
 *
 * Memory: params, grads (and the optimiser's moments, in src/train) are each
 * one allocation of n_params floats, indexed by the table below. Activations
 * live in one arena sized from (config, B, T) by lm_model_reserve(); nothing
 * is allocated inside a training step. */
#ifndef LM_MODEL_H
#define LM_MODEL_H

#include <stddef.h>
#include <stdint.h>
#include "lmkit.h"

#define LM_MAX_NAME 96

typedef struct {
  char name[LM_MAX_NAME];   /* internal name, e.g. "h.3.attn.c_attn.weight" */
  int ndim;
  int64_t shape[2];         /* internal layout: linear weights are (out, in) */
  size_t offset, numel;     /* into the flat parameter array, in floats */
  int decay;                /* AdamW weight decay applies (linear weights only) */
} lm_param_info;

/* Pointers into a flat parameter (or gradient) array; NULL where the config has no such tensor. */
typedef struct {
  float *ln1_w, *ln1_b;          /* (C) */
  float *qkv_w, *qkv_b;          /* (3C, C), (3C) */
  float *attn_proj_w, *attn_proj_b; /* (C, C), (C) */
  float *ln2_w, *ln2_b;          /* (C) */
  float *fc_w, *fc_b;            /* (F, C), (F) */
  float *fc_proj_w, *fc_proj_b;  /* (C, F), (C) */
} lm_block_weights;

typedef struct {
  float *wte;                    /* (V, C) token embedding (tied LM head) */
  float *wpe;                    /* (maxT, C) learned positions */
  lm_block_weights *h;           /* (L) */
  float *lnf_w, *lnf_b;          /* (C) final norm (pre-LN models) */
  float *lm_head;                /* (V, C) when not tied, else NULL */
} lm_weights;

/* Per-layer saved activations for backward. Pre-LN:  a1 = LN1(x), res1 = x + attn(a1),
 * a2 = LN2(res1), res2 = res1 + mlp(a2).  Post-LN:  a1 = x + attn(x), res1 = LN1(a1),
 * a2 = res1 + mlp(res1), res2 = LN2(a2).  res2 is the layer output. */
typedef struct {
  float *a1, *res1, *a2, *res2;  /* (N,C) each */
  float *mean1, *rstd1, *mean2, *rstd2; /* (N) */
  float *qkv;                    /* (N,3C) */
  float *att;                    /* (B,NH,T,T) */
  float *atty;                   /* (N,C) */
  float *fch, *fch_act;          /* (N,F) */
} lm_layer_acts;

typedef struct {
  int64_t B, T;                  /* sizes the arena was built for */
  float *arena; size_t arena_floats;
  float *emb;                    /* (N,C) embedding output = layer 0 input */
  lm_layer_acts *layer;          /* (L) */
  float *lnf, *lnf_mean, *lnf_rstd; /* (N,C), (N), (N) */
  float *logits;                 /* (N,V); holds dlogits after backward */
  float *losses, *dlosses;       /* (N) */
  /* backward workspace, shared by layers */
  float *dres_a, *dres_b, *dtmp, *datty; /* (N,C) */
  float *dqkv;                   /* (N,3C) */
  float *dfch, *dfch_act;        /* (N,F) */
  float *datt;                   /* (B,NH,T,T) */
  int32_t *pos;                  /* (N) position ids */
} lm_acts;

struct lm_model {
  lm_config cfg;
  lm_param_info *info; int n_info;
  size_t n_params;
  float *params;                 /* (n_params) */
  float *grads;                  /* (n_params), allocated by lm_model_reserve(..., need_grads) */
  lm_weights w, g;               /* views into params and grads */
  lm_acts acts;
  int have_acts;
  void *ext;                     /* family-specific state (heads' activations...), freed by ext_free */
  void (*ext_free)(void *ext);
};

/* The general block (DESIGN.md §3), for family files that assemble their own model.
 * Forward: x (N,C) -> la->res2 (N,C); tmp (N,C) is scratch.
 * Backward: P (N,C) holds d(output) on entry and d(input) on return; Q (N,C) is scratch;
 * the acts' shared backward buffers (dtmp, datty, dqkv, dfch, dfch_act, datt) are used. */
void lm_block_forward(const lm_config *c, const lm_block_weights *w, lm_layer_acts *la, const float *x,
                      float *tmp, const uint8_t *key_mask, int64_t B, int64_t T);
void lm_block_backward(const lm_config *c, const lm_block_weights *w, lm_block_weights *g,
                       const lm_layer_acts *la, lm_acts *a, const float *x, float *P, float *Q,
                       int64_t B, int64_t T);

/* Table hook: adds the BERT-only tensors (segment embeddings, embedding norm, and the tensors of
 * cfg->head: pooler + MLM + NSP, pooler + classifier, token classifier or QA span outputs) through
 * `add`; implemented in src/model/bert.c. Returns non-zero on failure. With cfg->share_layers the
 * table holds layer 0 only and every lm_block_weights view points at it (gradients sum). */
typedef int (*lm_table_add_fn)(void *table, const char *name, int64_t d0, int64_t d1, int decay);
int lm_bert_add_params(const lm_config *c, void *table, lm_table_add_fn add);

/* Builds the parameter table for cfg and allocates params (zeroed). */
lm_status lm_model_alloc(lm_model **out, const lm_config *cfg);
/* Family-aware initialisation: norms 1, biases 0, every other tensor N(0, init_std); GPT-2 scales
 * its residual projections by 1/sqrt(2 L) and draws positions with std 0.01; BERT does neither and
 * zeroes the padding token's embedding row (HF BertPreTrainedModel._init_weights). */
void lm_model_init_weights(lm_model *m, uint64_t seed);
const lm_param_info *lm_model_find_param(const lm_model *m, const char *name);
/* Sizes the activation arena for batches of B sequences of T tokens (T <= n_positions). */
lm_status lm_model_reserve(lm_model *m, int64_t B, int64_t T, int need_grads);

/* Forward over ids (B,T). key_mask (B,T) or NULL. If targets (B,T) is non-NULL, computes the
 * per-token losses and returns the mean over targets >= 0 (NaN if there are none). */
float lm_model_forward(lm_model *m, const int32_t *ids, const int32_t *targets, const uint8_t *key_mask,
                       int64_t B, int64_t T);
/* Backward of the mean loss of the last forward; ACCUMULATES into m->grads. */
void lm_model_backward(lm_model *m, const int32_t *ids, const int32_t *targets, const uint8_t *key_mask,
                       int64_t B, int64_t T);
void lm_model_zero_grad(lm_model *m);

/* GPT-2 family (src/model/gpt.c): Hugging Face names and layouts. */
lm_status lm_gpt2_load(lm_model **out, const char *dir);
lm_status lm_gpt2_save(const lm_model *m, const char *dir);

#endif
