#!/usr/bin/env bash
# `make demo`: the main job. The embedded default model (models/mmtune-clip-tiny, pretrained
# by `make pretrain` on synthetic scenes and six Fashion-MNIST classes) meets a product-search
# task on all ten Fashion-MNIST classes, four of which it never saw: evaluate it, train a LoRA
# adapter on the training split, evaluate again on the held-out test split, write the report.
#
# Metrics (docs/default_model.md): class-level recall@K on the test split — an image query
# is answered correctly at K when one of its K nearest captions names its class (and the
# same for caption queries) — and zero-shot accuracy with prompt ensembling.
#
# Then the embedded default captioner (models/mmtune-git-tiny, pretrained by `make
# pretrain-caption` on synthetic shape scenes only) learns to describe the same products: its
# greedy captions of the test images are scored (CIDEr-D, BLEU-4 against three reference
# wordings per image) before and after a LoRA adapter (r 16 on the decoder's linear layers and
# the output head) trained on the training images' captions (docs/captioning.md).
# TRAIN_PER_CLASS, TEST_PER_CLASS, STEPS, BATCH, LR, OUT, and for the captioner CAP_MODEL,
# CAP_STEPS, CAP_BATCH, CAP_LR, CAP_RANK override the defaults.
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
CAP_MODEL=${CAP_MODEL:-models/mmtune-git-tiny}
CAP_STEPS=${CAP_STEPS:-200}
CAP_BATCH=${CAP_BATCH:-32}
CAP_LR=${CAP_LR:-5e-3}
CAP_RANK=${CAP_RANK:-16}
CAP_TARGETS='.*\.(query|key|value|dense)|output' # PEFT's target_modules regex: decoder linears and the head

case "$OUT" in
  "" | / | . | .. | "$HOME") echo "demo: refusing to clear OUT='$OUT'; name a run folder" >&2; exit 2 ;;
esac
start=$(date +%s)
rm -rf "$OUT"
mkdir -p "$OUT"
say() { printf '\ndemo: %s\n' "$*"; }

say "1/8 data: Fashion-MNIST, $TRAIN_PER_CLASS training and $TEST_PER_CLASS test images per class (ten classes)"
"$BIN" fashion-mnist --out "$OUT/data" --split train --count-per-class "$TRAIN_PER_CLASS" --seed 7 --captions 3
"$BIN" fashion-mnist --out "$OUT/data" --split test --count-per-class "$TEST_PER_CLASS" --seed 7 --captions 3
test_pairs="$OUT/data/test.jsonl"

eval_model() { # $1: before|after, $2...: extra flags
  local which=$1
  shift
  "$BIN" eval --model "$MODEL" --data "$test_pairs" --match label --zero-shot "$@" --out "$OUT/$which.json" >/dev/null
}

say "2/8 evaluate the base model $MODEL on the test split"
eval_model before

say "3/8 train a LoRA adapter (r 8 on $TARGETS, both towers), $STEPS steps of $BATCH pairs"
"$BIN" train --model "$MODEL" --data "$OUT/data/train.jsonl" --method lora --targets "$TARGETS" --steps "$STEPS" \
  --batch-size "$BATCH" --lr "$LR" --seed 7 --save-every "$STEPS" --out "$OUT/run"

say "4/8 evaluate base + adapter on the test split"
eval_model after --adapter "$OUT/run/adapter"

eval_captioner() { # $1: before|after, $2...: extra flags
  local which=$1
  shift
  "$BIN" eval --model "$CAP_MODEL" --data "$OUT/data/test_coco.json" --batch-size 32 --samples 6 "$@" \
    --out "$OUT/caption_$which.json" >/dev/null
}

say "5/8 captioner: caption the test images with $CAP_MODEL (pretrained on shape scenes only)"
eval_captioner before

