#!/usr/bin/python3
"""test_kernels.py — every kernel's forward and backward against PyTorch autograd.

For each case we draw inputs with torch (fixed seed), write them as raw
little-endian float32/int32 files with a meta.txt of sizes into a temp dir,
run `$LMKIT_BIN/ref_kernels <op> <dir>`, read back its outputs and gradients,
and compare with torch (fp32). Error metric per tensor: max|a-b| / max|b|
(robust to near-zero entries); the bound is 1e-5. Prints one line per check and
"N passed, M failed"; exits non-zero on any failure."""
import math
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

TOL = 1e-5
BIN = os.path.join(os.environ.get("LMKIT_BIN", "build"), "ref_kernels")
torch.manual_seed(1234)
torch.set_num_threads(2)
results = {"pass": 0, "fail": 0}
worst = {}


def check(label, got, want, tol=TOL):
    want = want.detach().double().cpu().numpy().reshape(-1)
    got = np.asarray(got, dtype=np.float64).reshape(-1)
    if got.shape != want.shape:
        ok, rel = False, float("inf")
    else:
        scale = max(float(np.max(np.abs(want))) if want.size else 0.0, 1e-30)
        rel = float(np.max(np.abs(got - want))) / scale if want.size else 0.0
        ok = bool(np.isfinite(rel)) and rel <= tol
    results["pass" if ok else "fail"] += 1
    op = label.split()[0]
    worst[op] = max(worst.get(op, 0.0), rel)
    print(f"{'ok  ' if ok else 'FAIL'} {label:55s} rel {rel:.2e}")


def run(op, tensors, meta):
    with tempfile.TemporaryDirectory(prefix="lmkit_ref_") as d:
        with open(os.path.join(d, "meta.txt"), "w") as f:
            for k, v in meta.items():
                f.write(f"{k} {float(v)!r}\n")
        for name, t in tensors.items():
            t = t.detach().contiguous()
            arr = t.numpy().astype("<i4" if t.dtype in (torch.int32, torch.int64, torch.bool) else "<f4")
            arr.tofile(os.path.join(d, name + ".bin"))
        r = subprocess.run([BIN, op, d], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"ref_kernels {op} failed: {r.stderr}")
        out = {}
        for fn in os.listdir(d):
            if fn.endswith(".bin") and fn[:-4] not in tensors:
                dtype = "<f8" if fn == "norm.bin" else "<f4"
                out[fn[:-4]] = np.fromfile(os.path.join(d, fn), dtype=dtype)
        return out


def leaf(*shape, scale=1.0):
    return (torch.randn(*shape) * scale).requires_grad_(True)


def test_matmul(N, C, OC, bias):
    x, w = leaf(N, C), leaf(OC, C, scale=0.1)
    b = leaf(OC) if bias else None
    dout = torch.randn(N, OC)
    y = F.linear(x, w, b)
    y.backward(dout)
    t = {"inp": x, "weight": w, "dout": dout}
    if bias:
        t["bias"] = b
    o = run("matmul", t, dict(N=N, C=C, OC=OC, bias=int(bias)))
    tag = f"matmul N={N} C={C} OC={OC} bias={int(bias)}"
    check(tag + " out", o["out"], y)
    check(tag + " dinp", o["dinp"], x.grad)
    check(tag + " dweight", o["dweight"], w.grad)
    if bias:
        check(tag + " dbias", o["dbias"], b.grad)


