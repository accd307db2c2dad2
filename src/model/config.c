/* config.c — lm_config <-> Hugging Face config.json (see config.h).
 *
 * Parsing starts from the family's HF defaults (lm_config_default), then
 * overrides each key present, type-checking it; the finished struct is then
 * validated as a whole (divisibility, ranges), with messages that use the
 * family's own key names, so a user sees "hidden_size = 770 is not divisible
 * by num_attention_heads = 12", not our field names. Nothing is written to the
 * caller's struct unless everything succeeds.
 *
 * Saving writes keys in sorted order, as transformers does, including the
 * training-only keys (dropouts) that transformers expects to find, and an
 * "lmkit" sub-object only for knobs the family's HF config cannot express. */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "base/base.h"
#include "model/config.h"

/* Upper bounds far above any real model, low enough that products of them
 * (parameter counts, activation sizes) cannot overflow int64. */
#define CFG_MAX_VOCAB    ((int64_t)1 << 24)
#define CFG_MAX_POS      ((int64_t)1 << 20)
#define CFG_MAX_EMBD     ((int64_t)1 << 16)
#define CFG_MAX_LAYER    ((int64_t)1024)
#define CFG_MAX_INNER    ((int64_t)1 << 20)
#define CFG_MAX_TOKEN_ID ((int64_t)1 << 31)

#define CFG_TRANSFORMERS_VERSION "4.40.0"
#define CFG_MAX_LABELS   ((int64_t)1 << 20)

/* ------------------------------------------------------------------ names and defaults */
const char *lm_arch_name(lm_arch arch) {
  switch (arch) {
    case LM_ARCH_GPT2: return "gpt2";
    case LM_ARCH_BERT: return "bert";
    case LM_ARCH_T5: return "t5";
    case LM_ARCH_BART: return "bart";
    case LM_ARCH_LLAMA: return "llama";
  }
  return "unknown";
}

/* The HF key of each lm_config field, per family, for error messages. */
typedef struct { const char *vocab, *pos, *embd, *layer, *head, *inner, *act, *eps, *init; } cfg_keys;
static const cfg_keys *cfg_keys_for(lm_arch arch) {
  static const cfg_keys gpt2 = {"vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "n_inner",
                                "activation_function", "layer_norm_epsilon", "initializer_range"};
  static const cfg_keys bert = {"vocab_size", "max_position_embeddings", "hidden_size", "num_hidden_layers",
                                "num_attention_heads", "intermediate_size", "hidden_act", "layer_norm_eps",
                                "initializer_range"};
  static const cfg_keys t5 = {"vocab_size", "n_positions", "d_model", "num_layers", "num_heads", "d_ff",
                              "feed_forward_proj", "layer_norm_epsilon", "initializer_factor"};
  static const cfg_keys bart = {"vocab_size", "max_position_embeddings", "d_model", "encoder_layers",
                                "encoder_attention_heads", "encoder_ffn_dim", "activation_function",
                                "layer_norm_eps", "init_std"};
  static const cfg_keys llama = {"vocab_size", "max_position_embeddings", "hidden_size", "num_hidden_layers",
                                 "num_attention_heads", "intermediate_size", "hidden_act", "rms_norm_eps",
                                 "initializer_range"};
  switch (arch) {
    case LM_ARCH_BERT: return &bert;
    case LM_ARCH_T5: return &t5;
    case LM_ARCH_BART: return &bart;
    case LM_ARCH_LLAMA: return &llama;
    default: return &gpt2;
  }
}

