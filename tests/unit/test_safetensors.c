/* test_safetensors.c — the safetensors reader and writer (src/model/safetensors.c).
 *
 * Round trips through lm_st_write/lm_st_open (plain, transposed on write and on
 * read, metadata, alignment), dtype conversion from hand-built F16/BF16/F64
 * files, and one test per kind of malformed file: each builds the bad bytes,
 * writes them to a temp file and checks that opening fails with a message
 * naming the file. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <unistd.h>
#include "base/base.h"
#include "model/safetensors.h"

static char g_dir[64];

static void setup(void) {
  strcpy(g_dir, "/tmp/lm_st_test_XXXXXX");
  cr_assert_not_null(mkdtemp(g_dir));
}
/* Counts the entries of g_dir, removing them when asked (no shell: fast under ASan). */
static int dir_entries(int remove_them) {
  DIR *d = opendir(g_dir);
  cr_assert_not_null(d);
  int n = 0;
  for (struct dirent *e; (e = readdir(d));) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    n++;
    if (remove_them) {
      char p[512];
      snprintf(p, sizeof p, "%s/%s", g_dir, e->d_name);
      unlink(p);
    }
  }
  closedir(d);
  return n;
}
static void teardown(void) {
  dir_entries(1);
  rmdir(g_dir);
}
TestSuite(safetensors, .init = setup, .fini = teardown);

static const char *tmp_path(const char *name) {
  static char p[160];
  snprintf(p, sizeof p, "%s/%s", g_dir, name);
  return p;
}

static void write_bytes(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  cr_assert_not_null(f);
  if (n) cr_assert_eq(fwrite(data, 1, n, f), n);
  fclose(f);
}

/* A file from a header string and a data buffer, header length as given. */
static const char *make_file(const char *name, const char *header, const void *data, size_t dlen) {
  const char *path = tmp_path(name);
  size_t hl = strlen(header);
  unsigned char *buf = malloc(8 + hl + dlen + 1);
  for (int b = 0; b < 8; b++) buf[b] = (unsigned char)((uint64_t)hl >> (8 * b));
  memcpy(buf + 8, header, hl);
  if (dlen) memcpy(buf + 8 + hl, data, dlen);
  write_bytes(path, buf, 8 + hl + dlen);
  free(buf);
  return path;
}

/* Opening must fail, with the file's path and `what` in the message. */
static void expect_bad(const char *path, const char *what) {
  lm_st_file *f = (lm_st_file *)0x1;
  lm_clear_error();
  lm_status st = lm_st_open(&f, path);
  cr_assert_neq(st, LM_OK, "opened a bad file: %s", what);
  cr_assert_null(f);
  cr_assert(strstr(lm_last_error(), path) != NULL, "error does not name the file: %s", lm_last_error());
  if (what) cr_assert(strstr(lm_last_error(), what) != NULL, "error '%s' lacks '%s'", lm_last_error(), what);
}

static const char *bad_header(const char *name, const char *header, size_t dlen) {
  static unsigned char zeros[256];
  cr_assert(dlen <= sizeof zeros);
  return make_file(name, header, zeros, dlen);
}

