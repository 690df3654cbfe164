#!/usr/bin/env python3
"""Reference benchmark: PyTorch + transformers + PEFT CLIPModel training-step throughput.

Same job as mmtune's training bench: random weights with the exact openai/clip-vit-base-patch32
configuration (CLIPConfig defaults), fp32 on CPU, CLIPModel(..., return_loss=True) (symmetric
contrastive loss), loss.backward(), torch.optim.AdamW(lr=1e-4, weight_decay=0.01, foreach=False)
step, on a fixed random batch: pixel_values (B, 3, 224, 224) and B token rows of --text-len
tokens (<|startoftext|> ... <|endoftext|> padded with <|endoftext|> to --text-len, as
padding="max_length" gives; no attention_mask). --pad longest instead pads to the longest row, as
padding="longest" gives: every row is BOS + 8 tokens + EOS, so 10 positions (all-ones mask, so none
passed).

Methods (each in a fresh subprocess, so peak RSS is per method):
  full    every parameter trainable (incl. logit_scale)
  lora    PEFT LoRA r=8 alpha=16 dropout 0 on q_proj, v_proj of both towers
  ia3     PEFT IA3 on k_proj, v_proj, fc2 (fc2 as feedforward_modules)
  prompt  PEFT prompt tuning, 8 virtual tokens } not supported by PEFT 0.21 on CLIPModel: with
  prefix  PEFT prefix tuning, 8 virtual tokens } task_type=None get_peft_model raises KeyError
          (prompt learning needs a task type), and with FEATURE_EXTRACTION PEFT calls
          CLIPModel.forward with inputs_embeds (and past_key_values for prefix), which CLIPModel
          passes on through **kwargs to the vision encoder: "TypeError: CLIPEncoder(...) got
          multiple values for keyword argument 'inputs_embeds'". PEFT also has no visual prompt
          tuning. The script still tries them and prints a "skipped" line with the error, so a
          PEFT that supports them gets measured.

Prints one JSON line per method:
  {"method", "pad", "s_per_step", "images_per_s", "trainable_params", "peak_rss_gib", "batch",
   "text_len", "steps", "warmup", "threads", "torch", "transformers", "peft"}
s_per_step is the mean over the --steps timed steps after --warmup untimed ones; peak_rss_gib is
resource.getrusage(RUSAGE_SELF).ru_maxrss of the method's process (model + optimizer + batch).
Run with OMP_WAIT_POLICY=PASSIVE and OPENBLAS_CORETYPE unset (as scripts/bench.sh does for
torch_embed.py). Example: python3 tools/bench/torch_train.py --methods full,lora --steps 5
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

ALL_METHODS = ["full", "lora", "ia3", "prompt", "prefix"]
BOS, EOS = 49406, 49407


def build(method):
    import torch
    from transformers import CLIPConfig, CLIPModel
    torch.manual_seed(0)
    model = CLIPModel(CLIPConfig())
    if method == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    from peft import (IA3Config, LoraConfig, PrefixTuningConfig, PromptTuningConfig, TaskType,
                      get_peft_model)
    if method == "lora":
        cfg = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj"])
    elif method == "ia3":
        cfg = IA3Config(target_modules=["k_proj", "v_proj", "fc2"], feedforward_modules=["fc2"])
    elif method == "prompt":
        cfg = PromptTuningConfig(num_virtual_tokens=8, task_type=TaskType.FEATURE_EXTRACTION)
    elif method == "prefix":
        cfg = PrefixTuningConfig(num_virtual_tokens=8, task_type=TaskType.FEATURE_EXTRACTION)
    else:
        raise ValueError(method)
    return get_peft_model(model, cfg)


def child(a):
    import peft
    import torch
    import transformers
    transformers.logging.set_verbosity_error()
    if a.threads:
        torch.set_num_threads(a.threads)
    info = {"method": a.child, "pad": a.pad, "batch": a.batch, "text_len": a.text_len, "steps": a.steps,
            "warmup": a.warmup, "threads": torch.get_num_threads(), "torch": torch.__version__,
            "transformers": transformers.__version__, "peft": peft.__version__}
    g = torch.Generator().manual_seed(1)
    pixel_values = torch.randn((a.batch, 3, 224, 224), generator=g)
    input_ids = torch.full((a.batch, a.text_len), EOS, dtype=torch.long)
    n_tok = min(8, a.text_len - 2)
    input_ids[:, 0] = BOS
    input_ids[:, 1:1 + n_tok] = torch.randint(300, 1300, (a.batch, n_tok), generator=g)
    try:
        model = build(a.child)
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01, foreach=False)

        def step():
            opt.zero_grad(set_to_none=True)
            loss = model(input_ids=input_ids, pixel_values=pixel_values, return_loss=True).loss
            loss.backward()
            opt.step()
            return loss

        step()  # the first step also allocates the optimizer state; always untimed
    except Exception as e:  # noqa: BLE001 - prompt/prefix are expected to fail on CLIPModel
        lines = str(e).strip().splitlines() or [""]
        msg = lines[0] if len(lines) == 1 else f"{lines[0].strip()}...{lines[-1].strip()}"
        info["skipped"] = f"PEFT {peft.__version__} cannot train {a.child} on CLIPModel: " \
                          f"{type(e).__name__}: {msg[:200]}"
        print(json.dumps(info), flush=True)
        return 0
    for _ in range(max(0, a.warmup - 1)):
        step()
    times = []
    for _ in range(a.steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    mean = sum(times) / len(times)
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    out = {"method": a.child, "s_per_step": mean, "images_per_s": a.batch / mean,
           "trainable_params": sum(p.numel() for p in params),
           "peak_rss_gib": rss_kib / 2**20, "best_s": min(times)}
    out.update({k: v for k, v in info.items() if k != "method"})
    print(json.dumps(out), flush=True)
    return 0


def main():
    ap = argparse.ArgumentParser(description="PyTorch+PEFT CLIP training-step benchmark")
    ap.add_argument("--methods", default=",".join(ALL_METHODS),
                    help="comma-separated subset of " + ",".join(ALL_METHODS))
    ap.add_argument("--steps", type=int, default=5, help="timed steps per method")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps first (at least 1)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--text-len", type=int, default=77)
    ap.add_argument("--pad", default="max_length", choices=["max_length", "longest"],
                    help="max_length: texts padded to --text-len (77); longest: to the longest "
                         "row (BOS + 8 tokens + EOS = 10)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.steps < 1 or a.batch < 1 or a.text_len < 3:
        ap.error("--steps, --batch must be >= 1 and --text-len >= 3")
    if a.pad == "longest":
        a.text_len = min(a.text_len, 10)
    if a.child:
        return child(a)
    methods = [m.strip() for m in a.methods.split(",") if m.strip()]
    for m in methods:
        if m not in ALL_METHODS:
            ap.error(f"unknown method {m!r} (known: {', '.join(ALL_METHODS)})")
    rc = 0
    for m in methods:
        cmd = [sys.executable, os.path.abspath(__file__), "--child", m, "--steps", str(a.steps),
               "--warmup", str(a.warmup), "--threads", str(a.threads), "--batch", str(a.batch),
               "--text-len", str(a.text_len), "--pad", a.pad]
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines = [l for l in r.stdout.splitlines() if l.startswith("{")]
        if r.returncode != 0 or not lines:
            tail = r.stderr.strip().splitlines()[-1:] or [""]
            print(json.dumps({"method": m, "error": f"exit {r.returncode}: {tail[0][:300]}"}),
                  flush=True)
            rc = 1
            continue
        print(lines[-1], flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
