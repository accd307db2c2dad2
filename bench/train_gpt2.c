/* train_gpt2.c — training-step benchmark: median time of a full optimiser
 * step (forward, backward, clip, AdamW) of a randomly initialised GPT-2 on
 * random tokens, with tokens/s, MFU against the measured sgemm peak, and
 * peak RSS. bench/train_gpt2.sh runs it beside the PyTorch peer.
 *
 * usage: bench_train_gpt2 LAYERS HEADS DIM VOCAB BATCH SEQ [STEPS] [POSITIONS] [CHECKPOINT]
 * (CHECKPOINT 1: activation checkpointing, as train --checkpoint-activations) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include "bench_util.h"
#include "kernels/kernels.h"
#include "model/model.h"

int main(int argc, char **argv) {
  if (argc < 7) { fprintf(stderr, "usage: %s LAYERS HEADS DIM VOCAB BATCH SEQ [STEPS] [POSITIONS] [CHECKPOINT]\n", argv[0]); return 2; }
  lm_config c;
  lm_config_default(&c, LM_ARCH_GPT2);
  c.n_layer = atoll(argv[1]); c.n_head = atoll(argv[2]); c.n_embd = atoll(argv[3]); c.vocab_size = atoll(argv[4]);
  int64_t B = atoll(argv[5]), T = atoll(argv[6]), steps = argc > 7 ? atoll(argv[7]) : 10;
  c.n_positions = argc > 8 ? atoll(argv[8]) : 1024;
  lm_set_threads(0);
  double peak = bench_sgemm_peak();
  lm_model *m;
  int checkpoint = argc > 9 && atoi(argv[9]);
  if (lm_model_create(&m, &c, 1) || (lm_model_set_checkpointing(m, checkpoint), lm_model_reserve(m, B, T, 1))) { fprintf(stderr, "%s\n", lm_last_error()); return 1; }
  int64_t N = B * T, V = c.vocab_size, C = c.n_embd, L = c.n_layer;
  int32_t *ids = malloc((N + 1) * 4);
  lm_rng r; lm_rng_seed(&r, 2);
  for (int64_t i = 0; i <= N; i++) ids[i] = (int32_t)lm_rng_below(&r, (uint32_t)V);
  float *mo = lm_alloc(m->n_params * 4), *ve = lm_alloc(m->n_params * 4);
  double *times = malloc((steps > 0 ? steps : 1) * sizeof(double));   /* STEPS 0: the warm-up step alone, timed */
  float loss = 0;
  for (int64_t s = 0; s <= steps; s++) {   /* step 0 is a warm-up, not timed */
    double t0 = lm_time_sec();
    lm_model_zero_grad(m);
    loss = lm_model_forward(m, ids, ids + 1, NULL, B, T);
    lm_model_backward(m, ids, ids + 1, NULL, B, T);
    double norm = global_norm(m->grads, (int64_t)m->n_params);
    float clip = norm > 1.0 ? (float)(1.0 / norm) : 1.0f;   /* applied inside the AdamW pass */
    for (int i = 0; i < m->n_info; i++) {
      const lm_param_info *p = &m->info[i];
      adamw_update(m->params + p->offset, m->grads + p->offset, mo + p->offset, ve + p->offset, (int64_t)p->numel,
                   1e-4f, 0.9f, 0.95f, 1e-8f, p->decay ? 0.1f : 0.0f, s + 1, clip);
    }
    if (s > 0 || steps == 0) times[s > 0 ? s - 1 : 0] = lm_time_sec() - t0;
  }
  double med = bench_median(times, steps > 0 ? (int)steps : 1);
  double n_nonemb = (double)lm_model_num_params(m) - (double)V * C - (double)c.n_positions * C;
  double flops_per_token = 6 * n_nonemb + 6.0 * C * V + 12.0 * L * C * T;
  double tps = N / med;
  printf("{\"impl\": \"lmkit%s\", \"layers\": %lld, \"dim\": %lld, \"batch\": %lld, \"seq\": %lld, \"threads\": %d, "
         "\"step_s\": %.4f, \"tokens_per_s\": %.1f, \"mfu\": %.3f, \"sgemm_peak_gflops\": %.1f, \"peak_rss_mb\": %.0f, \"loss\": %.4f}\n",
         checkpoint ? " --checkpoint-activations" : "", (long long)L, (long long)C, (long long)B, (long long)T, lm_get_threads(), med, tps, tps * flops_per_token / peak,
         peak / 1e9, bench_peak_rss_mb(), loss);
  free(ids); free(times); lm_free(mo); lm_free(ve);
  lm_model_free(m);
  return 0;
}
