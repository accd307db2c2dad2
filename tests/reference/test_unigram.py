#!/usr/bin/python3
"""test_unigram.py — lmkit's Unigram model and Precompiled normalizer against
sentencepiece (Debian's python3-sentencepiece) and Hugging Face tokenizers
(npm `tokenizers`, HF's Rust core under Node).

1. Trains two small SentencePiece Unigram models on text generated here
   (normalization_rule_name nmt_nfkc, T5's special ids pad 0 / eos 1 / unk 2),
   one plain and one with byte_fallback.
2. Converts each to a T5 tokenizer.json exactly as transformers'
   convert_slow_tokenizer T5Converter/SpmConverter does: pieces and scores,
   unk_id, <extra_id_99..0> appended (so <extra_id_0> has the highest id),
   normalizer Sequence[Precompiled(charsmap from the model proto), Strip(right),
   Replace(" {2,}" -> "▁")], pre-tokenizer Sequence[WhitespaceSplit,
   Metaspace(prepend_scheme "always")], TemplateProcessing "$A </s>",
   Metaspace decoder, added tokens <pad> </s> <unk> and the sentinels.
   The charsmap is read from the serialized proto (protobuf wire format parsed
   here: the Debian package's sentencepiece_model_pb2 needs google.protobuf).
3. Generates thousands of strings (ASCII, accents composed and decomposed,
   full-width and compatibility characters that nmt_nfkc rewrites, whitespace
   runs, cluster-joining marks, CJK, emoji, characters outside the vocabulary)
   and requires identical results:
   (a) vs sp.encode, both models: lmkit's map under SentencePiece's rule, its
       whitespace rules and the Unigram model (tests/reference/ref_unigram.c);
   (b) vs HF tokenizers on the converted tokenizer.json loaded whole by lmkit
       (its tokenizer.json pipeline: tests/reference/ref_tokjson.c and
       tokjson_ref.js), both models, special-token text included: ids without
       and with the post-processor's </s>, decode with and without special
       tokens.
   (c) vs HF tokenizers on every BMP character after a base that is a key
       (the whole tokenizer.json again): grapheme clusters as HF forms them.
   HF and SentencePiece themselves differ on some strings (HF replaces a whole
   grapheme cluster shorter than 6 bytes by the entry of its first key, so
   full-width "Ａ" + U+0301 loses its accent; SentencePiece takes the longest
   key; HF splits at U+0085); the count of strings where the two references
   disagree is printed, and lmkit must match each on its own.

Env: LMKIT_BIN (build dir holding ref_unigram and ref_tokjson), LMKIT_SRC (repo root)."""
import base64
import json
import os
import random
import subprocess
import sys
import tempfile
import time

import sentencepiece as spm

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from refutil import SRC, Tally  # noqa: E402

BIN_DIR = os.environ.get("LMKIT_BIN", os.path.join(SRC, "build"))
DRIVER = os.path.join(BIN_DIR, "ref_unigram")
NPM = os.path.join(SRC, "third_party", "npm", "node_modules")
N_EXTRA = 100
tally = Tally()
check = tally.check


# ---------------------------------------------------------------- text
WORDS = ("the of and to in is you that it he was for on are as with his they at be this have from or one had by word "
         "but not what all were we when your can said there use an each which she do how their if will up other about "
         "out many then them these so some her would make like him into time has look two more write go see number no "
         "Hello World THE Quick BROWN fox McDonald naïve café résumé Zürich São Ελληνικά русский язык "
         "العربية עברית हिन्दी 日本語 中文字符 한국어 ひらがな カタカナ").split()
# characters nmt_nfkc rewrites: full-width, compatibility, ligatures, circled, super/subscripts, spaces, controls
COMPAT = list("ＡＢＣａｂｃ０１２３！？（）＃＄％＆＊＋，－．／：；＜＝＞＠［］＾＿｀｛｜｝～ｶﾞｷﾟｱｲｳ･ｰ") + \
    list("ﬁﬂﬀﬃ①②⑩⑴⒜㈱㍿㎏㎡℃℉™№Ⅳⅻ½¼¾²³¹ⁿ₁₂ｈｅｌｌｏ…‥′″ℌℍ𝐀𝐁𝔸µÅΩ") + \
    ["\u00a0", "\u3000", "\u2002", "\u2009", "\u200b", "\u00ad", "\t", "\n", "\r", "\x0b", "\x0c", "\x01", "\x7f",
     "\ufeff", "\u2028", "\u0085", "\u1680"]
# marks that join a cluster (Extend, SpacingMark, ZWJ, variation selectors) and Prepend characters
COMBINING = ["\u0301", "\u0300", "\u0308", "\u0327", "\u0303", "\u030a", "\u0302", "\u0323", "\u20dd", "\ufe0f",
             "\u3099", "\u309a", "\u0e33", "\u0e48", "\u093e", "\u094d", "\u064b", "\u200d", "\ufe0e", "\u0345"]
