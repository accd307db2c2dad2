/* test_text2text.c — the text-to-text data (src/train/finetune_text2text.c): the TSV and
 * JSONL readers (header, CRLF, BOM, blank lines, and every malformed line named by
 * file:line: no tab, two tabs, empty input or target, unknown or missing JSON members),
 * exact match's whitespace normalisation, ROUGE-L on hand-computed cases (the full check
 * against rouge-score is tests/reference/test_rouge.py), and the batch layout: the
 * encoder's padded input and mask, the decoder's input shifted right after the start
 * token and its labels with -1 on padding. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>
#include "eval/rouge.h"
#include "train/text2text.h"

static lm_status parse(const char *text, lm_t2t_rows *r) { return lm_t2t_parse(text, strlen(text), "d.tsv", r); }

static void parse_err(const char *text, const char *msg) {
  lm_t2t_rows r;
  cr_assert_neq(parse(text, &r), LM_OK, "accepted: %s", text);
  cr_assert(strstr(lm_last_error(), msg), "error '%s' lacks '%s'", lm_last_error(), msg);
  cr_assert_eq(r.n, 0);
}

Test(text2text, tsv) {
  lm_t2t_rows r;
  cr_assert_eq(parse("\xEF\xBB\xBFinput\ttarget\r\n\r\nsst2 sentence: good fun\tpositive\r\n  \nbad\tnegative", &r), LM_OK);
  cr_assert_eq(r.n, 2);
  cr_assert_str_eq(r.inputs[0], "sst2 sentence: good fun");
  cr_assert_str_eq(r.targets[0], "positive");
  cr_assert_str_eq(r.targets[1], "negative");
  cr_assert_eq(r.lines[0], 3); cr_assert_eq(r.lines[1], 5);
  lm_t2t_rows_free(&r);
  cr_assert_eq(parse("a b\tc d e\n", &r), LM_OK);   /* no header: the first line is an example */
  cr_assert_eq(r.n, 1);
  cr_assert_str_eq(r.targets[0], "c d e");
  lm_t2t_rows_free(&r);
}

Test(text2text, tsv_errors) {
  parse_err("a\tb\nno tab here\n", "d.tsv:2: no tab");
  parse_err("a\tb\nx\ty\tz\n", "d.tsv:2: more than one tab");
  parse_err("a\tb\n\nx\t\n", "d.tsv:3: empty target");
  parse_err("a\tb\nx\t   \n", "d.tsv:2: empty target");
  parse_err(" \tb\n", "d.tsv:1: empty input");
  parse_err("\n\n", "no examples");
  parse_err("input\ttarget\n", "no examples");
}

Test(text2text, jsonl) {
  lm_t2t_rows r;
  cr_assert_eq(parse("{\"input\": \"tab\\there\", \"target\": \"line\\nbreak\"}\n\n{\"target\": \"t\", \"input\": \"i\"}\n", &r), LM_OK);
  cr_assert_eq(r.n, 2);
  cr_assert_str_eq(r.inputs[0], "tab\there");
  cr_assert_str_eq(r.targets[0], "line\nbreak");
  cr_assert_str_eq(r.inputs[1], "i");
  cr_assert_eq(r.lines[1], 3);
  lm_t2t_rows_free(&r);
  parse_err("{\"input\": \"a\", \"target\": \"b\"}\n{\"input\": \"a\", \"target\": \"b\", \"id\": 3}\n", "d.tsv:2: unknown or repeated member \"id\"");
  parse_err("{\"input\": \"a\", \"target\": \"b\"}\n{\"input\": \"a\"}\n", "d.tsv:2: missing \"target\"");
  parse_err("{\"input\": \"a\", \"target\": 1}\n", "d.tsv:1: \"target\" must be a string");
  parse_err("{\"input\": \"a\", \"target\": \"\"}\n", "d.tsv:1: empty target");
  parse_err("{\"input\": \"a\", \"target\": \"b\"}\nnot json\n", "d.tsv:2: expected a JSON object");
  parse_err("{\"input\": \"a\", \"target\": \"b\"", "d.tsv:1: expected a JSON object");
}

Test(text2text, exact_match_and_rouge) {
  cr_assert(lm_t2t_exact_match("  positive\n", "positive"));
  cr_assert(lm_t2t_exact_match("a  b\tc", "a b c"));
  cr_assert(!lm_t2t_exact_match("Positive", "positive"));
  cr_assert(!lm_t2t_exact_match("positive.", "positive"));
  double p, r;
  /* target "the cat sat on the mat", prediction "the cat was on the mat": LCS 5 of 6 and 6 */
  double f = lm_rouge_l("The cat sat on the mat.", "the cat was on the mat", &p, &r);
  cr_assert_float_eq(p, 5.0 / 6, 1e-15); cr_assert_float_eq(r, 5.0 / 6, 1e-15); cr_assert_float_eq(f, 5.0 / 6, 1e-15);
  f = lm_rouge_l("police killed the gunman", "the gunman killed police", &p, &r);   /* LCS 2 */
  cr_assert_float_eq(f, 0.5, 1e-15);
  cr_assert_eq(lm_rouge_l("", "a", &p, &r), 0.0);
  cr_assert_eq(lm_rouge_l("caf\xC3\xA9!", "caf", &p, &r), 1.0);   /* non-ASCII bytes separate tokens */
}

Test(text2text, batch_layout) {
  /* two examples: inputs 3 and 1 tokens, targets 2 and 3 tokens (EOS = 1 included) */
  int32_t src[] = {5, 6, 1, 1}, tgt[] = {7, 1, 8, 9, 1};
  int64_t soff[] = {0, 3, 4}, toff[] = {0, 2, 5}, idx[] = {0, 1};
  lm_t2t_data d = {.n = 2, .src = src, .soff = soff, .tgt = tgt, .toff = toff, .S = 3, .T = 3};
  lm_t2t_special sp = {.eos = 1, .start = 0, .pad = 0};
  int32_t enc[6], dec[6], lab[6];
  uint8_t mask[6];
  lm_batch b;
  lm_t2t_fill(&d, &sp, idx, 2, enc, mask, dec, lab, &b);
  cr_assert_eq(b.B, 2); cr_assert_eq(b.S, 3); cr_assert_eq(b.T, 3);
  int32_t e_enc[] = {5, 6, 1, 1, 0, 0}, e_dec[] = {0, 7, 0, 0, 8, 9}, e_lab[] = {7, 1, -1, 8, 9, 1};
  uint8_t e_mask[] = {1, 1, 1, 1, 0, 0};
  cr_assert_arr_eq(enc, e_enc, sizeof enc);
  cr_assert_arr_eq(mask, e_mask, sizeof mask);
  cr_assert_arr_eq(dec, e_dec, sizeof dec);
  cr_assert_arr_eq(lab, e_lab, sizeof lab);
  cr_assert_eq(b.enc_mask, mask);
}
