/* pipeline.c — tokenizer.json's pipeline around the model (pipeline.h): the
 * added tokens, the post-processors, the JSON helpers the component parsers
 * share, and the encode / decode flow, as HF tokenizers runs it:
 *
 *   1. cut the raw text at the added tokens with normalized = false
 *      (leftmost-longest; single_word, lstrip, rstrip; special ones only
 *      when LM_ENCODE_SPECIAL is set, as HF's encode_special_tokens);
 *   2. normalize each stretch between them;
 *   3. cut each result at the added tokens with normalized = true (matched
 *      as the normalizer writes them);
 *   4. pre-tokenize each stretch and hand each piece to the model
 *      (ops->encode_word, else ops->encode);
 *   5. with LM_ENCODE_ADD_SPECIAL, apply the post-processors' single template
 *      (TemplateProcessing, BertProcessing, RobertaProcessing; ByteLevel
 *      changes no ids).
 * Decoding takes each id's token text (special added tokens skipped with
 * LM_DECODE_SKIP_SPECIAL) through the decoders; no decoder joins with spaces.
 *
 * HF only sees valid UTF-8. lmkit reads an invalid byte as U+FFFD; when the
 * pieces are slices of the input (a byte-level model, no normalizer, no
 * rewriting pre-tokenizer: GPT-2, Llama 3), each piece is mapped back to the
 * original bytes, so decode(encode(x)) == x for every byte string there.
 *
 * The components are kept as JSON too, so saving writes them back unchanged. */
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "tokenizer/pipeline.h"
#include "lmkit.h"

/* ------------------------------------------------------------ JSON helpers */
lm_status lm_tok_json_keys(const cJSON *o, const char *const *keys, const char *where) {
  for (const cJSON *x = o ? o->child : NULL; x; x = x->next) {
    if (!x->string || !strcmp(x->string, "type")) continue;
    int ok = 0;
    for (const char *const *k = keys; *k && !ok; k++) ok = !strcmp(*k, x->string);
    if (!ok) return lm_error(LM_ERR_UNSUPPORTED, "%s: key \"%s\" is not supported", where, x->string);
  }
  return LM_OK;
}

lm_status lm_tok_json_bool(const cJSON *o, const char *key, int *v, const char *where) {
  const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
  if (!x || cJSON_IsNull(x)) return LM_OK;
  if (!cJSON_IsBool(x)) return lm_error(LM_ERR_FORMAT, "%s.%s: expected true or false", where, key);
  *v = cJSON_IsTrue(x);
  return LM_OK;
}

lm_status lm_tok_json_str(const cJSON *o, const char *key, const char **v, const char *where) {
  const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
  if (!x || cJSON_IsNull(x)) return LM_OK;
  if (!cJSON_IsString(x)) return lm_error(LM_ERR_FORMAT, "%s.%s: expected a string", where, key);
  *v = x->valuestring;
  return LM_OK;
}

lm_status lm_tok_json_uint(const cJSON *o, const char *key, int64_t *v, const char *where) {
  const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
  if (!x || cJSON_IsNull(x)) return LM_OK;
  if (!lm_tok_json_int(x, 0, INT64_C(1) << 40, v)) return lm_error(LM_ERR_FORMAT, "%s.%s: expected a non-negative integer", where, key);
  return LM_OK;
}

const char *lm_tok_json_type(const cJSON *o, const char *where) {
  const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "type");
  if (!cJSON_IsObject(o) || !cJSON_IsString(t)) {
    lm_error(LM_ERR_FORMAT, "%s: expected an object with a string \"type\"", where);
    return NULL;
  }
  return t->valuestring;
}

lm_status lm_tok_unknown_type(const char *where, const char *what, const char *type, const char *const *names, size_t n) {
  char known[600] = "";
  for (size_t i = 0; i < n; i++)
    snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", i ? ", " : "", names[i]);
  return lm_error(LM_ERR_UNSUPPORTED, "%s: %s type \"%.100s\" is not supported (lmkit reads %s)", where, what, type, known);
}

