/* session.c — forward passes for inference with a KV cache.
 *
 * Unlike training (src/model/model.c), nothing is kept for backward: each
 * block's output overwrites its input, and the only state is the cache of
 * keys and values, (L, max_len, KVC) each (KVC = NKV*hs: grouped-query
 * attention caches only the key/value heads), with head h in columns
 * h*hs..(h+1)*hs. Keys are cached after RoPE, so a cached key never moves.
 * Tokens are fed in chunks: a prompt (prefill) runs as matrix-matrix products,
 * a single decoded token as matrix-vector products, which are bound by how
 * fast the weights stream from memory. Only the last token's logits are
 * computed, since only they are sampled from.
 *
 * The forward (lm_fwd) takes runs: each run is tokens of one sequence appended
 * to that sequence's own cache (lm_kv). A session is one run at a time; the
 * batch decoder (batch.c) passes one run per sequence, so a decode step of N
 * sequences runs the linear layers as one (N, C) matrix-matrix product and
 * attention per run over its own cache (runs x heads in parallel).
 *
 * A decode step (up to FEW_ROWS rows) with more than one thread is one OpenMP parallel region for
 * the whole forward, not a parallel-for per operation (about 50 fork/joins a token, each a wait for
 * every thread: on a loaded machine a thread that has lost its core held all the others up, and 2
 * threads ran many times slower than 1). Inside the region every thread walks the same sequence of
 * phases (one per operation: a linear's blocks of weight rows, attention's (run, head) pairs, a
 * norm's rows); a phase's chunks go to whichever thread takes them first (an atomic counter), and a
 * thread moves on when all of the phase's chunks are done, not when all threads have arrived. So
 * a thread that is off its core holds nothing up (the others take its share), and one that comes
 * back finds the finished phases and catches up. Each output is still one kernel call's, so the
 * bits do not depend on which thread took it or on the thread count. Prompts (more rows) keep one
 * parallel operation at a time: sgemm and the kernels parallelise themselves. */
#include <cblas.h>
#include <math.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>
#include "base/base.h"
#include "kernels/kernels.h"
#include "kernels/quant.h"
#include "kernels/qgemm.h"
#include "kernels/vexp.h"
#include "model/model.h"
#include "model/heads.h"
#include "infer/infer.h"
#include "infer/linear.h"

#define CHUNK 256   /* prompt tokens per forward pass: bounds the scratch memory */
/* Up to this many rows (a decode step, a short prompt) go through lm_linear_rows (linear.c), which
 * reads each weight row from memory once for all of them; more through sgemm. */
#define FEW_ROWS 32
#define PART_ROWS 256   /* at most this many weight rows per chunk of a decode step's linear */
#define TQ 64           /* a prompt's query rows per attention tile */

/* a phase of a decode step (one cache line): chunks taken (next) and finished (done) */
typedef struct {
  _Alignas(64) atomic_llong next;
  atomic_llong done;
} phase;

/* a thread's view of the team: the shared phases and the one it is in (NULL team: no region) */
typedef struct {
  phase *ph;
  int64_t k;
} team;

struct lm_fwd {
  const lm_model *m;
  int64_t rows, max_len;    /* tokens per pass; longest cache */
  float *x, *a, *t, *y;     /* (rows, C) */
  float *qkv;               /* (rows, QKV) */
  float *h, *g;             /* (rows, FW), (rows, F): the FFN's hidden layer before and after a gate */
  float *mean, *rstd;       /* (rows) */
  float *scores;            /* (NH, rows, max_len) */
  float *logits;            /* (rows, V): each run's last token */
  int32_t *pos_ids;         /* (rows) */
  int64_t *start;           /* (rows) the first row of each run */
  void *qscratch;           /* the quantized activations of (rows) rows, when the model has quantized linears */
  void *qnext;              /* a decode step's FFN hidden rows quantized by fc's chunks while fc reads qscratch */
  void *gscratch;           /* lm_qgemm's scratch (prompts of more than FEW_ROWS rows), or NULL */
  float *kvf;               /* (threads, 2, max_len, hs): a head's keys and values of an f16 cache, as f32 */
  float *part;              /* (threads, FEW_ROWS, PART_ROWS): a decode step's chunk of a linear over several rows */
  phase *ph;                /* (nph) a decode step's phases */
  int64_t nph;
  int threads;
  lm_qpath qpath;           /* the quantized kernels' path: the best this CPU has */
};

