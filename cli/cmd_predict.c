/* cmd_predict.c — `lmkit predict`: runs a fine-tuned BERT (from `lmkit
 * finetune`) over stdin, one input per line, output in input order; the kind
 * of output follows the model's head:
 *   classify  one label per line (the argmax of the head's softmax), or with
 *             --probs one JSON object per line with the softmax probability of
 *             every label; texts padded per batch to the longest line. Given
 *             several --model, an ensemble: the models' probabilities are
 *             averaged (labels matched by name, each model with its own
 *             tokenizer and context);
 *   tokens    `word/TAG word/TAG ...` per line: the line split at whitespace,
 *             each word encoded on its own, its tag read at its first
 *             sub-token (lm_tokcls_encode, as in training);
 *   qa        {"question": Q, "context": C} per line -> {"answer": A, "score":
 *             S}: [CLS] Q [SEP] window [SEP] over sliding context windows and
 *             the best-span decoding of evaluation (lm_qa_encode,
 *             lm_qa_predict).
 *   text2text (an encoder-decoder with an LM head, e.g. T5 from `lmkit
 *             finetune --task text2text`) a text -> the generated target, by
 *             lm_t2t_generate (greedy, sampling or beams; the generation flags
 *             of cli/gen_flags.c), as the fine-tuning's evaluation decodes.
 * Label names come from config.json's id2label. Lines longer than the context
 * are truncated (classify, tokens); the count is reported on stderr. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "cli.h"
#include "model/heads.h"
#include "model/config.h"
#include "model/model.h"
#include "train/finetune.h"
#include "train/finetune_tasks.h"
#include "train/text2text.h"

#define CLI_MAX_MODELS 16   /* --model given more than once: an ensemble (classify) */

static const char *HELP =
  "usage: lmkit predict --model DIR [--probs] [options] < inputs\n"
  "\n"
  "Runs a fine-tuned model (from 'lmkit finetune') over stdin, one input per line\n"
  "(CRLF accepted), and prints one output line per input line, in input order. What\n"
  "a line holds follows the model's task:\n"
  "  classify  a text (an empty line is an empty text) -> its label; inputs are\n"
  "            [CLS] text [SEP]\n"
  "  tokens    a sentence, split at whitespace into words -> 'word/TAG word/TAG ...'\n"
  "            (each word's tag is read at its first sub-token; an empty line\n"
  "            gives an empty line)\n"
  "  qa        {\"question\": Q, \"context\": C} -> {\"answer\": A, \"score\": S}: the\n"
  "            best span (at most 30 tokens) over sliding context windows, S its\n"
  "            start + end logit (null when the context is empty); a malformed line\n"
  "            is an error\n"
  "  text2text an input text -> the text an encoder-decoder (t5) generates for it\n"
  "            (greedy by default; the generation flags below), as the evaluation of\n"
  "            'lmkit finetune --task text2text' decodes; a line break inside an output\n"
  "            is printed as a space\n"
  "A text or sentence longer than the context is truncated (words cut from a\n"
  "sentence are printed with tag O), and the count is reported on stderr.\n"
  "\n"
  "options:\n"
  "  --model DIR          a classify, tokens or qa model directory; classify models may be\n"
  "                       given up to 16 times: an ensemble, whose label is the argmax of\n"
  "                       the models' softmax probabilities averaged (each model reads the\n"
  "                       text with its own tokenizer; all must have the same label names)\n"
  "  --probs              classify: print {\"label\": L, \"probs\": {label: p, ...}} per line\n"
  "                       (an ensemble: the averaged probabilities)\n"
  "  --batch N            lines per forward pass (32; qa: windows per pass)\n"
  "  --context N          longest input in tokens (default: the model's positions)\n"
  "  --threads N          threads (default: all cores)\n"
  "\n"
  "text2text generation (as 'lmkit generate'):\n"
  "  --max-tokens N       tokens to generate at most (128)\n"
  "  --temperature X      0 = greedy (0); --top-k N, --top-p X, --seed N when sampling\n"
  "  --beams N            beam search (--length-penalty X, --early-stopping, --no-repeat-ngram N)\n"
  "  --no-stop            keep going past </s>\n";

