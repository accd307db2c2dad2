/* chat.c — conversation records and their tokenization (see chat.h). */
#include <stdlib.h>
#include <string.h>
#include "base/base.h"
#include "train/chat.h"
#include "train/posttrain_shared.h"

/* ------------------------------------------------------------------ records */

static int nonempty_str(const cJSON *x) { return cJSON_IsString(x) && x->valuestring[0]; }

cJSON *lm_chat_as_messages(const cJSON *x, const char *role) {
  if (cJSON_IsArray(x)) return cJSON_Duplicate(x, 1);
  if (!cJSON_IsString(x)) return NULL;
  cJSON *a = cJSON_CreateArray(), *m = cJSON_CreateObject();
  if (!a || !m) { cJSON_Delete(a); cJSON_Delete(m); return NULL; }
  cJSON_AddStringToObject(m, "role", role);
  cJSON_AddStringToObject(m, "content", x->valuestring);
  cJSON_AddItemToArray(a, m);
  return a;
}

/* every message an object with a string role and a string content */
lm_status lm_chat_check_messages(const cJSON *msgs, const char *where, const char *field) {
  int i = 0;
  const cJSON *m;
  cJSON_ArrayForEach(m, msgs) {
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(m, "role"), *c = cJSON_GetObjectItemCaseSensitive(m, "content");
    if (!cJSON_IsObject(m) || !cJSON_IsString(r) || !cJSON_IsString(c))
      return lm_error(LM_ERR_FORMAT, "%s: %s[%d] is not a message {\"role\": string, \"content\": string}", where, field, i);
    i++;
  }
  if (i == 0) return lm_error(LM_ERR_FORMAT, "%s: %s is an empty list", where, field);
  return LM_OK;
}

lm_status lm_chat_record_messages(const cJSON *rec, const char *where, cJSON **out, const char **why) {
  *out = NULL; *why = NULL;
  if (!cJSON_IsObject(rec)) return lm_error(LM_ERR_FORMAT, "%s: expected a JSON object", where);
  const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(rec, "messages");
  const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(rec, "prompt");
  const cJSON *completion = cJSON_GetObjectItemCaseSensitive(rec, "completion");
  const cJSON *instr = cJSON_GetObjectItemCaseSensitive(rec, "instruction");
  const cJSON *output = cJSON_GetObjectItemCaseSensitive(rec, "output");
  cJSON *conv = NULL;
  lm_status st = LM_OK;
  if (msgs) {
    if (!cJSON_IsArray(msgs)) return lm_error(LM_ERR_FORMAT, "%s: messages: expected a list", where);
    if ((st = lm_chat_check_messages(msgs, where, "messages"))) return st;
    conv = cJSON_Duplicate(msgs, 1);
  } else if (prompt || completion) {
    if (!prompt || !completion) return lm_error(LM_ERR_FORMAT, "%s: a prompt-completion record needs both fields", where);
    if ((!cJSON_IsString(prompt) && !cJSON_IsArray(prompt)) || (!cJSON_IsString(completion) && !cJSON_IsArray(completion)))
      return lm_error(LM_ERR_FORMAT, "%s: prompt and completion must be strings or message lists", where);
    if (cJSON_IsArray(prompt) && (st = lm_chat_check_messages(prompt, where, "prompt"))) return st;
    if (cJSON_IsArray(completion) && (st = lm_chat_check_messages(completion, where, "completion"))) return st;
    conv = lm_chat_as_messages(prompt, "user");
    cJSON *c = lm_chat_as_messages(completion, "assistant");
    if (!conv || !c) { cJSON_Delete(conv); cJSON_Delete(c); return lm_error(LM_ERR_NOMEM, "out of memory"); }
    cJSON *m;
    while ((m = cJSON_DetachItemFromArray(c, 0))) cJSON_AddItemToArray(conv, m);
    cJSON_Delete(c);
  } else if (instr || output) {
    const cJSON *input = cJSON_GetObjectItemCaseSensitive(rec, "input");
    if (!cJSON_IsString(instr) || !cJSON_IsString(output) || (input && !cJSON_IsString(input)))
      return lm_error(LM_ERR_FORMAT, "%s: an Alpaca record needs string instruction and output (and input)", where);
    /* the user turn: the instruction, then the input after a blank line when there is one */
    size_t a = strlen(instr->valuestring), b = nonempty_str(input) ? strlen(input->valuestring) : 0;
    char *user = malloc(a + b + 3);
    if (!user) return lm_error(LM_ERR_NOMEM, "out of memory");
    memcpy(user, instr->valuestring, a);
    if (b) { memcpy(user + a, "\n\n", 2); memcpy(user + a + 2, input->valuestring, b); a += b + 2; }
    user[a] = 0;
    conv = cJSON_CreateArray();
    cJSON *u = cJSON_CreateObject(), *r = cJSON_CreateObject();
    if (conv && u && r) {
      cJSON_AddStringToObject(u, "role", "user"); cJSON_AddStringToObject(u, "content", user);
      cJSON_AddStringToObject(r, "role", "assistant"); cJSON_AddStringToObject(r, "content", output->valuestring);
      cJSON_AddItemToArray(conv, u); cJSON_AddItemToArray(conv, r);
    } else { cJSON_Delete(u); cJSON_Delete(r); cJSON_Delete(conv); conv = NULL; }
    free(user);
  } else {
    return lm_error(LM_ERR_FORMAT, "%s: not a conversation: expected \"messages\", \"prompt\" + \"completion\" or "
                    "\"instruction\" + \"output\"", where);
  }
  if (!conv) return lm_error(LM_ERR_NOMEM, "out of memory");
  int assistant = 0, empty = 0;
  const cJSON *m;
  cJSON_ArrayForEach(m, conv) {
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(m, "role"), *c = cJSON_GetObjectItemCaseSensitive(m, "content");
    if (cJSON_IsString(r) && !strcmp(r->valuestring, "assistant")) {
      assistant = 1;
      if (!nonempty_str(c)) empty = 1;
    }
  }
  if (!assistant || empty) { cJSON_Delete(conv); *why = assistant ? "empty" : "no assistant turn"; return LM_OK; }
  *out = conv;
  return LM_OK;
}

