/* linear.c — out(n,OC) = inp(n,C) @ W(OC,C)^T + b for the few rows of a decode step (linear.h).
 *
 * A decode step of n sequences multiplies n activation rows by every weight matrix. At n = 1 the
 * product streams the weights from memory once and is bound by bandwidth; at n = 8 the same
 * stream feeds 8x the arithmetic, and the kernel becomes bound by the FMA units: one dot product
 * is a chain of dependent FMAs, so the kernel keeps WR x XR of them going at once (WR weight rows
 * times XR input rows, 16 accumulators of 16 floats), each weight vector loaded once for the XR
 * rows and each input vector once for the WR weight rows. The weights are read once per step for
 * all n rows: each block of WR weight rows (12 KB at C = 768) stays in L1 while the input rows
 * pass over it. sgemm would first pack the whole matrix, which at this size costs more memory
 * traffic than it saves (bench/linear_few.c measures both).
 *
 * Every output is the same sum in the same order: 16 lanes accumulated with fused multiply-adds
 * over k in steps of 16 (the last step zero-filled), then the lanes added by one fixed tree, then
 * the bias. So a row's result does not depend on n, on where the row sits in its block, on the
 * thread count, or on the vector width the CPU has (AVX-512, AVX2 + FMA, or plain C with fmaf
 * give the same bits): a request gets the same logits however many others share its step. One
 * input row (a lone decode step) takes the weight rows one at a time, one stream rather than WR
 * rows C apart: at 1 thread (CPU time, forty 3072 x 768 f32 matrices, loaded machine) 1.04-1.23x
 * the GB/s of blocks of 4; GPT-2 124M f32 decode, 5 alternating pairs, 41 vs 38 tok/s in CPU time.
 *
 * Weights kept as f16 (lm_linear_rows_f16: half the bytes to stream) run the same kernel with each
 * 16-value load converted to f32 (F16C's vcvtph2ps, exact; a build for CPUs without it calls
 * lm_f16_to_f32_row, F16C or plain C as the CPU has it): the same sums in the same order as on the
 * weights converted to f32 beforehand, so the same bits. They are packed at load in panels of WR
 * rows, 16 values a row in turn (quant.h LM_HP), so that a block reads one stream front to back, not
 * four rows 2C bytes apart: at 1 thread (CPU time, twelve 5632 x 2048 matrices, out of cache, on
 * the loaded machine) one input row 1.14-1.17x the row-major kernel's GB/s, 4 and 8 rows the same
 * within noise, 2 rows 0.92-0.95x. */
#include <math.h>
#include <string.h>
#include "infer/linear.h"
#include "kernels/quant.h"
#if defined(__AVX512F__) || defined(__FMA__)
#include <immintrin.h>
#endif

typedef float v16 __attribute__((vector_size(64)));
typedef float v8 __attribute__((vector_size(32)));
typedef float v4 __attribute__((vector_size(16)));

#define WR 4   /* weight rows per block */
#define XR 4   /* input rows per block */

static inline v16 load16(const float *p) { v16 v; memcpy(&v, p, sizeof v); return v; }

/* 16 f16 values as f32 (exact): inline when the build targets F16C, else quant.c's row conversion,
 * which uses F16C when this CPU has it (chosen at run time) */
static inline v16 load16_h(const uint16_t *p) {
#if defined(__AVX512F__)
  return (v16)_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
#elif defined(__F16C__)
  __m256 r[2] = {_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)), _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p + 8)))};
  v16 o; memcpy(&o, r, sizeof o); return o;
#else
  float f[16];
  lm_f16_to_f32_row(p, f, 16);
  v16 o; memcpy(&o, f, sizeof o); return o;
#endif
}

/* v, in a register: the compiler cannot fold its load into each FMA that uses it (a 64-byte
 * vector fits one register only with AVX-512; elsewhere the compiler splits it as it likes) */
#ifdef __AVX512F__
static inline v16 reg16(v16 v) { __asm__("" : "+v"(v)); return v; }
#else
static inline v16 reg16(v16 v) { return v; }
#endif

/* the last m < 16 values, zero-filled: 0*0 added to a lane leaves it unchanged */
static inline v16 load_tail(const float *p, int64_t m) { v16 v = {0}; memcpy(&v, p, (size_t)m * sizeof(float)); return v; }
static inline v16 load_tail_h(const uint16_t *p, int64_t m) { v16 v = {0}; for (int64_t j = 0; j < m; j++) v[j] = lm_f16_to_f32(p[j]); return v; }

/* where row r's values k..k+15 are (k a multiple of 16) in w, rows C apart or (P) in f16 panels
 * (quant.h: w at the block's first row; the panel's chunk k / 16 holds these 16 values of each of
 * its LM_HP rows, a row's 16 after the previous row's) */
