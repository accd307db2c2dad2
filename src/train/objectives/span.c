/* span.c — T5's span corruption (Raffel et al. 2020, §3.1.4) as a trainer
 * objective for encoder-decoders.
 *
 * A window of raw tokens is split into alternating runs of kept and noise
 * tokens by the T5 reference's random_spans_noise_mask: round(length *
 * density) noise tokens (round half to even, as NumPy) in round(noise /
 * mean_span) spans; the noise tokens and the kept tokens are each cut into
 * that many non-empty segments uniformly at random (a shuffled run of ones,
 * NumPy's Fisher-Yates: for i = m-1 .. 1 swap i with a draw in [0, i]), and
 * the segments interleave, kept first. Each noise span becomes one sentinel
 * in the input; the target is each sentinel followed by the tokens it hid;
 * EOS ends both:
 *
 *   raw    The cat sat on the mat .
 *   input  The <extra_id_0> sat on the <extra_id_1> . </s>
 *   target <extra_id_0> cat <extra_id_1> mat </s>
 *
 * Sentinels count down from <extra_id_0>, the highest id (T5's vocabulary);
 * a tokenizer without them is an error naming the one it lacks. The window's
 * raw length is chosen (T5's compute_input_and_target_lengths) so that every
 * input is exactly the context and every target the same length, so batches
 * need no padding. Windows start at positions drawn with the trainer's rng
 * (checkpointed: a resumed run sees the same batches); validation draws from
 * its own fixed seed, so every evaluation scores the same examples. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "train/train.h"
#include "train/objectives/objectives.h"

/* T5's _random_segmentation: n items into k non-empty segments; lengths (k) out. slots (n) scratch. */
static void segmentation(lm_rng *rng, int64_t n, int64_t k, int64_t *lengths, int64_t *slots, uint32_t **draws) {
  for (int64_t i = 0; i < n - 1; i++) slots[i] = i < k - 1;   /* mask_indices = arange(n-1) < k-1 */
  for (int64_t i = n - 2; i >= 1; i--) {                      /* np.random.shuffle */
    uint32_t j = lm_rng_below(rng, (uint32_t)i + 1);
    if (*draws) *(*draws)++ = j;
    int64_t t = slots[i]; slots[i] = slots[j]; slots[j] = t;
  }
  int64_t seg = 0;
  lengths[0] = 1;                                             /* item 0 starts segment 0 */
  for (int64_t i = 1; i < n; i++) {
    if (slots[i - 1]) lengths[++seg] = 0;
    lengths[seg]++;
  }
}

int64_t lm_span_noise_mask(lm_rng *rng, int64_t length, double density, double mean_span, uint8_t *noise,
                           int64_t *work, uint32_t *draws) {
  int64_t orig = length;
  if (length < 2) length = 2;
  int64_t n_noise = (int64_t)rint((double)length * density);
  if (n_noise < 1) n_noise = 1;
  if (n_noise > length - 1) n_noise = length - 1;
  int64_t spans = (int64_t)rint((double)n_noise / mean_span);
  if (spans < 1) spans = 1;
  if (spans > length - n_noise) spans = length - n_noise;   /* (where the reference itself would fail) */
  int64_t *len = work, *slots = work + 2 * spans;   /* 2 spans + length <= 3 length */
  segmentation(rng, n_noise, spans, len + spans, slots, &draws);        /* noise span lengths */
  segmentation(rng, length - n_noise, spans, len, slots, &draws);       /* kept span lengths */
  int64_t p = 0;
  for (int64_t s = 0; s < spans; s++) {   /* kept, then noise, alternating */
    for (int64_t i = 0; i < len[s]; i++, p++) if (p < orig) noise[p] = 0;
    for (int64_t i = 0; i < len[spans + s]; i++, p++) if (p < orig) noise[p] = 1;
  }
  return spans;
}

void lm_span_lengths(int64_t inputs_length, double density, double mean_span, int64_t *raw, int64_t *targets) {
  int64_t tokens = inputs_length, in = 0, tg = 0;
  for (;;) {   /* the longest raw window whose input still fits */
    int64_t t = tokens + 1, noise = (int64_t)rint((double)t * density);
    int64_t spans = (int64_t)rint((double)noise / mean_span);
    if (t - noise + spans + 1 > inputs_length) break;
    tokens = t;
  }
  int64_t noise = (int64_t)rint((double)tokens * density), spans = (int64_t)rint((double)noise / mean_span);
  in = tokens - noise + spans + 1;
  tg = noise + spans + 1;
  if (density == 0.5 && tg > in) { tokens--; tg--; }
  *raw = tokens;
  *targets = tg;
}

