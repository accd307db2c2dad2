/* test_gguf.c — the GGUF reader and writer (src/model/gguf.c) and the model loader's refusals
 * (gguf_model.c).
 *
 * Golden bytes: a tiny file (three keys of different types, one F32 tensor) whose every byte
 * this test states, as lmkit writes it and reads it back. Bad input: the golden file cut at every
 * length, and one mutation per check (magic, version, counts, string lengths, value types,
 * nested arrays, duplicate keys, dimensions, tensor type, offsets) each refused with a message;
 * models missing keys or tensors, unknown architectures and tokenizers, extra tensors. The
 * block formats themselves are checked against numpy in tests/reference/test_gguf.py. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "base/base.h"
#include "model/gguf.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

/* the file lm_gguf_write makes of: k = u32 7, s = "ab", a = [1, -1] (i32), tensor t = F32 {1, -2} */
static const uint8_t GOLDEN[192] = {
    'G', 'G', 'U', 'F', 3, 0, 0, 0,                  /* magic, version 3 */
    1, 0, 0, 0, 0, 0, 0, 0,                          /* 1 tensor */
    3, 0, 0, 0, 0, 0, 0, 0,                          /* 3 keys */
    1, 0, 0, 0, 0, 0, 0, 0, 'k', 4, 0, 0, 0, 7, 0, 0, 0,                     /* k: u32 7 */
    1, 0, 0, 0, 0, 0, 0, 0, 's', 8, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 'a', 'b', /* s: string "ab" */
    1, 0, 0, 0, 0, 0, 0, 0, 'a', 9, 0, 0, 0, 5, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0,
    1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff,              /* a: array of 2 i32: 1, -1 */
    1, 0, 0, 0, 0, 0, 0, 0, 't', 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0,       /* t: 1 dim, ne 2 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,              /* type F32, offset 0 */
    [160] = 0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0,         /* data at 160 (32-aligned): 1.0f, -2.0f */
};
#define AT_VERSION 4
#define AT_NT 8
#define AT_NKV 16
#define AT_K_TYPE 33
#define AT_S_KEY 49
#define AT_S_LEN 54
#define AT_A_ELEM 77
#define AT_T_NDIMS 106
#define AT_T_NE 110
#define AT_T_TYPE 118
#define AT_T_OFF 122

static char g_dir[64];
static void setup(void) {
  strcpy(g_dir, "/tmp/lm_gguf_test_XXXXXX");
  cr_assert_not_null(mkdtemp(g_dir));
}
static void teardown(void) {
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
  cr_assert_eq(system(cmd), 0);
}
TestSuite(gguf, .init = setup, .fini = teardown);

static char *path_of(const char *name) {
  static char p[128];
  snprintf(p, sizeof p, "%s/%s", g_dir, name);
  return p;
}

