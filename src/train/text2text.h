/* text2text.h — text-to-text fine-tuning of encoder-decoders (T5, BART):
 * every task is text in -> text out (`sst2 sentence: ...` -> `positive`),
 * trained by teacher-forced cross-entropy on the target and scored by
 * generating (docs/finetune.md, "Text to text").
 *
 *   reader     TSV `input<TAB>target` lines or JSONL {"input", "target"}
 *              (lm_t2t_parse), errors naming file:line;
 *   encoding   input + EOS cut to the encoder's context (counted), target +
 *              EOS cut to the target limit (counted) (lm_t2t_encode_text);
 *   objective  shuffled epochs; the encoder reads the input padded per batch
 *              with a mask, the decoder the target shifted right after the
 *              family's decoder_start_token_id (lm_objective_t2t);
 *   scoring    each eval input decoded (greedy, sampling or beams through
 *              lm_encdec_answer) and compared with its target: exact match of
 *              whitespace-normalised strings, and ROUGE-L (src/eval/rouge.h)
 *              when targets are long (lm_t2t_evaluate);
 *   driver     lm_finetune_text2text over lm_train_run.
 * Nothing here asks which family it runs: the model must be an
 * encoder-decoder with an LM head (cfg.n_enc_layer > 0). */
#ifndef LM_TRAIN_TEXT2TEXT_H
#define LM_TRAIN_TEXT2TEXT_H

#include <stdint.h>
#include "lmkit.h"
#include "base/base.h"
#include "model/model.h"
#include "train/finetune.h"
#include "train/train.h"

/* ---- raw examples */
typedef struct {
  int64_t n;
  char **inputs, **targets;   /* (n) */
  int64_t *lines;             /* (n) 1-based line of each example */
} lm_t2t_rows;

/* Parses `text` (`name` in messages). The first non-blank line decides the format: '{' is JSONL
 * (each line an object with exactly the string members "input" and "target"; any other member is
 * an error naming it), anything else TSV (each line `input<TAB>target`, no quoting; a first line
 * `input<TAB>target` is a header and skipped). Blank lines are skipped; a UTF-8 BOM, CRLF ends and
 * blanks around a line are not part of it. A line that is not one example, an empty input or an
 * empty target (only whitespace) is an error naming name:line. At least one example is required. */
lm_status lm_t2t_parse(const char *text, size_t len, const char *name, lm_t2t_rows *r);
lm_status lm_t2t_read(const char *path, lm_t2t_rows *r);
void lm_t2t_rows_free(lm_t2t_rows *r);

/* The ids an encoder-decoder reads and writes: eos (the model's eos_token_id, else the
 * tokenizer's end of text), the decoder start and the padding id; an error names what is missing. */
typedef struct { int32_t eos, start, pad; } lm_t2t_special;
lm_status lm_t2t_special_ids(const lm_config *cfg, const lm_tokenizer *tok, lm_t2t_special *sp);

/* Tokenizes text (special tokens in it honoured, as `generate` does), appends EOS unless the
 * tokenizer already ended with it, and cuts the result to max_len tokens keeping EOS last
 * (*cut = 1 then). ids: max_len entries; *n: how many were written. */
lm_status lm_t2t_encode_text(const lm_tokenizer *tok, const char *text, int32_t eos, int64_t max_len, int32_t *ids,
                             int64_t *n, int *cut);

/* ---- encoded examples */
typedef struct {
  int64_t n;
  int32_t *src; int64_t *soff;   /* inputs with EOS: example i is src[soff[i] .. soff[i+1]) */
  int32_t *tgt; int64_t *toff;   /* targets with EOS */
  int64_t S, T;                  /* longest input / target, EOS included */
  int64_t n_src_cut, n_tgt_cut;  /* inputs cut to the context, targets cut to the target limit */
  double mean_target_words;      /* whitespace-separated words per target */
} lm_t2t_data;

lm_status lm_t2t_encode(lm_t2t_data *d, const lm_tokenizer *tok, const lm_t2t_special *sp, const lm_t2t_rows *r,
                        int64_t max_src, int64_t max_tgt);
