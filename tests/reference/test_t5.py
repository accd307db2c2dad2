"""The T5 family against PyTorch, through the files real models ship.

For T5 v1.0 (t5-small's layout: `feed_forward_proj: relu`, DenseReluDense.wi,
tied embeddings with the d_model^-0.5 rescale) and T5 v1.1 / Flan-T5's
(`gated-gelu`: wi_0 through gelu_new times wi_1, an untied lm_head, attention
inner width num_heads * d_kv != d_model, decoder depth != encoder depth), the
test writes a tiny Hugging Face directory as transformers writes it
(config.json, model.safetensors with the encoder/decoder embed_tokens aliases
and, for v1.0, the unused EncDecAttention.relative_attention_bias some
checkpoints carry), lmkit loads it (tests/reference/ref_t5.c -> lm_model_load),
runs the forward and backward on a padded encoder batch, and the loss, the
logits and every gradient must agree at 1e-5 with a T5 written below from the
equations of transformers' modeling_t5, in float64 on the same weights:
  - RMS norm without mean or bias, pre-LN, scores q.k without 1/sqrt(d);
  - the relative position bias (buckets of k - q, log-spaced past max_exact),
    bidirectional in the encoder, causal in the decoder, computed once per stack
    from block 0's table and shared by every layer;
  - cross-attention over the encoder output, its padding masked;
  - tied head: logits = (h * d_model^-0.5) shared^T.
In training with dropout_rate 0.3, lmkit's masks (ref_t5 --dropout writes them)
applied by the reference where modeling_t5 drops (each stack's embeddings and
final-norm output, the attention weights of self- and cross-attention, each
sub-layer's output before its residual add, the FFN's activation) give the same
loss, logits and gradients; at dropout_rate 0 training is the plain run bit for
bit. The bucket function must equal transformers' formula for every (query, key)
pair of 512 positions, both directions; lmkit's own save must write the HF
names back with the same values; bad input must be a clear error."""
import json
import math
import os
import subprocess
import tempfile

import numpy as np
import torch

from refutil import (BIN, Checker, dropped, encdec_dropout_masks, read_safetensors, rel_err, same_run,
                     write_safetensors)

REF = os.path.join(BIN, "ref_t5")

V1_0 = dict(vocab=61, d_model=32, d_kv=8, heads=4, d_ff=48, layers=2, dec_layers=2, ffn="relu", tie=True,
            buckets=8, max_distance=12, B=2, S=11, T=9, extra_rel=True)
V1_1 = dict(vocab=57, d_model=24, d_kv=10, heads=3, d_ff=40, layers=2, dec_layers=3, ffn="gated-gelu", tie=False,
            buckets=10, max_distance=16, B=3, S=13, T=12, extra_rel=False)


# ------------------------------------------------------------------ transformers' bucket formula
def hf_bucket(relative_position, bidirectional=True, num_buckets=32, max_distance=128):
    """T5Attention._relative_position_bucket, verbatim."""
    relative_buckets = 0
    if bidirectional:
        num_buckets //= 2
        relative_buckets += (relative_position > 0).to(torch.long) * num_buckets
        relative_position = torch.abs(relative_position)
    else:
        relative_position = -torch.min(relative_position, torch.zeros_like(relative_position))
    max_exact = num_buckets // 2
    is_small = relative_position < max_exact
    relative_position_if_large = max_exact + (
        torch.log(relative_position.float() / max_exact) / math.log(max_distance / max_exact) * (num_buckets - max_exact)
    ).to(torch.long)
    relative_position_if_large = torch.min(relative_position_if_large,
                                           torch.full_like(relative_position_if_large, num_buckets - 1))
    relative_buckets += torch.where(is_small, relative_position, relative_position_if_large)
    return relative_buckets


def bucket_matrix(Tq, Tk, bidirectional, nb, md):
    ctx = torch.arange(Tq, dtype=torch.long)[:, None]
    mem = torch.arange(Tk, dtype=torch.long)[None, :]
    return hf_bucket(mem - ctx, bidirectional, nb, md)   # (Tq, Tk)


