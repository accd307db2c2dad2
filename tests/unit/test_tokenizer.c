/* test_tokenizer.c — unit tests of the byte-level BPE tokenizer: the built-in
 * "byte" tokenizer, save/load round trips, GPT-2 spot checks (ids computed by
 * tiktoken), special tokens, invalid UTF-8, training, parallel tokenization,
 * and clear errors on malformed files. The exhaustive comparison with
 * js-tiktoken lives in tests/reference/test_tokenizer_gpt2.py. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "lmkit.h"
#include "tokenizer/tokenizer.h"
#include "train/shard.h"

static char *tmpdir(void) {
  char *d = strdup("/tmp/lmkit_tok_XXXXXX");
  cr_assert(mkdtemp(d));
  return d;
}

static void roundtrip(const lm_tokenizer *t, const char *s, size_t n) {
  uint32_t *ids; size_t ni; char *back; size_t bn;
  cr_assert_eq(lm_tokenizer_encode(t, s, n, 0, &ids, &ni), LM_OK, "%s", lm_last_error());
  cr_assert_eq(lm_tokenizer_decode(t, ids, ni, &back, &bn), LM_OK, "%s", lm_last_error());
  cr_assert_eq(bn, n);
  cr_assert(memcmp(back, s, n) == 0);
  free(ids); free(back);
}

Test(byte, ids_are_bytes) {
  lm_tokenizer *t;
  cr_assert_eq(lm_tokenizer_load(&t, "byte"), LM_OK, "%s", lm_last_error());
  cr_assert_eq(lm_tokenizer_vocab_size(t), 257);
  cr_assert_eq(lm_tokenizer_eot(t), 256);
  const char s[] = "hi <|endoftext|>\xff\x00z";
  uint32_t *ids; size_t n;
  cr_assert_eq(lm_tokenizer_encode(t, s, sizeof s - 1, 0, &ids, &n), LM_OK);
  cr_assert_eq(n, sizeof s - 1);
  for (size_t i = 0; i < n; i++) cr_assert_eq(ids[i], (uint8_t)s[i]);
  free(ids);
  cr_assert_eq(lm_tokenizer_encode(t, s, sizeof s - 1, 1, &ids, &n), LM_OK);
  cr_assert_eq(n, 7);
  cr_assert_eq(ids[3], 256);
  cr_assert_eq(ids[4], 0xff);
  free(ids);
  roundtrip(t, s, sizeof s - 1);
  lm_tokenizer_free(t);
}

Test(byte, save_load) {
  lm_tokenizer *t, *u;
  cr_assert_eq(lm_tokenizer_load(&t, "byte"), LM_OK);
  char *d = tmpdir();
  cr_assert_eq(lm_tokenizer_save(t, d), LM_OK, "%s", lm_last_error());
  cr_assert_eq(lm_tokenizer_load(&u, d), LM_OK, "%s", lm_last_error());
  cr_assert_eq(lm_tokenizer_vocab_size(u), 257);
  cr_assert_eq(lm_tokenizer_eot(u), 256);
  uint32_t *ids; size_t n;
  cr_assert_eq(lm_tokenizer_encode(u, "\x01 A\x80", 4, 0, &ids, &n), LM_OK);
  cr_assert_eq(n, 4);
  cr_assert_eq(ids[0], 1); cr_assert_eq(ids[1], 32); cr_assert_eq(ids[2], 65); cr_assert_eq(ids[3], 0x80);
  free(ids);
  /* the vocab.json + merges.txt pair alone loads too */
  char cmd[256];
  snprintf(cmd, sizeof cmd, "rm %s/tokenizer.json", d);
  cr_assert_eq(system(cmd), 0);
  lm_tokenizer_free(u);
  cr_assert_eq(lm_tokenizer_load(&u, d), LM_OK, "%s", lm_last_error());
  cr_assert_eq(lm_tokenizer_vocab_size(u), 257);
  cr_assert_eq(lm_tokenizer_eot(u), 256);
  lm_tokenizer_free(u);
  snprintf(cmd, sizeof cmd, "rm -rf %s", d);
  system(cmd);
  free(d);
  lm_tokenizer_free(t);
}

