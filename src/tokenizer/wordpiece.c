/* wordpiece.c — BERT's WordPiece tokenizer: loading, encoding, decoding, saving.
 *
 * One model behind lm_tok_model_ops (tokenizer.h): the shared vocabulary
 * (token strings by id, the bytes -> id map of ordinary tokens, special tokens
 * cut out before encoding; tokenizer.c) plus BERT's settings in t->model
 * (lm_wordpiece). Encoding a stretch of ordinary text follows BERT's reference
 * tokenizer (google-research tokenization.py = Hugging Face BertTokenizer), on
 * code points:
 *   1. clean: drop NUL, U+FFFD and every character of category C* except
 *      \t \n \r; whitespace (\t \n \r, Zs, Zl, Zp) separates words;
 *   2. every CJK ideograph (BERT's block list) is a word of its own;
 *   3. per word: lower-case (Python's str.lower(): utf8proc's simple mapping,
 *      plus U+0130 -> "i\u0307" and Greek final sigma), then, when stripping
 *      accents, NFD (utf8proc) and drop category Mn;
 *   4. split off every punctuation character (ASCII 33-47, 58-64, 91-96,
 *      123-126, and category P*) as a piece of its own;
 *   5. WordPiece per piece: greedy longest-match-first from the left, pieces
 *      after the first prefixed "##"; a piece longer than max_input_chars_per_word
 *      (100) characters, or with any position where nothing matches, becomes [UNK].
 * Special tokens never come out of step 5 (they are not in the bytes -> id
 * map), except the unknown token standing for an unknown piece.
 *
 * Files: vocab.txt (one token per line, id = line number, as transformers'
 * load_vocab reads it) + optional tokenizer_config.json, or a tokenizer.json
 * whose model.type is "WordPiece" (Hugging Face tokenizers format). Saving
 * writes all three. See docs/tokenizer.md. */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>
#include <cjson/cJSON.h>
#include "tokenizer/tokenizer.h"
#include "tokenizer/pipeline.h"

enum { WP_UNK, WP_SEP, WP_PAD, WP_CLS, WP_MASK, WP_NAMED };
static const char *const WP_KEYS[WP_NAMED] = {"unk_token", "sep_token", "pad_token", "cls_token", "mask_token"};
static const char *const WP_DEFAULT[WP_NAMED] = {"[UNK]", "[SEP]", "[PAD]", "[CLS]", "[MASK]"};

typedef struct {
  int lowercase;          /* do_lower_case */
  int strip_accents;      /* -1: null (follows lowercase), 0 or 1 */
  int chinese;            /* tokenize_chinese_chars */
  int clean_text;
  char *prefix; size_t prefix_len;   /* continuing_subword_prefix, "##" */
  int64_t max_chars;      /* max_input_chars_per_word */
  size_t max_tok_bytes;   /* longest ordinary token */
  int64_t named[WP_NAMED];           /* ids of [UNK] [SEP] [PAD] [CLS] [MASK], -1 if absent */
} lm_wordpiece;

/* One encoder's buffers (e->state). */
typedef struct {
  uint32_t *w; size_t wcap;     /* the current word, code points */
  uint32_t *x; size_t xcap;     /* its lower-cased / decomposed copy */
  uint8_t *b; size_t bcap;      /* UTF-8 of a piece */
  size_t *off; size_t ocap;     /* byte offset of each character of the piece, and the end */
  uint8_t *c; size_t ccap;      /* prefix + candidate */
} lm_wp_scratch;

static void wp_free(void *p) {
  lm_wordpiece *wp = p;
  if (!wp) return;
  free(wp->prefix);
  free(wp);
}

static void state_free(void *p) {
  lm_wp_scratch *s = p;
  free(s->w); free(s->x); free(s->b); free(s->off); free(s->c);
  free(s);
}

static lm_status state_new(void **out, const lm_tokenizer *t) {
  (void)t;
  return (*out = calloc(1, sizeof(lm_wp_scratch))) ? LM_OK : lm_error(LM_ERR_NOMEM, "out of memory");
}

static int wp_strip(const lm_wordpiece *wp) { return wp->strip_accents < 0 ? wp->lowercase : wp->strip_accents; }

/* Grows *p to hold at least n elements of size sz. */
static lm_status grow(void *pp, size_t *cap, size_t n, size_t sz) {
  void **p = pp;
  if (n <= *cap) return LM_OK;
  size_t c = *cap ? *cap : 64;
  while (c < n) {
    if (c > SIZE_MAX / 2 / sz) return lm_error(LM_ERR_NOMEM, "out of memory");
    c *= 2;
  }
  void *q = realloc(*p, c * sz);
  if (!q) return lm_error(LM_ERR_NOMEM, "out of memory");
  *p = q; *cap = c;
  return LM_OK;
}

static lm_status push_id(uint32_t **ids, size_t *n, size_t *cap, int64_t id) {
  lm_status st = lm_tok_reserve(ids, n, cap, 1);
  if (!st) (*ids)[(*n)++] = (uint32_t)id;
  return st;
}

/* ------------------------------------------------------------ characters */
/* Decodes one UTF-8 character of s (n > 0 bytes); an invalid byte reads as U+FFFD, length 1. */
static int cat(uint32_t c) { return (int)utf8proc_category((utf8proc_int32_t)c); }

