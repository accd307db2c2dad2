"""The BART family against PyTorch, through the files real models ship.

For a tied BART (facebook/bart-base's layout: model.shared with the
encoder/decoder embed_tokens aliases, tied lm_head, final_logits_bias) and an
untied one with fewer encoder than decoder layers, the test writes a tiny
Hugging Face directory as transformers writes it, lmkit loads it
(tests/reference/ref_t5.c, which drives any encoder-decoder through
lm_model_load), runs the forward and backward on a padded encoder batch, and
the loss, the logits and every gradient must agree at 1e-5 with a BART written
below from the equations of transformers' modeling_bart, in float64 on the
same weights:
  - learned positions with the offset of 2 (row t + 2), in both stacks;
  - layernorm_embedding on each stack's embeddings;
  - post-LN blocks: x = LN(x + attn(x)), [x = LN(x + xattn(x, e))], x = LN(x + fc2(gelu(fc1(x))));
  - GELU with erf, q.k / sqrt(head_dim), biases everywhere;
  - logits = h shared^T + final_logits_bias, which is a buffer: no gradient;
  - shared's padding row gets no gradient from the embeddings (padding_idx).
In training with dropout 0.2, attention_dropout 0.1 and activation_dropout 0.3,
lmkit's masks (ref_t5 --dropout writes them) applied by the reference where
modeling_bart drops give the same loss, logits and gradients; at rates 0 training
is the plain run bit for bit.
lmkit's save must write the HF names back with the same values; keys of
BART variants lmkit does not implement and bad files must be clear errors."""
import json
import os
import subprocess
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

from refutil import (BIN, Checker, dropped, encdec_dropout_masks, read_safetensors, rel_err, same_run,
                     write_safetensors)

REF = os.path.join(BIN, "ref_t5")
PAD = 1

TIED = dict(vocab=53, d_model=32, heads=4, ffn=48, enc_layers=2, dec_layers=2, positions=24, tie=True, B=2, S=11, T=9)
UNTIED = dict(vocab=47, d_model=24, heads=3, ffn=40, enc_layers=1, dec_layers=3, positions=16, tie=False, B=3, S=13, T=12)


def hf_config(v):
    return {"architectures": ["BartForConditionalGeneration"], "model_type": "bart", "vocab_size": v["vocab"],
            "d_model": v["d_model"], "encoder_layers": v["enc_layers"], "decoder_layers": v["dec_layers"],
            "encoder_attention_heads": v["heads"], "decoder_attention_heads": v["heads"],
            "encoder_ffn_dim": v["ffn"], "decoder_ffn_dim": v["ffn"], "max_position_embeddings": v["positions"],
            "activation_function": "gelu", "dropout": 0.1, "attention_dropout": 0.0, "activation_dropout": 0.0,
            "init_std": 0.02, "scale_embedding": False, "tie_word_embeddings": v["tie"], "is_encoder_decoder": True,
            "pad_token_id": PAD, "bos_token_id": 0, "eos_token_id": 2, "decoder_start_token_id": 2,
            "forced_eos_token_id": 2, "encoder_layerdrop": 0.0, "decoder_layerdrop": 0.0,
            # keys old BART configs (facebook/bart-large) carry, at the values BART has
            "add_bias_logits": False, "add_final_layer_norm": False, "normalize_before": False,
            "normalize_embedding": True, "static_position_embeddings": False, "extra_pos_embeddings": 2,
            "torch_dtype": "float32", "transformers_version": "4.46.0"}


