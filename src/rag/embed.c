/* embed.c — sentence embeddings from any model's final hidden states, and the
 * dense vectors of an index. Texts are framed as the family reads a sequence
 * ([CLS] text [SEP] for encoders, the text itself for decoders; lm_cls_encode),
 * run in batches padded to each batch's longest text, and pooled: the mean over
 * the real tokens (padding excluded), the first token, or the last real token.
 * The model is loaded with a token-classification head because it is cheap
 * (an LM or MLM head would score the whole vocabulary at every position); only
 * the hidden states under it are read. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "base/base.h"
#include "model/heads.h"
#include "model/model.h"
#include "rag/index_impl.h"
#include "train/finetune.h"

struct lm_rag_embedder {
  lm_model *m;
  lm_tokenizer *tok;
  lm_config cfg;
  lm_rag_embed_opts o;
  int32_t *ids;
  uint8_t *mask;
  int64_t *idx;
};

void lm_rag_embed_opts_default(lm_rag_embed_opts *o) { *o = (lm_rag_embed_opts){LM_RAG_POOL_MEAN, 1, 16, 0}; }

static const char *const POOL_NAMES[] = {"mean", "cls", "last"};

lm_status lm_rag_pool_parse(const char *name, lm_rag_pool *pool) {
  for (int i = 0; i < 3; i++)
    if (!strcmp(name, POOL_NAMES[i])) { *pool = (lm_rag_pool)i; return LM_OK; }
  return lm_error(LM_ERR_ARG, "unknown pooling '%s' (cls, last, mean)", name);
}

lm_status lm_rag_embedder_load(lm_rag_embedder **out, const char *model_dir, const lm_rag_embed_opts *o) {
  *out = NULL;
  lm_rag_embedder *e = calloc(1, sizeof *e);
  if (!e) return lm_error(LM_ERR_NOMEM, "out of memory");
  if (o) e->o = *o;
  else lm_rag_embed_opts_default(&e->o);
  lm_status st;
  if (e->o.batch < 1) { st = lm_error(LM_ERR_ARG, "embedding batch %lld: must be at least 1", (long long)e->o.batch); goto fail; }
  if ((st = lm_model_load_head(&e->m, model_dir, LM_HEAD_TOKENS, 0, 0)) && (st = lm_model_load(&e->m, model_dir))) goto fail;
  e->cfg = *lm_model_config(e->m);
  if (e->o.context <= 0 || e->o.context > e->cfg.n_positions) e->o.context = e->cfg.n_positions;
  if (e->o.context < 3) { st = lm_error(LM_ERR_ARG, "%s: a context of %lld tokens is too short to embed", model_dir, (long long)e->o.context); goto fail; }
  if ((st = lm_tokenizer_load(&e->tok, model_dir))) goto fail;
  size_t B = (size_t)e->o.batch, T = (size_t)e->o.context;
  e->ids = lm_xmalloc(B * T * sizeof *e->ids);
  e->mask = lm_xmalloc(B * T);
  e->idx = lm_xmalloc(B * sizeof *e->idx);
  if (!e->ids || !e->mask || !e->idx) { st = LM_ERR_NOMEM; goto fail; }
  if ((st = lm_model_reserve(e->m, e->o.batch, e->o.context, 0))) goto fail;
  *out = e;
  return LM_OK;
fail:
  lm_rag_embedder_free(e);
  return st;
}

void lm_rag_embedder_free(lm_rag_embedder *e) {
  if (!e) return;
  lm_model_free(e->m);
  lm_tokenizer_free(e->tok);
  free(e->ids); free(e->mask); free(e->idx);
  free(e);
}

int64_t lm_rag_embedder_dim(const lm_rag_embedder *e) { return e->cfg.n_embd; }
int64_t lm_rag_embedder_context(const lm_rag_embedder *e) { return e->o.context; }

lm_status lm_rag_embed(lm_rag_embedder *e, const char *const *texts, int64_t n, float *out, int64_t *n_truncated) {
  int64_t C = e->cfg.n_embd;
  if (n_truncated) *n_truncated = 0;
  for (int64_t b0 = 0; b0 < n; b0 += e->o.batch) {
    int64_t nb = n - b0 < e->o.batch ? n - b0 : e->o.batch;
    lm_cls_data d;
    lm_status st = lm_cls_encode(&d, &e->cfg, e->tok, texts + b0, NULL, nb, e->o.context);
    if (st) return st;
    if (n_truncated) *n_truncated += d.n_truncated;
    for (int64_t b = 0; b < nb; b++) e->idx[b] = b;
    int64_t T = lm_cls_fill(&d, e->idx, nb, e->ids, e->mask, NULL);
    lm_cls_data_free(&d);
    lm_batch bb = {.ids = e->ids, .mask = e->mask, .B = nb, .T = T};
    if ((st = lm_batch_check(e->m, &bb))) return st;
    lm_forward(e->m, &bb, NULL, NULL);
    const float *h = lm_model_hidden(e->m);
    for (int64_t b = 0; b < nb; b++) {
      const float *row = h + b * T * C;
      float *v = out + (b0 + b) * C;
      const uint8_t *mk = e->mask + b * T;
      if (e->o.pool == LM_RAG_POOL_MEAN) {
        int64_t cnt = 0;
        for (int64_t k = 0; k < C; k++) v[k] = 0;
        for (int64_t t = 0; t < T; t++)
          if (mk[t]) { cnt++; for (int64_t k = 0; k < C; k++) v[k] += row[t * C + k]; }
        for (int64_t k = 0; k < C; k++) v[k] /= (float)(cnt ? cnt : 1);
      } else {
        int64_t t = 0;
        for (int64_t u = 0; e->o.pool == LM_RAG_POOL_LAST && u < T; u++)
          if (mk[u]) t = u;
        memcpy(v, row + t * C, (size_t)C * sizeof *v);
      }
      if (e->o.normalize) {
        double s = 0;
        for (int64_t k = 0; k < C; k++) s += (double)v[k] * v[k];
        float inv = s > 0 ? (float)(1.0 / sqrt(s)) : 0;
        for (int64_t k = 0; k < C; k++) v[k] *= inv;
      }
    }
  }
  return LM_OK;
}

lm_status lm_rag_index_embed(lm_rag_index *ix, lm_rag_embedder *e, const char *model_name,
                             int64_t *n_truncated, void (*progress)(int64_t done, int64_t total, void *user),
                             void *user) {
  if (n_truncated) *n_truncated = 0;
  if (e->o.pool != LM_RAG_POOL_MEAN || !e->o.normalize)
    return lm_error(LM_ERR_ARG, "an index's vectors are mean-pooled and normalised: load the embedder with the defaults");
  int64_t N = ix->n_chunks, C = lm_rag_embedder_dim(e);
  float *v = lm_xmalloc((size_t)(N ? N : 1) * (size_t)C * sizeof *v);
  const char **texts = lm_xmalloc((size_t)(e->o.batch) * sizeof *texts);
  char *name = lm_strdup(model_name);
  lm_status st = v && texts && name ? LM_OK : LM_ERR_NOMEM;
  for (int64_t b0 = 0; b0 < N && !st; b0 += e->o.batch) {
    int64_t nb = N - b0 < e->o.batch ? N - b0 : e->o.batch;
    for (int64_t b = 0; b < nb; b++) texts[b] = ix->chunks[b0 + b].text;
    int64_t cut = 0;
    st = lm_rag_embed(e, texts, nb, v + b0 * C, &cut);
    if (n_truncated) *n_truncated += cut;
    if (!st && progress) progress(b0 + nb, N, user);
  }
  free(texts);
  if (st) { free(v); free(name); return st; }
  free(ix->vecs);
  free(ix->embed_model);
  ix->vecs = v;
  ix->embed_model = name;
  ix->dim = C;
  return LM_OK;
}
