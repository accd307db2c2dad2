/* test_config.c — config.json <-> lm_config (src/model/config.c).
 *
 * Family defaults, parsing of real Hugging Face configs (gpt2, bert-base-uncased),
 * save/load round trips including the "lmkit" sub-object, and rejection of
 * wrong types and impossible values with messages naming the key and value. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <unistd.h>
#include "base/base.h"
#include "model/config.h"

static char g_dir[64];
static void setup(void) {
  strcpy(g_dir, "/tmp/lm_cfg_test_XXXXXX");
  cr_assert_not_null(mkdtemp(g_dir));
}
/* Counts the entries of g_dir, removing them when asked (no shell: fast under ASan). */
static int dir_entries(int remove_them) {
  DIR *d = opendir(g_dir);
  cr_assert_not_null(d);
  int n = 0;
  for (struct dirent *e; (e = readdir(d));) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    n++;
    if (remove_them) {
      char p[512];
      snprintf(p, sizeof p, "%s/%s", g_dir, e->d_name);
      unlink(p);
    }
  }
  closedir(d);
  return n;
}
static void teardown(void) {
  dir_entries(1);
  rmdir(g_dir);
}
TestSuite(config, .init = setup, .fini = teardown);

static lm_status parse(lm_config *c, const char *json) { return lm_config_parse(c, json, strlen(json), "cfg.json"); }

/* Parsing must fail with status st and a message holding the file name and each of the given words. */
static void expect_bad(const char *json, lm_status st, const char *w1, const char *w2) {
  lm_config c;
  lm_config_default(&c, LM_ARCH_GPT2);
  c.n_layer = 77;   /* must be left alone on failure */
  lm_status got = parse(&c, json);
  cr_assert_eq(got, st, "status %d (want %d) for %s: %s", got, st, json, lm_last_error());
  const char *m = lm_last_error();
  cr_assert(strstr(m, "cfg.json"), "no file name: %s", m);
  if (w1) cr_assert(strstr(m, w1), "'%s' lacks '%s'", m, w1);
  if (w2) cr_assert(strstr(m, w2), "'%s' lacks '%s'", m, w2);
  cr_assert_eq(c.n_layer, 77);
}

static void assert_same(const lm_config *a, const lm_config *b) {
  cr_assert_eq(a->arch, b->arch);
  cr_assert_eq(a->vocab_size, b->vocab_size);
  cr_assert_eq(a->n_positions, b->n_positions);
  cr_assert_eq(a->n_embd, b->n_embd);
  cr_assert_eq(a->n_layer, b->n_layer);
  cr_assert_eq(a->n_head, b->n_head);
  cr_assert_eq(a->n_inner, b->n_inner);
  cr_assert_eq(a->norm, b->norm);
  cr_assert_eq(a->pre_ln, b->pre_ln);
  cr_assert_eq(a->act, b->act);
  cr_assert_eq(a->causal, b->causal);
  cr_assert_eq(a->bias, b->bias);
  cr_assert(a->embd_pdrop == b->embd_pdrop && a->attn_pdrop == b->attn_pdrop && a->resid_pdrop == b->resid_pdrop,
            "dropout %g %g %g vs %g %g %g", a->embd_pdrop, a->attn_pdrop, a->resid_pdrop, b->embd_pdrop, b->attn_pdrop, b->resid_pdrop);
  cr_assert(a->act_pdrop == b->act_pdrop, "activation dropout %g vs %g", a->act_pdrop, b->act_pdrop);
  cr_assert_eq(a->tie_embeddings, b->tie_embeddings);
  cr_assert_eq(a->norm_eps, b->norm_eps);
  cr_assert_eq(a->init_std, b->init_std);
  cr_assert_eq(a->bos_token_id, b->bos_token_id);
  cr_assert_eq(a->eos_token_id, b->eos_token_id);
  cr_assert_eq(a->type_vocab_size, b->type_vocab_size);
  cr_assert_eq(a->pad_token_id, b->pad_token_id);
  cr_assert_eq(a->num_labels, b->num_labels);
  cr_assert_eq(a->head, b->head);
  cr_assert_eq(a->share_layers, b->share_layers);
  cr_assert(a->cls_pdrop == b->cls_pdrop, "classifier dropout %g vs %g", a->cls_pdrop, b->cls_pdrop);
}

