/* quant.c — quantized matrix kernels and the f16 conversions (quant.h).
 *
 * One table (KERNELS) gives, per weight type and path, the panel kernel: one packed panel (16
 * weight rows) against up to MR prepared activation rows (each panel block is loaded, and Q4_0's
 * nibbles unpacked, once for all of them). lm_qmatmul quantizes the activations once per row and
 * is the one loop over panels that calls it. A block's dot product is exact in int32 on every
 * path:
 *   - portable C: the sum as written;
 *   - AVX2: vpmaddubsw (u8 x s8 pairs into int16, never saturating here), then vpmaddwd with ones;
 *   - AVX-512 VNNI: vpdpbusd (u8 x s8, four products into each int32 lane at once).
 * Then every path does the same float operations in the same order (quant.h), so all paths give
 * the same bits. The panel layout (lm_qmat_pack) puts a row in each int32 lane, so a block costs
 * one load (Q8_0) or one load and three operations (Q4_0) per group of 4 values of 16 rows, and
 * the lanes never need adding across: a decode step's product runs at the speed memory streams the
 * panels (the row-major kernels this replaced were bound by arithmetic at about a third of it).
 * A8 (K-quants, kept exactly: quant.h) runs Q8_0's loop with two integer sums a block, one per
 * half, and its four scale and offset terms; A4 (Q4_K) Q4_0's loop with a scale and an offset. */
/* the scale multiply is rounded before the explicit fma on every path (no contraction) */
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif
#include "kernels/quant.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif

/* ------------------------------------------------------------------ f16 */

float lm_f16_to_f32(uint16_t h) {
  uint32_t s = (uint32_t)(h & 0x8000) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff, x;
  if (e == 0x1f) x = s | 0x7f800000u | (m << 13);   /* inf, nan */
  else if (e) x = s | ((e + 112) << 23) | (m << 13);
  else {                                             /* zero and subnormals: m * 2^-24, exact */
    float v = (float)m * 0x1p-24f;
    memcpy(&x, &v, 4);
    x |= s;
  }
  float f;
  memcpy(&f, &x, 4);
  return f;
}

uint16_t lm_f32_to_f16(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
  uint32_t ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u) return sign | 0x7e00 | (uint16_t)((ax >> 13) & 0x1ff);   /* nan stays nan */
  if (ax >= 0x477ff000u) return sign | 0x7c00;                                  /* >= 65520: inf */
  if (ax < 0x38800000u) {   /* below 2^-14: a subnormal; adding 0.5 makes the FPU round at 2^-24 */
    float v;
    memcpy(&v, &ax, 4);
    v += 0.5f;
    uint32_t r;
    memcpy(&r, &v, 4);
    return sign | (uint16_t)(r - 0x3f000000u);
  }
  ax += 0xc8000fffu + ((ax >> 13) & 1);   /* rebias the exponent, round to nearest even */
  return sign | (uint16_t)(ax >> 13);
}

#if defined(__x86_64__)
/* F16C from CPUID leaf 1 (ECX bit 29): clang 14's __builtin_cpu_supports does not know "f16c".
 * Asked once: CPUID traps to the hypervisor in a virtual machine (microseconds), and the row
 * conversions below run per attention head; every thread finds the same answer, so the race on
 * the cache is benign. */
static int has_f16c(void) {
  static _Atomic int known = -1;
  int v = known;
  if (v < 0) {
    unsigned a, b, c, d;
    known = v = __get_cpuid(1, &a, &b, &c, &d) && (c >> 29 & 1);
  }
  return v;
}