/* ---------------------------------------------------------------- round trips */
Test(safetensors, round_trip) {
  float a[6] = {1, 2, 3, 4, 5, 6}, b[3] = {-1.5f, 0, 1e30f}, s = 42;
  lm_st_entry e[] = {
    {.name = "w.weight", .ndim = 2, .shape = {2, 3}, .data = a},
    {.name = "b \"quoted\"\\name", .ndim = 1, .shape = {3}, .data = b},
    {.name = "scalar", .ndim = 0, .data = &s},
    {.name = "empty", .ndim = 2, .shape = {0, 5}, .data = NULL},
  };
  const char *meta[] = {"step", "17", "note", "héllo", NULL};
  const char *path = tmp_path("rt.safetensors");
  cr_assert_eq(lm_st_write(path, e, 4, meta), LM_OK, "%s", lm_last_error());

  /* data starts at a multiple of 8 */
  FILE *fp = fopen(path, "rb");
  unsigned char len8[8];
  cr_assert_eq(fread(len8, 1, 8, fp), 8);
  fclose(fp);
  uint64_t hl = 0;
  for (int k = 7; k >= 0; k--) hl = hl << 8 | len8[k];
  cr_assert_eq((8 + hl) % 8, 0);

  lm_st_file *f;
  cr_assert_eq(lm_st_open(&f, path), LM_OK, "%s", lm_last_error());
  cr_assert_eq(lm_st_count(f), 4);
  for (int i = 0; i < 4; i++) {
    cr_assert_str_eq(lm_st_name(f, i), e[i].name);   /* header order kept */
    cr_assert_eq(lm_st_find(f, e[i].name), i);
    cr_assert_str_eq(lm_st_dtype(f, i), "F32");
    cr_assert_eq(lm_st_ndim(f, i), e[i].ndim);
    for (int k = 0; k < e[i].ndim; k++) cr_assert_eq(lm_st_shape(f, i)[k], e[i].shape[k]);
  }
  cr_assert_eq(lm_st_find(f, "nope"), -1);
  cr_assert_eq(lm_st_find(f, ""), -1);
  cr_assert_str_eq(lm_st_meta(f, "format"), "pt");
  cr_assert_str_eq(lm_st_meta(f, "step"), "17");
  cr_assert_str_eq(lm_st_meta(f, "note"), "héllo");
  cr_assert_null(lm_st_meta(f, "absent"));

  float ra[6], rb[3], rs, dummy;
  int64_t want[2] = {2, 3};
  cr_assert_eq(lm_st_read_f32(f, 0, ra, want, 2, 0), LM_OK);
  cr_assert_arr_eq(ra, a, sizeof a);
  cr_assert_eq(lm_st_read_f32(f, 1, rb, NULL, 0, 0), LM_OK);
  cr_assert_arr_eq(rb, b, sizeof b);
  cr_assert_eq(lm_st_read_f32(f, 2, &rs, NULL, 0, 0), LM_OK);
  cr_assert_eq(rs, 42);
  cr_assert_eq(lm_st_read_f32(f, 3, &dummy, NULL, 0, 0), LM_OK);
  cr_assert_eq(lm_st_numel(f, 3), 0);
  /* out-of-range index is an argument error, not a crash */
  cr_assert_eq(lm_st_read_f32(f, 4, ra, NULL, 0, 0), LM_ERR_ARG);
  cr_assert_null(lm_st_name(f, -1));
  lm_st_close(f);
}

Test(safetensors, no_tensors_and_user_format) {
  const char *meta[] = {"format", "np", NULL};
  const char *path = tmp_path("none.safetensors");
  cr_assert_eq(lm_st_write(path, NULL, 0, meta), LM_OK, "%s", lm_last_error());
  lm_st_file *f;
  cr_assert_eq(lm_st_open(&f, path), LM_OK, "%s", lm_last_error());
  cr_assert_eq(lm_st_count(f), 0);
  cr_assert_str_eq(lm_st_meta(f, "format"), "np");
  lm_st_close(f);
}

/* The transposes of both directions, on a size that leaves partial tiles. */
Test(safetensors, transpose_write_and_read) {
  enum { R = 70, C = 45 };   /* source matrix (R, C) */
  float *src = malloc(sizeof(float) * R * C), *got = malloc(sizeof(float) * R * C);
  for (int i = 0; i < R * C; i++) src[i] = (float)i * 0.5f - 7;
  lm_st_entry e[] = {
    {.name = "conv", .ndim = 2, .shape = {C, R}, .data = src, .transpose = 1},  /* stored as (C, R) */
    {.name = "plain", .ndim = 2, .shape = {R, C}, .data = src},
  };
  const char *path = tmp_path("tr.safetensors");
  cr_assert_eq(lm_st_write(path, e, 2, NULL), LM_OK, "%s", lm_last_error());
  lm_st_file *f;
  cr_assert_eq(lm_st_open(&f, path), LM_OK, "%s", lm_last_error());
  /* stored (C, R): element [c][r] == src[r][c] */
  cr_assert_eq(lm_st_read_f32(f, 0, got, (int64_t[]){C, R}, 2, 0), LM_OK, "%s", lm_last_error());
  for (int c = 0; c < C; c++)
    for (int r = 0; r < R; r++) cr_assert_eq(got[c * R + r], src[r * C + c]);
  /* reading it transposed gives back the source */
  cr_assert_eq(lm_st_read_f32(f, 0, got, (int64_t[]){C, R}, 2, 1), LM_OK);
  cr_assert_arr_eq(got, src, sizeof(float) * R * C);
  /* transposed read of the plain one */
  cr_assert_eq(lm_st_read_f32(f, 1, got, NULL, 0, 1), LM_OK);
  for (int c = 0; c < C; c++)
    for (int r = 0; r < R; r++) cr_assert_eq(got[c * R + r], src[r * C + c]);
  lm_st_close(f);
  free(src); free(got);
}