#define WOFF(P, r, k, C) ((P) ? (k) / 16 * (16 * LM_HP) + (r) * 16 : (r) * (C) + (k))
/* row r's values k..k+15 of w: f32 or, when H, f16 */
#define WLOAD(H, w, off) ((H) ? load16_h((const uint16_t *)(w) + (off)) : load16((const float *)(w) + (off)))
#define WTAIL(H, w, off, m) ((H) ? load_tail_h((const uint16_t *)(w) + (off), m) : load_tail((const float *)(w) + (off), m))
#define WADDR(H, w, off) ((H) ? (const void *)((const uint16_t *)(w) + (off)) : (const void *)((const float *)(w) + (off)))

/* c + a*b rounded once, lane by lane, on any CPU */
static inline v16 fma16(v16 a, v16 b, v16 c) {
#if defined(__AVX512F__)
  return (v16)_mm512_fmadd_ps((__m512)a, (__m512)b, (__m512)c);
#elif defined(__FMA__)
  __m256 r[2];
  for (int h = 0; h < 2; h++)
    r[h] = _mm256_fmadd_ps(_mm256_loadu_ps((const float *)&a + 8 * h), _mm256_loadu_ps((const float *)&b + 8 * h),
                           _mm256_loadu_ps((const float *)&c + 8 * h));
  v16 o; memcpy(&o, r, sizeof o); return o;
#else
  v16 o;
  for (int j = 0; j < 16; j++) o[j] = fmaf(a[j], b[j], c[j]);
  return o;
#endif
}

/* the lane sum: lanes j + j+8, then j + j+4, j + j+2, j + j+1 */
static inline float hsum1(v16 a) {
  v8 h8 = __builtin_shufflevector(a, a, 0, 1, 2, 3, 4, 5, 6, 7) + __builtin_shufflevector(a, a, 8, 9, 10, 11, 12, 13, 14, 15);
  v4 h4 = __builtin_shufflevector(h8, h8, 0, 1, 2, 3) + __builtin_shufflevector(h8, h8, 4, 5, 6, 7);
  float h2a = h4[0] + h4[2], h2b = h4[1] + h4[3];
  return h2a + h2b;
}

