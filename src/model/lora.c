/* lora.c — LoRA adapters on the block's linears, their own parameter table and
 * allocation, PEFT's adapter directories, merging (see lora.h).
 *
 * The adapter of linear k of layer l is lin[l * 4 + k], a view the block reads
 * through lm_block_weights' *_lora pointers (block.c linear_forward /
 * linear_backward). A linear the family stores as several HF modules (Llama's
 * q_proj/k_proj/v_proj, BERT's query/key/value) is adapted part by part, one
 * PEFT module each: a "module" here is (layer, linear, part), MOD(l, k, p).
 * The A and B of every adapted module live in the adapter's own params/grads
 * arrays, indexed by a parameter table like the model's. Nothing here asks
 * which family it runs: Hugging Face names come from the family's hf_name. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <cblas.h>
#include <cjson/cJSON.h>
#include "base/base.h"
#include "model/heads.h"
#include "model/lora.h"
#include "model/safetensors.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

enum { QKV = 0, ATTN_PROJ, FC, FC_PROJ, KINDS };
#define NP LM_LORA_MAX_PARTS
#define MOD(l, k, p) ((((int64_t)(l)) * KINDS + (k)) * NP + (p))   /* a module's index in `adapted` */
static const char *const KIND_NAME[KINDS] = {"attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"};
static const unsigned TARGET_KINDS[] = {0xF, 1u << QKV | 1u << ATTN_PROJ, 1u << FC | 1u << FC_PROJ};
static const char *const TARGET_NAME[] = {"all-linear", "attn", "mlp"};

struct lm_lora {
  int64_t r;
  float alpha, scale;
  int rslora;                    /* scale = alpha / sqrt(r) (PEFT use_rslora) */
  char *base_model;
  char task_type[24];
  lm_param_info *info; int n_info;
  size_t n_params;
  float *params, *grads;
  int *head_src;                 /* (n_info) index in m->info of the head tensor an entry copies, or -1 */
  lm_lora_linear *lin;           /* (L * KINDS); n_parts == 0: not adapted */
  float *acts; int64_t acts_N;   /* v of every adapted linear, then dv */
  int enabled;
};

lm_status lm_lora_targets_parse(const char *s, lm_lora_targets *out) {
  for (int i = 0; i < 3; i++)
    if (s && !strcmp(s, TARGET_NAME[i])) { *out = (lm_lora_targets)i; return LM_OK; }
  return lm_error(LM_ERR_ARG, "LoRA targets '%s': expected all-linear, attn or mlp", s ? s : "(null)");
}

const char *lm_lora_targets_name(lm_lora_targets t) { return (unsigned)t < 3 ? TARGET_NAME[t] : "?"; }

int lm_lora_attached(const lm_model *m) { return m && m->lora; }

void lm_lora_info(const lm_model *m, int64_t *rank, float *alpha, int64_t *n_params) {
  const struct lm_lora *a = m ? m->lora : NULL;
  if (rank) *rank = a ? a->r : 0;
  if (alpha) *alpha = a ? a->alpha : 0;
  if (n_params) {
    *n_params = 0;
    for (int i = 0; a && i < a->n_info; i++) *n_params += (int64_t)a->info[i].numel;
  }
}

lm_trainable lm_model_trainable(const lm_model *m) {
  const struct lm_lora *a = m->lora;
  if (a) return (lm_trainable){a->info, a->n_info, a->n_params, a->params, a->grads};
  return (lm_trainable){m->info, m->n_info, m->n_params, m->params, m->grads};
}

/* ------------------------------------------------------------ shapes and names */

static void kind_dims(const lm_config *c, int k, int64_t *out, int64_t *in) {
  int64_t C = c->n_embd, F = lm_ffn_width(c);
  *out = k == QKV ? lm_qkv_width(c) : k == FC ? lm_fc_width(c) : C;
  *in = k == FC_PROJ ? F : C;
}

/* How the family stores linear k: its number of parts (HF modules), and the rows of W each covers. */
static int kind_parts(const lm_model *m, int k, int64_t *row0, int64_t *rows) {
  char ours[LM_MAX_NAME];
  snprintf(ours, sizeof ours, "h.0.%s.weight", KIND_NAME[k]);
  lm_hf_tensor t;
  int64_t out_d, in_d;
  kind_dims(&m->cfg, k, &out_d, &in_d);
  int n = m->fam->hf_name(&m->cfg, ours, -1, &t) || t.parts < 1 || t.parts > NP ? 1 : t.parts;
  for (int p = 0, at = 0; p < n; p++) {
    rows[p] = n == 1 ? out_d : t.part_rows[0] ? t.part_rows[p] : out_d / n;
    row0[p] = at;
    at += (int)rows[p];
  }
  return n;
}

static float **base_weight(lm_model *m, int64_t l, int k) {
  lm_block_weights *h = &m->w.h[l];
  float **w[KINDS] = {&h->qkv_w, &h->attn_proj_w, &h->fc_w, &h->fc_proj_w};
  return w[k];
}

static void set_views(lm_model *m, int on) {
  for (int64_t l = 0; l < m->cfg.n_layer; l++) {
    lm_block_weights *h = &m->w.h[l];
    lm_lora_linear *x = m->lora ? &m->lora->lin[l * KINDS] : NULL;
#define V(k) (on && x && x[k].n_parts ? &x[k] : NULL)
    h->qkv_lora = V(QKV); h->attn_proj_lora = V(ATTN_PROJ); h->fc_lora = V(FC); h->fc_proj_lora = V(FC_PROJ);
#undef V
  }
}

