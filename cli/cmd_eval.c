/* cmd_eval.c — `lmkit eval`: mean next-token loss and perplexity of a model
 * over the whole token stream of some data. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli.h"

static const char *HELP =
  "usage: lmkit eval --model DIR --data FILE|DIR... [options]\n"
  "\n"
  "Prints the mean loss (nats per token) and perplexity of the model on the data,\n"
  "over consecutive windows of the context length.\n"
  "\n"
  "  --model DIR          model directory\n"
  "  --adapter DIR        a LoRA adapter (PEFT directory) on the model; its adapter_config.json\n"
  "                       names the base when --model is not given\n"
  "  --data FILE|DIR...   text files (tokenized with the model's tokenizer) or shard directories\n"
  "  --context N          window length (default: the model's context)\n"
  "  --batch N            windows per forward pass (4)\n"
  "  --threads N          threads (default: all cores)\n";

int cmd_eval(int argc, char **argv) {
  const char *model = NULL, *adapter = NULL, *v;
  char *base = NULL;
  const char **data = calloc(argc, sizeof *data);
  int n_data = 0, r, rc = 0;
  int64_t context = 0, batch = 4, threads = 0;
  if (!data) return cli_error("out of memory");
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (cli_is_help(a)) { fputs(HELP, stdout); free(data); return 0; }
    if (!strcmp(a, "--data")) {
      while (i + 1 < argc && strncmp(argv[i + 1], "--", 2)) data[n_data++] = argv[++i];
      continue;
    }
    if ((r = cli_opt(argc, argv, &i, "--model", &v))) { if (r < 0) { free(data); return 1; } model = v; continue; }
    if ((r = cli_opt(argc, argv, &i, "--adapter", &v))) { if (r < 0) { free(data); return 1; } adapter = v; continue; }
    if ((r = cli_opt(argc, argv, &i, "--context", &v))) { if (r < 0 || cli_i64(a, v, 1, 1 << 20, &context)) { free(data); return 1; } continue; }
    if ((r = cli_opt(argc, argv, &i, "--batch", &v))) { if (r < 0 || cli_i64(a, v, 1, 1 << 16, &batch)) { free(data); return 1; } continue; }
    if ((r = cli_opt(argc, argv, &i, "--threads", &v))) { if (r < 0 || cli_i64(a, v, 1, 4096, &threads)) { free(data); return 1; } continue; }
    free(data);
    return cli_unknown("eval", a);
  }
  if ((!model && !adapter) || !n_data) { free(data); return cli_error("--model DIR and --data FILE... are required (see 'lmkit eval --help')"); }
  lm_set_threads((int)threads);
  lm_tokenizer *tok = NULL;
  lm_model *m = NULL;
  double loss; int64_t n;
  /* the adapter is kept apart from the base (not merged): the loss is that of y = x W^T + (alpha/r) x A^T B^T */
  if (cli_load_with_adapter(model, adapter, 0, &m, &base)) { rc = 1; goto done; }
  if (cli_tokenizer_of(base, &tok)) { rc = cli_fail(); goto done; }
  if (context > lm_model_config(m)->n_positions) {
    rc = cli_error("--context %lld is longer than the model's %lld positions", (long long)context, (long long)lm_model_config(m)->n_positions);
    goto done;
  }
  if (lm_evaluate(m, tok, data, n_data, context, batch, &loss, &n)) { rc = cli_fail(); goto done; }
  printf("loss %.4f  perplexity %.3f  tokens %lld\n", loss, exp(loss), (long long)n);
done:
  lm_model_free(m);
  free(base);
  lm_tokenizer_free(tok);
  free(data);
  return rc;
}
