/* generate.c — inference benchmark: a randomly initialised model of a real
 * shape run through the KV-cache session: prompt pre-fill speed (tokens/s) and
 * greedy decode speed (tokens/s), with decode set against the machine's DRAM
 * read bandwidth, measured here, as the share of the bandwidth limit (bytes of
 * weights, plus KV cache, read per decoded token). The bandwidth is measured just
 * before each decode run (best of 3 parallel sums over 256 MiB, at the decode's
 * thread count), each run's share is its decode speed against its own reading,
 * and the figures are the medians over the runs: on a shared machine the
 * bandwidth moves by tens of percent within minutes (49-64 GB/s in session 8),
 * so a reading taken once at start can be far from the decode's. Also the
 * prefill's and decode's rates in CPU time (tokens x threads / the process's CPU seconds): at
 * 1 thread, the speed had the thread had its core alone (on a loaded machine
 * the only steady figure; memory contention still counts). The shapes:
 *   gpt2       GPT-2 124M: 12 layers, 768 wide, 12 heads, vocab 50257, context 1024
 *   tinyllama  TinyLlama-1.1B: 22 layers, 2048 wide, 32 heads / 4 KV heads, SwiGLU FFN 5632,
 *              vocab 32000, context 2048, untied head
 * or MODEL is a GGUF file (its weights kept as the file has them: Q8_0/Q4_0 blocks decode through
 * the quantized kernels, and the bytes per token count the blocks). `bench_generate write SHAPE
 * TYPE OUT.gguf` writes a shape's random model as GGUF (f32, f16, q8_0, q4_0; GPT-2's tokenizer, so
 * llama.cpp loads it: the TinyLlama shape then has 50257 tokens instead of 32000).
 * bench/generate_gpt2.sh, bench/generate_llama.sh and bench/generate_gguf.sh run it.
 *
 * usage: bench_generate [MODEL=gpt2|tinyllama|FILE.gguf] [THREADS=2] [PROMPT=512] [DECODE=128] [RUNS=5] [DECODE_PREFILL=16]
 *        bench_generate write gpt2|tinyllama f32|f16|q8_0|q4_0 OUT.gguf */
#include <math.h>
#include <omp.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "bench_util.h"
#include "infer/infer.h"
#include "model/model.h"
#include "model/gguf.h"
#include "kernels/quant.h"

