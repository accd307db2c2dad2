"""rl_arith_data.py — arithmetic word problems for bench/rl_arith.sh (issue #11), standard
library only.

Problems: 2-3 digit addition, subtraction and multiplication, one step ("Ann has 347
apples and buys 58 more. How many apples does Ann have now?") or two steps (buys, then
gives away; boxes of N, then more). Each problem has a worked solution, one calculator
call per step as `lmkit generate --calc` writes it (docs/rl.md "The calculator"):

    <|calc|>347 + 58<|/calc|> → 405 so Ann has 405 apples. <answer>405</answer>

and a direct answer "<answer>405</answer>". Distinct problems are split into train and
held-out sets (no held-out problem text appears in any training file).

Writes into OUT:
  corpus.txt        pre-training text: train problems with their worked solutions
  sft.jsonl         {"prompt", "completion"}: each train problem twice, once with the
                    chain-of-thought instruction and the worked solution, once without
                    it and the direct answer (so --cot selects the worked style)
  prefs.jsonl       {"prompt", "chosen", "rejected"}: a correct worked solution against
                    one whose last step is wrong (for `lmkit reward`)
  tasks.jsonl       train prompts {"prompt", "answer", "steps"} (for grpo / ppo)
  held.jsonl        held-out one- and two-step problems
  held_multi.jsonl  the held-out two-step problems (CoT vs direct)
  mul4.jsonl        4-digit multiplications "What is 4821 * 3907?" (calculator vs not);
                    sft.jsonl teaches the same question with 2-3 digits

usage: python3 bench/rl_arith_data.py OUT [N_TRAIN=4000] [N_HELD=200] [SEED=1]"""
import json
import os
import random
import sys

COT = "Let's think step by step."
NAMES = ["Ann", "Ben", "Cal", "Dee", "Eve", "Fay", "Gus", "Hal", "Ivy", "Jon"]
THINGS = ["apples", "pens", "books", "coins", "cards", "shells", "stamps", "beads"]


def call(a, op, b):
    v = {"+": a + b, "-": a - b, "*": a * b}[op]
    return f"<|calc|>{a} {op} {b}<|/calc|> \u2192 {v}", v


def problem(rng):
    """(prompt, worked solution, answer, steps)"""
    who, what = rng.choice(NAMES), rng.choice(THINGS)
    kind = rng.choice(["add", "sub", "mul", "add_sub", "mul_add"])
    if kind == "add":
        a, b = rng.randint(10, 999), rng.randint(10, 999)
        c, v = call(a, "+", b)
        return (f"{who} has {a} {what} and gets {b} more. How many {what} does {who} have now?",
                f"{c} so {who} has {v} {what}.", v, 1)
    if kind == "sub":
        a = rng.randint(100, 999); b = rng.randint(10, a - 1)
        c, v = call(a, "-", b)
        return (f"{who} has {a} {what} and gives away {b}. How many {what} are left?",
                f"{c} so {v} {what} are left.", v, 1)
    if kind == "mul":
        a, b = rng.randint(10, 99), rng.randint(2, 99)
        c, v = call(a, "*", b)
        return (f"{who} buys {a} boxes with {b} {what} in each. How many {what} is that?",
                f"{c} so that is {v} {what}.", v, 1)
    if kind == "add_sub":
        a, b = rng.randint(10, 999), rng.randint(10, 999)
        c1, s = call(a, "+", b)
        d = rng.randint(1, s - 1)
        c2, v = call(s, "-", d)
        return (f"{who} has {a} {what}, gets {b} more, then gives away {d}. How many {what} are left?",
                f"{c1} and {c2} so {v} {what} are left.", v, 2)
    a, b, d = rng.randint(10, 99), rng.randint(2, 99), rng.randint(10, 999)
    c1, p = call(a, "*", b)
    c2, v = call(p, "+", d)
    return (f"{who} buys {a} boxes with {b} {what} in each and has {d} more. How many {what} in all?",
            f"{c1} and {c2} so {v} {what} in all.", v, 2)


def mul_question(rng, lo, hi):
    a, b = rng.randint(lo, hi), rng.randint(lo, hi)
    c, v = call(a, "*", b)
    return f"What is {a} * {b}?", f"{c} so it is {v}.", v


def main():
    out = sys.argv[1]
    n_train = int(sys.argv[2]) if len(sys.argv) > 2 else 4000
    n_held = int(sys.argv[3]) if len(sys.argv) > 3 else 200
    rng = random.Random(int(sys.argv[4]) if len(sys.argv) > 4 else 1)
    os.makedirs(out, exist_ok=True)
    seen, train, held = set(), [], []
    while len(held) < n_held or len(train) < n_train:
        p = problem(rng)
        if p[0] in seen:
            continue
        seen.add(p[0])
        (held if len(held) < n_held else train).append(p)
    muls = [mul_question(rng, 10, 999) for _ in range(n_train // 4)]
    mul4 = [mul_question(rng, 1000, 9999) for _ in range(100)]
    ans = lambda v: f"<answer>{v}</answer>"
    with open(f"{out}/corpus.txt", "w") as f:
        for q, s, v, _ in train:
            f.write(f"{q} {s} {ans(v)}\n")
        for q, s, v in muls:
            f.write(f"{q} {s} {ans(v)}\n")
    with open(f"{out}/sft.jsonl", "w") as f:
        for q, s, v, _ in train:
            f.write(json.dumps({"prompt": f"{q}\n\n{COT}", "completion": f"{s} {ans(v)}"}) + "\n")
            f.write(json.dumps({"prompt": q, "completion": ans(v)}) + "\n")
        for q, s, v in muls:
            f.write(json.dumps({"prompt": f"{q}\n\n{COT}", "completion": f"{s} {ans(v)}"}) + "\n")
    with open(f"{out}/prefs.jsonl", "w") as f:
        for q, s, v, _ in train[: n_train // 2]:
            wrong = v + rng.choice([-1, 1]) * rng.randint(1, 20)
            bad = s.replace(f"\u2192 {v}", f"\u2192 {wrong}").replace(f" {v} ", f" {wrong} ")
            f.write(json.dumps({"prompt": q, "chosen": f"{s} {ans(v)}", "rejected": f"{bad} {ans(wrong)}"}) + "\n")
    def tasks(path, rows):
        with open(path, "w") as f:
            for q, _, v, k in rows:
                f.write(json.dumps({"prompt": q, "answer": v, "steps": k}) + "\n")
    tasks(f"{out}/tasks.jsonl", train)
    tasks(f"{out}/held.jsonl", held)
    tasks(f"{out}/held_multi.jsonl", [h for h in held if h[3] == 2])
    with open(f"{out}/mul4.jsonl", "w") as f:
        for q, _, v in mul4:
            f.write(json.dumps({"prompt": q, "answer": v}) + "\n")
    print(f"rl_arith_data: {len(train)} train and {len(held)} held-out problems, {len(muls)} multiplications, "
          f"{len(mul4)} 4-digit ones in {out}")


if __name__ == "__main__":
    main()
