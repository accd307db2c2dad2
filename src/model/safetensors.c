/* safetensors.c — the safetensors format: a validating reader over mmap and an
 * atomic F32 writer (format in safetensors.h).
 *
 * Reader: lm_st_open maps the file, parses the JSON header with cJSON once and
 * copies what it needs (names, dtypes, shapes, byte ranges) into a flat table,
 * checking every size and offset against the mapping, so the accessors never
 * touch the JSON again and can never read outside the file. Tensor bytes are
 * read with memcpy (the buffer is only 1-byte aligned in general: the header
 * length need not be a multiple of 8). Names are also kept sorted, which finds
 * duplicate names (cJSON accepts them) and gives lm_st_find a binary search.
 *
 * Writer: builds the header in memory, pads it with spaces to a multiple of 8,
 * then streams the tensors through lm_atomic_*; transposed tensors go through a
 * bounded row-block buffer, cache-blocked, never a full copy. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <cjson/cJSON.h>
#include "base/base.h"
#include "model/safetensors.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c assumes a little-endian host (the file format is little-endian)"
#endif

/* ------------------------------------------------------------------ dtypes */
typedef enum {
  ST_F64, ST_F32, ST_F16, ST_BF16, ST_I64, ST_I32, ST_I16, ST_I8, ST_U64, ST_U32, ST_U16, ST_U8, ST_BOOL,
  ST_F8_E4M3, ST_F8_E5M2, ST_N_DTYPES
} st_dtype;

static const struct { const char *name; int size; } st_dtypes[ST_N_DTYPES] = {
  [ST_F64] = {"F64", 8},   [ST_F32] = {"F32", 4},   [ST_F16] = {"F16", 2},        [ST_BF16] = {"BF16", 2},
  [ST_I64] = {"I64", 8},   [ST_I32] = {"I32", 4},   [ST_I16] = {"I16", 2},        [ST_I8] = {"I8", 1},
  [ST_U64] = {"U64", 8},   [ST_U32] = {"U32", 4},   [ST_U16] = {"U16", 2},        [ST_U8] = {"U8", 1},
  [ST_BOOL] = {"BOOL", 1}, [ST_F8_E4M3] = {"F8_E4M3", 1}, [ST_F8_E5M2] = {"F8_E5M2", 1},
};

static int st_dtype_parse(const char *s) {
  for (int d = 0; d < ST_N_DTYPES; d++)
    if (strcmp(s, st_dtypes[d].name) == 0) return d;
  return -1;
}

/* ------------------------------------------------------------------ file handle */
typedef struct {
  char *name;
  int dtype, ndim;
  int64_t shape[LM_ST_MAX_DIMS];
  int64_t numel;
  uint64_t begin, end;     /* byte range inside the data buffer */
} st_tensor;

struct lm_st_file {
  char *path;              /* for error messages */
  lm_mmap map;             /* zeroed when opened over caller memory */
  const uint8_t *data;     /* start of the data buffer */
  uint64_t data_len;
  int n;
  st_tensor *t;            /* header order */
  int *by_name;            /* indices sorted by name */
  int n_meta;
  char **meta;             /* key, value, key, value ... */
};

void lm_st_close(lm_st_file *f) {
  if (!f) return;
  for (int i = 0; i < f->n; i++) free(f->t[i].name);
  for (int i = 0; i < 2 * f->n_meta; i++) free(f->meta[i]);
  free(f->t); free(f->by_name); free(f->meta); free(f->path);
  lm_mmap_close(&f->map);
  free(f);
}

/* JSON numbers are doubles in cJSON: accept only finite, integral, non-negative
 * values that a double represents exactly (<= 2^53), so no rounding slips in. */
static int st_json_u53(const cJSON *j, uint64_t *out) {
  if (!cJSON_IsNumber(j)) return 0;
  double v = j->valuedouble;
  if (!isfinite(v) || v < 0 || v > 9007199254740992.0 || floor(v) != v) return 0;
  *out = (uint64_t)v;
  return 1;
}

static const char *st_json_type(const cJSON *j) {
  if (cJSON_IsString(j)) return "a string";
  if (cJSON_IsNumber(j)) return "a number";
  if (cJSON_IsArray(j)) return "an array";
  if (cJSON_IsObject(j)) return "an object";
  if (cJSON_IsBool(j)) return "a boolean";
  if (cJSON_IsNull(j)) return "null";
  return "invalid";
}

/* Orderings are computed over arrays of pointers into the table, so the
 * comparators need no context (qsort has no user argument in ISO C). */
static int st_cmp_name(const void *a, const void *b) {
  return strcmp((*(const st_tensor *const *)a)->name, (*(const st_tensor *const *)b)->name);
}
static int st_cmp_begin(const void *a, const void *b) {
  const st_tensor *x = *(const st_tensor *const *)a, *y = *(const st_tensor *const *)b;
  return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : (x->end > y->end) - (x->end < y->end);
}

