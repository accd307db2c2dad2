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
 * carries, only the hidden states are used. The embedding itself is the
 * library's (src/rag/embed.c), which retrieval indexes use too. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli.h"
#include "rag/rag.h"

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
  lm_rag_embed_opts eo;
  lm_rag_embed_opts_default(&eo);
  eo.normalize = 0;
  eo.batch = 32;
  int64_t threads = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (cli_is_help(a)) { fputs(HELP, stdout); return 0; }
    if ((r = cli_opt(argc, argv, &i, "--model", &v)) < 0) return 1; else if (r) { dir = v; continue; }
    if ((r = cli_opt(argc, argv, &i, "--pool", &v)) < 0) return 1; else if (r) { pool = v; continue; }
    if ((r = cli_opt(argc, argv, &i, "--batch", &v)) < 0) return 1;
    else if (r) { if (cli_i64(a, v, 1, 1 << 16, &eo.batch)) return 1; continue; }
    if ((r = cli_opt(argc, argv, &i, "--context", &v)) < 0) return 1;
    else if (r) { if (cli_i64(a, v, 3, 1 << 20, &eo.context)) return 1; continue; }
    if ((r = cli_opt(argc, argv, &i, "--threads", &v)) < 0) return 1;
    else if (r) { if (cli_i64(a, v, 1, 4096, &threads)) return 1; continue; }
    return cli_unknown("embed", a);
  }
  if (!dir) return cli_error("--model DIR is required (see 'lmkit embed --help')");
  if (lm_rag_pool_parse(pool, &eo.pool)) return cli_error("unknown --pool '%s' (cls, last, mean)", pool);
  lm_set_threads((int)threads);
  lm_rag_embedder *e = NULL;
  char **lines = NULL;
  float *out = NULL;
  int64_t n_in = 0, n_trunc = 0;
  int rc = 0;
  if (lm_rag_embedder_load(&e, dir, &eo)) { rc = cli_fail(); goto done; }
  int64_t C = lm_rag_embedder_dim(e);
  lines = calloc((size_t)eo.batch, sizeof *lines);
  out = malloc((size_t)(eo.batch * C) * sizeof *out);
  if (!lines || !out) { rc = cli_error("out of memory"); goto done; }
  for (int eof = 0; !eof && !rc;) {
    int64_t nb = cli_read_lines(lines, eo.batch, &eof), cut = 0;
    if (!nb) break;
    if (lm_rag_embed(e, (const char *const *)lines, nb, out, &cut)) rc = cli_fail();
    n_trunc += cut;
    n_in += nb;
    for (int64_t b = 0; b < nb; b++) {
      if (!rc) {
        fputs("{\"text\": ", stdout); cli_json_str(stdout, lines[b]); fputs(", \"embedding\": [", stdout);
        for (int64_t k = 0; k < C; k++) printf(k ? ", %.6g" : "%.6g", out[b * C + k]);
        fputs("]}\n", stdout);
      }
      free(lines[b]); lines[b] = NULL;
    }
    fflush(stdout);
  }
  if (!rc && n_trunc)
    fprintf(stderr, "lmkit embed: truncated %lld of %lld inputs to %lld tokens\n", (long long)n_trunc,
            (long long)n_in, (long long)lm_rag_embedder_context(e) - 2);
done:
  free(lines); free(out);
  lm_rag_embedder_free(e);
  return rc;
}