static double cpu_sec(void) {
  struct timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int32_t argmax(const float *v, int64_t n) {
  int64_t b = 0;
  for (int64_t i = 1; i < n; i++)
    if (v[i] > v[b]) b = i;
  return (int32_t)b;
}

static void shape_config(lm_config *c, int llama) {
  if (llama) {   /* TinyLlama-1.1B's config.json */
    lm_config_default(c, LM_ARCH_LLAMA);
    c->vocab_size = 32000; c->n_positions = 2048; c->n_embd = 2048; c->n_layer = 22; c->n_head = 32; c->n_kv_head = 4;
    c->n_inner = 5632; c->norm_eps = 1e-5f;
  } else {
    lm_config_default(c, LM_ARCH_GPT2);   /* GPT-2 small: 12 x 768, 12 heads, 50257, 1024 */
  }
}

/* a shape's random weights (N(0, 0.02) as lm_model_create draws them) as a GGUF file of one type */
static int write_gguf(const char *shape, const char *type, const char *out) {
  int llama = !strcmp(shape, "tinyllama"), t = lm_ggml_type_by_name(type);
  lm_config c;
  lm_tokenizer *tok;
  lm_model *m;
  if ((!llama && strcmp(shape, "gpt2")) || t < 0) { fprintf(stderr, "usage: bench_generate write gpt2|tinyllama f32|f16|q8_0|q4_0 OUT\n"); return 2; }
  if (lm_tokenizer_load(&tok, "gpt2")) { fprintf(stderr, "%s\n", lm_last_error()); return 1; }
  shape_config(&c, llama);
  c.vocab_size = lm_tokenizer_vocab_size(tok);
  if (lm_model_create(&m, &c, 1) || lm_gguf_export(m, tok, NULL, t, out, 0)) { fprintf(stderr, "%s\n", lm_last_error()); return 1; }
  lm_model_free(m);
  lm_tokenizer_free(tok);
  return 0;
}

int main(int argc, char **argv) {
  if (argc > 1 && !strcmp(argv[1], "write")) return argc == 5 ? write_gguf(argv[2], argv[3], argv[4]) : 2;
  const char *model = argc > 1 ? argv[1] : "gpt2";
  int threads = argc > 2 ? atoi(argv[2]) : 2;
  int64_t P = argc > 3 ? atoll(argv[3]) : 512, D = argc > 4 ? atoll(argv[4]) : 128;
  int runs = argc > 5 ? atoi(argv[5]) : 5;
  int64_t DP = argc > 6 ? atoll(argv[6]) : 16;
  int llama = !strcmp(model, "tinyllama"), file = lm_gguf_is_file(model);
  if ((!llama && !file && strcmp(model, "gpt2")) || runs < 1 || P < 1 || D < 1 || DP < 1) {
    fprintf(stderr, "usage: %s [gpt2|tinyllama] [THREADS] [PROMPT] [DECODE] [RUNS] [DECODE_PREFILL]\n", argv[0]);
    return 2;
  }
  lm_set_threads(threads);
  /* the bandwidth's buffer, kept for the run (its pages count in the peak RSS: taken off below) */
  const size_t nbw = ((size_t)256 << 20) / sizeof(float);
  float *bwbuf = bench_bw_buffer(nbw);
  if (!bwbuf) { fprintf(stderr, "out of memory\n"); return 1; }

  lm_config c;
  lm_model *m;
  lm_session *s;
  int64_t max_len = (P > DP + D ? P : DP + D);
  shape_config(&c, llama);
  if (file ? lm_model_load_infer(&m, model) : lm_model_create(&m, &c, 1)) { fprintf(stderr, "%s\n", lm_last_error()); return 1; }
  c = m->cfg;
  int kv16 = getenv("KV_F16") && atoi(getenv("KV_F16"));
  if (lm_session_init_kv(&s, m, max_len, kv16)) { fprintf(stderr, "%s\n", lm_last_error()); return 1; }
  const int64_t V = c.vocab_size, C = c.n_embd, L = c.n_layer, KVC = lm_kv_heads(&c) * (C / c.n_head);
  int32_t *prompt = malloc(P * sizeof(int32_t));
  lm_rng r;
  lm_rng_seed(&r, 2);
  for (int64_t i = 0; i < P; i++) prompt[i] = (int32_t)lm_rng_below(&r, (uint32_t)V);
  double *pre = malloc(runs * sizeof(double)), *dec = malloc(runs * sizeof(double)), *bws = malloc(runs * sizeof(double));
  double *frac = malloc(runs * sizeof(double)), *cpu = malloc(runs * sizeof(double)), *precpu = malloc(runs * sizeof(double));
  const float *lg;
  int32_t last = 0;

  /* prefill: P prompt tokens into a fresh session; run 0 is a warm-up */
  for (int k = 0; k <= runs; k++) {
    lm_session_reset(s);
    double t = lm_time_sec(), tc = cpu_sec();
    if (lm_session_feed(s, prompt, P, &lg)) { fprintf(stderr, "%s\n", lm_last_error()); return 1; }
    t = lm_time_sec() - t;
    tc = cpu_sec() - tc;
    if (k > 0) { pre[k - 1] = P / t; precpu[k - 1] = P * (double)lm_get_threads() / tc; }
  }
  /* decode: DP prompt tokens, then D greedy tokens one at a time (only the D steps are timed),
   * each run just after a bandwidth reading */
  for (int k = 0; k <= runs; k++) {
    lm_session_reset(s);
    if (lm_session_feed(s, prompt, DP, &lg)) { fprintf(stderr, "%s\n", lm_last_error()); return 1; }
    double b = bench_bw_measure(bwbuf, nbw, 3);
    double t = lm_time_sec(), tc = cpu_sec();
    for (int64_t i = 0; i < D; i++) {
      int32_t next = argmax(lg, V);
      if (lm_session_feed(s, &next, 1, &lg)) { fprintf(stderr, "%s\n", lm_last_error()); return 1; }
      last = next;
    }
    t = lm_time_sec() - t;
    tc = cpu_sec() - tc;
    if (k > 0) { dec[k - 1] = D / t; bws[k - 1] = b; cpu[k - 1] = D * (double)lm_get_threads() / tc; }
  }
  lm_free(bwbuf);

  /* bytes read per decoded token: every parameter except the position table (one row of it
   * is read, C floats, ignored) and, untied, the token table (one row); the tied table once,
   * as the LM head */
  double n_params = (double)lm_model_num_params(m);
  double weight_bytes = 4.0 * (n_params - (m->w.wpe ? (double)c.n_positions * C : 0) -
                               (c.tie_embeddings ? 0 : (double)V * C));
  /* K and V of every layer up to the current length; the mean length over the decode */
  double kv_len = DP + (D + 1) / 2.0;
  double kv_bytes = 4.0 * 2.0 * L * kv_len * KVC;
  for (int64_t e = 0; m->qlin && e <= LM_QL_PER_LAYER * L; e++) {   /* quantized linears: their blocks */
    const lm_qmat *q = &m->qlin[e];
    if (q->data) weight_bytes += (double)q->rows * (q->cols / LM_QK) * lm_qweight_block_bytes(q->type) - 4.0 * q->rows * q->cols;
  }
  if (kv16) kv_bytes /= 2;
  for (int k = 0; k < runs; k++) frac[k] = dec[k] * weight_bytes / bws[k];   /* each run against its own reading */
  double frac_w = bench_median(frac, runs);
  for (int k = 0; k < runs; k++) frac[k] = dec[k] * (weight_bytes + kv_bytes) / bws[k];
  double frac_wkv = bench_median(frac, runs);
  double pre_tps = bench_median(pre, runs), dec_tps = bench_median(dec, runs), bw = bench_median(bws, runs);
  double cpu_tps = bench_median(cpu, runs), pre_cpu_tps = bench_median(precpu, runs);
  double limit_w = bw / weight_bytes, limit_wkv = bw / (weight_bytes + kv_bytes);

  const char *name = file ? model : llama ? "tinyllama-1.1B" : "gpt2-124M";
  double rss = bench_peak_rss_mb() - (double)(nbw * sizeof(float)) / (1 << 20);   /* the model's, without the buffer */
  printf("{\"impl\": \"lmkit\", \"model\": \"%s\", \"kv_f16\": %d, \"threads\": %d, \"bandwidth_gbs\": %.2f, "
         "\"prefill_tokens\": %lld, \"prefill_tok_s\": %.1f, \"prefill_cpu_tok_s\": %.1f, \"decode_prefill\": %lld, \"decode_tokens\": %lld, "
         "\"decode_tok_s\": %.2f, \"decode_cpu_tok_s\": %.2f, \"weight_mb_per_token\": %.1f, \"kv_mb_per_token\": %.1f, "
         "\"bw_limit_tok_s\": %.2f, \"bw_fraction\": %.3f, \"bw_limit_kv_tok_s\": %.2f, \"bw_fraction_kv\": %.3f, "
         "\"peak_rss_mb\": %.0f, \"last_token\": %d}\n",
         name, kv16, lm_get_threads(), bw / 1e9, (long long)P, pre_tps, pre_cpu_tps, (long long)DP,
         (long long)D, dec_tps, cpu_tps, weight_bytes / 1e6, kv_bytes / 1e6, limit_w, frac_w, limit_wkv, frac_wkv, rss, last);
  fprintf(stderr,
          "%s, %d threads, DRAM read bandwidth %.2f GB/s (median of the readings beside the decode runs)\n"
          "  prefill %lld tokens:  %8.1f tok/s  (%.1f in CPU time)\n"
          "  decode  %lld tokens:  %8.2f tok/s  (%.2f in CPU time)\n"
          "  bandwidth limit:      %8.2f tok/s  (%.1f MB of weights per token) -> %.2f of the limit (median of the runs)\n"
          "  with the KV cache:    %8.2f tok/s  (+%.1f MB mean KV per token)   -> %.2f of the limit\n",
          name, lm_get_threads(), bw / 1e9, (long long)P, pre_tps, pre_cpu_tps, (long long)D, dec_tps, cpu_tps, limit_w, weight_bytes / 1e6,
          frac_w, limit_wkv, kv_bytes / 1e6, frac_wkv);
  free(prompt); free(pre); free(dec); free(bws); free(frac); free(cpu); free(precpu);
  lm_session_free(s);
  lm_model_free(m);
  return 0;
}
