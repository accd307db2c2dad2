/* model.c — family → blocks → head (see model.h): the parameter table over
 * one allocation, initialisation, the activation arena, and the forward and
 * backward passes of any family with any head.
 *
 * The family file supplies the embeddings and its own tensors (family.h);
 * the blocks are block.c's; the head is heads.c's. Nothing here asks which
 * family or head it runs: differences are properties and hooks of those
 * objects. Backward follows the forward in reverse and accumulates into one
 * flat gradient array. */
#include <math.h>
#include <string.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>
#include "base/base.h"
#include "kernels/kernels.h"
#include "kernels/mm.h"
#include "model/model.h"
#include "kernels/qgemm.h"
#include "model/heads.h"
#include "model/config.h"
#include "model/lora.h"

/* ------------------------------------------------------------------ table */

struct lm_param_table { lm_param_info *v; int n, cap; size_t total; };

int lm_table_add(lm_param_table *t, const char *name, int64_t d0, int64_t d1, int decay) {
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

/* One stack of L blocks named <prefix>l.*: shared layers (ALBERT) have only layer 0's tensors, and
 * every layer points at them; cross: each block has a cross-attention sub-layer (the decoder of an
 * encoder-decoder). */
static int add_stack(lm_param_table *t, const lm_config *c, const char *prefix, int64_t L, int cross) {
  int64_t C = c->n_embd, F = lm_ffn_width(c), QKV = lm_qkv_width(c), A = lm_attn_width(c);
  char nm[LM_MAX_NAME];
  int rms = c->norm == LM_NORM_RMS, b = c->bias;
  for (int64_t l = 0; l < (c->share_layers ? 1 : L); l++) {
#define LADD(suffix, d0, d1, dec) do { snprintf(nm, sizeof nm, "%s%lld." suffix, prefix, (long long)l); \
                                       if (lm_table_add(t, nm, d0, d1, dec)) return -1; } while (0)
    LADD("ln_1.weight", C, 0, 0);
    if (!rms && b) LADD("ln_1.bias", C, 0, 0);
    LADD("attn.c_attn.weight", QKV, C, 1);
    if (b || c->qkv_bias) LADD("attn.c_attn.bias", QKV, 0, 0);
    LADD("attn.c_proj.weight", C, A, 1);
    if (b) LADD("attn.c_proj.bias", C, 0, 0);
    if (cross) {
      LADD("ln_x.weight", C, 0, 0);
      if (!rms && b) LADD("ln_x.bias", C, 0, 0);
      LADD("xattn.q.weight", A, C, 1);
      if (b) LADD("xattn.q.bias", A, 0, 0);
      LADD("xattn.kv.weight", 2 * A, C, 1);
      if (b) LADD("xattn.kv.bias", 2 * A, 0, 0);
      LADD("xattn.c_proj.weight", C, A, 1);
      if (b) LADD("xattn.c_proj.bias", C, 0, 0);
    }
    LADD("ln_2.weight", C, 0, 0);
    if (!rms && b) LADD("ln_2.bias", C, 0, 0);
    LADD("mlp.c_fc.weight", lm_fc_width(c), C, 1);
    if (b) LADD("mlp.c_fc.bias", lm_fc_width(c), 0, 0);
    LADD("mlp.c_proj.weight", C, F, 1);
    if (b) LADD("mlp.c_proj.bias", C, 0, 0);
#undef LADD
  }
  char ln[LM_MAX_NAME];
  const char *stack = strncmp(prefix, "enc.", 4) ? "" : "enc.";
  if (c->rel_buckets > 0) {   /* T5: one relative position bias table per stack */
    snprintf(ln, sizeof ln, "%srel_bias.weight", stack);
    if (lm_table_add(t, ln, c->rel_buckets, c->n_head, 0)) return -1;
  }
  if (c->pre_ln) {   /* the final norm of pre-LN stacks */
    snprintf(ln, sizeof ln, "%sln_f.weight", stack);
    if (lm_table_add(t, ln, C, 0, 0)) return -1;
    snprintf(ln, sizeof ln, "%sln_f.bias", stack);
    if (!rms && b && lm_table_add(t, ln, C, 0, 0)) return -1;
  }
  return 0;
}

/* the blocks: an encoder-decoder's encoder stack ("enc.h.N"), then the (decoder) stack "h.N" */
static int add_blocks(lm_param_table *t, const lm_config *c) {
  if (c->n_enc_layer > 0 && add_stack(t, c, "enc.h.", c->n_enc_layer, 0)) return -1;
  return add_stack(t, c, "h.", c->n_layer, c->n_enc_layer > 0);
}

static int build_table(lm_param_table *t, const lm_config *c, const lm_family *f) {
  if (f->add_embeddings(c, t) || add_blocks(t, c)) return -1;
  if (f->add_final && f->add_final(c, t)) return -1;
  return lm_head_add_params(c, f, t);
}

const lm_param_info *lm_model_find_param(const lm_model *m, const char *name) {
  for (int i = 0; i < m->n_info; i++)
    if (!strcmp(m->info[i].name, name)) return &m->info[i];
  return NULL;
}

float *lm_model_tensor(const lm_model *m, const float *base, const char *name) {
  const lm_param_info *p = lm_model_find_param(m, name);
  return p && base ? (float *)base + p->offset : NULL;
}