void lm_config_default(lm_config *cfg, lm_arch arch) {
  memset(cfg, 0, sizeof *cfg);
  /* GPT-2 small, Hugging Face's GPT2Config() */
  cfg->arch = LM_ARCH_GPT2;
  cfg->vocab_size = 50257; cfg->n_positions = 1024; cfg->n_embd = 768; cfg->n_layer = 12; cfg->n_head = 12;
  cfg->n_inner = 0;
  cfg->norm = LM_NORM_LAYER; cfg->pre_ln = 1; cfg->act = LM_ACT_GELU_TANH; cfg->causal = 1; cfg->bias = 1;
  cfg->tie_embeddings = 1; cfg->norm_eps = 1e-5f; cfg->init_std = 0.02f;
  cfg->bos_token_id = 50256; cfg->eos_token_id = 50256;
  switch (arch) {
    case LM_ARCH_GPT2: break;
    case LM_ARCH_BERT:  /* BertConfig(): bert-base-uncased */
      cfg->arch = arch; cfg->vocab_size = 30522; cfg->n_positions = 512;
      cfg->pre_ln = 0; cfg->causal = 0; cfg->act = LM_ACT_GELU_ERF; cfg->norm_eps = 1e-12f;
      cfg->bos_token_id = cfg->eos_token_id = -1;   /* BERT uses [CLS]/[SEP], not bos/eos */
      cfg->type_vocab_size = 2; cfg->pad_token_id = 0; cfg->num_labels = 2; cfg->head = LM_HEAD_PRETRAIN;
      break;
    case LM_ARCH_T5:    /* T5Config(): t5-small; no learned positions (relative bias) */
      cfg->arch = arch; cfg->vocab_size = 32128; cfg->n_positions = 512; cfg->n_embd = 512; cfg->n_layer = 6;
      cfg->n_head = 8; cfg->n_inner = 2048; cfg->norm = LM_NORM_RMS; cfg->act = LM_ACT_RELU; cfg->causal = 0;
      cfg->bias = 0; cfg->norm_eps = 1e-6f; cfg->bos_token_id = -1; cfg->eos_token_id = 1;
      break;
    case LM_ARCH_BART:  /* BartConfig(): bart-large sizes, post-LN */
      cfg->arch = arch; cfg->vocab_size = 50265; cfg->n_embd = 1024; cfg->n_head = 16; cfg->pre_ln = 0;
      cfg->causal = 0; cfg->act = LM_ACT_GELU_ERF; cfg->bos_token_id = 0; cfg->eos_token_id = 2;
      break;
    case LM_ARCH_LLAMA: /* LlamaConfig(); SwiGLU has no lm_act_kind yet, GELU-tanh stands in */
      cfg->arch = arch; cfg->vocab_size = 32000; cfg->n_positions = 2048; cfg->n_embd = 4096; cfg->n_layer = 32;
      cfg->n_head = 32; cfg->n_inner = 11008; cfg->norm = LM_NORM_RMS; cfg->bias = 0; cfg->tie_embeddings = 0;
      cfg->norm_eps = 1e-6f; cfg->bos_token_id = 1; cfg->eos_token_id = 2;
      break;
  }
}

/* ------------------------------------------------------------------ validation */
static lm_status cfg_range(const char *p, const char *key, int64_t v, int64_t lo, int64_t hi) {
  if (v < lo || v > hi)
    return lm_error(LM_ERR_RANGE, "%s: %s = %lld is out of range (%lld..%lld)", p, key, (long long)v, (long long)lo,
                    (long long)hi);
  return LM_OK;
}

static lm_status cfg_validate_at(const lm_config *c, const char *p) {
  if ((unsigned)c->arch > LM_ARCH_LLAMA) return lm_error(LM_ERR_ARG, "%s: unknown arch %d", p, (int)c->arch);
  const cfg_keys *k = cfg_keys_for(c->arch);
  lm_status st;
  if ((st = cfg_range(p, k->vocab, c->vocab_size, 1, CFG_MAX_VOCAB)) ||
      (st = cfg_range(p, k->pos, c->n_positions, 1, CFG_MAX_POS)) ||
      (st = cfg_range(p, k->embd, c->n_embd, 1, CFG_MAX_EMBD)) ||
      (st = cfg_range(p, k->layer, c->n_layer, 1, CFG_MAX_LAYER)) ||
      (st = cfg_range(p, k->head, c->n_head, 1, CFG_MAX_EMBD)) ||
      (st = cfg_range(p, k->inner, c->n_inner, 0, CFG_MAX_INNER)) ||
      (st = cfg_range(p, "bos_token_id", c->bos_token_id, -1, CFG_MAX_TOKEN_ID)) ||
      (st = cfg_range(p, "eos_token_id", c->eos_token_id, -1, CFG_MAX_TOKEN_ID)))
    return st;
  if (c->n_embd % c->n_head != 0)
    return lm_error(LM_ERR_RANGE, "%s: %s = %lld is not divisible by %s = %lld", p, k->embd, (long long)c->n_embd,
                    k->head, (long long)c->n_head);
  if (!(c->norm_eps > 0 && c->norm_eps < 1))
    return lm_error(LM_ERR_RANGE, "%s: %s = %g must be in (0, 1)", p, k->eps, (double)c->norm_eps);
  if (!(c->init_std >= 0 && c->init_std <= 10))
    return lm_error(LM_ERR_RANGE, "%s: %s = %g must be in [0, 10]", p, k->init, (double)c->init_std);
  if ((unsigned)c->norm > LM_NORM_RMS) return lm_error(LM_ERR_ARG, "%s: unknown norm kind %d", p, (int)c->norm);
  if ((unsigned)c->act > LM_ACT_RELU) return lm_error(LM_ERR_ARG, "%s: unknown activation %d", p, (int)c->act);
  if ((unsigned)c->share_layers > 1) return lm_error(LM_ERR_ARG, "%s: share_layers = %d must be 0 or 1", p, c->share_layers);
  if (c->arch == LM_ARCH_BERT) {
    if ((st = cfg_range(p, "type_vocab_size", c->type_vocab_size, 0, CFG_MAX_VOCAB)) ||
        (st = cfg_range(p, "pad_token_id", c->pad_token_id, -1, c->vocab_size - 1)) ||
        (st = cfg_range(p, "num_labels", c->num_labels, 1, CFG_MAX_LABELS)))
      return st;
    if ((unsigned)c->head > LM_HEAD_QA) return lm_error(LM_ERR_ARG, "%s: unknown BERT head %d", p, c->head);
    if (c->head == LM_HEAD_CLASSIFY && c->num_labels < 2)
      return lm_error(LM_ERR_UNSUPPORTED, "%s: num_labels = %lld: regression (a single label) is not supported", p,
                      (long long)c->num_labels);
    /* the embedding and MLM-transform norms are LayerNorms with biases, as in BERT */
    if (c->norm != LM_NORM_LAYER || !c->bias)
      return lm_error(LM_ERR_UNSUPPORTED, "%s: the bert family needs LayerNorm with biases (lmkit.norm, lmkit.bias)", p);
  }
  return LM_OK;
}

