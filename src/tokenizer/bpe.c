/* bpe.c — the byte-level BPE tokenizer: tables, pre-tokenizer, encode, decode.
 *
 * Tables are built once by lm_tok_build (from any file format, see io.c):
 * token bytes by id, a hash map bytes -> id of ordinary tokens, and a hash map
 * (left id, right id) -> (rank, result id) that drives merging. Encoding
 * (lm_tok_encoder_encode) splits the text at special tokens when allowed, runs
 * GPT-2's regex (PCRE2 JIT, match data reused) over each stretch, and turns
 * each piece into ids: a single byte directly, a whole-token piece directly
 * (tiktoken semantics), a recently seen piece from a per-encoder cache, else by
 * BPE: repeatedly merge the adjacent pair of lowest rank, leftmost on ties
 * (linear scans for short pieces, a binary heap over a linked list for long
 * ones, so a megabyte-long word stays O(n log n)).
 *
 * Invalid UTF-8: PCRE2 matches UTF-8 only. When the text is not valid UTF-8,
 * every byte that does not start a valid sequence is read as U+FFFD (a symbol,
 * class [^\s\p{L}\p{N}]) for splitting only; the pieces handed to BPE are the
 * original bytes, so decode(encode(x)) == x for every byte string. On valid
 * UTF-8 this is exactly tiktoken's behaviour.
 *
 * WordPiece tokenizers (t->wp) share the special-token split and the encoder;
 * their ordinary text, decoding and freeing go to wordpiece.c. */
#include <stdlib.h>
#include <string.h>
#include "tokenizer/tokenizer.h"

/* ------------------------------------------------------------ hashing */
static inline uint64_t mix64(uint64_t h) {
  h ^= h >> 33; h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33; h *= 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 33;
  return h;
}

static inline uint64_t hash_bytes(const uint8_t *s, size_t n) {
  uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0x100000001b3ull);
  while (n >= 8) {
    uint64_t w; memcpy(&w, s, 8);
    h = (h ^ w) * 0xbf58476d1ce4e5b9ull; h ^= h >> 29;
    s += 8; n -= 8;
  }
  uint64_t w = 0;
  memcpy(&w, s, n);
  h = (h ^ w) * 0x94d049bb133111ebull;
  return mix64(h);
}

static uint64_t pow2_at_least(uint64_t n) { uint64_t c = 16; while (c < n) c <<= 1; return c; }

int32_t lm_tok_lookup(const lm_tokenizer *t, const uint8_t *s, size_t n) {
  uint64_t h = hash_bytes(s, n), mask = t->vmap_cap - 1, i = h & mask;
  uint32_t tag = (uint32_t)(h >> 32);
  for (;;) {
    int32_t id = t->vmap[i];
    if (id < 0) return -1;
    size_t tn; const uint8_t *tb = lm_tok_bytes(t, id, &tn);
    if (t->vtag[i] == tag && tn == n && memcmp(tb, s, n) == 0) return id;
    i = (i + 1) & mask;
  }
}

void lm_tok_map_put(lm_tokenizer *t, int32_t id) {
  size_t n; const uint8_t *b = lm_tok_bytes(t, id, &n);
  uint64_t hh = hash_bytes(b, n), mask = t->vmap_cap - 1, h = hh & mask;
  uint32_t tag = (uint32_t)(hh >> 32);
  while (t->vmap[h] >= 0) {
    size_t tn; const uint8_t *tb = lm_tok_bytes(t, t->vmap[h], &tn);
    if (t->vtag[h] == tag && tn == n && !memcmp(tb, b, n)) break;
    h = (h + 1) & mask;
  }
  t->vmap[h] = id; t->vtag[h] = tag;
}

static inline int32_t pair_get(const lm_tokenizer *t, int32_t a, int32_t b, int32_t *res) {
  uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
  uint64_t mask = t->pcap - 1, i = mix64(key) & mask;
  for (;;) {
    uint64_t k = t->pkey[i];
    if (k == UINT64_MAX) return INT32_MAX;
    if (k == key) { *res = t->pres[i]; return t->prank[i]; }
    i = (i + 1) & mask;
  }
}

