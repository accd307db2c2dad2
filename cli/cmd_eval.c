/* cmd_eval.c — `lmkit eval`: evaluates a model on a task chosen from a table:
 * perplexity (mean next-token loss over a token stream, and bits per byte so
 * that models with different tokenizers compare), multiple-choice by
 * log-likelihood as lm-evaluation-harness scores HellaSwag (src/eval/mc.c),
 * classification by prompt (src/eval/pcls.c: label words as the endings of a
 * multiple-choice task, so the same scorer) and generation with exact match
 * (src/eval/em.c), zero- or k-shot. --report writes the settings and metrics
 * as JSON. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <cjson/cJSON.h>
#include "cli.h"
#include "base/base.h"
#include "eval/pcls.h"
#include "eval/em.h"
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
  "  classify         JSONL {\"text\": ..., \"label\": ...} or TSV TEXT<TAB>LABEL (SST-2's files):\n"
  "                   the text goes into --template, each label word is scored as \" \" + word\n"
  "                   after it (as a multiple-choice ending); acc with its interval, per class\n"
  "  exact-match      JSONL {\"input\": ..., \"target\": ...} (or prompt/answer; target may be a\n"
  "                   list of answers): the model continues the input (greedy) up to --stop, its\n"
  "                   end of text or --max-tokens; EM of the normalized output and targets\n"
  "\n"
  "  --model DIR          model directory\n"
  "  --adapter DIR        a LoRA adapter (PEFT directory) on the model; its adapter_config.json\n"
  "                       names the base when --model is not given\n"
  "  --data FILE|DIR...   perplexity: text files (tokenized with the model's tokenizer) or shard\n"
  "                       directories; the other tasks: one file of records\n"
  "  --task NAME          perplexity (default), multiple-choice, classify or exact-match\n"
  "  --shots K            K solved examples before each prompt, drawn from --train (default:\n"
  "                       the --data file, never the item itself) (0)\n"
  "  --train FILE         the records the shots come from\n"
  "  --template T         classify: the prompt, {text} replaced by the record's text; \\n and \\t\n"
  "                       are a newline and a tab (\"{text}\\nLabel:\")\n"
  "  --labels W,W,...     classify: the label words (default: the labels in the data, in byte\n"
  "                       order); a numeric label k means the k-th word\n"
  "  --stop S             exact-match: the output ends before S (\"\\n\"; \"\" = none)\n"
  "  --em-normalize M     exact-match: strip (surrounding whitespace; default), lower (and\n"
  "                       lowercase) or squad (SQuAD's: lowercase, no punctuation or articles)\n"
  "  generation flags     exact-match: as lmkit generate's (--max-tokens, --temperature, --beams,\n"
  "                       ...), but greedy (--temperature 0) and --max-tokens 32 by default\n"
  "  --seed N             which shots each item gets (1337)\n"
  "  --report FILE.json   write the task, settings, n, the metrics and their 95% intervals\n"
  "  --details FILE.jsonl one line per item: multiple-choice and classify: shots, log-likelihoods,\n"
  "                       bytes, predictions, label; exact-match: shots, prompt, output, match\n"
  "  --context N          perplexity: window length (default: the model's context)\n"
  "  --batch N            perplexity: windows per forward pass (4)\n"
  "  --threads N          threads (default: all cores)\n"
  "  --quiet              no progress bar\n";

typedef struct {
  const char *model, *adapter, *task, *train, *report, *details;
  const char *tmpl, *labels, *stop, *em_norm;   /* tmpl and stop with their escapes undone */
  const char **data;
  int n_data, shots, quiet, gen_given;
  int64_t context, batch;
  uint64_t seed;
  lm_gen_opts gen;
} eval_args;

/* \n, \t and \\ in a flag's value (written in place: the result is never longer) */
static char *unescape(char *s) {
  char *w = s;
  for (const char *p = s; *p; p++) {
    if (*p == '\\' && (p[1] == 'n' || p[1] == 't' || p[1] == '\\')) { p++; *w++ = *p == 'n' ? '\n' : *p == 't' ? '\t' : '\\'; }
    else *w++ = *p;
  }
  *w = 0;
  return s;
}

