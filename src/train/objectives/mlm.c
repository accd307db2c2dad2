/* mlm.c — BERT's masked-language-model corruption (Devlin et al. 2018):
 * 15% of the tokens are chosen for prediction; of those 80% are replaced by
 * [MASK], 10% by a random token and 10% left unchanged, so that the model
 * cannot learn that only [MASK] positions matter. Called afresh for every
 * batch it gives RoBERTa's dynamic masking. */
#include "train/objectives/objectives.h"

int64_t lm_mlm_mask(lm_rng *rng, const lm_mlm_opts *o, int32_t *ids, const uint8_t *attn_mask, int32_t *labels, int64_t N) {
  int64_t chosen = 0;
  for (int64_t i = 0; i < N; i++) {
    labels[i] = -1;
    int32_t id = ids[i];
    if ((attn_mask && !attn_mask[i]) || (o->special && id >= 0 && id < o->vocab_size && o->special[id])) continue;
    if (lm_rng_uniform(rng) >= o->prob) continue;
    labels[i] = id;
    chosen++;
    float r = lm_rng_uniform(rng);
    if (r < 0.8f) {
      ids[i] = o->mask_id;
    } else if (r < 0.9f) {
      /* a random ordinary token: redraw the (few) specials */
      int32_t v;
      do v = (int32_t)lm_rng_below(rng, (uint32_t)o->vocab_size); while (o->special && o->special[v]);
      ids[i] = v;
    }
  }
  return chosen;
}
