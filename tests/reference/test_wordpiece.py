#!/usr/bin/python3
"""test_wordpiece.py — lmkit's WordPiece (BERT) tokenizer against BERT's reference algorithm.

Writes a tiny directory laid out like Hugging Face's bert-base-uncased
(vocab.txt: [PAD] [unused0..98] [UNK] [CLS] [SEP] [MASK] then a few hundred
pieces — accented, Greek, CJK, Hangul jamo, punctuation, "##" pieces — plus
tokenizer_config.json), implements BERT's BasicTokenizer + WordpieceTokenizer
here in Python from their specification (clean text, CJK split, whitespace
split, lower + NFD + drop Mn, punctuation split, greedy longest-match-first with
"##", [UNK] for unknown or > 100-character words), generates a few thousand
varied strings (accents composed and decomposed, CJK, punctuation, mixed case,
Greek sigma, unknown words, whitespace and control characters, long words,
special-token text) and requires lmkit's ids to be identical:
  - per string, through tests/reference/ref_wordpiece.c (one process, records
    "<length>\\n<bytes>" on stdin), for five settings: uncased (the
    bert-base-uncased layout), cased, lower-case without accent stripping, no CJK
    split (a tokenizer.json of the uncased settings is checked against HF tokenizers
    by test_tokenizer_json.py);
    the uncased directory also with special tokens allowed;
  - all strings at once through `lmkit tokenizer encode --tokenizer DIR --ids`
    (joined with newlines, which separate words, so the ids are the concatenation),
    with and without --allow-special; `lmkit tokenizer decode` against the
    reference decoder (pieces joined with spaces, "##" glued on).

Unicode versions: Python's unicodedata and utf8proc may implement different
Unicode versions (here 14.0 and 15.0). Random characters come from
well-established blocks, and any character whose category, combining class,
lower-case mapping or NFD differs between the two (checked through utf8proc
itself with ctypes) is left out; the count is printed.

Env: LMKIT_BIN (build dir holding lmkit and ref_wordpiece), LMKIT_SRC (repo root)."""
import ctypes
import ctypes.util
import json
import os
import random
import subprocess
import sys
import tempfile
import unicodedata