static int is_space(char ch) { return ch == ' ' || ch == '\t' || ch == '\v' || ch == '\f'; }

/* tokens head: `word/TAG ...` per line; words cut by the context are printed with tag O. */
static int predict_tokens(lm_model *m, const lm_tokenizer *tok, char **names, int64_t L, int64_t batch,
                          int64_t context) {
  int rc = 0;
  int64_t n_in = 0, n_trunc = 0, wcap = 0;
  char *line = NULL; size_t lcap = 0;
  lm_conll cc = {0};
  cc.woff = malloc((size_t)(batch + 1) * sizeof *cc.woff);
  int32_t *ids = malloc((size_t)(batch * context) * sizeof *ids), *lab = malloc((size_t)(batch * context) * sizeof *lab);
  uint8_t *mask = malloc((size_t)(batch * context));
  int64_t *idx = malloc((size_t)batch * sizeof *idx);
  if (!cc.woff || !ids || !lab || !mask || !idx) { rc = cli_error("out of memory"); goto done; }
  if (lm_model_reserve(m, batch, context, 0)) { rc = cli_fail(); goto done; }
  for (int eof = 0; !eof;) {
    int64_t nb = 0, nw = 0;
    cc.woff[0] = 0;
    while (nb < batch) {
      ssize_t n = cli_read_line(&line, &lcap);
      if (n < 0) { eof = 1; break; }
      for (char *q = line; *q;) {
        while (is_space(*q)) q++;
        if (!*q) break;
        char *w0 = q;
        while (*q && !is_space(*q)) q++;
        if (nw == wcap) {
          int64_t nc = wcap ? 2 * wcap : 256;
          char **g = realloc(cc.words, (size_t)nc * sizeof *g);
          if (g) cc.words = g;
          int32_t *gt = g ? realloc(cc.tags, (size_t)nc * sizeof *gt) : NULL;
          if (gt) cc.tags = gt;
          if (!g || !gt) { rc = cli_error("out of memory"); goto done; }
          memset(cc.words + wcap, 0, (size_t)(nc - wcap) * sizeof *g);
          wcap = nc;
        }
        cc.tags[nw] = 0;
        if (!(cc.words[nw] = strndup(w0, (size_t)(q - w0)))) { rc = cli_error("out of memory"); goto done; }
        nw++;
      }
      cc.woff[++nb] = nw;
    }
    if (!nb) break;
    cc.n = nb;
    lm_tokcls_data d;
    if (lm_tokcls_encode(&d, lm_model_config(m), tok, &cc, context)) { rc = cli_fail(); goto done; }
    n_trunc += d.n_truncated; n_in += nb;
    for (int64_t b = 0; b < nb; b++) idx[b] = b;
    int64_t T = lm_tokcls_fill(&d, idx, nb, ids, mask, lab);
    lm_tokcls_data_free(&d);
    lm_batch bb = {.ids = ids, .mask = mask, .B = nb, .T = T};
    if (lm_batch_check(m, &bb)) { rc = cli_fail(); goto done; }
    lm_forward(m, &bb, NULL, NULL);
    const float *lg = lm_model_logits(m);
    for (int64_t b = 0; b < nb; b++) {
      int64_t w = cc.woff[b];
      for (int64_t t = 0; t < T && w < cc.woff[b + 1]; t++) {
        if (lab[b * T + t] < 0) continue;
        const float *x = lg + (b * T + t) * L;
        int64_t best = 0;
        for (int64_t k = 1; k < L; k++) if (x[k] > x[best]) best = k;
        printf("%s%s/%s", w > cc.woff[b] ? " " : "", cc.words[w], names[best]);
        w++;
      }
      for (; w < cc.woff[b + 1]; w++) printf("%s%s/O", w > cc.woff[b] ? " " : "", cc.words[w]);
      putchar('\n');
    }
    fflush(stdout);
    for (int64_t k = 0; k < nw; k++) { free(cc.words[k]); cc.words[k] = NULL; }
  }
  if (n_trunc)
    fprintf(stderr, "lmkit predict: truncated %lld of %lld inputs to %lld tokens\n", (long long)n_trunc,
            (long long)n_in, (long long)context - 2);
done:
  for (int64_t k = 0; k < wcap; k++) free(cc.words ? cc.words[k] : NULL);
  free(cc.words); free(cc.tags); free(cc.woff);
  free(line); free(ids); free(lab); free(mask); free(idx);
  return rc;
}

