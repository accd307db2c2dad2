/* cls.c — sequence classification data and objective (BERT fine-tuning;
 * declarations and formats in src/train/finetune.h, docs/finetune.md).
 *
 * Three parts:
 *   1. the reader: a TSV (header row naming `label` and a text column) or a
 *      JSONL file (objects with "label" and "sentence"/"text"/"content") into
 *      texts + label ids, labels numbered in order of first appearance;
 *   2. the encoder: each text tokenized once, cut to context - 2 tokens, and
 *      laid out per batch as [CLS] text [SEP] [PAD]... with an attention mask,
 *      padded to the longest example of the batch;
 *   3. the trainer objective: epochs in a shuffled order that is a pure
 *      function of (seed, epoch) (optionally grouped by length, so short
 *      phrases share batches and pad little), micro-batches through lm_forward and
 *      lm_backward with the labels, and evaluation (loss and accuracy)
 *      over the whole eval set in order. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "model/heads.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "train/finetune.h"

/* ------------------------------------------------------------------ labels */

int64_t lm_cls_label_find(const lm_cls_labels *l, const char *name) {
  for (int64_t i = 0; i < l->n; i++)
    if (!strcmp(l->names[i], name)) return i;
  return -1;
}

void lm_cls_labels_free(lm_cls_labels *l) {
  if (!l) return;
  for (int64_t i = 0; i < l->n; i++) free(l->names[i]);
  free(l->names);
  l->names = NULL; l->n = 0;
}

/* "a, b, c" (at most a few hundred bytes) for error messages */
static void label_list(const lm_cls_labels *l, char *buf, size_t cap) {
  size_t k = 0;
  buf[0] = 0;
  for (int64_t i = 0; i < l->n && k + 8 < cap; i++) {
    int w = snprintf(buf + k, cap - k, "%s'%s'", i ? ", " : "", l->names[i]);
    if (w < 0 || (size_t)w >= cap - k) { snprintf(buf + (cap > 5 ? cap - 5 : 0), 5, "..."); return; }
    k += (size_t)w;
  }
}

/* ------------------------------------------------------------------ reader */

void lm_cls_rows_free(lm_cls_rows *r) {
  if (!r) return;
  for (int64_t i = 0; i < r->n; i++) free(r->texts[i]);
  free(r->texts); free(r->labels); free(r->lines);
  memset(r, 0, sizeof *r);
}

typedef struct {
  const char *name;
  lm_cls_labels *labels;
  int grow;
  lm_cls_rows *rows;
  int64_t cap;
} reader;

static lm_status add_row(reader *rd, const char *text, size_t tlen, const char *label, int64_t line) {
  if (!label[0]) return lm_error(LM_ERR_FORMAT, "%s:%lld: empty label", rd->name, (long long)line);
  int64_t id = lm_cls_label_find(rd->labels, label);
  if (id < 0) {
    if (!rd->grow) {
      char list[256];
      label_list(rd->labels, list, sizeof list);
      return lm_error(LM_ERR_FORMAT, "%s:%lld: label '%.100s' never appears in the training data (labels: %s)",
                      rd->name, (long long)line, label, list);
    }
    char **nn = lm_xrealloc(rd->labels->names, (size_t)(rd->labels->n + 1) * sizeof *nn);
    if (!nn) return LM_ERR_NOMEM;
    rd->labels->names = nn;
    if (!(nn[rd->labels->n] = lm_strdup(label))) return LM_ERR_NOMEM;
    id = rd->labels->n++;
  }
  lm_cls_rows *r = rd->rows;
  if (r->n == rd->cap) {
    int64_t cap = rd->cap ? 2 * rd->cap : 64;
    char **t = lm_xrealloc(r->texts, (size_t)cap * sizeof *t);
    if (!t) return LM_ERR_NOMEM;
    r->texts = t;
    int32_t *l = lm_xrealloc(r->labels, (size_t)cap * sizeof *l);
    if (!l) return LM_ERR_NOMEM;
    r->labels = l;
    int64_t *ln = lm_xrealloc(r->lines, (size_t)cap * sizeof *ln);
    if (!ln) return LM_ERR_NOMEM;
    r->lines = ln;
    rd->cap = cap;
  }
  char *s = lm_xmalloc(tlen + 1);
  if (!s) return LM_ERR_NOMEM;
  memcpy(s, text, tlen); s[tlen] = 0;
  r->texts[r->n] = s; r->labels[r->n] = (int32_t)id; r->lines[r->n] = line;
  r->n++;
  return LM_OK;
}

