#!/usr/bin/env bash
# `make bench-peft`: the PEFT method comparison on the embedded default model
# (models/mmtune-clip-tiny). Two tasks, each with one budget of STEPS steps of BATCH pairs for
# every method, three seeds each:
#   fashion  Fashion-MNIST product search, all ten classes (four unseen in pretraining):
#            TRAIN_PER_CLASS training images per class; class-level image->caption recall@1
#            and zero-shot accuracy on TEST_PER_CLASS test images per class;
#   shift    the synthetic `shift` domain (shapes, colours and wording the base never saw):
#            image->caption recall@1 on its test pairs, zero-shot accuracy (by shape) on its
#            labelled test scenes;
#   caption  the embedded default captioner (models/mmtune-git-tiny, pretrained on synthetic
#            shape scenes only) learns Fashion-MNIST product descriptions (the demo's second
#            half): CAP_STEPS steps of CAP_BATCH captions per method (CAP_METHODS), CIDEr-D,
#            BLEU-4 and ROUGE-L of its greedy captions of the fashion test images against three
#            reference wordings each.
# Every number in bench/results/peft_methods.md comes from the runs' own output
# (bench/results/peft_methods_raw.jsonl): trainable parameters, wall seconds per step (final
# checkpoint included), peak RSS of the training process, and the metrics; medians of seeds.
# TABLE_ONLY=1 rewrites the table from the existing raw file without training; a run with some
# TASKS (and CAP_METHODS) replaces only those tasks' (methods') rows of the raw file.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/mmtune}
MODEL=${MODEL:-models/mmtune-clip-tiny}
STEPS=${STEPS:-150}
BATCH=${BATCH:-32}
SEEDS=${SEEDS:-1 2 3}
TRAIN_PER_CLASS=${TRAIN_PER_CLASS:-400}
TEST_PER_CLASS=${TEST_PER_CLASS:-100}
METHODS=${METHODS:-full lora prefix prompt visual-prompt adapter ia3}
TASKS=${TASKS:-fashion shift caption}
CAP_MODEL=${CAP_MODEL:-models/mmtune-git-tiny}
CAP_STEPS=${CAP_STEPS:-200}
CAP_BATCH=${CAP_BATCH:-32}
CAP_METHODS=${CAP_METHODS:-full lora dora ia3 prefix prompt}
WORK=${WORK:-runs/bench-peft}
out=bench/results
mkdir -p "$out"
raw="$out/peft_methods_raw.jsonl"
case "$WORK" in
  "" | / | . | .. | "$HOME") echo "bench-peft: refusing to clear WORK='$WORK'" >&2; exit 2 ;;
esac
if [ "${TABLE_ONLY:-0}" != 1 ]; then
# keep the rows of the tasks not rerun (and of the captioning methods not rerun)
if [ -f "$raw" ]; then
  CAP_METHODS="$CAP_METHODS" python3 - "$raw" $TASKS <<'PY'
import json, os, sys
raw, tasks = sys.argv[1], set(sys.argv[2:])
cap = set(os.environ["CAP_METHODS"].split()) | {"none"}
def rerun(r):
    return r["task"] in tasks and (r["task"] != "caption" or r["method"] in cap)
keep = [l for l in open(raw) if l.strip() and not rerun(json.loads(l))]
open(raw, "w").writelines(keep)
PY
fi
rm -rf "$WORK"
mkdir -p "$WORK"

"$BIN" fashion-mnist --out "$WORK/fashion" --split train --count-per-class "$TRAIN_PER_CLASS" --seed 11 --captions 3 >/dev/null
"$BIN" fashion-mnist --out "$WORK/fashion" --split test --count-per-class "$TEST_PER_CLASS" --seed 11 --captions 3 >/dev/null
"$BIN" synth --out "$WORK/shift" --domain shift --split-sizes 4000,0,500 --size 32 --seed 11 >/dev/null

# where and when each row is made (the table says so per task: reruns replace single tasks)
made="$(date -u +%F), $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1), $(nproc) cores"

# method -> flags and learning rate (one rate per method, the usual order of magnitude for it)
flags() {
  case $1 in
    full) echo "--method full --lr 5e-5" ;;
    lora) echo "--method lora --targets q_proj,v_proj --lr 2e-3" ;;
    prefix) echo "--method prefix --num-virtual-tokens 8 --prefix-vision --lr 1e-2" ;;
    prompt) echo "--method prompt --num-virtual-tokens 8 --lr 1e-2" ;;
    visual-prompt) echo "--method visual-prompt --num-virtual-tokens 8 --lr 1e-2" ;;
    adapter) echo "--method adapter --adapter-reduction 16 --lr 2e-3" ;;
    ia3) echo "--method ia3 --targets k_proj,v_proj,fc2 --ia3-feedforward fc2 --lr 5e-3" ;;
    *) echo "bench-peft: unknown method $1" >&2; exit 2 ;;
  esac
}

