#!/usr/bin/env bash
# GIT captioning benchmark (issue 11): mmtune vs PyTorch + transformers (+ PEFT) on a random
# git-base-sized GitForCausalLM that tools/bench/make_git_base.py writes to a temporary folder
# (~700 MB, deleted at the end). Caption tokens/s with the KV cache at BATCHES x BEAMS, without
# it at NOCACHE_BATCHES x BEAMS (each step recomputes the whole sequence: slow), and a LoRA
# training step (r 8 on query, value; batch TRAIN_BATCH of 20-token captions). The engines
# alternate part by part in every round (which one goes first alternates too); the cached
# settings run ROUNDS rounds, the slow parts (no cache, training) the first SLOW_ROUNDS.
# Medians over rounds go to bench/results/caption.md, every measurement to caption_raw.jsonl.
# Called by scripts/bench.sh (make bench); the variables below override.
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
out=bench/results
mkdir -p "$out"

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

raw="$out/caption_raw.jsonl"
: > "$raw"
pressure_before=$(awk '/^some/ {sub("total=", "", $5); print $5}' /proc/pressure/cpu 2>/dev/null || echo "")
t_start=$(date +%s)
torch_run() { # round, part, flags...
  local round=$1 part=$2
  shift 2
  python3 tools/bench/torch_caption.py --model "$model" --threads "$threads" --new-tokens "$NEW_TOKENS" "$@" \
    | sed "s/^{/{\"engine\":\"pytorch\",\"round\":$round,\"part\":\"$part\",/" >> "$raw"
}
mmtune_run() {
  local round=$1 part=$2
  shift 2
  OMP_NUM_THREADS=$threads "$BIN" bench caption --model "$model" --new-tokens "$NEW_TOKENS" --json "$@" \
    | sed "s/^{/{\"engine\":\"mmtune\",\"round\":$round,\"part\":\"$part\",/" >> "$raw"
}
both() { # round, part, flags... : the two engines, the first one alternating by round
  if [ $(($1 % 2)) = 1 ]; then torch_run "$@"; mmtune_run "$@"; else mmtune_run "$@"; torch_run "$@"; fi
}
for round in $(seq "$ROUNDS"); do
  echo "bench caption: round $round/$ROUNDS, with the KV cache"
  prof=()
  [ "$round" = 1 ] && prof=(--profile)
  both "$round" cache --parts generate --cache on --batch "$BATCHES" --beams "$BEAMS" --iters "$ITERS" \
    --warmup "$WARMUP" "${prof[@]}"
  if [ "$round" -le "$SLOW_ROUNDS" ]; then
    echo "bench caption: round $round/$ROUNDS, without the KV cache"
    both "$round" nocache --parts generate --cache off --batch "$NOCACHE_BATCHES" --beams "$BEAMS" --iters 1 --warmup 0
    echo "bench caption: round $round/$ROUNDS, LoRA training step"
    both "$round" train --parts train --train-batch "$TRAIN_BATCH" --caption-tokens 20 --steps "$STEPS"
  fi
done
pressure_after=$(awk '/^some/ {sub("total=", "", $5); print $5}' /proc/pressure/cpu 2>/dev/null || echo "")
wall=$(($(date +%s) - t_start))
stall=""
if [ -n "$pressure_before" ] && [ -n "$pressure_after" ] && [ "$wall" -gt 0 ]; then
  stall=$(( (pressure_after - pressure_before) / 10000 / wall ))
fi

python3 - "$raw" "$out/caption.md" "$wall" "$stall" <<'PY'
import datetime, json, platform, statistics, subprocess, sys
raw, md, wall, stall = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
rows = [json.loads(l) for l in open(raw) if l.strip()]
gen = [r for r in rows if r.get("kind") == "generate"]
train = [r for r in rows if r.get("kind") == "train"]

def med(xs):
    return statistics.median(xs) if xs else None

def cell(engine, B, k, cache, key="tokens_per_s"):
    return med([r[key] for r in gen if r["engine"] == engine and r["batch"] == B and r["beams"] == k
                and r["cache"] == cache and key in r])

