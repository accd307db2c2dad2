/* decoders.c — tokenizer.json's decoders (pipeline.h), as HF tokenizers
 * defines them: ByteLevel, Metaspace, ByteFallback, Fuse, Strip, Replace,
 * WordPiece, BPEDecoder and Sequence. Each works on the list of token strings
 * and returns a new list (HF's decode_chain); the final list is joined.
 *
 * ByteLevel: a byte-level model keeps tokens as raw bytes, so ByteLevel only
 * joins them; for other models it maps each token's byte symbols back to
 * bytes (a token with a character outside the map stays as it is). lmkit
 * does not replace invalid UTF-8 with U+FFFD here (HF does): callers that
 * stream text token by token need the bytes; on whole texts the two agree.
 * A decoder type or key lmkit does not know is an error. */
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "tokenizer/pipeline.h"

enum { D_BYTELEVEL, D_METASPACE, D_FALLBACK, D_FUSE, D_STRIP, D_REPLACE, D_WORDPIECE, D_BPE };

typedef struct {
  int kind;
  char *str; size_t str_n;   /* METASPACE: replacement; REPLACE: content; WORDPIECE: prefix; BPE: suffix */
  uint32_t cp;               /* METASPACE, STRIP: the character */
  int a, b;                  /* METASPACE: prepend (0 never); STRIP: start, stop; WORDPIECE: cleanup */
  lm_tok_pattern pat;        /* REPLACE */
} step;

struct lm_tok_dec { step *s; int n, cap; };

lm_status lm_tok_strs_add(lm_tok_strs *l, const char *s, size_t n) {
  if (l->n + 2 > l->cap) {
    size_t c = l->cap ? 2 * l->cap : 64;
    size_t *p = realloc(l->off, c * sizeof *p);
    if (!p) return lm_error(LM_ERR_NOMEM, "out of memory");
    l->off = p; l->cap = c;
  }
  if (l->n == 0) l->off[0] = l->text.n;
  lm_status st = lm_tok_buf_put(&l->text, s, n);
  if (st) return st;
  l->off[++l->n] = l->text.n;
  return LM_OK;
}

void lm_tok_strs_free(lm_tok_strs *l) { free(l->text.p); free(l->off); memset(l, 0, sizeof *l); }

static const char *str_at(const lm_tok_strs *l, size_t i, size_t *n) {
  *n = l->off[i + 1] - l->off[i];
  return l->text.p ? l->text.p + l->off[i] : "";
}

/* ------------------------------------------------------------ the decoders */
typedef lm_status (*run_fn)(const step *s, const lm_tok_strs *in, lm_tok_strs *out, pcre2_match_data *md, int byte_level);

static lm_status r_byte_level(const step *s, const lm_tok_strs *in, lm_tok_strs *out, pcre2_match_data *md, int byte_level) {
  (void)s; (void)md;
  lm_tok_buf b = {0};
  lm_status st = LM_OK;
  for (size_t i = 0; i < in->n && !st; i++) {
    size_t n; const char *t = str_at(in, i, &n);
    size_t k = 0, ok = !byte_level;
    for (size_t j = 0; j < n && ok;) {   /* does every character map to a byte? */
      uint32_t c;
      j += lm_utf8_dec((const uint8_t *)t + j, n - j, &c);
      ok = lm_tok_cp_byte(c) >= 0;
      k++;
    }
    if (!ok) { st = lm_tok_buf_put(&b, t, n); continue; }
    for (size_t j = 0; j < n && !st;) {
      uint32_t c;
      j += lm_utf8_dec((const uint8_t *)t + j, n - j, &c);
      char byte = (char)lm_tok_cp_byte(c);
      st = lm_tok_buf_put(&b, &byte, 1);
    }
  }
  if (!st) st = lm_tok_strs_add(out, b.p ? b.p : "", b.n);
  free(b.p);
  return st;
}