# the captioner's methods: decoder linears and the output head for LoRA and DoRA (as the demo);
# prefixes and prompts take 8 of the model's 32 positions, so captions are cut at 24 tokens
cap_flags() {
  local lin='.*\.(query|key|value|dense)|output'
  case $1 in
    full) echo "--method full --lr 2e-4" ;;
    lora) echo "--method lora --targets-regex $lin --lora-r 16 --lora-alpha 32 --lr 5e-3" ;;
    dora) echo "--method lora --dora --targets-regex $lin --lora-r 16 --lora-alpha 32 --lr 5e-3" ;;
    ia3) echo "--method ia3 --lr 1e-2" ;;
    prefix) echo "--method prefix --num-virtual-tokens 8 --max-caption-tokens 24 --lr 1e-2" ;;
    prompt) echo "--method prompt --num-virtual-tokens 8 --max-caption-tokens 24 --lr 1e-2" ;;
    *) echo "bench-peft: unknown captioning method $1" >&2; exit 2 ;;
  esac
}

cap_evaluate() { # model adapter-or-empty -> "cider_d": C, "bleu_4": B, "rouge_l": R
  local a=() r
  [ -n "$2" ] && a=(--adapter "$2")
  r=$("$BIN" eval --model "$1" --data "$WORK/fashion/test_coco.json" --batch-size 32 --samples 0 "${a[@]}")
  printf '"cider_d": %s, "bleu_4": %s, "rouge_l": %s' "$(sed -E 's/.*"cider_d": ([-0-9.eE+]+).*/\1/' <<< "$r")" \
    "$(sed -E 's/.*"bleu_4": ([-0-9.eE+]+).*/\1/' <<< "$r")" "$(sed -E 's/.*"rouge_l": ([-0-9.eE+]+).*/\1/' <<< "$r")"
}

evaluate() { # task model adapter-or-empty -> "recall_at_1": R, "zero_shot_accuracy": Z
  local task=$1 model=$2 adapter=$3 a=() r z
  [ -n "$adapter" ] && a=(--adapter "$adapter")
  if [ "$task" = fashion ]; then
    r=$("$BIN" eval --model "$model" --data "$WORK/fashion/test.jsonl" --match label --zero-shot "${a[@]}")
    z=$r
  else
    r=$("$BIN" eval --model "$model" --data "$WORK/shift/test.jsonl" "${a[@]}")
    z=$("$BIN" eval --model "$model" --data "$WORK/shift/test_labels.jsonl" --match label --zero-shot "${a[@]}")
  fi
  r=$(sed -E 's/.*"i2t_recall_at_1": ([-0-9.eE+]+).*/\1/' <<< "$r")
  z=$(sed -E 's/.*"zero_shot_accuracy": ([-0-9.eE+]+).*/\1/' <<< "$z")
  printf '"recall_at_1": %s, "zero_shot_accuracy": %s' "$r" "$z"
}

for task in $TASKS; do
  if [ "$task" = caption ]; then
    echo "bench-peft: caption, base captioner"
    echo "{\"task\": \"caption\", \"method\": \"none\", \"seed\": 0, $(cap_evaluate "$CAP_MODEL" "")}" >> "$raw"
    for seed in $SEEDS; do
      for method in $CAP_METHODS; do
        echo "bench-peft: caption, $method, seed $seed"
        run="$WORK/caption-$method-$seed"
        # shellcheck disable=SC2046
        res=$("$BIN" train --model "$CAP_MODEL" --data "$WORK/fashion/train_coco.json" $(cap_flags "$method") \
          --steps "$CAP_STEPS" --batch-size "$CAP_BATCH" --seed "$seed" --out "$run" --quiet)
        res=${res%\}}
        if [ "$method" = full ]; then metrics=$(cap_evaluate "$run/adapter" "")
        else metrics=$(cap_evaluate "$CAP_MODEL" "$run/adapter"); fi
        echo "{\"task\": \"caption\", \"made\": \"$made\", \"method\": \"$method\", \"seed\": $seed, \"flags\": \"$(cap_flags "$method" | sed 's/\\/\\\\/g')\", ${res#\{}, $metrics}" >> "$raw"
        rm -rf "$run"/ckpt-*
      done
    done
    continue
  fi
  echo "bench-peft: $task, base model"
  metrics=$(evaluate "$task" "$MODEL" "")
  echo "{\"task\": \"$task\", \"method\": \"none\", \"seed\": 0, $metrics}" >> "$raw"
  for seed in $SEEDS; do
    for method in $METHODS; do
      echo "bench-peft: $task, $method, seed $seed"
      run="$WORK/$task-$method-$seed"
      data="$WORK/$task/train.jsonl"
      # shellcheck disable=SC2046
      res=$("$BIN" train --model "$MODEL" --data "$data" $(flags "$method") --steps "$STEPS" --batch-size "$BATCH" \
        --seed "$seed" --out "$run" --quiet)
      res=${res%\}}
      # full fine-tuning writes a whole snapshot; the others an adapter over the base
      if [ "$method" = full ]; then metrics=$(evaluate "$task" "$run/adapter" "")
      else metrics=$(evaluate "$task" "$MODEL" "$run/adapter"); fi
      echo "{\"task\": \"$task\", \"made\": \"$made\", \"method\": \"$method\", \"seed\": $seed, \"flags\": \"$(flags "$method")\", ${res#\{}, $metrics}" >> "$raw"
      rm -rf "$run"/ckpt-*
    done
  done
