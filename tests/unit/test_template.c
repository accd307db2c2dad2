/* test_template.c — the chat-template engine (src/infer/template.c).
 *
 * FEATURES: templates exercising each supported construct, with the output @huggingface/jinja
 * (the reference, transformers.js) gives for them (generated with tests/reference/jinja_ref.mjs;
 * tests/reference/test_jinja.py checks real models' templates the same way, live). Then the
 * errors: syntax errors and unsupported constructs name the construct and the line, runaway
 * templates hit limits instead of exhausting memory or the stack, raise_exception carries its
 * message, and bad requests and model directories are refused with the field at fault. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "base/base.h"
#include "infer/template.h"

/* Renders src with vars (JSON text); returns the status, *out malloc'ed on success. */
static lm_status render(const char *src, const char *vars_json, char **out) {
  *out = NULL;
  lm_template *t;
  lm_status st = lm_template_parse(&t, src, strlen(src), "chat template");
  if (st) return st;
  cJSON *vars = cJSON_Parse(vars_json ? vars_json : "{}");
  cr_assert_not_null(vars, "bad test JSON: %s", vars_json);
  size_t len;
  st = lm_template_render(t, vars, out, &len);
  if (!st) cr_assert_eq(strlen(*out), len);
  cJSON_Delete(vars);
  lm_template_free(t);
  return st;
}
static void expect_out(const char *src, const char *vars, const char *want) {
  char *out;
  lm_status st = render(src, vars, &out);
  cr_assert_eq(st, LM_OK, "%s\nfailed: %s", src, lm_last_error());
  cr_assert_str_eq(out, want, "%s\nrendered %s\nwanted   %s", src, out, want);
  free(out);
}
/* Must fail with st and a message holding each given word (NULL: none). */
static void expect_err(const char *src, const char *vars, lm_status st, const char *w1, const char *w2) {
  char *out;
  lm_status got = render(src, vars, &out);
  cr_assert_eq(got, st, "%s\nstatus %d (wanted %d), message: %s, output: %s", src, got, st, lm_last_error(), out ? out : "");
  const char *m = lm_last_error();
  if (w1) cr_assert(strstr(m, w1), "'%s' lacks '%s'", m, w1);
  if (w2) cr_assert(strstr(m, w2), "'%s' lacks '%s'", m, w2);
}

