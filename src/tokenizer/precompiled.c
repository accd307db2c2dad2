/* precompiled.c — SentencePiece's precompiled character map, the normalizer
 * that T5, ALBERT, XLM-R, mBART... ship (tokenizer.json: {"type": "Precompiled",
 * "precompiled_charsmap": base64}; a SentencePiece model: normalizer_spec).
 *
 * The blob: u32 (little-endian) byte size of a Darts-clone double array, the
 * array (u32 units), then NUL-terminated replacement strings. A unit packs
 * a label (low 8 bits, bit 31 set on leaf units so no byte matches them), a
 * has-leaf flag (bit 8) and an offset (bits 10.., shifted left 8 more when
 * bit 9 is set); a leaf unit's low 31 bits are the value, a byte offset into
 * the strings. Walking a key: pos = offset(unit[0]); per byte c:
 * pos ^= c, the unit there must carry label c, pos ^= its offset, and if it
 * has a leaf, unit[pos] holds the value of the key so far.
 *
 * Two rules use the map, and they differ (both are reproduced exactly):
 *  - Hugging Face (`lm_precompiled_normalize`, the "Precompiled" normalizer,
 *    spm_precompiled): the text is cut into extended grapheme clusters
 *    (UAX #29: utf8proc, plus the Extend characters of newer Unicode that HF
 *    knows). A cluster shorter than 6 bytes is looked up whole,
 *    and the FIRST (shortest) key that prefixes it replaces the whole cluster
 *    (so "Ａ" + U+0301 becomes "A": the accent is dropped). Otherwise each
 *    character is replaced by its own entry, or kept.
 *  - SentencePiece (`LM_PRECOMPILED_SPM`): at each place the LONGEST key that
 *    prefixes the rest of the text is replaced, across cluster boundaries;
 *    else one character is kept, and an invalid UTF-8 byte becomes U+FFFD.
 * In the Hugging Face rule text is always valid UTF-8; lmkit keeps an invalid
 * byte as it is (no key can match it), so any bytes normalize.
 *
 * The blob is untrusted: every unit index and string offset is checked; a
 * walk that leaves the array, or a value outside the strings or inside a
 * character, is an error (LM_ERR_FORMAT) naming the map, never a read out
 * of bounds. */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>
#include "tokenizer/pipeline.h"
#include "tokenizer/precompiled.h"

struct lm_precompiled {
  uint32_t *units; size_t n_units;
  char *strings; size_t n_strings;   /* the replacement pool (valid UTF-8) */
  int32_t ascii[128];                /* value of each one-byte key, -1: none (the common case, looked up once) */
  char *where;
};

enum { NO_KEY = -1, CORRUPT = -2 };

static inline uint32_t unit_label(uint32_t u) { return u & ((1u << 31) | 0xFFu); }
static inline int unit_has_leaf(uint32_t u) { return (u >> 8) & 1; }
static inline uint32_t unit_value(uint32_t u) { return u & ((1u << 31) - 1); }
static inline size_t unit_offset(uint32_t u) { return (size_t)(u >> 10) << ((u & (1u << 9)) >> 6); }

/* Walks key[0..n): with longest = 0 returns the value of the first (shortest) key that prefixes
 * it (Hugging Face), else of the longest, with its length in *klen (SentencePiece). A NUL byte
 * ends the walk, as in both. NO_KEY, or CORRUPT when the walk leaves the array. */
static int64_t trie_walk(const lm_precompiled *p, const uint8_t *key, size_t n, int longest, size_t *klen) {
  if (p->n_units == 0) return CORRUPT;
  size_t pos = unit_offset(p->units[0]);
  int64_t best = NO_KEY;
  for (size_t i = 0; i < n && key[i]; i++) {
    pos ^= key[i];
    if (pos >= p->n_units) return CORRUPT;
    uint32_t u = p->units[pos];
    if (unit_label(u) != key[i]) break;
    pos ^= unit_offset(u);
    if (unit_has_leaf(u)) {
      if (pos >= p->n_units) return CORRUPT;
      best = unit_value(p->units[pos]);
      if (klen) *klen = i + 1;
      if (!longest) break;
    }
  }
  return best;
}

/* The replacement string at value v (up to its NUL or the end); NULL if v is not the start of
 * a character of the pool. */
static const char *value_string(const lm_precompiled *p, int64_t v, size_t *len) {
  if (v < 0 || (uint64_t)v > p->n_strings) return NULL;
  const char *s = p->strings + v;
  size_t rest = p->n_strings - (size_t)v;
  if (rest && ((uint8_t)s[0] & 0xC0) == 0x80) return NULL;
  const char *z = memchr(s, 0, rest);
  *len = z ? (size_t)(z - s) : rest;
  return s;
}

