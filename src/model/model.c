/* model.c — the general transformer of DESIGN.md §3 as used by the decoder
 * families: parameter table, GPT-2 initialisation, activation arena, and the
 * forward and backward passes (token + position embedding → L blocks →
 * optional final norm → tied or untied LM head → softmax cross-entropy).
 *
 * The block is configured, not copied: causal or bidirectional attention with
 * a key padding mask, pre- or post-LN, LayerNorm or RMSNorm, GELU (tanh/erf)
 * or ReLU, biases on or off. Backward follows the forward in reverse and
 * accumulates into one flat gradient array. */
#include <math.h>
#include <string.h>
#include <stdlib.h>
#include "base/base.h"
#include "kernels/kernels.h"
#include "model/model.h"
#include "model/config.h"

/* ------------------------------------------------------------------ table */

typedef struct { lm_param_info *v; int n, cap; size_t total; } table;

static int table_add(table *t, const char *name, int64_t d0, int64_t d1, int decay) {
  if (t->n == t->cap) {
    int cap = t->cap ? t->cap * 2 : 64;
    lm_param_info *v = lm_xrealloc(t->v, cap * sizeof *v);
    if (!v) return -1;
    t->v = v; t->cap = cap;
  }
  lm_param_info *p = &t->v[t->n++];
  memset(p, 0, sizeof *p);
  snprintf(p->name, sizeof p->name, "%s", name);
  p->ndim = d1 ? 2 : 1;
  p->shape[0] = d0; p->shape[1] = d1;
  p->numel = (size_t)d0 * (size_t)(d1 ? d1 : 1);
  /* keep every tensor 16-float (64-byte) aligned for vector loads */
  p->offset = t->total;
  t->total += (p->numel + 15) & ~(size_t)15;
  p->decay = decay;
  return 0;
}

/* lets a family file add its own tensors (src/model/bert.c) without seeing the table type */
static int table_add_cb(void *t, const char *name, int64_t d0, int64_t d1, int decay) {
  return table_add((table *)t, name, d0, d1, decay);
}

static int64_t ffn_width(const lm_config *c) { return c->n_inner > 0 ? c->n_inner : 4 * c->n_embd; }

static int build_table(table *t, const lm_config *c) {
  int64_t C = c->n_embd, F = ffn_width(c), V = c->vocab_size;
  char nm[LM_MAX_NAME];
  int rms = c->norm == LM_NORM_RMS, b = c->bias;
#define ADD(n, d0, d1, dec) do { if (table_add(t, n, d0, d1, dec)) return -1; } while (0)
  ADD("wte.weight", V, C, 0);
  ADD("wpe.weight", c->n_positions, C, 0);
  /* shared layers (ALBERT): only layer 0's tensors exist; every layer points at them */
  for (int64_t l = 0; l < (c->share_layers ? 1 : c->n_layer); l++) {
#define LADD(suffix, d0, d1, dec) do { snprintf(nm, sizeof nm, "h.%lld." suffix, (long long)l); ADD(nm, d0, d1, dec); } while (0)
    LADD("ln_1.weight", C, 0, 0);
    if (!rms && b) LADD("ln_1.bias", C, 0, 0);
    LADD("attn.c_attn.weight", 3 * C, C, 1);
    if (b) LADD("attn.c_attn.bias", 3 * C, 0, 0);
    LADD("attn.c_proj.weight", C, C, 1);
    if (b) LADD("attn.c_proj.bias", C, 0, 0);
    LADD("ln_2.weight", C, 0, 0);
    if (!rms && b) LADD("ln_2.bias", C, 0, 0);
    LADD("mlp.c_fc.weight", F, C, 1);
    if (b) LADD("mlp.c_fc.bias", F, 0, 0);
    LADD("mlp.c_proj.weight", C, F, 1);
    if (b) LADD("mlp.c_proj.bias", C, 0, 0);
#undef LADD
  }
  if (c->pre_ln) {
    ADD("ln_f.weight", C, 0, 0);
    if (!rms && b) ADD("ln_f.bias", C, 0, 0);
  }
  if (!c->tie_embeddings && c->arch != LM_ARCH_BERT) ADD("lm_head.weight", V, C, 1);
  if (c->arch == LM_ARCH_BERT && lm_bert_add_params(c, t, table_add_cb)) return -1;
#undef ADD
  return 0;
}

