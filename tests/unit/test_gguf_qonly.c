/* test_gguf_qonly.c — GGUF models loaded for generation only (lm_gguf_model_load_qonly, model.h
 * qonly): the linears and the token embedding kept as Q8_0/Q4_0 blocks have no f32 copy, and
 * generation gives the logits of the same file loaded with its f32 copy, bit for bit (the same
 * quantized kernels; the embedding rows dequantized on the fly are the f32 copy's values), for a
 * prompt and for decoded tokens, on GPT-2 (tied embeddings) and a grouped-query Llama (untied), in
 * q8_0, q4_0 and f16 (kept as f16); prompts of more than 32 tokens (qgemm.c) give, in f16, the f32
 * copy's logits within sgemm's rounding, in q8_0/q4_0 the logits of the same tokens fed one by one
 * within float rounding (prefill_case). The f32 memory is really absent (only the kept tensors' pages are reserved), and
 * everything that needs the f32 weights (a full forward, training, saving, export, LoRA) is an error
 * naming the reason. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "base/base.h"
#include "model/model.h"
#include "model/gguf.h"
#include "model/lora.h"
#include "kernels/qgemm.h"
#include "model/heads.h"
#include "infer/infer.h"
#include "tokenizer/tokenizer.h"

/* a random model (the byte tokenizer's 257 tokens, 64 wide) written to path as `type` */
static void write_file(lm_arch arch, int tied, int64_t layers, int type, char *path, lm_model **m, lm_tokenizer **tok) {
  lm_config c;
  lm_config_default(&c, arch);
  c.vocab_size = 257; c.n_positions = 64; c.n_embd = 64; c.n_layer = layers; c.n_head = 4; c.tie_embeddings = tied;
  if (arch == LM_ARCH_LLAMA) { c.n_kv_head = 2; c.n_inner = 96; }
  cr_assert_eq(lm_model_create(m, &c, 7), LM_OK, "%s", lm_last_error());
  cr_assert_eq(lm_tokenizer_load(tok, "byte"), LM_OK, "%s", lm_last_error());
  snprintf(path, 64, "/tmp/lmkit_qonly_%d.gguf", (int)getpid());
  cr_assert_eq(lm_gguf_export(*m, *tok, NULL, type, path, 0), LM_OK, "%s", lm_last_error());
}

/* the random model m written as `type`, loaded with its f32 copy (full) and for generation only (q) */
static void load_both(lm_arch arch, int tied, int type, lm_model **m, lm_model **full, lm_model **q, lm_tokenizer **tok) {
  char path[64];
  write_file(arch, tied, 2, type, path, m, tok);
  cr_assert_eq(lm_gguf_model_load(full, path, -1), LM_OK, "%s", lm_last_error());
  cr_assert_eq(lm_gguf_model_load_qonly(q, path, -1, 1), LM_OK, "%s", lm_last_error());
  unlink(path);
}

/* a session on each model and n random token ids */
static void open_both(lm_model *full, lm_model *q, lm_session **sf, lm_session **sq, int32_t *ids, int n, uint64_t seed) {
  cr_assert_eq(lm_session_init(sf, full, 64), LM_OK, "%s", lm_last_error());
  cr_assert_eq(lm_session_init(sq, q, 64), LM_OK, "%s", lm_last_error());
  lm_rng r;
  lm_rng_seed(&r, seed);
  for (int i = 0; i < n; i++) ids[i] = (int32_t)lm_rng_below(&r, 257);
}

/* a 20-token prompt, then one token a step: the two sessions' logits equal at every step, and finite */
static void same_logits(lm_session *sf, lm_session *sq, const int32_t *ids, int steps, const char *what) {
  for (int step = 0; step < steps; step++) {
    const int32_t *feed = step == 0 ? ids : ids + 19 + step;
    int64_t n = step == 0 ? 20 : 1;
    const float *a, *b;
    cr_assert_eq(lm_session_feed(sf, feed, n, &a), LM_OK, "%s", lm_last_error());
    cr_assert_eq(lm_session_feed(sq, feed, n, &b), LM_OK, "%s", lm_last_error());
    cr_assert(!memcmp(a, b, 257 * sizeof(float)), "%s step %d: qonly logits differ", what, step);
    for (int v = 0; v < 257; v++) cr_assert(isfinite(b[v]), "%s step %d: logit %d", what, step, v);
  }
}

