/* attention.c — multi-head scaled dot-product attention, tiled: this is where
 * the causal mask lives (and the padding mask, packing, the sliding window,
 * the relative bias and attention dropout).
 *
 * FlashAttention-2's algorithm on the CPU. Queries go in blocks of ATT_BR
 * rows, keys in tiles of ATT_BC: a block's scores against one key tile are
 * one small cblas_sgemm, and an online softmax keeps, per query row, the
 * running maximum m and sum l of exp(score - m); when a later tile raises the
 * maximum the row's partial output is rescaled by exp(m_old - m_new). The
 * output is accumulated in place and divided by l at the end; forward keeps
 * only the output and each row's log-sum-exp (lse = m + log l), so memory is
 * O(T), never (T,T). Backward recomputes each tile's probabilities as
 * exp(score - lse) and uses D = rowsum(dO * O), which equals rowsum(P * dP)
 * (also under dropout, where O = (P * M) V), so no probability matrix is ever
 * stored. A block only visits the key tiles that some of its rows can see
 * (causal, window, packed examples), which halves the work of causal masks
 * and more for windows and packing.
 *
 * Work is split over (sequence, head) pairs with an OpenMP loop (backward:
 * over (sequence, key/value head), the query heads of a group one after
 * another, so their dK and dV sums need no atomics and keep a fixed order:
 * results are bitwise repeatable for a thread count). OpenBLAS's OpenMP build
 * runs single-threaded inside our parallel region, so there is one thread
 * pool. Tiles live on the stack (3 x ATT_BR x ATT_BC floats per thread).
 *
 * Dropout draws no random numbers here: its bits (dropout.c) are indexed by
 * (b, h, i, j) exactly as a dense (B,NH,Tq,Tk) mask, so masks, resume and
 * determinism do not depend on the tiling.
 *
 * Rotary position embeddings (rope_apply) rotate q and k in place before the
 * scores, so the attention itself never sees positions. */
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <cblas.h>
#include "kernels/kernels.h"
#include "kernels/vexp.h"

#define ATT_BR 64    /* query rows per block */
#define ATT_BC 256   /* keys per tile */

lm_attn lm_attn_self(const float *qkv, int64_t B, int64_t T, int64_t NH, int64_t NKV, int64_t hs, int causal) {
  int64_t A = NH * hs, KVC = NKV * hs;
  lm_attn a = {.B = B, .Tq = T, .Tk = T, .NH = NH, .NKV = NKV, .hs = hs, .q = qkv, .k = qkv + A, .v = qkv + A + KVC,
               .qs = A + 2 * KVC, .ks = A + 2 * KVC, .scale = 1.0f / sqrtf((float)hs), .causal = causal};
  return a;
}

/* the keys [lo, hi) query i of sequence b may see before the key mask */
static inline void key_range(const lm_attn *a, int64_t b, int64_t i, int64_t *lo, int64_t *hi) {
  int64_t off = a->Tk - a->Tq, l = 0, h = a->Tk;
  if (a->causal && i + off + 1 < h) h = i + off + 1;
  if (a->window > 0 && i + off - a->window + 1 > l) l = i + off - a->window + 1;
  if (a->starts && a->starts[b * a->Tq + i] > l) l = a->starts[b * a->Tq + i];
  *lo = l;
  *hi = h > l ? h : l;
}

/* the key tiles rows [r0, r0+nr) visit: the union of their ranges */
static inline void block_range(const lm_attn *a, int64_t b, int64_t r0, int64_t nr, int64_t *lo, int64_t *hi) {
  int64_t L = a->Tk, H = 0;
  for (int64_t i = r0; i < r0 + nr; i++) {
    int64_t l, h;
    key_range(a, b, i, &l, &h);
    if (l < h) { L = l < L ? l : L; H = h > H ? h : H; }
  }
  *lo = L; *hi = H > L ? H : L;
}

/* Scores of row i of a tile (keys c0 .. c0+nc) in place: the bias added over the visible
 * range [*jl, *jh) (tile coordinates), -INFINITY on keys the key mask hides. Returns 0 when the row
 * sees nothing in this tile. */
static inline int score_row(const lm_attn *a, float *s, int64_t b, int64_t h, int64_t i, int64_t c0, int64_t nc,
                            int64_t *jl, int64_t *jh) {
  int64_t lo, hi;
  key_range(a, b, i, &lo, &hi);
  *jl = lo - c0 > 0 ? lo - c0 : 0;
  *jh = hi - c0 < nc ? hi - c0 : nc;
  if (*jl >= *jh) return 0;
  if (a->bias) {
    const float *rb = a->bias + h * a->bias_hs + i * a->bias_is + c0;
    #pragma omp simd
    for (int64_t j = *jl; j < *jh; j++) s[j] += rb[j];
  }
  if (a->key_mask) {
    const uint8_t *km = a->key_mask + b * a->Tk + c0;
    for (int64_t j = *jl; j < *jh; j++) if (!km[j]) s[j] = -INFINITY;
  }
  return 1;
}

