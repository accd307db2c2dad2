/* index.c — the retrieval index: documents cut into passages, the BM25 term
 * table with its postings, and the file that holds them (docs/rag.md).
 *
 * Chunking works on words (runs of non-space bytes): paragraphs (separated by
 * a blank line) are packed whole into a passage while it stays within
 * chunk_words; a paragraph longer than that is cut at words; the next passage
 * starts overlap_words back (at a paragraph start when one falls in the
 * overlap), unless a passage from there would end where this one does (the
 * next paragraph does not fit with the overlap): then right after it. BM25 works on terms (lm_rag_terms: lowercased runs of letters and
 * digits). Each term keeps its postings (passage, term frequency) in passage
 * order, appended as passages are added, so no sort is needed until saving,
 * where terms are written in byte order (a deterministic file). A loaded file
 * is checked whole: counts against the bytes left, offsets, term order and
 * bytes, posting order, and every passage's length against its postings. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "base/base.h"
#include "rag/index_impl.h"
#include "tokenizer/tokenizer.h"

static const char MAGIC[8] = {'L', 'M', 'R', 'A', 'G', 'I', 'D', 'X'};

void lm_rag_chunk_opts_default(lm_rag_chunk_opts *o) {
  o->chunk_words = 200;
  o->overlap_words = 40;
}

static const char *const MODE_NAMES[] = {"bm25", "dense", "hybrid", "auto"};

lm_status lm_rag_mode_parse(const char *name, lm_rag_mode *mode) {
  for (int i = 0; i < 4; i++)
    if (!strcmp(name, MODE_NAMES[i])) { *mode = (lm_rag_mode)i; return LM_OK; }
  return lm_error(LM_ERR_ARG, "unknown retrieval mode '%s' (bm25, dense, hybrid, auto)", name);
}

const char *lm_rag_mode_name(lm_rag_mode mode) { return (unsigned)mode < 4 ? MODE_NAMES[mode] : "?"; }

/* ---- terms */

static int is_term_byte(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c >= 0x80;
}

lm_status lm_rag_terms(const char *text, size_t len, int (*fn)(const char *term, size_t len, void *user), void *user) {
  char buf[256];
  for (size_t i = 0; i < len;) {
    if (!is_term_byte((unsigned char)text[i])) { i++; continue; }
    size_t j = i;
    while (j < len && is_term_byte((unsigned char)text[j])) j++;
    /* lowercased into buf when it fits, else term by term into a heap copy */
    size_t n = j - i;
    char *t = n <= sizeof buf ? buf : lm_xmalloc(n);
    if (!t) return LM_ERR_NOMEM;
    for (size_t k = 0; k < n; k++) {
      unsigned char c = (unsigned char)text[i + k];
      t[k] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
    }
    int stop = fn(t, n, user);
    if (t != buf) free(t);
    if (stop) return LM_OK;
    i = j;
  }
  return LM_OK;
}

static uint64_t term_hash(const char *s, size_t n) { return lm_tok_hash((const uint8_t *)s, n); }

int64_t lm_rag_term_find(const lm_rag_index *ix, const char *s, size_t len) {
  if (!ix->n_slots) return -1;
  uint64_t mask = (uint64_t)ix->n_slots - 1;
  for (uint64_t i = term_hash(s, len) & mask;; i = (i + 1) & mask) {
    int64_t t = ix->slots[i];
    if (t < 0) return -1;
    if (ix->terms[t].len == len && !memcmp(ix->terms[t].s, s, len)) return t;
  }
}

static void slots_put(int64_t *slots, int64_t n_slots, const lm_rag_index *ix, int64_t t) {
  uint64_t mask = (uint64_t)n_slots - 1, i = term_hash(ix->terms[t].s, ix->terms[t].len) & mask;
  while (slots[i] >= 0) i = (i + 1) & mask;
  slots[i] = t;
}

/* keeps the table at most half full */
static lm_status slots_grow(lm_rag_index *ix, int64_t need) {
  if (need * 2 <= ix->n_slots) return LM_OK;
  int64_t n = (int64_t)lm_tok_pow2_at_least((uint64_t)need * 2);
  int64_t *s = lm_xmalloc((size_t)n * sizeof *s);
  if (!s) return LM_ERR_NOMEM;
  memset(s, 0xff, (size_t)n * sizeof *s);
  for (int64_t t = 0; t < ix->n_terms; t++) slots_put(s, n, ix, t);
  free(ix->slots);
  ix->slots = s;
  ix->n_slots = n;
  return LM_OK;
}

