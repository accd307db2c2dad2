/* rnn.c — the recurrent language models transformers replaced: Elman's RNN
 * (tanh) and Hochreiter & Schmidhuber's LSTM, as PyTorch's nn.RNN / nn.LSTM
 * compute them (gate order i, f, g, o; two biases b_ih and b_hh), stacked
 * rnn_layers deep between a token embedding and the LM head.
 *
 *   x_0 = wte[ids]                                                  // (B,T,C)
 *   RNN:  h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)
 *   LSTM: (i, f, g, o) = (σ, σ, tanh, σ)(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)
 *         c_t = f c_{t-1} + i g,   h_t = o tanh(c_t)
 *   layer l+1 reads layer l's h; the top layer's h (B,T,C) is the LM head's input
 *
 * How it plugs in: each is a model family (family.h) with own_body set: no
 * general blocks (n_layer = 0), and embed_forward / embed_backward run the
 * whole recurrent stack, so the LM head (tied or not), the trainer and its
 * clm objective, checkpoints, exact resume, eval and multiple-choice scoring
 * are the transformer's, unchanged. Training is truncated backpropagation
 * through time over each window of the context length: every window starts
 * from a zero state (state is not carried across windows, which keeps batches
 * independent and resume exact). Decoding keeps a per-sequence state instead
 * of a KV cache (state_new / state_feed): O(layers · C²) per token whatever the
 * length.
 *
 * One width C (n_embd) is the embedding, hidden and cell size, so the head
 * can be tied. Dropout is not implemented here: a config asking for it is an
 * error, not ignored. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "base/base.h"
#include "kernels/kernels.h"
#include "model/config_io.h"
#include "model/heads.h"
#include "model/model.h"

#define MAX_RNN_LAYERS 64

static int is_lstm(const lm_config *c) { return c->arch == LM_ARCH_LSTM; }
static int64_t gates(const lm_config *c) { return is_lstm(c) ? 4 : 1; }

static float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

/* ------------------------------------------------------------------ cells */

/* out(B,OC) += x(B,C) @ W(OC,C)^T, rows ldo and ldx apart. The recurrent products are small (B rows)
 * and come T times in a row: one thread, no BLAS call, whose fork/join would cost more than the
 * product (and far more on a loaded machine). Each W row is read once for all B rows. */
static void rec_matmul(float *out, int64_t ldo, const float *x, int64_t ldx, const float *W, int64_t B, int64_t C, int64_t OC) {
  for (int64_t o = 0; o < OC; o++) {
    const float *w = W + o * C;
    for (int64_t b = 0; b < B; b++) {
      const float *xb = x + b * ldx;
      float acc = 0.0f;
      #pragma omp simd reduction(+:acc)
      for (int64_t k = 0; k < C; k++) acc += xb[k] * w[k];
      out[b * ldo + o] += acc;
    }
  }
}

/* out(B,C) = d(B,OC) @ W(OC,C), rows ldd apart: the transpose product of backward */
static void rec_matmul_t(float *out, const float *d, int64_t ldd, const float *W, int64_t B, int64_t C, int64_t OC) {
  memset(out, 0, (size_t)B * C * sizeof(float));
  for (int64_t b = 0; b < B; b++) {
    float *ob = out + b * C;
    for (int64_t o = 0; o < OC; o++) {
      const float *w = W + o * C;
      float g = d[b * ldd + o];
      #pragma omp simd
      for (int64_t k = 0; k < C; k++) ob[k] += g * w[k];
    }
  }
}

/* One layer over a (B,T) batch. G (B,T,GC) must hold x W_ih^T + b_ih + b_hh on entry; on return it holds
 * the activated gates (RNN: h itself). H (B,T,C) receives h, Cs (B,T,C) c (LSTM; NULL for the RNN). */
