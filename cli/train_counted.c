/* train_counted.c — `lmkit train --arch ngram`: a family with a fit hook
 * (family.h) is built by counting its training stream once, not by the
 * trainer's steps. The data is loaded and split exactly as the trainer splits
 * it (lm_streams_load, the last --val-fraction held out), so the validation
 * loss printed here compares with a trained model's; the model directory
 * (config.json, model.safetensors, the family's own files, tokenizer) is
 * written file by file, each atomically. There is nothing to resume: counting
 * is one pass and deterministic. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include "cli.h"
#include "train_counted.h"
#include "base/base.h"
#include "model/model.h"
#include "train/train.h"

int cli_train_counted(lm_model *m, const lm_tokenizer *tok, const lm_train_opts *o) {
  if (o->resume_dir) return cli_error("--resume: a %s model is counted in one pass; there is no run to resume", m->fam->model_type);
  lm_stream train = {0}, val = {0};
  if (lm_streams_load(tok, o->data, o->n_data, o->val_fraction, m->cfg.vocab_size, &train, &val)) return cli_fail();
  int rc = 0;
  double t0 = lm_time_sec();
  if (o->progress) fprintf(stderr, "lmkit train: counting the %s model over %llu tokens\n", m->fam->model_type, (unsigned long long)train.n);
  if (m->fam->fit(m, train.ids, (size_t)train.n)) { rc = cli_fail(); goto done; }
  double loss = NAN;
  int64_t n = 0;
  if (val.n >= 2) {   /* windows of the context, as the trainer's evaluation */
    int64_t T = m->cfg.n_positions < (int64_t)val.n - 1 ? m->cfg.n_positions : (int64_t)val.n - 1, B = 1;
    int32_t *inp = malloc(B * T * sizeof *inp), *tgt = malloc(B * T * sizeof *tgt);
    lm_status st = inp && tgt ? lm_model_reserve(m, B, T, 0) : lm_error(LM_ERR_NOMEM, "out of memory");
    if (!st) st = lm_clm_eval_stream(m, &val, T, B, 0, inp, tgt, &loss, &n);
    free(inp); free(tgt);
    if (st) { rc = cli_fail(); goto done; }
  }
  if (lm_model_save(m, o->out_dir) || lm_tokenizer_save(tok, o->out_dir)) { rc = cli_fail(); goto done; }
  printf("train tokens %llu  val loss %.4f  val tokens %lld  (%.1f s)\n", (unsigned long long)train.n, loss, (long long)n,
         lm_time_sec() - t0);
  if (o->progress) fprintf(stderr, "lmkit train: model saved to %s\n", o->out_dir);
done:
  lm_stream_free(&train);
  lm_stream_free(&val);
  return rc;
}
