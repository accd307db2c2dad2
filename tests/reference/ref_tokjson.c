/* ref_tokjson.c — batch driver for tests/reference/test_tokenizer_json.py.
 *
 * usage: ref_tokjson TOKENIZER [--resave DIR | --gguf FILE]
 * (--resave: save the tokenizer into DIR, load it back from there and use that copy; --gguf: the
 * same through a GGUF vocabulary file, lm_gguf_write_vocab and lm_gguf_tokenizer_load)
 * Reads records from stdin, each "<byte length>\n<bytes>", and for each prints
 *   the ids with special-token text matched (LM_ENCODE_SPECIAL), one line;
 *   the same with the post-processor's tokens added (LM_ENCODE_ADD_SPECIAL), one line;
 *   "<length>\n<bytes>": the decode of the first ids;
 *   "<length>\n<bytes>": the same decode skipping special tokens.
 * Length-prefixed records let the strings hold any byte. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "lmkit.h"
#include "model/gguf.h"

static int encode_line(lm_tokenizer *tok, const char *s, size_t len, int flags, uint32_t **ids, size_t *n) {
  if (lm_tokenizer_encode(tok, s, len, flags, ids, n)) { fprintf(stderr, "ref_tokjson: %s\n", lm_last_error()); return 1; }
  for (size_t i = 0; i < *n; i++) printf(i ? " %u" : "%u", (*ids)[i]);
  putchar('\n');
  return 0;
}

static int decode_rec(lm_tokenizer *tok, const uint32_t *ids, size_t n, int flags) {
  char *text; size_t tl;
  if (lm_tokenizer_decode_ex(tok, ids, n, flags, &text, &tl)) { fprintf(stderr, "ref_tokjson: %s\n", lm_last_error()); return 1; }
  printf("%zu\n", tl);
  fwrite(text, 1, tl, stdout);
  free(text);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2) { fprintf(stderr, "usage: ref_tokjson TOKENIZER [--resave DIR]\n"); return 2; }
  lm_tokenizer *tok;
  if (lm_tokenizer_load(&tok, argv[1])) { fprintf(stderr, "ref_tokjson: %s\n", lm_last_error()); return 1; }
  if (argc > 3 && (!strcmp(argv[2], "--resave") || !strcmp(argv[2], "--gguf"))) {
    lm_tokenizer *again;
    int gguf = !strcmp(argv[2], "--gguf");   /* a GGUF vocabulary file (gguf_model.c) instead of a directory */
    if ((gguf ? lm_gguf_write_vocab(tok, argv[3]) : lm_tokenizer_save(tok, argv[3])) ||
        (gguf ? lm_gguf_tokenizer_load(&again, argv[3]) : lm_tokenizer_load(&again, argv[3]))) {
      fprintf(stderr, "ref_tokjson: %s\n", lm_last_error());
      lm_tokenizer_free(tok);
      return 1;
    }
    lm_tokenizer_free(tok);
    tok = again;
  }
  char *buf = NULL; size_t cap = 0;
  unsigned long long len;
  int rc = 0;
  while (!rc && scanf("%llu", &len) == 1) {
    if (getchar() != '\n' || len > (1u << 30)) { fprintf(stderr, "ref_tokjson: bad record header\n"); rc = 1; break; }
    if (len + 1 > cap) {
      cap = (size_t)len + 1;
      char *nb = realloc(buf, cap);
      if (!nb) { rc = 1; break; }
      buf = nb;
    }
    if (fread(buf, 1, (size_t)len, stdin) != len) { fprintf(stderr, "ref_tokjson: truncated record\n"); rc = 1; break; }
    uint32_t *ids = NULL, *ids2 = NULL; size_t n = 0, n2 = 0;
    rc = encode_line(tok, buf, (size_t)len, LM_ENCODE_SPECIAL, &ids, &n) ||
         encode_line(tok, buf, (size_t)len, LM_ENCODE_SPECIAL | LM_ENCODE_ADD_SPECIAL, &ids2, &n2) ||
         decode_rec(tok, ids, n, 0) || decode_rec(tok, ids, n, LM_DECODE_SKIP_SPECIAL);
    free(ids); free(ids2);
  }
  free(buf);
  lm_tokenizer_free(tok);
  return rc;
}