/* qa head: {"question", "context"} per line -> {"answer", "score"}; a malformed line is an error. */
static int predict_qa(lm_model *m, const lm_tokenizer *tok, int64_t batch, int64_t context) {
  int rc = 0;
  int64_t lineno = 0;
  char *line = NULL; size_t lcap = 0;
  static char empty[] = "";
  lm_squad s = {0};
  s.question = calloc((size_t)batch, sizeof *s.question);
  s.contexts = calloc((size_t)batch, sizeof *s.contexts);
  s.ctx = malloc((size_t)batch * sizeof *s.ctx);
  s.aoff = malloc((size_t)(batch + 1) * sizeof *s.aoff);
  s.answers = malloc((size_t)batch * sizeof *s.answers);
  s.astart = calloc((size_t)batch, sizeof *s.astart);
  s.aend = calloc((size_t)batch, sizeof *s.aend);
  double *scores = malloc((size_t)batch * sizeof *scores);
  if (!s.question || !s.contexts || !s.ctx || !s.aoff || !s.answers || !s.astart || !s.aend || !scores) {
    rc = cli_error("out of memory"); goto done;
  }
  /* each question gets a placeholder answer (an empty span at byte 0), so no window is labelled */
  for (int64_t i = 0; i < batch; i++) { s.ctx[i] = i; s.aoff[i] = i; s.answers[i] = empty; }
  s.aoff[batch] = batch;
  for (int eof = 0; !eof;) {
    int64_t nb = 0;
    while (nb < batch) {
      ssize_t n = cli_read_line(&line, &lcap);
      if (n < 0) { eof = 1; break; }
      lineno++;
      cJSON *j = cJSON_ParseWithLength(line, (size_t)n);
      if (!j || !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        rc = cli_error("<stdin>:%lld: expected a JSON object {\"question\": ..., \"context\": ...}", (long long)lineno);
        goto done;
      }
      const cJSON *q = cJSON_GetObjectItemCaseSensitive(j, "question"), *c = cJSON_GetObjectItemCaseSensitive(j, "context");
      const char *miss = !cJSON_IsString(q) ? "question" : !cJSON_IsString(c) ? "context" : NULL;
      if (miss) {
        cJSON_Delete(j);
        rc = cli_error("<stdin>:%lld: missing or non-string \"%s\"", (long long)lineno, miss);
        goto done;
      }
      s.question[nb] = strdup(q->valuestring);
      s.contexts[nb] = strdup(c->valuestring);
      cJSON_Delete(j);
      nb++;
      if (!s.question[nb - 1] || !s.contexts[nb - 1]) { rc = cli_error("out of memory"); goto done; }
    }
    if (!nb) break;
    s.n = s.n_ctx = nb;
    s.aoff[nb] = nb;
    lm_qa_data d;
    double loss, em, f1;
    char **preds = NULL;
    if (lm_qa_encode(&d, tok, &s, context, 0, 0)) { rc = cli_fail(); goto done; }
    lm_status st = lm_qa_predict(m, &d, batch, &loss, &em, &f1, &preds, scores);
    lm_qa_data_free(&d);
    if (st) { rc = cli_fail(); goto done; }
    for (int64_t i = 0; i < nb; i++) {
      fputs("{\"answer\": ", stdout); cli_json_str(stdout, preds[i]);
      if (isnan(scores[i])) fputs(", \"score\": null}\n", stdout);
      else printf(", \"score\": %.6f}\n", scores[i]);
      free(preds[i]);
      free(s.question[i]); free(s.contexts[i]); s.question[i] = s.contexts[i] = NULL;
    }
    free(preds);
    fflush(stdout);
  }
done:
  for (int64_t i = 0; i < batch; i++) { if (s.question) free(s.question[i]); if (s.contexts) free(s.contexts[i]); }
  free(s.question); free(s.contexts); free(s.ctx); free(s.aoff); free(s.answers); free(s.astart); free(s.aend);
  free(scores); free(line);
  return rc;
}

