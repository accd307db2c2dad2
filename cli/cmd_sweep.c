/* cmd_sweep.c — `lmkit sweep`: trains a ladder of GPT sizes at each compute
 * budget (IsoFLOP profiles) and records one line per run in SWEEP/runs.jsonl
 * for `lmkit fit`.
 *
 * For budget C (FLOPs) and a model of N non-embedding parameters (Kaplan's
 * count: everything but the token and position tables), the run trains on
 * D = C / (6 N) tokens: steps = ceil(D / (batch * context)), the warmup and
 * cosine decay scaled to those steps, one validation at the end. Every run is
 * the one trainer (lm_train) in SWEEP/runs/<name>, saving checkpoints as it
 * goes; re-running the same command skips the runs already in runs.jsonl and
 * resumes an interrupted one from its newest checkpoint (bit-exact, so a
 * killed sweep ends with the same numbers). SWEEP/sweep.json holds the plan;
 * a re-run with other settings is refused. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cjson/cJSON.h>
#include "base/base.h"
#include "cli.h"
#include "model/family.h"
#include "train/train.h"

static const char *HELP =
  "usage: lmkit sweep --data FILE|DIR... --budgets C1,C2,... --out SWEEP [options]\n"
  "\n"
  "Trains, for each compute budget C (FLOPs, C = 6 N D), a ladder of GPT-2 sizes N\n"
  "on D = C/(6N) tokens each, with the learning-rate schedule scaled to D, and writes\n"
  "one line per run to SWEEP/runs.jsonl: {\"params\": N, \"tokens\": D, \"flops\": C,\n"
  "\"val_loss\": L, ...}. N counts non-embedding parameters (Kaplan et al.). Fit the\n"
  "result with 'lmkit fit --sweep SWEEP' and plot it with 'lmkit plot --sweep SWEEP'.\n"
  "Re-running the same command continues an interrupted sweep: finished runs are\n"
  "skipped, an interrupted one resumes from its last checkpoint.\n"
  "\n"
  "  --data FILE|DIR...   training text files or prepared shard directories\n"
  "  --budgets LIST       compute budgets in FLOPs, e.g. 3e13,1e14,3e14\n"
  "  --out SWEEP          the sweep directory (runs.jsonl, sweep.json, runs/<name>/)\n"
  "  --sizes auto|LIST    model sizes as LAYERSxDIM (e.g. 2x64,4x128; heads = DIM/32,\n"
  "                       DIM a multiple of 32). auto (default): per budget the 5\n"
  "                       sizes of a built-in ladder nearest to 20 tokens per parameter\n"
  "                       that get at least 10 steps\n"
  "  --tokenizer T        'byte' (default), 'gpt2', or a tokenizer directory\n"
  "  --context N          tokens per sequence (64)\n"
  "  --val-fraction F     last fraction of the tokens held out for validation (0.05)\n"
  "  --eval-batches N     validation batches at the end of each run (20)\n"
  "  --dry-run            print the runs the sweep would train, and stop\n";

#define MIN_STEPS 10
#define AUTO_PER_BUDGET 5
/* The built-in ladder: (layers, width) from ~10K to ~20M non-embedding parameters. */
static const int LADDER[][2] = {{1, 32}, {2, 32}, {2, 64}, {3, 64}, {4, 64}, {3, 96}, {4, 128}, {6, 128},
                                {4, 192}, {6, 192}, {6, 256}, {8, 256}, {8, 320}, {8, 384}, {10, 448},
                                {12, 512}};
#define N_LADDER (int)(sizeof LADDER / sizeof *LADDER)

typedef struct { int layers, dim; double params, total; } size_t_;
typedef struct { int budget, size; double tokens; int64_t steps; char name[64]; } run_plan;

/* N (non-embedding) and the total of a GPT-2 of this shape: built once to count, not guessed */
static int count_params(int layers, int dim, int64_t vocab, int64_t context, double *n, double *total) {
  lm_config c;
  lm_config_default(&c, LM_ARCH_GPT2);
  c.vocab_size = vocab; c.n_positions = context; c.n_layer = layers; c.n_embd = dim; c.n_head = dim / 32;
  lm_model *m = NULL;
  if (lm_model_create(&m, &c, 1)) return cli_fail();
  *total = (double)lm_model_num_params(m);
  *n = *total - (double)(vocab + context) * dim;   /* tied head: wte and wpe are the embeddings */
  lm_model_free(m);
  return 0;
}