/* grows *p (of *cap items of size sz) to hold n */
static lm_status grow(void *p, int64_t *cap, int64_t n, size_t sz) {
  if (n <= *cap) return LM_OK;
  int64_t c = *cap ? *cap : 8;
  while (c < n) c *= 2;
  void *q = lm_xrealloc(*(void **)p, (size_t)c * sz);
  if (!q) return LM_ERR_NOMEM;
  *(void **)p = q;
  *cap = c;
  return LM_OK;
}

/* a new term with no postings; its index in *t */
static lm_status term_add(lm_rag_index *ix, const char *s, size_t len, int64_t *t) {
  if (len > UINT32_MAX) return lm_error(LM_ERR_RANGE, "a term of %zu bytes is longer than the index allows", len);
  if (slots_grow(ix, ix->n_terms + 1) || grow(&ix->terms, &ix->cap_terms, ix->n_terms + 1, sizeof *ix->terms))
    return LM_ERR_NOMEM;
  lm_rag_term *tm = &ix->terms[ix->n_terms];
  memset(tm, 0, sizeof *tm);
  if (!(tm->s = lm_xmalloc(len + 1))) return LM_ERR_NOMEM;
  memcpy(tm->s, s, len);
  tm->s[len] = 0;
  tm->len = (uint32_t)len;
  *t = ix->n_terms++;
  slots_put(ix->slots, ix->n_slots, ix, *t);
  return LM_OK;
}

static lm_status posting_add(lm_rag_term *tm, int64_t chunk, uint32_t tf) {
  if (tm->n == tm->cap) {
    int64_t c = tm->cap ? 2 * tm->cap : 4;
    int64_t *ch = lm_xrealloc(tm->chunk, (size_t)c * sizeof *ch);
    if (!ch) return LM_ERR_NOMEM;
    tm->chunk = ch;
    uint32_t *tf2 = lm_xrealloc(tm->tf, (size_t)c * sizeof *tf2);
    if (!tf2) return LM_ERR_NOMEM;
    tm->tf = tf2;
    tm->cap = c;
  }
  tm->chunk[tm->n] = chunk;
  tm->tf[tm->n++] = tf;
  return LM_OK;
}

/* ---- BM25 scores (formula in rag.h): each query term adds to the passages in its postings */

typedef struct { const lm_rag_index *ix; double *scores, avgdl; } bm25_ctx;

static int bm25_term(const char *s, size_t len, void *user) {
  bm25_ctx *b = user;
  int64_t t = lm_rag_term_find(b->ix, s, len);
  if (t < 0) return 0;
  const lm_rag_term *tm = &b->ix->terms[t];
  double N = (double)b->ix->n_chunks, df = (double)tm->n;
  double idf = log(1.0 + (N - df + 0.5) / (df + 0.5));
  for (int64_t p = 0; p < tm->n; p++) {
    double tf = tm->tf[p], dl = (double)b->ix->chunks[tm->chunk[p]].n_terms;
    b->scores[tm->chunk[p]] += idf * tf * (LM_RAG_K1 + 1) / (tf + LM_RAG_K1 * (1 - LM_RAG_B + LM_RAG_B * dl / b->avgdl));
  }
  return 0;
}

lm_status lm_rag_bm25(const lm_rag_index *ix, const char *query, double *scores) {
  for (int64_t i = 0; i < ix->n_chunks; i++) scores[i] = 0;
  if (!ix->n_chunks || !ix->total_terms) return LM_OK;   /* no term in any passage: nothing matches */
  bm25_ctx b = {ix, scores, (double)ix->total_terms / (double)ix->n_chunks};
  return lm_rag_terms(query, strlen(query), bm25_term, &b);
}

/* ---- building */