/* BERT's _is_control (Hugging Face: every category C*), \t \n \r excluded. */
static int is_control(uint32_t c) {
  if (c < 0x80) return (c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7F;
  int k = cat(c);
  return k == UTF8PROC_CATEGORY_CN || k >= UTF8PROC_CATEGORY_CC;
}

/* Separates words: \t \n \r and Zs (BERT's _is_whitespace) plus what Python's
 * str.split() also splits on (Zl, Zp, and \v \f \x1c-\x1f \x85, which cleaning removes). */
static int is_space(uint32_t c) {
  if (c == ' ' || (c >= 9 && c <= 13) || (c >= 0x1C && c <= 0x1F) || c == 0x85) return 1;
  if (c < 0x80) return 0;
  int k = cat(c);
  return k == UTF8PROC_CATEGORY_ZS || k == UTF8PROC_CATEGORY_ZL || k == UTF8PROC_CATEGORY_ZP;
}

static int is_punct(uint32_t c) {
  if ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126)) return 1;
  if (c < 0x80) return 0;   /* ASCII's P* characters all lie in the ranges above */
  int k = cat(c);
  return k >= UTF8PROC_CATEGORY_PC && k <= UTF8PROC_CATEGORY_PO;
}

/* BERT's _is_chinese_char: the CJK Unified Ideographs blocks and compatibility ideographs. */
static int is_cjk(uint32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
         (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

/* Unicode Case_Ignorable: Mn Me Cf Lm Sk, and Word_Break MidLetter / MidNumLet / Single_Quote. */
static int case_ignorable(uint32_t c) {
  int k = cat(c);
  if (k == UTF8PROC_CATEGORY_MN || k == UTF8PROC_CATEGORY_ME || k == UTF8PROC_CATEGORY_CF || k == UTF8PROC_CATEGORY_LM ||
      k == UTF8PROC_CATEGORY_SK) return 1;
  switch (c) {
    case 0x27: case 0x2E: case 0x3A: case 0xB7: case 0x387: case 0x55F: case 0x5F4: case 0x2018: case 0x2019:
    case 0x2024: case 0x2027: case 0xFE13: case 0xFE52: case 0xFE55: case 0xFF07: case 0xFF0E: case 0xFF1A:
      return 1;
  }
  return 0;
}

/* Unicode Cased: Lu Ll Lt, anything with a case mapping, and the few Other_Lowercase /
 * Other_Uppercase characters that are neither (the Lm ones are case-ignorable anyway). */
static int cased(uint32_t c) {
  int k = cat(c);
  if (k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LL || k == UTF8PROC_CATEGORY_LT) return 1;
  if ((uint32_t)utf8proc_tolower((utf8proc_int32_t)c) != c || (uint32_t)utf8proc_toupper((utf8proc_int32_t)c) != c) return 1;
  return c == 0xAA || c == 0xBA || (c >= 0x1F130 && c <= 0x1F149) || (c >= 0x1F150 && c <= 0x1F169) ||
         (c >= 0x1F170 && c <= 0x1F189);
}

/* Python's rule for U+03A3: final (ς) when preceded by a cased letter and not followed
 * by one, skipping case-ignorable characters on both sides, within the string w. */
static int final_sigma(const uint32_t *w, size_t n, size_t i) {
  size_t j = i;
  while (j > 0 && case_ignorable(w[j - 1])) j--;
  if (j == 0 || !cased(w[j - 1])) return 0;
  j = i + 1;
  while (j < n && case_ignorable(w[j])) j++;
  return j == n || !cased(w[j]);
}

/* ------------------------------------------------------------ WordPiece proper */
/* Greedy longest-match-first over one piece (n >= 1 code points); appends its ids. */
static lm_status wp_piece(const lm_tokenizer *t, lm_wp_scratch *s, const uint32_t *p, size_t n, uint32_t **ids,
                          size_t *nid, size_t *cap) {
  const lm_wordpiece *wp = t->model;
  if ((int64_t)n > wp->max_chars) return push_id(ids, nid, cap, wp->named[WP_UNK]);
  lm_status st;
  if ((st = grow(&s->b, &s->bcap, 4 * n, 1)) || (st = grow(&s->off, &s->ocap, n + 1, sizeof *s->off)) ||
      (st = grow(&s->c, &s->ccap, 4 * n + wp->prefix_len, 1)))
    return st;
  size_t nb = 0;
  for (size_t i = 0; i < n; i++) { s->off[i] = nb; nb += lm_utf8_enc(p[i], s->b + nb); }
  s->off[n] = nb;
  size_t first = *nid, start = 0;
  memcpy(s->c, wp->prefix, wp->prefix_len);
  while (start < n) {
    const uint8_t *base = s->b;
    size_t extra = 0;
    if (start > 0) {   /* candidates are prefix + rest[start..end) */
      memcpy(s->c + wp->prefix_len, s->b + s->off[start], nb - s->off[start]);
      base = s->c; extra = wp->prefix_len;
    }
    int32_t id = -1;
    size_t end = n;
    for (; end > start; end--) {
      size_t len = extra + s->off[end] - s->off[start];
      if (len > wp->max_tok_bytes) continue;
      if ((id = lm_tok_lookup(t, base, len)) >= 0) break;
    }
    if (id < 0) { *nid = first; return push_id(ids, nid, cap, wp->named[WP_UNK]); }
    if ((st = push_id(ids, nid, cap, id))) return st;
    start = end;
  }
  return LM_OK;
}

static void swap_buf(lm_wp_scratch *s) {
  uint32_t *p = s->w; s->w = s->x; s->x = p;
  size_t c = s->wcap; s->wcap = s->xcap; s->xcap = c;
}

/* One whitespace-separated word, in s->w[0..n): case, accents, punctuation, WordPiece. */
static lm_status wp_word(const lm_tokenizer *t, lm_wp_scratch *s, size_t n, uint32_t **ids, size_t *nid, size_t *cap) {
  const lm_wordpiece *wp = t->model;
  lm_status st;
  if (wp->lowercase) {
    if ((st = grow(&s->x, &s->xcap, 2 * n, sizeof *s->x))) return st;
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
      uint32_t c = s->w[i];
      if (c == 0x130) { s->x[m++] = 'i'; s->x[m++] = 0x307; }
      else if (c == 0x3A3) s->x[m++] = final_sigma(s->w, n, i) ? 0x3C2 : 0x3C3;
      else if (c < 0x80) s->x[m++] = c >= 'A' && c <= 'Z' ? c + 32 : c;
      else s->x[m++] = (uint32_t)utf8proc_tolower((utf8proc_int32_t)c);
    }
    swap_buf(s); n = m;
  }
  if (wp_strip(wp)) {
    size_t m = 0;
    if ((st = grow(&s->x, &s->xcap, n, sizeof *s->x))) return st;
    for (size_t i = 0; i < n; i++) {
      if (s->w[i] < 0xC0) {   /* nothing below U+00C0 decomposes */
        if (m == s->xcap && (st = grow(&s->x, &s->xcap, m + 1, sizeof *s->x))) return st;
        s->x[m++] = s->w[i];
        continue;
      }
      for (;;) {
        if ((st = grow(&s->x, &s->xcap, m + 32, sizeof *s->x))) return st;
        int bound = 0;
        utf8proc_ssize_t k = utf8proc_decompose_char((utf8proc_int32_t)s->w[i], (utf8proc_int32_t *)(s->x + m),
                                                     (utf8proc_ssize_t)(s->xcap - m), UTF8PROC_DECOMPOSE, &bound);
        if (k < 0) return lm_error(LM_ERR_FORMAT, "utf8proc: cannot decompose U+%04X: %s", s->w[i], utf8proc_errmsg(k));
        if ((size_t)k <= s->xcap - m) { m += (size_t)k; break; }
        if ((st = grow(&s->x, &s->xcap, m + (size_t)k, sizeof *s->x))) return st;
      }
    }
    /* canonical ordering: stable sort of each run of non-zero combining classes */
    for (size_t i = 1; i < m; i++) {
      uint32_t c = s->x[i];
      if (c < 0x300) continue;   /* combining class 0 */
      int cc = utf8proc_get_property((utf8proc_int32_t)c)->combining_class;
      if (!cc) continue;
      size_t j = i;
      while (j > 0) {
        int pc = utf8proc_get_property((utf8proc_int32_t)s->x[j - 1])->combining_class;
        if (pc <= cc) break;
        s->x[j] = s->x[j - 1]; j--;
      }
      s->x[j] = c;
    }
    size_t o = 0;
    for (size_t i = 0; i < m; i++)
      if (s->x[i] < 0x300 || cat(s->x[i]) != UTF8PROC_CATEGORY_MN) s->x[o++] = s->x[i];
    swap_buf(s); n = o;
  }
  size_t a = 0;
  for (size_t i = 0; i < n; i++) {
    if (!is_punct(s->w[i])) continue;
    if (i > a && (st = wp_piece(t, s, s->w + a, i - a, ids, nid, cap))) return st;
    if ((st = wp_piece(t, s, s->w + i, 1, ids, nid, cap))) return st;
    a = i + 1;
  }
  if (n > a) return wp_piece(t, s, s->w + a, n - a, ids, nid, cap);
  return LM_OK;
}

static lm_status wp_encode(lm_tok_encoder *e, const char *text, size_t len, uint32_t **ids, size_t *n, size_t *cap) {
  const lm_tokenizer *t = e->t;
  lm_wp_scratch *s = e->state;
  const lm_wordpiece *wp = t->model;
  const uint8_t *b = (const uint8_t *)text;
  size_t nw = 0;
  lm_status st;
  for (size_t i = 0; i < len;) {
    uint32_t c;
    i += lm_utf8_dec(b + i, len - i, &c);
    if (wp->clean_text && (c == 0 || c == 0xFFFD || is_control(c))) continue;
    int space = is_space(c), cjk = !space && wp->chinese && is_cjk(c);
    if (space || cjk) {
      if (nw && (st = wp_word(t, s, nw, ids, n, cap))) return st;
      nw = 0;
      if (space) continue;
    }
    if ((st = grow(&s->w, &s->wcap, nw + 1, sizeof *s->w))) return st;
    s->w[nw++] = c;
    if (cjk) {
      if ((st = wp_word(t, s, nw, ids, n, cap))) return st;
      nw = 0;
    }
  }
  if (nw) return wp_word(t, s, nw, ids, n, cap);
  return LM_OK;
}

/* One piece the tokenizer.json pipeline has normalized and pre-tokenized: WordPiece alone. */
static lm_status wp_encode_word(lm_tok_encoder *e, const char *text, size_t len, uint32_t **ids, size_t *n, size_t *cap) {
  lm_wp_scratch *s = e->state;
  const uint8_t *b = (const uint8_t *)text;
  size_t nw = 0;
  lm_status st;
  for (size_t i = 0; i < len;) {
    if ((st = grow(&s->w, &s->wcap, nw + 1, sizeof *s->w))) return st;
    i += lm_utf8_dec(b + i, len - i, &s->w[nw++]);
  }
  return nw ? wp_piece(e->t, s, s->w, nw, ids, n, cap) : LM_OK;
}

/* ------------------------------------------------------------ decoding */
static lm_status wp_decode(const lm_tokenizer *t, const uint32_t *ids, size_t n, char **text, size_t *len) {
  const lm_wordpiece *wp = t->model;
  size_t total = 1;
  for (size_t i = 0; i < n; i++) total += t->tok_off[ids[i] + 1] - t->tok_off[ids[i]] + 1;
  char *out = lm_xmalloc(total);
  if (!out) return LM_ERR_NOMEM;
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    size_t k; const uint8_t *p = lm_tok_bytes(t, ids[i], &k);
    if (i > 0) {   /* Hugging Face's WordPiece decoder, without its cleanup of spaces */
      if (k >= wp->prefix_len && wp->prefix_len && !memcmp(p, wp->prefix, wp->prefix_len)) { p += wp->prefix_len; k -= wp->prefix_len; }
      else out[o++] = ' ';
    }
    memcpy(out + o, p, k); o += k;
  }
  out[o] = 0;
  *text = out; *len = o;
  return LM_OK;
}

