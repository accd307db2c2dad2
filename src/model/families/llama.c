/* llama.c — the Llama family and its close relatives Mistral and Qwen2: a
 * causal decoder, pre-RMSNorm, rotary positions, grouped-query attention,
 * SwiGLU feed-forward, no biases (Qwen2: biases on q, k and v), tied or
 * untied head. All of it is a setting of the general block (block.h); this
 * file says what Hugging Face calls things.
 *
 *   emb = embed_tokens[ids]                                         // (N,C)
 *   h   = blocks(emb);  logits = lm_head(norm(h))
 *
 * The three model types differ only in config keys and defaults, so they are
 * one table of variants (VARIANTS below), each its own lm_family in the
 * registry. HF keeps q/k/v and gate/up as separate tensors; we keep each pair
 * fused as one (rows [q | k | v], [gate | up]) and map the parts by rows, so
 * the parts of q/k/v differ in size under grouped-query attention. Keys that
 * would change the computation in ways lmkit does not implement (other RoPE
 * scalings, attention/MLP biases, head_dim != hidden/heads, Qwen2's sliding
 * window layers, quantization) are errors, never ignored. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "kernels/kernels.h"
#include "model/config_io.h"
#include "model/model.h"

/* ------------------------------------------------------------------ the variants */

typedef struct {
  const char *model_type;
  lm_arch arch;
  /* HF's defaults (the *Config() signature) */
  int64_t vocab, positions, embd, inner, layers, heads, kv_heads, bos, eos;
  int qkv_bias;          /* Qwen2 */
  int sliding_window;    /* the config has sliding_window (Mistral: used; Qwen2: with use_sliding_window) */
  int64_t window;        /* its default */
  int rope_scaling_key;  /* writes rope_scaling (Llama, Qwen2) */
  int llama_keys;        /* attention_bias, mlp_bias, pretraining_tp (Llama) */
} variant;

static const variant VARIANTS[] = {
    {"llama", LM_ARCH_LLAMA, 32000, 2048, 4096, 11008, 32, 32, 0, 1, 2, 0, 0, 0, 1, 1},
    {"mistral", LM_ARCH_MISTRAL, 32000, 4096 * 32, 4096, 14336, 32, 32, 8, 1, 2, 0, 1, 4096, 0, 0},
    {"qwen2", LM_ARCH_QWEN2, 151936, 32768, 4096, 22016, 32, 32, 32, -1, -1, 1, 1, 4096, 1, 0},
};

static const variant *variant_of(lm_arch a) {
  for (size_t i = 0; i < sizeof VARIANTS / sizeof *VARIANTS; i++)
    if (VARIANTS[i].arch == a) return &VARIANTS[i];
  return &VARIANTS[0];
}

static void defaults(lm_config *c) {
  const variant *v = variant_of(c->arch);
  c->vocab_size = v->vocab; c->n_positions = v->positions; c->n_embd = v->embd; c->n_inner = v->inner;
  c->n_layer = v->layers; c->n_head = v->heads; c->n_kv_head = v->kv_heads;
  c->norm = LM_NORM_RMS; c->pre_ln = 1; c->act = LM_ACT_SILU; c->glu = 1; c->causal = 1; c->bias = 0;
  c->qkv_bias = v->qkv_bias; c->tie_embeddings = 0; c->norm_eps = 1e-6f; c->init_std = 0.02f;
  c->rope = 1; c->rope_theta = 10000.0f;
  c->bos_token_id = v->bos; c->eos_token_id = v->eos;
  c->sliding_window = v->arch == LM_ARCH_MISTRAL ? v->window : 0;
}

/* ------------------------------------------------------------------ config.json */

/* rope_scaling: null, or Llama 3's {"rope_type": "llama3", factor, low_freq_factor, high_freq_factor,
 * original_max_position_embeddings}; any other scaling changes the angles: refused. */
