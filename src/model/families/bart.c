/* bart.c — the BART family (Lewis et al. 2020; HF BartForConditionalGeneration):
 * an encoder-decoder of post-LN blocks with biases and GELU (erf), learned
 * positions with an offset of 2, a LayerNorm on each stack's embeddings, and
 * an LM head tied to the shared embeddings plus a fixed final_logits_bias:
 *
 *   e0 = LN_e(shared[enc_ids] + enc.wpe[s + 2])      encoder.layernorm_embedding   // (B*S,C)
 *   e  = enc_blocks(e0)                              bidirectional, post-LN, no final norm
 *   d0 = LN_d(shared[ids] + wpe[t + 2])              decoder.layernorm_embedding   // (B*T,C)
 *   h  = dec_blocks(d0, e)                           causal + cross-attention over e, post-LN
 *   logits = h shared^T + final_logits_bias                                        // (B*T,V)
 *
 * The blocks, cross-attention and stacks are the general block's and
 * model.c's; this file says what Hugging Face calls things, reads and writes
 * BartConfig, and owns the two embedding LayerNorms (their statistics live in
 * bart_state on m->fam_state). final_logits_bias is a buffer in transformers,
 * not a parameter: the head adds it and gives it no gradient, so training
 * leaves it as loaded. The padding token's row of shared gets no gradient
 * (nn.Embedding's padding_idx) and starts at zero. The decoder starts from
 * decoder_start_token_id (</s> in facebook/bart-*).
 *
 * Keys of BART variants whose math lmkit does not implement are errors
 * naming them: activation_function other than gelu, normalize_before /
 * add_final_layer_norm (mBART), scale_embedding (mBART, Marian), unequal
 * encoder/decoder widths or heads, layerdrop, static (sinusoidal) positions.
 * Dropout, in training, as modeling_bart places it: `dropout` on each stack's
 * embeddings (after layernorm_embedding) and on each sub-layer's output before
 * its residual add (embd_pdrop = resid_pdrop), `attention_dropout` on the
 * attention probabilities (self and cross), `activation_dropout` after fc1's
 * activation (act_pdrop). */
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "base/base.h"
#include "kernels/kernels.h"
#include "model/config_io.h"
#include "model/model.h"

#define POS_OFFSET 2   /* BartLearnedPositionalEmbedding: position t is row t + 2 */

/* ------------------------------------------------------------------ config.json */

static void defaults(lm_config *c) {   /* BartConfig(): facebook/bart-large */
  c->vocab_size = 50265; c->n_positions = 1024; c->n_embd = 1024; c->n_inner = 4096;
  c->n_layer = 12; c->n_enc_layer = 12; c->n_head = 16;
  c->norm = LM_NORM_LAYER; c->pre_ln = 0; c->act = LM_ACT_GELU_ERF; c->causal = 1; c->bias = 1;
  c->tie_embeddings = 1; c->norm_eps = 1e-5f; c->init_std = 0.02f;
  c->pad_token_id = 1; c->bos_token_id = 0; c->eos_token_id = 2; c->decoder_start_token_id = 2;
}

/* a key whose only supported value is `want` (bool) or absent */
static lm_status need_bool(const cJSON *r, const char *key, int want, const char *why, const char *p) {
  int v = want;
  lm_status st = lm_cfg_bool(r, key, &v, p);
  if (st) return st;
  if (v != want)
    return lm_error(LM_ERR_UNSUPPORTED, "%s: %s = %s is not supported by the bart family (%s)", p, key,
                    v ? "true" : "false", why);
  return LM_OK;
}

