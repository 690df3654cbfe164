#!/usr/bin/env bash
# The medical example (issue 15, docs/medical.md): report-style captions of chest radiographs
# read from DICOM files. `mmtune synth --domain xray` draws the studies (a nodule by side,
# zone and size; a pleural effusion by side and size; an enlarged heart; or nothing) and
# stores them in four DICOM encodings; the embedded default captioner (pretrained on shape
# scenes only) is fine-tuned on the training reports, fully and with LoRA on both towers,
# then captions the test studies greedily, free and constrained to the reports' 28 words
# (`--allowed-words vocabulary.txt`). Scores: CIDEr-D / BLEU-4 / ROUGE-L (pycocoevalcap's
# numbers, `mmtune eval`) and what a reader of the report cares about: is the finding right,
# and for a nodule or an effusion its side, zone and size. Writes bench/results/medical.md
# and medical_raw.jsonl, then the workflows page (docs/workflows.md).
# STEPS, LORA_STEPS, LR, LORA_LR, TRAIN, TEST, MODEL, BIN and WORK override. About 12 minutes
# on 2 idle cores.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/mmtune}
MODEL=${MODEL:-models/mmtune-git-tiny}
TRAIN=${TRAIN:-3000}
TEST=${TEST:-300}
STEPS=${STEPS:-1500}
LR=${LR:-1e-3}
LORA_STEPS=${LORA_STEPS:-1500}
LORA_LR=${LORA_LR:-3e-3}
LORA_TARGETS='.*\.(query|key|value|dense|q_proj|k_proj|v_proj|out_proj|fc1|fc2)|output|.*visual_projection\.0'
WORK=${WORK:-runs/bench-medical}
out=bench/results
mkdir -p "$out"
case "$WORK" in
  "" | / | . | .. | "$HOME") echo "bench medical: refusing to clear WORK='$WORK'" >&2; exit 2 ;;
esac
rm -rf "$WORK"
mkdir -p "$WORK"
start=$(date +%s)

echo "bench medical: data ($TRAIN training and $TEST test studies, DICOM)"
"$BIN" synth --domain xray --out "$WORK/data" --split-sizes "$TRAIN,0,$TEST" --size 64 --seed 1 >/dev/null
VOCAB="$WORK/data/vocabulary.txt"
raw="$out/medical_raw.jsonl"
: > "$raw"

# Reports of the tiny captioner's vocabulary run to about 25 WordPiece tokens (its vocabulary
# was built from shape captions, so "effusion" is spelt in characters): eval's default of 20
# new tokens would cut them, mid-word even with --allowed-words (docs/generation.md).
evaluate() { # name, decoding (free|allowed), model folder, [more eval flags]
  local name=$1 decoding=$2 model=$3 flags=()
  shift 3
  [ "$decoding" = allowed ] && flags=(--allowed-words "$VOCAB")
  "$BIN" eval --model "$model" "$@" --data "$WORK/data/test_coco.json" --batch-size 32 --samples "$TEST" \
    --max-new-tokens 30 "${flags[@]}" > "$WORK/eval-$name-$decoding.json"
  python3 tools/bench/medical_scores.py "$WORK/eval-$name-$decoding.json" "$VOCAB" "$name" "$decoding" >> "$raw"
}
trained() { # name, method, train output
  python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(json.dumps({'kind': 'train', 'model': sys.argv[2], 'method': sys.argv[3], 'steps': r['steps'], 'seconds': r['seconds'], 'trainable_params': r['trainable_params'], 'final_loss': r['final_loss']}))" \
    "$3" "$1" "$2" >> "$raw"
}

echo "bench medical: the base captioner"
evaluate base free "$MODEL"
evaluate base allowed "$MODEL"

echo "bench medical: full fine-tuning, $STEPS steps of 32 reports, lr $LR"
"$BIN" train --model "$MODEL" --data "$WORK/data/train_coco.json" --method full --steps "$STEPS" --batch-size 32 \
  --lr "$LR" --seed 7 --save-every "$STEPS" --quiet --out "$WORK/full" > "$WORK/full.json"
trained full full "$WORK/full.json"
evaluate full free "$WORK/full/adapter"
evaluate full allowed "$WORK/full/adapter"

echo "bench medical: LoRA r 16 on both towers and the projection, $LORA_STEPS steps, lr $LORA_LR"
"$BIN" train --model "$MODEL" --data "$WORK/data/train_coco.json" --method lora --targets-regex "$LORA_TARGETS" \
  --lora-r 16 --lora-alpha 32 --steps "$LORA_STEPS" --batch-size 32 --lr "$LORA_LR" --seed 7 --save-every "$LORA_STEPS" \
  --quiet --out "$WORK/lora" > "$WORK/lora.json"
trained lora lora "$WORK/lora.json"
evaluate lora free "$MODEL" --adapter "$WORK/lora/adapter"
evaluate lora allowed "$MODEL" --adapter "$WORK/lora/adapter"

echo "bench medical: caption four test studies from their DICOM files"
"$BIN" caption --model "$WORK/full/adapter" --allowed-words "$VOCAB" --json \
  --image "$WORK/data/images/test/000000.dcm" --image "$WORK/data/images/test/000001.dcm" \
  --image "$WORK/data/images/test/000002.dcm" --image "$WORK/data/images/test/000003.dcm" > "$WORK/captions.jsonl"
python3 - "$WORK" "$raw" <<'PY'
import json, os, sys
work, raw = sys.argv[1:3]
refs = {}
for line in open(os.path.join(work, "data", "test.jsonl")):
    r = json.loads(line)
    refs[os.path.basename(r["image_path"])] = r["text"]
with open(raw, "a") as f:
    for line in open(os.path.join(work, "captions.jsonl")):
        c = json.loads(line)
        name = os.path.basename(c["image"])
        f.write(json.dumps({"kind": "example", "image": "images/test/" + name, "caption": c["caption"],
                            "reference": refs[name]}) + "\n")
PY

total=$(( $(date +%s) - start ))
python3 tools/bench/medical_scores.py --table "$raw" "$out/medical.md" "$MODEL" "$TRAIN" "$TEST" "$STEPS" "$LR" \
  "$LORA_STEPS" "$LORA_LR" "$total"
python3 tools/bench/workflows_page.py
rm -rf "$WORK/full" "$WORK/lora"
echo "bench medical: wrote $out/medical.md in $total s"
