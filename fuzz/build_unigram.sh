#!/usr/bin/env bash
# build_unigram.sh — builds the libFuzzer targets of the Unigram model and the
# precompiled charsmap (fuzz_unigram, fuzz_precompiled) with clang's
# -fsanitize=fuzzer,address,undefined, and writes seed corpora beside them: a
# hand-made charsmap and, when python3-sentencepiece is installed, the real
# nmt_nfkc one of a model trained on a few lines; small Unigram models.
#
#   fuzz/build_unigram.sh                  # -> build-fuzz/
#   build-fuzz/fuzz_precompiled build-fuzz/corpus_precompiled -max_total_time=60
#   build-fuzz/fuzz_unigram     build-fuzz/corpus_unigram     -max_total_time=60
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-build-fuzz}
CC=${CC:-clang}
mkdir -p "$OUT/corpus_precompiled" "$OUT/corpus_unigram"

# The tokenizer without the corpus tools (files.c, train.c: threads), plus base.
SRCS="$(ls src/tokenizer/*.c | grep -v -e files.c -e train.c) src/base/error.c src/base/io.c src/base/mem.c"
FLAGS="-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -D_GNU_SOURCE -DLM_SOURCE_DIR=\"$PWD\" -Iinclude -Isrc $(pkg-config --cflags libcjson libpcre2-8 libutf8proc)"
LIBS="$(pkg-config --libs libcjson libpcre2-8 libutf8proc) -lm"
for t in precompiled unigram; do
  # shellcheck disable=SC2086
  $CC $FLAGS "fuzz/fuzz_$t.c" $SRCS $LIBS -o "$OUT/fuzz_$t"
done

/usr/bin/python3 - "$OUT" <<'PY'
import json, os, struct, sys, tempfile
out = sys.argv[1]
def pc(blob, text):   # fuzz_precompiled's input: u32 blob length, blob, text
    return struct.pack("<I", len(blob)) + blob + text.encode()
# the hand-made trie of tests/unit/test_unigram.c: "a" -> "A", "ab" -> "AB!"
u = [0] * 256
u[97] = (128 << 10) | (1 << 8) | ord("a"); u[225] = (1 << 31) | 0
u[131] = (64 << 10) | (1 << 8) | ord("b"); u[195] = (1 << 31) | 2
small = struct.pack("<I", 1024) + struct.pack("<256I", *u) + b"A\0AB!\0"
open(os.path.join(out, "corpus_precompiled", "small"), "wb").write(pc(small, "xaby a\u0301 \r\n"))
try:
    import sentencepiece as spm
    d = tempfile.mkdtemp()
    with open(os.path.join(d, "t.txt"), "w") as f:
        f.write("hello world ＡＢＣ ｶﾞ ① ﬁ café\n" * 50)
    spm.SentencePieceTrainer.train(input=os.path.join(d, "t.txt"), model_prefix=os.path.join(d, "m"), vocab_size=30, hard_vocab_limit=False,
                                   model_type="unigram", normalization_rule_name="nmt_nfkc", minloglevel=2)
    proto = open(os.path.join(d, "m.model"), "rb").read()
    sys.path.insert(0, os.path.join(os.getcwd(), "tests", "reference"))
    from test_unigram import charsmap
    blob = charsmap(proto)
    open(os.path.join(out, "corpus_precompiled", "nmt_nfkc"), "wb").write(pc(blob, "ＡＢＣ ｶﾞ ① ﬁ café\u3000x"))
except ImportError:
    pass
model = {"model": {"type": "Unigram", "unk_id": 0, "byte_fallback": True,
                   "vocab": [["<unk>", 0], ["\u2581hello", -2.5], ["\u2581", -1], ["h", -3], ["<0x77>", 0]]},
         "added_tokens": [{"id": 0, "content": "<unk>", "special": True}]}
open(os.path.join(out, "corpus_unigram", "json"), "wb").write(b"\0" + json.dumps(model).encode())
open(os.path.join(out, "corpus_unigram", "built"), "wb").write(b"\x07\xe2\x96\x81he\nllo\nh\ne\n\xff\xe2\x96\x81hello hh\xc3\xa9")
PY
echo "built $OUT/fuzz_precompiled and $OUT/fuzz_unigram"
