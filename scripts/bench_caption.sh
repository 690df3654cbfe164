#!/usr/bin/env bash
# GIT captioning benchmark (issue 11): mmtune vs PyTorch + transformers (+ PEFT) on a random
# git-base-sized GitForCausalLM that tools/bench/make_git_base.py writes to a temporary folder
# (~700 MB, deleted at the end). Caption tokens/s with the KV cache at BATCHES x BEAMS, without
# it at NOCACHE_BATCHES x BEAMS (each step recomputes the whole sequence: slow), and a LoRA
# training step (r 8 on query, value; batch TRAIN_BATCH of 20-token captions). The engines
# alternate part by part in every round (which one goes first alternates too); the cached
# settings run ROUNDS rounds, the slow parts (no cache, training) the first SLOW_ROUNDS.
# Medians over rounds go to bench/results/caption.md, every measurement to caption_raw.jsonl.
# Called by scripts/bench.sh (make bench); the variables below override. TABLE_ONLY=1 rewrites
# the table from the existing raw file without measuring.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/mmtune}
ROUNDS=${ROUNDS:-3}
SLOW_ROUNDS=${SLOW_ROUNDS:-1}
ITERS=${ITERS:-1}
WARMUP=${WARMUP:-1}
NEW_TOKENS=${NEW_TOKENS:-20}
BATCHES=${BATCHES:-1,8}
BEAMS=${BEAMS:-1,3}
NOCACHE_BATCHES=${NOCACHE_BATCHES:-1}
TRAIN_BATCH=${TRAIN_BATCH:-16}
STEPS=${STEPS:-2}
# OMP_WAIT_POLICY values the cached settings run under (each engine keeps its better median)
WAITS=${WAITS:-PASSIVE ACTIVE}
out=bench/results
mkdir -p "$out"

raw="$out/caption_raw.jsonl"
if [ "${TABLE_ONLY:-0}" != 1 ]; then
if ! python3 -c "import torch, transformers, peft" 2>/dev/null; then
  echo "bench caption: installing the PyTorch reference (tools/requirements.txt)"
  python3 -m pip install -q -r tools/requirements.txt
fi

# As scripts/bench.sh: PyTorch at its best (OpenBLAS's Haswell override off, passive OpenMP
# waiting), every core to each engine in turn.
unset OPENBLAS_CORETYPE
export OMP_WAIT_POLICY=PASSIVE
threads=$(nproc)
work=$(mktemp -d "${TMPDIR:-/tmp}/mmtune-bench-caption.XXXXXX")
trap 'rm -rf "$work"' EXIT
model="$work/git-base"
python3 tools/bench/make_git_base.py --out "$model"

: > "$raw"
# CPU pressure (/proc/pressure/cpu "some" total, microseconds): how long other work kept a
# runnable task waiting during the run, reported with the table.
stalled() { awk '/^some/ {sub("total=", "", $5); print $5}' /proc/pressure/cpu 2>/dev/null || echo 0; }
stall_before=$(stalled)
t_start=$(date +%s)
torch_run() { # round, part, flags...
  local round=$1 part=$2
  shift 2
  python3 tools/bench/torch_caption.py --model "$model" --threads "$threads" --new-tokens "$NEW_TOKENS" "$@" \
    | sed "s/^{/{\"engine\":\"pytorch\",\"round\":$round,\"part\":\"$part\",\"omp_wait\":\"$OMP_WAIT_POLICY\",/" >> "$raw"
}
mmtune_run() {
  local round=$1 part=$2
  shift 2
  OMP_NUM_THREADS=$threads "$BIN" bench caption --model "$model" --new-tokens "$NEW_TOKENS" --json "$@" \
    | sed "s/^{/{\"engine\":\"mmtune\",\"round\":$round,\"part\":\"$part\",\"omp_wait\":\"$OMP_WAIT_POLICY\",/" >> "$raw"
}
both() { # round, part, flags... : the two engines, the first one alternating by round
  if [ $(($1 % 2)) = 1 ]; then torch_run "$@"; mmtune_run "$@"; else mmtune_run "$@"; torch_run "$@"; fi
}
for round in $(seq "$ROUNDS"); do
  echo "bench caption: round $round/$ROUNDS, with the KV cache"
  prof=()
  [ "$round" = 1 ] && prof=(--profile)
  for wait in $WAITS; do # both engines' OpenMP threads sleeping, then spinning, between regions
    export OMP_WAIT_POLICY=$wait
    both "$round" cache --parts generate --cache on --batch "$BATCHES" --beams "$BEAMS" --iters "$ITERS" \
      --warmup "$WARMUP" "${prof[@]}"
    prof=()
  done
  export OMP_WAIT_POLICY=PASSIVE
  if [ "$round" -le "$SLOW_ROUNDS" ]; then
    echo "bench caption: round $round/$ROUNDS, without the KV cache"
    both "$round" nocache --parts generate --cache off --batch "$NOCACHE_BATCHES" --beams "$BEAMS" --iters 1 --warmup 0
    echo "bench caption: round $round/$ROUNDS, LoRA training step"
    both "$round" train --parts train --train-batch "$TRAIN_BATCH" --caption-tokens 20 --steps "$STEPS"
  fi
