/* gpt2.c — the GPT-2 family: a causal decoder, pre-LN, learned absolute
 * positions, GELU (tanh), tied LM head.
 *
 *   emb = wte[ids] + wpe[t]                                       // (N,C)
 *
 * Hugging Face names are our internal ones under "transformer." (our names
 * follow GPT-2's), except that GPT-2 uses Conv1D, whose weights are stored
 * (in, out) — the transpose of our nn.Linear-style (out, in). HF saves
 * GPT2LMHeadModel with a "transformer." prefix and no lm_head when tied,
 * while the original hub checkpoints have no prefix and carry attention-mask
 * buffers ("h.N.attn.bias", "h.N.attn.masked_bias") that are not parameters.
 * Sequence heads pool the last non-pad token and GPT2ForSequenceClassification's
 * "score" has no bias. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "kernels/kernels.h"
#include "model/config_io.h"
#include "model/model.h"

static const lm_family_class classes[] = {
    {LM_HEAD_LM, "GPT2LMHeadModel", 0},
    {LM_HEAD_CLASSIFY, "GPT2ForSequenceClassification", 0},
    {LM_HEAD_SCALAR, "GPT2ForSequenceClassification", 0},
    {LM_HEAD_TOKENS, "GPT2ForTokenClassification", 0},
    {LM_HEAD_QA, "GPT2ForQuestionAnswering", 0},
    {LM_HEAD_LM, "GPT2Model", 0},   /* tied: the LM head has no tensors of its own */
};

static void defaults(lm_config *c) {   /* GPT2Config(): GPT-2 small */
  c->bos_token_id = c->eos_token_id = 50256;
}

static lm_status parse(const cJSON *r, lm_config *c, const char *p) {
  lm_status st;
  int64_t n_ctx = -1;
  int scale = 1, inv_layer = 0;
  c->embd_pdrop = c->attn_pdrop = c->resid_pdrop = 0.1f;   /* GPT2Config's, for a file without the keys */
  if ((st = lm_cfg_int(r, "vocab_size", &c->vocab_size, 0, 0, p)) ||
      (st = lm_cfg_int(r, "n_ctx", &n_ctx, 0, 0, p)) ||
      (st = lm_cfg_int(r, "n_positions", &c->n_positions, 0, 0, p)) ||
      (st = lm_cfg_int(r, "n_embd", &c->n_embd, 0, 0, p)) ||
      (st = lm_cfg_int(r, "n_layer", &c->n_layer, 0, 0, p)) ||
      (st = lm_cfg_int(r, "n_head", &c->n_head, 0, 0, p)) ||
      (st = lm_cfg_int(r, "n_inner", &c->n_inner, 1, 0, p)) ||
      (st = lm_cfg_act(r, "activation_function", &c->act, p)) ||
      (st = lm_cfg_float(r, "layer_norm_epsilon", &c->norm_eps, p)) ||
      (st = lm_cfg_float(r, "initializer_range", &c->init_std, p)) ||
      (st = lm_cfg_float(r, "embd_pdrop", &c->embd_pdrop, p)) ||
      (st = lm_cfg_float(r, "attn_pdrop", &c->attn_pdrop, p)) ||
      (st = lm_cfg_float(r, "resid_pdrop", &c->resid_pdrop, p)) ||
      (st = lm_cfg_int(r, "bos_token_id", &c->bos_token_id, 1, -1, p)) ||
      (st = lm_cfg_int(r, "eos_token_id", &c->eos_token_id, 1, -1, p)) ||
      (st = lm_cfg_bool(r, "tie_word_embeddings", &c->tie_embeddings, p)) ||
      (st = lm_cfg_bool(r, "scale_attn_weights", &scale, p)) ||
      (st = lm_cfg_bool(r, "scale_attn_by_inverse_layer_idx", &inv_layer, p)))
    return st;
  /* n_ctx is the older name of n_positions; n_positions wins when both exist */
  if (n_ctx >= 0 && !cJSON_GetObjectItemCaseSensitive(r, "n_positions")) c->n_positions = n_ctx;
  if (!scale) return lm_error(LM_ERR_UNSUPPORTED, "%s: scale_attn_weights = false is not supported", p);
  if (inv_layer) return lm_error(LM_ERR_UNSUPPORTED, "%s: scale_attn_by_inverse_layer_idx = true is not supported", p);
  return LM_OK;
}