lm_status lm_rag_index_new(lm_rag_index **out, const lm_rag_chunk_opts *o) {
  *out = NULL;
  lm_rag_chunk_opts d;
  lm_rag_chunk_opts_default(&d);
  if (!o) o = &d;
  if (o->chunk_words < 1) return lm_error(LM_ERR_ARG, "chunk size %lld: must be at least 1 word", (long long)o->chunk_words);
  if (o->overlap_words < 0 || o->overlap_words >= o->chunk_words)
    return lm_error(LM_ERR_ARG, "overlap %lld: must be at least 0 and smaller than the chunk size (%lld words)",
                    (long long)o->overlap_words, (long long)o->chunk_words);
  lm_rag_index *ix = calloc(1, sizeof *ix);
  if (!ix) return lm_error(LM_ERR_NOMEM, "out of memory");
  ix->opts = *o;
  *out = ix;
  return LM_OK;
}

void lm_rag_index_free(lm_rag_index *ix) {
  if (!ix) return;
  for (int64_t i = 0; i < ix->n_files; i++) free(ix->files[i]);
  for (int64_t i = 0; i < ix->n_chunks; i++) free(ix->chunks[i].text);
  for (int64_t i = 0; i < ix->n_terms; i++) { free(ix->terms[i].s); free(ix->terms[i].chunk); free(ix->terms[i].tf); }
  free(ix->files); free(ix->chunks); free(ix->terms); free(ix->slots); free(ix->vecs); free(ix->embed_model);
  free(ix);
}

typedef struct { lm_rag_index *ix; int64_t chunk, n; lm_status st; } add_ctx;

static int add_term(const char *s, size_t len, void *user) {
  add_ctx *a = user;
  int64_t t = lm_rag_term_find(a->ix, s, len);
  if (t < 0 && (a->st = term_add(a->ix, s, len, &t))) return 1;
  lm_rag_term *tm = &a->ix->terms[t];
  a->n++;
  if (tm->n && tm->chunk[tm->n - 1] == a->chunk) {
    if (tm->tf[tm->n - 1] == UINT32_MAX) { a->st = lm_error(LM_ERR_RANGE, "a term repeats more than 2^32 times in one passage"); return 1; }
    tm->tf[tm->n - 1]++;
    return 0;
  }
  return (a->st = posting_add(tm, a->chunk, 1)) != LM_OK;
}

static lm_status chunk_add(lm_rag_index *ix, int64_t file, const char *doc, int64_t bs, int64_t be, int64_t ls,
                           int64_t le) {
  if (grow(&ix->chunks, &ix->cap_chunks, ix->n_chunks + 1, sizeof *ix->chunks)) return LM_ERR_NOMEM;
  lm_rag_chunk_rec *c = &ix->chunks[ix->n_chunks];
  memset(c, 0, sizeof *c);
  if (!(c->text = lm_xmalloc((size_t)(be - bs) + 1))) return LM_ERR_NOMEM;
  memcpy(c->text, doc + bs, (size_t)(be - bs));
  c->text[be - bs] = 0;
  c->file = file; c->byte_start = bs; c->byte_end = be; c->line_start = ls; c->line_end = le;
  add_ctx a = {ix, ix->n_chunks++, 0, LM_OK};
  lm_status st = lm_rag_terms(c->text, (size_t)(be - bs), add_term, &a);
  c->n_terms = a.n;
  ix->total_terms += a.n;
  return st ? st : a.st;
}

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

typedef struct { int64_t start, end, line; int para; } word;

/* where the passage starting at word s ends (one past its last word): whole paragraphs while they
 * fit in C words; the rest of a paragraph longer than that is cut at C words */
static int64_t passage_end(const word *w, int64_t nw, int64_t s, int64_t C) {
  int64_t e = s + 1;
  while (e < nw && !w[e].para) e++;
  if (e - s > C) return s + C;
  while (e < nw) {
    int64_t q = e + 1;
    while (q < nw && !w[q].para) q++;
    if (q - s > C) break;
    e = q;
  }
  return e;
}