static lm_status parse_kind(void *obj, const lm_tok_kind *kinds, size_t n, const char *what, const cJSON *o,
                            const char *where, int depth) {
  if (depth > 16) return lm_error(LM_ERR_FORMAT, "%s: Sequence nested too deeply", where);
  const char *type = lm_tok_json_type(o, where);
  if (!type) return LM_ERR_FORMAT;
  size_t k = 0;
  while (k < n && strcmp(kinds[k].type, type)) k++;
  if (k == n) {
    const char *names[32];
    for (size_t i = 0; i < n && i < 32; i++) names[i] = kinds[i].type;
    return lm_tok_unknown_type(where, what, type, names, n < 32 ? n : 32);
  }
  lm_status st = lm_tok_json_keys(o, kinds[k].keys, where);
  if (st) return st;
  if (kinds[k].parse) return kinds[k].parse(obj, o, where);
  const cJSON *list = cJSON_GetObjectItemCaseSensitive(o, kinds[k].keys[0]);
  if (!cJSON_IsArray(list)) return lm_error(LM_ERR_FORMAT, "%s.%s: expected an array", where, kinds[k].keys[0]);
  int i = 0;
  for (const cJSON *x = list->child; x; x = x->next, i++) {
    char w[700];
    snprintf(w, sizeof w, "%s.%s[%d]", where, kinds[k].keys[0], i);
    if ((st = parse_kind(obj, kinds, n, what, x, w, depth + 1))) return st;
  }
  return LM_OK;
}

lm_status lm_tok_parse_kind(void *obj, const lm_tok_kind *kinds, size_t n, const char *what, const cJSON *o,
                            const char *where) {
  return parse_kind(obj, kinds, n, what, o, where, 0);
}

/* ------------------------------------------------------------ added tokens */
typedef struct {
  int32_t id; const char *s; size_t n;
  uint8_t single_word, lstrip, rstrip, special;
} added_tok;

/* One set of added tokens (raw or normalized), grouped by first byte, longest first. */
typedef struct {
  added_tok *t; int n;
  int start[257];           /* tokens starting with byte b: t[start[b] .. start[b+1]) */
  char **owned; int n_owned;   /* normalized contents */
} matcher;

static int cmp_added(const void *a, const void *b) {
  const added_tok *x = a, *y = b;
  uint8_t fx = (uint8_t)x->s[0], fy = (uint8_t)y->s[0];
  if (fx != fy) return fx < fy ? -1 : 1;
  if (x->n != y->n) return x->n > y->n ? -1 : 1;
  return x->id < y->id ? -1 : x->id > y->id;
}

static void matcher_index(matcher *m) {
  qsort(m->t, (size_t)m->n, sizeof *m->t, cmp_added);
  int k = 0;
  for (int b = 0; b <= 256; b++) {
    while (k < m->n && (uint8_t)m->t[k].s[0] < b) k++;
    m->start[b] = k;
  }
}

static void matcher_free(matcher *m) {
  free(m->t);
  for (int i = 0; i < m->n_owned; i++) free(m->owned[i]);
  free(m->owned);
}

/* Rust regex's \w: Alphabetic, M, Nd, Pc, Join_Control (Alphabetic approximated by L* and Nl). */
static int word_char(uint32_t c) {
  if (c < 0x80) return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
  if (c == 0x200C || c == 0x200D) return 1;
  int k = lm_uni_category(c);
  return (k >= 1 && k <= 5) || (k >= 6 && k <= 8) || k == 9 || k == 10 || k == 12;   /* L*, M*, Nd, Nl, Pc */
}

static uint32_t last_char(const char *s, size_t n) {
  size_t q = n - 1;
  while (q > 0 && ((uint8_t)s[q] & 0xC0) == 0x80) q--;
  uint32_t c;
  lm_utf8_dec((const uint8_t *)s + q, n - q, &c);
  return c;
}

/* Calls fn for each stretch of text (id -1) and each added token, as HF's find_matches. */
typedef lm_status (*split_fn)(void *user, const char *s, size_t n, int64_t id, int first);