static lm_status parse(const cJSON *r, lm_config *c, const char *p) {
  lm_status st;
  int64_t dec_ffn = -1, enc_heads = -1, extra_pos = POS_OFFSET;
  float drop = 0.1f, attn_drop = 0, act_drop = 0, enc_ld = 0, dec_ld = 0;   /* BartConfig's defaults */
  int enc_dec = 1;
  const char *act = NULL;
  if ((st = lm_cfg_int(r, "vocab_size", &c->vocab_size, 0, 0, p)) ||
      (st = lm_cfg_int(r, "max_position_embeddings", &c->n_positions, 0, 0, p)) ||
      (st = lm_cfg_int(r, "d_model", &c->n_embd, 0, 0, p)) ||
      (st = lm_cfg_int(r, "encoder_layers", &c->n_enc_layer, 0, 0, p)) ||
      (st = lm_cfg_int(r, "decoder_layers", &c->n_layer, 0, 0, p)) ||
      (st = lm_cfg_int(r, "encoder_ffn_dim", &c->n_inner, 0, 0, p)) ||
      (st = lm_cfg_int(r, "decoder_ffn_dim", &dec_ffn, 0, 0, p)) ||
      (st = lm_cfg_int(r, "encoder_attention_heads", &enc_heads, 0, 0, p)) ||
      (st = lm_cfg_int(r, "decoder_attention_heads", &c->n_head, 0, 0, p)) ||
      (st = lm_cfg_int(r, "extra_pos_embeddings", &extra_pos, 0, 0, p)) ||
      (st = lm_cfg_str(r, "activation_function", &act, p)) ||
      (st = lm_cfg_float(r, "dropout", &drop, p)) ||
      (st = lm_cfg_float(r, "attention_dropout", &attn_drop, p)) ||
      (st = lm_cfg_float(r, "activation_dropout", &act_drop, p)) ||
      (st = lm_cfg_float(r, "encoder_layerdrop", &enc_ld, p)) ||
      (st = lm_cfg_float(r, "decoder_layerdrop", &dec_ld, p)) ||
      (st = lm_cfg_float(r, "init_std", &c->init_std, p)) ||
      (st = lm_cfg_bool(r, "is_encoder_decoder", &enc_dec, p)) ||
      (st = lm_cfg_bool(r, "tie_word_embeddings", &c->tie_embeddings, p)) ||
      (st = lm_cfg_int(r, "pad_token_id", &c->pad_token_id, 1, -1, p)) ||
      (st = lm_cfg_int(r, "bos_token_id", &c->bos_token_id, 1, -1, p)) ||
      (st = lm_cfg_int(r, "eos_token_id", &c->eos_token_id, 1, -1, p)) ||
      (st = lm_cfg_int(r, "decoder_start_token_id", &c->decoder_start_token_id, 0, 0, p)) ||
      (st = need_bool(r, "scale_embedding", 0, "embeddings times sqrt(d_model), as mBART and Marian", p)) ||
      (st = need_bool(r, "normalize_before", 0, "pre-LN blocks, as mBART", p)) ||
      (st = need_bool(r, "add_final_layer_norm", 0, "a final LayerNorm on each stack, as mBART", p)) ||
      (st = need_bool(r, "normalize_embedding", 1, "BART normalises its embeddings", p)) ||
      (st = need_bool(r, "static_position_embeddings", 0, "sinusoidal positions", p)) ||
      (st = need_bool(r, "add_bias_logits", 0, "a trained logits bias", p)))
    return st;
  if (!enc_dec) return lm_error(LM_ERR_UNSUPPORTED, "%s: is_encoder_decoder = false is not supported by the bart family", p);
  if (act && strcmp(act, "gelu"))
    return lm_error(LM_ERR_UNSUPPORTED, "%s: activation_function = \"%.40s\" is not supported by the bart family (gelu)", p, act);
  if (dec_ffn >= 0 && dec_ffn != c->n_inner)
    return lm_error(LM_ERR_UNSUPPORTED, "%s: encoder_ffn_dim = %lld and decoder_ffn_dim = %lld differ: lmkit's BART has one "
                    "FFN width", p, (long long)c->n_inner, (long long)dec_ffn);
  if (enc_heads >= 0 && enc_heads != c->n_head)
    return lm_error(LM_ERR_UNSUPPORTED, "%s: encoder_attention_heads = %lld and decoder_attention_heads = %lld differ: "
                    "lmkit's BART has one head count", p, (long long)enc_heads, (long long)c->n_head);
  if (extra_pos != POS_OFFSET)
    return lm_error(LM_ERR_UNSUPPORTED, "%s: extra_pos_embeddings = %lld is not supported (BART's position offset is 2)", p,
                    (long long)extra_pos);
  if (enc_ld != 0 || dec_ld != 0)
    return lm_error(LM_ERR_UNSUPPORTED, "%s: encoder_layerdrop = %g, decoder_layerdrop = %g: LayerDrop is not supported "
                    "(0)", p, (double)enc_ld, (double)dec_ld);
  if (!(act_drop >= 0 && act_drop < 1))   /* the others: config.c, by their keys */
    return lm_error(LM_ERR_RANGE, "%s: activation_dropout = %g must be in [0, 1)", p, (double)act_drop);
  c->embd_pdrop = c->resid_pdrop = drop;
  c->attn_pdrop = attn_drop;
  c->act_pdrop = act_drop;
  return LM_OK;
}

