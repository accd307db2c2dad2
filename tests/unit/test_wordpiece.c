/* test_wordpiece.c — unit tests of BERT's WordPiece tokenizer (src/tokenizer/wordpiece.c):
 * hand-checked encodings (lower-casing and accents, punctuation, CJK, [UNK] for
 * unknown and over-long words, Greek final sigma, text cleaning), special tokens
 * allowed or not, [SEP] as end-of-text, token lookups, decoding, settings from
 * tokenizer_config.json, save/load round trips through vocab.txt and
 * tokenizer.json, parallel == serial, and errors on malformed files that name
 * the file and line. The comparison with BERT's reference algorithm on
 * thousands of generated strings is tests/reference/test_wordpiece.py. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "lmkit.h"
#include "tokenizer/tokenizer.h"

static const char *VOCAB[] = {
  "[PAD]", "[unused0]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",                            /* 0-5 */
  "hello", ",", "world", "!", "un", "##aff", "##able", "中", "文", "a", "##a",          /* 6-16 */
  "[", "]", "cl", "##s", "οδος", "σ", "ς", "##b", "b", "x", "Hello", "é", ".", "##ing", /* 17-30 */
  "play", "'", "cafe", "café",                                                          /* 31-34 */
};
#define NV (sizeof VOCAB / sizeof *VOCAB)

static char *tmpdir(void) {
  char *d = strdup("/tmp/lmkit_wp_XXXXXX");
  cr_assert(mkdtemp(d));
  return d;
}

static void write_file(const char *dir, const char *name, const char *text, size_t len) {
  char *p = lm_path_join(dir, name);
  FILE *f = fopen(p, "wb");
  cr_assert(f, "cannot write %s", p);
  fwrite(text, 1, len, f);
  fclose(f);
  free(p);
}

static void write_vocab(const char *dir) {
  char buf[4096]; size_t o = 0;
  for (size_t i = 0; i < NV; i++) o += (size_t)snprintf(buf + o, sizeof buf - o, "%s\n", VOCAB[i]);
  write_file(dir, "vocab.txt", buf, o);
}

/* A BERT directory: vocab.txt + tokenizer_config.json (config may be NULL). */
static lm_tokenizer *bert(const char *config) {
  char *d = tmpdir();
  write_vocab(d);
  if (config) write_file(d, "tokenizer_config.json", config, strlen(config));
  lm_tokenizer *t;
  cr_assert_eq(lm_tokenizer_load(&t, d), LM_OK, "%s", lm_last_error());
  free(d);
  return t;
}

/* Encodes and compares with the expected ids (n of them). */
static void expect(const lm_tokenizer *t, const char *s, size_t len, int allow, const uint32_t *want, size_t n) {
  uint32_t *ids; size_t ni;
  cr_assert_eq(lm_tokenizer_encode(t, s, len, allow, &ids, &ni), LM_OK, "%s", lm_last_error());
  cr_assert_eq(ni, n, "\"%s\": %zu ids, expected %zu", s, ni, n);
  for (size_t i = 0; i < n; i++) cr_assert_eq(ids[i], want[i], "\"%s\": id %zu is %u, expected %u", s, i, ids[i], want[i]);
  free(ids);
}
#define EXPECT(t, s, allow, ...) do { \
    const uint32_t w_[] = {__VA_ARGS__}; expect(t, s, strlen(s), allow, w_, sizeof w_ / sizeof *w_); } while (0)

