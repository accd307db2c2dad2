/* trainer.c — the training loop shared by every objective.
 *
 * Each optimiser step: grad_accum micro-batches from the objective (forward +
 * backward, accumulating) → average → global-norm clip → AdamW with the
 * warmup + cosine schedule → log, evaluate, checkpoint. What a batch is and
 * how its loss is computed lives in src/train/objectives/ (clm.c for GPT).
 *
 * A checkpoint is a model directory plus trainer_state.json (step, data
 * cursor, rng, options) and optimizer.safetensors (AdamW moments). Each file
 * is written atomically and all three carry the step, so a crash between two
 * writes is detected on resume instead of silently mixing states. */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "base/base.h"
#include "kernels/kernels.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "train/train.h"

void lm_train_opts_default(lm_train_opts *o) {
  memset(o, 0, sizeof *o);
  o->batch = 8; o->context = 256; o->grad_accum = 1; o->steps = 1000; o->warmup = 100;
  o->lr = 6e-4f; o->min_lr = 6e-5f; o->weight_decay = 0.1f; o->clip = 1.0f;
  o->beta1 = 0.9f; o->beta2 = 0.95f; o->eps = 1e-8f;
  o->eval_every = 100; o->eval_batches = 20; o->save_every = 0; o->log_every = 1;
  o->val_fraction = 0.05f; o->seed = 1337; o->progress = 1;
  o->objective = "clm"; o->mlm_prob = 0.15f;
}

float lm_lr_at(int64_t step, int64_t steps, int64_t warmup, float lr, float min_lr) {
  if (warmup > 0 && step <= warmup) return lr * (float)step / (float)warmup;
  if (steps <= warmup) return lr;
  double p = (double)(step - warmup) / (double)(steps - warmup);
  if (p > 1) p = 1;
  return (float)(min_lr + 0.5 * (lr - min_lr) * (1.0 + cos(M_PI * p)));
}

lm_status lm_evaluate(lm_model *m, const lm_tokenizer *tok, const char *const *files, int n_files,
                      int64_t context, int64_t batch, double *mean_loss, int64_t *n_tokens) {
  if (m->cfg.arch != LM_ARCH_GPT2)
    return lm_error(LM_ERR_UNSUPPORTED, "lmkit eval measures next-token loss of decoder (gpt2) models; this is a %s model",
                    lm_arch_name(m->cfg.arch));
  lm_stream s;
  lm_status st = lm_streams_load(tok, files, n_files, 0, m->cfg.vocab_size, &s, NULL);
  if (st) return st;
  if (context <= 0 || context > m->cfg.n_positions) context = m->cfg.n_positions;
  if (s.n < 2) { lm_stream_free(&s); return lm_error(LM_ERR_ARG, "evaluation data holds fewer than 2 tokens"); }
  if ((uint64_t)context > s.n - 1) context = (int64_t)s.n - 1;
  int32_t *inp = malloc(batch * context * sizeof(int32_t)), *tgt = malloc(batch * context * sizeof(int32_t));
  if (!inp || !tgt) st = lm_error(LM_ERR_NOMEM, "out of memory");
  if (!st) st = lm_model_reserve(m, batch, context, 0);
  if (!st) st = lm_clm_eval_stream(m, &s, context, batch, 0, inp, tgt, mean_loss, n_tokens);
  free(inp); free(tgt);
  lm_stream_free(&s);
  return st;
}

/* ------------------------------------------------------------ checkpoints */

typedef struct {
  int64_t step, epoch, index;
  lm_rng rng;
} train_state;

static cJSON *opts_to_json(const lm_train_opts *o) {
  cJSON *j = cJSON_CreateObject();
  cJSON_AddNumberToObject(j, "batch", (double)o->batch);
  cJSON_AddNumberToObject(j, "context", (double)o->context);
  cJSON_AddNumberToObject(j, "grad_accum", (double)o->grad_accum);
  cJSON_AddNumberToObject(j, "steps", (double)o->steps);
  cJSON_AddNumberToObject(j, "warmup", (double)o->warmup);
  cJSON_AddNumberToObject(j, "lr", o->lr);
  cJSON_AddNumberToObject(j, "min_lr", o->min_lr);
  cJSON_AddNumberToObject(j, "weight_decay", o->weight_decay);
  cJSON_AddNumberToObject(j, "clip", o->clip);
  cJSON_AddNumberToObject(j, "beta1", o->beta1);
  cJSON_AddNumberToObject(j, "beta2", o->beta2);
  cJSON_AddNumberToObject(j, "eps", o->eps);
  cJSON_AddNumberToObject(j, "val_fraction", o->val_fraction);
  cJSON_AddStringToObject(j, "objective", o->objective ? o->objective : "clm");
  cJSON_AddNumberToObject(j, "mlm_prob", o->mlm_prob);
  char seed[32]; snprintf(seed, sizeof seed, "%llu", (unsigned long long)o->seed);
  cJSON_AddStringToObject(j, "seed", seed);
  cJSON *d = cJSON_AddArrayToObject(j, "data");
  for (int i = 0; i < o->n_data; i++) cJSON_AddItemToArray(d, cJSON_CreateString(o->data[i]));
  return j;
}

