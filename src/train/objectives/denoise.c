/* denoise.c — BART's denoising pre-training (Lewis et al. 2020, §2.2) as a
 * trainer objective for encoder-decoders, each noising function a setting:
 *
 *   raw     The cat sat on the mat. It was warm.
 *   permute It was warm. The cat sat on the mat.              sentences shuffled (--permute)
 *   infill  It <mask> warm. The cat <mask> mat.               spans of Poisson(3) words -> one <mask> (--mask-ratio)
 *   delete  It warm. The sat mat.                             tokens dropped (--delete-ratio)
 *   insert  It was zebra warm. The cat sat on the mat.        random tokens added (--insert-ratio)
 *   rotate  on the mat. It was warm. The cat sat              the document starts at a random token (--rotate)
 *
 * and the decoder reconstructs the raw window. The functions follow fairseq's
 * DenoisingDataset: text infilling is add_whole_word_mask with
 * mask_length = span-poisson and replace_length = 1 — the budget is
 * ceil(words * ratio) words, span lengths are drawn from Poisson(lambda) until
 * they reach it (the last trimmed), zero-length spans are set aside and
 * become inserted <mask> tokens, each remaining span starts at a distinct
 * random word start, its first token becomes <mask> and the rest of its words
 * are deleted (spans may overlap, as in fairseq); sentence permutation is
 * permute_sentences (ceil(sentences * p) of them trade places); insertion is
 * add_insertion_noise; rotation is add_rolling_noise with probability p.
 * Token deletion (the paper's, not a fairseq flag) deletes round(n * p)
 * distinct tokens. Random insertion puts random non-special ids where
 * fairseq's --insert puts <mask> (unless --mask-random): the paper's noise
 * is "random tokens". Batches draw from the trainer's checkpointed rng, so a
 * resumed run sees the same batches; validation uses a fixed seed of its own. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "train/objectives/denoise.h"
#include "train/objectives/objectives.h"

int64_t lm_poisson(lm_rng *rng, double lambda) {
  double L = exp(-lambda), p = 1.0;
  int64_t k = 0;
  do { k++; p *= (double)lm_rng_uniform(rng); } while (p > L && k < 1000);
  return k - 1;
}

/* ------------------------------------------------------------------ set-up */

lm_status lm_denoiser_init_tables(lm_denoiser *d, const lm_denoise_opts *o, int64_t V, int32_t mask_id,
                                  const uint8_t *word_start, const uint8_t *sent_end, int64_t max_len) {
  memset(d, 0, sizeof *d);
  d->o = *o; d->V = V; d->mask_id = mask_id;
  d->cap = 3 * max_len + 8;   /* an input, as many zero-length-span masks, and at most as many insertions */
  d->word_start = malloc((size_t)V); d->sent_end = malloc((size_t)V);
  d->a = malloc((size_t)d->cap * sizeof(int32_t)); d->b = malloc((size_t)d->cap * sizeof(int32_t));
  d->idx = malloc((size_t)d->cap * sizeof(int64_t)); d->drawn = malloc((size_t)d->cap * sizeof(int64_t));
  d->w = malloc((size_t)(3 * d->cap + 3) * sizeof(int64_t)); d->keep = malloc((size_t)d->cap + 1);
  if (!d->word_start || !d->sent_end || !d->a || !d->b || !d->idx || !d->drawn || !d->w || !d->keep) {
    lm_denoiser_free(d);
    return lm_error(LM_ERR_NOMEM, "out of memory for the denoiser");
  }
  memcpy(d->word_start, word_start, (size_t)V);
  memcpy(d->sent_end, sent_end, (size_t)V);
  return LM_OK;
}

