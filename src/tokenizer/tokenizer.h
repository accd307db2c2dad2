/* tokenizer.h — internals of lmkit's tokenizers (docs/tokenizer.md): byte-level
 * BPE (bpe.c, io.c, train.c) and BERT's WordPiece (wordpiece.c).
 *
 * A tokenizer is a table of tokens (id -> bytes), a table of merges (pair of
 * ids -> rank and result id), a set of special tokens matched as whole
 * strings, and GPT-2's regex pre-tokenizer (PCRE2, JIT). Encoding splits the
 * text at special tokens (when allowed), pre-tokenizes each stretch into
 * pieces, and runs BPE on each piece's bytes: repeatedly merge the adjacent
 * pair of lowest rank (leftmost on ties). Two rank semantics exist:
 *   - Hugging Face (tokenizer.json, vocab.json + merges.txt, our own files):
 *     a pair merges only if it is listed in the merges, at the merge's rank;
 *   - tiktoken (encoder.json + vocab.bpe and "gpt2"): a pair merges if its
 *     concatenation is a token, at that token's rank (= id), and a piece that
 *     is itself a token is taken whole. This is OpenAI's GPT-2 encoding.
 * Encoding state that is not read-only (PCRE2 match data, the per-piece
 * cache, scratch buffers) lives in an lm_tok_encoder, one per thread, so one
 * lm_tokenizer can be shared by many threads.
 *
 * A WordPiece tokenizer (t->wp != NULL) shares the token table, the bytes -> id
 * map of ordinary tokens, the special tokens and the encoder state; it has no
 * merges, byte ids or regex, and encode/decode/save dispatch to wordpiece.c. */
#ifndef LM_TOKENIZER_H
#define LM_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>
#include "base/base.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#define LM_TOK_MAX_VOCAB ((int64_t)1 << 31)   /* ids are < 2^31 */

typedef struct lm_wordpiece lm_wordpiece;       /* BERT settings (wordpiece.c) */
typedef struct lm_wp_scratch lm_wp_scratch;     /* WordPiece encoding buffers, one per encoder */
struct cJSON;

struct lm_tokenizer {
  int64_t n_vocab;          /* ids are 0 .. n_vocab-1 */
  uint64_t *tok_off;        /* (n_vocab+1) offsets into tok_data: the bytes of each id */
  uint8_t *tok_data;
  uint8_t *is_special;      /* (n_vocab) 1 for special (added) tokens */
  /* ordinary tokens: bytes -> id (open addressing, -1 empty) */
  int32_t *vmap; uint32_t *vtag; uint64_t vmap_cap;   /* vtag: hash bits, to skip most compares */
  int32_t byte_id[256];     /* id of each single byte */
  /* merges in rank order (left id, right id) -> result id */
  int64_t n_merges;
  int32_t *merge_l, *merge_r, *merge_res;
  /* pair table: key (l<<32|r) -> rank, result id */
  uint64_t *pkey; int32_t *prank, *pres; uint64_t pcap;
  int tiktoken;             /* 1: tiktoken rank semantics (see above) */
  /* special tokens (ids), longest first */
  int n_special; int32_t *special;
  int64_t eot;
  pcre2_code *re;
  lm_wordpiece *wp;         /* non-NULL: a WordPiece (BERT) tokenizer */
};

/* ---- construction (bpe.c) ---- */
/* Builds a tokenizer from token byte strings and merges. tok_bytes[i]/tok_len[i] for
 * every id < n_vocab; specials[i] flags special tokens; merges are (left, right) id
 * pairs in rank order whose concatenation must be a token. `where` names the source
 * in error messages. Takes no ownership. */
lm_status lm_tok_build(lm_tokenizer **out, int64_t n_vocab, const uint8_t *const *tok_bytes, const size_t *tok_len,
                       const uint8_t *specials, int64_t n_merges, const int32_t *merge_l, const int32_t *merge_r,
                       int tiktoken, const char *where);
/* Looks up an ordinary token by its bytes; -1 if absent. */
int32_t lm_tok_lookup(const lm_tokenizer *t, const uint8_t *s, size_t n);
/* Adds ordinary token `id` to the bytes -> id map (which has room); a token with the
 * same bytes already there is replaced (later ids win). */
void lm_tok_map_put(lm_tokenizer *t, int32_t id);
/* The id of a token given as its text: a special token ([CLS], [SEP], [MASK], [PAD],
 * <|endoftext|>, ...) first, else an ordinary token with exactly these bytes; -1 if absent. */
int64_t lm_tokenizer_token_id(const lm_tokenizer *t, const char *token);
static inline const uint8_t *lm_tok_bytes(const lm_tokenizer *t, int64_t id, size_t *n) {
  *n = (size_t)(t->tok_off[id + 1] - t->tok_off[id]);
  return t->tok_data + t->tok_off[id];
}

