/* cmd_chat.c — `lmkit chat`: an interactive conversation with a model in the
 * terminal. Each user line is appended to the conversation (a cJSON list of
 * {"role", "content"} messages), the whole conversation is rendered with the
 * model's chat template and the generation prompt, and the answer streams to
 * stdout until the end of the assistant's turn; it then joins the
 * conversation. Lines starting with '/' are commands (/system, /reset, /save,
 * /help, /quit). On a terminal, lines are read with libedit (editing, history,
 * optionally kept in a file); otherwise stdin is read line by line, one user
 * turn per line, and only the answers go to stdout (one per line), so a pipe
 * can drive it (answers stream the same way, each followed by a newline;
 * commands report on stderr). Ctrl-C during an answer stops that answer. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cjson/cJSON.h>
#include <editline/readline.h>
#include "cli.h"
#include "base/base.h"
#include "infer/calc.h"
#include "infer/chat_generate.h"

static const char *HELP =
  "usage: lmkit chat --model DIR [options]\n"
  "\n"
  "Talks with a chat model in the terminal: type a message, the answer streams back.\n"
  "The conversation goes through the model's chat template (tokenizer_config.json,\n"
  "else ChatML) and each answer ends at the end of the assistant's turn. Line editing\n"
  "and history come from libedit. With stdin not a terminal, each stdin line is one\n"
  "user message (or command); each answer is followed by a newline, and commands\n"
  "report on stderr (a failed command makes the exit status 1).\n"
  "\n"
  "commands:\n"
  "  /system TEXT         set the system message (first in the conversation); '/system'\n"
  "                       alone removes it\n"
  "  /reset               forget the conversation (the system message stays)\n"
  "  /save FILE           write the conversation as a JSON list of {\"role\", \"content\"}\n"
  "                       messages (what 'lmkit generate --messages FILE' reads)\n"
  "  /help                list the commands\n"
  "  /quit, /exit         leave (so does end of input, Ctrl-D)\n"
  "\n"
  "options:\n"
  "  --model DIR          model directory (config.json, model.safetensors, tokenizer)\n"
  "  --adapter DIR        a LoRA adapter (PEFT directory) merged into the model first\n"
  "  --system TEXT        a system message to start with\n"
  "  --history FILE       keep the line-editing history in FILE (read at start, written\n"
  "                       at the end; terminals only)\n";
static const char *HELP_TAIL = "  --threads N          threads (default: all cores)\n";

static const char *COMMANDS_HELP =
  "/system TEXT  set the system message ('/system' alone removes it)\n"
  "/reset        forget the conversation (the system message stays)\n"
  "/save FILE    write the conversation as JSON messages\n"
  "/quit         leave\n";

/* Ctrl-C while an answer streams ends that answer (a signal handler can only set a flag) */
static volatile sig_atomic_t interrupted;
static void on_sigint(int sig) { (void)sig; interrupted = 1; }

/* The answer being streamed: its text (for the conversation) and whether the next piece is the
 * calculator's result (shown on a line of its own rather than in the text on a terminal). */
typedef struct { cli_text text; int tty, splice_next; } chat_answer;

/* prints each piece as it comes and keeps the answer for the conversation */
static int stream_piece(const char *piece, size_t len, void *user) {
  chat_answer *a = user;
  if (!(a->splice_next && a->tty)) fwrite(piece, 1, len, stdout);
  fflush(stdout);
  a->splice_next = 0;
  return cli_text_piece(piece, len, &a->text) || interrupted;
}

/* --calc: "[calc] EXPR → RESULT" on stderr (dimmed on a terminal) as the call completes; the
 * answer so far ends with the call's closing tag, its last opening tag starts the expression */
static void show_calc(const char *splice, size_t len, void *user) {
  chat_answer *a = user;
  const char *t = a->text.buf ? a->text.buf : "", *open = NULL;
  size_t lo = strlen(LM_CALC_OPEN), n = a->text.len, lc = strlen(LM_CALC_CLOSE);
  for (const char *p = t; (p = strstr(p, LM_CALC_OPEN)); p += lo) open = p;
  int expr = open && n >= lc + (size_t)(open - t) + lo ? (int)(n - lc - (size_t)(open - t) - lo) : 0;
  int dim = isatty(STDERR_FILENO);
  fflush(stdout);
  fprintf(stderr, "%s[calc] %.*s%.*s%s\n", dim ? "\n\x1b[2m" : "", expr, open ? open + lo : "", (int)len, splice,
          dim ? "\x1b[0m" : "");
  a->splice_next = 1;
}

