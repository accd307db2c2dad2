/* test_encdec.c — encoder-decoder decoding (src/infer/encdec.c): the encoder once, the decoder one
 * token at a time with its self-attention cache and the cross-attention keys/values computed once,
 * gives the logits of a full forward over the decoder prefix at every step, and the same greedy
 * tokens; for T5 v1.0 (tied, relu) and v1.1 (untied, gated-gelu, d_kv * heads != d_model) and BART
 * (post-LN, learned positions, embedding LayerNorms, final_logits_bias); bad input is an error. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include "base/base.h"
#include "model/model.h"
#include "model/heads.h"
#include "infer/encdec.h"

static lm_config tiny_t5(int v11) {
  lm_config c;
  lm_config_default(&c, LM_ARCH_T5);
  c.vocab_size = 40; c.n_positions = 32; c.n_embd = 24; c.n_head = 3; c.head_dim = v11 ? 10 : 8;
  c.n_inner = 36; c.n_enc_layer = 2; c.n_layer = v11 ? 3 : 2; c.rel_buckets = 8; c.rel_max_distance = 12;
  if (v11) { c.glu = 1; c.act = LM_ACT_GELU_TANH; c.tie_embeddings = 0; }
  return c;
}

static lm_config tiny_bart(void) {
  lm_config c;
  lm_config_default(&c, LM_ARCH_BART);
  c.vocab_size = 40; c.n_positions = 32; c.n_embd = 24; c.n_head = 3; c.n_inner = 36; c.n_enc_layer = 2; c.n_layer = 3;
  return c;
}

static void check_decoding(lm_config c) {
  lm_model *m;
  cr_assert_eq(lm_model_create(&m, &c, 7), LM_OK, "%s", lm_last_error());
  /* BART's final_logits_bias starts at zero: give it values so that the cached path must add it */
  float *flb = lm_model_tensor(m, m->params, "final_logits_bias");
  for (int64_t v = 0; flb && v < c.vocab_size; v++) flb[v] = 0.05f * (float)(v % 7) - 0.1f;
  int64_t S = 13, T = 12, V = c.vocab_size;
  int32_t enc[13], dec[12];
  lm_rng r; lm_rng_seed(&r, 3);
  for (int64_t i = 0; i < S; i++) enc[i] = 2 + (int32_t)lm_rng_below(&r, (uint32_t)V - 2);
  lm_encdec *e;
  cr_assert_eq(lm_encdec_init(&e, m, enc, S, T), LM_OK, "%s", lm_last_error());
  cr_assert_eq(lm_model_reserve(m, 1, S, 0), LM_OK, "%s", lm_last_error());
  dec[0] = (int32_t)c.decoder_start_token_id;
  double worst = 0;
  for (int64_t t = 0; t < T; t++) {
    const float *logits;
    cr_assert_eq(lm_encdec_step(e, dec[t], &logits), LM_OK, "%s", lm_last_error());
    lm_batch b = {.ids = dec, .enc_ids = enc, .B = 1, .T = t + 1, .S = S};
    lm_forward(m, &b, NULL, NULL);
    const float *full = lm_model_logits(m) + t * V;
    int best = 0, best_full = 0;
    for (int64_t v = 0; v < V; v++) {
      double d = fabs((double)logits[v] - full[v]) / (1.0 + fabs(full[v]));
      if (d > worst) worst = d;
      if (logits[v] > logits[best]) best = (int)v;
      if (full[v] > full[best_full]) best_full = (int)v;
    }
    cr_assert_eq(best, best_full, "step %lld: greedy token %d (cached) vs %d (full)", (long long)t, best, best_full);
    if (t + 1 < T) dec[t + 1] = best;
  }
  cr_assert_lt(worst, 1e-5, "cached logits differ from the full forward by %g", worst);
  const float *lg;
  cr_assert_neq(lm_encdec_step(e, 1, &lg), LM_OK, "a step past max_len must fail");
  lm_encdec_free(e);
  lm_model_free(m);
}

Test(encdec, t5_v1_0_cached_equals_full) { check_decoding(tiny_t5(0)); }
Test(encdec, t5_v1_1_cached_equals_full) { check_decoding(tiny_t5(1)); }
Test(encdec, bart_cached_equals_full) { check_decoding(tiny_bart()); }

Test(encdec, bad_input) {
  lm_config c = tiny_t5(0);
  lm_model *m;
  cr_assert_eq(lm_model_create(&m, &c, 7), LM_OK);
  int32_t enc[3] = {1, 99, 2};
  lm_encdec *e = NULL;
  cr_assert_neq(lm_encdec_init(&e, m, enc, 3, 4), LM_OK, "an id outside the vocabulary");
  cr_assert(strstr(lm_last_error(), "vocabulary"));
  cr_assert_neq(lm_encdec_init(&e, m, enc, 3, 1000), LM_OK, "longer than the positions");
  lm_model_free(m);
  lm_config g;
  lm_config_default(&g, LM_ARCH_GPT2);
  g.vocab_size = 40; g.n_positions = 16; g.n_embd = 16; g.n_layer = 1; g.n_head = 2;
  cr_assert_eq(lm_model_create(&m, &g, 1), LM_OK);
  int32_t ok[2] = {1, 2};
  cr_assert_neq(lm_encdec_init(&e, m, ok, 2, 4), LM_OK, "a decoder-only model");
  cr_assert(strstr(lm_last_error(), "encoder-decoder"));
  lm_model_free(m);
}
