/* hf.c — Hugging Face model directories (DESIGN.md §4): config.json +
 * model.safetensors (or the shards of model.safetensors.index.json, each
 * memory-mapped), read and written for any family with any head. Tensors may
 * be f32, f16 or bf16 on disk; lmkit computes in f32.
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "base/base.h"
#include "model/config.h"
#include "model/config_io.h"
#include "model/gguf.h"
#include "model/heads.h"
#include "model/model.h"
#include "model/safetensors.h"

static const char *const qkv_parts[3] = {"query", "key", "value"};

/* the on-disk name of part k of tensor t */
static void part_name(const lm_hf_tensor *t, int k, char *out, size_t n) {
  if (t->parts > 1) snprintf(out, n, t->name, (t->part_names ? t->part_names : qkv_parts)[k]);
  else snprintf(out, n, "%s", t->name);
}

/* Rows of part k of tensor p (parts are row blocks of our (out, in) layout), and where it starts. */
static int64_t part_rows(const lm_hf_tensor *t, const lm_param_info *p, int k, int64_t *row0) {
  *row0 = 0;
  if (!t->part_rows[0]) { *row0 = k * (p->shape[0] / t->parts); return p->shape[0] / t->parts; }
  for (int j = 0; j < k; j++) *row0 += t->part_rows[j];
  return t->part_rows[k];
}

/* ------------------------------------------------------------------ save */

lm_status lm_model_save(const lm_model *m, const char *dir) {
  lm_status st = lm_model_check_f32(m, "saving");
  if (st) return st;
  st = lm_mkdir_p(dir);
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
      int64_t cols = p->ndim == 2 ? p->shape[1] : 1;
      for (int k = 0; k < t.parts; k++) {
        char hf[160];
        part_name(&t, k, hf, sizeof hf);
        snprintf(names[n], sizeof names[n], "%s%s", t.base ? f->base_prefix : "", hf);
        int64_t row0, rows = part_rows(&t, p, k, &row0);
        e[n] = (lm_st_entry){.name = names[n], .ndim = p->ndim, .data = m->params + p->offset + row0 * cols,
                             .transpose = t.transpose && p->ndim == 2};
        e[n].shape[0] = e[n].transpose ? p->shape[1] : rows;
        e[n].shape[1] = e[n].transpose ? p->shape[0] : p->shape[1];
        n++;
      }
    }
  }
  char *wpath = lm_path_join(dir, "model.safetensors"), *cpath = lm_path_join(dir, "config.json");
  if (!st && (!wpath || !cpath)) st = lm_error(LM_ERR_NOMEM, "out of memory");
  if (!st) st = lm_st_write(wpath, e, n, NULL);
  if (!st) st = lm_config_save(c, cpath);
  if (!st && f->save_extra) st = f->save_extra(m, dir);   /* what is not a tensor (the n-gram's counts) */
  if (!st) {   /* the single file now holds the model: a sharded index left from before would contradict it */
    char *ipath = lm_path_join(dir, "model.safetensors.index.json");
    if (ipath && lm_file_exists(ipath) && remove(ipath)) st = lm_error(LM_ERR_IO, "%s: cannot remove the old index", ipath);
    free(ipath);
  }
  /* a loaded classifier keeps its label names (lm_config holds only their count) */
  if (!st && m->label_names && lm_cfg_has_labels(c))
    st = lm_config_set_label_names(cpath, (const char *const *)m->label_names, c->num_labels);
  free(wpath); free(cpath); free(e); free(names);
  return st;
}

/* ------------------------------------------------------------------ load */

/* ------------------------------------------------------------------ the weight files */

/* A model's tensors: model.safetensors, or the shards that model.safetensors.index.json names
 * (each memory-mapped). used[i][j]: tensor j of file i was loaded. */
typedef struct {
  int n;
  lm_st_file **f;
  char **used;
  char **names;   /* file names, for messages */
} st_set;

