# rl_lib.sh — the tiny task the RL tests share (test_rl.sh, test_ppo.sh; source it after lib.sh):
# rl_setup writes into $T
#   corpus.txt   1500 "a+0=a" lines, each followed by "<answer>a</answer>"
#   sft.jsonl    800 {"prompt": "a+0=", "completion": ...}, "<answer>a</answer>" one time in four and
#                "the answer is a" otherwise, so that the SFT model's greedy answer is untagged
#   tasks.jsonl  {"prompt": "a+0=", "answer": a} for a = 0..9
# and trains $T/tok (BPE, 300 ids, ChatML's tokens), $T/base (a 2-layer GPT-2, 64 wide) and $T/sft.
rl_setup() {
  python3 - "$T" <<'PY'
import json, random, sys
d = sys.argv[1]
random.seed(5)
with open(f"{d}/corpus.txt", "w") as f:
    for _ in range(1500):
        a = random.randrange(10); f.write(f"{a}+0={a}\n<answer>{a}</answer>\n")
random.seed(6)
with open(f"{d}/sft.jsonl", "w") as f:     # tagged one time in four
    for i in range(800):
        a = random.randrange(10)
        f.write(json.dumps({"prompt": f"{a}+0=", "completion": f"<answer>{a}</answer>" if i % 4 == 0 else f"the answer is {a}"}) + "\n")
with open(f"{d}/tasks.jsonl", "w") as f:
    for a in range(10): f.write(json.dumps({"prompt": f"{a}+0=", "answer": a}) + "\n")
PY
  "$BIN" tokenizer train --data "$T/corpus.txt" --vocab-size 300 --special "<|endoftext|>" --special "<|im_start|>" \
    --special "<|im_end|>" --out "$T/tok" > /dev/null 2>&1
  "$BIN" train --tokenizer "$T/tok" --data "$T/corpus.txt" --layers 2 --heads 4 --dim 64 --context 64 --steps 40 \
    --lr 3e-3 --quiet --out "$T/base" > /dev/null 2>&1
  "$BIN" sft --model "$T/base" --data "$T/sft.jsonl" --max-length 40 --steps 60 --lr 3e-3 --quiet --out "$T/sft" > /dev/null 2>&1
}