const lm_param_info *lm_model_find_param(const lm_model *m, const char *name) {
  for (int i = 0; i < m->n_info; i++)
    if (!strcmp(m->info[i].name, name)) return &m->info[i];
  return NULL;
}

/* Points a weights view at `base` (params or grads) using the table offsets. */
static void layout(const lm_model *m, float *base, lm_weights *w) {
  char nm[LM_MAX_NAME];
#define P(n) ({ const lm_param_info *pi_ = lm_model_find_param(m, n); pi_ ? base + pi_->offset : NULL; })
  w->wte = P("wte.weight");
  w->wpe = P("wpe.weight");
  for (int64_t l = 0; l < m->cfg.n_layer; l++) {
    lm_block_weights *h = &w->h[l];
    int64_t src = m->cfg.share_layers ? 0 : l;   /* gradients of shared layers sum into layer 0 */
#define LP(suffix) (snprintf(nm, sizeof nm, "h.%lld." suffix, (long long)src), P(nm))
    h->ln1_w = LP("ln_1.weight"); h->ln1_b = LP("ln_1.bias");
    h->qkv_w = LP("attn.c_attn.weight"); h->qkv_b = LP("attn.c_attn.bias");
    h->attn_proj_w = LP("attn.c_proj.weight"); h->attn_proj_b = LP("attn.c_proj.bias");
    h->ln2_w = LP("ln_2.weight"); h->ln2_b = LP("ln_2.bias");
    h->fc_w = LP("mlp.c_fc.weight"); h->fc_b = LP("mlp.c_fc.bias");
    h->fc_proj_w = LP("mlp.c_proj.weight"); h->fc_proj_b = LP("mlp.c_proj.bias");
#undef LP
  }
  w->lnf_w = P("ln_f.weight"); w->lnf_b = P("ln_f.bias");
  w->lm_head = P("lm_head.weight");
#undef P
}

lm_status lm_model_alloc(lm_model **out, const lm_config *cfg) {
  *out = NULL;
  lm_status st = lm_config_validate(cfg);
  if (st) return st;
  lm_model *m = calloc(1, sizeof *m);
  if (!m) return lm_error(LM_ERR_NOMEM, "out of memory");
  m->cfg = *cfg;
  table t = {0};
  if (build_table(&t, cfg)) { free(t.v); free(m); return LM_ERR_NOMEM; }
  m->info = t.v; m->n_info = t.n; m->n_params = t.total;
  m->params = lm_alloc(m->n_params * sizeof(float));
  m->w.h = calloc(cfg->n_layer, sizeof(lm_block_weights));
  m->g.h = calloc(cfg->n_layer, sizeof(lm_block_weights));
  if (!m->params || !m->w.h || !m->g.h) { lm_model_free(m); return lm_error(LM_ERR_NOMEM, "out of memory for %zu parameters", t.total); }
  layout(m, m->params, &m->w);
  *out = m;
  return LM_OK;
}

/* norm gains: "ln_1.weight", "ln_f.weight", "emb_ln.weight", "mlm.ln.weight" */
static int is_norm_weight(const char *nm) {
  size_t len = strlen(nm);
  return strstr(nm, "ln_") != NULL || (len >= 9 && !strcmp(nm + len - 9, "ln.weight"));
}

void lm_model_init_weights(lm_model *m, uint64_t seed) {
  lm_rng rng;
  lm_rng_seed(&rng, seed);
  float std = m->cfg.init_std;
  int bert = m->cfg.arch == LM_ARCH_BERT;
  float proj_std = bert ? std : std / sqrtf(2.0f * (float)m->cfg.n_layer);
  memset(m->params, 0, m->n_params * sizeof(float));
  for (int i = 0; i < m->n_info; i++) {
    const lm_param_info *p = &m->info[i];
    float *x = m->params + p->offset;
    const char *nm = p->name;
    size_t len = strlen(nm);
    int is_bias = len > 5 && !strcmp(nm + len - 5, ".bias");
    int is_norm = is_norm_weight(nm);
    if (is_bias) continue;                       /* zero */
    if (is_norm) { for (size_t j = 0; j < p->numel; j++) x[j] = 1.0f; continue; }
    /* GPT-2: residual projections get std / sqrt(2 L) (they add into the residual stream L*2 times) */
    float s = strstr(nm, "c_proj.weight") ? proj_std : std;
    if (!strcmp(nm, "wpe.weight") && !bert) s = 0.01f;    /* as in GPT-2's original initialisation */
    for (size_t j = 0; j < p->numel; j++) x[j] = s * lm_rng_normal(&rng);
  }
  /* BERT (HF _init_weights): N(0, std) everywhere, and the padding token's embedding row is zero */
  int64_t pad = m->cfg.pad_token_id;
  if (bert && pad >= 0 && pad < m->cfg.vocab_size) memset(m->w.wte + pad * m->cfg.n_embd, 0, m->cfg.n_embd * sizeof(float));
}