static lm_status save_checkpoint(const lm_model *m, const lm_tokenizer *tok, const lm_train_opts *o,
                                 const train_state *ts, const float *mom, const float *vel, const char *dir) {
  lm_status st = lm_model_save(m, dir);
  if (!st && tok) st = lm_tokenizer_save(tok, dir);
  if (st) return st;
  char step[32]; snprintf(step, sizeof step, "%lld", (long long)ts->step);
  const char *meta[] = {"step", step, NULL};
  lm_st_entry e[2] = {
    {.name = "exp_avg", .ndim = 1, .shape = {(int64_t)m->n_params}, .data = mom},
    {.name = "exp_avg_sq", .ndim = 1, .shape = {(int64_t)m->n_params}, .data = vel},
  };
  char *opath = lm_path_join(dir, "optimizer.safetensors"), *spath = lm_path_join(dir, "trainer_state.json");
  if (!opath || !spath) { free(opath); free(spath); return LM_ERR_NOMEM; }
  st = lm_st_write(opath, e, 2, meta);
  if (!st) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "step", (double)ts->step);
    cJSON *cur = cJSON_AddObjectToObject(j, "data_cursor");
    cJSON_AddNumberToObject(cur, "epoch", (double)ts->epoch);
    cJSON_AddNumberToObject(cur, "index", (double)ts->index);
    cJSON *rng = cJSON_AddArrayToObject(j, "rng");
    for (int i = 0; i < 4; i++) {
      char b[32]; snprintf(b, sizeof b, "%llu", (unsigned long long)ts->rng.s[i]);
      cJSON_AddItemToArray(rng, cJSON_CreateString(b));
    }
    cJSON_AddItemToObject(j, "options", opts_to_json(o));
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    if (!text) st = lm_error(LM_ERR_NOMEM, "out of memory");
    else { st = lm_write_file_atomic(spath, text, strlen(text)); free(text); }
  }
  free(opath); free(spath);
  return st;
}

static int json_i64(const cJSON *o, const char *key, int64_t *out) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  if (!cJSON_IsNumber(v)) return 0;
  *out = (int64_t)v->valuedouble;
  return 1;
}

static int json_f32(const cJSON *o, const char *key, float *out) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  if (!cJSON_IsNumber(v)) return 0;
  *out = (float)v->valuedouble;
  return 1;
}