/* encoder-decoder: each line's generated target; inputs longer than the context are cut (counted). */
static int predict_text2text(const lm_model *m, const lm_tokenizer *tok, int64_t context, const lm_gen_opts *g) {
  lm_t2t_special sp;
  if (lm_t2t_special_ids(lm_model_config(m), tok, &sp)) return cli_fail();
  int rc = 0;
  int64_t n_in = 0, n_cut = 0;
  char *line = NULL, *out = NULL; size_t lcap = 0;
  int32_t *ids = malloc((size_t)context * sizeof *ids);
  if (!ids) return cli_error("out of memory");
  while (cli_read_line(&line, &lcap) >= 0) {
    int64_t n; int cut;
    if (lm_t2t_encode_text(tok, line, sp.eos, context, ids, &n, &cut) || lm_t2t_generate(m, tok, ids, n, g, &out)) {
      rc = cli_fail(); break;
    }
    n_in++; n_cut += cut;
    for (char *p = out; *p; p++) if (*p == '\n' || *p == '\r') *p = ' ';
    puts(out);
    fflush(stdout);
    free(out); out = NULL;
  }
  if (n_cut)
    fprintf(stderr, "lmkit predict: truncated %lld of %lld inputs to %lld tokens (</s> included)\n", (long long)n_cut,
            (long long)n_in, (long long)context);
  free(line); free(ids);
  return rc;
}

/* classify head, one model or an ensemble: each line's label (the argmax of the probabilities, averaged
 * over the models), or with --probs the averaged softmax of every label. Each model reads the text with
 * its own tokenizer and context; labels are matched by name (all models must have the same set). */
