/* test_rag.c — the retrieval library (src/rag/): chunking by hand-worked examples,
 * BM25 by a hand-computed score, save/load round trips, every kind of malformed index
 * (each prefix of a valid file, each byte flipped, an unknown version), bm25/dense/hybrid
 * search with hand-set vectors (reciprocal-rank fusion by hand), the prompt's exact text,
 * and lm_rag_augment on chat messages. Run under ASan + UBSan in CI. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "base/base.h"
#include "rag/index_impl.h"
#include "rag/rag.h"

static lm_rag_index *build(const char *doc, int64_t C, int64_t O) {
  lm_rag_chunk_opts o = {C, O};
  lm_rag_index *ix;
  cr_assert_eq(lm_rag_index_new(&ix, &o), LM_OK, "%s", lm_last_error());
  cr_assert_eq(lm_rag_index_add(ix, "doc.txt", doc, strlen(doc)), LM_OK, "%s", lm_last_error());
  return ix;
}

static void expect_chunks(const lm_rag_index *ix, const char *const *want, int n) {
  cr_assert_eq(lm_rag_index_size(ix), n, "passages: %lld, want %d", (long long)lm_rag_index_size(ix), n);
  for (int i = 0; i < n; i++) {
    lm_rag_chunk c;
    lm_rag_index_chunk(ix, i, &c);
    cr_assert_str_eq(c.text, want[i], "passage %d", i);
  }
}

Test(rag, chunks_pack_paragraphs_and_overlap) {
  /* paragraphs of 3, 2 and 6 words; passages of at most 4 words sharing at most 1 */
  const char *doc = "a b c\n\nd e\n\nf g h i j k";
  lm_rag_index *ix = build(doc, 4, 1);
  /* "a b c" (d e does not fit); "c" + "d e" (1 word back); from "e" the next paragraph does
   * not fit, so no passage of "e" alone: "f g h i" cut at 4 words; "i j k" 1 word back */
  const char *want[] = {"a b c", "c\n\nd e", "f g h i", "i j k"};
  expect_chunks(ix, want, 4);
  lm_rag_chunk c;
  lm_rag_index_chunk(ix, 1, &c);
  cr_assert_eq(c.byte_start, 4);
  cr_assert_eq(c.byte_end, 10);
  cr_assert_eq(c.line_start, 1);
  cr_assert_eq(c.line_end, 3);
  lm_rag_index_chunk(ix, 3, &c);
  cr_assert_eq(c.line_start, 5);
  cr_assert_str_eq(c.file, "doc.txt");
  lm_rag_index_free(ix);
}

Test(rag, chunks_overlap_snaps_to_a_paragraph) {
  /* 2 words back from the end of "a b c d e" would start at "d"; "x y" starts inside them? no:
   * passages "p q r" / "s t" are paragraphs; an overlap of 3 from "s t"'s end holds the
   * paragraph start "s", so the next passage starts there */
  const char *doc = "p q r\n\ns t\n\nu v w";
  lm_rag_index *ix = build(doc, 5, 3);
  const char *want[] = {"p q r\n\ns t", "s t\n\nu v w"};
  expect_chunks(ix, want, 2);
  lm_rag_index_free(ix);
  ix = build(doc, 5, 0);
  const char *want0[] = {"p q r\n\ns t", "u v w"};
  expect_chunks(ix, want0, 2);
  lm_rag_index_free(ix);
}

Test(rag, empty_and_binary_documents) {
  lm_rag_index *ix = build("  \n\n \t ", 10, 2);
  cr_assert_eq(lm_rag_index_size(ix), 0);
  cr_assert_eq(lm_rag_index_files(ix), 1);
  cr_assert_eq(lm_rag_index_add(ix, "bin", "ab\0cd", 5), LM_ERR_FORMAT);
  cr_assert(strstr(lm_last_error(), "bin: a NUL byte at offset 2"), "%s", lm_last_error());
  lm_rag_index_free(ix);
  lm_rag_chunk_opts bad = {4, 4};
  cr_assert_eq(lm_rag_index_new(&ix, &bad), LM_ERR_ARG);
  cr_assert_null(ix);
}

static int collect(const char *t, size_t n, void *user) {
  char *out = user;
  strncat(out, t, n);
  strcat(out, "|");
  return 0;
}

Test(rag, terms) {
  char out[256] = "";
  const char *s = "Hello, WORLD! x2 don't caf\xc3\xa9 \xc3\x9c" "bung e-mail";
  cr_assert_eq(lm_rag_terms(s, strlen(s), collect, out), LM_OK);
  /* ASCII lower-cased; bytes >= 0x80 are kept as they are (U+00DC stays upper case) */
  cr_assert_str_eq(out, "hello|world|x2|don|t|caf\xc3\xa9|\xc3\x9c" "bung|e|mail|");
}