static lm_status validate(const lm_config *c, const char *p) {
  if (c->n_enc_layer < 1) return lm_error(LM_ERR_RANGE, "%s: encoder_layers = %lld must be positive", p, (long long)c->n_enc_layer);
  if (c->n_inner < 1) return lm_error(LM_ERR_RANGE, "%s: decoder_ffn_dim = %lld must be positive", p, (long long)c->n_inner);
  if (c->embd_pdrop != c->resid_pdrop)
    return lm_error(LM_ERR_UNSUPPORTED, "%s: BART has one dropout for the embeddings and the residual branches", p);
  if (c->norm != LM_NORM_LAYER || c->pre_ln || !c->bias || !c->causal || c->attn_unscaled || c->rope || c->n_kv_head ||
      c->share_layers || c->glu || c->act != LM_ACT_GELU_ERF || c->rel_buckets || (c->head_dim && c->head_dim * c->n_head != c->n_embd))
    return lm_error(LM_ERR_UNSUPPORTED, "%s: the bart family is a post-LayerNorm encoder-decoder with biases, GELU and "
                    "learned positions", p);
  return LM_OK;
}

static void write(lm_cfg_writer *w, const lm_config *c) {   /* keys sorted, as transformers writes them */
  lm_cfgw_float(w, "activation_dropout", c->act_pdrop);
  lm_cfgw_str(w, "activation_function", "gelu");
  lm_cfgw_architectures(w, c);
  lm_cfgw_float(w, "attention_dropout", c->attn_pdrop);
  lm_cfgw_id(w, "bos_token_id", c->bos_token_id);
  lm_cfgw_int(w, "d_model", c->n_embd);
  lm_cfgw_int(w, "decoder_attention_heads", c->n_head);
  lm_cfgw_int(w, "decoder_ffn_dim", c->n_inner);
  lm_cfgw_float(w, "decoder_layerdrop", 0.0f);
  lm_cfgw_int(w, "decoder_layers", c->n_layer);
  lm_cfgw_int(w, "decoder_start_token_id", c->decoder_start_token_id);
  lm_cfgw_float(w, "dropout", c->resid_pdrop);
  lm_cfgw_int(w, "encoder_attention_heads", c->n_head);
  lm_cfgw_int(w, "encoder_ffn_dim", c->n_inner);
  lm_cfgw_float(w, "encoder_layerdrop", 0.0f);
  lm_cfgw_int(w, "encoder_layers", c->n_enc_layer);
  lm_cfgw_id(w, "eos_token_id", c->eos_token_id);
  lm_cfgw_float(w, "init_std", c->init_std);
  lm_cfgw_bool(w, "is_encoder_decoder", 1);
  lm_cfgw_int(w, "max_position_embeddings", c->n_positions);
  lm_cfgw_str(w, "model_type", "bart");
  lm_cfgw_id(w, "pad_token_id", c->pad_token_id);
  lm_cfgw_bool(w, "scale_embedding", 0);
  lm_cfgw_bool(w, "tie_word_embeddings", c->tie_embeddings);
  lm_cfgw_str(w, "torch_dtype", "float32");
  lm_cfgw_str(w, "transformers_version", LM_CFG_TRANSFORMERS_VERSION);
  lm_cfgw_bool(w, "use_cache", 1);
  lm_cfgw_int(w, "vocab_size", c->vocab_size);
}

/* ------------------------------------------------------------------ tensors */

static int add_embeddings(const lm_config *c, lm_param_table *t) {
  int64_t C = c->n_embd, P = c->n_positions + POS_OFFSET;
  return lm_table_add(t, "wte.weight", c->vocab_size, C, 0) || lm_table_add(t, "wpe.weight", P, C, 0) ||
         lm_table_add(t, "enc.wpe.weight", P, C, 0) || lm_table_add(t, "emb_ln.weight", C, 0, 0) ||
         lm_table_add(t, "emb_ln.bias", C, 0, 0) || lm_table_add(t, "enc.emb_ln.weight", C, 0, 0) ||
         lm_table_add(t, "enc.emb_ln.bias", C, 0, 0);
}

