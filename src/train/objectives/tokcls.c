/* tokcls.c — token classification (NER) data and objective for BERT
 * fine-tuning (declarations in src/train/finetune_tasks.h, docs/finetune.md).
 *
 * Four parts:
 *   1. the CoNLL reader: one word per line, the last whitespace-separated
 *      column is the tag, blank lines end sentences, -DOCSTART- lines are
 *      skipped; tags are numbered in order of first appearance in training;
 *   2. alignment: every word is tokenized on its own and its tag goes on its
 *      first sub-token, -1 (ignored by the loss) on the others, as in Hugging
 *      Face's token-classification recipe; sentences are cut to context - 2
 *      sub-tokens and laid out as [CLS] ... [SEP] padded per batch;
 *   3. scoring: entity-level precision / recall / F1 with seqeval's default
 *      (lenient IOB) chunking, plus word accuracy;
 *   4. the trainer objective: shuffled epochs (order a pure function of
 *      (seed, epoch)), micro-batches through lm_forward/backward. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "model/heads.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "train/finetune_tasks.h"

/* ------------------------------------------------------------------ reader */

void lm_conll_free(lm_conll *c) {
  if (!c) return;
  int64_t nw = c->woff ? c->woff[c->n] : 0;
  for (int64_t i = 0; i < nw; i++) free(c->words[i]);
  free(c->words); free(c->tags); free(c->woff); free(c->lines);
  memset(c, 0, sizeof *c);
}

typedef struct {
  lm_conll *c;
  int64_t nw, capw, caps;
} conll_b;

static lm_status conll_word(conll_b *b, const char *w, size_t wl, int32_t tag) {
  if (b->nw == b->capw) {
    int64_t cap = b->capw ? 2 * b->capw : 256;
    char **nw = lm_xrealloc(b->c->words, (size_t)cap * sizeof *nw);
    if (!nw) return LM_ERR_NOMEM;
    b->c->words = nw;
    int32_t *nt = lm_xrealloc(b->c->tags, (size_t)cap * sizeof *nt);
    if (!nt) return LM_ERR_NOMEM;
    b->c->tags = nt;
    b->capw = cap;
  }
  char *s = lm_xmalloc(wl + 1);
  if (!s) return LM_ERR_NOMEM;
  memcpy(s, w, wl); s[wl] = 0;
  b->c->words[b->nw] = s; b->c->tags[b->nw] = tag;
  b->nw++;
  return LM_OK;
}

/* closes the open sentence (words since woff[n]) if it has any */
static lm_status conll_end(conll_b *b, int64_t line) {
  lm_conll *c = b->c;
  int64_t start = c->n ? c->woff[c->n] : 0;
  if (!c->woff) {
    if (!(c->woff = lm_xmalloc(64 * sizeof *c->woff)) || !(c->lines = lm_xmalloc(64 * sizeof *c->lines))) return LM_ERR_NOMEM;
    b->caps = 63; c->woff[0] = 0;
  }
  if (b->nw == start) return LM_OK;
  if (c->n == b->caps) {
    int64_t cap = 2 * b->caps;
    int64_t *o = lm_xrealloc(c->woff, (size_t)(cap + 1) * sizeof *o);
    if (!o) return LM_ERR_NOMEM;
    c->woff = o;
    int64_t *l = lm_xrealloc(c->lines, (size_t)(cap + 1) * sizeof *l);
    if (!l) return LM_ERR_NOMEM;
    c->lines = l;
    b->caps = cap;
  }
  c->lines[c->n] = line;
  c->woff[++c->n] = b->nw;
  return LM_OK;
}

static int is_ws(char ch) { return ch == ' ' || ch == '\t' || ch == '\v' || ch == '\f'; }

