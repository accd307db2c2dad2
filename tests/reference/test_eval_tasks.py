"""`lmkit eval --task classify` and `--task exact-match` against Python/PyTorch.

classify: every label word's score in --details equals the PyTorch log-likelihood
(test_eval_mc.py's float64 GPT-2, lm-eval's way) of " " + word after the
template filled with the text (k-shot prompts rebuilt from the shots the details
name, each shot "prompt word"); acc, its standard error and the per-class counts
in --report are recomputed from the reference's numbers. JSONL with string
labels and SST-2-style TSV with numeric labels + --labels both.

exact-match: each output in --details equals PyTorch greedy decoding of the
prompt (byte tokenizer: argmax until end of text, --max-tokens, or the stop
string, which is cut off); EM and its standard error equal a Python computation
over the outputs with SQuAD's normalize_answer (for --em-normalize squad),
lowercase+strip (lower) or strip; targets built from the outputs (cased,
punctuated, with articles) check that each normalization matches what Python's does.

Malformed records are one-line errors naming file and line."""
import json
import math
import os
import re
import string
import subprocess
import tempfile

import numpy as np
import torch

from refutil import BIN, Checker, read_safetensors
from test_eval_mc import EOT, loglik, stderr
from test_hf_gpt2 import hf_gpt2_logits, strip_prefix

LMKIT = os.path.join(BIN, "lmkit")

CLS = [{"text": "the cat sat on the mat", "label": "positive"},
       {"text": "a man is cooking", "label": "negative"},
       {"sentence": "one two three", "label": "positive", "idx": 3},
       {"text": "caf\u00e9 noise", "label": "negative"},
       {"text": "he stirs the pot", "label": "positive"}]
TSV = "sentence\tlabel\nthe mat is nice\t1\na dog\t0\nfour five six\t1\n"
TSV_ROWS = [("the mat is nice", 1), ("a dog", 0), ("four five six", 1)]
TEMPLATE = "Review: {text}\\nSentiment:"   # as typed on a command line: \n is an escape

EM = [{"input": "The cat sat on the", "target": "mat."},
      {"prompt": "A man is cooking; he", "answer": ["stirs the pot.", "x"]},
      {"input": "One two three four", "target": "five"},
      {"input": "Caf\u00e9", "target": "1", "id": 9},
      {"input": "", "target": "The cat"}]


def normalize_answer(s):   # SQuAD v1.1's evaluate script
    def remove_articles(text):
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    return white_space_fix(remove_articles(remove_punc(s.lower())))


NORMS = {"strip": lambda s: s.strip(), "lower": lambda s: s.lower().strip(), "squad": normalize_answer}


def greedy(P, cfg, prompt, max_tokens, stop):
    ids = list(prompt.encode()) or [EOT]
    out = []
    for _ in range(max_tokens):
        ctx = (ids + out)[-cfg["n_positions"]:]
        nxt = int(torch.argmax(torch.as_tensor(hf_gpt2_logits(P, cfg, ctx))[-1]))
        if nxt == EOT:
            break
        out.append(nxt)
        text = bytes(out).decode("utf-8", "ignore")
        if stop and stop in text:
            return text[:text.index(stop)]
    return bytes(out).decode("utf-8", "ignore")


def run(args, check=True):
    return subprocess.run([LMKIT, "eval"] + args + ["--threads", "2", "--quiet"], check=check, capture_output=True, text=True)


