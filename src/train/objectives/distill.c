/* distill.c — knowledge distillation of a BERT teacher into a shallower
 * student (DistilBERT, Sanh et al. 2019): `lmkit distill`, docs/distill.md.
 *
 * The student is the teacher's config with n_layer = N, initialised from the
 * teacher: embeddings and heads copied, and student layer k copied from
 * teacher layer round(k (L-1) / (N-1)) — every other layer for half the depth,
 * as DistilBERT does (0 2 4 7 9 11 of 12).
 *
 * Each micro-batch is drawn exactly as BERT pre-training draws it
 * (lm_bert_examples: [CLS] A [SEP] (B [SEP]), dynamic MLM masks, the trainer's
 * rng). The teacher (no gradients) runs forward on the masked batch; its MLM
 * logits at the masked rows z_t (M,V) become soft targets
 *   p = softmax(z_t / tau)                                          // (M,V)
 * and the student is trained on (lm_batch.mlm_soft_targets)
 *   alpha_ce * tau^2 * mean_rows KL(p || softmax(z_s / tau)) + alpha_mlm * CE(z_s, labels)
 * (+ the student's NSP loss with --objective mlm+nsp). Teacher and student see
 * the same labels, so lm_model_mlm_rows gives both the same rows in the same
 * order. All buffers (the (B*T, V) soft targets included) are allocated when
 * the objective is made; a step allocates nothing.
 *
 * The driver (lm_distill) runs the shared trainer (lm_train_run), so the
 * schedule, clipping, AdamW, evaluation, metrics.jsonl, checkpoints and exact
 * resume are those of `lmkit train`. distill.json (teacher path, temperature,
 * alphas, layer map) is written beside the model and into every checkpoint,
 * so a resumed run uses the same teacher and loss. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "base/base.h"
#include "model/heads.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "train/distill.h"
#include "train/train.h"

/* ------------------------------------------------------------------ the student */

int64_t lm_distill_layer(int64_t k, int64_t n_student, int64_t n_teacher) {
  if (n_student <= 1) return 0;
  /* round(k (Lt-1) / (Ls-1)) in integers: (2 k (Lt-1) + (Ls-1)) / (2 (Ls-1)) */
  return (2 * k * (n_teacher - 1) + (n_student - 1)) / (2 * (n_student - 1));
}

lm_status lm_distill_student(lm_model **out, const lm_model *teacher, int64_t n_layer) {
  *out = NULL;
  const lm_config *tc = &teacher->cfg;
  if (tc->head != LM_HEAD_PRETRAIN)
    return lm_error(LM_ERR_ARG, "distillation needs a teacher with the pre-training (MLM) head");
  if (n_layer < 1 || n_layer >= tc->n_layer)
    return lm_error(LM_ERR_RANGE, "the student needs 1 to %lld layers (fewer than the teacher's %lld), not %lld",
                    (long long)tc->n_layer - 1, (long long)tc->n_layer, (long long)n_layer);
  lm_config cfg = *tc;
  cfg.n_layer = n_layer;
  lm_model *s;
  lm_status st = lm_model_alloc(&s, &cfg);
  if (st) return st;
  for (int i = 0; i < s->n_info; i++) {
    const lm_param_info *p = &s->info[i];
    char name[LM_MAX_NAME];
    long long k;
    int off = 0;
    if (sscanf(p->name, "h.%lld.%n", &k, &off) == 1 && off > 0)
      snprintf(name, sizeof name, "h.%lld.%s", (long long)lm_distill_layer(k, n_layer, tc->n_layer), p->name + off);
    else
      snprintf(name, sizeof name, "%s", p->name);
    const lm_param_info *q = lm_model_find_param(teacher, name);
    if (!q || q->numel != p->numel) {
      lm_model_free(s);
      return lm_error(LM_ERR_FORMAT, "internal: the teacher has no tensor '%s' shaped like the student's '%s'", name, p->name);
    }
    memcpy(s->params + p->offset, teacher->params + q->offset, p->numel * sizeof(float));
  }
  *out = s;
  return LM_OK;
}

/* ------------------------------------------------------------------ the objective */

typedef struct {
  lm_bert_examples ex;
  lm_rng *rng;
  lm_distill_loss dl;
  float *soft;                 /* (B*T, V) teacher probabilities at temperature tau */
} distill_obj;