# ------------------------------------------------------------------ HF files, by hand
def hf_config(v):
    return {"architectures": ["T5ForConditionalGeneration"], "model_type": "t5", "vocab_size": v["vocab"],
            "d_model": v["d_model"], "d_kv": v["d_kv"], "d_ff": v["d_ff"], "num_layers": v["layers"],
            "num_decoder_layers": v["dec_layers"], "num_heads": v["heads"],
            "relative_attention_num_buckets": v["buckets"], "relative_attention_max_distance": v["max_distance"],
            "dropout_rate": 0.1, "layer_norm_epsilon": 1e-6, "initializer_factor": 1.0,
            "feed_forward_proj": v["ffn"], "is_encoder_decoder": True, "use_cache": True, "pad_token_id": 0,
            "eos_token_id": 1, "decoder_start_token_id": 0, "tie_word_embeddings": v["tie"], "n_positions": 512,
            "torch_dtype": "float32", "transformers_version": "4.46.0"}


def random_weights(v, seed):
    g = torch.Generator().manual_seed(seed)
    C, A, F, V = v["d_model"], v["heads"] * v["d_kv"], v["d_ff"], v["vocab"]

    def rn(*shape, std=0.2):
        return torch.randn(*shape, generator=g, dtype=torch.float64) * std

    P = {"shared.weight": rn(V, C, std=0.7)}
    for stack, L in (("encoder", v["layers"]), ("decoder", v["dec_layers"])):
        P[f"{stack}.final_layer_norm.weight"] = 1 + rn(C)
        P[f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"] = rn(v["buckets"], v["heads"], std=0.2)
        for l in range(L):
            p = f"{stack}.block.{l}.layer."
            P[p + "0.layer_norm.weight"] = 1 + rn(C)
            for x in "qkv":
                P[p + f"0.SelfAttention.{x}.weight"] = rn(A, C, std=0.15)
            P[p + "0.SelfAttention.o.weight"] = rn(C, A)
            f = 1
            if stack == "decoder":
                P[p + "1.layer_norm.weight"] = 1 + rn(C)
                for x in "qkv":
                    P[p + f"1.EncDecAttention.{x}.weight"] = rn(A, C, std=0.15)
                P[p + "1.EncDecAttention.o.weight"] = rn(C, A)
                f = 2
            P[p + f"{f}.layer_norm.weight"] = 1 + rn(C)
            if v["ffn"] == "relu":
                P[p + f"{f}.DenseReluDense.wi.weight"] = rn(F, C)
            else:
                P[p + f"{f}.DenseReluDense.wi_0.weight"] = rn(F, C)
                P[p + f"{f}.DenseReluDense.wi_1.weight"] = rn(F, C)
            P[p + f"{f}.DenseReluDense.wo.weight"] = rn(C, F)
    if not v["tie"]:
        P["lm_head.weight"] = rn(V, C, std=0.4)
    return {k: t.float().double() for k, t in P.items()}   # the f32 values the file holds


def write_dir(d, v, P, dropout=0.1):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(dict(hf_config(v), dropout_rate=dropout), f, indent=2, sort_keys=True)
    items = [(n, P[n], "F32") for n in sorted(P)]
    # aliases transformers may save beside shared.weight, and the unused cross-attention bias of old checkpoints
    items += [("encoder.embed_tokens.weight", P["shared.weight"], "F32"),
              ("decoder.embed_tokens.weight", P["shared.weight"], "F32")]
    if v["extra_rel"]:
        items.append(("decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight",
                      torch.zeros(v["buckets"], v["heads"]), "F32"))
    write_safetensors(os.path.join(d, "model.safetensors"), items, {"format": "pt"})


# ------------------------------------------------------------------ the PyTorch reference (modeling_t5's equations)
def rms(x, w):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6))


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def attention(P, pre, xq, xkv, bias, mask, v, drop=None, p=0.0):
    H, dk = v["heads"], v["d_kv"]
    B, Tq, _ = xq.shape
    Tk = xkv.shape[1]
    q = (xq @ P[pre + "q.weight"].T).view(B, Tq, H, dk).transpose(1, 2)
    k = (xkv @ P[pre + "k.weight"].T).view(B, Tk, H, dk).transpose(1, 2)
    val = (xkv @ P[pre + "v.weight"].T).view(B, Tk, H, dk).transpose(1, 2)
    scores = q @ k.transpose(2, 3)                    # no 1/sqrt(d_kv)
    if bias is not None:
        scores = scores + bias
    scores = scores.masked_fill(~mask, float("-inf"))
    w = dropped(torch.softmax(scores, dim=-1), drop, p)   # T5Attention: dropout on the weights
    o = (w @ val).transpose(1, 2).reshape(B, Tq, H * dk)
    return o @ P[pre + "o.weight"].T


