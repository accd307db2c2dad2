/* config.c — lm_config <-> Hugging Face config.json (see config.h).
 *
 * The family file (src/model/families/) knows its keys: defaults, parse and
 * write go through its lm_family hooks. This file holds what every family
 * shares: the typed getters and the writer (config_io.h), model_type and
 * architectures (which family, which head), the labels, and the "lmkit"
 * block.
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
#include "model/config_io.h"
#include "model/family.h"
#include "model/heads.h"

/* Upper bounds far above any real model, low enough that products of them
 * (parameter counts, activation sizes) cannot overflow int64. */
#define CFG_MAX_VOCAB    ((int64_t)1 << 24)
#define CFG_MAX_POS      ((int64_t)1 << 20)
#define CFG_MAX_EMBD     ((int64_t)1 << 16)
#define CFG_MAX_LAYER    ((int64_t)1024)
#define CFG_MAX_INNER    ((int64_t)1 << 20)
#define CFG_MAX_TOKEN_ID ((int64_t)1 << 31)

#define CFG_MAX_LABELS   ((int64_t)1 << 20)

/* ------------------------------------------------------------------ names and defaults */
const char *lm_arch_name(lm_arch arch) {
  lm_config c = {.arch = arch};
  const lm_family *f = lm_family_of(&c);
  if (f) return f->model_type;
  /* the lm_arch values of lmkit.h, for families that have no file in src/model/families/ yet */
  static const char *const planned[] = {"gpt2", "bert", "t5", "bart", "llama"};
  return (unsigned)arch < sizeof planned / sizeof *planned ? planned[arch] : "unknown";
}

void lm_config_default(lm_config *cfg, lm_arch arch) {
  memset(cfg, 0, sizeof *cfg);
  /* the shape every family starts from: GPT-2 small, Hugging Face's GPT2Config() */
  cfg->arch = arch;
  cfg->vocab_size = 50257; cfg->n_positions = 1024; cfg->n_embd = 768; cfg->n_layer = 12; cfg->n_head = 12;
  cfg->norm = LM_NORM_LAYER; cfg->pre_ln = 1; cfg->act = LM_ACT_GELU_TANH; cfg->causal = 1; cfg->bias = 1;
  cfg->tie_embeddings = 1; cfg->norm_eps = 1e-5f; cfg->init_std = 0.02f;
  cfg->bos_token_id = cfg->eos_token_id = cfg->pad_token_id = -1;
  cfg->num_labels = 2; cfg->head = LM_HEAD_LM;
  cfg->cls_pdrop = -1;
  const lm_family *f = lm_family_of(cfg);
  if (f) f->defaults(cfg);
}

/* ------------------------------------------------------------------ validation */
lm_status lm_cfg_range(const char *p, const char *key, int64_t v, int64_t lo, int64_t hi) {
  if (v < lo || v > hi)
    return lm_error(LM_ERR_RANGE, "%s: %s = %lld is out of range (%lld..%lld)", p, key, (long long)v, (long long)lo,
                    (long long)hi);
  return LM_OK;
}