/* the head adds final_logits_bias (1,V) to the logits; its gradient is never taken (an HF buffer) */
static int add_final(const lm_config *c, lm_param_table *t) {
  return lm_table_add(t, "final_logits_bias", 1, c->vocab_size, 0);
}

/* BartPreTrainedModel._init_weights: N(0, init_std) for linears and embeddings, the padding row
 * zero; final_logits_bias zero (a buffer of zeros in transformers) */
static void init_done(lm_model *m) {
  int64_t pad = m->cfg.pad_token_id;
  if (pad >= 0 && pad < m->cfg.vocab_size) memset(m->w.wte + pad * m->cfg.n_embd, 0, m->cfg.n_embd * sizeof(float));
  float *flb = lm_model_tensor(m, m->params, "final_logits_bias");
  if (flb) memset(flb, 0, m->cfg.vocab_size * sizeof(float));
}

/* ------------------------------------------------------------------ embeddings */

/* one stack's embeddings: the LayerNorm's input and statistics, the ids for backward */
typedef struct {
  float *sum, *mean, *rstd;   /* (N,C), (N), (N) */
  int32_t *ids;               /* (N) with the padding id as -1: no gradient (padding_idx) */
  float *wpe, *ln_w, *ln_b, *gwpe, *gln_w, *gln_b;
} bart_stack;

typedef struct {
  int64_t N;
  float *arena;
  int32_t *iarena;
  bart_stack dec, enc;
} bart_state;

static void free_state(lm_model *m) {
  bart_state *s = m->fam_state;
  if (!s) return;
  lm_free(s->arena);
  free(s->iarena);
  free(s);
  m->fam_state = NULL;
}

static void bind(lm_model *m, bart_stack *k, const char *pre) {
  char nm[64];
#define BIND(field, gfield, name)                                              \
  snprintf(nm, sizeof nm, "%s" name, pre);                                     \
  k->field = lm_model_tensor(m, m->params, nm); k->gfield = lm_model_tensor(m, m->grads, nm);
  BIND(wpe, gwpe, "wpe.weight")
  BIND(ln_w, gln_w, "emb_ln.weight")
  BIND(ln_b, gln_b, "emb_ln.bias")
#undef BIND
}

/* the encoder's inputs are up to T tokens too (S <= T): both stacks get N = B*T rows */
static lm_status reserve(lm_model *m, int64_t B, int64_t T, int need_grads) {
  (void)need_grads;
  int64_t N = B * T, C = m->cfg.n_embd;
  bart_state *s = m->fam_state;
  if (!s || s->N != N) {
    free_state(m);
    s = calloc(1, sizeof *s);
    if (!s) return lm_error(LM_ERR_NOMEM, "out of memory");
    size_t c16 = ((size_t)N * C + 15) & ~(size_t)15, n16 = ((size_t)N + 15) & ~(size_t)15, per = c16 + 2 * n16;
    s->arena = lm_alloc(2 * per * sizeof(float));
    s->iarena = calloc(2 * (size_t)N, sizeof(int32_t));
    if (!s->arena || !s->iarena) {
      lm_free(s->arena); free(s->iarena); free(s);
      return lm_error(LM_ERR_NOMEM, "out of memory for the bart embeddings (batch %lld x %lld)", (long long)B, (long long)T);
    }
    bart_stack *k[2] = {&s->dec, &s->enc};
    for (int i = 0; i < 2; i++) {
      float *p = s->arena + i * per;
      k[i]->sum = p; k[i]->mean = p + c16; k[i]->rstd = p + c16 + n16;
      k[i]->ids = s->iarena + i * N;
    }
    s->N = N;
    m->fam_state = s;
  }
  bind(m, &s->dec, "");
  bind(m, &s->enc, "enc.");
  return LM_OK;
}

