/* ref_gguf.c — the C side of tests/reference/test_gguf.py: lmkit's GGUF block
 * code on files the test writes, so that numpy references can check it.
 *
 *   ref_gguf dequant FILE.gguf OUT.f32     every tensor of FILE, in file order, dequantized to f32
 *   ref_gguf quant TYPE IN.f32 OUT.bin     IN's floats quantized as TYPE (f32, f16, bf16, q8_0, q4_0)
 *
 * Exit status 0, or 1 with lmkit's error on stderr. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/base.h"
#include "model/gguf.h"

static int fail(void) { fprintf(stderr, "ref_gguf: %s\n", lm_last_error()); return 1; }

int main(int argc, char **argv) {
  if (argc == 4 && !strcmp(argv[1], "dequant")) {
    lm_gguf *g;
    if (lm_gguf_open(&g, argv[2])) return fail();
    FILE *f = fopen(argv[3], "wb");
    int rc = !f;
    for (int64_t i = 0; i < lm_gguf_n_tensors(g) && !rc; i++) {
      const lm_gguf_tensor *t = lm_gguf_tensor_at(g, i);
      float *y = malloc((size_t)t->numel * sizeof *y + 1);
      rc = lm_gguf_dequantize((int)t->type, t->data, t->nbytes, y, t->numel) ? fail() : 0;
      if (!rc && fwrite(y, sizeof *y, (size_t)t->numel, f) != (size_t)t->numel) rc = 1;
      free(y);
    }
    if (f && fclose(f)) rc = 1;
    lm_gguf_close(g);
    return rc;
  }
  if (argc == 5 && !strcmp(argv[1], "quant")) {
    int type = lm_ggml_type_by_name(argv[2]);
    char *in; size_t len;
    if (lm_read_file(argv[3], &in, &len)) return fail();
    int64_t n = (int64_t)(len / sizeof(float)), be = lm_ggml_block_elems(type);
    size_t bytes = be ? (size_t)(n / be) * lm_ggml_block_bytes(type) : 0;
    void *out = malloc(bytes + 1);
    float *x = malloc(len + 1);
    memcpy(x, in, len);
    int rc = lm_gguf_quantize(type, x, n, out) ? fail() : 0;
    if (!rc && lm_write_file_atomic(argv[4], out, bytes)) rc = fail();
    free(in); free(out); free(x);
    return rc;
  }
  fprintf(stderr, "usage: ref_gguf dequant FILE.gguf OUT.f32 | ref_gguf quant TYPE IN.f32 OUT.bin\n");
  return 2;
}
