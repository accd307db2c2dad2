/* train.c — learning a byte-level BPE from text (GPT-2 style).
 *
 * 1. Pre-tokenize the corpus with GPT-2's regex (special tokens cut out first)
 *    and count each distinct piece ("word"), in parallel over ~1 MiB chunks.
 * 2. Every word becomes a sequence of byte ids (id b = byte b). Count every
 *    adjacent pair once, weighted by word frequency, and remember which words
 *    contain it.
 * 3. Repeat until the vocabulary is full: take the most frequent pair (ties:
 *    the smaller (left, right) ids, as Hugging Face does) from a max-heap with
 *    lazy deletion, give it a new id, and rewrite only the words that contain
 *    it, updating pair counts incrementally: subtract the word's old pairs,
 *    add its new ones. The corpus is never recounted.
 * Special tokens get the ids after the merges. The result uses Hugging Face
 * merge semantics, so the saved tokenizer.json encodes identically there. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include "tokenizer/tokenizer.h"

/* ------------------------------------------------------------ word counts */
typedef struct {
  uint64_t *h; uint32_t *idx; uint64_t cap;   /* slots: hash (0 empty) and word index */
  uint8_t *bytes; size_t nb, cb;               /* word bytes */
  size_t *off; uint32_t *len; int64_t *count; size_t n, cn;
} wordmap;

static uint64_t whash(const uint8_t *s, size_t n) { return lm_tok_hash(s, n) | 1; }   /* 0 marks an empty slot */

static void wm_free(wordmap *m) { free(m->h); free(m->idx); free(m->bytes); free(m->off); free(m->len); free(m->count); memset(m, 0, sizeof *m); }

static lm_status wm_grow(wordmap *m) {
  uint64_t nc = m->cap ? m->cap * 2 : 1 << 14;
  uint64_t *nh = calloc(nc, sizeof *nh);
  uint32_t *ni = malloc(nc * sizeof *ni);
  if (!nh || !ni) { free(nh); free(ni); return lm_error(LM_ERR_NOMEM, "out of memory"); }
  for (uint64_t i = 0; i < m->cap; i++) {
    if (!m->h[i]) continue;
    uint64_t j = m->h[i] & (nc - 1);
    while (nh[j]) j = (j + 1) & (nc - 1);
    nh[j] = m->h[i]; ni[j] = m->idx[i];
  }
  free(m->h); free(m->idx);
  m->h = nh; m->idx = ni; m->cap = nc;
  return LM_OK;
}

static lm_status wm_add(wordmap *m, const uint8_t *s, size_t n, int64_t count) {
  if (n > UINT32_MAX) n = UINT32_MAX;
  if ((m->n + 1) * 2 > m->cap && wm_grow(m)) return LM_ERR_NOMEM;
  uint64_t h = whash(s, n), i = h & (m->cap - 1);
  while (m->h[i]) {
    if (m->h[i] == h) {
      uint32_t w = m->idx[i];
      if (m->len[w] == n && !memcmp(m->bytes + m->off[w], s, n)) { m->count[w] += count; return LM_OK; }
    }
    i = (i + 1) & (m->cap - 1);
  }
  if (m->n >= UINT32_MAX - 1) return lm_error(LM_ERR_RANGE, "too many distinct words");
  if (m->n == m->cn) {
    size_t nc = m->cn ? m->cn * 2 : 4096;
    size_t *no = realloc(m->off, nc * sizeof *no); if (!no) return lm_error(LM_ERR_NOMEM, "out of memory"); m->off = no;
    uint32_t *nl = realloc(m->len, nc * sizeof *nl); if (!nl) return lm_error(LM_ERR_NOMEM, "out of memory"); m->len = nl;
    int64_t *ncn = realloc(m->count, nc * sizeof *ncn); if (!ncn) return lm_error(LM_ERR_NOMEM, "out of memory"); m->count = ncn;
    m->cn = nc;
  }
  if (m->nb + n > m->cb) {
    size_t nc = m->cb ? m->cb * 2 : 1 << 16;
    while (nc < m->nb + n) nc *= 2;
    uint8_t *nb = realloc(m->bytes, nc); if (!nb) return lm_error(LM_ERR_NOMEM, "out of memory");
    m->bytes = nb; m->cb = nc;
  }
  memcpy(m->bytes + m->nb, s, n);
  m->off[m->n] = m->nb; m->len[m->n] = (uint32_t)n; m->count[m->n] = count;
  m->nb += n;
  m->h[i] = h; m->idx[i] = (uint32_t)m->n;
  m->n++;
  return LM_OK;
}

