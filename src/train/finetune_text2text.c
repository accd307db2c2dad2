/* finetune_text2text.c — `lmkit finetune --task text2text` (declarations and
 * the formats in text2text.h, docs/finetune.md).
 *
 * One example is (input, target). The encoder reads the input + EOS, cut to
 * the context with EOS kept last; the decoder reads [start, y0 .. y(n-2)]
 * and is taught y0 .. y(n-1) (the target + EOS) by cross-entropy, averaged
 * over the target tokens of a batch as Hugging Face's T5/BART losses do
 * (labels -1 on padding). That is the loss of span corruption with padding
 * (lm_forward's LM head over an encoder-decoder batch: enc_ids, enc_mask,
 * targets), which tests/reference/test_t5.py checks against PyTorch with a
 * padded encoder and ignored labels.
 *
 * The reader and exact match are in text2text_data.c. Scoring generates: each eval input is encoded once and decoded greedily,
 * by sampling or by beam search (lm_t2t_generate: the same function `lmkit
 * predict` prints with, so its outputs equal the evaluation's), the output
 * is compared with the target by exact match of whitespace-normalised
 * strings, and by ROUGE-L (src/eval/rouge.c) when the eval targets average
 * more than LM_T2T_ROUGE_WORDS words or when asked. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "eval/rouge.h"
#include "infer/beam.h"
#include "infer/encdec.h"
#include "infer/infer.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "train/text2text.h"

/* ------------------------------------------------------------------ encoding */

lm_status lm_t2t_special_ids(const lm_config *cfg, const lm_tokenizer *tok, lm_t2t_special *sp) {
  if (cfg->n_enc_layer <= 0 || cfg->head != LM_HEAD_LM)
    return lm_error(LM_ERR_UNSUPPORTED, "text-to-text needs an encoder-decoder with an LM head (t5, bart); this is a %s "
                    "model (for a decoder, use 'lmkit sft' with prompt/completion pairs)", lm_arch_name(cfg->arch));
  int64_t eos = cfg->eos_token_id, V = cfg->vocab_size;
  if ((eos < 0 || eos >= V) && tok) eos = lm_tokenizer_eot(tok);
  if (eos < 0 || eos >= V)
    return lm_error(LM_ERR_ARG, "the model has no end-of-sequence token (eos_token_id) and the tokenizer no end of text: "
                    "targets must end with one");
  if (cfg->decoder_start_token_id < 0 || cfg->decoder_start_token_id >= V)
    return lm_error(LM_ERR_ARG, "the model's decoder_start_token_id %lld is not in its vocabulary of %lld",
                    (long long)cfg->decoder_start_token_id, (long long)V);
  sp->eos = (int32_t)eos;
  sp->start = (int32_t)cfg->decoder_start_token_id;
  sp->pad = cfg->pad_token_id >= 0 && cfg->pad_token_id < V ? (int32_t)cfg->pad_token_id : sp->start;
  return LM_OK;
}

lm_status lm_t2t_encode_text(const lm_tokenizer *tok, const char *text, int32_t eos, int64_t max_len, int32_t *ids,
                             int64_t *n, int *cut) {
  uint32_t *t = NULL; size_t k = 0;
  *n = 0; *cut = 0;
  if (max_len < 1) return lm_error(LM_ERR_ARG, "a sequence needs room for at least its end token");
  lm_status st = lm_tokenizer_encode(tok, text, strlen(text), LM_ENCODE_SPECIAL, &t, &k);
  if (st) return st;
  int64_t m = (int64_t)k;
  if (m > 0 && t[m - 1] == (uint32_t)eos) m--;   /* a tokenizer that appends EOS itself (T5's post-processor) */
  if (m > max_len - 1) { m = max_len - 1; *cut = 1; }
  for (int64_t i = 0; i < m; i++) ids[i] = (int32_t)t[i];
  ids[m] = eos;
  *n = m + 1;
  free(t);
  return LM_OK;
}

void lm_t2t_data_free(lm_t2t_data *d) {
  if (!d) return;
  free(d->src); free(d->soff); free(d->tgt); free(d->toff);
  memset(d, 0, sizeof *d);
}

static double words(const char *s) {
  double w = 0;
  for (int in = 0; *s; s++) {
    int sp = isspace((unsigned char)*s);
    if (!sp && !in) w++;
    in = !sp;
  }
  return w;
}

