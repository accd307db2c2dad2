/* server.c — the OpenAI-compatible HTTP server (server.h, docs/serve.md).
 *
 * Threads: libmicrohttpd runs one thread per connection; each parses its body
 * (lm_request_parse), renders and tokenizes the prompt and queues a job. One engine thread owns
 * the decoder: between steps it admits queued jobs into free slots (prefilling their prompts
 * together, lm_batch_decoder_prefill),
 * then samples a token for every active slot and runs ONE batched forward over them
 * (lm_batch_decoder_step). Jobs leave when they stop, reach max_tokens or are cancelled (their
 * client went away), so a slot frees at the next step. One mutex guards the queue, the jobs'
 * outputs and the metrics; each job has a condition its connection thread waits on.
 *
 * Output: the engine appends each token's text to the job; `safe` is how much of it may be sent
 * (not inside a UTF-8 sequence, not a prefix of a stop string that may still complete). A
 * streaming connection turns new safe text into SSE chunks; others wait for the end. A waiting
 * connection peeks at its socket every 100 ms, so a client that hangs up cancels its job. */
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <cjson/cJSON.h>
#include "model/gguf.h"
#include "base/base.h"
#include "infer/batch.h"
#include "infer/calc.h"
#include "infer/chat_generate.h"
#include "infer/detok.h"
#include "infer/infer.h"
#include "model/heads.h"
#include "model/model.h"
#include "rag/rag.h"
#include "serve/request.h"
#include "serve/server.h"
#include "serve/tools.h"
#include "tokenizer/tokenizer.h"
#include "train/finetune.h"

extern const char lm_serve_page[];       /* page.html, embedded at build time */
extern const size_t lm_serve_page_len;

/* ------------------------------------------------------------------ jobs */

typedef struct {
  int32_t id; float lp; size_t end;      /* the token, its log-probability, where its text ends */
  int n_top; int32_t top_id[LM_REQ_MAX_TOP_LOGPROBS]; float top_lp[LM_REQ_MAX_TOP_LOGPROBS];
} lp_entry;

typedef struct job {
  lm_request req;
  int32_t *prompt; int64_t n_prompt, max_tokens;
  lm_sampler sp;
  lm_detok dt;                           /* the generated text, token by token, with the spaces context gives */
  char id[48]; long created;
  uint64_t seq;                          /* the request's number (ids of its tool calls) */
  int tools;                             /* tool calls are read out of the answer (serve/tools.h) */
  int32_t *run; int64_t n_run;           /* engine: a sampled token and the calculator's result to feed with it */
  /* guarded by the server's mutex */
  char *text; size_t len, cap, safe;
  lp_entry *lp; int64_t n_lp, cap_lp;
  int64_t n_gen;
  const char *finish;                    /* "stop", "length"; NULL while running */
  char *error;                           /* an internal failure, reported to the client */
  cJSON *sources;                        /* the passages a retrieval request was given, or NULL */
  int cancelled, done, refs;
  double t_queued, t_first;
  pthread_cond_t cv;
  struct job *next;
} job;

struct lm_server {
  lm_server_opts o;
  char *model_id;
  struct MHD_Daemon *mhd;
  int port;
  volatile int loaded;                   /* set once, under mu; read by /health */
  lm_model *m;
  lm_tokenizer *tok;
  lm_chat_config cc;
  int generates;                         /* a causal decoder with an LM head */
  char *warning;
  int32_t chat_stop[LM_CHAT_MAX_STOP + 1]; int n_chat_stop;
  int64_t ctx, eot;
  lm_batch_decoder *dec;
  lm_rag **rag;                          /* (o.n_index) */
  /* engine */
  pthread_t engine; int engine_started;
  pthread_mutex_t mu;
  pthread_cond_t engine_cv, idle_cv;
  job *queue_head, *queue_tail; int n_queued;
  job **slot; int n_active;
  float *slot_logits;                    /* (parallel, V) */
  int stopping, in_flight;
  pthread_mutex_t embed_mu;              /* lm_forward's activations are the model's */
  int threads;                           /* the caller's thread count (lm_set_threads), for the engine and embeddings */
  /* metrics */
  uint64_t n_requests, n_errors, prompt_tokens, gen_tokens, seq;
  double decode_sec;                     /* wall time inside decode steps */
};

static void job_unref(lm_server *s, job *j) {   /* with s->mu held */
  if (--j->refs) return;
  lm_request_free(&j->req);
  lm_sampler_free(&j->sp);
  lm_detok_free(&j->dt);
  free(j->prompt); free(j->text); free(j->lp); free(j->error); free(j->run);
  cJSON_Delete(j->sources);
  pthread_cond_destroy(&j->cv);
  free(j);
}

static int append(job *j, const char *p, size_t n) {
  if (j->len + n + 1 > j->cap) {
    size_t cap = (j->len + n + 1) * 2;
    char *t = realloc(j->text, cap);
    if (!t) return -1;
    j->text = t; j->cap = cap;
  }
  memcpy(j->text + j->len, p, n);
  j->len += n;
  j->text[j->len] = 0;
  return 0;
}

/* Bytes at the end of text[0..n) that begin an unfinished UTF-8 sequence. */
static size_t utf8_tail(const char *text, size_t n) {
  for (size_t back = 1; back <= 3 && back <= n; back++) {
    unsigned char c = (unsigned char)text[n - back];
    if ((c & 0xC0) == 0x80) continue;                  /* a continuation byte: look further back */
    size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
    return need > back ? back : 0;
  }
  return 0;
}

/* After new text: a stop string ends the answer (cut before it); else how much is safe to send. */
static void check_stops(job *j, size_t old_len) {
  size_t hold = 0;
  for (int k = 0; k < j->req.n_stop; k++) {
    const char *st = j->req.stop[k];
    size_t sl = strlen(st), from = old_len >= sl ? old_len - sl + 1 : 0;
    char *hit = j->len >= sl ? memmem(j->text + from, j->len - from, st, sl) : NULL;
    if (hit) { j->len = (size_t)(hit - j->text); j->text[j->len] = 0; j->finish = "stop"; return; }
    for (size_t p = sl - 1; p > hold; p--)             /* longest suffix that starts the stop string */
      if (p <= j->len && !memcmp(j->text + j->len - p, st, p)) { hold = p; break; }
  }
  size_t tail = utf8_tail(j->text, j->len);
  j->safe = j->len - (hold > tail ? hold : tail);
  if (!j->tools) return;
  size_t ce = lm_tools_content_end(j->text, j->len);   /* a tool call is not content: streamed when it is whole */
  if (ce < j->safe) j->safe = ce;
  const char *close = j->req.single_tool_call && ce < j->len ? strstr(j->text + ce, LM_TOOL_CLOSE) : NULL;
  if (close) {   /* "parallel_tool_calls": false: the first call ends the answer */
    j->len = (size_t)(close - j->text) + strlen(LM_TOOL_CLOSE); j->text[j->len] = 0; j->finish = "stop";
  }
}

/* log-softmax of the logits: the chosen token's and the top ones' */
static void logprobs(job *j, const float *logits, int64_t V, lp_entry *e) {
  float mx = logits[0];
  for (int64_t i = 1; i < V; i++) mx = logits[i] > mx ? logits[i] : mx;
  double sum = 0;
  for (int64_t i = 0; i < V; i++) sum += exp((double)(logits[i] - mx));
  float lse = mx + (float)log(sum);
  e->lp = logits[e->id] - lse;
  e->n_top = 0;
  for (int64_t i = 0; i < V; i++) {   /* insertion into the (small) sorted top list */
    int k = e->n_top < j->req.top_logprobs ? e->n_top++ : e->n_top;
    if (k == e->n_top && (k == 0 || logits[i] <= logits[e->top_id[k - 1]])) continue;
    if (k == e->n_top) k--;
    while (k > 0 && logits[i] > logits[e->top_id[k - 1]]) { e->top_id[k] = e->top_id[k - 1]; k--; }
    e->top_id[k] = (int32_t)i;
  }
  for (int k = 0; k < e->n_top; k++) e->top_lp[k] = logits[e->top_id[k]] - lse;
}

static void finish_job(lm_server *s, job *j, const char *reason) {   /* with s->mu held */
  if (!j->finish) j->finish = reason;
  j->done = 1;
  j->safe = j->len;
  pthread_cond_broadcast(&j->cv);
}

/* The calculator (calc.h, as lmkit generate --calc): when the answer (which only this thread
 * writes) has just closed a call, " → RESULT" joins it, and j->run holds token t and the
 * result's tokens for the engine to feed together. Returns 1 when the job goes on. */