/* Reads trainer_state.json of dir: state and the run's options (data strings are strdup'ed into *data_out). */
static lm_status load_state(const char *dir, train_state *ts, lm_train_opts *o, char ***data_out, int *n_data) {
  char *path = lm_path_join(dir, "trainer_state.json");
  if (!path) return LM_ERR_NOMEM;
  char *text; size_t len;
  lm_status st = lm_read_file(path, &text, &len);
  if (st) { free(path); return lm_error_prefix(st, "cannot resume (is %s a checkpoint written by lmkit train?)", dir); }
  cJSON *j = cJSON_ParseWithLength(text, len);
  free(text);
  const cJSON *cur = cJSON_GetObjectItemCaseSensitive(j, "data_cursor");
  const cJSON *rng = cJSON_GetObjectItemCaseSensitive(j, "rng");
  const cJSON *op = cJSON_GetObjectItemCaseSensitive(j, "options");
  if (!j || !json_i64(j, "step", &ts->step) || !cur || !json_i64(cur, "epoch", &ts->epoch) ||
      !json_i64(cur, "index", &ts->index) || !cJSON_IsArray(rng) || cJSON_GetArraySize(rng) != 4 || !cJSON_IsObject(op)) {
    st = lm_error(LM_ERR_FORMAT, "%s: malformed trainer state (missing step, data_cursor, rng or options)", path);
    goto done;
  }
  for (int i = 0; i < 4; i++) {
    const cJSON *v = cJSON_GetArrayItem(rng, i);
    if (!cJSON_IsString(v)) { st = lm_error(LM_ERR_FORMAT, "%s: rng[%d] is not a string", path, i); goto done; }
    ts->rng.s[i] = strtoull(v->valuestring, NULL, 10);
  }
  int ok = json_i64(op, "batch", &o->batch) && json_i64(op, "context", &o->context) &&
           json_i64(op, "grad_accum", &o->grad_accum) && json_i64(op, "steps", &o->steps) &&
           json_i64(op, "warmup", &o->warmup) && json_f32(op, "lr", &o->lr) && json_f32(op, "min_lr", &o->min_lr) &&
           json_f32(op, "weight_decay", &o->weight_decay) && json_f32(op, "clip", &o->clip) &&
           json_f32(op, "beta1", &o->beta1) && json_f32(op, "beta2", &o->beta2) && json_f32(op, "eps", &o->eps) &&
           json_f32(op, "val_fraction", &o->val_fraction);
  const cJSON *seed = cJSON_GetObjectItemCaseSensitive(op, "seed");
  const cJSON *data = cJSON_GetObjectItemCaseSensitive(op, "data");
  if (!ok || !cJSON_IsString(seed) || !cJSON_IsArray(data)) {
    st = lm_error(LM_ERR_FORMAT, "%s: malformed trainer state options", path);
    goto done;
  }
  o->seed = strtoull(seed->valuestring, NULL, 10);
  const cJSON *objective = cJSON_GetObjectItemCaseSensitive(op, "objective");
  static const char *known[] = {"clm", "mlm", "mlm+nsp"};
  o->objective = "clm";
  for (int i = 0; i < 3; i++)
    if (cJSON_IsString(objective) && !strcmp(objective->valuestring, known[i])) o->objective = known[i];
  json_f32(op, "mlm_prob", &o->mlm_prob);
  *n_data = cJSON_GetArraySize(data);
  *data_out = calloc(*n_data + 1, sizeof(char *));
  for (int i = 0; i < *n_data; i++) {
    const cJSON *v = cJSON_GetArrayItem(data, i);
    (*data_out)[i] = lm_strdup(cJSON_IsString(v) ? v->valuestring : "");
  }
done:
  cJSON_Delete(j);
  free(path);
  return st;
}

static lm_status load_optimizer(const char *dir, const lm_model *m, int64_t step, float *mom, float *vel) {
  char *path = lm_path_join(dir, "optimizer.safetensors");
  if (!path) return LM_ERR_NOMEM;
  lm_st_file *f;
  lm_status st = lm_st_open(&f, path);
  if (st) { free(path); return st; }
  const char *s = lm_st_meta(f, "step");
  if (!s || strtoll(s, NULL, 10) != step)
    st = lm_error(LM_ERR_FORMAT, "%s: optimizer state is for step %s but trainer_state.json says %lld (an interrupted save?)",
                  path, s ? s : "?", (long long)step);
  int64_t shape[1] = {(int64_t)m->n_params};
  int a = lm_st_find(f, "exp_avg"), b = lm_st_find(f, "exp_avg_sq");
  if (!st && (a < 0 || b < 0)) st = lm_error(LM_ERR_FORMAT, "%s: missing exp_avg or exp_avg_sq", path);
  if (!st) st = lm_st_read_f32(f, a, mom, shape, 1, 0);
  if (!st) st = lm_st_read_f32(f, b, vel, shape, 1, 0);
  lm_st_close(f);
  free(path);
  return st;
}

/* ------------------------------------------------------------ the loop */

/* The objective named by the options (causal LM unless told otherwise). */
static lm_status lm_objective_for(lm_objective *obj, lm_model *m, const lm_tokenizer *tok, const lm_train_opts *o,
                                  const lm_stream *train, const lm_stream *val, lm_rng *rng, const int64_t *cursor) {
  const char *name = o->objective ? o->objective : "clm";
  int bert = m->cfg.arch == LM_ARCH_BERT;
  if (!strcmp(name, "clm")) {
    if (bert) return lm_error(LM_ERR_ARG, "a bert model trains with --objective mlm or mlm+nsp, not clm");
    return lm_objective_clm(obj, m, train, val->n > 1 ? val : NULL, o->batch, o->context, o->seed, cursor);
  }
  if (!strcmp(name, "mlm") || !strcmp(name, "mlm+nsp")) {
    if (!bert) return lm_error(LM_ERR_ARG, "--objective %s needs --arch bert", name);
    return lm_objective_bert(obj, m, tok, train, val, o->batch, o->context, !strcmp(name, "mlm+nsp"), o->mlm_prob, rng);
  }
  return lm_error(LM_ERR_ARG, "unknown objective '%s' (clm, mlm, mlm+nsp)", name);
}