static lm_status matcher_split(const matcher *m, const char *s, size_t n, int skip_special, int first, split_fn fn, void *user) {
  if (!m->n || !n) return fn(user, s, n, -1, first);
  size_t done = 0, p = 0;
  lm_status st;
  while (p < n) {
    /* the leftmost position where a token starts, and the longest one there */
    const added_tok *hit = NULL;
    size_t q = p;
    for (; q < n && !hit; q++) {
      uint8_t b = (uint8_t)s[q];
      for (int i = m->start[b]; i < m->start[b + 1]; i++)
        if (m->t[i].n <= n - q && !memcmp(s + q, m->t[i].s, m->t[i].n)) { hit = &m->t[i]; break; }
    }
    if (!hit) break;
    q--;
    size_t start = q, stop = q + hit->n;
    p = stop;
    if (skip_special && hit->special) continue;
    if (hit->single_word) {
      uint32_t c;
      int before = start > 0 && word_char(last_char(s, start));
      int after = stop < n && (lm_utf8_dec((const uint8_t *)s + stop, n - stop, &c), word_char(c));
      if (before || after) continue;
    }
    if (hit->lstrip) {
      size_t a = start;
      while (a > done) {
        size_t b = a - 1;
        while (b > 0 && ((uint8_t)s[b] & 0xC0) == 0x80) b--;
        uint32_t c;
        lm_utf8_dec((const uint8_t *)s + b, a - b, &c);
        if (!lm_uni_space(c)) break;
        a = b;
      }
      start = a;
    }
    if (hit->rstrip) {
      uint32_t c;
      while (stop < n) { size_t k = lm_utf8_dec((const uint8_t *)s + stop, n - stop, &c); if (!lm_uni_space(c)) break; stop += k; }
    }
    if (done < start && (st = fn(user, s + done, start - done, -1, first && done == 0))) return st;
    if ((st = fn(user, s + start, stop - start, hit->id, 0))) return st;
    done = stop;
    if (p < done) p = done;
  }
  return done < n ? fn(user, s + done, n - done, -1, first && done == 0) : LM_OK;
}

/* ------------------------------------------------------------ the pipeline */
typedef struct { int64_t *single, *pair; int n_single, n_pair; } templ;   /* items: id, or -1 = $A, -2 = $B */

struct lm_tok_pipe {
  lm_tok_norm *norm; lm_tok_pretok *pre; lm_tok_dec *dec;
  int byte_level;          /* the model's tokens are raw bytes */
  int raw_map;             /* pieces are slices of the input (invalid UTF-8 can be mapped back) */
  matcher raw, normd;      /* added tokens with normalized false / true */
  uint8_t *special;        /* n_vocab: special added tokens */
  const char **dec_text;   /* n_vocab or NULL: decoding text of normalized added tokens (HF decodes the normalized form) */
  templ *post; int n_post;
  cJSON *json;             /* the components as read, for saving */
};

static const char *const PARTS[] = {"normalizer", "pre_tokenizer", "post_processor", "decoder", "added_tokens"};

void lm_tok_pipe_free(lm_tok_pipe *p) {
  if (!p) return;
  lm_tok_norm_free(p->norm); lm_tok_pretok_free(p->pre); lm_tok_dec_free(p->dec);
  matcher_free(&p->raw); matcher_free(&p->normd);
  free(p->special); free(p->dec_text);
  for (int i = 0; i < p->n_post; i++) { free(p->post[i].single); free(p->post[i].pair); }
  free(p->post);
  cJSON_Delete(p->json);
  free(p);
}

static int has_byte_level(const cJSON *o, int depth) {
  const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "type");
  if (depth > 16 || !cJSON_IsString(t)) return 0;
  if (!strcmp(t->valuestring, "ByteLevel")) return 1;
  const cJSON *list = cJSON_GetObjectItemCaseSensitive(o, "pretokenizers");
  for (const cJSON *x = cJSON_IsArray(list) ? list->child : NULL; x; x = x->next)
    if (has_byte_level(x, depth + 1)) return 1;
  return 0;
}

int lm_tok_json_byte_level(const cJSON *root) {
  const cJSON *pre = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
  return !pre || has_byte_level(pre, 0);
}

/* What a tokenizer.json without the key means (lmkit's minimal files): by model type. */
static const struct { const char *model, *key, *json; } DEFAULTS[] = {
  {"BPE", "pre_tokenizer", "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": true}"},
  {"BPE", "decoder", "{\"type\": \"ByteLevel\"}"},
  {"WordPiece", "pre_tokenizer", "{\"type\": \"BertPreTokenizer\"}"},
  {"WordPiece", "decoder", "{\"type\": \"WordPiece\", \"prefix\": \"##\", \"cleanup\": false}"},
};

/* Appends the ids of a TemplateProcessing / Bert / Roberta processor as a template. */
static lm_status templ_add(int64_t **items, int *n, int64_t v) {
  int64_t *p = realloc(*items, (size_t)(*n + 1) * sizeof *p);
  if (!p) return lm_error(LM_ERR_NOMEM, "out of memory");
  p[(*n)++] = v; *items = p;
  return LM_OK;
}

