/* cli.h — shared helpers for the lmkit subcommands: flag parsing with clear
 * errors, and the one error format users see ("lmkit: error: ..."). Each
 * subcommand lives in cli/cmd_<name>.c and is listed in cli/lmkit.c. */
#ifndef LM_CLI_H
#define LM_CLI_H

#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>
#include "lmkit.h"
#include "train/posttrain.h"

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
/* The tokenizer of a model: a GGUF file's tokenizer.ggml.* keys, else lm_tokenizer_load(path). */
lm_status cli_tokenizer_of(const char *model, lm_tokenizer **tok);

/* The trainer's flags (cli/train_flags.c), shared by the commands that run the one trainer.
 * cli_train_flag consumes argv[*i] when it is one: returns 1, -1 after printing an error, or 0. */
typedef struct {
  int steps, lr, min_lr, warmup, eval_every, save_every, keep_checkpoints;
  int64_t epochs, threads;
  const char *hyper;        /* the last flag given that changes the run's maths (refused on --resume) */
} cli_train_seen;
extern const char *const CLI_TRAIN_FLAGS_HELP;
int cli_train_flag(int argc, char **argv, int *i, lm_train_opts *o, cli_train_seen *seen);
/* Defaults that depend on the data: steps from --epochs, warmup, min-lr, eval cadence. */
void cli_train_finish(lm_train_opts *o, const cli_train_seen *seen, int64_t steps_per_epoch);
/* --precision fp32|bf16 into *out (lm_precision); 0, or 1 after printing an error */
int cli_precision(const char *flag, const char *s, int *out);

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
/* merge = CLI_LOAD_GENERATE: as merge = 1, and a GGUF file without an adapter loads for generation only
 * (lm_model_load_infer: no f32 copy of its quantized weights) */
#define CLI_LOAD_GENERATE 2

/* Generation (cli/gen_flags.c), for generate, chat and ask. cli_gen_flag consumes --max-tokens,
 * --temperature, --top-k, --top-p, --seed, --no-stop: returns 1, -1 after printing an error, or 0.
 * cli_chat_setup loads dir's chat template into cc (ChatML when it has none, if the tokenizer has
 * the ChatML tokens; else an error that suggests `instead`) and, unless --no-stop, makes the
 * tokens that end the assistant's turn (kept in stop[LM_CHAT_MAX_STOP]) o's stop tokens.
 * Returns 0, or 1 after printing an error. */
extern const char *const CLI_GEN_FLAGS_HELP;
/* --cot (LM_COT_DEFAULT) and --cot-text T: *cot is set; returns 1 when consumed, -1 on error, 0 */
extern const char *const CLI_COT_HELP;
int cli_cot_flag(int argc, char **argv, int *i, const char **cot);
int cli_gen_flag(int argc, char **argv, int *i, lm_gen_opts *o);
/* lm_gen_opts.on_window: says on stderr (once) that the context is full or the prompt too long */
void cli_gen_on_window(int64_t context, int64_t prompt_dropped, void *user);
int cli_chat_setup(const char *dir, const lm_model *m, const lm_tokenizer *tok, const char *instead, lm_chat_config *cc,
                   int32_t *stop, lm_gen_opts *o);
/* A growing text: cli_text_piece is an lm_piece_callback that appends each piece (buf stays
 * NUL-terminated; free(buf) when done). */
typedef struct { char *buf; size_t len, cap; } cli_text;
int cli_text_piece(const char *piece, size_t len, void *user);
/* s with each invalid UTF-8 byte replaced by U+FFFD (malloc'ed), e.g. for JSON output. */
char *cli_valid_utf8(const char *s, size_t n);

/* Post-training (cli/posttrain_cli.c): what sft, reward and dpo share. Functions returning int
 * return 0, or 1 after printing an error. */
