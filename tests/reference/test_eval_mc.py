"""`lmkit eval --task multiple-choice` against a PyTorch computation of the same
log-likelihoods, lm-evaluation-harness's way: for each HellaSwag-style record
{"ctx", "endings", "label"} and ending e, the continuation " " + e is scored as
the sum of log softmax of the GPT-2 logits (tests/reference/test_hf_gpt2.py's
reference model, float64) at its tokens, after the context (trailing spaces of
the context moved into the continuation, an empty context replaced by the
end-of-text token, a pair longer than the positions keeping its last tokens).
Every log-likelihood in --details must agree to 1e-5 relative error; acc,
acc_norm (per byte) and their standard errors in --report are recomputed from
the reference's numbers; k-shot prompts ("ctx ending" joined by blank lines
before the context) are rebuilt from the shots the details name. Malformed
records are one-line errors naming file and line."""
import json
import math
import os
import subprocess
import tempfile

import numpy as np
import torch

from refutil import BIN, Checker, read_safetensors
from test_hf_gpt2 import hf_gpt2_logits, strip_prefix

LMKIT = os.path.join(BIN, "lmkit")
EOT = 256   # the byte tokenizer: ids are the bytes, then <|endoftext|>

RECORDS = [
    {"ctx": "The cat sat on the", "endings": ["mat.", "moon, far away.", "dog"], "label": 0},
    {"ctx": "A man is cooking. He ", "endings": ["stirs the pot.", "flies.", "sings", "is asleep"], "label": "0"},
    {"ctx": "", "endings": ["Hello there.", "Zzzq"], "label": 1},
    {"ctx": "Caf\u00e9 society likes", "endings": ["cr\u00e8me br\u00fbl\u00e9e", "tea", "noise and \u00e9clat"], "label": 2,
     "activity_label": "Eating", "ind": 7, "split": "val"},
    {"ctx": "To be or not to be, that is the question: whether 'tis nobler in the mind to suffer the slings",
     "endings": ["and arrows of outrageous fortune", "of fate"], "label": 0},
    {"ctx": "One two three four", "endings": ["five", "six seven", "4"], "label": 1},
]


def loglik(P, cfg, context, cont):
    n_sp = len(context) - len(context.rstrip(" "))
    if n_sp:
        context, cont = context[:-n_sp], context[-n_sp:] + cont
    ctx = list(context.encode())
    whole = ctx + list(cont.encode())
    cont_ids = whole[len(ctx):]
    seq = ([EOT] if not ctx else []) + whole
    seq = seq[-(cfg["n_positions"] + 1):]
    inp = seq[:-1]
    logits = torch.as_tensor(hf_gpt2_logits(P, cfg, inp))
    lp = torch.log_softmax(logits, -1)
    T, nc = len(inp), len(cont_ids)
    return float(sum(lp[t, seq[t + 1]] for t in range(T - nc, T)))


def prompt(rec, train, shots):
    return "".join("%s %s\n\n" % (train[s]["ctx"], train[s]["endings"][int(train[s]["label"])]) for s in shots) + rec["ctx"]


def stderr(xs):
    n = len(xs)
    m = sum(xs) / n
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1) / n)


