/* index_impl.h — the inside of an lm_rag_index, shared by the files of src/rag/
 * (index.c builds, saves and loads it; search.c ranks; embed.c adds vectors).
 * Not part of the API: callers use rag.h. */
#ifndef LM_RAG_INDEX_IMPL_H
#define LM_RAG_INDEX_IMPL_H

#include "rag/rag.h"

typedef struct {
  int64_t file;
  int64_t byte_start, byte_end, line_start, line_end, n_terms;
  char *text;              /* byte_end - byte_start bytes + NUL */
} lm_rag_chunk_rec;

typedef struct {
  char *s;                 /* the term's bytes + NUL */
  uint32_t len;
  int64_t n, cap;          /* postings: chunk[i] strictly increasing, tf[i] >= 1 */
  int64_t *chunk;
  uint32_t *tf;
} lm_rag_term;

struct lm_rag_index {
  lm_rag_chunk_opts opts;
  int64_t n_files, cap_files;
  char **files;
  int64_t n_chunks, cap_chunks;
  lm_rag_chunk_rec *chunks;
  int64_t n_terms, cap_terms;
  lm_rag_term *terms;
  int64_t *slots;          /* open-addressing hash of the terms: term index or -1; n_slots a power of 2 */
  int64_t n_slots;
  int64_t total_terms;     /* sum of the chunks' n_terms (avgdl = total_terms / n_chunks) */
  int64_t dim;             /* dense vectors (n_chunks, dim), or 0 */
  float *vecs;
  char *embed_model;
};

/* The term's index, or -1. */
int64_t lm_rag_term_find(const lm_rag_index *ix, const char *s, size_t len);

#endif
