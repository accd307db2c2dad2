/* cmd_tokenizer.c — `lmkit tokenizer train|encode|decode`.
 *
 * train learns a tokenizer from text files with a trainer chosen from a table
 * (--model): a byte-level BPE (src/tokenizer/train.c; tokenizer.json +
 * vocab.json + merges.txt) or a SentencePiece-style Unigram
 * (src/tokenizer/unigram_train.c; tokenizer.json); encode and decode filter
 * stdin to stdout. A
 * tokenizer is a directory (tokenizer.json, vocab.json + merges.txt, or
 * encoder.json + vocab.bpe), a tokenizer.json file, "gpt2" or "byte". */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli.h"
#include "tokenizer/tokenizer.h"

static const char *HELP =
  "usage: lmkit tokenizer train --data FILE... --vocab-size N --out DIR [--model bpe|unigram] [--special TOKEN...]\n"
  "       lmkit tokenizer encode --tokenizer T [--ids] [--allow-special] [--add-special]   (stdin -> stdout)\n"
  "       lmkit tokenizer decode --tokenizer T [--skip-special]                            (ids on stdin -> text)\n"
  "\n"
  "T is a directory (tokenizer.json, vocab.json + merges.txt, encoder.json + vocab.bpe, or BERT's vocab.txt),\n"
  "a tokenizer.json file, 'gpt2' (OpenAI's GPT-2 files) or 'byte' (256 bytes + <|endoftext|>).\n"
  "\n"
  "train:\n"
  "  --data FILE...        training text (a directory means its files)\n"
  "  --model bpe|unigram   byte-level BPE (default), or SentencePiece's Unigram: EM over seed pieces\n"
  "                        pruned by 0.75 a round, a Metaspace (\xe2\x96\x81) pre-tokenizer, NFKC (docs/tokenizer.md)\n"
  "  --vocab-size N        total vocabulary, special tokens included (BPE: >= 256 + specials)\n"
  "  --out DIR             writes DIR/tokenizer.json (BPE: and DIR/vocab.json, DIR/merges.txt)\n"
  "  --special TOKEN...    more special tokens after the vocabulary (<|endoftext|> and ChatML's\n"
  "                       <|im_start|>, <|im_end|> are always included)\n"
  "  --sentinels N         T5's sentinels <extra_id_N-1> .. <extra_id_0> last, so <extra_id_0> has the\n"
  "                        highest id (0)\n"
  "  --min-frequency N     BPE: merge only pairs seen at least N times (default 2)\n"
  "  --byte-fallback       Unigram: <0x00>..<0xFF> pieces, so that no character is unknown\n"
  "  --threads N           threads (default: all cores)\n"
  "encode:\n"
  "  --ids                 print ids separated by single spaces (default: the tokens as byte-level symbols)\n"
  "  --allow-special       match special tokens such as <|endoftext|> in the text (default: plain text)\n"
  "  --add-special         add the tokenizer.json post-processor's tokens (Llama's <s> / <|begin_of_text|>,\n"
  "                        BERT's [CLS] ... [SEP]), as Hugging Face's tokenizer(text) does\n"
  "decode:\n"
  "  --skip-special        leave special tokens out of the text (skip_special_tokens=True)\n";

/* Collects the values after a multi-value flag (until the next --flag). */
static int multi(int argc, char **argv, int *i, const char **vals, int *n, int max, const char *flag) {
  int got = 0;
  while (*i + 1 < argc && strncmp(argv[*i + 1], "--", 2) != 0) {
    if (*n >= max) return cli_error("too many values for %s (at most %d)", flag, max);
    vals[(*n)++] = argv[++*i];
    got++;
  }
  if (!got) return cli_error("option %s needs at least one value", flag);
  return 0;
}

static char *read_stdin(size_t *len) {
  size_t cap = 1 << 16, n = 0;
  char *buf = malloc(cap + 1);
  if (!buf) return NULL;
  for (;;) {
    size_t r = fread(buf + n, 1, cap - n, stdin);
    n += r;
    if (r == 0) break;
    if (n == cap) {
      char *nb = realloc(buf, 2 * cap + 1);
      if (!nb) { free(buf); return NULL; }
      buf = nb; cap *= 2;
    }
  }
  if (ferror(stdin)) { free(buf); return NULL; }
  buf[n] = 0;
  *len = n;
  return buf;
}

/* what `tokenizer train` parsed, for the trainer of --model */
typedef struct {
  const char **data, **special; int n_data, n_special;
  int64_t vocab, minf, threads;
  int minf_given, byte_fallback;
} train_args;

static lm_status train_bpe(lm_tokenizer **tok, const train_args *a) {
  if (a->byte_fallback) return lm_error(LM_ERR_ARG, "--byte-fallback is for --model unigram (a byte-level BPE has every byte)");
  lm_bpe_train_opts o = {.vocab_size = a->vocab, .special = a->special, .n_special = a->n_special, .min_frequency = a->minf,
                         .progress = 1, .threads = (int)a->threads};
  return lm_tokenizer_train(tok, a->data, a->n_data, &o);
}

