"""The preference objectives against PyTorch autograd (src/train/objectives/
reward.c and dpo.c, through tests/reference/ref_posttrain.c): one micro-batch
of the real objective on a tiny GPT-2, its loss and EVERY parameter gradient,
must agree with a float64 PyTorch model (test_gpt.py's torch_hidden) to 1e-5
relative error; so must the evaluation figures and, for DPO, the reference
log-probabilities that lm_pref_logps caches.

Pairs: right-padded sequences of different lengths, prompt tokens then
response tokens (mask 1), as the chat template lays them out.

  reward (scalar head, pooled at the last real token): TRL's RewardTrainer,
      mean -log sigmoid(r_c - r_r - margin) + center * mean (r_c + r_r)^2,
      without and with margins and centering;
  DPO and its kin on the LM head, with s = sum over response positions of
      log softmax(logits)[next token], a = s / n, and a reference model (the
      policy's parameters plus noise) for sigmoid, ipo and hinge, as TRL
      defines them:
      sigmoid  -logsigmoid(beta ((s_c - s_r) - (sref_c - sref_r)))
      ipo      ((a_c - a_r) - (aref_c - aref_r) - 1 / (2 beta))^2
      hinge    relu(1 - beta ((s_c - s_r) - (sref_c - sref_r)))
      simpo    -logsigmoid(beta (a_c - a_r) - gamma)
      orpo     CE(chosen rows, every next real token) - beta mean logsigmoid(log-odds),
               log-odds = (a_c - a_r) - (log1p(-exp(a_c)) - log1p(-exp(a_r)))
"""
import os
import subprocess
import sys
import tempfile

import json
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from refutil import BIN, Checker, read_safetensors, rel_err  # noqa: E402
from test_gpt import torch_hidden  # noqa: E402

HEAD_LM, HEAD_SCALAR = 4, 6   # lmkit.h lm_head_kind
LOSSES = {"sigmoid": 0, "ipo": 1, "hinge": 2, "simpo": 3, "orpo": 4}
MODEL = dict(vocab=61, positions=24, dim=32, layers=2, heads=4, inner=0, rms=0, pre_ln=1, act=0, causal=1, bias=1,
             tie=1, eps=1e-5, pad=60)
# (prompt length, chosen response length, rejected response length) of each pair
SHAPES = [(5, 4, 7), (9, 2, 3), (3, 8, 1), (6, 5, 5)]

VARIANTS = {
    "reward": dict(kind="reward", head=HEAD_SCALAR, center=0.0, margins=False),
    "reward + margin + center 0.3": dict(kind="reward", head=HEAD_SCALAR, center=0.3, margins=True),
    "dpo sigmoid beta 0.5": dict(kind="dpo", loss="sigmoid", beta=0.5),
    "dpo ipo beta 0.3": dict(kind="dpo", loss="ipo", beta=0.3),
    "dpo hinge beta 0.4": dict(kind="dpo", loss="hinge", beta=0.4),
    # pairs 0 and 1 swapped: their policy margins beat the reference's, past the hinge at beta 3
    "dpo hinge beta 3, two pairs past the hinge": dict(kind="dpo", loss="hinge", beta=3.0, swap=(0, 1)),
    "simpo beta 2 gamma 0.7": dict(kind="dpo", loss="simpo", beta=2.0, gamma=0.7),
    "orpo beta 0.2": dict(kind="dpo", loss="orpo", beta=0.2),
}


def make_pairs(seed, margins, swap=()):
    g = torch.Generator().manual_seed(seed)
    V, pad = MODEL["vocab"], MODEL["pad"]
    pairs = []
    for i, (p, c, r) in enumerate(SHAPES):
        prompt = torch.randint(0, V - 1, (p,), generator=g).tolist()      # real ids never equal pad
        side = {}
        for name, n in (("chosen", c), ("rejected", r)):
            resp = torch.randint(0, V - 1, (n,), generator=g).tolist()
            side[name] = prompt + resp
            side[name + "_mask"] = [0] * p + [1] * n
        side["margin"] = float(torch.randn(1, generator=g)) if margins else 0.0
        if i in swap:
            side = {"chosen": side["rejected"], "chosen_mask": side["rejected_mask"], "rejected": side["chosen"],
                    "rejected_mask": side["chosen_mask"], "margin": side["margin"]}
        pairs.append(side)
    assert all(x != pad for pr in pairs for x in pr["chosen"] + pr["rejected"])
    return pairs