lm_status lm_rag_index_add(lm_rag_index *ix, const char *name, const char *text, size_t len) {
  if (ix->dim) return lm_error(LM_ERR_ARG, "%s: documents are added before the passages are embedded", name);
  const char *nul = memchr(text, 0, len);
  if (nul) return lm_error(LM_ERR_FORMAT, "%s: a NUL byte at offset %lld: not a text document", name, (long long)(nul - text));
  if (grow(&ix->files, &ix->cap_files, ix->n_files + 1, sizeof *ix->files)) return LM_ERR_NOMEM;
  if (!(ix->files[ix->n_files] = lm_strdup(name))) return LM_ERR_NOMEM;
  int64_t file = ix->n_files++;
  /* words with their line and whether a paragraph starts there (first word, or a blank line before) */
  word *w = NULL;
  int64_t nw = 0, cap = 0, line = 1, newlines = 2;
  for (size_t i = 0; i < len;) {
    if (is_space(text[i])) {
      if (text[i] == '\n') { line++; newlines++; }
      i++;
      continue;
    }
    if (grow(&w, &cap, nw + 1, sizeof *w)) { free(w); return LM_ERR_NOMEM; }
    size_t j = i;
    while (j < len && !is_space(text[j])) j++;
    w[nw++] = (word){(int64_t)i, (int64_t)j, line, newlines >= 2};
    newlines = 0;
    i = j;
  }
  lm_status st = LM_OK;
  int64_t C = ix->opts.chunk_words, O = ix->opts.overlap_words;
  for (int64_t s = 0; s < nw && !st;) {
    int64_t e = passage_end(w, nw, s, C);
    st = chunk_add(ix, file, text, w[s].start, w[e - 1].end, w[s].line, w[e - 1].line);
    if (e >= nw) break;
    /* O words back, or the paragraph that starts inside them; but a passage from there must
     * reach past this one (else it would only repeat words): then the next starts at e */
    int64_t ns = e - O > s + 1 ? e - O : s + 1;
    for (int64_t p = ns; p < e; p++)
      if (w[p].para) { ns = p; break; }
    s = passage_end(w, nw, ns, C) > e ? ns : e;
  }
  free(w);
  return st;
}

lm_status lm_rag_index_add_file(lm_rag_index *ix, const char *path) {
  char *text;
  size_t len;
  lm_status st = lm_read_file(path, &text, &len);
  if (st) return st;
  st = lm_rag_index_add(ix, path, text, len);
  free(text);
  return st;
}

/* ---- accessors */

int64_t lm_rag_index_size(const lm_rag_index *ix) { return ix->n_chunks; }
int64_t lm_rag_index_files(const lm_rag_index *ix) { return ix->n_files; }
int64_t lm_rag_index_terms(const lm_rag_index *ix) { return ix->n_terms; }
int64_t lm_rag_index_dim(const lm_rag_index *ix) { return ix->dim; }
const char *lm_rag_index_embed_model(const lm_rag_index *ix) { return ix->embed_model; }
const float *lm_rag_index_vectors(const lm_rag_index *ix) { return ix->vecs; }

void lm_rag_index_chunk(const lm_rag_index *ix, int64_t i, lm_rag_chunk *c) {
  const lm_rag_chunk_rec *r = &ix->chunks[i];
  *c = (lm_rag_chunk){ix->files[r->file], r->text, (size_t)(r->byte_end - r->byte_start), r->byte_start, r->byte_end,
                      r->line_start, r->line_end, r->n_terms};
}

/* ---- saving: see docs/rag.md for the layout */

static void put_u32(FILE *f, uint32_t v) {
  unsigned char b[4];
  for (int i = 0; i < 4; i++) b[i] = (unsigned char)(v >> (8 * i));
  fwrite(b, 1, 4, f);
}
static void put_u64(FILE *f, uint64_t v) {
  unsigned char b[8];
  for (int i = 0; i < 8; i++) b[i] = (unsigned char)(v >> (8 * i));
  fwrite(b, 1, 8, f);
}
static void put_str(FILE *f, const char *s, size_t n) { put_u32(f, (uint32_t)n); fwrite(s, 1, n, f); }

static int term_cmp(const char *a, size_t na, const char *b, size_t nb) {
  int c = memcmp(a, b, na < nb ? na : nb);
  return c ? c : (na > nb) - (na < nb);
}
static int by_term(const void *x, const void *y, void *ixp) {
  const lm_rag_index *ix = ixp;
  const lm_rag_term *a = &ix->terms[*(const int64_t *)x], *b = &ix->terms[*(const int64_t *)y];
  return term_cmp(a->s, a->len, b->s, b->len);
}