#define F16C __attribute__((target("avx,f16c")))
F16C static void f16_to_f32_f16c(const uint16_t *src, float *dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
  for (; i < n; i++) dst[i] = lm_f16_to_f32(src[i]);
}
F16C static void f32_to_f16_f16c(const float *src, uint16_t *dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128((__m128i *)(dst + i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  for (; i < n; i++) dst[i] = lm_f32_to_f16(src[i]);
}
#endif

/* F16C when this CPU has it, chosen at run time (the same bits as the scalar functions) */
void lm_f16_to_f32_row(const uint16_t *src, float *dst, int64_t n) {
#if defined(__x86_64__)
  if (has_f16c()) { f16_to_f32_f16c(src, dst, n); return; }
#endif
  for (int64_t i = 0; i < n; i++) dst[i] = lm_f16_to_f32(src[i]);
}

void lm_f32_to_f16_row(const float *src, uint16_t *dst, int64_t n) {
#if defined(__x86_64__)
  if (has_f16c()) { f32_to_f16_f16c(src, dst, n); return; }
#endif
  for (int64_t i = 0; i < n; i++) dst[i] = lm_f32_to_f16(src[i]);
}

static inline float scale_at(const uint8_t *p) { return lm_f16_to_f32((uint16_t)(p[0] | p[1] << 8)); }

/* ------------------------------------------------------------------ activations */

/* ggml's quantize_row_q8_0_ref: d = max|x| / 127, q = roundf(x * (1 / d)) (to nearest, halves
 * away from zero), the scale stored as f16. With AVX-512 (chosen at run time) the same operations
 * 16 values at a time: the maximum does not depend on the order, the products are the same
 * roundings, and roundf is truncation plus one where the dropped fraction is at least a half
 * (exact below 2^23), so the same bytes (tests/unit/test_quant.c). */
static void quant_block_c(const float *x, uint8_t *out) {
  float amax = 0;
  for (int j = 0; j < LM_QK; j++) amax = fmaxf(amax, fabsf(x[j]));
  float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
  uint16_t h = lm_f32_to_f16(d);
  out[0] = (uint8_t)h; out[1] = (uint8_t)(h >> 8);
  for (int j = 0; j < LM_QK; j++) out[2 + j] = (uint8_t)(int8_t)roundf(x[j] * id);
}

#if defined(__x86_64__)
__attribute__((target("avx512f"))) static void quant_row_avx512(const float *x, int64_t nb, uint8_t *out) {
  const __m512i sign = _mm512_set1_epi32((int)0x80000000u);
  const __m512 half = _mm512_set1_ps(0.5f), one = _mm512_set1_ps(1.0f);
  for (int64_t b = 0; b < nb; b++, x += LM_QK, out += LM_Q8_0_BYTES) {
    __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
    /* |x|, a NaN ignored as fmaxf ignores it: vmaxps(a, 0) gives 0 for a NaN a */
    __m512 a = _mm512_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_setzero_ps()), _mm512_max_ps(_mm512_abs_ps(v1), _mm512_setzero_ps()));
    float amax = _mm512_reduce_max_ps(a);
    float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
    uint16_t h = lm_f32_to_f16(d);
    out[0] = (uint8_t)h; out[1] = (uint8_t)(h >> 8);
    for (int k = 0; k < 2; k++) {
      __m512 v = _mm512_mul_ps(k ? v1 : v0, _mm512_set1_ps(id)), m = _mm512_abs_ps(v);
      __m512 t = _mm512_roundscale_ps(m, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
      __mmask16 up = _mm512_cmp_ps_mask(_mm512_sub_ps(m, t), half, _CMP_GE_OQ);
      t = _mm512_mask_add_ps(t, up, t, one);
      __m512i q = _mm512_cvttps_epi32(_mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(t), _mm512_and_si512(sign, _mm512_castps_si512(v)))));
      _mm_storeu_si128((__m128i *)(out + 2 + 16 * k), _mm512_cvtepi32_epi8(q));
    }
  }
}
#endif

void lm_quant_act_q8(const float *x, int64_t n, uint8_t *out) {
#if defined(__x86_64__)
  if (__builtin_cpu_supports("avx512f")) { quant_row_avx512(x, n / LM_QK, out); return; }
#endif
  for (int64_t b = 0; b < n / LM_QK; b++) quant_block_c(x + b * LM_QK, out + b * LM_Q8_0_BYTES);
}

/* ------------------------------------------------------------------ the packed layout */

size_t lm_qmat_packed_bytes(lm_qweight t, int64_t rows, int64_t cols) {
  int64_t pr = t == LM_QW_F16 ? LM_HP : LM_QP;
  return (size_t)((rows + pr - 1) / pr) * (size_t)(cols / LM_QK) * (size_t)pr * lm_qweight_block_bytes(t);
}

/* byte j of a GGUF block's values (j < 32 for Q8_0, < 16 for Q4_0) within its packed panel block */
static inline size_t packed_at(int64_t l, int j) { return 2 * LM_QP + (size_t)(j / 4) * 4 * LM_QP + 4 * (size_t)l + (size_t)(j % 4); }

/* f16: row l's values 16j..16j+15 at bytes 32l of the panel's chunk j (512 bytes); padding rows 0 */
static void pack_f16(const lm_qmat *W, uint8_t *out) {
  int64_t nj = W->cols / 16, np = (W->rows + LM_HP - 1) / LM_HP;
  #pragma omp parallel for schedule(static) if (np * nj >= 4096)
  for (int64_t p = 0; p < np; p++)
    for (int64_t l = 0; l < LM_HP; l++) {
      int64_t r = p * LM_HP + l;
      for (int64_t j = 0; j < nj; j++) {
        uint8_t *o = out + (size_t)(p * nj + j) * 32 * LM_HP + 32 * (size_t)l;
        if (r < W->rows) memcpy(o, W->data + ((size_t)r * (size_t)W->cols + 16 * (size_t)j) * 2, 32);
        else memset(o, 0, 32);
      }
    }
}

/* A8 / A4: per panel block the values (A8: Q8_0's groups in the kernel's order; A4: Q4_0's groups),
 * then the 16 rows' f32 rows (A8: a_0, a_1, c_0, c_1; A4: a, c); padding rows all zero (a weight of 0) */