/* The Hugging Face name of one of our tensors, with the base prefix where it has one. */
static lm_status hf_full(const lm_model *m, const char *ours, char *out, size_t n, lm_hf_tensor *t) {
  if (m->fam->hf_name(&m->cfg, ours, -1, t))
    return lm_error(LM_ERR_FORMAT, "internal: the %s family has no Hugging Face name for '%s'", m->fam->model_type, ours);
  snprintf(out, n, "%s%s", t->base ? m->fam->base_prefix : "", t->name);
  return LM_OK;
}

/* The HF module name of part p of linear k of layer l (its weight's name without ".weight"). */
static lm_status module_name(const lm_model *m, int64_t l, int k, int p, char *out, size_t n, int *transpose) {
  char ours[LM_MAX_NAME], full[200];
  snprintf(ours, sizeof ours, "h.%lld.%s.weight", (long long)l, KIND_NAME[k]);
  lm_hf_tensor t;
  lm_status st = hf_full(m, ours, full, sizeof full, &t);
  if (st) return st;
  static const char *const qkv[] = {"query", "key", "value"};
  if (t.parts > 1) snprintf(out, n, full, (t.part_names ? t.part_names : qkv)[p]);
  else snprintf(out, n, "%s", full);
  size_t len = strlen(out);
  if (len > 7 && !strcmp(out + len - 7, ".weight")) out[len - 7] = 0;
  if (transpose) *transpose = t.transpose;
  return LM_OK;
}

/* Trained along as a copy: the tensors of a task head that starts untrained (PEFT modules_to_save). */
static int head_copied(const lm_model *m, const lm_param_info *p) {
  int h = m->cfg.head;
  if (h != LM_HEAD_CLASSIFY && h != LM_HEAD_SCALAR && h != LM_HEAD_TOKENS && h != LM_HEAD_QA) return 0;
  lm_hf_tensor t;
  return lm_head_is_tensor(p->name) && !m->fam->hf_name(&m->cfg, p->name, -1, &t) && !t.base;
}

static const char *task_type(int head) {
  switch (head) {
    case LM_HEAD_LM: return "CAUSAL_LM";
    case LM_HEAD_CLASSIFY: case LM_HEAD_SCALAR: return "SEQ_CLS";
    case LM_HEAD_TOKENS: return "TOKEN_CLS";
    case LM_HEAD_QA: return "QUESTION_ANS";
    default: return NULL;
  }
}

/* ------------------------------------------------------------ building */

static void lora_free(struct lm_lora *a) {
  if (!a) return;
  free(a->base_model); free(a->info); free(a->head_src); free(a->lin);
  lm_free(a->params); lm_free(a->grads); lm_free(a->acts);
  free(a);
}

static int add_entry(struct lm_lora *a, int *cap, const char *name, int64_t d0, int64_t d1, int decay, int src) {
  if (a->n_info == *cap) {
    int nc = *cap ? 2 * *cap : 64;
    lm_param_info *v = lm_xrealloc(a->info, nc * sizeof *v);
    int *s = v ? lm_xrealloc(a->head_src, nc * sizeof *s) : NULL;
    if (v) a->info = v;
    if (!s) return -1;
    a->head_src = s; *cap = nc;
  }
  lm_param_info *p = &a->info[a->n_info];
  memset(p, 0, sizeof *p);
  snprintf(p->name, sizeof p->name, "%s", name);
  p->ndim = d1 ? 2 : 1;
  p->shape[0] = d0; p->shape[1] = d1;
  p->numel = (size_t)d0 * (size_t)(d1 ? d1 : 1);
  p->offset = a->n_params;
  a->n_params += (p->numel + 15) & ~(size_t)15;
  p->decay = decay;
  a->head_src[a->n_info++] = src;
  return 0;
}

/* Builds the adapter's table and allocation for the modules marked in adapted (MOD), A and B
 * zero, head copies from the model, and points the block views at it; the model's base gradients
 * are dropped. Does not attach it to m. */