static void rnn_layer_forward(const lm_config *c, float *G, float *H, float *Cs, const float *Whh, int64_t B, int64_t T) {
  int64_t C = c->n_embd, GC = gates(c) * C;
  for (int64_t t = 0; t < T; t++) {
    if (t > 0) rec_matmul(G + t * GC, T * GC, H + (t - 1) * C, T * C, Whh, B, C, GC);   /* G[:,t] += h_{t-1} W_hh^T */
    for (int64_t b = 0; b < B; b++) {
      float *g = G + (b * T + t) * GC, *h = H + (b * T + t) * C;
      if (!is_lstm(c)) {
        for (int64_t j = 0; j < C; j++) h[j] = g[j] = tanhf(g[j]);
        continue;
      }
      float *cc = Cs + (b * T + t) * C;
      const float *cp = t > 0 ? cc - C : NULL;
      for (int64_t j = 0; j < C; j++) {
        float i = sigmoidf(g[j]), f = sigmoidf(g[C + j]), gg = tanhf(g[2 * C + j]), o = sigmoidf(g[3 * C + j]);
        g[j] = i; g[C + j] = f; g[2 * C + j] = gg; g[3 * C + j] = o;
        cc[j] = (cp ? f * cp[j] : 0.0f) + i * gg;
        h[j] = o * tanhf(cc[j]);
      }
    }
  }
}

/* x (B,T,C) -> h (B,T,C) of one layer; G, H, Cs as rnn_layer_forward */
static void lstm_forward(const lm_config *c, float *G, float *H, float *Cs, const float *x, const float *Wih,
                         const float *bih, const float *Whh, const float *bhh, int64_t B, int64_t T) {
  int64_t N = B * T, C = c->n_embd, GC = gates(c) * C;
  matmul_forward(G, x, Wih, bih, N, C, GC);                                                  // (N,GC)
  for (int64_t n = 0; n < N; n++)
    for (int64_t j = 0; j < GC; j++) G[n * GC + j] += bhh[j];
  rnn_layer_forward(c, G, H, Cs, Whh, B, T);
}

/* Backward of one layer through time. dH (B,T,C): d loss / d h from above (clobbered); dG (B,T,GC) and
 * Hp (B,T,C) scratch, dn (2,B,C) scratch; dx (B,T,C) receives d loss / d x (+=). Gradients accumulate. */
static void lstm_backward(const lm_config *c, float *dx, float *dWih, float *dbih, float *dWhh, float *dbhh, float *dH,
                          float *dG, float *Hp, float *dn, const float *x, const float *G, const float *H,
                          const float *Cs, const float *Wih, const float *Whh, int64_t B, int64_t T) {
  int64_t N = B * T, C = c->n_embd, GC = gates(c) * C;
  float *dhn = dn, *dcn = dn + B * C;   /* d h_{t} and d c_{t} carried back from step t+1 */
  memset(dn, 0, 2 * (size_t)B * C * sizeof(float));
  for (int64_t t = T - 1; t >= 0; t--) {
    for (int64_t b = 0; b < B; b++) {
      int64_t r = b * T + t;
      const float *g = G + r * GC, *h = H + r * C;
      float *dg = dG + r * GC, *dh = dH + r * C;
      for (int64_t j = 0; j < C; j++) dh[j] += dhn[b * C + j];
      if (!is_lstm(c)) {
        for (int64_t j = 0; j < C; j++) dg[j] = dh[j] * (1.0f - h[j] * h[j]);
        continue;
      }
      const float *cc = Cs + r * C, *cp = t > 0 ? cc - C : NULL;
      for (int64_t j = 0; j < C; j++) {
        float i = g[j], f = g[C + j], gg = g[2 * C + j], o = g[3 * C + j], tc = tanhf(cc[j]);
        float dc = dcn[b * C + j] + dh[j] * o * (1.0f - tc * tc);
        dg[j] = dc * gg * i * (1.0f - i);
        dg[C + j] = cp ? dc * cp[j] * f * (1.0f - f) : 0.0f;
        dg[2 * C + j] = dc * i * (1.0f - gg * gg);
        dg[3 * C + j] = dh[j] * tc * o * (1.0f - o);
        dcn[b * C + j] = dc * f;
      }
    }
    if (t > 0) rec_matmul_t(dhn, dG + t * GC, T * GC, Whh, B, C, GC);   /* d h_{t-1} = dG[:,t] W_hh */
  }
  for (int64_t b = 0; b < B; b++) {   /* h_{t-1} beside each step (zero at t = 0) */
    memset(Hp + b * T * C, 0, C * sizeof(float));
    memcpy(Hp + (b * T + 1) * C, H + b * T * C, (size_t)(T - 1) * C * sizeof(float));
  }
  matmul_backward(dx, dWih, dbih, dG, x, Wih, N, C, GC);
  matmul_backward(NULL, dWhh, dbhh, dG, Hp, Whh, N, C, GC);
}

