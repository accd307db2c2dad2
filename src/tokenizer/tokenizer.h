/* tokenizer.h — lmkit's tokenizer interface and the internals its models share
 * (docs/tokenizer.md, "How the tokenizer is organised").
 *
 * A tokenizer is a vocabulary plus a model. The vocabulary is the same for
 * every model: the bytes of each token id, a bytes -> id map of ordinary
 * tokens, the special tokens (matched as whole strings, longest first) and the
 * end-of-text id. The model turns a stretch of ordinary text into ids and ids
 * back into text, and reads and writes its own files: byte-level BPE (bpe.c)
 * and BERT's WordPiece (wordpiece.c) fill the table of functions
 * lm_tok_model_ops and keep their own data in t->model. tokenizer.c holds the
 * rest: the registry that picks the model from the files, the vocabulary,
 * cutting text at special tokens, the per-thread encoder, tokenizer.json's
 * shared parts (added_tokens, the header), and the public lm_tokenizer_*
 * functions, which dispatch through t->ops. No model file knows another; each
 * includes only this header.
 *
 * Encoding state that is not read-only (the model's caches and scratch, the
 * special-token search) lives in an lm_tok_encoder, one per thread, so one
 * lm_tokenizer can be shared by many threads. */
#ifndef LM_TOKENIZER_H
#define LM_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "base/base.h"

#define LM_TOK_MAX_VOCAB ((int64_t)1 << 31)   /* ids are < 2^31 */

struct cJSON;
typedef struct lm_tok_encoder lm_tok_encoder;

/* ---- the model interface ---- */
typedef struct lm_tok_model_ops {
  const char *type;   /* tokenizer.json's model.type: "BPE", "WordPiece" */
  const char *what;   /* for messages: "byte-level BPE" */
  int byte_level;     /* 1: tokens are raw bytes (decoding concatenates them; shown as GPT-2's
                         byte-level symbols); 0: tokens are text */
  /* Builds a tokenizer from a parsed tokenizer.json whose model.type is `type`; `name` (the file)
   * goes into errors. */
  lm_status (*from_json)(lm_tokenizer **out, const struct cJSON *root, const char *name);
  /* Optional: applies settings kept next to tokenizer.json in a directory (tokenizer_config.json). */
  lm_status (*dir_config)(lm_tokenizer *t, const char *dir);
  /* Per-encoder state (caches, scratch): created with each lm_tok_encoder, e->state. */
  lm_status (*state_new)(void **state, const lm_tokenizer *t);
  void (*state_free)(void *state);
  /* Appends the ids of ordinary text (special tokens are cut out before; len > 0). A model without
   * encode_word gets the pre-tokenized pieces of tokenizer.json's pipeline here too. */
  lm_status (*encode)(lm_tok_encoder *e, const char *text, size_t len, uint32_t **ids, size_t *n, size_t *cap);
  /* Optional: appends the ids of one piece the tokenizer.json pipeline has normalized and
   * pre-tokenized (pipeline.h), when that differs from encode (which pre-tokenizes itself). */
  lm_status (*encode_word)(lm_tok_encoder *e, const char *piece, size_t len, uint32_t **ids, size_t *n, size_t *cap);
  /* Text of ids, each already checked to be < n_vocab; *text malloc'ed and NUL-terminated. */
  lm_status (*decode)(const lm_tokenizer *t, const uint32_t *ids, size_t n, char **text, size_t *len);
  /* Adds tokenizer.json's model-specific keys (normalizer, pre_tokenizer, post_processor,
   * decoder, model) to root, which holds the shared ones (lm_tok_json_root). */
  lm_status (*to_json)(const lm_tokenizer *t, struct cJSON *root);
  /* Writes all the model's files into dir (which exists), each atomically. */
  lm_status (*save)(const lm_tokenizer *t, const char *dir);
  void (*free)(void *model);
} lm_tok_model_ops;

extern const lm_tok_model_ops lm_bpe_ops, lm_wordpiece_ops, lm_unigram_ops;