Test(gguf, golden_bytes_written_and_read) {
  lm_gguf_writer *w;
  cr_assert_eq(lm_gguf_writer_new(&w), LM_OK);
  int32_t a[2] = {1, -1};
  float t[2] = {1.0f, -2.0f};
  int64_t ne[1] = {2};
  cr_assert_eq(lm_gguf_w_u32(w, "k", 7), LM_OK);
  cr_assert_eq(lm_gguf_w_str(w, "s", "ab", 2), LM_OK);
  cr_assert_eq(lm_gguf_w_arr_i32(w, "a", a, 2), LM_OK);
  cr_assert_eq(lm_gguf_w_tensor(w, "t", 1, ne, LM_GGML_F32, t, 0), LM_OK);
  cr_assert_eq(lm_gguf_write(w, path_of("g.gguf"), 0), LM_OK, "%s", lm_last_error());
  lm_gguf_writer_free(w);
  char *data; size_t len;
  cr_assert_eq(lm_read_file(path_of("g.gguf"), &data, &len), LM_OK);
  cr_assert_eq(len, sizeof GOLDEN);
  for (size_t i = 0; i < len; i++) cr_assert_eq((uint8_t)data[i], GOLDEN[i], "byte %zu: %02x, expected %02x", i, (uint8_t)data[i], GOLDEN[i]);
  free(data);

  lm_gguf *g;
  cr_assert_eq(lm_gguf_open(&g, path_of("g.gguf")), LM_OK, "%s", lm_last_error());
  int64_t v = 0;
  const char *s; size_t n;
  const lm_gguf_kv *arr;
  cr_assert_eq(lm_gguf_get_int(g, "k", &v, 1), LM_OK);
  cr_assert_eq(v, 7);
  cr_assert_eq(lm_gguf_get_str(g, "s", &s, &n, 1), LM_OK);
  cr_assert(n == 2 && !memcmp(s, "ab", 2));
  cr_assert_eq(lm_gguf_get_arr(g, "a", LM_GGUF_I32, &arr, 1), LM_OK);
  cr_assert(arr->n == 2 && lm_gguf_arr_num(arr, 0) == 1 && lm_gguf_arr_num(arr, 1) == -1);
  cr_assert_eq(lm_gguf_n_tensors(g), 1);
  const lm_gguf_tensor *tt = lm_gguf_tensor_at(g, 0);
  float y[2];
  cr_assert_eq(lm_gguf_dequantize((int)tt->type, tt->data, tt->nbytes, y, tt->numel), LM_OK);
  cr_assert(y[0] == 1.0f && y[1] == -2.0f);
  /* typed getters name the key */
  cr_assert_neq(lm_gguf_get_str(g, "k", &s, &n, 1), LM_OK);
  cr_assert(strstr(lm_last_error(), "'k'") && strstr(lm_last_error(), "u32"), "%s", lm_last_error());
  cr_assert_neq(lm_gguf_get_int(g, "nope", &v, 1), LM_OK);
  cr_assert(strstr(lm_last_error(), "missing key 'nope'"), "%s", lm_last_error());
  cr_assert_eq(lm_gguf_get_int(g, "nope", &v, 0), LM_OK);
  cr_assert_neq(lm_gguf_get_arr(g, "a", LM_GGUF_STR, &arr, 1), LM_OK);
  lm_gguf_close(g);
}

/* opening bytes fails with a message containing `want` */
static void refused(const uint8_t *b, size_t n, const char *want) {
  lm_gguf *g = NULL;
  lm_status st = lm_gguf_open_mem(&g, b, n, "bad.gguf");
  cr_assert_neq(st, LM_OK, "accepted (expected: %s)", want);
  cr_assert_null(g);
  cr_assert(strstr(lm_last_error(), "bad.gguf"), "%s", lm_last_error());
  cr_assert(strstr(lm_last_error(), want), "'%s' does not say '%s'", lm_last_error(), want);
}

static void mutate(size_t at, const void *v, size_t n, const char *want) {
  uint8_t b[sizeof GOLDEN];
  memcpy(b, GOLDEN, sizeof b);
  memcpy(b + at, v, n);
  refused(b, sizeof b, want);
}

Test(gguf, truncated_at_every_length) {
  for (size_t n = 0; n < sizeof GOLDEN; n++) {
    uint8_t *b = malloc(n + 1);   /* its own allocation: ASan sees any read past n */
    memcpy(b, GOLDEN, n);
    lm_gguf *g = NULL;
    lm_status st = lm_gguf_open_mem(&g, b, n, "cut.gguf");
    if (n < 168) cr_assert_neq(st, LM_OK, "a file cut at %zu bytes was accepted", n);
    else cr_assert_eq(st, LM_OK, "cut at %zu (only padding missing): %s", n, lm_last_error());   /* the data ends at 168 */
    lm_gguf_close(g);
    free(b);
  }
}

