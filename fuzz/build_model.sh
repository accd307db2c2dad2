#!/usr/bin/env bash
# build_model.sh — builds the libFuzzer targets for the model-directory formats
# (fuzz_safetensors, fuzz_config) and GGUF files (fuzz_gguf) with clang's -fsanitize=fuzzer,address,undefined,
# and writes seed corpora and a JSON dictionary beside them. config.json's parser
# asks the model families (src/model/families/) about their keys, and they pull
# in the model and its kernels, so the whole library is compiled in.
#
#   fuzz/build_model.sh                 # -> build-fuzz/
#   build-fuzz/fuzz_safetensors -dict=build-fuzz/model.dict build-fuzz/corpus_safetensors -max_total_time=60
#   build-fuzz/fuzz_config      -dict=build-fuzz/model.dict build-fuzz/corpus_config      -max_total_time=60
#   build-fuzz/fuzz_gguf        build-fuzz/corpus_gguf -max_total_time=60
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-build-fuzz}
CC=${CC:-clang}
mkdir -p "$OUT/corpus_safetensors" "$OUT/corpus_config" "$OUT/corpus_gguf"

SRCS=$(find src -name '*.c' | sort)
BLAS_INC=/usr/include/$(gcc -dumpmachine)/openblas-openmp
BLAS_LIB=/usr/lib/$(gcc -dumpmachine)/openblas-openmp
FLAGS="-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -fopenmp -D_GNU_SOURCE -DLM_SOURCE_DIR=\"$PWD\" -Iinclude -Isrc -I$BLAS_INC $(pkg-config --cflags libcjson libpcre2-8 libutf8proc ompi-c)"
LIBS="$(pkg-config --libs libcjson libpcre2-8 libutf8proc ompi-c) -L$BLAS_LIB -Wl,-rpath,$BLAS_LIB -lopenblas -ldnnl -lm"
# an archive, so that only the objects a target needs are linked (the server's and chat's
# libraries stay out)
mkdir -p "$OUT/obj"
rm -f "$OUT/libmodel.a"
for f in $SRCS; do
  o="$OUT/obj/$(echo "$f" | tr / _).o"
  # shellcheck disable=SC2086
  $CC ${FLAGS/-fsanitize=fuzzer,/-fsanitize=fuzzer-no-link,} -c "$f" -o "$o" &
  while [ "$(jobs -r | wc -l)" -ge "$(nproc)" ]; do wait -n; done