def random_weights(v, seed):
    g = torch.Generator().manual_seed(seed)
    C, Fd, V, P = v["d_model"], v["ffn"], v["vocab"], v["positions"] + 2

    def rn(*shape, std=0.2):
        return torch.randn(*shape, generator=g, dtype=torch.float64) * std

    W = {"model.shared.weight": rn(V, C, std=0.7), "final_logits_bias": rn(1, V, std=0.3)}
    for stack, L in (("encoder", v["enc_layers"]), ("decoder", v["dec_layers"])):
        W[f"model.{stack}.embed_positions.weight"] = rn(P, C, std=0.5)
        W[f"model.{stack}.layernorm_embedding.weight"] = 1 + rn(C)
        W[f"model.{stack}.layernorm_embedding.bias"] = rn(C)
        for l in range(L):
            p = f"model.{stack}.layers.{l}."
            attns = ["self_attn"] + (["encoder_attn"] if stack == "decoder" else [])
            for a in attns:
                for x in ("q", "k", "v", "out"):
                    W[p + f"{a}.{x}_proj.weight"] = rn(C, C, std=0.15 if x != "out" else 0.2)
                    W[p + f"{a}.{x}_proj.bias"] = rn(C, std=0.1)
                W[p + f"{a}_layer_norm.weight"] = 1 + rn(C)
                W[p + f"{a}_layer_norm.bias"] = rn(C)
            W[p + "fc1.weight"], W[p + "fc1.bias"] = rn(Fd, C), rn(Fd, std=0.1)
            W[p + "fc2.weight"], W[p + "fc2.bias"] = rn(C, Fd), rn(C, std=0.1)
            W[p + "final_layer_norm.weight"] = 1 + rn(C)
            W[p + "final_layer_norm.bias"] = rn(C)
    if not v["tie"]:
        W["lm_head.weight"] = rn(V, C, std=0.4)
    return {k: t.float().double() for k, t in W.items()}   # the f32 values the file holds


def write_dir(d, v, W, config=None):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(config or hf_config(v), f, indent=2, sort_keys=True)
    items = [(n, W[n], "F32") for n in sorted(W)]
    # the aliases transformers may save beside model.shared.weight
    if "model.shared.weight" in W:
        items += [("model.encoder.embed_tokens.weight", W["model.shared.weight"], "F32"),
                  ("model.decoder.embed_tokens.weight", W["model.shared.weight"], "F32")]
    write_safetensors(os.path.join(d, "model.safetensors"), items, {"format": "pt"})


# ------------------------------------------------------------------ the PyTorch reference (modeling_bart's equations)
def ln(W, name, x):
    return F.layer_norm(x, x.shape[-1:], W[name + ".weight"], W[name + ".bias"], 1e-5)


def lin(W, name, x):
    return x @ W[name + ".weight"].T + W[name + ".bias"]


def attention(W, pre, xq, xkv, mask, v, drop=None, p=0.0):
    H = v["heads"]
    B, Tq, C = xq.shape
    Tk, hd = xkv.shape[1], C // H
    q = (lin(W, pre + "q_proj", xq) * hd ** -0.5).view(B, Tq, H, hd).transpose(1, 2)
    k = lin(W, pre + "k_proj", xkv).view(B, Tk, H, hd).transpose(1, 2)
    val = lin(W, pre + "v_proj", xkv).view(B, Tk, H, hd).transpose(1, 2)
    scores = (q @ k.transpose(2, 3)).masked_fill(~mask, float("-inf"))
    w = dropped(torch.softmax(scores, dim=-1), drop, p)   # attention_dropout on the weights
    o = (w @ val).transpose(1, 2).reshape(B, Tq, C)
    return lin(W, pre + "out_proj", o)


def ffn(W, p, x, drop=None, pa=0.0):
    return lin(W, p + "fc2", dropped(F.gelu(lin(W, p + "fc1", x)), drop, pa))   # activation_dropout


def embed(W, stack, ids):
    T = ids.shape[1]
    x = F.embedding(ids, W["model.shared.weight"], padding_idx=PAD)   # BartScaledWordEmbedding(padding_idx), scale 1
    x = x + W[f"model.{stack}.embed_positions.weight"][torch.arange(T) + 2]
    return ln(W, f"model.{stack}.layernorm_embedding", x)


