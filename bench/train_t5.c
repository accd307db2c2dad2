/* train_t5.c — training-step benchmark of an encoder-decoder: median time of a
 * full optimiser step (forward, backward, clip, AdamW) of a randomly
 * initialised T5 on random inputs and targets, with tokens/s (input + target
 * tokens), MFU against the measured sgemm peak, and peak RSS.
 * bench/train_t5.sh runs it beside the PyTorch peer (train_t5_torch.py).
 *
 * usage: bench_train_t5 LAYERS HEADS DIM FF VOCAB BATCH INPUT TARGET [STEPS] [GATED]
 * (LAYERS encoder and LAYERS decoder blocks; GATED 1: v1.1's gated-GELU FFN, untied head) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include "bench_util.h"
#include "kernels/kernels.h"
#include "model/model.h"

int main(int argc, char **argv) {
  if (argc < 9) { fprintf(stderr, "usage: %s LAYERS HEADS DIM FF VOCAB BATCH INPUT TARGET [STEPS] [GATED]\n", argv[0]); return 2; }
  lm_config c;
  lm_config_default(&c, LM_ARCH_T5);
  c.n_layer = c.n_enc_layer = atoll(argv[1]); c.n_head = atoll(argv[2]); c.n_embd = atoll(argv[3]);
  c.head_dim = c.n_embd / c.n_head; c.n_inner = atoll(argv[4]); c.vocab_size = atoll(argv[5]);
  int64_t B = atoll(argv[6]), S = atoll(argv[7]), T = atoll(argv[8]), steps = argc > 9 ? atoll(argv[9]) : 5;
  int gated = argc > 10 && atoi(argv[10]);
  if (gated) { c.glu = 1; c.act = LM_ACT_GELU_TANH; c.tie_embeddings = 0; }
  c.n_positions = S > T ? S : T;
  lm_set_threads(0);
  double peak = bench_sgemm_peak();
  lm_model *m;
  if (lm_model_create(&m, &c, 1) || lm_model_reserve(m, B, c.n_positions, 1)) { fprintf(stderr, "%s\n", lm_last_error()); return 1; }
  int64_t V = c.vocab_size, C = c.n_embd, L = c.n_layer, A = lm_attn_width(&c), F = c.n_inner, FW = lm_fc_width(&c);
  int32_t *enc = malloc(B * S * 4), *dec = malloc(B * T * 4), *lab = malloc(B * T * 4);
  lm_rng r; lm_rng_seed(&r, 2);
  for (int64_t i = 0; i < B * S; i++) enc[i] = (int32_t)lm_rng_below(&r, (uint32_t)V);
  for (int64_t i = 0; i < B * T; i++) lab[i] = (int32_t)lm_rng_below(&r, (uint32_t)V);
  for (int64_t i = 0; i < B * T; i++) dec[i] = i % T ? lab[i - 1] : 0;
  lm_batch b = {.ids = dec, .targets = lab, .enc_ids = enc, .B = B, .T = T, .S = S};
  float *mo = lm_alloc(m->n_params * 4), *ve = lm_alloc(m->n_params * 4);
  double *times = malloc((steps > 0 ? steps : 1) * sizeof(double));
  float loss = 0;
  for (int64_t s = 0; s <= steps; s++) {   /* step 0 is a warm-up, not timed */
    double t0 = lm_time_sec();
    lm_model_zero_grad(m);
    loss = lm_forward(m, &b, NULL, NULL);
    lm_backward(m, &b);
    double norm = global_norm(m->grads, (int64_t)m->n_params);
    float clip = norm > 1.0 ? (float)(1.0 / norm) : 1.0f;
    for (int i = 0; i < m->n_info; i++) {
      const lm_param_info *p = &m->info[i];
      adamw_update(m->params + p->offset, m->grads + p->offset, mo + p->offset, ve + p->offset, (int64_t)p->numel,
                   1e-4f, 0.9f, 0.95f, 1e-8f, p->decay ? 0.1f : 0.0f, s + 1, clip);
    }
    if (s > 0 || steps == 0) times[s > 0 ? s - 1 : 0] = lm_time_sec() - t0;
  }
  double med = bench_median(times, steps > 0 ? (int)steps : 1);
  /* 6 x (the linears' weights x the tokens through them) + 12 A x the attention pairs (train_t5_torch.py counts the same) */
  double enc_lin = 4.0 * C * A + (double)(FW + F) * C, dec_lin = 6.0 * C * A + (double)(FW + F) * C, xkv = 2.0 * C * A;
  double flops = B * (6 * (L * (S * enc_lin + T * dec_lin + S * xkv) + (double)T * C * V) +
                      12.0 * A * L * ((double)S * S + (double)T * T + (double)T * S));
  double tps = B * (S + T) / med;
  printf("{\"impl\": \"lmkit\", \"layers\": %lld, \"dim\": %lld, \"batch\": %lld, \"input\": %lld, \"target\": %lld, "
         "\"threads\": %d, \"step_s\": %.4f, \"tokens_per_s\": %.1f, \"mfu\": %.3f, \"sgemm_peak_gflops\": %.1f, "
         "\"peak_rss_mb\": %.0f, \"loss\": %.4f}\n",
         (long long)L, (long long)C, (long long)B, (long long)S, (long long)T, lm_get_threads(), med, tps,
         flops / med / peak, peak / 1e9, bench_peak_rss_mb(), loss);
  free(enc); free(dec); free(lab); free(times); lm_free(mo); lm_free(ve);
  lm_model_free(m);
  return 0;
}
