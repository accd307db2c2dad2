/* ref_rag.c — driver for the retrieval reference tests (test_bm25.py, tests/cli/test_rag.sh):
 * prints what an index holds and what it scores, as JSON lines, for Python to check.
 *
 *   ref_rag chunks IDX            one line per passage: {"file", "bytes": [s, e], "lines": [a, b], "n_terms", "text"}
 *   ref_rag bm25 IDX < queries    one line per stdin line: [score of passage 0, 1, ...] (%.17g)
 *   ref_rag vectors IDX           {"dim", "model"} then one line per passage: [v0, v1, ...] (%.9g)
 *   ref_rag search IDX MODE K < queries-and-vectors
 *                                 stdin lines {"query": q, "vec": [...] or null}; one line each:
 *                                 [[chunk, score, rank_bm25, rank_dense], ...] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "base/base.h"
#include "rag/rag.h"

static void json_str(const char *s) {
  cJSON *j = cJSON_CreateString(s);
  char *t = cJSON_PrintUnformatted(j);
  fputs(t, stdout);
  free(t);
  cJSON_Delete(j);
}

static int fail(void) {
  fprintf(stderr, "ref_rag: %s\n", lm_last_error());
  return 1;
}

int main(int argc, char **argv) {
  if (argc < 3) { fprintf(stderr, "usage: ref_rag chunks|bm25|vectors|search IDX [MODE K]\n"); return 2; }
  lm_rag_index *ix;
  if (lm_rag_index_load(&ix, argv[2])) return fail();
  int64_t N = lm_rag_index_size(ix), D = lm_rag_index_dim(ix);
  char *line = NULL;
  size_t cap = 0;
  ssize_t len;
  int rc = 0;
  if (!strcmp(argv[1], "chunks")) {
    for (int64_t i = 0; i < N; i++) {
      lm_rag_chunk c;
      lm_rag_index_chunk(ix, i, &c);
      fputs("{\"file\": ", stdout); json_str(c.file);
      printf(", \"bytes\": [%lld, %lld], \"lines\": [%lld, %lld], \"n_terms\": %lld, \"text\": ", (long long)c.byte_start,
             (long long)c.byte_end, (long long)c.line_start, (long long)c.line_end, (long long)c.n_terms);
      json_str(c.text);
      fputs("}\n", stdout);
    }
  } else if (!strcmp(argv[1], "bm25")) {
    double *s = malloc((size_t)(N ? N : 1) * sizeof *s);
    while ((len = getline(&line, &cap, stdin)) >= 0) {
      if (len && line[len - 1] == '\n') line[len - 1] = 0;
      if (lm_rag_bm25(ix, line, s)) { rc = fail(); break; }
      for (int64_t i = 0; i < N; i++) printf(i ? ", %.17g" : "[%.17g", s[i]);
      puts(N ? "]" : "[]");
    }
    free(s);
  } else if (!strcmp(argv[1], "vectors")) {
    printf("{\"dim\": %lld, \"model\": ", (long long)D);
    json_str(lm_rag_index_embed_model(ix) ? lm_rag_index_embed_model(ix) : "");
    puts("}");
    const float *v = lm_rag_index_vectors(ix);
    for (int64_t i = 0; i < N && D; i++) {
      for (int64_t j = 0; j < D; j++) printf(j ? ", %.9g" : "[%.9g", v[i * D + j]);
      puts("]");
    }
  } else if (!strcmp(argv[1], "search") && argc == 5) {
    lm_rag_mode mode;
    int64_t k = atoll(argv[4]);
    if (lm_rag_mode_parse(argv[3], &mode)) { rc = fail(); goto done; }
    lm_rag_hit *hits = malloc((size_t)(k > 0 ? k : 1) * sizeof *hits);
    float *q = malloc((size_t)(D ? D : 1) * sizeof *q);
    while ((len = getline(&line, &cap, stdin)) >= 0) {
      cJSON *j = cJSON_Parse(line);
      const cJSON *query = cJSON_GetObjectItem(j, "query"), *vec = cJSON_GetObjectItem(j, "vec");
      int64_t nv = cJSON_IsArray(vec) ? cJSON_GetArraySize(vec) : 0, n = 0;
      for (int64_t i = 0; i < nv && i < D; i++) q[i] = (float)cJSON_GetArrayItem(vec, (int)i)->valuedouble;
      lm_status st = cJSON_IsString(query) ? lm_rag_search(ix, query->valuestring, nv ? q : NULL, mode, k, hits, &n)
                                          : lm_error(LM_ERR_FORMAT, "no query");
      cJSON_Delete(j);
      if (st) { rc = fail(); break; }
      fputs("[", stdout);
      for (int64_t i = 0; i < n; i++)
        printf("%s[%lld, %.17g, %lld, %lld]", i ? ", " : "", (long long)hits[i].chunk, hits[i].score,
               (long long)hits[i].rank_bm25, (long long)hits[i].rank_dense);
      puts("]");
    }
    free(hits);
    free(q);
  } else {
    fprintf(stderr, "ref_rag: unknown mode %s\n", argv[1]);
    rc = 2;
  }
done:
  free(line);
  lm_rag_index_free(ix);
  return rc;
}
