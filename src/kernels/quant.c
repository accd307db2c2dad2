/* quant.c — quantized matrix-vector kernels and the f16 conversions (quant.h).
 *
 * One table (WEIGHTS) gives, per weight type, the block size and the block dot product of each
 * path; lm_qmatvec is the one loop over rows and blocks that calls it. A block dot product is an
 * exact int32 sum of 32 int8 x int8 products:
 *   - portable C: the sum as written;
 *   - AVX2: vpmaddubsw on |w| and x * sign(w) (u8 x s8 pairs into int16: at most 2 * 128 * 127, no
 *     saturation), vpmaddwd into int32;
 *   - AVX-512 VNNI: vpdpbusd (u8 x s8, four products into each int32 at once) on |w| and
 *     x * sign(w).
 * Q4_0's nibbles are unpacked to bytes q - 8 first. The scale multiply and the accumulation over
 * blocks are the same scalar code for every path, so all paths give the same bits. */
/* the scale multiply and the sum are two roundings on every path (no a*b + c as one FMA) */
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif
#include "kernels/quant.h"
#include <math.h>
#include <string.h>
#if defined(__x86_64__)
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

static inline float scale_at(const uint8_t *p) { return lm_f16_to_f32((uint16_t)(p[0] | p[1] << 8)); }

/* ------------------------------------------------------------------ activations */

/* ggml's quantize_row_q8_0_ref: d = max|x| / 127, q = roundf(x / d) */
void lm_quant_act_q8(const float *x, int64_t n, uint8_t *out) {
  for (int64_t b = 0; b < n / LM_QK; b++, x += LM_QK, out += LM_Q8_0_BYTES) {
    float amax = 0;
    for (int j = 0; j < LM_QK; j++) amax = fmaxf(amax, fabsf(x[j]));
    float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
    uint16_t h = lm_f32_to_f16(d);
    out[0] = (uint8_t)h; out[1] = (uint8_t)(h >> 8);
    for (int j = 0; j < LM_QK; j++) out[2 + j] = (uint8_t)(int8_t)roundf(x[j] * id);
  }
}

/* ------------------------------------------------------------------ block dot products */

typedef int32_t (*block_dot)(const uint8_t *w, const int8_t *x);
typedef float (*block_scale)(const uint8_t *p);   /* a block's f16 scale as f32 (exact on every path) */

static int32_t dot_q8_c(const uint8_t *w, const int8_t *x) {
  const int8_t *q = (const int8_t *)(w + 2);
  int32_t s = 0;
  for (int j = 0; j < LM_QK; j++) s += q[j] * x[j];
  return s;
}

static int32_t dot_q4_c(const uint8_t *w, const int8_t *x) {
  int32_t s = 0;
  for (int j = 0; j < LM_QK / 2; j++) s += ((w[2 + j] & 15) - 8) * x[j] + ((w[2 + j] >> 4) - 8) * x[j + 16];
  return s;
}

#if defined(__x86_64__)
#define AVX2 __attribute__((target("avx2")))
#define VNNI __attribute__((target("avx2,avx512f,avx512bw,avx512vl,avx512vnni")))

AVX2 static inline int32_t hsum8(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
  return _mm_cvtsi128_si32(s);
}
/* Q4_0's 16 bytes -> 32 signed bytes q - 8, in value order (low nibbles are values 0..15) */
AVX2 static inline __m256i unpack_q4(const uint8_t *w) {
  __m128i q = _mm_loadu_si128((const __m128i *)(w + 2)), m = _mm_set1_epi8(15);
  __m256i a = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), m), _mm_and_si128(q, m));
  return _mm256_sub_epi8(a, _mm256_set1_epi8(8));
}
AVX2 static inline int32_t dot_avx2(__m256i a, const int8_t *x) {
  __m256i b = _mm256_loadu_si256((const __m256i *)x);
  __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(a, a), _mm256_sign_epi8(b, a));
  return hsum8(_mm256_madd_epi16(p, _mm256_set1_epi16(1)));
}
AVX2 static int32_t dot_q8_avx2(const uint8_t *w, const int8_t *x) {
  return dot_avx2(_mm256_loadu_si256((const __m256i *)(w + 2)), x);
}
AVX2 static int32_t dot_q4_avx2(const uint8_t *w, const int8_t *x) { return dot_avx2(unpack_q4(w), x); }
__attribute__((target("f16c"))) static float scale_f16c(const uint8_t *p) { return _cvtsh_ss((unsigned short)(p[0] | p[1] << 8)); }