static int is_space(uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

lm_status lm_denoiser_init(lm_denoiser *d, const lm_denoise_opts *o, const lm_tokenizer *tok, int64_t V, int64_t max_len) {
  uint8_t *ws = calloc((size_t)V, 1), *se = calloc((size_t)V, 1);
  if (!ws || !se) { free(ws); free(se); return lm_error(LM_ERR_NOMEM, "out of memory"); }
  int64_t nv = lm_tokenizer_vocab_size(tok);
  for (int64_t v = 0; v < V && v < nv; v++) {
    size_t n = 0;
    const uint8_t *s = lm_tok_bytes(tok, v, &n);
    if (!s || !n) continue;
    ws[v] = is_space(s[0]) || (n >= 3 && s[0] == 0xE2 && s[1] == 0x96 && s[2] == 0x81);   /* ' ', '▁' */
    size_t e = n;
    while (e > 0 && is_space(s[e - 1])) e--;
    se[v] = memchr(s, '\n', n) != NULL || (e > 0 && (s[e - 1] == '.' || s[e - 1] == '!' || s[e - 1] == '?'));
  }
  int64_t mask = lm_tokenizer_token_id(tok, "<mask>");
  lm_status st = lm_denoiser_init_tables(d, o, V, mask >= 0 && mask < V ? (int32_t)mask : -1, ws, se, max_len);
  free(ws); free(se);
  return st;
}

void lm_denoiser_free(lm_denoiser *d) {
  free(d->word_start); free(d->sent_end); free(d->a); free(d->b); free(d->idx); free(d->drawn); free(d->w); free(d->keep);
  memset(d, 0, sizeof *d);
}

/* the first k of a random permutation of 0..n-1 into out (a partial Fisher-Yates over scratch) */
static void rand_choose(lm_rng *rng, int64_t n, int64_t k, int64_t *out, int64_t *scratch) {
  for (int64_t i = 0; i < n; i++) scratch[i] = i;
  for (int64_t i = 0; i < k; i++) {
    int64_t j = i + (int64_t)lm_rng_below(rng, (uint32_t)(n - i));
    int64_t t = scratch[i]; scratch[i] = scratch[j]; scratch[j] = t;
    out[i] = scratch[i];
  }
}

/* ------------------------------------------------------------------ the noising functions */

/* a ratio as the decimal the user typed (0.3f is 0.30000001: ceil(50 * it) would be 16, Python's 15) */
static double dec(float p) { return nearbyint((double)p * 1e6) / 1e6; }

/* permute_sentences: a sentence ends at the last of a run of end tokens (and at the end) */
int64_t lm_denoise_permute(lm_denoiser *d, lm_rng *rng, int32_t *x, int64_t n, float p) {
  if (p <= 0 || n < 2) return n;
  int64_t *ends = d->drawn, ns = 0;   /* exclusive end of each sentence */
  for (int64_t i = 0; i < n; i++) {
    int end = d->sent_end[x[i]] && (i + 1 == n || !d->sent_end[x[i + 1]]);
    if (end || i + 1 == n) ends[ns++] = i + 1;
  }
  int64_t k = (int64_t)ceil((double)ns * dec(p));
  if (k > ns) k = ns;
  int64_t *order = d->idx, *subst = d->w, *perm = d->w + ns, *shuf = d->w + 2 * ns;
  rand_choose(rng, ns, k, subst, perm);                         /* substitutions = randperm(ns)[:k] */
  for (int64_t i = 0; i < ns; i++) order[i] = i;
  rand_choose(rng, k, k, shuf, perm);                           /* randperm(k) */
  for (int64_t i = 0; i < k; i++) order[subst[i]] = subst[shuf[i]];
  int64_t at = 0;
  for (int64_t i = 0; i < ns; i++) {
    int64_t s = order[i], from = s ? ends[s - 1] : 0;
    memcpy(d->b + at, x + from, (size_t)(ends[s] - from) * sizeof(int32_t));
    at += ends[s] - from;
  }
  memcpy(x, d->b, (size_t)n * sizeof(int32_t));
  return n;
}

/* add_insertion_noise: the result has n + k tokens, k of them new at distinct random positions */
int64_t lm_denoise_insert(lm_denoiser *d, lm_rng *rng, int32_t *x, int64_t n, int64_t k, int random) {
  if (k <= 0) return n;
  if (n + k > d->cap) k = d->cap - n;
  int64_t tot = n + k;
  memset(d->keep, 0, (size_t)tot);
  rand_choose(rng, tot, k, d->w, d->idx);
  for (int64_t i = 0; i < k; i++) d->keep[d->w[i]] = 1;   /* keep: 1 = a new token here */
  for (int64_t i = 0, j = 0; i < tot; i++) {
    if (!d->keep[i]) { d->b[i] = x[j++]; continue; }
    int32_t v = d->mask_id;
    if (random || v < 0) {   /* a random ordinary token */
      do v = (int32_t)lm_rng_below(rng, (uint32_t)d->V); while (d->special && d->special[v]);
    }
    d->b[i] = v;
  }
  memcpy(x, d->b, (size_t)tot * sizeof(int32_t));
  return tot;
}

int64_t lm_denoise_infill(lm_denoiser *d, lm_rng *rng, int32_t *x, int64_t n, float p, double lambda) {
  d->last_words = d->last_budget = d->n_drawn = 0;
  if (p <= 0 || n < 1) return n;
  int64_t *starts = d->idx, W = 0;
  for (int64_t i = 0; i < n; i++)
    if (i == 0 || d->word_start[x[i]]) starts[W++] = i;
  int64_t budget = (int64_t)ceil((double)W * dec(p));
  d->last_words = W; d->last_budget = budget;
  if (budget <= 0) return n;
  /* span lengths until they reach the budget; the last one trimmed to it */
  int64_t *len = d->drawn, nl = 0, cum = 0;
  while (cum < budget && nl < d->cap) {
    int64_t l = lm_poisson(rng, lambda);
    d->last_raw = l;
    if (cum + l >= budget) l = budget - cum;
    len[nl++] = l;
    cum += l;
  }
  d->n_drawn = nl;
  int64_t spans = 0, inserts = 0, *lens = d->w, *at = d->w + d->cap, *scratch = d->w + 2 * d->cap;
  for (int64_t i = 0; i < nl; i++) {
    if (len[i] > 0) lens[spans++] = len[i];
    else inserts++;
  }
  if (spans > W) spans = W;
  /* distinct random word starts: indices = word_starts[randperm(W)[:spans]] */
  rand_choose(rng, W, spans, at, scratch);
  for (int64_t s = 0; s < spans; s++) at[s] = starts[at[s]];
  /* the original tokens' word starts (fairseq's is_word_start, taken before any <mask> replaces them) */
  uint8_t *ws = d->keep;
  for (int64_t i = 0; i < n; i++) ws[i] = i == 0 || d->word_start[x[i]];
  for (int64_t i = 0; i < n; i++) d->b[i] = 1;   /* kept */
  for (int64_t s = 0; s < spans; s++) x[at[s]] = d->mask_id;   /* replace_length 1: the span's first token */
  for (int64_t s = 0; s < spans; s++) {   /* then delete the rest of its words */
    int64_t rest = lens[s] - 1;           /* whole words to cover after the first */
    for (int64_t i = at[s] + 1; i < n; i++) {
      rest -= ws[i];
      if (rest < 0) break;
      d->b[i] = 0;
    }
  }
  int64_t m = 0;
  for (int64_t i = 0; i < n; i++)
    if (d->b[i]) x[m++] = x[i];
  return lm_denoise_insert(d, rng, x, m, inserts, 0);   /* zero-length spans: a <mask> each */
}

int64_t lm_denoise_delete(lm_denoiser *d, lm_rng *rng, int32_t *x, int64_t n, float p) {
  int64_t k = (int64_t)llround((double)n * dec(p));
  if (p <= 0 || k <= 0) return n;
  if (k >= n) k = n - 1;   /* something stays */
  memset(d->keep, 1, (size_t)n);
  rand_choose(rng, n, k, d->drawn, d->idx);
  for (int64_t i = 0; i < k; i++) d->keep[d->drawn[i]] = 0;
  int64_t m = 0;
  for (int64_t i = 0; i < n; i++)
    if (d->keep[i]) x[m++] = x[i];
  return m;
}

/* add_rolling_noise: with probability p the document starts at token `off` in [1, n-1] */
int64_t lm_denoise_rotate(lm_denoiser *d, lm_rng *rng, int32_t *x, int64_t n, float p) {
  if (p <= 0 || n < 2 || lm_rng_uniform(rng) >= p) return n;
  int64_t off = 1 + (int64_t)lm_rng_below(rng, (uint32_t)(n - 1));
  memcpy(d->b, x + off, (size_t)(n - off) * sizeof(int32_t));
  memcpy(d->b + (n - off), x, (size_t)off * sizeof(int32_t));
  memcpy(x, d->b, (size_t)n * sizeof(int32_t));
  return n;
}

int64_t lm_denoise_apply(lm_denoiser *d, lm_rng *rng, int32_t *x, int64_t n) {
  const lm_denoise_opts *o = &d->o;
  n = lm_denoise_permute(d, rng, x, n, o->permute);
  n = lm_denoise_infill(d, rng, x, n, o->mask_ratio, o->poisson_lambda);
  n = lm_denoise_delete(d, rng, x, n, o->delete_ratio);
  if (o->insert > 0) n = lm_denoise_insert(d, rng, x, n, (int64_t)ceil((double)n * dec(o->insert)), 1);
  return lm_denoise_rotate(d, rng, x, n, o->rotate);
}

/* ------------------------------------------------------------------ the objective */

typedef struct {
  const lm_stream *train, *val;
  lm_rng *rng;
  lm_denoiser dn;
  int64_t B, S, T;                /* the job's batch (ranks x the rank's), encoder input (context), target length */
  int rank, ranks;                /* data parallelism (share.c) */
  int32_t eos, pad, start;
  int32_t *enc, *dec, *labels;
  uint8_t *mask, *special;
} denoise_obj;

static void denoise_batch(denoise_obj *o, const lm_stream *s, lm_rng *rng, lm_batch *b) {
  int64_t R = o->T - 1;
  for (int64_t i = 0; i < o->B; i++) {
    uint64_t room = s->n - (uint64_t)R + 1, at = lm_rng_u64(rng) % room;
    int32_t *x = o->dn.a, *lab = o->labels + i * o->T, *dec = o->dec + i * o->T, *enc = o->enc + i * o->S;
    for (int64_t t = 0; t < R; t++) x[t] = lab[t] = (int32_t)s->ids[at + t];
    lab[R] = o->eos;
    dec[0] = o->start;   /* the decoder reads the target shifted right after its start token */
    memcpy(dec + 1, lab, (size_t)R * sizeof(int32_t));
    int64_t n = lm_denoise_apply(&o->dn, rng, x, R);
    if (n > o->S - 1) n = o->S - 1;   /* insertions past the context are cut; </s> ends it */
    memcpy(enc, x, (size_t)n * sizeof(int32_t));
    enc[n] = o->eos;
    for (int64_t t = 0; t < o->S; t++) o->mask[i * o->S + t] = t <= n;
    for (int64_t t = n + 1; t < o->S; t++) enc[t] = o->pad;
  }
  *b = (lm_batch){.ids = o->dec, .targets = o->labels, .enc_ids = o->enc, .enc_mask = o->mask, .B = o->B, .T = o->T,
                  .S = o->S};
}

static float denoise_micro(void *self, lm_model *m) {
  denoise_obj *o = self;
  lm_batch b;
  denoise_batch(o, o->train, o->rng, &b);
  return lm_share_step(m, &b, o->rank, o->ranks);
}

static double denoise_evaluate(void *self, lm_model *m, int64_t max_batches) {
  denoise_obj *o = self;
  if (!o->val) return NAN;
  lm_rng r;
  lm_rng_seed(&r, 0xDE401CEULL);
  double sum = 0;
  int64_t n = max_batches > 0 ? (max_batches + o->ranks - 1) / o->ranks : 20;   /* the trainer asks for ranks x */
  for (int64_t k = 0; k < n; k++) {
    lm_batch b;
    denoise_batch(o, o->val, &r, &b);
    sum += lm_share_loss(m, &b, o->ranks);
  }
  return sum / n;
}

static void denoise_cursor(void *self, int64_t *epoch, int64_t *index) { (void)self; *epoch = 0; *index = 0; }

static void denoise_free(void *self) {
  denoise_obj *o = self;
  if (!o) return;
  lm_denoiser_free(&o->dn);
  free(o->enc); free(o->dec); free(o->labels); free(o->mask); free(o->special);
  free(o);
}

static lm_status check_opts(const lm_denoise_opts *d) {
  const struct { const char *flag; float v, hi; } r[] = {
      {"--mask-ratio", d->mask_ratio, 1}, {"--permute", d->permute, 1}, {"--delete-ratio", d->delete_ratio, 0.99f},
      {"--rotate", d->rotate, 1}, {"--insert-ratio", d->insert, 1}};
  for (size_t i = 0; i < sizeof r / sizeof *r; i++)
    if (!(r[i].v >= 0 && r[i].v <= r[i].hi))
      return lm_error(LM_ERR_RANGE, "%s %g must be in [0, %g]", r[i].flag, (double)r[i].v, (double)r[i].hi);
  if (!(d->poisson_lambda > 0 && d->poisson_lambda <= 30))
    return lm_error(LM_ERR_RANGE, "--poisson-lambda %g must be in (0, 30]", (double)d->poisson_lambda);
  if (d->mask_ratio + d->permute + d->delete_ratio + d->rotate + d->insert <= 0)
    return lm_error(LM_ERR_ARG, "--objective denoise with every noising function off: the model would learn to copy");
  return LM_OK;
}

lm_status lm_objective_denoise(lm_objective *obj, lm_model *m, const lm_tokenizer *tok, const lm_stream *train,
                               const lm_stream *val, int64_t B, int64_t S, const lm_denoise_opts *dopts, lm_rng *rng,
                               int rank, int ranks) {
  memset(obj, 0, sizeof *obj);
  const lm_config *c = &m->cfg;
  lm_status st;
  if (c->n_enc_layer <= 0 || c->head != LM_HEAD_LM)
    return lm_error(LM_ERR_ARG, "--objective denoise needs an encoder-decoder with an LM head (--arch bart); this is a "
                    "%s model", lm_arch_name(c->arch));
  if ((st = check_opts(dopts))) return st;
  if (S < 4) return lm_error(LM_ERR_ARG, "denoising needs a context of at least 4 tokens");
  int64_t mask = tok ? lm_tokenizer_token_id(tok, "<mask>") : -1;
  if (dopts->mask_ratio > 0 && (mask < 0 || mask >= c->vocab_size))
    return lm_error(LM_ERR_ARG, "the tokenizer has no <mask> token%s: text infilling (--mask-ratio %g) replaces each span "
                    "with <mask> (train one with 'lmkit tokenizer train --special <mask>', or pass --mask-ratio 0)",
                    mask >= c->vocab_size ? " inside the model's vocabulary" : "", (double)dopts->mask_ratio);
  int64_t eos = c->eos_token_id;
  if ((eos < 0 || eos >= c->vocab_size) && tok) eos = lm_tokenizer_eot(tok);
  if (eos < 0 || eos >= c->vocab_size) return lm_error(LM_ERR_ARG, "denoising needs an end-of-sequence token (</s>)");
  if ((uint64_t)S > train->n)
    return lm_error(LM_ERR_ARG, "the training data holds %llu tokens, fewer than one example's %lld",
                    (unsigned long long)train->n, (long long)S);
  denoise_obj *o = calloc(1, sizeof *o);
  if (!o) return lm_error(LM_ERR_NOMEM, "out of memory");
  if (ranks < 1) ranks = 1;
  *o = (denoise_obj){.train = train, .val = val && val->n >= (uint64_t)S ? val : NULL, .rng = rng, .B = B * ranks, .S = S, .T = S,
                     .rank = rank, .ranks = ranks,
                     .eos = (int32_t)eos, .start = (int32_t)c->decoder_start_token_id,
                     .pad = (int32_t)(c->pad_token_id >= 0 ? c->pad_token_id : eos)};
  st = lm_denoiser_init(&o->dn, dopts, tok, c->vocab_size, S);
  o->enc = malloc((size_t)(o->B * S) * sizeof(int32_t)); o->mask = malloc((size_t)(o->B * S));
  o->dec = malloc((size_t)(o->B * S) * sizeof(int32_t)); o->labels = malloc((size_t)(o->B * S) * sizeof(int32_t));
  o->special = calloc((size_t)c->vocab_size, 1);
  if (!st && (!o->enc || !o->mask || !o->dec || !o->labels || !o->special)) st = lm_error(LM_ERR_NOMEM, "out of memory");
  if (!st) {   /* random insertion never draws these */
    const char *names[] = {"<mask>", "<pad>", "<s>", "</s>", "<unk>", "<|endoftext|>"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
      int64_t id = lm_tokenizer_token_id(tok, names[i]);
      if (id >= 0 && id < c->vocab_size) o->special[id] = 1;
    }
    o->special[eos] = 1;
    if (o->pad >= 0 && o->pad < c->vocab_size) o->special[o->pad] = 1;
    o->dn.special = o->special;
  }
  if (!st) st = lm_model_reserve(m, B, S, 1);
  if (st) { denoise_free(o); return st; }
  *obj = (lm_objective){.self = o, .micro = denoise_micro, .evaluate = denoise_evaluate, .cursor = denoise_cursor,
                        .free = denoise_free};
  return LM_OK;
}