/* appends one encoded text to (*buf, off[i+1]) */
static lm_status append(const lm_tokenizer *tok, const char *text, int32_t eos, int64_t max_len, int32_t **buf,
                        int64_t *cap, int64_t *off, int64_t i, int64_t *longest, int64_t *cuts) {
  if (off[i] + max_len > *cap) {
    int64_t c = *cap ? *cap : 4096;
    while (c < off[i] + max_len) c *= 2;
    int32_t *g = lm_xrealloc(*buf, (size_t)c * sizeof *g);
    if (!g) return LM_ERR_NOMEM;
    *buf = g; *cap = c;
  }
  int64_t n; int cut;
  lm_status st = lm_t2t_encode_text(tok, text, eos, max_len, *buf + off[i], &n, &cut);
  if (st) return st;
  off[i + 1] = off[i] + n;
  if (n > *longest) *longest = n;
  *cuts += cut;
  return LM_OK;
}

lm_status lm_t2t_encode(lm_t2t_data *d, const lm_tokenizer *tok, const lm_t2t_special *sp, const lm_t2t_rows *r,
                        int64_t max_src, int64_t max_tgt) {
  memset(d, 0, sizeof *d);
  int64_t scap = 0, tcap = 0;
  d->n = r->n;
  d->soff = lm_xmalloc((size_t)(r->n + 1) * sizeof *d->soff);
  d->toff = lm_xmalloc((size_t)(r->n + 1) * sizeof *d->toff);
  lm_status st = d->soff && d->toff ? LM_OK : LM_ERR_NOMEM;
  if (!st) d->soff[0] = d->toff[0] = 0;
  double w = 0;
  for (int64_t i = 0; i < r->n && !st; i++) {
    st = append(tok, r->inputs[i], sp->eos, max_src, &d->src, &scap, d->soff, i, &d->S, &d->n_src_cut);
    if (!st) st = append(tok, r->targets[i], sp->eos, max_tgt, &d->tgt, &tcap, d->toff, i, &d->T, &d->n_tgt_cut);
    if (st) lm_error_prefix(st, "line %lld", (long long)r->lines[i]);
    w += words(r->targets[i]);
  }
  d->mean_target_words = r->n ? w / (double)r->n : 0;
  if (st) lm_t2t_data_free(d);
  return st;
}

void lm_t2t_fill(const lm_t2t_data *d, const lm_t2t_special *sp, const int64_t *idx, int64_t nb, int32_t *enc,
                 uint8_t *emask, int32_t *dec, int32_t *labels, lm_batch *b) {
  int64_t S = 1, T = 1;
  for (int64_t k = 0; k < nb; k++) {
    int64_t i = idx[k], s = d->soff[i + 1] - d->soff[i], t = d->toff[i + 1] - d->toff[i];
    if (s > S) S = s;
    if (t > T) T = t;
  }
  for (int64_t k = 0; k < nb; k++) {
    int64_t i = idx[k], s = d->soff[i + 1] - d->soff[i], t = d->toff[i + 1] - d->toff[i];
    const int32_t *x = d->src + d->soff[i], *y = d->tgt + d->toff[i];
    for (int64_t j = 0; j < S; j++) {
      enc[k * S + j] = j < s ? x[j] : sp->pad;
      emask[k * S + j] = j < s;
    }
    for (int64_t j = 0; j < T; j++) {   /* the decoder reads the target shifted right after its start token */
      dec[k * T + j] = j == 0 ? sp->start : j < t ? y[j - 1] : sp->pad;
      labels[k * T + j] = j < t ? y[j] : -1;
    }
  }
  *b = (lm_batch){.ids = dec, .targets = labels, .enc_ids = enc, .enc_mask = emask, .B = nb, .T = T, .S = S};
}

/* ------------------------------------------------------------------ scoring */

