"""The Llama family against PyTorch, through the files real models ship.

For each variant the test writes a tiny Hugging Face directory in exactly the
layout transformers writes (config.json with HF's keys, model.safetensors or
shards + model.safetensors.index.json, f32/f16/bf16), lmkit loads it with the
real loading code (tests/reference/ref_llama.c -> lm_model_load), runs the LM
forward and backward, and the loss, the logits and every gradient must agree
with a PyTorch Llama written from transformers' modeling_llama equations, run
in float64 on the same (rounded) weights, to 1e-5 relative error:
  - RoPE in the rotate-half convention, with rope_theta and Llama 3's
    rope_scaling (inverse frequencies and cos/sin computed in fp32, as
    transformers does);
  - grouped-query attention (num_key_value_heads), SwiGLU, RMSNorm;
  - no biases, or Qwen2's q/k/v biases; tied or untied head;
  - Mistral's sliding window (shorter than the sequence, so it matters).
The KV-cache session's logits are checked against the same reference; lmkit's
own save must write the HF names and shapes back; and bad inputs (a shard the
index names but the directory lacks, a config key of the wrong type, an
unsupported rope_type) must be clear errors.

LoRA: a PEFT adapter the test writes (target_modules q_proj, v_proj, down_proj,
as PEFT names Llama's modules, with random non-zero A and B) loads onto the
fused q|k|v and gate|up matrices part by part; the loss, logits and the
gradient of every A and B agree with PyTorch's W + (alpha/r) B A, and the
merged model computes the same logits."""
import json
import os
import subprocess
import tempfile

import numpy as np
import torch

from refutil import BIN, DTYPES, Checker, dropout_masks, read_safetensors, rel_err, write_safetensors

REF = os.path.join(BIN, "ref_llama")
torch.manual_seed(0)

BASE = dict(vocab=67, dim=48, layers=2, heads=4, kv=4, inner=80, positions=32, theta=10000.0, eps=1e-6,
            tie=False, scaling=None, window=None, model_type="llama", dtype="F32", shards=1, B=2, T=20)
VARIANTS = {
    "llama MHA untied f32": dict(),
    "llama GQA (kv 2), llama3 rope_scaling, tied, bf16": dict(
        kv=2, tie=True, theta=500000.0, dtype="BF16",
        scaling=dict(factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0, original_max_position_embeddings=16,
                     rope_type="llama3")),
    "qwen2 q/k/v biases, GQA (kv 1), f16, 3 shards": dict(model_type="qwen2", kv=1, dtype="F16", shards=3, theta=1e6),
    "mistral GQA, sliding window 7 < T, 2 shards": dict(model_type="mistral", kv=2, window=7, shards=2),
}
CLASSES = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "mistral": "MistralForCausalLM"}
DT = {k: DTYPES[k][0] for k in ("F32", "F16", "BF16")}


