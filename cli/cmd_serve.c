/* cmd_serve.c — `lmkit serve`: the OpenAI-compatible HTTP server (src/serve/server.h).
 * Parses the flags, starts listening (so /health answers 503 while the model loads), loads
 * the model, then waits for SIGTERM or SIGINT, on which it stops accepting connections, lets
 * the requests in flight finish, and exits 0. The signals are blocked before any thread
 * starts, so every thread inherits the mask and only sigwait here receives them. */
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include "cli.h"
#include "serve/server.h"

static const char *HELP =
  "usage: lmkit serve --model DIR [options]\n"
  "\n"
  "Serves the model over HTTP with OpenAI's API (docs/serve.md):\n"
  "  POST /v1/chat/completions   chat through the model's chat template (ChatML if it has\n"
  "                              none); \"stream\": true sends Server-Sent Events\n"
  "  POST /v1/completions        continue a prompt\n"
  "  POST /v1/embeddings         sentence embeddings (encoders and decoders; see --pool)\n"
  "  GET  /v1/models             the model\n"
  "  POST /tokenize, /detokenize text <-> token ids\n"
  "  POST /apply-template        the prompt a chat request renders to (llama.cpp's)\n"
  "  GET  /health                503 while loading, then 200\n"
  "  GET  /metrics               Prometheus text: requests, tokens, tokens/s, slots, queue\n"
  "  GET  /                      a chat page\n"
  "Requests decode together in --parallel slots (continuous batching); more wait in a\n"
  "queue of --queue, beyond which the answer is 503. SIGTERM (or Ctrl-C) stops accepting\n"
  "connections, finishes the requests in flight and exits.\n"
  "\n"
  "options:\n"
  "  --model DIR          model directory (config.json, model.safetensors, tokenizer)\n"
  "  --host ADDR          IPv4 address to listen on (127.0.0.1; 0.0.0.0: every interface)\n"
  "  --port N             TCP port (8080; 0: a free one, printed at start)\n"
  "  --parallel N         requests decoded together (4)\n"
  "  --ctx N              context per request in tokens (default: the model's)\n"
  "  --api-key KEY        require 'Authorization: Bearer KEY' (default: none; also read\n"
  "                       from the LMKIT_API_KEY environment variable)\n"
  "  --queue N            requests that may wait for a slot (64)\n"
  "  --max-body BYTES     request body limit (1048576); larger bodies get 413\n"
  "  --pool mean|cls|last embedding pooling over the final hidden states (mean)\n"
  "  --alias NAME         the model's id in replies (default: the directory's name)\n"
  "  --index NAME=PATH    a retrieval index ('lmkit index') that chat requests use with\n"
  "                       \"retrieval\": {\"index\": NAME, \"k\": 5}: the last user message is\n"
  "                       answered from the top k passages, cited as [n], and the reply\n"
  "                       lists them in \"sources\" (repeatable; hybrid search when the\n"
  "                       index has dense vectors, else BM25)\n"
  "  --calc               the calculator tool in every answer: a call <|calc|>EXPR<|/calc|>\n"
  "                       gets \" \xe2\x86\x92 RESULT\" spliced in and generation goes on (docs/rl.md)\n"
  "  --threads N          threads (default: all cores)\n";

