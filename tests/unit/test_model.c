/* test_model.c — the model and inference paths without PyTorch:
 * KV-cache decoding equals full recomputation, training is deterministic and
 * lowers the loss, save/load round-trips every tensor, bad model dirs fail cleanly. */
#include <criterion/criterion.h>
#include <omp.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "base/base.h"
#include "kernels/kernels.h"
#include "model/model.h"
#include "model/heads.h"
#include "model/config.h"
#include "infer/infer.h"

static lm_config tiny(void) {
  lm_config c;
  lm_config_default(&c, LM_ARCH_GPT2);
  c.vocab_size = 50; c.n_positions = 24; c.n_embd = 32; c.n_layer = 2; c.n_head = 4;
  return c;
}

static void check_cache(lm_config c) {
  lm_model *m;
  cr_assert_eq(lm_model_create(&m, &c, 3), LM_OK, "%s", lm_last_error());
  int64_t T = c.n_positions;
  int32_t ids[64];
  lm_rng r; lm_rng_seed(&r, 5);
  for (int64_t i = 0; i < T; i++) ids[i] = (int32_t)lm_rng_below(&r, (uint32_t)c.vocab_size);
  lm_session *s;
  cr_assert_eq(lm_session_init(&s, m, T), LM_OK);
  /* prefill 5 tokens in one chunk, then one token at a time */
  const float *logits;
  for (int64_t t = 4; t < T; t++) {
    if (t == 4) cr_assert_eq(lm_session_feed(s, ids, 5, &logits), LM_OK);
    else cr_assert_eq(lm_session_feed(s, ids + t, 1, &logits), LM_OK);
    cr_assert_eq(lm_model_reserve(m, 1, t + 1, 0), LM_OK);
    lm_model_forward(m, ids, NULL, NULL, 1, t + 1);
    const float *full = lm_model_logits(m) + t * c.vocab_size;
    for (int64_t v = 0; v < c.vocab_size; v++)
      cr_assert(fabsf(full[v] - logits[v]) < 1e-4f, "t=%lld v=%lld: full %g cached %g", (long long)t, (long long)v, full[v], logits[v]);
  }
  lm_session_free(s);
  lm_model_free(m);
}

Test(model, kv_cache_matches_full_recomputation) { check_cache(tiny()); }

Test(model, kv_cache_matches_for_post_ln_rmsnorm) {
  lm_config c = tiny();
  c.pre_ln = 0; c.norm = LM_NORM_RMS; c.act = LM_ACT_GELU_ERF; c.tie_embeddings = 0;
  check_cache(c);
}

/* Llama: RoPE (cached keys are rotated once), grouped-query attention, SwiGLU, Qwen2's q/k/v biases,
 * Llama 3's RoPE scaling, and Mistral's sliding window (shorter than the sequence, so it matters) */
static lm_config tiny_llama(lm_arch arch) {
  lm_config c;
  lm_config_default(&c, arch);
  c.vocab_size = 50; c.n_positions = 24; c.n_embd = 32; c.n_layer = 2; c.n_head = 4; c.n_kv_head = 2; c.n_inner = 48;
  c.sliding_window = 0;
  return c;
}

Test(model, kv_cache_matches_for_llama_gqa) { check_cache(tiny_llama(LM_ARCH_LLAMA)); }

Test(model, kv_cache_matches_for_llama3_rope_scaling_tied) {
  lm_config c = tiny_llama(LM_ARCH_LLAMA);
  c.rope_scaling = 1; c.rope_factor = 8; c.rope_low_freq_factor = 1; c.rope_high_freq_factor = 4;
  c.rope_original_positions = 16; c.rope_theta = 500000.0f; c.tie_embeddings = 1; c.n_kv_head = 1;
  check_cache(c);
}

Test(model, kv_cache_matches_for_qwen2_biases) {
  lm_config c = tiny_llama(LM_ARCH_QWEN2);
  cr_assert(c.qkv_bias);
  lm_model *m;
  cr_assert_eq(lm_model_create(&m, &c, 3), LM_OK, "%s", lm_last_error());
  cr_assert(m->w.h[0].qkv_b && !m->w.h[0].attn_proj_b && !m->w.h[0].fc_b);
  lm_model_free(m);
  check_cache(c);
}

