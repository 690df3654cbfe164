#!/usr/bin/env bash
# Serving benchmark (issue 12): POST /v1/embeddings with one image per request, mmtune serve
# against a PyTorch + FastAPI server doing the same work, measured by one C load generator
# (`mmtune bench serve`) in one interleaved run. Writes bench/results/serve.md and every
# point to serve_raw.jsonl.
#
# The model is a random CLIP of ViT-B/32's sizes that `mmtune init` writes to a temporary
# folder (both servers load the same files); 100 LoRA adapters (r 8, q_proj and v_proj of
# both towers, random non-zero B) are written beside it by `mmtune bench serve
# --write-adapters`. Targets, all on loopback:
#   batch      mmtune, --max-batch MAX_BATCH --max-wait-ms MAX_WAIT_MS, adapter a0 loaded, every request names it
#   nobatch    mmtune, --max-batch 1 (batching off), the same adapter
#   batch-100  mmtune, batching on, 100 adapters loaded, requests name them round-robin
#   pytorch    tools/bench/torch_server.py: FastAPI + uvicorn, one forward per request
#              (batch 1) under no_grad, adapter a0 loaded with PEFT and merged (its fastest
#              way to serve one adapter); TORCH_MODE threads (FastAPI's plain endpoint in its
#              thread pool, forwards of several requests overlapping: on 2 cores it gave about
#              twice the requests/s of serial, one forward at a time, and a far lower p99)
# and with INT8=1 (the default) the same four with an int8 base on both sides:
#   batch-int8, nobatch-int8, batch-100-int8   mmtune serve --int8 (per-row int8 weights,
#              activations quantized per token; the LoRA adapters stay fp32 beside them)
#   pytorch-int8  the PyTorch server with --int8: quantize_dynamic on every nn.Linear after
#              the merge (PyTorch's own int8 serving; x86 engine)
# The mmtune servers run inside the load generator's process; every target gets $(nproc)
# compute threads. At each client count the targets take turns (the order reverses every
# round and count). Called by scripts/bench.sh (make bench), or alone; the variables below
# override. TABLE_ONLY=1 rewrites the table from the existing raw file.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/mmtune}
CLIENTS=${CLIENTS:-1,8,32,64}
DURATION=${DURATION:-15}
WARMUP=${WARMUP:-5}
ROUNDS=${ROUNDS:-1}
MAX_BATCH=${MAX_BATCH:-32}
# 10 ms rather than serve's default 5: at 32 clients on the shared 2-core machine, turning a
# batch's 32 answers into the next 32 requests took more than 5 ms, so with 5 the batches
# split (19 rows on average) and p99 rose by a third; 10 and 20 ms gave full batches and the
# same requests/s (measured with this tool, 2026-12-03).
MAX_WAIT_MS=${MAX_WAIT_MS:-10}
ADAPTERS=${ADAPTERS:-100}
TORCH_MODE=${TORCH_MODE:-threads}
INT8=${INT8:-1}
CONNECTION=${CONNECTION:-keep-alive}
IMAGE=${IMAGE:-tests/fixtures/clip/images/chelsea.jpg}
out=bench/results
mkdir -p "$out"
raw="$out/serve_raw.jsonl"

if [ "${TABLE_ONLY:-0}" != 1 ]; then
if ! python3 -c "import torch, transformers, peft, fastapi, uvicorn" 2>/dev/null; then
  echo "bench serve: installing the PyTorch reference (tools/requirements.txt)"
  python3 -m pip install -q -r tools/requirements.txt
fi