done
fi

python3 - "$raw" "$out/peft_methods.md" "$STEPS" "$BATCH" "$MODEL" "$CAP_MODEL" "$CAP_STEPS" "$CAP_BATCH" <<'PY'
import json, os, statistics, subprocess, sys, datetime
raw, md, steps, batch, model, cap_model, cap_steps, cap_batch = sys.argv[1:9]
rows = [json.loads(l) for l in open(raw) if l.strip()]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
nproc = subprocess.check_output(["nproc"]).decode().strip()
med = lambda xs: statistics.median(xs) if xs else float("nan")
try:
    pressure = open("/proc/pressure/cpu").readline().strip()
except OSError:
    pressure = "unknown"
out = [f"# PEFT methods on the embedded default model ({model})", "",
       "Made by `make bench-peft` (scripts/bench_peft.sh); each section says when and on what machine its rows were "
       f"made (a rerun of one task replaces only its rows). Every method: {steps} steps of {batch} pairs, its own learning rate (flags below), "
       "seeds " + ", ".join(sorted({str(r['seed']) for r in rows if r['method'] != 'none'})) +
       "; each cell is the median over seeds. Seconds per step are wall time (final checkpoint included); "
       "peak RSS is the training process's, which on a model this small is mostly the decoded training images "
       "(kept in memory) and the runtime, so methods differ little there. The base model was pretrained on six of the "
       "ten Fashion-MNIST classes and on the synthetic `base` domain (docs/default_model.md). "
       "Raw rows: peft_methods_raw.jsonl.", ""]
def table(t, base_name, metrics):
    """Rows of one task: the base model's metrics, then each method's medians over seeds."""
    made = sorted({r["made"] for r in t if r.get("made")})
    lines = (["Rows made " + "; ".join(made) + ".", ""] if made else []) + ["| method | trainable params | % of model | s/step | peak RSS MB | " + " | ".join(h for h, _ in metrics) + " |",
             "|---|---|---|---|---|" + "---|" * len(metrics)]
    for b in [r for r in t if r["method"] == "none"][:1]:
        lines.append(f"| {base_name} | 0 | 0 | - | - | " + " | ".join(f"{b[k]:.3f}" for _, k in metrics) + " |")
    for m in dict.fromkeys(r["method"] for r in t if r["method"] != "none"):
        s = [r for r in t if r["method"] == m]
        p = s[0]["trainable_params"]
        lines.append(f"| {m} | {p:,} | {100.0 * p / s[0]['total_params']:.3g} | {med([r['s_per_step'] for r in s]):.3f} | "
                     f"{med([r['peak_rss_mb'] for r in s]):.0f} | " + " | ".join(f"{med([r[k] for r in s]):.3f}" for _, k in metrics) + " |")
    return lines

for task, title, r1 in (("fashion", "Fashion-MNIST product search (10 classes, 4 unseen in pretraining)",
                         "image->caption recall@1 (class-level)"),
                        ("shift", "Synthetic shift domain", "image->caption recall@1")):
    t = [r for r in rows if r["task"] == task]
    if t:
        out += [f"## {title}", ""] + table(t, "base model (no training)", [(r1, "recall_at_1"), ("zero-shot acc", "zero_shot_accuracy")]) + [""]
t = [r for r in rows if r["task"] == "caption"]
if t:
    out += ["## Captioning: Fashion-MNIST product descriptions", "",
            f"The embedded default captioner ({cap_model}, GIT, pretrained by mmtune on synthetic shape scenes only; "
            "docs/default_captioner.md) learns to describe the Fashion-MNIST products: "
            f"{cap_steps} steps of {cap_batch} captions (three wordings of each training image), then greedy captions of the "
            "fashion test images scored against their three reference wordings (CIDEr-D, BLEU-4, ROUGE-L as pycocoevalcap "
            "computes them). The class names are not in the captioner's vocabulary, so WordPiece spells them in characters: "
            "methods that cannot move the output head have to steer the hidden states to spell them. "
            f"Seconds per step are wall time on the shared 2-core machine (CPU pressure when the table was written: {pressure}), "
            "so they compare methods only roughly; the scores do not depend on load.", ""]
    out += table(t, "base captioner (no training)", [("CIDEr-D", "cider_d"), ("BLEU-4", "bleu_4"), ("ROUGE-L", "rouge_l")])
    spread = {m: [r["cider_d"] for r in t if r["method"] == m] for m in dict.fromkeys(r["method"] for r in t if r["method"] != "none")}
    out += ["", "CIDEr-D per seed: " + "; ".join(f"{m} " + ", ".join(f"{v:.3f}" for v in vs) for m, vs in spread.items()), ""]
flags = {}
for r in rows:
    if r["method"] != "none":
        flags.setdefault(("captioner " if r["task"] == "caption" else "CLIP ") + r["method"], r.get("flags", ""))
out += ["## Flags", ""] + [f"- {k}: `{f}`" for k, f in flags.items()]
open(md, "w").write("\n".join(out) + "\n")
print("\n".join(out))
PY