Test(safetensors, shape_mismatch_names_tensor_and_shapes) {
  float a[6] = {0};
  lm_st_entry e[] = {{.name = "h.0.attn.c_attn.weight", .ndim = 2, .shape = {2, 3}, .data = a}};
  const char *path = tmp_path("shape.safetensors");
  cr_assert_eq(lm_st_write(path, e, 1, NULL), LM_OK);
  lm_st_file *f;
  cr_assert_eq(lm_st_open(&f, path), LM_OK);
  float out[6];
  cr_assert_neq(lm_st_read_f32(f, 0, out, (int64_t[]){3, 2}, 2, 0), LM_OK);
  const char *msg = lm_last_error();
  cr_assert(strstr(msg, "h.0.attn.c_attn.weight") && strstr(msg, "[2, 3]") && strstr(msg, "[3, 2]"), "%s", msg);
  cr_assert(strstr(msg, path), "%s", msg);
  cr_assert_neq(lm_st_read_f32(f, 0, out, (int64_t[]){6}, 1, 0), LM_OK);
  cr_assert_eq(lm_st_read_f32(f, 0, out, NULL, 0, 0), LM_OK);
  lm_st_close(f);
  /* transpose of a 1-D tensor is refused */
  lm_st_entry v[] = {{.name = "v", .ndim = 1, .shape = {6}, .data = a}};
  cr_assert_eq(lm_st_write(path, v, 1, NULL), LM_OK);
  cr_assert_eq(lm_st_open(&f, path), LM_OK);
  cr_assert_eq(lm_st_read_f32(f, 0, out, NULL, 0, 1), LM_ERR_ARG);
  lm_st_close(f);
}

Test(safetensors, write_rejects_bad_entries) {
  float a[4] = {0};
  const char *path = tmp_path("w.safetensors");
  lm_st_entry dup[] = {{.name = "x", .ndim = 1, .shape = {4}, .data = a}, {.name = "x", .ndim = 1, .shape = {4}, .data = a}};
  cr_assert_eq(lm_st_write(path, dup, 2, NULL), LM_ERR_ARG);
  cr_assert(strstr(lm_last_error(), "duplicate"));
  lm_st_entry tr1[] = {{.name = "x", .ndim = 1, .shape = {4}, .data = a, .transpose = 1}};
  cr_assert_eq(lm_st_write(path, tr1, 1, NULL), LM_ERR_ARG);
  lm_st_entry nodata[] = {{.name = "x", .ndim = 1, .shape = {4}}};
  cr_assert_eq(lm_st_write(path, nodata, 1, NULL), LM_ERR_ARG);
  lm_st_entry neg[] = {{.name = "x", .ndim = 1, .shape = {-1}, .data = a}};
  cr_assert_eq(lm_st_write(path, neg, 1, NULL), LM_ERR_ARG);
  lm_st_entry reserved[] = {{.name = "__metadata__", .ndim = 1, .shape = {4}, .data = a}};
  cr_assert_eq(lm_st_write(path, reserved, 1, NULL), LM_ERR_ARG);
  cr_assert(!lm_file_exists(path), "a failed write left a file");
  /* unwritable place: i/o error, nothing left behind */
  lm_st_entry ok[] = {{.name = "x", .ndim = 1, .shape = {4}, .data = a}};
  cr_assert_eq(lm_st_write("/nonexistent-dir/x.safetensors", ok, 1, NULL), LM_ERR_IO);
}

Test(safetensors, overwrite_is_atomic_replace) {
  float a[2] = {1, 2}, b[2] = {3, 4};
  const char *path = tmp_path("ow.safetensors");
  lm_st_entry e[] = {{.name = "x", .ndim = 1, .shape = {2}, .data = a}};
  cr_assert_eq(lm_st_write(path, e, 1, NULL), LM_OK);
  e[0].data = b;
  cr_assert_eq(lm_st_write(path, e, 1, NULL), LM_OK);
  lm_st_file *f;
  cr_assert_eq(lm_st_open(&f, path), LM_OK);
  float r[2];
  cr_assert_eq(lm_st_read_f32(f, 0, r, NULL, 0, 0), LM_OK);
  cr_assert_arr_eq(r, b, sizeof b);
  lm_st_close(f);
  /* no temp file left beside it */
  cr_assert_eq(dir_entries(0), 1);
}