PREPEND = ["\u0600", "\u0605", "\u06dd", "\u110bd"]
SPACES = [" ", "  ", "   ", "\t", "\n", " \n ", "\u3000", "\u00a0 ", "\t\t", "    "]
EMOJI = ["🙂", "😀", "👍🏽", "👨‍👩‍👧‍👦", "🇫🇷", "❤️", "✨", "🚀", "🤖", "☕", "🎉", "🏳️‍🌈", "⭐", "🔥", "1️⃣"]
RANGES = [(0x41, 0x5A), (0x61, 0x7A), (0xC0, 0xFF), (0x100, 0x17F), (0x391, 0x3C9), (0x410, 0x44F), (0x5D0, 0x5EA),
          (0x627, 0x64A), (0x905, 0x939), (0xE01, 0xE30), (0x3041, 0x3093), (0x30A1, 0x30F6), (0x4E00, 0x9FA5),
          (0xAC00, 0xD7A3), (0x1100, 0x1112), (0x1161, 0x1175), (0x2190, 0x21FF), (0x2200, 0x22FF), (0x1F300, 0x1F5FF),
          (0xFF01, 0xFF5E), (0xFF61, 0xFF9F), (0x2460, 0x24FF), (0x3300, 0x33FF), (0xF900, 0xFA2D), (0x2F00, 0x2FD5),
          (0xA000, 0xA48C), (0x10A0, 0x10FF), (0x1200, 0x137C)]


def rand_char(r):
    a, b = r.choice(RANGES)
    return chr(r.randint(a, b))


def atom(r):
    k = r.random()
    if k < 0.40:
        return r.choice(WORDS)
    if k < 0.50:
        return r.choice(COMPAT)
    if k < 0.58:
        return r.choice("aeiouAEOnczg") + r.choice(COMBINING)
    if k < 0.61:
        return r.choice(COMPAT[:40]) + r.choice(COMBINING)   # full-width + a mark: the HF/SentencePiece difference
    if k < 0.62:
        return r.choice(PREPEND) + r.choice("a1\u00e9\uff21")
    if k < 0.71:
        return "".join(rand_char(r) for _ in range(r.randint(1, 4)))
    if k < 0.77:
        return r.choice(EMOJI)
    if k < 0.85:
        return str(r.randint(0, 10 ** r.randint(1, 8)))
    if k < 0.93:
        return r.choice(".,;:!?-()[]{}\"'/@#$%&*+=~`") * r.randint(1, 3)
    return "\u2581" if r.random() < 0.3 else r.choice(WORDS).upper()


def gen_string(r):
    parts = []
    for _ in range(r.randint(1, 12)):
        parts.append(atom(r))
        parts.append(r.choice(SPACES) if r.random() < 0.35 else " " if r.random() < 0.8 else "")
    s = "".join(parts)
    if r.random() < 0.15:
        s = r.choice(SPACES) + s
    if r.random() < 0.15:
        s = s + r.choice(SPACES)
    return s


def corpus(r, n_lines):
    lines = []
    for _ in range(n_lines):
        words = [r.choice(WORDS) if r.random() < 0.85 else atom(r) for _ in range(r.randint(3, 20))]
        lines.append(" ".join(words))
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- the model proto
def varint(b, i):
    v = s = 0
    while True:
        c = b[i]
        i += 1
        v |= (c & 0x7F) << s
        s += 7
        if c < 0x80:
            return v, i


def fields(b):
    """(field number, wire type, value) of a protobuf message."""
    i = 0
    while i < len(b):
        key, i = varint(b, i)
        f, wt = key >> 3, key & 7
        if wt == 0:
            v, i = varint(b, i)
        elif wt == 1:
            v, i = b[i:i + 8], i + 8
        elif wt == 5:
            v, i = b[i:i + 4], i + 4
        elif wt == 2:
            n, i = varint(b, i)
            v, i = b[i:i + n], i + n
        else:
            raise ValueError("wire type %d" % wt)
        yield f, wt, v


def charsmap(proto):
    """ModelProto.normalizer_spec (3) .precompiled_charsmap (2)."""
    for f, wt, v in fields(proto):
        if f == 3 and wt == 2:
            for g, wt2, w in fields(v):
                if g == 2 and wt2 == 2:
                    return bytes(w)
    return b""


def charsmap_strings(blob):
    n = int.from_bytes(blob[:4], "little")
    return blob[4 + n:].split(b"\0")


