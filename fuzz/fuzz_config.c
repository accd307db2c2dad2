/* fuzz_config.c — libFuzzer target for the config.json parser.
 *
 * Parses the input; when it is accepted, the config must pass validation, and
 * writing it back out and parsing that must give the same config (the
 * save/load round trip lm_model_save relies on). Build with fuzz/build_model.sh. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "base/base.h"
#include "model/config.h"

static int same(const lm_config *a, const lm_config *b) {
  return a->arch == b->arch && a->vocab_size == b->vocab_size && a->n_positions == b->n_positions &&
         a->n_embd == b->n_embd && a->n_layer == b->n_layer && a->n_head == b->n_head &&
         (a->n_inner == b->n_inner || (a->arch == LM_ARCH_BERT && (a->n_inner ? a->n_inner : 4 * a->n_embd) ==
                                                                     (b->n_inner ? b->n_inner : 4 * b->n_embd))) &&
         a->norm == b->norm && !a->pre_ln == !b->pre_ln && a->act == b->act && !a->causal == !b->causal &&
         !a->bias == !b->bias && !a->tie_embeddings == !b->tie_embeddings && a->norm_eps == b->norm_eps &&
         a->init_std == b->init_std && a->bos_token_id == b->bos_token_id && a->eos_token_id == b->eos_token_id &&
         a->n_kv_head == b->n_kv_head && !a->qkv_bias == !b->qkv_bias && !a->glu == !b->glu && !a->rope == !b->rope &&
         a->rope_theta == b->rope_theta && !a->rope_scaling == !b->rope_scaling && a->rope_factor == b->rope_factor &&
         a->rope_low_freq_factor == b->rope_low_freq_factor && a->rope_high_freq_factor == b->rope_high_freq_factor &&
         a->rope_original_positions == b->rope_original_positions && a->sliding_window == b->sliding_window &&
         a->embd_pdrop == b->embd_pdrop && a->attn_pdrop == b->attn_pdrop && a->resid_pdrop == b->resid_pdrop &&
         a->act_pdrop == b->act_pdrop &&
         (a->n_eos > 1 ? b->n_eos == a->n_eos && !memcmp(a->eos_token_ids, b->eos_token_ids, a->n_eos * sizeof(int64_t))
                       : b->n_eos <= 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *buf = malloc(size ? size : 1);   /* not NUL-terminated on purpose */
  if (!buf) return 0;
  if (size) memcpy(buf, data, size);
  lm_config c;
  if (lm_config_parse(&c, buf, size, "fuzz") == LM_OK) {
    if (lm_config_validate(&c) != LM_OK) abort();
    char *json;
    size_t len;
    if (lm_config_to_json(&c, &json, &len) != LM_OK) abort();
    lm_config r;
    if (lm_config_parse(&r, json, len, "fuzz-roundtrip") != LM_OK || !same(&c, &r)) abort();
    free(json);
  }
  free(buf);
  return 0;
}
