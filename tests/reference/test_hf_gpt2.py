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
D. task heads: directories written as GPT2ForSequenceClassification
   ("transformer." prefix, score.weight (L,C) without bias, id2label,
   pad_token_id), as the same class with num_labels 1 (the scalar head), and
   as GPT2ForTokenClassification (classifier.weight/.bias) must load and give
   the HF-convention outputs on right-padded batches (sequence classes pooled
   at the last non-pad token, with and without an attention mask); lmkit's save
   of each must write exactly HF's tensor names and shapes and config
   architectures; a GPT2LMHeadModel checkpoint loaded for classification
   (lm_model_load_head) ignores lm_head and initialises score; an unknown
   architectures class is an error listing the supported ones.

Drivers: ref_logits (tests/reference/ref_logits.c), ref_heads (ref_heads.c)."""
import json
import math
import os
import struct
import subprocess
import tempfile

import numpy as np
import torch

from refutil import BIN, DTYPES, Checker, rel_err, write_safetensors

REF = os.path.join(BIN, "ref_logits")
REF_HEADS = os.path.join(BIN, "ref_heads")
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


def hf_gpt2_hidden(P, cfg, ids, attention_mask=None):
    """Batched GPT2Model: ids (B,T), attention_mask (B,T) of 0/1 or None -> last hidden state (B,T,C)
    (after ln_f). Padding keys are hidden from every query, as HF's additive mask does."""
    C, NH, L = cfg["n_embd"], cfg["n_head"], cfg["n_layer"]
    eps = cfg.get("layer_norm_epsilon", 1e-5)
    hs = C // NH
    ids = torch.as_tensor(ids, dtype=torch.long)
    B, T = ids.shape

    def ln(x, pre):
        return torch.nn.functional.layer_norm(x, (C,), P[pre + ".weight"], P[pre + ".bias"], eps)

    def conv1d(x, pre):
        return x @ P[pre + ".weight"] + P[pre + ".bias"]

    x = P["wte.weight"][ids] + P["wpe.weight"][:T]
    allowed = torch.tril(torch.ones(T, T, dtype=torch.bool)).view(1, 1, T, T)
    if attention_mask is not None:
        allowed = allowed & torch.as_tensor(attention_mask).bool().view(B, 1, 1, T)
    for l in range(L):
        h = f"h.{l}"
        q, k, v = conv1d(ln(x, h + ".ln_1"), h + ".attn.c_attn").split(C, dim=-1)
        q, k, v = (t.view(B, T, NH, hs).transpose(1, 2) for t in (q, k, v))
        sc = (q @ k.transpose(-1, -2)) / math.sqrt(hs)
        sc = sc.masked_fill(~allowed, float("-inf"))
        y = (torch.softmax(sc, -1) @ v).transpose(1, 2).reshape(B, T, C)
        x = x + conv1d(y, h + ".attn.c_proj")
        x = x + conv1d(gelu_new(conv1d(ln(x, h + ".ln_2"), h + ".mlp.c_fc")), h + ".mlp.c_proj")
    return ln(x, "ln_f")


def hf_last_non_pad(ids, pad):
    """GPT2ForSequenceClassification's pooled position: the last token that is not pad_token_id."""
    ids = torch.as_tensor(ids, dtype=torch.long)
    return (torch.arange(ids.shape[1]) * (ids != pad)).argmax(-1)


def hf_seq_logits(P, cfg, ids, attention_mask=None):
    """GPT2ForSequenceClassification: score (no bias) on every token, then the last non-pad one."""
    logits = hf_gpt2_hidden(P, cfg, ids, attention_mask) @ P["score.weight"].T    # (B,T,L)
    return logits[torch.arange(logits.shape[0]), hf_last_non_pad(ids, cfg["pad_token_id"])]


def hf_tok_logits(P, cfg, ids, attention_mask=None):
    """GPT2ForTokenClassification: classifier (with bias) on every token."""
    return hf_gpt2_hidden(P, cfg, ids, attention_mask) @ P["classifier.weight"].T + P["classifier.bias"]


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

        # ---------------------------------------------------------------- D: task heads
        heads_part(chk, root)
    chk.finish()


