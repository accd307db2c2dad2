/* request.h — the server's request bodies, parsed and checked before any model work.
 *
 * lm_request_parse is a pure function of the bytes (no model, no globals; fuzzed by
 * fuzz/fuzz_request.c): JSON syntax, every field's type and range, and fields lmkit does not
 * know or cannot honour are refused with a message naming the field (*param receives its
 * name for OpenAI's error.param). What depends on the model (the context, the template) is
 * checked by the server after parsing. Defaults follow OpenAI's API reference. */
#ifndef LM_SERVE_REQUEST_H
#define LM_SERVE_REQUEST_H

#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>
#include "lmkit.h"

typedef enum { LM_REQ_CHAT = 0, LM_REQ_COMPLETION, LM_REQ_EMBEDDING, LM_REQ_TOKENIZE, LM_REQ_DETOKENIZE, LM_REQ_KINDS } lm_req_kind;

#define LM_REQ_MAX_STOP 4        /* OpenAI allows up to 4 stop sequences */
#define LM_REQ_MAX_TOP_LOGPROBS 20

/* tool_choice: in OpenAI's order of strings, then {"type": "function", "function": {"name"}} */
typedef enum { LM_TOOL_CHOICE_NONE = 0, LM_TOOL_CHOICE_AUTO, LM_TOOL_CHOICE_REQUIRED, LM_TOOL_CHOICE_FUNCTION } lm_tool_choice;

typedef struct {
  lm_req_kind kind;
  cJSON *body;                   /* the parsed body (owned); messages/tools point into it */
  const cJSON *messages;         /* chat: the list, rendered by the chat template */
  const cJSON *tools;            /* chat: user-declared functions, checked (NULL: none) */
  lm_tool_choice tool_choice;    /* auto */
  const char *tool_choice_name;  /* LM_TOOL_CHOICE_FUNCTION: the function (one of tools) */
  int single_tool_call;          /* "parallel_tool_calls": false */
  const char *prompt;            /* completion: the text (points into body) */
  int64_t max_tokens;            /* -1: up to the end of the context */
  float temperature, top_p;
  int64_t top_k;                 /* extension (llama.cpp's): 0 = off */
  int has_seed; uint64_t seed;
  const char *stop[LM_REQ_MAX_STOP]; int n_stop;
  int stream, include_usage;
  int logprobs, top_logprobs;    /* chat: logprobs bool + top_logprobs; completion: logprobs N -> both */
  /* embeddings: the texts; tokenize: one text (inputs[0]); detokenize: ids */
  const char **inputs; int64_t n_inputs;
  int add_special, parse_special, with_pieces;  /* tokenize (llama.cpp's: false, true, false) */
  int32_t *ids; int64_t n_ids;   /* detokenize */
  int base64;                    /* embeddings: encoding_format "base64" */
  const char *retrieval;         /* chat: "retrieval": {"index": NAME, "k": K}: the index's name, or NULL */
  int64_t retrieval_k;           /* passages (5) */
} lm_request;

/* Parses len bytes (not necessarily NUL-terminated). On failure the request is freed, the
 * status is LM_ERR_FORMAT (bad JSON or types), LM_ERR_RANGE or LM_ERR_UNSUPPORTED, the error
 * message names the field, and *param (may be NULL) points to a static copy of its name or "". */
lm_status lm_request_parse(lm_request *r, lm_req_kind kind, const char *data, size_t len, const char **param);
void lm_request_free(lm_request *r);

#endif