static const struct { const char *src, *vars, *want; } FEATURES[] = {
  {"text only\n",
   "{}",
   "text only"},
  {"a {{ 'b' }} c",
   "{}",
   "a b c"},
  {"{{ 1 + 2 }} {{ 1.5 + 1 }} {{ 7 / 2 }} {{ 7 // 2 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 4 / 2 }}",
   "{}",
   "3 2.5 3.5 3 -1 1024 2.0"},
  {"{{ 1.0 }} {{ 0.1 + 0.2 }} {{ 100000000000000000000000.0 }} {{ 123456789012345678901234567890 }} {{ -0.0 }} {{ 10 ** -2 }}",
   "{}",
   "1.0 0.30000000000000004 1e+23 1.2345678901234568e+29 -0.0 0.01"},
  {"{{ 'a' + 'b' ~ 1 ~ 2.0 ~ true ~ [1, 'x'] }}",
   "{}",
   "ab12true1,x"},
  {"{{ true }} {{ none }}|{{ undefined_var }}|{{ [1, 2.5, 'a', none, true] }} {{ {'k': [1, {'z': none}]} }}",
   "{}",
   "true ||[1, 2.5, \"a\", null, true] {\"k\": [1, {\"z\": null}]}"},
  {"{% if x %}x{% elif y %}y{% else %}z{% endif %}",
   "{\"x\": 0, \"y\": \"\"}",
   "z"},
  {"{% if x %}x{% elif y %}y{% else %}z{% endif %}",
   "{\"x\": 0, \"y\": \"1\"}",
   "y"},
  {"{% for m in messages %}{{ loop.index }}{{ loop.index0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.revindex }}:{{ m.role }};{% endfor %}",
   "{\"messages\": [{\"role\": \"system\", \"content\": \"sys\"}, {\"role\": \"user\", \"content\": \" hi \"}, {\"role\": \"assistant\", \"content\": \"yo\"}]}",
   "10truefalse33:system;21falsefalse32:user;32falsetrue31:assistant;"},
  {"{% for m in messages if m.role != 'system' %}{{ loop.index }}={{ m['role'] }} {% endfor %}",
   "{\"messages\": [{\"role\": \"system\", \"content\": \"sys\"}, {\"role\": \"user\", \"content\": \" hi \"}, {\"role\": \"assistant\", \"content\": \"yo\"}]}",
   "1=user 2=assistant "},
  {"{% for x in [] %}x{% else %}empty{% endfor %}",
   "{}",
   "empty"},
  {"{% for x in [1, 2, 3, 4] %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 4 %}{% break %}{% endif %}{{ x }}{% endfor %}",
   "{}",
   "13"},
  {"{% for k, v in d.items() %}{{ k }}={{ v }},{% endfor %}|{% for k in d %}{{ k }}{% endfor %}",
   "{\"d\": {\"b\": 1, \"a\": 2}}",
   "b=1,a=2,|ba"},
  {"  {% if true %}\n  yes\n  {% endif %}\n  end\n",
   "{}",
   "  yes\n  end"},
  {"a  {%- if true -%}  b  {%- endif -%}  c {{- ' d ' -}} e {#- comment -#} f",
   "{}",
   "abc d ef"},
  {"{% set x = 1 %}{% set y %}block {{ x }}{% endset %}{{ y }}|{% set a, b = [1, 2] %}{{ a }}{{ b }}",
   "{}",
   "block 1|12"},
  {"{% set ns = namespace(n=0, s='') %}{% for i in range(4) %}{% set ns.n = ns.n + i %}{% set ns.s = ns.s ~ i %}{% endfor %}{{ ns.n }} {{ ns.s }} {{ ns }}",
   "{}",
   "6 0123 {\"n\": 6, \"s\": \"0123\"}"},
  {"{% set x = 5 %}{% for i in [1] %}{% set x = 7 %}{% endfor %}{{ x }}",
   "{}",
   "5"},
  {"{% macro greet(name, punct='!') %}Hello {{ name }}{{ punct }}{% endmacro %}{{ greet('Ann') }} {{ greet('Bob', punct='?') }}",
   "{}",
   "Hello Ann! Hello Bob?"},
  {"{% macro m(a) %}{{ a }}{{ kwargs }}{{ varargs }}{% endmacro %}{{ m(1, 2, 3, k='v') }}",
   "{}",
   "1{\"k\": \"v\"}[2, 3]"},
  {"{% macro box() %}[{{ caller() }}]{% endmacro %}{% call box() %}inside{% endcall %}",
   "{}",
   "[inside]"},
  {"{{ ' x '|trim }}|{{ 'h\xc3\xa9""llo'|upper }}|{{ '\xc3\x80""B'|lower }}|{{ 'stra\xc3\x9f""e'|upper }}|{{ 'ab\xf0\x9f\x98\x80""'|length }}|{{ [1,2]|length }}|{{ {'a':1}|length }}",
   "{}",
   "x|H\xc3\x89""LLO|\xc3\xa0""b|STRASSE|4|2|1"},
  {"{{ 'a-b-c'|replace('-', '+') }} {{ 'aaa'.replace('a', 'b', 2) }} {{ 'ab'|replace('', '.') }}",
   "{}",
   "a+b+c bba .a.b."},
  {"{{ x|default('d') }} {{ none|default('d') }} {{ ''|default('d', true) }} {{ y|default('z') }}",
   "{\"y\": \"set\"}",
   "d  d set"},
  {"{{ [1, 'a', none, 2.0]|join(', ') }} {{ 'abc'|join('-') }} {{ ['x', 'y']|join }}",
   "{}",
   "1, a, , 2 a-b-c xy"},
  {"{{ d|tojson }} {{ d|tojson(indent=2) }} {{ '\xc3\xa9""\"\\n'|tojson }} {{ '\xc3\xa9""\xf0\x9f\x98\x80""'|tojson(ensure_ascii=true) }} {{ d|tojson(separators=(',', ':')) }}",
   "{\"d\": {\"b\": [1, 2.5, null, true], \"a\": {}, \"c\": []}}",
   "{\"b\": [1, 2.5, null, true], \"a\": {}, \"c\": []} {\n  \"b\": [\n    1,\n    2.5,\n    null,\n    true\n  ],\n  \"a\": {},\n  \"c\": []\n} \"\xc3\xa9""\\\"\\n\" \"\\u00e9\\ud83d\\ude00\" {\"b\":[1,2.5,null,true],\"a\":{},\"c\":[]}"},
  {"{{ d|tojson }}",
   "{\"d\": {\"b\": 1, \"10\": 2, \"2\": 3, \"a\": {\"1\": 0, \"x\": 1}}}",
   "{\"2\": 3, \"10\": 2, \"b\": 1, \"a\": {\"1\": 0, \"x\": 1}}"},
  {"{{ 'abc'|capitalize }} {{ 'hello world-foo'|title }} {{ [3, 1, 2]|sort }} {{ ['b', 'A', 'c']|sort }} {{ [1, 2]|reverse }} {{ [1, 2]|first }}{{ [1, 2]|last }}",
   "{}",
   "Abc Hello World-Foo [1, 2, 3] [\"A\", \"b\", \"c\"] [2, 1] 12"},
  {"{{ [1, 2, 1, 'a', 'a']|unique }} {{ 3.7|int }} {{ '12abc'|int }} {{ 'x'|int }} {{ '2.5e1x'|float }} {{ -3|abs }} {{ 3|string }} {{ 2.0|string }}",
   "{}",
   "[1, 2, \"a\"] 3 12 0 25.0 3 3 2.0"},
  {"{{ messages|selectattr('role', 'equalto', 'user')|list|length }} {{ messages|rejectattr('role', 'equalto', 'user')|map(attribute='role')|join(',') }}",
   "{\"messages\": [{\"role\": \"system\", \"content\": \"sys\"}, {\"role\": \"user\", \"content\": \" hi \"}, {\"role\": \"assistant\", \"content\": \"yo\"}]}",
   "1 system,assistant"},
  {"{{ messages|map(attribute='content')|join('|') }} {{ messages|sort(attribute='role')|map(attribute='role')|join(',') }}",
   "{\"messages\": [{\"role\": \"system\", \"content\": \"sys\"}, {\"role\": \"user\", \"content\": \" hi \"}, {\"role\": \"assistant\", \"content\": \"yo\"}]}",
   "sys| hi |yo assistant,system,user"},
  {"{{ d|dictsort }} {{ d|items }} {{ d.keys() }} {{ d.values() }} {{ d.get('a') }} {{ d.get('zz', 'no') }}",
   "{\"d\": {\"b\": 1, \"a\": 2}}",
   "[[\"a\", 2], [\"b\", 1]] [[\"b\", 1], [\"a\", 2]] [\"b\", \"a\"] [1, 2] 2 no"},
  {"{{ 'x' in 'xyz' }} {{ 'q' not in 'xyz' }} {{ 1 in [1, 2] }} {{ 'a' in {'a': 1} }} {{ 'a' in undefined_thing }} {{ not true }}",
   "{}",
   "true true true true false false"},
  {"{{ 1 == 1.0 }} {{ 1 == '1' }} {{ none == undef }} {{ 'a' != 'b' }} {{ 2 < 3 }} {{ 2 >= 3 }} {{ true == 1 }} {{ [1] == '1' }}",
   "{}",
   "true true true true true false true true"},
  {"{{ x is defined }} {{ y is none }} {{ 'a' is string }} {{ 1 is number }} {{ 1.5 is integer }} {{ [1] is iterable }} {{ d is mapping }} {{ 3 is odd }} {{ 'AB' is upper }} {{ x is not defined }}",
   "{\"y\": null, \"d\": {}}",
   "false true true true false true true true true true"},
  {"{{ a or 'b' }} {{ a and 'b' }} {{ 'x' if a else 'y' }} {{ [0, 1] or [] }} {{ ('t' if true) }}|{{ ('t' if false) }}|",
   "{\"a\": \"\"}",
   "b  y [0, 1] t||"},
  {"{{ s[1:] }} {{ s[::-1] }} {{ s[-2:] }} {{ s[1:4:2] }} {{ l[1:] }} {{ l[::-1] }} {{ l[-1] }} {{ s[0] }} {{ s[-3] }} {{ l[5] }}|",
   "{\"s\": \"h\xc3\xa9""llo\xf0\x9f\x98\x80""\", \"l\": [1, 2, 3]}",
   "\xc3\xa9""llo\xf0\x9f\x98\x80"" \xf0\x9f\x98\x80""oll\xc3\xa9""h o\xf0\x9f\x98\x80"" \xc3\xa9""l [2, 3] [3, 2, 1] 3 h o |"},
  {"{{ ' a b  '.strip() }}|{{ '\\n\\nx'.lstrip('\\n') }}|{{ 'x\\n '.rstrip() }}|{{ 'abc'.startswith('ab') }}{{ 'abc'.endswith(('x', 'c')) }}|{{ 'a,b,,c'.split(',') }} {{ ' a  b '.split() }} {{ 'a,b,c'.split(',', 1) }}",
   "{}",
   "a b|x|x|truetrue|[\"a\", \"b\", \"\", \"c\"] [\"a\", \"b\"] [\"a\", \"b,c\"]"},
  {"{{ 'Hi'.upper() }}{{ 'Hi'.lower() }}{{ 'hi there'.title() }}{{ 'x'.length }}{{ messages[0].role.upper() }}",
   "{\"messages\": [{\"role\": \"system\", \"content\": \"sys\"}, {\"role\": \"user\", \"content\": \" hi \"}, {\"role\": \"assistant\", \"content\": \"yo\"}]}",
   "HIhiHi There1SYSTEM"},
  {"{% filter upper %}shout {{ 'it' }}{% endfilter %}",
   "{}",
   "SHOUT IT"},
  {"{{ 'line1\\nline2\\n\\nline4'|indent }}|{{ 'a\\nb'|indent(2, true) }}",
   "{}",
   "line1\n    line2\n\n    line4|  a\n  b"},
  {"{% for a, b in [[1, 2], [3, 4]] %}{{ a + b }}{% endfor %} {% for i in range(2, 10, 3) %}{{ i }}{% endfor %} {{ range(3) }}",
   "{}",
   "37 258 [0, 1, 2]"},
  {"{{ 'a' 'b' }} {{ \"q\\\"\" }} {{ '\\x41\\u00e9' }} {{ {'a': 1}['a'] }} {{ [1, 2][0] }} {{ messages[0]['content'] }}",
   "{\"messages\": [{\"role\": \"system\", \"content\": \"sys\"}, {\"role\": \"user\", \"content\": \" hi \"}, {\"role\": \"assistant\", \"content\": \"yo\"}]}",
   "ab q\" A\xc3\xa9"" 1 1 sys"},
  {"{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}{% if add_generation_prompt %}<gen>{% endif %}{{ eos_token }}",
   "{\"messages\": [{\"role\": \"system\", \"content\": \"sys\"}, {\"role\": \"user\", \"content\": \" hi \"}, {\"role\": \"assistant\", \"content\": \"yo\"}], \"add_generation_prompt\": true, \"bos_token\": \"<s>\", \"eos_token\": \"</s>\"}",
   "<s>sys hi yo<gen></s>"},
  {"{{ x.y.z }}|{{ none.y }}|{{ (x.y) is defined }}",
   "{}",
   "||false"},
  {"{{ n }} {{ f }} {{ big }} {{ small }} {{ neg }} {{ f|tojson }} {{ [big, small]|tojson }}",
   "{\"n\": 3.0, \"f\": 2.5, \"big\": 1e+21, \"small\": 1e-07, \"neg\": -0.0}",
   "3 2.5 1e+21 1e-7 0 2.5 [1e+21, 1e-7]"},
  {"{%- for message in messages -%}\n    {{- message.role }}\n{%- endfor %}\n{% generation %}  kept {% endgeneration %}\nend",
   "{\"messages\": [{\"role\": \"system\", \"content\": \"sys\"}, {\"role\": \"user\", \"content\": \" hi \"}, {\"role\": \"assistant\", \"content\": \"yo\"}]}",
   "systemuserassistant  kept end"},
  {"{{ '\xc7\x85""'|upper }}{{ '\xce\xa3""\xce\x91""\xce\xa3""'|lower }} {{ '\xc4\xb0""'|lower|length }} {{ '\xef\xac\x81""'|upper }}",
   "{}",
   "\xc7\x84""\xcf\x83""\xce\xb1""\xcf\x82"" 2 FI"},
};