static lm_status train_unigram(lm_tokenizer **tok, const train_args *a) {
  if (a->minf_given) return lm_error(LM_ERR_ARG, "--min-frequency is for --model bpe");
  lm_unigram_train_opts o = {.vocab_size = a->vocab, .special = a->special, .n_special = a->n_special,
                             .byte_fallback = a->byte_fallback, .progress = 1, .threads = (int)a->threads};
  return lm_unigram_train(tok, a->data, a->n_data, &o);
}

static const struct {
  const char *name, *files;
  lm_status (*train)(lm_tokenizer **tok, const train_args *a);
} TRAINERS[] = {{"bpe", "tokenizer.json, vocab.json, merges.txt", train_bpe}, {"unigram", "tokenizer.json", train_unigram}};

static int do_train(int argc, char **argv) {
  const char *data[4096], *special[256 + 1024], *out = NULL, *v, *model = "bpe";
  char sentinel[1024][32];
  train_args a = {.data = data, .special = special, .minf = 2};
  int r;
  int64_t sentinels = 0;
  /* end of text, and ChatML's turn markers: models lmkit trains get ChatML as their chat template */
  special[a.n_special++] = "<|endoftext|>";
  special[a.n_special++] = "<|im_start|>";
  special[a.n_special++] = "<|im_end|>";
  for (int i = 1; i < argc; i++) {
    if (cli_is_help(argv[i])) { fputs(HELP, stdout); return 0; }
    if (!strcmp(argv[i], "--data")) { if (multi(argc, argv, &i, data, &a.n_data, 4096, "--data")) return 1; continue; }
    if (!strcmp(argv[i], "--special")) {
      int before = a.n_special;
      if (multi(argc, argv, &i, special, &a.n_special, 256, "--special")) return 1;
      /* drop duplicates (e.g. an explicit <|endoftext|>) */
      for (int k = before; k < a.n_special; k++)
        for (int j = 0; j < k; j++)
          if (!strcmp(special[j], special[k])) { special[k--] = special[--a.n_special]; break; }
      continue;
    }
    if (!strcmp(argv[i], "--byte-fallback")) { a.byte_fallback = 1; continue; }
    if ((r = cli_opt(argc, argv, &i, "--vocab-size", &v))) { if (r < 0 || cli_i64("--vocab-size", v, 2, LM_TOK_MAX_VOCAB - 1, &a.vocab)) return 1; continue; }
    if ((r = cli_opt(argc, argv, &i, "--min-frequency", &v))) { if (r < 0 || cli_i64("--min-frequency", v, 1, INT64_MAX, &a.minf)) return 1; a.minf_given = 1; continue; }
    if ((r = cli_opt(argc, argv, &i, "--threads", &v))) { if (r < 0 || cli_i64("--threads", v, 1, 4096, &a.threads)) return 1; continue; }
    if ((r = cli_opt(argc, argv, &i, "--sentinels", &v))) { if (r < 0 || cli_i64("--sentinels", v, 0, 1024, &sentinels)) return 1; continue; }
    if ((r = cli_opt(argc, argv, &i, "--out", &out))) { if (r < 0) return 1; continue; }
    if ((r = cli_opt(argc, argv, &i, "--model", &model))) { if (r < 0) return 1; continue; }
    return cli_unknown("tokenizer train", argv[i]);
  }
  int t = 0;
  while (t < (int)(sizeof TRAINERS / sizeof *TRAINERS) && strcmp(TRAINERS[t].name, model)) t++;
  if (t == (int)(sizeof TRAINERS / sizeof *TRAINERS)) return cli_error("unknown --model '%s' (bpe, unigram)", model);
  if (!a.n_data) return cli_error("tokenizer train needs --data FILE...");
  if (!a.vocab) return cli_error("tokenizer train needs --vocab-size N");
  if (!out) return cli_error("tokenizer train needs --out DIR");
  for (int k = 0; k < a.n_special; k++)
    if (!special[k][0]) return cli_error("--special: a special token cannot be empty");
  for (int64_t k = sentinels - 1; k >= 0; k--) {   /* T5's order: <extra_id_0> last, the highest id */
    snprintf(sentinel[k], sizeof sentinel[k], "<extra_id_%lld>", (long long)k);
    for (int j = 0; j < a.n_special; j++)
      if (!strcmp(special[j], sentinel[k])) return cli_error("--special %s and --sentinels: the sentinel is given twice", sentinel[k]);
    special[a.n_special++] = sentinel[k];
  }
  lm_tokenizer *tok;
  double t0 = lm_time_sec();
  if (TRAINERS[t].train(&tok, &a)) return cli_fail();
  if (lm_tokenizer_save(tok, out)) { lm_tokenizer_free(tok); return cli_fail(); }
  fprintf(stderr, "trained a %s of %lld tokens in %.2f s; wrote %s: %s\n", TRAINERS[t].name,
          (long long)lm_tokenizer_vocab_size(tok), lm_time_sec() - t0, out, TRAINERS[t].files);
  lm_tokenizer_free(tok);
  return 0;
}