Test(rag, bm25_by_hand) {
  /* 3 passages (chunk size 3, no overlap): "cat dog cat", "dog bird", "fish fish" */
  lm_rag_index *ix = build("cat dog cat\n\ndog bird\n\nfish fish", 3, 0);
  cr_assert_eq(lm_rag_index_size(ix), 3);
  double s[3];
  cr_assert_eq(lm_rag_bm25(ix, "CAT", s), LM_OK);
  double N = 3, avgdl = 7.0 / 3, idf = log(1 + (N - 1 + 0.5) / (1 + 0.5));
  double want0 = idf * 2 * 2.2 / (2 + 1.2 * (1 - 0.75 + 0.75 * 3 / avgdl));
  cr_assert_float_eq(s[0], want0, 1e-12);
  cr_assert_eq(s[1], 0);
  cr_assert_eq(s[2], 0);
  /* a repeated query term counts twice; an unknown one nothing */
  double t[3];
  cr_assert_eq(lm_rag_bm25(ix, "cat cat zebra", t), LM_OK);
  cr_assert_float_eq(t[0], 2 * want0, 1e-12);
  lm_rag_index_free(ix);
}

/* a small index with vectors set by hand (as lm_rag_index_embed would) */
static lm_rag_index *with_vectors(void) {
  lm_rag_index *ix = build("red apple\n\nred red car\n\nblue sky\n\ngreen tree", 3, 0);
  cr_assert_eq(lm_rag_index_size(ix), 4);
  static const float v[4][2] = {{1, 0}, {0, 1}, {0.6f, 0.8f}, {0.8f, 0.6f}};
  ix->dim = 2;
  ix->vecs = malloc(sizeof v);
  memcpy(ix->vecs, v, sizeof v);
  ix->embed_model = lm_strdup("/models/bert");
  return ix;
}

Test(rag, search_modes) {
  lm_rag_index *ix = with_vectors();
  lm_rag_hit h[4];
  int64_t n;
  cr_assert_eq(lm_rag_search(ix, "red", NULL, LM_RAG_BM25, 4, h, &n), LM_OK);
  cr_assert_eq(n, 2);                          /* only the passages holding "red" */
  cr_assert_eq(h[0].chunk, 1);                 /* tf 2 in 3 terms beats tf 1 in 2 */
  cr_assert_eq(h[1].chunk, 0);
  cr_assert_eq(h[0].rank_bm25, 1);
  const float q[2] = {1, 0};
  cr_assert_eq(lm_rag_search(ix, "red", q, LM_RAG_DENSE, 3, h, &n), LM_OK);
  cr_assert_eq(n, 3);                          /* cosines 1, 0, 0.6, 0.8: 0, 3, 2 */
  cr_assert_eq(h[0].chunk, 0);
  cr_assert_eq(h[1].chunk, 3);
  cr_assert_eq(h[2].chunk, 2);
  cr_assert_float_eq(h[1].score, 0.8, 1e-6);
  /* hybrid: bm25 ranks 1 -> 1, 0 -> 2; dense ranks 0 -> 1, 3 -> 2, 2 -> 3, 1 -> 4
   * fused: 0: 1/62 + 1/61, 1: 1/61 + 1/64, 3: 1/62, 2: 1/63 */
  cr_assert_eq(lm_rag_search(ix, "red", q, LM_RAG_HYBRID, 4, h, &n), LM_OK);
  cr_assert_eq(n, 4);
  int64_t want[4] = {0, 1, 3, 2};
  for (int i = 0; i < 4; i++) cr_assert_eq(h[i].chunk, want[i], "hybrid %d: %lld", i, (long long)h[i].chunk);
  cr_assert_float_eq(h[0].score, 1.0 / 62 + 1.0 / 61, 1e-12);
  cr_assert_eq(h[1].rank_bm25, 1);
  cr_assert_eq(h[1].rank_dense, 4);
  /* errors: no vector, k < 1, auto is not a search mode */
  cr_assert_eq(lm_rag_search(ix, "red", NULL, LM_RAG_HYBRID, 4, h, &n), LM_ERR_ARG);
  cr_assert_eq(lm_rag_search(ix, "red", q, LM_RAG_BM25, 0, h, &n), LM_ERR_ARG);
  cr_assert_eq(lm_rag_search(ix, "red", q, LM_RAG_AUTO, 1, h, &n), LM_ERR_ARG);
  lm_rag_index_free(ix);
  ix = build("red", 3, 0);
  cr_assert_eq(lm_rag_search(ix, "red", q, LM_RAG_DENSE, 1, h, &n), LM_ERR_ARG);
  cr_assert(strstr(lm_last_error(), "needs an index with vectors"), "%s", lm_last_error());
  lm_rag_index_free(ix);
}