lm_status lm_conll_parse(const char *text, size_t len, const char *name, lm_cls_labels *labels, int grow,
                         lm_conll *c) {
  memset(c, 0, sizeof *c);
  conll_b b = {c, 0, 0, 0};
  if (len >= 3 && !memcmp(text, "\xEF\xBB\xBF", 3)) { text += 3; len -= 3; }
  lm_status st = conll_end(&b, 0);   /* allocates woff */
  int64_t line = 0, first_line = 0;
  for (size_t p = 0; p < len && !st;) {
    const char *e = memchr(text + p, '\n', len - p);
    size_t end = e ? (size_t)(e - text) : len, n = end - p;
    const char *s = text + p;
    p = end + 1;
    line++;
    while (n && (s[n - 1] == '\r' || is_ws(s[n - 1]))) n--;
    size_t i0 = 0;
    while (i0 < n && is_ws(s[i0])) i0++;
    if (i0 == n) { st = conll_end(&b, first_line); continue; }
    if (memchr(s, 0, n)) { st = lm_error(LM_ERR_FORMAT, "%s:%lld: NUL byte in a text file", name, (long long)line); break; }
    if (n - i0 >= 10 && !memcmp(s + i0, "-DOCSTART-", 10)) { st = conll_end(&b, first_line); continue; }
    /* first column = word, last column = tag */
    size_t w1 = i0;
    while (w1 < n && !is_ws(s[w1])) w1++;
    size_t t0 = n;
    while (t0 > i0 && !is_ws(s[t0 - 1])) t0--;
    if (t0 == i0) {
      st = lm_error(LM_ERR_FORMAT, "%s:%lld: '%.*s' has no tag column (CoNLL lines are 'word ... TAG', "
                    "separated by spaces or tabs)", name, (long long)line, (int)(n - i0 > 60 ? 60 : n - i0), s + i0);
      break;
    }
    char tag[256];
    if (n - t0 >= sizeof tag) { st = lm_error(LM_ERR_FORMAT, "%s:%lld: tag longer than 255 bytes", name, (long long)line); break; }
    memcpy(tag, s + t0, n - t0); tag[n - t0] = 0;
    int64_t id = lm_cls_label_find(labels, tag);
    if (id < 0) {
      if (!grow) {
        st = lm_error(LM_ERR_FORMAT, "%s:%lld: tag '%s' never appears in the training data", name, (long long)line, tag);
        break;
      }
      char **nn = lm_xrealloc(labels->names, (size_t)(labels->n + 1) * sizeof *nn);
      if (!nn) { st = LM_ERR_NOMEM; break; }
      labels->names = nn;
      if (!(nn[labels->n] = lm_strdup(tag))) { st = LM_ERR_NOMEM; break; }
      id = labels->n++;
    }
    if (b.nw == c->woff[c->n]) first_line = line;
    st = conll_word(&b, s + i0, w1 - i0, (int32_t)id);
  }
  if (!st) st = conll_end(&b, first_line);
  if (!st && c->n == 0) st = lm_error(LM_ERR_FORMAT, "%s: no sentences (CoNLL: one 'word TAG' per line)", name);
  if (st) {
    /* words beyond woff[n] belong to an unfinished sentence: free them here */
    int64_t done = c->woff ? c->woff[c->n] : 0;
    for (int64_t i = done; i < b.nw; i++) free(c->words[i]);
    lm_conll_free(c);
  }
  return st;
}

lm_status lm_conll_read(const char *path, lm_cls_labels *labels, int grow, lm_conll *c) {
  memset(c, 0, sizeof *c);
  char *text; size_t len;
  lm_status st = lm_read_file(path, &text, &len);
  if (st) return st;
  st = lm_conll_parse(text, len, path, labels, grow, c);
  free(text);
  return st;
}

/* ------------------------------------------------------------------ encoding */

void lm_tokcls_data_free(lm_tokcls_data *d) {
  if (!d) return;
  free(d->ids); free(d->labels); free(d->off); free(d->word_tags); free(d->woff);
  memset(d, 0, sizeof *d);
}

