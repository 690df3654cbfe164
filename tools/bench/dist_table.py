#!/usr/bin/env python3
"""bench/results/dist.md from dist_raw.jsonl (scripts/bench_dist.sh writes both), and the
per-run summary of an mmtune training run that the script puts into dist_raw.jsonl.

  dist_table.py RAW MD
      Raw lines: {"unit": "mmtune"|"pytorch", "round", "stall_pct", "ranks", "threads", "batch",
      "s_per_step", "images_per_s", ...} for a training run; {"unit", "bytes", "median_s",
      "busbw_gb_s", ...} for an all-reduce size; {"error"} for a unit that failed; one "meta" line
      with the run's load. A cell is the median over rounds; efficiency = images/s at 2 ranks /
      (2 x images/s at 1 rank), from the medians (and per round, paired by round).

  dist_table.py --metrics RUN/metrics.jsonl --result RESULT.json --ranks R --threads T --batch B --skip K
      One JSON line for an mmtune run from rank 0's metrics.jsonl: per-step seconds (differences
      of elapsed_s), the mean of the steps after the first K, the all-reduce's seconds per step
      (comm_s: the gradient all-reduce, the loss sum, and the wait for the slowest rank to arrive),
      and, from the JSON line `mmtune train` printed (RESULT.json), the trainable parameter count
      and rank 0's peak RSS.
"""
import argparse
import json
import platform
import statistics
import subprocess
import sys


def summarize_run(a):
    rows = [json.loads(l) for l in open(a.metrics) if l.strip()]
    if len(rows) <= a.skip:
        raise SystemExit(f"{a.metrics}: {len(rows)} steps, not more than --skip {a.skip}")
    elapsed = [r["elapsed_s"] for r in rows]
    steps = [elapsed[0]] + [elapsed[i] - elapsed[i - 1] for i in range(1, len(elapsed))]
    kept = steps[a.skip:]
    per = sum(kept) / len(kept)
    out = {"engine": "mmtune", "ranks": a.ranks, "threads": a.threads, "batch": a.batch, "steps": len(rows),
           "skip": a.skip, "s_per_step": per, "images_per_s": a.ranks * a.batch / per,
           "step_times": [round(t, 4) for t in steps],
           "data_wait_s": sum(r.get("data_wait_s", 0) for r in rows[a.skip:]) / len(kept)}
    if all("comm_s" in r for r in rows):
        comm = [r["comm_s"] for r in rows]
        out["comm_times"] = [round(c, 4) for c in comm]
        out["comm_s_per_step"] = sum(comm[a.skip:]) / len(kept)
        out["comm_share"] = out["comm_s_per_step"] / per
    result = [json.loads(l) for l in open(a.result) if l.startswith("{")] if a.result else []
    if result and "trainable_params" in result[-1]:
        out["trainable_params"] = result[-1]["trainable_params"]
        out["grad_bytes"] = 4 * out["trainable_params"]
        out["peak_rss_mb"] = result[-1].get("peak_rss_mb")
    print(json.dumps(out))


QUIET = 10  # % CPU pressure under which a unit counts as run on an otherwise quiet machine


def quiet_or_all(rs):
    """The units that ran on a quiet machine, or all of them when none did."""
    quiet = [r for r in rs if r.get("stall_pct", 0) < QUIET]
    return quiet or rs


def med(xs):
    return statistics.median(xs) if xs else None


def fmt(x, spec=".2f", none="-"):
    return none if x is None else format(x, spec)