lm_status lm_t2t_generate(const lm_model *m, const lm_tokenizer *tok, const int32_t *ids, int64_t n,
                          const lm_gen_opts *g, char **text) {
  *text = NULL;
  const lm_config *c = &m->cfg;
  int64_t max_new = g->max_tokens < c->n_positions - 1 ? g->max_tokens : c->n_positions - 1;
  int32_t eos = (int32_t)c->eos_token_id;
  if (eos < 0) eos = (int32_t)lm_tokenizer_eot(tok);
  int32_t ends[1 + LM_MAX_EOS + 64];
  int n_end = 0;
  if (g->stop_at_eot && eos >= 0) ends[n_end++] = eos;
  for (int j = 0; j < g->n_stop_tokens && n_end < (int)(sizeof ends / sizeof *ends); j++) ends[n_end++] = g->stop_tokens[j];
  if (max_new < 1) return lm_error(LM_ERR_ARG, "nothing to generate: max tokens < 1");
  int32_t *out = NULL;
  int64_t k = 0;
  lm_status st = LM_OK;
  if (g->beams >= 1) {   /* beam search over clones of one encoding */
    lm_beam_model *bm = NULL;
    lm_beam_ops ops;
    const float *first;
    int32_t start = (int32_t)c->decoder_start_token_id;
    lm_beam_opts bo = {.beams = g->beams, .length_penalty = g->length_penalty, .early_stopping = g->early_stopping,
                       .no_repeat_ngram = g->no_repeat_ngram, .max_new = max_new, .eos = ends, .n_eos = n_end};
    st = lm_beam_encdec_init(&bm, m, g->beams, ids, n, max_new, &ops, &first);
    if (!st) st = lm_beam_search(&ops, first, &start, 1, &bo, &out, &k, NULL);
    lm_beam_model_free(bm);
  } else {               /* greedy (temperature 0) or sampling */
    lm_encdec *e = NULL;
    lm_sampler smp;
    const float *logits;
    if (!(out = malloc((size_t)max_new * sizeof *out))) return lm_error(LM_ERR_NOMEM, "out of memory");
    st = lm_encdec_init(&e, m, ids, n, max_new);
    if (!st && (st = lm_sampler_init(&smp, g, c->vocab_size))) { lm_encdec_free(e); e = NULL; }
    if (!st) {
      st = lm_encdec_step(e, (int32_t)c->decoder_start_token_id, &logits);
      while (!st && k < max_new) {
        out[k++] = lm_sampler_pick(&smp, logits);
        if (k == max_new) break;
        int end = 0;
        for (int j = 0; j < n_end && !end; j++) end = ends[j] == out[k - 1];
        if (end) break;
        st = lm_encdec_step(e, out[k - 1], &logits);
      }
      lm_sampler_free(&smp);
      lm_encdec_free(e);
    }
  }
  for (int j = 0; j < n_end && k > 0; j++)   /* the end token is not part of the answer */
    if (ends[j] == out[k - 1]) { k--; break; }
  size_t len;
  if (!st) st = lm_tokenizer_decode(tok, (const uint32_t *)out, (size_t)k, text, &len);
  free(out);
  return st;
}

