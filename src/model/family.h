/* family.h — the interface every model family fills (DESIGN.md §3).
 *
 * A family (GPT-2, BERT, ...) is one file in src/model/families/ that fills
 * one lm_family and one line in the registry (family.c). It says:
 *   - who it is to Hugging Face: config.json's model_type and the
 *     architectures class of each head it supports;
 *   - its config keys: defaults, parse, validate, write (config.c holds the
 *     typed getters and the writer they use, config_io.h);
 *   - the tensors it adds around the general blocks (embeddings, ...) and how
 *     they are initialised;
 *   - its embeddings: ids in, (N,C) block input out, forward and backward;
 *   - the map between our tensor names and Hugging Face's, both ways,
 *     including fused or transposed layouts;
 *   - its properties: causal or not, how sequence heads pool, which heads
 *     carry biases.
 * The generic code (model.c, heads.c, hf.c, the trainer, objectives,
 * inference, the CLI) never tests which family it runs: it asks this. */
#ifndef LM_MODEL_FAMILY_H
#define LM_MODEL_FAMILY_H

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>
#include "lmkit.h"
#include "base/base.h"

typedef struct lm_model lm_model;
typedef struct lm_batch lm_batch;
typedef struct lm_param_table lm_param_table;
typedef struct lm_cfg_writer lm_cfg_writer;
struct cJSON;

/* Adds a tensor to the parameter table; 2-D when d1 > 0. decay: AdamW weight decay applies. */
int lm_table_add(lm_param_table *t, const char *name, int64_t d0, int64_t d1, int decay);

/* How sequence heads (classify, scalar) reduce (B,T,C) to (B,C). */
typedef enum {
  LM_POOL_FIRST = 0,   /* the first token through a tanh pooler (BERT's [CLS]); inputs are [CLS] text [SEP] */
  LM_POOL_LAST,        /* the last non-pad token, as HF's *ForSequenceClassification of decoders */
} lm_pool_kind;

/* One Hugging Face class of the family and the head it carries. */
typedef struct {
  int head;              /* lm_head_kind */
  const char *hf_class;  /* architectures[0], e.g. "GPT2ForSequenceClassification" */
  int headless;          /* the class has no head tensors (BertModel): they are initialised on load */
} lm_family_class;

/* Where a tensor lives in a Hugging Face file. */
typedef struct {
  char name[160];        /* HF name, without the base prefix when base = 1 */
  int base;              /* 1: under the base model's prefix (transformer., bert.) in task classes */
  int parts;             /* the tensor is stored as this many row blocks (q, k, v: 3), each its own name: */
  const char *const *part_names;  /* name is a format with one %s, filled with these (NULL: query, key, value) */
  int64_t part_rows[4];  /* rows of each part (all 0: equal parts) */
  int transpose;         /* stored (in, out): GPT-2's Conv1D */
} lm_hf_tensor;

