/* test_bert.c — the BERT family (src/model/bert.c) without PyTorch:
 * a tiny BERT learns a fixed MLM + NSP batch with AdamW, every head runs
 * forward and backward, bad batches are errors (never crashes), shared layers
 * share storage, and directories round-trip through lm_model_save /
 * lm_model_load, including loading a pre-trained directory with a new head.
 * (Gradients against PyTorch: tests/reference/test_bert.py.) */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "base/base.h"
#include "kernels/kernels.h"
#include "model/heads.h"
#include "model/model.h"

enum { B = 2, T = 12 };

static lm_config tiny(int head) {
  lm_config c;
  lm_config_default(&c, LM_ARCH_BERT);
  c.vocab_size = 40; c.n_positions = 16; c.n_embd = 32; c.n_layer = 2; c.n_head = 4;
  c.head = head; c.num_labels = 3;
  return c;
}

typedef struct {
  int32_t ids[B * T], seg[B * T], mlm[B * T], nsp[B], labels[B * T];
  uint8_t mask[B * T];
} batch_data;

/* sequence 1 is padded in its last 4 positions; ~1/4 of the real tokens carry an MLM label */
static lm_batch make_batch(batch_data *d, int head) {
  lm_rng r;
  lm_rng_seed(&r, 17);
  for (int i = 0; i < B * T; i++) {
    int t = i % T;
    d->mask[i] = !(i / T == 1 && t >= T - 4);
    d->ids[i] = d->mask[i] ? 1 + (int32_t)lm_rng_below(&r, 39) : 0;
    d->seg[i] = d->mask[i] && t >= T / 2;
    d->mlm[i] = d->mask[i] && lm_rng_uniform(&r) < 0.25f ? (int32_t)lm_rng_below(&r, 40) : -1;
    d->labels[i] = d->mask[i] ? (int32_t)lm_rng_below(&r, 3) : -1;
  }
  d->mlm[0] = 5;
  d->nsp[0] = 0; d->nsp[1] = 1;
  lm_batch b = {.ids = d->ids, .segments = d->seg, .mask = d->mask, .B = B, .T = T};
  if (head == LM_HEAD_PRETRAIN) { b.mlm_labels = d->mlm; b.nsp_labels = d->nsp; }
  else if (head == LM_HEAD_QA) { d->labels[0] = 2; d->labels[1] = 5; d->labels[2] = 0; d->labels[3] = 3; b.labels = d->labels; }
  else b.labels = d->labels;
  return b;
}

static void adamw_step(lm_model *m, float *mo, float *ve, int64_t t, float lr) {
  for (int i = 0; i < m->n_info; i++) {
    const lm_param_info *p = &m->info[i];
    adamw_update(m->params + p->offset, m->grads + p->offset, mo + p->offset, ve + p->offset, (int64_t)p->numel, lr,
                 0.9f, 0.999f, 1e-8f, p->decay ? 0.01f : 0.0f, t, 1.0f);
  }
}

Test(bert, mlm_nsp_loss_falls_with_adamw) {
  lm_config c = tiny(LM_HEAD_PRETRAIN);
  lm_model *m;
  cr_assert_eq(lm_model_create(&m, &c, 1), LM_OK, "%s", lm_last_error());
  cr_assert_eq(lm_model_reserve(m, B, T, 1), LM_OK, "%s", lm_last_error());
  batch_data d;
  lm_batch b = make_batch(&d, LM_HEAD_PRETRAIN);
  float *mo = lm_alloc(m->n_params * 4), *ve = lm_alloc(m->n_params * 4);
  float first = 0, last = 0, mlm = 0, nsp = 0;
  for (int s = 1; s <= 30; s++) {
    lm_model_zero_grad(m);
    float loss = lm_forward(m, &b, &mlm, &nsp);
    cr_assert(isfinite(loss), "step %d: %s", s, lm_last_error());
    cr_assert(fabsf(loss - (mlm + nsp)) < 1e-5f);
    lm_backward(m, &b);
    adamw_step(m, mo, ve, s, 3e-3f);
    if (s == 1) first = loss;
    last = loss;
  }
  cr_assert(first > 3.0f, "initial loss %g should be near ln(40) + ln(2)", first);
  cr_assert(last < 0.5f * first, "loss %g -> %g did not fall", first, last);
  lm_free(mo); lm_free(ve);
  lm_model_free(m);
}

