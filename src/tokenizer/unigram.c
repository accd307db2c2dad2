/* unigram.c — the Unigram model (SentencePiece's, as Hugging Face tokenizers
 * runs it; T5, ALBERT, XLM-R, mBART): tokenizer.json's
 *   "model": {"type": "Unigram", "unk_id": 2, "vocab": [["<pad>", 0.0], ["▁the", -3.1], ...],
 *             "byte_fallback": false}
 *
 * Encoding a piece of text (already normalized and pre-tokenized: the `▁`s are
 * in it) is a Viterbi search over the lattice of vocabulary pieces, exactly
 * HF's Unigram::encode_optimized (itself SentencePiece's EncodeOptimized):
 * walking the text one character at a time, every piece that starts there
 * (found by walking a byte trie of all pieces) proposes best[start] + score
 * at its end; a strictly better score wins, so on ties the first proposal
 * stays: the one from the earliest start, whose last piece is the longest. A character that no one-character piece covers
 * proposes the unknown token with score min_score - 10. Backtracking from the
 * end gives the pieces; consecutive unknown-token nodes are fused into one
 * string, which becomes its own id if it is a piece, else (byte_fallback)
 * one <0xNN> token per byte when all exist, else unk_id. An unknown
 * character without unk_id is an error, as in HF. The lattice is linear in
 * the text (three arrays of one entry per byte, kept in the per-encoder state
 * and reused, so encoding does not allocate once warm).
 *
 * The trie: nodes are numbers, the edge (node, byte) -> child is an
 * open-addressing hash table with Fibonacci hashing (the root's 256 edges are
 * a plain array); each edge records the id of the piece ending at its child
 * (the last one when a piece is listed twice, as HF's token -> id map does).
 * Every vocabulary entry is in it, special pieces too, as in HF (where added
 * tokens are cut out before).
 *
 * Decoding concatenates the pieces; turning `▁` back into spaces and <0xNN>
 * into bytes is the decoders' work (Metaspace, ByteFallback). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "tokenizer/tokenizer.h"

#define UNK_PENALTY 10.0   /* HF's K_UNK_PENALTY, SentencePiece's kUnkPenalty */

/* An edge (node, byte) -> child, with the id of the piece ending at the child (-1: none) so that
 * a step of the walk touches one cache line. key: node << 8 | byte (node >= 1); 0: empty slot. */
typedef struct { uint32_t key; int32_t child, piece; } uni_edge;
typedef struct {
  uni_edge root[256];       /* the root's edges (child -1: none) */
  uni_edge *edge;           /* the others: open addressing, linear probing */
  uint64_t cap; int shift;  /* cap = 2^(64 - shift) slots */
  int64_t n_nodes;
} uni_trie;

typedef struct {
  int64_t n;                /* pieces of the model (ids 0..n-1; added tokens may follow) */
  double *score;
  int64_t unk_id;           /* -1: none (null) */
  int byte_fallback;
  double min_score;
  int32_t byte_id[256];     /* <0xNN>, -1 if absent */
  uni_trie trie;
} lm_unigram;

/* One encoder's lattice (e->state). */
typedef struct {
  double *best; size_t *from; int32_t *id;   /* per byte position 0..len: best score, start of its last piece, that piece */
  size_t cap;
  uint32_t *rev;                             /* ids of the best path, last first (at most one per byte) */
} uni_state;

#define NONE SIZE_MAX

/* ------------------------------------------------------------ trie */
/* Fibonacci hashing: one multiply, the top bits (the walk does one probe per byte of text) */
static inline uint64_t edge_slot(const uni_trie *tr, uint32_t k) { return (k * 0x9E3779B97F4A7C15ull) >> tr->shift; }

/* The edge from node by byte b, NULL if none. */
static inline const uni_edge *trie_step(const uni_trie *tr, int32_t node, uint8_t b) {
  if (node == 0) return tr->root[b].child >= 0 ? &tr->root[b] : NULL;
  uint32_t k = (uint32_t)node << 8 | b;
  uint64_t mask = tr->cap - 1, h = edge_slot(tr, k);
  for (;;) {
    if (tr->edge[h].key == k) return &tr->edge[h];
    if (!tr->edge[h].key) return NULL;
    h = (h + 1) & mask;
  }
}

