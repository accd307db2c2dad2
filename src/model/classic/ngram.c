/* ngram.c — interpolated modified Kneser–Ney over token ids (ngram.h).
 *
 * The model keeps its own copy of the training ids; an n-gram is stored as the
 * position of one occurrence in that stream plus its order, in an open-
 * addressing hash table per order (keys compared against the stream, so a
 * query's n-gram needs no copy either). Counting:
 *   - order N: the raw count of every N-gram of the stream;
 *   - order k < N: the continuation count N1+(•g), one per distinct (k+1)-gram
 *     ending in g (read off the order-(k+1) table);
 *   - per order, the counts of counts n1..n4 give the discounts
 *     Y = n1/(n1+2 n2), D1 = 1 − 2Y n2/n1, D2 = 2 − 3Y n3/n2, D3+ = 3 − 4Y n4/n3
 *     (each clamped to [0, c]; (0.5, 1, 1.5) when a count of counts is 0);
 *   - per context h of order-k grams, c(h) = Σ_w c(hw) and N1, N2, N3+(h•).
 * Queries walk up from the unigram level (interpolated with 1/V). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "base/base.h"
#include "model/classic/ngram.h"

#define MAX_ORDER 8

typedef struct { int64_t pos; double v[4]; } slot;   /* pos < 0: empty; v: count, or c(h), N1, N2, N3+ */
typedef struct { slot *s; size_t cap, n; int k; } table;   /* k-grams */

struct lm_ngram {
  uint32_t *ids;
  size_t n;
  int order;
  int64_t vocab;
  table gram[MAX_ORDER + 1];   /* [k]: k-grams and their counts */
  table ctx[MAX_ORDER + 1];    /* [k]: (k-1)-gram contexts of order-k grams and their statistics */
  double d[MAX_ORDER + 1][3];
  double uni_total, uni_n[3];  /* order 1: Σ counts and N1, N2, N3+ */
};

static uint64_t hash_ids(const uint32_t *x, int k) {
  uint64_t h = 0x9e3779b97f4a7c15ull ^ (uint64_t)k;
  for (int i = 0; i < k; i++) { h ^= x[i]; h *= 0xff51afd7ed558ccdull; h ^= h >> 32; }
  return h;
}

static lm_status table_init(table *t, int k, size_t expect) {
  t->k = k; t->n = 0; t->cap = 16;
  while (t->cap < 2 * expect + 16) t->cap *= 2;
  t->s = lm_xmalloc(t->cap * sizeof *t->s);
  if (!t->s) return LM_ERR_NOMEM;
  for (size_t i = 0; i < t->cap; i++) t->s[i] = (slot){.pos = -1};
  return LM_OK;
}

/* the slot of key x (k ids) in t, or NULL; with add, inserted (pos = where x is in the stream) */
static slot *table_find(const lm_ngram *m, table *t, const uint32_t *x, int64_t pos, int add) {
  size_t mask = t->cap - 1, i = (size_t)hash_ids(x, t->k) & mask;
  for (;; i = (i + 1) & mask) {
    slot *s = &t->s[i];
    if (s->pos < 0) {
      if (!add) return NULL;
      s->pos = pos;
      t->n++;
      return s;
    }
    if (!memcmp(m->ids + s->pos, x, (size_t)t->k * sizeof *x)) return s;
  }
}

static lm_status table_grow(const lm_ngram *m, table *t) {
  if (2 * (t->n + 1) <= t->cap) return LM_OK;
  table u;
  if (table_init(&u, t->k, t->cap)) return LM_ERR_NOMEM;
  for (size_t i = 0; i < t->cap; i++)
    if (t->s[i].pos >= 0) *table_find(m, &u, m->ids + t->s[i].pos, t->s[i].pos, 1) = t->s[i];
  free(t->s);
  *t = u;
  return LM_OK;
}

