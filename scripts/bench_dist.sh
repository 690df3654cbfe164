#!/usr/bin/env bash
# Data-parallel scaling benchmark (issue 14): LoRA training of a random ViT-B/32-sized CLIP on
# 1 rank and on 2 ranks (mpirun), one core per rank (OMP_NUM_THREADS=1), the same per-rank batch,
# so 2 ranks train on twice the examples per step: efficiency = images/s at 2 ranks / (2 x images/s
# at 1 rank). One process with 2 threads for context. PyTorch + PEFT under DistributedDataParallel
# (gloo, 127.0.0.1 only; tools/bench/torch_ddp.py) on the same machine in the same rounds. Full
# fine-tuning (mmtune, 1 and 2 ranks, and 2 ranks with --overlap-comm; fewer steps: STEPS_FULL,
# SKIP_FULL) for a 605 MB all-reduce.
# Also the raw all-reduce of mmtune's communicator (`mmtune bench allreduce`) and of gloo at the
# LoRA gradient's size and at 1, 16 and 64 MB.
#
# mmtune trains with `mmtune train` on 64 synthetic 224 px pairs (mmtune synth) and a random
# snapshot of openai/clip-vit-base-patch32's shape (mmtune init; a vocabulary padded to 49408
# entries, so all 151,277,313 parameters are there); per-step times and the all-reduce's seconds
# ("comm_s") come from rank 0's metrics.jsonl. Both are made once under WORK and reused.
# The units are interleaved, the order rotating by round; the first SKIP steps of each process are
# left out; tools/bench/dist_table.py takes the medians over rounds and writes
# bench/results/dist.md from dist_raw.jsonl. Called by scripts/bench.sh (make bench);
# ROUNDS, STEPS, SKIP, STEPS_FULL, SKIP_FULL, BATCH, TEXT_LEN (PyTorch's text positions), SIZES_MB,
# RESULTS, WORK override. QUIET_WAIT=S: before each unit wait up to S seconds for the machine to be
# quiet (other work's CPU pressure over the last 10 s under 10%; default 0: no waiting).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/mmtune}
ROUNDS=${ROUNDS:-3}
STEPS=${STEPS:-7}
SKIP=${SKIP:-3}
STEPS_FULL=${STEPS_FULL:-4}
QUIET_WAIT=${QUIET_WAIT:-0}
SKIP_FULL=${SKIP_FULL:-2}
BATCH=${BATCH:-16}
TEXT_LEN=${TEXT_LEN:-16}
# The LoRA gradient (491,520 floats: r 8 on q_proj, v_proj of 12 + 12 layers) is timed first.
SIZES_MB=${SIZES_MB:-1.96608,1,16,64}
WORK=${WORK:-/tmp/mmtune-bench-dist-$(id -u)}
out=${RESULTS:-bench/results}
mkdir -p "$out" "$WORK"
unset OPENBLAS_CORETYPE
export OMP_WAIT_POLICY=PASSIVE
MPIRUN=${MPIRUN:-mpirun}
# Every rank may use any core (as PyTorch's processes may): no binding, for both engines.
mpi=("$MPIRUN" --allow-run-as-root --oversubscribe --bind-to none -x OMP_WAIT_POLICY)
raw="$out/dist_raw.jsonl"
bin=$(realpath "$BIN")

if ! command -v "$MPIRUN" > /dev/null; then
  echo "bench dist: no $MPIRUN: install OpenMPI (scripts/install-deps.sh)" >&2
  exit 1
fi
if ! python3 -c "import torch, transformers, peft" 2> /dev/null; then
  echo "bench dist: installing the PyTorch reference (tools/requirements.txt)"
  python3 -m pip install -q -r tools/requirements.txt
fi

# The model and the data, once: a ViT-B/32-shaped CLIP (CLIPConfig's defaults) with the embedded
# model's BPE merges and a vocabulary padded with unused tokens to CLIP's 49408 (BOS 49406, EOS 49407).
model="$WORK/model" data="$WORK/data"
if [ ! -f "$model/model.safetensors" ]; then
  echo "bench dist: writing a random ViT-B/32-sized CLIP to $model"
  rm -rf "$WORK/tok" && mkdir -p "$WORK/tok"
  cp models/mmtune-clip-tiny/{vocab.json,merges.txt,tokenizer_config.json,special_tokens_map.json} "$WORK/tok/"
  python3 - "$WORK/tok/vocab.json" << 'EOF'
import json, sys
vocab = json.load(open(sys.argv[1]))
special = ["<|startoftext|>", "<|endoftext|>"]
out = {t: i for t, i in sorted(vocab.items(), key=lambda kv: kv[1]) if t not in special}
out.update({f"zqxpad{i}</w>": i for i in range(len(out), 49406)})
out.update({special[0]: 49406, special[1]: 49407})
json.dump(out, open(sys.argv[1], "w"), ensure_ascii=False)
EOF
  "$BIN" init --out "$model" --overwrite --tokenizer "$WORK/tok" --vision-width 768 --vision-layers 12 --vision-heads 12 \
    --patch 32 --image-size 224 --text-width 512 --text-layers 12 --text-heads 8 --projection-dim 512 --context 77 --seed 0
fi
if [ ! -f "$data/train.jsonl" ]; then
  "$BIN" synth --out "$data" --split-sizes 64,0,0 --size 224 --seed 0 > /dev/null
fi

# CPU pressure (/proc/pressure/cpu "some" total, microseconds): how long other work kept a
# runnable task waiting; per unit (stall_pct) and for the whole run.
stalled() { awk '/^some/ {sub("total=", "", $5); print $5}' /proc/pressure/cpu 2>/dev/null || echo 0; }
: > "$raw"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
stall_start=$(stalled)
t_start=$(date +%s)