/* ------------------------------------------------------------------ the stack in training */

typedef struct {
  int64_t B, T;
  float *arena;
  float *x0;               /* (N,C) the embeddings */
  float *G[MAX_RNN_LAYERS], *H[MAX_RNN_LAYERS], *Cs[MAX_RNN_LAYERS];   /* (N,GC), (N,C), (N,C) per layer */
  float *dA, *dB, *dG, *Hp, *dn;   /* backward: (N,C) x2, (N,GC), (N,C), (2,B,C); NULL without gradients */
} rnn_acts;

typedef struct { const float *wih, *whh, *bih, *bhh; } rnn_w;

static rnn_w layer_w(const lm_model *m, int grad, int64_t l) {
  char nm[LM_MAX_NAME];
  rnn_w w;
#define W(field, fmt) (snprintf(nm, sizeof nm, fmt, (long long)l), w.field = lm_model_param(m, nm, grad))
  W(wih, "rnn.weight_ih_l%lld"); W(whh, "rnn.weight_hh_l%lld"); W(bih, "rnn.bias_ih_l%lld"); W(bhh, "rnn.bias_hh_l%lld");
#undef W
  return w;
}

static void free_state(lm_model *m) {
  rnn_acts *a = m->fam_state;
  if (a) lm_free(a->arena);
  free(a);
  m->fam_state = NULL;
}

static lm_status reserve(lm_model *m, int64_t B, int64_t T, int need_grads) {
  const lm_config *c = &m->cfg;
  rnn_acts *a = m->fam_state;
  if (a && a->B == B && a->T == T && (!need_grads || a->dA)) return LM_OK;
  free_state(m);
  int64_t N = B * T, C = c->n_embd, GC = gates(c) * C, L = c->rnn_layers;
  size_t per = (size_t)N * (GC + C + (is_lstm(c) ? C : 0));
  size_t total = (size_t)N * C + (size_t)L * per + (need_grads ? (size_t)N * (3 * C + GC) + 2 * (size_t)B * C : 0);
  if (!(a = calloc(1, sizeof *a)) || !(a->arena = lm_alloc(total * sizeof(float)))) {
    free(a);
    return lm_error(LM_ERR_NOMEM, "out of memory for the recurrent activations (batch %lld x %lld)", (long long)B, (long long)T);
  }
  float *p = a->arena;
  a->x0 = p; p += N * C;
  for (int64_t l = 0; l < L; l++) {
    a->G[l] = p; p += N * GC;
    a->H[l] = p; p += N * C;
    if (is_lstm(c)) { a->Cs[l] = p; p += N * C; }
  }
  if (need_grads) {
    a->dA = p; p += N * C; a->dB = p; p += N * C; a->Hp = p; p += N * C; a->dG = p; p += N * GC; a->dn = p;
  }
  a->B = B; a->T = T;
  m->fam_state = a;
  return LM_OK;
}

static void embed_forward(lm_model *m, const lm_batch *b, float *out) {
  const lm_config *c = &m->cfg;
  rnn_acts *a = m->fam_state;
  int64_t B = b->B, T = b->T, N = B * T, C = c->n_embd;
  embedding_forward(a->x0, b->ids, m->w.wte, N, C, 0);                                       // (N,C)
  const float *x = a->x0;
  for (int64_t l = 0; l < c->rnn_layers; l++) {
    rnn_w w = layer_w(m, 0, l);
    lstm_forward(c, a->G[l], a->H[l], a->Cs[l], x, w.wih, w.bih, w.whh, w.bhh, B, T);      // (N,C)
    x = a->H[l];
  }
  memcpy(out, x, (size_t)N * C * sizeof(float));
}

