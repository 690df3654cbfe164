#!/usr/bin/env python3
"""Checks that a CLIP snapshot written by mmtune (`mmtune init`, `make pretrain`, a merge) is a
real Hugging Face checkpoint: transformers' CLIPModel.from_pretrained loads it with no missing,
unexpected or mismatched tensors, and the image and text embeddings of transformers (with
CLIPTokenizer and CLIPImageProcessorPil read from the folder) agree with `mmtune embed`.

Usage (from the repository root, after building build/mmtune):
    python3 tools/check_hf_load.py MODEL_DIR [--mmtune build/mmtune] [--image PATH ...]
                                   [--text STR ...] [--tol 1e-4]

Needs torch, transformers and pillow (tools/requirements.txt). Prints one line per check and
exits non-zero on the first failure. Tolerance: largest absolute difference of the normalised
embeddings (default 1e-4; both sides compute in float32).
"""
import argparse
import glob
import json
import os
import subprocess
import sys

import numpy as np
import torch
from PIL import Image
from transformers import CLIPImageProcessorPil, CLIPModel, CLIPTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_TEXTS = ["a photo of a sneaker", "a small red circle left of a blue square",
                 "Ankle boot, product photo!", "two green triangles"]


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("--mmtune", default=os.path.join(ROOT, "build", "mmtune"))
    ap.add_argument("--image", action="append")
    ap.add_argument("--text", action="append")
    ap.add_argument("--tol", type=float, default=1e-4)
    a = ap.parse_args()
    images = a.image or sorted(glob.glob(os.path.join(ROOT, "tests", "fixtures", "clip", "images", "*")))
    texts = a.text or DEFAULT_TEXTS

    model, info = CLIPModel.from_pretrained(a.model, output_loading_info=True)
    model.eval()
    for key in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"):
        if info.get(key):
            fail(f"from_pretrained {key}: {info[key]}")
    n = sum(p.numel() for p in model.parameters())
    size = os.path.getsize(os.path.join(a.model, "model.safetensors"))
    print(f"ok   CLIPModel.from_pretrained: {n} parameters, no missing/unexpected keys, "
          f"model.safetensors {size / 1e6:.2f} MB")

    tok = CLIPTokenizer.from_pretrained(a.model)
    proc = CLIPImageProcessorPil.from_pretrained(a.model)

    args = [a.mmtune, "embed", "--model", a.model]
    for p in images:
        args += ["--image", p]
    for t in texts:
        args += ["--text", t]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    ours = [json.loads(line) for line in out.splitlines() if line.strip()]
    ours_img = np.array([o["embedding"] for o in ours if o["type"] == "image"], dtype=np.float64)
    ours_txt = np.array([o["embedding"] for o in ours if o["type"] == "text"], dtype=np.float64)

    with torch.no_grad():
        pil = [Image.open(p).convert("RGB") for p in images]
        pix = proc(images=pil, return_tensors="pt")["pixel_values"]
        ref_img = model.get_image_features(pixel_values=pix)
        enc = tok(texts, padding=True, return_tensors="pt")
        ref_txt = model.get_text_features(**enc)
    ref_img = getattr(ref_img, "pooler_output", ref_img)
    ref_txt = getattr(ref_txt, "pooler_output", ref_txt)
    ref_img = torch.nn.functional.normalize(ref_img, dim=-1).double().numpy()
    ref_txt = torch.nn.functional.normalize(ref_txt, dim=-1).double().numpy()

    for name, mine, ref in (("image", ours_img, ref_img), ("text", ours_txt, ref_txt)):
        if mine.shape != ref.shape:
            fail(f"{name} embeddings: mmtune {mine.shape}, transformers {ref.shape}")
        d = float(np.abs(mine - ref).max())
        if not d <= a.tol:
            fail(f"{name} embeddings differ by {d:.3g} (tolerance {a.tol:g})")
        print(f"ok   {name} embeddings of {len(mine)} inputs agree to {d:.2e} (tolerance {a.tol:g})")


if __name__ == "__main__":
    main()