Test(template, features_match_the_reference) {
  for (size_t i = 0; i < sizeof FEATURES / sizeof FEATURES[0]; i++) expect_out(FEATURES[i].src, FEATURES[i].vars, FEATURES[i].want);
}

Test(template, javascript_string_semantics) {
  /* half of a surrogate pair (JavaScript indexes UTF-16 units) prints as U+FFFD, as Node writes it */
  expect_out("{{ s[-1] }}|{{ s|length }}|{{ s[1:]|length }}", "{\"s\": \"a\\ud83d\\ude00\"}", "\xef\xbf\xbd|3|2");
  /* strip() and friends take no characters: they strip all whitespace, like the reference */
  expect_out("[{{ '\\n x \\u3000'.strip('\\n') }}]", NULL, "[x]");
}

Test(template, chatml_constant) {
  expect_out(LM_CHATML_TEMPLATE,
             "{\"messages\": [{\"role\": \"system\", \"content\": \"S\"}, {\"role\": \"user\", \"content\": \"Hi\"}],"
             " \"add_generation_prompt\": true}",
             "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  expect_out(LM_CHATML_TEMPLATE, "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}], \"add_generation_prompt\": false}",
             "<|im_start|>user\nHi<|im_end|>\n");
}

Test(template, unsupported_constructs_are_named) {
  expect_err("a\n\n{{ x|wordcount }}", "{\"x\": \"a b\"}", LM_ERR_UNSUPPORTED, "filter 'wordcount' is not supported", "line 3");
  expect_err("{{ x is divisibleby }}", "{\"x\": 3}", LM_ERR_UNSUPPORTED, "test 'divisibleby' is not supported", "line 1");
  expect_err("{% include 'x.j2' %}", NULL, LM_ERR_UNSUPPORTED, "statement 'include' is not supported", NULL);
  expect_err("{% extends 'base' %}", NULL, LM_ERR_UNSUPPORTED, "statement 'extends'", NULL);
  expect_err("{{ messages.append(1) }}", "{\"messages\": []}", LM_ERR_UNSUPPORTED, "method 'append' of a list is not supported", NULL);
  expect_err("{{ 'x'.zfill(3) }}", NULL, LM_ERR_UNSUPPORTED, "method 'zfill' of a string", NULL);
  expect_err("{{ cycler(1, 2) }}", NULL, LM_ERR_UNSUPPORTED, "function 'cycler' is not supported", NULL);
  expect_err("{{ [1]|upper }}", NULL, LM_ERR_UNSUPPORTED, "filter 'upper' cannot be applied to a list", NULL);
  expect_err("{{ 'x'|trim() }}", NULL, LM_ERR_UNSUPPORTED, "filter 'trim' with arguments", NULL);
  expect_err("{{ {'a': 1}|tojson(sort_keys=true) }}", NULL, LM_ERR_UNSUPPORTED, "sort_keys", NULL);
  /* the reference prints a JS object as "[object Map]": lmkit refuses instead */
  expect_err("{{ 'args: ' + d }}", "{\"d\": {\"a\": 1}}", LM_ERR_UNSUPPORTED, "an object cannot be turned into a string", NULL);
  expect_err("{{ (1, 2) }}", NULL, LM_ERR_UNSUPPORTED, "tuple", NULL);
  expect_err("{{ range }}", NULL, LM_ERR_UNSUPPORTED, "printing a function", NULL);
}

