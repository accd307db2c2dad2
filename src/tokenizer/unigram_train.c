/* unigram_train.c — learning a SentencePiece-style Unigram model from text
 * (SentencePiece's unigram_model_trainer.cc, re-done in C; unigram.c encodes).
 *
 * 1. Words. Each line of the corpus goes through the pipeline the tokenizer
 *    will have (NFKC, whitespace runs to one space, strip; Metaspace "▁"
 *    prepended and split before each "▁"), so training sees exactly the
 *    pieces encoding sees; distinct words are counted (sorting, then runs).
 * 2. Characters. Code points by frequency; those covering 99.95% of the text
 *    are required (always in the vocabulary), the rest are unknown.
 * 3. Seeds. Every substring of up to 16 characters of a word that is a valid
 *    piece (no unknown character, "▁" only first, one Unicode script — digits
 *    and punctuation are the Common script, combining marks take their base's)
 *    occurring at least twice and right-branching (followed by two different
 *    characters, or ending a word), as the suffix-tree nodes SentencePiece
 *    enumerates; the characters, then the 10^6 substrings of highest
 *    frequency x length; score = log of the share of that count.
 * 4. EM. Two rounds of: E — forward-backward over each word's lattice (every
 *    piece that matches at each position; a character with no piece is the
 *    unknown token at min score - 10) gives each piece's expected count;
 *    M — pieces expected fewer than 0.5 times go, the others score
 *    digamma(count) - digamma(total) (SentencePiece's Bayesian EM).
 * 5. Pruning, until at most 1.1 x the vocabulary is left: a piece whose own
 *    Viterbi segmentation is split, or that no word's Viterbi path uses, goes;
 *    for the others the loss of the corpus likelihood if its count moved to
 *    its second-best segmentation is estimated, and the 25% with the lowest
 *    loss go (shrinking factor 0.75). SentencePiece 0.1.97's estimate is kept
 *    as is, including its new total sum + freq x (pieces - 1).
 * 6. The vocabulary: the required characters, then the highest scores; sorted
 *    by score. It is written as tokenizer.json: <unk> (id 0), the byte pieces
 *    <0x00>..<0xFF> with --byte-fallback, the pieces, then the special tokens
 *    as added tokens (past the model's vocabulary, so text never matches them).
 *
 * The E step and the Viterbi passes run in parallel over words with
 * per-thread sums added in thread order: same data and threads, same model. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>
#include <cjson/cJSON.h>
#include "tokenizer/pipeline.h"

#define MAX_PIECE 16            /* characters (max_sentencepiece_length) */
#define SEED_SIZE 1000000       /* seed_sentencepiece_size */
#define COVERAGE 0.9995         /* character_coverage */
#define SHRINK 0.75             /* shrinking_factor */
#define SUB_ITERS 2             /* num_sub_iterations */
#define UNK_CP 0xFFFFFFFFu      /* a character outside the required ones */
#define END_CP 0xFFFFFFFEu      /* "the word ends here" */
#define WS_CP 0x2581u           /* ▁ */

static const char *const NORMALIZER =
  "{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"NFKC\"},"
  "{\"type\":\"Replace\",\"pattern\":{\"Regex\":\"\\\\s+\"},\"content\":\" \"},"
  "{\"type\":\"Strip\",\"strip_left\":true,\"strip_right\":true}]}";
static const char *const METASPACE = "{\"type\":\"Metaspace\",\"replacement\":\"\xe2\x96\x81\",\"prepend_scheme\":\"always\",\"split\":true}";

/* ------------------------------------------------------------ scripts */
/* SentencePiece's unicode_script, coarsely: letters of the main scripts by range (Han, Hiragana and
 * Katakana as one, as SentencePiece merges them), other letters by 128-character block, combining
 * marks inherit, everything else (digits, punctuation, symbols) is Common. */
enum { SC_COMMON = 0, SC_INHERITED = 1, SC_LATIN, SC_GREEK, SC_CYRILLIC, SC_ARMENIAN, SC_HEBREW, SC_ARABIC,
       SC_DEVANAGARI, SC_BENGALI, SC_THAI, SC_GEORGIAN, SC_HANGUL, SC_HAN, SC_OTHER };
static int script_of(uint32_t c) {
  static const struct { uint32_t lo, hi; int s; } R[] = {
    {0x41, 0x5A, SC_LATIN}, {0x61, 0x7A, SC_LATIN}, {0xAA, 0xAA, SC_LATIN}, {0xBA, 0xBA, SC_LATIN},
    {0xC0, 0xD6, SC_LATIN}, {0xD8, 0xF6, SC_LATIN}, {0xF8, 0x24F, SC_LATIN}, {0x1E00, 0x1EFF, SC_LATIN},
    {0xFF21, 0xFF3A, SC_LATIN}, {0xFF41, 0xFF5A, SC_LATIN}, {0x370, 0x3FF, SC_GREEK}, {0x1F00, 0x1FFF, SC_GREEK},
    {0x400, 0x52F, SC_CYRILLIC}, {0x530, 0x58F, SC_ARMENIAN}, {0x590, 0x5FF, SC_HEBREW}, {0x600, 0x6FF, SC_ARABIC},
    {0x900, 0x97F, SC_DEVANAGARI}, {0x980, 0x9FF, SC_BENGALI}, {0xE00, 0xE7F, SC_THAI}, {0x10A0, 0x10FF, SC_GEORGIAN},
    {0x1100, 0x11FF, SC_HANGUL}, {0x3130, 0x318F, SC_HANGUL}, {0xAC00, 0xD7AF, SC_HANGUL}, {0x2E80, 0x2FDF, SC_HAN},
    {0x3005, 0x3007, SC_HAN}, {0x3021, 0x3029, SC_HAN}, {0x3040, 0x30FF, SC_HAN}, {0x3400, 0x4DBF, SC_HAN},
    {0x4E00, 0x9FFF, SC_HAN}, {0xF900, 0xFAFF, SC_HAN}, {0xFF66, 0xFF9F, SC_HAN}, {0x20000, 0x3FFFF, SC_HAN}};
  int cat = lm_uni_category(c);
  if (cat == UTF8PROC_CATEGORY_MN || cat == UTF8PROC_CATEGORY_ME) return SC_INHERITED;
  if (cat < UTF8PROC_CATEGORY_LU || cat > UTF8PROC_CATEGORY_LO) {
    for (size_t i = 0; i < sizeof R / sizeof *R; i++)   /* marks and signs inside a script's block (Mc) */
      if (c >= R[i].lo && c <= R[i].hi && cat == UTF8PROC_CATEGORY_MC) return R[i].s;
    return SC_COMMON;
  }
  for (size_t i = 0; i < sizeof R / sizeof *R; i++)
    if (c >= R[i].lo && c <= R[i].hi) return R[i].s;
  return SC_OTHER + (int)(c >> 7);
}