done
wait
ar rcs "$OUT/libmodel.a" "$OUT"/obj/*.o
for t in safetensors config gguf; do
  # shellcheck disable=SC2086
  $CC $FLAGS "fuzz/fuzz_$t.c" "$OUT/libmodel.a" $LIBS -o "$OUT/fuzz_$t"
done

# Seeds: a few valid files, so the fuzzer starts past the header checks.
python3 - "$OUT" <<'PY'
import json, struct, sys, os
out = sys.argv[1]
def st(tensors, meta=None, pad=True):
    hdr, data = {}, b""
    if meta is not None: hdr["__metadata__"] = meta
    for name, dtype, shape, raw in tensors:
        hdr[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(hdr, separators=(",", ":")).encode()
    if pad: h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data
seeds = {
  "f32": st([("w", "F32", [2, 3], struct.pack("<6f", *range(6))), ("b", "F32", [3], struct.pack("<3f", 1, 2, 3))], {"format": "pt"}),
  "mixed": st([("h", "F16", [2, 2], struct.pack("<4H", 0x3C00, 0x8001, 0x7C00, 0x7E00)),
               ("bf", "BF16", [3], struct.pack("<3H", 0x3F80, 0xC040, 0x0001)),
               ("d", "F64", [1, 1], struct.pack("<d", 2.5)), ("i", "I64", [], struct.pack("<q", 7)),
               ("e", "F32", [0, 4], b"")], {"format": "pt", "step": "3"}, pad=False),
  "empty": st([]),
  "index": json.dumps({"metadata": {"total_size": 40}, "weight_map": {
      "model.norm.weight": "model-00002-of-00002.safetensors",
      "model.embed_tokens.weight": "model-00001-of-00002.safetensors"}}).encode(),
}
for k, v in seeds.items():
    open(os.path.join(out, "corpus_safetensors", k), "wb").write(v)
cfgs = {
  "gpt2": {"model_type": "gpt2", "vocab_size": 50257, "n_positions": 1024, "n_ctx": 1024, "n_embd": 768, "n_layer": 12,
           "n_head": 12, "n_inner": None, "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5,
           "initializer_range": 0.02, "bos_token_id": 50256, "eos_token_id": 50256, "tie_word_embeddings": True},
  "gpt2_lmkit": {"model_type": "gpt2", "n_embd": 64, "n_head": 4, "n_layer": 2, "n_inner": 100,
                 "lmkit": {"norm": "rms", "pre_ln": False, "causal": True, "bias": False}},
  "bert": {"model_type": "bert", "vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 12,
           "num_attention_heads": 12, "intermediate_size": 3072, "hidden_act": "gelu", "max_position_embeddings": 512,
           "type_vocab_size": 2, "layer_norm_eps": 1e-12, "pad_token_id": 0, "position_embedding_type": "absolute"},
  "old": {"architectures": ["GPT2LMHeadModel"], "n_ctx": 128},
  "llama3": {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 2048, "intermediate_size": 8192,
             "num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 8, "hidden_act": "silu",
             "max_position_embeddings": 131072, "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "tie_word_embeddings": True,
             "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                              "original_max_position_embeddings": 8192, "rope_type": "llama3"},
             "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009], "vocab_size": 128256},
  "qwen2": {"model_type": "qwen2", "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
            "num_attention_heads": 14, "num_key_value_heads": 2, "use_sliding_window": False, "sliding_window": 32768,
            "max_window_layers": 21, "rope_theta": 1000000.0, "tie_word_embeddings": True, "vocab_size": 151936},
  "mistral": {"model_type": "mistral", "sliding_window": 4096, "num_key_value_heads": 8, "head_dim": 128},
  "t5": {"architectures": ["T5ForConditionalGeneration"], "model_type": "t5", "d_model": 512, "d_kv": 64, "d_ff": 2048,
         "num_layers": 6, "num_decoder_layers": None, "num_heads": 8, "relative_attention_num_buckets": 32,
         "relative_attention_max_distance": 128, "dropout_rate": 0.1, "feed_forward_proj": "gated-gelu",
         "decoder_start_token_id": 0, "tie_word_embeddings": False, "vocab_size": 32128},
  "bart": {"architectures": ["BartForConditionalGeneration"], "model_type": "bart", "d_model": 768, "encoder_layers": 6,
           "decoder_layers": 6, "encoder_ffn_dim": 3072, "decoder_ffn_dim": 3072, "encoder_attention_heads": 12,
           "decoder_attention_heads": 12, "max_position_embeddings": 1024, "activation_function": "gelu", "dropout": 0.1,
           "attention_dropout": 0.1, "activation_dropout": 0.1, "scale_embedding": False, "normalize_before": False,
           "add_final_layer_norm": False, "normalize_embedding": True, "extra_pos_embeddings": 2, "pad_token_id": 1,
           "bos_token_id": 0, "eos_token_id": 2, "decoder_start_token_id": 2, "vocab_size": 50265},
}
for k, v in cfgs.items():
    open(os.path.join(out, "corpus_config", k), "w").write(json.dumps(v, indent=2))
words = ["weight_map", "metadata", "total_size", "dtype", "shape", "data_offsets", "__metadata__", "format", "F32", "F16", "BF16", "F64", "I64", "U8", "BOOL",
         "model_type", "gpt2", "bert", "n_embd", "n_head", "n_layer", "n_inner", "n_positions", "n_ctx", "vocab_size",
         "hidden_size", "num_attention_heads", "num_hidden_layers", "intermediate_size", "max_position_embeddings",
         "activation_function", "hidden_act", "gelu_new", "gelu", "relu", "layer_norm_epsilon", "layer_norm_eps",
         "initializer_range", "bos_token_id", "eos_token_id", "pad_token_id", "type_vocab_size",
         "tie_word_embeddings", "lmkit", "norm", "rms", "layer", "pre_ln", "causal", "bias", "architectures",
         "position_embedding_type", "absolute", "scale_attn_weights", "t5", "bart", "d_model", "encoder_layers",
         "decoder_layers", "encoder_ffn_dim", "decoder_ffn_dim", "encoder_attention_heads", "decoder_attention_heads",
         "dropout", "attention_dropout", "activation_dropout", "scale_embedding", "normalize_before",
         "add_final_layer_norm", "extra_pos_embeddings", "decoder_start_token_id", "encoder_layerdrop"]
with open(os.path.join(out, "model.dict"), "w") as f:
    for w in words: f.write('"\\"%s\\""\n' % w)
    for t in ["null", "true", "false", "1e-05", "-1", "4294967296", "[", "]", "{", "}", ":", ","]: f.write('"%s"\n' % t)
PY
# GGUF seeds: a byte-level BPE tokenizer's keys and a tensor of every block type lmkit reads
python3 - "$OUT" <<'PY'
import struct, sys, os
def s(x): x = x.encode(); return struct.pack("<Q", len(x)) + x
def kv(k, t, v): return s(k) + struct.pack("<I", t) + v
def arr(t, items): return struct.pack("<IQ", t, len(items)) + b"".join(items)
sym = [chr(c) if 33 <= c <= 126 else chr(256 + c) for c in range(256)]
toks = sym + ["he", "hel", "<|endoftext|>"]
keys = [kv("general.architecture", 8, s("gpt2")), kv("general.alignment", 4, struct.pack("<I", 32)),
        kv("tokenizer.ggml.model", 8, s("gpt2")), kv("tokenizer.ggml.pre", 8, s("gpt-2")),
        kv("tokenizer.ggml.tokens", 9, arr(8, [s(t) for t in toks])),
        kv("tokenizer.ggml.token_type", 9, arr(5, [struct.pack("<i", 3 if t.startswith("<|") else 1) for t in toks])),
        kv("tokenizer.ggml.merges", 9, arr(8, [s("h e"), s("he l")])),
        kv("tokenizer.ggml.eos_token_id", 4, struct.pack("<I", len(toks) - 1)),
        kv("x.f64", 12, struct.pack("<d", 2.5)), kv("x.bool", 7, b"\1")]
blocks = {0: (1, 4), 1: (1, 2), 30: (1, 2), 8: (32, 34), 2: (32, 18), 12: (256, 144), 13: (256, 176), 14: (256, 210)}
infos, data = b"", b""
for t, (el, by) in blocks.items():
    raw = bytes((i * 37 + t) % 251 for i in range(by * (256 // el)))
    infos += s(f"t{t}") + struct.pack("<IQIQ", 1, 256, t, len(data))
    data += raw + b"\0" * (-len(raw) % 32)
head = b"GGUF" + struct.pack("<IQQ", 3, len(blocks), len(keys)) + b"".join(keys) + infos
head += b"\0" * (-len(head) % 32)
open(os.path.join(sys.argv[1], "corpus_gguf", "tok_blocks"), "wb").write(head + data)
PY
echo "built $OUT/fuzz_safetensors, $OUT/fuzz_config and $OUT/fuzz_gguf"