/* ------------------------------------------------------------ building */
typedef struct {
  int64_t n, cap;
  char **tok; size_t *len; uint8_t *special;
} tok_list;

static void tl_free(tok_list *l) {
  if (l->tok) for (int64_t i = 0; i < l->n; i++) free(l->tok[i]);
  free(l->tok); free(l->len); free(l->special);
  memset(l, 0, sizeof *l);
}

static lm_status tl_add(tok_list *l, const char *s, size_t n, int special) {
  if (l->n >= LM_TOK_MAX_VOCAB - 1) return lm_error(LM_ERR_RANGE, "more than 2^31 tokens");
  if (l->n == l->cap) {
    size_t c = (size_t)l->cap, c1 = c, c2 = c, c3 = c;
    lm_status st;
    if ((st = grow(&l->tok, &c1, c + 1, sizeof *l->tok)) || (st = grow(&l->len, &c2, c + 1, sizeof *l->len)) ||
        (st = grow(&l->special, &c3, c + 1, 1)))
      return st;
    if (c1 != c2 || c1 != c3) return lm_error(LM_ERR_NOMEM, "out of memory");
    l->cap = (int64_t)c1;
  }
  char *p = lm_xmalloc(n + 1);
  if (!p) return LM_ERR_NOMEM;
  memcpy(p, s, n); p[n] = 0;
  l->tok[l->n] = p; l->len[l->n] = n; l->special[l->n] = (uint8_t)special;
  l->n++;
  return LM_OK;
}