/* emb(B*T,C) = LN(wte[ids] + wpe[t + 2]) of one stack, keeping what backward needs */
static void stack_forward(lm_model *m, bart_stack *k, const int32_t *ids, int64_t B, int64_t T, float *emb) {
  const lm_config *c = &m->cfg;
  int64_t N = B * T, C = c->n_embd;
  embedding_forward(k->sum, ids, m->w.wte, N, C, 0);                                     // (N,C)
  for (int64_t i = 0; i < B; i++)
    embedding_forward(k->sum + i * T * C, m->acts.pos, k->wpe + POS_OFFSET * C, T, C, 1);
  layernorm_forward(emb, k->mean, k->rstd, k->sum, k->ln_w, k->ln_b, N, C, c->norm_eps);
  for (int64_t n = 0; n < N; n++) k->ids[n] = ids[n] == c->pad_token_id ? -1 : ids[n];
}

/* demb (B*T,C) -> the tables' gradients, through the LayerNorm; d is (N,C) scratch */
static void stack_backward(lm_model *m, bart_stack *k, const float *demb, int64_t B, int64_t T, float *d) {
  int64_t N = B * T, C = m->cfg.n_embd;
  memset(d, 0, N * C * sizeof(float));
  layernorm_backward(d, k->gln_w, k->gln_b, demb, k->sum, k->ln_w, k->mean, k->rstd, N, C);
  embedding_backward(m->g.wte, d, k->ids, N, C);
  for (int64_t i = 0; i < B; i++) embedding_backward(k->gwpe + POS_OFFSET * C, d + i * T * C, m->acts.pos, T, C);
}

static void embed_forward(lm_model *m, const lm_batch *b, float *emb) {
  stack_forward(m, &((bart_state *)m->fam_state)->dec, b->ids, b->B, b->T, emb);
}
static void enc_embed_forward(lm_model *m, const lm_batch *b, float *emb) {
  stack_forward(m, &((bart_state *)m->fam_state)->enc, b->enc_ids, b->B, b->S, emb);
}
/* model.c calls both with demb in acts.dres_a; dres_b is free scratch then */
static void embed_backward(lm_model *m, const lm_batch *b, float *demb) {
  stack_backward(m, &((bart_state *)m->fam_state)->dec, demb, b->B, b->T, m->acts.dres_b);
}
static void enc_embed_backward(lm_model *m, const lm_batch *b, float *demb) {
  stack_backward(m, &((bart_state *)m->fam_state)->enc, demb, b->B, b->S, m->acts.dres_b);
}

/* inference: no state; each row is summed into out and normalised in place */
static void rows_tokens(const lm_model *m, const char *pre, const int32_t *ids, const int32_t *pos, int64_t n, float *out) {
  const lm_config *c = &m->cfg;
  int64_t C = c->n_embd;
  char nm[3][32];
  snprintf(nm[0], sizeof nm[0], "%swpe.weight", pre);
  snprintf(nm[1], sizeof nm[1], "%semb_ln.weight", pre);
  snprintf(nm[2], sizeof nm[2], "%semb_ln.bias", pre);
  const float *wpe = lm_model_tensor(m, m->params, nm[0]), *w = lm_model_tensor(m, m->params, nm[1]);
  const float *bias = lm_model_tensor(m, m->params, nm[2]);
  for (int64_t i = 0; i < n; i++) {
    float *o = out + i * C;
    const float *e = m->w.wte + (int64_t)ids[i] * C, *p = wpe + ((pos ? pos[i] : i) + POS_OFFSET) * C;
    for (int64_t j = 0; j < C; j++) o[j] = e[j] + p[j];
    layernorm_forward(o, NULL, NULL, o, w, bias, 1, C, c->norm_eps);   /* in place: stats first, then each element */
  }
}
static void embed_tokens(const lm_model *m, const int32_t *ids, const int32_t *pos, int64_t n, float *out) {
  rows_tokens(m, "", ids, pos, n, out);
}
static void enc_embed_tokens(const lm_model *m, const int32_t *ids, int64_t n, float *out) {
  rows_tokens(m, "enc.", ids, NULL, n, out);
}

/* ------------------------------------------------------------------ Hugging Face names */

static const char *const QKV_PARTS[] = {"q", "k", "v"};
static const char *const KV_PARTS[] = {"k", "v"};