def main():
    chk = Checker(1e-5)
    with tempfile.TemporaryDirectory() as d:
        corpus = os.path.join(d, "corpus.txt")
        with open(corpus, "w") as f:
            for i in range(300):
                f.write("The cat sat on the mat. A man is cooking; he stirs the pot. One two three four five six. Caf\u00e9 %d\n" % i)
        model = os.path.join(d, "m")
        subprocess.run([LMKIT, "train", "--data", corpus, "--out", model, "--layers", "2", "--heads", "2", "--dim", "32",
                        "--context", "48", "--batch", "4", "--steps", "40", "--lr", "3e-3", "--seed", "3", "--threads", "2",
                        "--quiet"], check=True, capture_output=True)
        cfg = json.load(open(os.path.join(model, "config.json")))
        P = {k: torch.as_tensor(v, dtype=torch.float64) for k, v in strip_prefix(read_safetensors(os.path.join(model, "model.safetensors"))).items()}
        data = os.path.join(d, "hs.jsonl")
        with open(data, "w") as f:
            for r in RECORDS:
                f.write(json.dumps(r) + "\n\n")   # blank lines are skipped; line numbers count them
        train = os.path.join(d, "train.jsonl")
        train_recs = [{"ctx": "Fish swim in", "endings": ["water", "air"], "label": 0},
                      {"ctx": "Birds fly in the", "endings": ["sky", "sea"], "label": 0},
                      {"ctx": "Snow is", "endings": ["hot", "cold"], "label": 1}]
        with open(train, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in train_recs)

        for shots, train_file, train_set in ((0, None, RECORDS), (2, train, train_recs), (2, None, RECORDS)):
            det, rep = os.path.join(d, "det.jsonl"), os.path.join(d, "rep.json")
            cmd = [LMKIT, "eval", "--model", model, "--task", "multiple-choice", "--data", data, "--details", det,
                   "--report", rep, "--threads", "2", "--quiet", "--shots", str(shots)]
            if train_file:
                cmd += ["--train", train_file]
            subprocess.run(cmd, check=True, capture_output=True)
            details = [json.loads(l) for l in open(det)]
            report = json.load(open(rep))
            acc, acc_norm, worst = [], [], 0.0
            for rec, dl in zip(RECORDS, details):
                assert len(dl["shots"]) == shots and (train_file or dl["index"] not in dl["shots"]), dl
                p = prompt(rec, train_set, dl["shots"])
                ref = [loglik(P, cfg, p, " " + e) for e in rec["endings"]]
                worst = max(worst, max(abs(a - b) / max(abs(b), 1e-12) for a, b in zip(dl["loglik"], ref)))
                nbytes = [len((" " + e).encode()) for e in rec["endings"]]
                assert dl["bytes"] == nbytes, (dl["bytes"], nbytes)
                label = int(rec["label"])
                acc.append(float(int(np.argmax(ref)) == label))
                acc_norm.append(float(int(np.argmax([r / b for r, b in zip(ref, nbytes)])) == label))
            where = "%d-shot%s" % (shots, " from --train" if train_file else "")
            chk.check("log-likelihoods of %d records, %s" % (len(RECORDS), where), worst)
            n = len(RECORDS)
            chk.check("acc, acc_norm, n (%s)" % where, abs(report["acc"] - sum(acc) / n) + abs(report["acc_norm"] - sum(acc_norm) / n) + abs(report["n"] - n), 0)
            chk.check("standard errors (%s)" % where, abs(report["acc_stderr"] - stderr(acc)) + abs(report["acc_norm_stderr"] - stderr(acc_norm)), 1e-12)
            chk.check("report names the task and shots (%s)" % where, 0 if report["task"] == "multiple-choice" and report["shots"] == shots else 1, 0)

        # bad records: one error line naming file and line
        for text, want in (('{"ctx": "a", "endings": ["b", "c"], "label": 0}\n{"ctx": "a", "endings": ["b"], "label": 0}\n', ":2: \"endings\" must be an array of at least 2"),
                           ('\n{"ctx": "a", "endings": ["b", "c"], "label": 2}\n', ":2: \"label\" 2 is not an index"),
                           ('{"ctx": "a", "endings": ["b", "c"], "label": 0, "gold": 1}\n', ":1: unknown key \"gold\""),
                           ('{"ctx": "a", "endings": ["b", "c"], "label": 0\n', ":1: not a JSON object")):
            bad = os.path.join(d, "bad.jsonl")
            open(bad, "w").write(text)
            r = subprocess.run([LMKIT, "eval", "--model", model, "--task", "multiple-choice", "--data", bad], capture_output=True, text=True)
            lines = r.stderr.strip().splitlines()
            ok = r.returncode != 0 and len(lines) == 1 and lines[0].startswith("lmkit: error: " + bad + want.split(":")[0]) and want in lines[0]
            chk.check("bad record -> %s" % want, 0 if ok else 1, 0)
            if not ok:
                print("   got:", r.stderr.strip())
    chk.finish()


if __name__ == "__main__":
    main()
