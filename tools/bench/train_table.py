#!/usr/bin/env python3
"""bench/results/train.md from train_raw.jsonl (scripts/bench_train.sh writes both).

Each raw line is one process's measurement: {"engine": "pytorch"|"mmtune", "config", "text_pad"
(77 or 10), "round", "stall_pct", "s_per_step", "peak_rss_gib", "trainable_params", ...}. A cell
is the round with the fastest step of its (engine, config, padding): the least disturbed run;
its peak RSS is that run's (RSS barely moves between rounds). One "meta" line carries the run's
load. Usage: train_table.py RAW MD
"""
import json
import platform
import subprocess
import sys

RELEVANT_FLAGS = ["avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni",
                  "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16"]
MMTUNE_CONFIGS = [
    ("full", "full fine-tuning, AdamW"),
    ("full+ckpt", "full + gradient checkpointing"),
    ("lora", "LoRA r 8 (q, v), fp32 base, AdamW"),
    ("lora+ckpt", "LoRA + checkpointing"),
    ("ia3", "IA3 (k, v, fc2)"),
    ("lora+int8", "LoRA on an int8 base"),
    ("qlora", "QLoRA: LoRA on an NF4 base (double quant)"),
    ("qlora+adamw8bit", "QLoRA + adamw8bit"),
    ("qlora+adamw8bit+ckpt", "QLoRA + adamw8bit + checkpointing"),
    ("qlora+recompute", "QLoRA + selective recomputation (--recompute)"),
]


def load_note(stalls):
    busy = sum(1 for x in stalls if x >= 10)
    if not busy:
        return " Every cell kept ran while the machine was otherwise quiet (under 10% CPU pressure)."
    return (f" {busy} of the {len(stalls)} cells kept ran while other work loaded the machine (10% CPU pressure or more): "
            "their seconds per step are inflated; peak RSS is not affected.")