static lm_status trie_build(uni_trie *tr, int64_t n, const uint8_t *const *bytes, const size_t *len) {
  uint64_t total = 1;
  for (int64_t i = 0; i < n; i++) total += len[i];
  if (total >= (1u << 24))   /* nodes fit 24 bits, so an edge is 12 bytes (the walk's cache misses) */
    return lm_error(LM_ERR_UNSUPPORTED, "Unigram: the pieces are too long in total (%llu bytes; lmkit takes up to 16 MB)",
                    (unsigned long long)total);
  tr->cap = lm_tok_pow2_at_least(2 * total);
  tr->shift = 64;
  for (uint64_t c = tr->cap; c > 1; c >>= 1) tr->shift--;
  tr->edge = calloc(tr->cap, sizeof *tr->edge);
  if (!tr->edge) return lm_error(LM_ERR_NOMEM, "out of memory");
  for (int b = 0; b < 256; b++) tr->root[b] = (uni_edge){0, -1, -1};
  tr->n_nodes = 1;
  uint64_t mask = tr->cap - 1;
  for (int64_t i = 0; i < n; i++) {
    int32_t node = 0;
    uni_edge *last = NULL;
    for (size_t j = 0; j < len[i]; j++) {
      uint8_t b = bytes[i][j];
      last = (uni_edge *)trie_step(tr, node, b);
      if (!last) {
        int32_t c = (int32_t)tr->n_nodes++;
        uint32_t k = (uint32_t)node << 8 | b;
        if (node == 0) last = &tr->root[b];
        else {
          uint64_t h = edge_slot(tr, k);
          while (tr->edge[h].key) h = (h + 1) & mask;
          last = &tr->edge[h];
        }
        *last = (uni_edge){k, c, -1};
      }
      node = last->child;
    }
    if (last) last->piece = (int32_t)i;   /* an empty piece is never matched (HF's trie) */
  }
  return LM_OK;
}

/* The id of the piece with exactly these bytes, -1 if none. */
static int32_t trie_find(const uni_trie *tr, const uint8_t *s, size_t n) {
  const uni_edge *ed = NULL;
  int32_t node = 0;
  for (size_t i = 0; i < n; i++) {
    if (!(ed = trie_step(tr, node, s[i]))) return -1;
    node = ed->child;
  }
  return ed ? ed->piece : -1;
}

/* ------------------------------------------------------------ the model */
static void uni_free(void *p) {
  lm_unigram *u = p;
  if (!u) return;
  free(u->score); free(u->trie.edge);
  free(u);
}

static void state_free(void *p) {
  uni_state *s = p;
  if (!s) return;
  free(s->best); free(s->from); free(s->id); free(s->rev);
  free(s);
}

static lm_status state_new(void **out, const lm_tokenizer *t) {
  (void)t;
  return (*out = calloc(1, sizeof(uni_state))) ? LM_OK : lm_error(LM_ERR_NOMEM, "out of memory");
}

static lm_status state_reserve(uni_state *s, size_t n) {
  if (n <= s->cap) return LM_OK;
  size_t c = s->cap ? s->cap : 256;
  while (c < n) {
    if (c > SIZE_MAX / 2 / sizeof(double)) return lm_error(LM_ERR_NOMEM, "out of memory");
    c *= 2;
  }
  double *b = realloc(s->best, c * sizeof *b);
  if (b) s->best = b;
  size_t *f = realloc(s->from, c * sizeof *f);
  if (f) s->from = f;
  int32_t *i = realloc(s->id, c * sizeof *i);
  if (i) s->id = i;
  uint32_t *r = realloc(s->rev, c * sizeof *r);
  if (r) s->rev = r;
  if (!b || !f || !i || !r) return lm_error(LM_ERR_NOMEM, "out of memory");
  s->cap = c;
  return LM_OK;
}

