/* mm.c — the linear layers' matrix products through oneDNN in bf16 (see mm.h for the contract).
 *
 * Every product is one oneDNN matmul, dst(M,Nc) [+]= src(M,K) wei(K,Nc), on plain row-major
 * buffers described by strides, so transposes cost nothing:
 *   forward      out(N,OC)  = inp(N,C)      W^T(C,OC)    W read through strides (1, C)
 *   d input      dinp(N,C) += dout(N,OC)    W(OC,C)
 *   d weight     dW(OC,C)  += dout^T(OC,N)  inp(N,C)     dout read through strides (1, OC)
 * src and wei are bf16, dst fp32; "+=" is a sum post-op (fp32, as the accumulation). The bias
 * is pre-filled into out (then a sum post-op too), and its gradient is matmul.c's.
 *
 * Caches, all in the engine: primitives by (M, Nc, K, transposes, accumulate); bf16 weights by
 * address, valid while their version equals the engine's (lm_mm_invalidate bumps it; the trainer's
 * AdamW pass writes the new copies and claims them current, lm_mm_weight_claim); the rounded
 * inp / dout and the primitives' scratchpad in buffers that grow to the largest call and stay.
 * A product of many rows (PACK_ROWS) first reorders wei into oneDNN's blocked layout (one buffer
 * of the engine's), which it reads faster than the plain one.
 * After the first step nothing is allocated.
 *
 * A primitive oneDNN cannot build (an out-of-memory, an unsupported shape) makes that call run
 * in fp32 through matmul.c, counted by lm_mm_fallbacks and said once on stderr: slower, never a
 * wrong answer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <oneapi/dnnl/dnnl.h>
#include "base/base.h"
#include "kernels/kernels.h"
#include "kernels/mm.h"

/* From this many rows (M) on, a product reads wei in the blocked layout oneDNN prefers, reordered
 * into it on each call: the reorder costs ~K*Nc, oneDNN's own copying of a plain wei inside the
 * product ~M*K*Nc / block (it is repacked per block of rows). Measured on Zen 5 (one thread):
 * the LM head's weight gradient at M = 50257 353 -> 310 ms, its input gradient at M = 2048 300 ->
 * 233 + 28 ms; at M = 256 the reorder costs more than it saves (2.60 -> 2.41 + 0.59 ms). */
#define PACK_ROWS 1024

typedef struct {
  int64_t M, Nc, K;
  int ta, tb, acc;             /* src stored transposed, wei stored transposed, dst accumulated */
  dnnl_primitive_t prim;
  dnnl_memory_desc_t src, wei, dst, scratch;
  dnnl_primitive_t pack;       /* the reorder of wei into the layout prim reads (NULL: it reads wei as is) */
  dnnl_memory_desc_t packed;   /* that layout */
} mm_prim;

typedef struct {
  const float *w;              /* the fp32 weight (the key) */
  int64_t n;                   /* its elements */
  uint16_t *bf;                /* its bf16 copy */
  uint64_t version;            /* the engine's version when bf was rounded */
} mm_weight;

struct lm_mm {
  dnnl_engine_t eng;
  dnnl_stream_t stream;
  mm_prim *prims; int n_prims, cap_prims;
  mm_weight *weights; int n_weights, cap_weights;
  uint64_t version;
  uint16_t *act; size_t act_cap;     /* inp rounded to bf16 (elements) */
  uint16_t *grad; size_t grad_cap;   /* dout rounded to bf16 */
  void *scratch; size_t scratch_cap; /* bytes */
  void *packed; size_t packed_cap;   /* wei in the layout of a product of PACK_ROWS rows or more (bytes) */
  int64_t fallbacks;
};

/* ------------------------------------------------------------------ bf16 rounding */

void lm_f32_to_bf16(uint16_t *dst, const float *src, int64_t n) {
  #pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; i++) dst[i] = lm_bf16_round(src[i]);
}

void lm_bf16_to_f32(float *dst, const uint16_t *src, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    uint32_t u = (uint32_t)src[i] << 16;
    memcpy(&dst[i], &u, 4);
  }
}

/* ------------------------------------------------------------------ the engine */

static const struct { dnnl_cpu_isa_t isa; const char *name; } ISA_NAMES[] = {
  {dnnl_cpu_isa_avx512_core_amx, "avx512_core_amx"}, {dnnl_cpu_isa_avx512_core_bf16, "avx512_core_bf16"},
  {dnnl_cpu_isa_avx512_core_vnni, "avx512_core_vnni"}, {dnnl_cpu_isa_avx512_core, "avx512_core"},
  {dnnl_cpu_isa_avx2_vnni, "avx2_vnni"}, {dnnl_cpu_isa_avx2, "avx2"}, {dnnl_cpu_isa_avx, "avx"},
  {dnnl_cpu_isa_sse41, "sse41"},
};