static int calc_splice(lm_server *s, job *j, int32_t t) {
  char sp[64];
  int ns = lm_calc_splice(j->text, j->len, sp, sizeof sp);
  if (!ns) return 1;
  uint32_t *ids = NULL; size_t n = 0;
  lm_status st = lm_tokenizer_encode(s->tok, sp, (size_t)ns, 0, &ids, &n);
  int32_t *run = st ? NULL : realloc(j->run, (n + 1) * sizeof *run);
  if (run) j->run = run;
  else if (!st) st = lm_error(LM_ERR_NOMEM, "out of memory");
  pthread_mutex_lock(&s->mu);
  if (!st && append(j, sp, (size_t)ns)) st = lm_error(LM_ERR_NOMEM, "out of memory");
  if (st) { j->error = lm_strdup(lm_last_error()); finish_job(s, j, "error"); }
  else {
    j->run[0] = t; j->n_run = (int64_t)n + 1;
    for (size_t i = 0; i < n; i++) j->run[i + 1] = (int32_t)ids[i];
    check_stops(j, j->len - (size_t)ns);
    if (j->finish) finish_job(s, j, "stop");
    else pthread_cond_broadcast(&j->cv);
  }
  int goes_on = !j->done;
  pthread_mutex_unlock(&s->mu);
  free(ids);
  return goes_on;
}

/* Samples the slot's next token and records it; returns 1 when the job goes on. */
static int next_token(lm_server *s, job *j, const float *logits, int32_t *tok_out) {
  int64_t V = lm_model_config(s->m)->vocab_size;
  int32_t t = lm_sampler_pick(&j->sp, logits);
  lp_entry e = {.id = t};
  if (j->req.logprobs) logprobs(j, logits, V, &e);
  int is_stop = t == s->eot;
  for (int k = 0; k < s->n_chat_stop && j->req.kind == LM_REQ_CHAT; k++) is_stop |= t == s->chat_stop[k];
  /* the text this token completes; at the end of the job, also what the detokenizer held back */
  const char *piece = ""; size_t plen = 0;
  const char *rest = ""; size_t nrest = 0;
  lm_status st = is_stop ? LM_OK : lm_detok_push(&j->dt, (uint32_t)t, &piece, &plen);
  char *held = NULL;
  if (!st && !is_stop && plen && !(held = strndup(piece, plen))) st = lm_error(LM_ERR_NOMEM, "out of memory");
  if (!st && (is_stop || j->n_gen + 1 >= j->max_tokens)) st = lm_detok_flush(&j->dt, &rest, &nrest);
  if (held) piece = held;
  int news = 0;
  pthread_mutex_lock(&s->mu);
  j->n_gen++; s->gen_tokens++;
  if (j->n_gen == 1) j->t_first = lm_time_sec();
  if (j->cancelled) finish_job(s, j, "cancelled");
  else if (st || (plen && append(j, piece, plen)) || (nrest && append(j, rest, nrest))) {
    j->error = lm_strdup(st ? lm_last_error() : "out of memory");
    finish_job(s, j, "error");
  }
  else if (is_stop) finish_job(s, j, "stop");
  else {
    size_t old = j->len - plen - nrest;
    if (j->req.logprobs && j->n_lp < j->max_tokens) {
      if (j->n_lp == j->cap_lp) {
        int64_t cap = j->cap_lp ? 2 * j->cap_lp : 16;
        lp_entry *p = realloc(j->lp, (size_t)cap * sizeof *p);
        if (p) { j->lp = p; j->cap_lp = cap; }
      }
      if (j->n_lp < j->cap_lp) { e.end = j->len; j->lp[j->n_lp++] = e; }
    }
    check_stops(j, old);
    if (j->finish) finish_job(s, j, "stop");
    else if (j->n_gen >= j->max_tokens) finish_job(s, j, "length");
    else news = j->req.stream;   /* a connection that is not streaming waits for the end (finish_job) only */
  }
  int goes_on = !j->done;
  pthread_mutex_unlock(&s->mu);
  /* the connection is told after the unlock: woken under it, its thread would run only to block on
   * the mutex and be woken again, two hand-offs per token (the job lives on: its slot holds it) */
  if (news) pthread_cond_broadcast(&j->cv);
  free(held);
  *tok_out = t;
  j->n_run = 0;
  if (goes_on && s->o.calc) goes_on = calc_splice(s, j, t);
  return goes_on;
}

static void *engine_main(void *arg) {
  lm_server *s = arg;
  int P = s->o.parallel;
  int64_t V = lm_model_config(s->m)->vocab_size;
  int *slots = malloc((size_t)P * sizeof *slots), *fresh = malloc((size_t)P * sizeof *fresh);
  int32_t *toks = malloc((size_t)P * sizeof *toks);
  const int32_t **fresh_ids = malloc((size_t)P * sizeof *fresh_ids);
  int64_t *fresh_len = malloc((size_t)P * sizeof *fresh_len);
  if (!slots || !fresh || !toks || !fresh_ids || !fresh_len) abort();   /* a few bytes at start-up */
  /* OpenMP's thread count is per thread: a new thread starts from OMP_NUM_THREADS (or every core),
   * not from what the caller set, so --threads 1 would otherwise decode on all cores */
  lm_set_threads(s->threads);
  pthread_mutex_lock(&s->mu);
  for (;;) {
    int n_fresh = 0;
    for (int i = 0; i < P && s->queue_head; i++) {   /* admit queued jobs into free slots */
      if (s->slot[i]) continue;
      job *j = s->queue_head;
      s->queue_head = j->next; if (!s->queue_head) s->queue_tail = NULL;
      s->n_queued--;
      if (j->cancelled) { finish_job(s, j, "cancelled"); job_unref(s, j); i--; continue; }
      s->slot[i] = j; s->n_active++; fresh[n_fresh++] = i;
    }
    if (!s->n_active) {
      pthread_cond_broadcast(&s->idle_cv);
      if (s->stopping) break;
      pthread_cond_wait(&s->engine_cv, &s->mu);
      continue;
    }
    pthread_mutex_unlock(&s->mu);
    if (n_fresh) {                                   /* prefill the new ones, together: one read of the weights */
      const float *lg;
      for (int k = 0; k < n_fresh; k++) {
        lm_batch_decoder_reset(s->dec, fresh[k]);
        fresh_ids[k] = s->slot[fresh[k]]->prompt; fresh_len[k] = s->slot[fresh[k]]->n_prompt;
      }
      lm_status st = lm_batch_decoder_prefill(s->dec, fresh, fresh_ids, fresh_len, n_fresh, &lg);
      if (st) pthread_mutex_lock(&s->mu);
      for (int k = 0; k < n_fresh; k++) {
        job *j = s->slot[fresh[k]];
        if (!st) memcpy(s->slot_logits + (size_t)fresh[k] * V, lg + (size_t)k * V, (size_t)V * sizeof(float));
        else { j->error = lm_strdup(lm_last_error()); finish_job(s, j, "error"); }
      }
      if (st) pthread_mutex_unlock(&s->mu);
    }
    int n = 0;
    for (int i = 0; i < P; i++) {                    /* sample; the ones going on form the step */
      job *j = s->slot[i];
      if (!j || j->done || !next_token(s, j, s->slot_logits + (size_t)i * V, &toks[n])) continue;
      int64_t need = j->n_run ? j->n_run : 1;
      if (lm_batch_decoder_pos(s->dec, i) + need > s->ctx) {   /* calculator results filled the context */
        pthread_mutex_lock(&s->mu); finish_job(s, j, "length"); pthread_mutex_unlock(&s->mu);
        continue;
      }
      if (!j->n_run) { slots[n++] = i; continue; }
      const float *lg;                               /* a token and a calculator result: fed on their own */
      lm_status st = lm_batch_decoder_feed(s->dec, i, j->run, j->n_run, &lg);
      if (!st) memcpy(s->slot_logits + (size_t)i * V, lg, (size_t)V * sizeof(float));
      else { pthread_mutex_lock(&s->mu); j->error = lm_strdup(lm_last_error()); finish_job(s, j, "error"); pthread_mutex_unlock(&s->mu); }
    }
    if (n) {
      const float *lg;
      double t0 = lm_time_sec();
      lm_status st = lm_batch_decoder_step(s->dec, slots, toks, n, &lg);
      double dt = lm_time_sec() - t0;
      pthread_mutex_lock(&s->mu);
      s->decode_sec += dt;
      for (int k = 0; k < n; k++) {
        job *j = s->slot[slots[k]];
        if (st) { j->error = lm_strdup(lm_last_error()); finish_job(s, j, "error"); }
        else memcpy(s->slot_logits + (size_t)slots[k] * V, lg + (size_t)k * V, (size_t)V * sizeof(float));
      }
    } else pthread_mutex_lock(&s->mu);
    for (int i = 0; i < P; i++) {                    /* finished jobs leave their slots */
      job *j = s->slot[i];
      if (j && j->cancelled && !j->done) finish_job(s, j, "cancelled");
      if (j && j->done) { s->slot[i] = NULL; s->n_active--; job_unref(s, j); }
    }
  }
  pthread_mutex_unlock(&s->mu);
  free(slots); free(fresh); free(toks); free(fresh_ids); free(fresh_len);
  return NULL;
}

