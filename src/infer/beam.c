/* beam.c — beam search with the semantics of Hugging Face transformers'
 * BeamSearchScorer (generation/beam_search.py), for one input.
 *
 * N beams run side by side, each in its own slot (a cache: beam.h's
 * lm_beam_ops). A step turns each beam's logits into log-probabilities
 * (log_softmax; tokens that would repeat an n-gram get -inf), adds the beam's
 * running sum, and takes the max(2, 1 + n_eos) * N best (beam, token) pairs
 * over all beams. In that order: an end token among the first N finishes a
 * hypothesis, scored sum / (generated tokens, end included)^length_penalty,
 * into a heap of the N best finished ones; the other pairs become the next N
 * beams. The first step expands beam 0 only (the others start at -1e9).
 * Search ends when the heap is full and (early_stopping) at once, or (not)
 * when the best pair of the step, divided by the current length^penalty,
 * cannot beat the heap's worst; or at max_new tokens, when the running beams
 * join the heap. The best of the heap is the answer.
 *
 * Reordering beams does not copy every cache: a new beam takes over its
 * parent's slot when it is the parent's first child, and only the other
 * children copy the parent into a slot no new beam descends from. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "base/base.h"
#include "model/model.h"
#include "infer/beam.h"
#include "infer/detok.h"
#include "infer/encdec.h"
#include "infer/infer.h"

typedef struct { double score; int64_t flat; } cand;   /* flat = beam * V + token */

static int cand_cmp(const void *pa, const void *pb) {   /* best first; ties: the lower (beam, token) */
  const cand *a = pa, *b = pb;
  if (a->score != b->score) return a->score > b->score ? -1 : 1;
  return a->flat < b->flat ? -1 : a->flat > b->flat;
}

/* the finished hypotheses: at most N, with the worst score as HF keeps it */
typedef struct {
  int n, N;
  double worst, lp;
  double *score;        /* (N+1) */
  int64_t *len;         /* (N+1) tokens generated */
  int32_t *tok;         /* (N+1, max_new) */
  int64_t max_new;
} hyps;

static void hyps_add(hyps *h, const int32_t *toks, int64_t len, double sum) {
  double s = sum / pow((double)len, h->lp);
  if (h->n >= h->N && !(s > h->worst)) return;
  h->score[h->n] = s; h->len[h->n] = len;
  memcpy(h->tok + (size_t)h->n * h->max_new, toks, (size_t)len * sizeof(int32_t));
  h->n++;
  if (h->n > h->N) {   /* drop the worst (the first of equals), the next worst is the new bar */
    int w = 0;
    for (int i = 1; i < h->n; i++) if (h->score[i] < h->score[w]) w = i;
    for (int i = w; i + 1 < h->n; i++) {
      h->score[i] = h->score[i + 1]; h->len[i] = h->len[i + 1];
      memcpy(h->tok + (size_t)i * h->max_new, h->tok + (size_t)(i + 1) * h->max_new, (size_t)h->max_new * sizeof(int32_t));
    }
    h->n--;
    h->worst = h->score[0];
    for (int i = 1; i < h->n; i++) if (h->score[i] < h->worst) h->worst = h->score[i];
  } else if (s < h->worst) {
    h->worst = s;
  }
}

static int hyps_done(const hyps *h, int early, double best_sum, int64_t cur) {
  if (h->n < h->N) return 0;
  if (early) return 1;
  return h->worst >= best_sum / pow((double)cur, h->lp);
}

/* row (V) := log_softmax(logits) with the tokens that would repeat an n-gram of seq (len) at -inf */
static void log_probs(double *row, const float *logits, int64_t V, const int32_t *seq, int64_t len, int ngram) {
  double mx = -INFINITY, sum = 0;
  for (int64_t v = 0; v < V; v++) mx = logits[v] > mx ? logits[v] : mx;
  for (int64_t v = 0; v < V; v++) sum += exp((double)logits[v] - mx);
  double lse = mx + log(sum);
  for (int64_t v = 0; v < V; v++) row[v] = (double)logits[v] - lse;
  if (ngram <= 0 || len + 1 < ngram) return;
  const int32_t *tail = seq + len - (ngram - 1);   /* the n-1 tokens a new token would complete an n-gram with */
  for (int64_t i = 0; i + ngram <= len; i++)
    if (!memcmp(seq + i, tail, (size_t)(ngram - 1) * sizeof(int32_t))) row[seq[i + ngram - 1]] = -INFINITY;
}

