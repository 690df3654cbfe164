#!/usr/bin/env bash
# `make bench`: embedding throughput (issue 13's table): PyTorch fp32, PyTorch dynamic int8
# (torch.ao quantize_dynamic), ONNX Runtime fp32 and dynamic int8 on the exported model, mmtune
# fp32 and int8, interleaved engine by engine in each round (the order rotating by round),
# ratios and the issue's goals to bench/results/embed.md (+ raw JSON lines). Then the other
# benchmarks (SKIP_TRAIN=1 etc. leave them out). Installs the Python reference packages with pip
# when they are missing (tools/requirements.txt); mmtune itself needs none of them.
# ROUNDS, ITERS, BATCHES, ENGINES (a subset of: pytorch pytorch-int8 ort ort-int8 mmtune
# mmtune-int8) override.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/mmtune}
ROUNDS=${ROUNDS:-3}
ITERS=${ITERS:-5}
BATCHES=${BATCHES:-1,32}
ENGINES=${ENGINES:-pytorch pytorch-int8 ort ort-int8 mmtune mmtune-int8}
out=${RESULTS:-bench/results}
mkdir -p "$out"

if ! python3 -c "import torch, transformers, onnxruntime, onnx" 2>/dev/null; then
  echo "bench: installing the PyTorch / ONNX Runtime reference (tools/requirements.txt)"
  python3 -m pip install -q -r tools/requirements.txt
fi

# The references at their best on this machine: the environment's OPENBLAS_CORETYPE=Haswell
# halves OpenBLAS speed. OpenMP engines (PyTorch, mmtune) run with sleeping (PASSIVE) and
# spinning (ACTIVE) worker threads, ORT with its spinning on and off; the fastest of each is
# kept. ONNX Runtime: intra-op threads = nproc, all graph optimizations (tools/bench/torch_embed.py).
unset OPENBLAS_CORETYPE
export OMP_WAIT_POLICY=PASSIVE
threads=$(nproc)
raw="$out/embed_raw.jsonl"
: > "$raw"
mmtune_int8=0
if grep -q -- '--int8' <<< "$("$BIN" --help)"; then mmtune_int8=1; fi

# The ONNX exports (fp32, int8 per-tensor and per-channel) once, untimed; cached in /tmp.
case " $ENGINES " in *" ort"*) python3 tools/bench/torch_embed.py --export-only ;; esac

# CPU pressure (/proc/pressure/cpu "some" total, microseconds): how long other work kept a
# runnable task waiting; recorded per engine call (stall_pct) and for the whole run.
stalled() { awk '/^some/ {sub("total=", "", $5); print $5}' /proc/pressure/cpu 2>/dev/null || echo 0; }
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
stall_start=$(stalled)
t_start=$(date +%s)
run_engine() { # round engine [OMP_WAIT_POLICY]
  local round=$1 engine=$2 wait=${3:-} s0 t0 res tag=""
  s0=$(stalled)
  t0=$(date +%s%N)
  [ -n "$wait" ] && tag="\"omp_wait\":\"$wait\","
  case $engine in
    pytorch) res=$(OMP_WAIT_POLICY=$wait python3 tools/bench/torch_embed.py --engine torch --batch "$BATCHES" --iters "$ITERS" --threads "$threads") ;;
    pytorch-int8) res=$(OMP_WAIT_POLICY=$wait python3 tools/bench/torch_embed.py --engine torch-int8 --batch "$BATCHES" --iters "$ITERS" --threads "$threads") ;;
    ort) res=$(python3 tools/bench/torch_embed.py --engine ort --ort-spin both --batch "$BATCHES" --iters "$ITERS" --threads "$threads") ;;
    ort-int8) res=$(python3 tools/bench/torch_embed.py --engine ort-int8 --ort-spin both --batch "$BATCHES" --iters "$ITERS" --threads "$threads") ;;
    mmtune) res=$(OMP_WAIT_POLICY=$wait OMP_NUM_THREADS=$threads "$BIN" bench embed --batch "$BATCHES" --iters "$ITERS" --json) ;;
    mmtune-int8)
      [ "$mmtune_int8" = 1 ] || return 0
      res=$(OMP_WAIT_POLICY=$wait OMP_NUM_THREADS=$threads "$BIN" bench embed --int8 --batch "$BATCHES" --iters "$ITERS" --json) ;;
  esac
  local wall_ns=$(( $(date +%s%N) - t0 ))
  local pct=$(( ($(stalled) - s0) * 100000 / (wall_ns > 0 ? wall_ns : 1) ))
  printf '%s\n' "$res" | grep '^{' | sed "s/^{/{\"engine\":\"$engine\",\"round\":$round,\"stall_pct\":$pct,$tag/" >> "$raw"
}
read -r -a engines <<< "$ENGINES"
n=${#engines[@]}
for round in $(seq "$ROUNDS"); do
  for k in $(seq 0 $((n - 1))); do # rotate the order each round: no engine always first or last
    engine=${engines[$(( (k + round - 1) % n ))]}
    case $engine in
      ort*) echo "bench embed: round $round/$ROUNDS, $engine"
            run_engine "$round" "$engine" ;;
      *) for wait in PASSIVE ACTIVE; do # OpenMP engines: threads sleeping or spinning between regions
           echo "bench embed: round $round/$ROUNDS, $engine, OMP_WAIT_POLICY=$wait"
           run_engine "$round" "$engine" "$wait"
         done ;;
    esac
  done