static void run_case(lm_arch arch, int tied, int type) {
  lm_model *m, *full, *q;
  lm_tokenizer *tok;
  load_both(arch, tied, type, &m, &full, &q, &tok);
  cr_assert(q->qonly && q->params_map && q->qlin && !full->qonly);
  /* every linear kept quantized; the embedding has its own blocks unless the head's serve */
  for (int64_t e = 0; e <= LM_QL_HEAD(q); e++) cr_assert(q->qlin[e].data, "qlin entry %lld is f32", (long long)e);
  cr_assert(tied ? !q->qlin[LM_QL_EMB(q)].data : q->qlin[LM_QL_EMB(q)].data != NULL);
  /* the tensors kept as f32 (norms, biases) are a small part of the model */
  size_t kept = 0;
  for (int i = 0; i < q->n_info; i++) {
    const lm_param_info *p = &q->info[i];
    if (p->ndim == 1) kept += p->numel;
  }
  cr_assert(kept * 20 < q->n_params, "%zu of %zu values kept", kept, q->n_params);

  lm_session *sf, *sq;
  int32_t ids[30];
  open_both(full, q, &sf, &sq, ids, 30, 3);
  same_logits(sf, sq, ids, 8, lm_ggml_type_name(type));
  lm_session_free(sf); lm_session_free(sq);

  /* what needs the f32 weights is refused, naming why */
  cr_assert_eq(lm_model_reserve(q, 1, 8, 0), LM_ERR_UNSUPPORTED);
  cr_assert(strstr(lm_last_error(), "loaded for generation only"), "%s", lm_last_error());
  cr_assert_eq(lm_model_reserve(q, 1, 8, 1), LM_ERR_UNSUPPORTED);
  cr_assert(strstr(lm_last_error(), "training"), "%s", lm_last_error());
  cr_assert_neq(lm_model_save(q, "/tmp/lmkit_qonly_never"), LM_OK);
  cr_assert(strstr(lm_last_error(), "saving"), "%s", lm_last_error());
  cr_assert_neq(lm_gguf_export(q, tok, NULL, LM_GGML_F32, "/tmp/lmkit_qonly_never.gguf", 0), LM_OK);
  cr_assert(strstr(lm_last_error(), "GGUF export"), "%s", lm_last_error());
  lm_lora_opts lo = {.rank = 2, .alpha = 4};
  cr_assert_neq(lm_lora_attach(q, &lo), LM_OK);
  cr_assert(strstr(lm_last_error(), "LoRA"), "%s", lm_last_error());
  cr_assert(access("/tmp/lmkit_qonly_never", F_OK) != 0 && access("/tmp/lmkit_qonly_never.gguf", F_OK) != 0);
  lm_model_free(m); lm_model_free(full); lm_model_free(q); lm_tokenizer_free(tok);
}

Test(gguf_qonly, gpt2_tied_q8_0) { run_case(LM_ARCH_GPT2, 1, LM_GGML_Q8_0); }
Test(gguf_qonly, gpt2_tied_q4_0) { run_case(LM_ARCH_GPT2, 1, LM_GGML_Q4_0); }
Test(gguf_qonly, llama_untied_q8_0) { run_case(LM_ARCH_LLAMA, 0, LM_GGML_Q8_0); }
Test(gguf_qonly, llama_untied_q4_0) { run_case(LM_ARCH_LLAMA, 0, LM_GGML_Q4_0); }
/* f16 linears and embeddings kept as f16 (linear.c lm_linear_rows_f16): the bits of the f32 copy's
 * ordinary kernels */
Test(gguf_qonly, gpt2_tied_f16) { run_case(LM_ARCH_GPT2, 1, LM_GGML_F16); }
Test(gguf_qonly, llama_untied_f16) { run_case(LM_ARCH_LLAMA, 0, LM_GGML_F16); }

