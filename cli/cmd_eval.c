/* cmd_eval.c — `lmkit eval`: evaluates a model on a task chosen from a table:
 * perplexity (mean next-token loss over a token stream, and bits per byte so
 * that models with different tokenizers compare) or multiple-choice by
 * log-likelihood as lm-evaluation-harness scores HellaSwag (src/eval/mc.c),
 * zero- or k-shot. --report writes the settings and metrics as JSON. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <cjson/cJSON.h>
#include "cli.h"
#include "base/base.h"
#include "eval/mc.h"
#include "train/train.h"

static const char *HELP =
  "usage: lmkit eval --model DIR --data FILE|DIR... [--task NAME] [options]\n"
  "\n"
  "Evaluates the model on a task:\n"
  "  perplexity       (default) the mean loss (nats per token) and perplexity over\n"
  "                   consecutive windows of the context length, and bits per byte of\n"
  "                   text files (loss / ln 2 x tokens / bytes), comparable across tokenizers\n"
  "  multiple-choice  HellaSwag-style JSONL {\"ctx\": ..., \"endings\": [...], \"label\": k}:\n"
  "                   each ending is scored by the log-likelihood of \" \" + ending after\n"
  "                   the prompt, as lm-evaluation-harness does; acc (highest sum) and\n"
  "                   acc_norm (highest sum per byte of the ending), with standard errors\n"
  "\n"
  "  --model DIR          model directory\n"
  "  --adapter DIR        a LoRA adapter (PEFT directory) on the model; its adapter_config.json\n"
  "                       names the base when --model is not given\n"
  "  --data FILE|DIR...   perplexity: text files (tokenized with the model's tokenizer) or shard\n"
  "                       directories; multiple-choice: one JSONL file\n"
  "  --task NAME          perplexity (default) or multiple-choice\n"
  "  --shots K            multiple-choice: K solved examples before each prompt, drawn from\n"
  "                       --train (default: the --data file, never the item itself) (0)\n"
  "  --train FILE         multiple-choice: the JSONL the shots come from\n"
  "  --seed N             which shots each item gets (1337)\n"
  "  --report FILE.json   write the task, settings, n, the metrics and their 95% intervals\n"
  "  --details FILE.jsonl multiple-choice: one line per item (shots, log-likelihoods, bytes,\n"
  "                       predictions, label)\n"
  "  --context N          perplexity: window length (default: the model's context)\n"
  "  --batch N            perplexity: windows per forward pass (4)\n"
  "  --threads N          threads (default: all cores)\n"
  "  --quiet              no progress bar\n";

typedef struct {
  const char *model, *adapter, *task, *train, *report, *details;
  const char **data;
  int n_data, shots, quiet;
  int64_t context, batch;
  uint64_t seed;
} eval_args;

/* the report: the task and settings, then the task's metrics (moved into it) */
static int write_report(const eval_args *a, cJSON *metrics) {
  cJSON *j = cJSON_CreateObject(), *d = cJSON_CreateArray();
  cJSON_AddStringToObject(j, "task", a->task);
  cJSON_AddStringToObject(j, "model", a->model ? a->model : a->adapter);
  for (int i = 0; i < a->n_data; i++) cJSON_AddItemToArray(d, cJSON_CreateString(a->data[i]));
  cJSON_AddItemToObject(j, "data", d);
  for (cJSON *c = metrics->child; c;) {
    cJSON *next = c->next;
    cJSON_AddItemToObject(j, c->string, cJSON_DetachItemViaPointer(metrics, c));
    c = next;
  }
  char *s = cJSON_Print(j);
  int rc = !s || lm_write_file_atomic(a->report, s, strlen(s)) ? cli_fail() : 0;
  free(s);
  cJSON_Delete(j);
  return rc;
}

static cJSON *interval(double p, double se) {
  cJSON *a = cJSON_CreateArray();
  cJSON_AddItemToArray(a, cJSON_CreateNumber(p - 1.96 * se));
  cJSON_AddItemToArray(a, cJSON_CreateNumber(p + 1.96 * se));
  return a;
}

