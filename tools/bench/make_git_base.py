#!/usr/bin/env python3
"""A random-weight GIT captioner of microsoft/git-base's size, for the caption benchmark.

GitForCausalLM(GitConfig()) with torch.manual_seed(0): GitConfig's defaults are git-base's
sizes (decoder: hidden 768, 6 layers, 12 heads, vocab 30522; vision: ViT-B/16 at 224 px,
12 layers, 197 image tokens), about 177M parameters. save_pretrained writes config.json and
model.safetensors (float32, ~700 MB) into --out, which both `mmtune bench caption --model`
and tools/bench/torch_caption.py load. No tokenizer or processor: the benchmark feeds token
ids and preprocessed pixels. scripts/bench_caption.sh makes the folder in a temporary place
and deletes it at the end.

Run: python3 tools/bench/make_git_base.py --out /tmp/git-base-random
"""
import argparse
import os
import sys


def main():
    ap = argparse.ArgumentParser(description="save a random git-base-sized GitForCausalLM snapshot")
    ap.add_argument("--out", required=True, help="folder to write (created; must be empty or absent)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if os.path.isdir(a.out) and os.listdir(a.out):
        ap.error(f"--out {a.out} is not empty")
    import torch
    import transformers
    from transformers import GitConfig, GitForCausalLM
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    torch.manual_seed(a.seed)
    model = GitForCausalLM(GitConfig()).eval()
    model.save_pretrained(a.out)
    n = sum(p.numel() for p in model.parameters())
    print(f"make_git_base: {n:,} parameters -> {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
