/* generate.c — autoregressive generation: prompt → tokens → prefill the KV
 * cache → sample, feed, repeat → stream decoded text. Text is handed to the
 * callback as the streaming detokenizer (detok.h) completes it: complete UTF-8,
 * with the spaces SentencePiece-style decoders give a token only in context.
 * Past the model's context the window slides: the
 * last half of it is re-prefilled (learned absolute positions cannot shift, so
 * the cache cannot simply drop its oldest entries). With o->calc, a finished
 * calculator call in the generated text (calc.h) gets its result spliced in:
 * printed, tokenized and fed like sampled tokens, not counted as generated. */
#include <stdlib.h>
#include <string.h>
#include "base/base.h"
#include "model/model.h"
#include "infer/infer.h"
#include "infer/calc.h"
#include "infer/detok.h"
#include "infer/encdec.h"
#include "infer/beam.h"

/* The window a generation runs in: the tokens in the cache and how it slides. */
typedef struct {
  lm_session *s;
  int32_t *win;
  int64_t len, max_len, keep, P;
  int told;
  const lm_gen_opts *o;
  void *user;
} gen_window;

/* Appends one token to the context (sliding when the cache is full); *logits: the next token's. */
static lm_status window_push(gen_window *w, int32_t next, const float **logits) {
  if (w->len < w->max_len) {
    w->win[w->len++] = next;
    return lm_session_feed(w->s, &next, 1, logits);
  }
  if (!w->told && w->o->on_window) { w->o->on_window(w->P, 0, w->user); w->told = 1; }   /* the cache is full: slide */
  memmove(w->win, w->win + w->len - (w->keep - 1), (size_t)(w->keep - 1) * sizeof(int32_t));
  w->win[w->keep - 1] = next;
  w->len = w->keep;
  lm_session_reset(w->s);
  return lm_session_feed(w->s, w->win, w->len, logits);
}

lm_status lm_generate(lm_model *m, const lm_tokenizer *tok, const char *prompt, const lm_gen_opts *o,
                      lm_piece_callback cb, void *user, lm_gen_stats *stats) {
  const lm_config *c = &m->cfg;
  if (o->beams > 0) return lm_beam_generate(m, tok, prompt, o, cb, user, stats);   /* beam.c, both kinds */
  if (c->n_enc_layer > 0) return lm_encdec_generate(m, tok, prompt, o, cb, user, stats);   /* T5: encdec.c */
  if (c->head != LM_HEAD_LM || !c->causal)
    return lm_error(LM_ERR_UNSUPPORTED, "generation needs a causal decoder with an LM head; this is a %s model (an encoder, "
                    "or a task head)", lm_arch_name(c->arch));
  uint32_t *ids = NULL; size_t n = 0;
  lm_status st = lm_tokenizer_encode(tok, prompt, strlen(prompt), LM_ENCODE_SPECIAL | (o->add_special ? LM_ENCODE_ADD_SPECIAL : 0),
                                     &ids, &n);
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
  /* calculator results are fed without counting as generated tokens, so with calc the window may
   * fill (and slide) before max_tokens: it gets the whole context */
  int64_t max_len = !o->calc && len + o->max_tokens < P ? len + o->max_tokens : P;
  int told = 0;
  if (dropped && o->on_window) { o->on_window(P, dropped, user); told = 1; }
  lm_session *s = NULL;
  lm_sampler sp;
  int32_t *win = malloc((size_t)max_len * sizeof(int32_t));   /* the tokens in the cache */
  if (!win) { free(ids); return LM_ERR_NOMEM; }
  for (int64_t i = 0; i < len; i++) win[i] = (int32_t)ids[dropped + i];
  free(ids);
  st = lm_session_init_kv(&s, m, max_len, o->kv_f16);
  if (!st) st = lm_sampler_init(&sp, o, c->vocab_size);
  if (st) { lm_session_free(s); free(win); return st; }
  lm_gen_stats gs = {.prompt_tokens = (int64_t)n, .stop_token = -1};
  const float *logits;
  double t0 = lm_time_sec();
  st = lm_session_feed(s, win, len, &logits);
  gs.prefill_sec = lm_time_sec() - t0;
  lm_detok dt = {0};
  if (!st) st = lm_detok_init(&dt, tok, win[len - 1]);
  gen_window w = {.s = s, .win = win, .len = len, .max_len = max_len, .keep = keep, .P = P, .told = told, .o = o,
                  .user = user};
  char tail[LM_CALC_MAX_EXPR + 64]; size_t nt = 0;   /* the end of the generated text, for calculator calls */
  t0 = lm_time_sec();
  for (int64_t k = 0; !st && k < o->max_tokens; k++) {
    int32_t next = lm_sampler_pick(&sp, logits);
    gs.generated_tokens++;
    int is_stop = o->stop_at_eot && next == eot;
    for (int j = 0; j < o->n_stop_tokens && !is_stop; j++) is_stop = o->stop_tokens[j] == next;
    if (is_stop) { gs.stop_token = next; break; }   /* a stop token ends generation unprinted */
    const char *text; size_t tlen;
    if ((st = lm_detok_push(&dt, (uint32_t)next, &text, &tlen))) break;
    char splice[64]; int ns = 0;
    if (o->calc) {   /* keep the last bytes of the text; a call just closed gets its result */
      for (size_t i = 0; i < tlen; i++) {
        if (nt == sizeof tail) { memmove(tail, tail + sizeof tail / 2, sizeof tail / 2); nt = sizeof tail / 2; }
        tail[nt++] = text[i];
      }
      ns = lm_calc_splice(tail, nt, splice, sizeof splice);
      if (ns) nt = 0;
    }
    int stop = tlen && cb && cb(text, tlen, user);
    if (!stop && ns && o->on_calc) o->on_calc(splice, (size_t)ns, user);
    if (!stop && ns && cb) stop = cb(splice, (size_t)ns, user);
    if (stop) break;
    if (k + 1 == o->max_tokens) break;
    st = window_push(&w, next, &logits);
    if (ns && !st) {   /* the result joins the context as text the model reads */
      uint32_t *sid = NULL; size_t nsid = 0;
      splice[ns] = 0;
      st = lm_tokenizer_encode(tok, splice, (size_t)ns, 0, &sid, &nsid);
      for (size_t i = 0; !st && i < nsid; i++) st = window_push(&w, (int32_t)sid[i], &logits);
      free(sid);
    }
  }
  const char *rest; size_t nrest;
  if (!st && !lm_detok_flush(&dt, &rest, &nrest) && nrest && cb) cb(rest, nrest, user);
  lm_detok_free(&dt);
  gs.decode_sec = lm_time_sec() - t0;
  if (stats) *stats = gs;
  lm_sampler_free(&sp);
  lm_session_free(s);
  free(win);
  return st;
}