void lm_t2t_data_free(lm_t2t_data *d);
/* Lays out examples idx[0..nb) as the encoder's (nb,S) ids + mask and the decoder's (nb,T) input
 * [start, y0 .. y(n-2)] and labels [y0 .. y(n-1)], padded with pad / -1; fills *b (pointing into
 * the given buffers) and returns it. */
void lm_t2t_fill(const lm_t2t_data *d, const lm_t2t_special *sp, const int64_t *idx, int64_t nb, int32_t *enc,
                 uint8_t *emask, int32_t *dec, int32_t *labels, lm_batch *b);

/* ---- scoring */
/* Exact match after normalising whitespace: both strings trimmed, runs of blanks (space, tab,
 * CR, LF) made one space; case and punctuation count. */
int lm_t2t_exact_match(const char *pred, const char *gold);

typedef struct {
  lm_gen_opts gen;     /* decoding: temperature 0 = greedy, beams > 1 = beam search; max_tokens */
  int rouge;           /* 1: report ROUGE-L; 0: not; -1: when mean_target_words > LM_T2T_ROUGE_WORDS */
  int progress;
} lm_t2t_eval_opts;
#define LM_T2T_ROUGE_WORDS 3.0

typedef struct {
  int64_t n;
  double loss;         /* mean cross-entropy per target token (EOS included) */
  double exact_match;  /* share of outputs equal to their target (lm_t2t_exact_match) */
  double rouge_l;      /* mean ROUGE-L F-measure; NAN when not reported */
} lm_t2t_scores;

/* Teacher-forced loss over d in batches of B (reserving the model for them: not between training
 * steps), then decodes every input and scores it against rows->targets. preds, when not NULL,
 * receives n malloc'ed outputs. */
lm_status lm_t2t_evaluate(lm_model *m, const lm_tokenizer *tok, const lm_t2t_data *d, const lm_t2t_rows *rows,
                          const lm_t2t_special *sp, const lm_t2t_eval_opts *o, int64_t B, lm_t2t_scores *s,
                          char ***preds);
/* Decodes one encoded input (ids, n; EOS included) into text (malloc'ed): the model's answer up
 * to its EOS, special tokens kept. What `lmkit predict` prints and the evaluation scores. */
lm_status lm_t2t_generate(const lm_model *m, const lm_tokenizer *tok, const int32_t *ids, int64_t n,
                          const lm_gen_opts *g, char **text);

/* The trainer objective: shuffled epochs over train (order a pure function of (seed, epoch));
 * evaluate = the teacher-forced loss over eval, with exact match and ROUGE-L of decoding it
 * (eval_fields val_exact_match, val_rouge_l). Reserves the model. */
lm_status lm_objective_t2t(lm_objective *o, lm_model *m, const lm_tokenizer *tok, const lm_t2t_data *train,
                           const lm_t2t_data *eval, const lm_t2t_rows *eval_rows, const lm_t2t_special *sp,
                           const lm_t2t_eval_opts *eo, int64_t B, uint64_t seed, const int64_t *cursor);

/* ---- the driver */
typedef struct {
  int64_t n_train, n_eval, steps, context, max_target;
  int64_t train_src_cut, train_tgt_cut, eval_src_cut, eval_tgt_cut;
  int rouge;                 /* ROUGE-L was reported */
  double mean_target_words;  /* of the eval targets */
  lm_t2t_scores eval;        /* final scores; NANs without eval data */
} lm_t2t_result;

/* Fine-tunes fo->model_dir (an encoder-decoder with an LM head) on fo->train_path; inputs are cut to
 * fo->context tokens, targets to max_target (both capped to the model's positions). With eval data,
 * out_dir also gets eval_predictions.txt (one output per line, line breaks inside one written as
 * spaces) and metrics.jsonl a final line with eval_loss, eval_exact_match (and eval_rouge_l). */
lm_status lm_finetune_text2text(const lm_finetune_opts *fo, int64_t max_target, const lm_t2t_eval_opts *eo,
                                lm_t2t_result *res);

#endif