static lm_status cfg_validate_at(const lm_config *c, const char *p) {
  const lm_family *f = lm_family_of(c);
  if (!f) return lm_error(LM_ERR_UNSUPPORTED, "%s: model_type \"%s\" is not supported (%s)", p, lm_arch_name(c->arch), lm_family_list());
  lm_status st;
  if ((st = lm_cfg_range(p, f->keys.vocab, c->vocab_size, 1, CFG_MAX_VOCAB)) ||
      (st = lm_cfg_range(p, f->keys.pos, c->n_positions, 1, CFG_MAX_POS)) ||
      (st = lm_cfg_range(p, f->keys.embd, c->n_embd, 1, CFG_MAX_EMBD)) ||
      (st = lm_cfg_range(p, f->keys.layer, c->n_layer, f->own_body ? 0 : 1, f->own_body ? 0 : CFG_MAX_LAYER)) ||
      (st = lm_cfg_range(p, f->keys.head, c->n_head, 1, CFG_MAX_EMBD)) ||
      (st = lm_cfg_range(p, f->keys.inner, c->n_inner, 0, CFG_MAX_INNER)) ||
      (st = lm_cfg_range(p, "bos_token_id", c->bos_token_id, -1, CFG_MAX_TOKEN_ID)) ||
      (st = lm_cfg_range(p, "eos_token_id", c->eos_token_id, -1, CFG_MAX_TOKEN_ID)) ||
      (st = lm_cfg_range(p, "pad_token_id", c->pad_token_id, -1, c->vocab_size - 1)) ||
      (st = lm_cfg_range(p, "num_labels", c->num_labels, 1, CFG_MAX_LABELS)))
    return st;
  if (!c->head_dim && c->n_embd % c->n_head != 0)
    return lm_error(LM_ERR_RANGE, "%s: %s = %lld is not divisible by %s = %lld", p, f->keys.embd, (long long)c->n_embd,
                    f->keys.head, (long long)c->n_head);
  if (!(c->norm_eps > 0 && c->norm_eps < 1))
    return lm_error(LM_ERR_RANGE, "%s: %s = %g must be in (0, 1)", p, f->keys.eps, (double)c->norm_eps);
  if (!(c->init_std >= 0 && c->init_std <= 10))
    return lm_error(LM_ERR_RANGE, "%s: %s = %g must be in [0, 10]", p, f->keys.init, (double)c->init_std);
  if ((unsigned)c->norm > LM_NORM_RMS) return lm_error(LM_ERR_ARG, "%s: unknown norm kind %d", p, (int)c->norm);
  if ((unsigned)c->act > LM_ACT_SILU) return lm_error(LM_ERR_ARG, "%s: unknown activation %d", p, (int)c->act);
  if (c->head_dim < 0 || c->head_dim > CFG_MAX_EMBD || c->n_enc_layer < 0 || c->n_enc_layer > CFG_MAX_LAYER)
    return lm_error(LM_ERR_RANGE, "%s: head_dim = %lld or %lld encoder layers out of range", p, (long long)c->head_dim,
                    (long long)c->n_enc_layer);
  if (c->n_kv_head < 0 || c->n_kv_head > c->n_head || (c->n_kv_head && c->n_head % c->n_kv_head))
    return lm_error(LM_ERR_RANGE, "%s: %lld key/value heads do not divide %lld heads", p, (long long)c->n_kv_head,
                    (long long)c->n_head);
  if (c->rope && ((c->n_embd / c->n_head) % 2 || !(c->rope_theta > 0)))
    return lm_error(LM_ERR_RANGE, "%s: rotary embeddings need an even head size and rope_theta > 0", p);
  if (c->sliding_window < 0) return lm_error(LM_ERR_RANGE, "%s: sliding_window must be >= 0", p);
  const float drops[3] = {c->embd_pdrop, c->attn_pdrop, c->resid_pdrop};
  for (int i = 0; i < 3; i++)
    if (!(drops[i] >= 0 && drops[i] < 1))
      return lm_error(LM_ERR_RANGE, "%s: %s = %g: a dropout rate must be in [0, 1)", p, f->keys.drop[i] ? f->keys.drop[i] : "dropout",
                      (double)drops[i]);
  if (!(c->act_pdrop >= 0 && c->act_pdrop < 1) || (c->act_pdrop > 0 && !f->act_dropout))
    return lm_error(LM_ERR_RANGE, "%s: activation dropout %g: a rate in [0, 1), and 0 for a family that has none", p,
                    (double)c->act_pdrop);
  if (!(c->cls_pdrop < 1)) return lm_error(LM_ERR_RANGE, "%s: classifier_dropout = %g: a dropout rate must be in [0, 1)", p,
                                          (double)c->cls_pdrop);
  if (c->n_eos < 0 || c->n_eos > LM_MAX_EOS) return lm_error(LM_ERR_RANGE, "%s: %d eos ids", p, c->n_eos);
  if ((unsigned)c->share_layers > 1) return lm_error(LM_ERR_ARG, "%s: share_layers = %d must be 0 or 1", p, c->share_layers);
  if (c->head < 0 || c->head >= LM_HEAD_COUNT) return lm_error(LM_ERR_ARG, "%s: unknown head %d", p, c->head);
  if (!lm_family_class_for(f, c->head)) {
    char list[512];
    lm_family_class_list(f, list, sizeof list);
    return lm_error(LM_ERR_UNSUPPORTED, "%s: the %s family has no %s head (its classes: %s)", p, f->model_type,
                    lm_head_name(c->head), list);
  }
  if (c->head == LM_HEAD_CLASSIFY && c->num_labels < 2)
    return lm_error(LM_ERR_UNSUPPORTED, "%s: num_labels = %lld: a classifier needs 2 or more (1 is the scalar head)", p,
                    (long long)c->num_labels);
  return f->validate ? f->validate(c, p) : LM_OK;
}

