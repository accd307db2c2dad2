/* ref_distill.c — driver for tests/reference/test_distill.py: runs lmkit's
 * knowledge distillation (the soft-target term of src/model/bert.c, the
 * teacher targets and student initialisation of src/train/objectives/
 * distill.c) on what the test wrote, and saves what PyTorch is compared with.
 *
 * usage: ref_distill grad DIR        teacher: a tiny BERT from DIR/config.txt with teacher_layers
 *                                    layers (norms and biases perturbed); student:
 *                                    lm_distill_student(teacher, layers), every tensor then
 *                                    perturbed (so that the KL is not ~0); soft targets from
 *                                    lm_distill_soft_targets(teacher, batch, tau); student forward +
 *                                    backward -> teacher.safetensors, params.safetensors (student),
 *                                    grads.safetensors, soft.bin (M,V), logits.bin (M,V),
 *                                    loss.txt ("total mlm nsp kl")
 *        ref_distill student LT LS DIR  teacher of LT layers, student of LS -> teacher.safetensors,
 *                                    student.safetensors (internal names)
 *        ref_distill bad DIR         bad inputs must be errors, not crashes: prints one line per
 *                                    case ("case: message"); exit 1 if one was accepted
 * DIR/config.txt: "key value" lines (as ref_bert, plus teacher_layers, tau, alpha_ce, alpha_mlm);
 * DIR/ids.bin int32 (B*T); optional segments.bin, mask.bin, mlm.bin, nsp.bin. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/base.h"
#include "model/heads.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "train/distill.h"
#include "refdrv.h"

static int64_t B = 2, T = 8, teacher_layers = 3;
static float tau = 2, alpha_ce = 5, alpha_mlm = 2;

static int read_config(const char *dir, lm_config *c) {
  lm_config_default(c, LM_ARCH_BERT);
  char *p = lm_path_join(dir, "config.txt");
  FILE *f = fopen(p, "r");
  free(p);
  if (!f) return 1;
  static const struct { const char *key; int kind; size_t off; } keys[] = {
      {"vocab", 0, offsetof(lm_config, vocab_size)},   {"positions", 0, offsetof(lm_config, n_positions)},
      {"dim", 0, offsetof(lm_config, n_embd)},         {"layers", 0, offsetof(lm_config, n_layer)},
      {"heads", 0, offsetof(lm_config, n_head)},       {"inner", 0, offsetof(lm_config, n_inner)},
      {"labels", 0, offsetof(lm_config, num_labels)},  {"type_vocab", 0, offsetof(lm_config, type_vocab_size)},
      {"pad", 0, offsetof(lm_config, pad_token_id)},   {"pre_ln", 1, offsetof(lm_config, pre_ln)},
      {"act", 1, offsetof(lm_config, act)},            {"tie", 1, offsetof(lm_config, tie_embeddings)},
      {"head", 1, offsetof(lm_config, head)},          {"share", 1, offsetof(lm_config, share_layers)},
      {"eps", 2, offsetof(lm_config, norm_eps)},
  };
  char k[64]; double v;
  while (fscanf(f, "%63s %lf", k, &v) == 2) {
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
      if (strcmp(k, keys[i].key)) continue;
      char *dst = (char *)c + keys[i].off;
      if (keys[i].kind == 0) *(int64_t *)dst = (int64_t)v;
      else if (keys[i].kind == 1) *(int *)dst = (int)v;
      else *(float *)dst = (float)v;
    }
    if (!strcmp(k, "B")) B = (int64_t)v;
    else if (!strcmp(k, "T")) T = (int64_t)v;
    else if (!strcmp(k, "teacher_layers")) teacher_layers = (int64_t)v;
    else if (!strcmp(k, "tau")) tau = (float)v;
    else if (!strcmp(k, "alpha_ce")) alpha_ce = (float)v;
    else if (!strcmp(k, "alpha_mlm")) alpha_mlm = (float)v;
  }
  fclose(f);
  return 0;
}

/* adds s * N(0,1) to every tensor whose name contains `only` (NULL: all) */
static void perturb(lm_model *m, uint64_t seed, float s, const char *only1, const char *only2) {
  lm_rng r; lm_rng_seed(&r, seed);
  for (int i = 0; i < m->n_info; i++) {
    const lm_param_info *p = &m->info[i];
    if (only1 && !strstr(p->name, only1) && !strstr(p->name, only2)) continue;
    for (size_t j = 0; j < p->numel; j++) m->params[p->offset + j] += s * lm_rng_normal(&r);
  }
}

