/* fuzz_tokenizer.c — libFuzzer target for the tokenizer: the tokenizer.json
 * parser, and encode/decode of arbitrary bytes.
 *
 * The first input byte picks the mode: 0 mod 4 -> the rest is parsed as a
 * tokenizer.json (and, if accepted, used to encode and decode a fixed text);
 * 2 mod 4 -> the next byte picks a pipeline component (normalizer,
 * pre_tokenizer, post_processor, decoder) and the rest is its JSON value,
 * put into a small character-level BPE with byte fallback (the component
 * parsers of pipeline.c; if accepted, the fixed text and the input itself are
 * encoded and decoded, with and without the post-processor);
 * odd -> the rest is encoded (special tokens allowed or not) with a small
 * byte-level BPE and with GPT-2 (if its files are found), and decode must give
 * the input back. Any failure other than a clean error status aborts.
 * A tokenizer.json may also be a WordPiece (BERT) one; its decode is not
 * required to give the text back.
 * Built by fuzz/build.sh: with clang's -fsanitize=fuzzer when available, else
 * with gcc as a plain driver that replays the files named on the command line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "lmkit.h"
#include "tokenizer/tokenizer.h"

static lm_tokenizer *g_small, *g_gpt2;

static const char SMALL_JSON[] =
  "{\"added_tokens\": [{\"id\": 260, \"content\": \"<|endoftext|>\"}],"
  " \"model\": {\"type\": \"BPE\", \"vocab\": {%s \"Ġt\": 256, \"he\": 257, \"Ġthe\": 258, \"ĠĠ\": 259},"
  " \"merges\": [\"Ġ t\", \"h e\", \"Ġt he\", \"Ġ Ġ\"]}}";

static void init(void) {
  if (g_small) return;
  /* the 256 byte symbols */
  char *vocab = malloc(256 * 16), *p = vocab;
  for (int b = 0; b < 256; b++) {
    uint8_t byte = (uint8_t)b;
    char *sym = lm_tok_symbol(&byte, 1);
    const char *q = (sym[0] == '"' || sym[0] == '\\') ? "\\" : "";
    p += sprintf(p, "\"%s%s\": %d,", q, sym, b);
    free(sym);
  }
  size_t n = strlen(SMALL_JSON) + strlen(vocab) + 1;
  char *json = malloc(n);
  snprintf(json, n, SMALL_JSON, vocab);
  if (lm_tokenizer_from_json(&g_small, json, strlen(json), "small")) { fprintf(stderr, "%s\n", lm_last_error()); abort(); }
  free(json); free(vocab);
  if (lm_tokenizer_load(&g_gpt2, "gpt2")) g_gpt2 = NULL;
}

static void check_roundtrip(const lm_tokenizer *t, const uint8_t *data, size_t len, int allow) {
  uint32_t *ids; size_t n; char *back; size_t bn;
  if (lm_tokenizer_encode(t, (const char *)data, len, allow, &ids, &n)) abort();
  for (size_t i = 0; i < n; i++) if ((int64_t)ids[i] >= lm_tokenizer_vocab_size(t)) abort();
  if (lm_tokenizer_decode(t, ids, n, &back, &bn)) abort();
  if (lm_tok_byte_level(t) && (bn != len || memcmp(back, data, len))) abort();   /* WordPiece is lossy (case, accents, [UNK]) */
  free(ids); free(back);
}

/* A character-level BPE with byte fallback (the 256 <0xNN> tokens, a few letters, a merge). */
static const char CHAR_JSON_HEAD[] =
  "{\"added_tokens\": [{\"id\": 0, \"content\": \"<s>\", \"special\": true, \"normalized\": false},"
  " {\"id\": 1, \"content\": \"x y\", \"special\": false, \"normalized\": true, \"lstrip\": true, \"single_word\": true}],"
  " \"model\": {\"type\": \"BPE\", \"unk_token\": \"<unk>\", \"fuse_unk\": true, \"byte_fallback\": true,"
  " \"vocab\": {\"<s>\": 0, \"x y\": 1, \"<unk>\": 2, \"a\": 3, \"b\": 4, \"ab\": 5, \"\u2581\": 6, \"\u2581a\": 7";
