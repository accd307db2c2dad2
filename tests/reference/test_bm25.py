#!/usr/bin/python3
"""test_bm25.py — lmkit's retrieval index (`lmkit index`, src/rag/) against a reference
written here from the specification in docs/rag.md.

The test writes a small corpus (three files: mixed case, punctuation, digits, UTF-8 words,
CRLF line ends, tabs, runs of blank lines, a paragraph longer than a passage), indexes it
with `lmkit index` under two chunk settings, and checks through tests/reference/ref_rag.c:
  - chunking: the passages are exactly those of a Python chunker written from the rules
    (paragraphs packed whole up to --chunk-size words, a longer paragraph cut at words,
    the next passage starting --overlap words back, or at a paragraph start inside the
    overlap, or right after the passage when a passage from there would add no word); each passage's text equals the file's bytes at its byte range, and its line
    range matches the newlines before it;
  - BM25: every passage's score for 60 queries (repeated, unknown, upper-case and
    punctuation-only words included) equals the Python BM25 (k1 = 1.2, b = 0.75, Lucene's
    idf ln(1 + (N - df + 0.5) / (df + 0.5)), terms = ASCII-lowercased runs of [A-Za-z0-9]
    and bytes >= 0x80) to a relative error <= 1e-6 (in practice ~1e-16);
  - ranking: `lm_rag_search` in bm25 mode returns exactly the passages holding a query
    term, by score, ties by passage order;
  - the index file is deterministic (built twice: the same bytes).

Env: LMKIT_BIN (build dir holding lmkit and ref_rag)."""
import json
import math
import os
import random
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from refutil import BIN, Checker  # noqa: E402

LMKIT = os.path.join(BIN, "lmkit")
REF = os.path.join(BIN, "ref_rag")
SPACE = b" \t\n\r\x0b\x0c"
K1, B = 1.2, 0.75


def corpus(d):
    r = random.Random(11)
    vocab = ("river mountain Capital city harbour tin wool bread flour water boils 100 degrees "
             "north south Zorbia Quellport exports trade café Übung naïve 日本語 x2 alpha-beta "
             "don't e-mail C3PO THE the The of and is in").split()

    def para(n):
        words = [r.choice(vocab) for _ in range(n)]
        out = []
        for i, w in enumerate(words):
            out.append(w + r.choice(["", "", "", ",", ".", ";", "!"]))
            if i < n - 1:
                out.append(r.choice([" ", " ", " ", "\t", "\n", "  "]))
        return "".join(out)

    files = []
    for k in range(3):
        paras = [para(r.choice([1, 3, 5, 8, 11, 15])) for _ in range(25)]
        paras.insert(7, para(40))                       # longer than any passage
        seps = [r.choice(["\n\n", "\n\n\n", "\n \n", "\n\t\n\n"]) for _ in paras]
        text = "  " + "".join(p + s for p, s in zip(paras, seps))
        if k == 1:
            text = text.replace("\n", "\r\n")           # CRLF: \r is a space, lines still count \n
        path = os.path.join(d, "docs", f"doc{k}.txt")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(text.encode())
        files.append(path)
    return files, vocab


def ref_chunks(doc, C, O):
    """(byte_start, byte_end, line_start, line_end) of every passage, from the rules."""
    words = [(m.start(), m.end()) for m in re.finditer(rb"[^ \t\n\r\x0b\x0c]+", doc)]
    n = len(words)
    # a paragraph starts at the first word and after any gap holding two or more newlines
    para = [i == 0 or doc[words[i - 1][1]:words[i][0]].count(b"\n") >= 2 for i in range(n)]
    starts = [i for i in range(n) if para[i]] + [n]

    def next_start(i):                                   # first paragraph start after word i
        return min(p for p in starts if p > i)
    def end(s):
        e = next_start(s)                                # the rest of the paragraph holding s
        if e - s > C:
            return s + C
        while e < n and next_start(e) - s <= C:
            e = next_start(e)
        return e
    out, s = [], 0
    while s < n:
        e = end(s)
        line = lambda off: doc.count(b"\n", 0, off) + 1  # noqa: E731
        out.append((words[s][0], words[e - 1][1], line(words[s][0]), line(words[e - 1][0])))
        if e == n:
            break
        ns = e if O == 0 else max(s + 1, e - O)
        inside = [p for p in starts if ns <= p < e]
        ns = inside[0] if inside else ns
        s = ns if end(ns) > e else e                     # a passage that adds no word is skipped
    return out


