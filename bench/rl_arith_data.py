"""rl_arith_data.py — arithmetic word problems for bench/rl_arith.sh (issue #11), standard
library only.

Problems: 2-3 digit addition, subtraction and multiplication, one step ("Ann has 347
apples and buys 58 more. How many apples does Ann have now?") or two steps (gets, then
gives away; boxes of N, then more). Each problem has a worked solution, one calculator
call per step as `lmkit generate --calc` writes it (docs/rl.md "The calculator"):

    <|calc|>347 + 58<|/calc|> → 405 so Ann has 405 apples. <answer>405</answer>

and a direct answer "<answer>405</answer>". Distinct problems are split into train and
held-out sets (no held-out problem text appears in any training file).

usage:
  python3 bench/rl_arith_data.py OUT [N_TRAIN=4000] [N_HELD=200] [SEED=1]
    writes into OUT:
      corpus.txt        pre-training text: train problems with their worked solutions, and
                        multiplication questions of 2-4 digit numbers ("What is 4821 * 3907?")
                        whose worked answer copies the calculator's 5-8 digit result
      sft.jsonl         {"prompt", "completion"}: each train problem twice, once with the
                        chain-of-thought instruction and the worked solution, once without it
                        and the direct answer (so --cot selects the worked style); the
                        multiplication questions with the instruction (copying practice)
      prefs_synth.jsonl {"prompt", "chosen", "rejected", "kind"}: a correct worked solution
                        against a wrong one that differs visibly: the answer off by 1-10
                        from the calculator's result (off_by), two digits of the answer
                        swapped (digit_swap), the last step's operation changed, with the
                        calculator's result for it (wrong_op), or a digit of a number from
                        the problem copied wrongly into a call, the results following it
                        (copy_error: the policy's commonest mistake); 500 of each per 3000
                        train problems
      tasks.jsonl       train prompts {"prompt", "answer", "steps"} (grpo / ppo)
      dev.jsonl         the first 100 train tasks (choosing the SFT checkpoint RL starts from)
      held.jsonl        held-out one- and two-step problems
      held_multi.jsonl  the held-out two-step problems (CoT vs direct)
      mul4.jsonl        100 held-out 4-digit multiplications (calculator vs none)
  python3 bench/rl_arith_data.py record TASKS OUT.jsonl
    a --reward-cmd: reads {"prompt", "completion"} lines, writes the arith reward (1 when the
    last <answer>X</answer> equals the task's answer) and appends each wrong completion to
    OUT.jsonl as {"prompt", "completion"} (the model's own mistakes, for the reward model)
  python3 bench/rl_arith_data.py prefs OUT [OWN.jsonl]
    writes OUT/prefs.jsonl: prefs_synth.jsonl plus a pair per recorded own mistake (chosen:
    the worked solution of its problem), shuffled (seeded)"""
import json
import os
import random
import re
import sys

COT = "Let's think step by step."
NAMES = ["Ann", "Ben", "Cal", "Dee", "Eve", "Fay", "Gus", "Hal", "Ivy", "Jon"]
THINGS = ["apples", "pens", "books", "coins", "cards", "shells", "stamps", "beads"]
OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}


def answer(v):
    return f"<answer>{v}</answer>"


def solve(steps, end):
    """worked solution of steps [(a, op, b)], where b None is the previous result, and the
    closing sentence end.format(v); returns (text, v)"""
    calls, v = [], None
    for a, op, b in steps:
        a = v if a is None else a
        v = OPS[op](a, b)
        calls.append(f"<|calc|>{a} {op} {b}<|/calc|> \u2192 {v}")
    return " and ".join(calls) + " " + end.format(v), v


