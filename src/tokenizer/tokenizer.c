/* tokenizer.c — the one tokenizer interface: the model chosen by the files, the
 * vocabulary every model shares, special tokens, encoders, and the public
 * lm_tokenizer_* functions.
 *
 * Loading looks the spec up in three tables, first match wins: a name
 * ("byte", "gpt2"), the files of a directory (tokenizer.json, then each
 * model's own files), or a tokenizer.json file; a tokenizer.json picks its
 * model by model.type from MODELS. Everything after loading goes through
 * t->ops (tokenizer.h): encoding cuts the text at special tokens (when
 * allowed: earliest first, longest on ties) and hands each stretch of ordinary
 * text to ops->encode; decoding checks the ids and calls ops->decode; saving
 * and tokenizer.json writing call the model for its own parts. Adding a model
 * means one file that fills lm_tok_model_ops and one line in MODELS (and in
 * DIR_FILES or NAMED for files of its own). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "tokenizer/tokenizer.h"
#include "tokenizer/pipeline.h"
#include "lmkit.h"

/* ------------------------------------------------------------ the registry */
/* Models by tokenizer.json's model.type; a tokenizer.json without one is the first. */
static const lm_tok_model_ops *const MODELS[] = {&lm_bpe_ops, &lm_wordpiece_ops, &lm_unigram_ops};
#define N_MODELS (sizeof MODELS / sizeof *MODELS)

/* A directory without tokenizer.json: the first entry whose files are all there. */
static const struct { const char *file[2]; lm_status (*load)(lm_tokenizer **out, const char *dir); } DIR_FILES[] = {
  {{"vocab.json", "merges.txt"}, lm_bpe_load_hf},
  {{"encoder.json", "vocab.bpe"}, lm_bpe_load_openai},
  {{"vocab.txt", NULL}, lm_wp_load_dir},
};

static const struct { const char *name; lm_status (*load)(lm_tokenizer **out); } NAMED[] = {
  {"byte", lm_bpe_load_byte},
  {"gpt2", lm_bpe_load_gpt2},
};

/* ------------------------------------------------------------ the vocabulary */
/* Adds ordinary token `id` to the bytes -> id map; a token with the same bytes already there
 * is replaced (later ids win). */
static void map_put(lm_tokenizer *t, int32_t id) {
  size_t n; const uint8_t *b = lm_tok_bytes(t, id, &n);
  uint64_t hh = lm_tok_hash(b, n), mask = t->vmap_cap - 1, h = hh & mask;
  uint32_t tag = (uint32_t)(hh >> 32);
  while (t->vmap[h] >= 0) {
    size_t tn; const uint8_t *tb = lm_tok_bytes(t, t->vmap[h], &tn);
    if (t->vtag[h] == tag && tn == n && !memcmp(tb, b, n)) break;
    h = (h + 1) & mask;
  }
  t->vmap[h] = id; t->vtag[h] = tag;
}

static int cmp_special_len(const void *a, const void *b, void *ctx) {
  const lm_tokenizer *t = ctx;
  int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  uint64_t lx = t->tok_off[x + 1] - t->tok_off[x], ly = t->tok_off[y + 1] - t->tok_off[y];
  if (lx != ly) return lx > ly ? -1 : 1;
  return x < y ? -1 : x > y;
}

static int64_t special_named(const lm_tokenizer *t, const char *s) {
  size_t n = strlen(s);
  for (int i = 0; i < t->n_special; i++) {
    size_t k; const uint8_t *b = lm_tok_bytes(t, t->special[i], &k);
    if (k == n && !memcmp(b, s, n)) return t->special[i];
  }
  return -1;
}

