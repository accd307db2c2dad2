/* pretokenizers.c — tokenizer.json's pre-tokenizers (pipeline.h), as HF
 * tokenizers defines them: Split (String or Regex pattern, behavior, invert),
 * ByteLevel (add_prefix_space, use_regex = GPT-2's regex; trim_offsets only
 * moves offsets), Metaspace (replacement, prepend_scheme always / first /
 * never, split), Whitespace (\w+|[^\w\s]+ with Rust regex's classes),
 * WhitespaceSplit, Digits (individual_digits), Punctuation (behavior),
 * BertPreTokenizer (whitespace removed, then punctuation isolated) and
 * Sequence.
 *
 * Parsing flattens every component into stages of two kinds: a split (a
 * pattern plus HF's SplitDelimiterBehavior) and a rewrite (ByteLevel's prefix
 * space, Metaspace's replacement and prepend). Running is a chain of calls:
 * stage k cuts its piece and hands each sub-piece to stage k+1; past the last
 * stage the piece goes to the caller (the model). Nothing is allocated per
 * piece: a rewrite writes into the scratch buffer of its stage, which stays
 * valid while the later stages work on it.
 *
 * Byte-level models keep tokens as raw bytes, so ByteLevel's mapping of bytes
 * to symbol characters is the identity here; a stage after ByteLevel (which
 * would see the symbols) is refused rather than run on the wrong text. */
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "tokenizer/pipeline.h"

