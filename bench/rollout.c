/* rollout.c — RL rollout throughput: sampled tokens/s of lm_rollout (rl.h) with
 * N sequences in one batch (one forward per step over all live rows, on the
 * many-sequence decoder) against the same N completions sampled one sequence
 * at a time (N rollouts of one row: the single-sequence path), on a randomly
 * initialised GPT-2 124M. Every row samples exactly NEW tokens (no stop token),
 * so both sides do the same work. Prints medians of RUNS, the ratio, and the
 * machine's load average (the figure means little on a busy machine).
 *
 * usage: bench_rollout [THREADS=2] [N=16] [PROMPT=32] [NEW=64] [RUNS=3] */
#include <stdio.h>
#include <stdlib.h>
#include "bench_util.h"
#include "model/model.h"
#include "train/rl.h"

int main(int argc, char **argv) {
  int threads = argc > 1 ? atoi(argv[1]) : 2, n = argc > 2 ? atoi(argv[2]) : 16, runs = argc > 5 ? atoi(argv[5]) : 3;
  int64_t P = argc > 3 ? atoll(argv[3]) : 32, NEW = argc > 4 ? atoll(argv[4]) : 64;
  if (threads < 1 || n < 1 || P < 1 || NEW < 1 || runs < 1) { fprintf(stderr, "usage: %s [THREADS] [N] [PROMPT] [NEW] [RUNS]\n", argv[0]); return 2; }
  lm_set_threads(threads);
  lm_config c;
  lm_config_default(&c, LM_ARCH_GPT2);
  lm_model *m;
  lm_batch_decoder *d;
  lm_rollouts r;
  if (lm_model_create(&m, &c, 1) || lm_batch_decoder_init(&d, m, n, P + NEW) || lm_rollouts_alloc(&r, n, NEW)) {
    fprintf(stderr, "%s\n", lm_last_error());
    return 1;
  }
  int32_t *prompt = malloc((size_t)P * sizeof *prompt);
  const int32_t **pp = malloc((size_t)n * sizeof *pp);
  int64_t *pl = malloc((size_t)n * sizeof *pl);
  lm_rng g;
  lm_rng_seed(&g, 3);
  for (int64_t i = 0; i < P; i++) prompt[i] = (int32_t)lm_rng_below(&g, (uint32_t)c.vocab_size);
  for (int i = 0; i < n; i++) { pp[i] = prompt; pl[i] = P; }
  lm_rollout_opts o = {.temperature = 1.0f, .top_p = 1.0f, .max_new = NEW, .seed = 1};
  double *tb = malloc((size_t)runs * sizeof *tb), *ts = malloc((size_t)runs * sizeof *ts);
  for (int k = 0; k < runs; k++) {
    double t0 = lm_time_sec();
    if (lm_rollout(d, m, NULL, pp, pl, n, &o, &r)) { fprintf(stderr, "%s\n", lm_last_error()); return 1; }
    tb[k] = (double)r.sampled / (lm_time_sec() - t0);
    int64_t tokens = 0;
    t0 = lm_time_sec();
    for (int i = 0; i < n; i++) {
      lm_rollout_opts oi = o;
      oi.seed = o.seed + (uint64_t)i;
      if (lm_rollout(d, m, NULL, pp, pl, 1, &oi, &r)) { fprintf(stderr, "%s\n", lm_last_error()); return 1; }
      tokens += r.sampled;
    }
    ts[k] = (double)tokens / (lm_time_sec() - t0);
  }
  double b = bench_median(tb, runs), s = bench_median(ts, runs), load[1] = {0};
  FILE *f = fopen("/proc/loadavg", "r");
  if (f) { if (fscanf(f, "%lf", &load[0]) != 1) load[0] = -1; fclose(f); }
  printf("rollouts, GPT-2 124M (random weights), %d threads, prompt %lld, %lld new tokens each, median of %d:\n",
         threads, (long long)P, (long long)NEW, runs);
  printf("  batched, %d sequences per forward: %8.1f sampled tokens/s\n", n, b);
  printf("  one sequence at a time:           %8.1f sampled tokens/s\n", s);
  printf("  ratio %.2fx (target >= 4x at 16); load average %.2f on %d cores\n", b / s, load[0], threads);
  free(prompt); free(pp); free(pl); free(tb); free(ts);
  lm_rollouts_free(&r);
  lm_batch_decoder_free(d);
  lm_model_free(m);
  return 0;
}