/* The last id whose token is exactly s (transformers' load_vocab: later lines win); -1 if none. */
static int64_t tl_find(const tok_list *l, const char *s) {
  size_t n = strlen(s);
  for (int64_t i = l->n - 1; i >= 0; i--)
    if (l->len[i] == n && !memcmp(l->tok[i], s, n)) return i;
  return -1;
}

/* Settings read from tokenizer_config.json; -2 = not given. */
typedef struct {
  int lowercase, strip_accents, chinese;   /* strip_accents: -1 null */
  char *name[WP_NAMED];                    /* special token names, NULL = default */
} wp_cfg;

static void cfg_init(wp_cfg *c) { memset(c, 0, sizeof *c); c->lowercase = c->strip_accents = c->chinese = -2; }
static void cfg_free(wp_cfg *c) { for (int i = 0; i < WP_NAMED; i++) free(c->name[i]); }

/* Builds the tokenizer from the token list (specials flagged) and settings; takes wp. */
static lm_status wp_build(lm_tokenizer **out, const tok_list *l, lm_wordpiece *wp, const wp_cfg *cfg, const char *where) {
  *out = NULL;
  int64_t n = l->n;
  if (n < 1) { wp_free(wp); return lm_error(LM_ERR_FORMAT, "%s: the vocabulary is empty", where); }
  /* named specials: [UNK] [SEP] [PAD] [CLS] [MASK] (or the names the config gives) */
  uint8_t *special = lm_xmalloc((size_t)n);
  if (!special) { wp_free(wp); return LM_ERR_NOMEM; }
  memcpy(special, l->special, (size_t)n);
  for (int k = 0; k < WP_NAMED; k++) {
    const char *name = cfg && cfg->name[k] ? cfg->name[k] : WP_DEFAULT[k];
    if (k != WP_UNK || wp->named[WP_UNK] < 0)   /* else tokenizer.json's model.unk_token */
      wp->named[k] = tl_find(l, name);
    if (wp->named[k] >= 0) special[wp->named[k]] = 1;
  }
  lm_status st;
  if (wp->named[WP_UNK] < 0)
    st = lm_error(LM_ERR_FORMAT, "%s: the unknown token \"%s\" is not in the vocabulary", where,
                  cfg && cfg->name[WP_UNK] ? cfg->name[WP_UNK] : WP_DEFAULT[WP_UNK]);
  else st = lm_tok_new(out, &lm_wordpiece_ops, n, (const uint8_t *const *)l->tok, l->len, special, 0, where);
  free(special);
  if (st) { wp_free(wp); return st; }
  lm_tokenizer *t = *out;
  t->model = wp;
  t->eot = wp->named[WP_SEP];
  wp->max_tok_bytes = 0;
  for (int64_t i = 0; i < n; i++)
    if (!t->is_special[i] && l->len[i] > wp->max_tok_bytes) wp->max_tok_bytes = l->len[i];
  return LM_OK;
}

static lm_wordpiece *wp_new(void) {
  lm_wordpiece *wp = calloc(1, sizeof *wp);
  if (!wp) { lm_error(LM_ERR_NOMEM, "out of memory"); return NULL; }
  wp->lowercase = 1; wp->strip_accents = -1; wp->chinese = 1; wp->clean_text = 1;
  wp->max_chars = 100;
  for (int k = 0; k < WP_NAMED; k++) wp->named[k] = -1;
  wp->prefix = lm_strdup("##");
  if (!wp->prefix) { free(wp); return NULL; }
  wp->prefix_len = 2;
  return wp;
}

static void apply_cfg(lm_wordpiece *wp, const wp_cfg *c) {
  if (!c) return;
  if (c->lowercase != -2) wp->lowercase = c->lowercase;
  if (c->strip_accents != -2) wp->strip_accents = c->strip_accents;
  if (c->chinese != -2) wp->chinese = c->chinese;
}

