/* ngram_lm.c — the "ngram" model family: the Kneser–Ney model of ngram.c
 * behind lmkit's one model interface, so that `lmkit train --arch ngram`,
 * eval (perplexity, bits per byte, multiple-choice), generate and info run it
 * with the code that runs transformers.
 *
 * How it plugs in (family.h): own_body (no blocks, n_layer = 0) and
 * logits_body: the family's "embeddings" write, for every position, the
 * log-probabilities log p(w | the row's preceding tokens) of the whole
 * vocabulary, (N,V) with n_embd = vocab_size, and the LM head takes them as its
 * logits (softmax(log p) = p, so its cross-entropy is −log p(target)). It has no
 * tensors (model.safetensors is empty); fit counts a token stream instead of
 * training, and save_extra / load_extra keep the counts in ngram.bin (the
 * format: ngram.h), written atomically and read with every field checked.
 * Decoding keeps the last order−1 tokens as its state: O(V · order) per token.
 * A position sees the tokens before it in its row only, as a transformer's
 * window does. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "base/base.h"
#include "model/classic/ngram.h"
#include "model/config_io.h"
#include "model/model.h"

#define NGRAM_FILE "ngram.bin"

static const lm_family_class classes[] = {{LM_HEAD_LM, "NgramLanguageModel", 0}};

static lm_ngram *counts(const lm_model *m) { return m->fam_state; }

/* out (V) = log p(w | ctx) for every w, p (V) scratch; a model not yet counted is uniform */
static void log_dist(const lm_model *m, const int32_t *ctx, int64_t n_ctx, float *out, double *p) {
  int64_t V = m->cfg.vocab_size, k = m->cfg.ngram_order - 1;
  uint32_t key[8];
  if (n_ctx > k) { ctx += n_ctx - k; n_ctx = k; }
  for (int64_t i = 0; i < n_ctx; i++) key[i] = (uint32_t)ctx[i];
  if (counts(m)) lm_ngram_dist(counts(m), key, (size_t)n_ctx, p);
  for (int64_t w = 0; w < V; w++) out[w] = counts(m) ? (float)log(p[w]) : -logf((float)V);
}

static void embed_forward(lm_model *m, const lm_batch *b, float *out) {
  int64_t B = b->B, T = b->T, V = m->cfg.vocab_size;
  #pragma omp parallel if (B * T * V > 65536)
  {
    double *p = malloc((size_t)V * sizeof *p);   /* per thread; the (N,V) output is where it fails first */
    #pragma omp for schedule(dynamic, 8)
    for (int64_t r = 0; r < B * T; r++) {
      if (p) log_dist(m, b->ids + (r / T) * T, r % T + 1, out + r * V, p);                    // (N,V)
      else for (int64_t w = 0; w < V; w++) out[r * V + w] = NAN;   /* out of memory: a NaN loss, not a wrong one */
    }
    free(p);
  }
}

static void embed_backward(lm_model *m, const lm_batch *b, float *d) { (void)m; (void)b; (void)d; }   /* counted, not trained */

static void free_state(lm_model *m) {
  lm_ngram_free(m->fam_state);
  m->fam_state = NULL;
}

static lm_status fit(lm_model *m, const uint32_t *ids, size_t n) {
  lm_ngram *g;
  lm_status st = lm_ngram_train(&g, ids, n, (int)m->cfg.ngram_order, m->cfg.vocab_size);
  if (st) return st;
  free_state(m);
  m->fam_state = g;
  return LM_OK;
}

static lm_status save_extra(const lm_model *m, const char *dir) {
  if (!counts(m)) return lm_error(LM_ERR_ARG, "the n-gram model has counted nothing: nothing to save");
  char *buf, *path = lm_path_join(dir, NGRAM_FILE);
  size_t len;
  lm_status st = path ? lm_ngram_write(counts(m), &buf, &len) : lm_error(LM_ERR_NOMEM, "out of memory");
  if (!st) { st = lm_write_file_atomic(path, buf, len); free(buf); }
  free(path);
  return st;
}

static lm_status load_extra(lm_model *m, const char *dir) {
  char *path = lm_path_join(dir, NGRAM_FILE), *buf = NULL;
  size_t len;
  if (!path) return lm_error(LM_ERR_NOMEM, "out of memory");
  lm_status st = lm_read_file(path, &buf, &len);
  lm_ngram *g = NULL;
  if (!st) st = lm_ngram_read(&g, buf, len, (int)m->cfg.ngram_order, m->cfg.vocab_size);
  if (st) lm_error_prefix(st, "%s", path);
  free(buf); free(path);
  if (st) return st;
  free_state(m);
  m->fam_state = g;
  return LM_OK;
}

/* decoding: the last order-1 tokens */
typedef struct { int32_t last[8]; int64_t n; double *p; } ngram_state;

static lm_status state_new(const lm_model *m, void **out) {
  ngram_state *s = calloc(1, sizeof *s);
  if (!s || !(s->p = malloc((size_t)m->cfg.vocab_size * sizeof *s->p))) { free(s); return lm_error(LM_ERR_NOMEM, "out of memory"); }
  *out = s;
  return LM_OK;
}

static void state_reset(const lm_model *m, void *st) { (void)m; ((ngram_state *)st)->n = 0; }
static void state_free(void *st) {
  ngram_state *s = st;
  if (s) free(s->p);
  free(s);
}