static void pack_affine(const lm_qmat *W, uint8_t *out) {
  int a8 = W->type == LM_QW_A8, nf = a8 ? 4 : 2, nv = a8 ? LM_QK : LM_QK / 2;
  size_t bb = a8 ? LM_A8_BYTES : LM_A4_BYTES;
  int64_t nb = W->cols / LM_QK, np = (W->rows + LM_QP - 1) / LM_QP;
  #pragma omp parallel for schedule(static) if (np * nb >= 4096)
  for (int64_t p = 0; p < np; p++)
    for (int64_t b = 0; b < nb; b++) {
      uint8_t *o = out + (size_t)(p * nb + b) * LM_QP * bb;
      for (int64_t l = 0; l < LM_QP; l++) {
        int64_t r = p * LM_QP + l;
        const uint8_t *blk = r < W->rows ? W->data + (size_t)(r * nb + b) * bb : NULL;
        for (int f = 0; f < nf; f++)
          for (int k = 0; k < 4; k++) o[(a8 ? LM_A8_F(f) : LM_A4_F(f)) + 4 * l + k] = blk ? blk[4 * f + k] : 0;
        for (int j = 0; j < nv; j++) o[(a8 ? LM_A8_GROUP(j / 4) : 64 * (j / 4)) + 4 * l + j % 4] = blk ? blk[4 * nf + j] : 0;
      }
    }
}

void lm_qmat_pack(const lm_qmat *W, uint8_t *out) {
  if (W->type == LM_QW_F16) { pack_f16(W, out); return; }
  if (W->type == LM_QW_A8 || W->type == LM_QW_A4) { pack_affine(W, out); return; }
  int64_t nb = W->cols / LM_QK, np = (W->rows + LM_QP - 1) / LM_QP;
  size_t bb = lm_qweight_block_bytes(W->type), pb = LM_QP * bb;
  int q8 = W->type == LM_QW_Q8_0, nv = q8 ? LM_QK : LM_QK / 2;
  #pragma omp parallel for schedule(static) if (np * nb >= 4096)
  for (int64_t p = 0; p < np; p++)
    for (int64_t b = 0; b < nb; b++) {
      uint8_t *o = out + (size_t)(p * nb + b) * pb;
      for (int64_t l = 0; l < LM_QP; l++) {
        int64_t r = p * LM_QP + l;
        /* a padding row: scale 0 and the values of a zero weight (w + 128 = 128; q = 8) */
        const uint8_t *blk = r < W->rows ? W->data + (size_t)(r * nb + b) * bb : NULL;
        o[2 * l] = blk ? blk[0] : 0;
        o[2 * l + 1] = blk ? blk[1] : 0;
        for (int j = 0; j < nv; j++) o[packed_at(l, j)] = blk ? (uint8_t)(blk[2 + j] ^ (q8 ? 0x80 : 0)) : q8 ? 0x80 : 0x88;
      }
    }
}

/* ------------------------------------------------------------------ activations, prepared */

/* One activation row as the kernels read it: its Q8_0 blocks, their scales as f32, each block's
 * sum of values (the correction of the weights' offset: 128 for Q8_0, 8 for Q4_0) and the sum of
 * its first 16 (A8's offsets apply per half). */
typedef struct {
  const uint8_t *q;     /* nb blocks of 34 bytes */
  const float *d;       /* nb */
  const int32_t *s;     /* nb */
  const int32_t *h;     /* nb */
} qrow;

#define ALIGN64(n) (((n) + 63) & ~(size_t)63)

size_t lm_qmatmul_scratch(int64_t n, int64_t cols) {
  size_t nb = (size_t)(cols / LM_QK);
  return ALIGN64((size_t)n * sizeof(qrow)) + ALIGN64((size_t)n * nb * LM_Q8_0_BYTES) + 3 * ALIGN64((size_t)n * nb * sizeof(float)) + 64;
}

/* the scratch's n prepared rows (the layout depends on n and cols only) */
static qrow *scratch_rows(void *scratch) { return (qrow *)ALIGN64((uintptr_t)scratch); }

/* prepares row i of n into the scratch, its blocks b0..b1 - 1 (each block on its own: the same bits
 * in any split; the row's entry with block 0); xq given (already quantized) or NULL (quantize x) */
static void prepare_blocks(const float *x, const uint8_t *xq, int64_t n, int64_t cols, void *scratch, int64_t i, int64_t b0,
                           int64_t b1) {
  int64_t nb = cols / LM_QK;
  uint8_t *p = (uint8_t *)ALIGN64((uintptr_t)scratch);
  qrow *rows = (qrow *)p;
  p += ALIGN64((size_t)n * sizeof(qrow));
  uint8_t *q = p;
  p += ALIGN64((size_t)n * nb * LM_Q8_0_BYTES);
  float *d = (float *)p;
  p += ALIGN64((size_t)n * nb * sizeof(float));
  int32_t *s = (int32_t *)p;
  p += ALIGN64((size_t)n * nb * sizeof(int32_t));
  int32_t *h = (int32_t *)p;
  uint8_t *qi = q + (size_t)i * nb * LM_Q8_0_BYTES;
  if (xq) memcpy(qi + b0 * LM_Q8_0_BYTES, xq + ((size_t)i * nb + b0) * LM_Q8_0_BYTES, (size_t)(b1 - b0) * LM_Q8_0_BYTES);
  else lm_quant_act_q8(x + i * cols + b0 * LM_QK, (b1 - b0) * LM_QK, qi + b0 * LM_Q8_0_BYTES);
  for (int64_t b = b0; b < b1; b++) {
    const uint8_t *blk = qi + b * LM_Q8_0_BYTES;
    const int8_t *v = (const int8_t *)(blk + 2);
    int32_t sum = 0, half = 0;
    for (int j = 0; j < LM_QK; j++) {
      sum += v[j];
      if (j == LM_QK / 2 - 1) half = sum;
    }
    d[i * nb + b] = scale_at(blk);
    s[i * nb + b] = sum;
    h[i * nb + b] = half;
  }
  if (b0 == 0) rows[i] = (qrow){qi, d + i * nb, s + i * nb, h + i * nb};
}

