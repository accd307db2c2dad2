/* io.c — file helpers. Every save in lmkit goes through lm_atomic_*: the bytes
 * go to a temp file beside the target, are fsync'ed, then renamed over it, so a
 * crash mid-save leaves either the old file or the new one, never half of one. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include "base/base.h"

lm_status lm_read_file(const char *path, char **data, size_t *len) {
  *data = NULL; *len = 0;
  FILE *f = fopen(path, "rb");
  if (!f) return lm_error(LM_ERR_IO, "%s: %s", path, strerror(errno));
  size_t cap = 1 << 16, n = 0;
  char *buf = lm_xmalloc(cap + 1);
  if (!buf) { fclose(f); return LM_ERR_NOMEM; }
  for (;;) {
    size_t r = fread(buf + n, 1, cap - n, f);
    n += r;
    if (n < cap) break;
    char *nb = lm_xrealloc(buf, cap * 2 + 1);
    if (!nb) { free(buf); fclose(f); return LM_ERR_NOMEM; }
    buf = nb; cap *= 2;
  }
  int err = ferror(f);
  fclose(f);
  if (err) { free(buf); return lm_error(LM_ERR_IO, "%s: read error", path); }
  buf[n] = 0;
  *data = buf; *len = n;
  return LM_OK;
}

lm_status lm_atomic_open(lm_atomic_file *af, const char *path) {
  memset(af, 0, sizeof *af);
  size_t n = strlen(path) + 32;
  af->tmp = lm_xmalloc(n);
  af->path = lm_strdup(path);
  if (!af->tmp || !af->path) { free(af->tmp); free(af->path); return LM_ERR_NOMEM; }
  snprintf(af->tmp, n, "%s.tmp.%d", path, (int)getpid());
  af->f = fopen(af->tmp, "wb");
  if (!af->f) {
    lm_status st = lm_error(LM_ERR_IO, "%s: cannot create: %s", af->tmp, strerror(errno));
    free(af->tmp); free(af->path); af->tmp = af->path = NULL;
    return st;
  }
  return LM_OK;
}

lm_status lm_atomic_commit(lm_atomic_file *af) {
  lm_status st = LM_OK;
  if (fflush(af->f) != 0 || ferror(af->f) || fsync(fileno(af->f)) != 0)
    st = lm_error(LM_ERR_IO, "%s: write failed: %s", af->tmp, strerror(errno));
  if (fclose(af->f) != 0 && st == LM_OK) st = lm_error(LM_ERR_IO, "%s: close failed: %s", af->tmp, strerror(errno));
  af->f = NULL;
  if (st == LM_OK && rename(af->tmp, af->path) != 0)
    st = lm_error(LM_ERR_IO, "%s: rename failed: %s", af->path, strerror(errno));
  if (st != LM_OK) unlink(af->tmp);
  free(af->tmp); free(af->path); af->tmp = af->path = NULL;
  return st;
}

void lm_atomic_abort(lm_atomic_file *af) {
  if (af->f) fclose(af->f);
  if (af->tmp) unlink(af->tmp);
  free(af->tmp); free(af->path);
  memset(af, 0, sizeof *af);
}

lm_status lm_write_file_atomic(const char *path, const void *data, size_t len) {
  lm_atomic_file af;
  lm_status st = lm_atomic_open(&af, path);
  if (st) return st;
  if (len && fwrite(data, 1, len, af.f) != len) {
    lm_atomic_abort(&af);
    return lm_error(LM_ERR_IO, "%s: write failed", path);
  }
  return lm_atomic_commit(&af);
}

lm_status lm_mmap_open(lm_mmap *m, const char *path) {
  m->data = NULL; m->len = 0;
  int fd = open(path, O_RDONLY);
  if (fd < 0) return lm_error(LM_ERR_IO, "%s: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0) { close(fd); return lm_error(LM_ERR_IO, "%s: %s", path, strerror(errno)); }
  if (!S_ISREG(st.st_mode)) { close(fd); return lm_error(LM_ERR_IO, "%s: not a regular file", path); }
  m->len = (size_t)st.st_size;
  if (m->len > 0) {
    m->data = mmap(NULL, m->len, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m->data == MAP_FAILED) { m->data = NULL; close(fd); return lm_error(LM_ERR_IO, "%s: mmap: %s", path, strerror(errno)); }
  }
  close(fd);
  return LM_OK;
}

void lm_mmap_close(lm_mmap *m) {
  if (m->data) munmap(m->data, m->len);
  m->data = NULL; m->len = 0;
}

int lm_file_exists(const char *path) { struct stat st; return stat(path, &st) == 0 && S_ISREG(st.st_mode); }
int lm_dir_exists(const char *path) { struct stat st; return stat(path, &st) == 0 && S_ISDIR(st.st_mode); }

lm_status lm_mkdir_p(const char *path) {
  char *p = lm_strdup(path);
  if (!p) return LM_ERR_NOMEM;
  for (char *s = p + 1; ; s++) {
    if (*s == '/' || *s == 0) {
      char c = *s; *s = 0;
      if (mkdir(p, 0755) != 0 && errno != EEXIST) {
        lm_status st = lm_error(LM_ERR_IO, "%s: cannot create directory: %s", p, strerror(errno));
        free(p); return st;
      }
      *s = c;
      if (!c) break;
    }
  }
  free(p);
  if (!lm_dir_exists(path)) return lm_error(LM_ERR_IO, "%s: exists and is not a directory", path);
  return LM_OK;
}

char *lm_path_join(const char *dir, const char *name) {
  size_t n = strlen(dir) + strlen(name) + 2;
  char *s = lm_xmalloc(n);
  if (s) snprintf(s, n, "%s/%s", dir, name);
  return s;
}
