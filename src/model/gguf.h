/* gguf.h — GGUF v3, llama.cpp's single-file model format (ggml's docs/gguf.md), read and written.
 *
 * Layout (all little-endian):
 *   "GGUF" u32 version(3) u64 n_tensors u64 n_kv
 *   n_kv x  { string key, u32 value_type, value }        string = u64 length + bytes (no NUL)
 *   n_tensors x { string name, u32 n_dims, u64 ne[n_dims], u32 ggml_type, u64 offset }
 *   padding to `general.alignment` (default 32), then the data: each tensor at data + offset,
 *   offsets multiples of the alignment. ne[0] is the contiguous dimension: a row-major (out, in)
 *   matrix, lmkit's layout of linear weights, has ne = [in, out].
 *
 * Reading memory-maps the file and validates everything up front (counts against the bytes left,
 * string lengths, value and tensor types, dimensions and their product, offsets and sizes inside
 * the data, overlaps, duplicate keys and names), so that afterwards every accessor is a plain
 * bounds-safe lookup. Tensors are dequantized to f32 exactly as ggml defines its blocks:
 * F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K. Writing builds the metadata in memory and
 * streams the tensors, converted or quantized (F32, F16, Q8_0, Q4_0), into an atomic file. */
#ifndef LM_MODEL_GGUF_H
#define LM_MODEL_GGUF_H

#include <stddef.h>
#include <stdint.h>
#include "lmkit.h"
#include "kernels/quant.h"   /* lm_f16_to_f32, lm_f32_to_f16 */

#define LM_GGUF_MAX_DIMS 4

/* metadata value types */
typedef enum {
  LM_GGUF_U8 = 0, LM_GGUF_I8, LM_GGUF_U16, LM_GGUF_I16, LM_GGUF_U32, LM_GGUF_I32, LM_GGUF_F32, LM_GGUF_BOOL,
  LM_GGUF_STR, LM_GGUF_ARR, LM_GGUF_U64, LM_GGUF_I64, LM_GGUF_F64, LM_GGUF_NTYPES
} lm_gguf_vtype;

/* ggml tensor types lmkit reads (the numbers are ggml's) */
typedef enum {
  LM_GGML_F32 = 0, LM_GGML_F16 = 1, LM_GGML_Q4_0 = 2, LM_GGML_Q8_0 = 8, LM_GGML_Q4_K = 12, LM_GGML_Q5_K = 13,
  LM_GGML_Q6_K = 14, LM_GGML_BF16 = 30
} lm_ggml_type;

/* "q8_0" -> LM_GGML_Q8_0 (case-insensitive); -1 if lmkit does not know it */
int lm_ggml_type_by_name(const char *name);
const char *lm_ggml_type_name(int type);   /* "Q8_0", or NULL */
/* Elements per block and bytes per block of a known type (0 for an unknown one). */
int64_t lm_ggml_block_elems(int type);
size_t lm_ggml_block_bytes(int type);

/* ---- reading ---- */
typedef struct {
  const char *key;          /* NUL-terminated copy */
  uint32_t type;            /* lm_gguf_vtype */
  uint32_t arr_type;        /* arrays: the element type */
  uint64_t n;               /* arrays: the element count; strings: the byte length */
  const uint8_t *data;      /* the value in the file: scalar bytes, string bytes, or array elements */
  const uint8_t **strs;     /* arrays of strings: where each element (u64 length + bytes) starts */
} lm_gguf_kv;

typedef struct {
  const char *name;         /* NUL-terminated copy */
  int n_dims;
  int64_t ne[LM_GGUF_MAX_DIMS];   /* ne[0] contiguous; unused dims 1 */
  uint32_t type;            /* lm_ggml_type */
  uint64_t offset;          /* from the start of the data */
  int64_t numel;
  size_t nbytes;
  const uint8_t *data;      /* inside the mapping */
} lm_gguf_tensor;

typedef struct lm_gguf lm_gguf;