/* ------------------------------------------------------------ JSON helpers */
/* A boolean key: 1/0, -1 for null, -2 when absent; LM_ERR_FORMAT for another type. */
static lm_status json_flag(const cJSON *o, const char *key, int allow_null, int *v, const char *name) {
  const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
  if (!x) return LM_OK;
  if (cJSON_IsBool(x)) { *v = cJSON_IsTrue(x); return LM_OK; }
  if (allow_null && cJSON_IsNull(x)) { *v = -1; return LM_OK; }
  return lm_error(LM_ERR_FORMAT, "%s: \"%s\" must be true or false%s", name, key, allow_null ? " or null" : "");
}

/* A token name in tokenizer_config.json: a string or {"content": string}. */
static const char *token_name(const cJSON *x) {
  if (cJSON_IsString(x)) return x->valuestring;
  const cJSON *c = cJSON_GetObjectItemCaseSensitive(x, "content");
  return cJSON_IsString(c) ? c->valuestring : NULL;
}

/* Reads tokenizer_config.json (already parsed) into c. */
static lm_status read_cfg(wp_cfg *c, const cJSON *root, const char *name) {
  if (!cJSON_IsObject(root)) return lm_error(LM_ERR_FORMAT, "%s: expected a JSON object", name);
  lm_status st;
  if ((st = json_flag(root, "do_lower_case", 0, &c->lowercase, name)) ||
      (st = json_flag(root, "strip_accents", 1, &c->strip_accents, name)) ||
      (st = json_flag(root, "tokenize_chinese_chars", 0, &c->chinese, name)))
    return st;
  for (int k = 0; k < WP_NAMED; k++) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(root, WP_KEYS[k]);
    if (!x || cJSON_IsNull(x)) continue;
    const char *s = token_name(x);
    if (!s || !*s) return lm_error(LM_ERR_FORMAT, "%s: \"%s\" must be a non-empty string", name, WP_KEYS[k]);
    if (!(c->name[k] = lm_strdup(s))) return LM_ERR_NOMEM;
  }
  return LM_OK;
}

/* Applies tokenizer_config.json's "added_tokens_decoder" ({"id": {"content": ...}}) to the list:
 * an id inside the vocabulary must name the same token and makes it special; ids past the
 * end must follow on without gaps and are appended as special tokens. */
static lm_status added_decoder(tok_list *l, const cJSON *root, const char *name) {
  const cJSON *a = cJSON_GetObjectItemCaseSensitive(root, "added_tokens_decoder");
  if (!a || cJSON_IsNull(a)) return LM_OK;
  if (!cJSON_IsObject(a)) return lm_error(LM_ERR_FORMAT, "%s: \"added_tokens_decoder\" must be an object", name);
  int64_t base = l->n, extra = 0;
  for (const cJSON *e = a->child; e; e = e->next) {
    char *endp; long long id = strtoll(e->string, &endp, 10);
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(e, "content");
    if (!*e->string || *endp || id < 0 || id >= LM_TOK_MAX_VOCAB - 1 || !cJSON_IsString(ct) || !ct->valuestring[0])
      return lm_error(LM_ERR_FORMAT, "%s: added_tokens_decoder[\"%s\"]: expected an id and {\"content\": a non-empty string}",
                      name, e->string);
    if (id >= base) { extra++; continue; }
    size_t n = strlen(ct->valuestring);
    if (l->len[id] != n || memcmp(l->tok[id], ct->valuestring, n))
      return lm_error(LM_ERR_FORMAT, "%s: added_tokens_decoder[\"%s\"]: \"%s\" differs from token %lld of the vocabulary",
                      name, e->string, ct->valuestring, id);
    l->special[id] = 1;
  }
  for (int64_t k = 0; k < extra; k++) {   /* appended ids, in order */
    const cJSON *hit = NULL;
    for (const cJSON *e = a->child; e && !hit; e = e->next)
      if (strtoll(e->string, NULL, 10) == base + k) hit = e;
    if (!hit) return lm_error(LM_ERR_FORMAT, "%s: added_tokens_decoder: id %lld is missing (ids after the vocabulary must "
                              "follow on)", name, (long long)(base + k));
    const char *s = cJSON_GetObjectItemCaseSensitive(hit, "content")->valuestring;
    lm_status st = tl_add(l, s, strlen(s), 1);
    if (st) return st;
  }
  return LM_OK;
}

/* Reads DIR/tokenizer_config.json if present: *root (or NULL) and the settings. */
static lm_status load_cfg(const char *dir, cJSON **root, wp_cfg *c) {
  *root = NULL;
  char *p = lm_path_join(dir, "tokenizer_config.json");
  if (!p) return LM_ERR_NOMEM;
  lm_status st = LM_OK;
  if (lm_file_exists(p)) {
    char *d; size_t n;
    st = lm_read_file(p, &d, &n);
    if (!st) { st = lm_tok_parse_json(root, d, n, p); free(d); }
    if (!st) st = read_cfg(c, *root, p);
  }
  free(p);
  return st;
}

