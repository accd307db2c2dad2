/* trainer.c — the training loop shared by every objective.
 *
 * Each optimiser step: grad_accum micro-batches from the objective (forward +
 * backward, accumulating) → average → global-norm clip → AdamW with the
 * warmup + cosine schedule → log, evaluate, checkpoint. What a batch is and
 * how its loss is computed lives in src/train/objectives/ (clm.c for GPT).
 *
 * A checkpoint is a model directory plus trainer_state.json (step, data
 * cursor, rng, options) and optimizer.safetensors (AdamW moments). Each file
 * is written atomically, and so is each checkpoint directory: it is written
 * as OUT/checkpoint-N.tmp, fsync'ed, then renamed to OUT/checkpoint-N, so a
 * directory with that name is complete. The final save goes into OUT itself,
 * optimizer.safetensors first and trainer_state.json last; both carry the
 * step, and OUT's own state counts as complete only when they agree (see
 * "run directories" below).
 *
 * An objective may bring a second model that trains alongside (lm_objective.aux,
 * PPO's value model): one global norm clips both, as TRL's one optimizer over
 * policy and value does; its weights go into each state as the model directory
 * aux_name/ and its moments into optimizer.safetensors as aux.exp_avg and
 * aux.exp_avg_sq. An objective's own state (PPO's adaptive KL coefficient) is
 * kept in trainer_state.json as "objective_state".
 *
 * Data parallelism (o->dist of more than one rank, `mpirun -np P lmkit
 * train`): each rank runs the objective on its share of every micro-batch
 * of the job (objectives/clm.c skips the other ranks' windows; the objectives
 * that draw examples draw the whole job's, objectives/share.c), and
 * src/train/dist.c averages
 * the gradients (bucket by bucket, overlapped with the last micro-batch's
 * backward), computes the global norm and runs AdamW, on every parameter or
 * (ZeRO-1) on the rank's share followed by an all-gather. Rank 0 alone logs,
 * evaluates (the windows one process at P x B would), and writes metrics and
 * checkpoints (with ZeRO-1 after gathering the moments); the loss logged is
 * the job's mean. The rank count is saved with the options: a run resumes
 * with the same P. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cjson/cJSON.h>
#include "base/base.h"
#include "kernels/kernels.h"
#include "kernels/mm.h"
#include "model/lora.h"
#include "model/model.h"
#include "model/heads.h"
#include "model/safetensors.h"
#include "train/dist.h"
#include "train/train.h"
#include "train/objectives/denoise.h"

void lm_train_opts_default(lm_train_opts *o) {
  memset(o, 0, sizeof *o);
  o->batch = 8; o->context = 256; o->grad_accum = 1; o->steps = 1000; o->warmup = 100;
  o->lr = 6e-4f; o->min_lr = 6e-5f; o->weight_decay = 0.1f; o->clip = 1.0f;
  o->beta1 = 0.9f; o->beta2 = 0.95f; o->eps = 1e-8f;
  o->eval_every = 100; o->eval_batches = 20; o->save_every = 0; o->log_every = 1;
  o->val_fraction = 0.05f; o->seed = 1337; o->progress = 1;
  o->objective = "clm"; o->mlm_prob = 0.15f;
  o->denoise = (lm_denoise_opts){.mask_ratio = 0.3f, .poisson_lambda = 3.0f, .permute = 1.0f};   /* BART's best */
  o->keep_checkpoints = 3;
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
  if (m->cfg.head != LM_HEAD_LM || !m->cfg.causal || m->cfg.n_enc_layer > 0)
    return lm_error(LM_ERR_UNSUPPORTED, "lmkit eval measures the next-token loss of a causal decoder with an LM head; this is "
                    "a %s model with a %s head%s", lm_arch_name(m->cfg.arch), lm_head_name(m->cfg.head),
                    m->cfg.n_enc_layer > 0 ? " (an encoder-decoder: its validation loss is in the training run's metrics.jsonl)" : "");
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
  int64_t ranks;                /* the data-parallel ranks the run trains on (1 without MPI) */
  lm_rng rng;
  cJSON *obj_state;             /* the objective's own state (lm_objective.state_save), or NULL */
} train_state;

/* the objective's second model and its AdamW moments (lm_objective.aux), or all NULL */
typedef struct {
  lm_model *m;
  const char *name;
  float *mom, *vel;
} train_aux;

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
  cJSON_AddStringToObject(j, "precision", o->precision == LM_PRECISION_BF16 ? "bf16" : "fp32");
  if (o->objective && !strcmp(o->objective, "denoise")) {
    cJSON *d = cJSON_AddObjectToObject(j, "denoise");
    cJSON_AddNumberToObject(d, "mask_ratio", o->denoise.mask_ratio);
    cJSON_AddNumberToObject(d, "poisson_lambda", o->denoise.poisson_lambda);
    cJSON_AddNumberToObject(d, "permute", o->denoise.permute);
    cJSON_AddNumberToObject(d, "delete_ratio", o->denoise.delete_ratio);
    cJSON_AddNumberToObject(d, "rotate", o->denoise.rotate);
    cJSON_AddNumberToObject(d, "insert", o->denoise.insert);
  }
  char seed[32]; snprintf(seed, sizeof seed, "%llu", (unsigned long long)o->seed);
  cJSON_AddStringToObject(j, "seed", seed);
  cJSON_AddNumberToObject(j, "ranks", lm_dist_size(o->dist));
  cJSON *d = cJSON_AddArrayToObject(j, "data");
  for (int i = 0; i < o->n_data; i++) cJSON_AddItemToArray(d, cJSON_CreateString(o->data[i]));
  return j;
}

/* Writes the training state into dir, each file atomically: optimizer.safetensors first and
 * trainer_state.json last, both carrying the step, so that a save killed in between leaves dir
 * with two steps that disagree (state_step() then rejects it) rather than a mix that looks whole. */