def test_embedding(N, C, V, accumulate):
    ids = torch.randint(0, V, (N,), dtype=torch.int32)
    ids[: N // 2] = ids[N // 2: 2 * (N // 2)]       # plenty of repeated ids
    ids[0] = ids[1] = ids[2]
    table = leaf(V, C)
    base = torch.randn(N, C)
    dout = torch.randn(N, C)
    y = F.embedding(ids.long(), table)
    if accumulate:
        y = y + base
    y.backward(dout)
    o = run("embedding", {"ids": ids, "table": table, "base": base, "dout": dout},
            dict(N=N, C=C, V=V, accumulate=int(accumulate)))
    tag = f"embedding N={N} C={C} V={V} acc={int(accumulate)}"
    check(tag + " out", o["out"], y)
    check(tag + " dtable", o["dtable"], table.grad)


def test_layernorm(N, C, bias):
    x = (torch.randn(N, C) * 2 + 0.5).requires_grad_(True)
    w = (1 + 0.1 * torch.randn(C)).requires_grad_(True)
    b = leaf(C, scale=0.1) if bias else None
    dout = torch.randn(N, C)
    y = F.layer_norm(x, (C,), w, b, 1e-5)
    y.backward(dout)
    t = {"inp": x, "weight": w, "dout": dout}
    if bias:
        t["bias"] = b
    o = run("layernorm", t, dict(N=N, C=C, bias=int(bias), eps=1e-5))
    tag = f"layernorm N={N} C={C} bias={int(bias)}"
    xd = x.detach()
    check(tag + " out", o["out"], y)
    check(tag + " mean", o["mean"], xd.mean(-1))
    check(tag + " rstd", o["rstd"], 1 / torch.sqrt(xd.var(-1, unbiased=False) + 1e-5))
    check(tag + " dinp", o["dinp"], x.grad)
    check(tag + " dweight", o["dweight"], w.grad)
    if bias:
        check(tag + " dbias", o["dbias"], b.grad)


def test_rmsnorm(N, C):
    x = leaf(N, C)
    w = (1 + 0.1 * torch.randn(C)).requires_grad_(True)
    dout = torch.randn(N, C)
    rstd = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)
    y = x * rstd * w
    y.backward(dout)
    o = run("rmsnorm", {"inp": x, "weight": w, "dout": dout}, dict(N=N, C=C, eps=1e-6))
    tag = f"rmsnorm N={N} C={C}"
    check(tag + " out", o["out"], y)
    check(tag + " rstd", o["rstd"], rstd)
    check(tag + " dinp", o["dinp"], x.grad)
    check(tag + " dweight", o["dweight"], w.grad)


def test_act(kind, n):
    x = leaf(n, scale=3.0)
    dout = torch.randn(n)
    if kind == 0:
        y = F.gelu(x, approximate="tanh")
    elif kind == 1:
        y = F.gelu(x)
    else:
        y = F.relu(x)
    y.backward(dout)
    o = run("act", {"inp": x, "dout": dout}, dict(n=n, kind=kind))
    tag = f"act {['gelu_tanh', 'gelu_erf', 'relu'][kind]} n={n}"
    check(tag + " out", o["out"], y)
    check(tag + " dinp", o["dinp"], x.grad)


def test_residual(n):
    a, b = leaf(n), leaf(n)
    dout = torch.randn(n)
    y = a + b
    y.backward(dout)
    o = run("residual", {"a": a, "b": b, "dout": dout}, dict(n=n))
    check(f"residual n={n} out", o["out"], y)
    check(f"residual n={n} da", o["da"], a.grad)
    check(f"residual n={n} db", o["db"], b.grad)