float *lm_model_param(const lm_model *m, const char *name, int grad) {
  float *p = m->lora ? lm_lora_head_tensor(m, name, grad) : NULL;
  return p ? p : lm_model_tensor(m, grad ? m->grads : m->params, name);
}

/* Points a weights view at `base` (params or grads) using the table offsets. */
static void layout(const lm_model *m, float *base, lm_weights *w) {
  char nm[LM_MAX_NAME];
#define P(n) lm_model_tensor(m, base, n)
  w->wte = P("wte.weight");
  w->wpe = P("wpe.weight");
  for (int enc = 0; enc < 2; enc++) {   /* the (decoder) stack "h.N", then an encoder's "enc.h.N" */
    const char *pre = enc ? "enc.h." : "h.";
    for (int64_t l = 0; l < (enc ? m->cfg.n_enc_layer : m->cfg.n_layer); l++) {
      lm_block_weights *h = enc ? &w->enc_h[l] : &w->h[l];
      int64_t src = m->cfg.share_layers ? 0 : l;   /* gradients of shared layers sum into layer 0 */
#define LP(suffix) (snprintf(nm, sizeof nm, "%s%lld." suffix, pre, (long long)src), P(nm))
      h->ln1_w = LP("ln_1.weight"); h->ln1_b = LP("ln_1.bias");
      h->qkv_w = LP("attn.c_attn.weight"); h->qkv_b = LP("attn.c_attn.bias");
      h->attn_proj_w = LP("attn.c_proj.weight"); h->attn_proj_b = LP("attn.c_proj.bias");
      h->ln2_w = LP("ln_2.weight"); h->ln2_b = LP("ln_2.bias");
      h->fc_w = LP("mlp.c_fc.weight"); h->fc_b = LP("mlp.c_fc.bias");
      h->fc_proj_w = LP("mlp.c_proj.weight"); h->fc_proj_b = LP("mlp.c_proj.bias");
      h->lnx_w = LP("ln_x.weight"); h->lnx_b = LP("ln_x.bias");
      h->xq_w = LP("xattn.q.weight"); h->xq_b = LP("xattn.q.bias");
      h->xkv_w = LP("xattn.kv.weight"); h->xkv_b = LP("xattn.kv.bias");
      h->xproj_w = LP("xattn.c_proj.weight"); h->xproj_b = LP("xattn.c_proj.bias");
#undef LP
    }
  }
  w->lnf_w = P("ln_f.weight"); w->lnf_b = P("ln_f.bias");
  w->enc_lnf_w = P("enc.ln_f.weight"); w->enc_lnf_b = P("enc.ln_f.bias");
  w->rel_bias = P("rel_bias.weight"); w->enc_rel_bias = P("enc.rel_bias.weight");
#undef P
}

static lm_status model_alloc(lm_model **out, const lm_config *cfg, int qonly) {
  *out = NULL;
  lm_status st = lm_config_validate(cfg);
  if (st) return st;
  const lm_family *f = lm_family_of(cfg);
  lm_model *m = calloc(1, sizeof *m);
  if (!m) return lm_error(LM_ERR_NOMEM, "out of memory");
  m->cfg = *cfg;
  m->fam = f;
  lm_param_table t = {0};
  if (build_table(&t, cfg, f)) { free(t.v); free(m); return lm_error(LM_ERR_NOMEM, "out of memory"); }
  m->info = t.v; m->n_info = t.n; m->n_params = t.total;
  if (qonly) {   /* address space only: no memory is committed until lm_model_keep */
    m->qonly = 1;
    void *p = mmap(NULL, m->n_params * sizeof(float), PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p != MAP_FAILED) { m->params = p; m->params_map = m->n_params * sizeof(float); }
  } else m->params = lm_alloc(m->n_params * sizeof(float));
  m->w.h = calloc(cfg->n_layer, sizeof(lm_block_weights));
  m->g.h = calloc(cfg->n_layer, sizeof(lm_block_weights));
  m->w.enc_h = calloc(cfg->n_enc_layer + 1, sizeof(lm_block_weights));
  m->g.enc_h = calloc(cfg->n_enc_layer + 1, sizeof(lm_block_weights));
  if (!m->params || !m->w.h || !m->g.h || !m->w.enc_h || !m->g.enc_h) { lm_model_free(m); return lm_error(LM_ERR_NOMEM, "out of memory for %zu parameters", t.total); }
  layout(m, m->params, &m->w);
  st = lm_rope_table(cfg, &m->rope);
  if (st) { lm_model_free(m); return st; }
  *out = m;
  return LM_OK;
}

lm_status lm_model_alloc(lm_model **out, const lm_config *cfg) { return model_alloc(out, cfg, 0); }
lm_status lm_model_alloc_qonly(lm_model **out, const lm_config *cfg) { return model_alloc(out, cfg, 1); }

lm_status lm_model_keep(lm_model *m, const lm_param_info *p) {
  if (!m->params_map) return LM_OK;
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  uintptr_t a = (uintptr_t)(m->params + p->offset), b = (uintptr_t)(m->params + p->offset + p->numel);
  a &= ~(uintptr_t)(page - 1); b = (b + page - 1) & ~(uintptr_t)(page - 1);
  if (mprotect((void *)a, b - a, PROT_READ | PROT_WRITE))
    return lm_error(LM_ERR_NOMEM, "out of memory for tensor '%s' (%zu values)", p->name, p->numel);
  return LM_OK;
}