static lm_status count_piece(const uint8_t *p, size_t n, void *user) { return wm_add(user, p, n, 1); }

/* Counts the pieces of a stretch of text between special tokens. */
static lm_status count_span(lm_tok_encoder *e, const char *s, size_t n, int64_t special, void *m) {
  return special >= 0 ? LM_OK : lm_tok_encoder_pieces(e, s, n, count_piece, m);
}

/* ------------------------------------------------------------ pair statistics */
typedef struct {
  uint64_t *key; int32_t *slot; uint64_t cap, n;      /* pair key -> slot */
  int64_t *count; int32_t **where; int32_t *wn, *wc; uint64_t *skey; uint64_t ns, cs;   /* per slot */
} pairstats;

static inline uint64_t pkey(int32_t a, int32_t b) { return (uint64_t)(uint32_t)a << 32 | (uint32_t)b; }

static void ps_free(pairstats *p) {
  for (uint64_t i = 0; i < p->ns; i++) free(p->where[i]);
  free(p->key); free(p->slot); free(p->count); free(p->where); free(p->wn); free(p->wc); free(p->skey);
  memset(p, 0, sizeof *p);
}

static lm_status ps_rehash(pairstats *p) {
  uint64_t nc = p->cap ? p->cap * 2 : 1 << 16;
  uint64_t *nk = malloc(nc * sizeof *nk);
  int32_t *ns = malloc(nc * sizeof *ns);
  if (!nk || !ns) { free(nk); free(ns); return lm_error(LM_ERR_NOMEM, "out of memory"); }
  memset(nk, 0xff, nc * sizeof *nk);
  for (uint64_t i = 0; i < p->cap; i++) {
    if (p->key[i] == UINT64_MAX) continue;
    uint64_t j = lm_tok_mix64(p->key[i]) & (nc - 1);
    while (nk[j] != UINT64_MAX) j = (j + 1) & (nc - 1);
    nk[j] = p->key[i]; ns[j] = p->slot[i];
  }
  free(p->key); free(p->slot);
  p->key = nk; p->slot = ns; p->cap = nc;
  return LM_OK;
}

/* Slot of pair (a, b), created with count 0 if new; -1 on OOM. */
static int32_t ps_slot(pairstats *p, int32_t a, int32_t b) {
  if ((p->n + 1) * 2 > p->cap && ps_rehash(p)) return -1;
  uint64_t k = pkey(a, b), i = lm_tok_mix64(k) & (p->cap - 1);
  while (p->key[i] != UINT64_MAX) {
    if (p->key[i] == k) return p->slot[i];
    i = (i + 1) & (p->cap - 1);
  }
  if (p->ns == p->cs) {
    uint64_t nc = p->cs ? p->cs * 2 : 1 << 15;
    void *x;
    if (!(x = realloc(p->count, nc * sizeof *p->count))) return -1;
    p->count = x;
    if (!(x = realloc(p->where, nc * sizeof *p->where))) return -1;
    p->where = x;
    if (!(x = realloc(p->wn, nc * sizeof *p->wn))) return -1;
    p->wn = x;
    if (!(x = realloc(p->wc, nc * sizeof *p->wc))) return -1;
    p->wc = x;
    if (!(x = realloc(p->skey, nc * sizeof *p->skey))) return -1;
    p->skey = x;
    p->cs = nc;
  }
  if (p->ns >= INT32_MAX) return -1;
  int32_t s = (int32_t)p->ns++;
  p->count[s] = 0; p->where[s] = NULL; p->wn[s] = p->wc[s] = 0; p->skey[s] = k;
  p->key[i] = k; p->slot[i] = s; p->n++;
  return s;
}

