/* gguf_model.c — GGUF files as lmkit models and tokenizers, both ways (gguf.h).
 *
 * Names: the family already says what Hugging Face calls each of our tensors
 * (family.h hf_name, with q/k/v and gate/up parts by rows); ARCHS below maps
 * those HF module names to llama.cpp's (convert_hf_to_gguf's tensor map), so a
 * tensor's GGUF name is HF name -> table. GGUF's ne = [in, out] is lmkit's
 * row-major (out, in), so no tensor is transposed (GPT-2's Conv1D transpose is
 * a property of the HF file only).
 *
 * Rotary convention: HF rotates the two halves of each head, llama.cpp
 * adjacent pairs, so convert_hf_to_gguf permutes the rows of q (per attention
 * head) and k (per key/value head): GGUF row 2j+i of a head is HF row
 * i*hs/2 + j. permute_rows does it and its inverse.
 *
 * Tokenizer: the GGUF keys are turned into a tokenizer.json document (BPE
 * model, GPT-2's ByteLevel pre-tokenizer and decoder, added tokens) and read by
 * lm_tokenizer_from_json, and exported from the one lm_tokenizer_to_json
 * writes, so both directions reuse the tokenizer's own reader and writer. */
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "base/base.h"
#include "model/config.h"
#include "model/gguf.h"
#include "model/heads.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

/* ------------------------------------------------------------------ architectures */

typedef struct { const char *hf, *gguf; int permute; } name_map;   /* permute: 1 q (heads), 2 k (kv heads) */

static const name_map GPT2_NAMES[] = {
    {"wte", "token_embd", 0},     {"wpe", "position_embd", 0},     {"ln_f", "output_norm", 0},    {"lm_head", "output", 0},
    {"ln_1", "attn_norm", 0},     {"attn.c_attn", "attn_qkv", 0},  {"attn.c_proj", "attn_output", 0},
    {"ln_2", "ffn_norm", 0},      {"mlp.c_fc", "ffn_up", 0},       {"mlp.c_proj", "ffn_down", 0},   {NULL, NULL, 0},
};
static const name_map LLAMA_NAMES[] = {
    {"embed_tokens", "token_embd", 0},         {"norm", "output_norm", 0},             {"lm_head", "output", 0},
    {"input_layernorm", "attn_norm", 0},       {"self_attn.q_proj", "attn_q", 1},   {"self_attn.k_proj", "attn_k", 2},
    {"self_attn.v_proj", "attn_v", 0},         {"self_attn.o_proj", "attn_output", 0}, {"post_attention_layernorm", "ffn_norm", 0},
    {"mlp.gate_proj", "ffn_gate", 0},          {"mlp.up_proj", "ffn_up", 0},           {"mlp.down_proj", "ffn_down", 0},
    {NULL, NULL, 0},
};

/* One architecture: its name in general.architecture, the family, where HF puts layer N, the name
 * map, and its keys (after "<arch>."): the ones read into lm_config; any other <arch>.* key is
 * refused, since it would change the computation. */
typedef struct {
  const char *name; lm_arch arch; const char *layer_prefix; const name_map *names;
  const char *eps_key;   /* the norm epsilon key */
} arch_info;

static const arch_info ARCHS[] = {
    {"gpt2", LM_ARCH_GPT2, "h.", GPT2_NAMES, "attention.layer_norm_epsilon"},
    {"llama", LM_ARCH_LLAMA, "layers.", LLAMA_NAMES, "attention.layer_norm_rms_epsilon"},
};
#define N_ARCHS (sizeof ARCHS / sizeof *ARCHS)

static const arch_info *arch_by_name(const char *s, size_t n) {
  for (size_t i = 0; i < N_ARCHS; i++)
    if (strlen(ARCHS[i].name) == n && !memcmp(ARCHS[i].name, s, n)) return &ARCHS[i];
  return NULL;
}
static const arch_info *arch_by_id(lm_arch a) {
  for (size_t i = 0; i < N_ARCHS; i++)
    if (ARCHS[i].arch == a) return &ARCHS[i];
  return NULL;
}

/* HF name (without the base prefix) -> GGUF name; the name map entry, or NULL */
static const name_map *gguf_name(const arch_info *a, const char *hf, char *out, size_t n) {
  long long layer = -1;
  int k = 0;
  size_t pl = strlen(a->layer_prefix);
  char fmt[32];
  snprintf(fmt, sizeof fmt, "%s%%lld.%%n", a->layer_prefix);
  if (!strncmp(hf, a->layer_prefix, pl) && (sscanf(hf, fmt, &layer, &k) != 1 || !k)) return NULL;
  const char *rest = layer >= 0 ? hf + k : hf, *dot = strrchr(rest, '.');
  if (!dot) return NULL;
  for (const name_map *m = a->names; m->hf; m++) {
    if (strlen(m->hf) != (size_t)(dot - rest) || memcmp(m->hf, rest, (size_t)(dot - rest))) continue;
    if (layer >= 0) snprintf(out, n, "blk.%lld.%s%s", layer, m->gguf, dot);
    else snprintf(out, n, "%s%s", m->gguf, dot);
    return m;
  }
  return NULL;
}

/* Rows (row_bytes each: floats or quantized blocks) of an (heads * hs, cols) matrix between HF's
 * rotate-half order and GGUF's pairs. */
static void permute_rows(void *dst, const void *src, int64_t heads, int64_t hs, size_t row_bytes, int to_gguf) {
  for (int64_t h = 0; h < heads; h++)
    for (int64_t j = 0; j < hs / 2; j++)
      for (int64_t i = 0; i < 2; i++) {
        int64_t g = h * hs + 2 * j + i, f = h * hs + i * (hs / 2) + j;
        memcpy((char *)dst + (to_gguf ? g : f) * row_bytes, (const char *)src + (to_gguf ? f : g) * row_bytes, row_bytes);
      }
}

static void part_name(const lm_hf_tensor *t, int k, char *out, size_t n) {
  static const char *const qkv[3] = {"query", "key", "value"};
  if (t->parts > 1) snprintf(out, n, t->name, (t->part_names ? t->part_names : qkv)[k]);
  else snprintf(out, n, "%s", t->name);
}

static int64_t part_rows(const lm_hf_tensor *t, const lm_param_info *p, int k, int64_t *row0) {
  *row0 = 0;
  if (!t->part_rows[0]) { *row0 = k * (p->shape[0] / t->parts); return p->shape[0] / t->parts; }
  for (int j = 0; j < k; j++) *row0 += t->part_rows[j];
  return t->part_rows[k];
}

/* Calls fn for every GGUF tensor of m: its name, where its rows start in the parameter, how many,
 * and the permutation (0, 1 q, 2 k). */
typedef lm_status (*tensor_fn)(const lm_model *m, const lm_param_info *p, const char *gname, int64_t row0, int64_t rows,
                               int permute, void *user);
static lm_status each_tensor(const lm_model *m, const arch_info *a, tensor_fn fn, void *user) {
  for (int i = 0; i < m->n_info; i++) {
    const lm_param_info *p = &m->info[i];
    lm_hf_tensor t;
    if (m->fam->hf_name(&m->cfg, p->name, -1, &t))
      return lm_error(LM_ERR_FORMAT, "internal: the %s family has no name for '%s'", m->fam->model_type, p->name);
    for (int k = 0; k < t.parts; k++) {
      char hf[200], g[200];
      part_name(&t, k, hf, sizeof hf);
      const name_map *nm = gguf_name(a, hf, g, sizeof g);
      if (!nm) return lm_error(LM_ERR_UNSUPPORTED, "tensor '%s' (%s) has no GGUF name for %s", p->name, hf, a->name);
      int64_t row0, rows = part_rows(&t, p, k, &row0);
      lm_status st = fn(m, p, g, row0, rows, nm->permute, user);
      if (st) return st;
    }
  }
  return LM_OK;
}

static int64_t head_dim(const lm_config *c) { return c->n_embd / c->n_head; }
static int64_t perm_heads(const lm_config *c, int permute) { return permute == 1 ? c->n_head : lm_kv_heads(c); }

/* ------------------------------------------------------------------ loading */

int lm_gguf_is_file(const char *path) {
  if (!path || lm_dir_exists(path)) return 0;
  FILE *f = fopen(path, "rb");
  if (!f) return 0;
  char m[4];
  int ok = fread(m, 1, 4, f) == 4 && !memcmp(m, "GGUF", 4);
  fclose(f);
  return ok;
}