lm_status lm_model_check_f32(const lm_model *m, const char *what) {
  if (!m->qonly) return LM_OK;
  return lm_error(LM_ERR_UNSUPPORTED, "%s needs the f32 weights: this model was loaded for generation only (its quantized "
                  "weights have no f32 copy); load the GGUF file dequantized instead", what);
}

void lm_model_embed_rows(const lm_model *m, const int32_t *ids, int64_t n, float *out) {
  const lm_qmat *q = NULL;
  if (m->qonly && m->qlin) {
    q = &m->qlin[LM_QL_EMB(m)];
    if (!q->data && m->cfg.tie_embeddings) q = &m->qlin[LM_QL_HEAD(m)];
    if (!q->data) q = NULL;
  }
  int64_t C = m->cfg.n_embd;
  if (!q) { embedding_forward(out, ids, m->w.wte, n, C, 0); return; }
  for (int64_t i = 0; i < n; i++) lm_qmat_dequantize(q, ids[i], 1, out + i * C);
}

/* norm gains: "ln_1.weight", "ln_f.weight", "emb_ln.weight", "mlm.ln.weight" */
static int is_norm_weight(const char *nm) {
  size_t len = strlen(nm);
  return strstr(nm, "ln_") != NULL || (len >= 9 && !strcmp(nm + len - 9, "ln.weight"));
}

void lm_model_init_tensor(lm_model *m, const lm_param_info *p, lm_rng *r) {
  float *x = m->params + p->offset;
  const char *nm = p->name;
  size_t len = strlen(nm);
  if (len > 5 && !strcmp(nm + len - 5, ".bias")) { memset(x, 0, p->numel * sizeof(float)); return; }
  if (is_norm_weight(nm)) { for (size_t j = 0; j < p->numel; j++) x[j] = 1.0f; return; }
  float s = m->fam->init_std ? m->fam->init_std(&m->cfg, nm) : NAN;
  if (isnan(s)) s = m->cfg.init_std;
  for (size_t j = 0; j < p->numel; j++) x[j] = s * lm_rng_normal(r);
}

void lm_model_init_weights(lm_model *m, uint64_t seed) {
  lm_rng rng;
  lm_rng_seed(&rng, seed);
  memset(m->params, 0, m->n_params * sizeof(float));
  for (int i = 0; i < m->n_info; i++) lm_model_init_tensor(m, &m->info[i], &rng);
  if (m->fam->init_done) m->fam->init_done(m);
}

static void free_acts(lm_model *m) {
  lm_free(m->acts.ed_arena);
  free(m->acts.enc_layer);
  free(m->acts.drop_bits);
  lm_free(m->acts.arena);
  free(m->acts.layer);
  free(m->acts.pos);
  memset(&m->acts, 0, sizeof m->acts);
  m->have_acts = 0;
  m->ok = 0;
}

void lm_model_free(lm_model *m) {
  if (!m) return;
  free_acts(m);
  lm_mm_free(m->mm);
  lm_lora_detach(m);
  lm_head_free(m);
  if (m->fam && m->fam->free_state) m->fam->free_state(m);
  lm_model_drop_quant(m);
  if (m->params_map) munmap(m->params, m->params_map);
  else lm_free(m->params);
  lm_free(m->grads); lm_free(m->rope);
  free(m->w.h); free(m->g.h); free(m->w.enc_h); free(m->g.enc_h); free(m->info);
  for (int64_t i = 0; m->label_names && i < m->cfg.num_labels; i++) free(m->label_names[i]);
  free(m->label_names);
  free(m);
}

void lm_model_drop_quant(lm_model *m) {
  for (int64_t i = 0; m->qlin && i < LM_QL_COUNT(m); i++) lm_free(m->qlin[i].data);
  free(m->qlin);
  m->qlin = NULL;
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

static lm_status reserve_blocks(lm_model *m, int64_t B, int64_t T, int need_grads) {
  const lm_config *c = &m->cfg;
  int ck = need_grads && m->checkpoint && c->n_layer > 1;   /* activation checkpointing */
  if (m->have_acts && m->acts.B == B && m->acts.T == T && (!need_grads || m->acts.dres_a) && m->acts.ckpt == ck)
    return LM_OK;
  free_acts(m);
  int64_t N = B * T, C = c->n_embd, F = lm_ffn_width(c), FW = lm_fc_width(c), QKV = lm_qkv_width(c);
  int64_t L = c->n_layer, NH = c->n_head;
  int64_t A = lm_attn_width(c);   /* the attention output's width (T5's n_head * d_kv may differ from C) */
  size_t per_layer = (size_t)N * (4 * C + 4 + QKV + A + FW + F) + (size_t)B * NH * T;
  size_t total = (size_t)N * C + (ck ? per_layer + (size_t)(L - 1) * N * C : per_layer * L) + (size_t)N * (C + 2);
  if (need_grads) total += (size_t)N * (3 * C + A + QKV + FW + F);
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
    if (ck && l > 0) { *la = a->layer[0]; la->res2 = CARVE(N * C); continue; }   /* only the output is kept */
    la->a1 = CARVE(N * C); la->res1 = CARVE(N * C); la->a2 = CARVE(N * C); la->res2 = CARVE(N * C);
    la->mean1 = CARVE(N); la->rstd1 = CARVE(N); la->mean2 = CARVE(N); la->rstd2 = CARVE(N);
    la->qkv = CARVE(N * QKV); la->lse = CARVE(B * NH * T); la->atty = CARVE(N * A);
    la->fch = CARVE(N * FW); la->fch_act = CARVE(N * F);
  }
  a->lnf = CARVE(N * C); a->lnf_mean = CARVE(N); a->lnf_rstd = CARVE(N);
  if (need_grads) {
    lm_block_scratch *s = &a->scratch;
    a->dres_a = CARVE(N * C); a->dres_b = CARVE(N * C); s->dtmp = CARVE(N * C); s->datty = CARVE(N * A);
    s->dqkv = CARVE(N * QKV);
    s->dfch = CARVE(N * FW); s->dfch_act = CARVE(N * F);
  }
#undef CARVE
  if ((size_t)(p - a->arena) > total) { free_acts(m); return lm_error(LM_ERR_NOMEM, "internal: activation arena too small"); }
  for (int64_t i = 0; i < N; i++) a->pos[i] = (int32_t)(i % T);
  a->B = B; a->T = T; a->ckpt = ck;
  m->have_acts = 1;
  return LM_OK;
}