void attention_forward(const lm_attn *a,
                       float *out,   // (B,Tq,NH*hs)
                       float *lse) { // (B,NH,Tq)
  const int64_t B = a->B, Tq = a->Tq, Tk = a->Tk, NH = a->NH, hs = a->hs, OS = NH * hs, group = NH / a->NKV;
  #pragma omp parallel for schedule(dynamic, 1)
  for (int64_t bh = 0; bh < B * NH; bh++) {
    int64_t b = bh / NH, h = bh % NH;
    const float *q = a->q + b * Tq * a->qs + h * hs;               // (Tq,hs), row stride qs
    const float *k = a->k + b * Tk * a->ks + (h / group) * hs;     // (Tk,hs), row stride ks
    const float *v = a->v + b * Tk * a->ks + (h / group) * hs;
    float *o = out + b * Tq * OS + h * hs;                         // (Tq,hs), row stride OS
    float *ls = lse + bh * Tq;
    float S[ATT_BR * ATT_BC], m[ATT_BR], l[ATT_BR];
    for (int64_t r0 = 0; r0 < Tq; r0 += ATT_BR) {
      int64_t nr = Tq - r0 < ATT_BR ? Tq - r0 : ATT_BR, klo, khi;
      for (int64_t ii = 0; ii < nr; ii++) {
        m[ii] = -INFINITY; l[ii] = 0.0f;
        memset(o + (r0 + ii) * OS, 0, (size_t)hs * sizeof(float));
      }
      block_range(a, b, r0, nr, &klo, &khi);
      for (int64_t c0 = klo; c0 < khi; c0 += ATT_BC) {
        int64_t nc = khi - c0 < ATT_BC ? khi - c0 : ATT_BC;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nr, (int)nc, (int)hs, a->scale, q + r0 * a->qs,
                    (int)a->qs, k + c0 * a->ks, (int)a->ks, 0.0f, S, ATT_BC);                    // S = scale Q K^T
        for (int64_t ii = 0; ii < nr; ii++) {
          int64_t i = r0 + ii, jl, jh;
          float *s = S + ii * ATT_BC, mx = -INFINITY;
          if (score_row(a, s, b, h, i, c0, nc, &jl, &jh)) {
            #pragma omp simd reduction(max:mx)
            for (int64_t j = jl; j < jh; j++) mx = s[j] > mx ? s[j] : mx;
          }
          if (mx == -INFINITY) { memset(s, 0, (size_t)nc * sizeof(float)); continue; }
          /* online softmax: a new maximum rescales what the row has summed so far */
          float mn = m[ii] > mx ? m[ii] : mx, alpha = vexp(m[ii] - mn), sum = 0.0f;
          #pragma omp simd reduction(+:sum)
          for (int64_t j = jl; j < jh; j++) { float e = vexp(s[j] - mn); s[j] = e; sum += e; }  // exp(-inf) = 0
          if (jl > 0) memset(s, 0, (size_t)jl * sizeof(float));
          if (jh < nc) memset(s + jh, 0, (size_t)(nc - jh) * sizeof(float));
          l[ii] = alpha * l[ii] + sum;
          m[ii] = mn;
          if (alpha != 1.0f) {
            float *orow = o + i * OS;
            #pragma omp simd
            for (int64_t d = 0; d < hs; d++) orow[d] *= alpha;
          }
          if (a->drop) dropout_apply_at(s, a->drop, (bh * Tq + i) * Tk + c0, nc, a->drop_p);
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nr, (int)hs, (int)nc, 1.0f, S, ATT_BC,
                    v + c0 * a->ks, (int)a->ks, 1.0f, o + r0 * OS, (int)OS);                   // O += P V
      }
      for (int64_t ii = 0; ii < nr; ii++) {
        float *orow = o + (r0 + ii) * OS, inv = l[ii] > 0.0f ? 1.0f / l[ii] : 0.0f;
        #pragma omp simd
        for (int64_t d = 0; d < hs; d++) orow[d] *= inv;
        ls[r0 + ii] = l[ii] > 0.0f ? m[ii] + logf(l[ii]) : INFINITY;
      }
    }
  }
}

/* The query heads that share a key/value head run in one iteration, one after another, so their dK
 * and dV sums need no atomics and keep a fixed order; with a bias gradient, one iteration runs every
 * sequence of its key/value head in order, so dbias is summed over the batch the same way. */