static int blank(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!isspace((unsigned char)s[i])) return 0;
  return 1;
}

/* Splits a TSV line (no quoting) into at most `max` fields; returns the field count (may exceed max). */
static int split_tabs(const char *s, size_t n, const char **f, size_t *fl, int max) {
  int k = 0;
  size_t start = 0;
  for (size_t i = 0; i <= n; i++)
    if (i == n || s[i] == '\t') {
      if (k < max) { f[k] = s + start; fl[k] = i - start; }
      k++;
      start = i + 1;
    }
  return k;
}

static const char *const TEXT_COLS[] = {"sentence", "text", "content"};

/* header fields, quoted and comma-separated, for messages */
static void header_desc(const char *s, size_t n, char *buf, size_t cap) {
  const char *f[64]; size_t fl[64];
  int k = split_tabs(s, n, f, fl, 64), used = k < 64 ? k : 64;
  size_t o = 0;
  buf[0] = 0;
  for (int i = 0; i < used && o + 8 < cap; i++) {
    int w = snprintf(buf + o, cap - o, "%s\"%.*s\"", i ? ", " : "", (int)(fl[i] > 40 ? 40 : fl[i]), f[i]);
    if (w < 0 || (size_t)w >= cap - o) break;
    o += (size_t)w;
  }
  if (k > used && o + 6 < cap) snprintf(buf + o, cap - o, ", ...");
}

static int field_is(const char *f, size_t n, const char *name) {
  while (n && (f[0] == ' ')) { f++; n--; }
  while (n && f[n - 1] == ' ') n--;
  return strlen(name) == n && !memcmp(f, name, n);
}

typedef struct { int label, text, need; } tsv_cols;

static lm_status tsv_header(reader *rd, const char *s, size_t n, tsv_cols *c) {
  enum { MAXF = 4096 };
  const char **f = malloc(MAXF * sizeof *f);
  size_t *fl = malloc(MAXF * sizeof *fl);
  if (!f || !fl) { free(f); free(fl); return lm_error(LM_ERR_NOMEM, "out of memory"); }
  int k = split_tabs(s, n, f, fl, MAXF);
  if (k > MAXF) k = MAXF;
  c->label = c->text = -1;
  for (int i = 0; i < k; i++)
    if (c->label < 0 && field_is(f[i], fl[i], "label")) c->label = i;
  for (size_t t = 0; t < sizeof TEXT_COLS / sizeof TEXT_COLS[0] && c->text < 0; t++)
    for (int i = 0; i < k; i++)
      if (field_is(f[i], fl[i], TEXT_COLS[t])) { c->text = i; break; }
  free(f); free(fl);
  if (c->label < 0 || c->text < 0) {
    char h[512];
    header_desc(s, n, h, sizeof h);
    return lm_error(LM_ERR_FORMAT, "%s: the header row [%s] has no '%s' column (a TSV needs a header naming a 'label' "
                    "column and a text column 'sentence', 'text' or 'content')", rd->name, h,
                    c->label < 0 ? "label" : "sentence/text/content");
  }
  c->need = (c->label > c->text ? c->label : c->text) + 1;
  return LM_OK;
}

static lm_status tsv_row(reader *rd, const tsv_cols *c, const char *s, size_t n, int64_t line) {
  /* fields before the last needed one are found by walking the tabs */
  const char *fs = s; size_t fn = 0;
  const char *ls = s; size_t ln = 0;
  int k = 0;
  size_t start = 0;
  for (size_t i = 0; i <= n && k < c->need; i++)
    if (i == n || s[i] == '\t') {
      if (k == c->text) { fs = s + start; fn = i - start; }
      if (k == c->label) { ls = s + start; ln = i - start; }
      k++;
      start = i + 1;
    }
  if (k < c->need)
    return lm_error(LM_ERR_FORMAT, "%s:%lld: %d tab-separated field%s, but the header puts '%s' in column %d",
                    rd->name, (long long)line, k, k == 1 ? "" : "s", c->label > c->text ? "label" : "text",
                    c->need);
  char lab[256];
  if (ln >= sizeof lab) return lm_error(LM_ERR_FORMAT, "%s:%lld: label longer than 255 bytes", rd->name, (long long)line);
  memcpy(lab, ls, ln); lab[ln] = 0;
  return add_row(rd, fs, fn, lab, line);
}