/* the tokenizer keys lmkit reads (any other tokenizer.* key is refused) */
static const char *const TOKENIZER_KEYS[] = {
    "tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens", "tokenizer.ggml.token_type",
    "tokenizer.ggml.merges", "tokenizer.ggml.scores", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
    "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.padding_token_id", "tokenizer.ggml.add_bos_token",
    "tokenizer.ggml.add_eos_token", "tokenizer.chat_template",
};
/* <arch>.* keys lmkit reads */
static const char *const ARCH_KEYS[] = {
    "context_length", "embedding_length", "block_count", "feed_forward_length", "attention.head_count",
    "attention.head_count_kv", "attention.layer_norm_epsilon", "attention.layer_norm_rms_epsilon", "rope.freq_base",
    "rope.dimension_count", "attention.key_length", "attention.value_length", "vocab_size",
};

static int in_list(const char *s, const char *const *list, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!strcmp(s, list[i])) return 1;
  return 0;
}

static lm_status arch_of(const lm_gguf *g, const arch_info **out) {
  const char *s = NULL; size_t n = 0;
  lm_status st = lm_gguf_get_str(g, "general.architecture", &s, &n, 1);
  if (st) return st;
  *out = arch_by_name(s, n);
  if (!*out) return lm_error(LM_ERR_UNSUPPORTED, "%s: general.architecture \"%.*s\" is not supported (gpt2, llama)",
                             lm_gguf_name(g), (int)(n > 60 ? 60 : n), s);
  return LM_OK;
}

static lm_status key(const lm_gguf *g, const arch_info *a, const char *k, int64_t *v, int required) {
  char full[128];
  snprintf(full, sizeof full, "%s.%s", a->name, k);
  return lm_gguf_get_int(g, full, v, required);
}
static lm_status fkey(const lm_gguf *g, const arch_info *a, const char *k, float *v, int required) {
  char full[128];
  snprintf(full, sizeof full, "%s.%s", a->name, k);
  return lm_gguf_get_float(g, full, v, required);
}

static lm_status read_config(const lm_gguf *g, const arch_info *a, lm_config *c) {
  const char *p = lm_gguf_name(g);
  size_t al = strlen(a->name);
  for (int64_t i = 0; i < lm_gguf_n_kv(g); i++) {   /* every key is one lmkit knows */
    const char *k = lm_gguf_kv_at(g, i)->key;
    if (!strncmp(k, "general.", 8)) continue;
    if (!strncmp(k, "tokenizer.", 10)) {
      if (!in_list(k, TOKENIZER_KEYS, sizeof TOKENIZER_KEYS / sizeof *TOKENIZER_KEYS))
        return lm_error(LM_ERR_UNSUPPORTED, "%s: key '%s' is not supported", p, k);
      continue;
    }
    if (strncmp(k, a->name, al) || k[al] != '.' || !in_list(k + al + 1, ARCH_KEYS, sizeof ARCH_KEYS / sizeof *ARCH_KEYS))
      return lm_error(LM_ERR_UNSUPPORTED, "%s: key '%s' is not supported for a %s model (it may change the computation)", p, k, a->name);
  }
  lm_config_default(c, a->arch);
  int64_t kv = 0, rope_dim = 0, klen = 0, vlen = 0, vocab = 0, v = -1;
  lm_status st;
  if ((st = key(g, a, "context_length", &c->n_positions, 1)) || (st = key(g, a, "embedding_length", &c->n_embd, 1)) ||
      (st = key(g, a, "block_count", &c->n_layer, 1)) || (st = key(g, a, "feed_forward_length", &c->n_inner, 1)) ||
      (st = key(g, a, "attention.head_count", &c->n_head, 1)) || (st = key(g, a, "attention.head_count_kv", &kv, 0)) ||
      (st = fkey(g, a, a->eps_key, &c->norm_eps, 1)) || (st = key(g, a, "rope.dimension_count", &rope_dim, 0)) ||
      (st = key(g, a, "attention.key_length", &klen, 0)) || (st = key(g, a, "attention.value_length", &vlen, 0)) ||
      (st = key(g, a, "vocab_size", &vocab, 0)))
    return st;
  if (c->rope && (st = fkey(g, a, "rope.freq_base", &c->rope_theta, 0))) return st;
  if (c->n_head < 1 || c->n_embd % c->n_head)
    return lm_error(LM_ERR_FORMAT, "%s: embedding_length %lld is not a multiple of head_count %lld", p, (long long)c->n_embd,
                    (long long)c->n_head);
  int64_t hs = c->n_embd / c->n_head;
  if ((rope_dim && rope_dim != hs) || (klen && klen != hs) || (vlen && vlen != hs))
    return lm_error(LM_ERR_UNSUPPORTED, "%s: rope.dimension_count / key_length / value_length other than the head size %lld "
                    "are not supported", p, (long long)hs);
  if (kv && (kv < 1 || c->n_head % kv))
    return lm_error(LM_ERR_FORMAT, "%s: attention.head_count_kv = %lld does not divide head_count %lld", p, (long long)kv,
                    (long long)c->n_head);
  if (kv && !c->rope && kv != c->n_head) return lm_error(LM_ERR_UNSUPPORTED, "%s: attention.head_count_kv for gpt2", p);
  c->n_kv_head = kv == c->n_head ? 0 : kv;
  int64_t emb = lm_gguf_find_tensor(g, "token_embd.weight");
  if (emb < 0) return lm_error(LM_ERR_FORMAT, "%s: missing tensor 'token_embd.weight'", p);
  c->vocab_size = lm_gguf_tensor_at(g, emb)->ne[1];
  if (vocab && vocab != c->vocab_size)
    return lm_error(LM_ERR_FORMAT, "%s: %s.vocab_size = %lld but token_embd.weight has %lld rows", p, a->name, (long long)vocab,
                    (long long)c->vocab_size);
  c->tie_embeddings = lm_gguf_find_tensor(g, "output.weight") < 0;
  c->bos_token_id = c->eos_token_id = -1;
  if ((st = lm_gguf_get_int(g, "tokenizer.ggml.bos_token_id", &v, 0))) return st;
  if (v >= 0) c->bos_token_id = v;
  v = -1;
  if ((st = lm_gguf_get_int(g, "tokenizer.ggml.eos_token_id", &v, 0))) return st;
  if (v >= 0) c->eos_token_id = v;
  c->head = LM_HEAD_LM;
  if ((st = lm_config_validate(c))) return lm_error_prefix(st, "%s", p);
  return LM_OK;
}

/* ------------------------------------------------------------------ quantized linears */

/* How each linear is kept for inference (model.h qlin), from the types of its GGUF parts: Q8_0 and
 * Q4_0 blocks as they are in the file (rows permuted as the f32 ones), then repacked into the
 * kernels' panels of 16 rows (quant.h lm_qmat_pack; the same bytes rearranged); the K-quants (Q4_K,
 * Q5_K, Q6_K), and parts that mix them with Q4_0 (e.g. Q4_K q and k beside a Q6_K v), as A8 blocks
 * (quant.h: the file's values exactly, each half-block's scale and minimum applied as ggml
 * applies them), or as A4 blocks when every part is Q4_K or Q4_0 (half the bytes); a linear whose parts are all F16 kept as f16 (in panels too) when loading for
 * generation only (half the bytes a decoded token reads); any other float part (F32, BF16, F16
 * mixed with other types, F16 in a model loaded with its f32 copy), or Q8_0 beside another type,
 * makes the linear f32 (its exact values: no weight is ever requantized).
 * Loading for generation only (qonly) keeps no f32 values for the linears kept quantized, nor for
 * the token embedding when it is quantized (an extra entry, looked up row by row). */
enum { QK_UNSET = -3, QK_F32 = -2 };   /* else the lm_qweight of every part */
static int kept_quantized(int kind) { return kind >= 0; }

typedef struct {
  const lm_gguf *g;
  char *used;              /* (n_tensors) the tensors read */
  void *tmp, *btmp;        /* a part's f32 values (permuted) and its A8 blocks */
  size_t tmp_n, btmp_n;
  int *kind;               /* (LM_QL_COUNT) each qlin entry's QK_* or lm_qweight */
  int qonly, pass;         /* qlin_part: pass 0 kinds and shapes, pass 1 blocks */
} load_ctx;

static lm_status grow(void **buf, size_t *have, size_t need) {
  if (need <= *have) return LM_OK;
  void *b = lm_xrealloc(*buf, need);
  if (!b) return LM_ERR_NOMEM;
  *buf = b; *have = need;
  return LM_OK;
}

/* the qlin entry a parameter is, or -1 */
static int64_t qlin_index(const lm_model *m, const lm_param_info *p, int qonly) {
  const float *w = m->params + p->offset;
  if (p->ndim != 2) return -1;
  for (int64_t l = 0; l < m->cfg.n_layer; l++) {
    const lm_block_weights *b = &m->w.h[l];
    const float *ws[LM_QL_PER_LAYER] = {[LM_QL_QKV] = b->qkv_w, [LM_QL_ATTN_PROJ] = b->attn_proj_w, [LM_QL_FC] = b->fc_w,
                                        [LM_QL_FC_PROJ] = b->fc_proj_w};
    for (int k = 0; k < LM_QL_PER_LAYER; k++)
      if (w == ws[k]) return l * LM_QL_PER_LAYER + k;
  }
  if (w == lm_model_lm_head(m)) return LM_QL_HEAD(m);   /* tied: the token embedding too */
  return qonly && w == m->w.wte ? LM_QL_EMB(m) : -1;
}

