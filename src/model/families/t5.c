/* t5.c — the T5 family (Raffel et al. 2020; HF T5ForConditionalGeneration):
 * an encoder-decoder of pre-RMSNorm blocks without biases, attention scores
 * not divided by sqrt(d), a relative position bias instead of positions, and
 * an LM head on the decoder, tied to the embeddings (with the d_model^-0.5
 * rescale) or not. All of it is a setting of the general block and of
 * model.c's encoder-decoder stacks; this file says what Hugging Face calls
 * things and how T5 initialises them.
 *
 *   e = enc_blocks(shared[enc_ids])          bidirectional, relative bias of enc.rel_bias (bucketed k - q)
 *   h = dec_blocks(shared[ids], e)           causal + cross-attention over e, relative bias of rel_bias
 *   logits = lm_head(norm(h) [* d_model^-0.5 when tied])
 *
 * T5 v1.0 (t5-small ...) has `feed_forward_proj: relu` (DenseReluDense.wi/wo,
 * tied head); v1.1 and Flan-T5 have `gated-gelu` (wi_0 gets gelu_new, times
 * wi_1: our gated FFN with rows [wi_0 | wi_1]), an untied lm_head and heads
 * of d_kv != d_model / num_heads. The decoder starts from the pad token.
 *
 * Dropout, in training, as modeling_t5 places it, all at the one dropout_rate:
 * on the embeddings of both stacks, on the attention probabilities (self and
 * cross), on each sub-layer's output before its residual add, on the FFN's
 * activation (after act(wi_0) * wi_1 when gated) and on each stack's final
 * norm output (final_dropout): embd_pdrop = attn_pdrop = resid_pdrop = act_pdrop. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "kernels/kernels.h"
#include "model/config_io.h"
#include "model/model.h"

/* ------------------------------------------------------------------ config.json */

static void defaults(lm_config *c) {   /* T5Config() */
  c->vocab_size = 32128; c->n_positions = 512; c->n_embd = 512; c->head_dim = 64; c->n_inner = 2048;
  c->n_layer = 6; c->n_enc_layer = 6; c->n_head = 8;
  c->rel_buckets = 32; c->rel_max_distance = 128;
  c->norm = LM_NORM_RMS; c->pre_ln = 1; c->act = LM_ACT_RELU; c->glu = 0; c->causal = 1; c->bias = 0;
  c->attn_unscaled = 1; c->tie_embeddings = 1; c->norm_eps = 1e-6f; c->init_std = 1.0f;
  c->pad_token_id = 0; c->eos_token_id = 1; c->bos_token_id = -1; c->decoder_start_token_id = 0;
}

/* feed_forward_proj: "ACT" or "gated-ACT", as T5Config splits it; "gated-gelu" is gelu_new */
static lm_status parse_ffn(const cJSON *r, lm_config *c, const char *p) {
  const char *v = NULL;
  lm_status st = lm_cfg_str(r, "feed_forward_proj", &v, p);
  if (st || !v) return st;
  static const struct { const char *name; int glu; lm_act_kind act; } kinds[] = {
      {"relu", 0, LM_ACT_RELU}, {"gelu", 0, LM_ACT_GELU_ERF}, {"gelu_new", 0, LM_ACT_GELU_TANH},
      {"gated-gelu", 1, LM_ACT_GELU_TANH}, {"gated-gelu_new", 1, LM_ACT_GELU_TANH}, {"gated-relu", 1, LM_ACT_RELU},
      {"gated-silu", 1, LM_ACT_SILU}, {"silu", 0, LM_ACT_SILU},
  };
  for (size_t i = 0; i < sizeof kinds / sizeof *kinds; i++)
    if (!strcmp(v, kinds[i].name)) { c->glu = kinds[i].glu; c->act = kinds[i].act; return LM_OK; }
  return lm_error(LM_ERR_UNSUPPORTED, "%s: feed_forward_proj = \"%.40s\" is not supported (relu, gated-gelu, gelu, "
                  "gated-relu, silu, gated-silu)", p, v);
}

