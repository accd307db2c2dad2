/* test_beam.c — beam search (src/infer/beam.c) against an exhaustive reference.
 *
 * With a vocabulary of 4 and at most 4 generated tokens, 128 beams never prune: every
 * sequence is a hypothesis, so HF's beam search must return the best of all of them. The
 * reference enumerates every sequence (end token only last; shorter than 4 only when it ends
 * with it), scores it by a full forward of the model (no cache: lm_forward) as
 * sum log p / length^penalty, drops those that repeat an n-gram when no_repeat_ngram is on,
 * and takes the best. For a GPT-2 decoder (lm_fwd caches), a T5 and a BART (lm_encdec decoders,
 * pre-LN with relative positions and post-LN with learned ones). With
 * few beams (pruning, caches copied between slots) the returned score must still be the full
 * forward's score of the returned sequence; 1 beam is greedy; no n-gram repeats; bad options
 * are errors. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "base/base.h"
#include "model/model.h"
#include "model/heads.h"
#include "infer/beam.h"
#include "infer/encdec.h"
#include "infer/infer.h"

/* kind: 0 GPT-2, 1 T5, 2 BART (every test's `t5` flag is "an encoder-decoder": kind > 0) */
static const char *NAME[] = {"gpt2", "t5", "bart"};
static lm_model *tiny(int kind, int64_t V) {
  static const lm_arch arch[] = {LM_ARCH_GPT2, LM_ARCH_T5, LM_ARCH_BART};
  lm_config c;
  lm_config_default(&c, arch[kind]);
  c.vocab_size = V; c.n_positions = 48; c.n_embd = 16; c.n_head = 2; c.n_layer = 2;
  if (kind == 1) { c.head_dim = 8; c.n_inner = 24; c.n_enc_layer = 2; c.rel_buckets = 8; c.rel_max_distance = 12; }
  else if (kind == 2) { c.n_inner = 24; c.n_enc_layer = 2; c.init_std = 0.3f; }
  else c.init_std = 0.3f;   /* sharp logits: no near-ties between sequences */
  lm_model *m;
  cr_assert_eq(lm_model_create(&m, &c, kind ? 5 : 11), LM_OK, "%s", lm_last_error());
  if (kind == 1) for (size_t i = 0; i < m->n_params; i++) m->params[i] *= 3.0f;   /* the same, through T5's norms */
  cr_assert_eq(lm_model_reserve(m, 1, c.n_positions, 0), LM_OK, "%s", lm_last_error());
  return m;
}

static const int32_t ENC[] = {2, 3, 2, 1};   /* the T5's input; the decoder's is its start token */
static const int32_t PROMPT[] = {1, 2, 3};   /* the decoder's prompt */

/* the slots of either kind, over the test's input */
static lm_beam_model *slots(lm_model *m, int beams, int64_t max_new, lm_beam_ops *ops, const float **first,
                            const int32_t **prefix, int64_t *np) {
  lm_beam_model *b;
  int t5 = m->cfg.n_enc_layer > 0;
  lm_status st = t5 ? lm_beam_encdec_init(&b, m, beams, ENC, 4, max_new, ops, first)
                    : lm_beam_decoder_init(&b, m, beams, PROMPT, 3, max_new, ops, first);
  cr_assert_eq(st, LM_OK, "%s", lm_last_error());
  static int32_t start;
  start = (int32_t)m->cfg.decoder_start_token_id;
  *prefix = t5 ? &start : PROMPT; *np = t5 ? 1 : 3;
  return b;
}

