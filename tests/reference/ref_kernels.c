/* ref_kernels.c — runs one kernel's forward and backward on inputs from files,
 * for tests/reference/test_kernels.py to compare against PyTorch autograd.
 *
 *   ref_kernels <op> <dir>
 *
 * <dir>/meta.txt holds "key value" lines (sizes, flags, hyper-parameters);
 * every tensor is a raw little-endian file <dir>/<name>.bin (float32, or int32
 * for ids/targets/masks). Outputs and gradients are written the same way.
 * Gradients start at zero, so what we write is exactly what backward added.
 *
 *   ref_kernels bench
 *
 * prints rough timings of the hot kernels at GPT-2 124M sizes (a sanity check,
 * not a benchmark: nothing is asserted). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/base.h"
#include "kernels/kernels.h"

static const char *g_dir;

static double meta(const char *key) {
  char path[4096];
  snprintf(path, sizeof path, "%s/meta.txt", g_dir);
  FILE *f = fopen(path, "r");
  if (!f) { fprintf(stderr, "ref_kernels: cannot open %s\n", path); exit(2); }
  char k[128]; double v;
  while (fscanf(f, "%127s %lf", k, &v) == 2) {
    if (strcmp(k, key) == 0) { fclose(f); return v; }
  }
  fclose(f);
  fprintf(stderr, "ref_kernels: meta.txt has no key '%s'\n", key);
  exit(2);
}

static void *load(const char *name, size_t count, size_t elem) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s.bin", g_dir, name);
  FILE *f = fopen(path, "rb");
  if (!f) { fprintf(stderr, "ref_kernels: cannot open %s\n", path); exit(2); }
  void *p = calloc(count ? count : 1, elem);
  size_t got = fread(p, elem, count, f);
  int extra = fgetc(f);
  fclose(f);
  if (got != count || extra != EOF) {
    fprintf(stderr, "ref_kernels: %s: expected %zu elements\n", path, count);
    exit(2);
  }
  return p;
}
static float *loadf(const char *name, size_t count) { return load(name, count, sizeof(float)); }
static int32_t *loadi(const char *name, size_t count) { return load(name, count, sizeof(int32_t)); }
static float *zeros(size_t count) { return calloc(count ? count : 1, sizeof(float)); }

static void save(const char *name, const void *p, size_t count, size_t elem) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s.bin", g_dir, name);
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(p, elem, count, f) != count || fclose(f) != 0) {
    fprintf(stderr, "ref_kernels: cannot write %s\n", path);
    exit(2);
  }
}
static void savef(const char *name, const float *p, size_t count) { save(name, p, count, sizeof(float)); }

static void op_matmul(void) {
  int64_t N = meta("N"), C = meta("C"), OC = meta("OC");
  int has_bias = meta("bias") != 0;
  float *inp = loadf("inp", N * C), *w = loadf("weight", OC * C), *dout = loadf("dout", N * OC);
  float *b = has_bias ? loadf("bias", OC) : NULL;
  float *out = zeros(N * OC), *dinp = zeros(N * C), *dw = zeros(OC * C), *db = zeros(OC);
  matmul_forward(out, inp, w, b, N, C, OC);
  matmul_backward(dinp, dw, has_bias ? db : NULL, dout, inp, w, N, C, OC);
  savef("out", out, N * OC); savef("dinp", dinp, N * C); savef("dweight", dw, OC * C);
  if (has_bias) savef("dbias", db, OC);
}

static void op_embedding(void) {
  int64_t N = meta("N"), C = meta("C"), V = meta("V");
  int acc = meta("accumulate") != 0;
  int32_t *ids = loadi("ids", N);
  float *table = loadf("table", V * C), *dout = loadf("dout", N * C);
  float *out = acc ? loadf("base", N * C) : zeros(N * C);
  float *dtable = zeros(V * C);
  embedding_forward(out, ids, table, N, C, acc);
  embedding_backward(dtable, dout, ids, N, C);
  savef("out", out, N * C); savef("dtable", dtable, V * C);
}

static void op_layernorm(void) {
  int64_t N = meta("N"), C = meta("C");
  int has_bias = meta("bias") != 0;
  float eps = meta("eps");
  float *inp = loadf("inp", N * C), *w = loadf("weight", C), *dout = loadf("dout", N * C);
  float *b = has_bias ? loadf("bias", C) : NULL;
  float *out = zeros(N * C), *mean = zeros(N), *rstd = zeros(N);
  float *dinp = zeros(N * C), *dw = zeros(C), *db = zeros(C);
  layernorm_forward(out, mean, rstd, inp, w, b, N, C, eps);
  layernorm_backward(dinp, dw, has_bias ? db : NULL, dout, inp, w, mean, rstd, N, C);
  savef("out", out, N * C); savef("mean", mean, N); savef("rstd", rstd, N);
  savef("dinp", dinp, N * C); savef("dweight", dw, C);
  if (has_bias) savef("dbias", db, C);
}

static void op_rmsnorm(void) {
  int64_t N = meta("N"), C = meta("C");
  float eps = meta("eps");
  float *inp = loadf("inp", N * C), *w = loadf("weight", C), *dout = loadf("dout", N * C);
  float *out = zeros(N * C), *rstd = zeros(N), *dinp = zeros(N * C), *dw = zeros(C);
  rmsnorm_forward(out, rstd, inp, w, N, C, eps);
  rmsnorm_backward(dinp, dw, dout, inp, w, rstd, N, C);
  savef("out", out, N * C); savef("rstd", rstd, N); savef("dinp", dinp, N * C); savef("dweight", dw, C);
}

static void op_act(void) {
  int64_t n = meta("n");
  lm_act_kind kind = (lm_act_kind)(int)meta("kind");
  float *inp = loadf("inp", n), *dout = loadf("dout", n), *out = zeros(n), *dinp = zeros(n);
  act_forward(out, inp, n, kind);
  act_backward(dinp, inp, dout, n, kind);
  savef("out", out, n); savef("dinp", dinp, n);
}

static void op_residual(void) {
  int64_t n = meta("n");
  float *a = loadf("a", n), *b = loadf("b", n), *dout = loadf("dout", n);
  float *out = zeros(n), *da = zeros(n), *db = zeros(n);
  residual_forward(out, a, b, n);
  residual_backward(da, db, dout, n);
  savef("out", out, n); savef("da", da, n); savef("db", db, n);
}

/* attention of any shape: q (B,Tq,NH*hs), k and v (B,Tk,NKV*hs); optional key mask (B,Tk), packed
 * starts (B,Tq), relative bias (NH,Tq+Tk-1) and dropout mask (B,NH,Tq,Tk) as int32 0/1 */