static cJSON *message(const char *role, const char *content) {
  cJSON *m = cJSON_CreateObject();
  if (!m || !cJSON_AddStringToObject(m, "role", role) || !cJSON_AddStringToObject(m, "content", content)) {
    cJSON_Delete(m);
    return NULL;
  }
  return m;
}

/* removes every message but the system message */
static void reset(cJSON *conv) {
  int n = cJSON_GetArraySize(conv);
  for (int i = n - 1; i >= 0; i--) {
    const cJSON *role = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(conv, i), "role");
    if (!cJSON_IsString(role) || strcmp(role->valuestring, "system")) cJSON_DeleteItemFromArray(conv, i);
  }
}

static int set_system(cJSON *conv, const char *text) {
  cJSON *first = cJSON_GetArrayItem(conv, 0);
  const cJSON *role = first ? cJSON_GetObjectItemCaseSensitive(first, "role") : NULL;
  if (cJSON_IsString(role) && !strcmp(role->valuestring, "system")) cJSON_DeleteItemFromArray(conv, 0);
  if (!*text) return 0;
  cJSON *m = message("system", text);
  if (!m) return 1;
  return !cJSON_InsertItemInArray(conv, 0, m);
}

static int save(const cJSON *conv, const char *path) {
  char *json = cJSON_Print(conv);
  if (!json) return cli_error("out of memory");
  size_t n = strlen(json);
  json[n] = '\n';   /* cJSON_Print's NUL becomes the final newline; the length says where the file ends */
  lm_status st = lm_write_file_atomic(path, json, n + 1);
  free(json);
  return st ? cli_fail() : 0;
}

/* one line of input, malloc'ed, without its line end; NULL at the end */
static char *read_input(int tty, char **buf, size_t *cap) {
  if (tty) {
    char *l = readline("> ");
    if (l && *l) add_history(l);
    return l;
  }
  if (cli_read_line(buf, cap) < 0) return NULL;
  return lm_strdup(*buf);
}