lm_status lm_tokcls_encode(lm_tokcls_data *d, const lm_config *cfg, const lm_tokenizer *tok, const lm_conll *c,
                           int64_t context) {
  memset(d, 0, sizeof *d);
  if (context < 3) return lm_error(LM_ERR_ARG, "a token-classification context needs at least 3 tokens, got %lld", (long long)context);
  lm_status st = lm_seq_frame(cfg, tok, &d->cls, &d->sep, &d->pad);
  if (st) return st;
  int64_t keep = context - lm_frame_len(d->cls, d->sep), nw = c->woff[c->n];
  int bpe = lm_tok_byte_level(tok);
  int64_t unk = lm_tokenizer_token_id(tok, "[UNK]");
  if (unk < 0) unk = lm_tokenizer_token_id(tok, "<unk>");
  if (unk < 0) unk = d->pad;
  d->n = c->n;
  d->off = lm_xmalloc((size_t)(c->n + 1) * sizeof *d->off);
  d->woff = lm_xmalloc((size_t)(c->n + 1) * sizeof *d->woff);
  d->word_tags = lm_xmalloc((size_t)(nw ? nw : 1) * sizeof *d->word_tags);
  size_t cap = (size_t)(nw ? nw : 1) * 2, used = 0;
  d->ids = lm_xmalloc(cap * sizeof *d->ids);
  d->labels = lm_xmalloc(cap * sizeof *d->labels);
  char *buf = NULL; size_t bcap = 0;
  if (!d->off || !d->woff || !d->word_tags || !d->ids || !d->labels) { lm_tokcls_data_free(d); return LM_ERR_NOMEM; }
  memcpy(d->woff, c->woff, (size_t)(c->n + 1) * sizeof *d->woff);
  memcpy(d->word_tags, c->tags, (size_t)nw * sizeof *d->word_tags);
  int64_t longest = 0;
  d->off[0] = 0;
  for (int64_t i = 0; i < c->n && !st; i++) {
    int64_t k = 0;   /* sub-tokens of this sentence so far */
    int cut = 0;
    for (int64_t w = c->woff[i]; w < c->woff[i + 1] && !st; w++) {
      const char *word = c->words[w];
      size_t wl = strlen(word), bl = wl;
      const char *src = word;
      if (bpe && w > c->woff[i]) {
        if (wl + 2 > bcap) {
          char *g = lm_xrealloc(buf, wl + 2);
          if (!g) { st = LM_ERR_NOMEM; break; }
          buf = g; bcap = wl + 2;
        }
        buf[0] = ' '; memcpy(buf + 1, word, wl); bl = wl + 1; src = buf;
      }
      uint32_t *ids; size_t m;
      if ((st = lm_tokenizer_encode(tok, src, bl, 0, &ids, &m))) break;
      if (m == 0) {   /* a word that encodes to nothing (e.g. control chars) keeps its place as [UNK] */
        free(ids);
        if (!(ids = lm_xmalloc(sizeof *ids))) { st = LM_ERR_NOMEM; break; }
        ids[0] = (uint32_t)unk; m = 1;
      }
      if (k + (int64_t)m > keep) { cut = 1; free(ids); break; }
      if (used + m > cap) {
        while (used + m > cap) cap *= 2;
        uint32_t *g = lm_xrealloc(d->ids, cap * sizeof *g);
        if (!g) { free(ids); st = LM_ERR_NOMEM; break; }
        d->ids = g;
        int32_t *gl = lm_xrealloc(d->labels, cap * sizeof *gl);
        if (!gl) { free(ids); st = LM_ERR_NOMEM; break; }
        d->labels = gl;
      }
      for (size_t j = 0; j < m; j++) {
        d->ids[used + j] = ids[j];
        d->labels[used + j] = j == 0 ? c->tags[w] : -1;
      }
      free(ids);
      used += m; k += (int64_t)m;
    }
    d->n_truncated += cut;
    d->off[i + 1] = (int64_t)used;
    if (k > longest) longest = k;
  }
  free(buf);
  if (st) { lm_tokcls_data_free(d); return st; }
  d->context = longest + lm_frame_len(d->cls, d->sep);
  return LM_OK;
}

