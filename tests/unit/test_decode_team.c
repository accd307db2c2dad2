/* test_decode_team.c — a decode step on several threads (session.c: one parallel region whose
 * threads take chunks of each operation) gives the bits of the same step on one thread (each
 * operation alone, no region). Sessions made under omp_set_num_threads(1) and (3) are fed the same
 * prompt (short: it runs through the region too; long: sgemm, then decoding) and the same greedy
 * tokens, and every step's logits must be equal: GPT-2 (LayerNorm, GELU, tied) and a grouped-query
 * Llama (RMSNorm, RoPE, SwiGLU, untied), with f32 weights and with Q8_0, Q4_0 and f16 weights (a
 * GGUF file loaded for generation), with an f32 and an f16 KV cache. Then a batch decoder step of
 * several sequences (rows OC apart through the threads' scratch) on 3 threads against 1. */
#include <criterion/criterion.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "base/base.h"
#include "infer/batch.h"
#include "infer/infer.h"
#include "model/gguf.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

#define V 257
#define STEPS 12

static lm_model *make(lm_arch arch, int type, int heads) {
  lm_config c;
  lm_config_default(&c, arch);
  c.vocab_size = V; c.n_positions = 96; c.n_embd = 64; c.n_layer = 2; c.n_head = heads; c.tie_embeddings = arch == LM_ARCH_GPT2;
  if (arch == LM_ARCH_LLAMA) { c.n_kv_head = heads / 2; c.n_inner = 96; }
  lm_model *m;
  cr_assert_eq(lm_model_create(&m, &c, 5), LM_OK, "%s", lm_last_error());
  if (type < 0) return m;   /* f32 */
  lm_tokenizer *tok;
  char path[64];
  snprintf(path, sizeof path, "/tmp/lmkit_team_%d.gguf", (int)getpid());
  cr_assert_eq(lm_tokenizer_load(&tok, "byte"), LM_OK, "%s", lm_last_error());
  cr_assert_eq(lm_gguf_export(m, tok, NULL, type, path, 0), LM_OK, "%s", lm_last_error());
  lm_model_free(m);
  lm_tokenizer_free(tok);
  cr_assert_eq(lm_gguf_model_load_qonly(&m, path, -1, 1), LM_OK, "%s", lm_last_error());
  unlink(path);
  return m;
}

static int32_t argmax(const float *v) {
  int32_t b = 0;
  for (int32_t i = 1; i < V; i++) b = v[i] > v[b] ? i : b;
  return b;
}

/* every step's logits of a session on `threads` threads: plen prompt tokens, then STEPS greedy ones */
static void decode(const lm_model *m, int threads, int kv16, int plen, float (*out)[V]) {
  int nt = omp_get_max_threads();
  omp_set_num_threads(threads);
  lm_session *s;
  cr_assert_eq(lm_session_init_kv(&s, m, 96, kv16), LM_OK, "%s", lm_last_error());
  omp_set_num_threads(nt);
  int32_t ids[64];
  for (int i = 0; i < plen; i++) ids[i] = (int32_t)((i * 37 + 11) % V);
  const float *lg;
  cr_assert_eq(lm_session_feed(s, ids, plen, &lg), LM_OK, "%s", lm_last_error());
  for (int t = 0; t < STEPS; t++) {
    memcpy(out[t], lg, sizeof out[t]);
    int32_t next = argmax(lg);
    cr_assert_eq(lm_session_feed(s, &next, 1, &lg), LM_OK, "%s", lm_last_error());
  }
  lm_session_free(s);
}