/* Validates one tensor entry of the header into *t. */
static lm_status st_parse_tensor(const lm_st_file *f, const cJSON *e, st_tensor *t) {
  const char *p = f->path, *nm = e->string;
  if (!cJSON_IsObject(e))
    return lm_error(LM_ERR_FORMAT, "%s: tensor '%s': entry is %s, expected an object", p, nm, st_json_type(e));
  const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
  const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
  const cJSON *of = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
  if (!dt) return lm_error(LM_ERR_FORMAT, "%s: tensor '%s': missing \"dtype\"", p, nm);
  if (!sh) return lm_error(LM_ERR_FORMAT, "%s: tensor '%s': missing \"shape\"", p, nm);
  if (!of) return lm_error(LM_ERR_FORMAT, "%s: tensor '%s': missing \"data_offsets\"", p, nm);
  if (!cJSON_IsString(dt))
    return lm_error(LM_ERR_FORMAT, "%s: tensor '%s': \"dtype\" is %s, expected a string", p, nm, st_json_type(dt));
  t->dtype = st_dtype_parse(dt->valuestring);
  if (t->dtype < 0) return lm_error(LM_ERR_FORMAT, "%s: tensor '%s': unknown dtype \"%.32s\"", p, nm, dt->valuestring);
  if (!cJSON_IsArray(sh))
    return lm_error(LM_ERR_FORMAT, "%s: tensor '%s': \"shape\" is %s, expected an array", p, nm, st_json_type(sh));
  int nd = cJSON_GetArraySize(sh);
  if (nd > LM_ST_MAX_DIMS)
    return lm_error(LM_ERR_FORMAT, "%s: tensor '%s': %d dims, at most %d supported", p, nm, nd, LM_ST_MAX_DIMS);
  t->ndim = nd;
  int64_t numel = 1;
  int k = 0;
  for (const cJSON *d = sh->child; d; d = d->next, k++) {
    uint64_t v;
    if (!st_json_u53(d, &v)) {
      if (cJSON_IsNumber(d))
        return lm_error(LM_ERR_FORMAT, "%s: tensor '%s': shape[%d] = %g is not a non-negative integer", p, nm, k,
                        d->valuedouble);
      return lm_error(LM_ERR_FORMAT, "%s: tensor '%s': shape[%d] is %s, expected an integer", p, nm, k,
                      st_json_type(d));
    }
    t->shape[k] = (int64_t)v;
    if (__builtin_mul_overflow(numel, (int64_t)v, &numel))
      return lm_error(LM_ERR_FORMAT, "%s: tensor '%s': shape product overflows", p, nm);
  }
  int64_t nbytes;
  if (__builtin_mul_overflow(numel, (int64_t)st_dtypes[t->dtype].size, &nbytes))
    return lm_error(LM_ERR_FORMAT, "%s: tensor '%s': shape product overflows", p, nm);
  t->numel = numel;
  if (!cJSON_IsArray(of) || cJSON_GetArraySize(of) != 2)
    return lm_error(LM_ERR_FORMAT, "%s: tensor '%s': \"data_offsets\" must be [begin, end]", p, nm);
  if (!st_json_u53(of->child, &t->begin) || !st_json_u53(of->child->next, &t->end))
    return lm_error(LM_ERR_FORMAT, "%s: tensor '%s': \"data_offsets\" must hold two non-negative integers", p, nm);
  if (t->begin > t->end || t->end > f->data_len)
    return lm_error(LM_ERR_FORMAT,
                    "%s: tensor '%s': data_offsets [%llu, %llu] outside the data buffer of %llu bytes", p, nm,
                    (unsigned long long)t->begin, (unsigned long long)t->end, (unsigned long long)f->data_len);
  if (t->end - t->begin != (uint64_t)nbytes)
    return lm_error(LM_ERR_FORMAT, "%s: tensor '%s': data_offsets span %llu bytes but %s of %lld elements needs %lld",
                    p, nm, (unsigned long long)(t->end - t->begin), st_dtypes[t->dtype].name, (long long)numel,
                    (long long)nbytes);
  return LM_OK;
}

static lm_status st_parse_meta(lm_st_file *f, const cJSON *m) {
  if (!cJSON_IsObject(m))
    return lm_error(LM_ERR_FORMAT, "%s: \"__metadata__\" is %s, expected an object", f->path, st_json_type(m));
  int n = cJSON_GetArraySize(m);
  f->meta = calloc((size_t)n * 2 + 1, sizeof *f->meta);
  if (!f->meta) return lm_error(LM_ERR_NOMEM, "%s: out of memory", f->path);
  for (const cJSON *e = m->child; e; e = e->next) {
    if (!cJSON_IsString(e))
      return lm_error(LM_ERR_FORMAT, "%s: __metadata__ \"%s\" is %s, expected a string", f->path, e->string,
                      st_json_type(e));
    f->meta[2 * f->n_meta] = lm_strdup(e->string);
    f->meta[2 * f->n_meta + 1] = lm_strdup(e->valuestring);
    f->n_meta++;  /* counted before the check so lm_st_close frees a half-made pair */
    if (!f->meta[2 * f->n_meta - 2] || !f->meta[2 * f->n_meta - 1]) return LM_ERR_NOMEM;
  }
  return LM_OK;
}