lm_status lm_config_validate(const lm_config *cfg) {
  if (!cfg) return lm_error(LM_ERR_ARG, "lm_config_validate: NULL config");
  return cfg_validate_at(cfg, "config");
}

/* ------------------------------------------------------------------ typed getters */
/* Each getter leaves *out alone when the key is absent, so defaults stand. */
const char *lm_cfg_type(const cJSON *j) {
  if (cJSON_IsString(j)) return "a string";
  if (cJSON_IsNumber(j)) return "a number";
  if (cJSON_IsBool(j)) return "a boolean";
  if (cJSON_IsNull(j)) return "null";
  if (cJSON_IsArray(j)) return "an array";
  return "an object";
}

/* Integer key; `null_value` is stored for JSON null when nullable, else null is an error. */
lm_status lm_cfg_int(const cJSON *o, const char *key, int64_t *out, int nullable, int64_t null_value,
                         const char *p) {
  const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, key);
  if (!j) return LM_OK;
  if (nullable && cJSON_IsNull(j)) { *out = null_value; return LM_OK; }
  if (!cJSON_IsNumber(j))
    return lm_error(LM_ERR_FORMAT, "%s: %s: expected an integer%s, got %s", p, key, nullable ? " or null" : "",
                    lm_cfg_type(j));
  double v = j->valuedouble;
  /* |v| <= 2^53: exact in a double, and far beyond every range check */
  if (!isfinite(v) || floor(v) != v || fabs(v) > 9007199254740992.0)
    return lm_error(LM_ERR_FORMAT, "%s: %s = %g is not an integer", p, key, v);
  *out = (int64_t)v;
  return LM_OK;
}

lm_status lm_cfg_float(const cJSON *o, const char *key, float *out, const char *p) {
  const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, key);
  if (!j) return LM_OK;
  if (!cJSON_IsNumber(j)) return lm_error(LM_ERR_FORMAT, "%s: %s: expected a number, got %s", p, key, lm_cfg_type(j));
  float f = (float)j->valuedouble;
  if (!isfinite(f)) return lm_error(LM_ERR_RANGE, "%s: %s = %g is out of range", p, key, j->valuedouble);
  if (j->valuedouble != 0 && f == 0)
    return lm_error(LM_ERR_RANGE, "%s: %s = %g is too small for fp32", p, key, j->valuedouble);
  *out = f;
  return LM_OK;
}

lm_status lm_cfg_bool(const cJSON *o, const char *key, int *out, const char *p) {
  const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, key);
  if (!j) return LM_OK;
  if (!cJSON_IsBool(j)) return lm_error(LM_ERR_FORMAT, "%s: %s: expected true or false, got %s", p, key, lm_cfg_type(j));
  *out = cJSON_IsTrue(j);
  return LM_OK;
}

lm_status lm_cfg_str(const cJSON *o, const char *key, const char **out, const char *p) {
  const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, key);
  if (!j) return LM_OK;
  if (!cJSON_IsString(j)) return lm_error(LM_ERR_FORMAT, "%s: %s: expected a string, got %s", p, key, lm_cfg_type(j));
  *out = j->valuestring;
  return LM_OK;
}

