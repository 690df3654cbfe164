#!/usr/bin/env python3
"""Reference for scripts/bench_dist.sh: PyTorch DistributedDataParallel (gloo, CPU) LoRA training
of a random ViT-B/32-sized CLIP, and gloo's raw all-reduce.

Training (default mode): --nproc processes (torch.multiprocessing.spawn; rendezvous on
127.0.0.1 only), each with --threads torch threads and its own fixed random batch of --batch
image-text pairs (pixels (B, 3, 224, 224); texts BOS + up to 8 tokens, EOS-padded to --text-len),
so N processes train on N x batch examples per step. The model is tools/bench/torch_train.py's:
CLIPModel(CLIPConfig()) (openai/clip-vit-base-patch32's configuration, 151,277,313 parameters)
with PEFT LoRA r 8, alpha 16, dropout 0 on q_proj, v_proj of both towers; a step is
forward + symmetric contrastive loss (return_loss=True) + backward + AdamW(foreach=False).
With --nproc 1 the model is trained as is (no process group: the single-process baseline); with
more it is wrapped in DDP, which all-reduces the gradients in buckets while backward still runs.
Each step is timed on every rank; a step's time is the slowest rank's; the first --skip steps are
left out. Prints one JSON line:
  {"engine": "pytorch", "ranks", "threads", "batch", "text_len", "steps", "skip", "s_per_step",
   "images_per_s", "step_times", "trainable_params", "grad_bytes", "torch", "transformers", "peft"}

--allreduce-mb LIST instead times dist.all_reduce (sum) of float32 tensors of those sizes (MB,
10^6 bytes) over --nproc gloo processes: --iters calls after 2 untimed ones, each from a barrier,
the slowest rank's time, the median call; busbw = bytes / time x 2 (R - 1) / R (nccl-tests'
convention), one JSON line per size, as `mmtune bench allreduce --json` prints them.

Run with OMP_WAIT_POLICY=PASSIVE and OPENBLAS_CORETYPE unset, as scripts/bench_dist.sh does.
Example: python3 tools/bench/torch_ddp.py --nproc 2 --threads 1 --batch 16 --steps 8 --skip 3
"""
import argparse
import json
import os
import socket
import statistics
import sys
import time

BOS, EOS = 49406, 49407


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def setup(rank, a):
    import torch
    torch.set_num_threads(a.threads)
    if a.nproc > 1:
        import torch.distributed as dist
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{a.port}", rank=rank,
                                world_size=a.nproc)


def slowest(times):
    """Per-call times (list) -> the slowest rank's per call (every rank gets them)."""
    import torch
    t = torch.tensor(times, dtype=torch.float64)
    import torch.distributed as dist
    if dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.tolist()


def train(rank, a):
    import peft
    import torch
    import transformers
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from torch_train import build
    transformers.logging.set_verbosity_error()
    setup(rank, a)
    g = torch.Generator().manual_seed(1 + rank)  # each rank its own examples
    pixel_values = torch.randn((a.batch, 3, 224, 224), generator=g)
    input_ids = torch.full((a.batch, a.text_len), EOS, dtype=torch.long)
    n_tok = min(8, a.text_len - 2)
    input_ids[:, 0] = BOS
    input_ids[:, 1:1 + n_tok] = torch.randint(300, 1300, (a.batch, n_tok), generator=g)
    model = build("lora")  # seed 0: the same initial weights on every rank
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    trainable = sum(p.numel() for p in params)
    if a.nproc > 1:
        model = torch.nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01, foreach=False)
    times = []
    for _ in range(a.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = model(input_ids=input_ids, pixel_values=pixel_values, return_loss=True).loss
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    times = slowest(times)
    if rank == 0:
        kept = times[a.skip:]
        per = sum(kept) / len(kept)
        print(json.dumps({"engine": "pytorch", "ranks": a.nproc, "threads": a.threads, "batch": a.batch,
                          "text_len": a.text_len, "steps": a.steps, "skip": a.skip, "s_per_step": per,
                          "images_per_s": a.nproc * a.batch / per, "step_times": [round(t, 4) for t in times],
                          "trainable_params": trainable, "grad_bytes": 4 * trainable, "torch": torch.__version__,
                          "transformers": transformers.__version__, "peft": peft.__version__}), flush=True)


def allreduce(rank, a):
    import torch
    import torch.distributed as dist
    setup(rank, a)
    world = a.nproc
    for mb in a.allreduce_mb:
        n = max(1, int(mb * 1e6 / 4))
        buf = torch.empty(n, dtype=torch.float32)
        times = []
        for it in range(2 + a.iters):
            buf.fill_(float(rank + 1))
            if world > 1:
                dist.barrier()
            t0 = time.perf_counter()
            if world > 1:
                dist.all_reduce(buf)
            t = time.perf_counter() - t0
            if it >= 2:
                times.append(t)
        ok = bool((buf == world * (world + 1) / 2).all())
        times = slowest(times)
        if rank == 0:
            med = statistics.median(times)
            algbw = 4 * n / med / 1e9
            print(json.dumps({"engine": "pytorch-gloo", "bytes": 4 * n, "ranks": world, "backend": "gloo",
                              "iters": a.iters, "median_s": med, "min_s": min(times), "max_s": max(times),
                              "algbw_gb_s": algbw, "busbw_gb_s": algbw * 2 * (world - 1) / world,
                              "sum_ok": ok, "torch": torch.__version__}), flush=True)


def worker(rank, a):
    try:
        (allreduce if a.allreduce_mb else train)(rank, a)
    finally:
        import torch.distributed as dist
        if dist.is_initialized():
            dist.destroy_process_group()


def main():
    ap = argparse.ArgumentParser(description="PyTorch DDP (gloo) LoRA training step / all-reduce benchmark")
    ap.add_argument("--nproc", type=int, default=2, help="processes (ranks)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    ap.add_argument("--batch", type=int, default=16, help="image-text pairs per process per step")
    ap.add_argument("--text-len", type=int, default=16, help="token positions per text row")
    ap.add_argument("--steps", type=int, default=8, help="steps in all")
    ap.add_argument("--skip", type=int, default=3, help="first steps left out of the mean (warm-up)")
    ap.add_argument("--allreduce-mb", type=lambda s: [float(x) for x in s.split(",") if x],
                    help="time gloo's all-reduce of these sizes (MB) instead of training")
    ap.add_argument("--iters", type=int, default=10, help="--allreduce-mb: timed calls per size")
    a = ap.parse_args()
    if a.nproc < 1 or a.threads < 1 or a.batch < 1 or a.text_len < 3 or not 0 <= a.skip < a.steps:
        ap.error("--nproc, --threads, --batch >= 1, --text-len >= 3 and 0 <= --skip < --steps")
    if a.allreduce_mb and a.nproc < 2:
        ap.error("--allreduce-mb needs --nproc 2 or more")
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")  # loopback only
    a.port = free_port()
    if a.nproc == 1:
        worker(0, a)
        return 0
    import torch.multiprocessing as mp
    mp.spawn(worker, args=(a,), nprocs=a.nproc, join=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
