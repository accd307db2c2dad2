/* rewards.c — the rewards of RL runs (rl.h lm_rewarder): a table of kinds, each
 * an open/check/score/free, chosen by the --reward spec.
 *
 * arith reads the last <answer>...</answer> of a completion as a plain number
 * (strtod over the whole trimmed span: "7", "-3.5"; an expression is not an
 * answer) and compares it with the task's answer to 1e-6. regex compiles the
 * pattern once with PCRE2 (UTF mode). cmd runs the command once per batch
 * through /bin/sh with both pipes polled, so a command that writes while it
 * reads cannot deadlock, and a deadline kills it. A reward model is loaded
 * once and scores right-padded rows of prompt + completion tokens. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pcre2.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "base/base.h"
#include "infer/calc.h"
#include "model/heads.h"
#include "model/model.h"
#include "train/posttrain.h"
#include "train/rl.h"

typedef struct {
  const char *name;      /* the spec's prefix ("" for a directory) */
  lm_status (*open)(lm_rewarder *r, const char *arg);
  lm_status (*check)(const lm_rewarder *r, const cJSON *record, const char *where);   /* may be NULL */
  lm_status (*score)(lm_rewarder *r, const lm_reward_item *items, int64_t n, float *out);
  void (*free)(lm_rewarder *r);
} reward_kind;

struct lm_rewarder {
  const reward_kind *kind;
  char *arg;
  double timeout;
  pcre2_code *re;
  pcre2_match_data *md;
  lm_model *rm;
  int64_t rm_B, rm_T;
};

/* ---------------------------------------------------------------- arith */

/* a plain number filling s[0..n) (spaces around allowed) */
static int plain_number(const char *s, size_t n, double *x) {
  while (n && (*s == ' ' || *s == '\n' || *s == '\t')) { s++; n--; }
  while (n && (s[n - 1] == ' ' || s[n - 1] == '\n' || s[n - 1] == '\t')) n--;
  if (n == 0 || n > 64) return 0;
  char buf[65];
  memcpy(buf, s, n); buf[n] = 0;
  for (size_t i = 0; i < n; i++)
    if (!strchr("0123456789.-+eE", buf[i])) return 0;   /* no hex, inf, nan */
  char *end;
  errno = 0;
  *x = strtod(buf, &end);
  return *end == 0 && errno == 0 && isfinite(*x);
}

/* the task's answer: "answer" (number or numeric string) or the value of "expression" */
static int task_answer(const cJSON *rec, double *x) {
  const cJSON *a = cJSON_GetObjectItemCaseSensitive(rec, "answer"), *e = cJSON_GetObjectItemCaseSensitive(rec, "expression");
  if (cJSON_IsNumber(a)) { *x = a->valuedouble; return 1; }
  if (cJSON_IsString(a)) return plain_number(a->valuestring, strlen(a->valuestring), x);
  if (!a && cJSON_IsString(e)) return lm_calc_eval(e->valuestring, strlen(e->valuestring), x) == 0;
  return 0;
}

static lm_status arith_check(const lm_rewarder *r, const cJSON *rec, const char *where) {
  (void)r;
  double x;
  if (task_answer(rec, &x)) return LM_OK;
  return lm_error(LM_ERR_FORMAT, "%s: the arith reward needs \"answer\" (a number or numeric string) or \"expression\" "
                  "(arithmetic the calculator evaluates)", where);
}

static lm_status arith_score(lm_rewarder *r, const lm_reward_item *it, int64_t n, float *out) {
  (void)r;
  for (int64_t i = 0; i < n; i++) {
    double want, got;
    out[i] = 0;
    if (!task_answer(it[i].record, &want)) return lm_error(LM_ERR_FORMAT, "a task without an answer for the arith reward");
    const char *c = it[i].completion, *open = NULL;
    for (const char *p = strstr(c, "<answer>"); p; p = strstr(p + 1, "<answer>")) open = p;
    if (!open) continue;
    const char *body = open + 8, *close = strstr(body, "</answer>");
    if (close && plain_number(body, (size_t)(close - body), &got) && fabs(got - want) <= 1e-6 * (1 + fabs(want))) out[i] = 1;
  }
  return LM_OK;
}