static void op_attention(void) {
  int64_t B = meta("B"), Tq = meta("Tq"), Tk = meta("Tk"), NH = meta("NH"), NKV = meta("NKV"), hs = meta("hs");
  int64_t A = NH * hs, KVC = NKV * hs, R = Tq + Tk - 1;
  lm_attn a = {.B = B, .Tq = Tq, .Tk = Tk, .NH = NH, .NKV = NKV, .hs = hs, .qs = A, .ks = KVC,
               .scale = meta("scale"), .causal = meta("causal") != 0, .window = meta("window")};
  float *q = loadf("q", B * Tq * A), *k = loadf("k", B * Tk * KVC), *v = loadf("v", B * Tk * KVC);
  float *dout = loadf("dout", B * Tq * A), *rel = NULL, *drel = NULL;
  a.q = q; a.k = k; a.v = v;
  uint8_t *mask = NULL;
  uint64_t *bits = NULL;
  if (meta("mask") != 0) {
    int32_t *m32 = loadi("key_mask", B * Tk);
    mask = malloc(B * Tk);
    for (int64_t i = 0; i < B * Tk; i++) mask[i] = m32[i] != 0;
    a.key_mask = mask;
  }
  if (meta("starts") != 0) a.starts = loadi("starts", B * Tq);
  if (meta("bias") != 0) {
    rel = loadf("rel_bias", NH * R);
    drel = zeros(NH * R);
    a.bias = rel + Tq - 1; a.bias_hs = R; a.bias_is = -1;
  }
  if (meta("drop") > 0) {
    int64_t n = B * NH * Tq * Tk;
    int32_t *d32 = loadi("drop_mask", n);
    bits = calloc((n + 63) / 64, sizeof(uint64_t));
    for (int64_t i = 0; i < n; i++) if (d32[i]) bits[i >> 6] |= 1ull << (i & 63);
    a.drop = bits; a.drop_p = meta("drop");
  }
  float *out = zeros(B * Tq * A), *lse = zeros(B * NH * Tq);
  float *dq = zeros(B * Tq * A), *dk = zeros(B * Tk * KVC), *dv = zeros(B * Tk * KVC);
  attention_forward(&a, out, lse);
  attention_backward(&a, dq, dk, dv, drel ? drel + Tq - 1 : NULL, out, lse, dout);
  savef("out", out, B * Tq * A); savef("lse", lse, B * NH * Tq);
  savef("dq", dq, B * Tq * A); savef("dk", dk, B * Tk * KVC); savef("dv", dv, B * Tk * KVC);
  if (drel) savef("drel_bias", drel, NH * R);
}