/* Encoder-decoders: the decoder blocks' cross-attention activations, the encoder's (its inputs are up
 * to T tokens too: S <= T) and the relative position biases, in an arena of their own. Two passes: the
 * first (base NULL) only counts. */
static lm_status reserve_encdec(lm_model *m, int64_t B, int64_t T, int need_grads) {
  const lm_config *c = &m->cfg;
  lm_acts *a = &m->acts;
  if (c->n_enc_layer <= 0 || a->ed_arena) return LM_OK;   /* none, or kept with the blocks' */
  int64_t N = B * T, C = c->n_embd, F = lm_ffn_width(c), FW = lm_fc_width(c), QKV = lm_qkv_width(c);
  int64_t A = lm_attn_width(c), NH = c->n_head, R = NH * (2 * T - 1);
  a->enc_layer = calloc(c->n_enc_layer, sizeof(lm_layer_acts));
  if (!a->enc_layer) return lm_error(LM_ERR_NOMEM, "out of memory for the encoder's activations");
  float *base = NULL;
  for (int pass = 0; pass < 2; pass++) {
    size_t off = 0;
#define CARVE(n) (off += ((size_t)(n) + 15) & ~(size_t)15, base ? base + off - (((size_t)(n) + 15) & ~(size_t)15) : NULL)
    for (int64_t l = 0; l < c->n_layer; l++) {
      lm_layer_acts *la = &a->layer[l];
      la->ax = CARVE(N * C); la->resx = CARVE(N * C); la->meanx = CARVE(N); la->rstdx = CARVE(N);
      la->xq = CARVE(N * A); la->xkv = CARVE(N * 2 * A); la->xlse = CARVE(B * NH * T); la->xatty = CARVE(N * A);
    }
    a->enc_emb = CARVE(N * C);
    for (int64_t l = 0; l < c->n_enc_layer; l++) {
      lm_layer_acts *la = &a->enc_layer[l];
      la->a1 = CARVE(N * C); la->res1 = CARVE(N * C); la->a2 = CARVE(N * C); la->res2 = CARVE(N * C);
      la->mean1 = CARVE(N); la->rstd1 = CARVE(N); la->mean2 = CARVE(N); la->rstd2 = CARVE(N);
      la->qkv = CARVE(N * QKV); la->lse = CARVE(B * NH * T); la->atty = CARVE(N * A);
      la->fch = CARVE(N * FW); la->fch_act = CARVE(N * F);
    }
    a->enc_out = CARVE(N * C); a->enc_mean = CARVE(N); a->enc_rstd = CARVE(N);
    a->bias = CARVE(R); a->enc_bias = CARVE(R);
    if (need_grads) {
      a->denc = CARVE(N * C); a->dbias = CARVE(R); a->enc_dbias = CARVE(R);
      a->scratch.dxkv = CARVE(N * 2 * A);
    }
#undef CARVE
    if (!pass && !(base = a->ed_arena = lm_alloc(off * sizeof(float))))
      return lm_error(LM_ERR_NOMEM, "out of memory for the encoder's activations (batch %lld x %lld)", (long long)B,
                      (long long)T);
  }
  return LM_OK;
}

/* Training with dropout: the masks, one bit per element of what each drops (the encoder's inputs are
 * up to T tokens too: S <= T). Two passes: the first (base NULL) only counts. */
static lm_status reserve_dropout(lm_model *m, int64_t B, int64_t T) {
  const lm_config *c = &m->cfg;
  lm_acts *a = &m->acts;
  if (a->drop_bits || !(c->embd_pdrop > 0 || c->attn_pdrop > 0 || c->resid_pdrop > 0 || c->act_pdrop > 0)) return LM_OK;
  int64_t N = B * T, C = c->n_embd, ed = c->n_enc_layer > 0;
#define WORDS(n, p) ((p) > 0 ? ((size_t)(n) + 63) / 64 : 0)
  size_t w_att = WORDS(B * c->n_head * T * T, c->attn_pdrop), w_res = WORDS(N * C, c->resid_pdrop);
  size_t w_emb = WORDS(N * C, c->embd_pdrop), w_act = WORDS(N * lm_ffn_width(c), c->act_pdrop);
  size_t w_fin = m->fam->final_dropout ? w_res : 0;
#undef WORDS
  uint64_t *base = NULL;
  for (int pass = 0; pass < 2; pass++) {
    size_t off = 0;
#define TAKE(w) ((w) ? (off += (w), base ? base + off - (w) : NULL) : NULL)
    a->drop_emb = TAKE(w_emb);
    for (int64_t l = 0; l < c->n_layer; l++) {
      lm_layer_acts *la = &a->layer[l];
      la->drop_att = TAKE(w_att); la->drop_res1 = TAKE(w_res); la->drop_act = TAKE(w_act); la->drop_res2 = TAKE(w_res);
      if (ed) { la->drop_xatt = TAKE(w_att); la->drop_resx = TAKE(w_res); }
    }
    a->drop_lnf = TAKE(w_fin);
    for (int64_t l = 0; ed && l < c->n_enc_layer; l++) {
      lm_layer_acts *la = &a->enc_layer[l];
      la->drop_att = TAKE(w_att); la->drop_res1 = TAKE(w_res); la->drop_act = TAKE(w_act); la->drop_res2 = TAKE(w_res);
    }
    if (ed) { a->drop_enc_emb = TAKE(w_emb); a->drop_enc_out = TAKE(w_fin); }
#undef TAKE
    if (!pass && !(base = a->drop_bits = calloc(off + 1, sizeof(uint64_t))))
      return lm_error(LM_ERR_NOMEM, "out of memory for the dropout masks");
  }
  return LM_OK;
}

