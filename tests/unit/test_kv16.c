/* test_kv16.c — the f16 KV cache (session.c, lm_session_init_kv): the same session fed the same
 * tokens with an f32 and an f16 cache gives the same logits within f16's rounding. Each cached key
 * and value moves by at most 2^-11 of itself when rounded to f16, so scores, attention outputs and
 * logits move by about that relative amount; the bound checked is 1e-2 of the largest |logit|, for
 * a prompt (prefill: a chunk of queries against the cache) and for decoded tokens one by one, on a
 * GPT-2 and a grouped-query Llama. The two must also differ somewhere (the f16 cache is used). */
#include <criterion/criterion.h>
#include <math.h>
#include "base/base.h"
#include "model/model.h"
#include "infer/infer.h"

static void run_case(lm_arch arch) {
  lm_config c;
  lm_config_default(&c, arch);
  c.vocab_size = 50; c.n_positions = 64; c.n_embd = 64; c.n_layer = 2; c.n_head = 4;
  if (arch == LM_ARCH_LLAMA) { c.n_kv_head = 2; c.n_inner = 96; }
  lm_model *m;
  cr_assert_eq(lm_model_create(&m, &c, 7), LM_OK, "%s", lm_last_error());
  lm_session *s32, *s16;
  cr_assert_eq(lm_session_init(&s32, m, 64), LM_OK, "%s", lm_last_error());
  cr_assert_eq(lm_session_init_kv(&s16, m, 64, 1), LM_OK, "%s", lm_last_error());
  int32_t ids[30];
  lm_rng r;
  lm_rng_seed(&r, 3);
  for (int i = 0; i < 30; i++) ids[i] = (int32_t)lm_rng_below(&r, 50);
  double worst = 0, any = 0;
  for (int step = 0; step < 11; step++) {
    const int32_t *feed = step == 0 ? ids : ids + 19 + step;
    int64_t n = step == 0 ? 20 : 1;
    const float *a, *b;
    cr_assert_eq(lm_session_feed(s32, feed, n, &a), LM_OK, "%s", lm_last_error());
    cr_assert_eq(lm_session_feed(s16, feed, n, &b), LM_OK, "%s", lm_last_error());
    double mx = 0, d = 0;
    for (int v = 0; v < 50; v++) { mx = fmax(mx, fabs(a[v])); d = fmax(d, fabs(a[v] - b[v])); }
    cr_assert(d <= 1e-2 * mx, "%s step %d: max |f16 - f32| = %g, max |logit| %g", lm_arch_name(arch), step, d, mx);
    worst = fmax(worst, d / mx);
    any += d;
  }
  cr_assert(any > 0, "%s: the f16 cache gave the f32 logits bit for bit (is it used?)", lm_arch_name(arch));
  cr_log_info("%s: worst |f16 - f32| / max|logit| = %.2e", lm_arch_name(arch), worst);
  lm_session_free(s32); lm_session_free(s16);
  lm_model_free(m);
}

Test(kv16, gpt2_matches_f32_within_f16_rounding) { run_case(LM_ARCH_GPT2); }
Test(kv16, llama_gqa_matches_f32_within_f16_rounding) { run_case(LM_ARCH_LLAMA); }
