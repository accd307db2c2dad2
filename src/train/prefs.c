/* prefs.c — preference pairs for the reward model and the direct preference
 * methods (posttrain.h): reading the record formats people use (TRL's
 * prompt/chosen/rejected with strings or message lists, implicit prompts,
 * Anthropic's hh-rlhf dialogues), skipping and counting the pairs that carry
 * no signal, and tokenizing each side through the chat template with the
 * response's tokens marked. */
#include <stdlib.h>
#include <string.h>
#include "base/base.h"
#include "model/model.h"
#include "train/posttrain_shared.h"

/* ------------------------------------------------------------------ records */

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

static int blank(const char *s) {
  for (; *s; s++) if (!is_space(*s)) return 0;
  return 1;
}

static int blank_span(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) if (!is_space(s[i])) return 0;
  return 1;
}

static const char *role_of(const cJSON *m) {
  const cJSON *r = cJSON_GetObjectItemCaseSensitive(m, "role");
  return cJSON_IsString(r) ? r->valuestring : "";
}

static const char *content_of(const cJSON *m) {
  const cJSON *c = cJSON_GetObjectItemCaseSensitive(m, "content");
  return cJSON_IsString(c) ? c->valuestring : "";
}

/* a string as [{role, s}], a message list checked and copied; NULL with the error set otherwise */
static cJSON *as_list(const cJSON *x, const char *role, const char *where, const char *field) {
  if (cJSON_IsArray(x)) {
    if (lm_chat_check_messages(x, where, field)) return NULL;
  } else if (!cJSON_IsString(x)) {
    lm_error(LM_ERR_FORMAT, "%s: %s must be a string or a list of messages", where, field);
    return NULL;
  }
  cJSON *l = lm_chat_as_messages(x, role);
  if (!l) lm_error(LM_ERR_NOMEM, "out of memory");
  return l;
}

static lm_status last_is_assistant(const cJSON *list, const char *where, const char *field) {
  const cJSON *last = cJSON_GetArrayItem(list, cJSON_GetArraySize(list) - 1);
  if (strcmp(role_of(last), "assistant"))
    return lm_error(LM_ERR_FORMAT, "%s: %s must end with an assistant message (it ends with a \"%s\" one)", where,
                    field, role_of(last));
  return LM_OK;
}

static cJSON *message(const char *role, const char *s, size_t n) {
  while (n && is_space(*s)) s++, n--;
  while (n && is_space(s[n - 1])) n--;
  char *text = malloc(n + 1);
  cJSON *m = cJSON_CreateObject();
  if (!text || !m) { free(text); cJSON_Delete(m); return NULL; }
  memcpy(text, s, n);
  text[n] = 0;
  cJSON_AddStringToObject(m, "role", role);
  cJSON_AddStringToObject(m, "content", text);
  free(text);
  return m;
}

#define HH_HUMAN "\n\nHuman:"
#define HH_ASSISTANT "\n\nAssistant:"

/* the next hh-rlhf turn marker in s[i, n): its position and kind (0 human, 1 assistant), or n */
static size_t next_marker(const char *s, size_t i, size_t n, int *kind) {
  for (; i < n; i++) {
    if (s[i] != '\n') continue;
    if (n - i >= strlen(HH_HUMAN) && !memcmp(s + i, HH_HUMAN, strlen(HH_HUMAN))) { *kind = 0; return i; }
    if (n - i >= strlen(HH_ASSISTANT) && !memcmp(s + i, HH_ASSISTANT, strlen(HH_ASSISTANT))) { *kind = 1; return i; }
  }
  return n;
}

/* An hh-rlhf pair: the prompt is the common text up to its last "\n\nAssistant:" (TRL's
 * extract_dialogue), split at "\n\nHuman:" / "\n\nAssistant:" into user / assistant turns; each
 * response is what follows that marker. Dialogues may start with "Human:" without the blank line. */