/* ---------------------------------------------------------------- regex */

static lm_status regex_open(lm_rewarder *r, const char *pat) {
  int err; PCRE2_SIZE off;
  r->re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, PCRE2_UTF, &err, &off, NULL);
  if (!r->re) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    return lm_error(LM_ERR_ARG, "--reward regex:%s: %s at offset %zu", pat, (const char *)msg, (size_t)off);
  }
  r->md = pcre2_match_data_create_from_pattern(r->re, NULL);
  return r->md ? LM_OK : lm_error(LM_ERR_NOMEM, "out of memory");
}

static lm_status regex_score(lm_rewarder *r, const lm_reward_item *it, int64_t n, float *out) {
  for (int64_t i = 0; i < n; i++) {
    int rc = pcre2_match(r->re, (PCRE2_SPTR)it[i].completion, strlen(it[i].completion), 0, 0, r->md, NULL);
    int bad_utf = rc <= PCRE2_ERROR_UTF8_ERR1 && rc >= PCRE2_ERROR_UTF8_ERR21;
    if (rc < 0 && rc != PCRE2_ERROR_NOMATCH && !bad_utf)
      return lm_error(LM_ERR_ARG, "--reward regex:%s: matching failed (%d)", r->arg, rc);
    out[i] = rc >= 0 ? 1.0f : 0.0f;   /* a completion that is not valid UTF-8 does not match */
  }
  return LM_OK;
}

static void regex_free(lm_rewarder *r) { pcre2_match_data_free(r->md); pcre2_code_free(r->re); }

/* ---------------------------------------------------------------- cmd */

static lm_status cmd_open(lm_rewarder *r, const char *cmd) {
  (void)r;
  return *cmd ? LM_OK : lm_error(LM_ERR_ARG, "--reward-cmd: an empty command");
}

/* runs cmd with in on stdin; *out its stdout (malloc'ed, NUL-terminated) */
static lm_status run_cmd(const char *cmd, const char *in, size_t in_len, double timeout, char **out, size_t *out_len) {
  int pin[2], pout[2];
  if (pipe(pin)) return lm_error(LM_ERR_IO, "--reward-cmd: pipe: %s", strerror(errno));
  if (pipe(pout)) { close(pin[0]); close(pin[1]); return lm_error(LM_ERR_IO, "--reward-cmd: pipe: %s", strerror(errno)); }
  pid_t pid = fork();
  if (pid < 0) { close(pin[0]); close(pin[1]); close(pout[0]); close(pout[1]); return lm_error(LM_ERR_IO, "--reward-cmd: fork: %s", strerror(errno)); }
  if (pid == 0) {
    dup2(pin[0], 0); dup2(pout[1], 1);
    close(pin[0]); close(pin[1]); close(pout[0]); close(pout[1]);
    execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
    _exit(127);
  }
  close(pin[0]); close(pout[1]);
  fcntl(pin[1], F_SETFL, O_NONBLOCK);
  signal(SIGPIPE, SIG_IGN);   /* a command that exits early must not kill us */
  size_t sent = 0, cap = 4096, got = 0;
  char *buf = malloc(cap);
  lm_status st = buf ? LM_OK : lm_error(LM_ERR_NOMEM, "out of memory");
  int wfd = pin[1], rfd = pout[0];
  if (in_len == 0) { close(wfd); wfd = -1; }
  double deadline = lm_time_sec() + timeout;
  while (!st && rfd >= 0) {
    double left = deadline - lm_time_sec();
    if (left <= 0) { st = lm_error(LM_ERR_IO, "--reward-cmd '%s' took longer than %g s (killed)", cmd, timeout); break; }
    struct pollfd p[2] = {{.fd = rfd, .events = POLLIN}, {.fd = wfd, .events = POLLOUT}};
    if (poll(p, wfd >= 0 ? 2 : 1, (int)(left * 1000) + 1) < 0 && errno != EINTR) { st = lm_error(LM_ERR_IO, "poll: %s", strerror(errno)); break; }
    if (wfd >= 0 && (p[1].revents & (POLLOUT | POLLERR | POLLHUP))) {
      ssize_t k = write(wfd, in + sent, in_len - sent);
      if (k > 0) sent += (size_t)k;
      if (k < 0 && errno != EAGAIN && errno != EINTR) sent = in_len;   /* the command closed its input */
      if (sent == in_len) { close(wfd); wfd = -1; }
    }
    if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      if (got + 4096 + 1 > cap) {
        char *nb = realloc(buf, cap * 2);
        if (!nb) { st = lm_error(LM_ERR_NOMEM, "out of memory"); break; }
        buf = nb; cap *= 2;
      }
      ssize_t k = read(rfd, buf + got, cap - got - 1);
      if (k > 0) got += (size_t)k;
      else if (k == 0 || (errno != EAGAIN && errno != EINTR)) { close(rfd); rfd = -1; }
    }
  }
  if (wfd >= 0) close(wfd);
  if (rfd >= 0) close(rfd);
  int status = 0;
  if (st) { kill(pid, SIGKILL); waitpid(pid, &status, 0); free(buf); return st; }
  /* stdout closed: wait for the exit within what is left of the deadline */
  while (waitpid(pid, &status, WNOHANG) == 0) {
    if (lm_time_sec() > deadline) {
      kill(pid, SIGKILL); waitpid(pid, &status, 0); free(buf);
      return lm_error(LM_ERR_IO, "--reward-cmd '%s' took longer than %g s (killed)", cmd, timeout);
    }
    usleep(1000);
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    free(buf);
    return lm_error(LM_ERR_IO, "--reward-cmd '%s' failed (%s %d)", cmd, WIFEXITED(status) ? "exit status" : "signal",
                    WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
  }
  buf[got] = 0;
  *out = buf; *out_len = got;
  return LM_OK;
}