static int task_perplexity(const eval_args *a, lm_model *m, const lm_tokenizer *tok, cJSON *metrics) {
  if (a->shots || a->train || a->details) return cli_error("--shots, --train and --details are for --task multiple-choice");
  if (a->context > lm_model_config(m)->n_positions)
    return cli_error("--context %lld is longer than the model's %lld positions", (long long)a->context,
                     (long long)lm_model_config(m)->n_positions);
  double loss; int64_t n;
  if (lm_evaluate(m, tok, a->data, a->n_data, a->context, a->batch, &loss, &n)) return cli_fail();
  /* bits per byte: text files only (a shard directory holds tokens, not the text's bytes) */
  double bytes = 0;
  int text = 1;
  for (int i = 0; i < a->n_data && text; i++) {
    struct stat st;
    text = stat(a->data[i], &st) == 0 && S_ISREG(st.st_mode);
    bytes += text ? (double)st.st_size : 0;
  }
  double bpb = NAN;
  if (text && bytes > 0) {
    lm_stream s;
    if (lm_streams_load(tok, a->data, a->n_data, 0, lm_model_config(m)->vocab_size, &s, NULL)) return cli_fail();
    bpb = loss / log(2) * (double)s.n / bytes;
    lm_stream_free(&s);
  }
  printf("loss %.4f  perplexity %.3f  tokens %lld", loss, exp(loss), (long long)n);
  if (!isnan(bpb)) printf("  bits/byte %.4f", bpb);
  printf("\n");
  cJSON_AddNumberToObject(metrics, "n", (double)n);
  cJSON_AddNumberToObject(metrics, "loss", loss);
  cJSON_AddNumberToObject(metrics, "perplexity", exp(loss));
  if (!isnan(bpb)) cJSON_AddNumberToObject(metrics, "bits_per_byte", bpb);
  return 0;
}

static lm_status write_detail(const lm_mc_detail *d, void *user) {
  FILE *f = user;
  fprintf(f, "{\"index\":%lld,\"shots\":[", (long long)d->index);
  for (int j = 0; j < d->n_shots; j++) fprintf(f, "%s%lld", j ? "," : "", (long long)d->shots[j]);
  fprintf(f, "],\"loglik\":[");
  for (int k = 0; k < d->n; k++) fprintf(f, "%s%.17g", k ? "," : "", d->loglik[k]);
  fprintf(f, "],\"bytes\":[");
  for (int k = 0; k < d->n; k++) fprintf(f, "%s%lld", k ? "," : "", (long long)d->bytes[k]);
  fprintf(f, "],\"pred\":%d,\"pred_norm\":%d,\"label\":%d}\n", d->pred, d->pred_norm, d->label);
  return ferror(f) ? lm_error(LM_ERR_IO, "--details: write failed") : LM_OK;
}

static int task_mc(const eval_args *a, lm_model *m, const lm_tokenizer *tok, cJSON *metrics) {
  if (a->n_data != 1) return cli_error("--task multiple-choice takes one --data FILE.jsonl");
  if (a->train && !a->shots) return cli_error("--train is where the shots come from: give --shots K too");
  lm_mc_set test = {0}, train = {0};
  lm_mc_result r;
  FILE *df = NULL;
  int rc = 0;
  if (lm_mc_read(a->data[0], &test) || (a->train && lm_mc_read(a->train, &train))) { rc = cli_fail(); goto done; }
  if (a->details && !(df = fopen(a->details, "w"))) { rc = cli_error("%s: cannot open for writing", a->details); goto done; }
  lm_mc_opts o = {.shots = a->shots, .train = a->train ? &train : &test, .seed = a->seed, .progress = !a->quiet};
  if (lm_mc_eval(m, tok, &test, &o, &r, df ? write_detail : NULL, df)) { rc = cli_fail(); goto done; }
  printf("multiple-choice  n %lld  shots %d  acc %.4f ± %.4f  acc_norm %.4f ± %.4f  (± 1.96 stderr)\n", (long long)r.n,
         a->shots, r.acc, 1.96 * r.acc_stderr, r.acc_norm, 1.96 * r.acc_norm_stderr);
  cJSON_AddNumberToObject(metrics, "shots", a->shots);
  if (a->shots) {
    cJSON_AddStringToObject(metrics, "train", a->train ? a->train : a->data[0]);
    cJSON_AddNumberToObject(metrics, "seed", (double)a->seed);
  }
  cJSON_AddNumberToObject(metrics, "n", (double)r.n);
  cJSON_AddNumberToObject(metrics, "acc", r.acc);
  cJSON_AddNumberToObject(metrics, "acc_stderr", r.acc_stderr);
  cJSON_AddItemToObject(metrics, "acc_ci95", interval(r.acc, r.acc_stderr));
  cJSON_AddNumberToObject(metrics, "acc_norm", r.acc_norm);
  cJSON_AddNumberToObject(metrics, "acc_norm_stderr", r.acc_norm_stderr);
  cJSON_AddItemToObject(metrics, "acc_norm_ci95", interval(r.acc_norm, r.acc_norm_stderr));
done:
  if (df && fclose(df) && !rc) rc = cli_error("%s: write failed", a->details);
  lm_mc_free(&test); lm_mc_free(&train);
  return rc;
}