lm_status lm_config_validate(const lm_config *cfg) {
  if (!cfg) return lm_error(LM_ERR_ARG, "lm_config_validate: NULL config");
  return cfg_validate_at(cfg, "config");
}

/* ------------------------------------------------------------------ typed getters */
/* Each getter leaves *out alone when the key is absent, so defaults stand. */
static const char *cfg_type(const cJSON *j) {
  if (cJSON_IsString(j)) return "a string";
  if (cJSON_IsNumber(j)) return "a number";
  if (cJSON_IsBool(j)) return "a boolean";
  if (cJSON_IsNull(j)) return "null";
  if (cJSON_IsArray(j)) return "an array";
  return "an object";
}

/* Integer key; `null_value` is stored for JSON null when nullable, else null is an error. */
static lm_status cfg_int(const cJSON *o, const char *key, int64_t *out, int nullable, int64_t null_value,
                         const char *p) {
  const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, key);
  if (!j) return LM_OK;
  if (nullable && cJSON_IsNull(j)) { *out = null_value; return LM_OK; }
  if (!cJSON_IsNumber(j))
    return lm_error(LM_ERR_FORMAT, "%s: %s: expected an integer%s, got %s", p, key, nullable ? " or null" : "",
                    cfg_type(j));
  double v = j->valuedouble;
  /* |v| <= 2^53: exact in a double, and far beyond every range check */
  if (!isfinite(v) || floor(v) != v || fabs(v) > 9007199254740992.0)
    return lm_error(LM_ERR_FORMAT, "%s: %s = %g is not an integer", p, key, v);
  *out = (int64_t)v;
  return LM_OK;
}

static lm_status cfg_float(const cJSON *o, const char *key, float *out, const char *p) {
  const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, key);
  if (!j) return LM_OK;
  if (!cJSON_IsNumber(j)) return lm_error(LM_ERR_FORMAT, "%s: %s: expected a number, got %s", p, key, cfg_type(j));
  float f = (float)j->valuedouble;
  if (!isfinite(f)) return lm_error(LM_ERR_RANGE, "%s: %s = %g is out of range", p, key, j->valuedouble);
  if (j->valuedouble != 0 && f == 0)
    return lm_error(LM_ERR_RANGE, "%s: %s = %g is too small for fp32", p, key, j->valuedouble);
  *out = f;
  return LM_OK;
}

static lm_status cfg_bool(const cJSON *o, const char *key, int *out, const char *p) {
  const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, key);
  if (!j) return LM_OK;
  if (!cJSON_IsBool(j)) return lm_error(LM_ERR_FORMAT, "%s: %s: expected true or false, got %s", p, key, cfg_type(j));
  *out = cJSON_IsTrue(j);
  return LM_OK;
}

static lm_status cfg_str(const cJSON *o, const char *key, const char **out, const char *p) {
  const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, key);
  if (!j) return LM_OK;
  if (!cJSON_IsString(j)) return lm_error(LM_ERR_FORMAT, "%s: %s: expected a string, got %s", p, key, cfg_type(j));
  *out = j->valuestring;
  return LM_OK;
}

static lm_status cfg_act(const cJSON *o, const char *key, lm_act_kind *out, const char *p) {
  const char *s = NULL;
  lm_status st = cfg_str(o, key, &s, p);
  if (st || !s) return st;
  /* gelu_new, gelu_fast and gelu_pytorch_tanh are the same tanh approximation */
  if (!strcmp(s, "gelu_new") || !strcmp(s, "gelu_pytorch_tanh") || !strcmp(s, "gelu_fast")) *out = LM_ACT_GELU_TANH;
  else if (!strcmp(s, "gelu") || !strcmp(s, "gelu_python")) *out = LM_ACT_GELU_ERF;
  else if (!strcmp(s, "relu")) *out = LM_ACT_RELU;
  else
    return lm_error(LM_ERR_UNSUPPORTED, "%s: %s = \"%.64s\" is not supported (gelu, gelu_new, gelu_pytorch_tanh, relu)",
                    p, key, s);
  return LM_OK;
}

