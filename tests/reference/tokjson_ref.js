// tokjson_ref.js — the reference side of test_tokenizer_json.py: Hugging Face's
// `tokenizers` (the Rust core as a Node addon, npm tokenizers@0.23.2), installed by
// scripts/install-deps.sh into third_party/npm.
//
//   node tokjson_ref.js REQUEST.json > RESULTS.json
// REQUEST.json: {"tokenizer": "path/to/tokenizer.json", "strings": ["...", ...]}
// RESULTS.json: {"ok": true, "results": [{"ids": [...], "ids_add": [...], "dec": "...", "dec_skip": "..."}, ...]}
//   ids: encode(s, add_special_tokens=false); ids_add: with true; dec / dec_skip: decode(ids) without /
//   with skip_special_tokens; or {"ok": false, "err": "..."} when the file does not load.
const fs = require("fs");
const path = require("path");
const root = process.env.LMKIT_SRC || path.resolve(__dirname, "../..");
const { Tokenizer } = require(path.join(root, "third_party/npm/node_modules/tokenizers"));

(async () => {
  const req = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
  let tok;
  try {
    tok = Tokenizer.fromFile(req.tokenizer);
  } catch (e) {
    process.stdout.write(JSON.stringify({ ok: false, err: String(e && e.message ? e.message : e) }));
    return;
  }
  const plain = await tok.encodeBatch(req.strings, { addSpecialTokens: false });
  const added = await tok.encodeBatch(req.strings, { addSpecialTokens: true });
  const ids = plain.map((e) => e.getIds());
  const dec = await tok.decodeBatch(ids, false);
  const decSkip = await tok.decodeBatch(ids, true);
  const results = ids.map((x, i) => ({ ids: x, ids_add: added[i].getIds(), dec: dec[i], dec_skip: decSkip[i] }));
  process.stdout.write(JSON.stringify({ ok: true, results }));
})().catch((e) => {
  process.stderr.write(String(e && e.stack ? e.stack : e) + "\n");
  process.exit(1);
});