void attention_backward(const lm_attn *a, float *dq, float *dk, float *dv, float *dbias,
                        const float *out,    // (B,Tq,NH*hs)
                        const float *lse,    // (B,NH,Tq)
                        const float *dout) { // (B,Tq,NH*hs)
  if (!dq) return;
  const int64_t B = a->B, Tq = a->Tq, Tk = a->Tk, NH = a->NH, NKV = a->NKV, hs = a->hs, OS = NH * hs;
  const int64_t group = NH / NKV, per = dbias ? B : 1;   // sequences per iteration
  #pragma omp parallel for schedule(dynamic, 1)
  for (int64_t u = 0; u < B * NKV / per; u++)
  for (int64_t r = 0; r < per; r++) {
    int64_t b = dbias ? r : u / NKV, g = dbias ? u : u % NKV;
    const float *k = a->k + b * Tk * a->ks + g * hs, *v = a->v + b * Tk * a->ks + g * hs;
    float *dkb = dk + b * Tk * a->ks + g * hs, *dvb = dv + b * Tk * a->ks + g * hs;
    float P[ATT_BR * ATT_BC], dP[ATT_BR * ATT_BC], W[ATT_BR * ATT_BC], D[ATT_BR];
    for (int64_t h = g * group; h < (g + 1) * group; h++) {
      int64_t bh = b * NH + h;
      const float *q = a->q + b * Tq * a->qs + h * hs, *o = out + b * Tq * OS + h * hs;
      const float *go = dout + b * Tq * OS + h * hs, *ls = lse + bh * Tq;
      float *dqb = dq + b * Tq * a->qs + h * hs;
      for (int64_t r0 = 0; r0 < Tq; r0 += ATT_BR) {
        int64_t nr = Tq - r0 < ATT_BR ? Tq - r0 : ATT_BR, klo, khi;
        block_range(a, b, r0, nr, &klo, &khi);
        if (klo >= khi) continue;
        for (int64_t ii = 0; ii < nr; ii++) {   // D = rowsum(dO * O)
          const float *x = go + (r0 + ii) * OS, *y = o + (r0 + ii) * OS;
          float d = 0.0f;
          #pragma omp simd reduction(+:d)
          for (int64_t e = 0; e < hs; e++) d += x[e] * y[e];
          D[ii] = d;
        }
        for (int64_t c0 = klo; c0 < khi; c0 += ATT_BC) {
          int64_t nc = khi - c0 < ATT_BC ? khi - c0 : ATT_BC;
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nr, (int)nc, (int)hs, a->scale, q + r0 * a->qs,
                      (int)a->qs, k + c0 * a->ks, (int)a->ks, 0.0f, P, ATT_BC);                  // S = scale Q K^T
          for (int64_t ii = 0; ii < nr; ii++) {   // P = exp(S - lse), the forward's probabilities
            int64_t i = r0 + ii, jl, jh;
            float *p = P + ii * ATT_BC, L = ls[i];
            if (L == INFINITY || !score_row(a, p, b, h, i, c0, nc, &jl, &jh)) { memset(p, 0, (size_t)nc * sizeof(float)); continue; }
            #pragma omp simd
            for (int64_t j = jl; j < jh; j++) p[j] = vexp(p[j] - L);
            if (jl > 0) memset(p, 0, (size_t)jl * sizeof(float));
            if (jh < nc) memset(p + jh, 0, (size_t)(nc - jh) * sizeof(float));
          }
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nr, (int)nc, (int)hs, 1.0f, go + r0 * OS, (int)OS,
                      v + c0 * a->ks, (int)a->ks, 0.0f, dP, ATT_BC);                            // dP = dO V^T
          const float *pv = P;   /* the probabilities that weighed V: with dropout P * M, and dP *= M */
          if (a->drop) {
            for (int64_t ii = 0; ii < nr; ii++) {
              int64_t at = (bh * Tq + r0 + ii) * Tk + c0;
              memcpy(W + ii * ATT_BC, P + ii * ATT_BC, (size_t)nc * sizeof(float));
              dropout_apply_at(W + ii * ATT_BC, a->drop, at, nc, a->drop_p);
              dropout_apply_at(dP + ii * ATT_BC, a->drop, at, nc, a->drop_p);
            }
            pv = W;
          }
          cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)nc, (int)hs, (int)nr, 1.0f, pv, ATT_BC,
                      go + r0 * OS, (int)OS, 1.0f, dvb + c0 * a->ks, (int)a->ks);               // dV += P^T dO
          for (int64_t ii = 0; ii < nr; ii++) {   // dS = P * (dP - D), the softmax backward
            float *dr = dP + ii * ATT_BC, di = D[ii];
            const float *pr = P + ii * ATT_BC;
            #pragma omp simd
            for (int64_t j = 0; j < nc; j++) dr[j] = pr[j] * (dr[j] - di);
            if (dbias) {   // d bias = dS (hidden keys have dS = 0)
              float *db = dbias + h * a->bias_hs + (r0 + ii) * a->bias_is + c0;
              for (int64_t j = 0; j < nc; j++) db[j] += dr[j];
            }
          }
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nr, (int)hs, (int)nc, a->scale, dP, ATT_BC,
                      k + c0 * a->ks, (int)a->ks, 1.0f, dqb + r0 * a->qs, (int)a->qs);           // dQ += scale dS K
          cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)nc, (int)hs, (int)nr, a->scale, dP, ATT_BC,
                      q + r0 * a->qs, (int)a->qs, 1.0f, dkb + c0 * a->ks, (int)a->ks);           // dK += scale dS^T Q
        }
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