/* ---------------------------------------------------------------- dtype conversion */
Test(safetensors, f16_bf16_f64_conversion) {
  const uint16_t h[] = {0x3C00, 0xC000, 0x3800, 0x7BFF, 0x0001, 0x03FF, 0x7C00, 0xFC00, 0x8000, 0x7E00, 0x3555};
  const float hv[] = {1, -2, 0.5f, 65504, 0x1p-24f, 0x3FFp-24f, INFINITY, -INFINITY, -0.0f, NAN, 0.333251953125f};
  const uint16_t bf[] = {0x3F80, 0xC040, 0x7F80, 0x0001, 0x4049};
  const float bv[] = {1, -3, INFINITY, 0x1p-133f, 3.140625f};
  const double dv[] = {1.5, -1e300, 3.0000001};
  enum { NH = 11, NB = 5, ND = 3 };
  unsigned char data[NH * 2 + NB * 2 + ND * 8 + 1];
  /* a one-byte lead-in makes every tensor unaligned in memory */
  memcpy(data + 1, h, sizeof h);
  memcpy(data + 1 + sizeof h, bf, sizeof bf);
  memcpy(data + 1 + sizeof h + sizeof bf, dv, sizeof dv);
  char hdr[512];
  /* the I64 scalar sits in 8 zero bytes after the rest */
  unsigned char big[sizeof data + 8] = {0};
  memcpy(big, data, sizeof data);
  snprintf(hdr, sizeof hdr,
           "{\"h\":{\"dtype\":\"F16\",\"shape\":[%d],\"data_offsets\":[1,%d]},"
           "\"b\":{\"dtype\":\"BF16\",\"shape\":[%d],\"data_offsets\":[%d,%d]},"
           "\"d\":{\"dtype\":\"F64\",\"shape\":[%d],\"data_offsets\":[%d,%d]},"
           "\"i\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[%d,%d]}}",
           NH, 1 + NH * 2, NB, 1 + NH * 2, 1 + NH * 2 + NB * 2, ND, 1 + NH * 2 + NB * 2, 1 + NH * 2 + NB * 2 + ND * 8,
           (int)sizeof data, (int)sizeof data + 8);
  const char *path = make_file("conv.safetensors", hdr, big, sizeof big);
  lm_st_file *f;
  cr_assert_eq(lm_st_open(&f, path), LM_OK, "%s", lm_last_error());
  float out[16];
  cr_assert_eq(lm_st_read_f32(f, lm_st_find(f, "h"), out, NULL, 0, 0), LM_OK);
  for (int k = 0; k < NH; k++) {
    if (isnan(hv[k])) cr_assert(isnan(out[k]));
    else cr_assert(out[k] == hv[k] && signbit(out[k]) == signbit(hv[k]), "f16 %04x -> %g, want %g", h[k], out[k], hv[k]);
  }
  cr_assert_eq(lm_st_read_f32(f, lm_st_find(f, "b"), out, NULL, 0, 0), LM_OK);
  for (int k = 0; k < NB; k++) cr_assert(out[k] == bv[k], "bf16 %04x -> %g, want %g", bf[k], out[k], bv[k]);
  cr_assert_eq(lm_st_read_f32(f, lm_st_find(f, "d"), out, NULL, 0, 0), LM_OK);
  for (int k = 0; k < ND; k++) cr_assert(out[k] == (float)dv[k]);
  cr_assert_str_eq(lm_st_dtype(f, lm_st_find(f, "i")), "I64");
  cr_assert_eq(lm_st_read_f32(f, lm_st_find(f, "i"), out, NULL, 0, 0), LM_ERR_UNSUPPORTED);
  cr_assert(strstr(lm_last_error(), "I64"));
  lm_st_close(f);
}

Test(safetensors, f16_transposed_read) {
  enum { R = 37, C = 33 };
  uint16_t h[R * C];
  for (int i = 0; i < R * C; i++) h[i] = (uint16_t)(0x3C00 + i);   /* distinct finite halves */
  char hdr[256];
  snprintf(hdr, sizeof hdr, "{\"w\":{\"dtype\":\"F16\",\"shape\":[%d,%d],\"data_offsets\":[0,%d]}}", R, C,
           (int)sizeof h);
  const char *path = make_file("h16t.safetensors", hdr, h, sizeof h);
  lm_st_file *f;
  cr_assert_eq(lm_st_open(&f, path), LM_OK, "%s", lm_last_error());
  float plain[R * C], tr[R * C];
  cr_assert_eq(lm_st_read_f32(f, 0, plain, (int64_t[]){R, C}, 2, 0), LM_OK);
  cr_assert_eq(lm_st_read_f32(f, 0, tr, (int64_t[]){R, C}, 2, 1), LM_OK);
  for (int r = 0; r < R; r++)
    for (int c = 0; c < C; c++) cr_assert_eq(tr[c * R + r], plain[r * C + c]);
  lm_st_close(f);
}

