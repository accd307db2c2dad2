"""LoRA (src/model/lora.h) against PyTorch autograd in float64.

A tiny GPT-2 with a LoRA adapter on its linears,

    y = x W^T + b + (alpha / r) (x A^T) B^T,   A (r, in), B (out, r),

is run by ref_lora (fp32) and by the model below (float64, written from the
same equations, with the adapter as PEFT's LoraLayer computes it). Checked at
<= 1e-5 relative error:
  - the loss (LM head) and the head's output, and every adapter gradient (A and
    B of each adapted linear; with the scalar head, the trained head copy
    `classifier.weight` too, PEFT's modules_to_save);
  - the base is frozen: lmkit allocates no base gradient array and every
    gradient view of the blocks is NULL;
  - with the adapter switched off (lm_lora_enable 0) the output is the base's;
  - lm_lora_merge (W += (alpha / r) B A) gives the same output, also after
    saving the merged model and loading it again;
  - a fresh base + lm_lora_load of the saved adapter gives the same output.
The PEFT directory is checked exactly: tensor names, shapes and values in
adapter_model.safetensors (read with struct + json), adapter_config.json's keys
and values, and that PEFT's own target_modules matching rule
(peft.tuners.tuners_utils.check_target_module_exists: a string is
re.fullmatch'ed, a list entry matches a module named so or ending in
".entry") selects exactly the modules that have tensors, among every module
of the HF model. A's initialisation is PEFT's default, kaiming_uniform_(a=sqrt(5))
= U(-1/sqrt(in), 1/sqrt(in))."""
import json
import math
import os
import re
import struct
import subprocess
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

from refutil import BIN, Checker, read_safetensors, rel_err

BASE = dict(vocab=61, positions=16, dim=32, layers=2, heads=4, inner=0, rms=0, pre_ln=1, act=0, causal=1,
            bias=1, tie=1, B=2, T=12, rank=4, alpha=8, targets=0, head=4, labels=2, pad=-1)
TARGETS = ["all-linear", "attn", "mlp"]
KINDS = {"all-linear": ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"],
         "attn": ["attn.c_attn", "attn.c_proj"], "mlp": ["mlp.c_fc", "mlp.c_proj"]}
HEAD_SCALAR = 6
VARIANTS = {
    "gpt2 all-linear r4 alpha8": dict(),
    "gpt2 attn r2 alpha8": dict(targets=1, rank=2, alpha=8),
    "gpt2 mlp r8 alpha4": dict(targets=2, rank=8, alpha=4),
    "rms relu no-bias untied post-LN, all-linear r3": dict(rms=1, act=2, bias=0, tie=0, pre_ln=0, rank=3, alpha=5),
    "scalar head (reward model), all-linear r4: score trained": dict(head=HEAD_SCALAR, labels=1, pad=60),
}
PEFT_KEYS = {"alpha_pattern", "auto_mapping", "base_model_name_or_path", "bias", "fan_in_fan_out", "inference_mode",
             "init_lora_weights", "layers_pattern", "layers_to_transform", "lora_alpha", "lora_dropout",
             "modules_to_save", "peft_type", "r", "rank_pattern", "revision", "target_modules", "task_type",
             "use_dora", "use_rslora"}


def load(path, grad=False):
    return {k: torch.tensor(v, dtype=torch.float64, requires_grad=grad) for k, v in read_safetensors(path).items()}


def forward(P, A, cfg, ids, on=True):
    """The head output: LM logits (B,T,V) or the scalar reward (B). A: the adapter's table."""
    B, T = ids.shape
    C, NH, L = cfg["dim"], cfg["heads"], cfg["layers"]
    hs, s = C // NH, cfg["alpha"] / cfg["rank"]

    def norm(x, pre):
        w = P[pre + ".weight"]
        if cfg["rms"]:
            return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + 1e-5) * w
        return F.layer_norm(x, (C,), w, P.get(pre + ".bias"), 1e-5)

    def linear(x, name):
        y = x @ P[name + ".weight"].T
        if name + ".bias" in P:
            y = y + P[name + ".bias"]
        if on and name + ".lora_A.weight" in A:   # PEFT LoraLayer: result + lora_B(lora_A(dropout(x))) * scaling
            y = y + (x @ A[name + ".lora_A.weight"].T) @ A[name + ".lora_B.weight"].T * s
        return y

    def act(x):
        return [lambda z: F.gelu(z, approximate="tanh"), lambda z: F.gelu(z), F.relu][cfg["act"]](x)

    def attn(x, pre):
        q, k, v = linear(x, pre + ".attn.c_attn").split(C, dim=-1)
        q, k, v = (t.view(B, T, NH, hs).transpose(1, 2) for t in (q, k, v))
        a = q @ k.transpose(-2, -1) / math.sqrt(hs)
        a = a.masked_fill(~torch.tril(torch.ones(T, T, dtype=torch.bool)), float("-inf"))
        return linear((torch.softmax(a, -1) @ v).transpose(1, 2).reshape(B, T, C), pre + ".attn.c_proj")

    def mlp(x, pre):
        return linear(act(linear(x, pre + ".mlp.c_fc")), pre + ".mlp.c_proj")

    x = P["wte.weight"][ids] + P["wpe.weight"][:T].unsqueeze(0)
    for l in range(L):
        pre = f"h.{l}"
        if cfg["pre_ln"]:
            x = x + attn(norm(x, pre + ".ln_1"), pre)
            x = x + mlp(norm(x, pre + ".ln_2"), pre)
        else:
            x = norm(x + attn(x, pre), pre + ".ln_1")
            x = norm(x + mlp(x, pre), pre + ".ln_2")
    if cfg["pre_ln"]:
        x = norm(x, "ln_f")
    if cfg["head"] == HEAD_SCALAR:   # GPT2ForSequenceClassification: score at the last non-pad token
        w = A["classifier.weight"]   # the trained copy (modules_to_save), also with the adapters off
        last = ((ids != cfg["pad"]) * torch.arange(T)).argmax(-1)
        return (x @ w.T)[torch.arange(B), last].squeeze(-1)
    return x @ (P["wte.weight"] if cfg["tie"] else P["lm_head.weight"]).T


