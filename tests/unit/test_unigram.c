/* test_unigram.c — unit tests of the Unigram model (src/tokenizer/unigram.c) and
 * the precompiled charsmap (src/tokenizer/precompiled.c):
 *  - Viterbi on a tiny hand-made vocabulary, every result worked out by hand:
 *    best segmentation, ties (the first proposal at an end stays), unknown
 *    characters (score min - 10), fused unknown runs, byte_fallback (all bytes
 *    or unk), invalid UTF-8, a missing unk_id;
 *  - tokenizer.json: round trip (also through save and load), errors naming the file and key;
 *  - a hand-built Darts-clone trie ("a" -> "A", "ab" -> "AB!"): HF's grapheme
 *    rule and SentencePiece's longest-match rule, invalid bytes, and corrupted
 *    blobs (short, odd trie size, trie past the end, invalid UTF-8 strings,
 *    values and walks out of range) as clean errors.
 * The comparisons with sentencepiece and HF tokenizers are
 * tests/reference/test_unigram.py. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "lmkit.h"
#include "tokenizer/precompiled.h"
#include "tokenizer/tokenizer.h"

/* ------------------------------------------------------------ Unigram */
#define VOCAB \
  "[[\"<unk>\", 0], [\"</s>\", 0], [\"a\", -1], [\"b\", -2], [\"ab\", -2.5], [\"abc\", -10], [\"c\", -3]," \
  " [\"<0x78>\", 0], [\"bc\", -4], [\"é\", -1], [\"<0xFF>\", 0]]"

static lm_tokenizer *load(const char *json) {
  lm_tokenizer *t = NULL;
  lm_status st = lm_tokenizer_from_json(&t, json, strlen(json), "test.json");
  cr_assert_eq(st, LM_OK, "%s", lm_last_error());
  return t;
}

static lm_tokenizer *model(int byte_fallback, const char *unk) {
  char json[2048];
  snprintf(json, sizeof json,
           "{\"added_tokens\": [{\"id\": 1, \"content\": \"</s>\", \"special\": true}],"
           " \"model\": {\"type\": \"Unigram\", \"unk_id\": %s, \"vocab\": " VOCAB ", \"byte_fallback\": %s}}",
           unk, byte_fallback ? "true" : "false");
  return load(json);
}

/* The model's own encode (what the tokenizer.json pipeline calls for each piece). */
static void expect(const lm_tokenizer *t, const char *text, size_t len, const uint32_t *want, size_t nwant) {
  lm_tok_encoder *e;
  cr_assert_eq(lm_tok_encoder_init(&e, t), LM_OK, "%s", lm_last_error());
  uint32_t *ids = NULL; size_t n = 0, cap = 0;
  lm_status st = t->ops->encode(e, text, len, &ids, &n, &cap);
  cr_assert_eq(st, LM_OK, "%s", lm_last_error());
  cr_assert_eq(n, nwant, "\"%s\": %zu ids, want %zu", text, n, nwant);
  for (size_t i = 0; i < n; i++) cr_assert_eq(ids[i], want[i], "\"%s\": id %zu is %u, want %u", text, i, ids[i], want[i]);
  free(ids);
  lm_tok_encoder_free(e);
}
#define EXPECT(t, s, ...) do { uint32_t w_[] = {__VA_ARGS__}; expect(t, s, strlen(s), w_, sizeof w_ / sizeof *w_); } while (0)

Test(unigram, viterbi) {
  lm_tokenizer *t = model(0, "0");
  EXPECT(t, "ab", 4);             /* ab -2.5 beats a + b = -3 */
  EXPECT(t, "abc", 2, 8);         /* a + bc = -5 beats ab + c = -5.5, a + b + c = -6, abc = -10 */
  EXPECT(t, "cab", 6, 4);
  EXPECT(t, "é", 9);
  EXPECT(t, "x", 0);              /* unknown: min -10, minus 10 */
  EXPECT(t, "xyz", 0);            /* a run of unknowns is one <unk> */
  EXPECT(t, "axxb", 2, 0, 3);
  EXPECT(t, "e\xcc\x81", 0);      /* e + U+0301: neither is a piece */
  EXPECT(t, "a\xff" "b", 2, 0, 3);   /* an invalid byte is an unknown character */
  EXPECT(t, "</s>", 1);           /* every vocabulary entry is a piece, as in HF (whose added tokens are cut out before) */
  char *txt; size_t len;
  uint32_t d[] = {2, 8, 9, 1};
  cr_assert_eq(t->ops->decode(t, d, 4, &txt, &len), LM_OK);   /* the model's part: the pieces joined */
  cr_assert_str_eq(txt, "abcé</s>");
  free(txt);
  lm_tokenizer_free(t);
}