static lm_status save_checkpoint(const lm_model *m, const lm_tokenizer *tok, const lm_train_opts *o,
                                 const train_state *ts, const float *mom, const float *vel, const train_aux *aux,
                                 const char *dir) {
  char step[32]; snprintf(step, sizeof step, "%lld", (long long)ts->step);
  const char *meta[] = {"step", step, NULL};
  int64_t n = (int64_t)lm_model_trainable(m).n_params;   /* the adapter's alone under LoRA */
  int64_t na = aux->m ? (int64_t)lm_model_trainable(aux->m).n_params : 0;
  lm_st_entry e[4] = {
    {.name = "exp_avg", .ndim = 1, .shape = {n}, .data = mom},
    {.name = "exp_avg_sq", .ndim = 1, .shape = {n}, .data = vel},
    {.name = "aux.exp_avg", .ndim = 1, .shape = {na}, .data = aux->mom},
    {.name = "aux.exp_avg_sq", .ndim = 1, .shape = {na}, .data = aux->vel},
  };
  char *opath = lm_path_join(dir, "optimizer.safetensors"), *spath = lm_path_join(dir, "trainer_state.json");
  char *apath = aux->m ? lm_path_join(dir, aux->name) : NULL;
  if (!opath || !spath || (aux->m && !apath)) { free(opath); free(spath); free(apath); return LM_ERR_NOMEM; }
  lm_status st = lm_st_write(opath, e, aux->m ? 4 : 2, meta);
  if (!st) st = m->lora ? lm_lora_save(m, dir) : lm_model_save(m, dir);   /* LoRA: the adapter (PEFT) */
  if (!st && tok) st = lm_tokenizer_save(tok, dir);
  if (!st && apath) st = lm_mkdir_p(apath);   /* before trainer_state.json, which completes the state */
  if (!st && apath) st = lm_model_save(aux->m, apath);
  free(apath);
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
    if (ts->obj_state) cJSON_AddItemToObject(j, "objective_state", cJSON_Duplicate(ts->obj_state, 1));
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
  if (!json_i64(op, "ranks", &ts->ranks)) ts->ranks = 1;   /* saved before data parallelism existed */
  const cJSON *os = cJSON_GetObjectItemCaseSensitive(j, "objective_state");
  if (os && !(ts->obj_state = cJSON_Duplicate(os, 1))) { st = lm_error(LM_ERR_NOMEM, "out of memory"); goto done; }
  const cJSON *objective = cJSON_GetObjectItemCaseSensitive(op, "objective");
  static const char *known[] = {"clm", "mlm", "mlm+nsp", "span-corruption", "denoise"};
  o->objective = "clm";
  for (int i = 0; i < (int)(sizeof known / sizeof *known); i++)
    if (cJSON_IsString(objective) && !strcmp(objective->valuestring, known[i])) o->objective = known[i];
  json_f32(op, "mlm_prob", &o->mlm_prob);
  /* the products' precision changes the curve: a run continues in its own (runs saved before it
   * was recorded trained in fp32 unless --precision said otherwise, which nothing recorded) */
  const cJSON *prec = cJSON_GetObjectItemCaseSensitive(op, "precision");
  o->precision = LM_PRECISION_FP32;
  if (prec && !(cJSON_IsString(prec) && (!strcmp(prec->valuestring, "fp32") || !strcmp(prec->valuestring, "bf16")))) {
    st = lm_error(LM_ERR_FORMAT, "%s: unknown precision in the trainer state (fp32 or bf16)", path);
    goto done;
  }
  if (prec && !strcmp(prec->valuestring, "bf16")) o->precision = LM_PRECISION_BF16;
  const cJSON *dn = cJSON_GetObjectItemCaseSensitive(op, "denoise");
  if (dn && !(json_f32(dn, "mask_ratio", &o->denoise.mask_ratio) && json_f32(dn, "poisson_lambda", &o->denoise.poisson_lambda) &&
              json_f32(dn, "permute", &o->denoise.permute) && json_f32(dn, "delete_ratio", &o->denoise.delete_ratio) &&
              json_f32(dn, "rotate", &o->denoise.rotate) && json_f32(dn, "insert", &o->denoise.insert))) {
    st = lm_error(LM_ERR_FORMAT, "%s: malformed denoise options", path);
    goto done;
  }
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

lm_status lm_train_read_state(const char *dir, lm_train_opts *o, int64_t *step) {
  train_state ts = {0};
  char **data = NULL; int n = 0;
  lm_status st = load_state(dir, &ts, o, &data, &n);
  if (data) { for (int i = 0; i < n; i++) free(data[i]); free(data); }
  cJSON_Delete(ts.obj_state);
  o->data = NULL; o->n_data = 0;
  if (!st && step) *step = ts.step;
  return st;
}

/* The moments of m, named prefix + "exp_avg" and prefix + "exp_avg_sq" ("aux." for the objective's second model). */
static lm_status load_optimizer(const char *dir, const lm_model *m, const char *prefix, int64_t step, float *mom, float *vel) {
  char *path = lm_path_join(dir, "optimizer.safetensors");
  if (!path) return LM_ERR_NOMEM;
  lm_st_file *f;
  lm_status st = lm_st_open(&f, path);
  if (st) { free(path); return st; }
  const char *s = lm_st_meta(f, "step");
  if (!s || strtoll(s, NULL, 10) != step)
    st = lm_error(LM_ERR_FORMAT, "%s: optimizer state is for step %s but trainer_state.json says %lld (an interrupted save?)",
                  path, s ? s : "?", (long long)step);
  int64_t shape[1] = {(int64_t)lm_model_trainable(m).n_params};
  char na[32], nb[32];
  snprintf(na, sizeof na, "%sexp_avg", prefix); snprintf(nb, sizeof nb, "%sexp_avg_sq", prefix);
  int a = lm_st_find(f, na), b = lm_st_find(f, nb);
  if (!st && (a < 0 || b < 0)) st = lm_error(LM_ERR_FORMAT, "%s: missing %s or %s", path, na, nb);
  if (!st) st = lm_st_read_f32(f, a, mom, shape, 1, 0);
  if (!st) st = lm_st_read_f32(f, b, vel, shape, 1, 0);
  lm_st_close(f);
  free(path);
  return st;
}

/* ------------------------------------------------------------ run directories
 *
 * OUT holds the final model with its training state, and checkpoint-N/ directories.
 * A checkpoint is written as checkpoint-N.tmp/ (each file fsync'ed, then the directory),
 * renamed to checkpoint-N, and OUT fsync'ed so that the rename survives a crash: a
 * directory named checkpoint-N is complete by construction. The final state is written
 * into OUT itself, file by file (see save_checkpoint); OUT's own state is complete when
 * its trainer_state.json and optimizer.safetensors name the same step. Leftovers of a
 * killed save (*.tmp directories, *.tmp.PID files) are removed when a run next starts in
 * OUT, and only the newest keep_checkpoints checkpoint-N directories are kept. */

/* Makes renames and new entries in dir durable. Some file systems cannot fsync a directory
 * (EINVAL): there is nothing more to do on those. */
static lm_status fsync_dir(const char *dir) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY);
  if (fd < 0) return lm_error(LM_ERR_IO, "%s: cannot open directory: %s", dir, strerror(errno));
  int r = fsync(fd), e = errno;
  close(fd);
  if (r != 0 && e != EINVAL && e != ENOTSUP)
    return lm_error(LM_ERR_IO, "%s: fsync failed: %s", dir, strerror(e));
  return LM_OK;
}

