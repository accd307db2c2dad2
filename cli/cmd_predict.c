/* cmd_predict.c — `lmkit predict`: labels texts with a fine-tuned sequence
 * classifier (a BertForSequenceClassification directory, e.g. from `lmkit
 * finetune`). Reads stdin one text per line, runs the encoder in batches
 * padded to each batch's longest line, and prints one label per line in input
 * order (the argmax of the head's logits), or with --probs one JSON object per
 * line with the softmax probability of every label. Label names come from
 * config.json's id2label. Lines longer than the context are truncated; the
 * count is reported on stderr. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli.h"
#include "model/bert.h"
#include "model/config.h"
#include "model/model.h"
#include "train/finetune.h"

static const char *HELP =
  "usage: lmkit predict --model DIR [--probs] [options] < texts.txt\n"
  "\n"
  "Labels each line of stdin (one text per line, CRLF accepted; an empty line is an\n"
  "empty text) with a fine-tuned classifier (from 'lmkit finetune --task classify').\n"
  "Prints one label per line, in input order. Inputs are [CLS] text [SEP]; a text\n"
  "longer than the context is truncated, and the count is reported on stderr.\n"
  "\n"
  "options:\n"
  "  --model DIR          a sequence-classification model directory\n"
  "  --probs              print {\"label\": L, \"probs\": {label: p, ...}} JSON per line\n"
  "  --batch N            lines per forward pass (32)\n"
  "  --context N          longest input in tokens (default: the model's positions)\n"
  "  --threads N          threads (default: all cores)\n";

static void json_str(FILE *f, const char *s) {
  fputc('"', f);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '"' || *p == '\\') { fputc('\\', f); fputc(*p, f); }
    else if (*p == '\n') fputs("\\n", f);
    else if (*p == '\t') fputs("\\t", f);
    else if (*p == '\r') fputs("\\r", f);
    else if (*p < 0x20) fprintf(f, "\\u%04x", *p);
    else fputc(*p, f);
  }
  fputc('"', f);
}

int cmd_predict(int argc, char **argv) {
  const char *dir = NULL, *v;
  int probs = 0, r;
  int64_t batch = 32, context = 0, threads = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (cli_is_help(a)) { fputs(HELP, stdout); return 0; }
    if (!strcmp(a, "--probs")) { probs = 1; continue; }
    if ((r = cli_opt(argc, argv, &i, "--model", &v)) < 0) return 1; else if (r) { dir = v; continue; }
    if ((r = cli_opt(argc, argv, &i, "--batch", &v)) < 0) return 1;
    else if (r) { if (cli_i64(a, v, 1, 1 << 16, &batch)) return 1; continue; }
    if ((r = cli_opt(argc, argv, &i, "--context", &v)) < 0) return 1;
    else if (r) { if (cli_i64(a, v, 3, 1 << 20, &context)) return 1; continue; }
    if ((r = cli_opt(argc, argv, &i, "--threads", &v)) < 0) return 1;
    else if (r) { if (cli_i64(a, v, 1, 4096, &threads)) return 1; continue; }
    return cli_unknown("predict", a);
  }
  if (!dir) return cli_error("--model DIR is required (see 'lmkit predict --help')");
  lm_set_threads((int)threads);
  lm_model *m = NULL;
  lm_tokenizer *tok = NULL;
  char **names = NULL, **lines = NULL, *cpath = NULL;
  int32_t *ids = NULL; uint8_t *mask = NULL; int64_t *idx = NULL; float *p = NULL;
  int64_t L = 0, n_in = 0, n_trunc = 0;
  int rc = 0;
  if (lm_model_load(&m, dir)) { rc = cli_fail(); goto done; }
  const lm_config *c = lm_model_config(m);
  if (c->arch != LM_ARCH_BERT || c->head != LM_HEAD_CLASSIFY) {
    rc = cli_error("%s is not a sequence-classification model (fine-tune one with 'lmkit finetune --task classify')", dir);
    goto done;
  }
  L = c->num_labels;
  if (context <= 0 || context > c->n_positions) context = c->n_positions;
  cpath = lm_path_join(dir, "config.json");
  if (!cpath || lm_config_label_names(cpath, L, &names) || lm_tokenizer_load(&tok, dir)) { rc = cli_fail(); goto done; }
  lines = calloc((size_t)batch, sizeof *lines);
  ids = malloc((size_t)(batch * context) * sizeof *ids);
  mask = malloc((size_t)(batch * context));
  idx = malloc((size_t)batch * sizeof *idx);
  p = malloc((size_t)L * sizeof *p);
  if (!lines || !ids || !mask || !idx || !p) { rc = cli_error("out of memory"); goto done; }
  if (lm_bert_reserve(m, batch, context, 0)) { rc = cli_fail(); goto done; }
  for (int eof = 0; !eof;) {
    int64_t nb = 0;
    while (nb < batch) {
      size_t cap = 0;
      ssize_t n = getline(&lines[nb], &cap, stdin);
      if (n < 0) { free(lines[nb]); lines[nb] = NULL; eof = 1; break; }
      if (n && lines[nb][n - 1] == '\n') lines[nb][--n] = 0;
      if (n && lines[nb][n - 1] == '\r') lines[nb][--n] = 0;
      nb++;
    }
    if (!nb) break;
    lm_cls_data d;
    if (lm_cls_encode(&d, tok, (const char *const *)lines, NULL, nb, context)) {
      for (int64_t b = 0; b < nb; b++) { free(lines[b]); lines[b] = NULL; }
      rc = cli_fail(); goto done;
    }
    n_trunc += d.n_truncated; n_in += nb;
    for (int64_t b = 0; b < nb; b++) { idx[b] = b; free(lines[b]); lines[b] = NULL; }
    int64_t T = lm_cls_fill(&d, idx, nb, ids, mask, NULL);
    lm_cls_data_free(&d);
    lm_bert_batch bb = {.ids = ids, .mask = mask, .B = nb, .T = T};
    if (lm_bert_check_batch(m, &bb)) { rc = cli_fail(); goto done; }
    lm_bert_forward(m, &bb, NULL, NULL);
    const float *lg = lm_bert_logits(m);
    for (int64_t b = 0; b < nb; b++) {
      int64_t best = 0;
      float mx = lg[b * L];
      for (int64_t k = 1; k < L; k++) if (lg[b * L + k] > mx) { mx = lg[b * L + k]; best = k; }
      if (!probs) { printf("%s\n", names[best]); continue; }
      double z = 0;
      for (int64_t k = 0; k < L; k++) z += (p[k] = expf(lg[b * L + k] - mx));
      fputs("{\"label\": ", stdout); json_str(stdout, names[best]); fputs(", \"probs\": {", stdout);
      for (int64_t k = 0; k < L; k++) {
        if (k) fputs(", ", stdout);
        json_str(stdout, names[k]); printf(": %.6f", p[k] / z);
      }
      fputs("}}\n", stdout);
    }
    fflush(stdout);
  }
  if (n_trunc)
    fprintf(stderr, "lmkit predict: truncated %lld of %lld inputs to %lld tokens\n", (long long)n_trunc,
            (long long)n_in, (long long)context - 2);
done:
  if (names) { for (int64_t k = 0; k < L; k++) free(names[k]); free(names); }
  free(lines); free(ids); free(mask); free(idx); free(p); free(cpath);
  lm_model_free(m);
  lm_tokenizer_free(tok);
  return rc;
}