def bart_forward(W, v, enc, emask, dec, labels, drop=None):
    """drop: None, or the masks lmkit drew (refutil.encdec_dropout_masks) and "p" = (dropout,
    attention_dropout, activation_dropout), applied where modeling_bart drops: `dropout` after each stack's
    layernorm_embedding and on each sub-layer's output before its residual add, attention_dropout on the
    attention weights, activation_dropout after fc1's activation."""
    T = dec.shape[1]
    dm = drop or {"enc": [{}] * v["enc_layers"], "dec": [{}] * v["dec_layers"]}
    pd, pa, pf = drop["p"] if drop else (0.0, 0.0, 0.0)
    D = lambda x, mask: dropped(x, mask, pd)
    m = emask.bool()[:, None, None, :]
    e = D(embed(W, "encoder", enc), dm.get("enc_emb"))
    for l in range(v["enc_layers"]):
        p, k = f"model.encoder.layers.{l}.", dm["enc"][l]
        e = ln(W, p + "self_attn_layer_norm", e + D(attention(W, p + "self_attn.", e, e, m, v, k.get("att"), pa), k.get("res1")))
        e = ln(W, p + "final_layer_norm", e + D(ffn(W, p, e, k.get("act"), pf), k.get("res2")))
    d = D(embed(W, "decoder", dec), dm.get("emb"))
    causal = torch.ones(T, T, dtype=torch.bool).tril()[None, None]
    for l in range(v["dec_layers"]):
        p, k = f"model.decoder.layers.{l}.", dm["dec"][l]
        d = ln(W, p + "self_attn_layer_norm", d + D(attention(W, p + "self_attn.", d, d, causal, v, k.get("att"), pa), k.get("res1")))
        d = ln(W, p + "encoder_attn_layer_norm",
               d + D(attention(W, p + "encoder_attn.", d, e, m, v, k.get("xatt"), pa), k.get("resx")))
        d = ln(W, p + "final_layer_norm", d + D(ffn(W, p, d, k.get("act"), pf), k.get("res2")))
    head = W["model.shared.weight"] if v["tie"] else W["lm_head.weight"]
    logits = d @ head.T + W["final_logits_bias"].detach()   # a buffer: never trained
    lab = labels.clone()
    lab[lab < 0] = -100
    loss = F.cross_entropy(logits.reshape(-1, v["vocab"]), lab.reshape(-1), ignore_index=-100)
    return loss, logits


# ------------------------------------------------------------------ lmkit's names -> the HF tensors they concatenate
def hf_parts(ours, v):
    fixed = {"wte.weight": "model.shared.weight", "lm_head.weight": "lm_head.weight",
             "final_logits_bias": "final_logits_bias",
             "wpe.weight": "model.decoder.embed_positions.weight", "enc.wpe.weight": "model.encoder.embed_positions.weight",
             "emb_ln.weight": "model.decoder.layernorm_embedding.weight",
             "emb_ln.bias": "model.decoder.layernorm_embedding.bias",
             "enc.emb_ln.weight": "model.encoder.layernorm_embedding.weight",
             "enc.emb_ln.bias": "model.encoder.layernorm_embedding.bias"}
    if ours in fixed:
        return [fixed[ours]]
    enc = ours.startswith("enc.")
    _, l, rest = ours[4 if enc else 0:].split(".", 2)
    mod, kind = rest.rsplit(".", 1)
    p = f"model.{'encoder' if enc else 'decoder'}.layers.{l}."
    mods = {"ln_1": ["self_attn_layer_norm"], "attn.c_attn": [f"self_attn.{x}_proj" for x in "qkv"],
            "attn.c_proj": ["self_attn.out_proj"], "ln_x": ["encoder_attn_layer_norm"],
            "xattn.q": ["encoder_attn.q_proj"], "xattn.kv": [f"encoder_attn.{x}_proj" for x in "kv"],
            "xattn.c_proj": ["encoder_attn.out_proj"], "ln_2": ["final_layer_norm"], "mlp.c_fc": ["fc1"],
            "mlp.c_proj": ["fc2"]}[mod]
    return [p + x + "." + kind for x in mods]


