/* qgemm.c — prompt-sized products on quantized or f16 weights (qgemm.h).
 *
 * Q8_0 and Q4_0 weights: an integer GEMM. The n activation rows are quantized once to Q8_0 blocks
 * (lm_quant_act_q8: the values decode's kernels use) and packed in panels of 16 rows: per block of
 * 32 values, 8 groups of 64 bytes, group g holding values 4g..4g+3 of each of the 16 rows (one
 * int32 lane a row), and the 16 rows' block scales as f32. A thread takes CH weight rows at a time
 * and unpacks them into its scratch as int8 values (Q4_0: q - 8; Q8_0: as stored), one f32 scale
 * and one sum per block (a pass over the weight per call, which the n rows' arithmetic hides). The
 * microkernel multiplies WR weight rows by AZ panels (WR x 16 AZ outputs): per block, each group's
 * 4 weight bytes are broadcast to all lanes and multiplied into the panel's 16 rows at once, so
 * after 8 groups lane j of an int32 accumulator holds row j's exact block dot product; then per
 * output
 *   acc = fma((float)dot_b, dx_b * dw_b, acc)        (blocks in order; dx_b * dw_b rounded first)
 *   y = acc + bias
 * The float work is 3 operations per 512 multiply-adds, the integer work one instruction per 64:
 *   - AVX-512 VNNI: vpdpbusd takes u8 x s8, so the activations are packed as x + 128 and the
 *     accumulator starts at -128 sum_b(w) (exact: dot(x + 128, w) - 128 sum w = dot(x, w));
 *   - AVX2 (+FMA): |w| x sign(x, w) by vpmaddubsw (at most 2 * 128 * 127: no saturation), then
 *     vpmaddwd with ones, on 8 rows a register;
 *   - portable C: the sums as written and fmaf.
 * The integer dot products are exact on every path and the float operations the same, so all paths
 * give the same bits (tests/unit/test_qgemm.c). Each output is one microkernel call's, the
 * threads share whole chunks of weight rows: the same bits at any thread count.
 *
 * The activations are quantized as decode's (quant.c) are, so a prompt's and a decode step's
 * products differ only in float rounding: decode keeps 8 partial sums a block (quant.h), this
 * kernel one sum a row.
 *
 * f16 weights (LM_QW_F16) have no integer form: panels of PANEL rows are converted to f32 (exact)
 * into the thread's scratch and multiplied by cblas_sgemm. OpenBLAS (its OpenMP build) runs one
 * thread only inside an active parallel region; a region of one thread is not active, so each
 * thread first sets its own (task-local) OpenMP thread count to 1: every sgemm then runs
 * single-threaded and the bits do not depend on the thread count. */
/* the scale multiply and the sum are two roundings, then one fma, on every path */
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif
#include "kernels/qgemm.h"
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#define PANEL 128   /* f16: weight rows per sgemm, wide enough that sgemm's packing of x is paid off */
#define AP 16       /* activation rows per packed panel (the int32 lanes of a 512-bit register) */
#define WR 4        /* weight rows per microkernel call */
#define AZ 2        /* activation panels per microkernel call */
#define CH 16       /* weight rows a thread unpacks and takes at a time (a multiple of WR) */
#define GB (AP * 4) /* bytes of one group of a panel's block: 16 rows x 4 values */
#define PB (8 * GB) /* bytes of one block of a panel */

#define ALIGN64(n) (((n) + 63) & ~(size_t)63)

size_t lm_qmat_row_bytes(const lm_qmat *W) { return (size_t)(W->cols / LM_QK) * lm_qweight_block_bytes(W->type); }

static inline float scale_at(const uint8_t *p) { return lm_f16_to_f32((uint16_t)(p[0] | p[1] << 8)); }

/* ------------------------------------------------------------------ dequantizing (exact) */

static void deq_q8_0(const uint8_t *w, int64_t nb, float *out) {
  for (int64_t b = 0; b < nb; b++, w += LM_Q8_0_BYTES, out += LM_QK) {
    float d = scale_at(w);
    const int8_t *q = (const int8_t *)(w + 2);
    for (int j = 0; j < LM_QK; j++) out[j] = d * (float)q[j];
  }
}