/* four lane sums at once, each by hsum1's tree (the same additions, so the same bits) */
static inline v4 hsum4(v16 a, v16 b, v16 c, v16 d) {
  v16 ab = __builtin_shufflevector(a, b, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23) +
           __builtin_shufflevector(a, b, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
  v16 cd = __builtin_shufflevector(c, d, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23) +
           __builtin_shufflevector(c, d, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
  /* ab = [a's 8 | b's 8]: lanes j + j+4 within each 8 */
  v16 q = __builtin_shufflevector(ab, cd, 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27) +
          __builtin_shufflevector(ab, cd, 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
  /* q = [a's 4 | b's 4 | c's 4 | d's 4]: lanes j + j+2 within each 4, then j + j+1 */
  v8 p = __builtin_shufflevector(q, q, 0, 1, 4, 5, 8, 9, 12, 13) + __builtin_shufflevector(q, q, 2, 3, 6, 7, 10, 11, 14, 15);
  return __builtin_shufflevector(p, p, 0, 2, 4, 6) + __builtin_shufflevector(p, p, 1, 3, 5, 7);
}

/* out[i*OC + r] for r < R weight rows (w, C apart; f16 when H, in panels when P: C a multiple of 16)
 * and i < N input rows (x, C apart); R, N, H, P constant */
static inline __attribute__((always_inline)) void block(float *out, int64_t OC, const float *x, const void *w,
                                                        const float *b, int64_t C, const int R, const int N, const int H,
                                                        const int P) {
  v16 acc[WR][XR];
  for (int r = 0; r < R; r++)
    for (int i = 0; i < N; i++) acc[r][i] = (v16){0};
  int64_t k = 0;
  for (; k + 16 <= C; k += 16) {
    v16 wv[WR], xv[XR];
    /* each vector into a register once: folded into the FMAs, it would be loaded N (or R) times */
    for (int r = 0; r < R; r++) wv[r] = reg16(WLOAD(H, w, WOFF(P, r, k, C)));
    /* the next block's weights, on their way from memory while these are multiplied (past the
     * matrix's end on the last block: a prefetch never faults). A panel is one stream, which the
     * hardware prefetcher follows alone for one input row (faster without); with more rows (more
     * arithmetic between loads) the next panel's same two lines */
    for (int r = 0; r < R && !P; r++) __builtin_prefetch(WADDR(H, w, (WR + r) * C + k));
    if (P && N >= 2) {
      __builtin_prefetch(WADDR(H, w, WR * C + WOFF(P, 0, k, C)));
      __builtin_prefetch(WADDR(H, w, WR * C + WOFF(P, 2, k, C)));
    }
    for (int i = 0; i < N; i++) xv[i] = reg16(load16(x + i * C + k));
    for (int r = 0; r < R; r++)
      for (int i = 0; i < N; i++) acc[r][i] = fma16(xv[i], wv[r], acc[r][i]);
  }
  if (!P && k < C) {   /* panels: C is a multiple of 16 */
    v16 wv[WR], xv[XR];
    for (int r = 0; r < R; r++) wv[r] = WTAIL(H, w, r * C + k, C - k);
    for (int i = 0; i < N; i++) xv[i] = load_tail(x + i * C + k, C - k);
    for (int r = 0; r < R; r++)
      for (int i = 0; i < N; i++) acc[r][i] = fma16(xv[i], wv[r], acc[r][i]);
  }
  for (int i = 0; i < N; i++) {
    float *o = out + i * OC;
    int r = 0;
    for (; r + 4 <= R; r += 4) {
      v4 s = hsum4(acc[r][i], acc[r + 1][i], acc[r + 2][i], acc[r + 3][i]);
      for (int j = 0; j < 4; j++) o[r + j] = s[j] + (b ? b[r + j] : 0.0f);
    }
    for (; r < R; r++) o[r] = hsum1(acc[r][i]) + (b ? b[r] : 0.0f);
  }
}

/* rows o.. of out for all n input rows: blocks of R weight rows x up to XR input rows */
#define BLOCKS(R, H, P)                                                                           \
  for (int64_t i = 0; i < n; i += XR) {                                                           \
    float *o = out + i * OC;                                                                      \
    const float *x = inp + i * C;                                                                 \
    switch (n - i < XR ? (int)(n - i) : XR) { /* constant shapes: each unrolled into registers */ \
      case 1: block(o, OC, x, w, b, C, R, 1, H, P); break;                                        \
      case 2: block(o, OC, x, w, b, C, R, 2, H, P); break;                                        \
      case 3: block(o, OC, x, w, b, C, R, 3, H, P); break;                                        \
      default: block(o, OC, x, w, b, C, R, XR, H, P); break;                                      \
    }                                                                                             \
  }

static void full_block(float *out, const float *inp, const float *w, const float *b, int64_t n, int64_t C, int64_t OC) { BLOCKS(WR, 0, 0) }
static void one_row(float *out, const float *inp, const float *w, const float *b, int64_t n, int64_t C, int64_t OC) { BLOCKS(1, 0, 0) }
static void full_block_h(float *out, const float *inp, const uint16_t *w, const float *b, int64_t n, int64_t C, int64_t OC) { BLOCKS(WR, 1, 1) }
static void one_row_h(float *out, const float *inp, const uint16_t *w, const float *b, int64_t n, int64_t C, int64_t OC) { BLOCKS(1, 1, 1) }

/* the one loop over blocks of weight rows, for either weight type (direct calls: no pointer per block) */
#define ROWS(full, one)                                                                           \
  /* a small matrix is done before a fork/join would pay for itself */                            \
  _Pragma("omp parallel for schedule(static) if (OC * C >= (1 << 18))")                           \
  for (int64_t o = 0; o < OC; o += WR) {                                                          \
    if (OC - o >= WR) full(out + o, inp, w + o * C, b ? b + o : NULL, n, C, OC);                  \
    else /* the last few rows, one at a time: each output is the same sum in any block */         \
      for (int64_t r = o; r < OC; r++) one(out + r, inp, w + r * C, b ? b + r : NULL, n, C, OC);  \
  }

void lm_linear_rows(float *out, const float *inp, const float *w, const float *b, int64_t n, int64_t C, int64_t OC) {
  if (n == 1) {   /* one weight row at a time: one stream (the same sums as in blocks of WR) */
    #pragma omp parallel for schedule(static) if (OC * C >= (1 << 18))
    for (int64_t r = 0; r < OC; r++) one_row(out + r, inp, w + r * C, b ? b + r : NULL, 1, C, OC);
    return;
  }
  ROWS(full_block, one_row)
}

_Static_assert(LM_HP == WR, "a block of weight rows is an f16 panel");

void lm_linear_rows_f16(float *out, const float *inp, const uint16_t *w, const float *b, int64_t n, int64_t C, int64_t OC) {
  #pragma omp parallel for schedule(static) if (OC * C >= (1 << 18))
  for (int64_t o = 0; o < OC; o += WR) {   /* a panel, read front to back */
    if (OC - o >= WR) full_block_h(out + o, inp, w + o * C, b ? b + o : NULL, n, C, OC);
    else
      for (int64_t r = o; r < OC; r++) one_row_h(out + r, inp, w + o * C + 16 * (r - o), b ? b + r : NULL, n, C, OC);
  }
}
