/* encdec.h — decoding with an encoder-decoder (T5): the encoder runs once
 * over the input, then the decoder takes one token at a time with a
 * self-attention key/value cache, and every layer's cross-attention keys and
 * values are computed once from the encoder output. Each step's logits equal
 * a full forward of the model over the decoder prefix (tests/unit/test_encdec.c). */
#ifndef LM_INFER_ENCDEC_H
#define LM_INFER_ENCDEC_H

#include <stdint.h>
#include "lmkit.h"

typedef struct lm_encdec lm_encdec;

/* Encodes ids (S) once and prepares a decoder of up to max_len tokens. The model (pre-LN
 * encoder-decoder with an LM head) must outlive the decoder and is not changed. */
lm_status lm_encdec_init(lm_encdec **out, const lm_model *m, const int32_t *ids, int64_t S, int64_t max_len);
/* Feeds the next decoder token (the first is the model's decoder_start_token_id); *logits (V)
 * are the next token's, valid until the next call. */
lm_status lm_encdec_step(lm_encdec *e, int32_t id, const float **logits);
int64_t lm_encdec_pos(const lm_encdec *e);   /* decoder tokens fed so far */
/* For beam search (beam.c): a second decoder over the same encoding (nothing recomputed), and
 * dst's decoder state (its self-attention cache and position) made src's; dst a clone of src's. */
lm_status lm_encdec_clone(lm_encdec **out, const lm_encdec *src);
lm_status lm_encdec_copy(lm_encdec *dst, const lm_encdec *src);
void lm_encdec_free(lm_encdec *e);

/* lm_generate for encoder-decoders: the prompt (EOS appended when it lacks one; longer than the
 * model's positions, its first positions - 1 tokens are kept and the dropped count is told through
 * o->on_window) is the encoder's input; the decoder starts from decoder_start_token_id and samples
 * up to o->max_tokens tokens, ending at the model's EOS (o->stop_at_eot) or a stop token. */
lm_status lm_encdec_generate(const lm_model *m, const lm_tokenizer *tok, const char *prompt, const lm_gen_opts *o,
                             lm_piece_callback cb, void *user, lm_gen_stats *stats);

#endif