/* ------------------------------------------------------------ code-point strings -> values */
typedef struct {
  uint64_t h;              /* 0: empty slot */
  const uint32_t *s; uint32_t n;
  uint32_t next;           /* seeds: the character after the first occurrence */
  int32_t branch;          /* seeds: followed by two different characters, or ending a word */
  int64_t val;             /* seeds: count; pieces: id, -2 for a prefix of a piece that is not one */
} cpent;
typedef struct { cpent *e; uint64_t cap, n; } cpmap;

static uint64_t cp_hash(const uint32_t *s, uint32_t n) {
  uint64_t h = 0x9E3779B97F4A7C15ull ^ n;
  for (uint32_t i = 0; i < n; i++) h = lm_tok_mix64(h ^ s[i]);
  return h | 1;
}

static void cpmap_free(cpmap *m) { free(m->e); memset(m, 0, sizeof *m); }

/* The slot of s: its entry, or the empty slot where it goes (h set, n 0 until filled). */
static cpent *cpmap_slot(cpmap *m, const uint32_t *s, uint32_t n) {
  uint64_t h = cp_hash(s, n), i = h & (m->cap - 1);
  while (m->e[i].h) {
    if (m->e[i].h == h && m->e[i].n == n && !memcmp(m->e[i].s, s, n * sizeof *s)) return &m->e[i];
    i = (i + 1) & (m->cap - 1);
  }
  m->e[i].h = h;
  return &m->e[i];
}

static lm_status cpmap_reserve(cpmap *m, uint64_t more) {
  if ((m->n + more) * 2 <= m->cap) return LM_OK;
  uint64_t nc = lm_tok_pow2_at_least(4 * (m->n + more));
  cpent *old = m->e;
  uint64_t oc = m->cap;
  if (!(m->e = calloc(nc, sizeof *m->e))) { m->e = old; return lm_error(LM_ERR_NOMEM, "out of memory"); }
  m->cap = nc;
  for (uint64_t i = 0; i < oc; i++)
    if (old[i].h) {
      uint64_t j = old[i].h & (nc - 1);
      while (m->e[j].h) j = (j + 1) & (nc - 1);
      m->e[j] = old[i];
    }
  free(old);
  return LM_OK;
}

/* ------------------------------------------------------------ the model being trained */
typedef struct {
  uint32_t *pool; size_t pool_n, pool_cap;   /* the pieces' characters */
  size_t *off; uint32_t *len; double *score; int64_t n, cap;
  cpmap map;                                  /* piece (and its prefixes) -> id */
  double min_score;
} model;

static void model_free(model *p) { free(p->pool); free(p->off); free(p->len); free(p->score); cpmap_free(&p->map); }

static lm_status model_add(model *p, const uint32_t *s, uint32_t n, double score) {
  if (p->n == p->cap) {
    int64_t nc = p->cap ? 2 * p->cap : 1024;
    size_t *o = realloc(p->off, (size_t)nc * sizeof *o); if (!o) return lm_error(LM_ERR_NOMEM, "out of memory"); p->off = o;
    uint32_t *l = realloc(p->len, (size_t)nc * sizeof *l); if (!l) return lm_error(LM_ERR_NOMEM, "out of memory"); p->len = l;
    double *sc = realloc(p->score, (size_t)nc * sizeof *sc); if (!sc) return lm_error(LM_ERR_NOMEM, "out of memory"); p->score = sc;
    p->cap = nc;
  }
  if (p->pool_n + n > p->pool_cap) {
    size_t nc = p->pool_cap ? p->pool_cap : 4096;
    while (nc < p->pool_n + n) nc *= 2;
    uint32_t *q = realloc(p->pool, nc * sizeof *q);
    if (!q) return lm_error(LM_ERR_NOMEM, "out of memory");
    p->pool = q; p->pool_cap = nc;
  }
  memcpy(p->pool + p->pool_n, s, n * sizeof *s);
  p->off[p->n] = p->pool_n; p->len[p->n] = n; p->score[p->n] = score;
  p->pool_n += n; p->n++;
  return LM_OK;
}