/* lm_t2t_evaluate; reserve 0: the model is already reserved for (B, the longest of d) */
static lm_status score(lm_model *m, const lm_tokenizer *tok, const lm_t2t_data *d, const lm_t2t_rows *rows,
                       const lm_t2t_special *sp, const lm_t2t_eval_opts *o, int64_t B, lm_t2t_scores *s, char ***preds,
                       int reserve) {
  s->n = d->n; s->loss = s->exact_match = s->rouge_l = NAN;
  if (preds) *preds = NULL;
  if (d->n < 1) return LM_OK;
  int64_t L = d->S > d->T ? d->S : d->T;
  int64_t *idx = lm_xmalloc((size_t)B * sizeof *idx);
  int32_t *enc = lm_xmalloc((size_t)(B * d->S) * sizeof *enc), *dec = lm_xmalloc((size_t)(B * d->T) * sizeof *dec);
  int32_t *lab = lm_xmalloc((size_t)(B * d->T) * sizeof *lab);
  uint8_t *emask = lm_xmalloc((size_t)(B * d->S));
  char **out = calloc((size_t)d->n, sizeof *out);
  lm_status st = idx && enc && dec && lab && emask && out ? LM_OK : lm_error(LM_ERR_NOMEM, "out of memory");
  if (!st && reserve) st = lm_model_reserve(m, B, L, 0);
  double sum = 0, em = 0, rl = 0;
  int64_t ntok = 0;
  for (int64_t i0 = 0; i0 < d->n && !st; i0 += B) {   /* the teacher-forced loss, weighted by target tokens */
    int64_t nb = d->n - i0 < B ? d->n - i0 : B, nt = 0;
    for (int64_t k = 0; k < nb; k++) { idx[k] = i0 + k; nt += d->toff[i0 + k + 1] - d->toff[i0 + k]; }
    lm_batch b;
    lm_t2t_fill(d, sp, idx, nb, enc, emask, dec, lab, &b);
    if ((st = lm_batch_check(m, &b))) break;
    sum += (double)lm_forward(m, &b, NULL, NULL) * (double)nt;
    ntok += nt;
  }
  int rouge = o->rouge > 0 || (o->rouge < 0 && d->mean_target_words > LM_T2T_ROUGE_WORDS);
  lm_progress pg;
  if (o->progress && !st) lm_progress_start(&pg, "eval", d->n);
  for (int64_t i = 0; i < d->n && !st; i++) {   /* decoding, scored against the target text */
    st = lm_t2t_generate(m, tok, d->src + d->soff[i], d->soff[i + 1] - d->soff[i], &o->gen, &out[i]);
    if (st) break;
    em += lm_t2t_exact_match(out[i], rows->targets[i]);
    if (rouge) {
      double f = lm_rouge_l(rows->targets[i], out[i], NULL, NULL);
      if (f < 0) st = lm_error(LM_ERR_NOMEM, "out of memory");
      rl += f;
    }
    if (o->progress) lm_progress_update(&pg, i + 1, NULL);
  }
  if (o->progress && !st) lm_progress_finish(&pg, NULL);
  if (!st) {
    s->loss = ntok ? sum / (double)ntok : NAN;
    s->exact_match = em / (double)d->n;
    if (rouge) s->rouge_l = rl / (double)d->n;
  }
  if (!st && preds) { *preds = out; out = NULL; }
  if (out) { for (int64_t i = 0; i < d->n; i++) free(out[i]); free(out); }
  free(idx); free(enc); free(dec); free(lab); free(emask);
  return st;
}

lm_status lm_t2t_evaluate(lm_model *m, const lm_tokenizer *tok, const lm_t2t_data *d, const lm_t2t_rows *rows,
                          const lm_t2t_special *sp, const lm_t2t_eval_opts *o, int64_t B, lm_t2t_scores *s,
                          char ***preds) {
  return score(m, tok, d, rows, sp, o, B, s, preds, 1);
}

/* ------------------------------------------------------------------ objective */

typedef struct {
  const lm_t2t_data *train, *eval;
  const lm_t2t_rows *eval_rows;
  const lm_tokenizer *tok;
  lm_t2t_special sp;
  lm_t2t_eval_opts eo;
  int64_t B, L;
  lm_epochs order;
  int64_t *idx;
  int32_t *enc, *dec, *labels;
  uint8_t *emask;
  lm_t2t_scores last;
} t2t_obj;

static float t2t_micro(void *self, lm_model *m) {
  t2t_obj *o = self;
  for (int64_t k = 0; k < o->B; k++) o->idx[k] = lm_epochs_next(&o->order);
  lm_batch b;
  lm_t2t_fill(o->train, &o->sp, o->idx, o->B, o->enc, o->emask, o->dec, o->labels, &b);
  float loss = lm_forward(m, &b, NULL, NULL);
  lm_backward(m, &b);
  return loss;
}

static double t2t_evaluate(void *self, lm_model *m, int64_t max_batches) {
  (void)max_batches;   /* the eval set is scored whole, so evaluations compare */
  t2t_obj *o = self;
  if (!o->eval) return NAN;
  lm_t2t_eval_opts eo = o->eo;
  eo.progress = 0;
  lm_t2t_scores s;
  if (score(m, o->tok, o->eval, o->eval_rows, &o->sp, &eo, o->B, &s, NULL, 0)) { o->last.exact_match = NAN; return NAN; }
  o->last = s;
  return s.loss;
}

static int t2t_eval_fields(void *self, char *buf, size_t n) {
  t2t_obj *o = self;
  if (isnan(o->last.exact_match)) return 0;
  if (isnan(o->last.rouge_l)) return snprintf(buf, n, "\"val_exact_match\": %.6f", o->last.exact_match);
  return snprintf(buf, n, "\"val_exact_match\": %.6f, \"val_rouge_l\": %.6f", o->last.exact_match, o->last.rouge_l);
}

static void t2t_cursor(void *self, int64_t *epoch, int64_t *index) {
  t2t_obj *o = self;
  *epoch = o->order.epoch; *index = o->order.index;
}