static void same_bits(lm_arch arch, int type, int heads) {
  lm_model *m = make(arch, type, heads);
  static float one[STEPS][V], many[STEPS][V];
  for (int kv16 = 0; kv16 < 2; kv16++)
    /* 5: the prompt in the region too; 45: sgemm, then decoding. Not 45 for f16 weights: the prompt's
     * qgemm.c on a 1-thread session lets OpenBLAS run its own threads, whose sgemm bits differ from
     * its single-threaded ones inside the 3 threads' region (qgemm.c's, not the decode step's) */
    for (int plen = 5; plen <= (type == LM_GGML_F16 ? 5 : 45); plen += 40) {
      decode(m, 1, kv16, plen, one);
      decode(m, 3, kv16, plen, many);
      for (int t = 0; t < STEPS; t++)
        cr_assert(!memcmp(one[t], many[t], sizeof one[t]), "type %d, kv16 %d, prompt %d: step %d's logits differ at 3 threads",
                  type, kv16, plen, t);
    }
  lm_model_free(m);
}

Test(decode_team, gpt2_f32) { same_bits(LM_ARCH_GPT2, -1, 4); }
Test(decode_team, llama_f32) { same_bits(LM_ARCH_LLAMA, -1, 4); }
Test(decode_team, gpt2_q8_0) { same_bits(LM_ARCH_GPT2, LM_GGML_Q8_0, 4); }
Test(decode_team, llama_q4_0) { same_bits(LM_ARCH_LLAMA, LM_GGML_Q4_0, 4); }
Test(decode_team, llama_f16) { same_bits(LM_ARCH_LLAMA, LM_GGML_F16, 4); }
/* heads of 32 values (whole Q8_0 blocks): attention quantizes each head's output for the projection
 * in its own chunk (16: a phase of its own, above) */
Test(decode_team, gpt2_q4_0_heads32) { same_bits(LM_ARCH_GPT2, LM_GGML_Q4_0, 2); }
Test(decode_team, llama_q8_0_heads32) { same_bits(LM_ARCH_LLAMA, LM_GGML_Q8_0, 2); }

/* a batch decoder step of 5 sequences: rows OC apart, chunks of weight rows through the scratch */
static void batch_logits(const lm_model *m, int threads, float *out) {
  int nt = omp_get_max_threads();
  omp_set_num_threads(threads);
  lm_fwd *f;
  lm_kv kv[5];
  cr_assert_eq(lm_fwd_init(&f, m, 64, 96), LM_OK, "%s", lm_last_error());
  omp_set_num_threads(nt);
  int32_t ids[5][8];
  lm_kv_run runs[5];
  for (int r = 0; r < 5; r++) {
    cr_assert_eq(lm_kv_init(&kv[r], m, 96), LM_OK, "%s", lm_last_error());
    for (int i = 0; i < 8; i++) ids[r][i] = (int32_t)((r * 53 + i * 29 + 3) % V);
    runs[r] = (lm_kv_run){.kv = &kv[r], .pos = 0, .ids = ids[r], .n = 1 + r};   /* prompts of 1..5 */
  }
  lm_fwd_feed(f, runs, 5);
  for (int r = 0; r < 5; r++) runs[r] = (lm_kv_run){.kv = &kv[r], .pos = 1 + r, .ids = &ids[r][7], .n = 1};
  memcpy(out, lm_fwd_feed(f, runs, 5), 5 * V * sizeof(float));   /* one decode step of 5 */
  for (int r = 0; r < 5; r++) lm_kv_free(&kv[r]);
  lm_fwd_free(f);
}

Test(decode_team, batch_step) {
  const int types[3] = {-1, LM_GGML_Q8_0, LM_GGML_Q8_0};   /* f32, Q8_0, Q8_0 GPT-2 with heads of 32 */
  for (int k = 0; k < 3; k++) {
    int type = types[k];
    lm_model *m = make(k == 2 ? LM_ARCH_GPT2 : LM_ARCH_LLAMA, type, k == 2 ? 2 : 4);
    static float one[5 * V], many[5 * V];
    batch_logits(m, 1, one);
    batch_logits(m, 3, many);
    cr_assert(!memcmp(one, many, sizeof one), "type %d: a batch step's logits differ at 3 threads", type);
    lm_model_free(m);
  }
}
