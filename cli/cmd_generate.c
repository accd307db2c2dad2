/* cmd_generate.c — `lmkit generate`: samples text from a model, streaming
 * each piece to stdout as soon as it is decoded. With --user / --messages the
 * conversation goes through the model's chat template and generation stops at
 * the end of the assistant's turn (src/infer/chat_generate.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "cli.h"
#include "base/base.h"
#include "infer/chat_generate.h"
#include "tokenizer/tokenizer.h"

static const char *HELP =
  "usage: lmkit generate --model DIR --prompt TEXT [options]\n"
  "       lmkit generate --model DIR --user TEXT [--system TEXT] [options]\n"
  "       lmkit generate --model DIR --messages FILE [options]\n"
  "       lmkit generate --model DIR --user - [--system TEXT] [options] < prompts.txt\n"
  "\n"
  "Generates text after TEXT with a KV cache, streaming it to stdout. Past the\n"
  "model's context it goes on with a sliding window: when the context is full, its\n"
  "last half is read again and generation continues (said once on stderr); a\n"
  "prompt longer than the context keeps its last part.\n"
  "\n"
  "Chat: --user (and --system) or --messages render a conversation with the model's\n"
  "chat template (tokenizer_config.json, else ChatML) and the generation prompt; the\n"
  "assistant's answer is printed, without the token that ends its turn (the\n"
  "template's, e.g. <|im_end|>, the config's eos_token, or the model's eos), where\n"
  "generation stops. --user - answers each line of stdin as one user message, with\n"
  "one model load, printing one JSON line per input:\n"
  "  {\"prompt\": LINE, \"response\": ANSWER, \"stopped\": true if the turn ended}\n"
  "\n"
  "  --model DIR          model directory (config.json, model.safetensors, tokenizer)\n"
  "  --adapter DIR        a LoRA adapter (PEFT directory) merged into the model first; its\n"
  "                       adapter_config.json names the base when --model is not given\n"
  "  --prompt TEXT        the text to continue (\"\" starts a new document)\n"
  "  --user TEXT          a user message to answer ('-': one per stdin line, JSON out)\n"
  "  --system TEXT        a system message before it\n"
  "  --messages FILE      a conversation to answer: a JSON list of {\"role\", \"content\"}\n"
  "                       messages, or a chat request body {\"messages\": [...], ...}\n"
  "                       ('-': stdin)\n";
static const char *HELP_TAIL =
  "  --stats              print prefill and decode speed to stderr\n"
  "  --threads N          threads (default: all cores)\n";

static int print_piece(const char *piece, size_t len, void *user) {
  (void)user;
  fwrite(piece, 1, len, stdout);
  fflush(stdout);
  return 0;
}

/* [{"role": "system", ...}, {"role": "user", "content": user}] */
static cJSON *user_messages(const char *system, const char *user) {
  cJSON *a = cJSON_CreateArray();
  for (int i = 0; i < 2 && a; i++) {
    const char *role = i ? "user" : "system", *content = i ? user : system;
    if (!content) continue;
    cJSON *m = cJSON_CreateObject();
    if (!m || !cJSON_AddStringToObject(m, "role", role) || !cJSON_AddStringToObject(m, "content", content)) {
      cJSON_Delete(m); cJSON_Delete(a); return NULL;
    }
    cJSON_AddItemToArray(a, m);
  }
  return a;
}

/* --messages FILE ('-': stdin) */
static cJSON *read_messages(const char *path) {
  char *text = NULL; size_t len = 0;
  if (!strcmp(path, "-")) {
    size_t cap = 0; char chunk[4096]; size_t k;
    while ((k = fread(chunk, 1, sizeof chunk, stdin)) > 0) {
      if (len + k + 1 > cap) { cap = 2 * (len + k + 1); char *t = realloc(text, cap); if (!t) { free(text); return NULL; } text = t; }
      memcpy(text + len, chunk, k); len += k;
    }
  } else if (lm_read_file(path, &text, &len)) {
    cli_fail();
    return NULL;
  }
  cJSON *j = text ? cJSON_ParseWithLength(text, len) : NULL;
  free(text);
  if (!j) cli_error("%s: not valid JSON (expected a list of messages or a chat request {\"messages\": [...]})",
                    strcmp(path, "-") ? path : "stdin");
  return j;
}

