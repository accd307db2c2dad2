/* test_chat_generate.c — the end of an assistant's turn (src/infer/chat_generate.c):
 * lm_chat_stop_tokens on real models' chat templates (tests/reference/chat_templates.json)
 * finds the token each template writes after an assistant message (<|im_end|>, </s>,
 * <|eot_id|>, DeepSeek's <｜end▁of▁sentence｜>), then the config's eos_token and the
 * model's eos, without duplicates; a template that ends turns with plain text contributes
 * nothing. lm_chat_generation_prompt takes a message list or a request body. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "base/base.h"
#include "infer/chat_generate.h"
#include "tokenizer/tokenizer.h"

static const char *SPECIALS[] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>", "<s>", "</s>", "<|begin_of_text|>",
                                 "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
                                 "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>"};
#define N_SPECIALS (int)(sizeof SPECIALS / sizeof *SPECIALS)

static char g_dir[64];
static lm_tokenizer *g_tok;

static char *in_dir(const char *name) { return lm_path_join(g_dir, name); }
static void write_in(const char *name, const char *text) {
  char *p = in_dir(name);
  FILE *f = fopen(p, "w");
  cr_assert_not_null(f);
  fputs(text, f);
  fclose(f);
  free(p);
}

/* a byte-level BPE tokenizer.json: the 256 bytes (GPT-2's byte-to-unicode map) + SPECIALS */
static void write_tokenizer(void) {
  int cs[256], n = 0, is_direct[256] = {0};
  for (int b = '!'; b <= '~'; b++) is_direct[b] = 1;
  for (int b = 0xA1; b <= 0xAC; b++) is_direct[b] = 1;
  for (int b = 0xAE; b <= 0xFF; b++) is_direct[b] = 1;
  for (int b = 0; b < 256; b++) cs[b] = is_direct[b] ? b : 256 + n++;
  cJSON *root = cJSON_CreateObject(), *model = cJSON_CreateObject(), *vocab = cJSON_CreateObject(),
        *added = cJSON_CreateArray(), *pre = cJSON_CreateObject();
  for (int b = 0; b < 256; b++) {
    char key[4] = {0};
    if (cs[b] < 0x80) key[0] = (char)cs[b];
    else { key[0] = (char)(0xC0 | (cs[b] >> 6)); key[1] = (char)(0x80 | (cs[b] & 0x3F)); }
    cJSON_AddNumberToObject(vocab, key, b);
  }
  for (int i = 0; i < N_SPECIALS; i++) {
    cJSON_AddNumberToObject(vocab, SPECIALS[i], 256 + i);
    cJSON *a = cJSON_CreateObject();
    cJSON_AddNumberToObject(a, "id", 256 + i);
    cJSON_AddStringToObject(a, "content", SPECIALS[i]);
    cJSON_AddBoolToObject(a, "special", 1);
    cJSON_AddItemToArray(added, a);
  }
  cJSON_AddStringToObject(model, "type", "BPE");
  cJSON_AddItemToObject(model, "vocab", vocab);
  cJSON_AddItemToObject(model, "merges", cJSON_CreateArray());
  cJSON_AddStringToObject(pre, "type", "ByteLevel");
  cJSON_AddBoolToObject(pre, "add_prefix_space", 0);
  cJSON_AddItemToObject(root, "added_tokens", added);
  cJSON_AddItemToObject(root, "pre_tokenizer", pre);
  cJSON_AddItemToObject(root, "model", model);
  char *text = cJSON_Print(root);
  write_in("tokenizer.json", text);
  free(text);
  cJSON_Delete(root);
}