def table(raw, md):
    rows = [json.loads(l) for l in open(raw) if l.strip()]
    meta = next((r for r in rows if r.get("unit") == "meta"), {})
    errors = [r for r in rows if r.get("unit") != "meta" and "error" in r]
    train = [r for r in rows if "s_per_step" in r]
    ar = [r for r in rows if "bytes" in r and "median_s" in r]
    cpuinfo = open("/proc/cpuinfo").read().splitlines()
    cpu = next((l.split(":", 1)[1].strip() for l in cpuinfo if l.startswith("model name")), "?")
    nproc = subprocess.check_output(["nproc"]).decode().strip()

    def first(key, method="lora"):
        return next((r[key] for r in train if key in r and r.get("method", "lora") == method), "?")

    def cell(engine, method, ranks, threads):
        rs = [r for r in train if r["unit"] == engine and r.get("method", "lora") == method and
              int(r["ranks"]) == ranks and int(r["threads"]) == threads]
        if not rs:
            return None
        all_rounds = {r["round"]: r for r in rs}
        rs = quiet_or_all(rs)
        s = [r["s_per_step"] for r in rs]
        c = {"n": len(all_rounds), "kept": len(rs), "s": med(s), "lo": min(s), "hi": max(s),
             "ips": med([r["images_per_s"] for r in rs]), "stall": med([r["stall_pct"] for r in rs]),
             "by_round": all_rounds, "rss": med([r["peak_rss_mb"] for r in rs if r.get("peak_rss_mb")])}
        if all("comm_s_per_step" in r for r in rs):
            c["comm"] = med([r["comm_s_per_step"] for r in rs])
            c["share"] = med([r["comm_share"] for r in rs])
        return c

    def scaling_rows(engine, name, method, layouts):
        """Table rows of one engine and method; efficiency against its 1 x 1 cell."""
        out, base = [], cell(engine, method, 1, 1)
        for ranks, threads in layouts:
            c = cell(engine, method, ranks, threads)
            if not c:
                continue
            eff, per_round = None, []
            if base and (ranks, threads) != (1, 1):
                eff = c["ips"] / (2 * base["ips"])
                for rd, r in sorted(c["by_round"].items()):
                    b = base["by_round"].get(rd)
                    if b:
                        loaded = max(r["stall_pct"], b["stall_pct"]) >= QUIET
                        per_round.append(f"{r['images_per_s'] / (2 * b['images_per_s']):.0%}" + ("*" if loaded else ""))
            eff_s = "1 (baseline)" if (ranks, threads) == (1, 1) else (
                f"**{eff:.0%}**" + (f" (rounds: {', '.join(per_round)})" if per_round else "") if eff is not None else "-")
            share = f"{c['share']:.1%} ({c['comm'] * 1e3:.0f} ms)" if "share" in c else (
                "none" if ranks == 1 else "overlapped with backward (not measured)")
            out.append(f"| {name} | {ranks} x {threads} | {ranks * int(batch)} | {c['s']:.2f} [{c['lo']:.2f}-{c['hi']:.2f}] | "
                       f"{c['ips']:.2f} | {eff_s} | {share} | {c['kept']} of {c['n']} | {c['stall']:.0f} |")
        return out

    batch = meta.get("batch", first("batch"))
    stalls = [r["stall_pct"] for r in train + ar]
    busy = sum(1 for x in stalls if x >= QUIET)
    header = ("| engine | ranks x threads | pairs / step | s / step | images / s | efficiency | all-reduce share of the step "
              "| rounds kept | CPU pressure % |\n|---|---|---|---|---|---|---|---|---|")
    L = ["# Data-parallel scaling: mmtune (MPI) vs PyTorch DDP (gloo), random ViT-B/32 CLIP, CPU", "",
         f"Measured {meta.get('finished_utc', '?')} UTC on {cpu} ({nproc} cores), Linux {platform.release()}; "
         f"{meta.get('mpirun', 'mpirun')}; PyTorch {first('torch')} + transformers {first('transformers')} + PEFT "
         f"{first('peft')}; mmtune {meta.get('mmtune_commit', '?')}. OPENBLAS_CORETYPE unset, OMP_WAIT_POLICY=PASSIVE, "
         "no core binding (mpirun --bind-to none; PyTorch's processes are not bound either).", "",
         f"The job: LoRA r 8, alpha 16 on q_proj and v_proj of both towers ({fmt(first('trainable_params'), ',')} trainable "
         "parameters) of a random CLIP of openai/clip-vit-base-patch32's configuration (151,277,313 parameters), "
         f"AdamW, {batch} image-text pairs per rank per step: 2 ranks train on twice the examples of one. Each rank has one "
         "thread (OMP_NUM_THREADS=1 / torch.set_num_threads(1)), the single-rank baseline too; \"1 x 2\" is one "
         "process with 2 threads on the same per-process batch, for context. mmtune: `mmtune train` (rank 0's "
         "metrics.jsonl: elapsed_s and comm_s) on 64 synthetic 224 px pairs, texts run to their EOS (about 13 tokens); "
         "PyTorch: tools/bench/torch_ddp.py, DistributedDataParallel over gloo on 127.0.0.1, fixed random batches, texts "
         f"of {meta.get('text_len', '?')} positions (DDP's bucketed all-reduce overlaps backward; mmtune's runs after it). "
         f"{meta.get('rounds', '?')} rounds, {meta.get('steps', '?')} steps per process of which the first "
         f"{meta.get('skip', '?')} are left out (warm-up; full fine-tuning: {meta.get('steps_full', '?')} and "
         f"{meta.get('skip_full', '?')}); the units interleaved, the order rotating by round; a cell is "
         f"the median over the rounds in which its unit ran on a quiet machine (under {QUIET}% CPU pressure; all rounds "
         "where none did), the range in brackets; efficiency from those medians, and per round (* = a round in which "
         "one of the two units ran under load).", "",
         f"Machine load: the run took {meta.get('wall_s', '?')} s"
         + (f" ({meta['quiet_wait_s']} s of it waiting for a quiet machine before units, QUIET_WAIT)"
            if meta.get("quiet_wait_s") else "")
         + " with other work's CPU pressure at "
         f"{meta.get('cpu_stall_pct', '?')}% (/proc/pressure/cpu), load average {meta.get('load_before', '?')} before and "
         f"{meta.get('load_after', '?')} after; the units saw {min(stalls, default=0)}-{max(stalls, default=0)}% CPU "
         "pressure. "
         + (f"Every unit ran while the machine was otherwise quiet (under {QUIET}% CPU pressure)." if not busy else
            f"{busy} of the {len(stalls)} units ran while other work loaded the machine ({QUIET}% CPU pressure or more) "
            "and are left out where a quiet round of the same unit exists (the table says how many rounds a cell "
            "keeps): a 2-rank run needs both cores, so outside load costs it more than a 1-rank run, and its "
            "efficiency reads low."),
         "", "## LoRA: scaling from 1 rank to 2", "", header]
    L += scaling_rows("mmtune", "mmtune", "lora", ((1, 1), (2, 1), (1, 2)))
    L += scaling_rows("pytorch", "PyTorch DDP", "lora", ((1, 1), (2, 1), (1, 2)))
    L += ["", "efficiency = images/s / (2 x images/s of 1 rank x 1 thread): 100% is perfect scaling onto the second core "
          "(for 1 x 2: how well one process uses both cores)."]

    # The all-reduce inside the step: transfer vs waiting for the other rank.
    grad = first("grad_bytes")
    m2 = cell("mmtune", "lora", 2, 1)
    at_grad = [r for r in ar if r["unit"] == "mmtune" and isinstance(grad, int) and abs(r["bytes"] - grad) <= 4]
    if m2 and "comm" in m2:
        t_raw = med([r["median_s"] for r in quiet_or_all(at_grad)]) if at_grad else None
        L += ["", "## The all-reduce inside mmtune's LoRA step (2 ranks)", "",
              f"Once per step the ranks all-reduce the packed LoRA gradient: {fmt(first('trainable_params'), ',')} floats = "
              f"{grad / 1e6:.2f} MB (then the 8-byte loss sum). comm_s (rank 0's seconds inside the collectives) is "
              f"{m2['comm'] * 1e3:.1f} ms per step, {m2['share']:.2%} of the {m2['s']:.2f} s step."
              + (f" The bare all-reduce of that buffer takes {t_raw * 1e3:.2f} ms (`mmtune bench allreduce`, below), "
                 f"{t_raw / m2['s']:.3%} of the step; the rest of comm_s is rank 0 waiting in the collective for rank 1 "
                 "to finish its backward (the ranks' steps differ by that much from step to step), not bandwidth."
                 if t_raw else "")]

    full1, full2 = cell("mmtune", "full", 1, 1), cell("mmtune", "full", 2, 1)
    if full1 or full2:
        fb = first("grad_bytes", "full")
        L += ["", "## Full fine-tuning: the all-reduce of every gradient (mmtune)", "",
              f"Every parameter trainable ({fmt(first('trainable_params', 'full'), ',')}), AdamW: a {fb / 1e6:.0f} MB "
              "all-reduce per step, 300 times LoRA's; the same data, batch and rounds."
              if isinstance(fb, int) else "Every parameter trainable, AdamW.",
              "", header]
        L += scaling_rows("mmtune", "mmtune full", "full", ((1, 1), (2, 1)))
        ov = cell("mmtune-overlap", "full", 2, 1)
        if ov and full2:
            L += ["", f"With `--overlap-comm` (the text tower's gradients all-reduced on a thread while the vision tower "
                  f"runs backward; the same numbers): {ov['s']:.3f} s a step against {full2['s']:.3f} s without "
                  f"({full2['s'] / ov['s']:.3f}x), the all-reduce the step waits for {fmt(ov.get('comm'), '.3f')} s against "
                  f"{fmt(full2.get('comm'), '.3f')} s. With one core per rank the thread takes its time from the backward "
                  "it hides behind, so the overlap cannot pay here; it is for ranks with spare cores on a slower network "
                  "(docs/distributed.md)."]
        rss = [c["rss"] for c in (full1, full2) if c and c.get("rss")]
        if rss:
            L += ["", "Peak RSS of rank 0 (getrusage): " + ", ".join(
                f"{name} {c['rss'] / 1024:.2f} GiB" for name, c in (("1 rank", full1), ("2 ranks", full2)) if c and c.get("rss"))
                + " (the second rank holds as much again; the 2-rank run also keeps the packed gradient buffer)."]

    if ar:
        sizes = sorted({r["bytes"] for r in ar})
        L += ["", "## All-reduce bandwidth, 2 ranks on one machine", "",
              "Float32 sum; a call is timed from a common barrier, its time the slowest rank's; the median of 10 calls "
              "after 2 untimed, then the median over the quiet rounds (as above). busbw = bytes / time x 2 (R-1) / R "
              "(nccl-tests' convention; at R = 2 it equals bytes / time). mmtune: `mpirun -np 2 mmtune bench allreduce` "
              "(MPI_Alltoallv reduce-scatter, rank-order sum, MPI_Allgatherv; OpenMPI's shared-memory transport); "
              "PyTorch: torch.distributed.all_reduce over gloo (TCP on 127.0.0.1).", "",
              "| buffer | mmtune ms | mmtune busbw GB/s | gloo ms | gloo busbw GB/s | rounds kept (mmtune, gloo) |",
              "|---|---|---|---|---|---|"]
        for b in sizes:
            def pick(unit):
                return [r for r in ar if r["unit"] == unit and r["bytes"] == b]

            def get(unit, key):
                return med([r[key] for r in quiet_or_all(pick(unit))])
            label = f"{b / 1e6:.3g} MB" + (" (the LoRA gradient)" if isinstance(grad, int) and abs(b - grad) <= 4 else "")
            mt, gt = get("mmtune", "median_s"), get("pytorch", "median_s")
            kept = ", ".join(f"{len(quiet_or_all(pick(u)))} of {len(pick(u))}" for u in ("mmtune", "pytorch"))
            L.append(f"| {label} | {fmt(mt and mt * 1e3)} | {fmt(get('mmtune', 'busbw_gb_s'))} | {fmt(gt and gt * 1e3)} | "
                     f"{fmt(get('pytorch', 'busbw_gb_s'))} | {kept} |")
        wrong = [r for r in ar if r.get("sum_ok") is False]
        if wrong:
            L.append(f"\n{len(wrong)} all-reduce measurements gave a wrong sum.")

    if errors:
        L += ["", "## Units that failed", ""]
        for r in errors:
            L.append(f"- {r['unit']} {r.get('method', '')} {r.get('ranks', '?')} x {r.get('threads', '?')}, "
                     f"round {r.get('round', '?')}: {r['error']}")
    open(md, "w").write("\n".join(L) + "\n")
    print(f"wrote {md}")


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--metrics":
        ap = argparse.ArgumentParser()
        ap.add_argument("--metrics", required=True)
        ap.add_argument("--result")
        ap.add_argument("--ranks", type=int, required=True)
        ap.add_argument("--threads", type=int, required=True)
        ap.add_argument("--batch", type=int, required=True)
        ap.add_argument("--skip", type=int, default=3)
        summarize_run(ap.parse_args())
        return 0
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    table(sys.argv[1], sys.argv[2])
    return 0


if __name__ == "__main__":
    sys.exit(main())