void lm_span_corrupt(const int32_t *raw, const uint8_t *noise, int64_t n, int32_t sentinel0, int32_t eos, int32_t *inp,
                     int64_t *n_inp, int32_t *tgt, int64_t *n_tgt) {
  int64_t a = 0, b = 0, span = -1;
  for (int64_t i = 0; i < n; i++) {
    if (!noise[i]) { inp[a++] = raw[i]; continue; }
    if (i == 0 || !noise[i - 1]) {   /* a span begins: its sentinel in both */
      span++;
      inp[a++] = sentinel0 - (int32_t)span;
      tgt[b++] = sentinel0 - (int32_t)span;
    }
    tgt[b++] = raw[i];
  }
  inp[a++] = eos;
  tgt[b++] = eos;
  *n_inp = a;
  *n_tgt = b;
}

lm_status lm_span_sentinels(const lm_tokenizer *tok, int64_t n, int32_t *sentinel0) {
  char name[32];
  int64_t first = tok ? lm_tokenizer_token_id(tok, "<extra_id_0>") : -1;
  if (first < 0)
    return lm_error(LM_ERR_ARG, "the tokenizer has no <extra_id_0>: span corruption needs T5's sentinel tokens "
                    "<extra_id_0> .. <extra_id_%lld>, counting down from the top of the vocabulary", (long long)n - 1);
  for (int64_t k = 1; k < n; k++) {
    snprintf(name, sizeof name, "<extra_id_%lld>", (long long)k);
    int64_t id = lm_tokenizer_token_id(tok, name);
    if (id != first - k)
      return lm_error(LM_ERR_ARG, "the tokenizer's %s is %s%lld, not %lld: span corruption needs %lld sentinels counting "
                      "down from <extra_id_0> = %lld", name, id < 0 ? "missing" : "id ", id < 0 ? 0LL : (long long)id,
                      (long long)(first - k), (long long)n, (long long)first);
  }
  *sentinel0 = (int32_t)first;
  return LM_OK;
}

/* ------------------------------------------------------------------ the objective */

typedef struct {
  const lm_stream *train, *val;
  lm_rng *rng;
  int64_t B, S, Tt, raw;          /* the job's batch (ranks x the rank's), encoder input (context), target length,
                                   * raw tokens per example */
  int rank, ranks;                /* data parallelism (share.c) */
  double density, mean_span;
  int32_t sentinel0, eos, start;
  int32_t *rawbuf, *enc, *dec, *labels;
  uint8_t *noise;
  int64_t *work;                  /* (3 raw) lm_span_noise_mask's scratch */
} span_obj;

static void span_batch(span_obj *o, const lm_stream *s, lm_rng *rng, lm_batch *b) {
  for (int64_t i = 0; i < o->B; i++) {
    uint64_t room = s->n - (uint64_t)o->raw + 1, at = lm_rng_u64(rng) % room;
    for (int64_t t = 0; t < o->raw; t++) o->rawbuf[t] = (int32_t)s->ids[at + t];
    lm_span_noise_mask(rng, o->raw, o->density, o->mean_span, o->noise, o->work, NULL);
    int64_t ni, nt;
    int32_t *lab = o->labels + i * o->Tt, *dec = o->dec + i * o->Tt;
    lm_span_corrupt(o->rawbuf, o->noise, o->raw, o->sentinel0, o->eos, o->enc + i * o->S, &ni, lab, &nt);
    dec[0] = o->start;   /* the decoder reads the target shifted right after its start token */
    memcpy(dec + 1, lab, (size_t)(o->Tt - 1) * sizeof(int32_t));
  }
  *b = (lm_batch){.ids = o->dec, .targets = o->labels, .enc_ids = o->enc, .B = o->B, .T = o->Tt, .S = o->S};
}

static float span_micro(void *self, lm_model *m) {
  span_obj *o = self;
  lm_batch b;
  span_batch(o, o->train, o->rng, &b);
  return lm_share_step(m, &b, o->rank, o->ranks);
}