static lm_status cmd_score(lm_rewarder *r, const lm_reward_item *it, int64_t n, float *out) {
  char *in = NULL; size_t in_len = 0;
  FILE *f = open_memstream(&in, &in_len);
  if (!f) return lm_error(LM_ERR_NOMEM, "out of memory");
  for (int64_t i = 0; i < n; i++) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "prompt", it[i].prompt);
    cJSON_AddStringToObject(j, "completion", it[i].completion);
    char *s = cJSON_PrintUnformatted(j);
    if (s) fprintf(f, "%s\n", s);
    free(s); cJSON_Delete(j);
  }
  fclose(f);
  char *res = NULL; size_t res_len = 0;
  lm_status st = run_cmd(r->arg, in, in_len, r->timeout, &res, &res_len);
  free(in);
  if (st) return st;
  char *p = res;
  int64_t i = 0;
  for (; i < n && !st; i++) {
    char *nl = strchr(p, '\n');
    if (!nl && !*p) { st = lm_error(LM_ERR_FORMAT, "--reward-cmd '%s' wrote %lld lines for %lld completions", r->arg, (long long)i, (long long)n); break; }
    if (nl) *nl = 0;
    double x;
    if (!plain_number(p, strlen(p), &x))
      st = lm_error(LM_ERR_FORMAT, "--reward-cmd '%s': line %lld is not a number: '%.40s'", r->arg, (long long)(i + 1), p);
    out[i] = (float)x;
    p = nl ? nl + 1 : p + strlen(p);
  }
  while (!st && *p == '\n') p++;
  if (!st && *p) st = lm_error(LM_ERR_FORMAT, "--reward-cmd '%s' wrote more than %lld lines", r->arg, (long long)n);
  free(res);
  return st;
}

/* ---------------------------------------------------------------- reward model */

static lm_status rm_open(lm_rewarder *r, const char *dir) {
  lm_status st = lm_model_load(&r->rm, dir);
  if (st) return lm_error_prefix(st, "--reward %s: ", dir);
  if (lm_model_config(r->rm)->head != LM_HEAD_SCALAR)
    return lm_error(LM_ERR_ARG, "--reward %s: not a reward model (its head is %s; 'lmkit reward' trains one), and not "
                    "one of arith, regex:PATTERN", dir, lm_head_name(lm_model_config(r->rm)->head));
  return LM_OK;
}