Test(template, syntax_errors_name_the_line) {
  expect_err("{% if x %}\nno end", NULL, LM_ERR_FORMAT, "'if' is not closed", "line 1");
  expect_err("ok\n{% for x in y %}{% endif %}", NULL, LM_ERR_FORMAT, "endif", "line 2");
  expect_err("{{ 'unterminated }}", NULL, LM_ERR_FORMAT, "string", NULL);
  expect_err("{{ 1 +* 2 }}", NULL, LM_ERR_FORMAT, "line 1", NULL);
  expect_err("{{ x ", NULL, LM_ERR_FORMAT, NULL, NULL);
  expect_err("{{ x }", NULL, LM_ERR_FORMAT, NULL, NULL);
  expect_err("{# never closed", NULL, LM_ERR_FORMAT, "comment", NULL);
  expect_err("{{ '\\q' }}", NULL, LM_ERR_FORMAT, "escape", NULL);
  expect_err("{{ x[] }}", NULL, LM_ERR_FORMAT, NULL, NULL);
  expect_err("{{ x[1:2:3:4] }}", NULL, LM_ERR_FORMAT, "slice", NULL);
  expect_err("{% macro m(a=1, b) %}{% endmacro %}", NULL, LM_ERR_FORMAT, "default", NULL);
  expect_err("{% macro m(a, a) %}{% endmacro %}", NULL, LM_ERR_FORMAT, "duplicate parameter 'a'", NULL);
  expect_err("{{ f(a=1, 2) }}", NULL, LM_ERR_FORMAT, "positional argument follows", NULL);
  expect_err("{{ \xc3\xa9 }}", NULL, LM_ERR_FORMAT, "U+00E9", NULL);
  expect_err("{% endfor %}", NULL, LM_ERR_FORMAT, "unexpected '{% endfor %}'", NULL);
  expect_err("{% break %}", NULL, LM_ERR_FORMAT, "'break' outside a loop", NULL);
  lm_template *t;
  cr_assert_eq(lm_template_parse(&t, "bad \xff utf8", 10, "x.jinja"), LM_ERR_FORMAT);
  cr_assert(strstr(lm_last_error(), "x.jinja: not valid UTF-8"), "%s", lm_last_error());
  cr_assert_null(t);
}