/* Appends the ids of text[a..b), the unknown stretch fused from unknown-token nodes. */
static void push_unknown(const lm_unigram *u, const uint8_t *s, size_t a, size_t b, uni_state *st, size_t *k) {
  int32_t id = trie_find(&u->trie, s + a, b - a);
  if (id >= 0) { st->rev[(*k)++] = (uint32_t)id; return; }
  if (u->byte_fallback) {
    size_t j = a;
    while (j < b && u->byte_id[s[j]] >= 0) j++;
    if (j == b) {   /* pushed last first, like the rest of rev */
      for (j = b; j > a; j--) st->rev[(*k)++] = (uint32_t)u->byte_id[s[j - 1]];
      return;
    }
  }
  st->rev[(*k)++] = (uint32_t)u->unk_id;
}

static lm_status uni_encode(lm_tok_encoder *e, const char *text, size_t len, uint32_t **ids, size_t *n, size_t *cap) {
  const lm_unigram *u = e->t->model;
  uni_state *s = e->state;
  const uint8_t *x = (const uint8_t *)text;
  lm_status st;
  /* rev holds at most one id per byte */
  if ((st = state_reserve(s, len + 1))) return st;
  double unk_score = u->min_score - UNK_PENALTY;
  for (size_t i = 0; i <= len; i++) s->from[i] = NONE;
  s->best[0] = 0;
  for (size_t pos = 0; pos < len;) {
    size_t mb = lm_utf8_char(x + pos, len - pos);
    if (!mb) mb = 1;   /* an invalid byte is a character of its own, which no piece covers */
    double here = s->from[pos] == NONE && pos ? 0 : s->best[pos];
    int single = 0;
    int32_t node = 0;
    for (size_t j = pos; j < len; j++) {
      const uni_edge *ed = trie_step(&u->trie, node, x[j]);
      if (!ed) break;
      node = ed->child;
      int32_t id = ed->piece;
      if (id < 0) continue;
      size_t end = j + 1;
      double cand = u->score[id] + here;
      if (s->from[end] == NONE || cand > s->best[end]) { s->best[end] = cand; s->from[end] = pos; s->id[end] = id; }
      if (end - pos == mb) single = 1;
    }
    if (!single) {
      size_t end = pos + mb;
      double cand = unk_score + here;
      if (s->from[end] == NONE || cand > s->best[end]) {
        if (u->unk_id < 0)
          return lm_error(LM_ERR_FORMAT, "Unigram: the text has a character no piece covers (byte %zu) and the model has "
                          "no unk_id", pos);
        s->best[end] = cand; s->from[end] = pos; s->id[end] = (int32_t)u->unk_id;
      }
    }
    pos += mb;
  }
  /* backtrack; runs of unknown-token nodes are fused */
  size_t k = 0, end = len, unk_end = NONE;
  while (end > 0) {
    size_t from = s->from[end];
    if (s->id[end] == u->unk_id) { if (unk_end == NONE) unk_end = end; }
    else {
      if (unk_end != NONE) { push_unknown(u, x, end, unk_end, s, &k); unk_end = NONE; }
      s->rev[k++] = (uint32_t)s->id[end];
    }
    end = from;
  }
  if (unk_end != NONE) push_unknown(u, x, 0, unk_end, s, &k);
  if ((st = lm_tok_reserve(ids, n, cap, k))) return st;
  for (size_t i = 0; i < k; i++) (*ids)[(*n)++] = s->rev[k - 1 - i];
  return LM_OK;
}

/* ------------------------------------------------------------ tokenizer.json */
static const char *const MODEL_KEYS[] = {"type", "unk_id", "vocab", "byte_fallback"};
static int cmp_added(const void *a, const void *b) {
  const lm_tok_added *x = a, *y = b;
  return x->id < y->id ? -1 : x->id > y->id;
}

/* Builds the tokenizer from model.vocab's pieces/scores and the added tokens (in the vocabulary:
 * marked special; past it: appended, their ids following on). Takes no ownership of u on error. */
