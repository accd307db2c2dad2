/* lora_flags.c — LoRA on the command line, one way for every command: the
 * training flags of sft, reward and dpo (--lora-rank, --lora-alpha,
 * --lora-targets), and loading a base model with a PEFT adapter (--adapter DIR
 * in generate, eval and the post-training commands). See cli.h and
 * src/model/lora.h. */
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "model/gguf.h"
#include "cli.h"
#include "base/base.h"
#include "model/heads.h"
#include "model/lora.h"
#include "model/safetensors.h"

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

/* The head an adapter trained along (modules_to_save) of a sequence-classification task: a reward
 * model's scalar head (one label) or a classifier's; -1 when it has none (the base's head serves). */
static int adapter_head(const char *adapter, int64_t *num_labels) {
  *num_labels = 0;
  char *cpath = lm_path_join(adapter, "adapter_config.json"), *wpath = lm_path_join(adapter, "adapter_model.safetensors");
  char *text = NULL;
  size_t len = 0;
  int head = -1;
  cJSON *j = NULL;
  if (cpath && wpath && lm_file_exists(cpath) && !lm_read_file(cpath, &text, &len) && (j = cJSON_ParseWithLength(text, len))) {
    const cJSON *tt = cJSON_GetObjectItemCaseSensitive(j, "task_type");
    lm_st_file *f = NULL;
    if (cJSON_IsString(tt) && !strcmp(tt->valuestring, "SEQ_CLS") && lm_file_exists(wpath) && !lm_st_open(&f, wpath)) {
      for (int i = 0; i < lm_st_count(f); i++) {
        const char *nm = lm_st_name(f, i);
        if (strstr(nm, ".lora_A.") || strstr(nm, ".lora_B.") || lm_st_ndim(f, i) != 2) continue;
        *num_labels = lm_st_shape(f, i)[0];   /* the head's weight: (num_labels, C) */
        head = *num_labels == 1 ? LM_HEAD_SCALAR : LM_HEAD_CLASSIFY;
        break;
      }
      lm_st_close(f);
    }
  }
  cJSON_Delete(j);
  free(text); free(cpath); free(wpath);
  lm_clear_error();
  return head;
}

int cli_load_with_adapter(const char *model, const char *adapter, int merge, lm_model **m, char **base_dir) {
  *m = NULL;
  char *base = NULL;
  if (!model && !adapter) return cli_error("--model DIR is required");
  if (!model && lm_lora_base_model(adapter, &base)) return cli_fail();
  if (model && !(base = lm_strdup(model))) return cli_error("out of memory");
  int64_t labels = 0;
  int head = adapter ? adapter_head(adapter, &labels) : -1;
  /* an adapter with a trained task head (lmkit reward --lora-rank): the base gets that head, the file fills it */
  if (head >= 0 ? lm_model_load_head(m, base, head, labels, 0)
      : merge == CLI_LOAD_GENERATE && !adapter ? lm_model_load_infer(m, base) : lm_model_load(m, base)) {
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
