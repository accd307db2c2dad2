/* fuzz_precompiled.c — libFuzzer target for the precompiled charsmap
 * (src/tokenizer/precompiled.c), a parser of untrusted bytes (base64 in
 * tokenizer.json, or a SentencePiece model's normalizer_spec).
 *
 * Input: a 4-byte little-endian length L, then L bytes of charsmap blob, then
 * text. An accepted blob normalizes the text under both rules (Hugging Face's
 * grapheme rule, SentencePiece's longest match); a corrupt trie may fail with a
 * clean error. Invariants (abort on a break): on success the output is
 * NUL-terminated at out_len; under SentencePiece's rule it is valid UTF-8;
 * under HF's it is valid UTF-8 whenever the text is. Built by
 * fuzz/build_unigram.sh. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "lmkit.h"
#include "tokenizer/precompiled.h"
#include "tokenizer/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 4) return 0;
  size_t l = (size_t)data[0] | (size_t)data[1] << 8 | (size_t)data[2] << 16 | (size_t)data[3] << 24;
  if (l > size - 4) l = size - 4;
  const uint8_t *blob = data + 4, *text = data + 4 + l;
  size_t tn = size - 4 - l;
  lm_precompiled *p;
  if (lm_precompiled_new(&p, blob, l, "fuzz")) return 0;
  int text_valid = lm_utf8_valid_prefix(text, tn) == tn;
  for (int rule = 0; rule < 2; rule++) {
    char *out; size_t on;
    if (lm_precompiled_normalize_as(p, (lm_precompiled_rule)rule, (const char *)text, tn, &out, &on)) continue;
    if (out[on] != 0) abort();
    if ((rule == LM_PRECOMPILED_SPM || text_valid) && lm_utf8_valid_prefix((const uint8_t *)out, on) != on) abort();
    free(out);
  }
  lm_precompiled_free(p);
  return 0;
}