/* ------------------------------------------------------------------ HTTP plumbing */

typedef struct {
  lm_server *s;
  struct MHD_Connection *conn;
  char *body; size_t len, cap;
  int too_big, counted;
  job *j;
  /* streaming state */
  char *out; size_t out_len, out_off;
  size_t sent; int64_t lp_sent; int phase;
  size_t seen; int calls_sent;          /* with tools: the text parsed so far, the tool calls sent */
} conn_ctx;

static enum MHD_Result send_text(struct MHD_Connection *c, unsigned code, const char *type, const char *text, size_t len) {
  struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)text, MHD_RESPMEM_MUST_COPY);
  if (!r) return MHD_NO;
  MHD_add_response_header(r, "Content-Type", type);
  enum MHD_Result ret = MHD_queue_response(c, code, r);
  MHD_destroy_response(r);
  return ret;
}

static enum MHD_Result send_json(struct MHD_Connection *c, unsigned code, cJSON *j) {
  char *t = cJSON_PrintUnformatted(j);
  cJSON_Delete(j);
  if (!t) return send_text(c, 500, "text/plain", "out of memory\n", 14);
  enum MHD_Result r = send_text(c, code, "application/json", t, strlen(t));
  free(t);
  return r;
}

static const char *error_type(unsigned code) {
  switch (code) {
    case 401: return "authentication_error";
    case 404: return "not_found_error";
    case 413: case 400: return "invalid_request_error";
    case 503: return "server_unavailable";
    default: return "server_error";
  }
}

/* OpenAI's error shape: {"error": {"message", "type", "param", "code"}} */
static enum MHD_Result send_error(conn_ctx *cx, unsigned code, const char *param, const char *fmt, ...) {
  char msg[1024];
  va_list ap; va_start(ap, fmt); vsnprintf(msg, sizeof msg, fmt, ap); va_end(ap);
  cJSON *e = cJSON_CreateObject(), *o = cJSON_AddObjectToObject(e, "error");
  cJSON_AddStringToObject(o, "message", msg);
  cJSON_AddStringToObject(o, "type", error_type(code));
  if (param && *param) cJSON_AddStringToObject(o, "param", param); else cJSON_AddNullToObject(o, "param");
  cJSON_AddNullToObject(o, "code");
  pthread_mutex_lock(&cx->s->mu); cx->s->n_errors++; pthread_mutex_unlock(&cx->s->mu);
  return send_json(cx->conn, code, e);
}

static unsigned status_code(lm_status st) { return st == LM_ERR_NOMEM || st == LM_ERR_IO ? 500 : 400; }

/* 1 when the client has closed its end (a peek at the socket) */
static int peer_gone(struct MHD_Connection *c) {
  const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
  if (!ci) return 1;
  char b;
  ssize_t r = recv(ci->connect_fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
  return r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

/* Waits (s->mu held) until cond holds or the client leaves; returns 0 if it left (job cancelled). */
static int wait_job(conn_ctx *cx, int (*cond)(conn_ctx *)) {
  lm_server *s = cx->s;
  while (!cond(cx)) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 100 * 1000 * 1000;
    if (ts.tv_nsec >= 1000000000) { ts.tv_sec++; ts.tv_nsec -= 1000000000; }
    pthread_cond_timedwait(&cx->j->cv, &s->mu, &ts);
    if (!cond(cx) && peer_gone(cx->conn)) {
      cx->j->cancelled = 1;
      pthread_cond_signal(&s->engine_cv);
      return 0;
    }
  }
  return 1;
}

/* ------------------------------------------------------------------ response bodies */

static void add_usage(cJSON *o, const job *j) {
  cJSON *u = cJSON_AddObjectToObject(o, "usage");
  cJSON_AddNumberToObject(u, "prompt_tokens", (double)j->n_prompt);
  cJSON_AddNumberToObject(u, "completion_tokens", (double)j->n_gen);
  cJSON_AddNumberToObject(u, "total_tokens", (double)(j->n_prompt + j->n_gen));
}

static cJSON *head(lm_server *s, const job *j, const char *object) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "id", j->id);
  cJSON_AddStringToObject(o, "object", object);
  cJSON_AddNumberToObject(o, "created", (double)j->created);
  cJSON_AddStringToObject(o, "model", s->model_id);
  cJSON_AddStringToObject(o, "system_fingerprint", "lmkit");
  return o;
}

static cJSON *token_text(lm_server *s, int32_t id, cJSON **bytes) {
  char *t = NULL; size_t n = 0;
  uint32_t u = (uint32_t)id;
  if (lm_tokenizer_decode(s->tok, &u, 1, &t, &n)) { t = NULL; n = 0; }
  cJSON *str = cJSON_CreateString(t ? t : "");
  if (bytes) {
    *bytes = cJSON_CreateArray();
    for (size_t i = 0; i < n; i++) cJSON_AddItemToArray(*bytes, cJSON_CreateNumber((unsigned char)t[i]));
  }
  free(t);
  return str;
}

/* entries [a, b) in OpenAI's shape: chat {"content": [...]}, completions the legacy lists */
static cJSON *logprobs_json(lm_server *s, const job *j, int64_t a, int64_t b, size_t text_start) {
  cJSON *o = cJSON_CreateObject();
  if (j->req.kind == LM_REQ_CHAT) {
    cJSON *content = cJSON_AddArrayToObject(o, "content");
    for (int64_t i = a; i < b; i++) {
      const lp_entry *e = &j->lp[i];
      cJSON *x = cJSON_CreateObject(), *bytes;
      cJSON_AddItemToObject(x, "token", token_text(s, e->id, &bytes));
      cJSON_AddNumberToObject(x, "logprob", e->lp);
      cJSON_AddItemToObject(x, "bytes", bytes);
      cJSON *top = cJSON_AddArrayToObject(x, "top_logprobs");
      for (int k = 0; k < e->n_top; k++) {
        cJSON *y = cJSON_CreateObject(), *yb;
        cJSON_AddItemToObject(y, "token", token_text(s, e->top_id[k], &yb));
        cJSON_AddNumberToObject(y, "logprob", e->top_lp[k]);
        cJSON_AddItemToObject(y, "bytes", yb);
        cJSON_AddItemToArray(top, y);
      }
      cJSON_AddItemToArray(content, x);
    }
    return o;
  }
  cJSON *toks = cJSON_AddArrayToObject(o, "tokens"), *lps = cJSON_AddArrayToObject(o, "token_logprobs");
  cJSON *tops = cJSON_AddArrayToObject(o, "top_logprobs"), *offs = cJSON_AddArrayToObject(o, "text_offset");
  for (int64_t i = a; i < b; i++) {
    const lp_entry *e = &j->lp[i];
    cJSON_AddItemToArray(toks, token_text(s, e->id, NULL));
    cJSON_AddItemToArray(lps, cJSON_CreateNumber(e->lp));
    cJSON *t = cJSON_CreateObject();
    for (int k = 0; k < e->n_top; k++) {
      cJSON *name = token_text(s, e->top_id[k], NULL);
      if (!cJSON_GetObjectItemCaseSensitive(t, name->valuestring)) cJSON_AddNumberToObject(t, name->valuestring, e->top_lp[k]);
      cJSON_Delete(name);
    }
    cJSON_AddItemToArray(tops, t);
    size_t start = i ? j->lp[i - 1].end : 0;
    cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(start + text_start)));
  }
  return o;
}

/* entries whose text lies inside text[0..upto) */
static int64_t lp_upto(const job *j, size_t upto) {
  int64_t n = j->n_lp;
  while (n > 0 && j->lp[n - 1].end > upto) n--;
  return n;
}

