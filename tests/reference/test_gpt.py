"""The whole model against PyTorch autograd: loss and every parameter gradient
of tiny models, one per variant of the general block (DESIGN.md §3), must agree
to 1e-5 relative error; and 10 AdamW steps must give torch.optim.AdamW's losses.

lmkit (fp32) is compared with a PyTorch model written from the same equations
and run in float64, so the reference itself adds no rounding error."""
import math
import os
import subprocess
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

from refutil import BIN, Checker, read_safetensors, rel_err

torch.manual_seed(0)

VARIANTS = {
    # name: config overrides (GPT-2 defaults: pre-LN, LayerNorm, gelu tanh, causal, biases, tied head)
    "gpt2": dict(),
    "postln_erf_bidir_mask": dict(pre_ln=0, act=1, causal=0, mask=1),
    "rms_relu_nobias_untied": dict(rms=1, act=2, bias=0, tie=0),
    "postln_rms_bidir_untied_ignore": dict(pre_ln=0, rms=1, causal=0, tie=0, ignore=1),
}
BASE = dict(vocab=61, positions=16, dim=32, layers=2, heads=4, inner=0, rms=0, pre_ln=1, act=0, causal=1,
            bias=1, tie=1, eps=1e-5, B=2, T=16)


def write_inputs(d, cfg):
    B, T, V = cfg["B"], cfg["T"], cfg["vocab"]
    g = torch.Generator().manual_seed(7)
    ids = torch.randint(0, V, (B, T), generator=g, dtype=torch.int32)
    tgt = torch.randint(0, V, (B, T), generator=g, dtype=torch.int32)
    if cfg.get("ignore"):
        tgt[0, :5] = -1
    mask = None
    if cfg.get("mask"):
        mask = torch.ones(B, T, dtype=torch.uint8)
        mask[1, T - 6:] = 0          # sequence 1 is padded: its last 6 keys are hidden
        mask[0, 3] = 0
    with open(os.path.join(d, "config.txt"), "w") as f:
        for k, v in cfg.items():
            f.write(f"{k} {v}\n")
    ids.numpy().tofile(os.path.join(d, "ids.bin"))
    tgt.numpy().tofile(os.path.join(d, "targets.bin"))
    if mask is not None:
        mask.numpy().tofile(os.path.join(d, "mask.bin"))
    return ids.long(), tgt.long(), mask


def torch_loss(P, cfg, ids, tgt, mask):
    B, T = ids.shape
    C, NH, L = cfg["dim"], cfg["heads"], cfg["layers"]
    hs = C // NH
    rms, eps = cfg["rms"], cfg["eps"]

    def norm(x, pre):
        w = P[pre + ".weight"]
        if rms:
            return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * w
        return F.layer_norm(x, (C,), w, P.get(pre + ".bias"), eps)

    def linear(x, name):
        y = x @ P[name + ".weight"].T
        b = P.get(name + ".bias")
        return y + b if b is not None else y

    def act(x):
        return [lambda z: F.gelu(z, approximate="tanh"), lambda z: F.gelu(z), F.relu][cfg["act"]](x)

    def attn(x, pre):
        qkv = linear(x, pre + ".attn.c_attn")
        q, k, v = qkv.split(C, dim=-1)
        q, k, v = (t.view(B, T, NH, hs).transpose(1, 2) for t in (q, k, v))
        s = q @ k.transpose(-2, -1) / math.sqrt(hs)
        allowed = torch.ones(T, T, dtype=torch.bool)
        if cfg["causal"]:
            allowed = torch.tril(allowed)
        allowed = allowed.view(1, 1, T, T).expand(B, NH, T, T)
        if mask is not None:
            allowed = allowed & mask.bool().view(B, 1, 1, T)
        s = s.masked_fill(~allowed, float("-inf"))
        y = torch.softmax(s, dim=-1) @ v
        y = y.transpose(1, 2).reshape(B, T, C)
        return linear(y, pre + ".attn.c_proj")

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
    head = P["wte.weight"] if cfg["tie"] else P["lm_head.weight"]
    logits = x @ head.T
    return F.cross_entropy(logits.view(-1, logits.shape[-1]), tgt.view(-1), ignore_index=-1)


def load_params(path, dtype):
    return {k: torch.tensor(v, dtype=dtype, requires_grad=True) for k, v in read_safetensors(path).items()}


def run(mode, d):
    subprocess.run([os.path.join(BIN, "ref_gpt"), mode, d], check=True)


def main():
    chk = Checker(1e-5)
    for name, over in VARIANTS.items():
        cfg = dict(BASE, **over)
        with tempfile.TemporaryDirectory() as d:
            ids, tgt, mask = write_inputs(d, cfg)
            run("grad", d)
            P = load_params(os.path.join(d, "params.safetensors"), torch.float64)
            loss = torch_loss(P, cfg, ids, tgt, mask)
            loss.backward()
            ours = float(open(os.path.join(d, "loss.txt")).read())
            chk.check(f"{name}: loss {ours:.6f}", abs(ours - loss.item()) / abs(loss.item()))
            G = read_safetensors(os.path.join(d, "grads.safetensors"))
            worst = max(G, key=lambda k: rel_err(G[k], P[k].grad.numpy()))
            for k in G:
                assert k in P
            missing = [k for k in P if k not in G]
            chk.check(f"{name}: all {len(G)} gradients (worst {worst})", rel_err(G[worst], P[worst].grad.numpy()) if not missing else 1.0)
    # 10 AdamW steps on the GPT-2 variant, against torch.optim.AdamW (decay on weight matrices only)
    cfg = dict(BASE, steps=10, lr=1e-3, wd=0.1)
    with tempfile.TemporaryDirectory() as d:
        ids, tgt, mask = write_inputs(d, cfg)
        run("adamw", d)
        P = load_params(os.path.join(d, "params.safetensors"), torch.float32)
        decay = [p for k, p in P.items() if p.dim() == 2 and k not in ("wte.weight", "wpe.weight")]
        rest = [p for k, p in P.items() if not (p.dim() == 2 and k not in ("wte.weight", "wpe.weight"))]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                                lr=1e-3, betas=(0.9, 0.95), eps=1e-8)
        ref = []
        for _ in range(10):
            opt.zero_grad()
            loss = torch_loss(P, cfg, ids, tgt, mask)
            loss.backward()
            opt.step()
            ref.append(loss.item())
        ours = [float(x) for x in open(os.path.join(d, "losses.txt")).read().split()]
        chk.check(f"adamw 10 steps: losses {ours[0]:.4f} -> {ours[-1]:.4f}", rel_err(ours, ref))
    chk.finish()


if __name__ == "__main__":
    main()