struct lm_tokenizer {
  const lm_tok_model_ops *ops;   /* the model */
  void *model;                   /* its data (bpe.c, wordpiece.c) */
  struct lm_tok_pipe *pipe;      /* tokenizer.json's normalizer .. decoder (pipeline.h); NULL: the model's own */
  int byte_level;                /* tokens are raw bytes (ops->byte_level, unless the model says otherwise) */
  int64_t n_vocab;               /* ids are 0 .. n_vocab-1 */
  uint64_t *tok_off;             /* (n_vocab+1) offsets into tok_data: the bytes of each id */
  uint8_t *tok_data;
  uint8_t *is_special;           /* (n_vocab) 1 for special (added) tokens */
  /* ordinary tokens: bytes -> id (open addressing, -1 empty) */
  int32_t *vmap; uint32_t *vtag; uint64_t vmap_cap;   /* vtag: hash bits, to skip most compares */
  int n_special; int32_t *special;   /* special token ids, longest first */
  int64_t eot;
};

/* ---- the vocabulary (tokenizer.c) ---- */
/* Creates a tokenizer of model `ops` with the vocabulary tok_bytes[i]/tok_len[i], i < n_vocab;
 * specials[i] (may be NULL) flags special tokens (3: special and also an ordinary token of the
 * model's vocabulary, as tokenizer.json's added tokens that are in model.vocab). strict: an empty ordinary token, or two with
 * the same bytes, is an error (BPE); else an empty token is one no text reaches and the later of
 * two equal tokens is the one looked up (vocab.txt). eot: <|endoftext|>, else </s>, else -1.
 * t->model is the caller's to set. `where` names the source in errors. Takes no ownership. */
lm_status lm_tok_new(lm_tokenizer **out, const lm_tok_model_ops *ops, int64_t n_vocab, const uint8_t *const *tok_bytes,
                     const size_t *tok_len, const uint8_t *specials, int strict, const char *where);
static inline const uint8_t *lm_tok_bytes(const lm_tokenizer *t, int64_t id, size_t *n) {
  *n = (size_t)(t->tok_off[id + 1] - t->tok_off[id]);
  return t->tok_data + t->tok_off[id];
}
/* The bytes of ids joined (malloc'ed, NUL-terminated): the decode of a model whose tokens are
 * their text (the pipeline's decoders do the rest). */
static inline lm_status lm_tok_join(const lm_tokenizer *t, const uint32_t *ids, size_t n, char **text, size_t *len) {
  size_t total = 0;
  for (size_t i = 0; i < n; i++) total += (size_t)(t->tok_off[ids[i] + 1] - t->tok_off[ids[i]]);
  char *o = lm_xmalloc(total + 1);
  if (!o) return LM_ERR_NOMEM;
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    size_t m; const uint8_t *b = lm_tok_bytes(t, ids[i], &m);
    memcpy(o + k, b, m); k += m;
  }
  o[k] = 0;
  *text = o; *len = k;
  return LM_OK;
}
static inline int lm_tok_byte_level(const lm_tokenizer *t) { return t->byte_level; }
/* The id of a token given as its text: a special token ([CLS], [SEP], [MASK], [PAD],
 * <|endoftext|>, ...) first, else an ordinary token with exactly these bytes; -1 if absent. */
int64_t lm_tokenizer_token_id(const lm_tokenizer *t, const char *token);

static inline uint64_t lm_tok_pow2_at_least(uint64_t n) { uint64_t c = 16; while (c < n) c <<= 1; return c; }
static inline uint64_t lm_tok_mix64(uint64_t h) {
  h ^= h >> 33; h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33; h *= 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 33;
  return h;
}
static inline uint64_t lm_tok_hash(const uint8_t *s, size_t n) {
  uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0x100000001b3ull);
  while (n >= 8) {
    uint64_t w; memcpy(&w, s, 8);
    h = (h ^ w) * 0xbf58476d1ce4e5b9ull; h ^= h >> 29;
    s += 8; n -= 8;
  }
  uint64_t w = 0;
  memcpy(&w, s, n);
  h = (h ^ w) * 0x94d049bb133111ebull;
  return lm_tok_mix64(h);
}
/* Looks up an ordinary token by its bytes; -1 if absent. */
static inline int32_t lm_tok_lookup(const lm_tokenizer *t, const uint8_t *s, size_t n) {
  uint64_t h = lm_tok_hash(s, n), mask = t->vmap_cap - 1, i = h & mask;
  uint32_t tag = (uint32_t)(h >> 32);
  for (;;) {
    int32_t id = t->vmap[i];
    if (id < 0) return -1;
    size_t tn; const uint8_t *tb = lm_tok_bytes(t, id, &tn);
    if (t->vtag[i] == tag && tn == n && memcmp(tb, s, n) == 0) return id;
    i = (i + 1) & mask;
  }
}

