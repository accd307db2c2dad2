/* finetune_tasks.h — BERT fine-tuning for token classification (NER) and
 * extractive question answering (docs/finetune.md, "Token classification"
 * and "Question answering"). Built like sequence classification
 * (finetune.h): a reader, an encoded data set, a trainer objective with
 * shuffled epochs whose order is a pure function of (seed, epoch), padding
 * per batch, an evaluation function and a driver over lm_train_run.
 *
 *   src/train/objectives/tokcls.c   CoNLL reader, word -> sub-token alignment,
 *                                   entity-level P/R/F1, the tokens objective
 *   src/train/objectives/qa.c       SQuAD v1.1 reader, context tokens with byte
 *                                   offsets, sliding windows, span decoding,
 *                                   SQuAD exact match / F1, the qa objective
 *   src/train/finetune_tasks.c      the two drivers */
#ifndef LM_TRAIN_FINETUNE_TASKS_H
#define LM_TRAIN_FINETUNE_TASKS_H

#include <stdint.h>
#include "lmkit.h"
#include "base/base.h"
#include "train/finetune.h"
#include "train/train.h"

/* ================================================================ token classification */

/* Sentences of a CoNLL file: one token per line, the LAST whitespace-separated column is the
 * tag, blank lines end a sentence, lines starting with -DOCSTART- are skipped. */
typedef struct {
  int64_t n;            /* sentences */
  char **words;         /* all words, sentence after sentence */
  int32_t *tags;        /* tag id of each word */
  int64_t *woff;        /* (n+1) sentence i is words[woff[i] .. woff[i+1]) */
  int64_t *lines;       /* (n) 1-based line of each sentence's first word */
} lm_conll;

/* Parses CoNLL text (`name` in messages). Tags go into `labels` in order of first appearance
 * with grow (training); without grow an unseen tag is an error naming name:line. A line with a
 * single column (no tag) is an error naming name:line. At least one sentence is required. A
 * UTF-8 BOM and CRLF line ends are accepted. */
lm_status lm_conll_parse(const char *text, size_t len, const char *name, lm_cls_labels *labels, int grow,
                         lm_conll *c);
lm_status lm_conll_read(const char *path, lm_cls_labels *labels, int grow, lm_conll *c);
void lm_conll_free(lm_conll *c);

/* Encoded sentences: [CLS] sub-tokens [SEP]; the word's tag on its first sub-token, -1 on the
 * rest (and on [CLS], [SEP], padding). Sentences longer than context - 2 sub-tokens are cut
 * (counted); the cut words are scored as predicted "O" by the evaluation. */
typedef struct {
  int64_t n;
  uint32_t *ids;        /* sub-tokens of every sentence, no specials */
  int32_t *labels;      /* parallel to ids: tag id or -1 */
  int64_t *off;         /* (n+1) sentence i is ids[off[i] .. off[i+1]) */
  int32_t *word_tags;   /* gold tags of all words (also those cut away) */
  int64_t *woff;        /* (n+1) into word_tags */
  int64_t context;      /* longest sequence with [CLS] and [SEP] */
  int64_t n_truncated;  /* sentences cut to context - 2 sub-tokens */
  int32_t cls, sep, pad;
} lm_tokcls_data;

/* Word-by-word encoding (WordPiece: encode(word); byte-level BPE: encode(" " + word) after the
 * first word, as the GPT-2/RoBERTa tokenizers see words inside a sentence). */
lm_status lm_tokcls_encode(lm_tokcls_data *d, const lm_config *cfg, const lm_tokenizer *tok, const lm_conll *c, int64_t context);
void lm_tokcls_data_free(lm_tokcls_data *d);
/* Lays out sentences idx[0..nb) as (nb, T) ids, mask, labels padded to the longest; returns T. */
int64_t lm_tokcls_fill(const lm_tokcls_data *d, const int64_t *idx, int64_t nb, int32_t *ids, uint8_t *mask,
                       int32_t *labels);

