/* util.c — flag parsing and error printing shared by the subcommands. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include "cli.h"
#include "model/gguf.h"

int cli_error(const char *fmt, ...) {
  va_list ap;
  fputs("lmkit: error: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  return 1;
}

int cli_fail(void) { return cli_error("%s", lm_last_error()); }

int cli_opt(int argc, char **argv, int *i, const char *name, const char **val) {
  if (strcmp(argv[*i], name) != 0) return 0;
  if (*i + 1 >= argc) { cli_error("option %s needs a value", name); return -1; }
  *val = argv[++*i];
  return 1;
}

int cli_i64(const char *flag, const char *s, int64_t min, int64_t max, int64_t *out) {
  char *end; errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || end == s || *end) return cli_error("invalid value for %s: '%s' (expected an integer)", flag, s);
  if (v < min || v > max) return cli_error("invalid value for %s: %lld (allowed %lld..%lld)", flag, v, (long long)min, (long long)max);
  *out = v;
  return 0;
}

int cli_f32(const char *flag, const char *s, float min, float max, float *out) {
  char *end; errno = 0;
  double v = strtod(s, &end);
  if (errno || end == s || *end || !isfinite(v)) return cli_error("invalid value for %s: '%s' (expected a number)", flag, s);
  if (v < min || v > max) return cli_error("invalid value for %s: %g (allowed %g..%g)", flag, v, min, max);
  *out = (float)v;
  return 0;
}

int cli_u64(const char *flag, const char *s, uint64_t *out) {
  char *end; errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || end == s || *end || s[0] == '-') return cli_error("invalid value for %s: '%s' (expected a non-negative integer)", flag, s);
  *out = v;
  return 0;
}

int cli_unknown(const char *cmd, const char *arg) {
  return cli_error("unknown option '%s' for 'lmkit %s' (see 'lmkit %s --help')", arg, cmd, cmd);
}

int cli_is_help(const char *arg) { return !strcmp(arg, "--help") || !strcmp(arg, "-h"); }

ssize_t cli_read_line(char **buf, size_t *cap) {
  ssize_t n = getline(buf, cap, stdin);
  if (n < 0) return -1;
  if (n && (*buf)[n - 1] == '\n') (*buf)[--n] = 0;
  if (n && (*buf)[n - 1] == '\r') (*buf)[--n] = 0;
  return n;
}

int64_t cli_read_lines(char **lines, int64_t max, int *eof) {
  int64_t nb = 0;
  while (nb < max) {
    size_t cap = 0;
    lines[nb] = NULL;
    if (cli_read_line(&lines[nb], &cap) < 0) { free(lines[nb]); lines[nb] = NULL; *eof = 1; break; }
    nb++;
  }
  return nb;
}

/* Writes s as a JSON string literal (quotes, escapes, control characters as \\uXXXX). */
void cli_json_str(FILE *f, const char *s) {
  fputc('"', f);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '"' || *p == '\\') { fputc('\\', f); fputc(*p, f); }
    else if (*p == '\n') fputs("\\n", f);
    else if (*p == '\t') fputs("\\t", f);
    else if (*p == '\r') fputs("\\r", f);
    else if (*p < 0x20) fprintf(f, "\\u%04x", *p);
    else fputc(*p, f);
  }
  fputc('"', f);
}

lm_status cli_tokenizer_of(const char *model, lm_tokenizer **tok) {
  return lm_model_tokenizer_load(tok, model);
}