/* The "lmkit" sub-object: knobs of our block with no HF key for this family. */
static lm_status cfg_lmkit(const cJSON *root, lm_config *c, const char *p) {
  const cJSON *o = cJSON_GetObjectItemCaseSensitive(root, "lmkit");
  if (!o) return LM_OK;
  if (!cJSON_IsObject(o)) return lm_error(LM_ERR_FORMAT, "%s: lmkit: expected an object, got %s", p, cfg_type(o));
  char pp[512];   /* errors read "<file>: lmkit: <key>: ..." */
  snprintf(pp, sizeof pp, "%s: lmkit", p);
  const char *norm = NULL;
  lm_status st;
  if ((st = cfg_str(o, "norm", &norm, pp))) return st;
  if (norm) {
    if (!strcmp(norm, "layer")) c->norm = LM_NORM_LAYER;
    else if (!strcmp(norm, "rms")) c->norm = LM_NORM_RMS;
    else return lm_error(LM_ERR_FORMAT, "%s: norm = \"%.64s\": expected \"layer\" or \"rms\"", pp, norm);
  }
  if ((st = cfg_bool(o, "pre_ln", &c->pre_ln, pp)) || (st = cfg_bool(o, "causal", &c->causal, pp)) ||
      (st = cfg_bool(o, "bias", &c->bias, pp)) || (st = cfg_bool(o, "share_layers", &c->share_layers, pp)))
    return st;
  return LM_OK;
}

/* ------------------------------------------------------------------ parse */
static lm_status cfg_parse_gpt2(const cJSON *r, lm_config *c, const char *p) {
  lm_status st;
  int64_t n_ctx = -1;
  int scale = 1, inv_layer = 0;
  if ((st = cfg_int(r, "vocab_size", &c->vocab_size, 0, 0, p)) ||
      (st = cfg_int(r, "n_ctx", &n_ctx, 0, 0, p)) ||
      (st = cfg_int(r, "n_positions", &c->n_positions, 0, 0, p)) ||
      (st = cfg_int(r, "n_embd", &c->n_embd, 0, 0, p)) ||
      (st = cfg_int(r, "n_layer", &c->n_layer, 0, 0, p)) ||
      (st = cfg_int(r, "n_head", &c->n_head, 0, 0, p)) ||
      (st = cfg_int(r, "n_inner", &c->n_inner, 1, 0, p)) ||
      (st = cfg_act(r, "activation_function", &c->act, p)) ||
      (st = cfg_float(r, "layer_norm_epsilon", &c->norm_eps, p)) ||
      (st = cfg_float(r, "initializer_range", &c->init_std, p)) ||
      (st = cfg_int(r, "bos_token_id", &c->bos_token_id, 1, -1, p)) ||
      (st = cfg_int(r, "eos_token_id", &c->eos_token_id, 1, -1, p)) ||
      (st = cfg_bool(r, "tie_word_embeddings", &c->tie_embeddings, p)) ||
      (st = cfg_bool(r, "scale_attn_weights", &scale, p)) ||
      (st = cfg_bool(r, "scale_attn_by_inverse_layer_idx", &inv_layer, p)))
    return st;
  /* n_ctx is the older name of n_positions; n_positions wins when both exist */
  if (n_ctx >= 0 && !cJSON_GetObjectItemCaseSensitive(r, "n_positions")) c->n_positions = n_ctx;
  if (!scale) return lm_error(LM_ERR_UNSUPPORTED, "%s: scale_attn_weights = false is not supported", p);
  if (inv_layer) return lm_error(LM_ERR_UNSUPPORTED, "%s: scale_attn_by_inverse_layer_idx = true is not supported", p);
  return LM_OK;
}

/* The task head from the HF class name; base and MLM-only classes load as pre-training
 * (absent head tensors are initialised by the loader). */
static int cfg_bert_head(const char *arch) {
  if (!strcmp(arch, "BertForSequenceClassification")) return LM_HEAD_CLASSIFY;
  if (!strcmp(arch, "BertForTokenClassification")) return LM_HEAD_TOKENS;
  if (!strcmp(arch, "BertForQuestionAnswering")) return LM_HEAD_QA;
  return LM_HEAD_PRETRAIN;
}

static const char *cfg_bert_arch(int head) {
  switch (head) {
    case LM_HEAD_CLASSIFY: return "BertForSequenceClassification";
    case LM_HEAD_TOKENS: return "BertForTokenClassification";
    case LM_HEAD_QA: return "BertForQuestionAnswering";
    default: return "BertForPreTraining";
  }
}

/* Number of labels: len(id2label), else num_labels, else len(label2id); *n left alone if none. */
static lm_status cfg_num_labels(const cJSON *r, int64_t *n, const char *p) {
  const cJSON *id2 = cJSON_GetObjectItemCaseSensitive(r, "id2label");
  const cJSON *l2i = cJSON_GetObjectItemCaseSensitive(r, "label2id");
  if (id2 && !cJSON_IsObject(id2)) return lm_error(LM_ERR_FORMAT, "%s: id2label: expected an object, got %s", p, cfg_type(id2));
  if (l2i && !cJSON_IsObject(l2i)) return lm_error(LM_ERR_FORMAT, "%s: label2id: expected an object, got %s", p, cfg_type(l2i));
  if (id2) { *n = cJSON_GetArraySize(id2); return LM_OK; }
  if (cJSON_GetObjectItemCaseSensitive(r, "num_labels")) return cfg_int(r, "num_labels", n, 0, 0, p);
  if (l2i) *n = cJSON_GetArraySize(l2i);
  return LM_OK;
}

