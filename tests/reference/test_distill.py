"""Knowledge distillation (DistilBERT) against PyTorch autograd.

1. Loss and EVERY student parameter gradient: a tiny BERT teacher
   (ref_distill builds it), a student made from it by lm_distill_student and
   then perturbed, soft targets p = softmax(teacher MLM logits / tau) from
   lm_distill_soft_targets at the masked rows, and the student's
       alpha_ce * tau^2 * mean_rows KL(p || softmax(z / tau)) + alpha_mlm * CE  (+ NSP)
   through src/model/bert.c, compared with a float64 PyTorch model written from
   the same equations (the encoder and heads of test_bert.py): <= 1e-5 relative.
   Variants: DistilBERT's defaults (tau 2, alpha_ce 5, alpha_mlm 2) on a padded
   batch with segments; + the student's NSP loss, untied decoder, tanh GELU,
   tau 1; the KL alone over every row (no MLM labels), tau 4.
2. Student initialisation: every tensor copied from the teacher, student layer
   k from teacher layer round(k (L-1) / (N-1)) (DistilBERT's 0 2 4 7 9 11 for
   6 of 12).
3. Bad inputs (temperature 0, negative alpha, a soft target that is not a
   probability, a classification teacher, as many layers as the teacher) are
   errors with a message, not crashes."""
import os
import subprocess
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

from refutil import BIN, Checker, read_safetensors, rel_err
from test_bert import BASE, encoder, heads, load_params, make_batch, write_inputs

DISTILL = dict(BASE, layers=2, teacher_layers=3, tau=2.0, alpha_ce=5.0, alpha_mlm=2.0)
VARIANTS = {
    "distilbert defaults (tau 2, alpha_ce 5, alpha_mlm 2), mlm": dict(nsp_off=1),
    "mlm+nsp, untied, tanh gelu, tau 1, alpha_ce 0.5": dict(tie=0, act=0, tau=1.0, alpha_ce=0.5, alpha_mlm=1.0),
    "kl only over every row (no labels), tau 4, 4 -> 2 layers": dict(plain=1, type_vocab=0, no_labels=1, tau=4.0,
                                                                     alpha_mlm=0.0, teacher_layers=4),
}


def run(*args):
    return subprocess.run([os.path.join(BIN, "ref_distill"), *args], capture_output=True, text=True)


def check_grads(chk, name, cfg):
    with tempfile.TemporaryDirectory() as d:
        batch = make_batch(cfg)
        if cfg.get("nsp_off"):
            batch.pop("nsp", None)
        if cfg.get("no_labels"):
            batch.pop("mlm", None)
            batch.pop("nsp", None)
        write_inputs(d, {k: v for k, v in cfg.items() if k not in ("nsp_off", "no_labels")}, batch)
        r = run("grad", d)
        if r.returncode:
            print(r.stderr)
            chk.check(f"{name}: ref_distill grad ran", 1.0)
            return
        tcfg = dict(cfg, layers=cfg["teacher_layers"])
        Pt = load_params(os.path.join(d, "teacher.safetensors"), torch.float64)
        P = load_params(os.path.join(d, "params.safetensors"), torch.float64)
        ids, seg, mask = batch["ids"].long(), batch["seg"].long(), batch["mask"]
        tau, a_ce, a_mlm = cfg["tau"], cfg["alpha_ce"], cfg["alpha_mlm"]
        # teacher: MLM logits at the labelled rows (all rows without labels) -> probabilities at tau
        with torch.no_grad():
            ht = encoder(Pt, tcfg, ids, seg, mask)
            zt = heads(Pt, tcfg, ht, {k: v for k, v in batch.items() if k != "nsp"})[3]
            p = torch.softmax(zt / tau, dim=-1)
        # student
        hs = encoder(P, cfg, ids, seg, mask)
        base, mlm, nsp, zs, _ = heads(P, cfg, hs, batch)
        kl = (p * (torch.log(p) - torch.log_softmax(zs / tau, dim=-1))).sum(-1).mean()
        loss = a_ce * tau * tau * kl
        if mlm is not None:
            loss = loss + a_mlm * mlm
        if nsp is not None:
            loss = loss + nsp
        loss.backward()
        ours = [float(x) for x in open(os.path.join(d, "loss.txt")).read().split()]
        M, V = zs.shape
        chk.check(f"{name}: soft targets softmax(teacher/tau) ({M} rows)",
                  rel_err(np.fromfile(os.path.join(d, "soft.bin"), "<f4").reshape(M, V), p.numpy()))
        chk.check(f"{name}: student MLM logits", rel_err(np.fromfile(os.path.join(d, "logits.bin"), "<f4").reshape(M, V),
                                                         zs.detach().numpy()))
        chk.check(f"{name}: KL {ours[3]:.6f}", abs(ours[3] - kl.item()) / abs(kl.item()))
        chk.check(f"{name}: loss {ours[0]:.6f} = {a_ce} * {tau}^2 * KL + {a_mlm} * MLM{' + NSP' if nsp is not None else ''}",
                  abs(ours[0] - loss.item()) / abs(loss.item()))
        G = read_safetensors(os.path.join(d, "grads.safetensors"))
        missing = sorted(set(P) ^ set(G))
        zero = set()
        for k in P:     # tensors the loss does not reach (the pooler and NSP head without NSP labels)
            if P[k].grad is None:
                P[k].grad = torch.zeros_like(P[k])
                zero.add(k)
        if missing:
            print("      missing:", missing)
        worst = max(set(G) - zero, key=lambda k: rel_err(G[k], P[k].grad.numpy()))
        err = rel_err(G[worst], P[worst].grad.numpy()) if not missing else 1.0
        chk.check(f"{name}: all {len(G)} student gradients (worst {worst})", err)
        for k in sorted(zero):
            chk.check(f"{name}: {k} gradient is 0", float(np.abs(G[k]).max()), 1e-6)