say "6/8 captioner: train a LoRA adapter (r $CAP_RANK on the decoder and head), $CAP_STEPS steps of $CAP_BATCH captions"
"$BIN" train --model "$CAP_MODEL" --data "$OUT/data/train_coco.json" --method lora --targets-regex "$CAP_TARGETS" \
  --lora-r "$CAP_RANK" --lora-alpha $((2 * CAP_RANK)) --steps "$CAP_STEPS" --batch-size "$CAP_BATCH" --lr "$CAP_LR" --seed 7 \
  --save-every "$CAP_STEPS" --out "$OUT/caption_run"

say "7/8 captioner: caption the test images with base + adapter"
eval_captioner after --adapter "$OUT/caption_run/adapter"

say "8/8 report"
"$BIN" report --run "$OUT/run" --out "$OUT/report.html" --before "$OUT/before.json" --after "$OUT/after.json" --queries "$test_pairs" \
  --model "$MODEL" --examples 4 --caption-run "$OUT/caption_run" --caption-before "$OUT/caption_before.json" \
  --caption-after "$OUT/caption_after.json"
seconds=$(($(date +%s) - start))

field() { sed -E "s/.*\"$2\": ([-0-9.eE+]+).*/\1/" "$1"; }
side() {
  printf '{"recall_at_1": %s, "recall_at_5": %s, "t2i_recall_at_1": %s, "zero_shot_accuracy": %s}' \
    "$(field "$1" i2t_recall_at_1)" "$(field "$1" i2t_recall_at_5)" "$(field "$1" t2i_recall_at_1)" \
    "$(field "$1" zero_shot_accuracy)"
}
cap_side() {
  printf '{"cider_d": %s, "bleu_4": %s, "rouge_l": %s}' "$(field "$1" cider_d)" "$(field "$1" bleu_4)" "$(field "$1" rouge_l)"
}
cat > "$OUT/summary.json" <<EOF
{"model": "$MODEL", "task": "Fashion-MNIST product search, 10 classes, class-level retrieval",
 "test_pairs": $(field "$OUT/before.json" pairs), "train_pairs": $(wc -l < "$OUT/data/train.jsonl"),
 "method": "lora", "steps": $STEPS, "batch_size": $BATCH, "seconds": $seconds,
 "before": $(side "$OUT/before.json"),
 "after": $(side "$OUT/after.json"),
 "captioning": {"model": "$CAP_MODEL", "task": "Fashion-MNIST product descriptions, 3 references per image",
  "test_images": $(field "$OUT/caption_before.json" images), "method": "lora", "steps": $CAP_STEPS, "batch_size": $CAP_BATCH,
  "before": $(cap_side "$OUT/caption_before.json"),
  "after": $(cap_side "$OUT/caption_after.json")}}
EOF

row() {
  local b a
  b=$(field "$OUT/before.json" "$2")
  a=$(field "$OUT/after.json" "$2")
  awk -v n="$1" -v b="$b" -v a="$a" 'BEGIN { printf "  %-34s %6.1f%%  %6.1f%%  %+6.1f\n", n, 100*b, 100*a, 100*(a-b) }'
}
cap_row() {
  local b a
  b=$(field "$OUT/caption_before.json" "$2")
  a=$(field "$OUT/caption_after.json" "$2")
  awk -v n="$1" -v b="$b" -v a="$a" 'BEGIN { printf "  %-34s %7.3f  %7.3f  %+6.3f\n", n, b, a, a-b }'
}
echo
echo "  test split, $(field "$OUT/before.json" pairs) images      before    after   points"
row "image -> caption recall@1" i2t_recall_at_1
row "image -> caption recall@5" i2t_recall_at_5
row "caption -> image recall@1" t2i_recall_at_1
row "zero-shot accuracy" zero_shot_accuracy
echo
echo "  captions of the $(field "$OUT/caption_before.json" images) test images     before    after   change"
cap_row "CIDEr-D" cider_d
cap_row "BLEU-4" bleu_4
cap_row "ROUGE-L" rouge_l
echo
echo "demo: data, evaluations, both trainings and the report took ${seconds}s"
echo "demo: adapters (PEFT format) in $OUT/run/adapter and $OUT/caption_run/adapter; summary in $OUT/summary.json"
echo "demo: report: $OUT/report.html"
