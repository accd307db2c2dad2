/* quant.c — quantized matrix kernels and the f16 conversions (quant.h).
 *
 * One table (KERNELS) gives, per weight type and path, the row kernel: one weight row against up
 * to 4 prepared activation rows (the weight block is loaded and unpacked once for all of them).
 * lm_qmatmul quantizes the activations once per row and is the one loop over tiles of weight rows
 * that calls it. In a block, lane k's integer sum over values 4k..4k+3 is exact on every path:
 *   - portable C: the sum as written;
 *   - AVX2: vpmaddubsw (u8 x s8 pairs into int16: at most 2 * 128 * 127, no saturation), then
 *     vpmaddwd with ones into the int32 lanes;
 *   - AVX-512 VNNI: vpdpbusd (u8 x s8, four products into each int32 lane at once), on 256-bit
 *     registers (its AVX512VL form).
 * Q8_0 multiplies |w| by x * sign(w) (u8 x s8). Q4_0 multiplies the unsigned nibbles q by x and
 * subtracts 8 x (the lane's sum of x), computed once per activation block: sum (q - 8) x exactly.
 * Then every path does the same float operations in the same order (quant.h), so all paths give
 * the same bits. */
/* the scale multiply and the sum are two roundings on every path (no a*b + c as one FMA) */
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

/* ------------------------------------------------------------------ activations, prepared */

/* One activation row as the kernels read it: its Q8_0 blocks, their scales as f32, and per block
 * 8 x the sum of each lane's 4 values (Q4_0's offset of 8, exact in int32). */
typedef struct {
  const uint8_t *q;     /* nb blocks of 34 bytes */
  const float *d;       /* nb */
  const int32_t *c8;    /* nb x 8 */
} qrow;

#define ALIGN64(n) (((n) + 63) & ~(size_t)63)

size_t lm_qmatmul_scratch(int64_t n, int64_t cols) {
  size_t nb = (size_t)(cols / LM_QK);
  return ALIGN64((size_t)n * sizeof(qrow)) + ALIGN64((size_t)n * nb * LM_Q8_0_BYTES) + ALIGN64((size_t)n * nb * sizeof(float)) +
         ALIGN64((size_t)n * nb * 8 * sizeof(int32_t)) + 64;
}

/* the scratch's n prepared rows (the layout depends on n and cols only) */
static qrow *scratch_rows(void *scratch) { return (qrow *)ALIGN64((uintptr_t)scratch); }

/* prepares row i of n into the scratch; xq given (already quantized) or NULL (quantize x) */
static void prepare_row(const float *x, const uint8_t *xq, int64_t n, int64_t cols, void *scratch, int64_t i) {
  int64_t nb = cols / LM_QK;
  uint8_t *p = (uint8_t *)ALIGN64((uintptr_t)scratch);
  qrow *rows = (qrow *)p;
  p += ALIGN64((size_t)n * sizeof(qrow));
  uint8_t *q = p;
  p += ALIGN64((size_t)n * nb * LM_Q8_0_BYTES);
  float *d = (float *)p;
  p += ALIGN64((size_t)n * nb * sizeof(float));
  int32_t *c8 = (int32_t *)p;
  uint8_t *qi = q + (size_t)i * nb * LM_Q8_0_BYTES;
  if (xq) memcpy(qi, xq + (size_t)i * nb * LM_Q8_0_BYTES, (size_t)nb * LM_Q8_0_BYTES);
  else lm_quant_act_q8(x + i * cols, cols, qi);
  for (int64_t b = 0; b < nb; b++) {
    const uint8_t *blk = qi + b * LM_Q8_0_BYTES;
    const int8_t *v = (const int8_t *)(blk + 2);
    d[i * nb + b] = scale_at(blk);
    for (int k = 0; k < 8; k++) c8[(i * nb + b) * 8 + k] = 8 * (v[4 * k] + v[4 * k + 1] + v[4 * k + 2] + v[4 * k + 3]);
  }
  rows[i] = (qrow){qi, d + i * nb, c8 + i * nb * 8};
}

/* fills the scratch with n prepared rows */
static qrow *prepare(const float *x, const uint8_t *xq, int64_t n, int64_t cols, void *scratch) {
  #pragma omp parallel for schedule(static) if (n * cols >= (1 << 16))
  for (int64_t i = 0; i < n; i++) prepare_row(x, xq, n, cols, scratch, i);
  return scratch_rows(scratch);
}

/* ------------------------------------------------------------------ row kernels */

/* out[i] = row w (nb blocks) . x[i], i < m <= 4 */
typedef void (*row_kernel)(const uint8_t *w, int64_t nb, const qrow *x, int m, float *out);

static inline float hsum_lanes(const float *a) { return ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7])); }

static inline int q8_val(const uint8_t *wb, int j) { return (int8_t)wb[2 + j]; }
static inline int q4_val(const uint8_t *wb, int j) { return j < 16 ? (wb[2 + j] & 15) - 8 : (wb[2 + j - 16] >> 4) - 8; }

