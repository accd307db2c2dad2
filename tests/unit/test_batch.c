/* test_batch.c — the batch decoder (src/infer/batch.h) gives what single-sequence decoding gives.
 *
 * Four sequences with prompts of different lengths are decoded one at a time with an lm_session,
 * then together with lm_batch_decoder, where they join and leave at different steps (as requests
 * do in the server): the tokens must be the same, for greedy decoding and for seeded sampling
 * (one sampler per sequence), and the logits the same bits (every linear of a decode step, one row
 * or many, is src/infer/linear.c's, whose rows do not depend on each other). GPT-2 and Llama
 * (grouped-query attention, RoPE, SwiGLU) models, random weights. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>
#include "base/base.h"
#include "infer/batch.h"
#include "infer/infer.h"

#define NS 4
#define STEPS 20

static lm_config tiny(lm_arch arch) {
  lm_config c;
  lm_config_default(&c, arch);
  c.vocab_size = 64; c.n_positions = 48; c.n_embd = 32; c.n_layer = 2; c.n_head = 4;
  if (arch == LM_ARCH_LLAMA) { c.n_kv_head = 2; c.n_inner = 48; c.sliding_window = 0; }
  return c;
}

static const int plen[NS] = {3, 9, 1, 17};
static const int join_at[NS] = {0, 0, 5, 2};     /* the step at which each sequence starts decoding */
static const int n_tokens[NS] = {STEPS, 7, 12, STEPS - 2};

static void prompt(int k, int32_t *ids) {
  lm_rng r; lm_rng_seed(&r, 100 + (uint64_t)k);
  for (int i = 0; i < plen[k]; i++) ids[i] = (int32_t)lm_rng_below(&r, 64);
}

static void sampler(lm_sampler *sp, int k, float temperature) {
  lm_gen_opts o; lm_gen_opts_default(&o);
  o.temperature = temperature; o.top_k = 0; o.top_p = 0.95f; o.seed = 7 + (uint64_t)k;
  cr_assert_eq(lm_sampler_init(sp, &o, 64), LM_OK);
}

static void check(lm_arch arch, float temperature) {
  lm_config c = tiny(arch);
  lm_model *m;
  cr_assert_eq(lm_model_create(&m, &c, 11), LM_OK, "%s", lm_last_error());
  int64_t V = c.vocab_size;
  int32_t ref[NS][STEPS], got[NS][STEPS], ids[32];
  static float ref_logits[NS][STEPS][64];
  /* one at a time */
  for (int k = 0; k < NS; k++) {
    lm_session *s; lm_sampler sp;
    cr_assert_eq(lm_session_init(&s, m, c.n_positions), LM_OK);
    sampler(&sp, k, temperature);
    prompt(k, ids);
    const float *lg;
    cr_assert_eq(lm_session_feed(s, ids, plen[k], &lg), LM_OK);
    for (int t = 0; t < n_tokens[k]; t++) {
      memcpy(ref_logits[k][t], lg, (size_t)V * sizeof(float));
      ref[k][t] = lm_sampler_pick(&sp, lg);
      if (t + 1 < n_tokens[k]) cr_assert_eq(lm_session_feed(s, &ref[k][t], 1, &lg), LM_OK);
    }
    lm_sampler_free(&sp);
    lm_session_free(s);
  }
  /* together: sequence k takes slot (k + 1) % NS, joins at its step and leaves after its tokens */
  lm_batch_decoder *d;
  cr_assert_eq(lm_batch_decoder_init(&d, m, NS, c.n_positions), LM_OK, "%s", lm_last_error());
  lm_sampler sp[NS];
  static float cur[NS][64];
  int done[NS] = {0}, started[NS] = {0};
  double worst = 0;
  for (int step = 0; step < 64; step++) {
    for (int k = 0; k < NS; k++)
      if (step == join_at[k]) {
        const float *lg;
        lm_batch_decoder_reset(d, (k + 1) % NS);
        prompt(k, ids);
        sampler(&sp[k], k, temperature);
        cr_assert_eq(lm_batch_decoder_feed(d, (k + 1) % NS, ids, plen[k], &lg), LM_OK);
        memcpy(cur[k], lg, (size_t)V * sizeof(float));
        started[k] = 1;
      }
    int slots[NS], who[NS], n = 0;
    int32_t next[NS];
    for (int k = 0; k < NS; k++) {
      if (!started[k] || done[k] >= n_tokens[k]) continue;
      for (int64_t v = 0; v < V; v++) {
        double e = fabs(cur[k][v] - ref_logits[k][done[k]][v]);
        worst = e > worst ? e : worst;
      }
      got[k][done[k]] = lm_sampler_pick(&sp[k], cur[k]);
      if (++done[k] < n_tokens[k]) { slots[n] = (k + 1) % NS; who[n] = k; next[n] = got[k][done[k] - 1]; n++; }
    }
    if (!n) {
      int all = 1;
      for (int k = 0; k < NS; k++) all &= done[k] == n_tokens[k];
      if (all) break;
      continue;
    }
    const float *lg;
    cr_assert_eq(lm_batch_decoder_step(d, slots, next, n, &lg), LM_OK, "%s", lm_last_error());
    for (int i = 0; i < n; i++) memcpy(cur[who[i]], lg + (size_t)i * V, (size_t)V * sizeof(float));
  }
  for (int k = 0; k < NS; k++) {
    cr_assert_eq(done[k], n_tokens[k]);
    for (int t = 0; t < n_tokens[k]; t++)
      cr_assert_eq(got[k][t], ref[k][t], "%s T=%g: sequence %d token %d: batched %d, alone %d", lm_arch_name(arch),
                   temperature, k, t, got[k][t], ref[k][t]);
  }
  cr_assert(worst == 0, "logits differ by %g", worst);   /* a request's logits do not depend on its batch */
  for (int k = 0; k < NS; k++) lm_sampler_free(&sp[k]);
  lm_batch_decoder_free(d);
  lm_model_free(m);
}

