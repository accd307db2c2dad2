/* bert.c — the BERT family: an encoder (bidirectional attention with a key
 * padding mask), post-LN, GELU (erf), word + position + segment embeddings
 * with a LayerNorm:
 *
 *   emb = LayerNorm(wte[ids] + wpe[t] + wtt[segments])            // (N,C)
 *
 * ALBERT's layer sharing (cfg.share_layers) is the general block's; the heads
 * (MLM + NSP, classify, tokens, QA) are heads.c's. Sequence heads pool the
 * first token ([CLS]) through a tanh pooler. What the embeddings keep for
 * backward lives in bert_state, hung on m->fam_state. The padding token's row
 * of wte gets no gradient (HF's padding_idx) and is initialised to zero.
 *
 * Hugging Face names: "bert.embeddings.word_embeddings.weight",
 * "bert.encoder.layer.3.attention.self.query.weight",
 * "cls.predictions.transform.dense.weight", ... Our fused q|k|v matrix (3C,C)
 * is three contiguous (C,C) blocks, so it is stored as three tensors; nothing
 * is transposed (nn.Linear layout). Task classes put the base model under
 * "bert."; a plain BertModel checkpoint has no prefix. */
#include <stdlib.h>
#include <string.h>
#include "base/base.h"
#include "kernels/kernels.h"
#include "model/config_io.h"
#include "model/model.h"

static const lm_family_class classes[] = {
    {LM_HEAD_PRETRAIN, "BertForPreTraining", 0},
    {LM_HEAD_MLM, "BertForMaskedLM", 0},
    {LM_HEAD_CLASSIFY, "BertForSequenceClassification", 0},
    {LM_HEAD_SCALAR, "BertForSequenceClassification", 0},
    {LM_HEAD_TOKENS, "BertForTokenClassification", 0},
    {LM_HEAD_QA, "BertForQuestionAnswering", 0},
    {LM_HEAD_PRETRAIN, "BertModel", 1},
};

static void defaults(lm_config *c) {   /* BertConfig(): bert-base-uncased */
  c->vocab_size = 30522; c->n_positions = 512;
  c->pre_ln = 0; c->causal = 0; c->act = LM_ACT_GELU_ERF; c->norm_eps = 1e-12f;
  c->bos_token_id = c->eos_token_id = -1;   /* BERT uses [CLS]/[SEP], not bos/eos */
  c->type_vocab_size = 2; c->pad_token_id = 0; c->head = LM_HEAD_PRETRAIN;
}

static lm_status parse(const cJSON *r, lm_config *c, const char *p) {
  lm_status st;
  int64_t type_vocab = c->type_vocab_size;
  const char *pos_type = NULL;
  float hidden_drop = 0.1f;   /* BertConfig's, for a file without the keys */
  c->attn_pdrop = 0.1f;
  if ((st = lm_cfg_int(r, "vocab_size", &c->vocab_size, 0, 0, p)) ||
      (st = lm_cfg_int(r, "max_position_embeddings", &c->n_positions, 0, 0, p)) ||
      (st = lm_cfg_int(r, "hidden_size", &c->n_embd, 0, 0, p)) ||
      (st = lm_cfg_int(r, "num_hidden_layers", &c->n_layer, 0, 0, p)) ||
      (st = lm_cfg_int(r, "num_attention_heads", &c->n_head, 0, 0, p)) ||
      (st = lm_cfg_int(r, "intermediate_size", &c->n_inner, 0, 0, p)) ||
      (st = lm_cfg_act(r, "hidden_act", &c->act, p)) ||
      (st = lm_cfg_float(r, "layer_norm_eps", &c->norm_eps, p)) ||
      (st = lm_cfg_float(r, "initializer_range", &c->init_std, p)) ||
      (st = lm_cfg_float(r, "hidden_dropout_prob", &hidden_drop, p)) ||
      (st = lm_cfg_float(r, "attention_probs_dropout_prob", &c->attn_pdrop, p)) ||
      (st = lm_cfg_int(r, "bos_token_id", &c->bos_token_id, 1, -1, p)) ||
      (st = lm_cfg_int(r, "eos_token_id", &c->eos_token_id, 1, -1, p)) ||
      (st = lm_cfg_int(r, "type_vocab_size", &type_vocab, 0, 0, p)) ||
      (st = lm_cfg_bool(r, "tie_word_embeddings", &c->tie_embeddings, p)) ||
      (st = lm_cfg_str(r, "position_embedding_type", &pos_type, p)))
    return st;
  if ((st = lm_cfg_range(p, "type_vocab_size", type_vocab, 0, (int64_t)1 << 24))) return st;
  c->type_vocab_size = type_vocab;
  c->embd_pdrop = c->resid_pdrop = hidden_drop;   /* BERT's one hidden dropout: embeddings and both branches */
  /* the task heads' dropout: a rate, or null for hidden_dropout_prob (as transformers reads it) */
  const cJSON *cd = cJSON_GetObjectItemCaseSensitive(r, "classifier_dropout");
  if (cd && !cJSON_IsNull(cd)) {
    if ((st = lm_cfg_float(r, "classifier_dropout", &c->cls_pdrop, p))) return st;
    if (c->cls_pdrop < 0)
      return lm_error(LM_ERR_RANGE, "%s: classifier_dropout = %g: a dropout rate must be in [0, 1)", p,
                      (double)c->cls_pdrop);
  }
  if (pos_type && strcmp(pos_type, "absolute") != 0)
    return lm_error(LM_ERR_UNSUPPORTED, "%s: position_embedding_type = \"%.64s\" is not supported (absolute)", p,
                    pos_type);
  return LM_OK;
}