/* Parses and validates the header of the file image f->... (base, len). */
static lm_status st_parse(lm_st_file *f, const uint8_t *base, size_t len) {
  const char *p = f->path;
  if (len < 8) return lm_error(LM_ERR_FORMAT, "%s: %zu bytes, too short for a safetensors file (needs an 8-byte header length)", p, len);
  uint64_t hlen = 0;
  for (int b = 7; b >= 0; b--) hlen = hlen << 8 | base[b];
  if (hlen > LM_ST_MAX_HEADER)
    return lm_error(LM_ERR_FORMAT, "%s: header length %llu is absurd (limit %llu bytes); not a safetensors file?", p,
                    (unsigned long long)hlen, (unsigned long long)LM_ST_MAX_HEADER);
  if (hlen > len - 8)
    return lm_error(LM_ERR_FORMAT, "%s: header length %llu exceeds the file size %zu (truncated file?)", p,
                    (unsigned long long)hlen, len);
  const char *hdr = (const char *)base + 8;
  f->data = base + 8 + hlen;
  f->data_len = len - 8 - hlen;

  const char *end = NULL;
  cJSON *root = cJSON_ParseWithLengthOpts(hdr, (size_t)hlen, &end, 0);
  if (!root) {
    size_t at = (end && end >= hdr && end <= hdr + hlen) ? (size_t)(end - hdr) : 0;
    return lm_error(LM_ERR_FORMAT, "%s: header is not valid JSON (error near byte %zu of %llu)", p, at,
                    (unsigned long long)hlen);
  }
  lm_status st = LM_OK;
  /* Only whitespace may follow the object: writers pad with spaces for alignment. */
  for (const char *q = end; q < hdr + hlen; q++)
    if (*q != ' ' && *q != '\t' && *q != '\n' && *q != '\r') {
      st = lm_error(LM_ERR_FORMAT, "%s: header has trailing bytes after the JSON object (at byte %zu)", p,
                    (size_t)(q - hdr));
      goto out;
    }
  if (!cJSON_IsObject(root)) {
    st = lm_error(LM_ERR_FORMAT, "%s: header is %s, expected a JSON object", p, st_json_type(root));
    goto out;
  }
  int n = 0;
  for (const cJSON *e = root->child; e; e = e->next) n += strcmp(e->string, "__metadata__") != 0;
  f->t = calloc((size_t)n + 1, sizeof *f->t);
  f->by_name = calloc((size_t)n + 1, sizeof *f->by_name);
  if (!f->t || !f->by_name) { st = lm_error(LM_ERR_NOMEM, "%s: out of memory for %d tensors", p, n); goto out; }
  int seen_meta = 0;
  for (const cJSON *e = root->child; e; e = e->next) {
    if (strcmp(e->string, "__metadata__") == 0) {
      if (seen_meta++) { st = lm_error(LM_ERR_FORMAT, "%s: duplicate \"__metadata__\"", p); goto out; }
      if ((st = st_parse_meta(f, e)) != LM_OK) goto out;
      continue;
    }
    st_tensor *t = &f->t[f->n];
    if ((st = st_parse_tensor(f, e, t)) != LM_OK) goto out;
    if (!(t->name = lm_strdup(e->string))) { st = LM_ERR_NOMEM; goto out; }
    f->n++;
  }
  const st_tensor **ord = malloc(((size_t)f->n + 1) * sizeof *ord);
  if (!ord) { st = lm_error(LM_ERR_NOMEM, "%s: out of memory", p); goto out; }
  for (int i = 0; i < f->n; i++) ord[i] = &f->t[i];
  qsort(ord, (size_t)f->n, sizeof *ord, st_cmp_name);
  for (int i = 0; i < f->n; i++) f->by_name[i] = (int)(ord[i] - f->t);
  for (int i = 1; i < f->n && st == LM_OK; i++)
    if (strcmp(ord[i - 1]->name, ord[i]->name) == 0)
      st = lm_error(LM_ERR_FORMAT, "%s: duplicate tensor name '%s'", p, ord[i]->name);
  /* Overlap check in offset order; empty tensors occupy no bytes. */
  if (st == LM_OK) qsort(ord, (size_t)f->n, sizeof *ord, st_cmp_begin);
  const st_tensor *prev = NULL;
  for (int i = 0; i < f->n && st == LM_OK; i++) {
    const st_tensor *t = ord[i];
    if (t->begin == t->end) continue;
    if (prev && t->begin < prev->end)
      st = lm_error(LM_ERR_FORMAT, "%s: tensors '%s' [%llu, %llu) and '%s' [%llu, %llu) overlap", p, prev->name,
                    (unsigned long long)prev->begin, (unsigned long long)prev->end, t->name,
                    (unsigned long long)t->begin, (unsigned long long)t->end);
    prev = t;
  }
  free(ord);
out:
  cJSON_Delete(root);
  return st;
}

