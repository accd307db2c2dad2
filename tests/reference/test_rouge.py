"""ROUGE-L (src/eval/rouge.c) against a port of Google's rouge-score package (rouge_scorer with
rouge_types=["rougeL"], use_stemmer=False; the metric T5 reports for summarisation), which Debian
does not package: its tokenize.tokenize (lower-case, [^a-z0-9]+ -> space, split, keep the
[a-z0-9]+ tokens), _lcs_table and _score_lcs / fmeasure are copied below as the package has them.

On 3,000 random pairs (words from a small vocabulary so that subsequences are common, mixed case,
punctuation glued to words, tabs-free whitespace runs, accented and CJK letters that the tokenizer
drops, digits, empty and punctuation-only sides) precision, recall and F must equal the port's
exactly (both are ratios of the same integers)."""
import os
import random
import re
import subprocess
import tempfile

from refutil import BIN, Tally

REF = os.path.join(BIN, "ref_rouge")


# ---- rouge_score/tokenize.py (no stemmer) and rouge_scorer.py, as released (v0.1.2)
def tokenize(text):
    text = text.lower()
    text = re.sub(r"[^a-z0-9]+", " ", text)
    tokens = re.split(r"\s+", text)
    return [x for x in tokens if re.match(r"^[a-z0-9]+$", x)]


def _lcs_table(ref, can):
    rows, cols = len(ref), len(can)
    lcs_table = [[0] * (cols + 1) for _ in range(rows + 1)]
    for i in range(1, rows + 1):
        for j in range(1, cols + 1):
            if ref[i - 1] == can[j - 1]:
                lcs_table[i][j] = lcs_table[i - 1][j - 1] + 1
            else:
                lcs_table[i][j] = max(lcs_table[i - 1][j], lcs_table[i][j - 1])
    return lcs_table


def fmeasure(precision, recall):
    if precision + recall > 0:
        return 2 * precision * recall / (precision + recall)
    return 0.0


def score_lcs(target_tokens, prediction_tokens):
    if not target_tokens or not prediction_tokens:
        return 0.0, 0.0, 0.0
    lcs_length = _lcs_table(target_tokens, prediction_tokens)[-1][-1]
    precision = lcs_length / len(prediction_tokens)
    recall = lcs_length / len(target_tokens)
    return precision, recall, fmeasure(precision, recall)


def rouge_l(target, prediction):
    return score_lcs(tokenize(target), tokenize(prediction))
# ----


WORDS = ["the", "cat", "sat", "on", "mat", "The", "CAT", "a", "dog", "ran", "42", "x1", "état", "café", "naïve",
         "猫", "ok.", "(yes)", "don't", "e-mail", "U.S.", "--", "!!", "7", "A", "Sun"]


def random_text(r):
    k = r.choice([0, 0, 1, 2, 3, 5, 8, 13, 30])
    out = []
    for _ in range(k):
        w = r.choice(WORDS)
        if r.random() < 0.2:
            w += r.choice([",", ".", "?", "'s", ":"])
        out.append(w)
    return "".join(w + r.choice([" ", " ", "  ", " \u00a0 "]) for w in out).strip(" ")


def main():
    t = Tally()
    r = random.Random(11)
    pairs = [("The cat sat on the mat.", "the cat was on the mat"), ("", "a"), ("a", ""), ("...", "!!!"),
             ("police killed the gunman", "the gunman killed police")]
    while len(pairs) < 3000:
        a = random_text(r)
        b = random_text(r) if r.random() < 0.6 else " ".join(x for x in a.split(" ") if r.random() < 0.7)
        pairs.append((a, b))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "pairs.tsv")
        with open(path, "w", encoding="utf-8") as f:
            for a, b in pairs:
                f.write(f"{a}\t{b}\n")
        out = subprocess.run([REF, path], capture_output=True, text=True)
        if not t.check(out.returncode == 0, f"ref_rouge ran: {out.stderr}"):
            t.finish()
        rows = out.stdout.splitlines()
        t.check(len(rows) == len(pairs), f"{len(rows)} results for {len(pairs)} pairs")
        bad = 0
        for (a, b), row in zip(pairs, rows):
            ours = tuple(float(x) for x in row.split())
            ref = rouge_l(a, b)
            if ours != ref:
                bad += 1
                if bad <= 5:
                    print(f"differs: target {a!r} prediction {b!r}: lmkit {ours} rouge-score {ref}")
        nonzero = sum(rouge_l(a, b)[2] > 0 for a, b in pairs)
        t.check(bad == 0, f"{bad} of {len(pairs)} pairs differ")
        t.check(nonzero > 1000, f"only {nonzero} pairs have a non-zero score (the test would not test the LCS)")
        print(f"{len(pairs)} pairs, {nonzero} with a common subsequence: precision, recall and F equal rouge-score's")
    t.finish()


if __name__ == "__main__":
    main()
