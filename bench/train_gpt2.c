/* train_gpt2.c — training-step benchmark: median time of a full optimiser
 * step (forward, backward, clip, AdamW) of a randomly initialised GPT-2 on
 * random tokens, with tokens/s, MFU against the measured sgemm peak, and
 * peak RSS. bench/train_gpt2.sh runs it beside the PyTorch peer. The JSON also gives the median
 * time of each part of a step (forward, backward, clipping norm + AdamW), so a run shows where the
 * time goes besides the matrix products.
 *
 * usage: bench_train_gpt2 LAYERS HEADS DIM VOCAB BATCH SEQ [STEPS] [POSITIONS] [CHECKPOINT] [PRECISION]
 * (CHECKPOINT 1: activation checkpointing, as train --checkpoint-activations; PRECISION fp32 or bf16,
 * as train --precision: the linears' products in bf16 through oneDNN). With bf16 it also measures the
 * bf16 peak (a 4096^3 oneDNN matmul, bf16 inputs, fp32 output) and gives the MFU against both
 * peaks; "mfu" is always against the sgemm peak, so bf16 can pass 100%. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <oneapi/dnnl/dnnl.h>
#include "bench_util.h"
#include "kernels/mm.h"
#include "kernels/kernels.h"
#include "model/model.h"

/* The bf16 peak: the best of 3 timed 4096^3 oneDNN matmuls (bf16 x bf16 -> fp32, plain layouts, as
 * kernels/mm.c runs them) after one warm-up; 0 when oneDNN cannot run it. */
static double bf16_peak(void) {
  const int64_t n = 4096;
  dnnl_engine_t eng = NULL; dnnl_stream_t st = NULL;
  dnnl_memory_desc_t a, b, c;
  dnnl_dims_t d = {n, n};
  dnnl_matmul_desc_t md;
  dnnl_primitive_desc_t pd = NULL; dnnl_primitive_t p = NULL;
  dnnl_memory_t ma = NULL, mb = NULL, mc = NULL;
  uint16_t *x = lm_alloc((size_t)(n * n) * 2), *y = lm_alloc((size_t)(n * n) * 2);
  float *z = lm_alloc((size_t)(n * n) * 4);
  double best = 0;
  if (x && y && z && dnnl_engine_create(&eng, dnnl_cpu, 0) == dnnl_success &&
      dnnl_stream_create(&st, eng, dnnl_stream_default_flags) == dnnl_success &&
      dnnl_memory_desc_init_by_tag(&a, 2, d, dnnl_bf16, dnnl_ab) == dnnl_success &&
      dnnl_memory_desc_init_by_tag(&b, 2, d, dnnl_bf16, dnnl_ab) == dnnl_success &&
      dnnl_memory_desc_init_by_tag(&c, 2, d, dnnl_f32, dnnl_ab) == dnnl_success &&
      dnnl_matmul_desc_init(&md, &a, &b, NULL, &c) == dnnl_success &&
      dnnl_primitive_desc_create(&pd, &md, NULL, eng, NULL) == dnnl_success &&
      dnnl_primitive_create(&p, pd) == dnnl_success && dnnl_memory_create(&ma, &a, eng, x) == dnnl_success &&
      dnnl_memory_create(&mb, &b, eng, y) == dnnl_success && dnnl_memory_create(&mc, &c, eng, z) == dnnl_success) {
    for (int64_t i = 0; i < n * n; i++) { x[i] = 0x3dcd; y[i] = 0x3e4d; }   /* ~0.1, ~0.2 */
    dnnl_exec_arg_t args[] = {{DNNL_ARG_SRC, ma}, {DNNL_ARG_WEIGHTS, mb}, {DNNL_ARG_DST, mc}};
    double t_best = 1e30;
    for (int r = 0; r < 4; r++) {
      double t = lm_time_sec();
      if (dnnl_primitive_execute(p, st, 3, args) != dnnl_success || dnnl_stream_wait(st) != dnnl_success) break;
      t = lm_time_sec() - t;
      if (r > 0 && t < t_best) t_best = t;   /* the first run warms caches and threads */
    }
    if (t_best < 1e30) best = 2.0 * n * (double)n * n / t_best;
  }
  if (ma) dnnl_memory_destroy(ma);
  if (mb) dnnl_memory_destroy(mb);
  if (mc) dnnl_memory_destroy(mc);
  if (p) dnnl_primitive_destroy(p);
  if (pd) dnnl_primitive_desc_destroy(pd);
  if (st) dnnl_stream_destroy(st);
  if (eng) dnnl_engine_destroy(eng);
  lm_free(x); lm_free(y); lm_free(z);
  return best;
}