struct lm_session {
  lm_fwd *f;
  lm_kv kv;
  int64_t pos;
  /* a family that decodes from a per-sequence state instead of a KV cache (family.h state_*: RNN,
   * LSTM, n-gram): f and kv stay empty and state_feed does the work */
  const lm_model *m;
  void *state;
  float *logits;   /* (V) */
  int64_t max_len;
};

/* a family that decodes from its own state (RNN, LSTM, n-gram) has no KV cache to batch or copy */
static lm_status no_kv(const lm_model *m) {
  return lm_error(LM_ERR_UNSUPPORTED, "a %s model decodes from its own state, not a KV cache: batched decoding and beam "
                  "search do not support it (lmkit generate without --beams does)", m->fam->model_type);
}

lm_status lm_kv_init(lm_kv *kv, const lm_model *m, int64_t max_len) { return lm_kv_init_type(kv, m, max_len, 0); }

lm_status lm_kv_init_type(lm_kv *kv, const lm_model *m, int64_t max_len, int f16) {
  const lm_config *c = &m->cfg;
  *kv = (lm_kv){.max_len = max_len};
  if (m->fam->state_new) return no_kv(m);
  size_t n = (size_t)c->n_layer * max_len * lm_kv_heads(c) * (c->n_embd / c->n_head);
  *kv = (lm_kv){.max_len = max_len};
  if (f16) { kv->k16 = lm_alloc(n * sizeof(uint16_t)); kv->v16 = lm_alloc(n * sizeof(uint16_t)); }
  else { kv->k = lm_alloc(n * sizeof(float)); kv->v = lm_alloc(n * sizeof(float)); }
  if (f16 ? !kv->k16 || !kv->v16 : !kv->k || !kv->v) {
    lm_kv_free(kv);
    return lm_error(LM_ERR_NOMEM, "out of memory for a KV cache of %lld tokens", (long long)max_len);
  }
  return LM_OK;
}

void lm_kv_free(lm_kv *kv) {
  lm_free(kv->k); lm_free(kv->v); lm_free(kv->k16); lm_free(kv->v16);
  kv->k = kv->v = NULL; kv->k16 = kv->v16 = NULL;
}

lm_status lm_fwd_init(lm_fwd **out, const lm_model *m, int64_t rows, int64_t max_len) {
  const lm_config *c = &m->cfg;
  *out = NULL;
  if (m->fam->state_new) return no_kv(m);
  if (!c->causal || c->head != LM_HEAD_LM || !m->fam->embed_tokens || c->n_enc_layer > 0)
    return lm_error(LM_ERR_UNSUPPORTED, "generation needs a causal decoder with an LM head; this is a %s model with a %s head%s",
                    lm_arch_name(c->arch), lm_head_name(c->head),
                    c->n_enc_layer > 0 ? " (encoder-decoder generation is not implemented yet)" : "");
  if (m->lora)   /* the cache's kernels read the base weights only */
    return lm_error(LM_ERR_UNSUPPORTED, "generation runs on the base weights: merge the LoRA adapter first (lm_lora_merge)");
  if (max_len <= 0 || max_len > c->n_positions)
    return lm_error(LM_ERR_RANGE, "a sequence of %lld tokens does not fit the model's context of %lld",
                    (long long)max_len, (long long)c->n_positions);
  lm_fwd *s = calloc(1, sizeof *s);
  if (!s) return lm_error(LM_ERR_NOMEM, "out of memory");
  int64_t C = c->n_embd, F = lm_ffn_width(c), FW = lm_fc_width(c), NH = c->n_head, n = rows;
  s->m = m; s->max_len = max_len; s->rows = rows;
  s->x = lm_alloc(n * C * sizeof(float)); s->a = lm_alloc(n * C * sizeof(float));
  s->t = lm_alloc(n * C * sizeof(float)); s->y = lm_alloc(n * C * sizeof(float));
  s->qkv = lm_alloc(n * lm_qkv_width(c) * sizeof(float)); s->h = lm_alloc(n * FW * sizeof(float));
  s->g = c->glu ? lm_alloc(n * F * sizeof(float)) : s->h;
  s->mean = lm_alloc(n * sizeof(float)); s->rstd = lm_alloc(n * sizeof(float));
  s->scores = lm_alloc((size_t)NH * n * max_len * sizeof(float));
  s->logits = lm_alloc((size_t)n * c->vocab_size * sizeof(float));
  s->pos_ids = malloc(n * sizeof(int32_t));
  s->start = malloc(n * sizeof(int64_t));
  s->qpath = lm_qpath_best();
  s->threads = omp_get_max_threads();
  s->kvf = lm_alloc((size_t)s->threads * 2 * max_len * (C / NH) * sizeof(float));
  s->nph = 16 * (c->n_layer + 1);   /* a layer takes at most 14 phases (lm_fwd_feed), the head 5 */
  s->ph = lm_alloc((size_t)s->nph * sizeof(phase));
  s->part = lm_alloc((size_t)s->threads * FEW_ROWS * PART_ROWS * sizeof(float));
  int fail_q = !s->ph || !s->part;
  if (m->qlin) fail_q |= !(s->qscratch = lm_alloc(lm_qmatmul_scratch(n, F > C ? F : C)));
  if (m->qlin) fail_q |= !(s->qnext = lm_alloc(lm_qmatmul_scratch(FEW_ROWS < n ? FEW_ROWS : n, F)));
  if (m->qlin && n > FEW_ROWS) fail_q |= !(s->gscratch = lm_alloc(lm_qgemm_scratch(n, F > C ? F : C, s->threads)));
  if (fail_q || !s->kvf || !s->x || !s->a || !s->t || !s->y || !s->qkv || !s->h || !s->g || !s->mean || !s->rstd || !s->scores ||
      !s->logits || !s->pos_ids || !s->start) {
    lm_fwd_free(s);
    return lm_error(LM_ERR_NOMEM, "out of memory for the scratch of %lld tokens", (long long)rows);
  }
  *out = s;
  return LM_OK;
}