/* a tensor with no f32 values (qonly, kept quantized) */
static int absent(const lm_model *m, const load_ctx *x, const lm_param_info *p) {
  int64_t e = qlin_index(m, p, x->qonly);
  return x->qonly && e >= 0 && kept_quantized(x->kind[e]);
}

static lm_status load_one(const lm_model *m, const lm_param_info *p, const char *gname, int64_t row0, int64_t rows,
                          int permute, void *user) {
  load_ctx *x = user;
  const char *path = lm_gguf_name(x->g);
  int64_t i = lm_gguf_find_tensor(x->g, gname);
  if (i < 0) return lm_error(LM_ERR_FORMAT, "%s: missing tensor '%s'", path, gname);
  const lm_gguf_tensor *t = lm_gguf_tensor_at(x->g, i);
  int64_t cols = p->ndim == 2 ? p->shape[1] : p->shape[0];
  int want = p->ndim == 2 ? 2 : 1;
  if (t->n_dims != want || t->ne[0] != cols || (want == 2 && t->ne[1] != rows))
    return lm_error(LM_ERR_FORMAT, "%s: tensor '%s' has shape [%lld, %lld] (ne), expected [%lld, %lld]", path, gname,
                    (long long)t->ne[0], (long long)t->ne[1], (long long)cols, (long long)(want == 2 ? rows : 1));
  x->used[i] = 1;
  if (x->pass < 0 || absent(m, x, p)) return LM_OK;   /* pass -1: checks only */
  float *dst = m->params + p->offset + row0 * (p->ndim == 2 ? cols : 0);
  float *to = dst;
  if (permute) {
    if (grow(&x->tmp, &x->tmp_n, (size_t)t->numel * sizeof(float))) return LM_ERR_NOMEM;
    to = x->tmp;
  }
  lm_status st = lm_gguf_dequantize((int)t->type, t->data, t->nbytes, to, t->numel);
  if (st) return lm_error_prefix(st, "%s: tensor '%s'", path, gname);
  int64_t e = qlin_index(m, p, x->qonly);
  if (e < 0 || !kept_quantized(x->kind[e])) lm_gguf_release(x->g, t);   /* else its blocks are copied next */
  int64_t hs = head_dim(&m->cfg);
  if (permute) {
    if (rows != perm_heads(&m->cfg, permute) * hs) return lm_error(LM_ERR_FORMAT, "%s: tensor '%s': rows are not heads x head size", path, gname);
    permute_rows(dst, to, perm_heads(&m->cfg, permute), hs, (size_t)cols * sizeof(float), 0);
  }
  return LM_OK;
}

/* a part's kind, and the kind of a linear whose parts so far are `cur` and then `k`: the
 * narrowest that holds them all exactly (Q4_0 < A4 < A8), else f32 */
static int part_kind(int type, int qonly) {
  return type == LM_GGML_Q8_0 ? LM_QW_Q8_0 : type == LM_GGML_Q4_0 ? LM_QW_Q4_0 : type == LM_GGML_F16 && qonly ? LM_QW_F16
       : lm_gguf_a4_ok(type) ? LM_QW_A4 : lm_gguf_a8_ok(type) ? LM_QW_A8 : QK_F32;
}
static int merge_kind(int cur, int k) {
  static const int rank[LM_QW_COUNT] = {[LM_QW_Q4_0] = 1, [LM_QW_A4] = 2, [LM_QW_A8] = 3};   /* 0: no mix */
  if (cur == QK_UNSET || cur == k) return k;
  if (cur < 0 || k < 0 || !rank[cur] || !rank[k]) return QK_F32;   /* f16 beside another type, Q8_0 beside another */
  return rank[cur] > rank[k] ? cur : k;
}

/* pass 0: each entry's kind and shape; pass 1: the blocks of the entries kept quantized, part by part
 * (copied, or converted to A8 blocks; rows are independent) */
static lm_status qlin_part(const lm_model *m, const lm_param_info *p, const char *gname, int64_t row0, int64_t rows,
                           int permute, void *user) {
  load_ctx *x = user;
  int64_t e = qlin_index(m, p, x->qonly);
  if (e < 0) return LM_OK;
  const lm_gguf_tensor *t = lm_gguf_tensor_at(x->g, lm_gguf_find_tensor(x->g, gname));   /* load_one checked it */
  lm_qmat *q = &m->qlin[e];
  if (x->pass == 0) {
    x->kind[e] = merge_kind(x->kind[e], part_kind((int)t->type, x->qonly));
    if (p->shape[1] % LM_QK) x->kind[e] = QK_F32;
    q->rows = p->shape[0]; q->cols = p->shape[1];
    return LM_OK;
  }
  if (!kept_quantized(x->kind[e])) return LM_OK;
  size_t rb = (size_t)(q->cols / LM_QK) * lm_qweight_block_bytes(q->type);
  const uint8_t *src = t->data;
  lm_status st;
  if (x->kind[e] == LM_QW_A8 || x->kind[e] == LM_QW_A4) {   /* this part's values as A8/A4 blocks, in the file's row order */
    if (grow(&x->btmp, &x->btmp_n, (size_t)rows * rb)) return LM_ERR_NOMEM;
    if ((st = (x->kind[e] == LM_QW_A8 ? lm_gguf_to_a8 : lm_gguf_to_a4)((int)t->type, t->data, t->nbytes, x->btmp, t->numel)))
      return lm_error_prefix(st, "%s: tensor '%s'", lm_gguf_name(x->g), gname);
    src = x->btmp;
  } else if (t->nbytes != (size_t)rows * rb)
    return lm_error(LM_ERR_FORMAT, "%s: tensor '%s': %zu bytes", lm_gguf_name(x->g), gname, t->nbytes);
  uint8_t *dst = q->data + (size_t)row0 * rb;
  if (permute) permute_rows(dst, src, perm_heads(&m->cfg, permute), head_dim(&m->cfg), rb, 0);
  else memcpy(dst, src, (size_t)rows * rb);
  lm_gguf_release(x->g, t);
  return LM_OK;
}

/* m->qlin's kinds, shapes and memory (pass 0); the entries kept quantized, counted in *used */
static lm_status qlin_plan(lm_model *m, const arch_info *a, load_ctx *x, int64_t *used) {
  int64_t n = LM_QL_COUNT(m);
  *used = 0;
  x->kind = malloc((size_t)n * sizeof(int));
  m->qlin = calloc((size_t)n, sizeof *m->qlin);
  if (!x->kind || !m->qlin) return lm_error(LM_ERR_NOMEM, "out of memory");
  for (int64_t e = 0; e < n; e++) x->kind[e] = QK_UNSET;
  x->pass = 0;
  lm_status st = each_tensor(m, a, qlin_part, x);
  for (int64_t e = 0; !st && e < n; e++) {
    lm_qmat *q = &m->qlin[e];
    if (!kept_quantized(x->kind[e])) continue;
    q->type = (lm_qweight)x->kind[e];
    q->data = lm_alloc((size_t)q->rows * (size_t)(q->cols / LM_QK) * lm_qweight_block_bytes(q->type));
    if (!q->data) st = lm_error(LM_ERR_NOMEM, "out of memory for the quantized weights");
    (*used)++;
  }
  return st;
}

/* the linears' entries repacked into the kernels' panels (quant.h lm_qmat_pack), one at a time
 * (the peak is one matrix more); an f16 token embedding (looked up by rows) stays as it is */
static lm_status qlin_pack(lm_model *m) {
  for (int64_t e = 0; e < LM_QL_COUNT(m); e++) {
    lm_qmat *q = &m->qlin[e];
    if (!q->data || q->packed || (q->type == LM_QW_F16 && e == LM_QL_EMB(m))) continue;
    uint8_t *p = lm_alloc(lm_qmat_packed_bytes(q->type, q->rows, q->cols));
    if (!p) return lm_error(LM_ERR_NOMEM, "out of memory for the quantized weights");
    lm_qmat_pack(q, p);
    lm_free(q->data);
    q->data = p;
    q->packed = 1;
  }
  return LM_OK;
}