static void free_acts(lm_model *m) {
  lm_free(m->acts.arena);
  free(m->acts.layer);
  free(m->acts.pos);
  memset(&m->acts, 0, sizeof m->acts);
  m->have_acts = 0;
}

void lm_model_free(lm_model *m) {
  if (!m) return;
  free_acts(m);
  if (m->ext_free) m->ext_free(m->ext);
  lm_free(m->params); lm_free(m->grads);
  free(m->w.h); free(m->g.h); free(m->info);
  free(m);
}

const lm_config *lm_model_config(const lm_model *m) { return &m->cfg; }

int64_t lm_model_num_params(const lm_model *m) {
  int64_t n = 0;
  for (int i = 0; i < m->n_info; i++) n += (int64_t)m->info[i].numel;
  return n;
}

lm_status lm_model_create(lm_model **out, const lm_config *cfg, uint64_t seed) {
  lm_status st = lm_model_alloc(out, cfg);
  if (st) return st;
  lm_model_init_weights(*out, seed);
  return LM_OK;
}

/* --------------------------------------------------------------- activations */

lm_status lm_model_reserve(lm_model *m, int64_t B, int64_t T, int need_grads) {
  const lm_config *c = &m->cfg;
  if (T <= 0 || B <= 0) return lm_error(LM_ERR_ARG, "batch %lld x context %lld must be positive", (long long)B, (long long)T);
  if (T > c->n_positions)
    return lm_error(LM_ERR_RANGE, "context %lld is longer than the model's %lld positions", (long long)T, (long long)c->n_positions);
  if (need_grads && !m->grads) {
    m->grads = lm_alloc(m->n_params * sizeof(float));
    if (!m->grads) return LM_ERR_NOMEM;
    layout(m, m->grads, &m->g);
  }
  if (m->have_acts && m->acts.B == B && m->acts.T == T && (!need_grads || m->acts.dres_a)) return LM_OK;
  free_acts(m);
  int64_t N = B * T, C = c->n_embd, F = ffn_width(c), V = c->vocab_size, L = c->n_layer, NH = c->n_head;
  /* logits (N,V) serve LM heads; BERT's fine-tuning heads keep their small logits in m->ext */
  if (c->arch == LM_ARCH_BERT && c->head != LM_HEAD_PRETRAIN) V = 0;
  size_t per_layer = (size_t)N * (4 * C + 4 + 3 * C + C + 2 * F) + (size_t)B * NH * T * T;
  size_t total = (size_t)N * C + per_layer * L + (size_t)N * (C + 2) + (size_t)N * V + 2 * (size_t)N;
  if (need_grads) total += (size_t)N * (4 * C + 3 * C + 2 * F) + (size_t)B * NH * T * T;
  /* each carve rounds to 16 floats; leave room */
  total += 64 * (size_t)(L * 16 + 32);
  lm_acts *a = &m->acts;
  a->arena = lm_alloc(total * sizeof(float));
  a->layer = calloc(L, sizeof(lm_layer_acts));
  a->pos = malloc(N * sizeof(int32_t));
  if (!a->arena || !a->layer || !a->pos) { free_acts(m); return lm_error(LM_ERR_NOMEM, "out of memory for activations (batch %lld x %lld)", (long long)B, (long long)T); }
  a->arena_floats = total;
  float *p = a->arena;
#define CARVE(n) ({ float *r_ = p; p += ((size_t)(n) + 15) & ~(size_t)15; r_; })
  a->emb = CARVE(N * C);
  for (int64_t l = 0; l < L; l++) {
    lm_layer_acts *la = &a->layer[l];
    la->a1 = CARVE(N * C); la->res1 = CARVE(N * C); la->a2 = CARVE(N * C); la->res2 = CARVE(N * C);
    la->mean1 = CARVE(N); la->rstd1 = CARVE(N); la->mean2 = CARVE(N); la->rstd2 = CARVE(N);
    la->qkv = CARVE(N * 3 * C); la->att = CARVE(B * NH * T * T); la->atty = CARVE(N * C);
    la->fch = CARVE(N * F); la->fch_act = CARVE(N * F);
  }
  a->lnf = CARVE(N * C); a->lnf_mean = CARVE(N); a->lnf_rstd = CARVE(N);
  a->logits = CARVE(N * V);
  a->losses = CARVE(N); a->dlosses = CARVE(N);
  if (need_grads) {
    a->dres_a = CARVE(N * C); a->dres_b = CARVE(N * C); a->dtmp = CARVE(N * C); a->datty = CARVE(N * C);
    a->dqkv = CARVE(N * 3 * C);
    a->dfch = CARVE(N * F); a->dfch_act = CARVE(N * F);
    a->datt = CARVE(B * NH * T * T);
  }
#undef CARVE
  if ((size_t)(p - a->arena) > total) { free_acts(m); return lm_error(LM_ERR_NOMEM, "internal: activation arena too small"); }
  for (int64_t i = 0; i < N; i++) a->pos[i] = (int32_t)(i % T);
  a->B = B; a->T = T;
  m->have_acts = 1;
  return LM_OK;
}