int64_t lm_distill_soft_targets(lm_model *teacher, const lm_batch *b, float tau, float *out, float *teacher_mlm) {
  lm_batch tb = *b;
  tb.nsp_labels = NULL;
  tb.mlm_soft_targets = NULL;
  float tm = NAN;
  if (teacher_mlm) *teacher_mlm = NAN;
  if (!(tau > 0) || !isfinite(tau)) { lm_error(LM_ERR_RANGE, "distillation temperature %g must be positive", (double)tau); return -1; }
  if (lm_batch_check(teacher, &tb)) return -1;
  if (teacher->cfg.head != LM_HEAD_PRETRAIN) { lm_error(LM_ERR_ARG, "the teacher has no MLM head"); return -1; }
  lm_forward(teacher, &tb, &tm, NULL);
  const float *z = lm_model_logits(teacher);
  if (teacher_mlm) *teacher_mlm = tm;
  int64_t M = lm_model_mlm_rows(teacher, NULL), V = teacher->cfg.vocab_size;
  #pragma omp parallel for schedule(static) if (M * V > 32768)
  for (int64_t i = 0; i < M; i++) {
    const float *zi = z + i * V;
    float *pi = out + i * V;
    float mx = -INFINITY;
    for (int64_t j = 0; j < V; j++) mx = fmaxf(mx, zi[j]);
    double sum = 0;
    for (int64_t j = 0; j < V; j++) sum += exp((double)(zi[j] - mx) / tau);
    for (int64_t j = 0; j < V; j++) pi[j] = (float)(exp((double)(zi[j] - mx) / tau) / sum);
  }
  return M;
}

static void with_soft_targets(const distill_obj *o, lm_batch *b) {
  b->mlm_soft_targets = o->soft;
  b->distill_temperature = o->dl.temperature;
  b->distill_alpha_ce = o->dl.alpha_ce;
  b->distill_alpha_mlm = o->dl.alpha_mlm;
}

static float distill_micro(void *self, lm_model *m) {
  distill_obj *o = self;
  lm_batch b;
  lm_bert_examples_next(&o->ex, 0, o->rng, &b);
  float tm;
  if (lm_distill_soft_targets(o->dl.teacher, &b, o->dl.temperature, o->soft, &tm) < 0) return NAN;
  with_soft_targets(o, &b);
  float mlm, nsp;
  float loss = lm_forward(m, &b, &mlm, &nsp);
  if (o->dl.last_kl) *o->dl.last_kl = lm_model_distill_kl(m);
  if (o->dl.last_mlm) *o->dl.last_mlm = mlm;
  if (o->dl.last_teacher_mlm) *o->dl.last_teacher_mlm = tm;
  lm_backward(m, &b);
  return loss;
}

static double distill_evaluate(void *self, lm_model *m, int64_t max_batches) {
  distill_obj *o = self;
  if (!o->ex.have_val) return NAN;
  lm_rng r;
  lm_rng_seed(&r, 0x5EEDULL);   /* the same examples at every evaluation (as bert_pretrain.c) */
  double sum = 0;
  int64_t n = max_batches > 0 ? max_batches : 20;
  for (int64_t k = 0; k < n; k++) {
    lm_batch b;
    lm_bert_examples_next(&o->ex, 1, &r, &b);
    if (lm_distill_soft_targets(o->dl.teacher, &b, o->dl.temperature, o->soft, NULL) < 0) return NAN;
    with_soft_targets(o, &b);
    sum += lm_forward(m, &b, NULL, NULL);
  }
  return sum / n;
}

static void distill_cursor(void *self, int64_t *epoch, int64_t *index) { (void)self; *epoch = 0; *index = 0; }

static void distill_free(void *self) {
  distill_obj *o = self;
  if (!o) return;
  lm_bert_examples_free(&o->ex);
  lm_free(o->soft);
  free(o);
}