static void write(lm_cfg_writer *w, const lm_config *c) {   /* keys sorted, as transformers writes them */
  lm_cfgw_str(w, "activation_function", lm_cfg_act_name(c->act));
  lm_cfgw_architectures(w, c);
  lm_cfgw_float(w, "attn_pdrop", c->attn_pdrop);
  lm_cfgw_id(w, "bos_token_id", c->bos_token_id);
  lm_cfgw_float(w, "embd_pdrop", c->embd_pdrop);
  lm_cfgw_id(w, "eos_token_id", c->eos_token_id);
  lm_cfgw_id2label(w, c);
  lm_cfgw_float(w, "initializer_range", c->init_std);
  lm_cfgw_label2id(w, c);
  lm_cfgw_float(w, "layer_norm_epsilon", c->norm_eps);
  lm_cfgw_lmkit(w, c);
  lm_cfgw_str(w, "model_type", "gpt2");
  lm_cfgw_int(w, "n_ctx", c->n_positions);
  lm_cfgw_int(w, "n_embd", c->n_embd);
  lm_cfgw_int(w, "n_head", c->n_head);
  if (c->n_inner) lm_cfgw_int(w, "n_inner", c->n_inner); else lm_cfgw_raw(w, "n_inner", "null");
  lm_cfgw_int(w, "n_layer", c->n_layer);
  lm_cfgw_int(w, "n_positions", c->n_positions);
  if (c->pad_token_id >= 0) lm_cfgw_int(w, "pad_token_id", c->pad_token_id);
  lm_cfgw_bool(w, "reorder_and_upcast_attn", 0);
  lm_cfgw_float(w, "resid_pdrop", c->resid_pdrop);
  lm_cfgw_bool(w, "scale_attn_by_inverse_layer_idx", 0);
  lm_cfgw_bool(w, "scale_attn_weights", 1);
  lm_cfgw_bool(w, "tie_word_embeddings", c->tie_embeddings);
  lm_cfgw_str(w, "torch_dtype", "float32");
  lm_cfgw_str(w, "transformers_version", LM_CFG_TRANSFORMERS_VERSION);
  lm_cfgw_bool(w, "use_cache", 1);
  lm_cfgw_int(w, "vocab_size", c->vocab_size);
}

static int add_embeddings(const lm_config *c, lm_param_table *t) {
  return lm_table_add(t, "wte.weight", c->vocab_size, c->n_embd, 0) ||
         lm_table_add(t, "wpe.weight", c->n_positions, c->n_embd, 0);
}

/* GPT-2's initialisation: residual projections get std / sqrt(2 L) (they add into the residual
 * stream 2 L times), positions std 0.01 */
static float init_std(const lm_config *c, const char *name) {
  if (strstr(name, "c_proj.weight")) return c->init_std / sqrtf(2.0f * (float)c->n_layer);
  if (!strcmp(name, "wpe.weight")) return 0.01f;
  return NAN;
}

/* positions (N): t, or t - start of its example when examples are packed */
static const int32_t *positions(lm_model *m, const lm_batch *b) {
  int64_t B = b->B, T = b->T;
  int32_t *pos = m->acts.pos;
  for (int64_t i = 0; i < B; i++)
    for (int64_t t = 0; t < T; t++) pos[i * T + t] = (int32_t)(t - (b->starts ? b->starts[i * T + t] : 0));
  return pos;
}

static void embed_forward(lm_model *m, const lm_batch *b, float *emb) {
  int64_t N = b->B * b->T, C = m->cfg.n_embd;
  embedding_forward(emb, b->ids, m->w.wte, N, C, 0);                                      // (N,C)
  embedding_forward(emb, positions(m, b), m->w.wpe, N, C, 1);
}