done
wall=$(($(date +%s) - t_start))
stall_pct=$(( ($(stalled) - stall_before) / 10000 / (wall > 0 ? wall : 1) ))
echo "{\"engine\": \"meta\", \"wall_s\": $wall, \"cpu_stall_pct\": $stall_pct, \"linux\": \"$(uname -r)\", \"finished_utc\": \"$(date -u '+%Y-%m-%d %H:%M')\"}" >> "$raw"
fi

python3 - "$raw" "$out/caption.md" <<'PY'
import json, statistics, subprocess, sys
raw, md = sys.argv[1], sys.argv[2]
rows = [json.loads(l) for l in open(raw) if l.strip()]
meta = next((r for r in rows if r["engine"] == "meta"), {})
gen = [r for r in rows if r.get("kind") == "generate"]
train = [r for r in rows if r.get("kind") == "train"]


def fmt(x, f="{:.2f}"):
    return f.format(x) if x is not None else "n/a"


def ratio(a, b):
    return f"{a / b:.2f}x" if a and b else "n/a"


def runs(engine, B, k, cache):
    return [r for r in gen if r["engine"] == engine and r["batch"] == B and r["beams"] == k and r["cache"] == cache]


def waits(engine, B, k, cache):
    return sorted({r.get("omp_wait", "PASSIVE") for r in runs(engine, B, k, cache)})


def tps_wait(engine, B, k, cache, how, wait):
    xs = [r["tokens_per_s"] for r in runs(engine, B, k, cache) if r.get("omp_wait", "PASSIVE") == wait]
    return (statistics.median(xs) if how == "median" else max(xs)) if xs else None


def kept_wait(engine, B, k, cache):
    # the OpenMP waiting policy with the better median: the engine at its best
    ws = waits(engine, B, k, cache)
    return max(ws, key=lambda w: tps_wait(engine, B, k, cache, "median", w) or 0) if ws else None


def tps(engine, B, k, cache, how):
    w = kept_wait(engine, B, k, cache)
    return tps_wait(engine, B, k, cache, how, w) if w else None


cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
flags = next((l.split(":", 1)[1].split() for l in open("/proc/cpuinfo") if l.startswith("flags")), [])
isa = "avx512f" if "avx512f" in flags else "avx2" if "avx2" in flags else "no avx2"
nproc = subprocess.check_output(["nproc"]).decode().strip()
kernels = next((r["kernels"] for r in rows if "kernels" in r), "?")
# What each mmtune CPU table runs its GEMMs with (src/ops/ops.c, src/ops/cpu/sgemm_*.c).
gemm_words = {
    "avx512": "AVX-512 GEMM: a 14x32 zmm microkernel over packed panels, and at <= 8 rows (a decoding step) "
              "the weights streamed once without packing",
    "avx2": "AVX2 GEMM: a 6x16 ymm microkernel over packed panels, and at <= 4 rows (a decoding step) "
            "the weights streamed once without packing",
    "ref": "the plain C reference loops",
}
kernel_words = {k: v + ("; the other ops AVX2" if k == "avx512" else "") for k, v in gemm_words.items()}
tv = next((r for r in rows if r["engine"] == "pytorch" and "torch" in r), {})
peft_v = next((r["peft"] for r in rows if r.get("peft")), "?")
new_tokens = next((r["new_tokens"] for r in gen), 0)
rounds = max((r["round"] for r in gen), default=0)
settings = sorted({(r["cache"] is False, r["batch"], r["beams"]) for r in gen})
L = ["# GIT captioning: mmtune vs PyTorch + transformers (random git-base-sized GIT, fp32, CPU)", "",
     f"Made by scripts/bench_caption.sh (`make bench`), run finished {meta.get('finished_utc', '?')} UTC, on {cpu} "
     f"({nproc} cores, {isa} in /proc/cpuinfo, Linux {meta.get('linux', '?')}). mmtune kernels: {kernels} "
     f"({kernel_words.get(kernels, 'see src/ops/ops.c')}); PyTorch {tv.get('torch', '?')} (CPU capability {tv.get('cpu_capability', '?')}), "
     f"transformers {tv.get('transformers', '?')}, PEFT {peft_v}; {tv.get('threads', '?')} threads each, "
     "OPENBLAS_CORETYPE unset; the cached settings run under OMP_WAIT_POLICY=PASSIVE (threads sleep between "
     "parallel regions) and ACTIVE (they spin), and each engine keeps the policy with its better median (named in "
     "the table); the other parts run PASSIVE.", "",
     "Model: GitForCausalLM(GitConfig()) with random weights (tools/bench/make_git_base.py): decoder hidden 768, "
     "6 layers, 12 heads, vocab 30522; vision ViT-B/16 at 224 px (197 image tokens, 12 layers); 177M parameters. "
     f"Every caption is exactly {new_tokens} new tokens (min_new_tokens = max_new_tokens on both sides); tokens/s "
     "counts batch x new tokens per generate call (beams not counted), timed from preprocessed pixels, so the "
     "vision tower is included. PyTorch: model.generate(pixel_values, num_beams, use_cache) under no_grad, eval(). "
     "mmtune: mmt_git_run_image_features + mmt_generate over the cached decoder; without the cache a decoder "
     "that recomputes the whole sequence with mmt_git_run_logits at every step (tools/cli/bench_caption.c), as "
     "transformers does with use_cache=False (vision tower included). 'same tokens': row 0's caption is identical "
     "token for token on both engines.", "",
     f"The engines alternate part by part in each round. Cached settings: {rounds} rounds; the slow parts (no "
     "cache, training) fewer (column n). Medians decide the ratios; the best round (least disturbed) is shown "
     "beside them. "
     + (f"The 2-core machine is shared with other work: during the run some task was waiting for a CPU "
        f"{meta['cpu_stall_pct']}% of the time (/proc/pressure/cpu), and single calls swing by up to 2x "
        "(caption_raw.jsonl has every call). " if meta.get("cpu_stall_pct") else "")
     + (f"Whole run: {meta['wall_s']} s." if meta.get("wall_s") else ""), "",
     "## Caption tokens/s", "",
     "| setting | mmtune | PyTorch | mmtune / PyTorch | best round: mmtune, PyTorch, ratio | n | same tokens | "
     "OpenMP waiting kept: mmtune, PyTorch |",
     "|---|---|---|---|---|---|---|---|"]
for nocache, B, k in settings:
    c = not nocache
    m, p = tps("mmtune", B, k, c, "median"), tps("pytorch", B, k, c, "median")
    mb, pb = tps("mmtune", B, k, c, "best"), tps("pytorch", B, k, c, "best")
    tm, tp = (next((r.get("tokens") for r in runs(e, B, k, c)), None) for e in ("mmtune", "pytorch"))
    same = "yes" if tm and tm == tp else "no" if tm and tp else "n/a"
    name = f"batch {B}, {'greedy' if k == 1 else f'{k} beams'}, {'KV cache' if c else 'no cache'}"
    kept = ", ".join((kept_wait(e, B, k, c) or "?").lower() for e in ("mmtune", "pytorch"))
    n = len([r for r in runs("mmtune", B, k, c) if r.get("omp_wait", "PASSIVE") == kept_wait("mmtune", B, k, c)])
    L.append(f"| {name} | {fmt(m)} | {fmt(p)} | {ratio(m, p)} | {fmt(mb)}, {fmt(pb)}, {ratio(mb, pb)} | "
             f"{n} | {same} | {kept} |")


def steps(engine, how):
    xs = [r["s_per_step"] for r in train if r["engine"] == engine]
    return (statistics.median(xs) if how == "median" else min(xs)) if xs else None


tm, tp = steps("mmtune", "median"), steps("pytorch", "median")
t0 = next((r for r in train if r["engine"] == "mmtune"), {})
t1 = next((r for r in train if r["engine"] == "pytorch"), {})
if t0:
    L += ["", "## LoRA training step", "",
          f"LoRA r 8, alpha 16 on query and value ({t0['trainable_params']:,} trainable on both), batch "
          f"{t0['batch']} of {t0['caption_tokens']}-token captions, labels = ids; a step is zero_grad, forward + LM "
          f"loss, backward, AdamW; s/step is the mean of {t0['steps']} steps after an untimed one. PyTorch trains in "
          "train() mode with the decoder's dropout set to 0 (mmtune's GIT training has no dropout), so both compute "
          "the same step: the first losses agree.", "",
          "| | mmtune | PyTorch | PyTorch / mmtune (speed ratio) |", "|---|---|---|---|",
          f"| s/step (median of {len([r for r in train if r['engine'] == 'mmtune'])}) | {fmt(tm)} | {fmt(tp)} | "
          f"{ratio(tp, tm)} |",
          f"| first loss | {fmt(t0.get('first_loss'), '{:.6f}')} | {fmt(t1.get('first_loss'), '{:.6f}')} | |",
          f"| forward / backward (+ AdamW) s | {fmt(t0.get('forward_s'))} / {fmt(t0.get('backward_s'))} | | |",
          f"| peak RSS GiB (whole process) | {fmt(t0.get('peak_rss_gib'))} | {fmt(t1.get('peak_rss_gib'))} | |"]