int lm_mm_bf16_native(char *isa, size_t n) {
  dnnl_cpu_isa_t e = dnnl_get_effective_cpu_isa();
  if (isa && n) {
    snprintf(isa, n, "0x%x", (unsigned)e);
    for (size_t i = 0; i < sizeof ISA_NAMES / sizeof *ISA_NAMES; i++)
      if ((e & ISA_NAMES[i].isa) == ISA_NAMES[i].isa) { snprintf(isa, n, "%s", ISA_NAMES[i].name); break; }
  }
  return (e & dnnl_cpu_isa_avx512_core_bf16) == dnnl_cpu_isa_avx512_core_bf16;
}

lm_status lm_mm_create(lm_mm **out) {
  *out = NULL;
  char isa[64];
  if (!lm_mm_bf16_native(isa, sizeof isa))
    return lm_error(LM_ERR_UNSUPPORTED, "this CPU has no bf16 matrix products (oneDNN's ISA: %s; AVX512-BF16 or AMX "
                    "needed)", isa);
  lm_mm *mm = calloc(1, sizeof *mm);
  if (!mm) return lm_error(LM_ERR_NOMEM, "out of memory for the bf16 engine");
  if (dnnl_engine_create(&mm->eng, dnnl_cpu, 0) != dnnl_success ||
      dnnl_stream_create(&mm->stream, mm->eng, dnnl_stream_default_flags) != dnnl_success) {
    lm_mm_free(mm);
    return lm_error(LM_ERR_UNSUPPORTED, "oneDNN: cannot create a CPU engine and stream");
  }
  mm->version = 1;
  *out = mm;
  return LM_OK;
}

void lm_mm_free(lm_mm *mm) {
  if (!mm) return;
  for (int i = 0; i < mm->n_prims; i++) {
    dnnl_primitive_destroy(mm->prims[i].prim);
    if (mm->prims[i].pack) dnnl_primitive_destroy(mm->prims[i].pack);
  }
  for (int i = 0; i < mm->n_weights; i++) lm_free(mm->weights[i].bf);
  free(mm->prims); free(mm->weights);
  lm_free(mm->act); lm_free(mm->grad); lm_free(mm->scratch); lm_free(mm->packed);
  if (mm->stream) dnnl_stream_destroy(mm->stream);
  if (mm->eng) dnnl_engine_destroy(mm->eng);
  free(mm);
}

void lm_mm_invalidate(lm_mm *mm) { if (mm) mm->version++; }

int64_t lm_mm_fallbacks(const lm_mm *mm) { return mm ? mm->fallbacks : 0; }

/* grows *buf to at least need bytes (contents lost); 0 on failure */
static int grow(void **buf, size_t *cap, size_t need) {
  if (*cap >= need) return 1;
  lm_free(*buf);
  *buf = lm_alloc(need);
  *cap = *buf ? need : 0;
  return *buf != NULL;
}

/* the cache entry of exactly (W, n); NULL when there is none */
static mm_weight *weight_find(lm_mm *mm, const float *W, int64_t n) {
  for (int i = 0; i < mm->n_weights; i++)
    if (mm->weights[i].w == W && mm->weights[i].n == n) return &mm->weights[i];
  return NULL;
}

uint16_t *lm_mm_weight_claim(lm_mm *mm, const float *W, int64_t n) {
  mm_weight *e = mm ? weight_find(mm, W, n) : NULL;
  if (!e) return NULL;
  e->version = mm->version;
  return e->bf;
}

/* the bf16 copy of W (n elements), rounded now if it is stale or new; NULL when out of memory */
static const uint16_t *weight_bf16(lm_mm *mm, const float *W, int64_t n) {
  mm_weight *e = weight_find(mm, W, n);
  if (!e) {
    if (mm->n_weights == mm->cap_weights) {
      int cap = mm->cap_weights ? 2 * mm->cap_weights : 64;
      mm_weight *t = realloc(mm->weights, (size_t)cap * sizeof *t);
      if (!t) return NULL;
      mm->weights = t; mm->cap_weights = cap;
    }
    uint16_t *bf = lm_alloc((size_t)n * sizeof(uint16_t));
    if (!bf) return NULL;
    e = &mm->weights[mm->n_weights++];
    *e = (mm_weight){.w = W, .n = n, .bf = bf, .version = 0};
  }
  if (e->version != mm->version) {
    lm_f32_to_bf16(e->bf, W, n);
    e->version = mm->version;
  }
  return e->bf;
}

/* the primitive of dst(M,Nc) [+]= src(M,K) wei(K,Nc); src stored (K,M) when ta, wei stored (Nc,K)
 * when tb; NULL when oneDNN cannot build it */
