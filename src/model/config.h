/* config.h — config.json, the Hugging Face model configuration (DESIGN.md §4).
 *
 * lm_config (lmkit.h) is one struct for every family; this module maps it to
 * and from each family's Hugging Face keys ("gpt2": n_embd, n_head...; "bert":
 * hidden_size, num_attention_heads...). Knobs our general block has but the
 * family's HF config has no key for (RMSNorm or post-LN in a GPT, ...) live in
 * an "lmkit" sub-object that transformers ignores. For "bert" the task head
 * (cfg.head) is read from and written as architectures[0]
 * (BertForPreTraining, BertForSequenceClassification, BertForTokenClassification,
 * BertForQuestionAnswering; BertModel / BertForMaskedLM read as pre-training),
 * num_labels from id2label (else num_labels, else label2id; written as
 * id2label/label2id with names LABEL_i), and share_layers lives in "lmkit".
 * lm_config_default and
 * lm_arch_name (which returns the HF model_type: "gpt2", "bert", ...) are
 * declared in lmkit.h and implemented in config.c. */
#ifndef LM_MODEL_CONFIG_H
#define LM_MODEL_CONFIG_H

#include <stddef.h>
#include "lmkit.h"

/* Parses a Hugging Face config.json (model_type "gpt2" or "bert") into cfg.
 * Unknown keys are ignored; missing keys take the family's HF defaults; wrong
 * types or impossible values are errors naming the file, key and value. */
lm_status lm_config_load(lm_config *cfg, const char *path);
lm_status lm_config_parse(lm_config *cfg, const char *json, size_t len, const char *path_for_errors);

/* Writes config.json atomically with the HF keys of cfg->arch, so that
 * transformers' from_pretrained accepts the directory. */
lm_status lm_config_save(const lm_config *cfg, const char *path);
/* The same JSON text, malloc'ed and NUL-terminated (free with free()). */
lm_status lm_config_to_json(const lm_config *cfg, char **json, size_t *len);

/* Sets the training dropout rates the way --dropout / --attn-dropout mean them: p on the
 * embeddings and residual branches where the family drops them (GPT-2, BERT, T5, BART; Llama drops
 * only attention) and on the FFN's activation where it drops that (T5; BART's activation_dropout),
 * p_attn (or p when p_attn < 0) on the attention probabilities. p < 0 leaves the
 * config's rates. Both must lie in [0, 1) (callers check their flags). */
void lm_config_set_dropout(lm_config *cfg, float p, float p_attn);

/* The checks parse applies, for configs built in code. */
lm_status lm_config_validate(const lm_config *cfg);

/* Label names (lm_config holds only num_labels, saved as LABEL_i): set rewrites id2label and
 * label2id of the config.json at path atomically; get returns n malloc'ed names (id2label[i],
 * or LABEL_i where absent), the array and each name to free(). */
lm_status lm_config_set_label_names(const char *path, const char *const *names, int64_t n);
lm_status lm_config_label_names(const char *path, int64_t n, char ***names);

#endif