Test(model, kv_cache_matches_for_mistral_sliding_window) {
  lm_config c = tiny_llama(LM_ARCH_MISTRAL);
  c.sliding_window = 6;
  check_cache(c);
}

/* a prompt of 300 tokens fed at once: two of the session's chunks (256 tokens; the second starts
 * with keys cached) and many of its attention tiles (64 query rows, each against the keys its last
 * row sees): the last token's logits equal full recomputation's */
static void check_long_prompt(lm_config c) {
  enum { T = 300 };
  c.n_positions = T;
  lm_model *m;
  cr_assert_eq(lm_model_create(&m, &c, 3), LM_OK, "%s", lm_last_error());
  int32_t ids[T];
  lm_rng r; lm_rng_seed(&r, 6);
  for (int64_t i = 0; i < T; i++) ids[i] = (int32_t)lm_rng_below(&r, (uint32_t)c.vocab_size);
  lm_session *s;
  cr_assert_eq(lm_session_init(&s, m, T), LM_OK);
  const float *logits;
  cr_assert_eq(lm_session_feed(s, ids, T, &logits), LM_OK, "%s", lm_last_error());
  cr_assert_eq(lm_model_reserve(m, 1, T, 0), LM_OK);
  lm_model_forward(m, ids, NULL, NULL, 1, T);
  const float *full = lm_model_logits(m) + (T - 1) * c.vocab_size;
  /* 5e-7: float rounding apart (6e-8 here), where a tile that drops each of its rows' last key gives
   * 1.7e-6 and more */
  for (int64_t v = 0; v < c.vocab_size; v++)
    cr_assert(fabsf(full[v] - logits[v]) < 5e-7f, "v=%lld: full %.9g prompt %.9g", (long long)v, full[v], logits[v]);
  lm_session_free(s);
  lm_model_free(m);
}

Test(model, long_prompt_matches_full_recomputation) {
  check_long_prompt(tiny());
  lm_config c = tiny_llama(LM_ARCH_MISTRAL);
  check_long_prompt(c);
  c.sliding_window = 100;   /* shorter than a tile's span of keys */
  check_long_prompt(c);
}

Test(model, prompt_longer_than_context_is_an_error) {
  lm_config c = tiny();
  lm_model *m;
  cr_assert_eq(lm_model_create(&m, &c, 3), LM_OK);
  lm_session *s;
  cr_assert_eq(lm_session_init(&s, m, c.n_positions + 1), LM_ERR_RANGE);
  cr_assert_eq(lm_session_init(&s, m, 8), LM_OK);
  int32_t ids[9] = {0};
  cr_assert_eq(lm_session_feed(s, ids, 9, NULL), LM_ERR_RANGE);
  ids[0] = 50;
  cr_assert_eq(lm_session_feed(s, ids, 1, NULL), LM_ERR_RANGE, "out-of-vocabulary id must be rejected");
  cr_assert_eq(lm_model_reserve(m, 1, c.n_positions + 1, 0), LM_ERR_RANGE);
  lm_session_free(s);
  lm_model_free(m);
}

/* a few AdamW steps on a fixed batch; returns the losses */
static void train_steps(float *losses, int n) {
  lm_config c = tiny();
  lm_model *m;
  cr_assert_eq(lm_model_create(&m, &c, 11), LM_OK);
  cr_assert_eq(lm_model_reserve(m, 2, 16, 1), LM_OK);
  int32_t ids[32], tgt[32];
  for (int i = 0; i < 32; i++) { ids[i] = (i * 7) % 50; tgt[i] = (i * 7 + 7) % 50; }
  float *mo = lm_alloc(m->n_params * 4), *ve = lm_alloc(m->n_params * 4);
  for (int s = 1; s <= n; s++) {
    lm_model_zero_grad(m);
    losses[s - 1] = lm_model_forward(m, ids, tgt, NULL, 2, 16);
    lm_model_backward(m, ids, tgt, NULL, 2, 16);
    adamw_update(m->params, m->grads, mo, ve, (int64_t)m->n_params, 3e-3f, 0.9f, 0.95f, 1e-8f, 0.0f, s, 1.0f);
  }
  lm_free(mo); lm_free(ve);
  lm_model_free(m);
}