void lm_model_zero_grad(lm_model *m) {
  if (m->grads) memset(m->grads, 0, m->n_params * sizeof(float));
}

/* ------------------------------------------------------------------ forward */

static void norm_forward(const lm_config *c, float *out, float *mean, float *rstd, const float *inp,
                         const float *w, const float *b, int64_t N) {
  if (c->norm == LM_NORM_RMS) rmsnorm_forward(out, rstd, inp, w, N, c->n_embd, c->norm_eps);
  else layernorm_forward(out, mean, rstd, inp, w, b, N, c->n_embd, c->norm_eps);
}

static void norm_backward(const lm_config *c, float *dinp, float *dw, float *db, const float *dout,
                          const float *inp, const float *w, const float *mean, const float *rstd, int64_t N) {
  if (c->norm == LM_NORM_RMS) rmsnorm_backward(dinp, dw, dout, inp, w, rstd, N, c->n_embd);
  else layernorm_backward(dinp, dw, db, dout, inp, w, mean, rstd, N, c->n_embd);
}

/* attention sub-layer: out(N,C) = proj(attn(qkv(inp))) */
static void attn_forward(const lm_config *c, const lm_block_weights *w, lm_layer_acts *la, float *out,
                         const float *inp, const uint8_t *key_mask, int64_t B, int64_t T) {
  int64_t N = B * T, C = c->n_embd;
  matmul_forward(la->qkv, inp, w->qkv_w, w->qkv_b, N, C, 3 * C);
  attention_forward(la->atty, la->att, la->qkv, key_mask, B, T, C, c->n_head, c->causal);
  matmul_forward(out, la->atty, w->attn_proj_w, w->attn_proj_b, N, C, C);
}

static void mlp_forward(const lm_config *c, const lm_block_weights *w, lm_layer_acts *la, float *out,
                        const float *inp, int64_t N) {
  int64_t C = c->n_embd, F = ffn_width(c);
  matmul_forward(la->fch, inp, w->fc_w, w->fc_b, N, C, F);
  act_forward(la->fch_act, la->fch, N * F, c->act);
  matmul_forward(out, la->fch_act, w->fc_proj_w, w->fc_proj_b, N, F, C);
}

/* One block: x (N,C) -> la->res2 (N,C). `tmp` (N,C) is scratch for a sub-layer output. */
void lm_block_forward(const lm_config *c, const lm_block_weights *w, lm_layer_acts *la, const float *x,
                          float *tmp, const uint8_t *key_mask, int64_t B, int64_t T) {
  int64_t N = B * T, C = c->n_embd;
  if (c->pre_ln) {
    norm_forward(c, la->a1, la->mean1, la->rstd1, x, w->ln1_w, w->ln1_b, N);
    attn_forward(c, w, la, tmp, la->a1, key_mask, B, T);
    residual_forward(la->res1, x, tmp, N * C);
    norm_forward(c, la->a2, la->mean2, la->rstd2, la->res1, w->ln2_w, w->ln2_b, N);
    mlp_forward(c, w, la, tmp, la->a2, N);
    residual_forward(la->res2, la->res1, tmp, N * C);
  } else {
    attn_forward(c, w, la, tmp, x, key_mask, B, T);
    residual_forward(la->a1, x, tmp, N * C);
    norm_forward(c, la->res1, la->mean1, la->rstd1, la->a1, w->ln1_w, w->ln1_b, N);
    mlp_forward(c, w, la, tmp, la->res1, N);
    residual_forward(la->a2, la->res1, tmp, N * C);
    norm_forward(c, la->res2, la->mean2, la->rstd2, la->a2, w->ln2_w, w->ln2_b, N);
  }
}