static lm_status parse(const cJSON *r, lm_config *c, const char *p) {
  lm_status st;
  int64_t dec_layers = -1;
  float dropout = 0.1f;   /* T5Config's default */
  int enc_dec = 1;
  if ((st = lm_cfg_int(r, "vocab_size", &c->vocab_size, 0, 0, p)) ||
      (st = lm_cfg_int(r, "n_positions", &c->n_positions, 0, 0, p)) ||
      (st = lm_cfg_int(r, "d_model", &c->n_embd, 0, 0, p)) ||
      (st = lm_cfg_int(r, "d_kv", &c->head_dim, 0, 0, p)) ||
      (st = lm_cfg_int(r, "d_ff", &c->n_inner, 0, 0, p)) ||
      (st = lm_cfg_int(r, "num_layers", &c->n_enc_layer, 0, 0, p)) ||
      (st = lm_cfg_int(r, "num_decoder_layers", &dec_layers, 1, -1, p)) ||
      (st = lm_cfg_int(r, "num_heads", &c->n_head, 0, 0, p)) ||
      (st = lm_cfg_int(r, "relative_attention_num_buckets", &c->rel_buckets, 0, 0, p)) ||
      (st = lm_cfg_int(r, "relative_attention_max_distance", &c->rel_max_distance, 0, 0, p)) ||
      (st = lm_cfg_float(r, "dropout_rate", &dropout, p)) ||
      (st = lm_cfg_float(r, "layer_norm_epsilon", &c->norm_eps, p)) ||
      (st = lm_cfg_float(r, "initializer_factor", &c->init_std, p)) ||
      (st = lm_cfg_bool(r, "is_encoder_decoder", &enc_dec, p)) ||
      (st = lm_cfg_bool(r, "tie_word_embeddings", &c->tie_embeddings, p)) ||
      (st = lm_cfg_int(r, "pad_token_id", &c->pad_token_id, 1, -1, p)) ||
      (st = lm_cfg_int(r, "eos_token_id", &c->eos_token_id, 1, -1, p)) ||
      (st = lm_cfg_int(r, "decoder_start_token_id", &c->decoder_start_token_id, 0, 0, p)) ||
      (st = parse_ffn(r, c, p)))
    return st;
  c->n_layer = dec_layers >= 0 ? dec_layers : c->n_enc_layer;   /* num_decoder_layers: null = num_layers */
  if (!enc_dec) return lm_error(LM_ERR_UNSUPPORTED, "%s: is_encoder_decoder = false (T5EncoderModel) is not supported", p);
  c->embd_pdrop = c->attn_pdrop = c->resid_pdrop = c->act_pdrop = dropout;   /* range-checked by config.c */
  return LM_OK;
}

static lm_status validate(const lm_config *c, const char *p) {
  if (c->n_enc_layer < 1) return lm_error(LM_ERR_RANGE, "%s: num_layers = %lld must be positive", p, (long long)c->n_enc_layer);
  if (c->n_inner < 1) return lm_error(LM_ERR_RANGE, "%s: d_ff = %lld must be positive", p, (long long)c->n_inner);
  if (c->head_dim < 1) return lm_error(LM_ERR_RANGE, "%s: d_kv = %lld must be positive", p, (long long)c->head_dim);
  if (c->rel_buckets < 4 || c->rel_buckets > 4096 || c->rel_max_distance <= c->rel_buckets / 2 ||
      c->rel_max_distance > ((int64_t)1 << 20))
    return lm_error(LM_ERR_RANGE, "%s: relative_attention_num_buckets = %lld (4..4096) and relative_attention_max_distance "
                    "= %lld (more than half the buckets) out of range", p, (long long)c->rel_buckets,
                    (long long)c->rel_max_distance);
  if (c->attn_pdrop != c->resid_pdrop || c->embd_pdrop != c->resid_pdrop || c->act_pdrop != c->resid_pdrop)
    return lm_error(LM_ERR_UNSUPPORTED, "%s: T5 has one dropout_rate for the embeddings, attention, residual branches and "
                    "FFN activation (%g, %g, %g, %g given)", p, (double)c->embd_pdrop, (double)c->attn_pdrop,
                    (double)c->resid_pdrop, (double)c->act_pdrop);
  if (c->norm != LM_NORM_RMS || !c->pre_ln || c->bias || !c->causal || !c->attn_unscaled || c->rope || c->n_kv_head ||
      c->share_layers)
    return lm_error(LM_ERR_UNSUPPORTED, "%s: the t5 family is a pre-RMSNorm encoder-decoder without biases", p);
  return LM_OK;
}

