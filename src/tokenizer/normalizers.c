/* normalizers.c — tokenizer.json's normalizers (pipeline.h), as HF tokenizers
 * defines them: NFC, NFD, NFKC, NFKD (utf8proc), Lowercase (Rust's
 * char::to_lowercase: utf8proc's simple mapping plus U+0130 -> "i\u0307"),
 * Strip (White_Space), StripAccents (drops category M*), Replace (a String
 * or Regex pattern), Prepend (when the text is not empty), BertNormalizer
 * (clean_text, handle_chinese_chars, strip_accents = NFD + drop Mn, lowercase,
 * in that order), Precompiled (SentencePiece's charsmap: precompiled.c; the
 * base64 is decoded here) and Sequence.
 *
 * Parsing flattens Sequence and BertNormalizer into a list of primitive
 * steps, each one row of STEPS (how it runs); KINDS maps each tokenizer.json
 * type to its keys and parser. Applying runs the steps in order between two
 * buffers. */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>
#include <cjson/cJSON.h>
#include "tokenizer/pipeline.h"
#include "tokenizer/precompiled.h"

enum { S_UNICODE, S_LOWER, S_STRIP, S_FILTER, S_REPLACE, S_PREPEND, S_CLEAN, S_CJK, S_PRECOMPILED };

typedef struct {
  int kind;
  int a, b;               /* UNICODE: utf8proc options; STRIP: left, right; FILTER: category mask */
  char *str; size_t str_n;   /* REPLACE: content; PREPEND: prefix */
  lm_tok_pattern pat;     /* REPLACE */
  lm_precompiled *pc;     /* PRECOMPILED */
} step;

struct lm_tok_norm { step *s; int n, cap; };

/* ------------------------------------------------------------ the steps */
typedef lm_status (*apply_fn)(const step *s, pcre2_match_data *md, const char *in, size_t n, lm_tok_buf *out);

static int ascii_only(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) if ((uint8_t)s[i] >= 0x80) return 0;
  return 1;
}

static lm_status ap_unicode(const step *s, pcre2_match_data *md, const char *in, size_t n, lm_tok_buf *out) {
  (void)md;
  if (ascii_only(in, n)) return lm_tok_buf_put(out, in, n);   /* every normal form leaves ASCII alone */
  utf8proc_uint8_t *dst = NULL;
  utf8proc_ssize_t k = utf8proc_map((const utf8proc_uint8_t *)in, (utf8proc_ssize_t)n, &dst, (utf8proc_option_t)s->a);
  if (k < 0) return lm_error(LM_ERR_FORMAT, "normalizer: utf8proc: %s", utf8proc_errmsg(k));
  lm_status st = lm_tok_buf_put(out, dst, (size_t)k);
  free(dst);
  return st;
}

static lm_status put_cp(lm_tok_buf *out, uint32_t c) {
  uint8_t u[4];
  return lm_tok_buf_put(out, u, lm_utf8_enc(c, u));
}

static lm_status ap_lower(const step *s, pcre2_match_data *md, const char *in, size_t n, lm_tok_buf *out) {
  (void)s; (void)md;
  lm_status st = LM_OK;
  for (size_t i = 0; i < n && !st;) {
    uint8_t b = (uint8_t)in[i];
    if (b < 0x80) { char c = (char)(b >= 'A' && b <= 'Z' ? b + 32 : b); st = lm_tok_buf_put(out, &c, 1); i++; continue; }
    uint32_t c;
    i += lm_utf8_dec((const uint8_t *)in + i, n - i, &c);
    if (c == 0x130) st = lm_tok_buf_put(out, "i\xCC\x87", 3);   /* the one unconditional multi-character lowercase */
    else st = put_cp(out, (uint32_t)utf8proc_tolower((utf8proc_int32_t)c));
  }
  return st;
}

static lm_status ap_strip(const step *s, pcre2_match_data *md, const char *in, size_t n, lm_tok_buf *out) {
  (void)md;
  size_t a = 0, e = n;
  uint32_t c;
  while (s->a && a < n) { size_t k = lm_utf8_dec((const uint8_t *)in + a, n - a, &c); if (!lm_uni_space(c)) break; a += k; }
  while (s->b && e > a) {
    size_t q = e - 1;
    while (q > a && ((uint8_t)in[q] & 0xC0) == 0x80) q--;
    lm_utf8_dec((const uint8_t *)in + q, e - q, &c);
    if (!lm_uni_space(c)) break;
    e = q;
  }
  return lm_tok_buf_put(out, in + a, e - a);
}

