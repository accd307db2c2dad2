/* rag.h — retrieval-augmented answers: documents are cut into passages
 * ("chunks"), indexed for BM25 and optionally for dense (embedding) search,
 * saved in one file, and searched by a question; the best passages go into
 * the prompt as numbered sources that the answer cites as [n]
 * (docs/rag.md has the file format and the formulas).
 *
 * Build an index (what `lmkit index` does):
 *   lm_rag_chunk_opts co;  lm_rag_chunk_opts_default(&co);
 *   lm_rag_index *ix;  lm_rag_index_new(&ix, &co);
 *   lm_rag_index_add_file(ix, "docs/a.txt");             // or lm_rag_index_add(ix, name, text, len)
 *   lm_rag_embedder *e;  lm_rag_embedder_load(&e, "bert-dir", NULL);          // optional: dense vectors
 *   lm_rag_index_embed(ix, e, "bert-dir", NULL, NULL, NULL);
 *   lm_rag_index_save(ix, "docs.idx");                    // atomic
 *
 * Answer from it (what `lmkit ask` and the server's "retrieval" field do):
 *   lm_rag *r;  lm_rag_open(&r, "docs.idx", LM_RAG_HYBRID, NULL);   // loads the embedding model it needs
 *   lm_rag_hit hits[5];  int64_t n;
 *   lm_rag_retrieve(r, question, 5, hits, &n);
 *   char *user;  lm_rag_prompt(lm_rag_get_index(r), question, hits, n, &user);  // the user message
 *   // or, on a chat request's messages: lm_rag_augment(r, messages, 5, &sources_json);
 *
 * Thread safety: a loaded index is read-only, and lm_rag_search on it may run on many threads.
 * An lm_rag serialises its own calls (the embedding model's activations are shared), so one
 * lm_rag may serve many threads. */
#ifndef LM_RAG_RAG_H
#define LM_RAG_RAG_H

#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>
#include "lmkit.h"

#define LM_RAG_VERSION 1      /* the index file's format version (docs/rag.md) */
#define LM_RAG_K1 1.2         /* BM25 term-frequency saturation */
#define LM_RAG_B 0.75         /* BM25 length normalisation */
#define LM_RAG_RRF_K 60       /* reciprocal-rank fusion: score = sum over rankings of 1 / (60 + rank) */

/* LM_RAG_AUTO (for lm_rag_open): hybrid when the index has vectors, else BM25 */
typedef enum { LM_RAG_BM25 = 0, LM_RAG_DENSE, LM_RAG_HYBRID, LM_RAG_AUTO } lm_rag_mode;
/* "bm25", "dense", "hybrid", "auto"; an unknown name is an error listing them. */
lm_status lm_rag_mode_parse(const char *name, lm_rag_mode *mode);
const char *lm_rag_mode_name(lm_rag_mode mode);

/* ---- chunking: paragraphs (separated by blank lines) packed into passages of at most
 * chunk_words words; consecutive passages share up to overlap_words words (starting at a
 * paragraph when one starts in the overlap, and not at all when the overlap plus the next
 * paragraph would not fit: a passage always adds words); a paragraph longer than a passage is
 * cut at words. Words are runs of non-space bytes. */
typedef struct {
  int64_t chunk_words;    /* 200 */
  int64_t overlap_words;  /* 40; < chunk_words */
} lm_rag_chunk_opts;
void lm_rag_chunk_opts_default(lm_rag_chunk_opts *o);

/* ---- the index */
typedef struct lm_rag_index lm_rag_index;

typedef struct {
  const char *file;              /* the document's name as it was added (the path for files) */
  const char *text;              /* the passage's bytes, NUL-terminated */
  size_t len;
  int64_t byte_start, byte_end;  /* [start, end) in the document */
  int64_t line_start, line_end;  /* 1-based, inclusive */
  int64_t n_terms;               /* BM25 length: the passage's terms (lm_rag_terms) */
} lm_rag_chunk;

