/* test_cls_data.c — the classification data reader (src/train/objectives/cls.c):
 * TSV column order and extra columns, no quoting, CRLF, BOM, blank lines,
 * missing columns and fields, JSONL keys and errors, label ids in order of
 * first appearance, and unseen labels at evaluation. Works in memory
 * (lm_cls_parse), plus one file read. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "train/finetune.h"

static lm_status parse(const char *text, lm_cls_labels *l, int grow, lm_cls_rows *r) {
  return lm_cls_parse(text, strlen(text), "data.tsv", l, grow, r);
}

Test(cls_data, tsv_columns_in_either_order) {
  lm_cls_labels l = {0};
  lm_cls_rows r;
  cr_assert_eq(parse("sentence\tlabel\nhello world\tpos\nbad day\tneg\nfine\tpos\n", &l, 1, &r), LM_OK);
  cr_assert_eq(r.n, 3);
  cr_assert_str_eq(r.texts[1], "bad day");
  cr_assert_eq(r.labels[0], 0); cr_assert_eq(r.labels[1], 1); cr_assert_eq(r.labels[2], 0);
  cr_assert_eq(l.n, 2);
  cr_assert_str_eq(l.names[0], "pos"); cr_assert_str_eq(l.names[1], "neg");
  cr_assert_eq(r.lines[2], 4);
  lm_cls_rows_free(&r);
  /* label first, an ignored column, `content` as the text column; labels already known keep their ids */
  cr_assert_eq(parse("label\tid\tcontent\nneg\t7\tgrey sky\nnew\t8\tx\n", &l, 1, &r), LM_OK);
  cr_assert_eq(r.n, 2);
  cr_assert_str_eq(r.texts[0], "grey sky");
  cr_assert_eq(r.labels[0], 1); cr_assert_eq(r.labels[1], 2);
  cr_assert_eq(l.n, 3);
  lm_cls_rows_free(&r);
  lm_cls_labels_free(&l);
}

Test(cls_data, no_quoting_crlf_bom_blank_lines) {
  lm_cls_labels l = {0};
  lm_cls_rows r;
  const char *t = "\xEF\xBB\xBFtext\tlabel\r\n\r\n\"quoted, kept\"\ta\r\n   \n\tb\r\nlast\ta";   /* no final newline */
  cr_assert_eq(parse(t, &l, 1, &r), LM_OK);
  cr_assert_eq(r.n, 3);
  cr_assert_str_eq(r.texts[0], "\"quoted, kept\"", "TSV has no quoting: quotes stay");
  cr_assert_str_eq(r.texts[1], "", "an empty text is allowed");
  cr_assert_str_eq(r.texts[2], "last");
  cr_assert_str_eq(l.names[0], "a", "CR is not part of the label");
  cr_assert_eq(r.lines[0], 3); cr_assert_eq(r.lines[1], 5);
  lm_cls_rows_free(&r);
  lm_cls_labels_free(&l);
}

Test(cls_data, tsv_errors) {
  lm_cls_labels l = {0};
  lm_cls_rows r;
  cr_assert_eq(parse("sentence\tscore\nx\t1\n", &l, 1, &r), LM_ERR_FORMAT);
  cr_assert(strstr(lm_last_error(), "data.tsv: the header row [\"sentence\", \"score\"] has no 'label' column"), "%s", lm_last_error());
  cr_assert_eq(parse("title\tlabel\nx\t1\n", &l, 1, &r), LM_ERR_FORMAT);
  cr_assert(strstr(lm_last_error(), "has no 'sentence/text/content' column"), "%s", lm_last_error());
  cr_assert_eq(parse("label\tsentence\npos\thi\nneg\n", &l, 1, &r), LM_ERR_FORMAT);
  cr_assert(strstr(lm_last_error(), "data.tsv:3: 1 tab-separated field"), "%s", lm_last_error());
  cr_assert_eq(parse("sentence\tlabel\nhi\t\n", &l, 1, &r), LM_ERR_FORMAT);
  cr_assert(strstr(lm_last_error(), "data.tsv:2: empty label"), "%s", lm_last_error());
  cr_assert_eq(parse("sentence\tlabel\n\n", &l, 1, &r), LM_ERR_FORMAT);
  cr_assert(strstr(lm_last_error(), "no examples after the header row"), "%s", lm_last_error());
  cr_assert_eq(parse("", &l, 1, &r), LM_ERR_FORMAT);
  cr_assert_eq(r.n, 0);
  lm_cls_labels_free(&l);
}

