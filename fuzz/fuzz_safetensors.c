/* fuzz_safetensors.c — libFuzzer target for the safetensors reader and the
 * sharded index (model.safetensors.index.json) parser.
 *
 * Feeds the input, as a whole file image, to lm_st_open_mem (the same parser
 * lm_st_open runs over its mmap). When a header validates, every accessor and
 * every small tensor's conversion (plain and transposed) is exercised too, so
 * the sanitizers see any read the validation failed to bound. Build with
 * fuzz/build_model.sh. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "base/base.h"
#include "model/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* a private copy, so a read past `size` lands outside the heap block ASan tracks */
  uint8_t *buf = malloc(size ? size : 1);
  if (!buf) return 0;
  if (size) memcpy(buf, data, size);
  lm_st_file *f = NULL;
  if (lm_st_open_mem(&f, buf, size, "fuzz") == LM_OK) {
    (void)lm_st_meta(f, "format");
    for (int i = 0; i < lm_st_count(f); i++) {
      const char *name = lm_st_name(f, i);
      if (lm_st_find(f, name) != i) abort();          /* names are unique */
      const int64_t *shape = lm_st_shape(f, i);
      int nd = lm_st_ndim(f, i);
      int64_t numel = lm_st_numel(f, i);
      size_t nbytes;
      (void)lm_st_data(f, i, &nbytes);
      (void)lm_st_dtype(f, i);
      if (numel > (1 << 16)) continue;                  /* keep runs fast */
      float *dst = malloc((size_t)(numel ? numel : 1) * sizeof *dst);
      if (!dst) break;
      lm_status st = lm_st_read_f32(f, i, dst, shape, nd, 0);
      if (st == LM_OK && nd == 2) st = lm_st_read_f32(f, i, dst, NULL, 0, 1);
      free(dst);
      (void)st;
    }
    lm_st_close(f);
  }
  /* the same bytes as a sharded index: every accepted entry is found, names are sorted and unique */
  lm_st_index x;
  if (lm_st_index_parse(&x, (const char *)buf, size, "fuzz") == LM_OK) {
    for (int64_t e = 0; e < x.n_entries; e++) {
      if (lm_st_index_find(&x, x.names[e]) != e) abort();
      if (x.file_of[e] < 0 || x.file_of[e] >= x.n_files) abort();
      if (e && strcmp(x.names[e - 1], x.names[e]) >= 0) abort();
    }
    lm_st_index_free(&x);
  }
  free(buf);
  return 0;
}
