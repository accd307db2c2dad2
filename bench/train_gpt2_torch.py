"""PyTorch CPU peer for bench/train_gpt2: the same GPT-2 (pre-LN, tanh GELU,
tied head), batch and threads, torch.optim.AdamW with the same decay groups
and gradient clipping. Prints one JSON line like bench_train_gpt2.

usage: train_gpt2_torch.py LAYERS HEADS DIM VOCAB BATCH SEQ STEPS SGEMM_PEAK_GFLOPS THREADS [ATTN] [PRECISION] [DROPOUT]
ATTN: dense (default: the (T,T) matrix, as lmkit's kernel once was) or sdpa
(F.scaled_dot_product_attention, PyTorch's memory-efficient kernel).
PRECISION: fp32 (default) or bf16: the forward under torch.autocast("cpu", torch.bfloat16), PyTorch's
mixed precision on the CPU (matmuls in bf16 through oneDNN, fp32 weights and optimiser).
DROPOUT: nanoGPT's dropout rate (default 0) on the embeddings, the attention probabilities and both
residual branches, where lmkit's GPT-2 drops."""
import json
import math
import resource
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, C, NH, sdpa, p):
        super().__init__()
        self.sdpa, self.p = sdpa, p
        self.ln_1, self.ln_2 = nn.LayerNorm(C), nn.LayerNorm(C)
        self.c_attn, self.c_proj = nn.Linear(C, 3 * C), nn.Linear(C, C)
        self.c_fc, self.mlp_proj = nn.Linear(C, 4 * C), nn.Linear(4 * C, C)
        self.NH = NH

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.NH, C // self.NH).transpose(1, 2) for t in (q, k, v))
        if self.sdpa:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=self.p)
        else:
            att = (q @ k.transpose(-2, -1)) / math.sqrt(C // self.NH)
            att = att.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf")).softmax(-1)
            y = F.dropout(att, self.p) @ v
        x = x + F.dropout(self.c_proj(y.transpose(1, 2).reshape(B, T, C)), self.p)
        return x + F.dropout(self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh")), self.p)


class GPT(nn.Module):
    def __init__(self, L, NH, C, V, P, sdpa, p):
        super().__init__()
        self.p = p
        self.wte, self.wpe = nn.Embedding(V, C), nn.Embedding(P, C)
        self.h = nn.ModuleList(Block(C, NH, sdpa, p) for _ in range(L))
        self.ln_f = nn.LayerNorm(C)

    def forward(self, idx, tgt):
        x = F.dropout(self.wte(idx) + self.wpe(torch.arange(idx.shape[1])), self.p)
        for b in self.h:
            x = b(x)
        logits = self.ln_f(x) @ self.wte.weight.T
        return F.cross_entropy(logits.view(-1, logits.size(-1)), tgt.view(-1))


def main():
    L, NH, C, V, B, T, steps = (int(a) for a in sys.argv[1:8])
    peak, threads = float(sys.argv[8]) * 1e9, int(sys.argv[9])
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    sdpa = len(sys.argv) > 10 and sys.argv[10] == "sdpa"
    bf16 = len(sys.argv) > 11 and sys.argv[11] == "bf16"
    p = float(sys.argv[12]) if len(sys.argv) > 12 else 0.0
    P = max(1024, T)
    model = GPT(L, NH, C, V, P, sdpa, p)
    decay = [p for n, p in model.named_parameters() if p.dim() == 2 and "wte" not in n and "wpe" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.dim() == 2 and "wte" not in n and "wpe" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                            lr=1e-4, betas=(0.9, 0.95), eps=1e-8)
    data = torch.randint(0, V, (B * T + 1,))
    x, y = data[:-1].view(B, T), data[1:].view(B, T)
    times = []
    for s in range(steps + 1):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if s or not steps:   # STEPS 0: the warm-up step alone, timed
            times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    n_params = sum(p.numel() for p in model.parameters())
    n_nonemb = n_params - V * C - P * C
    fpt = 6 * n_nonemb + 6 * C * V + 12 * L * C * T
    print(json.dumps({"impl": "pytorch" + (" sdpa" if sdpa else "") + (" bf16" if bf16 else "") + (f" dropout {p}" if p else ""),
                      "precision": "bf16" if bf16 else "fp32", "layers": L, "dim": C, "batch": B, "seq": T, "threads": threads,
                      "step_s": round(med, 4), "tokens_per_s": round(B * T / med, 1),
                      "mfu": round(B * T / med * fpt / peak, 3), "sgemm_peak_gflops": peak / 1e9,
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                      "loss": round(loss.item(), 4), "torch": torch.__version__}))


if __name__ == "__main__":
    main()