lm_status lm_gguf_model_load_qonly(lm_model **out, const char *path, int head, int qonly) {
  *out = NULL;
  if (head >= 0 && head != LM_HEAD_LM)
    return lm_error(LM_ERR_UNSUPPORTED, "%s: GGUF files hold language models; other heads are not supported", path);
  lm_gguf *g;
  lm_status st = lm_gguf_open(&g, path);
  if (st) return st;
  const arch_info *a = NULL;
  lm_config cfg;
  lm_model *m = NULL;
  load_ctx x = {.g = g, .qonly = qonly};
  int64_t used = 0;
  if (!(st = arch_of(g, &a)) && !(st = read_config(g, a, &cfg)) &&
      !(st = qonly ? lm_model_alloc_qonly(&m, &cfg) : lm_model_alloc(&m, &cfg))) {
    x.used = calloc((size_t)lm_gguf_n_tensors(g) + 1, 1);
    x.pass = -1;   /* every tensor present with its shape, before anything reads them */
    st = x.used ? each_tensor(m, a, load_one, &x) : lm_error(LM_ERR_NOMEM, "out of memory");
    if (!st) st = qlin_plan(m, a, &x, &used);
    for (int i = 0; !st && qonly && i < m->n_info; i++)
      if (!absent(m, &x, &m->info[i])) st = lm_model_keep(m, &m->info[i]);
    x.pass = 0;
    if (!st) st = each_tensor(m, a, load_one, &x);
    x.pass = 1;
    if (!st && used) st = each_tensor(m, a, qlin_part, &x);
    if (!st && used) st = qlin_pack(m);
    if (!st && !used) { lm_model_drop_quant(m); m->qonly = 0; }   /* every weight is f32 */
  }
  for (int64_t i = 0; !st && i < lm_gguf_n_tensors(g); i++)
    if (!x.used[i])
      st = lm_error(LM_ERR_UNSUPPORTED, "%s: unexpected tensor '%s' for a %lld-layer %s model", path, lm_gguf_tensor_at(g, i)->name,
                    (long long)cfg.n_layer, a->name);
  free(x.used); free(x.tmp); free(x.btmp); free(x.kind);
  lm_gguf_close(g);
  if (st) { lm_model_free(m); return st; }
  *out = m;
  return LM_OK;
}

lm_status lm_gguf_model_load(lm_model **out, const char *path, int head) { return lm_gguf_model_load_qonly(out, path, head, 0); }

lm_status lm_model_load_infer(lm_model **out, const char *path) {
  return lm_gguf_is_file(path) ? lm_gguf_model_load_qonly(out, path, -1, 1) : lm_model_load(out, path);
}

/* ------------------------------------------------------------------ the tokenizer */

/* token_type values (llama.cpp's llama_token_type) */
enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER = 4, TT_UNUSED = 5, TT_BYTE = 6 };

/* A GGUF vocabulary stands for a Hugging Face tokenizer.json; the parts each kind implies are
 * below, as lmkit writes them, and the vocabulary, merges, added tokens and post-processor are
 * filled in from the keys. "gpt2" is a byte-level BPE whose tokenizer.ggml.pre names the
 * pre-tokenizer (llama.cpp's names); "llama" is a SentencePiece BPE: text pieces with "▁" for
 * spaces, <0xNN> byte-fallback pieces, and merges implied by the scores (a pair of pieces merges
 * with the score of the piece it makes, as transformers derives them). */
#define BYTE_LEVEL(pfx, trim, re) "{\"type\":\"ByteLevel\",\"add_prefix_space\":" pfx ",\"trim_offsets\":" trim ",\"use_regex\":" re "}"
#define SPLIT(re) "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"" re "\"},\"behavior\":\"Isolated\",\"invert\":false}"
#define RE_HEAD "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|"
#define RE_TAIL "| ?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+"
typedef struct {
  const char *model, *pre;   /* tokenizer.ggml.model and .pre (NULL: none) */
  const char *normalizer, *pre_tokenizer, *decoder;
  int ignore_merges, byte_fallback, add_bos;   /* add_bos: when tokenizer.ggml.add_bos_token is absent */
} tok_kind;
static const tok_kind TOK_KINDS[] = {
    {"gpt2", "gpt-2", "null", BYTE_LEVEL("false", "true", "true"), BYTE_LEVEL("true", "true", "true"), 0, 0, 0},
    {"gpt2", "llama-bpe", "null",
     "{\"type\":\"Sequence\",\"pretokenizers\":[" SPLIT(RE_HEAD "\\\\p{N}{1,3}" RE_TAIL) "," BYTE_LEVEL("false", "true", "false") "]}",
     BYTE_LEVEL("true", "true", "true"), 1, 0, 0},
    {"gpt2", "qwen2", "{\"type\":\"NFC\"}",
     "{\"type\":\"Sequence\",\"pretokenizers\":[" SPLIT(RE_HEAD "\\\\p{N}" RE_TAIL) "," BYTE_LEVEL("false", "false", "false") "]}",
     BYTE_LEVEL("false", "false", "false"), 0, 0, 0},
    {"llama", NULL,
     "{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Prepend\",\"prepend\":\"\\u2581\"},"
     "{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"\\u2581\"}]}",
     "null",
     "{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Replace\",\"pattern\":{\"String\":\"\\u2581\"},\"content\":\" \"},"
     "{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"},{\"type\":\"Strip\",\"content\":\" \",\"start\":1,\"stop\":0}]}",
     0, 1, 1},
};
#define N_TOK_KINDS (sizeof TOK_KINDS / sizeof *TOK_KINDS)

static const tok_kind *tok_kind_of(const char *model, size_t mn, const char *pre, size_t pn) {
  for (size_t i = 0; i < N_TOK_KINDS; i++) {
    const tok_kind *k = &TOK_KINDS[i];
    if (strlen(k->model) != mn || memcmp(k->model, model, mn)) continue;
    if (!k->pre || (pre && strlen(k->pre) == pn && !memcmp(k->pre, pre, pn))) return k;
  }
  return NULL;
}

/* A TemplateProcessing that puts bos (and eos) around each sequence, as Llama 2's tokenizer.json does. */
static cJSON *bos_eos_template(const char *bos, int64_t bos_id, const char *eos, int64_t eos_id) {
  cJSON *t = cJSON_CreateObject(), *single = cJSON_CreateArray(), *pair = cJSON_CreateArray(), *sp = cJSON_CreateObject();
  cJSON_AddStringToObject(t, "type", "TemplateProcessing");
  for (int seq = 0; seq < 2; seq++) {
    cJSON *arr = seq ? pair : single;
    for (int part = 0; part <= seq; part++) {
      const char *ids[3] = {bos, part ? "B" : "A", eos};
      for (int k = 0; k < 3; k++) {
        if (!ids[k]) continue;
        cJSON *e = cJSON_CreateObject(), *in = cJSON_AddObjectToObject(e, k == 1 ? "Sequence" : "SpecialToken");
        cJSON_AddStringToObject(in, "id", ids[k]);
        cJSON_AddNumberToObject(in, "type_id", part);
        cJSON_AddItemToArray(arr, e);
      }
    }
  }
  cJSON_AddItemToObject(t, "single", single);
  cJSON_AddItemToObject(t, "pair", pair);
  for (int k = 0; k < 2; k++) {
    const char *s = k ? eos : bos;
    if (!s || cJSON_GetObjectItemCaseSensitive(sp, s)) continue;
    cJSON *o = cJSON_AddObjectToObject(sp, s), *ia = cJSON_AddArrayToObject(o, "ids"), *ta = cJSON_AddArrayToObject(o, "tokens");
    cJSON_AddStringToObject(o, "id", s);
    cJSON_AddItemToArray(ia, cJSON_CreateNumber((double)(k ? eos_id : bos_id)));
    cJSON_AddItemToArray(ta, cJSON_CreateString(s));
  }
  cJSON_AddItemToObject(t, "special_tokens", sp);
  return t;
}

/* ---- merges implied by SentencePiece scores */

/* piece text -> id, open addressing (the vocabulary is looked up once per split point) */
typedef struct { int64_t *slot; uint64_t mask; char **text; } piece_map;
static uint64_t piece_hash(const char *s, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
  return h;
}
static int64_t piece_find(const piece_map *m, const char *s, size_t n) {
  for (uint64_t i = piece_hash(s, n) & m->mask;; i = (i + 1) & m->mask) {
    int64_t id = m->slot[i];
    if (id < 0 || (strlen(m->text[id]) == n && !memcmp(m->text[id], s, n))) return id;
  }
}

