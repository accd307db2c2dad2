/* qa.c — extractive question answering (SQuAD v1.1) for BERT fine-tuning
 * (declarations in src/train/finetune_tasks.h, docs/finetune.md).
 *
 * Five parts:
 *   1. the reader: SQuAD v1.1 JSON through cJSON; each answer's character
 *      offset (code points, as SQuAD counts) becomes a byte span of the
 *      context, checked against the context: a span outside it or a text that
 *      differs is dropped and counted, a question left without answers is
 *      skipped and counted;
 *   2. context tokens with byte offsets: the tokenizer API has no offsets, so
 *      the context is split at whitespace and each word encoded on its own
 *      (byte-level BPE: " " + word after the first, as inside a sentence);
 *      each sub-token gets its word's byte span (narrowed to its own bytes for
 *      byte-level BPE, whose tokens are raw bytes);
 *   3. features: [CLS] question [SEP] window [SEP], segments 0 / 1, windows of
 *      the context sliding with an overlap (Hugging Face's doc stride); for
 *      training only the windows holding the answer whole are kept;
 *   4. decoding and scoring (also lm_qa_predict, for `lmkit predict`): the
 *      best start + end logit over spans inside the
 *      context part, start <= end, at most 30 tokens, over all windows of a
 *      question; the text is the context bytes of the span; SQuAD's exact match
 *      and F1 after its normalisation, max over the gold answers;
 *   5. the trainer objective: shuffled epochs over the training features
 *      (order a pure function of (seed, epoch)), loss = mean of start and end
 *      cross-entropies (lm_forward with labels (B,2)). */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "model/heads.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "train/finetune_tasks.h"

enum { QA_MAX_QUERY = 64, QA_MAX_ANSWER = 30 };

/* grows *p (elements of size elem) so that it holds need elements */
static int grow(void *pp, int64_t *cap, int64_t need, size_t elem) {
  void **p = pp;
  if (need <= *cap) return 0;
  int64_t c = *cap ? *cap : 16;
  while (c < need) c *= 2;
  void *q = lm_xrealloc(*p, (size_t)c * elem);
  if (!q) return -1;
  *p = q; *cap = c;
  return 0;
}

/* ------------------------------------------------------------------ reader */

void lm_squad_free(lm_squad *s) {
  if (!s) return;
  for (int64_t i = 0; i < s->n; i++) { free(s->qid[i]); free(s->question[i]); }
  for (int64_t i = 0; i < s->n_ctx; i++) free(s->contexts[i]);
  int64_t na = s->aoff ? s->aoff[s->n] : 0;
  for (int64_t i = 0; i < na; i++) free(s->answers[i]);
  free(s->qid); free(s->question); free(s->ctx); free(s->contexts); free(s->aoff);
  free(s->answers); free(s->astart); free(s->aend);
  memset(s, 0, sizeof *s);
}

int64_t lm_utf8_char_to_byte(const char *s, size_t len, int64_t chars) {
  if (chars < 0) return -1;
  int64_t k = 0;
  for (size_t i = 0; i <= len; i++) {
    if (i < len && ((unsigned char)s[i] & 0xC0) == 0x80) continue;   /* continuation byte */
    if (k == chars) return (int64_t)i;
    k++;
  }
  return -1;
}

typedef struct {
  lm_squad *s;
  int64_t cq, cq2, cx, co, ca, cs, ce;   /* capacities */
  int64_t na;                            /* answers stored */
} squad_b;