/* The lookup table of the pieces and their prefixes, and the min score. */
static lm_status model_index(model *p) {
  cpmap_free(&p->map);
  if (cpmap_reserve(&p->map, (uint64_t)p->pool_n + 16)) return LM_ERR_NOMEM;
  p->min_score = INFINITY;
  for (int64_t i = 0; i < p->n; i++) {
    const uint32_t *s = p->pool + p->off[i];
    if (p->score[i] < p->min_score) p->min_score = p->score[i];
    for (uint32_t k = 1; k <= p->len[i]; k++) {
      cpent *e = cpmap_slot(&p->map, s, k);
      if (!e->n) { e->s = s; e->n = k; e->val = -2; p->map.n++; }
      if (k == p->len[i]) e->val = i;
    }
  }
  return LM_OK;
}

/* ------------------------------------------------------------ lattices */
typedef struct { uint32_t b, e; int32_t id; double score; } node;
typedef struct { node *nd; size_t n, cap; double *a, *bt; int32_t *back; size_t acap; } lattice;

static void lat_free(lattice *l) { free(l->nd); free(l->a); free(l->bt); free(l->back); }

/* Every piece matching in c[0..n) (by begin), and the unknown token where no piece has the character. */
static int lat_build(lattice *l, const model *p, const uint32_t *c, uint32_t n) {
  l->n = 0;
  if (n + 1 > l->acap) {
    size_t na = 2 * (size_t)n + 16;
    double *a = realloc(l->a, na * sizeof *a), *bt = a ? realloc(l->bt, na * sizeof *bt) : NULL;
    if (a) l->a = a;
    if (bt) l->bt = bt;
    int32_t *bk = bt ? realloc(l->back, na * sizeof *bk) : NULL;
    if (!bk) return -1;
    l->back = bk; l->acap = na;
  }
  for (uint32_t b = 0; b < n; b++) {
    int single = 0;
    for (uint32_t k = 1; k <= MAX_PIECE && b + k <= n; k++) {
      if (!p->map.cap) break;
      uint64_t h = cp_hash(c + b, k), i = h & (p->map.cap - 1);
      const cpent *e = NULL;
      while (p->map.e[i].h) {
        if (p->map.e[i].h == h && p->map.e[i].n == k && !memcmp(p->map.e[i].s, c + b, k * sizeof *c)) { e = &p->map.e[i]; break; }
        i = (i + 1) & (p->map.cap - 1);
      }
      if (!e) break;
      if (e->val < 0) continue;
      if (l->n == l->cap) {
        size_t nc = l->cap ? 2 * l->cap : 256;
        node *q = realloc(l->nd, nc * sizeof *q);
        if (!q) return -1;
        l->nd = q; l->cap = nc;
      }
      l->nd[l->n++] = (node){b, b + k, (int32_t)e->val, p->score[e->val]};
      single |= k == 1;
    }
    if (!single) {
      if (l->n == l->cap) {
        size_t nc = l->cap ? 2 * l->cap : 256;
        node *q = realloc(l->nd, nc * sizeof *q);
        if (!q) return -1;
        l->nd = q; l->cap = nc;
      }
      l->nd[l->n++] = (node){b, b + 1, -1, p->min_score - 10.0};
    }
  }
  return 0;
}

static inline double logadd(double x, double y) {
  if (x == -INFINITY) return y;
  if (y == -INFINITY) return x;
  return x > y ? x + log1p(exp(y - x)) : y + log1p(exp(x - y));
}

/* Forward-backward: adds f x the marginal of each piece node to ex. */
static void lat_marginals(lattice *l, uint32_t n, double f, double *ex) {
  for (uint32_t i = 0; i <= n; i++) { l->a[i] = -INFINITY; l->bt[i] = -INFINITY; }
  l->a[0] = 0; l->bt[n] = 0;
  for (size_t k = 0; k < l->n; k++) { const node *d = &l->nd[k]; l->a[d->e] = logadd(l->a[d->e], l->a[d->b] + d->score); }
  for (size_t k = l->n; k-- > 0;) { const node *d = &l->nd[k]; l->bt[d->b] = logadd(l->bt[d->b], d->score + l->bt[d->e]); }
  double z = l->a[n];
  for (size_t k = 0; k < l->n; k++) {
    const node *d = &l->nd[k];
    if (d->id >= 0) ex[d->id] += f * exp(l->a[d->b] + d->score + l->bt[d->e] - z);
  }
}

/* Viterbi over the nodes but node `skip` (-1: none): the best path's node indices, last first, in
 * path (room for n); returns their count, 0 when no path is left. On ties the earlier node stays,
 * as in SentencePiece's lattice. */
static int lat_viterbi(lattice *l, uint32_t n, long skip, int32_t *path) {
  for (uint32_t i = 0; i <= n; i++) { l->a[i] = -INFINITY; l->back[i] = -1; }
  l->a[0] = 0;
  for (size_t k = 0; k < l->n; k++) {
    if ((long)k == skip) continue;
    const node *d = &l->nd[k];
    if (l->a[d->b] == -INFINITY) continue;
    double s = l->a[d->b] + d->score;
    if (l->back[d->e] < 0 || s > l->a[d->e]) { l->a[d->e] = s; l->back[d->e] = (int32_t)k; }
  }
  if (l->back[n] < 0) return 0;
  int m = 0;
  for (uint32_t e = n; e > 0; e = l->nd[l->back[e]].b) path[m++] = l->back[e];
  return m;
}

/* ------------------------------------------------------------ words */
typedef struct {
  uint32_t *cp; size_t *off; uint32_t *len; int64_t *count; int64_t n;   /* distinct words as characters */
} words;

typedef struct { char *b; size_t n, cap; size_t *off; uint32_t *len; size_t nw, cw; } wordbuf;   /* words as read */