int cmd_chat(int argc, char **argv) {
  lm_gen_opts o;
  lm_gen_opts_default(&o);
  o.on_window = cli_gen_on_window;   /* a conversation past the context loses its oldest turns: said */
  o.on_calc = show_calc;
  const char *model = NULL, *adapter = NULL, *system = NULL, *history = NULL, *cot = NULL, *v;
  int64_t threads = 0;
  int r;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (cli_is_help(a)) {
      fputs(HELP, stdout); fputs(CLI_GEN_FLAGS_HELP, stdout); fputs(CLI_COT_HELP, stdout); fputs(HELP_TAIL, stdout);
      return 0;
    }
    if ((r = cli_gen_flag(argc, argv, &i, &o))) { if (r < 0) return 1; continue; }
    if ((r = cli_cot_flag(argc, argv, &i, &cot))) { if (r < 0) return 1; continue; }
    if ((r = cli_opt(argc, argv, &i, "--model", &v))) { if (r < 0) return 1; model = v; continue; }
    if ((r = cli_opt(argc, argv, &i, "--adapter", &v))) { if (r < 0) return 1; adapter = v; continue; }
    if ((r = cli_opt(argc, argv, &i, "--system", &v))) { if (r < 0) return 1; system = v; continue; }
    if ((r = cli_opt(argc, argv, &i, "--history", &v))) { if (r < 0) return 1; history = v; continue; }
    if ((r = cli_opt(argc, argv, &i, "--threads", &v))) { if (r < 0 || cli_i64(a, v, 1, 4096, &threads)) return 1; continue; }
    return cli_unknown("chat", a);
  }
  if (!model && !adapter) return cli_error("--model DIR is required (see 'lmkit chat --help')");
  lm_set_threads((int)threads);
  int tty = isatty(STDIN_FILENO) && isatty(STDOUT_FILENO);
  lm_model *m = NULL;
  lm_tokenizer *tok = NULL;
  lm_chat_config cc = {0};
  char *base = NULL, *buf = NULL, *line = NULL;
  size_t cap = 0;
  int32_t stop[LM_CHAT_MAX_STOP];
  int rc = 0;
  cJSON *conv = cJSON_CreateArray();
  if (!conv) return cli_error("out of memory");
  if (system && set_system(conv, system)) { rc = cli_error("out of memory"); goto done; }
  if (cli_load_with_adapter(model, adapter, CLI_LOAD_GENERATE, &m, &base)) { rc = 1; goto done; }
  if (cli_posttrain_decoder(m, base, "chat")) { rc = 1; goto done; }
  if (cli_tokenizer_of(base, &tok)) { rc = cli_fail(); goto done; }
  if (cli_chat_setup(base, m, tok, "use 'lmkit generate --prompt'", &cc, stop, &o)) { rc = 1; goto done; }
  struct sigaction sa = {0}, old_sa;
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  if (tty) {
    using_history();
    if (history) read_history(history);   /* a missing file is a first session */
    fprintf(stderr, "lmkit chat: %s; /help lists the commands, Ctrl-D leaves\n", base);
  }
  while ((line = read_input(tty, &buf, &cap))) {
    if (!*line) { free(line); continue; }
    if (line[0] == '/') {
      char *arg = line + strcspn(line, " \t");
      if (*arg) *arg++ = 0;
      arg += strspn(arg, " \t");
      if (!strcmp(line, "/quit") || !strcmp(line, "/exit")) break;
      if (!strcmp(line, "/help")) fputs(COMMANDS_HELP, stderr);
      else if (!strcmp(line, "/reset")) { reset(conv); fprintf(stderr, "(conversation cleared)\n"); }
      else if (!strcmp(line, "/system")) {
        if (set_system(conv, arg)) { rc = cli_error("out of memory"); break; }
        fprintf(stderr, *arg ? "(system message set)\n" : "(system message removed)\n");
      } else if (!strcmp(line, "/save")) {
        if (!*arg) rc = cli_error("/save needs a file name: /save FILE");
        else if (save(conv, arg)) rc = 1;
        else fprintf(stderr, "(saved %d message%s to %s)\n", cJSON_GetArraySize(conv), cJSON_GetArraySize(conv) == 1 ? "" : "s", arg);
      } else rc = cli_error("unknown command %s (/help lists them)", line);
      if (tty) rc = 0;   /* at a terminal a mistake is shown and forgiven; a script's ends in a non-zero exit */
      free(line);
      continue;
    }
    cJSON *um = message("user", line);
    free(line);
    line = NULL;
    if (!um) { rc = cli_error("out of memory"); break; }
    cJSON_AddItemToArray(conv, um);
    if (cot && lm_chat_add_cot(conv, cot)) { rc = cli_fail(); break; }   /* each user turn gets the instruction */
    char *prompt = NULL;
    if (lm_chat_generation_prompt(&cc, conv, &prompt, NULL)) { rc = cli_fail(); break; }
    chat_answer s = {.tty = tty};
    interrupted = 0;
    sigaction(SIGINT, &sa, &old_sa);
    lm_status st = lm_generate(m, tok, prompt, &o, stream_piece, &s, NULL);
    sigaction(SIGINT, &old_sa, NULL);
    free(prompt);
    char *answer = cli_valid_utf8(s.text.buf ? s.text.buf : "", s.text.len);
    free(s.text.buf);
    if (st || !answer) { fputc('\n', stdout); free(answer); rc = st ? cli_fail() : cli_error("out of memory"); break; }
    fputc('\n', stdout);
    fflush(stdout);
    if (interrupted) fprintf(stderr, "(answer interrupted)\n");
    cJSON *am = message("assistant", answer);
    free(answer);
    if (!am) { rc = cli_error("out of memory"); break; }
    cJSON_AddItemToArray(conv, am);
  }
  free(line);
  if (tty && history && write_history(history)) fprintf(stderr, "lmkit chat: could not write the history to %s\n", history);
done:
  free(buf);
  cJSON_Delete(conv);
  lm_chat_config_free(&cc);
  lm_model_free(m);
  lm_tokenizer_free(tok);
  free(base);
  return rc;
}