static lm_status squad_question(squad_b *b, const char *name, const char *where, const cJSON *qa, int64_t ctx) {
  lm_squad *s = b->s;
  const cJSON *q = cJSON_GetObjectItemCaseSensitive(qa, "question"), *id = cJSON_GetObjectItemCaseSensitive(qa, "id"),
              *ans = cJSON_GetObjectItemCaseSensitive(qa, "answers");
  if (!cJSON_IsObject(qa) || !cJSON_IsString(q))
    return lm_error(LM_ERR_FORMAT, "%s: %s: expected an object with a \"question\" string", name, where);
  if (ans && !cJSON_IsArray(ans))
    return lm_error(LM_ERR_FORMAT, "%s: %s: \"answers\" must be an array", name, where);
  const char *c = s->contexts[ctx];
  size_t clen = strlen(c);
  int64_t kept = 0;
  const cJSON *a;
  cJSON_ArrayForEach(a, ans) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(a, "text"), *st = cJSON_GetObjectItemCaseSensitive(a, "answer_start");
    if (!cJSON_IsObject(a) || !cJSON_IsString(t) || !cJSON_IsNumber(st))
      return lm_error(LM_ERR_FORMAT, "%s: %s: each answer needs a \"text\" string and an \"answer_start\" number", name, where);
    double v = st->valuedouble;
    size_t tl = strlen(t->valuestring);
    int64_t a0 = (v >= 0 && v == floor(v) && v < 1e15) ? lm_utf8_char_to_byte(c, clen, (int64_t)v) : -1;
    if (tl == 0 || a0 < 0 || (size_t)a0 + tl > clen || memcmp(c + a0, t->valuestring, tl)) { s->n_bad_answers++; continue; }
    if (grow(&s->answers, &b->ca, b->na + 1, sizeof *s->answers) || grow(&s->astart, &b->cs, b->na + 1, sizeof *s->astart) ||
        grow(&s->aend, &b->ce, b->na + 1, sizeof *s->aend))
      return LM_ERR_NOMEM;
    if (!(s->answers[b->na] = lm_strdup(t->valuestring))) return LM_ERR_NOMEM;
    s->astart[b->na] = a0; s->aend[b->na] = a0 + (int64_t)tl;
    b->na++; kept++;
  }
  if (!kept) { s->n_skipped++; return LM_OK; }
  if (grow(&s->qid, &b->cq, s->n + 1, sizeof *s->qid) || grow(&s->question, &b->cq2, s->n + 1, sizeof *s->question) ||
      grow(&s->ctx, &b->cx, s->n + 1, sizeof *s->ctx) || grow(&s->aoff, &b->co, s->n + 2, sizeof *s->aoff))
    return LM_ERR_NOMEM;
  char idbuf[32];
  const char *ids = cJSON_IsString(id) ? id->valuestring : NULL;
  if (!ids) { snprintf(idbuf, sizeof idbuf, "%lld", (long long)s->n); ids = idbuf; }
  s->qid[s->n] = lm_strdup(ids);
  s->question[s->n] = lm_strdup(q->valuestring);
  if (!s->qid[s->n] || !s->question[s->n]) { free(s->qid[s->n]); free(s->question[s->n]); return LM_ERR_NOMEM; }
  s->ctx[s->n] = ctx;
  s->n++;
  s->aoff[s->n] = b->na;
  return LM_OK;
}

lm_status lm_squad_parse(const char *text, size_t len, const char *name, lm_squad *s) {
  memset(s, 0, sizeof *s);
  squad_b b = {.s = s};
  cJSON *root = cJSON_ParseWithLength(text, len);
  if (!root) {
    const char *e = cJSON_GetErrorPtr();
    long at = (e && e >= text && e <= text + len) ? (long)(e - text) : -1;
    return lm_error(LM_ERR_FORMAT, "%s: malformed JSON%s%.0ld (SQuAD v1.1 expected)", name, at >= 0 ? " near byte " : "",
                    at >= 0 ? at : 0);
  }
  lm_status st = LM_OK;
  const cJSON *data = cJSON_GetObjectItemCaseSensitive(root, "data");
  if (!cJSON_IsObject(root) || !cJSON_IsArray(data)) {
    st = lm_error(LM_ERR_FORMAT, "%s: expected SQuAD v1.1 JSON: {\"data\": [{\"paragraphs\": [...]}]}", name);
    goto done;
  }
  if (grow(&s->aoff, &b.co, 2, sizeof *s->aoff)) { st = LM_ERR_NOMEM; goto done; }
  s->aoff[0] = 0;
  int64_t ai = 0, cc = 0;
  const cJSON *art;
  cJSON_ArrayForEach(art, data) {
    const cJSON *paras = cJSON_GetObjectItemCaseSensitive(art, "paragraphs");
    if (!cJSON_IsArray(paras)) { st = lm_error(LM_ERR_FORMAT, "%s: data[%lld]: no \"paragraphs\" array", name, (long long)ai); goto done; }
    int64_t pi = 0;
    const cJSON *p;
    cJSON_ArrayForEach(p, paras) {
      const cJSON *ctx = cJSON_GetObjectItemCaseSensitive(p, "context"), *qas = cJSON_GetObjectItemCaseSensitive(p, "qas");
      if (!cJSON_IsString(ctx) || !cJSON_IsArray(qas)) {
        st = lm_error(LM_ERR_FORMAT, "%s: data[%lld].paragraphs[%lld]: needs a \"context\" string and a \"qas\" array",
                      name, (long long)ai, (long long)pi);
        goto done;
      }
      if (grow(&s->contexts, &cc, s->n_ctx + 1, sizeof *s->contexts)) { st = LM_ERR_NOMEM; goto done; }
      if (!(s->contexts[s->n_ctx] = lm_strdup(ctx->valuestring))) { st = LM_ERR_NOMEM; goto done; }
      s->n_ctx++;
      int64_t qi = 0;
      const cJSON *qa;
      cJSON_ArrayForEach(qa, qas) {
        char where[96];
        snprintf(where, sizeof where, "data[%lld].paragraphs[%lld].qas[%lld]", (long long)ai, (long long)pi, (long long)qi);
        if ((st = squad_question(&b, name, where, qa, s->n_ctx - 1))) goto done;
        qi++;
      }
      pi++;
    }
    ai++;
  }
  if (s->n == 0)
    st = lm_error(LM_ERR_FORMAT, "%s: no question with a valid answer (%lld answers dropped: span outside the context "
                  "or text mismatch)", name, (long long)s->n_bad_answers);
done:
  cJSON_Delete(root);
  if (st) {
    for (int64_t i = s->aoff ? s->aoff[s->n] : 0; i < b.na; i++) free(s->answers[i]);   /* of an unfinished question */
    lm_squad_free(s);
  }
  return st;
}