/* ---------------------------------------------------------------- GPT-2 (ids from tiktoken) */
static void expect_ids(const lm_tokenizer *t, const char *s, int allow, const uint32_t *want, size_t nwant) {
  uint32_t *ids; size_t n;
  cr_assert_eq(lm_tokenizer_encode(t, s, strlen(s), allow, &ids, &n), LM_OK, "%s", lm_last_error());
  cr_assert_eq(n, nwant, "'%s': %zu ids, expected %zu", s, n, nwant);
  for (size_t i = 0; i < n; i++) cr_assert_eq(ids[i], want[i], "'%s': id %zu is %u, expected %u", s, i, ids[i], want[i]);
  free(ids);
}

Test(gpt2, spot_checks) {
  lm_tokenizer *t;
  cr_assert_eq(lm_tokenizer_load(&t, "gpt2"), LM_OK, "%s", lm_last_error());
  cr_assert_eq(lm_tokenizer_vocab_size(t), 50257);
  cr_assert_eq(lm_tokenizer_eot(t), 50256);
  expect_ids(t, "Hello world", 0, (uint32_t[]){15496, 995}, 2);
  expect_ids(t, "it's", 0, (uint32_t[]){270, 338}, 2);
  expect_ids(t, "<|endoftext|>", 1, (uint32_t[]){50256}, 1);
  expect_ids(t, "<|endoftext|>", 0, (uint32_t[]){27, 91, 437, 1659, 5239, 91, 29}, 7);
  expect_ids(t, "  \n\n   x 12345", 0, (uint32_t[]){220, 220, 628, 220, 220, 2124, 17031, 2231}, 8);
  roundtrip(t, "\xff\xfe abc \xc3", 8);
  lm_tokenizer_free(t);
}

/* ---------------------------------------------------------------- invalid UTF-8 splitting */
typedef struct { char buf[16][32]; int n; } pieces;
static lm_status collect(const uint8_t *p, size_t n, void *u) {
  pieces *ps = u;
  if (ps->n < 16 && n < 32) { memcpy(ps->buf[ps->n], p, n); ps->buf[ps->n][n] = 0; }
  ps->n++;
  return LM_OK;
}

Test(pretokenizer, invalid_bytes_read_as_symbols) {
  lm_tokenizer *t; lm_tok_encoder *e;
  cr_assert_eq(lm_tokenizer_load(&t, "byte"), LM_OK);
  cr_assert_eq(lm_tok_encoder_init(&e, t), LM_OK);
  pieces ps = {0};
  const char s[] = "abc\xff!! d\xe4\xb8 x";
  cr_assert_eq(lm_tok_encoder_pieces(e, s, sizeof s - 1, collect, &ps), LM_OK);
  cr_assert_eq(ps.n, 5);
  cr_assert_str_eq(ps.buf[0], "abc");
  cr_assert_str_eq(ps.buf[1], "\xff!!");
  cr_assert_str_eq(ps.buf[2], " d");
  cr_assert_str_eq(ps.buf[3], "\xe4\xb8");
  cr_assert_str_eq(ps.buf[4], " x");
  lm_tok_encoder_free(e);
  lm_tokenizer_free(t);
}

/* ---------------------------------------------------------------- training, parallel encode */
static char *write_corpus(const char *dir, size_t lines) {
  char *p = lm_path_join(dir, "corpus.txt");
  FILE *f = fopen(p, "w");
  const char *w[] = {"the", "cat", "sat", "on", "mat", "and", "dog", "ran", "far", "away", "it's", "über", "中文", "42",
                     "zebra", "quixotic", "jumping", "wombat", "xylophone", "vortex"};
  uint64_t x = 1;
  for (size_t i = 0; i < lines; i++) {
    int k = 3 + (int)(i % 7);
    for (int j = 0; j < k; j++) { x = x * 6364136223846793005ull + 1442695040888963407ull; fprintf(f, "%s%s", j ? " " : "", w[(x >> 33) % 20]); }
    fputs(i % 5 ? ".\n" : "!\n\n", f);
  }
  fclose(f);
  return p;
}

