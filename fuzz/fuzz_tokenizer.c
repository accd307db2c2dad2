/* fuzz_tokenizer.c — libFuzzer target for the tokenizer: the tokenizer.json
 * parser, and encode/decode of arbitrary bytes.
 *
 * The first input byte picks the mode: even -> the rest is parsed as a
 * tokenizer.json (and, if accepted, used to encode and decode a fixed text);
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  init();
  if (size == 0) return 0;
  uint8_t mode = data[0];
  data++; size--;
  if (!(mode & 1)) {
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