static lm_config round_trip(const lm_config *c, const char *name, char **text_out) {
  char path[160];
  snprintf(path, sizeof path, "%s/%s", g_dir, name);
  cr_assert_eq(lm_config_save(c, path), LM_OK, "%s", lm_last_error());
  lm_config r;
  cr_assert_eq(lm_config_load(&r, path), LM_OK, "%s", lm_last_error());
  if (text_out) {
    size_t len;
    cr_assert_eq(lm_read_file(path, text_out, &len), LM_OK);
  }
  return r;
}

/* ---------------------------------------------------------------- defaults */
Test(config, defaults) {
  lm_config c;
  lm_config_default(&c, LM_ARCH_GPT2);
  cr_assert_eq(c.arch, LM_ARCH_GPT2);
  cr_assert_eq(c.vocab_size, 50257);
  cr_assert_eq(c.n_positions, 1024);
  cr_assert_eq(c.n_embd, 768);
  cr_assert_eq(c.n_layer, 12);
  cr_assert_eq(c.n_head, 12);
  cr_assert_eq(c.n_inner, 0);
  cr_assert_eq(c.act, LM_ACT_GELU_TANH);
  cr_assert_eq(c.norm, LM_NORM_LAYER);
  cr_assert(c.pre_ln && c.causal && c.bias && c.tie_embeddings);
  cr_assert_eq(c.norm_eps, 1e-5f);
  cr_assert_eq(c.init_std, 0.02f);
  cr_assert_eq(c.bos_token_id, 50256);
  cr_assert_eq(c.eos_token_id, 50256);
  cr_assert_eq(lm_config_validate(&c), LM_OK);

  lm_config_default(&c, LM_ARCH_BERT);
  cr_assert_eq(c.arch, LM_ARCH_BERT);
  cr_assert_eq(c.vocab_size, 30522);
  cr_assert_eq(c.n_positions, 512);
  cr_assert_eq(c.act, LM_ACT_GELU_ERF);
  cr_assert(!c.pre_ln && !c.causal && c.bias && c.tie_embeddings);
  cr_assert_eq(c.norm_eps, 1e-12f);
  cr_assert_eq(c.type_vocab_size, 2);
  cr_assert_eq(c.pad_token_id, 0);
  cr_assert_eq(c.num_labels, 2);
  cr_assert_eq(c.head, LM_HEAD_PRETRAIN);
  cr_assert_eq(c.share_layers, 0);
  cr_assert_eq(lm_config_validate(&c), LM_OK);

  for (int a = LM_ARCH_GPT2; a <= LM_ARCH_QWEN2; a++) {
    lm_config_default(&c, (lm_arch)a);
    cr_assert_eq(c.arch, (lm_arch)a);
    /* every architecture has a family file in src/model/families/ and validates */
    cr_assert_eq(lm_config_validate(&c), LM_OK, "%s: %s", lm_arch_name((lm_arch)a), lm_last_error());
  }
  cr_assert_str_eq(lm_arch_name(LM_ARCH_GPT2), "gpt2");
  cr_assert_str_eq(lm_arch_name(LM_ARCH_BERT), "bert");
  cr_assert_str_eq(lm_arch_name(LM_ARCH_T5), "t5");
  cr_assert_str_eq(lm_arch_name(LM_ARCH_BART), "bart");
  cr_assert_str_eq(lm_arch_name(LM_ARCH_LLAMA), "llama");
  cr_assert_str_eq(lm_arch_name(LM_ARCH_MISTRAL), "mistral");
  cr_assert_str_eq(lm_arch_name(LM_ARCH_QWEN2), "qwen2");
}

