"""Instruction tuning (SFT) against an independent reference: the data path (records ->
chat template -> tokens -> assistant mask -> micro-batch) and the loss and every parameter
gradient against PyTorch autograd in float64, at <= 1e-5 relative error.

ref_sft (tests/reference/ref_sft.c) runs lmkit's own code: lm_chat_read + lm_sft_encode (what
`lmkit sft` runs) and the objective's batch layout (lm_sft_layout), then lm_forward/lm_backward.
This test writes a byte-level tokenizer (256 byte tokens, no merges, and the special tokens
<|endoftext|> <|im_start|> <|im_end|>), so that it can tokenize on its own, and renders every
conversation itself as a list of (text, is the assistant's) pieces, from the template's
definition, not from lmkit's prefix-rendering method. It then checks:

  * the records: messages (multi-turn, with a system turn), prompt/completion and Alpaca
    (with and without input) become the expected conversations; the record without an
    assistant turn, the one with an empty answer and the one longer than max_length are
    counted and skipped;
  * the mask (a): exactly the assistant's answer and the end-of-turn token after it (the
    template's: <|im_end|> for ChatML, eos_token for the second template) carry a loss, in every
    assistant turn, and nothing else; ids and mask equal lmkit's, token for token;
  * the batches: one example per row right-padded, and packed (examples one after another,
    an example that does not fit the rest of a row starting the next row); ids, targets and
    starts equal this test's own layout; no target crosses an example boundary or lands on
    padding;
  * the loss and every gradient (b): the torch reference runs each example SEPARATELY
    (positions from 0, its own causal attention, no padding) and sums the token losses
    (mean over all assistant targets). Equal to lmkit's padded batch it shows that padding is
    inert; equal to lmkit's packed batch it shows that attention does not cross examples and
    positions restart. As a control, the packed rows run as plain sequences (attention
    crossing examples) give gradients far from lmkit's, so the comparison would see a leak.
"""
import json
import math
import os
import re
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
from refutil import BIN, Checker, read_safetensors, rel_err  # noqa: E402
from test_gpt import torch_hidden  # noqa: E402

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
EOT, IM_START, IM_END = 256, 257, 258
VOCAB = 259
MODEL = dict(vocab=VOCAB, positions=128, dim=32, layers=2, heads=4, max_length=128, pad=EOT, B_packed=2, seed=1234)
TORCH_CFG = dict(dim=32, heads=4, layers=2, rms=0, eps=1e-5, pre_ln=1, act=0, causal=1, tie=1)

# A second template, as Zephyr-style models write it: the turn ends with eos_token.
ZEPHYR = ("{{ bos_token }}{% for message in messages %}{{ '<|' + message['role'] + '|>\\n' + message['content'] + "
          "eos_token + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}")

RECORDS = [
    {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "reverse: a b c"},
                  {"role": "assistant", "content": "c b a"}, {"role": "user", "content": "and x y?"},
                  {"role": "assistant", "content": "y x"}]},
    {"prompt": "hi", "completion": "hello there"},
    {"instruction": "Add", "input": "2 3", "output": "5"},
    "",                                                            # a blank line is skipped
    {"messages": [{"role": "user", "content": "lonely"}]},        # no assistant turn: counted, skipped
    {"instruction": "Say ok", "input": "", "output": "ok"},
    {"prompt": "q", "completion": ""},                             # an empty answer: counted, skipped
    {"prompt": [{"role": "user", "content": "caf\u00e9 \u2713?"}], "completion": [{"role": "assistant", "content": "s\u00ed \u2713"}]},
    {"prompt": "x" * 150, "completion": "too long"},               # longer than max_length: counted, skipped
    {"messages": [{"role": "user", "content": "count to 3"}, {"role": "assistant", "content": "1 2 3"}]},
    {"messages": [{"role": "user", "content": "reverse: one two three four"},
                  {"role": "assistant", "content": "four three two one"}]},
]
KEPT = [0, 1, 2, 5, 7, 9, 10]   # indices in RECORDS of the usable conversations


def conversation(rec):
    if "messages" in rec:
        return rec["messages"]
    if "prompt" in rec:
        p, c = rec["prompt"], rec["completion"]
        p = [{"role": "user", "content": p}] if isinstance(p, str) else p
        c = [{"role": "assistant", "content": c}] if isinstance(c, str) else c
        return p + c
    user = rec["instruction"] + ("\n\n" + rec["input"] if rec["input"] else "")
    return [{"role": "user", "content": user}, {"role": "assistant", "content": rec["output"]}]


def pieces(msgs, template):
    """The rendered conversation as (text, is_assistant) pieces, from the template's definition:
    the assistant's content and the end of its turn (end-of-turn token and the newline after it)."""
    out = []
    if template == "chatml":
        for m in msgs:
            out.append((f"<|im_start|>{m['role']}\n", False))
            out.append((m["content"] + "<|im_end|>\n", m["role"] == "assistant"))
    else:
        out.append(("<|endoftext|>", False))                     # bos_token
        for m in msgs:
            out.append((f"<|{m['role']}|>\n", False))
            out.append((m["content"] + "<|endoftext|>\n", m["role"] == "assistant"))
    return out


