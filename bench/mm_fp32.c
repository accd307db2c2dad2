/* mm_fp32.c — would oneDNN's fp32 matmul beat OpenBLAS on a training step's products? (issue #14)
 *
 * OpenBLAS packs both operands on every call; at a GPT-2 step's few rows (B*T = 256) packing the
 * weight is a visible share of a product. oneDNN can instead read a weight reordered once into its
 * blocked layout (once per weight version, i.e. once per optimiser step). This times, for every
 * linear layer of bench/train_gpt2's configs and each of its three products
 *   forward   out(N,OC)  = inp(N,C) W^T          d input   dinp(N,C) += dout(N,OC) W(OC,C)
 *   d weight  dW(OC,C)  += dout^T(OC,N) inp(N,C)
 * the median of REPS calls of: cblas_sgemm as matmul.c calls it; a oneDNN fp32 matmul on the same
 * plain buffers (strides, as kernels/mm.c describes its bf16 ones); the same with the weight operand
 * pre-reordered into the layout oneDNN picks (not timed), and that reorder alone. The d-weight
 * product's "weight" operand is the layer input, which changes on every call: nothing to pre-reorder.
 * Each layer has its own buffers (LAYERS copies), used in turn, so a weight is as cold as in a step.
 * The three implementations alternate within each repetition, so load drifts hit them alike.
 * Each product first checks that oneDNN's results (plain and pre-reordered) equal OpenBLAS's on the same
 * operands (max_rel_diff: the largest difference over the largest |value|; fp32 summation order, ~1e-6).
 * The last line sums a whole step's products per implementation.
 *
 * usage: bench_mm_fp32 LAYERS DIM ROWS [VOCAB] [REPS]   (threads: OMP_NUM_THREADS, else all cores)
 *   GPT-2 124M at B4xT64: bench_mm_fp32 12 768 256;   6L/384 at B8xT256: bench_mm_fp32 6 384 2048
 * Session 9 (14:00-14:06 UTC, 1 thread pinned with taskset, wall time, load 3.6-5.2 from other jobs;
 * bench_mm_fp32 12 768 256 50257 5, four runs), GPT-2 124M's products in a step: OpenBLAS 1732 / 1712 /
 * 1585 / 1615 ms, oneDNN 1841 / 1849 / 1698 / 1618, oneDNN pre-reordered 1682 / 1702 / 1584 / 1520 + reorders
 * 239 / 186 / 185 / 169. By product: forward OpenBLAS 581 / 648 / 581 / 579, oneDNN 501 / 577 / 524 / 496
 * (-11 to -14%, no reorder needed); d input 542-574 vs pre-reordered 476-536 (+ 66-74 of reorders);
 * d weight 462-490 vs oneDNN 539-611. Results agree to ~1e-6 of the largest value. 6L/384
 * (bench_mm_fp32 6 384 2048 50257 3): OpenBLAS 2986, oneDNN 3261, pre-reordered 3037 + 48. A whole step
 * through oneDNN is no faster, so fp32 stays on OpenBLAS; only 124M's forward products gain (~5% of its
 * products, not 80% MFU by itself), and a weight packed once per step would pay only if the optimiser
 * wrote the packed copies in its own pass (2 more copies of the weights). In the step itself (an
 * uncommitted experiment: matmul_forward through oneDNN below 1024 rows; bench_train_gpt2 12 12 768 50257
 * 4 64 4, 1 thread pinned, load 3.8-4.7, alternated 3 times) 124M's forward went 0.725 / 0.723 / 0.801 ->
 * 0.697 / 0.717 / 0.700 s: about 1% of the step, not worth a second fp32 route. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cblas.h>
#include <oneapi/dnnl/dnnl.h>
#include "bench_util.h"

typedef struct {
  dnnl_primitive_t prim, reorder;   /* reorder: wei into prim's layout (NULL: prim reads wei as is) */
  dnnl_memory_desc_t src, wei, dst, packed;
  void *buf;                        /* wei in the packed layout */
} dn;

static dnnl_engine_t eng;
static dnnl_stream_t stream;