static lm_status hh_record(const char *c, const char *r, const char *where, cJSON **cc, cJSON **rr, const char **why) {
  *cc = *rr = NULL;
  /* a dialogue starting "Human:" is read as if it started "\n\nHuman:" */
  size_t lead = !strncmp(c, "Human:", 6) && !strncmp(r, "Human:", 6) ? 2 : 0;
  char *cs = NULL, *rs = NULL;
  if (lead) {
    size_t a = strlen(c), b = strlen(r);
    cs = malloc(a + 3); rs = malloc(b + 3);
    if (!cs || !rs) { free(cs); free(rs); return lm_error(LM_ERR_NOMEM, "out of memory"); }
    memcpy(cs, "\n\n", 2); memcpy(cs + 2, c, a + 1);
    memcpy(rs, "\n\n", 2); memcpy(rs + 2, r, b + 1);
    c = cs; r = rs;
  }
  size_t common = 0;
  while (c[common] && c[common] == r[common]) common++;
  /* the last assistant marker wholly inside the common text */
  size_t alen = strlen(HH_ASSISTANT), at = (size_t)-1;
  for (size_t i = 0; i + alen <= common; i++)
    if (!memcmp(c + i, HH_ASSISTANT, alen)) at = i;
  lm_status st = LM_OK;
  if (at == (size_t)-1) {
    if (!strstr(c, HH_ASSISTANT + 2) && !strstr(r, HH_ASSISTANT + 2))
      st = lm_error(LM_ERR_FORMAT, "%s: without \"prompt\", chosen and rejected must be message lists or hh-rlhf "
                    "dialogues (\"\\n\\nHuman: ...\\n\\nAssistant: ...\")", where);
    else
      *why = "no_prompt";
    free(cs); free(rs);
    return st;
  }
  cJSON *prompt = cJSON_CreateArray();
  if (!prompt) { free(cs); free(rs); return lm_error(LM_ERR_NOMEM, "out of memory"); }
  int kind = 0;
  size_t i = next_marker(c, 0, at, &kind);
  if (!blank_span(c, i))
    st = lm_error(LM_ERR_FORMAT, "%s: chosen: text before the first \"Human:\" turn of an hh-rlhf dialogue", where);
  while (!st && i < at) {
    size_t body = i + (kind ? alen : strlen(HH_HUMAN));
    int next_kind = 0;
    size_t j = next_marker(c, body, at, &next_kind);
    cJSON *m = message(kind ? "assistant" : "user", c + body, j - body);
    if (!m) { st = lm_error(LM_ERR_NOMEM, "out of memory"); break; }
    cJSON_AddItemToArray(prompt, m);
    i = j; kind = next_kind;
  }
  if (!st) {
    cJSON *a = message("assistant", c + at + alen, strlen(c + at + alen));
    cJSON *b = message("assistant", r + at + alen, strlen(r + at + alen));
    *cc = cJSON_Duplicate(prompt, 1);
    *rr = cJSON_Duplicate(prompt, 1);
    if (!a || !b || !*cc || !*rr) {
      cJSON_Delete(a); cJSON_Delete(b); cJSON_Delete(*cc); cJSON_Delete(*rr); *cc = *rr = NULL;
      st = lm_error(LM_ERR_NOMEM, "out of memory");
    } else {
      cJSON_AddItemToArray(*cc, a);
      cJSON_AddItemToArray(*rr, b);
    }
  }
  cJSON_Delete(prompt);
  free(cs); free(rs);
  return st;
}

