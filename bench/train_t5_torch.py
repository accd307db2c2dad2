"""PyTorch CPU peer for bench/train_t5: the same T5 (pre-RMSNorm, no biases, unscaled
scores, relative position bias of block 0 shared by the stack, ReLU or gated-GELU FFN,
tied head with the d_model^-0.5 rescale or untied), batch and threads,
torch.optim.AdamW with the same decay groups and gradient clipping. Prints one JSON
line like bench_train_t5.

usage: train_t5_torch.py LAYERS HEADS DIM FF VOCAB BATCH INPUT TARGET STEPS SGEMM_PEAK_GFLOPS THREADS [GATED]"""
import json
import math
import resource
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def bucket(rel, bidirectional, nb=32, md=128):   # transformers' T5Attention._relative_position_bucket
    out = 0
    if bidirectional:
        nb //= 2
        out += (rel > 0).long() * nb
        rel = rel.abs()
    else:
        rel = -torch.min(rel, torch.zeros_like(rel))
    exact = nb // 2
    large = exact + (torch.log(rel.float() / exact) / math.log(md / exact) * (nb - exact)).long()
    return out + torch.where(rel < exact, rel, torch.min(large, torch.full_like(large, nb - 1)))


class RMS(nn.Module):
    def __init__(self, C):
        super().__init__()
        self.w = nn.Parameter(torch.ones(C))

    def forward(self, x):
        return self.w * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)


class Attn(nn.Module):
    def __init__(self, C, H):
        super().__init__()
        self.H = H
        self.q, self.k, self.v, self.o = (nn.Linear(C, C, bias=False) for _ in range(4))

    def forward(self, x, kv, bias):
        B, Tq, C = x.shape
        Tk = kv.shape[1]
        q = self.q(x).view(B, Tq, self.H, -1).transpose(1, 2)
        k = self.k(kv).view(B, Tk, self.H, -1).transpose(1, 2)
        v = self.v(kv).view(B, Tk, self.H, -1).transpose(1, 2)
        s = q @ k.transpose(-2, -1)
        if bias is not None:
            s = s + bias
        return self.o((s.softmax(-1) @ v).transpose(1, 2).reshape(B, Tq, C))


class FFN(nn.Module):
    def __init__(self, C, Fw, gated):
        super().__init__()
        self.gated = gated
        self.wi = nn.Linear(C, Fw, bias=False)
        self.wi1 = nn.Linear(C, Fw, bias=False) if gated else None
        self.wo = nn.Linear(Fw, C, bias=False)

    def forward(self, x):
        h = F.gelu(self.wi(x), approximate="tanh") * self.wi1(x) if self.gated else F.relu(self.wi(x))
        return self.wo(h)


class Block(nn.Module):
    def __init__(self, C, H, Fw, gated, cross):
        super().__init__()
        self.n1, self.att = RMS(C), Attn(C, H)
        self.nx, self.xatt = (RMS(C), Attn(C, H)) if cross else (None, None)
        self.n2, self.ffn = RMS(C), FFN(C, Fw, gated)

    def forward(self, x, bias, enc=None):
        h = self.n1(x)
        x = x + self.att(h, h, bias)
        if self.xatt is not None:
            x = x + self.xatt(self.nx(x), enc, None)
        return x + self.ffn(self.n2(x))


class T5(nn.Module):
    def __init__(self, L, H, C, Fw, V, gated):
        super().__init__()
        self.C, self.H, self.tied = C, H, not gated
        self.shared = nn.Embedding(V, C)
        self.enc = nn.ModuleList(Block(C, H, Fw, gated, False) for _ in range(L))
        self.dec = nn.ModuleList(Block(C, H, Fw, gated, True) for _ in range(L))
        self.enc_rel, self.dec_rel = nn.Embedding(32, H), nn.Embedding(32, H)
        self.enc_norm, self.dec_norm = RMS(C), RMS(C)
        self.lm_head = None if self.tied else nn.Linear(C, V, bias=False)

    def bias(self, table, T, bidirectional):
        pos = torch.arange(T)
        b = table(bucket(pos[None, :] - pos[:, None], bidirectional)).permute(2, 0, 1)[None]
        if not bidirectional:
            b = b.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf"))
        return b

    def forward(self, enc, dec, labels):
        e = self.shared(enc)
        eb = self.bias(self.enc_rel, enc.shape[1], True)
        for blk in self.enc:
            e = blk(e, eb)
        e = self.enc_norm(e)
        d = self.shared(dec)
        db = self.bias(self.dec_rel, dec.shape[1], False)
        for blk in self.dec:
            d = blk(d, db, e)
        d = self.dec_norm(d)
        logits = d * self.C ** -0.5 @ self.shared.weight.T if self.tied else self.lm_head(d)
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1))


def main():
    L, H, C, Fw, V, B, S, T, steps = (int(a) for a in sys.argv[1:10])
    peak, threads = float(sys.argv[10]) * 1e9, int(sys.argv[11])
    gated = len(sys.argv) > 12 and sys.argv[12] == "1"
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = T5(L, H, C, Fw, V, gated)
    decay = [p for n, p in model.named_parameters() if p.dim() == 2 and "shared" not in n and "_rel" not in n]
    ids = {id(p) for p in decay}
    rest = [p for p in model.parameters() if id(p) not in ids]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                            lr=1e-4, betas=(0.9, 0.95), eps=1e-8)
    enc = torch.randint(0, V, (B, S))
    labels = torch.randint(0, V, (B, T))
    dec = torch.cat([torch.zeros(B, 1, dtype=torch.long), labels[:, :-1]], 1)
    times = []
    for s in range(steps + 1):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = model(enc, dec, labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if s:
            times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    A, FW = C, (2 if gated else 1) * Fw
    enc_lin, dec_lin, xkv = 4 * C * A + (FW + Fw) * C, 6 * C * A + (FW + Fw) * C, 2 * C * A
    flops = B * (6 * (L * (S * enc_lin + T * dec_lin + S * xkv) + T * C * V) + 12 * A * L * (S * S + T * T + T * S))
    print(json.dumps({"impl": "pytorch", "layers": L, "dim": C, "batch": B, "input": S, "target": T, "threads": threads,
                      "step_s": round(med, 4), "tokens_per_s": round(B * (S + T) / med, 1),
                      "mfu": round(flops / med / peak, 3), "sgemm_peak_gflops": peak / 1e9,
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                      "loss": round(loss.item(), 4), "torch": torch.__version__}))


if __name__ == "__main__":
    main()
