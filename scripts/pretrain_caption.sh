#!/usr/bin/env bash
# `make pretrain-caption`: makes the embedded default captioner, models/mmtune-git-tiny, from
# scratch with mmtune alone (docs/default_captioner.md):
#   1. data: the synthetic `base` domain at 32 px (SYNTH scenes, 80/10/10 train/val/test, three
#      captions per scene in the COCO files);
#   2. a BERT WordPiece vocabulary built from the training captions (`mmtune wordpiece`);
#   3. a fresh GIT captioner (`mmtune init --family git`): vision tower width 128, 4 layers,
#      4 heads, 4 px patches (65 image tokens); decoder width 192, 3 layers, 6 heads; 32 text
#      positions; 2.24 M parameters, 9.0 MB in F32;
#   4. full training on every training caption (`mmtune train --method full`);
#   5. CIDEr-D, BLEU and ROUGE-L of greedy captions on the held-out test scenes
#      (`mmtune eval`), written beside the model with the settings.
# Every step is seeded (SEED). STEPS, BATCH, LR, SYNTH, SEED, OUT, WORK and BIN override the
# defaults. At the defaults it takes about 20 minutes on two idle cores (3,000 steps of 32
# captions at about 0.35 s a step; several times longer when the cores are shared); a check of
# the whole chain: STEPS=20 SYNTH=200 (about a minute).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/mmtune}
STEPS=${STEPS:-3000}
BATCH=${BATCH:-32}
LR=${LR:-5e-4}
SEED=${SEED:-1}
SYNTH=${SYNTH:-20000}
OUT=${OUT:-models/mmtune-git-tiny}
WORK=${WORK:-runs/pretrain-caption}

for d in "$WORK" "$OUT"; do
  case "$d" in
    "" | / | . | .. | "$HOME") echo "pretrain-caption: refusing to clear '$d'" >&2; exit 2 ;;
  esac
done
rm -rf "$WORK"
mkdir -p "$WORK"
echo "pretrain-caption: data in $WORK"
"$BIN" synth --out "$WORK/synth" --domain base --seed "$SEED" --count "$SYNTH" --size 32 >/dev/null
echo "pretrain-caption: $(wc -l < "$WORK/synth/train.jsonl") training scenes, three captions each"

# the vocabulary: one caption per training scene (train.jsonl) names every word the
# generator uses many times over; anything else is spelled in characters
"$BIN" wordpiece --input "$WORK/synth/train.jsonl" --min-frequency 2 --out "$WORK/tokenizer"
"$BIN" init --family git --out "$WORK/init" --tokenizer "$WORK/tokenizer" --image-size 32 --patch 4 \
  --vision-width 128 --vision-layers 4 --vision-heads 4 --decoder-width 192 --decoder-layers 3 \
  --decoder-heads 6 --context 32 --seed "$SEED"

"$BIN" train --model "$WORK/init" --data "$WORK/synth/train_coco.json" --image-root "$WORK/synth" \
  --method full --steps "$STEPS" --batch-size "$BATCH" --lr "$LR" --weight-decay 0.01 --warmup-ratio 0.05 \
  --max-caption-tokens 32 --seed "$SEED" --save-every 500 --keep-checkpoints 1 --out "$WORK/run" \
  --progress "${PROGRESS:-auto}"

rm -rf "$OUT"
mkdir -p "$OUT"
cp "$WORK/run/adapter/"* "$OUT/"

echo "pretrain-caption: scores on the held-out test scenes"
"$BIN" eval --model "$OUT" --data "$WORK/synth/test_coco.json" --image-root "$WORK/synth" --samples 5 \
  --out "$WORK/score_test.json" >/dev/null
{
  printf '{"steps": %s, "batch_size": %s, "lr": %s, "seed": %s, "synth_scenes": %s,\n' \
    "$STEPS" "$BATCH" "$LR" "$SEED" "$SYNTH"
  printf ' "train_scenes": %s,\n' "$(wc -l < "$WORK/synth/train.jsonl")"
  printf ' "final_loss": %s,\n' "$(tail -n 1 "$WORK/run/metrics.jsonl" | sed -E 's/.*"loss": ?([-0-9.e+]+).*/\1/')"
  printf ' "synth_base_test": %s}\n' "$(cat "$WORK/score_test.json")"
} > "$OUT/mmtune_pretrain.json"
sed -E 's/.*"cider_d": ([0-9.]+).*"bleu_4": ([0-9.]+), "rouge_l": ([0-9.]+).*/pretrain-caption: CIDEr-D \1, BLEU-4 \2, ROUGE-L \3/' \
  "$WORK/score_test.json"
echo "pretrain-caption: wrote $OUT ($(du -k "$OUT/model.safetensors" | cut -f1) KiB of weights)"
