#!/usr/bin/env bash
# `make pretrain`: makes the embedded default model, models/mmtune-clip-tiny, from scratch with
# mmtune alone (docs/default_model.md):
#   1. data: the synthetic `base` domain (32 px) and the Fashion-MNIST training images of six
#      of its ten classes (SEEN below); the other four are left for the demo to adapt to;
#   2. a byte-level BPE vocabulary trained on those captions (`mmtune bpe`);
#   3. a fresh CLIP (`mmtune init`): both towers width 128, 4 layers, 4 heads; 32 px images
#      in 4 px patches; context 32;
#   4. full contrastive training (`mmtune train --method full`, learned temperature);
#   5. scores on the held-out test splits (`mmtune eval`), written beside the model.
# STEPS, BATCH, LR, SEED, OUT and WORK override the defaults. Takes about 40 minutes on two cores.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/mmtune}
STEPS=${STEPS:-1500}
BATCH=${BATCH:-128}
LR=${LR:-7e-4}
SEED=${SEED:-1}
OUT=${OUT:-models/mmtune-clip-tiny}
WORK=${WORK:-runs/pretrain}
SEEN="T-shirt/top,trouser,pullover,coat,shirt,sneaker"
PER_CLASS=${PER_CLASS:-4000}
SYNTH=${SYNTH:-30000}

for d in "$WORK" "$OUT"; do
  case "$d" in
    "" | / | . | .. | "$HOME") echo "pretrain: refusing to clear '$d'" >&2; exit 2 ;;
  esac
done
rm -rf "$WORK"
mkdir -p "$WORK"
echo "pretrain: data in $WORK"
"$BIN" synth --out "$WORK/synth" --domain base --seed "$SEED" --count "$SYNTH" --size 32 >/dev/null
"$BIN" fashion-mnist --out "$WORK/fashion" --split train --classes "$SEEN" --count-per-class "$PER_CLASS" \
  --seed "$SEED" >/dev/null
"$BIN" fashion-mnist --out "$WORK/fashion" --split test --classes "$SEEN" --count-per-class 100 --seed "$SEED" >/dev/null
"$BIN" fashion-mnist --out "$WORK/fashion-all" --split test --count-per-class 100 --seed "$SEED" >/dev/null
# one training file: image paths made relative to $WORK
{
  sed 's#"image_path": "#"image_path": "synth/#' "$WORK/synth/train.jsonl"
  sed 's#"image_path": "#"image_path": "fashion/#' "$WORK/fashion/train.jsonl"
} > "$WORK/train.jsonl"
echo "pretrain: $(wc -l < "$WORK/train.jsonl") training pairs"

"$BIN" bpe --input "$WORK/train.jsonl" --vocab-size 4096 --min-frequency 2 --out "$WORK/tokenizer"
"$BIN" init --out "$WORK/init" --tokenizer "$WORK/tokenizer" --image-size 32 --patch 4 --vision-width 128 \
  --vision-layers 4 --vision-heads 4 --text-width 128 --text-layers 4 --text-heads 4 --projection-dim 128 \
  --context 32 --seed "$SEED"

"$BIN" train --model "$WORK/init" --data "$WORK/train.jsonl" --method full --steps "$STEPS" \
  --batch-size "$BATCH" --lr "$LR" --weight-decay 0.1 --warmup-ratio 0.05 --learn-logit-scale \
  --seed "$SEED" --save-every 250 --keep-checkpoints 1 --out "$WORK/run" --progress "${PROGRESS:-auto}"

rm -rf "$OUT"
mkdir -p "$OUT"
cp "$WORK/run/adapter/"* "$OUT/"

echo "pretrain: scores on held-out test splits"
"$BIN" eval --model "$OUT" --data "$WORK/synth/test_labels.jsonl" --match label --zero-shot --out "$WORK/score_synth.json" >/dev/null
"$BIN" eval --model "$OUT" --data "$WORK/fashion/test.jsonl" --match label --zero-shot --out "$WORK/score_seen.json" >/dev/null
"$BIN" eval --model "$OUT" --data "$WORK/fashion-all/test.jsonl" --match label --zero-shot --out "$WORK/score_all.json" >/dev/null
{
  printf '{"steps": %s, "batch_size": %s, "lr": %s, "seed": %s, "seen_classes": "%s",\n' "$STEPS" "$BATCH" "$LR" "$SEED" "$SEEN"
  printf ' "train_pairs": %s,\n' "$(wc -l < "$WORK/train.jsonl")"
  printf ' "synth_base_test": %s,\n' "$(cat "$WORK/score_synth.json")"
  printf ' "fashion_seen_test": %s,\n' "$(cat "$WORK/score_seen.json")"
  printf ' "fashion_all_test": %s}\n' "$(cat "$WORK/score_all.json")"
} > "$OUT/mmtune_pretrain.json"
for f in synth seen all; do
  printf 'pretrain: %-6s ' "$f"
  sed -E 's/.*"i2t_recall_at_1": ([0-9.]+).*"zero_shot_accuracy": ([0-9.]+).*/i2t recall@1 (class-level) \1, zero-shot accuracy \2/' \
    "$WORK/score_$f.json"
done
echo "pretrain: wrote $OUT ($(du -k "$OUT/model.safetensors" | cut -f1) KiB of weights)"