lm_status lm_pref_record(const cJSON *rec, const char *where, cJSON **chosen, cJSON **rejected, double *margin,
                         const char **why) {
  *chosen = *rejected = NULL; *why = NULL; *margin = 0;
  if (!cJSON_IsObject(rec)) return lm_error(LM_ERR_FORMAT, "%s: expected a JSON object", where);
  const cJSON *p = cJSON_GetObjectItemCaseSensitive(rec, "prompt"), *c = cJSON_GetObjectItemCaseSensitive(rec, "chosen"),
              *r = cJSON_GetObjectItemCaseSensitive(rec, "rejected"), *mg = cJSON_GetObjectItemCaseSensitive(rec, "margin");
  if (!c || !r)
    return lm_error(LM_ERR_FORMAT, "%s: a preference record needs \"chosen\" and \"rejected\" (and \"prompt\", or "
                    "hh-rlhf dialogues)", where);
  if (mg) {
    if (!cJSON_IsNumber(mg)) return lm_error(LM_ERR_FORMAT, "%s: margin must be a number", where);
    *margin = mg->valuedouble;
  }
  cJSON *cc = NULL, *rr = NULL;
  lm_status st = LM_OK;
  if (p) {
    cJSON *pl = as_list(p, "user", where, "prompt"), *cl = pl ? as_list(c, "assistant", where, "chosen") : NULL,
          *rl = cl ? as_list(r, "assistant", where, "rejected") : NULL;
    if (!rl) { cJSON_Delete(pl); cJSON_Delete(cl); return LM_ERR_FORMAT; }
    if ((st = last_is_assistant(cl, where, "chosen")) || (st = last_is_assistant(rl, where, "rejected"))) {
      cJSON_Delete(pl); cJSON_Delete(cl); cJSON_Delete(rl);
      return st;
    }
    cc = cJSON_Duplicate(pl, 1); rr = pl;
    cJSON *m;
    while ((m = cJSON_DetachItemFromArray(cl, 0))) cJSON_AddItemToArray(cc, m);
    while ((m = cJSON_DetachItemFromArray(rl, 0))) cJSON_AddItemToArray(rr, m);
    cJSON_Delete(cl); cJSON_Delete(rl);
  } else if (cJSON_IsString(c) && cJSON_IsString(r)) {
    if ((st = hh_record(c->valuestring, r->valuestring, where, &cc, &rr, why)) || *why) return st;
  } else if (cJSON_IsArray(c) && cJSON_IsArray(r)) {
    /* implicit prompt: both lists share every message but their last */
    if ((st = lm_chat_check_messages(c, where, "chosen")) || (st = lm_chat_check_messages(r, where, "rejected")) ||
        (st = last_is_assistant(c, where, "chosen")) || (st = last_is_assistant(r, where, "rejected")))
      return st;
    int nc = cJSON_GetArraySize(c), nr = cJSON_GetArraySize(r), k = 0;
    while (k < nc && k < nr && cJSON_Compare(cJSON_GetArrayItem(c, k), cJSON_GetArrayItem(r, k), 1)) k++;
    if (nc != nr || k < nc - 1) { *why = "no_prompt"; return LM_OK; }
    cc = cJSON_Duplicate(c, 1); rr = cJSON_Duplicate(r, 1);
  } else {
    return lm_error(LM_ERR_FORMAT, "%s: without \"prompt\", chosen and rejected must both be strings (hh-rlhf "
                    "dialogues) or both message lists", where);
  }
  if (!cc || !rr) { cJSON_Delete(cc); cJSON_Delete(rr); return lm_error(LM_ERR_NOMEM, "out of memory"); }
  const cJSON *lc = cJSON_GetArrayItem(cc, cJSON_GetArraySize(cc) - 1), *lr = cJSON_GetArrayItem(rr, cJSON_GetArraySize(rr) - 1);
  if (blank(content_of(lc)) || blank(content_of(lr))) *why = "empty";
  else if (cJSON_Compare(cc, rr, 1)) *why = "identical";
  if (*why) { cJSON_Delete(cc); cJSON_Delete(rr); return LM_OK; }
  *chosen = cc; *rejected = rr;
  return LM_OK;
}

lm_status lm_pref_prompt_response(const cJSON *rec, const char *where, cJSON **conv) {
  *conv = NULL;
  if (!cJSON_IsObject(rec)) return lm_error(LM_ERR_FORMAT, "%s: expected a JSON object", where);
  const cJSON *p = cJSON_GetObjectItemCaseSensitive(rec, "prompt"), *r = cJSON_GetObjectItemCaseSensitive(rec, "response");
  if (!p || !r) return lm_error(LM_ERR_FORMAT, "%s: expected {\"prompt\": ..., \"response\": ...}", where);
  cJSON *pl = as_list(p, "user", where, "prompt"), *rl = pl ? as_list(r, "assistant", where, "response") : NULL;
  lm_status st = !rl ? LM_ERR_FORMAT : last_is_assistant(rl, where, "response");
  if (st) { cJSON_Delete(pl); cJSON_Delete(rl); return st; }
  cJSON *m;
  while ((m = cJSON_DetachItemFromArray(rl, 0))) cJSON_AddItemToArray(pl, m);
  cJSON_Delete(rl);
  *conv = pl;
  return LM_OK;
}

