/* ref_unigram.c — driver for tests/reference/test_unigram.py: lmkit's
 * Precompiled normalizer + Unigram model, with the whitespace handling of
 * either reference around them.
 *
 * usage: ref_unigram MODE MODEL.json CHARSMAP.bin [TEXT_FILE]
 *   MODEL.json   a tokenizer.json holding the Unigram model and added tokens only
 *   CHARSMAP.bin the precompiled charsmap (raw bytes)
 * Reads one JSON string per stdin line and prints one line per string:
 *   spm      ids, as sentencepiece's SentencePieceProcessor::Encode: the map by
 *            SentencePiece's rule (longest key), then its whitespace rules
 *            (remove_extra_whitespaces, add_dummy_prefix, escape_whitespaces:
 *            leading and repeated spaces dropped, "▁" in front, spaces become
 *            "▁", trailing "▁"s dropped), one Viterbi over the whole string;
 *   hf       ids, as HF tokenizers runs T5's tokenizer.json without special
 *            tokens added: added tokens cut out of the raw text, then per
 *            stretch Precompiled (HF's rule), Strip(right), Replace(" {2,}",
 *            "▁"), WhitespaceSplit, Metaspace(prepend "always", split), and
 *            the model on each piece;
 *   norm-hf / norm-spm   the normalized string (JSON), HF's or SentencePiece's rule.
 *   bench    encodes TEXT_FILE line by line in spm mode on this thread, prints MB/s
 *            (median of 5 runs). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "tokenizer/precompiled.h"
#include "tokenizer/tokenizer.h"

typedef struct { char *s; size_t n, cap; } buf;

static void put(buf *b, const void *s, size_t n) {
  if (b->n + n + 1 > b->cap) {
    b->cap = 2 * (b->n + n + 1);
    b->s = realloc(b->s, b->cap);
    if (!b->s) { fprintf(stderr, "ref_unigram: out of memory\n"); exit(1); }
  }
  memcpy(b->s + b->n, s, n);
  b->n += n;
  b->s[b->n] = 0;
}

static void die(const char *what) { fprintf(stderr, "ref_unigram: %s: %s\n", what, lm_last_error()); exit(1); }

/* Unicode White_Space (Rust's char::is_whitespace) at s; its length, 0 if not. */
static size_t white(const uint8_t *s, size_t n) {
  static const uint32_t WS[] = {0x85, 0xA0, 0x1680, 0x2000, 0x2001, 0x2002, 0x2003, 0x2004, 0x2005, 0x2006, 0x2007,
                                0x2008, 0x2009, 0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000};
  if (s[0] == ' ' || (s[0] >= 9 && s[0] <= 13)) return 1;
  size_t l = lm_utf8_char(s, n);
  if (l < 2) return 0;
  uint32_t c = l == 2 ? (uint32_t)(s[0] & 0x1F) << 6 | (s[1] & 0x3F)
                      : l == 3 ? (uint32_t)(s[0] & 0x0F) << 12 | (uint32_t)(s[1] & 0x3F) << 6 | (s[2] & 0x3F) : 0;
  for (size_t i = 0; i < sizeof WS / sizeof *WS; i++)
    if (WS[i] == c) return l;
  return 0;
}

#define META "\xE2\x96\x81"   /* ▁ */

typedef struct { lm_precompiled *pc; uint32_t *ids; size_t n, cap; } ctx;

static void model_encode(lm_tok_encoder *e, ctx *c, const char *s, size_t n) {
  if (n && lm_tok_encoder_encode(e, s, n, 0, &c->ids, &c->n, &c->cap)) die("encode");
}

/* SentencePiece: normalize, whitespace rules, one Viterbi. */
static void encode_spm(lm_tok_encoder *e, ctx *c, const char *text, size_t len) {
  char *norm; size_t nn;
  if (lm_precompiled_normalize_as(c->pc, LM_PRECOMPILED_SPM, text, len, &norm, &nn)) die("normalize");
  buf o = {0};
  put(&o, "", 0);
  size_t i = 0;
  while (i < nn && norm[i] == ' ') i++;
  if (i < nn) {
    put(&o, META, 3);
    int prev_space = 1;
    for (; i < nn; i++) {
      if (norm[i] == ' ') {
        if (!prev_space) put(&o, META, 3);
        prev_space = 1;
      } else { put(&o, norm + i, 1); prev_space = 0; }
    }
    while (o.n >= 3 && !memcmp(o.s + o.n - 3, META, 3)) o.n -= 3;
  }
  model_encode(e, c, o.s, o.n);
  free(norm); free(o.s);
}