lm_status lm_squad_read(const char *path, lm_squad *s) {
  memset(s, 0, sizeof *s);
  char *text; size_t len;
  lm_status st = lm_read_file(path, &text, &len);
  if (st) return st;
  st = lm_squad_parse(text, len, path, s);
  free(text);
  return st;
}

/* ------------------------------------------------------------------ context tokens */

static int qa_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

lm_status lm_qa_tokenize_context(const lm_tokenizer *tok, const char *text, size_t len, uint32_t **ids_out,
                                 int64_t **start_out, int64_t **end_out, int64_t *n_out) {
  *ids_out = NULL; *start_out = *end_out = NULL; *n_out = 0;
  int bpe = lm_tok_byte_level(tok);
  uint32_t *ids = NULL; int64_t *st0 = NULL, *en0 = NULL;
  int64_t n = 0, cap = 0, c1 = 0, c2 = 0;
  char *buf = NULL; int64_t bcap = 0;
  lm_status st = LM_OK;
  int first = 1;
  for (size_t i = 0; i < len && !st;) {
    while (i < len && qa_space(text[i])) i++;
    if (i == len) break;
    size_t ws = i;
    while (i < len && !qa_space(text[i])) i++;
    size_t we = i, wl = we - ws;
    const char *src = text + ws;
    size_t bl = wl, pre = 0;
    if (bpe && !first) {
      if (grow(&buf, &bcap, (int64_t)wl + 1, 1)) { st = LM_ERR_NOMEM; break; }
      buf[0] = ' '; memcpy(buf + 1, text + ws, wl); src = buf; bl = wl + 1; pre = 1;
    }
    first = 0;
    uint32_t *w; size_t m;
    if ((st = lm_tokenizer_encode(tok, src, bl, 0, &w, &m))) break;
    if (grow(&ids, &cap, n + (int64_t)m, sizeof *ids) || grow(&st0, &c1, n + (int64_t)m, sizeof *st0) ||
        grow(&en0, &c2, n + (int64_t)m, sizeof *en0)) { free(w); st = LM_ERR_NOMEM; break; }
    size_t total = 0;
    if (bpe)
      for (size_t j = 0; j < m; j++) { size_t k; lm_tok_bytes(tok, w[j], &k); total += k; }
    size_t pos = 0;
    for (size_t j = 0; j < m; j++) {
      ids[n + (int64_t)j] = w[j];
      if (bpe && total == bl) {   /* exact: byte-level tokens are the bytes of src */
        size_t k; lm_tok_bytes(tok, w[j], &k);
        int64_t a = (int64_t)ws + (int64_t)pos - (int64_t)pre, e = a + (int64_t)k;
        if (a < (int64_t)ws) a = (int64_t)ws;
        if (e < a) e = a;
        st0[n + (int64_t)j] = a; en0[n + (int64_t)j] = e;
        pos += k;
      } else {
        st0[n + (int64_t)j] = (int64_t)ws; en0[n + (int64_t)j] = (int64_t)we;
      }
    }
    n += (int64_t)m;
    free(w);
  }
  free(buf);
  if (st) { free(ids); free(st0); free(en0); return st; }
  *ids_out = ids; *start_out = st0; *end_out = en0; *n_out = n;
  return LM_OK;
}