/* flags that belong to some tasks only: an error elsewhere rather than silently unused */
static int only_for(const eval_args *a, int shots_ok, int cls_ok, int em_ok) {
  if (!shots_ok && (a->shots || a->train || a->details))
    return cli_error("--shots, --train and --details are not for --task %s", a->task);
  if (!cls_ok && (a->tmpl || a->labels)) return cli_error("--template and --labels are for --task classify");
  if (!em_ok && (a->stop || a->em_norm || a->gen_given))
    return cli_error("--stop, --em-normalize and the generation flags are for --task exact-match");
  if (a->train && !a->shots) return cli_error("--train is where the shots come from: give --shots K too");
  if (shots_ok && a->n_data != 1) return cli_error("--task %s takes one --data FILE", a->task);
  return 0;
}

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
  if (only_for(a, 0, 0, 0)) return 1;
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

/* the shots' settings and n, which every prompted task reports */
static void add_shots(const eval_args *a, cJSON *metrics, int64_t n) {
  cJSON_AddNumberToObject(metrics, "shots", a->shots);
  if (a->shots) {
    cJSON_AddStringToObject(metrics, "train", a->train ? a->train : a->data[0]);
    cJSON_AddNumberToObject(metrics, "seed", (double)a->seed);
  }
  cJSON_AddNumberToObject(metrics, "n", (double)n);
}

static void add_metric(cJSON *metrics, const char *name, double p, double se) {
  char key[64];
  cJSON_AddNumberToObject(metrics, name, p);
  snprintf(key, sizeof key, "%s_stderr", name);
  cJSON_AddNumberToObject(metrics, key, se);
  snprintf(key, sizeof key, "%s_ci95", name);
  cJSON_AddItemToObject(metrics, key, interval(p, se));
}

/* Runs a multiple-choice set (HellaSwag records, or classification records turned into one);
 * per-class counts when `words` names the classes. */
typedef struct { FILE *df; int64_t *count; int n_words; } mc_user;

static lm_status on_mc_item(const lm_mc_detail *d, void *user) {
  mc_user *u = user;
  if (u->count) { u->count[3 * d->label]++; u->count[3 * d->label + 1] += d->pred == d->label; u->count[3 * d->pred + 2]++; }
  return u->df ? write_detail(d, u->df) : LM_OK;
}

static int run_mc(const eval_args *a, lm_model *m, const lm_tokenizer *tok, const lm_mc_set *test, const lm_mc_set *train,
                  const char *const *words, int n_words, cJSON *metrics) {
  lm_mc_result r;
  mc_user u = {.n_words = n_words};
  int rc = 0;
  if (words && !(u.count = calloc((size_t)n_words * 3, sizeof *u.count))) return cli_error("out of memory");
  if (a->details && !(u.df = fopen(a->details, "w"))) { free(u.count); return cli_error("%s: cannot open for writing", a->details); }
  lm_mc_opts o = {.shots = a->shots, .train = a->train ? train : test, .seed = a->seed, .progress = !a->quiet};
  if (lm_mc_eval(m, tok, test, &o, &r, on_mc_item, &u)) { rc = cli_fail(); goto done; }
  printf("%s  n %lld  shots %d  acc %.4f ± %.4f", a->task, (long long)r.n, a->shots, r.acc, 1.96 * r.acc_stderr);
  if (!words) printf("  acc_norm %.4f ± %.4f", r.acc_norm, 1.96 * r.acc_norm_stderr);
  printf("  (± 1.96 stderr)\n");
  add_shots(a, metrics, r.n);
  add_metric(metrics, "acc", r.acc, r.acc_stderr);
  if (!words) { add_metric(metrics, "acc_norm", r.acc_norm, r.acc_norm_stderr); goto done; }
  cJSON *cl = cJSON_AddArrayToObject(metrics, "classes");
  for (int k = 0; k < n_words; k++) {
    const int64_t *c = u.count + 3 * k;
    printf("  %-16s n %lld  right %lld (recall %.3f)  predicted %lld\n", words[k], (long long)c[0], (long long)c[1],
           c[0] ? (double)c[1] / (double)c[0] : 0.0, (long long)c[2]);
    cJSON *x = cJSON_CreateObject();
    cJSON_AddStringToObject(x, "label", words[k]);
    cJSON_AddNumberToObject(x, "n", (double)c[0]);
    cJSON_AddNumberToObject(x, "right", (double)c[1]);
    cJSON_AddNumberToObject(x, "predicted", (double)c[2]);
    cJSON_AddItemToArray(cl, x);
  }
done:
  if (u.df && fclose(u.df) && !rc) rc = cli_error("%s: write failed", a->details);
  free(u.count);
  return rc;
}