/* Hugging Face, one stretch between added tokens. */
static lm_status hf_span(lm_tok_encoder *e, const char *s, size_t n, int64_t special, void *user) {
  ctx *c = user;
  if (special >= 0) {
    if (lm_tok_reserve(&c->ids, &c->n, &c->cap, 1)) die("reserve");
    c->ids[c->n++] = (uint32_t)special;
    return LM_OK;
  }
  char *norm; size_t nn;
  if (lm_precompiled_normalize(c->pc, s, n, &norm, &nn)) die("normalize");
  const uint8_t *u = (const uint8_t *)norm;
  /* Strip(right): trailing White_Space */
  while (nn > 0) {
    size_t j = nn - 1;
    while (j > 0 && (u[j] & 0xC0) == 0x80) j--;   /* the last character's start */
    size_t l = white(u + j, nn - j);
    if (!l || j + l != nn) break;
    nn = j;
  }
  /* Replace(" {2,}", "▁") */
  buf r = {0};
  put(&r, "", 0);
  for (size_t i = 0; i < nn;) {
    size_t j = i;
    while (j < nn && norm[j] == ' ') j++;
    if (j - i >= 2) { put(&r, META, 3); i = j; }
    else { put(&r, norm + i, 1); i++; }
  }
  /* WhitespaceSplit, then Metaspace on each word */
  const uint8_t *w = (const uint8_t *)r.s;
  buf piece = {0};
  for (size_t i = 0; i < r.n;) {
    size_t l = white(w + i, r.n - i);
    if (l) { i += l; continue; }
    size_t j = i;
    while (j < r.n && !white(w + j, r.n - j)) j++;
    piece.n = 0;
    if (j - i < 3 || memcmp(w + i, META, 3)) put(&piece, META, 3);
    put(&piece, w + i, j - i);
    /* split before every ▁ after the first byte */
    size_t a = 0;
    for (size_t k = 1; k + 3 <= piece.n; k++)
      if (!memcmp(piece.s + k, META, 3)) { model_encode(e, c, piece.s + a, k - a); a = k; }
    model_encode(e, c, piece.s + a, piece.n - a);
    i = j;
  }
  free(piece.s); free(r.s); free(norm);
  return LM_OK;
}

static void print_json_string(const char *s, size_t n) {
  char *z = malloc(n + 1);
  memcpy(z, s, n); z[n] = 0;
  cJSON *j = cJSON_CreateString(z);
  char *p = cJSON_PrintUnformatted(j);
  puts(p);
  free(p); cJSON_Delete(j); free(z);
}

int main(int argc, char **argv) {
  if (argc < 4) { fprintf(stderr, "usage: ref_unigram spm|hf|norm-hf|norm-spm|bench MODEL.json CHARSMAP.bin [TEXT]\n"); return 2; }
  const char *mode = argv[1];
  char *json, *blob; size_t jn, bn;
  if (lm_read_file(argv[2], &json, &jn)) die(argv[2]);
  if (lm_read_file(argv[3], &blob, &bn)) die(argv[3]);
  lm_tokenizer *t;
  if (lm_tokenizer_from_json(&t, json, jn, argv[2])) die("model");
  ctx c = {0};
  if (lm_precompiled_new(&c.pc, (const uint8_t *)blob, bn, argv[3])) die("charsmap");
  lm_tok_encoder *e;
  if (lm_tok_encoder_init(&e, t)) die("encoder");
  if (!strcmp(mode, "bench")) {
    char *text; size_t tn;
    if (argc < 5 || lm_read_file(argv[4], &text, &tn)) die("bench text");
    double best[5];
    for (int r = 0; r < 5; r++) {
      double t0 = lm_time_sec();
      size_t total = 0;
      for (size_t i = 0; i < tn;) {
        const char *nl = memchr(text + i, '\n', tn - i);
        size_t j = nl ? (size_t)(nl - text) : tn;
        c.n = 0;
        encode_spm(e, &c, text + i, j - i);
        total += c.n;
        i = j + 1;
      }
      best[r] = (double)tn / 1e6 / (lm_time_sec() - t0);
      if (r == 0) fprintf(stderr, "ref_unigram: %zu bytes -> %zu ids\n", tn, total);
    }
    for (int a = 0; a < 5; a++)
      for (int b = a + 1; b < 5; b++)
        if (best[b] < best[a]) { double x = best[a]; best[a] = best[b]; best[b] = x; }
    printf("%.3f\n", best[2]);
    free(text);
  } else {
    char *line = NULL; size_t lcap = 0; ssize_t got;
    while ((got = getline(&line, &lcap, stdin)) > 0) {
      cJSON *s = cJSON_Parse(line);
      if (!cJSON_IsString(s)) { fprintf(stderr, "ref_unigram: a line is not a JSON string\n"); return 1; }
      const char *x = s->valuestring;
      size_t xn = strlen(x);
      c.n = 0;
      if (!strcmp(mode, "spm")) encode_spm(e, &c, x, xn);
      else if (!strcmp(mode, "hf")) {
        if (lm_tok_encoder_split(e, x, xn, hf_span, &c)) die("split");
      } else {
        char *norm; size_t nn;
        if (lm_precompiled_normalize_as(c.pc, strcmp(mode, "norm-spm") ? LM_PRECOMPILED_HF : LM_PRECOMPILED_SPM, x, xn, &norm, &nn))
          die("normalize");
        print_json_string(norm, nn);
        free(norm);
        cJSON_Delete(s);
        continue;
      }
      for (size_t i = 0; i < c.n; i++) printf(i ? " %u" : "%u", c.ids[i]);
      putchar('\n');
      cJSON_Delete(s);
    }
    free(line);
  }
  fflush(stdout);
  lm_tok_encoder_free(e);
  lm_precompiled_free(c.pc);
  lm_tokenizer_free(t);
  free(c.ids); free(json); free(blob);
  return 0;
}
