"""The BERT family (src/model/bert.c) against PyTorch autograd.

1. Loss and EVERY parameter gradient of tiny BERTs, one per head (pre-training
   MLM + NSP, sequence classification, token classification, QA spans) plus a
   pre-LN / untied / shared-layer (ALBERT-style) variant, against a PyTorch
   model written from the same equations and run in float64: <= 1e-5 relative.
   Batches have padding, segments, ignored labels and the padding token id
   (whose embedding row gets no gradient, as nn.Embedding(padding_idx)).
2. Hugging Face layout, both ways: a directory written here in exactly
   BertForPreTraining's layout (HF names, separate q/k/v, a position_ids
   buffer, the tied decoder copies, bert-base-uncased's config keys) loads
   through lm_model_load and gives PyTorch's hidden states, MLM and NSP
   logits; a headless BertModel checkpoint (no "bert." prefix, TF-era
   LayerNorm.gamma/beta) loads too; a missing tensor is an error naming it.
   lmkit's saves of every head have exactly transformers' tensor names,
   shapes and config keys, and reload to the same values.

transformers itself is not needed: its names are spelled out below."""
import json
import math
import os
import struct
import subprocess
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

from refutil import BIN, Checker, dropout_masks, read_safetensors, rel_err

PRETRAIN, CLASSIFY, TOKENS, QA = 0, 1, 2, 3
BASE = dict(vocab=61, positions=20, dim=32, layers=2, heads=4, inner=0, pre_ln=0, act=1, tie=1, eps=1e-12,
            head=PRETRAIN, labels=2, type_vocab=2, pad=0, share=0, B=3, T=16)
VARIANTS = {
    "pretrain_mlm_nsp": dict(),
    "mlm_only_no_mask_no_segments": dict(plain=1, type_vocab=0),
    "pretrain_preln_tanh_untied_shared": dict(pre_ln=1, act=0, tie=0, share=1, layers=3, eps=1e-5),
    "classify": dict(head=CLASSIFY, labels=3),
    "tokens": dict(head=TOKENS, labels=5),
    "qa": dict(head=QA),
    # dropout in training: hidden 0.1 (embeddings after their LayerNorm, both residual branches), attention 0.2
    "pretrain_dropout_post_ln": dict(drop=0.1, adrop=0.2, drop_seed=5),
    "mlm_dropout_pre_ln": dict(plain=1, type_vocab=0, pre_ln=1, drop=0.3, adrop=0.1, drop_seed=6),
    # the task heads' input dropout: classifier_dropout 0.3 on the pooled vector; null (= hidden) on tokens
    "classify_dropout": dict(head=CLASSIFY, labels=3, drop=0.1, adrop=0.1, cdrop=0.3, drop_seed=7),
    "tokens_dropout_null": dict(head=TOKENS, labels=5, drop=0.2, adrop=0.05, drop_seed=8),
}