static lm_status validate(const lm_config *c, const char *p) {
  lm_status st = lm_cfg_range(p, "type_vocab_size", c->type_vocab_size, 0, (int64_t)1 << 24);
  if (st) return st;
  /* the embedding and MLM-transform norms are LayerNorms with biases, as in BERT */
  if (c->embd_pdrop != c->resid_pdrop)
    return lm_error(LM_ERR_UNSUPPORTED, "%s: BERT has one hidden_dropout_prob for the embeddings and the residual branches", p);
  if (c->norm != LM_NORM_LAYER || !c->bias)
    return lm_error(LM_ERR_UNSUPPORTED, "%s: the bert family needs LayerNorm with biases (lmkit.norm, lmkit.bias)", p);
  return LM_OK;
}

static void write(lm_cfg_writer *w, const lm_config *c) {   /* keys sorted, as transformers writes them */
  lm_cfgw_architectures(w, c);
  lm_cfgw_float(w, "attention_probs_dropout_prob", c->attn_pdrop);
  if (c->bos_token_id >= 0) lm_cfgw_int(w, "bos_token_id", c->bos_token_id);
  if (c->cls_pdrop < 0) lm_cfgw_raw(w, "classifier_dropout", "null");
  else lm_cfgw_float(w, "classifier_dropout", c->cls_pdrop);
  if (c->eos_token_id >= 0) lm_cfgw_int(w, "eos_token_id", c->eos_token_id);
  lm_cfgw_str(w, "hidden_act", lm_cfg_act_name(c->act));
  lm_cfgw_float(w, "hidden_dropout_prob", c->resid_pdrop);
  lm_cfgw_int(w, "hidden_size", c->n_embd);
  lm_cfgw_id2label(w, c);
  lm_cfgw_float(w, "initializer_range", c->init_std);
  lm_cfgw_int(w, "intermediate_size", c->n_inner ? c->n_inner : 4 * c->n_embd);
  lm_cfgw_label2id(w, c);
  lm_cfgw_float(w, "layer_norm_eps", c->norm_eps);
  lm_cfgw_lmkit(w, c);
  lm_cfgw_int(w, "max_position_embeddings", c->n_positions);
  lm_cfgw_str(w, "model_type", "bert");
  lm_cfgw_int(w, "num_attention_heads", c->n_head);
  lm_cfgw_int(w, "num_hidden_layers", c->n_layer);
  lm_cfgw_id(w, "pad_token_id", c->pad_token_id);
  lm_cfgw_str(w, "position_embedding_type", "absolute");
  lm_cfgw_bool(w, "tie_word_embeddings", c->tie_embeddings);
  lm_cfgw_str(w, "torch_dtype", "float32");
  lm_cfgw_str(w, "transformers_version", LM_CFG_TRANSFORMERS_VERSION);
  lm_cfgw_int(w, "type_vocab_size", c->type_vocab_size);
  lm_cfgw_bool(w, "use_cache", 1);
  lm_cfgw_int(w, "vocab_size", c->vocab_size);
}