int64_t lm_tokcls_fill(const lm_tokcls_data *d, const int64_t *idx, int64_t nb, int32_t *ids, uint8_t *mask,
                       int32_t *labels) {
  int64_t extra = lm_frame_len(d->cls, d->sep), t0 = d->cls >= 0, T = extra > 1 ? extra : 1;
  for (int64_t b = 0; b < nb; b++) {
    int64_t len = d->off[idx[b] + 1] - d->off[idx[b]] + extra;
    if (len > T) T = len;
  }
  for (int64_t b = 0; b < nb; b++) {
    int64_t i = idx[b], k = d->off[i + 1] - d->off[i];
    int32_t *row = ids + b * T, *lrow = labels + b * T;
    uint8_t *mrow = mask + b * T;
    for (int64_t t = 0; t < T; t++) { row[t] = d->pad; lrow[t] = -1; mrow[t] = t < k + extra; }
    if (d->cls >= 0) row[0] = d->cls;
    for (int64_t t = 0; t < k; t++) {
      row[t0 + t] = (int32_t)d->ids[d->off[i] + t];
      lrow[t0 + t] = d->labels[d->off[i] + t];
    }
    if (d->sep >= 0) row[t0 + k] = d->sep;
  }
  return T;
}

/* ------------------------------------------------------------------ entity scoring */

/* kind: 0 outside, 1 begin, 2 inside; type: the id of the first label with the same type name */
static void tag_info(const char *const *names, int64_t L, int64_t id, int *kind, int64_t *type) {
  *kind = 0; *type = -1;
  if (id < 0 || id >= L) return;
  const char *s = names[id];
  if (!strcmp(s, "O")) return;
  const char *t = s;
  *kind = 2;
  if ((s[0] == 'B' || s[0] == 'I') && s[1] == '-') { *kind = s[0] == 'B' ? 1 : 2; t = s + 2; }
  for (int64_t j = 0; j < L; j++) {
    const char *u = names[j];
    if ((u[0] == 'B' || u[0] == 'I') && u[1] == '-') u += 2;
    if (!strcmp(u, t) && strcmp(names[j], "O")) { *type = j; return; }
  }
}

/* ends[i] = last position of the entity starting at i (or -1), types[i] its type */
static void chunks(const char *const *names, int64_t L, const int32_t *tags, int64_t n, int64_t *ends, int64_t *types) {
  int64_t open = -1, otype = -1;
  for (int64_t i = 0; i <= n; i++) {
    int kind = 0; int64_t type = -1;
    if (i < n) { ends[i] = -1; types[i] = -1; tag_info(names, L, tags[i], &kind, &type); }
    int cont = open >= 0 && kind == 2 && type == otype;
    if (open >= 0 && !cont) { ends[open] = i - 1; types[open] = otype; open = -1; }
    if (i < n && kind && !cont) { open = i; otype = type; }
  }
}

void lm_ner_count(const char *const *names, int64_t n_names, const int32_t *gold, const int32_t *pred, int64_t n,
                  lm_ner_counts *c) {
  if (n <= 0) return;
  int64_t *ge = malloc((size_t)n * 4 * sizeof *ge);
  if (!ge) return;
  int64_t *gt = ge + n, *pe = ge + 2 * n, *pt = ge + 3 * n;
  chunks(names, n_names, gold, n, ge, gt);
  chunks(names, n_names, pred, n, pe, pt);
  for (int64_t i = 0; i < n; i++) {
    c->gold += ge[i] >= 0;
    c->pred += pe[i] >= 0;
    c->correct += ge[i] >= 0 && ge[i] == pe[i] && gt[i] == pt[i];
    c->words++;
    c->words_correct += gold[i] == pred[i];
  }
  free(ge);
}

void lm_ner_scores(const lm_ner_counts *c, double *precision, double *recall, double *f1) {
  double p = c->pred ? (double)c->correct / (double)c->pred : 0, r = c->gold ? (double)c->correct / (double)c->gold : 0;
  *precision = p; *recall = r;
  *f1 = p + r > 0 ? 2 * p * r / (p + r) : 0;
}

/* ------------------------------------------------------------------ evaluation */