static mm_prim *prim_get(lm_mm *mm, int64_t M, int64_t Nc, int64_t K, int ta, int tb, int acc) {
  for (int i = 0; i < mm->n_prims; i++) {
    mm_prim *p = &mm->prims[i];
    if (p->M == M && p->Nc == Nc && p->K == K && p->ta == ta && p->tb == tb && p->acc == acc) return p;
  }
  if (mm->n_prims == mm->cap_prims) {
    int cap = mm->cap_prims ? 2 * mm->cap_prims : 32;
    mm_prim *t = realloc(mm->prims, (size_t)cap * sizeof *t);
    if (!t) return NULL;
    mm->prims = t; mm->cap_prims = cap;
  }
  mm_prim p = {.M = M, .Nc = Nc, .K = K, .ta = ta, .tb = tb, .acc = acc};
  dnnl_dims_t sd = {M, K}, wd = {K, Nc}, dd = {M, Nc};
  dnnl_dims_t ss = {ta ? 1 : K, ta ? M : 1}, ws = {tb ? 1 : Nc, tb ? K : 1}, ds = {Nc, 1};
  dnnl_matmul_desc_t desc;
  dnnl_primitive_attr_t attr = NULL;
  dnnl_post_ops_t ops = NULL;
  dnnl_primitive_desc_t pd = NULL;
  int pack = M >= PACK_ROWS;
  int ok = dnnl_memory_desc_init_by_strides(&p.src, 2, sd, dnnl_bf16, ss) == dnnl_success &&
           dnnl_memory_desc_init_by_strides(&p.wei, 2, wd, dnnl_bf16, ws) == dnnl_success &&
           dnnl_memory_desc_init_by_strides(&p.dst, 2, dd, dnnl_f32, ds) == dnnl_success &&
           (!pack || dnnl_memory_desc_init_by_tag(&p.packed, 2, wd, dnnl_bf16, dnnl_format_tag_any) == dnnl_success) &&
           dnnl_matmul_desc_init(&desc, &p.src, pack ? &p.packed : &p.wei, NULL, &p.dst) == dnnl_success &&
           dnnl_primitive_attr_create(&attr) == dnnl_success &&
           dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user) == dnnl_success;
  if (ok && acc)
    ok = dnnl_post_ops_create(&ops) == dnnl_success && dnnl_post_ops_append_sum(ops, 1.0f) == dnnl_success &&
         dnnl_primitive_attr_set_post_ops(attr, ops) == dnnl_success;
  ok = ok && dnnl_primitive_desc_create(&pd, &desc, attr, mm->eng, NULL) == dnnl_success;
  if (ok) {
    p.scratch = *dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    size_t need = dnnl_memory_desc_get_size(&p.scratch);
    ok = grow(&mm->scratch, &mm->scratch_cap, need > 64 ? need : 64) &&
         dnnl_primitive_create(&p.prim, pd) == dnnl_success;
  }
  if (ok && pack) {   /* the layout it chose; a reorder into it unless that is wei's own */
    p.packed = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    dnnl_primitive_desc_t rpd = NULL;
    if (!dnnl_memory_desc_equal(&p.packed, &p.wei))
      ok = grow(&mm->packed, &mm->packed_cap, dnnl_memory_desc_get_size(&p.packed)) &&
           dnnl_reorder_primitive_desc_create(&rpd, &p.wei, mm->eng, &p.packed, mm->eng, NULL) == dnnl_success &&
           dnnl_primitive_create(&p.pack, rpd) == dnnl_success;
    if (rpd) dnnl_primitive_desc_destroy(rpd);
    if (!ok && p.prim) dnnl_primitive_destroy(p.prim);
  }
  if (pd) dnnl_primitive_desc_destroy(pd);
  if (ops) dnnl_post_ops_destroy(ops);
  if (attr) dnnl_primitive_attr_destroy(attr);
  if (!ok) return NULL;
  mm->prims[mm->n_prims] = p;
  return &mm->prims[mm->n_prims++];
}

