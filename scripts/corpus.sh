#!/usr/bin/env bash
# corpus.sh — builds an English pre-training corpus from Debian packages a user
# can install, plus the public data in ../shared/data when it is present.
#
#   bash scripts/corpus.sh OUT.txt [--no-install] [--no-shared] [--only SOURCE]
#
# Sources, in this order, as plain text with one blank line between records:
#   fortunes, fortunes-min  /usr/share/games/fortunes/*  (records split at '%')    ~2.6 MB
#   dict-gcide              /usr/share/dictd/gcide.dict.dz: the definitions of
#                           Webster 1913 + WordNet 1.5, head-word lines, source
#                           tags ([1913 Webster]) and pronunciations removed   ~25 MB
#   wordnet-base            /usr/share/wordnet/data.*: the gloss of every synset
#                           (the text after ' | ': definitions and examples)   ~12 MB
#   ../shared/data          tinyshakespeare, the SST-2 *training* sentences (not
#                           sentences.tsv, which is the dev set), and the Alpaca
#                           instructions and answers                          ~7 MB
# --only SOURCE writes one source alone: fortunes, gcide, wordnet, shakespeare,
# sst2 (the SST-2 training sentences, as in the whole corpus) or alpaca.
# The packages are installed with apt-get when missing (sudo unless root), unless
# --no-install is given; a source whose files are absent is skipped with a line
# saying so. The output is deterministic: the same packages give the same bytes.
# The counts of bytes per source are printed at the end. See docs/train.md.
set -euo pipefail
OUT=${1:?usage: bash scripts/corpus.sh OUT.txt [--no-install] [--no-shared] [--only SOURCE]}
shift
INSTALL=1 SHARED=1 SOURCES="fortunes gcide wordnet shakespeare sst2 alpaca"
while [ $# -gt 0 ]; do
  case "$1" in
    --no-install) INSTALL=0 ;;
    --no-shared) SHARED=0 ;;
    --only)
      case " $SOURCES " in *" ${2:-} "*) SOURCES=$2 ;; *) echo "corpus.sh: --only takes one of: $SOURCES" >&2; exit 2 ;; esac
      shift ;;
    *) echo "corpus.sh: unknown option '$1'" >&2; exit 2 ;;
  esac
  shift
done
case "$SOURCES" in fortunes|gcide|wordnet|*" "*) ;; *) INSTALL=0 ;; esac   # ../shared alone needs no packages
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DATA="$ROOT/../shared/data"

if [ "$INSTALL" = 1 ]; then
  missing=()
  for p in fortunes fortunes-min dict-gcide wordnet-base; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    echo "corpus.sh: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    # dict-gcide's postinst restarts dictd; the daemon is not needed (policy-rc.d may refuse it)
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
: > "$TMP/out"
count() { printf '  %-14s %10d bytes\n' "$1" "$(wc -c < "$2")" >> "$TMP/summary"; cat "$2" >> "$TMP/out"; }

/usr/bin/python3 - "$TMP" "$DATA" "$SHARED" $SOURCES <<'PY'
import glob, gzip, io, json, os, re, sys
tmp, data, shared, sources = sys.argv[1], sys.argv[2], sys.argv[3] == "1", sys.argv[4:]

def write(name, records):
    n = 0
    with open(os.path.join(tmp, name), "w", encoding="utf-8") as f:
        for r in records:
            r = r.strip()
            if r:
                f.write(r + "\n\n"); n += 1
    return n

def fortunes():
    files = sorted(p for p in glob.glob("/usr/share/games/fortunes/*")
                   if os.path.isfile(p) and not p.endswith((".dat", ".u8")) and not os.path.islink(p))
    for p in files:
        text = open(p, encoding="utf-8", errors="replace").read()
        yield from re.split(r"^%$", text, flags=re.M)

HEAD = re.compile(r"^\S.*?\\[^\\]*\\")        # 'Abdication \Ab`di*ca"tion\, n. ...'
TAG = re.compile(r"\[(1913 Webster|WordNet 1\.5|PJC|Century Dict\.|Webster 1913 Suppl\.|[^\]]{0,40}Webster[^\]]{0,20})\]")
def gcide():
    p = "/usr/share/dictd/gcide.dict.dz"
    if not os.path.exists(p): return
    with gzip.open(p, "rt", encoding="utf-8", errors="replace") as f:
        para, etym = [], False
        for line in f:
            if etym:                      # the etymology of a head word may run over lines
                etym = "]" not in line
                continue
            if not line.strip():
                if para: yield " ".join(para); para = []
                continue
            if HEAD.match(line):          # a head word opens a new entry; its etymology is dropped
                if para: yield " ".join(para); para = []
                etym = line.rfind("[") > line.rfind("]")
                continue
            s = TAG.sub("", line).replace("{", "").replace("}", "").strip()
            if s.startswith(("Syn:", "--")) or not s: continue
            para.append(s)
        if para: yield " ".join(para)

def wordnet():
    for pos in ("noun", "verb", "adj", "adv"):
        p = f"/usr/share/wordnet/data.{pos}"
        if not os.path.exists(p): continue
        for line in open(p, encoding="utf-8", errors="replace"):
            if line.startswith("  ") or " | " not in line: continue
            yield line.split(" | ", 1)[1]

def shakespeare():
    p = os.path.join(data, "tinyshakespeare/input.txt")
    if shared and os.path.exists(p):
        yield from open(p, encoding="utf-8").read().split("\n\n")

def sst2():
    p = os.path.join(data, "sst2/train.tsv")
    if shared and os.path.exists(p):
        rows = [l.split("\t", 1)[1] for l in open(p, encoding="utf-8").read().splitlines()[1:] if "\t" in l]
        # train.tsv holds every phrase of each sentence: keep the longest ones (no phrase of another)
        rows.sort(key=len, reverse=True)
        kept, seen = [], set()
        for r in rows:
            if r not in seen: kept.append(r)
            words = r.split()
            for i in range(len(words)):
                for j in range(i + 1, len(words) + 1): seen.add(" ".join(words[i:j]))
        yield "\n".join(sorted(kept))

def alpaca():
    if not shared: return
    for name in ("instruct/alpaca_subset_train.jsonl.gz", "instruct/alpaca_libre_ok.jsonl.gz"):
        p = os.path.join(data, name)
        if not os.path.exists(p): continue
        for line in gzip.open(p, "rt", encoding="utf-8"):
            r = json.loads(line)
            yield "\n".join(x for x in (r.get("instruction"), r.get("input"), r.get("output")) if x)

for name in sources:   # in the order of the whole corpus: a source's records end in a blank line
    n = write(name, globals()[name]())
    if n == 0: print(f"corpus.sh: no {name} text found; skipped", file=sys.stderr)
PY
for s in $SOURCES; do count "$s" "$TMP/$s"; done
mkdir -p "$(dirname "$OUT")"
mv "$TMP/out" "$OUT"
echo "corpus.sh: wrote $OUT ($(wc -c < "$OUT") bytes):"
cat "$TMP/summary"