static int task_mc(const eval_args *a, lm_model *m, const lm_tokenizer *tok, cJSON *metrics) {
  if (only_for(a, 1, 0, 0)) return 1;
  lm_mc_set test = {0}, train = {0};
  int rc = lm_mc_read(a->data[0], &test) || (a->train && lm_mc_read(a->train, &train)) ? cli_fail()
           : run_mc(a, m, tok, &test, &train, NULL, 0, metrics);
  lm_mc_free(&test); lm_mc_free(&train);
  return rc;
}

static int task_classify(const eval_args *a, lm_model *m, const lm_tokenizer *tok, cJSON *metrics) {
  if (only_for(a, 1, 1, 0)) return 1;
  lm_pcls_set test = {0}, train = {0};
  lm_mc_set mtest = {0}, mtrain = {0};
  const char **words = NULL;
  char *list = NULL;
  int n_words = 0, rc = 0;
  const char *tmpl = a->tmpl ? a->tmpl : LM_PCLS_TEMPLATE;
  if (lm_pcls_read(a->data[0], &test) || (a->train && lm_pcls_read(a->train, &train))) { rc = cli_fail(); goto done; }
  if (a->labels) {   /* W,W,...: pointers into a copy */
    if (!(list = lm_strdup(a->labels)) || !(words = calloc(strlen(list) / 2 + 2, sizeof *words))) { rc = cli_error("out of memory"); goto done; }
    for (char *p = list;; p++) {
      words[n_words++] = p;
      if (!(p = strchr(p, ','))) break;
      *p = 0;
    }
  } else {
    const lm_pcls_set *sets[2] = {&test, &train};
    if (lm_pcls_default_words(sets, a->train ? 2 : 1, &words, &n_words)) { rc = cli_fail(); goto done; }
  }
  if (lm_pcls_to_mc(&test, a->data[0], tmpl, words, n_words, &mtest) ||
      (a->train && lm_pcls_to_mc(&train, a->train, tmpl, words, n_words, &mtrain))) { rc = cli_fail(); goto done; }
  rc = run_mc(a, m, tok, &mtest, &mtrain, words, n_words, metrics);
  if (!rc) {
    cJSON_AddStringToObject(metrics, "template", tmpl);
    cJSON *w = cJSON_AddArrayToObject(metrics, "labels");
    for (int k = 0; k < n_words; k++) cJSON_AddItemToArray(w, cJSON_CreateString(words[k]));
  }
done:
  free(words); free(list);
  lm_pcls_free(&test); lm_pcls_free(&train); lm_mc_free(&mtest); lm_mc_free(&mtrain);
  return rc;
}

static lm_status write_em_detail(const lm_em_detail *d, void *user) {
  FILE *f = user;
  fprintf(f, "{\"index\":%lld,\"shots\":[", (long long)d->index);
  for (int j = 0; j < d->n_shots; j++) fprintf(f, "%s%lld", j ? "," : "", (long long)d->shots[j]);
  fprintf(f, "],\"prompt\":");
  cli_json_str(f, d->prompt);
  fprintf(f, ",\"output\":");
  cli_json_str(f, d->output);
  fprintf(f, ",\"match\":%d}\n", d->match);
  return ferror(f) ? lm_error(LM_ERR_IO, "--details: write failed") : LM_OK;
}

