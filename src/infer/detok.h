/* detok.h — streaming detokenization: the text of generated tokens as they come.
 *
 * Decoding tokens one at a time is wrong for many real tokenizers: the
 * SentencePiece-style decoders (Llama 2, Mistral, Gemma: Metaspace, or
 * Replace "▁" -> " " then Strip) drop the leading space of the FIRST token
 * of what they decode, so "▁Hello" "▁world" decoded one by one gives
 * "Helloworld"; byte-fallback tokens (<0xE4> <0xB8> <0xAD>) form a character
 * only together. So the streamer decodes a short window of tokens with one
 * token of left context (the last prompt token at first) and emits what the
 * window's text gained since the last call, once it ends in complete UTF-8
 * (not in U+FFFD, which a byte-fallback decoder writes for a partial
 * character). The window restarts from the newest token every
 * LM_DETOK_WINDOW tokens, so each call decodes a bounded number of tokens.
 * The concatenation of everything emitted equals decode(context + generated)
 * minus decode(context) (tests/unit/test_detok.c, on real tokenizers).
 *
 *   lm_detok d;  lm_detok_init(&d, tok, last_prompt_token);
 *   for each sampled id:  lm_detok_push(&d, id, &text, &n);  emit(text, n);
 *   at the end:           lm_detok_flush(&d, &text, &n);     emit(text, n);
 *   lm_detok_free(&d); */
#ifndef LM_INFER_DETOK_H
#define LM_INFER_DETOK_H

#include <stddef.h>
#include <stdint.h>
#include "lmkit.h"

#define LM_DETOK_WINDOW 32

typedef struct {
  const lm_tokenizer *tok;
  uint32_t ids[2 * LM_DETOK_WINDOW + 1];  /* ids[0] the context token when has_ctx */
  int n, has_ctx;
  size_t base;        /* bytes of decode(context) */
  size_t printed;     /* bytes of the window's text after base already emitted */
  char *out; size_t cap;   /* the text returned by the last call */
} lm_detok;

/* ctx: the token before the first one pushed (the last prompt token), or -1 for none. */
lm_status lm_detok_init(lm_detok *d, const lm_tokenizer *tok, int64_t ctx);
/* Pushes one generated token; *text (owned by d, valid until the next call) and *n receive the text
 * now complete (possibly none). */
lm_status lm_detok_push(lm_detok *d, uint32_t id, const char **text, size_t *n);
/* The text still held back (an incomplete character at the very end), to emit when generation ends. */
lm_status lm_detok_flush(lm_detok *d, const char **text, size_t *n);
void lm_detok_free(lm_detok *d);

#endif