/* Removes a checkpoint directory (or the leftover of an interrupted save): its files and the
 * directories in it (an objective's second model, lm_objective.aux). */
static lm_status remove_dir(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return errno == ENOENT ? LM_OK : lm_error(LM_ERR_IO, "%s: cannot open directory: %s", dir, strerror(errno));
  lm_status st = LM_OK;
  struct dirent *de;
  while (!st && (de = readdir(d))) {
    if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
    char *p = lm_path_join(dir, de->d_name);
    struct stat sb;
    if (!p) st = LM_ERR_NOMEM;
    else if (lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode)) st = remove_dir(p);
    else if (unlink(p) != 0 && errno != ENOENT) st = lm_error(LM_ERR_IO, "%s: cannot remove: %s", p, strerror(errno));
    free(p);
  }
  closedir(d);
  if (!st && rmdir(dir) != 0 && errno != ENOENT) st = lm_error(LM_ERR_IO, "%s: cannot remove: %s", dir, strerror(errno));
  return st;
}

/* N when name is exactly "checkpoint-N", else -1. */
static int64_t checkpoint_name_step(const char *name) {
  if (strncmp(name, "checkpoint-", 11) || !isdigit((unsigned char)name[11])) return -1;
  char *end;
  errno = 0;
  long long n = strtoll(name + 11, &end, 10);
  return *end || errno ? -1 : (int64_t)n;
}

static int is_tmp_dir_name(const char *name) {   /* checkpoint-*.tmp */
  size_t n = strlen(name);
  return !strncmp(name, "checkpoint-", 11) && n > 15 && !strcmp(name + n - 4, ".tmp");
}

static int is_tmp_file_name(const char *name) {  /* NAME.tmp.PID, from lm_write_file_atomic */
  const char *t = strstr(name, ".tmp.");
  if (!t || !t[5]) return 0;
  for (t += 5; *t; t++) if (!isdigit((unsigned char)*t)) return 0;
  return 1;
}

/* The step of the training state saved in dir, or -1 when it is absent or incomplete: the
 * model files must exist and trainer_state.json and optimizer.safetensors name the same step. */
static int64_t state_step(const char *dir) {
  /* a model, or a LoRA adapter (PEFT's files) */
  static const char *need[2][2] = {{"config.json", "model.safetensors"}, {"adapter_config.json", "adapter_model.safetensors"}};
  int have = 0;
  for (int k = 0; k < 2 && !have; k++) {
    have = 1;
    for (int i = 0; i < 2; i++) {
      char *p = lm_path_join(dir, need[k][i]);
      have &= p && lm_file_exists(p);
      free(p);
    }
  }
  if (!have) return -1;
  int64_t step = -1;
  char *spath = lm_path_join(dir, "trainer_state.json"), *opath = lm_path_join(dir, "optimizer.safetensors");
  char *text = NULL; size_t len;
  if (spath && opath && lm_file_exists(spath) && lm_file_exists(opath) && !lm_read_file(spath, &text, &len)) {
    cJSON *j = cJSON_ParseWithLength(text, len);
    int64_t s;
    lm_st_file *f;
    if (j && json_i64(j, "step", &s) && s >= 0 && !lm_st_open(&f, opath)) {
      const char *os = lm_st_meta(f, "step");
      if (os && strtoll(os, NULL, 10) == s) step = s;
      lm_st_close(f);
    }
    cJSON_Delete(j);
  }
  free(text); free(spath); free(opath);
  return step;
}

/* The newest complete state under the run directory dir: its checkpoint-N directories and
 * dir itself (on a tie, the checkpoint). *path NULL and *step -1 when there is none. */
static lm_status newest_state(const char *dir, char **path, int64_t *step, int64_t *n_checkpoints) {
  *path = NULL; *step = -1;
  if (n_checkpoints) *n_checkpoints = 0;
  DIR *d = opendir(dir);
  if (!d) return errno == ENOENT ? LM_OK : lm_error(LM_ERR_IO, "%s: cannot open directory: %s", dir, strerror(errno));
  lm_status st = LM_OK;
  struct dirent *de;
  while (!st && (de = readdir(d))) {
    if (checkpoint_name_step(de->d_name) < 0) continue;
    char *p = lm_path_join(dir, de->d_name);
    if (!p) { st = LM_ERR_NOMEM; break; }
    int64_t s = lm_dir_exists(p) ? state_step(p) : -1;
    if (s >= 0 && n_checkpoints) (*n_checkpoints)++;
    if (s > *step) { free(*path); *path = p; *step = s; } else free(p);
  }
  closedir(d);
  int64_t s = st ? -1 : state_step(dir);
  if (s > *step) {
    free(*path);
    *path = lm_strdup(dir);
    *step = s;
    if (!*path) st = LM_ERR_NOMEM;
  }
  if (st) { free(*path); *path = NULL; *step = -1; }
  return st;
}