static lm_status parse_rope_scaling(const cJSON *r, lm_config *c, const char *p) {
  const cJSON *o = cJSON_GetObjectItemCaseSensitive(r, "rope_scaling");
  if (!o || cJSON_IsNull(o)) return LM_OK;
  if (!cJSON_IsObject(o)) return lm_error(LM_ERR_FORMAT, "%s: rope_scaling: expected an object or null, got %s", p, lm_cfg_type(o));
  char pp[512];
  snprintf(pp, sizeof pp, "%s: rope_scaling", p);
  const char *type = NULL, *old = NULL;
  lm_status st;
  if ((st = lm_cfg_str(o, "rope_type", &type, pp)) || (st = lm_cfg_str(o, "type", &old, pp))) return st;
  if (!type) type = old;
  if (!type) return lm_error(LM_ERR_FORMAT, "%s: rope_type missing", pp);
  if (!strcmp(type, "default")) return LM_OK;
  if (strcmp(type, "llama3"))
    return lm_error(LM_ERR_UNSUPPORTED, "%s: rope_type \"%.40s\" is not supported (llama3, default)", pp, type);
  c->rope_scaling = 1;
  c->rope_factor = 8.0f; c->rope_low_freq_factor = 1.0f; c->rope_high_freq_factor = 4.0f;
  c->rope_original_positions = 8192;
  for (const cJSON *k = o->child; k; k = k->next) {   /* every key is one we know */
    static const char *const known[] = {"rope_type", "type", "factor", "low_freq_factor", "high_freq_factor",
                                        "original_max_position_embeddings"};
    int ok = 0;
    for (size_t i = 0; i < sizeof known / sizeof *known; i++) ok |= !strcmp(k->string, known[i]);
    if (!ok) return lm_error(LM_ERR_UNSUPPORTED, "%s: key \"%.40s\" is not supported for rope_type llama3", pp, k->string);
  }
  if ((st = lm_cfg_float(o, "factor", &c->rope_factor, pp)) ||
      (st = lm_cfg_float(o, "low_freq_factor", &c->rope_low_freq_factor, pp)) ||
      (st = lm_cfg_float(o, "high_freq_factor", &c->rope_high_freq_factor, pp)) ||
      (st = lm_cfg_int(o, "original_max_position_embeddings", &c->rope_original_positions, 0, 0, pp)))
    return st;
  return LM_OK;
}

/* eos_token_id: an integer, null, or a list of them (Llama 3 instruct); the first is eos_token_id */
static lm_status parse_eos(const cJSON *r, lm_config *c, const char *p) {
  const cJSON *j = cJSON_GetObjectItemCaseSensitive(r, "eos_token_id");
  if (!cJSON_IsArray(j)) return lm_cfg_int(r, "eos_token_id", &c->eos_token_id, 1, -1, p);
  int n = cJSON_GetArraySize(j);
  if (n < 1 || n > LM_MAX_EOS)
    return lm_error(LM_ERR_UNSUPPORTED, "%s: eos_token_id: a list of %d ids (1..%d supported)", p, n, LM_MAX_EOS);
  c->n_eos = 0;
  for (const cJSON *e = j->child; e; e = e->next) {
    if (!cJSON_IsNumber(e) || floor(e->valuedouble) != e->valuedouble || e->valuedouble < 0 || e->valuedouble > 2147483647.0)
      return lm_error(LM_ERR_FORMAT, "%s: eos_token_id[%d]: expected a token id, got %s", p, c->n_eos, lm_cfg_type(e));
    c->eos_token_ids[c->n_eos++] = (int64_t)e->valuedouble;
  }
  c->eos_token_id = c->eos_token_ids[0];
  return LM_OK;
}

