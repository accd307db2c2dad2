/* cmd_toolformer.c — `lmkit toolformer`: Toolformer's augmented data for the
 * calculator (src/train/toolformer.h; docs/rl.md "Toolformer"). Reads JSONL
 * records, finds the arithmetic in each, keeps the calculator calls that make
 * the model predict the following text better by at least --threshold nats,
 * and writes the records back with those calls inserted, ready for
 * `lmkit sft` (conversations) or `lmkit train` (--format text).
 *
 * A {"text"} record is scored as plain text; a conversation ({"prompt",
 * "completion"} with a string completion, or {"messages"}) has the calls put
 * in its last assistant turn and is scored after its prompt rendered by the
 * model's chat template, as `lmkit sft` would see it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "cli.h"
#include "base/base.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "train/chat.h"
#include "train/toolformer.h"

static const char *HELP =
  "usage: lmkit toolformer --model DIR --data FILE.jsonl --out FILE [options]\n"
  "\n"
  "Toolformer's data for the calculator: every arithmetic expression in the records\n"
  "gets a candidate call inserted where its result is written,\n"
  "  \"77 + 33 = 110\"  ->  \"77 + 33 = <|calc|>77 + 33<|/calc|> \xe2\x86\x92 110 110\"\n"
  "and the call is kept only when it lowers the model's loss (summed NLL) of the next\n"
  "--window tokens by at least --threshold compared with the smaller of no call and\n"
  "the call without its result. Records:\n"
  "  {\"text\": T}                          scored as plain text\n"
  "  {\"prompt\": P, \"completion\": C}       C a string; scored after the prompt rendered\n"
  "  {\"messages\": [...]}                  by the chat template; calls go in the last\n"
  "                                       assistant turn\n"
  "Other members are kept. Records without a kept call are written unchanged.\n"
  "\n"
  "options:\n"
  "  --model DIR          the decoder that scores (usually the model to be tuned)\n"
  "  --data FILE          JSONL records\n"
  "  --out FILE           the augmented records\n"
  "  --threshold X        tau, in nats (1.0)\n"
  "  --window N           following tokens scored (5)\n"
  "  --format F           jsonl (the records, for 'lmkit sft') or text (one record's text\n"
  "                       or completion a line, for 'lmkit train'; text records only) (jsonl)\n"
  "  --kept-only          write only the records that got a call\n"
  "  --report FILE        one JSON line per candidate: expression, result, the three losses, kept\n"
  "  --batch N            candidates per forward pass (16)\n"
  "  --threads N          threads (default: all cores)\n";

/* the string the calls go into: rec's "text", "completion", or the last assistant message's
 * "content" (its parent object and key in *obj, *key); *chat 1 for a conversation */
static int target_of(cJSON *rec, const char *where, cJSON **obj, const char **key, int *chat) {
  cJSON *t = cJSON_GetObjectItemCaseSensitive(rec, "text"), *c = cJSON_GetObjectItemCaseSensitive(rec, "completion"),
        *ms = cJSON_GetObjectItemCaseSensitive(rec, "messages");
  *obj = NULL; *chat = 0;
  if (cJSON_IsString(t) && !c && !ms) { *obj = rec; *key = "text"; return 0; }
  if (cJSON_IsString(c) && cJSON_GetObjectItemCaseSensitive(rec, "prompt") && !t && !ms) { *obj = rec; *key = "completion"; *chat = 1; return 0; }
  if (cJSON_IsArray(ms) && !t && !c) {
    for (cJSON *m = ms->child; m; m = m->next) {
      cJSON *r = cJSON_GetObjectItemCaseSensitive(m, "role");
      if (cJSON_IsString(r) && !strcmp(r->valuestring, "assistant") && cJSON_IsString(cJSON_GetObjectItemCaseSensitive(m, "content"))) *obj = m;
    }
    if (*obj) { *key = "content"; *chat = 1; return 0; }
    return cli_error("%s: the messages have no assistant turn with string content for the calls", where);
  }
  return cli_error("%s: toolformer reads {\"text\": string}, {\"prompt\", \"completion\": string} or {\"messages\"} records", where);
}