lm_status lm_cfg_act(const cJSON *o, const char *key, lm_act_kind *out, const char *p) {
  const char *s = NULL;
  lm_status st = lm_cfg_str(o, key, &s, p);
  if (st || !s) return st;
  /* gelu_new, gelu_fast and gelu_pytorch_tanh are the same tanh approximation */
  if (!strcmp(s, "gelu_new") || !strcmp(s, "gelu_pytorch_tanh") || !strcmp(s, "gelu_fast")) *out = LM_ACT_GELU_TANH;
  else if (!strcmp(s, "gelu") || !strcmp(s, "gelu_python")) *out = LM_ACT_GELU_ERF;
  else if (!strcmp(s, "relu")) *out = LM_ACT_RELU;
  else if (!strcmp(s, "silu") || !strcmp(s, "swish")) *out = LM_ACT_SILU;
  else
    return lm_error(LM_ERR_UNSUPPORTED, "%s: %s = \"%.64s\" is not supported (gelu, gelu_new, gelu_pytorch_tanh, relu, silu)",
                    p, key, s);
  return LM_OK;
}

/* The "lmkit" sub-object: knobs of our block with no HF key for this family. */
static lm_status cfg_lmkit(const cJSON *root, lm_config *c, const char *p) {
  const cJSON *o = cJSON_GetObjectItemCaseSensitive(root, "lmkit");
  if (!o) return LM_OK;
  if (!cJSON_IsObject(o)) return lm_error(LM_ERR_FORMAT, "%s: lmkit: expected an object, got %s", p, lm_cfg_type(o));
  char pp[512];   /* errors read "<file>: lmkit: <key>: ..." */
  snprintf(pp, sizeof pp, "%s: lmkit", p);
  const char *norm = NULL;
  lm_status st;
  if ((st = lm_cfg_str(o, "norm", &norm, pp))) return st;
  if (norm) {
    if (!strcmp(norm, "layer")) c->norm = LM_NORM_LAYER;
    else if (!strcmp(norm, "rms")) c->norm = LM_NORM_RMS;
    else return lm_error(LM_ERR_FORMAT, "%s: norm = \"%.64s\": expected \"layer\" or \"rms\"", pp, norm);
  }
  if ((st = lm_cfg_bool(o, "pre_ln", &c->pre_ln, pp)) || (st = lm_cfg_bool(o, "causal", &c->causal, pp)) ||
      (st = lm_cfg_bool(o, "bias", &c->bias, pp)) || (st = lm_cfg_bool(o, "share_layers", &c->share_layers, pp)))
    return st;
  return LM_OK;
}

/* Number of labels: len(id2label), else num_labels, else len(label2id); *n left alone if none. */
static lm_status cfg_num_labels(const cJSON *r, int64_t *n, const char *p) {
  const cJSON *id2 = cJSON_GetObjectItemCaseSensitive(r, "id2label");
  const cJSON *l2i = cJSON_GetObjectItemCaseSensitive(r, "label2id");
  if (id2 && !cJSON_IsObject(id2)) return lm_error(LM_ERR_FORMAT, "%s: id2label: expected an object, got %s", p, lm_cfg_type(id2));
  if (l2i && !cJSON_IsObject(l2i)) return lm_error(LM_ERR_FORMAT, "%s: label2id: expected an object, got %s", p, lm_cfg_type(l2i));
  if (id2) { *n = cJSON_GetArraySize(id2); return LM_OK; }
  if (cJSON_GetObjectItemCaseSensitive(r, "num_labels")) return lm_cfg_int(r, "num_labels", n, 0, 0, p);
  if (l2i) *n = cJSON_GetArraySize(l2i);
  return LM_OK;
}

/* The head from architectures[0] (absent: the family's default); a class the family does not
 * have is an error listing those it has. A sequence classifier with one label is the scalar head. */
