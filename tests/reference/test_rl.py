"""The RL losses (src/train/rl_loss.c, through tests/reference/ref_rl.c) against
PyTorch, written the way TRL writes them, on fixed rollouts: n rows of up to T
completion tokens (ragged lengths), groups of G consecutive rows.

  k1, k3 and d k3 / d lp;
  GRPO advantages (r - mean) / (std + 1e-4) with scale_rewards group, batch, none (std unbiased);
  RLOO: rlhf_reward = score - kl_coef * sum k1, advantage = rlhf - leave-one-out mean;
  the policy loss and d loss / d log-probs (autograd), for GRPO's loss types grpo, bnpo/dapo,
      dapo with the batch's token count, dr_grpo, with beta 0 and 0.04 (k3), clip-higher (0.2, 0.28),
      and RLOO's sequence-level ratio;
  PPO: per-token KL-shaped rewards with the score at the last token, GAE (gamma, lambda) with
      TRL's loop, masked_whiten, the token-mean clipped surrogate, the clipped value loss (0.5 *
      masked mean of the larger square, cliprange_value) and their gradients, pg_clipfrac;
  the entropy of softmax(logits / temperature).
Each to <= 1e-5 relative error (against the largest magnitude).

PPO through the model (ref_rl ppo, the real objective of src/train/objectives/grpo.c): a tiny GPT-2
policy, its reference and a value model (a tokens head of one label), a fixed rollout batch with
ragged prompts and completions, some without a stop token (missing_eos_penalty). The objective's
second PPO epoch after the weights moved: its loss pg + vf_coef * vf, every gradient of the policy
and of the value model, and the metrics (objective/kl, scores, rlhf_reward, kl_coef, policy/
clipfrac, policy/entropy, loss/policy, loss/value, val/clipfrac) and the adapted kl_coef.
"""
import json
import os
import re
import subprocess
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from refutil import BIN, Checker, read_safetensors, rel_err  # noqa: E402
from test_gpt import torch_hidden  # noqa: E402

torch.set_default_dtype(torch.float64)
NORM = {"grpo": 0, "bnpo": 1, "dapo": 1, "dr_grpo": 2, "rloo": 3}


def rollouts(seed, n, T, V):
    g = np.random.default_rng(seed)
    lens = g.integers(1, T + 1, size=n).astype(np.int64)
    lens[0] = T
    old = (-np.abs(g.normal(1.0, 0.8, size=(n, T)))).astype(np.float32)
    lp = (old + g.normal(0, 0.25, size=(n, T))).astype(np.float32)   # many ratios beyond 1 +- 0.2
    ref = (old + g.normal(0, 0.3, size=(n, T))).astype(np.float32)
    return dict(len=lens, lp=lp, old=old, ref=ref,
                adv=g.normal(0, 1, size=(n, T)).astype(np.float32),
                v=g.normal(0, 1, size=(n, T)).astype(np.float32),
                vold=g.normal(0, 1, size=(n, T)).astype(np.float32),
                advrow=g.normal(0, 1, size=n).astype(np.float32),
                score=g.normal(0, 2, size=n).astype(np.float32),
                logits=g.normal(0, 2, size=(n, T, V)).astype(np.float32))


def t(x):
    return torch.tensor(np.asarray(x, dtype=np.float64))


def masked_mean(x, m):
    return (x * m).sum() / m.sum()


def masked_whiten(x, m):   # TRL core: masked_var(unbiased=True), shift_mean=True
    mean = masked_mean(x, m)
    var = masked_mean((x - mean) ** 2, m)
    var = var * (m.sum() / (m.sum() - 1))
    return (x - mean) * torch.rsqrt(var + 1e-8)


