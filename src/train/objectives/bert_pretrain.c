/* bert_pretrain.c — BERT pre-training as a trainer objective: each
 * micro-batch is B examples [CLS] A [SEP] (B [SEP]) drawn from the train
 * stream (nsp.c), corrupted for masked-LM (mlm.c) with masks drawn afresh
 * every time (RoBERTa's dynamic masking), then lm_forward/backward.
 * "mlm+nsp" adds next-sentence prediction; "mlm" alone is RoBERTa's recipe.
 * All draws use the trainer's rng, which checkpoints save, so a resumed run
 * sees the same batches. Validation uses its own fixed seed, so every
 * evaluation scores the same examples. The example builder
 * (lm_bert_examples, declared in train/distill.h) is shared with the
 * distillation objective, which draws its batches the same way. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "model/model.h"
#include "model/heads.h"
#include "tokenizer/tokenizer.h"
#include "train/distill.h"
#include "train/train.h"
#include "train/objectives/objectives.h"

typedef struct {
  lm_bert_examples ex;            /* the job's batch: ranks x the rank's examples */
  lm_rng *rng;
  int rank, ranks;                /* data parallelism (share.c) */
} bert_obj;

void lm_bert_examples_next(lm_bert_examples *e, int from_val, lm_rng *rng, lm_batch *b) {
  const lm_pair_source *src = from_val ? &e->val : &e->train;
  for (int64_t i = 0; i < e->B; i++)
    e->nsp_labels[i] = lm_pair_make(src, rng, e->T, e->nsp, e->ids + i * e->T, e->seg + i * e->T, e->mask + i * e->T);
  lm_mlm_mask(rng, &e->mlm, e->ids, e->mask, e->labels, e->B * e->T);
  *b = (lm_batch){.ids = e->ids, .segments = e->seg, .mask = e->mask, .mlm_labels = e->labels,
                       .nsp_labels = e->nsp ? e->nsp_labels : NULL, .B = e->B, .T = e->T};
}

static float bert_micro(void *self, lm_model *m) {
  bert_obj *o = self;
  lm_batch b;
  lm_bert_examples_next(&o->ex, 0, o->rng, &b);
  return lm_share_step(m, &b, o->rank, o->ranks);
}

static double bert_evaluate(void *self, lm_model *m, int64_t max_batches) {
  bert_obj *o = self;
  if (!o->ex.have_val) return NAN;
  lm_rng r;
  lm_rng_seed(&r, 0x5EEDULL);
  double sum = 0;
  int64_t n = max_batches > 0 ? (max_batches + o->ranks - 1) / o->ranks : 20;   /* the trainer asks for ranks x */
  for (int64_t k = 0; k < n; k++) {
    lm_batch b;
    lm_bert_examples_next(&o->ex, 1, &r, &b);
    sum += lm_share_loss(m, &b, o->ranks);
  }
  return sum / n;
}

static void bert_cursor(void *self, int64_t *epoch, int64_t *index) { (void)self; *epoch = 0; *index = 0; }

void lm_bert_examples_free(lm_bert_examples *e) {
  if (!e) return;
  lm_pair_source_free(&e->train);
  if (e->have_val) lm_pair_source_free(&e->val);
  free(e->special); free(e->ids); free(e->seg); free(e->labels); free(e->nsp_labels); free(e->mask);
  memset(e, 0, sizeof *e);
}

static void bert_free(void *self) {
  bert_obj *o = self;
  if (!o) return;
  lm_bert_examples_free(&o->ex);
  free(o);
}

/* The id of the first of `names` the tokenizer knows, or -1. */
static int64_t find_special(const lm_tokenizer *tok, const char *const *names) {
  for (; *names; names++) {
    int64_t id = lm_tokenizer_token_id(tok, *names);
    if (id >= 0) return id;
  }
  return -1;
}

