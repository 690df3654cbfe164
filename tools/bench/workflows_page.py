#!/usr/bin/env python3
"""docs/workflows.md, the results page of the workflows (issue 15), generated from bench/results/.

  python3 tools/bench/workflows_page.py [--results DIR] [--out PATH] [--check]

Reads the raw JSON lines the benchmark scripts write (the numbers) and the first paragraph of
each one's .md (the provenance: machine, date, settings) and writes one page:

  pruning and distillation  distill_raw.jsonl   scripts/bench_distill.sh
  forgetting curves         continual_raw.jsonl scripts/bench_continual.sh
  curation effect           curate_raw.jsonl    scripts/bench_curate.sh
  medical images            medical_raw.jsonl   only when that file exists (rows: kind "result")

Every number on the page comes from those files; a missing raw file turns its section into a
"not measured yet" line instead of an error. The output holds no time stamp, so the same
inputs always give the same bytes: --check compares the page on disk with what would be
written and exits 1 with one line when they differ (ctest workflows_page_check runs it, so
the committed page cannot drift from the committed results). A raw record that lacks a field
the page needs stops the run with one line naming the file and the field (exit 2).
Standard library only.
"""
import argparse
import json
import os
import statistics
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GENERATOR = "tools/bench/workflows_page.py"


class Page:
    """Where the inputs are and where the page goes: links are relative to the page's folder,
    paths shown in text relative to the repository (so the page reads the same in any checkout)."""

    def __init__(self, results, out):
        self.results = os.path.abspath(results)
        self.out_dir = os.path.dirname(os.path.abspath(out))

    def path(self, name):
        return os.path.join(self.results, name)

    def shown(self, path):
        rel = os.path.relpath(path, ROOT)
        return path if rel.startswith("..") else rel.replace(os.sep, "/")

    def link(self, path):
        rel = os.path.relpath(path, self.out_dir).replace(os.sep, "/")
        return f"[{self.shown(path)}]({rel})"


class MissingField(Exception):
    pass


class BadInput(Exception):
    """A raw file the page cannot be made from; the message is the one line main prints."""


def read_jsonl(path):
    """The records of a JSON-lines file, or None when it does not exist."""
    if not os.path.exists(path):
        return None
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise BadInput(f"{path}:{n}: not JSON ({e.msg})")
    return rows


def first_paragraph(path):
    """The first paragraph under the title of a results .md (the "Made by ..." line where the
    script writes one), as one line; None when the file does not exist."""
    if not os.path.exists(path):
        return None
    para = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line.startswith("#") and not para:
                continue
            if not line:
                if para:
                    break
                continue
            para.append(line)
    return " ".join(para)


def pct(x):
    return f"{100 * x:.1f}"


def ratio(a, b):
    return f"{a / b:.2f}x"


def signed(x):
    """A difference in points with its sign; a rounding to zero reads +0.0, never -0.0."""
    s = f"{100 * x:+.1f}"
    return "+0.0" if s == "-0.0" else s


def mean(xs):
    return statistics.fmean(xs)


def table(head, rows):
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows]
    return out


# ---- pruning and distillation ------------------------------------------------------------

def distill_section(rows):
    out = ["Size, speed and quality of each model (quality in %, on the held-out test split: "
           "class-level image->text and text->image recall@1, zero-shot accuracy).", ""]
    out += table(["model", "params", "bytes", "layers (text/vision)", "MLP (text/vision)", "images/s",
                  "images per CPU-s", "i2t R@1", "t2i R@1", "zero-shot"],
                 [[r["name"], f"{r['params'] / 1e6:.2f} M", f"{r['bytes'] / 1e6:.2f} MB",
                   f"{r['text_layers']}/{r['vision_layers']}", f"{r['text_mlp']}/{r['vision_mlp']}",
                   f"{r['images_per_s']:.0f}", f"{r['images_per_cpu_s']:.0f}", pct(r["i2t_r1"]),
                   pct(r["t2i_r1"]), pct(r["zero_shot"])] for r in rows])
    # Roles by the names bench_distill.sh gives: the first row is the base, "teacher ..." the
    # teacher, "pruned" the pruned model before recovery, "pruned + ..." the recovered ones.
    base = rows[0]
    teacher = next((r for r in rows if r["name"].startswith("teacher")), None)
    pruned = [r for r in rows if r["name"].startswith("pruned")]
    lines = []
    if pruned:
        p = pruned[0]
        lines.append(f"- Size, {p['name']} / {base['name']}: {ratio(p['params'], base['params'])} the parameters "
                     f"({p['params']:,} of {base['params']:,}), {ratio(p['bytes'], base['bytes'])} the bytes.")
        speed = [r["images_per_s"] / base["images_per_s"] for r in pruned]
        cpu = [r["images_per_cpu_s"] / base["images_per_cpu_s"] for r in pruned]
        lines.append(f"- Speed of the {len(pruned)} pruned models / {base['name']}: {min(speed):.2f}-{max(speed):.2f}x "
                     f"images/s, {min(cpu):.2f}-{max(cpu):.2f}x images per CPU-s (one architecture, so the spread "
                     "is the machine's noise; how the speeds were taken: distill.md).")
    if teacher and pruned:
        for r in pruned:
            kept = ", ".join(f"{label} {100 * r[k] / teacher[k]:.0f}%"
                             for label, k in (("i2t", "i2t_r1"), ("t2i", "t2i_r1"), ("zero-shot", "zero_shot")))
            lines.append(f"- Quality kept, {r['name']} / {teacher['name']}: {kept}.")
    return out + ([""] + lines if lines else [])