static lm_status template_items(const cJSON *list, const cJSON *specials, const lm_tokenizer *t, int64_t **items, int *n,
                                const char *where) {
  if (!cJSON_IsArray(list)) return lm_error(LM_ERR_FORMAT, "%s: expected an array", where);
  int i = 0;
  lm_status st;
  for (const cJSON *x = list->child; x; x = x->next, i++) {
    const cJSON *sp = cJSON_GetObjectItemCaseSensitive(x, "SpecialToken"), *sq = cJSON_GetObjectItemCaseSensitive(x, "Sequence");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(sp ? sp : sq, "id");
    if (!cJSON_IsObject(x) || cJSON_GetArraySize(x) != 1 || (!sp && !sq) || !cJSON_IsString(id))
      return lm_error(LM_ERR_FORMAT, "%s[%d]: expected {\"SpecialToken\": {\"id\": ...}} or {\"Sequence\": {\"id\": \"A\"}}", where, i);
    if (sq) {
      if (strcmp(id->valuestring, "A") && strcmp(id->valuestring, "B"))
        return lm_error(LM_ERR_FORMAT, "%s[%d].Sequence.id: expected \"A\" or \"B\"", where, i);
      if ((st = templ_add(items, n, id->valuestring[0] == 'A' ? -1 : -2))) return st;
      continue;
    }
    const cJSON *def = cJSON_GetObjectItemCaseSensitive(specials, id->valuestring);
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(def, "ids");
    if (!cJSON_IsArray(ids))
      return lm_error(LM_ERR_FORMAT, "%s[%d]: special token \"%s\" is not in special_tokens (with \"ids\")", where, i, id->valuestring);
    for (const cJSON *v = ids->child; v; v = v->next) {
      int64_t k;
      if (!lm_tok_json_int(v, 0, t->n_vocab - 1, &k))
        return lm_error(LM_ERR_FORMAT, "%s[%d]: special token \"%s\": an id is not in the vocabulary", where, i, id->valuestring);
      if ((st = templ_add(items, n, k))) return st;
    }
  }
  return LM_OK;
}

/* [str, id] of Bert/RobertaProcessing. */
static lm_status pair_id(const cJSON *o, const char *key, const lm_tokenizer *t, int64_t *id, const char *where) {
  const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
  if (!cJSON_IsArray(x) || cJSON_GetArraySize(x) != 2 || !cJSON_IsString(x->child) ||
      !lm_tok_json_int(x->child->next, 0, t->n_vocab - 1, id))
    return lm_error(LM_ERR_FORMAT, "%s.%s: expected [token, id] with an id in the vocabulary", where, key);
  return LM_OK;
}

static lm_status parse_post(lm_tok_pipe *p, const cJSON *o, const lm_tokenizer *t, const char *where, int depth) {
  if (!o || cJSON_IsNull(o)) return LM_OK;
  static const char *const NAMES[] = {"TemplateProcessing", "BertProcessing", "RobertaProcessing", "ByteLevel", "Sequence"};
  static const char *const KEYS[][5] = {
    {"single", "pair", "special_tokens", NULL}, {"sep", "cls", NULL},
    {"sep", "cls", "trim_offsets", "add_prefix_space", NULL}, {"add_prefix_space", "trim_offsets", "use_regex", NULL},
    {"processors", NULL},
  };
  if (depth > 16) return lm_error(LM_ERR_FORMAT, "%s: Sequence nested too deeply", where);
  const char *type = lm_tok_json_type(o, where);
  if (!type) return LM_ERR_FORMAT;
  int k = 0;
  while (k < 5 && strcmp(NAMES[k], type)) k++;
  if (k == 5) return lm_tok_unknown_type(where, "post-processor", type, NAMES, 5);
  lm_status st = lm_tok_json_keys(o, KEYS[k], where);
  if (st) return st;
  if (k == 4) {
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(o, "processors");
    if (!cJSON_IsArray(list)) return lm_error(LM_ERR_FORMAT, "%s.processors: expected an array", where);
    int i = 0;
    for (const cJSON *x = list->child; x; x = x->next, i++) {
      char w[700];
      snprintf(w, sizeof w, "%s.processors[%d]", where, i);
      if ((st = parse_post(p, x, t, w, depth + 1))) return st;
    }
    return LM_OK;
  }
  if (k == 3) {   /* ByteLevel: offsets only */
    int x = 0;
    if ((st = lm_tok_json_bool(o, "add_prefix_space", &x, where)) || (st = lm_tok_json_bool(o, "trim_offsets", &x, where)) ||
        (st = lm_tok_json_bool(o, "use_regex", &x, where)))
      return st;
    return LM_OK;
  }
  templ *np = realloc(p->post, (size_t)(p->n_post + 1) * sizeof *np);
  if (!np) return lm_error(LM_ERR_NOMEM, "out of memory");
  p->post = np;
  templ *tp = &p->post[p->n_post++];
  memset(tp, 0, sizeof *tp);
  char w[700];
  if (k == 0) {
    const cJSON *sp = cJSON_GetObjectItemCaseSensitive(o, "special_tokens");
    if (sp && !cJSON_IsObject(sp)) return lm_error(LM_ERR_FORMAT, "%s.special_tokens: expected an object", where);
    snprintf(w, sizeof w, "%s.single", where);
    if ((st = template_items(cJSON_GetObjectItemCaseSensitive(o, "single"), sp, t, &tp->single, &tp->n_single, w))) return st;
    snprintf(w, sizeof w, "%s.pair", where);
    const cJSON *pair = cJSON_GetObjectItemCaseSensitive(o, "pair");
    return pair && !cJSON_IsNull(pair) ? template_items(pair, sp, t, &tp->pair, &tp->n_pair, w) : LM_OK;
  }
  int64_t cls, sep;
  int x = 0;
  if ((st = pair_id(o, "cls", t, &cls, where)) || (st = pair_id(o, "sep", t, &sep, where))) return st;
  if (k == 2 && ((st = lm_tok_json_bool(o, "trim_offsets", &x, where)) || (st = lm_tok_json_bool(o, "add_prefix_space", &x, where))))
    return st;
  /* Bert: [CLS] A [SEP] / [CLS] A [SEP] B [SEP]; Roberta: <s> A </s> / <s> A </s> </s> B </s> */
  const int64_t single[] = {cls, -1, sep}, bert_pair[] = {cls, -1, sep, -2, sep}, rob_pair[] = {cls, -1, sep, sep, -2, sep};
  for (int i = 0; i < 3; i++) if ((st = templ_add(&tp->single, &tp->n_single, single[i]))) return st;
  const int64_t *pp = k == 1 ? bert_pair : rob_pair;
  for (int i = 0; i < (k == 1 ? 5 : 6); i++) if ((st = templ_add(&tp->pair, &tp->n_pair, pp[i]))) return st;
  return LM_OK;
}