static void prepare_row(const float *x, const uint8_t *xq, int64_t n, int64_t cols, void *scratch, int64_t i) {
  prepare_blocks(x, xq, n, cols, scratch, i, 0, cols / LM_QK);
}

/* fills the scratch with n prepared rows */
static qrow *prepare(const float *x, const uint8_t *xq, int64_t n, int64_t cols, void *scratch) {
  #pragma omp parallel for schedule(static) if (n * cols >= (1 << 16))
  for (int64_t i = 0; i < n; i++) prepare_row(x, xq, n, cols, scratch, i);
  return scratch_rows(scratch);
}

/* ------------------------------------------------------------------ panel kernels */

#define MR 8   /* activation rows per kernel call: each panel block is loaded (and unpacked) once for them */

/* out[i][l] = row l of panel w (nb panel blocks) . x[i], i < m <= MR */
typedef void (*panel_kernel)(const uint8_t *w, int64_t nb, const qrow *x, int m, float out[MR][LM_QP]);

/* the value of row l of a packed panel block at j (Q8_0: w; Q4_0: the unsigned q) */
static inline int q8_val(const uint8_t *pb, int64_t l, int j) { return (int8_t)(pb[packed_at(l, j)] ^ 0x80); }
static inline int q4_val(const uint8_t *pb, int64_t l, int j) { return j < 16 ? pb[packed_at(l, j)] & 15 : pb[packed_at(l, j - 16)] >> 4; }

/* the definition (quant.h), written as it reads; Q4_0's values are q - 8 */
#define PORTABLE_KERNEL(name, bytes, val, off)                                                   \
  static void name(const uint8_t *w, int64_t nb, const qrow *x, int m, float out[MR][LM_QP]) {  \
    float acc[MR][LM_QP] = {{0}};                                                                \
    for (int64_t b = 0; b < nb; b++) {                                                           \
      const uint8_t *pb = w + b * LM_QP * (bytes);                                               \
      for (int l = 0; l < LM_QP; l++) {                                                          \
        float dw = scale_at(pb + 2 * l);                                                         \
        for (int i = 0; i < m; i++) {                                                            \
          const int8_t *xv = (const int8_t *)(x[i].q + b * LM_Q8_0_BYTES + 2);                   \
          int32_t dot = 0;                                                                       \
          for (int j = 0; j < LM_QK; j++) dot += (val(pb, l, j) - (off)) * xv[j];                \
          acc[i][l] = fmaf((float)dot, dw * x[i].d[b], acc[i][l]);                               \
        }                                                                                        \
      }                                                                                          \
    }                                                                                            \
    memcpy(out, acc, (size_t)m * sizeof acc[0]);                                                 \
  }
PORTABLE_KERNEL(k_q8_c, LM_Q8_0_BYTES, q8_val, 0)
PORTABLE_KERNEL(k_q4_c, LM_Q4_0_BYTES, q4_val, 8)

/* A4 and A8 (quant.h), written as they read: A4 one integer sum a block, A8 one a half */
static void k_aff_c(const uint8_t *w, int64_t nb, const qrow *x, int m, float out[MR][LM_QP], int a8) {
  float acc[MR][LM_QP] = {{0}};
  for (int64_t b = 0; b < nb; b++) {
    const uint8_t *pb = w + b * LM_QP * (a8 ? LM_A8_BYTES : LM_A4_BYTES);
    for (int l = 0; l < LM_QP; l++)
      for (int i = 0; i < m; i++) {
        const int8_t *xv = (const int8_t *)(x[i].q + b * LM_Q8_0_BYTES + 2);
        int32_t dot[2] = {0, 0};
        for (int j = 0; j < LM_QK; j++) {
          uint8_t v = a8 ? pb[LM_A8_GROUP(j / 4) + 4 * l + j % 4] : pb[64 * ((j % 16) / 4) + 4 * l + j % 4];
          dot[a8 ? j / 16 : 0] += (a8 ? v : j < 16 ? v & 15 : v >> 4) * xv[j];
        }
        float f[4], dx = x[i].d[b];
        for (int k = 0; k < (a8 ? 4 : 2); k++) memcpy(&f[k], pb + (a8 ? LM_A8_F(k) : LM_A4_F(k)) + 4 * l, 4);
        float u = (float)dot[0] * (f[0] * dx);
        if (a8) {
          u = fmaf((float)dot[1], f[1] * dx, u);
          u = fmaf((float)x[i].h[b], f[2] * dx, u);
          u = fmaf((float)(x[i].s[b] - x[i].h[b]), f[3] * dx, u);
        } else {
          u = fmaf((float)x[i].s[b], f[1] * dx, u);
        }
        acc[i][l] += u;
      }
  }
  memcpy(out, acc, (size_t)m * sizeof acc[0]);
}
static void k_a4_c(const uint8_t *w, int64_t nb, const qrow *x, int m, float out[MR][LM_QP]) { k_aff_c(w, nb, x, m, out, 0); }
static void k_a8_c(const uint8_t *w, int64_t nb, const qrow *x, int m, float out[MR][LM_QP]) { k_aff_c(w, nb, x, m, out, 1); }

