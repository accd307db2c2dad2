"""The rnn and lstm families (src/model/classic/rnn.c) against PyTorch's own
nn.RNN (tanh) and nn.LSTM (gates i, f, g, o; b_ih and b_hh), between an
nn.Embedding and a linear LM head (tied or not), with the cross-entropy over
targets (-1 ignored), in float64. Each variant's model directory (config.json +
model.safetensors, PyTorch's parameter names under "rnn.") is loaded by lmkit's
own loader through the generic model driver ref_llama (lm_model_load ->
lm_model_forward / lm_model_backward, and lm_session_feed), so the test covers:
  - the loss, the logits and every parameter gradient (backpropagation through
    time over the whole window) at <= 1e-5 relative, for one cell step (T = 1),
    one layer and 2-3 stacked layers, tied and untied;
  - decoding with the recurrent state (a prefill, then one token at a time)
    giving the logits of the full forward at each position;
  - a save/load round trip (lmkit writes what it read, and reads it back);
  - bad configs: dropout asked of an RNN, a nonlinearity it does not have."""
import json
import os
import subprocess
import tempfile

import numpy as np
import torch

from refutil import BIN, Checker, read_safetensors, rel_err, write_safetensors

REF = os.path.join(BIN, "ref_llama")   # the generic model driver: any model directory

VARIANTS = {
    "lstm cell step (T=1)": dict(arch="lstm", layers=1, dim=8, vocab=13, tie=True, B=3, T=1),
    "rnn cell step (T=1)": dict(arch="rnn", layers=1, dim=8, vocab=13, tie=False, B=3, T=1),
    "lstm 1 layer, tied": dict(arch="lstm", layers=1, dim=16, vocab=29, tie=True, B=2, T=9),
    "lstm 3 layers, untied": dict(arch="lstm", layers=3, dim=12, vocab=31, tie=False, B=3, T=7),
    "rnn 1 layer, tied": dict(arch="rnn", layers=1, dim=16, vocab=29, tie=True, B=2, T=9),
    "rnn 2 layers, untied": dict(arch="rnn", layers=2, dim=12, vocab=31, tie=False, B=3, T=8),
}


def config(v):
    c = {"architectures": ["LSTMLanguageModel" if v["arch"] == "lstm" else "RNNLanguageModel"], "model_type": v["arch"],
         "vocab_size": v["vocab"], "hidden_size": v["dim"], "num_layers": v["layers"], "max_position_embeddings": 16,
         "tie_word_embeddings": v["tie"], "initializer_range": 0.1, "bos_token_id": 0, "eos_token_id": 0}
    if v["arch"] == "rnn":
        c["nonlinearity"] = "tanh"
    return c


class Net(torch.nn.Module):
    def __init__(self, v):
        super().__init__()
        self.wte = torch.nn.Embedding(v["vocab"], v["dim"])
        cls = torch.nn.LSTM if v["arch"] == "lstm" else torch.nn.RNN
        self.rnn = cls(v["dim"], v["dim"], num_layers=v["layers"], batch_first=True)
        self.tie = v["tie"]
        if not self.tie:
            self.lm_head = torch.nn.Linear(v["dim"], v["vocab"], bias=False)

    def forward(self, ids, targets):
        h, _ = self.rnn(self.wte(ids))
        W = self.wte.weight if self.tie else self.lm_head.weight
        logits = h @ W.T
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-1)
        return loss, logits


def run(args):
    return subprocess.run([REF] + [str(a) for a in args], capture_output=True, text=True, timeout=120)