static void write(lm_cfg_writer *w, const lm_config *c) {   /* keys sorted, as transformers writes them */
  static const char *const acts[] = {[LM_ACT_GELU_TANH] = "gelu_new", [LM_ACT_GELU_ERF] = "gelu", [LM_ACT_RELU] = "relu",
                                     [LM_ACT_SILU] = "silu"};
  char ffn[40];
  snprintf(ffn, sizeof ffn, "%s%s", c->glu ? "gated-" : "", c->glu && c->act == LM_ACT_GELU_TANH ? "gelu" : acts[c->act]);
  lm_cfgw_architectures(w, c);
  lm_cfgw_int(w, "d_ff", c->n_inner);
  lm_cfgw_int(w, "d_kv", c->head_dim);
  lm_cfgw_int(w, "d_model", c->n_embd);
  lm_cfgw_int(w, "decoder_start_token_id", c->decoder_start_token_id);
  lm_cfgw_str(w, "dense_act_fn", acts[c->act]);
  lm_cfgw_float(w, "dropout_rate", c->resid_pdrop);
  lm_cfgw_id(w, "eos_token_id", c->eos_token_id);
  lm_cfgw_str(w, "feed_forward_proj", ffn);
  lm_cfgw_float(w, "initializer_factor", c->init_std);
  lm_cfgw_bool(w, "is_encoder_decoder", 1);
  lm_cfgw_bool(w, "is_gated_act", c->glu);
  lm_cfgw_float(w, "layer_norm_epsilon", c->norm_eps);
  lm_cfgw_str(w, "model_type", "t5");
  lm_cfgw_int(w, "n_positions", c->n_positions);
  lm_cfgw_int(w, "num_decoder_layers", c->n_layer);
  lm_cfgw_int(w, "num_heads", c->n_head);
  lm_cfgw_int(w, "num_layers", c->n_enc_layer);
  lm_cfgw_id(w, "pad_token_id", c->pad_token_id);
  lm_cfgw_int(w, "relative_attention_max_distance", c->rel_max_distance);
  lm_cfgw_int(w, "relative_attention_num_buckets", c->rel_buckets);
  lm_cfgw_bool(w, "tie_word_embeddings", c->tie_embeddings);
  lm_cfgw_str(w, "torch_dtype", "float32");
  lm_cfgw_str(w, "transformers_version", LM_CFG_TRANSFORMERS_VERSION);
  lm_cfgw_bool(w, "use_cache", 1);
  lm_cfgw_int(w, "vocab_size", c->vocab_size);
}

/* ------------------------------------------------------------------ tensors, initialisation, embeddings */

static int add_embeddings(const lm_config *c, lm_param_table *t) {
  return lm_table_add(t, "wte.weight", c->vocab_size, c->n_embd, 0);
}

static int ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && !strcmp(s + n - k, suffix);
}

/* T5PreTrainedModel._init_weights, with factor = initializer_factor: embeddings and the head N(0, f);
 * k, v, wi and the relative bias f d_model^-0.5; o f (heads d_kv)^-0.5; wo f d_ff^-0.5. q's rows
 * (f (d_model d_kv)^-0.5) inside the fused q|k|v are rescaled in init_done. */
static float init_std(const lm_config *c, const char *name) {
  float f = c->init_std, dm = 1.0f / sqrtf((float)c->n_embd);
  if (!strcmp(name, "wte.weight") || !strcmp(name, "lm_head.weight")) return f;
  if (ends_with(name, "attn.c_proj.weight")) return f / sqrtf((float)lm_attn_width(c));
  if (ends_with(name, "mlp.c_proj.weight")) return f / sqrtf((float)c->n_inner);
  if (ends_with(name, "xattn.q.weight")) return f * dm / sqrtf((float)c->head_dim);
  return f * dm;   /* c_attn (k, v; q rescaled below), xattn.kv, mlp.c_fc, rel_bias */
}

static void init_done(lm_model *m) {
  int64_t C = m->cfg.n_embd, A = lm_attn_width(&m->cfg);
  for (int enc = 0; enc < 2; enc++)
    for (int64_t l = 0; l < (enc ? m->cfg.n_enc_layer : m->cfg.n_layer); l++)
      scale_inplace((enc ? m->w.enc_h : m->w.h)[l].qkv_w, A * C, 1.0f / sqrtf((float)m->cfg.head_dim));   // q rows
}

static void embed_forward(lm_model *m, const lm_batch *b, float *emb) {
  embedding_forward(emb, b->ids, m->w.wte, b->B * b->T, m->cfg.n_embd, 0);             // (B*T,C)
}
static void embed_backward(lm_model *m, const lm_batch *b, float *demb) {
  embedding_backward(m->g.wte, demb, b->ids, b->B * b->T, m->cfg.n_embd);
}
static void enc_embed_forward(lm_model *m, const lm_batch *b, float *emb) {
  embedding_forward(emb, b->enc_ids, m->w.wte, b->B * b->S, m->cfg.n_embd, 0);         // (B*S,C)
}
static void enc_embed_backward(lm_model *m, const lm_batch *b, float *demb) {
  embedding_backward(m->g.wte, demb, b->enc_ids, b->B * b->S, m->cfg.n_embd);
}
static void embed_tokens(const lm_model *m, const int32_t *ids, const int32_t *pos, int64_t n, float *out) {
  (void)pos;   /* positions enter through the relative bias */
  embedding_forward(out, ids, m->w.wte, n, m->cfg.n_embd, 0);
}

/* ------------------------------------------------------------------ Hugging Face names */

static const char *const QKV_PARTS[] = {"q", "k", "v"};
static const char *const KV_PARTS[] = {"k", "v"};
static const char *const WI_PARTS[] = {"wi_0", "wi_1"};

