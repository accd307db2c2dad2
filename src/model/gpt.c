/* gpt.c — the GPT-2 family: maps lmkit's parameter table to Hugging Face's
 * GPT2LMHeadModel tensors and reads/writes a model directory
 * (config.json + model.safetensors).
 *
 * Internal names are HF's GPT-2 names without the "transformer." prefix.
 * Two layout details matter: GPT-2 uses Conv1D, whose weights are stored
 * (in, out) — the transpose of our nn.Linear-style (out, in) — and HF saves
 * GPT2LMHeadModel with a "transformer." prefix and no lm_head when tied, while
 * the original hub checkpoints have no prefix and carry attention-mask buffers
 * ("h.N.attn.bias", "h.N.attn.masked_bias") that are not parameters. */
#include <stdlib.h>
#include <string.h>
#include "base/base.h"
#include "model/model.h"
#include "model/bert.h"
#include "model/config.h"
#include "model/safetensors.h"

/* Conv1D weights: stored transposed in the HF file */
static int is_conv1d(const char *name) {
  return strstr(name, ".c_attn.weight") || strstr(name, ".c_proj.weight") || strstr(name, ".c_fc.weight");
}

static void hf_name(char *out, size_t n, const char *name) {
  if (!strcmp(name, "lm_head.weight")) snprintf(out, n, "%s", name);
  else snprintf(out, n, "transformer.%s", name);
}

lm_status lm_gpt2_save(const lm_model *m, const char *dir) {
  lm_status st = lm_mkdir_p(dir);
  if (st) return st;
  lm_st_entry *e = calloc(m->n_info, sizeof *e);
  char (*names)[LM_MAX_NAME + 16] = calloc(m->n_info, sizeof *names);
  if (!e || !names) { free(e); free(names); return lm_error(LM_ERR_NOMEM, "out of memory"); }
  for (int i = 0; i < m->n_info; i++) {
    const lm_param_info *p = &m->info[i];
    hf_name(names[i], sizeof names[i], p->name);
    e[i].name = names[i];
    e[i].ndim = p->ndim;
    e[i].data = m->params + p->offset;
    e[i].transpose = p->ndim == 2 && is_conv1d(p->name);
    e[i].shape[0] = e[i].transpose ? p->shape[1] : p->shape[0];
    e[i].shape[1] = e[i].transpose ? p->shape[0] : p->shape[1];
  }
  char *wpath = lm_path_join(dir, "model.safetensors");
  char *cpath = lm_path_join(dir, "config.json");
  if (!wpath || !cpath) st = LM_ERR_NOMEM;
  if (!st) st = lm_st_write(wpath, e, m->n_info, NULL);
  if (!st) st = lm_config_save(&m->cfg, cpath);
  free(wpath); free(cpath); free(e); free(names);
  return st;
}

static int is_buffer(const char *name) {
  size_t n = strlen(name);
  return (n > 10 && !strcmp(name + n - 10, ".attn.bias")) || strstr(name, ".attn.masked_bias") != NULL;
}

static lm_status load_weights(lm_model *m, const char *path) {
  lm_st_file *f;
  lm_status st = lm_st_open(&f, path);
  if (st) return st;
  char nm[LM_MAX_NAME + 16];
  int used = 0;
  for (int i = 0; i < m->n_info && !st; i++) {
    const lm_param_info *p = &m->info[i];
    hf_name(nm, sizeof nm, p->name);
    int idx = lm_st_find(f, nm);
    if (idx < 0) idx = lm_st_find(f, p->name);
    if (idx < 0) { st = lm_error(LM_ERR_FORMAT, "%s: missing tensor '%s'", path, nm); break; }
    int tr = p->ndim == 2 && is_conv1d(p->name);
    int64_t shape[2] = {tr ? p->shape[1] : p->shape[0], tr ? p->shape[0] : p->shape[1]};
    st = lm_st_read_f32(f, idx, m->params + p->offset, shape, p->ndim, tr);
    used++;
  }
  /* anything else must be a known non-parameter: attention-mask buffers or a tied lm_head copy */
  for (int i = 0; i < lm_st_count(f) && !st; i++) {
    const char *name = lm_st_name(f, i);
    const char *base = strncmp(name, "transformer.", 12) ? name : name + 12;
    if (is_buffer(base)) continue;
    if (!strcmp(base, "lm_head.weight") && m->cfg.tie_embeddings) continue;
    if (!lm_model_find_param(m, base))
      st = lm_error(LM_ERR_FORMAT, "%s: unexpected tensor '%s' for a %lld-layer gpt2 config", path, name,
                    (long long)m->cfg.n_layer);
  }
  lm_st_close(f);
  return st;
}

lm_status lm_gpt2_load(lm_model **out, const char *dir) {
  *out = NULL;
  if (!lm_dir_exists(dir)) return lm_error(LM_ERR_IO, "%s: no such model directory", dir);
  char *cpath = lm_path_join(dir, "config.json"), *wpath = lm_path_join(dir, "model.safetensors");
  if (!cpath || !wpath) { free(cpath); free(wpath); return LM_ERR_NOMEM; }
  lm_config cfg;
  lm_status st = lm_config_load(&cfg, cpath);
  if (!st && cfg.arch != LM_ARCH_GPT2)
    st = lm_error(LM_ERR_UNSUPPORTED, "%s: model_type '%s' is not supported by this build (gpt2 only)", cpath, lm_arch_name(cfg.arch));
  lm_model *m = NULL;
  if (!st) st = lm_model_alloc(&m, &cfg);
  if (!st) st = load_weights(m, wpath);
  free(cpath); free(wpath);
  if (st) { lm_model_free(m); return st; }
  *out = m;
  return LM_OK;
}

/* Dispatches on config.json's model_type. */
lm_status lm_model_load(lm_model **out, const char *dir) {
  *out = NULL;
  if (!lm_dir_exists(dir)) return lm_error(LM_ERR_IO, "%s: no such model directory", dir);
  char *cpath = lm_path_join(dir, "config.json");
  if (!cpath) return LM_ERR_NOMEM;
  lm_config cfg;
  lm_status st = lm_config_load(&cfg, cpath);
  free(cpath);
  if (st) return st;
  if (cfg.arch == LM_ARCH_BERT) return lm_bert_load(out, dir);
  return lm_gpt2_load(out, dir);
}

lm_status lm_model_save(const lm_model *m, const char *dir) {
  if (m->cfg.arch == LM_ARCH_BERT) return lm_bert_save(m, dir);
  if (m->cfg.arch != LM_ARCH_GPT2)
    return lm_error(LM_ERR_UNSUPPORTED, "saving model_type '%s' is not supported yet", lm_arch_name(m->cfg.arch));
  return lm_gpt2_save(m, dir);
}