static lm_status rm_score(lm_rewarder *r, const lm_reward_item *it, int64_t n, float *out) {
  int64_t T = 1, V = lm_model_config(r->rm)->vocab_size, P = lm_model_config(r->rm)->n_positions;
  for (int64_t i = 0; i < n; i++) T = it[i].n_ids > T ? it[i].n_ids : T;
  if (T > P) return lm_error(LM_ERR_RANGE, "a prompt + completion of %lld tokens is longer than the reward model's %lld positions", (long long)T, (long long)P);
  int64_t B = n < 16 ? n : 16;
  if (B > r->rm_B || T > r->rm_T) {
    lm_status st = lm_model_reserve(r->rm, B > r->rm_B ? B : r->rm_B, T > r->rm_T ? T : r->rm_T, 0);
    if (st) return st;
    r->rm_B = B > r->rm_B ? B : r->rm_B; r->rm_T = T > r->rm_T ? T : r->rm_T;
  }
  int32_t *ids = calloc((size_t)(B * T), sizeof *ids);
  uint8_t *mask = calloc((size_t)(B * T), 1);
  lm_status st = ids && mask ? LM_OK : lm_error(LM_ERR_NOMEM, "out of memory");
  for (int64_t i0 = 0; i0 < n && !st; i0 += B) {
    int64_t nb = n - i0 < B ? n - i0 : B;
    memset(ids, 0, (size_t)(B * T) * sizeof *ids); memset(mask, 0, (size_t)(B * T));
    for (int64_t b = 0; b < nb; b++)
      for (int64_t t = 0; t < it[i0 + b].n_ids; t++) {
        int32_t y = it[i0 + b].ids[t];
        if (y < 0 || y >= V) { st = lm_error(LM_ERR_RANGE, "token %d is outside the reward model's vocabulary of %lld: it needs the policy's tokenizer", y, (long long)V); break; }
        ids[b * T + t] = y; mask[b * T + t] = 1;
      }
    if (!st) st = lm_reward_score(r->rm, ids, mask, nb, T, out + i0);
  }
  free(ids); free(mask);
  return st;
}

static void rm_free(lm_rewarder *r) { lm_model_free(r->rm); }

/* ---------------------------------------------------------------- the table */

static const reward_kind KINDS[] = {
  {"arith", NULL, arith_check, arith_score, NULL},
  {"regex:", regex_open, NULL, regex_score, regex_free},
  {"cmd:", cmd_open, NULL, cmd_score, NULL},
  {"", rm_open, NULL, rm_score, rm_free},   /* anything else: a reward-model directory */
};

lm_status lm_rewarder_open(lm_rewarder **out, const char *spec, double timeout_sec) {
  *out = NULL;
  const reward_kind *k = NULL;
  for (size_t i = 0; i < sizeof KINDS / sizeof *KINDS && !k; i++) {
    size_t n = strlen(KINDS[i].name);
    int exact = n && KINDS[i].name[n - 1] != ':';   /* "arith" takes no argument */
    if (exact ? !strcmp(spec, KINDS[i].name) : !strncmp(spec, KINDS[i].name, n)) k = &KINDS[i];
  }
  lm_rewarder *r = calloc(1, sizeof *r);
  if (!r) return lm_error(LM_ERR_NOMEM, "out of memory");
  r->kind = k; r->timeout = timeout_sec;
  r->arg = lm_strdup(spec + strlen(k->name));
  lm_status st = r->arg ? LM_OK : lm_error(LM_ERR_NOMEM, "out of memory");
  if (!st && k->open) st = k->open(r, r->arg);
  if (st) { lm_rewarder_free(r); return st; }
  *out = r;
  return LM_OK;
}

void lm_rewarder_free(lm_rewarder *r) {
  if (!r) return;
  if (r->kind && r->kind->free) r->kind->free(r);
  free(r->arg); free(r);
}

const char *lm_rewarder_name(const lm_rewarder *r) { return *r->kind->name ? r->kind->name : "model"; }

lm_status lm_rewarder_check(const lm_rewarder *r, const cJSON *record, const char *where) {
  return r->kind->check ? r->kind->check(r, record, where) : LM_OK;
}

lm_status lm_rewarder_score(lm_rewarder *r, const lm_reward_item *items, int64_t n, float *out) {
  return r->kind->score(r, items, n, out);
}