Test(gguf, corrupt_headers) {
  uint64_t huge = (uint64_t)1 << 60;
  uint32_t u;
  mutate(0, "GGUG", 4, "not a GGUF file");
  u = 2; mutate(AT_VERSION, &u, 4, "version 2 is not supported");
  u = 0x03000000; mutate(AT_VERSION, &u, 4, "big-endian");
  mutate(AT_NKV, &huge, 8, "key/value pairs cannot fit");
  mutate(AT_NT, &huge, 8, "tensor infos cannot fit");
  uint64_t nkv = 4; mutate(AT_NKV, &nkv, 8, "bad.gguf");   /* reads the tensor info as a key: refused somewhere */
  u = 13; mutate(AT_K_TYPE, &u, 4, "unknown value type 13");
  mutate(AT_S_LEN, &huge, 8, "truncated");
  u = LM_GGUF_ARR; mutate(AT_A_ELEM, &u, 4, "array element type 9");
  mutate(AT_S_KEY, "k", 1, "key 'k' appears twice");
}

Test(gguf, corrupt_tensor_infos) {
  uint32_t u;
  uint64_t q;
  u = 0; mutate(AT_T_NDIMS, &u, 4, "0 dimensions");
  u = 5; mutate(AT_T_NDIMS, &u, 4, "5 dimensions");
  q = 9; mutate(AT_T_NE, &q, 8, "past the end of the data");
  q = (uint64_t)1 << 45; mutate(AT_T_NE, &q, 8, "too large");
  u = 99; mutate(AT_T_TYPE, &u, 4, "ggml tensor type 99 is not supported");
  u = LM_GGML_Q8_0; mutate(AT_T_TYPE, &u, 4, "not whole Q8_0 blocks");
  q = 32; mutate(AT_T_OFF, &q, 8, "past the end of the data");
  q = 4; mutate(AT_T_OFF, &q, 8, "not a multiple of the alignment");
  q = (uint64_t)-32; mutate(AT_T_OFF, &q, 8, "past the end of the data");
}

Test(gguf, f16_round_trips_every_value) {
  for (uint32_t h = 0; h < 65536; h++) {
    if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) continue;   /* NaNs */
    float f = lm_f16_to_f32((uint16_t)h);
    cr_assert_eq(lm_f32_to_f16(f), h, "f16 %04x -> %g -> %04x", h, (double)f, lm_f32_to_f16(f));
  }
  cr_assert_eq(lm_f32_to_f16(65520.0f), 0x7c00);      /* rounds up to infinity */
  cr_assert_eq(lm_f32_to_f16(65519.0f), 0x7bff);
  cr_assert_eq(lm_f32_to_f16(1.0f + 0x1p-11f), 0x3c00);   /* a tie: to even */
}

/* ---- models */

/* a GGUF with the given keys (NULL-terminated name/value strings: "u32:" / "str:" / "f32:" / "strs:a,b" prefixes) and tensors */
static void write_model(const char *name, const char *const *kv, const char *const *tensors, int64_t rows) {
  lm_gguf_writer *w;
  cr_assert_eq(lm_gguf_writer_new(&w), LM_OK);
  for (int i = 0; kv && kv[i]; i += 2) {
    const char *v = kv[i + 1];
    if (!strncmp(v, "u32:", 4)) cr_assert_eq(lm_gguf_w_u32(w, kv[i], (uint32_t)atoi(v + 4)), LM_OK);
    else if (!strncmp(v, "f32:", 4)) cr_assert_eq(lm_gguf_w_f32(w, kv[i], (float)atof(v + 4)), LM_OK);
    else if (!strncmp(v, "strs:", 5)) {   /* an array of strings, comma-separated */
      const char *s[8]; size_t len[8]; int n = 0;
      for (const char *p = v + 5; n < 8; p += len[n++] + 1) {
        s[n] = p; len[n] = strcspn(p, ",");
        if (!p[len[n]]) { n++; break; }
      }
      cr_assert_eq(lm_gguf_w_arr_str(w, kv[i], s, len, (uint64_t)n), LM_OK);
    } else cr_assert_eq(lm_gguf_w_str(w, kv[i], v + 4, strlen(v + 4)), LM_OK);
  }
  static float zeros[64 * 64];
  for (int i = 0; tensors && tensors[i]; i++) {
    int64_t ne[2] = {32, rows};
    cr_assert_eq(lm_gguf_w_tensor(w, tensors[i], 2, ne, LM_GGML_F32, zeros, 0), LM_OK);
  }
  cr_assert_eq(lm_gguf_write(w, path_of(name), 0), LM_OK, "%s", lm_last_error());
  lm_gguf_writer_free(w);
}

