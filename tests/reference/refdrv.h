/* refdrv.h — file helpers shared by the C drivers of the reference tests
 * (tests/reference/ref_*.c): raw binary arrays in and out, and a parameter
 * table written as safetensors with lmkit's internal names. */
#ifndef LM_TESTS_REFDRV_H
#define LM_TESTS_REFDRV_H

#include <stdio.h>
#include <stdlib.h>
#include "base/base.h"
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

#endif