# ------------------------------------------------------------------ HF files, by hand (refutil.write_safetensors)
def hf_config(v):
    c = {"architectures": [CLASSES[v["model_type"]]], "model_type": v["model_type"], "vocab_size": v["vocab"],
         "hidden_size": v["dim"], "intermediate_size": v["inner"], "num_hidden_layers": v["layers"],
         "num_attention_heads": v["heads"], "num_key_value_heads": v["kv"], "hidden_act": "silu",
         "max_position_embeddings": v["positions"], "initializer_range": 0.02, "rms_norm_eps": v["eps"],
         "use_cache": True, "tie_word_embeddings": v["tie"], "rope_theta": v["theta"], "attention_dropout": 0.0,
         "bos_token_id": 1, "eos_token_id": [2, 3] if v["model_type"] == "llama" else 2, "torch_dtype": "float32",
         "transformers_version": "4.46.0"}
    if v["model_type"] == "llama":
        c.update(rope_scaling=v["scaling"], attention_bias=False, mlp_bias=False, pretraining_tp=1,
                 head_dim=v["dim"] // v["heads"])
    if v["model_type"] == "mistral":
        c.update(sliding_window=v["window"], head_dim=v["dim"] // v["heads"])
    if v["model_type"] == "qwen2":
        c.update(rope_scaling=None, use_sliding_window=False, sliding_window=4096, max_window_layers=28)
    return c


def random_weights(v, seed):
    g = torch.Generator().manual_seed(seed)
    C, F, V, hs = v["dim"], v["inner"], v["vocab"], v["dim"] // v["heads"]
    KVC = v["kv"] * hs

    def rn(*shape, std=0.15):
        return torch.randn(*shape, generator=g, dtype=torch.float64) * std

    P = {"model.embed_tokens.weight": rn(V, C, std=0.5), "model.norm.weight": 1 + rn(C, std=0.2)}
    for l in range(v["layers"]):
        p = f"model.layers.{l}."
        P[p + "input_layernorm.weight"] = 1 + rn(C, std=0.2)
        P[p + "post_attention_layernorm.weight"] = 1 + rn(C, std=0.2)
        P[p + "self_attn.q_proj.weight"] = rn(C, C)
        P[p + "self_attn.k_proj.weight"] = rn(KVC, C)
        P[p + "self_attn.v_proj.weight"] = rn(KVC, C)
        P[p + "self_attn.o_proj.weight"] = rn(C, C)
        if v["model_type"] == "qwen2":
            for x, n in (("q", C), ("k", KVC), ("v", KVC)):
                P[p + f"self_attn.{x}_proj.bias"] = rn(n, std=0.3)
        P[p + "mlp.gate_proj.weight"] = rn(F, C)
        P[p + "mlp.up_proj.weight"] = rn(F, C)
        P[p + "mlp.down_proj.weight"] = rn(C, F)
    if not v["tie"]:
        P["lm_head.weight"] = rn(V, C, std=0.3)
    return P


def write_dir(d, v, P):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(hf_config(v), f, indent=2, sort_keys=True)
    names = sorted(P)
    if v["shards"] == 1:
        write_safetensors(os.path.join(d, "model.safetensors"), [(n, P[n], v["dtype"]) for n in names], {"format": "pt"})
        return
    k = v["shards"]
    parts = [names[i::k] for i in range(k)]
    wmap = {}
    for i, part in enumerate(parts):
        fn = f"model-{i + 1:05d}-of-{k:05d}.safetensors"
        write_safetensors(os.path.join(d, fn), [(n, P[n], v["dtype"]) for n in part], {"format": "pt"})
        wmap.update({n: fn for n in part})
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": 0}, "weight_map": wmap}, f, indent=2, sort_keys=True)


# ------------------------------------------------------------------ the PyTorch reference
def rope_cos_sin(v, T):
    """transformers' default and llama3 RoPE parameters, in fp32 as it computes them."""
    hs = v["dim"] // v["heads"]
    inv = 1.0 / (v["theta"] ** (torch.arange(0, hs, 2, dtype=torch.int64).float() / hs))
    s = v["scaling"]
    if s:
        factor, lo, hi, old = s["factor"], s["low_freq_factor"], s["high_freq_factor"], s["original_max_position_embeddings"]
        low_wavelen, high_wavelen = old / lo, old / hi
        wavelen = 2 * torch.pi / inv
        inv_l = torch.where(wavelen > low_wavelen, inv / factor, inv)
        smooth = (old / wavelen - lo) / (hi - lo)
        smoothed = (1 - smooth) * inv_l / factor + smooth * inv_l
        medium = ~(wavelen < high_wavelen) * ~(wavelen > low_wavelen)
        inv = torch.where(medium, smoothed, inv_l)
    pos = torch.arange(T, dtype=torch.float32)
    freqs = pos[:, None] @ inv[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().double(), emb.sin().double()


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def reference(v, P, ids, targets, drop=None):
    """loss (mean CE over targets >= 0) and logits, modeling_llama's forward in float64. drop: dropout
    rates and masks {"p": (embd, attn, resid), "emb": mask, l: {"att", "res1", "res2"}} (1 = kept)."""
    B, T = ids.shape
    C, NH, KV = v["dim"], v["heads"], v["kv"]
    hs = C // NH

    def rms(x, w):
        return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + v["eps"]))

    def lin(x, name):
        y = x @ P[name + ".weight"].T
        return y + P[name + ".bias"] if name + ".bias" in P else y

    cos, sin = rope_cos_sin(v, T)
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    if v["window"]:
        i = torch.arange(T)
        mask &= (i[:, None] - i[None, :]) < v["window"]
    def dropped(t, mask, p):
        return t if mask is None else t * mask / (1 - p)

    pe, pa, pr = drop["p"] if drop else (0, 0, 0)
    x = P["model.embed_tokens.weight"][ids]
    x = dropped(x, drop and drop.get("emb"), pe)
    for l in range(v["layers"]):
        p = f"model.layers.{l}."
        dl = (drop or {}).get(l, {})
        h = rms(x, P[p + "input_layernorm.weight"])
        q = lin(h, p + "self_attn.q_proj").view(B, T, NH, hs).transpose(1, 2)
        k = lin(h, p + "self_attn.k_proj").view(B, T, KV, hs).transpose(1, 2)
        vv = lin(h, p + "self_attn.v_proj").view(B, T, KV, hs).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(NH // KV, dim=1)
        vv = vv.repeat_interleave(NH // KV, dim=1)
        s = (q @ k.transpose(-1, -2)) / hs ** 0.5
        s = s.masked_fill(~mask, float("-inf"))
        a = dropped(torch.softmax(s, dim=-1), dl.get("att"), pa) @ vv
        x = x + dropped(lin(a.transpose(1, 2).reshape(B, T, C), p + "self_attn.o_proj"), dl.get("res1"), pr)
        h = rms(x, P[p + "post_attention_layernorm.weight"])
        mlp = lin(torch.nn.functional.silu(lin(h, p + "mlp.gate_proj")) * lin(h, p + "mlp.up_proj"), p + "mlp.down_proj")
        x = x + dropped(mlp, dl.get("res2"), pr)
    x = rms(x, P["model.norm.weight"])
    head = P["model.embed_tokens.weight"] if v["tie"] else P["lm_head.weight"]
    logits = x @ head.T
    loss = torch.nn.functional.cross_entropy(logits.reshape(B * T, -1), targets.reshape(-1), ignore_index=-1)
    return loss, logits


def ours(v, P):
    """lmkit's tensors (internal names, fused q|k|v and gate|up) from HF's, for the gradients."""
    out = {"wte.weight": P["model.embed_tokens.weight"], "ln_f.weight": P["model.norm.weight"]}
    if not v["tie"]:
        out["lm_head.weight"] = P["lm_head.weight"]
    for l in range(v["layers"]):
        p = f"model.layers.{l}."
        out[f"h.{l}.ln_1.weight"] = P[p + "input_layernorm.weight"]
        out[f"h.{l}.ln_2.weight"] = P[p + "post_attention_layernorm.weight"]
        out[f"h.{l}.attn.c_attn.weight"] = torch.cat([P[p + f"self_attn.{x}_proj.weight"] for x in "qkv"])
        if p + "self_attn.q_proj.bias" in P:
            out[f"h.{l}.attn.c_attn.bias"] = torch.cat([P[p + f"self_attn.{x}_proj.bias"] for x in "qkv"])
        out[f"h.{l}.attn.c_proj.weight"] = P[p + "self_attn.o_proj.weight"]
        out[f"h.{l}.mlp.c_fc.weight"] = torch.cat([P[p + "mlp.gate_proj.weight"], P[p + "mlp.up_proj.weight"]])
        out[f"h.{l}.mlp.c_proj.weight"] = P[p + "mlp.down_proj.weight"]
    return out


LORA_TARGETS = {"self_attn.q_proj": ("attn.c_attn", 0), "self_attn.v_proj": ("attn.c_attn", 2),
                "mlp.down_proj": ("mlp.c_proj", None)}


def write_adapter(d, v, P, r, alpha, seed):
    """A PEFT LoRA adapter directory; returns {hf module: (A, B)} in float64."""
    g = torch.Generator().manual_seed(seed)
    os.makedirs(d, exist_ok=True)
    cfg = {"peft_type": "LORA", "r": r, "lora_alpha": alpha, "target_modules": ["q_proj", "v_proj", "down_proj"],
           "bias": "none", "task_type": "CAUSAL_LM", "lora_dropout": 0.0, "fan_in_fan_out": False,
           "base_model_name_or_path": None, "use_rslora": False, "use_dora": False, "modules_to_save": None}
    with open(os.path.join(d, "adapter_config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    ad, entries = {}, []
    for l in range(v["layers"]):
        for mod in LORA_TARGETS:
            W = P[f"model.layers.{l}.{mod}.weight"]
            A = torch.randn(r, W.shape[1], generator=g, dtype=torch.float64) * 0.2
            B = torch.randn(W.shape[0], r, generator=g, dtype=torch.float64) * 0.2
            name = f"model.layers.{l}.{mod}"
            ad[name] = (A, B)
            entries += [(f"base_model.model.{name}.lora_A.weight", A, "F32"), (f"base_model.model.{name}.lora_B.weight", B, "F32")]
    write_safetensors(os.path.join(d, "adapter_model.safetensors"), sorted(entries, key=lambda e: e[0]), {"format": "pt"})
    return ad


def run(args):
    return subprocess.run([REF] + [str(a) for a in args], capture_output=True, text=True, timeout=120)


def main():
    chk = Checker(1e-5)
    with tempfile.TemporaryDirectory() as tmp:
        for vi, (label, over) in enumerate(VARIANTS.items()):
            v = dict(BASE, **over)
            d = os.path.join(tmp, f"m{vi}")
            P = random_weights(v, 100 + vi)
            write_dir(d, v, P)
            # the reference computes on the weights as the file holds them (rounded to f16/bf16)
            R = {k: t.to(DT[v["dtype"]]).double().requires_grad_(True) for k, t in P.items()}
            B, T = v["B"], v["T"]
            ids = torch.randint(0, v["vocab"], (B, T))
            targets = torch.randint(0, v["vocab"], (B, T))
            targets[0, :3] = -1
            ids.numpy().astype("<i4").tofile(os.path.join(d, "ids.bin"))
            targets.numpy().astype("<i4").tofile(os.path.join(d, "tg.bin"))
            r = run([d, B, T, os.path.join(d, "ids.bin"), os.path.join(d, "tg.bin"), d])
            if r.returncode:
                chk.check(f"{label}: ref_llama failed: {r.stderr.strip()}", float("inf"))
                continue
            loss, logits = reference(v, R, ids, targets)
            loss.backward()
            ours_loss = np.fromfile(os.path.join(d, "loss.bin"), dtype="<f4")[0]
            ours_logits = np.fromfile(os.path.join(d, "logits.bin"), dtype="<f4").reshape(B, T, -1)
            chk.check(f"{label}: loss", rel_err(ours_loss, loss.item()))
            chk.check(f"{label}: logits", rel_err(ours_logits, logits.detach().numpy()))
            G = read_safetensors(os.path.join(d, "grads.safetensors"))
            want = ours(v, {k: t.grad for k, t in R.items()})
            if set(G) != set(want):
                chk.check(f"{label}: gradient names {sorted(set(G) ^ set(want))}", float("inf"))
            worst = max(((rel_err(G[n], want[n].numpy()), n) for n in want if n in G), default=(float("inf"), "-"))
            chk.check(f"{label}: every gradient ({len(want)} tensors; worst {worst[1]})", worst[0])

            if vi in (1, 3):   # the KV-cache session: prefill 5, then one token at a time
                ids[0].numpy().astype("<i4").tofile(os.path.join(d, "ids0.bin"))
                r = run(["--session", 5, d, os.path.join(d, "ids0.bin"), os.path.join(d, "sess.bin")])
                if r.returncode:
                    chk.check(f"{label}: session failed: {r.stderr.strip()}", float("inf"))
                else:
                    sl = np.fromfile(os.path.join(d, "sess.bin"), dtype="<f4").reshape(T - 5 + 1, -1)
                    chk.check(f"{label}: KV-cache session logits", rel_err(sl, logits[0, 4:].detach().numpy()))

            # lmkit -> HF: our save writes HF's names and shapes (fused tensors split back), and reloads
            out = os.path.join(tmp, f"saved{vi}")
            r = run(["--save", d, out])
            if r.returncode:
                chk.check(f"{label}: save failed: {r.stderr.strip()}", float("inf"))
                continue
            S = read_safetensors(os.path.join(out, "model.safetensors"))
            names_ok = set(S) == set(P) and all(list(S[n].shape) == list(P[n].shape) for n in P)
            vals = max(rel_err(S[n], P[n].to(DT[v["dtype"]]).double().numpy()) for n in P) if names_ok else float("inf")
            chk.check(f"{label}: lmkit's save has HF's names, shapes and values", vals, tol=0)
            with open(os.path.join(out, "config.json")) as f:
                saved = json.load(f)
            orig = hf_config(v)
            keys = ["model_type", "architectures", "num_key_value_heads", "rope_theta", "tie_word_embeddings",
                    "rope_scaling", "sliding_window", "eos_token_id", "intermediate_size", "max_position_embeddings"]
            diff = [k for k in keys if k in orig and saved.get(k) != orig[k]]
            chk.check(f"{label}: saved config.json keys {diff or 'match'}", 0 if not diff else float("inf"))

        # ---- LoRA on a Llama: PEFT's per-module adapters on lmkit's fused matrices
        v = dict(BASE, kv=2, dtype="F32")
        d = os.path.join(tmp, "lora_base")
        P = random_weights(v, 41)
        write_dir(d, v, P)
        r, alpha = 4, 8.0
        ad = write_adapter(os.path.join(tmp, "adapter"), v, P, r, alpha, 42)
        R = {k: t.clone() for k, t in P.items()}
        AB = {k: (a.clone().requires_grad_(True), b.clone().requires_grad_(True)) for k, (a, b) in ad.items()}
        for name, (A, B) in AB.items():
            R[name + ".weight"] = P[name + ".weight"] + (alpha / r) * (B @ A)
        B_, T_ = v["B"], v["T"]
        ids = torch.randint(0, v["vocab"], (B_, T_))
        targets = torch.randint(0, v["vocab"], (B_, T_))
        ids.numpy().astype("<i4").tofile(os.path.join(d, "ids.bin"))
        targets.numpy().astype("<i4").tofile(os.path.join(d, "tg.bin"))
        loss, logits = reference(v, R, ids, targets)
        loss.backward()
        io = [d, B_, T_, os.path.join(d, "ids.bin"), os.path.join(d, "tg.bin"), d]
        rr = run(["--adapter", os.path.join(tmp, "adapter")] + io)
        if rr.returncode:
            chk.check(f"LoRA on llama: ref_llama --adapter failed: {rr.stderr.strip()}", float("inf"))
        else:
            chk.check("LoRA (q_proj, v_proj, down_proj) on llama GQA: loss",
                      rel_err(np.fromfile(os.path.join(d, "loss.bin"), dtype="<f4")[0], loss.item()))
            lg = np.fromfile(os.path.join(d, "logits.bin"), dtype="<f4").reshape(B_, T_, -1)
            chk.check("LoRA on llama: logits", rel_err(lg, logits.detach().numpy()))
            G = read_safetensors(os.path.join(d, "grads.safetensors"))
            want = {}
            for name, (A, B) in AB.items():
                l = int(name.split(".")[2])
                ours_k, part = LORA_TARGETS[name.split(".", 3)[3]]
                base = f"h.{l}.{ours_k}" + ("" if part is None else f".{part}")
                want[base + ".lora_A.weight"], want[base + ".lora_B.weight"] = A.grad, B.grad
            if set(G) != set(want):
                chk.check(f"LoRA gradient names {sorted(set(G) ^ set(want))}", float("inf"))
            worst = max(((rel_err(G[n], want[n].numpy()), n) for n in want if n in G), default=(float("inf"), "-"))
            chk.check(f"LoRA on llama: every A and B gradient ({len(want)} tensors; worst {worst[1]})", worst[0])
            rr = run(["--merged", os.path.join(tmp, "adapter")] + io)
            ok = rr.returncode == 0
            lm = np.fromfile(os.path.join(d, "logits.bin"), dtype="<f4").reshape(B_, T_, -1) if ok else None
            chk.check("LoRA on llama: the merged model computes the same logits",
                      rel_err(lm, logits.detach().numpy()) if ok else float("inf"))

        # ---- dropout: the masks lmkit drew, applied by the reference at the same places
        v = dict(BASE, kv=2)
        d = os.path.join(tmp, "drop")
        P = random_weights(v, 51)
        write_dir(d, v, P)
        B_, T_, C_, NH_ = v["B"], v["T"], v["dim"], v["heads"]
        ids = torch.randint(0, v["vocab"], (B_, T_))
        targets = torch.randint(0, v["vocab"], (B_, T_))
        ids.numpy().astype("<i4").tofile(os.path.join(d, "ids.bin"))
        targets.numpy().astype("<i4").tofile(os.path.join(d, "tg.bin"))
        rates = (0.1, 0.2, 0.3)
        rr = run(["--dropout", *rates, 77, d, B_, T_, os.path.join(d, "ids.bin"), os.path.join(d, "tg.bin"), d])
        if rr.returncode:
            chk.check(f"dropout: ref_llama failed: {rr.stderr.strip()}", float("inf"))
        else:
            drop = dict(dropout_masks(d, v["layers"], B_, T_, C_, NH_), p=rates)
            kept = float(np.mean([drop[0]["att"].mean().item(), drop["emb"].mean().item()]))
            R = {k: t.clone().requires_grad_(True) for k, t in P.items()}
            loss, logits = reference(v, R, ids, targets, drop)
            loss.backward()
            chk.check(f"dropout (embeddings 0.1, attention 0.2, residual 0.3; kept share {kept:.3f}): loss",
                      rel_err(np.fromfile(os.path.join(d, "loss.bin"), dtype="<f4")[0], loss.item()))
            lg = np.fromfile(os.path.join(d, "logits.bin"), dtype="<f4").reshape(B_, T_, -1)
            chk.check("dropout: logits", rel_err(lg, logits.detach().numpy()))
            G = read_safetensors(os.path.join(d, "grads.safetensors"))
            want = ours(v, {k: t.grad for k, t in R.items()})
            worst = max(((rel_err(G[n], want[n].numpy()), n) for n in want if n in G), default=(float("inf"), "-"))
            chk.check(f"dropout: every gradient ({len(want)} tensors; worst {worst[1]})", worst[0])

        # ---- bad input: clear errors naming the problem
        v = dict(BASE, shards=2)
        d = os.path.join(tmp, "bad")
        P = random_weights(v, 7)
        write_dir(d, v, P)
        ids = os.path.join(tmp, "m0", "ids.bin")
        tg = os.path.join(tmp, "m0", "tg.bin")

        def expect_error(label, words):
            r = run([d, v["B"], v["T"], ids, tg, d])
            ok = r.returncode == 1 and all(w in r.stderr for w in words)
            chk.check(f"bad input: {label} -> {r.stderr.strip()[:150]!r}", 0 if ok else float("inf"))

        shard = "model-00002-of-00002.safetensors"
        os.rename(os.path.join(d, shard), os.path.join(tmp, shard))
        expect_error("the index names a missing shard", [shard, "model.safetensors.index.json"])
        os.rename(os.path.join(tmp, shard), os.path.join(d, shard))
        cfgp = os.path.join(d, "config.json")
        good = open(cfgp).read()
        for key, val, words in (("num_key_value_heads", "2", ["num_key_value_heads", "integer"]),
                                ("rope_scaling", {"rope_type": "yarn", "factor": 4.0}, ["rope_type", "yarn"]),
                                ("rope_theta", "10000", ["rope_theta", "number"]),
                                ("attention_bias", True, ["attention_bias"])):
            c = json.loads(good)
            c[key] = val
            with open(cfgp, "w") as f:
                json.dump(c, f)
            expect_error(f"config {key} = {val!r}", words)
        with open(cfgp, "w") as f:
            f.write(good)
    chk.finish()


if __name__ == "__main__":
    main()
