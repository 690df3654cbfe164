#!/usr/bin/env python3
"""Reference benchmark: PyTorch + transformers CLIPModel embedding throughput.

Same job as `mmtune bench embed`: random weights with the exact openai/clip-vit-base-patch32
configuration (CLIPConfig defaults), fp32, inference mode. Images: get_image_features on
(B, 3, 224, 224). Texts: get_text_features on B prompts of 10 tokens (padding="longest" as a
user would batch them; mmtune trims padding the same way). Prints one JSON line per
measurement. Run with OPENBLAS_CORETYPE unset and OMP_WAIT_POLICY=PASSIVE (scripts/bench.sh
does) so PyTorch runs at its best on this machine.
"""
import argparse
import json
import time

import torch
from transformers import CLIPConfig, CLIPModel


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", default="1,32")
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--tower", default="both", choices=["image", "text", "both"])
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = CLIPModel(CLIPConfig()).eval()
    for B in [int(x) for x in a.batch.split(",")]:
        for tower in ("image", "text"):
            if a.tower not in (tower, "both"):
                continue
            if tower == "image":
                x = torch.randn(B, 3, 224, 224)
                run = lambda: model.get_image_features(pixel_values=x)
            else:
                ids = torch.randint(300, 1300, (B, 10))
                ids[:, 0] = 49406
                ids[:, -1] = 49407
                run = lambda: model.get_text_features(input_ids=ids)
            times = []
            with torch.inference_mode():
                for it in range(a.warmup + a.iters):
                    t0 = time.perf_counter()
                    run()
                    dt = time.perf_counter() - t0
                    if it >= a.warmup:
                        times.append(dt)
            mean = sum(times) / len(times)
            print(json.dumps({"tower": tower, "batch": B, "mean_s": mean, "best_s": min(times),
                              "items_per_s": B / mean, "threads": torch.get_num_threads(),
                              "torch": torch.__version__}), flush=True)


if __name__ == "__main__":
    main()