def padded(pairs):
    """ids (2n, T) rows chosen, rejected, ... right-padded with pad; lengths; masks (response) as lists"""
    rows = [pr[s] for pr in pairs for s in ("chosen", "rejected")]
    masks = [pr[s + "_mask"] for pr in pairs for s in ("chosen", "rejected")]
    T = max(len(x) for x in rows)
    ids = torch.full((len(rows), T), MODEL["pad"], dtype=torch.long)
    for i, x in enumerate(rows):
        ids[i, :len(x)] = torch.tensor(x)
    return ids, [len(x) for x in rows], masks


def load_params(path):
    return {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in read_safetensors(path).items()}


def seq_logps(P, cfg, ids, lens, masks):
    """per row: (sum of response log-probs, response count, sum of all next-token log-probs, their count)"""
    x = torch_hidden(P, cfg, ids, None)
    logp = torch.log_softmax(x @ P["wte.weight"].T, dim=-1)                 # (2n, T, V)
    s, n, s_all, n_all = [], [], [], []
    for i, (k, m) in enumerate(zip(lens, masks)):
        nxt = ids[i, 1:k]
        lp = logp[i, :k - 1].gather(1, nxt.view(-1, 1)).squeeze(1)         # log p(token t+1) at t
        resp = torch.tensor(m[1:k], dtype=torch.bool)
        s.append(lp[resp].sum()); n.append(float(resp.sum()))
        s_all.append(lp.sum()); n_all.append(float(k - 1))
    return torch.stack(s), torch.tensor(n, dtype=torch.float64), torch.stack(s_all), torch.tensor(n_all, dtype=torch.float64)


def reward_torch(P, cfg, pairs, var):
    ids, lens, _ = padded(pairs)
    mask = torch.zeros(ids.shape, dtype=torch.uint8)
    for i, k in enumerate(lens):
        mask[i, :k] = 1
    x = torch_hidden(P, cfg, ids, mask)
    last = torch.tensor(lens) - 1
    r = (x[torch.arange(len(lens)), last] @ P["classifier.weight"].T).squeeze(-1)
    rc, rr = r[0::2], r[1::2]
    m = torch.tensor([pr["margin"] for pr in pairs], dtype=torch.float64)
    loss = -F.logsigmoid(rc - rr - m).mean() + var["center"] * ((rc + rr) ** 2).mean()
    figures = [loss.item(), (rc > rr).double().mean().item(), (rc - rr).mean().item(), rc.mean().item(), rr.mean().item()]
    return loss, figures


