/* ref_heads.c — driver for the task-head part of tests/reference/test_hf_gpt2.py:
 * loads a model directory (any head), runs one forward over a batch and
 * writes the head's output, and optionally saves the model, so the test can
 * compare with a PyTorch computation on the Hugging Face tensors and read
 * back what lmkit writes.
 *
 * usage: ref_heads DIR IDS.bin B T OUT.bin [--mask MASK.bin] [--head NAME --labels N --seed S] [--save DIR2]
 *   IDS.bin int32 (B*T); MASK.bin uint8 (B*T) key padding mask (else none).
 *   Without --head: lm_model_load(DIR). With it: lm_model_load_head(DIR, NAME, N, S) (N 0 keeps
 *   the config's labels).
 *   OUT.bin: the head output as float32 (lm_model_logits: classify (B,L), scalar (B),
 *   tokens (B,T,L), qa (B,T,2), lm (B,T,V)).
 *   stdout: "head NAME labels N pad P" and, for sequence heads, "pool i0 i1 ..." (the pooled tokens).
 *   --save DIR2: lm_model_save(DIR2) after the forward.
 * Exit status 0 on success; on failure 1 with lm_last_error() on stderr. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/base.h"
#include "model/heads.h"
#include "model/model.h"

static void *read_all(const char *path, size_t bytes) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  void *buf = malloc(bytes ? bytes : 1);
  if (fread(buf, 1, bytes, f) != bytes) { free(buf); buf = NULL; }
  fclose(f);
  return buf;
}

static int fail(const char *what) {
  fprintf(stderr, "ref_heads: %s: %s\n", what, lm_last_error());
  return 1;
}

int main(int argc, char **argv) {
  if (argc < 6) {
    fprintf(stderr, "usage: ref_heads DIR IDS.bin B T OUT.bin [--mask MASK.bin] [--head NAME --labels N --seed S] [--save DIR2]\n");
    return 2;
  }
  const char *dir = argv[1], *ids_path = argv[2], *out_path = argv[5];
  int64_t B = atoll(argv[3]), T = atoll(argv[4]), labels = 0;
  const char *mask_path = NULL, *head_name = NULL, *save = NULL;
  uint64_t seed = 0;
  for (int i = 6; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--mask")) mask_path = argv[i + 1];
    else if (!strcmp(argv[i], "--head")) head_name = argv[i + 1];
    else if (!strcmp(argv[i], "--labels")) labels = atoll(argv[i + 1]);
    else if (!strcmp(argv[i], "--seed")) seed = (uint64_t)atoll(argv[i + 1]);
    else if (!strcmp(argv[i], "--save")) save = argv[i + 1];
    else { fprintf(stderr, "ref_heads: unknown option %s\n", argv[i]); return 2; }
  }
  lm_set_threads(1);
  lm_model *m;
  if (head_name) {
    int h = lm_head_from_name(head_name);
    if (h < 0) { fprintf(stderr, "ref_heads: unknown head %s\n", head_name); return 2; }
    if (lm_model_load_head(&m, dir, h, labels, seed)) return fail("load");
  } else if (lm_model_load(&m, dir)) return fail("load");
  const lm_config *c = &m->cfg;
  int32_t *ids = read_all(ids_path, (size_t)(B * T) * 4);
  uint8_t *mask = mask_path ? read_all(mask_path, (size_t)(B * T)) : NULL;
  if (!ids || (mask_path && !mask)) { fprintf(stderr, "ref_heads: cannot read the ids or the mask\n"); return 1; }
  int64_t NL = c->head == LM_HEAD_SCALAR ? 1 : c->num_labels;
  int64_t n_out = c->head == LM_HEAD_CLASSIFY ? B * NL : c->head == LM_HEAD_SCALAR ? B
                : c->head == LM_HEAD_TOKENS ? B * T * NL : c->head == LM_HEAD_QA ? B * T * 2
                : c->head == LM_HEAD_LM ? B * T * c->vocab_size : -1;
  if (n_out < 0) { fprintf(stderr, "ref_heads: head %s has no single output\n", lm_head_name(c->head)); return 1; }
  if (lm_model_reserve(m, B, T, 0)) return fail("reserve");
  lm_batch b = {.ids = ids, .mask = mask, .B = B, .T = T};
  lm_forward(m, &b, NULL, NULL);
  if (!m->ok) return fail("forward");
  FILE *out = fopen(out_path, "wb");
  if (!out || fwrite(lm_model_logits(m), sizeof(float), (size_t)n_out, out) != (size_t)n_out || fclose(out)) {
    fprintf(stderr, "ref_heads: cannot write %s\n", out_path);
    return 1;
  }
  printf("head %s labels %lld pad %lld\n", lm_head_name(c->head), (long long)c->num_labels, (long long)c->pad_token_id);
  const int32_t *pool = lm_model_pool_index(m);
  if (pool) {
    printf("pool");
    for (int64_t i = 0; i < B; i++) printf(" %d", (int)pool[i]);
    printf("\n");
  }
  if (save && lm_model_save(m, save)) return fail("save");
  free(ids); free(mask);
  lm_model_free(m);
  return 0;
}