lm_status lm_beam_search(const lm_beam_ops *ops, const float *first, const int32_t *prefix, int64_t n_prefix,
                         const lm_beam_opts *o, int32_t **out, int64_t *n_out, double *score) {
  *out = NULL; *n_out = 0;
  int N = o->beams;
  int64_t V = ops->V, M = o->max_new, SL = n_prefix + M;
  if (N < 1) return lm_error(LM_ERR_ARG, "beam search needs at least 1 beam (got %d)", N);
  if (!isfinite(o->length_penalty)) return lm_error(LM_ERR_ARG, "the length penalty must be a finite number");
  if (M < 1) return lm_error(LM_ERR_ARG, "beam search needs at least 1 token to generate");
  if (o->no_repeat_ngram < 0) return lm_error(LM_ERR_ARG, "no_repeat_ngram must be >= 0 (got %d)", o->no_repeat_ngram);
  int64_t K = (int64_t)(o->n_eos + 1 > 2 ? o->n_eos + 1 : 2) * N;   /* candidates per step, as HF takes them */
  if (K > N * V) K = N * V;
  int64_t nc = N * K;
  double *lp = malloc((size_t)V * sizeof(double)), *bscore = malloc(N * sizeof(double)), *nscore = malloc(N * sizeof(double));
  cand *cs = malloc((size_t)nc * sizeof(cand));
  int32_t *seq = malloc((size_t)N * SL * sizeof(int32_t)), *nseq = malloc((size_t)N * SL * sizeof(int32_t));
  int32_t *ntok = malloc(N * sizeof(int32_t));
  int *slot = malloc(N * sizeof(int)), *nslot = malloc(N * sizeof(int)), *parent = malloc(N * sizeof(int));
  char *claimed = calloc(N, 1), *is_parent = calloc(N, 1);
  hyps h = {.N = N, .worst = 1e9, .lp = o->length_penalty, .max_new = M};
  h.score = malloc((N + 1) * sizeof(double)); h.len = malloc((N + 1) * sizeof(int64_t));
  h.tok = malloc((size_t)(N + 1) * M * sizeof(int32_t));
  lm_status st = LM_OK;
  if (!lp || !bscore || !nscore || !cs || !seq || !nseq || !ntok || !slot || !nslot || !parent || !claimed || !is_parent ||
      !h.score || !h.len || !h.tok) {
    st = lm_error(LM_ERR_NOMEM, "out of memory for %d beams", N);
    goto done;
  }
  for (int j = 0; j < N; j++) {
    bscore[j] = j ? -1e9 : 0.0;   /* the beams start equal: only beam 0 is expanded first */
    slot[j] = j;
    memcpy(seq + (size_t)j * SL, prefix, (size_t)n_prefix * sizeof(int32_t));
  }
  const float *logits = NULL;
  int64_t g = 0;   /* tokens generated by every running beam */
  int done = 0;
  for (;;) {
    /* each beam's best K (beam, token) pairs; the best K over all are among them */
    int64_t n = 0;
    for (int j = 0; j < N; j++) {
      log_probs(lp, g ? logits + (size_t)j * V : first, V, seq + (size_t)j * SL, n_prefix + g, o->no_repeat_ngram);
      cand *top = cs + n;
      int64_t k = 0;
      for (int64_t v = 0; v < V; v++) {   /* insertion into a sorted run of at most K */
        cand c = {lp[v] + bscore[j], (int64_t)j * V + v};
        if (k == K && cand_cmp(&c, &top[K - 1]) >= 0) continue;
        int64_t i = k < K ? k++ : K - 1;
        while (i > 0 && cand_cmp(&c, &top[i - 1]) < 0) { top[i] = top[i - 1]; i--; }
        top[i] = c;
      }
      n += k;
    }
    qsort(cs, (size_t)n, sizeof(cand), cand_cmp);
    int nb = 0;
    for (int64_t r = 0; r < K && nb < N; r++) {
      int b = (int)(cs[r].flat / V);
      int32_t t = (int32_t)(cs[r].flat % V);
      int eos = 0;
      for (int e = 0; e < o->n_eos && !eos; e++) eos = o->eos[e] == t;
      if (eos) {   /* a finished hypothesis, if among the first N pairs */
        if (r >= N) continue;
        int32_t *s = seq + (size_t)b * SL + n_prefix;
        int32_t keep = s[g];
        s[g] = t;   /* its generated tokens, the end token included (seq has room for one more) */
        hyps_add(&h, s, g + 1, cs[r].score);
        s[g] = keep;
      } else {
        parent[nb] = b; ntok[nb] = t; nscore[nb] = cs[r].score; nb++;
      }
    }
    if (nb < N) {
      st = lm_error(LM_ERR_ARG, "beam search with %d beams needs more than %lld candidate tokens a step", N, (long long)V);
      goto done;
    }
    done = hyps_done(&h, o->early_stopping, cs[0].score, g + 1);
    /* the new beams: sequences, scores, and slots (a parent's first child keeps its slot) */
    for (int j = 0; j < N; j++) {
      memcpy(nseq + (size_t)j * SL, seq + (size_t)parent[j] * SL, (size_t)(n_prefix + g) * sizeof(int32_t));
      nseq[(size_t)j * SL + n_prefix + g] = ntok[j];
      bscore[j] = nscore[j];
    }
    int32_t *tmp = seq; seq = nseq; nseq = tmp;
    g++;
    if (done || g == M) break;
    memset(claimed, 0, N); memset(is_parent, 0, N);
    for (int j = 0; j < N; j++) is_parent[slot[parent[j]]] = 1;
    for (int j = 0; j < N; j++) {
      int s = slot[parent[j]];
      nslot[j] = claimed[s] ? -1 : s;
      claimed[s] = 1;
    }
    for (int j = 0, f = 0; j < N && !st; j++) {
      if (nslot[j] >= 0) continue;
      while (is_parent[f]) f++;   /* a slot no new beam descends from: free to overwrite */
      is_parent[f] = 1;
      st = ops->copy(ops->self, f, slot[parent[j]]);
      nslot[j] = f;
    }
    if (st) goto done;
    memcpy(slot, nslot, N * sizeof(int));
    if ((st = ops->step(ops->self, slot, ntok, N, &logits))) goto done;
  }
  if (!done)   /* out of tokens: the running beams are hypotheses too */
    for (int j = 0; j < N; j++) hyps_add(&h, seq + (size_t)j * SL + n_prefix, g, bscore[j]);
  int best = 0;
  for (int i = 1; i < h.n; i++) if (h.score[i] >= h.score[best]) best = i;   /* HF: the last of equals */
  if (!(*out = malloc((size_t)h.len[best] * sizeof(int32_t)))) { st = lm_error(LM_ERR_NOMEM, "out of memory"); goto done; }
  memcpy(*out, h.tok + (size_t)best * M, (size_t)h.len[best] * sizeof(int32_t));
  *n_out = h.len[best];
  if (score) *score = h.score[best];
done:
  free(lp); free(bscore); free(nscore); free(cs); free(seq); free(nseq); free(ntok); free(slot); free(nslot); free(parent);
  free(claimed); free(is_parent); free(h.score); free(h.len); free(h.tok);
  return st;
}