/* ------------------------------------------------------------ vocab.txt */
/* vocab.txt text (`name` in errors); `dir`, if not NULL, may hold tokenizer_config.json. */
static lm_status from_vocab_txt(lm_tokenizer **out, const char *text, size_t len, const char *name, const char *dir) {
  *out = NULL;
  tok_list l; memset(&l, 0, sizeof l);
  wp_cfg cfg; cfg_init(&cfg);
  cJSON *root = NULL;
  lm_status st = LM_OK;
  /* lines as Python's universal newlines read them: \n, \r\n or \r ends a line */
  size_t pos = 0; int64_t line = 0;
  while (pos < len && !st) {
    size_t e = pos;
    while (e < len && text[e] != '\n' && text[e] != '\r') e++;
    line++;
    const char *s = text + pos; size_t n = e - pos;
    if (memchr(s, 0, n)) st = lm_error(LM_ERR_FORMAT, "%s:%lld: a NUL byte in the token", name, (long long)line);
    else if (lm_utf8_valid_prefix((const uint8_t *)s, n) != n)
      st = lm_error(LM_ERR_FORMAT, "%s:%lld: the token is not valid UTF-8", name, (long long)line);
    else st = tl_add(&l, s, n, 0);
    pos = e < len && text[e] == '\r' && e + 1 < len && text[e + 1] == '\n' ? e + 2 : e + 1;
  }
  if (!st && dir) st = load_cfg(dir, &root, &cfg);
  if (!st && root) {
    char *p = lm_path_join(dir, "tokenizer_config.json");
    st = p ? added_decoder(&l, root, p) : LM_ERR_NOMEM;
    free(p);
  }
  lm_wordpiece *wp = NULL;
  if (!st && !(wp = wp_new())) st = LM_ERR_NOMEM;
  if (!st) {
    apply_cfg(wp, &cfg);
    st = wp_build(out, &l, wp, &cfg, name);
  }
  cJSON_Delete(root);
  cfg_free(&cfg);
  tl_free(&l);
  return st;
}

lm_status lm_wp_load_dir(lm_tokenizer **out, const char *dir) {
  char *p = lm_path_join(dir, "vocab.txt"), *d = NULL; size_t n = 0;
  lm_status st = p ? lm_read_file(p, &d, &n) : LM_ERR_NOMEM;
  if (!st) st = from_vocab_txt(out, d, n, p, dir);
  free(p); free(d);
  return st;
}

/* Applies DIR/tokenizer_config.json, if present, over a tokenizer.json's settings
 * (do_lower_case, strip_accents, tokenize_chinese_chars win, as in transformers). */
static lm_status wp_dir_config(lm_tokenizer *t, const char *dir) {
  lm_wordpiece *wp = t->model;
  cJSON *root = NULL;
  wp_cfg cfg; cfg_init(&cfg);
  lm_status st = load_cfg(dir, &root, &cfg);
  if (!st) {
    apply_cfg(wp, &cfg);
    for (int k = WP_SEP; k < WP_NAMED; k++) {   /* other names for [SEP] [PAD] [CLS] [MASK] */
      if (!cfg.name[k]) continue;
      int64_t id = lm_tokenizer_token_id(t, cfg.name[k]);
      if (id >= 0 && t->is_special[id]) wp->named[k] = id;
    }
    t->eot = wp->named[WP_SEP];
  }
  cJSON_Delete(root);
  cfg_free(&cfg);
  return st;
}