static void deq_q4_0(const uint8_t *w, int64_t nb, float *out) {
  for (int64_t b = 0; b < nb; b++, w += LM_Q4_0_BYTES, out += LM_QK) {
    float d = scale_at(w);
    const uint8_t *q = w + 2;
    for (int j = 0; j < LM_QK / 2; j++) {
      out[j] = d * (float)((q[j] & 15) - 8);
      out[j + LM_QK / 2] = d * (float)((q[j] >> 4) - 8);
    }
  }
}

static void deq_f16(const uint8_t *w, int64_t nb, float *out) {
  uint16_t h[LM_QK];
  for (int64_t b = 0; b < nb; b++, w += 2 * LM_QK, out += LM_QK) {
    memcpy(h, w, sizeof h);   /* the row may sit at any byte offset */
    lm_f16_to_f32_row(h, out, LM_QK);
  }
}

typedef void (*deq_row)(const uint8_t *w, int64_t nb, float *out);
static const deq_row DEQ[LM_QW_COUNT] = {[LM_QW_Q8_0] = deq_q8_0, [LM_QW_Q4_0] = deq_q4_0, [LM_QW_F16] = deq_f16};

void lm_qmat_dequantize(const lm_qmat *W, int64_t r0, int64_t nr, float *out) {
  size_t rb = lm_qmat_row_bytes(W);
  int64_t nb = W->cols / LM_QK;
  uint8_t blk[LM_Q8_0_BYTES];
  for (int64_t r = 0; r < nr; r++) {
    if (!W->packed) { DEQ[W->type](W->data + (size_t)(r0 + r) * rb, nb, out + r * W->cols); continue; }
    for (int64_t b = 0; b < nb; b++) {   /* a packed row, block by block */
      lm_qmat_block(W, r0 + r, b, blk);
      DEQ[W->type](blk, 1, out + r * W->cols + b * LM_QK);
    }
  }
}

/* ------------------------------------------------------------------ packing */

/* panel p of the activations: rows 16p..16p+15 of x quantized (rows past n: zeros, scale 0),
 * values as int8 (+128 as u8 when off128) in the group layout above, scales at dx (nb, 16) */
static void pack_panel(const float *x, int64_t n, int64_t cols, int64_t p, int off128, uint8_t *xa, float *dx) {
  int64_t nb = cols / LM_QK;
  uint8_t q[nb * LM_Q8_0_BYTES];   /* one row's blocks, quantized in one call (blocks are independent) */
  for (int j = 0; j < AP; j++) {
    int64_t i = p * AP + j;
    if (i < n) lm_quant_act_q8(x + i * cols, cols, q);
    else memset(q, 0, sizeof q);
    for (int64_t b = 0; b < nb; b++) {
      uint8_t *o = xa + b * PB + 4 * j;
      const uint8_t *blk = q + b * LM_Q8_0_BYTES;
      dx[b * AP + j] = scale_at(blk);
      for (int g = 0; g < 8; g++) {   /* values 4g..4g+3: row j's lane of group g */
        uint32_t v;
        memcpy(&v, blk + 2 + 4 * g, 4);
        v ^= off128 ? 0x80808080u : 0;
        memcpy(o + g * GB, &v, 4);
      }
    }
  }
}

typedef uint8_t u8x16 __attribute__((vector_size(16)));

/* weight rows r0..r0+nr-1 as int8 values (nr, nb, 32), scales dw (nr, nb), cw = -128 x each block's sum */
static void unpack_rows(const lm_qmat *W, int64_t r0, int64_t nr, int8_t *w8, float *dw, int32_t *cw) {
  int64_t nb = W->cols / LM_QK;
  uint8_t blk[LM_Q8_0_BYTES];
  for (int64_t r = 0; r < nr; r++) {
    for (int64_t b = 0; b < nb; b++) {
      int8_t *o = w8 + (r * nb + b) * LM_QK;
      lm_qmat_block(W, r0 + r, b, blk);
      /* the sum from the block itself: reading back the bytes just stored would stall */
      int32_t s = 0;
      if (W->type == LM_QW_Q8_0) {
        memcpy(o, blk + 2, LM_QK);
        for (int k = 0; k < LM_QK; k++) s += (int8_t)blk[2 + k];
      } else {
        /* 16 bytes at once; the sum of 8 bytes of nibble pairs (at most 240) by one multiply */
        u8x16 v, lo, hi, t;
        memcpy(&v, blk + 2, 16);
        lo = v & 15; hi = v >> 4; t = lo + hi;
        lo -= 8; hi -= 8;   /* q - 8 as int8, two's complement */
        memcpy(o, &lo, 16); memcpy(o + 16, &hi, 16);
        uint64_t h[2];
        memcpy(h, &t, 16);
        s = (int32_t)((h[0] * 0x0101010101010101ull) >> 56) + (int32_t)((h[1] * 0x0101010101010101ull) >> 56) - 8 * LM_QK;
      }
      dw[r * nb + b] = scale_at(blk);
      cw[r * nb + b] = -128 * s;
    }
  }
}