/* one forward/backward per fine-tuning head: finite loss near ln(classes), some gradient everywhere it should be */
static void check_head(int head, float expect) {
  lm_config c = tiny(head);
  lm_model *m;
  cr_assert_eq(lm_model_create(&m, &c, 2), LM_OK, "%s", lm_last_error());
  cr_assert_eq(lm_model_reserve(m, B, T, 1), LM_OK, "%s", lm_last_error());
  batch_data d;
  lm_batch b = make_batch(&d, head);
  lm_model_zero_grad(m);
  float mlm = 0, nsp = 0;
  float loss = lm_forward(m, &b, &mlm, &nsp);
  cr_assert(isfinite(loss) && fabsf(loss - expect) < 0.5f, "head %d: loss %g (expected about %g) %s", head, loss, expect,
            lm_last_error());
  cr_assert(isnan(mlm) && isnan(nsp));
  lm_backward(m, &b);
  double g = global_norm(m->grads, (int64_t)m->n_params);
  cr_assert(isfinite(g) && g > 0, "head %d: gradient norm %g", head, g);
  cr_assert_not_null(lm_model_logits(m));
  cr_assert_not_null(lm_model_hidden(m));
  lm_model_free(m);
}

Test(bert, classify_head) { check_head(LM_HEAD_CLASSIFY, logf(3)); }
Test(bert, token_head) { check_head(LM_HEAD_TOKENS, logf(3)); }
Test(bert, qa_head) { check_head(LM_HEAD_QA, logf(10)); }

Test(bert, bad_batches_are_errors) {
  lm_config c = tiny(LM_HEAD_PRETRAIN);
  lm_model *m;
  cr_assert_eq(lm_model_create(&m, &c, 3), LM_OK);
  batch_data d;
  lm_batch b = make_batch(&d, LM_HEAD_PRETRAIN);
  /* before reserve */
  cr_assert_eq(lm_batch_check(m, &b), LM_ERR_ARG);
  cr_assert(strstr(lm_last_error(), "lm_model_reserve"), "%s", lm_last_error());
  cr_assert_eq(lm_model_reserve(m, B, c.n_positions + 1, 1), LM_ERR_RANGE);
  cr_assert_eq(lm_model_reserve(m, B, T, 1), LM_OK);
  cr_assert_eq(lm_batch_check(m, &b), LM_OK, "%s", lm_last_error());
  /* token id >= vocab: an error naming the field, and the forward returns NAN */
  d.ids[7] = 40;
  cr_assert_eq(lm_batch_check(m, &b), LM_ERR_RANGE);
  cr_assert(strstr(lm_last_error(), "ids[7] = 40"), "%s", lm_last_error());
  cr_assert(isnan(lm_forward(m, &b, NULL, NULL)));
  lm_model_zero_grad(m);
  lm_backward(m, &b);   /* after a failed forward: does nothing */
  cr_assert_eq(global_norm(m->grads, (int64_t)m->n_params), 0.0);
  d.ids[7] = -3;
  cr_assert_eq(lm_batch_check(m, &b), LM_ERR_RANGE);
  d.ids[7] = 3;
  /* T longer than the positions, and larger than reserved */
  lm_batch big = b;
  big.T = c.n_positions + 4;
  cr_assert_eq(lm_batch_check(m, &big), LM_ERR_RANGE);
  cr_assert(strstr(lm_last_error(), "max_position_embeddings"), "%s", lm_last_error());
  cr_assert(isnan(lm_forward(m, &big, NULL, NULL)));
  big = b; big.B = B + 1;
  cr_assert_eq(lm_batch_check(m, &big), LM_ERR_ARG);
  /* segments, MLM and NSP labels out of range */
  d.seg[3] = 2;
  cr_assert_eq(lm_batch_check(m, &b), LM_ERR_RANGE);
  cr_assert(strstr(lm_last_error(), "segments[3]"), "%s", lm_last_error());
  d.seg[3] = 0;
  d.mlm[4] = 40;
  cr_assert_eq(lm_batch_check(m, &b), LM_ERR_RANGE);
  d.mlm[4] = -1;
  d.nsp[1] = 2;
  cr_assert_eq(lm_batch_check(m, &b), LM_ERR_RANGE);
  d.nsp[1] = 1;
  /* task labels for a pre-training head */
  b.labels = d.labels;
  cr_assert_eq(lm_batch_check(m, &b), LM_ERR_ARG);
  b.labels = NULL;
  cr_assert(isfinite(lm_forward(m, &b, NULL, NULL)), "%s", lm_last_error());
  lm_model_free(m);

  /* QA: a span on padding, half a span, a position past T */
  c = tiny(LM_HEAD_QA);
  cr_assert_eq(lm_model_create(&m, &c, 3), LM_OK);
  cr_assert_eq(lm_model_reserve(m, B, T, 0), LM_OK);
  b = make_batch(&d, LM_HEAD_QA);
  cr_assert_eq(lm_batch_check(m, &b), LM_OK, "%s", lm_last_error());
  d.labels[3] = T - 1;   /* sequence 1 is padding there */
  cr_assert_eq(lm_batch_check(m, &b), LM_ERR_ARG);
  cr_assert(strstr(lm_last_error(), "padding"), "%s", lm_last_error());
  d.labels[3] = -1;
  cr_assert_eq(lm_batch_check(m, &b), LM_ERR_ARG);
  d.labels[3] = T;
  cr_assert_eq(lm_batch_check(m, &b), LM_ERR_RANGE);
  d.labels[3] = 3;
  b.mlm_labels = d.mlm;
  cr_assert_eq(lm_batch_check(m, &b), LM_ERR_ARG);
  lm_model_free(m);

  /* a GPT model's LM head takes no MLM labels */
  lm_config g;
  lm_config_default(&g, LM_ARCH_GPT2);
  g.vocab_size = 40; g.n_positions = 16; g.n_embd = 32; g.n_layer = 1; g.n_head = 4;
  cr_assert_eq(lm_model_create(&m, &g, 3), LM_OK);
  cr_assert_eq(lm_model_reserve(m, B, T, 0), LM_OK);
  lm_batch gb = {.ids = d.ids, .mlm_labels = d.mlm, .B = B, .T = T};
  cr_assert_eq(lm_batch_check(m, &gb), LM_ERR_ARG);
  cr_assert(strstr(lm_last_error(), "head is lm"), "%s", lm_last_error());
  lm_model_free(m);
}