static void set_close(st_set *s) {
  for (int i = 0; i < s->n; i++) { lm_st_close(s->f[i]); free(s->used[i]); free(s->names[i]); }
  free(s->f); free(s->used); free(s->names);
  memset(s, 0, sizeof *s);
}

static lm_status set_add(st_set *s, const char *path) {
  lm_st_file **f = realloc(s->f, (s->n + 1) * sizeof *f);
  if (f) s->f = f;
  char **u = realloc(s->used, (s->n + 1) * sizeof *u);
  if (u) s->used = u;
  char **nm = realloc(s->names, (s->n + 1) * sizeof *nm);
  if (nm) s->names = nm;
  if (!f || !u || !nm) return lm_error(LM_ERR_NOMEM, "out of memory");
  lm_status st = lm_st_open(&s->f[s->n], path);
  if (st) return st;
  s->used[s->n] = calloc((size_t)lm_st_count(s->f[s->n]) + 1, 1);
  s->names[s->n] = strdup(path);
  if (!s->used[s->n] || !s->names[s->n]) {
    lm_st_close(s->f[s->n]); free(s->used[s->n]); free(s->names[s->n]);
    return lm_error(LM_ERR_NOMEM, "out of memory");
  }
  s->n++;
  return LM_OK;
}

/* The shards of a sharded checkpoint: every file the index names is opened, every tensor the index
 * lists must be in the file it names, and every tensor of a shard must be listed there. */
static lm_status set_open_index(st_set *s, const char *dir, const char *ipath) {
  char *text; size_t len;
  lm_status st = lm_read_file(ipath, &text, &len);
  if (st) return st;
  lm_st_index idx;
  st = lm_st_index_parse(&idx, text, len, ipath);
  free(text);
  if (st) return st;
  for (int i = 0; i < idx.n_files && !st; i++) {
    char *path = lm_path_join(dir, idx.files[i]);
    if (!path) st = lm_error(LM_ERR_NOMEM, "out of memory");
    else if (!lm_file_exists(path)) st = lm_error(LM_ERR_IO, "%s: names the shard '%s', which is not in %s", ipath, idx.files[i], dir);
    else st = set_add(s, path);
    free(path);
  }
  for (int64_t e = 0; e < idx.n_entries && !st; e++)
    if (lm_st_find(s->f[idx.file_of[e]], idx.names[e]) < 0)
      st = lm_error(LM_ERR_FORMAT, "%s: tensor '%s' is listed in %s but that shard does not hold it", ipath, idx.names[e],
                    idx.files[idx.file_of[e]]);
  for (int i = 0; i < s->n && !st; i++)
    for (int j = 0; j < lm_st_count(s->f[i]) && !st; j++) {
      int64_t e = lm_st_index_find(&idx, lm_st_name(s->f[i], j));
      if (e < 0 || idx.file_of[e] != i)
        st = lm_error(LM_ERR_FORMAT, "%s: shard %s holds tensor '%s', which the index %s", ipath, idx.files[i],
                      lm_st_name(s->f[i], j), e < 0 ? "does not list" : "places in another shard");
    }
  lm_st_index_free(&idx);
  return st;
}

static lm_status set_open(st_set *s, const char *dir) {
  memset(s, 0, sizeof *s);
  char *single = lm_path_join(dir, "model.safetensors"), *index = lm_path_join(dir, "model.safetensors.index.json");
  lm_status st;
  if (!single || !index) st = lm_error(LM_ERR_NOMEM, "out of memory");
  else if (lm_file_exists(single)) st = set_add(s, single);
  else if (lm_file_exists(index)) st = set_open_index(s, dir, index);
  else st = lm_error(LM_ERR_IO, "%s: no model.safetensors or model.safetensors.index.json (is this a model directory?)", dir);
  free(single); free(index);
  if (st) set_close(s);
  return st;
}

