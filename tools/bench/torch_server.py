#!/usr/bin/env python3
"""Reference server for the serving benchmark: PyTorch + transformers (+ PEFT) behind FastAPI.

The deployment the seed material describes: FastAPI on uvicorn, one forward per request
(batch 1) under torch.no_grad(), the model in eval() mode. It answers POST /v1/embeddings
with mmtune serve's request and response shape (OpenAI's, docs/serving.md) for image inputs:

    {"input": [{"image": "<base64 JPEG/PNG>"}], "model": "a0", "encoding_format": "float"}
 -> {"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [...]}],
     "model": "a0", "usage": {"prompt_tokens": 0, "total_tokens": 0}}

Each image is decoded with PIL, preprocessed by the snapshot's CLIPImageProcessor (resize the
shortest side, centre crop, normalise: what mmtune does), embedded by get_image_features and
L2-normalised. --adapter loads a PEFT LoRA folder (mmtune bench serve --write-adapters
writes them) and --merge folds it into the weights (PEFT's merge_and_unload): PyTorch's
fastest way to serve one adapter. Texts are not handled (the benchmark sends images only).

--mode picks how requests reach the model: "serial" (an async endpoint: one forward at a
time, with every thread) or "threads" (a plain endpoint that FastAPI runs in its thread
pool, so forwards of several requests overlap: FastAPI's usual way, and the default).
On the 2-core benchmark machine threads gave about twice serial's requests/s at 8 and 32
clients and a far lower p99 (serial blocks the event loop, so answers wait behind forwards),
so scripts/bench_serve.sh uses it.

--int8 serves PyTorch's int8: torch.ao.quantization.quantize_dynamic on every nn.Linear
(qint8 weights, activations quantized per call), after the merge, with the quantized engine
--qengine (default x86: the fastest for the image tower in scripts/bench.sh's embed runs).
That is the PyTorch counterpart of `mmtune serve --int8`.

Run: python3 tools/bench/torch_server.py --model DIR [--adapter DIR --merge] --port 8123 --threads 2
"""
import argparse
import base64
import io
import json
import sys


def main():
    ap = argparse.ArgumentParser(description="PyTorch CLIP embeddings server (FastAPI, batch 1 per request)")
    ap.add_argument("--model", required=True, help="CLIP snapshot (config.json, model.safetensors, preprocessor)")
    ap.add_argument("--adapter", help="a PEFT LoRA folder applied to the model")
    ap.add_argument("--adapter-name", default="a0", help="the name requests give in 'model' (default a0)")
    ap.add_argument("--merge", action="store_true", help="merge the adapter into the weights")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8123)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    ap.add_argument("--mode", choices=["serial", "threads"], default="threads")
    ap.add_argument("--int8", action="store_true", help="dynamic int8 quantization of every nn.Linear")
    ap.add_argument("--qengine", default="x86", help="torch.backends.quantized.engine for --int8 (default x86)")
    a = ap.parse_args()

    import torch
    import transformers
    import uvicorn
    from fastapi import FastAPI, Request
    from fastapi.responses import Response
    from PIL import Image
    from transformers import CLIPImageProcessor, CLIPModel

    transformers.logging.set_verbosity_error()
    if a.threads:
        torch.set_num_threads(a.threads)
    model = CLIPModel.from_pretrained(a.model).eval()
    if a.adapter:
        from peft import PeftModel
        model = PeftModel.from_pretrained(model, a.adapter).eval()
        if a.merge:
            model = model.merge_and_unload().eval()
    if a.int8:
        torch.backends.quantized.engine = a.qengine
        model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8).eval()
    processor = CLIPImageProcessor.from_pretrained(a.model)
    names = {None, "base", a.adapter_name if a.adapter else "base"}

    def error(status, message):
        body = {"error": {"message": message, "type": "invalid_request_error", "code": status}}
        return Response(json.dumps(body), status_code=status, media_type="application/json")

    def embed(body):
        try:
            req = json.loads(body)
            items = req["input"] if isinstance(req["input"], list) else [req["input"]]
            images = [Image.open(io.BytesIO(base64.b64decode(it["image"]))).convert("RGB") for it in items]
        except Exception as e:  # a bad request, not a server failure
            return error(400, f"bad request: {e}")
        name = req.get("model")
        if name not in names:
            return error(404, f"unknown model '{name}'")
        data = []
        for i, img in enumerate(images):  # batch 1: one forward per image
            pixels = processor(images=img, return_tensors="pt")["pixel_values"]
            with torch.no_grad():
                out = model.get_image_features(pixel_values=pixels)
                v = out if torch.is_tensor(out) else out.pooler_output
                v = torch.nn.functional.normalize(v, dim=-1)[0]
            data.append({"object": "embedding", "index": i, "embedding": v.tolist()})
        answer = {"object": "list", "data": data, "model": name or "base",
                  "usage": {"prompt_tokens": 0, "total_tokens": 0}}
        return Response(json.dumps(answer), media_type="application/json")

    app = FastAPI()
    if a.mode == "serial":
        @app.post("/v1/embeddings")
        async def embeddings(request: Request):
            return embed(await request.body())
    else:
        from starlette.concurrency import run_in_threadpool

        @app.post("/v1/embeddings")
        async def embeddings_threads(request: Request):  # as FastAPI runs a plain `def` endpoint
            return await run_in_threadpool(embed, await request.body())

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    print(f"torch_server: torch {torch.__version__}, transformers {transformers.__version__}, "
          f"{torch.get_num_threads()} threads, mode {a.mode}, adapter {a.adapter or 'none'}"
          f"{' (merged)' if a.adapter and a.merge else ''}"
          f"{f', int8 (dynamic, {a.qengine})' if a.int8 else ''}", file=sys.stderr, flush=True)
    uvicorn.run(app, host=a.host, port=a.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