static lm_status cfg_head(const cJSON *r, const lm_family *f, lm_config *c, const char *p) {
  const cJSON *a = cJSON_GetObjectItemCaseSensitive(r, "architectures");
  if (a && !cJSON_IsArray(a) && !cJSON_IsNull(a))
    return lm_error(LM_ERR_FORMAT, "%s: architectures: expected an array, got %s", p, lm_cfg_type(a));
  const cJSON *a0 = cJSON_IsArray(a) ? cJSON_GetArrayItem(a, 0) : NULL;
  if (a0 && !cJSON_IsString(a0))
    return lm_error(LM_ERR_FORMAT, "%s: architectures[0]: expected a string, got %s", p, lm_cfg_type(a0));
  if (a0) {
    int headless = 0, h = lm_family_head_of(f, a0->valuestring, &headless);
    if (h < 0) {
      char list[512];
      lm_family_class_list(f, list, sizeof list);
      return lm_error(LM_ERR_UNSUPPORTED, "%s: architectures \"%.80s\" is not supported for model_type %s (%s)", p,
                      a0->valuestring, f->model_type, list);
    }
    c->head = h;
  }
  if (c->head == LM_HEAD_CLASSIFY && c->num_labels == 1) c->head = LM_HEAD_SCALAR;
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
    st = lm_error(LM_ERR_FORMAT, "%s: expected a JSON object, got %s", p, lm_cfg_type(root));
    goto out;
  }
  const char *mt = NULL;
  if ((st = lm_cfg_str(root, "model_type", &mt, p))) goto out;
  const lm_family *f = NULL;
  if (mt) {
    f = lm_family_by_type(mt);
    if (!f) { st = lm_error(LM_ERR_UNSUPPORTED, "%s: model_type \"%.64s\" is not supported (%s)", p, mt, lm_family_list()); goto out; }
  } else {
    /* very old configs lack model_type; the architecture class name tells */
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(root, "architectures");
    const cJSON *a0 = cJSON_IsArray(a) ? cJSON_GetArrayItem(a, 0) : NULL;
    if (cJSON_IsString(a0)) f = lm_family_by_class(a0->valuestring);
    if (!f) { st = lm_error(LM_ERR_FORMAT, "%s: model_type missing", p); goto out; }
  }
  lm_config c;
  lm_config_default(&c, f->arch);
  int64_t pad = c.pad_token_id;
  if ((st = f->parse(root, &c, p)) || (st = lm_cfg_int(root, "pad_token_id", &pad, 1, -1, p)) ||
      (st = lm_cfg_range(p, "pad_token_id", pad, -1, CFG_MAX_TOKEN_ID)) || (st = cfg_num_labels(root, &c.num_labels, p)) ||
      (st = cfg_head(root, f, &c, p)) || (st = cfg_lmkit(root, &c, p)))
    goto out;
  c.pad_token_id = pad;
  st = cfg_validate_at(&c, p);
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
static void co_put(lm_cfg_writer *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void co_put(lm_cfg_writer *o, const char *fmt, ...) {
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
static void co_key(lm_cfg_writer *o, const char *key) {
  co_put(o, "%s\n  \"%s\": ", o->first ? "" : ",", key);
  o->first = 0;
}
void lm_cfgw_int(lm_cfg_writer *o, const char *key, int64_t v) { co_key(o, key); co_put(o, "%lld", (long long)v); }
void lm_cfgw_bool(lm_cfg_writer *o, const char *key, int v) { co_key(o, key); co_put(o, "%s", v ? "true" : "false"); }
void lm_cfgw_str(lm_cfg_writer *o, const char *key, const char *v) { co_key(o, key); co_put(o, "\"%s\"", v); }
void lm_cfgw_raw(lm_cfg_writer *o, const char *key, const char *v) { co_key(o, key); co_put(o, "%s", v); }
void lm_cfgw_id(lm_cfg_writer *o, const char *key, int64_t v) { if (v < 0) lm_cfgw_raw(o, key, "null"); else lm_cfgw_int(o, key, v); }
/* The shortest decimal that reads back as the same float (1e-05, not
 * 9.99999975e-06), written as a float so Python sees a float. */
void lm_cfg_float_text(float v, char s[40]) {
  for (int prec = 1; prec <= 9; prec++) {
    snprintf(s, 40, "%.*g", prec, (double)v);
    if (strtof(s, NULL) == v) break;
  }
  if (!strpbrk(s, ".eEn")) strcat(s, ".0");
}

void lm_cfgw_float(lm_cfg_writer *o, const char *key, float v) {
  char s[40];
  lm_cfg_float_text(v, s);
  co_key(o, key);
  co_put(o, "%s", s);
}

const char *lm_cfg_act_name(lm_act_kind a) {
  return a == LM_ACT_GELU_ERF ? "gelu" : a == LM_ACT_RELU ? "relu" : a == LM_ACT_SILU ? "silu" : "gelu_new";
}

void lm_cfgw_architectures(lm_cfg_writer *o, const lm_config *c) {
  co_key(o, "architectures");
  co_put(o, "[\n    \"%s\"\n  ]", lm_family_class_for(lm_family_of(c), c->head));
}

int lm_cfg_has_labels(const lm_config *c) {
  return c->head == LM_HEAD_CLASSIFY || c->head == LM_HEAD_TOKENS || c->head == LM_HEAD_SCALAR;
}
static int64_t cfg_labels(const lm_config *c) { return c->head == LM_HEAD_SCALAR ? 1 : c->num_labels; }

/* HF counts the labels from id2label; names are LABEL_i (lm_config_set_label_names writes real ones) */
void lm_cfgw_id2label(lm_cfg_writer *o, const lm_config *c) {
  if (!lm_cfg_has_labels(c)) return;
  co_key(o, "id2label");
  co_put(o, "{");
  for (int64_t i = 0; i < cfg_labels(c); i++)
    co_put(o, "%s\n    \"%lld\": \"LABEL_%lld\"", i ? "," : "", (long long)i, (long long)i);
  co_put(o, "\n  }");
}

/* keys sorted as strings: LABEL_10 before LABEL_2, as json.dumps(sort_keys) does */
void lm_cfgw_label2id(lm_cfg_writer *o, const lm_config *c) {
  if (!lm_cfg_has_labels(c)) return;
  int64_t n = cfg_labels(c);
  co_key(o, "label2id");
  co_put(o, "{");
  char (*nm)[32] = malloc((size_t)n * sizeof *nm);
  if (!nm) o->oom = 1;
  for (int64_t i = 0; nm && i < n; i++) snprintf(nm[i], sizeof nm[i], "LABEL_%lld", (long long)i);
  if (nm) qsort(nm, (size_t)n, sizeof *nm, (int (*)(const void *, const void *))strcmp);
  for (int64_t i = 0; nm && i < n; i++) co_put(o, "%s\n    \"%s\": %s", i ? "," : "", nm[i], nm[i] + 6);
  free(nm);
  co_put(o, "\n  }");
}

/* Writes "lmkit": {...} when the block differs from what the family's HF
 * config implies; HF ignores the key. */
void lm_cfgw_lmkit(lm_cfg_writer *o, const lm_config *c) {
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
  lm_cfg_writer o = {.first = 1};
  co_put(&o, "{");
  lm_family_of(c)->write(&o, c);
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

void lm_config_set_dropout(lm_config *cfg, float p, float p_attn) {
  if (p < 0 && p_attn < 0) return;
  const lm_family *f = lm_family_of(cfg);
  if (p >= 0) cfg->embd_pdrop = cfg->resid_pdrop = f && f->hidden_dropout ? p : 0;
  if (p >= 0) cfg->cls_pdrop = -1;   /* the heads' dropout follows (HF's null) */
  if (p >= 0) cfg->act_pdrop = f && f->act_dropout ? p : 0;
  cfg->attn_pdrop = p_attn >= 0 ? p_attn : p;
}