#define PORTABLE_KERNEL(name, bytes, val)                                                        \
  static void name(const uint8_t *w, int64_t nb, const qrow *x, int m, float *out) {            \
    float acc[4][8] = {{0}};                                                                     \
    for (int64_t b = 0; b < nb; b++) {                                                           \
      const uint8_t *wb = w + b * (bytes);                                                       \
      float dw = scale_at(wb);                                                                   \
      for (int i = 0; i < m; i++) {                                                              \
        const int8_t *xv = (const int8_t *)(x[i].q + b * LM_Q8_0_BYTES + 2);                     \
        float s = dw * x[i].d[b];                                                                \
        for (int k = 0; k < 8; k++) {                                                            \
          int32_t is = 0;                                                                        \
          for (int j = 4 * k; j < 4 * k + 4; j++) is += val(wb, j) * xv[j];                      \
          acc[i][k] += (float)is * s;                                                            \
        }                                                                                        \
      }                                                                                          \
    }                                                                                            \
    for (int i = 0; i < m; i++) out[i] = hsum_lanes(acc[i]);                                     \
  }
PORTABLE_KERNEL(k_q8_c, LM_Q8_0_BYTES, q8_val)
PORTABLE_KERNEL(k_q4_c, LM_Q4_0_BYTES, q4_val)

#if defined(__x86_64__)
#define AVX2 __attribute__((target("avx2,f16c")))
#define VNNI __attribute__((target("avx2,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))
#define INL inline __attribute__((always_inline))

AVX2 static INL float hsum8_ps(__m256 v) {   /* hsum_lanes' order */
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));   /* a0+a4, a1+a5, a2+a6, a3+a7 */
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));                                           /* (a0+a4)+(a2+a6), (a1+a5)+(a3+a7) */
  return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}
AVX2 static INL float f16c_scale(const uint8_t *p) { return _cvtsh_ss((unsigned short)(p[0] | p[1] << 8)); }
/* Q4_0's 16 bytes -> the 32 unsigned nibbles q in value order (low nibbles are values 0..15) */
AVX2 static INL __m256i nibbles(const uint8_t *wb) {
  __m128i q = _mm_loadu_si128((const __m128i *)(wb + 2)), m = _mm_set1_epi8(15);
  return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), m), _mm_and_si128(q, m));
}

/* The SIMD row kernel: LANES(a, xv, i) gives block b's int32 lanes against row i, from `a` (the
 * weight block as prepared by PREP) */
#define SIMD_KERNEL(name, attr, bytes, PREP, LANES)                                              \
  attr static INL void name##_m(const uint8_t *w, int64_t nb, const qrow *x, const int m, float *out) { \
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()}; \
    for (int64_t b = 0; b < nb; b++) {                                                           \
      const uint8_t *wb = w + b * (bytes);                                                       \
      __m256i a = PREP;                                                                          \
      float dw = f16c_scale(wb);                                                                 \
      for (int i = 0; i < m; i++) {                                                              \
        __m256i xv = _mm256_loadu_si256((const __m256i *)(x[i].q + b * LM_Q8_0_BYTES + 2));     \
        __m256i is = LANES;                                                                      \
        acc[i] = _mm256_add_ps(acc[i], _mm256_mul_ps(_mm256_cvtepi32_ps(is), _mm256_set1_ps(dw * x[i].d[b]))); \
      }                                                                                          \
    }                                                                                            \
    for (int i = 0; i < m; i++) out[i] = hsum8_ps(acc[i]);                                       \
  }                                                                                              \
  attr static void name(const uint8_t *w, int64_t nb, const qrow *x, int m, float *out) {       \
    switch (m) {                                                                                 \
      case 1: name##_m(w, nb, x, 1, out); break;                                                 \
      case 2: name##_m(w, nb, x, 2, out); break;                                                 \
      case 3: name##_m(w, nb, x, 3, out); break;                                                 \
      default: name##_m(w, nb, x, 4, out); break;                                                \
    }                                                                                            \
  }

#define C8(i) _mm256_loadu_si256((const __m256i *)(x[i].c8 + b * 8))
#define ONES16 _mm256_set1_epi16(1)
SIMD_KERNEL(k_q8_avx2, AVX2, LM_Q8_0_BYTES, _mm256_loadu_si256((const __m256i *)(wb + 2)),
            _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(a, a), _mm256_sign_epi8(xv, a)), ONES16))
SIMD_KERNEL(k_q4_avx2, AVX2, LM_Q4_0_BYTES, nibbles(wb),
            _mm256_sub_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(a, xv), ONES16), C8(i)))
SIMD_KERNEL(k_q8_vnni, VNNI, LM_Q8_0_BYTES, _mm256_loadu_si256((const __m256i *)(wb + 2)),
            _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_abs_epi8(a), _mm256_sign_epi8(xv, a)))