/* dst(M,Nc) += src(M,K) wei(K,Nc); src stored (K,M) when ta, wei stored (Nc,K) when tb; pack: prim
 * reads wei in its own layout. 0 when oneDNN cannot build it. */
static int dn_make(dn *d, int64_t M, int64_t Nc, int64_t K, int ta, int tb, int pack) {
  dnnl_dims_t sd = {M, K}, wd = {K, Nc}, dd = {M, Nc};
  dnnl_dims_t ss = {ta ? 1 : K, ta ? M : 1}, ws = {tb ? 1 : Nc, tb ? K : 1}, ds = {Nc, 1};
  dnnl_matmul_desc_t desc;
  dnnl_primitive_attr_t attr = NULL;
  dnnl_post_ops_t ops = NULL;
  dnnl_primitive_desc_t pd = NULL, rpd = NULL;
  *d = (dn){0};
  int ok = dnnl_memory_desc_init_by_strides(&d->src, 2, sd, dnnl_f32, ss) == dnnl_success &&
           dnnl_memory_desc_init_by_strides(&d->wei, 2, wd, dnnl_f32, ws) == dnnl_success &&
           dnnl_memory_desc_init_by_strides(&d->dst, 2, dd, dnnl_f32, ds) == dnnl_success &&
           (!pack || dnnl_memory_desc_init_by_tag(&d->packed, 2, wd, dnnl_f32, dnnl_format_tag_any) == dnnl_success) &&
           dnnl_matmul_desc_init(&desc, &d->src, pack ? &d->packed : &d->wei, NULL, &d->dst) == dnnl_success &&
           dnnl_primitive_attr_create(&attr) == dnnl_success && dnnl_post_ops_create(&ops) == dnnl_success &&
           dnnl_post_ops_append_sum(ops, 1.0f) == dnnl_success && dnnl_primitive_attr_set_post_ops(attr, ops) == dnnl_success &&
           dnnl_primitive_desc_create(&pd, &desc, attr, eng, NULL) == dnnl_success &&
           dnnl_primitive_create(&d->prim, pd) == dnnl_success;
  if (ok && pack) {
    d->packed = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    ok = (d->buf = lm_alloc(dnnl_memory_desc_get_size(&d->packed))) != NULL &&
         dnnl_reorder_primitive_desc_create(&rpd, &d->wei, eng, &d->packed, eng, NULL) == dnnl_success &&
         dnnl_primitive_create(&d->reorder, rpd) == dnnl_success;
  }
  if (rpd) dnnl_primitive_desc_destroy(rpd);
  if (pd) dnnl_primitive_desc_destroy(pd);
  if (ops) dnnl_post_ops_destroy(ops);
  if (attr) dnnl_primitive_attr_destroy(attr);
  return ok;
}

static void dn_free(dn *d) {
  if (d->prim) dnnl_primitive_destroy(d->prim);
  if (d->reorder) dnnl_primitive_destroy(d->reorder);
  lm_free(d->buf);
}

/* what: 1 the product, 2 the reorder alone, 3 both; the time it took */
static double dn_run(dn *d, const float *src, const float *wei, float *dst, int what) {
  dnnl_memory_t ms = NULL, mw = NULL, md = NULL, mk = NULL;
  double t = lm_time_sec();
  dnnl_memory_create(&ms, &d->src, eng, (void *)src);
  dnnl_memory_create(&mw, &d->wei, eng, (void *)wei);
  dnnl_memory_create(&md, &d->dst, eng, dst);
  if (d->reorder) dnnl_memory_create(&mk, &d->packed, eng, d->buf);
  if (d->reorder && (what & 2)) {
    dnnl_exec_arg_t args[] = {{DNNL_ARG_FROM, mw}, {DNNL_ARG_TO, mk}};
    dnnl_primitive_execute(d->reorder, stream, 2, args);
  }
  if (what & 1) {
    dnnl_exec_arg_t args[] = {{DNNL_ARG_SRC, ms}, {DNNL_ARG_WEIGHTS, mk ? mk : mw}, {DNNL_ARG_DST, md}};
    dnnl_primitive_execute(d->prim, stream, 3, args);
  }
  dnnl_stream_wait(stream);
  t = lm_time_sec() - t;
  dnnl_memory_destroy(ms); dnnl_memory_destroy(mw); dnnl_memory_destroy(md);
  if (mk) dnnl_memory_destroy(mk);
  return t;
}