VNNI static inline int32_t dot_vnni(__m256i a, const int8_t *x) {
  __m256i b = _mm256_loadu_si256((const __m256i *)x);
  return hsum8(_mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_abs_epi8(a), _mm256_sign_epi8(b, a)));
}
VNNI static int32_t dot_q8_vnni(const uint8_t *w, const int8_t *x) {
  return dot_vnni(_mm256_loadu_si256((const __m256i *)(w + 2)), x);
}
VNNI static int32_t dot_q4_vnni(const uint8_t *w, const int8_t *x) { return dot_vnni(unpack_q4(w), x); }
#define DOTS(c, a, v) {c, a, v}
#define SCALES {scale_at, scale_f16c, scale_f16c}
#else
#define DOTS(c, a, v) {c, NULL, NULL}
#define SCALES {scale_at, NULL, NULL}
#endif
static const block_scale SCALE[LM_QPATH_COUNT] = SCALES;

static const struct {
  size_t bytes;
  block_dot dot[LM_QPATH_COUNT];   /* by lm_qpath; NULL: not built */
} WEIGHTS[LM_QW_COUNT] = {
    [LM_QW_Q8_0] = {LM_Q8_0_BYTES, DOTS(dot_q8_c, dot_q8_avx2, dot_q8_vnni)},
    [LM_QW_Q4_0] = {LM_Q4_0_BYTES, DOTS(dot_q4_c, dot_q4_avx2, dot_q4_vnni)},
};

static const char *const PATH_NAMES[LM_QPATH_COUNT] = {"portable", "avx2", "avx512-vnni"};
const char *lm_qpath_name(lm_qpath p) { return p < LM_QPATH_COUNT ? PATH_NAMES[p] : "?"; }

int lm_qpath_available(lm_qpath p) {
  if (p >= LM_QPATH_COUNT || !WEIGHTS[0].dot[p]) return 0;
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (p == LM_QPATH_AVX2) return __builtin_cpu_supports("avx2");
  if (p == LM_QPATH_VNNI)
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512vnni");
#endif
  return 1;
}

lm_qpath lm_qpath_best(void) {
  for (int p = LM_QPATH_COUNT - 1; p > 0; p--)
    if (lm_qpath_available((lm_qpath)p)) return (lm_qpath)p;
  return LM_QPATH_PORTABLE;
}

void lm_qmatvec(lm_qweight wt, const void *w, int64_t rows, int64_t cols, const uint8_t *xq, float *y, lm_qpath p) {
  block_dot dot = WEIGHTS[wt].dot[p];
  block_scale scale = SCALE[p];
  size_t bytes = WEIGHTS[wt].bytes;
  int64_t nb = cols / LM_QK;
  size_t row_bytes = (size_t)nb * bytes;
  float dx[512];   /* the activations' scales, converted once per chunk of blocks */
  for (int64_t r = 0; r < rows; r++) y[r] = 0;
  for (int64_t b0 = 0; b0 < nb; b0 += 512) {
    int64_t n = nb - b0 < 512 ? nb - b0 : 512;
    for (int64_t b = 0; b < n; b++) dx[b] = scale(xq + (size_t)(b0 + b) * LM_Q8_0_BYTES);
    #pragma omp parallel for schedule(static) if (rows * n >= (1 << 13))
    for (int64_t r = 0; r < rows; r++) {
      const uint8_t *wr = (const uint8_t *)w + (size_t)r * row_bytes + (size_t)b0 * bytes;
      const uint8_t *xr = xq + (size_t)b0 * LM_Q8_0_BYTES;
      float s = y[r];
      for (int64_t b = 0; b < n; b++) {
        const uint8_t *wb = wr + (size_t)b * bytes;
        int32_t isum = dot(wb, (const int8_t *)(xr + (size_t)b * LM_Q8_0_BYTES + 2));
        s += (float)isum * (scale(wb) * dx[b]);
      }
      y[r] = s;
    }
  }
}
