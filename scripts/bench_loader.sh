#!/usr/bin/env bash
# Is training waiting on data? LoRA on the embedded default model, batch 32, 224x224 JPEGs
# decoded at every step (--cache-mb 0), with 0, 1 and 2 loader workers, with and without
# augmentation. From each run's metrics.jsonl: mean step time and mean data_wait_s over steps
# 6..STEPS (the first ones warm up). Writes bench/results/loader.md and loader_raw.jsonl.
# Called by scripts/bench.sh (make bench); STEPS and MODEL override.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/mmtune}
MODEL=${MODEL:-models/mmtune-clip-tiny}
STEPS=${STEPS:-30}
WORK=${WORK:-runs/bench-loader}
out=bench/results
mkdir -p "$out"
case "$WORK" in
  "" | / | . | .. | "$HOME") echo "bench loader: refusing to clear WORK='$WORK'" >&2; exit 2 ;;
esac
rm -rf "$WORK"
"$BIN" synth --out "$WORK/data" --size 224 --format jpg --count 400 --seed 3 >/dev/null
raw="$out/loader_raw.jsonl"
: > "$raw"
run() { # name, flags...
  local name=$1
  shift
  echo "bench loader: $name"
  rm -rf "$WORK/run"
  "$BIN" train --model "$MODEL" --data "$WORK/data/train.jsonl" --method lora --steps "$STEPS" --batch-size 32 \
    --cache-mb 0 --save-every 0 --quiet --out "$WORK/run" "$@" >/dev/null
  python3 - "$WORK/run/metrics.jsonl" "$name" "$*" >> "$raw" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])][5:]
t = [b["elapsed_s"] - a["elapsed_s"] for a, b in zip(rows, rows[1:])]
w = [r["data_wait_s"] for r in rows[1:]]
print(json.dumps({"name": sys.argv[2], "flags": sys.argv[3], "steps": len(t),
                  "step_ms": 1000 * sum(t) / len(t), "wait_ms": 1000 * sum(w) / len(w)}))
PY
}
aug=(--augment-crop --augment-flip --augment-jitter 0.3)
run "0 workers (synchronous)" --loader-workers 0
run "1 worker" --loader-workers 1
run "2 workers (default)" --loader-workers 2
run "0 workers, crop + flip + jitter 0.3" --loader-workers 0 "${aug[@]}"
run "2 workers, crop + flip + jitter 0.3" --loader-workers 2 "${aug[@]}"

python3 - "$raw" "$out/loader.md" "$MODEL" "$STEPS" <<'PY'
import json, os, subprocess, sys, datetime
raw, md, model, steps = sys.argv[1:5]
rows = [json.loads(l) for l in open(raw)]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
nproc = subprocess.check_output(["nproc"]).decode().strip()
out = ["# Is training waiting on data?", "",
       f"Made by scripts/bench_loader.sh (`make bench`) {datetime.datetime.utcfromtimestamp(os.path.getmtime(raw)):%Y-%m-%d %H:%M} UTC "
       f"on {cpu}, {nproc} cores. LoRA on {model}, batch 32, 320 synthetic 224x224 JPEGs decoded at every step "
       f"(`--cache-mb 0`); means over steps 6-{steps} of metrics.jsonl (`data_wait_s`: the time a step waited for its batch).", "",
       "| loading | step | waiting on data |", "|---|---|---|"]
for r in rows:
    out.append(f"| {r['name']} | {r['step_ms']:.1f} ms | {r['wait_ms']:.1f} ms ({100 * r['wait_ms'] / r['step_ms']:.0f}%) |")
open(md, "w").write("\n".join(out) + "\n")
print("\n".join(out))
PY