lm_status lm_objective_distill(lm_objective *obj, lm_model *student, const lm_distill_loss *dl, const lm_tokenizer *tok,
                               const lm_stream *train, const lm_stream *val, int64_t B, int64_t T, int nsp,
                               float mlm_prob, lm_rng *rng) {
  memset(obj, 0, sizeof *obj);
  const lm_config *sc = &student->cfg, *tc = dl->teacher ? &dl->teacher->cfg : NULL;
  if (!tc || tc->head != LM_HEAD_PRETRAIN || sc->arch != tc->arch || sc->head != LM_HEAD_PRETRAIN)
    return lm_error(LM_ERR_ARG, "distillation needs a teacher and a student of one family, both with the pre-training (MLM) head");
  if (tc->vocab_size != sc->vocab_size)
    return lm_error(LM_ERR_ARG, "the teacher's vocabulary (%lld) differs from the student's (%lld)",
                    (long long)tc->vocab_size, (long long)sc->vocab_size);
  if (T > tc->n_positions)
    return lm_error(LM_ERR_RANGE, "context %lld is longer than the teacher's %lld positions", (long long)T,
                    (long long)tc->n_positions);
  if (!(dl->temperature > 0) || !isfinite(dl->temperature) || !(dl->alpha_ce >= 0) || !(dl->alpha_mlm >= 0) ||
      !isfinite(dl->alpha_ce) || !isfinite(dl->alpha_mlm))
    return lm_error(LM_ERR_RANGE, "distillation needs temperature > 0 and alpha_ce, alpha_mlm >= 0 (got %g, %g, %g)",
                    (double)dl->temperature, (double)dl->alpha_ce, (double)dl->alpha_mlm);
  distill_obj *o = calloc(1, sizeof *o);
  if (!o) return lm_error(LM_ERR_NOMEM, "out of memory");
  o->rng = rng;
  o->dl = *dl;
  lm_status st = lm_bert_examples_init(&o->ex, tok, sc->vocab_size, train, val, B, T, nsp, mlm_prob);
  if (st) { free(o); return st; }
  o->soft = lm_alloc((size_t)(B * T) * (size_t)sc->vocab_size * sizeof(float));
  if (!o->soft) st = lm_error(LM_ERR_NOMEM, "out of memory for the teacher's soft targets (%lld x %lld)",
                              (long long)(B * T), (long long)sc->vocab_size);
  if (!st) st = lm_model_reserve(dl->teacher, B, T, 0);
  if (!st) st = lm_model_reserve(student, B, T, 1);
  if (st) { distill_free(o); return st; }
  *obj = (lm_objective){.self = o, .micro = distill_micro, .evaluate = distill_evaluate, .cursor = distill_cursor, .free = distill_free};
  return LM_OK;
}

/* ------------------------------------------------------------------ distill.json */

typedef struct {
  char *teacher;
  int64_t teacher_layers, student_layers;
  float temperature, alpha_ce, alpha_mlm;
  int nsp;
} distill_meta;

static lm_status meta_write(const distill_meta *d, const lm_distill_result *r, const char *dir) {
  cJSON *j = cJSON_CreateObject();
  if (!j) return lm_error(LM_ERR_NOMEM, "out of memory");
  cJSON_AddStringToObject(j, "teacher", d->teacher);
  cJSON_AddNumberToObject(j, "teacher_layers", (double)d->teacher_layers);
  cJSON_AddNumberToObject(j, "student_layers", (double)d->student_layers);
  cJSON *lay = cJSON_AddArrayToObject(j, "layers_from_teacher");
  for (int64_t k = 0; k < d->student_layers && k < 64; k++) cJSON_AddItemToArray(lay, cJSON_CreateNumber((double)r->layers[k]));
  cJSON_AddNumberToObject(j, "temperature", d->temperature);
  cJSON_AddNumberToObject(j, "alpha_ce", d->alpha_ce);
  cJSON_AddNumberToObject(j, "alpha_mlm", d->alpha_mlm);
  cJSON_AddBoolToObject(j, "nsp", d->nsp);
  cJSON_AddNumberToObject(j, "teacher_params", (double)r->teacher_params);
  cJSON_AddNumberToObject(j, "student_params", (double)r->student_params);
  char *text = cJSON_Print(j);
  cJSON_Delete(j);
  char *path = lm_path_join(dir, "distill.json");
  lm_status st = text && path ? lm_write_file_atomic(path, text, strlen(text)) : lm_error(LM_ERR_NOMEM, "out of memory");
  free(text); free(path);
  return st;
}

