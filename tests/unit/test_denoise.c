/* test_denoise.c — BART's noising functions (src/train/objectives/denoise.c), each on its own, by
 * their statistics over thousands of sequences of a made-up vocabulary (ids 4.. are words of one to
 * three tokens: even ids start a word, odd ones continue it; 3 is a full stop):
 *   - Poisson(3) draws have mean 3 and variance 3;
 *   - text infilling spends exactly ceil(words * ratio) words in spans whose lengths average lambda,
 *     hides whole words (after a <mask> comes a word start), about the ratio of words disappears,
 *     and zero-length spans insert a <mask>;
 *   - sentence permutation keeps the multiset of sentences and reorders them;
 *   - token deletion removes round(n p) tokens and keeps the rest in order;
 *   - document rotation is a rotation, taken with its probability;
 *   - random insertion adds k ordinary tokens around the input, kept in order;
 * and a tokenizer without <mask> is an error naming it. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "base/base.h"
#include "model/model.h"
#include "train/objectives/denoise.h"

enum { V = 64, PAD = 0, EOS = 1, MASK = 2, STOP = 3, N = 200 };

static lm_denoiser make(float mask, double lambda) {
  uint8_t ws[V] = {0}, se[V] = {0};
  for (int v = 4; v < V; v += 2) ws[v] = 1;
  se[STOP] = 1;
  lm_denoise_opts o = {.mask_ratio = mask, .poisson_lambda = (float)lambda};
  lm_denoiser d;
  cr_assert_eq(lm_denoiser_init_tables(&d, &o, V, MASK, ws, se, N), LM_OK);
  static uint8_t special[V] = {1, 1, 1};
  d.special = special;
  return d;
}

/* a document of words (1-3 tokens) and sentences (3-12 words, a full stop), n tokens */
static int64_t words(lm_rng *r, int32_t *x, int64_t n) {
  int64_t i = 0, W = 0, in_sentence = 0, len = 3 + lm_rng_below(r, 10);
  while (i < n) {
    if (in_sentence == len) { x[i++] = STOP; in_sentence = 0; len = 3 + lm_rng_below(r, 10); continue; }
    x[i++] = 4 + 2 * (int32_t)lm_rng_below(r, 30);
    W++; in_sentence++;
    for (uint32_t k = lm_rng_below(r, 3); k > 0 && i < n; k--) x[i++] = 5 + 2 * (int32_t)lm_rng_below(r, 29);
  }
  return W;
}

/* is a a subsequence of b? */
static int subsequence(const int32_t *a, int64_t na, const int32_t *b, int64_t nb) {
  int64_t j = 0;
  for (int64_t i = 0; i < nb && j < na; i++) if (b[i] == a[j]) j++;
  return j == na;
}

Test(denoise, poisson) {
  lm_rng r; lm_rng_seed(&r, 1);
  double s = 0, s2 = 0;
  int n = 200000;
  for (int i = 0; i < n; i++) { double k = (double)lm_poisson(&r, 3.0); s += k; s2 += k * k; }
  double mean = s / n, var = s2 / n - mean * mean;
  cr_assert(fabs(mean - 3) < 0.02 && fabs(var - 3) < 0.05, "Poisson(3): mean %g variance %g", mean, var);
}