Test(wordpiece, basic_uncased) {
  lm_tokenizer *t = bert(NULL);
  cr_assert_eq(lm_tokenizer_vocab_size(t), (int64_t)NV);
  EXPECT(t, "Héllo, WORLD!", 0, 6, 7, 8, 9);
  EXPECT(t, "unaffable", 0, 10, 11, 12);
  EXPECT(t, "  UNAFFABLE\t\n", 0, 10, 11, 12);
  EXPECT(t, "He\xcc\x81llo", 0, 6);                  /* decomposed accent */
  EXPECT(t, "caf\xc3\xa9", 0, 33);                    /* uncased: accents stripped */
  EXPECT(t, "unaffablex zzz", 0, 2, 2);              /* no match at some position: the whole word is [UNK] */
  EXPECT(t, "中文hello文", 0, 13, 14, 6, 14);         /* CJK characters are words of their own */
  EXPECT(t, "ΟΔΟΣ", 0, 21);                          /* Python's final sigma */
  EXPECT(t, "Σ ΑΣ. xΣb", 0, 22, 2, 29, 2);
  EXPECT(t, "play'ing", 0, 31, 32, 2);               /* "ing" alone is not "##ing" */
  {
    static const char s[] = "hel\x00lo\xef\xbf\xbd wor\x01ld\xe2\x80\x8b";   /* NUL, U+FFFD, controls, ZWSP removed */
    const uint32_t w[] = {6, 8};
    expect(t, s, sizeof s - 1, 0, w, 2);
  }
  EXPECT(t, "hello\xe3\x80\x80world\xc2\xa0!", 0, 6, 8, 9);            /* U+3000, U+00A0 separate */
  EXPECT(t, "hel\xfflo", 0, 6);                      /* an invalid byte reads as U+FFFD: removed */
  uint32_t *ids; size_t n;
  cr_assert_eq(lm_tokenizer_encode(t, "", 0, 0, &ids, &n), LM_OK);
  cr_assert_eq(n, 0);
  free(ids);
  lm_tokenizer_free(t);
}

Test(wordpiece, long_words) {
  lm_tokenizer *t = bert(NULL);
  char w[200];
  memset(w, 'a', 101); w[101] = 0;
  uint32_t *ids; size_t n;
  cr_assert_eq(lm_tokenizer_encode(t, w, 100, 0, &ids, &n), LM_OK);
  cr_assert_eq(n, 100);   /* a ##a ##a ... */
  cr_assert_eq(ids[0], 15); cr_assert_eq(ids[99], 16);
  free(ids);
  EXPECT(t, w, 0, 2);     /* 101 characters: [UNK] */
  /* characters, not bytes: 100 x "á" (2 bytes each, 1 character after stripping) is fine */
  char u[300]; size_t o = 0;
  for (int i = 0; i < 100; i++) { u[o++] = (char)0xC3; u[o++] = (char)0xA1; }
  cr_assert_eq(lm_tokenizer_encode(t, u, o, 0, &ids, &n), LM_OK);
  cr_assert_eq(n, 100);
  free(ids);
  lm_tokenizer_free(t);
}

Test(wordpiece, special_tokens) {
  lm_tokenizer *t = bert(NULL);
  EXPECT(t, "[CLS] hello[SEP]world [MASK][PAD]", 1, 3, 6, 4, 8, 5, 0);
  EXPECT(t, "[CLS]", 0, 17, 19, 20, 18);         /* plain text: [ cl ##s ] */
  EXPECT(t, "[cls]", 1, 17, 19, 20, 18);         /* matched exactly, never lower-cased */
  EXPECT(t, "[UNK]", 1, 2);
  EXPECT(t, "[unused0]", 1, 17, 2, 18);          /* not a special token */
  cr_assert_eq(lm_tokenizer_eot(t), 4);
  cr_assert_eq(lm_tokenizer_token_id(t, "[CLS]"), 3);
  cr_assert_eq(lm_tokenizer_token_id(t, "[SEP]"), 4);
  cr_assert_eq(lm_tokenizer_token_id(t, "[MASK]"), 5);
  cr_assert_eq(lm_tokenizer_token_id(t, "[PAD]"), 0);
  cr_assert_eq(lm_tokenizer_token_id(t, "[UNK]"), 2);
  cr_assert_eq(lm_tokenizer_token_id(t, "hello"), 6);
  cr_assert_eq(lm_tokenizer_token_id(t, "[FOO]"), -1);
  cr_assert(t->is_special[3] && t->is_special[2] && !t->is_special[1] && !t->is_special[6]);
  lm_tokenizer_free(t);
}