static void op_crossentropy(void) {
  int64_t N = meta("N"), V = meta("V");
  int inplace = meta("inplace") != 0;
  float *logits = loadf("logits", N * V), *dl = loadf("dlosses", N);
  int32_t *targets = loadi("targets", N);
  float *losses = zeros(N);
  double *stats = inplace ? calloc(2 * (size_t)N, sizeof(double)) : NULL;   /* in place as the LM head: one pass */
  crossentropy_forward(losses, logits, targets, N, V, stats);
  float *dlogits = inplace ? logits : zeros(N * V);
  crossentropy_backward(dlogits, logits, targets, dl, N, V, stats);
  free(stats);
  savef("losses", losses, N); savef("dlogits", dlogits, N * V);
}

static void op_adamw(void) {
  int64_t n = meta("n"), steps = meta("steps");
  float lr = meta("lr"), b1 = meta("beta1"), b2 = meta("beta2"), eps = meta("eps"), wd = meta("wd");
  float *p = loadf("params", n), *grads = loadf("grads", steps * n);
  float *m = zeros(n), *v = zeros(n), *traj = zeros(steps * n);
  for (int64_t t = 1; t <= steps; t++) {
    adamw_update(p, grads + (t - 1) * n, m, v, n, lr, b1, b2, eps, wd, t, 1.0f);
    memcpy(traj + (t - 1) * n, p, n * sizeof(float));
  }
  savef("traj", traj, steps * n); savef("m", m, n); savef("v", v, n);
}

static void op_global_norm(void) {
  int64_t n = meta("n");
  float s = meta("scale");
  float *g = loadf("g", n);
  double norm = global_norm(g, n);
  save("norm", &norm, 1, sizeof(double));
  scale_inplace(g, n, s);
  savef("scaled", g, n);
}

static float *bench_randn(int64_t n, lm_rng *r) {
  float *p = malloc((size_t)n * sizeof(float));
  for (int64_t i = 0; i < n; i++) p[i] = lm_rng_normal(r);
  return p;
}

/* median-free but warm: one untimed call, then the mean of `reps` timed calls */
#define TIME_IT(label, reps, flops, body)                                                  \
  do {                                                                                     \
    body;                                                                                  \
    double t0_ = lm_time_sec();                                                            \
    for (int r_ = 0; r_ < (reps); r_++) { body; }                                          \
    double dt_ = (lm_time_sec() - t0_) / (reps);                                           \
    if ((flops) > 0) printf("%-44s %8.3f ms  %6.1f GFLOP/s\n", label, dt_ * 1e3, (flops) / dt_ * 1e-9); \
    else printf("%-44s %8.3f ms\n", label, dt_ * 1e3);                                     \
  } while (0)