static float *filled(int64_t n, uint32_t seed) {
  float *x = lm_alloc((size_t)n * sizeof(float));
  for (int64_t i = 0; x && i < n; i++) x[i] = (float)((uint32_t)(i * 2654435761u + seed) % 1000u) * 1e-3f - 0.5f;
  return x;
}

enum { CBLAS, PLAIN, PACKED, REORDER, NIMPL };
static const char *IMPL[NIMPL] = {"openblas", "onednn", "onednn_prereordered", "reorder"};
static double step[NIMPL];

/* the three products of a linear layer inp(N,C) -> out(N,OC), count of them in a step (one buffer set each) */
static int layer(int64_t N, int64_t C, int64_t OC, int count, int reps) {
  float **inp = calloc(count, sizeof *inp), **W = calloc(count, sizeof *W), **dout = calloc(count, sizeof *dout);
  float *out = filled(N * OC, 1), *dinp = filled(N * C, 2), *dW = filled(OC * C, 3);
  int ok = inp && W && dout && out && dinp && dW;
  for (int l = 0; ok && l < count; l++)
    ok = (inp[l] = filled(N * C, 10 + l)) && (W[l] = filled(OC * C, 100 + l)) && (dout[l] = filled(N * OC, 1000 + l));
  /* per product: M, Nc, K, ta, tb of the oneDNN call */
  const int64_t shape[3][5] = {{N, OC, C, 0, 1}, {N, C, OC, 0, 0}, {OC, C, N, 1, 0}};
  const char *name[3] = {"forward", "d_input", "d_weight"};
  double *t = malloc((size_t)reps * NIMPL * sizeof *t);
  for (int p = 0; ok && p < 3; p++) {
    dn plain, packed = {0};
    ok = t && dn_make(&plain, shape[p][0], shape[p][1], shape[p][2], (int)shape[p][3], (int)shape[p][4], 0) &&
         (p == 2 || dn_make(&packed, shape[p][0], shape[p][1], shape[p][2], (int)shape[p][3], (int)shape[p][4], 1));
    if (!ok) { fprintf(stderr, "oneDNN cannot build the %s product of %lldx%lld -> %lld\n", name[p], (long long)N, (long long)C, (long long)OC); break; }
    /* the three compute the same product: each from zero on layer 0's operands, against OpenBLAS */
    int64_t nc = shape[p][0] * shape[p][1];
    float *want = calloc((size_t)nc, sizeof(float)), *got = calloc((size_t)nc, sizeof(float));
    double diff = 0, scale = 0;
    if (!want || !got) { free(want); free(got); dn_free(&plain); dn_free(&packed); ok = 0; break; }
    const float *a0 = p == 0 ? inp[0] : dout[0], *b0 = p == 2 ? inp[0] : W[0];
    if (p == 0) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, (int)OC, (int)C, 1.0f, a0, (int)C, b0, (int)C, 0.0f, want, (int)OC);
    if (p == 1) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)N, (int)C, (int)OC, 1.0f, a0, (int)OC, b0, (int)C, 0.0f, want, (int)C);
    if (p == 2) cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)OC, (int)C, (int)N, 1.0f, a0, (int)OC, b0, (int)C, 0.0f, want, (int)C);
    for (int k = 0; k < (p < 2 ? 2 : 1); k++) {
      memset(got, 0, (size_t)nc * sizeof(float));
      dn_run(k ? &packed : &plain, a0, b0, got, k ? 3 : 1);
      for (int64_t i = 0; i < nc; i++) {
        double e = fabs((double)got[i] - want[i]);
        if (!(e <= diff)) diff = e;   /* a NaN counts */
        if (fabs((double)want[i]) > scale) scale = fabs((double)want[i]);
      }
    }
    diff = scale > 0 ? diff / scale : diff;
    free(want); free(got);
    for (int r = -1; r < reps; r++) {   /* r = -1 warms up */
      double tr[NIMPL] = {0};
      for (int l = 0; l < count; l++) {
        const float *a = p == 0 ? inp[l] : dout[l], *b = p == 2 ? inp[l] : W[l];
        float *c = p == 0 ? out : p == 1 ? dinp : dW;
        double t0 = lm_time_sec();
        if (p == 0) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, (int)OC, (int)C, 1.0f, a, (int)C, b, (int)C, 1.0f, c, (int)OC);
        if (p == 1) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)N, (int)C, (int)OC, 1.0f, a, (int)OC, b, (int)C, 1.0f, c, (int)C);
        if (p == 2) cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)OC, (int)C, (int)N, 1.0f, a, (int)OC, b, (int)C, 1.0f, c, (int)C);
        tr[CBLAS] += lm_time_sec() - t0;
        tr[PLAIN] += dn_run(&plain, a, b, c, 1);
        if (p < 2) {
          tr[REORDER] += dn_run(&packed, a, b, c, 2);
          tr[PACKED] += dn_run(&packed, a, b, c, 1);
        }
      }
      if (p == 2) tr[PACKED] = tr[PLAIN];
      for (int i = 0; r >= 0 && i < NIMPL; i++) t[i * reps + r] = tr[i];
    }
    printf("{\"rows\": %lld, \"in\": %lld, \"out\": %lld, \"count\": %d, \"product\": \"%s\", \"max_rel_diff\": %.2g",
           (long long)N, (long long)C, (long long)OC, count, name[p], diff);
    for (int i = 0; i < NIMPL; i++) {
      double med = bench_median(t + i * reps, reps);
      step[i] += med;
      printf(", \"%s_ms\": %.3f", IMPL[i], 1e3 * med);
    }
    printf("}\n");
    dn_free(&plain); dn_free(&packed);
  }
  for (int l = 0; l < count; l++) { if (inp) lm_free(inp[l]); if (W) lm_free(W[l]); if (dout) lm_free(dout[l]); }
  free(inp); free(W); free(dout); free(t);
  lm_free(out); lm_free(dinp); lm_free(dW);
  return ok;
}