static void t2t_free(void *self) {
  t2t_obj *o = self;
  if (!o) return;
  lm_epochs_free(&o->order);
  free(o->idx); free(o->enc); free(o->dec); free(o->labels); free(o->emask);
  free(o);
}

lm_status lm_objective_t2t(lm_objective *obj, lm_model *m, const lm_tokenizer *tok, const lm_t2t_data *train,
                           const lm_t2t_data *eval, const lm_t2t_rows *eval_rows, const lm_t2t_special *sp,
                           const lm_t2t_eval_opts *eo, int64_t B, uint64_t seed, const int64_t *cursor) {
  memset(obj, 0, sizeof *obj);
  if (!train || train->n < 1) return lm_error(LM_ERR_ARG, "no training examples");
  if (B < 1) return lm_error(LM_ERR_ARG, "batch must be positive");
  t2t_obj *o = calloc(1, sizeof *o);
  if (!o) return lm_error(LM_ERR_NOMEM, "out of memory");
  *o = (t2t_obj){.train = train, .eval = eval && eval->n ? eval : NULL, .eval_rows = eval_rows, .tok = tok, .sp = *sp,
                 .eo = *eo, .B = B};
  o->last.exact_match = o->last.rouge_l = NAN;
  /* one reservation for training and the evaluation's loss */
  int64_t S = train->S, T = train->T;
  if (o->eval && o->eval->S > S) S = o->eval->S;
  if (o->eval && o->eval->T > T) T = o->eval->T;
  o->L = S > T ? S : T;
  o->idx = lm_xmalloc((size_t)B * sizeof *o->idx);
  o->enc = lm_xmalloc((size_t)(B * S) * sizeof *o->enc);
  o->emask = lm_xmalloc((size_t)(B * S));
  o->dec = lm_xmalloc((size_t)(B * T) * sizeof *o->dec);
  o->labels = lm_xmalloc((size_t)(B * T) * sizeof *o->labels);
  lm_status st = o->idx && o->enc && o->emask && o->dec && o->labels ? LM_OK : LM_ERR_NOMEM;
  if (!st) st = lm_epochs_init(&o->order, train->n, seed, 0x7E47ULL, cursor);
  if (!st) st = lm_model_reserve(m, B, o->L, 1);
  if (st) { t2t_free(o); return st; }
  *obj = (lm_objective){.self = o, .micro = t2t_micro, .evaluate = t2t_evaluate, .cursor = t2t_cursor, .free = t2t_free,
                        .eval_fields = t2t_eval_fields};
  return LM_OK;
}

/* ------------------------------------------------------------------ driver */

typedef struct {
  const lm_t2t_data *train, *eval;
  const lm_t2t_rows *eval_rows;
  const lm_t2t_special *sp;
  const lm_t2t_eval_opts *eo;
} t2t_ctx;

static lm_status factory(lm_objective *obj, lm_model *m, const lm_tokenizer *tok, const lm_train_opts *o, lm_rng *rng,
                         const int64_t *cursor, void *ctx) {
  (void)rng;
  t2t_ctx *c = ctx;
  return lm_objective_t2t(obj, m, tok, c->train, c->eval, c->eval_rows, c->sp, c->eo, o->batch, o->seed, cursor);
}

static lm_status read_encode(const char *path, const lm_tokenizer *tok, const lm_t2t_special *sp, int64_t max_src,
                             int64_t max_tgt, lm_t2t_rows *r, lm_t2t_data *d) {
  lm_status st = lm_t2t_read(path, r);
  if (!st && (st = lm_t2t_encode(d, tok, sp, r, max_src, max_tgt))) lm_error_prefix(st, "%s", path);
  return st;
}

static lm_status write_preds(const char *dir, char **preds, int64_t n) {
  char *path = lm_path_join(dir, "eval_predictions.txt");
  FILE *f = path ? fopen(path, "w") : NULL;
  lm_status st = f ? LM_OK : lm_error(LM_ERR_IO, "%s: cannot write", path ? path : dir);
  for (int64_t i = 0; i < n && f; i++) {   /* one line per output: a line break inside one is a space */
    for (const char *p = preds[i]; *p; p++) fputc(*p == '\n' || *p == '\r' ? ' ' : *p, f);
    fputc('\n', f);
  }
  if (f && fclose(f)) st = lm_error(LM_ERR_IO, "%s: cannot write", path);
  free(path);
  return st;
}