Test(template, runtime_errors) {
  expect_err("{{ raise_exception('Roles must alternate') }}", NULL, LM_ERR_ARG, "raise_exception: Roles must alternate", "line 1");
  expect_err("{{ 'a' + none }}", NULL, LM_ERR_ARG, "cannot apply '+' to a string and none", NULL);
  expect_err("{{ 1 < 'a' }}", NULL, LM_ERR_ARG, "'<'", NULL);
  expect_err("{{ u + 1 }}", NULL, LM_ERR_ARG, "undefined", NULL);
  expect_err("{% for x in 3 %}{% endfor %}", NULL, LM_ERR_ARG, "cannot loop over an integer", NULL);
  expect_err("{% set x.y = 1 %}", "{\"x\": {}}", LM_ERR_ARG, "only of a namespace", NULL);
  expect_err("{{ []|first }}", NULL, LM_ERR_ARG, "empty list", NULL);
  expect_err("{% macro m() %}{% endmacro %}{{ m(1) }}", NULL, LM_ERR_ARG, "at most 0 arguments", NULL);
  expect_err("{% macro m() %}{% endmacro %}{{ m(k=1) }}", NULL, LM_ERR_ARG, "no keyword argument 'k'", NULL);
  expect_err("{{ x }}", "{\"true\": 1}", LM_ERR_ARG, "variable 'true' is reserved", NULL);
  expect_err("{{ x }}", "{\"x\": \"\xff\"}", LM_ERR_FORMAT, "not valid UTF-8", NULL);
}

