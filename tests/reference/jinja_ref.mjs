// jinja_ref.mjs — the reference side of test_jinja.py: renders chat templates with
// @huggingface/jinja (the engine of transformers.js), installed by scripts/install-deps.sh
// into third_party/npm.
//
//   node jinja_ref.mjs CASES.json > RESULTS.json
// CASES.json: [{"template": "...", "vars": {...}}, ...]
// RESULTS.json: [{"ok": true, "out": "..."} | {"ok": false, "err": "..."}, ...] in the same order.
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import path from "node:path";

const root = process.env.LMKIT_SRC || path.resolve(path.dirname(new URL(import.meta.url).pathname), "../..");
const entry = path.join(root, "third_party/npm/node_modules/@huggingface/jinja/dist/index.js");
const { Template } = await import(pathToFileURL(entry).href);

const cases = JSON.parse(readFileSync(process.argv[2], "utf8"));
const results = cases.map(({ template, vars }) => {
  try {
    return { ok: true, out: new Template(template).render(vars) };
  } catch (e) {
    return { ok: false, err: String(e && e.message ? e.message : e) };
  }
});
process.stdout.write(JSON.stringify(results));
