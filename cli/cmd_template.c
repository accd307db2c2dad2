/* cmd_template.c — `lmkit template`: renders a chat request with a model's chat template
 * (src/infer/template.c) and prints the prompt, byte for byte what the model would be fed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/base.h"
#include "cli.h"
#include "infer/template.h"

static const char *HELP =
  "usage: lmkit template --model DIR [--template FILE] < request.json\n"
  "\n"
  "Renders a chat request with the model's chat template and prints the prompt (no newline is\n"
  "added). The template is DIR/chat_template.jinja or tokenizer_config.json's chat_template (for\n"
  "a list of named templates, 'default'); a directory without one gets ChatML. bos_token and\n"
  "eos_token come from tokenizer_config.json. DIR may hold only tokenizer files.\n"
  "\n"
  "The request on stdin is the body of a chat request:\n"
  "  {\"messages\": [{\"role\": \"system\", \"content\": \"...\"}, {\"role\": \"user\", \"content\": \"...\"}],\n"
  "   \"add_generation_prompt\": true, \"tools\": [...], \"chat_template_kwargs\": {\"enable_thinking\": false}}\n"
  "\n"
  "  --model DIR       model or tokenizer directory\n"
  "  --template FILE   render this Jinja file instead of the model's template\n"
  "  --show-template   print the template that would be used, and where it comes from, then exit\n"
  "\n"
  "See docs/chat-templates.md for the supported Jinja subset.\n";

/* cJSON stops a string at \u0000, which would silently shorten the message: refuse it. */
static int has_nul_escape(const char *s, size_t n) {
  int in = 0;
  for (size_t i = 0; i < n; i++) {
    if (!in) { if (s[i] == '"') in = 1; continue; }
    if (s[i] == '"') { in = 0; continue; }
    if (s[i] == '\\' && i + 1 < n) {
      if (s[i + 1] == 'u' && i + 5 < n && !memcmp(s + i + 2, "0000", 4)) return 1;
      i++;
    }
  }
  return 0;
}

int cmd_template(int argc, char **argv) {
  const char *model = NULL, *tfile = NULL, *v;
  int show = 0, r;
  for (int i = 1; i < argc; i++) {
    if (cli_is_help(argv[i])) { fputs(HELP, stdout); return 0; }
    if ((r = cli_opt(argc, argv, &i, "--model", &v))) { if (r < 0) return 1; model = v; continue; }
    if ((r = cli_opt(argc, argv, &i, "--template", &v))) { if (r < 0) return 1; tfile = v; continue; }
    if (!strcmp(argv[i], "--show-template")) { show = 1; continue; }
    return cli_unknown("template", argv[i]);
  }
  if (!model && !tfile) return cli_error("give --model DIR (see 'lmkit template --help')");

  lm_chat_config cc;
  if (model) {
    if (lm_chat_config_load(&cc, model)) return cli_fail();
  } else {
    memset(&cc, 0, sizeof cc);
  }
  if (tfile) {
    char *text;
    size_t n;
    if (lm_read_file(tfile, &text, &n)) { lm_chat_config_free(&cc); return cli_fail(); }
    if (strlen(text) != n) { free(text); lm_chat_config_free(&cc); return cli_error("%s: contains a NUL byte", tfile); }
    free(cc.template);
    free(cc.source);
    cc.template = text;
    cc.source = lm_strdup(tfile);
    cc.is_default = 0;
  }
  if (show) {
    printf("# template from %s (bos_token %s%s%s, eos_token %s%s%s)\n%s\n", cc.source ? cc.source : "?",
           cc.bos_token ? "'" : "", cc.bos_token ? cc.bos_token : "none", cc.bos_token ? "'" : "",
           cc.eos_token ? "'" : "", cc.eos_token ? cc.eos_token : "none", cc.eos_token ? "'" : "", cc.template);
    lm_chat_config_free(&cc);
    return 0;
  }

  /* the whole of stdin */
  size_t cap = 1 << 16, len = 0;
  char *buf = malloc(cap);
  for (;;) {
    if (!buf) { lm_chat_config_free(&cc); return cli_error("out of memory"); }
    len += fread(buf + len, 1, cap - len, stdin);
    if (len < cap) break;
    if (cap >= ((size_t)1 << 30)) { free(buf); lm_chat_config_free(&cc); return cli_error("<stdin>: request larger than 1 GiB"); }
    char *nb = realloc(buf, cap * 2);
    if (!nb) free(buf);
    buf = nb;
    cap *= 2;
  }
  if (ferror(stdin)) { free(buf); lm_chat_config_free(&cc); return cli_error("<stdin>: read error"); }
  if (has_nul_escape(buf, len)) { free(buf); lm_chat_config_free(&cc); return cli_error("<stdin>: \\u0000 in a string is not supported"); }
  const char *end = NULL;
  cJSON *req = cJSON_ParseWithLengthOpts(buf, len, &end, 0);
  if (!req) {
    size_t off = end && end >= buf ? (size_t)(end - buf) : 0;
    free(buf);
    lm_chat_config_free(&cc);
    return cli_error("<stdin>: not valid JSON (near byte %zu); expected {\"messages\": [...], \"add_generation_prompt\": true}", off);
  }
  while (end && end < buf + len && (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r')) end++;
  if (end && end < buf + len) {
    size_t off = (size_t)(end - buf);
    free(buf);
    cJSON_Delete(req);
    lm_chat_config_free(&cc);
    return cli_error("<stdin>: unexpected text after the JSON request (byte %zu)", off);
  }
  free(buf);
  char *out;
  size_t n;
  lm_status st = lm_chat_render(&cc, req, &out, &n);
  cJSON_Delete(req);
  lm_chat_config_free(&cc);
  if (st) return cli_fail();
  size_t w = fwrite(out, 1, n, stdout);
  free(out);
  if (w != n || fflush(stdout)) return cli_error("could not write the prompt to stdout");
  return 0;
}