Test(template, limits_stop_runaway_templates) {
  /* deep nesting: parser depth */
  char deep[4096] = "{{ ";
  for (int i = 0; i < 1000; i++) strcat(deep, "(");
  strcat(deep, "1");
  for (int i = 0; i < 1000; i++) strcat(deep, ")");
  strcat(deep, " }}");
  expect_err(deep, NULL, LM_ERR_RANGE, "nested more than", NULL);
  char nots[8192] = "{{ ";
  for (int i = 0; i < 1500; i++) strcat(nots, "not ");
  strcat(nots, "x }}");
  expect_err(nots, NULL, LM_ERR_RANGE, "nested more than", NULL);
  /* unbounded recursion through a macro */
  expect_err("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", NULL, LM_ERR_RANGE, "nested more than", NULL);
  /* too much work, too much memory */
  expect_err("{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}", NULL, LM_ERR_RANGE, "steps", NULL);
  expect_err("{{ range(100000000) }}", NULL, LM_ERR_RANGE, "range()", NULL);
  expect_err("{% set ns = namespace(s='xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
             NULL, LM_ERR_RANGE, "MiB", NULL);
}

/* ---- model directories and requests */

static char g_dir[64];
static void mkdir_setup(void) {
  strcpy(g_dir, "/tmp/lm_tpl_test_XXXXXX");
  cr_assert_not_null(mkdtemp(g_dir));
}
static void write_in(const char *name, const char *text) {
  char *p = lm_path_join(g_dir, name);
  FILE *f = fopen(p, "w");
  cr_assert_not_null(f);
  fputs(text, f);
  fclose(f);
  free(p);
}
static void rm_in(const char *name) {
  char *p = lm_path_join(g_dir, name);
  unlink(p);
  free(p);
}
static void mkdir_teardown(void) {
  rm_in("tokenizer_config.json");
  rm_in("chat_template.jinja");
  rmdir(g_dir);
}
TestSuite(chat, .init = mkdir_setup, .fini = mkdir_teardown);