/* sum of log p of gen (n) after the prefix, by a full forward of prefix + gen */
static double full_logprob(lm_model *m, const int32_t *gen, int64_t n) {
  int t5 = m->cfg.n_enc_layer > 0;
  int64_t V = m->cfg.vocab_size, np = t5 ? 1 : 3;
  int32_t seq[64];
  if (t5) seq[0] = (int32_t)m->cfg.decoder_start_token_id;
  else memcpy(seq, PROMPT, sizeof PROMPT);
  memcpy(seq + np, gen, n * sizeof(int32_t));
  lm_batch b = {.ids = seq, .enc_ids = t5 ? ENC : NULL, .B = 1, .T = np + n - 1, .S = t5 ? 4 : 0};
  lm_forward(m, &b, NULL, NULL);
  double sum = 0;
  for (int64_t k = 0; k < n; k++) {
    const float *row = lm_model_logits(m) + (np - 1 + k) * V;
    double mx = -INFINITY, z = 0;
    for (int64_t v = 0; v < V; v++) mx = fmax(mx, row[v]);
    for (int64_t v = 0; v < V; v++) z += exp(row[v] - mx);
    sum += row[gen[k]] - mx - log(z);
  }
  return sum;
}

/* does the token at position i of seq (len) complete an n-gram seen before it? */
static int repeats(const int32_t *seq, int64_t i, int ng) {
  if (ng <= 0 || i + 1 < ng) return 0;
  for (int64_t j = 0; j + ng <= i; j++)
    if (!memcmp(seq + j, seq + i + 1 - ng, ng * sizeof(int32_t))) return 1;
  return 0;
}

static void exhaustive(int t5, float lp, int ng, int32_t eos) {   /* eos -1: 0 for GPT-2, the T5's own */
  const int64_t V = 4, L = 4;
  lm_model *m = tiny(t5, V);
  if (eos < 0) eos = t5 ? (int32_t)m->cfg.eos_token_id : 0;
  /* the reference: every sequence of 1..L tokens, the end token last or not at all (then L long) */
  double best = -INFINITY; int32_t bseq[8]; int64_t bn = 0;
  for (int64_t n = 1; n <= L; n++) {
    int64_t count = 1;
    for (int64_t k = 0; k < n; k++) count *= V;
    for (int64_t code = 0; code < count; code++) {
      int32_t g[8], full[16]; int64_t x = code, ok = 1;
      for (int64_t k = 0; k < n; k++) { g[k] = (int32_t)(x % V); x /= V; }
      for (int64_t k = 0; k < n; k++) ok &= (g[k] == eos) == (k == n - 1) || (g[k] != eos && n == L && k == n - 1);
      if (!ok) continue;
      int64_t np = t5 ? 1 : 3;
      if (t5) full[0] = (int32_t)m->cfg.decoder_start_token_id; else memcpy(full, PROMPT, sizeof PROMPT);
      memcpy(full + np, g, n * sizeof(int32_t));
      for (int64_t k = 0; k < n && ok; k++) ok = !repeats(full, np + k, ng);
      if (!ok) continue;
      double s = full_logprob(m, g, n) / pow((double)n, lp);
      if (s > best) { best = s; bn = n; memcpy(bseq, g, n * sizeof(int32_t)); }
    }
  }
  lm_beam_ops ops; const float *first; const int32_t *prefix; int64_t np;
  lm_beam_model *b = slots(m, 128, L, &ops, &first, &prefix, &np);
  lm_beam_opts o = {.beams = 128, .length_penalty = lp, .no_repeat_ngram = ng, .max_new = L, .eos = &eos, .n_eos = 1};
  int32_t *out; int64_t n; double score;
  cr_assert_eq(lm_beam_search(&ops, first, prefix, np, &o, &out, &n, &score), LM_OK, "%s", lm_last_error());
  cr_assert_eq(n, bn, "%s lp %g ngram %d: best hypothesis of %lld tokens, the reference's %lld", NAME[t5], lp, ng,
               (long long)n, (long long)bn);
  for (int64_t k = 0; k < n; k++) cr_assert_eq(out[k], bseq[k], "token %lld: %d, the reference's %d", (long long)k, out[k], bseq[k]);
  cr_assert_lt(fabs(score - best) / fabs(best), 1e-5, "score %.9g, the reference's %.9g", score, best);
  free(out);
  lm_beam_model_free(b);
  lm_model_free(m);
}

/* with the end token 0 (GPT-2) or 1 (T5) the best hypothesis runs to max_new; with 3 (GPT-2) or 2 (T5),
 * the first step's likeliest, it is that token alone; with 3 (T5) it ends after 2 tokens */