/* GPT-2's reversible byte -> printable character map (bytes_to_unicode). */
uint32_t lm_tok_byte_to_cp(uint8_t b);
/* Inverse; -1 if cp is not a mapped character. */
int lm_tok_cp_to_byte(uint32_t cp);
/* Encodes bytes as the byte-level symbol string (malloc'ed, NUL-terminated). */
char *lm_tok_symbol(const uint8_t *s, size_t n);
/* Decodes a byte-level symbol string to bytes (*out malloc'ed); LM_ERR_FORMAT if it is not one. */
lm_status lm_tok_unsymbol(const char *sym, size_t n, uint8_t **out, size_t *out_n);

/* ---- the pre-tokenizer ---- */
/* Compiles GPT-2's regex (PCRE2, UTF + UCP, JIT). */
lm_status lm_tok_regex(pcre2_code **re);
/* Length of the longest prefix of s that is valid UTF-8. */
size_t lm_utf8_valid_prefix(const uint8_t *s, size_t n);

/* ---- encoding state, one per thread ---- */
typedef struct lm_tok_encoder lm_tok_encoder;
lm_status lm_tok_encoder_init(lm_tok_encoder **out, const lm_tokenizer *t);
void lm_tok_encoder_free(lm_tok_encoder *e);
/* Appends the ids of text to (*ids, *n, *cap) (a growable malloc'ed array). */
lm_status lm_tok_encoder_encode(lm_tok_encoder *e, const char *text, size_t len, int allow_special,
                                uint32_t **ids, size_t *n, size_t *cap);
/* Calls fn on each pre-tokenized piece of text (no special-token handling). Invalid
 * UTF-8 bytes are read as U+FFFD for splitting; the pieces are the original bytes. */
typedef lm_status (*lm_tok_piece_fn)(const uint8_t *piece, size_t n, void *user);
lm_status lm_tok_encoder_pieces(lm_tok_encoder *e, const char *text, size_t len, lm_tok_piece_fn fn, void *user);

/* ---- i/o (io.c) ---- */
/* Parses tokenizer.json text; `name` (the file) goes into error messages. */
lm_status lm_tokenizer_from_json(lm_tokenizer **out, const char *json, size_t len, const char *name);
/* Parses a vocab.json (or encoder.json) + merges.txt (or vocab.bpe) pair from memory. */
lm_status lm_tokenizer_from_vocab_merges(lm_tokenizer **out, const char *vocab_json, size_t vlen, const char *vname,
                                         const char *merges, size_t mlen, const char *mname, int tiktoken);
/* The directory holding OpenAI's GPT-2 files (encoder.json, vocab.bpe), or NULL with the error set. */
char *lm_tokenizer_gpt2_dir(void);
/* Serialises as tokenizer.json text (malloc'ed). */
lm_status lm_tokenizer_to_json(const lm_tokenizer *t, char **json, size_t *len);

/* ---- WordPiece (wordpiece.c) ---- */
/* vocab.txt text (`name` in errors); `dir`, if not NULL, may hold tokenizer_config.json. */
lm_status lm_wp_from_vocab_txt(lm_tokenizer **out, const char *text, size_t len, const char *name, const char *dir);
/* DIR/vocab.txt (+ DIR/tokenizer_config.json). */
lm_status lm_wp_load_dir(lm_tokenizer **out, const char *dir);
/* A parsed tokenizer.json whose model.type is "WordPiece". */
lm_status lm_wp_from_json(lm_tokenizer **out, const struct cJSON *root, const char *name);
/* Applies DIR/tokenizer_config.json, if present, over a tokenizer.json's settings
 * (do_lower_case, strip_accents, tokenize_chinese_chars win, as in transformers). */
lm_status lm_wp_dir_config(lm_tokenizer *t, const char *dir);
/* Appends the ids of ordinary text (no special-token matching); *s is created on first use. */
lm_status lm_wp_encode(const lm_tokenizer *t, lm_wp_scratch **s, const char *text, size_t len, uint32_t **ids,
                       size_t *n, size_t *cap);
lm_status lm_wp_decode(const lm_tokenizer *t, const uint32_t *ids, size_t n, char **text, size_t *len);
lm_status lm_wp_to_json(const lm_tokenizer *t, char **json, size_t *len);
/* Writes vocab.txt, tokenizer.json and tokenizer_config.json, each atomically. */
lm_status lm_wp_save(const lm_tokenizer *t, const char *dir);
void lm_wp_free(lm_wordpiece *wp);
void lm_wp_scratch_free(lm_wp_scratch *s);

/* ---- training (train.c) ---- */
typedef struct {
  int64_t vocab_size;              /* total, specials included */
  const char *const *special; int n_special;   /* appended after the merges */
  int64_t min_frequency;           /* a pair must occur at least this often (>= 1) */
  int progress;                    /* progress bar on stderr */
  int threads;                     /* for counting pieces */
} lm_bpe_train_opts;
lm_status lm_tokenizer_train(lm_tokenizer **out, const char *const *files, int n_files, const lm_bpe_train_opts *o);

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
