/* test_epochs.c — the objectives' resumable visiting order (src/train/epochs.c):
 * every epoch is a permutation that depends on (seed, salt, epoch) only, a
 * cursor resumes it exactly, and grouping by length (HF's group_by_length)
 * only sorts each run of `group` items of the shuffled order, longest first
 * with ties in shuffled order, so it resumes exactly too. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include "train/train.h"

enum { N = 1003, G = 64, EPOCHS = 3 };   /* N not a multiple of G: a short last group */

/* the first EPOCHS * N items visited from the start */
static void visit(int64_t *out, const int64_t *len, int64_t group, uint64_t seed) {
  lm_epochs e;
  cr_assert_eq(lm_epochs_init(&e, N, seed, 5, NULL), LM_OK);
  if (len) cr_assert_eq(lm_epochs_group_by_length(&e, len, group), LM_OK);
  for (int64_t i = 0; i < EPOCHS * N; i++) out[i] = lm_epochs_next(&e);
  lm_epochs_free(&e);
}

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

Test(epochs, grouped_by_length) {
  int64_t *len = malloc(N * sizeof *len), *plain = malloc(EPOCHS * N * sizeof *plain),
          *grouped = malloc(EPOCHS * N * sizeof *grouped), *again = malloc(EPOCHS * N * sizeof *again),
          *a = malloc(G * sizeof *a), *b = malloc(G * sizeof *b);
  for (int64_t i = 0; i < N; i++) len[i] = 1 + (i * 7919) % 23;   /* many ties */
  visit(plain, NULL, 0, 9);
  visit(grouped, len, G, 9);
  visit(again, len, G, 9);
  cr_assert(!memcmp(grouped, again, EPOCHS * N * sizeof *grouped), "the grouped order is a pure function of the seed");
  for (int ep = 0; ep < EPOCHS; ep++) {
    const int64_t *p = plain + ep * N, *g = grouped + ep * N;
    for (int64_t c0 = 0; c0 < N; c0 += G) {
      int64_t m = N - c0 < G ? N - c0 : G;
      /* the same items as the plain order's group, sorted longest first; ties keep the plain order */
      for (int64_t i = 1; i < m; i++) {
        cr_assert_geq(len[g[c0 + i - 1]], len[g[c0 + i]], "epoch %d group at %lld not sorted", ep, (long long)c0);
        if (len[g[c0 + i - 1]] == len[g[c0 + i]]) {
          int64_t u = -1, v = -1;
          for (int64_t k = 0; k < m; k++) {
            if (p[c0 + k] == g[c0 + i - 1]) u = k;
            if (p[c0 + k] == g[c0 + i]) v = k;
          }
          cr_assert_lt(u, v, "ties keep the shuffled order");
        }
      }
      memcpy(a, p + c0, m * sizeof *a); memcpy(b, g + c0, m * sizeof *b);
      qsort(a, m, sizeof *a, cmp_i64); qsort(b, m, sizeof *b, cmp_i64);
      cr_assert(!memcmp(a, b, m * sizeof *a), "epoch %d: group at %lld holds other items", ep, (long long)c0);
    }
  }
  cr_assert(memcmp(plain, grouped, N * sizeof *plain), "grouping changed nothing");
  /* resuming at a cursor mid-group, mid-epoch: the same items follow */
  for (int64_t at = 0; at < EPOCHS * N; at += 389) {
    lm_epochs e;
    int64_t cursor[2] = {at / N, at % N};
    cr_assert_eq(lm_epochs_init(&e, N, 9, 5, cursor), LM_OK);
    cr_assert_eq(lm_epochs_group_by_length(&e, len, G), LM_OK);
    for (int64_t i = at; i < EPOCHS * N; i++) cr_assert_eq(lm_epochs_next(&e), grouped[i], "resumed at %lld", (long long)at);
    lm_epochs_free(&e);
  }
  /* a group larger than the data sorts each epoch whole */
  lm_epochs e;
  cr_assert_eq(lm_epochs_init(&e, N, 9, 5, NULL), LM_OK);
  cr_assert_eq(lm_epochs_group_by_length(&e, len, 10 * N), LM_OK);
  int64_t prev = lm_epochs_next(&e);
  for (int64_t i = 1; i < N; i++) { int64_t x = lm_epochs_next(&e); cr_assert_geq(len[prev], len[x]); prev = x; }
  cr_assert_neq(lm_epochs_group_by_length(&e, len, 0), LM_OK);
  lm_epochs_free(&e);
  free(len); free(plain); free(grouped); free(again); free(a); free(b);
}