static lm_status tok_eval_pass(lm_model *m, const lm_tokcls_data *d, const lm_cls_labels *labels, int64_t B,
                               int32_t *ids, uint8_t *mask, int32_t *lab, int64_t *idx, double *loss,
                               lm_ner_counts *counts) {
  int64_t L = m->cfg.num_labels, outside = lm_cls_label_find(labels, "O");
  double sum = 0; int64_t nl = 0;
  memset(counts, 0, sizeof *counts);
  int64_t maxw = 1;
  for (int64_t i = 0; i < d->n; i++)
    if (d->woff[i + 1] - d->woff[i] > maxw) maxw = d->woff[i + 1] - d->woff[i];
  int32_t *pred = lm_xmalloc((size_t)maxw * sizeof *pred);
  if (!pred) return LM_ERR_NOMEM;
  lm_status st = LM_OK;
  for (int64_t i0 = 0; i0 < d->n && !st; i0 += B) {
    int64_t nb = d->n - i0 < B ? d->n - i0 : B;
    for (int64_t b = 0; b < nb; b++) idx[b] = i0 + b;
    int64_t T = lm_tokcls_fill(d, idx, nb, ids, mask, lab);
    lm_batch bb = {.ids = ids, .mask = mask, .labels = lab, .B = nb, .T = T};
    int64_t labelled = 0;
    for (int64_t j = 0; j < nb * T; j++) labelled += lab[j] >= 0;
    float l = lm_forward(m, &bb, NULL, NULL);
    if (isnan(l) && labelled) {
      st = lm_error_prefix(LM_ERR_ARG, "evaluating sentences %lld..%lld", (long long)i0, (long long)(i0 + nb - 1));
      break;
    }
    if (labelled) { sum += (double)l * (double)labelled; nl += labelled; }
    const float *lg = lm_model_logits(m);
    for (int64_t b = 0; b < nb; b++) {
      int64_t i = idx[b], nwords = d->woff[i + 1] - d->woff[i], w = 0;
      for (int64_t t = 0; t < T && w < nwords; t++) {
        if (lab[b * T + t] < 0) continue;
        const float *x = lg + (b * T + t) * L;
        int64_t best = 0;
        for (int64_t k = 1; k < L; k++)
          if (x[k] > x[best]) best = k;
        pred[w++] = (int32_t)best;
      }
      for (; w < nwords; w++) pred[w] = (int32_t)outside;   /* words cut away: predicted O */
      lm_ner_count((const char *const *)labels->names, labels->n, d->word_tags + d->woff[i], pred, nwords, counts);
    }
  }
  free(pred);
  *loss = nl ? sum / (double)nl : NAN;
  return st;
}

lm_status lm_tokcls_evaluate(lm_model *m, const lm_tokcls_data *d, const lm_cls_labels *labels, int64_t B,
                             double *loss, lm_ner_counts *counts) {
  *loss = NAN;
  memset(counts, 0, sizeof *counts);
  if (!m || m->cfg.head != LM_HEAD_TOKENS)
    return lm_error(LM_ERR_ARG, "lm_tokcls_evaluate: the model is not a token classifier");
  if (d->n == 0) return LM_OK;
  if (B < 1) B = 32;
  int64_t T = d->context;
  if (T > m->cfg.n_positions)
    return lm_error(LM_ERR_RANGE, "sentences of %lld tokens exceed the model's %lld positions", (long long)T, (long long)m->cfg.n_positions);
  int32_t *ids = lm_xmalloc((size_t)(B * T) * sizeof *ids), *lab = lm_xmalloc((size_t)(B * T) * sizeof *lab);
  uint8_t *mask = lm_xmalloc((size_t)(B * T));
  int64_t *idx = lm_xmalloc((size_t)B * sizeof *idx);
  lm_status st = (!ids || !lab || !mask || !idx) ? LM_ERR_NOMEM : LM_OK;
  if (!st) st = lm_model_reserve(m, B, T, 0);
  if (!st) st = tok_eval_pass(m, d, labels, B, ids, mask, lab, idx, loss, counts);
  free(ids); free(lab); free(mask); free(idx);
  return st;
}

/* ------------------------------------------------------------------ objective */

typedef struct {
  const lm_tokcls_data *train, *eval;
  const lm_cls_labels *names;
  int64_t B, T;
  lm_epochs order;        /* over the training items; holds the cursor */
  int64_t *idx;
  int32_t *ids, *labels;  /* (B,T) */
  uint8_t *mask;
  double *last_f1;
  double f1;              /* of the last evaluation (NAN before one) */
} tok_obj;