/* Reads added_tokens with their flags into the two matchers and the special flags. */
static lm_status parse_added(lm_tok_pipe *p, const cJSON *root, const lm_tokenizer *t, const char *name) {
  const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
  if (!added || cJSON_IsNull(added)) return LM_OK;
  if (!cJSON_IsArray(added)) return lm_error(LM_ERR_FORMAT, "%s: added_tokens: expected an array", name);
  int count = cJSON_GetArraySize(added), i = 0;
  p->raw.t = calloc((size_t)count + 1, sizeof *p->raw.t);
  p->normd.t = calloc((size_t)count + 1, sizeof *p->normd.t);
  p->normd.owned = calloc((size_t)count + 1, sizeof *p->normd.owned);
  if (!p->raw.t || !p->normd.t || !p->normd.owned) return lm_error(LM_ERR_NOMEM, "out of memory");
  static const char *const KEYS[] = {"id", "content", "single_word", "lstrip", "rstrip", "normalized", "special", NULL};
  pcre2_match_data *md = pcre2_match_data_create(1, NULL);
  lm_tok_buf bufs[2] = {{0}};
  lm_status st = md ? LM_OK : lm_error(LM_ERR_NOMEM, "out of memory");
  for (const cJSON *x = added->child; x && !st; x = x->next, i++) {
    char w[600];
    snprintf(w, sizeof w, "%s: added_tokens[%d]", name, i);
    const cJSON *cid = cJSON_GetObjectItemCaseSensitive(x, "id"), *cc = cJSON_GetObjectItemCaseSensitive(x, "content");
    int64_t id;
    if (!cJSON_IsObject(x) || !lm_tok_json_int(cid, 0, t->n_vocab - 1, &id) || !cJSON_IsString(cc) || !cc->valuestring[0]) {
      st = lm_error(LM_ERR_FORMAT, "%s: expected {\"id\": an id in the vocabulary, \"content\": a non-empty string}", w);
      break;
    }
    /* HF's defaults for keys left out: AddedToken::default() (normalized true, special false) */
    int sw = 0, ls = 0, rs = 0, norm = 1, special = 0;
    if ((st = lm_tok_json_keys(x, KEYS, w)) || (st = lm_tok_json_bool(x, "single_word", &sw, w)) ||
        (st = lm_tok_json_bool(x, "lstrip", &ls, w)) || (st = lm_tok_json_bool(x, "rstrip", &rs, w)) ||
        (st = lm_tok_json_bool(x, "normalized", &norm, w)) || (st = lm_tok_json_bool(x, "special", &special, w)))
      break;
    if (!cJSON_GetObjectItemCaseSensitive(x, "special") && t->is_special[id]) special = 1;   /* lmkit's minimal files */
    if (!cJSON_GetObjectItemCaseSensitive(x, "normalized")) norm = !special;
    added_tok a = {(int32_t)id, cc->valuestring, strlen(cc->valuestring), (uint8_t)sw, (uint8_t)ls, (uint8_t)rs, (uint8_t)special};
    p->special[id] = (uint8_t)special;
    const char *r = a.s; size_t rn = a.n;
    /* a normalized token is matched as the normalizer writes it */
    if (norm && p->norm && (st = lm_tok_norm_apply(p->norm, md, a.s, a.n, bufs, &r, &rn))) break;
    char *own = lm_xmalloc(rn + 1);   /* the JSON goes away after loading */
    if (!own) { st = LM_ERR_NOMEM; break; }
    memcpy(own, r, rn); own[rn] = 0;
    p->normd.owned[p->normd.n_owned++] = own;
    a.s = own; a.n = rn;
    if (norm && p->norm) {
      if (!p->dec_text && !(p->dec_text = calloc((size_t)t->n_vocab, sizeof *p->dec_text))) { st = LM_ERR_NOMEM; break; }
      p->dec_text[id] = own;
    }
    if (!rn) continue;
    if (norm) p->normd.t[p->normd.n++] = a;
    else p->raw.t[p->raw.n++] = a;
  }
  free(bufs[0].p); free(bufs[1].p);
  if (md) pcre2_match_data_free(md);
  if (st) return st;
  matcher_index(&p->raw); matcher_index(&p->normd);
  return LM_OK;
}

