/* fuzz_study.c — libFuzzer target for the study stage's readers: a sweep's runs.jsonl
 * (src/scaling/runs.c), multiple-choice task records (src/eval/mc_data.c), classification
 * records, JSONL or TSV (src/eval/pcls.c, with the conversion to multiple choice), and
 * exact-match records with the answer normalizations (src/eval/em_data.c). The first byte
 * chooses the parser; the rest is the file. Beyond "no crash, no leak, no undefined
 * behaviour": every accepted run has positive finite params, tokens, flops and val_loss and a
 * line number within the file; every accepted record has at least 2 endings, a label among
 * them and NUL-terminated strings; parsing twice gives the same result. Build with
 * fuzz/build_study.sh. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "base/base.h"
#include "eval/em.h"
#include "eval/mc.h"
#include "eval/pcls.h"
#include "scaling/scaling.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  const char *text = (const char *)data + 1;
  size_t len = size - 1;
  int64_t lines = 1;
  for (size_t i = 0; i < len; i++) lines += text[i] == '\n';
  if (data[0] % 4 == 2) {
    lm_pcls_set s;
    if (lm_pcls_parse(text, len, "f", &s)) return 0;
    const char *words[] = {"neg", "pos", "0"};
    lm_mc_set m;
    if (!lm_pcls_to_mc(&s, "f", "T: {text}{text}\n", words, 3, &m)) {
      if (m.n != s.n) abort();
      for (int64_t i = 0; i < m.n; i++)
        if (m.items[i].label < 0 || m.items[i].label >= 3 || m.items[i].line != s.items[i].line) abort();
      lm_mc_free(&m);
    }
    lm_pcls_free(&s);
  } else if (data[0] % 4 == 3) {
    lm_em_set s;
    if (lm_em_parse(text, len, "f", &s)) return 0;
    for (int64_t i = 0; i < s.n; i++) {
      if (s.items[i].n_targets < 1 || s.items[i].line < 1 || s.items[i].line > lines) abort();
      for (int k = 0; k < s.items[i].n_targets; k++)
        for (int mode = 0; mode < 3; mode++) {
          char *a = lm_em_normalize(s.items[i].targets[k], (lm_em_norm)mode), *b = a ? lm_em_normalize(a, (lm_em_norm)mode) : NULL;
          if (a && b && strcmp(a, b)) abort();   /* normalizing is idempotent */
          free(a); free(b);
        }
    }
    lm_em_free(&s);
  } else if (data[0] & 1) {
    lm_mc_set s, t;
    if (lm_mc_parse(text, len, "f", &s)) return 0;
    if (lm_mc_parse(text, len, "f", &t) || t.n != s.n) abort();
    for (int64_t i = 0; i < s.n; i++) {
      const lm_mc_item *it = &s.items[i];
      if (it->n_endings < 2 || it->label < 0 || it->label >= it->n_endings || it->line < 1 || it->line > lines) abort();
      if (strcmp(it->ctx, t.items[i].ctx)) abort();
      for (int k = 0; k < it->n_endings; k++)
        if (strcmp(it->endings[k], t.items[i].endings[k])) abort();
    }
    lm_mc_free(&s); lm_mc_free(&t);
  } else {
    lm_scaling_run *r = NULL, *q = NULL;
    int64_t n = 0, m = 0;
    if (lm_scaling_parse(text, len, "f", &r, &n)) return 0;
    if (lm_scaling_parse(text, len, "f", &q, &m) || m != n || (n && memcmp(r, q, (size_t)n * sizeof *r))) abort();
    for (int64_t i = 0; i < n; i++) {
      const lm_scaling_run *x = &r[i];
      if (!(x->params > 0 && x->tokens > 0 && x->flops > 0 && x->val_loss > 0) || !isfinite(x->params) ||
          !isfinite(x->tokens) || !isfinite(x->flops) || !isfinite(x->val_loss) || x->line < 1 || x->line > lines ||
          !memchr(x->run, 0, sizeof x->run))
        abort();
    }
    free(r); free(q);
  }
  return 0;
}