Test(unigram, byte_fallback) {
  lm_tokenizer *t = model(1, "0");
  EXPECT(t, "x", 7);              /* <0x78> */
  EXPECT(t, "axa", 2, 7, 2);
  EXPECT(t, "xx", 7, 7);          /* the fused run, byte by byte */
  EXPECT(t, "xy", 0);             /* <0x79> is missing: the whole run is <unk> (HF: all bytes or none) */
  EXPECT(t, "\xff", 10);          /* an invalid byte that has its byte piece */
  EXPECT(t, "<0x78>", 7);         /* every vocabulary entry is a piece, byte pieces too (HF) */
  lm_tokenizer_free(t);
}

Test(unigram, ties_and_no_unk) {
  const char *j = "{\"model\": {\"type\": \"Unigram\", \"unk_id\": null, \"vocab\": [[\"a\", -1], [\"b\", -2], [\"ab\", -3]]}}";
  lm_tokenizer *t = load(j);
  EXPECT(t, "ab", 2);             /* a + b = -3 = ab: "ab" ends there first and a tie does not replace it */
  EXPECT(t, "ba", 1, 0);
  lm_tok_encoder *e;
  cr_assert_eq(lm_tok_encoder_init(&e, t), LM_OK);
  uint32_t *ids = NULL; size_t n = 0, cap = 0;
  cr_assert_neq(t->ops->encode(e, "abz", 3, &ids, &n, &cap), LM_OK);
  cr_assert(strstr(lm_last_error(), "no unk_id"), "%s", lm_last_error());
  free(ids);
  lm_tok_encoder_free(e);
  lm_tokenizer_free(t);
}

Test(unigram, json_round_trip) {
  lm_tokenizer *t = model(1, "0");
  char *a; size_t an;
  cr_assert_eq(lm_tokenizer_to_json(t, &a, &an), LM_OK);
  cr_assert(strstr(a, "\"type\":\"Unigram\""));
  cr_assert(strstr(a, "\"byte_fallback\":true"));
  lm_tokenizer *u = load(a);
  char *b; size_t bn;
  cr_assert_eq(lm_tokenizer_to_json(u, &b, &bn), LM_OK);
  cr_assert_str_eq(a, b);
  EXPECT(u, "abcxa", 2, 8, 7, 2);
  cr_assert_eq(lm_tokenizer_token_id(u, "</s>"), 1);
  /* save writes DIR/tokenizer.json, which loads back the same */
  char dir[] = "/tmp/lmkit_unigram_XXXXXX";
  cr_assert(mkdtemp(dir));
  cr_assert_eq(lm_tokenizer_save(u, dir), LM_OK, "%s", lm_last_error());
  lm_tokenizer *v;
  cr_assert_eq(lm_tokenizer_load(&v, dir), LM_OK, "%s", lm_last_error());
  char *c; size_t cn;
  cr_assert_eq(lm_tokenizer_to_json(v, &c, &cn), LM_OK);
  cr_assert_str_eq(a, c);
  char *p = lm_path_join(dir, "tokenizer.json");
  remove(p); remove(dir);
  free(p); free(a); free(b); free(c);
  lm_tokenizer_free(t); lm_tokenizer_free(u); lm_tokenizer_free(v);
}

static void refused(const char *json, const char *needle) {
  lm_tokenizer *t = NULL;
  cr_assert_neq(lm_tokenizer_from_json(&t, json, strlen(json), "bad.json"), LM_OK, "accepted: %s", json);
  cr_assert(strstr(lm_last_error(), "bad.json"), "%s", lm_last_error());
  cr_assert(strstr(lm_last_error(), needle), "\"%s\" not in: %s", needle, lm_last_error());
  cr_assert_null(t);
}