/* ---------------------------------------------------------------- real HF files */
Test(config, hf_gpt2) {
  /* the hub's gpt2/config.json */
  const char *j =
      "{\"activation_function\": \"gelu_new\", \"architectures\": [\"GPT2LMHeadModel\"], \"attn_pdrop\": 0.1,\n"
      " \"bos_token_id\": 50256, \"embd_pdrop\": 0.1, \"eos_token_id\": 50256, \"initializer_range\": 0.02,\n"
      " \"layer_norm_epsilon\": 1e-05, \"model_type\": \"gpt2\", \"n_ctx\": 1024, \"n_embd\": 768, \"n_head\": 12,\n"
      " \"n_layer\": 12, \"n_positions\": 1024, \"resid_pdrop\": 0.1, \"summary_activation\": null,\n"
      " \"summary_first_dropout\": 0.1, \"summary_proj_to_labels\": true, \"summary_type\": \"cls_index\",\n"
      " \"summary_use_proj\": true, \"task_specific_params\": {\"text-generation\": {\"do_sample\": true, \"max_length\": 50}},\n"
      " \"vocab_size\": 50257}\n";
  lm_config c, d;
  cr_assert_eq(parse(&c, j), LM_OK, "%s", lm_last_error());
  lm_config_default(&d, LM_ARCH_GPT2);
  d.embd_pdrop = d.attn_pdrop = d.resid_pdrop = 0.1f;   /* the hub file's: dropout in training, as in transformers */
  assert_same(&c, &d);
  /* gpt2-medium sizes */
  cr_assert_eq(parse(&c, "{\"model_type\":\"gpt2\",\"n_embd\":1024,\"n_head\":16,\"n_layer\":24}"), LM_OK);
  cr_assert_eq(c.n_embd, 1024);
  cr_assert_eq(c.n_head, 16);
  cr_assert_eq(c.n_layer, 24);
  cr_assert_eq(c.vocab_size, 50257);   /* missing keys: HF defaults */
}

Test(config, hf_bert) {
  /* the hub's bert-base-uncased/config.json */
  const char *j =
      "{\"architectures\": [\"BertForMaskedLM\"], \"attention_probs_dropout_prob\": 0.1, \"gradient_checkpointing\": false,\n"
      " \"hidden_act\": \"gelu\", \"hidden_dropout_prob\": 0.1, \"hidden_size\": 768, \"initializer_range\": 0.02,\n"
      " \"intermediate_size\": 3072, \"layer_norm_eps\": 1e-12, \"max_position_embeddings\": 512,\n"
      " \"model_type\": \"bert\", \"num_attention_heads\": 12, \"num_hidden_layers\": 12, \"pad_token_id\": 0,\n"
      " \"position_embedding_type\": \"absolute\", \"transformers_version\": \"4.6.0.dev0\", \"type_vocab_size\": 2,\n"
      " \"use_cache\": true, \"vocab_size\": 30522}\n";
  lm_config c;
  cr_assert_eq(parse(&c, j), LM_OK, "%s", lm_last_error());
  cr_assert_eq(c.arch, LM_ARCH_BERT);
  cr_assert_eq(c.vocab_size, 30522);
  cr_assert_eq(c.n_positions, 512);
  cr_assert_eq(c.n_embd, 768);
  cr_assert_eq(c.n_layer, 12);
  cr_assert_eq(c.n_head, 12);
  cr_assert_eq(c.n_inner, 3072);
  cr_assert_eq(c.act, LM_ACT_GELU_ERF);
  cr_assert_eq(c.norm_eps, 1e-12f);
  cr_assert(!c.pre_ln && !c.causal && c.bias && c.tie_embeddings);
  cr_assert_eq(c.bos_token_id, -1);
  cr_assert_eq(c.type_vocab_size, 2);
  cr_assert_eq(c.pad_token_id, 0);
  cr_assert_eq(c.head, LM_HEAD_MLM);   /* BertForMaskedLM: the MLM head */
}

Test(config, bert_classifier_dropout) {
  lm_config c;
  /* null (transformers' default) means hidden_dropout_prob: kept as < 0, and written back as null */
  cr_assert_eq(parse(&c, "{\"model_type\": \"bert\", \"classifier_dropout\": null}"), LM_OK, "%s", lm_last_error());
  cr_assert(c.cls_pdrop < 0);
  cr_assert_eq(parse(&c, "{\"model_type\": \"bert\", \"classifier_dropout\": 0.25}"), LM_OK, "%s", lm_last_error());
  cr_assert_eq(c.cls_pdrop, 0.25f);
  char *text;
  lm_config r = round_trip(&c, "cd.json", &text);
  r.n_inner = 0;   /* BERT writes 4 * n_embd for 0 */
  assert_same(&c, &r);
  cr_assert(strstr(text, "\"classifier_dropout\": 0.25"), "%s", text);
  free(text);
  expect_bad("{\"model_type\": \"bert\", \"classifier_dropout\": 1.5}", LM_ERR_RANGE, "classifier_dropout", "[0, 1)");
  expect_bad("{\"model_type\": \"bert\", \"classifier_dropout\": -0.1}", LM_ERR_RANGE, "classifier_dropout", NULL);
  expect_bad("{\"model_type\": \"bert\", \"classifier_dropout\": \"x\"}", LM_ERR_FORMAT, "classifier_dropout", NULL);
}