static lm_status uni_build(lm_tokenizer **out, lm_unigram *u, const char *const *piece, const size_t *plen,
                           lm_tok_added *added, int n_added, const char *name) {
  lm_status st = LM_OK;
  if (n_added) qsort(added, (size_t)n_added, sizeof *added, cmp_added);
  int64_t total = u->n;
  for (int i = 0; i < n_added; i++) {
    int64_t id = added[i].id;
    size_t cl = strlen(added[i].content);
    if (id < u->n) {
      if (plen[id] != cl || memcmp(piece[id], added[i].content, cl))
        return lm_error(LM_ERR_FORMAT, "%s: added token %lld \"%s\" differs from model.vocab's piece %lld", name, (long long)id,
                        added[i].content, (long long)id);
    } else if (id == total) total++;
    else if (id > total)
      return lm_error(LM_ERR_FORMAT, "%s: added_tokens: id %lld is missing (ids past model.vocab must follow on)", name,
                      (long long)total);
    else return lm_error(LM_ERR_FORMAT, "%s: added_tokens: id %lld is listed twice", name, (long long)id);
  }
  const uint8_t **b = lm_xmalloc((size_t)(total + 1) * sizeof *b);
  size_t *l = lm_xmalloc((size_t)(total + 1) * sizeof *l);
  uint8_t *sp = calloc((size_t)total + 1, 1);
  if (!b || !l || !sp) { st = lm_error(LM_ERR_NOMEM, "out of memory"); goto done; }
  for (int64_t i = 0; i < u->n; i++) { b[i] = (const uint8_t *)piece[i]; l[i] = plen[i]; }
  for (int i = 0; i < n_added; i++) {
    int64_t id = added[i].id;
    sp[id] = 1;
    if (id >= u->n) { b[id] = (const uint8_t *)added[i].content; l[id] = strlen(added[i].content); }
  }
  if ((st = trie_build(&u->trie, u->n, b, l))) goto done;
  for (int c = 0; c < 256; c++) {
    char hex[8];
    snprintf(hex, sizeof hex, "<0x%02X>", c);
    u->byte_id[c] = trie_find(&u->trie, (const uint8_t *)hex, 6);
  }
  st = lm_tok_new(out, &lm_unigram_ops, total, b, l, sp, 0, name);
done:
  free(b); free(l); free(sp);
  return st;
}