/* the ids before the last assistant turn's span (the rendered prompt), malloc'ed */
static int chat_context(const lm_chat_config *cc, const lm_tokenizer *tok, const cJSON *rec, const char *where,
                        uint32_t **ctx, int64_t *n_ctx) {
  cJSON *conv = NULL;
  const char *why = NULL;
  uint8_t *mask = NULL;
  size_t n = 0;
  *ctx = NULL; *n_ctx = 0;
  if (lm_chat_record_messages(rec, where, &conv, &why)) return cli_fail();
  if (!conv) return cli_error("%s: %s assistant turn", where, why && !strcmp(why, "empty") ? "an empty" : "no");
  lm_status st = lm_chat_encode(cc, tok, conv, 1, ctx, &mask, &n);
  cJSON_Delete(conv);
  if (st) { lm_error_prefix(st, "%s", where); return cli_fail(); }
  size_t k = 0;
  while (k < n && !mask[k]) k++;
  free(mask);
  *n_ctx = (int64_t)k;
  return 0;
}

static void report_line(FILE *f, int64_t line, const char *text, const lm_toolformer_cand *x) {
  char *e = malloc(x->end - x->start + 1);
  if (!e) return;
  memcpy(e, text + x->start, x->end - x->start); e[x->end - x->start] = 0;
  fprintf(f, "{\"line\": %lld, \"expression\": ", (long long)line);
  cli_json_str(f, e);
  fprintf(f, ", \"result\": ");
  cli_json_str(f, x->result);
  fprintf(f, ", \"at\": %zu, \"tokens\": %lld, \"loss_none\": %.9g, \"loss_no_result\": %.9g, \"loss_call\": %.9g, \"keep\": %s}\n",
          x->at, (long long)x->scored, x->loss_none, x->loss_no_result, x->loss_call, x->keep ? "true" : "false");
  free(e);
}