done
wall=$(($(date +%s) - t_start))
stall_pct=$(( ($(stalled) - stall_start) / 10000 / (wall > 0 ? wall : 1) ))
echo "{\"engine\": \"meta\", \"wall_s\": $wall, \"cpu_stall_pct\": $stall_pct, \"load_before\": \"$load_before\", \"load_after\": \"$(cut -d' ' -f1-3 /proc/loadavg)\", \"threads\": $threads, \"rounds\": $ROUNDS, \"iters\": $ITERS, \"mmtune_int8\": $mmtune_int8, \"finished_utc\": \"$(date -u '+%Y-%m-%d %H:%M')\", \"mmtune_commit\": \"$(git describe --always --dirty)\"}" >> "$raw"

python3 tools/bench/embed_table.py "$raw" "$out/embed.md"

# Training steps (issue 3): its own interleaved rounds and table.
if [ "${SKIP_TRAIN:-0}" != 1 ]; then
  bash scripts/bench_train.sh
fi

# Many adapters over one base (issue 10): bench/results/adapters.md
if [ "${SKIP_ADAPTERS:-0}" != 1 ]; then
  bash scripts/bench_adapters.sh
fi

# Data loading: does training wait on data? (bench/results/loader.md)
if [ "${SKIP_LOADER:-0}" != 1 ]; then
  bash scripts/bench_loader.sh
fi

# GIT captioning vs PyTorch + transformers (issue 11): bench/results/caption.md
if [ "${SKIP_CAPTION:-0}" != 1 ]; then
  bash scripts/bench_caption.sh
fi

# Data-parallel scaling, 1 -> 2 ranks, vs PyTorch DDP (issue 14): bench/results/dist.md
if [ "${SKIP_DIST:-0}" != 1 ]; then
  bash scripts/bench_dist.sh
fi

# Pruning and distillation (issue 15): size, speed and quality before and after, bench/results/distill.md
if [ "${SKIP_DISTILL:-0}" != 1 ]; then
  bash scripts/bench_distill.sh
fi

# Continual learning, data curation and the medical example (issue 15): bench/results/
# continual.md, curate.md, medical.md
if [ "${SKIP_CONTINUAL:-0}" != 1 ]; then
  bash scripts/bench_continual.sh
fi
if [ "${SKIP_CURATE:-0}" != 1 ]; then
  bash scripts/bench_curate.sh
fi
if [ "${SKIP_MEDICAL:-0}" != 1 ]; then
  bash scripts/bench_medical.sh
fi

# Serving over HTTP (issue 12): mmtune serve vs a PyTorch + FastAPI server, bench/results/serve.md
if [ "${SKIP_SERVE:-0}" != 1 ]; then
  bash scripts/bench_serve.sh
fi

# The workflows results page (issue 15): docs/workflows.md from the raw results of
# bench_distill.sh, bench_continual.sh, bench_curate.sh and bench_medical.sh
# (tools/bench/workflows_page.py).
python3 tools/bench/workflows_page.py
