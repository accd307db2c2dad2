"""`lmkit toolformer` (src/train/toolformer.c, cli/cmd_toolformer.c) against a
hand-made list of candidates and a PyTorch float64 GPT-2.

A tiny GPT-2 is trained for a few steps by `lmkit train` (byte tokenizer) on
arithmetic lines, some with calculator calls. The records below hold
arithmetic written by hand; the candidate calls each must give (expression,
where the call goes, the calculator's result) are listed by hand too, with
the spans that must NOT be candidates (glued to a word, a division by zero, no
operator). For every candidate the reference builds Toolformer's three
sequences, each piece tokenized alone (`lmkit tokenizer encode`):

    text[:at]                               + text[at:]     (no call)
    text[:at] + " <|calc|>E<|/calc|>"       + text[at:]     (call without result)
    text[:at] + " <|calc|>E<|/calc|> → R"   + text[at:]     (call with result)

computes the summed NLL of the first `window` tokens of text[at:] under the
model's HF tensors in float64 (test_hf_gpt2.hf_gpt2_logits), and applies the
rule: keep when min(L_none, L_no_result) - L_call >= tau. lmkit's --report
losses must agree to 1e-5 relative, its decisions must be the rule's (tau is
chosen between two candidates' gains, so some are kept and some are not),
and its output must be the records with exactly the kept calls inserted.
A record longer than the model's context (its front is dropped) and a window
longer than what follows are checked too."""
import json
import os
import subprocess
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from refutil import BIN, Tally, read_safetensors, rel_err  # noqa: E402
from test_hf_gpt2 import hf_gpt2_logits, strip_prefix  # noqa: E402

LMKIT = os.path.join(BIN, "lmkit")
TOL = 1e-5
ARROW = " \u2192 "

RECORDS = [
    "Tom had 12 apples and got 7 more: 12 + 7 = 19 apples.",
    "Then 3 * (4 + 5) = 27 in all.",
    "so 2 + 2 = 5 said the parrot.",
    "What is 77*33? Nobody knows.",
    "A date 2020-11-05 is not math.",
    "version v1.2+3 x and 100 / 0 = oops, 7 alone, x2*3, 4+4x and 8+1.",
    "nothing follows 5 + 5 =",
    "we have 45 - 17 = 28 now and 6 \u00d7 7 = 42 then.",
    "(-8 + 2) * 3 = -18 is negative and 2^10 = 1024 too.",
    "a long story, " + "la " * 25 + "then 3 + 4 = 7 and " + "la " * 12,   # past the context: the front is dropped
]
# (record, expression, text before the call, result): by hand
EXPECTED = [
    (0, "12 + 7", "Tom had 12 apples and got 7 more: 12 + 7 =", "19"),
    (1, "3 * (4 + 5)", "Then 3 * (4 + 5) =", "27"),
    (2, "2 + 2", "so 2 + 2 =", "4"),
    (3, "77*33", "What is 77*33", "2541"),
    (4, "2020-11-05", "A date 2020-11-05", "2004"),
    (5, "8+1", "version v1.2+3 x and 100 / 0 = oops, 7 alone, x2*3, 4+4x and 8+1", "9"),
    (6, "5 + 5", "nothing follows 5 + 5 =", "10"),
    (7, "45 - 17", "we have 45 - 17 =", "28"),
    (7, "6 \u00d7 7", "we have 45 - 17 = 28 now and 6 \u00d7 7 =", "42"),
    (8, "(-8 + 2) * 3", "(-8 + 2) * 3 =", "-18"),
    (8, "2^10", "(-8 + 2) * 3 = -18 is negative and 2^10 =", "1024"),
    (9, "3 + 4", "a long story, " + "la " * 25 + "then 3 + 4 =", "7"),
]


def run(*args, stdin=None):
    return subprocess.run([LMKIT, *args], input=stdin, capture_output=True, text=True)


def encode(model, s):
    if not s:
        return []
    r = run("tokenizer", "encode", "--tokenizer", model, "--ids", stdin=s)
    assert r.returncode == 0, r.stderr
    return [int(x) for x in r.stdout.split()]


def reference_losses(P, cfg, model, text, at, expr, result, window):
    pre, rest = encode(model, text[:at]), encode(model, text[at:])[:window]
    calls = ["", " <|calc|>" + expr + "<|/calc|>", " <|calc|>" + expr + "<|/calc|>" + ARROW + result]
    out = []
    for c in calls:
        seq = pre + encode(model, c) + rest
        seq = seq[-cfg["n_positions"]:]
        logits = torch.as_tensor(hf_gpt2_logits(P, cfg, seq))
        lp = torch.log_softmax(logits, -1)
        n = len(seq)
        out.append(-sum(float(lp[t - 1, seq[t]]) for t in range(n - len(rest), n)))
    return out, len(rest)