# ------------------------------------------------------------------ batches
def make_batch(cfg, seed=7):
    B, T, V = cfg["B"], cfg["T"], cfg["vocab"]
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, V, (B, T), generator=g, dtype=torch.int32)
    mask = torch.ones(B, T, dtype=torch.uint8)
    mask[1, T - 5:] = 0                 # sequence 1 ends in 5 padding tokens
    mask[2, T - 9:] = 0                 # sequence 2 in 9
    ids[mask == 0] = cfg["pad"]         # padded with the padding id
    ids[0, 6] = cfg["pad"]              # and a real token that happens to be the pad id
    seg = torch.zeros(B, T, dtype=torch.int32)
    seg[:, T // 2:] = 1
    seg[mask == 0] = 0
    if cfg.get("plain"):               # no padding, no segment table: ref_bert gets NULL mask/segments
        ids = torch.randint(1, V, (B, T), generator=g, dtype=torch.int32)
        mask = torch.ones(B, T, dtype=torch.uint8)
        seg = torch.zeros(B, T, dtype=torch.int32)
    out = dict(ids=ids, seg=seg, mask=mask)
    if cfg["head"] == PRETRAIN:
        mlm = torch.full((B, T), -1, dtype=torch.int32)
        pick = (torch.rand(B, T, generator=g) < 0.2) & (mask == 1)
        pick[0, 1] = True
        mlm[pick] = torch.randint(0, V, (B, T), generator=g, dtype=torch.int32)[pick]
        out["mlm"] = mlm
        if not cfg.get("plain"):
            out["nsp"] = torch.tensor([0, 1, -1], dtype=torch.int32)[:B]
    elif cfg["head"] == CLASSIFY:
        out["labels"] = torch.tensor([2, -1, 0], dtype=torch.int32)[:B]
    elif cfg["head"] == TOKENS:
        lab = torch.randint(0, cfg["labels"], (B, T), generator=g, dtype=torch.int32)
        lab[0, :3] = -1
        lab[mask == 0] = -1
        out["labels"] = lab
    else:
        out["labels"] = torch.tensor([[3, 7], [-1, -1], [0, 4]], dtype=torch.int32)[:B]
    return out


def write_inputs(d, cfg, batch):
    with open(os.path.join(d, "config.txt"), "w") as f:
        for k, v in cfg.items():
            f.write(f"{k} {v}\n")
    files = dict(ids="ids.bin", seg="segments.bin", mask="mask.bin", mlm="mlm.bin", nsp="nsp.bin", labels="labels.bin")
    if cfg.get("plain"):
        files = dict(ids="ids.bin", mlm="mlm.bin", labels="labels.bin")
    for k, name in files.items():
        if k in batch:
            batch[k].numpy().tofile(os.path.join(d, name))


# ------------------------------------------------------------------ the reference model
def encoder(P, cfg, ids, seg, mask, drop=None):
    """drop: the masks lmkit drew (refutil.dropout_masks), applied where BERT drops: the embeddings
    after their LayerNorm, the attention probabilities, each branch before its residual add."""
    B, T = ids.shape
    drop = drop or {}
    ph, pa = cfg.get("drop", 0), cfg.get("adrop", 0)

    def dropped(x, m, p):
        return x if m is None else x * m / (1 - p)

    C, NH, L, eps = cfg["dim"], cfg["heads"], cfg["layers"], cfg["eps"]
    hs = C // NH
    act = (lambda z: F.gelu(z, approximate="tanh")) if cfg["act"] == 0 else F.gelu

    def ln(x, pre):
        return F.layer_norm(x, (C,), P[pre + ".weight"], P[pre + ".bias"], eps)

    def linear(x, name):
        return x @ P[name + ".weight"].T + P[name + ".bias"]

    def attn(x, pre, l):
        q, k, v = linear(x, pre + ".attn.c_attn").split(C, dim=-1)
        q, k, v = (t.view(B, T, NH, hs).transpose(1, 2) for t in (q, k, v))
        s = q @ k.transpose(-2, -1) / math.sqrt(hs)
        s = s.masked_fill(~mask.bool().view(B, 1, 1, T), float("-inf"))
        y = (dropped(torch.softmax(s, dim=-1), drop.get(l, {}).get("att"), pa) @ v).transpose(1, 2).reshape(B, T, C)
        return dropped(linear(y, pre + ".attn.c_proj"), drop.get(l, {}).get("res1"), ph)

    def mlp(x, pre, l):
        return dropped(linear(act(linear(x, pre + ".mlp.c_fc")), pre + ".mlp.c_proj"), drop.get(l, {}).get("res2"), ph)

    x = F.embedding(ids, P["wte.weight"], padding_idx=cfg["pad"]) + P["wpe.weight"][:T].unsqueeze(0)
    if cfg["type_vocab"]:
        x = x + P["wtt.weight"][seg]
    x = dropped(ln(x, "emb_ln"), drop.get("emb"), ph)
    for l in range(L):
        pre = f"h.{0 if cfg['share'] else l}"
        if cfg["pre_ln"]:
            x = x + attn(ln(x, pre + ".ln_1"), pre, l)
            x = x + mlp(ln(x, pre + ".ln_2"), pre, l)
        else:
            x = ln(x + attn(x, pre, l), pre + ".ln_1")
            x = ln(x + mlp(x, pre, l), pre + ".ln_2")
    if cfg["pre_ln"]:
        x = ln(x, "ln_f")
    return x


def heads(P, cfg, h, batch, head_mask=None):
    """(loss, mlm loss, nsp loss, logits as lmkit reports them); head_mask: the classifier input's
    dropout mask lmkit drew (rate classifier_dropout, or hidden_dropout_prob when that is null)"""
    C, eps = cfg["dim"], cfg["eps"]
    p = cfg.get("cdrop", cfg.get("drop", 0))

    def dropped(x):
        return x if head_mask is None else x * head_mask / (1 - p)
    act = (lambda z: F.gelu(z, approximate="tanh")) if cfg["act"] == 0 else F.gelu
    mask = batch["mask"].long()

    def pooled():
        return torch.tanh(h[:, 0] @ P["pooler.weight"].T + P["pooler.bias"])

    if cfg["head"] == PRETRAIN:
        lab = batch.get("mlm")
        rows = h.reshape(-1, C)
        if lab is not None:
            lab = lab.long().view(-1)
            rows, lab = rows[lab >= 0], lab[lab >= 0]
        t = F.layer_norm(act(rows @ P["mlm.dense.weight"].T + P["mlm.dense.bias"]), (C,), P["mlm.ln.weight"],
                         P["mlm.ln.bias"], eps)
        dec = P["wte.weight"] if cfg["tie"] else P["mlm.decoder.weight"]
        logits = t @ dec.T + P["mlm.bias"]
        nsp_logits = pooled() @ P["nsp.weight"].T + P["nsp.bias"]
        if lab is None:
            return None, None, None, logits, nsp_logits
        mlm = F.cross_entropy(logits, lab)
        if "nsp" not in batch:
            return mlm, mlm, None, logits, nsp_logits
        nsp = F.cross_entropy(nsp_logits, batch["nsp"].long(), ignore_index=-1)
        return mlm + nsp, mlm, nsp, logits, nsp_logits
    if cfg["head"] == CLASSIFY:
        logits = dropped(pooled()) @ P["classifier.weight"].T + P["classifier.bias"]
        return F.cross_entropy(logits, batch["labels"].long(), ignore_index=-1), None, None, logits, None
    if cfg["head"] == TOKENS:
        logits = dropped(h) @ P["token_classifier.weight"].T + P["token_classifier.bias"]
        lab = batch["labels"].long().masked_fill(mask == 0, -1)
        loss = F.cross_entropy(logits.reshape(-1, cfg["labels"]), lab.view(-1), ignore_index=-1)
        return loss, None, None, logits, None
    logits = h @ P["qa_outputs.weight"].T + P["qa_outputs.bias"]            # (B,T,2)
    lab = batch["labels"].long()
    keep = lab[:, 0] >= 0
    loss = 0
    for k in range(2):
        x = logits[..., k].masked_fill(mask == 0, float("-inf"))
        loss = loss + F.cross_entropy(x[keep], lab[keep, k]) / 2
    return loss, None, None, logits, None


def load_params(path, dtype):
    return {k: torch.tensor(v, dtype=dtype, requires_grad=True) for k, v in read_safetensors(path).items()}


def run(*args, check=True):
    return subprocess.run([os.path.join(BIN, "ref_bert"), *args], check=check, capture_output=True, text=True)


def read_f32(d, name, shape):
    return np.fromfile(os.path.join(d, name), dtype="<f4").reshape(shape)


# ------------------------------------------------------------------ Hugging Face layout
def hf_map(cfg):
    """internal name -> list of (HF name, rows slice) in transformers' BertFor* layout"""
    L, C = cfg["layers"], cfg["dim"]
    m = {"wte.weight": "bert.embeddings.word_embeddings.weight",
         "wpe.weight": "bert.embeddings.position_embeddings.weight",
         "wtt.weight": "bert.embeddings.token_type_embeddings.weight",
         "emb_ln.weight": "bert.embeddings.LayerNorm.weight", "emb_ln.bias": "bert.embeddings.LayerNorm.bias"}
    out = {k: [(v, None)] for k, v in m.items()}
    for l in range(L):
        p, q = f"h.{l}.", f"bert.encoder.layer.{l}."
        for wb in ("weight", "bias"):
            out[p + "attn.c_attn." + wb] = [(q + f"attention.self.{n}.{wb}", slice(i * C, (i + 1) * C))
                                            for i, n in enumerate(("query", "key", "value"))]
            out[p + "attn.c_proj." + wb] = [(q + "attention.output.dense." + wb, None)]
            out[p + "ln_1." + wb] = [(q + "attention.output.LayerNorm." + wb, None)]
            out[p + "mlp.c_fc." + wb] = [(q + "intermediate.dense." + wb, None)]
            out[p + "mlp.c_proj." + wb] = [(q + "output.dense." + wb, None)]
            out[p + "ln_2." + wb] = [(q + "output.LayerNorm." + wb, None)]
    heads_ = {
        PRETRAIN: {"pooler": "bert.pooler.dense", "mlm.dense": "cls.predictions.transform.dense",
                   "mlm.ln": "cls.predictions.transform.LayerNorm", "nsp": "cls.seq_relationship"},
        CLASSIFY: {"pooler": "bert.pooler.dense", "classifier": "classifier"},
        TOKENS: {"token_classifier": "classifier"},
        QA: {"qa_outputs": "qa_outputs"},
    }[cfg["head"]]
    for a, b in heads_.items():
        for wb in ("weight", "bias"):
            out[f"{a}.{wb}"] = [(f"{b}.{wb}", None)]
    if cfg["head"] == PRETRAIN:
        out["mlm.bias"] = [("cls.predictions.bias", None)]
    return out


def hf_expected_shapes(cfg):
    """transformers' state_dict of BertFor<head> (position_ids is a non-persistent buffer; the tied
    decoder weight/bias are dropped by save_pretrained), spelled out independently of hf_map"""
    V, C, L, NL = cfg["vocab"], cfg["dim"], cfg["layers"], cfg["labels"]
    Fi = cfg["inner"] or 4 * C
    s = {"bert.embeddings.word_embeddings.weight": [V, C],
         "bert.embeddings.position_embeddings.weight": [cfg["positions"], C],
         "bert.embeddings.token_type_embeddings.weight": [cfg["type_vocab"], C],
         "bert.embeddings.LayerNorm.weight": [C], "bert.embeddings.LayerNorm.bias": [C]}
    for l in range(L):
        q = f"bert.encoder.layer.{l}."
        for n in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
            s[q + n + ".weight"], s[q + n + ".bias"] = [C, C], [C]
        for n in ("attention.output.LayerNorm", "output.LayerNorm"):
            s[q + n + ".weight"], s[q + n + ".bias"] = [C], [C]
        s[q + "intermediate.dense.weight"], s[q + "intermediate.dense.bias"] = [Fi, C], [Fi]
        s[q + "output.dense.weight"], s[q + "output.dense.bias"] = [C, Fi], [C]
    if cfg["head"] in (PRETRAIN, CLASSIFY):
        s["bert.pooler.dense.weight"], s["bert.pooler.dense.bias"] = [C, C], [C]
    if cfg["head"] == PRETRAIN:
        s["cls.predictions.transform.dense.weight"], s["cls.predictions.transform.dense.bias"] = [C, C], [C]
        s["cls.predictions.transform.LayerNorm.weight"], s["cls.predictions.transform.LayerNorm.bias"] = [C], [C]
        s["cls.predictions.bias"] = [V]
        s["cls.seq_relationship.weight"], s["cls.seq_relationship.bias"] = [2, C], [2]
    elif cfg["head"] in (CLASSIFY, TOKENS):
        s["classifier.weight"], s["classifier.bias"] = [NL, C], [NL]
    else:
        s["qa_outputs.weight"], s["qa_outputs.bias"] = [2, C], [2]
    return s


def write_safetensors(path, tensors):
    """tensors: name -> np array (float32 or int64)"""
    header, blobs, off = {}, [], 0
    for name, a in tensors.items():
        a = np.ascontiguousarray(a)
        dt = {np.dtype("float32"): "F32", np.dtype("int64"): "I64"}[a.dtype]
        b = a.astype(a.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def hf_config(cfg, arch="BertForPreTraining"):
    """the key set of the hub's bert-base-uncased config.json, with tiny sizes"""
    return {"architectures": [arch], "attention_probs_dropout_prob": 0.1, "gradient_checkpointing": False,
            "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "hidden_size": cfg["dim"], "initializer_range": 0.02,
            "intermediate_size": 4 * cfg["dim"], "layer_norm_eps": 1e-12,
            "max_position_embeddings": cfg["positions"], "model_type": "bert",
            "num_attention_heads": cfg["heads"], "num_hidden_layers": cfg["layers"], "pad_token_id": 0,
            "position_embedding_type": "absolute", "transformers_version": "4.6.0.dev0", "type_vocab_size": 2,
            "use_cache": True, "vocab_size": cfg["vocab"]}


def random_params(cfg, seed=3):
    """internal name -> float32 array, shapes from hf_expected_shapes (q|k|v fused)"""
    g = torch.Generator().manual_seed(seed)
    P = {}
    for ours, pieces in hf_map(cfg).items():
        shapes = hf_expected_shapes(cfg)
        shape = list(shapes[pieces[0][0]])
        shape[0] *= len(pieces)
        t = torch.randn(*shape, generator=g) * (0.3 if ours.endswith("bias") else 0.1)
        if "ln" in ours and ours.endswith("weight"):
            t += 1
        P[ours] = t.numpy().astype(np.float32)
    return P


def to_hf(P, cfg):
    out = {}
    for ours, pieces in hf_map(cfg).items():
        for hf, sl in pieces:
            out[hf] = P[ours] if sl is None else P[ours][sl]
    return out


def check_grads(chk, name, cfg):
    with tempfile.TemporaryDirectory() as d:
        batch = make_batch(cfg)
        write_inputs(d, cfg, batch)
        r = run("grad", d, check=False)
        if r.returncode:
            print(r.stderr)
            chk.check(f"{name}: ref_bert grad ran", 1.0)
            return
        P = load_params(os.path.join(d, "params.safetensors"), torch.float64)
        b64 = {k: v for k, v in batch.items()}
        B, T, C = cfg["B"], cfg["T"], cfg["dim"]
        drop = dropout_masks(d, cfg["layers"], B, T, C, cfg["heads"], (B, T, C) if cfg["head"] == TOKENS else (B, C)) \
            if cfg.get("drop") else None
        h = encoder(P, cfg, batch["ids"].long(), batch["seg"].long(), batch["mask"], drop)
        if cfg["head"] in (CLASSIFY, TOKENS) and cfg.get("drop"):
            chk.check(f"{name}: the classifier input's dropout mask was drawn", 0.0 if drop["head"] is not None else 1.0)
        loss, mlm, nsp, logits, nsp_logits = heads(P, cfg, h, b64, drop and drop["head"])
        loss.backward()
        ours = [float(x) for x in open(os.path.join(d, "loss.txt")).read().split()]
        chk.check(f"{name}: loss {ours[0]:.6f}", abs(ours[0] - loss.item()) / abs(loss.item()))
        if mlm is not None and nsp is None:
            chk.check(f"{name}: mlm {ours[1]:.5f}, nsp absent ({ours[2]})",
                      abs(ours[1] - mlm.item()) / mlm.item() if math.isnan(ours[2]) else 1.0)
        elif mlm is not None:
            chk.check(f"{name}: mlm {ours[1]:.5f} + nsp {ours[2]:.5f}",
                      max(abs(ours[1] - mlm.item()) / mlm.item(), abs(ours[2] - nsp.item()) / nsp.item()))
        B, T, C = cfg["B"], cfg["T"], cfg["dim"]
        chk.check(f"{name}: hidden states", rel_err(read_f32(d, "hidden.bin", (B, T, C)), h.detach().numpy()))
        lg = logits.detach().numpy()
        chk.check(f"{name}: head logits {tuple(lg.shape)}", rel_err(read_f32(d, "logits.bin", lg.shape), lg))
        G = read_safetensors(os.path.join(d, "grads.safetensors"))
        missing = [k for k in P if k not in G] + [k for k in G if k not in P]
        # QA: softmax over positions is shift-invariant, so whatever adds the same amount to every
        # position's logit (qa_outputs.bias, the last norm's bias) has an exactly-0 gradient: compared
        # in absolute terms
        zero = {"qa_outputs.bias", f"h.{cfg['layers'] - 1}.ln_2.bias"} if cfg["head"] == QA else set()
        for k in P:     # tensors the loss does not reach (the pooler and NSP head without NSP labels)
            if P[k].grad is None:
                P[k].grad = torch.zeros_like(P[k])
                zero.add(k)
        worst = max(set(G) - zero, key=lambda k: rel_err(G[k], P[k].grad.numpy()))
        err = rel_err(G[worst], P[worst].grad.numpy()) if not missing else 1.0
        chk.check(f"{name}: all {len(G)} gradients (worst {worst})", err)
        for k in zero:
            chk.check(f"{name}: {k} gradient is 0 (max |g| {np.abs(G[k]).max():.1e})", float(np.abs(G[k]).max()), 1e-6)
        pad = cfg["pad"]
        chk.check(f"{name}: padding row of wte has no embedding gradient",
                  0.0 if (cfg["head"] == PRETRAIN and cfg["tie"]) or np.all(G["wte.weight"][pad] == 0) else 1.0)


def check_hf_load(chk):
    cfg = dict(BASE, positions=24)
    P = random_params(cfg)
    batch = make_batch(cfg, seed=11)
    B, T, C, V = cfg["B"], cfg["T"], cfg["dim"], cfg["vocab"]
    P64 = {k: torch.tensor(v, dtype=torch.float64) for k, v in P.items()}
    h = encoder(P64, cfg, batch["ids"].long(), batch["seg"].long(), batch["mask"])
    _, _, _, logits, nsp_logits = heads(P64, cfg, h, dict(mask=batch["mask"]))
    with tempfile.TemporaryDirectory() as d:
        write_inputs(d, cfg, dict(ids=batch["ids"], seg=batch["seg"], mask=batch["mask"]))
        # 1. BertForPreTraining exactly as transformers lays it out
        model = os.path.join(d, "hf")
        os.mkdir(model)
        T_ = to_hf(P, cfg)
        T_["bert.embeddings.position_ids"] = np.arange(cfg["positions"], dtype=np.int64)[None]
        T_["cls.predictions.decoder.weight"] = P["wte.weight"]
        T_["cls.predictions.decoder.bias"] = P["mlm.bias"]
        write_safetensors(os.path.join(model, "model.safetensors"), T_)
        json.dump(hf_config(cfg), open(os.path.join(model, "config.json"), "w"), indent=2, sort_keys=True)
        r = run("load", d, model, check=False)
        if r.returncode:
            print(r.stderr)
            chk.check("hf BertForPreTraining dir loads", 1.0)
            return
        G = read_safetensors(os.path.join(d, "params.safetensors"))
        same = set(G) == set(P) and all(np.array_equal(G[k], P[k]) for k in P)
        chk.check(f"hf BertForPreTraining: all {len(P)} tensors mapped exactly", 0.0 if same else 1.0)
        chk.check("hf BertForPreTraining: hidden states", rel_err(read_f32(d, "hidden.bin", (B, T, C)), h.numpy()))
        chk.check("hf BertForPreTraining: MLM logits (every row)",
                  rel_err(read_f32(d, "logits.bin", (B * T, V)), logits.numpy()))
        chk.check("hf BertForPreTraining: NSP logits", rel_err(read_f32(d, "nsp_logits.bin", (B, 2)), nsp_logits.numpy()))
        # 2. a headless BertModel: no "bert." prefix, TF-era gamma/beta names
        base = os.path.join(d, "base")
        os.mkdir(base)
        T2 = {}
        for k, v in to_hf(P, cfg).items():
            if not k.startswith("bert."):
                continue
            k = k[5:].replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
            T2[k] = v
        write_safetensors(os.path.join(base, "model.safetensors"), T2)
        json.dump(hf_config(cfg, "BertModel"), open(os.path.join(base, "config.json"), "w"), indent=2)
        r = run("load", d, base, check=False)
        ok = r.returncode == 0
        if ok:
            G = read_safetensors(os.path.join(d, "params.safetensors"))
            enc = [k for k in P if not k.startswith(("mlm.", "nsp."))]
            ok = all(np.array_equal(G[k], P[k]) for k in enc) and np.all(G["mlm.bias"] == 0) \
                and np.all(G["mlm.ln.weight"] == 1) and np.std(G["mlm.dense.weight"]) > 0.005
        chk.check("hf BertModel (no prefix, gamma/beta): encoder loaded, MLM/NSP heads initialised", 0.0 if ok else 1.0)
        if ok:
            chk.check("hf BertModel: hidden states", rel_err(read_f32(d, "hidden.bin", (B, T, C)), h.numpy()))
        # 3. a missing tensor is an error that names it
        del T2["encoder.layer.1.attention.self.key.weight"]
        write_safetensors(os.path.join(base, "model.safetensors"), T2)
        r = run("load", d, base, check=False)
        chk.check("missing tensor: error names it", 0.0 if r.returncode and "encoder.layer.1.attention.self.key.weight"
                  in r.stderr else 1.0)
        print("     ", r.stderr.strip())


def check_hf_save(chk, name, over):
    cfg = dict(BASE, **over)
    with tempfile.TemporaryDirectory() as d:
        write_inputs(d, cfg, make_batch(cfg))
        model = os.path.join(d, "out")
        r = run("save", d, model, check=False)
        if r.returncode:
            print(r.stderr)
            chk.check(f"save {name}", 1.0)
            return
        S = read_safetensors(os.path.join(model, "model.safetensors"))
        want = hf_expected_shapes(cfg)
        shapes_ok = set(S) == set(want) and all(list(S[k].shape) == want[k] for k in want)
        if not shapes_ok:
            print("      extra:", sorted(set(S) - set(want)), "missing:", sorted(set(want) - set(S)))
        chk.check(f"save {name}: {len(S)} tensors with transformers' names and shapes", 0.0 if shapes_ok else 1.0)
        P = read_safetensors(os.path.join(d, "params.safetensors"))
        src = dict(cfg)
        if cfg["share"]:     # every layer is written as a copy of layer 0
            P = {(k.replace("h.0.", f"h.{l}.") if k.startswith("h.0.") else k): v
                 for k, v in P.items() for l in range(cfg["layers"])}
        vals_ok = shapes_ok and all(np.array_equal(S[k], v) for k, v in to_hf(P, src).items())
        chk.check(f"save {name}: values (q/k/v split)", 0.0 if vals_ok else 1.0)
        cj = json.load(open(os.path.join(model, "config.json")))
        keys = set(hf_config(cfg)) - {"gradient_checkpointing"} | {"classifier_dropout", "torch_dtype"}
        arch = {PRETRAIN: "BertForPreTraining", CLASSIFY: "BertForSequenceClassification",
                TOKENS: "BertForTokenClassification", QA: "BertForQuestionAnswering"}[cfg["head"]]
        ok = keys <= set(cj) and cj["architectures"] == [arch] and cj["model_type"] == "bert" and \
            cj["hidden_size"] == cfg["dim"] and cj["num_hidden_layers"] == cfg["layers"] and \
            cj["vocab_size"] == cfg["vocab"] and cj["max_position_embeddings"] == cfg["positions"] and \
            cj["intermediate_size"] == 4 * cfg["dim"] and cj["type_vocab_size"] == cfg["type_vocab"] and \
            cj["pad_token_id"] == cfg["pad"] and cj["hidden_act"] == ("gelu" if cfg["act"] else "gelu_new")
        if cfg["head"] in (CLASSIFY, TOKENS):
            n = cfg["labels"]
            ok = ok and cj["id2label"] == {str(i): f"LABEL_{i}" for i in range(n)} and \
                cj["label2id"] == {f"LABEL_{i}": i for i in range(n)}
        if cfg["share"]:
            ok = ok and cj.get("lmkit", {}).get("share_layers") is True
        if not ok:
            print(json.dumps(cj, indent=1))
        chk.check(f"save {name}: config.json keys ({arch})", 0.0 if ok else 1.0)
        P1, P2 = read_safetensors(os.path.join(d, "params.safetensors")), read_safetensors(os.path.join(d, "params2.safetensors"))
        same = set(P1) == set(P2) and all(np.array_equal(P1[k], P2[k]) for k in P1)
        chk.check(f"save {name}: reload equals", 0.0 if same else 1.0)


def main():
    torch.manual_seed(0)
    chk = Checker(1e-5)
    for name, over in VARIANTS.items():
        check_grads(chk, name, dict(BASE, **over))
    check_hf_load(chk)
    for name, over in [("pretrain", {}), ("classify", dict(head=CLASSIFY, labels=3)),
                       ("tokens", dict(head=TOKENS, labels=12)), ("qa", dict(head=QA)),
                       ("pretrain shared", dict(share=1, layers=3))]:
        check_hf_save(chk, name, over)
    chk.finish()


if __name__ == "__main__":
    main()