int cmd_serve(int argc, char **argv) {
  lm_server_opts o;
  lm_server_opts_default(&o);
  o.api_key = getenv("LMKIT_API_KEY");
  const char *v, *pool = "mean";
  int r;
  int64_t x, threads = 0;
  enum { MAX_INDEX = 16 };
  const char *names[MAX_INDEX], *paths[MAX_INDEX];
  char *specs[MAX_INDEX];
  int n_index = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (cli_is_help(a)) { fputs(HELP, stdout); return 0; }
    if (!strcmp(a, "--calc")) { o.calc = 1; continue; }
    if ((r = cli_opt(argc, argv, &i, "--model", &v)) < 0) return 1; else if (r) { o.model_dir = v; continue; }
    if ((r = cli_opt(argc, argv, &i, "--host", &v)) < 0) return 1; else if (r) { o.host = v; continue; }
    if ((r = cli_opt(argc, argv, &i, "--api-key", &v)) < 0) return 1; else if (r) { o.api_key = v; continue; }
    if ((r = cli_opt(argc, argv, &i, "--alias", &v)) < 0) return 1; else if (r) { o.alias = v; continue; }
    if ((r = cli_opt(argc, argv, &i, "--pool", &v)) < 0) return 1; else if (r) { pool = v; continue; }
    if ((r = cli_opt(argc, argv, &i, "--index", &v)) < 0) return 1;
    else if (r) {
      const char *eq = strchr(v, '=');
      if (!eq || eq == v || !eq[1]) return cli_error("--index takes NAME=PATH (got '%s')", v);
      if (n_index == MAX_INDEX) return cli_error("at most %d --index", MAX_INDEX);
      for (int k = 0; k < n_index; k++)
        if (strlen(names[k]) == (size_t)(eq - v) && !strncmp(names[k], v, (size_t)(eq - v)))
          return cli_error("--index %.*s is given twice", (int)(eq - v), v);
      specs[n_index] = strndup(v, (size_t)(eq - v));
      if (!specs[n_index]) return cli_error("out of memory");
      names[n_index] = specs[n_index]; paths[n_index++] = eq + 1;
      continue;
    }
    if ((r = cli_opt(argc, argv, &i, "--port", &v)) < 0) return 1;
    else if (r) { if (cli_i64(a, v, 0, 65535, &x)) return 1; o.port = (int)x; continue; }
    if ((r = cli_opt(argc, argv, &i, "--parallel", &v)) < 0) return 1;
    else if (r) { if (cli_i64(a, v, 1, 256, &x)) return 1; o.parallel = (int)x; continue; }
    if ((r = cli_opt(argc, argv, &i, "--ctx", &v)) < 0) return 1;
    else if (r) { if (cli_i64(a, v, 1, 1 << 24, &o.ctx)) return 1; continue; }
    if ((r = cli_opt(argc, argv, &i, "--queue", &v)) < 0) return 1;
    else if (r) { if (cli_i64(a, v, 0, 1 << 20, &x)) return 1; o.max_queue = (int)x; continue; }
    if ((r = cli_opt(argc, argv, &i, "--max-body", &v)) < 0) return 1;
    else if (r) { if (cli_i64(a, v, 16, (int64_t)1 << 34, &x)) return 1; o.max_body = (size_t)x; continue; }
    if ((r = cli_opt(argc, argv, &i, "--threads", &v)) < 0) return 1;
    else if (r) { if (cli_i64(a, v, 1, 4096, &threads)) return 1; continue; }
    return cli_unknown("serve", a);
  }
  if (!o.model_dir) return cli_error("--model DIR is required (see 'lmkit serve --help')");
  static const char *const POOLS[] = {"mean", "cls", "last"};   /* in lm_server_pool's order */
  int p = 0;
  while (p < 3 && strcmp(pool, POOLS[p])) p++;
  if (p == 3) return cli_error("unknown --pool '%s' (mean, cls, last)", pool);
  o.pool = (lm_server_pool)p;
  if (o.api_key && !*o.api_key) return cli_error("--api-key is empty");
  o.index_names = names; o.index_paths = paths; o.n_index = n_index;
  lm_set_threads((int)threads);

  sigset_t sigs;
  sigemptyset(&sigs); sigaddset(&sigs, SIGTERM); sigaddset(&sigs, SIGINT);
  pthread_sigmask(SIG_BLOCK, &sigs, NULL);
  signal(SIGPIPE, SIG_IGN);   /* a client that hangs up must not end the server */
  lm_server *s;
  if (lm_server_start(&s, &o)) return cli_fail();
  fprintf(stderr, "lmkit serve: loading %s\n", o.model_dir);
  if (lm_server_load(s)) { int rc = cli_fail(); lm_server_stop(s); return rc; }
  if (lm_server_warning(s)) fprintf(stderr, "lmkit serve: warning: %s\n", lm_server_warning(s));
  fprintf(stderr, "lmkit serve: listening on http://%s:%d (%d slots%s%s)\n", o.host, lm_server_port(s), o.parallel,
          o.api_key ? ", API key required" : "", o.calc ? ", calculator on" : "");
  int sig = 0;
  sigwait(&sigs, &sig);
  fprintf(stderr, "lmkit serve: %s: finishing the requests in flight\n", sig == SIGTERM ? "SIGTERM" : "SIGINT");
  lm_server_stop(s);
  fprintf(stderr, "lmkit serve: stopped\n");
  for (int k = 0; k < n_index; k++) free(specs[k]);
  return 0;
}