Test(denoise, infilling) {
  lm_denoiser d = make(0.3f, 3.0);
  lm_rng r; lm_rng_seed(&r, 2);
  int32_t x[3 * N + 8], in[N];
  double drawn = 0, n_drawn = 0, hidden = 0, total_words = 0;
  for (int s = 0; s < 3000; s++) {
    int64_t W = words(&r, in, N);
    memcpy(x, in, sizeof in);
    int64_t n = lm_denoise_infill(&d, &r, x, N, 0.3f, 3.0);
    cr_assert_eq(d.last_words, W);
    cr_assert_eq(d.last_budget, (int64_t)ceil(W * 0.3));
    int64_t sum = 0;
    for (int64_t i = 0; i < d.n_drawn; i++) sum += d.drawn[i];
    cr_assert_eq(sum, d.last_budget, "the spans spend the budget exactly");
    for (int64_t i = 0; i + 1 < d.n_drawn; i++) drawn += (double)d.drawn[i];
    drawn += (double)d.last_raw;   /* the last as drawn, before its trimming to the budget */
    n_drawn += (double)d.n_drawn;
    int64_t out_words = 0;
    int64_t zeros = 0;   /* zero-length spans insert <mask> anywhere, mid-word too (as fairseq) */
    for (int64_t i = 0; i < d.n_drawn; i++) zeros += d.drawn[i] == 0;
    for (int64_t i = 0; i < n; i++) {
      if (x[i] != MASK) { out_words += x[i] >= 4 && x[i] % 2 == 0; continue; }
      cr_assert(zeros || i + 1 == n || x[i + 1] == MASK || x[i + 1] == STOP || (x[i + 1] >= 4 && x[i + 1] % 2 == 0),
                "a span ends at a word boundary: %d follows <mask>", x[i + 1]);
    }
    hidden += (double)(W - out_words);
    total_words += (double)W;
  }
  double mean = drawn / n_drawn, ratio = hidden / total_words;
  cr_assert(fabs(mean - 3) < 0.1, "mean span length %g (Poisson(3))", mean);
  /* spans may overlap (as fairseq's), so slightly fewer than 30% of the words disappear */
  cr_assert(ratio > 0.25 && ratio <= 0.305, "%.4f of the words hidden for --mask-ratio 0.3", ratio);
  lm_denoiser_free(&d);
}

Test(denoise, zero_length_spans_insert_a_mask) {
  lm_denoiser d = make(0.3f, 0.5);
  lm_rng r; lm_rng_seed(&r, 3);
  int32_t x[3 * N + 8];
  int64_t zeros_total = 0;
  for (int s = 0; s < 500; s++) {
    words(&r, x, N);
    int64_t n = lm_denoise_infill(&d, &r, x, N, 0.3f, 0.5), zeros = 0, masks = 0;
    for (int64_t i = 0; i < d.n_drawn; i++) zeros += d.drawn[i] == 0;
    for (int64_t i = 0; i < n; i++) masks += x[i] == MASK;
    cr_assert_geq(masks, zeros, "each zero-length span inserts a <mask>");
    zeros_total += zeros;
  }
  cr_assert_gt(zeros_total, 1000);
  lm_denoiser_free(&d);
}

/* sentences of x as sorted strings, for comparing multisets */
static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }
static int sentences(const int32_t *x, int64_t n, char **out) {
  int k = 0;
  char buf[4 * N];
  size_t len = 0;
  for (int64_t i = 0; i < n; i++) {
    len += (size_t)snprintf(buf + len, sizeof buf - len, "%d,", x[i]);
    if ((x[i] == STOP && (i + 1 == n || x[i + 1] != STOP)) || i + 1 == n) { out[k++] = strdup(buf); len = 0; }
  }
  qsort(out, (size_t)k, sizeof *out, cmp_str);
  return k;
}

Test(denoise, sentence_permutation) {
  lm_denoiser d = make(0, 3);
  lm_rng r; lm_rng_seed(&r, 4);
  int32_t x[3 * N + 8], in[N];
  int changed = 0;
  for (int s = 0; s < 1000; s++) {
    words(&r, in, N);
    in[N - 1] = STOP;   /* the last sentence ends too: a moved one then stays a sentence */
    if (in[N - 2] == STOP) in[N - 2] = 4;
    memcpy(x, in, sizeof in);
    cr_assert_eq(lm_denoise_permute(&d, &r, x, N, 1.0f), N);
    char *a[N], *b[N];
    int na = sentences(in, N, a), nb = sentences(x, N, b);
    cr_assert_eq(na, nb);
    for (int i = 0; i < na; i++) { cr_assert_str_eq(a[i], b[i], "the multiset of sentences is kept"); free(a[i]); free(b[i]); }
    changed += memcmp(x, in, sizeof in) != 0;
  }
  cr_assert_gt(changed, 990, "every sentence permuted: the order changes (%d of 1000)", changed);
  lm_denoiser_free(&d);
}