static lm_status append_metrics(FILE *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static lm_status append_metrics(FILE *f, const char *fmt, ...) {
  if (!f) return LM_OK;
  va_list ap;
  va_start(ap, fmt);
  vfprintf(f, fmt, ap);
  va_end(ap);
  fflush(f);
  return LM_OK;
}

static void optimizer_step(lm_model *m, float *mom, float *vel, const lm_train_opts *o, float lr, int64_t t) {
  for (int i = 0; i < m->n_info; i++) {
    const lm_param_info *p = &m->info[i];
    adamw_update(m->params + p->offset, m->grads + p->offset, mom + p->offset, vel + p->offset, (int64_t)p->numel,
                 lr, o->beta1, o->beta2, o->eps, p->decay ? o->weight_decay : 0.0f, t);
  }
}

lm_status lm_train(lm_model *m, const lm_tokenizer *tok, const lm_train_opts *o, lm_train_callback cb, void *user) {
  return lm_train_run(m, tok, o, NULL, NULL, cb, user);
}

lm_status lm_train_run(lm_model *m, const lm_tokenizer *tok, const lm_train_opts *user_opts,
                       lm_objective_factory factory, void *ctx, lm_train_callback cb, void *user) {
  lm_train_opts o = *user_opts;
  train_state ts = {0};
  char **saved_data = NULL; int n_saved = 0;
  lm_status st = LM_OK;
  if (!o.out_dir) return lm_error(LM_ERR_ARG, "no output directory given");
  if (o.resume_dir) {
    /* the run's hyper-parameters and data come from the checkpoint; steps and the
     * logging/saving cadence are the caller's */
    lm_train_opts saved = o;
    st = load_state(o.resume_dir, &ts, &saved, &saved_data, &n_saved);
    if (st) return st;
    saved.steps = o.steps > 0 ? o.steps : saved.steps;
    if (o.n_data == 0) { saved.data = (const char *const *)saved_data; saved.n_data = n_saved; }
    o = saved;
    if (ts.step >= o.steps) {
      st = lm_error(LM_ERR_ARG, "the checkpoint in %s is at step %lld already; pass --steps above it to continue", o.resume_dir, (long long)ts.step);
      goto cleanup_saved;
    }
  } else {
    lm_rng_seed(&ts.rng, o.seed);
  }
  if (!factory && o.n_data <= 0) { st = lm_error(LM_ERR_ARG, "no training data given"); goto cleanup_saved; }
  if (o.batch <= 0 || o.context <= 0 || o.grad_accum <= 0 || o.steps <= 0)
    { st = lm_error(LM_ERR_ARG, "batch, context, grad-accum and steps must be positive"); goto cleanup_saved; }
  if (o.context > m->cfg.n_positions)
    { st = lm_error(LM_ERR_RANGE, "context %lld is longer than the model's %lld positions", (long long)o.context, (long long)m->cfg.n_positions); goto cleanup_saved; }
  if (tok && lm_tokenizer_vocab_size(tok) > m->cfg.vocab_size)
    { st = lm_error(LM_ERR_ARG, "the tokenizer has %lld ids but the model only %lld", (long long)lm_tokenizer_vocab_size(tok), (long long)m->cfg.vocab_size); goto cleanup_saved; }

  lm_stream train = {0}, val = {0};
  if (!factory) {
    st = lm_streams_load(tok, o.data, o.n_data, o.val_fraction, m->cfg.vocab_size, &train, &val);
    if (st) goto cleanup_saved;
  }
  int64_t B = o.batch, T = o.context, N = B * T;
  lm_objective obj = {0};
  float *mom = lm_alloc(m->n_params * sizeof(float)), *vel = lm_alloc(m->n_params * sizeof(float));
  FILE *metrics = NULL;
  if (!mom || !vel) { st = lm_error(LM_ERR_NOMEM, "out of memory for the optimiser state"); goto cleanup; }
  {
    int64_t cursor[2] = {ts.epoch, ts.index};
    st = factory ? factory(&obj, m, tok, &o, &ts.rng, o.resume_dir ? cursor : NULL, ctx)
                 : lm_objective_for(&obj, m, tok, &o, &train, &val, &ts.rng, o.resume_dir ? cursor : NULL);
    if (st) goto cleanup;
  }
  if (o.resume_dir && (st = load_optimizer(o.resume_dir, m, ts.step, mom, vel))) goto cleanup;
  if ((st = lm_mkdir_p(o.out_dir))) goto cleanup;
  {
    char *mpath = lm_path_join(o.out_dir, "metrics.jsonl");
    if (!mpath) { st = LM_ERR_NOMEM; goto cleanup; }
    metrics = fopen(mpath, o.resume_dir ? "a" : "w");
    if (!metrics) st = lm_error(LM_ERR_IO, "%s: cannot open for writing", mpath);
    free(mpath);
    if (st) goto cleanup;
  }

  lm_progress bar;
  lm_progress_start(&bar, "train", o.steps);
  bar.done = ts.step;
  double t_start = lm_time_sec();
  int64_t tokens_done = 0;
  float last_val = NAN;
  for (int64_t step = ts.step + 1; step <= o.steps; step++) {
    double t0 = lm_time_sec();
    lm_model_zero_grad(m);
    double loss_sum = 0;
    for (int64_t micro = 0; micro < o.grad_accum; micro++) loss_sum += obj.micro(obj.self, m);
    /* each micro-batch added the gradient of its mean loss: average them */
    if (o.grad_accum > 1) scale_inplace(m->grads, (int64_t)m->n_params, 1.0f / (float)o.grad_accum);
    float loss = (float)(loss_sum / o.grad_accum);
    double norm = global_norm(m->grads, (int64_t)m->n_params);
    if (o.clip > 0 && norm > o.clip) scale_inplace(m->grads, (int64_t)m->n_params, (float)(o.clip / norm));
    float lr = lm_lr_at(step, o.steps, o.warmup, o.lr, o.min_lr);
    optimizer_step(m, mom, vel, &o, lr, step);
    double dt = lm_time_sec() - t0;
    tokens_done += N * o.grad_accum;
    double tps = N * o.grad_accum / dt;
    if (!isfinite(loss)) {
      st = lm_error(LM_ERR_RANGE, "loss became %f at step %lld: lower --lr or raise --warmup", loss, (long long)step);
      break;
    }
    lm_train_event ev = {step, loss, NAN, lr, tps};
    if (o.log_every > 0 && (step % o.log_every == 0 || step == o.steps))
      append_metrics(metrics, "{\"step\": %lld, \"loss\": %.9g, \"lr\": %.6e, \"grad_norm\": %.6f, \"tokens_per_sec\": %.1f, \"step_ms\": %.2f}\n",
                     (long long)step, loss, lr, norm, tps, dt * 1e3);
    if (o.eval_every > 0 && (step % o.eval_every == 0 || step == o.steps)) {
      double vl = obj.evaluate(obj.self, m, o.eval_batches);
      if (!isnan(vl)) {
        last_val = ev.val_loss = (float)vl;
        char extra[256] = "";
        if (obj.eval_fields && obj.eval_fields(obj.self, extra + 2, sizeof extra - 2) > 0) extra[0] = ',', extra[1] = ' ';
        append_metrics(metrics, "{\"step\": %lld, \"val_loss\": %.9g%s}\n", (long long)step, vl, extra);
      }
    }
    ts.step = step;
    obj.cursor(obj.self, &ts.epoch, &ts.index);
    if (o.save_every > 0 && step % o.save_every == 0 && step != o.steps) {
      char name[64]; snprintf(name, sizeof name, "checkpoint-%lld", (long long)step);
      char *cdir = lm_path_join(o.out_dir, name);
      if (!cdir) { st = LM_ERR_NOMEM; break; }
      st = save_checkpoint(m, tok, &o, &ts, mom, vel, cdir);
      free(cdir);
      if (st) break;
    }
    if (cb) cb(&ev, user);
    if (o.progress) {
      char extra[128];
      double el = lm_time_sec() - t_start;
      if (isfinite(last_val)) snprintf(extra, sizeof extra, "loss %.4f val %.4f | %.0f tok/s", loss, last_val, tokens_done / el);
      else snprintf(extra, sizeof extra, "loss %.4f | %.0f tok/s", loss, tokens_done / el);
      lm_progress_update(&bar, step, extra);
    }
  }
  if (o.progress) lm_progress_finish(&bar, NULL);
  if (!st) st = save_checkpoint(m, tok, &o, &ts, mom, vel, o.out_dir);
cleanup:
  if (metrics) fclose(metrics);
  if (obj.free) obj.free(obj.self);
  lm_free(mom); lm_free(vel);
  lm_stream_free(&train); lm_stream_free(&val);
cleanup_saved:
  if (saved_data) { for (int i = 0; i < n_saved; i++) free(saved_data[i]); free(saved_data); }
  return st;
}