/* ------------------------------------------------------------------ data */

void lm_pref_data_free(lm_pref_data *d) {
  free(d->ids); free(d->mask); free(d->off); free(d->margin); free(d->line);
  memset(d, 0, sizeof *d);
}

void lm_pref_put(const lm_pref_data *d, int64_t s, int64_t T, int32_t pad, int32_t *ids, uint8_t *mask, int32_t *targets) {
  int64_t a = d->off[s], k = d->off[s + 1] - a;
  for (int64_t t = 0; t < T; t++) {
    int real = t < k;
    ids[t] = real ? (int32_t)d->ids[a + t] : pad;
    if (mask) mask[t] = (uint8_t)real;
    if (targets) targets[t] = t + 1 < k && d->mask[a + t + 1] ? (int32_t)d->ids[a + t + 1] : -1;
  }
}

/* growable storage of lm_pref_data */
typedef struct { size_t tok_cap; int64_t pair_cap; } pref_caps;

static lm_status add_pair(lm_pref_data *d, pref_caps *cap, const uint32_t *const ids[2], const uint8_t *const mask[2],
                          const size_t len[2], float margin, int64_t line) {
  if (d->n == cap->pair_cap) {
    int64_t nc = cap->pair_cap ? 2 * cap->pair_cap : 256;
    int64_t *o2 = lm_xrealloc(d->off, (size_t)(2 * nc + 1) * sizeof *o2);
    if (!o2) return LM_ERR_NOMEM;
    d->off = o2;
    float *m2 = lm_xrealloc(d->margin, (size_t)nc * sizeof *m2);
    if (!m2) return LM_ERR_NOMEM;
    d->margin = m2;
    int64_t *l2 = lm_xrealloc(d->line, (size_t)nc * sizeof *l2);
    if (!l2) return LM_ERR_NOMEM;
    d->line = l2;
    if (cap->pair_cap == 0) d->off[0] = 0;
    cap->pair_cap = nc;
  }
  size_t used = (size_t)d->off[2 * d->n];
  if (used + len[0] + len[1] > cap->tok_cap) {
    size_t nc = cap->tok_cap ? cap->tok_cap : 4096;
    while (nc < used + len[0] + len[1]) nc *= 2;
    uint32_t *i2 = lm_xrealloc(d->ids, nc * sizeof *i2);
    if (!i2) return LM_ERR_NOMEM;
    d->ids = i2;
    uint8_t *m2 = lm_xrealloc(d->mask, nc);
    if (!m2) return LM_ERR_NOMEM;
    d->mask = m2;
    cap->tok_cap = nc;
  }
  for (int s = 0; s < 2; s++) {
    memcpy(d->ids + used, ids[s], len[s] * sizeof *ids[s]);
    memcpy(d->mask + used, mask[s], len[s]);
    used += len[s];
    d->off[2 * d->n + s + 1] = (int64_t)used;
    if ((int64_t)len[s] > d->longest) d->longest = (int64_t)len[s];
  }
  d->margin[d->n] = margin;
  d->line[d->n] = line;
  d->n++;
  return LM_OK;
}

