/* search.c — ranking passages for a question and putting the best into a
 * prompt: BM25 (index.c), cosine over the normalised vectors, and
 * reciprocal-rank fusion of the two (Cormack et al. 2009: each ranking adds
 * 1 / (60 + rank), so a passage both rankings like wins without their scores
 * having to be comparable). Every ranking breaks ties by passage order, so
 * results are deterministic. The lm_rag handle bundles an index with the
 * embedding model its mode needs, behind a mutex, for `lmkit ask` and the
 * server. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/base.h"
#include "rag/index_impl.h"
#include "tokenizer/tokenizer.h"

/* ---- rankings */

typedef struct { int64_t chunk; double score; } scored;

static int by_score(const void *x, const void *y) {
  const scored *a = x, *b = y;
  if (a->score != b->score) return a->score < b->score ? 1 : -1;
  return (a->chunk > b->chunk) - (a->chunk < b->chunk);
}

/* the passages with keep set, best first; returns how many */
static int64_t rank(const double *score, const uint8_t *keep, int64_t n, scored *out) {
  int64_t m = 0;
  for (int64_t i = 0; i < n; i++)
    if (!keep || keep[i]) out[m++] = (scored){i, score[i]};
  qsort(out, (size_t)m, sizeof *out, by_score);
  return m;
}

lm_status lm_rag_search(const lm_rag_index *ix, const char *query, const float *qvec, lm_rag_mode mode, int64_t k,
                        lm_rag_hit *hits, int64_t *n_hits) {
  *n_hits = 0;
  if ((unsigned)mode > LM_RAG_HYBRID) return lm_error(LM_ERR_ARG, "lm_rag_search: mode %d is not bm25, dense or hybrid", (int)mode);
  if (k < 1) return lm_error(LM_ERR_ARG, "k = %lld: at least one passage must be asked for", (long long)k);
  int dense = mode != LM_RAG_BM25, sparse = mode != LM_RAG_DENSE;
  if (dense && !ix->dim)
    return lm_error(LM_ERR_ARG, "%s retrieval needs an index with vectors (build it with 'lmkit index --embed-model DIR')",
                    lm_rag_mode_name(mode));
  if (dense && !qvec) return lm_error(LM_ERR_ARG, "%s retrieval needs the question's embedding", lm_rag_mode_name(mode));
  int64_t N = ix->n_chunks;
  if (!N) return LM_OK;
  double *bm = lm_xmalloc((size_t)N * sizeof *bm), *cos = lm_xmalloc((size_t)N * sizeof *cos),
         *fused = lm_xmalloc((size_t)N * sizeof *fused);
  uint8_t *keep = lm_xmalloc((size_t)N);
  scored *rb = lm_xmalloc((size_t)N * sizeof *rb), *rd = lm_xmalloc((size_t)N * sizeof *rd),
         *rf = lm_xmalloc((size_t)N * sizeof *rf);
  int64_t *pos_b = calloc((size_t)N, sizeof *pos_b), *pos_d = calloc((size_t)N, sizeof *pos_d);
  lm_status st = LM_OK;
  if (!bm || !cos || !fused || !keep || !rb || !rd || !rf || !pos_b || !pos_d) { st = lm_error(LM_ERR_NOMEM, "out of memory"); goto done; }
  int64_t nb = 0, nd = 0;
  if (sparse) {
    if ((st = lm_rag_bm25(ix, query, bm))) goto done;
    for (int64_t i = 0; i < N; i++) keep[i] = bm[i] > 0;   /* idf > 0: a passage holding a query term scores > 0 */
    nb = rank(bm, keep, N, rb);
    for (int64_t r = 0; r < nb; r++) pos_b[rb[r].chunk] = r + 1;
  }
  if (dense) {
    for (int64_t i = 0; i < N; i++) {
      const float *v = ix->vecs + i * ix->dim;
      double s = 0;
      for (int64_t j = 0; j < ix->dim; j++) s += (double)v[j] * qvec[j];
      cos[i] = s;
    }
    nd = rank(cos, NULL, N, rd);
    for (int64_t r = 0; r < nd; r++) pos_d[rd[r].chunk] = r + 1;
  }
  const scored *best = mode == LM_RAG_BM25 ? rb : rd;
  int64_t nbest = mode == LM_RAG_BM25 ? nb : nd;
  if (mode == LM_RAG_HYBRID) {
    for (int64_t i = 0; i < N; i++)
      fused[i] = (pos_b[i] ? 1.0 / (LM_RAG_RRF_K + pos_b[i]) : 0) + (pos_d[i] ? 1.0 / (LM_RAG_RRF_K + pos_d[i]) : 0);
    nbest = rank(fused, NULL, N, rf);
    best = rf;
  }
  for (int64_t r = 0; r < nbest && r < k; r++) {
    int64_t c = best[r].chunk;
    hits[r] = (lm_rag_hit){c, best[r].score, pos_b[c], pos_d[c]};
    ++*n_hits;
  }
done:
  free(bm); free(cos); free(fused); free(keep); free(rb); free(rd); free(rf); free(pos_b); free(pos_d);
  return st;
}