def check_student(chk, lt, ls, want=None):
    with tempfile.TemporaryDirectory() as d:
        write_inputs(d, dict(BASE, layers=lt), {"ids": torch.zeros(1, dtype=torch.int32)})
        r = run("student", str(lt), str(ls), d)
        if r.returncode:
            print(r.stderr)
            chk.check(f"student {lt} -> {ls} layers", 1.0)
            return
        layers = [int(x) for x in r.stdout.split()[1:]]
        expect = [int(np.floor(k * (lt - 1) / (ls - 1) + 0.5)) if ls > 1 else 0 for k in range(ls)]
        if want is not None:
            expect = want
        T_, S = read_safetensors(os.path.join(d, "teacher.safetensors")), read_safetensors(os.path.join(d, "student.safetensors"))
        ok = layers == expect and len(set(layers)) == ls
        for k, v in S.items():
            src = k
            if k.startswith("h."):
                parts = k.split(".")
                src = ".".join(["h", str(layers[int(parts[1])])] + parts[2:])
            ok = ok and src in T_ and np.array_equal(T_[src], v)
        nl = sum(1 for k in S if k.startswith("h.") and k.endswith("ln_1.weight"))
        ok = ok and nl == ls and len(S) == len(T_) - 12 * (lt - ls)
        chk.check(f"student {lt} -> {ls} layers: teacher layers {layers}, every tensor copied", 0.0 if ok else 1.0)


def check_bad(chk):
    with tempfile.TemporaryDirectory() as d:
        write_inputs(d, dict(BASE, teacher_layers=3), {"ids": torch.zeros(1, dtype=torch.int32)})
        r = run("bad", d)
        for line in r.stdout.strip().splitlines():
            print("     ", line)
        n = len(r.stdout.strip().splitlines())
        chk.check(f"{n} bad inputs are refused with a message (no crash)", 0.0 if r.returncode == 0 and n == 9 else 1.0)


def main():
    torch.manual_seed(0)
    chk = Checker(1e-5)
    for name, over in VARIANTS.items():
        check_grads(chk, name, dict(DISTILL, **over))
    check_student(chk, 12, 6, want=[0, 2, 4, 7, 9, 11])
    check_student(chk, 4, 2)
    check_student(chk, 5, 3)
    check_student(chk, 3, 1)
    check_bad(chk)
    chk.finish()


if __name__ == "__main__":
    main()