void lm_fwd_free(lm_fwd *s) {
  if (!s) return;
  lm_free(s->x); lm_free(s->a); lm_free(s->t); lm_free(s->y);
  if (s->g != s->h) lm_free(s->g);
  lm_free(s->qkv); lm_free(s->h); lm_free(s->mean); lm_free(s->rstd); lm_free(s->scores); lm_free(s->logits);
  free(s->pos_ids); free(s->start); lm_free(s->qscratch); lm_free(s->qnext); lm_free(s->gscratch); lm_free(s->kvf);
  lm_free(s->part); lm_free(s->ph);
  free(s);
}

lm_status lm_session_init(lm_session **out, const lm_model *m, int64_t max_len) { return lm_session_init_kv(out, m, max_len, 0); }

lm_status lm_session_init_kv(lm_session **out, const lm_model *m, int64_t max_len, int kv_f16) {
  *out = NULL;
  lm_session *s = calloc(1, sizeof *s);
  if (!s) return lm_error(LM_ERR_NOMEM, "out of memory");
  if (m->fam->state_new) {
    s->m = m; s->max_len = max_len;
    lm_status st = m->fam->state_new(m, &s->state);
    if (!st && !(s->logits = lm_alloc((size_t)m->cfg.vocab_size * sizeof(float)))) st = lm_error(LM_ERR_NOMEM, "out of memory");
    if (st) { lm_session_free(s); return st; }
    *out = s;
    return LM_OK;
  }
  lm_status st = lm_fwd_init(&s->f, m, CHUNK, max_len);
  if (!st) st = lm_kv_init_type(&s->kv, m, max_len, kv_f16);
  if (st) { lm_session_free(s); return st; }
  *out = s;
  return LM_OK;
}

void lm_session_free(lm_session *s) {
  if (!s) return;
  lm_fwd_free(s->f);
  lm_kv_free(&s->kv);
  if (s->state) s->m->fam->state_free(s->state);
  lm_free(s->logits);
  free(s);
}

void lm_session_reset(lm_session *s) {
  s->pos = 0;
  if (s->state) s->m->fam->state_reset(s->m, s->state);
}
int64_t lm_session_pos(const lm_session *s) { return s->pos; }


/* layer l's linear k (LM_QL_*; l = n_layer: the LM head) when kept quantized, else NULL */
static const lm_qmat *qlin(const lm_model *m, int64_t l, int k) {
  const lm_qmat *q = m->qlin ? &m->qlin[l * LM_QL_PER_LAYER + k] : NULL;
  return q && q->data ? q : NULL;
}

/* out(n,OC) = inp(n,C) @ W(OC,C)^T + b. The weight's type picks the kernel: Q8_0/Q4_0 blocks (q,
 * model.h qlin, packed in panels) go through quant.c against the activations quantized once per
 * row, for any number of rows (its panel kernel takes 8 rows a call: a prompt's products run at
 * 1.07-1.18x the integer GEMM qgemm.c had, one thread, TinyLlama's layer at 256 rows; the
 * same bits); f16 weights through lm_linear_rows_f16 (the bits of their f32 values) for up to
 * FEW_ROWS rows, converted panels x sgemm (qgemm.c) for more; f32 weights through lm_linear_rows
 * for up to FEW_ROWS rows (one row included, so that a sequence's decode step gives the same bits
 * alone or in any batch), sgemm for more. */
