/* lora_flags.c — LoRA on the command line, one way for every command: the
 * training flags of sft, reward and dpo (--lora-rank, --lora-alpha,
 * --lora-targets), and loading a base model with a PEFT adapter (--adapter DIR
 * in generate, eval and the post-training commands). See cli.h and
 * src/model/lora.h. */
#include <stdlib.h>
#include <string.h>
#include "cli.h"
#include "base/base.h"
#include "model/lora.h"

const char *const CLI_LORA_FLAGS_HELP =
  "LoRA (the base is frozen; only the adapters, and a new task head, train):\n"
  "  --lora-rank R        train LoRA adapters of rank R instead of the whole model\n"
  "  --lora-alpha A       scale the update by A/R (default: 2R)\n"
  "  --lora-targets T     all-linear | attn | mlp: which linears of every block (all-linear)\n"
  "                       OUT then holds the adapter as PEFT writes it (adapter_config.json +\n"
  "                       adapter_model.safetensors); 'lmkit lora merge' makes a full model\n";

int cli_lora_flag(int argc, char **argv, int *i, cli_lora *l) {
  const char *a = argv[*i], *v;
  int r;
  if ((r = cli_opt(argc, argv, i, "--lora-rank", &v))) {
    if (r < 0 || cli_i64(a, v, 1, 65536, &l->rank)) return -1;
    l->seen = a; return 1;
  }
  if ((r = cli_opt(argc, argv, i, "--lora-alpha", &v))) {
    if (r < 0 || cli_f32(a, v, 1e-6f, 1e6f, &l->alpha)) return -1;
    l->seen = a; return 1;
  }
  if ((r = cli_opt(argc, argv, i, "--lora-targets", &v))) {
    if (r < 0) return -1;
    lm_lora_targets t;
    if (lm_lora_targets_parse(v, &t)) { cli_error("invalid value for %s: '%s' (all-linear, attn or mlp)", a, v); return -1; }
    l->targets = v; l->seen = a; return 1;
  }
  return 0;
}

int cli_lora_check(const cli_lora *l) {
  if (!l->rank && (l->alpha > 0 || l->targets))
    return cli_error("--lora-alpha and --lora-targets need --lora-rank R");
  return 0;
}

int cli_lora_attach(lm_model *m, const cli_lora *l, const char *base_model, uint64_t seed) {
  if (!l->rank) return 0;
  lm_lora_opts o = {.rank = l->rank, .alpha = l->alpha > 0 ? l->alpha : 2.0f * (float)l->rank, .seed = seed,
                    .base_model = base_model, .targets = LM_LORA_ALL_LINEAR};
  if (l->targets && lm_lora_targets_parse(l->targets, &o.targets)) return cli_fail();
  if (lm_lora_attach(m, &o)) return cli_fail();
  return 0;
}

int cli_load_with_adapter(const char *model, const char *adapter, int merge, lm_model **m, char **base_dir) {
  *m = NULL;
  char *base = NULL;
  if (!model && !adapter) return cli_error("--model DIR is required");
  if (!model && lm_lora_base_model(adapter, &base)) return cli_fail();
  if (model && !(base = lm_strdup(model))) return cli_error("out of memory");
  if (lm_model_load(m, base)) {
    int rc = cli_fail();
    if (!model) fprintf(stderr, "lmkit: (the base named by %s/adapter_config.json; --model DIR names another)\n", adapter);
    free(base);
    return rc;
  }
  if (adapter && (lm_lora_load(*m, adapter) || (merge && lm_lora_merge(*m)))) {
    int rc = cli_fail();
    lm_model_free(*m); *m = NULL; free(base);
    return rc;
  }
  if (base_dir) *base_dir = base; else free(base);
  return 0;
}