lm_status lm_pref_read(lm_pref_data *d, const char *path, const lm_chat_config *cc, const lm_tokenizer *tok,
                       int64_t max_length) {
  memset(d, 0, sizeof *d);
  char *text; size_t len;
  lm_status st = lm_read_file(path, &text, &len);
  if (st) return st;
  pref_caps cap = {0, 0};
  int64_t lineno = 0;
  size_t at = 0, l;
  const char *p;
  while (!st && lm_next_line(text, len, &at, &lineno, &p, &l)) {
    char where[600];
    snprintf(where, sizeof where, "%s:%lld", path, (long long)lineno);
    cJSON *rec = cJSON_ParseWithLength(p, l);
    if (!rec) { st = lm_error(LM_ERR_FORMAT, "%s: not valid JSON", where); break; }
    cJSON *conv[2]; double margin; const char *why;
    st = lm_pref_record(rec, where, &conv[0], &conv[1], &margin, &why);
    cJSON_Delete(rec);
    if (st) break;
    if (why) {
      if (!strcmp(why, "empty")) d->empty++;
      else if (!strcmp(why, "identical")) d->identical++;
      else d->no_prompt++;
      continue;
    }
    uint32_t *ids[2] = {NULL, NULL}; uint8_t *mask[2] = {NULL, NULL}; size_t n[2] = {0, 0};
    for (int s = 0; s < 2 && !st; s++)
      if ((st = lm_chat_encode(cc, tok, conv[s], 1, &ids[s], &mask[s], &n[s])))
        lm_error_prefix(st, "%s: %s", where, s ? "rejected" : "chosen");
    cJSON_Delete(conv[0]); cJSON_Delete(conv[1]);
    if (!st) {
      int resp[2] = {0, 0};
      for (int s = 0; s < 2; s++)
        for (size_t t = 1; t < n[s]; t++) resp[s] |= mask[s][t];
      if ((int64_t)n[0] > max_length || (int64_t)n[1] > max_length) d->too_long++;
      else if (!resp[0] || !resp[1]) d->no_response++;
      else st = add_pair(d, &cap, (const uint32_t *const *)ids, (const uint8_t *const *)mask, n, (float)margin, lineno);
    }
    for (int s = 0; s < 2; s++) { free(ids[s]); free(mask[s]); }
  }
  free(text);
  if (!st && d->n == 0)
    st = lm_error(LM_ERR_FORMAT, "%s: no usable preference pair (%lld with an empty response, %lld identical, %lld longer "
                  "than %lld tokens, %lld without a shared prompt)", path, (long long)d->empty, (long long)d->identical,
                  (long long)d->too_long, (long long)max_length, (long long)d->no_prompt);
  if (st) lm_pref_data_free(d);
  return st;
}

uint8_t *lm_held_out(int64_t n, int64_t nh, uint64_t seed) {
  int64_t *perm = lm_xmalloc((size_t)n * sizeof *perm);
  uint8_t *is_held = calloc((size_t)n, 1);
  if (!perm || !is_held) { free(perm); free(is_held); return NULL; }
  lm_rng r;
  lm_rng_seed(&r, seed);
  for (int64_t i = 0; i < n; i++) perm[i] = i;
  for (int64_t i = n - 1; i > 0; i--) {
    int64_t j = (int64_t)(lm_rng_u64(&r) % (uint64_t)(i + 1)), t = perm[i];
    perm[i] = perm[j]; perm[j] = t;
  }
  for (int64_t i = 0; i < nh; i++) is_held[perm[i]] = 1;
  free(perm);
  return is_held;
}

lm_status lm_pref_split(lm_pref_data *d, float fraction, uint64_t seed, lm_pref_data *held) {
  memset(held, 0, sizeof *held);
  int64_t nh = (int64_t)(fraction * (double)d->n + 0.5);
  if (fraction <= 0 || nh < 1) return LM_OK;
  if (nh >= d->n)
    return lm_error(LM_ERR_ARG, "a held-out share of %g leaves no training pairs (%lld in all)", (double)fraction,
                    (long long)d->n);
  uint8_t *is_held = lm_held_out(d->n, nh, seed ^ 0x9e11ULL);
  if (!is_held) return lm_error(LM_ERR_NOMEM, "out of memory");
  lm_pref_data parts[2];   /* 0: kept, 1: held out */
  memset(parts, 0, sizeof parts);
  pref_caps caps[2] = {{0, 0}, {0, 0}};
  lm_status st = LM_OK;
  for (int64_t i = 0; i < d->n && !st; i++) {
    const uint32_t *ids[2]; const uint8_t *mask[2]; size_t len[2];
    for (int s = 0; s < 2; s++) {
      int64_t a = d->off[2 * i + s];
      ids[s] = d->ids + a; mask[s] = d->mask + a; len[s] = (size_t)(d->off[2 * i + s + 1] - a);
    }
    st = add_pair(&parts[is_held[i]], &caps[is_held[i]], ids, mask, len, d->margin[i], d->line[i]);
  }
  free(is_held);
  if (st) { lm_pref_data_free(&parts[0]); lm_pref_data_free(&parts[1]); return st; }
  parts[0].empty = d->empty; parts[0].identical = d->identical; parts[0].too_long = d->too_long;
  parts[0].no_prompt = d->no_prompt; parts[0].no_response = d->no_response;
  lm_pref_data_free(d);
  *d = parts[0];
  *held = parts[1];
  return LM_OK;
}

