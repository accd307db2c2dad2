#!/usr/bin/python3
"""test_unigram_train.py — `lmkit tokenizer train --model unigram` (src/tokenizer/unigram_train.c)
against SentencePiece's own trainer (Debian's python3-sentencepiece) and Hugging Face tokenizers
(npm `tokenizers`, HF's Rust core under Node).

1. The corpus is English text from a Debian package (fortunes, installed by
   scripts/install-deps.sh): five files to train on, two held out.
2. lmkit and spm.SentencePieceTrainer (model_type unigram, nmt_nfkc, its
   defaults otherwise) learn the same number of pieces on it; on the held-out
   text lmkit's tokens per byte must be within 2% of SentencePiece's.
3. HF tokenizers loads the tokenizer.json lmkit wrote and must give lmkit's ids
   (with and without the post-processor) and decodes (with and without special
   tokens) on the held-out lines and ~1000 generated strings (accents, CJK,
   emoji, whitespace runs, special-token text), for a plain model and a
   --byte-fallback one with T5 sentinels (<extra_id_0> the highest id, unknown
   characters as <0xNN> bytes).
4. The file is a Unigram model with [piece, score] pairs sorted by score and a
   Metaspace pre-tokenizer; the same data and threads give the same file;
   options of the other trainer are errors.

Env: LMKIT_BIN (build dir holding lmkit and ref_tokjson), LMKIT_SRC (repo root)."""
import json
import os
import random
import subprocess
import sys
import tempfile

import sentencepiece as spm

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_tokenizer_json as tj  # noqa: E402  (HF's side, lmkit's driver, the string generator, the tally)

FORTUNES = "/usr/share/games/fortunes"
TRAIN = ["computers", "literature", "people", "science", "wisdom"]
HELD = ["education", "fortunes"]
VOCAB = 2000


def lmkit(*args):
    return subprocess.run([tj.LMKIT] + list(args), capture_output=True, timeout=300)


def encode_count(tok, text):
    p = subprocess.run([tj.LMKIT, "tokenizer", "encode", "--tokenizer", tok, "--ids"], input=text.encode(), capture_output=True)
    assert p.returncode == 0, p.stderr
    return len(p.stdout.split())