/* one choice: the whole answer (object "chat.completion" / "text_completion"), or a chunk of it */
static cJSON *choice(lm_server *s, const job *j, const char *text, size_t len, int64_t lp_a, int64_t lp_b, size_t lp_off,
                     int chunk, const char *finish, int role) {
  cJSON *c = cJSON_CreateObject();
  cJSON_AddNumberToObject(c, "index", 0);
  char *t = strndup(text, len);
  if (j->req.kind == LM_REQ_CHAT) {
    cJSON *m = cJSON_AddObjectToObject(c, chunk ? "delta" : "message");
    if (role) cJSON_AddStringToObject(m, "role", "assistant");
    if (!chunk || len || role) cJSON_AddStringToObject(m, "content", t ? t : "");
    if (!chunk) cJSON_AddNullToObject(m, "refusal");
  } else cJSON_AddStringToObject(c, "text", t ? t : "");
  free(t);
  if (j->req.logprobs && lp_b > lp_a) cJSON_AddItemToObject(c, "logprobs", logprobs_json(s, j, lp_a, lp_b, lp_off));
  else if (j->req.logprobs && !chunk) cJSON_AddItemToObject(c, "logprobs", logprobs_json(s, j, 0, 0, 0));
  else cJSON_AddNullToObject(c, "logprobs");
  if (finish) cJSON_AddStringToObject(c, "finish_reason", finish); else cJSON_AddNullToObject(c, "finish_reason");
  return c;
}

static const char *finish_name(const job *j) { return strcmp(j->finish, "length") ? "stop" : "length"; }
/* with tools: a cut-off answer is "length" still; one that called a tool, "tool_calls" */
static const char *tool_finish(const job *j, const lm_tool_output *to) {
  return !strcmp(finish_name(j), "length") ? "length" : cJSON_GetArraySize(to->calls) ? "tool_calls" : "stop";
}

/* an answer with tools: its content (text before the calls and after the last good one; null
 * when empty and there are calls) and its tool_calls */
static cJSON *tool_choice_json(lm_server *s, const job *j) {
  const char *text = j->text ? j->text : "";
  lm_tool_output to;
  if (lm_tools_parse(text, j->len, j->req.tools, 1, j->seq, &to)) return NULL;
  char *content = malloc(j->len + 1);
  size_t n = 0;
  if (content) {
    memcpy(content, text, to.content_end); n = to.content_end;
    memcpy(content + n, text + to.rest, j->len - to.rest); n += j->len - to.rest;
  }
  cJSON *c = content ? choice(s, j, content, n, 0, 0, 0, 0, tool_finish(j, &to), 1) : NULL;
  free(content);
  cJSON *m = cJSON_GetObjectItemCaseSensitive(c, "message");
  if (m && cJSON_GetArraySize(to.calls)) {
    if (!n) cJSON_ReplaceItemInObjectCaseSensitive(m, "content", cJSON_CreateNull());
    cJSON_AddItemToObject(m, "tool_calls", to.calls);
  } else cJSON_Delete(to.calls);
  return c;
}

static cJSON *full_response(lm_server *s, const job *j) {
  cJSON *o = head(s, j, j->req.kind == LM_REQ_CHAT ? "chat.completion" : "text_completion");
  cJSON *ch = cJSON_AddArrayToObject(o, "choices");
  if (j->tools) cJSON_AddItemToArray(ch, tool_choice_json(s, j));
  else cJSON_AddItemToArray(ch, choice(s, j, j->text ? j->text : "", j->len, 0, lp_upto(j, j->len), 0, 0, finish_name(j), 1));
  add_usage(o, j);
  if (j->sources) cJSON_AddItemToObject(o, "sources", cJSON_Duplicate(j->sources, 1));
  return o;
}

/* ------------------------------------------------------------------ streaming (SSE) */

static int has_news(conn_ctx *cx) {
  const job *j = cx->j;
  return j->done || j->safe > cx->sent || (cx->phase == 0) || (j->tools && j->len > cx->seen);
}

static int emit(conn_ctx *cx, cJSON *o) {
  char *t = o ? cJSON_PrintUnformatted(o) : NULL;
  cJSON_Delete(o);
  const char *body = t ? t : "[DONE]";
  size_t n = strlen(body) + 8;
  char *p = realloc(cx->out, cx->out_len + n + 1);
  if (!p) { free(t); return -1; }
  cx->out = p;
  cx->out_len += (size_t)snprintf(cx->out + cx->out_len, n + 1, "data: %s\n\n", body);
  free(t);
  return 0;
}

static cJSON *chunk(lm_server *s, conn_ctx *cx, const char *text, size_t len, int64_t lp_b, const char *finish, int role) {
  const job *j = cx->j;
  cJSON *o = head(s, j, j->req.kind == LM_REQ_CHAT ? "chat.completion.chunk" : "text_completion");
  cJSON *ch = cJSON_AddArrayToObject(o, "choices");
  cJSON_AddItemToArray(ch, choice(s, j, text, len, cx->lp_sent, lp_b, cx->sent, 1, finish, role));
  if (j->req.include_usage) cJSON_AddNullToObject(o, "usage");
  if (role && j->sources) cJSON_AddItemToObject(o, "sources", cJSON_Duplicate(j->sources, 1));   /* with the first chunk */
  return o;
}

/* A tool call as OpenAI streams it: {"index", "id", "type", "function": {"name", "arguments": ""}},
 * then {"index", "function": {"arguments"}} */
static void emit_tool_call(lm_server *s, conn_ctx *cx, const cJSON *call, int k) {
  for (int part = 0; part < 2; part++) {
    cJSON *o = chunk(s, cx, "", 0, cx->lp_sent, NULL, 0);
    cJSON *d = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(o, "choices"), 0), "delta");
    cJSON *tc = cJSON_CreateObject(), *f = cJSON_CreateObject();
    const cJSON *cf = cJSON_GetObjectItemCaseSensitive(call, "function");
    cJSON_AddNumberToObject(tc, "index", k);
    if (!part) {
      cJSON_AddItemToObject(tc, "id", cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(call, "id"), 0));
      cJSON_AddStringToObject(tc, "type", "function");
      cJSON_AddItemToObject(f, "name", cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(cf, "name"), 0));
      cJSON_AddStringToObject(f, "arguments", "");
    } else cJSON_AddItemToObject(f, "arguments", cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(cf, "arguments"), 0));
    cJSON_AddItemToObject(tc, "function", f);
    cJSON_AddItemToArray(cJSON_AddArrayToObject(d, "tool_calls"), tc);
    emit(cx, o);
  }
}

static void produce_end(conn_ctx *cx, const char *finish);

/* With tools: content up to the first call, each call once it is whole, then what follows it. */
static void produce_tools(conn_ctx *cx) {
  lm_server *s = cx->s;
  job *j = cx->j;
  const char *text = j->text ? j->text : "";
  lm_tool_output to;
  if (lm_tools_parse(text, j->len, j->req.tools, j->done, j->seq, &to)) return;   /* out of memory: next time */
  cx->seen = j->len;
  size_t lim = j->done || j->safe > to.content_end ? to.content_end : j->safe;
  if (lim > cx->sent) { emit(cx, chunk(s, cx, text + cx->sent, lim - cx->sent, cx->lp_sent, NULL, 0)); cx->sent = lim; }
  for (; cx->calls_sent < cJSON_GetArraySize(to.calls); cx->calls_sent++)
    emit_tool_call(s, cx, cJSON_GetArrayItem(to.calls, cx->calls_sent), cx->calls_sent);
  if (j->done) {
    if (to.rest < j->len) emit(cx, chunk(s, cx, text + to.rest, j->len - to.rest, cx->lp_sent, NULL, 0));
    produce_end(cx, tool_finish(j, &to));
  }
  cJSON_Delete(to.calls);
}

/* the last chunk, the usage, [DONE] */
static void produce_end(conn_ctx *cx, const char *finish) {
  lm_server *s = cx->s;
  job *j = cx->j;
  emit(cx, chunk(s, cx, "", 0, cx->lp_sent, finish, 0));
  if (j->req.include_usage) {
    cJSON *o = head(s, j, j->req.kind == LM_REQ_CHAT ? "chat.completion.chunk" : "text_completion");
    cJSON_AddArrayToObject(o, "choices");
    add_usage(o, j);
    emit(cx, o);
  }
  emit(cx, NULL);
  cx->phase = 3;
}