static lm_status uni_from_json(lm_tokenizer **out, const cJSON *root, const char *name) {
  *out = NULL;
  const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
  for (const cJSON *x = model->child; x; x = x->next) {
    size_t k = 0;
    while (k < sizeof MODEL_KEYS / sizeof *MODEL_KEYS && strcmp(x->string, MODEL_KEYS[k])) k++;
    if (k == sizeof MODEL_KEYS / sizeof *MODEL_KEYS)
      return lm_error(LM_ERR_UNSUPPORTED, "%s: model.%s: a Unigram model key lmkit does not know", name, x->string);
  }
  const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
  const cJSON *unk = cJSON_GetObjectItemCaseSensitive(model, "unk_id");
  const cJSON *bf = cJSON_GetObjectItemCaseSensitive(model, "byte_fallback");
  if (!cJSON_IsArray(vocab)) return lm_error(LM_ERR_FORMAT, "%s: model.vocab: expected an array of [piece, score] pairs", name);
  int64_t n = cJSON_GetArraySize(vocab);
  if (n >= LM_TOK_MAX_VOCAB - 1) return lm_error(LM_ERR_FORMAT, "%s: model.vocab: too many pieces", name);
  if (bf && !cJSON_IsNull(bf) && !cJSON_IsBool(bf)) return lm_error(LM_ERR_FORMAT, "%s: model.byte_fallback must be true or false", name);
  lm_unigram *u = calloc(1, sizeof *u);
  const char **piece = lm_xmalloc((size_t)(n + 1) * sizeof *piece);
  size_t *plen = lm_xmalloc((size_t)(n + 1) * sizeof *plen);
  lm_tok_added *added = NULL; int n_added = 0;
  lm_status st = LM_OK;
  if (!u || !piece || !plen || !(u->score = lm_xmalloc((size_t)(n + 1) * sizeof *u->score))) {
    st = lm_error(LM_ERR_NOMEM, "out of memory");
    goto done;
  }
  u->n = n;
  u->byte_fallback = cJSON_IsTrue(bf);
  u->unk_id = -1;
  u->min_score = INFINITY;
  if (unk && !cJSON_IsNull(unk) && !lm_tok_json_int(unk, 0, n - 1, &u->unk_id)) {
    st = lm_error(LM_ERR_FORMAT, "%s: model.unk_id must be null or an id of model.vocab (0..%lld)", name, (long long)n - 1);
    goto done;
  }
  int64_t i = 0;
  for (const cJSON *x = vocab->child; x; x = x->next, i++) {
    const cJSON *p = cJSON_GetArrayItem(x, 0), *sc = cJSON_GetArrayItem(x, 1);
    if (!cJSON_IsArray(x) || cJSON_GetArraySize(x) != 2 || !cJSON_IsString(p) || !cJSON_IsNumber(sc)) {
      st = lm_error(LM_ERR_FORMAT, "%s: model.vocab[%lld]: expected [piece (string), score (number)]", name, (long long)i);
      goto done;
    }
    piece[i] = p->valuestring; plen[i] = strlen(p->valuestring);
    u->score[i] = sc->valuedouble;
    if (sc->valuedouble < u->min_score) u->min_score = sc->valuedouble;
  }
  if ((st = lm_tok_json_added(root, name, &added, &n_added))) goto done;
  if ((st = uni_build(out, u, piece, plen, added, n_added, name))) goto done;
  (*out)->model = u;
  u = NULL;
done:
  uni_free(u);
  free(piece); free(plen); free(added);
  return st;
}

static lm_status uni_to_json(const lm_tokenizer *t, cJSON *root) {
  const lm_unigram *u = t->model;
  cJSON *model = cJSON_AddObjectToObject(root, "model");
  if (!model || !cJSON_AddStringToObject(model, "type", "Unigram")) return lm_error(LM_ERR_NOMEM, "out of memory");
  if (u->unk_id >= 0) cJSON_AddNumberToObject(model, "unk_id", (double)u->unk_id);
  else cJSON_AddNullToObject(model, "unk_id");
  cJSON *vocab = cJSON_AddArrayToObject(model, "vocab");
  if (!vocab) return lm_error(LM_ERR_NOMEM, "out of memory");
  char *s = NULL; size_t scap = 0;
  lm_status st = LM_OK;
  for (int64_t i = 0; i < u->n && !st; i++) {
    size_t m; const uint8_t *b = lm_tok_bytes(t, i, &m);
    if (m + 1 > scap) {
      char *q = realloc(s, m + 1);
      if (!q) { st = lm_error(LM_ERR_NOMEM, "out of memory"); break; }
      s = q; scap = m + 1;
    }
    memcpy(s, b, m); s[m] = 0;
    cJSON *pair = cJSON_CreateArray();
    if (!pair || !cJSON_AddItemToArray(vocab, pair) || !cJSON_AddItemToArray(pair, cJSON_CreateString(s)) ||
        !cJSON_AddItemToArray(pair, cJSON_CreateNumber(u->score[i])))
      st = lm_error(LM_ERR_NOMEM, "out of memory");
  }
  free(s);
  if (!st && !cJSON_AddBoolToObject(model, "byte_fallback", u->byte_fallback)) st = lm_error(LM_ERR_NOMEM, "out of memory");
  return st;
}

const lm_tok_model_ops lm_unigram_ops = {
  .type = "Unigram", .what = "Unigram", .byte_level = 0,
  .from_json = uni_from_json,
  .state_new = state_new, .state_free = state_free,
  .encode = uni_encode, .decode = lm_tok_join,
  .to_json = uni_to_json, .save = lm_tok_write_json, .free = uni_free,
};