static lm_status meta_read(distill_meta *d, const char *dir) {
  memset(d, 0, sizeof *d);
  char *path = lm_path_join(dir, "distill.json");
  if (!path) return lm_error(LM_ERR_NOMEM, "out of memory");
  char *text; size_t len;
  lm_status st = lm_read_file(path, &text, &len);
  if (st) {
    st = lm_error_prefix(st, "cannot resume distillation (is %s a checkpoint written by lmkit distill?)", dir);
    free(path);
    return st;
  }
  cJSON *j = cJSON_ParseWithLength(text, len);
  free(text);
  const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "teacher");
  const cJSON *v[6] = {cJSON_GetObjectItemCaseSensitive(j, "teacher_layers"), cJSON_GetObjectItemCaseSensitive(j, "student_layers"),
                       cJSON_GetObjectItemCaseSensitive(j, "temperature"), cJSON_GetObjectItemCaseSensitive(j, "alpha_ce"),
                       cJSON_GetObjectItemCaseSensitive(j, "alpha_mlm"), cJSON_GetObjectItemCaseSensitive(j, "nsp")};
  int ok = j && cJSON_IsString(t) && cJSON_IsBool(v[5]);
  for (int i = 0; i < 5 && ok; i++) ok = cJSON_IsNumber(v[i]);
  if (!ok) st = lm_error(LM_ERR_FORMAT, "%s: malformed (needs teacher, teacher_layers, student_layers, temperature, "
                         "alpha_ce, alpha_mlm, nsp)", path);
  else {
    d->teacher = lm_strdup(t->valuestring);
    d->teacher_layers = (int64_t)v[0]->valuedouble; d->student_layers = (int64_t)v[1]->valuedouble;
    d->temperature = (float)v[2]->valuedouble; d->alpha_ce = (float)v[3]->valuedouble;
    d->alpha_mlm = (float)v[4]->valuedouble; d->nsp = cJSON_IsTrue(v[5]);
    if (!d->teacher) st = lm_error(LM_ERR_NOMEM, "out of memory");
  }
  cJSON_Delete(j);
  free(path);
  return st;
}

/* ------------------------------------------------------------------ the driver */

void lm_distill_opts_default(lm_distill_opts *o) {
  memset(o, 0, sizeof *o);
  lm_train_opts_default(&o->train);
  o->train.objective = "mlm";
  o->train.context = 0;         /* 0: the teacher's positions, at most 128 */
  o->train.lr = 5e-4f; o->train.min_lr = 5e-5f;
  o->train.weight_decay = 0.01f; o->train.beta2 = 0.999f;
  o->temperature = 2.0f; o->alpha_ce = 5.0f; o->alpha_mlm = 2.0f;
}

typedef struct { int64_t step; float kl, mlm, teacher_mlm; } log_entry;

typedef struct {
  lm_distill_loss dl;
  int nsp;
  lm_stream train, val;
  int have_streams;
  const distill_meta *meta;
  lm_distill_result *res;
  const char *out_dir;
  int64_t save_every, steps, log_every;
  float kl, mlm, teacher_mlm;
  log_entry *log;              /* (steps) loss components of the logged steps */
  int64_t n_log;
  lm_status st;
} dctx;

static lm_status factory(lm_objective *obj, lm_model *m, const lm_tokenizer *tok, const lm_train_opts *o, lm_rng *rng,
                         const int64_t *cursor, void *ctx) {
  (void)cursor;
  dctx *c = ctx;
  if (o->n_data <= 0) return lm_error(LM_ERR_ARG, "no training data given");
  lm_status st = lm_streams_load(tok, o->data, o->n_data, o->val_fraction, m->cfg.vocab_size, &c->train, &c->val);
  if (st) return st;
  c->have_streams = 1;
  c->steps = o->steps;
  c->log = malloc((size_t)(o->steps > 0 ? o->steps : 1) * sizeof(log_entry));
  if (!c->log) return lm_error(LM_ERR_NOMEM, "out of memory");
  return lm_objective_distill(obj, m, &c->dl, tok, &c->train, &c->val, o->batch, o->context, c->nsp, o->mlm_prob, rng);
}

static void on_step(const lm_train_event *ev, void *user) {
  dctx *c = user;
  if (isnan(c->res->first_loss)) c->res->first_loss = ev->train_loss;
  c->res->last_loss = ev->train_loss;
  if (!isnan(ev->val_loss)) c->res->val_loss = ev->val_loss;
  /* the components of the loss, appended to metrics.jsonl once the trainer has closed it */
  if (c->log && c->log_every > 0 && (ev->step % c->log_every == 0 || ev->step == c->steps) && c->n_log < c->steps) {
    c->log[c->n_log++] = (log_entry){ev->step, c->kl, c->mlm, c->teacher_mlm};
  }
  /* the trainer has just written checkpoint-STEP: put the distillation settings beside it */
  if (c->save_every > 0 && ev->step % c->save_every == 0 && ev->step != c->steps && !c->st) {
    char name[64];
    snprintf(name, sizeof name, "checkpoint-%lld", (long long)ev->step);
    char *dir = lm_path_join(c->out_dir, name);
    c->st = dir ? meta_write(c->meta, c->res, dir) : LM_ERR_NOMEM;
    free(dir);
  }
}