static lm_status build(lm_model *m, const uint8_t *adapted, int64_t r, float alpha, int rslora, const char *base_model,
                       struct lm_lora **out) {
  *out = NULL;
  const lm_config *c = &m->cfg;
  int64_t L = c->n_layer;
  if (c->n_enc_layer > 0)   /* the adapter covers one stack of blocks; an encoder's base would be left frozen without a path */
    return lm_error(LM_ERR_UNSUPPORTED, "LoRA on an encoder-decoder (%s) is not supported yet", lm_arch_name(c->arch));
  struct lm_lora *a = calloc(1, sizeof *a);
  if (!a) return lm_error(LM_ERR_NOMEM, "out of memory");
  a->r = r; a->alpha = alpha; a->rslora = rslora;
  a->scale = rslora ? alpha / sqrtf((float)r) : alpha / (float)r;
  a->enabled = 1;
  snprintf(a->task_type, sizeof a->task_type, "%s", task_type(c->head) ? task_type(c->head) : "");
  a->lin = calloc((size_t)(L * KINDS), sizeof *a->lin);
  a->base_model = base_model ? lm_strdup(base_model) : NULL;
  int cap = 0, fail = !a->lin || (base_model && !a->base_model);
  char nm[LM_MAX_NAME], part[16];
  int64_t row0[KINDS][NP], rows[KINDS][NP];
  int parts[KINDS];
  for (int k = 0; k < KINDS; k++) parts[k] = kind_parts(m, k, row0[k], rows[k]);
  for (int64_t l = 0; l < L && !fail; l++)
    for (int k = 0; k < KINDS && !fail; k++)
      for (int p = 0; p < parts[k] && !fail; p++) {
        if (!adapted[MOD(l, k, p)]) continue;
        int64_t out_d, in_d;
        kind_dims(c, k, &out_d, &in_d);
        if (parts[k] > 1) snprintf(part, sizeof part, ".%d", p); else part[0] = 0;
        snprintf(nm, sizeof nm, "h.%lld.%s%s.lora_A.weight", (long long)l, KIND_NAME[k], part);
        fail |= add_entry(a, &cap, nm, r, in_d, 1, -1);
        snprintf(nm, sizeof nm, "h.%lld.%s%s.lora_B.weight", (long long)l, KIND_NAME[k], part);
        fail |= add_entry(a, &cap, nm, rows[k][p], r, 1, -1);
      }
  for (int i = 0; i < m->n_info && !fail; i++)
    if (head_copied(m, &m->info[i]))
      fail |= add_entry(a, &cap, m->info[i].name, m->info[i].shape[0], m->info[i].shape[1], m->info[i].decay, i);
  if (!fail) {
    a->params = lm_alloc((a->n_params ? a->n_params : 1) * sizeof(float));
    a->grads = lm_alloc((a->n_params ? a->n_params : 1) * sizeof(float));
    fail = !a->params || !a->grads;
  }
  if (fail) { lora_free(a); return lm_error(LM_ERR_NOMEM, "out of memory for the LoRA adapter"); }
  memset(a->params, 0, a->n_params * sizeof(float));
  memset(a->grads, 0, a->n_params * sizeof(float));
  int e = 0;
  for (int64_t l = 0; l < L; l++)
    for (int k = 0; k < KINDS; k++) {
      lm_lora_linear *x = &a->lin[l * KINDS + k];
      for (int p = 0; p < parts[k]; p++) {
        if (!adapted[MOD(l, k, p)]) continue;
        x->r = r; x->scale = a->scale; x->n_parts = parts[k];
        lm_lora_part *q = &x->part[p];
        q->A = a->params + a->info[e].offset; q->dA = a->grads + a->info[e].offset; e++;
        q->B = a->params + a->info[e].offset; q->dB = a->grads + a->info[e].offset; e++;
      }
      for (int p = 0; p < x->n_parts; p++) { x->part[p].row0 = row0[k][p]; x->part[p].rows = rows[k][p]; }
    }
  for (int i = 0; i < a->n_info; i++)
    if (a->head_src[i] >= 0)
      memcpy(a->params + a->info[i].offset, m->params + m->info[a->head_src[i]].offset, a->info[i].numel * sizeof(float));
  *out = a;
  return LM_OK;
}

/* Makes a the model's adapter: drops the base gradients, points the views, redoes a reservation. */
static lm_status install(lm_model *m, struct lm_lora *a) {
  int had_acts = m->have_acts, grads = m->acts.dres_a != NULL;
  int64_t B = m->acts.B, T = m->acts.T;
  lm_free(m->grads);
  m->grads = NULL;
  for (int64_t l = 0; l < m->cfg.n_layer; l++) memset(&m->g.h[l], 0, sizeof m->g.h[l]);
  m->g.wte = m->g.wpe = m->g.lnf_w = m->g.lnf_b = NULL;
  m->lora = a;
  set_views(m, 1);
  m->ok = 0;
  return had_acts ? lm_model_reserve(m, B, T, grads) : LM_OK;
}

/* Refuses what the adapters cannot express: shared layers, Conv1D and Linear layouts mixed. */
static lm_status check_kinds(const lm_model *m, unsigned kinds, int *transpose) {
  if (m->cfg.share_layers)
    return lm_error(LM_ERR_UNSUPPORTED, "LoRA on a model with shared layers (ALBERT, --share-layers) is not supported");
  int tr = -1;
  for (int k = 0; k < KINDS; k++) {
    if (!(kinds >> k & 1)) continue;
    char mod[200];
    int t;
    lm_status st = module_name(m, 0, k, 0, mod, sizeof mod, &t);
    if (st) return st;
    if (tr >= 0 && t != tr)
      return lm_error(LM_ERR_UNSUPPORTED, "the %s family mixes Conv1D and Linear layouts among the LoRA targets", m->fam->model_type);
    tr = t;
  }
  if (transpose) *transpose = tr > 0;
  return LM_OK;
}

