/* cmd_quantize.c — `lmkit quantize [--type q8_0|q4_0] IN OUT`: a model directory or GGUF file
 * quantized into a GGUF file (docs/gguf.md). It is `lmkit export --format gguf --type T --model IN
 * --out OUT` (cmd_export.c) with llama.cpp's argument order and only the quantized types. */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include "cli.h"

int cmd_export(int argc, char **argv);   /* cli/cmd_export.c */

static const char *QUANTIZE_HELP =
  "usage: lmkit quantize [--type q8_0] IN OUT.gguf\n"
  "Quantizes a model (a model directory or a GGUF file) into a GGUF file: q8_0 (8-bit, one f16\n"
  "scale per 32 values) or q4_0 (4-bit); as 'lmkit export --format gguf --type T' (docs/gguf.md).\n"
  "  --type T             q8_0 (default) or q4_0\n"
  "  --quiet              no progress bar\n";

int cmd_quantize(int argc, char **argv) {
  const char *type = "q8_0", *in = NULL, *out = NULL, *v;
  int quiet = 0, r;
  for (int i = 1; i < argc; i++) {
    if (cli_is_help(argv[i])) { fputs(QUANTIZE_HELP, stdout); return 0; }
    if (!strcmp(argv[i], "--quiet")) { quiet = 1; continue; }
    if ((r = cli_opt(argc, argv, &i, "--type", &v))) { if (r < 0) return 1; type = v; continue; }
    if (argv[i][0] == '-') return cli_unknown("quantize", argv[i]);
    if (!in) in = argv[i];
    else if (!out) out = argv[i];
    else return cli_error("quantize takes IN and OUT, got a third argument '%s'", argv[i]);
  }
  if (!in || !out) return cli_error("usage: lmkit quantize [--type q8_0|q4_0] IN OUT.gguf");
  if (strcasecmp(type, "q8_0") && strcasecmp(type, "q4_0")) return cli_error("invalid value for --type: '%s' (q8_0, q4_0)", type);
  char *args[] = {"export", "--format", "gguf", "--type", (char *)type, "--model", (char *)in, "--out", (char *)out,
                  quiet ? "--quiet" : NULL, NULL};
  return cmd_export(quiet ? 10 : 9, args);
}