/* ---------------------------------------------------------------- the two slot kinds */

struct lm_beam_model {
  const lm_model *m;
  int N;
  int64_t V, pos;
  lm_fwd *f;              /* decoder: one forward for all beams, one cache each */
  lm_kv *kv;              /* (N) */
  lm_kv_run *runs;        /* (N) */
  lm_encdec **e;          /* encoder-decoder: (N) decoders over one encoding */
  float *logits;          /* (N, V) */
};

void lm_beam_model_free(lm_beam_model *b) {
  if (!b) return;
  lm_fwd_free(b->f);
  for (int i = 0; i < b->N; i++) {
    if (b->kv) lm_kv_free(&b->kv[i]);
    if (b->e) lm_encdec_free(b->e[i]);
  }
  free(b->kv); free(b->runs); free(b->e); lm_free(b->logits);
  free(b);
}

static lm_status dec_step(void *self, const int *slots, const int32_t *ids, int n, const float **logits) {
  lm_beam_model *b = self;
  for (int i = 0; i < n; i++) {
    if (ids[i] < 0 || ids[i] >= b->V) return lm_error(LM_ERR_RANGE, "token id %d is outside the vocabulary", (int)ids[i]);
    b->runs[i] = (lm_kv_run){.kv = &b->kv[slots[i]], .pos = b->pos, .ids = &ids[i], .n = 1};
  }
  if (b->pos >= b->kv[0].max_len) return lm_error(LM_ERR_RANGE, "the beams' caches are full");
  *logits = lm_fwd_feed(b->f, b->runs, n);   /* (n, V): one decode step of all beams together */
  b->pos++;
  return LM_OK;
}

static lm_status dec_copy(void *self, int dst, int src) {
  lm_beam_model *b = self;
  const lm_config *c = &b->m->cfg;
  size_t KVC = (size_t)lm_kv_heads(c) * (c->n_embd / c->n_head), ml = b->kv[0].max_len;
  for (int64_t l = 0; l < c->n_layer; l++) {
    size_t at = l * ml * KVC, n = (size_t)b->pos * KVC * sizeof(float);
    memcpy(b->kv[dst].k + at, b->kv[src].k + at, n);
    memcpy(b->kv[dst].v + at, b->kv[src].v + at, n);
  }
  return LM_OK;
}

