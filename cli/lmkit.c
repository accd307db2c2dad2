/* lmkit.c — the command-line entry point: dispatches `lmkit CMD ...` to
 * cli/cmd_<CMD>.c. Commands are thin layers over the public API. */
#include <stdio.h>
#include <string.h>
#include "cli.h"

typedef struct { const char *name; int (*fn)(int, char **); const char *help; } command;

int cmd_template(int argc, char **argv);   /* cli/cmd_template.c */
static const command COMMANDS[] = {
  {"train", cmd_train, "pre-train a model (GPT-2 family) on text files or token shards"},
  {"generate", cmd_generate, "generate text from a prompt, streaming tokens"},
  {"eval", cmd_eval, "mean loss and perplexity of a model on data"},
  {"info", cmd_info, "show a model's config and size; --system shows BLAS and threads"},
  {"tokenizer", cmd_tokenizer, "train a BPE tokenizer, encode or decode text"},
  {"data", cmd_data, "prepare token shards from text (data prepare)"},
  {"finetune", cmd_finetune, "fine-tune a BERT model for sequence classification"},
  {"predict", cmd_predict, "label stdin lines with a fine-tuned classifier"},
  {"embed", cmd_embed, "print sentence embeddings (JSONL) of stdin lines"},
  {"template", cmd_template, "render a chat request with a model's chat template; print the prompt"},
  {"distill", cmd_distill, "distill a BERT teacher into a smaller, faster student (DistilBERT)"},
};
#define N_COMMANDS (sizeof COMMANDS / sizeof COMMANDS[0])

static void usage(FILE *f) {
  fprintf(f, "usage: lmkit COMMAND [OPTIONS]\n\n"
             "lmkit carries a language model through tokenize -> pre-train -> use.\n\ncommands:\n");
  for (size_t i = 0; i < N_COMMANDS; i++) fprintf(f, "  %-10s %s\n", COMMANDS[i].name, COMMANDS[i].help);
  fprintf(f, "\n'lmkit COMMAND --help' documents each command.\n");
}

int main(int argc, char **argv) {
  if (argc < 2) { usage(stderr); return 2; }
  if (cli_is_help(argv[1]) || !strcmp(argv[1], "help")) { usage(stdout); return 0; }
  for (size_t i = 0; i < N_COMMANDS; i++)
    if (!strcmp(argv[1], COMMANDS[i].name)) return COMMANDS[i].fn(argc - 1, argv + 1);
  cli_error("unknown command '%s' (see 'lmkit --help')", argv[1]);
  return 2;
}