def ffn(P, pre, x, v, drop=None, p=0.0):
    if v["ffn"] == "relu":
        h = torch.relu(x @ P[pre + "wi.weight"].T)
    else:
        h = gelu_new(x @ P[pre + "wi_0.weight"].T) * (x @ P[pre + "wi_1.weight"].T)
    return dropped(h, drop, p) @ P[pre + "wo.weight"].T   # DenseReluDense / DenseGatedActDense: dropout before wo


def position_bias(P, stack, Tq, Tk, bidirectional, v):
    b = bucket_matrix(Tq, Tk, bidirectional, v["buckets"], v["max_distance"])
    table = P[f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"]
    return table[b].permute(2, 0, 1).unsqueeze(0)     # (1, H, Tq, Tk)


def t5_forward(P, v, enc, emask, dec, labels, drop=None):
    """drop: None, or the masks lmkit drew (refutil.encdec_dropout_masks) and "p", dropout_rate, applied
    where modeling_t5 drops: each stack's embeddings and final-norm output, the attention weights, each
    sub-layer's output before its residual add, the FFN's activation."""
    B, S = enc.shape
    T = dec.shape[1]
    dm = drop or {"enc": [{}] * v["layers"], "dec": [{}] * v["dec_layers"]}
    pd = drop["p"] if drop else 0.0
    D = lambda x, mask: dropped(x, mask, pd)
    h = D(P["shared.weight"][enc], dm.get("enc_emb"))
    ebias = position_bias(P, "encoder", S, S, True, v)
    m = emask.bool()[:, None, None, :]
    for l in range(v["layers"]):
        p, k = f"encoder.block.{l}.layer.", dm["enc"][l]
        x = rms(h, P[p + "0.layer_norm.weight"])
        h = h + D(attention(P, p + "0.SelfAttention.", x, x, ebias, m, v, k.get("att"), pd), k.get("res1"))
        h = h + D(ffn(P, p + "1.DenseReluDense.", rms(h, P[p + "1.layer_norm.weight"]), v, k.get("act"), pd), k.get("res2"))
    e = D(rms(h, P["encoder.final_layer_norm.weight"]), dm.get("enc_out"))
    d = D(P["shared.weight"][dec], dm.get("emb"))
    dbias = position_bias(P, "decoder", T, T, False, v)
    causal = torch.ones(T, T, dtype=torch.bool).tril()[None, None]
    for l in range(v["dec_layers"]):
        p, k = f"decoder.block.{l}.layer.", dm["dec"][l]
        x = rms(d, P[p + "0.layer_norm.weight"])
        d = d + D(attention(P, p + "0.SelfAttention.", x, x, dbias, causal, v, k.get("att"), pd), k.get("res1"))
        d = d + D(attention(P, p + "1.EncDecAttention.", rms(d, P[p + "1.layer_norm.weight"]), e, None, m, v,
                            k.get("xatt"), pd), k.get("resx"))
        d = d + D(ffn(P, p + "2.DenseReluDense.", rms(d, P[p + "2.layer_norm.weight"]), v, k.get("act"), pd), k.get("res2"))
    d = D(rms(d, P["decoder.final_layer_norm.weight"]), dm.get("lnf"))
    if v["tie"]:
        logits = (d * v["d_model"] ** -0.5) @ P["shared.weight"].T
    else:
        logits = d @ P["lm_head.weight"].T
    lab = labels.clone()
    lab[lab < 0] = -100
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, v["vocab"]), lab.reshape(-1), ignore_index=-100)
    return loss, logits