Test(batch, greedy_gpt2) { check(LM_ARCH_GPT2, 0.0f); }
Test(batch, sampled_gpt2) { check(LM_ARCH_GPT2, 0.9f); }
Test(batch, greedy_llama) { check(LM_ARCH_LLAMA, 0.0f); }
Test(batch, sampled_llama) { check(LM_ARCH_LLAMA, 0.9f); }

/* prompts prefilled together (split across forwards of 256 rows: 200 + 56 of 150, then 94 + 5 + 1)
 * give each prompt's logits and cache as feeding it alone does */
Test(batch, prefill_packs_prompts) {
  lm_config c = tiny(LM_ARCH_LLAMA);
  c.n_positions = 320;
  lm_model *m;
  cr_assert_eq(lm_model_create(&m, &c, 5), LM_OK, "%s", lm_last_error());
  enum { K = 4 };
  static int32_t p[K][200];
  const int32_t *ids[K] = {p[0], p[1], p[2], p[3]};
  int64_t len[K] = {200, 150, 5, 1};
  int slots[K] = {2, 0, 3, 1};
  lm_rng r; lm_rng_seed(&r, 3);
  for (int k = 0; k < K; k++) for (int i = 0; i < len[k]; i++) p[k][i] = (int32_t)lm_rng_below(&r, 64);
  lm_batch_decoder *alone, *packed;
  cr_assert_eq(lm_batch_decoder_init(&alone, m, K, c.n_positions), LM_OK);
  cr_assert_eq(lm_batch_decoder_init(&packed, m, K, c.n_positions), LM_OK);
  const float *lg, *lp;
  cr_assert_eq(lm_batch_decoder_prefill(packed, slots, ids, len, K, &lp), LM_OK, "%s", lm_last_error());
  double worst = 0;
  for (int k = 0; k < K; k++) {
    cr_assert_eq(lm_batch_decoder_feed(alone, slots[k], ids[k], len[k], &lg), LM_OK);
    cr_assert_eq(lm_batch_decoder_pos(packed, slots[k]), len[k]);
    for (int64_t v = 0; v < c.vocab_size; v++) worst = fmax(worst, fabs(lg[v] - lp[k * c.vocab_size + v]));
  }
  /* the caches too: one step on every slot */
  int32_t next[K] = {1, 2, 3, 4};
  static float a[K * 64];
  cr_assert_eq(lm_batch_decoder_step(alone, slots, next, K, &lg), LM_OK);
  memcpy(a, lg, sizeof a);
  cr_assert_eq(lm_batch_decoder_step(packed, slots, next, K, &lg), LM_OK);
  for (int i = 0; i < K * 64; i++) worst = fmax(worst, fabs(a[i] - lg[i]));
  cr_assert(worst < 1e-4, "packed prefill differs from one prompt at a time by %g", worst);
  int dup[2] = {1, 1};
  cr_assert_eq(lm_batch_decoder_prefill(packed, dup, ids + 2, len + 2, 2, &lp), LM_ERR_ARG, "a slot twice");
  lm_batch_decoder_free(alone); lm_batch_decoder_free(packed);
  lm_model_free(m);
}

Test(batch, refuses_bad_slots_and_lengths) {
  lm_config c = tiny(LM_ARCH_GPT2);
  lm_model *m;
  cr_assert_eq(lm_model_create(&m, &c, 1), LM_OK);
  lm_batch_decoder *d;
  cr_assert_eq(lm_batch_decoder_init(&d, m, 2, 8), LM_OK);
  const float *lg;
  int32_t ids[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  cr_assert_eq(lm_batch_decoder_feed(d, 2, ids, 1, &lg), LM_ERR_RANGE);
  cr_assert_eq(lm_batch_decoder_feed(d, 0, ids, 9, &lg), LM_ERR_RANGE, "longer than the cache");
  int32_t bad = 64;
  cr_assert_eq(lm_batch_decoder_feed(d, 0, &bad, 1, &lg), LM_ERR_RANGE, "outside the vocabulary");
  cr_assert_eq(lm_batch_decoder_feed(d, 0, ids, 8, &lg), LM_OK);
  int slots[2] = {1, 1};
  cr_assert_eq(lm_batch_decoder_step(d, slots, ids, 2, &lg), LM_ERR_ARG, "a slot twice");
  slots[0] = 0;
  cr_assert_eq(lm_batch_decoder_step(d, slots, ids, 2, &lg), LM_ERR_RANGE, "slot 0 is full");
  cr_assert_eq(lm_batch_decoder_pos(d, 0), 8);
  lm_batch_decoder_reset(d, 0);
  cr_assert_eq(lm_batch_decoder_pos(d, 0), 0);
  lm_batch_decoder_free(d);
  lm_model_free(m);
}