lm_status lm_tok_pipe_new(lm_tok_pipe **out, const cJSON *root, const lm_tokenizer *t, const char *name) {
  *out = NULL;
  lm_tok_pipe *p = calloc(1, sizeof *p);
  if (!p || !(p->special = calloc((size_t)t->n_vocab, 1)) || !(p->json = cJSON_CreateObject())) {
    lm_tok_pipe_free(p);
    return lm_error(LM_ERR_NOMEM, "out of memory");
  }
  lm_status st = LM_OK;
  char w[600];
  static const char *const TOP[] = {"version", "truncation", "padding", "added_tokens", "normalizer", "pre_tokenizer",
                                    "model", "post_processor", "decoder", NULL};
  for (const cJSON *x = root->child; x && !st; x = x->next) {
    int ok = 0;
    for (const char *const *k = TOP; *k && !ok; k++) ok = x->string && !strcmp(*k, x->string);
    if (!ok) st = lm_error(LM_ERR_UNSUPPORTED, "%s: key \"%s\" is not supported", name, x->string ? x->string : "?");
    else if ((!strcmp(x->string, "truncation") || !strcmp(x->string, "padding")) && !cJSON_IsNull(x))
      st = lm_error(LM_ERR_UNSUPPORTED, "%s: %s is not supported (lmkit encodes whole texts; set it to null)", name, x->string);
  }
  /* the components, or the model's defaults for keys left out */
  const cJSON *parts[4];
  cJSON *defaults[4] = {NULL};
  const char *mtype = t->ops->type;
  for (int i = 0; i < 4; i++) {
    parts[i] = cJSON_GetObjectItemCaseSensitive(root, PARTS[i]);
    if (parts[i]) { cJSON_AddItemToObject(p->json, PARTS[i], cJSON_Duplicate(parts[i], 1)); continue; }
    for (size_t d = 0; d < sizeof DEFAULTS / sizeof *DEFAULTS; d++)
      if (!strcmp(DEFAULTS[d].model, mtype) && !strcmp(DEFAULTS[d].key, PARTS[i])) parts[i] = defaults[i] = cJSON_Parse(DEFAULTS[d].json);
  }
  const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
  if (added) cJSON_AddItemToObject(p->json, "added_tokens", cJSON_Duplicate(added, 1));
  int bl = 0;
  if (!st) { snprintf(w, sizeof w, "%s: normalizer", name); st = lm_tok_norm_parse(&p->norm, parts[0], w); }
  if (!st) { snprintf(w, sizeof w, "%s: pre_tokenizer", name); st = lm_tok_pretok_parse(&p->pre, parts[1], w, &bl); }
  if (!st) { snprintf(w, sizeof w, "%s: post_processor", name); st = parse_post(p, parts[2], t, w, 0); }
  if (!st) { snprintf(w, sizeof w, "%s: decoder", name); st = lm_tok_dec_parse(&p->dec, parts[3], w); }
  if (!st) st = parse_added(p, root, t, name);
  for (int i = 0; i < 4; i++) cJSON_Delete(defaults[i]);
  if (!st && bl != lm_tok_byte_level(t))
    st = lm_error(LM_ERR_UNSUPPORTED, "%s: a %s model with%s a ByteLevel pre-tokenizer is not supported", name, t->ops->type,
                  bl ? "" : "out");
  if (st) { lm_tok_pipe_free(p); return st; }
  p->byte_level = bl;
  p->raw_map = bl && !p->norm && !lm_tok_pretok_transforms(p->pre);
  *out = p;
  return LM_OK;
}

