#!/usr/bin/python3
"""test_tokenizer_gpt2.py — lmkit's GPT-2 tokenizer against OpenAI's tiktoken.

Generates a few thousand varied strings (prose, code, whitespace runs, numbers,
contractions, accented/CJK/other scripts, emoji, long words), encodes them with
js-tiktoken's "gpt2" under Node (the reference, run here) and with
`lmkit tokenizer encode --tokenizer gpt2`, and requires identical ids. Then
checks decode(encode(x)) == x on random byte strings, invalid UTF-8 included.

All strings go through one lmkit process: they are joined with <|endoftext|>
and encoded with --allow-special, which encodes the stretches between special
tokens independently — exactly like encoding each string on its own.

Two characters are left out of the generated text on purpose: U+0085 and
U+FEFF. tiktoken (Rust) and lmkit read \\s as Unicode White_Space (U+0085 yes,
U+FEFF no); JavaScript's \\s says the opposite, so js-tiktoken disagrees with
tiktoken itself there. Those two are checked against hand-worked ids instead.

Env: LMKIT_BIN (build dir holding lmkit), LMKIT_SRC (repo root)."""
import json
import os
import random
import subprocess
import sys
import tempfile

SRC = os.environ.get("LMKIT_SRC", os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
BIN = os.path.join(os.environ.get("LMKIT_BIN", os.path.join(SRC, "build")), "lmkit")
TIKTOKEN = os.path.join(SRC, "third_party/npm/node_modules/js-tiktoken/dist/index.cjs")
EOT = "<|endoftext|>"

passed = failed = 0


def check(ok, what):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print("FAIL:", what)


# ---------------------------------------------------------------- string generator
WORDS = ("the of and to in is you that it he was for on are as with his they at be this have from or one had by word "
         "but not what all were we when your can said there use an each which she do how their if will up other about "
         "out many then them these so some her would make like him into time has look two more write go see number no "
         "way could people my than first water been call who oil its now find long down day did get come made may part "
         "Hello World THE Quick BROWN fox McDonald iPhone naïve café résumé Zürich São Ελληνικά русский язык "
         "العربية עברית हिन्दी ไทย 日本語 中文字符 한국어 ひらがな カタカナ").split()
CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'VE", "'M", "'LL", "'D", "'", "''", "'x",
                "'st", "'tis", "’s"]
PUNCT = list(".,;:!?-()[]{}<>\"'/\\|@#$%^&*_+=~`") + ["...", "--", "—", "–", "…", "«", "»", "¿", "¡", "•", "©", "®", "°", "€", "£", "¥"]
SPACES = [" ", "  ", "\t", "\n", "\r\n", "\n\n", "   ", "\u00a0", "\u3000", "\u2028", "\u2029", "\u2003", "\u202f", "\u205f",
          "\x0b", "\x0c", "\u1680", "\u200b", " \n ", "\t\t", "    "]
DIGITS = ["0", "1", "42", "123", "2024", "3.14159", "1,000,000", "007", "٣٤٥", "３４", "²", "½", "Ⅻ", "१२३", "1e10", "0x1F"]
EMOJI = ["🙂", "😀", "👍🏽", "👨‍👩‍👧‍👦", "🇫🇷", "❤️", "✨", "🚀", "🤖", "🧠", "☕", "🎉", "🏳️‍🌈", "⭐", "🔥", "💯"]
SCRIPTS = [(0x41, 0x5A), (0x61, 0x7A), (0xC0, 0xFF), (0x100, 0x17F), (0x391, 0x3C9), (0x410, 0x44F), (0x5D0, 0x5EA),
           (0x627, 0x64A), (0x905, 0x939), (0xE01, 0xE30), (0x3041, 0x3093), (0x30A1, 0x30F6), (0x4E00, 0x9FA5),
           (0xAC00, 0xD7A3), (0x300, 0x36F), (0x2000, 0x206F), (0x2190, 0x21FF), (0x2200, 0x22FF), (0x1F300, 0x1F5FF),
           (0x1F600, 0x1F64F), (0x21, 0x7E), (0x20, 0x20), (0xFF01, 0xFF5E), (0x660, 0x669), (0x1D400, 0x1D4FF)]
CODE = ["def f(x):\n    return x * 2\n", "int main(void) {\n\tprintf(\"%d\\n\", 42);\n\treturn 0;\n}\n",
        "for (int i = 0; i < n; i++) a[i] += b[i];", "if x != None and y >= 3: pass", "    # comment\n    x = [1, 2, 3]\n",
        "const s = `${a}-${b}`;", "#include <stdio.h>", "SELECT * FROM t WHERE id=1;", "<div class=\"x\">hi</div>",
        "a->b.c[0]::d", "x+=1;y-=2;z*=3", "/* C comment */", "\t\tif (err) goto fail;\n", "{\"key\": [1, 2.5, null, true]}",
        "λx. x + 1", "fn main() -> Result<(), Box<dyn Error>> {}", "    \n    \n", "foo_bar_baz = BazQux(1)"]