static lm_model *make_teacher(lm_config cfg) {
  cfg.n_layer = teacher_layers;
  lm_model *m;
  if (lm_model_create(&m, &cfg, 1234)) return NULL;
  perturb(m, 99, 0.1f, "ln", "bias");
  return m;
}

static int fail(const char *what) { fprintf(stderr, "ref_distill: %s: %s\n", what, lm_last_error()); return 1; }

static int mode_grad(const char *dir, lm_config cfg) {
  lm_model *t = make_teacher(cfg), *s = NULL;
  if (!t) return fail("teacher");
  if (lm_distill_student(&s, t, cfg.n_layer)) return fail("student");
  perturb(s, 7, 0.05f, NULL, NULL);
  if (lm_model_reserve(t, B, T, 0) || lm_model_reserve(s, B, T, 1)) return fail("reserve");
  size_t N = (size_t)(B * T), V = (size_t)cfg.vocab_size;
  int32_t *ids = read_bin(dir, "ids.bin", N * 4), *seg = read_bin(dir, "segments.bin", N * 4);
  uint8_t *mask = read_bin(dir, "mask.bin", N);
  int32_t *mlm = read_bin(dir, "mlm.bin", N * 4), *nsp = read_bin(dir, "nsp.bin", B * 4);
  if (!ids) { fprintf(stderr, "ref_distill: missing ids.bin\n"); return 1; }
  float *soft = malloc(N * V * sizeof(float));
  lm_batch b = {.ids = ids, .segments = seg, .mask = mask, .mlm_labels = mlm, .nsp_labels = nsp, .B = B, .T = T};
  float tm;
  int64_t M = lm_distill_soft_targets(t, &b, tau, soft, &tm);
  if (M < 0) return fail("soft targets");
  b.mlm_soft_targets = soft;
  b.distill_temperature = tau; b.distill_alpha_ce = alpha_ce; b.distill_alpha_mlm = alpha_mlm;
  lm_model_zero_grad(s);
  float lmlm = NAN, lnsp = NAN;
  float loss = lm_forward(s, &b, &lmlm, &lnsp);
  if (isnan(loss)) return fail("forward");
  float kl = lm_model_distill_kl(s);
  if (lm_model_mlm_rows(s, NULL) != M) { fprintf(stderr, "ref_distill: teacher and student rows differ\n"); return 1; }
  if (write_bin(dir, "soft.bin", soft, (size_t)M * V * 4) || write_bin(dir, "logits.bin", lm_model_logits(s), (size_t)M * V * 4))
    return 1;
  lm_backward(s, &b);
  char *lp = lm_path_join(dir, "loss.txt");
  FILE *lf = fopen(lp, "w");
  free(lp);
  fprintf(lf, "%.9g %.9g %.9g %.9g\n", loss, lmlm, lnsp, kl);
  fclose(lf);
  if (save_tensors(t, t->params, dir, "teacher.safetensors") || save_tensors(s, s->params, dir, "params.safetensors") ||
      save_tensors(s, s->grads, dir, "grads.safetensors"))
    return 1;
  free(ids); free(seg); free(mask); free(mlm); free(nsp); free(soft);
  lm_model_free(s); lm_model_free(t);
  return 0;
}

static int mode_student(const char *dir, lm_config cfg, int64_t lt, int64_t ls) {
  teacher_layers = lt;
  lm_model *t = make_teacher(cfg), *s = NULL;
  if (!t) return fail("teacher");
  perturb(t, 5, 0.05f, NULL, NULL);     /* every layer distinct */
  if (lm_distill_student(&s, t, ls)) return fail("student");
  int bad = save_tensors(t, t->params, dir, "teacher.safetensors") || save_tensors(s, s->params, dir, "student.safetensors");
  printf("layers");
  for (int64_t k = 0; k < ls; k++) printf(" %lld", (long long)lm_distill_layer(k, ls, lt));
  printf("\n");
  lm_model_free(s); lm_model_free(t);
  return bad;
}