static void print_stats(const lm_gen_stats *gs) {
  fprintf(stderr, "prompt %lld tokens in %.3f s (%.1f tok/s); generated %lld tokens in %.3f s (%.1f tok/s)\n",
          (long long)gs->prompt_tokens, gs->prefill_sec, gs->prompt_tokens / (gs->prefill_sec > 0 ? gs->prefill_sec : 1e-9),
          (long long)gs->generated_tokens, gs->decode_sec, gs->generated_tokens / (gs->decode_sec > 0 ? gs->decode_sec : 1e-9));
}

int cmd_generate(int argc, char **argv) {
  lm_gen_opts o;
  lm_gen_opts_default(&o);
  o.on_window = cli_gen_on_window;
  const char *model = NULL, *adapter = NULL, *prompt = NULL, *user = NULL, *system = NULL, *messages = NULL, *cot = NULL, *v;
  char *base = NULL;
  int64_t threads = 0;
  int stats = 0, r;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (cli_is_help(a)) {
      fputs(HELP, stdout); fputs(CLI_GEN_FLAGS_HELP, stdout); fputs(CLI_COT_HELP, stdout); fputs(HELP_TAIL, stdout);
      return 0;
    }
    if ((r = cli_gen_flag(argc, argv, &i, &o))) { if (r < 0) return 1; continue; }
    if ((r = cli_cot_flag(argc, argv, &i, &cot))) { if (r < 0) return 1; continue; }
    if (!strcmp(a, "--stats")) { stats = 1; continue; }
    if ((r = cli_opt(argc, argv, &i, "--model", &v))) { if (r < 0) return 1; model = v; continue; }
    if ((r = cli_opt(argc, argv, &i, "--adapter", &v))) { if (r < 0) return 1; adapter = v; continue; }
    if ((r = cli_opt(argc, argv, &i, "--prompt", &v))) { if (r < 0) return 1; prompt = v; continue; }
    if ((r = cli_opt(argc, argv, &i, "--user", &v))) { if (r < 0) return 1; user = v; continue; }
    if ((r = cli_opt(argc, argv, &i, "--system", &v))) { if (r < 0) return 1; system = v; continue; }
    if ((r = cli_opt(argc, argv, &i, "--messages", &v))) { if (r < 0) return 1; messages = v; continue; }
    if ((r = cli_opt(argc, argv, &i, "--threads", &v))) { if (r < 0 || cli_i64(a, v, 1, 4096, &threads)) return 1; continue; }
    return cli_unknown("generate", a);
  }
  if (!model && !adapter) return cli_error("--model DIR is required (see 'lmkit generate --help')");
  int chat = user || messages;
  if (prompt && chat)
    return cli_error("--prompt continues raw text; --user and --messages answer in the chat template: give one or the other");
  if (user && messages) return cli_error("give --user (with --system) or --messages, not both");
  if (system && !user) return cli_error("--system goes with --user (put a system message in the --messages list instead)");
  if (!prompt && !chat)
    return cli_error("--prompt TEXT or --user TEXT is required (use --prompt \"\" to start from nothing)");
  lm_set_threads((int)threads);
  lm_tokenizer *tok = NULL;
  lm_model *m = NULL;
  lm_chat_config cc = {0};
  cJSON *conv = NULL;
  char *rendered = NULL, *line = NULL, *with_cot = NULL;
  int rc = 0;
  int32_t stop[LM_CHAT_MAX_STOP];
  lm_gen_stats gs;
  if (cli_load_with_adapter(model, adapter, CLI_LOAD_GENERATE, &m, &base)) { rc = 1; goto done; }
  if (cli_tokenizer_of(base, &tok)) { rc = cli_fail(); goto done; }
  if (!chat) {
    if (cot) {   /* a raw prompt: the instruction follows after a space ("Q: ... A: Let's think step by step.") */
      size_t k = strlen(prompt) + strlen(cot) + 2;
      if (!(with_cot = malloc(k))) { rc = cli_error("out of memory"); goto done; }
      snprintf(with_cot, k, "%s%s%s", prompt, *prompt ? " " : "", cot);
      prompt = with_cot;
    }
    if (lm_model_config(m)->n_enc_layer <= 0) fputs(prompt, stdout);   /* a decoder continues it; an encoder-decoder answers */
    o.add_special = 1;   /* plain text, as HF's tokenizer(prompt): Llama's <s> / <|begin_of_text|> first */
    if (lm_generate(m, tok, prompt, &o, print_piece, NULL, &gs)) { fputc('\n', stdout); rc = cli_fail(); goto done; }
    fputc('\n', stdout);
    if (stats) print_stats(&gs);
    goto done;
  }
  /* chat: the template, and the tokens that end the assistant's turn */
  if (cli_chat_setup(base, m, tok, "use --prompt", &cc, stop, &o)) { rc = 1; goto done; }
  if (user && !strcmp(user, "-")) {   /* batch: one user message per stdin line, one JSON line out */
    size_t cap = 0;
    cli_text out = {0};
    for (int64_t k = 1; cli_read_line(&line, &cap) >= 0; k++) {
      cJSON *msgs = user_messages(system, line);
      if (!msgs) { rc = cli_error("out of memory"); break; }
      lm_status st = cot ? lm_chat_add_cot(msgs, cot) : LM_OK;
      if (!st) st = lm_chat_generation_prompt(&cc, msgs, &rendered, NULL);
      cJSON_Delete(msgs);
      out.len = 0;
      if (out.buf) out.buf[0] = 0;
      if (!st) st = lm_generate(m, tok, rendered, &o, cli_text_piece, &out, &gs);
      free(rendered); rendered = NULL;
      if (st) { rc = cli_error("stdin line %lld: %s", (long long)k, lm_last_error()); break; }
      char *resp = cli_valid_utf8(out.buf ? out.buf : "", out.len), *pr = cli_valid_utf8(line, strlen(line));
      if (!resp || !pr) { free(resp); free(pr); rc = cli_error("out of memory"); break; }
      fputs("{\"prompt\": ", stdout); cli_json_str(stdout, pr);
      fputs(", \"response\": ", stdout); cli_json_str(stdout, resp);
      fprintf(stdout, ", \"stopped\": %s}\n", gs.stop_token >= 0 ? "true" : "false");
      fflush(stdout);
      free(resp); free(pr);
      if (stats) print_stats(&gs);
    }
    free(out.buf);
    goto done;
  }
  conv = user ? user_messages(system, user) : read_messages(messages);
  if (!conv) { rc = 1; if (user) cli_error("out of memory"); goto done; }
  if ((cot && lm_chat_add_cot(conv, cot)) || lm_chat_generation_prompt(&cc, conv, &rendered, NULL)) {
    rc = cli_error("%s: %s", !messages ? "--user" : strcmp(messages, "-") ? messages : "stdin", lm_last_error());
    goto done;
  }
  if (lm_generate(m, tok, rendered, &o, print_piece, NULL, &gs)) { fputc('\n', stdout); rc = cli_fail(); goto done; }
  fputc('\n', stdout);
  if (stats) print_stats(&gs);
done:
  free(rendered); free(line); free(with_cot);
  cJSON_Delete(conv);
  lm_chat_config_free(&cc);
  lm_model_free(m);
  free(base);
  lm_tokenizer_free(tok);
  return rc;
}
