#!/usr/bin/env python3
"""Scores for the medical example (scripts/bench_medical.sh); standard library only.

    medical_scores.py EVAL.json VOCABULARY.txt MODEL DECODING   -> one JSON line on stdout
    medical_scores.py --table RAW.jsonl OUT.md MODEL TRAIN TEST STEPS LR LORA_STEPS LORA_LR SECONDS

EVAL.json is `mmtune eval`'s output for a captioner with every caption in "samples". Each
caption and the study's first reference are read as a report: the finding (nodule,
effusion, cardiomegaly, normal, or none when the caption names none), and for a nodule or
an effusion its side and size, for a nodule its zone. The line holds pycocoevalcap's scores
(as mmtune eval computed them) and:
  finding_acc  the finding named is the study's
  side_acc, size_acc   of the nodules and effusions whose finding was named right, the side /
                       size is right too; zone_acc likewise for nodules
  exact_acc    finding and every attribute right (the report says what the study shows)
  oov_captions captions with a word outside the vocabulary (pycocoevalcap's tokens aside)
"""
import json
import os
import subprocess
import sys
import datetime


def read_report(text):
    words = text.lower().replace(",", " ").replace(".", " ").split()
    w = set(words)
    if "nodule" in w:
        finding = "nodule"
    elif "effusion" in w:
        finding = "effusion"
    elif "heart" in w or "cardiomegaly" in w:
        finding = "cardiomegaly"
    elif w & {"no", "clear", "normal"}:
        finding = "normal"
    else:
        finding = "none"
    pick = lambda options: next((o for o in words if o in options), None)
    return {"finding": finding, "side": pick({"right", "left"}), "zone": pick({"upper", "middle", "lower"}),
            "size": pick({"small", "large"})}


def score(eval_path, vocab_path, model, decoding):
    r = json.load(open(eval_path))
    vocab = {l.strip() for l in open(vocab_path) if l.strip()}
    samples = r["samples"]
    if len(samples) != r["images"]:
        sys.exit(f"{eval_path}: {len(samples)} captions for {r['images']} images; run eval with --samples N")
    n = len(samples)
    found = side = size = zone = exact = oov = 0
    n_lat = n_nod = 0
    for s in samples:
        got, want = read_report(s["caption"]), read_report(s["references"][0])
        oov += any(t not in vocab for t in s["caption"].split())
        if got["finding"] != want["finding"]:
            continue
        found += 1
        keys = {"nodule": ("side", "size", "zone"), "effusion": ("side", "size")}.get(want["finding"], ())
        if "side" in keys:
            n_lat += 1
            side += got["side"] == want["side"]
            size += got["size"] == want["size"]
        if "zone" in keys:
            n_nod += 1
            zone += got["zone"] == want["zone"]
        exact += all(got[k] == want[k] for k in keys)
    ratio = lambda a, b: round(a / b, 4) if b else None
    return {"kind": "result", "model": model, "decoding": decoding, "images": n,
            "cider_d": round(r["cider_d"], 4), "bleu_4": round(r["bleu_4"], 4), "rouge_l": round(r["rouge_l"], 4),
            "finding_acc": ratio(found, n), "side_acc": ratio(side, n_lat), "zone_acc": ratio(zone, n_nod),
            "size_acc": ratio(size, n_lat), "exact_acc": ratio(exact, n), "oov_captions": oov}


NAMES = {"base": "base captioner (shape scenes only)", "full": "full fine-tuning", "lora": "LoRA, both towers"}


def table(raw, md, model, n_train, n_test, steps, lr, lora_steps, lora_lr, seconds):
    rows = [json.loads(l) for l in open(raw)]
    res = [r for r in rows if r["kind"] == "result"]
    train = {r["model"]: r for r in rows if r["kind"] == "train"}
    examples = [r for r in rows if r["kind"] == "example"]
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    nproc = subprocess.check_output(["nproc"]).decode().strip()
    when = datetime.datetime.fromtimestamp(os.path.getmtime(raw), datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
    pct = lambda x: "-" if x is None else f"{100 * x:.1f}%"
    out = ["# Medical example: report captions of chest radiographs from DICOM files", "",
           f"Made by scripts/bench_medical.sh {when} UTC on {cpu}, {nproc} cores, in {seconds} s. "
           f"Data: `mmtune synth --domain xray`, {n_train} training and {n_test} test studies (64x64, 12-bit, "
           "each in one of four DICOM encodings: CR/DX, explicit/implicit VR, MONOCHROME1/2, signed with an "
           "intercept, 14-bit with a slope), three report wordings per study. Model: "
           f"{model} (a 2.2 M-parameter GIT pretrained on shape scenes only). Fine-tuning: full, {steps} steps "
           f"of 32 reports at lr {lr}; LoRA r 16 on every linear layer of both towers, the projection and the "
           f"head, {lora_steps} steps at lr {lora_lr}. Decoding: greedy, free or constrained to the reports' "
           "words (`--allowed-words vocabulary.txt`). Scores on the test studies: CIDEr-D, BLEU-4, ROUGE-L "
           "(`mmtune eval`, pycocoevalcap's definitions), the finding named right, and of the nodules and "
           "effusions named right, the side, zone (nodules) and size; exact: the whole report right; "
           "out-of-vocabulary: captions with a word no report uses.", "",
           "| model | decoding | CIDEr-D | BLEU-4 | ROUGE-L | finding | side | zone | size | exact | out-of-vocabulary |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in res:
        out.append(f"| {NAMES.get(r['model'], r['model'])} | {r['decoding']} | {r['cider_d']:.3f} | {r['bleu_4']:.3f} | "
                   f"{r['rouge_l']:.3f} | {pct(r['finding_acc'])} | {pct(r['side_acc'])} | {pct(r['zone_acc'])} | "
                   f"{pct(r['size_acc'])} | {pct(r['exact_acc'])} | {r['oov_captions']}/{r['images']} |")
    if train:
        out += ["", "| training | steps | trainable parameters | final loss | seconds |", "|---|---:|---:|---:|---:|"]
        for name, t in train.items():
            out.append(f"| {NAMES.get(name, name)} | {t['steps']} | {t['trainable_params']:,} | {t['final_loss']:.4f} | "
                       f"{t['seconds']:.0f} |")
    if examples:
        out += ["", "`mmtune caption --allowed-words` on the first test studies (full fine-tuning):", "",
                "| DICOM file | caption | the study's report |", "|---|---|---|"]
        for e in examples:
            out.append(f"| {e['image']} | {e['caption']} | {e['reference']} |")
    with open(md, "w") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    if len(sys.argv) == 12 and sys.argv[1] == "--table":
        table(*sys.argv[2:])
    elif len(sys.argv) == 5:
        print(json.dumps(score(*sys.argv[1:])))
    else:
        sys.exit(__doc__)
