"""The whole model against PyTorch autograd: loss and every parameter gradient
of tiny models, one per variant of the general block (DESIGN.md §3), must agree
to 1e-5 relative error; and 10 AdamW steps must give torch.optim.AdamW's losses.

GPT-2 with the task heads (src/model/heads.h), on right-padded batches of
sequences of different lengths (pad id in the padded positions): the classify
head pools the last non-pad token as HF's GPT2ForSequenceClassification does
(logits = score(hidden)[arange(B), last_non_pad], no bias), by the mask or,
without one, by ids != pad_token_id; the scalar head (one output, mean squared
error); the token head (CE over labels >= 0 at real tokens only: the labels
file holds labels at padded positions too, which must be ignored); and runs
with a caller's d(output) (lm_batch.dout), against torch's gradient of
sum(dout * output). Head output and pooled positions are compared too.

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


# GPT-2 with a task head (ref_gpt's head numbers are lmkit.h lm_head_kind: 1 classify, 2 tokens, 6 scalar).
# lens: the real length of each sequence (right-padded with `pad`); mask: give the key padding mask;
# dout: supply d(loss)/d(output) (with or without labels/values).
HEAD_CLASSIFY, HEAD_TOKENS, HEAD_SCALAR = 1, 2, 6
HEAD_BASE = dict(BASE, B=4, T=12, pad=7, lens=(12, 9, 5, 1))
HEAD_VARIANTS = {
    "classify right-padded, mask, ignored label": dict(head=HEAD_CLASSIFY, labels=3, mask=1, y=(2, -1, 0, 1)),
    "classify right-padded, no mask (pooled by ids != pad_token_id)": dict(head=HEAD_CLASSIFY, labels=3, mask=0, y=(1, 2, -1, 0)),
    "classify 5 labels, post-LN bidirectional untied, mask": dict(head=HEAD_CLASSIFY, labels=5, mask=1, pre_ln=0, causal=0, tie=0,
                                                                  y=(4, 0, 3, 1)),
    "classify + dout (dout wins over labels)": dict(head=HEAD_CLASSIFY, labels=3, mask=1, y=(2, -1, 0, 1), dout=1),
    "scalar right-padded, mask (MSE)": dict(head=HEAD_SCALAR, labels=1, mask=1, values=1),
    "scalar right-padded, no mask (MSE)": dict(head=HEAD_SCALAR, labels=1, mask=0, values=1),
    "scalar + dout, no values": dict(head=HEAD_SCALAR, labels=1, mask=1, dout=1),
    "tokens right-padded, mask, ignored labels": dict(head=HEAD_TOKENS, labels=5, mask=1, y="tokens"),
    "tokens + dout": dict(head=HEAD_TOKENS, labels=4, mask=1, y="tokens", dout=1),
}


def write_head_inputs(d, cfg):
    """Right-padded ids (real ids never equal pad), the mask, labels / values / dout files.
    Returns ids, mask (or None), labels, values, dout as torch tensors (None when absent)."""
    B, T, V, pad = cfg["B"], cfg["T"], cfg["vocab"], cfg["pad"]
    g = torch.Generator().manual_seed(11)
    ids = torch.randint(0, V - 1, (B, T), generator=g, dtype=torch.int32)
    ids[ids >= pad] += 1                                  # real tokens are never the pad id
    real = torch.zeros(B, T, dtype=torch.bool)
    for b, n in enumerate(cfg["lens"]):
        real[b, :n] = True
    ids[~real] = pad
    mask = real.to(torch.uint8) if cfg["mask"] else None
    labels = values = dout = None
    L = cfg["labels"]
    if cfg["head"] == HEAD_CLASSIFY:
        labels = torch.tensor(cfg["y"], dtype=torch.int32)
    elif cfg["head"] == HEAD_TOKENS:
        labels = torch.randint(0, L, (B, T), generator=g, dtype=torch.int32)   # padded positions keep labels: ignored
        labels[0, 2] = labels[1, 0] = labels[1, 4] = -1
    if cfg.get("values"):
        values = torch.randn(B, generator=g, dtype=torch.float32) * 2
    if cfg.get("dout"):
        shape = {HEAD_CLASSIFY: (B, L), HEAD_SCALAR: (B,), HEAD_TOKENS: (B, T, L)}[cfg["head"]]
        dout = torch.randn(*shape, generator=g, dtype=torch.float32)
    with open(os.path.join(d, "config.txt"), "w") as f:
        for k, v in cfg.items():
            if not isinstance(v, (tuple, str)):
                f.write(f"{k} {v}\n")
    ids.numpy().tofile(os.path.join(d, "ids.bin"))
    for name, t in (("mask", mask), ("labels", labels), ("values", values), ("dout", dout)):
        if t is not None:
            t.numpy().tofile(os.path.join(d, name + ".bin"))
    return ids.long(), mask, labels, values, dout


def torch_head(P, cfg, ids, mask, labels, values, dout):
    """(loss of the head's own objective or NaN, the objective backward runs on, output, pooled positions)."""
    x = torch_hidden(P, cfg, ids, mask)                    # (B,T,C)
    B, T = ids.shape
    head = cfg["head"]
    pool = None
    if head in (HEAD_CLASSIFY, HEAD_SCALAR):
        # HF GPT2ForSequenceClassification: score over every token, then the last non-pad one
        real = mask.bool() if mask is not None else ids != cfg["pad"]
        pool = (torch.arange(T) * real).argmax(-1)
        out = (x @ P["classifier.weight"].T)[torch.arange(B), pool]          # (B,L)
        if head == HEAD_SCALAR:
            out = out.squeeze(-1)                                            # (B)
    else:
        out = x @ P["token_classifier.weight"].T + P["token_classifier.bias"]   # (B,T,L)
    loss = torch.tensor(float("nan"), dtype=torch.float64)
    if head == HEAD_CLASSIFY and labels is not None:
        loss = F.cross_entropy(out, labels.long(), ignore_index=-1)
    elif head == HEAD_SCALAR and values is not None:
        loss = ((out - values.double()) ** 2).mean()
    elif head == HEAD_TOKENS and labels is not None:
        y = labels.long().clone()
        if mask is not None:
            y[~mask.bool()] = -1                                             # padded tokens carry no loss
        loss = F.cross_entropy(out.reshape(-1, out.shape[-1]), y.view(-1), ignore_index=-1)
    objective = (dout.double() * out).sum() if dout is not None else loss
    return loss, objective, out, pool


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


def torch_hidden(P, cfg, ids, mask):
    """The hidden states (B,T,C) the head sees: after the final norm in pre-LN models."""
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
    return x


def torch_loss(P, cfg, ids, tgt, mask):
    x = torch_hidden(P, cfg, ids, mask)
    head = P["wte.weight"] if cfg["tie"] else P["lm_head.weight"]
    logits = x @ head.T
    return F.cross_entropy(logits.view(-1, logits.shape[-1]), tgt.view(-1), ignore_index=-1)


def load_params(path, dtype):
    return {k: torch.tensor(v, dtype=dtype, requires_grad=True) for k, v in read_safetensors(path).items()}


def run(mode, d):
    subprocess.run([os.path.join(BIN, "ref_gpt"), mode, d], check=True)


def check_grads(chk, name, d, P):
    G = read_safetensors(os.path.join(d, "grads.safetensors"))
    for k in G:
        assert k in P, k
    missing = [k for k in P if k not in G]
    nograd = [k for k in P if P[k].grad is None]
    if missing or nograd:
        chk.check(f"{name}: gradients [missing {missing}, no torch gradient {nograd}]", 1.0)
        return
    worst = max(G, key=lambda k: rel_err(G[k], P[k].grad.numpy()))
    chk.check(f"{name}: all {len(G)} gradients (worst {worst})", rel_err(G[worst], P[worst].grad.numpy()))


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
            check_grads(chk, name, d, P)
    # GPT-2 with the classify, scalar and token heads
    for name, over in HEAD_VARIANTS.items():
        cfg = dict(HEAD_BASE, **over)
        with tempfile.TemporaryDirectory() as d:
            ids, mask, labels, values, dout = write_head_inputs(d, cfg)
            run("grad", d)
            P = load_params(os.path.join(d, "params.safetensors"), torch.float64)
            loss, objective, out, pool = torch_head(P, cfg, ids, mask, labels, values, dout)
            objective.backward()
            ours = float(open(os.path.join(d, "loss.txt")).read())
            if math.isnan(loss.item()):
                chk.check(f"{name}: no labels, loss is NaN ({ours})", 0.0 if math.isnan(ours) else 1.0)
            else:
                chk.check(f"{name}: loss {ours:.6f}", abs(ours - loss.item()) / abs(loss.item()))
            got = np.fromfile(os.path.join(d, "out.bin"), dtype="<f4").reshape(out.shape)
            chk.check(f"{name}: head output {tuple(out.shape)}", rel_err(got, out.detach().numpy()))
            if pool is not None:
                gp = np.fromfile(os.path.join(d, "pool.bin"), dtype="<i4")
                chk.check(f"{name}: pooled at the last real tokens {gp.tolist()}",
                          0.0 if gp.tolist() == pool.tolist() else 1.0)
            check_grads(chk, name, d, P)
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
