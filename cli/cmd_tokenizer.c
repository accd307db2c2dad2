/* cmd_tokenizer.c — `lmkit tokenizer train|encode|decode`.
 *
 * train learns a byte-level BPE from text files and writes tokenizer.json +
 * vocab.json + merges.txt; encode and decode filter stdin to stdout. A
 * tokenizer is a directory (tokenizer.json, vocab.json + merges.txt, or
 * encoder.json + vocab.bpe), a tokenizer.json file, "gpt2" or "byte". */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli.h"
#include "tokenizer/tokenizer.h"

static const char *HELP =
  "usage: lmkit tokenizer train --data FILE... --vocab-size N --out DIR [--special TOKEN...]\n"
  "       lmkit tokenizer encode --tokenizer T [--ids] [--allow-special] [--add-special]   (stdin -> stdout)\n"
  "       lmkit tokenizer decode --tokenizer T [--skip-special]                            (ids on stdin -> text)\n"
  "\n"
  "T is a directory (tokenizer.json, vocab.json + merges.txt, encoder.json + vocab.bpe, or BERT's vocab.txt),\n"
  "a tokenizer.json file, 'gpt2' (OpenAI's GPT-2 files) or 'byte' (256 bytes + <|endoftext|>).\n"
  "\n"
  "train:\n"
  "  --data FILE...        training text (a directory means its files)\n"
  "  --vocab-size N        total vocabulary, special tokens included (>= 256 + specials)\n"
  "  --out DIR             writes DIR/tokenizer.json, DIR/vocab.json, DIR/merges.txt\n"
  "  --special TOKEN...    more special tokens after the merges (<|endoftext|> and ChatML's\n"
  "                       <|im_start|>, <|im_end|> are always included)\n"
  "  --min-frequency N     merge only pairs seen at least N times (default 2)\n"
  "  --threads N           threads for counting (default: all cores)\n"
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

static int do_train(int argc, char **argv) {
  const char *data[4096], *special[256], *out = NULL, *v;
  int n_data = 0, n_special = 0, r;
  int64_t vocab = 0, minf = 2, threads = 0;
  /* end of text, and ChatML's turn markers: models lmkit trains get ChatML as their chat template */
  special[n_special++] = "<|endoftext|>";
  special[n_special++] = "<|im_start|>";
  special[n_special++] = "<|im_end|>";
  for (int i = 1; i < argc; i++) {
    if (cli_is_help(argv[i])) { fputs(HELP, stdout); return 0; }
    if (!strcmp(argv[i], "--data")) { if (multi(argc, argv, &i, data, &n_data, 4096, "--data")) return 1; continue; }
    if (!strcmp(argv[i], "--special")) {
      int before = n_special;
      if (multi(argc, argv, &i, special, &n_special, 256, "--special")) return 1;
      /* drop duplicates (e.g. an explicit <|endoftext|>) */
      for (int k = before; k < n_special; k++)
        for (int j = 0; j < k; j++)
          if (!strcmp(special[j], special[k])) { special[k--] = special[--n_special]; break; }
      continue;
    }
    if ((r = cli_opt(argc, argv, &i, "--vocab-size", &v))) { if (r < 0 || cli_i64("--vocab-size", v, 257, LM_TOK_MAX_VOCAB - 1, &vocab)) return 1; continue; }
    if ((r = cli_opt(argc, argv, &i, "--min-frequency", &v))) { if (r < 0 || cli_i64("--min-frequency", v, 1, INT64_MAX, &minf)) return 1; continue; }
    if ((r = cli_opt(argc, argv, &i, "--threads", &v))) { if (r < 0 || cli_i64("--threads", v, 1, 4096, &threads)) return 1; continue; }
    if ((r = cli_opt(argc, argv, &i, "--out", &out))) { if (r < 0) return 1; continue; }
    return cli_unknown("tokenizer train", argv[i]);
  }
  if (!n_data) return cli_error("tokenizer train needs --data FILE...");
  if (!vocab) return cli_error("tokenizer train needs --vocab-size N");
  if (!out) return cli_error("tokenizer train needs --out DIR");
  for (int k = 0; k < n_special; k++)
    if (!special[k][0]) return cli_error("--special: a special token cannot be empty");
  lm_bpe_train_opts o = {.vocab_size = vocab, .special = special, .n_special = n_special, .min_frequency = minf,
                         .progress = 1, .threads = (int)threads};
  lm_tokenizer *tok;
  double t0 = lm_time_sec();
  if (lm_tokenizer_train(&tok, data, n_data, &o)) return cli_fail();
  if (lm_tokenizer_save(tok, out)) { lm_tokenizer_free(tok); return cli_fail(); }
  fprintf(stderr, "trained %lld tokens (%lld merges) in %.2f s; wrote %s/tokenizer.json, vocab.json, merges.txt\n",
          (long long)lm_tokenizer_vocab_size(tok), (long long)lm_bpe_n_merges(tok), lm_time_sec() - t0, out);
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
