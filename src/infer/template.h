/* template.h — chat templates: the Jinja subset that real models' tokenizer_config.json
 * `chat_template`s use, rendered byte-for-byte as @huggingface/jinja (transformers.js) does.
 *
 *   lm_chat_config cc;                       // template + bos/eos of a model directory
 *   lm_chat_config_load(&cc, dir);           // tokenizer_config.json (a GGUF file: tokenizer.chat_template), else ChatML
 *   cJSON *req = cJSON_Parse("{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],"
 *                            "\"add_generation_prompt\":true}");
 *   char *prompt; size_t len;
 *   if (lm_chat_render(&cc, req, &prompt, &len)) puts(lm_last_error());
 *
 * A construct the engine does not implement (a filter, test, statement or method) is an
 * error naming it and its line, never a silently different rendering. Every limit (template
 * size, nesting depth, evaluation steps, memory, output size) is an error too: a malformed or
 * hostile template cannot crash or hang the caller. docs/chat-templates.md lists what is
 * supported. */
#ifndef LM_INFER_TEMPLATE_H
#define LM_INFER_TEMPLATE_H

#include <stddef.h>
#include <cjson/cJSON.h>
#include "lmkit.h"

/* The template of models lmkit trains: ChatML, as Qwen2 uses it without a default system turn.
 * <|im_start|>role\ncontent<|im_end|>\n per message, then <|im_start|>assistant\n when
 * add_generation_prompt is true. */
#define LM_CHATML_TEMPLATE                                                                       \
  "{%- for message in messages %}"                                                               \
  "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}" \
  "{%- endfor %}"                                                                                \
  "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
#define LM_CHATML_START "<|im_start|>"
#define LM_CHATML_END "<|im_end|>"

/* A parsed template (immutable; one template may be rendered from several threads). */
typedef struct lm_template lm_template;

/* Parses src (len bytes, UTF-8; need not be NUL-terminated). `name` (e.g. a file path) starts
 * error messages. Syntax errors and unsupported statements fail here with the line. */
lm_status lm_template_parse(lm_template **out, const char *src, size_t len, const char *name);
void lm_template_free(lm_template *t);

/* Renders with the variables of `vars`, a JSON object (e.g. messages, add_generation_prompt,
 * tools, bos_token, eos_token). *out is malloc'ed and NUL-terminated, *len its length. JSON
 * values arrive as they would after JSON.parse in transformers.js (integral numbers are
 * integers, object keys that are array indices come first). raise_exception(...) in the
 * template fails with LM_ERR_ARG and its message. */
lm_status lm_template_render(const lm_template *t, const cJSON *vars, char **out, size_t *len);

/* What a model directory says about chat: its template and special tokens. */
typedef struct {
  char *template;     /* Jinja source (malloc'ed) */
  char *bos_token;    /* NULL when the config has none */
  char *eos_token;    /* NULL when the config has none */
  int is_default;     /* 1 when no chat_template was found and ChatML is used */
  char *source;       /* where the template came from: a file path, or "ChatML (default)" */
} lm_chat_config;

/* Reads DIR/tokenizer_config.json when it exists: `chat_template` (a string, or a list of
 * {name, template} from which "default" is taken), and `bos_token` / `eos_token` (strings or
 * AddedToken objects {"content": ...}). A directory without that file or without a template
 * gets LM_CHATML_TEMPLATE. A malformed file is an error naming it and the field. */
lm_status lm_chat_config_load(lm_chat_config *cc, const char *dir);
void lm_chat_config_free(lm_chat_config *cc);

/* Renders a chat request body {"messages": [...], "add_generation_prompt": bool, "tools":
 * [...], "documents": [...], "chat_template_kwargs": {...}} with cc's template. The template
 * sees messages, add_generation_prompt (default false), tools and documents when present,
 * bos_token and eos_token when the config has them, and each chat_template_kwargs entry
 * (e.g. enable_thinking) as a variable. `messages` must be a list of objects. */
lm_status lm_chat_render(const lm_chat_config *cc, const cJSON *request, char **out, size_t *len);

#endif