/* The hidden states (N,C) that feed the LM head, after the last block (and final norm). */
static const float *final_hidden(const lm_model *m) {
  const lm_acts *a = &m->acts;
  if (m->cfg.pre_ln) return a->lnf;
  return m->cfg.n_layer ? a->layer[m->cfg.n_layer - 1].res2 : a->emb;
}

float lm_model_forward(lm_model *m, const int32_t *ids, const int32_t *targets, const uint8_t *key_mask,
                       int64_t B, int64_t T) {
  const lm_config *c = &m->cfg;
  if (c->arch == LM_ARCH_BERT) {   /* encoders have their own pass (src/model/bert.h) */
    lm_error(LM_ERR_UNSUPPORTED, "lm_model_forward: a bert model runs through lm_bert_forward");
    return NAN;
  }
  lm_acts *a = &m->acts;
  int64_t N = B * T, C = c->n_embd, V = c->vocab_size, L = c->n_layer;
  /* the caller reserved (B,T); a smaller T reuses the arena's leading rows */
  embedding_forward(a->emb, ids, m->w.wte, N, C, 0);
  for (int64_t b = 0; b < B; b++) embedding_forward(a->emb + b * T * C, a->pos, m->w.wpe, T, C, 1);
  const float *x = a->emb;
  float *tmp = a->dtmp ? a->dtmp : a->lnf; /* lnf is free until the final norm */
  for (int64_t l = 0; l < L; l++) {
    lm_block_forward(c, &m->w.h[l], &a->layer[l], x, tmp, key_mask, B, T);
    x = a->layer[l].res2;
  }
  if (c->pre_ln) norm_forward(c, a->lnf, a->lnf_mean, a->lnf_rstd, x, m->w.lnf_w, m->w.lnf_b, N);
  const float *head = c->tie_embeddings ? m->w.wte : m->w.lm_head;
  matmul_forward(a->logits, final_hidden(m), head, NULL, N, C, V);
  if (!targets) return NAN;
  crossentropy_forward(a->losses, a->logits, targets, N, V);
  double sum = 0; int64_t count = 0;
  for (int64_t i = 0; i < N; i++)
    if (targets[i] >= 0) { sum += a->losses[i]; count++; }
  for (int64_t i = 0; i < N; i++) a->dlosses[i] = (targets[i] >= 0 && count) ? 1.0f / (float)count : 0.0f;
  return count ? (float)(sum / count) : NAN;
}

/* ----------------------------------------------------------------- backward */

static void attn_backward(const lm_config *c, const lm_block_weights *w, lm_block_weights *g,
                          const lm_layer_acts *la, lm_acts *a, float *dinp, const float *dout,
                          const float *inp, int64_t B, int64_t T) {
  int64_t N = B * T, C = c->n_embd;
  memset(a->datty, 0, N * C * sizeof(float));
  matmul_backward(a->datty, g->attn_proj_w, g->attn_proj_b, dout, la->atty, w->attn_proj_w, N, C, C);
  memset(a->dqkv, 0, N * 3 * C * sizeof(float));
  attention_backward(a->dqkv, a->datt, a->datty, la->qkv, la->att, B, T, C, c->n_head);
  matmul_backward(dinp, g->qkv_w, g->qkv_b, a->dqkv, inp, w->qkv_w, N, C, 3 * C);
}

static void mlp_backward(const lm_config *c, const lm_block_weights *w, lm_block_weights *g,
                         const lm_layer_acts *la, lm_acts *a, float *dinp, const float *dout,
                         const float *inp, int64_t N) {
  int64_t C = c->n_embd, F = ffn_width(c);
  memset(a->dfch_act, 0, N * F * sizeof(float));
  matmul_backward(a->dfch_act, g->fc_proj_w, g->fc_proj_b, dout, la->fch_act, w->fc_proj_w, N, F, C);
  memset(a->dfch, 0, N * F * sizeof(float));
  act_backward(a->dfch, la->fch, a->dfch_act, N * F, c->act);
  matmul_backward(dinp, g->fc_w, g->fc_b, a->dfch, inp, w->fc_w, N, C, F);
}

