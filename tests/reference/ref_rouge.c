/* ref_rouge.c — the driver of tests/reference/test_rouge.py: reads PAIRS, a file of
 * "target<TAB>prediction" lines (no other tabs or line breaks inside), and prints
 * lm_rouge_l's precision, recall and F-measure of each pair as "%.17g %.17g %.17g". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/base.h"
#include "eval/rouge.h"

int main(int argc, char **argv) {
  if (argc != 2) { fprintf(stderr, "usage: ref_rouge PAIRS\n"); return 2; }
  char *text; size_t len;
  if (lm_read_file(argv[1], &text, &len)) { fprintf(stderr, "%s\n", lm_last_error()); return 1; }
  for (char *line = text, *end = text + len; line < end;) {
    char *nl = memchr(line, '\n', (size_t)(end - line)), *tab;
    if (!nl) nl = end;
    *nl = 0;
    if (!(tab = strchr(line, '\t'))) { fprintf(stderr, "a line without a tab\n"); return 1; }
    *tab = 0;
    double p, r, f = lm_rouge_l(line, tab + 1, &p, &r);
    if (f < 0) { fprintf(stderr, "out of memory\n"); return 1; }
    printf("%.17g %.17g %.17g\n", p, r, f);
    line = nl + 1;
  }
  free(text);
  return 0;
}