static int ps_add_word(pairstats *p, int32_t s, int32_t w) {
  if (p->wn[s] && p->where[s][p->wn[s] - 1] == w) return 0;
  if (p->wn[s] == p->wc[s]) {
    int32_t nc = p->wc[s] ? p->wc[s] * 2 : 4;
    int32_t *nw = realloc(p->where[s], (size_t)nc * sizeof *nw);
    if (!nw) return -1;
    p->where[s] = nw; p->wc[s] = nc;
  }
  p->where[s][p->wn[s]++] = w;
  return 0;
}

/* ------------------------------------------------------------ max-heap of (count, pair) */
typedef struct { int64_t count; uint64_t key; } hent;
typedef struct { hent *a; size_t n, cap; } maxheap;

static inline int hbetter(const hent *x, const hent *y) {   /* x pops before y */
  return x->count > y->count || (x->count == y->count && x->key < y->key);
}

static int heap_push(maxheap *h, int64_t count, uint64_t key) {
  if (h->n == h->cap) {
    size_t nc = h->cap ? h->cap * 2 : 1 << 16;
    hent *na = realloc(h->a, nc * sizeof *na);
    if (!na) return -1;
    h->a = na; h->cap = nc;
  }
  hent x = {count, key};
  size_t i = h->n++;
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (!hbetter(&x, &h->a[p])) break;
    h->a[i] = h->a[p]; i = p;
  }
  h->a[i] = x;
  return 0;
}

static hent heap_pop(maxheap *h) {
  hent top = h->a[0], x = h->a[--h->n];
  size_t i = 0;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= h->n) break;
    if (c + 1 < h->n && hbetter(&h->a[c + 1], &h->a[c])) c++;
    if (!hbetter(&h->a[c], &x)) break;
    h->a[i] = h->a[c]; i = c;
  }
  if (h->n) h->a[i] = x;
  return top;
}

/* ------------------------------------------------------------ training */
#define TRAIN_CHUNK ((size_t)1 << 20)