Test(safetensors, unaligned_header_and_hf_layout) {
  /* header length 61 (not a multiple of 8), metadata last, a hole after the tensor */
  float v[2] = {3.5f, -1};
  unsigned char data[12] = {0};
  memcpy(data, v, 8);
  const char *path = make_file("u.safetensors",
                               "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"__metadata__\":{}}",
                               data, sizeof data);
  lm_st_file *f;
  cr_assert_eq(lm_st_open(&f, path), LM_OK, "%s", lm_last_error());
  float r[2];
  cr_assert_eq(lm_st_read_f32(f, 0, r, NULL, 0, 0), LM_OK);
  cr_assert_arr_eq(r, v, sizeof v);
  cr_assert_null(lm_st_meta(f, "format"));
  lm_st_close(f);
}

Test(safetensors, open_mem) {
  float v[1] = {2};
  unsigned char buf[128];
  const char *h = "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}    ";
  size_t hl = strlen(h), n = 8 + hl + 4;
  memset(buf, 0, 8);
  buf[0] = (unsigned char)hl;
  memcpy(buf + 8, h, hl);
  memcpy(buf + 8 + hl, v, 4);
  lm_st_file *f;
  cr_assert_eq(lm_st_open_mem(&f, buf, n, "mem"), LM_OK, "%s", lm_last_error());
  float r;
  cr_assert_eq(lm_st_read_f32(f, 0, &r, NULL, 0, 0), LM_OK);
  cr_assert_eq(r, 2);
  lm_st_close(f);
  cr_assert_neq(lm_st_open_mem(&f, buf, n - 1, "mem"), LM_OK);
  cr_assert(strstr(lm_last_error(), "mem"));
}

/* ---------------------------------------------------------------- malformed files
 * One function per kind of bad input; they run grouped in a few Test()s
 * because each Test() is a fork, which is slow under ASan. */
static void bad_missing_file(void) {
  lm_st_file *f;
  cr_assert_eq(lm_st_open(&f, tmp_path("absent.safetensors")), LM_ERR_IO);
  cr_assert(strstr(lm_last_error(), "absent.safetensors"));
}

static void bad_short_file(void) {
  const char *p = tmp_path("short.safetensors");
  write_bytes(p, "\x05\0\0\0\0", 5);
  expect_bad(p, "too short");
  p = tmp_path("empty.safetensors");
  write_bytes(p, "", 0);
  expect_bad(p, "too short");
}

