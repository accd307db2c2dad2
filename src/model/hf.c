/* hf.c — Hugging Face model directories (DESIGN.md §4): config.json +
 * model.safetensors, read and written for any family with any head.
 *
 * The family says what each of our tensors is called on disk (lm_family
 * hf_name: the name, whether it sits under the base model's prefix, whether
 * it is stored in parts or transposed) and which other tensors a file may
 * hold that are not ours (hf_ignore). Loading finds the family and the head
 * from config.json (model_type, architectures); every tensor of the base
 * model must be in the file; a head's tensors come from the file when it has
 * that very head, else they are initialised (fine-tuning a pre-trained model
 * with a new head). Anything else in the file is an error naming it: loading
 * a file and silently computing something else is the worst defect we can
 * ship. */
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "base/base.h"
#include "model/config.h"
#include "model/config_io.h"
#include "model/heads.h"
#include "model/model.h"
#include "model/safetensors.h"

static const char *const qkv_parts[3] = {"query", "key", "value"};

/* the on-disk name of part k of tensor t */
static void part_name(const lm_hf_tensor *t, int k, char *out, size_t n) {
  if (t->parts > 1) snprintf(out, n, t->name, qkv_parts[k]);
  else snprintf(out, n, "%s", t->name);
}

/* ------------------------------------------------------------------ save */

lm_status lm_model_save(const lm_model *m, const char *dir) {
  lm_status st = lm_mkdir_p(dir);
  if (st) return st;
  const lm_config *c = &m->cfg;
  const lm_family *f = m->fam;
  int64_t reps = c->share_layers ? c->n_layer : 1;   /* shared layers are written as n_layer copies */
  int cap = (int)(m->n_info * 3 * reps);
  lm_st_entry *e = calloc(cap, sizeof *e);
  char (*names)[200] = calloc(cap, sizeof *names);
  if (!e || !names) { free(e); free(names); return lm_error(LM_ERR_NOMEM, "out of memory"); }
  int n = 0;
  for (int i = 0; i < m->n_info && !st; i++) {
    const lm_param_info *p = &m->info[i];
    int layered = !strncmp(p->name, "h.", 2);
    for (int64_t r = 0; r < (layered ? reps : 1) && !st; r++) {
      lm_hf_tensor t;
      if (f->hf_name(c, p->name, c->share_layers && layered ? r : -1, &t)) {
        st = lm_error(LM_ERR_FORMAT, "internal: the %s family has no Hugging Face name for '%s'", f->model_type, p->name);
        break;
      }
      size_t piece = p->numel / t.parts;
      for (int k = 0; k < t.parts; k++) {
        char hf[160];
        part_name(&t, k, hf, sizeof hf);
        snprintf(names[n], sizeof names[n], "%s%s", t.base ? f->base_prefix : "", hf);
        e[n] = (lm_st_entry){.name = names[n], .ndim = p->ndim, .data = m->params + p->offset + k * piece,
                             .transpose = t.transpose && p->ndim == 2};
        e[n].shape[0] = e[n].transpose ? p->shape[1] : p->shape[0] / t.parts;
        e[n].shape[1] = e[n].transpose ? p->shape[0] : p->shape[1];
        n++;
      }
    }
  }
  char *wpath = lm_path_join(dir, "model.safetensors"), *cpath = lm_path_join(dir, "config.json");
  if (!st && (!wpath || !cpath)) st = lm_error(LM_ERR_NOMEM, "out of memory");
  if (!st) st = lm_st_write(wpath, e, n, NULL);
  if (!st) st = lm_config_save(c, cpath);
  /* a loaded classifier keeps its label names (lm_config holds only their count) */
  if (!st && m->label_names && lm_cfg_has_labels(c))
    st = lm_config_set_label_names(cpath, (const char *const *)m->label_names, c->num_labels);
  free(wpath); free(cpath); free(e); free(names);
  return st;
}

/* ------------------------------------------------------------------ load */

/* Finds an HF name in f: under the base prefix (base tensors), without it, and the family's
 * alternative spellings. */
static int find_hf(const lm_st_file *f, const lm_family *fam, const char *hf, int base) {
  char alt[200], nm[240];
  for (int a = 0; a < 2; a++) {
    const char *s = hf;
    if (a) {
      if (!fam->hf_alias || !fam->hf_alias(hf, alt, sizeof alt)) break;
      s = alt;
    }
    int idx;
    if (base) {
      snprintf(nm, sizeof nm, "%s%s", fam->base_prefix, s);
      if ((idx = lm_st_find(f, nm)) >= 0) return idx;
    }
    if ((idx = lm_st_find(f, s)) >= 0) return idx;
  }
  return -1;
}