void lm_precompiled_free(lm_precompiled *p) {
  if (!p) return;
  free(p->units); free(p->strings); free(p->where);
  free(p);
}

lm_status lm_precompiled_new(lm_precompiled **out, const uint8_t *blob, size_t n, const char *where) {
  *out = NULL;
  if (!where) where = "precompiled_charsmap";
  if (n < 4) return lm_error(LM_ERR_FORMAT, "%s: %zu bytes, too short for a precompiled charsmap (4-byte trie size)", where, n);
  uint32_t tsize = (uint32_t)blob[0] | (uint32_t)blob[1] << 8 | (uint32_t)blob[2] << 16 | (uint32_t)blob[3] << 24;
  if (tsize % 4 || tsize == 0)
    return lm_error(LM_ERR_FORMAT, "%s: the trie size %u is not a positive multiple of 4", where, tsize);
  if ((uint64_t)tsize > n - 4)
    return lm_error(LM_ERR_FORMAT, "%s: the trie (%u bytes) runs past the end of the charsmap (%zu bytes)", where, tsize, n);
  const uint8_t *str = blob + 4 + tsize;
  size_t nstr = n - 4 - tsize;
  if (lm_utf8_valid_prefix(str, nstr) != nstr)
    return lm_error(LM_ERR_FORMAT, "%s: the normalized strings are not valid UTF-8 (byte %zu)", where,
                    4 + (size_t)tsize + lm_utf8_valid_prefix(str, nstr));
  lm_precompiled *p = calloc(1, sizeof *p);
  if (!p) return lm_error(LM_ERR_NOMEM, "out of memory");
  p->n_units = tsize / 4;
  p->n_strings = nstr;
  p->units = malloc(tsize);
  p->strings = malloc(nstr + 1);
  p->where = lm_strdup(where);
  if (!p->units || !p->strings || !p->where) { lm_precompiled_free(p); return lm_error(LM_ERR_NOMEM, "out of memory"); }
  for (size_t i = 0; i < p->n_units; i++) {
    const uint8_t *b = blob + 4 + 4 * i;
    p->units[i] = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
  }
  memcpy(p->strings, str, nstr);
  p->strings[nstr] = 0;
  for (int c = 0; c < 128; c++) {
    uint8_t k = (uint8_t)c;
    int64_t v = trie_walk(p, &k, 1, 0, NULL);
    size_t len;
    if (v >= 0 && !value_string(p, v, &len)) v = CORRUPT;
    p->ascii[c] = (int32_t)(v >= 0 ? v : v == CORRUPT ? CORRUPT : NO_KEY);
  }
  *out = p;
  return LM_OK;
}

/* ---- output ---- */
typedef struct { char *s; size_t n, cap; } obuf;

static lm_status put(obuf *o, const void *s, size_t n) {
  if (o->n + n + 1 > o->cap) {
    size_t c = o->cap ? o->cap : 64;
    while (c < o->n + n + 1) {
      if (c > SIZE_MAX / 2) return lm_error(LM_ERR_NOMEM, "out of memory");
      c *= 2;
    }
    char *q = realloc(o->s, c);
    if (!q) return lm_error(LM_ERR_NOMEM, "out of memory");
    o->s = q; o->cap = c;
  }
  memcpy(o->s + o->n, s, n);
  o->n += n;
  return LM_OK;
}

static lm_status corrupt(const lm_precompiled *p) {
  return lm_error(LM_ERR_FORMAT, "%s: corrupt precompiled charsmap (a trie walk leaves the array or a value is outside "
                  "the normalized strings)", p->where);
}

/* Appends the replacement of key[0..n) under rule `longest` (see trie_walk); *hit = 0 if none. */
static lm_status replace(const lm_precompiled *p, obuf *o, const uint8_t *key, size_t n, int longest, size_t *klen,
                         int *hit) {
  int64_t v;
  if (n == 1 && key[0] < 128 && !longest) v = p->ascii[key[0]];
  else v = trie_walk(p, key, n, longest, klen);
  *hit = 0;
  if (v == CORRUPT) return corrupt(p);
  if (v == NO_KEY) return LM_OK;
  size_t len;
  const char *s = value_string(p, v, &len);
  if (!s) return corrupt(p);
  *hit = 1;
  return put(o, s, len);
}

