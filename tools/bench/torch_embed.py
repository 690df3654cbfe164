#!/usr/bin/env python3
"""Reference benchmark: CLIP embedding throughput in PyTorch and ONNX Runtime, fp32 and int8.

Same job as `mmtune bench embed [--int8]`: random weights with the exact
openai/clip-vit-base-patch32 configuration (CLIPConfig defaults, torch.manual_seed(0)), inference
mode. Images: get_image_features on (B, 3, 224, 224). Texts: get_text_features on B prompts of 10
tokens (padding="longest" as a user would batch them; mmtune trims padding the same way). Prints
one JSON line per measurement. Run with OPENBLAS_CORETYPE unset and OMP_WAIT_POLICY=PASSIVE
(scripts/bench.sh does) so PyTorch runs at its best on this machine.

Engines (--engine):
  torch       CLIPModel fp32 (the default; what this script always measured)
  torch-int8  torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8):
              int8 weights (per tensor), activations quantized per batch at run time. The
              quantized-kernel backend is torch.backends.quantized.engine; --qengine lists the
              backends to measure (default: every one of x86, fbgemm, onednn this torch supports),
              one JSON line each with "qengine", so a table can keep the fastest. On this x86
              build the default engine is "x86" (fbgemm or oneDNN picked per op).
  ort         ONNX Runtime CPUExecutionProvider on the exported model, fp32. The tower is
              exported once (torch.onnx.export, opset 17, dynamic batch and text length) into
              --cache; the session has intra_op threads = --threads and ORT_ENABLE_ALL.
  ort-int8    onnxruntime.quantization.quantize_dynamic of that export (QInt8 weights, dynamic
              uint8 activations: MatMulInteger / DynamicQuantizeMatMul). --per-channel both
              (default) measures per-tensor and per-channel weights, one line each with
              "per_channel", so a table can keep the faster.
  --ort-spin on|off|both: ORT's intra-op threads spin between ops (its default) or sleep; on a
              shared machine spinning threads fight other processes, as busy OpenMP threads do.
              Tried and left out because slower here: onnxruntime.transformers optimize_model
              (model_type "clip", fused SkipLayerNorm/QuickGelu) before quantizing.

"cpu_s" is the process's CPU time per timed call, all threads (time.process_time): less swayed
than the wall time by other work on a shared machine, though an engine whose threads spin while
waiting (ORT with spinning on) pays for the spinning in it.

Every engine other than torch fp32 also reports how far its embeddings are from PyTorch fp32 on
the same input ("max_abs_diff" and "min_cos" against torch fp32, "ref_abs_max" for scale), so
the rows compare equal work: the ONNX fp32 export agrees to ~1e-6, the int8 engines to what
int8 costs.
"""
import argparse
import hashlib
import json
import os
import sys
import time

import torch
from transformers import CLIPConfig, CLIPModel

BOS, EOS = 49406, 49407


def make_input(tower, B):
    g = torch.Generator().manual_seed(1000 + B + (0 if tower == "image" else 1))
    if tower == "image":
        return torch.randn((B, 3, 224, 224), generator=g)
    ids = torch.randint(300, 1300, (B, 10), generator=g)
    ids[:, 0] = BOS
    ids[:, -1] = EOS
    return ids


def torch_run(model, tower):
    if tower == "image":
        return lambda x: model.get_image_features(pixel_values=x).pooler_output
    return lambda x: model.get_text_features(input_ids=x).pooler_output


class Tower(torch.nn.Module):
    """The tower's embedding as a plain tensor (transformers 5 returns an output object)."""

    def __init__(self, model, tower):
        super().__init__()
        self.model, self.tower = model, tower

    def forward(self, x):
        if self.tower == "image":
            return self.model.get_image_features(pixel_values=x).pooler_output
        return self.model.get_text_features(input_ids=x).pooler_output


def onnx_path(cache, tower, quant=None):
    tag = hashlib.sha1(CLIPConfig().to_json_string().encode()).hexdigest()[:8]
    name = f"clip-b32-{tag}-seed0-{tower}-fp32.onnx" if quant is None else \
        f"clip-b32-{tag}-seed0-{tower}-int8-pc{int(quant)}.onnx"
    return os.path.join(cache, name)


def ensure_onnx(model, cache, tower, per_channel=None):
    """Export the tower (once) and, for per_channel True/False, its dynamic int8 quantization."""
    os.makedirs(cache, exist_ok=True)
    fp32 = onnx_path(cache, tower)
    if not os.path.exists(fp32):
        x = make_input(tower, 2)
        name = "pixel_values" if tower == "image" else "input_ids"
        axes = {0: "batch"} if tower == "image" else {0: "batch", 1: "length"}
        tmp = fp32 + ".tmp"
        t0 = time.perf_counter()
        with torch.no_grad():
            torch.onnx.export(Tower(model, tower).eval(), (x,), tmp, input_names=[name],
                              output_names=["embeds"], dynamic_axes={name: axes, "embeds": {0: "batch"}},
                              opset_version=17, dynamo=False)
        os.replace(tmp, fp32)
        print(f"torch_embed: exported the {tower} tower to {fp32} in {time.perf_counter() - t0:.1f} s",
              file=sys.stderr)
    if per_channel is None:
        return fp32
    q = onnx_path(cache, tower, per_channel)
    if not os.path.exists(q):
        from onnxruntime.quantization import QuantType, quantize_dynamic
        tmp = q + ".tmp.onnx"
        quantize_dynamic(fp32, tmp, weight_type=QuantType.QInt8, per_channel=per_channel)
        os.replace(tmp, q)
        print(f"torch_embed: quantized {fp32} (QInt8, per_channel={per_channel}) to {q}", file=sys.stderr)
    return q