Test(wordpiece, decode) {
  lm_tokenizer *t = bert(NULL);
  const uint32_t ids[] = {3, 6, 7, 8, 9, 10, 11, 12, 4};
  char *s; size_t n;
  cr_assert_eq(lm_tokenizer_decode(t, ids, 9, &s, &n), LM_OK);
  cr_assert_str_eq(s, "[CLS] hello , world ! unaffable [SEP]");
  cr_assert_eq(n, strlen(s));
  free(s);
  const uint32_t bad[] = {6, 9999};
  cr_assert_eq(lm_tokenizer_decode(t, bad, 2, &s, &n), LM_ERR_RANGE);
  cr_assert(strstr(lm_last_error(), "9999"));
  lm_tokenizer_free(t);
}

Test(wordpiece, config_settings) {
  lm_tokenizer *t = bert("{\"do_lower_case\": false}");
  EXPECT(t, "Hello hello HELLO", 0, 27, 6, 2);
  EXPECT(t, "caf\xc3\xa9", 0, 34);                          /* cased: accents kept */
  lm_tokenizer_free(t);
  t = bert("{\"do_lower_case\": true, \"strip_accents\": false}");
  EXPECT(t, "CAF\xc3\x89", 0, 34);                          /* lower-cased, accent kept */
  lm_tokenizer_free(t);
  t = bert("{\"tokenize_chinese_chars\": false}");
  EXPECT(t, "中文", 0, 2);                                    /* one word, not in the vocabulary */
  lm_tokenizer_free(t);
}

static void same_ids(const lm_tokenizer *a, const lm_tokenizer *b, const char *s) {
  uint32_t *x, *y; size_t nx, ny;
  cr_assert_eq(lm_tokenizer_encode(a, s, strlen(s), 1, &x, &nx), LM_OK);
  cr_assert_eq(lm_tokenizer_encode(b, s, strlen(s), 1, &y, &ny), LM_OK);
  cr_assert_eq(nx, ny, "%s", s);
  cr_assert(!memcmp(x, y, nx * sizeof *x), "%s", s);
  free(x); free(y);
}

Test(wordpiece, save_load) {
  lm_tokenizer *t = bert("{\"do_lower_case\": true, \"strip_accents\": false}"), *u, *v;
  char *d = tmpdir();
  cr_assert_eq(lm_tokenizer_save(t, d), LM_OK, "%s", lm_last_error());
  const char *files[] = {"vocab.txt", "tokenizer.json", "tokenizer_config.json"};
  for (int i = 0; i < 3; i++) { char *p = lm_path_join(d, files[i]); cr_assert(lm_file_exists(p), "%s", p); free(p); }
  char *p = lm_path_join(d, "tokenizer_config.json"), *txt; size_t n;
  cr_assert_eq(lm_read_file(p, &txt, &n), LM_OK);
  cr_assert(strstr(txt, "\"BertTokenizer\"") && strstr(txt, "\"do_lower_case\":\ttrue"), "%s", txt);
  free(txt); free(p);
  cr_assert_eq(lm_tokenizer_load(&u, d), LM_OK, "%s", lm_last_error());
  cr_assert_eq(lm_tokenizer_vocab_size(u), (int64_t)NV);
  cr_assert_eq(lm_tokenizer_eot(u), 4);
  /* no final sigma here: vocab.txt follows Python's BertTokenizer (final-sigma rule), a tokenizer.json
   * follows HF tokenizers' BertNormalizer (lower-cases character by character) */
  const char *texts[] = {"Héllo, WORLD! unaffable", "CAFÉ café [CLS] x[SEP]", "中文 aaaa"};
  for (int i = 0; i < 3; i++) same_ids(t, u, texts[i]);
  /* tokenizer.json alone (the normalizer carries the settings) */
  char cmd[512];
  snprintf(cmd, sizeof cmd, "rm %s/vocab.txt %s/tokenizer_config.json", d, d);
  cr_assert_eq(system(cmd), 0);
  cr_assert_eq(lm_tokenizer_load(&v, d), LM_OK, "%s", lm_last_error());
  for (int i = 0; i < 3; i++) same_ids(t, v, texts[i]);
  cr_assert_eq(lm_tokenizer_token_id(v, "[MASK]"), 5);
  cr_assert_eq(lm_tokenizer_eot(v), 4);
  lm_tokenizer_free(t); lm_tokenizer_free(u); lm_tokenizer_free(v);
  snprintf(cmd, sizeof cmd, "rm -rf %s", d);
  cr_assert_eq(system(cmd), 0);
  free(d);
}

