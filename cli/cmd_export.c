/* cmd_export.c — `lmkit export --format gguf`: a model (a Hugging Face
 * directory or a GGUF file) with its tokenizer and chat template, written as
 * one GGUF file for llama.cpp (docs/gguf.md). `lmkit quantize` (cmd_quantize.c)
 * runs this command with a quantized type. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli.h"
#include "infer/template.h"
#include "model/gguf.h"

static const char *EXPORT_HELP =
  "usage: lmkit export --format gguf --model DIR --out FILE.gguf [--type f16]\n"
  "Writes a gpt2 or llama model, its tokenizer (every tokenizer.ggml.* key) and chat template as a\n"
  "GGUF file that llama.cpp and 'lmkit generate --model FILE.gguf' run (docs/gguf.md).\n"
  "  --format gguf        the output format (gguf is the one there is)\n"
  "  --model DIR          a model directory (or a GGUF file)\n"
  "  --out FILE           the GGUF file to write (atomically)\n"
  "  --type T             f32, f16 (default), q8_0 or q4_0: the type of the 2-D weights; norms and\n"
  "                       rows that are not whole 32-value blocks stay f32\n"
  "  --quiet              no progress bar\n";

/* the model, tokenizer and chat template (NULL when none) of a directory or GGUF file */
static int load_source(const char *src, lm_model **m, lm_tokenizer **tok, char **tmpl) {
  *m = NULL; *tok = NULL; *tmpl = NULL;
  if (lm_model_load(m, src)) return cli_fail();
  int gguf = lm_gguf_is_file(src);
  if (gguf ? lm_gguf_tokenizer_load(tok, src) : lm_tokenizer_load(tok, src)) return cli_fail();
  if (gguf) return lm_gguf_chat_template(src, tmpl, NULL, NULL) ? cli_fail() : 0;
  lm_chat_config cc = {0};
  if (lm_chat_config_load(&cc, src)) return cli_fail();
  if (!cc.is_default) { *tmpl = cc.template; cc.template = NULL; }
  lm_chat_config_free(&cc);
  return 0;
}

static int run(const char *src, const char *out, const char *type_name, int quiet) {
  int type = lm_ggml_type_by_name(type_name);
  if (type != LM_GGML_F32 && type != LM_GGML_F16 && type != LM_GGML_Q8_0 && type != LM_GGML_Q4_0)
    return cli_error("invalid value for --type: '%s' (f32, f16, q8_0, q4_0)", type_name);
  lm_model *m; lm_tokenizer *tok; char *tmpl;
  int rc = load_source(src, &m, &tok, &tmpl);
  if (!rc && lm_gguf_export(m, tok, tmpl, type, out, !quiet)) rc = cli_fail();
  if (!rc && !quiet) fprintf(stderr, "wrote %s (%s)\n", out, lm_ggml_type_name(type));
  lm_model_free(m); lm_tokenizer_free(tok); free(tmpl);
  return rc;
}

int cmd_export(int argc, char **argv) {
  const char *format = NULL, *model = NULL, *out = NULL, *type = "f16", *v;
  int quiet = 0, r;
  for (int i = 1; i < argc; i++) {
    if (cli_is_help(argv[i])) { fputs(EXPORT_HELP, stdout); return 0; }
    if (!strcmp(argv[i], "--quiet")) { quiet = 1; continue; }
    if ((r = cli_opt(argc, argv, &i, "--format", &v))) { if (r < 0) return 1; format = v; continue; }
    if ((r = cli_opt(argc, argv, &i, "--model", &v))) { if (r < 0) return 1; model = v; continue; }
    if ((r = cli_opt(argc, argv, &i, "--out", &v))) { if (r < 0) return 1; out = v; continue; }
    if ((r = cli_opt(argc, argv, &i, "--type", &v))) { if (r < 0) return 1; type = v; continue; }
    return cli_unknown("export", argv[i]);
  }
  if (!format) return cli_error("--format gguf is required");
  if (strcmp(format, "gguf")) return cli_error("invalid value for --format: '%s' (gguf)", format);
  if (!model) return cli_error("--model DIR is required");
  if (!out) return cli_error("--out FILE.gguf is required");
  return run(model, out, type, quiet);
}
