/* base.h — small utilities every stage uses: error reporting, aligned memory,
 * a deterministic RNG, file i/o (whole-file reads, mmap, atomic writes),
 * wall-clock time and a terminal progress bar.
 *
 * Errors: a function that fails calls lm_error(status, fmt, ...) which records
 * a message in a thread-local buffer and returns the status, so the idiom is
 *     if (bad) return lm_error(LM_ERR_FORMAT, "%s: header too short", path);
 * and the caller (ultimately the CLI) prints lm_last_error(). */
#ifndef LM_BASE_H
#define LM_BASE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "lmkit.h"

/* ---- errors ---- */
lm_status lm_error(lm_status st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prefixes the current message with "<context>: " (to add the file name at an outer level). */
lm_status lm_error_prefix(lm_status st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- memory: 64-byte aligned, zeroed; NULL on failure with the error set ---- */
void *lm_alloc(size_t bytes);
void lm_free(void *p);
/* malloc/realloc wrappers that set the error on failure */
void *lm_xmalloc(size_t bytes);
void *lm_xrealloc(void *p, size_t bytes);
char *lm_strdup(const char *s);

/* ---- rng: xoshiro256**, seeded with splitmix64; state is plain data so it can be checkpointed ---- */
typedef struct { uint64_t s[4]; } lm_rng;
void lm_rng_seed(lm_rng *r, uint64_t seed);
uint64_t lm_rng_u64(lm_rng *r);
uint32_t lm_rng_below(lm_rng *r, uint32_t n);   /* uniform in [0, n) */
float lm_rng_uniform(lm_rng *r);                 /* uniform in [0, 1) */
float lm_rng_normal(lm_rng *r);                  /* standard normal (Box-Muller, no cached value) */

/* ---- files ---- */
/* Reads a whole file; *data is NUL-terminated (not counted in *len); free with free(). */
lm_status lm_read_file(const char *path, char **data, size_t *len);
/* Atomic write: path.tmp.<pid>, fwrite, fflush, fsync, rename; nothing changes on failure. */
lm_status lm_write_file_atomic(const char *path, const void *data, size_t len);
/* Streaming variant: open returns a FILE* on a temp path; commit fsyncs and renames, abort removes. */
typedef struct { FILE *f; char *tmp; char *path; } lm_atomic_file;
lm_status lm_atomic_open(lm_atomic_file *af, const char *path);
lm_status lm_atomic_commit(lm_atomic_file *af);
void lm_atomic_abort(lm_atomic_file *af);
/* Read-only memory map of a whole file. */
typedef struct { void *data; size_t len; } lm_mmap;
lm_status lm_mmap_open(lm_mmap *m, const char *path);
void lm_mmap_close(lm_mmap *m);
int lm_file_exists(const char *path);
int lm_dir_exists(const char *path);
lm_status lm_mkdir_p(const char *path);
/* Joins dir and name into a freshly malloc'ed string. */
char *lm_path_join(const char *dir, const char *name);
/* The next non-blank line of text[0..len) from *at (start both *at and *line at 0): sets *s, *n
 * (trimmed of blanks, \r and a leading UTF-8 BOM), advances *at past it and *line to its 1-based
 * number; 0 at the end. */
int lm_next_line(const char *text, size_t len, size_t *at, int64_t *line, const char **s, size_t *n);

/* ---- time and progress ---- */
double lm_time_sec(void);   /* monotonic seconds */
typedef struct {
  int64_t total; int64_t done; double t0; double last; int tty; const char *label;
} lm_progress;
void lm_progress_start(lm_progress *p, const char *label, int64_t total);
/* Redraws at most ~10 times a second on a terminal; `extra` is appended (e.g. "loss 2.31"). */
void lm_progress_update(lm_progress *p, int64_t done, const char *extra);
void lm_progress_finish(lm_progress *p, const char *extra);

/* ---- threads ---- */
/* Sets OpenMP's and OpenBLAS's thread counts (n <= 0: all cores). */
void lm_set_threads(int n);
int lm_get_threads(void);

#endif