/* P (N,C) holds d(layer output) on entry and d(layer input) on return; Q (N,C) is scratch.
 * Buffers accumulate, so each is zeroed or copied into before use. */
void lm_block_backward(const lm_config *c, const lm_block_weights *w, lm_block_weights *g,
                           const lm_layer_acts *la, lm_acts *a, const float *x, float *P, float *Q,
                           int64_t B, int64_t T) {
  int64_t N = B * T;
  size_t bytes = N * c->n_embd * sizeof(float);
  float *D = a->dtmp;
  if (c->pre_ln) {
    /* res2 = res1 + mlp(a2), a2 = LN2(res1) */
    memcpy(Q, P, bytes);                                    /* d res1: residual path */
    memset(D, 0, bytes);
    mlp_backward(c, w, g, la, a, D, P, la->a2, N);          /* d a2 */
    norm_backward(c, Q, g->ln2_w, g->ln2_b, D, la->res1, w->ln2_w, la->mean2, la->rstd2, N);
    /* res1 = x + attn(a1), a1 = LN1(x) */
    memcpy(P, Q, bytes);                                    /* d x: residual path */
    memset(D, 0, bytes);
    attn_backward(c, w, g, la, a, D, Q, la->a1, B, T);      /* d a1 */
    norm_backward(c, P, g->ln1_w, g->ln1_b, D, x, w->ln1_w, la->mean1, la->rstd1, N);
  } else {
    /* res2 = LN2(a2), a2 = res1 + mlp(res1) */
    memset(Q, 0, bytes);
    norm_backward(c, Q, g->ln2_w, g->ln2_b, P, la->a2, w->ln2_w, la->mean2, la->rstd2, N); /* d a2 */
    memcpy(P, Q, bytes);                                    /* d res1: residual path */
    mlp_backward(c, w, g, la, a, P, Q, la->res1, N);
    /* res1 = LN1(a1), a1 = x + attn(x) */
    memset(Q, 0, bytes);
    norm_backward(c, Q, g->ln1_w, g->ln1_b, P, la->a1, w->ln1_w, la->mean1, la->rstd1, N); /* d a1 */
    memcpy(P, Q, bytes);                                    /* d x: residual path */
    attn_backward(c, w, g, la, a, P, Q, x, B, T);
  }
}

void lm_model_backward(lm_model *m, const int32_t *ids, const int32_t *targets, const uint8_t *key_mask,
                       int64_t B, int64_t T) {
  (void)key_mask; /* the mask acts through the saved attention probabilities */
  const lm_config *c = &m->cfg;
  if (c->arch == LM_ARCH_BERT) return;   /* see lm_model_forward */
  lm_acts *a = &m->acts;
  int64_t N = B * T, C = c->n_embd, V = c->vocab_size, L = c->n_layer;
  size_t bytes = N * C * sizeof(float);
  /* loss -> logits (in place) -> hidden */
  crossentropy_backward(a->logits, a->logits, targets, a->dlosses, N, V);
  const float *head = c->tie_embeddings ? m->w.wte : m->w.lm_head;
  float *dhead = c->tie_embeddings ? m->g.wte : m->g.lm_head;
  float *P = a->dres_a, *Q = a->dres_b;
  memset(P, 0, bytes);
  if (c->pre_ln) {
    memset(Q, 0, bytes);
    matmul_backward(Q, dhead, NULL, a->logits, a->lnf, head, N, C, V);
    const float *x = L ? a->layer[L - 1].res2 : a->emb;
    norm_backward(c, P, m->g.lnf_w, m->g.lnf_b, Q, x, m->w.lnf_w, a->lnf_mean, a->lnf_rstd, N);
  } else {
    matmul_backward(P, dhead, NULL, a->logits, final_hidden(m), head, N, C, V);
  }
  for (int64_t l = L - 1; l >= 0; l--) {
    const float *x = l ? a->layer[l - 1].res2 : a->emb;
    lm_block_backward(c, &m->w.h[l], &m->g.h[l], &a->layer[l], a, x, P, Q, B, T);
  }
  embedding_backward(m->g.wte, P, ids, N, C);
  for (int64_t b = 0; b < B; b++) embedding_backward(m->g.wpe, P + b * T * C, a->pos, T, C);
}
