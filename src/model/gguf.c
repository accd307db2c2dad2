/* gguf.c — the GGUF v3 reader and writer (gguf.h has the layout).
 *
 * Reading: one pass over the header with a bounds-checked cursor. Every count
 * is checked against the bytes left before anything is allocated for it (a
 * key/value needs at least 12 bytes, a tensor info 24, an array element its
 * size), every string length against the bytes left, every tensor's
 * dimensions against overflow, its type against the table below, its offset
 * against the alignment and its bytes against the end of the file; tensors
 * may not overlap. After open succeeds, every accessor is a plain lookup.
 *
 * Block formats: one table (TYPES) of ggml's types lmkit knows, with the
 * size of a block, its dequantizer and, for the types lmkit writes, its
 * quantizer. Each follows ggml's reference code (ggml-quants.c:
 * dequantize_row_*, quantize_row_*_ref) operation by operation, so that the
 * numpy references in tests/reference/test_gguf.py equal it bit for bit;
 * that is also why floating-point contraction (a*b - c as one FMA) is off in
 * this file. */
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif
#include "model/gguf.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <unistd.h>
#include "base/base.h"
#include "kernels/quant.h"

static inline uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline void wr16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static inline float f16at(const uint8_t *p) { return lm_f16_to_f32(rd16(p)); }

/* ------------------------------------------------------------------ block formats */

static void deq_f32(const uint8_t *b, float *y) { memcpy(y, b, 4); }
static void deq_f16(const uint8_t *b, float *y) { *y = f16at(b); }
static void deq_bf16(const uint8_t *b, float *y) {
  uint32_t x = (uint32_t)rd16(b) << 16;
  memcpy(y, &x, 4);
}

/* Q8_0: f16 d, int8 qs[32]; x = qs * d */
static void deq_q8_0(const uint8_t *b, float *y) {
  float d = f16at(b);
  for (int j = 0; j < 32; j++) y[j] = (float)(int8_t)b[2 + j] * d;
}

/* Q4_0: f16 d, u8 qs[16]; x[j] = ((qs[j] & 15) - 8) d, x[j+16] = ((qs[j] >> 4) - 8) d */
static void deq_q4_0(const uint8_t *b, float *y) {
  float d = f16at(b);
  for (int j = 0; j < 16; j++) {
    y[j] = (float)((b[2 + j] & 0x0f) - 8) * d;
    y[j + 16] = (float)((b[2 + j] >> 4) - 8) * d;
  }
}