static int parse_budgets(const char *s, double *b, int max, int *n) {
  *n = 0;
  for (const char *p = s; *p;) {
    char *end;
    double v = strtod(p, &end);
    if (end == p || !(v > 0) || !isfinite(v) || (*end && *end != ','))
      return cli_error("invalid value for --budgets: '%s' (expected FLOPs, e.g. 3e13,1e14)", s);
    if (*n == max) return cli_error("--budgets: at most %d budgets", max);
    b[(*n)++] = v;
    p = *end ? end + 1 : end;
  }
  return *n ? 0 : cli_error("--budgets needs at least one budget");
}

static int parse_sizes(const char *s, size_t_ *z, int max, int *n) {
  *n = 0;
  for (const char *p = s; *p;) {
    int l, d, k = 0;
    if (sscanf(p, "%dx%d%n", &l, &d, &k) != 2 || l < 1 || l > 64 || d < 32 || d > 8192 || d % 32 || (p[k] && p[k] != ','))
      return cli_error("invalid value for --sizes: '%s' (expected auto or LAYERSxDIM,... with DIM a multiple of 32, e.g. 2x64,4x128)", s);
    if (*n == max) return cli_error("--sizes: at most %d sizes", max);
    z[(*n)++] = (size_t_){.layers = l, .dim = d};
    p += k + (p[k] == ',');
  }
  return *n ? 0 : cli_error("--sizes needs at least one size");
}

/* The run names already in runs.jsonl (a sweep continues past them). */
static int recorded(const char *path, const char *name) {
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  char line[4096], key[96];
  snprintf(key, sizeof key, "\"run\":\"%s\"", name);
  int found = 0;
  while (!found && fgets(line, sizeof line, f)) found = strstr(line, key) != NULL;
  fclose(f);
  return found;
}

/* The final validation loss of a run that finished training (metrics.jsonl's line at `steps`). */
static int final_val(const char *dir, int64_t steps, double *val) {
  char *p = lm_path_join(dir, "metrics.jsonl"), line[4096];
  FILE *f = p ? fopen(p, "r") : NULL;
  free(p);
  if (!f) return 1;
  int found = 0;
  while (fgets(line, sizeof line, f)) {
    long long st; double v;
    if (sscanf(line, "{\"step\": %lld, \"val_loss\": %lf", &st, &v) == 2 && st == steps) { *val = v; found = 1; }
  }
  fclose(f);
  return !found;
}

typedef struct { double val, train; } run_result;
static void on_step(const lm_train_event *ev, void *user) {
  run_result *r = user;
  r->train = ev->train_loss;
  if (!isnan(ev->val_loss)) r->val = ev->val_loss;
}

/* Trains (or resumes, or finds finished) one run; fills *res. */
static int train_one(const lm_train_opts *base, const lm_tokenizer *tok, const size_t_ *z, const run_plan *p,
                     const char *dir, run_result *res) {
  lm_train_opts o = *base;
  o.out_dir = dir;
  o.steps = p->steps;
  o.warmup = p->steps / 10 < 100 ? p->steps / 10 : 100;
  o.eval_every = p->steps;
  o.save_every = p->steps / 4 > 1 ? p->steps / 4 : 1;
  o.keep_checkpoints = 1;
  char *state = NULL;
  int64_t at = -1;
  lm_model *m = NULL;
  int rc = 0;
  *res = (run_result){NAN, NAN};
  if (lm_dir_exists(dir) && lm_train_find_resume(dir, &state, &at) == LM_OK) {
    if (at >= p->steps) {   /* trained, but killed before runs.jsonl had its line */
      free(state);
      if (final_val(dir, p->steps, &res->val)) return cli_error("%s: finished, but metrics.jsonl has no val_loss at step %lld", dir, (long long)p->steps);
      return 0;
    }
    fprintf(stderr, "lmkit sweep: resuming %s at step %lld\n", p->name, (long long)at);
    o.resume_dir = state;
    if (lm_model_load(&m, state)) rc = cli_fail();
  } else {
    lm_clear_error();
    lm_config c;
    lm_config_default(&c, LM_ARCH_GPT2);
    c.vocab_size = lm_tokenizer_vocab_size(tok); c.n_positions = o.context;
    c.n_layer = z->layers; c.n_embd = z->dim; c.n_head = z->dim / 32;
    int64_t eot = lm_tokenizer_eot(tok);
    c.bos_token_id = c.eos_token_id = eot >= 0 ? eot : 0;
    if (lm_model_create(&m, &c, o.seed)) rc = cli_fail();
  }
  if (!rc && lm_train(m, tok, &o, on_step, res)) rc = cli_fail();
  /* the loss as metrics.jsonl has it (a double; the callback's is a float), as for a run found finished */
  if (!rc && (isnan(res->val) || final_val(dir, p->steps, &res->val)))
    rc = cli_error("%s: no validation loss (is the validation split empty?)", p->name);
  lm_model_free(m);
  free(state);
  return rc;
}