lm_status lm_model_reserve(lm_model *m, int64_t B, int64_t T, int need_grads) {
  const lm_config *c = &m->cfg;
  if (T <= 0 || B <= 0) return lm_error(LM_ERR_ARG, "batch %lld x context %lld must be positive", (long long)B, (long long)T);
  if (T > c->n_positions)
    return lm_error(LM_ERR_RANGE, "context %lld is longer than the model's %lld positions", (long long)T, (long long)c->n_positions);
  lm_status qst = lm_model_check_f32(m, need_grads ? "training" : "a full forward pass (eval, embeddings)");
  if (qst) return qst;
  if (need_grads) lm_model_drop_quant(m);   /* training changes the f32 weights: the blocks would be stale */
  if (need_grads && !m->grads && !m->lora) {   /* a LoRA adapter freezes the base: no base gradients */
    m->grads = lm_alloc(m->n_params * sizeof(float));
    if (!m->grads) return LM_ERR_NOMEM;
    layout(m, m->grads, &m->g);
  }
  lm_status st = reserve_blocks(m, B, T, need_grads);
  if (!st) st = reserve_encdec(m, B, T, need_grads);
  if (!st && need_grads) st = reserve_dropout(m, B, T);
  if (!st && m->lora) st = lm_lora_reserve(m, B, T);
  if (!st && m->fam->reserve) st = m->fam->reserve(m, B, T, need_grads);
  if (!st) st = lm_head_reserve(m, B, T, need_grads);
  m->ok = 0;
  return st;
}

void lm_model_zero_grad(lm_model *m) {
  lm_trainable t = lm_model_trainable(m);
  if (t.grads) memset(t.grads, 0, t.n_params * sizeof(float));
}

/* ------------------------------------------------------------------ forward */

lm_status lm_batch_check(const lm_model *m, const lm_batch *b) {
  if (!m || !b || !b->ids) return lm_error(LM_ERR_ARG, "batch: NULL model, batch or ids");
  const lm_config *c = &m->cfg;
  int64_t B = b->B, T = b->T, N = B * T;
  if (B <= 0 || T <= 0) return lm_error(LM_ERR_ARG, "batch: B = %lld, T = %lld must be positive", (long long)B, (long long)T);
  if (T > c->n_positions)
    return lm_error(LM_ERR_RANGE, "batch: T = %lld tokens is longer than %s = %lld", (long long)T, m->fam->keys.pos,
                    (long long)c->n_positions);
  if (!m->have_acts || !m->head_state || B > m->acts.B || T > m->acts.T)
    return lm_error(LM_ERR_ARG, "batch: %lld x %lld exceeds the reserved %lld x %lld (call lm_model_reserve)",
                    (long long)B, (long long)T, (long long)m->acts.B, (long long)m->acts.T);
  for (int64_t i = 0; i < N; i++)
    if (b->ids[i] < 0 || b->ids[i] >= c->vocab_size)
      return lm_error(LM_ERR_RANGE, "batch: ids[%lld] = %d is out of range (vocabulary 0..%lld)", (long long)i,
                      (int)b->ids[i], (long long)c->vocab_size - 1);
  if (b->starts) {
    if (!c->causal) return lm_error(LM_ERR_UNSUPPORTED, "batch: packed examples (starts) need a causal model");
    for (int64_t i = 0; i < B; i++)
      for (int64_t t = 0; t < T; t++) {
        int32_t s = b->starts[i * T + t];
        /* each token's example begins at itself or where the previous token's began */
        if (s != t && !(t > 0 && s == b->starts[i * T + t - 1]))
          return lm_error(LM_ERR_ARG, "batch: starts[%lld] = %d: an example must begin at its own position or continue the previous one",
                          (long long)(i * T + t), (int)s);
      }
  }
  if (c->n_enc_layer > 0) {   /* the encoder's input */
    if (!b->enc_ids)
      return lm_error(LM_ERR_ARG, "batch: a %s model is an encoder-decoder and needs the encoder's input (enc_ids); this "
                      "batch has decoder tokens only", m->fam->model_type);
    if (b->S <= 0 || b->S > m->acts.T)
      return lm_error(LM_ERR_RANGE, "batch: encoder input of %lld tokens (1..%lld reserved)", (long long)b->S,
                      (long long)m->acts.T);
    if (b->starts) return lm_error(LM_ERR_UNSUPPORTED, "batch: packed examples (starts) in an encoder-decoder");
    for (int64_t i = 0; i < B * b->S; i++)
      if (b->enc_ids[i] < 0 || b->enc_ids[i] >= c->vocab_size)
        return lm_error(LM_ERR_RANGE, "batch: enc_ids[%lld] = %d is out of range (vocabulary 0..%lld)", (long long)i,
                        (int)b->enc_ids[i], (long long)c->vocab_size - 1);
  } else if (b->enc_ids || b->enc_mask) {
    return lm_error(LM_ERR_ARG, "batch: encoder input (enc_ids) given to a %s model, which has no encoder",
                    m->fam->model_type);
  }
  lm_status st = m->fam->check ? m->fam->check(m, b) : LM_OK;
  return st ? st : lm_head_check(m, b);
}