def run(args, **kw):
    return subprocess.run([REF] + [str(a) for a in args], capture_output=True, text=True, **kw)


def batch(v, seed):
    g = torch.Generator().manual_seed(seed)
    B, S, T, V = v["B"], v["S"], v["T"], v["vocab"]
    enc = torch.randint(3, V, (B, S), generator=g)
    emask = torch.ones(B, S, dtype=torch.uint8)
    emask[1, S - 4:] = 0                               # padding in the second sequence
    enc[1, S - 4:] = PAD
    enc[0, 3] = PAD                                    # a real pad token as input too (its row gets no gradient)
    labels = torch.randint(3, V, (B, T), generator=g)
    labels[0, T - 2:] = -1                             # no loss there
    dec = torch.cat([torch.full((B, 1), 2, dtype=torch.long), labels[:, :-1].clamp(min=0)], 1)   # start = </s>
    dec[0, T - 1] = PAD
    return enc, emask, dec, labels


def write_case(d, v, W, seed, config=None):
    """the HF directory d and its batch in d/in; returns (enc, emask, dec, labels)"""
    write_dir(d, v, W, config)
    enc, emask, dec, labels = batch(v, seed)
    ind = os.path.join(d, "in")
    os.makedirs(ind)
    enc.to(torch.int32).numpy().tofile(os.path.join(ind, "enc.bin"))
    emask.numpy().tofile(os.path.join(ind, "mask.bin"))
    dec.to(torch.int32).numpy().tofile(os.path.join(ind, "dec.bin"))
    labels.to(torch.int32).numpy().tofile(os.path.join(ind, "labels.bin"))
    return enc, emask, dec, labels


def run_case(ck, name, d, v, out, pre=()):
    """ref_t5 [pre...] on d's batch into d/out; False (and a failed check) when it fails"""
    os.makedirs(out)
    r = run([*pre, d, v["B"], v["S"], v["T"], os.path.join(d, "in"), out])
    if r.returncode:
        print(r.stderr)
        ck.check(f"{name}: ref_t5 ran", 1.0)
    return not r.returncode


def compare(ck, name, v, W, out, enc, emask, dec, labels, drop=None):
    """lmkit's loss, logits and every gradient in out against the reference's; returns (Wt, G, logits)"""
    Wt = {k: t.clone().requires_grad_(True) for k, t in W.items()}
    loss, logits = bart_forward(Wt, v, enc, emask, dec, labels, drop)
    loss.backward()
    ours_loss = np.fromfile(os.path.join(out, "loss.bin"), dtype="<f4")[0]
    ck.check(f"{name}: loss", rel_err([ours_loss], [loss.item()]))
    ours_logits = np.fromfile(os.path.join(out, "logits.bin"), dtype="<f4").reshape(logits.shape)
    ck.check(f"{name}: logits", rel_err(ours_logits, logits.detach().numpy()))
    G = read_safetensors(os.path.join(out, "grads.safetensors"))
    worst, wname = 0.0, ""
    for ours, g in G.items():
        parts = hf_parts(ours, v)
        ref = torch.cat([Wt[n].grad if Wt[n].grad is not None else torch.zeros_like(Wt[n]) for n in parts], 0)
        e = rel_err(g.reshape(-1), ref.reshape(-1).numpy())
        if e > worst:
            worst, wname = e, ours
    ck.check(f"{name}: all {len(G)} gradients (worst {wname})", worst)
    return Wt, G, ours_logits