lm_status lm_tok_new(lm_tokenizer **out, const lm_tok_model_ops *ops, int64_t n_vocab, const uint8_t *const *tok_bytes,
                     const size_t *tok_len, const uint8_t *specials, int strict, const char *where) {
  *out = NULL;
  if (n_vocab < 1 || n_vocab >= LM_TOK_MAX_VOCAB)
    return lm_error(LM_ERR_RANGE, "%s: vocabulary size %lld is out of range (1 .. 2^31-1)", where, (long long)n_vocab);
  lm_tokenizer *t = calloc(1, sizeof *t);
  if (!t) return lm_error(LM_ERR_NOMEM, "out of memory");
  t->ops = ops; t->n_vocab = n_vocab; t->eot = -1; t->byte_level = ops->byte_level;
  lm_status st = LM_OK;
  size_t total = 0;
  for (int64_t i = 0; i < n_vocab; i++) total += tok_len[i];
  t->tok_off = lm_xmalloc((size_t)(n_vocab + 1) * sizeof *t->tok_off);
  t->tok_data = lm_xmalloc(total + 1);
  t->is_special = calloc((size_t)n_vocab, 1);
  t->special = lm_xmalloc((size_t)(n_vocab + 1) * sizeof *t->special);
  t->vmap_cap = lm_tok_pow2_at_least((uint64_t)n_vocab * 2);
  t->vmap = lm_xmalloc(t->vmap_cap * sizeof *t->vmap);
  t->vtag = lm_xmalloc(t->vmap_cap * sizeof *t->vtag);
  if (!t->tok_off || !t->tok_data || !t->is_special || !t->special || !t->vmap || !t->vtag) {
    st = lm_error(LM_ERR_NOMEM, "out of memory");
    goto fail;
  }
  memset(t->vmap, 0xff, t->vmap_cap * sizeof *t->vmap);
  size_t o = 0;
  for (int64_t i = 0; i < n_vocab; i++) {
    t->tok_off[i] = o;
    if (tok_len[i]) memcpy(t->tok_data + o, tok_bytes[i], tok_len[i]);
    o += tok_len[i];
  }
  t->tok_off[n_vocab] = o;
  for (int64_t i = 0; i < n_vocab; i++) {
    size_t n; const uint8_t *b = lm_tok_bytes(t, i, &n);
    if (specials && specials[i]) {
      if (n == 0) { st = lm_error(LM_ERR_FORMAT, "%s: special token %lld is empty", where, (long long)i); goto fail; }
      t->is_special[i] = 1;
      t->special[t->n_special++] = (int32_t)i;
      if (specials[i] != 3) continue;
    }
    if (n == 0) {
      if (!strict) continue;   /* an empty line of vocab.txt: an id no text reaches */
      st = lm_error(LM_ERR_FORMAT, "%s: token %lld is empty", where, (long long)i);
      goto fail;
    }
    int32_t prev = strict ? lm_tok_lookup(t, b, n) : -1;
    if (prev >= 0) { st = lm_error(LM_ERR_FORMAT, "%s: tokens %d and %lld have the same bytes", where, prev, (long long)i); goto fail; }
    map_put(t, (int32_t)i);
  }
  /* specials, longest first (so "<|endoftext|>x" prefers the longer of two overlapping ones) */
  qsort_r(t->special, (size_t)t->n_special, sizeof *t->special, cmp_special_len, t);
  t->eot = special_named(t, "<|endoftext|>");
  if (t->eot < 0) t->eot = special_named(t, "</s>");
  *out = t;
  return LM_OK;
fail:
  lm_tokenizer_free(t);
  return st;
}

void lm_tokenizer_free(lm_tokenizer *t) {
  if (!t) return;
  if (t->model) t->ops->free(t->model);
  lm_tok_pipe_free(t->pipe);
  free(t->tok_off); free(t->tok_data); free(t->is_special); free(t->vmap); free(t->vtag); free(t->special);
  free(t);
}

int64_t lm_tokenizer_vocab_size(const lm_tokenizer *t) { return t->n_vocab; }
int64_t lm_tokenizer_eot(const lm_tokenizer *t) { return t->eot; }