int cmd_toolformer(int argc, char **argv) {
  const char *dir = NULL, *data = NULL, *out = NULL, *report = NULL, *format = "jsonl", *v;
  lm_toolformer_opts o = {.threshold = 1.0, .window = 5, .batch = 16};
  int64_t threads = 0;
  int r, kept_only = 0;
  float thr = 1.0f;
  for (int i = 1; i < argc; i++) {
    const char *f = argv[i];
    if (cli_is_help(f)) { fputs(HELP, stdout); return 0; }
    if (!strcmp(f, "--kept-only")) { kept_only = 1; continue; }
    if ((r = cli_opt(argc, argv, &i, "--model", &v)) < 0) return 1; else if (r) { dir = v; continue; }
    if ((r = cli_opt(argc, argv, &i, "--data", &v)) < 0) return 1; else if (r) { data = v; continue; }
    if ((r = cli_opt(argc, argv, &i, "--out", &v)) < 0) return 1; else if (r) { out = v; continue; }
    if ((r = cli_opt(argc, argv, &i, "--report", &v)) < 0) return 1; else if (r) { report = v; continue; }
    if ((r = cli_opt(argc, argv, &i, "--format", &v)) < 0) return 1; else if (r) { format = v; continue; }
    if ((r = cli_opt(argc, argv, &i, "--threshold", &v)) < 0) return 1;
    else if (r) { if (cli_f32(f, v, -1e30f, 1e30f, &thr)) return 1; o.threshold = thr; continue; }
    if ((r = cli_opt(argc, argv, &i, "--window", &v)) < 0) return 1;
    else if (r) { if (cli_i64(f, v, 1, 1 << 20, &o.window)) return 1; continue; }
    if ((r = cli_opt(argc, argv, &i, "--batch", &v)) < 0) return 1;
    else if (r) { if (cli_i64(f, v, 1, 1 << 16, &o.batch)) return 1; continue; }
    if ((r = cli_opt(argc, argv, &i, "--threads", &v)) < 0) return 1;
    else if (r) { if (cli_i64(f, v, 1, 4096, &threads)) return 1; continue; }
    return cli_unknown("toolformer", f);
  }
  if (!dir || !data || !out) return cli_error("--model DIR, --data FILE and --out FILE are required (see 'lmkit toolformer --help')");
  int text_out = !strcmp(format, "text");
  if (!text_out && strcmp(format, "jsonl")) return cli_error("unknown --format '%s' (jsonl or text)", format);
  lm_set_threads((int)threads);
  int rc = 0;
  lm_model *m = NULL;
  lm_tokenizer *tok = NULL;
  lm_chat_config cc = {0};
  char *text = NULL;
  size_t len = 0;
  FILE *fo = NULL, *fr = NULL;
  int64_t records = 0, found = 0, kept = 0, with_call = 0, unscored = 0;
#define FAIL() do { rc = cli_fail(); goto done; } while (0)
  if (lm_model_load(&m, dir) || lm_tokenizer_load(&tok, dir) || lm_chat_config_load(&cc, dir)) FAIL();
  if (lm_read_file(data, &text, &len)) FAIL();
  if (!(fo = fopen(out, "w"))) { rc = cli_error("cannot write %s", out); goto done; }
  if (report && !(fr = fopen(report, "w"))) { rc = cli_error("cannot write %s", report); goto done; }
  lm_progress bar;
  lm_progress_start(&bar, "toolformer", (int64_t)len);
  int64_t lineno = 0;
  size_t at = 0, l;
  const char *p;
  while (!rc && lm_next_line(text, len, &at, &lineno, &p, &l)) {
    char where[600];
    snprintf(where, sizeof where, "%s:%lld", data, (long long)lineno);
    cJSON *rec = cJSON_ParseWithLength(p, l), *obj;
    const char *key = NULL;
    int chat = 0;
    uint32_t *ctx = NULL;
    int64_t n_ctx = 0, nc = 0;
    lm_toolformer_cand *c = NULL;
    char *aug = NULL;
    if (!rec || !cJSON_IsObject(rec)) rc = cli_error("%s: not a JSON object", where);
    if (!rc) rc = target_of(rec, where, &obj, &key, &chat);
    if (!rc && text_out && chat) rc = cli_error("%s: --format text writes {\"text\"} records only; this is a conversation", where);
    const char *s = rc ? NULL : cJSON_GetObjectItemCaseSensitive(obj, key)->valuestring;
    if (!rc && lm_toolformer_find(s, &c, &nc)) rc = cli_fail();
    if (!rc && nc && chat && cc.is_default && (lm_tokenizer_token_id(tok, LM_CHATML_START) < 0 || lm_tokenizer_token_id(tok, LM_CHATML_END) < 0))
      rc = cli_error("%s: a conversation, but %s has no chat template and its tokenizer lacks the ChatML tokens", where, dir);
    if (!rc && nc && chat) rc = chat_context(&cc, tok, rec, where, &ctx, &n_ctx);
    if (!rc && nc && lm_toolformer_score(m, tok, ctx, n_ctx, s, c, nc, &o)) { lm_error_prefix(LM_ERR_ARG, "%s", where); rc = cli_fail(); }
    int64_t k = 0;
    for (int64_t q = 0; !rc && q < nc; q++) {
      k += c[q].keep; unscored += c[q].scored == 0;
      if (fr) report_line(fr, lineno, s, &c[q]);
    }
    if (!rc && !(aug = lm_toolformer_apply(s, c, nc))) rc = cli_error("out of memory");
    if (!rc) {
      records++; found += nc; kept += k; with_call += k > 0;
      if (k || !kept_only) {
        if (text_out) fprintf(fo, "%s\n", aug);
        else {
          cJSON_ReplaceItemInObjectCaseSensitive(obj, key, cJSON_CreateString(aug));
          char *line = cJSON_PrintUnformatted(rec);
          if (!line) rc = cli_error("out of memory");
          else { fprintf(fo, "%s\n", line); free(line); }
        }
      }
    }
    free(aug); free(c); free(ctx);
    cJSON_Delete(rec);
    lm_progress_update(&bar, (int64_t)at, NULL);
  }
  if (rc) goto done;
  {
    char extra[160];
    snprintf(extra, sizeof extra, "%lld calls kept", (long long)kept);
    lm_progress_finish(&bar, extra);
  }
  if (ferror(fo) || fclose(fo)) { fo = NULL; rc = cli_error("cannot write %s", out); goto done; }
  fo = NULL;
  fprintf(stderr, "lmkit toolformer: %lld records, %lld arithmetic expressions, %lld calls kept (threshold %g, window %lld) in %lld records%s; written to %s\n",
          (long long)records, (long long)found, (long long)kept, o.threshold, (long long)o.window, (long long)with_call,
          unscored ? " (expressions with nothing after them are never kept)" : "", out);
#undef FAIL
done:
  if (fo) fclose(fo);
  if (fr) fclose(fr);
  free(text);
  lm_chat_config_free(&cc);
  lm_tokenizer_free(tok);
  lm_model_free(m);
  return rc;
}