/* What the blocks' attention needs: masks, and with RoPE each token's position (t, or t - the start
 * of its example when examples are packed). */
static lm_attn_mask attn_mask(lm_model *m, const lm_batch *b) {
  lm_attn_mask am = {.key_mask = b->mask, .starts = b->starts, .rope = m->rope, .drop = m->acts.dropped, .mm = m->mm};
  if (!m->rope) return am;
  int32_t *pos = m->acts.pos;
  for (int64_t i = 0; i < b->B; i++)
    for (int64_t t = 0; t < b->T; t++) pos[i * b->T + t] = (int32_t)(t - (b->starts ? b->starts[i * b->T + t] : 0));
  am.pos = pos;
  return am;
}

void lm_model_set_training(lm_model *m, lm_rng *rng) { m->dropout_rng = rng; }

void lm_model_set_checkpointing(lm_model *m, int on) { m->checkpoint = on != 0; }

lm_status lm_model_set_precision(lm_model *m, int precision) {
  if (precision != LM_PRECISION_FP32 && precision != LM_PRECISION_BF16)
    return lm_error(LM_ERR_ARG, "unknown precision %d (fp32 or bf16)", precision);
  if (precision == LM_PRECISION_BF16 && lm_family_of(&m->cfg)->own_body)   /* its recurrent products are its own */
    return lm_error(LM_ERR_ARG, "bf16 products are for the transformer families; the %s model's own products run in "
                    "fp32 only (use --precision fp32)", lm_arch_name(m->cfg.arch));
  if ((precision == LM_PRECISION_BF16) == (m->mm != NULL)) return LM_OK;
  lm_mm_free(m->mm);
  m->mm = NULL;
  return precision == LM_PRECISION_BF16 ? lm_mm_create(&m->mm) : LM_OK;
}

void lm_model_weights_changed(lm_model *m) { lm_mm_invalidate(m->mm); }

/* ---- encoder-decoders: the encoder stack before the decoder's blocks */

/* The encoder's blocks see every real token (bidirectional) and its relative bias. */
static lm_config encoder_config(const lm_config *c) {
  lm_config e = *c;
  e.causal = 0;
  return e;
}

/* What the decoder's and the encoder's attention read of the encoder: its output, mask and length,
 * the relative position biases and, with gradients, where theirs go. */
static void encdec_masks(lm_model *m, const lm_batch *b, lm_attn_mask *am, lm_attn_mask *em) {
  lm_acts *a = &m->acts;
  memset(em, 0, sizeof *em);
  em->drop = a->dropped;
  em->key_mask = b->enc_mask;
  em->mm = m->mm;
  am->enc = m->cfg.pre_ln ? a->enc_out : a->enc_layer[m->cfg.n_enc_layer - 1].res2;
  am->enc_mask = b->enc_mask;
  am->S = b->S;
  am->denc = a->denc;
  if (m->cfg.rel_buckets > 0) {
    am->bias = a->bias; am->dbias = a->dbias;
    em->bias = a->enc_bias; em->dbias = a->enc_dbias;
  }
}

/* enc_ids (B,S) -> the encoder output (B,S,C) */
static void encoder_forward(lm_model *m, const lm_batch *b, lm_attn_mask *am) {
  const lm_config *c = &m->cfg;
  lm_config ec = encoder_config(c);
  lm_acts *a = &m->acts;
  int64_t B = b->B, S = b->S;
  lm_attn_mask em;
  if (c->rel_buckets > 0) {
    lm_rel_bias_forward(c, a->enc_bias, m->w.enc_rel_bias, S, S, 1);                   // (NH, 2S-1)
    lm_rel_bias_forward(c, a->bias, m->w.rel_bias, b->T, b->T, 0);                     // (NH, 2T-1)
  }
  encdec_masks(m, b, am, &em);
  m->fam->enc_embed_forward(m, b, a->enc_emb);                                          // (B*S,C)
  if (a->dropped && a->drop_enc_emb) dropout_apply(a->enc_emb, a->drop_enc_emb, B * S * c->n_embd, c->embd_pdrop);
  const float *x = a->enc_emb;
  for (int64_t l = 0; l < c->n_enc_layer; l++) {   /* enc_out is free until the final norm: the scratch */
    lm_block_forward(&ec, &m->w.enc_h[l], &a->enc_layer[l], x, a->enc_out, em, B, S);
    x = a->enc_layer[l].res2;
  }
  if (c->pre_ln) lm_norm_forward(c, a->enc_out, a->enc_mean, a->enc_rstd, x, m->w.enc_lnf_w, m->w.enc_lnf_b, B * S);
  if (c->pre_ln && a->dropped && a->drop_enc_out) dropout_apply(a->enc_out, a->drop_enc_out, B * S * c->n_embd, c->resid_pdrop);
}