#if defined(__x86_64__)
#define AVX2 __attribute__((target("avx2,fma,f16c")))
#define VNNI __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))
#define INL inline __attribute__((always_inline))

static INL int32_t load32(const uint8_t *p) { int32_t v; memcpy(&v, p, 4); return v; }

/* The types the two SIMD kernels below serve: Q8_0, Q4_0, and A4 (Q4_0's nibbles, no -8, with an f32
 * scale and offset after the values) */
enum { K_Q8, K_Q4, K_A4 };

/* AVX-512 VNNI: a 64-byte group is one int32 lane a row; vpdpbusd multiplies its unsigned bytes
 * (Q8_0: w + 128; Q4_0, A4: q) by a broadcast 4 values of x and adds the four products into the lane,
 * which starts at -128 (Q8_0) or -8 (Q4_0) times the block's sum of x: exactly sum_j w_j x_j (A4:
 * sum_j q_j x_j, its offset applied in float, quant.h) */
VNNI static INL void vnni_t(const uint8_t *w, int64_t nb, const qrow *x, const int m, const int kind, float out[MR][LM_QP]) {
  const int q4 = kind != K_Q8, a4 = kind == K_A4;
  const size_t pbytes = LM_QP * (a4 ? LM_A4_BYTES : q4 ? LM_Q4_0_BYTES : LM_Q8_0_BYTES), voff = a4 ? 0 : 2 * LM_QP;
  const __m512i lo4 = _mm512_set1_epi8(15);
  __m512 acc[MR];
  for (int i = 0; i < m; i++) acc[i] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; b++) {
    const uint8_t *pb = w + b * pbytes;
    __m512i s[MR];
    for (int i = 0; i < m; i++) s[i] = _mm512_set1_epi32(a4 ? 0 : x[i].s[b] * (q4 ? -8 : -128));
    for (int c = 0; c < (q4 ? 4 : 8); c++) {
      __m512i v = _mm512_loadu_si512((const void *)(pb + voff + 64 * c));
      if (q4) {
        __m512i lo = _mm512_and_si512(v, lo4), hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), lo4);
        for (int i = 0; i < m; i++) {
          const uint8_t *xb = x[i].q + b * LM_Q8_0_BYTES + 2;
          s[i] = _mm512_dpbusd_epi32(s[i], lo, _mm512_set1_epi32(load32(xb + 4 * c)));
          s[i] = _mm512_dpbusd_epi32(s[i], hi, _mm512_set1_epi32(load32(xb + 16 + 4 * c)));
        }
      } else {
        for (int i = 0; i < m; i++)
          s[i] = _mm512_dpbusd_epi32(s[i], v, _mm512_set1_epi32(load32(x[i].q + b * LM_Q8_0_BYTES + 2 + 4 * c)));
      }
    }
    if (a4) {
      __m512 a = _mm512_loadu_ps(pb + LM_A4_F(0)), cc = _mm512_loadu_ps(pb + LM_A4_F(1));
      for (int i = 0; i < m; i++) {
        __m512 dx = _mm512_set1_ps(x[i].d[b]);
        __m512 u = _mm512_mul_ps(_mm512_cvtepi32_ps(s[i]), _mm512_mul_ps(a, dx));
        u = _mm512_fmadd_ps(_mm512_set1_ps((float)x[i].s[b]), _mm512_mul_ps(cc, dx), u);
        acc[i] = _mm512_add_ps(acc[i], u);
      }
      continue;
    }
    __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)pb));
    for (int i = 0; i < m; i++) acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[i]), _mm512_mul_ps(dw, _mm512_set1_ps(x[i].d[b])), acc[i]);
  }
  for (int i = 0; i < m; i++) _mm512_storeu_ps(out[i], acc[i]);
}

/* AVX2: 8 rows a register (half h of the panel). vpmaddubsw multiplies unsigned by signed bytes
 * into int16 pairs: Q4_0's q (at most 2 * 15 * 127 a pair) directly, with -8 x the block's sum of x
 * as the start; Q8_0 as |w| x sign(x, w) (at most 2 * 128 * 127: no saturation, w + 128 would
 * saturate), no correction; A4 as Q4_0 with no start; vpmaddwd with ones adds the pairs into each
 * row's int32 lane */