# ---------------------------------------------------------------- conversion (T5Converter)
def t5_json(sp, blob, byte_fallback):
    vocab = [[sp.id_to_piece(i), sp.get_score(i)] for i in range(sp.get_piece_size())]
    vocab += [["<extra_id_%d>" % i, 0.0] for i in range(N_EXTRA - 1, -1, -1)]
    added = []
    for i in range(sp.get_piece_size()):
        if sp.is_control(i) or sp.is_unknown(i):   # control (3) and the unknown piece, as the hub files list them
            added.append(i)
    added += list(range(sp.get_piece_size(), len(vocab)))
    added_tokens = [{"id": i, "content": vocab[i][0], "single_word": False, "lstrip": False, "rstrip": False,
                     "normalized": False, "special": True} for i in added]
    meta = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True}
    full = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added_tokens,
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Precompiled", "precompiled_charsmap": base64.b64encode(blob).decode()},
            {"type": "Strip", "strip_left": False, "strip_right": True},
            {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": "\u2581"}]},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "WhitespaceSplit"}, meta]},
        "post_processor": {"type": "TemplateProcessing",
                           "single": [{"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}}],
                           "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}},
                                    {"Sequence": {"id": "B", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}}],
                           "special_tokens": {"</s>": {"id": "</s>", "ids": [sp.eos_id()], "tokens": ["</s>"]}}},
        "decoder": dict(meta),
        "model": {"type": "Unigram", "unk_id": sp.unk_id(), "vocab": vocab, "byte_fallback": byte_fallback},
    }
    model_only = {"version": "1.0", "added_tokens": added_tokens, "model": full["model"]}
    return full, model_only


# ---------------------------------------------------------------- references
def run_driver(mode, model_path, blob_path, lines_path):
    with open(lines_path, "rb") as f:
        p = subprocess.run([DRIVER, mode, model_path, blob_path], stdin=f, capture_output=True)
    if p.returncode:
        print(p.stderr.decode(errors="replace"))
        raise SystemExit("ref_unigram failed")
    return p.stdout.decode().split("\n")[:-1]


def ids_of(line):
    return [int(x) for x in line.split()] if line else []


def full_file(name, path, strings, tmp):
    """(b) The converted file loaded whole by lmkit's tokenizer.json pipeline (tests/reference/ref_tokjson.c)
    against HF tokenizers (tokjson_ref.js): ids with and without the post-processor's </s>, decode with
    and without special tokens."""
    from test_tokenizer_json import run_lmkit, run_ref
    ref = run_ref(path, strings, tmp)
    check(ref["ok"], "%s: HF tokenizers loads the converted tokenizer.json: %s" % (name, ref.get("err")))
    mine, err = run_lmkit(path, strings)
    if not check(mine is not None, "%s: lmkit loads the converted tokenizer.json: %s" % (name, err)):
        return [r["ids"] for r in ref["results"]]
    bad = {}
    for i, (r, m) in enumerate(zip(ref["results"], mine)):
        for key in ("ids", "ids_add", "dec", "dec_skip"):
            if r[key] != m[key]:
                bad.setdefault(key, []).append(i)
    for key, idx in bad.items():
        i = idx[0]
        print("  %s differs for %r\n    HF    %r\n    lmkit %r" % (key, strings[i], ref["results"][i][key], mine[i][key]))
    check(not bad, "%s: the whole tokenizer.json: lmkit == HF tokenizers on %d strings (ids, ids + </s>, decode, "
          "decode skipping specials; %s)" % (name, len(strings), ", ".join("%s: %d differ" % (k, len(v)) for k, v in bad.items())
                                              or "all identical"))
    print("%s: whole tokenizer.json vs HF tokenizers: %d strings x (ids, ids + </s>, decode, decode skipping "
          "specials), %d differ" % (name, len(strings), len(set(i for v in bad.values() for i in v))))
    return [r["ids"] for r in ref["results"]]


def every_bmp_char(path, tmp):
    """(c) Grapheme clusters: every BMP character c after a base that is a key of the map (full-width
    "Ａ" for 2-byte c, NBSP for 3-byte c: clusters under 6 bytes), so HF's rule replaces the whole
    cluster exactly when c joins it. lmkit (utf8proc's Unicode 15 + newer Extend characters) must
    cluster every one as HF (unicode-segmentation) does."""
    from test_tokenizer_json import run_lmkit, run_ref
    strings = ["x" + ("\uff21" if c < 0x800 else "\u00a0") + chr(c) + "y" for c in range(0x80, 0x10000)
               if not 0xD800 <= c < 0xE000]
    ref = run_ref(path, strings, tmp)
    mine, err = run_lmkit(path, strings)
    if not check(ref["ok"] and mine is not None, "every BMP character: %s" % (ref.get("err") or err)):
        return
    bad = [i for i in range(len(strings)) if ref["results"][i]["ids"] != mine[i]["ids"]]
    for i in bad[:5]:
        print("  U+%04X: HF %s, lmkit %s" % (ord(strings[i][2]), ref["results"][i]["ids"], mine[i]["ids"]))
    check(not bad, "every BMP character after a base: lmkit == HF tokenizers (%d differ)" % len(bad))
    print("every BMP character after a base (grapheme clusters): %d strings, %d differ" % (len(strings), len(bad)))


def main():
    if not os.path.exists(DRIVER):
        raise SystemExit("missing %s (build first)" % DRIVER)
    r = random.Random(1234)
    tmp = tempfile.mkdtemp(prefix="lmkit_unigram_")
    train = os.path.join(tmp, "train.txt")
    with open(train, "w") as f:
        f.write(corpus(r, 6000))
    strings = [gen_string(r) for _ in range(3000)]
    specials = ["</s>", "<pad>", "<unk>", "<extra_id_0>", "<extra_id_99>", "<extra_id_7>"]
    hf_strings = strings + [r.choice(strings) + r.choice(specials) + r.choice(["", " ", "  "]) + r.choice(strings)
                            for _ in range(300)]
    lines = os.path.join(tmp, "strings.jsonl")
    with open(lines, "w") as f:
        f.writelines(json.dumps(s) + "\n" for s in strings)

    for byte_fallback in (False, True):
        name = "byte_fallback" if byte_fallback else "plain"
        prefix = os.path.join(tmp, name)
        t0 = time.time()
        spm.SentencePieceTrainer.train(
            input=train, model_prefix=prefix, model_type="unigram", vocab_size=1500,
            normalization_rule_name="nmt_nfkc", pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
            byte_fallback=byte_fallback, character_coverage=0.995, num_threads=1, minloglevel=2)
        sp = spm.SentencePieceProcessor(model_file=prefix + ".model")
        blob = charsmap(sp.serialized_model_proto())
        check(len(blob) > 1000, "%s: the model has a precompiled charsmap (%d bytes)" % (name, len(blob)))
        # The driver applies SentencePiece's whitespace rules to the whole normalized string; that is
        # exact while no replacement holds two spaces in a row (then per-key and whole-string agree).
        check(not any(b"  " in s for s in charsmap_strings(blob)), "%s: no replacement holds two spaces" % name)
        full, model_only = t5_json(sp, blob, byte_fallback)
        tj, mj, bp = prefix + ".tokenizer.json", prefix + ".model.json", prefix + ".charsmap"
        with open(tj, "w") as f:
            json.dump(full, f, ensure_ascii=False)
        with open(mj, "w") as f:
            json.dump(model_only, f, ensure_ascii=False)
        with open(bp, "wb") as f:
            f.write(blob)
        print("%s: trained %d pieces (+%d sentinels) in %.1f s" % (name, sp.get_piece_size(), N_EXTRA, time.time() - t0))

        # (a) vs sentencepiece
        ref = [sp.encode(s) for s in strings]
        got = [ids_of(x) for x in run_driver("spm", mj, bp, lines)]
        # A tie: the same pieces in another order, the same text (equal total scores in exact
        # arithmetic; sentencepiece sums in float and its rounding picks one, lmkit and HF sum in double).
        ties = [i for i in range(len(strings)) if got[i] != ref[i] and sorted(got[i]) == sorted(ref[i])
                and sp.decode(got[i]) == sp.decode(ref[i])]
        bad = [i for i in range(len(strings)) if got[i] != ref[i] and i not in ties]
        for i in bad[:5]:
            print("  string %r\n    sentencepiece %s\n    lmkit         %s" % (strings[i], ref[i], got[i]))
        check(not bad, "%s: lmkit == sentencepiece on %d strings (%d differ)" % (name, len(strings), len(bad)))
        check(len(ties) <= len(strings) // 100, "%s: %d exact ties broken differently (at most 1%%)" % (name, len(ties)))
        n_unk = sum(1 for x in ref if sp.unk_id() in x)
        n_bytes = sum(1 for x in ref if any(sp.is_byte(i) for i in x))
        print("%s: vs sentencepiece: %d strings, %d identical, %d exact score ties ordered differently "
              "(%d with <unk>, %d with byte pieces)" % (name, len(strings), len(strings) - len(bad) - len(ties), len(ties),
                                                        n_unk, n_bytes))

        # (b) the whole converted file vs HF tokenizers
        href = full_file(name, tj, hf_strings, tmp)
        differ = sum(1 for i in range(len(strings)) if href[i] != ref[i])
        print("%s: HF tokenizers and sentencepiece themselves differ on %d of %d strings" % (name, differ, len(strings)))

        if not byte_fallback:
            every_bmp_char(tj, tmp)

    tally.finish()


if __name__ == "__main__":
    main()
