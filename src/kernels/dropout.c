/* dropout.c — inverted dropout with bit masks.
 *
 * A mask is one bit per element (1 = kept), drawn from the caller's rng: each
 * 64-bit draw gives two 32-bit uniforms, an element is dropped when its uniform
 * is below p * 2^32. Drawing is sequential, so a seed and a step give the same
 * masks on any number of threads, and a checkpointed rng resumes them exactly.
 * Applying a mask multiplies kept elements by 1 / (1 - p) and zeroes the rest;
 * the backward of that is the same operation on the gradient. Masks are kept,
 * not the dropped tensors: n / 8 bytes instead of 4 n. */
#include <math.h>
#include <string.h>
#include "kernels/kernels.h"

void dropout_mask(uint64_t *bits, int64_t n, float p, lm_rng *r) {
  uint64_t thr = (uint64_t)((double)p * 4294967296.0);
  memset(bits, 0, (size_t)((n + 63) / 64) * sizeof(uint64_t));
  for (int64_t i = 0; i < n; i += 2) {
    uint64_t u = lm_rng_u64(r);
    if ((u & 0xFFFFFFFFu) >= thr) bits[i >> 6] |= 1ull << (i & 63);
    if (i + 1 < n && (u >> 32) >= thr) bits[(i + 1) >> 6] |= 1ull << ((i + 1) & 63);
  }
}

void dropout_apply(float *x, const uint64_t *bits, int64_t n, float p) {
  const float scale = 1.0f / (1.0f - p);
  #pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t w = 0; w < (n + 63) / 64; w++) {
    uint64_t b = bits[w];
    int64_t end = (w + 1) * 64 < n ? (w + 1) * 64 : n;
    for (int64_t i = w * 64; i < end; i++) x[i] = (b >> (i & 63) & 1) ? x[i] * scale : 0.0f;
  }
}