static lm_status cfg_parse_bert(const cJSON *r, lm_config *c, const char *p) {
  lm_status st;
  int64_t type_vocab = c->type_vocab_size, pad = c->pad_token_id;
  const char *pos_type = NULL;
  if ((st = cfg_int(r, "vocab_size", &c->vocab_size, 0, 0, p)) ||
      (st = cfg_int(r, "max_position_embeddings", &c->n_positions, 0, 0, p)) ||
      (st = cfg_int(r, "hidden_size", &c->n_embd, 0, 0, p)) ||
      (st = cfg_int(r, "num_hidden_layers", &c->n_layer, 0, 0, p)) ||
      (st = cfg_int(r, "num_attention_heads", &c->n_head, 0, 0, p)) ||
      (st = cfg_int(r, "intermediate_size", &c->n_inner, 0, 0, p)) ||
      (st = cfg_act(r, "hidden_act", &c->act, p)) ||
      (st = cfg_float(r, "layer_norm_eps", &c->norm_eps, p)) ||
      (st = cfg_float(r, "initializer_range", &c->init_std, p)) ||
      (st = cfg_int(r, "bos_token_id", &c->bos_token_id, 1, -1, p)) ||
      (st = cfg_int(r, "eos_token_id", &c->eos_token_id, 1, -1, p)) ||
      (st = cfg_int(r, "pad_token_id", &pad, 1, -1, p)) ||
      (st = cfg_int(r, "type_vocab_size", &type_vocab, 0, 0, p)) ||
      (st = cfg_bool(r, "tie_word_embeddings", &c->tie_embeddings, p)) ||
      (st = cfg_str(r, "position_embedding_type", &pos_type, p)) ||
      (st = cfg_num_labels(r, &c->num_labels, p)))
    return st;
  if ((st = cfg_range(p, "type_vocab_size", type_vocab, 0, CFG_MAX_VOCAB)) ||
      (st = cfg_range(p, "pad_token_id", pad, -1, CFG_MAX_TOKEN_ID)))
    return st;
  c->type_vocab_size = type_vocab;
  c->pad_token_id = pad;
  const cJSON *a = cJSON_GetObjectItemCaseSensitive(r, "architectures");
  if (a && !cJSON_IsArray(a) && !cJSON_IsNull(a))
    return lm_error(LM_ERR_FORMAT, "%s: architectures: expected an array, got %s", p, cfg_type(a));
  const cJSON *a0 = cJSON_IsArray(a) ? cJSON_GetArrayItem(a, 0) : NULL;
  if (a0 && !cJSON_IsString(a0))
    return lm_error(LM_ERR_FORMAT, "%s: architectures[0]: expected a string, got %s", p, cfg_type(a0));
  if (a0) c->head = cfg_bert_head(a0->valuestring);
  if (pos_type && strcmp(pos_type, "absolute") != 0)
    return lm_error(LM_ERR_UNSUPPORTED, "%s: position_embedding_type = \"%.64s\" is not supported (absolute)", p,
                    pos_type);
  return LM_OK;
}

lm_status lm_config_parse(lm_config *cfg, const char *json, size_t len, const char *path_for_errors) {
  const char *p = path_for_errors ? path_for_errors : "config.json";
  if (!cfg || (!json && len)) return lm_error(LM_ERR_ARG, "%s: NULL argument", p);
  const char *end = NULL;
  cJSON *root = cJSON_ParseWithLengthOpts(json ? json : "", len, &end, 0);
  if (!root) {
    size_t at = (end && end >= json && end <= json + len) ? (size_t)(end - json) : 0;
    return lm_error(LM_ERR_FORMAT, "%s: not valid JSON (error near byte %zu)", p, at);
  }
  lm_status st = LM_OK;
  for (const char *q = end; q < json + len; q++)
    if (*q != ' ' && *q != '\t' && *q != '\n' && *q != '\r') {
      st = lm_error(LM_ERR_FORMAT, "%s: trailing bytes after the JSON object (at byte %zu)", p, (size_t)(q - json));
      goto out;
    }
  if (!cJSON_IsObject(root)) {
    st = lm_error(LM_ERR_FORMAT, "%s: expected a JSON object, got %s", p, cfg_type(root));
    goto out;
  }
  const char *mt = NULL;
  if ((st = cfg_str(root, "model_type", &mt, p))) goto out;
  if (!mt) {
    /* very old configs lack model_type; the architecture class name tells */
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(root, "architectures");
    const cJSON *a0 = cJSON_IsArray(a) ? cJSON_GetArrayItem(a, 0) : NULL;
    if (cJSON_IsString(a0) && !strncmp(a0->valuestring, "GPT2", 4)) mt = "gpt2";
    else if (cJSON_IsString(a0) && !strncmp(a0->valuestring, "Bert", 4)) mt = "bert";
    else { st = lm_error(LM_ERR_FORMAT, "%s: model_type missing", p); goto out; }
  }
  lm_config c;
  if (!strcmp(mt, "gpt2")) {
    lm_config_default(&c, LM_ARCH_GPT2);
    st = cfg_parse_gpt2(root, &c, p);
  } else if (!strcmp(mt, "bert")) {
    lm_config_default(&c, LM_ARCH_BERT);
    st = cfg_parse_bert(root, &c, p);
  } else if (!strcmp(mt, "t5") || !strcmp(mt, "bart") || !strcmp(mt, "llama")) {
    st = lm_error(LM_ERR_UNSUPPORTED, "%s: model_type \"%s\" is not supported yet (gpt2, bert)", p, mt);
  } else {
    st = lm_error(LM_ERR_UNSUPPORTED, "%s: unknown model_type \"%.64s\" (gpt2, bert)", p, mt);
  }
  if (st == LM_OK) st = cfg_lmkit(root, &c, p);
  if (st == LM_OK) st = cfg_validate_at(&c, p);
  if (st == LM_OK) *cfg = c;
out:
  cJSON_Delete(root);
  return st;
}