/* seconds of one forward of m on b */
static double forward_time(lm_model *m, const lm_batch *b) {
  double t0 = lm_time_sec();
  lm_forward(m, b, NULL, NULL);
  return lm_time_sec() - t0;
}

static lm_status speed_test(lm_model *teacher, lm_model *student, const lm_tokenizer *tok, const lm_stream *train,
                            int64_t B, int64_t T, lm_distill_result *res) {
  lm_bert_examples ex;
  lm_status st = lm_bert_examples_init(&ex, tok, student->cfg.vocab_size, train, NULL, B, T, 0, 0.15f);
  if (st) return st;
  lm_rng r;
  lm_rng_seed(&r, 1);
  lm_batch b;
  lm_bert_examples_next(&ex, 0, &r, &b);
  b.mlm_labels = NULL;          /* inference: MLM logits at every position, as BertForMaskedLM */
  b.nsp_labels = NULL;
  if (!(st = lm_model_reserve(teacher, B, T, 0)) && !(st = lm_model_reserve(student, B, T, 0))) {
    /* one warm-up each, then the best of 5, the two models interleaved so that both see the same machine */
    forward_time(teacher, &b); forward_time(student, &b);
    double tt = INFINITY, ts = INFINITY;
    for (int r = 0; r < 5; r++) {
      tt = fmin(tt, forward_time(teacher, &b));
      ts = fmin(ts, forward_time(student, &b));
    }
    res->teacher_tps = tt > 0 ? (double)(B * T) / tt : 0;
    res->student_tps = ts > 0 ? (double)(B * T) / ts : 0;
    res->speed_B = B; res->speed_T = T;
  }
  lm_bert_examples_free(&ex);
  return st;
}

static lm_status load_teacher(lm_model **t, const char *dir) {
  lm_status st = lm_model_load(t, dir);
  if (st) return lm_error_prefix(st, "teacher");
  const lm_config *c = lm_model_config(*t);
  if (c->head != LM_HEAD_PRETRAIN) {
    st = lm_error(LM_ERR_ARG, "teacher %s is a %s model with a %s head: distillation needs the pre-training (MLM) "
                  "head, e.g. a model from 'lmkit train --arch bert'", dir, lm_arch_name(c->arch), lm_head_name(c->head));
    lm_model_free(*t);
    *t = NULL;
  }
  return st;
}

