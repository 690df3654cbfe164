#!/usr/bin/env bash
# Continual learning: does an adapter keep task A while it learns B, then C? The embedded
# default CLIP learns three tasks in a row, each stage starting from the previous stage's
# adapter (--init-adapter): Fashion-MNIST (10 clothing classes), the synthetic "shift"
# domain (new shapes, colours and wording: mmtune synth --domain shift) and handwritten
# digits (scikit-learn's 8x8 digits, drawn as 32x32 PNGs captioned "a photo of the digit seven").
# After every stage, zero-shot accuracy on the three test sets (mmtune eval --tasks
# ... --zero-shot), with four ways to continue: plain fine-tuning, EWC (--ewc, the Fisher
# saved with --save-fisher and summed over the stages), replay (--replay: a memory of 100
# pairs of each earlier task, --replay-ratio 0.25) and distillation to the model before the
# stage (--distill W --distill-from-previous). Writes bench/results/continual.md and
# continual_raw.jsonl. STEPS (per stage), EWC, DISTILL, MODEL, BIN and WORK override.
# About 4 minutes on 2 idle cores.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/mmtune}
MODEL=${MODEL:-models/mmtune-clip-tiny}
STEPS=${STEPS:-100}
EWC=${EWC:-5000}
DISTILL=${DISTILL:-5}
WORK=${WORK:-runs/bench-continual}
out=bench/results
mkdir -p "$out"
case "$WORK" in
  "" | / | . | .. | "$HOME") echo "bench continual: refusing to clear WORK='$WORK'" >&2; exit 2 ;;
esac
rm -rf "$WORK"
mkdir -p "$WORK"
start=$(date +%s)

# ---- the three tasks ------------------------------------------------------------------------
echo "bench continual: data"
"$BIN" fashion-mnist --out "$WORK/fashion" --split train --count-per-class 50 --seed 1 >/dev/null
"$BIN" fashion-mnist --out "$WORK/fashion" --split test --count-per-class 30 --seed 2 >/dev/null
"$BIN" synth --out "$WORK/shift" --domain shift --seed 5 --split-sizes 500,0,400 --size 32 >/dev/null
python3 -c "import sklearn" 2>/dev/null || pip install --quiet scikit-learn
python3 - "$WORK/digits" <<'PY'
# scikit-learn's digits (1,797 8x8 images, 0..16) as 32x32 grey PNGs: 500 to train, 300 to test.
# The numeral is spelled out ("the digit seven"): with a bare "7" the default model's text
# embeddings of the ten captions are nearly one point and the task hardly moves in 100 steps.
import json, os, struct, sys, zlib
import numpy as np
from sklearn.datasets import load_digits

def png(path, img):
    h, w = img.shape
    raw = b"".join(b"\x00" + img[y].tobytes() for y in range(h))
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))

out = sys.argv[1]
d = load_digits()
order = np.random.RandomState(0).permutation(len(d.target))
os.makedirs(os.path.join(out, "images"), exist_ok=True)
for split, idx in (("train", order[:500]), ("test", order[500:800])):
    with open(os.path.join(out, split + ".jsonl"), "w") as f:
        for i in idx:
            img = np.kron((d.images[i] * (255.0 / 16.0)).round().astype(np.uint8), np.ones((4, 4), np.uint8))
            name = "images/%s-%04d.png" % (split, i)
            png(os.path.join(out, name), img)
            word = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"][int(d.target[i])]
            f.write(json.dumps({"image_path": name, "text": "a photo of the digit " + word, "label": "digit " + word}) + "\n")