/* Formats what the job has new into cx->out (s->mu held). */
static void produce(conn_ctx *cx) {
  lm_server *s = cx->s;
  job *j = cx->j;
  cx->out_len = cx->out_off = 0;
  if (cx->phase == 0 && j->req.kind == LM_REQ_CHAT) emit(cx, chunk(s, cx, "", 0, cx->lp_sent, NULL, 1));
  if (cx->phase == 0) cx->phase = 1;
  if (j->error) {
    cJSON *e = cJSON_CreateObject(), *o = cJSON_AddObjectToObject(e, "error");
    cJSON_AddStringToObject(o, "message", j->error);
    cJSON_AddStringToObject(o, "type", "server_error");
    emit(cx, e);
    cx->phase = 3;
    return;
  }
  if (j->tools) { produce_tools(cx); return; }
  if (j->safe > cx->sent) {
    int64_t lp_b = lp_upto(j, j->safe);
    emit(cx, chunk(s, cx, j->text + cx->sent, j->safe - cx->sent, lp_b, NULL, 0));
    cx->sent = j->safe; cx->lp_sent = lp_b;
  }
  if (j->done) produce_end(cx, finish_name(j));
}

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max) {
  conn_ctx *cx = cls;
  lm_server *s = cx->s;
  while (cx->out_off == cx->out_len) {
    if (cx->phase == 3) return MHD_CONTENT_READER_END_OF_STREAM;
    pthread_mutex_lock(&s->mu);
    int alive = wait_job(cx, has_news);
    if (alive) produce(cx);
    pthread_mutex_unlock(&s->mu);
    if (!alive) return MHD_CONTENT_READER_END_WITH_ERROR;
  }
  size_t n = cx->out_len - cx->out_off < max ? cx->out_len - cx->out_off : max;
  memcpy(buf, cx->out + cx->out_off, n);
  cx->out_off += n;
  return (ssize_t)n;
}

/* ------------------------------------------------------------------ routes */

static int job_done(conn_ctx *cx) { return cx->j->done; }

/* Renders, tokenizes and checks a generation request, then queues it. */
static enum MHD_Result generate(conn_ctx *cx, lm_request *rq) {
  lm_server *s = cx->s;
  if (!s->generates)
    return send_error(cx, 400, "model", "%s is not a text generator (a causal decoder with an LM head): it serves "
                      "/v1/embeddings, /tokenize and /detokenize", s->model_id);
  job *j = calloc(1, sizeof *j);
  if (!j) { lm_request_free(rq); return send_error(cx, 500, NULL, "out of memory"); }
  j->req = *rq;
  j->refs = 1;
  pthread_cond_init(&j->cv, NULL);
  char *prompt = NULL;
  const char *text = j->req.prompt;
  lm_status st = LM_OK;
  if (j->req.retrieval) {   /* the last user message becomes a question over numbered sources */
    int k = 0;
    while (k < s->o.n_index && strcmp(s->o.index_names[k], j->req.retrieval)) k++;
    char have[512] = "";
    for (int i = 0; i < s->o.n_index; i++)
      snprintf(have + strlen(have), sizeof have - strlen(have), "%s%s", i ? ", " : "", s->o.index_names[i]);
    if (k == s->o.n_index) {
      char msg[768];
      snprintf(msg, sizeof msg, "no index named '%s' (%s%s)", j->req.retrieval,
               s->o.n_index ? "this server has: " : "this server has none: start it with --index NAME=PATH", have);
      pthread_mutex_lock(&s->mu); job_unref(s, j); pthread_mutex_unlock(&s->mu);
      return send_error(cx, 400, "retrieval", "%s", msg);
    }
    if (lm_rag_augment(s->rag[k], (cJSON *)j->req.messages, j->req.retrieval_k, &j->sources)) {
      pthread_mutex_lock(&s->mu); job_unref(s, j); pthread_mutex_unlock(&s->mu);
      return send_error(cx, 400, "retrieval", "%s", lm_last_error());
    }
  }
  const char *what = j->req.kind == LM_REQ_CHAT ? "messages" : "prompt";
  if (j->req.kind == LM_REQ_CHAT) {   /* the answer may be made to start with a tool call (tool_choice) */
    char *forced = NULL, *both = NULL;
    st = lm_tools_chat_prompt(&s->cc, &j->req, &prompt, &forced, &what);
    if (!st && *forced && (!(both = malloc(strlen(prompt) + strlen(forced) + 1)) || append(j, forced, strlen(forced))))
      st = lm_error(LM_ERR_NOMEM, "out of memory");
    if (both) { strcat(strcpy(both, prompt), forced); free(prompt); prompt = both; }
    free(forced);
    j->tools = j->req.tools && j->req.tool_choice != LM_TOOL_CHOICE_NONE;
    text = prompt;
  }
  uint32_t *ids = NULL; size_t n = 0;
  /* a chat template writes its own specials (<|begin_of_text|>...); a plain prompt gets the tokenizer's, as
   * lmkit generate --prompt and HF's tokenizer(prompt) do */
  int flags = LM_ENCODE_SPECIAL | (j->req.kind == LM_REQ_CHAT ? 0 : LM_ENCODE_ADD_SPECIAL);
  if (!st) st = lm_tokenizer_encode(s->tok, text, strlen(text), flags, &ids, &n);
  free(prompt);
  if (st) {
    pthread_mutex_lock(&s->mu); job_unref(s, j); pthread_mutex_unlock(&s->mu);
    free(ids);
    return send_error(cx, status_code(st), what, "%s", lm_last_error());
  }
  if (n == 0 && s->eot >= 0) {   /* an empty prompt starts a new document, as lm_generate does */
    free(ids);
    ids = malloc(sizeof *ids);
    if (ids) { ids[0] = (uint32_t)s->eot; n = 1; }
  }
  j->prompt = (int32_t *)ids; j->n_prompt = (int64_t)n;
  if (n && lm_detok_init(&j->dt, s->tok, j->prompt[n - 1])) {
    pthread_mutex_lock(&s->mu); job_unref(s, j); pthread_mutex_unlock(&s->mu);
    return send_error(cx, 500, NULL, "%s", lm_last_error());
  }
  enum MHD_Result ret;
  const char *why = NULL;
  char buf[256];
  if (!n) why = "the prompt is empty and the tokenizer has no end-of-text token to start from";
  else if ((int64_t)n >= s->ctx) {
    snprintf(buf, sizeof buf, "the prompt has %zu tokens; the context is %lld, so nothing can be generated", n, (long long)s->ctx);
    why = buf;
  } else if (j->req.max_tokens > 0 && (int64_t)n + j->req.max_tokens > s->ctx) {
    snprintf(buf, sizeof buf, "the prompt (%zu tokens) plus max_tokens (%lld) exceed the context of %lld tokens", n,
             (long long)j->req.max_tokens, (long long)s->ctx);
    why = buf;
    what = "max_tokens";
  }
  if (why) {
    pthread_mutex_lock(&s->mu); job_unref(s, j); pthread_mutex_unlock(&s->mu);
    return send_error(cx, 400, what, "%s", why);
  }
  j->max_tokens = j->req.max_tokens > 0 ? j->req.max_tokens : s->ctx - (int64_t)n;
  lm_gen_opts g;
  lm_gen_opts_default(&g);
  g.temperature = j->req.top_p > 0 ? j->req.temperature : 0;   /* top_p 0 keeps only the likeliest */
  g.top_p = j->req.top_p > 0 ? j->req.top_p : 1;
  g.top_k = j->req.top_k;
  pthread_mutex_lock(&s->mu);
  uint64_t seq = j->seq = ++s->seq;
  pthread_mutex_unlock(&s->mu);
  g.seed = j->req.has_seed ? j->req.seed : (uint64_t)time(NULL) * 0x9E3779B97F4A7C15ull + seq;
  if (lm_sampler_init(&j->sp, &g, lm_model_config(s->m)->vocab_size)) {
    pthread_mutex_lock(&s->mu); job_unref(s, j); pthread_mutex_unlock(&s->mu);
    return send_error(cx, 500, NULL, "%s", lm_last_error());
  }
  snprintf(j->id, sizeof j->id, "%s-%llu", j->req.kind == LM_REQ_CHAT ? "chatcmpl" : "cmpl", (unsigned long long)seq);
  j->created = (long)time(NULL);
  /* queue it (or 503) */
  pthread_mutex_lock(&s->mu);
  if (s->stopping || s->n_queued >= s->o.max_queue + (s->o.parallel - s->n_active)) {   /* beyond the free slots */
    job_unref(s, j);
    pthread_mutex_unlock(&s->mu);
    return send_error(cx, 503, NULL, s->stopping ? "the server is shutting down" :
                      "the queue is full (%d requests wait for a slot): retry later", s->o.max_queue);
  }
  j->refs = 2;   /* the connection's and the engine's */
  j->t_queued = lm_time_sec();
  if (s->queue_tail) s->queue_tail->next = j; else s->queue_head = j;
  s->queue_tail = j; s->n_queued++;
  s->prompt_tokens += (uint64_t)n;
  pthread_cond_signal(&s->engine_cv);
  cx->j = j;
  if (j->req.stream) {
    pthread_mutex_unlock(&s->mu);
    struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_reader, cx, NULL);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", "text/event-stream");
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    ret = MHD_queue_response(cx->conn, 200, r);
    MHD_destroy_response(r);
    return ret;
  }
  int alive = wait_job(cx, job_done);
  cJSON *o = NULL;
  char *err = NULL;
  if (alive && j->error) err = lm_strdup(j->error);
  else if (alive) o = full_response(s, j);
  pthread_mutex_unlock(&s->mu);
  if (!alive) return MHD_NO;   /* the client left: close */
  if (err) { ret = send_error(cx, 500, NULL, "%s", err); free(err); return ret; }
  return send_json(cx->conn, 200, o);
}