Test(config, hf_bert_fine_tuned) {
  lm_config c;
  /* the shape of a hub sentiment model's config */
  cr_assert_eq(parse(&c, "{\"architectures\": [\"BertForSequenceClassification\"], \"model_type\": \"bert\",\n"
                         " \"id2label\": {\"0\": \"NEGATIVE\", \"1\": \"NEUTRAL\", \"2\": \"POSITIVE\"},\n"
                         " \"label2id\": {\"NEGATIVE\": 0, \"NEUTRAL\": 1, \"POSITIVE\": 2}, \"type_vocab_size\": 1,\n"
                         " \"pad_token_id\": 1}"),
               LM_OK, "%s", lm_last_error());
  cr_assert_eq(c.head, LM_HEAD_CLASSIFY);
  cr_assert_eq(c.num_labels, 3);
  cr_assert_eq(c.type_vocab_size, 1);
  cr_assert_eq(c.pad_token_id, 1);
  cr_assert_eq(parse(&c, "{\"architectures\": [\"BertForTokenClassification\"], \"model_type\": \"bert\","
                         " \"label2id\": {\"O\": 0, \"B-PER\": 1, \"I-PER\": 2, \"B-LOC\": 3, \"I-LOC\": 4}}"),
               LM_OK, "%s", lm_last_error());
  cr_assert_eq(c.head, LM_HEAD_TOKENS);
  cr_assert_eq(c.num_labels, 5);
  cr_assert_eq(parse(&c, "{\"architectures\": [\"BertForTokenClassification\"], \"model_type\": \"bert\", \"num_labels\": 9}"),
               LM_OK);
  cr_assert_eq(c.num_labels, 9);
  cr_assert_eq(parse(&c, "{\"architectures\": [\"BertForQuestionAnswering\"], \"model_type\": \"bert\"}"), LM_OK);
  cr_assert_eq(c.head, LM_HEAD_QA);
  cr_assert_eq(parse(&c, "{\"architectures\": [\"BertModel\"], \"model_type\": \"bert\"}"), LM_OK);
  cr_assert_eq(c.head, LM_HEAD_PRETRAIN);
  cr_assert_eq(parse(&c, "{\"model_type\": \"bert\", \"pad_token_id\": null, \"architectures\": null}"), LM_OK);
  cr_assert_eq(c.pad_token_id, -1);
}

Test(config, gpt2_aliases_and_nulls) {
  lm_config c;
  cr_assert_eq(parse(&c, "{\"model_type\":\"gpt2\",\"n_ctx\":256}"), LM_OK);
  cr_assert_eq(c.n_positions, 256);
  cr_assert_eq(parse(&c, "{\"model_type\":\"gpt2\",\"n_ctx\":256,\"n_positions\":512}"), LM_OK);
  cr_assert_eq(c.n_positions, 512);
  cr_assert_eq(parse(&c, "{\"model_type\":\"gpt2\",\"n_inner\":null,\"bos_token_id\":null}"), LM_OK);
  cr_assert_eq(c.n_inner, 0);
  cr_assert_eq(c.bos_token_id, -1);
  cr_assert_eq(parse(&c, "{\"model_type\":\"gpt2\",\"activation_function\":\"gelu_pytorch_tanh\"}"), LM_OK);
  cr_assert_eq(c.act, LM_ACT_GELU_TANH);
  cr_assert_eq(parse(&c, "{\"model_type\":\"gpt2\",\"activation_function\":\"gelu\"}"), LM_OK);
  cr_assert_eq(c.act, LM_ACT_GELU_ERF);
  cr_assert_eq(parse(&c, "{\"model_type\":\"gpt2\",\"activation_function\":\"relu\"}"), LM_OK);
  cr_assert_eq(c.act, LM_ACT_RELU);
  /* old configs without model_type: the architecture tells */
  cr_assert_eq(parse(&c, "{\"architectures\":[\"GPT2LMHeadModel\"]}"), LM_OK);
  cr_assert_eq(c.arch, LM_ARCH_GPT2);
  cr_assert_eq(parse(&c, "  {\"model_type\":\"bert\"}\n\n"), LM_OK);
  cr_assert_eq(c.arch, LM_ARCH_BERT);
}

