/* vexp.h — exp(x) that gcc vectorises (libm's expf has no vector variant
 * without -ffast-math), shared by the softmax, cross-entropy and GELU
 * kernels: range reduction to [-ln2/2, ln2/2] and a degree-7 polynomial,
 * about 1-2 ulp. */
#ifndef LM_VEXP_H
#define LM_VEXP_H
#include <stdint.h>
#include <string.h>

/* exp(x) for x in float range, vectorisable: exp(x) = 2^k * exp(r), k = round(x/ln2).
 * Inputs below -87 give 0 (the true value is < 2e-38); inputs above 88 saturate. */
static inline float vexp(float x) {
  float xc = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  float kf = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round to nearest
  float r = xc - kf * 0.693145751953125f;          // ln2 split in two for an exact product
  r = r - kf * 1.428606765330187045e-06f;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  int32_t bits = ((int32_t)kf + 127) << 23;
  float scale;
  memcpy(&scale, &bits, sizeof scale);
  return x < -87.0f ? 0.0f : p * scale;
}

#endif