/* the map of text[0..n); *dup: the first id whose text an earlier id has, or -1 */
static lm_status piece_map_build(piece_map *pm, char **text, int64_t n, int64_t *dup) {
  uint64_t cap = 2;
  while (cap < (uint64_t)n * 2) cap <<= 1;
  *pm = (piece_map){malloc(cap * sizeof(int64_t)), cap - 1, text};
  *dup = -1;
  if (!pm->slot) return lm_error(LM_ERR_NOMEM, "out of memory");
  for (uint64_t i = 0; i < cap; i++) pm->slot[i] = -1;
  for (int64_t id = 0; id < n; id++) {
    size_t len = strlen(text[id]);
    uint64_t i = piece_hash(text[id], len) & pm->mask;
    while (pm->slot[i] >= 0 && !(strlen(text[pm->slot[i]]) == len && !memcmp(text[pm->slot[i]], text[id], len))) i = (i + 1) & pm->mask;
    if (pm->slot[i] < 0) pm->slot[i] = id;
    else if (*dup < 0) *dup = id;
  }
  return LM_OK;
}

typedef struct { int64_t l, r, t; float score; } spm_merge;
static int merge_order(const void *a, const void *b) {   /* score down, then the piece made, then the pair's ids */
  const spm_merge *x = a, *y = b;
  if (x->score != y->score) return x->score > y->score ? -1 : 1;
  if (x->t != y->t) return x->t < y->t ? -1 : 1;
  if (x->l != y->l) return x->l < y->l ? -1 : 1;
  return (x->r > y->r) - (x->r < y->r);
}

/* every split of every piece into two pieces of the vocabulary, ordered as merge_order */
static lm_status spm_merges(const lm_gguf *g, const piece_map *pm, int64_t n, const lm_gguf_kv *scores, cJSON *ml) {
  char **text = pm->text;
  if (!scores) return lm_error(LM_ERR_FORMAT, "%s: a \"llama\" tokenizer needs tokenizer.ggml.scores (its merges follow them)", lm_gguf_name(g));
  if (scores->n != (uint64_t)n)
    return lm_error(LM_ERR_FORMAT, "%s: tokenizer.ggml.scores has %llu entries for %lld tokens", lm_gguf_name(g),
                    (unsigned long long)scores->n, (long long)n);
  spm_merge *mv = NULL;
  size_t nm = 0, mcap = 0;
  lm_status st = LM_OK;
  for (int64_t t = 0; !st && t < n; t++) {
    const char *s = text[t];
    size_t len = strlen(s);
    for (size_t k = 1; k < len && !st; k++) {
      if (((uint8_t)s[k] & 0xC0) == 0x80) continue;   /* split between characters only */
      int64_t l = piece_find(pm, s, k), r = l >= 0 ? piece_find(pm, s + k, len - k) : -1;
      if (l < 0 || r < 0) continue;
      if (nm == mcap) {
        spm_merge *b = lm_xrealloc(mv, (mcap = mcap ? 2 * mcap : 4096) * sizeof *mv);
        if (!b) { st = LM_ERR_NOMEM; break; }
        mv = b;
      }
      mv[nm++] = (spm_merge){l, r, t, (float)lm_gguf_arr_num(scores, (uint64_t)t)};
    }
  }
  if (!st) qsort(mv, nm, sizeof *mv, merge_order);
  for (size_t i = 0; !st && i < nm; i++) {
    cJSON *pair = cJSON_CreateArray();
    cJSON_AddItemToArray(pair, cJSON_CreateString(text[mv[i].l]));
    cJSON_AddItemToArray(pair, cJSON_CreateString(text[mv[i].r]));
    cJSON_AddItemToArray(ml, pair);
  }
  free(mv);
  return st;
}

static lm_status gguf_tok_json(const lm_gguf *g, cJSON **out) {
  const char *p = lm_gguf_name(g), *model = NULL, *pre = NULL;
  size_t mn = 0, pn = 0;
  const lm_gguf_kv *tokens, *types, *merges, *scores;
  int64_t add_bos = -1, add_eos = 0, bos_id = -1, eos_id = -1, unk_id = -1;
  lm_status st;
  if ((st = lm_gguf_get_str(g, "tokenizer.ggml.model", &model, &mn, 1)) || (st = lm_gguf_get_str(g, "tokenizer.ggml.pre", &pre, &pn, 0)))
    return st;
  const tok_kind *kind = tok_kind_of(model, mn, pre, pn);
  if (!kind && mn == 4 && !memcmp(model, "gpt2", 4))
    return lm_error(LM_ERR_UNSUPPORTED, "%s: tokenizer.ggml.pre \"%.*s\" is not supported (gpt-2, llama-bpe, qwen2)", p,
                    (int)(pn > 40 ? 40 : pn), pre ? pre : "");
  if (!kind)
    return lm_error(LM_ERR_UNSUPPORTED, "%s: tokenizer.ggml.model \"%.*s\" is not supported (gpt2: byte-level BPE, llama: "
                    "SentencePiece BPE)", p, (int)(mn > 40 ? 40 : mn), model);
  if ((st = lm_gguf_get_int(g, "tokenizer.ggml.add_bos_token", &add_bos, 0)) ||
      (st = lm_gguf_get_int(g, "tokenizer.ggml.add_eos_token", &add_eos, 0)) ||
      (st = lm_gguf_get_int(g, "tokenizer.ggml.bos_token_id", &bos_id, 0)) ||
      (st = lm_gguf_get_int(g, "tokenizer.ggml.eos_token_id", &eos_id, 0)) ||
      (st = lm_gguf_get_int(g, "tokenizer.ggml.unknown_token_id", &unk_id, 0)))
    return st;
  if (add_bos < 0) add_bos = kind->add_bos;
  if ((st = lm_gguf_get_arr(g, "tokenizer.ggml.tokens", LM_GGUF_STR, &tokens, 1)) ||
      (st = lm_gguf_get_arr(g, "tokenizer.ggml.token_type", -1, &types, 0)) ||
      (st = lm_gguf_get_arr(g, "tokenizer.ggml.scores", -1, &scores, 0)) ||
      (st = lm_gguf_get_arr(g, "tokenizer.ggml.merges", LM_GGUF_STR, &merges, !kind->byte_fallback)))
    return st;
  int64_t n = (int64_t)tokens->n;
  if (kind->byte_fallback && lm_gguf_find_kv(g, "tokenizer.ggml.merges"))
    return lm_error(LM_ERR_UNSUPPORTED, "%s: tokenizer.ggml.merges in a \"llama\" (SentencePiece) tokenizer is not supported "
                    "(its merges follow the scores)", p);
  if (types && types->n != tokens->n)
    return lm_error(LM_ERR_FORMAT, "%s: tokenizer.ggml.token_type has %llu entries for %llu tokens", p,
                    (unsigned long long)types->n, (unsigned long long)tokens->n);
  if ((add_bos && (bos_id < 0 || bos_id >= n)) || (add_eos && (eos_id < 0 || eos_id >= n)))
    return lm_error(LM_ERR_FORMAT, "%s: tokenizer.ggml.add_%s_token is set without a valid %s_token_id", p, add_bos ? "bos" : "eos",
                    add_bos ? "bos" : "eos");
  if (unk_id >= n) return lm_error(LM_ERR_FORMAT, "%s: tokenizer.ggml.unknown_token_id %lld is not a token", p, (long long)unk_id);
  char doc[2048];
  snprintf(doc, sizeof doc,
           "{\"version\":\"1.0\",\"truncation\":null,\"padding\":null,\"added_tokens\":[],\"normalizer\":%s,\"pre_tokenizer\":%s,"
           "\"post_processor\":null,\"decoder\":%s,\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":null,"
           "\"continuing_subword_prefix\":\"\",\"end_of_word_suffix\":\"\",\"fuse_unk\":%s,\"byte_fallback\":%s,"
           "\"ignore_merges\":%s,\"vocab\":{},\"merges\":[]}}",
           kind->normalizer, kind->pre_tokenizer, kind->decoder, kind->byte_fallback ? "true" : "false",
           kind->byte_fallback ? "true" : "false", kind->ignore_merges ? "true" : "false");
  cJSON *root = cJSON_Parse(doc);
  char **text = calloc((size_t)n + 1, sizeof *text);
  if (!root || !text) { cJSON_Delete(root); free(text); return lm_error(LM_ERR_NOMEM, "out of memory"); }
  cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens"), *mo = cJSON_GetObjectItemCaseSensitive(root, "model");
  cJSON *vocab = cJSON_GetObjectItemCaseSensitive(mo, "vocab"), *ml = cJSON_GetObjectItemCaseSensitive(mo, "merges");
  for (int64_t i = 0; i < n && !st; i++) {
    const char *tb; size_t tn;
    lm_gguf_arr_str(tokens, (uint64_t)i, &tb, &tn);
    double tt = types ? lm_gguf_arr_num(types, (uint64_t)i) : TT_NORMAL;
    if (tt != TT_NORMAL && tt != TT_CONTROL && tt != TT_USER && (!kind->byte_fallback || (tt != TT_UNKNOWN && tt != TT_UNUSED && tt != TT_BYTE))) {
      st = lm_error(LM_ERR_UNSUPPORTED, "%s: tokenizer.ggml.token_type[%lld] = %g is not supported for a %s tokenizer", p, (long long)i,
                    tt, kind->model);
      break;
    }
    if (!(text[i] = lm_xmalloc(tn + 1))) { st = LM_ERR_NOMEM; break; }
    memcpy(text[i], tb, tn); text[i][tn] = 0;
    if (strlen(text[i]) != tn) st = lm_error(LM_ERR_FORMAT, "%s: tokenizer.ggml.tokens[%lld] holds a NUL byte", p, (long long)i);
    if (!st) cJSON_AddNumberToObject(vocab, text[i], (double)i);
    if (!st && tt == TT_UNKNOWN && unk_id < 0) unk_id = i;
    if (!st && (tt == TT_CONTROL || tt == TT_USER || tt == TT_UNKNOWN)) {   /* matched as text; control and unknown are special */
      cJSON *a = cJSON_CreateObject();
      cJSON_AddNumberToObject(a, "id", (double)i);
      cJSON_AddStringToObject(a, "content", text[i]);
      cJSON_AddBoolToObject(a, "single_word", 0);
      cJSON_AddBoolToObject(a, "lstrip", 0);
      cJSON_AddBoolToObject(a, "rstrip", 0);
      cJSON_AddBoolToObject(a, "normalized", 0);
      cJSON_AddBoolToObject(a, "special", tt != TT_USER);
      cJSON_AddItemToArray(added, a);
    }
  }
  piece_map pm = {0};
  int64_t dup = -1;
  if (!st) st = piece_map_build(&pm, text, n, &dup);
  if (!st && dup >= 0) st = lm_error(LM_ERR_FORMAT, "%s: tokenizer.ggml.tokens[%lld] \"%.60s\" appears twice", p, (long long)dup, text[dup]);
  if (!st && kind->byte_fallback) {
    if (unk_id >= 0) cJSON_ReplaceItemInObjectCaseSensitive(mo, "unk_token", cJSON_CreateString(text[unk_id]));
    st = spm_merges(g, &pm, n, scores, ml);
  }
  free(pm.slot);
  for (uint64_t i = 0; !kind->byte_fallback && i < merges->n && !st; i++) {
    const char *mb; size_t mlen;
    lm_gguf_arr_str(merges, i, &mb, &mlen);
    char *s = lm_xmalloc(mlen + 1);
    if (!s) { st = LM_ERR_NOMEM; break; }
    memcpy(s, mb, mlen); s[mlen] = 0;
    if (strlen(s) != mlen) st = lm_error(LM_ERR_FORMAT, "%s: tokenizer.ggml.merges[%llu] holds a NUL byte", p, (unsigned long long)i);
    else cJSON_AddItemToArray(ml, cJSON_CreateString(s));
    free(s);
  }
  if (!st && (add_bos || add_eos))
    cJSON_ReplaceItemInObjectCaseSensitive(root, "post_processor", bos_eos_template(add_bos ? text[bos_id] : NULL, bos_id,
                                                                                   add_eos ? text[eos_id] : NULL, eos_id));
  for (int64_t i = 0; i < n; i++) free(text[i]);
  free(text);
  if (st) { cJSON_Delete(root); return st; }
  *out = root;
  return LM_OK;
}