lm_status lm_rag_index_new(lm_rag_index **out, const lm_rag_chunk_opts *o);
/* Chunks one document and adds its passages to BM25. `name` is what sources print. Empty
 * documents add nothing. Refused after lm_rag_index_embed (the vectors would miss passages). */
lm_status lm_rag_index_add(lm_rag_index *ix, const char *name, const char *text, size_t len);
lm_status lm_rag_index_add_file(lm_rag_index *ix, const char *path);
void lm_rag_index_free(lm_rag_index *ix);

int64_t lm_rag_index_size(const lm_rag_index *ix);                           /* passages */
int64_t lm_rag_index_files(const lm_rag_index *ix);                          /* documents */
int64_t lm_rag_index_terms(const lm_rag_index *ix);                          /* distinct BM25 terms */
void lm_rag_index_chunk(const lm_rag_index *ix, int64_t i, lm_rag_chunk *c);  /* 0 <= i < size */
int64_t lm_rag_index_dim(const lm_rag_index *ix);                            /* dense width; 0: no vectors */
const char *lm_rag_index_embed_model(const lm_rag_index *ix);                /* the model the vectors came from, or NULL */
const float *lm_rag_index_vectors(const lm_rag_index *ix);                   /* (size, dim) L2-normalised, or NULL */

/* The file (docs/rag.md): little-endian binary with a magic, a version (an unknown one is an
 * error), the chunking settings, documents, passages, the BM25 term table and postings, and
 * the dense vectors. Save is atomic (temp file, fsync, rename). Load/parse bounds-check every
 * count, offset and string and check the postings against the passages (a malformed file is an
 * error naming it and what is wrong; fuzzed by fuzz/fuzz_rag_index.c). */
lm_status lm_rag_index_save(const lm_rag_index *ix, const char *path);
lm_status lm_rag_index_load(lm_rag_index **out, const char *path);
lm_status lm_rag_index_parse(lm_rag_index **out, const void *data, size_t len, const char *name);

/* ---- BM25: the terms of a text are its maximal runs of ASCII letters and digits and of bytes
 * >= 0x80 (so UTF-8 words stay whole), ASCII-lowercased; no stemming, no stop words.
 * score(q, d) = sum over the query's terms t (repeats count) found in the index of
 *   idf(t) * tf(t,d) * (k1 + 1) / (tf(t,d) + k1 * (1 - b + b * |d| / avgdl)),
 *   idf(t) = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))            (Lucene's, never negative)
 * lm_rag_terms calls fn(term, len, user) for each term of text in order (fn returns non-zero to
 * stop); it fails only when out of memory. */
lm_status lm_rag_terms(const char *text, size_t len, int (*fn)(const char *term, size_t len, void *user), void *user);
/* Every passage's BM25 score for query into scores (size). */
lm_status lm_rag_bm25(const lm_rag_index *ix, const char *query, double *scores);

/* ---- search */
typedef struct {
  int64_t chunk;        /* passage index */
  double score;         /* BM25 score, cosine, or fused RRF score (by mode) */
  int64_t rank_bm25;    /* 1-based rank in the BM25 ranking (0: no query term in it, or not ranked) */
  int64_t rank_dense;   /* 1-based rank in the dense ranking (0: not ranked) */
} lm_rag_hit;

/* The top k passages (fewer when fewer match: BM25 ranks only passages holding a query term)
 * by score, ties by passage order. Dense and hybrid need the question's embedding (qvec, dim
 * values, L2-normalised; lm_rag_embed makes it) and an index with vectors. Hybrid fuses the
 * BM25 ranking and the dense ranking by reciprocal-rank fusion (LM_RAG_RRF_K). */
lm_status lm_rag_search(const lm_rag_index *ix, const char *query, const float *qvec, lm_rag_mode mode, int64_t k,
                        lm_rag_hit *hits, int64_t *n_hits);

/* ---- the prompt: the user message that asks for an answer from numbered sources
 *   Answer the question using only the numbered sources below. Cite each source you use as
 *   [n]. If the sources do not hold the answer, say so.
 *
 *   [1] a.txt, lines 3-7
 *   <passage text>
 *   ...
 *   Question: <question>
 * *out is malloc'ed. */