/* Inserts or overwrites (later merges win, as in Hugging Face's BPE). */
static void pair_put(lm_tokenizer *t, int32_t a, int32_t b, int32_t rank, int32_t res) {
  uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
  uint64_t mask = t->pcap - 1, i = mix64(key) & mask;
  while (t->pkey[i] != UINT64_MAX && t->pkey[i] != key) i = (i + 1) & mask;
  t->pkey[i] = key; t->prank[i] = rank; t->pres[i] = res;
}

/* ------------------------------------------------------------ byte <-> symbol */
/* GPT-2's bytes_to_unicode: printable bytes stand for themselves, the other 68
 * (0-32, 127-160, 173) become U+0100.. in byte order. */
static int byte_is_printable(int b) { return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255); }

uint32_t lm_tok_byte_to_cp(uint8_t b) {
  if (byte_is_printable(b)) return b;
  int k = 0;
  for (int i = 0; i < b; i++) k += !byte_is_printable(i);
  return 256 + (uint32_t)k;
}

int lm_tok_cp_to_byte(uint32_t cp) {
  if (cp < 256) return byte_is_printable((int)cp) ? (int)cp : -1;
  if (cp >= 256 + 68) return -1;
  int k = (int)cp - 256;
  for (int b = 0; b < 256; b++)
    if (!byte_is_printable(b) && k-- == 0) return b;
  return -1;
}

char *lm_tok_symbol(const uint8_t *s, size_t n) {
  char *out = lm_xmalloc(2 * n + 1);
  if (!out) return NULL;
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    uint32_t cp = lm_tok_byte_to_cp(s[i]);
    if (cp < 0x80) out[o++] = (char)cp;
    else { out[o++] = (char)(0xC0 | (cp >> 6)); out[o++] = (char)(0x80 | (cp & 0x3F)); }
  }
  out[o] = 0;
  return out;
}

lm_status lm_tok_unsymbol(const char *sym, size_t n, uint8_t **out, size_t *out_n) {
  uint8_t *b = lm_xmalloc(n + 1);
  if (!b) return LM_ERR_NOMEM;
  const uint8_t *s = (const uint8_t *)sym;
  size_t o = 0;
  for (size_t i = 0; i < n;) {
    uint32_t cp; size_t k;
    if (s[i] < 0x80) { cp = s[i]; k = 1; }
    else if ((s[i] & 0xE0) == 0xC0 && i + 1 < n && (s[i + 1] & 0xC0) == 0x80) { cp = (uint32_t)(s[i] & 0x1F) << 6 | (s[i + 1] & 0x3F); k = 2; }
    else { free(b); return lm_error(LM_ERR_FORMAT, "byte %zu is not a byte-level symbol character", i); }
    int byte = lm_tok_cp_to_byte(cp);
    if (byte < 0) { free(b); return lm_error(LM_ERR_FORMAT, "character U+%04X at byte %zu is not a byte-level symbol", cp, i); }
    b[o++] = (uint8_t)byte;
    i += k;
  }
  *out = b; *out_n = o;
  return LM_OK;
}

/* ------------------------------------------------------------ UTF-8 */
/* Length of the valid UTF-8 sequence starting at s (n > 0 bytes available), 0 if invalid. */
static inline size_t utf8_char(const uint8_t *s, size_t n) {
  uint8_t c = s[0];
  if (c < 0x80) return 1;
  if (c < 0xC2) return 0;
  if (c < 0xE0) return n >= 2 && (s[1] & 0xC0) == 0x80 ? 2 : 0;
  if (c < 0xF0) {
    if (n < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80) return 0;
    if (c == 0xE0 && s[1] < 0xA0) return 0;
    if (c == 0xED && s[1] > 0x9F) return 0;
    return 3;
  }
  if (c < 0xF5) {
    if (n < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80) return 0;
    if (c == 0xF0 && s[1] < 0x90) return 0;
    if (c == 0xF4 && s[1] > 0x8F) return 0;
    return 4;
  }
  return 0;
}