static lm_status ap_filter(const step *s, pcre2_match_data *md, const char *in, size_t n, lm_tok_buf *out) {
  (void)md;
  lm_status st = lm_tok_buf_reserve(out, n);
  for (size_t i = 0; i < n && !st;) {
    uint32_t c;
    size_t k = lm_utf8_dec((const uint8_t *)in + i, n - i, &c);
    if (c < 0x300 || !(s->a >> lm_uni_category(c) & 1)) st = lm_tok_buf_put(out, in + i, k);
    i += k;
  }
  return st;
}

typedef struct { const step *s; const char *in; lm_tok_buf *out; } rep_ctx;

static lm_status rep_seg(void *user, size_t a, size_t e, int is_match) {
  rep_ctx *c = user;
  return is_match ? lm_tok_buf_put(c->out, c->s->str, c->s->str_n) : lm_tok_buf_put(c->out, c->in + a, e - a);
}

static lm_status ap_replace(const step *s, pcre2_match_data *md, const char *in, size_t n, lm_tok_buf *out) {
  rep_ctx c = {s, in, out};
  return lm_tok_pattern_segments(&s->pat, md, in, n, rep_seg, &c);
}

static lm_status ap_prepend(const step *s, pcre2_match_data *md, const char *in, size_t n, lm_tok_buf *out) {
  (void)md;
  lm_status st = n ? lm_tok_buf_put(out, s->str, s->str_n) : LM_OK;
  return st ? st : lm_tok_buf_put(out, in, n);
}

/* BertNormalizer's clean_text: drop NUL, U+FFFD and controls (C* but \t \n \r, so also \v \f U+0085),
 * then whitespace -> ' '. */
static lm_status ap_clean(const step *s, pcre2_match_data *md, const char *in, size_t n, lm_tok_buf *out) {
  (void)s; (void)md;
  lm_status st = lm_tok_buf_reserve(out, n);
  for (size_t i = 0; i < n && !st;) {
    uint32_t c;
    size_t k = lm_utf8_dec((const uint8_t *)in + i, n - i, &c);
    i += k;
    int tnr = c == '\t' || c == '\n' || c == '\r';
    int cat = c < 0x80 ? (c < 0x20 || c == 0x7F ? UTF8PROC_CATEGORY_CC : UTF8PROC_CATEGORY_LU) : lm_uni_category(c);
    if (c == 0 || c == 0xFFFD || (!tnr && (cat == UTF8PROC_CATEGORY_CN || cat >= UTF8PROC_CATEGORY_CC))) continue;
    st = tnr || lm_uni_space(c) ? lm_tok_buf_put(out, " ", 1) : lm_tok_buf_put(out, in + i - k, k);
  }
  return st;
}