static lm_status parse(const cJSON *r, lm_config *c, const char *p) {
  const variant *v = variant_of(c->arch);
  lm_status st;
  int64_t head_dim = 0, tp = 1, window = v->window, kv = -1;
  int attn_bias = 0, mlp_bias = 0, use_window = v->arch == LM_ARCH_MISTRAL;
  if ((st = lm_cfg_int(r, "vocab_size", &c->vocab_size, 0, 0, p)) ||
      (st = lm_cfg_int(r, "max_position_embeddings", &c->n_positions, 0, 0, p)) ||
      (st = lm_cfg_int(r, "hidden_size", &c->n_embd, 0, 0, p)) ||
      (st = lm_cfg_int(r, "intermediate_size", &c->n_inner, 0, 0, p)) ||
      (st = lm_cfg_int(r, "num_hidden_layers", &c->n_layer, 0, 0, p)) ||
      (st = lm_cfg_int(r, "num_attention_heads", &c->n_head, 0, 0, p)) ||
      (st = lm_cfg_int(r, "num_key_value_heads", &kv, 1, -1, p)) ||
      (st = lm_cfg_int(r, "head_dim", &head_dim, 1, 0, p)) ||
      (st = lm_cfg_act(r, "hidden_act", &c->act, p)) ||
      (st = lm_cfg_float(r, "rms_norm_eps", &c->norm_eps, p)) ||
      (st = lm_cfg_float(r, "initializer_range", &c->init_std, p)) ||
      (st = lm_cfg_float(r, "rope_theta", &c->rope_theta, p)) ||
      (st = lm_cfg_float(r, "attention_dropout", &c->attn_pdrop, p)) ||
      (st = lm_cfg_int(r, "bos_token_id", &c->bos_token_id, 1, -1, p)) ||
      (st = parse_eos(r, c, p)) ||
      (st = lm_cfg_bool(r, "tie_word_embeddings", &c->tie_embeddings, p)) ||
      (st = lm_cfg_bool(r, "attention_bias", &attn_bias, p)) ||
      (st = lm_cfg_bool(r, "mlp_bias", &mlp_bias, p)) ||
      (st = lm_cfg_int(r, "pretraining_tp", &tp, 1, 1, p)) ||
      (st = lm_cfg_int(r, "sliding_window", &window, 1, 0, p)) ||
      (st = lm_cfg_bool(r, "use_sliding_window", &use_window, p)) ||
      (st = parse_rope_scaling(r, c, p)))
    return st;
  if (kv >= 0) c->n_kv_head = kv;
  if (c->n_kv_head == c->n_head) c->n_kv_head = 0;
  if (c->act != LM_ACT_SILU)
    return lm_error(LM_ERR_UNSUPPORTED, "%s: hidden_act = \"%s\" is not supported for %s (silu)", p, lm_cfg_act_name(c->act), v->model_type);
  if (head_dim && c->n_head > 0 && head_dim * c->n_head != c->n_embd)
    return lm_error(LM_ERR_UNSUPPORTED, "%s: head_dim = %lld with %lld heads is not hidden_size = %lld: not supported", p,
                    (long long)head_dim, (long long)c->n_head, (long long)c->n_embd);
  if (attn_bias) return lm_error(LM_ERR_UNSUPPORTED, "%s: attention_bias = true is not supported", p);
  if (mlp_bias) return lm_error(LM_ERR_UNSUPPORTED, "%s: mlp_bias = true is not supported", p);
  if (cJSON_GetObjectItemCaseSensitive(r, "quantization_config"))
    return lm_error(LM_ERR_UNSUPPORTED, "%s: quantization_config: quantized checkpoints are not supported here", p);
  if (v->arch == LM_ARCH_QWEN2 && use_window)
    return lm_error(LM_ERR_UNSUPPORTED, "%s: use_sliding_window = true (Qwen2's per-layer windows) is not supported", p);
  if (v->arch == LM_ARCH_MISTRAL) c->sliding_window = window > 0 ? window : 0;
  return LM_OK;
}

static lm_status validate(const lm_config *c, const char *p) {
  if (c->embd_pdrop > 0 || c->resid_pdrop > 0)
    return lm_error(LM_ERR_UNSUPPORTED, "%s: the llama family drops attention probabilities only (attention_dropout)", p);
  if (c->n_inner < 1) return lm_error(LM_ERR_RANGE, "%s: intermediate_size = %lld must be positive", p, (long long)c->n_inner);
  if (!c->rope || !c->glu || c->norm != LM_NORM_RMS || !c->pre_ln || !c->causal)
    return lm_error(LM_ERR_UNSUPPORTED, "%s: the llama family is a pre-RMSNorm causal decoder with RoPE and SwiGLU", p);
  if (c->rope_scaling &&
      (!(c->rope_factor > 0) || !(c->rope_low_freq_factor > 0) || !(c->rope_high_freq_factor > c->rope_low_freq_factor) ||
       c->rope_original_positions < 1))
    return lm_error(LM_ERR_RANGE, "%s: rope_scaling: need factor > 0, 0 < low_freq_factor < high_freq_factor and "
                    "original_max_position_embeddings >= 1", p);
  return LM_OK;
}

