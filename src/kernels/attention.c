/* attention.c — multi-head scaled dot-product self-attention (causal or with a
 * key padding mask); this is where the causal mask lives.
 *
 * Work is split over the B*NH (sequence, head) pairs with an OpenMP loop; each
 * pair runs its products with cblas_sgemm on strided views of the packed qkv
 * buffer (leading dimension 3C), and OpenBLAS's OpenMP build runs
 * single-threaded inside our parallel region, so there is one thread pool.
 * Queries are processed in blocks of ATT_BLOCK rows: under a causal mask a
 * block only needs the keys up to its last row, which halves the work for long
 * sequences. Backward does not know the mask, but it does not need to: masked
 * probabilities are exactly 0, so each block limits its products to the keys
 * up to the last non-zero probability, which skips only exact-zero terms.
 * Softmax uses vexp (our vectorisable exp, ~1-2 ulp) in place on the (T,T) rows.
 *
 * Grouped-query attention is the same loops with the key/value columns of the
 * head's group; multi-head attention is the case of one query head per group.
 * Rotary position embeddings (rope_apply) rotate q and k in place before the
 * scores, so the attention itself never sees positions. */
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <cblas.h>
#include "kernels/kernels.h"
#include "kernels/vexp.h"

#define ATT_BLOCK 64


/* Softmax in place over row[0..kn) where key s is visible iff mask == NULL or mask[s];
 * entries [kn, T) are set to 0. A row with no visible key becomes all zeros. */
static void masked_softmax_row(float *row, const uint8_t *mask, int64_t kn, int64_t T) {
  float mx = -INFINITY;
  if (mask) {
    #pragma omp simd reduction(max:mx)
    for (int64_t s = 0; s < kn; s++) { float v = mask[s] ? row[s] : -INFINITY; mx = v > mx ? v : mx; }
  } else {
    #pragma omp simd reduction(max:mx)
    for (int64_t s = 0; s < kn; s++) mx = row[s] > mx ? row[s] : mx;
  }
  if (mx == -INFINITY) {
    memset(row, 0, (size_t)T * sizeof(float));
    return;
  }
  float sum = 0.0f;
  if (mask) {
    #pragma omp simd reduction(+:sum)
    for (int64_t s = 0; s < kn; s++) { float e = mask[s] ? vexp(row[s] - mx) : 0.0f; row[s] = e; sum += e; }
  } else {
    #pragma omp simd reduction(+:sum)
    for (int64_t s = 0; s < kn; s++) { float e = vexp(row[s] - mx); row[s] = e; sum += e; }
  }
  float inv = 1.0f / sum;
  #pragma omp simd
  for (int64_t s = 0; s < kn; s++) row[s] *= inv;
  if (kn < T) memset(row + kn, 0, (size_t)(T - kn) * sizeof(float));
}

void attention_forward(float *out, float *att, const float *qkv, const uint8_t *key_mask,
                       int64_t B, int64_t T, int64_t C, int64_t NH, int causal) {
  attention_forward_packed(out, att, qkv, key_mask, NULL, B, T, C, NH, causal);
}

void attention_forward_packed(float *out, float *att, const float *qkv, const uint8_t *key_mask, const int32_t *starts,
                              int64_t B, int64_t T, int64_t C, int64_t NH, int causal) {
  attention_forward_gqa(out, att, qkv, key_mask, starts, B, T, C, NH, NH, causal, 0, NULL, 0, NULL);
}