/* ---------------------------------------------------------------- round trips */
Test(config, gpt2_round_trip) {
  lm_config c;
  lm_config_default(&c, LM_ARCH_GPT2);
  cr_assert(c.embd_pdrop == 0 && c.attn_pdrop == 0 && c.resid_pdrop == 0, "a new model has no dropout unless asked");
  c.embd_pdrop = c.attn_pdrop = c.resid_pdrop = 0.1f;
  char *text;
  lm_config r = round_trip(&c, "a.json", &text);
  assert_same(&c, &r);
  /* the keys transformers looks for */
  const char *keys[] = {"\"model_type\": \"gpt2\"", "\"GPT2LMHeadModel\"", "\"n_inner\": null",
                        "\"layer_norm_epsilon\": 1e-05", "\"initializer_range\": 0.02", "\"activation_function\": \"gelu_new\"",
                        "\"resid_pdrop\": 0.1", "\"embd_pdrop\": 0.1", "\"attn_pdrop\": 0.1", "\"scale_attn_weights\": true",
                        "\"use_cache\": true", "\"torch_dtype\": \"float32\"", "\"transformers_version\"",
                        "\"tie_word_embeddings\": true", "\"vocab_size\": 50257", "\"bos_token_id\": 50256"};
  for (size_t k = 0; k < sizeof keys / sizeof *keys; k++) cr_assert(strstr(text, keys[k]), "missing %s in\n%s", keys[k], text);
  cr_assert_null(strstr(text, "lmkit"), "lmkit block written for a plain gpt2");
  free(text);

  /* a file without the dropout keys means GPT2Config's 0.1 */
  cr_assert_eq(parse(&r, "{\"model_type\":\"gpt2\"}"), LM_OK);
  cr_assert(r.embd_pdrop == 0.1f && r.attn_pdrop == 0.1f && r.resid_pdrop == 0.1f);

  /* a tiny, unusual GPT: every field away from its default */
  c.embd_pdrop = 0.05f; c.attn_pdrop = 0.2f; c.resid_pdrop = 0.3f;
  c.vocab_size = 257; c.n_positions = 64; c.n_embd = 48; c.n_layer = 3; c.n_head = 6; c.n_inner = 100;
  c.act = LM_ACT_RELU; c.norm = LM_NORM_RMS; c.pre_ln = 0; c.bias = 0; c.tie_embeddings = 0;
  c.norm_eps = 1e-6f; c.init_std = 0.037f; c.bos_token_id = -1; c.eos_token_id = 256;
  r = round_trip(&c, "b.json", &text);
  assert_same(&c, &r);
  cr_assert(strstr(text, "\"lmkit\": {"), "%s", text);
  cr_assert(strstr(text, "\"norm\": \"rms\""), "%s", text);
  cr_assert(strstr(text, "\"bos_token_id\": null"), "%s", text);
  free(text);
}

