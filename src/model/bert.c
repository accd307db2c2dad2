/* bert.c — the BERT family (encoder-only, post-LN, bidirectional attention
 * with a padding mask): the tensors it adds to the general transformer
 * (segment embeddings, embedding LayerNorm, pooler, MLM and NSP heads).
 * Internal names are lmkit's; the Hugging Face names are mapped on save/load. */
#include "model/model.h"

int lm_bert_add_params(const lm_config *c, void *t, lm_table_add_fn add) {
  int64_t C = c->n_embd, V = c->vocab_size;
  if (c->type_vocab_size > 0 && add(t, "wtt.weight", c->type_vocab_size, C, 0)) return -1;
  return add(t, "emb_ln.weight", C, 0, 0) || add(t, "emb_ln.bias", C, 0, 0) ||
         add(t, "pooler.weight", C, C, 1) || add(t, "pooler.bias", C, 0, 0) ||
         add(t, "mlm.dense.weight", C, C, 1) || add(t, "mlm.dense.bias", C, 0, 0) ||
         add(t, "mlm.ln.weight", C, 0, 0) || add(t, "mlm.ln.bias", C, 0, 0) || add(t, "mlm.bias", V, 0, 0) ||
         add(t, "nsp.weight", 2, C, 1) || add(t, "nsp.bias", 2, 0, 0);
}
