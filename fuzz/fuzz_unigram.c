/* fuzz_unigram.c — libFuzzer target for the Unigram model's tokenizer.json
 * reader and its Viterbi encoder (src/tokenizer/unigram.c).
 *
 * First byte even: the rest is parsed as a tokenizer.json. Odd: a Unigram model
 * is built from the input, so the fuzzer reaches the encoder: up to the first
 * 0xFF byte, '\n'-separated pieces (cut to valid UTF-8) with scores taken from
 * their bytes, <unk> as piece 0 when bit 1 of the first byte is set,
 * byte_fallback when bit 2 is; after it, the text to encode. An accepted model
 * encodes the text (the model alone and the whole tokenizer), every id must be
 * in range, decoding must succeed, and tokenizer.json must round-trip to the
 * same text. Built by fuzz/build_unigram.sh. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "lmkit.h"
#include "tokenizer/tokenizer.h"

static char *model_json(const uint8_t *data, size_t n, int unk, int byte_fallback) {
  cJSON *root = cJSON_CreateObject(), *model = cJSON_AddObjectToObject(root, "model");
  cJSON_AddStringToObject(model, "type", "Unigram");
  cJSON *vocab = cJSON_AddArrayToObject(model, "vocab");
  if (unk) {
    cJSON *pair = cJSON_CreateArray();
    cJSON_AddItemToArray(pair, cJSON_CreateString("<unk>"));
    cJSON_AddItemToArray(pair, cJSON_CreateNumber(0));
    cJSON_AddItemToArray(vocab, pair);
    cJSON_AddNumberToObject(model, "unk_id", 0);
  }
  char piece[256];
  for (size_t i = 0; i < n;) {
    const uint8_t *nl = memchr(data + i, '\n', n - i);
    size_t j = nl ? (size_t)(nl - data) : n, m = j - i < 255 ? j - i : 255;
    m = lm_utf8_valid_prefix(data + i, m);
    memcpy(piece, data + i, m); piece[m] = 0;
    if (!memchr(piece, 0, m)) {
      double score = 0;
      for (size_t k = 0; k < m; k++) score -= (double)(data[i + k] % 13) / 3.0;
      cJSON *pair = cJSON_CreateArray();
      cJSON_AddItemToArray(pair, cJSON_CreateString(piece));
      cJSON_AddItemToArray(pair, cJSON_CreateNumber(score));
      cJSON_AddItemToArray(vocab, pair);
    }
    i = j + 1;
  }
  cJSON_AddBoolToObject(model, "byte_fallback", byte_fallback);
  char *s = cJSON_PrintUnformatted(root);
  cJSON_Delete(root);
  return s;
}

static void exercise(const lm_tokenizer *t, const char *text, size_t tn) {
  lm_tok_encoder *e;
  if (lm_tok_encoder_init(&e, t)) abort();
  uint32_t *ids = NULL; size_t n = 0, cap = 0;
  if (tn && !t->ops->encode(e, text, tn, &ids, &n, &cap)) {
    for (size_t i = 0; i < n; i++) if ((int64_t)ids[i] >= t->n_vocab) abort();
    char *d; size_t dn;
    if (lm_tokenizer_decode(t, ids, n, &d, &dn)) abort();
    free(d);
  }
  free(ids);
  lm_tok_encoder_free(e);
  uint32_t *all; size_t na;
  if (!lm_tokenizer_encode(t, text, tn, 0, &all, &na)) {
    for (size_t i = 0; i < na; i++) if ((int64_t)all[i] >= t->n_vocab) abort();
    free(all);
  }
  char *a, *b; size_t an, bn;
  if (lm_tokenizer_to_json(t, &a, &an)) return;
  lm_tokenizer *u;
  if (lm_tokenizer_from_json(&u, a, an, "round trip")) { fprintf(stderr, "%s\n", lm_last_error()); abort(); }
  if (lm_tokenizer_to_json(u, &b, &bn) || an != bn || memcmp(a, b, an)) abort();
  free(a); free(b);
  lm_tokenizer_free(u);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  lm_tokenizer *t = NULL;
  static const char TEXT[] = "\xe2\x96\x81hello\xe2\x96\x81w\xc3\xb6rld \xf0\x9f\x99\x82 \xff<unk>";
  if (!(data[0] & 1)) {
    if (!lm_tokenizer_from_json(&t, (const char *)data + 1, size - 1, "fuzz")) {
      if (t->ops == &lm_unigram_ops) exercise(t, TEXT, sizeof TEXT - 1);
      lm_tokenizer_free(t);
    }
    return 0;
  }
  const uint8_t *sep = memchr(data + 1, 0xFF, size - 1);
  size_t pn = sep ? (size_t)(sep - data - 1) : size - 1;
  char *json = model_json(data + 1, pn, data[0] & 2, (data[0] & 4) != 0);
  if (json && !lm_tokenizer_from_json(&t, json, strlen(json), "fuzz")) {
    const char *text = sep ? (const char *)sep + 1 : TEXT;
    size_t tn = sep ? size - pn - 2 : sizeof TEXT - 1;
    exercise(t, text, tn);
    lm_tokenizer_free(t);
  }
  free(json);
  return 0;
}