def main():
    if not os.path.isdir(FORTUNES):
        print("FAIL: %s missing (Debian's fortunes; run scripts/install-deps.sh)" % FORTUNES)
        return 1
    rng = random.Random(20261202)
    with tempfile.TemporaryDirectory(prefix="lmkit_unitrain_") as d:
        train = os.path.join(d, "train.txt")
        with open(train, "wb") as f:
            for name in TRAIN:
                f.write(open(os.path.join(FORTUNES, name), "rb").read())
        held = b"".join(open(os.path.join(FORTUNES, name), "rb").read() for name in HELD).decode("utf-8")
        held_lines = [l for l in held.split("\n") if l.strip()]

        # ---- lmkit vs SentencePiece's trainer: tokens per byte on held-out text
        tok = os.path.join(d, "uni")
        p = lmkit("tokenizer", "train", "--model", "unigram", "--data", train, "--vocab-size", str(VOCAB), "--out", tok, "--threads", "2")
        if not tj.check(p.returncode == 0, "lmkit tokenizer train --model unigram: %s" % p.stderr.decode()[-500:]):
            return 1
        # lmkit: <unk> + 3 special tokens; SentencePiece: <unk>, <s>, </s>: the same number of learned pieces
        spm.SentencePieceTrainer.train(input=train, model_prefix=os.path.join(d, "sp"), vocab_size=VOCAB - 1,
                                       model_type="unigram", normalization_rule_name="nmt_nfkc", minloglevel=2, num_threads=2)
        sp = spm.SentencePieceProcessor(model_file=os.path.join(d, "sp.model"))
        nbytes = len(held.encode())
        n_sp = sum(len(sp.encode(l)) for l in held_lines)
        n_lm = encode_count(tok, held)
        ratio = n_lm / n_sp
        print("held-out %d bytes: SentencePiece %d tokens (%.4f/byte), lmkit %d (%.4f/byte), ratio %.4f"
              % (nbytes, n_sp, n_sp / nbytes, n_lm, n_lm / nbytes, ratio))
        tj.check(abs(ratio - 1) <= 0.02, "tokens per byte within 2%% of SentencePiece's (ratio %.4f)" % ratio)

        # ---- the file
        j = json.load(open(os.path.join(tok, "tokenizer.json"), encoding="utf-8"))
        m = j["model"]
        scores = [s for _, s in m["vocab"][1:]]
        tj.check(m["type"] == "Unigram" and m["unk_id"] == 0 and m["vocab"][0][0] == "<unk>" and
                 all(isinstance(x, list) and len(x) == 2 for x in m["vocab"]) and scores == sorted(scores, reverse=True) and
                 len(m["vocab"]) + len(j["added_tokens"]) - 1 == VOCAB and j["pre_tokenizer"]["type"] == "Metaspace",
                 "tokenizer.json: Unigram, <unk> first, [piece, score] sorted by score, %d in all, Metaspace" % VOCAB)

        # ---- HF tokenizers encodes lmkit's file as lmkit does
        specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<unk>", "\u2581", "<0x41>", "<extra_id_0>"]
        strings = held_lines[:400] + tj.gen_strings(600, rng, specials)
        tj.compare("unigram (trained)", os.path.join(tok, "tokenizer.json"), strings, d)

        # ---- byte fallback and sentinels, on a smaller corpus; determinism
        small = os.path.join(d, "small.txt")
        open(small, "wb").write(open(os.path.join(FORTUNES, "wisdom"), "rb").read())
        outs = []
        for k in range(2):
            out = os.path.join(d, "bf%d" % k)
            p = lmkit("tokenizer", "train", "--model", "unigram", "--data", small, "--vocab-size", "900", "--byte-fallback",
                      "--sentinels", "3", "--out", out, "--threads", "2")
            tj.check(p.returncode == 0, "--byte-fallback --sentinels 3: %s" % p.stderr.decode()[-300:])
            outs.append(open(os.path.join(out, "tokenizer.json"), "rb").read())
        tj.check(outs[0] == outs[1], "the same data and threads give the same tokenizer.json")
        j = json.loads(outs[0])
        v = [p for p, _ in j["model"]["vocab"]]
        added = {a["content"]: a["id"] for a in j["added_tokens"]}
        tj.check(v[1:257] == ["<0x%02X>" % b for b in range(256)] and j["model"]["byte_fallback"] is True and
                 added["<extra_id_0>"] == max(added.values()) == 899 and added["<extra_id_2>"] == 897,
                 "byte pieces at ids 1..256, <extra_id_0> the highest id (899)")
        strings = tj.gen_strings(400, rng, specials) + ["\u4e2d\u6587 \U0001F600 caf\u00e9", "\u00a0\u3000x  y\t\tz"]
        tj.compare("unigram (byte fallback)", os.path.join(d, "bf0", "tokenizer.json"), strings, d)

        # ---- errors
        for args, want in ((["--model", "bpe", "--byte-fallback"], "--byte-fallback is for --model unigram"),
                           (["--model", "unigram", "--min-frequency", "3"], "--min-frequency is for --model bpe"),
                           (["--model", "unigram", "--vocab-size", "30"], "fewer than the"),
                           (["--model", "wordpiece"], "unknown --model 'wordpiece'")):
            a = ["tokenizer", "train", "--data", small, "--out", os.path.join(d, "e")] + args
            if "--vocab-size" not in args:
                a += ["--vocab-size", "600"]
            p = lmkit(*a)
            msg = p.stderr.decode().strip()
            tj.check(p.returncode != 0 and want in msg and msg.count("\n") == 0, "%s -> %r (got %r)" % (" ".join(args), want, msg))
    print("%d passed, %d failed" % (tj.passed, tj.failed))
    return 1 if tj.failed else 0


if __name__ == "__main__":
    sys.exit(main())