def rand_script(r, n):
    lo, hi = r.choice(SCRIPTS)
    return "".join(chr(r.randint(lo, hi)) for _ in range(n))


def gen_string(r):
    kind = r.randrange(10)
    parts = []
    if kind == 0:  # prose
        for _ in range(r.randint(1, 30)):
            w = r.choice(WORDS)
            if r.random() < 0.1:
                w += r.choice(CONTRACTIONS)
            parts.append(w)
            parts.append(r.choice([" ", " ", " ", ", ", ". ", "\n", "! ", "? ", "; "]))
    elif kind == 1:  # code
        for _ in range(r.randint(1, 5)):
            parts.append(r.choice(CODE))
    elif kind == 2:  # whitespace runs around words
        for _ in range(r.randint(1, 12)):
            parts.append(r.choice(SPACES) * r.randint(1, 4))
            if r.random() < 0.6:
                parts.append(r.choice(WORDS + DIGITS + PUNCT))
    elif kind == 3:  # numbers
        for _ in range(r.randint(1, 10)):
            parts.append(r.choice(DIGITS) if r.random() < 0.5 else str(r.randint(0, 10 ** r.randint(1, 15))))
            parts.append(r.choice(["", " ", ",", ".", " + ", "-", "\n", "x", "%"]))
    elif kind == 4:  # contractions
        for _ in range(r.randint(1, 10)):
            parts.append(r.choice(WORDS[:40] + ["I", "you", "they", "it", "don", "can", "we", ""]))
            parts.append(r.choice(CONTRACTIONS))
            parts.append(r.choice([" ", "", "  ", "\n", "'", " '"]))
    elif kind == 5:  # other scripts
        for _ in range(r.randint(1, 8)):
            parts.append(rand_script(r, r.randint(1, 12)))
            parts.append(r.choice([" ", "", "\n", ", ", "  "]))
    elif kind == 6:  # emoji
        for _ in range(r.randint(1, 10)):
            parts.append(r.choice(EMOJI + WORDS + [" ", " ", "!", "\n"]))
    elif kind == 7:  # punctuation soup
        for _ in range(r.randint(1, 20)):
            parts.append(r.choice(PUNCT + SPACES[:4] + ["a", "1"]))
    elif kind == 8:  # long words / runs (exercise the heap path of long pieces)
        c = r.choice(["a", "ab", "x1", " ", "-", "é", "中", "!", "\n", "Hello", "0"])
        parts.append(c * r.randint(20, 300))
        if r.random() < 0.5:
            parts.append(rand_script(r, r.randint(50, 200)))
    else:  # anything goes: code points from all pools
        for _ in range(r.randint(1, 40)):
            pool = r.randrange(6)
            parts.append([lambda: rand_script(r, r.randint(1, 3)), lambda: r.choice(SPACES), lambda: r.choice(PUNCT),
                          lambda: r.choice(DIGITS), lambda: r.choice(EMOJI), lambda: r.choice(CONTRACTIONS)][pool]())
    s = "".join(parts)
    return s.replace(EOT, "").replace("\x85", " ").replace("\ufeff", " ")


