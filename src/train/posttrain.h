/* posttrain.h — post-training: from a base model to an assistant
 * (docs/posttraining.md). Instruction tuning (SFT) here; the reward model
 * and the direct preference methods build on the same pieces.
 *
 * Data are conversations (src/train/chat.h), tokenized through the model's
 * chat template into ids + a mask of the assistant's tokens. Objectives plug
 * into the one trainer (train.h lm_train_run), so they get its schedule,
 * clipping, AdamW, metrics.jsonl, checkpoints and exact resume. */
#ifndef LM_TRAIN_POSTTRAIN_H
#define LM_TRAIN_POSTTRAIN_H

#include <stdint.h>
#include "lmkit.h"
#include "base/base.h"
#include "train/chat.h"
#include "train/train.h"

/* ---- tokenized conversations */
typedef struct {
  int64_t n;
  uint32_t *ids;        /* every example's tokens */
  uint8_t *mask;        /* 1 = an assistant token (it gets a loss) */
  int64_t *off;         /* (n+1) example i is ids[off[i] .. off[i+1]) */
  int64_t longest;
  int64_t too_long;     /* conversations skipped: longer than max_length */
  int64_t no_loss;      /* skipped: no assistant token left (cannot happen with a sane template) */
} lm_sft_data;

/* Tokenizes every conversation of set (lm_chat_encode); those longer than max_length tokens are
 * counted and skipped. An error when nothing is left. */
lm_status lm_sft_encode(lm_sft_data *d, const lm_chat_set *set, const lm_chat_config *cc, const lm_tokenizer *tok,
                        int64_t max_length, const char *name);
void lm_sft_data_free(lm_sft_data *d);
/* Splits off the last `fraction` of d (in a seeded random order) as held-out examples. */
lm_status lm_sft_split(lm_sft_data *d, float fraction, uint64_t seed, lm_sft_data *held);

/* Lays out a micro-batch for a causal LM: ids (B,T) and targets (B,T): target t is token t+1 of
 * the same example where that token is an assistant token, else -1 (so the last token of an
 * example never has one). Without packing each row holds one example, right-padded with pad to
 * the longest of the batch; with packing examples follow each other in a row and starts marks
 * where each begins (positions restart there, attention stays inside); an example that does not
 * fit the rest of a row begins the next one. Padding has no target (and, packed, is its own
 * one-token example). The objective builds its batches with these calls, and so can a test:
 *
 *   lm_sft_layout l = {.d = d, .B = B, .T = T, .packing = 1, .pad = pad, .ids = ids, .targets = tgt,
 *                      .starts = starts};                      // buffers of B*T
 *   lm_sft_layout_begin(&l);
 *   while (i < n && lm_sft_layout_add(&l, order[i])) i++;      // 0: full, order[i] not placed
 *   int64_t Tb = lm_sft_layout_end(&l);                        // the batch is (B, Tb) */
typedef struct {
  const lm_sft_data *d;
  int64_t B, T;                      /* rows, and the longest a row may be */
  int packing;
  int32_t pad;
  int32_t *ids, *targets, *starts;   /* (B*T) the caller's; starts is written with packing only */
  int64_t n, row, col, longest;      /* progress: examples placed, the row and column being filled */
} lm_sft_layout;

void lm_sft_layout_begin(lm_sft_layout *l);
/* Places example i; 1 when placed, 0 when the batch is full (B examples without packing; packed,
 * i does not fit in the rest of the last row) or i is longer than T. */
int lm_sft_layout_add(lm_sft_layout *l, int64_t i);
/* Pads the rest of every row; returns the row length Tb (packing: T; else the longest placed,
 * at least 1). Rows are Tb apart in the buffers. */
int64_t lm_sft_layout_end(lm_sft_layout *l);

/* The SFT objective: epochs over train in a seeded order; micro-batches of B rows of up to T
 * tokens; mean next-token loss over the assistant tokens. neftune_alpha > 0 adds NEFTune noise
 * to the embeddings (training only) drawn from the trainer's rng. evaluate: the same loss over
 * all of eval (NAN without). */
lm_status lm_objective_sft(lm_objective *o, lm_model *m, const lm_sft_data *train, const lm_sft_data *eval,
                           int64_t B, int64_t T, int packing, float neftune_alpha, int32_t pad, uint64_t seed,
                           lm_rng *rng, const int64_t *cursor);