static int predict_classify(lm_model **ms, const char *const *dirs, int nm, int probs, int64_t batch, int64_t context) {
  int rc = 0;
  int64_t L = lm_model_config(ms[0])->num_labels, n_in = 0, n_trunc = 0, maxctx = 0;
  lm_tokenizer *tok[CLI_MAX_MODELS] = {0};
  char **names[CLI_MAX_MODELS] = {0};
  int64_t ctx[CLI_MAX_MODELS], *perm = malloc((size_t)(nm * L) * sizeof *perm);
  char **lines = calloc((size_t)batch, sizeof *lines);
  double *acc = malloc((size_t)(batch * L) * sizeof *acc);
  float *p = malloc((size_t)L * sizeof *p);
  int32_t *ids = NULL; uint8_t *mask = NULL;
  int64_t *idx = malloc((size_t)batch * sizeof *idx);
  if (!perm || !lines || !acc || !p || !idx) { rc = cli_error("out of memory"); goto done; }
  for (int k = 0; k < nm; k++) {
    const lm_config *c = lm_model_config(ms[k]);
    if (c->head != LM_HEAD_CLASSIFY) { rc = cli_error("%s: an ensemble takes classification models only", dirs[k]); goto done; }
    if (c->num_labels != L) {
      rc = cli_error("%s has %lld labels, %s has %lld: an ensemble's models must have the same labels", dirs[k],
                     (long long)c->num_labels, dirs[0], (long long)L);
      goto done;
    }
    char *cpath = lm_path_join(dirs[k], "config.json");
    lm_status st = !cpath ? lm_error(LM_ERR_NOMEM, "out of memory") : lm_config_label_names(cpath, L, &names[k]);
    free(cpath);
    if (st || lm_tokenizer_load(&tok[k], dirs[k])) { rc = cli_fail(); goto done; }
    for (int64_t j = 0; j < L; j++) {   /* perm[k*L + j]: model k's index of model 0's label j */
      perm[k * L + j] = -1;
      for (int64_t i = 0; i < L; i++) if (!strcmp(names[k][i], names[0][j])) perm[k * L + j] = i;
      if (perm[k * L + j] < 0) {
        rc = cli_error("%s has no label '%s' (which %s has): an ensemble's models must have the same labels", dirs[k],
                       names[0][j], dirs[0]);
        goto done;
      }
    }
    ctx[k] = context <= 0 || context > c->n_positions ? c->n_positions : context;
    if (ctx[k] > maxctx) maxctx = ctx[k];
    if (lm_model_reserve(ms[k], batch, ctx[k], 0)) { rc = cli_fail(); goto done; }
  }
  ids = malloc((size_t)(batch * maxctx) * sizeof *ids);
  mask = malloc((size_t)(batch * maxctx));
  if (!ids || !mask) { rc = cli_error("out of memory"); goto done; }
  for (int64_t b = 0; b < batch; b++) idx[b] = b;
  for (int eof = 0; !eof;) {
    int64_t nb = cli_read_lines(lines, batch, &eof);
    if (!nb) break;
    n_in += nb;
    memset(acc, 0, (size_t)(nb * L) * sizeof *acc);
    for (int k = 0; k < nm && !rc; k++) {
      const lm_config *c = lm_model_config(ms[k]);
      lm_cls_data d;
      if (lm_cls_encode(&d, c, tok[k], (const char *const *)lines, NULL, nb, ctx[k])) { rc = cli_fail(); break; }
      if (k == 0) n_trunc += d.n_truncated;
      int64_t T = lm_cls_fill(&d, idx, nb, ids, mask, NULL);
      lm_cls_data_free(&d);
      lm_batch bb = {.ids = ids, .mask = mask, .B = nb, .T = T};
      if (lm_batch_check(ms[k], &bb)) { rc = cli_fail(); break; }
      lm_forward(ms[k], &bb, NULL, NULL);
      const float *lg = lm_model_logits(ms[k]);   // (nb,L)
      for (int64_t b = 0; b < nb; b++) {
        float mx = lg[b * L];
        for (int64_t i = 1; i < L; i++) if (lg[b * L + i] > mx) mx = lg[b * L + i];
        double z = 0;
        for (int64_t i = 0; i < L; i++) z += (p[i] = expf(lg[b * L + i] - mx));
        for (int64_t j = 0; j < L; j++) acc[b * L + j] += p[perm[k * L + j]] / z / nm;
      }
    }
    for (int64_t b = 0; b < nb; b++) { free(lines[b]); lines[b] = NULL; }
    if (rc) break;
    for (int64_t b = 0; b < nb; b++) {
      const double *a = acc + b * L;
      int64_t best = 0;
      for (int64_t j = 1; j < L; j++) if (a[j] > a[best]) best = j;
      if (!probs) { printf("%s\n", names[0][best]); continue; }
      fputs("{\"label\": ", stdout); cli_json_str(stdout, names[0][best]); fputs(", \"probs\": {", stdout);
      for (int64_t j = 0; j < L; j++) {
        if (j) fputs(", ", stdout);
        cli_json_str(stdout, names[0][j]); printf(": %.6f", a[j]);
      }
      fputs("}}\n", stdout);
    }
    fflush(stdout);
  }
  if (n_trunc)
    fprintf(stderr, "lmkit predict: truncated %lld of %lld inputs to %lld tokens\n", (long long)n_trunc,
            (long long)n_in, (long long)ctx[0] - 2);
done:
  for (int k = 0; k < nm; k++) {
    if (names[k]) { for (int64_t j = 0; j < L; j++) free(names[k][j]); free(names[k]); }
    lm_tokenizer_free(tok[k]);
  }
  free(perm); free(lines); free(acc); free(p); free(ids); free(mask); free(idx);
  return rc;
}