lm_status lm_gguf_open(lm_gguf **out, const char *path);
/* Over a caller-owned buffer (the fuzzer, tests); `name` goes into errors. */
lm_status lm_gguf_open_mem(lm_gguf **out, const void *data, size_t len, const char *name);
void lm_gguf_close(lm_gguf *g);
const char *lm_gguf_name(const lm_gguf *g);   /* the path, for messages */

int64_t lm_gguf_n_kv(const lm_gguf *g);
const lm_gguf_kv *lm_gguf_kv_at(const lm_gguf *g, int64_t i);
const lm_gguf_kv *lm_gguf_find_kv(const lm_gguf *g, const char *key);   /* NULL if absent */
/* Typed getters: absent -> *v unchanged and LM_OK, unless required (then an error naming the key);
 * a value of another type is an error naming the key and both types. int accepts every integer
 * type and bool; float accepts f32 and f64. */
lm_status lm_gguf_get_int(const lm_gguf *g, const char *key, int64_t *v, int required);
lm_status lm_gguf_get_float(const lm_gguf *g, const char *key, float *v, int required);
lm_status lm_gguf_get_str(const lm_gguf *g, const char *key, const char **s, size_t *n, int required);
/* An array whose elements have type `elem` (-1: any); *kv NULL when absent and not required. */
lm_status lm_gguf_get_arr(const lm_gguf *g, const char *key, int elem, const lm_gguf_kv **kv, int required);
/* Element i (< kv->n) of an array of that type. */
void lm_gguf_arr_str(const lm_gguf_kv *kv, uint64_t i, const char **s, size_t *n);
double lm_gguf_arr_num(const lm_gguf_kv *kv, uint64_t i);   /* numbers of any type */
const char *lm_gguf_vtype_name(uint32_t t);

int64_t lm_gguf_n_tensors(const lm_gguf *g);
const lm_gguf_tensor *lm_gguf_tensor_at(const lm_gguf *g, int64_t i);
int64_t lm_gguf_find_tensor(const lm_gguf *g, const char *name);   /* index or -1 */
uint32_t lm_gguf_alignment(const lm_gguf *g);
/* A tensor read for the last time: its pages of the file mapping leave the process's memory
 * (loading then holds one copy of the weights, not the file's and the model's). */
void lm_gguf_release(const lm_gguf *g, const lm_gguf_tensor *t);

/* n elements (a multiple of the type's block) of type `type` at src (nbytes available) -> f32. */
lm_status lm_gguf_dequantize(int type, const void *src, size_t nbytes, float *dst, int64_t n);
/* n floats (a multiple of the block) -> type F32, F16, BF16, Q8_0 or Q4_0 at dst
 * (n / block_elems * block_bytes bytes), rounding as ggml's reference quantizers do. */
lm_status lm_gguf_quantize(int type, const float *src, int64_t n, void *dst);
/* 1 when blocks of `type` can be kept exactly as A8 blocks (quant.h LM_QW_A8: Q4_0, Q4_K, Q5_K, Q6_K) */
int lm_gguf_a8_ok(int type);
/* n values (whole blocks of `type`, nbytes of them at src) as n / 32 A8 blocks at dst: the same
 * values (lm_qmat_dequantize of the result equals lm_gguf_dequantize, up to the sign of zero) */
lm_status lm_gguf_to_a8(int type, const void *src, size_t nbytes, void *dst, int64_t n);
/* the same as A4 blocks (quant.h LM_QW_A4), for Q4_0 and Q4_K */
int lm_gguf_a4_ok(int type);
lm_status lm_gguf_to_a4(int type, const void *src, size_t nbytes, void *dst, int64_t n);

