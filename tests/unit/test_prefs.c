/* test_prefs.c — preference records (src/train/prefs.c): every format becomes the
 * right two conversations; pairs without signal are skipped with their reason;
 * malformed records are errors naming where they are. */
#include <criterion/criterion.h>
#include <string.h>
#include "base/base.h"
#include "train/posttrain.h"

/* parses one record; returns lm_pref_record's status */
static lm_status rec(const char *json, cJSON **c, cJSON **r, double *margin, const char **why) {
  cJSON *j = cJSON_Parse(json);
  cr_assert(j, "test JSON: %s", json);
  lm_status st = lm_pref_record(j, "f.jsonl:7", c, r, margin, why);
  cJSON_Delete(j);
  return st;
}

/* "role:content|role:content|..." of a message list */
static void flat(const cJSON *msgs, char *buf, size_t n) {
  buf[0] = 0;
  const cJSON *m;
  cJSON_ArrayForEach(m, msgs) {
    size_t k = strlen(buf);
    snprintf(buf + k, n - k, "%s%s:%s", k ? "|" : "", cJSON_GetObjectItem(m, "role")->valuestring,
             cJSON_GetObjectItem(m, "content")->valuestring);
  }
}

static void expect(const char *json, const char *chosen, const char *rejected, double margin) {
  cJSON *c, *r; double mg; const char *why;
  cr_assert_eq(rec(json, &c, &r, &mg, &why), LM_OK, "%s: %s", json, lm_last_error());
  cr_assert_null(why, "%s skipped as %s", json, why ? why : "");
  char a[512], b[512];
  flat(c, a, sizeof a); flat(r, b, sizeof b);
  cr_assert_str_eq(a, chosen);
  cr_assert_str_eq(b, rejected);
  cr_assert_float_eq(mg, margin, 1e-12);
  cJSON_Delete(c); cJSON_Delete(r);
}

static void skipped(const char *json, const char *reason) {
  cJSON *c, *r; double mg; const char *why;
  cr_assert_eq(rec(json, &c, &r, &mg, &why), LM_OK, "%s: %s", json, lm_last_error());
  cr_assert(!c && !r);
  cr_assert(why && !strcmp(why, reason), "%s: expected %s, got %s", json, reason, why ? why : "(kept)");
}

static void refused(const char *json, const char *msg) {
  cJSON *c, *r; double mg; const char *why;
  cr_assert_neq(rec(json, &c, &r, &mg, &why), LM_OK, "%s was accepted", json);
  cr_assert(!c && !r);
  cr_assert(strstr(lm_last_error(), "f.jsonl:7"), "no file:line in: %s", lm_last_error());
  cr_assert(strstr(lm_last_error(), msg), "'%s' not in: %s", msg, lm_last_error());
}

Test(prefs, prompt_chosen_rejected) {
  expect("{\"prompt\": \"hi\", \"chosen\": \"yes\", \"rejected\": \"no\"}", "user:hi|assistant:yes", "user:hi|assistant:no", 0);
  expect("{\"prompt\": [{\"role\": \"system\", \"content\": \"s\"}, {\"role\": \"user\", \"content\": \"q\"}],"
         " \"chosen\": [{\"role\": \"assistant\", \"content\": \"a\"}], \"rejected\": \"b\", \"margin\": 2.5}",
         "system:s|user:q|assistant:a", "system:s|user:q|assistant:b", 2.5);
}

Test(prefs, implicit_prompt) {
  expect("{\"chosen\": [{\"role\": \"user\", \"content\": \"q\"}, {\"role\": \"assistant\", \"content\": \"a\"}],"
         " \"rejected\": [{\"role\": \"user\", \"content\": \"q\"}, {\"role\": \"assistant\", \"content\": \"b\"}]}",
         "user:q|assistant:a", "user:q|assistant:b", 0);
  /* the two sides differ before their last message: no shared prompt */
  skipped("{\"chosen\": [{\"role\": \"user\", \"content\": \"q\"}, {\"role\": \"assistant\", \"content\": \"a\"}],"
          " \"rejected\": [{\"role\": \"user\", \"content\": \"other\"}, {\"role\": \"assistant\", \"content\": \"b\"}]}",
          "no_prompt");
}