static void embed_backward(lm_model *m, const lm_batch *b, float *dout) {
  const lm_config *c = &m->cfg;
  rnn_acts *a = m->fam_state;
  int64_t B = b->B, T = b->T, N = B * T, C = c->n_embd;
  float *dH = dout, *dx = a->dA;
  for (int64_t l = c->rnn_layers - 1; l >= 0; l--) {
    rnn_w w = layer_w(m, 0, l), g = layer_w(m, 1, l);
    memset(dx, 0, (size_t)N * C * sizeof(float));
    lstm_backward(c, dx, (float *)g.wih, (float *)g.bih, (float *)g.whh, (float *)g.bhh, dH, a->dG, a->Hp, a->dn,
                  l ? a->H[l - 1] : a->x0, a->G[l], a->H[l], a->Cs[l], w.wih, w.whh, B, T);
    dH = dx;
    dx = dx == a->dA ? a->dB : a->dA;
  }
  embedding_backward(m->g.wte, dH, b->ids, N, C);
}

/* Packed examples would need the state reset inside a row; padding on the left would feed the pads
 * into the state before the text. Both are refused rather than computed wrongly. */
static lm_status check(const lm_model *m, const lm_batch *b) {
  if (b->starts) return lm_error(LM_ERR_UNSUPPORTED, "batch: packed examples (starts) in a %s model", m->fam->model_type);
  for (int64_t i = 0; b->mask && i < b->B; i++)
    for (int64_t t = 1; t < b->T; t++)
      if (!b->mask[i * b->T + t - 1] && b->mask[i * b->T + t])
        return lm_error(LM_ERR_UNSUPPORTED, "batch: row %lld has padding before text; a %s model reads padding as input, "
                        "so it must be on the right", (long long)i, m->fam->model_type);
  return LM_OK;
}

/* ------------------------------------------------------------------ decoding state */

typedef struct { float *h, *c, *g, *x; } rnn_state;   /* (L,C), (L,C), (GC), (C) */

static lm_status state_new(const lm_model *m, void **out) {
  const lm_config *c = &m->cfg;
  int64_t C = c->n_embd, L = c->rnn_layers;
  rnn_state *s = calloc(1, sizeof *s);
  float *p = s ? lm_alloc((size_t)(2 * L * C + gates(c) * C + C) * sizeof(float)) : NULL;
  if (!p) { free(s); return lm_error(LM_ERR_NOMEM, "out of memory"); }
  s->h = p; s->c = p + L * C; s->g = s->c + L * C; s->x = s->g + gates(c) * C;
  memset(p, 0, (size_t)2 * L * C * sizeof(float));
  *out = s;
  return LM_OK;
}

static void state_reset(const lm_model *m, void *st) {
  rnn_state *s = st;
  memset(s->h, 0, (size_t)2 * m->cfg.rnn_layers * m->cfg.n_embd * sizeof(float));
}

static void state_free(void *st) {
  rnn_state *s = st;
  if (s) lm_free(s->h);
  free(s);
}

/* the cells of rnn_layer_forward for one token of one sequence */
static lm_status state_feed(const lm_model *m, void *st, const int32_t *ids, int64_t n, float *logits) {
  const lm_config *c = &m->cfg;
  rnn_state *s = st;
  int64_t C = c->n_embd, GC = gates(c) * C;
  for (int64_t k = 0; k < n; k++) {
    memcpy(s->x, m->w.wte + (size_t)ids[k] * C, C * sizeof(float));
    for (int64_t l = 0; l < c->rnn_layers; l++) {
      rnn_w w = layer_w(m, 0, l);
      float *h = s->h + l * C, *cc = s->c + l * C, *g = s->g;
      for (int64_t j = 0; j < GC; j++) g[j] = w.bih[j] + w.bhh[j];
      rec_matmul(g, GC, s->x, C, w.wih, 1, C, GC);
      rec_matmul(g, GC, h, C, w.whh, 1, C, GC);
      for (int64_t j = 0; j < C; j++) {
        if (!is_lstm(c)) { h[j] = tanhf(g[j]); continue; }
        float i = sigmoidf(g[j]), f = sigmoidf(g[C + j]), gg = tanhf(g[2 * C + j]), o = sigmoidf(g[3 * C + j]);
        cc[j] = f * cc[j] + i * gg;
        h[j] = o * tanhf(cc[j]);
      }
      memcpy(s->x, h, C * sizeof(float));
    }
  }
  memset(logits, 0, (size_t)c->vocab_size * sizeof(float));
  rec_matmul(logits, c->vocab_size, s->x, C, lm_model_lm_head(m), 1, C, c->vocab_size);
  return LM_OK;
}