lm_status lm_finetune_text2text(const lm_finetune_opts *fo, int64_t max_target, const lm_t2t_eval_opts *eo_in,
                                lm_t2t_result *res) {
  memset(res, 0, sizeof *res);
  res->eval.loss = res->eval.exact_match = res->eval.rouge_l = NAN;
  lm_tokenizer *tok = NULL;
  lm_model *m = NULL;
  lm_t2t_rows trows = {0}, erows = {0};
  lm_t2t_data train = {0}, eval = {0};
  lm_t2t_special sp;
  lm_t2t_eval_opts eo = *eo_in;
  char **preds = NULL, *mpath = NULL;
  lm_config cfg;
  int64_t context;
  lm_status st = lm_finetune_setup(fo, LM_HEAD_LM, "text-to-text", 2, &tok, &context, &cfg);
  if (st) return st;
  if (max_target < 2) { st = lm_error(LM_ERR_ARG, "the target limit must be at least 2 tokens"); goto done; }
  if (max_target > cfg.n_positions) max_target = cfg.n_positions;
  if ((st = lm_t2t_special_ids(&cfg, tok, &sp))) { lm_error_prefix(st, "%s", fo->model_dir); goto done; }
  if ((st = read_encode(fo->train_path, tok, &sp, context, max_target, &trows, &train))) goto done;
  if (fo->eval_path && (st = read_encode(fo->eval_path, tok, &sp, context, max_target, &erows, &eval))) goto done;
  if (eo.gen.max_tokens <= 0) eo.gen.max_tokens = train.T > eval.T ? train.T : eval.T;   /* the longest target, EOS included */
  if ((st = lm_finetune_load(&m, fo, LM_HEAD_LM, 0))) goto done;

  lm_train_opts o;
  lm_finetune_train_opts(fo, train.n, train.S > train.T ? train.S : train.T, &o);
  o.objective = "text2text";
  if (o.steps < 1) { st = lm_error(LM_ERR_ARG, "nothing to train: 0 epochs and no --steps"); goto done; }
  t2t_ctx ctx = {&train, fo->eval_path ? &eval : NULL, &erows, &sp, &eo};
  if ((st = lm_mkdir_p(fo->out_dir))) goto done;
  if ((st = lm_train_run(m, tok, &o, factory, &ctx, NULL, NULL))) goto done;

  int rouge = eo.rouge > 0 || (eo.rouge < 0 && eval.mean_target_words > LM_T2T_ROUGE_WORDS);
  if (fo->eval_path) {
    if ((st = lm_t2t_evaluate(m, tok, &eval, &erows, &sp, &eo, fo->batch, &res->eval, &preds))) goto done;
    if ((st = write_preds(fo->out_dir, preds, eval.n))) goto done;
    FILE *f = lm_finetune_open_metrics(fo->out_dir, &mpath);
    if (!f) { st = mpath ? LM_ERR_IO : LM_ERR_NOMEM; goto done; }
    fprintf(f, "{\"step\": %lld, \"eval_loss\": %.9g, \"eval_exact_match\": %.6f", (long long)o.steps, res->eval.loss,
            res->eval.exact_match);
    if (rouge) fprintf(f, ", \"eval_rouge_l\": %.6f", res->eval.rouge_l);
    fprintf(f, ", \"eval_examples\": %lld}\n", (long long)eval.n);
    fclose(f);
  }
  res->n_train = train.n; res->n_eval = eval.n; res->steps = o.steps; res->context = context; res->max_target = max_target;
  res->train_src_cut = train.n_src_cut; res->train_tgt_cut = train.n_tgt_cut;
  res->eval_src_cut = eval.n_src_cut; res->eval_tgt_cut = eval.n_tgt_cut;
  res->rouge = rouge; res->mean_target_words = eval.mean_target_words;
done:
  if (preds) { for (int64_t i = 0; i < eval.n; i++) free(preds[i]); free(preds); }
  free(mpath);
  lm_model_free(m);
  lm_tokenizer_free(tok);
  lm_t2t_data_free(&train); lm_t2t_data_free(&eval);
  lm_t2t_rows_free(&trows); lm_t2t_rows_free(&erows);
  return st;
}