/* the 6-bit scale and min of sub-block j of a Q4_K/Q5_K block (ggml's get_scale_min_k4) */
static void scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m) {
  if (j < 4) {
    *d = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *d = (uint8_t)((q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4));
    *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

/* Q4_K (256 values): f16 d, f16 dmin, u8 scales[12], u8 qs[128]; 8 sub-blocks of 32,
 * x = d*sc * q - dmin*m */
static void deq_q4_k(const uint8_t *b, float *y) {
  float d = f16at(b), min = f16at(b + 2);
  const uint8_t *sc = b + 4, *q = b + 16;
  for (int j = 0, is = 0; j < 256; j += 64, is += 2, q += 32) {
    uint8_t s, m;
    scale_min_k4(is, sc, &s, &m);
    float d1 = d * s, m1 = min * m;
    scale_min_k4(is + 1, sc, &s, &m);
    float d2 = d * s, m2 = min * m;
    for (int l = 0; l < 32; l++) *y++ = d1 * (float)(q[l] & 0xf) - m1;
    for (int l = 0; l < 32; l++) *y++ = d2 * (float)(q[l] >> 4) - m2;
  }
}

/* Q5_K: f16 d, f16 dmin, u8 scales[12], u8 qh[32], u8 qs[128]; the fifth bit from qh */
static void deq_q5_k(const uint8_t *b, float *y) {
  float d = f16at(b), min = f16at(b + 2);
  const uint8_t *sc = b + 4, *qh = b + 16, *ql = b + 48;
  uint8_t u1 = 1, u2 = 2;
  for (int j = 0, is = 0; j < 256; j += 64, is += 2, ql += 32, u1 <<= 2, u2 <<= 2) {
    uint8_t s, m;
    scale_min_k4(is, sc, &s, &m);
    float d1 = d * s, m1 = min * m;
    scale_min_k4(is + 1, sc, &s, &m);
    float d2 = d * s, m2 = min * m;
    for (int l = 0; l < 32; l++) *y++ = d1 * (float)((ql[l] & 0xf) + (qh[l] & u1 ? 16 : 0)) - m1;
    for (int l = 0; l < 32; l++) *y++ = d2 * (float)((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
  }
}

/* Q6_K: u8 ql[128], u8 qh[64], int8 scales[16], f16 d; x = d * sc * (q - 32) */
static void deq_q6_k(const uint8_t *b, float *y) {
  const uint8_t *ql = b, *qh = b + 128;
  const int8_t *sc = (const int8_t *)(b + 192);
  float d = f16at(b + 208);
  for (int n = 0; n < 256; n += 128, y += 128, ql += 64, qh += 32, sc += 8)
    for (int l = 0; l < 32; l++) {
      int is = l / 16;
      int q1 = (int8_t)((ql[l] & 0xf) | (((qh[l] >> 0) & 3) << 4)) - 32;
      int q2 = (int8_t)((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) - 32;
      int q3 = (int8_t)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      int q4 = (int8_t)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      y[l] = d * (float)sc[is] * (float)q1;
      y[l + 32] = d * (float)sc[is + 2] * (float)q2;
      y[l + 64] = d * (float)sc[is + 4] * (float)q3;
      y[l + 96] = d * (float)sc[is + 6] * (float)q4;
    }
}

/* ---- the same values as A8 blocks (quant.h LM_QW_A8: w = a_h q + c_h per half of 32), for the
 * kernels; q < 128, a and c the products that the dequantizers above round */

/* one A8 block: scales a0, a1, offsets c0, c1, values q[32] */
static void a8_put(uint8_t *o, float a0, float a1, float c0, float c1, const uint8_t *q) {
  memcpy(o, &a0, 4); memcpy(o + 4, &a1, 4); memcpy(o + 8, &c0, 4); memcpy(o + 12, &c1, 4);
  memcpy(o + 16, q, 32);
}

static void a8_q4_0(const uint8_t *b, uint8_t *o) {
  float d = f16at(b);
  uint8_t q[32];
  for (int j = 0; j < 16; j++) { q[j] = b[2 + j] & 0x0f; q[j + 16] = b[2 + j] >> 4; }
  a8_put(o, d, d, -8.0f * d, -8.0f * d, q);
}

/* Q4_K and Q5_K (qh NULL): sub-block j of 32 is x = (d * sc_j) q - dmin * m_j */
static void a8_k45(const uint8_t *b, const uint8_t *qh, const uint8_t *qs, uint8_t *o) {
  float d = f16at(b), min = f16at(b + 2);
  for (int j = 0; j < 8; j++, o += LM_A8_BYTES) {
    uint8_t s, m, q[32];
    scale_min_k4(j, b + 4, &s, &m);
    const uint8_t *ql = qs + 32 * (j / 2);
    for (int l = 0; l < 32; l++) q[l] = (uint8_t)((j % 2 ? ql[l] >> 4 : ql[l] & 0xf) + (qh && (qh[l] >> j & 1) ? 16 : 0));
    float a = d * s, c = -(min * m);
    a8_put(o, a, a, c, c, q);
  }
}
static void a8_q4_k(const uint8_t *b, uint8_t *o) { a8_k45(b, NULL, b + 16, o); }
static void a8_q5_k(const uint8_t *b, uint8_t *o) { a8_k45(b, b + 16, b + 48, o); }

/* Q6_K: value 128 n + 32 k + l is q - 32 times d * sc[8 n + 2 k + l / 16], q its 6 bits */
static void a8_q6_k(const uint8_t *b, uint8_t *o) {
  const uint8_t *ql = b, *qh = b + 128;
  const int8_t *sc = (const int8_t *)(b + 192);
  float d = f16at(b + 208);
  for (int g = 0; g < 8; g++, o += LM_A8_BYTES) {
    int n = g / 4, k = g % 4;
    uint8_t q[32];
    for (int l = 0; l < 32; l++) {
      uint8_t lo = ql[64 * n + l + (k % 2 ? 32 : 0)];
      q[l] = (uint8_t)((k < 2 ? lo & 0xf : lo >> 4) | ((qh[32 * n + l] >> (2 * k)) & 3) << 4);
    }
    float a0 = d * (float)sc[8 * n + 2 * k], a1 = d * (float)sc[8 * n + 2 * k + 1];
    a8_put(o, a0, a1, -32.0f * a0, -32.0f * a1, q);
  }
}

/* ---- as A4 blocks (quant.h LM_QW_A4: w = a q + c over the whole block, q 4 bits) */

static void a4_put(uint8_t *o, float a, float c, const uint8_t *q) {
  memcpy(o, &a, 4); memcpy(o + 4, &c, 4);
  for (int j = 0; j < 16; j++) o[8 + j] = (uint8_t)(q[j] | q[j + 16] << 4);
}

static void a4_q4_0(const uint8_t *b, uint8_t *o) {
  float d = f16at(b);
  uint8_t q[32];
  for (int j = 0; j < 16; j++) { q[j] = b[2 + j] & 0x0f; q[j + 16] = b[2 + j] >> 4; }
  a4_put(o, d, -8.0f * d, q);
}

static void a4_q4_k(const uint8_t *b, uint8_t *o) {
  float d = f16at(b), min = f16at(b + 2);
  for (int j = 0; j < 8; j++, o += LM_A4_BYTES) {
    uint8_t s, m, q[32];
    scale_min_k4(j, b + 4, &s, &m);
    const uint8_t *ql = b + 16 + 32 * (j / 2);
    for (int l = 0; l < 32; l++) q[l] = j % 2 ? ql[l] >> 4 : ql[l] & 0xf;
    a4_put(o, d * s, -(min * m), q);
  }
}

static void q_f32(const float *x, uint8_t *b) { memcpy(b, x, 4); }
static void q_f16(const float *x, uint8_t *b) { wr16(b, lm_f32_to_f16(*x)); }
static void q_bf16(const float *x, uint8_t *b) {   /* ggml_compute_fp32_to_bf16: nearest even, nan quiet */
  uint32_t u;
  memcpy(&u, x, 4);
  wr16(b, (u & 0x7fffffffu) > 0x7f800000u ? (uint16_t)((u >> 16) | 64) : (uint16_t)((u + (0x7fffu + ((u >> 16) & 1))) >> 16));
}

/* quantize_row_q8_0_ref, shared with the kernels' activation blocks */
static void q_q8_0(const float *x, uint8_t *b) { lm_quant_act_q8(x, 32, b); }

/* quantize_row_q4_0_ref: d = (the value of largest magnitude) / -8, q = min(15, (int8)(x / d + 8.5)) */
static void q_q4_0(const float *x, uint8_t *b) {
  float amax = 0, max = 0;
  for (int j = 0; j < 32; j++)
    if (amax < fabsf(x[j])) { amax = fabsf(x[j]); max = x[j]; }
  float d = max / -8.0f, id = d != 0 ? 1.0f / d : 0.0f;
  wr16(b, lm_f32_to_f16(d));
  for (int j = 0; j < 16; j++) {
    int8_t a = (int8_t)(x[j] * id + 8.5f), c = (int8_t)(x[16 + j] * id + 8.5f);
    uint8_t lo = (uint8_t)(a < 15 ? a : 15), hi = (uint8_t)(c < 15 ? c : 15);
    b[2 + j] = (uint8_t)(lo | hi << 4);
  }
}

typedef struct {
  int type; const char *name;
  int64_t elems; size_t bytes;
  void (*deq)(const uint8_t *block, float *y);
  void (*quant)(const float *x, uint8_t *block);   /* NULL: lmkit does not write it */
  void (*a8)(const uint8_t *block, uint8_t *out);  /* elems / 32 A8 blocks; NULL: not kept as A8 */
  void (*a4)(const uint8_t *block, uint8_t *out);  /* elems / 32 A4 blocks; NULL: not kept as A4 */
} type_info;

static const type_info TYPES[] = {
    {LM_GGML_F32, "F32", 1, 4, deq_f32, q_f32, NULL, NULL},
    {LM_GGML_F16, "F16", 1, 2, deq_f16, q_f16, NULL, NULL},
    {LM_GGML_BF16, "BF16", 1, 2, deq_bf16, q_bf16, NULL, NULL},
    {LM_GGML_Q8_0, "Q8_0", 32, 34, deq_q8_0, q_q8_0, NULL, NULL},   /* w + 128 would not stay below 128 */
    {LM_GGML_Q4_0, "Q4_0", 32, 18, deq_q4_0, q_q4_0, a8_q4_0, a4_q4_0},
    {LM_GGML_Q4_K, "Q4_K", 256, 144, deq_q4_k, NULL, a8_q4_k, a4_q4_k},
    {LM_GGML_Q5_K, "Q5_K", 256, 176, deq_q5_k, NULL, a8_q5_k, NULL},
    {LM_GGML_Q6_K, "Q6_K", 256, 210, deq_q6_k, NULL, a8_q6_k, NULL},
};
#define N_TYPES (sizeof TYPES / sizeof *TYPES)

static const type_info *type_of(int t) {
  for (size_t i = 0; i < N_TYPES; i++)
    if (TYPES[i].type == t) return &TYPES[i];
  return NULL;
}

int lm_ggml_type_by_name(const char *name) {
  for (size_t i = 0; i < N_TYPES; i++)
    if (!strcasecmp(name, TYPES[i].name)) return TYPES[i].type;
  return -1;
}
const char *lm_ggml_type_name(int t) { const type_info *ti = type_of(t); return ti ? ti->name : NULL; }
int64_t lm_ggml_block_elems(int t) { const type_info *ti = type_of(t); return ti ? ti->elems : 0; }
size_t lm_ggml_block_bytes(int t) { const type_info *ti = type_of(t); return ti ? ti->bytes : 0; }

static lm_status unknown_type(int t) {
  char list[200] = "";
  for (size_t i = 0; i < N_TYPES; i++) {
    strcat(list, i ? ", " : "");
    strcat(list, TYPES[i].name);
  }
  return lm_error(LM_ERR_UNSUPPORTED, "ggml tensor type %d is not supported (%s)", t, list);
}

lm_status lm_gguf_dequantize(int type, const void *src, size_t nbytes, float *dst, int64_t n) {
  const type_info *ti = type_of(type);
  if (!ti) return unknown_type(type);
  if (n < 0 || n % ti->elems) return lm_error(LM_ERR_FORMAT, "%s: %lld values are not whole blocks of %lld", ti->name, (long long)n, (long long)ti->elems);
  int64_t nb = n / ti->elems;
  if ((uint64_t)nb > nbytes / ti->bytes) return lm_error(LM_ERR_FORMAT, "%s: %lld blocks need more than %zu bytes", ti->name, (long long)nb, nbytes);
  const uint8_t *s = src;
  #pragma omp parallel for schedule(static) if (nb > 4096)
  for (int64_t i = 0; i < nb; i++) ti->deq(s + (size_t)i * ti->bytes, dst + i * ti->elems);
  return LM_OK;
}

int lm_gguf_a8_ok(int type) { const type_info *ti = type_of(type); return ti && ti->a8; }
int lm_gguf_a4_ok(int type) { const type_info *ti = type_of(type); return ti && ti->a4; }

/* n values of `type` as A8 (a4 0) or A4 (a4 1) blocks */
static lm_status to_kept(int type, int a4, const void *src, size_t nbytes, void *dst, int64_t n) {
  const type_info *ti = type_of(type);
  if (!ti) return unknown_type(type);
  void (*conv)(const uint8_t *, uint8_t *) = a4 ? ti->a4 : ti->a8;
  if (!conv)
    return lm_error(LM_ERR_UNSUPPORTED, "%s blocks cannot be kept as %s (%s can)", ti->name, a4 ? "A4" : "A8",
                    a4 ? "Q4_0, Q4_K" : "Q4_0, Q4_K, Q5_K, Q6_K");
  if (n < 0 || n % ti->elems) return lm_error(LM_ERR_FORMAT, "%s: %lld values are not whole blocks of %lld", ti->name, (long long)n, (long long)ti->elems);
  int64_t nb = n / ti->elems;
  if ((uint64_t)nb > nbytes / ti->bytes) return lm_error(LM_ERR_FORMAT, "%s: %lld blocks need more than %zu bytes", ti->name, (long long)nb, nbytes);
  const uint8_t *s = src;
  uint8_t *d = dst;
  size_t out = (size_t)(ti->elems / 32) * (a4 ? LM_A4_BYTES : LM_A8_BYTES);
  #pragma omp parallel for schedule(static) if (nb > 4096)
  for (int64_t i = 0; i < nb; i++) conv(s + (size_t)i * ti->bytes, d + (size_t)i * out);
  return LM_OK;
}

lm_status lm_gguf_to_a8(int type, const void *src, size_t nbytes, void *dst, int64_t n) { return to_kept(type, 0, src, nbytes, dst, n); }
lm_status lm_gguf_to_a4(int type, const void *src, size_t nbytes, void *dst, int64_t n) { return to_kept(type, 1, src, nbytes, dst, n); }

lm_status lm_gguf_quantize(int type, const float *src, int64_t n, void *dst) {
  const type_info *ti = type_of(type);
  if (!ti || !ti->quant)
    return lm_error(LM_ERR_UNSUPPORTED, "writing tensor type %s is not supported (F32, F16, BF16, Q8_0, Q4_0)", ti ? ti->name : "?");
  if (n < 0 || n % ti->elems) return lm_error(LM_ERR_ARG, "%s: %lld values are not whole blocks of %lld", ti->name, (long long)n, (long long)ti->elems);
  int64_t nb = n / ti->elems;
  uint8_t *d = dst;
  #pragma omp parallel for schedule(static) if (nb > 4096)
  for (int64_t i = 0; i < nb; i++) ti->quant(src + i * ti->elems, d + (size_t)i * ti->bytes);
  return LM_OK;
}

/* ------------------------------------------------------------------ reading */

static const size_t VSIZE[LM_GGUF_NTYPES] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
static const char *const VNAME[LM_GGUF_NTYPES] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool",
                                                  "string", "array", "u64", "i64", "f64"};
const char *lm_gguf_vtype_name(uint32_t t) { return t < LM_GGUF_NTYPES ? VNAME[t] : "?"; }

struct lm_gguf {
  lm_mmap map;
  const uint8_t *buf; size_t len;
  char *name;
  int64_t n_kv, n_t;
  lm_gguf_kv *kv;
  lm_gguf_tensor *t;
  uint32_t align;
  size_t data_off;
};

typedef struct { const uint8_t *p; size_t len, pos; const char *name; } cursor;

static lm_status need(cursor *c, uint64_t n, const char *what) {
  if (n > c->len - c->pos)
    return lm_error(LM_ERR_FORMAT, "%s: truncated: %s needs %llu bytes at offset %zu, %zu left", c->name, what,
                    (unsigned long long)n, c->pos, c->len - c->pos);
  return LM_OK;
}
static lm_status rd_u32(cursor *c, uint32_t *v, const char *what) {
  lm_status st = need(c, 4, what);
  if (!st) { memcpy(v, c->p + c->pos, 4); c->pos += 4; }
  return st;
}
static lm_status rd_u64(cursor *c, uint64_t *v, const char *what) {
  lm_status st = need(c, 8, what);
  if (!st) { memcpy(v, c->p + c->pos, 8); c->pos += 8; }
  return st;
}
/* a string: u64 length, bytes; *s points into the buffer */
static lm_status rd_str(cursor *c, const uint8_t **s, uint64_t *n, const char *what) {
  lm_status st = rd_u64(c, n, what);
  if (!st) st = need(c, *n, what);
  if (!st) { *s = c->p + c->pos; c->pos += *n; }
  return st;
}
/* a NUL-free copy of a string (keys and tensor names) */
static lm_status rd_name(cursor *c, char **out, const char *what) {
  const uint8_t *s; uint64_t n;
  lm_status st = rd_str(c, &s, &n, what);
  if (st) return st;
  if (memchr(s, 0, n)) return lm_error(LM_ERR_FORMAT, "%s: %s at offset %zu holds a NUL byte", c->name, what, c->pos - n);
  *out = lm_xmalloc(n + 1);
  if (!*out) return LM_ERR_NOMEM;
  memcpy(*out, s, n);
  (*out)[n] = 0;
  return LM_OK;
}

static lm_status rd_value(cursor *c, lm_gguf_kv *kv) {
  char what[300];
  snprintf(what, sizeof what, "the value of '%.200s'", kv->key);
  lm_status st = rd_u32(c, &kv->type, what);
  if (st) return st;
  if (kv->type >= LM_GGUF_NTYPES) return lm_error(LM_ERR_FORMAT, "%s: '%s': unknown value type %u", c->name, kv->key, kv->type);
  if (kv->type == LM_GGUF_STR) {
    const uint8_t *s; uint64_t n;
    if ((st = rd_str(c, &s, &n, what))) return st;
    kv->data = s; kv->n = n;
    return LM_OK;
  }
  if (kv->type != LM_GGUF_ARR) {
    kv->data = c->p + c->pos;
    if ((st = need(c, VSIZE[kv->type], what))) return st;
    if (kv->type == LM_GGUF_BOOL && kv->data[0] > 1)
      return lm_error(LM_ERR_FORMAT, "%s: '%s': bool value %u is neither 0 nor 1", c->name, kv->key, kv->data[0]);
    c->pos += VSIZE[kv->type];
    return LM_OK;
  }
  if ((st = rd_u32(c, &kv->arr_type, what)) || (st = rd_u64(c, &kv->n, what))) return st;
  if (kv->arr_type >= LM_GGUF_NTYPES || kv->arr_type == LM_GGUF_ARR)
    return lm_error(LM_ERR_FORMAT, "%s: '%s': array element type %u is not supported", c->name, kv->key, kv->arr_type);
  kv->data = c->p + c->pos;
  if (kv->arr_type != LM_GGUF_STR) {
    if (kv->n > (c->len - c->pos) / VSIZE[kv->arr_type]) return need(c, (uint64_t)-1, what);
    c->pos += kv->n * VSIZE[kv->arr_type];
    if (kv->arr_type == LM_GGUF_BOOL)
      for (uint64_t i = 0; i < kv->n; i++)
        if (kv->data[i] > 1) return lm_error(LM_ERR_FORMAT, "%s: '%s'[%llu]: bool value is neither 0 nor 1", c->name, kv->key, (unsigned long long)i);
    return LM_OK;
  }
  if (kv->n > (c->len - c->pos) / 8) return need(c, (uint64_t)-1, what);   /* each string is at least its length */
  kv->strs = lm_xmalloc((kv->n + 1) * sizeof *kv->strs);
  if (!kv->strs) return LM_ERR_NOMEM;
  for (uint64_t i = 0; i < kv->n; i++) {
    const uint8_t *s; uint64_t n;
    kv->strs[i] = c->p + c->pos;
    if ((st = rd_str(c, &s, &n, what))) return st;
  }
  return LM_OK;
}

static int cmp_off(const void *a, const void *b) {
  const lm_gguf_tensor *x = *(const lm_gguf_tensor *const *)a, *y = *(const lm_gguf_tensor *const *)b;
  return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static lm_status rd_tensor(cursor *c, lm_gguf_tensor *t, int64_t i) {
  char what[64];
  snprintf(what, sizeof what, "tensor info %lld", (long long)i);
  char *name = NULL;
  lm_status st = rd_name(c, &name, what);
  if (st) return st;
  t->name = name;
  uint32_t nd;
  if ((st = rd_u32(c, &nd, what))) return st;
  if (nd < 1 || nd > LM_GGUF_MAX_DIMS)
    return lm_error(LM_ERR_FORMAT, "%s: tensor '%s': %u dimensions (1..%d supported)", c->name, name, nd, LM_GGUF_MAX_DIMS);
  t->n_dims = (int)nd;
  t->numel = 1;
  for (int d = 0; d < LM_GGUF_MAX_DIMS; d++) t->ne[d] = 1;
  for (uint32_t d = 0; d < nd; d++) {
    uint64_t ne;
    if ((st = rd_u64(c, &ne, what))) return st;
    if (ne > ((uint64_t)1 << 40) || (ne && (uint64_t)t->numel > ((uint64_t)1 << 50) / ne))
      return lm_error(LM_ERR_FORMAT, "%s: tensor '%s': dimension %u = %llu is too large", c->name, name, d, (unsigned long long)ne);
    t->ne[d] = (int64_t)ne;
    t->numel *= (int64_t)ne;
  }
  if ((st = rd_u32(c, &t->type, what)) || (st = rd_u64(c, &t->offset, what))) return st;
  const type_info *ti = type_of((int)t->type);
  if (!ti) return lm_error_prefix(unknown_type((int)t->type), "%s: tensor '%s'", c->name, name);
  if (t->ne[0] % ti->elems)
    return lm_error(LM_ERR_FORMAT, "%s: tensor '%s': a row of %lld values is not whole %s blocks of %lld", c->name, name,
                    (long long)t->ne[0], ti->name, (long long)ti->elems);
  t->nbytes = (size_t)(t->numel / ti->elems) * ti->bytes;
  return LM_OK;
}

static lm_status parse(lm_gguf *g) {
  cursor c = {g->buf, g->len, 0, g->name};
  uint32_t magic, version;
  uint64_t n_t, n_kv;
  lm_status st;
  if ((st = rd_u32(&c, &magic, "the magic")) ) return st;
  if (memcmp(g->buf, "GGUF", 4)) return lm_error(LM_ERR_FORMAT, "%s: not a GGUF file (no GGUF magic)", g->name);
  if ((st = rd_u32(&c, &version, "the version"))) return st;
  if (version != 3) {
    if (version == 0x03000000u) return lm_error(LM_ERR_UNSUPPORTED, "%s: a big-endian GGUF file is not supported", g->name);
    return lm_error(LM_ERR_UNSUPPORTED, "%s: GGUF version %u is not supported (3)", g->name, version);
  }
  if ((st = rd_u64(&c, &n_t, "the tensor count")) || (st = rd_u64(&c, &n_kv, "the key/value count"))) return st;
  if (n_kv > (c.len - c.pos) / 12)
    return lm_error(LM_ERR_FORMAT, "%s: %llu key/value pairs cannot fit in the %zu bytes left", g->name, (unsigned long long)n_kv, c.len - c.pos);
  g->kv = calloc(n_kv + 1, sizeof *g->kv);
  if (!g->kv) return lm_error(LM_ERR_NOMEM, "out of memory");
  for (uint64_t i = 0; i < n_kv; i++) {
    char what[64];
    snprintf(what, sizeof what, "key %llu", (unsigned long long)i);
    char *key = NULL;
    if ((st = rd_name(&c, &key, what))) return st;
    g->kv[i].key = key;
    g->n_kv = (int64_t)i + 1;
    if ((st = rd_value(&c, &g->kv[i]))) return st;
    for (uint64_t j = 0; j < i; j++)
      if (!strcmp(g->kv[j].key, key)) return lm_error(LM_ERR_FORMAT, "%s: key '%s' appears twice", g->name, key);
  }
  g->align = 32;
  const lm_gguf_kv *a = lm_gguf_find_kv(g, "general.alignment");
  if (a) {
    if (a->type != LM_GGUF_U32) return lm_error(LM_ERR_FORMAT, "%s: general.alignment: expected u32, got %s", g->name, lm_gguf_vtype_name(a->type));
    memcpy(&g->align, a->data, 4);
    if (!g->align || (g->align & (g->align - 1)) || g->align > (1u << 20))
      return lm_error(LM_ERR_FORMAT, "%s: general.alignment = %u is not a power of two up to 2^20", g->name, g->align);
  }
  if (n_t > (c.len - c.pos) / 24)
    return lm_error(LM_ERR_FORMAT, "%s: %llu tensor infos cannot fit in the %zu bytes left", g->name, (unsigned long long)n_t, c.len - c.pos);
  g->t = calloc(n_t + 1, sizeof *g->t);
  if (!g->t) return lm_error(LM_ERR_NOMEM, "out of memory");
  for (uint64_t i = 0; i < n_t; i++) {
    g->n_t = (int64_t)i + 1;
    if ((st = rd_tensor(&c, &g->t[i], (int64_t)i))) return st;
    for (uint64_t j = 0; j < i; j++)
      if (!strcmp(g->t[j].name, g->t[i].name)) return lm_error(LM_ERR_FORMAT, "%s: tensor '%s' appears twice", g->name, g->t[i].name);
  }
  size_t off = c.pos + (g->align - c.pos % g->align) % g->align;
  if (n_t && off > c.len) return lm_error(LM_ERR_FORMAT, "%s: truncated: the tensor data would start at %zu, past the end (%zu)", g->name, off, c.len);
  g->data_off = off;
  size_t data_len = n_t ? c.len - off : 0;
  lm_gguf_tensor **by = lm_xmalloc((n_t + 1) * sizeof *by);
  if (!by) return LM_ERR_NOMEM;
  for (uint64_t i = 0; i < n_t; i++) {
    lm_gguf_tensor *t = &g->t[i];
    by[i] = t;
    if (t->offset % g->align)
      st = lm_error(LM_ERR_FORMAT, "%s: tensor '%s': offset %llu is not a multiple of the alignment %u", g->name, t->name,
                    (unsigned long long)t->offset, g->align);
    else if (t->offset > data_len || t->nbytes > data_len - t->offset)
      st = lm_error(LM_ERR_FORMAT, "%s: tensor '%s': %zu bytes at offset %llu are past the end of the data (%zu bytes)", g->name,
                    t->name, t->nbytes, (unsigned long long)t->offset, data_len);
    if (st) { free(by); return st; }
    t->data = g->buf + off + t->offset;
  }
  qsort(by, n_t, sizeof *by, cmp_off);
  for (uint64_t i = 1; i < n_t && !st; i++)
    if (by[i - 1]->offset + by[i - 1]->nbytes > by[i]->offset)
      st = lm_error(LM_ERR_FORMAT, "%s: tensors '%s' and '%s' overlap", g->name, by[i - 1]->name, by[i]->name);
  free(by);
  return st;
}

lm_status lm_gguf_open_mem(lm_gguf **out, const void *data, size_t len, const char *name) {
  *out = NULL;
  lm_gguf *g = calloc(1, sizeof *g);
  if (!g) return lm_error(LM_ERR_NOMEM, "out of memory");
  g->buf = data; g->len = len;
  g->name = lm_strdup(name ? name : "gguf");
  lm_status st = g->name ? parse(g) : LM_ERR_NOMEM;
  if (st) { lm_gguf_close(g); return st; }
  *out = g;
  return LM_OK;
}

lm_status lm_gguf_open(lm_gguf **out, const char *path) {
  *out = NULL;
  lm_mmap m;
  lm_status st = lm_mmap_open(&m, path);
  if (st) return st;
  st = lm_gguf_open_mem(out, m.data, m.len, path);
  if (st) { lm_mmap_close(&m); return st; }
  (*out)->map = m;
  return LM_OK;
}

void lm_gguf_close(lm_gguf *g) {
  if (!g) return;
  for (int64_t i = 0; i < g->n_kv; i++) { free((char *)g->kv[i].key); free(g->kv[i].strs); }
  for (int64_t i = 0; i < g->n_t; i++) free((char *)g->t[i].name);
  free(g->kv); free(g->t); free(g->name);
  if (g->map.data) lm_mmap_close(&g->map);
  free(g);
}

void lm_gguf_release(const lm_gguf *g, const lm_gguf_tensor *t) {
  if (!g->map.data || !t->nbytes) return;   /* a caller's buffer: not ours to drop */
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  uintptr_t a = (uintptr_t)t->data & ~(uintptr_t)(page - 1), b = (uintptr_t)t->data + t->nbytes;
  /* a read-only private file mapping: the pages leave this process and come back from the file if read again */
  madvise((void *)a, b - a, MADV_DONTNEED);
}

const char *lm_gguf_name(const lm_gguf *g) { return g->name; }
int64_t lm_gguf_n_kv(const lm_gguf *g) { return g->n_kv; }
const lm_gguf_kv *lm_gguf_kv_at(const lm_gguf *g, int64_t i) { return &g->kv[i]; }
int64_t lm_gguf_n_tensors(const lm_gguf *g) { return g->n_t; }
const lm_gguf_tensor *lm_gguf_tensor_at(const lm_gguf *g, int64_t i) { return &g->t[i]; }
uint32_t lm_gguf_alignment(const lm_gguf *g) { return g->align; }

const lm_gguf_kv *lm_gguf_find_kv(const lm_gguf *g, const char *key) {
  for (int64_t i = 0; i < g->n_kv; i++)
    if (!strcmp(g->kv[i].key, key)) return &g->kv[i];
  return NULL;
}

int64_t lm_gguf_find_tensor(const lm_gguf *g, const char *name) {
  for (int64_t i = 0; i < g->n_t; i++)
    if (!strcmp(g->t[i].name, name)) return i;
  return -1;
}

static double num_at(uint32_t type, const uint8_t *p) {
  switch (type) {
    case LM_GGUF_U8: case LM_GGUF_BOOL: return p[0];
    case LM_GGUF_I8: return (int8_t)p[0];
    case LM_GGUF_U16: return rd16(p);
    case LM_GGUF_I16: return (int16_t)rd16(p);
    case LM_GGUF_U32: { uint32_t v; memcpy(&v, p, 4); return v; }
    case LM_GGUF_I32: { int32_t v; memcpy(&v, p, 4); return v; }
    case LM_GGUF_F32: { float v; memcpy(&v, p, 4); return v; }
    case LM_GGUF_U64: { uint64_t v; memcpy(&v, p, 8); return (double)v; }
    case LM_GGUF_I64: { int64_t v; memcpy(&v, p, 8); return (double)v; }
    case LM_GGUF_F64: { double v; memcpy(&v, p, 8); return v; }
    default: return NAN;
  }
}

static lm_status missing(const lm_gguf *g, const char *key) {
  return lm_error(LM_ERR_FORMAT, "%s: missing key '%s'", g->name, key);
}
static lm_status wrong(const lm_gguf *g, const lm_gguf_kv *kv, const char *want) {
  return lm_error(LM_ERR_FORMAT, "%s: key '%s': expected %s, got %s", g->name, kv->key, want, lm_gguf_vtype_name(kv->type));
}

lm_status lm_gguf_get_int(const lm_gguf *g, const char *key, int64_t *v, int required) {
  const lm_gguf_kv *kv = lm_gguf_find_kv(g, key);
  if (!kv) return required ? missing(g, key) : LM_OK;
  if (kv->type == LM_GGUF_U64) {
    uint64_t u; memcpy(&u, kv->data, 8);
    if (u > INT64_MAX) return lm_error(LM_ERR_RANGE, "%s: key '%s' = %llu is out of range", g->name, key, (unsigned long long)u);
    *v = (int64_t)u;
  } else if (kv->type == LM_GGUF_I64) {
    memcpy(v, kv->data, 8);
  } else if (kv->type < LM_GGUF_F32 || kv->type == LM_GGUF_BOOL) {
    *v = (int64_t)num_at(kv->type, kv->data);
  } else {
    return wrong(g, kv, "an integer");
  }
  return LM_OK;
}

lm_status lm_gguf_get_float(const lm_gguf *g, const char *key, float *v, int required) {
  const lm_gguf_kv *kv = lm_gguf_find_kv(g, key);
  if (!kv) return required ? missing(g, key) : LM_OK;
  if (kv->type != LM_GGUF_F32 && kv->type != LM_GGUF_F64) return wrong(g, kv, "f32");
  *v = (float)num_at(kv->type, kv->data);
  return LM_OK;
}

lm_status lm_gguf_get_str(const lm_gguf *g, const char *key, const char **s, size_t *n, int required) {
  const lm_gguf_kv *kv = lm_gguf_find_kv(g, key);
  if (!kv) return required ? missing(g, key) : LM_OK;
  if (kv->type != LM_GGUF_STR) return wrong(g, kv, "string");
  *s = (const char *)kv->data;
  *n = (size_t)kv->n;
  return LM_OK;
}

lm_status lm_gguf_get_arr(const lm_gguf *g, const char *key, int elem, const lm_gguf_kv **out, int required) {
  *out = NULL;
  const lm_gguf_kv *kv = lm_gguf_find_kv(g, key);
  if (!kv) return required ? missing(g, key) : LM_OK;
  if (kv->type != LM_GGUF_ARR) return wrong(g, kv, "array");
  if (elem >= 0 && kv->arr_type != (uint32_t)elem)
    return lm_error(LM_ERR_FORMAT, "%s: key '%s': expected an array of %s, got an array of %s", g->name, key,
                    lm_gguf_vtype_name((uint32_t)elem), lm_gguf_vtype_name(kv->arr_type));
  *out = kv;
  return LM_OK;
}

void lm_gguf_arr_str(const lm_gguf_kv *kv, uint64_t i, const char **s, size_t *n) {
  uint64_t len;
  memcpy(&len, kv->strs[i], 8);
  *s = (const char *)kv->strs[i] + 8;
  *n = (size_t)len;
}

double lm_gguf_arr_num(const lm_gguf_kv *kv, uint64_t i) { return num_at(kv->arr_type, kv->data + i * VSIZE[kv->arr_type]); }

/* ------------------------------------------------------------------ writing */

typedef struct {
  char *name; int n_dims; int64_t ne[LM_GGUF_MAX_DIMS]; int type;
  const float *data; int own;
  int64_t numel; size_t nbytes; uint64_t offset;
} wtensor;

struct lm_gguf_writer {
  uint8_t *kv; size_t kv_len, kv_cap; uint64_t n_kv;   /* the encoded key/value pairs */
  wtensor *t; int64_t n_t, cap_t;
  int err;                                            /* a failed add: lm_gguf_write refuses */
};

static lm_status put(lm_gguf_writer *w, const void *p, size_t n) {
  if (w->kv_len + n > w->kv_cap) {
    size_t cap = w->kv_cap ? w->kv_cap : 4096;
    while (cap < w->kv_len + n) cap *= 2;
    uint8_t *b = lm_xrealloc(w->kv, cap);
    if (!b) { w->err = 1; return LM_ERR_NOMEM; }
    w->kv = b; w->kv_cap = cap;
  }
  memcpy(w->kv + w->kv_len, p, n);
  w->kv_len += n;
  return LM_OK;
}
static lm_status put_u32(lm_gguf_writer *w, uint32_t v) { return put(w, &v, 4); }
static lm_status put_str(lm_gguf_writer *w, const char *s, size_t n) {
  uint64_t len = n;
  lm_status st = put(w, &len, 8);
  return st ? st : put(w, s, n);
}
static lm_status put_key(lm_gguf_writer *w, const char *key, uint32_t type) {
  w->n_kv++;
  lm_status st = put_str(w, key, strlen(key));
  return st ? st : put_u32(w, type);
}
static lm_status put_scalar(lm_gguf_writer *w, const char *key, uint32_t type, const void *v) {
  lm_status st = put_key(w, key, type);
  return st ? st : put(w, v, VSIZE[type]);
}
static lm_status put_arr(lm_gguf_writer *w, const char *key, uint32_t type, uint64_t n) {
  lm_status st = put_key(w, key, LM_GGUF_ARR);
  if (!st) st = put_u32(w, type);
  return st ? st : put(w, &n, 8);
}

lm_status lm_gguf_writer_new(lm_gguf_writer **out) {
  *out = calloc(1, sizeof **out);
  return *out ? LM_OK : lm_error(LM_ERR_NOMEM, "out of memory");
}

void lm_gguf_writer_free(lm_gguf_writer *w) {
  if (!w) return;
  for (int64_t i = 0; i < w->n_t; i++) {
    free(w->t[i].name);
    if (w->t[i].own) free((float *)w->t[i].data);
  }
  free(w->t); free(w->kv); free(w);
}

lm_status lm_gguf_w_u32(lm_gguf_writer *w, const char *key, uint32_t v) { return put_scalar(w, key, LM_GGUF_U32, &v); }
lm_status lm_gguf_w_i32(lm_gguf_writer *w, const char *key, int32_t v) { return put_scalar(w, key, LM_GGUF_I32, &v); }
lm_status lm_gguf_w_f32(lm_gguf_writer *w, const char *key, float v) { return put_scalar(w, key, LM_GGUF_F32, &v); }
lm_status lm_gguf_w_bool(lm_gguf_writer *w, const char *key, int v) {
  uint8_t b = v != 0;
  return put_scalar(w, key, LM_GGUF_BOOL, &b);
}
lm_status lm_gguf_w_str(lm_gguf_writer *w, const char *key, const char *s, size_t n) {
  lm_status st = put_key(w, key, LM_GGUF_STR);
  return st ? st : put_str(w, s, n);
}
lm_status lm_gguf_w_arr_str(lm_gguf_writer *w, const char *key, const char *const *s, const size_t *len, uint64_t n) {
  lm_status st = put_arr(w, key, LM_GGUF_STR, n);
  for (uint64_t i = 0; i < n && !st; i++) st = put_str(w, s[i], len[i]);
  return st;
}
lm_status lm_gguf_w_arr_f32(lm_gguf_writer *w, const char *key, const float *v, uint64_t n) {
  lm_status st = put_arr(w, key, LM_GGUF_F32, n);
  return st ? st : put(w, v, n * 4);
}
lm_status lm_gguf_w_arr_i32(lm_gguf_writer *w, const char *key, const int32_t *v, uint64_t n) {
  lm_status st = put_arr(w, key, LM_GGUF_I32, n);
  return st ? st : put(w, v, n * 4);
}

lm_status lm_gguf_w_tensor(lm_gguf_writer *w, const char *name, int n_dims, const int64_t *ne, int type,
                           const float *data, int own) {
  lm_status st = LM_OK;
  const type_info *ti = type_of(type);
  if (!ti || !ti->quant) st = lm_error(LM_ERR_UNSUPPORTED, "%s: writing type %s is not supported", name, ti ? ti->name : "?");
  else if (n_dims < 1 || n_dims > LM_GGUF_MAX_DIMS) st = lm_error(LM_ERR_ARG, "%s: %d dimensions", name, n_dims);
  else if (ne[0] % ti->elems)
    st = lm_error(LM_ERR_UNSUPPORTED, "%s: rows of %lld values are not whole %s blocks of %lld", name, (long long)ne[0], ti->name,
                  (long long)ti->elems);
  if (!st && w->n_t == w->cap_t) {
    int64_t cap = w->cap_t ? 2 * w->cap_t : 64;
    wtensor *t = lm_xrealloc(w->t, (size_t)cap * sizeof *t);
    if (!t) st = LM_ERR_NOMEM;
    else { w->t = t; w->cap_t = cap; }
  }
  char *nm = st ? NULL : lm_strdup(name);
  if (!st && !nm) st = LM_ERR_NOMEM;
  if (st) {
    if (own) free((float *)data);
    w->err = 1;
    return st;
  }
  wtensor *t = &w->t[w->n_t++];
  memset(t, 0, sizeof *t);
  t->name = nm; t->n_dims = n_dims; t->type = type; t->data = data; t->own = own;
  t->numel = 1;
  for (int d = 0; d < LM_GGUF_MAX_DIMS; d++) { t->ne[d] = d < n_dims ? ne[d] : 1; t->numel *= t->ne[d]; }
  t->nbytes = (size_t)(t->numel / ti->elems) * ti->bytes;
  return LM_OK;
}

#define W_ALIGN 32

lm_status lm_gguf_write(lm_gguf_writer *w, const char *path, int progress) {
  if (w->err) return lm_error(LM_ERR_ARG, "%s: an earlier metadata or tensor was refused; nothing written", path);
  /* the header: magic, version, counts, the key/values, the tensor infos, padding */
  lm_gguf_writer h = {0};
  uint64_t off = 0, total = 0;
  lm_status st = put(&h, "GGUF", 4);
  uint32_t version = 3;
  uint64_t nt = (uint64_t)w->n_t;
  if (!st) st = put(&h, &version, 4);
  if (!st) st = put(&h, &nt, 8);
  if (!st) st = put(&h, &w->n_kv, 8);
  if (!st) st = put(&h, w->kv, w->kv_len);
  for (int64_t i = 0; i < w->n_t && !st; i++) {
    wtensor *t = &w->t[i];
    uint32_t nd = (uint32_t)t->n_dims, type = (uint32_t)t->type;
    t->offset = off;
    off += (t->nbytes + W_ALIGN - 1) / W_ALIGN * W_ALIGN;
    total += t->nbytes;
    st = put_str(&h, t->name, strlen(t->name));
    if (!st) st = put(&h, &nd, 4);
    for (int d = 0; d < t->n_dims && !st; d++) { uint64_t ne = (uint64_t)t->ne[d]; st = put(&h, &ne, 8); }
    if (!st) st = put(&h, &type, 4);
    if (!st) st = put(&h, &t->offset, 8);
  }
  static const uint8_t zeros[W_ALIGN] = {0};
  if (!st) st = put(&h, zeros, (W_ALIGN - h.kv_len % W_ALIGN) % W_ALIGN);
  if (st) { free(h.kv); return st; }
  lm_atomic_file af;
  if ((st = lm_atomic_open(&af, path))) { free(h.kv); return st; }
  if (fwrite(h.kv, 1, h.kv_len, af.f) != h.kv_len) st = lm_error(LM_ERR_IO, "%s: write failed", path);
  free(h.kv);
  lm_progress pr;
  if (progress) lm_progress_start(&pr, "writing", (int64_t)total);
  uint64_t done = 0;
  for (int64_t i = 0; i < w->n_t && !st; i++) {
    wtensor *t = &w->t[i];
    uint8_t *buf = lm_xmalloc(t->nbytes + W_ALIGN);
    if (!buf) { st = LM_ERR_NOMEM; break; }
    size_t pad = (W_ALIGN - t->nbytes % W_ALIGN) % W_ALIGN;
    memset(buf + t->nbytes, 0, pad);
    st = lm_gguf_quantize(t->type, t->data, t->numel, buf);
    if (!st && fwrite(buf, 1, t->nbytes + pad, af.f) != t->nbytes + pad) st = lm_error(LM_ERR_IO, "%s: write failed", path);
    free(buf);
    done += t->nbytes;
    if (progress) lm_progress_update(&pr, (int64_t)done, t->name);
  }
  if (progress) lm_progress_finish(&pr, NULL);
  if (st) { lm_atomic_abort(&af); return st; }
  return lm_atomic_commit(&af);
}