/* ------------------------------------------------------------------ tensors */

static int add_embeddings(const lm_config *c, lm_param_table *t) {
  int64_t C = c->n_embd;
  return lm_table_add(t, "wte.weight", c->vocab_size, C, 0) || lm_table_add(t, "wpe.weight", c->n_positions, C, 0) ||
         (c->type_vocab_size > 0 && lm_table_add(t, "wtt.weight", c->type_vocab_size, C, 0)) ||
         lm_table_add(t, "emb_ln.weight", C, 0, 0) || lm_table_add(t, "emb_ln.bias", C, 0, 0);
}

/* HF BertPreTrainedModel._init_weights: N(0, std) everywhere, and the padding token's row is zero */
static void init_done(lm_model *m) {
  int64_t pad = m->cfg.pad_token_id;
  if (pad >= 0 && pad < m->cfg.vocab_size) memset(m->w.wte + pad * m->cfg.n_embd, 0, m->cfg.n_embd * sizeof(float));
}

/* ------------------------------------------------------------------ embeddings */

typedef struct {
  int64_t N;
  float *arena;
  float *emb_sum, *emb_mean, *emb_rstd;   /* (N,C), (N), (N): input of emb_ln and its stats */
  int32_t *emb_ids;                       /* (N) ids with the padding id as -1: no gradient (padding_idx) */
  int32_t *zeros;                         /* (N) segment 0, when the batch has no segments */
  float *wtt, *ln_w, *ln_b, *gwtt, *gln_w, *gln_b;
} bert_state;

static void free_state(lm_model *m) {
  bert_state *s = m->fam_state;
  if (!s) return;
  lm_free(s->arena);
  free(s->emb_ids);
  free(s);
  m->fam_state = NULL;
}

static lm_status reserve(lm_model *m, int64_t B, int64_t T, int need_grads) {
  (void)need_grads;
  int64_t N = B * T, C = m->cfg.n_embd;
  bert_state *s = m->fam_state;
  if (!s || s->N != N) {
    free_state(m);
    s = calloc(1, sizeof *s);
    if (!s) return lm_error(LM_ERR_NOMEM, "out of memory");
    size_t c16 = ((size_t)N * C + 15) & ~(size_t)15, n16 = ((size_t)N + 15) & ~(size_t)15;
    s->arena = lm_alloc((c16 + 2 * n16) * sizeof(float));
    s->emb_ids = calloc(2 * (size_t)N, sizeof(int32_t));
    if (!s->arena || !s->emb_ids) {
      lm_free(s->arena); free(s->emb_ids); free(s);
      return lm_error(LM_ERR_NOMEM, "out of memory for bert embeddings");
    }
    s->emb_sum = s->arena; s->emb_mean = s->arena + c16; s->emb_rstd = s->arena + c16 + n16;
    s->zeros = s->emb_ids + N;
    s->N = N;
    m->fam_state = s;
  }
  s->wtt = lm_model_tensor(m, m->params, "wtt.weight");
  s->ln_w = lm_model_tensor(m, m->params, "emb_ln.weight"); s->ln_b = lm_model_tensor(m, m->params, "emb_ln.bias");
  s->gwtt = lm_model_tensor(m, m->grads, "wtt.weight");
  s->gln_w = lm_model_tensor(m, m->grads, "emb_ln.weight"); s->gln_b = lm_model_tensor(m, m->grads, "emb_ln.bias");
  return LM_OK;
}

