"""Hugging Face GPT-2 interop, proven both ways (DESIGN.md §4), without the
`transformers` package: the HF file layout is written and read here with
struct + json, and GPT-2 is computed in PyTorch (float64) from the HF tensors
with the Conv1D convention (y = x @ W + b, W stored (in, out)).

A. hub -> lmkit: tiny directories laid out exactly as the hub's `gpt2`
   checkpoint (no prefix, attention-mask buffers) and as
   GPT2LMHeadModel.save_pretrained writes them ("transformer." prefix), in
   F32, F16 and BF16; lmkit's logits (full forward and KV-cache session) must
   match the reference to 1e-5 relative.
B. lmkit -> HF: a model lmkit creates and saves must read as transformers
   reads it (config keys, safetensors header rules, tensor names, Conv1D
   shapes) and give lmkit's logits under the HF-convention forward.
C. bad directories (missing tensor, wrong shape, too many layers...) must fail
   to load with a message naming the tensor.

Driver: ref_logits (tests/reference/ref_logits.c)."""
import json
import math
import os
import struct
import subprocess
import tempfile

import numpy as np
import torch

from refutil import BIN, Checker, rel_err

REF = os.path.join(BIN, "ref_logits")
TOL = 1e-5

# The key set of the hub's gpt2/config.json, with tiny sizes.
HUB_CONFIG = {
    "activation_function": "gelu_new",
    "architectures": ["GPT2LMHeadModel"],
    "attn_pdrop": 0.1,
    "bos_token_id": 100,
    "embd_pdrop": 0.1,
    "eos_token_id": 100,
    "initializer_range": 0.02,
    "layer_norm_epsilon": 1e-05,
    "model_type": "gpt2",
    "n_ctx": 24,
    "n_embd": 32,
    "n_head": 4,
    "n_layer": 2,
    "n_positions": 24,
    "resid_pdrop": 0.1,
    "summary_activation": None,
    "summary_first_dropout": 0.1,
    "summary_proj_to_labels": True,
    "summary_type": "cls_index",
    "summary_use_proj": True,
    "task_specific_params": {"text-generation": {"do_sample": True, "max_length": 50}},
    "vocab_size": 101,
}

# ------------------------------------------------------------------ safetensors, by hand
DTYPES = {"F32": (torch.float32, 4), "F16": (torch.float16, 2), "BF16": (torch.bfloat16, 2),
          "BOOL": (torch.bool, 1), "U8": (torch.uint8, 1), "F64": (torch.float64, 8), "I32": (torch.int32, 4)}


def tensor_bytes(t, dtype):
    t = t.detach().to(DTYPES[dtype][0]).contiguous()
    if dtype == "BF16":
        return t.view(torch.int16).numpy().tobytes()
    return t.numpy().tobytes()


