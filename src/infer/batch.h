/* batch.h — a decoder for many sequences at once (continuous batching).
 *
 * n_seq slots, each a sequence with its own KV cache of up to max_len tokens. A prompt is fed
 * to one slot (prefill, matrix-matrix products); a decode step feeds one token to each of any
 * set of slots in ONE forward pass: the linear layers run as (n, C) x (C, OC) products over the
 * n slots' rows, attention runs per slot over its own cache. Slots join and leave between steps
 * (reset a slot to reuse it). The logits of a slot are those single-sequence decoding of the
 * same tokens gives (tests/unit/test_batch.c).
 *
 *   lm_batch_decoder *d;  lm_batch_decoder_init(&d, m, 8, 1024);
 *   lm_batch_decoder_feed(d, 3, prompt_ids, n, &logits);           // slot 3's prompt
 *   lm_batch_decoder_prefill(d, slots, prompts, lens, k, &logits);  // k prompts together: (k, V)
 *   int slots[] = {0, 3};  int32_t next[] = {t0, t3};
 *   lm_batch_decoder_step(d, slots, next, 2, &logits);             // logits: (2, V), row i for slots[i]
 */
#ifndef LM_INFER_BATCH_H
#define LM_INFER_BATCH_H

#include <stdint.h>
#include "lmkit.h"

typedef struct lm_batch_decoder lm_batch_decoder;

lm_status lm_batch_decoder_init(lm_batch_decoder **out, const lm_model *m, int n_seq, int64_t max_len);
void lm_batch_decoder_free(lm_batch_decoder *d);
int lm_batch_decoder_slots(const lm_batch_decoder *d);
/* Empties slot's cache (a new sequence starts at position 0). */
void lm_batch_decoder_reset(lm_batch_decoder *d, int slot);
int64_t lm_batch_decoder_pos(const lm_batch_decoder *d, int slot);
/* Feeds n tokens to one slot; *logits (V) are the last token's, valid until the next call. */
lm_status lm_batch_decoder_feed(lm_batch_decoder *d, int slot, const int32_t *ids, int64_t n, const float **logits);
/* Prompts for n distinct slots, packed into as few forwards as the scratch allows (a weight is read
 * once per forward for all of them, where n feeds would read it n times); prompt i (ids[i], len[i])
 * goes to slots[i]. *logits is (n, V), row i the last token's of prompt i, valid until the next call. */
lm_status lm_batch_decoder_prefill(lm_batch_decoder *d, const int *slots, const int32_t *const *ids, const int64_t *len,
                                   int n, const float **logits);
/* One token for each of n distinct slots, in one forward; *logits is (n, V), row i for slots[i]. */
lm_status lm_batch_decoder_step(lm_batch_decoder *d, const int *slots, const int32_t *ids, int n, const float **logits);

#endif