def lmkit(args, data):
    p = subprocess.run([BIN] + args, input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if p.returncode != 0:
        raise RuntimeError("lmkit %s failed: %s" % (" ".join(args), p.stderr.decode(errors="replace")))
    return p.stdout


def main():
    if not os.path.exists(BIN):
        print("lmkit binary not found at", BIN)
        print("0 passed, 1 failed")
        return 1
    if not os.path.exists(TIKTOKEN):
        print("js-tiktoken not found at", TIKTOKEN, "(run scripts/install-deps.sh)")
        print("0 passed, 1 failed")
        return 1
    r = random.Random(1234)
    strings = ["", " ", "a", "Hello world", "I'm", "don't", "  leading", "trailing  ", "\n\n\n", "a\u00a0b", "日本語のテキスト",
               "🙂🙂", "12345678901234567890", "x" * 1000, " " * 100 + "y", "'ll've'd"] + [gen_string(r) for _ in range(3000)]
    with tempfile.TemporaryDirectory() as tmp:
        inp = os.path.join(tmp, "in.json")
        with open(inp, "w", encoding="utf-8") as f:
            json.dump(strings, f)
        js = ("const {getEncoding} = require(%s); const fs = require('fs');"
              "const enc = getEncoding('gpt2'); const xs = JSON.parse(fs.readFileSync(%s, 'utf8'));"
              "process.stdout.write(JSON.stringify(xs.map(s => enc.encode(s))));") % (json.dumps(TIKTOKEN), json.dumps(inp))
        ref = json.loads(subprocess.run(["node", "-e", js], check=True, stdout=subprocess.PIPE).stdout)

    # ---- ids identical to tiktoken
    joined = EOT.join(strings).encode("utf-8")
    out = lmkit(["tokenizer", "encode", "--tokenizer", "gpt2", "--ids", "--allow-special"], joined).split()
    ids = [int(x) for x in out]
    got, cur = [], []
    for i in ids:
        if i == 50256:
            got.append(cur)
            cur = []
        else:
            cur.append(i)
    got.append(cur)
    check(len(got) == len(strings), "one id list per string (%d vs %d)" % (len(got), len(strings)))
    shown = 0
    for s, a, b in zip(strings, got, ref):
        ok = a == b
        if not ok and shown < 5:
            shown += 1
            print("mismatch for %r\n  lmkit:    %s\n  tiktoken: %s" % (s[:200], a[:40], b[:40]))
        check(ok, "gpt2 ids of %r" % s[:60])
    # decode is the inverse
    back = lmkit(["tokenizer", "decode", "--tokenizer", "gpt2"], " ".join(map(str, ids)).encode())
    check(back == joined, "decode(encode(corpus)) == corpus")

    # ---- U+0085 and U+FEFF, worked by hand from tiktoken's definition (\s = White_Space)
    nel = lmkit(["tokenizer", "encode", "--tokenizer", "gpt2", "--ids"], "a\x85 b".encode()).split()
    ref_nel = ref_ids_of(["a", "\x85", " b"])
    check([int(x) for x in nel] == ref_nel, "U+0085 is whitespace (%s vs %s)" % (nel, ref_nel))
    bom = lmkit(["tokenizer", "encode", "--tokenizer", "gpt2", "--ids"], "a\ufeff b".encode()).split()
    ref_bom = ref_ids_of(["a", "\ufeff", " b"])
    check([int(x) for x in bom] == ref_bom, "U+FEFF is not whitespace (%s vs %s)" % (bom, ref_bom))

    # ---- round trip on random byte strings, invalid UTF-8 included
    rb = random.Random(99)
    blobs = []
    for k in range(400):
        n = rb.randint(0, 200)
        if k % 4 == 0:
            b = bytes(rb.randrange(256) for _ in range(n))
        elif k % 4 == 1:
            b = bytes(rb.choice(b" \n\tabc'\x80\xc3\xa9\xe4\xb8\xad\xf0\x9f\x99\x82\xff\xfe\xc0\xed\xa0") for _ in range(n))
        elif k % 4 == 2:
            s = gen_string(rb).encode()
            cut = rb.randint(0, len(s))
            b = s[:cut] + bytes([rb.randrange(128, 256)]) + s[cut:]
        else:
            b = gen_string(rb).encode()[:-1]
        blobs.append(b.replace(EOT.encode(), b""))
    # one process: blobs joined by <|endoftext|> (encoded independently, see above)
    joined = EOT.encode().join(blobs)
    ids = lmkit(["tokenizer", "encode", "--tokenizer", "gpt2", "--ids", "--allow-special"], joined).split()
    back = lmkit(["tokenizer", "decode", "--tokenizer", "gpt2"], b" ".join(ids))
    check(back == joined, "round trip of %d random byte strings" % len(blobs))
    for b in blobs[:8]:  # and a few one at a time, without special-token matching
        ids = lmkit(["tokenizer", "encode", "--tokenizer", "gpt2", "--ids"], b).split()
        back = lmkit(["tokenizer", "decode", "--tokenizer", "gpt2"], b" ".join(ids))
        check(back == b, "round trip of %r" % b[:40])

    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


def ref_ids_of(pieces):
    """tiktoken ids of text already split into pieces: each piece encoded on its own (js-tiktoken)."""
    js = ("const {getEncoding} = require(%s); const enc = getEncoding('gpt2');"
          "process.stdout.write(JSON.stringify([].concat(...%s.map(s => enc.encode(s)))));") % (json.dumps(TIKTOKEN), json.dumps(pieces))
    return json.loads(subprocess.run(["node", "-e", js], check=True, stdout=subprocess.PIPE).stdout)


if __name__ == "__main__":
    sys.exit(main())