static void setup(void) {
  strcpy(g_dir, "/tmp/lm_chatgen_test_XXXXXX");
  cr_assert_not_null(mkdtemp(g_dir));
  write_tokenizer();
  cr_assert_eq(lm_tokenizer_load(&g_tok, g_dir), LM_OK, "%s", lm_last_error());
  cr_assert_eq(lm_tokenizer_vocab_size(g_tok), 256 + N_SPECIALS);
}
static void teardown(void) {
  lm_tokenizer_free(g_tok);
  const char *names[] = {"tokenizer.json", "tokenizer_config.json"};
  for (int i = 0; i < 2; i++) { char *p = in_dir(names[i]); unlink(p); free(p); }
  rmdir(g_dir);
}
TestSuite(chat_generate, .init = setup, .fini = teardown);

/* a real template by its name in tests/reference/chat_templates.json (malloc'ed) */
static char *real_template(const char *name) {
  const char *src = getenv("LMKIT_SRC");
  char *path = lm_path_join(src ? src : ".", "tests/reference/chat_templates.json"), *text;
  size_t len;
  cr_assert_eq(lm_read_file(path, &text, &len), LM_OK, "%s", lm_last_error());
  free(path);
  cJSON *j = cJSON_ParseWithLength(text, len), *t;
  free(text);
  char *out = NULL;
  cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(j, "templates")) {
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(t, "name");
    if (cJSON_IsString(n) && !strcmp(n->valuestring, name))
      out = lm_strdup(cJSON_GetObjectItemCaseSensitive(t, "template")->valuestring);
  }
  cJSON_Delete(j);
  cr_assert_not_null(out, "no template named %s", name);
  return out;
}

/* the stop tokens of tokenizer_config.json {chat_template, bos_token, eos_token} (NULL: absent) */
static int stops(const char *tmpl, const char *bos, const char *eos, int64_t model_eos, int32_t *ids) {
  cJSON *c = cJSON_CreateObject();
  if (tmpl) cJSON_AddStringToObject(c, "chat_template", tmpl);
  if (bos) cJSON_AddStringToObject(c, "bos_token", bos);
  if (eos) cJSON_AddStringToObject(c, "eos_token", eos);
  char *text = cJSON_Print(c);
  write_in("tokenizer_config.json", text);
  free(text);
  cJSON_Delete(c);
  lm_chat_config cc;
  cr_assert_eq(lm_chat_config_load(&cc, g_dir), LM_OK, "%s", lm_last_error());
  lm_config cfg;
  lm_config_default(&cfg, LM_ARCH_GPT2);
  cfg.vocab_size = 256 + N_SPECIALS;
  cfg.eos_token_id = model_eos;
  int n;
  cr_assert_eq(lm_chat_stop_tokens(&cc, g_tok, &cfg, ids, LM_CHAT_MAX_STOP, &n), LM_OK, "%s", lm_last_error());
  lm_chat_config_free(&cc);
  return n;
}
static int32_t id_of(const char *s) { return (int32_t)lm_tokenizer_token_id(g_tok, s); }