int lm_qa_char_span_to_tokens(const int64_t *start, const int64_t *end, int64_t n, int64_t a0, int64_t a1,
                              int64_t *ts, int64_t *te) {
  *ts = *te = -1;
  for (int64_t i = 0; i < n; i++)
    if (end[i] > a0 && start[i] < a1) { if (*ts < 0) *ts = i; *te = i; }
  return *ts < 0 ? -1 : 0;
}

/* ------------------------------------------------------------------ SQuAD scoring */

char *lm_squad_normalize(const char *s) {
  size_t n = strlen(s);
  char *t = malloc(n + 1), *o = malloc(n + 1);
  if (!t || !o) { free(t); free(o); return NULL; }
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c < 128 && ispunct(c)) continue;
    t[k++] = (char)(c < 128 ? tolower(c) : c);
  }
  t[k] = 0;
  size_t m = 0;
  for (size_t i = 0; i < k;) {
    while (i < k && isspace((unsigned char)t[i])) i++;
    size_t w0 = i;
    while (i < k && !isspace((unsigned char)t[i])) i++;
    size_t wl = i - w0;
    if (!wl) break;
    if ((wl == 1 && t[w0] == 'a') || (wl == 2 && !memcmp(t + w0, "an", 2)) || (wl == 3 && !memcmp(t + w0, "the", 3))) continue;
    if (m) o[m++] = ' ';
    memcpy(o + m, t + w0, wl); m += wl;
  }
  o[m] = 0;
  free(t);
  return o;
}

double lm_squad_em(const char *pred, const char *gold) {
  char *a = lm_squad_normalize(pred), *b = lm_squad_normalize(gold);
  double r = a && b && !strcmp(a, b);
  free(a); free(b);
  return r;
}

/* splits a normalised string (single spaces) in place; returns the word count */
static int64_t words(char *s, char **w, int64_t max) {
  int64_t n = 0;
  for (char *p = s; *p && n < max;) {
    w[n++] = p;
    char *q = strchr(p, ' ');
    if (!q) break;
    *q = 0; p = q + 1;
  }
  return n;
}

double lm_squad_f1(const char *pred, const char *gold) {
  char *a = lm_squad_normalize(pred), *b = lm_squad_normalize(gold);
  double r = 0;
  if (a && b) {
    size_t la = strlen(a) + 1, lb = strlen(b) + 1;
    char **wa = malloc(la * sizeof *wa), **wb = malloc(lb * sizeof *wb);
    uint8_t *used = calloc(lb, 1);
    if (wa && wb && used) {
      int64_t na = words(a, wa, (int64_t)la), nb = words(b, wb, (int64_t)lb), same = 0;
      for (int64_t i = 0; i < na; i++)
        for (int64_t j = 0; j < nb; j++)
          if (!used[j] && !strcmp(wa[i], wb[j])) { used[j] = 1; same++; break; }
      if (same) {
        double p = (double)same / (double)na, q = (double)same / (double)nb;
        r = 2 * p * q / (p + q);
      }
    }
    free(wa); free(wb); free(used);
  }
  free(a); free(b);
  return r;
}

/* ------------------------------------------------------------------ features */

void lm_qa_data_free(lm_qa_data *d) {
  if (!d) return;
  free(d->ex); free(d->c0); free(d->nc); free(d->start); free(d->end);
  free(d->qids); free(d->qoff); free(d->cids); free(d->cstart); free(d->cend); free(d->coff);
  memset(d, 0, sizeof *d);
}