Test(model, training_is_deterministic_and_learns) {
  float a[30], b[30];
  train_steps(a, 30);
  train_steps(b, 30);
  cr_assert_eq(memcmp(a, b, sizeof a), 0, "same seed and data must give bit-identical losses");
  cr_assert(a[0] > logf(50) - 0.5f && a[0] < logf(50) + 0.5f, "initial loss %g should be near ln(50)", a[0]);
  cr_assert(a[29] < 0.5f * a[0], "loss should fall well below its start: %g -> %g", a[0], a[29]);
}

Test(model, save_load_round_trip) {
  lm_config c = tiny();
  c.tie_embeddings = 0;
  lm_model *m, *m2;
  cr_assert_eq(lm_model_create(&m, &c, 21), LM_OK);
  char dir[] = "/tmp/lmkit_test_modelXXXXXX";
  cr_assert(mkdtemp(dir));
  cr_assert_eq(lm_model_save(m, dir), LM_OK, "%s", lm_last_error());
  cr_assert_eq(lm_model_load(&m2, dir), LM_OK, "%s", lm_last_error());
  cr_assert_eq(m2->n_params, m->n_params);
  cr_assert_eq(memcmp(m->params, m2->params, m->n_params * 4), 0);
  cr_assert_eq(m2->cfg.n_layer, 2);
  cr_assert_eq(m2->cfg.tie_embeddings, 0);
  lm_model_free(m2);
  /* a corrupt weights file is an error naming it, not a crash */
  char path[256];
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  FILE *f = fopen(path, "r+b");
  cr_assert(f);
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  cr_assert_eq(ftruncate(fileno(f), len / 2), 0);
  fclose(f);
  cr_assert_neq(lm_model_load(&m2, dir), LM_OK);
  cr_assert(strstr(lm_last_error(), "model.safetensors"), "error should name the file: %s", lm_last_error());
  cr_assert_neq(lm_model_load(&m2, "/nonexistent/model"), LM_OK);
  lm_model_free(m);
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  cr_assert_eq(system(cmd), 0);
}

Test(sampler, greedy_topk_topp) {
  float logits[6] = {0.1f, 3.0f, 2.9f, -1.0f, 0.0f, 1.0f};
  lm_gen_opts o;
  lm_gen_opts_default(&o);
  lm_sampler s;
  o.temperature = 0;
  cr_assert_eq(lm_sampler_init(&s, &o, 6), LM_OK);
  cr_assert_eq(lm_sampler_pick(&s, logits), 1);
  lm_sampler_free(&s);
  o.temperature = 1; o.top_k = 2; o.top_p = 1;
  cr_assert_eq(lm_sampler_init(&s, &o, 6), LM_OK);
  int seen[6] = {0};
  for (int i = 0; i < 2000; i++) seen[lm_sampler_pick(&s, logits)]++;
  cr_assert(seen[1] > 0 && seen[2] > 0 && seen[0] + seen[3] + seen[4] + seen[5] == 0, "top-k 2 must pick only ids 1 and 2");
  lm_sampler_free(&s);
  o.top_k = 0; o.top_p = 0.3f;   /* the nucleus is id 1 alone (p ~ 0.45) */
  cr_assert_eq(lm_sampler_init(&s, &o, 6), LM_OK);
  for (int i = 0; i < 500; i++) cr_assert_eq(lm_sampler_pick(&s, logits), 1);
  lm_sampler_free(&s);
  o.top_p = 2;
  cr_assert_eq(lm_sampler_init(&s, &o, 6), LM_ERR_ARG);
}

