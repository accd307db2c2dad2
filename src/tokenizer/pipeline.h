/* pipeline.h — tokenizer.json's pipeline around the model, as Hugging Face
 * tokenizers runs it (docs/tokenizer.md, "The tokenizer.json pipeline"):
 *
 *   text ─► added tokens (raw) ─► normalizer ─► added tokens (normalized) ─► pre-tokenizer ─► model ─► post-processor
 *   ids  ─► tokens' text ─► decoder ─► text
 *
 * Each stage is a list of components read from tokenizer.json by a table
 * (type name -> accepted keys, parser), Sequence flattened into the list:
 * normalizers.c, pretokenizers.c, decoders.c; patterns (Oniguruma regexes
 * translated to PCRE2, literal strings, character classes) in pattern.c; the
 * added tokens, post-processors and the flow in pipeline.c. A type, key or
 * value lmkit does not implement is an error naming the file and JSON path.
 *
 * Per-thread state (regex match data, scratch buffers) lives in the encoder
 * (lm_tok_encoder.pstate), so one pipeline serves many threads. */
#ifndef LM_TOK_PIPELINE_H
#define LM_TOK_PIPELINE_H

#include "tokenizer/tokenizer.h"
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

struct cJSON;

/* ---- growable byte buffers ---- */
typedef struct { char *p; size_t n, cap; } lm_tok_buf;
lm_status lm_tok_buf_reserve(lm_tok_buf *b, size_t extra);
static inline lm_status lm_tok_buf_put(lm_tok_buf *b, const void *s, size_t n) {
  if (b->n + n > b->cap) { lm_status st = lm_tok_buf_reserve(b, n); if (st) return st; }
  if (n) memcpy(b->p + b->n, s, n);
  b->n += n;
  return LM_OK;
}

/* ---- UTF-8 and Unicode properties (pattern.c) ---- */
/* Decodes the character at s (valid UTF-8, n > 0); returns its length. */
static inline size_t lm_utf8_dec(const uint8_t *s, size_t n, uint32_t *cp) {
  size_t k = lm_utf8_char(s, n);
  if (k <= 1) { *cp = k ? s[0] : 0xFFFD; return 1; }
  uint32_t v = s[0] & (0x7F >> k);
  for (size_t i = 1; i < k; i++) v = v << 6 | (s[i] & 0x3F);
  *cp = v;
  return k;
}
static inline size_t lm_utf8_enc(uint32_t c, uint8_t *o) {
  if (c < 0x80) { o[0] = (uint8_t)c; return 1; }
  if (c < 0x800) { o[0] = (uint8_t)(0xC0 | c >> 6); o[1] = (uint8_t)(0x80 | (c & 0x3F)); return 2; }
  if (c < 0x10000) { o[0] = (uint8_t)(0xE0 | c >> 12); o[1] = (uint8_t)(0x80 | (c >> 6 & 0x3F)); o[2] = (uint8_t)(0x80 | (c & 0x3F)); return 3; }
  o[0] = (uint8_t)(0xF0 | c >> 18); o[1] = (uint8_t)(0x80 | (c >> 12 & 0x3F));
  o[2] = (uint8_t)(0x80 | (c >> 6 & 0x3F)); o[3] = (uint8_t)(0x80 | (c & 0x3F));
  return 4;
}
int lm_uni_space(uint32_t c);     /* Rust's char::is_whitespace (White_Space) */
int lm_uni_punct(uint32_t c);     /* ASCII punctuation or category P* */
int lm_uni_numeric(uint32_t c);   /* Rust's char::is_numeric: category N* */
int lm_uni_category(uint32_t c);  /* utf8proc's category */
/* GPT-2's byte <-> symbol map (bytes_to_unicode); -1 for a character outside it. */
uint32_t lm_tok_byte_cp(uint8_t b);
int lm_tok_cp_byte(uint32_t cp);

/* ---- patterns (pattern.c): what Split, Replace and the built-in splitters find ---- */
typedef int (*lm_tok_char_pred)(uint32_t c, uint32_t arg);
typedef struct {
  pcre2_code *re;                        /* a regex (Oniguruma syntax, translated), or */
  char *lit; size_t lit_n;               /* a literal string (empty: matches nothing), or */
  lm_tok_char_pred pred; uint32_t arg;   /* each character for which pred(c, arg) holds */
} lm_tok_pattern;
/* {"String": s} or {"Regex": r}. */
lm_status lm_tok_pattern_parse(lm_tok_pattern *p, const struct cJSON *o, const char *where);
/* Compiles an Oniguruma regex (what HF tokenizers uses) as PCRE2 with the same meaning. */
lm_status lm_tok_regex_compile(pcre2_code **re, const char *onig, const char *where);
void lm_tok_pattern_free(lm_tok_pattern *p);
/* Calls fn for each stretch of s (valid UTF-8): matches (is_match 1) and the text between
 * them (0), in order, covering s; empty s gives one empty non-match, as HF does. */
typedef lm_status (*lm_tok_seg_fn)(void *user, size_t start, size_t end, int is_match);
lm_status lm_tok_pattern_segments(const lm_tok_pattern *p, pcre2_match_data *md, const char *s, size_t n,
                                  lm_tok_seg_fn fn, void *user);