static void bench(void) {
  lm_rng r;
  lm_rng_seed(&r, 1);
  const char *ct = getenv("OPENBLAS_CORETYPE");
  printf("threads %d, OPENBLAS_CORETYPE=%s\n", lm_get_threads(), ct ? ct : "(unset)");
  {
    int64_t N = 256, C = 768, OC = 3072;
    float *x = bench_randn(N * C, &r), *w = bench_randn(OC * C, &r), *b = bench_randn(OC, &r);
    float *out = zeros(N * OC), *dx = zeros(N * C), *dw = zeros(OC * C), *db = zeros(OC);
    double f = 2.0 * N * C * OC;
    TIME_IT("matmul_forward  N=256 C=768 OC=3072", 20, f, matmul_forward(out, x, w, b, N, C, OC));
    TIME_IT("matmul_backward N=256 C=768 OC=3072", 10, 2 * f, matmul_backward(dx, dw, db, out, x, w, N, C, OC));
  }
  {
    int64_t NH = 12, hs = 64;
    for (int64_t T = 64; T <= 1024; T *= 4) {
      int64_t B = 4096 / T > 4 ? 4 : 4096 / T;
      float *qkv = bench_randn(B * T * 3 * NH * hs, &r), *dout = bench_randn(B * T * NH * hs, &r);
      float *out = zeros(B * T * NH * hs), *lse = zeros(B * NH * T), *dqkv = zeros(B * T * 3 * NH * hs);
      lm_attn a = lm_attn_self(qkv, B, T, NH, NH, hs, 1);
      char label[64];
      snprintf(label, sizeof label, "attention fwd+bwd B=%lld T=%lld C=768 NH=12", (long long)B, (long long)T);
      TIME_IT(label, T > 256 ? 3 : 20, 0,
              attention_forward(&a, out, lse);
              attention_backward(&a, dqkv, dqkv + NH * hs, dqkv + 2 * NH * hs, NULL, out, lse, dout));
      free(qkv); free(dout); free(out); free(lse); free(dqkv);
    }
  }
  {
    int64_t N = 256, V = 50257;
    float *logits = bench_randn(N * V, &r), *losses = zeros(N), *dl = zeros(N), *dlog = zeros(N * V);
    int32_t *tg = malloc(N * sizeof(int32_t));
    for (int64_t i = 0; i < N; i++) { tg[i] = (int32_t)lm_rng_below(&r, (uint32_t)V); dl[i] = 1.0f / N; }
    TIME_IT("crossentropy fwd+bwd N=256 V=50257", 10, 0,
            crossentropy_forward(losses, logits, tg, N, V, NULL);
            crossentropy_backward(dlog, logits, tg, dl, N, V, NULL));
  }
  {
    int64_t N = 256 * 3072;
    float *x = bench_randn(N, &r), *y = zeros(N), *dx = zeros(N);
    TIME_IT("gelu tanh fwd+bwd n=256*3072", 20, 0,
            act_forward(y, x, N, LM_ACT_GELU_TANH); act_backward(dx, x, y, N, LM_ACT_GELU_TANH));
    int64_t C = 768, R = 256;
    float *w = bench_randn(C, &r), *b = bench_randn(C, &r), *mean = zeros(R), *rstd = zeros(R);
    float *dw = zeros(C), *db = zeros(C);
    TIME_IT("layernorm fwd+bwd N=256 C=768", 50, 0,
            layernorm_forward(y, mean, rstd, x, w, b, R, C, 1e-5f);
            layernorm_backward(dx, dw, db, y, x, w, mean, rstd, R, C));
  }
  {
    int64_t n = 124439808;
    float *p = bench_randn(n, &r), *g = bench_randn(n, &r), *m = zeros(n), *v = zeros(n);
    TIME_IT("adamw_update n=124M", 3, 0, adamw_update(p, g, m, v, n, 1e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, 1, 1.0f));
    TIME_IT("global_norm n=124M", 3, 0, (void)global_norm(g, n));
  }
}

int main(int argc, char **argv) {
  if (argc == 2 && strcmp(argv[1], "bench") == 0) { bench(); return 0; }
  if (argc != 3) { fprintf(stderr, "usage: ref_kernels <op> <dir> | ref_kernels bench\n"); return 2; }
  g_dir = argv[2];
  static const struct { const char *name; void (*fn)(void); } ops[] = {
    {"matmul", op_matmul}, {"embedding", op_embedding}, {"layernorm", op_layernorm},
    {"rmsnorm", op_rmsnorm}, {"act", op_act}, {"residual", op_residual},
    {"attention", op_attention}, {"crossentropy", op_crossentropy}, {"adamw", op_adamw},
    {"global_norm", op_global_norm},
  };
  for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
    if (strcmp(argv[1], ops[i].name) == 0) { ops[i].fn(); return 0; }
  fprintf(stderr, "ref_kernels: unknown op '%s'\n", argv[1]);
  return 2;
}