# ---- forgetting curves ---------------------------------------------------------------------

METHOD_NAMES = {"finetune": "plain fine-tuning", "ewc": "EWC", "replay": "replay", "distill": "distillation"}


def continual_section(rows):
    ev = {(r["method"], r["stage"]): r["zero_shot"] for r in rows if "zero_shot" in r}
    base = ev[("base", 0)]
    # The raw file lists the tasks in the order they are learnt: stage k learns the k-th.
    tasks = list(base)
    stages = sorted({s for (_, s) in ev if s > 0})
    methods = []
    for (m, _) in ev:
        if m not in ("base", "all") and m not in methods:
            methods.append(m)

    def at(m, s):
        """Accuracies of method m after stage s; shared stages are stored once as "all"."""
        if s == 0:
            return base, "- (base model)"
        if (m, s) in ev:
            return ev[(m, s)], str(s)
        if ("all", s) in ev:
            return ev[("all", s)], f"{s} (shared)"
        raise MissingField(f"'zero_shot' of method {m!r} after stage {s}")

    name = lambda m: METHOD_NAMES.get(m, m)
    out = ["Zero-shot accuracy (%) on each task's test set after each stage; each stage starts from the "
           f"previous one's adapter. Tasks in the order they are learnt: {', '.join(tasks)}.", ""]
    rows_out = []
    for m in methods:
        for s in [0] + stages:
            acc, label = at(m, s)
            seen = tasks[:s] if s else tasks
            rows_out.append([name(m), label] + [pct(acc[t]) for t in tasks] + [pct(mean([acc[t] for t in seen]))])
    out += table(["method", "after stage"] + tasks + ["mean of the tasks seen"], rows_out)
    out += ["", "The curves (base model -> after stage " + " -> ".join(str(s) for s in stages) + "):", ""]
    out += table(["method"] + tasks,
                 [[name(m)] + [" -> ".join(pct(at(m, s)[0][t]) for s in [0] + stages) for t in tasks] for m in methods])
    last = stages[-1]
    earlier = [t for k, t in enumerate(tasks, 1) if k < last]
    out += ["", f"After the last stage: the mean over the {len(tasks)} tasks, and each earlier task's forgetting "
            "(accuracy right after the stage that learnt it minus accuracy at the end, points; lower is better).", ""]
    frows = []
    for m in methods:
        end = at(m, last)[0]
        frows.append([name(m), pct(mean([end[t] for t in tasks]))]
                     + [pct(at(m, k)[0][t] - end[t]) for k, t in enumerate(tasks, 1) if t in earlier]
                     + [pct(end[t]) for t in tasks if t not in earlier])
    out += table(["method", f"mean of all {len(tasks)}"] + [f"{t} forgetting" for t in earlier]
                 + [f"{t} (just learnt)" for t in tasks if t not in earlier], frows)
    return out


# ---- curation effect -----------------------------------------------------------------------

CURATE_NAMES = {"base": "nothing (the base model)", "dirty": "dirty (with planted copies)", "curated": "curated",
                "clean": "clean original (a perfect curation)", "curated-hard": "curated, hard sampling"}


