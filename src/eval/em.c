/* em.c — generation scored by exact match (em.h).
 *
 * For each record the prompt is k solved examples "input target" (the first
 * target) joined by blank lines, then the input, as lm-evaluation-harness's
 * generate_until tasks build it (target delimiter " ", few-shot delimiter
 * "\n\n"); the shots of item i come from lm_eval_shots, as in multiple
 * choice. lm_generate continues the prompt (decoder-only models, and
 * encoder-decoders, whose encoder reads the prompt); the pieces are collected
 * until the stop string appears (the output is cut before it), the model's
 * end-of-text token, or the token limit. The output matches when its
 * normalized form equals that of one of the targets; EM is the mean of the
 * matches, with lm-eval's standard error. */
#include <stdlib.h>
#include <string.h>
#include "base/base.h"
#include "eval/em.h"
#include "eval/mc.h"

typedef struct {
  char *buf; size_t n, cap;
  const char *stop; size_t stop_n;
  int oom;
} collect;

/* the piece callback: append; stop (and cut) when the stop string shows up */
static int on_piece(const char *piece, size_t len, void *user) {
  collect *c = user;
  if (c->n + len + 1 > c->cap) {
    size_t nc = c->cap ? c->cap : 256;
    while (nc < c->n + len + 1) nc *= 2;
    char *b = realloc(c->buf, nc);
    if (!b) { c->oom = 1; return 1; }
    c->buf = b; c->cap = nc;
  }
  size_t from = c->n > c->stop_n ? c->n - c->stop_n : 0;   /* the stop string may straddle pieces */
  memcpy(c->buf + c->n, piece, len);
  c->n += len;
  c->buf[c->n] = 0;
  if (!c->stop_n) return 0;
  char *hit = strstr(c->buf + from, c->stop);
  if (!hit) return 0;
  c->n = (size_t)(hit - c->buf);
  c->buf[c->n] = 0;
  return 1;
}

static char *prompt_of(const lm_em_item *it, const lm_em_set *train, const int64_t *shots, int k) {
  size_t len = strlen(it->input) + 1;
  for (int j = 0; j < k; j++) len += strlen(train->items[shots[j]].input) + strlen(train->items[shots[j]].targets[0]) + 3;
  char *p = lm_xmalloc(len), *w = p;
  if (!p) return NULL;
  for (int j = 0; j < k; j++) w += sprintf(w, "%s %s\n\n", train->items[shots[j]].input, train->items[shots[j]].targets[0]);
  strcpy(w, it->input);
  return p;
}

static int matches(const char *out, const lm_em_item *it, lm_em_norm norm, lm_status *st) {
  char *a = lm_em_normalize(out, norm);
  int hit = 0;
  if (!a) { *st = LM_ERR_NOMEM; return 0; }
  for (int k = 0; k < it->n_targets && !hit; k++) {
    char *b = lm_em_normalize(it->targets[k], norm);
    if (!b) { *st = LM_ERR_NOMEM; break; }
    hit = !strcmp(a, b);
    free(b);
  }
  free(a);
  return hit;
}

lm_status lm_em_eval(lm_model *m, const lm_tokenizer *tok, const lm_em_set *test, const lm_em_opts *o, lm_em_result *r,
                     lm_em_callback cb, void *user) {
  memset(r, 0, sizeof *r);
  if (o->shots > 0 && (!o->train || o->train->n < o->shots + (o->train == test)))
    return lm_error(LM_ERR_ARG, "%d shots need at least %d training records (%lld given)", o->shots,
                    o->shots + (o->train == test), (long long)(o->train ? o->train->n : 0));
  int64_t *shots = lm_xmalloc(((size_t)o->shots + 1) * sizeof *shots);
  if (!shots) return LM_ERR_NOMEM;
  collect c = {.stop = o->stop ? o->stop : "", .stop_n = o->stop ? strlen(o->stop) : 0};
  lm_status st = LM_OK;
  lm_progress bar;
  if (o->progress) lm_progress_start(&bar, "eval", test->n);
  int64_t right = 0;
  for (int64_t i = 0; i < test->n && !st; i++) {
    const lm_em_item *it = &test->items[i];
    if (o->shots) lm_eval_shots(o->seed, i, o->train->n, o->train == test, o->shots, shots);
    char *prompt = prompt_of(it, o->train, shots, o->shots);
    if (!prompt) { st = LM_ERR_NOMEM; break; }
    c.n = 0;
    if (!on_piece("", 0, &c) && c.oom) st = lm_error(LM_ERR_NOMEM, "out of memory");   /* an empty output is "" */
    if (!st && (st = lm_generate(m, tok, prompt, &o->gen, on_piece, &c, NULL)))
      lm_error_prefix(st, "record %lld (line %lld)", (long long)i + 1, (long long)it->line);
    if (!st && c.oom) st = lm_error(LM_ERR_NOMEM, "out of memory");
    int hit = st ? 0 : matches(c.buf, it, o->norm, &st);
    if (!st) {
      right += hit;
      if (cb) {
        lm_em_detail d = {.index = i, .shots = shots, .n_shots = o->shots, .prompt = prompt, .output = c.buf, .match = hit};
        st = cb(&d, user);
      }
    }
    free(prompt);
    char extra[64];
    snprintf(extra, sizeof extra, "em %.3f", (double)right / (double)(i + 1));
    if (o->progress && !st) lm_progress_update(&bar, i + 1, extra);
  }
  if (o->progress) lm_progress_finish(&bar, NULL);
  if (!st) {
    r->n = test->n;
    r->em = (double)right / (double)test->n;
    r->em_stderr = lm_eval_stderr(r->em, test->n);
  }
  free(shots); free(c.buf);
  return st;
}