typedef struct {
  const char *model, *data, *eval;
  float val_fraction;
  int64_t max_length;
  cli_lora lora;            /* --lora-rank ...: train an adapter, OUT holds it */
  const char *adapter;      /* --adapter: the adapter to go on training */
  int lora_run;             /* a resumed LoRA run (sft, reward, dpo) */
} cli_posttrain;
/* The trainer's defaults for these commands (lr as given, batch 8, no weight decay, 3 checkpoints
 * kept); the command's help followed by the trainer's and LoRA flags (returns 0). */
void cli_posttrain_opts(lm_train_opts *o, const char *objective, float lr);
int cli_posttrain_help(const char *help);
/* Consumes --model, --data, --eval, --val-fraction, --max-length, --adapter and the LoRA flags:
 * 1 (a setting of the run), -1 after printing an error, or 0. */
int cli_posttrain_flag(int argc, char **argv, int *i, cli_posttrain *p);
/* Refuses settings (a setting flag, or seen->hyper) given with --resume. */
int cli_posttrain_no_settings(const char *setting, const cli_train_seen *seen);
/* A new run's required flags and their conflicts; one_eval refuses --eval with --val-fraction. */
int cli_posttrain_check(const char *cmd, const cli_posttrain *p, const char *out, int one_eval);
/* posttrain.json: the shared keys first (command ... max_length), the command's own keys, then
 * cli_posttrain_json_end (o's eval_every, save_every and keep_checkpoints, and the LoRA settings). */
cJSON *cli_posttrain_json(const char *cmd, const cli_posttrain *p);
void cli_posttrain_json_end(cJSON *j, const cli_posttrain *p, const lm_train_opts *o);
/* Writes saved (a resumed run's settings) or else fresh (deleted here) to out/posttrain.json. */
int cli_posttrain_save(const char *out, cJSON *saved, cJSON *fresh);
/* --resume of a post-training run (lm_posttrain_resume): the shared settings into p; OUT, the
 * evaluation and checkpoint cadence and the checkpoints kept into o (those given again win and
 * replace the saved ones in *saved). *state, *run_dir, *saved are the caller's to free, also on error. */
int cli_posttrain_resume(const char *cmd, lm_train_opts *o, cli_train_seen *seen, cli_posttrain *p, char **state,
                         char **run_dir, cJSON **saved);
int cli_posttrain_malformed(const char *cmd, const char *run_dir);
/* LoRA on m: the checkpoint's adapter (state), --adapter's, or a new one; then reports its size
 * ("... trainable values<what>, the N of the base frozen<tail>"). */
int cli_posttrain_lora(lm_model *m, const char *cmd, const cli_posttrain *p, const char *state, uint64_t seed,
                       const char *what, const char *tail);
/* Refuses a model that is not a decoder with an LM head ("<what> needs a decoder ..."). */
int cli_posttrain_decoder(const lm_model *m, const char *model, const char *what);
/* --max-length (default: the model's positions, at most 1024), the base's tokenizer and chat template. */
int cli_posttrain_chat(const lm_model *m, cli_posttrain *p, lm_tokenizer **tok, lm_chat_config *cc);
/* Reads the training pairs and the held-out ones (--eval, or --val-fraction), reporting skips. */
int cli_posttrain_prefs(const char *cmd, const cli_posttrain *p, const lm_chat_config *cc, const lm_tokenizer *tok,
                        uint64_t seed, lm_pref_data *train, lm_pref_data *eval);
/* "N steps of B pairs", or where a resumed run stands */
void cli_posttrain_plan(char *buf, size_t n, const lm_train_opts *o, const char *state);
/* Copies the base's chat template (tokenizer_config.json) into out (keep: not over an existing
 * one) and says where the result went. */
int cli_posttrain_finish(const char *cmd, const char *model, const char *out, const lm_chat_config *cc, int keep,
                         int lora);

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
int cmd_chat(int argc, char **argv);
int cmd_index(int argc, char **argv);
int cmd_ask(int argc, char **argv);

#endif
