/* template.c — a small Jinja engine for chat templates (see template.h).
 *
 * The reference is @huggingface/jinja, the engine of transformers.js: the same preprocessing
 * (trim_blocks, lstrip_blocks, a single trailing newline dropped, transformers' {% generation %}
 * tags removed), the same lexer and operator precedence, and the same runtime semantics, quirks
 * included (strings are JavaScript strings: `length` counts UTF-16 units, strip() strips all
 * whitespace whatever its argument, booleans print as true/false, none prints as nothing), so
 * that a prompt rendered here is byte-identical to the one transformers.js renders.
 *
 * Pipeline: preprocess -> lexer (tokens with lines) -> recursive-descent parser (AST in an
 * arena owned by the template) -> tree-walking evaluator over a small JSON-like value type,
 * allocating from a per-render arena. Errors longjmp to the entry point, which frees the arena,
 * so no error path leaks. Recursion (parser and evaluator) and work (steps, memory, output) are
 * bounded; hitting a bound is an error (renders fit in a 512 KiB stack).
 *
 * Written here because Debian packages no C Jinja library (only python3-jinja2 and Rust's tera). */
#include <ctype.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <utf8proc.h>
#include "base/base.h"
#include "infer/template.h"
#include "model/gguf.h"   /* lm_chat_config_load on a GGUF file */

#ifndef LM_TPL_MAX_STEPS
#define LM_TPL_MAX_STEPS 1000000       /* evaluation steps per render (real templates: < 20000) */
#endif
#ifndef LM_TPL_MAX_MEM
#define LM_TPL_MAX_MEM ((size_t)256 << 20)   /* arena bytes per render or per parsed template */
#endif
#define LM_TPL_MAX_SRC ((size_t)4 << 20)     /* template source bytes */
#define LM_TPL_MAX_PARSE_DEPTH 192           /* nesting of expressions and blocks */
#define LM_TPL_MAX_EVAL_DEPTH 600            /* evaluator recursion (C stack) */
#define LM_TPL_MAX_CALL_DEPTH 48             /* nested macro calls */
#define LM_TPL_MAX_RANGE 1000000             /* elements of range(...) */

/* ======================================================================== context, arena */

typedef struct chunk { struct chunk *next; size_t cap, used; } chunk;
#define CHUNK_HDR ((sizeof(chunk) + 15) & ~(size_t)15)

typedef struct {
  jmp_buf jb;
  chunk *chunks;
  size_t mem;
  const char *name;   /* message prefix */
  lm_status status;
  int64_t steps;
  int depth, calls;
} ctx;

