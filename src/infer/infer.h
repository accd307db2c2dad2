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
lm_status lm_session_init_kv(lm_session **out, const lm_model *m, int64_t max_len, int kv_f16);   /* f16 cache: 1 */
void lm_session_free(lm_session *s);
void lm_session_reset(lm_session *s);
int64_t lm_session_pos(const lm_session *s);
/* Runs n tokens at the current position (extending the cache); *logits (V) are those of the last one. */
lm_status lm_session_feed(lm_session *s, const int32_t *ids, int64_t n, const float **logits);

/* The forward a session and the batch decoder (batch.h) share. A run is n tokens of one sequence,
 * appended to its cache (lm_kv, (L, max_len, KVC) keys and values) at positions pos..pos+n-1.
 * lm_fwd_feed passes several runs through the model together (rows: their tokens in all, at most
 * the scratch's) and returns (n_runs, V) logits, each run's last token's, valid until the next
 * call. It does not check ids or lengths: lm_session_feed and batch.c do. */
/* k, v f32; or, for an f16 cache (half the memory and the reads), k16, v16 and k = v = NULL */
typedef struct { float *k, *v; int64_t max_len; uint16_t *k16, *v16; } lm_kv;
typedef struct { lm_kv *kv; int64_t pos; const int32_t *ids; int64_t n; } lm_kv_run;
typedef struct lm_fwd lm_fwd;
lm_status lm_kv_init(lm_kv *kv, const lm_model *m, int64_t max_len);   /* f32 */
lm_status lm_kv_init_type(lm_kv *kv, const lm_model *m, int64_t max_len, int f16);
void lm_kv_free(lm_kv *kv);
lm_status lm_fwd_init(lm_fwd **out, const lm_model *m, int64_t rows, int64_t max_len);
void lm_fwd_free(lm_fwd *f);
const float *lm_fwd_feed(lm_fwd *f, const lm_kv_run *runs, int n_runs);

/* Samplers: greedy when temperature <= 0, else temperature + top-k + top-p. */
typedef struct {
  lm_gen_opts o;
  lm_rng rng;
  int64_t V;
  float *prob;      /* (V) */
  int32_t *idx;     /* (V) */
  float logp;       /* the last sampled token's log-probability at the temperature, before any cut */
} lm_sampler;
lm_status lm_sampler_init(lm_sampler *s, const lm_gen_opts *o, int64_t V);
void lm_sampler_free(lm_sampler *s);
int32_t lm_sampler_pick(lm_sampler *s, const float *logits);

#endif
