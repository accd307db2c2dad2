/* epochs.c — the order in which an objective visits its n training items:
 * a fresh random permutation each epoch, a pure function of (seed, salt,
 * epoch), so the checkpointed cursor (epoch, index) is all a resumed run needs
 * to continue with exactly the items the uninterrupted run would have seen.
 * The salt keeps objectives that share a seed from sharing an order.
 * Optionally each run of `group` items of an epoch's order is then sorted by
 * length, longest first (Hugging Face's group_by_length), so that batches of
 * examples padded to their longest member waste little on padding while the
 * order stays random from one group to the next and a pure function of the
 * same inputs. */
#include <stdlib.h>
#include <string.h>
#include "train/train.h"

typedef struct { int64_t len, pos, item; } keyed;

/* longest first; equal lengths keep their shuffled order (a total order, so qsort is deterministic) */
static int by_len_desc(const void *a, const void *b) {
  const keyed *x = a, *y = b;
  if (x->len != y->len) return x->len > y->len ? -1 : 1;
  return (x->pos > y->pos) - (x->pos < y->pos);
}

/* Sorts each run of e->group items of the permutation by length (lm_epochs_group_by_length). */
static void group(lm_epochs *e) {
  keyed *k = e->scratch;
  for (int64_t c0 = 0; c0 < e->n; c0 += e->group) {
    int64_t m = e->n - c0 < e->group ? e->n - c0 : e->group;
    for (int64_t i = 0; i < m; i++) k[i] = (keyed){e->len[e->perm[c0 + i]], i, e->perm[c0 + i]};
    qsort(k, (size_t)m, sizeof *k, by_len_desc);
    for (int64_t i = 0; i < m; i++) e->perm[c0 + i] = k[i].item;
  }
}

static void shuffle(lm_epochs *e) {
  lm_rng r;
  lm_rng_seed(&r, e->seed * 0x9E3779B97F4A7C15ULL + (uint64_t)e->epoch + e->salt);
  for (int64_t i = 0; i < e->n; i++) e->perm[i] = i;
  for (int64_t i = e->n - 1; i > 0; i--) {
    int64_t j = (int64_t)(lm_rng_u64(&r) % (uint64_t)(i + 1));
    int64_t t = e->perm[i]; e->perm[i] = e->perm[j]; e->perm[j] = t;
  }
  if (e->len) group(e);
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

lm_status lm_epochs_group_by_length(lm_epochs *e, const int64_t *len, int64_t group_size) {
  if (!len || group_size < 1) return lm_error(LM_ERR_ARG, "grouping by length needs lengths and a group of at least 1");
  free(e->scratch);
  e->scratch = lm_xmalloc((size_t)(group_size < e->n ? group_size : e->n) * sizeof(keyed));
  if (!e->scratch) return LM_ERR_NOMEM;
  e->len = len; e->group = group_size;
  shuffle(e);   /* the current epoch again, now grouped: the same items at the same cursor on resume */
  return LM_OK;
}

int64_t lm_epochs_next(lm_epochs *e) {
  int64_t item = e->perm[e->index];
  if (++e->index == e->n) { e->index = 0; e->epoch++; shuffle(e); }
  return item;
}

void lm_epochs_free(lm_epochs *e) { free(e->perm); free(e->scratch); memset(e, 0, sizeof *e); }