static lm_status jsonl_row(reader *rd, const char *s, size_t n, int64_t line) {
  cJSON *j = cJSON_ParseWithLength(s, n);
  if (!j) return lm_error(LM_ERR_FORMAT, "%s:%lld: malformed JSON line", rd->name, (long long)line);
  lm_status st = LM_OK;
  char lab[256];
  const cJSON *l = cJSON_GetObjectItemCaseSensitive(j, "label"), *t = NULL;
  if (!cJSON_IsObject(j)) { st = lm_error(LM_ERR_FORMAT, "%s:%lld: expected a JSON object", rd->name, (long long)line); goto done; }
  for (size_t i = 0; i < sizeof TEXT_COLS / sizeof TEXT_COLS[0] && !t; i++) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, TEXT_COLS[i]);
    if (cJSON_IsString(x)) t = x;
  }
  if (!t) { st = lm_error(LM_ERR_FORMAT, "%s:%lld: no \"sentence\", \"text\" or \"content\" string", rd->name, (long long)line); goto done; }
  if (cJSON_IsString(l)) {
    if (strlen(l->valuestring) >= sizeof lab) { st = lm_error(LM_ERR_FORMAT, "%s:%lld: label longer than 255 bytes", rd->name, (long long)line); goto done; }
    strcpy(lab, l->valuestring);
  } else if (cJSON_IsNumber(l)) {
    double v = l->valuedouble;
    if (v == floor(v) && fabs(v) < 1e15) snprintf(lab, sizeof lab, "%lld", (long long)v);
    else snprintf(lab, sizeof lab, "%.17g", v);
  } else if (cJSON_IsBool(l)) {
    snprintf(lab, sizeof lab, "%s", cJSON_IsTrue(l) ? "true" : "false");
  } else {
    st = lm_error(LM_ERR_FORMAT, "%s:%lld: %s", rd->name, (long long)line,
                  l ? "\"label\" must be a string or a number" : "no \"label\"");
    goto done;
  }
  st = add_row(rd, t->valuestring, strlen(t->valuestring), lab, line);
done:
  cJSON_Delete(j);
  return st;
}

lm_status lm_cls_parse(const char *text, size_t len, const char *name, lm_cls_labels *labels, int grow,
                       lm_cls_rows *rows) {
  memset(rows, 0, sizeof *rows);
  reader rd = {name, labels, grow, rows, 0};
  if (len >= 3 && !memcmp(text, "\xEF\xBB\xBF", 3)) { text += 3; len -= 3; }
  int fmt = 0;   /* 0 unknown, 1 tsv, 2 jsonl */
  tsv_cols cols = {0};
  lm_status st = LM_OK;
  int64_t line = 0;
  for (size_t p = 0; p < len && !st;) {
    const char *e = memchr(text + p, '\n', len - p);
    size_t end = e ? (size_t)(e - text) : len, n = end - p;
    const char *s = text + p;
    p = end + 1;
    line++;
    if (n && s[n - 1] == '\r') n--;
    if (blank(s, n)) continue;
    if (memchr(s, 0, n)) { st = lm_error(LM_ERR_FORMAT, "%s:%lld: NUL byte in a text file", name, (long long)line); break; }
    if (!fmt) {
      size_t i = 0;
      while (i < n && isspace((unsigned char)s[i])) i++;
      fmt = s[i] == '{' ? 2 : 1;
      if (fmt == 1) { st = tsv_header(&rd, s, n, &cols); continue; }
    }
    st = fmt == 2 ? jsonl_row(&rd, s, n, line) : tsv_row(&rd, &cols, s, n, line);
  }
  if (!st && rows->n == 0)
    st = lm_error(LM_ERR_FORMAT, "%s: no examples%s", name, fmt == 1 ? " after the header row" : "");
  if (st) lm_cls_rows_free(rows);
  return st;
}

lm_status lm_cls_read(const char *path, lm_cls_labels *labels, int grow, lm_cls_rows *rows) {
  memset(rows, 0, sizeof *rows);
  char *text; size_t len;
  lm_status st = lm_read_file(path, &text, &len);
  if (st) return st;
  st = lm_cls_parse(text, len, path, labels, grow, rows);
  free(text);
  return st;
}

/* ------------------------------------------------------------------ encoding */