# ------------------------------------------------------------------ lmkit's names -> the HF tensors they concatenate
def hf_parts(ours, v):
    fixed = {"wte.weight": ["shared.weight"], "lm_head.weight": ["lm_head.weight"],
             "enc.ln_f.weight": ["encoder.final_layer_norm.weight"], "ln_f.weight": ["decoder.final_layer_norm.weight"],
             "enc.rel_bias.weight": ["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"],
             "rel_bias.weight": ["decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"]}
    if ours in fixed:
        return fixed[ours]
    enc = ours.startswith("enc.")
    _, l, rest = ours[4 if enc else 0:].split(".", 2)
    p = f"{'encoder' if enc else 'decoder'}.block.{l}.layer."
    f = 1 if enc else 2
    wi = ["wi"] if v["ffn"] == "relu" else ["wi_0", "wi_1"]
    return {"ln_1.weight": [p + "0.layer_norm.weight"],
            "attn.c_attn.weight": [p + f"0.SelfAttention.{x}.weight" for x in "qkv"],
            "attn.c_proj.weight": [p + "0.SelfAttention.o.weight"],
            "ln_x.weight": [p + "1.layer_norm.weight"],
            "xattn.q.weight": [p + "1.EncDecAttention.q.weight"],
            "xattn.kv.weight": [p + f"1.EncDecAttention.{x}.weight" for x in "kv"],
            "xattn.c_proj.weight": [p + "1.EncDecAttention.o.weight"],
            "ln_2.weight": [p + f"{f}.layer_norm.weight"],
            "mlp.c_fc.weight": [p + f"{f}.DenseReluDense.{x}.weight" for x in wi],
            "mlp.c_proj.weight": [p + f"{f}.DenseReluDense.wo.weight"]}[rest]


def run(args, **kw):
    return subprocess.run([REF] + [str(a) for a in args], capture_output=True, text=True, **kw)


def batch(v, seed):
    g = torch.Generator().manual_seed(seed)
    B, S, T, V = v["B"], v["S"], v["T"], v["vocab"]
    enc = torch.randint(2, V, (B, S), generator=g)
    emask = torch.ones(B, S, dtype=torch.uint8)
    emask[1, S - 4:] = 0                               # padding in the second sequence
    enc[1, S - 4:] = 0
    labels = torch.randint(2, V, (B, T), generator=g)
    labels[0, T - 2:] = -1                             # no loss there
    dec = torch.cat([torch.zeros(B, 1, dtype=torch.long), labels[:, :-1].clamp(min=0)], 1)   # shift right, start = pad
    return enc, emask, dec, labels


def write_case(d, v, P, seed, dropout=0.1):
    """the HF directory d and its batch in d/in; returns (enc, emask, dec, labels)"""
    write_dir(d, v, P, dropout)
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


