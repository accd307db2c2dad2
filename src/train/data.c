/* data.c — token streams for training and evaluation. A stream is a flat
 * array of uint32 ids: either text files tokenized into memory, or a shard
 * written by `lmkit data prepare`, memory-mapped so that corpora larger than
 * RAM train without a copy. */
#include <stdlib.h>
#include <string.h>
#include "base/base.h"
#include "tokenizer/tokenizer.h"
#include "train/train.h"

void lm_stream_free(lm_stream *s) {
  free(s->owned);
  if (s->shard.map.data) lm_shard_close(&s->shard);
  memset(s, 0, sizeof *s);
}

static lm_status append(lm_stream *s, const uint32_t *ids, uint64_t n) {
  uint32_t *p = lm_xrealloc(s->owned, (s->n + n) * sizeof(uint32_t));
  if (!p) return LM_ERR_NOMEM;
  memcpy(p + s->n, ids, n * sizeof(uint32_t));
  s->owned = p; s->n += n; s->ids = p;
  return LM_OK;
}

/* Adds the ids of shard `path` to s (mmap if s is empty, else copy). */
static lm_status add_shard(lm_stream *s, const char *path, int64_t vocab_size) {
  lm_shard sh;
  lm_status st = lm_shard_open(&sh, path, 1);
  if (st) return st;
  if ((int64_t)sh.vocab_size > vocab_size) {
    st = lm_error(LM_ERR_FORMAT, "%s: shard vocabulary (%llu ids) is larger than the model's (%lld): was it prepared with another tokenizer?",
                  path, (unsigned long long)sh.vocab_size, (long long)vocab_size);
    lm_shard_close(&sh);
    return st;
  }
  if (s->n == 0 && !s->owned && !s->shard.map.data) {
    s->shard = sh; s->ids = sh.ids; s->n = sh.n;
    return LM_OK;
  }
  if (s->shard.map.data) {           /* second shard: move the first into memory */
    lm_shard first = s->shard;
    memset(&s->shard, 0, sizeof s->shard);
    s->n = 0; s->ids = NULL;
    st = append(s, first.ids, first.n);
    lm_shard_close(&first);
  }
  if (!st) st = append(s, sh.ids, sh.n);
  lm_shard_close(&sh);
  return st;
}

lm_status lm_streams_load(const lm_tokenizer *tok, const char *const *files, int n_files, float val_fraction,
                          int64_t vocab_size, lm_stream *train, lm_stream *val) {
  memset(train, 0, sizeof *train);
  if (val) memset(val, 0, sizeof *val);
  if (n_files <= 0) return lm_error(LM_ERR_ARG, "no training data given");
  const char **texts = calloc(n_files, sizeof *texts);
  if (!texts) return LM_ERR_NOMEM;
  int n_texts = 0, n_dirs = 0;
  lm_status st = LM_OK;
  for (int i = 0; i < n_files && !st; i++) {
    if (lm_dir_exists(files[i])) {
      char *tp = lm_path_join(files[i], "train.tok"), *vp = lm_path_join(files[i], "val.tok");
      if (!tp || !vp) st = LM_ERR_NOMEM;
      else if (!lm_file_exists(tp))
        st = lm_error(LM_ERR_IO, "%s: a data directory must hold train.tok (made by 'lmkit data prepare')", files[i]);
      if (!st) st = add_shard(train, tp, vocab_size);
      if (!st && val && lm_file_exists(vp)) st = add_shard(val, vp, vocab_size);
      free(tp); free(vp);
      n_dirs++;
    } else if (lm_file_exists(files[i])) {
      texts[n_texts++] = files[i];
    } else {
      st = lm_error(LM_ERR_IO, "%s: no such file or directory", files[i]);
    }
  }
  if (!st && n_texts) {
    if (!tok) st = lm_error(LM_ERR_ARG, "text data needs a tokenizer");
    uint32_t *ids = NULL; uint64_t n = 0;
    if (!st) st = lm_tokenize_files(tok, texts, n_texts, lm_get_threads(), &ids, &n);
    if (!st && val && val_fraction > 0 && !(val->n)) {
      uint64_t nv = (uint64_t)((double)n * val_fraction);
      st = append(train, ids, n - nv);
      if (!st) st = append(val, ids + (n - nv), nv);
    } else if (!st) {
      st = append(train, ids, n);
    }
    free(ids);
  }
  free(texts);
  if (!st && train->n == 0) st = lm_error(LM_ERR_ARG, "the training data holds no tokens");
  if (st) { lm_stream_free(train); if (val) lm_stream_free(val); }
  (void)n_dirs;
  return st;
}