lm_status lm_rag_prompt(const lm_rag_index *ix, const char *question, const lm_rag_hit *hits, int64_t n, char **out);
/* The sources as JSON: [{"n": 1, "file", "lines": [a, b], "bytes": [start, end], "score", "text"}, ...]
 * (bytes of the file name or text that are not valid UTF-8 become U+FFFD). NULL: out of memory. */
cJSON *lm_rag_sources_json(const lm_rag_index *ix, const lm_rag_hit *hits, int64_t n);

/* ---- dense vectors: a pooled summary of a model's final hidden states (encoder or decoder,
 * any head: only the hidden states are read). Pooling: mean = the average over the real tokens
 * ([CLS] and [SEP] included for encoders, padding excluded), as sentence-transformers does;
 * cls = the first token's; last = the last real token's. Texts longer than the context are
 * truncated. The index uses mean pooling, L2-normalised (`lmkit embed --pool mean`, normalised). */
typedef enum { LM_RAG_POOL_MEAN = 0, LM_RAG_POOL_CLS, LM_RAG_POOL_LAST } lm_rag_pool;
typedef struct {
  lm_rag_pool pool;       /* mean */
  int normalize;          /* 1: each vector scaled to unit L2 norm (1) */
  int64_t batch;          /* texts per forward pass (16) */
  int64_t context;        /* longest input in tokens; 0: the model's positions (0) */
} lm_rag_embed_opts;
void lm_rag_embed_opts_default(lm_rag_embed_opts *o);
/* "mean", "cls", "last"; an unknown name is an error listing them. */
lm_status lm_rag_pool_parse(const char *name, lm_rag_pool *pool);
typedef struct lm_rag_embedder lm_rag_embedder;
/* o may be NULL (the defaults). */
lm_status lm_rag_embedder_load(lm_rag_embedder **out, const char *model_dir, const lm_rag_embed_opts *o);
void lm_rag_embedder_free(lm_rag_embedder *e);
int64_t lm_rag_embedder_dim(const lm_rag_embedder *e);
int64_t lm_rag_embedder_context(const lm_rag_embedder *e);
/* n texts into out (n, dim); *n_truncated (may be NULL) counts the texts that were cut. */
lm_status lm_rag_embed(lm_rag_embedder *e, const char *const *texts, int64_t n, float *out, int64_t *n_truncated);
/* Embeds every passage (e: mean pooling, normalised; in batches, progress(done, total, user)
 * after each, may be NULL) and records model_name as the index's embedding model;
 * *n_truncated (may be NULL) counts the passages longer than the model's context. */
lm_status lm_rag_index_embed(lm_rag_index *ix, lm_rag_embedder *e, const char *model_name, int64_t *n_truncated,
                             void (*progress)(int64_t done, int64_t total, void *user), void *user);

/* ---- an index ready to answer: what `lmkit ask` and the server use */
typedef struct lm_rag lm_rag;
/* Loads the index. mode is the retrieval this handle serves (auto: hybrid when the index has
 * vectors, else bm25; lm_rag_get_mode says which): dense and hybrid need an index with vectors and load the embedding model (embed_model, else the one the index names; an
 * error names it when it does not load or its width differs). */
lm_status lm_rag_open(lm_rag **out, const char *index_path, lm_rag_mode mode, const char *embed_model);
void lm_rag_close(lm_rag *r);
const lm_rag_index *lm_rag_get_index(const lm_rag *r);
lm_rag_mode lm_rag_get_mode(const lm_rag *r);
/* Top k passages for the query in the handle's mode (embedding the query when needed). */
lm_status lm_rag_retrieve(lm_rag *r, const char *query, int64_t k, lm_rag_hit *hits, int64_t *n_hits);
/* For chat requests: retrieves with the last user message (its content a string) as the query
 * and replaces that content with lm_rag_prompt's. *sources (may be NULL) receives
 * lm_rag_sources_json of the passages used (the caller frees it). No user message: an error. */
lm_status lm_rag_augment(lm_rag *r, cJSON *messages, int64_t k, cJSON **sources);

#endif