static void write(lm_cfg_writer *w, const lm_config *c) {   /* keys sorted, as transformers writes them */
  const variant *v = variant_of(c->arch);
  lm_cfgw_architectures(w, c);
  if (v->llama_keys) lm_cfgw_bool(w, "attention_bias", 0);
  lm_cfgw_float(w, "attention_dropout", c->attn_pdrop);
  lm_cfgw_id(w, "bos_token_id", c->bos_token_id);
  if (c->n_eos > 1) {
    char list[LM_MAX_EOS * 24 + 8];
    size_t k = (size_t)snprintf(list, sizeof list, "[");
    for (int i = 0; i < c->n_eos; i++)
      k += (size_t)snprintf(list + k, sizeof list - k, "%s\n    %lld", i ? "," : "", (long long)c->eos_token_ids[i]);
    snprintf(list + k, sizeof list - k, "\n  ]");
    lm_cfgw_raw(w, "eos_token_id", list);
  } else {
    lm_cfgw_id(w, "eos_token_id", c->eos_token_id);
  }
  if (v->arch != LM_ARCH_QWEN2) lm_cfgw_int(w, "head_dim", c->n_embd / c->n_head);
  lm_cfgw_str(w, "hidden_act", "silu");
  lm_cfgw_int(w, "hidden_size", c->n_embd);
  lm_cfgw_id2label(w, c);
  lm_cfgw_float(w, "initializer_range", c->init_std);
  lm_cfgw_int(w, "intermediate_size", lm_ffn_width(c));
  lm_cfgw_label2id(w, c);
  lm_cfgw_lmkit(w, c);
  lm_cfgw_int(w, "max_position_embeddings", c->n_positions);
  if (v->arch == LM_ARCH_QWEN2) lm_cfgw_int(w, "max_window_layers", c->n_layer);
  if (v->llama_keys) lm_cfgw_bool(w, "mlp_bias", 0);
  lm_cfgw_str(w, "model_type", v->model_type);
  lm_cfgw_int(w, "num_attention_heads", c->n_head);
  lm_cfgw_int(w, "num_hidden_layers", c->n_layer);
  lm_cfgw_int(w, "num_key_value_heads", lm_kv_heads(c));
  if (c->pad_token_id >= 0) lm_cfgw_int(w, "pad_token_id", c->pad_token_id);
  if (v->llama_keys) lm_cfgw_int(w, "pretraining_tp", 1);
  lm_cfgw_float(w, "rms_norm_eps", c->norm_eps);
  if (c->rope_scaling) {
    char o[400], f[3][40];
    lm_cfg_float_text(c->rope_factor, f[0]);
    lm_cfg_float_text(c->rope_high_freq_factor, f[1]);
    lm_cfg_float_text(c->rope_low_freq_factor, f[2]);
    snprintf(o, sizeof o, "{\n    \"factor\": %s,\n    \"high_freq_factor\": %s,\n    \"low_freq_factor\": %s,\n"
             "    \"original_max_position_embeddings\": %lld,\n    \"rope_type\": \"llama3\"\n  }",
             f[0], f[1], f[2], (long long)c->rope_original_positions);
    lm_cfgw_raw(w, "rope_scaling", o);
  } else if (v->rope_scaling_key) {
    lm_cfgw_raw(w, "rope_scaling", "null");
  }
  lm_cfgw_float(w, "rope_theta", c->rope_theta);
  if (v->sliding_window) {
    if (v->arch == LM_ARCH_MISTRAL && !c->sliding_window) lm_cfgw_raw(w, "sliding_window", "null");
    else lm_cfgw_int(w, "sliding_window", v->arch == LM_ARCH_MISTRAL ? c->sliding_window : v->window);
  }
  lm_cfgw_bool(w, "tie_word_embeddings", c->tie_embeddings);
  lm_cfgw_str(w, "torch_dtype", "float32");
  lm_cfgw_str(w, "transformers_version", LM_CFG_TRANSFORMERS_VERSION);
  lm_cfgw_bool(w, "use_cache", 1);
  if (v->arch == LM_ARCH_QWEN2) lm_cfgw_bool(w, "use_sliding_window", 0);
  lm_cfgw_int(w, "vocab_size", c->vocab_size);
}

/* ------------------------------------------------------------------ tensors and embeddings */

static int add_embeddings(const lm_config *c, lm_param_table *t) {
  return lm_table_add(t, "wte.weight", c->vocab_size, c->n_embd, 0);
}

static void embed_forward(lm_model *m, const lm_batch *b, float *emb) {
  embedding_forward(emb, b->ids, m->w.wte, b->B * b->T, m->cfg.n_embd, 0);   // (N,C)
}

static void embed_backward(lm_model *m, const lm_batch *b, float *demb) {
  embedding_backward(m->g.wte, demb, b->ids, b->B * b->T, m->cfg.n_embd);
}

static void embed_tokens(const lm_model *m, const int32_t *ids, const int32_t *pos, int64_t n, float *out) {
  (void)pos;   /* positions enter through RoPE in the blocks */
  lm_model_embed_rows(m, ids, n, out);   /* f32 rows, or a quantized embedding's rows dequantized */
}

/* ------------------------------------------------------------------ Hugging Face names */

static const char *const QKV_PARTS[] = {"q_proj", "k_proj", "v_proj"};
static const char *const GATE_UP_PARTS[] = {"gate_proj", "up_proj"};

