/* chat_generate.h — generating an assistant's turn: the conversation rendered by the
 * model's chat template with the generation prompt, and the tokens that end the turn, so
 * that generation stops where the model was trained to stop (docs/posttraining.md).
 *
 *   lm_chat_config cc;  lm_chat_config_load(&cc, dir);
 *   char *prompt;  lm_chat_generation_prompt(&cc, messages, &prompt, NULL);
 *   int32_t stop[LM_CHAT_MAX_STOP];  int n;
 *   lm_chat_stop_tokens(&cc, tok, lm_model_config(m), stop, LM_CHAT_MAX_STOP, &n);
 *   lm_gen_opts g;  lm_gen_opts_default(&g);  g.stop_tokens = stop;  g.n_stop_tokens = n;
 *   lm_generate(m, tok, prompt, &g, on_piece, user, &stats);   // stats.stop_token: the one met, or -1 */
#ifndef LM_INFER_CHAT_GENERATE_H
#define LM_INFER_CHAT_GENERATE_H

#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>
#include "lmkit.h"
#include "infer/template.h"

#define LM_CHAT_MAX_STOP 8

/* `conv` is a message list, or a chat request body {"messages": [...], ...} (its tools,
 * documents and chat_template_kwargs are honoured). Renders it with add_generation_prompt true
 * (unless the request sets it). *prompt is malloc'ed and NUL-terminated; len may be NULL. */
lm_status lm_chat_generation_prompt(const lm_chat_config *cc, const cJSON *conv, char **prompt, size_t *len);

/* Chain-of-thought prompting (Kojima et al. 2022; docs/rl.md "Chain-of-thought"): appends
 * "\n\n" + cot to the content of the last user message of `conv` (a message list or a chat
 * request body). An error when there is no user message with string content. */
#define LM_COT_DEFAULT "Let's think step by step."
lm_status lm_chat_add_cot(cJSON *conv, const char *cot);

/* The tokens that end an assistant's turn, without duplicates, at most cap:
 *   1. the template's end of turn: the special token that follows an assistant message in a
 *      rendering of [user, assistant] (after any whitespace; the contents as strings, else as
 *      lists of text parts): <|im_end|> for ChatML, <|eot_id|> for Llama 3, <end_of_turn> for
 *      Gemma, </s> for Zephyr... (none when the turn ends in text, or the template refuses);
 *   2. the config's eos_token, when the tokenizer has it as one token;
 *   3. the model's eos_token_id (cfg may be NULL), when inside the vocabulary.
 * (lm_generate also stops at the tokenizer's end-of-text token unless told otherwise.) */
lm_status lm_chat_stop_tokens(const lm_chat_config *cc, const lm_tokenizer *tok, const lm_config *cfg, int32_t *ids,
                              int cap, int *n);

#endif