void lm_chat_set_free(lm_chat_set *s) {
  for (int64_t i = 0; s->conv && i < s->n; i++) cJSON_Delete(s->conv[i]);
  free(s->conv); free(s->line);
  memset(s, 0, sizeof *s);
}

lm_status lm_chat_read(const char *path, lm_chat_set *out) {
  memset(out, 0, sizeof *out);
  char *text; size_t len;
  lm_status st = lm_read_file(path, &text, &len);
  if (st) return st;
  int64_t cap = 0, lineno = 0;
  size_t at = 0, l;
  const char *p;
  while (!st && lm_next_line(text, len, &at, &lineno, &p, &l)) {
    char where[600];
    snprintf(where, sizeof where, "%s:%lld", path, (long long)lineno);
    cJSON *rec = cJSON_ParseWithLength(p, l);
    if (!rec) { st = lm_error(LM_ERR_FORMAT, "%s: not valid JSON", where); break; }
    cJSON *conv; const char *why;
    st = lm_chat_record_messages(rec, where, &conv, &why);
    cJSON_Delete(rec);
    if (st) break;
    if (!conv) { if (!strcmp(why, "empty")) out->empty++; else out->no_assistant++; continue; }
    if (out->n == cap) {
      int64_t nc = cap ? 2 * cap : 256;
      cJSON **c2 = lm_xrealloc(out->conv, (size_t)nc * sizeof *c2);
      if (c2) out->conv = c2;
      int64_t *l2 = c2 ? lm_xrealloc(out->line, (size_t)nc * sizeof *l2) : NULL;
      if (l2) out->line = l2;
      if (!c2 || !l2) { cJSON_Delete(conv); st = LM_ERR_NOMEM; break; }
      cap = nc;
    }
    out->conv[out->n] = conv; out->line[out->n] = lineno; out->n++;
  }
  free(text);
  if (!st && out->n == 0)
    st = lm_error(LM_ERR_FORMAT, "%s: no usable conversation (%lld without an assistant turn, %lld with an empty one)", path,
                  (long long)out->no_assistant, (long long)out->empty);
  if (st) lm_chat_set_free(out);
  return st;
}

