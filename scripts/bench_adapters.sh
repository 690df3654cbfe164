#!/usr/bin/env bash
# Part of `make bench`: many LoRA adapters over one base (issue 10), mmtune alone (PyTorch +
# PEFT has no mixed-adapter batches to compare with). `mmtune bench adapters` interleaves the
# variants in every round; this writes bench/results/adapters.md and the raw JSON lines.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/mmtune}
ROUNDS=${ROUNDS:-3}
out=bench/results
mkdir -p "$out"
raw="$out/adapters_raw.jsonl"
# fp32 with 8 adapters in the mixed batch; then (INT8=1, the default) an int8 base (--int8:
# the adapters stay fp32 beside it) with 32, one per image: the case where each adapter's
# products are smallest next to the base's.
INT8=${INT8:-1}
tag() { python3 -c 'import json, sys
for l in sys.stdin:
    r = json.loads(l); r["precision"] = sys.argv[1]; print(json.dumps(r))' "$1"; }
OMP_NUM_THREADS=$(nproc) "$BIN" bench adapters --adapters 8 --batch 32 --rounds "$ROUNDS" --iters 2 --json | tag fp32 > "$raw"
if [ "$INT8" = 1 ]; then
  OMP_NUM_THREADS=$(nproc) "$BIN" bench adapters --int8 --adapters 32 --batch 32 --rounds "$ROUNDS" --iters 2 --json | tag int8 >> "$raw"
fi
python3 - "$raw" "$out/adapters.md" <<'PY'
import json, sys, subprocess, datetime
all_rows = list(map(json.loads, open(sys.argv[1])))
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
lines = ["# Many adapters over one base: image embedding (random ViT-B/32 CLIP, batch 32, fp32 and an int8 base)", "",
         f"Measured {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC on {cpu}, {subprocess.check_output(['nproc']).decode().strip()} cores "
         "by `mmtune bench adapters` (variants interleaved in each round, best round). LoRA r 8 on q_proj and v_proj "
         "of both towers; 'merged' is the base with no adapter, which is what a merged checkpoint computes. int8: "
         "`--int8`, the base's linears in int8 and each adapter in fp32 beside them (nothing merged into int8)."]
for prec in dict.fromkeys(r.get("precision", "fp32") for r in all_rows):
    rows = {r["variant"]: r for r in all_rows if r.get("precision", "fp32") == prec}
    ips = {k: v["images_per_s"] for k, v in rows.items()}
    lines += ["", f"## {prec}", "", "| variant | adapters in the batch | images/s |", "|---|---|---|"]
    for k in ("merged", "single", "mixed", "grouped"):
        lines.append(f"| {k} | {rows[k]['adapters']} | {ips[k]:.2f} |")
    lines += ["", f"- mixed batch / single adapter: {ips['mixed']/ips['single']:.3f} (goal >= 0.90)",
              f"- single unmerged adapter / merged: {ips['single']/ips['merged']:.3f} (goal >= 0.95)",
              f"- mixed batch / one call per adapter (grouped): {ips['mixed']/ips['grouped']:.3f}"]
open(sys.argv[2], "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