def safetensors_header(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(n))


def peft_matches(target_modules, key):
    """peft.tuners.tuners_utils.check_target_module_exists for a plain LoraConfig"""
    if isinstance(target_modules, str):
        return re.fullmatch(target_modules, key) is not None
    return key in target_modules or any(key.endswith("." + t) for t in target_modules)


def hf_modules(cfg):
    """every module of the HF GPT-2 model that holds a matrix (what PEFT could target)"""
    mods = ["transformer.wte", "transformer.wpe"]
    for l in range(cfg["layers"]):
        mods += [f"transformer.h.{l}.{k}" for k in KINDS["all-linear"]]
    mods.append("score" if cfg["head"] == HEAD_SCALAR else "lm_head")
    return mods


def check_peft(chk, name, d, cfg, Aw):
    ad = os.path.join(d, "adapter")
    conf = json.load(open(os.path.join(ad, "adapter_config.json")))
    hdr = safetensors_header(os.path.join(ad, "adapter_model.safetensors"))
    tensors = read_safetensors(os.path.join(ad, "adapter_model.safetensors"))
    r, C, L = cfg["rank"], cfg["dim"], cfg["layers"]
    F_ = cfg["inner"] or 4 * C
    dims = {"attn.c_attn": (3 * C, C), "attn.c_proj": (C, C), "mlp.c_fc": (F_, C), "mlp.c_proj": (C, F_)}
    target = TARGETS[cfg["targets"]]
    want = {}
    for l in range(L):
        for k in KINDS[target]:
            out, inp = dims[k]
            want[f"base_model.model.transformer.h.{l}.{k}.lora_A.weight"] = ([r, inp], f"h.{l}.{k}.lora_A.weight")
            want[f"base_model.model.transformer.h.{l}.{k}.lora_B.weight"] = ([out, r], f"h.{l}.{k}.lora_B.weight")
    if cfg["head"] == HEAD_SCALAR:
        want["base_model.model.score.weight"] = ([1, C], "classifier.weight")
    got = {k: v["shape"] for k, v in hdr.items() if k != "__metadata__"}
    ok = got == {k: v[0] for k, v in want.items()} and all(v["dtype"] == "F32" for k, v in hdr.items() if k != "__metadata__")
    chk.check(f"{name}: PEFT tensor names and shapes ({len(got)} tensors, e.g. {sorted(got)[0]})", 0.0 if ok else 1.0)
    if ok:
        err = max(rel_err(tensors[k], Aw[ours].detach().numpy()) for k, (_, ours) in want.items())
        chk.check(f"{name}: PEFT tensor values are the adapter's", err, 0.0)
    meta_ok = hdr.get("__metadata__", {}).get("format") == "pt"
    modules_to_save = ["score"] if cfg["head"] == HEAD_SCALAR else None
    expect = dict(peft_type="LORA", r=r, lora_alpha=cfg["alpha"], lora_dropout=0, bias="none", fan_in_fan_out=True,
                  base_model_name_or_path="tiny-base", task_type="SEQ_CLS" if cfg["head"] == HEAD_SCALAR else "CAUSAL_LM",
                  modules_to_save=modules_to_save, use_dora=False, use_rslora=False, layers_to_transform=None)
    bad = [k for k, v in expect.items() if conf.get(k) != v]
    chk.check(f"{name}: adapter_config.json keys {'==' if set(conf) == PEFT_KEYS else '!='} LoraConfig's, values "
              f"{'ok' if not bad else 'differ: ' + str(bad)}, target_modules {conf['target_modules']}",
              0.0 if set(conf) == PEFT_KEYS and not bad and meta_ok else 1.0)
    adapted = {f"transformer.h.{l}.{k}" for l in range(L) for k in KINDS[target]}
    selected = {m for m in hf_modules(cfg) if peft_matches(conf["target_modules"], m)}
    chk.check(f"{name}: PEFT's matching rule selects exactly the {len(adapted)} adapted modules",
              0.0 if selected == adapted else 1.0)