static lm_status add(lm_ngram *m, table *t, int64_t pos, int bucket, double v) {
  if (table_grow(m, t)) return LM_ERR_NOMEM;
  slot *s = table_find(m, t, m->ids + pos, pos, 1);
  s->v[bucket] += v;
  return LM_OK;
}

static void discounts(const table *t, double d[3]) {
  double nc[5] = {0};
  for (size_t i = 0; i < t->cap; i++) {
    double c = t->s[i].pos >= 0 ? t->s[i].v[0] : 0;
    if (c >= 1 && c <= 4) nc[(int)c]++;
  }
  if (!nc[1] || !nc[2] || !nc[3] || !nc[4]) { d[0] = 0.5; d[1] = 1; d[2] = 1.5; return; }
  double Y = nc[1] / (nc[1] + 2 * nc[2]);
  d[0] = fmin(fmax(1 - 2 * Y * nc[2] / nc[1], 0), 1);
  d[1] = fmin(fmax(2 - 3 * Y * nc[3] / nc[2], 0), 2);
  d[2] = fmin(fmax(3 - 4 * Y * nc[4] / nc[3], 0), 3);
}

static double disc(const double d[3], double c) { return c <= 0 ? 0 : c < 2 ? d[0] : c < 3 ? d[1] : d[2]; }
static int bucket(double c) { return c < 2 ? 1 : c < 3 ? 2 : 3; }

lm_status lm_ngram_train(lm_ngram **out, const uint32_t *ids, size_t n, int order, int64_t vocab) {
  *out = NULL;
  if (order < 1 || order > MAX_ORDER) return lm_error(LM_ERR_ARG, "n-gram order %d is not in 1..%d", order, MAX_ORDER);
  if (vocab < 1) return lm_error(LM_ERR_ARG, "an n-gram model needs a vocabulary");
  if (n < (size_t)order) return lm_error(LM_ERR_ARG, "%zu tokens are fewer than the order %d", n, order);
  for (size_t i = 0; i < n; i++)
    if (ids[i] >= (uint64_t)vocab) return lm_error(LM_ERR_RANGE, "token %u at %zu is outside the vocabulary of %lld", ids[i], i, (long long)vocab);
  lm_ngram *m = calloc(1, sizeof *m);
  if (!m || !(m->ids = lm_xmalloc((n ? n : 1) * sizeof *ids))) { free(m); return lm_error(LM_ERR_NOMEM, "out of memory"); }
  memcpy(m->ids, ids, n * sizeof *ids);
  m->n = n; m->order = order; m->vocab = vocab;
  lm_status st = LM_OK;
  for (int k = 1; k <= order && !st; k++) st = table_init(&m->gram[k], k, 1024);
  for (int k = 2; k <= order && !st; k++) st = table_init(&m->ctx[k], k - 1, 1024);
  /* raw counts at the top, continuation counts below */
  for (size_t p = 0; p + (size_t)order <= n && !st; p++) st = add(m, &m->gram[order], (int64_t)p, 0, 1);
  for (int k = order - 1; k >= 1 && !st; k--) {
    const table *up = &m->gram[k + 1];
    for (size_t i = 0; i < up->cap && !st; i++)
      if (up->s[i].pos >= 0) st = add(m, &m->gram[k], up->s[i].pos + 1, 0, 1);
  }
  for (int k = 1; k <= order && !st; k++) {
    discounts(&m->gram[k], m->d[k]);
    const table *g = &m->gram[k];
    for (size_t i = 0; i < g->cap && !st; i++) {
      if (g->s[i].pos < 0) continue;
      double c = g->s[i].v[0];
      if (k == 1) { m->uni_total += c; m->uni_n[bucket(c) - 1]++; continue; }
      st = add(m, &m->ctx[k], g->s[i].pos, 0, c);
      if (!st) st = add(m, &m->ctx[k], g->s[i].pos, bucket(c), 1);
    }
  }
  if (st) { lm_ngram_free(m); return st; }
  *out = m;
  return LM_OK;
}