static lm_status emit_word(void *user, const char *p, size_t n) {
  wordbuf *w = user;
  if (w->nw == w->cw) {
    size_t nc = w->cw ? 2 * w->cw : 1 << 16;
    size_t *o = realloc(w->off, nc * sizeof *o); if (!o) return lm_error(LM_ERR_NOMEM, "out of memory"); w->off = o;
    uint32_t *l = realloc(w->len, nc * sizeof *l); if (!l) return lm_error(LM_ERR_NOMEM, "out of memory"); w->len = l;
    w->cw = nc;
  }
  if (w->n + n > w->cap) {
    size_t nc = w->cap ? w->cap : 1 << 20;
    while (nc < w->n + n) nc *= 2;
    char *b = realloc(w->b, nc); if (!b) return lm_error(LM_ERR_NOMEM, "out of memory");
    w->b = b; w->cap = nc;
  }
  memcpy(w->b + w->n, p, n);
  w->off[w->nw] = w->n; w->len[w->nw] = (uint32_t)n; w->nw++;
  w->n += n;
  return LM_OK;
}

typedef struct { const char *p; size_t n; } span;
static int cmp_span(const void *x, const void *y) {
  const span *a = x, *b = y;
  int c = memcmp(a->p, b->p, a->n < b->n ? a->n : b->n);
  return c ? c : (a->n > b->n) - (a->n < b->n);
}

/* Reads the corpus line by line through the normalizer and Metaspace; counts distinct words. */
static lm_status read_words(const char *const *files, int n_files, words *W) {
  lm_status st = LM_OK;
  cJSON *nj = cJSON_Parse(NORMALIZER), *pj = cJSON_Parse(METASPACE);
  lm_tok_norm *nm = NULL;
  lm_tok_pretok *pt = NULL;
  int bl = 0;
  pcre2_match_data *md = pcre2_match_data_create(1, NULL);
  lm_tok_buf nb[2] = {{0}}, pb[LM_TOK_MAX_STAGES] = {{0}};
  wordbuf wb = {0};
  span *order = NULL;
  if (!nj || !pj || !md) { st = lm_error(LM_ERR_NOMEM, "out of memory"); goto done; }
  if ((st = lm_tok_norm_parse(&nm, nj, "normalizer")) || (st = lm_tok_pretok_parse(&pt, pj, "pre_tokenizer", &bl))) goto done;
  for (int f = 0; f < n_files && !st; f++) {
    lm_mmap mp;
    if ((st = lm_mmap_open(&mp, files[f]))) break;
    const char *t = mp.data;
    int64_t line = 0;
    for (size_t at = 0; at < mp.len && !st;) {
      const char *nl = memchr(t + at, '\n', mp.len - at);
      size_t l = nl ? (size_t)(nl - (t + at)) : mp.len - at;
      line++;
      if (lm_utf8_valid_prefix((const uint8_t *)t + at, l) != l)
        st = lm_error(LM_ERR_FORMAT, "%s:%lld: not valid UTF-8", files[f], (long long)line);
      const char *res; size_t rn;
      if (!st && l && !(st = lm_tok_norm_apply(nm, md, t + at, l, nb, &res, &rn)) && rn)
        st = lm_tok_pretok_run(pt, md, pb, res, rn, 1, emit_word, &wb);
      at += l + (nl != NULL);
    }
    lm_mmap_close(&mp);
  }
  if (st) goto done;
  if (!wb.nw) { st = lm_error(LM_ERR_ARG, "the training text has no words"); goto done; }
  if (!(order = malloc(wb.nw * sizeof *order))) { st = lm_error(LM_ERR_NOMEM, "out of memory"); goto done; }
  for (size_t i = 0; i < wb.nw; i++) order[i] = (span){wb.b + wb.off[i], wb.len[i]};
  qsort(order, wb.nw, sizeof *order, cmp_span);
  /* distinct words as code points */
  W->cp = malloc(wb.n * sizeof *W->cp);
  W->off = malloc(wb.nw * sizeof *W->off);
  W->len = malloc(wb.nw * sizeof *W->len);
  W->count = malloc(wb.nw * sizeof *W->count);
  if (!W->cp || !W->off || !W->len || !W->count) { st = lm_error(LM_ERR_NOMEM, "out of memory"); goto done; }
  size_t at = 0;
  for (size_t i = 0; i < wb.nw; i++) {
    if (i && !cmp_span(&order[i - 1], &order[i])) { W->count[W->n - 1]++; continue; }
    const uint8_t *s = (const uint8_t *)order[i].p;
    uint32_t n = 0;
    W->off[W->n] = at;
    for (size_t k = 0; k < order[i].n; n++) k += lm_utf8_dec(s + k, order[i].n - k, &W->cp[at + n]);
    W->len[W->n] = n; W->count[W->n] = 1; W->n++;
    at += n;
  }
done:
  free(order); free(wb.b); free(wb.off); free(wb.len);
  for (int i = 0; i < 2; i++) free(nb[i].p);
  for (int i = 0; i < LM_TOK_MAX_STAGES; i++) free(pb[i].p);
  lm_tok_norm_free(nm); lm_tok_pretok_free(pt);
  if (md) pcre2_match_data_free(md);
  cJSON_Delete(nj); cJSON_Delete(pj);
  return st;
}

static void words_free(words *W) { free(W->cp); free(W->off); free(W->len); free(W->count); }