static void linear(lm_fwd *s, float *out, const float *inp, const float *w, const float *b, const lm_qmat *q, int64_t n,
                   int64_t C, int64_t OC) {
  if (q && q->type != LM_QW_F16) { lm_qmatmul(q, inp, n, b, out, s->qscratch, s->qpath); return; }
  if (q && n > FEW_ROWS) { lm_qgemm(q, inp, n, b, out, s->gscratch, s->threads, s->qpath); return; }
  if (q) { lm_linear_rows_f16(out, inp, (const uint16_t *)q->data, b, n, C, OC); return; }
  if (n <= FEW_ROWS) lm_linear_rows(out, inp, w, b, n, C, OC);
  else matmul_forward(out, inp, w, b, n, C, OC);
}

/* out's rows i0..i0+n-1 = the norm of inp's (statistics at mean/rstd + i0) */
static void norm_rows(lm_fwd *s, float *out, const float *inp, const float *w, const float *b, int64_t i0, int64_t n) {
  const lm_config *c = &s->m->cfg;
  int64_t C = c->n_embd;
  if (c->norm == LM_NORM_RMS) rmsnorm_forward(out + i0 * C, s->rstd + i0, inp + i0 * C, w, n, C, c->norm_eps);
  else layernorm_forward(out + i0 * C, s->mean + i0, s->rstd + i0, inp + i0 * C, w, b, n, C, c->norm_eps);
}

/* ------------------------------------------------------------------ a decode step's team */

/* the next chunk of the team's current phase of n chunks, or -1 when all are taken */
static int64_t grab(team *t, int64_t n) {
  long long c = atomic_fetch_add_explicit(&t->ph[t->k].next, 1, memory_order_relaxed);
  return c < n ? c : -1;
}

static void chunk_done(team *t) { atomic_fetch_add_explicit(&t->ph[t->k].done, 1, memory_order_release); }

/* waits until the phase's n chunks are done (their writes then visible to this thread) and moves
 * on to the next phase: a short spin, then yielding the core, which the thread being waited for
 * may be waiting to get */
static void phase_end(team *t, int64_t n) {
  for (int spins = 0; atomic_load_explicit(&t->ph[t->k].done, memory_order_acquire) < n; spins++) {
    if (spins >= 256) sched_yield();
#if defined(__x86_64__)
    else __builtin_ia32_pause();
#endif
  }
  t->k++;
}

/* each chunk c < n once, by whichever thread of the team takes it; then wait for the phase */
#define FOR_CHUNKS(t, n, c) for (int64_t c; (c = grab(t, n)) >= 0; chunk_done(t))

/* a phase of one chunk: once_begin is true for the thread that does it (the caller, with no team) */
static int once_begin(team *t) { return !t || grab(t, 1) == 0; }
static void once_end(team *t, int mine) {
  if (!t) return;
  if (mine) chunk_done(t);
  phase_end(t, 1);
}

/* ------------------------------------------------------------------ the operations
 * Each takes the team (NULL: the caller alone, each operation then parallel inside). */

/* In a team, a row op whose output feeds a linear of integer kernels (next) quantizes each row
 * for it in the same chunk (a phase, and a wait, fewer); op_linear is then told the rows are ready */
static int ahead(const team *t, const lm_qmat *next) { return t && next && next->type != LM_QW_F16; }

static void op_norm(lm_fwd *s, team *t, float *out, const float *inp, const float *w, const float *b, int64_t n,
                    const lm_qmat *next) {
  if (!t) { norm_rows(s, out, inp, w, b, 0, n); return; }
  FOR_CHUNKS(t, n, i) {
    norm_rows(s, out, inp, w, b, i, 1);
    if (ahead(t, next)) lm_qmatmul_prepare_row(out, n, next->cols, s->qscratch, i);
  }
  phase_end(t, n);
}

/* xo = x + r, then (nout given) nout = norm(xo), row by row */
static void op_residual(lm_fwd *s, team *t, float *xo, const float *x, const float *r, float *nout, const float *w,
                        const float *b, int64_t n, const lm_qmat *next) {
  int64_t C = s->m->cfg.n_embd;
  if (!t) {
    residual_forward(xo, x, r, n * C);
    if (nout) norm_rows(s, nout, xo, w, b, 0, n);
    return;
  }
  FOR_CHUNKS(t, n, i) {
    residual_forward(xo + i * C, x + i * C, r + i * C, C);
    if (nout) norm_rows(s, nout, xo, w, b, i, 1);
    if (nout && ahead(t, next)) lm_qmatmul_prepare_row(nout, n, next->cols, s->qscratch, i);
  }
  phase_end(t, n);
}