def main():
    chk = Checker(1e-5)
    with tempfile.TemporaryDirectory() as d:
        corpus = os.path.join(d, "corpus.txt")
        with open(corpus, "w") as f:
            for i in range(300):
                f.write("Review: the cat sat on the mat\nSentiment: positive\n\nA man is cooking; he stirs the pot. "
                        "One two three four five six. Caf\u00e9 %d\n" % i)
        model = os.path.join(d, "m")
        subprocess.run([LMKIT, "train", "--data", corpus, "--out", model, "--layers", "2", "--heads", "2", "--dim", "32",
                        "--context", "128", "--batch", "4", "--steps", "40", "--lr", "3e-3", "--seed", "3", "--threads", "2",
                        "--quiet"], check=True, capture_output=True)
        cfg = json.load(open(os.path.join(model, "config.json")))
        P = {k: torch.as_tensor(v, dtype=torch.float64) for k, v in strip_prefix(read_safetensors(os.path.join(model, "model.safetensors"))).items()}
        det, rep = os.path.join(d, "det.jsonl"), os.path.join(d, "rep.json")

        # ---------------------------------------------------------------- classify
        jl, tsv = os.path.join(d, "cls.jsonl"), os.path.join(d, "sst.tsv")
        open(jl, "w").write("".join(json.dumps(r) + "\n" for r in CLS))
        open(tsv, "w").write(TSV)
        tmpl = TEMPLATE.replace("\\n", "\n")
        cases = [("jsonl, default labels", jl, [], ["negative", "positive"], [(r.get("text", r.get("sentence")), r["label"]) for r in CLS], 0, None),
                 ("tsv, --labels, 2-shot from --train", tsv, ["--labels", "negative,positive", "--shots", "2", "--train", jl],
                  ["negative", "positive"], [(t, ["negative", "positive"][y]) for t, y in TSV_ROWS], 2,
                  [(r.get("text", r.get("sentence")), r["label"]) for r in CLS]),
                 ("jsonl, 3 labels, 1-shot from itself", jl, ["--labels", "positive,negative,neutral", "--shots", "1"],
                  ["positive", "negative", "neutral"], [(r.get("text", r.get("sentence")), r["label"]) for r in CLS], 1, "self")]
        for name, data, extra, words, rows, shots, train in cases:
            run(["--model", model, "--task", "classify", "--data", data, "--template", TEMPLATE, "--details", det,
                 "--report", rep] + extra)
            details = [json.loads(l) for l in open(det)]
            report = json.load(open(rep))
            train = rows if train == "self" else train
            worst, acc, counts = 0.0, [], [[0, 0, 0] for _ in words]
            for (text, label), dl in zip(rows, details):
                prompt = "".join("%s %s\n\n" % (tmpl.replace("{text}", train[s][0]), train[s][1]) for s in dl["shots"])
                prompt += tmpl.replace("{text}", text)
                ref = [loglik(P, cfg, prompt, " " + w) for w in words]
                worst = max(worst, max(abs(a - b) / max(abs(b), 1e-12) for a, b in zip(dl["loglik"], ref)))
                y, pred = words.index(label), int(np.argmax(ref))
                assert dl["label"] == y and len(dl["shots"]) == shots, dl
                acc.append(float(pred == y))
                counts[y][0] += 1; counts[y][1] += pred == y; counts[pred][2] += 1
            chk.check("classify %s: label log-likelihoods of %d records" % (name, len(rows)), worst)
            n = len(rows)
            got = [[c["n"], c["right"], c["predicted"]] for c in report["classes"]]
            chk.check("classify %s: acc, stderr, n, per-class counts, labels" % name,
                      abs(report["acc"] - sum(acc) / n) + abs(report["acc_stderr"] - stderr(acc)) + abs(report["n"] - n) +
                      (got != counts) + (report["labels"] != words) + (report["template"] != tmpl), 1e-12)

        # ---------------------------------------------------------------- exact-match
        em = os.path.join(d, "em.jsonl")
        open(em, "w").write("".join(json.dumps(r) + "\n" for r in EM))
        targets = [[r.get("target", r.get("answer"))] if isinstance(r.get("target", r.get("answer")), str) else r.get("answer") for r in EM]
        inputs = [r.get("input", r.get("prompt")) for r in EM]
        for stop, norm, shots, maxt in (("\\n", "strip", 0, 12), ("", "squad", 2, 10), (" ", "lower", 1, 8)):
            args = ["--model", model, "--task", "exact-match", "--data", em, "--details", det, "--report", rep,
                    "--max-tokens", str(maxt), "--em-normalize", norm, "--shots", str(shots), "--stop", stop]
            run(args)
            details = [json.loads(l) for l in open(det)]
            report = json.load(open(rep))
            stop_s = stop.replace("\\n", "\n")
            bad_out, match = 0, []
            for i, dl in enumerate(details):
                prompt = "".join("%s %s\n\n" % (inputs[s], targets[s][0]) for s in dl["shots"]) + inputs[i]
                assert dl["prompt"] == prompt and len(dl["shots"]) == shots and i not in dl["shots"], dl
                ref = greedy(P, cfg, prompt, maxt, stop_s)
                bad_out += ref != dl["output"]
                if ref != dl["output"]:
                    print("   output %d: lmkit %r, PyTorch %r" % (i, dl["output"], ref))
                m = float(any(NORMS[norm](dl["output"]) == NORMS[norm](t) for t in targets[i]))
                assert m == dl["match"], (dl, norm)
                match.append(m)
            where = "stop %r, %s, %d-shot" % (stop_s, norm, shots)
            chk.check("exact-match %s: outputs = PyTorch greedy (%d records)" % (where, len(EM)), bad_out, 0)
            n = len(EM)
            chk.check("exact-match %s: em, stderr, n" % where,
                      abs(report["em"] - sum(match) / n) + abs(report["em_stderr"] - stderr(match)) + abs(report["n"] - n), 1e-12)

        # targets made from the outputs: each normalization must match exactly where Python's does
        run(["--model", model, "--task", "exact-match", "--data", em, "--details", det, "--max-tokens", "10"])
        outs = [json.loads(l)["output"] for l in open(det)]
        recs = []
        for i, o in enumerate(outs):   # the same input gives the same output: targets are variants of it
            for v in (o, "  " + o.upper() + " ", "The " + o + ".", o.replace(" ", "  ,"), "an" + o, o + " a", "A " + o.lower()):
                recs.append({"input": inputs[i], "target": v})
        em2 = os.path.join(d, "em2.jsonl")
        open(em2, "w").write("".join(json.dumps(r) + "\n" for r in recs))
        for norm in NORMS:
            run(["--model", model, "--task", "exact-match", "--data", em2, "--details", det, "--max-tokens", "10",
                 "--em-normalize", norm])
            wrong, hits = 0, 0
            for r, dl in zip(recs, (json.loads(l) for l in open(det))):
                wrong += dl["match"] != (NORMS[norm](dl["output"]) == NORMS[norm](r["target"]))
                hits += dl["match"]
            chk.check("--em-normalize %s on %d targets = Python's (%d match)" % (norm, len(recs), hits), wrong, 0)

        # ---------------------------------------------------------------- bad input
        bad = os.path.join(d, "bad.txt")
        for task, text, want, extra in (
                ("classify", '{"text": "a", "label": "x"}\n{"text": "b", "lable": "y"}\n', ':2: unknown key "lable"', []),
                ("classify", "sentence\tlabel\ngood\t1\nno tab here\n", ":3: expected TEXT<TAB>LABEL", ["--labels", "n,p"]),
                ("classify", '{"text": "a", "label": "x"}\n\n{"text": "b", "label": "z"}\n', ':3: label "z" is not one of',
                 ["--labels", "x,y"]),
                ("classify", "a\t0\nb\t1\n", "the labels are numbers", []),
                ("exact-match", '{"input": "a", "target": "b"}\n{"input": "a"}\n', ':2: "target" must be', []),
                ("exact-match", '{"input": "a", "target": []}\n', ':1: "target" must be', []),
                ("exact-match", '{"input": "a", "target": "b", "answer": "c"}\n', ':1: "answer" given twice', [])):
            open(bad, "w").write(text)
            r = run(["--model", model, "--task", task, "--data", bad] + extra, check=False)
            lines = r.stderr.strip().splitlines()
            ok = r.returncode != 0 and len(lines) == 1 and lines[0].startswith("lmkit: error: ") and want in lines[0] and \
                (not want.startswith(":") or (bad + want.split(" ")[0]) in lines[0])
            chk.check("%s: bad record -> %s" % (task, want), 0 if ok else 1, 0)
            if not ok:
                print("   got:", r.stderr.strip())
    chk.finish()


if __name__ == "__main__":
    main()