def main():
    chk = Checker(1e-5)
    for name, over in VARIANTS.items():
        cfg = dict(BASE, **over)
        with tempfile.TemporaryDirectory() as d:
            B, T, V = cfg["B"], cfg["T"], cfg["vocab"]
            g = torch.Generator().manual_seed(3)
            ids = torch.randint(0, V - 1, (B, T), generator=g, dtype=torch.int32)   # never the pad id 60
            with open(os.path.join(d, "config.txt"), "w") as f:
                for k, v in cfg.items():
                    f.write(f"{k} {v}\n")
            ids.numpy().tofile(os.path.join(d, "ids.bin"))
            tgt = dout = None
            if cfg["head"] == HEAD_SCALAR:
                dout = torch.randn(B, generator=g, dtype=torch.float32)
                dout.numpy().tofile(os.path.join(d, "dout.bin"))
            else:
                tgt = torch.randint(0, V, (B, T), generator=g, dtype=torch.int32)
                tgt[0, :3] = -1
                tgt.numpy().tofile(os.path.join(d, "targets.bin"))
            subprocess.run([os.path.join(BIN, "ref_lora"), d], check=True)
            P = load(os.path.join(d, "params.safetensors"))
            Aw = load(os.path.join(d, "lora_params.safetensors"), grad=True)
            out = forward(P, Aw, cfg, ids.long())
            if dout is not None:
                obj = (dout.double() * out).sum()
            else:
                obj = F.cross_entropy(out.reshape(-1, V), tgt.long().view(-1), ignore_index=-1)
                ours = float(open(os.path.join(d, "loss.txt")).read())
                chk.check(f"{name}: loss {ours:.6f}", abs(ours - obj.item()) / abs(obj.item()))
            obj.backward()
            rd = lambda f: np.fromfile(os.path.join(d, f), dtype="<f4").reshape(out.shape)
            chk.check(f"{name}: output with the adapter", rel_err(rd("out.bin"), out.detach().numpy()))
            G = read_safetensors(os.path.join(d, "lora_grads.safetensors"))
            n_lora = sum(".lora_" in k for k in G)
            expect_n = 2 * cfg["layers"] * len(KINDS[TARGETS[cfg["targets"]]])
            if set(G) != set(Aw) or n_lora != expect_n:
                chk.check(f"{name}: adapter gradients {sorted(G)}", 1.0)
            else:
                worst = max(G, key=lambda k: rel_err(G[k], Aw[k].grad.numpy()))
                chk.check(f"{name}: all {len(G)} adapter gradients (worst {worst})", rel_err(G[worst], Aw[worst].grad.numpy()))
            frozen = dict(line.split() for line in open(os.path.join(d, "frozen.txt")))
            chk.check(f"{name}: base frozen (base gradient array: {frozen['base_grads']}, non-NULL gradient views: "
                      f"{frozen['views']})", 0.0 if frozen == {"base_grads": "0", "views": "0"} else 1.0)
            with torch.no_grad():
                base = forward(P, Aw, cfg, ids.long(), on=False)
            chk.check(f"{name}: adapter off = the base", rel_err(rd("base_out.bin"), base.numpy()))
            chk.check(f"{name}: base + loaded adapter = the trained one", rel_err(rd("loaded.bin"), rd("out.bin")), 0.0)
            chk.check(f"{name}: merged (W += alpha/r B A) vs unmerged float64", rel_err(rd("merged.bin"), out.detach().numpy()))
            chk.check(f"{name}: merged model saved and loaded again", rel_err(rd("merged_reload.bin"), rd("merged.bin")), 0.0)
            for k, v in Aw.items():   # A as PEFT initialises it: kaiming_uniform_(a=sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in))
                if ".lora_A" in k:
                    bound = 1 / math.sqrt(v.shape[1])
                    a = v.detach().numpy()
                    if not (np.abs(a).max() <= bound and abs(a.std() / (bound / math.sqrt(3)) - 1) < 0.35):
                        chk.check(f"{name}: {k} initialised U(-{bound:.3f}, {bound:.3f})", 1.0)
                        break
            else:
                chk.check(f"{name}: every A initialised U(-1/sqrt(in), 1/sqrt(in)) (PEFT's default)", 0.0)
            check_peft(chk, name, d, cfg, Aw)
    chk.finish()


if __name__ == "__main__":
    main()
