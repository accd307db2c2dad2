/* mem.c — aligned, zeroed allocations (parameters, gradients, activation arenas)
 * and malloc wrappers that record an error instead of returning a silent NULL. */
#include <stdlib.h>
#include <string.h>
#include "base/base.h"

void *lm_alloc(size_t bytes) {
  if (bytes == 0) bytes = 64;
  size_t rounded = (bytes + 63) & ~(size_t)63;
  void *p = aligned_alloc(64, rounded);
  if (!p) { lm_error(LM_ERR_NOMEM, "out of memory allocating %zu bytes", bytes); return NULL; }
  memset(p, 0, rounded);
  return p;
}

void lm_free(void *p) { free(p); }

void *lm_xmalloc(size_t bytes) {
  void *p = malloc(bytes ? bytes : 1);
  if (!p) lm_error(LM_ERR_NOMEM, "out of memory allocating %zu bytes", bytes);
  return p;
}

void *lm_xrealloc(void *p, size_t bytes) {
  void *q = realloc(p, bytes ? bytes : 1);
  if (!q) lm_error(LM_ERR_NOMEM, "out of memory allocating %zu bytes", bytes);
  return q;
}

char *lm_strdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = lm_xmalloc(n);
  if (d) memcpy(d, s, n);
  return d;
}