static int chinese(uint32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
         (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

static lm_status ap_cjk(const step *s, pcre2_match_data *md, const char *in, size_t n, lm_tok_buf *out) {
  (void)s; (void)md;
  lm_status st = LM_OK;
  for (size_t i = 0; i < n && !st;) {
    uint32_t c;
    size_t k = lm_utf8_dec((const uint8_t *)in + i, n - i, &c);
    if (chinese(c)) {
      if (!(st = lm_tok_buf_put(out, " ", 1)) && !(st = lm_tok_buf_put(out, in + i, k))) st = lm_tok_buf_put(out, " ", 1);
    } else st = lm_tok_buf_put(out, in + i, k);
    i += k;
  }
  return st;
}

static lm_status ap_precompiled(const step *s, pcre2_match_data *md, const char *in, size_t n, lm_tok_buf *out) {
  (void)md;
  char *r; size_t rn;
  lm_status st = lm_precompiled_normalize(s->pc, in, n, &r, &rn);
  if (st) return st;
  st = lm_tok_buf_put(out, r, rn);
  free(r);
  return st;
}

static const apply_fn STEPS[] = {
  [S_UNICODE] = ap_unicode, [S_LOWER] = ap_lower, [S_STRIP] = ap_strip, [S_FILTER] = ap_filter,
  [S_REPLACE] = ap_replace, [S_PREPEND] = ap_prepend, [S_CLEAN] = ap_clean, [S_CJK] = ap_cjk,
  [S_PRECOMPILED] = ap_precompiled,
};

/* ------------------------------------------------------------ parsing */
static lm_status add(lm_tok_norm *nm, step s) {
  if (nm->n == nm->cap) {
    int c = nm->cap ? 2 * nm->cap : 8;
    step *p = realloc(nm->s, (size_t)c * sizeof *p);
    if (!p) return lm_error(LM_ERR_NOMEM, "out of memory");
    nm->s = p; nm->cap = c;
  }
  nm->s[nm->n++] = s;
  return LM_OK;
}

#define MARKS (1 << UTF8PROC_CATEGORY_MN | 1 << UTF8PROC_CATEGORY_MC | 1 << UTF8PROC_CATEGORY_ME)

static lm_status p_unicode(lm_tok_norm *nm, const cJSON *o, const char *w, int opts) {
  (void)o; (void)w;
  return add(nm, (step){.kind = S_UNICODE, .a = UTF8PROC_STABLE | opts});
}
static lm_status p_nfc(void *nm, const cJSON *o, const char *w) { return p_unicode(nm, o, w, UTF8PROC_COMPOSE); }
static lm_status p_nfd(void *nm, const cJSON *o, const char *w) { return p_unicode(nm, o, w, UTF8PROC_DECOMPOSE); }
static lm_status p_nfkc(void *nm, const cJSON *o, const char *w) { return p_unicode(nm, o, w, UTF8PROC_COMPOSE | UTF8PROC_COMPAT); }
static lm_status p_nfkd(void *nm, const cJSON *o, const char *w) { return p_unicode(nm, o, w, UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT); }
static lm_status p_lower(void *nm, const cJSON *o, const char *w) { (void)o; (void)w; return add(nm, (step){.kind = S_LOWER}); }
static lm_status p_strip_acc(void *nm, const cJSON *o, const char *w) {
  (void)o; (void)w;
  return add(nm, (step){.kind = S_FILTER, .a = MARKS});
}

static lm_status p_strip(void *nm, const cJSON *o, const char *w) {
  int l = 1, r = 1;
  lm_status st;
  if ((st = lm_tok_json_bool(o, "strip_left", &l, w)) || (st = lm_tok_json_bool(o, "strip_right", &r, w))) return st;
  return add(nm, (step){.kind = S_STRIP, .a = l, .b = r});
}

static lm_status p_str(step *s, const cJSON *o, const char *key, const char *w) {
  const char *v = NULL;
  lm_status st = lm_tok_json_str(o, key, &v, w);
  if (st) return st;
  if (!v) return lm_error(LM_ERR_FORMAT, "%s: \"%s\" is missing", w, key);
  s->str_n = strlen(v);
  return (s->str = lm_strdup(v)) ? LM_OK : lm_error(LM_ERR_NOMEM, "out of memory");
}

static lm_status p_replace(void *nm, const cJSON *o, const char *w) {
  step s = {.kind = S_REPLACE};
  char pw[700];
  snprintf(pw, sizeof pw, "%s.pattern", w);
  lm_status st = p_str(&s, o, "content", w);
  if (!st) st = lm_tok_pattern_parse(&s.pat, cJSON_GetObjectItemCaseSensitive(o, "pattern"), pw);
  if (!st) st = add(nm, s);
  if (st) { free(s.str); lm_tok_pattern_free(&s.pat); }
  return st;
}

static lm_status p_prepend(void *nm, const cJSON *o, const char *w) {
  step s = {.kind = S_PREPEND};
  lm_status st = p_str(&s, o, "prepend", w);
  if (!st) st = add(nm, s);
  if (st) free(s.str);
  return st;
}

static lm_status p_bert(void *nm, const cJSON *o, const char *w) {
  int clean = 1, cjk = 1, lower = 1, strip = -1;
  lm_status st;
  if ((st = lm_tok_json_bool(o, "clean_text", &clean, w)) || (st = lm_tok_json_bool(o, "handle_chinese_chars", &cjk, w)) ||
      (st = lm_tok_json_bool(o, "lowercase", &lower, w)) || (st = lm_tok_json_bool(o, "strip_accents", &strip, w)))
    return st;
  if (strip < 0) strip = lower;   /* null: follows lowercase */
  if (clean && (st = add(nm, (step){.kind = S_CLEAN}))) return st;
  if (cjk && (st = add(nm, (step){.kind = S_CJK}))) return st;
  if (strip && ((st = add(nm, (step){.kind = S_UNICODE, .a = UTF8PROC_STABLE | UTF8PROC_DECOMPOSE})) ||
                (st = add(nm, (step){.kind = S_FILTER, .a = 1 << UTF8PROC_CATEGORY_MN}))))
    return st;
  return lower ? add(nm, (step){.kind = S_LOWER}) : LM_OK;
}

/* Standard base64 (padding optional, no whitespace); *out malloc'ed. */
static lm_status b64_decode(const char *s, uint8_t **out, size_t *n, const char *w) {
  size_t len = strlen(s);
  while (len && s[len - 1] == '=') len--;
  uint8_t *b = lm_xmalloc(len * 3 / 4 + 3);
  if (!b) return lm_error(LM_ERR_NOMEM, "out of memory");
  uint32_t acc = 0; int bits = 0; size_t o = 0;
  for (size_t i = 0; i < len; i++) {
    char c = s[i];
    int v = c >= 'A' && c <= 'Z' ? c - 'A' : c >= 'a' && c <= 'z' ? c - 'a' + 26 : c >= '0' && c <= '9' ? c - '0' + 52 :
            c == '+' ? 62 : c == '/' ? 63 : -1;
    if (v < 0) { free(b); return lm_error(LM_ERR_FORMAT, "%s.precompiled_charsmap: not base64 (byte %zu)", w, i); }
    acc = acc << 6 | (uint32_t)v; bits += 6;
    if (bits >= 8) { bits -= 8; b[o++] = (uint8_t)(acc >> bits); }
  }
  *out = b; *n = o;
  return LM_OK;
}

static lm_status p_precompiled(void *nm, const cJSON *o, const char *w) {
  const char *b64 = NULL;
  lm_status st = lm_tok_json_str(o, "precompiled_charsmap", &b64, w);
  if (st) return st;
  if (!b64 || !*b64) return LM_OK;   /* HF: an empty charsmap normalizes nothing */
  uint8_t *blob = NULL; size_t n = 0;
  if ((st = b64_decode(b64, &blob, &n, w))) return st;
  step s = {.kind = S_PRECOMPILED};
  char pw[700];
  snprintf(pw, sizeof pw, "%s.precompiled_charsmap", w);
  st = lm_precompiled_new(&s.pc, blob, n, pw);
  free(blob);
  if (!st && (st = add(nm, s))) lm_precompiled_free(s.pc);
  return st;
}

static const lm_tok_kind KINDS[] = {
  {"NFC", {NULL}, p_nfc},
  {"NFD", {NULL}, p_nfd},
  {"NFKC", {NULL}, p_nfkc},
  {"NFKD", {NULL}, p_nfkd},
  {"Lowercase", {NULL}, p_lower},
  {"Strip", {"strip_left", "strip_right", NULL}, p_strip},
  {"StripAccents", {NULL}, p_strip_acc},
  {"Replace", {"pattern", "content", NULL}, p_replace},
  {"Prepend", {"prepend", NULL}, p_prepend},
  {"BertNormalizer", {"clean_text", "handle_chinese_chars", "strip_accents", "lowercase", NULL}, p_bert},
  {"Precompiled", {"precompiled_charsmap", NULL}, p_precompiled},
  {"Sequence", {"normalizers", NULL}, NULL},
};
#define N_KINDS (sizeof KINDS / sizeof *KINDS)

void lm_tok_norm_free(lm_tok_norm *nm) {
  if (!nm) return;
  for (int i = 0; i < nm->n; i++) {
    free(nm->s[i].str); lm_tok_pattern_free(&nm->s[i].pat);
    if (nm->s[i].pc) lm_precompiled_free(nm->s[i].pc);
  }
  free(nm->s);
  free(nm);
}

lm_status lm_tok_norm_parse(lm_tok_norm **out, const cJSON *o, const char *where) {
  *out = NULL;
  if (!o || cJSON_IsNull(o)) return LM_OK;
  lm_tok_norm *nm = calloc(1, sizeof *nm);
  if (!nm) return lm_error(LM_ERR_NOMEM, "out of memory");
  lm_status st = lm_tok_parse_kind(nm, KINDS, N_KINDS, "normalizer", o, where);
  if (st || nm->n == 0) { lm_tok_norm_free(nm); return st; }   /* an empty Sequence: no normalizer */
  *out = nm;
  return LM_OK;
}

lm_status lm_tok_norm_apply(const lm_tok_norm *nm, pcre2_match_data *md, const char *s, size_t n, lm_tok_buf bufs[2],
                            const char **res, size_t *res_n) {
  int cur = 0;
  for (int i = 0; i < nm->n; i++) {
    lm_tok_buf *out = &bufs[cur];
    out->n = 0;
    lm_status st = STEPS[nm->s[i].kind](&nm->s[i], md, s, n, out);
    if (st) return st;
    s = out->p ? out->p : ""; n = out->n;
    cur ^= 1;
  }
  *res = s; *res_n = n;
  return LM_OK;
}