/* ------------------------------------------------------------------ tokenizing */

/* renders messages[0..k) */
static lm_status render_prefix(const lm_chat_config *cc, const cJSON *messages, int k, int gen, char **out, size_t *len) {
  cJSON *req = cJSON_CreateObject(), *arr = cJSON_CreateArray();
  if (!req || !arr) { cJSON_Delete(req); cJSON_Delete(arr); return lm_error(LM_ERR_NOMEM, "out of memory"); }
  int i = 0;
  const cJSON *m;
  cJSON_ArrayForEach(m, messages) {
    if (i++ >= k) break;
    cJSON_AddItemToArray(arr, cJSON_Duplicate(m, 1));
  }
  cJSON_AddItemToObject(req, "messages", arr);
  cJSON_AddBoolToObject(req, "add_generation_prompt", gen);
  lm_status st = lm_chat_render(cc, req, out, len);
  cJSON_Delete(req);
  return st;
}

static lm_status append_ids(const lm_tokenizer *tok, const char *s, size_t n, uint8_t flag, uint32_t **ids,
                            uint8_t **mask, size_t *len, size_t *cap) {
  if (n == 0) return LM_OK;
  uint32_t *p; size_t k;
  lm_status st = lm_tokenizer_encode(tok, s, n, 1, &p, &k);
  if (st) return st;
  if (*len + k > *cap) {
    size_t nc = *cap ? *cap : 256;
    while (nc < *len + k) nc *= 2;
    uint32_t *i2 = lm_xrealloc(*ids, nc * sizeof *i2);
    if (i2) *ids = i2;
    uint8_t *m2 = i2 ? lm_xrealloc(*mask, nc) : NULL;
    if (m2) *mask = m2;
    if (!i2 || !m2) { free(p); return LM_ERR_NOMEM; }
    *cap = nc;
  }
  memcpy(*ids + *len, p, k * sizeof *p);
  memset(*mask + *len, flag, k);
  *len += k;
  free(p);
  return LM_OK;
}

lm_status lm_chat_encode(const lm_chat_config *cc, const lm_tokenizer *tok, const cJSON *messages, int last_only,
                         uint32_t **ids, uint8_t **mask, size_t *n) {
  *ids = NULL; *mask = NULL; *n = 0;
  int k = cJSON_GetArraySize(messages), last = -1;
  for (int i = 0; i < k; i++) {
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(messages, i), "role");
    if (cJSON_IsString(r) && !strcmp(r->valuestring, "assistant")) last = i;
  }
  char *full = NULL; size_t flen = 0;
  lm_status st = render_prefix(cc, messages, k, 0, &full, &flen);
  if (st) return st;
  size_t pos = 0, cap = 0;   /* text before pos is tokenized */
  for (int i = 0; i < k && !st; i++) {
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(messages, i), "role");
    if (!cJSON_IsString(r) || strcmp(r->valuestring, "assistant") || (last_only && i != last)) continue;
    char *pre = NULL, *thru = NULL; size_t plen = 0, tlen = 0;
    if (!(st = render_prefix(cc, messages, i, 1, &pre, &plen)) && !(st = render_prefix(cc, messages, i + 1, 0, &thru, &tlen))) {
      /* the span [plen, tlen) of the full text must be this turn: each rendering a prefix of the next */
      if (plen < pos || plen > tlen || tlen > flen || memcmp(pre, thru, plen) || memcmp(thru, full, tlen))
        st = lm_error(LM_ERR_UNSUPPORTED, "the chat template is not prefix-consistent at message %d (rendering a later "
                      "turn changes earlier text), so the assistant's tokens cannot be located", i);
      else if (!(st = append_ids(tok, full + pos, plen - pos, 0, ids, mask, n, &cap)))
        st = append_ids(tok, full + plen, tlen - plen, 1, ids, mask, n, &cap);
      pos = tlen;
    }
    free(pre); free(thru);
  }
  if (!st) st = append_ids(tok, full + pos, flen - pos, 0, ids, mask, n, &cap);
  free(full);
  if (st) { free(*ids); free(*mask); *ids = NULL; *mask = NULL; *n = 0; }
  return st;
}