size_t lm_utf8_valid_prefix(const uint8_t *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    if (i + 8 <= n) {
      uint64_t w; memcpy(&w, s + i, 8);
      if (!(w & 0x8080808080808080ull)) { i += 8; continue; }
    }
    size_t k = utf8_char(s + i, n - i);
    if (!k) return i;
    i += k;
  }
  return n;
}

/* ------------------------------------------------------------ the pre-tokenizer */
/* GPT-2's pattern. \s is spelled out as Unicode White_Space (what tiktoken's Rust
 * regex means by \s), so the split does not depend on PCRE2's notion of space. */
#define WS "\\t\\n\\x{0B}\\f\\r\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"
static const char GPT2_PATTERN[] =
  "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" WS "\\p{L}\\p{N}]+|[" WS "]+(?![^" WS "])|[" WS "]+";

lm_status lm_tok_regex(pcre2_code **re) {
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
void lm_tokenizer_free(lm_tokenizer *t) {
  if (!t) return;
  free(t->tok_off); free(t->tok_data); free(t->is_special); free(t->vmap); free(t->vtag);
  free(t->merge_l); free(t->merge_r); free(t->merge_res);
  free(t->pkey); free(t->prank); free(t->pres); free(t->special);
  if (t->re) pcre2_code_free(t->re);
  lm_wp_free(t->wp);
  free(t);
}

int64_t lm_tokenizer_vocab_size(const lm_tokenizer *t) { return t->n_vocab; }
int64_t lm_tokenizer_eot(const lm_tokenizer *t) { return t->eot; }

static int cmp_special_len(const void *a, const void *b, void *ctx) {
  const lm_tokenizer *t = ctx;
  int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  uint64_t lx = t->tok_off[x + 1] - t->tok_off[x], ly = t->tok_off[y + 1] - t->tok_off[y];
  if (lx != ly) return lx > ly ? -1 : 1;
  return x < y ? -1 : x > y;
}

lm_status lm_tok_build(lm_tokenizer **out, int64_t n_vocab, const uint8_t *const *tok_bytes, const size_t *tok_len,
                       const uint8_t *specials, int64_t n_merges, const int32_t *merge_l, const int32_t *merge_r,
                       int tiktoken, const char *where) {
  *out = NULL;
  if (n_vocab < 1 || n_vocab >= LM_TOK_MAX_VOCAB)
    return lm_error(LM_ERR_RANGE, "%s: vocabulary size %lld is out of range (1 .. 2^31-1)", where, (long long)n_vocab);
  if (n_merges < 0 || n_merges >= LM_TOK_MAX_VOCAB)
    return lm_error(LM_ERR_RANGE, "%s: %lld merges is out of range", where, (long long)n_merges);
  lm_tokenizer *t = calloc(1, sizeof *t);
  if (!t) return lm_error(LM_ERR_NOMEM, "out of memory");
  lm_status st = LM_OK;
  t->n_vocab = n_vocab; t->tiktoken = tiktoken; t->eot = -1;
  size_t total = 0;
  for (int64_t i = 0; i < n_vocab; i++) total += tok_len[i];
  t->tok_off = lm_xmalloc((size_t)(n_vocab + 1) * sizeof *t->tok_off);
  t->tok_data = lm_xmalloc(total + 1);
  t->is_special = calloc((size_t)n_vocab, 1);
  t->vmap_cap = pow2_at_least((uint64_t)n_vocab * 2);
  t->vmap = lm_xmalloc(t->vmap_cap * sizeof *t->vmap);
  t->vtag = lm_xmalloc(t->vmap_cap * sizeof *t->vtag);
  if (!t->tok_off || !t->tok_data || !t->is_special || !t->vmap || !t->vtag) { st = lm_error(LM_ERR_NOMEM, "out of memory"); goto fail; }
  memset(t->vmap, 0xff, t->vmap_cap * sizeof *t->vmap);
  size_t o = 0;
  for (int64_t i = 0; i < n_vocab; i++) {
    t->tok_off[i] = o;
    if (tok_len[i]) memcpy(t->tok_data + o, tok_bytes[i], tok_len[i]);
    o += tok_len[i];
  }
  t->tok_off[n_vocab] = o;
  for (int i = 0; i < 256; i++) t->byte_id[i] = -1;
  int n_special = 0;
  for (int64_t i = 0; i < n_vocab; i++) {
    size_t n; const uint8_t *b = lm_tok_bytes(t, i, &n);
    if (specials && specials[i]) {
      if (n == 0) { st = lm_error(LM_ERR_FORMAT, "%s: special token %lld is empty", where, (long long)i); goto fail; }
      t->is_special[i] = 1; n_special++;
      continue;
    }
    if (n == 0) { st = lm_error(LM_ERR_FORMAT, "%s: token %lld is empty", where, (long long)i); goto fail; }
    int32_t prev = lm_tok_lookup(t, b, n);
    if (prev >= 0) { st = lm_error(LM_ERR_FORMAT, "%s: tokens %d and %lld have the same bytes", where, prev, (long long)i); goto fail; }
    uint64_t hh = hash_bytes(b, n), mask = t->vmap_cap - 1, h = hh & mask;
    while (t->vmap[h] >= 0) h = (h + 1) & mask;
    t->vmap[h] = (int32_t)i;
    t->vtag[h] = (uint32_t)(hh >> 32);
    if (n == 1) t->byte_id[b[0]] = (int32_t)i;
  }
  for (int i = 0; i < 256; i++)
    if (t->byte_id[i] < 0) { st = lm_error(LM_ERR_FORMAT, "%s: no token for byte 0x%02X (a byte-level BPE needs all 256)", where, i); goto fail; }
  /* specials, longest first (so "<|endoftext|>x" prefers the longer of two overlapping ones) */
  t->special = lm_xmalloc(((size_t)n_special + 1) * sizeof *t->special);
  if (!t->special) { st = LM_ERR_NOMEM; goto fail; }
  for (int64_t i = 0; i < n_vocab; i++) if (t->is_special[i]) t->special[t->n_special++] = (int32_t)i;
  qsort_r(t->special, (size_t)t->n_special, sizeof *t->special, cmp_special_len, t);
  for (int i = 0; i < t->n_special && t->eot < 0; i++) {
    size_t n; const uint8_t *b = lm_tok_bytes(t, t->special[i], &n);
    if (n == 13 && !memcmp(b, "<|endoftext|>", 13)) t->eot = t->special[i];
  }
  for (int i = 0; i < t->n_special && t->eot < 0; i++) {
    size_t n; const uint8_t *b = lm_tok_bytes(t, t->special[i], &n);
    if (n == 4 && !memcmp(b, "</s>", 4)) t->eot = t->special[i];
  }
  /* merges */
  t->n_merges = n_merges;
  size_t mcount = (size_t)n_merges + 1;
  t->merge_l = lm_xmalloc(mcount * sizeof(int32_t));
  t->merge_r = lm_xmalloc(mcount * sizeof(int32_t));
  t->merge_res = lm_xmalloc(mcount * sizeof(int32_t));
  uint64_t npairs = (uint64_t)n_merges;
  if (tiktoken) npairs = total;   /* at most one pair per split point */
  t->pcap = pow2_at_least(npairs * 2 + 16);
  t->pkey = lm_xmalloc(t->pcap * sizeof *t->pkey);
  t->prank = lm_xmalloc(t->pcap * sizeof *t->prank);
  t->pres = lm_xmalloc(t->pcap * sizeof *t->pres);
  if (!t->merge_l || !t->merge_r || !t->merge_res || !t->pkey || !t->prank || !t->pres) { st = LM_ERR_NOMEM; goto fail; }
  memset(t->pkey, 0xff, t->pcap * sizeof *t->pkey);
  uint8_t *cat = NULL; size_t catcap = 0;
  for (int64_t m = 0; m < n_merges; m++) {
    int32_t l = merge_l[m], r = merge_r[m];
    if (l < 0 || r < 0 || l >= n_vocab || r >= n_vocab || t->is_special[l] || t->is_special[r]) {
      free(cat);
      st = lm_error(LM_ERR_FORMAT, "%s: merge %lld names a token that is not an ordinary token", where, (long long)m + 1);
      goto fail;
    }
    size_t ln, rn; const uint8_t *lb = lm_tok_bytes(t, l, &ln), *rb = lm_tok_bytes(t, r, &rn);
    if (ln + rn > catcap) {
      catcap = (ln + rn) * 2;
      uint8_t *nc = realloc(cat, catcap);
      if (!nc) { free(cat); st = lm_error(LM_ERR_NOMEM, "out of memory"); goto fail; }
      cat = nc;
    }
    memcpy(cat, lb, ln); memcpy(cat + ln, rb, rn);
    int32_t res = lm_tok_lookup(t, cat, ln + rn);
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
      if (t->is_special[i]) continue;
      size_t n; const uint8_t *b = lm_tok_bytes(t, i, &n);
      for (size_t k = 1; k < n; k++) {
        int32_t p = lm_tok_lookup(t, b, k);
        if (p < 0) continue;
        int32_t s = lm_tok_lookup(t, b + k, n - k);
        if (s < 0) continue;
        pair_put(t, p, s, (int32_t)i, (int32_t)i);
      }
    }
  }
  if ((st = lm_tok_regex(&t->re))) goto fail;
  *out = t;
  return LM_OK;
fail:
  lm_tokenizer_free(t);
  return st;
}