static char *chat(const char *req_json, lm_status want) {
  lm_chat_config cc;
  lm_status st = lm_chat_config_load(&cc, g_dir);
  cr_assert_eq(st, LM_OK, "%s", lm_last_error());
  cJSON *req = cJSON_Parse(req_json);
  cr_assert_not_null(req);
  char *out = NULL;
  size_t len;
  st = lm_chat_render(&cc, req, &out, &len);
  cr_assert_eq(st, want, "status %d: %s", st, lm_last_error());
  cJSON_Delete(req);
  lm_chat_config_free(&cc);
  return out;
}

Test(chat, no_config_means_chatml) {
  lm_chat_config cc;
  cr_assert_eq(lm_chat_config_load(&cc, g_dir), LM_OK);
  cr_assert(cc.is_default);
  cr_assert_str_eq(cc.template, LM_CHATML_TEMPLATE);
  cr_assert_null(cc.bos_token);
  lm_chat_config_free(&cc);
  char *out = chat("{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}], \"add_generation_prompt\": true}", LM_OK);
  cr_assert_str_eq(out, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  free(out);
  write_in("tokenizer_config.json", "{\"eos_token\": \"<|im_end|>\"}");
  out = chat("{\"messages\": []}", LM_OK);
  cr_assert_str_eq(out, "");
  free(out);
}

Test(chat, config_template_tokens_and_kwargs) {
  write_in("tokenizer_config.json",
           "{\"bos_token\": {\"__type\": \"AddedToken\", \"content\": \"<s>\", \"lstrip\": false}, \"eos_token\": \"</s>\","
           " \"chat_template\": \"{{ bos_token }}{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}"
           "{% if add_generation_prompt %}[assistant]{% endif %}{% if tools %}{{ tools|length }} tools{% endif %}"
           "{% if enable_thinking is false %}/no_think{% endif %}{{ eos_token }}\"}");
  char *out = chat("{\"messages\": [{\"role\": \"user\", \"content\": \"Q\"}], \"add_generation_prompt\": true,"
                   " \"tools\": [{\"name\": \"f\"}], \"chat_template_kwargs\": {\"enable_thinking\": false}}", LM_OK);
  cr_assert_str_eq(out, "<s>[user]Q[assistant]1 tools/no_think</s>");
  free(out);
}

Test(chat, template_lists_and_jinja_file) {
  write_in("tokenizer_config.json", "{\"chat_template\": [{\"name\": \"tool_use\", \"template\": \"T\"}, {\"name\": \"default\", \"template\": \"D{{ messages|length }}\"}]}");
  char *out = chat("{\"messages\": [{\"role\": \"user\", \"content\": \"Q\"}]}", LM_OK);
  cr_assert_str_eq(out, "D1");
  free(out);
  write_in("chat_template.jinja", "J{{ messages[0].content }}\n");   /* takes precedence; one trailing newline dropped */
  out = chat("{\"messages\": [{\"role\": \"user\", \"content\": \"Q\"}]}", LM_OK);
  cr_assert_str_eq(out, "JQ");
  free(out);
}

Test(chat, bad_configs_name_the_field) {
  static const struct { const char *json, *word; } BAD[] = {
    {"[1, 2]", "not a JSON object"},
    {"{\"chat_template\": 5}", "chat_template must be a string or a list"},
    {"{\"chat_template\": [{\"name\": \"other\", \"template\": \"x\"}]}", "no template named 'default'"},
    {"{\"chat_template\": [{\"name\": 1}]}", "chat_template[0]"},
    {"{\"bos_token\": 7}", "'bos_token'"},
    {"{\"eos_token\": {\"content\": null}}", "'eos_token'"},
    {"{not json", "not a JSON object"},
  };
  for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
    write_in("tokenizer_config.json", BAD[i].json);
    lm_chat_config cc;
    cr_assert_eq(lm_chat_config_load(&cc, g_dir), LM_ERR_FORMAT, "%s", BAD[i].json);
    cr_assert(strstr(lm_last_error(), "tokenizer_config.json"), "%s", lm_last_error());
    cr_assert(strstr(lm_last_error(), BAD[i].word), "'%s' lacks '%s'", lm_last_error(), BAD[i].word);
  }
  lm_chat_config cc;
  cr_assert_eq(lm_chat_config_load(&cc, "/nonexistent/dir"), LM_ERR_IO);
}