lm_status lm_rag_index_save(const lm_rag_index *ix, const char *path) {
  for (int64_t i = 0; i < ix->n_files; i++)
    if (strlen(ix->files[i]) > UINT32_MAX) return lm_error(LM_ERR_RANGE, "a document name is too long");
  for (int64_t i = 0; i < ix->n_chunks; i++)
    if (ix->chunks[i].byte_end - ix->chunks[i].byte_start > (int64_t)UINT32_MAX)
      return lm_error(LM_ERR_RANGE, "%s: a passage of more than 4 GiB", ix->files[ix->chunks[i].file]);
  int64_t *order = lm_xmalloc((size_t)(ix->n_terms ? ix->n_terms : 1) * sizeof *order);
  if (!order) return LM_ERR_NOMEM;
  for (int64_t t = 0; t < ix->n_terms; t++) order[t] = t;
  qsort_r(order, (size_t)ix->n_terms, sizeof *order, by_term, (void *)ix);
  lm_atomic_file af;
  lm_status st = lm_atomic_open(&af, path);
  if (st) { free(order); return st; }
  FILE *f = af.f;
  fwrite(MAGIC, 1, 8, f);
  put_u32(f, LM_RAG_VERSION);
  put_u32(f, 0);
  put_u64(f, (uint64_t)ix->opts.chunk_words);
  put_u64(f, (uint64_t)ix->opts.overlap_words);
  put_u64(f, (uint64_t)ix->n_files);
  for (int64_t i = 0; i < ix->n_files; i++) put_str(f, ix->files[i], strlen(ix->files[i]));
  put_u64(f, (uint64_t)ix->n_chunks);
  for (int64_t i = 0; i < ix->n_chunks; i++) {
    const lm_rag_chunk_rec *c = &ix->chunks[i];
    put_u64(f, (uint64_t)c->file);
    put_u64(f, (uint64_t)c->byte_start);
    put_u64(f, (uint64_t)c->byte_end);
    put_u64(f, (uint64_t)c->line_start);
    put_u64(f, (uint64_t)c->line_end);
    put_u64(f, (uint64_t)c->n_terms);
    put_str(f, c->text, (size_t)(c->byte_end - c->byte_start));
  }
  put_u64(f, (uint64_t)ix->n_terms);
  for (int64_t k = 0; k < ix->n_terms; k++) {
    const lm_rag_term *t = &ix->terms[order[k]];
    put_str(f, t->s, t->len);
    put_u64(f, (uint64_t)t->n);
    for (int64_t p = 0; p < t->n; p++) { put_u64(f, (uint64_t)t->chunk[p]); put_u32(f, t->tf[p]); }
  }
  put_u64(f, (uint64_t)ix->dim);
  if (ix->dim) {
    put_str(f, ix->embed_model, strlen(ix->embed_model));
    for (int64_t i = 0; i < ix->n_chunks * ix->dim; i++) {
      uint32_t u;
      memcpy(&u, &ix->vecs[i], 4);
      put_u32(f, u);
    }
  }
  free(order);
  if (ferror(f)) { lm_atomic_abort(&af); return lm_error(LM_ERR_IO, "%s: write failed", path); }
  return lm_atomic_commit(&af);
}

/* ---- loading */

typedef struct { const unsigned char *p; size_t len, pos; const char *name; lm_status st; } reader;

static lm_status bad(reader *r, const char *what) {
  if (!r->st)
    r->st = lm_error(LM_ERR_FORMAT, "%s: not a valid lmkit index: %s (at byte %zu)", r->name, what, r->pos);
  return r->st;
}
static uint64_t get_u(reader *r, int bytes, const char *what) {
  if (r->st) return 0;
  if (r->len - r->pos < (size_t)bytes) { bad(r, what); return 0; }
  uint64_t v = 0;
  for (int i = 0; i < bytes; i++) v |= (uint64_t)r->p[r->pos + i] << (8 * i);
  r->pos += (size_t)bytes;
  return v;
}
static uint64_t get_u64(reader *r, const char *what) { return get_u(r, 8, what); }
static uint32_t get_u32(reader *r, const char *what) { return (uint32_t)get_u(r, 4, what); }
/* a count of items each at least `min_bytes` long: never more than the bytes left could hold */
static int64_t get_count(reader *r, size_t min_bytes, const char *what) {
  uint64_t n = get_u64(r, what);
  if (!r->st && n > (r->len - r->pos) / min_bytes) { bad(r, what); return 0; }
  return (int64_t)n;
}
/* a length-prefixed string, copied with a NUL; NUL bytes inside are refused */
static char *get_str(reader *r, const char *what, uint32_t *len) {
  uint32_t n = get_u32(r, what);
  if (r->st) return NULL;
  if (r->len - r->pos < n) { bad(r, what); return NULL; }
  if (memchr(r->p + r->pos, 0, n)) { bad(r, what); return NULL; }
  char *s = lm_xmalloc((size_t)n + 1);
  if (!s) { r->st = LM_ERR_NOMEM; return NULL; }
  memcpy(s, r->p + r->pos, n);
  s[n] = 0;
  r->pos += n;
  if (len) *len = n;
  return s;
}