def check_dropout(ck, name, v, seed, tmp, rates=(0.2, 0.1, 0.3)):
    """Training with dropout, attention_dropout, activation_dropout = rates: the masks lmkit drew (every
    place modeling_bart drops), applied by the reference at the same places, give the same loss, logits
    and gradients; at rates 0 training mode is the plain run, bit for bit."""
    d = os.path.join(tmp, "drop_" + name)
    W = random_weights(v, seed)
    cfg = dict(hf_config(v), dropout=rates[0], attention_dropout=rates[1], activation_dropout=rates[2])
    enc, emask, dec, labels = write_case(d, v, W, seed + 1, cfg)
    out = os.path.join(d, "out")
    if not run_case(ck, f"{name}, dropout {rates}", d, v, out, ("--dropout", 77)):
        return
    drop = dict(encdec_dropout_masks(out, v["enc_layers"], v["dec_layers"], v["B"], v["S"], v["T"], v["d_model"],
                                     v["heads"], v["ffn"]), p=rates)
    by_rate = {0: [drop["emb"], drop["enc_emb"]] + [l[k] for l in drop["enc"] + drop["dec"] for k in ("res1", "res2")]
               + [l["resx"] for l in drop["dec"]],
               1: [l["att"] for l in drop["enc"] + drop["dec"]] + [l["xatt"] for l in drop["dec"]],
               2: [l["act"] for l in drop["enc"] + drop["dec"]]}
    masks = [x for ms in by_rate.values() for x in ms]
    absent = sum(x is None for x in masks) + (drop["lnf"] is not None) + (drop["enc_out"] is not None)
    ck.check(f"{name}, dropout {rates}: all {len(masks)} masks drawn (embeddings, attention, cross-attention, "
             f"residuals, FFN activation; no final norm)", float(absent))
    if absent:
        return
    for i, ms in by_rate.items():
        kept = float(torch.cat([x.reshape(-1) for x in ms]).mean())
        ck.check(f"{name}: kept share {kept:.3f} near {1 - rates[i]}", 0.0 if abs(kept - (1 - rates[i])) < 0.03 else 1.0)
    compare(ck, f"{name}, dropout {rates}", v, W, out, enc, emask, dec, labels, drop)
    # rates 0: training mode (no masks) is the evaluation-mode run, bit for bit
    d0 = os.path.join(tmp, "drop0_" + name)
    write_case(d0, v, W, seed + 1, dict(hf_config(v), dropout=0.0, attention_dropout=0.0, activation_dropout=0.0))
    a, b = os.path.join(d0, "plain"), os.path.join(d0, "train")
    if run_case(ck, f"{name}, rates 0", d0, v, a) and run_case(ck, f"{name}, rates 0 training", d0, v, b, ("--dropout", 77)):
        same, extra = same_run(a, b)
        ck.check(f"{name}: rates 0 in training is the plain run bit for bit, no masks ({extra})",
                 0.0 if same and not extra else 1.0)


