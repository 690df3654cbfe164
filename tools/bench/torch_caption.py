#!/usr/bin/env python3
"""Reference benchmark: PyTorch + transformers (+ PEFT) GIT captioning and a LoRA training step.

The same job as `mmtune bench caption` (tools/cli/bench_caption.c), on the same snapshot (a
random git-base-sized GitForCausalLM from tools/bench/make_git_base.py), fp32 on CPU:

generate  model.eval(), torch.no_grad(): model.generate(pixel_values=(B, 3, 224, 224),
          max_new_tokens=N, min_new_tokens=N, num_beams=k, do_sample=False, use_cache=c).
          min_new_tokens = max_new_tokens makes every caption exactly N tokens on both sides.
          Timed from the preprocessed pixels (the vision tower included); tokens/s counts B * N
          caption tokens per call whatever the beams. Without the cache transformers runs the
          whole sequence, vision tower included, at every step.
train     PEFT LoRA r=8, lora_alpha=16, lora_dropout=0 on query, value; model.train() with the
          decoder's dropout probabilities set to 0 (mmtune trains with eval()-mode numerics, so
          both compute the same thing); one step = zero_grad, GitForCausalLM(input_ids,
          pixel_values, labels=input_ids).loss, backward, torch.optim.AdamW(lr=1e-4,
          weight_decay=0.01, foreach=False).step(); batch --train-batch of --caption-tokens.

Inputs come from the same index formulas as the C side (pixels_fill, caption_ids), so greedy
tokens and the first loss are comparable. Prints one JSON line per measurement:
  {"kind": "generate", "batch", "beams", "cache", "new_tokens", "iters", "mean_s", "best_s",
   "tokens_per_s", "tokens" (row 0), "threads", "torch", "transformers"}
  {"kind": "train", "method": "lora", "batch", "caption_tokens", "steps", "s_per_step", "best_s",
   "trainable_params", "first_loss", "peak_rss_gib", "threads", "torch", "transformers", "peft"}
--profile adds to each cached generate line "profile_vision_s" (vision tower + projection on the
B * k images generate expands to) and "profile_step_ms" (one cached decoding step at B * k rows).
Run with OMP_WAIT_POLICY=PASSIVE and OPENBLAS_CORETYPE unset, as scripts/bench.sh does.
Example: python3 tools/bench/torch_caption.py --model /tmp/git-base --batch 1 --beams 1,3
"""
import argparse
import json
import resource
import sys
import time
import warnings

BOS, SEP = 101, 102


def pixels(B, S):
    """(B, 3, S, S): pixel i = ((i * 2654435761) mod 2^32 >> 20) / 2048 - 1, as bench_caption.c."""
    import numpy as np
    import torch
    i = np.arange(B * 3 * S * S, dtype=np.uint64)
    x = (((i * np.uint64(2654435761)) & np.uint64(0xFFFFFFFF)) >> np.uint64(20)).astype(np.float32) / 2048.0 - 1.0
    return torch.from_numpy(x.reshape(B, 3, S, S).copy())


def caption_ids(B, L):
    """(B, L): [CLS], 1000 + ((b * L + j) * 7919) mod 28000, [SEP]."""
    import torch
    ids = torch.empty((B, L), dtype=torch.long)
    for b in range(B):
        for j in range(L):
            ids[b, j] = BOS if j == 0 else SEP if j == L - 1 else 1000 + ((b * L + j) * 7919) % 28000
    return ids


