#!/usr/bin/env bash
# `make demo`: the main job on the model that ships with the repo.
# Until the embedded default model exists (a later issue), this runs zero-shot
# classification and embedding with the tiny random CLIP from the test fixtures, whose
# outputs are checked against transformers in the test suite. Its weights are random, so
# the probabilities show the pipeline working, not a trained model.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=build/mmtune
MODEL=tests/fixtures/clip/tiny-a
IMAGES=tests/fixtures/clip/images

echo "demo: no embedded default model yet; using the tiny random test model $MODEL"
echo "demo: (its weights are random: this shows the pipeline, matched to transformers to 1e-4)"
echo
echo "\$ $BIN inspect --model $MODEL"
"$BIN" inspect --model "$MODEL"
echo
echo "\$ $BIN classify --model $MODEL --image $IMAGES/chelsea.jpg --image $IMAGES/astronaut.png --labels \"cat,astronaut,rocket,coffee\""
"$BIN" classify --model "$MODEL" --image "$IMAGES/chelsea.jpg" --image "$IMAGES/astronaut.png" \
  --labels "cat,astronaut,rocket,coffee"
echo
echo "\$ $BIN embed --model $MODEL --image $IMAGES/coffee_portrait.jpg --text \"a cup of coffee\" | cut -c1-160"
"$BIN" embed --model "$MODEL" --image "$IMAGES/coffee_portrait.jpg" --text "a cup of coffee" | cut -c1-160

# Fine-tuning: a LoRA adapter on five captioned photos, then retrieval before and after.
run=runs/demo-tiny
rm -rf "$run"
mkdir -p "$run"
data="$run/pairs.jsonl"
here=$(pwd)
for pair in "chelsea.jpg|a cat sitting on a chair" "astronaut.png|an astronaut in a white suit" \
            "camera_gray.png|a man holding a camera" "coffee_portrait.jpg|a cup of hot coffee" \
            "rocket_rgba.png|a rocket on the launch pad"; do
  printf '{"image_path": "%s/%s/%s", "text": "%s"}\n' "$here" "$IMAGES" "${pair%%|*}" "${pair#*|}" >> "$data"
done
echo
echo "\$ $BIN eval --model $MODEL --data $data            # before"
"$BIN" eval --model "$MODEL" --data "$data"
echo
echo "\$ $BIN train --model $MODEL --data $data --method lora --targets q_proj,v_proj,fc1 --steps 40 --batch-size 5 --lr 1e-2 --out $run"
"$BIN" train --model "$MODEL" --data "$data" --method lora --targets q_proj,v_proj,fc1 --steps 40 --batch-size 5 \
  --lr 1e-2 --warmup-steps 0 --out "$run"
echo
echo "\$ $BIN eval --model $MODEL --data $data --adapter $run/adapter   # after"
"$BIN" eval --model "$MODEL" --data "$data" --adapter "$run/adapter"
echo
echo "demo: adapter (PEFT format) in $run/adapter, metrics in $run/metrics.jsonl"