/* ======================================================================
 * Preference pairs: the reward model and the direct preference methods
 * (src/train/prefs.c, objectives/reward.c, objectives/dpo.c;
 * docs/posttraining.md "Reward model", "Scoring", "DPO and its kin").
 * ====================================================================== */

/* Records (JSONL, one object per line; blank lines skipped):
 *   {"prompt": P, "chosen": R, "rejected": R [, "margin": number]}
 *       P a string (one user message) or a message list; R a string (one assistant message) or a
 *       message list ending with an assistant message
 *   {"chosen": [messages], "rejected": [messages]}   implicit prompt: the messages both share
 *   {"chosen": "\n\nHuman: ...\n\nAssistant: ...", "rejected": "..."}   Anthropic hh-rlhf: the
 *       prompt is the common text up to its last "\n\nAssistant:", split into user / assistant turns
 * Each side is tokenized as prompt + response through the chat template (lm_chat_encode with
 * last_only: the mask marks the response's last assistant turn and its end-of-turn token).
 * Skipped and counted: an empty (blank) chosen or rejected response, identical responses, a side
 * longer than max_length tokens, hh-rlhf / implicit-prompt records whose two sides share no prompt.
 * Anything else malformed is an error naming file:line and the field. */
typedef struct {
  int64_t n;            /* pairs */
  uint32_t *ids;        /* every sequence's tokens */
  uint8_t *mask;        /* 1 = a response token */
  int64_t *off;         /* (2n+1): sequence 2i (pair i's chosen) is ids[off[2i] .. off[2i+1]), 2i+1 its rejected */
  float *margin;        /* (n) the record's "margin" (0 when absent) */
  int64_t *line;        /* (n) 1-based line of the record */
  int64_t longest;      /* longest sequence */
  int64_t empty, identical, too_long, no_prompt, no_response;   /* records skipped, by reason */
} lm_pref_data;

/* One record as two conversations (message lists, new; caller deletes) and its margin. A record to
 * skip returns LM_OK with *chosen = *rejected = NULL and *why one of "empty", "identical",
 * "no_prompt"; a malformed one is an error prefixed with `where`. */
lm_status lm_pref_record(const cJSON *rec, const char *where, cJSON **chosen, cJSON **rejected, double *margin,
                         const char **why);
/* {"prompt": P, "response": R} (P, R as above) as one conversation, for scoring; an error prefixed
 * with `where` otherwise. */
lm_status lm_pref_prompt_response(const cJSON *rec, const char *where, cJSON **conv);
/* Reads and tokenizes path; an error when no pair is left. */
lm_status lm_pref_read(lm_pref_data *d, const char *path, const lm_chat_config *cc, const lm_tokenizer *tok,
                       int64_t max_length);
void lm_pref_data_free(lm_pref_data *d);
/* Splits off `fraction` of the pairs (a seeded random choice) as held-out pairs, order kept. */
lm_status lm_pref_split(lm_pref_data *d, float fraction, uint64_t seed, lm_pref_data *held);
/* Sequence s of d into one row of T tokens right-padded with pad: ids, mask (may be NULL) 1 on
 * real tokens, targets (may be NULL) at t = token t+1 where that is a response token, else -1. */
void lm_pref_put(const lm_pref_data *d, int64_t s, int64_t T, int32_t pad, int32_t *ids, uint8_t *mask, int32_t *targets);

/* ---- the reward model: a decoder with the scalar head (one number per sequence, read at its
 * last real token). A micro-batch is B pairs = 2B right-padded rows (chosen, rejected, ...);
 * the loss (TRL's RewardTrainer) is
 *   mean_i -log sigmoid(r_chosen,i - r_rejected,i - margin_i) + center * mean_i (r_chosen,i + r_rejected,i)^2
 * and trains through lm_batch.dout. */
typedef struct {
  int64_t pairs;        /* pairs evaluated */
  double loss, accuracy;  /* mean loss; share of pairs with r_chosen > r_rejected */
  double margin;        /* mean r_chosen - r_rejected */
  double chosen, rejected;  /* mean rewards */
} lm_reward_eval;
typedef struct {
  int64_t B, T;         /* pairs per micro-batch; longest sequence */
  float center;         /* TRL's center_rewards_coefficient (0: none) */
  int32_t pad;          /* padding id */
  uint64_t seed;        /* data order */
} lm_reward_opts;
/* Evaluation lines get val_accuracy, val_margin, val_reward_chosen, val_reward_rejected, also in
 * *last (may be NULL) for the caller to report; training lines get the step's accuracy, margin. */