lm_status lm_lora_attach(lm_model *m, const lm_lora_opts *o) {
  if (!m || !o) return lm_error(LM_ERR_ARG, "LoRA: NULL model or options");
  if (m->lora) return lm_error(LM_ERR_ARG, "LoRA: the model already has an adapter");
  if (lm_model_check_f32(m, "a LoRA adapter")) return LM_ERR_UNSUPPORTED;
  if (o->rank < 1 || o->rank > 65536) return lm_error(LM_ERR_ARG, "LoRA rank %lld must be in 1..65536", (long long)o->rank);
  if (!isfinite(o->alpha) || o->alpha <= 0) return lm_error(LM_ERR_ARG, "LoRA alpha %g must be positive", o->alpha);
  if ((unsigned)o->targets > LM_LORA_MLP) return lm_error(LM_ERR_ARG, "LoRA: unknown targets %d", (int)o->targets);
  unsigned kinds = TARGET_KINDS[o->targets];
  lm_status st = check_kinds(m, kinds, NULL);
  if (st) return st;
  int64_t L = m->cfg.n_layer;
  uint8_t *adapted = calloc((size_t)(L * KINDS * NP), 1);
  if (!adapted) return lm_error(LM_ERR_NOMEM, "out of memory");
  for (int64_t i = 0; i < L * KINDS * NP; i++) adapted[i] = kinds >> (i / NP % KINDS) & 1;   /* every part */
  struct lm_lora *a;
  st = build(m, adapted, o->rank, o->alpha, 0, o->base_model, &a);
  free(adapted);
  if (st) return st;
  /* PEFT's default: A ~ kaiming_uniform_(a = sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)); B = 0 */
  lm_rng rng;
  lm_rng_seed(&rng, o->seed);
  for (int64_t i = 0; i < L * KINDS; i++) {
    lm_lora_linear *x = &a->lin[i];
    int64_t out_d, in_d;
    kind_dims(&m->cfg, (int)(i % KINDS), &out_d, &in_d);
    for (int p = 0; p < x->n_parts; p++) {
      if (!x->part[p].A) continue;
      float bound = 1.0f / sqrtf((float)in_d), *A = (float *)x->part[p].A;
      for (int64_t j = 0; j < x->r * in_d; j++) A[j] = bound * (2.0f * lm_rng_uniform(&rng) - 1.0f);
    }
  }
  st = install(m, a);
  if (st) lm_lora_detach(m);
  return st;
}

void lm_lora_detach(lm_model *m) {
  if (!m || !m->lora) return;
  struct lm_lora *a = m->lora;
  set_views(m, 0);
  m->lora = NULL;
  lora_free(a);
  m->ok = 0;
  /* the head's views pointed into the adapter: point them back at the model */
  if (m->have_acts) lm_model_reserve(m, m->acts.B, m->acts.T, 0);
}

void lm_lora_enable(lm_model *m, int on) {
  if (!m || !m->lora) return;
  m->lora->enabled = on != 0;
  set_views(m, on != 0);
  m->ok = 0;
}

lm_status lm_lora_reserve(lm_model *m, int64_t B, int64_t T) {
  struct lm_lora *a = m->lora;
  int64_t N = B * T, L = m->cfg.n_layer, n = 0;
  for (int64_t i = 0; i < L * KINDS; i++)
    for (int p = 0; p < a->lin[i].n_parts; p++) n += a->lin[i].part[p].A != NULL;
  if (a->acts && a->acts_N >= N) return LM_OK;
  lm_free(a->acts);
  a->acts = lm_alloc((size_t)(n + 1) * (size_t)(N * a->r) * sizeof(float));
  if (!a->acts) { a->acts_N = 0; return lm_error(LM_ERR_NOMEM, "out of memory for the LoRA activations"); }
  a->acts_N = N;
  float *p = a->acts;
  float *dv = a->acts + (size_t)n * (size_t)(N * a->r);
  for (int64_t i = 0; i < L * KINDS; i++) {
    a->lin[i].dv = dv;
    for (int k = 0; k < a->lin[i].n_parts; k++)
      if (a->lin[i].part[k].A) { a->lin[i].part[k].v = p; p += N * a->r; }
  }
  return LM_OK;
}

float *lm_lora_head_tensor(const lm_model *m, const char *name, int grad) {
  const struct lm_lora *a = m->lora;
  for (int i = 0; a && i < a->n_info; i++)
    if (a->head_src[i] >= 0 && !strcmp(a->info[i].name, name)) return (grad ? a->grads : a->params) + a->info[i].offset;
  return NULL;
}

/* ------------------------------------------------------------ merge */

lm_status lm_lora_merge(lm_model *m) {
  if (!m || !m->lora) return lm_error(LM_ERR_ARG, "LoRA merge: the model has no adapter");
  struct lm_lora *a = m->lora;
  int64_t L = m->cfg.n_layer;
  for (int64_t i = 0; i < L * KINDS; i++) {
    const lm_lora_linear *x = &a->lin[i];
    int64_t out_d, in_d;
    kind_dims(&m->cfg, (int)(i % KINDS), &out_d, &in_d);
    float *W = *base_weight(m, i / KINDS, (int)(i % KINDS));
    for (int k = 0; k < x->n_parts; k++) {
      const lm_lora_part *q = &x->part[k];
      if (!q->A) continue;
      /* W[part rows] (rows, in) += scale * B (rows, r) @ A (r, in) */
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)q->rows, (int)in_d, (int)x->r, x->scale, q->B,
                  (int)x->r, q->A, (int)in_d, 1.0f, W + q->row0 * in_d, (int)in_d);
    }
  }
  for (int i = 0; i < a->n_info; i++)
    if (a->head_src[i] >= 0)
      memcpy(m->params + m->info[a->head_src[i]].offset, a->params + a->info[i].offset, a->info[i].numel * sizeof(float));
  lm_lora_detach(m);
  return LM_OK;
}

/* ------------------------------------------------------------ target_modules */

/* PEFT's check_target_module_exists: a string is a regex that must match the whole module name
 * (re.fullmatch); a list matches a name equal to an entry or ending in "." + entry; "all-linear"
 * is every linear but the output layer. re: the compiled string form, or NULL. */