/* Finds a name in any file of the set: *file and the tensor's index, or -1. */
static int set_find(const st_set *s, const char *name, int *file) {
  for (int i = 0; i < s->n; i++) {
    int idx = lm_st_find(s->f[i], name);
    if (idx >= 0) { *file = i; return idx; }
  }
  return -1;
}

/* Finds an HF name: under the base prefix (base tensors), without it, and the family's alternative
 * spellings. */
static int find_hf(const st_set *s, const lm_family *fam, const char *hf, int base, int *file) {
  char alt[200], nm[240];
  for (int a = 0; a < 2; a++) {
    const char *x = hf;
    if (a) {
      if (!fam->hf_alias || !fam->hf_alias(hf, alt, sizeof alt)) break;
      x = alt;
    }
    int idx;
    if (base) {
      snprintf(nm, sizeof nm, "%s%s", fam->base_prefix, x);
      if ((idx = set_find(s, nm, file)) >= 0) return idx;
    }
    if ((idx = set_find(s, x, file)) >= 0) return idx;
  }
  return -1;
}

static lm_status load_weights(lm_model *m, const char *dir, int load_head, uint64_t seed) {
  st_set set;
  lm_status st = set_open(&set, dir);
  if (st) return st;
  const lm_config *c = &m->cfg;
  const lm_family *fam = m->fam;
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
      int file = 0, idx = find_hf(&set, fam, hf, t.base, &file);
      if (idx < 0) {
        if (!head || (load_head && !t.base))
          st = lm_error(LM_ERR_FORMAT, "%s: missing tensor '%s%s'", dir, t.base ? fam->base_prefix : "", hf);
        break;
      }
      int64_t row0, rows = part_rows(&t, p, k, &row0), cols = p->ndim == 2 ? p->shape[1] : 1;
      int64_t shape[2] = {t.transpose ? p->shape[1] : rows, t.transpose ? p->shape[0] : p->shape[1]};
      st = lm_st_read_f32(set.f[file], idx, m->params + p->offset + row0 * cols, shape, p->ndim, t.transpose);
      set.used[file][idx] = 1;
      found = k == t.parts - 1;
    }
    if (!st && !found) lm_model_init_tensor(m, p, &rng);
  }
  /* anything else must be something the family expects beside its tensors */
  size_t plen = strlen(fam->base_prefix);
  for (int fi = 0; fi < set.n && !st; fi++)
    for (int i = 0; i < lm_st_count(set.f[fi]) && !st; i++) {
      if (set.used[fi][i]) continue;
      const char *name = lm_st_name(set.f[fi], i);
      const char *base = strncmp(name, fam->base_prefix, plen) ? name : name + plen;
      if (fam->hf_ignore && fam->hf_ignore(c, base)) continue;
      st = lm_error(LM_ERR_FORMAT, "%s: unexpected tensor '%s' for a %lld-layer %s config", set.names[fi], name,
                    (long long)c->n_layer, fam->model_type);
    }
  set_close(&set);
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
  if (lm_gguf_is_file(dir)) return lm_gguf_model_load(out, dir, head);   /* a GGUF file (gguf_model.c) */
  if (!lm_dir_exists(dir)) return lm_error(LM_ERR_IO, "%s: no such model directory", dir);
  char *cpath = lm_path_join(dir, "config.json");
  if (!cpath) return lm_error(LM_ERR_NOMEM, "out of memory");
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
  if (!st) st = lm_model_alloc(&m, &cfg);
  if (!st) st = load_weights(m, dir, load_head, seed);
  if (!st && m->fam->load_extra) st = m->fam->load_extra(m, dir);
  if (!st && load_head && lm_cfg_has_labels(&cfg)) st = lm_config_label_names(cpath, cfg.num_labels, &m->label_names);
  free(cpath);
  if (st) { lm_model_free(m); return st; }
  *out = m;
  return LM_OK;
}

lm_status lm_model_load(lm_model **out, const char *dir) { return lm_model_load_head(out, dir, -1, 0, 0); }