static lm_status parse(lm_rag_index *ix, reader *r) {
  if (r->len < 8 || memcmp(r->p, MAGIC, 8)) return bad(r, "no LMRAGIDX magic at the start");
  r->pos = 8;
  uint32_t version = get_u32(r, "version");
  if (!r->st && version != LM_RAG_VERSION)
    return lm_error(LM_ERR_UNSUPPORTED, "%s: index format version %u; this lmkit reads version %d (rebuild it with 'lmkit index')",
                    r->name, version, LM_RAG_VERSION);
  if (get_u32(r, "flags") != 0 && !r->st) return bad(r, "unknown flags");
  uint64_t cw = get_u64(r, "chunk size"), ow = get_u64(r, "overlap");
  if (r->st) return r->st;
  if (cw < 1 || cw > INT64_MAX || ow >= cw) return bad(r, "chunk size or overlap out of range");
  ix->opts.chunk_words = (int64_t)cw;
  ix->opts.overlap_words = (int64_t)ow;
  int64_t nf = get_count(r, 4, "document count");
  if (r->st) return r->st;
  if (nf && !(ix->files = lm_xmalloc((size_t)nf * sizeof *ix->files))) return r->st = LM_ERR_NOMEM;
  ix->cap_files = nf;
  for (; ix->n_files < nf; ix->n_files++)
    if (!(ix->files[ix->n_files] = get_str(r, "document name", NULL))) return r->st;
  int64_t nc = get_count(r, 52, "passage count");
  if (r->st) return r->st;
  if (nc && !(ix->chunks = lm_xmalloc((size_t)nc * sizeof *ix->chunks))) return r->st = LM_ERR_NOMEM;
  ix->cap_chunks = nc;
  while (ix->n_chunks < nc) {
    lm_rag_chunk_rec *c = &ix->chunks[ix->n_chunks];
    uint64_t v[6];
    for (int k = 0; k < 6; k++) v[k] = get_u64(r, "passage record");
    uint32_t tl = 0;
    c->text = get_str(r, "passage text", &tl);
    if (!c->text) return r->st;
    ix->n_chunks++;   /* counted as soon as it owns its text, so that a failure below frees it */
    if (v[0] >= (uint64_t)nf) return bad(r, "a passage names a document that is not in the file");
    if (v[1] > v[2] || v[2] > INT64_MAX || v[2] - v[1] != tl) return bad(r, "a passage's byte range does not match its text");
    if (v[3] < 1 || v[3] > v[4] || v[4] > INT64_MAX || v[5] > INT64_MAX) return bad(r, "a passage's line range is invalid");
    c->file = (int64_t)v[0]; c->byte_start = (int64_t)v[1]; c->byte_end = (int64_t)v[2];
    c->line_start = (int64_t)v[3]; c->line_end = (int64_t)v[4]; c->n_terms = (int64_t)v[5];
  }
  int64_t nt = get_count(r, 13, "term count");
  if (r->st) return r->st;
  if (nt && (!(ix->terms = calloc((size_t)nt, sizeof *ix->terms)))) return r->st = lm_error(LM_ERR_NOMEM, "out of memory");
  ix->cap_terms = nt;
  if (slots_grow(ix, nt)) return r->st = LM_ERR_NOMEM;
  int64_t *seen = calloc((size_t)(nc ? nc : 1), sizeof *seen);   /* each passage's tf sum */
  if (!seen) return r->st = lm_error(LM_ERR_NOMEM, "out of memory");
  while (ix->n_terms < nt && !r->st) {
    lm_rag_term *t = &ix->terms[ix->n_terms];
    if (!(t->s = get_str(r, "term", &t->len))) break;
    ix->n_terms++;    /* owned from here on (terms are calloc'ed: no postings yet) */
    int ok = t->len > 0;
    for (uint32_t k = 0; k < t->len && ok; k++) {
      unsigned char ch = (unsigned char)t->s[k];
      ok = is_term_byte(ch) && !(ch >= 'A' && ch <= 'Z');
    }
    if (!ok) { bad(r, "a term holds a byte that is not a lowercase letter or digit"); break; }
    if (ix->n_terms > 1 && term_cmp(t[-1].s, t[-1].len, t->s, t->len) >= 0) {
      bad(r, "terms are not in strictly increasing byte order");
      break;
    }
    int64_t np = get_count(r, 12, "posting count");
    if (r->st) break;
    if (np < 1 || np > nc) { bad(r, "a term's posting count is out of range"); break; }
    if (!(t->chunk = lm_xmalloc((size_t)np * sizeof *t->chunk)) || !(t->tf = lm_xmalloc((size_t)np * sizeof *t->tf))) {
      r->st = LM_ERR_NOMEM;
      break;
    }
    t->cap = np;
    for (; t->n < np; t->n++) {
      uint64_t c = get_u64(r, "posting");
      uint32_t tf = get_u32(r, "posting");
      if (r->st) break;
      if (c >= (uint64_t)nc || (t->n && (int64_t)c <= t->chunk[t->n - 1]) || tf < 1) {
        bad(r, "a posting names no passage, is out of order, or has a zero count");
        break;
      }
      if ((seen[c] += tf) > ix->chunks[c].n_terms) { bad(r, "a passage's postings exceed its length"); break; }
      t->chunk[t->n] = (int64_t)c;
      t->tf[t->n] = tf;
    }
    if (!r->st) slots_put(ix->slots, ix->n_slots, ix, ix->n_terms - 1);
  }
  for (int64_t c = 0; c < nc && !r->st; c++) {
    if (seen[c] != ix->chunks[c].n_terms) bad(r, "a passage's length differs from its postings");
    ix->total_terms += seen[c];   /* postings are 12 bytes per tf sum of at most 2^32: no overflow */
  }
  free(seen);
  if (r->st) return r->st;
  uint64_t dim = get_u64(r, "vector width");
  if (r->st) return r->st;
  if (dim) {
    if (dim > (1u << 20)) return bad(r, "vector width out of range");
    if (!(ix->embed_model = get_str(r, "embedding model name", NULL))) return r->st;
    if (nc && (r->len - r->pos) / 4 / dim < (uint64_t)nc) return bad(r, "the vectors are cut short");
    ix->dim = (int64_t)dim;
    size_t n = (size_t)nc * dim;
    if (!(ix->vecs = lm_xmalloc((n ? n : 1) * sizeof *ix->vecs))) return r->st = LM_ERR_NOMEM;
    for (size_t i = 0; i < n; i++) {
      uint32_t u = get_u32(r, "vector");
      memcpy(&ix->vecs[i], &u, 4);
      if (!isfinite(ix->vecs[i])) return bad(r, "a vector value is not finite");
    }
  }
  if (r->pos != r->len) return bad(r, "bytes after the end of the index");
  return r->st;
}

lm_status lm_rag_index_parse(lm_rag_index **out, const void *data, size_t len, const char *name) {
  *out = NULL;
  lm_rag_index *ix = calloc(1, sizeof *ix);
  if (!ix) return lm_error(LM_ERR_NOMEM, "out of memory");
  reader r = {data, len, 0, name, LM_OK};
  lm_status st = parse(ix, &r);
  if (st) { lm_rag_index_free(ix); return st; }
  *out = ix;
  return LM_OK;
}

lm_status lm_rag_index_load(lm_rag_index **out, const char *path) {
  *out = NULL;
  if (!lm_file_exists(path)) return lm_error(LM_ERR_IO, "%s: no such index (build one with 'lmkit index')", path);
  char *data;
  size_t len;
  lm_status st = lm_read_file(path, &data, &len);
  if (st) return st;
  st = lm_rag_index_parse(out, data, len, path);
  free(data);
  return st;
}
