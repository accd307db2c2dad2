/* test_rewards.c — the RL rewards (src/train/rewards.c): arith against answers and
 * expressions, regex matches, a reward command's numbers, and its failures (bad
 * output, too few or too many lines, a failed exit, a timeout) as clear errors. */
#include <criterion/criterion.h>
#include <string.h>
#include "base/base.h"
#include "train/rl.h"

static lm_reward_item item(const char *completion, cJSON *rec) {
  return (lm_reward_item){.prompt = "2+3=", .record = rec, .completion = completion};
}

Test(rewards, arith) {
  lm_rewarder *r;
  cr_assert_eq(lm_rewarder_open(&r, "arith", 1), LM_OK);
  cr_expect_str_eq(lm_rewarder_name(r), "arith");
  cJSON *a = cJSON_Parse("{\"prompt\": \"2+3=\", \"answer\": 5}"), *e = cJSON_Parse("{\"prompt\": \"x\", \"expression\": \"77*33\"}"),
        *s = cJSON_Parse("{\"prompt\": \"x\", \"answer\": \"-1.5\"}"), *none = cJSON_Parse("{\"prompt\": \"x\"}");
  cr_expect_eq(lm_rewarder_check(r, a, "t:1"), LM_OK);
  cr_expect_eq(lm_rewarder_check(r, e, "t:2"), LM_OK);
  cr_expect_eq(lm_rewarder_check(r, none, "t:3"), LM_ERR_FORMAT);
  cr_expect(strstr(lm_last_error(), "t:3") != NULL);
  lm_reward_item it[] = {item("<answer>5</answer>", a), item("so <answer> 5 </answer>", a), item("<answer>6</answer>", a),
                         item("5", a), item("<answer>2+3</answer>", a), item("<answer>4</answer> <answer>5</answer>", a),
                         item("<answer>5", a), item("<answer>2541</answer>", e), item("<answer>-1.5</answer>", s),
                         item("<answer>0x5</answer>", a)};
  float out[10], want[10] = {1, 1, 0, 0, 0, 1, 0, 1, 1, 0};
  cr_assert_eq(lm_rewarder_score(r, it, 10, out), LM_OK);
  for (int i = 0; i < 10; i++) cr_expect_eq(out[i], want[i], "item %d: %g", i, out[i]);
  lm_rewarder_free(r);
  cJSON_Delete(a); cJSON_Delete(e); cJSON_Delete(s); cJSON_Delete(none);
}

Test(rewards, regex) {
  lm_rewarder *r;
  cr_assert_eq(lm_rewarder_open(&r, "regex:^<think>.*</think>", 1), LM_OK);
  lm_reward_item it[] = {item("<think>a</think> b", NULL), item("x <think>a</think>", NULL), item("\xff\xfe", NULL)};
  float out[3];
  cr_assert_eq(lm_rewarder_score(r, it, 3, out), LM_OK);
  cr_expect(out[0] == 1 && out[1] == 0 && out[2] == 0);
  lm_rewarder_free(r);
  cr_expect_eq(lm_rewarder_open(&r, "regex:(unclosed", 1), LM_ERR_ARG);
  cr_expect(strstr(lm_last_error(), "regex:(unclosed") != NULL);
}

static lm_status run_cmd(const char *cmd, double timeout, float *out, int n) {
  lm_rewarder *r;
  lm_status st = lm_rewarder_open(&r, cmd, timeout);
  if (st) return st;
  lm_reward_item it[3] = {item("a", NULL), item("b\n\"c\"", NULL), item("", NULL)};
  st = lm_rewarder_score(r, it, n, out);
  lm_rewarder_free(r);
  return st;
}

Test(rewards, command) {
  float out[3];
  /* the completion's length in characters, read back from the JSON lines */
  cr_assert_eq(run_cmd("cmd:python3 -c \"import json,sys\nfor l in sys.stdin: print(len(json.loads(l)['completion']))\"", 20, out, 3),
               LM_OK, "%s", lm_last_error());
  cr_expect(out[0] == 1 && out[1] == 5 && out[2] == 0);
  cr_expect_eq(run_cmd("cmd:printf '1\\n2\\n'", 5, out, 3), LM_ERR_FORMAT);
  cr_expect(strstr(lm_last_error(), "wrote 2 lines for 3") != NULL, "%s", lm_last_error());
  cr_expect_eq(run_cmd("cmd:printf '1\\n2\\n3\\n4\\n'", 5, out, 3), LM_ERR_FORMAT);
  cr_expect(strstr(lm_last_error(), "more than 3 lines") != NULL, "%s", lm_last_error());
  cr_expect_eq(run_cmd("cmd:printf '1\\nhigh\\n3\\n'", 5, out, 3), LM_ERR_FORMAT);
  cr_expect(strstr(lm_last_error(), "line 2 is not a number") != NULL, "%s", lm_last_error());
  cr_expect_eq(run_cmd("cmd:cat > /dev/null; exit 3", 5, out, 3), LM_ERR_IO);
  cr_expect(strstr(lm_last_error(), "exit status 3") != NULL, "%s", lm_last_error());
  cr_expect_eq(run_cmd("cmd:sleep 5", 0.3, out, 3), LM_ERR_IO);
  cr_expect(strstr(lm_last_error(), "longer than 0.3 s") != NULL, "%s", lm_last_error());
  cr_expect_eq(run_cmd("cmd:", 5, out, 3), LM_ERR_ARG);
}

Test(rewards, model_dir_missing) {
  lm_rewarder *r;
  cr_expect_neq(lm_rewarder_open(&r, "/nonexistent/rm", 1), LM_OK);
  cr_expect(strstr(lm_last_error(), "/nonexistent/rm") != NULL, "%s", lm_last_error());
}