AVX2 static INL void avx2_t(const uint8_t *w, int64_t nb, const qrow *x, const int m, const int kind, float out[MR][LM_QP]) {
  const int q4 = kind != K_Q8, a4 = kind == K_A4;
  const size_t pbytes = LM_QP * (a4 ? LM_A4_BYTES : q4 ? LM_Q4_0_BYTES : LM_Q8_0_BYTES), voff = a4 ? 0 : 2 * LM_QP;
  const __m256i lo4 = _mm256_set1_epi8(15), ones = _mm256_set1_epi16(1), off = _mm256_set1_epi8((char)0x80);
  for (int h = 0; h < 2; h++) {
    __m256 acc[MR];
    for (int i = 0; i < m; i++) acc[i] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
      const uint8_t *pb = w + b * pbytes;
      __m256i s[MR];
      for (int i = 0; i < m; i++) s[i] = _mm256_set1_epi32(q4 && !a4 ? x[i].s[b] * -8 : 0);
      for (int c = 0; c < (q4 ? 4 : 8); c++) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(pb + voff + 64 * c + 32 * h));
        if (q4) {
          __m256i lo = _mm256_and_si256(v, lo4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), lo4);
          for (int i = 0; i < m; i++) {
            const uint8_t *xb = x[i].q + b * LM_Q8_0_BYTES + 2;
            __m256i pl = _mm256_maddubs_epi16(lo, _mm256_set1_epi32(load32(xb + 4 * c)));
            __m256i ph = _mm256_maddubs_epi16(hi, _mm256_set1_epi32(load32(xb + 16 + 4 * c)));
            s[i] = _mm256_add_epi32(s[i], _mm256_madd_epi16(_mm256_add_epi16(pl, ph), ones));
          }
        } else {
          __m256i ws = _mm256_xor_si256(v, off), wa = _mm256_abs_epi8(ws);
          for (int i = 0; i < m; i++) {
            __m256i xv = _mm256_set1_epi32(load32(x[i].q + b * LM_Q8_0_BYTES + 2 + 4 * c));
            s[i] = _mm256_add_epi32(s[i], _mm256_madd_epi16(_mm256_maddubs_epi16(wa, _mm256_sign_epi8(xv, ws)), ones));
          }
        }
      }
      if (a4) {
        __m256 a = _mm256_loadu_ps((const float *)(pb + LM_A4_F(0) + 32 * h)), cc = _mm256_loadu_ps((const float *)(pb + LM_A4_F(1) + 32 * h));
        for (int i = 0; i < m; i++) {
          __m256 dx = _mm256_set1_ps(x[i].d[b]);
          __m256 u = _mm256_mul_ps(_mm256_cvtepi32_ps(s[i]), _mm256_mul_ps(a, dx));
          u = _mm256_fmadd_ps(_mm256_set1_ps((float)x[i].s[b]), _mm256_mul_ps(cc, dx), u);
          acc[i] = _mm256_add_ps(acc[i], u);
        }
        continue;
      }
      __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(pb + 16 * h)));
      for (int i = 0; i < m; i++) acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s[i]), _mm256_mul_ps(dw, _mm256_set1_ps(x[i].d[b])), acc[i]);
    }
    for (int i = 0; i < m; i++) _mm256_storeu_ps(out[i] + 8 * h, acc[i]);
  }
}

/* A8 with VNNI: q is an unsigned byte already; groups 0-3 are the first half's values, 4-7 the second's */
VNNI static INL void vnni_a8(const uint8_t *w, int64_t nb, const qrow *x, const int m, float out[MR][LM_QP]) {
  __m512 acc[MR];
  for (int i = 0; i < m; i++) acc[i] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; b++) {
    const uint8_t *pb = w + b * LM_QP * LM_A8_BYTES;
    __m512i s0[MR], s1[MR];
    for (int i = 0; i < m; i++) s0[i] = s1[i] = _mm512_setzero_si512();
    for (int c = 0; c < 4; c++) {
      __m512i v0 = _mm512_loadu_si512((const void *)(pb + LM_A8_GROUP(c)));
      __m512i v1 = _mm512_loadu_si512((const void *)(pb + LM_A8_GROUP(c + 4)));
      for (int i = 0; i < m; i++) {
        const uint8_t *xb = x[i].q + b * LM_Q8_0_BYTES + 2;
        s0[i] = _mm512_dpbusd_epi32(s0[i], v0, _mm512_set1_epi32(load32(xb + 4 * c)));
        s1[i] = _mm512_dpbusd_epi32(s1[i], v1, _mm512_set1_epi32(load32(xb + 16 + 4 * c)));
      }
    }
    __m512 a0 = _mm512_loadu_ps(pb + LM_A8_F(0)), a1 = _mm512_loadu_ps(pb + LM_A8_F(1));
    __m512 c0 = _mm512_loadu_ps(pb + LM_A8_F(2)), c1 = _mm512_loadu_ps(pb + LM_A8_F(3));
    for (int i = 0; i < m; i++) {
      __m512 dx = _mm512_set1_ps(x[i].d[b]);
      __m512 u = _mm512_mul_ps(_mm512_cvtepi32_ps(s0[i]), _mm512_mul_ps(a0, dx));
      u = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s1[i]), _mm512_mul_ps(a1, dx), u);
      u = _mm512_fmadd_ps(_mm512_set1_ps((float)x[i].h[b]), _mm512_mul_ps(c0, dx), u);
      u = _mm512_fmadd_ps(_mm512_set1_ps((float)(x[i].s[b] - x[i].h[b])), _mm512_mul_ps(c1, dx), u);
      acc[i] = _mm512_add_ps(acc[i], u);
    }
  }
  for (int i = 0; i < m; i++) _mm512_storeu_ps(out[i], acc[i]);
}