Test(train, compresses_and_round_trips) {
  char *d = tmpdir(), *p = write_corpus(d, 4000);
  const char *special[] = {"<|endoftext|>", "[SEP]"};
  lm_bpe_train_opts o = {.vocab_size = 320, .special = special, .n_special = 2, .min_frequency = 2};
  lm_tokenizer *t, *u;
  const char *files[] = {p};
  cr_assert_eq(lm_tokenizer_train(&t, files, 1, &o), LM_OK, "%s", lm_last_error());
  int64_t V = lm_tokenizer_vocab_size(t);   /* fewer merges than asked if the corpus runs out of pairs */
  cr_assert(V > 290 && V <= 320, "vocab %lld", (long long)V);
  cr_assert_eq(lm_tokenizer_eot(t), V - 2);
  char *text; size_t len;
  cr_assert_eq(lm_read_file(p, &text, &len), LM_OK);
  uint32_t *ids, *ids2; size_t n, n2;
  cr_assert_eq(lm_tokenizer_encode(t, text, len, 0, &ids, &n), LM_OK);
  cr_assert_lt(n, len / 2, "%zu tokens for %zu bytes", n, len);
  for (size_t i = 0; i < n; i++) cr_assert_lt(ids[i], (uint32_t)V - 2, "ordinary text never gives a special id");
  roundtrip(t, text, len);
  /* saved and reloaded: same ids */
  cr_assert_eq(lm_tokenizer_save(t, d), LM_OK, "%s", lm_last_error());
  cr_assert_eq(lm_tokenizer_load(&u, d), LM_OK, "%s", lm_last_error());
  cr_assert_eq(lm_tokenizer_encode(u, text, len, 0, &ids2, &n2), LM_OK);
  cr_assert_eq(n, n2);
  cr_assert(memcmp(ids, ids2, n * sizeof *ids) == 0);
  free(ids2);
  /* parallel encode == serial encode */
  cr_assert_eq(lm_tokenize_buffer(u, text, len, 2, 0, &ids2, &n2), LM_OK);
  cr_assert_eq(n, n2);
  cr_assert(memcmp(ids, ids2, n * sizeof *ids) == 0);
  free(ids2);
  /* files: one document each, EOT after each */
  uint64_t n3; const char *two[] = {p, p};
  cr_assert_eq(lm_tokenize_files(u, two, 2, 2, &ids2, &n3), LM_OK);
  cr_assert_eq(n3, 2 * n + 2);
  cr_assert_eq(ids2[n], V - 2); cr_assert_eq(ids2[2 * n + 1], V - 2);
  cr_assert(memcmp(ids2 + n + 1, ids, n * sizeof *ids) == 0);
  free(ids2);
  free(ids); free(text);
  lm_tokenizer_free(t); lm_tokenizer_free(u);
  char cmd[256]; snprintf(cmd, sizeof cmd, "rm -rf %s", d); system(cmd);
  free(p); free(d);
}

Test(parallel, big_buffer_matches_serial) {
  lm_tokenizer *t;
  cr_assert_eq(lm_tokenizer_load(&t, "gpt2"), LM_OK, "%s", lm_last_error());
  size_t len = 600000, o = 0;
  char *text = malloc(len + 1);
  const char *frag[] = {"Hello there.\n", "  indented\n", "x\n\ny\n", "caf\xc3\xa9 \xff\n", "end\n \n", "'s 're\n", "12 34\n"};
  for (uint64_t x = 7; o < len;) {
    x = x * 6364136223846793005ull + 1;
    const char *f = frag[(x >> 33) % 7];
    size_t k = strlen(f);
    if (o + k > len) k = len - o;
    memcpy(text + o, f, k); o += k;
  }
  uint32_t *a, *b; size_t na, nb;
  cr_assert_eq(lm_tokenizer_encode(t, text, len, 0, &a, &na), LM_OK);
  cr_assert_eq(lm_tokenize_buffer(t, text, len, 4, 0, &b, &nb), LM_OK);
  cr_assert_eq(na, nb);
  cr_assert(memcmp(a, b, na * sizeof *a) == 0);
  free(a); free(b); free(text);
  lm_tokenizer_free(t);
}