def grpo_loss(r, o, mask, lp, loss_type):
    """TRL GRPOTrainer._compute_loss (and RLOO's sequence-level variant)."""
    old, ref = t(r["old"]), t(r["ref"])
    if loss_type == "rloo":   # rloo_trainer.py: ratio of the sequences' summed log-probs
        ratio = torch.exp((lp * mask).sum(1) - (old * mask).sum(1))
        a = t(r["advrow"])
        l1, l2 = -a * ratio, -a * torch.clamp(ratio, 1 - o["clip_low"], 1 + o["clip_high"])
        return torch.max(l1, l2).mean(), (l2 > l1).double().mean()
    a = t(r["advrow"]).unsqueeze(1)
    coef_1 = torch.exp(lp - old)
    coef_2 = torch.clamp(coef_1, 1 - o["clip_low"], 1 + o["clip_high"])
    per_token_loss = -torch.min(coef_1 * a, coef_2 * a)
    if o["beta"]:
        per_token_loss = per_token_loss + o["beta"] * (torch.exp(ref - lp) - (ref - lp) - 1)
    clipped = ((coef_1 < 1 - o["clip_low"]) & (a < 0)) | ((coef_1 > 1 + o["clip_high"]) & (a > 0))
    clipfrac = masked_mean(clipped.double(), mask)
    if loss_type == "grpo":
        loss = ((per_token_loss * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()
    elif loss_type == "bnpo":
        loss = (per_token_loss * mask).sum() / mask.sum().clamp(min=1.0)
    elif loss_type == "dr_grpo":
        loss = (per_token_loss * mask).sum() / (per_token_loss.size(0) * o["denom"])
    else:   # dapo: num_items_in_batch, the generation batch's completion tokens
        loss = (per_token_loss * mask).sum() / o["denom"]
    return loss, clipfrac


def ppo(r, mask, c, lp=None, v=None):
    """TRL PPOTrainer.train: rewards, GAE, whitening; then the losses of one mini-batch, of r's lp and
    v (leaves) or of the given lp and v tensors (functions of a model's parameters)."""
    n, T = mask.shape
    lens = r["len"]
    old, ref, vold = t(r["old"]) * mask, t(r["ref"]) * mask, t(r["vold"]) * mask
    kl = old - ref
    rewards = -c["kl_coef"] * kl
    rewards[torch.arange(n), torch.tensor(lens - 1)] += t(r["score"])
    lastgaelam, rev = 0, []
    for k in reversed(range(T)):
        nextvalues = vold[:, k + 1] if k < T - 1 else 0.0
        delta = rewards[:, k] + c["gamma"] * nextvalues - vold[:, k]
        lastgaelam = delta + c["gamma"] * c["lam"] * lastgaelam
        rev.append(lastgaelam)
    adv = torch.stack(rev[::-1], axis=1)
    ret = adv + vold
    adv = torch.masked_fill(masked_whiten(adv, mask), mask == 0, 0)
    leaves = lp is None
    if leaves:
        lp, v = t(r["lp"]).requires_grad_(), t(r["v"]).requires_grad_()
    ratio = torch.exp(lp - t(r["old"]))
    pg_losses = -adv * ratio
    pg_losses2 = -adv * torch.clamp(ratio, 1.0 - c["clip_low"], 1.0 + c["clip_high"])
    pg_loss = masked_mean(torch.max(pg_losses, pg_losses2), mask)
    pg_clipfrac = masked_mean((pg_losses2 > pg_losses).double(), mask)
    if leaves:
        pg_loss.backward()
    vpredclipped = torch.clamp(v, t(r["vold"]) - c["cv"], t(r["vold"]) + c["cv"])
    vf_loss_max = torch.max(torch.square(v - ret), torch.square(vpredclipped - ret))
    vf_loss = 0.5 * masked_mean(vf_loss_max, mask)
    vf_clipfrac = masked_mean((torch.square(vpredclipped - ret) > torch.square(v - ret)).double(), mask)
    if not leaves:
        return dict(pg_loss=pg_loss, vf_loss=vf_loss, pg_clipfrac=pg_clipfrac.item(), vf_clipfrac=vf_clipfrac.item(),
                    kl=(kl * mask).sum(1), rewards=rewards)
    vf_loss.backward()
    return dict(rewards=rewards * mask, adv=adv, ret=ret * mask, pg=pg_loss.item(), pg_clipfrac=pg_clipfrac.item(),
                dlp=lp.grad * mask, vf=vf_loss.item(), vf_clipfrac=vf_clipfrac.item(), dv=v.grad * mask)


def run_case(ck, label, seed, n, T, G, V, pol, scale, c):
    r = rollouts(seed, n, T, V)
    mask = t(np.arange(T)[None, :] < r["len"][:, None])
    with tempfile.TemporaryDirectory() as d:
        cfg = dict(n=n, T=T, G=G, V=V, norm=NORM[pol["type"]], seq_ratio=int(pol["type"] == "rloo"),
                   adv_per_row=1, clip_low=pol["clip_low"], clip_high=pol["clip_high"],
                   beta=pol["beta"], denom=pol["denom"], scale={"group": 0, "batch": 1, "none": 2}[scale],
                   kl_coef=c["kl_coef"], gamma=c["gamma"], lam=c["lam"], cliprange_value=c["cv"],
                   temperature=c["temp"])
        with open(os.path.join(d, "config.txt"), "w") as f:
            f.writelines(f"{k} {v!r}\n" for k, v in cfg.items())
        for k, v in r.items():
            v.tofile(os.path.join(d, k + ".bin"))
        subprocess.run([os.path.join(BIN, "ref_rl"), d], check=True)

        def out(name, dt=np.float32, shape=None):
            x = np.fromfile(os.path.join(d, name + ".bin"), dtype=dt)
            return x.reshape(shape) if shape else x
        lp_, ref_ = t(r["lp"]), t(r["ref"])
        if pol["type"] == "grpo" and scale == "group":   # the per-token quantities once
            ck.check(f"{label}: k1", rel_err(out("k1", shape=(n, T)), lp_ - ref_))
            ck.check(f"{label}: k3", rel_err(out("k3", shape=(n, T)), torch.exp(ref_ - lp_) - (ref_ - lp_) - 1))
            x = lp_.clone().requires_grad_()
            (torch.exp(ref_ - x) - (ref_ - x) - 1).sum().backward()
            ck.check(f"{label}: d k3 / d lp", rel_err(out("k3grad", shape=(n, T)), x.grad))
            z = t(r["logits"]) / c["temp"]
            ent = torch.logsumexp(z, -1) - (torch.softmax(z, -1) * z).sum(-1)
            ck.check(f"{label}: entropy at temperature {c['temp']}", rel_err(out("entropy", np.float64, (n, T)), ent))

        # GRPO advantages (TRL)
        rw = t(r["score"]).view(-1, G)
        a = (rw - rw.mean(1, keepdim=True)).view(-1)
        if scale == "group":
            a = a / (rw.std(1).repeat_interleave(G) + 1e-4)
        elif scale == "batch":
            a = a / (t(r["score"]).std() + 1e-4)
        ck.check(f"{label}: GRPO advantages, scale_rewards {scale}", rel_err(out("grpo_adv"), a))
        # RLOO: KL-shaped sequence reward and the leave-one-out baseline (TRL's rloo_k x batch layout, transposed)
        kl = ((t(r["old"]) - ref_) * mask).sum(1)
        rlhf = (t(r["score"]) - c["kl_coef"] * kl).view(-1, G).T          # (rloo_k, prompts) as TRL reshapes
        baseline = (rlhf.sum(0) - rlhf) / (G - 1)
        ck.check(f"{label}: RLOO rlhf_reward", rel_err(out("rloo_rlhf"), rlhf.T.reshape(-1)))
        ck.check(f"{label}: RLOO advantages", rel_err(out("rloo_adv"), (rlhf - baseline).T.reshape(-1)))

        # the policy loss
        lp = t(r["lp"]).requires_grad_()
        loss, clipfrac = grpo_loss(r, pol, mask, lp, pol["type"])
        loss.backward()
        got = out("policy", np.float64)
        name = f"{label}: {pol['type']} loss (clip {pol['clip_low']}/{pol['clip_high']}, beta {pol['beta']})"
        ck.check(name, rel_err(got[0], loss.item()))
        ck.check(name + " d/d logp", rel_err(out("dlp", shape=(n, T)), lp.grad * mask))
        ck.check(name + " clipfrac", abs(got[1] - clipfrac.item()))
        lp0 = t(r["lp"])
        kl_tok = torch.exp(ref_ - lp0) - (ref_ - lp0) - 1 if pol["beta"] else lp0 - ref_
        ck.check(name + (" mean k3" if pol["beta"] else " mean k1"), rel_err(got[2], masked_mean(kl_tok, mask).item()))

        # PPO
        p = ppo(r, mask, dict(c, clip_low=pol["clip_low"], clip_high=pol["clip_high"]))
        ck.check(f"{label}: PPO KL-shaped rewards (kl_coef {c['kl_coef']})", rel_err(out("ppo_rewards", shape=(n, T)), p["rewards"]))
        ck.check(f"{label}: PPO whitened GAE advantages (gamma {c['gamma']}, lambda {c['lam']})",
                 rel_err(out("ppo_adv", shape=(n, T)), p["adv"]))
        ck.check(f"{label}: PPO returns", rel_err(out("ppo_ret", shape=(n, T)), p["ret"]))
        got = out("ppo_policy", np.float64)
        ck.check(f"{label}: PPO clipped surrogate", rel_err(got[0], p["pg"]))
        ck.check(f"{label}: PPO clipped surrogate d/d logp", rel_err(out("ppo_dlp", shape=(n, T)), p["dlp"]))
        ck.check(f"{label}: PPO pg_clipfrac", abs(got[1] - p["pg_clipfrac"]))
        got = out("value", np.float64)
        ck.check(f"{label}: PPO clipped value loss (cliprange_value {c['cv']})", rel_err(got[0], p["vf"]))
        ck.check(f"{label}: PPO value loss d/d v", rel_err(out("dv", shape=(n, T)), p["dv"]))
        ck.check(f"{label}: PPO vf_clipfrac", abs(got[1] - p["vf_clipfrac"]))


HEAD_TOKENS = 2   # lmkit.h lm_head_kind
MODEL = dict(vocab=61, positions=24, dim=32, layers=2, heads=4, inner=0, rms=0, pre_ln=1, act=0, causal=1, bias=1,
             tie=1, eps=1e-5, pad=60)


def ppo_model_case(ck, label, seed, c):
    """PPO through the model: the objective's second epoch on a fixed rollout batch."""
    g = np.random.default_rng(seed)
    n, P, T, V = 5, 6, 7, MODEL["vocab"]
    plen = g.integers(2, P + 1, size=n).astype(np.int64)
    lens = g.integers(1, T + 1, size=n).astype(np.int64)
    lens[0] = T
    stopped = np.array([1, 0, 1, 1, 0], dtype=np.uint8)
    prompt = g.integers(0, V - 1, size=(n, P)).astype(np.int32)
    comp = g.integers(0, V - 1, size=(n, T)).astype(np.int32)
    score = g.normal(0, 2, size=n).astype(np.float32)
    with tempfile.TemporaryDirectory() as d:
        cfg = dict(vocab=V, positions=MODEL["positions"], dim=MODEL["dim"], layers=MODEL["layers"], heads=MODEL["heads"],
                   pad=MODEL["pad"], n=n, P=P, T=T, **{k: c[k] for k in (
                       "temperature", "kl_coef", "target_kl", "kl_horizon", "gamma", "lam", "vf_coef", "cliprange_value",
                       "clip_low", "clip_high", "missing_eos_penalty")})
        with open(os.path.join(d, "config.txt"), "w") as f:
            f.writelines(f"{k} {v!r}\n" for k, v in cfg.items())
        for name, x in dict(prompt=prompt, plen=plen, comp=comp, len=lens, stopped=stopped, score=score).items():
            x.tofile(os.path.join(d, name + ".bin"))
        subprocess.run([os.path.join(BIN, "ref_rl"), "ppo", d], check=True)

        def params(name, grad=False):
            return {k: torch.tensor(v, dtype=torch.float64, requires_grad=grad)
                    for k, v in read_safetensors(os.path.join(d, name + ".safetensors")).items()}
        P0, R, W0 = params("policy0"), params("ref"), params("value0")
        P1, W1 = params("policy1", True), params("value1", True)
        mcfg = dict(MODEL)
        temp = c["temperature"]

        def forward(Pm, W=None):
            """per row: log-probs of the completion tokens at temperature, their entropies, values"""
            lp = torch.zeros(n, T, dtype=torch.float64)
            ent = torch.zeros(n, T, dtype=torch.float64)
            val = torch.zeros(n, T, dtype=torch.float64)
            for i in range(n):
                ids = torch.tensor(np.concatenate([prompt[i, :plen[i]], comp[i, :lens[i]]]), dtype=torch.long).view(1, -1)
                pos = torch.arange(plen[i] - 1, plen[i] + lens[i] - 1)   # the positions that predict the tokens
                x = torch_hidden(Pm if W is None else W, mcfg, ids, None)[0]
                if W is None:
                    z = (x @ Pm["wte.weight"].T)[pos] / temp
                    lsm = torch.log_softmax(z, -1)
                    y = torch.tensor(comp[i, :lens[i]], dtype=torch.long)
                    lp = lp.index_put((torch.full((lens[i],), i), torch.arange(lens[i])), lsm.gather(1, y.view(-1, 1))[:, 0])
                    ent = ent.index_put((torch.full((lens[i],), i), torch.arange(lens[i])), -(lsm.exp() * lsm).sum(-1))
                else:
                    v = (x @ W["token_classifier.weight"].T)[:, 0] + W["token_classifier.bias"][0]
                    val = val.index_put((torch.full((lens[i],), i), torch.arange(lens[i])), v[pos])
            return lp, ent, val

        mask = t(np.arange(T)[None, :] < lens[:, None])
        with torch.no_grad():
            old, _, _ = forward(P0)
            ref, _, _ = forward(R)
            _, _, vold = forward(None, W0)
        s_pen = score - c["missing_eos_penalty"] * (1 - stopped)
        r = dict(len=lens, old=old.numpy(), ref=ref.numpy(), vold=vold.numpy(), score=s_pen.astype(np.float64))
        lp, ent, _ = forward(P1)
        _, _, v = forward(None, W1)
        p = ppo(r, mask, dict(kl_coef=c["kl_coef"], gamma=c["gamma"], lam=c["lam"], cv=c["cliprange_value"],
                              clip_low=c["clip_low"], clip_high=c["clip_high"]), lp=lp, v=v)
        loss = p["pg_loss"] + c["vf_coef"] * p["vf_loss"]
        loss.backward()
        ours = float(open(os.path.join(d, "loss.txt")).read())
        ck.check(f"{label}: loss pg + vf_coef vf {ours:.6f}", rel_err(ours, loss.item()))
        for who, Pm, gname in (("policy", P1, "grads"), ("value model", W1, "vgrads")):
            G = read_safetensors(os.path.join(d, gname + ".safetensors"))
            missing = [k for k in Pm if k not in G or Pm[k].grad is None]
            if missing:
                ck.check(f"{label}: {who} gradients [missing {missing}]", 1.0)
                continue
            worst = max(G, key=lambda k: rel_err(G[k], Pm[k].grad.numpy()))
            ck.check(f"{label}: all {len(G)} {who} gradients (worst {worst})", rel_err(G[worst], Pm[worst].grad.numpy()))
        f = json.loads("{" + open(os.path.join(d, "fields.txt")).read() + "}")
        kl = p["kl"].mean().item()
        want = {"objective/kl": kl, "objective/scores": float(s_pen.astype(np.float64).mean()),
                "objective/rlhf_reward": float(s_pen.astype(np.float64).mean()) - c["kl_coef"] * kl,
                "objective/kl_coef": c["kl_coef"], "loss/policy": p["pg_loss"].item(), "loss/value": p["vf_loss"].item(),
                "policy/entropy": masked_mean(ent.detach(), mask).item()}
        for k, w in want.items():   # the metrics are printed with 6 significant digits
            ck.check(f"{label}: metrics {k} {f[k]}", abs(f[k] - w) / max(abs(w), 1e-3), 5e-6)
        for k, w in (("policy/clipfrac", p["pg_clipfrac"]), ("val/clipfrac", p["vf_clipfrac"])):
            ck.check(f"{label}: metrics {k} {f[k]} (of {int(mask.sum())} tokens)", abs(f[k] - w), 1e-3)
        coef = c["kl_coef"]
        if c["target_kl"] > 0:   # Ziegler et al. / TRL AdaptiveKLController.update(current, n_steps)
            e = min(max(kl / c["target_kl"] - 1, -0.2), 0.2)
            coef = coef * (1 + e * n / c["kl_horizon"])
        st = json.loads(open(os.path.join(d, "state.txt")).read())
        ck.check(f"{label}: kl_coef after the batch {st['kl_coef']:.6g}", rel_err(st["kl_coef"], coef))


def main():
    ck = Checker(1e-5)
    n, T, G, V = 12, 9, 4, 11
    base = dict(kl_coef=0.05, gamma=1.0, lam=0.95, cv=0.2, temp=1.0)
    cases = [
        ("grpo", "group", dict(type="grpo", clip_low=0.2, clip_high=0.2, beta=0.0, denom=0), base),
        ("grpo beta 0.04", "batch", dict(type="grpo", clip_low=0.2, clip_high=0.2, beta=0.04, denom=0),
         dict(base, gamma=0.9, lam=0.8, temp=0.7)),
        ("bnpo", "none", dict(type="bnpo", clip_low=0.2, clip_high=0.2, beta=0.0, denom=0), dict(base, kl_coef=0.2)),
        ("dapo clip-higher, batch tokens", "group", dict(type="dapo", clip_low=0.2, clip_high=0.28, beta=0.0, denom=173.0),
         dict(base, cv=0.05)),
        ("dr_grpo beta 0.1", "none", dict(type="dr_grpo", clip_low=0.2, clip_high=0.2, beta=0.1, denom=16.0), base),
        ("rloo", "group", dict(type="rloo", clip_low=0.2, clip_high=0.2, beta=0.0, denom=0), dict(base, kl_coef=0.1)),
    ]
    for i, (label, scale, pol, c) in enumerate(cases):
        run_case(ck, label, 100 + i, n, T, G, V, pol, scale, c)
    ppo_base = dict(temperature=1.0, kl_coef=0.05, target_kl=0.0, kl_horizon=10000.0, gamma=1.0, lam=0.95, vf_coef=0.1,
                    cliprange_value=0.2, clip_low=0.2, clip_high=0.2, missing_eos_penalty=1.0)
    ppo_model_case(ck, "PPO through the model", 300, ppo_base)
    ppo_model_case(ck, "PPO through the model, temperature 0.7, gamma 0.9, adaptive KL", 301,
                   dict(ppo_base, temperature=0.7, kl_coef=0.2, target_kl=0.5, kl_horizon=50.0, gamma=0.9, lam=0.8,
                        vf_coef=0.5, cliprange_value=0.05, clip_low=0.1, clip_high=0.1, missing_eos_penalty=0.5))
    ck.finish()


if __name__ == "__main__":
    main()