static int hf_name(const lm_config *c, const char *ours, int64_t layer, lm_hf_tensor *o) {
  static const struct { const char *ours, *hf; } fixed[] = {
      {"wte.weight", "shared.weight"},
      {"lm_head.weight", "lm_head.weight"},
      {"enc.ln_f.weight", "encoder.final_layer_norm.weight"},
      {"ln_f.weight", "decoder.final_layer_norm.weight"},
      {"enc.rel_bias.weight", "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"},
      {"rel_bias.weight", "decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"},
  };
  /* sub-layer index: self-attention 0, cross-attention 1 (decoder), FFN 1 (encoder) or 2 (decoder) */
  static const struct { const char *ours, *hf; int sub, parts; } per_layer[] = {
      {"ln_1.weight", "layer_norm.weight", 0, 1},
      {"attn.c_attn.weight", "SelfAttention.%s.weight", 0, 3},
      {"attn.c_proj.weight", "SelfAttention.o.weight", 0, 1},
      {"ln_x.weight", "layer_norm.weight", 1, 1},
      {"xattn.q.weight", "EncDecAttention.q.weight", 1, 1},
      {"xattn.kv.weight", "EncDecAttention.%s.weight", 1, 2},
      {"xattn.c_proj.weight", "EncDecAttention.o.weight", 1, 1},
      {"ln_2.weight", "layer_norm.weight", 2, 1},
      {"mlp.c_fc.weight", "DenseReluDense.wi.weight", 2, 1},
      {"mlp.c_proj.weight", "DenseReluDense.wo.weight", 2, 1},
  };
  memset(o, 0, sizeof *o);
  o->parts = 1;
  for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++)
    if (!strcmp(ours, fixed[i].ours)) { snprintf(o->name, sizeof o->name, "%s", fixed[i].hf); return 0; }
  long long l;
  int k = 0, enc = !strncmp(ours, "enc.", 4);
  if (sscanf(ours + (enc ? 4 : 0), "h.%lld.%n", &l, &k) != 1 || k == 0) return -1;
  if (layer >= 0) l = layer;
  const char *rest = ours + (enc ? 4 : 0) + k;
  for (size_t i = 0; i < sizeof per_layer / sizeof *per_layer; i++) {
    if (strcmp(rest, per_layer[i].ours)) continue;
    int sub = per_layer[i].sub - (enc && per_layer[i].sub == 2);   /* the encoder has no cross-attention */
    const char *hf = per_layer[i].hf;
    o->parts = per_layer[i].parts;
    if (o->parts == 3) o->part_names = QKV_PARTS;
    if (o->parts == 2) o->part_names = KV_PARTS;
    if (!strcmp(rest, "mlp.c_fc.weight") && c->glu) { hf = "DenseReluDense.%s.weight"; o->parts = 2; o->part_names = WI_PARTS; }
    snprintf(o->name, sizeof o->name, "%s.block.%lld.layer.%d.%s", enc ? "encoder" : "decoder", l, sub, hf);
    return 0;
  }
  return -1;
}

/* the embeddings' aliases of shared.weight, a tied head's copy, and the relative bias some checkpoints
 * carry (unused) in the first decoder block's cross-attention */
static int hf_ignore(const lm_config *c, const char *name) {
  if (!strcmp(name, "encoder.embed_tokens.weight") || !strcmp(name, "decoder.embed_tokens.weight")) return 1;
  if (!strcmp(name, "decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight")) return 1;
  return !strcmp(name, "lm_head.weight") && c->tie_embeddings;
}

static const lm_family_class classes[] = {{LM_HEAD_LM, "T5ForConditionalGeneration", 0}};

const lm_family lm_family_t5 = {
    .model_type = "t5", .arch = LM_ARCH_T5, .class_prefix = "T5",
    .classes = classes, .n_classes = 1, .base_prefix = "",
    .pool = LM_POOL_LAST, .seq_head_bias = 0, .hidden_dropout = 1, .act_dropout = 1, .final_dropout = 1,
    .defaults = defaults, .parse = parse, .validate = validate, .write = write,
    .keys = {"vocab_size", "n_positions", "d_model", "num_decoder_layers", "num_heads", "d_ff", "layer_norm_epsilon",
             "initializer_factor", {"dropout_rate", "dropout_rate", "dropout_rate"}},
    .add_embeddings = add_embeddings, .init_std = init_std, .init_done = init_done,
    .embed_forward = embed_forward, .embed_backward = embed_backward, .embed_tokens = embed_tokens,
    .enc_embed_forward = enc_embed_forward, .enc_embed_backward = enc_embed_backward, .tied_head_rescale = 1,
    .objective = "span-corruption",
    .hf_name = hf_name, .hf_ignore = hf_ignore,
};