static int target_match(const cJSON *tm, pcre2_code *re, const char *key) {
  if (cJSON_IsString(tm)) {
    if (!strcmp(tm->valuestring, "all-linear")) return 1;
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    if (!md) return 0;
    int rc = pcre2_match(re, (PCRE2_SPTR)key, strlen(key), 0, PCRE2_ANCHORED | PCRE2_ENDANCHORED, md, NULL);
    pcre2_match_data_free(md);
    return rc >= 0;
  }
  size_t kl = strlen(key);
  const cJSON *e;
  cJSON_ArrayForEach(e, tm) {
    if (!cJSON_IsString(e)) continue;
    size_t n = strlen(e->valuestring);
    if (!strcmp(key, e->valuestring)) return 1;
    if (kl > n && key[kl - n - 1] == '.' && !strcmp(key + kl - n, e->valuestring)) return 1;
  }
  return 0;
}

static lm_status compile_target(const cJSON *tm, pcre2_code **re, const char *path) {
  *re = NULL;
  if (!cJSON_IsString(tm) || !strcmp(tm->valuestring, "all-linear")) return LM_OK;
  int err; PCRE2_SIZE off;
  *re = pcre2_compile((PCRE2_SPTR)tm->valuestring, PCRE2_ZERO_TERMINATED, PCRE2_UTF, &err, &off, NULL);
  if (!*re) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    return lm_error(LM_ERR_FORMAT, "%s: target_modules regex '%s': %s at offset %zu", path, tm->valuestring, (char *)msg, (size_t)off);
  }
  return LM_OK;
}

static int n_parts(const lm_model *m, int k) {
  int64_t r0[NP], rows[NP];
  return kind_parts(m, k, r0, rows);
}
/* every module (l, k, p) of the model's blocks */
#define FOR_MODULES(m, l, k, p)                   \
  for (int64_t l = 0; l < (m)->cfg.n_layer; l++) \
    for (int k = 0; k < KINDS; k++)              \
      for (int p = 0; p < n_parts(m, k); p++)

/* Does tm select exactly the adapted modules among every 2-D tensor's module of the model? */
static int selects_exactly(const lm_model *m, const cJSON *tm, const uint8_t *adapted) {
  pcre2_code *re;
  if (compile_target(tm, &re, "")) return 0;
  int ok = 1;
  char mod[200];
  FOR_MODULES(m, l, k, p) {
    if (!ok) break;
    ok = !module_name(m, l, k, p, mod, sizeof mod, NULL) && target_match(tm, re, mod) == adapted[MOD(l, k, p)];
  }
  /* no other matrix of the model (embeddings, heads) may match */
  for (int i = 0; i < m->n_info && ok; i++) {
    const lm_param_info *p = &m->info[i];
    if (p->ndim != 2 || !strncmp(p->name, "h.", 2)) continue;
    lm_hf_tensor t;
    if (hf_full(m, p->name, mod, sizeof mod, &t)) continue;
    size_t len = strlen(mod);
    if (len > 7 && !strcmp(mod + len - 7, ".weight")) mod[len - 7] = 0;
    ok = !target_match(tm, re, mod);
  }
  if (re) pcre2_code_free(re);
  return ok;
}

/* The after-the-layer-index part of a module name: "transformer.h.0.attn.c_proj" -> "attn.c_proj". */
static const char *layer_suffix(const char *mod, int64_t l) {
  char tok[32];
  snprintf(tok, sizeof tok, ".%lld.", (long long)l);
  const char *p = strstr(mod, tok);
  return p ? p + strlen(tok) : mod;
}

static void add_unique(cJSON *arr, const char *s) {
  const cJSON *e;
  cJSON_ArrayForEach(e, arr) if (!strcmp(e->valuestring, s)) return;
  cJSON_AddItemToArray(arr, cJSON_CreateString(s));
}

/* target_modules for the adapted linears: the shortest honest form. A list of leaf names (c_attn)
 * when those select exactly the adapted modules; else a list of within-layer paths (attn.c_proj,
 * which tells GPT-2's two c_proj apart); else a regex of the exact module names. */
static cJSON *target_modules(const lm_model *m, const uint8_t *adapted) {
  char mod[200];
  for (int form = 0; form < 2; form++) {
    cJSON *arr = cJSON_CreateArray();
    FOR_MODULES(m, l, k, p) {
      if (!adapted[MOD(l, k, p)] || module_name(m, l, k, p, mod, sizeof mod, NULL)) continue;
      const char *s = layer_suffix(mod, l);
      if (form == 0 && strrchr(s, '.')) s = strrchr(s, '.') + 1;
      add_unique(arr, s);
    }
    if (selects_exactly(m, arr, adapted)) return arr;
    cJSON_Delete(arr);
  }
  size_t cap = 64, n = 0;
  char *re = malloc(cap);
  if (!re) return NULL;
  n += (size_t)snprintf(re, cap, "(?:");
  int first = 1;
  FOR_MODULES(m, l, k, p) {
      if (!adapted[MOD(l, k, p)] || module_name(m, l, k, p, mod, sizeof mod, NULL)) continue;
      if (n + 2 * strlen(mod) + 8 > cap) {
        char *g = lm_xrealloc(re, cap = 2 * cap + 2 * strlen(mod) + 8);
        if (!g) { free(re); return NULL; }
        re = g;
      }
      if (!first) re[n++] = '|';
      first = 0;
      for (const char *c = mod; *c; c++) { if (*c == '.') re[n++] = '\\'; re[n++] = *c; }
      re[n] = 0;
    }
  snprintf(re + n, cap - n, ")");
  cJSON *s = cJSON_CreateString(re);
  free(re);
  return s;
}

/* ------------------------------------------------------------ save */