lm_status lm_qa_encode(lm_qa_data *d, const lm_tokenizer *tok, const lm_squad *s, int64_t context, int64_t stride,
                       int train) {
  memset(d, 0, sizeof *d);
  if (context < 8) return lm_error(LM_ERR_ARG, "a question-answering context needs at least 8 tokens, got %lld", (long long)context);
  lm_status st = lm_cls_special_ids(tok, &d->cls, &d->sep, &d->pad);
  if (st) return st;
  d->squad = s;
  int64_t maxq = (context - 3) / 2 < QA_MAX_QUERY ? (context - 3) / 2 : QA_MAX_QUERY;
  int64_t cq = 0, cc = 0, cf = 0, cf2 = 0, cf3 = 0, cf4 = 0, cf5 = 0, cs = 0, ce = 0;
  /* context tokens, once per context */
  d->coff = lm_xmalloc((size_t)(s->n_ctx + 1) * sizeof *d->coff);
  d->qoff = lm_xmalloc((size_t)(s->n + 1) * sizeof *d->qoff);
  if (!d->coff || !d->qoff) { lm_qa_data_free(d); return LM_ERR_NOMEM; }
  d->coff[0] = 0;
  for (int64_t c = 0; c < s->n_ctx && !st; c++) {
    uint32_t *ids; int64_t *a, *e, m;
    if ((st = lm_qa_tokenize_context(tok, s->contexts[c], strlen(s->contexts[c]), &ids, &a, &e, &m))) break;
    int64_t at = d->coff[c];
    if (grow(&d->cids, &cc, at + m, sizeof *d->cids) || grow(&d->cstart, &cs, at + m, sizeof *d->cstart) ||
        grow(&d->cend, &ce, at + m, sizeof *d->cend)) st = LM_ERR_NOMEM;
    else if (m) {
      memcpy(d->cids + at, ids, (size_t)m * sizeof *ids);
      memcpy(d->cstart + at, a, (size_t)m * sizeof *a);
      memcpy(d->cend + at, e, (size_t)m * sizeof *e);
    }
    free(ids); free(a); free(e);
    d->coff[c + 1] = at + m;
  }
  d->qoff[0] = 0;
  int64_t longest = 0;
  for (int64_t i = 0; i < s->n && !st; i++) {
    uint32_t *q; size_t nq;
    if ((st = lm_tokenizer_encode(tok, s->question[i], strlen(s->question[i]), 0, &q, &nq))) break;
    if ((int64_t)nq > maxq) { nq = (size_t)maxq; d->n_questions_cut++; }
    if (grow(&d->qids, &cq, d->qoff[i] + (int64_t)nq, sizeof *d->qids)) { free(q); st = LM_ERR_NOMEM; break; }
    if (nq) memcpy(d->qids + d->qoff[i], q, nq * sizeof *q);
    free(q);
    d->qoff[i + 1] = d->qoff[i] + (int64_t)nq;
    int64_t W = context - (int64_t)nq - 3, cx = s->ctx[i], c0 = d->coff[cx], nctx = d->coff[cx + 1] - c0;
    int64_t ov = stride > 0 ? stride : W / 2;
    if (ov >= W) ov = W - 1;
    int64_t step = W - ov, ts = -1, te = -1;
    lm_qa_char_span_to_tokens(d->cstart + c0, d->cend + c0, nctx, s->astart[s->aoff[i]], s->aend[s->aoff[i]], &ts, &te);
    int64_t kept = 0;
    for (int64_t w0 = 0;; w0 += step) {
      int64_t nc = nctx - w0 < W ? nctx - w0 : W;
      if (nc < 0) nc = 0;
      int inside = ts >= 0 && ts >= w0 && te < w0 + nc;
      if (train && !inside) d->n_windows_dropped++;
      else {
        int64_t f = d->n_feat;
        if (grow(&d->ex, &cf, f + 1, sizeof *d->ex) || grow(&d->c0, &cf2, f + 1, sizeof *d->c0) ||
            grow(&d->nc, &cf3, f + 1, sizeof *d->nc) || grow(&d->start, &cf4, f + 1, sizeof *d->start) ||
            grow(&d->end, &cf5, f + 1, sizeof *d->end)) { st = LM_ERR_NOMEM; break; }
        d->ex[f] = i; d->c0[f] = w0; d->nc[f] = nc;
        d->start[f] = inside ? (int32_t)((int64_t)nq + 2 + ts - w0) : -1;
        d->end[f] = inside ? (int32_t)((int64_t)nq + 2 + te - w0) : -1;
        d->n_feat++; kept++;
        if ((int64_t)nq + nc + 3 > longest) longest = (int64_t)nq + nc + 3;
      }
      if (w0 + W >= nctx) break;
    }
    if (!st && train && !kept) d->n_unanswerable++;
  }
  if (st) { lm_qa_data_free(d); return st; }
  if (d->n_feat == 0) {
    lm_qa_data_free(d);
    return lm_error(LM_ERR_ARG, "no question has its answer inside a window of %lld tokens", (long long)context);
  }
  d->context = longest;
  return LM_OK;
}