void lm_ngram_free(lm_ngram *m) {
  if (!m) return;
  for (int k = 0; k <= MAX_ORDER; k++) { free(m->gram[k].s); free(m->ctx[k].s); }
  free(m->ids);
  free(m);
}

void lm_ngram_discounts(const lm_ngram *m, int k, double d[3]) {
  for (int i = 0; i < 3; i++) d[i] = k >= 1 && k <= m->order ? m->d[k][i] : NAN;
}

double lm_ngram_prob(const lm_ngram *m, const uint32_t *ctx, size_t n_ctx, uint32_t w) {
  if (w >= (uint64_t)m->vocab) return 0;
  uint32_t key[MAX_ORDER];
  table *g1 = (table *)&m->gram[1];
  const double *d = m->d[1];
  double p = 1.0 / (double)m->vocab;
  if (m->uni_total > 0) {
    slot *s = table_find(m, g1, &w, 0, 0);
    double c = s ? s->v[0] : 0;
    double gamma = (d[0] * m->uni_n[0] + d[1] * m->uni_n[1] + d[2] * m->uni_n[2]) / m->uni_total;
    p = fmax(c - disc(d, c), 0) / m->uni_total + gamma * p;
  }
  for (int k = 2; k <= m->order && (size_t)(k - 1) <= n_ctx; k++) {
    memcpy(key, ctx + n_ctx - (k - 1), (size_t)(k - 1) * sizeof *key);
    key[k - 1] = w;
    slot *h = table_find(m, (table *)&m->ctx[k], key, 0, 0);
    if (!h || h->v[0] <= 0) continue;   /* an unseen context: the lower order's estimate */
    slot *s = table_find(m, (table *)&m->gram[k], key, 0, 0);
    double c = s ? s->v[0] : 0;
    d = m->d[k];
    double gamma = (d[0] * h->v[1] + d[1] * h->v[2] + d[2] * h->v[3]) / h->v[0];
    p = fmax(c - disc(d, c), 0) / h->v[0] + gamma * p;
  }
  return p;
}

/* lm_ngram_prob for every w at once: the same sums in the same order, so the same bits, with each
 * order's context looked up once instead of once per w */
void lm_ngram_dist(const lm_ngram *m, const uint32_t *ctx, size_t n_ctx, double *p) {
  uint32_t key[MAX_ORDER];
  const double *d = m->d[1];
  double gamma = m->uni_total > 0 ? (d[0] * m->uni_n[0] + d[1] * m->uni_n[1] + d[2] * m->uni_n[2]) / m->uni_total : 0;
  for (int64_t w = 0; w < m->vocab; w++) {
    p[w] = 1.0 / (double)m->vocab;
    if (m->uni_total <= 0) continue;
    key[0] = (uint32_t)w;
    slot *s = table_find(m, (table *)&m->gram[1], key, 0, 0);
    double c = s ? s->v[0] : 0;
    p[w] = fmax(c - disc(d, c), 0) / m->uni_total + gamma * p[w];
  }
  for (int k = 2; k <= m->order && (size_t)(k - 1) <= n_ctx; k++) {
    memcpy(key, ctx + n_ctx - (k - 1), (size_t)(k - 1) * sizeof *key);
    slot *h = table_find(m, (table *)&m->ctx[k], key, 0, 0);
    if (!h || h->v[0] <= 0) continue;
    d = m->d[k];
    gamma = (d[0] * h->v[1] + d[1] * h->v[2] + d[2] * h->v[3]) / h->v[0];
    for (int64_t w = 0; w < m->vocab; w++) {
      key[k - 1] = (uint32_t)w;
      slot *s = table_find(m, (table *)&m->gram[k], key, 0, 0);
      double c = s ? s->v[0] : 0;
      p[w] = fmax(c - disc(d, c), 0) / h->v[0] + gamma * p[w];
    }
  }
}