static int64_t first_id(const lm_tokenizer *tok, const char *a, const char *b) {
  int64_t id = lm_tokenizer_token_id(tok, a);
  return id >= 0 ? id : lm_tokenizer_token_id(tok, b);
}

lm_status lm_cls_special_ids(const lm_tokenizer *tok, int32_t *cls, int32_t *sep, int32_t *pad) {
  int64_t c = first_id(tok, "[CLS]", "<s>"), s = first_id(tok, "[SEP]", "</s>"), p = first_id(tok, "[PAD]", "<pad>");
  if (c < 0 || s < 0 || p < 0)
    return lm_error(LM_ERR_ARG, "the tokenizer lacks %s: classification inputs are [CLS] text [SEP] padded with [PAD]",
                    c < 0 ? "[CLS]" : s < 0 ? "[SEP]" : "[PAD]");
  *cls = (int32_t)c; *sep = (int32_t)s; *pad = (int32_t)p;
  return LM_OK;
}

lm_status lm_seq_frame(const lm_config *cfg, const lm_tokenizer *tok, int32_t *open, int32_t *close, int32_t *pad) {
  if (lm_family_of(cfg)->pool == LM_POOL_FIRST) return lm_cls_special_ids(tok, open, close, pad);
  /* decoders read the text as it is; sequence heads pool its last real token */
  *open = *close = -1;
  int64_t p = cfg->pad_token_id >= 0 ? cfg->pad_token_id : lm_tokenizer_eot(tok);
  *pad = (int32_t)(p >= 0 ? p : 0);
  return LM_OK;
}

void lm_cls_data_free(lm_cls_data *d) {
  if (!d) return;
  free(d->ids); free(d->off); free(d->labels);
  memset(d, 0, sizeof *d);
}

lm_status lm_cls_encode(lm_cls_data *d, const lm_config *cfg, const lm_tokenizer *tok, const char *const *texts,
                        const int32_t *labels, int64_t n, int64_t context) {
  memset(d, 0, sizeof *d);
  if (context < 3) return lm_error(LM_ERR_ARG, "a classification context needs at least 3 tokens ([CLS] x [SEP]), got %lld", (long long)context);
  lm_status st = lm_seq_frame(cfg, tok, &d->cls, &d->sep, &d->pad);
  if (st) return st;
  int64_t keep = context - lm_frame_len(d->cls, d->sep);
  d->n = n;
  d->off = lm_xmalloc((size_t)(n + 1) * sizeof *d->off);
  if (labels) d->labels = lm_xmalloc((size_t)(n ? n : 1) * sizeof *d->labels);
  size_t cap = (size_t)(n ? n : 1) * 16, used = 0;
  d->ids = lm_xmalloc(cap * sizeof *d->ids);
  if (!d->off || (labels && !d->labels) || !d->ids) { lm_cls_data_free(d); return LM_ERR_NOMEM; }
  int64_t longest = 0;
  d->off[0] = 0;
  for (int64_t i = 0; i < n; i++) {
    uint32_t *ids; size_t k;
    if ((st = lm_tokenizer_encode(tok, texts[i], strlen(texts[i]), 0, &ids, &k))) { lm_cls_data_free(d); return st; }
    if ((int64_t)k > keep) { k = (size_t)keep; d->n_truncated++; }
    if (used + k > cap) {
      while (used + k > cap) cap *= 2;
      uint32_t *g = lm_xrealloc(d->ids, cap * sizeof *g);
      if (!g) { free(ids); lm_cls_data_free(d); return LM_ERR_NOMEM; }
      d->ids = g;
    }
    memcpy(d->ids + used, ids, k * sizeof *ids);
    free(ids);
    used += k;
    d->off[i + 1] = (int64_t)used;
    if ((int64_t)k > longest) longest = (int64_t)k;
    if (labels) d->labels[i] = labels[i];
  }
  d->context = longest + lm_frame_len(d->cls, d->sep);
  return LM_OK;
}