Test(cls_data, unseen_label_at_eval) {
  lm_cls_labels l = {0};
  lm_cls_rows r;
  cr_assert_eq(parse("sentence\tlabel\na\tpos\nb\tneg\n", &l, 1, &r), LM_OK);
  lm_cls_rows_free(&r);
  cr_assert_eq(lm_cls_parse("label\tsentence\npos\tc\nmeh\td\n", 27, "dev.tsv", &l, 0, &r), LM_ERR_FORMAT);
  cr_assert(strstr(lm_last_error(), "dev.tsv:3: label 'meh' never appears in the training data (labels: 'pos', 'neg')"),
            "%s", lm_last_error());
  cr_assert_eq(l.n, 2, "evaluation never adds labels");
  cr_assert_eq(parse("label\tsentence\nneg\tc\n", &l, 0, &r), LM_OK);
  cr_assert_eq(r.labels[0], 1);
  lm_cls_rows_free(&r);
  lm_cls_labels_free(&l);
}

Test(cls_data, jsonl) {
  lm_cls_labels l = {0};
  lm_cls_rows r;
  const char *t = "{\"text\": \"a\\tb\", \"label\": \"x\"}\r\n\n{\"label\": 1, \"sentence\": \"s\"}\n"
                  "{\"content\": \"c\", \"label\": true, \"other\": [1]}\n";
  cr_assert_eq(lm_cls_parse(t, strlen(t), "d.jsonl", &l, 1, &r), LM_OK);
  cr_assert_eq(r.n, 3);
  cr_assert_str_eq(r.texts[0], "a\tb");
  cr_assert_str_eq(l.names[1], "1", "integer labels become their decimal text");
  cr_assert_str_eq(l.names[2], "true");
  cr_assert_eq(r.lines[1], 3);
  lm_cls_rows_free(&r);
  const char *bad1 = "{\"text\": \"a\", \"label\": \"x\"}\n{\"text\": \"b\", \"label\": \n";
  cr_assert_eq(lm_cls_parse(bad1, strlen(bad1), "d.jsonl", &l, 1, &r), LM_ERR_FORMAT);
  cr_assert(strstr(lm_last_error(), "d.jsonl:2: malformed JSON line"), "%s", lm_last_error());
  const char *bad2 = "{\"text\": \"a\", \"label\": \"x\"}\n[1, 2]\n";
  cr_assert_eq(lm_cls_parse(bad2, strlen(bad2), "d.jsonl", &l, 1, &r), LM_ERR_FORMAT);
  cr_assert(strstr(lm_last_error(), "d.jsonl:2:"), "%s", lm_last_error());
  const char *bad3 = "{\"text\": \"a\"}\n";
  cr_assert_eq(lm_cls_parse(bad3, strlen(bad3), "d.jsonl", &l, 1, &r), LM_ERR_FORMAT);
  cr_assert(strstr(lm_last_error(), "d.jsonl:1: no \"label\""), "%s", lm_last_error());
  const char *bad4 = "{\"title\": \"a\", \"label\": \"x\"}\n";
  cr_assert_eq(lm_cls_parse(bad4, strlen(bad4), "d.jsonl", &l, 1, &r), LM_ERR_FORMAT);
  cr_assert(strstr(lm_last_error(), "d.jsonl:1: no \"sentence\", \"text\" or \"content\" string"), "%s", lm_last_error());
  const char *bad5 = "{\"text\": \"a\", \"label\": null}\n";
  cr_assert_eq(lm_cls_parse(bad5, strlen(bad5), "d.jsonl", &l, 1, &r), LM_ERR_FORMAT);
  cr_assert(strstr(lm_last_error(), "must be a string or a number"), "%s", lm_last_error());
  lm_cls_labels_free(&l);
}

Test(cls_data, read_file) {
  char path[] = "/tmp/lmkit_cls_XXXXXX";
  int fd = mkstemp(path);
  cr_assert(fd >= 0);
  FILE *f = fdopen(fd, "w");
  fputs("text\tlabel\nhi\ta\nho\tb\n", f);
  fclose(f);
  lm_cls_labels l = {0};
  lm_cls_rows r;
  cr_assert_eq(lm_cls_read(path, &l, 1, &r), LM_OK);
  cr_assert_eq(r.n, 2);
  lm_cls_rows_free(&r);
  lm_cls_labels_free(&l);
  remove(path);
  cr_assert_neq(lm_cls_read(path, &l, 1, &r), LM_OK, "a missing file is an error");
}