def ort_session(path, threads, spin):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.intra_op_num_threads = threads or os.cpu_count()
    so.inter_op_num_threads = 1
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    return lambda x: torch.from_numpy(s.run(None, {name: x.numpy()})[0])


def measure(run, x, warmup, iters):
    """Wall times of the timed calls, their mean process CPU time (all threads), the output."""
    times, cpu, out = [], 0.0, None
    with torch.inference_mode():
        for it in range(warmup + iters):
            t0, c0 = time.perf_counter(), time.process_time()
            out = run(x)
            dt = time.perf_counter() - t0
            if it >= warmup:
                times.append(dt)
                cpu += time.process_time() - c0
    return times, cpu / max(1, iters), out


def compare(out, ref):
    out, ref = out.float(), ref.float()
    cos = torch.nn.functional.cosine_similarity(out, ref, dim=-1)
    return {"max_abs_diff": float((out - ref).abs().max()), "min_cos": float(cos.min()),
            "ref_abs_max": float(ref.abs().max())}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--engine", default="torch", choices=["torch", "torch-int8", "ort", "ort-int8"])
    ap.add_argument("--batch", default="1,32")
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--tower", default="both", choices=["image", "text", "both"])
    ap.add_argument("--qengine", default="",
                    help="torch-int8: comma list of torch.backends.quantized engines to measure "
                         "(default: those of x86,fbgemm,onednn this torch supports)")
    ap.add_argument("--per-channel", default="both", choices=["both", "true", "false"],
                    help="ort-int8: per-channel weight scales, per-tensor, or both (a line each)")
    ap.add_argument("--ort-spin", default="on", choices=["on", "off", "both"],
                    help="ort, ort-int8: intra-op threads spin between ops (ORT's default) or sleep "
                         "(like OMP_WAIT_POLICY=PASSIVE); both: a line each")
    ap.add_argument("--cache", default=os.environ.get("MMTUNE_BENCH_CACHE", os.path.join(
        os.environ.get("TMPDIR", "/tmp"), "mmtune-bench-onnx")), help="where the ONNX exports live")
    ap.add_argument("--no-check", action="store_true",
                    help="skip the comparison with PyTorch fp32 (max_abs_diff, min_cos)")
    ap.add_argument("--export-only", action="store_true",
                    help="write the ONNX exports (fp32 and both int8) into --cache and stop")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    import transformers
    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    model = CLIPModel(CLIPConfig()).eval()
    towers = [t for t in ("image", "text") if a.tower in (t, "both")]
    info = {"threads": torch.get_num_threads(), "torch": torch.__version__}
    if a.export_only:
        for t in towers:
            for pc in (None, False, True):
                ensure_onnx(model, a.cache, t, pc)
        return 0

    # Variants of the engine: (extra JSON fields, a function tower -> run(x)).
    variants = []
    if a.engine == "torch":
        variants.append(({}, lambda t: torch_run(model, t)))
    elif a.engine == "torch-int8":
        import warnings
        supported = torch.backends.quantized.supported_engines
        wanted = [e for e in (a.qengine or "x86,fbgemm,onednn").split(",") if e]
        info["qengine_default"] = torch.backends.quantized.engine
        for e in wanted:
            if e not in supported:
                print(f"torch_embed: quantized engine {e} not supported here ({supported})", file=sys.stderr)
                continue
            torch.backends.quantized.engine = e
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                qm = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)

            def make(t, qm=qm, e=e):
                run = torch_run(qm, t)

                def go(x):  # the engine is process-global: set it for this variant's calls
                    torch.backends.quantized.engine = e
                    return run(x)
                return go
            variants.append(({"qengine": e}, make))
    else:
        import onnxruntime as ort
        info["ort"] = ort.__version__
        pcs = [None] if a.engine == "ort" else \
            {"both": [False, True], "true": [True], "false": [False]}[a.per_channel]
        spins = {"on": [True], "off": [False], "both": [True, False]}[a.ort_spin]
        for pc in pcs:
            for spin in spins:
                extra = {"ort_spin": spin}
                if pc is not None:
                    extra.update({"per_channel": pc, "weight_type": "QInt8"})
                variants.append((extra, lambda t, pc=pc, spin=spin: ort_session(
                    ensure_onnx(model, a.cache, t, pc), a.threads, spin)))

    rc = 0
    for extra, make in variants:
        runs = {t: make(t) for t in towers}
        for B in [int(x) for x in a.batch.split(",")]:
            for tower in towers:
                x = make_input(tower, B)
                times, cpu, out = measure(runs[tower], x, a.warmup, a.iters)
                mean = sum(times) / len(times)
                row = {"tower": tower, "batch": B, "mean_s": mean, "best_s": min(times),
                       "cpu_s": cpu, "items_per_s": B / mean}
                row.update(extra)
                row.update(info)
                if a.engine != "torch" and not a.no_check:
                    with torch.inference_mode():
                        row.update(compare(out, torch_run(model, tower)(x)))
                print(json.dumps(row), flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