# ------------------------------------------------------------------ D: task heads
def run_heads(d, ids, mask=None, save=None, head=None, labels=0, seed=0):
    """ref_heads on (B,T) ids: returns (output as float64 numpy, stdout lines) or (None, error)."""
    ids = np.asarray(ids, dtype="<i4")
    B, T = ids.shape
    tag = os.path.basename(d.rstrip("/"))
    work = os.path.dirname(d.rstrip("/"))
    idp, outp, mp = (os.path.join(work, f"{tag}_{x}") for x in ("ids.bin", "out.bin", "mask.bin"))
    ids.tofile(idp)
    args = [REF_HEADS, d, idp, B, T, outp]
    if mask is not None:
        np.asarray(mask, dtype=np.uint8).tofile(mp)
        args += ["--mask", mp]
    if head:
        args += ["--head", head, "--labels", labels, "--seed", seed]
    if save:
        args += ["--save", save]
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        return None, r.stderr.strip()
    return np.fromfile(outp, dtype="<f4").astype(np.float64), r.stdout.split("\n")


def padded_batch(V, pad, lens, T, seed):
    """Right-padded ids (real tokens never equal pad) and the attention mask."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, V - 1, (len(lens), T), generator=g)
    ids[ids >= pad] += 1
    mask = torch.zeros(len(lens), T, dtype=torch.long)
    for b, n in enumerate(lens):
        mask[b, :n] = 1
    ids[mask == 0] = pad
    return ids, mask


def head_config(arch, labels, pad, **extra):
    """config.json as save_pretrained writes it for a GPT-2 task class (keys of the hub config)."""
    cfg = dict(HUB_CONFIG, architectures=[arch], pad_token_id=pad,
               id2label={str(i): n for i, n in enumerate(labels)}, label2id={n: i for i, n in enumerate(labels)})
    cfg.update(extra)
    return cfg


def expected_names(cfg, P, head):
    """The state_dict of a GPT-2 task class: transformer.* and the head's tensors (name -> shape)."""
    out = {"transformer." + k: tuple(v.shape) for k, v in P.items() if k != "lm_head.weight"}
    out.update({k: tuple(v.shape) for k, v in head.items()})
    return out