lm_status lm_config_load(lm_config *cfg, const char *path) {
  if (!cfg || !path) return lm_error(LM_ERR_ARG, "lm_config_load: NULL argument");
  char *text;
  size_t len;
  lm_status st = lm_read_file(path, &text, &len);
  if (st) return st;
  st = lm_config_parse(cfg, text, len, path);
  free(text);
  return st;
}

/* ------------------------------------------------------------------ save */
typedef struct { char *p; size_t n, cap; int oom, first; } cfg_out;

static void co_put(cfg_out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void co_put(cfg_out *o, const char *fmt, ...) {
  if (o->oom) return;
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(o->p ? o->p + o->n : NULL, o->p ? o->cap - o->n : 0, fmt, ap);
    va_end(ap);
    if (k < 0) { o->oom = 1; return; }
    if (o->p && o->n + (size_t)k < o->cap) { o->n += (size_t)k; return; }
    size_t cap = o->cap ? o->cap * 2 : 1024;
    while (cap < o->n + (size_t)k + 1) cap *= 2;
    char *q = realloc(o->p, cap);
    if (!q) { o->oom = 1; return; }
    o->p = q; o->cap = cap;
  }
}
/* Starts the next "key": with the comma and indentation of a 2-space HF file. */
static void co_key(cfg_out *o, const char *key) {
  co_put(o, "%s\n  \"%s\": ", o->first ? "" : ",", key);
  o->first = 0;
}
static void co_int(cfg_out *o, const char *key, int64_t v) { co_key(o, key); co_put(o, "%lld", (long long)v); }
static void co_bool(cfg_out *o, const char *key, int v) { co_key(o, key); co_put(o, "%s", v ? "true" : "false"); }
static void co_str(cfg_out *o, const char *key, const char *v) { co_key(o, key); co_put(o, "\"%s\"", v); }
static void co_raw(cfg_out *o, const char *key, const char *v) { co_key(o, key); co_put(o, "%s", v); }
static void co_id(cfg_out *o, const char *key, int64_t v) { if (v < 0) co_raw(o, key, "null"); else co_int(o, key, v); }
/* The shortest decimal that reads back as the same float (1e-05, not
 * 9.99999975e-06), written as a float so Python sees a float. */
static void co_float(cfg_out *o, const char *key, float v) {
  char s[40];
  for (int prec = 1; prec <= 9; prec++) {
    snprintf(s, sizeof s, "%.*g", prec, (double)v);
    if (strtof(s, NULL) == v) break;
  }
  if (!strpbrk(s, ".eEn")) strcat(s, ".0");
  co_key(o, key);
  co_put(o, "%s", s);
}

static const char *cfg_act_name(lm_act_kind a) {
  return a == LM_ACT_GELU_ERF ? "gelu" : a == LM_ACT_RELU ? "relu" : "gelu_new";
}

/* Writes "lmkit": {...} when the block differs from what the family's HF
 * config implies; HF ignores the key. */
static void co_lmkit(cfg_out *o, const lm_config *c) {
  lm_config d;
  lm_config_default(&d, c->arch);
  if (c->norm == d.norm && !c->pre_ln == !d.pre_ln && !c->causal == !d.causal && !c->bias == !d.bias &&
      !c->share_layers)
    return;
  co_key(o, "lmkit");
  co_put(o, "{\n    \"bias\": %s,\n    \"causal\": %s,\n    \"norm\": \"%s\",\n    \"pre_ln\": %s",
         c->bias ? "true" : "false", c->causal ? "true" : "false", c->norm == LM_NORM_RMS ? "rms" : "layer",
         c->pre_ln ? "true" : "false");
  if (c->share_layers) co_put(o, ",\n    \"share_layers\": true");
  co_put(o, "\n  }");
}