def problem(rng):
    """(prompt, steps, end, answer)"""
    who, what = rng.choice(NAMES), rng.choice(THINGS)
    kind = rng.choice(["add", "sub", "mul", "add_sub", "mul_add"])
    if kind == "add":
        a, b = rng.randint(10, 999), rng.randint(10, 999)
        q, steps, end = (f"{who} has {a} {what} and gets {b} more. How many {what} does {who} have now?",
                         [(a, "+", b)], f"so {who} has {{}} {what}.")
    elif kind == "sub":
        a = rng.randint(100, 999); b = rng.randint(10, a - 1)
        q, steps, end = (f"{who} has {a} {what} and gives away {b}. How many {what} are left?",
                         [(a, "-", b)], f"so {{}} {what} are left.")
    elif kind == "mul":
        a, b = rng.randint(10, 99), rng.randint(2, 99)
        q, steps, end = (f"{who} buys {a} boxes with {b} {what} in each. How many {what} is that?",
                         [(a, "*", b)], f"so that is {{}} {what}.")
    elif kind == "add_sub":
        a, b = rng.randint(10, 999), rng.randint(10, 999)
        d = rng.randint(1, a + b - 1)
        q, steps, end = (f"{who} has {a} {what}, gets {b} more, then gives away {d}. How many {what} are left?",
                         [(a, "+", b), (None, "-", d)], f"so {{}} {what} are left.")
    else:
        a, b, d = rng.randint(10, 99), rng.randint(2, 99), rng.randint(10, 999)
        q, steps, end = (f"{who} buys {a} boxes with {b} {what} in each and has {d} more. How many {what} in all?",
                         [(a, "*", b), (None, "+", d)], f"so {{}} {what} in all.")
    return q, steps, end, solve(steps, end)[1]


def mul_question(rng, digits_a, digits_b):
    a = rng.randint(10 ** (digits_a - 1), 10 ** digits_a - 1)
    b = rng.randint(10 ** (digits_b - 1), 10 ** digits_b - 1)
    return f"What is {a} * {b}?", [(a, "*", b)], "so it is {}.", a * b


def worked(p):
    text, v = solve(p[1], p[2])
    return f"{text} {answer(v)}"


def wrong(p, kind, rng):
    """a wrong worked solution of problem p that differs visibly from the right one"""
    q, steps, end, v = p
    text = solve(steps, end)[0]
    if kind == "wrong_op":
        a, op, b = steps[-1]
        other = {"+": "-", "-": "+", "*": "+"}[op]
        bad, w = solve(steps[:-1] + [(a, other, b)], end)
        return f"{bad} {answer(w)}"
    if kind == "copy_error":   # a digit of a number from the problem copied wrongly into a call (the
        # policy's commonest mistake); the calculator's results and the answer follow the wrong call
        i = rng.randrange(len(steps))
        a, op, b = steps[i]
        j = rng.choice([j for j, x in enumerate((a, b)) if x is not None])
        s = str((a, b)[j])
        k = rng.randrange(len(s))
        x = int(s[:k] + rng.choice([c for c in "0123456789" if c != s[k] and (k or c != "0")]) + s[k + 1:])
        bad, w = solve(steps[:i] + [(x, op, b) if j == 0 else (a, op, x)] + steps[i + 1:], end)
        return f"{bad} {answer(w)}"
    if kind == "digit_swap":
        s = str(v)
        pos = [i for i in range(len(s) - 1) if s[i] != s[i + 1] and not (i == 0 and s[1] == "0")]
        if pos:
            i = rng.choice(pos)
            w = int(s[:i] + s[i + 1] + s[i] + s[i + 2:])
        else:
            w = v + 9
    else:   # off_by: the calculator's result stays, the answer after it is off
        w = v + rng.choice([-1, 1]) * rng.randint(1, 10)
    head = text[: text.rindex(end.format(v))]
    return f"{head}{end.format(w)} {answer(w)}"


