/* posttrain_shared.h — helpers that the post-training data and objectives
 * share (src/train/chat.c, prefs.c, objectives/sft.c, reward.c, dpo.c);
 * internal to src/train. */
#ifndef LM_TRAIN_POSTTRAIN_SHARED_H
#define LM_TRAIN_POSTTRAIN_SHARED_H

#include <math.h>
#include <stdint.h>
#include "train/posttrain.h"

/* log(1 + e^x) without overflow */
static inline double lm_softplus(double x) { return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x)); }

/* Every element of msgs an object with a string role and a string content; not empty (chat.c).
 * Errors name where and field[i]. */
lm_status lm_chat_check_messages(const cJSON *msgs, const char *where, const char *field);

/* (n) 1 for the nh examples held out: the first nh of a seeded random order (prefs.c); NULL when
 * out of memory. */
uint8_t *lm_held_out(int64_t n, int64_t nh, uint64_t seed);

/* The longest side of pairs[0..nb) of d, at least 1: the length of their right-padded rows (prefs.c). */
int64_t lm_pref_rows_longest(const lm_pref_data *d, const int64_t *pairs, int64_t nb);
/* Refuses a maximum length T past m's positions or shorter than a sequence of train or eval (prefs.c). */
lm_status lm_pref_check_length(const lm_model *m, const lm_pref_data *train, const lm_pref_data *eval, int64_t T);

#endif