lm_status lm_tok_pipe_to_json(const lm_tok_pipe *p, cJSON *root) {
  for (const cJSON *x = p->json->child; x; x = x->next) {
    cJSON *c = cJSON_Duplicate(x, 1);
    if (!c) return lm_error(LM_ERR_NOMEM, "out of memory");
    if (cJSON_GetObjectItemCaseSensitive(root, x->string)) cJSON_ReplaceItemInObjectCaseSensitive(root, x->string, c);
    else cJSON_AddItemToObject(root, x->string, c);
  }
  return LM_OK;
}

int lm_tok_pipe_cut_safe(const lm_tok_pipe *p) {
  if (!p->raw_map) return 0;   /* a normalizer or rewriting pre-tokenizer may act across the cut */
  const matcher *m[2] = {&p->raw, &p->normd};
  for (int k = 0; k < 2; k++)
    for (int i = 0; i < m[k]->n; i++) if (memchr(m[k]->t[i].s, '\n', m[k]->t[i].n)) return 0;
  return 1;
}

/* ------------------------------------------------------------ per-encoder state */
typedef struct {
  pcre2_match_data *md;
  lm_tok_buf nbuf[2], sub;
  lm_tok_buf pbuf[LM_TOK_MAX_STAGES];
} pipe_state;

lm_status lm_tok_pipe_state_new(void **out, const lm_tok_pipe *p) {
  (void)p;
  pipe_state *s = calloc(1, sizeof *s);
  if (!s || !(s->md = pcre2_match_data_create(1, NULL))) { free(s); return lm_error(LM_ERR_NOMEM, "out of memory"); }
  *out = s;
  return LM_OK;
}

void lm_tok_pipe_state_free(void *v) {
  pipe_state *s = v;
  if (!s) return;
  pcre2_match_data_free(s->md);
  free(s->nbuf[0].p); free(s->nbuf[1].p); free(s->sub.p);
  for (int i = 0; i < LM_TOK_MAX_STAGES; i++) free(s->pbuf[i].p);
  free(s);
}

/* ------------------------------------------------------------ encoding */
typedef struct {
  lm_tok_encoder *e; const lm_tok_pipe *p; pipe_state *ps;
  uint32_t **ids; size_t *n, *cap; int skip_special;
  const char *sub; size_t sub_n; const char *orig; size_t orig_n; size_t sp, op;   /* invalid UTF-8: sub -> orig */
} enc_ctx;

/* Moves the (substituted, original) cursor to substituted offset `to`. */
static void walk(enc_ctx *c, size_t to) {
  while (c->sp < to && c->op < c->orig_n) {
    size_t k = lm_utf8_char((const uint8_t *)c->orig + c->op, c->orig_n - c->op);
    if (k) { c->sp += k; c->op += k; } else { c->sp += 3; c->op += 1; }
  }
}

static lm_status model_piece(void *user, const char *s, size_t n) {
  enc_ctx *c = user;
  if (c->orig && s >= c->sub && s + n <= c->sub + c->sub_n && (size_t)(s - c->sub) >= c->sp) {
    walk(c, (size_t)(s - c->sub));
    size_t o = c->op;
    walk(c, (size_t)(s - c->sub) + n);
    s = c->orig + o; n = c->op - o;
  }
  const lm_tok_model_ops *ops = c->e->t->ops;
  return (ops->encode_word ? ops->encode_word : ops->encode)(c->e, s, n, c->ids, c->n, c->cap);
}

static lm_status push_id(enc_ctx *c, int64_t id) {
  lm_status st = lm_tok_reserve(c->ids, c->n, c->cap, 1);
  if (!st) (*c->ids)[(*c->n)++] = (uint32_t)id;
  return st;
}