Test(config, bert_round_trip) {
  lm_config c;
  lm_config_default(&c, LM_ARCH_BERT);
  c.embd_pdrop = c.attn_pdrop = c.resid_pdrop = 0.1f;
  char *text;
  lm_config r = round_trip(&c, "bert.json", &text);
  cr_assert_eq(r.n_inner, 3072);   /* 0 means 4*n_embd; BERT writes the number */
  r.n_inner = 0;
  assert_same(&c, &r);
  const char *keys[] = {"\"model_type\": \"bert\"", "\"BertForPreTraining\"", "\"hidden_size\": 768",
                        "\"intermediate_size\": 3072", "\"layer_norm_eps\": 1e-12", "\"hidden_act\": \"gelu\"",
                        "\"type_vocab_size\": 2", "\"pad_token_id\": 0", "\"max_position_embeddings\": 512",
                        "\"hidden_dropout_prob\": 0.1", "\"attention_probs_dropout_prob\": 0.1"};
  for (size_t k = 0; k < sizeof keys / sizeof *keys; k++) cr_assert(strstr(text, keys[k]), "missing %s in\n%s", keys[k], text);
  cr_assert_null(strstr(text, "bos_token_id"));
  cr_assert_null(strstr(text, "lmkit"));
  free(text);

  c.n_embd = 128; c.n_head = 2; c.n_layer = 2; c.n_inner = 512; c.pre_ln = 1; c.act = LM_ACT_GELU_TANH;
  c.share_layers = 1; c.type_vocab_size = 3; c.pad_token_id = 7;
  r = round_trip(&c, "bert2.json", &text);
  assert_same(&c, &r);
  cr_assert(strstr(text, "\"share_layers\": true"), "%s", text);
  cr_assert(strstr(text, "\"type_vocab_size\": 3"), "%s", text);
  cr_assert(strstr(text, "\"pad_token_id\": 7"), "%s", text);
  free(text);

  /* each head: its architecture, and the labels of the classifiers */
  const char *arch[] = {"BertForPreTraining", "BertForSequenceClassification", "BertForTokenClassification",
                        "BertForQuestionAnswering"};
  for (int h = LM_HEAD_PRETRAIN; h <= LM_HEAD_QA; h++) {
    lm_config_default(&c, LM_ARCH_BERT);
    c.head = h; c.num_labels = 12;
    char name[32];
    snprintf(name, sizeof name, "head%d.json", h);
    r = round_trip(&c, name, &text);
    if (h != LM_HEAD_CLASSIFY && h != LM_HEAD_TOKENS) r.num_labels = 12;   /* not written: HF's default (2) reads back */
    r.n_inner = 0;
    assert_same(&c, &r);
    cr_assert(strstr(text, arch[h]), "%s", text);
    int labels = h == LM_HEAD_CLASSIFY || h == LM_HEAD_TOKENS;
    cr_assert_eq(strstr(text, "\"11\": \"LABEL_11\"") != NULL, labels, "%s", text);
    cr_assert_eq(strstr(text, "\"LABEL_11\": 11") != NULL, labels, "%s", text);
    /* label2id sorted as strings, as Python's json.dumps(sort_keys=True) writes it */
    if (labels) cr_assert(strstr(text, "\"LABEL_1\": 1,\n    \"LABEL_10\": 10"), "%s", text);
    free(text);
  }
}

Test(config, bert_bad_values) {
  expect_bad("{\"model_type\":\"bert\",\"id2label\":[\"a\",\"b\"]}", LM_ERR_FORMAT, "id2label", "array");
  expect_bad("{\"model_type\":\"bert\",\"label2id\":3}", LM_ERR_FORMAT, "label2id", NULL);
  expect_bad("{\"model_type\":\"bert\",\"architectures\":\"BertModel\"}", LM_ERR_FORMAT, "architectures", NULL);
  expect_bad("{\"model_type\":\"bert\",\"architectures\":[3]}", LM_ERR_FORMAT, "architectures", NULL);
  expect_bad("{\"model_type\":\"bert\",\"vocab_size\":100,\"pad_token_id\":100}", LM_ERR_RANGE, "pad_token_id = 100", NULL);
  expect_bad("{\"model_type\":\"bert\",\"num_labels\":0}", LM_ERR_RANGE, "num_labels", NULL);
  expect_bad("{\"model_type\":\"bert\",\"architectures\":[\"BertForNextSentencePrediction\"]}", LM_ERR_UNSUPPORTED,
             "BertForNextSentencePrediction", "BertForSequenceClassification");
  expect_bad("{\"model_type\":\"bert\",\"lmkit\":{\"norm\":\"rms\"}}", LM_ERR_UNSUPPORTED, "bert", "LayerNorm");
  expect_bad("{\"model_type\":\"bert\",\"lmkit\":{\"share_layers\":1}}", LM_ERR_FORMAT, "share_layers", NULL);
  lm_config c;
  lm_config_default(&c, LM_ARCH_BERT);
  c.head = 9;
  cr_assert_eq(lm_config_validate(&c), LM_ERR_ARG);
}

Test(config, save_rejects_invalid_and_unsupported) {
  lm_config c;
  lm_config_default(&c, LM_ARCH_GPT2);
  c.n_head = 7;
  char path[160];
  snprintf(path, sizeof path, "%s/bad.json", g_dir);
  cr_assert_eq(lm_config_save(&c, path), LM_ERR_RANGE);
  cr_assert(strstr(lm_last_error(), "n_head"));
  cr_assert(!lm_file_exists(path));
  c.arch = (lm_arch)99;   /* an architecture without a family file */
  cr_assert_eq(lm_config_save(&c, path), LM_ERR_UNSUPPORTED);
}