lm_status lm_tokenizer_train(lm_tokenizer **out, const char *const *files, int n_files, const lm_bpe_train_opts *o) {
  *out = NULL;
  if (n_files <= 0) return lm_error(LM_ERR_ARG, "tokenizer training needs at least one file");
  int64_t n_special = o->n_special;
  if (o->vocab_size < 256 + n_special || o->vocab_size >= LM_TOK_MAX_VOCAB)
    return lm_error(LM_ERR_ARG, "vocabulary size %lld must be at least 256 + %lld special tokens and below 2^31",
                    (long long)o->vocab_size, (long long)n_special);
  int64_t want_merges = o->vocab_size - 256 - n_special;
  int64_t minf = o->min_frequency > 0 ? o->min_frequency : 1;
  lm_status st = LM_OK;

  /* the base tokenizer: 256 bytes + specials (for the regex and special splitting) */
  lm_tokenizer *base = NULL;
  {
    uint8_t b[256];
    const uint8_t **bytes = calloc((size_t)(256 + n_special), sizeof *bytes);
    size_t *len = calloc((size_t)(256 + n_special), sizeof *len);
    uint8_t *sp = calloc((size_t)(256 + n_special), 1);
    if (!bytes || !len || !sp) st = lm_error(LM_ERR_NOMEM, "out of memory");
    else {
      for (int i = 0; i < 256; i++) { b[i] = (uint8_t)i; bytes[i] = &b[i]; len[i] = 1; }
      for (int64_t k = 0; k < n_special; k++) {
        bytes[256 + k] = (const uint8_t *)o->special[k]; len[256 + k] = strlen(o->special[k]); sp[256 + k] = 1;
        for (int64_t j = 0; j < k; j++)
          if (!strcmp(o->special[j], o->special[k])) st = lm_error(LM_ERR_ARG, "special token \"%s\" is given twice", o->special[k]);
      }
      if (!st) st = lm_bpe_build(&base, 256 + n_special, bytes, len, sp, 0, NULL, NULL, 0, "special tokens");
    }
    free(bytes); free(len); free(sp);
    if (st) return st;
  }

  /* 1. count words, in parallel over chunks */
  lm_mmap *maps = calloc((size_t)n_files, sizeof *maps);
  wordmap words = {0};
  typedef struct { int f; size_t s, e; } span;
  span *spans = NULL; size_t nspan = 0, cspan = 0;
  if (!maps) { lm_tokenizer_free(base); return lm_error(LM_ERR_NOMEM, "out of memory"); }
  size_t total = 0;
  for (int f = 0; f < n_files && !st; f++) {
    st = lm_mmap_open(&maps[f], files[f]);
    if (st) break;
    total += maps[f].len;
    const char *t = maps[f].data;
    for (size_t pos = 0; pos < maps[f].len;) {
      /* cut after a newline so that a cut never splits a piece or a special token */
      size_t end = pos + TRAIN_CHUNK < maps[f].len ? lm_tok_next_cut(t, maps[f].len, pos + TRAIN_CHUNK) : maps[f].len;
      if (nspan == cspan) {
        size_t nc = cspan ? cspan * 2 : 64;
        span *ns = realloc(spans, nc * sizeof *ns);
        if (!ns) { st = lm_error(LM_ERR_NOMEM, "out of memory"); break; }
        spans = ns; cspan = nc;
      }
      spans[nspan++] = (span){f, pos, end};
      pos = end;
    }
  }
  lm_progress prog;
  if (!st && o->progress) lm_progress_start(&prog, "counting words (KiB)", (int64_t)(total >> 10));
  if (!st) {
    int threads = o->threads > 0 ? o->threads : omp_get_max_threads();
    char err[1024] = "";
    size_t done = 0;
#pragma omp parallel num_threads(threads)
    {
      wordmap local = {0};
      lm_tok_encoder *e = NULL;
      lm_status my = lm_tok_encoder_init(&e, base);
#pragma omp for schedule(dynamic, 1)
      for (size_t i = 0; i < nspan; i++) {
        if (my) continue;
        my = lm_tok_encoder_split(e, (const char *)maps[spans[i].f].data + spans[i].s, spans[i].e - spans[i].s, count_span, &local);
        if (o->progress) {
#pragma omp atomic
          done += spans[i].e - spans[i].s;
          if (omp_get_thread_num() == 0) lm_progress_update(&prog, (int64_t)(done >> 10), NULL);
        }
      }
#pragma omp critical(lm_train_merge)
      {
        if (my && !st) { st = my; snprintf(err, sizeof err, "%s", lm_last_error()); }
        for (size_t w = 0; w < local.n && !st; w++) {
          lm_status s2 = wm_add(&words, local.bytes + local.off[w], local.len[w], local.count[w]);
          if (s2) { st = s2; snprintf(err, sizeof err, "%s", lm_last_error()); }
        }
      }
      wm_free(&local);
      lm_tok_encoder_free(e);
    }
    if (st) lm_error(st, "%s", err);
    if (!st && o->progress) lm_progress_finish(&prog, NULL);
  }
  for (int f = 0; f < n_files; f++) lm_mmap_close(&maps[f]);
  free(maps); free(spans);
  lm_tokenizer_free(base);
  if (st) { wm_free(&words); return st; }

  /* 2. words as id sequences; pair counts */
  size_t nw = words.n;
  int32_t *sym = malloc((words.nb + 1) * sizeof *sym);
  pairstats ps = {0};
  maxheap heap = {0};
  /* token table: bytes of each id */
  int64_t cap_tok = 256 + want_merges + n_special;
  uint8_t **tb = calloc((size_t)cap_tok, sizeof *tb);
  size_t *tl = calloc((size_t)cap_tok, sizeof *tl);
  int32_t *ml = malloc(((size_t)want_merges + 1) * sizeof *ml), *mr = malloc(((size_t)want_merges + 1) * sizeof *mr);
  int32_t *touched = NULL; size_t ntouch = 0, ctouch = 0;
  int64_t n_tok = 256, n_merges = 0;
  /* bytes -> id for merged tokens, to reuse an id when two merges spell the same bytes */
  wordmap tokmap = {0};
  if (!sym || !tb || !tl || !ml || !mr) { st = lm_error(LM_ERR_NOMEM, "out of memory"); goto done; }
  for (int i = 0; i < 256; i++) {
    tb[i] = malloc(1); if (!tb[i]) { st = lm_error(LM_ERR_NOMEM, "out of memory"); goto done; }
    tb[i][0] = (uint8_t)i; tl[i] = 1;
  }
  for (size_t w = 0; w < nw; w++)
    for (uint32_t k = 0; k < words.len[w]; k++) sym[words.off[w] + k] = words.bytes[words.off[w] + k];
  for (size_t w = 0; w < nw; w++) {
    int32_t *s = sym + words.off[w];
    for (uint32_t k = 0; k + 1 < words.len[w]; k++) {
      int32_t slot = ps_slot(&ps, s[k], s[k + 1]);
      if (slot < 0 || ps_add_word(&ps, slot, (int32_t)w)) { st = lm_error(LM_ERR_NOMEM, "out of memory"); goto done; }
      ps.count[slot] += words.count[w];
    }
  }
  for (uint64_t s = 0; s < ps.ns; s++)
    if (ps.count[s] >= minf && heap_push(&heap, ps.count[s], ps.skey[s])) { st = lm_error(LM_ERR_NOMEM, "out of memory"); goto done; }

  /* 3. merge */
  if (o->progress) lm_progress_start(&prog, "merges", want_merges);
  while (n_merges < want_merges && heap.n) {
    hent top = heap_pop(&heap);
    int32_t a = (int32_t)(top.key >> 32), b = (int32_t)(uint32_t)top.key;
    int32_t slot = ps_slot(&ps, a, b);
    if (slot < 0) { st = lm_error(LM_ERR_NOMEM, "out of memory"); goto done; }
    int64_t cur = ps.count[slot];
    if (cur != top.count) {
      if (cur < top.count && cur >= minf && heap_push(&heap, cur, top.key)) { st = lm_error(LM_ERR_NOMEM, "out of memory"); goto done; }
      continue;
    }
    if (cur < minf) break;
    /* the new token */
    size_t nl = tl[a] + tl[b];
    uint8_t *nb = malloc(nl);
    if (!nb) { st = lm_error(LM_ERR_NOMEM, "out of memory"); goto done; }
    memcpy(nb, tb[a], tl[a]); memcpy(nb + tl[a], tb[b], tl[b]);
    size_t before = tokmap.n;
    if (wm_add(&tokmap, nb, nl, 0)) { free(nb); st = LM_ERR_NOMEM; goto done; }
    int32_t c;
    if (tokmap.n > before) { c = (int32_t)n_tok; tb[n_tok] = nb; tl[n_tok] = nl; n_tok++; }
    else {   /* same bytes as an earlier merge: reuse its id */
      uint64_t h = whash(nb, nl), i = h & (tokmap.cap - 1);
      while (!(tokmap.h[i] == h && tokmap.len[tokmap.idx[i]] == nl && !memcmp(tokmap.bytes + tokmap.off[tokmap.idx[i]], nb, nl)))
        i = (i + 1) & (tokmap.cap - 1);
      c = 256 + (int32_t)tokmap.idx[i];
      free(nb);
    }
    ml[n_merges] = a; mr[n_merges] = b; n_merges++;
    /* rewrite the words that contain (a, b) */
    ntouch = 0;
    int32_t nwhere = ps.wn[slot];
    int32_t *where = ps.where[slot];
    ps.where[slot] = NULL; ps.wn[slot] = ps.wc[slot] = 0;
    for (int32_t wi = 0; wi < nwhere; wi++) {
      int32_t w = where[wi];
      int32_t *s = sym + words.off[w];
      uint32_t len = words.len[w];
      int has = 0;
      for (uint32_t k = 0; k + 1 < len; k++) if (s[k] == a && s[k + 1] == b) { has = 1; break; }
      if (!has) continue;
      int64_t f = words.count[w];
      for (uint32_t k = 0; k + 1 < len; k++) {
        int32_t sl = ps_slot(&ps, s[k], s[k + 1]);
        if (sl < 0) { free(where); st = LM_ERR_NOMEM; goto done; }
        ps.count[sl] -= f;
      }
      uint32_t o2 = 0;
      for (uint32_t k = 0; k < len; k++) {
        if (k + 1 < len && s[k] == a && s[k + 1] == b) { s[o2++] = c; k++; }
        else s[o2++] = s[k];
      }
      words.len[w] = len = o2;
      for (uint32_t k = 0; k + 1 < len; k++) {
        int32_t sl = ps_slot(&ps, s[k], s[k + 1]);
        if (sl < 0) { free(where); st = LM_ERR_NOMEM; goto done; }
        ps.count[sl] += f;
        if (s[k] == c || s[k + 1] == c) {
          if (ps_add_word(&ps, sl, w)) { free(where); st = LM_ERR_NOMEM; goto done; }
          if (ntouch == ctouch) {
            size_t ncap = ctouch ? ctouch * 2 : 1024;
            int32_t *nt = realloc(touched, ncap * sizeof *nt);
            if (!nt) { free(where); st = LM_ERR_NOMEM; goto done; }
            touched = nt; ctouch = ncap;
          }
          touched[ntouch++] = sl;
        }
      }
    }
    free(where);
    for (size_t k = 0; k < ntouch; k++) {
      int32_t sl = touched[k];
      if (ps.count[sl] >= minf && heap_push(&heap, ps.count[sl], ps.skey[sl])) { st = LM_ERR_NOMEM; goto done; }
    }
    if (o->progress) lm_progress_update(&prog, n_merges, NULL);
  }
  if (o->progress) { prog.total = n_merges; lm_progress_finish(&prog, NULL); }

  /* 4. the tokenizer: bytes, merges, specials */
  for (int64_t k = 0; k < n_special; k++) {
    tl[n_tok + k] = strlen(o->special[k]);
    tb[n_tok + k] = (uint8_t *)lm_strdup(o->special[k]);
    if (!tb[n_tok + k]) { st = LM_ERR_NOMEM; goto done; }
  }
  {
    uint8_t *sp = calloc((size_t)(n_tok + n_special), 1);
    if (!sp) { st = lm_error(LM_ERR_NOMEM, "out of memory"); goto done; }
    for (int64_t k = 0; k < n_special; k++) sp[n_tok + k] = 1;
    st = lm_bpe_build(out, n_tok + n_special, (const uint8_t *const *)tb, tl, sp, n_merges, ml, mr, 0, "trained tokenizer");
    free(sp);
  }
done:
  if (tb) for (int64_t i = 0; i < cap_tok; i++) free(tb[i]);
  free(tb); free(tl); free(ml); free(mr); free(sym); free(touched); free(heap.a);
  ps_free(&ps); wm_free(&words); wm_free(&tokmap);
  return st;
}