def dpo_torch(P, R, cfg, pairs, var):
    ids, lens, masks = padded(pairs)
    beta, gamma, kind = var["beta"], var.get("gamma", 0.5), var["loss"]
    s, n, s_all, n_all = seq_logps(P, cfg, ids, lens, masks)
    with torch.no_grad():
        sref, _, _, _ = seq_logps(R, cfg, ids, lens, masks)
    sc, sr, nc, nr = s[0::2], s[1::2], n[0::2], n[1::2]
    rc_, rr_ = sref[0::2], sref[1::2]
    ac, ar = sc / nc, sr / nr
    if kind in ("sigmoid", "hinge"):
        logits = (sc - sr) - (rc_ - rr_)
        losses = -F.logsigmoid(beta * logits) if kind == "sigmoid" else torch.relu(1 - beta * logits)
        if var.get("swap"):   # the variant meant to have pairs on both sides of the hinge
            assert 0 < int((beta * logits > 1).sum()) < len(pairs), (beta * logits).tolist()
        cr, rj = beta * (sc - rc_), beta * (sr - rr_)
    elif kind == "ipo":   # TRL: length-averaged log-probs for policy and reference
        logits = (ac - ar) - (rc_ / nc - rr_ / nr)
        losses = (logits - 1 / (2 * beta)) ** 2
        cr, rj = beta * (ac - rc_ / nc), beta * (ar - rr_ / nr)
    elif kind == "simpo":  # TRL CPOTrainer loss_type="simpo" (cpo_alpha 0)
        logits = (ac - ar) - gamma / beta
        losses = -F.logsigmoid(beta * logits)
        cr, rj = beta * ac, beta * ar
    else:                  # TRL ORPOTrainer
        log_odds = (ac - ar) - (torch.log1p(-torch.exp(ac)) - torch.log1p(-torch.exp(ar)))
        losses = -beta * F.logsigmoid(log_odds)
        cr, rj = beta * ac, beta * ar
    loss = losses.mean()
    if kind == "orpo":    # NLL over every next real token of the chosen rows (prompt included), token mean
        loss = loss + (-s_all[0::2].sum() / n_all[0::2].sum())
    figures = [loss.item(), cr.mean().item(), rj.mean().item(), (cr - rj).mean().item(), (cr > rj).double().mean().item()]
    return loss, figures, sref


def main():
    chk = Checker(1e-5)
    for name, var in VARIANTS.items():
        cfg = dict(MODEL, head=var.get("head", HEAD_LM))
        pairs = make_pairs(21, var.get("margins", False), var.get("swap", ()))
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "config.txt"), "w") as f:
                for k in ("vocab", "positions", "dim", "layers", "heads", "head", "pad"):
                    f.write(f"{k} {cfg[k]}\n")
                if var["kind"] == "reward":
                    f.write(f"center {var['center']}\n")
                else:
                    f.write(f"loss {LOSSES[var['loss']]}\nbeta {var['beta']}\ngamma {var.get('gamma', 0.5)}\n")
            with open(os.path.join(d, "pairs.json"), "w") as f:
                json.dump({"pairs": pairs}, f)
            subprocess.run([os.path.join(BIN, "ref_posttrain"), var["kind"], d], check=True)
            P = load_params(os.path.join(d, "params.safetensors"))
            if var["kind"] == "reward":
                loss, figures = reward_torch(P, cfg, pairs, var)
                labels = ["loss", "accuracy", "margin", "reward chosen", "reward rejected"]
            else:
                R = load_params(os.path.join(d, "refparams.safetensors"))
                loss, figures, sref = dpo_torch(P, R, cfg, pairs, var)
                labels = ["loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"]
                ours_ref = np.fromfile(os.path.join(d, "ref_logps.bin"), dtype="<f8")
                chk.check(f"{name}: reference log-probs (lm_pref_logps) {np.round(ours_ref[:2], 3).tolist()}...",
                          rel_err(ours_ref, sref.numpy()))
            loss.backward()
            ours = float(open(os.path.join(d, "loss.txt")).read())
            chk.check(f"{name}: loss {ours:.6f}", abs(ours - loss.item()) / abs(loss.item()))
            G = read_safetensors(os.path.join(d, "grads.safetensors"))
            missing = [k for k in P if k not in G or P[k].grad is None]
            if missing:
                chk.check(f"{name}: gradients [missing {missing}]", 1.0)
            else:
                worst = max(G, key=lambda k: rel_err(G[k], P[k].grad.numpy()))
                chk.check(f"{name}: all {len(G)} gradients (worst {worst})", rel_err(G[worst], P[worst].grad.numpy()))
            ev = [float(x) for x in open(os.path.join(d, "eval.txt")).read().split()]
            for lab, a, b in zip(labels, ev, figures):
                # relative to max(|value|, 1): a mean reward near 0 is a difference of terms of order 1
                # (beta * log-probs of tens of nats), whose float32 rounding is what remains
                err = abs(a - b) / max(abs(b), 1.0)
                chk.check(f"{name}: evaluate {lab} {a:.6f}", err)
    chk.finish()


if __name__ == "__main__":
    main()