def main():
    raw, md = sys.argv[1], sys.argv[2]
    rows = [json.loads(l) for l in open(raw) if l.strip()]
    meta = next((r for r in rows if r.get("engine") == "meta"), {})
    errors = [r for r in rows if r.get("engine") != "meta" and ("error" in r or "skipped" in r)]
    rows = [r for r in rows if r.get("engine") != "meta" and "s_per_step" in r]
    best = {}
    for r in rows:
        k = (r["engine"], r["config"], r["text_pad"])
        if k not in best or r["s_per_step"] < best[k]["s_per_step"]:
            best[k] = r
    cpuinfo = open("/proc/cpuinfo").read().splitlines()
    cpu = next((l.split(":", 1)[1].strip() for l in cpuinfo if l.startswith("model name")), "?")
    flags = set(next((l.split(":", 1)[1].split() for l in cpuinfo if l.startswith("flags")), []))
    have = [f for f in RELEVANT_FLAGS if f in flags]
    nproc = subprocess.check_output(["nproc"]).decode().strip()
    first = lambda key: next((r[key] for r in rows if key in r), "?")
    stalls = [r.get("stall_pct", 0) for r in best.values()]
    batch = first("batch")
    L = [f"# Training step: mmtune (fp32, int8 and NF4 bases) vs PyTorch + PEFT (random ViT-B/32 CLIP, batch {batch}, CPU)", "",
         f"Measured {meta.get('finished_utc', '?')} UTC on {cpu} ({nproc} cores; flags: {' '.join(have)}), Linux {platform.release()}; "
         f"PyTorch {first('torch')} + transformers {first('transformers')} + PEFT {first('peft')} with OPENBLAS_CORETYPE unset, "
         f"OMP_WAIT_POLICY=PASSIVE and torch threads = nproc; mmtune {meta.get('mmtune_commit', '?')}. "
         f"{meta.get('rounds', '?')} rounds, {meta.get('steps', '?')} timed steps per process after 1 untimed one, the engines "
         "alternating and the order rotating by round; a cell is its fastest round. A step is forward + symmetric contrastive "
         "loss + backward + optimizer step (mmtune also clips the gradient norm); PyTorch: AdamW(foreach=False), mmtune: AdamW "
         "or bitsandbytes-style adamw8bit. Peak RSS is the whole process's (getrusage ru_maxrss), one configuration per process.", "",
         "Texts are BOS + 8 tokens + EOS. \"77\": padded with EOS to 77 as padding=\"max_length\" gives; \"longest\": padded to "
         "the longest row (10 positions), as padding=\"longest\" gives. PyTorch runs every position it is given; mmtune runs each "
         "row only up to the EOS it pools (identical results under the causal mask), so its two paddings do the same work.", "",
         f"Machine load: the run took {meta.get('wall_s', '?')} s with other work's CPU pressure at {meta.get('cpu_stall_pct', '?')}% "
         f"(/proc/pressure/cpu), load average {meta.get('load_before', '?')} before and {meta.get('load_after', '?')} after; "
         f"the cells kept had {min(stalls, default=0)}-{max(stalls, default=0)}% CPU pressure during their process."
         + load_note(stalls), "",
         "## mmtune vs PyTorch + PEFT, same method", "",
         "| method | text padded to | PyTorch s/step | mmtune s/step | speed ratio | PyTorch peak RSS GiB | mmtune peak RSS GiB | RSS ratio | trainable params |",
         "|---|---|---|---|---|---|---|---|---|"]
    pads = [(77, "77"), (10, "longest (10)")]
    for m in ("lora", "ia3", "full"):
        for pad, pname in pads:
            p, q = best.get(("pytorch", m, pad)), best.get(("mmtune", m, pad))
            if not p and not q:
                continue
            f = lambda r, k, fmt="{:.2f}": fmt.format(r[k]) if r else "n/a"
            sr = f"{p['s_per_step'] / q['s_per_step']:.2f}x" if p and q else "n/a"
            rr = f"{q['peak_rss_gib'] / p['peak_rss_gib']:.0%}" if p and q else "n/a"
            tp = (q or p)["trainable_params"]
            L.append(f"| {m} | {pname} | {f(p, 's_per_step')} | {f(q, 's_per_step')} | {sr} | {f(p, 'peak_rss_gib')} | "
                     f"{f(q, 'peak_rss_gib')} | {rr} | {tp:,} |")
    L += ["", "speed ratio = PyTorch s/step / mmtune s/step (above 1: mmtune faster); RSS ratio = mmtune / PyTorch."]

    lora = {pad: best.get(("mmtune", "lora", pad)) for pad, _ in pads}
    full = best.get(("mmtune", "full", 77))
    plora = {pad: best.get(("pytorch", "lora", pad)) for pad, _ in pads}
    L += ["", "## mmtune configurations: memory and speed", "",
          "| configuration | text padded to | s/step | step / mmtune fp32 LoRA step | peak RSS GiB | activations GiB | "
          "RSS / mmtune full | RSS / PyTorch + PEFT LoRA (77) | RSS / PyTorch + PEFT LoRA (longest) | trainable params |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    pct = lambda a, b: f"{a / b:.0%}" if a is not None and b else "n/a"
    for c, desc in MMTUNE_CONFIGS:
        for pad, pname in pads:
            q = best.get(("mmtune", c, pad))
            if not q:
                continue
            lr = lora.get(pad) or lora.get(77)
            step = f"{q['s_per_step'] / lr['s_per_step']:.2f}x" if lr else "n/a"
            L.append(f"| {desc} | {pname} | {q['s_per_step']:.2f} | {step} | {q['peak_rss_gib']:.2f} | "
                     f"{q.get('activation_gib', float('nan')):.2f} | {pct(q['peak_rss_gib'], full and full['peak_rss_gib'])} | "
                     f"{pct(q['peak_rss_gib'], plora[77] and plora[77]['peak_rss_gib'])} | "
                     f"{pct(q['peak_rss_gib'], plora[10] and plora[10]['peak_rss_gib'])} | {q['trainable_params']:,} |")

    L += ["", "## Issue 13's goals", "", "| goal | QLoRA row | measured | met |", "|---|---|---|---|"]
    qrows = [(c, d) for c, d in MMTUNE_CONFIGS if c.startswith("qlora")]
    if not any(best.get(("mmtune", c, 77)) for c, _ in qrows):
        L.append("| (QLoRA not measured: this mmtune has no `bench train --quantize`) | | | |")
    for c, d in qrows:
        q = best.get(("mmtune", c, 77))
        if not q:
            continue
        rss = q["peak_rss_gib"]

        def goal(text, val, need, fmtv):
            if val is None:
                L.append(f"| {text} | {d} | n/a | n/a |")
            else:
                L.append(f"| {text} | {d} | {fmtv(val)} | {'yes' if val <= need else 'no'} |")
        goal("peak RSS <= 30% of mmtune full fine-tuning", rss / full["peak_rss_gib"] if full else None, 0.30, "{:.0%}".format)
        for pad, pname in pads:
            p = plora[pad]
            goal(f"peak RSS <= 25% of PyTorch + PEFT LoRA (text {pname})", rss / p["peak_rss_gib"] if p else None, 0.25, "{:.0%}".format)
        lck = best.get(("mmtune", "lora+ckpt", 77))
        also = (lambda v: f"{v:.2f}x (vs fp32 LoRA + checkpointing: {q['s_per_step'] / lck['s_per_step']:.2f}x)") \
            if c.endswith("+ckpt") and lck else "{:.2f}x".format
        goal("step <= 1.3x mmtune fp32 LoRA step", q["s_per_step"] / lora[77]["s_per_step"] if lora[77] else None, 1.3, also)
    missing = {}
    for r in errors:  # a unit that failed in every round
        k = (r.get("engine"), r.get("config"), r.get("text_pad"))
        if k not in best:
            missing[k] = r.get("error") or r.get("skipped")
    if missing:
        L += ["", "Not measured:"] + [f"- {e} {c} (text {p}): {msg}" for (e, c, p), msg in missing.items()]
    open(md, "w").write("\n".join(L) + "\n")
    print("\n".join(L))


if __name__ == "__main__":
    main()
