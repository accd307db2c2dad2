/* safetensors.h — reading and writing the safetensors tensor file format
 * (model.safetensors, optimizer.safetensors; DESIGN.md §4).
 *
 * Layout: an 8-byte little-endian u64 N, N bytes of JSON header
 *   {"<name>": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
 *    "__metadata__": {"key": "value", ...}}
 * then the data buffer; offsets are relative to the start of that buffer.
 *
 * Reading memory-maps the file and validates the whole header up front
 * (types, dtypes, shape overflow, offsets within the buffer, sizes matching
 * the shape, overlaps, duplicate names), so that afterwards every accessor is
 * a plain, bounds-safe lookup. Writing produces F32 tensors atomically. */
#ifndef LM_MODEL_SAFETENSORS_H
#define LM_MODEL_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>
#include "lmkit.h"

#define LM_ST_MAX_DIMS 8                       /* most dims a tensor in a file may have */
#define LM_ST_MAX_HEADER ((uint64_t)100 << 20)  /* header lengths above this are refused */

typedef struct {               /* one tensor to write */
  const char *name;
  int ndim; int64_t shape[4];  /* shape as stored on disk */
  const float *data;           /* fp32 source */
  int transpose;               /* 2-D only: data is the (shape[1], shape[0]) row-major matrix; write its transpose */
} lm_st_entry;

/* Writes an F32 safetensors file atomically (temp file, fsync, rename).
 * meta: NULL or a NULL-terminated key,value,key,value... list; "format":"pt" is
 * written unless meta gives its own "format". Tensors are written in the given
 * order; the JSON header is padded with spaces so the data starts at a multiple of 8. */
lm_status lm_st_write(const char *path, const lm_st_entry *e, int n, const char *const *meta);

typedef struct lm_st_file lm_st_file;

/* Memory-maps and fully validates path. */
lm_status lm_st_open(lm_st_file **out, const char *path);
/* Same over a caller-owned buffer (which must outlive the handle); `name` is
 * used in error messages. Used by the fuzzer and for in-memory checkpoints. */
lm_status lm_st_open_mem(lm_st_file **out, const void *data, size_t len, const char *name);
void lm_st_close(lm_st_file *f);

int lm_st_count(const lm_st_file *f);
const char *lm_st_name(const lm_st_file *f, int i);            /* in header order */
int lm_st_find(const lm_st_file *f, const char *name);         /* index or -1 */
int lm_st_ndim(const lm_st_file *f, int i);
const int64_t *lm_st_shape(const lm_st_file *f, int i);
int64_t lm_st_numel(const lm_st_file *f, int i);
const char *lm_st_dtype(const lm_st_file *f, int i);           /* "F32", "F16", "BF16", ... */
/* Raw bytes of tensor i inside the mapping (little-endian, possibly unaligned). */
const void *lm_st_data(const lm_st_file *f, int i, size_t *nbytes);

/* Copies tensor i into dst as fp32, converting F16/BF16/F64 (other dtypes are
 * LM_ERR_UNSUPPORTED). If expect_shape is non-NULL the tensor's shape must equal
 * it (error naming the tensor, its shape and the expected one). transpose
 * (2-D only): dst receives the (shape[1], shape[0]) transpose. */
lm_status lm_st_read_f32(const lm_st_file *f, int i, float *dst, const int64_t *expect_shape, int expect_ndim,
                         int transpose);

const char *lm_st_meta(const lm_st_file *f, const char *key);  /* NULL if absent */

/* model.safetensors.index.json of a sharded checkpoint:
 *   {"metadata": {...}, "weight_map": {"<tensor>": "<shard file>", ...}}
 * Parsed and checked: weight_map is an object of strings, each shard a plain file name in the same
 * directory (no '/', not "." or ".."), at most LM_ST_MAX_SHARDS of them; other top-level keys than
 * metadata and weight_map are errors. Entries are sorted by name for lm_st_index_find. */
#define LM_ST_MAX_SHARDS 4096
typedef struct {
  int n_files; char **files;           /* the distinct shard names, in order of first appearance */
  int64_t n_entries; char **names;     /* tensor names, sorted */
  int *file_of;                        /* (n_entries) index into files */
} lm_st_index;
lm_status lm_st_index_parse(lm_st_index *out, const char *json, size_t len, const char *name);
int64_t lm_st_index_find(const lm_st_index *x, const char *tensor);   /* entry index or -1 */
void lm_st_index_free(lm_st_index *x);

#endif
