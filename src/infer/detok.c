/* detok.c — streaming detokenization (see detok.h for why and how). */
#include <stdlib.h>
#include <string.h>
#include "base/base.h"
#include "infer/detok.h"

#define MAX_IDS (2 * LM_DETOK_WINDOW)   /* a window that cannot restart yet may grow to this */

/* Bytes of s[0..n) up to the last point that does not end inside a UTF-8 sequence or in U+FFFD
 * (a byte-fallback decoder's mark for a character still incomplete). */
static size_t complete_prefix(const unsigned char *s, size_t n) {
  /* a byte-fallback decoder writes U+FFFD for each byte of an incomplete character: hold them all */
  while (n >= 3 && s[n - 3] == 0xEF && s[n - 2] == 0xBF && s[n - 1] == 0xBD) n -= 3;
  size_t i = n, back = 0;
  while (i > 0 && back < 4 && (s[i - 1] & 0xC0) == 0x80) { i--; back++; }
  if (i > 0 && s[i - 1] >= 0xC0 && s[i - 1] < 0xF8) {
    unsigned char lead = s[i - 1];
    size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2;
    if (back + 1 < need) return i - 1;   /* cut inside a sequence */
  }
  return n;
}

static lm_status decode(lm_detok *d, char **text, size_t *len) {
  return lm_tokenizer_decode(d->tok, d->ids, (size_t)d->n, text, len);
}

/* Starts a new window whose context is `ctx`: base = its text's length. */
static lm_status anchor(lm_detok *d, int64_t ctx) {
  d->n = 0; d->has_ctx = 0; d->base = 0; d->printed = 0;
  if (ctx < 0) return LM_OK;
  d->ids[0] = (uint32_t)ctx; d->n = 1; d->has_ctx = 1;
  char *t; size_t len;
  lm_status st = decode(d, &t, &len);
  if (st) return st;
  d->base = len;
  free(t);
  return LM_OK;
}

lm_status lm_detok_init(lm_detok *d, const lm_tokenizer *tok, int64_t ctx) {
  memset(d, 0, sizeof *d);
  d->tok = tok;
  return anchor(d, ctx);
}

void lm_detok_free(lm_detok *d) {
  free(d->out);
  memset(d, 0, sizeof *d);
}

/* Appends s[0..n) to the output buffer at *at. */
static lm_status keep(lm_detok *d, size_t *at, const char *s, size_t n) {
  if (*at + n + 1 > d->cap) {
    size_t cap = 2 * (*at + n + 1);
    char *o = realloc(d->out, cap);
    if (!o) return lm_error(LM_ERR_NOMEM, "out of memory");
    d->out = o; d->cap = cap;
  }
  memcpy(d->out + *at, s, n);
  *at += n;
  d->out[*at] = 0;
  return LM_OK;
}

/* Appends the window's new text to the output at *at: all of it (final) or its complete prefix;
 * then restarts the window from its newest token when everything is out and the window is long. */
static lm_status emit(lm_detok *d, int final, size_t *at) {
  if (d->n == d->has_ctx) return LM_OK;
  char *t; size_t len;
  lm_status st = decode(d, &t, &len);
  if (st) return st;
  size_t from = d->base + d->printed;
  size_t upto = len <= from ? from : final ? len : from + complete_prefix((unsigned char *)t + from, len - from);
  if (upto > from && !(st = keep(d, at, t + from, upto - from))) d->printed += upto - from;
  int all = !st && d->base + d->printed >= len;
  free(t);
  if (st || !all || d->n - d->has_ctx < LM_DETOK_WINDOW) return st;
  /* restart only from a token that decodes to complete text on its own (not half a character) */
  uint32_t last = d->ids[d->n - 1];
  if ((st = lm_tokenizer_decode(d->tok, &last, 1, &t, &len))) return st;
  int clean = complete_prefix((unsigned char *)t, len) == len;
  free(t);
  return clean ? anchor(d, last) : LM_OK;
}

lm_status lm_detok_push(lm_detok *d, uint32_t id, const char **text, size_t *n) {
  size_t at = 0;
  lm_status st = LM_OK;
  if (d->n == MAX_IDS + 1) {   /* a window that never ended cleanly: out with what it holds, restart */
    if ((st = emit(d, 1, &at)) || (st = anchor(d, d->ids[d->n - 1]))) return st;
  }
  d->ids[d->n++] = id;
  st = emit(d, 0, &at);
  *text = at ? d->out : "";
  *n = at;
  return st;
}

lm_status lm_detok_flush(lm_detok *d, const char **text, size_t *n) {
  size_t at = 0;
  lm_status st = emit(d, 1, &at);
  *text = at ? d->out : "";
  *n = at;
  return st;
}