lm_status lm_bert_examples_init(lm_bert_examples *e, const lm_tokenizer *tok, int64_t V, const lm_stream *train,
                                const lm_stream *val, int64_t B, int64_t T, int nsp, float mlm_prob) {
  memset(e, 0, sizeof *e);
  if (!tok) return lm_error(LM_ERR_ARG, "BERT pre-training needs the tokenizer's special tokens");
  int64_t cls = find_special(tok, (const char *[]){"[CLS]", "<s>", NULL});
  int64_t sep = find_special(tok, (const char *[]){"[SEP]", "</s>", NULL});
  int64_t msk = find_special(tok, (const char *[]){"[MASK]", "<mask>", NULL});
  int64_t pad = find_special(tok, (const char *[]){"[PAD]", "<pad>", NULL});
  if (cls < 0 || sep < 0 || msk < 0 || pad < 0)
    return lm_error(LM_ERR_ARG, "the tokenizer lacks %s: BERT needs [CLS], [SEP], [MASK] and [PAD] (train one with "
                    "'lmkit tokenizer train --special [PAD] --special [CLS] --special [SEP] --special [MASK] ...', or use a bert vocab.txt)",
                    cls < 0 ? "[CLS]" : sep < 0 ? "[SEP]" : msk < 0 ? "[MASK]" : "[PAD]");
  if (T < 5) return lm_error(LM_ERR_ARG, "BERT examples need a context of at least 5 tokens");
  e->nsp = nsp; e->B = B; e->T = T;
  e->special = calloc(V, 1);
  e->ids = malloc(B * T * sizeof(int32_t)); e->seg = malloc(B * T * sizeof(int32_t));
  e->labels = malloc(B * T * sizeof(int32_t)); e->nsp_labels = malloc(B * sizeof(int32_t));
  e->mask = malloc(B * T);
  lm_status st = LM_OK;
  if (!e->special || !e->ids || !e->seg || !e->labels || !e->nsp_labels || !e->mask) st = lm_error(LM_ERR_NOMEM, "out of memory");
  if (!st) {
    int64_t ids[] = {cls, sep, msk, pad, lm_tokenizer_eot(tok),
                     find_special(tok, (const char *[]){"[UNK]", "<unk>", NULL})};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
      if (ids[i] >= 0 && ids[i] < V) e->special[ids[i]] = 1;
    e->mlm = (lm_mlm_opts){.mask_id = (int32_t)msk, .vocab_size = V, .prob = mlm_prob, .special = e->special};
    /* documents longer than a few examples are cut, so "random next" pairs exist in any corpus */
    st = lm_pair_source_init(&e->train, train->ids, train->n, lm_tokenizer_eot(tok), 4 * (uint64_t)T,
                             (int32_t)cls, (int32_t)sep, (int32_t)pad);
  }
  if (!st && val && val->n > 8) {
    st = lm_pair_source_init(&e->val, val->ids, val->n, lm_tokenizer_eot(tok), 4 * (uint64_t)T,
                             (int32_t)cls, (int32_t)sep, (int32_t)pad);
    e->have_val = st == LM_OK;
    st = LM_OK;   /* a validation stream too small for pairs just means no validation */
  }
  if (st) lm_bert_examples_free(e);
  return st;
}

lm_status lm_objective_bert(lm_objective *obj, lm_model *m, const lm_tokenizer *tok, const lm_stream *train,
                            const lm_stream *val, int64_t B, int64_t T, int nsp, float mlm_prob, lm_rng *rng,
                            int rank, int ranks) {
  memset(obj, 0, sizeof *obj);
  bert_obj *o = calloc(1, sizeof *o);
  if (!o) return lm_error(LM_ERR_NOMEM, "out of memory");
  o->rng = rng;
  o->rank = rank; o->ranks = ranks < 1 ? 1 : ranks;
  lm_status st = lm_bert_examples_init(&o->ex, tok, m->cfg.vocab_size, train, val, B * o->ranks, T, nsp, mlm_prob);
  if (st) { free(o); return st; }
  st = lm_model_reserve(m, B, T, 1);
  if (st) { bert_free(o); return st; }
  *obj = (lm_objective){.self = o, .micro = bert_micro, .evaluate = bert_evaluate, .cursor = bert_cursor, .free = bert_free};
  return LM_OK;
}