static int do_encode(int argc, char **argv, int decode) {
  const char *spec = NULL;
  int ids_out = 0, flags = 0, r;
  const char *cmd = decode ? "tokenizer decode" : "tokenizer encode";
  for (int i = 1; i < argc; i++) {
    if (cli_is_help(argv[i])) { fputs(HELP, stdout); return 0; }
    if ((r = cli_opt(argc, argv, &i, "--tokenizer", &spec))) { if (r < 0) return 1; continue; }
    if (!decode && !strcmp(argv[i], "--ids")) { ids_out = 1; continue; }
    if (!decode && !strcmp(argv[i], "--allow-special")) { flags |= LM_ENCODE_SPECIAL; continue; }
    if (!decode && !strcmp(argv[i], "--add-special")) { flags |= LM_ENCODE_ADD_SPECIAL; continue; }
    if (decode && !strcmp(argv[i], "--skip-special")) { flags |= LM_DECODE_SKIP_SPECIAL; continue; }
    return cli_unknown(cmd, argv[i]);
  }
  if (!spec) return cli_error("%s needs --tokenizer T (a directory, 'gpt2' or 'byte')", cmd);
  lm_tokenizer *tok;
  if (lm_tokenizer_load(&tok, spec)) return cli_fail();
  size_t len;
  char *in = read_stdin(&len);
  if (!in) { lm_tokenizer_free(tok); return cli_error("stdin: read failed: %s", strerror(errno)); }
  int rc = 0;
  if (!decode) {
    uint32_t *ids; size_t n;
    if (lm_tokenize_buffer(tok, in, len, 0, flags, &ids, &n)) rc = cli_fail();
    else {
      for (size_t i = 0; i < n; i++) {
        if (ids_out) { printf(i ? " %u" : "%u", ids[i]); continue; }
        size_t bn; const uint8_t *b = lm_tok_bytes(tok, ids[i], &bn);
        if (i) putchar(' ');
        if (tok->is_special[ids[i]] || !lm_tok_byte_level(tok)) fwrite(b, 1, bn, stdout);   /* WordPiece tokens are text */
        else { char *s = lm_tok_symbol(b, bn); if (s) fputs(s, stdout); free(s); }
      }
      putchar('\n');
      free(ids);
    }
  } else {
    size_t cap = 1024, n = 0;
    uint32_t *ids = malloc(cap * sizeof *ids);
    char *p = in, *end = in + len;
    while (ids && p < end && !rc) {
      while (p < end && (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r')) p++;
      if (p == end) break;
      char *q = p;
      unsigned long long v = 0;
      while (q < end && *q >= '0' && *q <= '9' && v <= UINT32_MAX) v = v * 10 + (unsigned)(*q++ - '0');
      if (q == p || (q < end && !(*q == ' ' || *q == '\n' || *q == '\t' || *q == '\r')) || v > UINT32_MAX) {
        char *w = p; while (w < end && !(*w == ' ' || *w == '\n' || *w == '\t' || *w == '\r')) w++;
        rc = cli_error("stdin: token %zu: '%.*s' is not a token id", n + 1, (int)(w - p > 40 ? 40 : w - p), p);
        break;
      }
      if (n == cap) { uint32_t *ni = realloc(ids, 2 * cap * sizeof *ni); if (!ni) break; ids = ni; cap *= 2; }
      ids[n++] = (uint32_t)v;
      p = q;
    }
    if (!ids) rc = cli_error("out of memory");
    if (!rc) {
      char *text; size_t tn;
      if (lm_tokenizer_decode_ex(tok, ids, n, flags, &text, &tn)) rc = cli_fail();
      else { fwrite(text, 1, tn, stdout); free(text); }
    }
    free(ids);
  }
  free(in);
  lm_tokenizer_free(tok);
  if (fflush(stdout) != 0 && !rc) rc = cli_error("stdout: write failed: %s", strerror(errno));
  return rc;
}

int cmd_tokenizer(int argc, char **argv) {
  if (argc < 2 || cli_is_help(argv[1])) { fputs(HELP, argc < 2 ? stderr : stdout); return argc < 2 ? 2 : 0; }
  if (!strcmp(argv[1], "train")) return do_train(argc - 1, argv + 1);
  if (!strcmp(argv[1], "encode")) return do_encode(argc - 1, argv + 1, 0);
  if (!strcmp(argv[1], "decode")) return do_encode(argc - 1, argv + 1, 1);
  return cli_error("unknown subcommand 'tokenizer %s' (train, encode, decode)", argv[1]);
}
