/* cmd_info.c — `lmkit info`: a model directory's config, size and tokenizer;
 * with --system, the BLAS library, its core type and thread count (so that
 * traps such as OPENBLAS_CORETYPE=Haswell on an AVX-512 machine are visible). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>
#include "cli.h"
#include "model/model.h"
#include "kernels/mm.h"

extern char *openblas_get_config(void) __attribute__((weak));
extern char *openblas_get_corename(void) __attribute__((weak));
extern int openblas_get_num_threads(void) __attribute__((weak));

static const char *HELP =
  "usage: lmkit info DIR          a model directory's config, parameters and tokenizer\n"
  "       lmkit info --system     BLAS library, core type and threads in use, bf16 support\n"
  "  --threads N                  threads (default: all cores)\n";

static void system_info(void) {
  printf("cores:            %d\n", omp_get_num_procs());
  printf("threads:          %d (OpenMP)\n", lm_get_threads());
  printf("blas:             %s\n", openblas_get_config ? openblas_get_config() : "unknown (not OpenBLAS)");
  printf("blas core type:   %s\n", openblas_get_corename ? openblas_get_corename() : "unknown");
  printf("blas threads:     %d\n", openblas_get_num_threads ? openblas_get_num_threads() : -1);
  char isa[64];
  int bf16 = lm_mm_bf16_native(isa, sizeof isa);
  printf("bf16 products:    %s (oneDNN, ISA %s)%s\n", bf16 ? "yes" : "no", isa,
         bf16 ? "" : ": train --precision bf16 runs in fp32");
  const char *ct = getenv("OPENBLAS_CORETYPE");
  if (ct) printf("OPENBLAS_CORETYPE=%s is set: it forces that kernel family; unset it for full speed on newer CPUs\n", ct);
}

int cmd_info(int argc, char **argv) {
  const char *dir = NULL, *v;
  int sys = 0, r;
  int64_t threads = 0;
  for (int i = 1; i < argc; i++) {
    if (cli_is_help(argv[i])) { fputs(HELP, stdout); return 0; }
    if (!strcmp(argv[i], "--system")) { sys = 1; continue; }
    if ((r = cli_opt(argc, argv, &i, "--threads", &v))) { if (r < 0 || cli_i64("--threads", v, 1, 4096, &threads)) return 1; continue; }
    if (argv[i][0] == '-') return cli_unknown("info", argv[i]);
    if (dir) return cli_error("info takes one model directory");
    dir = argv[i];
  }
  lm_set_threads((int)threads);
  if (sys) system_info();
  if (!dir) return sys ? 0 : cli_error("give a model directory or --system (see 'lmkit info --help')");
  lm_model *m;
  if (lm_model_load(&m, dir)) return cli_fail();
  const lm_config *c = lm_model_config(m);
  static const char *norms[] = {"layernorm", "rmsnorm"}, *acts[] = {"gelu_tanh", "gelu_erf", "relu", "silu"};
  printf("model:            %s (%s)\n", dir, lm_arch_name(c->arch));
  printf("parameters:       %lld (%.2fM)\n", (long long)lm_model_num_params(m), lm_model_num_params(m) / 1e6);
  if (m->fam->describe) {   /* a model that is not a stack of blocks (src/model/classic/) says what it is */
    m->fam->describe(m, stdout);
    goto tokenizer;
  }
  if (c->n_enc_layer > 0)
    printf("layers:           %lld encoder + %lld decoder (cross-attention)\n", (long long)c->n_enc_layer, (long long)c->n_layer);
  else
    printf("layers:           %lld\n", (long long)c->n_layer);
  printf("heads:            %lld", (long long)c->n_head);
  if (c->n_kv_head && c->n_kv_head != c->n_head) printf(" (%lld key/value heads: grouped-query attention)", (long long)c->n_kv_head);
  printf("\n");
  printf("width:            %lld (ffn %lld)\n", (long long)c->n_embd, (long long)(c->n_inner ? c->n_inner : 4 * c->n_embd));
  printf("context:          %lld\n", (long long)c->n_positions);
  printf("vocab:            %lld\n", (long long)c->vocab_size);
  printf("block:            %s, %s, %s%s, %s attention%s%s%s\n", c->pre_ln ? "pre-LN" : "post-LN", norms[c->norm],
         c->glu ? "gated " : "", acts[c->act], c->causal ? "causal" : "bidirectional",
         c->rope ? ", rotary positions" : "", c->qkv_bias && !c->bias ? ", q/k/v biases" : "",
         c->tie_embeddings ? ", tied LM head" : "");
  if (c->rope)
    printf("rope:             theta %g%s\n", (double)c->rope_theta, c->rope_scaling ? ", llama3 scaling" : "");
  if (c->sliding_window) printf("sliding window:   %lld\n", (long long)c->sliding_window);
  if (c->head_dim || c->attn_unscaled)
    printf("attention:        heads of %lld%s\n", (long long)(c->head_dim ? c->head_dim : c->n_embd / c->n_head),
           c->attn_unscaled ? ", scores not scaled by 1/sqrt(d)" : "");
  if (c->rel_buckets > 0)
    printf("positions:        relative bias, %lld buckets up to distance %lld\n", (long long)c->rel_buckets,
           (long long)c->rel_max_distance);
tokenizer:;
  lm_tokenizer *tok;
  if (lm_tokenizer_load(&tok, dir) == LM_OK) {
    printf("tokenizer:        %lld ids, end-of-text id %lld\n", (long long)lm_tokenizer_vocab_size(tok), (long long)lm_tokenizer_eot(tok));
    lm_tokenizer_free(tok);
  } else {
    printf("tokenizer:        none (%s)\n", lm_last_error());
  }
  lm_model_free(m);
  return 0;
}
