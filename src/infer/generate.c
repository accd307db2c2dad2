/* generate.c — autoregressive generation: prompt → tokens → prefill the KV
 * cache → sample, feed, repeat → stream decoded text. Text is handed to the
 * callback only as complete UTF-8 sequences, since one character can span
 * several byte-level tokens. Past the model's context the window slides: the
 * last half of it is re-prefilled (learned absolute positions cannot shift, so
 * the cache cannot simply drop its oldest entries). */
#include <stdlib.h>
#include <string.h>
#include "base/base.h"
#include "model/model.h"
#include "infer/infer.h"

/* Length of the longest prefix of buf[0..n) that does not end inside a UTF-8 sequence. */
static size_t utf8_complete(const unsigned char *buf, size_t n) {
  size_t i = n, back = 0;
  while (i > 0 && back < 4 && (buf[i - 1] & 0xC0) == 0x80) { i--; back++; }
  if (i == 0) return n;                       /* only continuation bytes: invalid, flush */
  unsigned char lead = buf[i - 1];
  size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
  if (lead < 0x80 || lead >= 0xF8) return n;  /* ASCII or invalid lead: nothing to wait for */
  return back + 1 >= need ? n : i - 1;
}

lm_status lm_generate(lm_model *m, const lm_tokenizer *tok, const char *prompt, const lm_gen_opts *o,
                      lm_piece_callback cb, void *user, lm_gen_stats *stats) {
  const lm_config *c = &m->cfg;
  if (c->head != LM_HEAD_LM || !c->causal)
    return lm_error(LM_ERR_UNSUPPORTED, "generation needs a causal decoder with an LM head; this is a %s model (an encoder, "
                    "or a task head)", lm_arch_name(c->arch));
  uint32_t *ids = NULL; size_t n = 0;
  lm_status st = lm_tokenizer_encode(tok, prompt, strlen(prompt), 1, &ids, &n);
  if (st) return st;
  int64_t eot = lm_tokenizer_eot(tok);
  if (n == 0) {           /* an empty prompt starts a new document, as in GPT-2 */
    if (eot < 0) { free(ids); return lm_error(LM_ERR_ARG, "empty prompt and the tokenizer has no end-of-text token to start from"); }
    free(ids);
    ids = malloc(sizeof *ids);
    if (!ids) return LM_ERR_NOMEM;
    ids[0] = (uint32_t)eot; n = 1;
  }
  /* Past the context, a sliding window: the cache holds at most P tokens; when it is full, the last
   * half of the window (the new token included) is re-prefilled at positions 0.. and decoding goes on.
   * A prompt longer than P keeps its last P tokens. */
  int64_t P = c->n_positions, keep = P / 2 > 0 ? P / 2 : 1;
  int64_t dropped = (int64_t)n > P ? (int64_t)n - P : 0, len = (int64_t)n - dropped;
  int64_t max_len = len + o->max_tokens < P ? len + o->max_tokens : P;
  int told = 0;
  if (dropped && o->on_window) { o->on_window(P, dropped, user); told = 1; }
  lm_session *s = NULL;
  lm_sampler sp;
  int32_t *win = malloc((size_t)max_len * sizeof(int32_t));   /* the tokens in the cache */
  if (!win) { free(ids); return LM_ERR_NOMEM; }
  for (int64_t i = 0; i < len; i++) win[i] = (int32_t)ids[dropped + i];
  free(ids);
  st = lm_session_init(&s, m, max_len);
  if (!st) st = lm_sampler_init(&sp, o, c->vocab_size);
  if (st) { lm_session_free(s); free(win); return st; }
  lm_gen_stats gs = {.prompt_tokens = (int64_t)n, .stop_token = -1};
  const float *logits;
  double t0 = lm_time_sec();
  st = lm_session_feed(s, win, len, &logits);
  gs.prefill_sec = lm_time_sec() - t0;
  unsigned char pending[64]; size_t np = 0;
  t0 = lm_time_sec();
  for (int64_t k = 0; !st && k < o->max_tokens; k++) {
    int32_t next = lm_sampler_pick(&sp, logits);
    gs.generated_tokens++;
    int is_stop = o->stop_at_eot && next == eot;
    for (int j = 0; j < o->n_stop_tokens && !is_stop; j++) is_stop = o->stop_tokens[j] == next;
    if (is_stop) { gs.stop_token = next; break; }   /* a stop token ends generation unprinted */
    uint32_t u = (uint32_t)next;
    char *text; size_t tlen;
    if ((st = lm_tokenizer_decode(tok, &u, 1, &text, &tlen))) break;
    /* append, emit the complete-UTF-8 prefix, keep the rest */
    int stop = 0;
    for (size_t i = 0; i < tlen && !stop; i++) {
      pending[np++] = (unsigned char)text[i];
      if (np == sizeof pending) { stop = cb && cb((char *)pending, np, user); np = 0; }
    }
    free(text);
    size_t ok = utf8_complete(pending, np);
    if (!stop && ok && cb) stop = cb((char *)pending, ok, user);
    memmove(pending, pending + ok, np - ok); np -= ok;
    if (stop) break;
    if (k + 1 == o->max_tokens) break;
    if (len < max_len) {
      win[len++] = next;
      st = lm_session_feed(s, &next, 1, &logits);
    } else {                      /* the cache is full: slide */
      if (!told && o->on_window) { o->on_window(P, 0, user); told = 1; }
      memmove(win, win + len - (keep - 1), (size_t)(keep - 1) * sizeof(int32_t));
      win[keep - 1] = next;
      len = keep;
      lm_session_reset(s);
      st = lm_session_feed(s, win, len, &logits);
    }
  }
  if (!st && np && cb) cb((char *)pending, np, user);
  gs.decode_sec = lm_time_sec() - t0;
  if (stats) *stats = gs;
  lm_sampler_free(&sp);
  lm_session_free(s);
  free(win);
  return st;
}
