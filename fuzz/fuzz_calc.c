/* fuzz_calc.c — libFuzzer target for the calculator tool's evaluator and splice
 * (src/infer/calc.c). Beyond "no crash, no hang, no undefined behaviour": an
 * accepted expression has a finite value within ±1e15, evaluating it twice gives
 * the same value, the result text is NUL-terminated and "error" exactly when the
 * evaluation fails, and a splice of the input wrapped in the call tags is the
 * arrow followed by that result text. Build with fuzz/build_calc.sh. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "infer/calc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *s = (const char *)data;
  double x, y;
  int bad = lm_calc_eval(s, size, &x);
  if (!bad) {
    if (!isfinite(x) || fabs(x) > 1e15) abort();
    if (lm_calc_eval(s, size, &y) || memcmp(&x, &y, sizeof x)) abort();
  }
  char out[64];
  int k = lm_calc_result(s, size, out, sizeof out);
  if (k <= 0 || (size_t)k >= sizeof out || out[k] != 0) abort();
  if ((strcmp(out, "error") == 0) != (bad != 0)) abort();
  /* the input as a call at the end of a text */
  size_t lo = strlen(LM_CALC_OPEN), lc = strlen(LM_CALC_CLOSE), n = lo + size + lc;
  char *t = malloc(n);
  if (!t) return 0;
  memcpy(t, LM_CALC_OPEN, lo); memcpy(t + lo, s, size); memcpy(t + lo + size, LM_CALC_CLOSE, lc);
  char sp[96];
  int m = lm_calc_splice(t, n, sp, sizeof sp);
  /* spliced unless the input itself holds a tag, which moves or cancels the call */
  if (!memmem(s, size, "<|", 2)) {
    size_t la = strlen(LM_CALC_ARROW);
    if ((size_t)m != la + (size_t)k || memcmp(sp, LM_CALC_ARROW, la) || memcmp(sp + la, out, (size_t)k)) abort();
  } else if (m < 0 || (size_t)m >= sizeof sp) abort();
  free(t);
  return 0;
}