static const char *const COMPONENTS[] = {"normalizer", "pre_tokenizer", "post_processor", "decoder"};

static void component(const uint8_t *data, size_t size) {
  if (size < 1) return;
  const char *key = COMPONENTS[data[0] % 4];
  data++; size--;
  size_t cap = sizeof CHAR_JSON_HEAD + 256 * 24 + size + 128;
  char *json = malloc(cap), *p = json;
  p += sprintf(p, "%s", CHAR_JSON_HEAD);
  for (int b = 0; b < 256; b++) p += sprintf(p, ", \"<0x%02X>\": %d", b, 8 + b);
  p += sprintf(p, "}, \"merges\": [\"a b\", \"\u2581 a\"]}, \"%s\": ", key);
  memcpy(p, data, size); p += size;
  p += sprintf(p, "}");
  lm_tokenizer *t;
  if (lm_tokenizer_from_json(&t, json, (size_t)(p - json), "fuzz.json") == LM_OK) {
    static const char text[] = "ab a <s>x y\n\t b\xff caf\xc3\xa9 \xe2\x96\x81" "a";
    const char *texts[2] = {text, (const char *)data};
    size_t lens[2] = {sizeof text - 1, size};
    for (int k = 0; k < 2; k++)
      for (int flags = 0; flags < 4; flags++) {
        uint32_t *ids; size_t n; char *back; size_t bn;
        if (lm_tokenizer_encode(t, texts[k], lens[k], flags, &ids, &n)) abort();
        for (size_t i = 0; i < n; i++) if ((int64_t)ids[i] >= lm_tokenizer_vocab_size(t)) abort();
        if (lm_tokenizer_decode_ex(t, ids, n, flags & 1, &back, &bn)) abort();
        free(ids); free(back);
      }
    char *out; size_t on;
    if (lm_tokenizer_to_json(t, &out, &on) == LM_OK) {
      lm_tokenizer *u;
      if (lm_tokenizer_from_json(&u, out, on, "resaved") != LM_OK) abort();   /* what we write, we read */
      lm_tokenizer_free(u);
      free(out);
    }
    lm_tokenizer_free(t);
  } else if (!lm_last_error()[0]) abort();
  free(json);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  init();
  if (size == 0) return 0;
  uint8_t mode = data[0];
  data++; size--;
  if ((mode & 3) == 2) component(data, size);
  else if (!(mode & 1)) {
    lm_tokenizer *t;
    if (lm_tokenizer_from_json(&t, (const char *)data, size, "fuzz.json") == LM_OK) {
      static const char text[] = "Hello the world <|endoftext|> \xff\xfe caf\xc3\xa9";
      check_roundtrip(t, (const uint8_t *)text, sizeof text - 1, 1);
      char *json; size_t jn;
      if (lm_tokenizer_to_json(t, &json, &jn) == LM_OK) {
        lm_tokenizer *u;
        if (lm_tokenizer_from_json(&u, json, jn, "resaved") != LM_OK) abort();   /* what we write, we read */
        if (lm_tokenizer_vocab_size(u) != lm_tokenizer_vocab_size(t)) abort();
        lm_tokenizer_free(u);
        free(json);
      }
      lm_tokenizer_free(t);
    } else if (!lm_last_error()[0]) abort();
  } else {
    check_roundtrip(g_small, data, size, (mode >> 1) & 1);
    if (g_gpt2) check_roundtrip(g_gpt2, data, size, (mode >> 1) & 1);
  }
  return 0;
}

#ifndef LM_LIBFUZZER
/* Plain driver: replays each file given on the command line. */
int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    FILE *f = fopen(argv[i], "rb");
    if (!f) { perror(argv[i]); return 1; }
    static uint8_t buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    LLVMFuzzerTestOneInput(buf, n);
  }
  printf("replayed %d inputs\n", argc - 1);
  return 0;
}
#endif