Test(chat, bad_requests) {
  static const struct { const char *json, *word; } BAD[] = {
    {"[]", "must be a JSON object"},
    {"{}", "'messages' must be a list"},
    {"{\"messages\": {}}", "'messages' must be a list"},
    {"{\"messages\": [\"hi\"]}", "messages[0] must be an object"},
    {"{\"messages\": [], \"add_generation_prompt\": 1}", "'add_generation_prompt'"},
    {"{\"messages\": [], \"tools\": {}}", "'tools' must be a list"},
    {"{\"messages\": [], \"chat_template_kwargs\": []}", "'chat_template_kwargs'"},
    {"{\"messages\": [], \"chat_template_kwargs\": {\"messages\": 1}}", "would replace"},
  };
  for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
    free(chat(BAD[i].json, LM_ERR_FORMAT));
    cr_assert(strstr(lm_last_error(), BAD[i].word), "'%s' lacks '%s'", lm_last_error(), BAD[i].word);
  }
  /* a template that cannot render the request: its own error comes back */
  write_in("tokenizer_config.json", "{\"chat_template\": \"{{ raise_exception('only user messages') }}\"}");
  free(chat("{\"messages\": []}", LM_ERR_ARG));
  cr_assert(strstr(lm_last_error(), "only user messages"), "%s", lm_last_error());
}