static _Noreturn void die(ctx *c, lm_status st, int line, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static _Noreturn void die(ctx *c, lm_status st, int line, const char *fmt, ...) {
  char msg[768];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (line > 0) lm_error(st, "%s: %s (line %d)", c->name, msg, line);
  else lm_error(st, "%s: %s", c->name, msg);
  c->status = st;
  longjmp(c->jb, 1);
}

static void *ar_alloc(ctx *c, size_t n) {
  if (n > LM_TPL_MAX_MEM) die(c, LM_ERR_RANGE, 0, "needs more than %zu MiB of memory", LM_TPL_MAX_MEM >> 20);
  n = (n + 15) & ~(size_t)15;
  chunk *h = c->chunks;
  if (!h || h->cap - h->used < n) {
    size_t cap = n > 65536 ? n : 65536;
    if (c->mem + cap > LM_TPL_MAX_MEM) die(c, LM_ERR_RANGE, 0, "needs more than %zu MiB of memory", LM_TPL_MAX_MEM >> 20);
    chunk *nh = malloc(CHUNK_HDR + cap);
    if (!nh) die(c, LM_ERR_NOMEM, 0, "out of memory");
    nh->cap = cap;
    nh->used = 0;
    c->mem += cap;
    if (h && h->cap - h->used >= 4096 && n > 4096) {   /* keep the roomy chunk in front */
      nh->next = h->next;
      h->next = nh;
      nh->used = n;
      return (char *)nh + CHUNK_HDR;
    }
    nh->next = h;
    c->chunks = h = nh;
  }
  void *p = (char *)h + CHUNK_HDR + h->used;
  h->used += n;
  return p;
}
static void *ar_zalloc(ctx *c, size_t n) { void *p = ar_alloc(c, n); memset(p, 0, n); return p; }
static void ar_free_all(chunk *h) {
  while (h) { chunk *n = h->next; free(h); h = n; }
}
static char *ar_strndup(ctx *c, const char *s, size_t n) {
  char *p = ar_alloc(c, n + 1);
  if (n) memcpy(p, s, n);
  p[n] = 0;
  return p;
}

/* growable byte buffer in the arena */
typedef struct { char *p; size_t len, cap; } sbuf;
static void sb_reserve(ctx *c, sbuf *b, size_t extra) {
  if (extra > LM_TPL_MAX_MEM || b->len + extra > LM_TPL_MAX_MEM)
    die(c, LM_ERR_RANGE, 0, "output larger than %zu MiB", LM_TPL_MAX_MEM >> 20);
  if (b->len + extra <= b->cap) return;
  size_t cap = b->cap ? b->cap * 2 : 64;
  while (cap < b->len + extra) cap *= 2;
  char *p = ar_alloc(c, cap);
  if (b->len) memcpy(p, b->p, b->len);
  b->p = p;
  b->cap = cap;
}
static void sb_add(ctx *c, sbuf *b, const char *s, size_t n) {
  if (!n) return;
  sb_reserve(c, b, n);
  memcpy(b->p + b->len, s, n);
  b->len += n;
}
static void sb_str(ctx *c, sbuf *b, const char *s) { sb_add(c, b, s, strlen(s)); }
static void sb_ch(ctx *c, sbuf *b, char ch) { sb_add(c, b, &ch, 1); }

/* ======================================================================== UTF-8 and JS strings */

/* Strict UTF-8 (no overlongs, no surrogates, <= U+10FFFF); the engine keeps every string valid. */
static int u8_valid(const char *str, size_t len) {
  const unsigned char *s = (const unsigned char *)str;
  for (size_t i = 0; i < len;) {
    unsigned c = s[i];
    if (c < 0x80) { i++; continue; }
    size_t n;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) { n = 2; cp = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) { n = 3; cp = c & 0x0F; }
    else if (c >= 0xF0 && c <= 0xF4) { n = 4; cp = c & 0x07; }
    else return 0;
    if (i + n > len) return 0;
    for (size_t k = 1; k < n; k++) {
      if ((s[i + k] & 0xC0) != 0x80) return 0;
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp < 0xE000)) return 0;
    i += n;
  }
  return 1;
}
/* Decodes the (valid) sequence at s[i]; returns its length. */
static int u8_dec(const char *str, size_t len, size_t i, uint32_t *cp) {
  const unsigned char *s = (const unsigned char *)str + i;
  size_t left = len - i;
  if (s[0] < 0x80 || left < 2) { *cp = s[0]; return 1; }
  if (s[0] < 0xE0) { *cp = ((uint32_t)(s[0] & 0x1F) << 6) | (s[1] & 0x3F); return 2; }
  if (s[0] < 0xF0 || left < 4) {
    if (left < 3) { *cp = s[0]; return 1; }
    *cp = ((uint32_t)(s[0] & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
    return 3;
  }
  *cp = ((uint32_t)(s[0] & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) | ((uint32_t)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
  return 4;
}
static int u8_enc(uint32_t cp, char *o) {
  if (cp < 0x80) { o[0] = (char)cp; return 1; }
  if (cp < 0x800) { o[0] = (char)(0xC0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
  if (cp < 0x10000) {
    o[0] = (char)(0xE0 | (cp >> 12)); o[1] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  o[0] = (char)(0xF0 | (cp >> 18)); o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
  o[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}
/* JavaScript's WhiteSpace + LineTerminator (what trim() and \s strip). */
static int js_space(uint32_t cp) {
  return (cp >= 9 && cp <= 13) || cp == 32 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
         cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000 || cp == 0xFEFF;
}
/* Length of the JS-whitespace run starting at s[i] / ending at s[end]. */
static size_t ws_fwd(const char *s, size_t len, size_t i) {
  size_t j = i;
  while (j < len) {
    uint32_t cp;
    int n = u8_dec(s, len, j, &cp);
    if (!js_space(cp)) break;
    j += n;
  }
  return j - i;
}
static size_t ws_back(const char *s, size_t end) {
  size_t j = end;
  while (j > 0) {
    size_t k = j - 1;
    while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80) k--;
    uint32_t cp;
    u8_dec(s, end, k, &cp);
    if (!js_space(cp)) break;
    j = k;
  }
  return end - j;
}
static size_t utf16_len(const char *s, size_t len) {
  size_t n = 0;
  for (size_t i = 0; i < len; i++) {
    unsigned char ch = (unsigned char)s[i];
    if ((ch & 0xC0) != 0x80) n += ch >= 0xF0 ? 2 : 1;
  }
  return n;
}

/* Full upper-case mappings that expand (JavaScript's toUpperCase, from SpecialCasing.txt). */
static const struct { uint32_t cp, to[3]; } UPPER_SPECIAL[] = {
  {0xDF, {0x53, 0x53, 0}}, {0x149, {0x2BC, 0x4E, 0}}, {0x1F0, {0x4A, 0x30C, 0}}, {0x390, {0x399, 0x308, 0x301}},
  {0x3B0, {0x3A5, 0x308, 0x301}}, {0x587, {0x535, 0x552, 0}}, {0x1E96, {0x48, 0x331, 0}}, {0x1E97, {0x54, 0x308, 0}},
  {0x1E98, {0x57, 0x30A, 0}}, {0x1E99, {0x59, 0x30A, 0}}, {0x1E9A, {0x41, 0x2BE, 0}}, {0x1F50, {0x3A5, 0x313, 0}},
  {0x1F52, {0x3A5, 0x313, 0x300}}, {0x1F54, {0x3A5, 0x313, 0x301}}, {0x1F56, {0x3A5, 0x313, 0x342}},
  {0x1F80, {0x1F08, 0x399, 0}}, {0x1F81, {0x1F09, 0x399, 0}}, {0x1F82, {0x1F0A, 0x399, 0}}, {0x1F83, {0x1F0B, 0x399, 0}},
  {0x1F84, {0x1F0C, 0x399, 0}}, {0x1F85, {0x1F0D, 0x399, 0}}, {0x1F86, {0x1F0E, 0x399, 0}}, {0x1F87, {0x1F0F, 0x399, 0}},
  {0x1F88, {0x1F08, 0x399, 0}}, {0x1F89, {0x1F09, 0x399, 0}}, {0x1F8A, {0x1F0A, 0x399, 0}}, {0x1F8B, {0x1F0B, 0x399, 0}},
  {0x1F8C, {0x1F0C, 0x399, 0}}, {0x1F8D, {0x1F0D, 0x399, 0}}, {0x1F8E, {0x1F0E, 0x399, 0}}, {0x1F8F, {0x1F0F, 0x399, 0}},
  {0x1F90, {0x1F28, 0x399, 0}}, {0x1F91, {0x1F29, 0x399, 0}}, {0x1F92, {0x1F2A, 0x399, 0}}, {0x1F93, {0x1F2B, 0x399, 0}},
  {0x1F94, {0x1F2C, 0x399, 0}}, {0x1F95, {0x1F2D, 0x399, 0}}, {0x1F96, {0x1F2E, 0x399, 0}}, {0x1F97, {0x1F2F, 0x399, 0}},
  {0x1F98, {0x1F28, 0x399, 0}}, {0x1F99, {0x1F29, 0x399, 0}}, {0x1F9A, {0x1F2A, 0x399, 0}}, {0x1F9B, {0x1F2B, 0x399, 0}},
  {0x1F9C, {0x1F2C, 0x399, 0}}, {0x1F9D, {0x1F2D, 0x399, 0}}, {0x1F9E, {0x1F2E, 0x399, 0}}, {0x1F9F, {0x1F2F, 0x399, 0}},
  {0x1FA0, {0x1F68, 0x399, 0}}, {0x1FA1, {0x1F69, 0x399, 0}}, {0x1FA2, {0x1F6A, 0x399, 0}}, {0x1FA3, {0x1F6B, 0x399, 0}},
  {0x1FA4, {0x1F6C, 0x399, 0}}, {0x1FA5, {0x1F6D, 0x399, 0}}, {0x1FA6, {0x1F6E, 0x399, 0}}, {0x1FA7, {0x1F6F, 0x399, 0}},
  {0x1FA8, {0x1F68, 0x399, 0}}, {0x1FA9, {0x1F69, 0x399, 0}}, {0x1FAA, {0x1F6A, 0x399, 0}}, {0x1FAB, {0x1F6B, 0x399, 0}},
  {0x1FAC, {0x1F6C, 0x399, 0}}, {0x1FAD, {0x1F6D, 0x399, 0}}, {0x1FAE, {0x1F6E, 0x399, 0}}, {0x1FAF, {0x1F6F, 0x399, 0}},
  {0x1FB2, {0x1FBA, 0x399, 0}}, {0x1FB3, {0x391, 0x399, 0}}, {0x1FB4, {0x386, 0x399, 0}}, {0x1FB6, {0x391, 0x342, 0}},
  {0x1FB7, {0x391, 0x342, 0x399}}, {0x1FBC, {0x391, 0x399, 0}}, {0x1FC2, {0x1FCA, 0x399, 0}}, {0x1FC3, {0x397, 0x399, 0}},
  {0x1FC4, {0x389, 0x399, 0}}, {0x1FC6, {0x397, 0x342, 0}}, {0x1FC7, {0x397, 0x342, 0x399}}, {0x1FCC, {0x397, 0x399, 0}},
  {0x1FD2, {0x399, 0x308, 0x300}}, {0x1FD3, {0x399, 0x308, 0x301}}, {0x1FD6, {0x399, 0x342, 0}},
  {0x1FD7, {0x399, 0x308, 0x342}}, {0x1FE2, {0x3A5, 0x308, 0x300}}, {0x1FE3, {0x3A5, 0x308, 0x301}},
  {0x1FE4, {0x3A1, 0x313, 0}}, {0x1FE6, {0x3A5, 0x342, 0}}, {0x1FE7, {0x3A5, 0x308, 0x342}}, {0x1FF2, {0x1FFA, 0x399, 0}},
  {0x1FF3, {0x3A9, 0x399, 0}}, {0x1FF4, {0x38F, 0x399, 0}}, {0x1FF6, {0x3A9, 0x342, 0}}, {0x1FF7, {0x3A9, 0x342, 0x399}},
  {0x1FFC, {0x3A9, 0x399, 0}}, {0xFB00, {0x46, 0x46, 0}}, {0xFB01, {0x46, 0x49, 0}}, {0xFB02, {0x46, 0x4C, 0}},
  {0xFB03, {0x46, 0x46, 0x49}}, {0xFB04, {0x46, 0x46, 0x4C}}, {0xFB05, {0x53, 0x54, 0}}, {0xFB06, {0x53, 0x54, 0}},
  {0xFB13, {0x544, 0x546, 0}}, {0xFB14, {0x544, 0x535, 0}}, {0xFB15, {0x544, 0x53B, 0}}, {0xFB16, {0x54E, 0x546, 0}},
  {0xFB17, {0x544, 0x53D, 0}},
};
static int cased(uint32_t cp) {
  utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)cp);
  return k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LL || k == UTF8PROC_CATEGORY_LT;
}
static int case_ignorable(uint32_t cp) {
  utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)cp);
  return k == UTF8PROC_CATEGORY_MN || k == UTF8PROC_CATEGORY_ME || k == UTF8PROC_CATEGORY_CF ||
         k == UTF8PROC_CATEGORY_LM || k == UTF8PROC_CATEGORY_SK || cp == '\'' || cp == '.' || cp == ':' ||
         cp == '^' || cp == '`' || cp == 0xB7 || cp == 0x2018 || cp == 0x2019 || cp == 0x2024 || cp == 0x2027;
}
/* JavaScript's toUpperCase / toLowerCase (full mappings, final sigma) of s[0..len). */
static void case_map(ctx *c, sbuf *o, const char *s, size_t len, int upper) {
  char e[4];
  for (size_t i = 0; i < len;) {
    uint32_t cp;
    int n = u8_dec(s, len, i, &cp);
    if (upper) {
      int lo = 0, hi = (int)(sizeof UPPER_SPECIAL / sizeof UPPER_SPECIAL[0]) - 1, found = -1;
      while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (UPPER_SPECIAL[mid].cp == cp) { found = mid; break; }
        if (UPPER_SPECIAL[mid].cp < cp) lo = mid + 1; else hi = mid - 1;
      }
      if (found >= 0) {
        for (int k = 0; k < 3 && UPPER_SPECIAL[found].to[k]; k++) sb_add(c, o, e, (size_t)u8_enc(UPPER_SPECIAL[found].to[k], e));
      } else {
        sb_add(c, o, e, (size_t)u8_enc((uint32_t)utf8proc_toupper((utf8proc_int32_t)cp), e));
      }
    } else if (cp == 0x130) {
      sb_add(c, o, "i\xCC\x87", 3);
    } else if (cp == 0x3A3) {   /* final sigma: after a cased letter and not before one */
      int before = 0, after = 0;
      for (size_t j = i; j > 0;) {
        size_t k = j - 1;
        while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80) k--;
        uint32_t p;
        u8_dec(s, len, k, &p);
        if (case_ignorable(p)) { j = k; continue; }
        before = cased(p);
        break;
      }
      for (size_t j = i + (size_t)n; j < len;) {
        uint32_t p;
        int m = u8_dec(s, len, j, &p);
        if (case_ignorable(p)) { j += (size_t)m; continue; }
        after = cased(p);
        break;
      }
      sb_add(c, o, (before && !after) ? "\xCF\x82" : "\xCF\x83", 2);
    } else {
      sb_add(c, o, e, (size_t)u8_enc((uint32_t)utf8proc_tolower((utf8proc_int32_t)cp), e));
    }
    i += (size_t)n;
  }
}

/* ======================================================================== numbers as JavaScript prints them */

/* Number.prototype.toString(): the shortest digits that round-trip, in JS's layout. */
static void js_num(double x, char *out, size_t cap) {
  if (isnan(x)) { snprintf(out, cap, "NaN"); return; }
  if (isinf(x)) { snprintf(out, cap, x > 0 ? "Infinity" : "-Infinity"); return; }
  if (x == 0) { snprintf(out, cap, "0"); return; }
  char tmp[48];
  int p;
  for (p = 1; p <= 17; p++) {
    snprintf(tmp, sizeof tmp, "%.*e", p - 1, x);
    if (strtod(tmp, NULL) == x) break;
  }
  if (p > 17) snprintf(tmp, sizeof tmp, "%.16e", x);
  char dig[24];
  int k = 0, neg = 0;
  const char *q = tmp;
  if (*q == '-') { neg = 1; q++; }
  for (; *q && *q != 'e'; q++) if (*q >= '0' && *q <= '9' && k < 20) dig[k++] = *q;
  int e = *q == 'e' ? atoi(q + 1) : 0;
  while (k > 1 && dig[k - 1] == '0') k--;
  int n = e + 1;
  char *o = out;
  char *end = out + cap - 1;
#define PUT(ch) do { if (o < end) *o++ = (ch); } while (0)
  if (neg) PUT('-');
  if (k <= n && n <= 21) {
    for (int i = 0; i < k; i++) PUT(dig[i]);
    for (int i = 0; i < n - k; i++) PUT('0');
  } else if (0 < n && n <= 21) {
    for (int i = 0; i < n; i++) PUT(dig[i]);
    PUT('.');
    for (int i = n; i < k; i++) PUT(dig[i]);
  } else if (-6 < n && n <= 0) {
    PUT('0'); PUT('.');
    for (int i = 0; i < -n; i++) PUT('0');
    for (int i = 0; i < k; i++) PUT(dig[i]);
  } else {
    PUT(dig[0]);
    if (k > 1) { PUT('.'); for (int i = 1; i < k; i++) PUT(dig[i]); }
    PUT('e');
    PUT(n - 1 >= 0 ? '+' : '-');
    char ex[16];
    snprintf(ex, sizeof ex, "%d", abs(n - 1));
    for (char *t = ex; *t; t++) PUT(*t);
  }
#undef PUT
  *o = 0;
}
/* FloatValue.toString(): integral floats keep one decimal ("2.0"), -0 is "-0.0". */
static void js_float(double x, char *out, size_t cap) {
  if (x == 0 && signbit(x)) { snprintf(out, cap, "-0.0"); return; }
  if (isfinite(x) && x == trunc(x) && fabs(x) < 1e21) { snprintf(out, cap, "%.1f", x); return; }
  js_num(x, out, cap);
}
/* Saturating double -> int64 (indices and counts). */
static int64_t to_i64(double x) {
  if (isnan(x)) return 0;
  if (x >= 4e18) return (int64_t)4e18;
  if (x <= -4e18) return -(int64_t)4e18;
  return (int64_t)x;
}

/* ======================================================================== preprocessing */

/* The text transformations @huggingface/jinja applies before lexing (trim_blocks and
 * lstrip_blocks are on, as in transformers), keeping each byte's source line in ln[]. */
typedef struct { char *s; int *ln; size_t len; } srcbuf;

static srcbuf sb_new(ctx *c, size_t cap) {
  srcbuf b;
  b.s = ar_alloc(c, cap + 1);
  b.ln = ar_alloc(c, (cap + 1) * sizeof(int));
  b.len = 0;
  return b;
}
static void sb_put(srcbuf *o, const srcbuf *in, size_t i) { o->s[o->len] = in->s[i]; o->ln[o->len++] = in->ln[i]; }
static int line_start(const srcbuf *b, size_t i) {   /* JS multiline ^ */
  if (i == 0) return 1;
  unsigned char p = (unsigned char)b->s[i - 1];
  if (p == '\n' || p == '\r') return 1;
  /* U+2028 / U+2029 end in E2 80 A8 / A9 */
  return i >= 3 && (unsigned char)b->s[i - 3] == 0xE2 && (unsigned char)b->s[i - 2] == 0x80 && (p == 0xA8 || p == 0xA9);
}
static int match_at(const srcbuf *b, size_t i, const char *lit) {
  size_t n = strlen(lit);
  return i + n <= b->len && !memcmp(b->s + i, lit, n);
}

static srcbuf preprocess(ctx *c, const char *src, size_t len) {
  srcbuf a = sb_new(c, len);
  int line = 1;
  for (size_t i = 0; i < len; i++) { a.s[i] = src[i]; a.ln[i] = line; if (src[i] == '\n') line++; }
  a.len = len;
  if (a.len && a.s[a.len - 1] == '\n') a.len--;   /* a single trailing newline */
  /* lstrip_blocks: /^[ \t]*({[#%-])/gm -> "$1" */
  srcbuf b = sb_new(c, a.len);
  for (size_t i = 0; i < a.len;) {
    if (line_start(&a, i)) {
      size_t j = i;
      while (j < a.len && (a.s[j] == ' ' || a.s[j] == '\t')) j++;
      if (j + 1 < a.len && a.s[j] == '{' && (a.s[j + 1] == '#' || a.s[j + 1] == '%' || a.s[j + 1] == '-')) i = j;
    }
    sb_put(&b, &a, i++);
  }
  /* trim_blocks: /([#%-]})\n/g -> "$1" */
  srcbuf d = sb_new(c, b.len);
  for (size_t i = 0; i < b.len;) {
    if (i + 2 < b.len && (b.s[i] == '#' || b.s[i] == '%' || b.s[i] == '-') && b.s[i + 1] == '}' && b.s[i + 2] == '\n') {
      sb_put(&d, &b, i); sb_put(&d, &b, i + 1);
      i += 3;
      continue;
    }
    sb_put(&d, &b, i++);
  }
  /* transformers' generation tags: /(\s*){%(-?)\s*(?:end)?generation\s*(-?)%}(\s*)/gs, keeping the
   * surrounding whitespace unless the tag strips it */
  srcbuf e = sb_new(c, d.len);
  size_t floor = 0;   /* output before this belongs to an earlier match */
  for (size_t i = 0; i < d.len;) {
    if (d.s[i] == '{' && i + 1 < d.len && d.s[i + 1] == '%') {
      size_t j = i + 2;
      int lstrip = 0, rstrip = 0;
      if (j < d.len && d.s[j] == '-') { lstrip = 1; j++; }
      j += ws_fwd(d.s, d.len, j);
      if (match_at(&d, j, "end")) j += 3;
      if (match_at(&d, j, "generation")) {
        j += 10;
        j += ws_fwd(d.s, d.len, j);
        if (j < d.len && d.s[j] == '-') { rstrip = 1; j++; }
        if (match_at(&d, j, "%}")) {
          j += 2;
          if (lstrip) {
            size_t w = ws_back(e.s, e.len);
            if (e.len - w < floor) w = e.len - floor;
            e.len -= w;
          }
          size_t w = ws_fwd(d.s, d.len, j);
          if (!rstrip) for (size_t k = j; k < j + w; k++) sb_put(&e, &d, k);
          i = j + w;
          floor = e.len;
          continue;
        }
      }
    }
    sb_put(&e, &d, i++);
  }
  e.s[e.len] = 0;
  return e;
}

/* ======================================================================== lexer */

enum {
  TK_TEXT, TK_NUM, TK_STR, TK_IDENT, TK_EQUALS, TK_LPAREN, TK_RPAREN, TK_OPEN_STMT, TK_CLOSE_STMT,
  TK_OPEN_EXPR, TK_CLOSE_EXPR, TK_LBRACK, TK_RBRACK, TK_LBRACE, TK_RBRACE, TK_COMMA, TK_DOT, TK_COLON,
  TK_PIPE, TK_ADD, TK_MUL, TK_POW, TK_CMP, TK_UNARY, TK_COMMENT
};
typedef struct { int t; const char *s; size_t len; int line; } tok;
typedef struct { tok *v; size_t n, cap; } toks;

static void push_tok(ctx *c, toks *T, int t, const char *s, size_t len, int line) {
  if (T->n == T->cap) {
    size_t cap = T->cap ? T->cap * 2 : 256;
    tok *v = ar_alloc(c, cap * sizeof(tok));
    if (T->n) memcpy(v, T->v, T->n * sizeof(tok));
    T->v = v;
    T->cap = cap;
  }
  T->v[T->n++] = (tok){t, s, len, line};
}
static void strip_last_text(toks *T) {
  if (!T->n || T->v[T->n - 1].t != TK_TEXT) return;
  tok *k = &T->v[T->n - 1];
  k->len -= ws_back(k->s, k->len);
  if (!k->len) T->n--;
}
static int hexval(char h) {
  if (h >= '0' && h <= '9') return h - '0';
  if (h >= 'a' && h <= 'f') return h - 'a' + 10;
  if (h >= 'A' && h <= 'F') return h - 'A' + 10;
  return -1;
}
static int is_word(char ch) { return isalnum((unsigned char)ch) || ch == '_'; }

static const struct { const char *seq; int t; } TABLE[] = {
  {"{%", TK_OPEN_STMT}, {"%}", TK_CLOSE_STMT}, {"{{", TK_OPEN_EXPR}, {"}}", TK_CLOSE_EXPR},
  {"(", TK_LPAREN}, {")", TK_RPAREN}, {"{", TK_LBRACE}, {"}", TK_RBRACE}, {"[", TK_LBRACK}, {"]", TK_RBRACK},
  {",", TK_COMMA}, {".", TK_DOT}, {":", TK_COLON}, {"|", TK_PIPE},
  {"<=", TK_CMP}, {">=", TK_CMP}, {"==", TK_CMP}, {"!=", TK_CMP}, {"<", TK_CMP}, {">", TK_CMP},
  {"+", TK_ADD}, {"-", TK_ADD}, {"~", TK_ADD}, {"**", TK_POW}, {"*", TK_MUL}, {"//", TK_MUL}, {"/", TK_MUL},
  {"%", TK_MUL}, {"=", TK_EQUALS},
};

static void lex(ctx *c, const srcbuf *b, toks *T) {
  const char *s = b->s;
  size_t len = b->len, i = 0;
  int curly = 0;
#define LN(k) ((k) < len ? b->ln[k] : (len ? b->ln[len - 1] : 1))
  while (i < len) {
    int last = T->n ? T->v[T->n - 1].t : -1;
    if (last == -1 || last == TK_CLOSE_STMT || last == TK_CLOSE_EXPR || last == TK_COMMENT) {
      size_t j = i;
      while (j < len && !(s[j] == '{' && j + 1 < len && (s[j + 1] == '%' || s[j + 1] == '{' || s[j + 1] == '#'))) j++;
      if (j > i) { push_tok(c, T, TK_TEXT, s + i, j - i, LN(i)); i = j; continue; }
    }
    int line = LN(i);
    if (s[i] == '{' && i + 1 < len && s[i + 1] == '#') {
      i += 2;
      int strip_before = i < len && s[i] == '-';
      if (strip_before) i++;
      size_t start = i;
      for (;;) {
        if (i + 1 < len && s[i] == '#' && s[i + 1] == '}') break;
        if (i + 2 >= len) die(c, LM_ERR_FORMAT, line, "missing end of comment tag '#}'");
        i++;
      }
      int strip_after = i > start && s[i - 1] == '-';
      if (strip_before) strip_last_text(T);
      push_tok(c, T, TK_COMMENT, s + start, i - start - (size_t)strip_after, line);
      i += 2;
      if (strip_after) i += ws_fwd(s, len, i);
      continue;
    }
    if (i + 2 < len + 0 && s[i] == '{' && s[i + 1] == '%' && s[i + 2] == '-') {
      strip_last_text(T);
      push_tok(c, T, TK_OPEN_STMT, "{%", 2, line);
      i += 3;
      continue;
    }
    if (i + 2 < len && s[i] == '{' && s[i + 1] == '{' && s[i + 2] == '-') {
      strip_last_text(T);
      push_tok(c, T, TK_OPEN_EXPR, "{{", 2, line);
      curly = 0;
      i += 3;
      continue;
    }
    size_t w = ws_fwd(s, len, i);
    if (w) {
      i += w;
      if (i >= len) die(c, LM_ERR_FORMAT, line, "unexpected end of template inside a tag");
      line = LN(i);
    }
    if (i + 2 < len + 0 && s[i] == '-' && s[i + 1] == '%' && s[i + 2] == '}') {
      push_tok(c, T, TK_CLOSE_STMT, "%}", 2, line);
      i += 3;
      i += ws_fwd(s, len, i);
      continue;
    }
    if (i + 2 < len + 0 && s[i] == '-' && s[i + 1] == '}' && s[i + 2] == '}') {
      push_tok(c, T, TK_CLOSE_EXPR, "}}", 2, line);
      i += 3;
      i += ws_fwd(s, len, i);
      continue;
    }
    char ch = s[i];
    if (ch == '-' || ch == '+') {
      last = T->n ? T->v[T->n - 1].t : -1;
      if (last == TK_TEXT || last == -1) die(c, LM_ERR_FORMAT, line, "unexpected character '%c'", ch);
      if (!(last == TK_IDENT || last == TK_NUM || last == TK_STR || last == TK_RPAREN || last == TK_RBRACK)) {
        size_t start = i++;
        size_t nd = 0;
        while (i < len && isdigit((unsigned char)s[i])) {
          i++; nd++;
          if (i >= len) die(c, LM_ERR_FORMAT, line, "unexpected end of template inside a tag");
        }
        if (nd && s[i] == '.' && i + 1 < len && isdigit((unsigned char)s[i + 1])) {
          i++;
          while (i < len && isdigit((unsigned char)s[i])) {
            i++;
            if (i >= len) die(c, LM_ERR_FORMAT, line, "unexpected end of template inside a tag");
          }
        }
        push_tok(c, T, nd ? TK_NUM : TK_UNARY, s + start, i - start, line);
        continue;
      }
    }
    int matched = 0;
    for (size_t k = 0; k < sizeof TABLE / sizeof TABLE[0]; k++) {
      size_t n = strlen(TABLE[k].seq);
      if (TABLE[k].t == TK_CLOSE_EXPR && curly > 0) continue;
      if (i + n <= len && !memcmp(s + i, TABLE[k].seq, n)) {
        push_tok(c, T, TABLE[k].t, TABLE[k].seq, n, line);
        if (TABLE[k].t == TK_OPEN_EXPR) curly = 0;
        else if (TABLE[k].t == TK_LBRACE) curly++;
        else if (TABLE[k].t == TK_RBRACE) curly--;
        i += n;
        matched = 1;
        break;
      }
    }
    if (matched) continue;
    if (ch == '\'' || ch == '"') {
      i++;
      sbuf v = {0};
      uint32_t pending_hi = 0;   /* a \uD8xx waiting for its low half */
      char e[4];
      while (i >= len || s[i] != ch) {
        if (i < len && s[i] == '\\') {
          if (++i >= len) die(c, LM_ERR_FORMAT, line, "unexpected end of template in a string");
          char x = s[i++];
          if (x == 'x' || x == 'u') {
            size_t n = x == 'x' ? 2 : 4;
            uint32_t cp = 0;
            if (i + n > len) die(c, LM_ERR_FORMAT, line, "invalid escape \\%c in a string", x);
            for (size_t k = 0; k < n; k++) {
              int h = hexval(s[i + k]);
              if (h < 0) die(c, LM_ERR_FORMAT, line, "invalid escape \\%c in a string", x);
              cp = cp * 16 + (uint32_t)h;
            }
            i += n;
            if (pending_hi && cp >= 0xDC00 && cp < 0xE000) {
              sb_add(c, &v, e, (size_t)u8_enc(0x10000 + ((pending_hi - 0xD800) << 10) + (cp - 0xDC00), e));
              pending_hi = 0;
              continue;
            }
            if (pending_hi) { sb_add(c, &v, "\xEF\xBF\xBD", 3); pending_hi = 0; }
            if (cp >= 0xD800 && cp < 0xDC00) { pending_hi = cp; continue; }
            if (cp >= 0xDC00 && cp < 0xE000) cp = 0xFFFD;   /* a lone surrogate prints as U+FFFD */
            sb_add(c, &v, e, (size_t)u8_enc(cp, e));
            continue;
          }
          const char *m = strchr("ntrbfv'\"\\", x);
          if (!m || !x) die(c, LM_ERR_FORMAT, line, "unexpected escape \\%c in a string", x);
          if (pending_hi) { sb_add(c, &v, "\xEF\xBF\xBD", 3); pending_hi = 0; }
          static const char rep[] = "\n\t\r\b\f\v'\"\\";
          sb_ch(c, &v, rep[m - "ntrbfv'\"\\"]);
          continue;
        }
        if (i >= len) die(c, LM_ERR_FORMAT, line, "unterminated string");
        if (pending_hi) { sb_add(c, &v, "\xEF\xBF\xBD", 3); pending_hi = 0; }
        size_t k = i + 1;
        while (k < len && ((unsigned char)s[k] & 0xC0) == 0x80) k++;
        sb_add(c, &v, s + i, k - i);
        i = k;
        if (i >= len) die(c, LM_ERR_FORMAT, line, "unterminated string");
      }
      if (pending_hi) sb_add(c, &v, "\xEF\xBF\xBD", 3);
      i++;
      push_tok(c, T, TK_STR, v.len ? v.p : "", v.len, line);
      continue;
    }
    if (isdigit((unsigned char)ch)) {
      size_t start = i;
      while (i < len && isdigit((unsigned char)s[i])) {
        i++;
        if (i >= len) die(c, LM_ERR_FORMAT, line, "unexpected end of template inside a tag");
      }
      if ((!T->n || T->v[T->n - 1].t != TK_DOT) && s[i] == '.' && i + 1 < len && isdigit((unsigned char)s[i + 1])) {
        i++;
        while (i < len && isdigit((unsigned char)s[i])) {
          i++;
          if (i >= len) die(c, LM_ERR_FORMAT, line, "unexpected end of template inside a tag");
        }
      }
      push_tok(c, T, TK_NUM, s + start, i - start, line);
      continue;
    }
    if (is_word(ch)) {
      size_t start = i;
      while (i < len && is_word(s[i])) {
        i++;
        if (i >= len) die(c, LM_ERR_FORMAT, line, "unexpected end of template inside a tag");
      }
      push_tok(c, T, TK_IDENT, s + start, i - start, line);
      continue;
    }
    if ((unsigned char)ch >= 0x80) {
      uint32_t cp;
      u8_dec(s, len, i, &cp);
      die(c, LM_ERR_FORMAT, line, "unexpected character U+%04X inside a tag", cp);
    }
    die(c, LM_ERR_FORMAT, line, "unexpected character '%c' inside a tag", ch);
  }
#undef LN
}

/* ======================================================================== AST and parser */

enum {
  N_STR, N_INT, N_FLOAT, N_IDENT, N_ARRAY, N_TUPLE, N_OBJECT, N_MEMBER, N_SLICE, N_CALL, N_UNARY, N_BINARY,
  N_FILTER, N_TEST, N_SELECT, N_TERNARY, N_KWARG, N_SPREAD, N_KWSPREAD, N_IF, N_FOR, N_SET, N_MACRO, N_BREAK,
  N_CONTINUE, N_FILTERBLOCK, N_CALLBLOCK, N_COMMENT
};
enum {
  OP_OR, OP_AND, OP_IN, OP_NOTIN, OP_EQ, OP_NE, OP_LT, OP_GT, OP_LE, OP_GE, OP_ADD, OP_SUB, OP_CONCAT, OP_MUL,
  OP_DIV, OP_FLOORDIV, OP_MOD, OP_POW, OP_NOT, OP_NEG, OP_POS
};
static const char *const OP_NAMES[] = {"or", "and", "in", "not in", "==", "!=", "<", ">", "<=", ">=", "+", "-", "~",
                                       "*", "/", "//", "%", "**", "not", "-", "+"};

typedef struct node node;
typedef struct { node **v; int n; } nlist;
struct node {
  int k, op, flag, line;
  const char *s;   /* identifier, string literal, filter / test / macro name */
  size_t slen;
  double num;
  node *a, *b, *c;
  nlist l1, l2;
};
#define MACRO_KWARGS 1
#define MACRO_VARARGS 2

struct lm_template {
  chunk *arena;
  nlist body;
  char *name;
};

typedef struct {
  ctx *c;
  tok *t;
  size_t n, i;
  int depth;
} parser;

typedef struct { node **v; int n, cap; } nvec;
static void nv_push(ctx *c, nvec *v, node *x) {
  if (v->n == v->cap) {
    int cap = v->cap ? v->cap * 2 : 8;
    node **p = ar_alloc(c, (size_t)cap * sizeof(node *));
    if (v->n) memcpy(p, v->v, (size_t)v->n * sizeof(node *));
    v->v = p;
    v->cap = cap;
  }
  v->v[v->n++] = x;
}
static nlist nv_list(nvec *v) { return (nlist){v->v, v->n}; }

static int cur_line(parser *p) {
  if (p->i < p->n) return p->t[p->i].line;
  return p->n ? p->t[p->n - 1].line : 1;
}
static node *mk(parser *p, int k, int line) {
  node *x = ar_zalloc(p->c, sizeof(node));
  x->k = k;
  x->line = line;
  return x;
}
static const char *tk_desc(int t) {
  static const char *const d[] = {"text", "number", "string", "name", "'='", "'('", "')'", "'{%'", "'%}'", "'{{'", "'}}'",
                                  "'['", "']'", "'{'", "'}'", "','", "'.'", "':'", "'|'", "operator", "operator",
                                  "'**'", "comparison", "operator", "comment"};
  return t >= 0 && t <= TK_COMMENT ? d[t] : "token";
}
static tok *peek(parser *p, size_t ahead) { return p->i + ahead < p->n ? &p->t[p->i + ahead] : NULL; }
static int is_t(parser *p, int t) { tok *k = peek(p, 0); return k && k->t == t; }
static int tok_is(const tok *k, const char *word) {
  return k && k->t == TK_IDENT && k->len == strlen(word) && !memcmp(k->s, word, k->len);
}
static int is_ident(parser *p, const char *word) { return tok_is(peek(p, 0), word); }
static tok *expect(parser *p, int t, const char *what) {
  tok *k = peek(p, 0);
  if (!k) die(p->c, LM_ERR_FORMAT, cur_line(p), "unexpected end of template, expected %s", what);
  if (k->t != t) die(p->c, LM_ERR_FORMAT, k->line, "expected %s, found %s '%.*s'", what, tk_desc(k->t), (int)(k->len > 40 ? 40 : k->len), k->s);
  p->i++;
  return k;
}
static void expect_word(parser *p, const char *word) {
  if (!is_ident(p, word)) {
    tok *k = peek(p, 0);
    if (!k) die(p->c, LM_ERR_FORMAT, cur_line(p), "unexpected end of template, expected '%s'", word);
    die(p->c, LM_ERR_FORMAT, k->line, "expected '%s', found '%.*s'", word, (int)(k->len > 40 ? 40 : k->len), k->s);
  }
  p->i++;
}
/* {% name ... at the cursor, name one of words */
static int is_stmt(parser *p, const char *const *words) {
  tok *a = peek(p, 0), *b = peek(p, 1);
  if (!a || a->t != TK_OPEN_STMT || !b || b->t != TK_IDENT) return 0;
  for (; *words; words++) if (tok_is(b, *words)) return 1;
  return 0;
}
static void enter(parser *p) {
  if (++p->depth > LM_TPL_MAX_PARSE_DEPTH) die(p->c, LM_ERR_RANGE, cur_line(p), "nested more than %d levels deep", LM_TPL_MAX_PARSE_DEPTH);
}
#define LEAVE(p, x) do { node *r_ = (x); (p)->depth--; return r_; } while (0)

static node *parse_any(parser *p);
static node *parse_expr(parser *p);
static node *parse_primary(parser *p);
static node *parse_call(parser *p, node *callee);

/* statements until one of `ends` (its {% is not consumed) */
static nlist parse_body(parser *p, const char *const *ends, const char *what, int line) {
  nvec v = {0};
  while (!is_stmt(p, ends)) {
    if (p->i >= p->n) die(p->c, LM_ERR_FORMAT, line, "'%s' is not closed (no {%% end%s %%})", what, what);
    nv_push(p->c, &v, parse_any(p));
  }
  return nv_list(&v);
}

static node *parse_seq(parser *p, int primary) {   /* a, b, c -> tuple */
  int line = cur_line(p);
  node *first = primary ? parse_primary(p) : parse_expr(p);
  if (!is_t(p, TK_COMMA)) return first;
  nvec v = {0};
  nv_push(p->c, &v, first);
  while (is_t(p, TK_COMMA)) {
    p->i++;
    nv_push(p->c, &v, primary ? parse_primary(p) : parse_expr(p));
    if (!is_t(p, TK_COMMA)) break;
  }
  node *t = mk(p, N_TUPLE, line);
  t->l1 = nv_list(&v);
  return t;
}

/* (args) for calls ("call") or macro parameters ("parameters") */
static nlist parse_args(parser *p, int params) {
  expect(p, TK_LPAREN, "'('");
  nvec v = {0};
  int saw_kw = 0, saw_spread = 0;
  while (!is_t(p, TK_RPAREN)) {
    if (p->i >= p->n) die(p->c, LM_ERR_FORMAT, cur_line(p), "unexpected end of template in an argument list");
    tok *k = peek(p, 0);
    int kwspread = k->t == TK_POW, spread = k->t == TK_MUL && k->len == 1 && k->s[0] == '*';
    if (params && (kwspread || spread)) die(p->c, LM_ERR_FORMAT, k->line, "argument unpacking is not allowed in parameters");
    if (kwspread) {
      p->i++;
      node *x = mk(p, N_KWSPREAD, k->line);
      x->a = parse_expr(p);
      nv_push(p->c, &v, x);
      if (is_t(p, TK_COMMA)) p->i++;
      if (!is_t(p, TK_RPAREN)) die(p->c, LM_ERR_FORMAT, k->line, "'**' must be applied to the last argument");
      break;
    }
    node *arg;
    if (spread) {
      if (saw_spread) die(p->c, LM_ERR_FORMAT, k->line, "only one '*' argument unpacking is allowed");
      saw_spread = 1;
      p->i++;
      arg = mk(p, N_SPREAD, k->line);
      arg->a = parse_expr(p);
    } else {
      arg = parse_expr(p);
      if (is_t(p, TK_EQUALS)) {
        p->i++;
        if (arg->k != N_IDENT) die(p->c, LM_ERR_FORMAT, arg->line, params ? "expected a name for a parameter" : "expected a name for a keyword argument");
        node *kw = mk(p, N_KWARG, arg->line);
        kw->s = arg->s;
        kw->slen = arg->slen;
        kw->a = parse_expr(p);
        arg = kw;
      }
      if (params) {
        if (arg->k != N_IDENT && arg->k != N_KWARG) die(p->c, LM_ERR_FORMAT, arg->line, "expected a name for a parameter");
        for (int j = 0; j < v.n; j++)
          if (v.v[j]->slen == arg->slen && !memcmp(v.v[j]->s, arg->s, arg->slen))
            die(p->c, LM_ERR_FORMAT, arg->line, "duplicate parameter '%.*s'", (int)arg->slen, arg->s);
      }
      if (arg->k == N_KWARG) saw_kw = 1;
      else if (saw_kw) die(p->c, LM_ERR_FORMAT, arg->line, params ? "a parameter without default follows one with a default" : "a positional argument follows a keyword argument");
      else if (saw_spread) die(p->c, LM_ERR_FORMAT, arg->line, "a positional argument follows '*' unpacking");
    }
    nv_push(p->c, &v, arg);
    if (is_t(p, TK_COMMA)) p->i++;
  }
  expect(p, TK_RPAREN, "')'");
  return nv_list(&v);
}

static node *parse_member_args(parser *p, int line) {   /* inside [ ]: index or slice */
  node *sl[4] = {0};
  int n = 0, is_slice = 0;
  while (!is_t(p, TK_RBRACK)) {
    if (p->i >= p->n) die(p->c, LM_ERR_FORMAT, line, "'[' is not closed");
    if (n >= 4) die(p->c, LM_ERR_FORMAT, line, "a slice takes at most 3 parts");
    if (is_t(p, TK_COLON)) {
      sl[n++] = NULL;
      p->i++;
      is_slice = 1;
    } else {
      sl[n++] = parse_expr(p);
      if (is_t(p, TK_COLON)) { p->i++; is_slice = 1; }
    }
  }
  if (!n) die(p->c, LM_ERR_FORMAT, line, "expected an index or a slice in '[]'");
  if (is_slice) {
    if (n > 3) die(p->c, LM_ERR_FORMAT, line, "a slice takes at most 3 parts");
    node *s = mk(p, N_SLICE, line);
    s->a = sl[0];
    s->b = n > 1 ? sl[1] : NULL;
    s->c = n > 2 ? sl[2] : NULL;
    return s;
  }
  return sl[0];
}

static node *parse_member(parser *p, node *obj) {
  while (is_t(p, TK_DOT) || is_t(p, TK_LBRACK)) {
    tok *op = peek(p, 0);
    p->i++;
    node *m = mk(p, N_MEMBER, op->line);
    m->a = obj;
    if (op->t == TK_LBRACK) {
      m->flag = 1;
      m->b = parse_member_args(p, op->line);
      expect(p, TK_RBRACK, "']'");
    } else {
      m->b = parse_primary(p);
      if (m->b->k != N_IDENT && m->b->k != N_INT) die(p->c, LM_ERR_FORMAT, op->line, "expected a name or an integer after '.'");
    }
    obj = m;
  }
  return obj;
}

static node *parse_call(parser *p, node *callee) {
  enter(p);
  node *x = mk(p, N_CALL, callee->line);
  x->a = callee;
  x->l1 = parse_args(p, 0);
  x = parse_member(p, x);
  if (is_t(p, TK_LPAREN)) x = parse_call(p, x);
  LEAVE(p, x);
}

static node *parse_primary(parser *p) {
  enter(p);
  tok *k = peek(p, 0);
  if (!k) die(p->c, LM_ERR_FORMAT, cur_line(p), "unexpected end of template in an expression");
  p->i++;
  node *x;
  switch (k->t) {
    case TK_NUM: {
      int is_float = memchr(k->s, '.', k->len) != NULL;
      x = mk(p, is_float ? N_FLOAT : N_INT, k->line);
      char buf[64];
      if (k->len >= sizeof buf) {
        char *t = ar_strndup(p->c, k->s, k->len);
        x->num = strtod(t, NULL);
      } else {
        memcpy(buf, k->s, k->len);
        buf[k->len] = 0;
        x->num = strtod(buf, NULL);
      }
      LEAVE(p, x);
    }
    case TK_STR: {
      x = mk(p, N_STR, k->line);
      if (is_t(p, TK_STR)) {   /* adjacent literals concatenate */
        sbuf b = {0};
        sb_add(p->c, &b, k->s, k->len);
        while (is_t(p, TK_STR)) { tok *n = peek(p, 0); sb_add(p->c, &b, n->s, n->len); p->i++; }
        x->s = b.p ? b.p : "";
        x->slen = b.len;
      } else {
        x->s = k->s;
        x->slen = k->len;
      }
      LEAVE(p, x);
    }
    case TK_IDENT:
      x = mk(p, N_IDENT, k->line);
      x->s = k->s;
      x->slen = k->len;
      LEAVE(p, x);
    case TK_LPAREN:
      x = parse_seq(p, 0);
      expect(p, TK_RPAREN, "')'");
      LEAVE(p, x);
    case TK_LBRACK: {
      nvec v = {0};
      while (!is_t(p, TK_RBRACK)) {
        if (p->i >= p->n) die(p->c, LM_ERR_FORMAT, k->line, "'[' is not closed");
        nv_push(p->c, &v, parse_expr(p));
        if (is_t(p, TK_COMMA)) p->i++;
      }
      p->i++;
      x = mk(p, N_ARRAY, k->line);
      x->l1 = nv_list(&v);
      LEAVE(p, x);
    }
    case TK_LBRACE: {
      nvec ks = {0}, vs = {0};
      while (!is_t(p, TK_RBRACE)) {
        if (p->i >= p->n) die(p->c, LM_ERR_FORMAT, k->line, "'{' is not closed");
        nv_push(p->c, &ks, parse_expr(p));
        expect(p, TK_COLON, "':' between a key and its value");
        nv_push(p->c, &vs, parse_expr(p));
        if (is_t(p, TK_COMMA)) p->i++;
      }
      p->i++;
      x = mk(p, N_OBJECT, k->line);
      x->l1 = nv_list(&ks);
      x->l2 = nv_list(&vs);
      LEAVE(p, x);
    }
    default:
      die(p->c, LM_ERR_FORMAT, k->line, "unexpected %s '%.*s' in an expression", tk_desc(k->t), (int)(k->len > 40 ? 40 : k->len), k->s);
  }
}

static node *parse_call_member(parser *p) {
  node *m = parse_member(p, parse_primary(p));
  if (is_t(p, TK_LPAREN)) return parse_call(p, m);
  return m;
}
static node *parse_unary_sign(parser *p) {
  tok *k = peek(p, 0);
  if (k && (k->t == TK_UNARY || k->t == TK_ADD) && k->len == 1 && (k->s[0] == '-' || k->s[0] == '+')) {
    enter(p);
    p->i++;
    node *x = mk(p, N_UNARY, k->line);
    x->op = k->s[0] == '-' ? OP_NEG : OP_POS;
    x->a = parse_unary_sign(p);
    LEAVE(p, x);
  }
  return parse_call_member(p);
}
static node *parse_filter_expr(parser *p) {
  node *x = parse_unary_sign(p);
  while (is_t(p, TK_PIPE)) {
    int line = peek(p, 0)->line;
    p->i++;
    node *f = parse_primary(p);
    if (f->k != N_IDENT) die(p->c, LM_ERR_FORMAT, line, "expected a filter name after '|'");
    if (is_t(p, TK_LPAREN)) f = parse_call(p, f);
    node *y = mk(p, N_FILTER, line);
    y->a = x;
    y->b = f;
    x = y;
  }
  return x;
}
static node *parse_test_expr(parser *p) {
  node *x = parse_filter_expr(p);
  while (is_ident(p, "is")) {
    int line = peek(p, 0)->line;
    p->i++;
    int neg = is_ident(p, "not");
    if (neg) p->i++;
    node *t = parse_primary(p);
    if (t->k != N_IDENT) die(p->c, LM_ERR_FORMAT, line, "expected a test name after 'is'");
    node *y = mk(p, N_TEST, line);
    y->a = x;
    y->s = t->s;
    y->slen = t->slen;
    y->flag = neg;
    x = y;
  }
  return x;
}
static node *bin(parser *p, int op, node *a, node *b, int line) {
  node *x = mk(p, N_BINARY, line);
  x->op = op;
  x->a = a;
  x->b = b;
  return x;
}
static node *parse_pow(parser *p) {
  node *x = parse_test_expr(p);
  while (is_t(p, TK_POW)) { int line = peek(p, 0)->line; p->i++; x = bin(p, OP_POW, x, parse_test_expr(p), line); }
  return x;
}
static node *parse_mul(parser *p) {
  node *x = parse_pow(p);
  while (is_t(p, TK_MUL)) {
    tok *k = peek(p, 0);
    p->i++;
    int op = k->len == 2 ? OP_FLOORDIV : k->s[0] == '*' ? OP_MUL : k->s[0] == '/' ? OP_DIV : OP_MOD;
    x = bin(p, op, x, parse_pow(p), k->line);
  }
  return x;
}
static node *parse_add(parser *p) {
  node *x = parse_mul(p);
  while (is_t(p, TK_ADD)) {
    tok *k = peek(p, 0);
    p->i++;
    int op = k->s[0] == '+' ? OP_ADD : k->s[0] == '-' ? OP_SUB : OP_CONCAT;
    x = bin(p, op, x, parse_mul(p), k->line);
  }
  return x;
}
static node *parse_cmp(parser *p) {
  node *x = parse_add(p);
  for (;;) {
    tok *k = peek(p, 0);
    int op;
    if (is_ident(p, "not") && tok_is(peek(p, 1), "in")) { op = OP_NOTIN; p->i += 2; }
    else if (is_ident(p, "in")) { op = OP_IN; p->i++; }
    else if (is_t(p, TK_CMP)) {
      p->i++;
      op = k->s[0] == '=' ? OP_EQ : k->s[0] == '!' ? OP_NE : k->s[0] == '<' ? (k->len == 2 ? OP_LE : OP_LT) : (k->len == 2 ? OP_GE : OP_GT);
    } else break;
    x = bin(p, op, x, parse_add(p), k->line);
  }
  return x;
}
static node *parse_not(parser *p) {
  if (is_ident(p, "not")) {
    enter(p);
    int line = peek(p, 0)->line;
    p->i++;
    node *x = mk(p, N_UNARY, line);
    x->op = OP_NOT;
    x->a = parse_not(p);
    LEAVE(p, x);
  }
  return parse_cmp(p);
}
static node *parse_and(parser *p) {
  node *x = parse_not(p);
  while (is_ident(p, "and")) { int line = peek(p, 0)->line; p->i++; x = bin(p, OP_AND, x, parse_not(p), line); }
  return x;
}
static node *parse_or(parser *p) {
  node *x = parse_and(p);
  while (is_ident(p, "or")) { int line = peek(p, 0)->line; p->i++; x = bin(p, OP_OR, x, parse_and(p), line); }
  return x;
}
static node *parse_if_expr(parser *p) {
  node *a = parse_or(p);
  if (is_ident(p, "if")) {
    int line = peek(p, 0)->line;
    p->i++;
    node *test = parse_or(p);
    if (is_ident(p, "else")) {
      p->i++;
      enter(p);
      node *x = mk(p, N_TERNARY, line);
      x->a = test;
      x->b = a;
      x->c = parse_if_expr(p);
      LEAVE(p, x);
    }
    node *x = mk(p, N_SELECT, line);
    x->a = a;
    x->b = test;
    return x;
  }
  return a;
}
static node *parse_expr(parser *p) {
  enter(p);
  LEAVE(p, parse_if_expr(p));
}

/* Does the tree under x read the name `name`? (macro kwargs / varargs) */
static int reads_name(const node *x, const char *name, int depth) {
  if (!x || depth > LM_TPL_MAX_PARSE_DEPTH * 4) return 0;
  if (x->k == N_IDENT && x->slen == strlen(name) && !memcmp(x->s, name, x->slen)) return 1;
  if (reads_name(x->a, name, depth + 1) || reads_name(x->b, name, depth + 1) || reads_name(x->c, name, depth + 1)) return 1;
  for (int i = 0; i < x->l1.n; i++) if (reads_name(x->l1.v[i], name, depth + 1)) return 1;
  for (int i = 0; i < x->l2.n; i++) if (reads_name(x->l2.v[i], name, depth + 1)) return 1;
  return 0;
}

static const char *const END_IF[] = {"elif", "else", "endif", NULL};
static const char *const END_ENDIF[] = {"endif", NULL};
static const char *const END_FOR[] = {"endfor", "else", NULL};
static const char *const END_ENDFOR[] = {"endfor", NULL};
static const char *const END_MACRO[] = {"endmacro", NULL};
static const char *const END_SET[] = {"endset", NULL};
static const char *const END_FILTER[] = {"endfilter", NULL};
static const char *const END_CALL[] = {"endcall", NULL};

/* MACRO_KWARGS / MACRO_VARARGS: does a macro body read kwargs / varargs (not a parameter)? */
static int special_args(const node *params, const nlist *body) {
  int flags = 0;
  for (int j = 0; j < 2; j++) {
    const char *nm = j ? "varargs" : "kwargs";
    int declared = 0;
    for (int q = 0; q < params->l1.n; q++)
      if (params->l1.v[q]->slen == strlen(nm) && !memcmp(params->l1.v[q]->s, nm, params->l1.v[q]->slen)) declared = 1;
    if (declared) continue;
    for (int q = 0; q < body->n; q++) if (reads_name(body->v[q], nm, 0)) { flags |= j ? MACRO_VARARGS : MACRO_KWARGS; break; }
  }
  return flags;
}

static node *parse_if_stmt(parser *p, int line) {
  enter(p);
  node *x = mk(p, N_IF, line);
  x->a = parse_expr(p);
  expect(p, TK_CLOSE_STMT, "'%}'");
  x->l1 = parse_body(p, END_IF, "if", line);
  if (is_stmt(p, (const char *const[]){"elif", NULL})) {
    int l2 = peek(p, 0)->line;
    p->i += 2;
    nvec v = {0};
    nv_push(p->c, &v, parse_if_stmt(p, l2));
    x->l2 = nv_list(&v);
  } else if (is_stmt(p, (const char *const[]){"else", NULL})) {
    p->i += 2;
    expect(p, TK_CLOSE_STMT, "'%}'");
    x->l2 = parse_body(p, END_ENDIF, "if", line);
  }
  LEAVE(p, x);
}

static node *parse_stmt(parser *p) {
  int line = expect(p, TK_OPEN_STMT, "'{%'")->line;
  tok *k = peek(p, 0);
  if (!k) die(p->c, LM_ERR_FORMAT, line, "unexpected end of template after '{%%'");
  if (k->t != TK_IDENT) die(p->c, LM_ERR_FORMAT, line, "expected a statement name after '{%%'");
  p->i++;
  node *x;
  if (tok_is(k, "set")) {
    x = mk(p, N_SET, line);
    x->a = parse_seq(p, 0);
    if (is_t(p, TK_EQUALS)) {
      p->i++;
      x->b = parse_seq(p, 0);
    } else {
      expect(p, TK_CLOSE_STMT, "'%}' or '='");
      x->l1 = parse_body(p, END_SET, "set", line);
      p->i++;
      expect_word(p, "endset");
    }
    expect(p, TK_CLOSE_STMT, "'%}'");
  } else if (tok_is(k, "if")) {
    x = parse_if_stmt(p, line);
    expect(p, TK_OPEN_STMT, "'{%'");
    expect_word(p, "endif");
    expect(p, TK_CLOSE_STMT, "'%}'");
  } else if (tok_is(k, "macro")) {
    x = mk(p, N_MACRO, line);
    node *name = parse_primary(p);
    if (name->k != N_IDENT) die(p->c, LM_ERR_FORMAT, line, "expected a macro name");
    x->s = name->s;
    x->slen = name->slen;
    x->l1 = parse_args(p, 1);
    expect(p, TK_CLOSE_STMT, "'%}'");
    x->l2 = parse_body(p, END_MACRO, "macro", line);
    expect(p, TK_OPEN_STMT, "'{%'");
    expect_word(p, "endmacro");
    expect(p, TK_CLOSE_STMT, "'%}'");
    x->flag = special_args(x, &x->l2);
  } else if (tok_is(k, "for")) {
    x = mk(p, N_FOR, line);
    x->a = parse_seq(p, 1);
    if (x->a->k != N_IDENT && x->a->k != N_TUPLE) die(p->c, LM_ERR_FORMAT, line, "expected a name or names after 'for'");
    if (!is_ident(p, "in")) die(p->c, LM_ERR_FORMAT, line, "expected 'in' after the loop variable");
    p->i++;
    x->b = parse_expr(p);
    expect(p, TK_CLOSE_STMT, "'%}'");
    x->l1 = parse_body(p, END_FOR, "for", line);
    if (is_stmt(p, (const char *const[]){"else", NULL})) {
      p->i += 2;
      expect(p, TK_CLOSE_STMT, "'%}'");
      x->l2 = parse_body(p, END_ENDFOR, "for", line);
    }
    expect(p, TK_OPEN_STMT, "'{%'");
    expect_word(p, "endfor");
    expect(p, TK_CLOSE_STMT, "'%}'");
  } else if (tok_is(k, "call")) {
    /* {% call(params) macro(args) %}body{% endcall %}: the macro sees the body as caller() */
    x = mk(p, N_CALLBLOCK, line);
    node *cm = mk(p, N_MACRO, line);
    cm->s = "caller";
    cm->slen = 6;
    if (is_t(p, TK_LPAREN)) cm->l1 = parse_args(p, 1);
    x->a = parse_primary(p);
    if (x->a->k != N_IDENT) die(p->c, LM_ERR_FORMAT, line, "expected a macro name after 'call'");
    x->l1 = parse_args(p, 0);
    expect(p, TK_CLOSE_STMT, "'%}'");
    cm->l2 = parse_body(p, END_CALL, "call", line);
    expect(p, TK_OPEN_STMT, "'{%'");
    expect_word(p, "endcall");
    expect(p, TK_CLOSE_STMT, "'%}'");
    cm->flag = special_args(cm, &cm->l2);
    x->b = cm;
  } else if (tok_is(k, "break") || tok_is(k, "continue")) {
    x = mk(p, tok_is(k, "break") ? N_BREAK : N_CONTINUE, line);
    expect(p, TK_CLOSE_STMT, "'%}'");
  } else if (tok_is(k, "filter")) {
    x = mk(p, N_FILTERBLOCK, line);
    node *f = parse_primary(p);
    if (f->k == N_IDENT && is_t(p, TK_LPAREN)) f = parse_call(p, f);
    if (f->k != N_IDENT && !(f->k == N_CALL && f->a->k == N_IDENT)) die(p->c, LM_ERR_FORMAT, line, "expected a filter after 'filter'");
    x->b = f;
    expect(p, TK_CLOSE_STMT, "'%}'");
    x->l1 = parse_body(p, END_FILTER, "filter", line);
    expect(p, TK_OPEN_STMT, "'{%'");
    expect_word(p, "endfilter");
    expect(p, TK_CLOSE_STMT, "'%}'");
  } else {
    int n = (int)(k->len > 40 ? 40 : k->len);
    static const char *const closers[] = {"endif", "endfor", "endmacro", "endset", "endfilter", "endcall", "elif", "else", NULL};
    for (const char *const *w = closers; *w; w++)
      if (tok_is(k, *w)) die(p->c, LM_ERR_FORMAT, line, "unexpected '{%% %.*s %%}'", n, k->s);
    die(p->c, LM_ERR_UNSUPPORTED, line, "statement '%.*s' is not supported", n, k->s);
  }
  return x;
}

static node *parse_any(parser *p) {
  tok *k = peek(p, 0);
  node *x;
  switch (k->t) {
    case TK_COMMENT:
      p->i++;
      return mk(p, N_COMMENT, k->line);
    case TK_TEXT:
      p->i++;
      x = mk(p, N_STR, k->line);
      x->s = k->s;
      x->slen = k->len;
      return x;
    case TK_OPEN_STMT:
      enter(p);
      LEAVE(p, parse_stmt(p));
    case TK_OPEN_EXPR:
      p->i++;
      x = parse_expr(p);
      expect(p, TK_CLOSE_EXPR, "'}}'");
      return x;
    default:
      die(p->c, LM_ERR_FORMAT, k->line, "unexpected %s '%.*s'", tk_desc(k->t), (int)(k->len > 40 ? 40 : k->len), k->s);
  }
}

/* ======================================================================== values */

enum { V_UNDEF, V_NULL, V_BOOL, V_INT, V_FLOAT, V_STR, V_ARR, V_OBJ, V_NS, V_FN };
typedef struct val val;
typedef struct { const char *k; size_t klen; val *v; } kv;
typedef struct { kv *e; size_t n, cap; } map;
typedef struct rctx rctx;
typedef struct env { struct env *parent; map vars; } env;
typedef val *(*bfn)(rctx *r, val *self, val **args, size_t n, map *kw, int line);
struct val {
  int t;
  int tuple;   /* a V_ARR made by a tuple literal: not JSON-serialisable, as in the reference */
  union {
    int b;
    double num;
    struct { const char *s; size_t len; } str;
    struct { val **v; size_t n; } arr;
    map *obj;
    struct { bfn f; val *self; const node *macro; const char *name; env *closure; } fn;
  } u;
};

struct rctx {
  ctx c;
  jmp_buf *loop_jb;   /* innermost for loop, for break / continue */
};
#define CTL_BREAK 1
#define CTL_CONTINUE 2

static val VAL_UNDEF = {V_UNDEF, 0, {0}}, VAL_NULL = {V_NULL, 0, {0}};
static val VAL_TRUE = {V_BOOL, 0, {.b = 1}}, VAL_FALSE = {V_BOOL, 0, {.b = 0}};

static val *new_val(rctx *r, int t) {
  val *v = ar_alloc(&r->c, sizeof(val));
  v->t = t;
  v->tuple = 0;
  return v;
}
static val *vbool(int b) { return b ? &VAL_TRUE : &VAL_FALSE; }
static val *vnum(rctx *r, int t, double x) { val *v = new_val(r, t); v->u.num = x; return v; }
static val *vint(rctx *r, double x) { return vnum(r, V_INT, x); }
static val *vstr(rctx *r, const char *s, size_t len) {
  val *v = new_val(r, V_STR);
  v->u.str.s = len ? s : "";
  v->u.str.len = len;
  return v;
}
static val *vstr_sb(rctx *r, sbuf *b) { return vstr(r, b->p, b->len); }
static val *varr(rctx *r, size_t n) {
  val *v = new_val(r, V_ARR);
  v->u.arr.v = n ? ar_alloc(&r->c, n * sizeof(val *)) : NULL;
  v->u.arr.n = n;
  return v;
}
static val *vobj(rctx *r, int t) {
  val *v = new_val(r, t);
  v->u.obj = ar_zalloc(&r->c, sizeof(map));
  return v;
}
static val *vfn(rctx *r, bfn f, val *self, const char *name) {
  val *v = new_val(r, V_FN);
  v->u.fn.f = f;
  v->u.fn.self = self;
  v->u.fn.macro = NULL;
  v->u.fn.name = name;
  v->u.fn.closure = NULL;
  return v;
}

static val *map_get(const map *m, const char *k, size_t klen) {
  for (size_t i = 0; i < m->n; i++)
    if (m->e[i].klen == klen && !memcmp(m->e[i].k, k, klen)) return m->e[i].v;
  return NULL;
}
static void map_set(rctx *r, map *m, const char *k, size_t klen, val *v) {
  for (size_t i = 0; i < m->n; i++)
    if (m->e[i].klen == klen && !memcmp(m->e[i].k, k, klen)) { m->e[i].v = v; return; }
  if (m->n == m->cap) {
    size_t cap = m->cap ? m->cap * 2 : 8;
    kv *e = ar_alloc(&r->c, cap * sizeof(kv));
    if (m->n) memcpy(e, m->e, m->n * sizeof(kv));
    m->e = e;
    m->cap = cap;
  }
  m->e[m->n++] = (kv){k, klen, v};
}
static void map_del(map *m, const char *k, size_t klen) {
  for (size_t i = 0; i < m->n; i++)
    if (m->e[i].klen == klen && !memcmp(m->e[i].k, k, klen)) {
      memmove(m->e + i, m->e + i + 1, (m->n - i - 1) * sizeof(kv));
      m->n--;
      return;
    }
}

static const char *type_name(const val *v) {
  switch (v->t) {
    case V_UNDEF: return "undefined";
    case V_NULL: return "none";
    case V_BOOL: return "a boolean";
    case V_INT: return "an integer";
    case V_FLOAT: return "a float";
    case V_STR: return "a string";
    case V_ARR: return v->tuple ? "a tuple" : "a list";
    case V_OBJ: return "an object";
    case V_NS: return "a namespace";
    default: return "a function";
  }
}
static int is_num(const val *v) { return v->t == V_INT || v->t == V_FLOAT; }
static int is_numlike(const val *v) { return v->t == V_INT || v->t == V_FLOAT || v->t == V_BOOL; }
static double numlike(const val *v) { return v->t == V_BOOL ? v->u.b : v->u.num; }
static int is_container(const val *v) { return v->t == V_OBJ || v->t == V_NS; }

/* __bool__: Python truthiness, as the reference implements it */
static int truthy(const val *v) {
  switch (v->t) {
    case V_UNDEF: case V_NULL: return 0;
    case V_BOOL: return v->u.b;
    case V_INT: case V_FLOAT: return v->u.num != 0 && !isnan(v->u.num);
    case V_STR: return v->u.str.len > 0;
    case V_ARR: return v->u.arr.n > 0;
    case V_OBJ: return v->u.obj->n > 0;
    default: return 1;
  }
}
/* JavaScript truthiness of the raw value (used where the reference tests `!x.value`) */
static int js_truthy(const val *v) {
  switch (v->t) {
    case V_UNDEF: case V_NULL: return 0;
    case V_BOOL: return v->u.b;
    case V_INT: case V_FLOAT: return v->u.num != 0 && !isnan(v->u.num);
    case V_STR: return v->u.str.len > 0;
    default: return 1;
  }
}

/* ---- text forms */

static void to_json(rctx *r, sbuf *b, const val *v, int indent, int ascii, const char *isep, const char *ksep, int depth, int undef_null, int line);

static void rt_str(rctx *r, sbuf *b, const val *v, int line);
/* String(v.value): what `~`, string `+` and join use */
static void raw_str(rctx *r, sbuf *b, const val *v, int line) {
  char num[64];
  switch (v->t) {
    case V_UNDEF: sb_str(&r->c, b, "undefined"); return;
    case V_NULL: sb_str(&r->c, b, "null"); return;
    case V_BOOL: sb_str(&r->c, b, v->u.b ? "true" : "false"); return;
    case V_INT: case V_FLOAT: js_num(v->u.num, num, sizeof num); sb_str(&r->c, b, num); return;
    case V_STR: sb_add(&r->c, b, v->u.str.s, v->u.str.len); return;
    case V_ARR:
      for (size_t i = 0; i < v->u.arr.n; i++) {
        if (i) sb_ch(&r->c, b, ',');
        rt_str(r, b, v->u.arr.v[i], line);
      }
      return;
    default:
      die(&r->c, LM_ERR_UNSUPPORTED, line, "%s cannot be turned into a string here", type_name(v));
  }
}
/* RuntimeValue.toString(): what {{ }} prints */
static void rt_str(rctx *r, sbuf *b, const val *v, int line) {
  char num[64];
  switch (v->t) {
    case V_FLOAT: js_float(v->u.num, num, sizeof num); sb_str(&r->c, b, num); return;
    case V_ARR: case V_OBJ: case V_NS: to_json(r, b, v, 0, 0, NULL, NULL, 0, 0, line); return;
    case V_FN: die(&r->c, LM_ERR_UNSUPPORTED, line, "printing a function ('%s') is not supported", v->u.fn.name ? v->u.fn.name : "?");
    default: raw_str(r, b, v, line);
  }
}

static void json_string(rctx *r, sbuf *b, const char *s, size_t len, int ascii) {
  sb_ch(&r->c, b, '"');
  char e[16];
  for (size_t i = 0; i < len;) {
    unsigned char ch = (unsigned char)s[i];
    if (ch < 0x80) {
      i++;
      switch (ch) {
        case '"': sb_add(&r->c, b, "\\\"", 2); break;
        case '\\': sb_add(&r->c, b, "\\\\", 2); break;
        case '\b': sb_add(&r->c, b, "\\b", 2); break;
        case '\f': sb_add(&r->c, b, "\\f", 2); break;
        case '\n': sb_add(&r->c, b, "\\n", 2); break;
        case '\r': sb_add(&r->c, b, "\\r", 2); break;
        case '\t': sb_add(&r->c, b, "\\t", 2); break;
        default:
          if (ch < 0x20 || (ascii && ch == 0x7F)) { snprintf(e, sizeof e, "\\u%04x", ch); sb_str(&r->c, b, e); }
          else sb_ch(&r->c, b, (char)ch);
      }
      continue;
    }
    uint32_t cp;
    int n = u8_dec(s, len, i, &cp);
    if (!ascii) sb_add(&r->c, b, s + i, (size_t)n);
    else if (cp < 0x10000) { snprintf(e, sizeof e, "\\u%04x", cp); sb_str(&r->c, b, e); }
    else {
      uint32_t x = cp - 0x10000;
      snprintf(e, sizeof e, "\\u%04x\\u%04x", 0xD800 + (x >> 10), 0xDC00 + (x & 0x3FF));
      sb_str(&r->c, b, e);
    }
    i += (size_t)n;
  }
  sb_ch(&r->c, b, '"');
}
static void pad(rctx *r, sbuf *b, int indent, int depth) {
  sb_ch(&r->c, b, '\n');
  for (int i = 0; i < indent * depth; i++) sb_ch(&r->c, b, ' ');
}
/* the reference's toJSON(): JSON.stringify-like, Python json.dumps separators */
static void to_json(rctx *r, sbuf *b, const val *v, int indent, int ascii, const char *isep, const char *ksep, int depth, int undef_null, int line) {
  if (depth > 256) die(&r->c, LM_ERR_RANGE, line, "tojson: value nested too deeply");
  const char *is = isep ? isep : indent ? "," : ", ", *ks = ksep ? ksep : ": ";
  char num[64];
  switch (v->t) {
    case V_NULL: sb_str(&r->c, b, "null"); return;
    case V_UNDEF: sb_str(&r->c, b, undef_null ? "null" : "undefined"); return;
    case V_INT: case V_FLOAT:
      if (!isfinite(v->u.num)) { sb_str(&r->c, b, "null"); return; }
      js_num(v->u.num, num, sizeof num);
      sb_str(&r->c, b, num);
      return;
    case V_BOOL: sb_str(&r->c, b, v->u.b ? "true" : "false"); return;
    case V_STR: json_string(r, b, v->u.str.s, v->u.str.len, ascii); return;
    case V_ARR:
      if (v->tuple) die(&r->c, LM_ERR_UNSUPPORTED, line, "a tuple cannot be converted to JSON");
      sb_ch(&r->c, b, '[');
      for (size_t i = 0; i < v->u.arr.n; i++) {
        if (i) sb_str(&r->c, b, is);
        if (indent) pad(r, b, indent, depth + 1);
        to_json(r, b, v->u.arr.v[i], indent, ascii, isep, ksep, depth + 1, undef_null, line);
      }
      if (indent && v->u.arr.n) pad(r, b, indent, depth);
      sb_ch(&r->c, b, ']');
      return;
    case V_OBJ: case V_NS: {
      const map *m = v->u.obj;
      sb_ch(&r->c, b, '{');
      for (size_t i = 0; i < m->n; i++) {
        if (i) sb_str(&r->c, b, is);
        if (indent) pad(r, b, indent, depth + 1);
        json_string(r, b, m->e[i].k, m->e[i].klen, ascii);
        sb_str(&r->c, b, ks);
        to_json(r, b, m->e[i].v, indent, ascii, isep, ksep, depth + 1, undef_null, line);
      }
      if (indent && m->n) pad(r, b, indent, depth);
      sb_ch(&r->c, b, '}');
      return;
    }
    default:
      die(&r->c, LM_ERR_UNSUPPORTED, line, "a function cannot be converted to JSON");
  }
}

/* ---- comparisons */

static double js_tonumber(const char *s, size_t len) {   /* Number("...") */
  size_t a = ws_fwd(s, len, 0), e = len - ws_back(s, len);
  if (a >= e) return 0;
  char buf[128];
  size_t n = e - a;
  if (n >= sizeof buf) return NAN;
  memcpy(buf, s + a, n);
  buf[n] = 0;
  if (!strcmp(buf, "Infinity") || !strcmp(buf, "+Infinity")) return INFINITY;
  if (!strcmp(buf, "-Infinity")) return -INFINITY;
  if (n > 2 && buf[0] == '0' && strchr("xXoObB", buf[1])) {
    int base = (buf[1] == 'x' || buf[1] == 'X') ? 16 : (buf[1] == 'o' || buf[1] == 'O') ? 8 : 2;
    double x = 0;
    for (size_t i = 2; i < n; i++) {
      int d = hexval(buf[i]);
      if (d < 0 || d >= base) return NAN;
      x = x * base + d;
    }
    return x;
  }
  for (size_t i = 0; i < n; i++)
    if (!strchr("0123456789+-.eE", buf[i])) return NAN;
  char *end;
  double x = strtod(buf, &end);
  return *end ? NAN : x;
}
static int raw_kind(const val *v) {   /* JS typeof-ish class of the raw value */
  switch (v->t) {
    case V_UNDEF: return 0;
    case V_NULL: return 1;
    case V_BOOL: return 2;
    case V_INT: case V_FLOAT: return 3;
    case V_STR: return 4;
    default: return 5;   /* object or function */
  }
}
/* x.value === y.value */
static int js_strict_eq(const val *a, const val *b) {
  int ka = raw_kind(a), kb = raw_kind(b);
  if (ka != kb) return 0;
  switch (ka) {
    case 0: case 1: return 1;
    case 2: return a->u.b == b->u.b;
    case 3: return a->u.num == b->u.num;
    case 4: return a->u.str.len == b->u.str.len && !memcmp(a->u.str.s, b->u.str.s, a->u.str.len);
    default:
      if (a->t == V_FN && b->t == V_FN) return a->u.fn.f == b->u.fn.f && a->u.fn.self == b->u.fn.self && a->u.fn.macro == b->u.fn.macro;
      if (a->t == V_ARR && b->t == V_ARR) return a == b;
      if (is_container(a) && is_container(b)) return a->u.obj == b->u.obj;
      return 0;
  }
}
/* x.value == y.value (JavaScript's loose equality) */
static int js_loose_eq(rctx *r, const val *a, const val *b, int line) {
  int ka = raw_kind(a), kb = raw_kind(b);
  if (ka == kb) return js_strict_eq(a, b);
  if (ka <= 1 && kb <= 1) return 1;
  if (ka <= 1 || kb <= 1) return 0;
  if (ka == 2 || kb == 2) {   /* booleans compare as numbers */
    val na = *a, nb = *b;
    if (ka == 2) { na.t = V_INT; na.u.num = a->u.b; }
    if (kb == 2) { nb.t = V_INT; nb.u.num = b->u.b; }
    return js_loose_eq(r, &na, &nb, line);
  }
  if (ka == 3 && kb == 4) return a->u.num == js_tonumber(b->u.str.s, b->u.str.len);
  if (ka == 4 && kb == 3) return b->u.num == js_tonumber(a->u.str.s, a->u.str.len);
  /* an object against a number or string: the object's primitive (arrays join their items) */
  const val *o = ka == 5 ? a : b, *p = ka == 5 ? b : a;
  if (o->t != V_ARR) return 0;   /* "[object Map]" or a function's source: never equal to template data */
  sbuf s = {0};
  raw_str(r, &s, o, line);
  val sv = {V_STR, 0, {.str = {s.p ? s.p : "", s.len}}};
  return js_loose_eq(r, &sv, p, line);
}
/* UTF-16 code unit order of two UTF-8 strings */
static int cmp_utf16(const char *a, size_t an, const char *b, size_t bn) {
  size_t i = 0, j = 0;
  while (i < an && j < bn) {
    uint32_t x, y;
    int n = u8_dec(a, an, i, &x), m = u8_dec(b, bn, j, &y);
    if (x != y) {
      uint32_t kx = x >= 0x10000 ? 0xD800 + ((x - 0x10000) >> 10) : x, ky = y >= 0x10000 ? 0xD800 + ((y - 0x10000) >> 10) : y;
      if (kx != ky) return kx < ky ? -1 : 1;
      return x < y ? -1 : 1;   /* same high surrogate: low surrogates order as code points */
    }
    i += (size_t)n;
    j += (size_t)m;
  }
  return (i < an) - (j < bn);
}
/* compareRuntimeValues(): sort and dictsort */
static int cmp_vals(rctx *r, const val *a, const val *b, int case_sensitive, int line) {
  if (a->t == V_NULL && b->t == V_NULL) return 0;
  if (a->t == V_NULL || b->t == V_NULL) die(&r->c, LM_ERR_ARG, line, "cannot compare %s with %s", type_name(a), type_name(b));
  if (a->t == V_UNDEF && b->t == V_UNDEF) return 0;
  if (a->t == V_UNDEF || b->t == V_UNDEF) die(&r->c, LM_ERR_ARG, line, "cannot compare %s with %s", type_name(a), type_name(b));
  if (is_numlike(a) && is_numlike(b)) { double x = numlike(a), y = numlike(b); return x < y ? -1 : x > y ? 1 : 0; }
  if (a->t != b->t || a->tuple != b->tuple) die(&r->c, LM_ERR_ARG, line, "cannot compare %s with %s", type_name(a), type_name(b));
  if (a->t != V_STR) die(&r->c, LM_ERR_ARG, line, "cannot compare %s values", type_name(a));
  if (case_sensitive) return cmp_utf16(a->u.str.s, a->u.str.len, b->u.str.s, b->u.str.len);
  sbuf la = {0}, lb = {0};
  case_map(&r->c, &la, a->u.str.s, a->u.str.len, 0);
  case_map(&r->c, &lb, b->u.str.s, b->u.str.len, 0);
  return cmp_utf16(la.p ? la.p : "", la.len, lb.p ? lb.p : "", lb.len);
}
/* stable merge sort with a comparator that may die */
typedef struct { const val *key; val *item; } sort_ent;
static void msort(rctx *r, sort_ent *v, sort_ent *tmp, size_t n, int cs, int rev, int line) {
  if (n < 2) return;
  size_t h = n / 2;
  msort(r, v, tmp, h, cs, rev, line);
  msort(r, v + h, tmp, n - h, cs, rev, line);
  size_t i = 0, j = h, k = 0;
  while (i < h && j < n) {
    int c = cmp_vals(r, v[j].key, v[i].key, cs, line);
    if (rev) c = -c;
    tmp[k++] = c < 0 ? v[j++] : v[i++];
  }
  while (i < h) tmp[k++] = v[i++];
  while (j < n) tmp[k++] = v[j++];
  memcpy(v, tmp, n * sizeof *v);
}
static val *sorted(rctx *r, sort_ent *e, size_t n, int cs, int rev, int line) {
  sort_ent *tmp = n ? ar_alloc(&r->c, n * sizeof *tmp) : NULL;
  msort(r, e, tmp, n, cs, rev, line);
  val *out = varr(r, n);
  for (size_t i = 0; i < n; i++) out->u.arr.v[i] = e[i].item;
  return out;
}

/* ======================================================================== built-in functions and methods */

static void no_kw(rctx *r, const map *kw, const char *fname, int line) {
  if (kw && kw->n) die(&r->c, LM_ERR_UNSUPPORTED, line, "keyword arguments to %s() are not supported", fname);
}
#define SELF_STR (self->u.str.s), (self->u.str.len)

static val *m_upper(rctx *r, val *self, val **a, size_t n, map *kw, int line) {
  sbuf b = {0}; case_map(&r->c, &b, SELF_STR, 1); return vstr_sb(r, &b);
}
static val *m_lower(rctx *r, val *self, val **a, size_t n, map *kw, int line) {
  sbuf b = {0}; case_map(&r->c, &b, SELF_STR, 0); return vstr_sb(r, &b);
}
static val *trim_val(rctx *r, val *self, int left, int right) {
  const char *s = self->u.str.s;
  size_t len = self->u.str.len, a = left ? ws_fwd(s, len, 0) : 0;
  size_t e = right ? len - ws_back(s, len) : len;
  if (a >= e) return vstr(r, "", 0);
  return vstr(r, s + a, e - a);
}
/* strip / lstrip / rstrip ignore their argument, as the reference does */
static val *m_strip(rctx *r, val *self, val **a, size_t n, map *kw, int line) { return trim_val(r, self, 1, 1); }
static val *m_lstrip(rctx *r, val *self, val **a, size_t n, map *kw, int line) { return trim_val(r, self, 1, 0); }
static val *m_rstrip(rctx *r, val *self, val **a, size_t n, map *kw, int line) { return trim_val(r, self, 0, 1); }
static val *m_title(rctx *r, val *self, val **a, size_t n, map *kw, int line) {
  const char *s = self->u.str.s;
  size_t len = self->u.str.len;
  char *o = ar_alloc(&r->c, len + 1);
  for (size_t i = 0; i < len; i++) {
    o[i] = s[i];
    if (is_word(s[i]) && (i == 0 || !is_word(s[i - 1]))) o[i] = (char)toupper((unsigned char)s[i]);
  }
  return vstr(r, o, len);
}
static val *m_capitalize(rctx *r, val *self, val **a, size_t n, map *kw, int line) {
  const char *s = self->u.str.s;
  size_t len = self->u.str.len;
  if (!len) return self;
  uint32_t cp;
  int k = u8_dec(s, len, 0, &cp);
  if (cp >= 0x10000) return vstr(r, s, len);   /* charAt(0) is half a surrogate pair */
  sbuf b = {0};
  case_map(&r->c, &b, s, (size_t)k, 1);
  sb_add(&r->c, &b, s + k, len - (size_t)k);
  return vstr_sb(r, &b);
}
static int prefix_test(rctx *r, val *self, val **a, size_t n, map *kw, int line, int end, const char *fname) {
  no_kw(r, kw, fname, line);
  if (!n) die(&r->c, LM_ERR_ARG, line, "%s() needs an argument", fname);
  const char *s = self->u.str.s;
  size_t len = self->u.str.len;
  val **items = &a[0];
  size_t m = 1;
  if (a[0]->t == V_ARR) { items = a[0]->u.arr.v; m = a[0]->u.arr.n; }
  else if (a[0]->t != V_STR) die(&r->c, LM_ERR_ARG, line, "%s() takes a string or a tuple of strings, not %s", fname, type_name(a[0]));
  for (size_t i = 0; i < m; i++) {
    if (items[i]->t != V_STR) die(&r->c, LM_ERR_ARG, line, "%s() takes a string or a tuple of strings", fname);
    size_t pl = items[i]->u.str.len;
    if (pl <= len && !memcmp(end ? s + len - pl : s, items[i]->u.str.s, pl)) return 1;
  }
  return 0;
}
static val *m_startswith(rctx *r, val *self, val **a, size_t n, map *kw, int line) { return vbool(prefix_test(r, self, a, n, kw, line, 0, "startswith")); }
static val *m_endswith(rctx *r, val *self, val **a, size_t n, map *kw, int line) { return vbool(prefix_test(r, self, a, n, kw, line, 1, "endswith")); }

typedef struct { val **v; size_t n, cap; } vvec;
static void vv_push(rctx *r, vvec *x, val *v) {
  if (x->n == x->cap) {
    size_t cap = x->cap ? x->cap * 2 : 8;
    val **p = ar_alloc(&r->c, cap * sizeof(val *));
    if (x->n) memcpy(p, x->v, x->n * sizeof(val *));
    x->v = p;
    x->cap = cap;
  }
  x->v[x->n++] = v;
}
static val *vv_arr(rctx *r, vvec *x) {
  val *a = varr(r, 0);
  a->u.arr.v = x->v;
  a->u.arr.n = x->n;
  return a;
}
static const char *memfind(const char *h, size_t hn, const char *nd, size_t nn) {
  if (!nn) return h;
  if (nn > hn) return NULL;
  for (size_t i = 0; i + nn <= hn; i++)
    if (h[i] == nd[0] && !memcmp(h + i, nd, nn)) return h + i;
  return NULL;
}
static val *m_split(rctx *r, val *self, val **a, size_t n, map *kw, int line) {
  no_kw(r, kw, "split", line);
  val *sep = n > 0 ? a[0] : &VAL_NULL, *maxv = n > 1 ? a[1] : NULL;
  if (sep->t != V_STR && sep->t != V_NULL) die(&r->c, LM_ERR_ARG, line, "split(): the separator must be a string or none");
  if (maxv && maxv->t != V_INT) die(&r->c, LM_ERR_ARG, line, "split(): maxsplit must be an integer");
  double maxsplit = maxv ? maxv->u.num : -1;
  const char *s = self->u.str.s;
  size_t len = self->u.str.len;
  vvec out = {0};
  if (sep->t == V_NULL) {
    size_t i = ws_fwd(s, len, 0);
    while (i < len) {
      size_t j = i;
      while (j < len) {
        uint32_t cp;
        int k = u8_dec(s, len, j, &cp);
        if (js_space(cp)) break;
        j += (size_t)k;
      }
      if (maxsplit != -1 && (double)out.n >= maxsplit) { vv_push(r, &out, vstr(r, s + i, len - i)); break; }
      vv_push(r, &out, vstr(r, s + i, j - i));
      i = j + ws_fwd(s, len, j);
    }
    return vv_arr(r, &out);
  }
  const char *p = sep->u.str.s;
  size_t pl = sep->u.str.len;
  if (!pl) die(&r->c, LM_ERR_ARG, line, "split(): empty separator");
  for (size_t i = 0;;) {
    const char *f = memfind(s + i, len - i, p, pl);
    if (!f) { vv_push(r, &out, vstr(r, s + i, len - i)); break; }
    vv_push(r, &out, vstr(r, s + i, (size_t)(f - (s + i))));
    i = (size_t)(f - s) + pl;
  }
  if (maxsplit != -1 && (double)out.n > maxsplit) {   /* splice(maxsplit), joined back with the separator */
    double st = maxsplit >= 0 ? maxsplit : (double)out.n + maxsplit;
    size_t start = st < 0 ? 0 : (size_t)st, off = 0;
    if (start < out.n) {
      for (size_t q = 0; q < start; q++) off += out.v[q]->u.str.len + pl;   /* parts are consecutive */
      out.n = start;
      vv_push(r, &out, vstr(r, s + off, len - off));
    }
  }
  return vv_arr(r, &out);
}
/* the reference's replace(): count null or negative = all; "" matches between code points */
static val *str_replace(rctx *r, val *self, val *old, val *new_, double count) {
  if (count == 0) return self;
  double remaining = (isnan(count) || count < 0) ? INFINITY : count;
  const char *s = self->u.str.s, *o = old->u.str.s;
  size_t len = self->u.str.len, ol = old->u.str.len;
  sbuf b = {0};
  if (!ol) {
    for (size_t i = 0;; ) {
      if (remaining > 0) { sb_add(&r->c, &b, new_->u.str.s, new_->u.str.len); remaining--; }
      if (i >= len) break;
      uint32_t cp;
      int k = u8_dec(s, len, i, &cp);
      sb_add(&r->c, &b, s + i, (size_t)k);
      i += (size_t)k;
    }
    return vstr_sb(r, &b);
  }
  size_t i = 0;
  while (i < len && remaining > 0) {
    const char *f = memfind(s + i, len - i, o, ol);
    if (!f) break;
    sb_add(&r->c, &b, s + i, (size_t)(f - (s + i)));
    sb_add(&r->c, &b, new_->u.str.s, new_->u.str.len);
    remaining--;
    i = (size_t)(f - s) + ol;
  }
  sb_add(&r->c, &b, s + i, len - i);
  return vstr_sb(r, &b);
}
static val *m_replace(rctx *r, val *self, val **a, size_t n, map *kw, int line) {
  if (n < 2) die(&r->c, LM_ERR_ARG, line, "replace() needs two arguments");
  if (a[0]->t != V_STR || a[1]->t != V_STR) die(&r->c, LM_ERR_ARG, line, "replace() arguments must be strings");
  val *count = &VAL_NULL;
  if (n > 2) count = a[2];
  else if (kw && kw->n) { val *c = map_get(kw, "count", 5); if (c) count = c; }
  if (count->t != V_INT && count->t != V_NULL) die(&r->c, LM_ERR_ARG, line, "replace(): count must be an integer or none");
  return str_replace(r, self, a[0], a[1], count->t == V_NULL ? NAN : count->u.num);
}

static val *o_get(rctx *r, val *self, val **a, size_t n, map *kw, int line) {
  no_kw(r, kw, "get", line);
  if (!n || a[0]->t != V_STR) die(&r->c, LM_ERR_ARG, line, "get(): the key must be a string");
  val *v = map_get(self->u.obj, a[0]->u.str.s, a[0]->u.str.len);
  return v ? v : n > 1 ? a[1] : &VAL_NULL;
}
static val *o_items(rctx *r, val *self, val **a, size_t n, map *kw, int line) {
  const map *m = self->u.obj;
  val *out = varr(r, m->n);
  for (size_t i = 0; i < m->n; i++) {
    val *pair = varr(r, 2);
    pair->u.arr.v[0] = vstr(r, m->e[i].k, m->e[i].klen);
    pair->u.arr.v[1] = m->e[i].v;
    out->u.arr.v[i] = pair;
  }
  return out;
}
static val *o_keys(rctx *r, val *self, val **a, size_t n, map *kw, int line) {
  const map *m = self->u.obj;
  val *out = varr(r, m->n);
  for (size_t i = 0; i < m->n; i++) out->u.arr.v[i] = vstr(r, m->e[i].k, m->e[i].klen);
  return out;
}
static val *o_values(rctx *r, val *self, val **a, size_t n, map *kw, int line) {
  const map *m = self->u.obj;
  val *out = varr(r, m->n);
  for (size_t i = 0; i < m->n; i++) out->u.arr.v[i] = m->e[i].v;
  return out;
}
static val *kwarg(map *kw, const char *k) { return kw ? map_get(kw, k, strlen(k)) : NULL; }
static val *o_dictsort(rctx *r, val *self, val **a, size_t n, map *kw, int line) {
  val *cs = n > 0 ? a[0] : kwarg(kw, "case_sensitive"), *by = n > 1 ? a[1] : kwarg(kw, "by"), *rev = n > 2 ? a[2] : kwarg(kw, "reverse");
  if (cs && cs->t != V_BOOL) die(&r->c, LM_ERR_ARG, line, "dictsort: case_sensitive must be a boolean");
  if (by && (by->t != V_STR || !((by->u.str.len == 3 && !memcmp(by->u.str.s, "key", 3)) || (by->u.str.len == 5 && !memcmp(by->u.str.s, "value", 5)))))
    die(&r->c, LM_ERR_ARG, line, "dictsort: by must be 'key' or 'value'");
  if (rev && rev->t != V_BOOL) die(&r->c, LM_ERR_ARG, line, "dictsort: reverse must be a boolean");
  val *items = o_items(r, self, NULL, 0, NULL, line);
  size_t m = items->u.arr.n;
  int idx = by && by->u.str.len == 5 ? 1 : 0;
  sort_ent *e = m ? ar_alloc(&r->c, m * sizeof *e) : NULL;
  for (size_t i = 0; i < m; i++) { e[i].item = items->u.arr.v[i]; e[i].key = items->u.arr.v[i]->u.arr.v[idx]; }
  return sorted(r, e, m, cs && cs->u.b, rev && rev->u.b, line);
}

static const struct { const char *name; bfn f; } STR_METHODS[] = {
  {"upper", m_upper}, {"lower", m_lower}, {"strip", m_strip}, {"title", m_title}, {"capitalize", m_capitalize},
  {"rstrip", m_rstrip}, {"lstrip", m_lstrip}, {"startswith", m_startswith}, {"endswith", m_endswith},
  {"split", m_split}, {"replace", m_replace},
};
static const struct { const char *name; bfn f; } OBJ_METHODS[] = {
  {"get", o_get}, {"items", o_items}, {"keys", o_keys}, {"values", o_values}, {"dictsort", o_dictsort},
};
/* builtins of a value (RuntimeValue.builtins) */
static val *builtin_of(rctx *r, val *self, const char *k, size_t klen) {
  if (self->t == V_STR) {
    if (klen == 6 && !memcmp(k, "length", 6)) return vint(r, (double)utf16_len(self->u.str.s, self->u.str.len));
    for (size_t i = 0; i < sizeof STR_METHODS / sizeof STR_METHODS[0]; i++)
      if (strlen(STR_METHODS[i].name) == klen && !memcmp(STR_METHODS[i].name, k, klen)) return vfn(r, STR_METHODS[i].f, self, STR_METHODS[i].name);
  } else if (self->t == V_ARR) {
    if (klen == 6 && !memcmp(k, "length", 6)) return vint(r, (double)self->u.arr.n);
  } else if (self->t == V_OBJ) {
    for (size_t i = 0; i < sizeof OBJ_METHODS / sizeof OBJ_METHODS[0]; i++)
      if (strlen(OBJ_METHODS[i].name) == klen && !memcmp(OBJ_METHODS[i].name, k, klen)) return vfn(r, OBJ_METHODS[i].f, self, OBJ_METHODS[i].name);
  }
  return NULL;
}

/* ---- globals */

static val *g_namespace(rctx *r, val *self, val **a, size_t n, map *kw, int line) {
  if (n > 1) die(&r->c, LM_ERR_ARG, line, "namespace() takes at most 1 positional argument, got %zu", n);
  val *ns = vobj(r, V_NS);
  if (n == 1) {
    val *src = a[0];
    if (src->t == V_OBJ) {
      for (size_t i = 0; i < src->u.obj->n; i++) map_set(r, ns->u.obj, src->u.obj->e[i].k, src->u.obj->e[i].klen, src->u.obj->e[i].v);
    } else if (src->t == V_ARR) {
      for (size_t i = 0; i < src->u.arr.n; i++) {
        val *pr = src->u.arr.v[i];
        if (pr->t != V_ARR || pr->u.arr.n != 2 || pr->u.arr.v[0]->t != V_STR)
          die(&r->c, LM_ERR_ARG, line, "namespace() expects an object or a list of [key, value] pairs");
        map_set(r, ns->u.obj, pr->u.arr.v[0]->u.str.s, pr->u.arr.v[0]->u.str.len, pr->u.arr.v[1]);
      }
    } else {
      die(&r->c, LM_ERR_ARG, line, "namespace() cannot take %s", type_name(src));
    }
  }
  if (kw) for (size_t i = 0; i < kw->n; i++) map_set(r, ns->u.obj, kw->e[i].k, kw->e[i].klen, kw->e[i].v);
  return ns;
}
static val *g_raise(rctx *r, val *self, val **a, size_t n, map *kw, int line) {
  sbuf b = {0};
  if (n) raw_str(r, &b, a[0], line);
  die(&r->c, LM_ERR_ARG, line, "raise_exception: %.*s", (int)(b.len > 600 ? 600 : b.len), b.p ? b.p : "");
}
static val *g_range(rctx *r, val *self, val **a, size_t n, map *kw, int line) {
  no_kw(r, kw, "range", line);
  if (n < 1 || n > 3) die(&r->c, LM_ERR_ARG, line, "range() takes 1 to 3 arguments");
  for (size_t i = 0; i < n; i++) if (!is_num(a[i])) die(&r->c, LM_ERR_ARG, line, "range() takes numbers, not %s", type_name(a[i]));
  double start = 0, stop, step = 1;
  if (n == 1) stop = a[0]->u.num;
  else { start = a[0]->u.num; stop = a[1]->u.num; }
  if (n == 3) step = a[2]->u.num;
  if (step == 0) die(&r->c, LM_ERR_ARG, line, "range() step must not be zero");
  if (isnan(start) || isnan(stop) || isnan(step)) return varr(r, 0);
  double cnt = step > 0 ? ceil((stop - start) / step) : ceil((start - stop) / -step);
  if (!(cnt <= LM_TPL_MAX_RANGE)) die(&r->c, LM_ERR_RANGE, line, "range() of more than %d numbers", LM_TPL_MAX_RANGE);
  vvec out = {0};
  for (double x = start; step > 0 ? x < stop : x > stop; x += step) {
    if (out.n >= LM_TPL_MAX_RANGE) die(&r->c, LM_ERR_RANGE, line, "range() of more than %d numbers", LM_TPL_MAX_RANGE);
    vv_push(r, &out, vnum(r, x == trunc(x) ? V_INT : V_FLOAT, x));
  }
  return vv_arr(r, &out);
}
static val *g_strftime_now(rctx *r, val *self, val **a, size_t n, map *kw, int line) {
  if (!n || a[0]->t != V_STR) die(&r->c, LM_ERR_ARG, line, "strftime_now() takes a format string");
  static const char *const mon[] = {"January", "February", "March", "April", "May", "June", "July", "August",
                                    "September", "October", "November", "December"};
  time_t now = time(NULL);
  struct tm tm;
  localtime_r(&now, &tm);
  const char *f = a[0]->u.str.s;
  size_t len = a[0]->u.str.len;
  sbuf b = {0};
  char t[32];
  for (size_t i = 0; i < len; i++) {
    if (f[i] == '%' && i + 1 < len && strchr("YmdbBHM%", f[i + 1]) && f[i + 1]) {
      switch (f[++i]) {
        case 'Y': snprintf(t, sizeof t, "%d", tm.tm_year + 1900); break;
        case 'm': snprintf(t, sizeof t, "%02d", tm.tm_mon + 1); break;
        case 'd': snprintf(t, sizeof t, "%02d", tm.tm_mday); break;
        case 'b': snprintf(t, sizeof t, "%.3s", mon[tm.tm_mon]); break;
        case 'B': snprintf(t, sizeof t, "%s", mon[tm.tm_mon]); break;
        case 'H': snprintf(t, sizeof t, "%02d", tm.tm_hour); break;
        case 'M': snprintf(t, sizeof t, "%02d", tm.tm_min); break;
        default: snprintf(t, sizeof t, "%%");
      }
      sb_str(&r->c, &b, t);
    } else {
      sb_ch(&r->c, &b, f[i]);
    }
  }
  return vstr_sb(r, &b);
}

/* ======================================================================== evaluator */

static val *eval(rctx *r, const node *x, env *e);
static val *eval_block(rctx *r, nlist body, env *e);

static env *new_env(rctx *r, env *parent) {
  env *e = ar_zalloc(&r->c, sizeof(env));
  e->parent = parent;
  return e;
}
static int name_is(const char *s, size_t len, const char *w) { return len == strlen(w) && !memcmp(s, w, len); }
static val *lookup(rctx *r, env *e, const char *name, size_t len) {
  for (env *x = e; x; x = x->parent) {
    val *v = map_get(&x->vars, name, len);
    if (v) return v;
    if (x == e && name_is(name, len, "namespace")) return vfn(r, g_namespace, NULL, "namespace");   /* every scope has it */
  }
  return &VAL_UNDEF;
}

/* ---- arguments */
typedef struct { vvec pos; map *kw; } args_t;
static args_t eval_args(rctx *r, nlist l, env *e) {
  args_t A = {{0}, NULL};
  for (int i = 0; i < l.n; i++) {
    const node *a = l.v[i];
    if (a->k == N_SPREAD) {
      val *v = eval(r, a->a, e);
      if (v->t != V_ARR) die(&r->c, LM_ERR_ARG, a->line, "cannot unpack %s with '*'", type_name(v));
      for (size_t j = 0; j < v->u.arr.n; j++) vv_push(r, &A.pos, v->u.arr.v[j]);
    } else if (a->k != N_KWARG && a->k != N_KWSPREAD) {
      vv_push(r, &A.pos, eval(r, a, e));
    }
  }
  for (int i = 0; i < l.n; i++) {
    const node *a = l.v[i];
    if (a->k == N_KWARG) {
      if (!A.kw) A.kw = ar_zalloc(&r->c, sizeof(map));
      if (map_get(A.kw, a->s, a->slen)) die(&r->c, LM_ERR_ARG, a->line, "keyword argument '%.*s' given twice", (int)a->slen, a->s);
      map_set(r, A.kw, a->s, a->slen, eval(r, a->a, e));
    } else if (a->k == N_KWSPREAD) {
      val *v = eval(r, a->a, e);
      if (v->t != V_OBJ) die(&r->c, LM_ERR_ARG, a->line, "the argument after '**' must be an object, not %s", type_name(v));
      if (!A.kw) A.kw = ar_zalloc(&r->c, sizeof(map));
      for (size_t j = 0; j < v->u.obj->n; j++) {
        kv *p = &v->u.obj->e[j];
        if (map_get(A.kw, p->k, p->klen)) die(&r->c, LM_ERR_ARG, a->line, "keyword argument '%.*s' given twice", (int)p->klen, p->k);
        map_set(r, A.kw, p->k, p->klen, p->v);
      }
    }
  }
  return A;
}

/* ---- macros */
static void assign(rctx *r, env *e, const node *target, val *v, int line);
static val *call_macro(rctx *r, val *fn, val **a, size_t n, map *kw, env *callsite, int line) {
  const node *m = fn->u.fn.macro;
  if (++r->c.calls > LM_TPL_MAX_CALL_DEPTH) die(&r->c, LM_ERR_RANGE, line, "macro calls nested more than %d deep", LM_TPL_MAX_CALL_DEPTH);
  env *scope = new_env(r, fn->u.fn.closure ? fn->u.fn.closure : callsite);
  map *left = ar_zalloc(&r->c, sizeof(map));
  if (kw) for (size_t i = 0; i < kw->n; i++) map_set(r, left, kw->e[i].k, kw->e[i].klen, kw->e[i].v);
  const node *pending[256];
  int np = 0;
  if (m->l1.n > 256) die(&r->c, LM_ERR_RANGE, line, "a macro with more than 256 parameters");
  for (int i = 0; i < m->l1.n; i++) {
    const node *pn = m->l1.v[i];
    val *v = (size_t)i < n ? a[i] : NULL;
    if (!v) {
      v = map_get(left, pn->s, pn->slen);
      if (v) map_del(left, pn->s, pn->slen);
    }
    if (!v && pn->k == N_KWARG) pending[np++] = pn;
    map_set(r, &scope->vars, pn->s, pn->slen, v ? v : &VAL_UNDEF);
  }
  if (m->flag & MACRO_KWARGS) {
    val *o = vobj(r, V_OBJ);
    o->u.obj = left;
    map_set(r, &scope->vars, "kwargs", 6, o);
  } else if (left->n) {
    die(&r->c, LM_ERR_ARG, line, "macro '%.*s' takes no keyword argument '%.*s'", (int)m->slen, m->s, (int)left->e[0].klen, left->e[0].k);
  }
  if (m->flag & MACRO_VARARGS) {
    val *va = varr(r, n > (size_t)m->l1.n ? n - (size_t)m->l1.n : 0);
    for (size_t i = (size_t)m->l1.n; i < n; i++) va->u.arr.v[i - (size_t)m->l1.n] = a[i];
    map_set(r, &scope->vars, "varargs", 7, va);
  } else if (n > (size_t)m->l1.n) {
    die(&r->c, LM_ERR_ARG, line, "macro '%.*s' takes at most %d arguments", (int)m->slen, m->s, m->l1.n);
  }
  for (int i = 0; i < np; i++) map_set(r, &scope->vars, pending[i]->s, pending[i]->slen, eval(r, pending[i]->a, scope));
  val *out = eval_block(r, m->l2, scope);
  r->c.calls--;
  return out;
}
static val *call_fn(rctx *r, val *fn, args_t *A, env *e, int line) {
  if (fn->u.fn.macro) return call_macro(r, fn, A->pos.v, A->pos.n, A->kw, e, line);
  return fn->u.fn.f(r, fn->u.fn.self, A->pos.v, A->pos.n, A->kw, line);
}

/* ---- member access and slices */
static int64_t clampi(int64_t x, int64_t lo, int64_t hi) { return x < lo ? lo : x > hi ? hi : x; }
static val *eval_slice(rctx *r, val *obj, const node *sl, env *e) {
  if (obj->t != V_ARR && obj->t != V_STR) die(&r->c, LM_ERR_ARG, sl->line, "cannot slice %s", type_name(obj));
  val *p[3];
  const node *q[3] = {sl->a, sl->b, sl->c};
  for (int i = 0; i < 3; i++) {
    p[i] = q[i] ? eval(r, q[i], e) : &VAL_UNDEF;
    if (p[i]->t != V_INT && p[i]->t != V_UNDEF) die(&r->c, LM_ERR_ARG, sl->line, "slice bounds must be integers, not %s", type_name(p[i]));
  }
  /* code points of a string, items of a list */
  size_t n;
  size_t *cps = NULL;   /* byte offsets of code points (+ end) */
  if (obj->t == V_ARR) n = obj->u.arr.n;
  else {
    const char *s = obj->u.str.s;
    size_t len = obj->u.str.len;
    cps = ar_alloc(&r->c, (len + 1) * sizeof(size_t));
    n = 0;
    for (size_t i = 0; i < len;) { uint32_t cp; cps[n++] = i; i += (size_t)u8_dec(s, len, i, &cp); }
    cps[n] = len;
  }
  int64_t len = (int64_t)n, step = p[2]->t == V_INT ? to_i64(p[2]->u.num) : 1, start, stop;
  int dir = step > 0 ? 1 : step < 0 ? -1 : 0;
  if (dir >= 0) {
    start = p[0]->t == V_INT ? to_i64(p[0]->u.num) : 0;
    stop = p[1]->t == V_INT ? to_i64(p[1]->u.num) : len;
    start = start < 0 ? (len + start > 0 ? len + start : 0) : clampi(start, 0, len);
    stop = stop < 0 ? (len + stop > 0 ? len + stop : 0) : clampi(stop, 0, len);
  } else {
    start = p[0]->t == V_INT ? to_i64(p[0]->u.num) : len - 1;
    stop = p[1]->t == V_INT ? to_i64(p[1]->u.num) : -1;
    start = start < 0 ? (len + start > -1 ? len + start : -1) : clampi(start, -1, len - 1);
    stop = stop < -1 ? (len + stop > -1 ? len + stop : -1) : clampi(stop, -1, len - 1);
  }
  vvec out = {0};
  sbuf b = {0};
  if (dir != 0)
    for (int64_t i = start; dir * i < dir * stop; i += step) {
      if (obj->t == V_ARR) vv_push(r, &out, obj->u.arr.v[i]);
      else sb_add(&r->c, &b, obj->u.str.s + cps[i], cps[i + 1] - cps[i]);
    }
  if (obj->t == V_ARR) return vv_arr(r, &out);
  return vstr_sb(r, &b);
}
/* s.at(i) on UTF-16 units: half of a surrogate pair prints as U+FFFD */
static val *str_at(rctx *r, val *s, double di) {
  int64_t len16 = (int64_t)utf16_len(s->u.str.s, s->u.str.len), i = to_i64(trunc(di));
  if (i < 0) i += len16;
  if (i < 0 || i >= len16) return &VAL_UNDEF;
  int64_t u = 0;
  for (size_t j = 0; j < s->u.str.len;) {
    uint32_t cp;
    int k = u8_dec(s->u.str.s, s->u.str.len, j, &cp);
    int w = cp >= 0x10000 ? 2 : 1;
    if (i < u + w) return w == 2 ? vstr(r, "\xEF\xBF\xBD", 3) : vstr(r, s->u.str.s + j, (size_t)k);
    u += w;
    j += (size_t)k;
  }
  return &VAL_UNDEF;
}
static val *member_of(rctx *r, val *obj, const node *m, env *e) {
  val *prop;
  if (m->flag) {
    if (m->b->k == N_SLICE) return eval_slice(r, obj, m->b, e);
    prop = eval(r, m->b, e);
  } else if (m->b->k == N_INT) {
    prop = vint(r, m->b->num);
  } else {
    prop = vstr(r, m->b->s, m->b->slen);
  }
  val *v = NULL;
  if (is_container(obj)) {
    if (prop->t != V_STR) die(&r->c, LM_ERR_ARG, m->line, "cannot index %s with %s", type_name(obj), type_name(prop));
    v = map_get(obj->u.obj, prop->u.str.s, prop->u.str.len);
    if (!v && obj->t == V_OBJ) v = builtin_of(r, obj, prop->u.str.s, prop->u.str.len);
  } else if (obj->t == V_ARR || obj->t == V_STR) {
    if (prop->t == V_INT) {
      if (obj->t == V_STR) v = str_at(r, obj, prop->u.num);
      else {
        int64_t i = to_i64(trunc(prop->u.num)), n = (int64_t)obj->u.arr.n;
        if (i < 0) i += n;
        if (i >= 0 && i < n) v = obj->u.arr.v[i];
      }
    } else if (prop->t == V_STR) {
      v = builtin_of(r, obj, prop->u.str.s, prop->u.str.len);
    } else {
      die(&r->c, LM_ERR_ARG, m->line, "cannot index %s with %s", type_name(obj), type_name(prop));
    }
  } else {
    if (prop->t != V_STR) die(&r->c, LM_ERR_ARG, m->line, "cannot index %s with %s", type_name(obj), type_name(prop));
  }
  return v ? v : &VAL_UNDEF;
}

/* ---- tests (x is name) */
static const char *const KNOWN_TESTS[] = {"boolean", "callable", "odd", "even", "false", "true", "none", "string", "number",
                                          "integer", "iterable", "mapping", "sequence", "lower", "upper", "defined",
                                          "undefined", "equalto", "eq", NULL};
static int run_test(rctx *r, const char *name, size_t len, val *x, val *arg, int has_arg, int line) {
#define T(w) name_is(name, len, w)
  if (T("boolean")) return x->t == V_BOOL;
  if (T("callable")) return x->t == V_FN;
  if (T("odd") || T("even")) {
    if (x->t != V_INT) die(&r->c, LM_ERR_ARG, line, "test '%s' needs an integer, not %s", T("odd") ? "odd" : "even", type_name(x));
    double m = fmod(x->u.num, 2);
    return T("odd") ? m != 0 : m == 0;
  }
  if (T("false")) return x->t == V_BOOL && !x->u.b;
  if (T("true")) return x->t == V_BOOL && x->u.b;
  if (T("none")) return x->t == V_NULL;
  if (T("string")) return x->t == V_STR;
  if (T("number")) return is_num(x);
  if (T("integer")) return x->t == V_INT;
  if (T("iterable")) return (x->t == V_ARR && !x->tuple) || x->t == V_STR;
  if (T("mapping")) return x->t == V_OBJ;
  if (T("sequence")) return x->t == V_ARR || x->t == V_OBJ || x->t == V_STR;
  if (T("lower") || T("upper")) {
    if (x->t != V_STR) return 0;
    sbuf b = {0};
    case_map(&r->c, &b, x->u.str.s, x->u.str.len, T("upper"));
    return b.len == x->u.str.len && (!b.len || !memcmp(b.p, x->u.str.s, b.len));
  }
  if (T("defined")) return x->t != V_UNDEF;
  if (T("undefined")) return x->t == V_UNDEF;
  if (T("equalto") || T("eq")) {
    if (!has_arg) die(&r->c, LM_ERR_ARG, line, "test '%.*s' needs a value to compare with", (int)len, name);
    return js_strict_eq(x, arg);
  }
#undef T
  die(&r->c, LM_ERR_UNSUPPORTED, line, "test '%.*s' is not supported", (int)(len > 40 ? 40 : len), name);
}

/* ---- filters */
static const char *const KNOWN_FILTERS[] = {
  "safe", "tojson", "list", "first", "last", "length", "reverse", "sort", "join", "string", "unique", "upper", "lower",
  "title", "capitalize", "trim", "indent", "int", "float", "abs", "items", "bool", "default", "selectattr",
  "rejectattr", "map", "replace", "get", "keys", "values", "dictsort", NULL};
static _Noreturn void bad_filter(rctx *r, const char *f, size_t fl, val *x, int with_args, int line) {
  int known = 0;
  for (const char *const *k = KNOWN_FILTERS; *k; k++) if (name_is(f, fl, *k)) known = 1;
  if (!known) die(&r->c, LM_ERR_UNSUPPORTED, line, "filter '%.*s' is not supported", (int)(fl > 40 ? 40 : fl), f);
  die(&r->c, LM_ERR_UNSUPPORTED, line, "filter '%.*s'%s cannot be applied to %s", (int)(fl > 40 ? 40 : fl), f,
      with_args ? " with arguments" : "", type_name(x));
}
/* parseInt(s, 10) / parseFloat(s); NAN when there is no number */
static double js_parse_int(const char *s, size_t len) {
  size_t i = ws_fwd(s, len, 0);
  int neg = 0;
  if (i < len && (s[i] == '+' || s[i] == '-')) neg = s[i++] == '-';
  size_t st = i;
  double x = 0;
  while (i < len && isdigit((unsigned char)s[i])) x = x * 10 + (s[i++] - '0');
  if (i == st) return NAN;
  return neg ? -x : x;
}
static double js_parse_float(const char *s, size_t len) {
  size_t i = ws_fwd(s, len, 0);
  char buf[400];
  size_t n = 0;
  if (i < len && (s[i] == '+' || s[i] == '-')) buf[n++] = s[i++];
  if (len - i >= 8 && !memcmp(s + i, "Infinity", 8)) return n && buf[0] == '-' ? -INFINITY : INFINITY;
  size_t digits = 0;
  while (i < len && isdigit((unsigned char)s[i]) && n < 380) { buf[n++] = s[i++]; digits++; }
  if (i < len && s[i] == '.') {
    buf[n++] = s[i++];
    while (i < len && isdigit((unsigned char)s[i]) && n < 380) { buf[n++] = s[i++]; digits++; }
  }
  if (!digits) return NAN;
  if (i < len && (s[i] == 'e' || s[i] == 'E')) {
    size_t j = i + 1, m = n;
    char tmp[12];
    size_t t = 0;
    tmp[t++] = 'e';
    if (j < len && (s[j] == '+' || s[j] == '-')) tmp[t++] = s[j++];
    size_t ed = 0;
    while (j < len && isdigit((unsigned char)s[j]) && t < 10) { tmp[t++] = s[j++]; ed++; }
    if (ed) { memcpy(buf + m, tmp, t); n = m + t; }
  }
  buf[n] = 0;
  return strtod(buf, NULL);
}
static val *attr_path(rctx *r, val *item, const char *path, size_t plen) {
  val *v = item;
  size_t i = 0;
  for (;;) {
    size_t j = i;
    while (j < plen && path[j] != '.') j++;
    if (is_container(v)) {
      val *w = map_get(v->u.obj, path + i, j - i);
      v = w ? w : &VAL_UNDEF;
    } else if (v->t == V_ARR) {
      double k = js_parse_int(path + i, j - i);
      if (isnan(k) || k < 0 || k >= (double)v->u.arr.n) return &VAL_UNDEF;
      v = v->u.arr.v[(size_t)k];
    } else {
      return &VAL_UNDEF;
    }
    if (j >= plen) return v;
    i = j + 1;
  }
}
static val *indent_str(rctx *r, val *x, int64_t width, int first, int blank, int line) {
  if (width < 0 || width > 4096) die(&r->c, LM_ERR_RANGE, line, "indent: width %lld out of range", (long long)width);
  const char *s = x->u.str.s;
  size_t len = x->u.str.len;
  sbuf b = {0};
  size_t i = 0;
  for (int li = 0;; li++) {
    size_t j = i;
    while (j < len && s[j] != '\n') j++;
    int skip = (!first && li == 0) || (!blank && j == i);
    if (!skip) for (int64_t k = 0; k < width; k++) sb_ch(&r->c, &b, ' ');
    sb_add(&r->c, &b, s + i, j - i);
    if (j >= len) break;
    sb_ch(&r->c, &b, '\n');
    i = j + 1;
  }
  return vstr_sb(r, &b);
}
static val *join_vals(rctx *r, val **v, size_t n, val *sep, int line) {
  sbuf b = {0};
  for (size_t i = 0; i < n; i++) {
    if (i) sb_add(&r->c, &b, sep->u.str.s, sep->u.str.len);
    if (v[i]->t != V_NULL && v[i]->t != V_UNDEF) raw_str(r, &b, v[i], line);
  }
  return vstr_sb(r, &b);
}
static val *str_json(rctx *r, val *x, int indent, int ascii, const char *is, const char *ks, int undef_null, int line) {
  sbuf b = {0};
  to_json(r, &b, x, indent, ascii, is, ks, 0, undef_null, line);
  return vstr_sb(r, &b);
}
static val *apply_filter(rctx *r, val *x, const node *f, env *e) {
  int line = f->line;
  if (f->k == N_IDENT) {
    const char *n = f->s;
    size_t nl = f->slen;
#define F(w) name_is(n, nl, w)
    if (F("safe")) return x;
    if (F("tojson")) return str_json(r, x, 0, 0, NULL, NULL, 1, line);
    if (x->t == V_ARR) {
      if (F("list")) return x;
      if (F("first") || F("last")) {
        if (!x->u.arr.n) die(&r->c, LM_ERR_ARG, line, "filter '%s' of an empty list", F("first") ? "first" : "last");
        return x->u.arr.v[F("first") ? 0 : x->u.arr.n - 1];
      }
      if (F("length")) return vint(r, (double)x->u.arr.n);
      if (F("reverse")) {
        val *o = varr(r, x->u.arr.n);
        for (size_t i = 0; i < x->u.arr.n; i++) o->u.arr.v[i] = x->u.arr.v[x->u.arr.n - 1 - i];
        return o;
      }
      if (F("sort")) {
        sort_ent *se = x->u.arr.n ? ar_alloc(&r->c, x->u.arr.n * sizeof *se) : NULL;
        for (size_t i = 0; i < x->u.arr.n; i++) se[i].key = se[i].item = x->u.arr.v[i];
        return sorted(r, se, x->u.arr.n, 0, 0, line);
      }
      if (F("join")) { val sep = {V_STR, 0, {.str = {"", 0}}}; return join_vals(r, x->u.arr.v, x->u.arr.n, &sep, line); }
      if (F("string")) return str_json(r, x, 0, 0, NULL, NULL, 0, line);
      if (F("unique")) {
        vvec o = {0};
        for (size_t i = 0; i < x->u.arr.n; i++) {
          int seen = 0;
          for (size_t j = 0; j < o.n && !seen; j++) seen = js_strict_eq(o.v[j], x->u.arr.v[i]) || (is_num(o.v[j]) && is_num(x->u.arr.v[i]) && isnan(o.v[j]->u.num) && isnan(x->u.arr.v[i]->u.num));
          if (!seen) vv_push(r, &o, x->u.arr.v[i]);
        }
        return vv_arr(r, &o);
      }
    } else if (x->t == V_STR) {
      if (F("length")) return vint(r, (double)utf16_len(x->u.str.s, x->u.str.len));
      if (F("upper")) return m_upper(r, x, NULL, 0, NULL, line);
      if (F("lower")) return m_lower(r, x, NULL, 0, NULL, line);
      if (F("title")) return m_title(r, x, NULL, 0, NULL, line);
      if (F("capitalize")) return m_capitalize(r, x, NULL, 0, NULL, line);
      if (F("trim")) return trim_val(r, x, 1, 1);
      if (F("indent")) return indent_str(r, x, 4, 0, 0, line);
      if (F("join") || F("string")) return x;
      if (F("int")) { double v = js_parse_int(x->u.str.s, x->u.str.len); return vint(r, isnan(v) ? 0 : v); }
      if (F("float")) { double v = js_parse_float(x->u.str.s, x->u.str.len); return vnum(r, V_FLOAT, isnan(v) ? 0 : v); }
    } else if (is_num(x)) {
      if (F("abs")) return vnum(r, x->t, fabs(x->u.num));
      if (F("int")) return vint(r, floor(x->u.num));
      if (F("float")) return vnum(r, V_FLOAT, x->u.num);
      if (F("string")) { sbuf b = {0}; rt_str(r, &b, x, line); return vstr_sb(r, &b); }
    } else if (x->t == V_OBJ) {
      if (F("items")) return o_items(r, x, NULL, 0, NULL, line);
      if (F("length")) return vint(r, (double)x->u.obj->n);
      val *b = builtin_of(r, x, n, nl);
      if (b) return b->t == V_FN ? b->u.fn.f(r, x, NULL, 0, NULL, line) : b;
    } else if (x->t == V_BOOL) {
      if (F("bool")) return x;
      if (F("int")) return vint(r, x->u.b);
      if (F("float")) return vnum(r, V_FLOAT, x->u.b);
      if (F("string")) return vstr(r, x->u.b ? "true" : "false", x->u.b ? 4 : 5);
    }
    bad_filter(r, n, nl, x, 0, line);
  }
  /* name(args) */
  const char *n = f->a->s;
  size_t nl = f->a->slen;
  if (F("tojson")) {
    args_t A = eval_args(r, f->l1, e);
    val *ind = kwarg(A.kw, "indent"), *asc = kwarg(A.kw, "ensure_ascii"), *sk = kwarg(A.kw, "sort_keys"), *sep = kwarg(A.kw, "separators");
    if (ind && ind->t != V_INT && ind->t != V_NULL) die(&r->c, LM_ERR_ARG, line, "tojson: indent must be an integer");
    if (asc && asc->t != V_BOOL) die(&r->c, LM_ERR_ARG, line, "tojson: ensure_ascii must be a boolean");
    if (sk && sk->t != V_BOOL) die(&r->c, LM_ERR_ARG, line, "tojson: sort_keys must be a boolean");
    if (sk && sk->u.b) die(&r->c, LM_ERR_UNSUPPORTED, line, "tojson(sort_keys=true) is not supported");
    const char *is = NULL, *ks = NULL;
    if (sep && sep->t != V_NULL) {
      if (sep->t != V_ARR || sep->u.arr.n != 2 || sep->u.arr.v[0]->t != V_STR || sep->u.arr.v[1]->t != V_STR)
        die(&r->c, LM_ERR_ARG, line, "tojson: separators must be a pair of strings");
      is = ar_strndup(&r->c, sep->u.arr.v[0]->u.str.s, sep->u.arr.v[0]->u.str.len);
      ks = ar_strndup(&r->c, sep->u.arr.v[1]->u.str.s, sep->u.arr.v[1]->u.str.len);
      if (strlen(is) != sep->u.arr.v[0]->u.str.len || strlen(ks) != sep->u.arr.v[1]->u.str.len)
        die(&r->c, LM_ERR_UNSUPPORTED, line, "tojson: separators with NUL characters are not supported");
    }
    int indent = 0;
    if (ind && ind->t == V_INT) {
      if (ind->u.num < 0 || ind->u.num > 64) die(&r->c, LM_ERR_RANGE, line, "tojson: indent out of range");
      indent = (int)ind->u.num;
    }
    return str_json(r, x, indent, asc && asc->u.b, is, ks, 1, line);
  }
  if (F("join")) {
    val **items;
    size_t cnt;
    if (x->t == V_STR) {
      vvec cps = {0};
      for (size_t i = 0; i < x->u.str.len;) {
        uint32_t cp;
        int k = u8_dec(x->u.str.s, x->u.str.len, i, &cp);
        vv_push(r, &cps, vstr(r, x->u.str.s + i, (size_t)k));
        i += (size_t)k;
      }
      items = cps.v;
      cnt = cps.n;
    } else if (x->t == V_ARR) {
      items = x->u.arr.v;
      cnt = x->u.arr.n;
    } else {
      bad_filter(r, n, nl, x, 1, line);
    }
    args_t A = eval_args(r, f->l1, e);
    val *sep = A.pos.n ? A.pos.v[0] : kwarg(A.kw, "separator");
    val empty = {V_STR, 0, {.str = {"", 0}}};
    if (!sep) sep = &empty;
    if (sep->t != V_STR) die(&r->c, LM_ERR_ARG, line, "join: the separator must be a string");
    return join_vals(r, items, cnt, sep, line);
  }
  if (F("int") || F("float")) {
    int isint = F("int");
    args_t A = eval_args(r, f->l1, e);
    val *def = A.pos.n ? A.pos.v[0] : kwarg(A.kw, "default");
    if (!def) def = vnum(r, isint ? V_INT : V_FLOAT, 0);
    if (x->t == V_STR) {
      double v = isint ? js_parse_int(x->u.str.s, x->u.str.len) : js_parse_float(x->u.str.s, x->u.str.len);
      return isnan(v) ? def : vnum(r, isint ? V_INT : V_FLOAT, v);
    }
    if (is_num(x)) return x;
    if (x->t == V_BOOL) return vnum(r, isint ? V_INT : V_FLOAT, x->u.b);
    bad_filter(r, n, nl, x, 1, line);
  }
  if (F("default")) {
    args_t A = eval_args(r, f->l1, e);
    val *def = A.pos.n ? A.pos.v[0] : vstr(r, "", 0);
    val *boolean = A.pos.n > 1 ? A.pos.v[1] : kwarg(A.kw, "boolean");
    if (boolean && boolean->t != V_BOOL) die(&r->c, LM_ERR_ARG, line, "default: boolean must be a boolean");
    if (x->t == V_UNDEF || (boolean && boolean->u.b && !truthy(x))) return def;
    return x;
  }
  if (x->t == V_ARR) {
    if (F("sort")) {
      args_t A = eval_args(r, f->l1, e);
      val *rev = A.pos.n > 0 ? A.pos.v[0] : kwarg(A.kw, "reverse"), *cs = A.pos.n > 1 ? A.pos.v[1] : kwarg(A.kw, "case_sensitive");
      val *at = A.pos.n > 2 ? A.pos.v[2] : kwarg(A.kw, "attribute");
      if (rev && rev->t != V_BOOL) die(&r->c, LM_ERR_ARG, line, "sort: reverse must be a boolean");
      if (cs && cs->t != V_BOOL) die(&r->c, LM_ERR_ARG, line, "sort: case_sensitive must be a boolean");
      if (at && at->t != V_STR && at->t != V_INT && at->t != V_NULL) die(&r->c, LM_ERR_ARG, line, "sort: attribute must be a string or an integer");
      const char *path = NULL;
      size_t plen = 0;
      char num[64];
      if (at && at->t == V_STR) { path = at->u.str.s; plen = at->u.str.len; }
      else if (at && at->t == V_INT) { js_num(at->u.num, num, sizeof num); path = ar_strndup(&r->c, num, strlen(num)); plen = strlen(num); }
      size_t cnt = x->u.arr.n;
      sort_ent *se = cnt ? ar_alloc(&r->c, cnt * sizeof *se) : NULL;
      for (size_t i = 0; i < cnt; i++) {
        se[i].item = x->u.arr.v[i];
        se[i].key = path ? attr_path(r, x->u.arr.v[i], path, plen) : x->u.arr.v[i];
      }
      return sorted(r, se, cnt, cs && cs->u.b, rev && rev->u.b, line);
    }
    if (F("selectattr") || F("rejectattr")) {
      int sel = F("selectattr");
      for (size_t i = 0; i < x->u.arr.n; i++)
        if (!is_container(x->u.arr.v[i])) die(&r->c, LM_ERR_ARG, line, "%s can only be applied to a list of objects", sel ? "selectattr" : "rejectattr");
      for (int i = 0; i < f->l1.n; i++)
        if (f->l1.v[i]->k != N_STR) die(&r->c, LM_ERR_UNSUPPORTED, line, "the arguments of %s must be string literals", sel ? "selectattr" : "rejectattr");
      if (!f->l1.n) die(&r->c, LM_ERR_ARG, line, "%s needs an attribute name", sel ? "selectattr" : "rejectattr");
      const node *attr = f->l1.v[0], *test = f->l1.n > 1 ? f->l1.v[1] : NULL;
      val *tval = f->l1.n > 2 ? vstr(r, f->l1.v[2]->s, f->l1.v[2]->slen) : NULL;
      if (test) {   /* an unknown test fails even on [] */
        int known = 0;
        for (const char *const *k = KNOWN_TESTS; *k; k++) if (name_is(test->s, test->slen, *k)) known = 1;
        if (!known) die(&r->c, LM_ERR_UNSUPPORTED, line, "test '%.*s' is not supported", (int)(test->slen > 40 ? 40 : test->slen), test->s);
      }
      vvec o = {0};
      for (size_t i = 0; i < x->u.arr.n; i++) {
        val *a = map_get(x->u.arr.v[i]->u.obj, attr->s, attr->slen);
        int res = a ? (test ? run_test(r, test->s, test->slen, a, tval, f->l1.n > 2, line) : truthy(a)) : 0;
        if (sel ? res : !res) vv_push(r, &o, x->u.arr.v[i]);
      }
      return vv_arr(r, &o);
    }
    if (F("map")) {
      args_t A = eval_args(r, f->l1, e);
      val *at = kwarg(A.kw, "attribute"), *def = kwarg(A.kw, "default");
      if (!at) die(&r->c, LM_ERR_UNSUPPORTED, line, "filter 'map' without attribute= is not supported");
      if (at->t != V_STR) die(&r->c, LM_ERR_ARG, line, "map: attribute must be a string");
      val *o = varr(r, x->u.arr.n);
      for (size_t i = 0; i < x->u.arr.n; i++) {
        if (!is_container(x->u.arr.v[i])) die(&r->c, LM_ERR_ARG, line, "map: the items must be objects");
        val *v = attr_path(r, x->u.arr.v[i], at->u.str.s, at->u.str.len);
        o->u.arr.v[i] = v->t == V_UNDEF && def ? def : v;
      }
      return o;
    }
  } else if (x->t == V_STR) {
    if (F("indent")) {
      args_t A = eval_args(r, f->l1, e);
      val *w = A.pos.n > 0 ? A.pos.v[0] : kwarg(A.kw, "width");
      val *first = A.pos.n > 1 ? A.pos.v[1] : kwarg(A.kw, "first"), *blank = A.pos.n > 2 ? A.pos.v[2] : kwarg(A.kw, "blank");
      if (w && w->t != V_INT) die(&r->c, LM_ERR_ARG, line, "indent: width must be an integer");
      return indent_str(r, x, w ? to_i64(w->u.num) : 4, first && js_truthy(first), blank && js_truthy(blank), line);
    }
    if (F("replace")) {
      args_t A = eval_args(r, f->l1, e);
      return m_replace(r, x, A.pos.v, A.pos.n, A.kw, line);
    }
  } else if (x->t == V_OBJ) {
    val *b = builtin_of(r, x, n, nl);
    if (b && b->t == V_FN) {
      args_t A = eval_args(r, f->l1, e);
      return b->u.fn.f(r, x, A.pos.v, A.pos.n, A.kw, line);
    }
  }
#undef F
  bad_filter(r, n, nl, x, 1, line);
}

/* ---- operators */
static val *eval_unary(rctx *r, const node *x, env *e) {
  val *a = eval(r, x->a, e);
  if (x->op == OP_NOT) return vbool(!truthy(a));
  if (!is_numlike(a)) die(&r->c, LM_ERR_ARG, x->line, "cannot apply unary '%s' to %s", OP_NAMES[x->op], type_name(a));
  double v = numlike(a) * (x->op == OP_NEG ? -1 : 1);
  return vnum(r, a->t == V_FLOAT ? V_FLOAT : V_INT, v);
}
static val *concat(rctx *r, val *a, val *b, int line) {
  sbuf s = {0};
  raw_str(r, &s, a, line);
  raw_str(r, &s, b, line);
  return vstr_sb(r, &s);
}
static val *eval_binary(rctx *r, const node *x, env *e) {
  int op = x->op, line = x->line;
  val *a = eval(r, x->a, e);
  if (op == OP_AND) return truthy(a) ? eval(r, x->b, e) : a;
  if (op == OP_OR) return truthy(a) ? a : eval(r, x->b, e);
  val *b = eval(r, x->b, e);
  if (op == OP_EQ) return vbool(js_loose_eq(r, a, b, line));
  if (op == OP_NE) return vbool(!js_loose_eq(r, a, b, line));
  if (a->t == V_UNDEF || b->t == V_UNDEF) {
    if (b->t == V_UNDEF && (op == OP_IN || op == OP_NOTIN)) return vbool(op == OP_NOTIN);
    die(&r->c, LM_ERR_ARG, line, "cannot apply '%s' to %s and %s", OP_NAMES[op], type_name(a), type_name(b));
  }
  if (a->t == V_NULL || b->t == V_NULL)
    die(&r->c, LM_ERR_ARG, line, "cannot apply '%s' to %s and %s", OP_NAMES[op], type_name(a), type_name(b));
  if (op == OP_CONCAT) return concat(r, a, b, line);
  if (op == OP_POW && is_numlike(a) && is_numlike(b)) {
    double p = numlike(a), q = numlike(b);
    if (p == 0 && q < 0) die(&r->c, LM_ERR_ARG, line, "0.0 cannot be raised to a negative power");
    double v = (isnan(p) || isnan(q)) ? NAN : pow(p, q);
    if (!isfinite(v)) die(&r->c, LM_ERR_ARG, line, "'**' result is not a finite real number");
    return vnum(r, (a->t == V_FLOAT || b->t == V_FLOAT || q < 0) ? V_FLOAT : V_INT, v);
  }
  if (is_num(a) && is_num(b)) {
    double p = a->u.num, q = b->u.num;
    int fl = a->t == V_FLOAT || b->t == V_FLOAT;
    switch (op) {
      case OP_ADD: return vnum(r, fl ? V_FLOAT : V_INT, p + q);
      case OP_SUB: return vnum(r, fl ? V_FLOAT : V_INT, p - q);
      case OP_MUL: return vnum(r, fl ? V_FLOAT : V_INT, p * q);
      case OP_DIV: return vnum(r, V_FLOAT, p / q);
      case OP_FLOORDIV: return vnum(r, fl ? V_FLOAT : V_INT, floor(p / q));
      case OP_MOD: return vnum(r, fl ? V_FLOAT : V_INT, fmod(p, q));
      case OP_LT: return vbool(p < q);
      case OP_GT: return vbool(p > q);
      case OP_GE: return vbool(p >= q);
      case OP_LE: return vbool(p <= q);
    }
  } else if (a->t == V_ARR && b->t == V_ARR) {
    if (op == OP_ADD) {
      val *o = varr(r, a->u.arr.n + b->u.arr.n);
      for (size_t i = 0; i < a->u.arr.n; i++) o->u.arr.v[i] = a->u.arr.v[i];
      for (size_t i = 0; i < b->u.arr.n; i++) o->u.arr.v[a->u.arr.n + i] = b->u.arr.v[i];
      return o;
    }
  } else if (b->t == V_ARR) {
    if (op == OP_IN || op == OP_NOTIN) {
      int found = 0;
      for (size_t i = 0; i < b->u.arr.n && !found; i++) found = js_strict_eq(b->u.arr.v[i], a);
      return vbool(op == OP_IN ? found : !found);
    }
  }
  if ((a->t == V_STR || b->t == V_STR) && op == OP_ADD) return concat(r, a, b, line);
  if (a->t == V_STR && b->t == V_STR && (op == OP_IN || op == OP_NOTIN)) {
    int found = memfind(b->u.str.s, b->u.str.len, a->u.str.s, a->u.str.len) != NULL;
    return vbool(op == OP_IN ? found : !found);
  }
  if (a->t == V_STR && b->t == V_OBJ && (op == OP_IN || op == OP_NOTIN)) {
    int found = map_get(b->u.obj, a->u.str.s, a->u.str.len) != NULL;
    return vbool(op == OP_IN ? found : !found);
  }
  die(&r->c, LM_ERR_ARG, line, "cannot apply '%s' to %s and %s", OP_NAMES[op], type_name(a), type_name(b));
}

/* ---- statements */
static void assign(rctx *r, env *e, const node *t, val *v, int line) {
  if (t->k == N_IDENT) { map_set(r, &e->vars, t->s, t->slen, v); return; }
  if (t->k == N_TUPLE) {
    if (v->t != V_ARR) die(&r->c, LM_ERR_ARG, line, "cannot unpack %s", type_name(v));
    if (v->u.arr.n != (size_t)t->l1.n) die(&r->c, LM_ERR_ARG, line, "too %s items to unpack", (size_t)t->l1.n > v->u.arr.n ? "few" : "many");
    for (int i = 0; i < t->l1.n; i++) {
      if (t->l1.v[i]->k != N_IDENT) die(&r->c, LM_ERR_FORMAT, line, "can only unpack into names");
      map_set(r, &e->vars, t->l1.v[i]->s, t->l1.v[i]->slen, v->u.arr.v[i]);
    }
    return;
  }
  die(&r->c, LM_ERR_FORMAT, line, "cannot assign to this expression");
}
static val *eval_set(rctx *r, const node *x, env *e) {
  val *rhs = x->b ? eval(r, x->b, e) : eval_block(r, x->l1, e);
  const node *t = x->a;
  if (t->k == N_MEMBER) {
    val *obj = eval(r, t->a, e);
    if (obj->t != V_NS) die(&r->c, LM_ERR_ARG, x->line, "cannot set an attribute of %s (only of a namespace)", type_name(obj));
    if (t->b->k != N_IDENT) die(&r->c, LM_ERR_FORMAT, x->line, "can only set a namespace attribute by name");
    map_set(r, obj->u.obj, t->b->s, t->b->slen, rhs);
  } else {
    assign(r, e, t, rhs, x->line);
  }
  return &VAL_NULL;
}
typedef struct { size_t i; int none; sbuf out; } loop_state;
static val *eval_for(rctx *r, const node *x, env *e) {
  env *scope = new_env(r, e);
  const node *itn = x->b, *test = NULL;
  if (itn->k == N_SELECT) { test = itn->b; itn = itn->a; }
  val *it = eval(r, itn, scope);
  if (it->t == V_OBJ) it = o_keys(r, it, NULL, 0, NULL, x->line);
  else if (it->t != V_ARR) die(&r->c, LM_ERR_ARG, x->line, "cannot loop over %s", type_name(it));
  vvec items = {0};
  for (size_t i = 0; i < it->u.arr.n; i++) {
    val *cur = it->u.arr.v[i];
    if (x->a->k == N_TUPLE) {
      if (cur->t != V_ARR || cur->tuple) die(&r->c, LM_ERR_ARG, x->line, "cannot unpack %s in the loop", type_name(cur));
      if (cur->u.arr.n != (size_t)x->a->l1.n) die(&r->c, LM_ERR_ARG, x->line, "too %s items to unpack", (size_t)x->a->l1.n > cur->u.arr.n ? "few" : "many");
    }
    if (test) {
      env *ls = new_env(r, scope);
      assign(r, ls, x->a, cur, x->line);
      if (!truthy(eval(r, test, ls))) continue;
    }
    vv_push(r, &items, cur);
  }
  loop_state *st = ar_zalloc(&r->c, sizeof *st);
  st->none = 1;
  jmp_buf jb;
  jmp_buf *saved = r->loop_jb;
  int depth = r->c.depth, calls = r->c.calls;
  int ctl = setjmp(jb);
  if (ctl) {
    r->c.depth = depth;
    r->c.calls = calls;
    if (ctl == CTL_BREAK) goto done;
    st->i++;
  }
  r->loop_jb = &jb;
  while (st->i < items.n) {
    size_t i = st->i, n = items.n;
    if (++r->c.steps > LM_TPL_MAX_STEPS) die(&r->c, LM_ERR_RANGE, x->line, "rendering takes more than %d steps", LM_TPL_MAX_STEPS);
    val *lo = vobj(r, V_OBJ);
    map *m = lo->u.obj;
    m->e = ar_alloc(&r->c, 9 * sizeof(kv));
    m->cap = 9;
    map_set(r, m, "index", 5, vint(r, (double)(i + 1)));
    map_set(r, m, "index0", 6, vint(r, (double)i));
    map_set(r, m, "revindex", 8, vint(r, (double)(n - i)));
    map_set(r, m, "revindex0", 9, vint(r, (double)(n - i - 1)));
    map_set(r, m, "first", 5, vbool(i == 0));
    map_set(r, m, "last", 4, vbool(i == n - 1));
    map_set(r, m, "length", 6, vint(r, (double)n));
    map_set(r, m, "previtem", 8, i > 0 ? items.v[i - 1] : &VAL_UNDEF);
    map_set(r, m, "nextitem", 8, i + 1 < n ? items.v[i + 1] : &VAL_UNDEF);
    map_set(r, &scope->vars, "loop", 4, lo);
    assign(r, scope, x->a, items.v[i], x->line);
    val *body = eval_block(r, x->l1, scope);
    sb_add(&r->c, &st->out, body->u.str.s, body->u.str.len);
    st->none = 0;
    st->i++;
  }
done:
  r->loop_jb = saved;
  if (st->none && x->l2.n) {
    val *d = eval_block(r, x->l2, scope);
    sb_add(&r->c, &st->out, d->u.str.s, d->u.str.len);
  }
  return vstr_sb(r, &st->out);
}
static val *eval_call(rctx *r, const node *x, env *e) {
  args_t A = eval_args(r, x->l1, e);
  const node *cal = x->a;
  val *fn;
  if (cal->k == N_MEMBER) {
    val *obj = eval(r, cal->a, e);
    fn = member_of(r, obj, cal, e);
    if (fn->t != V_FN) {
      if (!cal->flag && cal->b->k == N_IDENT && fn->t == V_UNDEF)
        die(&r->c, LM_ERR_UNSUPPORTED, x->line, "method '%.*s' of %s is not supported", (int)(cal->b->slen > 40 ? 40 : cal->b->slen), cal->b->s, type_name(obj));
      die(&r->c, LM_ERR_ARG, x->line, "cannot call %s", type_name(fn));
    }
  } else {
    fn = eval(r, cal, e);
    if (fn->t != V_FN) {
      if (cal->k == N_IDENT && fn->t == V_UNDEF)
        die(&r->c, LM_ERR_UNSUPPORTED, x->line, "function '%.*s' is not supported", (int)(cal->slen > 40 ? 40 : cal->slen), cal->s);
      die(&r->c, LM_ERR_ARG, x->line, "cannot call %s", type_name(fn));
    }
  }
  return call_fn(r, fn, &A, e, x->line);
}

static val *eval_block(rctx *r, nlist body, env *e) {
  sbuf b = {0};
  for (int i = 0; i < body.n; i++) {
    val *v = eval(r, body.v[i], e);
    if (v->t == V_STR) sb_add(&r->c, &b, v->u.str.s, v->u.str.len);
    else if (v->t != V_NULL && v->t != V_UNDEF) rt_str(r, &b, v, body.v[i]->line);
  }
  return vstr_sb(r, &b);
}

static val *eval_node(rctx *r, const node *x, env *e) {
  switch (x->k) {
    case N_STR: return vstr(r, x->s, x->slen);
    case N_INT: return vint(r, x->num);
    case N_FLOAT: return vnum(r, V_FLOAT, x->num);
    case N_IDENT: return lookup(r, e, x->s, x->slen);
    case N_ARRAY: case N_TUPLE: {
      val *a = varr(r, (size_t)x->l1.n);
      a->tuple = x->k == N_TUPLE;
      for (int i = 0; i < x->l1.n; i++) a->u.arr.v[i] = eval(r, x->l1.v[i], e);
      return a;
    }
    case N_OBJECT: {
      val *o = vobj(r, V_OBJ);
      for (int i = 0; i < x->l1.n; i++) {
        val *k = eval(r, x->l1.v[i], e);
        if (k->t != V_STR) die(&r->c, LM_ERR_ARG, x->line, "object keys must be strings, not %s", type_name(k));
        map_set(r, o->u.obj, k->u.str.s, k->u.str.len, eval(r, x->l2.v[i], e));
      }
      return o;
    }
    case N_MEMBER: return member_of(r, eval(r, x->a, e), x, e);
    case N_CALL: return eval_call(r, x, e);
    case N_UNARY: return eval_unary(r, x, e);
    case N_BINARY: return eval_binary(r, x, e);
    case N_FILTER: return apply_filter(r, eval(r, x->a, e), x->b, e);
    case N_FILTERBLOCK: return apply_filter(r, eval_block(r, x->l1, e), x->b, e);
    case N_TEST: {
      val *v = eval(r, x->a, e);
      int res = run_test(r, x->s, x->slen, v, NULL, 0, x->line);
      return vbool(x->flag ? !res : res);
    }
    case N_SELECT: return truthy(eval(r, x->b, e)) ? eval(r, x->a, e) : &VAL_UNDEF;
    case N_TERNARY: return truthy(eval(r, x->a, e)) ? eval(r, x->b, e) : eval(r, x->c, e);
    case N_IF: return eval_block(r, truthy(eval(r, x->a, e)) ? x->l1 : x->l2, e);
    case N_FOR: return eval_for(r, x, e);
    case N_SET: return eval_set(r, x, e);
    case N_MACRO: {
      val *fn = vfn(r, NULL, NULL, ar_strndup(&r->c, x->s, x->slen));
      fn->u.fn.macro = x;
      map_set(r, &e->vars, x->s, x->slen, fn);
      return &VAL_NULL;
    }
    case N_BREAK: case N_CONTINUE:
      if (!r->loop_jb) die(&r->c, LM_ERR_FORMAT, x->line, "'%s' outside a loop", x->k == N_BREAK ? "break" : "continue");
      longjmp(*r->loop_jb, x->k == N_BREAK ? CTL_BREAK : CTL_CONTINUE);
    case N_CALLBLOCK: {
      val *caller = vfn(r, NULL, NULL, "caller");
      caller->u.fn.macro = x->b;
      caller->u.fn.closure = e;
      args_t A = eval_args(r, x->l1, e);
      val *fn = eval(r, x->a, e);
      if (fn->t != V_FN) die(&r->c, LM_ERR_ARG, x->line, "'%.*s' in a call block is not a macro", (int)(x->a->slen > 40 ? 40 : x->a->slen), x->a->s);
      env *ne = new_env(r, e);
      map_set(r, &ne->vars, "caller", 6, caller);
      return call_fn(r, fn, &A, ne, x->line);
    }
    case N_COMMENT: return &VAL_NULL;
    default:
      die(&r->c, LM_ERR_FORMAT, x->line, "this expression cannot stand here");
  }
}
static val *eval(rctx *r, const node *x, env *e) {
  if (++r->c.steps > LM_TPL_MAX_STEPS) die(&r->c, LM_ERR_RANGE, x->line, "rendering takes more than %d steps", LM_TPL_MAX_STEPS);
  if (++r->c.depth > LM_TPL_MAX_EVAL_DEPTH) die(&r->c, LM_ERR_RANGE, x->line, "evaluation nested more than %d levels deep", LM_TPL_MAX_EVAL_DEPTH);
  val *v = eval_node(r, x, e);
  r->c.depth--;
  return v;
}

/* ======================================================================== JSON data -> values */

/* "0".."4294967294" without leading zeros: JavaScript objects list these keys first, ascending */
static int index_key(const char *k, double *out) {
  size_t n = strlen(k);
  if (!n || n > 10 || (n > 1 && k[0] == '0')) return 0;
  double x = 0;
  for (size_t i = 0; i < n; i++) {
    if (!isdigit((unsigned char)k[i])) return 0;
    x = x * 10 + (k[i] - '0');
  }
  if (x > 4294967294.0) return 0;
  *out = x;
  return 1;
}
static val *from_json(rctx *r, const cJSON *j, int depth, const char *what) {
  if (depth > 512) die(&r->c, LM_ERR_RANGE, 0, "%s: nested too deeply", what);
  if (cJSON_IsNull(j)) return &VAL_NULL;
  if (cJSON_IsTrue(j)) return &VAL_TRUE;
  if (cJSON_IsFalse(j)) return &VAL_FALSE;
  if (cJSON_IsNumber(j)) {
    double x = j->valuedouble;
    return vnum(r, isfinite(x) && x == trunc(x) ? V_INT : V_FLOAT, x);
  }
  if (cJSON_IsString(j)) {
    const char *s = j->valuestring ? j->valuestring : "";
    size_t n = strlen(s);
    if (!u8_valid(s, n)) die(&r->c, LM_ERR_FORMAT, 0, "%s: a string is not valid UTF-8", what);
    return vstr(r, s, n);
  }
  if (cJSON_IsArray(j)) {
    size_t n = 0;
    for (const cJSON *c = j->child; c; c = c->next) n++;
    val *a = varr(r, n);
    size_t i = 0;
    for (const cJSON *c = j->child; c; c = c->next) a->u.arr.v[i++] = from_json(r, c, depth + 1, what);
    return a;
  }
  if (cJSON_IsObject(j)) {
    val *o = vobj(r, V_OBJ);
    /* index-like keys first in ascending order, then the others in order; a repeated key keeps
     * its first place and its last value (JSON.parse + Object.entries) */
    for (int pass = 0; pass < 2; pass++) {
      size_t before = o->u.obj->n;
      for (const cJSON *c = j->child; c; c = c->next) {
        const char *k = c->string ? c->string : "";
        double idx;
        int is_idx = index_key(k, &idx);
        if (is_idx != (pass == 0)) continue;
        size_t kl = strlen(k);
        if (!u8_valid(k, kl)) die(&r->c, LM_ERR_FORMAT, 0, "%s: a key is not valid UTF-8", what);
        map_set(r, o->u.obj, k, kl, from_json(r, c, depth + 1, what));
      }
      if (pass == 0) {   /* insertion sort of the index keys by value */
        map *m = o->u.obj;
        for (size_t a = before + 1; a < m->n; a++) {
          kv t = m->e[a];
          double ta = 0;
          index_key(t.k, &ta);
          size_t b = a;
          for (; b > before; b--) {
            double tb = 0;
            index_key(m->e[b - 1].k, &tb);
            if (tb <= ta) break;
            m->e[b] = m->e[b - 1];
          }
          m->e[b] = t;
        }
      }
    }
    return o;
  }
  die(&r->c, LM_ERR_FORMAT, 0, "%s: unsupported JSON value", what);
}

/* ======================================================================== public API */

lm_status lm_template_parse(lm_template **out, const char *src, size_t len, const char *name) {
  *out = NULL;
  if (!name) name = "chat template";
  if (!src && len) return lm_error(LM_ERR_ARG, "%s: no source", name);
  if (len > LM_TPL_MAX_SRC) return lm_error(LM_ERR_RANGE, "%s: %zu bytes, more than the %zu MiB limit", name, len, LM_TPL_MAX_SRC >> 20);
  if (!u8_valid(src, len)) return lm_error(LM_ERR_FORMAT, "%s: not valid UTF-8", name);
  lm_template *t = calloc(1, sizeof *t);
  ctx *c = calloc(1, sizeof *c);
  if (t) t->name = lm_strdup(name);
  if (!t || !c || !t->name) {
    if (t) free(t->name);
    free(t);
    free(c);
    return lm_error(LM_ERR_NOMEM, "%s: out of memory", name);
  }
  c->name = t->name;
  if (setjmp(c->jb)) {
    lm_status st = c->status;
    ar_free_all(c->chunks);
    free(c);
    free(t->name);
    free(t);
    return st;
  }
  srcbuf b = preprocess(c, src ? src : "", len);
  toks T = {0};
  lex(c, &b, &T);
  parser p = {c, T.v, T.n, 0, 0};
  nvec body = {0};
  while (p.i < p.n) nv_push(c, &body, parse_any(&p));
  t->body = nv_list(&body);
  t->arena = c->chunks;
  free(c);
  *out = t;
  return LM_OK;
}

void lm_template_free(lm_template *t) {
  if (!t) return;
  ar_free_all(t->arena);
  free(t->name);
  free(t);
}

static const char *const RESERVED[] = {"true", "false", "none", "True", "False", "None", "raise_exception", "range",
                                       "strftime_now", "namespace", NULL};

lm_status lm_template_render(const lm_template *t, const cJSON *vars, char **out, size_t *len) {
  *out = NULL;
  if (len) *len = 0;
  if (!t) return lm_error(LM_ERR_ARG, "chat template: no template");
  if (vars && !cJSON_IsObject(vars)) return lm_error(LM_ERR_ARG, "%s: the variables must be a JSON object", t->name);
  rctx *r = calloc(1, sizeof *r);
  if (!r) return lm_error(LM_ERR_NOMEM, "%s: out of memory", t->name);
  r->c.name = t->name;
  if (setjmp(r->c.jb)) {
    lm_status st = r->c.status;
    ar_free_all(r->c.chunks);
    free(r);
    return st;
  }
  env *root = new_env(r, NULL);
  map_set(r, &root->vars, "false", 5, &VAL_FALSE);
  map_set(r, &root->vars, "true", 4, &VAL_TRUE);
  map_set(r, &root->vars, "none", 4, &VAL_NULL);
  map_set(r, &root->vars, "raise_exception", 15, vfn(r, g_raise, NULL, "raise_exception"));
  map_set(r, &root->vars, "range", 5, vfn(r, g_range, NULL, "range"));
  map_set(r, &root->vars, "strftime_now", 12, vfn(r, g_strftime_now, NULL, "strftime_now"));
  map_set(r, &root->vars, "True", 4, &VAL_TRUE);
  map_set(r, &root->vars, "False", 5, &VAL_FALSE);
  map_set(r, &root->vars, "None", 4, &VAL_NULL);
  if (vars)
    for (const cJSON *v = vars->child; v; v = v->next) {
      const char *k = v->string ? v->string : "";
      for (const char *const *w = RESERVED; *w; w++)
        if (!strcmp(k, *w)) die(&r->c, LM_ERR_ARG, 0, "variable '%s' is reserved", k);
      char what[96];
      snprintf(what, sizeof what, "variable '%.60s'", k);
      if (!u8_valid(k, strlen(k))) die(&r->c, LM_ERR_FORMAT, 0, "a variable name is not valid UTF-8");
      map_set(r, &root->vars, k, strlen(k), from_json(r, v, 0, what));
    }
  val *res = eval_block(r, t->body, root);
  char *o = malloc(res->u.str.len + 1);
  if (!o) die(&r->c, LM_ERR_NOMEM, 0, "out of memory");
  if (res->u.str.len) memcpy(o, res->u.str.s, res->u.str.len);
  o[res->u.str.len] = 0;
  *out = o;
  if (len) *len = res->u.str.len;
  ar_free_all(r->c.chunks);
  free(r);
  return LM_OK;
}

/* ---- model directories */

static lm_status token_field(const cJSON *cfg, const char *key, const char *path, char **out) {
  *out = NULL;
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
  if (!v || cJSON_IsNull(v)) return LM_OK;
  if (cJSON_IsObject(v)) v = cJSON_GetObjectItemCaseSensitive(v, "content");
  if (!cJSON_IsString(v) || !v->valuestring) return lm_error(LM_ERR_FORMAT, "%s: '%s' must be a string or an object with a string 'content'", path, key);
  *out = lm_strdup(v->valuestring);
  return *out ? LM_OK : LM_ERR_NOMEM;
}

void lm_chat_config_free(lm_chat_config *cc) {
  if (!cc) return;
  free(cc->template);
  free(cc->bos_token);
  free(cc->eos_token);
  free(cc->source);
  memset(cc, 0, sizeof *cc);
}

/* a GGUF file: tokenizer.chat_template (else ChatML) and the bos/eos tokens' text */
static lm_status gguf_chat_config(lm_chat_config *cc, const char *path) {
  lm_status st = lm_gguf_chat_template(path, &cc->template, &cc->bos_token, &cc->eos_token);
  if (!st && !cc->template) { cc->template = lm_strdup(LM_CHATML_TEMPLATE); cc->is_default = 1; }
  if (!st) cc->source = cc->is_default ? lm_strdup("ChatML (default)") : lm_strdup(path);
  if (!st && (!cc->template || !cc->source)) st = lm_error(LM_ERR_NOMEM, "out of memory");
  if (st) lm_chat_config_free(cc);
  return st;
}

lm_status lm_chat_config_load(lm_chat_config *cc, const char *dir) {
  memset(cc, 0, sizeof *cc);
  if (lm_gguf_is_file(dir)) return gguf_chat_config(cc, dir);
  if (!lm_dir_exists(dir)) return lm_error(LM_ERR_IO, "%s: not a directory", dir);
  char *path = lm_path_join(dir, "tokenizer_config.json"), *jpath = lm_path_join(dir, "chat_template.jinja");
  if (!path || !jpath) { free(path); free(jpath); return LM_ERR_NOMEM; }
  lm_status st = LM_OK;
  cJSON *cfg = NULL;
  if (lm_file_exists(path)) {
    char *text;
    size_t n;
    if ((st = lm_read_file(path, &text, &n))) goto out;
    cfg = cJSON_ParseWithLength(text, n);
    free(text);
    if (!cJSON_IsObject(cfg)) { st = lm_error(LM_ERR_FORMAT, "%s: not a JSON object", path); goto out; }
    if ((st = token_field(cfg, "bos_token", path, &cc->bos_token)) || (st = token_field(cfg, "eos_token", path, &cc->eos_token))) goto out;
  }
  if (lm_file_exists(jpath)) {   /* newer transformers save the template beside the config */
    size_t n;
    if ((st = lm_read_file(jpath, &cc->template, &n))) goto out;
    if (strlen(cc->template) != n) { st = lm_error(LM_ERR_FORMAT, "%s: contains a NUL byte", jpath); goto out; }
    cc->source = lm_strdup(jpath);
    goto out;
  }
  const cJSON *ct = cfg ? cJSON_GetObjectItemCaseSensitive(cfg, "chat_template") : NULL;
  if (ct && !cJSON_IsNull(ct)) {
    if (cJSON_IsString(ct)) {
      cc->template = lm_strdup(ct->valuestring);
    } else if (cJSON_IsArray(ct)) {
      int i = 0;
      for (const cJSON *e = ct->child; e; e = e->next, i++) {
        const cJSON *nm = cJSON_GetObjectItemCaseSensitive(e, "name"), *tp = cJSON_GetObjectItemCaseSensitive(e, "template");
        if (!cJSON_IsObject(e) || !cJSON_IsString(nm) || !cJSON_IsString(tp)) {
          st = lm_error(LM_ERR_FORMAT, "%s: chat_template[%d] must be an object with string 'name' and 'template'", path, i);
          goto out;
        }
        if (!strcmp(nm->valuestring, "default")) { cc->template = lm_strdup(tp->valuestring); break; }
      }
      if (!cc->template) { st = lm_error(LM_ERR_FORMAT, "%s: chat_template lists no template named 'default'", path); goto out; }
    } else {
      st = lm_error(LM_ERR_FORMAT, "%s: chat_template must be a string or a list of {name, template}", path);
      goto out;
    }
    cc->source = lm_strdup(path);
    goto out;
  }
  cc->template = lm_strdup(LM_CHATML_TEMPLATE);
  cc->source = lm_strdup("ChatML (default)");
  cc->is_default = 1;
out:
  cJSON_Delete(cfg);
  free(path);
  free(jpath);
  if (!st && (!cc->template || !cc->source)) st = lm_error(LM_ERR_NOMEM, "out of memory");
  if (st) lm_chat_config_free(cc);
  return st;
}

lm_status lm_chat_render(const lm_chat_config *cc, const cJSON *req, char **out, size_t *len) {
  *out = NULL;
  if (len) *len = 0;
  if (!cJSON_IsObject(req)) return lm_error(LM_ERR_FORMAT, "request: must be a JSON object");
  const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(req, "messages");
  if (!cJSON_IsArray(msgs)) return lm_error(LM_ERR_FORMAT, "request: 'messages' must be a list of messages");
  int i = 0;
  for (const cJSON *m = msgs->child; m; m = m->next, i++)
    if (!cJSON_IsObject(m)) return lm_error(LM_ERR_FORMAT, "request: messages[%d] must be an object", i);
  const cJSON *agp = cJSON_GetObjectItemCaseSensitive(req, "add_generation_prompt");
  if (agp && !cJSON_IsBool(agp)) return lm_error(LM_ERR_FORMAT, "request: 'add_generation_prompt' must be true or false");
  const cJSON *tools = cJSON_GetObjectItemCaseSensitive(req, "tools"), *docs = cJSON_GetObjectItemCaseSensitive(req, "documents");
  if (tools && !cJSON_IsNull(tools) && !cJSON_IsArray(tools)) return lm_error(LM_ERR_FORMAT, "request: 'tools' must be a list");
  if (docs && !cJSON_IsNull(docs) && !cJSON_IsArray(docs)) return lm_error(LM_ERR_FORMAT, "request: 'documents' must be a list");
  const cJSON *kw = cJSON_GetObjectItemCaseSensitive(req, "chat_template_kwargs");
  if (kw && !cJSON_IsNull(kw) && !cJSON_IsObject(kw)) return lm_error(LM_ERR_FORMAT, "request: 'chat_template_kwargs' must be an object");

  cJSON *vars = cJSON_CreateObject();
  if (!vars) return lm_error(LM_ERR_NOMEM, "out of memory");
  lm_status st = LM_OK;
  int ok = cJSON_AddItemReferenceToObject(vars, "messages", (cJSON *)msgs) &&
           cJSON_AddBoolToObject(vars, "add_generation_prompt", cJSON_IsTrue(agp)) != NULL;
  if (ok && cJSON_IsArray(tools)) ok = cJSON_AddItemReferenceToObject(vars, "tools", (cJSON *)tools);
  if (ok && cJSON_IsArray(docs)) ok = cJSON_AddItemReferenceToObject(vars, "documents", (cJSON *)docs);
  if (ok && cc->bos_token) ok = cJSON_AddStringToObject(vars, "bos_token", cc->bos_token) != NULL;
  if (ok && cc->eos_token) ok = cJSON_AddStringToObject(vars, "eos_token", cc->eos_token) != NULL;
  if (ok && cJSON_IsObject(kw))
    for (const cJSON *k = kw->child; k && ok; k = k->next) {
      if (cJSON_GetObjectItemCaseSensitive(vars, k->string)) {
        st = lm_error(LM_ERR_FORMAT, "request: chat_template_kwargs.%s would replace a variable lmkit sets", k->string);
        break;
      }
      ok = cJSON_AddItemReferenceToObject(vars, k->string, (cJSON *)k);
    }
  if (!st && !ok) st = lm_error(LM_ERR_NOMEM, "out of memory");
  lm_template *t = NULL;
  if (!st) st = lm_template_parse(&t, cc->template, strlen(cc->template), "chat template");
  if (!st) st = lm_template_render(t, vars, out, len);
  lm_template_free(t);
  cJSON_Delete(vars);
  return st;
}