/* a prompt of more than 32 tokens runs the kept weights through qgemm.c. f16: converted panels x
 * sgemm, so the logits of the f32 copy run by sgemm to sgemm's rounding (1e-4 of the largest).
 * Q8_0/Q4_0: an integer GEMM on the activations quantized as decode quantizes them, so the prompt
 * fed at once gives the logits of the same prompt fed token by token (quant.c's decode kernels)
 * to float rounding: 1e-3 of the largest, since a rounding difference can move an activation to
 * the next quantization step in the next layer; and those of the f32 copy (unquantized
 * activations) within the activations' quantization error (3e-2 of the largest) */
static void prefill_case(lm_arch arch, int tied, int type) {
  lm_model *m, *full, *q;
  lm_tokenizer *tok;
  load_both(arch, tied, type, &m, &full, &q, &tok);
  /* every layer's linears f32 in the copy; the LM head (one row: quant.c against quantized
   * activations, in both) kept as it is */
  for (int64_t e = 0; full->qlin && e < LM_QL_HEAD(full); e++) { lm_free(full->qlin[e].data); full->qlin[e].data = NULL; }
  cr_assert(q->qlin && q->qlin[0].data);
  lm_session *sf, *sq, *sd;
  int32_t ids[45];
  open_both(full, q, &sf, &sq, ids, 45, 5);
  cr_assert_eq(lm_session_init(&sd, q, 64), LM_OK, "%s", lm_last_error());
  const float *a, *b, *c = NULL;
  cr_assert_eq(lm_session_feed(sf, ids, 45, &a), LM_OK, "%s", lm_last_error());
  cr_assert_eq(lm_session_feed(sq, ids, 45, &b), LM_OK, "%s", lm_last_error());
  for (int i = 0; i < 45; i++) cr_assert_eq(lm_session_feed(sd, ids + i, 1, &c), LM_OK, "%s", lm_last_error());
  double mx = 0, d = 0, dd = 0;
  for (int v = 0; v < 257; v++) { mx = fmax(mx, fabs(a[v])); d = fmax(d, fabs(a[v] - b[v])); dd = fmax(dd, fabs(c[v] - b[v])); }
  int f16 = type == LM_GGML_F16;
  cr_assert(mx > 0 && d <= (f16 ? 1e-4 : 3e-2) * mx, "%s %s: max |qgemm - f32| = %g of max |logit| %g", lm_arch_name(arch),
            lm_ggml_type_name(type), d, mx);
  if (!f16) cr_assert(dd <= 1e-3 * mx, "%s %s: max |prefill - decode| = %g of max |logit| %g", lm_arch_name(arch), lm_ggml_type_name(type), dd, mx);
  cr_log_info("%s %s: max |prefill - f32| %g, |prefill - decode| %g, max |logit| %g", lm_arch_name(arch), lm_ggml_type_name(type), d, dd, mx);
  lm_session_free(sf); lm_session_free(sq); lm_session_free(sd);
  lm_model_free(m); lm_model_free(full); lm_model_free(q); lm_tokenizer_free(tok);
}

Test(gguf_qonly, prefill_q8_0) { prefill_case(LM_ARCH_GPT2, 1, LM_GGML_Q8_0); }
Test(gguf_qonly, prefill_q4_0) { prefill_case(LM_ARCH_LLAMA, 0, LM_GGML_Q4_0); }
Test(gguf_qonly, prefill_q8_0_llama) { prefill_case(LM_ARCH_LLAMA, 0, LM_GGML_Q8_0); }
Test(gguf_qonly, prefill_q4_0_gpt2) { prefill_case(LM_ARCH_GPT2, 1, LM_GGML_Q4_0); }
Test(gguf_qonly, prefill_f16) { prefill_case(LM_ARCH_LLAMA, 0, LM_GGML_F16); }

/* a file with float weights loads as an ordinary model (nothing to leave out) */
Test(gguf_qonly, f32_file_is_an_ordinary_model) {
  lm_model *m, *q;
  lm_tokenizer *tok;
  char path[64];
  write_file(LM_ARCH_LLAMA, 0, 1, LM_GGML_F32, path, &m, &tok);
  cr_assert_eq(lm_gguf_model_load_qonly(&q, path, -1, 1), LM_OK, "%s", lm_last_error());
  unlink(path);
  cr_assert(!q->qonly && !q->qlin);
  cr_assert(!memcmp(q->params, m->params, m->n_params * sizeof(float)));
  cr_assert_eq(lm_model_reserve(q, 1, 8, 1), LM_OK, "%s", lm_last_error());
  lm_model_free(m); lm_model_free(q); lm_tokenizer_free(tok);
}