static int hf_name(const lm_config *c, const char *ours, int64_t layer, lm_hf_tensor *o) {
  (void)c;
  static const struct { const char *ours, *hf; int base; } fixed[] = {
      {"wte.weight", "shared.weight", 1},
      {"wpe.weight", "decoder.embed_positions.weight", 1},
      {"enc.wpe.weight", "encoder.embed_positions.weight", 1},
      {"emb_ln.weight", "decoder.layernorm_embedding.weight", 1},
      {"emb_ln.bias", "decoder.layernorm_embedding.bias", 1},
      {"enc.emb_ln.weight", "encoder.layernorm_embedding.weight", 1},
      {"enc.emb_ln.bias", "encoder.layernorm_embedding.bias", 1},
      {"final_logits_bias", "final_logits_bias", 0},
      {"lm_head.weight", "lm_head.weight", 0},
  };
  /* per layer: ours (without .weight/.bias) -> HF module; parts: q|k|v or k|v in one of ours */
  static const struct { const char *ours, *hf; int parts; } per_layer[] = {
      {"ln_1", "self_attn_layer_norm", 1},
      {"attn.c_attn", "self_attn.%s_proj", 3},
      {"attn.c_proj", "self_attn.out_proj", 1},
      {"ln_x", "encoder_attn_layer_norm", 1},
      {"xattn.q", "encoder_attn.q_proj", 1},
      {"xattn.kv", "encoder_attn.%s_proj", 2},
      {"xattn.c_proj", "encoder_attn.out_proj", 1},
      {"ln_2", "final_layer_norm", 1},
      {"mlp.c_fc", "fc1", 1},
      {"mlp.c_proj", "fc2", 1},
  };
  memset(o, 0, sizeof *o);
  o->parts = 1;
  for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++)
    if (!strcmp(ours, fixed[i].ours)) { snprintf(o->name, sizeof o->name, "%s", fixed[i].hf); o->base = fixed[i].base; return 0; }
  long long l;
  int k = 0, enc = !strncmp(ours, "enc.", 4);
  if (sscanf(ours + (enc ? 4 : 0), "h.%lld.%n", &l, &k) != 1 || k == 0) return -1;
  if (layer >= 0) l = layer;
  const char *rest = ours + (enc ? 4 : 0) + k, *dot = strrchr(rest, '.');
  if (!dot || (strcmp(dot, ".weight") && strcmp(dot, ".bias"))) return -1;
  for (size_t i = 0; i < sizeof per_layer / sizeof *per_layer; i++) {
    if (strlen(per_layer[i].ours) != (size_t)(dot - rest) || strncmp(rest, per_layer[i].ours, dot - rest)) continue;
    o->parts = per_layer[i].parts;
    if (o->parts == 3) o->part_names = QKV_PARTS;
    if (o->parts == 2) o->part_names = KV_PARTS;
    o->base = 1;
    snprintf(o->name, sizeof o->name, "%s.layers.%lld.%s%s", enc ? "encoder" : "decoder", l, per_layer[i].hf, dot);
    return 0;
  }
  return -1;
}

/* the embeddings' aliases of shared.weight, and a tied head's copy */
static int hf_ignore(const lm_config *c, const char *name) {
  if (!strcmp(name, "encoder.embed_tokens.weight") || !strcmp(name, "decoder.embed_tokens.weight")) return 1;
  return !strcmp(name, "lm_head.weight") && c->tie_embeddings;
}

static const lm_family_class classes[] = {{LM_HEAD_LM, "BartForConditionalGeneration", 0}};

const lm_family lm_family_bart = {
    .model_type = "bart", .arch = LM_ARCH_BART, .class_prefix = "Bart",
    .classes = classes, .n_classes = 1, .base_prefix = "model.",
    .pool = LM_POOL_LAST, .seq_head_bias = 0, .hidden_dropout = 1, .act_dropout = 1,
    .defaults = defaults, .parse = parse, .validate = validate, .write = write,
    .keys = {"vocab_size", "max_position_embeddings", "d_model", "decoder_layers", "decoder_attention_heads",
             "decoder_ffn_dim", "layer_norm_eps", "init_std", {"dropout", "attention_dropout", "dropout"}},
    .add_embeddings = add_embeddings, .add_final = add_final, .init_done = init_done,
    .reserve = reserve, .free_state = free_state,
    .embed_forward = embed_forward, .embed_backward = embed_backward, .embed_tokens = embed_tokens,
    .enc_embed_forward = enc_embed_forward, .enc_embed_backward = enc_embed_backward, .enc_embed_tokens = enc_embed_tokens,
    .objective = "denoise",
    .hf_name = hf_name, .hf_ignore = hf_ignore,
};
