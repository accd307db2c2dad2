/* server.h — lmkit's OpenAI-compatible HTTP server (docs/serve.md).
 *
 *   lm_server_opts o;  lm_server_opts_default(&o);  o.model_dir = "run";
 *   lm_server *s;  lm_server_start(&s, &o);   // listening; /health says 503 until the model is loaded
 *   lm_server_load(s);                        // loads the model; then every route answers
 *   ... wait for SIGTERM (the caller's business) ...
 *   lm_server_stop(s);                        // stops accepting, drains in-flight requests, frees
 *
 * HTTP runs on libmicrohttpd, one thread per connection; one engine thread owns the model and
 * decodes every admitted request together (continuous batching, src/infer/batch.h). */
#ifndef LM_SERVE_SERVER_H
#define LM_SERVE_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include "lmkit.h"

typedef enum { LM_POOL_MEAN_TOKENS = 0, LM_POOL_CLS_TOKEN, LM_POOL_LAST_TOKEN } lm_server_pool;

typedef struct {
  const char *model_dir;
  const char *host;        /* "127.0.0.1" */
  int port;                /* 8080; 0 picks a free one (lm_server_port says which) */
  int parallel;            /* slots decoding together (4) */
  int64_t ctx;             /* context per slot; 0: the model's */
  const char *api_key;     /* NULL: no key */
  size_t max_body;         /* request body limit in bytes (1 MiB) */
  int max_queue;           /* requests waiting for a slot before 503 (64) */
  int max_connections;     /* (256) */
  lm_server_pool pool;     /* embeddings */
  const char *alias;       /* the model's id in replies; NULL: the directory's name */
  /* retrieval indexes (lmkit index) that chat requests name in "retrieval": {"index": NAME} */
  const char *const *index_names, *const *index_paths;
  int n_index;
  int calc;                /* the calculator tool (infer/calc.h): a call <|calc|>EXPR<|/calc|> gets " → RESULT" */
} lm_server_opts;

typedef struct lm_server lm_server;

void lm_server_opts_default(lm_server_opts *o);
lm_status lm_server_start(lm_server **out, const lm_server_opts *o);
lm_status lm_server_load(lm_server *s);
int lm_server_port(const lm_server *s);
/* One line for the log when the model has no chat template (NULL otherwise). */
const char *lm_server_warning(const lm_server *s);
void lm_server_stop(lm_server *s);

#endif
