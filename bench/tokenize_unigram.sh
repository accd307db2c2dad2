#!/usr/bin/env bash
# tokenize_unigram.sh — encode throughput of a T5-like Unigram tokenizer on one
# core: lmkit's Precompiled (nmt_nfkc) + Unigram Viterbi (tests/reference/ref_unigram
# bench: SentencePiece's rules, line by line) next to sentencepiece's own
# encoder (python3-sentencepiece, sp.encode per line and on the whole list with
# num_threads=1) on the same lines, with an id-for-id check; then the whole
# converted T5 tokenizer.json through lmkit's tokenizer.json pipeline
# (bench_tokenize: the corpus as one text, 1 thread and all threads) next to HF
# tokenizers (npm, encodeBatch of its lines without parallelism: lines are
# independent under WhitespaceSplit, so the ids are the same), id for id.
# The model: SentencePiece Unigram, vocab 8000, nmt_nfkc, trained here on the corpus.
# Usage: bench/tokenize_unigram.sh [BUILD_DIR] [CORPUS]
# Corpus: /work/shared/data/tinyshakespeare/input.txt if present, else the
# fortunes files concatenated; repeated to >= 4 MB.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$SRC/build}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
. "$SRC/bench/corpus.sh"
bench_corpus "$TMP" "${2:-}"
[ -x "$BUILD/ref_unigram" ] && [ -x "$BUILD/bench_tokenize" ] || cmake --build "$BUILD" --target ref_unigram bench_tokenize >/dev/null
echo "corpus: $CORPUS, $(stat -c %s "$TMP/corpus.txt") bytes (repeated to >= 4 MB); $(nproc) cores; load: $(cut -d' ' -f1-3 /proc/loadavg)"
/usr/bin/python3 - "$SRC" "$BUILD" "$TMP" "$CORPUS" <<'PY'
import json, os, statistics, subprocess, sys, time
src, build, tmp, corpus = sys.argv[1:5]
sys.path.insert(0, os.path.join(src, "tests", "reference"))
import sentencepiece as spm
from test_unigram import charsmap, t5_json
spm.SentencePieceTrainer.train(input=corpus, model_prefix=os.path.join(tmp, "m"), model_type="unigram", vocab_size=8000,
                               normalization_rule_name="nmt_nfkc", pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
                               num_threads=1, minloglevel=2, input_sentence_size=200000, shuffle_input_sentence=True)
sp = spm.SentencePieceProcessor(model_file=os.path.join(tmp, "m.model"))
blob = charsmap(sp.serialized_model_proto())
full, model_only = t5_json(sp, blob, False)
json.dump(model_only, open(os.path.join(tmp, "model.json"), "w"))
json.dump(full, open(os.path.join(tmp, "t5.json"), "w"))
open(os.path.join(tmp, "charsmap"), "wb").write(blob)
text = open(os.path.join(tmp, "corpus.txt"), encoding="utf-8", errors="replace").read()
lines = text.split("\n")
mb = len(text.encode()) / 1e6
def timed(f):   # MB/s of wall-clock and of CPU time, medians of 5
    wall, cpu = [], []
    for _ in range(5):
        t0, c0 = time.perf_counter(), time.process_time()
        out = f()
        wall.append(time.perf_counter() - t0); cpu.append(time.process_time() - c0)
    return out, (mb / statistics.median(wall), mb / statistics.median(cpu))
ref, sp_line = timed(lambda: [sp.encode(l) for l in lines])
_, sp_batch = timed(lambda: sp.encode(lines, num_threads=1))
open(os.path.join(tmp, "corpus.txt"), "w", encoding="utf-8").write(text)
lm = tuple(float(x) for x in subprocess.run([os.path.join(build, "ref_unigram"), "bench", os.path.join(tmp, "model.json"),
                           os.path.join(tmp, "charsmap"), os.path.join(tmp, "corpus.txt")],
                          capture_output=True, text=True, check=True).stdout.split())
with open(os.path.join(tmp, "lines.jsonl"), "w") as f:
    f.writelines(json.dumps(l) + "\n" for l in lines)
got = subprocess.run([os.path.join(build, "ref_unigram"), "spm", os.path.join(tmp, "model.json"), os.path.join(tmp, "charsmap")],
                     stdin=open(os.path.join(tmp, "lines.jsonl")), capture_output=True, text=True, check=True).stdout.split("\n")[:-1]
same = sum(1 for a, b in zip(got, ref) if [int(x) for x in a.split()] == b)
print("model: %d pieces, nmt_nfkc; %d lines, %d ids" % (sp.get_piece_size(), len(lines), sum(map(len, ref))))
print("MB/s, medians of 5:                                wall-clock  CPU time")
print("lmkit (precompiled + Unigram, 1 thread):            %7.2f   %7.2f" % lm)
print("sentencepiece %s (python, sp.encode per line):    %7.2f   %7.2f" % ((spm.__version__,) + sp_line))
print("sentencepiece %s (python, encode(list), 1 thread): %7.2f   %7.2f" % ((spm.__version__,) + sp_batch))
print("ids: %d of %d lines identical to sentencepiece" % (same, len(lines)))
PY

# the whole tokenizer.json: lmkit's pipeline vs HF tokenizers, the corpus as one text
"$BUILD/bench_tokenize" "$TMP/corpus.txt" "$TMP/t5.json" "$TMP/lmkit.ids" | sed 's/^/lmkit t5 tokenizer.json: /'
TOKENIZERS=$SRC/third_party/npm/node_modules/tokenizers
if command -v node >/dev/null && [ -d "$TOKENIZERS" ]; then
  TOKENIZERS_PARALLELISM=false node -e '
    const {Tokenizer} = require(process.argv[1]); const fs = require("fs");
    const tok = Tokenizer.fromFile(process.argv[2]); const s = fs.readFileSync(process.argv[3], "utf8");
    const lines = s.split("\n");
    (async () => { const mb = Buffer.byteLength(s) / 1e6; const times = []; let enc;
      for (let r = 0; r < 3; r++) { const t0 = process.hrtime.bigint();
        enc = await tok.encodeBatch(lines, {addSpecialTokens: false});
        times.push(Number(process.hrtime.bigint() - t0) / 1e9); }
      times.sort((a, b) => a - b);
      console.log(`HF tokenizers ${require(process.argv[1] + "/package.json").version} (node ${process.version}) t5 tokenizer.json, encodeBatch of the lines, TOKENIZERS_PARALLELISM=false: ${(mb / times[1]).toFixed(2)} MB/s (median of 3)`);
      fs.writeFileSync(process.argv[4], enc.map((e) => Array.from(e.getIds()).join(" ")).filter((x) => x).join(" ") + "\n"); })();' \
    "$TOKENIZERS" "$TMP/t5.json" "$TMP/corpus.txt" "$TMP/hf.ids"
  if cmp -s "$TMP/lmkit.ids" "$TMP/hf.ids"; then echo "ids: identical to HF tokenizers ($(wc -w < "$TMP/lmkit.ids") tokens)"
  else echo "ids: DIFFERENT from HF tokenizers"; exit 1; fi
fi
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