/* ---------------------------------------------------------------- bad input */
static void expect_json_error(const char *json, const char *needle) {
  lm_tokenizer *t = NULL;
  lm_status st = lm_tokenizer_from_json(&t, json, strlen(json), "T.json");
  cr_assert_neq(st, LM_OK, "accepted: %s", json);
  cr_assert_null(t);
  cr_assert(strstr(lm_last_error(), needle), "error '%s' lacks '%s'", lm_last_error(), needle);
}

Test(errors, tokenizer_json) {
  expect_json_error("{\"model\": {", "T.json: invalid JSON at line 1");
  expect_json_error("[]", "T.json: missing the \"model\" object");
  expect_json_error("{\"model\": {\"vocab\": {\"a\": -1}}}", "T.json: model.vocab[\"a\"]: the id must be a non-negative integer");
  expect_json_error("{\"model\": {\"vocab\": {\"a\": 4294967296}}}", "over the limit of 2^31");
  expect_json_error("{\"model\": {\"vocab\": {\"a\": 5}}}", "T.json: model.vocab: ids are not contiguous");
  expect_json_error("{\"model\": {\"vocab\": {\"a\": 0}}}", "T.json: no token for byte 0x00");
  expect_json_error("{\"model\": {\"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"a c\"]}}", "T.json: model.merges[0]: unknown symbol \"c\"");
  expect_json_error("{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": [7]}}", "T.json: model.merges[0]: expected");
  expect_json_error("{\"model\": {\"vocab\": {\"a\": 0}}, \"added_tokens\": [{\"id\": \"x\"}]}", "T.json: added_tokens[0]");
  expect_json_error("{\"model\": {\"vocab\": {\"a b\": 0}}}", "not a byte-level symbol");
}

Test(errors, merges_and_decode) {
  lm_tokenizer *t = NULL, *b;
  const char *vocab = "{\"a\": 0}";
  cr_assert_neq(lm_tokenizer_from_vocab_merges(&t, vocab, strlen(vocab), "v.json", "#version: 0.2\na zz\n", 19, "m.txt", 0), LM_OK);
  cr_assert(strstr(lm_last_error(), "m.txt:2: unknown symbol \"a\"") || strstr(lm_last_error(), "m.txt:2: unknown symbol \"zz\""),
            "%s", lm_last_error());
  cr_assert_eq(lm_tokenizer_load(&b, "byte"), LM_OK);
  char *s; size_t n;
  uint32_t bad[] = {1, 257};
  cr_assert_eq(lm_tokenizer_decode(b, bad, 2, &s, &n), LM_ERR_RANGE);
  cr_assert(strstr(lm_last_error(), "token id 257 at position 1"));
  lm_tokenizer_free(b);
  cr_assert_neq(lm_tokenizer_load(&b, "/nonexistent/dir"), LM_OK);
  cr_assert(strstr(lm_last_error(), "/nonexistent/dir"));
}

Test(errors, truncated_shard) {
  char *d = tmpdir(), *p = lm_path_join(d, "x.tok");
  uint32_t ids[100];
  for (int i = 0; i < 100; i++) ids[i] = (uint32_t)i;
  cr_assert_eq(lm_shard_write(p, ids, 100, 257, 256), LM_OK);
  cr_assert_eq(truncate(p, 32 + 4 * 50), 0);
  lm_shard s;
  cr_assert_neq(lm_shard_open(&s, p, 1), LM_OK);
  cr_assert(strstr(lm_last_error(), p), "%s", lm_last_error());
  unlink(p); rmdir(d);
  free(p); free(d);
}
