/* infer.h — inference internals: a decoding session with a KV cache, and the
 * samplers. A session feeds tokens through the model at increasing positions;
 * each layer's keys and values are kept so that a new token attends to the
 * cached prefix instead of recomputing it. */
#ifndef LM_INFER_H
#define LM_INFER_H

#include <stdint.h>
#include "lmkit.h"
#include "base/base.h"

typedef struct lm_session lm_session;

/* A session for sequences of up to max_len tokens (<= the model's positions). */
lm_status lm_session_init(lm_session **out, const lm_model *m, int64_t max_len);
void lm_session_free(lm_session *s);
void lm_session_reset(lm_session *s);
int64_t lm_session_pos(const lm_session *s);
/* Runs n tokens at the current position (extending the cache); *logits (V) are those of the last one. */
lm_status lm_session_feed(lm_session *s, const int32_t *ids, int64_t n, const float **logits);

/* Samplers: greedy when temperature <= 0, else temperature + top-k + top-p. */
typedef struct {
  lm_gen_opts o;
  lm_rng rng;
  int64_t V;
  float *prob;      /* (V) */
  int32_t *idx;     /* (V) */
} lm_sampler;
lm_status lm_sampler_init(lm_sampler *s, const lm_gen_opts *o, int64_t V);
void lm_sampler_free(lm_sampler *s);
int32_t lm_sampler_pick(lm_sampler *s, const float *logits);

#endif