/* sweep.json: the plan. A re-run must be the same sweep. */
static int check_plan(const char *out, cJSON *plan) {
  char *path = lm_path_join(out, "sweep.json"), *text = NULL, *mine = cJSON_Print(plan);
  size_t len;
  int rc = 0;
  if (!path || !mine) { free(path); free(mine); return cli_error("out of memory"); }
  if (lm_file_exists(path)) {
    if (lm_read_file(path, &text, &len)) rc = cli_fail();
    else if (strcmp(text, mine))
      rc = cli_error("%s holds another sweep (its settings differ from these; see %s): re-run it with its own settings, "
                     "or pass another --out", out, path);
  } else if (lm_mkdir_p(out) || lm_write_file_atomic(path, mine, strlen(mine))) {
    rc = cli_fail();
  }
  free(path); free(text); free(mine);
  return rc;
}

int cmd_sweep(int argc, char **argv) {
  lm_train_opts o;
  lm_train_opts_default(&o);
  o.context = 64; o.lr = 1e-3f;
  cli_train_seen seen = {0};
  const char *out = NULL, *budgets_s = NULL, *sizes_s = "auto", *tok_spec = "byte", *v;
  const char **data = calloc(argc, sizeof *data);
  int n_data = 0, r, rc = 0, dry = 0;
  if (!data) return cli_error("out of memory");
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (cli_is_help(a)) {
      fputs(HELP, stdout);
      fputs(CLI_TRAIN_FLAGS_HELP, stdout);
      fputs("(--steps, --epochs, --warmup, --eval-every, --save-every and --resume are set by the sweep.)\n", stdout);
      free(data);
      return 0;
    }
    if (!strcmp(a, "--data")) {
      while (i + 1 < argc && strncmp(argv[i + 1], "--", 2)) data[n_data++] = argv[++i];
      continue;
    }
    if (!strcmp(a, "--dry-run")) { dry = 1; continue; }
    if ((r = cli_train_flag(argc, argv, &i, &o, &seen))) { if (r < 0) { free(data); return 1; } continue; }
#define STR(name, dst) if ((r = cli_opt(argc, argv, &i, name, &v))) { if (r < 0) { free(data); return 1; } dst = v; continue; }
    STR("--out", out) STR("--budgets", budgets_s) STR("--sizes", sizes_s) STR("--tokenizer", tok_spec)
#undef STR
    if ((r = cli_opt(argc, argv, &i, "--context", &v))) {
      if (r < 0 || cli_i64(a, v, 2, 1 << 16, &o.context)) { free(data); return 1; }
      continue;
    }
    if ((r = cli_opt(argc, argv, &i, "--val-fraction", &v))) {
      if (r < 0 || cli_f32(a, v, 0.001f, 0.9f, &o.val_fraction)) { free(data); return 1; }
      continue;
    }
    if ((r = cli_opt(argc, argv, &i, "--eval-batches", &v))) {
      if (r < 0 || cli_i64(a, v, 1, 1 << 20, &o.eval_batches)) { free(data); return 1; }
      continue;
    }
    free(data);
    return cli_unknown("sweep", a);
  }
  const char *set_by_sweep = seen.steps ? "--steps" : seen.epochs ? "--epochs" : seen.warmup ? "--warmup"
                             : seen.eval_every ? "--eval-every" : o.resume_dir ? "--resume" : o.save_every ? "--save-every" : NULL;
  if (set_by_sweep) { free(data); return cli_error("%s is set by the sweep for each run (see 'lmkit sweep --help')", set_by_sweep); }
  if (!out || !budgets_s || !n_data) { free(data); return cli_error("--data, --budgets and --out are required (see 'lmkit sweep --help')"); }
  double budgets[64];
  size_t_ sizes[64];
  int n_budgets = 0, n_sizes = 0, autosize = !strcmp(sizes_s, "auto");
  if (parse_budgets(budgets_s, budgets, 64, &n_budgets) || (!autosize && parse_sizes(sizes_s, sizes, 64, &n_sizes))) { free(data); return 1; }
  if (autosize) {
    n_sizes = N_LADDER;
    for (int k = 0; k < N_LADDER; k++) sizes[k] = (size_t_){.layers = LADDER[k][0], .dim = LADDER[k][1]};
  }
  if (!seen.min_lr) o.min_lr = o.lr / 10;
  o.eval_batches = o.eval_batches ? o.eval_batches : 20;
  lm_set_threads((int)seen.threads);
  o.data = data; o.n_data = n_data;

  lm_tokenizer *tok = NULL;
  run_plan *plan = NULL;
  cJSON *pj = NULL;
  char *runs_path = NULL;
  FILE *rf = NULL;
  if (lm_tokenizer_load(&tok, tok_spec)) { rc = cli_fail(); goto done; }
  int64_t vocab = lm_tokenizer_vocab_size(tok), per_step = o.batch * o.grad_accum * o.context;
  for (int k = 0; k < n_sizes; k++)
    if (count_params(sizes[k].layers, sizes[k].dim, vocab, o.context, &sizes[k].params, &sizes[k].total)) { rc = 1; goto done; }
  /* the plan, checked whole before anything trains */
  plan = calloc((size_t)n_budgets * n_sizes, sizeof *plan);
  if (!plan) { rc = cli_error("out of memory"); goto done; }
  int n_runs = 0;
  for (int b = 0; b < n_budgets; b++) {
    int first = n_runs, lo = 0, hi = n_sizes;
    if (autosize) {   /* the AUTO_PER_BUDGET ladder sizes around 20 tokens per parameter, each with >= MIN_STEPS */
      int best = -1;
      double best_off = INFINITY;
      for (int k = 0; k < n_sizes; k++) {
        double D = budgets[b] / (6 * sizes[k].params), off = fabs(log(D / sizes[k].params / 20));
        if (ceil(D / per_step) < MIN_STEPS) break;   /* the ladder grows: larger sizes get fewer steps */
        hi = k + 1;
        if (off < best_off) { best = k; best_off = off; }
      }
      if (best < 0) hi = 0;
      else {
        lo = best - AUTO_PER_BUDGET / 2 < 0 ? 0 : best - AUTO_PER_BUDGET / 2;
        if (lo + AUTO_PER_BUDGET > hi) lo = hi - AUTO_PER_BUDGET < 0 ? 0 : hi - AUTO_PER_BUDGET;
        if (hi > lo + AUTO_PER_BUDGET) hi = lo + AUTO_PER_BUDGET;
      }
    }
    for (int k = lo; k < hi; k++) {
      double D = budgets[b] / (6 * sizes[k].params);
      int64_t steps = (int64_t)ceil(D / per_step);
      if (steps < MIN_STEPS) {
        rc = cli_error("budget %g is too small for size %dx%d (%.0f non-embedding parameters): D = C/(6N) = %.0f tokens is "
                       "%lld steps of %lld tokens, fewer than %d; raise the budget or use smaller sizes", budgets[b],
                       sizes[k].layers, sizes[k].dim, sizes[k].params, D, (long long)steps, (long long)per_step, MIN_STEPS);
        goto done;
      }
      run_plan *p = &plan[n_runs++];
      *p = (run_plan){.budget = b, .size = k, .steps = steps, .tokens = (double)steps * per_step};
      snprintf(p->name, sizeof p->name, "C%.3g-%dx%d", budgets[b], sizes[k].layers, sizes[k].dim);
    }
    if (n_runs == first) {
      rc = cli_error("budget %g is too small for the smallest model (%dx%d, %.0f non-embedding parameters): it needs "
                     "C >= 6 N x %d steps x %lld tokens = %.3g FLOPs", budgets[b], sizes[0].layers, sizes[0].dim,
                     sizes[0].params, MIN_STEPS, (long long)per_step, 6 * sizes[0].params * MIN_STEPS * per_step);
      goto done;
    }
  }
  if (dry) {
    printf("%d runs; N counts non-embedding parameters, C = 6 N D; %lld tokens a step\n", n_runs, (long long)per_step);
    for (int i = 0; i < n_runs; i++)
      printf("%s  N %.4g  D %.4g  steps %lld  tokens/N %.1f\n", plan[i].name, sizes[plan[i].size].params, plan[i].tokens,
             (long long)plan[i].steps, plan[i].tokens / sizes[plan[i].size].params);
    goto done;
  }
  /* the plan file: a re-run of the same command continues; other settings are refused */
  pj = cJSON_CreateObject();
  cJSON *jd = cJSON_AddArrayToObject(pj, "data");
  for (int i = 0; i < n_data; i++) cJSON_AddItemToArray(jd, cJSON_CreateString(data[i]));
  cJSON_AddStringToObject(pj, "tokenizer", tok_spec);
  cJSON_AddNumberToObject(pj, "context", (double)o.context);
  cJSON_AddNumberToObject(pj, "batch", (double)o.batch);
  cJSON_AddNumberToObject(pj, "grad_accum", (double)o.grad_accum);
  cJSON_AddNumberToObject(pj, "lr", o.lr);
  cJSON_AddNumberToObject(pj, "min_lr", o.min_lr);
  cJSON_AddNumberToObject(pj, "weight_decay", o.weight_decay);
  cJSON_AddNumberToObject(pj, "clip", o.clip);
  cJSON_AddNumberToObject(pj, "seed", (double)o.seed);
  cJSON_AddNumberToObject(pj, "val_fraction", o.val_fraction);
  cJSON_AddNumberToObject(pj, "eval_batches", (double)o.eval_batches);
  cJSON *jr = cJSON_AddArrayToObject(pj, "runs");
  for (int i = 0; i < n_runs; i++) cJSON_AddItemToArray(jr, cJSON_CreateString(plan[i].name));
  if ((rc = check_plan(out, pj))) goto done;

  runs_path = lm_path_join(out, "runs.jsonl");
  if (!runs_path) { rc = cli_error("out of memory"); goto done; }
  double total_flops = 0, done_flops = 0, t0 = lm_time_sec(), run_flops = 0;
  for (int i = 0; i < n_runs; i++) total_flops += 6 * sizes[plan[i].size].params * plan[i].tokens;
  fprintf(stderr, "lmkit sweep: %d runs over %d budgets; N counts non-embedding parameters, C = 6 N D; %lld tokens a step\n",
          n_runs, n_budgets, (long long)per_step);
  for (int i = 0; i < n_runs; i++) {
    const run_plan *p = &plan[i];
    const size_t_ *z = &sizes[p->size];
    double fl = 6 * z->params * p->tokens;
    if (recorded(runs_path, p->name)) { total_flops -= fl; continue; }
    char eta[64] = "";
    double el = lm_time_sec() - t0;
    if (run_flops > 0) snprintf(eta, sizeof eta, ", ETA %.0f s", el / run_flops * (total_flops - done_flops));
    fprintf(stderr, "lmkit sweep: run %d of %d: %s, N %.4g, D %.4g tokens (%lld steps), C %.3g%s\n", i + 1, n_runs,
            p->name, z->params, p->tokens, (long long)p->steps, budgets[p->budget], eta);
    char sub[96];
    snprintf(sub, sizeof sub, "runs/%s", p->name);
    char *dir = lm_path_join(out, sub);
    run_result res;
    double t_run = lm_time_sec();
    if (!dir) { rc = cli_error("out of memory"); goto done; }
    rc = train_one(&o, tok, z, p, dir, &res);
    free(dir);
    if (rc) goto done;
    done_flops += fl; run_flops += fl;
    rf = fopen(runs_path, "a");
    if (!rf) { rc = cli_error("%s: cannot open for appending", runs_path); goto done; }
    char train_loss[32] = "null";
    if (!isnan(res.train)) snprintf(train_loss, sizeof train_loss, "%.9g", res.train);
    fprintf(rf, "{\"run\":\"%s\",\"params\":%.17g,\"tokens\":%.17g,\"flops\":%.17g,\"val_loss\":%.9g,\"params_total\":%.17g,"
                "\"layers\":%d,\"dim\":%d,\"heads\":%d,\"context\":%lld,\"batch\":%lld,\"steps\":%lld,\"lr\":%.9g,"
                "\"train_loss\":%s,\"seconds\":%.3f}\n", p->name, z->params, p->tokens, budgets[p->budget], res.val,
            z->total, z->layers, z->dim, z->dim / 32, (long long)o.context, (long long)o.batch, (long long)p->steps,
            o.lr, train_loss, lm_time_sec() - t_run);
    if (fflush(rf) || fsync(fileno(rf))) { rc = cli_error("%s: write failed", runs_path); goto done; }
    fclose(rf); rf = NULL;
    printf("%s  N %.4g  D %.4g  val_loss %.4f\n", p->name, z->params, p->tokens, res.val);
    fflush(stdout);
  }
  fprintf(stderr, "lmkit sweep: done; %s (fit it with 'lmkit fit --sweep %s')\n", runs_path, out);
done:
  if (rf) fclose(rf);
  cJSON_Delete(pj);
  free(runs_path); free(plan);
  lm_tokenizer_free(tok);
  free(data);
  return rc;
}