Test(rag, ties_by_passage_order) {
  lm_rag_index *ix = build("x y\n\nx y\n\nx y", 2, 0);
  lm_rag_hit h[3];
  int64_t n;
  cr_assert_eq(lm_rag_search(ix, "x", NULL, LM_RAG_BM25, 3, h, &n), LM_OK);
  cr_assert_eq(n, 3);
  for (int i = 0; i < 3; i++) cr_assert_eq(h[i].chunk, i);
  lm_rag_index_free(ix);
}

static char *tmp_path(const char *name) {
  static char dir[64];
  if (!dir[0]) { strcpy(dir, "/tmp/lm_rag_test_XXXXXX"); cr_assert_not_null(mkdtemp(dir)); }
  return lm_path_join(dir, name);
}

static void same_index(const lm_rag_index *a, const lm_rag_index *b) {
  cr_assert_eq(lm_rag_index_size(a), lm_rag_index_size(b));
  cr_assert_eq(lm_rag_index_terms(a), lm_rag_index_terms(b));
  cr_assert_eq(lm_rag_index_dim(a), lm_rag_index_dim(b));
  for (int64_t i = 0; i < lm_rag_index_size(a); i++) {
    lm_rag_chunk x, y;
    lm_rag_index_chunk(a, i, &x);
    lm_rag_index_chunk(b, i, &y);
    cr_assert_str_eq(x.text, y.text);
    cr_assert_str_eq(x.file, y.file);
    cr_assert(x.byte_start == y.byte_start && x.byte_end == y.byte_end && x.line_start == y.line_start &&
              x.line_end == y.line_end && x.n_terms == y.n_terms);
  }
  if (lm_rag_index_dim(a)) {
    cr_assert_str_eq(lm_rag_index_embed_model(a), lm_rag_index_embed_model(b));
    cr_assert(!memcmp(lm_rag_index_vectors(a), lm_rag_index_vectors(b),
                      (size_t)(lm_rag_index_size(a) * lm_rag_index_dim(a)) * sizeof(float)));
  }
  double sa[8], sb[8];
  cr_assert_eq(lm_rag_bm25(a, "red sky car", sa), LM_OK);
  cr_assert_eq(lm_rag_bm25(b, "red sky car", sb), LM_OK);
  cr_assert(!memcmp(sa, sb, (size_t)lm_rag_index_size(a) * sizeof(double)));
}

Test(rag, save_load_round_trip) {
  lm_rag_index *ix = with_vectors(), *back;
  cr_assert_eq(lm_rag_index_add(ix, "late", "x", 1), LM_ERR_ARG);   /* no adding after the vectors */
  char *p = tmp_path("v.idx");
  cr_assert_eq(lm_rag_index_save(ix, p), LM_OK, "%s", lm_last_error());
  cr_assert_eq(lm_rag_index_load(&back, p), LM_OK, "%s", lm_last_error());
  same_index(ix, back);
  lm_rag_index_free(back);
  lm_rag_index *plain = build("red apple\n\nred red car", 3, 0);
  cr_assert_eq(lm_rag_index_save(plain, p), LM_OK);
  cr_assert_eq(lm_rag_index_load(&back, p), LM_OK, "%s", lm_last_error());
  same_index(plain, back);
  lm_rag_index_free(back);
  lm_rag_index_free(plain);
  lm_rag_index_free(ix);
  unlink(p);
  free(p);
}

/* every prefix of a valid file and every byte flipped: an error or a valid index, never a crash */
Test(rag, malformed_files) {
  lm_rag_index *ix = with_vectors(), *back;
  char *p = tmp_path("m.idx"), *data;
  size_t len;
  cr_assert_eq(lm_rag_index_save(ix, p), LM_OK);
  cr_assert_eq(lm_read_file(p, &data, &len), LM_OK);
  for (size_t n = 0; n < len; n++) {
    cr_assert_neq(lm_rag_index_parse(&back, data, n, "cut"), LM_OK, "a prefix of %zu bytes parsed", n);
    cr_assert_null(back);
    cr_assert(!strncmp(lm_last_error(), "cut: ", 5), "%s", lm_last_error());
  }
  int accepted = 0;
  for (size_t i = 0; i < len; i++) {
    data[i] ^= 0x5a;
    if (lm_rag_index_parse(&back, data, len, "flip") == LM_OK) { accepted++; lm_rag_index_free(back); }
    data[i] ^= 0x5a;
  }
  cr_assert_lt(accepted, (int)len / 2);   /* vector values and passage text can change validly; structure cannot */
  char *extra = malloc(len + 1);
  memcpy(extra, data, len);
  extra[len] = 0;
  cr_assert_eq(lm_rag_index_parse(&back, extra, len + 1, "long"), LM_ERR_FORMAT);
  cr_assert(strstr(lm_last_error(), "bytes after the end"), "%s", lm_last_error());
  free(extra);
  data[8] = 2;
  cr_assert_eq(lm_rag_index_parse(&back, data, len, "v2"), LM_ERR_UNSUPPORTED);
  cr_assert(strstr(lm_last_error(), "v2: index format version 2; this lmkit reads version 1"), "%s", lm_last_error());
  cr_assert_eq(lm_rag_index_load(&back, "/nonexistent/x.idx"), LM_ERR_IO);
  free(data);
  lm_rag_index_free(ix);
  unlink(p);
  free(p);
}

