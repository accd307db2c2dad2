/* cmd_score.c — `lmkit score`: a reward model's score of conversations read
 * from stdin (docs/posttraining.md "Scoring"). Each line is a {"prompt",
 * "response"} record; it is rendered with the model's chat template exactly
 * as `lmkit reward` rendered its training pairs, and the scalar head's output
 * at the last token is printed, one line per input line, in order. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "cli.h"
#include "base/base.h"
#include "model/heads.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "train/posttrain.h"

static const char *HELP =
  "usage: lmkit score --model RM [--batch N] [--threads N] < records.jsonl\n"
  "       lmkit score --adapter DIR [--model BASE] ... < records.jsonl\n"
  "\n"
  "Prints the reward that a reward model (from 'lmkit reward') gives each record on\n"
  "stdin, one number per line, in input order. A record is one JSON object per line:\n"
  "  {\"prompt\": P, \"response\": R}\n"
  "P is a string (one user message) or a list of {\"role\", \"content\"} messages; R is a\n"
  "string (one assistant message) or a message list ending with the assistant's. The\n"
  "conversation is rendered with the model's chat template, as 'lmkit reward' renders\n"
  "its pairs. A record longer than the model's positions prints null (counted on\n"
  "stderr); a malformed line is an error naming its line.\n"
  "\n"
  "options:\n"
  "  --model DIR          a reward model directory (scalar head); with --adapter, the base\n"
  "  --adapter DIR        a LoRA reward adapter ('lmkit reward --lora-rank R'): the base (--model,\n"
  "                       default adapter_config.json's base_model_name_or_path) gets the\n"
  "                       scalar head, then the adapter and its trained head\n"
  "  --batch N            records per forward pass (16)\n"
  "  --threads N          threads (default: all cores)\n";

int cmd_score(int argc, char **argv) {
  const char *dir = NULL, *adapter = NULL, *v;
  int64_t batch = 16, threads = 0;
  int r;
  for (int i = 1; i < argc; i++) {
    const char *f = argv[i];
    if (cli_is_help(f)) { fputs(HELP, stdout); return 0; }
    if ((r = cli_opt(argc, argv, &i, "--model", &v)) < 0) return 1; else if (r) { dir = v; continue; }
    if ((r = cli_opt(argc, argv, &i, "--adapter", &v)) < 0) return 1; else if (r) { adapter = v; continue; }
    if ((r = cli_opt(argc, argv, &i, "--batch", &v)) < 0) return 1;
    else if (r) { if (cli_i64(f, v, 1, 1 << 16, &batch)) return 1; continue; }
    if ((r = cli_opt(argc, argv, &i, "--threads", &v)) < 0) return 1;
    else if (r) { if (cli_i64(f, v, 1, 4096, &threads)) return 1; continue; }
    return cli_unknown("score", f);
  }
  if (!dir && !adapter) return cli_error("--model DIR is required (see 'lmkit score --help')");
  lm_set_threads((int)threads);
  int rc = 0;
  lm_model *m = NULL;
  lm_tokenizer *tok = NULL;
  lm_chat_config cc = {0};
  char **lines = NULL;
  uint32_t **seq = NULL;
  size_t *len = NULL;
  int32_t *ids = NULL;
  uint8_t *mask = NULL;
  float *out = NULL;
  int64_t lineno = 0, too_long = 0, T = 0;
  char *base = NULL;
#define FAIL() do { rc = cli_fail(); goto done; } while (0)
  /* with --adapter: the base with the adapter's scalar head, the adapter merged in */
  if (cli_load_with_adapter(dir, adapter, 1, &m, &base)) { rc = 1; goto done; }
  if (m->cfg.head != LM_HEAD_SCALAR) {
    rc = cli_error("%s has the %s head, not a reward model's scalar head (train one with 'lmkit reward')",
                   adapter ? adapter : dir, lm_head_name(m->cfg.head));
    goto done;
  }
  if (lm_tokenizer_load(&tok, base) || lm_chat_config_load(&cc, base)) FAIL();
  T = m->cfg.n_positions;
  lines = calloc((size_t)batch, sizeof *lines);
  seq = calloc((size_t)batch, sizeof *seq);
  len = calloc((size_t)batch, sizeof *len);
  ids = malloc((size_t)(batch * T) * sizeof *ids);
  mask = malloc((size_t)(batch * T));
  out = malloc((size_t)batch * sizeof *out);
  if (!lines || !seq || !len || !ids || !mask || !out) { rc = cli_error("out of memory"); goto done; }
  if (lm_model_reserve(m, batch, T, 0)) FAIL();
  int32_t pad = (int32_t)(m->cfg.pad_token_id >= 0 ? m->cfg.pad_token_id : 0);
  for (int eof = 0; !eof;) {
    int64_t nb = cli_read_lines(lines, batch, &eof);
    if (!nb) break;
    lm_status st = LM_OK;
    int64_t Tb = 1;
    for (int64_t b = 0; b < nb; b++) {
      char where[64];
      snprintf(where, sizeof where, "stdin:%lld", (long long)(lineno + b + 1));
      cJSON *rec = st ? NULL : cJSON_Parse(lines[b]), *conv = NULL;
      uint8_t *resp = NULL;
      if (!st && !rec) st = lm_error(LM_ERR_FORMAT, "%s: not valid JSON (expected {\"prompt\": ..., \"response\": ...})", where);
      if (!st) st = lm_pref_prompt_response(rec, where, &conv);
      if (!st && (st = lm_chat_encode(&cc, tok, conv, 1, &seq[b], &resp, &len[b]))) lm_error_prefix(st, "%s", where);
      if (!st && (int64_t)len[b] > Tb && (int64_t)len[b] <= T) Tb = (int64_t)len[b];
      free(resp);
      cJSON_Delete(rec); cJSON_Delete(conv);
      free(lines[b]); lines[b] = NULL;
    }
    if (st) FAIL();
    int64_t nr = 0;   /* rows that fit */
    for (int64_t b = 0; b < nb; b++) {
      if ((int64_t)len[b] > T || len[b] == 0) continue;
      for (int64_t t = 0; t < Tb; t++) {
        int real = t < (int64_t)len[b];
        ids[nr * Tb + t] = real ? (int32_t)seq[b][t] : pad;
        mask[nr * Tb + t] = (uint8_t)real;
      }
      nr++;
    }
    if (nr && lm_reward_score(m, ids, mask, nr, Tb, out)) FAIL();
    for (int64_t b = 0, k = 0; b < nb; b++) {
      if ((int64_t)len[b] > T || len[b] == 0) { puts("null"); too_long++; }
      else printf("%.6f\n", (double)out[k++]);
      free(seq[b]); seq[b] = NULL; len[b] = 0;
    }
    fflush(stdout);
    lineno += nb;
  }
  if (too_long)
    fprintf(stderr, "lmkit score: %lld of %lld records are longer than the model's %lld positions: scored null\n",
            (long long)too_long, (long long)lineno, (long long)T);
#undef FAIL
done:
  for (int64_t b = 0; b < batch; b++) {
    if (lines) free(lines[b]);
    if (seq) free(seq[b]);
  }
  free(lines); free(seq); free(len); free(ids); free(mask); free(out);
  lm_chat_config_free(&cc);
  lm_tokenizer_free(tok);
  lm_model_free(m);
  free(base);
  return rc;
}