/* A8 with AVX2: vpmaddubsw on q < 128 (a pair at most 2 * 127 * 127: no saturation) */
AVX2 static INL void avx2_a8(const uint8_t *w, int64_t nb, const qrow *x, const int m, float out[MR][LM_QP]) {
  const __m256i ones = _mm256_set1_epi16(1);
  for (int h = 0; h < 2; h++) {
    __m256 acc[MR];
    for (int i = 0; i < m; i++) acc[i] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
      const uint8_t *pb = w + b * LM_QP * LM_A8_BYTES;
      __m256i s0[MR], s1[MR];
      for (int i = 0; i < m; i++) s0[i] = s1[i] = _mm256_setzero_si256();
      for (int c = 0; c < 4; c++) {
        __m256i v0 = _mm256_loadu_si256((const __m256i *)(pb + LM_A8_GROUP(c) + 32 * h));
        __m256i v1 = _mm256_loadu_si256((const __m256i *)(pb + LM_A8_GROUP(c + 4) + 32 * h));
        for (int i = 0; i < m; i++) {
          const uint8_t *xb = x[i].q + b * LM_Q8_0_BYTES + 2;
          s0[i] = _mm256_add_epi32(s0[i], _mm256_madd_epi16(_mm256_maddubs_epi16(v0, _mm256_set1_epi32(load32(xb + 4 * c))), ones));
          s1[i] = _mm256_add_epi32(s1[i], _mm256_madd_epi16(_mm256_maddubs_epi16(v1, _mm256_set1_epi32(load32(xb + 16 + 4 * c))), ones));
        }
      }
      __m256 a0 = _mm256_loadu_ps((const float *)(pb + LM_A8_F(0) + 32 * h)), a1 = _mm256_loadu_ps((const float *)(pb + LM_A8_F(1) + 32 * h));
      __m256 c0 = _mm256_loadu_ps((const float *)(pb + LM_A8_F(2) + 32 * h)), c1 = _mm256_loadu_ps((const float *)(pb + LM_A8_F(3) + 32 * h));
      for (int i = 0; i < m; i++) {
        __m256 dx = _mm256_set1_ps(x[i].d[b]);
        __m256 u = _mm256_mul_ps(_mm256_cvtepi32_ps(s0[i]), _mm256_mul_ps(a0, dx));
        u = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s1[i]), _mm256_mul_ps(a1, dx), u);
        u = _mm256_fmadd_ps(_mm256_set1_ps((float)x[i].h[b]), _mm256_mul_ps(c0, dx), u);
        u = _mm256_fmadd_ps(_mm256_set1_ps((float)(x[i].s[b] - x[i].h[b])), _mm256_mul_ps(c1, dx), u);
        acc[i] = _mm256_add_ps(acc[i], u);
      }
    }
    for (int i = 0; i < m; i++) _mm256_storeu_ps(out[i] + 8 * h, acc[i]);
  }
}

/* one function per path and type, m a switch over constant instances (the accumulators in registers) */
#define ROWS_SWITCH(CALL)                                                                        \
  switch (m) {                                                                                   \
    case 1: CALL(1); break;                                                                      \
    case 2: CALL(2); break;                                                                      \
    case 3: CALL(3); break;                                                                      \
    case 4: CALL(4); break;                                                                      \
    case 5: CALL(5); break;                                                                      \
    case 6: CALL(6); break;                                                                      \
    case 7: CALL(7); break;                                                                      \
    default: CALL(8); break;                                                                     \
  }