static int task_em(const eval_args *a, lm_model *m, const lm_tokenizer *tok, cJSON *metrics) {
  if (only_for(a, 1, 0, 1)) return 1;
  lm_em_set test = {0}, train = {0};
  lm_em_result r;
  FILE *df = NULL;
  int rc = 0;
  lm_em_opts o = {.shots = a->shots, .seed = a->seed, .stop = a->stop ? a->stop : "\n", .gen = a->gen, .progress = !a->quiet};
  if (a->em_norm && lm_em_norm_parse(a->em_norm, &o.norm)) return cli_error("--em-normalize: %s", lm_last_error());
  if (lm_em_read(a->data[0], &test) || (a->train && lm_em_read(a->train, &train))) { rc = cli_fail(); goto done; }
  if (a->details && !(df = fopen(a->details, "w"))) { rc = cli_error("%s: cannot open for writing", a->details); goto done; }
  o.train = a->train ? &train : &test;
  if (lm_em_eval(m, tok, &test, &o, &r, df ? write_em_detail : NULL, df)) { rc = cli_fail(); goto done; }
  printf("exact-match  n %lld  shots %d  em %.4f ± %.4f  (± 1.96 stderr)\n", (long long)r.n, a->shots, r.em, 1.96 * r.em_stderr);
  add_shots(a, metrics, r.n);
  add_metric(metrics, "em", r.em, r.em_stderr);
  cJSON_AddStringToObject(metrics, "stop", o.stop);
  cJSON_AddStringToObject(metrics, "normalize", a->em_norm ? a->em_norm : "strip");
  cJSON_AddNumberToObject(metrics, "max_tokens", (double)o.gen.max_tokens);
  cJSON_AddNumberToObject(metrics, "temperature", o.gen.temperature);
done:
  if (df && fclose(df) && !rc) rc = cli_error("%s: write failed", a->details);
  lm_em_free(&test); lm_em_free(&train);
  return rc;
}

static const struct {
  const char *name;
  int (*run)(const eval_args *a, lm_model *m, const lm_tokenizer *tok, cJSON *metrics);
} TASKS[] = {{"perplexity", task_perplexity}, {"multiple-choice", task_mc}, {"classify", task_classify},
             {"exact-match", task_em}};
#define N_TASKS (int)(sizeof TASKS / sizeof *TASKS)

int cmd_eval(int argc, char **argv) {
  eval_args a = {.task = "perplexity", .batch = 4, .seed = 1337};
  lm_gen_opts_default(&a.gen);
  a.gen.temperature = 0;   /* greedy, and a shorter answer than generate's default */
  a.gen.max_tokens = 32;
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
    STR("--report", a.report) STR("--details", a.details) STR("--template", a.tmpl) STR("--labels", a.labels)
    STR("--stop", a.stop) STR("--em-normalize", a.em_norm)
    NUM("--context", a.context, 1, 1 << 20) NUM("--batch", a.batch, 1, 1 << 16) NUM("--threads", threads, 1, 4096)
    NUM("--shots", shots, 0, 1024)
#undef STR
#undef NUM
    if ((r = cli_opt(argc, argv, &i, "--seed", &v))) { if (r < 0 || cli_u64(s, v, &a.seed)) { free(a.data); return 1; } continue; }
    if ((r = cli_gen_flag(argc, argv, &i, &a.gen))) { if (r < 0) { free(a.data); return 1; } a.gen_given = 1; continue; }
    free(a.data);
    return cli_unknown("eval", s);
  }
  a.shots = (int)shots;
  a.gen.seed = a.seed;
  if (a.tmpl) a.tmpl = unescape((char *)a.tmpl);   /* argv's strings are ours to change */
  if (a.stop) a.stop = unescape((char *)a.stop);
  int t = 0;
  while (t < N_TASKS && strcmp(TASKS[t].name, a.task)) t++;
  if (t == N_TASKS) { free(a.data); return cli_error("unknown --task '%s' (perplexity, multiple-choice, classify, exact-match)", a.task); }
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