b1 = [(tps("mmtune", 1, k, True, "median"), tps("pytorch", 1, k, True, "median")) for k in sorted({r["beams"] for r in gen})]
b1 = [m / p for m, p in b1 if m and p]
L += ["", "## Goals (issue 11), on the medians", "",
      f"- generation at batch 1 with the KV cache >= 1.5x PyTorch: {', '.join(f'{x:.2f}x' for x in b1) or 'n/a'} "
      f"(greedy, beams) -> {'met' if b1 and min(b1) >= 1.5 else 'not met'}",
      f"- LoRA training step at least PyTorch's speed: {ratio(tp, tm)} -> "
      f"{'met' if tm and tp and tp / tm >= 1 else 'not met'}"]

L += ["", "## What differs by construction", "",
      "- Beam search: transformers' generate() repeats pixel_values num_beams times, so its vision tower and "
      "prefill run on batch x beams images; mmtune runs them on batch images and copies the cache rows to the "
      "beams (gen_start's select). Most of mmtune's lead with beams comes from there.",
      "- Without the cache: mmt_git_run_logits returns logits at all 197 + L positions (its contract), while "
      "generate() asks GitForCausalLM for the last position only (logits_to_keep): mmtune does an extra "
      "768 x 30522 GEMM over ~217 rows per row and step (~10 GFLOP, ~1/6 of the step).",
      "- Training: transformers computes (and backpropagates) logits at every position, image tokens included; "
      "mmtune only at the caption positions that have a label.",
      f"- Kernels: mmtune's CPU table is {kernels} ({gemm_words.get(kernels, '?')}); PyTorch runs its "
      f"{tv.get('cpu_capability', '?')} kernels on this CPU."]

prof = [r for r in gen if "profile_rows" in r]
if prof:
    L += ["", "## Where the time goes (KV cache, round 1)", "",
          "mmtune's split comes from a timing wrapper around the decoder: prefill = the image tokens and BOS into "
          "the cache (B rows; beams are copies of them), step = one token per row (mean), select = beam search's "
          "cache row copies, search = logit processing, top-k, argmax. 'Alone' times run only a step's GEMMs (6 "
          "layers' q, k, v, output, fc1, fc2, each with its own weights), the 768 x 30522 logits GEMM, and the "
          f"attention over 197 + {new_tokens // 2} cached positions, at M = batch x beams rows, through the same "
          "ops. PyTorch: its vision tower + projection on the batch x beams images that generate() expands "
          "pixel_values to, and one cached decoding step (a model forward) at batch x beams rows. All from round 1, "
          "so as noisy as one call.", "",
          "| batch, beams | mmtune s/call | vision s | prefill s | step ms | select s | search s | GEMMs alone ms | "
          "logits alone ms | attention alone ms | PyTorch s/call | PyTorch vision s | PyTorch step ms |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for nocache, B, k in settings:
        m = next((r for r in prof if r["engine"] == "mmtune" and r["batch"] == B and r["beams"] == k), None)
        p = next((r for r in prof if r["engine"] == "pytorch" and r["batch"] == B and r["beams"] == k), None)
        if nocache or not m:
            continue
        L.append(f"| {B}, {k} | {m['mean_s']:.2f} | {m['vision_s']:.2f} | {m['prefill_s']:.2f} | {m['step_ms']:.1f} | "
                 f"{m['select_s']:.2f} | {m['search_s']:.3f} | {m['profile_gemm_ms']:.1f} | {m['profile_logits_ms']:.1f} | "
                 f"{m['profile_attention_ms']:.1f} | {fmt(p and p['mean_s'])} | {fmt(p and p['profile_vision_s'])} | "
                 f"{fmt(p and p['profile_step_ms'], '{:.1f}')} |")
open(md, "w").write("\n".join(L) + "\n")
print("\n".join(L))
PY