Test(beam, gpt2_equals_exhaustive) {
  exhaustive(0, 1.0f, 0, -1); exhaustive(0, 2.0f, 0, -1); exhaustive(0, 0.0f, 0, -1); exhaustive(0, -1.0f, 0, -1);
  exhaustive(0, 1.0f, 0, 3); exhaustive(0, 0.5f, 0, 3);
}
Test(beam, gpt2_no_repeat_equals_exhaustive) { exhaustive(0, 1.0f, 2, -1); exhaustive(0, 1.0f, 1, -1); exhaustive(0, 1.0f, 2, 3); }
Test(beam, bart_equals_exhaustive) {
  exhaustive(2, 1.0f, 0, -1); exhaustive(2, 2.0f, 0, -1); exhaustive(2, 0.5f, 2, -1); exhaustive(2, -1.0f, 0, -1);
  exhaustive(2, 1.0f, 0, 3); exhaustive(2, 1.0f, 2, 3); exhaustive(2, 1.0f, 0, 0);
}
Test(beam, t5_equals_exhaustive) {
  exhaustive(1, 1.0f, 0, -1); exhaustive(1, 2.0f, 0, -1); exhaustive(1, 0.5f, 2, -1); exhaustive(1, -1.0f, 0, -1);
  exhaustive(1, 1.0f, 0, 2); exhaustive(1, 1.0f, 2, 2); exhaustive(1, 1.0f, 0, 3); exhaustive(1, -1.0f, 0, 3);
}

/* few beams: pruned, slots copied; the answer's score is the full forward's of its tokens */
static void pruned(int t5, int early, int ng, int beams) {
  lm_model *m = tiny(t5, 12);
  int32_t eos = t5 ? (int32_t)m->cfg.eos_token_id : 0;
  lm_beam_ops ops; const float *first; const int32_t *prefix; int64_t np;
  lm_beam_model *b = slots(m, beams, 20, &ops, &first, &prefix, &np);
  lm_beam_opts o = {.beams = beams, .length_penalty = 1.0f, .early_stopping = early, .no_repeat_ngram = ng, .max_new = 20,
                    .eos = &eos, .n_eos = 1};
  int32_t *out; int64_t n; double score;
  cr_assert_eq(lm_beam_search(&ops, first, prefix, np, &o, &out, &n, &score), LM_OK, "%s", lm_last_error());
  double ref = full_logprob(m, out, n) / n;
  cr_assert_lt(fabs(score - ref) / fabs(ref), 1e-5, "score %.9g, the full forward's %.9g", score, ref);
  int32_t full[64];
  memcpy(full, prefix, np * sizeof(int32_t)); memcpy(full + np, out, n * sizeof(int32_t));
  for (int64_t k = 0; k < n; k++) cr_assert(!repeats(full, np + k, ng), "token %lld repeats a %d-gram", (long long)k, ng);
  free(out);
  lm_beam_model_free(b);
  lm_model_free(m);
}

Test(beam, pruned_scores_are_the_full_forwards) {
  for (int t5 = 0; t5 < 3; t5++) { pruned(t5, 0, 0, 3); pruned(t5, 1, 0, 5); pruned(t5, 0, 2, 4); pruned(t5, 1, 3, 2); }
}