int64_t lm_qa_fill(const lm_qa_data *d, const int64_t *idx, int64_t nb, int32_t *ids, int32_t *seg, uint8_t *mask,
                   int32_t *labels) {
  int64_t T = 3;
  for (int64_t b = 0; b < nb; b++) {
    int64_t f = idx[b], len = d->qoff[d->ex[f] + 1] - d->qoff[d->ex[f]] + d->nc[f] + 3;
    if (len > T) T = len;
  }
  for (int64_t b = 0; b < nb; b++) {
    int64_t f = idx[b], i = d->ex[f], nq = d->qoff[i + 1] - d->qoff[i], nc = d->nc[f];
    const uint32_t *c = d->cids + d->coff[d->squad->ctx[i]] + d->c0[f];
    int32_t *row = ids + b * T, *srow = seg + b * T;
    uint8_t *mrow = mask + b * T;
    int64_t t = 0;
    row[t++] = d->cls;
    for (int64_t k = 0; k < nq; k++) row[t++] = (int32_t)d->qids[d->qoff[i] + k];
    row[t++] = d->sep;
    int64_t p0 = t;
    for (int64_t k = 0; k < nc; k++) row[t++] = (int32_t)c[k];
    row[t++] = d->sep;
    for (int64_t k = 0; k < T; k++) {
      srow[k] = k >= p0 && k < t;
      mrow[k] = k < t;
      if (k >= t) row[k] = d->pad;
    }
    labels[2 * b] = d->start[f]; labels[2 * b + 1] = d->end[f];
  }
  return T;
}

/* ------------------------------------------------------------------ evaluation */