# As scripts/bench.sh: PyTorch at its best (OpenBLAS's Haswell override off, passive OpenMP
# waiting so an idle server does not spin on the cores the measured one needs).
unset OPENBLAS_CORETYPE
export OMP_WAIT_POLICY=PASSIVE
threads=$(nproc)
work=$(mktemp -d "${TMPDIR:-/tmp}/mmtune-bench-serve.XXXXXX")
torch_pid=""
torch8_pid=""
check_pid=""
cleanup() { # under set -e: nothing here may fail (a killed server's wait returns 143)
  local pid
  for pid in $torch_pid $torch8_pid $check_pid; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
model="$work/clip-vit-b32"
# openai/clip-vit-base-patch32's sizes (CLIPConfig's defaults, as tools/bench/torch_embed.py
# and `mmtune bench embed` use) with the embedded tiny model's BPE vocabulary: image requests
# never touch the text tower's token table.
"$BIN" init --out "$model" --tokenizer models/mmtune-clip-tiny --vision-width 768 --vision-layers 12 \
  --vision-heads 12 --patch 32 --image-size 224 --text-width 512 --text-layers 12 --text-heads 8 \
  --projection-dim 512 --context 77 --seed 0 >/dev/null
"$BIN" bench serve --model "$model" --adapters-dir "$work/adapters" --write-adapters "$ADAPTERS"

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_health() { # port, pid: until GET /health answers 200
  for _ in $(seq 600); do
    if python3 -c "import urllib.request, sys; urllib.request.urlopen('http://127.0.0.1:$1/health', timeout=2)" 2>/dev/null; then
      return 0
    fi
    kill -0 "$2" 2>/dev/null || { echo "bench serve: the server on port $1 exited" >&2; return 1; }
    sleep 0.5
  done
  echo "bench serve: no server on port $1 after 300 s" >&2
  return 1
}
torch_port=$(free_port)
python3 tools/bench/torch_server.py --model "$model" --adapter "$work/adapters/a0" --merge --port "$torch_port" \
  --threads "$threads" --mode "$TORCH_MODE" 2> "$work/torch_server.log" &
torch_pid=$!
wait_health "$torch_port" "$torch_pid" || { cat "$work/torch_server.log" >&2; exit 1; }
int8_targets=()
torch8_port=""
if [ "$INT8" = 1 ]; then
  torch8_port=$(free_port)
  python3 tools/bench/torch_server.py --model "$model" --adapter "$work/adapters/a0" --merge --int8 --port "$torch8_port" \
    --threads "$threads" --mode "$TORCH_MODE" 2> "$work/torch8_server.log" &
  torch8_pid=$!
  wait_health "$torch8_port" "$torch8_pid" || { cat "$work/torch8_server.log" >&2; exit 1; }
  int8_targets=(
    --target "batch-int8:max-batch=$MAX_BATCH,max-wait-ms=$MAX_WAIT_MS,adapters=1,quantize=int8"
    --target "nobatch-int8:max-batch=1,adapters=1,quantize=int8"
    --target "batch-$ADAPTERS-int8:max-batch=$MAX_BATCH,max-wait-ms=$MAX_WAIT_MS,adapters=$ADAPTERS,quantize=int8"
    --target "pytorch-int8:url=http://127.0.0.1:$torch8_port,adapters=1,engine=pytorch"
  )
fi

# Same work: one request to each server (mmtune serve here as its own process), the
# embeddings compared.
# With INT8=1 the same for the int8 servers (each against PyTorch fp32: how far int8 moves).
check_embed() { # serve flags...: one mmtune serve, its embedding of $IMAGE printed as JSON
  local port
  port=$(free_port)
  OMP_NUM_THREADS=$threads "$BIN" serve --model "$model" --adapter "a0=$work/adapters/a0" --port "$port" "$@" \
    2> "$work/check_server.log" &
  check_pid=$!
  wait_health "$port" "$check_pid" || { cat "$work/check_server.log" >&2; exit 1; }
  embed_at "$port"
  kill "$check_pid"
  wait "$check_pid" 2>/dev/null || true
  check_pid=""
}
embed_at() { # port: the embedding of $IMAGE with adapter a0, as a JSON list
  python3 - "$IMAGE" "$1" <<'PY'
import base64, json, sys, urllib.request
body = json.dumps({"input": [{"image": base64.b64encode(open(sys.argv[1], "rb").read()).decode()}],
                   "model": "a0"}).encode()
r = urllib.request.Request(f"http://127.0.0.1:{sys.argv[2]}/v1/embeddings", body, {"Content-Type": "application/json"})
print(json.dumps(json.load(urllib.request.urlopen(r, timeout=120))["data"][0]["embedding"]))
PY
}
compare() { # name, embedding, reference embedding (JSON lists): one parity line
  python3 -c '
import json, sys
m, p = json.loads(sys.argv[2]), json.loads(sys.argv[3])
print(json.dumps({"engine": "parity", "name": sys.argv[1], "dims": [len(m), len(p)], "cosine": sum(a * b for a, b in zip(m, p)),
                  "max_abs_diff": max(abs(a - b) for a, b in zip(m, p))}))' "$@"
}
torch_fp32=$(embed_at "$torch_port")
parity=$(compare "mmtune fp32 / PyTorch fp32" "$(check_embed)" "$torch_fp32")
if [ "$INT8" = 1 ]; then
  parity="$parity
$(compare "mmtune int8 / PyTorch fp32" "$(check_embed --int8)" "$torch_fp32")
$(compare "PyTorch int8 / PyTorch fp32" "$(embed_at "$torch8_port")" "$torch_fp32")"
fi

# CPU pressure (/proc/pressure/cpu "some" total, microseconds): how long other work kept a
# runnable task waiting during the run; the load average before and after.
stalled() { awk '/^some/ {sub("total=", "", $5); print $5}' /proc/pressure/cpu 2>/dev/null || echo 0; }
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
stall_before=$(stalled)
t_start=$(date +%s)
: > "$raw"
echo "$parity" >> "$raw"
OMP_NUM_THREADS=$threads "$BIN" bench serve --model "$model" --adapters-dir "$work/adapters" --image "$IMAGE" \
  --target "batch:max-batch=$MAX_BATCH,max-wait-ms=$MAX_WAIT_MS,adapters=1" \
  --target "nobatch:max-batch=1,adapters=1" \
  --target "batch-$ADAPTERS:max-batch=$MAX_BATCH,max-wait-ms=$MAX_WAIT_MS,adapters=$ADAPTERS" \
  --target "pytorch:url=http://127.0.0.1:$torch_port,adapters=1,engine=pytorch" \
  "${int8_targets[@]}" \
  --clients "$CLIENTS" --duration "$DURATION" --warmup "$WARMUP" --rounds "$ROUNDS" --connection "$CONNECTION" \
  --json | tee -a "$raw"
wall=$(($(date +%s) - t_start))
stall_pct=$(( ($(stalled) - stall_before) / 10000 / (wall > 0 ? wall : 1) ))
torch_line=$(grep -m1 '^torch_server:' "$work/torch_server.log" || echo "")
torch8_line=$( [ "$INT8" = 1 ] && grep -m1 '^torch_server:' "$work/torch8_server.log" || echo "")
echo "{\"engine\": \"meta\", \"wall_s\": $wall, \"cpu_stall_pct\": $stall_pct, \"load_before\": \"$load_before\", \"load_after\": \"$(cut -d' ' -f1-3 /proc/loadavg)\", \"threads\": $threads, \"torch_mode\": \"$TORCH_MODE\", \"torch_server\": \"$torch_line\", \"torch_server_int8\": \"$torch8_line\", \"image\": \"$IMAGE\", \"linux\": \"$(uname -r)\", \"finished_utc\": \"$(date -u '+%Y-%m-%d %H:%M')\"}" >> "$raw"
fi

python3 - "$raw" "$out/serve.md" <<'PY'
import json, re, subprocess, sys
raw, md = sys.argv[1], sys.argv[2]
rows = [json.loads(l) for l in open(raw) if l.strip()]
meta = next((r for r in rows if r["engine"] == "meta"), {})
parities = [r for r in rows if r["engine"] == "parity"]
parity = parities[0] if parities else None
pts = [r for r in rows if "target" in r]
targets = list(dict.fromkeys(r["target"] for r in pts))
clients = sorted({r["clients"] for r in pts})
rounds = max((r["round"] for r in pts), default=1)


def best(target, c):
    """The point's best round (highest req/s): the least disturbed measurement."""
    xs = [r for r in pts if r["target"] == target and r["clients"] == c]
    return max(xs, key=lambda r: r["req_per_s"]) if xs else None


def f(x, spec="{:.2f}"):
    return spec.format(x) if x is not None else "n/a"


def ratio(a, b):
    return a / b if a and b else None


cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
nproc = subprocess.check_output(["nproc"]).decode().strip()
torch_line = re.sub(r"/\S*/adapters/", "", meta.get("torch_server", "")).replace("torch_server: ", "PyTorch server: ")
torch8_line = re.sub(r"/\S*/adapters/", "", meta.get("torch_server_int8", "")).replace("torch_server: ", "PyTorch int8 server: ")
p0 = pts[0] if pts else {}
try:
    from PIL import Image
    size = "%d x %d pixels" % Image.open(meta["image"]).size
    import os
    nbytes = f"{os.path.getsize(meta['image']):,} bytes"
except Exception:
    size, nbytes = "?", "?"
nb = next((r for r in pts if r["target"] == "batch"), {})
many = next((t for t in targets if re.fullmatch(r"batch-\d+", t)), None)
n_many = next((r["adapters"] for r in pts if r["target"] == many), 0)
int8 = "batch-int8" in targets
mode = {"threads": "forwards of concurrent requests overlapping in FastAPI's thread pool",
        "serial": "one forward at a time"}.get(meta.get("torch_mode"), "?")
desc = {
    "batch": f"mmtune, batching on (--max-batch {nb.get('max_batch', '?')} --max-wait-ms {nb.get('max_wait_ms', '?')}), 1 adapter",
    "nobatch": "mmtune, batching off (--max-batch 1), 1 adapter",
    many: f"mmtune, batching on, {n_many} adapters loaded, requests round-robin over them",
    "pytorch": "PyTorch + FastAPI, batch 1 per request, the adapter merged, " + mode,
    "batch-int8": "as batch, the base in int8 (serve --int8)",
    "nobatch-int8": "as nobatch, the base in int8",
    f"{many}-int8": f"as {many}, the base in int8",
    "pytorch-int8": "as pytorch, then torch's dynamic int8 quantization of every nn.Linear",
}
L = ["# Serving: mmtune serve vs a PyTorch + FastAPI server (POST /v1/embeddings, one image per request)", "",
     f"Made by scripts/bench_serve.sh (`make bench`), run finished {meta.get('finished_utc', '?')} UTC on {cpu} "
     f"({nproc} cores, Linux {meta.get('linux', '?')}); {meta.get('threads', '?')} compute threads for every server. "
     f"{torch_line}.", "",
     "Model: a random CLIP with openai/clip-vit-base-patch32's sizes written by `mmtune init` (vision 768 wide, 12 "
     "layers, 32-px patches at 224 px; text 512 wide, 12 layers; projection 512; the embedded tiny model's BPE "
     "vocabulary, which image requests never touch), loaded by both servers from the same files. Adapters: LoRA r 8 on "
     "q_proj and v_proj of both towers, A as PEFT initialises it, B random non-zero (`mmtune bench serve "
     "--write-adapters`); PEFT loads the same folder for the PyTorch server.", "",
     f"Load: `mmtune bench serve`, C closed-loop clients (one pthread each, one request at a time, the next sent as "
     f"soon as the answer is in), HTTP/1.1 {p0.get('connection', '?')} "
     + ("(one connection per client, reused)" if p0.get("connection") == "keep-alive" else "(a new connection per request)")
     + f" for every server. Each request: `{{\"input\": [{{\"image\": BASE64}}], \"model\": \"a0\"}}` with "
     f"{meta.get('image', 'a JPEG')} ({size}, {nbytes}) base64-encoded. Each point: {p0.get('duration_s', '?')} s measured "
     f"after {p0.get('warmup_s', '?')} s of warm-up under the same load (the requests in flight finish before the next "
     "point). req/s: the answers in the window after its first answer, or first burst of answers (a batch's rows, "
     "each within 25 ms of the one before), over the time from that to the last answer: a batching server answers "
     "a batch's rows at once every few seconds, and a plain count in a fixed window would swing by a whole batch "
     "(serve_raw.jsonl has that count too, req_per_s_window). Latencies: the requests answered in the window. At each client count the targets take turns, the order "
     f"reversing every count and round; {rounds} round(s), the best round per point shown. Errors: non-200 "
     "answers, answers without an embedding, failed connections.", "",
     (f"Same work: one request to mmtune serve and to the PyTorch server gives embeddings of {parity['dims'][0]} and "
      f"{parity['dims'][1]} numbers with cosine {parity['cosine']:.6f} (max |difference| {parity['max_abs_diff']:.2g})."
      + "".join(f" {q['name']}: cosine {q['cosine']:.6f} (max |difference| {q['max_abs_diff']:.2g})."
                for q in parities[1:]) if parity else ""), "",
     *([f"int8: {torch8_line}. Both int8 servers keep the LoRA adapter's effect: mmtune adds it in fp32 beside the "
        "int8 base (no merge, so every adapter shares one base), PyTorch quantizes the merged weights (one adapter per "
        "process).", ""] if int8 else []),
     (f"The 2-core machine is shared with other people's work: load average {meta.get('load_before', '?')} before and "
      f"{meta.get('load_after', '?')} after the run (1, 5, 15 min); some task was waiting for a CPU "
      f"{meta.get('cpu_stall_pct', '?')}% of the run's time (/proc/pressure/cpu). Absolute numbers are noise on such a "
      "machine; the ratios between targets measured side by side are what this reports. "
      f"Whole run: {meta.get('wall_s', '?')} s." if meta else ""), "",
     "## Requests/s and latency", "",
     "| target | " + " | ".join(f"{c} clients: req/s, p50 / p99 ms" for c in clients) + " |",
     "|---|" + "---|" * len(clients)]
for t in targets:
    cells = []
    for c in clients:
        r = best(t, c)
        cells.append("n/a" if not r else f"{r['req_per_s']:.2f}, {r['p50_ms']:.0f} / {r['p99_ms']:.0f}"
                     + (f" ({r['errors']} errors)" if r["errors"] else ""))
    L.append(f"| {t}: {desc.get(t, t)} | " + " | ".join(cells) + " |")

L += ["", "Batch sizes the mmtune servers ran in each point's window (from their /metrics "
      "`mmtune_batch_rows` histogram): mean rows per batch, and batches per bucket (rows <= bound).", "",
      "| target | clients | batches | mean rows | histogram |", "|---|---|---|---|---|"]
for t in targets:
    for c in clients:
        r = best(t, c)
        if r and "batch_rows_hist" in r:
            h = ", ".join(f"<={k}: {v}" for k, v in r["batch_rows_hist"].items() if v)
            L.append(f"| {t} | {c} | {r['batches']} | {r['batch_rows_mean']:.2f} | {h} |")

# Goals (issue 12).
def rps(t, c):
    r = best(t, c)
    return r["req_per_s"] if r else None


c_goal = 32 if 32 in clients else clients[-1]
# One set of ratios per precision: the fp32 servers (the same work as the reference
# deployment), and with INT8=1 the int8 ones (suffix -int8), each against PyTorch at the same
# precision and the int8 ones also against PyTorch fp32.
precs = [("fp32", "")] + ([("int8", "-int8")] if int8 else [])
L += ["", "## Ratios", "",
      "| precision | clients | batching on / off | " + (f"{n_many} adapters / 1 adapter" if many else "") +
      " | mmtune (batching on) / PyTorch same precision | p99 ratio PyTorch / mmtune | mmtune / PyTorch fp32 |",
      "|---|---|---|---|---|---|---|"]
for name, sfx in precs:
    for c in clients:
        b, o = rps("batch" + sfx, c), rps("nobatch" + sfx, c)
        m, p = rps(many + sfx, c) if many else None, rps("pytorch" + sfx, c)
        bp = best("batch" + sfx, c), best("pytorch" + sfx, c)
        L.append(f"| {name} | {c} | {f(ratio(b, o), '{:.2f}x')} | {f(ratio(m, b), '{:.3f}')} | {f(ratio(b, p), '{:.2f}x')} | "
                 f"{f(ratio(bp[1]['p99_ms'], bp[0]['p99_ms']) if all(bp) else None, '{:.2f}x')} | "
                 f"{f(ratio(b, rps('pytorch', c)), '{:.2f}x')} |")


# At equal p99: for each PyTorch point, the most requests/s any mmtune point with batching on
# and one adapter reached without a higher p99 (no interpolation: conservative).
def equal_p99(mm, ref, label):
    global L
    L += ["", f"At equal p99, {label}: for each point of {ref}, the highest {mm} throughput among its points whose p99 "
          "is at most the reference's there.", "",
          f"| {ref} clients | {ref} req/s | {ref} p99 ms | {mm} point (clients) | {mm} req/s | {mm} p99 ms | ratio |",
          "|---|---|---|---|---|---|---|"]
    eq = {}
    for c in clients:
        p = best(ref, c)
        if not p:
            continue
        cands = [best(mm, k) for k in clients if best(mm, k) and best(mm, k)["p99_ms"] <= p["p99_ms"]]
        m = max(cands, key=lambda r: r["req_per_s"]) if cands else None
        eq[c] = ratio(m and m["req_per_s"], p["req_per_s"])
        L.append(f"| {c} | {p['req_per_s']:.2f} | {p['p99_ms']:.0f} | {m['clients'] if m else 'none'} | "
                 f"{f(m and m['req_per_s'])} | {f(m and m['p99_ms'], '{:.0f}')} | {f(eq[c], '{:.2f}x')} |")
    sat = [eq.get(c) for c in clients if c >= 32]
    return min(sat) if sat and all(x is not None for x in sat) else None


g3 = {"fp32": equal_p99("batch", "pytorch", "fp32 against fp32")}
if int8:
    g3["int8"] = equal_p99("batch-int8", "pytorch-int8", "int8 against int8")
    g3["int8 / PyTorch fp32"] = equal_p99("batch-int8", "pytorch", "mmtune int8 against the PyTorch fp32 server")

mark = lambda x, goal: f"{x:.2f}x" + (" (met)" if x >= goal else " (not met)") if x is not None else "n/a"
L += ["", "## Goals (issue 12), on these numbers", "",
      "| goal | " + " | ".join(n for n, _ in precs) + (" | mmtune int8 / PyTorch fp32 |" if int8 else " |"),
      "|---|" + "---|" * (len(precs) + (1 if int8 else 0))]
g1 = [ratio(rps("batch" + x, c_goal), rps("nobatch" + x, c_goal)) for _, x in precs]
g2 = [ratio(rps(many + x, c_goal), rps("batch" + x, c_goal)) if many else None for _, x in precs]
L.append(f"| at {c_goal} clients batching gives at least 3x the throughput of batch 1 | "
         + " | ".join(mark(x, 3) for x in g1) + (" | |" if int8 else " |"))
L.append(f"| {n_many} adapters cost at most 10% throughput (batching on, {c_goal} clients; ratio to one adapter) | "
         + " | ".join((f"{x:.3f}" + (" (met)" if x >= 0.90 else " (not met)")) if x is not None else "n/a" for x in g2)
         + (" | |" if int8 else " |"))
L.append("| at least 3x the PyTorch server's throughput at equal p99 (PyTorch at 32 and 64 clients, the smaller ratio) | "
         + " | ".join(mark(g3.get(n), 3) for n, _ in precs)
         + (f" | {mark(g3.get('int8 / PyTorch fp32'), 3)} |" if int8 else " |"))
open(md, "w").write("\n".join(L) + "\n")
print("\n".join(L))
PY