int lm_ngram_order(const lm_ngram *m) { return m->order; }
int64_t lm_ngram_vocab(const lm_ngram *m) { return m->vocab; }
size_t lm_ngram_tokens(const lm_ngram *m) { return m->n; }
size_t lm_ngram_count(const lm_ngram *m, int k) { return k >= 1 && k <= m->order ? m->gram[k].n : 0; }

/* ------------------------------------------------------------------ the file */

#define MAGIC "LMNGRAM1"
#define HEADER 32   /* magic 8, order 4, width 4, vocab 8, n 8 */

static void put_le(char *p, uint64_t v, int bytes) { for (int i = 0; i < bytes; i++) p[i] = (char)(v >> (8 * i)); }
static uint64_t get_le(const unsigned char *p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; i++) v |= (uint64_t)p[i] << (8 * i);
  return v;
}

lm_status lm_ngram_write(const lm_ngram *m, char **out, size_t *len) {
  int w = m->vocab <= 65536 ? 2 : 4;
  size_t n = HEADER + m->n * (size_t)w;
  char *b = lm_xmalloc(n);
  if (!b) return lm_error(LM_ERR_NOMEM, "out of memory for the n-gram file (%zu bytes)", n);
  memcpy(b, MAGIC, 8);
  put_le(b + 8, (uint64_t)m->order, 4); put_le(b + 12, (uint64_t)w, 4);
  put_le(b + 16, (uint64_t)m->vocab, 8); put_le(b + 24, (uint64_t)m->n, 8);
  for (size_t i = 0; i < m->n; i++) put_le(b + HEADER + i * w, m->ids[i], w);
  *out = b; *len = n;
  return LM_OK;
}

lm_status lm_ngram_read(lm_ngram **out, const void *data, size_t len, int order, int64_t vocab) {
  const unsigned char *p = data;
  *out = NULL;
  if (len < HEADER || memcmp(p, MAGIC, 8)) return lm_error(LM_ERR_FORMAT, "not an lmkit n-gram file (no " MAGIC " header)");
  uint64_t o = get_le(p + 8, 4), w = get_le(p + 12, 4), v = get_le(p + 16, 8), n = get_le(p + 24, 8);
  if (o < 1 || o > MAX_ORDER) return lm_error(LM_ERR_FORMAT, "n-gram file: order %llu is not in 1..%d", (unsigned long long)o, MAX_ORDER);
  if (v < 1 || v > (1ull << 32)) return lm_error(LM_ERR_FORMAT, "n-gram file: vocabulary %llu out of range", (unsigned long long)v);
  if (w != (v <= 65536 ? 2u : 4u))   /* one way to write each file */
    return lm_error(LM_ERR_FORMAT, "n-gram file: %llu bytes per id for a vocabulary of %llu (2 up to 65536, else 4)",
                    (unsigned long long)w, (unsigned long long)v);
  if ((order && o != (uint64_t)order) || (vocab && v != (uint64_t)vocab))
    return lm_error(LM_ERR_FORMAT, "n-gram file: order %llu and vocabulary %llu, but the config says %d and %lld",
                    (unsigned long long)o, (unsigned long long)v, order, (long long)vocab);
  if (n > (len - HEADER) / w || HEADER + n * w != len)
    return lm_error(LM_ERR_FORMAT, "n-gram file: %llu ids of %llu bytes do not fill its %zu bytes", (unsigned long long)n,
                    (unsigned long long)w, len);
  uint32_t *ids = lm_xmalloc((n ? n : 1) * sizeof *ids);
  if (!ids) return lm_error(LM_ERR_NOMEM, "out of memory for %llu n-gram ids", (unsigned long long)n);
  for (size_t i = 0; i < n; i++) ids[i] = (uint32_t)get_le(p + HEADER + i * w, (int)w);
  lm_status st = lm_ngram_train(out, ids, n, (int)o, (int64_t)v);   /* checks every id against the vocabulary */
  free(ids);
  if (st) lm_error_prefix(st, "n-gram file");
  return st;
}