/* one beam is greedy: the argmax at every step, until the end token */
Test(beam, one_beam_is_greedy) {
  for (int t5 = 0; t5 < 3; t5++) {
    lm_model *m = tiny(t5, 12);
    int32_t eos = t5 ? (int32_t)m->cfg.eos_token_id : 0;
    lm_beam_ops ops; const float *first; const int32_t *prefix; int64_t np;
    lm_beam_model *b = slots(m, 1, 20, &ops, &first, &prefix, &np);
    lm_beam_opts o = {.beams = 1, .length_penalty = 1.0f, .max_new = 20, .eos = &eos, .n_eos = 1};
    int32_t *out; int64_t n;
    cr_assert_eq(lm_beam_search(&ops, first, prefix, np, &o, &out, &n, NULL), LM_OK, "%s", lm_last_error());
    int32_t g[32]; int64_t ng = 0;
    for (; ng < 20; ng++) {   /* greedy by full forwards */
      lm_batch bt = {.ids = NULL, .enc_ids = t5 ? ENC : NULL, .B = 1, .S = t5 ? 4 : 0};
      int32_t seq[64];
      memcpy(seq, prefix, np * sizeof(int32_t)); memcpy(seq + np, g, ng * sizeof(int32_t));
      bt.ids = seq; bt.T = np + ng;
      lm_forward(m, &bt, NULL, NULL);
      const float *row = lm_model_logits(m) + (np + ng - 1) * m->cfg.vocab_size;
      int32_t a = 0;
      for (int32_t v = 1; v < m->cfg.vocab_size; v++) if (row[v] > row[a]) a = v;
      g[ng] = a;
      if (a == eos) { ng++; break; }
    }
    cr_assert_eq(n, ng, "%s: %lld tokens by one beam, %lld greedy", NAME[t5], (long long)n, (long long)ng);
    for (int64_t k = 0; k < n; k++) cr_assert_eq(out[k], g[k], "token %lld", (long long)k);
    free(out);
    lm_beam_model_free(b);
    lm_model_free(m);
  }
}

Test(beam, bad_options_are_errors) {
  lm_model *m = tiny(0, 12);
  int32_t eos = 0;
  lm_beam_ops ops; const float *first; const int32_t *prefix; int64_t np;
  lm_beam_model *b = slots(m, 2, 5, &ops, &first, &prefix, &np);
  int32_t *out; int64_t n;
  lm_beam_opts o = {.beams = 0, .length_penalty = 1.0f, .max_new = 5, .eos = &eos, .n_eos = 1};
  cr_assert_eq(lm_beam_search(&ops, first, prefix, np, &o, &out, &n, NULL), LM_ERR_ARG);
  cr_assert(strstr(lm_last_error(), "beam"), "%s", lm_last_error());
  o.beams = 2; o.length_penalty = NAN;
  cr_assert_eq(lm_beam_search(&ops, first, prefix, np, &o, &out, &n, NULL), LM_ERR_ARG);
  cr_assert(strstr(lm_last_error(), "length penalty"), "%s", lm_last_error());
  o.length_penalty = 1.0f; o.no_repeat_ngram = -1;
  cr_assert_eq(lm_beam_search(&ops, first, prefix, np, &o, &out, &n, NULL), LM_ERR_ARG);
  lm_beam_model_free(b);
  lm_beam_model *b2;
  cr_assert_eq(lm_beam_decoder_init(&b2, m, 2, PROMPT, 3, 46, &ops, &first), LM_ERR_RANGE, "past the context");
  lm_model_free(m);
}

static int collect(const char *piece, size_t len, void *user) {
  char *s = user;
  strncat(s, piece, len < 4000 - strlen(s) ? len : 4000 - strlen(s));
  return 0;
}

/* lm_generate --beams 1 prints what greedy lm_generate prints (the prompt handling of both kinds) */
Test(beam, generate_with_one_beam_is_greedy_generate) {
  lm_tokenizer *tok;
  cr_assert_eq(lm_tokenizer_load(&tok, "byte"), LM_OK);
  for (int t5 = 0; t5 < 2; t5++) {
    lm_model *m = tiny(t5, lm_tokenizer_vocab_size(tok) + 3);
    lm_gen_opts o;
    lm_gen_opts_default(&o);
    o.temperature = 0; o.max_tokens = 16;
    char a[4096] = "", b[4096] = "";
    lm_gen_stats ga, gb;
    cr_assert_eq(lm_generate(m, tok, "the cat", &o, collect, a, &ga), LM_OK, "%s", lm_last_error());
    o.beams = 1;
    cr_assert_eq(lm_generate(m, tok, "the cat", &o, collect, b, &gb), LM_OK, "%s", lm_last_error());
    cr_assert_str_eq(a, b, "%s: greedy '%s', one beam '%s'", NAME[t5], a, b);
    cr_assert_eq(ga.generated_tokens, gb.generated_tokens);
    cr_assert_eq(ga.stop_token, gb.stop_token);
    lm_model_free(m);
  }
  lm_tokenizer_free(tok);
}
