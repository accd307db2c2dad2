/* refdrv.h — file helpers shared by the C drivers of the reference tests
 * (tests/reference/ref_*.c): raw binary arrays in and out, and a parameter
 * table written as safetensors with lmkit's internal names. */
#ifndef LM_TESTS_REFDRV_H
#define LM_TESTS_REFDRV_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/base.h"
#include "model/heads.h"
#include "model/model.h"
#include "model/safetensors.h"

/* DIR/NAME's first `bytes` bytes, malloc'ed; NULL if missing or short */
static inline void *read_bin(const char *dir, const char *name, size_t bytes) {
  char *p = lm_path_join(dir, name);
  FILE *f = fopen(p, "rb");
  free(p);
  if (!f) return NULL;
  void *buf = malloc(bytes);
  if (fread(buf, 1, bytes, f) != bytes) { free(buf); buf = NULL; }
  fclose(f);
  return buf;
}

static inline int write_bin(const char *dir, const char *name, const void *data, size_t bytes) {
  char *p = lm_path_join(dir, name);
  FILE *f = fopen(p, "wb");
  free(p);
  if (!f) return 1;
  int bad = fwrite(data, 1, bytes, f) != bytes;
  return fclose(f) || bad;
}

/* A model setting of DIR/config.txt ("key value" lines the tests write); 1 if k is one. */
static inline int config_key(lm_config *c, const char *k, double v) {
  if (!strcmp(k, "vocab")) c->vocab_size = (int64_t)v;
  else if (!strcmp(k, "positions")) c->n_positions = (int64_t)v;
  else if (!strcmp(k, "dim")) c->n_embd = (int64_t)v;
  else if (!strcmp(k, "layers")) c->n_layer = (int64_t)v;
  else if (!strcmp(k, "heads")) c->n_head = (int64_t)v;
  else if (!strcmp(k, "inner")) c->n_inner = (int64_t)v;
  else if (!strcmp(k, "rms")) c->norm = v ? LM_NORM_RMS : LM_NORM_LAYER;
  else if (!strcmp(k, "pre_ln")) c->pre_ln = (int)v;
  else if (!strcmp(k, "act")) c->act = (lm_act_kind)(int)v;
  else if (!strcmp(k, "causal")) c->causal = (int)v;
  else if (!strcmp(k, "bias")) c->bias = (int)v;
  else if (!strcmp(k, "tie")) c->tie_embeddings = (int)v;
  else if (!strcmp(k, "eps")) c->norm_eps = (float)v;
  else if (!strcmp(k, "head")) c->head = (int)v;
  else if (!strcmp(k, "labels")) c->num_labels = (int64_t)v;
  else if (!strcmp(k, "type_vocab")) c->type_vocab_size = (int64_t)v;
  else if (!strcmp(k, "pad")) c->pad_token_id = (int64_t)v;
  else if (!strcmp(k, "share")) c->share_layers = (int)v;
  else if (!strcmp(k, "drop")) c->embd_pdrop = c->resid_pdrop = (float)v;
  else if (!strcmp(k, "adrop")) c->attn_pdrop = (float)v;
  else if (!strcmp(k, "cdrop")) c->cls_pdrop = (float)v;
  else return 0;
  return 1;
}

/* Reads DIR/config.txt into c (which holds the family's defaults): each key goes to the driver's own
 * (own returns 1 when it took it; may be NULL), else to config_key; reading stops at the first line
 * without a number. Non-zero when the file is missing. */
static inline int read_config_txt(const char *dir, lm_config *c, int (*own)(const char *k, double v)) {
  char *p = lm_path_join(dir, "config.txt");
  FILE *f = fopen(p, "r");
  free(p);
  if (!f) return 1;
  char k[64]; double v;
  while (fscanf(f, "%63s %lf", k, &v) == 2)
    if (!own || !own(k, v)) config_key(c, k, v);
  fclose(f);
  return 0;
}

/* n tensors of a table (offsets into base) as DIR/NAME; non-zero on failure (message on stderr) */
static inline int save_table(const lm_param_info *info, int n, const float *base, const char *dir, const char *name) {
  lm_st_entry *e = calloc(n, sizeof *e);
  for (int i = 0; i < n; i++)
    e[i] = (lm_st_entry){.name = info[i].name, .ndim = info[i].ndim, .shape = {info[i].shape[0], info[i].shape[1]},
                         .data = base + info[i].offset};
  char *path = lm_path_join(dir, name);
  lm_status st = lm_st_write(path, e, n, NULL);
  free(path); free(e);
  if (st) fprintf(stderr, "%s: %s\n", name, lm_last_error());
  return st != LM_OK;
}

/* the model's parameters (base = params) or gradients (base = grads) */
static inline int save_tensors(const lm_model *m, const float *base, const char *dir, const char *name) {
  return save_table(m->info, m->n_info, base, dir, name);
}