/* d enc_out (a->denc, summed over the decoder's layers) -> the encoder's gradients; P, Q (B*S,C) scratch */
static void encoder_backward(lm_model *m, const lm_batch *b, float *P, float *Q) {
  const lm_config *c = &m->cfg;
  lm_config ec = encoder_config(c);
  lm_acts *a = &m->acts;
  int64_t B = b->B, S = b->S, NS = B * S, Le = c->n_enc_layer;
  lm_attn_mask am = {0}, em;
  encdec_masks(m, b, &am, &em);
  if (c->pre_ln) {
    if (a->dropped && a->drop_enc_out) dropout_apply(a->denc, a->drop_enc_out, NS * c->n_embd, c->resid_pdrop);
    memset(P, 0, NS * c->n_embd * sizeof(float));
    lm_norm_backward(c, P, m->g.enc_lnf_w, m->g.enc_lnf_b, a->denc, a->enc_layer[Le - 1].res2, m->w.enc_lnf_w,
                     a->enc_mean, a->enc_rstd, NS);
  } else {
    memcpy(P, a->denc, NS * c->n_embd * sizeof(float));
  }
  for (int64_t l = Le - 1; l >= 0; l--) {
    const float *x = l ? a->enc_layer[l - 1].res2 : a->enc_emb;
    lm_block_backward(&ec, &m->w.enc_h[l], &m->g.enc_h[l], &a->enc_layer[l], &a->scratch, x, P, Q, em, B, S);
  }
  if (a->dropped && a->drop_enc_emb) dropout_apply(P, a->drop_enc_emb, NS * c->n_embd, c->embd_pdrop);
  m->fam->enc_embed_backward(m, b, P);                                                  // P = d enc_emb
  if (c->rel_buckets > 0) {
    lm_rel_bias_backward(c, m->g.enc_rel_bias, a->enc_dbias, S, S, 1);
    lm_rel_bias_backward(c, m->g.rel_bias, a->dbias, b->T, b->T, 0);
  }
}

/* T5 reads a tied head's input times n_embd^-0.5 (as transformers: the float32 of the double) */
static float head_rescale(const lm_model *m) {
  return m->fam->tied_head_rescale && m->cfg.tie_embeddings ? (float)pow((double)m->cfg.n_embd, -0.5) : 1.0f;
}

/* Draws the masks of a stack's layers for B sequences of T tokens (cross-attention over S), in a
 * fixed order: each mask that is there, a NULL one draws nothing. */
static void draw_layers(const lm_config *c, lm_layer_acts *layers, int64_t L, int64_t B, int64_t T, int64_t S,
                        lm_rng *r) {
  int64_t N = B * T, C = c->n_embd;
  for (int64_t l = 0; l < L; l++) {
    lm_layer_acts *la = &layers[l];
    if (la->drop_att) dropout_mask(la->drop_att, B * c->n_head * T * T, c->attn_pdrop, r);
    if (la->drop_res1) dropout_mask(la->drop_res1, N * C, c->resid_pdrop, r);
    if (la->drop_xatt) dropout_mask(la->drop_xatt, B * c->n_head * T * S, c->attn_pdrop, r);
    if (la->drop_resx) dropout_mask(la->drop_resx, N * C, c->resid_pdrop, r);
    if (la->drop_act) dropout_mask(la->drop_act, N * lm_ffn_width(c), c->act_pdrop, r);
    if (la->drop_res2) dropout_mask(la->drop_res2, N * C, c->resid_pdrop, r);
  }
}

/* Draws this forward's dropout masks (training mode with masks reserved), in a fixed order: the
 * decoder's (or only) stack, then the encoder's. */
static int draw_dropout(lm_model *m, const lm_batch *b) {
  lm_acts *a = &m->acts;
  const lm_config *c = &m->cfg;
  lm_rng *r = m->dropout_rng;
  if (!r || m->dropout_off || !a->drop_bits) return 0;
  int64_t C = c->n_embd, N = b->B * b->T, NS = b->B * b->S;
  if (a->drop_emb) dropout_mask(a->drop_emb, N * C, c->embd_pdrop, r);
  draw_layers(c, a->layer, c->n_layer, b->B, b->T, b->S, r);
  if (a->drop_lnf) dropout_mask(a->drop_lnf, N * C, c->resid_pdrop, r);
  if (c->n_enc_layer > 0) {
    if (a->drop_enc_emb) dropout_mask(a->drop_enc_emb, NS * C, c->embd_pdrop, r);
    draw_layers(c, a->enc_layer, c->n_enc_layer, b->B, b->S, 0, r);
    if (a->drop_enc_out) dropout_mask(a->drop_enc_out, NS * C, c->resid_pdrop, r);
  }
  return 1;
}

