/* lines.c — walks a text line by line (JSONL files: runs.jsonl, task records), counting lines
 * from 1 and skipping blank ones, without copying; see lm_next_line in base.h. */
#include <string.h>
#include "base/base.h"

int lm_next_line(const char *text, size_t len, size_t *at, int64_t *line, const char **s, size_t *n) {
  while (*at < len) {
    const char *p = text + *at, *nl = memchr(p, '\n', len - *at);
    size_t l = nl ? (size_t)(nl - p) : len - *at, b = 0;
    *at += l + (nl != NULL);
    (*line)++;
    while (b < l && (p[b] == ' ' || p[b] == '\t' || p[b] == '\r')) b++;
    if (b < l) { *s = p; *n = l; return 1; }
  }
  return 0;
}