/* ------------------------------------------------------------ encoder state */
typedef struct { uint64_t h; uint32_t koff, ioff; uint16_t klen, nids; } cache_slot;
typedef struct { int32_t rank, pos, right, lid, rid; } heap_ent;

#define CACHE_SLOTS (1u << 16)
#define CACHE_MAX_KEY 128
#define CACHE_KBYTES (4u << 20)

struct lm_tok_encoder {
  const lm_tokenizer *t;
  pcre2_match_data *md;
  cache_slot *slots; uint32_t used;
  uint8_t *karena; size_t kn;
  uint32_t *iarena; size_t in;
  /* BPE scratch */
  int32_t *sid, *srank, *snext, *sprev; size_t scap;
  heap_ent *heap; size_t hcap;
  /* invalid UTF-8 scratch: the text with U+FFFD for each invalid byte */
  uint8_t *sub; size_t subcap;
  /* special-token search */
  int64_t *spos;
  lm_wp_scratch *wps;   /* WordPiece tokenizers */
};

lm_status lm_tok_encoder_init(lm_tok_encoder **out, const lm_tokenizer *t) {
  lm_tok_encoder *e = calloc(1, sizeof *e);
  if (!e) return lm_error(LM_ERR_NOMEM, "out of memory");
  e->t = t;
  if (t->wp) {   /* WordPiece: no regex, no BPE cache */
    if (!(e->spos = calloc((size_t)t->n_special + 1, sizeof *e->spos))) { free(e); return lm_error(LM_ERR_NOMEM, "out of memory"); }
    *out = e;
    return LM_OK;
  }
  e->md = pcre2_match_data_create(1, NULL);
  e->slots = calloc(CACHE_SLOTS, sizeof *e->slots);
  e->karena = malloc(CACHE_KBYTES);
  e->iarena = malloc(CACHE_KBYTES * sizeof(uint32_t));
  e->spos = calloc((size_t)t->n_special + 1, sizeof *e->spos);
  if (!e->md || !e->slots || !e->karena || !e->iarena || !e->spos) {
    lm_tok_encoder_free(e);
    return lm_error(LM_ERR_NOMEM, "out of memory");
  }
  *out = e;
  return LM_OK;
}

