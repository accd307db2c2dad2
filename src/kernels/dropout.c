/* dropout.c — inverted dropout with bit masks.
 *
 * A mask is one bit per element (1 = kept). Each mask takes one 64-bit key from the caller's rng;
 * its bits then come from a counter-based generator: the 64-bit value number i of the mask is
 * SplitMix64's output at position i of the stream seeded by the key (a strong mix of key + i *
 * golden ratio), and gives the two 32-bit uniforms of elements 2i and 2i+1. An element is dropped
 * when its uniform is below p * 2^32. Because a bit depends only on (key, its index), threads fill
 * disjoint ranges of words and the mask is the same on any number of threads; the rng advances by
 * one draw per mask, so a checkpointed rng resumes the masks exactly.
 * Applying a mask multiplies kept elements by 1 / (1 - p) and zeroes the rest; the backward of
 * that is the same operation on the gradient. Masks are kept, not the dropped tensors: n / 8 bytes
 * instead of 4 n. */
#include <math.h>
#include <string.h>
#include "kernels/kernels.h"

#define GOLDEN 0x9e3779b97f4a7c15ull

/* SplitMix64's output function (Steele, Lea, Flood 2014): a bijective mix of all 64 bits */
static inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

void dropout_mask(uint64_t *bits, int64_t n, float p, lm_rng *r) {
  const uint64_t key = lm_rng_u64(r), thr = (uint64_t)((double)p * 4294967296.0);
  const int64_t nw = (n + 63) / 64;
  #pragma omp parallel for schedule(static) if (nw > 4096)
  for (int64_t w = 0; w < nw; w++) {
    uint64_t lo[32], hi[32], b = 0;
    const uint64_t z0 = key + (uint64_t)w * 32u * GOLDEN;
    for (int j = 0; j < 32; j++) {   /* vectorises: 32 independent hashes */
      uint64_t u = mix64(z0 + (uint64_t)(j + 1) * GOLDEN);
      lo[j] = (u & 0xFFFFFFFFu) >= thr;
      hi[j] = (u >> 32) >= thr;
    }
    for (int j = 0; j < 32; j++) b |= lo[j] << (2 * j) | hi[j] << (2 * j + 1);
    if (w == nw - 1 && (n & 63)) b &= (1ull << (n & 63)) - 1;   /* no bits past the end */
    bits[w] = b;
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
