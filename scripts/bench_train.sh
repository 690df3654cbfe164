#!/usr/bin/env bash
# Training-step benchmark (issues 3 and 13): mmtune vs PyTorch + PEFT on a random ViT-B/32-sized
# CLIP, batch 32: seconds per step and peak RSS of full, LoRA, IA3 and (when this mmtune has
# them) LoRA on an int8 base, QLoRA (NF4 base), QLoRA + adamw8bit, QLoRA + adamw8bit +
# checkpointing and QLoRA + selective recomputation (--recompute); texts padded to 77
# (padding="max_length") and to the longest row (10 tokens) in both engines. The runs are
# interleaved, PyTorch and mmtune alternating, the order rotating by round. Results:
# bench/results/train.md and train_raw.jsonl (tools/bench/train_table.py).
# Called by scripts/bench.sh (make bench); ROUNDS, STEPS, BATCH, RESULTS override.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/mmtune}
ROUNDS=${ROUNDS:-2}
STEPS=${STEPS:-3}
BATCH=${BATCH:-32}
out=${RESULTS:-bench/results}
mkdir -p "$out"
unset OPENBLAS_CORETYPE
export OMP_WAIT_POLICY=PASSIVE
threads=$(nproc)
raw="$out/train_raw.jsonl"
: > "$raw"
help=$("$BIN" bench train --help)
has() { grep -q -- "$1" <<< "$help"; }

# Units: "ENGINE CONFIG PAD FLAGS...". PAD 77: padding="max_length"; 10: padded to the longest
# row (BOS + 8 tokens + EOS). mmtune trims every row to the EOS it pools, so its two paddings do
# the same work; PyTorch runs every position it is given.
units=(
  "pytorch lora 77 --methods lora"
  "mmtune lora 77 --method lora"
  "pytorch lora 10 --methods lora --pad longest"
  "mmtune lora 10 --method lora --text-len 10"
  "pytorch ia3 77 --methods ia3"
  "mmtune ia3 77 --method ia3"
  "pytorch full 77 --methods full"
  "mmtune full 77 --method full"
  "pytorch full 10 --methods full --pad longest"
  "mmtune full 10 --method full --text-len 10"
  "mmtune lora+ckpt 77 --method lora --checkpointing"
  "mmtune full+ckpt 77 --method full --checkpointing"
)
if has --quantize-base; then
  units+=(
    "mmtune lora+int8 77 --method lora --quantize-base int8"
    "mmtune qlora 77 --method lora --quantize-base nf4"
    "mmtune qlora 10 --method lora --quantize-base nf4 --text-len 10"
  )
  if has --optim; then
    units+=(
      "mmtune qlora+adamw8bit 77 --method lora --quantize-base nf4 --optim adamw8bit"
      "mmtune qlora+adamw8bit+ckpt 77 --method lora --quantize-base nf4 --optim adamw8bit --checkpointing"
    )
  fi
  if has --recompute; then
    units+=(
      "mmtune qlora+recompute 77 --method lora --quantize-base nf4 --recompute"
      "mmtune qlora+recompute 10 --method lora --quantize-base nf4 --recompute --text-len 10"
    )
  fi
else
  echo "bench train: this mmtune has no 'bench train --quantize-base': the quantized rows are left out"
fi

# CPU pressure (/proc/pressure/cpu "some" total, microseconds): how long other work kept a
# runnable task waiting; per unit (stall_pct) and for the whole run.
stalled() { awk '/^some/ {sub("total=", "", $5); print $5}' /proc/pressure/cpu 2>/dev/null || echo 0; }
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
stall_start=$(stalled)
t_start=$(date +%s)
run_unit() { # round ENGINE CONFIG PAD FLAGS...
  local round=$1 engine=$2 config=$3 pad=$4 s0 t0 res err
  shift 4
  s0=$(stalled)
  t0=$(date +%s%N)
  err=$(mktemp)
  if [ "$engine" = pytorch ]; then
    res=$(python3 tools/bench/torch_train.py "$@" --batch "$BATCH" --steps "$STEPS" --threads "$threads" 2> "$err" || true)
  else
    res=$(OMP_NUM_THREADS=$threads "$BIN" bench train "$@" --batch "$BATCH" --steps "$STEPS" --json 2> "$err" || true)
  fi
  local wall_ns=$(( $(date +%s%N) - t0 ))
  local pct=$(( ($(stalled) - s0) * 100000 / (wall_ns > 0 ? wall_ns : 1) ))
  if ! grep -q '^{' <<< "$res"; then # no measurement: keep the error's last line for the table
    res=$(python3 -c 'import json, sys; print(json.dumps({"error": (open(sys.argv[1]).read().strip().splitlines() or ["no output"])[-1][:300]}))' "$err")
  fi
  rm -f "$err"
  grep '^{' <<< "$res" | sed "s/^{/{\"engine\":\"$engine\",\"config\":\"$config\",\"text_pad\":$pad,\"round\":$round,\"stall_pct\":$pct,/" >> "$raw" || true
}
n=${#units[@]}
for round in $(seq "$ROUNDS"); do
  for k in $(seq 0 $((n - 1))); do
    # Rotate by round: each unit starts at another point of the machine's load.
    u=${units[$(( (k + (round - 1) * 5) % n ))]}
    echo "bench train: round $round/$ROUNDS: $u"
    # shellcheck disable=SC2086
    run_unit "$round" $u
  done
done
wall=$(($(date +%s) - t_start))
stall_pct=$(( ($(stalled) - stall_start) / 10000 / (wall > 0 ? wall : 1) ))
echo "{\"engine\": \"meta\", \"wall_s\": $wall, \"cpu_stall_pct\": $stall_pct, \"load_before\": \"$load_before\", \"load_after\": \"$(cut -d' ' -f1-3 /proc/loadavg)\", \"threads\": $threads, \"rounds\": $ROUNDS, \"steps\": $STEPS, \"finished_utc\": \"$(date -u '+%Y-%m-%d %H:%M')\", \"mmtune_commit\": \"$(git describe --always --dirty)\"}" >> "$raw"

python3 tools/bench/train_table.py "$raw" "$out/train.md"