int64_t lm_cls_fill(const lm_cls_data *d, const int64_t *idx, int64_t nb, int32_t *ids, uint8_t *mask,
                    int32_t *labels) {
  int64_t extra = lm_frame_len(d->cls, d->sep), t0 = d->cls >= 0, T = extra > 1 ? extra : 1;
  for (int64_t b = 0; b < nb; b++) {
    int64_t len = d->off[idx[b] + 1] - d->off[idx[b]] + extra;
    if (len > T) T = len;
  }
  for (int64_t b = 0; b < nb; b++) {
    int64_t i = idx[b], k = d->off[i + 1] - d->off[i];
    int32_t *row = ids + b * T;
    uint8_t *mrow = mask + b * T;
    if (d->cls >= 0) row[0] = d->cls;
    for (int64_t t = 0; t < k; t++) row[t0 + t] = (int32_t)d->ids[d->off[i] + t];
    if (d->sep >= 0) row[t0 + k] = d->sep;
    for (int64_t t = 0; t < T; t++) {
      mrow[t] = t < k + extra;
      if (t >= k + extra) row[t] = d->pad;
    }
    if (labels) labels[b] = d->labels ? d->labels[i] : -1;
  }
  return T;
}

/* Loss and accuracy over all of d in order, in batches of at most B (the model is reserved for
 * B x d->context or more); buffers hold B * context. */
static lm_status eval_pass(lm_model *m, const lm_cls_data *d, int64_t B, int32_t *ids, uint8_t *mask, int32_t *labels,
                           int64_t *idx, double *acc, double *loss) {
  if (!d->labels) return lm_error(LM_ERR_ARG, "accuracy needs labelled data");
  int64_t L = m->cfg.num_labels, correct = 0;
  double sum = 0;
  for (int64_t i0 = 0; i0 < d->n; i0 += B) {
    int64_t nb = d->n - i0 < B ? d->n - i0 : B;
    for (int64_t b = 0; b < nb; b++) idx[b] = i0 + b;
    int64_t T = lm_cls_fill(d, idx, nb, ids, mask, labels);
    lm_batch bb = {.ids = ids, .mask = mask, .labels = labels, .B = nb, .T = T};
    float l = lm_forward(m, &bb, NULL, NULL);
    if (isnan(l)) return lm_error_prefix(LM_ERR_ARG, "evaluating examples %lld..%lld", (long long)i0, (long long)(i0 + nb - 1));
    sum += (double)l * nb;
    const float *lg = lm_model_logits(m);
    for (int64_t b = 0; b < nb; b++) {
      int64_t best = 0;
      for (int64_t k = 1; k < L; k++)
        if (lg[b * L + k] > lg[b * L + best]) best = k;
      correct += best == labels[b];
    }
  }
  *acc = d->n ? (double)correct / (double)d->n : NAN;
  *loss = d->n ? sum / (double)d->n : NAN;
  return LM_OK;
}

lm_status lm_cls_accuracy(lm_model *m, const lm_cls_data *d, double *acc, double *loss) {
  *acc = *loss = NAN;
  if (!m || m->cfg.head != LM_HEAD_CLASSIFY)
    return lm_error(LM_ERR_ARG, "lm_cls_accuracy: the model is not a sequence classifier");
  if (d->n == 0) return LM_OK;
  int64_t B = 32, T = d->context;
  if (T > m->cfg.n_positions)
    return lm_error(LM_ERR_RANGE, "examples of %lld tokens exceed the model's %lld positions", (long long)T, (long long)m->cfg.n_positions);
  int32_t *ids = lm_xmalloc((size_t)(B * T) * sizeof *ids), *labels = lm_xmalloc((size_t)B * sizeof *labels);
  uint8_t *mask = lm_xmalloc((size_t)(B * T));
  int64_t *idx = lm_xmalloc((size_t)B * sizeof *idx);
  lm_status st = (!ids || !labels || !mask || !idx) ? LM_ERR_NOMEM : LM_OK;
  if (!st) st = lm_model_reserve(m, B, T, 0);
  if (!st) st = eval_pass(m, d, B, ids, mask, labels, idx, acc, loss);
  free(ids); free(labels); free(mask); free(idx);
  return st;
}

/* ------------------------------------------------------------------ objective */

typedef struct {
  const lm_cls_data *train, *eval;
  int64_t B, T;
  lm_epochs order;        /* over the training items; holds the cursor */
  int64_t *len;           /* (n) tokens per training example, when grouping by length */
  int64_t *idx;           /* (B) */
  int32_t *ids, *labels;  /* (B,T), (B) */
  uint8_t *mask;          /* (B,T) */
  double *last_acc;
  double acc;             /* accuracy of the last evaluation */
} cls_obj;