def torch_attention(q, k, v, B, Tq, Tk, NH, NKV, hs, scale, causal, window=0, key_mask=None, starts=None,
                    rel_bias=None, drop_mask=None, drop_p=0.0):
    """softmax(scale q k^T + bias, visible keys) V, the dense way, and each row's log-sum-exp"""
    q = q.view(B, Tq, NH, hs).transpose(1, 2)
    k = k.view(B, Tk, NKV, hs).transpose(1, 2).repeat_interleave(NH // NKV, dim=1)
    v = v.view(B, Tk, NKV, hs).transpose(1, 2).repeat_interleave(NH // NKV, dim=1)
    s = (q @ k.transpose(-2, -1)) * scale
    i = torch.arange(Tq).view(Tq, 1)
    j = torch.arange(Tk).view(1, Tk)
    if rel_bias is not None:
        s = s + rel_bias[:, j - i + Tq - 1]
    off = Tk - Tq
    vis = torch.ones(B, 1, Tq, Tk, dtype=torch.bool)
    if causal:
        vis = vis & (j <= i + off)
    if window:
        vis = vis & (j > i + off - window)
    if starts is not None:
        vis = vis & (j.view(1, 1, 1, Tk) >= starts.view(B, 1, Tq, 1))
    if key_mask is not None:
        vis = vis & (key_mask != 0).view(B, 1, 1, Tk)
    vis = vis.expand(B, NH, Tq, Tk)
    row_any = vis.any(-1, keepdim=True)
    s = s.masked_fill(~vis, float("-inf"))
    s = torch.where(row_any, s, torch.zeros_like(s))  # rows seeing no key: no NaN, zeroed below
    lse = torch.logsumexp(s, dim=-1)
    p = F.softmax(s, dim=-1) * vis
    if drop_mask is not None:
        p = p * drop_mask / (1.0 - drop_p)
    y = (p @ v).transpose(1, 2).contiguous().view(B, Tq, NH * hs)
    return y, lse, row_any.squeeze(-1)


def test_attention(B, Tq, NH, hs, causal, key_mask=None, label="", Tk=None, NKV=None, window=0, starts=None,
                   bias=False, drop_p=0.0, scale=None):
    Tk = Tk or Tq
    NKV = NKV or NH
    scale = 1.0 / math.sqrt(hs) if scale is None else scale
    q, k, v = leaf(B, Tq, NH * hs), leaf(B, Tk, NKV * hs), leaf(B, Tk, NKV * hs)
    rel = leaf(NH, Tq + Tk - 1) if bias else None
    drop = (torch.rand(B, NH, Tq, Tk) >= drop_p).to(torch.int32) if drop_p > 0 else None
    dout = torch.randn(B, Tq, NH * hs)
    y, lse, rows = torch_attention(q, k, v, B, Tq, Tk, NH, NKV, hs, scale, causal, window, key_mask, starts, rel,
                                   drop, drop_p)
    y.backward(dout)
    t = {"q": q, "k": k, "v": v, "dout": dout}
    if key_mask is not None:
        t["key_mask"] = key_mask.to(torch.int32)
    if starts is not None:
        t["starts"] = starts.to(torch.int32)
    if bias:
        t["rel_bias"] = rel
    if drop is not None:
        t["drop_mask"] = drop
    o = run("attention", t, dict(B=B, Tq=Tq, Tk=Tk, NH=NH, NKV=NKV, hs=hs, scale=scale, causal=int(causal),
                                 window=window, mask=int(key_mask is not None), starts=int(starts is not None),
                                 bias=int(bias), drop=drop_p))
    tag = f"attention B={B} T={Tq}x{Tk} NH={NH}/{NKV} hs={hs} causal={int(causal)} {label}"
    check(tag + " out", o["out"], y)
    got = torch.from_numpy(o["lse"].astype(np.float64)).view(B, NH, Tq)
    rows = rows.expand(B, NH, Tq)
    check(tag + " lse", got[rows], lse.detach()[rows])
    check(tag + " lse empty rows", (got[~rows] == float("inf")).double(), torch.ones(int((~rows).sum())))
    check(tag + " dq", o["dq"], q.grad)
    check(tag + " dk", o["dk"], k.grad)
    check(tag + " dv", o["dv"], v.grad)
    if bias:
        check(tag + " drel_bias", o["drel_bias"], rel.grad)


def packed_starts(B, T, lengths):
    """starts (B,T) of examples of the given lengths packed one after another in each row"""
    st = torch.zeros(B, T, dtype=torch.int32)
    for b in range(B):
        t = 0
        for n in lengths[b]:
            st[b, t:t + n] = t
            t += n
        st[b, t:] = torch.arange(t, T, dtype=torch.int32) if t < T else st[b, t:]
    return st


def test_crossentropy(N, V, inplace=False, scale=2.0):
    logits = leaf(N, V, scale=scale)
    targets = torch.randint(0, V, (N,), dtype=torch.int32)
    targets[1] = -1
    targets[N - 2] = -1
    mask = (targets >= 0).float()
    dlosses = mask / mask.sum()
    losses = F.cross_entropy(logits, targets.long(), reduction="none", ignore_index=-1)
    losses.backward(dlosses)
    o = run("crossentropy", {"logits": logits, "targets": targets, "dlosses": dlosses},
            dict(N=N, V=V, inplace=int(inplace)))
    tag = f"crossentropy N={N} V={V} inplace={int(inplace)}"
    check(tag + " losses", o["losses"], losses)
    check(tag + " dlogits", o["dlogits"], logits.grad)
    if V > 10000:
        # at large V torch's own fp32 error approaches 1e-5 (it exponentiates log-softmax),
        # so also check against float64 to show ours is the accurate side
        ld = logits.detach().double().requires_grad_(True)
        l64 = F.cross_entropy(ld, targets.long(), reduction="none", ignore_index=-1)
        l64.backward(dlosses.double())
        check(tag + " losses vs float64", o["losses"], l64)
        check(tag + " dlogits vs float64", o["dlogits"], ld.grad)


def test_adamw(n, steps):
    p0 = torch.randn(n)
    grads = torch.randn(steps, n)
    hp = dict(lr=1e-2, beta1=0.9, beta2=0.95, eps=1e-8, wd=0.1)
    p = torch.nn.Parameter(p0.clone())
    opt = torch.optim.AdamW([p], lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"],
                            weight_decay=hp["wd"])
    traj = []
    for s in range(steps):
        p.grad = grads[s].clone()
        opt.step()
        traj.append(p.detach().clone())
    o = run("adamw", {"params": p0, "grads": grads}, dict(n=n, steps=steps, **hp))
    tag = f"adamw n={n} steps={steps}"
    got = o["traj"].reshape(steps, n)
    for s in range(steps):
        check(f"{tag} params step {s + 1}", got[s], traj[s])
    st = opt.state[p]
    check(tag + " m", o["m"], st["exp_avg"])
    check(tag + " v", o["v"], st["exp_avg_sq"])


def test_global_norm(n):
    g = torch.randn(n)
    o = run("global_norm", {"g": g}, dict(n=n, scale=0.37))
    check(f"global_norm n={n} norm", o["norm"], torch.linalg.vector_norm(g.double()).reshape(1))
    check(f"global_norm n={n} scale_inplace", o["scaled"], g * 0.37)


def main():
    if not os.path.exists(BIN):
        print(f"missing {BIN} (set LMKIT_BIN to the build dir)")
        print("0 passed, 1 failed")
        return 1
    test_matmul(64, 96, 80, True)
    test_matmul(37, 50, 70, False)
    test_matmul(256, 768, 512, True)
    test_embedding(64, 48, 20, False)
    test_embedding(97, 200, 500, True)
    test_layernorm(64, 768, True)
    test_layernorm(33, 50, False)
    test_rmsnorm(64, 768)
    test_rmsnorm(7, 33)
    for kind in (0, 1, 2):
        test_act(kind, 100003)
    test_residual(70001)
    test_attention(1, 8, 1, 16, True, label="single head")
    test_attention(3, 40, 4, 12, True, label="multi head")
    test_attention(2, 150, 2, 32, True, label="3 row blocks")
    test_attention(2, 600, 2, 32, True, label="3 key tiles (online softmax)")
    km = torch.ones(3, 24, dtype=torch.int32)
    km[0, 18:] = 0           # padding masks several keys
    km[1, 5:] = 0            # a short sequence
    km[2, :] = 0             # a sequence with no visible key at all
    test_attention(3, 24, 4, 8, False, km, label="key mask")
    km2 = torch.ones(2, 100, dtype=torch.int32)
    km2[0, 0] = 0            # under causal, query 0 sees no key
    km2[0, 60:] = 0
    km2[1, 90:] = 0
    test_attention(2, 100, 2, 16, True, km2, label="causal+mask")
    test_attention(2, 70, 4, 16, False, None, label="bidirectional")
    test_attention(2, 300, 8, 16, True, NKV=2, label="grouped-query")
    test_attention(1, 700, 2, 16, True, window=100, label="sliding window")
    test_attention(2, 520, 2, 16, True, starts=packed_starts(2, 520, [[100, 300, 90], [520]]), label="packed")
    km3 = torch.ones(2, 300, dtype=torch.int32)
    km3[0, 250:] = 0
    km3[1, 10:20] = 0
    test_attention(2, 37, 4, 16, False, km3, Tk=300, bias=True, scale=1.0, label="cross, mask, bias, scale 1")
    test_attention(2, 300, 4, 16, True, bias=True, scale=1.0, label="causal relative bias")
    test_attention(1, 50, 2, 16, True, Tk=400, label="causal cross (Tq < Tk)")
    test_attention(2, 300, 4, 16, True, NKV=2, drop_p=0.1, label="dropout")
    test_attention(1, 2048, 2, 32, True, label="T=2048")
    km4 = torch.ones(1, 2048, dtype=torch.int32)
    km4[0, 1500:] = 0
    km4[0, 3:40] = 0
    test_attention(1, 2048, 2, 32, False, km4, label="T=2048 key mask")
    test_crossentropy(16, 1000)
    test_crossentropy(16, 1000, inplace=True)
    test_crossentropy(32, 50257, scale=3.0)
    test_adamw(10007, 10)
    test_global_norm(1000003)
    test_global_norm(5)
    print("worst relative error per op: " + ", ".join(f"{k} {v:.1e}" for k, v in worst.items()))
    print(f"{results['pass']} passed, {results['fail']} failed")
    return 0 if results["fail"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