int main(int argc, char **argv) {
  if (argc < 7) { fprintf(stderr, "usage: %s LAYERS HEADS DIM VOCAB BATCH SEQ [STEPS] [POSITIONS] [CHECKPOINT] [PRECISION] [DROPOUT]\n", argv[0]); return 2; }
  lm_config c;
  lm_config_default(&c, LM_ARCH_GPT2);
  c.n_layer = atoll(argv[1]); c.n_head = atoll(argv[2]); c.n_embd = atoll(argv[3]); c.vocab_size = atoll(argv[4]);
  int64_t B = atoll(argv[5]), T = atoll(argv[6]), steps = argc > 7 ? atoll(argv[7]) : 10;
  c.n_positions = argc > 8 ? atoll(argv[8]) : 1024;
  lm_set_threads(0);
  double peak = bench_sgemm_peak();
  lm_model *m;
  int checkpoint = argc > 9 && atoi(argv[9]);
  int bf16 = argc > 10 && !strcmp(argv[10], "bf16");
  if (argc > 10 && !bf16 && strcmp(argv[10], "fp32")) { fprintf(stderr, "PRECISION: fp32 or bf16, not %s\n", argv[10]); return 2; }
  double peak16 = bf16 ? bf16_peak() : 0;
  /* DROPOUT: GPT-2's three rates (embeddings, attention, residual branches), masks drawn as training does */
  float pdrop = argc > 11 ? (float)atof(argv[11]) : 0.0f;
  if (!(pdrop >= 0.0f && pdrop < 1.0f)) { fprintf(stderr, "DROPOUT: a rate in [0, 1), not %s\n", argv[11]); return 2; }
  c.embd_pdrop = c.attn_pdrop = c.resid_pdrop = pdrop;
  lm_rng drop_rng;
  lm_rng_seed(&drop_rng, 3);
  if (lm_model_create(&m, &c, 1) || (bf16 && lm_model_set_precision(m, LM_PRECISION_BF16)) ||
      (lm_model_set_checkpointing(m, checkpoint), lm_model_reserve(m, B, T, 1))) { fprintf(stderr, "%s\n", lm_last_error()); return 1; }
  int64_t N = B * T, V = c.vocab_size, C = c.n_embd, L = c.n_layer;
  if (pdrop > 0) lm_model_set_training(m, &drop_rng);
  int32_t *ids = malloc((N + 1) * 4);
  lm_rng r; lm_rng_seed(&r, 2);
  for (int64_t i = 0; i <= N; i++) ids[i] = (int32_t)lm_rng_below(&r, (uint32_t)V);
  float *mo = lm_alloc(m->n_params * 4), *ve = lm_alloc(m->n_params * 4);
  /* STEPS 0: the warm-up step alone, timed; per step: the whole, forward, backward, norm + AdamW */
  double *times = malloc(4 * (steps > 0 ? steps : 1) * sizeof(double));
  float loss = 0;
  for (int64_t s = 0; s <= steps; s++) {   /* step 0 is a warm-up, not timed */
    double t0 = lm_time_sec();
    if (s == 0) lm_model_zero_grad(m);   /* then the AdamW pass zeroes what it read, as in training */
    loss = lm_model_forward(m, ids, ids + 1, NULL, B, T);
    double t1 = lm_time_sec();
    lm_model_backward(m, ids, ids + 1, NULL, B, T);
    double t2 = lm_time_sec();
    double norm = global_norm(m->grads, (int64_t)m->n_params);
    float clip = norm > 1.0 ? (float)(1.0 / norm) : 1.0f;   /* applied inside the AdamW pass */
    lm_model_weights_changed(m);   /* bf16: the weights' copies are stale, and rounded in the AdamW pass, as in training */
    for (int i = 0; i < m->n_info; i++) {
      const lm_param_info *p = &m->info[i];
      float *w = m->params + p->offset;
      adamw_update_zero(w, m->grads + p->offset, mo + p->offset, ve + p->offset, (int64_t)p->numel, 1e-4f, 0.9f, 0.95f,
                        1e-8f, p->decay ? 0.1f : 0.0f, s + 1, clip, lm_mm_weight_claim(m->mm, w, (int64_t)p->numel));
    }
    double t3 = lm_time_sec();
    int64_t k = s > 0 ? s - 1 : 0, ns = steps > 0 ? steps : 1;
    if (s > 0 || steps == 0) { times[k] = t3 - t0; times[ns + k] = t1 - t0; times[2 * ns + k] = t2 - t1; times[3 * ns + k] = t3 - t2; }
  }
  int ns = steps > 0 ? (int)steps : 1;
  double med = bench_median(times, ns), med_f = bench_median(times + ns, ns), med_b = bench_median(times + 2 * ns, ns),
         med_o = bench_median(times + 3 * ns, ns);
  double n_nonemb = (double)lm_model_num_params(m) - (double)V * C - (double)c.n_positions * C;
  double flops_per_token = 6 * n_nonemb + 6.0 * C * V + 12.0 * L * C * T;
  double tps = N / med;
  char drop_s[32] = "";
  if (pdrop > 0) snprintf(drop_s, sizeof drop_s, " dropout %g", pdrop);
  printf("{\"impl\": \"lmkit%s%s%s\", \"precision\": \"%s\", \"layers\": %lld, \"dim\": %lld, \"batch\": %lld, \"seq\": %lld, \"threads\": %d, "
         "\"step_s\": %.4f, \"forward_s\": %.4f, \"backward_s\": %.4f, \"optimizer_s\": %.4f, \"tokens_per_s\": %.1f, \"mfu\": %.3f, \"sgemm_peak_gflops\": %.1f, \"bf16_peak_gflops\": %.1f, \"mfu_bf16_peak\": %.3f, \"peak_rss_mb\": %.0f, \"loss\": %.4f}\n",
         checkpoint ? " --checkpoint-activations" : "", bf16 ? " bf16" : "", drop_s, bf16 ? "bf16" : "fp32", (long long)L, (long long)C, (long long)B, (long long)T, lm_get_threads(), med, med_f, med_b, med_o, tps, tps * flops_per_token / peak,
         peak / 1e9, peak16 / 1e9, peak16 > 0 ? tps * flops_per_token / peak16 : 0.0, bench_peak_rss_mb(), loss);
  free(ids); free(times); lm_free(mo); lm_free(ve);
  lm_model_free(m);
  return 0;
}