/* ---------------------------------------------------------------- dropout */
Test(dropout, masks_drop_p_and_scale) {
  const int64_t n = 1000000;
  uint64_t *bits = malloc((n + 63) / 64 * 8);
  float *x = malloc(n * sizeof(float));
  const float ps[] = {0.05f, 0.1f, 0.5f, 0.9f};
  for (int k = 0; k < 4; k++) {
    lm_rng r; lm_rng_seed(&r, 11 + k);
    dropout_mask(bits, n, ps[k], &r);
    int64_t kept = 0;
    for (int64_t i = 0; i < n; i++) kept += dropout_kept(bits, i);
    double dropped = 1.0 - (double)kept / n;
    cr_assert(fabs(dropped - ps[k]) < 0.002, "p = %g: dropped %.5f of 10^6", ps[k], dropped);
    for (int64_t i = 0; i < n; i++) x[i] = 1.0f;
    dropout_apply(x, bits, n, ps[k]);
    for (int64_t i = 0; i < n; i++)
      cr_assert(x[i] == (dropout_kept(bits, i) ? 1.0f / (1.0f - ps[k]) : 0.0f));
  }
  /* the same seed draws the same masks */
  uint64_t *b2 = malloc((n + 63) / 64 * 8);
  lm_rng r1, r2; lm_rng_seed(&r1, 5); lm_rng_seed(&r2, 5);
  dropout_mask(bits, n, 0.3f, &r1); dropout_mask(b2, n, 0.3f, &r2);
  cr_assert_eq(memcmp(bits, b2, (n + 63) / 64 * 8), 0);
  /* ... on any number of threads (threads fill disjoint words), and the next mask is another one */
  int nt = omp_get_max_threads();
  const int64_t n2 = n - 13;   /* a partial last word: no bits past the end */
  lm_rng_seed(&r1, 5); lm_rng_seed(&r2, 5);
  omp_set_num_threads(1); dropout_mask(bits, n2, 0.3f, &r1);
  omp_set_num_threads(3); dropout_mask(b2, n2, 0.3f, &r2);
  omp_set_num_threads(nt);
  cr_assert_eq(memcmp(bits, b2, (n2 + 63) / 64 * 8), 0, "dropout masks depend on the thread count");
  cr_assert_eq(bits[(n2 - 1) / 64] >> (n2 & 63), 0);
  dropout_mask(b2, n2, 0.3f, &r2);
  cr_assert_neq(memcmp(bits, b2, (n2 + 63) / 64 * 8), 0);
  free(bits); free(b2); free(x);
}

/* p = 0 in training mode is today's path bit for bit (no masks, no draws); p > 0 changes the loss
 * in training mode only */
Test(dropout, zero_rate_is_bit_identical_and_eval_never_drops) {
  lm_config c = tiny();
  lm_model *m;
  cr_assert_eq(lm_model_create(&m, &c, 3), LM_OK);
  int32_t ids[2 * 16], tg[2 * 16];
  lm_rng r; lm_rng_seed(&r, 9);
  for (int i = 0; i < 32; i++) { ids[i] = (int32_t)lm_rng_below(&r, 50); tg[i] = (int32_t)lm_rng_below(&r, 50); }
  cr_assert_eq(lm_model_reserve(m, 2, 16, 1), LM_OK);
  float eval = lm_model_forward(m, ids, tg, NULL, 2, 16);
  lm_rng dr; lm_rng_seed(&dr, 1);
  lm_model_set_training(m, &dr);
  lm_rng before = dr;
  float train0 = lm_model_forward(m, ids, tg, NULL, 2, 16);
  cr_assert(memcmp(&train0, &eval, sizeof eval) == 0, "p = 0: %g vs %g", train0, eval);
  cr_assert(memcmp(&before, &dr, sizeof dr) == 0, "p = 0 draws nothing");
  lm_model_free(m);
  c.embd_pdrop = c.attn_pdrop = c.resid_pdrop = 0.1f;
  cr_assert_eq(lm_model_create(&m, &c, 3), LM_OK);
  cr_assert_eq(lm_model_reserve(m, 2, 16, 1), LM_OK);
  float e1 = lm_model_forward(m, ids, tg, NULL, 2, 16);
  cr_assert(memcmp(&e1, &eval, sizeof eval) == 0, "evaluation never drops: %g vs %g", e1, eval);
  lm_model_set_training(m, &dr);
  float t1 = lm_model_forward(m, ids, tg, NULL, 2, 16);
  cr_assert(t1 != eval, "training with p = 0.1 drops");
  lm_model_set_training(m, NULL);
  float e2 = lm_model_forward(m, ids, tg, NULL, 2, 16);
  cr_assert(memcmp(&e2, &eval, sizeof eval) == 0);
  lm_model_free(m);
  /* a rate outside [0, 1) is an error naming the key */
  lm_config bad = tiny();
  bad.resid_pdrop = 1.0f;
  cr_assert_eq(lm_config_validate(&bad), LM_ERR_RANGE);
  cr_assert(strstr(lm_last_error(), "resid_pdrop"), "%s", lm_last_error());
}