SRC = os.environ.get("LMKIT_SRC", os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
BIN_DIR = os.environ.get("LMKIT_BIN", os.path.join(SRC, "build"))
LMKIT = os.path.join(BIN_DIR, "lmkit")
DRIVER = os.path.join(BIN_DIR, "ref_wordpiece")
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

passed = failed = 0


def check(ok, what):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        if failed <= 25:
            print("FAIL:", what)


# ---------------------------------------------------------------- the vocabulary
def make_vocab():
    v = ["[PAD]"] + ["[unused%d]" % i for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    v += [chr(c) for c in range(33, 127) if not chr(c).isalnum()]          # ASCII punctuation and symbols
    v += list("0123456789abcdefghijklmnopqrstuvwxyz")
    v += ["##" + c for c in "0123456789abcdefghijklmnopqrstuvwxyz"]
    v += list("¡¿«»—–…“”‘’·、。「」©®°€£¥§¶×÷") + ["##é", "##ß"]
    v += list("éèêàâüöäñçøåßæœ")                                              # reachable when cased / not stripped
    v += list("αβγδεζηθικλμνξοπρσςτυφχψω") + ["##ς", "##σ", "##ος", "οδος", "σοφια", "λογος", "##α"]
    v += list("абвгдежзийклмнопрстуфхцчшщъыьэюя") + ["мир", "##ир", "привет"]
    v += list("一二三中文字人大日本語国学生的我你是好")
    v += list("あいうえおかきくけこアイウエオ") + ["##い", "##う", "こんにちは"]
    v += ["\u1112", "\u1161", "\u11ab", "##\u1161", "##\u11ab", "##\u1100", "\u1100"]  # Hangul jamo (NFD of 한, 가)
    v += ["hello", "world", "the", "quick", "brown", "fox", "jump", "##s", "over", "lazy", "dog", "un", "##aff",
          "##able", "##ing", "##ed", "##ly", "##er", "play", "cafe", "naive", "resume", "zurich", "angstrom", "ist",
          "##ist", "is", "a", "an", "and", "of", "to", "in", "it", "token", "##izer", "##ize", "bert", "model",
          "language", "un", "##believ", "##able", "##ness", "##ation", "nation", "data", "set", "##set", "test",
          "##test", "word", "##piece", "piece", "##word", "hel", "##lo", "wor", "##ld", "x", "##x", "xx", "##xx",
          "Hello", "World", "THE", "Café", "##É", "É", "Über", "über", "ﬁ", "Ω", "Å", "##̈", "ˆ", "´", "`",
          "istanbul", "i̇stanbul", "##̇", "n't", "don", "##'", "'s", "e", "##e" * 1]
    v += ["##" + w for w in ("hello", "world", "dog", "fox", "able", "aff", "ness")]
    v += ["aa", "##aa", "aaa", "##aaa", "ab", "##ab", "abc", "##bc", "##abc", "a" * 10, "##" + "a" * 10]
    v += ["[unused99]", "[unused100]"]
    v += ["un", "##aff"]                                                         # duplicates: later lines win
    return v


# ---------------------------------------------------------------- the reference algorithm
def is_whitespace(c):
    return c in " \t\n\r" or unicodedata.category(c) == "Zs"


def is_control(c):
    if c in "\t\n\r":
        return False
    return unicodedata.category(c).startswith("C")


def is_punctuation(c):
    cp = ord(c)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(c).startswith("P")


def is_chinese(cp):
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF or 0x2A700 <= cp <= 0x2B73F
            or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


class Reference:
    """BERT's BasicTokenizer + WordpieceTokenizer, as specified in the BERT paper's code."""

    def __init__(self, vocab, lower=True, strip=None, chinese=True, max_chars=100):
        self.ids = {}
        for i, t in enumerate(vocab):          # later lines win, as transformers' load_vocab
            self.ids[t] = i
        self.unk = self.ids["[UNK]"]
        self.specials = set(SPECIALS)
        self.lookup = {t: i for t, i in self.ids.items() if t not in self.specials}
        self.lower, self.chinese, self.max_chars = lower, chinese, max_chars
        self.strip = lower if strip is None else strip
        self.vocab = vocab

    def basic(self, text):
        text = "".join(" " if is_whitespace(c) else c for c in text
                       if not (ord(c) == 0 or ord(c) == 0xFFFD or is_control(c)))
        if self.chinese:
            text = "".join(" %s " % c if is_chinese(ord(c)) else c for c in text)
        out = []
        for tok in text.split():
            if self.lower:
                tok = tok.lower()
            if self.strip:
                tok = "".join(c for c in unicodedata.normalize("NFD", tok) if unicodedata.category(c) != "Mn")
            cur = ""
            for c in tok:
                if is_punctuation(c):
                    if cur:
                        out.append(cur)
                    out.append(c)
                    cur = ""
                else:
                    cur += c
            if cur:
                out.append(cur)
        return " ".join(out).split()

    def wordpiece(self, word):
        if len(word) > self.max_chars:
            return [self.unk]
        out, start = [], 0
        while start < len(word):
            end, cur = len(word), None
            while start < end:
                s = word[start:end]
                if start > 0:
                    s = "##" + s
                if s in self.lookup:
                    cur = self.lookup[s]
                    break
                end -= 1
            if cur is None:
                return [self.unk]
            out.append(cur)
            start = end
        return out

    def encode_plain(self, text):
        return [i for w in self.basic(text) for i in self.wordpiece(w)]

    def encode(self, text, allow_special=False):
        if not allow_special:
            return self.encode_plain(text)
        out, pos = [], 0
        while True:   # earliest special first, the longest on ties
            best = None
            for s in SPECIALS:
                k = text.find(s, pos)
                if k >= 0 and (best is None or k < best[0] or (k == best[0] and len(s) > len(best[1]))):
                    best = (k, s)
            if best is None:
                break
            out += self.encode_plain(text[pos:best[0]])
            out.append(self.ids[best[1]])
            pos = best[0] + len(best[1])
        return out + self.encode_plain(text[pos:])

    def decode(self, ids):
        s = ""
        for i, t in enumerate(self.vocab[k] for k in ids):
            if i and t.startswith("##"):
                s += t[2:]
            else:
                s += (" " if i else "") + t
        return s


# ---------------------------------------------------------------- characters both libraries agree on
CATS = ["Cn", "Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Nd", "Nl", "No", "Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po",
        "Sm", "Sc", "Sk", "So", "Zs", "Zl", "Zp", "Cc", "Cf", "Cs", "Co"]
BLOCKS = [(0x20, 0x7E), (0xA0, 0x24F), (0x250, 0x2FF), (0x300, 0x36F), (0x370, 0x3FF), (0x400, 0x4FF), (0x530, 0x58F),
          (0x590, 0x5FF), (0x600, 0x6FF), (0x900, 0x97F), (0xE00, 0xE7F), (0x10A0, 0x10FF), (0x1100, 0x11FF),
          (0x1E00, 0x1FFF), (0x2000, 0x206F), (0x2070, 0x209F), (0x20A0, 0x20BF), (0x2100, 0x218F), (0x2190, 0x22FF),
          (0x2460, 0x24FF), (0x2500, 0x25FF), (0x3000, 0x303F), (0x3040, 0x30FF), (0x3400, 0x3500), (0x4E00, 0x9FA5),
          (0xAC00, 0xD7A3), (0xE000, 0xE0FF), (0xF900, 0xFAFF), (0xFE30, 0xFE4F), (0xFF00, 0xFFEF), (0xFFF0, 0xFFFD),
          (0x1D400, 0x1D4FF), (0x1F300, 0x1F5FF), (0x1F130, 0x1F189), (0x20000, 0x20100), (0x2F800, 0x2FA1D)]


def agreeing_pool():
    cands = [cp for lo, hi in BLOCKS for cp in range(lo, hi + 1)]
    name = ctypes.util.find_library("utf8proc") or "libutf8proc.so.2"
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        print("note: libutf8proc not loadable with ctypes; characters are not filtered")
        return cands
    lib.utf8proc_category.restype = ctypes.c_int
    lib.utf8proc_tolower.restype = ctypes.c_int32
    lib.utf8proc_decompose_char.restype = ctypes.c_ssize_t
    lib.utf8proc_decompose_char.argtypes = [ctypes.c_int32, ctypes.POINTER(ctypes.c_int32), ctypes.c_ssize_t, ctypes.c_int,
                                            ctypes.POINTER(ctypes.c_int)]
    lib.utf8proc_get_property.restype = ctypes.POINTER(ctypes.c_int16)
    buf = (ctypes.c_int32 * 32)()
    bound = ctypes.c_int(0)
    keep, dropped = [], 0
    for cp in cands:
        c = chr(cp)
        ok = CATS[lib.utf8proc_category(cp)] == unicodedata.category(c)
        ok = ok and lib.utf8proc_get_property(cp)[1] == unicodedata.combining(c)
        low = c.lower()
        if ok and len(low) == 1:
            ok = lib.utf8proc_tolower(cp) == ord(low)
        if ok:
            k = lib.utf8proc_decompose_char(cp, buf, 32, 1 << 4, ctypes.byref(bound))
            ok = [buf[i] for i in range(k)] == [ord(x) for x in unicodedata.normalize("NFD", c)]
        if ok:
            keep.append(cp)
        else:
            dropped += 1
    print("unicode: python %s; %d characters where python and utf8proc disagree left out" % (unicodedata.unidata_version,
                                                                                                dropped))
    return keep


# ---------------------------------------------------------------- string generator
WORDS = ("hello world the quick brown fox jumps over lazy dog unaffable unbelievable tokenizer tokenize bert model "
         "language nation dataset test wordpiece is a an and of to in it playing played cafe naive resume zurich "
         "istanbul don't it's xx aaa abc zzz qwerty flibbertigibbet").split()
ACCENTED = ["Café", "CAFÉ", "naïve", "NAÏVE", "résumé", "Résumé", "Zürich", "ZÜRICH", "Ångström", "Héllo", "Über",
            "über", "façade", "Ñandú", "Øre", "Œuvre", "Straße", "STRASSE", "İstanbul", "ıi", "Ĳssel", "ǅemal",
            "Ǆ", "ﬁle", "Ω", "Ωmega", "K", "Å", "ﬀ"]
GREEK = ["ΟΔΟΣ", "ΣΟΦΙΑ", "ΛΟΓΟΣ", "Σ", "ΑΣ", "ΣΑ", "ΑΣ.", "ΑΣ.Β", "ΑΣ'", "Α'Σ", "ΑΣ-Β", "ΑΣ̈", "Α̈Σ", "ΑΣΣ", "ΣΣ",
         "οδοΣ", "ΟΔΟΣ,", "(ΟΔΟΣ)", "ΑΣ:Β", "ΑΣ·Β", "ΑΣ1", "1Σ", "ªΣ", "ΑΣª", "ΑʰΣ", "ΑΣʰ", "ΑΣ\u00adΒ", "ΑΣ\u200dΒ",
         "λόγος", "ΛΌΓΟΣ", "Ἄ", "ᾼ", "ΐ"]
CJK = ["中文", "日本語", "我是学生", "你好世界", "中a文", "abc中def", "一二三", "龍", "丽", "\U00020000", "\U0002F800", "\uF900",
       "\uFA0E", "国際", "한국어", "한", "가나다", "こんにちは", "カタカナ", "ｶﾀｶﾅ", "ＡＢＣ", "１２３"]
PUNCT = list(".,;:!?-()[]{}<>\"'/\\|@#$%^&*_+=~`") + ["...", "--", "—", "–", "…", "«", "»", "¿", "¡", "•", "©", "®",
                                                      "°", "€", "£", "、", "。", "「", "」", "‘", "’", "“", "”", "·",
                                                      "§", "¶", "×", "÷", "½", "²", "‰", "′", "※", "〜", "ｰ", "¨", "´"]
SPACES = [" ", "  ", "\t", "\n", "\r\n", "\r", "\u00a0", "\u3000", "\u2028", "\u2029", "\u2003", "\u202f", "\u205f",
          "\x0b", "\x0c", "\x85", "\u1680", " \n "]
CONTROL = ["\x00", "\x01", "\x07", "\x1b", "\x7f", "\x9f", "\u200b", "\u200c", "\u200d", "\ufeff", "\ufffd", "\u00ad",
           "\u2060", "\ue000", "\uf8ff", "\U000E0001", "\u0301", "\u0308", "\u20dd", "\u0903"]
SPECIAL_TEXT = SPECIALS + ["[cls]", "[Sep]", "[CLS", "CLS]", "[[CLS]]", "[SEP][SEP]", "[MASK]s", "x[SEP]y", "[unused0]",
                           "[UNK]]"]


def decompose_some(s, rng):
    return unicodedata.normalize("NFD", s) if rng.random() < 0.3 else s


def case(s, rng):
    r = rng.random()
    return s.upper() if r < 0.2 else s.title() if r < 0.35 else s


def gen_strings(n, rng, pool):
    out = []
    for i in range(n):
        kind = i % 10
        parts = []
        for _ in range(rng.randint(1, 12)):
            r = rng.random()
            if kind == 0:      # prose
                w = case(rng.choice(WORDS), rng)
            elif kind == 1:    # accents, composed and decomposed
                w = decompose_some(rng.choice(ACCENTED + WORDS), rng)
            elif kind == 2:    # Greek and final sigma
                w = decompose_some(rng.choice(GREEK), rng)
                if r < 0.3:
                    w = w.replace("Σ", "Σ" + rng.choice(pool), 1) if rng.random() < 0.5 else rng.choice(pool) + w
            elif kind == 3:    # CJK and other scripts, glued or not
                w = rng.choice(CJK + WORDS)
            elif kind == 4:    # punctuation attached to words
                w = rng.choice(PUNCT) + rng.choice(WORDS) + rng.choice(PUNCT) * rng.randint(0, 3)
            elif kind == 5:    # random characters from the agreeing pool
                w = "".join(rng.choice(pool) for _ in range(rng.randint(1, 8)))
            elif kind == 6:    # control, format and combining characters inside words
                w = rng.choice(WORDS)
                k = rng.randint(0, len(w))
                w = w[:k] + rng.choice(CONTROL) + w[k:]
            elif kind == 7:    # long words around the 100-character limit
                L = rng.choice([1, 2, 50, 99, 100, 101, 102, 150, 300])
                w = rng.choice(["a", "x", "é", "ab", "abc", "á", "q"]) * L
                w = w[:L] if rng.random() < 0.5 else w
            elif kind == 8:    # special-token text
                w = rng.choice(SPECIAL_TEXT + WORDS)
            else:              # unknown words and mixtures
                w = "".join(rng.choice("abcdefghijklmnopqrstuvwxyzQZ") for _ in range(rng.randint(1, 15)))
                if r < 0.3:
                    w += rng.choice(pool)
            parts.append(w)
            parts.append(rng.choice(SPACES) if rng.random() < 0.85 else "")
        out.append("".join(parts[:-1] if rng.random() < 0.7 else parts))
    return out


# ---------------------------------------------------------------- running lmkit
def run_driver(dirname, strings, allow):
    data = b"".join(b"%d\n" % len(s.encode()) + s.encode() for s in strings)
    cmd = [DRIVER, dirname] + (["--allow-special"] if allow else [])
    p = subprocess.run(cmd, input=data, capture_output=True)
    if p.returncode != 0:
        print("FAIL: %s exited %d: %s" % (" ".join(cmd), p.returncode, p.stderr.decode(errors="replace")))
        return None
    lines = p.stdout.decode().split("\n")
    return [[int(x) for x in ln.split()] for ln in lines[:len(strings)]]


def lmkit(args, data):
    return subprocess.run([LMKIT] + args, input=data, capture_output=True)


def write_dir(root, name, vocab, config):
    d = os.path.join(root, name)
    os.makedirs(d)
    with open(os.path.join(d, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("".join(t + "\n" for t in vocab))
    if config is not None:
        with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
            json.dump(config, f)
    return d


def write_tokenizer_json(root, name, vocab):
    """The uncased settings as a Hugging Face tokenizer.json (WordPiece model), no vocab.txt."""
    d = os.path.join(root, name)
    os.makedirs(d)
    ids = {}
    for i, t in enumerate(vocab):
        ids[t] = i
    # duplicates would make the object ambiguous: keep the first of each token, rename the others
    seen = set()
    vobj = {}
    for i, t in enumerate(vocab):
        key = t if t not in seen else "[dup%d]" % i
        seen.add(t)
        vobj[key] = i
    tj = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [{"id": vocab.index(s), "content": s, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": True} for s in SPECIALS],
        "normalizer": {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True,
                       "strip_accents": None, "lowercase": True},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                                      {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
                           "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                                    {"SpecialToken": {"id": "[SEP]", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}},
                                    {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
                           "special_tokens": {s: {"id": s, "ids": [ids[s]], "tokens": [s]} for s in ("[CLS]", "[SEP]")}},
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100, "vocab": vobj},
    }
    with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tj, f, ensure_ascii=False)
    return d, [k for k, _ in sorted(vobj.items(), key=lambda kv: kv[1])]


def main():
    for exe in (LMKIT, DRIVER):
        if not os.access(exe, os.X_OK):
            print("FAIL: %s not built" % exe)
            return 1
    rng = random.Random(20240604)
    pool = [chr(c) for c in agreeing_pool()]
    vocab = make_vocab()
    strings = gen_strings(3000, rng, pool)
    with tempfile.TemporaryDirectory(prefix="lmkit_wp_") as tmp:
        uncased = write_dir(tmp, "bert-base-uncased", vocab, {"do_lower_case": True, "model_max_length": 512})
        settings = [
            ("uncased", uncased, Reference(vocab), False),
            ("uncased+special", uncased, Reference(vocab), True),
            ("cased", write_dir(tmp, "cased", vocab, {"do_lower_case": False, "tokenizer_class": "BertTokenizer"}),
             Reference(vocab, lower=False), False),
            ("lower-keep-accents", write_dir(tmp, "keep", vocab, {"do_lower_case": True, "strip_accents": False}),
             Reference(vocab, strip=False), False),
            ("no-cjk-split", write_dir(tmp, "nocjk", vocab, {"tokenize_chinese_chars": False}),
             Reference(vocab, chinese=False), False),
        ]
        # The same settings as a tokenizer.json follow HF tokenizers' BertNormalizer, not Python's
        # BertTokenizer (whitespace, final sigma): test_tokenizer_json.py checks write_tokenizer_json's
        # file against HF tokenizers itself.
        for name, d, ref, allow in settings:
            got = run_driver(d, strings, allow)
            if got is None:
                check(False, name)
                continue
            bad = 0
            for s, g in zip(strings, got):
                want = ref.encode(s, allow)
                ok = g == want
                bad += not ok
                check(ok, "%s: %r\n  lmkit     %s\n  reference %s\n  reference pieces %s" %
                      (name, s, g, want, [ref.vocab[i] for i in want]))
            print("%-20s %d strings, %d differ" % (name, len(strings), bad))

        # the CLI on all strings at once: newlines separate words, so ids concatenate
        ref = Reference(vocab)
        joined = "\n".join(strings).encode()
        for allow in (False, True):
            p = lmkit(["tokenizer", "encode", "--tokenizer", uncased, "--ids"] + (["--allow-special"] if allow else []), joined)
            want = [i for s in strings for i in ref.encode(s, allow)]
            got = [int(x) for x in p.stdout.split()] if p.returncode == 0 else None
            check(got == want, "lmkit tokenizer encode --ids%s on all strings (%s)" %
                  (" --allow-special" if allow else "", p.stderr.decode(errors="replace").strip()))
        # tokens as text, and decoding
        p = lmkit(["tokenizer", "encode", "--tokenizer", uncased], "Héllo, WORLD! unaffable 中文".encode())
        check(p.stdout.decode() == "hello , world ! un ##aff ##able 中 文\n", "encode prints tokens: %r" % p.stdout)
        for s in strings[:40]:
            ids = ref.encode(s, True)
            p = lmkit(["tokenizer", "decode", "--tokenizer", uncased], " ".join(map(str, ids)).encode())
            check(p.returncode == 0 and p.stdout.decode() == ref.decode(ids), "decode %r: %r vs %r" %
                  (s, p.stdout.decode(errors="replace"), ref.decode(ids)))
        # the uncased directory without tokenizer_config.json behaves the same (defaults)
        os.remove(os.path.join(uncased, "tokenizer_config.json"))
        got = run_driver(uncased, strings[:500], False)
        check(got == [ref.encode(s) for s in strings[:500]], "vocab.txt alone (defaults: do_lower_case true)")
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