SIMD_KERNEL(k_q4_vnni, VNNI, LM_Q4_0_BYTES, nibbles(wb),
            _mm256_sub_epi32(_mm256_dpbusd_epi32(_mm256_setzero_si256(), a, xv), C8(i)))
#define KERN(c, a, v) {c, a, v}
#else
#define KERN(c, a, v) {c, NULL, NULL}
#endif

static const struct {
  size_t bytes;
  row_kernel kern[LM_QPATH_COUNT];   /* by lm_qpath; NULL: not built */
} KERNELS[LM_QW_COUNT] = {
    [LM_QW_Q8_0] = {LM_Q8_0_BYTES, KERN(k_q8_c, k_q8_avx2, k_q8_vnni)},
    [LM_QW_Q4_0] = {LM_Q4_0_BYTES, KERN(k_q4_c, k_q4_avx2, k_q4_vnni)},
    [LM_QW_F16] = {2 * LM_QK, {NULL}},   /* no integer kernel (quant.h) */
};

size_t lm_qweight_block_bytes(lm_qweight t) { return t < LM_QW_COUNT ? KERNELS[t].bytes : 0; }

static const char *const PATH_NAMES[LM_QPATH_COUNT] = {"portable", "avx2", "avx512-vnni"};
const char *lm_qpath_name(lm_qpath p) { return p < LM_QPATH_COUNT ? PATH_NAMES[p] : "?"; }

int lm_qpath_available(lm_qpath p) {
  if (p >= LM_QPATH_COUNT || !KERNELS[0].kern[p]) return 0;
#if defined(__x86_64__)
  __builtin_cpu_init();
  /* FMA: qgemm.c's AVX2 and VNNI kernels use it */
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

#define TILE 16   /* weight rows a thread takes at a time: each is read once for all activation rows */

/* y's columns r0..r1 (weight rows) for all n activation rows; each output is one kernel call's */
static void tile_rows(row_kernel kern, const uint8_t *w, size_t row_bytes, int64_t rows, int64_t nb, const qrow *x, int64_t n,
                      const float *bias, float *y, int64_t r0, int64_t r1) {
  for (int64_t i0 = 0; i0 < n; i0 += 4) {
    int m = n - i0 < 4 ? (int)(n - i0) : 4;
    for (int64_t r = r0; r < r1; r++) {
      float out[4];
      kern(w + (size_t)r * row_bytes, nb, x + i0, m, out);
      for (int i = 0; i < m; i++) y[(i0 + i) * rows + r] = bias ? out[i] + bias[r] : out[i];
    }
  }
}

static void qmatmul_rows(lm_qweight wt, const uint8_t *w, int64_t rows, int64_t cols, const qrow *x, int64_t n,
                         const float *bias, float *y, lm_qpath p) {
  row_kernel kern = KERNELS[wt].kern[p];
  int64_t nb = cols / LM_QK, tiles = (rows + TILE - 1) / TILE;
  size_t row_bytes = (size_t)nb * KERNELS[wt].bytes;
  /* dynamic: a thread that shares its core with another job takes fewer tiles instead of holding
   * the others up at the end (each output is one thread's work, so the bits do not depend on it) */
  #pragma omp parallel for schedule(dynamic, 1) if (rows * nb * n >= (1 << 12))
  for (int64_t t = 0; t < tiles; t++)
    tile_rows(kern, w, row_bytes, rows, nb, x, n, bias, y, t * TILE, (t + 1) * TILE < rows ? (t + 1) * TILE : rows);
}

void lm_qmatmul_prepare_row(const float *x, int64_t n, int64_t cols, void *scratch, int64_t i) {
  prepare_row(x, NULL, n, cols, scratch, i);
}

void lm_qmatmul_part(const lm_qmat *W, int64_t n, const float *bias, float *y, void *scratch, int64_t r0, int64_t r1, lm_qpath p) {
  int64_t nb = W->cols / LM_QK;
  tile_rows(KERNELS[W->type].kern[p], W->data, (size_t)nb * KERNELS[W->type].bytes, W->rows, nb, scratch_rows(scratch), n, bias, y,
            r0, r1);
}

void lm_qmatmul(const lm_qmat *W, const float *x, int64_t n, const float *bias, float *y, void *scratch, lm_qpath p) {
  const qrow *xr = prepare(x, NULL, n, W->cols, scratch);
  qmatmul_rows(W->type, W->data, W->rows, W->cols, xr, n, bias, y, p);
}

void lm_qmatvec(lm_qweight wt, const void *w, int64_t rows, int64_t cols, const uint8_t *xq, float *y, lm_qpath p) {
  void *scratch = malloc(lm_qmatmul_scratch(1, cols));
  if (!scratch) { for (int64_t r = 0; r < rows; r++) y[r] = NAN; return; }
  const qrow *xr = prepare(NULL, xq, 1, cols, scratch);
  qmatmul_rows(wt, w, rows, cols, xr, 1, NULL, y, p);
  free(scratch);
}