/* Entity counts, seqeval's default (IOB2, lenient) scheme: an entity is a maximal run
 * B-X I-X* of one type X; an I-X that follows O, the end of another entity type, or nothing
 * starts a new entity (IOB1 reading); a B-X always starts one. A tag without a B-/I- prefix
 * other than "O" is read as I-tag. An entity is correct when its first word, last word and
 * type all match a gold entity. Counts accumulate over calls. */
typedef struct { int64_t gold, pred, correct, words, words_correct; } lm_ner_counts;
void lm_ner_count(const char *const *names, int64_t n_names, const int32_t *gold, const int32_t *pred, int64_t n,
                  lm_ner_counts *c);
/* Micro precision, recall and F1 (0 when undefined). */
void lm_ner_scores(const lm_ner_counts *c, double *precision, double *recall, double *f1);

/* Loss, entity counts and word accuracy of a tokens-head BERT over d, in batches of B. */
lm_status lm_tokcls_evaluate(lm_model *m, const lm_tokcls_data *d, const lm_cls_labels *labels, int64_t B,
                             double *loss, lm_ner_counts *counts);
/* The trainer objective (as lm_objective_cls); evaluate = mean loss over all of eval; the entity
 * F1 of that pass goes to *last_f1 when not NULL. */
lm_status lm_objective_tokcls(lm_objective *o, lm_model *m, const lm_tokcls_data *train, const lm_tokcls_data *eval,
                              const lm_cls_labels *labels, int64_t B, uint64_t seed, const int64_t *cursor,
                              double *last_f1);

/* ================================================================ question answering */

/* SQuAD v1.1 questions. Offsets are BYTE offsets into the context (converted from SQuAD's
 * character offsets); answers whose span falls outside the context or whose text differs from
 * the context there are dropped and counted; a question left with no answer is skipped and
 * counted. */
typedef struct {
  int64_t n;                     /* questions kept */
  char **qid, **question;        /* (n) */
  int64_t *ctx;                  /* (n) index into contexts */
  char **contexts; int64_t n_ctx;
  int64_t *aoff;                 /* (n+1) answers of question i: [aoff[i], aoff[i+1]) */
  char **answers;                /* answer texts */
  int64_t *astart, *aend;        /* byte span [astart, aend) in the context */
  int64_t n_bad_answers;         /* answers dropped (span outside the context or text mismatch) */
  int64_t n_skipped;             /* questions without any valid answer */
} lm_squad;

/* Parses SQuAD v1.1 JSON; malformed JSON or a missing/ill-typed field is an error naming `name`. */
lm_status lm_squad_parse(const char *text, size_t len, const char *name, lm_squad *s);
lm_status lm_squad_read(const char *path, lm_squad *s);
void lm_squad_free(lm_squad *s);

/* Byte offset of character (code point) `chars` of UTF-8 text s[0..len); -1 past the end. */
int64_t lm_utf8_char_to_byte(const char *s, size_t len, int64_t chars);

/* Tokens of a context with byte offsets: the context is split at whitespace and each word is
 * encoded on its own (WordPiece: the word; byte-level BPE: " " + word after the first). Every
 * sub-token carries its word's byte span, narrowed to its own bytes for byte-level BPE.
 * *ids, *start, *end are malloc'ed (n entries). */
lm_status lm_qa_tokenize_context(const lm_tokenizer *tok, const char *text, size_t len, uint32_t **ids,
                                 int64_t **start, int64_t **end, int64_t *n);
/* The token span [*ts, *te] (inclusive) covering bytes [a0, a1) of a context tokenized with
 * offsets start/end: first token ending after a0, last token starting before a1. Returns 0, or
 * -1 when no token overlaps (then *ts = *te = -1). */
int lm_qa_char_span_to_tokens(const int64_t *start, const int64_t *end, int64_t n, int64_t a0, int64_t a1,
                              int64_t *ts, int64_t *te);

/* SQuAD's answer normalisation: lower-case (ASCII), drop ASCII punctuation, drop the words
 * a/an/the, collapse whitespace. Returns a malloc'ed string (NULL when out of memory). */
char *lm_squad_normalize(const char *s);
/* Exact match (0/1) and token-overlap F1 of prediction vs one gold answer, after normalising. */
double lm_squad_em(const char *pred, const char *gold);
double lm_squad_f1(const char *pred, const char *gold);

