"""GGUF (src/model/gguf.c, gguf_model.c) against references written here from ggml's
definitions (docs/gguf.md; ggml-quants.c's quantize_row_*_ref and dequantize_row_*), in numpy:

1. blocks: lmkit's Q8_0 / Q4_0 / F16 / BF16 quantizers give the same bytes as the numpy
   quantizers on random values with edge cases (zero blocks, ties, subnormals, overflow), and
   lmkit's dequantizers of F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K give the same f32 bits as
   numpy on random blocks in a GGUF file this test writes with its own writer;
2. export: `lmkit export --format gguf --type f32` of a gpt2 and a llama model holds every
   tensor bit for bit as the Hugging Face safetensors (GPT-2's Conv1D transposed; llama's q and
   k rows permuted as convert_hf_to_gguf's LlamaModel.permute), the config keys, and the
   tokenizer (tokens in id order, token types, merges, bos/eos) as tokenizer.json has them;
   a q8_0 / q4_0 export holds the numpy quantization of those tensors, byte for byte;
3. import: a GGUF loaded and exported again as f32 gives the same file (f32) or the numpy
   dequantization (q8_0, q4_0).
Env: LMKIT_BIN (the build dir: lmkit, ref_gguf)."""
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np

from refutil import BIN, Tally, read_safetensors

LMKIT = os.path.join(BIN, "lmkit")
DRIVER = os.path.join(BIN, "ref_gguf")
F32 = np.float32
T = Tally()

# ------------------------------------------------------------------ a GGUF reader and writer (docs/gguf.md)
SCALAR = {0: "<u1", 1: "<i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4", 6: "<f4", 7: "<u1", 10: "<u8", 11: "<i8", 12: "<f8"}
BLOCK = {0: (1, 4), 1: (1, 2), 30: (1, 2), 8: (32, 34), 2: (32, 18), 12: (256, 144), 13: (256, 176), 14: (256, 210)}


