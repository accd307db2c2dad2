/* lmkit.c — the command-line entry point: dispatches `lmkit CMD ...` to
 * cli/cmd_<CMD>.c. Commands are thin layers over the public API. The help
 * groups them by the life stage of a model they serve (DESIGN.md):
 * tokenize -> pre-train -> post-train -> use -> study. */
#include <stdio.h>
#include <string.h>
#include "cli.h"

/* stage: one of STAGES below; a command listed without one shows under "other" */
typedef struct { const char *name; int (*fn)(int, char **); const char *help; const char *stage; } command;

static const char *const STAGES[] = {"tokenize", "pre-train", "post-train", "use", "study"};
#define N_STAGES (sizeof STAGES / sizeof STAGES[0])

int cmd_template(int argc, char **argv);   /* cli/cmd_template.c */
int cmd_serve(int argc, char **argv);      /* cli/cmd_serve.c */
int cmd_grpo(int argc, char **argv);       /* cli/cmd_grpo.c */
int cmd_rloo(int argc, char **argv);       /* cli/cmd_rloo.c */
int cmd_ppo(int argc, char **argv);        /* cli/cmd_ppo.c */
int cmd_export(int argc, char **argv);     /* cli/cmd_export.c */
int cmd_quantize(int argc, char **argv);   /* cli/cmd_quantize.c */
int cmd_fit(int argc, char **argv);        /* cli/cmd_fit.c */
int cmd_sweep(int argc, char **argv);      /* cli/cmd_sweep.c */
int cmd_plot(int argc, char **argv);       /* cli/cmd_plot.c */
int cmd_toolformer(int argc, char **argv); /* cli/cmd_toolformer.c */
static const command COMMANDS[] = {
  {"tokenizer", cmd_tokenizer, "train a byte-level BPE tokenizer; encode or decode text (BPE, WordPiece)", "tokenize"},
  {"data", cmd_data, "prepare token shards from text (data prepare)", "tokenize"},
  {"train", cmd_train, "pre-train a GPT-2 (causal LM) or BERT (masked LM, NSP) model; exact resume", "pre-train"},
  {"finetune", cmd_finetune, "fine-tune a model with a task head: sequence or token classification, QA spans", "post-train"},
  {"sft", cmd_sft, "instruction-tune a decoder on conversations (loss on the assistant's tokens)", "post-train"},
  {"lora", cmd_lora, "merge a LoRA adapter (PEFT directory) into its base model: a full model", "post-train"},
  {"reward", cmd_reward, "train a reward model on preference pairs (scalar head, Bradley-Terry loss)", "post-train"},
  {"dpo", cmd_dpo, "optimise a decoder on preference pairs: DPO, IPO, hinge, SimPO, ORPO", "post-train"},
  {"grpo", cmd_grpo, "train a decoder against a reward with GRPO (grpo, dapo, dr_grpo losses)", "post-train"},
  {"rloo", cmd_rloo, "train a decoder against a reward with RLOO (REINFORCE leave-one-out)", "post-train"},
  {"ppo", cmd_ppo, "train a decoder against a reward model with PPO and a value model (RLHF)", "post-train"},
  {"toolformer", cmd_toolformer, "insert calculator calls into text where they help the model (Toolformer's data)", "post-train"},
  {"distill", cmd_distill, "distill a BERT teacher into a smaller, faster student (DistilBERT)", "post-train"},
  {"generate", cmd_generate, "generate text from a prompt, streaming tokens", "use"},
  {"predict", cmd_predict, "label stdin lines with a fine-tuned model (classes, tags, answer spans)", "use"},
  {"embed", cmd_embed, "print sentence embeddings (JSONL) of stdin lines", "use"},
  {"template", cmd_template, "render a chat request with a model's chat template; print the prompt", "use"},
  {"serve", cmd_serve, "serve a model over HTTP with OpenAI's API (chat, completions, embeddings)", "use"},
  {"score", cmd_score, "print a reward model's score of each {prompt, response} on stdin", "use"},
  {"eval", cmd_eval, "mean loss and perplexity of a model on data", "study"},
  {"sweep", cmd_sweep, "train a ladder of GPT sizes per compute budget (IsoFLOP profiles) into runs.jsonl", "study"},
  {"fit", cmd_fit, "fit scaling laws to a sweep: Chinchilla L(N,D), IsoFLOP optima, Kaplan L(N)", "study"},
  {"plot", cmd_plot, "draw PNG plots with gnuplot: IsoFLOP curves, the compute-optimal frontier, loss curves", "study"},
  {"info", cmd_info, "show a model's config and size; --system shows BLAS and threads", "study"},
  {"chat", cmd_chat, "talk with a chat model in the terminal (streaming, /system, /reset, /save)", "use"},
  {"index", cmd_index, "build a retrieval index of documents (passages, BM25, dense vectors)", "use"},
  {"export", cmd_export, "write a model as a GGUF file for llama.cpp (f32, f16, q8_0, q4_0)", "use"},
  {"quantize", cmd_quantize, "quantize a model directory or GGUF file to a q8_0 or q4_0 GGUF file", "use"},
  {"ask", cmd_ask, "answer a question from an index, citing numbered sources [n] with file and lines", "use"},
};
#define N_COMMANDS (sizeof COMMANDS / sizeof COMMANDS[0])

static int in_stage(const command *c, const char *stage) {
  if (stage) return c->stage && !strcmp(c->stage, stage);
  for (size_t s = 0; s < N_STAGES; s++)
    if (c->stage && !strcmp(c->stage, STAGES[s])) return 0;
  return 1;   /* no known stage: "other" */
}

static void usage(FILE *f) {
  fprintf(f, "usage: lmkit COMMAND [OPTIONS]\n\n"
             "lmkit carries a language model through its life:\n"
             "tokenize -> pre-train -> post-train -> use -> study.\n");
  for (size_t s = 0; s <= N_STAGES; s++) {
    const char *stage = s < N_STAGES ? STAGES[s] : NULL;
    int shown = 0;
    for (size_t i = 0; i < N_COMMANDS; i++) {
      if (!in_stage(&COMMANDS[i], stage)) continue;
      if (!shown++) fprintf(f, "\n%s:\n", stage ? stage : "other");
      fprintf(f, "  %-10s %s\n", COMMANDS[i].name, COMMANDS[i].help);
    }
  }
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
