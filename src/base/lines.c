/* lines.c — walks a text line by line (JSONL files: runs.jsonl, task records, conversations,
 * preference pairs), counting lines from 1 and skipping blank ones, without copying; see
 * lm_next_line in base.h. A UTF-8 byte-order mark at the start of the text and the blanks around
 * each line (a CRLF file's \r included) are not part of the line, so callers can hand the span
 * straight to a parser. */
#include <string.h>
#include "base/base.h"

static int blank(char c) { return c == ' ' || c == '\t' || c == '\r'; }

int lm_next_line(const char *text, size_t len, size_t *at, int64_t *line, const char **s, size_t *n) {
  if (*at == 0 && len >= 3 && !memcmp(text, "\xEF\xBB\xBF", 3)) *at = 3;
  while (*at < len) {
    const char *p = text + *at, *nl = memchr(p, '\n', len - *at);
    size_t l = nl ? (size_t)(nl - p) : len - *at, b = 0;
    *at += l + (nl != NULL);
    (*line)++;
    while (b < l && blank(p[b])) b++;
    while (l > b && blank(p[l - 1])) l--;
    if (b < l) { *s = p + b; *n = l - b; return 1; }
  }
  return 0;
}