lm_status lm_gguf_tokenizer_from(lm_tokenizer **out, const lm_gguf *g) {
  *out = NULL;
  cJSON *root = NULL;
  lm_status st = gguf_tok_json(g, &root);
  if (st) return st;
  char *json = cJSON_PrintUnformatted(root);
  cJSON_Delete(root);
  if (!json) return lm_error(LM_ERR_NOMEM, "out of memory");
  st = lm_tokenizer_from_json(out, json, strlen(json), lm_gguf_name(g));
  free(json);
  return st;
}

lm_status lm_gguf_tokenizer_load(lm_tokenizer **out, const char *path) {
  *out = NULL;
  lm_gguf *g;
  lm_status st = lm_gguf_open(&g, path);
  if (st) return st;
  st = lm_gguf_tokenizer_from(out, g);
  lm_gguf_close(g);
  return st;
}

lm_status lm_model_tokenizer_load(lm_tokenizer **out, const char *path) {
  return lm_gguf_is_file(path) ? lm_gguf_tokenizer_load(out, path) : lm_tokenizer_load(out, path);
}

/* a malloc'ed NUL-terminated copy of n bytes, or NULL (with an error) */
static char *dup_n(const char *s, size_t n, lm_status *st) {
  char *d = *st ? NULL : lm_xmalloc(n + 1);
  if (!d) { if (!*st) *st = LM_ERR_NOMEM; return NULL; }
  memcpy(d, s, n); d[n] = 0;
  return d;
}

/* the text of the token named by an id key (bos/eos), or NULL when the key is absent */
static char *token_text(const lm_gguf *g, const char *id_key, lm_status *st) {
  int64_t id = -1;
  const lm_gguf_kv *tokens = NULL;
  if (*st || (*st = lm_gguf_get_int(g, id_key, &id, 0)) || id < 0) return NULL;
  if ((*st = lm_gguf_get_arr(g, "tokenizer.ggml.tokens", LM_GGUF_STR, &tokens, 1))) return NULL;
  if ((uint64_t)id >= tokens->n) {
    *st = lm_error(LM_ERR_FORMAT, "%s: %s = %lld is not a token id (%llu tokens)", lm_gguf_name(g), id_key, (long long)id,
                   (unsigned long long)tokens->n);
    return NULL;
  }
  const char *t; size_t n;
  lm_gguf_arr_str(tokens, (uint64_t)id, &t, &n);
  return dup_n(t, n, st);
}

lm_status lm_gguf_chat_template(const char *path, char **tmpl, char **bos, char **eos) {
  *tmpl = NULL;
  if (bos) *bos = NULL;
  if (eos) *eos = NULL;
  lm_gguf *g;
  lm_status st = lm_gguf_open(&g, path);
  if (st) return st;
  const char *s = NULL; size_t n = 0;
  st = lm_gguf_get_str(g, "tokenizer.chat_template", &s, &n, 0);
  if (!st && s) *tmpl = dup_n(s, n, &st);
  if (!st && *tmpl && strlen(*tmpl) != n) st = lm_error(LM_ERR_FORMAT, "%s: tokenizer.chat_template holds a NUL byte", path);
  if (bos) *bos = token_text(g, "tokenizer.ggml.bos_token_id", &st);
  if (eos) *eos = token_text(g, "tokenizer.ggml.eos_token_id", &st);
  lm_gguf_close(g);
  if (st) {
    free(*tmpl); *tmpl = NULL;
    if (bos) { free(*bos); *bos = NULL; }
    if (eos) { free(*eos); *eos = NULL; }
  }
  return st;
}

/* ------------------------------------------------------------------ export */

static int is_true(const cJSON *o, const char *k, int dflt) {
  const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, k);
  return x ? cJSON_IsTrue(x) : dflt;
}
static int is_type(const cJSON *o, const char *k, const char *type) {   /* k NULL: o itself */
  const cJSON *x = cJSON_GetObjectItemCaseSensitive(k ? cJSON_GetObjectItemCaseSensitive(o, k) : o, "type");
  return cJSON_IsString(x) && !strcmp(x->valuestring, type);
}
static int is_null(const cJSON *o, const char *k) {
  const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, k);
  return !x || cJSON_IsNull(x);
}

/* a JSON part equals `want` up to what changes no id or text: trim_offsets (offsets only) */
static void drop_trim(cJSON *x) {
  if (!x) return;
  cJSON_DeleteItemFromObjectCaseSensitive(x, "trim_offsets");
  for (cJSON *c = x->child; c; c = c->next) drop_trim(c);
}
static int same_part(const cJSON *part, const char *want) {
  cJSON *a = part ? cJSON_Duplicate(part, 1) : cJSON_CreateNull(), *b = cJSON_Parse(want);
  drop_trim(a); drop_trim(b);
  int same = a && b && cJSON_Compare(a, b, 1);
  cJSON_Delete(a); cJSON_Delete(b);
  return same;
}

/* The GGUF vocabulary kind of tok, from the tokenizer.json lmkit writes for it, or NULL. */
static const tok_kind *kind_of_tokenizer(const lm_tokenizer *tok, const cJSON *root) {
  const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
  if (tok->ops != &lm_bpe_ops) return NULL;
  for (size_t i = 0; i < N_TOK_KINDS; i++) {
    const tok_kind *k = &TOK_KINDS[i];
    if (k->byte_fallback == tok->byte_level || is_true(model, "byte_fallback", 0) != k->byte_fallback ||
        is_true(model, "ignore_merges", 0) != k->ignore_merges || is_null(model, "unk_token") == k->byte_fallback)
      continue;
    if (!same_part(cJSON_GetObjectItemCaseSensitive(root, "normalizer"), k->normalizer) ||
        !same_part(cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), k->pre_tokenizer))
      continue;
    /* a ByteLevel decoder's flags change no text; SentencePiece's decoder must be Llama 2's */
    if (k->byte_fallback ? !same_part(cJSON_GetObjectItemCaseSensitive(root, "decoder"), k->decoder) : !is_type(root, "decoder", "ByteLevel"))
      continue;
    return k;
  }
  return NULL;
}