def write_jsonl(path, rows):
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def generate(out, n_train, n_held, seed):
    rng = random.Random(seed)
    os.makedirs(out, exist_ok=True)
    seen, train, held = set(), [], []
    while len(held) < n_held or len(train) < n_train:
        p = problem(rng)
        if p[0] in seen:
            continue
        seen.add(p[0])
        (held if len(held) < n_held else train).append(p)
    mul4 = []
    while len(mul4) < 100:
        m = mul_question(rng, 4, 4)
        if m[0] not in seen:
            seen.add(m[0]); mul4.append(m)
    # copying practice: 2-4 digit multiplications, half of them 4 x 4 digits (distinct from mul4)
    muls = []
    while len(muls) < n_train // 3:
        m = mul_question(rng, 4, 4) if len(muls) % 2 else mul_question(rng, rng.randint(2, 4), rng.randint(2, 4))
        if m[0] not in seen:
            seen.add(m[0]); muls.append(m)
    with open(f"{out}/corpus.txt", "w") as f:
        for p in train + muls:
            f.write(f"{p[0]} {worked(p)}\n")
    sft = []
    for p in train:
        sft.append({"prompt": f"{p[0]}\n\n{COT}", "completion": worked(p)})
        sft.append({"prompt": p[0], "completion": answer(p[3])})
    sft += [{"prompt": f"{m[0]}\n\n{COT}", "completion": worked(m)} for m in muls]
    write_jsonl(f"{out}/sft.jsonl", sft)
    kinds = ["off_by", "digit_swap", "wrong_op", "copy_error"]
    write_jsonl(f"{out}/prefs_synth.jsonl",
                [{"prompt": f"{p[0]}\n\n{COT}", "chosen": worked(p), "rejected": wrong(p, kinds[i % len(kinds)], rng), "kind": kinds[i % len(kinds)]}
                 for i, p in enumerate(train[: n_train * 2 // 3])])
    task = lambda p: {"prompt": p[0], "answer": p[3], "steps": len(p[1])}
    write_jsonl(f"{out}/tasks.jsonl", [task(p) for p in train])
    write_jsonl(f"{out}/dev.jsonl", [task(p) for p in train[:100]])
    write_jsonl(f"{out}/held.jsonl", [task(p) for p in held])
    write_jsonl(f"{out}/held_multi.jsonl", [task(p) for p in held if len(p[1]) == 2])
    write_jsonl(f"{out}/mul4.jsonl", [{"prompt": m[0], "answer": m[3]} for m in mul4])
    print(f"rl_arith_data: {len(train)} train and {len(held)} held-out problems, {len(muls)} multiplications "
          f"(copying practice), {len(mul4)} held-out 4-digit ones in {out}")


def last_answer(text):
    m = re.findall(r"<answer>\s*(-?\d+)\s*</answer>", text)
    return int(m[-1]) if m else None


def record(tasks_path, out_path):
    tasks = [json.loads(l) for l in open(tasks_path)]
    with open(out_path, "a") as rec:
        for line in sys.stdin:
            r = json.loads(line)
            t = next((t for t in tasks if t["prompt"] in r["prompt"]), None)
            if t is None:
                sys.exit(f"record: no task of {tasks_path} in the prompt {r['prompt'][:80]!r}")
            ok = last_answer(r["completion"]) == t["answer"]
            print(1 if ok else 0)
            if not ok:
                rec.write(json.dumps({"prompt": t["prompt"], "completion": r["completion"]}) + "\n")


def prefs(out, own_path):
    rows = [json.loads(l) for l in open(f"{out}/prefs_synth.jsonl")]
    if own_path and os.path.exists(own_path):
        sol = {}
        for l in open(f"{out}/sft.jsonl"):
            r = json.loads(l)
            if r["prompt"].endswith(COT):
                sol[r["prompt"][: -len(COT) - 2]] = r["completion"]
        for l in open(own_path):
            r = json.loads(l)
            rows.append({"prompt": f"{r['prompt']}\n\n{COT}", "chosen": sol[r["prompt"]],
                         "rejected": r["completion"].strip(), "kind": "own_sample"})
    random.Random(5).shuffle(rows)
    write_jsonl(f"{out}/prefs.jsonl", rows)
    n = {}
    for r in rows:
        n[r["kind"]] = n.get(r["kind"], 0) + 1
    print("prefs: " + ", ".join(f"{v} {k}" for k, v in sorted(n.items())))


def main():
    a = sys.argv[1:]
    if a and a[0] == "record":
        record(a[1], a[2])
    elif a and a[0] == "prefs":
        prefs(a[1], a[2] if len(a) > 2 else None)
    elif a:
        generate(a[0], int(a[1]) if len(a) > 1 else 4000, int(a[2]) if len(a) > 2 else 200, int(a[3]) if len(a) > 3 else 1)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