/* ------------------------------------------------------------ tokenizer.json */
static lm_status wp_from_json(lm_tokenizer **out, const cJSON *root, const char *name) {
  *out = NULL;
  tok_list l; memset(&l, 0, sizeof l);
  lm_wordpiece *wp = wp_new();
  if (!wp) return LM_ERR_NOMEM;
  lm_status st = LM_OK;
  int64_t *seen = NULL;
  const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
  const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
  const cJSON *norm = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
  const cJSON *pre = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
  lm_tok_added *added = NULL; int n_added = 0;
  /* the normalizer and pre-tokenizer are the pipeline's (pipeline.c); BertNormalizer's settings are
   * kept too, for saving as vocab.txt + tokenizer_config.json */
  (void)pre;
  wp->clean_text = 0; wp->chinese = 0; wp->lowercase = 0; wp->strip_accents = 0;
  const cJSON *ty = cJSON_GetObjectItemCaseSensitive(norm, "type");
  if (cJSON_IsString(ty) && !strcmp(ty->valuestring, "BertNormalizer")) {
    char place[600];
    snprintf(place, sizeof place, "%s: normalizer", name);
    int clean = 1, chinese = 1, lower = 1, strip = -1;
    if ((st = json_flag(norm, "clean_text", 0, &clean, place)) || (st = json_flag(norm, "handle_chinese_chars", 0, &chinese, place)) ||
        (st = json_flag(norm, "lowercase", 0, &lower, place)) || (st = json_flag(norm, "strip_accents", 1, &strip, place)))
      goto done;
    wp->clean_text = clean; wp->chinese = chinese; wp->lowercase = lower; wp->strip_accents = strip;
  }
  /* model */
  static const char *const KEYS[] = {"unk_token", "continuing_subword_prefix", "max_input_chars_per_word", "vocab", NULL};
  char mw[600];
  snprintf(mw, sizeof mw, "%s: model", name);
  if ((st = lm_tok_json_keys(model, KEYS, mw))) goto done;
  const cJSON *x = cJSON_GetObjectItemCaseSensitive(model, "continuing_subword_prefix");
  if (x && !cJSON_IsNull(x)) {
    if (!cJSON_IsString(x)) { st = lm_error(LM_ERR_FORMAT, "%s: model.continuing_subword_prefix must be a string", name); goto done; }
    free(wp->prefix);
    wp->prefix_len = strlen(x->valuestring);
    if (!(wp->prefix = lm_strdup(x->valuestring))) { st = LM_ERR_NOMEM; goto done; }
  }
  x = cJSON_GetObjectItemCaseSensitive(model, "max_input_chars_per_word");
  if (x && !cJSON_IsNull(x) && !lm_tok_json_int(x, 1, INT64_C(1) << 40, &wp->max_chars)) {
    st = lm_error(LM_ERR_FORMAT, "%s: model.max_input_chars_per_word must be a positive integer", name);
    goto done;
  }
  const cJSON *unk = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
  if (unk && !cJSON_IsString(unk)) { st = lm_error(LM_ERR_FORMAT, "%s: model.unk_token must be a string", name); goto done; }
  /* model.vocab {token: id}, ids 0..n-1 each once */
  if (!cJSON_IsObject(vocab)) { st = lm_error(LM_ERR_FORMAT, "%s: model.vocab: expected an object {token: id}", name); goto done; }
  int64_t count = cJSON_GetArraySize(vocab);
  seen = lm_xmalloc((size_t)(count + 1) * sizeof *seen);
  if (!seen) { st = LM_ERR_NOMEM; goto done; }
  for (int64_t i = 0; i < count; i++) seen[i] = -1;
  const cJSON *c; int64_t k = 0;
  for (c = vocab->child; c; c = c->next, k++) {
    int64_t id;
    if (!lm_tok_json_int(c, 0, LM_TOK_MAX_VOCAB - 2, &id)) {
      st = lm_error(LM_ERR_FORMAT, "%s: model.vocab[\"%.200s\"]: the id must be an integer from 0 to 2^31-2", name, c->string);
      goto done;
    }
    if (id >= count) {
      st = lm_error(LM_ERR_FORMAT, "%s: model.vocab[\"%.200s\"]: id %lld is past the end (%lld tokens; ids must be 0..N-1)",
                    name, c->string, (long long)id, (long long)count);
      goto done;
    }
    if (seen[id] >= 0) { st = lm_error(LM_ERR_FORMAT, "%s: model.vocab[\"%.200s\"]: id %lld is used twice", name, c->string, (long long)id); goto done; }
    seen[id] = k;
  }
  /* entries in id order */
  const cJSON **byid = lm_xmalloc((size_t)(count + 1) * sizeof *byid);
  if (!byid) { st = LM_ERR_NOMEM; goto done; }
  for (c = vocab->child, k = 0; c; c = c->next, k++) {
    int64_t id = 0;
    lm_tok_json_int(c, 0, LM_TOK_MAX_VOCAB, &id);
    byid[id] = c;
  }
  for (int64_t i = 0; i < count && !st; i++) st = tl_add(&l, byid[i]->string, strlen(byid[i]->string), 0);
  free(byid);
  if (st) goto done;
  /* added_tokens: special; inside the vocabulary they must match, past it they follow on (in any order) */
  if ((st = lm_tok_json_added(root, name, &added, &n_added))) goto done;
  for (int progress = 1; progress;) {
    progress = 0;
    int64_t pending = 0;
    for (int ai = 0; ai < n_added; ai++) {
      int64_t id = added[ai].id;
      const char *ct = added[ai].content;
      size_t n = strlen(ct);
      if (id < l.n) {
        if (l.len[id] != n || memcmp(l.tok[id], ct, n)) {
          st = lm_error(LM_ERR_FORMAT, "%s: added_tokens[%d]: \"%s\" differs from model.vocab's token %lld", name, ai, ct,
                        (long long)id);
          goto done;
        }
        l.special[id] = 1;
      } else if (id == l.n) {
        if ((st = tl_add(&l, ct, n, 1))) goto done;
        progress = 1;
      } else pending++;
    }
    if (!progress && pending) {
      st = lm_error(LM_ERR_FORMAT, "%s: added_tokens: id %lld is missing (ids past model.vocab must follow on)", name,
                    (long long)l.n);
      goto done;
    }
  }
  if (unk) {
    wp->named[WP_UNK] = tl_find(&l, unk->valuestring);
    if (wp->named[WP_UNK] < 0) {
      st = lm_error(LM_ERR_FORMAT, "%s: model.unk_token \"%s\" is not in model.vocab", name, unk->valuestring);
      goto done;
    }
  }
  st = wp_build(out, &l, wp, NULL, name);
  wp = NULL;
done:
  wp_free(wp);
  free(seen); free(added);
  tl_free(&l);
  return st;
}

/* ------------------------------------------------------------ saving */
static const char *tok_str(const lm_tokenizer *t, int64_t id, char *buf, size_t cap) {
  size_t n; const uint8_t *b = lm_tok_bytes(t, id, &n);
  if (n >= cap) n = cap - 1;
  memcpy(buf, b, n); buf[n] = 0;
  return buf;
}

static cJSON *template_item(const char *kind, const char *id, int type_id) {
  cJSON *o = cJSON_CreateObject(), *s = cJSON_AddObjectToObject(o, kind);
  cJSON_AddStringToObject(s, "id", id);
  cJSON_AddNumberToObject(s, "type_id", type_id);
  return o;
}

static cJSON *post_processor(const lm_tokenizer *t) {
  const lm_wordpiece *wp = t->model;
  int64_t cls = wp->named[WP_CLS], sep = wp->named[WP_SEP];
  if (cls < 0 || sep < 0) return cJSON_CreateNull();
  char cb[1024], sb[1024];
  tok_str(t, cls, cb, sizeof cb); tok_str(t, sep, sb, sizeof sb);
  cJSON *p = cJSON_CreateObject();
  cJSON_AddStringToObject(p, "type", "TemplateProcessing");
  cJSON *single = cJSON_AddArrayToObject(p, "single"), *pair = cJSON_AddArrayToObject(p, "pair");
  cJSON_AddItemToArray(single, template_item("SpecialToken", cb, 0));
  cJSON_AddItemToArray(single, template_item("Sequence", "A", 0));
  cJSON_AddItemToArray(single, template_item("SpecialToken", sb, 0));
  cJSON_AddItemToArray(pair, template_item("SpecialToken", cb, 0));
  cJSON_AddItemToArray(pair, template_item("Sequence", "A", 0));
  cJSON_AddItemToArray(pair, template_item("SpecialToken", sb, 0));
  cJSON_AddItemToArray(pair, template_item("Sequence", "B", 1));
  cJSON_AddItemToArray(pair, template_item("SpecialToken", sb, 1));
  cJSON *sp = cJSON_AddObjectToObject(p, "special_tokens");
  const char *names[2] = {cb, sb}; int64_t ids[2] = {cls, sep};
  for (int i = 0; i < 2; i++) {
    cJSON *e = cJSON_AddObjectToObject(sp, names[i]);
    cJSON_AddStringToObject(e, "id", names[i]);
    cJSON *a = cJSON_AddArrayToObject(e, "ids"), *b = cJSON_AddArrayToObject(e, "tokens");
    cJSON_AddItemToArray(a, cJSON_CreateNumber((double)ids[i]));
    cJSON_AddItemToArray(b, cJSON_CreateString(names[i]));
  }
  return p;
}