lm_status lm_lora_save(const lm_model *m, const char *dir) {
  const struct lm_lora *a = m ? m->lora : NULL;
  if (!a) return lm_error(LM_ERR_ARG, "LoRA save: the model has no adapter");
  lm_status st = lm_mkdir_p(dir);
  if (st) return st;
  int64_t L = m->cfg.n_layer;
  uint8_t *adapted = calloc((size_t)(L * KINDS * NP), 1);
  lm_st_entry *e = calloc((size_t)a->n_info + 1, sizeof *e);
  char (*names)[240] = calloc((size_t)a->n_info + 1, sizeof *names);
  cJSON *cfg = cJSON_CreateObject(), *saved = cJSON_CreateArray();
  if (!adapted || !e || !names || !cfg || !saved) { st = lm_error(LM_ERR_NOMEM, "out of memory"); goto done; }
  int n = 0, transpose = 0;
  char mod[200];
  FOR_MODULES(m, l, k, p) {
    if (st) break;
    const lm_lora_linear *x = &a->lin[l * KINDS + k];
    if (p >= x->n_parts || !x->part[p].A) continue;
    adapted[MOD(l, k, p)] = 1;
    int tr;
    if ((st = module_name(m, l, k, p, mod, sizeof mod, &tr))) break;
    transpose |= tr;
    int64_t out_d, in_d;
    kind_dims(&m->cfg, k, &out_d, &in_d);
    snprintf(names[n], sizeof names[n], "base_model.model.%s.lora_A.weight", mod);
    e[n] = (lm_st_entry){.name = names[n], .ndim = 2, .shape = {x->r, in_d}, .data = x->part[p].A}; n++;
    snprintf(names[n], sizeof names[n], "base_model.model.%s.lora_B.weight", mod);
    e[n] = (lm_st_entry){.name = names[n], .ndim = 2, .shape = {x->part[p].rows, x->r}, .data = x->part[p].B}; n++;
  }
  for (int i = 0; i < a->n_info && !st; i++) {
    if (a->head_src[i] < 0) continue;
    const lm_param_info *p = &a->info[i];
    lm_hf_tensor t;
    if ((st = hf_full(m, p->name, mod, sizeof mod, &t))) break;
    if (t.parts > 1) { st = lm_error(LM_ERR_UNSUPPORTED, "LoRA save: head tensor '%s' is stored in parts", p->name); break; }
    snprintf(names[n], sizeof names[n], "base_model.model.%s", mod);
    e[n] = (lm_st_entry){.name = names[n], .ndim = p->ndim, .data = a->params + p->offset, .transpose = t.transpose && p->ndim == 2};
    e[n].shape[0] = e[n].transpose ? p->shape[1] : p->shape[0];
    e[n].shape[1] = e[n].transpose ? p->shape[0] : p->shape[1];
    n++;
    size_t len = strlen(mod);   /* the module: the name without .weight / .bias */
    if (len > 7 && !strcmp(mod + len - 7, ".weight")) mod[len - 7] = 0;
    else if (len > 5 && !strcmp(mod + len - 5, ".bias")) mod[len - 5] = 0;
    add_unique(saved, mod);
  }
  if (st) goto done;
  cJSON *tm = target_modules(m, adapted);
  if (!tm) { st = lm_error(LM_ERR_NOMEM, "out of memory"); goto done; }
  /* PEFT's LoraConfig keys (json.dump(sort_keys=True)): those lmkit does not use keep PEFT's defaults */
  cJSON_AddItemToObject(cfg, "alpha_pattern", cJSON_CreateObject());
  cJSON_AddNullToObject(cfg, "auto_mapping");
  if (a->base_model) cJSON_AddStringToObject(cfg, "base_model_name_or_path", a->base_model);
  else cJSON_AddNullToObject(cfg, "base_model_name_or_path");
  cJSON_AddStringToObject(cfg, "bias", "none");
  cJSON_AddBoolToObject(cfg, "fan_in_fan_out", transpose);
  cJSON_AddBoolToObject(cfg, "inference_mode", 1);
  cJSON_AddBoolToObject(cfg, "init_lora_weights", 1);
  cJSON_AddNullToObject(cfg, "layers_pattern");
  cJSON_AddNullToObject(cfg, "layers_to_transform");
  cJSON_AddNumberToObject(cfg, "lora_alpha", a->alpha);
  cJSON_AddNumberToObject(cfg, "lora_dropout", 0.0);
  if (cJSON_GetArraySize(saved) > 0) { cJSON_AddItemToObject(cfg, "modules_to_save", saved); saved = NULL; }
  else cJSON_AddNullToObject(cfg, "modules_to_save");
  cJSON_AddStringToObject(cfg, "peft_type", "LORA");
  cJSON_AddNumberToObject(cfg, "r", (double)a->r);
  cJSON_AddItemToObject(cfg, "rank_pattern", cJSON_CreateObject());
  cJSON_AddNullToObject(cfg, "revision");
  cJSON_AddItemToObject(cfg, "target_modules", tm);
  if (a->task_type[0]) cJSON_AddStringToObject(cfg, "task_type", a->task_type);
  else cJSON_AddNullToObject(cfg, "task_type");
  cJSON_AddBoolToObject(cfg, "use_dora", 0);
  cJSON_AddBoolToObject(cfg, "use_rslora", a->rslora);
  char *text = cJSON_Print(cfg);
  char *wpath = lm_path_join(dir, "adapter_model.safetensors"), *cpath = lm_path_join(dir, "adapter_config.json");
  if (!text || !wpath || !cpath) st = lm_error(LM_ERR_NOMEM, "out of memory");
  if (!st) st = lm_st_write(wpath, e, n, NULL);
  if (!st) st = lm_write_file_atomic(cpath, text, strlen(text));
  free(text); free(wpath); free(cpath);
done:
  cJSON_Delete(cfg); cJSON_Delete(saved);
  free(adapted); free(e); free(names);
  return st;
}

