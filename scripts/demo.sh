#!/usr/bin/env bash
# `make demo`: the main job. The embedded default model (models/mmtune-clip-tiny, pretrained
# by `make pretrain` on synthetic scenes and six Fashion-MNIST classes) meets a product-search
# task on all ten Fashion-MNIST classes, four of which it never saw: evaluate it, train a LoRA
# adapter on the training split, evaluate again on the held-out test split, write the report.
#
# Metrics (docs/default_model.md): class-level recall@K on the test split — an image query
# is answered correctly at K when one of its K nearest captions names its class (and the
# same for caption queries) — and zero-shot accuracy with prompt ensembling.
# TRAIN_PER_CLASS, TEST_PER_CLASS, STEPS, BATCH, LR, OUT override the defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/mmtune}
MODEL=${MODEL:-models/mmtune-clip-tiny}
OUT=${OUT:-runs/demo}
TRAIN_PER_CLASS=${TRAIN_PER_CLASS:-400}
TEST_PER_CLASS=${TEST_PER_CLASS:-100}
STEPS=${STEPS:-300}
BATCH=${BATCH:-64}
LR=${LR:-2e-3}
TARGETS=${TARGETS:-q_proj,v_proj,fc1,fc2}

case "$OUT" in
  "" | / | . | .. | "$HOME") echo "demo: refusing to clear OUT='$OUT'; name a run folder" >&2; exit 2 ;;
esac
start=$(date +%s)
rm -rf "$OUT"
mkdir -p "$OUT"
say() { printf '\ndemo: %s\n' "$*"; }

say "1/5 data: Fashion-MNIST, $TRAIN_PER_CLASS training and $TEST_PER_CLASS test images per class (ten classes)"
"$BIN" fashion-mnist --out "$OUT/data" --split train --count-per-class "$TRAIN_PER_CLASS" --seed 7
"$BIN" fashion-mnist --out "$OUT/data" --split test --count-per-class "$TEST_PER_CLASS" --seed 7
test_pairs="$OUT/data/test.jsonl"

eval_model() { # $1: before|after, $2...: extra flags
  local which=$1
  shift
  "$BIN" eval --model "$MODEL" --data "$test_pairs" --match label --zero-shot "$@" --out "$OUT/$which.json" >/dev/null
}

say "2/5 evaluate the base model $MODEL on the test split"
eval_model before

say "3/5 train a LoRA adapter (r 8 on $TARGETS, both towers), $STEPS steps of $BATCH pairs"
"$BIN" train --model "$MODEL" --data "$OUT/data/train.jsonl" --method lora --targets "$TARGETS" --steps "$STEPS" \
  --batch-size "$BATCH" --lr "$LR" --seed 7 --save-every "$STEPS" --out "$OUT/run"

say "4/5 evaluate base + adapter on the test split"
eval_model after --adapter "$OUT/run/adapter"

say "5/5 report"
"$BIN" report --run "$OUT/run" --out "$OUT/report.html" --before "$OUT/before.json" --after "$OUT/after.json" --queries "$test_pairs" \
  --model "$MODEL" --examples 4
seconds=$(($(date +%s) - start))

field() { sed -E "s/.*\"$2\": ([-0-9.eE+]+).*/\1/" "$1"; }
side() {
  printf '{"recall_at_1": %s, "recall_at_5": %s, "t2i_recall_at_1": %s, "zero_shot_accuracy": %s}' \
    "$(field "$1" i2t_recall_at_1)" "$(field "$1" i2t_recall_at_5)" "$(field "$1" t2i_recall_at_1)" \
    "$(field "$1" zero_shot_accuracy)"
}
cat > "$OUT/summary.json" <<EOF
{"model": "$MODEL", "task": "Fashion-MNIST product search, 10 classes, class-level retrieval",
 "test_pairs": $(field "$OUT/before.json" pairs), "train_pairs": $(wc -l < "$OUT/data/train.jsonl"),
 "method": "lora", "steps": $STEPS, "batch_size": $BATCH, "seconds": $seconds,
 "before": $(side "$OUT/before.json"),
 "after": $(side "$OUT/after.json")}
EOF

row() {
  local b a
  b=$(field "$OUT/before.json" "$2")
  a=$(field "$OUT/after.json" "$2")
  awk -v n="$1" -v b="$b" -v a="$a" 'BEGIN { printf "  %-34s %6.1f%%  %6.1f%%  %+6.1f\n", n, 100*b, 100*a, 100*(a-b) }'
}
echo
echo "  test split, $(field "$OUT/before.json" pairs) images      before    after   points"
row "image -> caption recall@1" i2t_recall_at_1
row "image -> caption recall@5" i2t_recall_at_5
row "caption -> image recall@1" t2i_recall_at_1
row "zero-shot accuracy" zero_shot_accuracy
echo
echo "demo: data, evaluation, training and report took ${seconds}s"
echo "demo: adapter (PEFT format) in $OUT/run/adapter; summary in $OUT/summary.json"
echo "demo: report: $OUT/report.html"
