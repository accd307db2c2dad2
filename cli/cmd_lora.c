/* cmd_lora.c — `lmkit lora merge`: folds a PEFT LoRA adapter into its base
 * model and writes a full model directory (src/model/lora.h lm_lora_merge). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli.h"
#include "base/base.h"
#include "model/lora.h"

static const char *HELP =
  "usage: lmkit lora merge --adapter DIR --out OUT [--model BASE]\n"
  "\n"
  "Folds a LoRA adapter (a PEFT directory: adapter_config.json +\n"
  "adapter_model.safetensors, as 'lmkit sft --lora-rank R' writes) into its base\n"
  "model, W += (alpha/r) B A for every adapted linear (and a trained task head\n"
  "replaces the base's), and writes OUT as a full model directory: config.json,\n"
  "model.safetensors, the base's tokenizer and chat template.\n"
  "\n"
  "  --adapter DIR        the adapter\n"
  "  --model BASE         the base model (default: adapter_config.json's base_model_name_or_path)\n"
  "  --out OUT            the merged model's directory\n";

/* OUT gets tokenizer_config.json (the chat template) from the adapter's directory, else the base's */
static lm_status copy_template(const char *adapter, const char *base, const char *out) {
  char *dst = lm_path_join(out, "tokenizer_config.json");
  if (!dst) return LM_ERR_NOMEM;
  lm_status st = LM_OK;
  for (int i = 0; i < 2 && !st && !lm_file_exists(dst); i++) {
    char *src = lm_path_join(i ? base : adapter, "tokenizer_config.json"), *text;
    size_t len;
    if (!src) { st = LM_ERR_NOMEM; break; }
    if (lm_file_exists(src) && !(st = lm_read_file(src, &text, &len))) { st = lm_write_file_atomic(dst, text, len); free(text); }
    free(src);
  }
  free(dst);
  return st;
}

static int merge(int argc, char **argv) {
  const char *model = NULL, *adapter = NULL, *out = NULL, *v;
  int r;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (cli_is_help(a)) { fputs(HELP, stdout); return 0; }
    if ((r = cli_opt(argc, argv, &i, "--model", &v))) { if (r < 0) return 1; model = v; continue; }
    if ((r = cli_opt(argc, argv, &i, "--adapter", &v))) { if (r < 0) return 1; adapter = v; continue; }
    if ((r = cli_opt(argc, argv, &i, "--out", &v))) { if (r < 0) return 1; out = v; continue; }
    return cli_unknown("lora merge", a);
  }
  if (!adapter) return cli_error("--adapter DIR is required (see 'lmkit lora --help')");
  if (!out) return cli_error("--out OUT is required (see 'lmkit lora --help')");
  lm_model *m = NULL;
  lm_tokenizer *tok = NULL;
  char *base = NULL;
  int rc = 0;
  if (cli_load_with_adapter(model, adapter, 1, &m, &base)) return 1;
  if (lm_model_save(m, out)) { rc = cli_fail(); goto done; }
  /* a model directory without a tokenizer is still a model: the base may not have one */
  if (!lm_tokenizer_load(&tok, base) && lm_tokenizer_save(tok, out)) { rc = cli_fail(); goto done; }
  if (copy_template(adapter, base, out)) { rc = cli_fail(); goto done; }
  fprintf(stderr, "lmkit lora merge: %s + %s -> %s\n", base, adapter, out);
done:
  lm_tokenizer_free(tok);
  lm_model_free(m);
  free(base);
  return rc;
}

int cmd_lora(int argc, char **argv) {
  if (argc < 2 || cli_is_help(argv[1])) { fputs(HELP, argc < 2 ? stderr : stdout); return argc < 2 ? 2 : 0; }
  if (!strcmp(argv[1], "merge")) return merge(argc - 1, argv + 1);
  return cli_error("unknown subcommand 'lora %s' (see 'lmkit lora --help')", argv[1]);
}