def read_gguf(path):
    b = open(path, "rb").read()
    pos = 0

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from(fmt, b, pos)
        pos += struct.calcsize(fmt)
        return v[0]

    def string():
        nonlocal pos
        n = take("<Q")
        s = b[pos:pos + n].decode("utf-8", "surrogateescape")
        pos += n
        return s

    def value(t):
        nonlocal pos
        if t == 8:
            return string()
        if t == 9:
            et, n = take("<I"), take("<Q")
            return [value(et) for _ in range(n)]
        dt = np.dtype(SCALAR[t])
        v = np.frombuffer(b, dt, 1, pos)[0].item()
        pos += dt.itemsize
        return bool(v) if t == 7 else v

    assert b[:4] == b"GGUF"
    pos = 4
    version, nt, nkv = take("<I"), take("<Q"), take("<Q")
    kv, types = {}, {}
    for _ in range(nkv):
        k = string()
        t = take("<I")
        types[k] = t
        kv[k] = value(t)
    align = kv.get("general.alignment", 32)
    infos = []
    for _ in range(nt):
        name = string()
        nd = take("<I")
        ne = [take("<Q") for _ in range(nd)]
        infos.append((name, ne, take("<I"), take("<Q")))
    data = pos + (-pos % align)
    tensors = {}
    for name, ne, t, off in infos:
        el, by = BLOCK[t]
        n = int(np.prod(ne))
        tensors[name] = (ne, t, b[data + off:data + off + n // el * by])
    return version, kv, types, tensors


def gstr(s):
    s = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(s)) + s


def write_gguf(path, tensors, align=32):
    """tensors: [(name, ne, type, raw bytes)]; one key, general.alignment (u32)"""
    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), 1)
    out += gstr("general.alignment") + struct.pack("<II", 4, align)
    off = 0
    for name, ne, t, raw in tensors:
        out += gstr(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", x) for x in ne) + struct.pack("<IQ", t, off)
        off += len(raw) + (-len(raw) % align)
    out += b"\0" * (-len(out) % align)
    for _, _, _, raw in tensors:
        out += raw + b"\0" * (-len(raw) % align)
    open(path, "wb").write(out)


# ------------------------------------------------------------------ ggml's blocks in numpy
def f16_bytes(x):
    return np.asarray(x, F32).astype("<f2").view(np.uint8).reshape(-1, 2)


def f16_at(b):
    return np.ascontiguousarray(b).view("<f2").reshape(-1).astype(F32)


def roundf(v):   # C's roundf: half away from zero
    return np.sign(v) * np.floor(np.abs(v.astype(np.float64)) + 0.5)


def quant_q8_0(x):
    x = x.reshape(-1, 32).astype(F32)
    d = (np.abs(x).max(1) / F32(127)).astype(F32)
    inv = np.where(d != 0, F32(1) / np.where(d != 0, d, F32(1)), F32(0)).astype(F32)
    q = roundf((x * inv[:, None]).astype(F32)).astype(np.int8)
    return np.concatenate([f16_bytes(d), q.view(np.uint8)], 1).tobytes()


def quant_q4_0(x):
    x = x.reshape(-1, 32).astype(F32)
    mx = x[np.arange(len(x)), np.abs(x).argmax(1)]
    d = (mx / F32(-8)).astype(F32)
    inv = np.where(d != 0, F32(1) / np.where(d != 0, d, F32(1)), F32(0)).astype(F32)
    v = ((x * inv[:, None]).astype(F32) + F32(8.5)).astype(F32)
    q = np.minimum(np.trunc(v).astype(np.int64), 15).astype(np.uint8)
    return np.concatenate([f16_bytes(d), q[:, :16] | (q[:, 16:] << 4)], 1).tobytes()


def quant_bf16(x):
    u = np.asarray(x, F32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype("<u2").tobytes()


def deq_q8_0(b):
    b = np.frombuffer(b, np.uint8).reshape(-1, 34)
    return (b[:, 2:].view(np.int8).astype(F32) * f16_at(b[:, :2])[:, None]).reshape(-1)


def deq_q4_0(b):
    b = np.frombuffer(b, np.uint8).reshape(-1, 18)
    d, q = f16_at(b[:, :2])[:, None], b[:, 2:].astype(np.int64)
    return np.concatenate([((q & 15) - 8).astype(F32) * d, ((q >> 4) - 8).astype(F32) * d], 1).reshape(-1)


def scale_min_k4(j, q):
    q = q.astype(np.int64)
    if j < 4:
        return (q[:, j] & 63).astype(F32), (q[:, j + 4] & 63).astype(F32)
    return ((q[:, j + 4] & 0xF) | ((q[:, j - 4] >> 6) << 4)).astype(F32), ((q[:, j + 4] >> 4) | ((q[:, j] >> 6) << 4)).astype(F32)


def deq_k(b, five):
    b = np.frombuffer(b, np.uint8).reshape(-1, 176 if five else 144)
    d, dmin, sc = f16_at(b[:, 0:2]), f16_at(b[:, 2:4]), b[:, 4:16]
    qh = b[:, 16:48].astype(np.int64) if five else None
    qs = b[:, 48:176] if five else b[:, 16:144]
    y = np.zeros((len(b), 256), F32)
    for i in range(4):
        q = qs[:, 32 * i:32 * i + 32].astype(np.int64)
        for half, nib in ((0, q & 15), (1, q >> 4)):
            s, m = scale_min_k4(2 * i + half, sc)
            hi = np.where(qh & (1 << (2 * i + half)), 16, 0) if five else 0
            y[:, 64 * i + 32 * half:64 * i + 32 * half + 32] = (d * s)[:, None] * (nib + hi).astype(F32) - (dmin * m)[:, None]
    return y.reshape(-1)


def deq_q6_k(b):
    b = np.frombuffer(b, np.uint8).reshape(-1, 210)
    d = f16_at(b[:, 208:210])
    y = np.zeros((len(b), 256), F32)
    l = np.arange(32)
    for n in range(2):
        ql = b[:, 64 * n:64 * n + 64].astype(np.int64)
        qh = b[:, 128 + 32 * n:160 + 32 * n].astype(np.int64)
        sc = b[:, 192 + 8 * n:200 + 8 * n].view(np.int8).astype(F32)
        parts = [(ql[:, l] & 15) | (((qh[:, l] >> 0) & 3) << 4), (ql[:, l + 32] & 15) | (((qh[:, l] >> 2) & 3) << 4),
                 (ql[:, l] >> 4) | (((qh[:, l] >> 4) & 3) << 4), (ql[:, l + 32] >> 4) | (((qh[:, l] >> 6) & 3) << 4)]
        for k, q in enumerate(parts):
            y[:, 128 * n + 32 * k + l] = (d[:, None] * sc[:, l // 16 + 2 * k]) * (q - 32).astype(F32)
    return y.reshape(-1)


DEQ = {8: deq_q8_0, 2: deq_q4_0, 12: lambda b: deq_k(b, False), 13: lambda b: deq_k(b, True), 14: deq_q6_k,
       1: lambda b: np.frombuffer(b, "<f2").astype(F32), 30: lambda b: (np.frombuffer(b, "<u2").astype(np.uint32) << 16).view(F32),
       0: lambda b: np.frombuffer(b, "<f4")}
QUANT = {"q8_0": quant_q8_0, "q4_0": quant_q4_0, "f16": lambda x: np.asarray(x, F32).astype("<f2").tobytes(), "bf16": quant_bf16}
TYPE_ID = {"f32": 0, "f16": 1, "q8_0": 8, "q4_0": 2}


def same_bits(a, b):
    a, b = np.asarray(a, F32), np.asarray(b, F32)
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


def run(*args):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True)


# ------------------------------------------------------------------ 1. blocks
def test_blocks(tmp):
    rng = np.random.default_rng(12)
    x = rng.standard_normal(32 * 400).astype(F32) * F32(3)
    x[:32] = 0                                               # a zero block
    x[32:64] = np.arange(32, dtype=F32) - 16                 # ties and a negative extreme
    x[64:96] *= F32(1e-6)                                    # f16 subnormal scales
    x[96:128] = np.linspace(-1, 1, 32, dtype=F32) * F32(7e4)  # past f16's range
    x[128:160] = rng.integers(-127, 128, 32).astype(F32) * F32(0.125)   # exact halves
    x[160:192] = F32(1e-30)                                  # flushes to zero in f16
    x[192:224] = -np.abs(x[192:224])                         # all negative
    np.asarray(x).tofile(os.path.join(tmp, "x.f32"))
    for name, ref in QUANT.items():
        r = run(DRIVER, "quant", name, os.path.join(tmp, "x.f32"), os.path.join(tmp, "q.bin"))
        got = open(os.path.join(tmp, "q.bin"), "rb").read() if r.returncode == 0 else b""
        want = ref(x)
        T.check(got == want, f"quantize {name}: lmkit's bytes differ from the numpy reference ({r.stderr.strip()})")
        print(f"{'ok  ' if got == want else 'FAIL'} quantize {name}: {len(want)} bytes, identical to numpy")
    # dequantization: random blocks of each type in a GGUF written here
    tensors = []
    nb = 64

    def f16_scales(n):   # finite f16 scales, with zeros and subnormals among them
        s = rng.standard_normal(n).astype(np.float16)
        s[:3] = [0, np.float16(3e-6), np.float16(-6e-8)]
        return s.view(np.uint8).reshape(n, 2)

    for t, (el, by) in BLOCK.items():
        if el == 1:
            raw = rng.integers(0, 256, nb * 32 * by, dtype=np.uint8)
            if t == 1:   # f16: no NaNs (their payload is not the point); infinities stay
                raw = raw.view("<u2").copy()
                raw[(raw & 0x7C00) == 0x7C00] &= 0xFC00
                raw = raw.view(np.uint8)
            tensors.append((f"t{t}", [32, nb], t, raw.tobytes()))
            continue
        raw = rng.integers(0, 256, (nb, by), dtype=np.uint8)
        if t in (8, 2):
            raw[:, 0:2] = f16_scales(nb)
        elif t in (12, 13):
            raw[:, 0:2], raw[:, 2:4] = f16_scales(nb), f16_scales(nb)
        else:
            raw[:, 208:210] = f16_scales(nb)
        tensors.append((f"t{t}", [el * 2, nb // 2], t, raw.tobytes()))
    path = os.path.join(tmp, "blocks.gguf")
    write_gguf(path, tensors)
    r = run(DRIVER, "dequant", path, os.path.join(tmp, "y.f32"))
    T.check(r.returncode == 0, f"ref_gguf dequant: {r.stderr.strip()}")
    y = np.fromfile(os.path.join(tmp, "y.f32"), F32) if r.returncode == 0 else np.zeros(0, F32)
    k = 0
    names = {0: "F32", 1: "F16", 30: "BF16", 8: "Q8_0", 2: "Q4_0", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K"}
    for name, ne, t, raw in tensors:
        want = DEQ[t](raw)
        got = y[k:k + len(want)]
        k += len(want)
        ok = same_bits(got, want)
        T.check(ok, f"dequantize {names[t]}: differs from numpy (max diff {np.nanmax(np.abs(got - want)) if len(got) == len(want) else 'size'})")
        print(f"{'ok  ' if ok else 'FAIL'} dequantize {names[t]}: {len(want)} values, same bits as numpy")


# ------------------------------------------------------------------ 2-3. models
def permute(w, n_head):   # convert_hf_to_gguf.py, LlamaModel.permute
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def expected_tensors(d):
    """the GGUF tensors (name -> row-major array) an f32 export of HF directory d must hold"""
    cfg = json.load(open(os.path.join(d, "config.json")))
    st = read_safetensors(os.path.join(d, "model.safetensors"))
    out = {}
    if cfg["model_type"] == "gpt2":
        m = {"wte": "token_embd", "wpe": "position_embd", "ln_f": "output_norm", "ln_1": "attn_norm", "attn.c_attn": "attn_qkv",
             "attn.c_proj": "attn_output", "ln_2": "ffn_norm", "mlp.c_fc": "ffn_up", "mlp.c_proj": "ffn_down"}
        for name, w in st.items():
            n = name[len("transformer."):]
            parts = n.split(".")
            if parts[0] == "h":
                mod, suf = ".".join(parts[2:-1]), parts[-1]
                g = f"blk.{parts[1]}.{m[mod]}.{suf}"
            else:
                g = f"{m['.'.join(parts[:-1])]}.{parts[-1]}"
            out[g] = w.T.copy() if w.ndim == 2 and parts[0] == "h" else w
        return cfg, out
    m = {"embed_tokens": "token_embd", "norm": "output_norm", "input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q",
         "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
         "post_attention_layernorm": "ffn_norm", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
    for name, w in st.items():
        if name == "lm_head.weight":
            out["output.weight"] = w
            continue
        parts = name[len("model."):].split(".")
        if parts[0] == "layers":
            mod = ".".join(parts[2:-1])
            g = f"blk.{parts[1]}.{m[mod]}.{parts[-1]}"
            if mod == "self_attn.q_proj":
                w = permute(w, cfg["num_attention_heads"])
            if mod == "self_attn.k_proj":
                w = permute(w, cfg["num_key_value_heads"])
        else:
            g = f"{m['.'.join(parts[:-1])]}.{parts[-1]}"
        out[g] = w
    return cfg, out


def test_model(tmp, d, arch):
    cfg, want = expected_tensors(d)
    f32 = os.path.join(tmp, f"{arch}-f32.gguf")
    r = run(LMKIT, "export", "--format", "gguf", "--type", "f32", "--model", d, "--out", f32, "--quiet")
    if not T.check(r.returncode == 0, f"{arch}: export f32: {r.stderr.strip()}"):
        return
    version, kv, types, tensors = read_gguf(f32)
    T.check(version == 3, f"{arch}: version {version}")
    T.check(set(tensors) == set(want), f"{arch}: tensor names {sorted(set(tensors) ^ set(want))}")
    bad = [n for n in want if n in tensors and not (tensors[n][1] == 0 and tensors[n][0] == list(want[n].shape[::-1])
                                                   and tensors[n][2] == want[n].astype("<f4").tobytes())]
    T.check(not bad, f"{arch}: f32 tensors differ from the safetensors: {bad}")
    print(f"{'ok  ' if not bad else 'FAIL'} {arch}: f32 export holds all {len(want)} tensors bit for bit (q/k permuted, Conv1D transposed)")
    # config keys
    A = kv.get("general.architecture")
    keys = {"gpt2": {"context_length": "n_positions", "embedding_length": "n_embd", "block_count": "n_layer",
                     "attention.head_count": "n_head"},
            "llama": {"context_length": "max_position_embeddings", "embedding_length": "hidden_size", "block_count": "num_hidden_layers",
                      "attention.head_count": "num_attention_heads", "attention.head_count_kv": "num_key_value_heads",
                      "feed_forward_length": "intermediate_size"}}[cfg["model_type"]]
    T.check(A == cfg["model_type"], f"{arch}: general.architecture {A}")
    for k, c in keys.items():
        T.check(kv.get(f"{A}.{k}") == cfg[c] and types[f"{A}.{k}"] == 4, f"{arch}: {A}.{k} = {kv.get(f'{A}.{k}')} vs {c} = {cfg[c]}")
    if A == "llama":
        T.check(kv["llama.rope.freq_base"] == cfg["rope_theta"], "llama.rope.freq_base")
        T.check(np.float32(kv["llama.attention.layer_norm_rms_epsilon"]) == np.float32(cfg["rms_norm_eps"]), "rms eps")
        T.check(kv["llama.rope.dimension_count"] == cfg["hidden_size"] // cfg["num_attention_heads"], "rope.dimension_count")
    # the tokenizer, as tokenizer.json has it
    tj = json.load(open(os.path.join(d, "tokenizer.json")))
    inv = {i: s for s, i in tj["model"]["vocab"].items()}
    special = {a["id"] for a in tj["added_tokens"] if a.get("special")}
    T.check(kv["tokenizer.ggml.model"] == "gpt2" and kv["tokenizer.ggml.pre"] == "gpt-2", "tokenizer.ggml.model / pre")
    T.check(kv["tokenizer.ggml.tokens"] == [inv[i] for i in range(len(inv))], f"{arch}: tokenizer.ggml.tokens differ from tokenizer.json")
    T.check(kv["tokenizer.ggml.token_type"] == [3 if i in special else 1 for i in range(len(inv))], f"{arch}: token_type")
    T.check(kv["tokenizer.ggml.merges"] == tj["model"]["merges"], f"{arch}: merges")
    T.check(kv.get("tokenizer.ggml.eos_token_id") == cfg.get("eos_token_id", 50256 if A == "gpt2" else None)
            or A == "gpt2", f"{arch}: eos id")
    T.check(kv["tokenizer.ggml.add_bos_token"] is False, "add_bos_token")
    print(f"ok   {arch}: config keys and tokenizer ({len(inv)} tokens, {len(tj['model']['merges'])} merges) as config.json / tokenizer.json")
    # import: the f32 file loads and exports to the same bytes
    again = os.path.join(tmp, f"{arch}-again.gguf")
    r = run(LMKIT, "export", "--format", "gguf", "--type", "f32", "--model", f32, "--out", again, "--quiet")
    same = r.returncode == 0 and open(again, "rb").read() == open(f32, "rb").read()
    T.check(same, f"{arch}: GGUF f32 -> lmkit -> GGUF f32 is not the same file ({r.stderr.strip()})")
    print(f"{'ok  ' if same else 'FAIL'} {arch}: import + export of the f32 file gives the same {os.path.getsize(f32)} bytes")
    # quantized exports: numpy's blocks; their import dequantizes as numpy does
    for q in ("q8_0", "q4_0"):
        path = os.path.join(tmp, f"{arch}-{q}.gguf")
        r = run(LMKIT, "quantize", "--type", q, d, path, "--quiet")
        if not T.check(r.returncode == 0, f"{arch}: quantize {q}: {r.stderr.strip()}"):
            continue
        _, qkv, _, qt = read_gguf(path)
        bad = []
        for n, w in want.items():
            quantized = w.ndim == 2 and w.shape[1] % 32 == 0
            wt = TYPE_ID[q] if quantized else 0
            blob = QUANT[q](w) if quantized else w.astype("<f4").tobytes()
            if qt[n][1] != wt or qt[n][2] != blob:
                bad.append(n)
        T.check(not bad, f"{arch}: {q} blocks differ from numpy: {bad}")
        T.check(qkv["general.file_type"] == {"q8_0": 7, "q4_0": 2}[q], f"{arch}: general.file_type of {q}")
        back = os.path.join(tmp, f"{arch}-{q}-f32.gguf")
        r = run(LMKIT, "export", "--format", "gguf", "--type", "f32", "--model", path, "--out", back, "--quiet")
        _, _, _, bt = read_gguf(back) if r.returncode == 0 else (0, 0, 0, {})
        bad2 = [n for n in want if n not in bt or not same_bits(DEQ[0](bt[n][2]), DEQ[qt[n][1]](qt[n][2]))]
        T.check(r.returncode == 0 and not bad2, f"{arch}: {q} -> f32 is not numpy's dequantization: {bad2} {r.stderr.strip()}")
        print(f"{'ok  ' if not bad and not bad2 else 'FAIL'} {arch}: {q}: every block equals numpy's; loading it dequantizes as numpy")


def main():
    np.seterr(all="ignore")   # random blocks hold infinities and NaNs on purpose
    with tempfile.TemporaryDirectory() as tmp:
        test_blocks(tmp)
        rng = np.random.default_rng(3)
        words = ["sun", "moon", "red", "blue", "cat", "dog", "fish", "tree", "é", "日本"]
        with open(os.path.join(tmp, "corpus.txt"), "w") as f:
            for _ in range(1500):
                f.write(" ".join(rng.choice(words, rng.integers(2, 6))) + "\n")
        r = run(LMKIT, "tokenizer", "train", "--data", os.path.join(tmp, "corpus.txt"), "--vocab-size", "300", "--special",
                "<|endoftext|>", "--special", "<|im_start|>", "--special", "<|im_end|>", "--out", os.path.join(tmp, "tok"))
        T.check(r.returncode == 0, "tokenizer train: " + r.stderr)
        for arch, extra in (("gpt2", []), ("llama", ["--arch", "llama", "--kv-heads", "2"])):
            d = os.path.join(tmp, arch)
            r = run(LMKIT, "train", *extra, "--tokenizer", os.path.join(tmp, "tok"), "--data", os.path.join(tmp, "corpus.txt"),
                    "--layers", "2", "--heads", "4", "--dim", "64", "--context", "32", "--batch", "4", "--steps", "3",
                    "--threads", "1", "--quiet", "--out", d)
            if T.check(r.returncode == 0, f"train {arch}: {r.stderr}"):
                test_model(tmp, d, arch)
    T.finish()


if __name__ == "__main__":
    main()