int64_t lm_tokenizer_token_id(const lm_tokenizer *t, const char *token) {
  if (!t || !token) return -1;
  int64_t id = special_named(t, token);
  if (id >= 0 || !*token) return id;
  return lm_tok_lookup(t, (const uint8_t *)token, strlen(token));
}

/* ------------------------------------------------------------ UTF-8 */
size_t lm_utf8_valid_prefix(const uint8_t *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    if (i + 8 <= n) {
      uint64_t w; memcpy(&w, s + i, 8);
      if (!(w & 0x8080808080808080ull)) { i += 8; continue; }
    }
    size_t k = lm_utf8_char(s + i, n - i);
    if (!k) return i;
    i += k;
  }
  return n;
}

/* ------------------------------------------------------------ encoders */
lm_status lm_tok_encoder_init(lm_tok_encoder **out, const lm_tokenizer *t) {
  *out = NULL;
  lm_tok_encoder *e = calloc(1, sizeof *e);
  if (!e) return lm_error(LM_ERR_NOMEM, "out of memory");
  e->t = t;
  if (!(e->spos = calloc((size_t)t->n_special + 1, sizeof *e->spos))) { free(e); return lm_error(LM_ERR_NOMEM, "out of memory"); }
  lm_status st = t->ops->state_new(&e->state, t);
  if (!st && t->pipe) st = lm_tok_pipe_state_new(&e->pstate, t->pipe);
  if (st) { lm_tok_encoder_free(e); return st; }
  *out = e;
  return LM_OK;
}

void lm_tok_encoder_free(lm_tok_encoder *e) {
  if (!e) return;
  if (e->state) e->t->ops->state_free(e->state);
  lm_tok_pipe_state_free(e->pstate);
  free(e->spos);
  free(e);
}

lm_status lm_tok_reserve(uint32_t **ids, size_t *n, size_t *cap, size_t extra) {
  if (*n + extra <= *cap) return LM_OK;
  size_t nc = *cap ? *cap : 1024;
  while (nc < *n + extra) nc *= 2;
  uint32_t *p = realloc(*ids, nc * sizeof *p);
  if (!p) return lm_error(LM_ERR_NOMEM, "out of memory (%zu token ids)", nc);
  *ids = p; *cap = nc;
  return LM_OK;
}

lm_status lm_tok_encoder_split(lm_tok_encoder *e, const char *text, size_t len, lm_tok_span_fn fn, void *user) {
  const lm_tokenizer *t = e->t;
  for (int k = 0; k < t->n_special; k++) e->spos[k] = -2;   /* -2: not searched yet, -1: none left */
  size_t pos = 0;
  lm_status st;
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
    if ((st = fn(e, text + pos, (size_t)best - pos, -1, user)) || (st = fn(e, NULL, 0, t->special[bk], user))) return st;
    pos = (size_t)best + (t->tok_off[t->special[bk] + 1] - t->tok_off[t->special[bk]]);
  }
  return fn(e, text + pos, len - pos, -1, user);
}

typedef struct { uint32_t **ids; size_t *n, *cap; } ids_out;

static lm_status encode_span(lm_tok_encoder *e, const char *s, size_t n, int64_t special, void *user) {
  ids_out *o = user;
  if (special >= 0) {
    lm_status st = lm_tok_reserve(o->ids, o->n, o->cap, 1);
    if (!st) (*o->ids)[(*o->n)++] = (uint32_t)special;
    return st;
  }
  return n ? e->t->ops->encode(e, s, n, o->ids, o->n, o->cap) : LM_OK;
}

lm_status lm_tok_encoder_encode(lm_tok_encoder *e, const char *text, size_t len, int flags,
                                uint32_t **ids, size_t *n, size_t *cap) {
  if (e->t->pipe) return lm_tok_pipe_encode(e, text, len, flags, ids, n, cap);
  ids_out o = {ids, n, cap};
  int allow_special = flags & LM_ENCODE_SPECIAL;
  if (!allow_special || e->t->n_special == 0) return encode_span(e, text, len, -1, &o);
  return lm_tok_encoder_split(e, text, len, encode_span, &o);
}