int cmd_predict(int argc, char **argv) {
  const char *dirs[CLI_MAX_MODELS], *v;
  int nm = 0, probs = 0, r, gen_used = 0;
  lm_gen_opts g;
  lm_gen_opts_default(&g);
  g.temperature = 0;   /* greedy, as the fine-tuning's evaluation */
  int64_t batch = 32, context = 0, threads = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (cli_is_help(a)) { fputs(HELP, stdout); return 0; }
    if (!strcmp(a, "--probs")) { probs = 1; continue; }
    if ((r = cli_opt(argc, argv, &i, "--model", &v)) < 0) return 1;
    else if (r) {
      if (nm == CLI_MAX_MODELS) return cli_error("at most %d --model", CLI_MAX_MODELS);
      dirs[nm++] = v; continue;
    }
    if ((r = cli_opt(argc, argv, &i, "--batch", &v)) < 0) return 1;
    else if (r) { if (cli_i64(a, v, 1, 1 << 16, &batch)) return 1; continue; }
    if ((r = cli_opt(argc, argv, &i, "--context", &v)) < 0) return 1;
    else if (r) { if (cli_i64(a, v, 3, 1 << 20, &context)) return 1; continue; }
    if ((r = cli_opt(argc, argv, &i, "--threads", &v)) < 0) return 1;
    else if (r) { if (cli_i64(a, v, 1, 4096, &threads)) return 1; continue; }
    if ((r = cli_gen_flag(argc, argv, &i, &g)) < 0) return 1; else if (r) { gen_used = 1; continue; }
    return cli_unknown("predict", a);
  }
  if (!nm) return cli_error("--model DIR is required (see 'lmkit predict --help')");
  lm_set_threads((int)threads);
  lm_model *ms[CLI_MAX_MODELS] = {0}, *m = NULL;
  lm_tokenizer *tok = NULL;
  char **names = NULL, *cpath = NULL;
  int64_t L = 0;
  int rc = 0;
  for (int k = 0; k < nm; k++) if (lm_model_load(&ms[k], dirs[k])) { rc = cli_fail(); goto done; }
  m = ms[0];
  const lm_config *c = lm_model_config(m);
  if (nm > 1) {
    if (gen_used) { rc = cli_error("the generation flags are for encoder-decoders (text2text), not ensembles"); goto done; }
    rc = predict_classify(ms, dirs, nm, probs, batch, context);
    goto done;
  }
  if (context <= 0 || context > c->n_positions) context = c->n_positions;
  if (c->head == LM_HEAD_LM && c->n_enc_layer > 0) {
    if (probs) { rc = cli_error("--probs applies to classification models only"); goto done; }
    if (g.calc || g.kv_f16) { rc = cli_error("--calc and --kv-type are not for encoder-decoders"); goto done; }
    if (lm_tokenizer_load(&tok, dirs[0])) { rc = cli_fail(); goto done; }
    rc = predict_text2text(m, tok, context, &g);
    goto done;
  }
  if (gen_used) { rc = cli_error("the generation flags are for encoder-decoders (text2text); %s is not one", dirs[0]); goto done; }
  if (c->head != LM_HEAD_CLASSIFY && c->head != LM_HEAD_TOKENS && c->head != LM_HEAD_QA) {
    rc = cli_error("%s is not a sequence-classification model, nor a token-classification, question-answering or "
                   "encoder-decoder one (fine-tune one with 'lmkit finetune --task classify|tokens|qa|text2text')", dirs[0]);
    goto done;
  }
  if (probs && c->head != LM_HEAD_CLASSIFY) { rc = cli_error("--probs applies to classification models only"); goto done; }
  if (c->head == LM_HEAD_CLASSIFY) { rc = predict_classify(ms, dirs, 1, probs, batch, context); goto done; }
  if (lm_tokenizer_load(&tok, dirs[0])) { rc = cli_fail(); goto done; }
  if (c->head == LM_HEAD_QA) { rc = predict_qa(m, tok, batch, context); goto done; }
  L = c->num_labels;
  cpath = lm_path_join(dirs[0], "config.json");
  if (!cpath || lm_config_label_names(cpath, L, &names)) { rc = cli_fail(); goto done; }
  rc = predict_tokens(m, tok, names, L, batch, context);
done:
  if (names) { for (int64_t k = 0; k < L; k++) free(names[k]); free(names); }
  free(cpath);
  for (int k = 0; k < nm; k++) lm_model_free(ms[k]);
  lm_tokenizer_free(tok);
  return rc;
}