def check_model(ck, name, v, seed, tmp):
    d = os.path.join(tmp, name.split(" ")[0])
    W = random_weights(v, seed)
    enc, emask, dec, labels = write_case(d, v, W, seed + 1)
    ind = os.path.join(d, "in")
    out = os.path.join(d, "out")
    if not run_case(ck, name, d, v, out):
        return
    Wt, G, ours_logits = compare(ck, name, v, W, out, enc, emask, dec, labels)
    ck.check(f"{name}: final_logits_bias gets no gradient (a buffer)",
             float(np.abs(G["final_logits_bias"]).max()))
    pad_row = Wt["model.shared.weight"].grad[PAD] if v["tie"] else torch.zeros(v["d_model"], dtype=torch.float64)
    ck.check(f"{name}: the padding row's gradient is the tied head's alone",
             rel_err(G["wte.weight"][PAD], pad_row.numpy()))
    covered = {n for ours in G for n in hf_parts(ours, v)}
    ck.check(f"{name}: every tensor of the file has a gradient", 0.0 if covered == set(W) else 1.0)
    # lmkit's save writes transformers' names and the same values
    saved = os.path.join(d, "saved")
    r = run(["--save", d, saved])
    if r.returncode:
        print(r.stderr)
        ck.check(f"{name}: save", 1.0)
        return
    S2 = read_safetensors(os.path.join(saved, "model.safetensors"))
    same = set(S2) == set(W) and all(np.array_equal(S2[k], W[k].float().numpy()) for k in W)
    if set(S2) != set(W):
        print("names differ:", sorted(set(S2) ^ set(W)))
    ck.check(f"{name}: saved tensors equal the file's, HF names and shapes", 0.0 if same else 1.0)
    cfg = json.load(open(os.path.join(saved, "config.json")))
    keys = ("d_model", "encoder_layers", "decoder_layers", "encoder_attention_heads", "decoder_attention_heads",
            "encoder_ffn_dim", "decoder_ffn_dim", "max_position_embeddings", "tie_word_embeddings", "pad_token_id",
            "bos_token_id", "eos_token_id", "decoder_start_token_id", "activation_function", "scale_embedding",
            "architectures", "model_type", "dropout", "attention_dropout", "activation_dropout")
    bad = [k for k in keys if cfg.get(k) != hf_config(v)[k]]
    if bad:
        print("config keys differ:", bad)
    ck.check(f"{name}: saved config.json keys", 0.0 if not bad else 1.0)
    # and it loads again to the same logits
    out2 = os.path.join(d, "out2")
    os.makedirs(out2)
    r = run([saved, v["B"], v["S"], v["T"], ind, out2])
    again = np.fromfile(os.path.join(out2, "logits.bin"), dtype="<f4") if not r.returncode else None
    ck.check(f"{name}: the saved directory loads to the same logits",
             0.0 if again is not None and np.array_equal(again, ours_logits.reshape(-1)) else 1.0)


def check_errors(ck, tmp):
    v = dict(TIED)
    W = random_weights(v, 5)
    for key, value, word in (("activation_function", "relu", "relu"), ("normalize_before", True, "normalize_before"),
                             ("add_final_layer_norm", True, "add_final_layer_norm"),
                             ("scale_embedding", True, "scale_embedding"), ("decoder_ffn_dim", 64, "decoder_ffn_dim")):
        d = os.path.join(tmp, "bad_" + key)
        cfg = hf_config(v)
        cfg[key] = value
        write_dir(d, v, W, cfg)
        r = run(["--save", d, os.path.join(tmp, "x_" + key)])
        ck.check(f"config {key} = {value} is an error naming it",
                 0.0 if r.returncode and word in r.stderr else 1.0)
    d = os.path.join(tmp, "missing")
    write_dir(d, v, {k: t for k, t in W.items() if "encoder_attn.out_proj.bias" not in k})
    r = run(["--save", d, os.path.join(tmp, "y")])
    ck.check("a missing tensor is an error naming it",
             0.0 if r.returncode and "encoder_attn.out_proj.bias" in r.stderr else 1.0)
    d = os.path.join(tmp, "extra")
    write_dir(d, v, dict(W, **{"model.encoder.layers.0.self_attn.bogus.weight": torch.zeros(2)}))
    r = run(["--save", d, os.path.join(tmp, "z")])
    ck.check("an unknown tensor is an error naming it", 0.0 if r.returncode and "bogus" in r.stderr else 1.0)


def main():
    ck = Checker(1e-5)
    with tempfile.TemporaryDirectory() as tmp:
        check_model(ck, "tied (bart-base layout, 2+2 layers)", TIED, 11, tmp)
        check_model(ck, "untied (lm_head, 1 encoder + 3 decoder layers)", UNTIED, 23, tmp)
        check_dropout(ck, "tied", TIED, 11, tmp)
        check_dropout(ck, "untied", UNTIED, 23, tmp)
        check_errors(ck, tmp)
    ck.finish()


if __name__ == "__main__":
    main()