Test(bert, shared_layers_share_storage_and_sum_gradients) {
  lm_config c = tiny(LM_HEAD_PRETRAIN), c1 = c;
  c.n_layer = 3; c.share_layers = 1; c1.n_layer = 1;
  lm_model *m, *m1;
  cr_assert_eq(lm_model_create(&m, &c, 4), LM_OK, "%s", lm_last_error());
  cr_assert_eq(lm_model_create(&m1, &c1, 4), LM_OK);
  cr_assert_eq(lm_model_num_params(m), lm_model_num_params(m1));
  cr_assert_null(lm_model_find_param(m, "h.1.attn.c_attn.weight"));
  cr_assert_eq(lm_model_reserve(m, B, T, 1), LM_OK);
  cr_assert_eq(m->w.h[2].qkv_w, m->w.h[0].qkv_w);
  cr_assert_eq(m->g.h[1].fc_proj_b, m->g.h[0].fc_proj_b);
  batch_data d;
  lm_batch b = make_batch(&d, LM_HEAD_PRETRAIN);
  lm_model_zero_grad(m);
  cr_assert(isfinite(lm_forward(m, &b, NULL, NULL)));
  lm_backward(m, &b);
  cr_assert(global_norm(m->g.h[0].qkv_w, 3 * 32 * 32) > 0);
  lm_model_free(m); lm_model_free(m1);
}

static char g_dir[64];
static void rm_dir(const char *dir) {
  const char *files[] = {"config.json", "model.safetensors"};
  for (int i = 0; i < 2; i++) {
    char *p = lm_path_join(dir, files[i]);
    unlink(p);
    free(p);
  }
  rmdir(dir);
}

Test(bert, save_load_round_trip_and_new_head) {
  strcpy(g_dir, "/tmp/lm_bert_test_XXXXXX");
  cr_assert_not_null(mkdtemp(g_dir));
  lm_config c = tiny(LM_HEAD_PRETRAIN);
  lm_model *m, *r;
  cr_assert_eq(lm_model_create(&m, &c, 5), LM_OK);
  /* BERT initialisation: the padding row is zero, norms one */
  cr_assert_eq(m->w.wte[c.pad_token_id * c.n_embd + 3], 0.0f);
  cr_assert_eq(m->params[lm_model_find_param(m, "emb_ln.weight")->offset], 1.0f);
  cr_assert_eq(lm_model_save(m, g_dir), LM_OK, "%s", lm_last_error());
  cr_assert_eq(lm_model_load(&r, g_dir), LM_OK, "%s", lm_last_error());
  cr_assert_eq(lm_model_config(r)->arch, LM_ARCH_BERT);
  cr_assert_eq(r->n_params, m->n_params);
  cr_assert_eq(memcmp(r->params, m->params, m->n_params * sizeof(float)), 0);
  lm_model_free(r);
  /* the pre-trained directory as a 4-class classifier: encoder and pooler loaded, classifier initialised */
  cr_assert_eq(lm_model_load_head(&r, g_dir, LM_HEAD_CLASSIFY, 4, 9), LM_OK, "%s", lm_last_error());
  cr_assert_eq(lm_model_config(r)->num_labels, 4);
  const char *same[] = {"wte.weight", "h.1.mlp.c_fc.weight", "pooler.weight", "emb_ln.bias"};
  for (int i = 0; i < 4; i++) {
    const lm_param_info *a = lm_model_find_param(m, same[i]), *q = lm_model_find_param(r, same[i]);
    cr_assert(a && q && a->numel == q->numel);
    cr_assert_eq(memcmp(m->params + a->offset, r->params + q->offset, a->numel * 4), 0, "%s", same[i]);
  }
  const lm_param_info *cw = lm_model_find_param(r, "classifier.weight");
  cr_assert(cw && cw->shape[0] == 4 && cw->shape[1] == 32);
  cr_assert(r->params[cw->offset] != 0.0f);
  cr_assert_null(lm_model_find_param(r, "mlm.dense.weight"));
  lm_model_free(m);
  lm_model_free(r);
  rm_dir(g_dir);
}