static lm_status st_new(lm_st_file **out, const char *name) {
  *out = NULL;
  lm_st_file *f = calloc(1, sizeof *f);
  if (!f) return lm_error(LM_ERR_NOMEM, "%s: out of memory", name);
  if (!(f->path = lm_strdup(name ? name : "<memory>"))) { free(f); return LM_ERR_NOMEM; }
  *out = f;
  return LM_OK;
}

lm_status lm_st_open_mem(lm_st_file **out, const void *data, size_t len, const char *name) {
  lm_st_file *f;
  if (!out) return lm_error(LM_ERR_ARG, "lm_st_open_mem: NULL out");
  lm_status st = st_new(&f, name ? name : "<memory>");
  if (st) return st;
  if (!data && len) { lm_st_close(f); return lm_error(LM_ERR_ARG, "lm_st_open_mem: NULL data"); }
  st = st_parse(f, data, len);
  if (st) { lm_st_close(f); return st; }
  *out = f;
  return LM_OK;
}

lm_status lm_st_open(lm_st_file **out, const char *path) {
  if (!out || !path) return lm_error(LM_ERR_ARG, "lm_st_open: NULL argument");
  *out = NULL;
  lm_st_file *f;
  lm_status st = st_new(&f, path);
  if (st) return st;
  if ((st = lm_mmap_open(&f->map, path)) != LM_OK) { lm_st_close(f); return st; }
  st = st_parse(f, f->map.data, f->map.len);
  if (st) { lm_st_close(f); return st; }
  *out = f;
  return LM_OK;
}

/* ------------------------------------------------------------------ accessors */
static int st_ok(const lm_st_file *f, int i) { return f && i >= 0 && i < f->n; }

int lm_st_count(const lm_st_file *f) { return f ? f->n : 0; }
const char *lm_st_name(const lm_st_file *f, int i) { return st_ok(f, i) ? f->t[i].name : NULL; }
int lm_st_ndim(const lm_st_file *f, int i) { return st_ok(f, i) ? f->t[i].ndim : -1; }
const int64_t *lm_st_shape(const lm_st_file *f, int i) { return st_ok(f, i) ? f->t[i].shape : NULL; }
int64_t lm_st_numel(const lm_st_file *f, int i) { return st_ok(f, i) ? f->t[i].numel : -1; }
const char *lm_st_dtype(const lm_st_file *f, int i) { return st_ok(f, i) ? st_dtypes[f->t[i].dtype].name : NULL; }

const void *lm_st_data(const lm_st_file *f, int i, size_t *nbytes) {
  if (!st_ok(f, i)) { if (nbytes) *nbytes = 0; return NULL; }
  if (nbytes) *nbytes = (size_t)(f->t[i].end - f->t[i].begin);
  return f->data + f->t[i].begin;
}

int lm_st_find(const lm_st_file *f, const char *name) {
  if (!f || !name) return -1;
  int lo = 0, hi = f->n - 1;
  while (lo <= hi) {
    int mid = lo + (hi - lo) / 2;
    int c = strcmp(name, f->t[f->by_name[mid]].name);
    if (c == 0) return f->by_name[mid];
    if (c < 0) hi = mid - 1; else lo = mid + 1;
  }
  return -1;
}

const char *lm_st_meta(const lm_st_file *f, const char *key) {
  if (!f || !key) return NULL;
  for (int i = 0; i < f->n_meta; i++)
    if (strcmp(f->meta[2 * i], key) == 0) return f->meta[2 * i + 1];
  return NULL;
}

/* ------------------------------------------------------------------ conversion */
static inline float st_f32_bits(uint32_t u) { float x; memcpy(&x, &u, 4); return x; }
static inline uint32_t st_bits_f32(float x) { uint32_t u; memcpy(&u, &x, 4); return u; }

/* IEEE half -> float without tables or branches the compiler can't vectorise:
 * placing the 15 exponent+mantissa bits at the float's position and scaling by
 * 2^112 (the bias difference) is exact for normals and subnormals alike;
 * Inf/NaN keep their mantissa with an all-ones exponent. */
static inline float st_f16_to_f32(uint16_t h) {
  uint32_t em = h & 0x7fffu, sign = (uint32_t)(h & 0x8000u) << 16;
  float v = st_f32_bits(em << 13) * 0x1p112f;
  uint32_t bits = em >= 0x7c00u ? ((em << 13) | 0x7f800000u) : st_bits_f32(v);
  return st_f32_bits(bits | sign);
}