/* ------------------------------------------------------------ public encode / decode */
lm_status lm_tokenizer_encode(const lm_tokenizer *tok, const char *text, size_t len, int flags,
                              uint32_t **ids, size_t *n_ids) {
  *ids = NULL; *n_ids = 0;
  if (!tok || (!text && len)) return lm_error(LM_ERR_ARG, "lm_tokenizer_encode: NULL argument");
  lm_tok_encoder *e;
  lm_status st = lm_tok_encoder_init(&e, tok);
  if (st) return st;
  size_t cap = 0;
  uint32_t *out = NULL;
  st = lm_tok_reserve(&out, n_ids, &cap, len / 3 + 16);
  if (!st) st = lm_tok_encoder_encode(e, text, len, flags, &out, n_ids, &cap);
  lm_tok_encoder_free(e);
  if (st) { free(out); *n_ids = 0; return st; }
  *ids = out;
  return LM_OK;
}

lm_status lm_tokenizer_decode(const lm_tokenizer *tok, const uint32_t *ids, size_t n_ids, char **text, size_t *len) {
  return lm_tokenizer_decode_ex(tok, ids, n_ids, 0, text, len);
}

lm_status lm_tokenizer_decode_ex(const lm_tokenizer *tok, const uint32_t *ids, size_t n_ids, int flags, char **text,
                                 size_t *len) {
  *text = NULL; *len = 0;
  if (!tok || (!ids && n_ids)) return lm_error(LM_ERR_ARG, "lm_tokenizer_decode: NULL argument");
  for (size_t i = 0; i < n_ids; i++)
    if ((int64_t)ids[i] >= tok->n_vocab)
      return lm_error(LM_ERR_RANGE, "token id %u at position %zu is out of range (vocabulary size %lld)", ids[i], i,
                      (long long)tok->n_vocab);
  if (tok->pipe) return lm_tok_pipe_decode(tok, ids, n_ids, flags, text, len);
  if (!(flags & LM_DECODE_SKIP_SPECIAL)) return tok->ops->decode(tok, ids, n_ids, text, len);
  uint32_t *kept = lm_xmalloc(n_ids * sizeof *kept + 1);
  size_t k = 0;
  if (!kept) return LM_ERR_NOMEM;
  for (size_t i = 0; i < n_ids; i++) if (!tok->is_special[ids[i]]) kept[k++] = ids[i];
  lm_status st = tok->ops->decode(tok, kept, k, text, len);
  free(kept);
  return st;
}

/* ------------------------------------------------------------ tokenizer.json */
lm_status lm_tok_parse_json(cJSON **out, const char *text, size_t len, const char *name) {
  const char *end = NULL;
  *out = cJSON_ParseWithLengthOpts(text, len, &end, 0);
  if (*out) return LM_OK;
  size_t off = end && end >= text && end <= text + len ? (size_t)(end - text) : 0;
  int line = 1, col = 1;
  for (size_t i = 0; i < off; i++) { if (text[i] == '\n') { line++; col = 1; } else col++; }
  return lm_error(LM_ERR_FORMAT, "%s: invalid JSON at line %d, column %d", name, line, col);
}

int lm_tok_json_int(const cJSON *x, int64_t lo, int64_t hi, int64_t *v) {
  if (!cJSON_IsNumber(x)) return 0;
  double d = x->valuedouble;
  if (!(d >= (double)lo && d <= (double)hi) || d != floor(d)) return 0;
  *v = (int64_t)d;
  return 1;
}