int main(int argc, char **argv) {
  if (argc < 4) { fprintf(stderr, "usage: %s LAYERS DIM ROWS [VOCAB] [REPS]\n", argv[0]); return 2; }
  int L = atoi(argv[1]), reps = argc > 5 ? atoi(argv[5]) : 7;
  int64_t C = atoll(argv[2]), N = atoll(argv[3]), V = argc > 4 ? atoll(argv[4]) : 50257;
  if (L < 1 || C < 1 || N < 1 || V < 1 || reps < 1) { fprintf(stderr, "LAYERS, DIM, ROWS, VOCAB, REPS: positive\n"); return 2; }
  lm_set_threads(getenv("OMP_NUM_THREADS") ? atoi(getenv("OMP_NUM_THREADS")) : 0);
  if (dnnl_engine_create(&eng, dnnl_cpu, 0) != dnnl_success ||
      dnnl_stream_create(&stream, eng, dnnl_stream_default_flags) != dnnl_success) { fprintf(stderr, "no oneDNN engine\n"); return 1; }
  printf("{\"layers\": %d, \"dim\": %lld, \"rows\": %lld, \"vocab\": %lld, \"threads\": %d, \"reps\": %d}\n", L,
         (long long)C, (long long)N, (long long)V, lm_get_threads(), reps);
  /* a GPT-2 block: qkv, attention projection, MLP up and down; then the LM head */
  int ok = layer(N, C, 3 * C, L, reps) && layer(N, C, C, L, reps) && layer(N, C, 4 * C, L, reps) &&
           layer(N, 4 * C, C, L, reps) && layer(N, C, V, 1, reps);
  printf("{\"step\": true");
  for (int i = 0; i < NIMPL; i++) printf(", \"%s_ms\": %.1f", IMPL[i], 1e3 * step[i]);
  printf("}\n");
  dnnl_stream_destroy(stream);
  dnnl_engine_destroy(eng);
  return ok ? 0 : 1;
}