/* ------------------------------------------------------------ characters */
typedef struct { uint32_t c; int64_t n; } charcount;
static int cmp_char(const void *x, const void *y) {   /* more frequent first, then smaller code point */
  const charcount *a = x, *b = y;
  return a->n != b->n ? (a->n < b->n) - (a->n > b->n) : (a->c > b->c) - (a->c < b->c);
}

/* The required characters (most frequent first, covering COVERAGE of all); the others become UNK_CP
 * in the words. */
static lm_status required_chars(words *W, charcount **req, int64_t *n_req) {
  cpmap m = {0};
  lm_status st = LM_OK;
  int64_t total = 0;
  for (int64_t w = 0; w < W->n && !st; w++)
    for (uint32_t k = 0; k < W->len[w] && !st; k++) {
      if ((st = cpmap_reserve(&m, 1))) break;
      cpent *e = cpmap_slot(&m, W->cp + W->off[w] + k, 1);
      if (!e->n) { e->s = W->cp + W->off[w] + k; e->n = 1; m.n++; }
      e->val += W->count[w];
      total += W->count[w];
    }
  charcount *c = st ? NULL : malloc((m.n + 1) * sizeof *c);
  if (!st && !c) st = lm_error(LM_ERR_NOMEM, "out of memory");
  if (st) { cpmap_free(&m); return st; }
  int64_t n = 0;
  for (uint64_t i = 0; i < m.cap; i++)
    if (m.e[i].n) c[n++] = (charcount){m.e[i].s[0], m.e[i].val};
  cpmap_free(&m);
  qsort(c, (size_t)n, sizeof *c, cmp_char);
  int64_t acc = 0, k = 0;
  while (k < n && (double)acc / (double)total < COVERAGE) acc += c[k++].n;
  /* characters past the coverage are unknown */
  for (int64_t w = 0; w < W->n; w++)
    for (uint32_t j = 0; j < W->len[w]; j++) {
      uint32_t *x = &W->cp[W->off[w] + j];
      int64_t lo = 0;
      while (lo < k && c[lo].c != *x) lo++;   /* k is small (the alphabet) */
      if (lo == k) *x = UNK_CP;
    }
  *req = c; *n_req = k;
  return LM_OK;
}

/* ------------------------------------------------------------ seeds */
typedef struct { const uint32_t *s; uint32_t n; int64_t count; double key; } seed;
static int cmp_seed(const void *x, const void *y) {   /* higher frequency x length first, then by characters */
  const seed *a = x, *b = y;
  if (a->key != b->key) return a->key < b->key ? 1 : -1;
  uint32_t m = a->n < b->n ? a->n : b->n;
  for (uint32_t i = 0; i < m; i++) if (a->s[i] != b->s[i]) return a->s[i] < b->s[i] ? -1 : 1;
  return (a->n > b->n) - (a->n < b->n);
}

static lm_status make_seeds(const words *W, const charcount *req, int64_t n_req, model *p) {
  cpmap m = {0};
  lm_status st = LM_OK;
  for (int64_t w = 0; w < W->n && !st; w++) {
    const uint32_t *c = W->cp + W->off[w];
    uint32_t n = W->len[w];
    for (uint32_t b = 0; b < n && !st; b++) {
      int prev = -1;
      for (uint32_t k = 1; k <= MAX_PIECE && b + k <= n; k++) {
        uint32_t ch = c[b + k - 1];
        if (ch == UNK_CP || (ch == WS_CP && k > 1)) break;
        if (ch != WS_CP) {
          int sc = script_of(ch);
          if (sc == SC_INHERITED) sc = prev;
          if (sc >= 0 && prev >= 0 && sc != prev) break;
          prev = sc;
        }
        if (k < 2) continue;
        if ((st = cpmap_reserve(&m, 1))) break;
        cpent *e = cpmap_slot(&m, c + b, k);
        uint32_t next = b + k < n ? c[b + k] : END_CP;
        if (!e->n) { e->s = c + b; e->n = k; e->next = next; m.n++; }
        else if (e->next != next) e->branch = 1;
        if (next == END_CP) e->branch = 1;
        e->val += W->count[w];
      }
    }
  }
  seed *sd = st ? NULL : malloc((m.n + 1) * sizeof *sd);
  if (!st && !sd) st = lm_error(LM_ERR_NOMEM, "out of memory");
  int64_t ns = 0;
  for (uint64_t i = 0; !st && i < m.cap; i++)
    if (m.e[i].n && m.e[i].val >= 2 && m.e[i].branch)
      sd[ns++] = (seed){m.e[i].s, m.e[i].n, m.e[i].val, (double)m.e[i].val * m.e[i].n};
  if (!st) qsort(sd, (size_t)ns, sizeof *sd, cmp_seed);
  /* the characters, then the substrings; scores: log of the share of the counts */
  double sum = 0;
  int64_t take = 0;
  if (!st) {
    for (int64_t i = 0; i < n_req; i++) sum += (double)req[i].n;
    while (take < ns && n_req + take < SEED_SIZE) sum += (double)sd[take++].count;
  }
  for (int64_t i = 0; i < n_req && !st; i++) st = model_add(p, &req[i].c, 1, log((double)req[i].n) - log(sum));
  for (int64_t i = 0; i < take && !st; i++) st = model_add(p, sd[i].s, sd[i].n, log((double)sd[i].count) - log(sum));
  free(sd);
  cpmap_free(&m);
  return st;
}

/* ------------------------------------------------------------ EM */
static double digamma(double x) {   /* SentencePiece's */
  double r = 0;
  for (; x < 7; ++x) r -= 1 / x;
  x -= 0.5;
  double xx = 1 / x, xx2 = xx * xx, xx4 = xx2 * xx2;
  return r + log(x) + xx2 / 24 - 7.0 / 960 * xx4 + 31.0 / 8064 * xx4 * xx2 - 127.0 / 30720 * xx4 * xx4;
}