enum { K_SPLIT, K_PREFIX, K_META };
enum { B_REMOVED, B_ISOLATED, B_PREV, B_NEXT, B_CONTIG };
static const char *const BEHAVIORS[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"};

typedef struct {
  int kind;
  lm_tok_pattern pat; int behavior, invert;   /* K_SPLIT */
  char rep[8]; size_t rep_n; int prepend;      /* K_META: replacement; prepend 0 never, 1 always, 2 first */
} stage;

struct lm_tok_pretok { stage *s; int n, cap; int transforms, byte_level; };

/* GPT-2's pattern, as HF's ByteLevel writes it (Oniguruma syntax). */
static const char GPT2_RE[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
/* Whitespace's \w+|[^\w\s]+ with the Rust regex crate's \w (Alphabetic, M, Nd, Pc, Join_Control) and \s. */
#define RW "\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\x{200C}\\x{200D}"
static const char WHITESPACE_RE[] = "[" RW "]+|[^" RW "\\s]+";

static int pred_space(uint32_t c, uint32_t a) { (void)a; return lm_uni_space(c); }
static int pred_punct(uint32_t c, uint32_t a) { (void)a; return lm_uni_punct(c); }
static int pred_numeric(uint32_t c, uint32_t a) { (void)a; return lm_uni_numeric(c); }
static int pred_eq(uint32_t c, uint32_t a) { return c == a; }

/* ------------------------------------------------------------ parsing */
static lm_status add(lm_tok_pretok *pt, stage s, const char *where) {
  if (pt->byte_level) {
    lm_tok_pattern_free(&s.pat);
    return lm_error(LM_ERR_UNSUPPORTED, "%s: a pre-tokenizer after ByteLevel is not supported (it would see byte symbols)", where);
  }
  if (pt->n == LM_TOK_MAX_STAGES) {
    lm_tok_pattern_free(&s.pat);
    return lm_error(LM_ERR_UNSUPPORTED, "%s: more than %d pre-tokenizer steps", where, LM_TOK_MAX_STAGES);
  }
  if (pt->n == pt->cap) {
    int c = pt->cap ? 2 * pt->cap : 8;
    stage *p = realloc(pt->s, (size_t)c * sizeof *p);
    if (!p) { lm_tok_pattern_free(&s.pat); return lm_error(LM_ERR_NOMEM, "out of memory"); }
    pt->s = p; pt->cap = c;
  }
  if (s.kind != K_SPLIT) pt->transforms = 1;
  pt->s[pt->n++] = s;
  return LM_OK;
}

static lm_status add_pred(lm_tok_pretok *pt, lm_tok_char_pred pred, uint32_t arg, int behavior, const char *w) {
  return add(pt, (stage){.kind = K_SPLIT, .pat = {.pred = pred, .arg = arg}, .behavior = behavior}, w);
}

static lm_status add_regex(lm_tok_pretok *pt, const char *re, int behavior, int invert, const char *w) {
  stage s = {.kind = K_SPLIT, .behavior = behavior, .invert = invert};
  lm_status st = lm_tok_regex_compile(&s.pat.re, re, w);
  return st ? st : add(pt, s, w);
}

static lm_status behavior_of(const cJSON *o, int *b, const char *w) {
  const char *v = NULL;
  lm_status st = lm_tok_json_str(o, "behavior", &v, w);
  if (st || !v) return st;
  for (int i = 0; i < 5; i++) if (!strcmp(v, BEHAVIORS[i])) { *b = i; return LM_OK; }
  return lm_error(LM_ERR_UNSUPPORTED, "%s.behavior: \"%s\" is not supported (lmkit reads Removed, Isolated, "
                  "MergedWithPrevious, MergedWithNext and Contiguous)", w, v);
}

static lm_status p_split(void *pt, const cJSON *o, const char *w) {
  stage s = {.kind = K_SPLIT, .behavior = -1};
  char pw[700];
  snprintf(pw, sizeof pw, "%s.pattern", w);
  lm_status st = behavior_of(o, &s.behavior, w);
  if (!st && s.behavior < 0) st = lm_error(LM_ERR_FORMAT, "%s: \"behavior\" is missing", w);
  if (!st) st = lm_tok_json_bool(o, "invert", &s.invert, w);
  if (!st) st = lm_tok_pattern_parse(&s.pat, cJSON_GetObjectItemCaseSensitive(o, "pattern"), pw);
  if (st) { lm_tok_pattern_free(&s.pat); return st; }
  return add(pt, s, w);
}

static lm_status p_byte_level(void *pt, const cJSON *o, const char *w) {
  int prefix = 1, regex = 1, trim = 1;
  lm_status st;
  if ((st = lm_tok_json_bool(o, "add_prefix_space", &prefix, w)) || (st = lm_tok_json_bool(o, "use_regex", &regex, w)) ||
      (st = lm_tok_json_bool(o, "trim_offsets", &trim, w)))
    return st;
  if (prefix && (st = add(pt, (stage){.kind = K_PREFIX}, w))) return st;
  if (regex && (st = add_regex(pt, GPT2_RE, B_ISOLATED, 0, w))) return st;
  ((lm_tok_pretok *)pt)->byte_level = 1;
  return LM_OK;
}

static lm_status p_metaspace(void *pt, const cJSON *o, const char *w) {
  const char *rep = "\xE2\x96\x81", *scheme = NULL;
  int split = 1, legacy = -1;
  lm_status st;
  if ((st = lm_tok_json_str(o, "replacement", &rep, w)) || (st = lm_tok_json_str(o, "prepend_scheme", &scheme, w)) ||
      (st = lm_tok_json_bool(o, "split", &split, w)) || (st = lm_tok_json_bool(o, "add_prefix_space", &legacy, w)))
    return st;
  stage s = {.kind = K_META, .prepend = legacy == 0 ? 0 : 1};
  uint32_t cp;
  size_t rn = strlen(rep);
  if (!rn || rn >= sizeof s.rep || lm_utf8_char((const uint8_t *)rep, rn) != rn)
    return lm_error(LM_ERR_FORMAT, "%s.replacement: expected one character", w);
  lm_utf8_dec((const uint8_t *)rep, rn, &cp);
  memcpy(s.rep, rep, rn); s.rep_n = rn;
  if (scheme) {
    static const char *const SCHEMES[] = {"never", "always", "first"};
    s.prepend = -1;
    for (int i = 0; i < 3; i++) if (!strcmp(scheme, SCHEMES[i])) s.prepend = i;
    if (s.prepend < 0)
      return lm_error(LM_ERR_UNSUPPORTED, "%s.prepend_scheme: \"%s\" is not supported (always, first or never)", w, scheme);
  }
  if ((st = add(pt, s, w))) return st;
  return split ? add_pred(pt, pred_eq, cp, B_NEXT, w) : LM_OK;
}

static lm_status p_whitespace(void *pt, const cJSON *o, const char *w) {
  (void)o;
  return add_regex(pt, WHITESPACE_RE, B_REMOVED, 1, w);
}

static lm_status p_ws_split(void *pt, const cJSON *o, const char *w) {
  (void)o;
  return add_pred(pt, pred_space, 0, B_REMOVED, w);
}

static lm_status p_digits(void *pt, const cJSON *o, const char *w) {
  int individual = 0;
  lm_status st = lm_tok_json_bool(o, "individual_digits", &individual, w);
  return st ? st : add_pred(pt, pred_numeric, 0, individual ? B_ISOLATED : B_CONTIG, w);
}

static lm_status p_punct(void *pt, const cJSON *o, const char *w) {
  int b = B_ISOLATED;
  lm_status st = behavior_of(o, &b, w);
  return st ? st : add_pred(pt, pred_punct, 0, b, w);
}

static lm_status p_bert(void *pt, const cJSON *o, const char *w) {
  (void)o;
  lm_status st = add_pred(pt, pred_space, 0, B_REMOVED, w);
  return st ? st : add_pred(pt, pred_punct, 0, B_ISOLATED, w);
}

static const lm_tok_kind KINDS[] = {
  {"Split", {"pattern", "behavior", "invert", NULL}, p_split},
  {"ByteLevel", {"add_prefix_space", "trim_offsets", "use_regex", NULL}, p_byte_level},
  {"Metaspace", {"replacement", "prepend_scheme", "split", "add_prefix_space", NULL}, p_metaspace},
  {"Whitespace", {NULL}, p_whitespace},
  {"WhitespaceSplit", {NULL}, p_ws_split},
  {"Digits", {"individual_digits", NULL}, p_digits},
  {"Punctuation", {"behavior", NULL}, p_punct},
  {"BertPreTokenizer", {NULL}, p_bert},
  {"Sequence", {"pretokenizers", NULL}, NULL},
};
#define N_KINDS (sizeof KINDS / sizeof *KINDS)

void lm_tok_pretok_free(lm_tok_pretok *pt) {
  if (!pt) return;
  for (int i = 0; i < pt->n; i++) lm_tok_pattern_free(&pt->s[i].pat);
  free(pt->s);
  free(pt);
}

lm_status lm_tok_pretok_parse(lm_tok_pretok **out, const cJSON *o, const char *where, int *byte_level) {
  *out = NULL; *byte_level = 0;
  if (!o || cJSON_IsNull(o)) return LM_OK;
  lm_tok_pretok *pt = calloc(1, sizeof *pt);
  if (!pt) return lm_error(LM_ERR_NOMEM, "out of memory");
  lm_status st = lm_tok_parse_kind(pt, KINDS, N_KINDS, "pre-tokenizer", o, where);
  if (st) { lm_tok_pretok_free(pt); return st; }
  *byte_level = pt->byte_level;
  *out = pt;
  return LM_OK;
}

int lm_tok_pretok_transforms(const lm_tok_pretok *pt) { return pt && pt->transforms; }

/* ------------------------------------------------------------ running */
typedef struct {
  const lm_tok_pretok *pt; pcre2_match_data *md; lm_tok_buf *bufs;
  lm_tok_emit_fn emit; void *user;
} run_ctx;

static lm_status run(const run_ctx *c, int k, const char *s, size_t n, int first);

/* One split stage over one piece: HF's behaviours as a state machine over the segments. */
typedef struct {
  const run_ctx *c; int k; const char *s; int first, invert, behavior;
  int have; size_t pa, pe; int pm;   /* the pending piece and whether it is a match */
} split_ctx;

static lm_status out_piece(split_ctx *x, size_t a, size_t e) {
  return e > a ? run(x->c, x->k + 1, x->s + a, e - a, x->first && a == 0) : LM_OK;
}

static lm_status flush(split_ctx *x) {
  if (!x->have) return LM_OK;
  x->have = 0;
  return out_piece(x, x->pa, x->pe);
}

static lm_status on_seg(void *user, size_t a, size_t e, int m) {
  split_ctx *x = user;
  lm_status st;
  m ^= x->invert;
  switch (x->behavior) {
  case B_ISOLATED: return out_piece(x, a, e);
  case B_REMOVED: return m ? LM_OK : out_piece(x, a, e);
  case B_PREV:   /* a match joins the piece before it, unless that piece ended with a match */
    if (m && x->have && !x->pm) { x->pe = e; x->pm = 1; return LM_OK; }
    if ((st = flush(x))) return st;
    x->have = 1; x->pa = a; x->pe = e; x->pm = m;
    return LM_OK;
  case B_NEXT:   /* a match joins the piece after it, unless that is a match too */
    if (x->have) {
      if (!m) { x->have = 0; return out_piece(x, x->pa, e); }
      if ((st = flush(x))) return st;
    }
    if (m) { x->have = 1; x->pa = a; x->pe = e; return LM_OK; }
    return out_piece(x, a, e);
  default:       /* B_CONTIG: runs of matches (and of non-matches) become one piece */
    if (x->have && x->pm == m) { x->pe = e; return LM_OK; }
    if ((st = flush(x))) return st;
    x->have = 1; x->pa = a; x->pe = e; x->pm = m;
    return LM_OK;
  }
}

static lm_status run(const run_ctx *c, int k, const char *s, size_t n, int first) {
  if (k == c->pt->n) return c->emit(c->user, s, n);
  const stage *g = &c->pt->s[k];
  lm_tok_buf *b = &c->bufs[k];
  lm_status st;
  switch (g->kind) {
  case K_PREFIX:   /* ByteLevel's add_prefix_space */
    if (n && s[0] == ' ') return run(c, k + 1, s, n, first);
    b->n = 0;
    if ((st = lm_tok_buf_put(b, " ", 1)) || (st = lm_tok_buf_put(b, s, n))) return st;
    return run(c, k + 1, b->p, b->n, first);
  case K_META: {
    b->n = 0;
    int pre = n && (g->prepend == 1 || (g->prepend == 2 && first)) &&
              !(n >= g->rep_n && !memcmp(s, g->rep, g->rep_n));
    /* HF replaces the spaces first, then checks whether the text starts with the replacement */
    if (n && g->prepend && s[0] == ' ' && g->rep_n) pre = 0;
    if (pre && (st = lm_tok_buf_put(b, g->rep, g->rep_n))) return st;
    for (size_t i = 0; i < n; i++)
      if ((st = s[i] == ' ' ? lm_tok_buf_put(b, g->rep, g->rep_n) : lm_tok_buf_put(b, s + i, 1))) return st;
    return run(c, k + 1, b->p ? b->p : "", b->n, first);
  }
  default: {
    split_ctx x = {.c = c, .k = k, .s = s, .first = first, .invert = g->invert, .behavior = g->behavior};
    if ((st = lm_tok_pattern_segments(&g->pat, c->md, s, n, on_seg, &x))) return st;
    return flush(&x);
  }
  }
}

lm_status lm_tok_pretok_run(const lm_tok_pretok *pt, pcre2_match_data *md, lm_tok_buf *bufs, const char *s, size_t n,
                            int first, lm_tok_emit_fn emit, void *user) {
  if (!pt) return n ? emit(user, s, n) : LM_OK;
  run_ctx c = {pt, md, bufs, emit, user};
  return run(&c, 0, s, n, first);
}