def write_safetensors(path, tensors, metadata=None):
    """tensors: list of (name, torch tensor, dtype string). Data in the given order."""
    header, blobs, off = {}, [], 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, t, dt in tensors:
        b = tensor_bytes(t, dt)
        header[name] = {"dtype": dt, "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def read_safetensors_strict(path):
    """Reads as the safetensors library does, returning (tensors as float64 torch, header, problems):
    problems lists every rule of the format (as safetensors enforces it) that the file breaks."""
    data = open(path, "rb").read()
    problems = []
    (n,) = struct.unpack("<Q", data[:8])
    raw = data[8:8 + n]
    if not raw.startswith(b"{"):
        problems.append("header does not start with '{'")
    header = json.loads(raw.decode("utf-8"))
    meta = header.pop("__metadata__", None)
    base = 8 + n
    buf_len = len(data) - base
    spans, out = [], {}
    for name, info in header.items():
        if set(info) != {"dtype", "shape", "data_offsets"}:
            problems.append(f"{name}: keys {sorted(info)}")
        dt = info["dtype"]
        b, e = info["data_offsets"]
        numel = int(np.prod(info["shape"], dtype=np.int64)) if info["shape"] else 1
        if dt not in DTYPES:
            problems.append(f"{name}: dtype {dt}")
            continue
        if e - b != numel * DTYPES[dt][1]:
            problems.append(f"{name}: {e - b} bytes for shape {info['shape']} {dt}")
        spans.append((b, e, name))
        arr = torch.frombuffer(bytearray(data[base + b:base + e]), dtype=DTYPES[dt][0]) if e > b else torch.zeros(0)
        out[name] = arr.reshape(info["shape"]).to(torch.float64)
    # safetensors: offsets, sorted, must tile the buffer exactly (no gaps, no overlaps, no trailing bytes)
    pos = 0
    for b, e, name in sorted(spans):
        if b != pos:
            problems.append(f"{name}: begins at {b}, expected {pos}")
        pos = e
    if pos != buf_len:
        problems.append(f"data ends at {pos}, buffer is {buf_len} bytes")
    return out, meta, problems


# ------------------------------------------------------------------ the reference GPT-2 (HF conventions)
def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


def hf_gpt2_logits(P, cfg, ids):
    """P: HF tensor names without the "transformer." prefix -> float64 tensors (Conv1D weights (in, out))."""
    C, NH, L = cfg["n_embd"], cfg["n_head"], cfg["n_layer"]
    eps = cfg.get("layer_norm_epsilon", 1e-5)
    hs = C // NH
    T = len(ids)
    ids = torch.as_tensor(ids, dtype=torch.long)

    def ln(x, pre):
        mu = x.mean(-1, keepdim=True)
        var = ((x - mu) ** 2).mean(-1, keepdim=True)
        return (x - mu) / torch.sqrt(var + eps) * P[pre + ".weight"] + P[pre + ".bias"]

    def conv1d(x, pre):
        return x @ P[pre + ".weight"] + P[pre + ".bias"]

    x = P["wte.weight"][ids] + P["wpe.weight"][:T]
    causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
    for l in range(L):
        h = f"h.{l}"
        q, k, v = conv1d(ln(x, h + ".ln_1"), h + ".attn.c_attn").split(C, dim=-1)
        q, k, v = (t.view(T, NH, hs).transpose(0, 1) for t in (q, k, v))
        s = (q @ k.transpose(-1, -2)) / math.sqrt(hs)
        s = s.masked_fill(~causal, float("-inf"))
        y = (torch.softmax(s, -1) @ v).transpose(0, 1).reshape(T, C)
        x = x + conv1d(y, h + ".attn.c_proj")
        x = x + conv1d(gelu_new(conv1d(ln(x, h + ".ln_2"), h + ".mlp.c_fc")), h + ".mlp.c_proj")
    x = ln(x, "ln_f")
    tied = cfg.get("tie_word_embeddings", True)
    head = P["wte.weight"] if tied else P["lm_head.weight"]   # nn.Linear: (V, C)
    return (x @ head.T).numpy()


def strip_prefix(T):
    return {(k[12:] if k.startswith("transformer.") else k): v for k, v in T.items()}


# ------------------------------------------------------------------ hub-style checkpoints
def random_gpt2(cfg, seed):
    """GPT2LMHeadModel parameters in HF layout (names without prefix), float32."""
    g = torch.Generator().manual_seed(seed)
    C, L, V, NP = cfg["n_embd"], cfg["n_layer"], cfg["vocab_size"], cfg["n_positions"]
    F = cfg.get("n_inner") or 4 * C

    def rn(*shape, std=0.2):
        return torch.randn(*shape, generator=g) * std

    P = {"wte.weight": rn(V, C, std=0.5), "wpe.weight": rn(NP, C, std=0.3)}
    for l in range(L):
        h = f"h.{l}"
        P[h + ".ln_1.weight"] = 1 + rn(C, std=0.1)
        P[h + ".ln_1.bias"] = rn(C, std=0.1)
        P[h + ".attn.c_attn.weight"] = rn(C, 3 * C)       # Conv1D: (in, out)
        P[h + ".attn.c_attn.bias"] = rn(3 * C, std=0.1)
        P[h + ".attn.c_proj.weight"] = rn(C, C)
        P[h + ".attn.c_proj.bias"] = rn(C, std=0.1)
        P[h + ".ln_2.weight"] = 1 + rn(C, std=0.1)
        P[h + ".ln_2.bias"] = rn(C, std=0.1)
        P[h + ".mlp.c_fc.weight"] = rn(C, F)
        P[h + ".mlp.c_fc.bias"] = rn(F, std=0.1)
        P[h + ".mlp.c_proj.weight"] = rn(F, C)
        P[h + ".mlp.c_proj.bias"] = rn(C, std=0.1)
    P["ln_f.weight"] = 1 + rn(C, std=0.1)
    P["ln_f.bias"] = rn(C, std=0.1)
    if not cfg.get("tie_word_embeddings", True):
        P["lm_head.weight"] = rn(V, C, std=0.5)
    return P


def write_checkpoint(d, cfg, P, dtype="F32", prefix="", buffers=None, extra=(), drop=(), reshape=None):
    """Writes config.json + model.safetensors. buffers: None, or the dtype of the
    h.N.attn.bias (1,1,n_ctx,n_ctx) causal masks (+ "h.N.attn.masked_bias" scalars when
    given as "F32+masked"). extra: more (name, tensor, dtype). drop: names to leave out.
    reshape: {name: tensor} replacing a tensor by one of another shape."""
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
    entries = []
    for name, t in P.items():
        if name in drop:
            continue
        t = (reshape or {}).get(name, t)
        hf = name if name == "lm_head.weight" else prefix + name
        entries.append((hf, t, dtype))
        if buffers and name.endswith(".ln_1.bias"):   # the hub puts the buffers among the layer's tensors
            h = name[: -len(".ln_1.bias")]
            n = cfg["n_ctx"]
            bdt = buffers.split("+")[0]
            entries.append((prefix + h + ".attn.bias", torch.tril(torch.ones(n, n)).view(1, 1, n, n), bdt))
            if buffers.endswith("+masked"):
                entries.append((prefix + h + ".attn.masked_bias", torch.tensor(-1e4), bdt))
    entries.extend(extra)
    entries.sort(key=lambda e: e[0])   # the hub's files list tensors by name
    write_safetensors(os.path.join(d, "model.safetensors"), entries, {"format": "pt"})


def rounded(P, dtype):
    t = DTYPES[dtype][0]
    return {k: v.to(t).to(torch.float64) for k, v in P.items()}


# ------------------------------------------------------------------ running lmkit
def run_ref(args):
    return subprocess.run([REF] + [str(a) for a in args], capture_output=True, text=True, timeout=60)


def lmkit_logits(d, ids, T, V, session=None):
    idp, outp = os.path.join(d, "ids.bin"), os.path.join(d, "out.bin")
    np.asarray(ids, dtype="<i4").tofile(idp)
    args = ([d, idp, outp] if session is None else ["--session", session, d, idp, outp])
    r = run_ref(args)
    if r.returncode != 0:
        return None, r.stderr.strip()
    rows = T if session is None else T - session + 1
    return np.fromfile(outp, dtype="<f4").reshape(rows, V), ""


def main():
    chk = Checker(TOL)

    def fail(label, why):
        chk.check(f"{label}: {why}", float("inf"))

    with tempfile.TemporaryDirectory() as root:
        # ---------------------------------------------------------------- A: hub -> lmkit
        T = HUB_CONFIG["n_ctx"]
        V = HUB_CONFIG["vocab_size"]
        ids = torch.randint(0, V, (T,), generator=torch.Generator().manual_seed(3)).tolist()
        ids[0] = V - 1   # the highest id, too
        variants = [
            # label, config overrides, write_checkpoint kwargs, dtype
            ("hub layout (no prefix, F32 attn.bias buffers)", {}, dict(buffers="F32"), "F32"),
            ("hub layout + attn.masked_bias scalars", {}, dict(buffers="F32+masked"), "F32"),
            ("save_pretrained layout (transformer. prefix, tied, no lm_head)", {}, dict(prefix="transformer."), "F32"),
            ("old save_pretrained (prefix, BOOL buffers, tied lm_head copy)", {},
             dict(prefix="transformer.", buffers="BOOL", extra="lm_head_copy"), "F32"),
            ("untied lm_head (tie_word_embeddings false)", {"tie_word_embeddings": False},
             dict(prefix="transformer."), "F32"),
            ("n_inner 80", {"n_inner": 80}, dict(buffers="F32"), "F32"),
            ("F16 checkpoint (hub layout, F16 buffers)", {"torch_dtype": "float16"}, dict(buffers="F16"), "F16"),
            ("BF16 checkpoint (prefix)", {"torch_dtype": "bfloat16"}, dict(prefix="transformer."), "BF16"),
        ]
        for i, (label, over, kw, dtype) in enumerate(variants):
            cfg = dict(HUB_CONFIG, **over)
            P = random_gpt2(cfg, seed=10 + i)
            if kw.get("extra") == "lm_head_copy":
                kw = dict(kw, extra=[("lm_head.weight", P["wte.weight"], dtype)])
            d = os.path.join(root, f"a{i}")
            write_checkpoint(d, cfg, P, dtype=dtype, **kw)
            ref = hf_gpt2_logits(rounded(P, dtype), cfg, ids)
            got, err = lmkit_logits(d, ids, T, V)
            if got is None:
                fail(f"A {label}: load + forward", err)
                continue
            chk.check(f"A {label}: forward logits ({T}x{V})", rel_err(got, ref))
            if dtype != "F32":   # how far the rounding moved the model (information, not a check)
                print(f"     ({dtype} rounding moves the logits by {rel_err(ref, hf_gpt2_logits(rounded(P, 'F32'), cfg, ids)):.1e} relative)")
            if i in (0, 4, 6):
                for p0 in (1, 7):
                    cached, err = lmkit_logits(d, ids, T, V, session=p0)
                    if cached is None:
                        fail(f"A {label}: session", err)
                        continue
                    what = "token by token" if p0 == 1 else f"prefill {p0} + token by token"
                    chk.check(f"A {label}: KV-cache session {what} vs reference", rel_err(cached, ref[p0 - 1:]))
                    chk.check(f"A {label}: KV-cache session {what} vs lmkit forward", rel_err(cached, got[p0 - 1:]))
        # an old config with n_ctx only (no n_positions)
        cfg = {k: v for k, v in HUB_CONFIG.items() if k != "n_positions"}
        P = random_gpt2(HUB_CONFIG, seed=40)
        d = os.path.join(root, "a_nctx")
        write_checkpoint(d, cfg, P, buffers="F32")
        got, err = lmkit_logits(d, ids, T, V)
        if got is None:
            fail("A config with n_ctx only", err)
        else:
            chk.check("A config with n_ctx only: forward logits", rel_err(got, hf_gpt2_logits(rounded(P, "F32"), HUB_CONFIG, ids)))

        # ---------------------------------------------------------------- B: lmkit -> HF
        for j, (L, NH, C, Vb, NP, inner, tie) in enumerate([(2, 4, 32, 101, 24, 0, 1), (3, 2, 16, 67, 20, 40, 0)]):
            label = f"B lmkit-saved {L}x{C} {'tied' if tie else 'untied'}{', n_inner ' + str(inner) if inner else ''}"
            d = os.path.join(root, f"b{j}")
            Tb = NP
            idsb = torch.randint(0, Vb, (Tb,), generator=torch.Generator().manual_seed(5 + j)).tolist()
            idp, mem = os.path.join(root, f"b{j}_ids.bin"), os.path.join(root, f"b{j}_mem.bin")
            np.asarray(idsb, dtype="<i4").tofile(idp)
            r = run_ref(["--create", d, L, NH, C, Vb, NP, inner, tie, 77 + j, idp, mem])
            if r.returncode != 0:
                fail(label, r.stderr.strip())
                continue
            mem_logits = np.fromfile(mem, dtype="<f4").reshape(Tb, Vb)
            cfg = json.load(open(os.path.join(d, "config.json")))
            # config.json as GPT2Config reads it: these keys decide the model, so they must be
            # present (a default would be silently wrong), with the right JSON types and values
            F = inner or 4 * C
            want = {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "vocab_size": Vb, "n_positions": NP,
                    "n_embd": C, "n_layer": L, "n_head": NH, "activation_function": "gelu_new",
                    "layer_norm_epsilon": 1e-5, "tie_word_embeddings": bool(tie), "scale_attn_weights": True,
                    "scale_attn_by_inverse_layer_idx": False, "reorder_and_upcast_attn": False,
                    "n_inner": inner or None}
            bad = [f"{k}={cfg.get(k, '<missing>')!r} (want {v!r})" for k, v in want.items()
                   if k not in cfg or cfg[k] != v or type(cfg[k]) is not type(v)]
            for k in ("n_ctx", "bos_token_id", "eos_token_id", "initializer_range", "resid_pdrop", "embd_pdrop",
                      "attn_pdrop", "use_cache"):
                if k not in cfg:
                    bad.append(f"{k} missing")
            for k in ("initializer_range", "layer_norm_epsilon", "resid_pdrop", "embd_pdrop", "attn_pdrop"):
                if k in cfg and not isinstance(cfg[k], float):
                    bad.append(f"{k} is {type(cfg[k]).__name__}, GPT2Config writes a float")
            if "lmkit" in cfg:
                bad.append("an 'lmkit' sub-object for a plain GPT-2 config")
            hub_only = sorted(set(HUB_CONFIG) - set(cfg))
            chk.check(f"{label}: config.json keys and values as GPT2Config expects"
                      + (f" [{'; '.join(bad)}]" if bad else ""), 0.0 if not bad else 1.0)
            if hub_only:
                print(f"     (keys the hub config has and lmkit does not write; GPT2Config defaults them: {', '.join(hub_only)})")
            Tn, meta, problems = read_safetensors_strict(os.path.join(d, "model.safetensors"))
            if (meta or {}).get("format") != "pt":
                problems.append(f"__metadata__ {meta!r} lacks format=pt (transformers refuses the file)")
            chk.check(f"{label}: model.safetensors header valid for the safetensors library"
                      + (f" [{'; '.join(problems)}]" if problems else ""), 0.0 if not problems else 1.0)
            # the names and shapes GPT2LMHeadModel's state_dict has (lm_head omitted when tied)
            expect = {"transformer.wte.weight": (Vb, C), "transformer.wpe.weight": (NP, C),
                      "transformer.ln_f.weight": (C,), "transformer.ln_f.bias": (C,)}
            for l in range(L):
                h = f"transformer.h.{l}"
                expect.update({h + ".ln_1.weight": (C,), h + ".ln_1.bias": (C,), h + ".ln_2.weight": (C,),
                               h + ".ln_2.bias": (C,), h + ".attn.c_attn.weight": (C, 3 * C),
                               h + ".attn.c_attn.bias": (3 * C,), h + ".attn.c_proj.weight": (C, C),
                               h + ".attn.c_proj.bias": (C,), h + ".mlp.c_fc.weight": (C, F), h + ".mlp.c_fc.bias": (F,),
                               h + ".mlp.c_proj.weight": (F, C), h + ".mlp.c_proj.bias": (C,)})
            if not tie:
                expect["lm_head.weight"] = (Vb, C)
            names_bad = [f"missing {k}" for k in expect if k not in Tn]
            names_bad += [f"unexpected {k}" for k in Tn if k not in expect]
            names_bad += [f"{k} shape {tuple(Tn[k].shape)} != {s}" for k, s in expect.items()
                          if k in Tn and tuple(Tn[k].shape) != s]
            chk.check(f"{label}: {len(expect)} tensor names and Conv1D (in,out) shapes as GPT2LMHeadModel expects"
                      + (f" [{'; '.join(names_bad[:6])}]" if names_bad else ""), 0.0 if not names_bad else 1.0)
            if names_bad:
                continue
            cfg_hf = dict(cfg, tie_word_embeddings=bool(tie))
            ref = hf_gpt2_logits(strip_prefix(Tn), cfg_hf, idsb)
            chk.check(f"{label}: HF-convention forward on the saved tensors vs lmkit's in-memory logits",
                      rel_err(mem_logits, ref))
            got, err = lmkit_logits(d, idsb, Tb, Vb)
            if got is None:
                fail(f"{label}: reload", err)
            else:
                chk.check(f"{label}: reloaded by lmkit, logits unchanged", rel_err(got, mem_logits), tol=0.0)

        # ---------------------------------------------------------------- C: bad directories
        cfg = dict(HUB_CONFIG)
        P = random_gpt2(cfg, seed=50)
        C = cfg["n_embd"]
        bad_cases = [
            ("missing tensor", cfg, dict(drop=("h.1.mlp.c_fc.bias",)), ["h.1.mlp.c_fc.bias", "missing"]),
            ("missing tensor (prefixed file)", cfg, dict(prefix="transformer.", drop=("ln_f.weight",)), ["ln_f.weight"]),
            ("Conv1D weight saved (out,in) instead of (in,out)", cfg,
             dict(reshape={"h.0.attn.c_attn.weight": P["h.0.attn.c_attn.weight"].T.contiguous()}),
             ["h.0.attn.c_attn.weight", str(3 * C)]),
            ("wpe shorter than n_positions", cfg,
             dict(reshape={"wpe.weight": P["wpe.weight"][:-1]}), ["wpe.weight"]),
            ("config n_layer 3, tensors for 2", dict(cfg, n_layer=3), dict(buffers="F32"), ["h.2."]),
            ("config n_layer 1, tensors for 2", dict(cfg, n_layer=1), dict(buffers="F32"), ["h.1."]),
            ("untied config without lm_head.weight", dict(cfg, tie_word_embeddings=False), dict(), ["lm_head.weight"]),
            ("integer (I32) weight", cfg, dict(extra_int="ln_f.bias"), ["ln_f.bias", "I32"]),
        ]
        for k, (label, c, kw, needles) in enumerate(bad_cases):
            d = os.path.join(root, f"c{k}")
            if "extra_int" in kw:
                name = kw.pop("extra_int")
                kw = dict(kw, drop=(name,), extra=[(name, torch.zeros(C), "I32")])
            write_checkpoint(d, c, P, **kw)
            _, err = lmkit_logits(d, ids, T, V)
            ok = err != "" and all(n in err for n in needles)
            chk.check(f"C {label}: load fails naming {needles} [{err or 'LOADED'}]", 0.0 if ok else 1.0)
    chk.finish()


if __name__ == "__main__":
    main()
