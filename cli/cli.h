/* cli.h — shared helpers for the lmkit subcommands: flag parsing with clear
 * errors, and the one error format users see ("lmkit: error: ..."). Each
 * subcommand lives in cli/cmd_<name>.c and is listed in cli/lmkit.c. */
#ifndef LM_CLI_H
#define LM_CLI_H

#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>
#include "lmkit.h"

/* Prints "lmkit: error: <msg>" to stderr; returns 1 (the exit code). */
int cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints lm_last_error() as a cli_error. */
int cli_fail(void);

/* If argv[*i] equals `name`, stores the next argument in *val, advances *i and returns 1.
 * A missing value is reported and returns -1. Otherwise returns 0. */
int cli_opt(int argc, char **argv, int *i, const char *name, const char **val);
/* Strict number parsing; on failure prints "invalid value for FLAG: ..." and returns 1. */
int cli_i64(const char *flag, const char *s, int64_t min, int64_t max, int64_t *out);
int cli_f32(const char *flag, const char *s, float min, float max, float *out);
int cli_u64(const char *flag, const char *s, uint64_t *out);
/* "lmkit: error: unknown option X for 'lmkit CMD' (see lmkit CMD --help)" */
int cli_unknown(const char *cmd, const char *arg);
int cli_is_help(const char *arg);
/* Writes s to f as a JSON string literal. */
void cli_json_str(FILE *f, const char *s);
/* One stdin line into *buf (getline's buffer), without its LF / CRLF; -1 at the end. */
ssize_t cli_read_line(char **buf, size_t *cap);
/* Up to max stdin lines into lines[] (each malloc'ed, without LF / CRLF); sets *eof at the end.
 * Returns how many were read. */
int64_t cli_read_lines(char **lines, int64_t max, int *eof);

/* The trainer's flags (cli/train_flags.c), shared by the commands that run the one trainer.
 * cli_train_flag consumes argv[*i] when it is one: returns 1, -1 after printing an error, or 0. */
typedef struct {
  int steps, lr, min_lr, warmup, eval_every;
  int64_t epochs, threads;
  const char *hyper;        /* the last flag given that changes the run's maths (refused on --resume) */
} cli_train_seen;
extern const char *const CLI_TRAIN_FLAGS_HELP;
int cli_train_flag(int argc, char **argv, int *i, lm_train_opts *o, cli_train_seen *seen);
/* Defaults that depend on the data: steps from --epochs, warmup, min-lr, eval cadence. */
void cli_train_finish(lm_train_opts *o, const cli_train_seen *seen, int64_t steps_per_epoch);

/* LoRA (cli/lora_flags.c), for the commands that train (sft, reward, dpo) and those that load a
 * model (--adapter DIR). cli_lora_flag consumes --lora-rank / --lora-alpha / --lora-targets:
 * returns 1, -1 after printing an error, or 0. cli_lora_check refuses alpha or targets without a
 * rank. cli_lora_attach attaches a new adapter when a rank was given (a no-op otherwise; call it
 * after loading the base, before training); base_model goes to adapter_config.json. Both return
 * 0, or 1 after printing an error. */
typedef struct {
  int64_t rank;             /* 0: no LoRA */
  float alpha;              /* 0: 2 * rank */
  const char *targets;      /* NULL: all-linear */
  const char *seen;         /* the last LoRA flag given */
} cli_lora;
extern const char *const CLI_LORA_FLAGS_HELP;
int cli_lora_flag(int argc, char **argv, int *i, cli_lora *l);
int cli_lora_check(const cli_lora *l);
int cli_lora_attach(lm_model *m, const cli_lora *l, const char *base_model, uint64_t seed);
/* Loads model (or, when NULL, the base named by adapter's adapter_config.json) and then the PEFT
 * adapter when adapter is not NULL, merged into the weights when merge is set (inference);
 * *base_dir (malloc'ed; may be NULL) receives the base's directory, where its tokenizer is.
 * Returns 0, or 1 after printing an error. */
int cli_load_with_adapter(const char *model, const char *adapter, int merge, lm_model **m, char **base_dir);

int cmd_train(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_tokenizer(int argc, char **argv);
int cmd_data(int argc, char **argv);
int cmd_finetune(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_embed(int argc, char **argv);
int cmd_distill(int argc, char **argv);
int cmd_sft(int argc, char **argv);
int cmd_lora(int argc, char **argv);
int cmd_reward(int argc, char **argv);
int cmd_dpo(int argc, char **argv);
int cmd_score(int argc, char **argv);

#endif