/* ------------------------------------------------------------ load */

static lm_status read_config(const char *dir, cJSON **out, char **path_out) {
  *out = NULL;
  char *path = lm_path_join(dir, "adapter_config.json");
  if (!path) return LM_ERR_NOMEM;
  char *text; size_t len;
  lm_status st = lm_read_file(path, &text, &len);
  if (st) { lm_error_prefix(st, "%s is not a PEFT adapter directory", dir); free(path); return st; }
  cJSON *j = cJSON_ParseWithLength(text, len);
  free(text);
  if (!cJSON_IsObject(j)) { cJSON_Delete(j); st = lm_error(LM_ERR_FORMAT, "%s: not a JSON object", path); free(path); return st; }
  *out = j;
  *path_out = path;
  return LM_OK;
}

int lm_lora_is_adapter_dir(const char *dir) {
  char *p = lm_path_join(dir, "adapter_config.json");
  int ok = p && lm_file_exists(p);
  free(p);
  return ok;
}

lm_status lm_lora_base_model(const char *dir, char **out) {
  *out = NULL;
  cJSON *j; char *path;
  lm_status st = read_config(dir, &j, &path);
  if (st) return st;
  const cJSON *b = cJSON_GetObjectItemCaseSensitive(j, "base_model_name_or_path");
  if (!cJSON_IsString(b) || !b->valuestring[0])
    st = lm_error(LM_ERR_FORMAT, "%s: no base_model_name_or_path: name the base model (--model)", path);
  else if (!(*out = lm_strdup(b->valuestring))) st = LM_ERR_NOMEM;
  cJSON_Delete(j);
  free(path);
  return st;
}

/* a JSON value that PEFT leaves at its default when unused: null, false, {} or [] */
static int unset(const cJSON *v) {
  return !v || cJSON_IsNull(v) || cJSON_IsFalse(v) || ((cJSON_IsObject(v) || cJSON_IsArray(v)) && !v->child);
}