Test(denoise, token_deletion) {
  lm_denoiser d = make(0, 3);
  lm_rng r; lm_rng_seed(&r, 5);
  int32_t x[3 * N + 8], in[N];
  for (int s = 0; s < 1000; s++) {
    words(&r, in, N);
    memcpy(x, in, sizeof in);
    int64_t n = lm_denoise_delete(&d, &r, x, N, 0.15f);
    cr_assert_eq(n, N - 30, "round(200 * 0.15) = 30 tokens deleted");
    cr_assert(subsequence(x, n, in, N), "the kept tokens stay in order");
  }
  lm_denoiser_free(&d);
}

Test(denoise, document_rotation) {
  lm_denoiser d = make(0, 3);
  lm_rng r; lm_rng_seed(&r, 6);
  int32_t x[3 * N + 8], in[N];
  int rotated = 0, trials = 4000;
  for (int s = 0; s < trials; s++) {
    for (int i = 0; i < N; i++) in[i] = 4 + i % 59;   /* in[0] = 4 appears at 0, 59, 118, 177: the offset is unique */
    memcpy(x, in, sizeof in);
    cr_assert_eq(lm_denoise_rotate(&d, &r, x, N, 0.5f), N);
    int64_t off = -1;
    for (int64_t o = 0; o < N && off < 0; o++)
      if (!memcmp(x, in + o, (size_t)(N - o) * 4) && !memcmp(x + (N - o), in, (size_t)o * 4)) off = o;
    cr_assert_geq(off, 0, "the output is a rotation of the input");
    rotated += off != 0;
  }
  cr_assert(fabs((double)rotated / trials - 0.5) < 0.03, "rotated %d of %d for --rotate 0.5", rotated, trials);
  lm_denoiser_free(&d);
}

Test(denoise, random_insertion) {
  lm_denoiser d = make(0, 3);
  lm_rng r; lm_rng_seed(&r, 7);
  int32_t x[3 * N + 8], in[N];
  for (int s = 0; s < 1000; s++) {
    words(&r, in, N);
    memcpy(x, in, sizeof in);
    int64_t n = lm_denoise_insert(&d, &r, x, N, 20, 1);
    cr_assert_eq(n, N + 20);
    cr_assert(subsequence(in, N, x, n), "the input stays in order around the insertions");
    for (int64_t i = 0; i < n; i++) cr_assert(x[i] > MASK, "inserted tokens are ordinary (not pad, eos, <mask>)");
  }
  lm_denoiser_free(&d);
}

Test(denoise, tokenizer_without_mask) {
  lm_config c;
  lm_config_default(&c, LM_ARCH_BART);
  lm_tokenizer *tok;
  cr_assert_eq(lm_tokenizer_load(&tok, "byte"), LM_OK);
  c.vocab_size = lm_tokenizer_vocab_size(tok);
  c.n_positions = 32; c.n_embd = 16; c.n_head = 2; c.n_inner = 32; c.n_enc_layer = 1; c.n_layer = 1;
  lm_model *m;
  cr_assert_eq(lm_model_create(&m, &c, 1), LM_OK, "%s", lm_last_error());
  uint32_t ids[512];
  for (int i = 0; i < 512; i++) ids[i] = (uint32_t)(i % 250);
  lm_stream s = {.ids = ids, .n = 512};
  lm_denoise_opts o = {.mask_ratio = 0.3f, .poisson_lambda = 3, .permute = 1};
  lm_rng r; lm_rng_seed(&r, 1);
  lm_objective obj;
  cr_assert_neq(lm_objective_denoise(&obj, m, tok, &s, NULL, 2, 16, &o, &r, 0, 1), LM_OK);
  cr_assert(strstr(lm_last_error(), "<mask>"), "%s", lm_last_error());
  o.mask_ratio = 0;   /* permutation alone needs no <mask> */
  cr_assert_eq(lm_objective_denoise(&obj, m, tok, &s, NULL, 2, 16, &o, &r, 0, 1), LM_OK, "%s", lm_last_error());
  cr_assert(!isnan(obj.micro(obj.self, m)));
  obj.free(obj.self);
  lm_tokenizer_free(tok);
  lm_model_free(m);
}