Test(wordpiece, parallel_equals_serial) {
  lm_tokenizer *t = bert(NULL);
  size_t cap = 1 << 18, n = 0;
  char *text = malloc(cap);
  const char *parts[] = {"Héllo, WORLD! ", "unaffable\n", "中文hello文 ", "[CLS]\n", "zzz ΟΔΟΣ\n"};
  for (int i = 0; n + 64 < cap; i++) { size_t k = strlen(parts[i % 5]); memcpy(text + n, parts[i % 5], k); n += k; }
  uint32_t *a, *b; size_t na, nb;
  cr_assert_eq(lm_tokenizer_encode(t, text, n, 1, &a, &na), LM_OK);
  cr_assert_eq(lm_tokenize_buffer(t, text, n, 2, 1, &b, &nb), LM_OK, "%s", lm_last_error());
  cr_assert_eq(na, nb);
  cr_assert(!memcmp(a, b, na * sizeof *a));
  free(a); free(b); free(text);
  lm_tokenizer_free(t);
}

Test(wordpiece, documents_end_with_sep) {
  lm_tokenizer *t = bert(NULL);
  char *d = tmpdir();
  write_file(d, "a.txt", "hello", 5);
  write_file(d, "b.txt", "world!", 6);
  char *fa = lm_path_join(d, "a.txt"), *fb = lm_path_join(d, "b.txt");
  const char *files[] = {fa, fb};
  uint32_t *ids; uint64_t n;
  cr_assert_eq(lm_tokenize_files(t, files, 2, 1, &ids, &n), LM_OK, "%s", lm_last_error());
  const uint32_t want[] = {6, 4, 8, 9, 4};
  cr_assert_eq(n, 5);
  for (int i = 0; i < 5; i++) cr_assert_eq(ids[i], want[i]);
  free(ids); free(fa); free(fb); free(d);
  lm_tokenizer_free(t);
}

/* Loading fails with a message containing `what`. */
static void load_fails(const char *dir, lm_status st, const char *what) {
  lm_tokenizer *t = NULL;
  cr_assert_eq(lm_tokenizer_load(&t, dir), st, "expected an error containing \"%s\", got: %s", what, lm_last_error());
  cr_assert_null(t);
  cr_assert(strstr(lm_last_error(), what), "\"%s\" not in: %s", what, lm_last_error());
}