void attention_forward_gqa(float *out,              // (B,T,C)
                           float *att,              // (B,NH,T,T)
                           const float *qkv,        // (B,T,C+2*KVC)
                           const uint8_t *key_mask, // (B,T) or NULL
                           const int32_t *starts,   // (B,T) or NULL: first key of each query's example
                           int64_t B, int64_t T, int64_t C, int64_t NH, int64_t NKV, int causal,
                           int64_t window, const uint64_t *drop, float drop_p, float *pd) {
  const int64_t hs = C / NH, KVC = NKV * hs, W = C + 2 * KVC, group = NH / NKV;
  const float scale = 1.0f / sqrtf((float)hs);
  const int64_t rb = causal ? ATT_BLOCK : T;
  #pragma omp parallel for schedule(dynamic, 1)
  for (int64_t bh = 0; bh < B * NH; bh++) {
    int64_t b = bh / NH, h = bh % NH;
    const float *q = qkv + b * T * W + h * hs;                 // (T,hs), row stride W
    const float *k = qkv + b * T * W + C + (h / group) * hs;   // this head's key/value head
    const float *v = k + KVC;
    const uint8_t *mask = key_mask ? key_mask + b * T : NULL;
    float *a = att + bh * T * T;                  // (T,T)
    float *o = out + b * T * C + h * hs;          // (T,hs), row stride C
    for (int64_t r0 = 0; r0 < T; r0 += rb) {
      int64_t nr = T - r0 < rb ? T - r0 : rb;
      int64_t kn = causal ? r0 + nr : T;          // keys this block can see
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nr, (int)kn, (int)hs,
                  scale, q + r0 * W, (int)W, k, (int)W, 0.0f, a + r0 * T, (int)T);
      for (int64_t t = r0; t < r0 + nr; t++) {
        /* packed examples: keys before the query's example start are not visible (block-diagonal);
           a sliding window hides keys more than window - 1 positions back */
        int64_t lo = starts ? starts[b * T + t] : 0;
        if (window > 0 && t - window + 1 > lo) lo = t - window + 1;
        if (lo > 0) memset(a + t * T, 0, (size_t)lo * sizeof(float));
        masked_softmax_row(a + t * T + lo, mask ? mask + lo : NULL, (causal ? t + 1 : T) - lo, T - lo);
      }
      const float *pv = a;   /* the probabilities that weigh V: dropped ones in pd (att keeps the softmax) */
      if (drop) {
        float *d = pd + bh * T * T;
        for (int64_t t = r0; t < r0 + nr; t++) {
          memcpy(d + t * T, a + t * T, (size_t)kn * sizeof(float));
          dropout_apply_at(d + t * T, drop, (bh * T + t) * T, kn, drop_p);
        }
        pv = d;
      }
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nr, (int)hs, (int)kn,
                  1.0f, pv + r0 * T, (int)T, v, (int)W, 0.0f, o + r0 * C, (int)C);
    }
  }
}

void attention_backward(float *dqkv, float *scratch, const float *dout, const float *qkv, const float *att,
                        int64_t B, int64_t T, int64_t C, int64_t NH) {
  attention_backward_gqa(dqkv, scratch, dout, qkv, att, B, T, C, NH, NH, NULL, 0);
}

/* The query heads that share a key/value head run in one iteration, one after another, so that
 * their dK and dV sums need no atomics and keep a fixed order (determinism). */