Test(prefs, hh_rlhf) {
  /* the prompt is the common text up to its last "\n\nAssistant:", split into turns */
  expect("{\"chosen\": \"\\n\\nHuman: What is 2+2?\\n\\nAssistant: Four.\\n\\nHuman: And 3+3?\\n\\nAssistant: Six.\","
         " \"rejected\": \"\\n\\nHuman: What is 2+2?\\n\\nAssistant: Four.\\n\\nHuman: And 3+3?\\n\\nAssistant: I won't say.\"}",
         "user:What is 2+2?|assistant:Four.|user:And 3+3?|assistant:Six.",
         "user:What is 2+2?|assistant:Four.|user:And 3+3?|assistant:I won't say.", 0);
  /* responses that share their beginning: the prompt still stops at the last shared Assistant marker */
  expect("{\"chosen\": \"Human: hi\\n\\nAssistant: Hello there\", \"rejected\": \"Human: hi\\n\\nAssistant: Hello\"}",
         "user:hi|assistant:Hello there", "user:hi|assistant:Hello", 0);
  skipped("{\"chosen\": \"\\n\\nHuman: a\\n\\nAssistant: x\", \"rejected\": \"\\n\\nHuman: b\\n\\nAssistant: y\"}", "no_prompt");
  skipped("{\"chosen\": \"\\n\\nHuman: a\\n\\nAssistant: x\", \"rejected\": \"\\n\\nHuman: a\\n\\nAssistant: x\"}", "identical");
  skipped("{\"chosen\": \"\\n\\nHuman: a\\n\\nAssistant: x\", \"rejected\": \"\\n\\nHuman: a\\n\\nAssistant:  \"}", "empty");
  refused("{\"chosen\": \"just text\", \"rejected\": \"other text\"}", "hh-rlhf");
  refused("{\"chosen\": \"preamble\\n\\nHuman: a\\n\\nAssistant: x\", \"rejected\": \"preamble\\n\\nHuman: a\\n\\nAssistant: y\"}",
          "before the first");
}

Test(prefs, skipped_pairs) {
  skipped("{\"prompt\": \"q\", \"chosen\": \"\", \"rejected\": \"b\"}", "empty");
  skipped("{\"prompt\": \"q\", \"chosen\": \"a\", \"rejected\": \" \\n\"}", "empty");
  skipped("{\"prompt\": \"q\", \"chosen\": \"same\", \"rejected\": \"same\"}", "identical");
}

Test(prefs, malformed) {
  refused("[1, 2]", "expected a JSON object");
  refused("{\"prompt\": \"q\", \"chosen\": \"a\"}", "needs \"chosen\" and \"rejected\"");
  refused("{\"prompt\": \"q\", \"chosen\": 3, \"rejected\": \"b\"}", "chosen must be a string or a list of messages");
  refused("{\"prompt\": 5, \"chosen\": \"a\", \"rejected\": \"b\"}", "prompt must be");
  refused("{\"prompt\": \"q\", \"chosen\": \"a\", \"rejected\": \"b\", \"margin\": \"big\"}", "margin must be a number");
  refused("{\"prompt\": \"q\", \"chosen\": [{\"role\": \"user\"}], \"rejected\": \"b\"}", "chosen[0] is not a message");
  refused("{\"prompt\": \"q\", \"chosen\": [{\"role\": \"user\", \"content\": \"a\"}], \"rejected\": \"b\"}",
          "must end with an assistant message");
  refused("{\"prompt\": \"q\", \"chosen\": [], \"rejected\": \"b\"}", "empty list");
  refused("{\"chosen\": \"a\", \"rejected\": [{\"role\": \"assistant\", \"content\": \"b\"}]}", "both");
}

Test(prefs, prompt_response) {
  cJSON *j = cJSON_Parse("{\"prompt\": \"q\", \"response\": \"a\"}"), *conv;
  cr_assert_eq(lm_pref_prompt_response(j, "stdin:3", &conv), LM_OK);
  char buf[256];
  flat(conv, buf, sizeof buf);
  cr_assert_str_eq(buf, "user:q|assistant:a");
  cJSON_Delete(conv); cJSON_Delete(j);
  j = cJSON_Parse("{\"prompt\": \"q\"}");
  cr_assert_neq(lm_pref_prompt_response(j, "stdin:3", &conv), LM_OK);
  cr_assert(strstr(lm_last_error(), "stdin:3"));
  cJSON_Delete(j);
}

Test(prefs, loss_names) {
  const char *names[] = {"sigmoid", "ipo", "hinge", "simpo", "orpo"};
  for (int i = 0; i < 5; i++) {
    cr_assert_eq(lm_pref_loss_from_name(names[i]), i);
    cr_assert_str_eq(lm_pref_loss_name(i), names[i]);
    cr_assert_eq(lm_pref_loss_uses_reference(i), i < 3);
  }
  cr_assert_eq(lm_pref_loss_from_name("kto"), -1);
}