# Up to QUIET_WAIT seconds until the last 10 s had under 10% CPU pressure.
wait_quiet() {
  local waited=0
  while [ "$waited" -lt "$QUIET_WAIT" ] && awk '/^some/ {sub("avg10=", "", $2); exit !($2 >= 10)}' /proc/pressure/cpu 2>/dev/null; do
    sleep 5
    waited=$((waited + 5))
  done
  waited_total=$((waited_total + waited))
  [ "$waited" = 0 ] || echo "bench dist: waited ${waited} s for a quiet machine"
}

# One unit: ENGINE METHOD RANKS THREADS (a training run), or ENGINE allreduce.
run_unit() { # round engine lora|full|allreduce [ranks threads]
  local round=$1 engine=$2 method=$3 what=${4:-2} threads=${5:-1} s0 t0 res err run steps=$STEPS skip=$SKIP
  [ "$method" = full ] && steps=$STEPS_FULL skip=$SKIP_FULL
  s0=$(stalled)
  t0=$(date +%s%N)
  err=$(mktemp)
  run="$WORK/run"
  case "$engine/$method" in
    mmtune/allreduce)
      res=$(OMP_NUM_THREADS=1 "${mpi[@]}" -x OMP_NUM_THREADS -np 2 "$bin" bench allreduce --sizes-mb "$SIZES_MB" --iters 10 --json 2> "$err" || true) ;;
    pytorch/allreduce)
      res=$(python3 tools/bench/torch_ddp.py --nproc 2 --allreduce-mb "$SIZES_MB" --iters 10 2> "$err" || true) ;;
    mmtune/* | mmtune-overlap/*)
      local launch=() overlap=()
      [ "$engine" = mmtune-overlap ] && overlap=(--overlap-comm)
      [ "$what" = 1 ] || launch=("${mpi[@]}" -x OMP_NUM_THREADS -np "$what")
      rm -rf "$run"
      if OMP_NUM_THREADS=$threads "${launch[@]}" "$bin" train --model "$model" --data "$data/train.jsonl" --method "$method" \
          --steps "$steps" --batch-size "$BATCH" --out "$run" --overwrite --seed 0 "${overlap[@]}" > "$WORK/result.json" 2> "$err"; then
        res=$(python3 tools/bench/dist_table.py --metrics "$run/metrics.jsonl" --result "$WORK/result.json" --ranks "$what" \
          --threads "$threads" --batch "$BATCH" --skip "$skip" 2>> "$err" || true)
      else
        res=""
      fi ;;
    pytorch/*)
      res=$(python3 tools/bench/torch_ddp.py --nproc "$what" --threads "$threads" --batch "$BATCH" --text-len "$TEXT_LEN" \
        --steps "$STEPS" --skip "$SKIP" 2> "$err" || true) ;;
  esac
  local wall_ns=$(( $(date +%s%N) - t0 ))
  local pct=$(( ($(stalled) - s0) * 100000 / (wall_ns > 0 ? wall_ns : 1) ))
  if ! grep -q '^{' <<< "$res"; then # no measurement: keep the error's last line for the table
    res=$(python3 -c 'import json, sys; print(json.dumps({"ranks": sys.argv[2], "threads": int(sys.argv[3]), "error": (open(sys.argv[1]).read().strip().splitlines() or ["no output"])[-1][:300]}))' "$err" "$what" "$threads")
  fi
  rm -f "$err"
  grep '^{' <<< "$res" | sed "s/^{/{\"unit\":\"$engine\",\"method\":\"$method\",\"round\":$round,\"stall_pct\":$pct,\"wall_s\":$((wall_ns / 1000000000)),/" >> "$raw" || true
}

units=(
  "mmtune lora 1 1"
  "pytorch lora 1 1"
  "mmtune lora 2 1"
  "pytorch lora 2 1"
  "mmtune lora 1 2"
  "mmtune full 1 1"
  "mmtune full 2 1"
  "mmtune-overlap full 2 1"
  "mmtune allreduce"
  "pytorch allreduce"
)
n=${#units[@]}
waited_total=0
for round in $(seq "$ROUNDS"); do
  for k in $(seq 0 $((n - 1))); do
    # Rotate by round (three units at a time): each unit meets the machine at another moment.
    u=${units[$(( (k + (round - 1) * 3) % n ))]}
    wait_quiet
    echo "bench dist: round $round/$ROUNDS: $u"
    # shellcheck disable=SC2086
    run_unit "$round" $u
  done
done
rm -rf "$WORK/run" "$WORK/result.json" # the last run's checkpoint (2.4 GB for full fine-tuning); model and data stay
wall=$(($(date +%s) - t_start))
stall_pct=$(( ($(stalled) - stall_start) / 10000 / (wall > 0 ? wall : 1) ))
echo "{\"unit\": \"meta\", \"wall_s\": $wall, \"cpu_stall_pct\": $stall_pct, \"load_before\": \"$load_before\", \"load_after\": \"$(cut -d' ' -f1-3 /proc/loadavg)\", \"rounds\": $ROUNDS, \"steps\": $STEPS, \"skip\": $SKIP, \"steps_full\": $STEPS_FULL, \"skip_full\": $SKIP_FULL, \"quiet_wait_s\": $waited_total, \"batch\": $BATCH, \"text_len\": $TEXT_LEN, \"mpirun\": \"$("$MPIRUN" --version 2>/dev/null | head -1)\", \"finished_utc\": \"$(date -u '+%Y-%m-%d %H:%M')\", \"mmtune_commit\": \"$(git describe --always --dirty)\"}" >> "$raw"

python3 tools/bench/dist_table.py "$raw" "$out/dist.md"