/* ---- the prompt and the sources */

/* "a.txt, lines 3-7" / "a.txt, line 3" */
static void where(char *buf, size_t n, const lm_rag_chunk *c) {
  if (c->line_start == c->line_end) snprintf(buf, n, "line %lld", (long long)c->line_start);
  else snprintf(buf, n, "lines %lld-%lld", (long long)c->line_start, (long long)c->line_end);
}

lm_status lm_rag_prompt(const lm_rag_index *ix, const char *question, const lm_rag_hit *hits, int64_t n, char **out) {
  *out = NULL;
  for (int64_t i = 0; i < n; i++)
    if (hits[i].chunk < 0 || hits[i].chunk >= ix->n_chunks)
      return lm_error(LM_ERR_ARG, "hit %lld names passage %lld, not in the index", (long long)i, (long long)hits[i].chunk);
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  if (!f) return lm_error(LM_ERR_NOMEM, "out of memory");
  fputs("Answer the question using only the numbered sources below. Cite each source you use as [n]. "
        "If the sources do not hold the answer, say so.\n\n", f);
  for (int64_t i = 0; i < n; i++) {
    lm_rag_chunk c;
    lm_rag_index_chunk(ix, hits[i].chunk, &c);
    char w[64];
    where(w, sizeof w, &c);
    fprintf(f, "[%lld] %s, %s\n", (long long)(i + 1), c.file, w);
    fwrite(c.text, 1, c.len, f);
    fputs("\n\n", f);
  }
  fprintf(f, "Question: %s", question);
  int bad = ferror(f);
  bad |= fclose(f);   /* the buffer is complete (and buf set) only after fclose */
  if (bad) { free(buf); return lm_error(LM_ERR_NOMEM, "out of memory"); }
  *out = buf;
  return LM_OK;
}

/* a JSON string of s with each byte that is not valid UTF-8 replaced by U+FFFD (documents may be
 * Latin-1; the JSON must stay valid) */
static cJSON *json_text(const char *s, size_t n) {
  char *o = malloc(3 * n + 1), *p = o;
  if (!o) return NULL;
  for (size_t i = 0, k; i < n; i += k ? k : 1) {
    k = lm_utf8_char((const uint8_t *)s + i, n - i);
    memcpy(p, k ? s + i : "\xEF\xBF\xBD", k ? k : 3);
    p += k ? k : 3;
  }
  *p = 0;
  cJSON *j = cJSON_CreateString(o);
  free(o);
  return j;
}

cJSON *lm_rag_sources_json(const lm_rag_index *ix, const lm_rag_hit *hits, int64_t n) {
  cJSON *a = cJSON_CreateArray();
  for (int64_t i = 0; a && i < n; i++) {
    lm_rag_chunk c;
    lm_rag_index_chunk(ix, hits[i].chunk, &c);
    cJSON *o = cJSON_CreateObject();
    cJSON *lines = cJSON_CreateArray(), *bytes = cJSON_CreateArray();
    if (!o || !lines || !bytes) { cJSON_Delete(o); cJSON_Delete(lines); cJSON_Delete(bytes); cJSON_Delete(a); return NULL; }
    cJSON_AddItemToArray(a, o);
    cJSON_AddNumberToObject(o, "n", (double)(i + 1));
    cJSON_AddItemToObject(o, "file", json_text(c.file, strlen(c.file)));
    cJSON_AddItemToArray(lines, cJSON_CreateNumber((double)c.line_start));
    cJSON_AddItemToArray(lines, cJSON_CreateNumber((double)c.line_end));
    cJSON_AddItemToObject(o, "lines", lines);
    cJSON_AddItemToArray(bytes, cJSON_CreateNumber((double)c.byte_start));
    cJSON_AddItemToArray(bytes, cJSON_CreateNumber((double)c.byte_end));
    cJSON_AddItemToObject(o, "bytes", bytes);
    cJSON_AddNumberToObject(o, "score", hits[i].score);
    cJSON *t = json_text(c.text, c.len);
    if (!t || !cJSON_GetObjectItem(o, "file")) { cJSON_Delete(t); cJSON_Delete(a); return NULL; }
    cJSON_AddItemToObject(o, "text", t);
  }
  return a;
}

/* ---- the handle */

struct lm_rag {
  lm_rag_index *ix;
  lm_rag_mode mode;
  lm_rag_embedder *emb;
  float *qvec;
  pthread_mutex_t lock;
};