def first(engine, B, k, cache, key):
    return next((r[key] for r in gen if r["engine"] == engine and r["batch"] == B and r["beams"] == k
                 and r["cache"] == cache and key in r), None)

def fmt(x, f="{:.2f}"):
    return f.format(x) if x is not None else "n/a"

cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
flags = next((l.split(":", 1)[1].split() for l in open("/proc/cpuinfo") if l.startswith("flags")), [])
isa = "avx512f" if "avx512f" in flags else "avx2" if "avx2" in flags else "no avx2"
nproc = subprocess.check_output(["nproc"]).decode().strip()
kernels = next((r["kernels"] for r in rows if "kernels" in r), "?")
tv = next((r for r in rows if r["engine"] == "pytorch" and "torch" in r), {})
peft_v = next((r["peft"] for r in rows if r.get("peft")), "?")
new_tokens = next((r["new_tokens"] for r in gen), "?")
rounds = max((r["round"] for r in rows), default=0)
settings = sorted({(r["cache"] is False, r["batch"], r["beams"]) for r in gen})
L = ["# GIT captioning: mmtune vs PyTorch + transformers (random git-base-sized GIT, fp32, CPU)", "",
     f"Measured {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC by scripts/bench_caption.sh on {cpu} "
     f"({nproc} cores, {isa} in /proc/cpuinfo, Linux {platform.release()}). mmtune kernels: {kernels} "
     f"(mmtune has no AVX-512 kernels yet); PyTorch {tv.get('torch', '?')} (CPU capability "
     f"{tv.get('cpu_capability', '?')}), transformers {tv.get('transformers', '?')}, PEFT {peft_v}; "
     f"{tv.get('threads', '?')} threads each, OPENBLAS_CORETYPE unset, OMP_WAIT_POLICY=PASSIVE.", "",
     "Model: GitForCausalLM(GitConfig()) with random weights (tools/bench/make_git_base.py): decoder hidden 768, "
     "6 layers, 12 heads, vocab 30522; vision ViT-B/16 at 224 px (197 image tokens, 12 layers); 177M parameters. "
     f"Each caption is exactly {new_tokens} new tokens (min_new_tokens = max_new_tokens on both sides); tokens/s "
     "counts batch x new tokens per generate call (beams not counted), timed from preprocessed pixels, so the "
     "vision tower is included. PyTorch: model.generate(pixel_values, num_beams, use_cache) under no_grad, eval(); "
     "mmtune: mmt_git_run_image_features + mmt_generate over the cached decoder, or, without the cache, a decoder "
     "that recomputes the whole sequence with mmt_git_run_logits at every step (tools/cli/bench_caption.c), "
     "as transformers does with use_cache=False (vision tower included).", "",
     f"Engines alternate part by part in each round; medians over rounds ({rounds} for the cached settings, the "
     "slow parts fewer: the n column). "
     + (f"The machine is shared: while this ran, some task waited for a CPU {stall}% of the time "
        "(/proc/pressure/cpu), so single numbers are noisy. " if stall else "")
     + f"Whole run: {wall} s.", "",
     "## Caption tokens/s", "",
     "| setting | mmtune tokens/s | PyTorch tokens/s | ratio (mmtune / PyTorch) | n | same tokens (row 0) |",
     "|---|---|---|---|---|---|"]
for nocache, B, k in settings:
    cache = not nocache
    m, p = cell("mmtune", B, k, cache), cell("pytorch", B, k, cache)
    n = len([r for r in gen if r["engine"] == "mmtune" and r["batch"] == B and r["beams"] == k and r["cache"] == cache])
    tm, tp = first("mmtune", B, k, cache, "tokens"), first("pytorch", B, k, cache, "tokens")
    same = "yes" if tm is not None and tm == tp else "no" if tm is not None and tp is not None else "n/a"
    name = f"batch {B}, {'greedy' if k == 1 else f'{k} beams'}, {'KV cache' if cache else 'no cache'}"
    L.append(f"| {name} | {fmt(m)} | {fmt(p)} | {fmt(m / p if m and p else None)}x | {n} | {same} |")