lm_status lm_tok_json_added(const cJSON *root, const char *name, lm_tok_added **out, int *n) {
  *out = NULL; *n = 0;
  const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
  if (!added || cJSON_IsNull(added)) return LM_OK;
  if (!cJSON_IsArray(added)) return lm_error(LM_ERR_FORMAT, "%s: added_tokens: expected an array", name);
  int count = cJSON_GetArraySize(added), i = 0;
  lm_tok_added *a = lm_xmalloc(((size_t)count + 1) * sizeof *a);
  if (!a) return LM_ERR_NOMEM;
  for (const cJSON *x = added->child; x; x = x->next, i++) {
    const cJSON *cid = cJSON_GetObjectItemCaseSensitive(x, "id"), *cc = cJSON_GetObjectItemCaseSensitive(x, "content");
    if (!cJSON_IsObject(x) || !lm_tok_json_int(cid, 0, LM_TOK_MAX_VOCAB - 1, &a[i].id)) {
      free(a);
      return lm_error(LM_ERR_FORMAT, "%s: added_tokens[%d]: expected an object with an integer \"id\" below 2^31", name, i);
    }
    if (!cJSON_IsString(cc) || !cc->valuestring[0]) {
      free(a);
      return lm_error(LM_ERR_FORMAT, "%s: added_tokens[%d]: \"content\" must be a non-empty string", name, i);
    }
    a[i].content = cc->valuestring;
  }
  *out = a; *n = i;
  return LM_OK;
}

lm_status lm_tokenizer_from_json(lm_tokenizer **out, const char *json, size_t len, const char *name) {
  *out = NULL;
  cJSON *root;
  lm_status st = lm_tok_parse_json(&root, json, len, name);
  if (st) return st;
  const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
  const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
  const lm_tok_model_ops *ops = type ? NULL : MODELS[0];
  for (size_t i = 0; i < N_MODELS && !ops; i++)
    if (cJSON_IsString(type) && !strcmp(type->valuestring, MODELS[i]->type)) ops = MODELS[i];
  if (!cJSON_IsObject(root) || !cJSON_IsObject(model)) st = lm_error(LM_ERR_FORMAT, "%s: missing the \"model\" object", name);
  else if (ops) {
    st = ops->from_json(out, root, name);
    if (!st && (st = lm_tok_pipe_new(&(*out)->pipe, root, *out, name))) { lm_tokenizer_free(*out); *out = NULL; }
  }
  else {
    char known[256] = "";
    for (size_t i = 0; i < N_MODELS; i++)
      snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", i == 0 ? "" : i + 1 < N_MODELS ? ", " : " and ",
               MODELS[i]->what);
    st = lm_error(LM_ERR_UNSUPPORTED, "%s: model.type \"%s\" is not supported (lmkit reads %s)", name,
                  cJSON_IsString(type) ? type->valuestring : "?", known);
  }
  cJSON_Delete(root);
  return st;
}

/* One added_tokens entry of a tokenizer.json: a special token, matched as written. */
cJSON *lm_tok_added_json(int64_t id, const char *content) {
  cJSON *a = cJSON_CreateObject();
  if (!a) return NULL;
  cJSON_AddNumberToObject(a, "id", (double)id);
  cJSON_AddStringToObject(a, "content", content);
  cJSON_AddBoolToObject(a, "single_word", 0);
  cJSON_AddBoolToObject(a, "lstrip", 0);
  cJSON_AddBoolToObject(a, "rstrip", 0);
  cJSON_AddBoolToObject(a, "normalized", 0);
  cJSON_AddBoolToObject(a, "special", 1);
  return a;
}

cJSON *lm_tok_json_root(const lm_tokenizer *t) {
  cJSON *root = cJSON_CreateObject();
  if (!root) return NULL;
  cJSON_AddStringToObject(root, "version", "1.0");
  cJSON_AddNullToObject(root, "truncation");
  cJSON_AddNullToObject(root, "padding");
  cJSON *added = cJSON_AddArrayToObject(root, "added_tokens");
  if (!added) { cJSON_Delete(root); return NULL; }
  for (int64_t i = 0; i < t->n_vocab; i++) {
    if (!t->is_special[i]) continue;
    size_t n; const uint8_t *b = lm_tok_bytes(t, i, &n);
    char *s = lm_xmalloc(n + 1);
    if (!s) { cJSON_Delete(root); return NULL; }
    memcpy(s, b, n); s[n] = 0;
    cJSON *a = lm_tok_added_json(i, s);
    free(s);
    if (!a) { cJSON_Delete(root); return NULL; }
    cJSON_AddItemToArray(added, a);
  }
  return root;
}

