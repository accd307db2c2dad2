/* fuzz_gguf.c — libFuzzer target for the GGUF reader (src/model/gguf.c) and the tokenizer
 * built from its tokenizer.ggml.* keys (gguf_model.c).
 *
 * Feeds the input, as a whole file image, to lm_gguf_open_mem (the parser lm_gguf_open runs over
 * its mmap). When it is accepted, every key, every array element, every tensor (dequantized when
 * small) and the typed getters are exercised, so the sanitizers see any read the validation
 * failed to bound; names must be found again, tensors must lie inside the buffer; then the
 * tokenizer keys are turned into a tokenizer, which must encode and decode. Build with
 * fuzz/build_model.sh. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "base/base.h"
#include "model/gguf.h"
#include "tokenizer/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint8_t *buf = malloc(size ? size : 1);   /* a private copy: a read past `size` is outside the block */
  if (!buf) return 0;
  if (size) memcpy(buf, data, size);
  lm_gguf *g = NULL;
  if (lm_gguf_open_mem(&g, buf, size, "fuzz") == LM_OK) {
    for (int64_t i = 0; i < lm_gguf_n_kv(g); i++) {
      const lm_gguf_kv *kv = lm_gguf_kv_at(g, i);
      if (lm_gguf_find_kv(g, kv->key) != kv) abort();   /* keys are unique */
      int64_t v; float f; const char *s; size_t n; const lm_gguf_kv *arr;
      (void)lm_gguf_get_int(g, kv->key, &v, 1);
      (void)lm_gguf_get_float(g, kv->key, &f, 1);
      (void)lm_gguf_get_str(g, kv->key, &s, &n, 1);
      if (lm_gguf_get_arr(g, kv->key, -1, &arr, 1) == LM_OK)
        for (uint64_t k = 0; k < arr->n; k++) {
          if (arr->arr_type == LM_GGUF_STR) {
            lm_gguf_arr_str(arr, k, &s, &n);
            if ((const uint8_t *)s < buf || (const uint8_t *)s + n > buf + size) abort();
          } else {
            (void)lm_gguf_arr_num(arr, k);
          }
        }
    }
    for (int64_t i = 0; i < lm_gguf_n_tensors(g); i++) {
      const lm_gguf_tensor *t = lm_gguf_tensor_at(g, i);
      if (lm_gguf_find_tensor(g, t->name) != i) abort();
      if (t->data < buf || t->nbytes > size || t->data + t->nbytes > buf + size) abort();
      if (t->numel <= (1 << 16)) {
        float *y = malloc((size_t)t->numel * sizeof *y + 1);
        if (y && lm_gguf_dequantize((int)t->type, t->data, t->nbytes, y, t->numel) != LM_OK) abort();
        free(y);
      }
    }
    lm_tokenizer *tok = NULL;
    if (lm_gguf_tokenizer_from(&tok, g) == LM_OK) {
      uint32_t *ids = NULL; size_t nids = 0;
      if (lm_tokenizer_encode(tok, "hello world<|endoftext|>", 24, 1, &ids, &nids) == LM_OK) {
        char *text = NULL; size_t len;
        if (lm_tokenizer_decode(tok, ids, nids, &text, &len) == LM_OK) free(text);
        free(ids);
      }
      lm_tokenizer_free(tok);
    }
    lm_gguf_close(g);
  }
  free(buf);
  return 0;
}