lm_status lm_lora_load(lm_model *m, const char *dir) {
  if (!m) return lm_error(LM_ERR_ARG, "LoRA load: NULL model");
  if (m->lora) return lm_error(LM_ERR_ARG, "LoRA load: the model already has an adapter");
  if (lm_model_check_f32(m, "a LoRA adapter")) return LM_ERR_UNSUPPORTED;
  cJSON *j; char *cpath;
  lm_status st = read_config(dir, &j, &cpath);
  if (st) return st;
  char *wpath = lm_path_join(dir, "adapter_model.safetensors");
  lm_st_file *f = NULL;
  uint8_t *adapted = NULL, *used = NULL, *layer_ok = NULL;
  pcre2_code *re = NULL;
  struct lm_lora *a = NULL;
  int64_t L = m->cfg.n_layer;
  const cJSON *pt = cJSON_GetObjectItemCaseSensitive(j, "peft_type"), *r = cJSON_GetObjectItemCaseSensitive(j, "r"),
              *al = cJSON_GetObjectItemCaseSensitive(j, "lora_alpha"),
              *tm = cJSON_GetObjectItemCaseSensitive(j, "target_modules"),
              *bias = cJSON_GetObjectItemCaseSensitive(j, "bias"),
              *rs = cJSON_GetObjectItemCaseSensitive(j, "use_rslora"),
              *lt = cJSON_GetObjectItemCaseSensitive(j, "layers_to_transform");
  if (!wpath) { st = LM_ERR_NOMEM; goto done; }
  if (!cJSON_IsString(pt) || strcmp(pt->valuestring, "LORA")) {
    st = lm_error(LM_ERR_UNSUPPORTED, "%s: peft_type is %s%s%s: only LORA adapters are supported", cpath,
                  cJSON_IsString(pt) ? "'" : "", cJSON_IsString(pt) ? pt->valuestring : "missing", cJSON_IsString(pt) ? "'" : "");
    goto done;
  }
  if (!cJSON_IsNumber(r) || r->valuedouble < 1 || r->valuedouble > 65536 || r->valuedouble != floor(r->valuedouble)) {
    st = lm_error(LM_ERR_FORMAT, "%s: r must be an integer in 1..65536", cpath); goto done;
  }
  if (!cJSON_IsNumber(al) || !isfinite(al->valuedouble)) { st = lm_error(LM_ERR_FORMAT, "%s: lora_alpha must be a number", cpath); goto done; }
  if (!(cJSON_IsString(tm) || cJSON_IsArray(tm)) || (cJSON_IsArray(tm) && !tm->child)) {
    st = lm_error(LM_ERR_FORMAT, "%s: target_modules must be a string (regex) or a non-empty list of names", cpath); goto done;
  }
  if (bias && !cJSON_IsNull(bias) && !(cJSON_IsString(bias) && !strcmp(bias->valuestring, "none"))) {
    st = lm_error(LM_ERR_UNSUPPORTED, "%s: bias '%s': only \"none\" is supported (trained biases are not)", cpath,
                  cJSON_IsString(bias) ? bias->valuestring : "?");
    goto done;
  }
  static const char *const unsupported[] = {"use_dora", "rank_pattern", "alpha_pattern", "target_parameters",
                                             "trainable_token_indices", "layer_replication", "use_qalora"};
  for (size_t i = 0; i < sizeof unsupported / sizeof *unsupported; i++)
    if (!unset(cJSON_GetObjectItemCaseSensitive(j, unsupported[i]))) {
      st = lm_error(LM_ERR_UNSUPPORTED, "%s: %s is set: lmkit supports plain LoRA (one r and lora_alpha for every module)", cpath, unsupported[i]);
      goto done;
    }
  int rslora = cJSON_IsTrue(rs);
  int64_t rank = (int64_t)r->valuedouble;
  if ((st = compile_target(tm, &re, cpath))) goto done;
  /* layers_to_transform: an index or a list of them, or null */
  layer_ok = malloc((size_t)L + 1);
  adapted = calloc((size_t)(L * KINDS * NP) + 1, 1);
  if (!layer_ok || !adapted) { st = LM_ERR_NOMEM; goto done; }
  memset(layer_ok, !lt || cJSON_IsNull(lt), (size_t)L);
  if (cJSON_IsNumber(lt) && lt->valuedouble >= 0 && lt->valuedouble < L) layer_ok[(int64_t)lt->valuedouble] = 1;
  else if (cJSON_IsArray(lt)) {
    const cJSON *e;
    cJSON_ArrayForEach(e, lt) if (cJSON_IsNumber(e) && e->valuedouble >= 0 && e->valuedouble < L) layer_ok[(int64_t)e->valuedouble] = 1;
  }
  char mod[200], nm[240];
  unsigned kinds = 0;
  FOR_MODULES(m, l, k, p) {
    if ((st = module_name(m, l, k, p, mod, sizeof mod, NULL))) goto done;
    if (layer_ok[l] && target_match(tm, re, mod)) { adapted[MOD(l, k, p)] = 1; kinds |= 1u << k; }
  }
  if (!kinds) {
    st = lm_error(LM_ERR_FORMAT, "%s: target_modules matches none of the %s model's linear layers (e.g. %s)", cpath,
                  m->fam->model_type, (module_name(m, 0, 0, 0, mod, sizeof mod, NULL), mod));
    goto done;
  }
  if ((st = check_kinds(m, kinds, NULL))) { lm_error_prefix(st, "%s", cpath); goto done; }
  if ((st = lm_st_open(&f, wpath))) goto done;
  used = calloc((size_t)lm_st_count(f) + 1, 1);
  if (!used) { st = LM_ERR_NOMEM; goto done; }
  char *bm = NULL;
  const cJSON *b = cJSON_GetObjectItemCaseSensitive(j, "base_model_name_or_path");
  if (cJSON_IsString(b)) bm = b->valuestring;
  if ((st = build(m, adapted, rank, (float)al->valuedouble, rslora, bm, &a))) goto done;
  FOR_MODULES(m, l, k, p) {
    if (st) break;
    lm_lora_linear *x = &a->lin[l * KINDS + k];
    if (p >= x->n_parts || !x->part[p].A) continue;
    int64_t out_d, in_d;
    kind_dims(&m->cfg, k, &out_d, &in_d);
    module_name(m, l, k, p, mod, sizeof mod, NULL);
    for (int ab = 0; ab < 2 && !st; ab++) {
      snprintf(nm, sizeof nm, "base_model.model.%s.lora_%c.weight", mod, ab ? 'B' : 'A');
      int idx = lm_st_find(f, nm);
      if (idx < 0) { st = lm_error(LM_ERR_FORMAT, "%s: missing tensor '%s' (target_modules selects %s)", wpath, nm, mod); break; }
      int64_t shape[2] = {ab ? x->part[p].rows : rank, ab ? rank : in_d};
      st = lm_st_read_f32(f, idx, (float *)(ab ? x->part[p].B : x->part[p].A), shape, 2, 0);
      used[idx] = 1;
    }
  }
  /* a trained head (modules_to_save): from the file when it is there */
  for (int i = 0; i < a->n_info && !st; i++) {
    if (a->head_src[i] < 0) continue;
    const lm_param_info *p = &a->info[i];
    lm_hf_tensor t;
    if ((st = hf_full(m, p->name, mod, sizeof mod, &t))) break;
    snprintf(nm, sizeof nm, "base_model.model.%s", mod);
    int idx = lm_st_find(f, nm);
    if (idx < 0) continue;
    int64_t shape[2] = {t.transpose ? p->shape[1] : p->shape[0], t.transpose ? p->shape[0] : p->shape[1]};
    st = lm_st_read_f32(f, idx, a->params + p->offset, shape, p->ndim, t.transpose && p->ndim == 2);
    used[idx] = 1;
  }
  for (int i = 0; i < lm_st_count(f) && !st; i++)
    if (!used[i])
      st = lm_error(LM_ERR_FORMAT, "%s: unexpected tensor '%s' (not a LoRA A/B of a module target_modules selects in this "
                    "%lld-layer %s model, nor its head)", wpath, lm_st_name(f, i), (long long)L, m->fam->model_type);
  if (!st) { st = install(m, a); if (st) { m->lora = NULL; set_views(m, 0); } else a = NULL; }
done:
  lora_free(a);
  if (re) pcre2_code_free(re);
  lm_st_close(f);
  free(used); free(adapted); free(layer_ok);
  free(wpath); free(cpath);
  cJSON_Delete(j);
  return st;
}