def main():
    chk = Checker(1e-5)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        for vi, (label, v) in enumerate(VARIANTS.items()):
            d = os.path.join(tmp, f"m{vi}")
            os.makedirs(d)
            net = Net(v).double()
            with torch.no_grad():   # biases large enough to matter, weights of the scale training reaches
                for n, p in net.named_parameters():
                    p.copy_(torch.randn_like(p) * (0.4 if "rnn." in n else 0.3))
            P = {n: p for n, p in net.named_parameters()}
            with open(os.path.join(d, "config.json"), "w") as f:
                json.dump(config(v), f, indent=2, sort_keys=True)
            write_safetensors(os.path.join(d, "model.safetensors"), [(n, P[n], "F32") for n in sorted(P)], {"format": "pt"})
            # the reference computes on the weights as stored (f32), in float64
            with torch.no_grad():
                for p in net.parameters():
                    p.copy_(p.float().double())
            B, T = v["B"], v["T"]
            ids = torch.randint(0, v["vocab"], (B, T))
            targets = torch.randint(0, v["vocab"], (B, T))
            if T > 2:
                targets[0, :2] = -1
            ids.numpy().astype("<i4").tofile(os.path.join(d, "ids.bin"))
            targets.numpy().astype("<i4").tofile(os.path.join(d, "tg.bin"))
            r = run([d, B, T, os.path.join(d, "ids.bin"), os.path.join(d, "tg.bin"), d])
            if r.returncode:
                chk.check(f"{label}: ref_llama failed: {r.stderr.strip()}", float("inf"))
                continue
            loss, logits = net(ids, targets)
            loss.backward()
            chk.check(f"{label}: loss", rel_err(np.fromfile(os.path.join(d, "loss.bin"), dtype="<f4")[0], loss.item()))
            ours_logits = np.fromfile(os.path.join(d, "logits.bin"), dtype="<f4").reshape(B, T, -1)
            chk.check(f"{label}: logits", rel_err(ours_logits, logits.detach().numpy()))
            G = read_safetensors(os.path.join(d, "grads.safetensors"))
            want = {n: p.grad.numpy() for n, p in net.named_parameters()}
            if set(G) != set(want):
                chk.check(f"{label}: gradient names {sorted(set(G) ^ set(want))}", float("inf"))
            for n in sorted(want):
                if n in G:
                    chk.check(f"{label}: d {n}", rel_err(G[n], want[n]))
            # decoding with the recurrent state: row 0, prefill of half, then token by token
            seq = torch.randint(0, v["vocab"], (1, 12))
            seq.numpy().astype("<i4").tofile(os.path.join(d, "seq.bin"))
            Pn = 6
            r = run(["--session", Pn, d, os.path.join(d, "seq.bin"), os.path.join(d, "sess.bin")])
            if r.returncode:
                chk.check(f"{label}: session failed: {r.stderr.strip()}", float("inf"))
                continue
            got = np.fromfile(os.path.join(d, "sess.bin"), dtype="<f4").reshape(-1, v["vocab"])
            with torch.no_grad():
                _, full = net(seq, torch.full_like(seq, -1))
            chk.check(f"{label}: decoding state (prefill {Pn}, then 1 by 1) vs the full forward",
                      rel_err(got, full[0, Pn - 1:].numpy()))
            # lmkit writes what it read; the copy gives the same loss
            r = run(["--save", d, os.path.join(d, "copy")])
            r2 = run([os.path.join(d, "copy"), B, T, os.path.join(d, "ids.bin"), os.path.join(d, "tg.bin"), os.path.join(d, "copy")]) \
                if not r.returncode else r
            same = not r.returncode and not r2.returncode and \
                np.fromfile(os.path.join(d, "copy", "loss.bin"), dtype="<f4")[0] == np.fromfile(os.path.join(d, "loss.bin"), dtype="<f4")[0]
            chk.check(f"{label}: save -> load gives the same loss bit for bit {r.stderr.strip()} {r2.stderr.strip()}",
                      0.0 if same else float("inf"))

        # bad configs are errors naming what is wrong
        d = os.path.join(tmp, "bad")
        os.makedirs(d)
        v = VARIANTS["rnn 1 layer, tied"]
        net = Net(v)
        write_safetensors(os.path.join(d, "model.safetensors"), [(n, p, "F32") for n, p in sorted(net.named_parameters())])
        ids = os.path.join(tmp, "m4", "ids.bin")
        for what, change, words in [("relu nonlinearity", {"nonlinearity": "relu"}, "nonlinearity \"relu\""),
                                    ("zero layers", {"num_layers": 0}, "num_layers = 0"),
                                    ("a missing tensor", {"num_layers": 2}, "missing tensor 'rnn.weight_ih_l1'")]:
            with open(os.path.join(d, "config.json"), "w") as f:
                json.dump(dict(config(v), **change), f)
            r = run([d, 2, 9, ids, ids, d])
            chk.check(f"bad config ({what}) is an error naming it: {r.stderr.strip()}",
                      0.0 if r.returncode == 1 and words in r.stderr else float("inf"))
    chk.finish()


if __name__ == "__main__":
    main()