static lm_status qa_eval_pass(lm_model *m, const lm_qa_data *d, int64_t B, int32_t *ids, int32_t *seg, uint8_t *mask,
                              int32_t *lab, int64_t *idx, double *loss, double *em, double *f1, char ***preds,
                              double *scores) {
  const lm_squad *s = d->squad;
  int64_t n = s->n;
  double *best = lm_xmalloc((size_t)(n ? n : 1) * sizeof *best);
  int64_t *bs = lm_xmalloc((size_t)(n ? n : 1) * 2 * sizeof *bs);
  if (!best || !bs) { free(best); free(bs); return LM_ERR_NOMEM; }
  for (int64_t i = 0; i < n; i++) { best[i] = -INFINITY; bs[2 * i] = bs[2 * i + 1] = -1; }
  double sum = 0; int64_t nl = 0;
  lm_status st = LM_OK;
  for (int64_t f0 = 0; f0 < d->n_feat; f0 += B) {
    int64_t nb = d->n_feat - f0 < B ? d->n_feat - f0 : B, labelled = 0;
    for (int64_t b = 0; b < nb; b++) idx[b] = f0 + b;
    int64_t T = lm_qa_fill(d, idx, nb, ids, seg, mask, lab);
    for (int64_t b = 0; b < nb; b++) labelled += lab[2 * b] >= 0;
    lm_batch bb = {.ids = ids, .segments = seg, .mask = mask, .labels = lab, .B = nb, .T = T};
    float l = lm_forward(m, &bb, NULL, NULL);
    if (isnan(l) && (labelled || lm_batch_check(m, &bb))) {
      st = lm_error_prefix(LM_ERR_ARG, "evaluating windows %lld..%lld", (long long)f0, (long long)(f0 + nb - 1));
      break;
    }
    if (labelled) { sum += (double)l * (double)labelled; nl += labelled; }
    const float *lg = lm_model_logits(m);
    for (int64_t b = 0; b < nb; b++) {
      int64_t f = idx[b], i = d->ex[f], nq = d->qoff[i + 1] - d->qoff[i], p0 = nq + 2, nc = d->nc[f];
      const float *x = lg + b * T * 2;
      for (int64_t a = 0; a < nc; a++)
        for (int64_t e = a; e < nc && e < a + QA_MAX_ANSWER; e++) {
          double sc = (double)x[2 * (p0 + a)] + (double)x[2 * (p0 + e) + 1];
          if (sc > best[i]) { best[i] = sc; bs[2 * i] = d->c0[f] + a; bs[2 * i + 1] = d->c0[f] + e; }
        }
    }
  }
  char **out = NULL;
  if (!st && preds && !(out = calloc((size_t)(n ? n : 1), sizeof *out))) st = lm_error(LM_ERR_NOMEM, "out of memory");
  double sem = 0, sf1 = 0;
  for (int64_t i = 0; i < n && !st; i++) {
    int64_t cx = s->ctx[i];
    const char *c = s->contexts[cx];
    int64_t a = 0, e = 0;
    if (bs[2 * i] >= 0) { a = d->cstart[d->coff[cx] + bs[2 * i]]; e = d->cend[d->coff[cx] + bs[2 * i + 1]]; }
    if (e < a) e = a;
    char *txt = lm_xmalloc((size_t)(e - a) + 1);
    if (!txt) { st = LM_ERR_NOMEM; break; }
    memcpy(txt, c + a, (size_t)(e - a)); txt[e - a] = 0;
    double bem = 0, bf = 0;
    for (int64_t k = s->aoff[i]; k < s->aoff[i + 1]; k++) {
      double x = lm_squad_em(txt, s->answers[k]), y = lm_squad_f1(txt, s->answers[k]);
      if (x > bem) bem = x;
      if (y > bf) bf = y;
    }
    sem += bem; sf1 += bf;
    if (scores) scores[i] = bs[2 * i] >= 0 ? best[i] : NAN;
    if (out) out[i] = txt; else free(txt);
  }
  free(best); free(bs);
  if (st) {
    if (out) { for (int64_t i = 0; i < n; i++) free(out[i]); free(out); }
    return st;
  }
  *loss = nl ? sum / (double)nl : NAN;
  *em = n ? sem / (double)n : NAN;
  *f1 = n ? sf1 / (double)n : NAN;
  if (preds) *preds = out;
  return LM_OK;
}

lm_status lm_qa_predict(lm_model *m, const lm_qa_data *d, int64_t B, double *loss, double *em, double *f1,
                        char ***preds, double *scores) {
  *loss = *em = *f1 = NAN;
  if (preds) *preds = NULL;
  if (!m || m->cfg.head != LM_HEAD_QA)
    return lm_error(LM_ERR_ARG, "lm_qa_predict: the model is not a question-answering model");
  if (B < 1) B = 32;
  int64_t T = d->context;
  if (T > m->cfg.n_positions)
    return lm_error(LM_ERR_RANGE, "windows of %lld tokens exceed the model's %lld positions", (long long)T, (long long)m->cfg.n_positions);
  int32_t *ids = lm_xmalloc((size_t)(B * T) * sizeof *ids), *seg = lm_xmalloc((size_t)(B * T) * sizeof *seg),
          *lab = lm_xmalloc((size_t)(2 * B) * sizeof *lab);
  uint8_t *mask = lm_xmalloc((size_t)(B * T));
  int64_t *idx = lm_xmalloc((size_t)B * sizeof *idx);
  lm_status st = (!ids || !seg || !lab || !mask || !idx) ? LM_ERR_NOMEM : LM_OK;
  if (!st) st = lm_model_reserve(m, B, T, 0);
  if (!st) st = qa_eval_pass(m, d, B, ids, seg, mask, lab, idx, loss, em, f1, preds, scores);
  free(ids); free(seg); free(lab); free(mask); free(idx);
  return st;
}

lm_status lm_qa_evaluate(lm_model *m, const lm_qa_data *d, int64_t B, double *loss, double *em, double *f1,
                         char ***preds) {
  return lm_qa_predict(m, d, B, loss, em, f1, preds, NULL);
}

/* ------------------------------------------------------------------ objective */

typedef struct {
  const lm_qa_data *train, *eval;
  int64_t B, T;
  lm_epochs order;        /* over the training items; holds the cursor */
  int64_t *idx;
  int32_t *ids, *seg, *labels;
  uint8_t *mask;
  double *last_em, *last_f1;
  double em, f1;          /* of the last evaluation (NAN before one) */
} qa_obj;