lm_status lm_beam_decoder_init(lm_beam_model **out, const lm_model *m, int beams, const int32_t *ids, int64_t n,
                               int64_t max_new, lm_beam_ops *ops, const float **first) {
  *out = NULL;
  const lm_config *c = &m->cfg;
  if (beams < 1 || n < 1 || max_new < 1) return lm_error(LM_ERR_ARG, "beam search needs beams, a prompt and tokens to generate");
  if (n + max_new > c->n_positions)
    return lm_error(LM_ERR_RANGE, "a prompt of %lld tokens and %lld to generate exceed the model's context of %lld "
                    "(beam search does not slide)", (long long)n, (long long)max_new, (long long)c->n_positions);
  lm_beam_model *b = calloc(1, sizeof *b);
  if (!b) return lm_error(LM_ERR_NOMEM, "out of memory");
  b->m = m; b->V = c->vocab_size;
  int64_t rows = beams > 256 ? beams : 256;
  lm_status st = lm_fwd_init(&b->f, m, rows, n + max_new);
  if (!st && (!(b->kv = calloc(beams, sizeof *b->kv)) || !(b->runs = calloc(beams, sizeof *b->runs))))
    st = lm_error(LM_ERR_NOMEM, "out of memory");
  for (int i = 0; i < beams && !st; i++) { st = lm_kv_init(&b->kv[i], m, n + max_new); b->N = i + 1; }
  for (int64_t i = 0; i < n && !st; i++)
    if (ids[i] < 0 || ids[i] >= c->vocab_size) st = lm_error(LM_ERR_RANGE, "token id %d is outside the vocabulary", (int)ids[i]);
  for (int64_t done = 0; done < n && !st; done += rows) {   /* the prompt, once, into slot 0 */
    lm_kv_run r = {.kv = &b->kv[0], .pos = done, .ids = ids + done, .n = n - done < rows ? n - done : rows};
    *first = lm_fwd_feed(b->f, &r, 1);
  }
  if (st) { lm_beam_model_free(b); return st; }
  b->pos = n;
  *ops = (lm_beam_ops){.self = b, .V = b->V, .step = dec_step, .copy = dec_copy};
  *out = b;
  return LM_OK;
}

static lm_status ed_step(void *self, const int *slots, const int32_t *ids, int n, const float **logits) {
  lm_beam_model *b = self;
  for (int i = 0; i < n; i++) {
    const float *lg;
    lm_status st = lm_encdec_step(b->e[slots[i]], ids[i], &lg);
    if (st) return st;
    memcpy(b->logits + (size_t)i * b->V, lg, (size_t)b->V * sizeof(float));
  }
  *logits = b->logits;
  return LM_OK;
}

static lm_status ed_copy(void *self, int dst, int src) {
  lm_beam_model *b = self;
  return lm_encdec_copy(b->e[dst], b->e[src]);
}

lm_status lm_beam_encdec_init(lm_beam_model **out, const lm_model *m, int beams, const int32_t *ids, int64_t n,
                              int64_t max_new, lm_beam_ops *ops, const float **first) {
  *out = NULL;
  if (beams < 1 || max_new < 1) return lm_error(LM_ERR_ARG, "beam search needs beams and tokens to generate");
  lm_beam_model *b = calloc(1, sizeof *b);
  if (!b) return lm_error(LM_ERR_NOMEM, "out of memory");
  b->m = m; b->V = m->cfg.vocab_size;
  lm_status st = LM_OK;
  if (!(b->e = calloc(beams, sizeof *b->e)) || !(b->logits = lm_alloc((size_t)beams * b->V * sizeof(float))))
    st = lm_error(LM_ERR_NOMEM, "out of memory");
  if (!st) { b->N = 1; st = lm_encdec_init(&b->e[0], m, ids, n, max_new + 1); }   /* the encoder runs once */
  const float *lg = NULL;
  if (!st) st = lm_encdec_step(b->e[0], (int32_t)m->cfg.decoder_start_token_id, &lg);
  if (!st) { memcpy(b->logits, lg, (size_t)b->V * sizeof(float)); *first = b->logits; }
  for (int i = 1; i < beams && !st; i++) { st = lm_encdec_clone(&b->e[i], b->e[0]); b->N = i + 1; }
  if (st) { lm_beam_model_free(b); return st; }
  *ops = (lm_beam_ops){.self = b, .V = b->V, .step = ed_step, .copy = ed_copy};
  *out = b;
  return LM_OK;
}

