/* chat.h — conversations for post-training (SFT, reward models, DPO): reading
 * JSONL records in the formats people use, and turning a conversation into
 * token ids with a mask of the assistant's tokens, through the model's chat
 * template (src/infer/template.h).
 *
 * Records (one JSON object per line; blank lines skipped):
 *   {"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}
 *   {"prompt": "...", "completion": "..."}             (or message lists for either)
 *   {"instruction": "...", "input": "...", "output": "..."}   (Alpaca; input may be "")
 * A record that is not one of these is an error naming file:line. A conversation
 * with no assistant turn, or an empty assistant turn, is counted and skipped.
 *
 * Tokenizing: the template renders the conversation; each assistant turn's span
 * is found by rendering the conversation up to it with add_generation_prompt
 * (the prompt) and through it (prompt + answer + end of turn). The text is then
 * tokenized in segments cut at those spans (special tokens honoured), and the
 * mask marks the tokens of the assistant spans: the answer and the end-of-turn
 * token that follows it, which is what teaches a model to stop. A template that
 * rewrites earlier turns when a later one is added (not prefix-consistent) is an
 * error for that record. */
#ifndef LM_TRAIN_CHAT_H
#define LM_TRAIN_CHAT_H

#include <stdint.h>
#include <cjson/cJSON.h>
#include "lmkit.h"
#include "infer/template.h"

typedef struct {
  int64_t n;
  cJSON **conv;          /* (n) arrays of {role, content} messages, owned */
  int64_t *line;         /* (n) 1-based line in the file */
  int64_t no_assistant;  /* records skipped: no assistant turn */
  int64_t empty;         /* records skipped: an empty assistant turn */
} lm_chat_set;

/* Reads path (JSONL). Errors name file:line and the field. */
lm_status lm_chat_read(const char *path, lm_chat_set *out);
/* One record (a parsed JSON object) as a message list; NULL with *why set when the record has
 * no assistant turn ("no assistant turn") or an empty one ("empty"); an error for a record
 * in no known format. The returned array is new (caller deletes). */
lm_status lm_chat_record_messages(const cJSON *rec, const char *where, cJSON **out, const char **why);
void lm_chat_set_free(lm_chat_set *s);

/* A string or a message list as a message list: a string becomes [{"role": role, "content": s}]. */
cJSON *lm_chat_as_messages(const cJSON *x, const char *role);

/* Tokenizes a conversation: *ids (n) and *mask (n; 1 = an assistant token) malloc'ed.
 * last_only: only the last assistant turn is marked (the response of a preference pair). */
lm_status lm_chat_encode(const lm_chat_config *cc, const lm_tokenizer *tok, const cJSON *messages, int last_only,
                         uint32_t **ids, uint8_t **mask, size_t *n);

#endif