/* Converts n elements of dtype dt from unaligned little-endian bytes. */
static void st_convert(int dt, const uint8_t *src, int64_t n, float *dst) {
  switch (dt) {
    case ST_F32: memcpy(dst, src, (size_t)n * 4); break;
    case ST_F16:
      for (int64_t k = 0; k < n; k++) { uint16_t h; memcpy(&h, src + 2 * k, 2); dst[k] = st_f16_to_f32(h); }
      break;
    case ST_BF16:
      for (int64_t k = 0; k < n; k++) { uint16_t h; memcpy(&h, src + 2 * k, 2); dst[k] = st_f32_bits((uint32_t)h << 16); }
      break;
    case ST_F64:
      for (int64_t k = 0; k < n; k++) { double d; memcpy(&d, src + 8 * k, 8); dst[k] = (float)d; }
      break;
  }
}

static void st_fmt_shape(char *buf, size_t cap, const int64_t *s, int nd) {
  size_t o = 0;
  o += (size_t)snprintf(buf + o, cap - o, "[");
  for (int k = 0; k < nd && o < cap; k++) o += (size_t)snprintf(buf + o, cap - o, k ? ", %lld" : "%lld", (long long)s[k]);
  if (o < cap) snprintf(buf + o, cap - o, "]");
}

/* Asks the kernel to map the pages of [p, p+n) ahead of the copy: one call
 * instead of a page fault every few pages (harmless no-op where unsupported). */
static void st_prefetch(const lm_st_file *f, const uint8_t *p, size_t n) {
  if (!f->map.data || n < ((size_t)1 << 20)) return;
  uintptr_t a = (uintptr_t)p & ~(uintptr_t)4095, e = (uintptr_t)(p + n);
#ifdef MADV_POPULATE_READ
  if (madvise((void *)a, e - a, MADV_POPULATE_READ) == 0) return;
#endif
  madvise((void *)a, e - a, MADV_WILLNEED);
}

#define ST_TB 32  /* transpose tile: 32x32 floats = 4 KiB in, 4 KiB out */

lm_status lm_st_read_f32(const lm_st_file *f, int i, float *dst, const int64_t *expect_shape, int expect_ndim,
                         int transpose) {
  if (!f) return lm_error(LM_ERR_ARG, "lm_st_read_f32: NULL file");
  if (!st_ok(f, i)) return lm_error(LM_ERR_ARG, "%s: tensor index %d out of range (file has %d)", f->path, i, f->n);
  const st_tensor *t = &f->t[i];
  if (expect_shape) {
    int same = expect_ndim == t->ndim;
    for (int k = 0; same && k < t->ndim; k++) same = expect_shape[k] == t->shape[k];
    if (!same) {
      char have[256], want[256];
      st_fmt_shape(have, sizeof have, t->shape, t->ndim);
      st_fmt_shape(want, sizeof want, expect_shape, expect_ndim < 0 ? 0 : expect_ndim > 16 ? 16 : expect_ndim);
      return lm_error(LM_ERR_FORMAT, "%s: tensor '%s' has shape %s, expected %s", f->path, t->name, have, want);
    }
  }
  if (t->dtype != ST_F32 && t->dtype != ST_F16 && t->dtype != ST_BF16 && t->dtype != ST_F64)
    return lm_error(LM_ERR_UNSUPPORTED, "%s: tensor '%s' has dtype %s; only F32, F16, BF16 and F64 load as fp32",
                    f->path, t->name, st_dtypes[t->dtype].name);
  if (transpose && t->ndim != 2)
    return lm_error(LM_ERR_ARG, "%s: tensor '%s': transpose needs a 2-D tensor, it has %d dims", f->path, t->name,
                    t->ndim);
  if (t->numel == 0) return LM_OK;
  if (!dst) return lm_error(LM_ERR_ARG, "%s: tensor '%s': NULL destination", f->path, t->name);
  const uint8_t *src = f->data + t->begin;
  const int es = st_dtypes[t->dtype].size;
  st_prefetch(f, src, (size_t)(t->end - t->begin));
  if (!transpose) {
    /* Chunks let both threads convert (or copy) at once on big tensors. */
    const int64_t chunk = (int64_t)1 << 18, nchunks = (t->numel + chunk - 1) / chunk;
#pragma omp parallel for schedule(static) if (nchunks > 4)
    for (int64_t c = 0; c < nchunks; c++) {
      int64_t k0 = c * chunk, k1 = k0 + chunk < t->numel ? k0 + chunk : t->numel;
      st_convert(t->dtype, src + k0 * es, k1 - k0, dst + k0);
    }
    return LM_OK;
  }
  /* dst (C, R) = transpose of src (R, C), tile by tile: each tile's source rows
   * are converted into a small buffer, then scattered as contiguous dst runs. */
  const int64_t R = t->shape[0], C = t->shape[1];
  const int64_t nrb = (R + ST_TB - 1) / ST_TB;
#pragma omp parallel for schedule(static) if (t->numel > ((int64_t)1 << 18))
  for (int64_t rb = 0; rb < nrb; rb++) {
    float tile[ST_TB][ST_TB];
    int64_t r0 = rb * ST_TB, r1 = r0 + ST_TB < R ? r0 + ST_TB : R;
    for (int64_t c0 = 0; c0 < C; c0 += ST_TB) {
      int64_t c1 = c0 + ST_TB < C ? c0 + ST_TB : C;
      for (int64_t r = r0; r < r1; r++) st_convert(t->dtype, src + (r * C + c0) * es, c1 - c0, tile[r - r0]);
      for (int64_t c = c0; c < c1; c++)
        for (int64_t r = r0; r < r1; r++) dst[c * R + r] = tile[r - r0][c - c0];
    }
  }
  return LM_OK;
}