static lm_status r_metaspace(const step *s, const lm_tok_strs *in, lm_tok_strs *out, pcre2_match_data *md, int bl) {
  (void)md; (void)bl;
  lm_tok_buf b = {0};
  lm_status st = LM_OK;
  for (size_t i = 0; i < in->n && !st; i++) {
    size_t n; const char *t = str_at(in, i, &n);
    b.n = 0;
    for (size_t j = 0; j < n && !st;) {
      if (n - j >= s->str_n && !memcmp(t + j, s->str, s->str_n)) {
        j += s->str_n;
        if (!(i == 0 && s->a)) st = lm_tok_buf_put(&b, " ", 1);   /* HF drops every one in the first token */
        continue;
      }
      st = lm_tok_buf_put(&b, t + j, 1); j++;
    }
    if (!st) st = lm_tok_strs_add(out, b.p ? b.p : "", b.n);
  }
  free(b.p);
  return st;
}

static int hexval(char c) {
  return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static lm_status flush_bytes(lm_tok_strs *out, lm_tok_buf *bytes) {
  lm_status st = LM_OK;
  if (!bytes->n) return LM_OK;
  if (lm_utf8_valid_prefix((const uint8_t *)bytes->p, bytes->n) == bytes->n) st = lm_tok_strs_add(out, bytes->p, bytes->n);
  else for (size_t i = 0; i < bytes->n && !st; i++) st = lm_tok_strs_add(out, "\xEF\xBF\xBD", 3);
  bytes->n = 0;
  return st;
}

static lm_status r_fallback(const step *s, const lm_tok_strs *in, lm_tok_strs *out, pcre2_match_data *md, int bl) {
  (void)s; (void)md; (void)bl;
  lm_tok_buf bytes = {0};
  lm_status st = LM_OK;
  for (size_t i = 0; i < in->n && !st; i++) {
    size_t n; const char *t = str_at(in, i, &n);
    int hi, lo;
    if (n == 6 && !memcmp(t, "<0x", 3) && t[5] == '>' && (hi = hexval(t[3])) >= 0 && (lo = hexval(t[4])) >= 0) {
      char byte = (char)(hi << 4 | lo);
      st = lm_tok_buf_put(&bytes, &byte, 1);
      continue;
    }
    if (!(st = flush_bytes(out, &bytes))) st = lm_tok_strs_add(out, t, n);
  }
  if (!st) st = flush_bytes(out, &bytes);
  free(bytes.p);
  return st;
}

static lm_status r_fuse(const step *s, const lm_tok_strs *in, lm_tok_strs *out, pcre2_match_data *md, int bl) {
  (void)s; (void)md; (void)bl;
  return lm_tok_strs_add(out, in->text.p ? in->text.p + (in->n ? in->off[0] : 0) : "", in->n ? in->off[in->n] - in->off[0] : 0);
}

static lm_status r_strip(const step *s, const lm_tok_strs *in, lm_tok_strs *out, pcre2_match_data *md, int bl) {
  (void)md; (void)bl;
  uint8_t u[4];
  size_t cn = lm_utf8_enc(s->cp, u);
  lm_status st = LM_OK;
  for (size_t i = 0; i < in->n && !st; i++) {
    size_t n; const char *t = str_at(in, i, &n);
    size_t a = 0, e = n;
    for (int k = 0; k < s->a && e - a >= cn && !memcmp(t + a, u, cn); k++) a += cn;
    for (int k = 0; k < s->b && e - a >= cn && !memcmp(t + e - cn, u, cn); k++) e -= cn;
    st = lm_tok_strs_add(out, t + a, e - a);
  }
  return st;
}

typedef struct { const step *s; const char *t; lm_tok_buf *b; } rep_ctx;
static lm_status rep_seg(void *user, size_t a, size_t e, int m) {
  rep_ctx *c = user;
  return m ? lm_tok_buf_put(c->b, c->s->str, c->s->str_n) : lm_tok_buf_put(c->b, c->t + a, e - a);
}

static lm_status r_replace(const step *s, const lm_tok_strs *in, lm_tok_strs *out, pcre2_match_data *md, int bl) {
  (void)bl;
  lm_tok_buf b = {0};
  lm_status st = LM_OK;
  for (size_t i = 0; i < in->n && !st; i++) {
    size_t n; const char *t = str_at(in, i, &n);
    rep_ctx c = {s, t, &b};
    b.n = 0;
    if (!(st = lm_tok_pattern_segments(&s->pat, md, t, n, rep_seg, &c))) st = lm_tok_strs_add(out, b.p ? b.p : "", b.n);
  }
  free(b.p);
  return st;
}

/* HF's wordpiece::cleanup: the replacements, in order, each over the whole token. */
static const char *const CLEANUP[][2] = {
  {" .", "."}, {" ?", "?"}, {" !", "!"}, {" ,", ","}, {" ' ", "'"}, {" n't", "n't"}, {" 'm", "'m"},
  {" do not", " don't"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"},
};

static lm_status cleanup(lm_tok_buf *b, lm_tok_buf *tmp) {
  lm_status st = LM_OK;
  for (size_t r = 0; r < sizeof CLEANUP / sizeof *CLEANUP && !st; r++) {
    const char *from = CLEANUP[r][0], *to = CLEANUP[r][1];
    size_t fn = strlen(from), tn = strlen(to);
    tmp->n = 0;
    for (size_t i = 0; i < b->n && !st;) {
      if (b->n - i >= fn && !memcmp(b->p + i, from, fn)) { st = lm_tok_buf_put(tmp, to, tn); i += fn; }
      else { st = lm_tok_buf_put(tmp, b->p + i, 1); i++; }
    }
    lm_tok_buf x = *b; *b = *tmp; *tmp = x;
  }
  return st;
}

static lm_status r_wordpiece(const step *s, const lm_tok_strs *in, lm_tok_strs *out, pcre2_match_data *md, int bl) {
  (void)md; (void)bl;
  lm_tok_buf b = {0}, tmp = {0};
  lm_status st = LM_OK;
  for (size_t i = 0; i < in->n && !st; i++) {
    size_t n; const char *t = str_at(in, i, &n);
    b.n = 0;
    if (i) {
      if (n >= s->str_n && !memcmp(t, s->str, s->str_n)) { t += s->str_n; n -= s->str_n; }
      else st = lm_tok_buf_put(&b, " ", 1);
    }
    if (!st) st = lm_tok_buf_put(&b, t, n);
    if (!st && s->a) st = cleanup(&b, &tmp);
    if (!st) st = lm_tok_strs_add(out, b.p ? b.p : "", b.n);
  }
  free(b.p); free(tmp.p);
  return st;
}

static lm_status r_bpe(const step *s, const lm_tok_strs *in, lm_tok_strs *out, pcre2_match_data *md, int bl) {
  (void)md; (void)bl;
  lm_tok_buf b = {0};
  lm_status st = LM_OK;
  for (size_t i = 0; i < in->n && !st; i++) {
    size_t n; const char *t = str_at(in, i, &n);
    const char *rep = i + 1 == in->n ? "" : " ";
    b.n = 0;
    for (size_t j = 0; j < n && !st;) {
      if (s->str_n && n - j >= s->str_n && !memcmp(t + j, s->str, s->str_n)) { st = lm_tok_buf_put(&b, rep, strlen(rep)); j += s->str_n; }
      else { st = lm_tok_buf_put(&b, t + j, 1); j++; }
    }
    if (!st) st = lm_tok_strs_add(out, b.p ? b.p : "", b.n);
  }
  free(b.p);
  return st;
}

static const run_fn RUN[] = {
  [D_BYTELEVEL] = r_byte_level, [D_METASPACE] = r_metaspace, [D_FALLBACK] = r_fallback, [D_FUSE] = r_fuse,
  [D_STRIP] = r_strip, [D_REPLACE] = r_replace, [D_WORDPIECE] = r_wordpiece, [D_BPE] = r_bpe,
};

/* ------------------------------------------------------------ parsing */
static lm_status add(lm_tok_dec *d, step s) {
  if (d->n == d->cap) {
    int c = d->cap ? 2 * d->cap : 8;
    step *p = realloc(d->s, (size_t)c * sizeof *p);
    if (!p) { free(s.str); lm_tok_pattern_free(&s.pat); return lm_error(LM_ERR_NOMEM, "out of memory"); }
    d->s = p; d->cap = c;
  }
  d->s[d->n++] = s;
  return LM_OK;
}

static lm_status set_str(step *s, const char *v) {
  s->str_n = strlen(v);
  return (s->str = lm_strdup(v)) ? LM_OK : lm_error(LM_ERR_NOMEM, "out of memory");
}

static lm_status one_char(const char *v, uint32_t *cp, const char *w, const char *key) {
  size_t n = strlen(v);
  if (!n || lm_utf8_char((const uint8_t *)v, n) != n) return lm_error(LM_ERR_FORMAT, "%s.%s: expected one character", w, key);
  lm_utf8_dec((const uint8_t *)v, n, cp);
  return LM_OK;
}

static lm_status p_byte_level(void *d, const cJSON *o, const char *w) {
  int x = 0;
  lm_status st;
  if ((st = lm_tok_json_bool(o, "add_prefix_space", &x, w)) || (st = lm_tok_json_bool(o, "trim_offsets", &x, w)) ||
      (st = lm_tok_json_bool(o, "use_regex", &x, w)))
    return st;
  return add(d, (step){.kind = D_BYTELEVEL});
}

static lm_status p_metaspace(void *d, const cJSON *o, const char *w) {
  const char *rep = "\xE2\x96\x81", *scheme = NULL;
  int split = 1, legacy = -1;
  lm_status st;
  if ((st = lm_tok_json_str(o, "replacement", &rep, w)) || (st = lm_tok_json_str(o, "prepend_scheme", &scheme, w)) ||
      (st = lm_tok_json_bool(o, "split", &split, w)) || (st = lm_tok_json_bool(o, "add_prefix_space", &legacy, w)))
    return st;
  step s = {.kind = D_METASPACE, .a = legacy != 0};
  if ((st = one_char(rep, &s.cp, w, "replacement"))) return st;
  if (scheme) {
    if (!strcmp(scheme, "never")) s.a = 0;
    else if (!strcmp(scheme, "always") || !strcmp(scheme, "first")) s.a = 1;
    else return lm_error(LM_ERR_UNSUPPORTED, "%s.prepend_scheme: \"%s\" is not supported (always, first or never)", w, scheme);
  }
  if ((st = set_str(&s, rep))) return st;
  return add(d, s);
}

static lm_status p_simple(lm_tok_dec *d, int kind) { return add(d, (step){.kind = kind}); }
static lm_status p_fallback(void *d, const cJSON *o, const char *w) { (void)o; (void)w; return p_simple(d, D_FALLBACK); }
static lm_status p_fuse(void *d, const cJSON *o, const char *w) { (void)o; (void)w; return p_simple(d, D_FUSE); }

static lm_status p_strip(void *d, const cJSON *o, const char *w) {
  const char *content = NULL;
  int64_t start = 0, stop = 0;
  lm_status st;
  if ((st = lm_tok_json_str(o, "content", &content, w)) || (st = lm_tok_json_uint(o, "start", &start, w)) ||
      (st = lm_tok_json_uint(o, "stop", &stop, w)))
    return st;
  if (!content) return lm_error(LM_ERR_FORMAT, "%s: \"content\" is missing", w);
  step s = {.kind = D_STRIP, .a = (int)(start > 1 << 20 ? 1 << 20 : start), .b = (int)(stop > 1 << 20 ? 1 << 20 : stop)};
  if ((st = one_char(content, &s.cp, w, "content"))) return st;
  return add(d, s);
}

static lm_status p_replace(void *d, const cJSON *o, const char *w) {
  const char *content = NULL;
  char pw[700];
  snprintf(pw, sizeof pw, "%s.pattern", w);
  lm_status st = lm_tok_json_str(o, "content", &content, w);
  if (st) return st;
  if (!content) return lm_error(LM_ERR_FORMAT, "%s: \"content\" is missing", w);
  step s = {.kind = D_REPLACE};
  if ((st = lm_tok_pattern_parse(&s.pat, cJSON_GetObjectItemCaseSensitive(o, "pattern"), pw))) return st;
  if ((st = set_str(&s, content))) { lm_tok_pattern_free(&s.pat); return st; }
  return add(d, s);
}

static lm_status p_wordpiece(void *d, const cJSON *o, const char *w) {
  const char *prefix = "##";
  int clean = 1;
  lm_status st;
  if ((st = lm_tok_json_str(o, "prefix", &prefix, w)) || (st = lm_tok_json_bool(o, "cleanup", &clean, w))) return st;
  step s = {.kind = D_WORDPIECE, .a = clean};
  if ((st = set_str(&s, prefix))) return st;
  return add(d, s);
}

static lm_status p_bpe(void *d, const cJSON *o, const char *w) {
  const char *suffix = "</w>";
  lm_status st = lm_tok_json_str(o, "suffix", &suffix, w);
  if (st) return st;
  step s = {.kind = D_BPE};
  if ((st = set_str(&s, suffix))) return st;
  return add(d, s);
}

static const lm_tok_kind KINDS[] = {
  {"ByteLevel", {"add_prefix_space", "trim_offsets", "use_regex", NULL}, p_byte_level},
  {"Metaspace", {"replacement", "prepend_scheme", "split", "add_prefix_space", NULL}, p_metaspace},
  {"ByteFallback", {NULL}, p_fallback},
  {"Fuse", {NULL}, p_fuse},
  {"Strip", {"content", "start", "stop", NULL}, p_strip},
  {"Replace", {"pattern", "content", NULL}, p_replace},
  {"WordPiece", {"prefix", "cleanup", NULL}, p_wordpiece},
  {"BPEDecoder", {"suffix", NULL}, p_bpe},
  {"Sequence", {"decoders", NULL}, NULL},
};
#define N_KINDS (sizeof KINDS / sizeof *KINDS)

void lm_tok_dec_free(lm_tok_dec *d) {
  if (!d) return;
  for (int i = 0; i < d->n; i++) { free(d->s[i].str); lm_tok_pattern_free(&d->s[i].pat); }
  free(d->s);
  free(d);
}

lm_status lm_tok_dec_parse(lm_tok_dec **out, const cJSON *o, const char *where) {
  *out = NULL;
  if (!o || cJSON_IsNull(o)) return LM_OK;
  lm_tok_dec *d = calloc(1, sizeof *d);
  if (!d) return lm_error(LM_ERR_NOMEM, "out of memory");
  lm_status st = lm_tok_parse_kind(d, KINDS, N_KINDS, "decoder", o, where);
  if (st) { lm_tok_dec_free(d); return st; }
  *out = d;
  return LM_OK;
}

lm_status lm_tok_dec_run(const lm_tok_dec *d, lm_tok_strs *toks, int byte_level, char **out, size_t *out_n) {
  *out = NULL; *out_n = 0;
  lm_status st = LM_OK;
  lm_tok_strs tmp = {0};
  pcre2_match_data *md = pcre2_match_data_create(1, NULL);
  if (!md) return lm_error(LM_ERR_NOMEM, "out of memory");
  lm_tok_buf joined = {0};
  if (!d) {   /* no decoder: HF joins the tokens with spaces */
    for (size_t i = 0; i < toks->n && !st; i++) {
      size_t n; const char *t = str_at(toks, i, &n);
      if (i) st = lm_tok_buf_put(&joined, " ", 1);
      if (!st) st = lm_tok_buf_put(&joined, t, n);
    }
  } else {
    for (int i = 0; i < d->n && !st; i++) {
      tmp.n = 0; tmp.text.n = 0;
      if (!(st = RUN[d->s[i].kind](&d->s[i], toks, &tmp, md, byte_level))) { lm_tok_strs x = *toks; *toks = tmp; tmp = x; }
    }
    for (size_t i = 0; i < toks->n && !st; i++) {
      size_t n; const char *t = str_at(toks, i, &n);
      st = lm_tok_buf_put(&joined, t, n);
    }
  }
  if (!st) st = lm_tok_buf_put(&joined, "", 1);
  lm_tok_strs_free(&tmp);
  pcre2_match_data_free(md);
  if (st) { free(joined.p); return st; }
  *out = joined.p; *out_n = joined.n - 1;
  return LM_OK;
}