def terms(text):
    return [t.lower() for t in re.findall(rb"[A-Za-z0-9\x80-\xff]+", text)]


def bm25(passages, query):
    docs = [terms(p) for p in passages]
    N = len(docs)
    avgdl = sum(len(d) for d in docs) / N
    df = {}
    for d in docs:
        for t in set(d):
            df[t] = df.get(t, 0) + 1
    scores = [0.0] * N
    for t in terms(query):
        if t not in df:
            continue
        idf = math.log(1 + (N - df[t] + 0.5) / (df[t] + 0.5))
        for i, d in enumerate(docs):
            tf = d.count(t)
            if tf:
                scores[i] += idf * tf * (K1 + 1) / (tf + K1 * (1 - B + B * len(d) / avgdl))
    return scores


def run(*args, stdin=None):
    p = subprocess.run(args, input=stdin, capture_output=True)
    if p.returncode:
        sys.exit(f"{' '.join(args)} failed ({p.returncode}): {p.stderr.decode()}")
    return p.stdout.decode()


def main():
    ck = Checker(1e-6)
    with tempfile.TemporaryDirectory() as d:
        files, vocab = corpus(d)
        r = random.Random(5)
        queries = []
        for i in range(60):
            q = " ".join(r.choice(vocab) for _ in range(r.randint(1, 6)))
            if i % 7 == 0:
                q = q.upper()
            if i % 11 == 0:
                q += " unknownword zzz"
            queries.append(q)
        queries += ["", "?!, ;", "the the the", "ÜBUNG übung"]
        for C, O in [(12, 4), (30, 0), (7, 6)]:
            idx = os.path.join(d, f"i{C}.idx")
            run(LMKIT, "index", "--docs", os.path.join(d, "docs"), "--out", idx, "--chunk-size", str(C),
                "--overlap", str(O))
            got = [json.loads(l) for l in run(REF, "chunks", idx).splitlines()]
            want, texts = [], []
            for path in files:
                doc = open(path, "rb").read()
                for bs, be, ls, le in ref_chunks(doc, C, O):
                    want.append((path, bs, be, ls, le))
                    texts.append(doc[bs:be])
            have = [(g["file"], *g["bytes"], *g["lines"]) for g in got]
            ok = have == want and all(g["text"].encode() == t for g, t in zip(got, texts))
            ck.check(f"chunk {C}/{O}: {len(got)} passages equal the reference chunker's (bytes, lines, text)",
                     0 if ok else 1, 0)
            ok = all(g["n_terms"] == len(terms(t)) for g, t in zip(got, texts))
            ck.check(f"chunk {C}/{O}: each passage's BM25 length", 0 if ok else 1, 0)
            out = run(REF, "bm25", idx, stdin="\n".join(queries).encode() + b"\n").splitlines()
            worst = 0.0
            for q, line in zip(queries, out):
                mine, ref = json.loads(line), bm25(texts, q.encode())
                for a, b in zip(mine, ref):
                    worst = max(worst, abs(a - b) / max(abs(b), 1e-12) if b else abs(a))
            ck.check(f"chunk {C}/{O}: BM25 of {len(queries)} queries x {len(texts)} passages vs Python", worst)
            reqs = "".join(json.dumps({"query": q, "vec": None}) + "\n" for q in queries)
            ranked = run(REF, "search", idx, "bm25", str(len(texts)), stdin=reqs.encode()).splitlines()
            ok = True
            for q, line in zip(queries, ranked):
                hits = json.loads(line)
                s = json.loads(out[queries.index(q)])
                want_order = sorted((i for i in range(len(s)) if s[i] > 0), key=lambda i: (-s[i], i))
                ok &= [h[0] for h in hits] == want_order and all(h[2] == k + 1 for k, h in enumerate(hits))
            ck.check(f"chunk {C}/{O}: bm25 ranking = passages holding a query term, by score then order",
                     0 if ok else 1, 0)
        run(LMKIT, "index", "--docs", os.path.join(d, "docs"), "--out", os.path.join(d, "again.idx"),
            "--chunk-size", "12", "--overlap", "4")
        same = open(os.path.join(d, "again.idx"), "rb").read() == open(os.path.join(d, "i12.idx"), "rb").read()
        ck.check("the index file is deterministic", 0 if same else 1, 0)
    ck.finish()


if __name__ == "__main__":
    main()