PY
TRAIN=("$WORK/fashion/train.jsonl" "$WORK/shift/train.jsonl" "$WORK/digits/train.jsonl")
NAMES=(fashion shift digits)
TASKS="fashion=$WORK/fashion/test.jsonl,shift=$WORK/shift/test_labels.jsonl,digits=$WORK/digits/test.jsonl"
# replay memories: 100 seeded pairs of each earlier task, with absolute image paths
python3 - "$WORK" "${TRAIN[@]}" <<'PY'
import json, os, random, sys
work, files = sys.argv[1], sys.argv[2:]
memory = []
for k, path in enumerate(files[:-1]):
    rows = [json.loads(l) for l in open(path)]
    for r in rows:
        r["image_path"] = os.path.abspath(os.path.join(os.path.dirname(path), r["image_path"]))
    memory += random.Random(k).sample(rows, 100)
    with open(os.path.join(work, "memory_%d.jsonl" % (k + 2)), "w") as f:  # for stage k + 2
        f.writelines(json.dumps(r) + "\n" for r in memory)
PY

# ---- training and evaluation ------------------------------------------------------------------
COMMON=(--model "$MODEL" --method lora --targets q_proj,v_proj,fc1,fc2 --steps "$STEPS" --batch-size 32 --lr 1e-3
        --seed 7 --quiet)
raw="$out/continual_raw.jsonl"
: > "$raw"
evaluate() { # method, stage, adapter folder ("" for the base model)
  local flags=()
  [ -n "$3" ] && flags=(--adapter "$3")
  "$BIN" eval --model "$MODEL" --tasks "$TASKS" --zero-shot "${flags[@]}" > "$WORK/eval.json"
  python3 - "$WORK/eval.json" "$1" "$2" >> "$raw" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print(json.dumps({"method": sys.argv[2], "stage": int(sys.argv[3]),
                  "zero_shot": {k: v["zero_shot_accuracy"] for k, v in d["tasks"].items()},
                  "recall_at_1": {k: v["i2t_recall_at_1"] for k, v in d["tasks"].items()}}))
PY
}
seconds() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['seconds'])" "$1"; }

echo "bench continual: base model"
evaluate base 0 ""
echo "bench continual: stage 1 (fashion), shared by every method"
"$BIN" train "${COMMON[@]}" --data "${TRAIN[0]}" --out "$WORK/stage1" --save-fisher > "$WORK/stage1.json"
python3 -c "import json,sys; print(json.dumps({'method': 'all', 'stage': 1, 'train_seconds': json.load(open(sys.argv[1]))['seconds']}))" \
  "$WORK/stage1.json" >> "$raw"
evaluate all 1 "$WORK/stage1/adapter"

declare -A FLAGS
FLAGS[finetune]=""
FLAGS[ewc]="--ewc $EWC --save-fisher"
FLAGS[replay]="--replay-ratio 0.25"
FLAGS[distill]="--distill $DISTILL --distill-from-previous"
for method in finetune ewc replay distill; do
  prev="$WORK/stage1/adapter"
  for stage in 2 3; do
    echo "bench continual: $method, stage $stage (${NAMES[$((stage - 1))]})"
    run="$WORK/$method-$stage"
    extra=(${FLAGS[$method]})
    [ "$method" = replay ] && extra+=(--replay "$WORK/memory_$stage.jsonl")
    "$BIN" train "${COMMON[@]}" --data "${TRAIN[$((stage - 1))]}" --out "$run" --init-adapter "$prev" "${extra[@]}" \
      > "$WORK/$method-$stage.json"
    python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(json.dumps({'method': sys.argv[2], 'stage': int(sys.argv[3]), 'train_seconds': r['seconds']}))" \
      "$WORK/$method-$stage.json" "$method" "$stage" >> "$raw"
    evaluate "$method" "$stage" "$run/adapter"
    prev="$run/adapter"
  done
done
total=$(( $(date +%s) - start ))
times > "$WORK/times.txt" # this shell's, then its children's user and system time
cpu=$(tail -1 "$WORK/times.txt")