/* out(n,OC) = inp(n,C) @ W^T + b, as linear(); in a team, chunks of weight rows (per: about 4 a
 * thread, for balance; a multiple of 16, quant.c's panel (LM_QP) and 4 of linear.c's blocks). 4 rather than
 * 16: GPT-2 124M decode at 2 threads on a quiet machine, 68.6 -> 73 tok/s (the old parallel-for per
 * op: 77.5); a thread that loses its core still leaves its chunks to the other */
static void op_linear(lm_fwd *s, team *t, float *out, const float *inp, const float *w, const float *b, const lm_qmat *q,
                      int64_t n, int64_t C, int64_t OC, int ready, int act, const lm_qmat *next) {
  /* ready: inp quantized already, in qscratch (1) or, by the previous linear's chunks, in qnext (2) */
  void *qs = ready == 2 ? s->qnext : s->qscratch;
  if (!t) { linear(s, out, inp, w, b, q, n, C, OC); return; }
  /* act >= 0 (an lm_act_kind): each chunk's outputs then go through the activation, and are
   * quantized for next (whole blocks: chunks of multiples of 32 columns), in the chunk (a phase, and
   * a wait, fewer; elementwise, so the same bits as the whole row at once) */
  int64_t al = act >= 0 ? 32 : 16;
  int64_t per = (OC / (4 * s->threads) + al - 1) / al * al;
  per = per < al ? al : per > PART_ROWS ? PART_ROWS : per;
  int64_t nch = (OC + per - 1) / per;
  int quant = q && q->type != LM_QW_F16;
  const uint16_t *wh = q ? (const uint16_t *)q->data : NULL;   /* weights kept as f16 (LM_QW_F16) */
  if (quant && !ready) {   /* the activations quantized once, a row per chunk, then the weight rows */
    FOR_CHUNKS(t, n, i) lm_qmatmul_prepare_row(inp, n, C, s->qscratch, i);
    phase_end(t, n);
  }
  FOR_CHUNKS(t, nch, ch) {
    int64_t o = ch * per, m = OC - o < per ? OC - o : per;
    if (quant) lm_qmatmul_part(q, n, b, out, qs, o, o + m, s->qpath);
    else {
      /* out's rows are OC apart: with several, the chunk's columns go through the thread's scratch */
      float *p = n == 1 ? out + o : s->part + (size_t)omp_get_thread_num() * FEW_ROWS * PART_ROWS;
      if (wh) lm_linear_rows_f16(p, inp, wh + o * C, b ? b + o : NULL, n, C, m);
      else lm_linear_rows(p, inp, w + o * C, b ? b + o : NULL, n, C, m);
      if (n > 1)
        for (int64_t i = 0; i < n; i++) memcpy(out + i * OC + o, p + i * m, m * sizeof(float));
    }
    for (int64_t i = 0; act >= 0 && i < n; i++) {
      act_forward(out + i * OC + o, out + i * OC + o, m, (lm_act_kind)act);
      if (next) lm_qmatmul_prepare_cols(out, n, OC, s->qnext, i, o, o + m);   /* qscratch: this linear's input */
    }
  }
  phase_end(t, nch);
}

/* query head h of run r (rows start[r].. of the step's N): attends (causally, within the sliding
 * window if any) to the run's cache's keys 0..p0+n-1; query head h reads key/value head h / (NH/NKV) */