lm_status lm_train_find_resume(const char *dir, char **path, int64_t *step) {
  *path = NULL; *step = -1;
  size_t n = strlen(dir);
  while (n > 1 && dir[n - 1] == '/') n--;
  if (n >= 4 && !strncmp(dir + n - 4, ".tmp", 4))
    return lm_error(LM_ERR_ARG, "%s is the leftover of an interrupted save, not a checkpoint: resume the run directory above it", dir);
  if (!lm_dir_exists(dir)) return lm_error(LM_ERR_IO, "%s: no such run or checkpoint directory", dir);
  lm_status st = newest_state(dir, path, step, NULL);
  if (st || *path) return st;
  char *spath = lm_path_join(dir, "trainer_state.json");
  int has_state = spath && lm_file_exists(spath);
  free(spath);
  if (has_state)
    return lm_error(LM_ERR_FORMAT, "cannot resume from %s: its trainer_state.json and optimizer.safetensors disagree "
                    "or a model file is missing (a save that was interrupted), and it holds no complete checkpoint-N", dir);
  return lm_error(LM_ERR_ARG, "cannot resume from %s: it holds no complete checkpoint yet (is it a run or checkpoint "
                  "directory written by lmkit train? a run killed before its first checkpoint starts again without --resume)", dir);
}

/* Removes what killed saves left in out: checkpoint-*.tmp directories and NAME.tmp.PID files, in out
 * and in its aux_name/ directory (the objective's second model, which the final save writes into
 * OUT/aux_name file by file). */
static lm_status remove_leftovers(const char *out, const char *aux_name) {
  if (aux_name) {
    char *a = lm_path_join(out, aux_name);
    lm_status st = !a ? LM_ERR_NOMEM : lm_dir_exists(a) ? remove_leftovers(a, NULL) : LM_OK;
    free(a);
    if (st) return st;
  }
  DIR *d = opendir(out);
  if (!d) return errno == ENOENT ? LM_OK : lm_error(LM_ERR_IO, "%s: cannot open directory: %s", out, strerror(errno));
  lm_status st = LM_OK;
  struct dirent *de;
  while (!st && (de = readdir(d))) {
    int tdir = is_tmp_dir_name(de->d_name), tfile = !tdir && is_tmp_file_name(de->d_name);
    if (!tdir && !tfile) continue;
    char *p = lm_path_join(out, de->d_name);
    if (!p) { st = LM_ERR_NOMEM; break; }
    if (tdir && lm_dir_exists(p)) st = remove_dir(p);
    else if (tfile && lm_file_exists(p) && unlink(p) != 0)
      st = lm_error(LM_ERR_IO, "%s: cannot remove: %s", p, strerror(errno));
    free(p);
  }
  closedir(d);
  return st;
}

static int cmp_desc(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? 1 : x > y ? -1 : 0;
}

/* Keeps the newest `keep` checkpoint-N directories of out (0: all). A directory is first
 * renamed to checkpoint-N.tmp, so that one half-deleted never looks complete. */
static lm_status prune_checkpoints(const char *out, int64_t keep) {
  if (keep <= 0) return LM_OK;
  DIR *d = opendir(out);
  if (!d) return lm_error(LM_ERR_IO, "%s: cannot open directory: %s", out, strerror(errno));
  int64_t *steps = NULL, n = 0, cap = 0;
  lm_status st = LM_OK;
  struct dirent *de;
  while ((de = readdir(d))) {
    int64_t s = checkpoint_name_step(de->d_name);
    if (s < 0) continue;
    if (n == cap) {
      int64_t *ns = lm_xrealloc(steps, (size_t)(cap = cap ? 2 * cap : 16) * sizeof *steps);
      if (!ns) { st = LM_ERR_NOMEM; break; }
      steps = ns;
    }
    steps[n++] = s;
  }
  closedir(d);
  if (!st && n > keep) qsort(steps, (size_t)n, sizeof *steps, cmp_desc);
  for (int64_t i = keep; !st && i < n; i++) {
    char name[64], tname[72];
    snprintf(name, sizeof name, "checkpoint-%lld", (long long)steps[i]);
    snprintf(tname, sizeof tname, "%s.tmp", name);
    char *p = lm_path_join(out, name), *t = lm_path_join(out, tname);
    if (!p || !t) st = LM_ERR_NOMEM;
    else if (!lm_dir_exists(p)) { /* not a directory: not ours */ }
    else if ((st = remove_dir(t))) {}
    else if (rename(p, t) != 0) st = lm_error(LM_ERR_IO, "%s: cannot remove an old checkpoint: %s", p, strerror(errno));
    else st = remove_dir(t);
    free(p); free(t);
  }
  free(steps);
  return st;
}