static int hf_name(const lm_config *c, const char *ours, int64_t layer, lm_hf_tensor *o) {
  static const struct { const char *ours, *hf; int base; } fixed[] = {
      {"wte.weight", "embed_tokens.weight", 1}, {"ln_f.weight", "norm.weight", 1},
      {"lm_head.weight", "lm_head.weight", 0},  {"classifier.weight", "score.weight", 0},
  };
  static const struct { const char *ours, *hf; int parts; } per_layer[] = {
      {"ln_1.weight", "input_layernorm.weight", 1},
      {"attn.c_attn.weight", "self_attn.%s.weight", 3},
      {"attn.c_attn.bias", "self_attn.%s.bias", 3},
      {"attn.c_proj.weight", "self_attn.o_proj.weight", 1},
      {"ln_2.weight", "post_attention_layernorm.weight", 1},
      {"mlp.c_fc.weight", "mlp.%s.weight", 2},
      {"mlp.c_proj.weight", "mlp.down_proj.weight", 1},
  };
  memset(o, 0, sizeof *o);
  o->parts = 1;
  for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++)
    if (!strcmp(ours, fixed[i].ours)) {
      snprintf(o->name, sizeof o->name, "%s", fixed[i].hf);
      o->base = fixed[i].base;
      return 0;
    }
  long long l;
  int k = 0;
  if (sscanf(ours, "h.%lld.%n", &l, &k) != 1 || k == 0) return -1;
  if (layer >= 0) l = layer;
  int64_t C = c->n_embd, KVC = lm_kv_heads(c) * (C / c->n_head), F = lm_ffn_width(c);
  for (size_t i = 0; i < sizeof per_layer / sizeof *per_layer; i++) {
    if (strcmp(ours + k, per_layer[i].ours)) continue;
    snprintf(o->name, sizeof o->name, "layers.%lld.%s", l, per_layer[i].hf);
    o->base = 1;
    o->parts = per_layer[i].parts;
    if (o->parts == 3) {
      o->part_names = QKV_PARTS;
      o->part_rows[0] = C; o->part_rows[1] = KVC; o->part_rows[2] = KVC;
    } else if (o->parts == 2) {
      o->part_names = GATE_UP_PARTS;
      o->part_rows[0] = F; o->part_rows[1] = F;
    }
    return 0;
  }
  return -1;
}

/* RoPE frequency buffers of older checkpoints, a tied head's copy, the other class's head */
static int hf_ignore(const lm_config *c, const char *name) {
  size_t n = strlen(name);
  if (n > 23 && !strcmp(name + n - 23, ".rotary_emb.inv_freq")) return 1;
  if (!strcmp(name, "lm_head.weight")) return c->tie_embeddings || c->head != LM_HEAD_LM;
  return !strncmp(name, "score.", 6);
}

/* ------------------------------------------------------------------ the families */

#define LLAMA_FAMILY(NAME, V, ARCH, PREFIX, LM, SEQ, BASE)                                                         \
  static const lm_family_class NAME##_classes[] = {                                                                \
      {LM_HEAD_LM, LM, 0}, {LM_HEAD_CLASSIFY, SEQ, 0}, {LM_HEAD_SCALAR, SEQ, 0}, {LM_HEAD_LM, BASE, 1}};           \
  const lm_family lm_family_##NAME = {                                                                             \
      .model_type = V, .arch = ARCH, .class_prefix = PREFIX,                                                       \
      .classes = NAME##_classes, .n_classes = 4, .base_prefix = "model.",                                          \
      .pool = LM_POOL_LAST, .seq_head_bias = 0,                                                                    \
      .defaults = defaults, .parse = parse, .validate = validate, .write = write,                                  \
      .keys = {"vocab_size", "max_position_embeddings", "hidden_size", "num_hidden_layers", "num_attention_heads", \
               "intermediate_size", "rms_norm_eps", "initializer_range",                                           \
               {"(no embedding dropout)", "attention_dropout", "(no residual dropout)"}},                           \
      .add_embeddings = add_embeddings,                                                                            \
      .embed_forward = embed_forward, .embed_backward = embed_backward, .embed_tokens = embed_tokens,              \
      .hf_name = hf_name, .hf_ignore = hf_ignore,                                                                  \
  };

LLAMA_FAMILY(llama, "llama", LM_ARCH_LLAMA, "Llama", "LlamaForCausalLM", "LlamaForSequenceClassification", "LlamaModel")
LLAMA_FAMILY(mistral, "mistral", LM_ARCH_MISTRAL, "Mistral", "MistralForCausalLM", "MistralForSequenceClassification",
             "MistralModel")
LLAMA_FAMILY(qwen2, "qwen2", LM_ARCH_QWEN2, "Qwen2", "Qwen2ForCausalLM", "Qwen2ForSequenceClassification", "Qwen2Model")