void lm_tok_encoder_free(lm_tok_encoder *e) {
  if (!e) return;
  if (e->md) pcre2_match_data_free(e->md);
  free(e->slots); free(e->karena); free(e->iarena);
  free(e->sid); free(e->srank); free(e->snext); free(e->sprev); free(e->heap);
  free(e->sub); free(e->spos);
  lm_wp_scratch_free(e->wps);
  free(e);
}

static lm_status ensure_ids(uint32_t **ids, size_t *n, size_t *cap, size_t extra) {
  if (*n + extra <= *cap) return LM_OK;
  size_t nc = *cap ? *cap : 1024;
  while (nc < *n + extra) nc *= 2;
  uint32_t *p = realloc(*ids, nc * sizeof *p);
  if (!p) return lm_error(LM_ERR_NOMEM, "out of memory (%zu token ids)", nc);
  *ids = p; *cap = nc;
  return LM_OK;
}

static lm_status ensure_scratch(lm_tok_encoder *e, size_t n) {
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

static lm_status heap_push(lm_tok_encoder *e, size_t *hn, heap_ent x) {
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

/* BPE of a piece of n >= 2 bytes; appends ids at out (room for n). Returns the count, or -1 on OOM. */
static int64_t bpe_piece(lm_tok_encoder *e, const uint8_t *p, size_t n, uint32_t *out) {
  const lm_tokenizer *t = e->t;
  if (ensure_scratch(e, n)) return -1;
  int32_t *id = e->sid, *rank = e->srank, res = 0;
  if (n <= 64) {
    /* short piece: arrays and linear scans (what tiktoken does) */
    size_t m = n;
    for (size_t i = 0; i < n; i++) id[i] = t->byte_id[p[i]];
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
    id[i] = t->byte_id[p[i]];
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

static void cache_clear(lm_tok_encoder *e) {
  memset(e->slots, 0, CACHE_SLOTS * sizeof *e->slots);
  e->used = 0; e->kn = 0; e->in = 0;
}

/* Encodes one piece (ordinary text) and appends its ids. */
static lm_status encode_piece(lm_tok_encoder *e, const uint8_t *p, size_t n, uint32_t **ids, size_t *nids, size_t *cap) {
  const lm_tokenizer *t = e->t;
  lm_status st = ensure_ids(ids, nids, cap, n);
  if (st) return st;
  uint32_t *out = *ids + *nids;
  if (n == 1) { out[0] = (uint32_t)t->byte_id[p[0]]; (*nids)++; return LM_OK; }
  if (t->tiktoken) {
    int32_t id = lm_tok_lookup(t, p, n);
    if (id >= 0) { out[0] = (uint32_t)id; (*nids)++; return LM_OK; }
  }
  uint64_t h = 0; uint32_t slot = 0;
  int cacheable = n <= CACHE_MAX_KEY;
  if (cacheable) {
    h = hash_bytes(p, n) | 1;
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
static lm_status for_pieces(lm_tok_encoder *e, const uint8_t *s, size_t n, const uint8_t *orig, size_t orig_n,
                            lm_tok_piece_fn fn, void *user) {
  const lm_tokenizer *t = e->t;
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
          size_t c = utf8_char(orig + opos, orig_n - opos);
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

lm_status lm_tok_encoder_pieces(lm_tok_encoder *e, const char *text, size_t len, lm_tok_piece_fn fn, void *user) {
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
    size_t c = utf8_char(s + i, len - i);
    if (c) { memcpy(e->sub + o, s + i, c); o += c; i += c; }
    else { e->sub[o++] = 0xEF; e->sub[o++] = 0xBF; e->sub[o++] = 0xBD; i++; }
  }
  return for_pieces(e, e->sub, o, s, len, fn, user);
}

typedef struct { lm_tok_encoder *e; uint32_t **ids; size_t *n, *cap; } piece_ctx;

static lm_status piece_cb(const uint8_t *p, size_t n, void *user) {
  piece_ctx *c = user;
  return encode_piece(c->e, p, n, c->ids, c->n, c->cap);
}

static lm_status encode_ordinary(lm_tok_encoder *e, const char *text, size_t len, uint32_t **ids, size_t *n, size_t *cap) {
  if (!len) return LM_OK;
  const lm_tokenizer *t = e->t;
  if (t->wp) return lm_wp_encode(t, &e->wps, text, len, ids, n, cap);
  if (t->n_merges == 0) {   /* no merges: one id per byte, the split does not matter */
    lm_status st = ensure_ids(ids, n, cap, len);
    if (st) return st;
    for (size_t i = 0; i < len; i++) (*ids)[(*n)++] = (uint32_t)t->byte_id[(uint8_t)text[i]];
    return LM_OK;
  }
  piece_ctx c = {e, ids, n, cap};
  return lm_tok_encoder_pieces(e, text, len, piece_cb, &c);
}

lm_status lm_tok_encoder_encode(lm_tok_encoder *e, const char *text, size_t len, int allow_special,
                                uint32_t **ids, size_t *n, size_t *cap) {
  const lm_tokenizer *t = e->t;
  if (!allow_special || t->n_special == 0) return encode_ordinary(e, text, len, ids, n, cap);
  /* next occurrence of each special at or after pos; -1: none left */
  for (int k = 0; k < t->n_special; k++) e->spos[k] = -2;
  size_t pos = 0;
  while (pos < len) {
    int64_t best = -1; int bk = -1;
    for (int k = 0; k < t->n_special; k++) {
      if (e->spos[k] == -1) continue;
      if (e->spos[k] < (int64_t)pos) {
        size_t sn; const uint8_t *sb = lm_tok_bytes(t, t->special[k], &sn);
        const char *f = memmem(text + pos, len - pos, sb, sn);
        e->spos[k] = f ? f - text : -1;
        if (!f) continue;
      }
      if (best < 0 || e->spos[k] < best) { best = e->spos[k]; bk = k; }   /* ties: longer first */
    }
    if (best < 0) break;
    lm_status st = encode_ordinary(e, text + pos, (size_t)best - pos, ids, n, cap);
    if (st) return st;
    if ((st = ensure_ids(ids, n, cap, 1))) return st;
    (*ids)[(*n)++] = (uint32_t)t->special[bk];
    pos = (size_t)best + (t->tok_off[t->special[bk] + 1] - t->tok_off[t->special[bk]]);
  }
  return encode_ordinary(e, text + pos, len - pos, ids, n, cap);
}

/* ------------------------------------------------------------ public encode / decode */
lm_status lm_tokenizer_encode(const lm_tokenizer *tok, const char *text, size_t len, int allow_special,
                              uint32_t **ids, size_t *n_ids) {
  *ids = NULL; *n_ids = 0;
  if (!tok || (!text && len)) return lm_error(LM_ERR_ARG, "lm_tokenizer_encode: NULL argument");
  lm_tok_encoder *e;
  lm_status st = lm_tok_encoder_init(&e, tok);
  if (st) return st;
  size_t cap = 0;
  uint32_t *out = NULL;
  st = ensure_ids(&out, n_ids, &cap, len / 3 + 16);
  if (!st) st = lm_tok_encoder_encode(e, text, len, allow_special, &out, n_ids, &cap);
  lm_tok_encoder_free(e);
  if (st) { free(out); *n_ids = 0; return st; }
  *ids = out;
  return LM_OK;
}

lm_status lm_tokenizer_decode(const lm_tokenizer *tok, const uint32_t *ids, size_t n_ids, char **text, size_t *len) {
  *text = NULL; *len = 0;
  if (!tok || (!ids && n_ids)) return lm_error(LM_ERR_ARG, "lm_tokenizer_decode: NULL argument");
  if (tok->wp) return lm_wp_decode(tok, ids, n_ids, text, len);
  size_t total = 0;
  for (size_t i = 0; i < n_ids; i++) {
    if ((int64_t)ids[i] >= tok->n_vocab)
      return lm_error(LM_ERR_RANGE, "token id %u at position %zu is out of range (vocabulary size %lld)", ids[i], i,
                      (long long)tok->n_vocab);
    total += tok->tok_off[ids[i] + 1] - tok->tok_off[ids[i]];
  }
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
