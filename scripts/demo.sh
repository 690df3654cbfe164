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