/* Per-thread sums over the words, added in thread order. mode 0: expected counts (E step);
 * 1: counts of the pieces on each word's Viterbi path. */
static lm_status word_pass(const model *p, const words *W, int threads, int mode, double *out) {
  int nt = threads > 0 ? threads : omp_get_max_threads();
  double *part = calloc((size_t)nt * (size_t)p->n, sizeof *part);
  if (!part) return lm_error(LM_ERR_NOMEM, "out of memory");
  int fail = 0;
#pragma omp parallel num_threads(nt) reduction(| : fail)
  {
    int t = omp_get_thread_num();
    double *mine = part + (size_t)t * (size_t)p->n;
    lattice l = {0};
    int32_t *path = malloc((MAX_PIECE + 1) * 64 * sizeof *path);
    size_t pcap = (MAX_PIECE + 1) * 64;
#pragma omp for schedule(static)
    for (int64_t w = 0; w < W->n; w++) {
      if (fail || !path) { fail = 1; continue; }
      const uint32_t *c = W->cp + W->off[w];
      uint32_t n = W->len[w];
      if (lat_build(&l, p, c, n)) { fail = 1; continue; }
      if (mode == 0) { lat_marginals(&l, n, (double)W->count[w], mine); continue; }
      if (n + 1 > pcap) {
        int32_t *q = realloc(path, (n + 1) * sizeof *q);
        if (!q) { fail = 1; continue; }
        path = q; pcap = n + 1;
      }
      int m = lat_viterbi(&l, n, -1, path);
      for (int k = 0; k < m; k++)
        if (l.nd[path[k]].id >= 0) mine[l.nd[path[k]].id] += (double)W->count[w];
    }
    free(path);
    lat_free(&l);
  }
  if (!fail) {
    memset(out, 0, (size_t)p->n * sizeof *out);
    for (int t = 0; t < nt; t++)
      for (int64_t i = 0; i < p->n; i++) out[i] += part[(size_t)t * (size_t)p->n + i];
  }
  free(part);
  return fail ? lm_error(LM_ERR_NOMEM, "out of memory") : LM_OK;
}

/* Replaces p's pieces by those with keep[i] != 0, scores new[i], in the order of idx (n_idx). */
static lm_status model_select(model *p, const int64_t *idx, int64_t n_idx, const double *score) {
  model q = {0};
  lm_status st = LM_OK;
  for (int64_t k = 0; k < n_idx && !st; k++) {
    int64_t i = idx[k];
    st = model_add(&q, p->pool + p->off[i], p->len[i], score[i]);
  }
  if (!st) st = model_index(&q);
  if (st) { model_free(&q); return st; }
  model_free(p);
  *p = q;
  return LM_OK;
}

static lm_status em_step(model *p, const words *W, int threads, double *ex, int64_t *idx) {
  lm_status st = word_pass(p, W, threads, 0, ex);
  if (st) return st;
  int64_t k = 0;
  double sum = 0;
  for (int64_t i = 0; i < p->n; i++)
    if (ex[i] >= 0.5) { idx[k++] = i; sum += ex[i]; }
  double ls = digamma(sum);
  for (int64_t j = 0; j < k; j++) ex[idx[j]] = digamma(ex[idx[j]]) - ls;
  return model_select(p, idx, k, ex);
}

typedef struct { int64_t i; double loss; } cand;
static int cmp_cand(const void *x, const void *y) {
  const cand *a = x, *b = y;
  if (a->loss != b->loss) return a->loss < b->loss ? 1 : -1;
  return (a->i > b->i) - (a->i < b->i);
}

