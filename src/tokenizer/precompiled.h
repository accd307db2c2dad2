/* precompiled.h — SentencePiece's precompiled character map (the normalizer
 * tokenizer.json calls "Precompiled"; normalizer_spec.precompiled_charsmap in
 * a SentencePiece model proto).
 *
 * The blob is: a little-endian u32 giving the byte size of a Darts-clone
 * double-array trie (u32 units), the trie, then a pool of NUL-terminated
 * replacement strings that the trie's values index. Normalizing walks the
 * text and replaces what the trie finds by its string, else copies the
 * character. Hugging Face and SentencePiece use the map differently (HF works
 * on grapheme clusters and takes the shortest key; SentencePiece takes the
 * longest key anywhere): precompiled.c describes both, and both are exact.
 *
 * The blob is untrusted input: lm_precompiled_new checks it and every trie
 * access is bounds-checked, so a corrupt blob is an error, never a crash. */
#ifndef LM_PRECOMPILED_H
#define LM_PRECOMPILED_H

#include <stddef.h>
#include <stdint.h>
#include "base/base.h"

typedef struct lm_precompiled lm_precompiled;

/* Parses a charsmap blob (copied; the caller keeps blob). `where` names it in errors. */
lm_status lm_precompiled_new(lm_precompiled **out, const uint8_t *blob, size_t n, const char *where);
/* Normalizes in[0..n) into a malloc'ed, NUL-terminated *out of *out_len bytes. */
lm_status lm_precompiled_normalize(const lm_precompiled *p, const char *in, size_t n, char **out, size_t *out_len);
void lm_precompiled_free(lm_precompiled *p);

/* The same under a chosen rule: Hugging Face's (what lm_precompiled_normalize does) or
 * SentencePiece's own (for text a SentencePiece model is to encode exactly as the sentencepiece
 * library does; its whitespace rules are not part of the map and are not applied here). */
typedef enum { LM_PRECOMPILED_HF, LM_PRECOMPILED_SPM } lm_precompiled_rule;
lm_status lm_precompiled_normalize_as(const lm_precompiled *p, lm_precompiled_rule rule, const char *in, size_t n,
                                      char **out, size_t *out_len);

#endif