lm_status lm_tokenizer_to_json(const lm_tokenizer *t, char **json, size_t *len) {
  *json = NULL; *len = 0;
  cJSON *root = lm_tok_json_root(t);
  if (!root) return lm_error(LM_ERR_NOMEM, "out of memory");
  lm_status st = t->ops->to_json(t, root);
  if (!st && t->pipe) st = lm_tok_pipe_to_json(t->pipe, root);
  char *txt = st ? NULL : cJSON_PrintUnformatted(root);
  cJSON_Delete(root);
  if (st) return st;
  if (!txt) return lm_error(LM_ERR_NOMEM, "out of memory");
  *json = txt; *len = strlen(txt);
  return LM_OK;
}

lm_status lm_tok_write(const char *dir, const char *file, const char *text, size_t len) {
  char *p = lm_path_join(dir, file);
  lm_status st = p ? lm_write_file_atomic(p, text, len) : LM_ERR_NOMEM;
  free(p);
  return st;
}

/* ------------------------------------------------------------ loading and saving */
static lm_status load_json_file(lm_tokenizer **out, const char *path) {
  char *d; size_t l;
  lm_status st = lm_read_file(path, &d, &l);
  if (st) return st;
  st = lm_tokenizer_from_json(out, d, l, path);
  free(d);
  return st;
}

static int has_file(const char *dir, const char *file) {
  char *p = lm_path_join(dir, file);
  int ok = p && lm_file_exists(p);
  free(p);
  return ok;
}

lm_status lm_tokenizer_load(lm_tokenizer **out, const char *spec) {
  *out = NULL;
  if (!spec || !*spec) return lm_error(LM_ERR_ARG, "no tokenizer given (a directory, \"gpt2\" or \"byte\")");
  for (size_t i = 0; i < sizeof NAMED / sizeof *NAMED; i++)
    if (!strcmp(spec, NAMED[i].name)) return NAMED[i].load(out);
  if (lm_dir_exists(spec)) {
    char *p = lm_path_join(spec, "tokenizer.json");
    if (!p) return LM_ERR_NOMEM;
    if (lm_file_exists(p)) {
      lm_status st = load_json_file(out, p);
      free(p);
      if (!st && (*out)->ops->dir_config && (st = (*out)->ops->dir_config(*out, spec))) { lm_tokenizer_free(*out); *out = NULL; }
      return st;
    }
    free(p);
    for (size_t i = 0; i < sizeof DIR_FILES / sizeof *DIR_FILES; i++)
      if (has_file(spec, DIR_FILES[i].file[0]) && (!DIR_FILES[i].file[1] || has_file(spec, DIR_FILES[i].file[1])))
        return DIR_FILES[i].load(out, spec);
    return lm_error(LM_ERR_IO, "%s: no tokenizer.json, vocab.json + merges.txt, encoder.json + vocab.bpe, or vocab.txt in "
                    "this directory", spec);
  }
  if (lm_file_exists(spec)) return load_json_file(out, spec);
  return lm_error(LM_ERR_IO, "%s: no such tokenizer (expected a directory, a tokenizer.json file, \"gpt2\" or \"byte\")", spec);
}

lm_status lm_tokenizer_save(const lm_tokenizer *t, const char *dir) {
  if (!t || !dir) return lm_error(LM_ERR_ARG, "lm_tokenizer_save: NULL argument");
  lm_status st = lm_mkdir_p(dir);
  return st ? st : t->ops->save(t, dir);
}
