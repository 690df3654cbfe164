#!/usr/bin/env bash
# Pruning and distillation on the demo task (docs/distillation.md). The teacher is the
# embedded default model with a LoRA adapter trained on Fashion-MNIST (all ten classes, as
# `make demo` does, shorter); the student is the default model pruned by `mmtune prune`
# (MLP neurons and whole layers by Taylor scores on the training pairs), then recovered by
# full fine-tuning on the same pairs, without and with `--distill-from` the teacher.
# Reported for each model: parameters, bytes of model.safetensors, image embeddings/s
# (`mmtune bench embed --tower image`, batch 64: the best of ROUNDS rounds in which the models
# take turns, each the best of 5 timed iterations; the teacher's is its base's, as a merged
# LoRA costs nothing) and, on the
# held-out test split, class-level image->text recall@1 and zero-shot accuracy (`mmtune eval
# --match label --zero-shot`). Writes bench/results/distill.md and distill_raw.jsonl.
# TRAIN_PER_CLASS, TEST_PER_CLASS, TEACHER_STEPS, STEPS, BATCH, MLP, LAYERS, ROUNDS, WORK override.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/mmtune}
MODEL=${MODEL:-models/mmtune-clip-tiny}
TRAIN_PER_CLASS=${TRAIN_PER_CLASS:-100}
TEST_PER_CLASS=${TEST_PER_CLASS:-50}
TEACHER_STEPS=${TEACHER_STEPS:-60}
STEPS=${STEPS:-60}
BATCH=${BATCH:-64}
MLP=${MLP:-0.5}
ROUNDS=${ROUNDS:-3}
LAYERS=${LAYERS:-0.25}
WORK=${WORK:-runs/bench-distill}
out=bench/results
mkdir -p "$out"
case "$WORK" in
  "" | / | . | .. | "$HOME") echo "bench distill: refusing to clear WORK='$WORK'" >&2; exit 2 ;;
esac
rm -rf "$WORK"
mkdir -p "$WORK"
start=$(date +%s)
say() { printf 'bench distill: %s (%ds)\n' "$*" $(($(date +%s) - start)); }
raw="$out/distill_raw.jsonl"
: > "$raw"
names=()
models=()

say "data: Fashion-MNIST, $TRAIN_PER_CLASS train and $TEST_PER_CLASS test images per class"
"$BIN" fashion-mnist --out "$WORK/data" --split train --count-per-class "$TRAIN_PER_CLASS" --seed 7 --captions 3 >/dev/null
"$BIN" fashion-mnist --out "$WORK/data" --split test --count-per-class "$TEST_PER_CLASS" --seed 7 --captions 3 >/dev/null
train="$WORK/data/train.jsonl"
test="$WORK/data/test.jsonl"

# measure NAME MODEL_DIR [ADAPTER] [EXTRA JSON]: eval + speed, one line in distill_raw.jsonl
measure() {
  local name=$1 model=$2 adapter=${3:-} extra=${4:-"{}"}
  say "measure: $name"
  local flags=()
  [ -n "$adapter" ] && flags=(--adapter "$adapter")
  "$BIN" eval --model "$model" "${flags[@]}" --data "$test" --match label --zero-shot --out "$WORK/$name.eval.json" >/dev/null
  names+=("$name")
  models+=("$model")
  python3 - "$name" "$model" "$WORK/$name.eval.json" "$extra" "${adapter:-}" >> "$WORK/quality.jsonl" <<'PY'
import json, os, sys
name, model, ev, extra, adapter = sys.argv[1:6]
import numpy as np
from safetensors import safe_open


def count(path):
    with safe_open(path, "np") as f:
        return sum(int(np.prod(f.get_slice(k).get_shape())) for k in f.keys())


params = count(os.path.join(model, "model.safetensors"))
if adapter:
    params += count(os.path.join(adapter, "adapter_model.safetensors"))
cfg = json.load(open(os.path.join(model, "config.json")))
e = json.load(open(ev))
row = {"name": name, "params": params, "bytes": os.path.getsize(os.path.join(model, "model.safetensors")),
       "text_layers": cfg["text_config"]["num_hidden_layers"], "vision_layers": cfg["vision_config"]["num_hidden_layers"],
       "text_mlp": cfg["text_config"]["intermediate_size"], "vision_mlp": cfg["vision_config"]["intermediate_size"],
       "i2t_r1": e["i2t_recall_at_1"], "t2i_r1": e["t2i_recall_at_1"], "zero_shot": e["zero_shot_accuracy"]}
row.update(json.loads(extra))
print(json.dumps(row))
PY
}

say "teacher: LoRA on $MODEL, $TEACHER_STEPS steps of $BATCH"
"$BIN" train --model "$MODEL" --data "$train" --method lora --targets q_proj,v_proj,fc1,fc2 --steps "$TEACHER_STEPS" \
  --batch-size "$BATCH" --lr 2e-3 --seed 7 --quiet --out "$WORK/teacher" >/dev/null
measure "base" "$MODEL"
measure "teacher (base + LoRA)" "$MODEL" "$WORK/teacher/adapter"

say "prune: --mlp $MLP --layers $LAYERS on the training pairs"
"$BIN" prune --model "$MODEL" --data "$train" --mlp "$MLP" --layers "$LAYERS" --batches 8 --batch-size 32 \
  --out "$WORK/pruned" > "$WORK/prune.json"