def encode(text):
    ids = []
    for part in re.split("(" + "|".join(re.escape(s) for s in SPECIALS) + ")", text):
        if part in SPECIALS:
            ids.append(256 + SPECIALS.index(part))
        else:
            ids.extend(part.encode("utf-8"))
    return ids


def expected_examples(template):
    """[(ids, mask)] of the kept records, tokenized by this test."""
    out = []
    for i in KEPT:
        ids, mask = [], []
        for text, assistant in pieces(conversation(RECORDS[i]), template):
            t = encode(text)
            ids += t
            mask += [int(assistant)] * len(t)
        out.append((ids, mask))
    return out


def targets_of(ids, mask):
    return [ids[t + 1] if t + 1 < len(ids) and mask[t + 1] else -1 for t in range(len(ids))]


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1)) + \
        list(range(ord("\u00ae"), ord("\u00ff") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def write_dir(d, template):
    m = bytes_to_unicode()
    vocab = {m[b]: b for b in range(256)}
    for i, s in enumerate(SPECIALS):
        vocab[s] = 256 + i
    tj = {"version": "1.0", "truncation": None, "padding": None,
          "added_tokens": [{"id": 256 + i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
                            "normalized": False, "special": True} for i, s in enumerate(SPECIALS)],
          "normalizer": None,
          "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
          "post_processor": None,
          "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
          "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                    "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "vocab": vocab, "merges": []}}
    with open(os.path.join(d, "tokenizer.json"), "w") as f:
        json.dump(tj, f)
    if template != "chatml":
        with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
            json.dump({"chat_template": ZEPHYR, "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"}, f)
    with open(os.path.join(d, "data.jsonl"), "w") as f:
        for r in RECORDS:
            f.write((json.dumps(r) if r != "" else "") + "\n")
    with open(os.path.join(d, "config.txt"), "w") as f:
        for k, v in MODEL.items():
            f.write(f"{k} {v}\n")


def layout(examples, packing, B, T):
    """This test's own micro-batch: (placed, ids, targets, starts) as (B, Tb) lists."""
    if not packing:
        Tb = max(len(ids) for ids, _ in examples)
        rows = [(ids + [EOT] * (Tb - len(ids)), targets_of(ids, m) + [-1] * (Tb - len(ids))) for ids, m in examples]
        return len(examples), [r[0] for r in rows], [r[1] for r in rows], None
    ids, tgt, starts = [[] for _ in range(B)], [[] for _ in range(B)], [[] for _ in range(B)]
    row, placed = 0, 0
    for e_ids, e_mask in examples:
        if len(ids[row]) + len(e_ids) > T:
            if row + 1 == B:
                break
            row += 1
        s = len(ids[row])
        ids[row] += e_ids
        tgt[row] += targets_of(e_ids, e_mask)
        starts[row] += [s] * len(e_ids)
        placed += 1
    for r in range(B):
        n = len(ids[r])
        ids[r] += [EOT] * (T - n)
        tgt[r] += [-1] * (T - n)
        starts[r] += list(range(n, T))
    return placed, ids, tgt, starts


def torch_loss_separately(P, examples):
    """Each example alone (positions from 0, causal attention inside it): sum of token losses / count."""
    total, count = 0, 0
    for ids, mask in examples:
        x = torch_hidden(P, TORCH_CFG, torch.tensor([ids]), None)
        logits = x[0] @ P["wte.weight"].T
        tgt = torch.tensor(targets_of(ids, mask))
        total = total + F.cross_entropy(logits, tgt, ignore_index=-1, reduction="sum")
        count += int((tgt >= 0).sum())
    return total / count


def torch_loss_rows(P, ids, tgt):
    """The rows as plain causal sequences (attention crosses packed examples): the control."""
    x = torch_hidden(P, TORCH_CFG, torch.tensor(ids), None)
    logits = x @ P["wte.weight"].T
    return F.cross_entropy(logits.reshape(-1, VOCAB), torch.tensor(tgt).view(-1), ignore_index=-1)


def read_ints(d, name, dtype, shape=None):
    a = np.fromfile(os.path.join(d, name), dtype=dtype)
    return a.reshape(shape) if shape else a


def run_case(chk, template):
    eot_name = "<|im_end|>" if template == "chatml" else "eos_token <|endoftext|>"
    with tempfile.TemporaryDirectory() as d:
        write_dir(d, template)
        subprocess.run([os.path.join(BIN, "ref_sft"), d], check=True)
        examples = expected_examples(template)

        # records: kept and skipped
        counts = [int(x) for x in open(os.path.join(d, "counts.txt")).read().split()]
        chk.check(f"{template}: records kept / no assistant / empty / too long / no loss = {counts}",
                  0.0 if counts == [len(KEPT), 1, 1, 1, 0] else 1.0)

        # tokens and mask, example by example
        off = read_ints(d, "enc_off.bin", "<i8")
        got_ids, got_mask = read_ints(d, "enc_ids.bin", "<u4"), read_ints(d, "enc_mask.bin", "u1")
        same = len(off) == len(examples) + 1
        for i, (ids, mask) in enumerate(examples):
            if not same:
                break
            a, b = off[i], off[i + 1]
            if got_ids[a:b].tolist() != ids or got_mask[a:b].tolist() != mask:
                print(f"  example {i}: ids {got_ids[a:b].tolist()}\n   expected {ids}\n  mask {got_mask[a:b].tolist()}\n"
                      f"   expected {mask}")
                same = False
        n_asst = sum(sum(m) for _, m in examples)
        chk.check(f"{template}: ids and assistant mask of {len(examples)} conversations token for token "
                  f"({n_asst} assistant tokens)", 0.0 if same else 1.0)
        # the end-of-turn token is in the mask: each assistant turn's answer is followed by a masked end of turn
        end_id = IM_END if template == "chatml" else EOT
        turns = sum(1 for i in KEPT for m in conversation(RECORDS[i]) if m["role"] == "assistant")
        ends = sum(1 for ids, m in examples for t in range(len(ids)) if m[t] and ids[t] == end_id)
        chk.check(f"{template}: {turns} assistant turns, {ends} end-of-turn tokens ({eot_name}) in the mask",
                  0.0 if ends == turns and turns > len(examples) else 1.0)

        P = {k: torch.tensor(v, dtype=torch.float64) for k, v in read_safetensors(os.path.join(d, "params.safetensors")).items()}
        for mode in ("plain", "packed"):
            placed, B, Tb = (int(x) for x in open(os.path.join(d, f"{mode}_meta.txt")).read().split())
            ids = read_ints(d, f"{mode}_ids.bin", "<i4", (B, Tb))
            tgt = read_ints(d, f"{mode}_targets.bin", "<i4", (B, Tb))
            starts = read_ints(d, f"{mode}_starts.bin", "<i4", (B, Tb)) if mode == "packed" else None
            e_placed, e_ids, e_tgt, e_starts = layout(examples, mode == "packed", B, MODEL["max_length"])
            ok = placed == e_placed and ids.tolist() == e_ids and tgt.tolist() == e_tgt and \
                (starts is None or starts.tolist() == e_starts)
            desc = f"{B} rows of {Tb}, {placed} of {len(examples)} examples"
            chk.check(f"{template} {mode}: batch layout ({desc}) equals the reference's", 0.0 if ok else 1.0)
            if mode == "packed":
                # the mask at the boundaries: the last token of an example (the next begins, or padding
                # follows) has no target, nor does padding; every row holds several examples somewhere
                bad = 0
                for r in range(B):
                    for t in range(Tb):
                        nxt_begins = t + 1 == Tb or starts[r, t + 1] == t + 1
                        if nxt_begins and tgt[r, t] != -1:
                            bad += 1
                chk.check(f"{template} packed: no target across an example boundary or on padding ({bad} bad); "
                          f"{placed} examples in {B} rows, the rest did not fit",
                          0.0 if bad == 0 and B < placed < len(examples) else 1.0)
            # loss and every gradient vs examples run one by one in torch
            Pg = {k: v.clone().requires_grad_(True) for k, v in P.items()}
            loss = torch_loss_separately(Pg, examples[:placed])
            loss.backward()
            ours = float(open(os.path.join(d, f"{mode}_loss.txt")).read())
            chk.check(f"{template} {mode}: loss {ours:.6f} vs each example alone {loss.item():.6f}",
                      abs(ours - loss.item()) / abs(loss.item()))
            G = read_safetensors(os.path.join(d, f"{mode}_grads.safetensors"))
            missing = sorted(set(Pg) ^ set(G))
            if missing:
                chk.check(f"{template} {mode}: gradients [names differ: {missing}]", 1.0)
            else:
                worst = max(G, key=lambda k: rel_err(G[k], Pg[k].grad.numpy()))
                chk.check(f"{template} {mode}: all {len(G)} gradients (worst {worst})", rel_err(G[worst], Pg[worst].grad.numpy()))
            if mode == "packed":
                Pc = {k: v.clone().requires_grad_(True) for k, v in P.items()}
                leak = torch_loss_rows(Pc, ids.tolist(), tgt.tolist())
                leak.backward()
                gap = max(rel_err(G[k], Pc[k].grad.numpy()) for k in G)
                chk.check(f"{template} packed: control: the rows run as plain sequences (attention across examples, "
                          f"positions not restarting) give loss {leak.item():.6f} and gradients {gap:.1e} away (> 1e-3)",
                          0.0 if gap > 1e-3 else 1.0)


def main():
    torch.set_default_dtype(torch.float64)
    chk = Checker(1e-5)
    for template in ("chatml", "zephyr"):
        run_case(chk, template)
    chk.finish()


if __name__ == "__main__":
    main()