static void attend(lm_fwd *s, float *y, const float *qkv, const lm_kv_run *u, int64_t i0, int64_t h, int64_t l, int64_t N) {
  const lm_config *c = &s->m->cfg;
  int64_t C = c->n_embd, NH = c->n_head, hs = C / NH, QKV = lm_qkv_width(c);
  int64_t KVC = lm_kv_heads(c) * hs, group = NH / lm_kv_heads(c), win = c->sliding_window;
  float scale = 1.0f / sqrtf((float)hs);
  int64_t n = u->n, p0 = u->pos, Lk = p0 + n;
  size_t layer = (size_t)l * u->kv->max_len * KVC;
  const float *Kh, *Vh;
  int64_t ld = KVC;
  if (u->kv->k16) {   /* an f16 cache: this head's keys and values up to Lk, as f32 in the thread's scratch */
    float *kf = s->kvf + (size_t)omp_get_thread_num() * 2 * s->max_len * hs, *vf = kf + s->max_len * hs;
    const uint16_t *k16 = u->kv->k16 + layer + (h / group) * hs, *v16 = u->kv->v16 + layer + (h / group) * hs;
    for (int64_t j = 0; j < Lk; j++) {
      lm_f16_to_f32_row(k16 + j * KVC, kf + j * hs, hs);
      lm_f16_to_f32_row(v16 + j * KVC, vf + j * hs, hs);
    }
    Kh = kf; Vh = vf; ld = hs;
  } else {
    Kh = u->kv->k + layer + (h / group) * hs; Vh = u->kv->v + layer + (h / group) * hs;
  }
  float *S = s->scores + (h * N + i0) * s->max_len;   /* (n, Lk), row stride Lk */
  /* causal: tiles of TQ query rows, each against the keys its last row sees (Lt), not all Lk: a
   * 512-token prompt (two chunks of 256) computes 3/4 of the scores and products the rectangle
   * would. Entries past a row's last visible key are zero, so a product's dropped columns add
   * nothing; a decoded token is one tile of all Lk keys. */
  for (int64_t a = 0; a < n; a += TQ) {
    int64_t m = n - a < TQ ? n - a : TQ, Lt = c->causal && p0 + a + m < Lk ? p0 + a + m : Lk;
    float *St = S + a * Lk;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)Lt, (int)hs, scale, qkv + (i0 + a) * QKV + h * hs,
                (int)QKV, Kh, (int)ld, 0.0f, St, (int)Lk);
    for (int64_t i = 0; i < m; i++) {
      float *row = St + i * Lk;
      int64_t visible = c->causal ? p0 + a + i + 1 : Lk;
      int64_t lo = win > 0 && visible - win > 0 ? visible - win : 0;
      /* vectorised (a prompt's softmax is about a tenth of its time with libm's scalar expf): the
       * maximum, vexp (kernels/vexp.h, training's attention's exp) and the sum in SIMD lanes, a fixed
       * order for a given build */
      float mx = -INFINITY;
      #pragma omp simd reduction(max:mx)
      for (int64_t j = lo; j < visible; j++) mx = row[j] > mx ? row[j] : mx;
      float sum = 0;
      #pragma omp simd reduction(+:sum)
      for (int64_t j = lo; j < visible; j++) { row[j] = vexp(row[j] - mx); sum += row[j]; }
      float inv = 1.0f / sum;
      for (int64_t j = 0; j < lo; j++) row[j] = 0.0f;
      for (int64_t j = lo; j < visible; j++) row[j] *= inv;
      for (int64_t j = visible; j < Lt; j++) row[j] = 0.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)hs, (int)Lt, 1.0f, St, (int)Lk,
                Vh, (int)ld, 0.0f, y + (i0 + a) * C + h * hs, (int)C);
  }
}

/* y(N,C): every run's queries, head by head (s->start: each run's first row); in a team, each head's
 * output quantized for the next linear's integer kernels in the same chunk when next is given (a
 * phase, and a wait, fewer: the caller checks that a head is whole blocks) */
static void op_attention(lm_fwd *s, team *t, float *y, const float *qkv, const lm_kv_run *runs, int n_runs, int64_t l, int64_t N,
                         const lm_qmat *next) {
  int64_t C = s->m->cfg.n_embd, NH = s->m->cfg.n_head, hs = C / NH, work = 0;
  if (t) {
    FOR_CHUNKS(t, n_runs * NH, k) {
      int64_t r = k / NH, h = k % NH;
      attend(s, y, qkv, &runs[r], s->start[r], h, l, N);
      for (int64_t i = s->start[r]; next && i < s->start[r] + runs[r].n; i++)
        lm_qmatmul_prepare_cols(y, N, C, s->qscratch, i, h * hs, (h + 1) * hs);
    }
    phase_end(t, n_runs * NH);
    return;
  }
  for (int r = 0; r < n_runs; r++) work += runs[r].n * (runs[r].pos + runs[r].n);
  /* a decoded token's per-head work is microseconds: a fork/join would cost more than it saves */
  #pragma omp parallel for collapse(2) schedule(static) num_threads(s->threads) if (work * hs * NH >= 65536)
  for (int r = 0; r < n_runs; r++)
    for (int64_t h = 0; h < NH; h++) attend(s, y, qkv, &runs[r], s->start[r], h, l, N);
}