/* Encoded features: [CLS] question [SEP] context window [SEP]; segments 0 then 1. */
typedef struct {
  int64_t n_feat;
  int64_t *ex;                  /* (n_feat) question index */
  int64_t *c0, *nc;             /* (n_feat) first context token of the window, tokens in it */
  int32_t *start, *end;         /* (n_feat) answer positions in the sequence, -1 when not inside */
  uint32_t *qids; int64_t *qoff;/* question tokens, (n+1) offsets */
  uint32_t *cids; int64_t *cstart, *cend, *coff;  /* context tokens + byte spans, (n_ctx+1) offsets */
  const lm_squad *squad;        /* not owned */
  int64_t context;              /* longest feature */
  int64_t n_windows_dropped;    /* training windows without the whole answer (not used) */
  int64_t n_questions_cut;      /* questions cut to max_query tokens */
  int64_t n_unanswerable;       /* questions whose answer is in no window (training: skipped) */
  int32_t cls, sep, pad;
} lm_qa_data;

/* Builds features: questions cut to 64 tokens, context windows of context - q - 3 tokens
 * starting every (window - stride) tokens (stride = overlap, <= 0: window / 2). With train,
 * only windows holding the first answer whole are kept (counted in n_windows_dropped). */
lm_status lm_qa_encode(lm_qa_data *d, const lm_tokenizer *tok, const lm_squad *s, int64_t context, int64_t stride,
                       int train);
void lm_qa_data_free(lm_qa_data *d);
int64_t lm_qa_fill(const lm_qa_data *d, const int64_t *idx, int64_t nb, int32_t *ids, int32_t *seg, uint8_t *mask,
                   int32_t *labels);

/* Decodes the best span per question (start <= end, at most 30 tokens, inside the context part,
 * best start+end logit over all its windows) and scores EM and F1 (max over gold answers,
 * means over questions, in [0, 1]). preds, when not NULL, receives n malloc'ed answer texts. */
lm_status lm_qa_evaluate(lm_model *m, const lm_qa_data *d, int64_t B, double *loss, double *em, double *f1,
                         char ***preds);
/* lm_qa_evaluate that also gives each question's span score (start + end logit of the decoded
 * span; NAN when its context has no token) in scores (n entries) when not NULL. Used by
 * `lmkit predict`, whose questions carry a placeholder answer (EM and F1 then mean nothing). */
lm_status lm_qa_predict(lm_model *m, const lm_qa_data *d, int64_t B, double *loss, double *em, double *f1,
                        char ***preds, double *scores);
lm_status lm_objective_qa(lm_objective *o, lm_model *m, const lm_qa_data *train, const lm_qa_data *eval, int64_t B,
                          uint64_t seed, const int64_t *cursor, double *last_em, double *last_f1);

/* ================================================================ drivers */

typedef struct {
  int64_t n_train, n_eval, n_labels, steps, context;
  int64_t train_truncated, eval_truncated;       /* tokens: sentences cut to the context */
  int64_t train_features, eval_features;         /* qa: windows */
  int64_t train_bad_answers, eval_bad_answers;   /* qa: answers dropped (bad span or text) */
  int64_t train_skipped, eval_skipped;           /* qa: questions without a valid answer */
  int64_t train_unanswerable;                    /* qa: answer in no window (not trained on) */
  double eval_loss;                              /* NAN without eval data */
  double precision, recall, f1, accuracy;        /* tokens: entity P/R/F1, word accuracy */
  double exact_match, qa_f1;                     /* qa: SQuAD EM and F1 in [0, 1] */
} lm_finetune_tasks_result;

/* Token classification: tokens head sized to the training tags; out_dir gets the model with
 * id2label / label2id, the tokenizer and metrics.jsonl (val_f1 per evaluation, a final line). */
lm_status lm_finetune_tokens(const lm_finetune_opts *o, lm_finetune_tasks_result *res);
/* Extractive QA (SQuAD v1.1); stride = window overlap in tokens (<= 0: half the window). */
lm_status lm_finetune_qa(const lm_finetune_opts *o, int64_t stride, lm_finetune_tasks_result *res);

#endif
