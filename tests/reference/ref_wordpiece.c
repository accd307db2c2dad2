/* ref_wordpiece.c — batch driver for tests/reference/test_wordpiece.py.
 *
 * usage: ref_wordpiece TOKENIZER_DIR [--allow-special]
 * Reads records from stdin, each "<byte length>\n<bytes>", encodes each one on
 * its own with lm_tokenizer_encode, and prints one line of space-separated ids
 * per record. Length-prefixed records let the strings hold any byte (newlines,
 * NUL, control characters), which is what the test wants to exercise. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "lmkit.h"

int main(int argc, char **argv) {
  if (argc < 2) { fprintf(stderr, "usage: ref_wordpiece DIR [--allow-special]\n"); return 2; }
  int allow = argc > 2 && !strcmp(argv[2], "--allow-special");
  lm_tokenizer *tok;
  if (lm_tokenizer_load(&tok, argv[1])) { fprintf(stderr, "ref_wordpiece: %s\n", lm_last_error()); return 1; }
  char *buf = NULL; size_t cap = 0;
  unsigned long long len;
  int rc = 0;
  while (scanf("%llu", &len) == 1) {
    if (getchar() != '\n' || len > (1u << 30)) { fprintf(stderr, "ref_wordpiece: bad record header\n"); rc = 1; break; }
    if (len + 1 > cap) {
      cap = (size_t)len + 1;
      char *nb = realloc(buf, cap);
      if (!nb) { rc = 1; break; }
      buf = nb;
    }
    if (fread(buf, 1, (size_t)len, stdin) != len) { fprintf(stderr, "ref_wordpiece: truncated record\n"); rc = 1; break; }
    uint32_t *ids; size_t n;
    if (lm_tokenizer_encode(tok, buf, (size_t)len, allow, &ids, &n)) {
      fprintf(stderr, "ref_wordpiece: %s\n", lm_last_error()); rc = 1; break;
    }
    for (size_t i = 0; i < n; i++) printf(i ? " %u" : "%u", ids[i]);
    putchar('\n');
    free(ids);
  }
  free(buf);
  lm_tokenizer_free(tok);
  return rc;
}
