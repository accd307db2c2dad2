/* test_generate.c — generation past the model's context (a sliding window).
 *
 * The reference recomputes every step from scratch: a fresh session fed the whole
 * window the rule prescribes (the last P tokens at most; when a token would not fit,
 * the last P/2 tokens, the new one included). Each token lm_generate picks
 * greedily must be the argmax of the reference logits, before the context fills
 * (the behaviour generation had before the window existed: full recomputation, as
 * test_model.c proves for the cache) and after it. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "base/base.h"
#include "model/model.h"
#include "infer/infer.h"

#define P 16   /* the model's context */

typedef struct { char *text; size_t len; int windows; int64_t context, dropped; } sink;

static int collect(const char *piece, size_t len, void *user) {
  sink *s = user;
  s->text = realloc(s->text, s->len + len + 1);
  memcpy(s->text + s->len, piece, len);
  s->len += len;
  s->text[s->len] = 0;
  return 0;
}

static void on_window(int64_t context, int64_t dropped, void *user) {
  sink *s = user;
  s->windows++;
  s->context = context;
  s->dropped = dropped;
}

static lm_model *tiny(const lm_tokenizer *tok) {
  lm_config c;
  lm_config_default(&c, LM_ARCH_GPT2);
  c.vocab_size = lm_tokenizer_vocab_size(tok);
  c.n_positions = P; c.n_embd = 32; c.n_layer = 2; c.n_head = 4;
  c.init_std = 1.0f;   /* large weights: the logits depend strongly on the whole window, and greedy
                        * decoding does not settle into repeating one token (seed 4) */
  lm_model *m;
  cr_assert_eq(lm_model_create(&m, &c, 4), LM_OK, "%s", lm_last_error());
  return m;
}

static sink run(lm_model *m, const lm_tokenizer *tok, const char *prompt, int64_t max_tokens) {
  lm_gen_opts o;
  lm_gen_opts_default(&o);
  o.temperature = 0; o.stop_at_eot = 0; o.max_tokens = max_tokens; o.on_window = on_window;
  sink s = {0};
  lm_gen_stats gs;
  cr_assert_eq(lm_generate(m, tok, prompt, &o, collect, &s, &gs), LM_OK, "%s", lm_last_error());
  cr_assert_eq(gs.generated_tokens, max_tokens);
  return s;
}

/* Checks every token of prompt + s.text against from-scratch recomputation of the window;
 * returns how many tokens were generated. */
static int64_t check_against_reference(lm_model *m, const lm_tokenizer *tok, const char *prompt, const sink *s) {
  uint32_t *p, *g; size_t np, ng;
  cr_assert_eq(lm_tokenizer_encode(tok, prompt, strlen(prompt), 1, &p, &np), LM_OK);
  cr_assert_eq(lm_tokenizer_encode(tok, s->text, s->len, 1, &g, &ng), LM_OK);
  int32_t win[P + 1];
  int64_t n = 0;
  for (size_t i = np > P ? np - P : 0; i < np; i++) win[n++] = (int32_t)p[i];
  for (size_t k = 0; k < ng; k++) {
    lm_session *ss;
    const float *logits;
    cr_assert_eq(lm_session_init(&ss, m, P), LM_OK);
    cr_assert_eq(lm_session_feed(ss, win, n, &logits), LM_OK);
    float mx = -INFINITY;
    for (int64_t v = 0; v < m->cfg.vocab_size; v++) mx = fmaxf(mx, logits[v]);
    cr_assert(logits[g[k]] >= mx - 1e-4f, "token %zu (window of %lld): picked %u with logit %g, the best is %g",
              k, (long long)n, g[k], logits[g[k]], mx);
    lm_session_free(ss);
    win[n++] = (int32_t)g[k];
    if (n > P) { memmove(win, win + n - P / 2, (P / 2) * sizeof *win); n = P / 2; }
  }
  free(p); free(g);
  return (int64_t)ng;
}

Test(generate, past_the_context_slides_and_matches_recomputation) {
  lm_tokenizer *tok;
  cr_assert_eq(lm_tokenizer_load(&tok, "byte"), LM_OK);
  lm_model *m = tiny(tok);
  const char *prompt = "abcde";   /* 5 byte tokens */
  /* fits: prompt + 11 = the context; no window */
  sink fit = run(m, tok, prompt, P - 5);
  cr_assert_eq(fit.windows, 0, "nothing to report while it fits");
  cr_assert_eq(check_against_reference(m, tok, prompt, &fit), P - 5);
  /* 60 tokens: the window slides several times, reported once */
  sink far = run(m, tok, prompt, 60);
  cr_assert_eq(far.windows, 1, "the window is reported once, not at every slide");
  cr_assert_eq(far.context, P);
  cr_assert_eq(far.dropped, 0);
  cr_assert(far.len >= fit.len && !memcmp(far.text, fit.text, fit.len), "the text up to the context is unchanged");
  cr_assert_eq(check_against_reference(m, tok, prompt, &far), 60);
  free(fit.text); free(far.text);
  lm_model_free(m);
  lm_tokenizer_free(tok);
}

Test(generate, prompt_longer_than_the_context_keeps_its_end) {
  lm_tokenizer *tok;
  cr_assert_eq(lm_tokenizer_load(&tok, "byte"), LM_OK);
  lm_model *m = tiny(tok);
  const char *prompt = "a prompt of forty bytes, longer than 16.";
  sink s = run(m, tok, prompt, 20);
  cr_assert_eq(s.windows, 1);
  cr_assert_eq(s.dropped, (int64_t)strlen(prompt) - P);
  cr_assert_eq(check_against_reference(m, tok, prompt, &s), 20);
  /* the same as a prompt of its last P bytes */
  sink t = run(m, tok, prompt + strlen(prompt) - P, 20);
  cr_assert(s.len == t.len && !memcmp(s.text, t.text, s.len));
  free(s.text); free(t.text);
  lm_model_free(m);
  lm_tokenizer_free(tok);
}

Test(generate, sampling_past_the_context_is_reproducible) {
  lm_tokenizer *tok;
  cr_assert_eq(lm_tokenizer_load(&tok, "byte"), LM_OK);
  lm_model *m = tiny(tok);
  lm_gen_opts o;
  lm_gen_opts_default(&o);
  o.max_tokens = 50; o.stop_at_eot = 0; o.seed = 3;
  sink a = {0}, b = {0};
  cr_assert_eq(lm_generate(m, tok, "xy", &o, collect, &a, NULL), LM_OK, "%s", lm_last_error());
  cr_assert_eq(lm_generate(m, tok, "xy", &o, collect, &b, NULL), LM_OK);
  cr_assert(a.len == b.len && !memcmp(a.text, b.text, a.len));
  free(a.text); free(b.text);
  lm_model_free(m);
  lm_tokenizer_free(tok);
}