/* ------------------------------------------------------------------ config, tensors, names */

static const lm_family_class rnn_classes[] = {{LM_HEAD_LM, "RNNLanguageModel", 0}};
static const lm_family_class lstm_classes[] = {{LM_HEAD_LM, "LSTMLanguageModel", 0}};

static void defaults(lm_config *c) {
  c->n_layer = 0; c->n_head = 1; c->pre_ln = 0; c->rnn_layers = 1; c->n_embd = 256; c->n_positions = 256;
  c->init_std = 0.1f;
}

static lm_status parse(const cJSON *r, lm_config *c, const char *p) {
  lm_status st;
  const char *nl = NULL;
  if ((st = lm_cfg_int(r, "vocab_size", &c->vocab_size, 0, 0, p)) ||
      (st = lm_cfg_int(r, "max_position_embeddings", &c->n_positions, 0, 0, p)) ||
      (st = lm_cfg_int(r, "hidden_size", &c->n_embd, 0, 0, p)) ||
      (st = lm_cfg_int(r, "num_layers", &c->rnn_layers, 0, 0, p)) ||
      (st = lm_cfg_float(r, "initializer_range", &c->init_std, p)) ||
      (st = lm_cfg_int(r, "bos_token_id", &c->bos_token_id, 1, -1, p)) ||
      (st = lm_cfg_int(r, "eos_token_id", &c->eos_token_id, 1, -1, p)) ||
      (st = lm_cfg_bool(r, "tie_word_embeddings", &c->tie_embeddings, p)) ||
      (st = lm_cfg_str(r, "nonlinearity", &nl, p)))
    return st;
  if (nl && (is_lstm(c) || strcmp(nl, "tanh")))
    return lm_error(LM_ERR_UNSUPPORTED, "%s: nonlinearity \"%s\" is not supported (an rnn is tanh; an lstm has none to set)", p, nl);
  return LM_OK;
}

static lm_status validate(const lm_config *c, const char *p) {
  lm_status st = lm_cfg_range(p, "num_layers", c->rnn_layers, 1, MAX_RNN_LAYERS);
  if (st) return st;
  if (c->embd_pdrop > 0 || c->attn_pdrop > 0 || c->resid_pdrop > 0)
    return lm_error(LM_ERR_UNSUPPORTED, "%s: dropout is not implemented for the %s family", p, lm_arch_name(c->arch));
  if (c->head != LM_HEAD_LM) return lm_error(LM_ERR_UNSUPPORTED, "%s: the %s family has the LM head only", p, lm_arch_name(c->arch));
  if (c->share_layers || c->n_enc_layer || c->rope || c->pre_ln)
    return lm_error(LM_ERR_UNSUPPORTED, "%s: shared layers, an encoder, rotary positions or a final norm in a %s model", p,
                    lm_arch_name(c->arch));
  return LM_OK;
}

static void write(lm_cfg_writer *w, const lm_config *c) {
  lm_cfgw_architectures(w, c);
  lm_cfgw_id(w, "bos_token_id", c->bos_token_id);
  lm_cfgw_id(w, "eos_token_id", c->eos_token_id);
  lm_cfgw_int(w, "hidden_size", c->n_embd);
  lm_cfgw_float(w, "initializer_range", c->init_std);
  lm_cfgw_int(w, "max_position_embeddings", c->n_positions);
  lm_cfgw_str(w, "model_type", lm_arch_name(c->arch));
  if (!is_lstm(c)) lm_cfgw_str(w, "nonlinearity", "tanh");
  lm_cfgw_int(w, "num_layers", c->rnn_layers);
  lm_cfgw_bool(w, "tie_word_embeddings", c->tie_embeddings);
  lm_cfgw_str(w, "torch_dtype", "float32");
  lm_cfgw_int(w, "vocab_size", c->vocab_size);
}