static void model_refused(const char *name, const char *want) {
  lm_model *m = NULL;
  cr_assert_neq(lm_model_load(&m, path_of(name)), LM_OK, "%s was accepted", name);
  cr_assert_null(m);
  cr_assert(strstr(lm_last_error(), want), "'%s' does not say '%s'", lm_last_error(), want);
}

#define LLAMA_KEYS \
  "general.architecture", "str:llama", "llama.context_length", "u32:16", "llama.embedding_length", "u32:32", \
  "llama.block_count", "u32:1", "llama.feed_forward_length", "u32:64", "llama.attention.head_count", "u32:2", \
  "llama.attention.layer_norm_rms_epsilon", "f32:1e-5"

Test(gguf, models_refused) {
  static const char *const arch_only[] = {"general.architecture", "str:llama", NULL};
  write_model("a.gguf", arch_only, NULL, 8);
  model_refused("a.gguf", "missing key 'llama.context_length'");
  static const char *const bert[] = {"general.architecture", "str:bert", NULL};
  write_model("b.gguf", bert, NULL, 8);
  model_refused("b.gguf", "general.architecture \"bert\" is not supported");
  static const char *const keys[] = {LLAMA_KEYS, NULL};
  write_model("c.gguf", keys, NULL, 8);
  model_refused("c.gguf", "missing tensor 'token_embd.weight'");
  static const char *const some[] = {"token_embd.weight", NULL};
  write_model("d.gguf", keys, some, 8);
  model_refused("d.gguf", "missing tensor 'blk.0.attn_norm.weight'");
  static const char *const scaling[] = {LLAMA_KEYS, "llama.rope.scaling.type", "str:linear", NULL};
  write_model("e.gguf", scaling, some, 8);
  model_refused("e.gguf", "key 'llama.rope.scaling.type' is not supported");
  static const char *const tokkey[] = {LLAMA_KEYS, "tokenizer.ggml.whatever", "u32:1", NULL};
  write_model("f.gguf", tokkey, some, 8);
  model_refused("f.gguf", "key 'tokenizer.ggml.whatever' is not supported");
  /* a whole 1-layer llama plus one tensor too many */
  static const char *const full[] = {"token_embd.weight", "output.weight", "blk.0.attn_q.weight", "blk.0.attn_k.weight",
                                     "blk.0.attn_v.weight", "blk.0.attn_output.weight", "blk.0.ffn_gate.weight",
                                     "blk.0.ffn_up.weight", "rope_freqs.weight", NULL};
  lm_gguf_writer *w;
  cr_assert_eq(lm_gguf_writer_new(&w), LM_OK);
  for (int i = 0; keys[i]; i += 2) {
    const char *v = keys[i + 1];
    if (!strncmp(v, "u32:", 4)) lm_gguf_w_u32(w, keys[i], (uint32_t)atoi(v + 4));
    else if (!strncmp(v, "f32:", 4)) lm_gguf_w_f32(w, keys[i], (float)atof(v + 4));
    else lm_gguf_w_str(w, keys[i], v + 4, strlen(v + 4));
  }
  static float z[64 * 64];
  int64_t emb[2] = {32, 8}, sq[2] = {32, 32}, up[2] = {32, 64}, down[2] = {64, 32}, one[1] = {32};
  const int64_t *shape[] = {emb, emb, sq, sq, sq, sq, up, up, sq};
  for (int i = 0; full[i]; i++) lm_gguf_w_tensor(w, full[i], 2, shape[i], LM_GGML_F32, z, 0);
  lm_gguf_w_tensor(w, "blk.0.ffn_down.weight", 2, down, LM_GGML_F32, z, 0);
  lm_gguf_w_tensor(w, "blk.0.attn_norm.weight", 1, one, LM_GGML_F32, z, 0);
  lm_gguf_w_tensor(w, "blk.0.ffn_norm.weight", 1, one, LM_GGML_F32, z, 0);
  lm_gguf_w_tensor(w, "output_norm.weight", 1, one, LM_GGML_F32, z, 0);
  cr_assert_eq(lm_gguf_write(w, path_of("g.gguf"), 0), LM_OK, "%s", lm_last_error());
  lm_gguf_writer_free(w);
  model_refused("g.gguf", "unexpected tensor 'rope_freqs.weight'");
  /* and its tokenizer is refused for want of keys */
  lm_tokenizer *tok = NULL;
  cr_assert_neq(lm_gguf_tokenizer_load(&tok, path_of("g.gguf")), LM_OK);
  cr_assert(strstr(lm_last_error(), "missing key 'tokenizer.ggml.model'"), "%s", lm_last_error());
}