static void bad_header_longer_than_file(void) {
  const char *p = tmp_path("long.safetensors");
  unsigned char b[16] = {200, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
  write_bytes(p, b, sizeof b);
  expect_bad(p, "exceeds the file size");
}

static void bad_header_absurd(void) {
  const char *p = tmp_path("absurd.safetensors");
  unsigned char b[16] = {0, 0, 0, 0, 0, 1, 0, 0, '{', '}'};   /* 2^40 */
  write_bytes(p, b, sizeof b);
  expect_bad(p, "absurd");
  unsigned char c[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};   /* u64 max: no wrap-around */
  write_bytes(p, c, sizeof c);
  expect_bad(p, "absurd");
}

static void bad_not_json(void) {
  expect_bad(bad_header("nj.safetensors", "{\"x\": {\"dtype\": \"F32\",", 0), "not valid JSON");
  expect_bad(bad_header("nj2.safetensors", "\xff\xfe garbage", 0), "not valid JSON");
  expect_bad(bad_header("nj3.safetensors", "{} trailing", 0), "trailing");
}

static void bad_not_object(void) {
  expect_bad(bad_header("arr.safetensors", "[1, 2, 3]", 0), "expected a JSON object");
  expect_bad(bad_header("str.safetensors", "\"x\"", 0), "expected a JSON object");
  expect_bad(bad_header("ent.safetensors", "{\"x\": [1]}", 0), "expected an object");
}

static void bad_missing_fields(void) {
  expect_bad(bad_header("m1.safetensors", "{\"x\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4), "dtype");
  expect_bad(bad_header("m2.safetensors", "{\"x\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4), "shape");
  expect_bad(bad_header("m3.safetensors", "{\"x\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4), "data_offsets");
}

static void bad_field_types(void) {
  expect_bad(bad_header("t1.safetensors", "{\"x\":{\"dtype\":32,\"shape\":[1],\"data_offsets\":[0,4]}}", 4), "dtype");
  expect_bad(bad_header("t2.safetensors", "{\"x\":{\"dtype\":\"F32\",\"shape\":\"1\",\"data_offsets\":[0,4]}}", 4),
             "shape");
  expect_bad(bad_header("t3.safetensors", "{\"x\":{\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}}", 4),
             "shape[0]");
  expect_bad(bad_header("t4.safetensors", "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 8),
             "data_offsets");
  expect_bad(bad_header("t5.safetensors", "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":{\"a\":1}}}", 4),
             "data_offsets");
  expect_bad(bad_header("t6.safetensors", "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[\"0\",4]}}", 4),
             "data_offsets");
}

static void bad_dims(void) {
  expect_bad(bad_header("d1.safetensors", "{\"x\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4),
             "shape[0]");
  expect_bad(bad_header("d2.safetensors", "{\"x\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4),
             "shape[0]");
  expect_bad(bad_header("d3.safetensors", "{\"x\":{\"dtype\":\"F32\",\"shape\":[1e400],\"data_offsets\":[0,4]}}", 4),
             "shape[0]");
  expect_bad(bad_header("d4.safetensors",
                        "{\"x\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4),
             "dims");
}

static void bad_dtype(void) {
  expect_bad(bad_header("dt.safetensors", "{\"x\":{\"dtype\":\"F17\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4),
             "unknown dtype");
}

static void bad_shape_overflow(void) {
  expect_bad(bad_header("ov.safetensors",
                        "{\"x\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":[0,4]}}", 4),
             "overflow");
  /* product fits int64 but bytes (x4) do not */
  expect_bad(bad_header("ov2.safetensors",
                        "{\"x\":{\"dtype\":\"F32\",\"shape\":[4294967296,1073741824],\"data_offsets\":[0,4]}}", 4),
             "overflow");
}

static void bad_offsets(void) {
  expect_bad(bad_header("o1.safetensors", "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 4),
             "outside");
  expect_bad(bad_header("o2.safetensors", "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 3),
             "outside");
  expect_bad(bad_header("o3.safetensors", "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 4),
             "data_offsets");
  expect_bad(bad_header("o4.safetensors",
                        "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,18446744073709551616]}}", 4),
             "data_offsets");
}

static void bad_size_mismatch(void) {
  expect_bad(bad_header("sz.safetensors", "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 8),
             "needs 8");
}

static void bad_overlap(void) {
  expect_bad(bad_header("ol.safetensors",
                        "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                        "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                        12),
             "overlap");
  /* empty tensors anywhere are fine */
  const char *p = bad_header("ol2.safetensors",
                             "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                             "\"b\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]}}",
                             8);
  lm_st_file *f;
  cr_assert_eq(lm_st_open(&f, p), LM_OK, "%s", lm_last_error());
  lm_st_close(f);
}

static void bad_duplicate_names(void) {
  expect_bad(bad_header("dup.safetensors",
                        "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                        "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                        8),
             "duplicate tensor name 'a'");
  expect_bad(bad_header("dupm.safetensors", "{\"__metadata__\":{},\"__metadata__\":{}}", 0), "duplicate");
}

static void bad_metadata(void) {
  expect_bad(bad_header("md1.safetensors", "{\"__metadata__\":[1]}", 0), "__metadata__");
  expect_bad(bad_header("md2.safetensors", "{\"__metadata__\":{\"step\":17}}", 0), "step");
}

Test(safetensors, bad_framing) {
  bad_missing_file();
  bad_short_file();
  bad_header_longer_than_file();
  bad_header_absurd();
  bad_not_json();
  bad_not_object();
}
Test(safetensors, bad_entry_fields) {
  bad_missing_fields();
  bad_field_types();
  bad_dims();
  bad_dtype();
}
Test(safetensors, bad_sizes) {
  bad_shape_overflow();
  bad_offsets();
  bad_size_mismatch();
  bad_overlap();
}
Test(safetensors, bad_names_and_metadata) {
  bad_duplicate_names();
  bad_metadata();
}