/* ---- JSON helpers (pipeline.c) ---- */
/* Error unless every key of o is "type" or in keys (NULL-terminated). */
lm_status lm_tok_json_keys(const struct cJSON *o, const char *const *keys, const char *where);
/* Optional boolean / string / non-negative integer members (absent or null: *v unchanged). */
lm_status lm_tok_json_bool(const struct cJSON *o, const char *key, int *v, const char *where);
lm_status lm_tok_json_str(const struct cJSON *o, const char *key, const char **v, const char *where);
lm_status lm_tok_json_uint(const struct cJSON *o, const char *key, int64_t *v, const char *where);
/* The component's "type" string, or NULL with the error set. */
const char *lm_tok_json_type(const struct cJSON *o, const char *where);
/* Error "where: type T is not supported (lmkit reads A, B, ...)" from a table of names. */
lm_status lm_tok_unknown_type(const char *where, const char *what, const char *type, const char *const *names, size_t n);
/* One row of a component table: tokenizer.json's type, its keys besides "type", and the parser
 * that adds it to obj (a normalizer, pre-tokenizer or decoder list); parse NULL: the Sequence,
 * whose members are in the array under keys[0]. */
typedef struct {
  const char *type;
  const char *keys[6];
  lm_status (*parse)(void *obj, const struct cJSON *o, const char *where);
} lm_tok_kind;
/* Parses component o (`what`: "normalizer", ...) by its type in kinds[0..n), Sequences flattened. */
lm_status lm_tok_parse_kind(void *obj, const lm_tok_kind *kinds, size_t n, const char *what, const struct cJSON *o,
                            const char *where);

/* ---- normalizers (normalizers.c) ---- */
typedef struct lm_tok_norm lm_tok_norm;
/* o: the "normalizer" value (NULL or null: none, *out = NULL). */
lm_status lm_tok_norm_parse(lm_tok_norm **out, const struct cJSON *o, const char *where);
/* Normalizes s[0..n) (valid UTF-8); the result (*res, *res_n) is in bufs[0] or bufs[1]. */
lm_status lm_tok_norm_apply(const lm_tok_norm *nm, pcre2_match_data *md, const char *s, size_t n, lm_tok_buf bufs[2],
                            const char **res, size_t *res_n);
void lm_tok_norm_free(lm_tok_norm *nm);

/* ---- pre-tokenizers (pretokenizers.c) ---- */
typedef struct lm_tok_pretok lm_tok_pretok;
#define LM_TOK_MAX_STAGES 32
/* o: the "pre_tokenizer" value (NULL or null: none). *byte_level: a ByteLevel pre-tokenizer is in it. */
lm_status lm_tok_pretok_parse(lm_tok_pretok **out, const struct cJSON *o, const char *where, int *byte_level);
/* 1 if some stage rewrites text (pieces are then not all slices of the input). */
int lm_tok_pretok_transforms(const lm_tok_pretok *pt);
/* Splits s[0..n) and calls emit for each non-empty piece; `first`: s starts the original text
 * (Metaspace's prepend_scheme "first"). bufs: LM_TOK_MAX_STAGES scratch buffers. */
typedef lm_status (*lm_tok_emit_fn)(void *user, const char *p, size_t n);
lm_status lm_tok_pretok_run(const lm_tok_pretok *pt, pcre2_match_data *md, lm_tok_buf *bufs, const char *s, size_t n,
                            int first, lm_tok_emit_fn emit, void *user);
void lm_tok_pretok_free(lm_tok_pretok *pt);

/* ---- decoders (decoders.c) ---- */
/* A list of strings: string i is text.p[off[i] .. off[i+1]). */
typedef struct { lm_tok_buf text; size_t *off; size_t n, cap; } lm_tok_strs;
lm_status lm_tok_strs_add(lm_tok_strs *l, const char *s, size_t n);
void lm_tok_strs_free(lm_tok_strs *l);
typedef struct lm_tok_dec lm_tok_dec;
lm_status lm_tok_dec_parse(lm_tok_dec **out, const struct cJSON *o, const char *where);
/* Runs the decoders over the tokens' text and joins the result into *out (malloc'ed, NUL-ended).
 * byte_level: tokens hold raw bytes (a byte-level BPE), so ByteLevel only concatenates. */
lm_status lm_tok_dec_run(const lm_tok_dec *d, lm_tok_strs *toks, int byte_level, char **out, size_t *out_n);
void lm_tok_dec_free(lm_tok_dec *d);

/* ---- the pipeline (pipeline.c) ---- */
typedef struct lm_tok_pipe lm_tok_pipe;
/* 1 if tokenizer.json `root` describes a byte-level model: a ByteLevel pre-tokenizer, or no
 * "pre_tokenizer" key at all (lmkit's minimal form, read as GPT-2's byte-level BPE). */
int lm_tok_json_byte_level(const struct cJSON *root);
/* Reads the pipeline of tokenizer.json `root` for tokenizer t (whose model is built). */
lm_status lm_tok_pipe_new(lm_tok_pipe **out, const struct cJSON *root, const lm_tokenizer *t, const char *name);
void lm_tok_pipe_free(lm_tok_pipe *p);
/* Per-encoder state. */
lm_status lm_tok_pipe_state_new(void **out, const lm_tok_pipe *p);
void lm_tok_pipe_state_free(void *s);
/* Encodes text (LM_ENCODE_ flags, lmkit.h) and appends the ids. */
lm_status lm_tok_pipe_encode(lm_tok_encoder *e, const char *text, size_t len, int flags, uint32_t **ids, size_t *n,
                             size_t *cap);
lm_status lm_tok_pipe_decode(const lm_tokenizer *t, const uint32_t *ids, size_t n, int flags, char **text, size_t *len);
/* 1 if text cut after a newline between printable ASCII bytes encodes as the whole does
 * (lm_tokenize_buffer's parallel split): a byte-level model, no normalizer, no rewriting
 * pre-tokenizer, no added token with a newline. */
int lm_tok_pipe_cut_safe(const lm_tok_pipe *p);
/* Puts the pipeline's components back into a tokenizer.json root (replacing the model's defaults). */
lm_status lm_tok_pipe_to_json(const lm_tok_pipe *p, struct cJSON *root);

#endif