static void add_flag(cJSON *o, const char *key, int v) {
  if (v < 0) cJSON_AddNullToObject(o, key); else cJSON_AddBoolToObject(o, key, v);
}

static lm_status wp_to_json(const lm_tokenizer *t, cJSON *root) {
  const lm_wordpiece *wp = t->model;
  char buf[1024];
  cJSON *norm = cJSON_AddObjectToObject(root, "normalizer");
  cJSON_AddStringToObject(norm, "type", "BertNormalizer");
  cJSON_AddBoolToObject(norm, "clean_text", wp->clean_text);
  cJSON_AddBoolToObject(norm, "handle_chinese_chars", wp->chinese);
  add_flag(norm, "strip_accents", wp->strip_accents);
  cJSON_AddBoolToObject(norm, "lowercase", wp->lowercase);
  cJSON *pre = cJSON_AddObjectToObject(root, "pre_tokenizer");
  cJSON_AddStringToObject(pre, "type", "BertPreTokenizer");
  cJSON_AddItemToObject(root, "post_processor", post_processor(t));
  cJSON *dec = cJSON_AddObjectToObject(root, "decoder");
  cJSON_AddStringToObject(dec, "type", "WordPiece");
  cJSON_AddStringToObject(dec, "prefix", wp->prefix);
  cJSON_AddBoolToObject(dec, "cleanup", 1);
  cJSON *model = cJSON_AddObjectToObject(root, "model");
  cJSON_AddStringToObject(model, "type", "WordPiece");
  cJSON_AddStringToObject(model, "unk_token", tok_str(t, wp->named[WP_UNK], buf, sizeof buf));
  cJSON_AddStringToObject(model, "continuing_subword_prefix", wp->prefix);
  cJSON_AddNumberToObject(model, "max_input_chars_per_word", (double)wp->max_chars);
  cJSON *vocab = cJSON_AddObjectToObject(model, "vocab");
  if (!vocab) return lm_error(LM_ERR_NOMEM, "out of memory");
  char *s = NULL; size_t scap = 0;
  for (int64_t i = 0; i < t->n_vocab; i++) {
    size_t n; const uint8_t *b = lm_tok_bytes(t, i, &n);
    if (grow(&s, &scap, n + 1, 1)) { free(s); return LM_ERR_NOMEM; }
    memcpy(s, b, n); s[n] = 0;
    if (!cJSON_AddNumberToObject(vocab, s, (double)i)) { free(s); return lm_error(LM_ERR_NOMEM, "out of memory"); }
  }
  free(s);
  return LM_OK;
}

static lm_status wp_save(const lm_tokenizer *t, const char *dir) {
  const lm_wordpiece *wp = t->model;
  /* vocab.txt: one token per line */
  size_t total = 0;
  for (int64_t i = 0; i < t->n_vocab; i++) {
    size_t n; const uint8_t *b = lm_tok_bytes(t, i, &n);
    if (memchr(b, '\n', n) || memchr(b, '\r', n))
      return lm_error(LM_ERR_UNSUPPORTED, "%s: token %lld contains a line break and cannot be written to vocab.txt", dir,
                      (long long)i);
    total += n + 1;
  }
  char *v = lm_xmalloc(total + 1);
  if (!v) return LM_ERR_NOMEM;
  size_t o = 0;
  for (int64_t i = 0; i < t->n_vocab; i++) {
    size_t n; const uint8_t *b = lm_tok_bytes(t, i, &n);
    memcpy(v + o, b, n); o += n; v[o++] = '\n';
  }
  lm_status st = lm_tok_write(dir, "vocab.txt", v, o);
  free(v);
  if (st) return st;
  char *json; size_t len;
  if ((st = lm_tokenizer_to_json(t, &json, &len))) return st;
  st = lm_tok_write(dir, "tokenizer.json", json, len);
  free(json);
  if (st) return st;
  /* tokenizer_config.json */
  cJSON *c = cJSON_CreateObject();
  if (!c) return lm_error(LM_ERR_NOMEM, "out of memory");
  char buf[1024];
  cJSON_AddStringToObject(c, "tokenizer_class", "BertTokenizer");
  cJSON_AddBoolToObject(c, "do_lower_case", wp->lowercase);
  add_flag(c, "strip_accents", wp->strip_accents);
  cJSON_AddBoolToObject(c, "tokenize_chinese_chars", wp->chinese);
  for (int k = 0; k < WP_NAMED; k++)
    if (wp->named[k] >= 0) cJSON_AddStringToObject(c, WP_KEYS[k], tok_str(t, wp->named[k], buf, sizeof buf));
  cJSON_AddBoolToObject(c, "clean_up_tokenization_spaces", 0);
  char *txt = cJSON_Print(c);
  cJSON_Delete(c);
  if (!txt) return lm_error(LM_ERR_NOMEM, "out of memory");
  st = lm_tok_write(dir, "tokenizer_config.json", txt, strlen(txt));
  free(txt);
  return st;
}

const lm_tok_model_ops lm_wordpiece_ops = {
  .type = "WordPiece", .what = "WordPiece", .byte_level = 0,
  .from_json = wp_from_json, .dir_config = wp_dir_config,
  .state_new = state_new, .state_free = state_free,
  .encode = wp_encode, .encode_word = wp_encode_word, .decode = wp_decode,
  .to_json = wp_to_json, .save = wp_save, .free = wp_free,
};