static double span_evaluate(void *self, lm_model *m, int64_t max_batches) {
  span_obj *o = self;
  if (!o->val) return NAN;
  lm_rng r;
  lm_rng_seed(&r, 0x5EEDULL);
  double sum = 0;
  int64_t n = max_batches > 0 ? (max_batches + o->ranks - 1) / o->ranks : 20;   /* the trainer asks for ranks x */
  for (int64_t k = 0; k < n; k++) {
    lm_batch b;
    span_batch(o, o->val, &r, &b);
    sum += lm_share_loss(m, &b, o->ranks);
  }
  return sum / n;
}

static void span_cursor(void *self, int64_t *epoch, int64_t *index) { (void)self; *epoch = 0; *index = 0; }

static void span_free(void *self) {
  span_obj *o = self;
  if (!o) return;
  free(o->rawbuf); free(o->enc); free(o->dec); free(o->labels); free(o->noise); free(o->work);
  free(o);
}

lm_status lm_objective_span(lm_objective *obj, lm_model *m, const lm_tokenizer *tok, const lm_stream *train,
                            const lm_stream *val, int64_t B, int64_t S, lm_rng *rng, int rank, int ranks) {
  memset(obj, 0, sizeof *obj);
  const lm_config *c = &m->cfg;
  if (c->n_enc_layer <= 0 || c->head != LM_HEAD_LM)
    return lm_error(LM_ERR_ARG, "--objective span-corruption needs an encoder-decoder with an LM head (--arch t5); "
                    "this is a %s model", lm_arch_name(c->arch));
  if (S < 4) return lm_error(LM_ERR_ARG, "span corruption needs a context of at least 4 tokens");
  span_obj *o = calloc(1, sizeof *o);
  if (!o) return lm_error(LM_ERR_NOMEM, "out of memory");
  if (ranks < 1) ranks = 1;
  *o = (span_obj){.train = train, .val = val && val->n > 1 ? val : NULL, .rng = rng, .B = B * ranks, .S = S,
                  .rank = rank, .ranks = ranks,
                  .density = 0.15, .mean_span = 3.0, .start = (int32_t)c->decoder_start_token_id};
  lm_span_lengths(S, o->density, o->mean_span, &o->raw, &o->Tt);
  int64_t eos = c->eos_token_id;   /* the model's </s>, which generation stops at; else the tokenizer's end of text */
  if ((eos < 0 || eos >= c->vocab_size) && tok) eos = lm_tokenizer_eot(tok);
  int64_t spans = (int64_t)rint(rint((double)o->raw * o->density) / o->mean_span);
  lm_status st = LM_OK;
  if (eos < 0 || eos >= c->vocab_size) st = lm_error(LM_ERR_ARG, "span corruption needs an end-of-sequence token (</s>)");
  if (!st) st = lm_span_sentinels(tok, spans < 1 ? 1 : spans, &o->sentinel0);
  if (!st && o->sentinel0 >= c->vocab_size)
    st = lm_error(LM_ERR_ARG, "the tokenizer's <extra_id_0> = %d is outside the model's vocabulary of %lld", (int)o->sentinel0,
                  (long long)c->vocab_size);
  if (!st && (uint64_t)o->raw > train->n)
    st = lm_error(LM_ERR_ARG, "the training data holds %llu tokens, fewer than one example's %lld",
                  (unsigned long long)train->n, (long long)o->raw);
  if (!st && o->val && (uint64_t)o->raw > o->val->n) o->val = NULL;   /* too little validation data: none */
  o->eos = (int32_t)eos;
  if (!st) {
    o->rawbuf = malloc((size_t)o->raw * sizeof(int32_t)); o->noise = malloc((size_t)o->raw);
    o->work = malloc((size_t)(3 * o->raw + 6) * sizeof(int64_t));
    o->enc = malloc((size_t)(o->B * S) * sizeof(int32_t));
    o->dec = malloc((size_t)(o->B * o->Tt) * sizeof(int32_t));
    o->labels = malloc((size_t)(o->B * o->Tt) * sizeof(int32_t));
    if (!o->rawbuf || !o->noise || !o->work || !o->enc || !o->dec || !o->labels) st = lm_error(LM_ERR_NOMEM, "out of memory");
  }
  if (!st) st = lm_model_reserve(m, B, S > o->Tt ? S : o->Tt, 1);
  if (st) { span_free(o); return st; }
  *obj = (lm_objective){.self = o, .micro = span_micro, .evaluate = span_evaluate, .cursor = span_cursor, .free = span_free};
  return LM_OK;
}
