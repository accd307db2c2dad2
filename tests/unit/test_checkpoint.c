/* test_checkpoint.c — activation checkpointing (lm_model_set_checkpointing) gives the same loss and
 * the same gradients, bit for bit, as keeping every block's activations: GPT-2 (pre-LN), a Llama
 * with grouped-query attention, RoPE, a sliding window and attention dropout, a post-LN BERT with a
 * padding mask and dropout everywhere, and packed examples; and it keeps less memory. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include "base/base.h"
#include "model/model.h"

typedef struct { float loss; float *grads; size_t arena; } run_result;

/* one forward + backward of a fresh model (seeded weights) on fixed data, with or without
 * checkpointing; dropout masks come from an rng seeded the same for both */
static run_result run(const lm_config *c, int checkpoint, const uint8_t *mask, const int32_t *starts) {
  lm_model *m;
  cr_assert_eq(lm_model_create(&m, c, 11), LM_OK, "%s", lm_last_error());
  int64_t B = 2, T = 20;
  lm_model_set_checkpointing(m, checkpoint);
  cr_assert_eq(lm_model_reserve(m, B, T, 1), LM_OK, "%s", lm_last_error());
  int32_t ids[40], tg[40];
  lm_rng r;
  lm_rng_seed(&r, 4);
  for (int i = 0; i < 40; i++) ids[i] = (int32_t)lm_rng_below(&r, (uint32_t)c->vocab_size);
  for (int i = 0; i < 40; i++) tg[i] = ids[(i + 1) % 40];
  lm_rng drop;
  lm_rng_seed(&drop, 9);
  lm_model_set_training(m, &drop);
  lm_model_zero_grad(m);
  lm_batch b = {.ids = ids, .targets = c->causal ? tg : NULL, .mask = mask, .starts = starts, .B = B, .T = T};
  if (!c->causal) b.mlm_labels = tg;   /* MLM: every position predicts a token */
  run_result res = {lm_forward(m, &b, NULL, NULL), NULL, m->acts.arena_floats};
  lm_backward(m, &b);
  res.grads = malloc(m->n_params * sizeof(float));
  memcpy(res.grads, m->grads, m->n_params * sizeof(float));
  lm_model_free(m);
  return res;
}

static void same(const lm_config *c, const uint8_t *mask, const int32_t *starts, const char *what) {
  run_result a = run(c, 0, mask, starts), b = run(c, 1, mask, starts);
  lm_model *m;
  cr_assert_eq(lm_model_create(&m, c, 11), LM_OK);
  size_t n = m->n_params;
  lm_model_free(m);
  cr_assert(a.loss == a.loss && a.loss == b.loss, "%s: loss %.9g vs %.9g", what, a.loss, b.loss);
  size_t diff = 0;
  for (size_t i = 0; i < n; i++) diff += memcmp(&a.grads[i], &b.grads[i], sizeof(float)) != 0;
  cr_expect_eq(diff, 0, "%s: %zu of %zu gradients differ with checkpointing", what, diff, n);
  cr_expect(b.arena < a.arena, "%s: checkpointing keeps %zu floats, the plain path %zu", what, b.arena, a.arena);
  free(a.grads); free(b.grads);
}

Test(checkpoint, gpt2_bit_identical) {
  lm_config c;
  lm_config_default(&c, LM_ARCH_GPT2);
  c.vocab_size = 60; c.n_positions = 32; c.n_embd = 32; c.n_layer = 3; c.n_head = 4;
  same(&c, NULL, NULL, "gpt2");
  int32_t starts[40];   /* packed: examples of 7, 8 and 5 tokens in row 0, one of 20 in row 1 */
  for (int t = 0; t < 20; t++) { starts[t] = t < 7 ? 0 : t < 15 ? 7 : 15; starts[20 + t] = 0; }
  same(&c, NULL, starts, "gpt2 packed");
}

Test(checkpoint, llama_gqa_window_dropout_bit_identical) {
  lm_config c;
  lm_config_default(&c, LM_ARCH_MISTRAL);
  c.vocab_size = 60; c.n_positions = 32; c.n_embd = 32; c.n_layer = 3; c.n_head = 4; c.n_kv_head = 2;
  c.n_inner = 48; c.sliding_window = 6; c.attn_pdrop = 0.2f;
  same(&c, NULL, NULL, "mistral");
}

Test(checkpoint, bert_post_ln_mask_dropout_bit_identical) {
  lm_config c;
  lm_config_default(&c, LM_ARCH_BERT);
  c.vocab_size = 60; c.n_positions = 32; c.n_embd = 32; c.n_layer = 3; c.n_head = 4; c.n_inner = 64;
  c.head = LM_HEAD_MLM;
  c.embd_pdrop = c.attn_pdrop = c.resid_pdrop = 0.1f;
  uint8_t mask[40];
  for (int i = 0; i < 40; i++) mask[i] = i < 33;   /* row 1 padded after 13 tokens */
  same(&c, mask, NULL, "bert");
}