lm_status lm_objective_reward(lm_objective *o, lm_model *m, const lm_pref_data *train, const lm_pref_data *eval,
                              const lm_reward_opts *ro, const int64_t *cursor, lm_reward_eval *last);
/* Rewards of up to B right-padded sequences with mask (1 = real token): out (B). */
lm_status lm_reward_score(lm_model *m, const int32_t *ids, const uint8_t *mask, int64_t B, int64_t T, float *out);

/* ---- direct preference methods on a decoder's LM head. With per-sequence response log-probs
 * s = sum over response tokens of log softmax(logits)[next token], n their count, a = s / n, and
 * the frozen starting model's s_ref (cached before training), per pair (TRL's definitions):
 *   sigmoid (DPO)  -log sigmoid(beta ((s_c - s_r) - (sref_c - sref_r)))
 *   ipo            ((a_c - a_r) - (aref_c - aref_r) - 1 / (2 beta))^2
 *   hinge          relu(1 - beta ((s_c - s_r) - (sref_c - sref_r)))
 *   simpo          -log sigmoid(beta (a_c - a_r) - gamma)                       (no reference)
 *   orpo           -beta log sigmoid(log-odds), log-odds = (a_c - a_r) - (log(1 - e^a_c) - log(1 - e^a_r)),
 *                  plus, once per micro-batch, the NLL of the chosen sequences (mean over all their
 *                  real next tokens, prompt included, as TRL's ORPOTrainer)          (no reference)
 * The loss is the mean over the pairs (+ that NLL). Implicit rewards, as TRL logs them:
 * beta (s - s_ref) (ipo: beta (a - a_ref)); simpo, orpo: beta a. */
typedef enum { LM_PREF_SIGMOID = 0, LM_PREF_IPO, LM_PREF_HINGE, LM_PREF_SIMPO, LM_PREF_ORPO } lm_pref_loss;
int lm_pref_loss_from_name(const char *name);     /* -1 if unknown */
const char *lm_pref_loss_name(int loss);
int lm_pref_loss_uses_reference(int loss);        /* sigmoid, ipo, hinge */

typedef struct {
  int64_t pairs;
  double loss;
  double chosen, rejected, margins, accuracies;   /* rewards/chosen, /rejected, /margins, /accuracies */
} lm_dpo_eval;
typedef struct {
  int loss;             /* lm_pref_loss */
  float beta, gamma;    /* gamma: SimPO's target margin */
  int64_t B, T;         /* pairs per micro-batch; longest sequence */
  int32_t pad;
  uint64_t seed;
} lm_dpo_opts;
/* Response log-prob sums of every sequence of d under m (2n): the reference cache. B pairs at a time. */
lm_status lm_pref_logps(lm_model *m, const lm_pref_data *d, int64_t B, int32_t pad, double *logps);
/* train_ref / eval_ref: lm_pref_logps of the starting model (NULL for simpo, orpo). Evaluation
 * lines get val_rewards/{chosen,rejected,margins,accuracies} (eval_fields), and also go to *last
 * (may be NULL); training lines get rewards/... over the step's pairs (step_fields). */
lm_status lm_objective_dpo(lm_objective *o, lm_model *m, const lm_pref_data *train, const double *train_ref,
                           const lm_pref_data *eval, const double *eval_ref, const lm_dpo_opts *po,
                           const int64_t *cursor, lm_dpo_eval *last);

/* ---- run settings of reward / dpo runs, for --resume: OUT/posttrain.json */
lm_status lm_posttrain_save_args(const char *out, const cJSON *args);   /* atomic write */
/* The newest complete state under dir (lm_train_find_resume), the run directory (dir, or the one
 * above a checkpoint-N) and its posttrain.json, whose "command" must be `command`. *state and
 * *run_dir are malloc'ed, *args is the parsed file (caller deletes). */
lm_status lm_posttrain_resume(const char *dir, const char *command, char **state, char **run_dir, cJSON **args);

#endif
