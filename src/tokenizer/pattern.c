/* pattern.c — what tokenizer.json's Split, Replace and the built-in splitters
 * search for, and the Unicode properties they use (pipeline.h).
 *
 * A pattern is a regex, a literal string or a character class. Regexes in
 * tokenizer.json are written for Oniguruma (HF tokenizers' SysRegex); lmkit
 * compiles them with PCRE2 (UTF + UCP, JIT) after rewriting the escapes whose
 * meaning differs: Oniguruma's Unicode \s is White_Space, \w is
 * Letter|Mark|Number|Connector_Punctuation, \d is Decimal_Number and \h is a
 * hex digit; they are spelled out as explicit classes so PCRE2's own notions
 * (which vary with its version) never matter. Everything else real files use
 * ((?i:...), \p{L}, \p{N}, lookahead, {m,n}, possessive and atomic groups)
 * means the same in both. Matches are enumerated as Oniguruma's Rust binding
 * does: an empty match right after the previous match is skipped.
 *
 * lm_tok_pattern_segments turns matches into HF's (offsets, is_match) list. */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>
#include <cjson/cJSON.h>
#include "tokenizer/pipeline.h"

/* ------------------------------------------------------------ buffers */
lm_status lm_tok_buf_reserve(lm_tok_buf *b, size_t extra) {
  if (b->n + extra <= b->cap) return LM_OK;
  size_t c = b->cap ? b->cap : 256;
  while (c < b->n + extra) c *= 2;
  char *p = realloc(b->p, c);
  if (!p) return lm_error(LM_ERR_NOMEM, "out of memory (%zu bytes)", c);
  b->p = p; b->cap = c;
  return LM_OK;
}

/* ------------------------------------------------------------ Unicode */
int lm_uni_category(uint32_t c) { return (int)utf8proc_category((utf8proc_int32_t)c); }

int lm_uni_space(uint32_t c) {
  if (c < 0x80) return c == ' ' || (c >= 9 && c <= 13);
  return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
         c == 0x202F || c == 0x205F || c == 0x3000;
}

int lm_uni_punct(uint32_t c) {
  if (c < 0x80) return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126);
  int k = lm_uni_category(c);
  return k >= UTF8PROC_CATEGORY_PC && k <= UTF8PROC_CATEGORY_PO;
}

int lm_uni_numeric(uint32_t c) {
  if (c < 0x80) return c >= '0' && c <= '9';
  int k = lm_uni_category(c);
  return k == UTF8PROC_CATEGORY_ND || k == UTF8PROC_CATEGORY_NL || k == UTF8PROC_CATEGORY_NO;
}

/* GPT-2's bytes_to_unicode: printable bytes stand for themselves, the other 68
 * (0-32, 127-160, 173) become U+0100.. in byte order. */
static int printable(int b) { return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255); }

uint32_t lm_tok_byte_cp(uint8_t b) {
  if (printable(b)) return b;
  int k = 0;
  for (int i = 0; i < b; i++) k += !printable(i);
  return 256 + (uint32_t)k;
}

int lm_tok_cp_byte(uint32_t cp) {
  if (cp < 256) return printable((int)cp) ? (int)cp : -1;
  if (cp >= 256 + 68) return -1;
  int k = (int)cp - 256;
  for (int b = 0; b < 256; b++)
    if (!printable(b) && k-- == 0) return b;
  return -1;
}

/* ------------------------------------------------------------ Oniguruma -> PCRE2 */
#define WS_LIST "\\t\\n\\x{0B}\\f\\r\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"
#define W_LIST "\\p{L}\\p{M}\\p{N}\\p{Pc}"
#define H_LIST "0-9a-fA-F"

/* The rewrite of escape \c: inside a class (the list), outside (a class); NULL: keep. */
static const struct { char c; const char *inside, *outside; } ESCAPES[] = {
  {'s', WS_LIST, "[" WS_LIST "]"}, {'S', NULL, "[^" WS_LIST "]"},
  {'w', W_LIST, "[" W_LIST "]"},   {'W', NULL, "[^" W_LIST "]"},
  {'d', "\\p{Nd}", "\\p{Nd}"},     {'D', "\\P{Nd}", "\\P{Nd}"},
  {'h', H_LIST, "[" H_LIST "]"},   {'H', NULL, "[^" H_LIST "]"},
};