/* each case must be refused with a message naming what is wrong */
static int mode_bad(const char *dir, lm_config cfg) {
  (void)dir;
  int accepted = 0;
  lm_model *t = make_teacher(cfg), *s = NULL;
  if (!t) return fail("teacher");
  size_t N = (size_t)(B * T), V = (size_t)cfg.vocab_size;
  int32_t *ids = calloc(N, 4), *mlm = malloc(N * 4);
  float *soft = calloc(N * V, sizeof(float));
  for (size_t i = 0; i < N; i++) { ids[i] = 1 + (int32_t)(i % (V - 1)); mlm[i] = i % 3 ? -1 : (int32_t)(i % V); }
  for (size_t i = 0; i < N * V; i++) soft[i] = 1.0f / (float)V;
  lm_batch b = {.ids = ids, .mlm_labels = mlm, .B = B, .T = T, .mlm_soft_targets = soft, .distill_temperature = 2,
                     .distill_alpha_ce = 1, .distill_alpha_mlm = 1};
#define EXPECT_ERR(name, cond, want) do { \
    lm_clear_error(); int bad_ = (cond); \
    if (!bad_ || !strstr(lm_last_error(), want)) { accepted++; printf("%s: ACCEPTED (%s)\n", name, lm_last_error()); } \
    else printf("%s: %s\n", name, lm_last_error()); } while (0)
  EXPECT_ERR("student with as many layers as the teacher", lm_distill_student(&s, t, teacher_layers) != LM_OK, "layers");
  EXPECT_ERR("student with 0 layers", lm_distill_student(&s, t, 0) != LM_OK, "layers");
  if (lm_model_reserve(t, B, T, 1)) return fail("reserve");
  lm_batch c = b;
  c.distill_temperature = 0;
  EXPECT_ERR("temperature 0", isnan(lm_forward(t, &c, NULL, NULL)), "distill_temperature");
  c = b; c.distill_alpha_ce = -1;
  EXPECT_ERR("negative alpha_ce", isnan(lm_forward(t, &c, NULL, NULL)), "distill_alpha_ce");
  c = b; soft[V + 3] = -0.5f;
  EXPECT_ERR("negative probability", isnan(lm_forward(t, &c, NULL, NULL)), "mlm_soft_targets");
  soft[V + 3] = NAN;
  EXPECT_ERR("NaN probability", isnan(lm_forward(t, &c, NULL, NULL)), "mlm_soft_targets");
  lm_backward(t, &c);   /* after a refused forward: does nothing */
  EXPECT_ERR("soft targets at temperature 0", lm_distill_soft_targets(t, &b, 0, soft, NULL) < 0, "temperature");
  /* a classification model is no teacher */
  lm_config cc = cfg; cc.head = LM_HEAD_CLASSIFY; cc.num_labels = 3; cc.n_layer = 2;
  lm_model *k;
  if (lm_model_create(&k, &cc, 1)) return fail("classify model");
  EXPECT_ERR("classify teacher", lm_distill_student(&s, k, 1) != LM_OK, "pre-training");
  if (lm_model_reserve(k, B, T, 0)) return fail("reserve");
  lm_batch d = {.ids = ids, .B = B, .T = T, .mlm_soft_targets = soft, .distill_temperature = 2};
  EXPECT_ERR("soft targets for a classify head", isnan(lm_forward(k, &d, NULL, NULL)), "not pre-training");
#undef EXPECT_ERR
  lm_model_free(k); lm_model_free(t);
  free(ids); free(mlm); free(soft);
  return accepted != 0;
}

int main(int argc, char **argv) {
  if (argc < 3) { fprintf(stderr, "usage: ref_distill grad|bad DIR | student LT LS DIR\n"); return 2; }
  const char *mode = argv[1];
  const char *dir = !strcmp(mode, "student") && argc == 5 ? argv[4] : argv[2];
  lm_config cfg;
  if (read_config(dir, &cfg)) { fprintf(stderr, "ref_distill: cannot read %s/config.txt\n", dir); return 1; }
  if (!strcmp(mode, "grad")) return mode_grad(dir, cfg);
  if (!strcmp(mode, "bad")) return mode_bad(dir, cfg);
  if (!strcmp(mode, "student") && argc == 5) return mode_student(dir, cfg, atoll(argv[2]), atoll(argv[3]));
  fprintf(stderr, "ref_distill: unknown mode '%s'\n", mode);
  return 2;
}