static lm_status on_norm(void *user, const char *s, size_t n, int64_t id, int first) {
  enc_ctx *c = user;
  if (id >= 0) return push_id(c, id);
  return lm_tok_pretok_run(c->p->pre, c->ps->md, c->ps->pbuf, s, n, first, model_piece, c);
}

static lm_status on_raw(void *user, const char *s, size_t n, int64_t id, int first) {
  enc_ctx *c = user;
  if (id >= 0) return push_id(c, id);
  if (c->p->norm) {
    lm_status st = lm_tok_norm_apply(c->p->norm, c->ps->md, s, n, c->ps->nbuf, &s, &n);
    if (st) return st;
  }
  return matcher_split(&c->p->normd, s, n, c->skip_special, first, on_norm, c);
}

static lm_status post_process(const lm_tok_pipe *p, uint32_t **ids, size_t start, size_t *n, size_t *cap) {
  for (int k = 0; k < p->n_post; k++) {
    const templ *tp = &p->post[k];
    size_t a = *n - start, extra = 0;
    for (int i = 0; i < tp->n_single; i++) extra += tp->single[i] == -1 ? a : tp->single[i] >= 0;
    uint32_t *seq = lm_xmalloc(a * sizeof *seq + 1);
    if (!seq) return LM_ERR_NOMEM;
    memcpy(seq, *ids + start, a * sizeof *seq);
    *n = start;
    lm_status st = lm_tok_reserve(ids, n, cap, extra);
    for (int i = 0; i < tp->n_single && !st; i++) {
      if (tp->single[i] == -1) { memcpy(*ids + *n, seq, a * sizeof *seq); *n += a; }
      else if (tp->single[i] >= 0) (*ids)[(*n)++] = (uint32_t)tp->single[i];
    }
    free(seq);
    if (st) return st;
  }
  return LM_OK;
}

lm_status lm_tok_pipe_encode(lm_tok_encoder *e, const char *text, size_t len, int flags, uint32_t **ids, size_t *n,
                             size_t *cap) {
  const lm_tok_pipe *p = e->t->pipe;
  pipe_state *ps = e->pstate;
  enc_ctx c = {.e = e, .p = p, .ps = ps, .ids = ids, .n = n, .cap = cap, .skip_special = !(flags & LM_ENCODE_SPECIAL)};
  size_t start = *n;
  if (lm_utf8_valid_prefix((const uint8_t *)text, len) != len) {   /* read invalid bytes as U+FFFD */
    if (len > (SIZE_MAX - 16) / 3) return lm_error(LM_ERR_RANGE, "text too long");
    ps->sub.n = 0;
    lm_status st = lm_tok_buf_reserve(&ps->sub, 3 * len);
    if (st) return st;
    for (size_t i = 0; i < len;) {
      size_t k = lm_utf8_char((const uint8_t *)text + i, len - i);
      if (k) { memcpy(ps->sub.p + ps->sub.n, text + i, k); ps->sub.n += k; i += k; }
      else { memcpy(ps->sub.p + ps->sub.n, "\xEF\xBF\xBD", 3); ps->sub.n += 3; i++; }
    }
    if (p->raw_map) { c.orig = text; c.orig_n = len; c.sub = ps->sub.p; c.sub_n = ps->sub.n; }
    text = ps->sub.p; len = ps->sub.n;
  }
  /* empty text: no pieces (HF never pre-tokenizes it, so nothing is prepended) */
  lm_status st = len ? matcher_split(&p->raw, text, len, c.skip_special, 1, on_raw, &c) : LM_OK;
  if (!st && (flags & LM_ENCODE_ADD_SPECIAL)) st = post_process(p, ids, start, n, cap);
  return st;
}

/* ------------------------------------------------------------ decoding */
lm_status lm_tok_pipe_decode(const lm_tokenizer *t, const uint32_t *ids, size_t n, int flags, char **text, size_t *len) {
  const lm_tok_pipe *p = t->pipe;
  lm_tok_strs toks = {0};
  lm_status st = LM_OK;
  for (size_t i = 0; i < n && !st; i++) {
    if ((flags & LM_DECODE_SKIP_SPECIAL) && p->special[ids[i]]) continue;
    size_t k; const uint8_t *b = lm_tok_bytes(t, ids[i], &k);
    const char *d = p->dec_text ? p->dec_text[ids[i]] : NULL;
    st = d ? lm_tok_strs_add(&toks, d, strlen(d)) : lm_tok_strs_add(&toks, (const char *)b, k);
  }
  if (!st) st = lm_tok_dec_run(p->dec, &toks, p->byte_level, text, len);
  lm_tok_strs_free(&toks);
  return st;
}