static void embed_backward(lm_model *m, const lm_batch *b, float *demb) {
  int64_t N = b->B * b->T, C = m->cfg.n_embd;
  embedding_backward(m->g.wte, demb, b->ids, N, C);
  embedding_backward(m->g.wpe, demb, positions(m, b), N, C);
}

static void embed_tokens(const lm_model *m, const int32_t *ids, const int32_t *pos, int64_t n, float *out) {
  lm_model_embed_rows(m, ids, n, out);   /* f32 rows, or a quantized embedding's rows dequantized */
  embedding_forward(out, pos, m->w.wpe, n, m->cfg.n_embd, 1);
}

/* Conv1D weights: stored transposed in the HF file */
static int is_conv1d(const char *name) {
  return strstr(name, ".c_attn.weight") || strstr(name, ".c_proj.weight") || strstr(name, ".c_fc.weight");
}

static int hf_name(const lm_config *c, const char *ours, int64_t layer, lm_hf_tensor *o) {
  (void)c; (void)layer;
  static const struct { const char *ours, *hf; } heads[] = {
      {"lm_head.weight", "lm_head.weight"},       {"classifier.weight", "score.weight"},
      {"token_classifier.weight", "classifier.weight"}, {"token_classifier.bias", "classifier.bias"},
      {"qa_outputs.weight", "qa_outputs.weight"}, {"qa_outputs.bias", "qa_outputs.bias"},
  };
  memset(o, 0, sizeof *o);
  o->parts = 1;
  for (size_t i = 0; i < sizeof heads / sizeof *heads; i++)
    if (!strcmp(ours, heads[i].ours)) { snprintf(o->name, sizeof o->name, "%s", heads[i].hf); return 0; }
  if (strncmp(ours, "h.", 2) && strncmp(ours, "wte.", 4) && strncmp(ours, "wpe.", 4) && strncmp(ours, "ln_f.", 5))
    return -1;
  long long l;
  int k = 0;
  if (layer >= 0 && sscanf(ours, "h.%lld.%n", &l, &k) == 1 && k > 0)   /* shared layers: written once per layer */
    snprintf(o->name, sizeof o->name, "h.%lld.%s", (long long)layer, ours + k);
  else
    snprintf(o->name, sizeof o->name, "%s", ours);
  o->base = 1;
  o->transpose = is_conv1d(ours) != 0;
  return 0;
}

/* attention-mask buffers of hub checkpoints, and the head tensors of other GPT-2 classes */
static int hf_ignore(const lm_config *c, const char *name) {
  size_t n = strlen(name);
  if ((n > 10 && !strcmp(name + n - 10, ".attn.bias")) || strstr(name, ".attn.masked_bias")) return 1;
  if (!strcmp(name, "lm_head.weight")) return c->tie_embeddings || c->head != LM_HEAD_LM;
  long long l;
  if (c->share_layers && sscanf(name, "h.%lld.", &l) == 1 && l > 0 && l < c->n_layer) return 1;   /* copies of layer 0 */
  return !strncmp(name, "score.", 6) || !strncmp(name, "classifier.", 11) || !strncmp(name, "qa_outputs.", 11);
}

const lm_family lm_family_gpt2 = {
    .model_type = "gpt2", .arch = LM_ARCH_GPT2, .class_prefix = "GPT2",
    .classes = classes, .n_classes = sizeof classes / sizeof *classes,
    .base_prefix = "transformer.",
    .pool = LM_POOL_LAST, .seq_head_bias = 0, .hidden_dropout = 1,
    .defaults = defaults, .parse = parse, .write = write,
    .keys = {"vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "n_inner", "layer_norm_epsilon", "initializer_range",
             {"embd_pdrop", "attn_pdrop", "resid_pdrop"}},
    .add_embeddings = add_embeddings, .init_std = init_std,
    .embed_forward = embed_forward, .embed_backward = embed_backward, .embed_tokens = embed_tokens,
    .hf_name = hf_name, .hf_ignore = hf_ignore,
};