static const struct {
  const char *name;
  int (*run)(const eval_args *a, lm_model *m, const lm_tokenizer *tok, cJSON *metrics);
} TASKS[] = {{"perplexity", task_perplexity}, {"multiple-choice", task_mc}};
#define N_TASKS (int)(sizeof TASKS / sizeof *TASKS)

int cmd_eval(int argc, char **argv) {
  eval_args a = {.task = "perplexity", .batch = 4, .seed = 1337};
  const char *v;
  char *base = NULL;
  int r, rc = 0;
  int64_t threads = 0, shots = 0;
  if (!(a.data = calloc(argc, sizeof *a.data))) return cli_error("out of memory");
  for (int i = 1; i < argc; i++) {
    const char *s = argv[i];
    if (cli_is_help(s)) { fputs(HELP, stdout); free(a.data); return 0; }
    if (!strcmp(s, "--data")) {
      while (i + 1 < argc && strncmp(argv[i + 1], "--", 2)) a.data[a.n_data++] = argv[++i];
      continue;
    }
    if (!strcmp(s, "--quiet")) { a.quiet = 1; continue; }
#define STR(name, dst) if ((r = cli_opt(argc, argv, &i, name, &v))) { if (r < 0) { free(a.data); return 1; } dst = v; continue; }
#define NUM(name, dst, lo, hi) if ((r = cli_opt(argc, argv, &i, name, &v))) { if (r < 0 || cli_i64(s, v, lo, hi, &dst)) { free(a.data); return 1; } continue; }
    STR("--model", a.model) STR("--adapter", a.adapter) STR("--task", a.task) STR("--train", a.train)
    STR("--report", a.report) STR("--details", a.details)
    NUM("--context", a.context, 1, 1 << 20) NUM("--batch", a.batch, 1, 1 << 16) NUM("--threads", threads, 1, 4096)
    NUM("--shots", shots, 0, 1024)
#undef STR
#undef NUM
    if ((r = cli_opt(argc, argv, &i, "--seed", &v))) { if (r < 0 || cli_u64(s, v, &a.seed)) { free(a.data); return 1; } continue; }
    free(a.data);
    return cli_unknown("eval", s);
  }
  a.shots = (int)shots;
  int t = 0;
  while (t < N_TASKS && strcmp(TASKS[t].name, a.task)) t++;
  if (t == N_TASKS) { free(a.data); return cli_error("unknown --task '%s' (perplexity, multiple-choice)", a.task); }
  if ((!a.model && !a.adapter) || !a.n_data) { free(a.data); return cli_error("--model DIR and --data FILE... are required (see 'lmkit eval --help')"); }
  lm_set_threads((int)threads);
  lm_tokenizer *tok = NULL;
  lm_model *m = NULL;
  cJSON *metrics = cJSON_CreateObject();
  /* the adapter is kept apart from the base (not merged): the loss is that of y = x W^T + (alpha/r) x A^T B^T */
  if (cli_load_with_adapter(a.model, a.adapter, 0, &m, &base)) { rc = 1; goto done; }
  if (cli_tokenizer_of(base, &tok)) { rc = cli_fail(); goto done; }
  if (!metrics) { rc = cli_error("out of memory"); goto done; }
  if ((rc = TASKS[t].run(&a, m, tok, metrics))) goto done;
  if (a.report) rc = write_report(&a, metrics);
done:
  cJSON_Delete(metrics);
  lm_model_free(m);
  free(base);
  lm_tokenizer_free(tok);
  free(a.data);
  return rc;
}
