/* test_rollout.c — RL rollouts (src/train/rollout.c): rows sampled together in one
 * batch are the rows sampled alone (row i with seed + i), token for token, with
 * the same log-probs (to float noise: the batched forward multiplies other shapes);
 * the same seed gives the same rollouts; log-probs are those of softmax(logits / T)
 * of a single-sequence session; stop tokens end a row and are kept. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "base/base.h"
#include "infer/infer.h"
#include "model/model.h"
#include "train/rl.h"

#define N 5
#define NEW 12

static lm_model *tiny(void) {
  lm_config c;
  lm_config_default(&c, LM_ARCH_GPT2);
  c.vocab_size = 37; c.n_positions = 40; c.n_embd = 32; c.n_layer = 2; c.n_head = 4;
  lm_model *m;
  cr_assert_eq(lm_model_create(&m, &c, 7), LM_OK);
  return m;
}

Test(rollout, batched_equals_alone) {
  lm_model *m = tiny();
  lm_batch_decoder *d;
  cr_assert_eq(lm_batch_decoder_init(&d, m, N, 40), LM_OK);
  int32_t prompts[N][6];
  const int32_t *pp[N];
  int64_t pl[N];
  for (int i = 0; i < N; i++) {
    pl[i] = 2 + i;
    for (int j = 0; j < 6; j++) prompts[i][j] = (int32_t)((i * 7 + j * 3) % 37);
    pp[i] = prompts[i];
  }
  int32_t stop = 5;
  lm_rollout_opts o = {.temperature = 0.9f, .top_p = 1.0f, .max_new = NEW, .stop = &stop, .n_stop = 1, .seed = 11};
  lm_rollouts all, again, one;
  cr_assert_eq(lm_rollouts_alloc(&all, N, NEW), LM_OK);
  cr_assert_eq(lm_rollouts_alloc(&again, N, NEW), LM_OK);
  cr_assert_eq(lm_rollouts_alloc(&one, 1, NEW), LM_OK);
  cr_assert_eq(lm_rollout(d, m, NULL, pp, pl, N, &o, &all), LM_OK, "%s", lm_last_error());
  cr_assert_eq(lm_rollout(d, m, NULL, pp, pl, N, &o, &again), LM_OK);
  int stopped = 0;
  for (int i = 0; i < N; i++) {
    cr_expect_eq(all.len[i], again.len[i]);
    cr_expect(!memcmp(all.ids + i * NEW, again.ids + i * NEW, (size_t)all.len[i] * sizeof(int32_t)), "row %d: same seed, other tokens", i);
    lm_rollout_opts oi = o;
    oi.seed = o.seed + (uint64_t)i;
    cr_assert_eq(lm_rollout(d, m, NULL, pp + i, pl + i, 1, &oi, &one), LM_OK);
    cr_expect_eq(all.len[i], one.len[0], "row %d: %lld tokens batched, %lld alone", i, (long long)all.len[i], (long long)one.len[0]);
    cr_expect(!memcmp(all.ids + i * NEW, one.ids, (size_t)one.len[0] * sizeof(int32_t)), "row %d: other tokens batched", i);
    for (int64_t t = 0; t < one.len[0]; t++) cr_expect(fabsf(all.logp[i * NEW + t] - one.logp[t]) < 1e-4f);
    /* a stop token is the last token kept; otherwise the row ran to NEW */
    if (all.stopped[i]) { stopped++; cr_expect_eq(all.ids[i * NEW + all.len[i] - 1], stop); }
    else cr_expect_eq(all.len[i], NEW);
    for (int64_t t = 0; t + 1 < all.len[i]; t++) cr_expect_neq(all.ids[i * NEW + t], stop);
  }
  /* log-probs: log softmax(logits / T) of a fresh session fed the prompt and the sampled tokens */
  lm_session *s;
  cr_assert_eq(lm_session_init(&s, m, 40), LM_OK);
  const float *lg;
  cr_assert_eq(lm_session_feed(s, pp[0], pl[0], &lg), LM_OK);
  for (int64_t t = 0; t < all.len[0]; t++) {
    double mx = -1e30, sum = 0;
    for (int v = 0; v < 37; v++) mx = lg[v] / 0.9 > mx ? lg[v] / 0.9 : mx;
    for (int v = 0; v < 37; v++) sum += exp(lg[v] / 0.9 - mx);
    int32_t y = all.ids[t];
    cr_expect(fabs(all.logp[t] - (lg[y] / 0.9 - mx - log(sum))) < 1e-4, "token %lld", (long long)t);
    cr_assert_eq(lm_session_feed(s, &y, 1, &lg), LM_OK);
  }
  lm_session_free(s);
  cr_log_info("%d of %d rows stopped", stopped, N);
  lm_rollouts_free(&all); lm_rollouts_free(&again); lm_rollouts_free(&one);
  lm_batch_decoder_free(d);
  lm_model_free(m);
}

Test(rollout, refuses) {
  lm_model *m = tiny();
  lm_batch_decoder *d;
  cr_assert_eq(lm_batch_decoder_init(&d, m, 2, 40), LM_OK);
  lm_rollouts r;
  cr_assert_eq(lm_rollouts_alloc(&r, 3, NEW), LM_OK);
  int32_t p[2] = {1, 2};
  const int32_t *pp[3] = {p, p, p};
  int64_t pl[3] = {2, 2, 2};
  lm_rollout_opts o = {.temperature = 1.0f, .top_p = 1.0f, .max_new = NEW, .seed = 1};
  cr_expect_eq(lm_rollout(d, m, NULL, pp, pl, 3, &o, &r), LM_ERR_ARG);   /* 3 rows, 2 slots */
  o.calc = 1;
  cr_expect_eq(lm_rollout(d, m, NULL, pp, pl, 2, &o, &r), LM_ERR_ARG);   /* the calculator needs the tokenizer */
  lm_rollouts_free(&r);
  lm_batch_decoder_free(d);
  lm_model_free(m);
}