static float tok_micro(void *self, lm_model *m) {
  tok_obj *c = self;
  for (int64_t b = 0; b < c->B; b++) {
    c->idx[b] = lm_epochs_next(&c->order);
  }
  int64_t T = lm_tokcls_fill(c->train, c->idx, c->B, c->ids, c->mask, c->labels);
  lm_batch b = {.ids = c->ids, .mask = c->mask, .labels = c->labels, .B = c->B, .T = T};
  float loss = lm_forward(m, &b, NULL, NULL);
  lm_backward(m, &b);
  return loss;
}

static double tok_evaluate(void *self, lm_model *m, int64_t max_batches) {
  (void)max_batches;   /* always the whole eval set, so scores compare */
  tok_obj *c = self;
  if (!c->eval) return NAN;
  double loss = NAN, p, r, f1;
  lm_ner_counts k;
  if (tok_eval_pass(m, c->eval, c->names, c->B, c->ids, c->mask, c->labels, c->idx, &loss, &k)) return NAN;
  lm_ner_scores(&k, &p, &r, &f1);
  c->f1 = f1;
  if (c->last_f1) *c->last_f1 = f1;
  return loss;
}

static int tok_eval_fields(void *self, char *buf, size_t n) {
  tok_obj *c = self;
  return isnan(c->f1) ? 0 : snprintf(buf, n, "\"val_f1\": %.6f", c->f1);
}

static void tok_cursor(void *self, int64_t *epoch, int64_t *index) {
  tok_obj *c = self;
  *epoch = c->order.epoch; *index = c->order.index;
}

static void tok_free(void *self) {
  tok_obj *c = self;
  if (!c) return;
  lm_epochs_free(&c->order); free(c->idx); free(c->ids); free(c->labels); free(c->mask);
  free(c);
}

lm_status lm_objective_tokcls(lm_objective *o, lm_model *m, const lm_tokcls_data *train, const lm_tokcls_data *eval,
                              const lm_cls_labels *labels, int64_t B, uint64_t seed, const int64_t *cursor,
                              double *last_f1) {
  memset(o, 0, sizeof *o);
  if (!m || m->cfg.head != LM_HEAD_TOKENS)
    return lm_error(LM_ERR_ARG, "the token-classification objective needs a model with a tokens head");
  if (!train || train->n < 1) return lm_error(LM_ERR_ARG, "no training sentences");
  if (B < 1) return lm_error(LM_ERR_ARG, "batch must be positive");
  tok_obj *c = calloc(1, sizeof *c);
  if (!c) return lm_error(LM_ERR_NOMEM, "out of memory");
  c->train = train; c->eval = eval; c->names = labels; c->B = B; c->last_f1 = last_f1;
  c->f1 = NAN;
  c->T = train->context;
  if (eval && eval->context > c->T) c->T = eval->context;
  lm_status st = LM_OK;
  if (c->T > m->cfg.n_positions)
    st = lm_error(LM_ERR_RANGE, "sentences of %lld tokens exceed the model's %lld positions", (long long)c->T,
                  (long long)m->cfg.n_positions);
  if (!st) {
    c->idx = lm_xmalloc((size_t)B * sizeof *c->idx);
    c->ids = lm_xmalloc((size_t)(B * c->T) * sizeof *c->ids);
    c->labels = lm_xmalloc((size_t)(B * c->T) * sizeof *c->labels);
    c->mask = lm_xmalloc((size_t)(B * c->T));
    if (!c->idx || !c->ids || !c->labels || !c->mask) st = LM_ERR_NOMEM;
  }
  if (!st) st = lm_epochs_init(&c->order, train->n, seed, 0x70CULL, cursor);
  if (!st) st = lm_model_reserve(m, B, c->T, 1);
  if (st) { tok_free(c); return st; }
  *o = (lm_objective){.self = c, .micro = tok_micro, .evaluate = tok_evaluate, .cursor = tok_cursor, .free = tok_free, .eval_fields = tok_eval_fields};
  return LM_OK;
}