tm = med([r["s_per_step"] for r in train if r["engine"] == "mmtune"])
tp = med([r["s_per_step"] for r in train if r["engine"] == "pytorch"])
t0 = next((r for r in train if r["engine"] == "mmtune"), {})
t1 = next((r for r in train if r["engine"] == "pytorch"), {})
L += ["", "## LoRA training step", "",
      f"LoRA r 8, alpha 16 on query and value ({t0.get('trainable_params', '?'):,} trainable), batch "
      f"{t0.get('batch', '?')} of {t0.get('caption_tokens', '?')}-token captions, labels = ids; a step is zero_grad, "
      "forward + LM loss, backward, AdamW. PyTorch trains in train() mode with the decoder's dropout set to 0 "
      "(mmtune's GIT training has no dropout), so both compute the same step; the first losses below agree.", "",
      "| | mmtune | PyTorch | ratio (PyTorch / mmtune) |", "|---|---|---|---|",
      f"| s/step (median of {len([r for r in train if r['engine'] == 'mmtune'])}) | {fmt(tm)} | {fmt(tp)} | "
      f"{fmt(tp / tm if tm and tp else None)}x |",
      f"| first loss | {fmt(t0.get('first_loss'), '{:.6f}')} | {fmt(t1.get('first_loss'), '{:.6f}')} | |",
      f"| forward / backward s | {fmt(t0.get('forward_s'))} / {fmt(t0.get('backward_s'))} | | |",
      f"| peak RSS GiB | {fmt(t0.get('peak_rss_gib'))} | {fmt(t1.get('peak_rss_gib'))} | |"]

b1 = [(cell("mmtune", 1, k, True), cell("pytorch", 1, k, True)) for k in sorted({r["beams"] for r in gen})]
b1 = [m / p for m, p in b1 if m and p]
L += ["", "## Goals (issue 11)", "",
      f"- generation at batch 1 (KV cache) >= 1.5x PyTorch: {', '.join(f'{x:.2f}x' for x in b1) or 'n/a'} "
      f"-> {'met' if b1 and min(b1) >= 1.5 else 'not met'}",
      f"- LoRA training step >= PyTorch's speed: {fmt(tp / tm if tm and tp else None)}x -> "
      f"{'met' if tm and tp and tp / tm >= 1 else 'not met'}"]

prof = [r for r in gen if "profile_rows" in r]
if prof:
    L += ["", "## Where the time goes (KV cache, round 1)", "",
          "mmtune's parts come from a timing wrapper around the decoder (prefill = image tokens + BOS into the cache; "
          "step = one token per row; select = beam search's cache row copies; search = logit processing, top-k, "
          "argmax). The 'alone' columns run only the step's GEMMs (6 layers' q, k, v, output, fc1, fc2, each with its "
          "own weights) and the 768 x 30522 logits GEMM at M = batch x beams rows, and the attention over "
          f"197 + {new_tokens // 2} cached positions, through the same ops. PyTorch's: its vision tower + projection on "
          "the batch x beams images generate expands to, and one cached decoding step (model forward) at batch x "
          "beams rows.", "",
          "| batch, beams | mmtune s/call | vision s | prefill s | step ms | select s | search s | GEMMs alone ms | logits GEMM alone ms | attention alone ms | PyTorch s/call | PyTorch vision s | PyTorch step ms |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for nocache, B, k in settings:
        if nocache:
            continue
        m = next((r for r in prof if r["engine"] == "mmtune" and r["batch"] == B and r["beams"] == k), None)
        p = next((r for r in prof if r["engine"] == "pytorch" and r["batch"] == B and r["beams"] == k), None)
        if not m:
            continue
        L.append(f"| {B}, {k} | {m['mean_s']:.2f} | {m['vision_s']:.2f} | {m['prefill_s']:.2f} | {m['step_ms']:.1f} | "
                 f"{m['select_s']:.2f} | {m['search_s']:.3f} | {m['profile_gemm_ms']:.1f} | {m['profile_logits_ms']:.1f} | "
                 f"{m['profile_attention_ms']:.1f} | {fmt(p and p['mean_s'])} | {fmt(p and p['profile_vision_s'])} | "
                 f"{fmt(p and p['profile_step_ms'], '{:.1f}')} |")
open(md, "w").write("\n".join(L) + "\n")
print("\n".join(L))
PY