float lm_forward(lm_model *m, const lm_batch *b, float *aux_a, float *aux_b) {
  if (aux_a) *aux_a = NAN;
  if (aux_b) *aux_b = NAN;
  m->ok = 0;
  if (lm_batch_check(m, b)) return NAN;
  const lm_config *c = &m->cfg;
  lm_acts *a = &m->acts;
  int64_t B = b->B, T = b->T, N = B * T, L = c->n_layer;
  m->fam->embed_forward(m, b, a->emb);                                                    // (N,C)
  if (b->neftune_alpha > 0 && b->noise_rng) {   /* NEFTune: the noise passes backward unchanged */
    float mag = b->neftune_alpha / sqrtf((float)(T * c->n_embd));
    for (int64_t i = 0; i < N * c->n_embd; i++) a->emb[i] += mag * (2.0f * lm_rng_uniform(b->noise_rng) - 1.0f);
  }
  a->dropped = draw_dropout(m, b);
  if (a->dropped && a->drop_emb) dropout_apply(a->emb, a->drop_emb, N * c->n_embd, c->embd_pdrop);
  const float *x = a->emb;
  float *tmp = a->scratch.dtmp ? a->scratch.dtmp : a->lnf;   /* lnf is free until the final norm */
  lm_attn_mask am = attn_mask(m, b);
  if (c->n_enc_layer > 0) encoder_forward(m, b, &am);
  for (int64_t l = 0; l < L; l++) {
    lm_block_forward(c, &m->w.h[l], &a->layer[l], x, tmp, am, B, T);
    x = a->layer[l].res2;
  }
  if (c->pre_ln) lm_norm_forward(c, a->lnf, a->lnf_mean, a->lnf_rstd, x, m->w.lnf_w, m->w.lnf_b, N);
  if (c->pre_ln && a->dropped && a->drop_lnf) dropout_apply(a->lnf, a->drop_lnf, N * c->n_embd, c->resid_pdrop);
  if (c->pre_ln && head_rescale(m) != 1.0f) scale_inplace(a->lnf, N * c->n_embd, head_rescale(m));
  m->hidden = c->pre_ln ? a->lnf : x;                                                     // (N,C)
  m->ok = 1;   /* the head clears it when it refuses the batch */
  return lm_head_forward(m, b, m->hidden, aux_a, aux_b);
}

/* ----------------------------------------------------------------- backward */

void lm_backward(lm_model *m, const lm_batch *b) {
  lm_acts *a = &m->acts;
  if (!m->ok || !lm_model_trainable(m).grads || !a->dres_a || !m->head_state) return;
  const lm_config *c = &m->cfg;
  int64_t B = b->B, T = b->T, N = B * T, L = c->n_layer;
  size_t bytes = N * c->n_embd * sizeof(float);
  float *P = a->dres_a, *Q = a->dres_b;
  /* head -> d hidden (in Q when a final norm follows, else straight into P) */
  float *dh = c->pre_ln ? Q : P;
  memset(dh, 0, bytes);
  lm_head_backward(m, b, m->hidden, dh);
  if (c->pre_ln) {
    const float *x = L ? a->layer[L - 1].res2 : a->emb;
    if (head_rescale(m) != 1.0f) scale_inplace(Q, N * c->n_embd, head_rescale(m));
    if (a->dropped && a->drop_lnf) dropout_apply(Q, a->drop_lnf, N * c->n_embd, c->resid_pdrop);
    memset(P, 0, bytes);
    lm_norm_backward(c, P, m->g.lnf_w, m->g.lnf_b, Q, x, m->w.lnf_w, a->lnf_mean, a->lnf_rstd, N);
  }
  lm_attn_mask am = attn_mask(m, b);
  if (c->n_enc_layer > 0) {   /* the decoder's blocks sum d enc_out and the biases' gradients */
    lm_attn_mask em;
    encdec_masks(m, b, &am, &em);
    memset(a->denc, 0, b->B * b->S * c->n_embd * sizeof(float));
    if (c->rel_buckets > 0) {
      memset(a->dbias, 0, c->n_head * (2 * T - 1) * sizeof(float));
      memset(a->enc_dbias, 0, c->n_head * (2 * b->S - 1) * sizeof(float));
    }
  }
  for (int64_t l = L - 1; l >= 0; l--) {
    const float *x = l ? a->layer[l - 1].res2 : a->emb;
    /* checkpointing: the shared buffers hold the last layer's activations; the others run their
       forward again (the same inputs, masks and kernels give the same bits) */
    if (a->ckpt && l < L - 1) lm_block_forward(c, &m->w.h[l], &a->layer[l], x, a->scratch.dtmp, am, B, T);
    lm_block_backward(c, &m->w.h[l], &m->g.h[l], &a->layer[l], &a->scratch, x, P, Q, am, B, T);
    if (m->on_block_grads) m->on_block_grads(m->on_block_grads_user, l);
  }
  if (a->dropped && a->drop_emb) dropout_apply(P, a->drop_emb, N * c->n_embd, c->embd_pdrop);
  m->fam->embed_backward(m, b, P);                                                         // P = d emb
  if (c->n_enc_layer > 0) encoder_backward(m, b, P, Q);
}

/* ------------------------------------------------------------------ the LM-head shorthand */

float lm_model_forward(lm_model *m, const int32_t *ids, const int32_t *targets, const uint8_t *key_mask,
                       int64_t B, int64_t T) {
  lm_batch b = {.ids = ids, .targets = targets, .mask = key_mask, .B = B, .T = T};
  return lm_forward(m, &b, NULL, NULL);
}

void lm_model_backward(lm_model *m, const int32_t *ids, const int32_t *targets, const uint8_t *key_mask,
                       int64_t B, int64_t T) {
  lm_batch b = {.ids = ids, .targets = targets, .mask = key_mask, .B = B, .T = T};
  lm_backward(m, &b);
}