void attention_backward_gqa(float *dqkv,            // (B,T,C+2*KVC)
                            float *scratch,         // (B,NH,T,T)
                            const float *dout,      // (B,T,C)
                            const float *qkv,       // (B,T,C+2*KVC)
                            const float *att,       // (B,NH,T,T)
                            int64_t B, int64_t T, int64_t C, int64_t NH, int64_t NKV, const uint64_t *drop,
                            float drop_p) {
  if (!dqkv) return;
  const int64_t hs = C / NH, KVC = NKV * hs, W = C + 2 * KVC, group = NH / NKV;
  const float scale = 1.0f / sqrtf((float)hs);
  #pragma omp parallel for schedule(dynamic, 1)
  for (int64_t bg = 0; bg < B * NKV; bg++) {
    int64_t b = bg / NKV, kvh = bg % NKV;
    const float *k = qkv + b * T * W + C + kvh * hs;
    const float *v = k + KVC;
    float *dk = dqkv + b * T * W + C + kvh * hs;
    float *dv = dk + KVC;
    for (int64_t h = kvh * group; h < (kvh + 1) * group; h++) {
      int64_t bh = b * NH + h;
      const float *q = qkv + b * T * W + h * hs;
      float *dq = dqkv + b * T * W + h * hs;
      const float *p = att + bh * T * T;            // (T,T)
      float *ds = scratch + bh * T * T;             // (T,T)
      const float *g = dout + b * T * C + h * hs;   // (T,hs), row stride C
      for (int64_t r0 = 0; r0 < T; r0 += ATT_BLOCK) {
        int64_t nr = T - r0 < ATT_BLOCK ? T - r0 : ATT_BLOCK;
        // keys beyond the last non-zero probability of this block contribute exactly 0
        int64_t kn = 0;
        for (int64_t t = r0; t < r0 + nr; t++) {
          const float *pr = p + t * T;
          int64_t s = T;
          while (s > kn && pr[s - 1] == 0.0f) s--;
          if (s > kn) kn = s;
        }
        if (kn == 0) continue;
        if (drop) {
          /* with dropout, O = Pd V where Pd = P * mask / (1 - p): dV takes Pd (rebuilt here from P and
             the mask), and d P = mask / (1 - p) * (dO V^T) */
          for (int64_t t = r0; t < r0 + nr; t++) {
            memcpy(ds + t * T, p + t * T, (size_t)kn * sizeof(float));
            dropout_apply_at(ds + t * T, drop, (bh * T + t) * T, kn, drop_p);
          }
          cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)kn, (int)hs, (int)nr,
                      1.0f, ds + r0 * T, (int)T, g + r0 * C, (int)C, 1.0f, dv, (int)W);
        }
        // dP = dO V^T
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nr, (int)kn, (int)hs,
                    1.0f, g + r0 * C, (int)C, v, (int)W, 0.0f, ds + r0 * T, (int)T);
        if (drop)
          for (int64_t t = r0; t < r0 + nr; t++) dropout_apply_at(ds + t * T, drop, (bh * T + t) * T, kn, drop_p);
        // dS = P * (dP - sum_s P dP), the softmax backward
        for (int64_t t = r0; t < r0 + nr; t++) {
          const float *pr = p + t * T;
          float *dr = ds + t * T;
          float dot = 0.0f;
          #pragma omp simd reduction(+:dot)
          for (int64_t s = 0; s < kn; s++) dot += pr[s] * dr[s];
          #pragma omp simd
          for (int64_t s = 0; s < kn; s++) dr[s] = pr[s] * (dr[s] - dot);
        }
        // dV += P^T dO (without dropout; with it, done above)
        if (!drop)
          cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)kn, (int)hs, (int)nr,
                      1.0f, p + r0 * T, (int)T, g + r0 * C, (int)C, 1.0f, dv, (int)W);
        // dQ += scale * dS K
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nr, (int)hs, (int)kn,
                    scale, ds + r0 * T, (int)T, k, (int)W, 1.0f, dq + r0 * W, (int)W);
        // dK += scale * dS^T Q
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)kn, (int)hs, (int)nr,
                    scale, ds + r0 * T, (int)T, q + r0 * W, (int)W, 1.0f, dk, (int)W);
      }
    }
  }
}

/* ------------------------------------------------------------------ rotary positions */

void rope_apply(float *x, int64_t stride, int64_t nh, int64_t hs, const int32_t *pos, const float *cs, int64_t N,
                int inverse) {
  const int64_t half = hs / 2;
  const float sgn = inverse ? -1.0f : 1.0f;
  #pragma omp parallel for schedule(static) if (N * nh * hs > 32768)
  for (int64_t n = 0; n < N; n++) {
    const float *cosv = cs + (int64_t)pos[n] * hs, *sinv = cosv + half;
    for (int64_t h = 0; h < nh; h++) {
      float *a = x + n * stride + h * hs, *b = a + half;
      #pragma omp simd
      for (int64_t i = 0; i < half; i++) {
        float c = cosv[i], s = sgn * sinv[i], xa = a[i], xb = b[i];
        a[i] = xa * c - xb * s;
        b[i] = xb * c + xa * s;
      }
    }
  }
}