/* the FFN: t(n,C) = proj(act(fc(a))) or proj(silu(gate(a)) * up(a)) */
static void op_mlp(lm_fwd *s, team *t, int64_t l, const lm_block_weights *w, const float *a, int64_t n) {
  const lm_config *c = &s->m->cfg;
  int64_t C = c->n_embd, F = lm_ffn_width(c), FW = lm_fc_width(c);
  const lm_qmat *fc = qlin(s->m, l, LM_QL_FC), *proj = qlin(s->m, l, LM_QL_FC_PROJ);
  if (t && !c->glu && F % LM_QK == 0) {   /* the activation (and proj's quantization) in fc's chunks */
    op_linear(s, t, s->h, a, w->fc_w, w->fc_b, fc, n, C, FW, ahead(t, fc), (int)c->act, ahead(t, proj) ? proj : NULL);
    op_linear(s, t, s->t, s->g, w->fc_proj_w, w->fc_proj_b, proj, n, F, C, ahead(t, proj) ? 2 : 0, -1, NULL);
    return;
  }
  op_linear(s, t, s->h, a, w->fc_w, w->fc_b, fc, n, C, FW, ahead(t, fc), -1, NULL);   /* a: by the norm before (forward) */
  if (!t) {
    if (c->glu) glu_forward(s->g, s->h, n, F);
    else act_forward(s->h, s->h, n * F, c->act);
  } else {
    FOR_CHUNKS(t, n, i) {
      if (c->glu) glu_forward(s->g + i * F, s->h + i * FW, 1, F);
      else act_forward(s->h + i * FW, s->h + i * FW, F, c->act);
      if (ahead(t, proj)) lm_qmatmul_prepare_row(s->g, n, F, s->qscratch, i);
    }
    phase_end(t, n);
  }
  op_linear(s, t, s->t, s->g, w->fc_proj_w, w->fc_proj_b, proj, n, F, C, ahead(t, proj), -1, NULL);
}

/* the forward of the n rows of runs, by the team's every thread (or by the caller alone) */
static void forward(lm_fwd *s, team *t, const lm_kv_run *runs, int n_runs, int64_t n) {
  const lm_model *m = s->m;
  const lm_config *c = &m->cfg;
  int64_t C = c->n_embd, QKV = lm_qkv_width(c), NH = c->n_head, NKV = lm_kv_heads(c);
  int64_t KVC = NKV * (C / NH);
  int mine = once_begin(t);
  if (mine) m->fam->embed_tokens(m, (const int32_t *)s->y, s->pos_ids, n, s->x);   /* the ids are in y (lm_fwd_feed) */
  once_end(t, mine);
  for (int64_t l = 0; l < c->n_layer; l++) {
    const lm_block_weights *w = &m->w.h[l];
    const float *ain = s->x;
    const lm_qmat *qkv = qlin(m, l, LM_QL_QKV), *fc = qlin(m, l, LM_QL_FC);
    /* pre-LN: from the second layer on, a = ln1(x) was made by the previous layer's last residual */
    if (c->pre_ln && l == 0) op_norm(s, t, s->a, s->x, w->ln1_w, w->ln1_b, n, qkv);
    if (c->pre_ln) ain = s->a;
    op_linear(s, t, s->qkv, ain, w->qkv_w, w->qkv_b, qkv, n, C, QKV, c->pre_ln && ahead(t, qkv), -1, NULL);
    if ((mine = once_begin(t))) {
      if (m->rope) rope_apply(s->qkv, QKV, NH + NKV, C / NH, s->pos_ids, m->rope, n, 0);
      for (int r = 0; r < n_runs; r++) {
        const lm_kv *kv = runs[r].kv;
        size_t at = ((size_t)l * kv->max_len + runs[r].pos) * KVC;
        for (int64_t i = 0; i < runs[r].n; i++, at += KVC) {
          const float *k = s->qkv + (s->start[r] + i) * QKV + C, *v = k + KVC;
          if (kv->k16) { lm_f32_to_f16_row(k, kv->k16 + at, KVC); lm_f32_to_f16_row(v, kv->v16 + at, KVC); }
          else { memcpy(kv->k + at, k, KVC * sizeof(float)); memcpy(kv->v + at, v, KVC * sizeof(float)); }
        }
      }
    }
    once_end(t, mine);
    const lm_qmat *proj = qlin(m, l, LM_QL_ATTN_PROJ);
    int ready = ahead(t, proj) && (C / NH) % LM_QK == 0;   /* attention quantizes whole blocks */
    op_attention(s, t, s->y, s->qkv, runs, n_runs, l, n, ready ? proj : NULL);
    op_linear(s, t, s->t, s->y, w->attn_proj_w, w->attn_proj_b, proj, n, C, C, ready, -1, NULL);
    if (c->pre_ln) {
      op_residual(s, t, s->x, s->x, s->t, s->a, w->ln2_w, w->ln2_b, n, fc);     /* x += attn; a = ln2(x) */
      op_mlp(s, t, l, w, s->a, n);
      if (l + 1 < c->n_layer)   /* x += mlp; a = the next layer's ln1(x), in the same phase */
        op_residual(s, t, s->x, s->x, s->t, s->a, m->w.h[l + 1].ln1_w, m->w.h[l + 1].ln1_b, n, qlin(m, l + 1, LM_QL_QKV));
      else op_residual(s, t, s->x, s->x, s->t, NULL, NULL, NULL, n, NULL);      /* x += mlp */
    } else {
      op_residual(s, t, s->a, s->x, s->t, s->x, w->ln1_w, w->ln1_b, n, fc);     /* x = ln1(x + attn) */
      op_mlp(s, t, l, w, s->x, n);
      op_residual(s, t, s->a, s->x, s->t, s->x, w->ln2_w, w->ln2_b, n, NULL);   /* x = ln2(x + mlp) */
    }
  }
  /* each run's last hidden state -> final norm -> logits */
  if ((mine = once_begin(t)))
    for (int r = 0; r < n_runs; r++) memmove(s->t + r * C, s->x + (s->start[r] + runs[r].n - 1) * C, C * sizeof(float));
  once_end(t, mine);
  const float *last = s->t;
  const lm_qmat *head = qlin(m, c->n_layer, 0);
  if (c->pre_ln) { op_norm(s, t, s->a, s->t, m->w.lnf_w, m->w.lnf_b, n_runs, head); last = s->a; }
  op_linear(s, t, s->logits, last, lm_model_lm_head(m), NULL, head, n_runs, C, c->vocab_size, c->pre_ln && ahead(t, head), -1, NULL);
}