lm_status lm_distill(const lm_distill_opts *opts, lm_distill_result *res) {
  memset(res, 0, sizeof *res);
  res->first_loss = res->last_loss = res->val_loss = res->last_kl = res->last_mlm = res->teacher_mlm = NAN;
  lm_train_opts o = opts->train;
  if (!o.out_dir) return lm_error(LM_ERR_ARG, "no output directory given");
  distill_meta meta = {0};
  lm_model *teacher = NULL, *student = NULL;
  lm_tokenizer *tok = NULL;
  dctx c = {0};
  lm_status st = LM_OK;
  if (o.resume_dir) {
    if ((st = meta_read(&meta, o.resume_dir))) return st;
    if (opts->teacher_dir) { free(meta.teacher); meta.teacher = lm_strdup(opts->teacher_dir); }
  } else {
    if (!opts->teacher_dir) return lm_error(LM_ERR_ARG, "no teacher model given");
    meta.teacher = realpath(opts->teacher_dir, NULL);
    if (!meta.teacher) meta.teacher = lm_strdup(opts->teacher_dir);
    meta.student_layers = opts->student_layers;
    meta.temperature = opts->temperature; meta.alpha_ce = opts->alpha_ce; meta.alpha_mlm = opts->alpha_mlm;
    meta.nsp = opts->nsp;
  }
  if (!meta.teacher) return lm_error(LM_ERR_NOMEM, "out of memory");
  if ((st = load_teacher(&teacher, meta.teacher))) goto done;
  const lm_config *tc = lm_model_config(teacher);
  meta.teacher_layers = tc->n_layer;
  if (o.resume_dir) {
    if ((st = lm_tokenizer_load(&tok, o.resume_dir)) || (st = lm_model_load(&student, o.resume_dir))) goto done;
    const lm_config *sc = lm_model_config(student);
    if (sc->arch != tc->arch || sc->head != LM_HEAD_PRETRAIN || sc->vocab_size != tc->vocab_size ||
        sc->n_embd != tc->n_embd || sc->n_layer >= tc->n_layer) {
      st = lm_error(LM_ERR_ARG, "%s does not hold a student of teacher %s (%lld layers, width %lld, vocabulary %lld)",
                    o.resume_dir, meta.teacher, (long long)tc->n_layer, (long long)tc->n_embd, (long long)tc->vocab_size);
      goto done;
    }
    meta.student_layers = sc->n_layer;
  } else {
    if ((st = lm_tokenizer_load(&tok, meta.teacher))) { lm_error_prefix(st, "teacher %s", meta.teacher); goto done; }
    if (meta.student_layers < 1 || meta.student_layers >= tc->n_layer) {
      st = lm_error(LM_ERR_RANGE, "--student-layers %lld: the student needs 1 to %lld layers (fewer than the teacher's %lld)",
                    (long long)meta.student_layers, (long long)tc->n_layer - 1, (long long)tc->n_layer);
      goto done;
    }
    if ((st = lm_distill_student(&student, teacher, meta.student_layers))) goto done;
    if (o.context <= 0) o.context = tc->n_positions < 128 ? tc->n_positions : 128;
    o.objective = meta.nsp ? "mlm+nsp" : "mlm";
  }
  res->teacher_params = lm_model_num_params(teacher);
  res->student_params = lm_model_num_params(student);
  res->teacher_layers = tc->n_layer;
  res->student_layers = meta.student_layers;
  for (int64_t k = 0; k < meta.student_layers && k < 64; k++)
    res->layers[k] = lm_distill_layer(k, meta.student_layers, tc->n_layer);

  c.dl = (lm_distill_loss){teacher, meta.temperature, meta.alpha_ce, meta.alpha_mlm, &c.kl, &c.mlm, &c.teacher_mlm};
  c.nsp = meta.nsp;
  c.meta = &meta; c.res = res; c.out_dir = o.out_dir;
  c.save_every = o.save_every; c.log_every = o.log_every; c.steps = o.steps;
  c.kl = c.mlm = c.teacher_mlm = NAN;
  if ((st = lm_mkdir_p(o.out_dir)) || (st = meta_write(&meta, res, o.out_dir))) goto done;
  st = lm_train_run(student, tok, &o, factory, &c, on_step, &c);
  if (!st && c.st) st = c.st;
  if (st) goto done;
  {
    char *mpath = lm_path_join(o.out_dir, "metrics.jsonl");
    FILE *f = mpath ? fopen(mpath, "a") : NULL;
    if (!f) { st = lm_error(LM_ERR_IO, "%s: cannot open for appending", mpath ? mpath : "metrics.jsonl"); free(mpath); goto done; }
    for (int64_t i = 0; i < c.n_log; i++) {
      const log_entry *e = &c.log[i];
      fprintf(f, "{\"step\": %lld, \"distill_kl\": %.9g, \"student_mlm\": %.9g, \"teacher_mlm\": %.9g}\n",
              (long long)e->step, e->kl, e->mlm, e->teacher_mlm);
    }
    int bad = fclose(f) != 0;
    free(mpath);
    if (bad) { st = lm_error(LM_ERR_IO, "%s: write failed", o.out_dir); goto done; }
  }
  res->last_kl = c.kl; res->last_mlm = c.mlm; res->teacher_mlm = c.teacher_mlm;
  /* a quick speed comparison on one batch of the run's shape */
  {
    int64_t B = o.batch, T = o.context;
    if (o.resume_dir) { B = student->acts.B; T = student->acts.T; }
    if (B > 0 && T > 0 && c.have_streams) st = speed_test(teacher, student, tok, &c.train, B, T, res);
  }
done:
  free(c.log);
  if (c.have_streams) { lm_stream_free(&c.train); lm_stream_free(&c.val); }
  lm_model_free(student);
  lm_model_free(teacher);
  lm_tokenizer_free(tok);
  free(meta.teacher);
  return st;
}