/* ------------------------------------------------------------------ microkernels */

/* out[r][a][j] (r < R weight rows of w8/dw/cw, a < A panels of xa/dx, `pst` bytes / `dst` floats
 * apart) = the dot product of weight row r and activation row j of panel a, by the order above */
typedef void (*gemm_kernel)(const int8_t *w8, const float *dw, const int32_t *cw, int64_t nb, const uint8_t *xa, size_t pst,
                            const float *dx, size_t dst, int R, int A, float out[WR][AZ][AP]);

static void k_c(const int8_t *w8, const float *dw, const int32_t *cw, int64_t nb, const uint8_t *xa, size_t pst, const float *dx,
                size_t dst, int R, int A, float out[WR][AZ][AP]) {
  (void)cw;
  for (int r = 0; r < R; r++)
    for (int a = 0; a < A; a++)
      for (int j = 0; j < AP; j++) {
        float acc = 0;
        for (int64_t b = 0; b < nb; b++) {
          const int8_t *w = w8 + (r * nb + b) * LM_QK, *x = (const int8_t *)(xa + a * pst + b * PB + 4 * j);
          int32_t s = 0;
          for (int k = 0; k < LM_QK; k++) s += w[k] * x[(k / 4) * GB + k % 4];
          acc = fmaf((float)s, dx[a * dst + b * AP + j] * dw[r * nb + b], acc);
        }
        out[r][a][j] = acc;
      }
}

#if defined(__x86_64__)
#define AVX2 __attribute__((target("avx2,fma,f16c")))
#define VNNI __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))
#define INL inline __attribute__((always_inline))

static INL int32_t load32(const int8_t *p) { int32_t v; memcpy(&v, p, 4); return v; }

/* R x A with R, A constant: the accumulators stay in registers */
VNNI static INL void vnni_t(const int8_t *w8, const float *dw, const int32_t *cw, int64_t nb, const uint8_t *xa, size_t pst,
                            const float *dx, size_t dst, const int R, const int A, float out[WR][AZ][AP]) {
  __m512 f[WR][AZ];
  for (int r = 0; r < R; r++)
    for (int a = 0; a < A; a++) f[r][a] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; b++) {
    __m512i s[WR][AZ];
    for (int r = 0; r < R; r++) {
      __m512i c = _mm512_set1_epi32(cw[r * nb + b]);
      for (int a = 0; a < A; a++) s[r][a] = c;
    }
    const uint8_t *xb = xa + b * PB;
    for (int g = 0; g < 8; g++) {
      __m512i xv[AZ];
      for (int a = 0; a < A; a++) xv[a] = _mm512_loadu_si512((const void *)(xb + a * pst + g * GB));
      for (int r = 0; r < R; r++) {
        __m512i wv = _mm512_set1_epi32(load32(w8 + (r * nb + b) * LM_QK + 4 * g));
        for (int a = 0; a < A; a++) s[r][a] = _mm512_dpbusd_epi32(s[r][a], xv[a], wv);
      }
    }
    for (int a = 0; a < A; a++) {
      __m512 d = _mm512_loadu_ps(dx + a * dst + b * AP);
      for (int r = 0; r < R; r++)
        f[r][a] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[r][a]), _mm512_mul_ps(d, _mm512_set1_ps(dw[r * nb + b])), f[r][a]);
    }
  }
  for (int r = 0; r < R; r++)
    for (int a = 0; a < A; a++) _mm512_storeu_ps(out[r][a], f[r][a]);
}