def curate_section(rows):
    det = [r for r in rows if r["kind"] == "detect"]
    train, evals = {}, {}
    for r in rows:
        if r["kind"] in ("train", "eval"):
            (train if r["kind"] == "train" else evals).setdefault(r["name"], []).append(r)
    out = []
    if det:
        out += ["Planted near-duplicates found by `mmtune curate` on the dirty set, per threshold: copies removed, "
                "those of them pointed at their own original, and pairs that were not planted removed too.", ""]
        out += table(["set", "pairs", "--dup-threshold", "--text-threshold", "planted found", "pointing at their original",
                      "other pairs removed"],
                     [[r["set"], r["records"], f"{r['dup_threshold']:g}", f"{r['text_threshold']:g}",
                       f"{r['found']}/{r['planted']} ({100 * r['found'] / r['planted']:.0f}%)", r["found_original"],
                       r["other_removed"]] for r in det])
        out.append("")

    def curated_label(pairs):
        # The threshold the curated set was made with: the one whose kept count is its size.
        hits = [r for r in det if r["records"] - r["found"] - r["other_removed"] == pairs]
        return f"curated (--dup-threshold {hits[0]['dup_threshold']:g})" if len(hits) == 1 else "curated"

    epochs = [(n[len("epoch-"):], rs[0]) for n, rs in train.items() if n.startswith("epoch-")]
    if epochs:
        out += ["One epoch of training, dirty vs curated:", ""]
        out += table(["data", "pairs", "steps per epoch", "wall", "CPU"],
                     [[curated_label(r["pairs"]) if n == "curated" else n, r["pairs"], r["steps"], f"{r['wall_s']:.1f} s",
                       f"{r['cpu_s']:.1f} s"] for n, r in epochs])
        cost = dict(epochs)
        if "dirty" in cost and "curated" in cost:
            d, c = cost["dirty"], cost["curated"]
            out += ["", f"- The curated epoch takes {100 * (1 - c['cpu_s'] / d['cpu_s']):.0f}% less CPU time "
                    f"({100 * (1 - c['wall_s'] / d['wall_s']):.0f}% less wall time) than the dirty one."]
        out.append("")
    if evals:
        seeds = sorted({r["seed"] for rs in evals.values() for r in rs if r["name"] != "base"})
        out += [f"Quality after training on each set (%, test split; the mean over seeds {', '.join(seeds)}, each "
                "seed's value in brackets; same seeds and steps, so the runs differ only in their data and sampling):", ""]
        metrics = (("i2t_recall_at_1", "image->caption R@1"), ("t2i_recall_at_1", "caption->image R@1"),
                   ("zero_shot_accuracy", "zero-shot"))

        def cell(rs, k):
            m = pct(mean([r[k] for r in rs]))
            return m if len(rs) == 1 else f"{m} ({', '.join(pct(r[k]) for r in rs)})"

        qrows = []
        for n, rs in evals.items():
            tr = train.get(n, [])
            label = curated_label(tr[0]["pairs"]) if n == "curated" and tr else CURATE_NAMES.get(n, n)
            qrows.append([label, tr[0]["pairs"] if tr else "-", tr[0]["flags"] if tr else "-"]
                         + [cell(rs, k) for k, _ in metrics]
                         + [f"{mean([r['wall_s'] for r in tr]):.0f} s" if tr else "-"])
        out += table(["trained on", "pairs", "flags", *(label for _, label in metrics), "training wall"], qrows)
        spread = max((max(r[k] for r in rs) - min(r[k] for r in rs) for rs in evals.values() for k, _ in metrics),
                     default=0)
        if "dirty" in evals and "curated" in evals:
            diff = ", ".join(f"{label} {signed(mean([r[k] for r in evals['curated']]) - mean([r[k] for r in evals['dirty']]))}"
                             for k, label in metrics)
            out += ["", f"- Curated minus dirty (points): {diff}; the largest spread between seeds of one set is "
                    f"{100 * spread:.1f} points."]
    return out


# ---- medical images (optional) -------------------------------------------------------------

# bench_medical.sh's keys, shown by name (others as they are); the *_acc ones in %.
MEDICAL_LABELS = {"cider_d": "CIDEr-D", "bleu_4": "BLEU-4", "rouge_l": "ROUGE-L", "finding_acc": "finding right",
                  "side_acc": "side", "zone_acc": "zone", "size_acc": "size", "exact_acc": "whole report right",
                  "oov_captions": "captions out of vocabulary"}
MEDICAL_PERCENT = {"finding_acc", "side_acc", "zone_acc", "size_acc", "exact_acc"}


def medical_section(rows):
    """Each record of kind "result" is a row, its keys (in first-seen order, "kind" left out)
    the columns, bench_medical.sh's under their names (MEDICAL_LABELS)."""
    results = [r for r in rows if r.get("kind") == "result"]
    if not results:
        return ["The raw file holds no record of kind \"result\" yet."]
    keys = []
    for r in results:
        keys += [k for k in r if k != "kind" and k not in keys]

    def show(k, v):
        if v is None:
            return "-"
        if k in MEDICAL_PERCENT and isinstance(v, (int, float)):
            return f"{100 * v:.1f}%"
        if isinstance(v, float):
            return f"{v:.4g}"
        return json.dumps(v) if isinstance(v, (dict, list)) else str(v)

    return table([MEDICAL_LABELS.get(k, k) for k in keys], [[show(k, r.get(k)) for k in keys] for r in results])