def as_f32(x):
    """dropout masks (nested dicts, lists, tensors) with float64 tensors made float32"""
    if isinstance(x, dict):
        return {k: as_f32(y) for k, y in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(as_f32(y) for y in x)
    return x.float() if torch.is_tensor(x) and x.dtype == torch.float64 else x


def compare(ck, name, v, P, out, enc, emask, dec, labels, drop=None):
    """lmkit's loss, logits and every gradient in out against the reference's"""
    Pt = {k: t.clone().requires_grad_(True) for k, t in P.items()}
    loss, logits = t5_forward(Pt, v, enc, emask, dec, labels, drop)
    loss.backward()
    ours_loss = np.fromfile(os.path.join(out, "loss.bin"), dtype="<f4")[0]
    ck.check(f"{name}: loss", rel_err([ours_loss], [loss.item()]))
    ours_logits = np.fromfile(os.path.join(out, "logits.bin"), dtype="<f4").reshape(logits.shape)
    ck.check(f"{name}: logits", rel_err(ours_logits, logits.detach().numpy()))
    # The same model in PyTorch fp32: a gradient whose fp32 arithmetic cannot meet 1e-5 reliably is held
    # to twice PyTorch fp32's own error from float64 (T5 v1.1's decoder rel_bias sums dS terms that
    # largely cancel: PyTorch fp32 is 6.2-8.5e-6 from float64 on it, lmkit 7.0e-6 with OpenBLAS's
    # Haswell kernels and 1.09e-5 with its SkylakeX ones); every other gradient keeps 1e-5
    P32 = {k: t.float().clone().requires_grad_(True) for k, t in P.items()}
    loss32, _ = t5_forward(P32, v, enc, emask, dec, labels, as_f32(drop))
    loss32.backward()
    G = read_safetensors(os.path.join(out, "grads.safetensors"))
    worst, wname, wtol = 0.0, "", ck.tol
    for ours, g in G.items():
        ref = torch.cat([Pt[n].grad for n in hf_parts(ours, v)], 0).numpy()
        e32 = rel_err(torch.cat([P32[n].grad for n in hf_parts(ours, v)], 0).double().numpy(), ref)
        e, tol = rel_err(g, ref), max(ck.tol, 2 * e32)
        if e / tol > worst / wtol:
            worst, wname, wtol = e, ours, tol
    ck.check(f"{name}: all {len(G)} gradients (worst {wname}{'' if wtol == ck.tol else '; PyTorch fp32 is %.2e from float64' % (wtol / 2)})",
             worst, tol=wtol)
    covered = {n for ours in G for n in hf_parts(ours, v)}
    ck.check(f"{name}: every tensor of the file has a gradient", 0.0 if covered == set(P) else 1.0)


def check_dropout(ck, name, v, seed, tmp, p=0.3):
    """Training with dropout_rate p: the masks lmkit drew (every place modeling_t5 drops), applied by the
    reference at the same places, give the same loss, logits and gradients; at p = 0 training mode is
    the plain run, bit for bit."""
    d = os.path.join(tmp, "drop_" + name.split(" ")[1])
    P = random_weights(v, seed)
    enc, emask, dec, labels = write_case(d, v, P, seed + 1, dropout=p)
    out = os.path.join(d, "out")
    if not run_case(ck, f"{name}, dropout {p}", d, v, out, ("--dropout", 77)):
        return
    F = v["d_ff"]
    drop = dict(encdec_dropout_masks(out, v["layers"], v["dec_layers"], v["B"], v["S"], v["T"], v["d_model"],
                                     v["heads"], F), p=p)
    masks = [drop[k] for k in ("emb", "lnf", "enc_emb", "enc_out")]
    masks += [l[k] for l in drop["enc"] for k in ("att", "res1", "act", "res2")]
    masks += [l[k] for l in drop["dec"] for k in ("att", "res1", "xatt", "resx", "act", "res2")]
    ck.check(f"{name}, dropout {p}: all {len(masks)} masks drawn (embeddings, final norms, attention, "
             f"cross-attention, residuals, FFN activation)", float(sum(x is None for x in masks)))
    if any(x is None for x in masks):
        return
    kept = float(torch.cat([x.reshape(-1) for x in masks]).mean())
    ck.check(f"{name}, dropout {p}: kept share {kept:.3f} near {1 - p}", 0.0 if abs(kept - (1 - p)) < 0.03 else 1.0)
    compare(ck, f"{name}, dropout {p}", v, P, out, enc, emask, dec, labels, drop)
    # p = 0: training mode (no masks) is the evaluation-mode run, bit for bit
    d0 = os.path.join(tmp, "drop0_" + name.split(" ")[1])
    write_case(d0, v, P, seed + 1, dropout=0.0)
    a, b = os.path.join(d0, "plain"), os.path.join(d0, "train")
    if run_case(ck, f"{name}, p = 0", d0, v, a) and run_case(ck, f"{name}, p = 0 training", d0, v, b, ("--dropout", 77)):
        same, extra = same_run(a, b)
        ck.check(f"{name}: dropout_rate 0 in training is the plain run bit for bit, no masks ({extra})",
                 0.0 if same and not extra else 1.0)


def check_model(ck, name, v, seed, tmp):
    d = os.path.join(tmp, name.replace(" ", "_"))
    P = random_weights(v, seed)
    enc, emask, dec, labels = write_case(d, v, P, seed + 1)
    out = os.path.join(d, "out")
    if not run_case(ck, name, d, v, out):
        return
    compare(ck, name, v, P, out, enc, emask, dec, labels)
    # lmkit's save writes transformers' names and the same values
    saved = os.path.join(d, "saved")
    r = run(["--save", d, saved])
    if r.returncode:
        print(r.stderr)
        ck.check(f"{name}: save", 1.0)
        return
    S2 = read_safetensors(os.path.join(saved, "model.safetensors"))
    same = set(S2) == set(P) and all(np.array_equal(S2[k], P[k].float().numpy()) for k in P)
    if set(S2) != set(P):
        print("names differ:", sorted(set(S2) ^ set(P)))
    ck.check(f"{name}: saved tensors equal the file's, HF names", 0.0 if same else 1.0)
    cfg = json.load(open(os.path.join(saved, "config.json")))
    keys_ok = all(cfg[k] == hf_config(v)[k] for k in ("d_model", "d_kv", "d_ff", "num_layers", "num_decoder_layers",
                                                       "num_heads", "feed_forward_proj", "tie_word_embeddings",
                                                       "relative_attention_num_buckets", "relative_attention_max_distance",
                                                       "dropout_rate"))
    ck.check(f"{name}: saved config.json keys", 0.0 if keys_ok else 1.0)


def check_buckets(ck, tmp):
    T = 512
    for bidir in (1, 0):
        f = os.path.join(tmp, f"buckets{bidir}.bin")
        r = run(["--buckets", T, bidir, 32, 128, f])
        if r.returncode:
            print(r.stderr)
        by_offset = np.fromfile(f, dtype="<f4")
        i = np.arange(T)[:, None]
        j = np.arange(T)[None, :]
        ours = by_offset[j - i + T - 1]                # (T,T) as the attention reads it
        ref = bucket_matrix(T, T, bool(bidir), 32, 128).numpy()
        bad = int((ours != ref).sum())
        ck.check(f"relative buckets, every (q,k) of {T}x{T}, {'bidirectional' if bidir else 'causal'}: {bad} differ",
                 float(bad))


def check_errors(ck, tmp):
    v = dict(V1_0)
    P = random_weights(v, 5)
    d = os.path.join(tmp, "bad_ffn")
    write_dir(d, v, P)
    cfg = hf_config(v)
    cfg["feed_forward_proj"] = "gated-swish"
    json.dump(cfg, open(os.path.join(d, "config.json"), "w"))
    r = run(["--save", d, os.path.join(tmp, "x")])
    ck.check("unknown feed_forward_proj is an error naming it",
             0.0 if r.returncode and "feed_forward_proj" in r.stderr and "gated-swish" in r.stderr else 1.0)
    d = os.path.join(tmp, "missing")
    write_dir(d, v, {k: t for k, t in P.items() if "EncDecAttention.o" not in k})
    r = run(["--save", d, os.path.join(tmp, "y")])
    ck.check("a missing tensor is an error naming it",
             0.0 if r.returncode and "EncDecAttention.o.weight" in r.stderr else 1.0)
    d = os.path.join(tmp, "extra")
    write_dir(d, v, dict(P, **{"encoder.block.0.layer.0.SelfAttention.bogus.weight": torch.zeros(2)}))
    r = run(["--save", d, os.path.join(tmp, "z")])
    ck.check("an unknown tensor is an error naming it", 0.0 if r.returncode and "bogus" in r.stderr else 1.0)


def main():
    ck = Checker(1e-5)
    with tempfile.TemporaryDirectory() as tmp:
        check_buckets(ck, tmp)
        check_model(ck, "T5 v1.0 (relu, tied, t5-small layout)", V1_0, 11, tmp)
        check_model(ck, "T5 v1.1 (gated-gelu, untied, d_kv*heads != d_model, 2+3 layers)", V1_1, 23, tmp)
        check_dropout(ck, "T5 v1.0", V1_0, 11, tmp)
        check_dropout(ck, "T5 v1.1", V1_1, 23, tmp)
        check_errors(ck, tmp)
    ck.finish()


if __name__ == "__main__":
    main()