static float qa_micro(void *self, lm_model *m) {
  qa_obj *c = self;
  for (int64_t b = 0; b < c->B; b++) {
    c->idx[b] = lm_epochs_next(&c->order);
  }
  int64_t T = lm_qa_fill(c->train, c->idx, c->B, c->ids, c->seg, c->mask, c->labels);
  lm_batch b = {.ids = c->ids, .segments = c->seg, .mask = c->mask, .labels = c->labels, .B = c->B, .T = T};
  float loss = lm_forward(m, &b, NULL, NULL);
  lm_backward(m, &b);
  return loss;
}

static double qa_evaluate(void *self, lm_model *m, int64_t max_batches) {
  (void)max_batches;
  qa_obj *c = self;
  if (!c->eval) return NAN;
  double loss, em, f1;
  if (qa_eval_pass(m, c->eval, c->B, c->ids, c->seg, c->mask, c->labels, c->idx, &loss, &em, &f1, NULL, NULL)) return NAN;
  c->em = em; c->f1 = f1;
  if (c->last_em) *c->last_em = em;
  if (c->last_f1) *c->last_f1 = f1;
  return loss;
}

static int qa_eval_fields(void *self, char *buf, size_t n) {
  qa_obj *c = self;
  return isnan(c->em) ? 0 : snprintf(buf, n, "\"val_exact_match\": %.6f, \"val_f1\": %.6f", c->em, c->f1);
}

static void qa_cursor(void *self, int64_t *epoch, int64_t *index) {
  qa_obj *c = self;
  *epoch = c->order.epoch; *index = c->order.index;
}

static void qa_free(void *self) {
  qa_obj *c = self;
  if (!c) return;
  lm_epochs_free(&c->order); free(c->idx); free(c->ids); free(c->seg); free(c->labels); free(c->mask);
  free(c);
}

lm_status lm_objective_qa(lm_objective *o, lm_model *m, const lm_qa_data *train, const lm_qa_data *eval, int64_t B,
                          uint64_t seed, const int64_t *cursor, double *last_em, double *last_f1) {
  memset(o, 0, sizeof *o);
  if (!m || m->cfg.head != LM_HEAD_QA)
    return lm_error(LM_ERR_ARG, "the question-answering objective needs a model with a qa head");
  if (!train || train->n_feat < 1) return lm_error(LM_ERR_ARG, "no training windows");
  if (B < 1) return lm_error(LM_ERR_ARG, "batch must be positive");
  qa_obj *c = calloc(1, sizeof *c);
  if (!c) return lm_error(LM_ERR_NOMEM, "out of memory");
  c->train = train; c->eval = eval; c->B = B; c->last_em = last_em; c->last_f1 = last_f1;
  c->em = c->f1 = NAN;
  c->T = train->context;
  if (eval && eval->context > c->T) c->T = eval->context;
  lm_status st = LM_OK;
  if (c->T > m->cfg.n_positions)
    st = lm_error(LM_ERR_RANGE, "windows of %lld tokens exceed the model's %lld positions", (long long)c->T,
                  (long long)m->cfg.n_positions);
  if (!st) {
    c->idx = lm_xmalloc((size_t)B * sizeof *c->idx);
    c->ids = lm_xmalloc((size_t)(B * c->T) * sizeof *c->ids);
    c->seg = lm_xmalloc((size_t)(B * c->T) * sizeof *c->seg);
    c->labels = lm_xmalloc((size_t)(2 * B) * sizeof *c->labels);
    c->mask = lm_xmalloc((size_t)(B * c->T));
    if (!c->idx || !c->ids || !c->seg || !c->labels || !c->mask) st = LM_ERR_NOMEM;
  }
  if (!st) st = lm_epochs_init(&c->order, train->n_feat, seed, 0x0AULL, cursor);
  if (!st) st = lm_model_reserve(m, B, c->T, 1);
  if (st) { qa_free(c); return st; }
  *o = (lm_objective){.self = c, .micro = qa_micro, .evaluate = qa_evaluate, .cursor = qa_cursor, .free = qa_free, .eval_fields = qa_eval_fields};
  return LM_OK;
}