# ---- the page ------------------------------------------------------------------------------

# (title, results stem, script that writes it, doc page, renderer, optional: emitted only when
# the raw file exists). The medical benchmark is being written: name its script and doc page
# here once they exist (a doc page that does not exist is not linked).
SECTIONS = [
    ("Pruning and distillation", "distill", "scripts/bench_distill.sh", "docs/distillation.md", distill_section, False),
    ("Forgetting curves", "continual", "scripts/bench_continual.sh", "docs/continual.md", continual_section, False),
    ("Curation effect", "curate", "scripts/bench_curate.sh", "docs/curation.md", curate_section, False),
    ("Medical images: report captions on DICOM", "medical", "scripts/bench_medical.sh", "docs/medical.md",
     medical_section, True),
]


def section(page, title, stem, script, doc, render):
    raw_path, md_path, doc_path = page.path(f"{stem}_raw.jsonl"), page.path(f"{stem}.md"), os.path.join(ROOT, doc)
    out = [f"## {title}", ""]
    how = f"how it works: {page.link(doc_path)}" if os.path.exists(doc_path) else None
    rows = read_jsonl(raw_path)
    if rows is None:
        return out + [f"Not measured yet: run {script} (it writes {page.shown(raw_path)})."
                      + (f" {how[0].upper()}{how[1:]}." if how else ""), ""]
    refs = [f"details: {page.link(md_path)}" if os.path.exists(md_path) else None, how]
    made_by = f" ({script})" if script else ""
    out += [f"From {page.shown(raw_path)}{made_by}" + "".join(f"; {r}" for r in refs if r) + ".", ""]
    para = first_paragraph(md_path)
    if para:
        out += [f"> {para}", ""]
    try:
        out += render(rows) if rows else ["The raw file is empty."]
    except KeyError as e:
        raise BadInput(f"{page.shown(raw_path)}: a record lacks the field {e}")
    except (TypeError, ValueError, AttributeError, ZeroDivisionError) as e:
        raise BadInput(f"{page.shown(raw_path)}: a record the page cannot use ({e})")
    except MissingField as e:
        raise BadInput(f"{page.shown(raw_path)}: no {e}")
    return out + [""]


def build(page):
    present = [s for s in SECTIONS if not s[5] or os.path.exists(page.path(f"{s[1]}_raw.jsonl"))]
    scripts = ", ".join(s[2] for s in present if s[2])
    out = ["# Workflow results: pruning and distillation, forgetting, curation", "",
           f"<!-- Generated by {GENERATOR} from bench/results/: do not edit; "
           f"run `python3 {GENERATOR}`. -->", "",
           "The measured results of the workflows beyond training an adapter, on one page: how much smaller, faster "
           "and worse a pruned model is and how much distillation gives back; how much of earlier tasks each "
           "continual-learning method forgets; what removing duplicates from the data saves and gains.", "",
           f"This page is generated from the raw results in {page.shown(page.results)}/ "
           f"(the *_raw.jsonl files, and the first paragraph of each .md for machine, date and settings) by "
           f"`{GENERATOR}`: do not edit it; run `python3 {GENERATOR}` after a benchmark. The inputs are made by "
           f"{scripts}; `make bench` (scripts/bench.sh) regenerates the page at its end, and ctest "
           "`workflows_page_check` fails when the committed page differs from what the committed results give.", ""]
    for title, stem, script, doc, render, _ in present:
        out += section(page, title, stem, script, doc, render)
    return "\n".join(out).rstrip("\n") + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--results", default=os.path.join(ROOT, "bench", "results"), help="folder of the raw results")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "workflows.md"), help="the page to write")
    ap.add_argument("--check", action="store_true", help="exit 1 if the page on disk differs from what would be written")
    a = ap.parse_args()
    page = Page(a.results, a.out)
    try:
        text = build(page)
    except BadInput as e:
        print(f"workflows_page: {e}", file=sys.stderr)
        return 2
    shown = page.shown(os.path.abspath(a.out))
    if a.check:
        try:
            with open(a.out, encoding="utf-8") as f:
                current = f.read()
        except OSError:
            current = None
        if current != text:
            state = "is missing" if current is None else "differs from what the results give"
            print(f"workflows_page: {shown} {state}: run python3 {GENERATOR}", file=sys.stderr)
            return 1
        print(f"workflows_page: {shown} is up to date")
        return 0
    with open(a.out, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"workflows_page: wrote {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