/* Saves OUT/checkpoint-STEP through OUT/checkpoint-STEP.tmp, then keeps the newest o->keep_checkpoints. */
static lm_status save_checkpoint_dir(const lm_model *m, const lm_tokenizer *tok, const lm_train_opts *o,
                                     const train_state *ts, const float *mom, const float *vel, const train_aux *aux) {
  char name[64], tname[72], oname[80];
  snprintf(name, sizeof name, "checkpoint-%lld", (long long)ts->step);
  snprintf(tname, sizeof tname, "%s.tmp", name);
  snprintf(oname, sizeof oname, "%s.old.tmp", name);
  char *dir = lm_path_join(o->out_dir, name), *tmp = lm_path_join(o->out_dir, tname), *old = lm_path_join(o->out_dir, oname);
  lm_status st = dir && tmp && old ? LM_OK : LM_ERR_NOMEM;
  if (!st) st = remove_dir(tmp);
  if (!st && mkdir(tmp, 0755) != 0) st = lm_error(LM_ERR_IO, "%s: cannot create directory: %s", tmp, strerror(errno));
  if (!st) st = save_checkpoint(m, tok, o, ts, mom, vel, aux, tmp);
  if (!st) st = fsync_dir(tmp);
  /* a checkpoint of the same step from an earlier attempt is moved aside, never mixed into */
  if (!st && lm_dir_exists(dir) && !(st = remove_dir(old)) && rename(dir, old) != 0)
    st = lm_error(LM_ERR_IO, "%s: cannot replace: %s", dir, strerror(errno));
  if (!st && rename(tmp, dir) != 0) st = lm_error(LM_ERR_IO, "%s: rename to %s failed: %s", tmp, dir, strerror(errno));
  if (!st) st = fsync_dir(o->out_dir);
  if (!st) st = remove_dir(old);
  if (!st) st = prune_checkpoints(o->out_dir, o->keep_checkpoints);
  free(dir); free(tmp); free(old);
  return st;
}

/* Resuming at `step` into a metrics.jsonl that already has lines: drops those of later steps
 * (logged by the interrupted run after its last checkpoint) and a torn last line. */
static lm_status trim_metrics(const char *path, int64_t step) {
  if (!lm_file_exists(path)) return LM_OK;
  char *text; size_t len;
  lm_status st = lm_read_file(path, &text, &len);
  if (st) return st;
  size_t w = 0;
  for (size_t i = 0; i < len;) {
    char *nl = memchr(text + i, '\n', len - i);
    if (!nl) break;                                /* torn line: the process died mid-write */
    size_t n = (size_t)(nl - (text + i)) + 1;
    *nl = 0;
    const char *k = strstr(text + i, "\"step\":");
    int keep = !k || strtoll(k + 7, NULL, 10) <= step;
    *nl = '\n';
    if (keep) { memmove(text + w, text + i, n); w += n; }
    i += n;
  }
  if (w != len) st = lm_write_file_atomic(path, text, w);
  free(text);
  return st;
}

/* ------------------------------------------------------------ the loop */