static float cls_micro(void *self, lm_model *m) {
  cls_obj *c = self;
  for (int64_t b = 0; b < c->B; b++) {
    c->idx[b] = lm_epochs_next(&c->order);
  }
  int64_t T = lm_cls_fill(c->train, c->idx, c->B, c->ids, c->mask, c->labels);
  lm_batch b = {.ids = c->ids, .mask = c->mask, .labels = c->labels, .B = c->B, .T = T};
  float loss = lm_forward(m, &b, NULL, NULL);
  lm_backward(m, &b);
  return loss;
}

static double cls_evaluate(void *self, lm_model *m, int64_t max_batches) {
  (void)max_batches;   /* the eval set is always scored whole, so accuracies compare */
  cls_obj *c = self;
  if (!c->eval) return NAN;
  double acc = NAN, loss = NAN;
  if (eval_pass(m, c->eval, c->B, c->ids, c->mask, c->labels, c->idx, &acc, &loss)) return NAN;
  c->acc = acc;
  if (c->last_acc) *c->last_acc = acc;
  return loss;
}

static int cls_eval_fields(void *self, char *buf, size_t n) {
  cls_obj *c = self;
  return isnan(c->acc) ? 0 : snprintf(buf, n, "\"val_accuracy\": %.6f", c->acc);
}

static void cls_cursor(void *self, int64_t *epoch, int64_t *index) {
  cls_obj *c = self;
  *epoch = c->order.epoch; *index = c->order.index;
}

static void cls_free(void *self) {
  cls_obj *c = self;
  if (!c) return;
  lm_epochs_free(&c->order); free(c->len); free(c->idx); free(c->ids); free(c->labels); free(c->mask);
  free(c);
}

lm_status lm_objective_cls(lm_objective *o, lm_model *m, const lm_cls_data *train, const lm_cls_data *eval,
                           int64_t B, uint64_t seed, int group_by_length, const int64_t *cursor, double *last_acc) {
  memset(o, 0, sizeof *o);
  if (!m || m->cfg.head != LM_HEAD_CLASSIFY)
    return lm_error(LM_ERR_ARG, "the classification objective needs a model with a classification head");
  if (!train || train->n < 1 || !train->labels) return lm_error(LM_ERR_ARG, "no labelled training examples");
  if (eval && !eval->labels) return lm_error(LM_ERR_ARG, "the evaluation data has no labels");
  if (B < 1) return lm_error(LM_ERR_ARG, "batch must be positive");
  cls_obj *c = calloc(1, sizeof *c);
  if (!c) return lm_error(LM_ERR_NOMEM, "out of memory");
  c->train = train; c->eval = eval; c->B = B; c->last_acc = last_acc; c->acc = NAN;
  c->T = train->context;
  if (eval && eval->context > c->T) c->T = eval->context;
  lm_status st = LM_OK;
  if (c->T > m->cfg.n_positions)
    st = lm_error(LM_ERR_RANGE, "examples of %lld tokens exceed the model's %lld positions", (long long)c->T,
                  (long long)m->cfg.n_positions);
  if (!st) {
    c->idx = lm_xmalloc((size_t)B * sizeof *c->idx);
    c->ids = lm_xmalloc((size_t)(B * c->T) * sizeof *c->ids);
    c->labels = lm_xmalloc((size_t)B * sizeof *c->labels);
    c->mask = lm_xmalloc((size_t)(B * c->T));
    if (!c->idx || !c->ids || !c->labels || !c->mask) st = LM_ERR_NOMEM;
  }
  if (!st) st = lm_epochs_init(&c->order, train->n, seed, 0xC15ULL, cursor);
  if (!st && group_by_length) {
    /* Hugging Face's LengthGroupedSampler: mega-batches of 50 batches, each sorted longest first */
    if (!(c->len = lm_xmalloc((size_t)train->n * sizeof *c->len))) st = LM_ERR_NOMEM;
    for (int64_t i = 0; !st && i < train->n; i++) c->len[i] = train->off[i + 1] - train->off[i];
    if (!st) st = lm_epochs_group_by_length(&c->order, c->len, 50 * B);
  }
  if (!st) st = lm_model_reserve(m, B, c->T, 1);
  if (st) { cls_free(c); return st; }
  *o = (lm_objective){.self = c, .micro = cls_micro, .evaluate = cls_evaluate, .cursor = cls_cursor, .free = cls_free, .eval_fields = cls_eval_fields};
  return LM_OK;
}