_Static_assert(MR == 8, "ROWS_SWITCH lists the row counts up to MR");
#define SIMD_KERNEL(name, attr)                                                                  \
  attr static void name(const uint8_t *w, int64_t nb, const qrow *x, int m, float out[MR][LM_QP]) { \
    ROWS_SWITCH(name##_CALL)                                                                     \
  }
#define k_q8_vnni_CALL(k) vnni_t(w, nb, x, k, K_Q8, out)
#define k_q4_vnni_CALL(k) vnni_t(w, nb, x, k, K_Q4, out)
#define k_q8_avx2_CALL(k) avx2_t(w, nb, x, k, K_Q8, out)
#define k_q4_avx2_CALL(k) avx2_t(w, nb, x, k, K_Q4, out)
#define k_a8_vnni_CALL(k) vnni_a8(w, nb, x, k, out)
#define k_a8_avx2_CALL(k) avx2_a8(w, nb, x, k, out)
#define k_a4_vnni_CALL(k) vnni_t(w, nb, x, k, K_A4, out)
#define k_a4_avx2_CALL(k) avx2_t(w, nb, x, k, K_A4, out)
SIMD_KERNEL(k_q8_vnni, VNNI)
SIMD_KERNEL(k_q4_vnni, VNNI)
SIMD_KERNEL(k_q8_avx2, AVX2)
SIMD_KERNEL(k_q4_avx2, AVX2)
SIMD_KERNEL(k_a8_vnni, VNNI)
SIMD_KERNEL(k_a8_avx2, AVX2)
SIMD_KERNEL(k_a4_vnni, VNNI)
SIMD_KERNEL(k_a4_avx2, AVX2)
#define KERN(c, a, v) {c, a, v}
#else
#define KERN(c, a, v) {c, NULL, NULL}
#endif

static const struct {
  size_t bytes;
  panel_kernel kern[LM_QPATH_COUNT];   /* by lm_qpath; NULL: not built */
} KERNELS[LM_QW_COUNT] = {
    [LM_QW_Q8_0] = {LM_Q8_0_BYTES, KERN(k_q8_c, k_q8_avx2, k_q8_vnni)},
    [LM_QW_Q4_0] = {LM_Q4_0_BYTES, KERN(k_q4_c, k_q4_avx2, k_q4_vnni)},
    [LM_QW_F16] = {2 * LM_QK, {NULL}},   /* no integer kernel (quant.h) */
    [LM_QW_A8] = {LM_A8_BYTES, KERN(k_a8_c, k_a8_avx2, k_a8_vnni)},
    [LM_QW_A4] = {LM_A4_BYTES, KERN(k_a4_c, k_a4_avx2, k_a4_vnni)},
};

size_t lm_qweight_block_bytes(lm_qweight t) { return t < LM_QW_COUNT ? KERNELS[t].bytes : 0; }

static const char *const PATH_NAMES[LM_QPATH_COUNT] = {"portable", "avx2", "avx512-vnni"};
const char *lm_qpath_name(lm_qpath p) { return p < LM_QPATH_COUNT ? PATH_NAMES[p] : "?"; }

int lm_qpath_available(lm_qpath p) {
  if (p >= LM_QPATH_COUNT || !KERNELS[0].kern[p]) return 0;
#if defined(__x86_64__)
  __builtin_cpu_init();
  /* FMA: the AVX2 and VNNI kernels use it */
  if (p == LM_QPATH_AVX2) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && has_f16c();
  if (p == LM_QPATH_VNNI)
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && has_f16c() && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
#endif
  return 1;
}

lm_qpath lm_qpath_best(void) {
  for (int p = LM_QPATH_COUNT - 1; p > 0; p--)
    if (lm_qpath_available((lm_qpath)p)) return (lm_qpath)p;
  return LM_QPATH_PORTABLE;
}

/* ------------------------------------------------------------------ the products */

/* y's columns in panels p0..p1-1 (weight rows 16 p0 ..) for all n activation rows; each output is
 * one kernel call's */
static void panel_rows(const lm_qmat *W, const qrow *x, int64_t n, const float *bias, float *y, int64_t p0, int64_t p1, lm_qpath path) {
  panel_kernel kern = KERNELS[W->type].kern[path];
  int64_t nb = W->cols / LM_QK, rows = W->rows;
  size_t pbytes = (size_t)nb * LM_QP * KERNELS[W->type].bytes;
  for (int64_t p = p0; p < p1; p++) {
    int64_t r0 = p * LM_QP, nr = rows - r0 < LM_QP ? rows - r0 : LM_QP;
    for (int64_t i0 = 0; i0 < n; i0 += MR) {
      int m = n - i0 < MR ? (int)(n - i0) : MR;
      float out[MR][LM_QP];
      kern(W->data + (size_t)p * pbytes, nb, x + i0, m, out);
      for (int i = 0; i < m; i++)
        for (int64_t l = 0; l < nr; l++) y[(i0 + i) * rows + r0 + l] = bias ? out[i][l] + bias[r0 + l] : out[i][l];
    }
  }
}

static void qmatmul_rows(const lm_qmat *W, const qrow *x, int64_t n, const float *bias, float *y, lm_qpath p) {
  int64_t np = (W->rows + LM_QP - 1) / LM_QP;
  /* dynamic: a thread that shares its core with another job takes fewer panels instead of holding
   * the others up at the end (each output is one thread's work, so the bits do not depend on it) */
  #pragma omp parallel for schedule(dynamic, 1) if (W->rows * W->cols * n >= (1 << 17))
  for (int64_t t = 0; t < np; t++) panel_rows(W, x, n, bias, y, t, t + 1, p);
}

void lm_qmatmul_prepare_row(const float *x, int64_t n, int64_t cols, void *scratch, int64_t i) {
  prepare_row(x, NULL, n, cols, scratch, i);
}

void lm_qmatmul_prepare_cols(const float *x, int64_t n, int64_t cols, void *scratch, int64_t i, int64_t c0, int64_t c1) {
  prepare_blocks(x, NULL, n, cols, scratch, i, c0 / LM_QK, c1 / LM_QK);
}

void lm_qmatmul_part(const lm_qmat *W, int64_t n, const float *bias, float *y, void *scratch, int64_t r0, int64_t r1, lm_qpath p) {
  panel_rows(W, scratch_rows(scratch), n, bias, y, r0 / LM_QP, (r1 + LM_QP - 1) / LM_QP, p);
}

void lm_qmatmul(const lm_qmat *W, const float *x, int64_t n, const float *bias, float *y, void *scratch, lm_qpath p) {
  const qrow *xr = prepare(x, NULL, n, W->cols, scratch);
  qmatmul_rows(W, xr, n, bias, y, p);
}

void lm_qmatvec(const lm_qmat *W, const uint8_t *xq, float *y, lm_qpath p) {
  void *scratch = malloc(lm_qmatmul_scratch(1, W->cols));
  if (!scratch) { for (int64_t r = 0; r < W->rows; r++) y[r] = NAN; return; }
  const qrow *xr = prepare(NULL, xq, 1, W->cols, scratch);
  qmatmul_rows(W, xr, 1, NULL, y, p);
  free(scratch);
}
