/* gen_flags.c — what the commands that generate (generate, chat, ask) share:
 * the sampling flags, one parser and one help text, the note printed when
 * generation outgrows the context, the set-up of a chat model (its template,
 * and the tokens that end the assistant's turn), and collecting an answer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli.h"
#include "infer/chat_generate.h"
#include "tokenizer/tokenizer.h"

const char *const CLI_GEN_FLAGS_HELP =
  "  --max-tokens N       tokens to generate at most (128)\n"
  "  --temperature X      softmax temperature; 0 = greedy (0.8)\n"
  "  --top-k N            sample among the N most likely tokens; 0 = off (40)\n"
  "  --top-p X            nucleus: smallest set with probability >= X; 1 = off (0.95)\n"
  "  --seed N             sampling seed (42)\n"
  "  --kv-type f32|f16    the KV cache's type: f16 halves its memory (f32)\n"
  "  --no-stop            keep going past the end-of-text (and end-of-turn) token\n"
  "  --beams N            beam search with N beams, the best hypothesis printed (1 = greedy; off)\n"
  "  --length-penalty X   beams: a hypothesis scores sum log p / length^X (1.0; > 1 favours longer)\n"
  "  --early-stopping     beams: stop as soon as N hypotheses are finished\n"
  "  --no-repeat-ngram N  beams: never generate an n-gram of N tokens twice (prompt included; 0 = off)\n"
  "  --calc               the calculator tool: a call <|calc|>EXPR<|/calc|> gets \" \xe2\x86\x92 RESULT\" spliced in (docs/rl.md)\n";

const char *const CLI_COT_HELP =
  "  --cot                chain-of-thought: append \"" LM_COT_DEFAULT "\" to the (last) user message\n"
  "  --cot-text T         the same with another instruction\n";

int cli_cot_flag(int argc, char **argv, int *i, const char **cot) {
  const char *v;
  int r;
  if (!strcmp(argv[*i], "--cot")) { if (!*cot) *cot = LM_COT_DEFAULT; return 1; }
  if ((r = cli_opt(argc, argv, i, "--cot-text", &v))) { if (r > 0) *cot = v; return r; }
  return 0;
}

int cli_gen_flag(int argc, char **argv, int *i, lm_gen_opts *o) {
  const char *a = argv[*i], *v;
  int64_t x;
  int r;
  if (!strcmp(a, "--no-stop")) { o->stop_at_eot = 0; return 1; }
  if (!strcmp(a, "--calc")) { o->calc = 1; return 1; }
  if (!strcmp(a, "--early-stopping")) { o->early_stopping = 1; return 1; }
  if ((r = cli_opt(argc, argv, i, "--beams", &v))) {
    if (r < 0 || cli_i64(a, v, 1, 1024, &x)) return -1;
    o->beams = (int)x;
    return 1;
  }
  if ((r = cli_opt(argc, argv, i, "--no-repeat-ngram", &v))) {
    if (r < 0 || cli_i64(a, v, 0, 1 << 20, &x)) return -1;
    o->no_repeat_ngram = (int)x;
    return 1;
  }
  if ((r = cli_opt(argc, argv, i, "--length-penalty", &v))) return r < 0 || cli_f32(a, v, -100, 100, &o->length_penalty) ? -1 : 1;
  if ((r = cli_opt(argc, argv, i, "--max-tokens", &v))) {
    if (r < 0 || cli_i64(a, v, 1, 1 << 24, &x)) return -1;
    o->max_tokens = x;
    return 1;
  }
  if ((r = cli_opt(argc, argv, i, "--temperature", &v))) return r < 0 || cli_f32(a, v, 0, 100, &o->temperature) ? -1 : 1;
  if ((r = cli_opt(argc, argv, i, "--top-k", &v))) {
    if (r < 0 || cli_i64(a, v, 0, 1 << 30, &x)) return -1;
    o->top_k = x;
    return 1;
  }
  if ((r = cli_opt(argc, argv, i, "--top-p", &v))) return r < 0 || cli_f32(a, v, 1e-6f, 1, &o->top_p) ? -1 : 1;
  if ((r = cli_opt(argc, argv, i, "--seed", &v))) return r < 0 || cli_u64(a, v, &o->seed) ? -1 : 1;
  if ((r = cli_opt(argc, argv, i, "--kv-type", &v))) {
    if (r < 0) return -1;
    if (strcmp(v, "f32") && strcmp(v, "f16")) { cli_error("invalid value for --kv-type: '%s' (f32, f16)", v); return -1; }
    o->kv_f16 = !strcmp(v, "f16");
    return 1;
  }
  return 0;
}

/* said once on stderr, when the context first fills (the library reports, the CLI prints) */
void cli_gen_on_window(int64_t context, int64_t prompt_dropped, void *user) {
  (void)user;
  fflush(stdout);
  if (prompt_dropped > 0)
    fprintf(stderr, "\nlmkit: the prompt is longer than the model's context of %lld tokens: its first %lld tokens "
            "are dropped, and generation goes on with a sliding window (the last %lld tokens are read again each time the context fills)\n",
            (long long)context, (long long)prompt_dropped, (long long)(context / 2 > 0 ? context / 2 : 1));
  else
    fprintf(stderr, "\nlmkit: the model's context of %lld tokens is full: generation goes on with a sliding window "
            "(the last %lld tokens are read again each time the context fills)\n",
            (long long)context, (long long)(context / 2 > 0 ? context / 2 : 1));
}

int cli_chat_setup(const char *dir, const lm_model *m, const lm_tokenizer *tok, const char *instead, lm_chat_config *cc,
                   int32_t *stop, lm_gen_opts *o) {
  if (lm_chat_config_load(cc, dir)) return cli_fail();
  if (cc->is_default && (lm_tokenizer_token_id(tok, LM_CHATML_START) < 0 || lm_tokenizer_token_id(tok, LM_CHATML_END) < 0))
    return cli_error("%s has no chat template and its tokenizer lacks the ChatML tokens %s and %s: %s, or "
                     "instruction-tune a model whose tokenizer has them ('lmkit tokenizer train' adds them)", dir,
                     LM_CHATML_START, LM_CHATML_END, instead);
  int n = 0;
  if (lm_chat_stop_tokens(cc, tok, lm_model_config(m), stop, LM_CHAT_MAX_STOP, &n)) return cli_fail();
  if (o->stop_at_eot) { o->stop_tokens = stop; o->n_stop_tokens = n; }
  return 0;
}

int cli_text_piece(const char *piece, size_t len, void *user) {
  cli_text *t = user;
  if (t->len + len + 1 > t->cap) {
    size_t nc = t->cap ? 2 * t->cap : 256;
    while (nc < t->len + len + 1) nc *= 2;
    char *b = realloc(t->buf, nc);
    if (!b) return 1;
    t->buf = b; t->cap = nc;
  }
  memcpy(t->buf + t->len, piece, len);
  t->len += len;
  t->buf[t->len] = 0;
  return 0;
}

char *cli_valid_utf8(const char *s, size_t n) {
  char *o = malloc(3 * n + 1), *p = o;
  if (!o) return NULL;
  for (size_t i = 0; i < n;) {
    size_t k = lm_utf8_char((const uint8_t *)s + i, n - i);
    if (k) { memcpy(p, s + i, k); p += k; i += k; }
    else { memcpy(p, "\xEF\xBF\xBD", 3); p += 3; i++; }
  }
  *p = 0;
  return o;
}