Test(config, validate_in_code) {
  lm_config c;
  lm_config_default(&c, LM_ARCH_GPT2);
  c.n_embd = 100; c.n_head = 3;
  cr_assert_eq(lm_config_validate(&c), LM_ERR_RANGE);
  cr_assert(strstr(lm_last_error(), "n_embd = 100") && strstr(lm_last_error(), "n_head = 3"), "%s", lm_last_error());
  lm_config_default(&c, LM_ARCH_BERT);
  c.n_head = 5;
  cr_assert_eq(lm_config_validate(&c), LM_ERR_RANGE);
  cr_assert(strstr(lm_last_error(), "hidden_size") && strstr(lm_last_error(), "num_attention_heads"), "%s", lm_last_error());
  lm_config_default(&c, LM_ARCH_GPT2);
  c.n_layer = 0;
  cr_assert_neq(lm_config_validate(&c), LM_OK);
  lm_config_default(&c, LM_ARCH_GPT2);
  c.norm_eps = 0;
  cr_assert_neq(lm_config_validate(&c), LM_OK);
  lm_config_default(&c, LM_ARCH_GPT2);
  c.act = (lm_act_kind)9;
  cr_assert_neq(lm_config_validate(&c), LM_OK);
}

/* ---------------------------------------------------------------- bad input */
Test(config, bad_json) {
  expect_bad("{\"model_type\": \"gpt2\",", LM_ERR_FORMAT, "JSON", NULL);
  expect_bad("", LM_ERR_FORMAT, "JSON", NULL);
  expect_bad("[1,2]", LM_ERR_FORMAT, "object", NULL);
  expect_bad("{\"model_type\":\"gpt2\"} x", LM_ERR_FORMAT, "trailing", NULL);
}

Test(config, bad_model_type) {
  expect_bad("{}", LM_ERR_FORMAT, "model_type", NULL);
  expect_bad("{\"model_type\": 2}", LM_ERR_FORMAT, "model_type", NULL);
  expect_bad("{\"model_type\": \"mamba\"}", LM_ERR_UNSUPPORTED, "mamba", NULL);
  /* BART variants whose math lmkit does not implement are refused by key */
  expect_bad("{\"model_type\": \"bart\", \"normalize_before\": true}", LM_ERR_UNSUPPORTED, "normalize_before", NULL);
  expect_bad("{\"model_type\": \"bart\", \"add_final_layer_norm\": true}", LM_ERR_UNSUPPORTED, "add_final_layer_norm", NULL);
  expect_bad("{\"model_type\": \"bart\", \"scale_embedding\": true}", LM_ERR_UNSUPPORTED, "scale_embedding", NULL);
  expect_bad("{\"model_type\": \"bart\", \"activation_function\": \"relu\"}", LM_ERR_UNSUPPORTED, "activation_function", "relu");
  expect_bad("{\"model_type\": \"bart\", \"encoder_ffn_dim\": 64, \"decoder_ffn_dim\": 32}", LM_ERR_UNSUPPORTED, "decoder_ffn_dim", NULL);
  expect_bad("{\"model_type\": \"bart\", \"decoder_layerdrop\": 0.1}", LM_ERR_UNSUPPORTED, "layerdrop", NULL);
  /* encoder-decoder dropout rates outside [0, 1) are errors naming the key */
  expect_bad("{\"model_type\": \"t5\", \"dropout_rate\": 1.0}", LM_ERR_RANGE, "dropout_rate", NULL);
  expect_bad("{\"model_type\": \"bart\", \"dropout\": -0.1}", LM_ERR_RANGE, "dropout", NULL);
  expect_bad("{\"model_type\": \"bart\", \"attention_dropout\": 1.5}", LM_ERR_RANGE, "attention_dropout", NULL);
  expect_bad("{\"model_type\": \"bart\", \"activation_dropout\": 1.0}", LM_ERR_RANGE, "activation_dropout", NULL);
}