/* runs dst [+]= src wei through a cached primitive; 0 when oneDNN failed */
static int gemm_bf16(lm_mm *mm, float *dst, const uint16_t *src, const uint16_t *wei, int64_t M, int64_t Nc,
                     int64_t K, int ta, int tb, int acc) {
  mm_prim *p = prim_get(mm, M, Nc, K, ta, tb, acc);
  if (!p) return 0;
  dnnl_memory_t ms = NULL, mw = NULL, md = NULL, mp = NULL, mk = NULL;
  int ok = dnnl_memory_create(&ms, &p->src, mm->eng, (void *)src) == dnnl_success &&
           dnnl_memory_create(&mw, &p->wei, mm->eng, (void *)wei) == dnnl_success &&
           dnnl_memory_create(&md, &p->dst, mm->eng, dst) == dnnl_success &&
           dnnl_memory_create(&mp, &p->scratch, mm->eng, mm->scratch) == dnnl_success &&
           (!p->pack || dnnl_memory_create(&mk, &p->packed, mm->eng, mm->packed) == dnnl_success);
  if (ok && p->pack) {
    dnnl_exec_arg_t args[] = {{DNNL_ARG_FROM, mw}, {DNNL_ARG_TO, mk}};
    ok = dnnl_primitive_execute(p->pack, mm->stream, 2, args) == dnnl_success;
  }
  if (ok) {
    dnnl_exec_arg_t args[] = {{DNNL_ARG_SRC, ms}, {DNNL_ARG_WEIGHTS, mk ? mk : mw}, {DNNL_ARG_DST, md},
                              {DNNL_ARG_SCRATCHPAD, mp}};
    ok = dnnl_primitive_execute(p->prim, mm->stream, 4, args) == dnnl_success &&
         dnnl_stream_wait(mm->stream) == dnnl_success;
  }
  if (ms) dnnl_memory_destroy(ms);
  if (mw) dnnl_memory_destroy(mw);
  if (mk) dnnl_memory_destroy(mk);
  if (md) dnnl_memory_destroy(md);
  if (mp) dnnl_memory_destroy(mp);
  return ok;
}

/* a product oneDNN refused: counted, said once, and done in fp32 by the caller */
static void fell_back(lm_mm *mm, const char *what, int64_t M, int64_t Nc, int64_t K) {
  if (mm->fallbacks++ == 0)
    fprintf(stderr, "lmkit: note: oneDNN could not run a bf16 %s product (%lld x %lld x %lld); such products run "
            "in fp32\n", what, (long long)M, (long long)Nc, (long long)K);
}

/* ------------------------------------------------------------------ the linear layer */

void lm_linear_forward(lm_mm *mm, float *out, const float *inp, const float *W, const float *b, int64_t N,
                       int64_t C, int64_t OC) {
  if (!mm || N <= 0 || OC <= 0 || C <= 0) { matmul_forward(out, inp, W, b, N, C, OC); return; }
  const uint16_t *wb = weight_bf16(mm, W, OC * C);
  if (wb && grow((void **)&mm->act, &mm->act_cap, (size_t)(N * C) * sizeof(uint16_t))) {
    lm_f32_to_bf16(mm->act, inp, N * C);
    if (b) {
      #pragma omp parallel for schedule(static) if (N * OC > 65536)
      for (int64_t n = 0; n < N; n++) memcpy(out + n * OC, b, (size_t)OC * sizeof(float));
    }
    if (gemm_bf16(mm, out, mm->act, wb, N, OC, C, 0, 1, b != NULL)) return;               // (N,OC)
  }
  fell_back(mm, "forward", N, OC, C);
  matmul_forward(out, inp, W, b, N, C, OC);
}

void lm_linear_backward(lm_mm *mm, float *dinp, float *dW, float *db, const float *dout, const float *inp,
                        const float *W, int64_t N, int64_t C, int64_t OC) {
  if (!mm || N <= 0 || OC <= 0 || C <= 0) { matmul_backward(dinp, dW, db, dout, inp, W, N, C, OC); return; }
  if (db) matmul_backward(NULL, NULL, db, dout, inp, W, N, C, OC);   /* fp32 column sums */
  if (!dinp && !dW) return;
  int ok = grow((void **)&mm->grad, &mm->grad_cap, (size_t)(N * OC) * sizeof(uint16_t));
  if (ok) lm_f32_to_bf16(mm->grad, dout, N * OC);
  if (dinp) {
    const uint16_t *wb = ok ? weight_bf16(mm, W, OC * C) : NULL;
    if (!wb || !gemm_bf16(mm, dinp, mm->grad, wb, N, C, OC, 0, 0, 1)) {                  // (N,C) += (N,OC)(OC,C)
      fell_back(mm, "input-gradient", N, C, OC);
      matmul_backward(dinp, NULL, NULL, dout, inp, W, N, C, OC);
    }
  }
  if (dW) {
    int okw = ok && grow((void **)&mm->act, &mm->act_cap, (size_t)(N * C) * sizeof(uint16_t));
    if (okw) lm_f32_to_bf16(mm->act, inp, N * C);
    if (!okw || !gemm_bf16(mm, dW, mm->grad, mm->act, OC, C, N, 1, 0, 1)) {               // (OC,C) += (OC,N)(N,C)
      fell_back(mm, "weight-gradient", OC, C, N);
      matmul_backward(NULL, dW, NULL, dout, inp, W, N, C, OC);
    }
  }
}