Test(gguf, tokenizers_refused) {
  static const char *const bert[] = {"general.architecture", "str:llama", "tokenizer.ggml.model", "str:bert", NULL};
  write_model("s.gguf", bert, NULL, 8);
  lm_tokenizer *tok = NULL;
  cr_assert_neq(lm_gguf_tokenizer_load(&tok, path_of("s.gguf")), LM_OK);
  cr_assert(strstr(lm_last_error(), "tokenizer.ggml.model \"bert\" is not supported"), "%s", lm_last_error());
  static const char *const pre[] = {"tokenizer.ggml.model", "str:gpt2", "tokenizer.ggml.pre", "str:deepseek-llm", NULL};
  write_model("p.gguf", pre, NULL, 8);
  cr_assert_neq(lm_gguf_tokenizer_load(&tok, path_of("p.gguf")), LM_OK);
  cr_assert(strstr(lm_last_error(), "tokenizer.ggml.pre \"deepseek-llm\" is not supported"), "%s", lm_last_error());
  /* SentencePiece ("llama"): its merges follow the scores, which must be there; merges are not read */
  static const char *const noscores[] = {"tokenizer.ggml.model", "str:llama", "tokenizer.ggml.tokens", "strs:a,b,ab",
                                         "tokenizer.ggml.add_bos_token", "u32:0", NULL};
  write_model("n.gguf", noscores, NULL, 8);
  cr_assert_neq(lm_gguf_tokenizer_load(&tok, path_of("n.gguf")), LM_OK);
  cr_assert(strstr(lm_last_error(), "needs tokenizer.ggml.scores"), "%s", lm_last_error());
  static const char *const withmerges[] = {"tokenizer.ggml.model", "str:llama", "tokenizer.ggml.tokens", "strs:a,b,ab", "tokenizer.ggml.add_bos_token", "u32:0",
                                           "tokenizer.ggml.merges", "strs:a b", NULL};
  write_model("m.gguf", withmerges, NULL, 8);
  cr_assert_neq(lm_gguf_tokenizer_load(&tok, path_of("m.gguf")), LM_OK);
  cr_assert(strstr(lm_last_error(), "tokenizer.ggml.merges in a \"llama\""), "%s", lm_last_error());
  static const char *const notok[] = {"tokenizer.ggml.model", "str:gpt2", "tokenizer.ggml.pre", "str:gpt-2", NULL};
  write_model("t.gguf", notok, NULL, 8);
  cr_assert_neq(lm_gguf_tokenizer_load(&tok, path_of("t.gguf")), LM_OK);
  cr_assert(strstr(lm_last_error(), "missing key 'tokenizer.ggml.tokens'"), "%s", lm_last_error());
}