/* the same on 8 rows of a panel at a time (half h), 16 registers */
AVX2 static INL void avx2_t(const int8_t *w8, const float *dw, int64_t nb, const uint8_t *xa, size_t pst, const float *dx,
                            size_t dst, const int R, const int A, float out[WR][AZ][AP]) {
  const __m256i ones = _mm256_set1_epi16(1);
  for (int h = 0; h < 2; h++) {
    __m256 f[WR][AZ];
    for (int r = 0; r < R; r++)
      for (int a = 0; a < A; a++) f[r][a] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
      __m256i s[WR][AZ];
      for (int r = 0; r < R; r++)
        for (int a = 0; a < A; a++) s[r][a] = _mm256_setzero_si256();
      const uint8_t *xb = xa + b * PB + 32 * h;
      for (int g = 0; g < 8; g++) {
        __m256i xv[AZ];
        for (int a = 0; a < A; a++) xv[a] = _mm256_loadu_si256((const __m256i *)(xb + a * pst + g * GB));
        for (int r = 0; r < R; r++) {
          __m256i wv = _mm256_set1_epi32(load32(w8 + (r * nb + b) * LM_QK + 4 * g)), wa = _mm256_abs_epi8(wv);
          for (int a = 0; a < A; a++)
            s[r][a] = _mm256_add_epi32(s[r][a], _mm256_madd_epi16(_mm256_maddubs_epi16(wa, _mm256_sign_epi8(xv[a], wv)), ones));
        }
      }
      for (int a = 0; a < A; a++) {
        __m256 d = _mm256_loadu_ps(dx + a * dst + b * AP + 8 * h);
        for (int r = 0; r < R; r++)
          f[r][a] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s[r][a]), _mm256_mul_ps(d, _mm256_set1_ps(dw[r * nb + b])), f[r][a]);
      }
    }
    for (int r = 0; r < R; r++)
      for (int a = 0; a < A; a++) _mm256_storeu_ps(out[r][a] + 8 * h, f[r][a]);
  }
}

/* one function per path, the shape a switch over constant instances */
#define SHAPES(CALL)                                                                             \
  switch ((R - 1) * AZ + (A - 1)) {                                                              \
    case 0: CALL(1, 1); break;                                                                   \
    case 1: CALL(1, 2); break;                                                                   \
    case 2: CALL(2, 1); break;                                                                   \
    case 3: CALL(2, 2); break;                                                                   \
    case 4: CALL(3, 1); break;                                                                   \
    case 5: CALL(3, 2); break;                                                                   \
    case 6: CALL(4, 1); break;                                                                   \
    default: CALL(4, 2); break;                                                                  \
  }
#define V_CALL(r, a) vnni_t(w8, dw, cw, nb, xa, pst, dx, dst, r, a, out)
#define A_CALL(r, a) avx2_t(w8, dw, nb, xa, pst, dx, dst, r, a, out)
VNNI static void k_vnni(const int8_t *w8, const float *dw, const int32_t *cw, int64_t nb, const uint8_t *xa, size_t pst,
                        const float *dx, size_t dst, int R, int A, float out[WR][AZ][AP]) {
  SHAPES(V_CALL)
}
AVX2 static void k_avx2(const int8_t *w8, const float *dw, const int32_t *cw, int64_t nb, const uint8_t *xa, size_t pst,
                        const float *dx, size_t dst, int R, int A, float out[WR][AZ][AP]) {
  (void)cw;
  SHAPES(A_CALL)
}
_Static_assert(WR == 4 && AZ == 2, "SHAPES lists the shapes up to WR x AZ");
#define GEMM_KERNELS {k_c, k_avx2, k_vnni}
#else
#define GEMM_KERNELS {k_c, NULL, NULL}
#endif

/* by lm_qpath; whether the CPU has it is lm_qpath_available's */
static const gemm_kernel KERNELS[LM_QPATH_COUNT] = GEMM_KERNELS;

/* ------------------------------------------------------------------ the products */

/* per-thread scratch of the integer route: CH unpacked weight rows */
static size_t chunk_bytes(int64_t nb) { return ALIGN64((size_t)CH * nb * LM_QK) + 2 * ALIGN64((size_t)CH * nb * 4); }
static int64_t panels(int64_t n) { return (n + AP - 1) / AP; }

size_t lm_qgemm_scratch(int64_t n, int64_t cols, int threads) {
  int64_t nb = cols / LM_QK;
  size_t f16 = (size_t)threads * ALIGN64((size_t)PANEL * (size_t)cols * sizeof(float));
  size_t q = ALIGN64((size_t)panels(n) * nb * PB) + ALIGN64((size_t)panels(n) * nb * AP * sizeof(float)) + (size_t)threads * chunk_bytes(nb);
  return (f16 > q ? f16 : q) + 64;
}