static void pool_rows(const lm_server *s, const float *h, const uint8_t *mask, int64_t T, int64_t C, float *e) {
  int64_t t = 0, cnt = 0;
  switch (s->o.pool) {
    case LM_POOL_MEAN_TOKENS:
      memset(e, 0, (size_t)C * sizeof *e);
      for (int64_t u = 0; u < T; u++)
        if (mask[u]) { cnt++; for (int64_t k = 0; k < C; k++) e[k] += h[u * C + k]; }
      for (int64_t k = 0; k < C; k++) e[k] /= (float)(cnt ? cnt : 1);
      return;
    case LM_POOL_LAST_TOKEN:
      for (int64_t u = 0; u < T; u++) if (mask[u]) t = u;
      /* fall through */
    case LM_POOL_CLS_TOKEN:
      memcpy(e, h + t * C, (size_t)C * sizeof *e);
  }
}

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static char *base64(const unsigned char *p, size_t n) {
  char *o = malloc((n + 2) / 3 * 4 + 1), *w = o;
  if (!o) return NULL;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
    *w++ = B64[v >> 18]; *w++ = B64[(v >> 12) & 63];
    *w++ = i + 1 < n ? B64[(v >> 6) & 63] : '='; *w++ = i + 2 < n ? B64[v & 63] : '=';
  }
  *w = 0;
  return o;
}

static enum MHD_Result embeddings(conn_ctx *cx, lm_request *rq) {
  lm_server *s = cx->s;
  lm_config cfg = *lm_model_config(s->m);
  int64_t C = cfg.n_embd, n = rq->n_inputs;
  lm_cls_data d;
  lm_status st = lm_cls_encode(&d, &cfg, s->tok, rq->inputs, NULL, n, s->ctx);
  if (st) { lm_request_free(rq); return send_error(cx, status_code(st), "input", "%s", lm_last_error()); }
  for (int64_t i = 0; i < n; i++)
    if (d.off[i + 1] - d.off[i] + lm_frame_len(d.cls, d.sep) > s->ctx || (d.n_truncated && i == n - 1)) {
      int64_t k = 0;   /* which one: lm_cls_encode cut it to the context */
      while (k < n && d.off[k + 1] - d.off[k] + lm_frame_len(d.cls, d.sep) < s->ctx) k++;
      lm_cls_data_free(&d); lm_request_free(rq);
      return send_error(cx, 400, "input", "input[%lld] is longer than the context of %lld tokens", (long long)k,
                        (long long)s->ctx);
    }
  /* micro-batches: an LM head computes (B, T, V) logits, so bound B * T * V */
  int64_t V = cfg.head == LM_HEAD_LM ? cfg.vocab_size : C;
  int64_t T = d.context, B = (int64_t)(64 << 20) / (T * V + 1);
  B = B < 1 ? 1 : B > 32 ? 32 : B > n ? n : B;
  int32_t *ids = malloc((size_t)(B * T) * sizeof *ids);
  uint8_t *mask = malloc((size_t)(B * T));
  int64_t *idx = malloc((size_t)B * sizeof *idx);
  float *e = malloc((size_t)(n * C) * sizeof *e);
  if (!ids || !mask || !idx || !e) st = lm_error(LM_ERR_NOMEM, "out of memory");
  int64_t tokens = d.off[n];
  pthread_mutex_lock(&s->embed_mu);
  lm_set_threads(s->threads);   /* this connection's thread starts from OpenMP's default, as the engine does */
  if (!st) st = lm_model_reserve(s->m, B, T, 0);
  for (int64_t b0 = 0; b0 < n && !st; b0 += B) {
    int64_t nb = n - b0 < B ? n - b0 : B;
    for (int64_t b = 0; b < nb; b++) idx[b] = b0 + b;
    int64_t Tb = lm_cls_fill(&d, idx, nb, ids, mask, NULL);
    lm_batch bb = {.ids = ids, .mask = mask, .B = nb, .T = Tb};
    if ((st = lm_batch_check(s->m, &bb))) break;
    lm_forward(s->m, &bb, NULL, NULL);
    const float *h = lm_model_hidden(s->m);
    for (int64_t b = 0; b < nb; b++) pool_rows(s, h + b * Tb * C, mask + b * Tb, Tb, C, e + (b0 + b) * C);
  }
  pthread_mutex_unlock(&s->embed_mu);
  lm_cls_data_free(&d);
  free(ids); free(mask); free(idx);
  if (st) { free(e); lm_request_free(rq); return send_error(cx, 500, NULL, "%s", lm_last_error()); }
  cJSON *o = cJSON_CreateObject(), *data = cJSON_AddArrayToObject(o, "data");
  cJSON_AddStringToObject(o, "object", "list");
  for (int64_t i = 0; i < n; i++) {
    cJSON *x = cJSON_CreateObject();
    cJSON_AddStringToObject(x, "object", "embedding");
    cJSON_AddNumberToObject(x, "index", (double)i);
    if (rq->base64) {   /* little-endian float32, as OpenAI sends it */
      char *b = base64((const unsigned char *)(e + i * C), (size_t)C * sizeof(float));
      cJSON_AddStringToObject(x, "embedding", b ? b : "");
      free(b);
    } else cJSON_AddItemToObject(x, "embedding", cJSON_CreateFloatArray(e + i * C, (int)C));
    cJSON_AddItemToArray(data, x);
  }
  cJSON_AddStringToObject(o, "model", s->model_id);
  cJSON *u = cJSON_AddObjectToObject(o, "usage");
  cJSON_AddNumberToObject(u, "prompt_tokens", (double)tokens);
  cJSON_AddNumberToObject(u, "total_tokens", (double)tokens);
  pthread_mutex_lock(&s->mu); s->prompt_tokens += (uint64_t)tokens; pthread_mutex_unlock(&s->mu);
  free(e);
  lm_request_free(rq);
  return send_json(cx->conn, 200, o);
}

/* llama.cpp's /apply-template: the prompt a chat request's messages (and tools) render to */
static enum MHD_Result apply_template(conn_ctx *cx, lm_request *rq) {
  lm_server *s = cx->s;
  if (!s->generates) { lm_request_free(rq); return send_error(cx, 400, "model", "%s has no chat template: it is not a text generator", s->model_id); }
  char *prompt = NULL, *forced = NULL;
  const char *param;
  lm_status st = lm_tools_chat_prompt(&s->cc, rq, &prompt, &forced, &param);
  lm_request_free(rq);
  if (st) return send_error(cx, status_code(st), param, "%s", lm_last_error());
  cJSON *o = cJSON_CreateObject();
  size_t np = strlen(prompt), nf = strlen(forced);
  char *both = malloc(np + nf + 1);
  if (both) { memcpy(both, prompt, np); memcpy(both + np, forced, nf + 1); }
  cJSON_AddStringToObject(o, "prompt", both ? both : "");
  free(both); free(prompt); free(forced);
  return send_json(cx->conn, 200, o);
}

static enum MHD_Result tokenize(conn_ctx *cx, lm_request *rq) {
  lm_server *s = cx->s;
  uint32_t *ids = NULL; size_t n = 0;
  int flags = (rq->parse_special ? LM_ENCODE_SPECIAL : 0) | (rq->add_special ? LM_ENCODE_ADD_SPECIAL : 0);
  lm_status st = lm_tokenizer_encode(s->tok, rq->inputs[0], strlen(rq->inputs[0]), flags, &ids, &n);
  if (st) { lm_request_free(rq); return send_error(cx, 400, "content", "%s", lm_last_error()); }
  cJSON *o = cJSON_CreateObject(), *a = cJSON_AddArrayToObject(o, "tokens");
  for (size_t i = 0; i < n; i++) {
    if (!rq->with_pieces) { cJSON_AddItemToArray(a, cJSON_CreateNumber(ids[i])); continue; }
    cJSON *x = cJSON_CreateObject();
    cJSON_AddNumberToObject(x, "id", ids[i]);
    cJSON_AddItemToObject(x, "piece", token_text(s, (int32_t)ids[i], NULL));
    cJSON_AddItemToArray(a, x);
  }
  free(ids);
  lm_request_free(rq);
  return send_json(cx->conn, 200, o);
}