static lm_status prune(model *p, const words *W, int threads, int64_t desired) {
  int64_t n = p->n;
  uint8_t *keep_always = malloc((size_t)n);
  int64_t *alt_off = malloc(((size_t)n + 1) * sizeof *alt_off), *alt = NULL, n_alt = 0, cap_alt = 0, *idx = NULL;
  double *freq = malloc((size_t)n * sizeof *freq);
  cand *cd = malloc((size_t)n * sizeof *cd);
  lattice l = {0};
  int32_t path[MAX_PIECE + 1];
  lm_status st = LM_OK;
  if (!keep_always || !alt_off || !freq || !cd || !(idx = malloc((size_t)n * sizeof *idx))) { st = lm_error(LM_ERR_NOMEM, "out of memory"); goto done; }
  /* each piece's own best segmentation, and its second best when the best is the piece itself */
  for (int64_t i = 0; i < n; i++) {
    alt_off[i] = n_alt;
    keep_always[i] = 1;
    uint32_t len = p->len[i];
    if (lat_build(&l, p, p->pool + p->off[i], len)) { st = lm_error(LM_ERR_NOMEM, "out of memory"); goto done; }
    int m = lat_viterbi(&l, len, -1, path);
    if (m >= 2) { keep_always[i] = 0; continue; }
    long self = m == 1 ? path[0] : -1;
    int m2 = lat_viterbi(&l, len, self, path);
    if (!m2) continue;   /* no other segmentation: kept */
    if (n_alt + m2 > cap_alt) {
      int64_t nc = cap_alt ? 2 * cap_alt : 4096;
      while (nc < n_alt + m2) nc *= 2;
      int64_t *q = realloc(alt, (size_t)nc * sizeof *q);
      if (!q) { st = lm_error(LM_ERR_NOMEM, "out of memory"); goto done; }
      alt = q; cap_alt = nc;
    }
    for (int k = 0; k < m2; k++) alt[n_alt++] = l.nd[path[k]].id;
  }
  alt_off[n] = n_alt;
  /* the words' Viterbi paths */
  if ((st = word_pass(p, W, threads, 1, freq))) goto done;
  double vsum = 0, sum = 0;
  for (int64_t w = 0; w < W->n; w++) vsum += (double)W->count[w];
  for (int64_t i = 0; i < n; i++) sum += freq[i];
  double logsum = log(sum);
  int64_t k = 0, nc = 0;
  for (int64_t i = 0; i < n; i++) {
    if (freq[i] == 0 || !keep_always[i]) continue;
    if (alt_off[i] == alt_off[i + 1]) { idx[k++] = i; continue; }
    double F = freq[i] / vsum, lp = log(freq[i]) - logsum;
    /* SentencePiece 0.1.97 multiplies by the number of pieces here (alternatives.size()), not by
     * the length of this piece's alternative; kept, to train what it trains */
    double ls_alt = log(sum + freq[i] * (double)(n - 1)), lp_alt = 0;
    for (int64_t j = alt_off[i]; j < alt_off[i + 1]; j++) lp_alt += alt[j] >= 0 ? log(freq[alt[j]] + freq[i]) - ls_alt : 0;
    cd[nc++] = (cand){i, F * (lp - lp_alt)};
  }
  qsort(cd, (size_t)nc, sizeof *cd, cmp_cand);
  int64_t size = (int64_t)(SHRINK * (double)n);
  if (size < desired) size = desired;
  for (int64_t j = 0; j < nc && k < size; j++) idx[k++] = cd[j].i;
  st = model_select(p, idx, k, p->score);
done:
  free(keep_always); free(alt_off); free(alt); free(freq); free(cd); free(idx);
  lat_free(&l);
  return st;
}

/* ------------------------------------------------------------ the vocabulary */
typedef struct { char *s; double score; } final_piece;
static int cmp_final(const void *x, const void *y) {   /* higher score first, then by bytes */
  const final_piece *a = x, *b = y;
  if (a->score != b->score) return a->score < b->score ? 1 : -1;
  return strcmp(a->s, b->s);
}

static char *utf8_of(const uint32_t *s, uint32_t n) {
  char *o = malloc(4 * (size_t)n + 1);
  size_t k = 0;
  if (!o) return NULL;
  for (uint32_t i = 0; i < n; i++) k += lm_utf8_enc(s[i], (uint8_t *)o + k);
  o[k] = 0;
  return o;
}


static cJSON *vocab_pair(const char *s, double score) {
  cJSON *x = cJSON_CreateArray();
  cJSON_AddItemToArray(x, cJSON_CreateString(s));
  cJSON_AddItemToArray(x, cJSON_CreateNumber(score));
  return x;
}

/* tokenizer.json: <unk>, byte pieces, pieces; the special tokens after them */
static lm_status write_json(const final_piece *fp, int64_t n_fp, const lm_unigram_train_opts *o, char **text) {
  cJSON *root = cJSON_CreateObject(), *add = cJSON_CreateArray(), *vocab = cJSON_CreateArray(), *model = cJSON_CreateObject();
  cJSON *nj = cJSON_Parse(NORMALIZER), *pj = cJSON_Parse(METASPACE), *dj = cJSON_Parse(METASPACE);
  int64_t id = 0;
  cJSON_AddStringToObject(root, "version", "1.0");
  cJSON_AddNullToObject(root, "truncation");
  cJSON_AddNullToObject(root, "padding");
  cJSON_AddItemToObject(root, "added_tokens", add);
  cJSON_AddItemToArray(add, lm_tok_added_json(id, "<unk>"));
  cJSON_AddItemToArray(vocab, vocab_pair("<unk>", 0)); id++;
  for (int b = 0; o->byte_fallback && b < 256; b++, id++) {
    char hex[8];
    snprintf(hex, sizeof hex, "<0x%02X>", b);
    cJSON_AddItemToArray(vocab, vocab_pair(hex, 0));
  }
  for (int64_t i = 0; i < n_fp; i++, id++) cJSON_AddItemToArray(vocab, vocab_pair(fp[i].s, fp[i].score));
  for (int k = 0; k < o->n_special; k++) cJSON_AddItemToArray(add, lm_tok_added_json(id++, o->special[k]));
  cJSON_AddItemToObject(root, "normalizer", nj);
  cJSON_AddItemToObject(root, "pre_tokenizer", pj);
  cJSON_AddNullToObject(root, "post_processor");
  if (o->byte_fallback) {   /* <0xNN> pieces back to bytes, then ▁ to spaces */
    cJSON *seq = cJSON_CreateObject(), *list = cJSON_CreateArray(), *bf = cJSON_CreateObject();
    cJSON_AddStringToObject(bf, "type", "ByteFallback");
    cJSON_AddItemToArray(list, bf);
    cJSON_AddItemToArray(list, dj);
    cJSON_AddStringToObject(seq, "type", "Sequence");
    cJSON_AddItemToObject(seq, "decoders", list);
    cJSON_AddItemToObject(root, "decoder", seq);
  } else cJSON_AddItemToObject(root, "decoder", dj);
  cJSON_AddStringToObject(model, "type", "Unigram");
  cJSON_AddNumberToObject(model, "unk_id", 0);
  cJSON_AddItemToObject(model, "vocab", vocab);
  cJSON_AddBoolToObject(model, "byte_fallback", o->byte_fallback);
  cJSON_AddItemToObject(root, "model", model);
  *text = cJSON_PrintUnformatted(root);
  cJSON_Delete(root);
  return *text ? LM_OK : lm_error(LM_ERR_NOMEM, "out of memory");
}