Test(wordpiece, errors) {
  char *d = tmpdir();
  const char bad_utf8[] = "[PAD]\n[UNK]\nab\xff\n";
  write_file(d, "vocab.txt", bad_utf8, sizeof bad_utf8 - 1);
  load_fails(d, LM_ERR_FORMAT, "vocab.txt:3: the token is not valid UTF-8");
  write_file(d, "vocab.txt", "[PAD]\nhello\n", 12);
  load_fails(d, LM_ERR_FORMAT, "vocab.txt: the unknown token \"[UNK]\" is not in the vocabulary");
  write_file(d, "vocab.txt", "[PAD]\n[UNK]\nhel\0lo\n", 19);
  load_fails(d, LM_ERR_FORMAT, "vocab.txt:3: a NUL byte");
  write_file(d, "vocab.txt", "", 0);
  load_fails(d, LM_ERR_FORMAT, "the vocabulary is empty");
  write_vocab(d);
  const char *cfg = "{\n  \"do_lower_case\": \"yes\"\n}";
  write_file(d, "tokenizer_config.json", cfg, strlen(cfg));
  load_fails(d, LM_ERR_FORMAT, "tokenizer_config.json: \"do_lower_case\" must be true or false");
  cfg = "{\n  \"do_lower_case\": true,,\n}";
  write_file(d, "tokenizer_config.json", cfg, strlen(cfg));
  load_fails(d, LM_ERR_FORMAT, "tokenizer_config.json: invalid JSON at line 2");
  char cmd[512];
  snprintf(cmd, sizeof cmd, "rm %s/tokenizer_config.json", d);
  cr_assert_eq(system(cmd), 0);
  /* tokenizer.json (it wins over vocab.txt) */
  const char *tj = "{\"model\": {\"type\": \"WordPiece\", \"unk_token\": \"[UNK]\",\n \"vocab\": {\"[UNK]\": 0, \"a\": \"1\"}}}";
  write_file(d, "tokenizer.json", tj, strlen(tj));
  load_fails(d, LM_ERR_FORMAT, "tokenizer.json: model.vocab[\"a\"]: the id must be an integer");
  tj = "{\"model\": {\"type\": \"WordPiece\",\n \"vocab\": {\"[UNK]\": 0, \"a\": 1,}}}";
  write_file(d, "tokenizer.json", tj, strlen(tj));
  load_fails(d, LM_ERR_FORMAT, "tokenizer.json: invalid JSON at line 2");
  tj = "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"[UNK]\": 0, \"a\": 2}}}";
  write_file(d, "tokenizer.json", tj, strlen(tj));
  load_fails(d, LM_ERR_FORMAT, "model.vocab[\"a\"]: id 2 is past the end");
  tj = "{\"model\": {\"type\": \"WordPiece\", \"unk_token\": \"<unk>\", \"vocab\": {\"[UNK]\": 0, \"a\": 1}}}";
  write_file(d, "tokenizer.json", tj, strlen(tj));
  load_fails(d, LM_ERR_FORMAT, "model.unk_token \"<unk>\" is not in model.vocab");
  tj = "{\"normalizer\": {\"type\": \"NFX\"}, \"model\": {\"type\": \"WordPiece\", \"vocab\": {\"[UNK]\": 0}}}";
  write_file(d, "tokenizer.json", tj, strlen(tj));
  load_fails(d, LM_ERR_UNSUPPORTED, "normalizer: normalizer type \"NFX\" is not supported");
  tj = "{\"added_tokens\": [{\"id\": 0, \"content\": \"[CLS]\"}], \"model\": {\"type\": \"WordPiece\", \"vocab\": {\"[UNK]\": 0}}}";
  write_file(d, "tokenizer.json", tj, strlen(tj));
  load_fails(d, LM_ERR_FORMAT, "added_tokens[0]: \"[CLS]\" differs from model.vocab's token 0");
  tj = "{\"model\": {\"type\": \"WordLevel\", \"vocab\": []}}";
  write_file(d, "tokenizer.json", tj, strlen(tj));
  load_fails(d, LM_ERR_UNSUPPORTED, "model.type \"WordLevel\" is not supported");
  snprintf(cmd, sizeof cmd, "rm -rf %s", d);
  cr_assert_eq(system(cmd), 0);
  free(d);
}

Test(wordpiece, vocab_txt_lines) {
  /* CRLF and lone CR end lines (Python's universal newlines); an empty line is an id no text reaches;
   * a duplicated token maps to its last line; added_tokens_decoder appends and marks specials */
  char *d = tmpdir();
  const char v[] = "[PAD]\r\n[UNK]\rhello\n\nworld\nhello\n[SEP]";
  write_file(d, "vocab.txt", v, sizeof v - 1);
  const char *cfg = "{\"added_tokens_decoder\": {\"7\": {\"content\": \"<extra>\", \"special\": true},"
                    " \"2\": {\"content\": \"hello\", \"special\": true}}}";
  write_file(d, "tokenizer_config.json", cfg, strlen(cfg));
  lm_tokenizer *t;
  cr_assert_eq(lm_tokenizer_load(&t, d), LM_OK, "%s", lm_last_error());
  cr_assert_eq(lm_tokenizer_vocab_size(t), 8);
  EXPECT(t, "hello world <extra>", 0, 5, 4, 1, 1, 1);   /* hello (line 6), world, then < extra > unknown */
  EXPECT(t, "hello world <extra>", 1, 2, 4, 7);         /* added tokens matched whole */
  EXPECT(t, "<extra>hello", 1, 7, 2);
  cr_assert(t->is_special[2] && t->is_special[7]);
  cr_assert_eq(lm_tokenizer_eot(t), 6);
  lm_tokenizer_free(t);
  char cmd[512];
  snprintf(cmd, sizeof cmd, "rm -rf %s", d);
  cr_assert_eq(system(cmd), 0);
  free(d);
}
