/* ref_unigram.c — driver for tests/reference/test_unigram.py and
 * bench/tokenize_unigram.sh: lmkit's precompiled charsmap under SentencePiece's
 * rule + the Unigram model, with SentencePiece's whitespace handling around
 * them, i.e. what sentencepiece's SentencePieceProcessor::Encode does.
 *
 * usage: ref_unigram spm|bench MODEL.json CHARSMAP.bin [TEXT_FILE]
 *   MODEL.json   a tokenizer.json holding the Unigram model and added tokens only
 *   CHARSMAP.bin the precompiled charsmap (raw bytes)
 *   spm    reads one JSON string per stdin line, prints its ids per line: the map
 *          by SentencePiece's rule (longest key), then its whitespace rules
 *          (remove_extra_whitespaces, add_dummy_prefix, escape_whitespaces:
 *          leading and repeated spaces dropped, "▁" in front, spaces become "▁",
 *          trailing "▁"s dropped), one Viterbi over the whole string;
 *   bench  encodes TEXT_FILE line by line the same way on this thread, prints MB/s
 *          of wall-clock time and of CPU time (medians of 5 runs).
 * (Hugging Face's rule is tested through the whole tokenizer.json pipeline.) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cjson/cJSON.h>
#include "tokenizer/precompiled.h"
#include "tokenizer/pipeline.h"
#include "tokenizer/tokenizer.h"

static void die(const char *what);

static void put(lm_tok_buf *b, const void *s, size_t n) {
  if (lm_tok_buf_put(b, s, n)) die("buffer");
}

static void die(const char *what) { fprintf(stderr, "ref_unigram: %s: %s\n", what, lm_last_error()); exit(1); }

#define META "\xE2\x96\x81"   /* ▁ */

typedef struct { lm_precompiled *pc; uint32_t *ids; size_t n, cap; } ctx;

/* The model alone (the pipeline's normalizer and pre-tokenizer are what this driver replaces). */
static void model_encode(lm_tok_encoder *e, ctx *c, const char *s, size_t n) {
  if (n && e->t->ops->encode(e, s, n, &c->ids, &c->n, &c->cap)) die("encode");
}

/* SentencePiece: normalize, whitespace rules, one Viterbi. */
static void encode_spm(lm_tok_encoder *e, ctx *c, const char *text, size_t len) {
  char *norm; size_t nn;
  if (lm_precompiled_normalize_as(c->pc, LM_PRECOMPILED_SPM, text, len, &norm, &nn)) die("normalize");
  lm_tok_buf o = {0};
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
    while (o.n >= 3 && !memcmp(o.p + o.n - 3, META, 3)) o.n -= 3;
  }
  model_encode(e, c, o.p, o.n);
  free(norm); free(o.p);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  if (argc < 4 || (strcmp(argv[1], "spm") && strcmp(argv[1], "bench"))) {
    fprintf(stderr, "usage: ref_unigram spm|bench MODEL.json CHARSMAP.bin [TEXT]\n");
    return 2;
  }
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
    double wall[5], cpu[5];   /* MB/s of wall-clock and of CPU time (less sensitive to a busy machine) */
    for (int r = 0; r < 5; r++) {
      double t0 = lm_time_sec();
      clock_t c0 = clock();
      size_t total = 0;
      for (size_t i = 0; i < tn;) {
        const char *nl = memchr(text + i, '\n', tn - i);
        size_t j = nl ? (size_t)(nl - text) : tn;
        c.n = 0;
        encode_spm(e, &c, text + i, j - i);
        total += c.n;
        i = j + 1;
      }
      wall[r] = (double)tn / 1e6 / (lm_time_sec() - t0);
      cpu[r] = (double)tn / 1e6 / ((double)(clock() - c0) / CLOCKS_PER_SEC);
      if (r == 0) fprintf(stderr, "ref_unigram: %zu bytes -> %zu ids\n", tn, total);
    }
    qsort(wall, 5, sizeof *wall, cmp_double);
    qsort(cpu, 5, sizeof *cpu, cmp_double);
    printf("%.3f %.3f\n", wall[2], cpu[2]);
    free(text);
  } else {
    char *line = NULL; size_t lcap = 0; ssize_t got;
    while ((got = getline(&line, &lcap, stdin)) > 0) {
      cJSON *s = cJSON_Parse(line);
      if (!cJSON_IsString(s)) { fprintf(stderr, "ref_unigram: a line is not a JSON string\n"); return 1; }
      const char *x = s->valuestring;
      size_t xn = strlen(x);
      c.n = 0;
      encode_spm(e, &c, x, xn);
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
