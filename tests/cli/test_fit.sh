#!/usr/bin/env bash
# test_fit.sh — `lmkit fit` end to end on a synthetic sweep drawn from Chinchilla's law (E 1.69,
# A 406.4, B 410.7, alpha 0.34, beta 0.28; 13 budgets x 9 sizes, 1% multiplicative noise, written
# by Python here): --json recovers alpha, beta within 0.03 and E within 0.05, holds the intervals,
# IsoFLOP minima and a prediction; two runs print the same bytes; the report names what N counts;
# malformed runs.jsonl lines and bad flags are one-line errors naming file and line.
# (The fitter's own tests: tests/unit/test_scaling.c.)
source "$(dirname "$0")/lib.sh"

mkdir -p "$T/sweep"
python3 - "$T/sweep/runs.jsonl" <<'EOF'
import json, random, sys
random.seed(11)
E, A, B, a, b = 1.69, 406.4, 410.7, 0.34, 0.28
G = (a * A / (b * B)) ** (1 / (a + b))
with open(sys.argv[1], "w") as f:
    for c in range(13):
        C = 1e17 * 10 ** (0.5 * c)
        nopt = G * (C / 6) ** (b / (a + b))
        for k in range(-4, 5):
            N = nopt * 10 ** (k / 4); D = C / (6 * N)
            L = (E + A / N ** a + B / D ** b) * (1 + 0.01 * random.gauss(0, 1))
            f.write(json.dumps({"params": N, "tokens": D, "flops": C, "val_loss": L, "run": "b%d-s%d" % (c, k + 4)}) + "\n")
EOF

"$BIN" fit --sweep "$T/sweep" --json --bootstrap 20 --predict 1e11,2e12 > "$T/fit.json" 2> "$T/fit.err"
check "fit --json runs" '[ -s "$T/fit.json" ]'
python3 - "$T/fit.json" > "$T/checks.txt" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))
def say(name, cond): print(("ok " if cond else "FAIL ") + name + (" " + json.dumps({k: j.get(k) for k in ("E", "alpha", "beta")}) if not cond else ""))
say("alpha within 0.03", abs(j["alpha"] - 0.34) < 0.03)
say("beta within 0.03", abs(j["beta"] - 0.28) < 0.03)
say("E within 0.05", abs(j["E"] - 1.69) < 0.05)
say("intervals hold the estimates", all(j["ci"][k][0] <= j[k] <= j["ci"][k][1] for k in ("E", "A", "B", "alpha", "beta")))
say("a + b = 1", abs(j["a"] + j["b"] - 1) < 1e-9 and abs(j["isoflop_a"] + j["isoflop_b"] - 1) < 1e-9)
say("13 IsoFLOP minima", len(j["isoflop"]) == 13 and all(q["minimum"] for q in j["isoflop"]))
say("IsoFLOP exponent near the law's 0.452", abs(j["isoflop_a"] - 0.28 / 0.62) < 0.05)
say("tokens per parameter grow with C (a < 0.5)", j["optimum"][-1]["tokens_per_param"] > j["optimum"][0]["tokens_per_param"])
p = j["predict"][0]
truth = 1.69 + 406.4 / 1e11 ** 0.34 + 410.7 / 2e12 ** 0.28
say("prediction within 1% of the law", p["ci"][0] <= p["val_loss"] <= p["ci"][1] and abs(p["val_loss"] - truth) / truth < 0.01)
say("non-embedding parameters said", j["params"] == "non-embedding" and j["runs"] == 117)
EOF
while read -r res name; do if [ "$res" = ok ]; then ok "$name"; else bad "$name"; fi; done < "$T/checks.txt"

"$BIN" fit --threads 1 --sweep "$T/sweep" --json --bootstrap 20 --predict 1e11,2e12 > "$T/fit2.json" 2>/dev/null
check "deterministic for a seed (and across thread counts)" 'cmp -s "$T/fit.json" "$T/fit2.json"'
"$BIN" fit --sweep "$T/sweep" --bootstrap 0 --predict 1e9,2e10 > "$T/report.txt" 2>&1
check "report: the law, approach 2, Kaplan, the prediction" \
  'grep -q "non-embedding" "$T/report.txt" && grep -q "^  L(N, D) = " "$T/report.txt" && grep -q "N_opt ∝ C^" "$T/report.txt" && grep -q "^Kaplan: " "$T/report.txt" && grep -q "^predicted: N 1e+09" "$T/report.txt"'

# ---- bad input
head -3 "$T/sweep/runs.jsonl" > "$T/bad.jsonl"
echo '{"params": 1e6, "tokens": 2e7, "val-loss": 3.1}' >> "$T/bad.jsonl"
err "unknown key: file and line" "$T/bad.jsonl:4: unknown key \"val-loss\"" "$BIN" fit --sweep "$T/bad.jsonl"
printf '%s\n' '{"params": 1e6, "tokens": 2e7, "val_loss": 3.1}' '' '{"params": 1e6, "tokens": 2e7' > "$T/bad2.jsonl"
err "truncated line: file and line" "$T/bad2.jsonl:3: not a JSON object" "$BIN" fit --sweep "$T/bad2.jsonl"
printf '%s\n' '{"params": 1e6, "tokens": 0, "val_loss": 3.1}' > "$T/bad3.jsonl"
err "zero tokens" "bad3.jsonl:1: \"tokens\" must be a positive number" "$BIN" fit --sweep "$T/bad3.jsonl"
head -4 "$T/sweep/runs.jsonl" > "$T/few.jsonl"
err "too few runs" "at least 5 runs (4 given)" "$BIN" fit --sweep "$T/few.jsonl"
err "missing sweep" "$T/nothing" "$BIN" fit --sweep "$T/nothing"
err "no --sweep" "--sweep SWEEP is required" "$BIN" fit
err "bad --predict" "invalid value for --predict: '1e9'" "$BIN" fit --sweep "$T/sweep" --predict 1e9
err "unknown flag" "unknown option '--sweeps'" "$BIN" fit --sweeps x

echo "$pass passed, $fail failed"; [ "$fail" -eq 0 ]