/* ---- writing ---- */
typedef struct lm_gguf_writer lm_gguf_writer;
lm_status lm_gguf_writer_new(lm_gguf_writer **out);
void lm_gguf_writer_free(lm_gguf_writer *w);
/* Metadata, written in the order added (general.alignment is written first when set). */
lm_status lm_gguf_w_u32(lm_gguf_writer *w, const char *key, uint32_t v);
lm_status lm_gguf_w_i32(lm_gguf_writer *w, const char *key, int32_t v);
lm_status lm_gguf_w_f32(lm_gguf_writer *w, const char *key, float v);
lm_status lm_gguf_w_bool(lm_gguf_writer *w, const char *key, int v);
lm_status lm_gguf_w_str(lm_gguf_writer *w, const char *key, const char *s, size_t n);
lm_status lm_gguf_w_arr_str(lm_gguf_writer *w, const char *key, const char *const *s, const size_t *len, uint64_t n);
lm_status lm_gguf_w_arr_f32(lm_gguf_writer *w, const char *key, const float *v, uint64_t n);
lm_status lm_gguf_w_arr_i32(lm_gguf_writer *w, const char *key, const int32_t *v, uint64_t n);
/* A tensor of f32 values (row-major, ne[0] contiguous) to be written as `type`. own: the writer
 * frees data (malloc'ed) when done; otherwise it must live until lm_gguf_write returns. */
lm_status lm_gguf_w_tensor(lm_gguf_writer *w, const char *name, int n_dims, const int64_t *ne, int type,
                           const float *data, int own);
/* Writes the file atomically (temp, fsync, rename); progress on stderr when `progress`. */
lm_status lm_gguf_write(lm_gguf_writer *w, const char *path, int progress);

#endif

/* ---- models (gguf_model.c) ----
 * The gpt2 and llama architectures as llama.cpp names them (general.architecture, <arch>.* keys,
 * token_embd / blk.N.* / output_norm / output tensors). Loading dequantizes every tensor to f32
 * into an lm_model with the LM head (and keeps Q8_0/Q4_0 linears as blocks too, model.h qlin); llama's q and k rows are permuted back from GGUF's
 * interleaved rotary pairs to Hugging Face's halves. Any tensor, <arch>.* key or tokenizer.*
 * key lmkit does not use is an error naming it. */
/* 1 when path is a regular file starting with the GGUF magic */
int lm_gguf_is_file(const char *path);
lm_status lm_gguf_model_load(lm_model **out, const char *path, int head);
/* qonly: for generation only (model.h qonly): the linears and token embedding kept quantized have
 * no f32 copy, so a Q4_0 file takes about its own size in memory; training, eval, saving, export and
 * LoRA refuse the model. */
lm_status lm_gguf_model_load_qonly(lm_model **out, const char *path, int head, int qonly);
/* lm_model_load for commands that only generate: a GGUF file loaded qonly, a directory as usual. */
lm_status lm_model_load_infer(lm_model **out, const char *path);
/* The tokenizer of tokenizer.ggml.* (model "gpt2" with pre "gpt-2": byte-level BPE). */
lm_status lm_gguf_tokenizer_load(lm_tokenizer **out, const char *path);
lm_status lm_gguf_tokenizer_from(lm_tokenizer **out, const lm_gguf *g);   /* an open file (the fuzzer) */
/* A GGUF file of tok's tokenizer.ggml.* keys alone (a vocabulary file, as llama.cpp's --vocab-only). */
lm_status lm_gguf_write_vocab(const lm_tokenizer *tok, const char *path);
/* The tokenizer of a model directory or GGUF file. */
lm_status lm_model_tokenizer_load(lm_tokenizer **out, const char *path);
/* tokenizer.chat_template of the file, malloc'ed, or NULL (and LM_OK) when it has none; bos and eos
 * (either may be NULL) receive the text of the bos/eos tokens, or NULL when the file names none. */
lm_status lm_gguf_chat_template(const char *path, char **tmpl, char **bos, char **eos);
/* Writes m (gpt2 or llama, LM head), its tokenizer (GPT-2-style byte-level BPE) and chat template
 * (may be NULL) as GGUF with 2-D weights of `type` (F32, F16, Q8_0, Q4_0; rows that are not whole
 * blocks and 1-D tensors stay F32). */
lm_status lm_gguf_export(const lm_model *m, const lm_tokenizer *tok, const char *chat_template, int type, const char *path,
                         int progress);
