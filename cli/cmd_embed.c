/* cmd_embed.c — `lmkit embed`: sentence embeddings from any model's final
 * hidden states. Reads stdin one text per line, frames it as the family reads
 * a sequence ([CLS] text [SEP] for encoders, the text for decoders), in
 * batches padded to each batch's longest line, and prints one JSON line per
 * input:
 *   {"text": "...", "embedding": [x0, x1, ...]}        (model width values)
 * Pooling: cls = the final hidden state of the first token (not the tanh
 * pooler); last = that of the last real token (what decoders' sequence heads
 * read); mean = the average over the real tokens (specials included, padding
 * excluded), as sentence-transformers does. Whatever head the directory
 * carries, only the hidden states are used. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli.h"
#include "model/heads.h"
#include "model/model.h"
#include "train/finetune.h"

static const char *HELP =
  "usage: lmkit embed --model DIR [--pool cls|last|mean] [options] < texts.txt\n"
  "\n"
  "Prints a sentence embedding for each line of stdin (one text per line, CRLF\n"
  "accepted) as JSON lines {\"text\": ..., \"embedding\": [...]}, with as many values\n"
  "as the model width. A text longer than the context is truncated, and the count\n"
  "is reported on stderr.\n"
  "\n"
  "options:\n"
  "  --model DIR          a model directory, encoder or decoder (any head; the final\n"
  "                       hidden states are used)\n"
  "  --pool cls|last|mean cls: the final hidden state of the first token ([CLS]); last:\n"
  "                       of the last real token; mean: the average over the real\n"
  "                       tokens, [CLS] and [SEP] included (mean)\n"
  "  --batch N            lines per forward pass (32)\n"
  "  --context N          longest input in tokens (default: the model's positions)\n"
  "  --threads N          threads (default: all cores)\n";

int cmd_embed(int argc, char **argv) {
  const char *dir = NULL, *pool = "mean", *v;
  int r;
  int64_t batch = 32, context = 0, threads = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (cli_is_help(a)) { fputs(HELP, stdout); return 0; }
    if ((r = cli_opt(argc, argv, &i, "--model", &v)) < 0) return 1; else if (r) { dir = v; continue; }
    if ((r = cli_opt(argc, argv, &i, "--pool", &v)) < 0) return 1; else if (r) { pool = v; continue; }
    if ((r = cli_opt(argc, argv, &i, "--batch", &v)) < 0) return 1;
    else if (r) { if (cli_i64(a, v, 1, 1 << 16, &batch)) return 1; continue; }
    if ((r = cli_opt(argc, argv, &i, "--context", &v)) < 0) return 1;
    else if (r) { if (cli_i64(a, v, 3, 1 << 20, &context)) return 1; continue; }
    if ((r = cli_opt(argc, argv, &i, "--threads", &v)) < 0) return 1;
    else if (r) { if (cli_i64(a, v, 1, 4096, &threads)) return 1; continue; }
    return cli_unknown("embed", a);
  }
  if (!dir) return cli_error("--model DIR is required (see 'lmkit embed --help')");
  int mean = !strcmp(pool, "mean"), last = !strcmp(pool, "last");
  if (!mean && !last && strcmp(pool, "cls")) return cli_error("unknown --pool '%s' (cls, last, mean)", pool);
  lm_set_threads((int)threads);
  lm_model *m = NULL;
  lm_tokenizer *tok = NULL;
  char **lines = NULL;
  int32_t *ids = NULL; uint8_t *mask = NULL; int64_t *idx = NULL; float *e = NULL;
  int64_t n_in = 0, n_trunc = 0;
  int rc = 0;
  lm_config cfg;
  {
    /* a token-classification head is cheap to run (an LM or MLM head would score the whole
     * vocabulary at every position); its tensors, if absent, are initialised and unused */
    if (lm_model_load_head(&m, dir, LM_HEAD_TOKENS, 0, 0) && lm_model_load(&m, dir)) { rc = cli_fail(); goto done; }
    cfg = *lm_model_config(m);
  }
  int64_t C = cfg.n_embd;
  if (context <= 0 || context > cfg.n_positions) context = cfg.n_positions;
  if (lm_tokenizer_load(&tok, dir)) { rc = cli_fail(); goto done; }
  lines = calloc((size_t)batch, sizeof *lines);
  ids = malloc((size_t)(batch * context) * sizeof *ids);
  mask = malloc((size_t)(batch * context));
  idx = malloc((size_t)batch * sizeof *idx);
  e = malloc((size_t)C * sizeof *e);
  if (!lines || !ids || !mask || !idx || !e) { rc = cli_error("out of memory"); goto done; }
  if (lm_model_reserve(m, batch, context, 0)) { rc = cli_fail(); goto done; }
  for (int eof = 0; !eof;) {
    int64_t nb = cli_read_lines(lines, batch, &eof);
    if (!nb) break;
    lm_cls_data d;
    int bad = lm_cls_encode(&d, &cfg, tok, (const char *const *)lines, NULL, nb, context) != LM_OK;
    int64_t T = 0;
    if (!bad) {
      n_trunc += d.n_truncated; n_in += nb;
      for (int64_t b = 0; b < nb; b++) idx[b] = b;
      T = lm_cls_fill(&d, idx, nb, ids, mask, NULL);
      lm_cls_data_free(&d);
    }
    lm_batch bb = {.ids = ids, .mask = mask, .B = nb, .T = T};
    if (bad || lm_batch_check(m, &bb)) {
      for (int64_t b = 0; b < nb; b++) free(lines[b]);
      memset(lines, 0, (size_t)batch * sizeof *lines);
      rc = cli_fail(); goto done;
    }
    lm_forward(m, &bb, NULL, NULL);
    const float *h = lm_model_hidden(m);
    for (int64_t b = 0; b < nb; b++) {
      const float *row = h + b * T * C;
      if (mean) {
        int64_t cnt = 0;
        for (int64_t k = 0; k < C; k++) e[k] = 0;
        for (int64_t t = 0; t < T; t++)
          if (mask[b * T + t]) { cnt++; for (int64_t k = 0; k < C; k++) e[k] += row[t * C + k]; }
        for (int64_t k = 0; k < C; k++) e[k] /= (float)cnt;
      } else {
        int64_t t = 0;
        for (int64_t u = 0; last && u < T; u++)
          if (mask[b * T + u]) t = u;
        memcpy(e, row + t * C, (size_t)C * sizeof *e);
      }
      fputs("{\"text\": ", stdout); cli_json_str(stdout, lines[b]); fputs(", \"embedding\": [", stdout);
      for (int64_t k = 0; k < C; k++) printf(k ? ", %.6g" : "%.6g", e[k]);
      fputs("]}\n", stdout);
      free(lines[b]); lines[b] = NULL;
    }
    fflush(stdout);
  }
  if (n_trunc)
    fprintf(stderr, "lmkit embed: truncated %lld of %lld inputs to %lld tokens\n", (long long)n_trunc,
            (long long)n_in, (long long)context - 2);
done:
  free(lines); free(ids); free(mask); free(idx); free(e);
  lm_model_free(m);
  lm_tokenizer_free(tok);
  return rc;
}