measure "pruned" "$WORK/pruned"

recover() { # name, extra flags...
  local name=$1
  shift
  say "recover: $name, full fine-tuning $STEPS steps of $BATCH"
  "$BIN" train --model "$WORK/pruned" --data "$train" --method full --steps "$STEPS" --batch-size "$BATCH" --lr 3e-4 \
    --seed 7 --quiet --out "$WORK/$name" "$@" >/dev/null
  measure "$name" "$WORK/$name/adapter"
}
recover "pruned + fine-tuning"
recover "pruned + fine-tuning + distillation" --distill-from "$MODEL" --teacher-adapter "$WORK/teacher/adapter" \
  --distill 1 --distill-cosine 1 --distill-temperature 2

# Speed: every model's image embeddings/s, ROUNDS rounds taking turns, the best of each kept
# (the machine may be shared: interleaving and the best round make the comparison fair).
say "speed: image embeddings/s, $ROUNDS rounds"
: > "$WORK/speed.jsonl"
for round in $(seq "$ROUNDS"); do
  for i in "${!names[@]}"; do
    "$BIN" bench embed --model "${models[$i]}" --tower image --batch 64 --iters 5 --warmup 1 --json 2>/dev/null \
      | grep '"tower":"image"' | sed "s/^{/{\"name\": \"${names[$i]}\", /" >> "$WORK/speed.jsonl"
  done
done
python3 - "$WORK/quality.jsonl" "$WORK/speed.jsonl" > "$raw" <<'PY'
import json, sys
best, cpu = {}, {}
for l in open(sys.argv[2]):
    r = json.loads(l)
    best[r["name"]] = max(best.get(r["name"], 0), r["batch"] / r["best_s"])
    cpu[r["name"]] = max(cpu.get(r["name"], 0), r["batch"] / r["cpu_s"])
for l in open(sys.argv[1]):
    r = json.loads(l)
    r["images_per_s"] = round(best[r["name"]], 1)
    r["images_per_cpu_s"] = round(cpu[r["name"]], 1)
    print(json.dumps(r))
PY

python3 - "$raw" "$out/distill.md" "$WORK/prune.json" "$MLP" "$LAYERS" "$TRAIN_PER_CLASS" "$TEST_PER_CLASS" \
  "$TEACHER_STEPS" "$STEPS" "$BATCH" <<'PY'
import json, sys
raw, md, prune, mlp, layers, trn, tst, tsteps, steps, batch = sys.argv[1:11]
rows = [json.loads(l) for l in open(raw)]
p = json.load(open(prune))
import datetime, os, subprocess
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
nproc = subprocess.check_output(["nproc"]).decode().strip()
when = datetime.datetime.fromtimestamp(os.path.getmtime(raw), datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
lines = ["# Pruning and distillation (scripts/bench_distill.sh)", "",
         f"Made by scripts/bench_distill.sh {when} UTC on {cpu}, {nproc} cores. "
         f"Demo task: Fashion-MNIST, all ten classes, {trn} training and {tst} held-out test images per class. "
         f"Teacher: the default model + a LoRA adapter (q, v, fc1, fc2; {tsteps} steps of {batch}). Student: the default "
         f"model pruned by `mmtune prune --mlp {mlp} --layers {layers}` (Taylor scores of the contrastive loss on 8 "
         f"batches of 32 training pairs): text layers {p['text']['layers'][0]} -> {p['text']['layers'][1]}, MLP "
         f"{p['text']['intermediate_size'][0]} -> {p['text']['intermediate_size'][1]}; vision layers "
         f"{p['vision']['layers'][0]} -> {p['vision']['layers'][1]}, MLP {p['vision']['intermediate_size'][0]} -> "
         f"{p['vision']['intermediate_size'][1]}. Recovery: full fine-tuning, {steps} steps of {batch}, lr 3e-4, "
         f"without and with `--distill-from` the teacher (`--distill 1 --distill-cosine 1 --distill-temperature 2`).", "",
         "Quality: class-level image->text and text->image recall@1 and zero-shot accuracy on the test split "
         "(`mmtune eval --match label --zero-shot`). Speed: image embeddings per second, batch 64, best of 5 "
         "(`mmtune bench embed --tower image`), the best of 3 rounds in which the models take turns, on this machine's "
         "2 cores (shared with other work while it ran: the best round is the least disturbed one), and per second of "
         "the process's CPU time over both cores (less swayed by other work; the best round too). The teacher's "
         "speed is its base's (a LoRA adapter merged into the base costs nothing). Parameters and bytes: "
         "model.safetensors (plus the adapter's parameters for the teacher).", "",
         "| model | params | bytes | layers (text/vision) | MLP (text/vision) | images/s | images/CPU-s | i2t R@1 | t2i R@1 | zero-shot |",
         "|---|---|---|---|---|---|---|---|---|---|"]
for r in rows:
    lines.append(f"| {r['name']} | {r['params'] / 1e6:.2f} M | {r['bytes'] / 1e6:.2f} MB | {r['text_layers']}/{r['vision_layers']} | "
                 f"{r['text_mlp']}/{r['vision_mlp']} | {r['images_per_s']:.0f} | {r['images_per_cpu_s']:.0f} | {r['i2t_r1']:.3f} | {r['t2i_r1']:.3f} | "
                 f"{r['zero_shot']:.3f} |")
open(md, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
say "done"
