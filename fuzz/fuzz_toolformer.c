/* fuzz_toolformer.c — libFuzzer target for the text side of `lmkit toolformer`
 * (src/train/toolformer_find.c): finding the arithmetic in a text and
 * inserting the calls. Beyond "no crash, no hang, no undefined behaviour":
 * candidates come in order inside the text, each expression evaluates, its
 * call goes at its end or after the "=" that follows, and the text with every
 * call inserted is the text plus exactly those calls. Build with
 * fuzz/build_calc.sh (it builds this target too). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "infer/calc.h"
#include "train/toolformer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *t = malloc(size + 1);
  if (!t) return 0;
  memcpy(t, data, size); t[size] = 0;   /* the finder reads a C string: up to the first NUL */
  size_t len = strlen(t), calls = 0, prev = 0;
  lm_toolformer_cand *c = NULL;
  int64_t n = 0;
  if (lm_toolformer_find(t, &c, &n)) { free(t); return 0; }
  for (int64_t i = 0; i < n; i++) {
    double v;
    if (c[i].start < prev || c[i].start >= c[i].end || c[i].end > c[i].at || c[i].at > len) abort();
    if (lm_calc_eval(t + c[i].start, c[i].end - c[i].start, &v)) abort();
    if (c[i].at != c[i].end && t[c[i].at - 1] != '=') abort();
    prev = c[i].at;
    c[i].keep = 1;
    char *s = lm_toolformer_call(t, &c[i], 1);
    if (!s) abort();
    calls += strlen(s);
    free(s);
  }
  char *a = lm_toolformer_apply(t, c, n);
  if (!a || strlen(a) != len + calls) abort();
  free(a); free(c); free(t);
  return 0;
}