lm_status lm_rag_open(lm_rag **out, const char *index_path, lm_rag_mode mode, const char *embed_model) {
  *out = NULL;
  if ((unsigned)mode > LM_RAG_AUTO) return lm_error(LM_ERR_ARG, "lm_rag_open: unknown mode %d", (int)mode);
  lm_rag *r = calloc(1, sizeof *r);
  if (!r) return lm_error(LM_ERR_NOMEM, "out of memory");
  pthread_mutex_init(&r->lock, NULL);
  lm_status st = lm_rag_index_load(&r->ix, index_path);
  if (!st && mode == LM_RAG_AUTO) mode = r->ix->dim ? LM_RAG_HYBRID : LM_RAG_BM25;
  r->mode = mode;
  if (!st && mode != LM_RAG_BM25) {
    const char *dir = embed_model ? embed_model : r->ix->embed_model;
    if (!r->ix->dim)
      st = lm_error(LM_ERR_ARG, "%s: %s retrieval needs an index with vectors; this one has BM25 only (rebuild it with "
                    "'lmkit index --embed-model DIR', or use --mode bm25)", index_path, lm_rag_mode_name(mode));
    else if ((st = lm_rag_embedder_load(&r->emb, dir, NULL)))
      lm_error_prefix(st, "%s: the embedding model of the index", index_path);
    else if (lm_rag_embedder_dim(r->emb) != r->ix->dim)
      st = lm_error(LM_ERR_ARG, "%s: the index's vectors have %lld values, the embedding model %s gives %lld", index_path,
                    (long long)r->ix->dim, dir, (long long)lm_rag_embedder_dim(r->emb));
    else if (!(r->qvec = lm_xmalloc((size_t)r->ix->dim * sizeof *r->qvec)))
      st = LM_ERR_NOMEM;
  }
  if (st) { lm_rag_close(r); return st; }
  *out = r;
  return LM_OK;
}

void lm_rag_close(lm_rag *r) {
  if (!r) return;
  lm_rag_index_free(r->ix);
  lm_rag_embedder_free(r->emb);
  free(r->qvec);
  pthread_mutex_destroy(&r->lock);
  free(r);
}

const lm_rag_index *lm_rag_get_index(const lm_rag *r) { return r->ix; }
lm_rag_mode lm_rag_get_mode(const lm_rag *r) { return r->mode; }

lm_status lm_rag_retrieve(lm_rag *r, const char *query, int64_t k, lm_rag_hit *hits, int64_t *n_hits) {
  pthread_mutex_lock(&r->lock);
  lm_status st = LM_OK;
  if (r->emb) st = lm_rag_embed(r->emb, &query, 1, r->qvec, NULL);
  if (!st) st = lm_rag_search(r->ix, query, r->emb ? r->qvec : NULL, r->mode, k, hits, n_hits);
  pthread_mutex_unlock(&r->lock);
  return st;
}

lm_status lm_rag_augment(lm_rag *r, cJSON *messages, int64_t k, cJSON **sources) {
  if (sources) *sources = NULL;
  if (!cJSON_IsArray(messages)) return lm_error(LM_ERR_FORMAT, "messages: expected a list of messages");
  cJSON *last = NULL, *m;
  cJSON_ArrayForEach(m, messages) {
    const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
    if (cJSON_IsString(role) && !strcmp(role->valuestring, "user")) last = m;
  }
  if (!last) return lm_error(LM_ERR_FORMAT, "retrieval needs a user message to search with; the messages have none");
  cJSON *content = cJSON_GetObjectItemCaseSensitive(last, "content");
  if (!cJSON_IsString(content))
    return lm_error(LM_ERR_FORMAT, "retrieval searches with the last user message, whose content must be a string");
  if (k < 1 || k > 1000) return lm_error(LM_ERR_RANGE, "retrieval k = %lld: allowed 1..1000", (long long)k);
  lm_rag_hit *hits = lm_xmalloc((size_t)k * sizeof *hits);
  if (!hits) return LM_ERR_NOMEM;
  int64_t n;
  char *prompt = NULL;
  lm_status st = lm_rag_retrieve(r, content->valuestring, k, hits, &n);
  if (!st) st = lm_rag_prompt(r->ix, content->valuestring, hits, n, &prompt);
  if (!st && sources && !(*sources = lm_rag_sources_json(r->ix, hits, n))) st = lm_error(LM_ERR_NOMEM, "out of memory");
  if (!st) {
    cJSON *s = cJSON_CreateString(prompt);
    if (!s || !cJSON_ReplaceItemInObjectCaseSensitive(last, "content", s)) { cJSON_Delete(s); st = lm_error(LM_ERR_NOMEM, "out of memory"); }
  }
  if (st && sources) { cJSON_Delete(*sources); *sources = NULL; }
  free(prompt);
  free(hits);
  return st;
}