static lm_status load_weights(lm_model *m, const char *path, int load_head, uint64_t seed) {
  lm_st_file *f;
  lm_status st = lm_st_open(&f, path);
  if (st) return st;
  const lm_config *c = &m->cfg;
  const lm_family *fam = m->fam;
  int nt = lm_st_count(f);
  char *used = calloc(nt + 1, 1);
  if (!used) { lm_st_close(f); return lm_error(LM_ERR_NOMEM, "out of memory"); }
  lm_rng rng;
  lm_rng_seed(&rng, seed);
  for (int i = 0; i < m->n_info && !st; i++) {
    const lm_param_info *p = &m->info[i];
    lm_hf_tensor t;
    if (fam->hf_name(c, p->name, -1, &t)) {
      st = lm_error(LM_ERR_FORMAT, "internal: the %s family has no Hugging Face name for '%s'", fam->model_type, p->name);
      break;
    }
    /* a head's tensors (pooler aside, which is the base model's) come from the file only with that head */
    int head = lm_head_is_tensor(p->name), wanted = !head || t.base || load_head;
    int found = 0;
    for (int k = 0; k < t.parts && !st && wanted; k++) {
      char hf[160];
      part_name(&t, k, hf, sizeof hf);
      int idx = find_hf(f, fam, hf, t.base);
      if (idx < 0) {
        if (!head || (load_head && !t.base))
          st = lm_error(LM_ERR_FORMAT, "%s: missing tensor '%s%s'", path, t.base ? fam->base_prefix : "", hf);
        break;
      }
      int64_t shape[2] = {t.transpose ? p->shape[1] : p->shape[0] / t.parts, t.transpose ? p->shape[0] : p->shape[1]};
      size_t piece = p->numel / t.parts;
      st = lm_st_read_f32(f, idx, m->params + p->offset + k * piece, shape, p->ndim, t.transpose);
      used[idx] = 1;
      found = k == t.parts - 1;
    }
    if (!st && !found) lm_model_init_tensor(m, p, &rng);
  }
  /* anything else must be something the family expects beside its tensors */
  size_t plen = strlen(fam->base_prefix);
  for (int i = 0; i < nt && !st; i++) {
    if (used[i]) continue;
    const char *name = lm_st_name(f, i);
    const char *base = strncmp(name, fam->base_prefix, plen) ? name : name + plen;
    if (fam->hf_ignore && fam->hf_ignore(c, base)) continue;
    st = lm_error(LM_ERR_FORMAT, "%s: unexpected tensor '%s' for a %lld-layer %s config", path, name,
                  (long long)c->n_layer, fam->model_type);
  }
  free(used);
  lm_st_close(f);
  return st;
}

/* The head class named by config.json has no head tensors (BertModel)? */
static int config_headless(const char *cpath, const lm_family *f) {
  char *text; size_t len;
  if (lm_read_file(cpath, &text, &len)) return 0;
  cJSON *r = cJSON_ParseWithLength(text, len);
  free(text);
  const cJSON *a = cJSON_GetObjectItemCaseSensitive(r, "architectures");
  const cJSON *a0 = cJSON_IsArray(a) ? cJSON_GetArrayItem(a, 0) : NULL;
  int headless = 0;
  if (cJSON_IsString(a0)) lm_family_head_of(f, a0->valuestring, &headless);
  cJSON_Delete(r);
  return headless;
}

lm_status lm_model_load_head(lm_model **out, const char *dir, int head, int64_t num_labels, uint64_t seed) {
  *out = NULL;
  if (!lm_dir_exists(dir)) return lm_error(LM_ERR_IO, "%s: no such model directory", dir);
  char *cpath = lm_path_join(dir, "config.json"), *wpath = lm_path_join(dir, "model.safetensors");
  if (!cpath || !wpath) { free(cpath); free(wpath); return lm_error(LM_ERR_NOMEM, "out of memory"); }
  lm_config cfg;
  lm_status st = lm_config_load(&cfg, cpath);
  int load_head = 0;
  if (!st) {
    const lm_family *f = lm_family_of(&cfg);
    if (head < 0) head = cfg.head;
    /* the head's tensors come from the file only when it has this very head */
    load_head = cfg.head == head && (num_labels <= 0 || num_labels == cfg.num_labels) && !config_headless(cpath, f);
    cfg.head = head;
    if (num_labels > 0) cfg.num_labels = num_labels;
    st = lm_config_validate(&cfg);
    if (st) lm_error_prefix(st, "%s", cpath);
  }
  lm_model *m = NULL;
  if (!st && !lm_file_exists(wpath)) st = lm_error(LM_ERR_IO, "%s: no model.safetensors (is this a model directory?)", dir);
  if (!st) st = lm_model_alloc(&m, &cfg);
  if (!st) st = load_weights(m, wpath, load_head, seed);
  if (!st && load_head && lm_cfg_has_labels(&cfg)) st = lm_config_label_names(cpath, cfg.num_labels, &m->label_names);
  free(cpath); free(wpath);
  if (st) { lm_model_free(m); return st; }
  *out = m;
  return LM_OK;
}

lm_status lm_model_load(lm_model **out, const char *dir) { return lm_model_load_head(out, dir, -1, 0, 0); }