static enum MHD_Result detokenize(conn_ctx *cx, lm_request *rq) {
  lm_server *s = cx->s;
  int64_t V = lm_tokenizer_vocab_size(s->tok);
  for (int64_t i = 0; i < rq->n_ids; i++)
    if (rq->ids[i] >= V) {
      int32_t id = rq->ids[i];
      lm_request_free(rq);
      return send_error(cx, 400, "tokens", "token id %d is outside the vocabulary (%lld)", id, (long long)V);
    }
  char *t = NULL; size_t n = 0;
  lm_status st = lm_tokenizer_decode(s->tok, (const uint32_t *)rq->ids, (size_t)rq->n_ids, &t, &n);
  lm_request_free(rq);
  if (st) return send_error(cx, 400, "tokens", "%s", lm_last_error());
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "content", t);
  free(t);
  return send_json(cx->conn, 200, o);
}

static enum MHD_Result models(conn_ctx *cx) {
  lm_server *s = cx->s;
  cJSON *o = cJSON_CreateObject(), *a;
  cJSON_AddStringToObject(o, "object", "list");
  a = cJSON_AddArrayToObject(o, "data");
  cJSON *m = cJSON_CreateObject();
  cJSON_AddStringToObject(m, "id", s->model_id);
  cJSON_AddStringToObject(m, "object", "model");
  cJSON_AddNumberToObject(m, "created", (double)time(NULL));
  cJSON_AddStringToObject(m, "owned_by", "lmkit");
  cJSON *meta = cJSON_AddObjectToObject(m, "meta");
  const lm_config *c = lm_model_config(s->m);
  cJSON_AddStringToObject(meta, "arch", lm_arch_name(c->arch));
  cJSON_AddNumberToObject(meta, "n_ctx", (double)s->ctx);
  cJSON_AddNumberToObject(meta, "n_embd", (double)c->n_embd);
  cJSON_AddNumberToObject(meta, "n_params", (double)lm_model_num_params(s->m));
  cJSON_AddItemToArray(a, m);
  return send_json(cx->conn, 200, o);
}

static enum MHD_Result health(conn_ctx *cx) {
  if (!cx->s->loaded) return send_error(cx, 503, NULL, "loading the model");
  return send_text(cx->conn, 200, "application/json", "{\"status\":\"ok\"}", 15);
}

static enum MHD_Result metrics(conn_ctx *cx) {
  lm_server *s = cx->s;
  char b[2048];
  pthread_mutex_lock(&s->mu);
  int n = snprintf(b, sizeof b,
    "# HELP lmkit_requests_total Requests received.\n# TYPE lmkit_requests_total counter\nlmkit_requests_total %llu\n"
    "# HELP lmkit_request_errors_total Requests answered with an error.\n# TYPE lmkit_request_errors_total counter\n"
    "lmkit_request_errors_total %llu\n"
    "# HELP lmkit_prompt_tokens_total Prompt tokens processed.\n# TYPE lmkit_prompt_tokens_total counter\n"
    "lmkit_prompt_tokens_total %llu\n"
    "# HELP lmkit_generated_tokens_total Tokens generated.\n# TYPE lmkit_generated_tokens_total counter\n"
    "lmkit_generated_tokens_total %llu\n"
    "# HELP lmkit_decode_tokens_per_second Generated tokens per second of decode steps.\n"
    "# TYPE lmkit_decode_tokens_per_second gauge\nlmkit_decode_tokens_per_second %.3f\n"
    "# HELP lmkit_decode_seconds_total Wall time inside decode steps.\n# TYPE lmkit_decode_seconds_total counter\n"
    "lmkit_decode_seconds_total %.6f\n"
    "# HELP lmkit_slots_busy Slots decoding a request.\n# TYPE lmkit_slots_busy gauge\nlmkit_slots_busy %d\n"
    "# HELP lmkit_slots_total Slots.\n# TYPE lmkit_slots_total gauge\nlmkit_slots_total %d\n"
    "# HELP lmkit_queue_length Requests waiting for a slot.\n# TYPE lmkit_queue_length gauge\nlmkit_queue_length %d\n",
    (unsigned long long)s->n_requests, (unsigned long long)s->n_errors, (unsigned long long)s->prompt_tokens,
    (unsigned long long)s->gen_tokens, s->decode_sec > 0 ? (double)s->gen_tokens / s->decode_sec : 0.0, s->decode_sec,
    s->n_active, s->o.parallel, s->n_queued);
  pthread_mutex_unlock(&s->mu);
  return send_text(cx->conn, 200, "text/plain; version=0.0.4", b, (size_t)n);
}

static enum MHD_Result page(conn_ctx *cx) {
  return send_text(cx->conn, 200, "text/html; charset=utf-8", lm_serve_page, lm_serve_page_len);
}

typedef enum MHD_Result (*body_fn)(conn_ctx *cx, lm_request *rq);
typedef enum MHD_Result (*get_fn)(conn_ctx *cx);
typedef struct {
  const char *method, *path;
  int kind;          /* lm_req_kind of a POST body; -1: GET */
  body_fn post; get_fn get;
  int needs_key, needs_model;
} route;

static const route ROUTES[] = {
  {"POST", "/v1/chat/completions", LM_REQ_CHAT, generate, NULL, 1, 1},
  {"POST", "/v1/completions", LM_REQ_COMPLETION, generate, NULL, 1, 1},
  {"POST", "/v1/embeddings", LM_REQ_EMBEDDING, embeddings, NULL, 1, 1},
  {"POST", "/apply-template", LM_REQ_CHAT, apply_template, NULL, 1, 1},
  {"POST", "/tokenize", LM_REQ_TOKENIZE, tokenize, NULL, 1, 1},
  {"POST", "/detokenize", LM_REQ_DETOKENIZE, detokenize, NULL, 1, 1},
  {"GET", "/v1/models", -1, NULL, models, 1, 1},
  {"GET", "/health", -1, NULL, health, 0, 0},
  {"GET", "/metrics", -1, NULL, metrics, 1, 0},
  {"GET", "/", -1, NULL, page, 0, 0},
};
#define N_ROUTES ((int)(sizeof ROUTES / sizeof ROUTES[0]))

static int authorised(const lm_server *s, struct MHD_Connection *c) {
  if (!s->o.api_key) return 1;
  const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
  if (!h || strncmp(h, "Bearer ", 7)) return 0;
  /* constant time in the key's length: no early exit that would time a guess */
  const char *k = s->o.api_key, *g = h + 7;
  size_t kl = strlen(k), gl = strlen(g);
  unsigned diff = kl != gl;
  for (size_t i = 0; i < kl; i++) diff |= (unsigned)(k[i] ^ (i < gl ? g[i] : 0));
  return !diff;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls) {
  lm_server *s = cls;
  conn_ctx *cx = *con_cls;
  if (!cx) {   /* the first call: headers only */
    cx = calloc(1, sizeof *cx);
    if (!cx) return MHD_NO;
    cx->s = s; cx->conn = c;
    *con_cls = cx;
    pthread_mutex_lock(&s->mu); s->n_requests++; s->in_flight++; cx->counted = 1; pthread_mutex_unlock(&s->mu);
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
    if (cl && strtoull(cl, NULL, 10) > s->o.max_body) cx->too_big = 1;
    if (!cx->too_big) return MHD_YES;
  }
  if (*upload_size) {   /* a piece of the body */
    if (!cx->too_big && cx->len + *upload_size > s->o.max_body) cx->too_big = 1;
    if (!cx->too_big) {
      if (cx->len + *upload_size > cx->cap) {
        size_t cap = (cx->len + *upload_size) * 2;
        cap = cap > s->o.max_body ? s->o.max_body : cap;
        char *b = realloc(cx->body, cap);
        if (!b) return MHD_NO;
        cx->body = b; cx->cap = cap;
      }
      memcpy(cx->body + cx->len, upload, *upload_size);
      cx->len += *upload_size;
      *upload_size = 0;
      return MHD_YES;
    }
  }
  if (cx->too_big)   /* answered at once; libmicrohttpd closes the connection after it */
    return send_error(cx, 413, NULL, "the request body is larger than the limit of %zu bytes", s->o.max_body);
  int r = 0, path_known = 0;
  for (; r < N_ROUTES; r++) {
    if (strcmp(ROUTES[r].path, url)) continue;
    path_known = 1;
    if (!strcmp(ROUTES[r].method, method)) break;
  }
  if (r == N_ROUTES) {
    if (path_known) return send_error(cx, 405, NULL, "%s is not allowed on %s", method, url);
    return send_error(cx, 404, NULL, "no route %s %s", method, url);
  }
  const route *rt = &ROUTES[r];
  if (rt->needs_key && !authorised(s, c))
    return send_error(cx, 401, NULL, "a valid API key is required (header 'Authorization: Bearer KEY')");
  if (rt->needs_model && !s->loaded) return send_error(cx, 503, NULL, "loading the model");
  if (rt->get) return rt->get(cx);
  lm_request rq;
  const char *param;
  lm_status st = lm_request_parse(&rq, (lm_req_kind)rt->kind, cx->body ? cx->body : "", cx->len, &param);
  if (st) return send_error(cx, 400, param, "%s", lm_last_error());
  return rt->post(cx, &rq);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
  lm_server *s = cls;
  conn_ctx *cx = *con_cls;
  if (!cx) return;
  pthread_mutex_lock(&s->mu);
  if (cx->j) {
    if (!cx->j->done) { cx->j->cancelled = 1; pthread_cond_signal(&s->engine_cv); }
    job_unref(s, cx->j);
  }
  if (cx->counted && --s->in_flight == 0) pthread_cond_broadcast(&s->idle_cv);
  pthread_mutex_unlock(&s->mu);
  free(cx->body); free(cx->out); free(cx);
  *con_cls = NULL;
}