lm_status lm_config_to_json(const lm_config *c, char **json, size_t *len) {
  if (!c || !json) return lm_error(LM_ERR_ARG, "lm_config_to_json: NULL argument");
  *json = NULL;
  if (len) *len = 0;
  lm_status st = cfg_validate_at(c, "config");
  if (st) return st;
  if (c->arch != LM_ARCH_GPT2 && c->arch != LM_ARCH_BERT)
    return lm_error(LM_ERR_UNSUPPORTED, "config: saving model_type \"%s\" is not supported yet", lm_arch_name(c->arch));
  cfg_out o = {.first = 1};
  co_put(&o, "{");
  if (c->arch == LM_ARCH_GPT2) {   /* keys sorted, as transformers writes them */
    co_str(&o, "activation_function", cfg_act_name(c->act));
    co_raw(&o, "architectures", "[\n    \"GPT2LMHeadModel\"\n  ]");
    co_float(&o, "attn_pdrop", 0.1f);
    co_id(&o, "bos_token_id", c->bos_token_id);
    co_float(&o, "embd_pdrop", 0.1f);
    co_id(&o, "eos_token_id", c->eos_token_id);
    co_float(&o, "initializer_range", c->init_std);
    co_float(&o, "layer_norm_epsilon", c->norm_eps);
    co_lmkit(&o, c);
    co_str(&o, "model_type", "gpt2");
    co_int(&o, "n_ctx", c->n_positions);
    co_int(&o, "n_embd", c->n_embd);
    co_int(&o, "n_head", c->n_head);
    if (c->n_inner) co_int(&o, "n_inner", c->n_inner); else co_raw(&o, "n_inner", "null");
    co_int(&o, "n_layer", c->n_layer);
    co_int(&o, "n_positions", c->n_positions);
    co_bool(&o, "reorder_and_upcast_attn", 0);
    co_float(&o, "resid_pdrop", 0.1f);
    co_bool(&o, "scale_attn_by_inverse_layer_idx", 0);
    co_bool(&o, "scale_attn_weights", 1);
    co_bool(&o, "tie_word_embeddings", c->tie_embeddings);
    co_str(&o, "torch_dtype", "float32");
    co_str(&o, "transformers_version", CFG_TRANSFORMERS_VERSION);
    co_bool(&o, "use_cache", 1);
    co_int(&o, "vocab_size", c->vocab_size);
  } else {
    int labels = c->head == LM_HEAD_CLASSIFY || c->head == LM_HEAD_TOKENS;
    co_key(&o, "architectures");
    co_put(&o, "[\n    \"%s\"\n  ]", cfg_bert_arch(c->head));
    co_float(&o, "attention_probs_dropout_prob", 0.1f);
    if (c->bos_token_id >= 0) co_int(&o, "bos_token_id", c->bos_token_id);
    co_raw(&o, "classifier_dropout", "null");
    if (c->eos_token_id >= 0) co_int(&o, "eos_token_id", c->eos_token_id);
    co_str(&o, "hidden_act", cfg_act_name(c->act));
    co_float(&o, "hidden_dropout_prob", 0.1f);
    co_int(&o, "hidden_size", c->n_embd);
    if (labels) {   /* HF counts the labels from id2label; names are LABEL_i */
      co_key(&o, "id2label");
      co_put(&o, "{");
      for (int64_t i = 0; i < c->num_labels; i++)
        co_put(&o, "%s\n    \"%lld\": \"LABEL_%lld\"", i ? "," : "", (long long)i, (long long)i);
      co_put(&o, "\n  }");
    }
    co_float(&o, "initializer_range", c->init_std);
    co_int(&o, "intermediate_size", c->n_inner ? c->n_inner : 4 * c->n_embd);
    if (labels) {   /* keys sorted as strings: LABEL_10 before LABEL_2, as json.dumps(sort_keys) does */
      co_key(&o, "label2id");
      co_put(&o, "{");
      char (*nm)[32] = malloc((size_t)c->num_labels * sizeof *nm);
      if (!nm) o.oom = 1;
      for (int64_t i = 0; nm && i < c->num_labels; i++) snprintf(nm[i], sizeof nm[i], "LABEL_%lld", (long long)i);
      if (nm) qsort(nm, (size_t)c->num_labels, sizeof *nm, (int (*)(const void *, const void *))strcmp);
      for (int64_t i = 0; nm && i < c->num_labels; i++)
        co_put(&o, "%s\n    \"%s\": %s", i ? "," : "", nm[i], nm[i] + 6);
      free(nm);
      co_put(&o, "\n  }");
    }
    co_float(&o, "layer_norm_eps", c->norm_eps);
    co_lmkit(&o, c);
    co_int(&o, "max_position_embeddings", c->n_positions);
    co_str(&o, "model_type", "bert");
    co_int(&o, "num_attention_heads", c->n_head);
    co_int(&o, "num_hidden_layers", c->n_layer);
    co_id(&o, "pad_token_id", c->pad_token_id);
    co_str(&o, "position_embedding_type", "absolute");
    co_bool(&o, "tie_word_embeddings", c->tie_embeddings);
    co_str(&o, "torch_dtype", "float32");
    co_str(&o, "transformers_version", CFG_TRANSFORMERS_VERSION);
    co_int(&o, "type_vocab_size", c->type_vocab_size);
    co_bool(&o, "use_cache", 1);
    co_int(&o, "vocab_size", c->vocab_size);
  }
  co_put(&o, "\n}\n");
  if (o.oom) { free(o.p); return lm_error(LM_ERR_NOMEM, "config: out of memory"); }
  *json = o.p;
  if (len) *len = o.n;
  return LM_OK;
}