/* ---- K-quants, kept exactly (quant.h LM_QW_A8, LM_QW_A4) */

static int ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && !strcmp(s + n - k, suffix);
}

/* A Llama written as Q4_0, then its q, k, ffn_up and token embedding made Q4_K: Q4_K has Q4_0's
 * 144 bytes per 256 values, so the file stays valid when their type fields are rewritten and their
 * blocks replaced by random Q4_K blocks (small scales). q and k (with v, still Q4_0) make one
 * linear, ffn_up with ffn_gate (Q4_0) another: both mixes are kept as A4 (quant.h), as the untied
 * embedding is (A8's file-level case, Q6_K beside Q4_K: tests/cli/test_gguf.sh). */
static void write_kquant_file(char *path, lm_model **m, lm_tokenizer **tok) {
  lm_config c;
  lm_config_default(&c, LM_ARCH_LLAMA);
  c.vocab_size = 257; c.n_positions = 64; c.n_embd = 256; c.n_layer = 2; c.n_head = 4; c.n_kv_head = 2; c.n_inner = 512;
  c.tie_embeddings = 0;
  cr_assert_eq(lm_model_create(m, &c, 7), LM_OK, "%s", lm_last_error());
  cr_assert_eq(lm_tokenizer_load(tok, "byte"), LM_OK, "%s", lm_last_error());
  snprintf(path, 64, "/tmp/lmkit_kquant_%d.gguf", (int)getpid());
  cr_assert_eq(lm_gguf_export(*m, *tok, NULL, LM_GGML_Q4_0, path, 0), LM_OK, "%s", lm_last_error());
  char *buf;
  size_t len;
  cr_assert_eq(lm_read_file(path, &buf, &len), LM_OK);
  lm_gguf *g;
  cr_assert_eq(lm_gguf_open_mem(&g, buf, len, path), LM_OK, "%s", lm_last_error());
  lm_rng r;
  lm_rng_seed(&r, 11);
  int patched = 0;
  for (int64_t i = 0; i < lm_gguf_n_tensors(g); i++) {
    const lm_gguf_tensor *t = lm_gguf_tensor_at(g, i);
    if (!ends_with(t->name, "attn_q.weight") && !ends_with(t->name, "attn_k.weight") && !ends_with(t->name, "ffn_up.weight") &&
        strcmp(t->name, "token_embd.weight"))
      continue;
    cr_assert(t->type == LM_GGML_Q4_0 && t->ne[0] % 256 == 0 && t->nbytes == (size_t)t->numel / 256 * 144, "%s", t->name);
    uint8_t *d = (uint8_t *)t->data;   /* inside buf */
    for (size_t k = 0; k < t->nbytes; k++) d[k] = (uint8_t)(lm_rng_u64(&r) >> 56);
    for (size_t b = 0; b < t->nbytes / 144; b++) {
      uint16_t h = lm_f32_to_f16(0.002f + 0.0005f * (float)(b % 5)), hm = lm_f32_to_f16(0.001f);
      d[144 * b] = (uint8_t)h; d[144 * b + 1] = (uint8_t)(h >> 8); d[144 * b + 2] = (uint8_t)hm; d[144 * b + 3] = (uint8_t)(hm >> 8);
    }
    /* the tensor's info in the header: u64 name length, name, u32 n_dims, u64 ne[n_dims], u32 type */
    size_t nl = strlen(t->name);
    uint8_t key[8 + 64];
    uint64_t n64 = nl;
    memcpy(key, &n64, 8); memcpy(key + 8, t->name, nl);
    uint8_t *at = memmem(buf, (size_t)((const char *)t->data - buf), key, 8 + nl);
    cr_assert(at, "%s: info not found", t->name);
    uint8_t *type = at + 8 + nl + 4 + 8 * (size_t)t->n_dims;
    uint32_t was;
    memcpy(&was, type, 4);
    cr_assert_eq(was, LM_GGML_Q4_0);
    uint32_t now = LM_GGML_Q4_K;
    memcpy(type, &now, 4);
    patched++;
  }
  cr_assert_eq(patched, 7, "token_embd and 2 layers x (q, k, ffn_up) are Q4_K, not %d", patched);
  lm_gguf_close(g);
  cr_assert_eq(lm_write_file_atomic(path, buf, len), LM_OK);
  free(buf);
}