/* The tokens a post-processor puts around one sequence, as GGUF's add_bos_token / add_eos_token
 * say them: none (null, ByteLevel), or a TemplateProcessing [bos] $A [eos] (alone, or in a Sequence
 * with ByteLevel). *bos / *eos: the ids, or -1. */
static lm_status template_ends(const cJSON *post, const cJSON *vocab, int64_t *bos, int64_t *eos) {
  *bos = *eos = -1;
  if (!post || cJSON_IsNull(post) || is_type(post, NULL, "ByteLevel")) return LM_OK;
  const cJSON *tp = NULL, *procs = cJSON_GetObjectItemCaseSensitive(post, "processors");
  if (is_type(post, NULL, "TemplateProcessing")) tp = post;
  else if (is_type(post, NULL, "Sequence"))
    for (const cJSON *x = procs ? procs->child : NULL; x; x = x->next) {
      if (is_type(x, NULL, "TemplateProcessing") && !tp) tp = x;
      else if (!is_type(x, NULL, "ByteLevel")) { tp = NULL; procs = NULL; break; }
    }
  const cJSON *single = tp ? cJSON_GetObjectItemCaseSensitive(tp, "single") : NULL;
  int n = cJSON_GetArraySize(single), ok = single != NULL, seen_a = 0;
  for (int i = 0; ok && i < n; i++) {
    const cJSON *e = cJSON_GetArrayItem(single, i), *sp = cJSON_GetObjectItemCaseSensitive(e, "SpecialToken");
    const cJSON *sq = cJSON_GetObjectItemCaseSensitive(e, "Sequence"), *id = cJSON_GetObjectItemCaseSensitive(sp ? sp : sq, "id");
    if (sq) { ok = !seen_a && cJSON_IsString(id) && !strcmp(id->valuestring, "A"); seen_a = 1; continue; }
    const cJSON *v = sp && cJSON_IsString(id) ? cJSON_GetObjectItemCaseSensitive(vocab, id->valuestring) : NULL;
    int64_t *slot = seen_a ? eos : bos;
    ok = v && cJSON_IsNumber(v) && *slot < 0;
    if (ok) *slot = (int64_t)v->valuedouble;
  }
  if (!ok || !seen_a)
    return lm_error(LM_ERR_UNSUPPORTED, "tokenizer: its post-processor is not one GGUF can say (nothing, or a TemplateProcessing "
                    "[bos] $A [eos]: add_bos_token / add_eos_token)");
  return LM_OK;
}

/* SentencePiece scores that imply the BPE's merges (spm_merges above): the piece made by merge k
 * scores -k (the first merge making it); other pieces score below every merge, in id order. */
static lm_status merge_scores(const cJSON *merges, char **text, int64_t n, float *scores) {
  piece_map pm;
  int64_t dup;
  lm_status st = piece_map_build(&pm, text, n, &dup);
  if (st) return st;
  int64_t nm = cJSON_GetArraySize(merges), k = 0;
  for (int64_t id = 0; id < n; id++) scores[id] = NAN;
  char buf[1024];
  for (const cJSON *x = merges ? merges->child : NULL; x && !st; x = x->next, k++) {
    const char *l = NULL, *r = NULL, *sp;
    if (cJSON_IsString(x) && (sp = strchr(x->valuestring, ' '))) { l = x->valuestring; r = sp + 1; }
    else if (cJSON_IsArray(x) && cJSON_GetArraySize(x) == 2) { l = cJSON_GetArrayItem(x, 0)->valuestring; r = cJSON_GetArrayItem(x, 1)->valuestring; }
    size_t ln = l && r ? (cJSON_IsString(x) ? (size_t)(r - 1 - l) : strlen(l)) : 0;
    if (!l || !r || ln + strlen(r) >= sizeof buf) { st = lm_error(LM_ERR_FORMAT, "internal: merge %lld", (long long)k); break; }
    memcpy(buf, l, ln); strcpy(buf + ln, r);
    int64_t t = piece_find(&pm, buf, strlen(buf));
    if (t < 0) { st = lm_error(LM_ERR_FORMAT, "tokenizer: merge %lld makes \"%.60s\", which is not in the vocabulary", (long long)k, buf); break; }
    if (isnan(scores[t])) scores[t] = (float)-k;
  }
  for (int64_t id = 0; id < n; id++)
    if (isnan(scores[id])) scores[id] = (float)(-nm - id);
  free(pm.slot);
  return st;
}

/* "<0xNN>": a byte-fallback piece */
static int is_byte_piece(const char *s) {
  return strlen(s) == 6 && !strncmp(s, "<0x", 3) && isxdigit((unsigned char)s[3]) && isxdigit((unsigned char)s[4]) && s[5] == '>';
}

/* The tokenizer.ggml.* keys of tok (its kind, tokens, types, merges or scores, bos/eos and what is
 * added around a sequence). cfg_bos / cfg_eos: the model's ids (-1: none), which must agree with
 * the tokenizer's template. */
static lm_status write_tokenizer(lm_gguf_writer *w, const lm_tokenizer *tok, int64_t cfg_bos, int64_t cfg_eos) {
  char *json; size_t len;
  lm_status st = lm_tokenizer_to_json(tok, &json, &len);
  if (st) return st;
  cJSON *root = cJSON_ParseWithLength(json, len);
  free(json);
  if (!root) return lm_error(LM_ERR_NOMEM, "out of memory");
  const tok_kind *kind = kind_of_tokenizer(tok, root);
  const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model"), *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
  const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab"), *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
  const cJSON *unk = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
  int64_t n = tok->n_vocab, nm = cJSON_GetArraySize(merges), bos = -1, eos = -1;
  if (!kind)
    st = lm_error(LM_ERR_UNSUPPORTED, "tokenizer: its normalizer, pre-tokenizer, decoder or BPE options are none of the GGUF "
                  "tokenizers lmkit writes (byte-level BPE as gpt-2, llama-bpe or qwen2; SentencePiece BPE as Llama 2's)");
  if (!st) st = template_ends(cJSON_GetObjectItemCaseSensitive(root, "post_processor"), vocab, &bos, &eos);
  if (!st && ((bos >= 0 && cfg_bos >= 0 && bos != cfg_bos) || (eos >= 0 && cfg_eos >= 0 && eos != cfg_eos)))
    st = lm_error(LM_ERR_UNSUPPORTED, "tokenizer: its template adds token %lld, but the model's %s_token_id is %lld",
                  (long long)(bos >= 0 && bos != cfg_bos ? bos : eos), bos >= 0 && bos != cfg_bos ? "bos" : "eos",
                  (long long)(bos >= 0 && bos != cfg_bos ? cfg_bos : cfg_eos));
  char **toks = calloc((size_t)n + 1, sizeof *toks), **mer = calloc((size_t)nm + 1, sizeof *mer);
  size_t *tl = calloc((size_t)n + 1, sizeof *tl), *mlen = calloc((size_t)nm + 1, sizeof *mlen);
  int32_t *types = calloc((size_t)n + 1, sizeof *types);
  float *scores = calloc((size_t)n + 1, sizeof *scores);
  if (!toks || !mer || !tl || !mlen || !types || !scores) st = lm_error(LM_ERR_NOMEM, "out of memory");
  for (const cJSON *v = vocab ? vocab->child : NULL; v && !st; v = v->next) {
    int64_t id;
    if (!lm_tok_json_int(v, 0, n - 1, &id)) st = lm_error(LM_ERR_FORMAT, "internal: tokenizer vocab id of \"%s\"", v->string);
    else { toks[id] = v->string; types[id] = TT_NORMAL; }
  }
  for (const cJSON *a = added ? added->child : NULL; a && !st; a = a->next) {   /* added tokens: control or user-defined */
    int64_t id;
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(a, "content");
    if (!lm_tok_json_int(cJSON_GetObjectItemCaseSensitive(a, "id"), 0, n - 1, &id) || !cJSON_IsString(c))
      st = lm_error(LM_ERR_FORMAT, "internal: an added token");
    else { toks[id] = c->valuestring; types[id] = is_true(a, "special", 0) ? TT_CONTROL : TT_USER; }
  }
  for (int64_t i = 0; i < n && !st; i++) {
    if (!toks[i]) { st = lm_error(LM_ERR_UNSUPPORTED, "tokenizer: id %lld has no token (a vocabulary with holes)", (long long)i); break; }
    tl[i] = strlen(toks[i]);
    if (kind->byte_fallback && cJSON_IsString(unk) && !strcmp(toks[i], unk->valuestring)) types[i] = TT_UNKNOWN;
    else if (kind->byte_fallback && types[i] == TT_NORMAL && is_byte_piece(toks[i])) types[i] = TT_BYTE;
  }
  int64_t k = 0;
  for (const cJSON *x = merges ? merges->child : NULL; x && !st && !kind->byte_fallback; x = x->next, k++) {
    if (!cJSON_IsString(x)) { st = lm_error(LM_ERR_FORMAT, "internal: a merge is not a string"); break; }
    mer[k] = x->valuestring; mlen[k] = strlen(x->valuestring);
  }
  if (!st && kind->byte_fallback) st = merge_scores(merges, toks, n, scores);
  if (!st) st = lm_gguf_w_str(w, "tokenizer.ggml.model", kind->model, strlen(kind->model));
  if (!st && kind->pre) st = lm_gguf_w_str(w, "tokenizer.ggml.pre", kind->pre, strlen(kind->pre));
  if (!st) st = lm_gguf_w_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)toks, tl, (uint64_t)n);
  if (!st && kind->byte_fallback) st = lm_gguf_w_arr_f32(w, "tokenizer.ggml.scores", scores, (uint64_t)n);
  if (!st) st = lm_gguf_w_arr_i32(w, "tokenizer.ggml.token_type", types, (uint64_t)n);
  if (!st && !kind->byte_fallback) st = lm_gguf_w_arr_str(w, "tokenizer.ggml.merges", (const char *const *)mer, mlen, (uint64_t)nm);
  if (bos < 0) bos = cfg_bos;
  if (eos < 0) eos = cfg_eos;
  if (!st && bos >= 0) st = lm_gguf_w_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)bos);
  if (!st && eos >= 0) st = lm_gguf_w_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)eos);
  for (int64_t i = 0; !st && kind->byte_fallback && i < n; i++)
    if (types[i] == TT_UNKNOWN) { st = lm_gguf_w_u32(w, "tokenizer.ggml.unknown_token_id", (uint32_t)i); break; }
  int64_t tb, te;
  if (!st) template_ends(cJSON_GetObjectItemCaseSensitive(root, "post_processor"), vocab, &tb, &te);
  if (!st) st = lm_gguf_w_bool(w, "tokenizer.ggml.add_bos_token", tb >= 0);
  if (!st) st = lm_gguf_w_bool(w, "tokenizer.ggml.add_eos_token", te >= 0);
  free(toks); free(mer); free(tl); free(mlen); free(types); free(scores);
  cJSON_Delete(root);
  return st;
}

