/* family.c — the registry of model families: one line per family file in
 * src/model/families/. Everything else finds a family here, by lm_config's
 * arch, by config.json's model_type, or by an architectures class name. */
#include <string.h>
#include "model/family.h"

extern const lm_family lm_family_gpt2, lm_family_bert, lm_family_llama, lm_family_mistral, lm_family_qwen2, lm_family_t5,
    lm_family_bart;
extern const lm_family lm_family_rnn, lm_family_lstm, lm_family_ngram;   /* src/model/classic/ */

static const lm_family *const registry[] = {
    &lm_family_gpt2,
    &lm_family_bert,
    &lm_family_llama,
    &lm_family_mistral,
    &lm_family_qwen2,
    &lm_family_t5,
    &lm_family_bart,
    &lm_family_rnn,
    &lm_family_lstm,
    &lm_family_ngram,
};
#define N_FAMILIES ((int)(sizeof registry / sizeof *registry))

int lm_family_count(void) { return N_FAMILIES; }
const lm_family *lm_family_at(int i) { return i >= 0 && i < N_FAMILIES ? registry[i] : NULL; }

const lm_family *lm_family_of(const lm_config *c) {
  for (int i = 0; i < N_FAMILIES; i++)
    if (registry[i]->arch == c->arch) return registry[i];
  return NULL;
}

const lm_family *lm_family_by_type(const char *model_type) {
  for (int i = 0; i < N_FAMILIES; i++)
    if (!strcmp(registry[i]->model_type, model_type)) return registry[i];
  return NULL;
}

const lm_family *lm_family_by_class(const char *hf_class) {
  for (int i = 0; i < N_FAMILIES; i++)
    if (!strncmp(hf_class, registry[i]->class_prefix, strlen(registry[i]->class_prefix))) return registry[i];
  return NULL;
}

const char *lm_family_list(void) {
  static char list[256];   /* the registry is constant: so is this text */
  if (!list[0]) {
    size_t n = 0;
    for (int i = 0; i < N_FAMILIES && n < sizeof list; i++)
      n += (size_t)snprintf(list + n, sizeof list - n, "%s%s", i ? ", " : "", registry[i]->model_type);
  }
  return list;
}

const char *lm_family_class_for(const lm_family *f, int head) {
  for (int i = 0; f && i < f->n_classes; i++)
    if (f->classes[i].head == head) return f->classes[i].hf_class;
  return NULL;
}

int lm_family_head_of(const lm_family *f, const char *hf_class, int *headless) {
  for (int i = 0; i < f->n_classes; i++)
    if (!strcmp(f->classes[i].hf_class, hf_class)) {
      if (headless) *headless = f->classes[i].headless;
      return f->classes[i].head;
    }
  return -1;
}

void lm_family_class_list(const lm_family *f, char *out, size_t n) {
  size_t k = 0;
  out[0] = 0;
  for (int i = 0; i < f->n_classes && k < n; i++) {
    int dup = 0;
    for (int j = 0; j < i; j++) dup |= !strcmp(f->classes[j].hf_class, f->classes[i].hf_class);
    if (!dup) k += (size_t)snprintf(out + k, n - k, "%s%s", k ? ", " : "", f->classes[i].hf_class);
  }
}