/* ---------------------------------------------------------------- lm_generate --beams */

lm_status lm_beam_generate(const lm_model *m, const lm_tokenizer *tok, const char *prompt, const lm_gen_opts *o,
                           lm_piece_callback cb, void *user, lm_gen_stats *stats) {
  const lm_config *c = &m->cfg;
  int encdec = c->n_enc_layer > 0;
  if (o->calc) return lm_error(LM_ERR_UNSUPPORTED, "beam search does not run the calculator tool: use sampling or greedy with --calc");
  if (!isfinite(o->length_penalty)) return lm_error(LM_ERR_ARG, "the length penalty must be a finite number");
  uint32_t *ids = NULL; size_t n = 0;
  lm_status st = lm_tokenizer_encode(tok, prompt, strlen(prompt), LM_ENCODE_SPECIAL | (o->add_special ? LM_ENCODE_ADD_SPECIAL : 0),
                                     &ids, &n);
  if (st) return st;
  int64_t P = c->n_positions, end = encdec ? c->eos_token_id : lm_tokenizer_eot(tok);
  int32_t *in = malloc((n + 1) * sizeof(int32_t)), eos[LM_MAX_EOS + 64];
  if (!in) { free(ids); return lm_error(LM_ERR_NOMEM, "out of memory"); }
  int64_t S = 0;
  for (size_t i = 0; i < n; i++) in[S++] = (int32_t)ids[i];
  free(ids);
  if (encdec ? end >= 0 && (S == 0 || in[S - 1] != end) : S == 0 && end >= 0) in[S++] = (int32_t)end;   /* T5's </s>; GPT's new document */
  int n_eos = 0;
  if (o->stop_at_eot && end >= 0) eos[n_eos++] = (int32_t)end;
  for (int j = 0; j < o->n_stop_tokens && n_eos < (int)(sizeof eos / sizeof *eos); j++) eos[n_eos++] = o->stop_tokens[j];
  int64_t room = encdec ? P - 1 : P - S, max_new = o->max_tokens < room ? o->max_tokens : room;
  if (S == 0) st = lm_error(LM_ERR_ARG, "empty prompt and the tokenizer has no end-of-text token to start from");
  else if (S > P || max_new < 1)
    st = lm_error(LM_ERR_RANGE, "a prompt of %lld tokens leaves no room in the model's context of %lld: beam search does not "
                  "slide or truncate", (long long)S, (long long)P);
  lm_beam_model *bm = NULL;
  lm_beam_ops ops;
  const float *first = NULL;
  lm_gen_stats gs = {.prompt_tokens = S, .stop_token = -1};
  double t0 = lm_time_sec();
  if (!st) st = (encdec ? lm_beam_encdec_init : lm_beam_decoder_init)(&bm, m, o->beams, in, S, max_new, &ops, &first);
  gs.prefill_sec = lm_time_sec() - t0;
  t0 = lm_time_sec();
  int32_t *best = NULL; int64_t nb = 0;
  int32_t dprefix = (int32_t)c->decoder_start_token_id;
  lm_beam_opts bo = {.beams = o->beams, .length_penalty = o->length_penalty, .early_stopping = o->early_stopping,
                     .no_repeat_ngram = o->no_repeat_ngram, .max_new = max_new, .eos = eos, .n_eos = n_eos};
  if (!st) st = lm_beam_search(&ops, first, encdec ? &dprefix : in, encdec ? 1 : S, &bo, &best, &nb, NULL);
  lm_beam_model_free(bm);
  lm_detok dt = {0};
  if (!st) st = lm_detok_init(&dt, tok, encdec ? -1 : in[S - 1]);
  free(in);
  gs.generated_tokens = nb;
  for (int64_t k = 0; !st && k < nb; k++) {
    int is_end = 0;
    for (int e = 0; e < n_eos && !is_end; e++) is_end = eos[e] == best[k];
    if (is_end) { gs.stop_token = best[k]; break; }   /* the end token, unprinted */
    const char *text; size_t tlen;
    if ((st = lm_detok_push(&dt, (uint32_t)best[k], &text, &tlen))) break;
    if (tlen && cb && cb(text, tlen, user)) break;
  }
  const char *rest; size_t nrest;
  if (!st && !lm_detok_flush(&dt, &rest, &nrest) && nrest && cb) cb(rest, nrest, user);
  lm_detok_free(&dt);
  free(best);
  gs.decode_sec = lm_time_sec() - t0;
  if (stats) *stats = gs;
  return st;
}