def heads_part(chk, root):
    def fail(label, why):
        chk.check(f"{label}: {why}", float("inf"))

    V, C, pad, T = HUB_CONFIG["vocab_size"], HUB_CONFIG["n_embd"], 100, 16
    lens = (16, 11, 6, 1)
    ids, mask = padded_batch(V, pad, lens, T, seed=21)
    B = len(lens)
    g = torch.Generator().manual_seed(22)
    cases = [
        # label, class, label names, head tensors (HF names), reference, extra config, checkpoint kwargs
        ("GPT2ForSequenceClassification 3 labels", "GPT2ForSequenceClassification", ["negative", "neutral", "positive"],
         {"score.weight": torch.randn(3, C, generator=g) * 0.5}, hf_seq_logits, {}, {}),
        ("GPT2ForSequenceClassification, old layout with BOOL attn.bias buffers", "GPT2ForSequenceClassification",
         ["no", "yes"], {"score.weight": torch.randn(2, C, generator=g) * 0.5}, hf_seq_logits,
         {"problem_type": "single_label_classification"}, dict(buffers="BOOL")),
        ("GPT2ForSequenceClassification num_labels 1 (scalar head)", "GPT2ForSequenceClassification", ["LABEL_0"],
         {"score.weight": torch.randn(1, C, generator=g) * 0.5}, hf_seq_logits, {"problem_type": "regression"}, {}),
        ("GPT2ForTokenClassification 5 labels", "GPT2ForTokenClassification", ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"],
         {"classifier.weight": torch.randn(5, C, generator=g) * 0.5, "classifier.bias": torch.randn(5, generator=g) * 0.3},
         hf_tok_logits, {}, {}),
    ]
    for i, (label, arch, names, head, ref_fn, extra_cfg, kw) in enumerate(cases):
        cfg = head_config(arch, names, pad, **extra_cfg)
        P = random_gpt2(cfg, seed=60 + i)
        d = os.path.join(root, f"d{i}")
        write_checkpoint(d, cfg, P, prefix="transformer.", extra=[(k, v, "F32") for k, v in head.items()], **kw)
        PH = dict(rounded(P, "F32"), **rounded(head, "F32"))
        ref = ref_fn(PH, cfg, ids, mask).numpy()
        want_head = {"GPT2ForSequenceClassification": "scalar" if len(names) == 1 else "classify",
                     "GPT2ForTokenClassification": "tokens"}[arch]
        saved = os.path.join(root, f"d{i}_saved")
        got, out = run_heads(d, ids, mask, save=saved)
        if got is None:
            fail(f"D {label}: load + forward", out)
            continue
        info = out[0].split()
        chk.check(f"D {label}: loads as the {want_head} head with {len(names)} labels, pad {pad} [{out[0]}]",
                  0.0 if info[1] == want_head and int(info[3]) == len(names) and int(info[5]) == pad else 1.0)
        got = got.reshape(ref.shape)
        chk.check(f"D {label}: output {tuple(ref.shape)} on a right-padded batch with the attention mask", rel_err(got, ref))
        if want_head != "tokens":
            pool = [int(x) for x in out[1].split()[1:]]
            want = hf_last_non_pad(ids, pad).tolist()
            chk.check(f"D {label}: pooled at the last non-pad token {pool} (HF {want})", 0.0 if pool == want else 1.0)
            nomask, out2 = run_heads(d, ids, None)
            if nomask is None:
                fail(f"D {label}: forward without a mask", out2)
            else:
                chk.check(f"D {label}: without a mask (pooled by ids != pad_token_id) as HF", rel_err(nomask.reshape(ref.shape), ref))
        else:
            real = mask.bool().numpy()
            chk.check(f"D {label}: real tokens' outputs", rel_err(got[real], ref[real]))
        # lmkit -> HF: the saved directory
        scfg = json.load(open(os.path.join(saved, "config.json")))
        bad = []
        for k, v in (("architectures", [arch]), ("model_type", "gpt2"), ("pad_token_id", pad)):
            if scfg.get(k) != v:
                bad.append(f"{k}={scfg.get(k, '<missing>')!r} (want {v!r})")
        id2 = scfg.get("id2label")
        if not isinstance(id2, dict) or sorted(id2) != [str(j) for j in range(len(names))]:
            bad.append(f"id2label {id2!r} does not have {len(names)} labels")
        l2i = scfg.get("label2id")
        if isinstance(id2, dict) and l2i != {v: int(k) for k, v in id2.items()}:
            bad.append(f"label2id {l2i!r} is not the inverse of id2label")
        chk.check(f"D {label}: saved config.json: architectures, pad_token_id, id2label/label2id"
                  + (f" [{'; '.join(bad)}]" if bad else ""), 0.0 if not bad else 1.0)
        if isinstance(id2, dict) and [id2.get(str(j)) for j in range(len(names))] != names:
            print(f"     (note: the label names {names} were saved as {[id2.get(str(j)) for j in range(len(names))]};"
                  " lm_config keeps only num_labels)")
        Tn, meta, problems = read_safetensors_strict(os.path.join(saved, "model.safetensors"))
        expect = expected_names(cfg, P, head)
        names_bad = [f"missing {k}" for k in expect if k not in Tn]
        names_bad += [f"unexpected {k}" for k in Tn if k not in expect]
        names_bad += [f"{k} shape {tuple(Tn[k].shape)} != {s_}" for k, s_ in expect.items() if k in Tn and tuple(Tn[k].shape) != s_]
        names_bad += problems
        if (meta or {}).get("format") != "pt":
            names_bad.append(f"__metadata__ {meta!r} lacks format=pt")
        chk.check(f"D {label}: saved model.safetensors holds exactly {arch}'s {len(expect)} tensor names and shapes"
                  + (f" [{'; '.join(names_bad[:6])}]" if names_bad else ""), 0.0 if not names_bad else 1.0)
        if not names_bad:
            src = {**{"transformer." + k: v for k, v in P.items()}, **head}
            chk.check(f"D {label}: saved tensors equal the loaded ones",
                      max(rel_err(Tn[k], src[k].double().numpy()) for k in expect), tol=0.0)
        again, out3 = run_heads(saved, ids, mask)
        if again is None:
            fail(f"D {label}: reload the saved directory", out3)
        else:
            chk.check(f"D {label}: the saved directory reloads with the same output", rel_err(again.reshape(ref.shape), got), tol=0.0)

    # a GPT2LMHeadModel checkpoint fine-tuned for classification: lm_head ignored, score initialised
    for j, (label, over, kw) in enumerate([
            ("tied, with a copy of lm_head.weight", {}, "copy"),
            ("untied lm_head", {"tie_word_embeddings": False}, None)]):
        cfg = dict(HUB_CONFIG, **over)
        P = random_gpt2(cfg, seed=70 + j)
        d = os.path.join(root, f"e{j}")
        extra = [("lm_head.weight", P["wte.weight"], "F32")] if kw == "copy" else ()
        write_checkpoint(d, cfg, P, prefix="transformer.", extra=extra)
        saved = os.path.join(root, f"e{j}_saved")
        L = 4
        got, out = run_heads(d, ids, mask, save=saved, head="classify", labels=L, seed=9)
        lbl = f"D GPT2LMHeadModel ({label}) loaded for classification"
        if got is None:
            fail(f"{lbl}: lm_model_load_head", out)
            continue
        Tn, _, problems = read_safetensors_strict(os.path.join(saved, "model.safetensors"))
        head_shape = tuple(Tn["score.weight"].shape) if "score.weight" in Tn else None
        base_equal = all(k[12:] in P and rel_err(v, P[k[12:]].double().numpy()) == 0.0
                         for k, v in Tn.items() if k.startswith("transformer."))
        ok = ("lm_head.weight" not in Tn and head_shape == (L, C) and not problems and base_equal
              and len([k for k in Tn if k.startswith("transformer.")]) == len([k for k in P if k != "lm_head.weight"]))
        chk.check(f"{lbl}: saved as transformer.* (unchanged) + score.weight {head_shape}, no lm_head", 0.0 if ok else 1.0)
        if head_shape != (L, C):
            continue
        w = Tn["score.weight"]
        std = float(w.std())
        chk.check(f"{lbl}: score initialised N(0, initializer_range): std {std:.4f}",
                  abs(std - HUB_CONFIG["initializer_range"]) / HUB_CONFIG["initializer_range"], tol=0.25)
        scfg = json.load(open(os.path.join(saved, "config.json")))
        chk.check(f"{lbl}: saved architectures {scfg.get('architectures')}, {len(scfg.get('id2label') or {})} labels",
                  0.0 if scfg.get("architectures") == ["GPT2ForSequenceClassification"] and len(scfg.get("id2label") or {}) == L else 1.0)
        PH = dict(rounded(P, "F32"), **{"score.weight": w})
        ref = hf_seq_logits(PH, dict(cfg, pad_token_id=pad), ids, mask).numpy()
        chk.check(f"{lbl}: output (mask given, no pad_token_id) vs HF-convention forward", rel_err(got.reshape(ref.shape), ref))
        other, _ = run_heads(d, ids, mask, head="classify", labels=L, seed=10)
        chk.check(f"{lbl}: another seed, another score", 0.0 if other is not None and rel_err(other, got) > 1e-3 else 1.0)

    # a sequence classifier re-headed: the same labels keep score, other labels re-initialise it
    d0 = os.path.join(root, "d0")
    same, _ = run_heads(d0, ids, mask, head="classify", labels=0, seed=5)
    orig, _ = run_heads(d0, ids, mask)
    chk.check("D GPT2ForSequenceClassification loaded with its own head and labels keeps score",
              rel_err(same, orig) if same is not None and orig is not None else 1.0, tol=0.0)
    five, out = run_heads(d0, ids, mask, head="classify", labels=5, seed=5)
    ok = five is not None and five.size == B * 5 and out[0].split()[1:4:2] == ["classify", "5"]
    chk.check(f"D GPT2ForSequenceClassification loaded with 5 labels instead of 3: a new score (5,C) [{out[0] if five is not None else out}]",
              0.0 if ok else 1.0)

    # bad task-head directories
    cfg3 = head_config("GPT2ForSequenceClassification", ["a", "b", "c"], pad)
    P = random_gpt2(cfg3, seed=80)
    bad_cases = [
        ("unknown architectures class", dict(cfg3, architectures=["GPT2ForMultipleChoice"]), [],
         ["GPT2ForMultipleChoice", "GPT2LMHeadModel", "GPT2ForSequenceClassification", "GPT2ForTokenClassification"]),
        ("GPT2ForSequenceClassification without score.weight", cfg3, [], ["score.weight", "missing"]),
        ("score.weight (2,C) for 3 labels", cfg3, [("score.weight", torch.zeros(2, C), "F32")], ["score.weight"]),
        ("GPT2ForTokenClassification without classifier.bias", head_config("GPT2ForTokenClassification", ["O", "X"], pad),
         [("classifier.weight", torch.zeros(2, C), "F32")], ["classifier.bias"]),
    ]
    for k, (label, c, extra, needles) in enumerate(bad_cases):
        d = os.path.join(root, f"f{k}")
        write_checkpoint(d, c, P, prefix="transformer.", extra=extra)
        got, err = run_heads(d, ids, mask)
        err = "" if got is not None else err
        ok = err != "" and all(n in err for n in needles)
        chk.check(f"D {label}: load fails naming {needles} [{err or 'LOADED'}]", 0.0 if ok else 1.0)


if __name__ == "__main__":
    main()