typedef struct lm_family {
  const char *model_type;          /* config.json model_type */
  lm_arch arch;
  const char *class_prefix;        /* classes start with it: finds the family of old configs without model_type */
  const lm_family_class *classes;  /* the first entry of a head is the class saved for it */
  int n_classes;
  const char *base_prefix;         /* "transformer.", "bert.": the base model inside task classes */

  /* properties */
  lm_pool_kind pool;               /* sequence heads' pooling */
  int seq_head_bias;               /* classify/scalar output layer has a bias (BERT) or not (GPT-2's score) */
  int head_dropout;                /* its classify/scalar/tokens heads drop their input (BERT's classifier_dropout) */
  int hidden_dropout;              /* it drops embeddings and residual branches (GPT-2, BERT), not only attention (Llama) */
  int act_dropout;                 /* it drops the FFN's activation at act_pdrop (T5, BART's activation_dropout) */
  int final_dropout;               /* it drops each stack's final-norm output at resid_pdrop (T5) */

  /* config.json */
  void (*defaults)(lm_config *c);                                  /* HF's defaults for the family */
  lm_status (*parse)(const struct cJSON *root, lm_config *c, const char *path);
  lm_status (*validate)(const lm_config *c, const char *path);     /* family-only checks; may be NULL */
  void (*write)(lm_cfg_writer *w, const lm_config *c);             /* every key, sorted as transformers writes */
  struct { const char *vocab, *pos, *embd, *layer, *head, *inner, *eps, *init; const char *drop[3]; } keys;
                                   /* HF's keys, for messages; drop: those of embd_pdrop, attn_pdrop, resid_pdrop */

  /* tensors: add_embeddings before the blocks, add_final after them (heads add their own) */
  int (*add_embeddings)(const lm_config *c, lm_param_table *t);
  int (*add_final)(const lm_config *c, lm_param_table *t);         /* may be NULL */
  float (*init_std)(const lm_config *c, const char *name);         /* N(0, std) of a tensor; NAN: default */
  void (*init_done)(lm_model *m);                                  /* after initialisation; may be NULL */

  /* embeddings. reserve sizes the family's activations (may be NULL); forward writes the block
   * input emb (N,C) for a batch and keeps what backward needs; backward ACCUMULATES the tables'
   * gradients from demb (N,C), which it may clobber. embed_tokens is the inference form: no
   * state, explicit positions. check validates the family's part of a batch (may be NULL). */
  lm_status (*reserve)(lm_model *m, int64_t B, int64_t T, int need_grads);
  void (*free_state)(lm_model *m);
  lm_status (*check)(const lm_model *m, const lm_batch *b);
  void (*embed_forward)(lm_model *m, const lm_batch *b, float *emb);
  void (*embed_backward)(lm_model *m, const lm_batch *b, float *demb);
  void (*embed_tokens)(const lm_model *m, const int32_t *ids, const int32_t *pos, int64_t n, float *out);
  /* encoder-decoders: the encoder's embeddings of b->enc_ids (B*S,C), forward and backward (ACCUMULATES) */
  void (*enc_embed_forward)(lm_model *m, const lm_batch *b, float *emb);
  void (*enc_embed_backward)(lm_model *m, const lm_batch *b, float *demb);
  /* the encoder's embeddings of n ids at positions 0..n-1 for inference (no state), or NULL:
   * enc_embed_forward needs none (T5) */
  void (*enc_embed_tokens)(const lm_model *m, const int32_t *ids, int64_t n, float *out);
  /* a tied LM head reads the hidden states times n_embd^-0.5 (T5) */
  int tied_head_rescale;
  /* the pre-training objective `lmkit train` uses for it by default (encoder-decoders: T5's
   * span-corruption, BART's denoise), or NULL: the head's own (clm, mlm+nsp) */
  const char *objective;

  /* Hugging Face tensor names: ours -> HF (0, or -1 when the family has no name for it);
   * layer >= 0 overrides the layer index (shared layers are written once per layer). */
  int (*hf_name)(const lm_config *c, const char *ours, int64_t layer, lm_hf_tensor *out);
  /* a tensor in a file that is not one of ours but is expected there (buffers, other heads,
   * copies of tied weights); name is without the base prefix */
  int (*hf_ignore)(const lm_config *c, const char *name);
  /* an alternative spelling of an HF name to try on load (TF-era gamma/beta), or 0 */
  int (*hf_alias)(const char *hf, char *out, size_t n);

  /* The models transformers replaced (src/model/classic/). own_body: no general blocks (n_layer = 0);
   * embed_forward / embed_backward run the family's whole body, ids -> the head's input (N,C).
   * logits_body: that input already is the next-token log-probabilities (N,V) (C = V), which the LM
   * head takes as its logits, with no tensors of its own (the n-gram). */
  int own_body, logits_body;
  /* Decoding with a per-sequence state instead of a KV cache (O(1) per token: a recurrent state, an
   * n-gram's last tokens); NULL: the KV cache. state_new: a fresh state (nothing read yet);
   * state_feed: reads n tokens and writes the next token's logits (V) after the last. */
  lm_status (*state_new)(const lm_model *m, void **state);
  void (*state_reset)(const lm_model *m, void *state);
  void (*state_free)(void *state);
  lm_status (*state_feed)(const lm_model *m, void *state, const int32_t *ids, int64_t n, float *logits);
  /* Models fitted by counting, not by gradients (the n-gram): fit builds the model from a token stream
   * (`lmkit train` calls it instead of the trainer). save_extra / load_extra write and read what is not
   * a tensor, beside model.safetensors. NULL: none. */
  lm_status (*fit)(lm_model *m, const uint32_t *ids, size_t n);
  lm_status (*save_extra)(const lm_model *m, const char *dir);
  lm_status (*load_extra)(lm_model *m, const char *dir);
  /* `lmkit info`: the family's own description instead of the transformer's lines; NULL: those */
  void (*describe)(const lm_model *m, FILE *out);
} lm_family;

/* ---- the registry (family.c) */
const lm_family *lm_family_of(const lm_config *c);            /* by c->arch; NULL if none */
const lm_family *lm_family_by_type(const char *model_type);   /* NULL if unknown */
const lm_family *lm_family_by_class(const char *hf_class);    /* by class_prefix; NULL if none */
int lm_family_count(void);
const lm_family *lm_family_at(int i);
/* "gpt2, bert": for messages */
const char *lm_family_list(void);

/* The family's class for a head (NULL if it has none) and the head of a class (-1: not the family's). */
const char *lm_family_class_for(const lm_family *f, int head);
int lm_family_head_of(const lm_family *f, const char *hf_class, int *headless);
/* "GPT2LMHeadModel, GPT2ForSequenceClassification, ...": for messages */
void lm_family_class_list(const lm_family *f, char *out, size_t n);

#endif