lm_status lm_unigram_train(lm_tokenizer **out, const char *const *files, int n_files, const lm_unigram_train_opts *o) {
  *out = NULL;
  if (n_files <= 0) return lm_error(LM_ERR_ARG, "tokenizer training needs at least one file");
  int64_t n_meta = 1 + (o->byte_fallback ? 256 : 0) + o->n_special, target = o->vocab_size - n_meta;
  if (target < 1 || o->vocab_size >= LM_TOK_MAX_VOCAB)
    return lm_error(LM_ERR_ARG, "vocabulary size %lld must be above <unk>%s and %d special tokens (%lld) and below 2^31",
                    (long long)o->vocab_size, o->byte_fallback ? ", the 256 byte pieces" : "", o->n_special, (long long)n_meta);
  for (int k = 0; k < o->n_special; k++)
    for (int j = 0; j < k; j++)
      if (!strcmp(o->special[j], o->special[k])) return lm_error(LM_ERR_ARG, "special token \"%s\" is given twice", o->special[k]);
  words W = {0};
  model p = {0};
  charcount *req = NULL;
  int64_t n_req = 0, *idx = NULL;
  double *ex = NULL;
  final_piece *fp = NULL;
  int64_t n_fp = 0;
  char *json = NULL;
  lm_progress bar;
  int bar_on = 0;
  lm_status st = read_words(files, n_files, &W);
  if (!st) st = required_chars(&W, &req, &n_req);
  if (!st && n_req > target)
    st = lm_error(LM_ERR_ARG, "vocabulary size %lld leaves %lld pieces, fewer than the %lld characters that cover %.2f%% "
                  "of the text", (long long)o->vocab_size, (long long)target, (long long)n_req, 100 * COVERAGE);
  if (!st) st = make_seeds(&W, req, n_req, &p);
  if (!st) st = model_index(&p);
  int64_t desired = (int64_t)((double)o->vocab_size * 1.1), seeds = p.n;
  if (!st && (!(ex = malloc((size_t)p.n * sizeof *ex)) || !(idx = malloc((size_t)p.n * sizeof *idx))))
    st = lm_error(LM_ERR_NOMEM, "out of memory");
  if (!st && o->progress) { lm_progress_start(&bar, "EM and pruning (pieces dropped)", seeds - desired > 0 ? seeds - desired : 1); bar_on = 1; }
  while (!st) {
    for (int it = 0; it < SUB_ITERS && !st; it++) st = em_step(&p, &W, o->threads, ex, idx);
    if (st || p.n <= desired) break;
    st = prune(&p, &W, o->threads, desired);
    char extra[64];
    snprintf(extra, sizeof extra, "%lld pieces", (long long)p.n);
    if (bar_on) lm_progress_update(&bar, seeds - p.n < seeds - desired ? seeds - p.n : seeds - desired, extra);
  }
  if (bar_on) lm_progress_finish(&bar, NULL);
  /* the final pieces: required characters (kept scores, else just under the lowest), then the best */
  if (!st && !(fp = calloc((size_t)target, sizeof *fp))) st = lm_error(LM_ERR_NOMEM, "out of memory");
  if (!st) {
    double penalty = 0;
    for (int64_t i = 0; i < n_req && !st; i++) {
      const cpent *e = NULL;
      uint64_t h = cp_hash(&req[i].c, 1), j = h & (p.map.cap - 1);
      while (p.map.e[j].h) {
        if (p.map.e[j].h == h && p.map.e[j].n == 1 && p.map.e[j].s[0] == req[i].c) { e = &p.map.e[j]; break; }
        j = (j + 1) & (p.map.cap - 1);
      }
      double sc = e && e->val >= 0 ? p.score[e->val] : p.min_score + (penalty += 0.0001) - 0.0001;
      if (!(fp[n_fp].s = utf8_of(&req[i].c, 1))) st = lm_error(LM_ERR_NOMEM, "out of memory");
      fp[n_fp++].score = sc;
    }
    final_piece *rest = st ? NULL : malloc(((size_t)p.n + 1) * sizeof *rest);
    if (!st && !rest) st = lm_error(LM_ERR_NOMEM, "out of memory");
    int64_t nr = 0;
    for (int64_t i = 0; i < p.n && !st; i++) {
      if (p.len[i] == 1) continue;   /* single characters: required ones are in, the others not wanted */
      if (!(rest[nr].s = utf8_of(p.pool + p.off[i], p.len[i]))) { st = lm_error(LM_ERR_NOMEM, "out of memory"); break; }
      rest[nr++].score = p.score[i];
    }
    if (!st) qsort(rest, (size_t)nr, sizeof *rest, cmp_final);
    for (int64_t i = 0; i < nr; i++) {
      if (!st && n_fp < target) fp[n_fp++] = rest[i];
      else free(rest[i].s);
    }
    free(rest);
  }
  if (!st) {
    qsort(fp, (size_t)n_fp, sizeof *fp, cmp_final);
    st = write_json(fp, n_fp, o, &json);
  }
  if (!st) st = lm_tokenizer_from_json(out, json, strlen(json), "the trained Unigram tokenizer");
  for (int64_t i = 0; i < n_fp; i++) free(fp[i].s);
  free(fp); free(json); free(ex); free(idx); free(req);
  model_free(&p); words_free(&W);
  return st;
}