/* ------------------------------------------------------------------ writer */
typedef struct { char *p; size_t n, cap; int oom; } st_buf;

static void sb_put(st_buf *b, const char *s, size_t n) {
  if (b->oom) return;
  if (b->n + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->n + n + 1) cap *= 2;
    char *q = realloc(b->p, cap);
    if (!q) { b->oom = 1; return; }
    b->p = q; b->cap = cap;
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = 0;
}
static void sb_str(st_buf *b, const char *s) { sb_put(b, s, strlen(s)); }
static void sb_fmt(st_buf *b, const char *fmt, long long v) {
  char tmp[32];
  int k = snprintf(tmp, sizeof tmp, fmt, v);
  sb_put(b, tmp, (size_t)k);
}
/* A JSON string literal: escapes quotes, backslashes and control bytes; other
 * bytes (UTF-8) pass through. */
static void sb_json_str(st_buf *b, const char *s) {
  sb_put(b, "\"", 1);
  for (const unsigned char *q = (const unsigned char *)s; *q; q++) {
    if (*q == '"' || *q == '\\') { char e[2] = {'\\', (char)*q}; sb_put(b, e, 2); }
    else if (*q < 0x20) sb_fmt(b, "\\u%04llx", *q);
    else sb_put(b, (const char *)q, 1);
  }
  sb_put(b, "\"", 1);
}

