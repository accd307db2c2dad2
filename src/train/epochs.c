/* epochs.c — the order in which an objective visits its n training items:
 * a fresh random permutation each epoch, a pure function of (seed, salt,
 * epoch), so the checkpointed cursor (epoch, index) is all a resumed run needs
 * to continue with exactly the items the uninterrupted run would have seen.
 * The salt keeps objectives that share a seed from sharing an order. */
#include <stdlib.h>
#include <string.h>
#include "train/train.h"

static void shuffle(lm_epochs *e) {
  lm_rng r;
  lm_rng_seed(&r, e->seed * 0x9E3779B97F4A7C15ULL + (uint64_t)e->epoch + e->salt);
  for (int64_t i = 0; i < e->n; i++) e->perm[i] = i;
  for (int64_t i = e->n - 1; i > 0; i--) {
    int64_t j = (int64_t)(lm_rng_u64(&r) % (uint64_t)(i + 1));
    int64_t t = e->perm[i]; e->perm[i] = e->perm[j]; e->perm[j] = t;
  }
}

lm_status lm_epochs_init(lm_epochs *e, int64_t n, uint64_t seed, uint64_t salt, const int64_t *cursor) {
  memset(e, 0, sizeof *e);
  if (n < 1) return lm_error(LM_ERR_ARG, "no training items");
  if (cursor && (cursor[0] < 0 || cursor[1] < 0 || cursor[1] >= n))
    return lm_error(LM_ERR_FORMAT, "data cursor (epoch %lld, index %lld) does not fit this data (%lld items): "
                    "is it the same data and settings?", (long long)cursor[0], (long long)cursor[1], (long long)n);
  e->perm = lm_xmalloc((size_t)n * sizeof(int64_t));
  if (!e->perm) return LM_ERR_NOMEM;
  e->n = n; e->seed = seed; e->salt = salt;
  if (cursor) { e->epoch = cursor[0]; e->index = cursor[1]; }
  shuffle(e);
  return LM_OK;
}

int64_t lm_epochs_next(lm_epochs *e) {
  int64_t item = e->perm[e->index];
  if (++e->index == e->n) { e->index = 0; e->epoch++; shuffle(e); }
  return item;
}

void lm_epochs_free(lm_epochs *e) { free(e->perm); memset(e, 0, sizeof *e); }