Test(unigram, errors) {
  refused("{\"model\": {\"type\": \"Unigram\", \"vocab\": {\"a\": 0}}}", "model.vocab");
  refused("{\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"a\"]]}}", "model.vocab[0]");
  refused("{\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"a\", -1], [2, -1]]}}", "model.vocab[1]");
  refused("{\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"a\", -1], [\"b\", \"x\"]]}}", "model.vocab[1]");
  refused("{\"model\": {\"type\": \"Unigram\", \"unk_id\": 5, \"vocab\": [[\"a\", -1]]}}", "unk_id");
  refused("{\"model\": {\"type\": \"Unigram\", \"unk_id\": -1, \"vocab\": [[\"a\", -1]]}}", "unk_id");
  refused("{\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"a\", -1]], \"byte_fallback\": 1}}", "byte_fallback");
  refused("{\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"a\", -1]], \"alpha\": 0.1}}", "model.alpha");
  refused("{\"added_tokens\": [{\"id\": 0, \"content\": \"b\"}], \"model\": {\"type\": \"Unigram\", \"vocab\": [[\"a\", -1]]}}",
          "differs");
  refused("{\"added_tokens\": [{\"id\": 3, \"content\": \"b\"}], \"model\": {\"type\": \"Unigram\", \"vocab\": [[\"a\", -1]]}}",
          "missing");
}

/* ------------------------------------------------------------ the charsmap */
/* A Darts-clone array by hand: root offset 0, so byte c goes to unit c.
 *   unit 97 ('a'): label 'a', has leaf, offset 128 -> node 97^128 = 225, whose unit is the leaf (value 0: "A");
 *   from 225, 'b' -> unit 225^'b' = 131: label 'b', has leaf, offset 64 -> 131^64 = 195 (value 2: "AB!").
 * off_a, leaf_a, leaf_ab change that to corrupt it; units past the array are not written. */
#define NU 256
static const char STRINGS[] = "A\0AB!";   /* with its final NUL: 6 bytes */

static size_t make_blob(uint8_t *blob, uint32_t off_a, uint32_t leaf_a, uint32_t leaf_ab) {
  uint32_t u[NU] = {0};
  u[97] = (off_a << 10) | (1u << 8) | 'a';
  uint32_t a = 97 ^ off_a, b = a ^ 'b', c = b ^ 64;
  if (a < NU) u[a] = (1u << 31) | leaf_a;
  if (b < NU) u[b] = (64u << 10) | (1u << 8) | 'b';
  if (c < NU) u[c] = (1u << 31) | leaf_ab;
  uint32_t size = NU * 4;
  memcpy(blob, &size, 4);   /* little-endian host */
  memcpy(blob + 4, u, sizeof u);
  memcpy(blob + 4 + sizeof u, STRINGS, sizeof STRINGS);
  return 4 + sizeof u + sizeof STRINGS;
}
#define GOOD_BLOB(b) make_blob(b, 128, 0, 2)

static void normalized(const lm_precompiled *p, lm_precompiled_rule rule, const char *in, const char *want) {
  char *out; size_t n;
  lm_status st = lm_precompiled_normalize_as(p, rule, in, strlen(in), &out, &n);
  cr_assert_eq(st, LM_OK, "%s", lm_last_error());
  cr_assert_eq(n, strlen(want), "\"%s\" -> \"%s\", want \"%s\"", in, out, want);
  cr_assert_str_eq(out, want, "\"%s\"", in);
  free(out);
}