/* ---- UTF-8 (tokenizer.c) ---- */
/* Length of the valid UTF-8 sequence starting at s (n > 0 bytes available), 0 if invalid. */
static inline size_t lm_utf8_char(const uint8_t *s, size_t n) {
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
/* Length of the longest prefix of s that is valid UTF-8. */
size_t lm_utf8_valid_prefix(const uint8_t *s, size_t n);

/* ---- encoding state, one per thread (tokenizer.c) ---- */
struct lm_tok_encoder {
  const lm_tokenizer *t;
  void *state;       /* the model's (ops->state_new) */
  void *pstate;      /* the pipeline's (t->pipe) */
  int64_t *spos;     /* next occurrence of each special token */
};
lm_status lm_tok_encoder_init(lm_tok_encoder **out, const lm_tokenizer *t);
void lm_tok_encoder_free(lm_tok_encoder *e);
/* Appends the ids of text to (*ids, *n, *cap) (a growable malloc'ed array); flags: LM_ENCODE_*
 * (lmkit.h; 1 = LM_ENCODE_SPECIAL). */
lm_status lm_tok_encoder_encode(lm_tok_encoder *e, const char *text, size_t len, int flags,
                                uint32_t **ids, size_t *n, size_t *cap);
/* Cuts text at the special tokens (earliest first, longest on ties) and calls fn for each
 * stretch of ordinary text (special = -1; possibly empty) and each special token (its id). */
typedef lm_status (*lm_tok_span_fn)(lm_tok_encoder *e, const char *s, size_t n, int64_t special, void *user);
lm_status lm_tok_encoder_split(lm_tok_encoder *e, const char *text, size_t len, lm_tok_span_fn fn, void *user);
/* Makes room for `extra` more ids in (*ids, *n, *cap). */
lm_status lm_tok_reserve(uint32_t **ids, size_t *n, size_t *cap, size_t extra);

/* ---- tokenizer.json's shared parts and files (tokenizer.c) ---- */
/* Parses JSON text; `name` (the file) and the line and column go into errors. */
lm_status lm_tok_parse_json(struct cJSON **out, const char *text, size_t len, const char *name);
/* 1 and *v if x is an integer number in lo..hi. */
int lm_tok_json_int(const struct cJSON *x, int64_t lo, int64_t hi, int64_t *v);
/* tokenizer.json's "added_tokens" (absent or null: none), each checked to be
 * {"id": integer below 2^31, "content": non-empty string}; *out malloc'ed (NULL if none). */
typedef struct { int64_t id; const char *content; } lm_tok_added;
lm_status lm_tok_json_added(const struct cJSON *root, const char *name, lm_tok_added **out, int *n);
/* A tokenizer.json object with the shared keys: version, truncation, padding, added_tokens
 * (every special token); NULL when out of memory. */
struct cJSON *lm_tok_json_root(const lm_tokenizer *t);
/* One added_tokens entry: a special token matched as written (lmkit's trainers write only these). */
struct cJSON *lm_tok_added_json(int64_t id, const char *content);
/* Parses tokenizer.json text; `name` (the file) goes into error messages. */
lm_status lm_tokenizer_from_json(lm_tokenizer **out, const char *json, size_t len, const char *name);
/* Serialises as tokenizer.json text (malloc'ed). */
lm_status lm_tokenizer_to_json(const lm_tokenizer *t, char **json, size_t *len);
/* Writes dir/file atomically. */
lm_status lm_tok_write(const char *dir, const char *file, const char *text, size_t len);
/* Writes dir/tokenizer.json (lm_tokenizer_to_json) atomically: a model's save, or its first step. */
static inline lm_status lm_tok_write_json(const lm_tokenizer *t, const char *dir) {
  char *json; size_t len;
  lm_status st = lm_tokenizer_to_json(t, &json, &len);
  if (st) return st;
  st = lm_tok_write(dir, "tokenizer.json", json, len);
  free(json);
  return st;
}

/* ---- byte-level BPE (bpe.c) ---- */
/* Builds a BPE tokenizer from token byte strings and merges. tok_bytes[i]/tok_len[i] for
 * every id < n_vocab; specials[i] flags special tokens; merges are (left, right) id
 * pairs in rank order whose concatenation must be a token. tiktoken: OpenAI's rank rule
 * (docs/tokenizer.md). `where` names the source in error messages. Takes no ownership. */
lm_status lm_bpe_build(lm_tokenizer **out, int64_t n_vocab, const uint8_t *const *tok_bytes, const size_t *tok_len,
                       const uint8_t *specials, int64_t n_merges, const int32_t *merge_l, const int32_t *merge_r,
                       int tiktoken, const char *where);
int64_t lm_bpe_n_merges(const lm_tokenizer *t);   /* 0 for another model */
/* Calls fn on each piece of GPT-2's pre-tokenizer (BPE encoders only; no special-token handling).
 * Invalid UTF-8 bytes are read as U+FFFD for splitting; the pieces are the original bytes. */
typedef lm_status (*lm_tok_piece_fn)(const uint8_t *piece, size_t n, void *user);
lm_status lm_tok_encoder_pieces(lm_tok_encoder *e, const char *text, size_t len, lm_tok_piece_fn fn, void *user);
/* Encodes bytes as GPT-2's byte-level symbol string (malloc'ed, NUL-terminated). */
char *lm_tok_symbol(const uint8_t *s, size_t n);
/* Parses a vocab.json (or encoder.json) + merges.txt (or vocab.bpe) pair from memory. */
lm_status lm_tokenizer_from_vocab_merges(lm_tokenizer **out, const char *vocab_json, size_t vlen, const char *vname,
                                         const char *merges, size_t mlen, const char *mname, int tiktoken);
/* Loaders of the registry (tokenizer.c): DIR/vocab.json + merges.txt, DIR/encoder.json +
 * vocab.bpe, "gpt2" (OpenAI's files) and "byte". */
lm_status lm_bpe_load_hf(lm_tokenizer **out, const char *dir);
lm_status lm_bpe_load_openai(lm_tokenizer **out, const char *dir);
lm_status lm_bpe_load_gpt2(lm_tokenizer **out);
lm_status lm_bpe_load_byte(lm_tokenizer **out);

/* ---- WordPiece (wordpiece.c) ---- */
/* DIR/vocab.txt (+ DIR/tokenizer_config.json). */
lm_status lm_wp_load_dir(lm_tokenizer **out, const char *dir);

/* ---- training a BPE (train.c) ---- */
typedef struct {
  int64_t vocab_size;              /* total, specials included */
  const char *const *special; int n_special;   /* appended after the merges */
  int64_t min_frequency;           /* a pair must occur at least this often (>= 1) */
  int progress;                    /* progress bar on stderr */
  int threads;                     /* for counting pieces */
} lm_bpe_train_opts;
lm_status lm_tokenizer_train(lm_tokenizer **out, const char *const *files, int n_files, const lm_bpe_train_opts *o);

/* ---- training a SentencePiece-style Unigram model (unigram_train.c) ---- */
typedef struct {
  int64_t vocab_size;              /* total: <unk>, the byte pieces, the learned pieces, the specials */
  const char *const *special; int n_special;   /* added tokens after the pieces */
  int byte_fallback;               /* <0x00>..<0xFF> pieces after <unk>, byte_fallback in tokenizer.json */
  int progress;                    /* progress bar on stderr */
  int threads;                     /* for the E step and the Viterbi passes (<= 0: all cores) */
} lm_unigram_train_opts;
lm_status lm_unigram_train(lm_tokenizer **out, const char *const *files, int n_files, const lm_unigram_train_opts *o);

/* ---- corpora (files.c) ---- */
/* Tokenizes files in parallel (threads <= 0: all cores): one file = one document; the
 * ids of all documents are concatenated with the end-of-text id after each (when the
 * tokenizer has one). Special-token text in files is encoded as ordinary text unless
 * allow_special. *ids is malloc'ed. */
lm_status lm_tokenize_files_ex(const lm_tokenizer *tok, const char *const *files, int n_files, int threads,
                               int allow_special, int progress, uint32_t **ids, uint64_t *n);
lm_status lm_tokenize_files(const lm_tokenizer *tok, const char *const *files, int n_files, int threads,
                            uint32_t **ids, uint64_t *n);
/* The next place at or after `from` where text can be cut without changing its
 * encoding: p with text[p-1] == '\n' between printable non-space ASCII bytes; len if none. */
size_t lm_tok_next_cut(const char *text, size_t len, size_t from);
/* Encodes a buffer in parallel: split at safe places (a newline between two
 * printable ASCII bytes) so the ids equal those of a single-threaded encode. */
lm_status lm_tokenize_buffer(const lm_tokenizer *tok, const char *text, size_t len, int threads, int allow_special,
                             uint32_t **ids, size_t *n);

#endif