static int st_cmp_cstr(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Writes the (shape[1], shape[0]) row-major matrix src transposed, i.e. as the
 * (S0, S1) matrix, through a buffer of a few output rows. */
static int st_write_transposed(FILE *fp, const float *src, int64_t S0, int64_t S1) {
  int64_t rows = ((int64_t)1 << 20) / (S1 > 0 ? S1 : 1);   /* ~4 MiB buffer */
  if (rows < 1) rows = 1;
  if (rows > 64) rows = 64;
  float *buf = malloc((size_t)(rows * S1) * sizeof *buf);
  if (!buf) return -1;
  for (int64_t i0 = 0; i0 < S0; i0 += rows) {
    int64_t i1 = i0 + rows < S0 ? i0 + rows : S0;
    /* out[i][j] = src[j][i]: for each source row j, the i-run is contiguous;
     * the rows-by-ST_TB band of buf being written stays in cache. */
    for (int64_t j0 = 0; j0 < S1; j0 += ST_TB) {
      int64_t j1 = j0 + ST_TB < S1 ? j0 + ST_TB : S1;
      for (int64_t j = j0; j < j1; j++)
        for (int64_t i = i0; i < i1; i++) buf[(i - i0) * S1 + j] = src[j * S0 + i];
    }
    size_t cnt = (size_t)((i1 - i0) * S1);
    if (fwrite(buf, sizeof *buf, cnt, fp) != cnt) { free(buf); return -1; }
  }
  free(buf);
  return 0;
}

lm_status lm_st_write(const char *path, const lm_st_entry *e, int n, const char *const *meta) {
  if (!path || n < 0 || (n > 0 && !e)) return lm_error(LM_ERR_ARG, "lm_st_write: bad arguments");
  int64_t *nbytes = calloc((size_t)n + 1, sizeof *nbytes);
  const char **names = calloc((size_t)n + 1, sizeof *names);
  st_buf h = {0};
  lm_status st = LM_OK;
  if (!nbytes || !names) { st = lm_error(LM_ERR_NOMEM, "%s: out of memory", path); goto out; }
  for (int i = 0; i < n; i++) {
    const lm_st_entry *x = &e[i];
    if (!x->name || strcmp(x->name, "__metadata__") == 0) {
      st = lm_error(LM_ERR_ARG, "%s: tensor %d: %s name", path, i, x->name ? "reserved" : "missing");
      goto out;
    }
    if (x->ndim < 0 || x->ndim > 4) {
      st = lm_error(LM_ERR_ARG, "%s: tensor '%s': ndim %d outside 0..4", path, x->name, x->ndim);
      goto out;
    }
    if (x->transpose && x->ndim != 2) {
      st = lm_error(LM_ERR_ARG, "%s: tensor '%s': transpose needs 2 dims, has %d", path, x->name, x->ndim);
      goto out;
    }
    int64_t numel = 1;
    for (int k = 0; k < x->ndim; k++)
      if (x->shape[k] < 0 || __builtin_mul_overflow(numel, x->shape[k], &numel)) {
        st = lm_error(LM_ERR_ARG, "%s: tensor '%s': bad shape[%d] = %lld", path, x->name, k, (long long)x->shape[k]);
        goto out;
      }
    if (numel > INT64_MAX / 4) { st = lm_error(LM_ERR_ARG, "%s: tensor '%s': too large", path, x->name); goto out; }
    if (numel > 0 && !x->data) { st = lm_error(LM_ERR_ARG, "%s: tensor '%s': NULL data", path, x->name); goto out; }
    nbytes[i] = numel * 4;
    names[i] = x->name;
  }
  qsort(names, (size_t)n, sizeof *names, st_cmp_cstr);
  for (int i = 1; i < n; i++)
    if (strcmp(names[i - 1], names[i]) == 0) {
      st = lm_error(LM_ERR_ARG, "%s: duplicate tensor name '%s'", path, names[i]);
      goto out;
    }

  /* Header: metadata first (as Hugging Face writes it), then tensors in order. */
  int has_format = 0;
  for (int k = 0; meta && meta[k]; k += 2) {
    if (!meta[k + 1]) { st = lm_error(LM_ERR_ARG, "%s: metadata key '%s' has no value", path, meta[k]); goto out; }
    has_format |= strcmp(meta[k], "format") == 0;
  }
  sb_str(&h, "{\"__metadata__\":{");
  if (!has_format) sb_str(&h, "\"format\":\"pt\"");
  for (int k = 0; meta && meta[k]; k += 2) {
    if (k || !has_format) sb_str(&h, ",");
    sb_json_str(&h, meta[k]); sb_str(&h, ":"); sb_json_str(&h, meta[k + 1]);
  }
  sb_str(&h, "}");
  int64_t off = 0;
  for (int i = 0; i < n; i++) {
    sb_str(&h, ",");
    sb_json_str(&h, e[i].name);
    sb_str(&h, ":{\"dtype\":\"F32\",\"shape\":[");
    for (int k = 0; k < e[i].ndim; k++) sb_fmt(&h, k ? ",%lld" : "%lld", (long long)e[i].shape[k]);
    sb_fmt(&h, "],\"data_offsets\":[%lld", (long long)off);
    off += nbytes[i];
    sb_fmt(&h, ",%lld]}", (long long)off);
  }
  sb_str(&h, "}");
  while (h.n % 8) sb_str(&h, " ");   /* 8 + header is then a multiple of 8 too */
  if (h.oom) { st = lm_error(LM_ERR_NOMEM, "%s: out of memory building the header", path); goto out; }

  lm_atomic_file af;
  if ((st = lm_atomic_open(&af, path)) != LM_OK) goto out;
  setvbuf(af.f, NULL, _IOFBF, (size_t)1 << 20);
  uint8_t len8[8];
  for (int b = 0; b < 8; b++) len8[b] = (uint8_t)((uint64_t)h.n >> (8 * b));
  int bad = fwrite(len8, 1, 8, af.f) != 8 || fwrite(h.p, 1, h.n, af.f) != h.n;
  for (int i = 0; i < n && !bad; i++) {
    if (nbytes[i] == 0) continue;
    if (e[i].transpose) bad = st_write_transposed(af.f, e[i].data, e[i].shape[0], e[i].shape[1]) != 0;
    else bad = fwrite(e[i].data, 1, (size_t)nbytes[i], af.f) != (size_t)nbytes[i];
  }
  if (bad) {
    st = lm_error(LM_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    lm_atomic_abort(&af);
    goto out;
  }
  st = lm_atomic_commit(&af);
out:
  free(nbytes); free(names); free(h.p);
  return st;
}

/* ------------------------------------------------------------------ sharded index */

void lm_st_index_free(lm_st_index *x) {
  if (!x) return;
  for (int i = 0; i < x->n_files; i++) free(x->files[i]);
  for (int64_t i = 0; i < x->n_entries; i++) free(x->names[i]);
  free(x->files); free(x->names); free(x->file_of);
  memset(x, 0, sizeof *x);
}

static int idx_cmp_ptr(const void *a, const void *b, void *names) {
  char **nm = names;
  return strcmp(nm[*(const int64_t *)a], nm[*(const int64_t *)b]);
}

/* sorts names (and file_of alongside) through a permutation */
static lm_status idx_sort(lm_st_index *x, const char *name) {
  int64_t n = x->n_entries;
  int64_t *perm = malloc((size_t)(n ? n : 1) * sizeof *perm);
  char **nm = malloc((size_t)(n ? n : 1) * sizeof *nm);
  int *fo = malloc((size_t)(n ? n : 1) * sizeof *fo);
  if (!perm || !nm || !fo) { free(perm); free(nm); free(fo); return lm_error(LM_ERR_NOMEM, "out of memory"); }
  for (int64_t i = 0; i < n; i++) perm[i] = i;
  qsort_r(perm, (size_t)n, sizeof *perm, idx_cmp_ptr, x->names);
  for (int64_t i = 0; i < n; i++) { nm[i] = x->names[perm[i]]; fo[i] = x->file_of[perm[i]]; }
  free(perm); free(x->names); free(x->file_of);
  x->names = nm; x->file_of = fo;
  for (int64_t i = 1; i < n; i++)   /* cJSON keeps duplicate keys: refuse them */
    if (!strcmp(nm[i - 1], nm[i])) return lm_error(LM_ERR_FORMAT, "%s: weight_map lists tensor '%s' twice", name, nm[i]);
  return LM_OK;
}

lm_status lm_st_index_parse(lm_st_index *x, const char *json, size_t len, const char *name) {
  memset(x, 0, sizeof *x);
  const char *end = NULL;
  cJSON *root = cJSON_ParseWithLengthOpts(json ? json : "", len, &end, 0);
  if (!root) return lm_error(LM_ERR_FORMAT, "%s: not valid JSON", name);
  lm_status st = LM_OK;
  const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
  if (!cJSON_IsObject(root)) { st = lm_error(LM_ERR_FORMAT, "%s: expected a JSON object", name); goto out; }
  for (const cJSON *k = root->child; k; k = k->next)
    if (strcmp(k->string, "metadata") && strcmp(k->string, "weight_map")) {
      st = lm_error(LM_ERR_FORMAT, "%s: unknown key \"%.60s\" (metadata, weight_map)", name, k->string);
      goto out;
    }
  if (!cJSON_IsObject(map)) { st = lm_error(LM_ERR_FORMAT, "%s: weight_map: missing or not an object", name); goto out; }
  int64_t n = cJSON_GetArraySize(map);
  x->names = calloc((size_t)(n ? n : 1), sizeof *x->names);
  x->file_of = calloc((size_t)(n ? n : 1), sizeof *x->file_of);
  if (!x->names || !x->file_of) { st = lm_error(LM_ERR_NOMEM, "out of memory"); goto out; }
  for (const cJSON *e = map->child; e; e = e->next) {
    if (!cJSON_IsString(e) || !e->valuestring[0]) {
      st = lm_error(LM_ERR_FORMAT, "%s: weight_map[\"%.80s\"]: expected a shard file name", name, e->string);
      goto out;
    }
    const char *f = e->valuestring;
    if (strchr(f, '/') || strchr(f, '\\') || !strcmp(f, ".") || !strcmp(f, "..")) {
      st = lm_error(LM_ERR_FORMAT, "%s: weight_map[\"%.80s\"] = \"%.80s\": a shard must be a file in the same directory",
                    name, e->string, f);
      goto out;
    }
    int fi = 0;
    while (fi < x->n_files && strcmp(x->files[fi], f)) fi++;
    if (fi == x->n_files) {
      if (x->n_files == LM_ST_MAX_SHARDS) { st = lm_error(LM_ERR_UNSUPPORTED, "%s: more than %d shards", name, LM_ST_MAX_SHARDS); goto out; }
      char **nf = realloc(x->files, (size_t)(x->n_files + 1) * sizeof *nf);
      if (!nf) { st = lm_error(LM_ERR_NOMEM, "out of memory"); goto out; }
      x->files = nf;
      if (!(x->files[x->n_files] = strdup(f))) { st = lm_error(LM_ERR_NOMEM, "out of memory"); goto out; }
      x->n_files++;
    }
    if (!(x->names[x->n_entries] = strdup(e->string))) { st = lm_error(LM_ERR_NOMEM, "out of memory"); goto out; }
    x->file_of[x->n_entries++] = fi;
  }
  if (!x->n_entries) { st = lm_error(LM_ERR_FORMAT, "%s: weight_map is empty", name); goto out; }
  st = idx_sort(x, name);
out:
  cJSON_Delete(root);
  if (st) lm_st_index_free(x);
  return st;
}

int64_t lm_st_index_find(const lm_st_index *x, const char *tensor) {
  int64_t lo = 0, hi = x->n_entries - 1;
  while (lo <= hi) {
    int64_t mid = lo + (hi - lo) / 2;
    int c = strcmp(tensor, x->names[mid]);
    if (c == 0) return mid;
    if (c < 0) hi = mid - 1; else lo = mid + 1;
  }
  return -1;
}