/* every value of entry e of q (its rows dequantized) equals the f32 copy's */
static void same_values(const lm_model *q, int64_t e, const float *w) {
  const lm_qmat *Q = &q->qlin[e];
  float *v = malloc(sizeof(float) * Q->rows * Q->cols);
  lm_qmat_dequantize(Q, 0, Q->rows, v);
  for (int64_t k = 0; k < Q->rows * Q->cols; k++)
    cr_assert(v[k] == w[k], "entry %lld value %lld: kept %.9g, f32 copy %.9g", (long long)e, (long long)k, (double)v[k], (double)w[k]);
  free(v);
}

/* Q4_K linears (and mixes of them with Q4_0) are kept as A4 holding the file's values exactly, and
 * generation for generation only gives the f32 copy's logits bit for bit (both run A4); a
 * prompt fed at once the logits of the same tokens fed one by one within float rounding */
Test(gguf_qonly, k_quants_exact) {
  lm_model *m, *full, *q;
  lm_tokenizer *tok;
  char path[64];
  write_kquant_file(path, &m, &tok);
  cr_assert_eq(lm_gguf_model_load(&full, path, -1), LM_OK, "%s", lm_last_error());
  cr_assert_eq(lm_gguf_model_load_qonly(&q, path, -1, 1), LM_OK, "%s", lm_last_error());
  unlink(path);
  for (int64_t l = 0; l < 2; l++) {
    const lm_block_weights *b = &full->w.h[l];
    int64_t e = l * LM_QL_PER_LAYER;
    for (int k = 0; k < LM_QL_PER_LAYER; k++) {
      int a4 = k == LM_QL_QKV || k == LM_QL_FC;   /* Q4_K with Q4_0: A4 (A8 when a Q5_K/Q6_K part is there) */
      cr_assert_eq(q->qlin[e + k].type, a4 ? LM_QW_A4 : LM_QW_Q4_0, "layer %lld entry %d", (long long)l, k);
      cr_assert_eq(full->qlin[e + k].type, q->qlin[e + k].type);
    }
    same_values(q, e + LM_QL_QKV, b->qkv_w);
    same_values(q, e + LM_QL_FC, b->fc_w);
    same_values(q, e + LM_QL_FC_PROJ, b->fc_proj_w);
  }
  cr_assert_eq(q->qlin[LM_QL_EMB(q)].type, LM_QW_A4);
  same_values(q, LM_QL_EMB(q), full->w.wte);
  same_values(q, LM_QL_HEAD(q), lm_model_lm_head(full));

  lm_session *sf, *sq, *sd;
  int32_t ids[45];
  open_both(full, q, &sf, &sq, ids, 45, 3);
  same_logits(sf, sq, ids, 6, "Q4_K");
  lm_session_free(sf); lm_session_free(sq);
  /* 45 tokens at once (quant.c's kernel on 8 rows a call) against one by one */
  cr_assert_eq(lm_session_init(&sq, q, 64), LM_OK, "%s", lm_last_error());
  cr_assert_eq(lm_session_init(&sd, q, 64), LM_OK, "%s", lm_last_error());
  const float *b, *c = NULL;
  cr_assert_eq(lm_session_feed(sq, ids, 45, &b), LM_OK, "%s", lm_last_error());
  for (int i = 0; i < 45; i++) cr_assert_eq(lm_session_feed(sd, ids + i, 1, &c), LM_OK, "%s", lm_last_error());
  double mx = 0, dd = 0;
  for (int v = 0; v < 257; v++) { mx = fmax(mx, fabs(b[v])); dd = fmax(dd, fabs(c[v] - b[v])); }
  cr_assert(mx > 0 && dd <= 1e-3 * mx, "max |prefill - decode| = %g of max |logit| %g", dd, mx);
  lm_session_free(sq); lm_session_free(sd);
  lm_model_free(m); lm_model_free(full); lm_model_free(q); lm_tokenizer_free(tok);
}