Test(config, bad_types) {
  expect_bad("{\"model_type\":\"gpt2\",\"n_embd\":\"768\"}", LM_ERR_FORMAT, "n_embd", "string");
  expect_bad("{\"model_type\":\"gpt2\",\"n_head\":1.5}", LM_ERR_FORMAT, "n_head", "1.5");
  expect_bad("{\"model_type\":\"gpt2\",\"n_layer\":null}", LM_ERR_FORMAT, "n_layer", "null");
  expect_bad("{\"model_type\":\"gpt2\",\"layer_norm_epsilon\":\"1e-5\"}", LM_ERR_FORMAT, "layer_norm_epsilon", NULL);
  expect_bad("{\"model_type\":\"gpt2\",\"tie_word_embeddings\":1}", LM_ERR_FORMAT, "tie_word_embeddings", NULL);
  expect_bad("{\"model_type\":\"gpt2\",\"activation_function\":7}", LM_ERR_FORMAT, "activation_function", NULL);
  expect_bad("{\"model_type\":\"bert\",\"hidden_size\":[768]}", LM_ERR_FORMAT, "hidden_size", "array");
  expect_bad("{\"model_type\":\"gpt2\",\"lmkit\":{\"pre_ln\":\"yes\"}}", LM_ERR_FORMAT, "lmkit", "pre_ln");
  expect_bad("{\"model_type\":\"gpt2\",\"lmkit\":{\"norm\":\"batch\"}}", LM_ERR_FORMAT, "lmkit", "batch");
  expect_bad("{\"model_type\":\"gpt2\",\"lmkit\":3}", LM_ERR_FORMAT, "lmkit", NULL);
}

Test(config, bad_values) {
  expect_bad("{\"model_type\":\"gpt2\",\"n_embd\":770}", LM_ERR_RANGE, "n_embd = 770", "n_head = 12");
  expect_bad("{\"model_type\":\"bert\",\"hidden_size\":770}", LM_ERR_RANGE, "hidden_size = 770", "num_attention_heads");
  expect_bad("{\"model_type\":\"gpt2\",\"n_layer\":0}", LM_ERR_RANGE, "n_layer = 0", NULL);
  expect_bad("{\"model_type\":\"gpt2\",\"vocab_size\":-5}", LM_ERR_RANGE, "vocab_size = -5", NULL);
  expect_bad("{\"model_type\":\"gpt2\",\"vocab_size\":1000000000000}", LM_ERR_RANGE, "vocab_size", NULL);
  expect_bad("{\"model_type\":\"gpt2\",\"n_positions\":1e300}", LM_ERR_FORMAT, "n_positions", NULL);
  expect_bad("{\"model_type\":\"gpt2\",\"n_head\":0}", LM_ERR_RANGE, "n_head = 0", NULL);
  expect_bad("{\"model_type\":\"gpt2\",\"n_inner\":-1}", LM_ERR_RANGE, "n_inner", NULL);
  expect_bad("{\"model_type\":\"gpt2\",\"layer_norm_epsilon\":0}", LM_ERR_RANGE, "layer_norm_epsilon", NULL);
  expect_bad("{\"model_type\":\"gpt2\",\"layer_norm_epsilon\":1e-60}", LM_ERR_RANGE, "layer_norm_epsilon", NULL);
  expect_bad("{\"model_type\":\"gpt2\",\"initializer_range\":-1}", LM_ERR_RANGE, "initializer_range", NULL);
  expect_bad("{\"model_type\":\"gpt2\",\"activation_function\":\"tanh\"}", LM_ERR_UNSUPPORTED, "activation_function",
             "tanh");
  expect_bad("{\"model_type\":\"bert\",\"hidden_act\":\"tanh\"}", LM_ERR_UNSUPPORTED, "hidden_act", "tanh");
  expect_bad("{\"model_type\":\"bert\",\"position_embedding_type\":\"relative_key\"}", LM_ERR_UNSUPPORTED,
             "position_embedding_type", "relative_key");
  expect_bad("{\"model_type\":\"bert\",\"type_vocab_size\":-2}", LM_ERR_RANGE, "type_vocab_size", NULL);
  expect_bad("{\"model_type\":\"gpt2\",\"scale_attn_weights\":false}", LM_ERR_UNSUPPORTED, "scale_attn_weights", NULL);
  expect_bad("{\"model_type\":\"gpt2\",\"bos_token_id\":-7}", LM_ERR_RANGE, "bos_token_id", NULL);
}

Test(config, load_missing_file) {
  lm_config c;
  char path[160];
  snprintf(path, sizeof path, "%s/none.json", g_dir);
  cr_assert_eq(lm_config_load(&c, path), LM_ERR_IO);
  cr_assert(strstr(lm_last_error(), "none.json"));
}
