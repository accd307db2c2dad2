/* chat_generate.c — the prompt and the stop tokens of an assistant's turn (chat_generate.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/base.h"
#include "infer/chat_generate.h"
#include "tokenizer/tokenizer.h"

lm_status lm_chat_add_cot(cJSON *conv, const char *cot) {
  cJSON *msgs = cJSON_IsObject(conv) ? cJSON_GetObjectItemCaseSensitive(conv, "messages") : conv, *last = NULL, *m;
  cJSON_ArrayForEach(m, msgs) {
    cJSON *r = cJSON_GetObjectItemCaseSensitive(m, "role");
    if (cJSON_IsString(r) && !strcmp(r->valuestring, "user")) last = m;
  }
  cJSON *c = last ? cJSON_GetObjectItemCaseSensitive(last, "content") : NULL;
  if (!cJSON_IsString(c)) return lm_error(LM_ERR_FORMAT, "--cot needs a user message with text content to add its instruction to");
  size_t k = strlen(c->valuestring) + strlen(cot) + 3;
  char *s = malloc(k);
  if (!s) return lm_error(LM_ERR_NOMEM, "out of memory");
  snprintf(s, k, "%s\n\n%s", c->valuestring, cot);
  cJSON *ns = cJSON_CreateString(s);
  free(s);
  if (!ns) return lm_error(LM_ERR_NOMEM, "out of memory");
  cJSON_ReplaceItemInObjectCaseSensitive(last, "content", ns);
  return LM_OK;
}

lm_status lm_chat_generation_prompt(const lm_chat_config *cc, const cJSON *conv, char **prompt, size_t *len) {
  *prompt = NULL;
  if (len) *len = 0;
  cJSON *req;
  if (cJSON_IsArray(conv)) {
    req = cJSON_CreateObject();
    if (req) cJSON_AddItemToObject(req, "messages", cJSON_Duplicate(conv, 1));
  } else if (cJSON_IsObject(conv)) {
    if (!cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(conv, "messages")))
      return lm_error(LM_ERR_FORMAT, "a chat request needs \"messages\": a list of {\"role\", \"content\"} messages");
    req = cJSON_Duplicate(conv, 1);
  } else {
    return lm_error(LM_ERR_FORMAT, "expected a list of messages or a chat request {\"messages\": [...]}");
  }
  if (!req) return lm_error(LM_ERR_NOMEM, "out of memory");
  if (!cJSON_GetObjectItemCaseSensitive(req, "add_generation_prompt")) cJSON_AddBoolToObject(req, "add_generation_prompt", 1);
  if (cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(req, "messages")) == 0) {
    cJSON_Delete(req);
    return lm_error(LM_ERR_FORMAT, "the conversation has no message");
  }
  size_t n;
  lm_status st = lm_chat_render(cc, req, prompt, &n);
  cJSON_Delete(req);
  if (!st && len) *len = n;
  return st;
}

static void add_stop(int32_t *ids, int cap, int *n, int64_t id, int64_t vocab) {
  if (id < 0 || id >= vocab || *n >= cap) return;
  for (int i = 0; i < *n; i++) if (ids[i] == id) return;
  ids[(*n)++] = (int32_t)id;
}

/* the special token at the start of s (after whitespace), or -1 */
static int64_t special_at(const lm_tokenizer *tok, const char *s) {
  while (*s == ' ' || *s == '\n' || *s == '\r' || *s == '\t') s++;
  for (int i = 0; i < tok->n_special; i++) {   /* longest first */
    size_t k;
    const uint8_t *b = lm_tok_bytes(tok, tok->special[i], &k);
    if (k && !strncmp(s, (const char *)b, k)) return tok->special[i];
  }
  return -1;
}

lm_status lm_chat_stop_tokens(const lm_chat_config *cc, const lm_tokenizer *tok, const lm_config *cfg, int32_t *ids,
                              int cap, int *n) {
  *n = 0;
  int64_t V = lm_tokenizer_vocab_size(tok);
  if (cfg && cfg->vocab_size < V) V = cfg->vocab_size;
  /* 1. what the template writes right after an assistant's message; the content as a string, or
   * as a list of parts for the templates of multimodal models, which loop over it */
  static const char probe[] = "lmkit-end-of-turn-probe";
  static const char *const convs[] = {
    "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": "
    "\"lmkit-end-of-turn-probe\"}], \"add_generation_prompt\": false}",
    "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"Hi\"}]}, {\"role\": "
    "\"assistant\", \"content\": [{\"type\": \"text\", \"text\": \"lmkit-end-of-turn-probe\"}]}], "
    "\"add_generation_prompt\": false}"};
  for (int c = 0; c < 2; c++) {
    cJSON *req = cJSON_Parse(convs[c]);
    if (!req) return lm_error(LM_ERR_NOMEM, "out of memory");
    char *text = NULL;
    size_t len;
    lm_status st = lm_chat_render(cc, req, &text, &len);   /* a template that refuses the probe has no say */
    cJSON_Delete(req);
    if (st == LM_OK) {
      const char *at = NULL, *p = text;
      while ((p = strstr(p, probe))) at = p++;
      if (at) add_stop(ids, cap, n, special_at(tok, at + sizeof probe - 1), V);
    }
    free(text);
    if (st == LM_OK) break;
  }
  lm_clear_error();
  /* 2. the config's eos_token, 3. the model's eos_token_id */
  if (cc->eos_token) {
    int64_t id = lm_tokenizer_token_id(tok, cc->eos_token);
    add_stop(ids, cap, n, id, V);
  }
  if (cfg) add_stop(ids, cap, n, cfg->eos_token_id, V);
  return LM_OK;
}
