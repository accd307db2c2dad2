/* cmd_generate.c — `lmkit generate`: samples text from a model, streaming
 * each piece to stdout as soon as it is decoded. */
#include <stdio.h>
#include <string.h>
#include "cli.h"

static const char *HELP =
  "usage: lmkit generate --model DIR --prompt TEXT [options]\n"
  "\n"
  "Generates text after TEXT with a KV cache, streaming it to stdout. Past the\n"
  "model's context it goes on with a sliding window: when the context is full, its\n"
  "last half is read again and generation continues (said once on stderr); a\n"
  "prompt longer than the context keeps its last part.\n"
  "\n"
  "  --model DIR          model directory (config.json, model.safetensors, tokenizer)\n"
  "  --prompt TEXT        the text to continue (\"\" starts a new document)\n"
  "  --max-tokens N       tokens to generate at most (128)\n"
  "  --temperature X      softmax temperature; 0 = greedy (0.8)\n"
  "  --top-k N            sample among the N most likely tokens; 0 = off (40)\n"
  "  --top-p X            nucleus: smallest set with probability >= X; 1 = off (0.95)\n"
  "  --seed N             sampling seed (42)\n"
  "  --no-stop            keep going past the end-of-text token\n"
  "  --stats              print prefill and decode speed to stderr\n"
  "  --threads N          threads (default: all cores)\n";

static int print_piece(const char *piece, size_t len, void *user) {
  (void)user;
  fwrite(piece, 1, len, stdout);
  fflush(stdout);
  return 0;
}

/* said once on stderr, when the context first fills (the library reports, the CLI prints) */
static void on_window(int64_t context, int64_t prompt_dropped, void *user) {
  (void)user;
  fflush(stdout);
  if (prompt_dropped > 0)
    fprintf(stderr, "\nlmkit generate: the prompt is longer than the model's context of %lld tokens: its first %lld tokens "
            "are dropped, and generation goes on with a sliding window (the last %lld tokens are read again each time the context fills)\n",
            (long long)context, (long long)prompt_dropped, (long long)(context / 2 > 0 ? context / 2 : 1));
  else
    fprintf(stderr, "\nlmkit generate: the model's context of %lld tokens is full: generation goes on with a sliding window "
            "(the last %lld tokens are read again each time the context fills)\n",
            (long long)context, (long long)(context / 2 > 0 ? context / 2 : 1));
}

int cmd_generate(int argc, char **argv) {
  lm_gen_opts o;
  lm_gen_opts_default(&o);
  o.on_window = on_window;
  const char *model = NULL, *prompt = NULL, *v;
  int64_t threads = 0, x;
  int stats = 0, r;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (cli_is_help(a)) { fputs(HELP, stdout); return 0; }
    if (!strcmp(a, "--no-stop")) { o.stop_at_eot = 0; continue; }
    if (!strcmp(a, "--stats")) { stats = 1; continue; }
    if ((r = cli_opt(argc, argv, &i, "--model", &v))) { if (r < 0) return 1; model = v; continue; }
    if ((r = cli_opt(argc, argv, &i, "--prompt", &v))) { if (r < 0) return 1; prompt = v; continue; }
    if ((r = cli_opt(argc, argv, &i, "--max-tokens", &v))) { if (r < 0 || cli_i64(a, v, 1, 1 << 24, &x)) return 1; o.max_tokens = x; continue; }
    if ((r = cli_opt(argc, argv, &i, "--temperature", &v))) { if (r < 0 || cli_f32(a, v, 0, 100, &o.temperature)) return 1; continue; }
    if ((r = cli_opt(argc, argv, &i, "--top-k", &v))) { if (r < 0 || cli_i64(a, v, 0, 1 << 30, &x)) return 1; o.top_k = x; continue; }
    if ((r = cli_opt(argc, argv, &i, "--top-p", &v))) { if (r < 0 || cli_f32(a, v, 1e-6f, 1, &o.top_p)) return 1; continue; }
    if ((r = cli_opt(argc, argv, &i, "--seed", &v))) { if (r < 0 || cli_u64(a, v, &o.seed)) return 1; continue; }
    if ((r = cli_opt(argc, argv, &i, "--threads", &v))) { if (r < 0 || cli_i64(a, v, 1, 4096, &threads)) return 1; continue; }
    return cli_unknown("generate", a);
  }
  if (!model) return cli_error("--model DIR is required (see 'lmkit generate --help')");
  if (!prompt) return cli_error("--prompt TEXT is required (use --prompt \"\" to start from nothing)");
  lm_set_threads((int)threads);
  lm_tokenizer *tok = NULL;
  lm_model *m = NULL;
  int rc = 0;
  if (lm_model_load(&m, model) || lm_tokenizer_load(&tok, model)) { rc = cli_fail(); goto done; }
  fputs(prompt, stdout);
  lm_gen_stats gs;
  if (lm_generate(m, tok, prompt, &o, print_piece, NULL, &gs)) { fputc('\n', stdout); rc = cli_fail(); goto done; }
  fputc('\n', stdout);
  if (stats)
    fprintf(stderr, "prompt %lld tokens in %.3f s (%.1f tok/s); generated %lld tokens in %.3f s (%.1f tok/s)\n",
            (long long)gs.prompt_tokens, gs.prefill_sec, gs.prompt_tokens / (gs.prefill_sec > 0 ? gs.prefill_sec : 1e-9),
            (long long)gs.generated_tokens, gs.decode_sec, gs.generated_tokens / (gs.decode_sec > 0 ? gs.decode_sec : 1e-9));
done:
  lm_model_free(m);
  lm_tokenizer_free(tok);
  return rc;
}