def versions():
    import torch
    import transformers
    return {"threads": torch.get_num_threads(), "torch": torch.__version__, "transformers": transformers.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def bench_generate(model, a, S):
    import torch
    for cache in a.cache_modes:
        for B in a.batches:
            for k in a.beams_list:
                pv = pixels(B, S)
                times, tokens = [], []
                with torch.no_grad():
                    for it in range(a.warmup + a.iters):
                        t0 = time.perf_counter()
                        out = model.generate(pixel_values=pv, max_new_tokens=a.new_tokens, min_new_tokens=a.new_tokens,
                                             num_beams=k, do_sample=False, use_cache=cache)
                        dt = time.perf_counter() - t0
                        new = out.shape[1] - 1  # the BOS prompt comes back first
                        if new != a.new_tokens:
                            raise SystemExit(f"torch_caption: generated {new} tokens, not {a.new_tokens}")
                        tokens = out[0, 1:].tolist()
                        if it >= a.warmup:
                            times.append(dt)
                mean = sum(times) / len(times)
                row = {"kind": "generate", "batch": B, "beams": k, "cache": cache, "new_tokens": a.new_tokens,
                       "iters": a.iters, "mean_s": mean, "best_s": min(times), "tokens_per_s": B * a.new_tokens / mean,
                       "tokens": tokens}
                if a.profile and cache:
                    row.update(profile(model, pv, B, k))
                row.update(versions())
                print(json.dumps(row), flush=True)


def profile(model, pv, B, k):
    """Where generate's time goes: the vision tower + projection on the B * k images generate
    expands to, and the mean of 5 cached decoding steps at B * k rows after a prefill."""
    import torch
    rows = B * k
    pvk = pv.repeat_interleave(k, dim=0)
    with torch.no_grad():
        t0 = time.perf_counter()
        model.git.visual_projection(model.git.image_encoder(pvk).last_hidden_state)
        vision = time.perf_counter() - t0
        ids = torch.full((rows, 1), BOS, dtype=torch.long)
        out = model(input_ids=ids, pixel_values=pvk, use_cache=True)
        cache = out.cache
        tok = torch.full((rows, 1), 2000, dtype=torch.long)
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            model(input_ids=tok, cache=cache, use_cache=True)
            times.append(time.perf_counter() - t0)
    return {"profile_rows": rows, "profile_vision_s": vision, "profile_step_ms": 1e3 * sum(times) / len(times)}


def bench_train(model, a, S):
    import peft
    import torch
    from peft import LoraConfig, get_peft_model
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["query", "value"]))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01, foreach=False)
    pv, ids = pixels(a.train_batch, S), caption_ids(a.train_batch, a.caption_tokens)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = model(input_ids=ids, pixel_values=pv, labels=ids).loss
        loss.backward()
        opt.step()
        return loss.item()

    first_loss = step()  # also allocates the optimizer state: untimed
    times = []
    t_all = time.perf_counter()
    for _ in range(a.steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    per = (time.perf_counter() - t_all) / a.steps
    row = {"kind": "train", "method": "lora", "batch": a.train_batch, "caption_tokens": a.caption_tokens,
           "steps": a.steps, "s_per_step": per, "best_s": min(times),
           "trainable_params": sum(p.numel() for p in params), "first_loss": first_loss,
           "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, "peft": peft.__version__}
    row.update(versions())
    print(json.dumps(row), flush=True)


def main():
    ap = argparse.ArgumentParser(description="PyTorch + transformers GIT caption benchmark")
    ap.add_argument("--model", required=True, help="GIT snapshot (tools/bench/make_git_base.py)")
    ap.add_argument("--batch", default="1,8")
    ap.add_argument("--beams", default="1,3")
    ap.add_argument("--cache", default="both", choices=["on", "off", "both"])
    ap.add_argument("--new-tokens", type=int, default=20)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--parts", default="generate,train")
    ap.add_argument("--train-batch", type=int, default=16)
    ap.add_argument("--caption-tokens", type=int, default=20)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--profile", action="store_true",
                    help="with the cache: also time the vision tower and a decoding step alone")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    a = ap.parse_args()
    a.batches = [int(x) for x in a.batch.split(",")]
    a.beams_list = [int(x) for x in a.beams.split(",")]
    a.cache_modes = {"on": [True], "off": [False], "both": [True, False]}[a.cache]
    parts = set(a.parts.split(","))
    if not parts <= {"generate", "train"} or not parts:
        ap.error("--parts takes generate, train or generate,train")
    if a.new_tokens < 1 or a.iters < 1 or a.steps < 1 or a.caption_tokens < 2:
        ap.error("--new-tokens, --iters, --steps must be >= 1 and --caption-tokens >= 2")

    import torch
    import transformers
    from transformers import GitForCausalLM
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore")
    if a.threads:
        torch.set_num_threads(a.threads)
    S = None
    if "generate" in parts:
        model = GitForCausalLM.from_pretrained(a.model).eval()
        S = model.config.vision_config.image_size
        bench_generate(model, a, S)
        del model
    if "train" in parts:
        model = GitForCausalLM.from_pretrained(a.model, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
        bench_train(model, a, model.config.vision_config.image_size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
