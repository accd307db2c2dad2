/* test_objectives.c — MLM corruption rates and exclusions, NSP pair layout and labels. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include "train/objectives/objectives.h"

Test(mlm, rates_and_exclusions) {
  enum { N = 200000, V = 100, MASK = 3 };
  int32_t *ids = malloc(N * 4), *orig = malloc(N * 4), *labels = malloc(N * 4);
  uint8_t *attn = malloc(N), special[V] = {0};
  special[0] = special[1] = special[2] = special[MASK] = 1;   /* pad, cls, sep, mask */
  lm_rng r; lm_rng_seed(&r, 1);
  for (int i = 0; i < N; i++) {
    orig[i] = ids[i] = i % 50 == 0 ? 1 : 4 + (int32_t)lm_rng_below(&r, V - 4);
    attn[i] = i % 10 != 9;                                    /* every 10th token is padding */
  }
  lm_mlm_opts o = {.mask_id = MASK, .vocab_size = V, .prob = 0.15f, .special = special};
  lm_rng_seed(&r, 2);
  int64_t chosen = lm_mlm_mask(&r, &o, ids, attn, labels, N);
  int64_t eligible = 0, masked = 0, same = 0, random = 0;
  for (int i = 0; i < N; i++) {
    if (attn[i] && !special[orig[i]]) eligible++;
    if (labels[i] < 0) { cr_assert_eq(ids[i], orig[i], "unchosen tokens are untouched"); continue; }
    cr_assert(attn[i], "padding is never chosen");
    cr_assert(!special[orig[i]], "special tokens are never chosen");
    cr_assert_eq(labels[i], orig[i]);
    if (ids[i] == MASK) masked++; else if (ids[i] == orig[i]) same++; else { random++; cr_assert(!special[ids[i]]); }
  }
  double p = (double)chosen / eligible;
  cr_assert(p > 0.14 && p < 0.16, "chosen share %f", p);
  cr_assert(masked > 0.78 * chosen && masked < 0.82 * chosen);
  /* 'same' includes random draws that hit the original id (1/96 of the random 10%) */
  cr_assert(same > 0.085 * chosen && same < 0.115 * chosen, "unchanged share %f", (double)same / chosen);
  cr_assert(random > 0.085 * chosen && random < 0.115 * chosen);
  /* same rng state, same corruption */
  int32_t *ids2 = malloc(N * 4), *labels2 = malloc(N * 4);
  for (int i = 0; i < N; i++) ids2[i] = orig[i];
  lm_rng_seed(&r, 2);
  lm_mlm_mask(&r, &o, ids2, attn, labels2, N);
  for (int i = 0; i < N; i++) cr_assert(ids2[i] == ids[i] && labels2[i] == labels[i]);
  free(ids); free(orig); free(labels); free(attn); free(ids2); free(labels2);
}

Test(nsp, pair_layout_and_labels) {
  /* three documents of distinct id ranges separated by SEP = 2 */
  enum { CLS = 1, SEP = 2, PAD = 0, T = 24 };
  uint32_t stream[400];
  uint64_t n = 0;
  for (int d = 0; d < 3; d++) {
    for (int i = 0; i < 100; i++) stream[n++] = 100 * (d + 1) + i;
    stream[n++] = SEP;
  }
  lm_pair_source s;
  cr_assert_eq(lm_pair_source_init(&s, stream, n, SEP, 0, CLS, SEP, PAD), LM_OK);
  cr_assert_eq(s.n_docs, 3);
  lm_rng r; lm_rng_seed(&r, 9);
  int32_t ids[T], seg[T];
  uint8_t mask[T];
  int labels[2] = {0};
  for (int k = 0; k < 2000; k++) {
    int32_t label = lm_pair_make(&s, &r, T, 1, ids, seg, mask);
    cr_assert(label == 0 || label == 1);
    labels[label]++;
    cr_assert_eq(ids[0], CLS);
    int sep1 = -1, sep2 = -1;
    for (int t = 1; t < T; t++) if (ids[t] == SEP) { if (sep1 < 0) sep1 = t; else if (sep2 < 0) sep2 = t; }
    cr_assert(sep1 > 1 && sep2 > sep1 + 1, "both segments are non-empty");
    for (int t = 0; t < T; t++) {
      cr_assert_eq(mask[t], t <= sep2);
      cr_assert_eq(seg[t], t > sep1 && t <= sep2 ? 1 : 0);
      if (t > sep2) cr_assert_eq(ids[t], PAD);
    }
    int doc_a = ids[1] / 100, doc_b = ids[sep1 + 1] / 100;
    if (label == 0) cr_assert(doc_a == doc_b && ids[sep1 + 1] == ids[sep1 - 1] + 1, "is-next B continues A");
    else cr_assert_neq(doc_a, doc_b, "random B comes from another document");
  }
  cr_assert(labels[0] > 900 && labels[1] > 900, "labels are balanced: %d / %d", labels[0], labels[1]);
  /* MLM-only: one segment */
  cr_assert_eq(lm_pair_make(&s, &r, T, 0, ids, seg, mask), -1);
  cr_assert_eq(ids[0], CLS);
  lm_pair_source_free(&s);
  /* one long document is cut into pieces of max_doc tokens */
  cr_assert_eq(lm_pair_source_init(&s, stream, 100, -1, 30, CLS, SEP, PAD), LM_OK);
  cr_assert_eq(s.n_docs, 4);
  lm_pair_source_free(&s);
  uint32_t none[3] = {SEP, 5, SEP};
  cr_assert_neq(lm_pair_source_init(&s, none, 3, SEP, 0, CLS, SEP, PAD), LM_OK);
}