python3 - "$raw" "$out/continual.md" "$MODEL" "$STEPS" "$EWC" "$DISTILL" "$total" "$cpu" <<'PY'
import datetime, json, os, re, subprocess, sys
raw, md, model, steps, ewc, distill, total, cpu = sys.argv[1:9]
cpu_s = sum(float(m) * 60 + float(s) for m, s in re.findall(r"(\d+)m([\d.]+)s", cpu))
rows = [json.loads(l) for l in open(raw)]
ev = {(r["method"], r["stage"]): r for r in rows if "zero_shot" in r}
secs = {(r["method"], r["stage"]): r["train_seconds"] for r in rows if "train_seconds" in r}
tasks = ["fashion", "shift", "digits"]
cpu_name = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
nproc = subprocess.check_output(["nproc"]).decode().strip()
when = datetime.datetime.utcfromtimestamp(os.path.getmtime(raw)).strftime("%Y-%m-%d %H:%M")
pct = lambda x: f"{100 * x:.1f}"
out = ["# Continual learning: three tasks in a row", "",
       f"Made by scripts/bench_continual.sh {when} UTC on {cpu_name}, {nproc} cores, in {total} s "
       f"({cpu_s:.0f} s of CPU). "
       f"LoRA (r 8 on q_proj, v_proj, fc1, fc2) on {model}; each stage {steps} steps of batch 32 at lr 1e-3, "
       "starting from the previous stage's adapter (`--init-adapter`). Tasks: Fashion-MNIST (500 training images, "
       "300 test), the synthetic shift domain (`mmtune synth --domain shift`: 500 scenes to train, the test "
       "scenes of one shape to test, 8 shapes), scikit-learn's digits (500 / 300, drawn 32x32). Numbers: zero-shot "
       "accuracy (%) on each task's test set, `mmtune eval --tasks ... --zero-shot` (CLIP's prompt ensemble over "
       "the task's labels), after each stage. Methods: plain fine-tuning; EWC "
       f"(`--ewc {ewc}`, Fisher from `--save-fisher` at the end of each stage, summed); replay (`--replay`: 100 "
       "pairs of each earlier task, `--replay-ratio 0.25`, 8 of every 32); distillation to the model before the "
       f"stage (`--distill {distill} --distill-from-previous`).", "",
       "| method | after stage | fashion | shift | digits | mean of the tasks seen |",
       "|---|---|---|---|---|---|"]
def row(name, stage, r):
    seen = tasks[:stage] if stage else tasks
    mean = sum(r["zero_shot"][t] for t in seen) / len(seen)
    cells = " | ".join(pct(r["zero_shot"][t]) for t in tasks)
    out.append(f"| {name} | {stage if stage else '- (base model)'} | {cells} | {pct(mean)} |")
row("base model", 0, ev[("base", 0)])
row("every method (shared)", 1, ev[("all", 1)])
for m, name in (("finetune", "plain fine-tuning"), ("ewc", "EWC"), ("replay", "replay"), ("distill", "distillation")):
    for stage in (2, 3):
        row(name, stage, ev[(m, stage)])
out += ["", "Training time per stage (s, wall; the machine may have been shared): " + ", ".join(
    f"stage 1 (shared) {s:.0f}" if m == "all" else f"{m} {stage} {s:.0f}" for (m, stage), s in sorted(secs.items())) + ".",
    "", "After the last stage: the mean over the three tasks, and how much of each earlier task's accuracy "
        "was lost since the stage that learnt it (forgetting: accuracy right after learning it minus accuracy "
        "at the end, percentage points; lower is better).", "",
        "| method | mean of all 3 | fashion forgetting | shift forgetting | digits (just learnt) |", "|---|---|---|---|---|"]
for m, name in (("finetune", "plain fine-tuning"), ("ewc", "EWC"), ("replay", "replay"), ("distill", "distillation")):
    end = ev[(m, 3)]["zero_shot"]
    f_fashion = ev[("all", 1)]["zero_shot"]["fashion"] - end["fashion"]
    f_shift = ev[(m, 2)]["zero_shot"]["shift"] - end["shift"]
    out.append(f"| {name} | {pct(sum(end.values()) / 3)} | {100 * f_fashion:.1f} | {100 * f_shift:.1f} | {pct(end['digits'])} |")
open(md, "w").write("\n".join(out) + "\n")
print("\n".join(out))
PY