lm_status lm_gguf_write_vocab(const lm_tokenizer *tok, const char *path) {
  lm_gguf_writer *w;
  lm_status st = lm_gguf_writer_new(&w);
  if (st) return st;
  st = lm_gguf_w_str(w, "general.name", "lmkit vocabulary", 16);
  if (!st) st = write_tokenizer(w, tok, -1, -1);
  if (!st) st = lm_gguf_write(w, path, 0);
  lm_gguf_writer_free(w);
  return st;
}

typedef struct { lm_gguf_writer *w; int type; } export_ctx;

static lm_status export_one(const lm_model *m, const lm_param_info *p, const char *gname, int64_t row0, int64_t rows,
                            int permute, void *user) {
  export_ctx *x = user;
  int64_t cols = p->ndim == 2 ? p->shape[1] : p->shape[0];
  int64_t ne[2] = {cols, rows};
  const float *src = m->params + p->offset + (p->ndim == 2 ? row0 * cols : 0);
  /* 1-D tensors and rows that are not whole blocks stay F32, as llama.cpp's quantizer leaves them */
  int type = p->ndim == 2 && cols % lm_ggml_block_elems(x->type) == 0 ? x->type : LM_GGML_F32;
  if (!permute) return lm_gguf_w_tensor(x->w, gname, p->ndim == 2 ? 2 : 1, ne, type, src, 0);
  float *buf = lm_xmalloc((size_t)(rows * cols) * sizeof *buf);
  if (!buf) return LM_ERR_NOMEM;
  permute_rows(buf, src, perm_heads(&m->cfg, permute), head_dim(&m->cfg), (size_t)cols * sizeof(float), 1);
  return lm_gguf_w_tensor(x->w, gname, 2, ne, type, buf, 1);
}

/* general.file_type: llama_ftype of the chosen type */
static uint32_t file_type(int type) {
  switch (type) {
    case LM_GGML_F16: return 1;
    case LM_GGML_Q4_0: return 2;
    case LM_GGML_Q8_0: return 7;
    case LM_GGML_BF16: return 32;
    default: return 0;
  }
}

lm_status lm_gguf_export(const lm_model *m, const lm_tokenizer *tok, const char *chat_template, int type, const char *path,
                         int progress) {
  const lm_config *c = &m->cfg;
  const arch_info *a = arch_by_id(c->arch);
  if (!a) return lm_error(LM_ERR_UNSUPPORTED, "GGUF export: model_type %s is not supported (gpt2, llama)", lm_arch_name(c->arch));
  if (c->head != LM_HEAD_LM) return lm_error(LM_ERR_UNSUPPORTED, "GGUF export: only language models (the LM head) are exported");
  if (c->rope_scaling) return lm_error(LM_ERR_UNSUPPORTED, "GGUF export: Llama 3's rope_scaling is not exported yet");
  if (c->sliding_window) return lm_error(LM_ERR_UNSUPPORTED, "GGUF export: a sliding attention window is not exported");
  if (c->share_layers || m->lora) return lm_error(LM_ERR_UNSUPPORTED, "GGUF export: shared layers or an attached LoRA adapter (merge it first)");
  if (lm_model_check_f32(m, "GGUF export")) return LM_ERR_UNSUPPORTED;
  if (type != LM_GGML_F32 && type != LM_GGML_F16 && type != LM_GGML_Q8_0 && type != LM_GGML_Q4_0)
    return lm_error(LM_ERR_UNSUPPORTED, "GGUF export: type %s is not written (f32, f16, q8_0, q4_0)", lm_ggml_type_name(type));
  if (tok->n_vocab != c->vocab_size)
    return lm_error(LM_ERR_FORMAT, "GGUF export: the tokenizer has %lld tokens, the model %lld", (long long)tok->n_vocab,
                    (long long)c->vocab_size);
  lm_gguf_writer *w;
  lm_status st = lm_gguf_writer_new(&w);
  if (st) return st;
  char k[128];
#define AKEY(s) (snprintf(k, sizeof k, "%s.%s", a->name, s), k)
  st = lm_gguf_w_str(w, "general.architecture", a->name, strlen(a->name));
  if (!st) st = lm_gguf_w_str(w, "general.name", "lmkit", 5);
  if (!st) st = lm_gguf_w_u32(w, "general.file_type", file_type(type));
  if (!st && type != LM_GGML_F32 && type != LM_GGML_F16) st = lm_gguf_w_u32(w, "general.quantization_version", 2);
  if (!st) st = lm_gguf_w_u32(w, AKEY("context_length"), (uint32_t)c->n_positions);
  if (!st) st = lm_gguf_w_u32(w, AKEY("embedding_length"), (uint32_t)c->n_embd);
  if (!st) st = lm_gguf_w_u32(w, AKEY("block_count"), (uint32_t)c->n_layer);
  if (!st) st = lm_gguf_w_u32(w, AKEY("feed_forward_length"), (uint32_t)lm_ffn_width(c));
  if (!st) st = lm_gguf_w_u32(w, AKEY("attention.head_count"), (uint32_t)c->n_head);
  if (!st && c->rope) st = lm_gguf_w_u32(w, AKEY("attention.head_count_kv"), (uint32_t)lm_kv_heads(c));
  if (!st) st = lm_gguf_w_f32(w, AKEY(a->eps_key), c->norm_eps);
  if (!st && c->rope) st = lm_gguf_w_f32(w, AKEY("rope.freq_base"), c->rope_theta);
  if (!st && c->rope) st = lm_gguf_w_u32(w, AKEY("rope.dimension_count"), (uint32_t)head_dim(c));
  if (!st && c->rope) st = lm_gguf_w_u32(w, AKEY("vocab_size"), (uint32_t)c->vocab_size);
#undef AKEY
  if (!st) st = write_tokenizer(w, tok, c->bos_token_id, c->eos_token_id);
  if (!st && chat_template) st = lm_gguf_w_str(w, "tokenizer.chat_template", chat_template, strlen(chat_template));
  export_ctx x = {w, type};
  if (!st) st = each_tensor(m, a, export_one, &x);
  if (!st) st = lm_gguf_write(w, path, progress);
  lm_gguf_writer_free(w);
  return st;
}