static lm_status state_feed(const lm_model *m, void *st, const int32_t *ids, int64_t n, float *logits) {
  ngram_state *s = st;
  int64_t k = m->cfg.ngram_order - 1;
  for (int64_t i = 0; i < n; i++) {
    if (k == 0) continue;
    if (s->n == k) { memmove(s->last, s->last + 1, (size_t)(k - 1) * sizeof *s->last); s->n--; }
    s->last[s->n++] = ids[i];
  }
  log_dist(m, s->last, s->n, logits, s->p);
  return LM_OK;
}

/* ------------------------------------------------------------------ config */

static void defaults(lm_config *c) {
  c->n_layer = 0; c->n_head = 1; c->pre_ln = 0; c->ngram_order = 3; c->n_positions = 1024;
  c->n_embd = c->vocab_size;
}

static lm_status parse(const cJSON *r, lm_config *c, const char *p) {
  lm_status st;
  if ((st = lm_cfg_int(r, "vocab_size", &c->vocab_size, 0, 0, p)) ||
      (st = lm_cfg_int(r, "order", &c->ngram_order, 0, 0, p)) ||
      (st = lm_cfg_int(r, "max_position_embeddings", &c->n_positions, 0, 0, p)) ||
      (st = lm_cfg_int(r, "bos_token_id", &c->bos_token_id, 1, -1, p)) ||
      (st = lm_cfg_int(r, "eos_token_id", &c->eos_token_id, 1, -1, p)))
    return st;
  c->n_embd = c->vocab_size;   /* the body's output is a distribution over the vocabulary */
  return LM_OK;
}

static lm_status validate(const lm_config *c, const char *p) {
  lm_status st = lm_cfg_range(p, "order", c->ngram_order, 1, 8);
  if (st) return st;
  if (c->n_embd != c->vocab_size)
    return lm_error(LM_ERR_ARG, "%s: an n-gram model's width is its vocabulary (%lld), not %lld", p, (long long)c->vocab_size,
                    (long long)c->n_embd);
  if (c->head != LM_HEAD_LM) return lm_error(LM_ERR_UNSUPPORTED, "%s: the ngram family has the LM head only", p);
  if (c->embd_pdrop > 0 || c->attn_pdrop > 0 || c->resid_pdrop > 0)
    return lm_error(LM_ERR_UNSUPPORTED, "%s: an n-gram model has no dropout", p);
  return LM_OK;
}

static void write(lm_cfg_writer *w, const lm_config *c) {
  lm_cfgw_architectures(w, c);
  lm_cfgw_id(w, "bos_token_id", c->bos_token_id);
  lm_cfgw_id(w, "eos_token_id", c->eos_token_id);
  lm_cfgw_int(w, "max_position_embeddings", c->n_positions);
  lm_cfgw_str(w, "model_type", "ngram");
  lm_cfgw_int(w, "order", c->ngram_order);
  lm_cfgw_str(w, "smoothing", "interpolated modified Kneser-Ney");
  lm_cfgw_int(w, "vocab_size", c->vocab_size);
}

static int add_embeddings(const lm_config *c, lm_param_table *t) { (void)c; (void)t; return 0; }

static int hf_name(const lm_config *c, const char *ours, int64_t layer, lm_hf_tensor *o) {
  (void)c; (void)ours; (void)layer; (void)o;
  return -1;   /* no tensors */
}

static void describe(const lm_model *m, FILE *out) {
  const lm_config *c = &m->cfg;
  const lm_ngram *g = counts(m);
  fprintf(out, "order:            %lld (interpolated modified Kneser-Ney)\n", (long long)c->ngram_order);
  fprintf(out, "vocab:            %lld\n", (long long)c->vocab_size);
  if (!g) return;
  fprintf(out, "tokens counted:   %zu (stored in " NGRAM_FILE ")\n", lm_ngram_tokens(g));
  for (int k = 1; k <= lm_ngram_order(g); k++) {
    double d[3];
    lm_ngram_discounts(g, k, d);
    fprintf(out, "%d-grams:%*s%zu distinct, discounts %.3f %.3f %.3f\n", k, k < 10 ? 9 : 8, "", lm_ngram_count(g, k), d[0], d[1], d[2]);
  }
}

const lm_family lm_family_ngram = {
    .model_type = "ngram", .arch = LM_ARCH_NGRAM, .class_prefix = "NgramLanguage",
    .classes = classes, .n_classes = 1, .base_prefix = "", .pool = LM_POOL_LAST,
    .defaults = defaults, .parse = parse, .validate = validate, .write = write,
    .keys = {"vocab_size", "max_position_embeddings", "n_embd (the vocabulary)", "n_layer (general blocks)", "n_head",
             "n_inner", "layer_norm_eps", "initializer_range", {"dropout", "dropout", "dropout"}},
    .add_embeddings = add_embeddings,
    .free_state = free_state, .embed_forward = embed_forward, .embed_backward = embed_backward,
    .hf_name = hf_name,
    .own_body = 1, .logits_body = 1,
    .state_new = state_new, .state_reset = state_reset, .state_free = state_free, .state_feed = state_feed,
    .fit = fit, .save_extra = save_extra, .load_extra = load_extra, .describe = describe,
};