static lm_status check(const lm_model *m, const lm_batch *b) {
  if (!b->segments) return LM_OK;
  int64_t hi = m->cfg.type_vocab_size > 0 ? m->cfg.type_vocab_size : 1;
  for (int64_t i = 0; i < b->B * b->T; i++)
    if (b->segments[i] < 0 || b->segments[i] >= hi)
      return lm_error(LM_ERR_RANGE, "batch: segments[%lld] = %d is out of range (type_vocab_size 0..%lld)", (long long)i,
                      (int)b->segments[i], (long long)hi - 1);
  return LM_OK;
}

static void embed_forward(lm_model *m, const lm_batch *b, float *emb) {
  bert_state *s = m->fam_state;
  const lm_config *c = &m->cfg;
  int64_t B = b->B, T = b->T, N = B * T, C = c->n_embd;
  embedding_forward(s->emb_sum, b->ids, m->w.wte, N, C, 0);                               // (N,C)
  for (int64_t i = 0; i < B; i++) embedding_forward(s->emb_sum + i * T * C, m->acts.pos, m->w.wpe, T, C, 1);
  if (s->wtt) embedding_forward(s->emb_sum, b->segments ? b->segments : s->zeros, s->wtt, N, C, 1);
  layernorm_forward(emb, s->emb_mean, s->emb_rstd, s->emb_sum, s->ln_w, s->ln_b, N, C, c->norm_eps);
  for (int64_t n = 0; n < N; n++) s->emb_ids[n] = b->ids[n] == c->pad_token_id ? -1 : b->ids[n];
}

static void embed_backward(lm_model *m, const lm_batch *b, float *demb) {
  bert_state *s = m->fam_state;
  int64_t B = b->B, T = b->T, N = B * T, C = m->cfg.n_embd;
  /* through the embedding LayerNorm into the three tables; s->emb_sum is not needed after */
  float *d = m->acts.dres_b;
  memset(d, 0, N * C * sizeof(float));
  layernorm_backward(d, s->gln_w, s->gln_b, demb, s->emb_sum, s->ln_w, s->emb_mean, s->emb_rstd, N, C);
  embedding_backward(m->g.wte, d, s->emb_ids, N, C);
  for (int64_t i = 0; i < B; i++) embedding_backward(m->g.wpe, d + i * T * C, m->acts.pos, T, C);
  if (s->gwtt) embedding_backward(s->gwtt, d, b->segments ? b->segments : s->zeros, N, C);
}

/* ------------------------------------------------------------------ Hugging Face names */

static int hf_name(const lm_config *c, const char *name, int64_t layer, lm_hf_tensor *o) {
  static const struct { const char *ours, *hf; int base; } map[] = {
      {"wte.weight", "embeddings.word_embeddings.weight", 1},
      {"wpe.weight", "embeddings.position_embeddings.weight", 1},
      {"wtt.weight", "embeddings.token_type_embeddings.weight", 1},
      {"emb_ln.weight", "embeddings.LayerNorm.weight", 1},
      {"emb_ln.bias", "embeddings.LayerNorm.bias", 1},
      {"ln_f.weight", "encoder.ln_f.weight", 1},            /* pre-LN variant only: lmkit's own */
      {"ln_f.bias", "encoder.ln_f.bias", 1},
      {"pooler.weight", "pooler.dense.weight", 1},
      {"pooler.bias", "pooler.dense.bias", 1},
      {"mlm.dense.weight", "cls.predictions.transform.dense.weight", 0},
      {"mlm.dense.bias", "cls.predictions.transform.dense.bias", 0},
      {"mlm.ln.weight", "cls.predictions.transform.LayerNorm.weight", 0},
      {"mlm.ln.bias", "cls.predictions.transform.LayerNorm.bias", 0},
      {"mlm.bias", "cls.predictions.bias", 0},
      {"mlm.decoder.weight", "cls.predictions.decoder.weight", 0},
      {"nsp.weight", "cls.seq_relationship.weight", 0},
      {"nsp.bias", "cls.seq_relationship.bias", 0},
      {"classifier.weight", "classifier.weight", 0},
      {"classifier.bias", "classifier.bias", 0},
      {"token_classifier.weight", "classifier.weight", 0},
      {"token_classifier.bias", "classifier.bias", 0},
      {"qa_outputs.weight", "qa_outputs.weight", 0},
      {"qa_outputs.bias", "qa_outputs.bias", 0},
  };
  (void)c;
  memset(o, 0, sizeof *o);
  o->parts = 1;
  for (size_t i = 0; i < sizeof map / sizeof *map; i++)
    if (!strcmp(name, map[i].ours)) { snprintf(o->name, sizeof o->name, "%s", map[i].hf); o->base = map[i].base; return 0; }
  long long l;
  int k = 0;
  if (sscanf(name, "h.%lld.%n", &l, &k) != 1 || k == 0) return -1;
  if (layer >= 0) l = layer;
  const char *rest = name + k;
  static const struct { const char *ours, *hf; } blk[] = {
      {"ln_1.", "attention.output.LayerNorm."}, {"attn.c_proj.", "attention.output.dense."},
      {"mlp.c_fc.", "intermediate.dense."},     {"mlp.c_proj.", "output.dense."},
      {"ln_2.", "output.LayerNorm."},
  };
  o->base = 1;
  if (!strncmp(rest, "attn.c_attn.", 12)) {   /* one of query, key, value: "%s" takes the part's name */
    snprintf(o->name, sizeof o->name, "encoder.layer.%lld.attention.self.%%s.%s", l, rest + 12);
    o->parts = 3;
    return 0;
  }
  for (size_t i = 0; i < sizeof blk / sizeof *blk; i++) {
    size_t len = strlen(blk[i].ours);
    if (!strncmp(rest, blk[i].ours, len)) { snprintf(o->name, sizeof o->name, "encoder.layer.%lld.%s%s", l, blk[i].hf, rest + len); return 0; }
  }
  return -1;
}