def main():
    chk = Tally()
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "corpus.txt"), "w") as f:
            for i in range(400):
                a, b = (i * 37) % 100, (i * 53) % 100
                call = f"<|calc|>{a} + {b}<|/calc|>{ARROW}{a + b} " if i % 2 else ""
                f.write(f"so {a} + {b} = {call}{a + b} in all.\n")
        model = os.path.join(d, "m")
        r = run("train", "--data", os.path.join(d, "corpus.txt"), "--layers", "2", "--heads", "2", "--dim", "32",
                "--context", "64", "--steps", "20", "--lr", "3e-3", "--batch", "4", "--threads", "1", "--quiet", "--out", model)
        chk.check(r.returncode == 0, "a tiny GPT-2 trained" + ' ' + str(r.stderr[-300:]))
        cfg = json.load(open(os.path.join(model, "config.json")))
        chk.check(cfg["activation_function"] == "gelu_new", "its activation is gelu_new (the reference's)")
        P = {k: v.double() for k, v in strip_prefix({k: torch.as_tensor(v) for k, v in read_safetensors(os.path.join(model, "model.safetensors")).items()}).items()}
        data = os.path.join(d, "data.jsonl")
        with open(data, "w") as f:
            for i, t in enumerate(RECORDS):
                f.write(json.dumps({"text": t, "id": i}) + "\n")
                if i == 3:
                    f.write("\n")   # a blank line is skipped

        for window in (5, 60):
            ref = []
            for rec, expr, before, result in EXPECTED:
                (ln, lnr, lc), k = reference_losses(P, cfg, model, RECORDS[rec], len(before), expr, result, window)
                ref.append((ln, lnr, lc, k))
            gains = sorted(min(ln, lnr) - lc for ln, lnr, lc, k in ref if k)
            mid = len(gains) // 2   # tau between two gains: some kept, some not
            tau = (gains[mid - 1] + gains[mid]) / 2
            out, rep = os.path.join(d, f"aug{window}.jsonl"), os.path.join(d, f"rep{window}.jsonl")
            r = run("toolformer", "--model", model, "--data", data, "--out", out, "--report", rep, "--threads", "1",
                    "--window", str(window), "--threshold", repr(tau), "--batch", "3")
            chk.check(r.returncode == 0, f"window {window}: toolformer runs" + ' ' + str(r.stderr[-400:]))
            got = [json.loads(l) for l in open(rep)]
            chk.check([(g["line"], g["expression"], g["at"], g["result"]) for g in got] ==
                      [(rec + 1 + (rec > 3), expr, len(before.encode()), res) for rec, expr, before, res in EXPECTED], f"window {window}: the candidates are the hand-listed ones" + ' ' + str(str([(g["line"], g["expression"], g["at"], g["result"]) for g in got])))
            if len(got) != len(EXPECTED):
                continue
            worst, kept = 0.0, 0
            for g, (ln, lnr, lc, k), e in zip(got, ref, EXPECTED):
                worst = max(worst, rel_err(g["loss_none"], ln), rel_err(g["loss_no_result"], lnr), rel_err(g["loss_call"], lc))
                want = k > 0 and min(ln, lnr) - lc >= tau
                chk.check(g["keep"] == want and g["tokens"] == k, f"window {window}: {e[1]!r} kept={g['keep']} as the rule says (gain {min(ln, lnr) - lc:.4f}, tau {tau:.4f}, {k} tokens)")
                kept += want
            print(f"window {window}: tau {tau:.4f}, {kept} of {len(EXPECTED)} calls kept; losses vs PyTorch: worst rel err {worst:.2e}")
            chk.check(worst <= TOL, f"window {window}: the three losses of every candidate vs PyTorch (worst rel err {worst:.2e})")
            chk.check(0 < kept < len(EXPECTED) - 1, f"window {window}: some calls kept ({kept}) and some not")
            # the output: the records with exactly the kept calls, other members kept, in order
            want_text = list(RECORDS)
            for g, (rec, expr, before, res) in reversed(list(zip(got, EXPECTED))):
                if g["keep"]:
                    t = want_text[rec]
                    want_text[rec] = t[:len(before)] + " <|calc|>" + expr + "<|/calc|>" + ARROW + res + t[len(before):]
            lines = [json.loads(l) for l in open(out)]
            chk.check(lines == [{"text": t, "id": i} for i, t in enumerate(want_text)], f"window {window}: the output holds the records with the kept calls inserted")

        # --kept-only, --format text
        r = run("toolformer", "--model", model, "--data", data, "--out", os.path.join(d, "k.txt"), "--threads", "1",
                "--threshold", "-1e9", "--format", "text", "--kept-only")
        txt = open(os.path.join(d, "k.txt")).read().splitlines() if r.returncode == 0 else []
        chk.check(len(txt) == 9 and all("<|calc|>" in t for t in txt) and "nothing follows 5 + 5 =" not in txt, "--threshold -1e9 --kept-only --format text: every record with a scored call, as text lines" + ' ' + str(r.stderr[-300:]))

        # errors: one clear line each
        def err(name, text, *args, data_lines=None):
            p = data
            if data_lines is not None:
                p = os.path.join(d, "bad.jsonl")
                open(p, "w").write("".join(l + "\n" for l in data_lines))
            r = run("toolformer", "--model", model, "--data", p, "--out", os.path.join(d, "x.jsonl"), *args)
            lines = [l for l in r.stderr.splitlines() if l.startswith("lmkit: error: ")]
            chk.check(r.returncode != 0 and len(lines) == 1 and text in lines[0], f"error: {name}" + ' ' + str(r.stderr[-300:]))
        err("not JSON", "bad.jsonl:2: not a JSON object", data_lines=['{"text": "1+1=2"}', "{oops"])
        err("unknown record", 'bad.jsonl:1: toolformer reads {"text": string}', data_lines=['{"body": "1+1=2"}'])
        err("a conversation without a template", "bad.jsonl:1: a conversation, but", data_lines=['{"prompt": "q", "completion": "1 + 1 = 2 ok"}'])
        err("--format text with a conversation", "--format text writes", "--format", "text", data_lines=['{"prompt": "q", "completion": "1 + 1 = 2 ok"}'])
        err("unknown --format", "unknown --format 'csv'", "--format", "csv")
        err("a bad --window", "--window", "--window", "0")
    chk.finish()


if __name__ == "__main__":
    main()
