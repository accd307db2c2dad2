/* cmd_ask.c — `lmkit ask`: answers a question from an index built by `lmkit
 * index`. The top-k passages (BM25, dense or hybrid; src/rag/search.c) go
 * into the user message as numbered sources with the instruction to cite them
 * as [n] (lm_rag_prompt); the message goes through the model's chat template,
 * the answer streams to stdout, and the sources follow with their file, line
 * and byte ranges so that the reader can check every citation. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "model/gguf.h"
#include "cli.h"
#include "base/base.h"
#include "infer/chat_generate.h"
#include "rag/rag.h"

static const char *HELP =
  "usage: lmkit ask --model DIR --index IDX [options] \"QUESTION\"\n"
  "       lmkit ask --index IDX --retrieve-only [options] \"QUESTION\"\n"
  "\n"
  "Answers QUESTION from the documents of IDX ('lmkit index'): retrieves the k best\n"
  "passages, puts them into the prompt as numbered sources [1]..[k] with the\n"
  "instruction to cite them as [n], streams the model's answer (through its chat\n"
  "template), then lists the sources with file name, lines and bytes:\n"
  "  [1] docs/a.txt, lines 3-7 (bytes 120-480)\n"
  "\n"
  "options:\n"
  "  --model DIR          a chat model (its chat template, or ChatML tokens)\n"
  "  --index IDX          the index file\n"
  "  --k N                passages to retrieve (5)\n"
  "  --mode MODE          bm25, dense (embeddings), hybrid (reciprocal-rank fusion of\n"
  "                       both, k = 60) or auto: hybrid when the index has vectors, else\n"
  "                       bm25 (auto)\n"
  "  --embed-model DIR    the embedding model for dense and hybrid (default: the one\n"
  "                       the index was built with)\n"
  "  --retrieve-only      print the sources (and their text) without answering; no model\n"
  "  --show-prompt        print the prompt given to the model to stderr first\n"
  "  --system TEXT        a system message before the question\n";
static const char *HELP_TAIL = "  --threads N          threads (default: all cores)\n";

static int print_piece(const char *piece, size_t len, void *user) {
  (void)user;
  fwrite(piece, 1, len, stdout);
  fflush(stdout);
  return 0;
}

static void print_sources(const lm_rag_index *ix, const lm_rag_hit *hits, int64_t n, int with_text) {
  printf("Sources:\n");
  for (int64_t i = 0; i < n; i++) {
    lm_rag_chunk c;
    lm_rag_index_chunk(ix, hits[i].chunk, &c);
    printf("[%lld] %s, ", (long long)(i + 1), c.file);
    if (c.line_start == c.line_end) printf("line %lld", (long long)c.line_start);
    else printf("lines %lld-%lld", (long long)c.line_start, (long long)c.line_end);
    printf(" (bytes %lld-%lld)\n", (long long)c.byte_start, (long long)c.byte_end);
    if (with_text) printf("%s\n\n", c.text);
  }
  if (!n) printf("(no passage matches the question)\n");
}

int cmd_ask(int argc, char **argv) {
  lm_gen_opts o;
  lm_gen_opts_default(&o);
  o.on_window = cli_gen_on_window;
  const char *model = NULL, *index = NULL, *embed = NULL, *question = NULL, *system = NULL, *v;
  lm_rag_mode mode = LM_RAG_AUTO;
  int64_t k = 5, threads = 0;
  int r, retrieve_only = 0, show_prompt = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (cli_is_help(a)) { fputs(HELP, stdout); fputs(CLI_GEN_FLAGS_HELP, stdout); fputs(HELP_TAIL, stdout); return 0; }
    if (!strcmp(a, "--retrieve-only")) { retrieve_only = 1; continue; }
    if (!strcmp(a, "--show-prompt")) { show_prompt = 1; continue; }
    if ((r = cli_gen_flag(argc, argv, &i, &o))) { if (r < 0) return 1; continue; }
    if ((r = cli_opt(argc, argv, &i, "--model", &v))) { if (r < 0) return 1; model = v; continue; }
    if ((r = cli_opt(argc, argv, &i, "--index", &v))) { if (r < 0) return 1; index = v; continue; }
    if ((r = cli_opt(argc, argv, &i, "--embed-model", &v))) { if (r < 0) return 1; embed = v; continue; }
    if ((r = cli_opt(argc, argv, &i, "--system", &v))) { if (r < 0) return 1; system = v; continue; }
    if ((r = cli_opt(argc, argv, &i, "--k", &v))) { if (r < 0 || cli_i64(a, v, 1, 1000, &k)) return 1; continue; }
    if ((r = cli_opt(argc, argv, &i, "--mode", &v))) { if (r < 0) return 1; if (lm_rag_mode_parse(v, &mode)) return cli_fail(); continue; }
    if ((r = cli_opt(argc, argv, &i, "--threads", &v))) { if (r < 0 || cli_i64(a, v, 1, 4096, &threads)) return 1; continue; }
    if (a[0] == '-' && a[1]) return cli_unknown("ask", a);
    if (question) return cli_error("one question at a time: '%s' and '%s' (quote the question)", question, a);
    question = a;
  }
  if (!index) return cli_error("--index IDX is required (see 'lmkit ask --help')");
  if (!question || !*question) return cli_error("a question is required: lmkit ask --model DIR --index IDX \"QUESTION\"");
  if (!model && !retrieve_only) return cli_error("--model DIR is required to answer (or --retrieve-only to list the sources)");
  if (model && retrieve_only) return cli_error("--retrieve-only answers nothing: leave out --model");
  lm_set_threads((int)threads);
  lm_rag *rag = NULL;
  lm_model *m = NULL;
  lm_tokenizer *tok = NULL;
  lm_chat_config cc = {0};
  lm_rag_hit *hits = NULL;
  char *user = NULL, *prompt = NULL;
  cJSON *conv = NULL;
  int32_t stop[LM_CHAT_MAX_STOP];
  int64_t n = 0;
  int rc = 0;
  if (lm_rag_open(&rag, index, mode, embed)) { rc = cli_fail(); goto done; }
  if (!(hits = malloc((size_t)k * sizeof *hits))) { rc = cli_error("out of memory"); goto done; }
  if (lm_rag_retrieve(rag, question, k, hits, &n)) { rc = cli_fail(); goto done; }
  const lm_rag_index *ix = lm_rag_get_index(rag);
  if (retrieve_only) { print_sources(ix, hits, n, 1); goto done; }
  if (lm_model_load_infer(&m, model)) { rc = cli_fail(); goto done; }
  if (cli_posttrain_decoder(m, model, "ask")) { rc = 1; goto done; }
  if (cli_tokenizer_of(model, &tok)) { rc = cli_fail(); goto done; }
  if (cli_chat_setup(model, m, tok, "ask needs a chat model", &cc, stop, &o)) { rc = 1; goto done; }
  if (lm_rag_prompt(ix, question, hits, n, &user)) { rc = cli_fail(); goto done; }
  if (!(conv = cJSON_CreateArray())) { rc = cli_error("out of memory"); goto done; }
  cJSON *sm = system ? cJSON_CreateObject() : NULL, *um = cJSON_CreateObject();
  if (sm) { cJSON_AddItemToArray(conv, sm); cJSON_AddStringToObject(sm, "role", "system"); cJSON_AddStringToObject(sm, "content", system); }
  if (um) { cJSON_AddItemToArray(conv, um); cJSON_AddStringToObject(um, "role", "user"); cJSON_AddStringToObject(um, "content", user); }
  if (!um || (system && !sm)) { rc = cli_error("out of memory"); goto done; }
  if (lm_chat_generation_prompt(&cc, conv, &prompt, NULL)) { rc = cli_fail(); goto done; }
  if (show_prompt) fprintf(stderr, "%s\n", prompt);
  /* a prompt longer than the context would lose its start (the instruction, the first sources) */
  uint32_t *ids = NULL;
  size_t n_ids = 0;
  if (lm_tokenizer_encode(tok, prompt, strlen(prompt), 1, &ids, &n_ids)) { rc = cli_fail(); goto done; }
  free(ids);
  int64_t ctx = lm_model_config(m)->n_positions;
  if ((int64_t)n_ids >= ctx) {
    rc = cli_error("the prompt with %lld sources is %zu tokens, more than the model's context of %lld: use a smaller --k, "
                   "or index with a smaller --chunk-size", (long long)n, n_ids, (long long)ctx);
    goto done;
  }
  if (lm_generate(m, tok, prompt, &o, print_piece, NULL, NULL)) { fputc('\n', stdout); rc = cli_fail(); goto done; }
  printf("\n\n");
  print_sources(ix, hits, n, 0);
done:
  free(hits); free(user); free(prompt);
  cJSON_Delete(conv);
  lm_chat_config_free(&cc);
  lm_model_free(m);
  lm_tokenizer_free(tok);
  lm_rag_close(rag);
  return rc;
}