/* The dropout masks the last training forward of a (B,T) batch drew, as DIR/mask_emb.bin,
 * DIR/mask_L_{att,res1,res2}.bin and the classifier input's DIR/mask_head.bin ((B,C), or (B,T,C) for
 * the tokens head) (uint64 words of bits, 1 = kept); those the config lacks are absent. */
static inline int save_dropout_masks(const lm_model *m, int64_t B, int64_t T, const char *dir) {
  const lm_acts *a = &m->acts;
  size_t w_nc = (size_t)(B * T * m->cfg.n_embd + 63) / 64, w_att = (size_t)(B * m->cfg.n_head * T * T + 63) / 64;
  char nm[64];
  int rc = a->drop_emb ? write_bin(dir, "mask_emb.bin", a->drop_emb, w_nc * 8) : 0;
  const uint64_t *head = lm_model_head_dropout_mask(m);
  size_t w_head = (size_t)((m->cfg.head == LM_HEAD_TOKENS ? B * T : B) * m->cfg.n_embd + 63) / 64;
  if (head && !rc) rc = write_bin(dir, "mask_head.bin", head, w_head * 8);
  for (int64_t l = 0; l < m->cfg.n_layer && !rc; l++) {
    const lm_layer_acts *la = &a->layer[l];
    snprintf(nm, sizeof nm, "mask_%lld_att.bin", (long long)l);
    if (la->drop_att) rc |= write_bin(dir, nm, la->drop_att, w_att * 8);
    snprintf(nm, sizeof nm, "mask_%lld_res1.bin", (long long)l);
    if (la->drop_res1) rc |= write_bin(dir, nm, la->drop_res1, w_nc * 8);
    snprintf(nm, sizeof nm, "mask_%lld_res2.bin", (long long)l);
    if (la->drop_res2) rc |= write_bin(dir, nm, la->drop_res2, w_nc * 8);
  }
  return rc;
}

/* The masks of a stack's layers: DIR/PREFIX_L_{att,res1,xatt,resx,act,res2}.bin, (B,NH,T,T), (B,T,C),
 * (B,NH,T,S), (B,T,C), (B,T,F), (B,T,C); those the layer lacks are absent. */
static inline int save_layer_masks(const lm_config *c, const lm_layer_acts *layers, int64_t L, int64_t B, int64_t T,
                                   int64_t S, const char *prefix, const char *dir) {
  int64_t N = B * T;
  int rc = 0;
  for (int64_t l = 0; l < L && !rc; l++) {
    const lm_layer_acts *la = &layers[l];
    const struct { const char *kind; const uint64_t *bits; int64_t n; } k[] = {
        {"att", la->drop_att, B * c->n_head * T * T}, {"res1", la->drop_res1, N * c->n_embd},
        {"xatt", la->drop_xatt, B * c->n_head * T * S}, {"resx", la->drop_resx, N * c->n_embd},
        {"act", la->drop_act, N * lm_ffn_width(c)}, {"res2", la->drop_res2, N * c->n_embd}};
    for (size_t i = 0; i < sizeof k / sizeof *k && !rc; i++) {
      char nm[96];
      snprintf(nm, sizeof nm, "%s_%lld_%s.bin", prefix, (long long)l, k[i].kind);
      if (k[i].bits) rc = write_bin(dir, nm, k[i].bits, (size_t)(k[i].n + 63) / 64 * 8);
    }
  }
  return rc;
}

/* An encoder-decoder's masks after a training forward of B sequences (encoder S tokens, decoder T):
 * DIR/mask_{emb,lnf}.bin (B,T,C) and the decoder's layers as mask_L_*, DIR/mask_enc_{emb,out}.bin
 * (B,S,C) and the encoder's layers as mask_enc_L_* (save_layer_masks); absent where none. */
static inline int save_encdec_dropout_masks(const lm_model *m, int64_t B, int64_t S, int64_t T, const char *dir) {
  const lm_acts *a = &m->acts;
  const lm_config *c = &m->cfg;
  size_t w_t = (size_t)(B * T * c->n_embd + 63) / 64 * 8, w_s = (size_t)(B * S * c->n_embd + 63) / 64 * 8;
  int rc = 0;
  if (a->drop_emb) rc |= write_bin(dir, "mask_emb.bin", a->drop_emb, w_t);
  if (a->drop_lnf) rc |= write_bin(dir, "mask_lnf.bin", a->drop_lnf, w_t);
  if (a->drop_enc_emb) rc |= write_bin(dir, "mask_enc_emb.bin", a->drop_enc_emb, w_s);
  if (a->drop_enc_out) rc |= write_bin(dir, "mask_enc_out.bin", a->drop_enc_out, w_s);
  return rc || save_layer_masks(c, a->layer, c->n_layer, B, T, S, "mask", dir) ||
         save_layer_masks(c, a->enc_layer, c->n_enc_layer, B, S, 0, "mask_enc", dir);
}

#endif