/* PyTorch's names (nn.LSTM's weight_ih_l0 ...) under "rnn." */
static int add_embeddings(const lm_config *c, lm_param_table *t) {
  int64_t C = c->n_embd, GC = gates(c) * C;
  if (lm_table_add(t, "wte.weight", c->vocab_size, C, 0)) return -1;
  char nm[LM_MAX_NAME];
  for (int64_t l = 0; l < c->rnn_layers; l++) {
#define ADD(fmt, d0, d1, dec) do { snprintf(nm, sizeof nm, fmt, (long long)l); if (lm_table_add(t, nm, d0, d1, dec)) return -1; } while (0)
    ADD("rnn.weight_ih_l%lld", GC, C, 1); ADD("rnn.weight_hh_l%lld", GC, C, 1);
    ADD("rnn.bias_ih_l%lld", GC, 0, 0); ADD("rnn.bias_hh_l%lld", GC, 0, 0);
#undef ADD
  }
  return 0;
}

/* PyTorch draws the cells' tensors from U(-1/sqrt(C), 1/sqrt(C)); this is the normal of the same variance.
 * The embedding and head take initializer_range (0.1, as PyTorch's word-language-model example). */
static float init_std(const lm_config *c, const char *name) {
  return strncmp(name, "rnn.", 4) ? NAN : 1.0f / sqrtf(3.0f * (float)c->n_embd);
}

static int hf_name(const lm_config *c, const char *ours, int64_t layer, lm_hf_tensor *o) {
  (void)c; (void)layer;
  memset(o, 0, sizeof *o);
  o->parts = 1;
  if (strcmp(ours, "wte.weight") && strcmp(ours, "lm_head.weight") && strncmp(ours, "rnn.", 4)) return -1;
  snprintf(o->name, sizeof o->name, "%s", ours);
  return 0;
}

static int hf_ignore(const lm_config *c, const char *name) { return c->tie_embeddings && !strcmp(name, "lm_head.weight"); }

static void describe(const lm_model *m, FILE *out) {
  const lm_config *c = &m->cfg;
  fprintf(out, "layers:           %lld %s layer%s of width %lld (%s)\n", (long long)c->rnn_layers, is_lstm(c) ? "LSTM" : "tanh RNN",
          c->rnn_layers == 1 ? "" : "s", (long long)c->n_embd,
          is_lstm(c) ? "gates i, f, g, o as PyTorch's nn.LSTM" : "Elman, as PyTorch's nn.RNN");
  fprintf(out, "context:          %lld (the truncated-BPTT window it was trained on; decoding carries the state)\n",
          (long long)c->n_positions);
  fprintf(out, "vocab:            %lld\n", (long long)c->vocab_size);
  fprintf(out, "head:             %s\n", c->tie_embeddings ? "tied to the embedding" : "its own");
}

#define RNN_FAMILY(NAME, TYPE, ARCH, PREFIX, CLASSES)                                                               \
  const lm_family NAME = {                                                                                        \
      .model_type = TYPE, .arch = ARCH, .class_prefix = PREFIX, .classes = CLASSES, .n_classes = 1,               \
      .base_prefix = "", .pool = LM_POOL_LAST,                                                                    \
      .defaults = defaults, .parse = parse, .validate = validate, .write = write,                                 \
      .keys = {"vocab_size", "max_position_embeddings", "hidden_size", "n_layer (general blocks)", "n_head",     \
               "n_inner", "layer_norm_eps", "initializer_range", {"dropout", "dropout", "dropout"}},             \
      .add_embeddings = add_embeddings, .init_std = init_std,                                                     \
      .reserve = reserve, .free_state = free_state, .check = check,                                               \
      .embed_forward = embed_forward, .embed_backward = embed_backward,                                           \
      .hf_name = hf_name, .hf_ignore = hf_ignore,                                                                 \
      .own_body = 1, .state_new = state_new, .state_reset = state_reset, .state_free = state_free,                \
      .state_feed = state_feed, .describe = describe,                                                             \
  };
RNN_FAMILY(lm_family_rnn, "rnn", LM_ARCH_RNN, "RNNLanguage", rnn_classes)
RNN_FAMILY(lm_family_lstm, "lstm", LM_ARCH_LSTM, "LSTMLanguage", lstm_classes)
