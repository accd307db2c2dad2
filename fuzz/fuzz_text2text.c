/* fuzz_text2text.c — libFuzzer target for the text-to-text data reader (lm_t2t_parse,
 * src/train/text2text_data.c: TSV input<TAB>target lines or JSONL records) and the
 * scoring of its strings (lm_t2t_exact_match, lm_rouge_l). Beyond "no crash, no leak, no
 * undefined behaviour": every accepted example has a non-blank input and target and a line
 * number within the file, lines increase, an example matches itself exactly with ROUGE-L 1 or
 * 0 (no token), and ROUGE-L of any two is in [0, 1] and symmetric in F. Build with
 * fuzz/build_text2text.sh. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "eval/rouge.h"
#include "train/text2text.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *text = (const char *)data;
  int64_t lines = 1;
  for (size_t i = 0; i < size; i++) lines += text[i] == '\n';
  lm_t2t_rows r;
  if (lm_t2t_parse(text, size, "f", &r)) return 0;
  if (r.n < 1) abort();
  for (int64_t i = 0; i < r.n; i++) {
    if (!r.inputs[i][0] || !r.targets[i][0] || r.lines[i] < 1 || r.lines[i] > lines) abort();
    if (i && r.lines[i] <= r.lines[i - 1]) abort();
    if (!lm_t2t_exact_match(r.targets[i], r.targets[i])) abort();
    double f = lm_rouge_l(r.targets[i], r.targets[i], NULL, NULL);
    if (f != 1.0 && f != 0.0) abort();
    double a = lm_rouge_l(r.inputs[i], r.targets[i], NULL, NULL), b = lm_rouge_l(r.targets[i], r.inputs[i], NULL, NULL);
    if (!(a >= 0 && a <= 1) || a != b) abort();
  }
  lm_t2t_rows_free(&r);
  return 0;
}