lm_status lm_tok_regex_compile(pcre2_code **re, const char *onig, const char *where) {
  *re = NULL;
  lm_tok_buf b = {0};
  int in_class = 0;
  lm_status st = LM_OK;
  for (const char *p = onig; *p && !st; p++) {
    if (*p == '\\' && p[1]) {
      const char *rep = NULL; int known = 0;
      for (size_t i = 0; i < sizeof ESCAPES / sizeof *ESCAPES; i++)
        if (ESCAPES[i].c == p[1]) { known = 1; rep = in_class ? ESCAPES[i].inside : ESCAPES[i].outside; }
      if (known && rep) { st = lm_tok_buf_put(&b, rep, strlen(rep)); p++; continue; }
      st = lm_tok_buf_put(&b, p, 2); p++;
      continue;
    }
    if (*p == '[' && !in_class) in_class = 1;
    else if (*p == ']' && in_class && !(p[-1] == '[' || (p[-1] == '^' && p[-2] == '['))) in_class = 0;
    st = lm_tok_buf_put(&b, p, 1);
  }
  if (!st) st = lm_tok_buf_put(&b, "", 1);
  if (st) { free(b.p); return st; }
  int err; PCRE2_SIZE off;
  *re = pcre2_compile((PCRE2_SPTR)b.p, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &err, &off, NULL);
  free(b.p);
  if (!*re) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    return lm_error(LM_ERR_UNSUPPORTED, "%s: regex \"%.200s\": %s", where, onig, (char *)msg);
  }
  pcre2_jit_compile(*re, PCRE2_JIT_COMPLETE);   /* falls back to the interpreter if JIT is unavailable */
  return LM_OK;
}

lm_status lm_tok_pattern_parse(lm_tok_pattern *p, const cJSON *o, const char *where) {
  memset(p, 0, sizeof *p);
  const cJSON *s = cJSON_GetObjectItemCaseSensitive(o, "String"), *r = cJSON_GetObjectItemCaseSensitive(o, "Regex");
  if (!cJSON_IsObject(o) || cJSON_GetArraySize(o) != 1 || (!cJSON_IsString(s) && !cJSON_IsString(r)))
    return lm_error(LM_ERR_FORMAT, "%s: expected {\"String\": ...} or {\"Regex\": ...}", where);
  if (s) {
    p->lit_n = strlen(s->valuestring);
    return (p->lit = lm_strdup(s->valuestring)) ? LM_OK : lm_error(LM_ERR_NOMEM, "out of memory");
  }
  char w[700];
  snprintf(w, sizeof w, "%s.Regex", where);
  return lm_tok_regex_compile(&p->re, r->valuestring, w);
}

void lm_tok_pattern_free(lm_tok_pattern *p) {
  if (p->re) pcre2_code_free(p->re);
  free(p->lit);
  memset(p, 0, sizeof *p);
}

/* The next match at or after pos: 1 and [*ms, *me), 0 if none, or an error status < 0. */
static int next_match(const lm_tok_pattern *p, pcre2_match_data *md, const char *s, size_t n, size_t pos, size_t *ms,
                      size_t *me) {
  if (p->re) {
    int rc = pcre2_jit_match(p->re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, md, NULL);
    if (rc == PCRE2_ERROR_JIT_BADOPTION) rc = pcre2_match(p->re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, md, NULL);
    if (rc == PCRE2_ERROR_NOMATCH) return 0;
    if (rc < 0) { lm_error(LM_ERR_UNSUPPORTED, "regex match failed (PCRE2 error %d)", rc); return -1; }
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    *ms = ov[0]; *me = ov[1];
    return 1;
  }
  if (p->lit) {
    if (!p->lit_n || pos >= n) return 0;
    const char *f = memmem(s + pos, n - pos, p->lit, p->lit_n);
    if (!f) return 0;
    *ms = (size_t)(f - s); *me = *ms + p->lit_n;
    return 1;
  }
  while (pos < n) {
    uint32_t c;
    size_t k = lm_utf8_dec((const uint8_t *)s + pos, n - pos, &c);
    if (p->pred(c, p->arg)) { *ms = pos; *me = pos + k; return 1; }
    pos += k;
  }
  return 0;
}

lm_status lm_tok_pattern_segments(const lm_tok_pattern *p, pcre2_match_data *md, const char *s, size_t n,
                                  lm_tok_seg_fn fn, void *user) {
  if (n == 0) return fn(user, 0, 0, 0);
  size_t prev = 0, last_end = 0, last_match_end = 0, ms, me;
  int have_last = 0;
  lm_status st;
  while (last_end <= n) {
    int r = next_match(p, md, s, n, last_end, &ms, &me);
    if (r < 0) return LM_ERR_UNSUPPORTED;
    if (!r) break;
    if (ms == me && have_last && last_match_end == me) {   /* an empty match right after the last one */
      last_end += me < n ? lm_utf8_char((const uint8_t *)s + me, n - me) + (lm_utf8_char((const uint8_t *)s + me, n - me) == 0) : 1;
      continue;
    }
    last_end = me; last_match_end = me; have_last = 1;
    if (prev != ms && (st = fn(user, prev, ms, 0))) return st;
    if ((st = fn(user, ms, me, 1))) return st;
    prev = me;
  }
  return prev != n ? fn(user, prev, n, 0) : LM_OK;
}