Test(precompiled, rules) {
  uint8_t blob[4 + NU * 4 + 16];
  size_t n = GOOD_BLOB(blob);
  lm_precompiled *p;
  cr_assert_eq(lm_precompiled_new(&p, blob, n, "map"), LM_OK, "%s", lm_last_error());
  /* HF: character by character (a cluster of one), the first key */
  normalized(p, LM_PRECOMPILED_HF, "xaby", "xAby");
  normalized(p, LM_PRECOMPILED_HF, "", "");
  /* HF: a + U+0301 is one cluster under 6 bytes: its first key "a" replaces all of it */
  normalized(p, LM_PRECOMPILED_HF, "a\xcc\x81!", "A!");
  /* ... but a cluster of 6 bytes or more goes character by character */
  normalized(p, LM_PRECOMPILED_HF, "a\xcc\x81\xcc\x81\xcc\x81", "A\xcc\x81\xcc\x81\xcc\x81");
  /* SentencePiece: the longest key anywhere, the mark kept */
  normalized(p, LM_PRECOMPILED_SPM, "xaby", "xAB!y");
  normalized(p, LM_PRECOMPILED_SPM, "a\xcc\x81!", "A\xcc\x81!");
  /* invalid bytes: kept by the HF rule, U+FFFD (one byte each) by SentencePiece's */
  char *out; size_t on;
  cr_assert_eq(lm_precompiled_normalize(p, "a\xff\xe2", 3, &out, &on), LM_OK);
  cr_assert_eq(on, 3); cr_assert_eq(memcmp(out, "A\xff\xe2", 3), 0);
  free(out);
  normalized(p, LM_PRECOMPILED_SPM, "\xff" "a", "\xef\xbf\xbd" "A");
  /* a NUL byte never matches */
  cr_assert_eq(lm_precompiled_normalize(p, "\0a", 2, &out, &on), LM_OK);
  cr_assert_eq(on, 2); cr_assert_eq(out[0], 0); cr_assert_eq(out[1], 'A');
  free(out);
  lm_precompiled_free(p);
}

static void bad_blob(const uint8_t *blob, size_t n, const char *needle) {
  lm_precompiled *p = NULL;
  cr_assert_neq(lm_precompiled_new(&p, blob, n, "map"), LM_OK);
  cr_assert_null(p);
  cr_assert(strstr(lm_last_error(), "map") && strstr(lm_last_error(), needle), "%s", lm_last_error());
}

static void bad_at_use(const uint8_t *blob, size_t n, const char *text) {
  lm_precompiled *p;
  cr_assert_eq(lm_precompiled_new(&p, blob, n, "map"), LM_OK, "%s", lm_last_error());
  for (int rule = 0; rule < 2; rule++) {
    char *out = (char *)1; size_t on;
    cr_assert_neq(lm_precompiled_normalize_as(p, (lm_precompiled_rule)rule, text, strlen(text), &out, &on), LM_OK);
    cr_assert_null(out);
    cr_assert(strstr(lm_last_error(), "corrupt"), "%s", lm_last_error());
  }
  lm_precompiled_free(p);
}

Test(precompiled, corrupt) {
  uint8_t blob[4 + NU * 4 + 16];
  size_t n = GOOD_BLOB(blob);
  bad_blob(blob, 3, "too short");
  uint8_t b2[16] = {6, 0, 0, 0};
  bad_blob(b2, sizeof b2, "multiple of 4");
  uint8_t b3[16] = {0, 0, 0, 0};
  bad_blob(b3, sizeof b3, "multiple of 4");
  uint8_t b4[16] = {16, 0, 0, 0};
  bad_blob(b4, sizeof b4, "past the end");
  blob[n - 3] = 0xC3;   /* "AB!" -> "A\xC3!": invalid UTF-8 */
  bad_blob(blob, n, "UTF-8");
  /* a leaf value past the strings, or inside a character */
  n = make_blob(blob, 128, 1000, 2);
  bad_at_use(blob, n, "a");
  n = make_blob(blob, 128, 1, 2);
  memcpy(blob + 4 + NU * 4, "\xc3\xa9\0", 3);   /* the strings begin with "é": value 1 is inside it */
  bad_at_use(blob, n, "a");
  /* a walk that leaves the array: 'a' has an offset far past the end */
  n = make_blob(blob, 1u << 20, 0, 2);
  bad_at_use(blob, n, "a");
  /* the array holds only the root: every walk leaves it */
  uint8_t one[8] = {4, 0, 0, 0, 0, 0, 0, 0};
  bad_at_use(one, sizeof one, "a");
}