Test(chat_generate, end_of_turn_of_real_templates) {
  struct { const char *name, *bos, *eos, *end; } cases[] = {
    {"_base", NULL, NULL, "<|im_end|>"},                                                    /* ChatML */
    {"HuggingFaceH4/zephyr-7b-beta (add_generation_prompt=true)", "<s>", "</s>", "</s>"},
    {"TheBloke/Mistral-7B-Instruct-v0.1-GPTQ", "<s>", "</s>", "</s>"},                       /* answer</s> after [/INST] */
    {"meta-llama/Llama-3.2-11B-Vision-Instruct", "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"},
    {"HuggingFaceTB/SmolLM3-3B", NULL, "<|im_end|>", "<|im_end|>"},
    {"deepseek-ai/DeepSeek-R1", "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜end▁of▁sentence｜>"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    char *t = real_template(cases[i].name);
    int32_t ids[LM_CHAT_MAX_STOP];
    int n = stops(t, cases[i].bos, cases[i].eos, id_of("<|endoftext|>"), ids);
    free(t);
    cr_assert_geq(n, 1, "%s: no stop token", cases[i].name);
    cr_assert_eq(ids[0], id_of(cases[i].end), "%s: first stop %d, wanted %s (%d)", cases[i].name, ids[0], cases[i].end,
                 id_of(cases[i].end));
    for (int a = 0; a < n; a++)
      for (int b = a + 1; b < n; b++) cr_assert_neq(ids[a], ids[b], "%s: %d twice", cases[i].name, ids[a]);
    int has_eos = !cases[i].eos, has_model_eos = 0;
    for (int a = 0; a < n; a++) {
      has_eos |= cases[i].eos && ids[a] == id_of(cases[i].eos);
      has_model_eos |= ids[a] == id_of("<|endoftext|>");
    }
    cr_assert(has_eos && has_model_eos, "%s: the config's and the model's eos are stops too", cases[i].name);
  }
}

Test(chat_generate, plain_text_turns_and_defaults) {
  int32_t ids[LM_CHAT_MAX_STOP];
  /* a turn that ends with text: only the eos tokens */
  int n = stops("{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\\n\\n' }}{% endfor %}", NULL, "</s>", -1, ids);
  cr_assert_eq(n, 1);
  cr_assert_eq(ids[0], id_of("</s>"));
  /* no config template: ChatML; the model's eos (out of the vocabulary: ignored) */
  n = stops(NULL, NULL, NULL, 100000, ids);
  cr_assert_eq(n, 1);
  cr_assert_eq(ids[0], id_of("<|im_end|>"));
  /* a template that refuses the probe conversation has no say, and leaves no error behind */
  n = stops("{{ raise_exception('no') }}", NULL, "</s>", id_of("<|endoftext|>"), ids);
  cr_assert_eq(n, 2);
  cr_assert_eq(ids[0], id_of("</s>"));
  cr_assert_eq(ids[1], id_of("<|endoftext|>"));
}

Test(chat_generate, generation_prompt) {
  lm_chat_config cc;
  cr_assert_eq(lm_chat_config_load(&cc, g_dir), LM_OK);   /* no tokenizer_config.json: ChatML */
  const char *want = "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n";
  cJSON *list = cJSON_Parse("[{\"role\": \"system\", \"content\": \"S\"}, {\"role\": \"user\", \"content\": \"U\"}]");
  cJSON *req = cJSON_Parse("{\"model\": \"m\", \"messages\": [{\"role\": \"system\", \"content\": \"S\"}, "
                           "{\"role\": \"user\", \"content\": \"U\"}]}");
  cJSON *no_gen = cJSON_Parse("{\"messages\": [{\"role\": \"user\", \"content\": \"U\"}], \"add_generation_prompt\": false}");
  char *p;
  size_t len;
  cr_assert_eq(lm_chat_generation_prompt(&cc, list, &p, &len), LM_OK, "%s", lm_last_error());
  cr_assert_str_eq(p, want);
  cr_assert_eq(len, strlen(want));
  free(p);
  cr_assert_eq(lm_chat_generation_prompt(&cc, req, &p, NULL), LM_OK, "%s", lm_last_error());
  cr_assert_str_eq(p, want);
  free(p);
  cr_assert_eq(lm_chat_generation_prompt(&cc, no_gen, &p, NULL), LM_OK, "%s", lm_last_error());   /* the request's choice */
  cr_assert_str_eq(p, "<|im_start|>user\nU<|im_end|>\n");
  free(p);
  cJSON *bad[] = {cJSON_Parse("[]"), cJSON_Parse("{\"msgs\": []}"), cJSON_Parse("\"hi\""), cJSON_Parse("[1]")};
  for (int i = 0; i < 4; i++) {
    cr_assert_neq(lm_chat_generation_prompt(&cc, bad[i], &p, NULL), LM_OK, "bad conversation %d accepted", i);
    cr_assert_null(p);
    cJSON_Delete(bad[i]);
  }
  cJSON_Delete(list); cJSON_Delete(req); cJSON_Delete(no_gen);
  lm_chat_config_free(&cc);
}