/* ------------------------------------------------------------------ life cycle */

void lm_server_opts_default(lm_server_opts *o) {
  memset(o, 0, sizeof *o);
  o->host = "127.0.0.1"; o->port = 8080; o->parallel = 4; o->max_body = 1 << 20; o->max_queue = 64;
  o->max_connections = 256;
}

lm_status lm_server_start(lm_server **out, const lm_server_opts *o) {
  *out = NULL;
  if (!o->model_dir) return lm_error(LM_ERR_ARG, "a model directory is required");
  if (o->parallel < 1 || o->max_queue < 0 || o->max_body < 16 || o->max_connections < 1)
    return lm_error(LM_ERR_ARG, "parallel >= 1, max_queue >= 0, max_body >= 16 and max_connections >= 1 are required");
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)o->port)};
  if (o->port < 0 || o->port > 65535) return lm_error(LM_ERR_ARG, "port %d is not in 0..65535", o->port);
  if (inet_pton(AF_INET, o->host, &addr.sin_addr) != 1)
    return lm_error(LM_ERR_ARG, "host '%s' is not an IPv4 address (e.g. 127.0.0.1, or 0.0.0.0 for every interface)", o->host);
  lm_server *s = calloc(1, sizeof *s);
  if (!s) return lm_error(LM_ERR_NOMEM, "out of memory");
  s->o = *o;
  pthread_mutex_init(&s->mu, NULL); pthread_mutex_init(&s->embed_mu, NULL);
  pthread_cond_init(&s->engine_cv, NULL); pthread_cond_init(&s->idle_cv, NULL);
  const char *base = strrchr(o->model_dir, '/');
  while (base && !base[1] && base > o->model_dir) {   /* "dir/" names dir */
    const char *p = base - 1;
    while (p > o->model_dir && *p != '/') p--;
    base = *p == '/' ? p : NULL;
    if (!base) break;
  }
  s->model_id = o->alias ? lm_strdup(o->alias) : lm_strdup(base ? base + 1 : o->model_dir);
  if (s->model_id) { size_t l = strlen(s->model_id); while (l > 1 && s->model_id[l - 1] == '/') s->model_id[--l] = 0; }
  s->mhd = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC |
                            MHD_USE_ERROR_LOG, 0, NULL, NULL, on_request, s,
                            MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)o->max_connections,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120,
                            MHD_OPTION_END);
  if (!s->mhd) {
    lm_status st = lm_error(LM_ERR_IO, "cannot listen on %s:%d (in use, or not allowed)", o->host, o->port);
    free(s->model_id); free(s);
    return st;
  }
  const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_BIND_PORT);
  s->port = di ? di->port : o->port;
  *out = s;
  return LM_OK;
}

int lm_server_port(const lm_server *s) { return s->port; }
const char *lm_server_warning(const lm_server *s) { return s->warning; }

lm_status lm_server_load(lm_server *s) {
  const char *dir = s->o.model_dir;
  s->threads = lm_get_threads();
  lm_status st = lm_model_load_infer(&s->m, dir);   /* a GGUF file: no f32 copy of its quantized weights */
  if (st) return st;
  const lm_config *c = lm_model_config(s->m);
  s->generates = c->causal && c->head == LM_HEAD_LM;
  if (!s->generates) {   /* embeddings only: a token head is cheap to run (as `lmkit embed` does) */
    lm_model_free(s->m); s->m = NULL;
    if ((st = lm_model_load_head(&s->m, dir, LM_HEAD_TOKENS, 0, 0))) return st;
    c = lm_model_config(s->m);
  }
  s->ctx = s->o.ctx > 0 ? s->o.ctx : c->n_positions;
  if (s->ctx > c->n_positions)
    return lm_error(LM_ERR_RANGE, "--ctx %lld is beyond the model's context of %lld tokens", (long long)s->ctx,
                    (long long)c->n_positions);
  if ((st = lm_model_tokenizer_load(&s->tok, dir))) return st;
  s->eot = lm_tokenizer_eot(s->tok);
  if (s->generates) {
    if ((st = lm_chat_config_load(&s->cc, dir))) return st;
    if (s->cc.is_default) {
      char w[512];
      int has = lm_tokenizer_token_id(s->tok, LM_CHATML_START) >= 0 && lm_tokenizer_token_id(s->tok, LM_CHATML_END) >= 0;
      snprintf(w, sizeof w, "%s has no chat template: /v1/chat/completions uses ChatML%s", dir,
               has ? "" : ", whose <|im_start|>/<|im_end|> its tokenizer lacks (answers will not stop at the end of a turn)");
      s->warning = lm_strdup(w);
    }
    if ((st = lm_chat_stop_tokens(&s->cc, s->tok, c, s->chat_stop, LM_CHAT_MAX_STOP, &s->n_chat_stop))) return st;
    if ((st = lm_batch_decoder_init(&s->dec, s->m, s->o.parallel, s->ctx))) return st;
    s->slot = calloc((size_t)s->o.parallel, sizeof *s->slot);
    s->slot_logits = lm_alloc((size_t)s->o.parallel * c->vocab_size * sizeof(float));
    if (!s->slot || !s->slot_logits) return lm_error(LM_ERR_NOMEM, "out of memory");
    if (pthread_create(&s->engine, NULL, engine_main, s)) return lm_error(LM_ERR_NOMEM, "cannot start the engine thread");
    s->engine_started = 1;
  }
  s->rag = calloc((size_t)s->o.n_index + 1, sizeof *s->rag);
  if (!s->rag) return lm_error(LM_ERR_NOMEM, "out of memory");
  for (int i = 0; i < s->o.n_index; i++)
    if ((st = lm_rag_open(&s->rag[i], s->o.index_paths[i], LM_RAG_AUTO, NULL)))
      return lm_error_prefix(st, "--index %s=%s", s->o.index_names[i], s->o.index_paths[i]);
  pthread_mutex_lock(&s->mu); s->loaded = 1; pthread_mutex_unlock(&s->mu);
  return LM_OK;
}

void lm_server_stop(lm_server *s) {
  if (!s) return;
  /* no new connections; requests in flight (queued, decoding, being sent) finish */
  MHD_quiesce_daemon(s->mhd);
  pthread_mutex_lock(&s->mu);
  while (s->in_flight > 0) pthread_cond_wait(&s->idle_cv, &s->mu);
  s->stopping = 1;
  pthread_cond_signal(&s->engine_cv);
  pthread_mutex_unlock(&s->mu);
  MHD_stop_daemon(s->mhd);
  if (s->engine_started) pthread_join(s->engine, NULL);
  lm_batch_decoder_free(s->dec);
  for (int i = 0; s->rag && i < s->o.n_index; i++) lm_rag_close(s->rag[i]);
  free(s->rag);
  free(s->slot); lm_free(s->slot_logits);
  lm_chat_config_free(&s->cc);
  lm_tokenizer_free(s->tok);
  lm_model_free(s->m);
  pthread_mutex_destroy(&s->mu); pthread_mutex_destroy(&s->embed_mu);
  pthread_cond_destroy(&s->engine_cv); pthread_cond_destroy(&s->idle_cv);
  free(s->model_id); free(s->warning);
  free(s);
}