/* The objective named by the options (causal LM unless told otherwise). */
static lm_status lm_objective_for(lm_objective *obj, lm_model *m, const lm_tokenizer *tok, const lm_train_opts *o,
                                  const lm_stream *train, const lm_stream *val, lm_rng *rng, const int64_t *cursor) {
  const char *name = o->objective ? o->objective : "clm";
  int lm = m->cfg.head == LM_HEAD_LM && m->cfg.causal && m->cfg.n_enc_layer == 0, masked = m->cfg.head == LM_HEAD_PRETRAIN;
  if (!strcmp(name, "clm")) {
    if (!lm) return lm_error(LM_ERR_ARG, "--objective clm needs a causal model with an LM head; this %s model has a %s head "
                             "(use --objective %s)", lm_arch_name(m->cfg.arch), lm_head_name(m->cfg.head),
                             m->cfg.n_enc_layer > 0 ? "span-corruption for an encoder-decoder" : "mlm or mlm+nsp");
    return lm_objective_clm(obj, m, train, val->n > 1 ? val : NULL, o->batch, o->context, o->seed, cursor,
                            lm_dist_rank(o->dist), lm_dist_size(o->dist));
  }
  if (!strcmp(name, "mlm") || !strcmp(name, "mlm+nsp")) {
    if (!masked) return lm_error(LM_ERR_ARG, "--objective %s needs a masked-LM model (--arch bert); this %s model has a %s head",
                                 name, lm_arch_name(m->cfg.arch), lm_head_name(m->cfg.head));
    return lm_objective_bert(obj, m, tok, train, val, o->batch, o->context, !strcmp(name, "mlm+nsp"), o->mlm_prob, rng,
                             lm_dist_rank(o->dist), lm_dist_size(o->dist));
  }
  if (!strcmp(name, "span-corruption"))
    return lm_objective_span(obj, m, tok, train, val, o->batch, o->context, rng, lm_dist_rank(o->dist), lm_dist_size(o->dist));
  if (!strcmp(name, "denoise"))
    return lm_objective_denoise(obj, m, tok, train, val, o->batch, o->context, &o->denoise, rng, lm_dist_rank(o->dist),
                                lm_dist_size(o->dist));
  return lm_error(LM_ERR_ARG, "unknown objective '%s' (clm, mlm, mlm+nsp, span-corruption, denoise)", name);
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

/* AdamW over the trainable parameters (model.h lm_model_trainable: the LoRA adapter's alone when
 * one is attached, else the whole model), each gradient times clip (the clipping factor, applied in
 * the same pass over the parameters) and then set to 0, which is the next step's zero_grad. The
 * model's bf16 copies of the weights go stale; those of the parameters stepped here are rounded in
 * the same pass (mm.h lm_mm_weight_claim), the others by the next product that needs them. */
static void optimizer_step(lm_model *m, float *mom, float *vel, const lm_train_opts *o, float lr, int64_t t, float clip) {
  lm_trainable tr = lm_model_trainable(m);
  lm_model_weights_changed(m);
  for (int i = 0; i < tr.n_info; i++) {
    const lm_param_info *p = &tr.info[i];
    float *w = tr.params + p->offset;
    adamw_update_zero(w, tr.grads + p->offset, mom + p->offset, vel + p->offset, (int64_t)p->numel, lr, o->beta1,
                      o->beta2, o->eps, p->decay ? o->weight_decay : 0.0f, t, clip,
                      lm_mm_weight_claim(m->mm, w, (int64_t)p->numel));
  }
}

/* Saves the state: the final one into OUT (final = 1), else OUT/checkpoint-N. Rank 0 writes it; with
 * ZeRO-1 the moments are gathered to rank 0 first, so every rank calls this at the same steps. */
static lm_status save_state(lm_dp *dp, int final, const lm_model *m, const lm_tokenizer *tok, const lm_train_opts *o,
                            const train_state *ts, const float *mom, const float *vel, const train_aux *aux) {
  int rank0 = lm_dist_rank(o->dist) == 0;
  float *fm = NULL, *fv = NULL;
  if (dp && lm_dp_zero(dp)) {
    size_t n = lm_model_trainable(m).n_params;
    if (rank0 && (!(fm = lm_alloc(n * sizeof(float))) || !(fv = lm_alloc(n * sizeof(float))))) {
      lm_free(fm);
      return lm_error(LM_ERR_NOMEM, "out of memory gathering the optimiser state for a checkpoint");
    }
    lm_dp_gather(dp, mom, vel, fm, fv);
    mom = fm; vel = fv;
  }
  lm_status st = LM_OK;
  if (rank0 && final) {
    st = save_checkpoint(m, tok, o, ts, mom, vel, aux, o->out_dir);
    if (!st) st = fsync_dir(o->out_dir);
  } else if (rank0) {
    st = save_checkpoint_dir(m, tok, o, ts, mom, vel, aux);
  }
  lm_free(fm); lm_free(fv);
  return st;
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
    /* the run's precision; asking for bf16 on an fp32 run is an error (fp32, the default, may
     * just be unsaid: the train CLI rejects an explicit --precision that differs) */
    if (user_opts->precision == LM_PRECISION_BF16 && o.precision != LM_PRECISION_BF16) {
      st = lm_error(LM_ERR_ARG, "--precision bf16 differs from the run's fp32 (%s): leave it out to resume, or start a "
                    "new run", o.resume_dir);
      goto cleanup_saved;
    }
  } else {
    lm_rng_seed(&ts.rng, o.seed);
  }
  /* bf16 products where the CPU has them, else fp32 and a note (docs/training.md) */
  if ((st = lm_model_set_precision(m, o.precision)) == LM_ERR_UNSUPPORTED) {
    fprintf(stderr, "lmkit: note: --precision bf16: %s; training in fp32 (OpenBLAS)\n", lm_last_error());
    st = LM_OK;
  } else if (st) {
    goto cleanup_saved;
  }
  const int P = lm_dist_size(o.dist), rank = lm_dist_rank(o.dist), rank0 = rank == 0;
  if (o.resume_dir && ts.ranks != P) {
    st = lm_error(LM_ERR_ARG, "%s was trained on %lld data-parallel ranks and this job has %d: resume it with "
                  "mpirun -np %lld (each rank's share of the batches depends on it)%s", o.resume_dir, (long long)ts.ranks,
                  P, (long long)ts.ranks, ts.ranks == 1 ? ", or without mpirun" : "");
    goto cleanup_saved;
  }
  if (P > 1 && factory) {
    st = lm_error(LM_ERR_UNSUPPORTED, "data-parallel training (mpirun) supports lmkit train's pre-training objectives "
                  "(clm, mlm, mlm+nsp, span-corruption, denoise); this run's is a fine-tuning or post-training objective");
    goto cleanup_saved;
  }
  if (!rank0) o.progress = 0;   /* rank 0 alone draws the bar */
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
  size_t n_train = lm_model_trainable(m).n_params;   /* optimiser state only for what trains */
  float *mom = NULL, *vel = NULL, *full_mom = NULL, *full_vel = NULL;
  FILE *metrics = NULL;
  train_aux aux = {0};
  lm_dp *dp = NULL;
  {
    /* the objective before OUT is touched: a state saved below must hold its second model */
    int64_t cursor[2] = {ts.epoch, ts.index};
    lm_model_set_checkpointing(m, o.checkpoint_activations);   /* before the objective reserves activations */
    st = factory ? factory(&obj, m, tok, &o, &ts.rng, o.resume_dir ? cursor : NULL, ctx)
                 : lm_objective_for(&obj, m, tok, &o, &train, &val, &ts.rng, o.resume_dir ? cursor : NULL);
    if (st) goto cleanup;
  }
  /* data parallelism, once the objective has reserved the gradients: every rank takes rank 0's weights */
  if (P > 1 && (st = lm_dp_init(&dp, o.dist, m, o.zero))) goto cleanup;
  size_t n_state = dp ? lm_dp_state_size(dp) : n_train;   /* ZeRO-1: this rank's share */
  mom = lm_alloc((n_state ? n_state : 1) * sizeof(float)); vel = lm_alloc((n_state ? n_state : 1) * sizeof(float));
  if (!mom || !vel) { st = lm_error(LM_ERR_NOMEM, "out of memory for the optimiser state"); goto cleanup; }
  if (o.resume_dir && n_state == n_train && (st = load_optimizer(o.resume_dir, m, "", ts.step, mom, vel))) goto cleanup;
  if (o.resume_dir && n_state != n_train) {   /* ZeRO-1: read the whole state, keep this rank's share */
    full_mom = lm_alloc(n_train * sizeof(float)); full_vel = lm_alloc(n_train * sizeof(float));
    if (!full_mom || !full_vel) { st = lm_error(LM_ERR_NOMEM, "out of memory for the optimiser state"); goto cleanup; }
    if ((st = load_optimizer(o.resume_dir, m, "", ts.step, full_mom, full_vel))) goto cleanup;
    lm_dp_scatter(dp, full_mom, full_vel, mom, vel);
  }
  if (obj.aux) {
    size_t na = lm_model_trainable(obj.aux).n_params;
    aux = (train_aux){obj.aux, obj.aux_name, lm_alloc(na * sizeof(float)), lm_alloc(na * sizeof(float))};
    if (!aux.mom || !aux.vel) { st = lm_error(LM_ERR_NOMEM, "out of memory for the optimiser state"); goto cleanup; }
    if (!lm_model_trainable(obj.aux).grads) { st = lm_error(LM_ERR_ARG, "the objective's %s model has no gradients", obj.aux_name); goto cleanup; }
    if (o.resume_dir && (st = load_optimizer(o.resume_dir, obj.aux, "aux.", ts.step, aux.mom, aux.vel))) goto cleanup;
  }
  if (o.resume_dir && obj.state_restore) {
    if (!ts.obj_state) { st = lm_error(LM_ERR_FORMAT, "%s: trainer_state.json has no objective_state", o.resume_dir); goto cleanup; }
    if ((st = obj.state_restore(obj.self, ts.obj_state))) goto cleanup;
  }
  if (rank0 && ((st = lm_mkdir_p(o.out_dir)) || (st = remove_leftovers(o.out_dir, aux.m ? aux.name : NULL)))) goto cleanup;
  if (rank0) {
    /* OUT may hold a run already: continue it only from its newest state, never start over it */
    char *newest; int64_t newest_step, n_ckpt;
    if ((st = newest_state(o.out_dir, &newest, &newest_step, &n_ckpt))) goto cleanup;
    free(newest);
    if (!o.resume_dir && n_ckpt > 0) {
      st = lm_error(LM_ERR_ARG, "%s already holds a run with checkpoints (the newest at step %lld): continue it with "
                    "--resume %s, or pass another --out to start a new one", o.out_dir, (long long)newest_step, o.out_dir);
      goto cleanup;
    }
    if (o.resume_dir && newest_step > ts.step) {
      st = lm_error(LM_ERR_ARG, "%s holds a newer state (step %lld) than the step-%lld checkpoint %s: resume from the "
                    "newest (--resume %s), or pass another --out to branch off at step %lld", o.out_dir,
                    (long long)newest_step, (long long)ts.step, o.resume_dir, o.out_dir, (long long)ts.step);
      goto cleanup;
    }
    /* OUT's own trainer state is about to be superseded (or belongs to an earlier run): unless it is
     * the state being resumed, remove it so that it can never be taken for this run's newest */
    char *rin = o.resume_dir ? realpath(o.resume_dir, NULL) : NULL, *rout = realpath(o.out_dir, NULL);
    int same = rin && rout && !strcmp(rin, rout);
    free(rin); free(rout);
    if (!same) {
      char *sp = lm_path_join(o.out_dir, "trainer_state.json");
      if (!sp) { st = LM_ERR_NOMEM; goto cleanup; }
      if (unlink(sp) != 0 && errno != ENOENT) st = lm_error(LM_ERR_IO, "%s: cannot remove: %s", sp, strerror(errno));
      free(sp);
      if (st) goto cleanup;
    } else {
      /* resuming OUT's own (final) state in place: the final save will overwrite it file by file, so
       * keep it as a checkpoint first, or a kill during that save would leave nothing to resume from
       * when no newer checkpoint exists by then (e.g. --save-every 0). The state is as loaded: the
       * objective has not drawn from the rng yet. */
      char name[64];
      snprintf(name, sizeof name, "checkpoint-%lld", (long long)ts.step);
      char *cp = lm_path_join(o.out_dir, name);
      if (!cp) { st = LM_ERR_NOMEM; goto cleanup; }
      int have = state_step(cp) == ts.step;
      free(cp);
      if (!have && (st = save_checkpoint_dir(m, tok, &o, &ts, full_mom ? full_mom : mom, full_vel ? full_vel : vel, &aux)))
        goto cleanup;
    }
  }
  lm_free(full_mom); lm_free(full_vel); full_mom = full_vel = NULL;
  if (rank0) {
    char *mpath = lm_path_join(o.out_dir, "metrics.jsonl");
    if (!mpath) { st = LM_ERR_NOMEM; goto cleanup; }
    /* a resumed run appends, after dropping what the interrupted run logged past its checkpoint */
    if (o.resume_dir) st = trim_metrics(mpath, ts.step);
    metrics = st ? NULL : fopen(mpath, o.resume_dir ? "a" : "w");
    if (!st && !metrics) st = lm_error(LM_ERR_IO, "%s: cannot open for writing", mpath);
    free(mpath);
    if (st) goto cleanup;
  }

  lm_progress bar;
  lm_progress_start(&bar, "train", o.steps);
  bar.done = ts.step;
  double t_start = lm_time_sec();
  int64_t tokens_done = 0;
  float last_val = NAN;
  int grads_zero = 0;   /* the last optimizer_step zeroed the gradients it read: no zeroing pass */
  for (int64_t step = ts.step + 1; step <= o.steps; step++) {
    double t0 = lm_time_sec();
    if (!grads_zero) {
      lm_model_zero_grad(m);
      if (aux.m) lm_model_zero_grad(aux.m);
    }
    grads_zero = 0;
    double loss_sum = 0;
    /* dropout masks come from the checkpointed rng; each rank of a data-parallel job draws its own
     * from a generator seeded by the run's seed, the step and the rank, which leaves the job's rng
     * to the objective: the ranks draw the examples one process would (objectives/share.c) */
    lm_rng drop_rng;
    if (dp)
      lm_rng_seed(&drop_rng, o.seed * 0x9E3779B97F4A7C15ull ^ (uint64_t)step * 0xD1B54A32D192ED03ull ^
                                 (uint64_t)(rank + 1) * 0xC2B2AE3D27D4EB4Full);
    lm_model_set_training(m, dp ? &drop_rng : &ts.rng);
    for (int64_t micro = 0; micro < o.grad_accum; micro++) {
      if (dp && micro == o.grad_accum - 1) lm_dp_arm(dp);   /* reduce as the last backward goes */
      loss_sum += obj.micro(obj.self, m);
    }
    lm_model_set_training(m, NULL);
    /* each micro-batch added the gradient of its mean loss: average them */
    float *grads = lm_model_trainable(m).grads, *agrads = aux.m ? lm_model_trainable(aux.m).grads : NULL;
    int64_t n_aux = aux.m ? (int64_t)lm_model_trainable(aux.m).n_params : 0;
    if (!dp && o.grad_accum > 1) scale_inplace(grads, (int64_t)n_train, 1.0f / (float)o.grad_accum);
    if (o.grad_accum > 1 && aux.m) scale_inplace(agrads, n_aux, 1.0f / (float)o.grad_accum);
    float loss = (float)(dp ? lm_dist_sum(o.dist, loss_sum / o.grad_accum) / P : loss_sum / o.grad_accum);
    /* data parallel: the mean over the ranks and micro-batches, and the norm of all of it */
    double norm = dp ? lm_dp_reduce(dp, 1.0f / (float)(o.grad_accum * P)) : global_norm(grads, (int64_t)n_train);
    if (aux.m) { double na = global_norm(agrads, n_aux); norm = sqrt(norm * norm + na * na); }   /* one norm over both */
    float clip = o.clip > 0 && norm > o.clip ? (float)(o.clip / norm) : 1.0f;
    float lr = lm_lr_at(step, o.steps, o.warmup, o.lr, o.min_lr);
    if (dp) {
      lm_dp_step(dp, mom, vel, lr, o.beta1, o.beta2, o.eps, o.weight_decay, step, clip);
      lm_model_weights_changed(m);   /* the engine's bf16 copies of the weights are stale */
    } else optimizer_step(m, mom, vel, &o, lr, step, clip);
    if (aux.m) optimizer_step(aux.m, aux.mom, aux.vel, &o, lr, step, clip);
    grads_zero = !dp;   /* lm_dp_step leaves the gradients as they are */
    double dt = lm_time_sec() - t0;
    tokens_done += N * o.grad_accum * P;
    double tps = N * o.grad_accum * P / dt;
    if (!isfinite(loss) && !m->ok) {   /* the model refused the objective's batch: its error says why */
      char why[512];
      snprintf(why, sizeof why, "%s", lm_last_error());
      st = lm_error(LM_ERR_ARG, "step %lld: %s", (long long)step, why);
      break;
    }
    if (!isfinite(loss)) {
      st = lm_error(LM_ERR_RANGE, "loss became %f at step %lld: lower --lr or raise --warmup", loss, (long long)step);
      break;
    }
    lm_train_event ev = {step, loss, NAN, lr, tps};
    if (o.log_every > 0 && (step % o.log_every == 0 || step == o.steps)) {
      char sf[1024] = "";   /* PPO logs a dozen figures */
      if (obj.step_fields && obj.step_fields(obj.self, sf + 2, sizeof sf - 2) > 0) sf[0] = ',', sf[1] = ' ';
      append_metrics(metrics, "{\"step\": %lld, \"loss\": %.9g, \"lr\": %.6e, \"grad_norm\": %.6f, \"tokens_per_sec\": %.1f, \"step_ms\": %.2f%s}\n",
                     (long long)step, loss, lr, norm, tps, dt * 1e3, sf);
    }
    /* out of time: this step is the run's last; the ranks agree on it (their clocks differ) */
    int out_of_time = o.time_limit > 0 && lm_time_sec() - t_start >= o.time_limit;
    if (dp && o.time_limit > 0) out_of_time = lm_dist_sum(o.dist, out_of_time) > 0;
    if (rank0 && o.eval_every > 0 && (step % o.eval_every == 0 || step == o.steps || out_of_time)) {
      /* rank 0 evaluates the windows one process at P x B would (its batches hold B) */
      double vl = obj.evaluate(obj.self, m, o.eval_batches * P);
      if (!isnan(vl)) {
        last_val = ev.val_loss = (float)vl;
        char extra[256] = "";
        if (obj.eval_fields && obj.eval_fields(obj.self, extra + 2, sizeof extra - 2) > 0) extra[0] = ',', extra[1] = ' ';
        append_metrics(metrics, "{\"step\": %lld, \"val_loss\": %.9g%s}\n", (long long)step, vl, extra);
      }
    }
    ts.step = step;
    obj.cursor(obj.self, &ts.epoch, &ts.index);
    if (obj.state_save) {
      char buf[1024];
      int k = obj.state_save(obj.self, buf, sizeof buf);
      cJSON_Delete(ts.obj_state);
      ts.obj_state = k > 0 ? cJSON_ParseWithLength(buf, (size_t)k) : NULL;
      if (!ts.obj_state) { st = lm_error(LM_ERR_ARG, "the objective's state is not a JSON object"); break; }
    }
    if (o.save_every > 0 && step % o.save_every == 0 && step != o.steps && !out_of_time) {
      if ((st = save_state(dp, 0, m, tok, &o, &ts, mom, vel, &aux))) break;
    }
    if (cb) cb(&ev, user);
    if (o.progress) {
      char extra[128];
      double el = lm_time_sec() - t_start;
      if (isfinite(last_val)) snprintf(extra, sizeof extra, "loss %.4f val %.4f | %.0f tok/s", loss, last_val, tokens_done / el);
      else snprintf(extra, sizeof extra, "loss %.4f | %.0f tok/s", loss, tokens_done / el);
      lm_progress_update(&bar, step, extra);
    }
    if (out_of_time) {
      if (rank0 && step < o.steps)
        fprintf(stderr, "train: the time limit (%.0f s) ran out at step %lld of %lld; --resume %s continues the run\n",
                o.time_limit, (long long)step, (long long)o.steps, o.out_dir);
      break;
    }
  }
  if (o.progress) lm_progress_finish(&bar, NULL);
  if (!st) st = save_state(dp, 1, m, tok, &o, &ts, mom, vel, &aux);
cleanup:
  lm_dp_free(dp);
  lm_free(full_mom); lm_free(full_vel);
  if (metrics) fclose(metrics);
  if (obj.free) obj.free(obj.self);
  lm_free(mom); lm_free(vel); lm_free(aux.mom); lm_free(aux.vel);
  lm_stream_free(&train); lm_stream_free(&val);
cleanup_saved:
  cJSON_Delete(ts.obj_state);
  if (saved_data) { for (int i = 0; i < n_saved; i++) free(saved_data[i]); free(saved_data); }
  return st;
}