void lm_qgemm_sgemm(const lm_qmat *W, const float *x, int64_t n, const float *bias, float *y, void *scratch, int threads) {
  int64_t rows = W->rows, cols = W->cols, np = (rows + PANEL - 1) / PANEL;
  uint8_t *base = (uint8_t *)ALIGN64((uintptr_t)scratch);
  size_t per = ALIGN64((size_t)PANEL * (size_t)cols * sizeof(float));
  #pragma omp parallel num_threads(threads)
  {
    omp_set_num_threads(1);   /* this thread's sgemm single-threaded, even in a team of one (see above) */
    /* dynamic: a thread whose core is busy with another job takes fewer panels */
    #pragma omp for schedule(dynamic, 1)
    for (int64_t p = 0; p < np; p++) {
      int64_t r0 = p * PANEL, nr = rows - r0 < PANEL ? rows - r0 : PANEL;
      float *wp = (float *)(base + (size_t)omp_get_thread_num() * per);
      lm_qmat_dequantize(W, r0, nr, wp);
      float beta = 0.0f;
      if (bias) {
        for (int64_t i = 0; i < n; i++) memcpy(y + i * rows + r0, bias + r0, (size_t)nr * sizeof(float));
        beta = 1.0f;
      }
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)nr, (int)cols, 1.0f, x, (int)cols, wp, (int)cols, beta,
                  y + r0, (int)rows);
    }
  }
}

void lm_qgemm(const lm_qmat *W, const float *x, int64_t n, const float *bias, float *y, void *scratch, int threads, lm_qpath path) {
  if (W->type == LM_QW_F16) { lm_qgemm_sgemm(W, x, n, bias, y, scratch, threads); return; }
  uint8_t *base = (uint8_t *)ALIGN64((uintptr_t)scratch);
  int64_t rows = W->rows, cols = W->cols, nb = cols / LM_QK, np = panels(n), nch = (rows + CH - 1) / CH;
  size_t pst = (size_t)nb * PB, dst = (size_t)nb * AP;
  uint8_t *xa = base, *tb = base + ALIGN64((size_t)np * pst) + ALIGN64((size_t)np * dst * sizeof(float));
  float *dx = (float *)(base + ALIGN64((size_t)np * pst));
  gemm_kernel kern = KERNELS[path];
  #pragma omp parallel num_threads(threads)
  {
    #pragma omp for schedule(static)
    for (int64_t p = 0; p < np; p++) pack_panel(x, n, cols, p, path == LM_QPATH_VNNI, xa + p * pst, dx + p * dst);
    uint8_t *mine = tb + (size_t)omp_get_thread_num() * chunk_bytes(nb);
    int8_t *w8 = (int8_t *)mine;
    float *dw = (float *)(mine + ALIGN64((size_t)CH * nb * LM_QK));
    int32_t *cw = (int32_t *)(mine + ALIGN64((size_t)CH * nb * LM_QK) + ALIGN64((size_t)CH * nb * 4));
    /* dynamic: a thread whose core is busy with another job takes fewer chunks */
    #pragma omp for schedule(dynamic, 1)
    for (int64_t c = 0; c < nch; c++) {
      int64_t r0 = c * CH, nr = rows - r0 < CH ? rows - r0 : CH;
      unpack_rows(W, r0, nr, w8, dw, cw);
      for (int64_t p = 0; p < np; p += AZ) {
        int A = np - p < AZ ? (int)(np - p) : AZ;
        float yc[AZ * AP][CH];   /* the chunk's outputs for these rows: whole lines of y, written once */
        for (int64_t r = 0; r < nr; r += WR) {
          int R = nr - r < WR ? (int)(nr - r) : WR;
          float out[WR][AZ][AP];
          kern(w8 + r * nb * LM_QK, dw + r * nb, cw + r * nb, nb, xa + p * pst, pst, dx + p * dst, dst, R, A, out);
          for (int a = 0; a < A; a++)
            for (int j = 0; j < AP; j++)
              for (int i = 0; i < R; i++) yc[a * AP + j][r + i] = bias ? out[i][a][j] + bias[r0 + r + i] : out[i][a][j];
        }
        for (int64_t i = 0; i < A * AP && p * AP + i < n; i++) memcpy(y + (p * AP + i) * rows + r0, yc[i], (size_t)nr * sizeof(float));
      }
    }
  }
}