lm_status lm_config_save(const lm_config *cfg, const char *path) {
  if (!cfg || !path) return lm_error(LM_ERR_ARG, "lm_config_save: NULL argument");
  char *text;
  size_t len;
  lm_status st = lm_config_to_json(cfg, &text, &len);
  if (st) return lm_error_prefix(st, "%s", path);
  st = lm_write_file_atomic(path, text, len);
  free(text);
  return st;
}

/* ------------------------------------------------------------------ label names */
/* lm_config carries only num_labels, so saving writes LABEL_i; a fine-tuned classifier's real
 * names are set afterwards by rewriting id2label / label2id in the saved file. */

lm_status lm_config_set_label_names(const char *path, const char *const *names, int64_t n) {
  char *text; size_t len;
  lm_status st = lm_read_file(path, &text, &len);
  if (st) return st;
  cJSON *r = cJSON_ParseWithLength(text, len);
  free(text);
  if (!cJSON_IsObject(r)) { cJSON_Delete(r); return lm_error(LM_ERR_FORMAT, "%s: not a JSON object", path); }
  cJSON *id2 = cJSON_CreateObject(), *l2i = cJSON_CreateObject();
  for (int64_t i = 0; id2 && i < n; i++) {
    char k[32]; snprintf(k, sizeof k, "%lld", (long long)i);
    cJSON_AddStringToObject(id2, k, names[i]);
  }
  int64_t *ord = malloc((size_t)(n ? n : 1) * sizeof *ord);   /* label2id keys sorted, as transformers writes */
  for (int64_t i = 0; ord && i < n; i++) ord[i] = i;
  for (int64_t i = 1; ord && i < n; i++)
    for (int64_t j = i; j > 0 && strcmp(names[ord[j - 1]], names[ord[j]]) > 0; j--) { int64_t t = ord[j]; ord[j] = ord[j - 1]; ord[j - 1] = t; }
  for (int64_t i = 0; ord && l2i && i < n; i++) cJSON_AddNumberToObject(l2i, names[ord[i]], (double)ord[i]);
  free(ord);
  if (!id2 || !l2i || !ord) { cJSON_Delete(id2); cJSON_Delete(l2i); cJSON_Delete(r); return lm_error(LM_ERR_NOMEM, "out of memory"); }
  if (cJSON_GetObjectItemCaseSensitive(r, "id2label")) cJSON_ReplaceItemInObjectCaseSensitive(r, "id2label", id2);
  else cJSON_AddItemToObject(r, "id2label", id2);
  if (cJSON_GetObjectItemCaseSensitive(r, "label2id")) cJSON_ReplaceItemInObjectCaseSensitive(r, "label2id", l2i);
  else cJSON_AddItemToObject(r, "label2id", l2i);
  char *out = cJSON_Print(r);
  cJSON_Delete(r);
  if (!out) return lm_error(LM_ERR_NOMEM, "out of memory");
  st = lm_write_file_atomic(path, out, strlen(out));
  free(out);
  return st;
}

lm_status lm_config_label_names(const char *path, int64_t n, char ***names) {
  *names = NULL;
  char *text; size_t len;
  lm_status st = lm_read_file(path, &text, &len);
  if (st) return st;
  cJSON *r = cJSON_ParseWithLength(text, len);
  free(text);
  if (!r) return lm_error(LM_ERR_FORMAT, "%s: malformed JSON", path);
  const cJSON *id2 = cJSON_GetObjectItemCaseSensitive(r, "id2label");
  char **v = calloc((size_t)(n ? n : 1), sizeof *v);
  for (int64_t i = 0; v && i < n; i++) {
    char k[32]; snprintf(k, sizeof k, "%lld", (long long)i);
    const cJSON *x = cJSON_IsObject(id2) ? cJSON_GetObjectItemCaseSensitive(id2, k) : NULL;
    if (cJSON_IsString(x)) v[i] = lm_strdup(x->valuestring);
    else { snprintf(k, sizeof k, "LABEL_%lld", (long long)i); v[i] = lm_strdup(k); }
    if (!v[i]) { for (int64_t j = 0; j < i; j++) free(v[j]); free(v); v = NULL; }
  }
  cJSON_Delete(r);
  if (!v) return lm_error(LM_ERR_NOMEM, "out of memory");
  *names = v;
  return LM_OK;
}