/* Grapheme_Cluster_Break=Extend characters newer than utf8proc 2.8's Unicode 15.0, which HF
 * tokenizers' unicode-segmentation joins to the character before (found by comparing every BMP
 * character after a base with HF: tests/reference/test_unigram.py). Used only while utf8proc
 * reports them unassigned. */
static const uint32_t NEW_EXTEND[][2] = {{0x0897, 0x0897}, {0x1ACF, 0x1ADD}, {0x1AE0, 0x1AEB}};

static int joins_as_new_extend(uint32_t prev, uint32_t c) {
  for (size_t i = 0; i < sizeof NEW_EXTEND / sizeof *NEW_EXTEND; i++)
    if (c >= NEW_EXTEND[i][0] && c <= NEW_EXTEND[i][1])
      return utf8proc_category((utf8proc_int32_t)c) == UTF8PROC_CATEGORY_CN &&
             utf8proc_get_property((utf8proc_int32_t)prev)->boundclass != UTF8PROC_BOUNDCLASS_CONTROL &&
             prev != '\r' && prev != '\n';   /* GB4: always a break after a control, CR or LF */
  return 0;
}

/* Hugging Face: grapheme clusters shorter than 6 bytes whole (first key), else character by character. */
static lm_status normalize_hf(const lm_precompiled *p, const uint8_t *s, size_t n, obuf *o) {
  size_t pos = 0;
  lm_status st = LM_OK;
  int hit;
  while (pos < n && !st) {
    size_t cl = lm_utf8_char(s + pos, n - pos);
    if (!cl) { st = put(o, s + pos, 1); pos++; continue; }   /* an invalid byte: no key matches it */
    /* the cluster [pos, end) */
    size_t end = pos + cl, nchar = 1;
    uint32_t prev, c2;
    lm_utf8_dec(s + pos, cl, &prev);
    utf8proc_int32_t state = 0;
    while (end < n) {
      size_t l2 = lm_utf8_char(s + end, n - end);
      if (!l2) break;
      lm_utf8_dec(s + end, l2, &c2);
      /* ASCII pairs always break, except CR LF (GB3): skips the table for plain text */
      if (prev < 0x80 && c2 < 0x80 ? !(prev == '\r' && c2 == '\n')
                                   : utf8proc_grapheme_break_stateful((utf8proc_int32_t)prev, (utf8proc_int32_t)c2, &state) &&
                                     !joins_as_new_extend(prev, c2))
        break;
      end += l2; prev = c2; nchar++;
    }
    size_t glen = end - pos;
    if (nchar > 1 && glen < 6) {
      if ((st = replace(p, o, s + pos, glen, 0, NULL, &hit))) break;
      if (hit) { pos = end; continue; }
    }
    while (pos < end && !st) {
      size_t l = lm_utf8_char(s + pos, end - pos);
      if ((st = replace(p, o, s + pos, l, 0, NULL, &hit))) break;
      if (!hit) st = put(o, s + pos, l);
      pos += l;
    }
  }
  return st;
}

/* SentencePiece: the longest key at each place; else one character (an invalid byte: U+FFFD). */
static lm_status normalize_spm(const lm_precompiled *p, const uint8_t *s, size_t n, obuf *o) {
  size_t pos = 0;
  lm_status st = LM_OK;
  int hit;
  while (pos < n && !st) {
    size_t klen = 0;
    if ((st = replace(p, o, s + pos, n - pos, 1, &klen, &hit))) break;
    if (hit) { pos += klen; continue; }
    size_t cl = lm_utf8_char(s + pos, n - pos);
    if (cl) { st = put(o, s + pos, cl); pos += cl; }
    else { st = put(o, "\xEF\xBF\xBD", 3); pos++; }
  }
  return st;
}

lm_status lm_precompiled_normalize_as(const lm_precompiled *p, lm_precompiled_rule rule, const char *in, size_t n,
                                      char **out, size_t *out_len) {
  *out = NULL; *out_len = 0;
  obuf o = {0};
  lm_status st = put(&o, "", 0);   /* room for the NUL even when empty */
  if (!st) st = rule == LM_PRECOMPILED_SPM ? normalize_spm(p, (const uint8_t *)in, n, &o)
                                           : normalize_hf(p, (const uint8_t *)in, n, &o);
  if (st) { free(o.s); return st; }
  o.s[o.n] = 0;
  *out = o.s; *out_len = o.n;
  return LM_OK;
}

lm_status lm_precompiled_normalize(const lm_precompiled *p, const char *in, size_t n, char **out, size_t *out_len) {
  return lm_precompiled_normalize_as(p, LM_PRECOMPILED_HF, in, n, out, out_len);
}