const float *lm_fwd_feed(lm_fwd *s, const lm_kv_run *runs, int n_runs) {
  int64_t n = 0;
  for (int r = 0; r < n_runs; r++) {
    s->start[r] = n;
    for (int64_t i = 0; i < runs[r].n; i++) s->pos_ids[n++] = (int32_t)(runs[r].pos + i);
  }
  int32_t *ids = (int32_t *)s->y;   /* the runs' ids side by side (y is free until attention) */
  for (int r = 0, k = 0; r < n_runs; k += (int)runs[r].n, r++) memcpy(ids + k, runs[r].ids, runs[r].n * sizeof(int32_t));
  if (n > FEW_ROWS || s->threads < 2) { forward(s, NULL, runs, n_runs, n); return s->logits; }
  /* a decode step: one parallel region (see the top of the file) */
  for (int64_t k = 0; k < s->nph; k++) { atomic_init(&s->ph[k].next, 0); atomic_init(&s->ph[k].done, 0); }
  #pragma omp parallel num_threads(s->threads)
  {
    team t = {s->ph, 0};
    forward(s, &t, runs, n_runs, n);
  }
  return s->logits;
}

lm_status lm_session_feed(lm_session *s, const int32_t *ids, int64_t n, const float **logits) {
  const lm_config *c = s->state ? &s->m->cfg : &s->f->m->cfg;
  int64_t max_len = s->state ? s->max_len : s->kv.max_len;
  if (n <= 0) return lm_error(LM_ERR_ARG, "nothing to feed");
  if (s->pos + n > max_len)
    return lm_error(LM_ERR_RANGE, "%lld tokens exceed the context of %lld", (long long)(s->pos + n), (long long)max_len);
  for (int64_t i = 0; i < n; i++)
    if (ids[i] < 0 || ids[i] >= c->vocab_size)
      return lm_error(LM_ERR_RANGE, "token id %d is outside the vocabulary (%lld)", ids[i], (long long)c->vocab_size);
  if (s->state) {
    lm_status st = s->m->fam->state_feed(s->m, s->state, ids, n, s->logits);
    if (st) return st;
    s->pos += n;
    if (logits) *logits = s->logits;
    return LM_OK;
  }
  const float *lg = NULL;
  for (int64_t done = 0; done < n; done += CHUNK) {
    lm_kv_run run = {.kv = &s->kv, .pos = s->pos, .ids = ids + done, .n = n - done < CHUNK ? n - done : CHUNK};
    lg = lm_fwd_feed(s->f, &run, 1);
    s->pos += run.n;
  }
  if (logits) *logits = lg;
  return LM_OK;
}