Test(rag, prompt_text) {
  lm_rag_index *ix = build("red apple\n\nred red car\n\nblue sky", 3, 0);
  lm_rag_hit h[2] = {{1, 0, 0, 0}, {2, 0, 0, 0}};
  char *s;
  cr_assert_eq(lm_rag_prompt(ix, "What is red?", h, 2, &s), LM_OK);
  cr_assert_str_eq(s,
    "Answer the question using only the numbered sources below. Cite each source you use as [n]. If the sources do "
    "not hold the answer, say so.\n\n"
    "[1] doc.txt, line 3\nred red car\n\n"
    "[2] doc.txt, line 5\nblue sky\n\n"
    "Question: What is red?");
  free(s);
  cJSON *src = lm_rag_sources_json(ix, h, 2);
  char *j = cJSON_PrintUnformatted(src);
  cr_assert_str_eq(j, "[{\"n\":1,\"file\":\"doc.txt\",\"lines\":[3,3],\"bytes\":[11,22],\"score\":0,\"text\":\"red red car\"},"
                      "{\"n\":2,\"file\":\"doc.txt\",\"lines\":[5,5],\"bytes\":[24,32],\"score\":0,\"text\":\"blue sky\"}]");
  free(j);
  cJSON_Delete(src);
  lm_rag_index_free(ix);
  ix = build("caf\xe9 ol\xc3\xa9", 3, 0);   /* Latin-1 then UTF-8 */
  lm_rag_hit first = {0, 0, 0, 0};
  src = lm_rag_sources_json(ix, &first, 1);
  cr_assert_str_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(src, 0), "text")->valuestring, "caf\xef\xbf\xbd ol\xc3\xa9");
  cJSON_Delete(src);
  lm_rag_hit badh = {7, 0, 0, 0};
  cr_assert_eq(lm_rag_prompt(ix, "q", &badh, 1, &s), LM_ERR_ARG);
  lm_rag_index_free(ix);
}

Test(rag, open_and_augment) {
  lm_rag_index *ix = build("red apple\n\nred red car\n\nblue sky", 3, 0);
  char *p = tmp_path("a.idx");
  cr_assert_eq(lm_rag_index_save(ix, p), LM_OK);
  lm_rag *r;
  cr_assert_eq(lm_rag_open(&r, p, LM_RAG_HYBRID, NULL), LM_ERR_ARG);   /* no vectors */
  cr_assert(strstr(lm_last_error(), "has BM25 only"), "%s", lm_last_error());
  cr_assert_eq(lm_rag_open(&r, p, LM_RAG_AUTO, NULL), LM_OK, "%s", lm_last_error());
  cr_assert_eq(lm_rag_get_mode(r), LM_RAG_BM25);
  cJSON *msgs = cJSON_Parse("[{\"role\":\"system\",\"content\":\"Be brief.\"},{\"role\":\"user\",\"content\":\"hi\"},"
                            "{\"role\":\"assistant\",\"content\":\"hello\"},{\"role\":\"user\",\"content\":\"which car is red?\"}]");
  cJSON *src;
  cr_assert_eq(lm_rag_augment(r, msgs, 2, &src), LM_OK, "%s", lm_last_error());
  const char *c = cJSON_GetObjectItem(cJSON_GetArrayItem(msgs, 3), "content")->valuestring;
  cr_assert(strstr(c, "[1] doc.txt, line 3\nred red car\n\n[2] doc.txt, line 1\nred apple\n\nQuestion: which car is red?"), "%s", c);
  cr_assert_str_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(msgs, 1), "content")->valuestring, "hi");
  cr_assert_eq(cJSON_GetArraySize(src), 2);
  cJSON_Delete(src);
  cJSON_Delete(msgs);
  msgs = cJSON_Parse("[{\"role\":\"system\",\"content\":\"x\"}]");
  cr_assert_eq(lm_rag_augment(r, msgs, 2, &src), LM_ERR_FORMAT);
  cr_assert_null(src);
  cJSON_Delete(msgs);
  lm_rag_close(r);
  lm_rag_index_free(ix);
  unlink(p);
  free(p);
}