/* ------------------------------------------------------------------ batches of pairs */

int64_t lm_pref_rows_longest(const lm_pref_data *d, const int64_t *pairs, int64_t nb) {
  int64_t Tb = 1;
  for (int64_t b = 0; b < nb; b++)
    for (int s = 0; s < 2; s++) {
      int64_t q = 2 * pairs[b] + s, k = d->off[q + 1] - d->off[q];
      if (k > Tb) Tb = k;
    }
  return Tb;
}

lm_status lm_pref_check_length(const lm_model *m, const lm_pref_data *train, const lm_pref_data *eval, int64_t T) {
  if (T > m->cfg.n_positions)
    return lm_error(LM_ERR_RANGE, "max length %lld is longer than the model's %lld positions", (long long)T,
                    (long long)m->cfg.n_positions);
  if (train->longest > T || (eval && eval->longest > T))
    return lm_error(LM_ERR_ARG, "a sequence of %lld tokens is longer than the maximum length %lld",
                    (long long)(train->longest > T ? train->longest : eval->longest), (long long)T);
  return LM_OK;
}

/* ------------------------------------------------------------------ run settings (--resume) */

lm_status lm_posttrain_save_args(const char *out, const cJSON *args) {
  char *text = cJSON_Print(args), *path = lm_path_join(out, "posttrain.json");
  lm_status st = text && path ? lm_write_file_atomic(path, text, strlen(text)) : lm_error(LM_ERR_NOMEM, "out of memory");
  free(text); free(path);
  return st;
}

/* dir itself, or the run directory above a checkpoint-N */
static char *run_dir_of(const char *dir) {
  char *d = lm_strdup(dir);
  if (!d) return NULL;
  size_t n = strlen(d);
  while (n > 1 && d[n - 1] == '/') d[--n] = 0;
  char *slash = strrchr(d, '/');
  const char *name = slash ? slash + 1 : d;
  int ckpt = !strncmp(name, "checkpoint-", 11) && name[11];
  for (const char *p = name + 11; ckpt && *p; p++) ckpt = *p >= '0' && *p <= '9';
  if (!ckpt) return d;
  if (!slash) { free(d); return lm_strdup("."); }
  if (slash == d) slash[1] = 0; else *slash = 0;
  return d;
}

lm_status lm_posttrain_resume(const char *dir, const char *command, char **state, char **run_dir, cJSON **args) {
  *state = *run_dir = NULL; *args = NULL;
  int64_t step;
  lm_status st = lm_train_find_resume(dir, state, &step);
  if (st) return st;
  *run_dir = run_dir_of(dir);
  char *path = *run_dir ? lm_path_join(*run_dir, "posttrain.json") : NULL, *text = NULL;
  size_t len;
  if (!path) st = lm_error(LM_ERR_NOMEM, "out of memory");
  else if ((st = lm_read_file(path, &text, &len)))
    lm_error_prefix(st, "cannot resume: %s has no posttrain.json (the settings of an 'lmkit %s' run)", *run_dir, command);
  if (!st) {
    cJSON *j = cJSON_ParseWithLength(text, len);
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(j, "command");
    if (!cJSON_IsObject(j) || !cJSON_IsString(c) || strcmp(c->valuestring, command)) {
      if (cJSON_IsString(c))
        st = lm_error(LM_ERR_ARG, "%s: this is an 'lmkit %s' run, not an 'lmkit %s' one", path, c->valuestring, command);
      else
        st = lm_error(LM_ERR_FORMAT, "%s: not the settings of an 'lmkit %s' run", path, command);
      cJSON_Delete(j);
    } else {
      *args = j;
    }
  }
  free(text); free(path);
  if (st) { free(*state); free(*run_dir); *state = *run_dir = NULL; }
  return st;
}