static int hf_ignore(const lm_config *c, const char *name) {
  size_t len = strlen(name);
  if (len >= 12 && !strcmp(name + len - 12, "position_ids")) return 1;
  if (!strncmp(name, "cls.", 4) || !strncmp(name, "classifier.", 11) || !strncmp(name, "qa_outputs.", 11) ||
      !strncmp(name, "pooler.", 7))
    return 1;
  long long l;
  return c->share_layers && sscanf(name, "encoder.layer.%lld.", &l) == 1 && l >= 0 && l < c->n_layer;
}

/* TF-era checkpoints spell LayerNorm.weight/bias as gamma/beta; the MLM bias may sit on the decoder */
static int hf_alias(const char *hf, char *out, size_t n) {
  size_t len = strlen(hf);
  if (len >= 16 && !strcmp(hf + len - 16, "LayerNorm.weight")) { snprintf(out, n, "%.*sgamma", (int)(len - 6), hf); return 1; }
  if (len >= 14 && !strcmp(hf + len - 14, "LayerNorm.bias")) { snprintf(out, n, "%.*sbeta", (int)(len - 4), hf); return 1; }
  if (!strcmp(hf, "cls.predictions.bias")) { snprintf(out, n, "cls.predictions.decoder.bias"); return 1; }
  return 0;
}

const lm_family lm_family_bert = {
    .model_type = "bert", .arch = LM_ARCH_BERT, .class_prefix = "Bert",
    .classes = classes, .n_classes = sizeof classes / sizeof *classes,
    .base_prefix = "bert.",
    .pool = LM_POOL_FIRST, .seq_head_bias = 1, .hidden_dropout = 1, .head_dropout = 1,
    .defaults = defaults, .parse = parse, .validate = validate, .write = write,
    .keys = {"vocab_size", "max_position_embeddings", "hidden_size", "num_hidden_layers", "num_attention_heads",
             "intermediate_size", "layer_norm_eps", "initializer_range",
             {"hidden_dropout_prob", "attention_probs_dropout_prob", "hidden_dropout_prob"}},
    .add_embeddings = add_embeddings, .init_done = init_done,
    .reserve = reserve, .free_state = free_state, .check = check,
    .embed_forward = embed_forward, .embed_backward = embed_backward,
    .hf_name = hf_name, .hf_ignore = hf_ignore, .hf_alias = hf_alias,
};
