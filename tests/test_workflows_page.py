#!/usr/bin/env python3
"""tools/bench/workflows_page.py, the generator of docs/workflows.md, on copies of the results.

Registered with ctest as workflows_page (the committed page itself is checked by
workflows_page_check). Each case runs the generator as a process on a temporary results
folder made from the committed bench/results/ files and checks the page it writes:
  - one raw file missing: its section says "Not measured yet: run scripts/bench_X.sh", the
    other sections are still there with their tables;
  - no results at all: every section says so, exit 0;
  - medical_raw.jsonl present: the optional section appears, a row per record of kind "result"
    with its keys as columns, and the first paragraph of medical.md; absent: no such section;
  - --check: 0 on the page just written, 1 with one line once the page differs or is missing;
  - a raw record without a field the page needs: exit 2 with one line naming file and field.
Like tests/check.h, a failed check is reported and the run carries on; the last line is
"N passed, N failed" and the exit status is non-zero when anything failed.
"""
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GENERATOR = os.path.join(ROOT, "tools", "bench", "workflows_page.py")
RESULTS = os.path.join(ROOT, "bench", "results")
STEMS = ("distill", "continual", "curate")
TITLES = {"distill": "Pruning and distillation", "continual": "Forgetting curves", "curate": "Curation effect"}

passed = failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print(f"test_workflows_page: CHECK failed: {what}", file=sys.stderr)


def results_copy(tmp, leave_out=()):
    """A results folder holding the committed inputs of the page, less the files named."""
    d = os.path.join(tmp, "results")
    os.makedirs(d)
    for stem in STEMS:
        for name in (f"{stem}.md", f"{stem}_raw.jsonl"):
            if name not in leave_out and os.path.exists(os.path.join(RESULTS, name)):
                shutil.copy(os.path.join(RESULTS, name), d)
    return d


def generate(results, out, *extra):
    p = subprocess.run([sys.executable, GENERATOR, "--results", results, "--out", out, *extra],
                       capture_output=True, text=True)
    page = open(out, encoding="utf-8").read() if os.path.exists(out) else ""
    return p, page


def sections(page):
    """The page's sections by title."""
    out, title = {}, None
    for line in page.splitlines():
        if line.startswith("## "):
            title = line[3:]
            out[title] = []
        elif title:
            out[title].append(line)
    return {t: "\n".join(ls) for t, ls in out.items()}


def test_one_missing(tmp):
    for stem in STEMS:
        sub = os.path.join(tmp, f"missing-{stem}")
        os.makedirs(sub)
        out = os.path.join(sub, "workflows.md")
        p, page = generate(results_copy(sub, leave_out=(f"{stem}_raw.jsonl",)), out)
        check(p.returncode == 0, f"{stem} missing: exit {p.returncode}: {p.stderr.strip()}")
        s = sections(page)
        check(sorted(s) == sorted(TITLES.values()), f"{stem} missing: sections {list(s)}")
        for other, title in TITLES.items():
            body = s.get(title, "")
            if other == stem:
                check(f"Not measured yet: run scripts/bench_{stem}.sh" in body and "|---|" not in body,
                      f"{stem} missing: its section is not the not-measured line: {body!r}")
            else:
                check("|---|" in body and "Not measured" not in body, f"{stem} missing: section {title!r} lost its table")


def test_nothing_measured(tmp):
    d = os.path.join(tmp, "empty")
    os.makedirs(d)
    p, page = generate(d, os.path.join(tmp, "empty.md"))
    check(p.returncode == 0, f"no results: exit {p.returncode}: {p.stderr.strip()}")
    for stem in STEMS:
        check(f"Not measured yet: run scripts/bench_{stem}.sh" in page, f"no results: no not-measured line for {stem}")
    check("|---|" not in page, "no results: a table on the page")


def test_medical(tmp):
    sub = os.path.join(tmp, "medical")
    os.makedirs(sub)
    d = results_copy(sub)
    out = os.path.join(sub, "workflows.md")
    _, page = generate(d, out)
    check("Medical" not in page, "medical section without medical_raw.jsonl")
    with open(os.path.join(d, "medical_raw.jsonl"), "w") as f:
        f.write('{"kind": "meta", "machine": "not a row"}\n')
        f.write('{"kind": "result", "model": "git-tiny", "bleu4": 0.1234567, "images": 40}\n')
        f.write('{"kind": "result", "model": "git-tiny + LoRA", "bleu4": 0.25, "cider": 0.5}\n')
    with open(os.path.join(d, "medical.md"), "w") as f:
        f.write("# Medical\n\nMade by a test on no machine,\nsecond line.\n\nNot this paragraph.\n")
    p, page = generate(d, out)
    body = sections(page).get("Medical images: report captions on DICOM", "")
    check(p.returncode == 0, f"medical: exit {p.returncode}: {p.stderr.strip()}")
    check("| model | bleu4 | images | cider |" in body, "medical: the columns are not the records' keys")
    check("| git-tiny | 0.1235 | 40 | - |" in body, "medical: first result row")
    check("| git-tiny + LoRA | 0.25 | - | 0.5 |" in body, "medical: second result row")
    check("not a row" not in body, "medical: a record not of kind result became a row")
    check("> Made by a test on no machine, second line." in body, "medical: first paragraph of medical.md")
    check("Not this paragraph" not in body, "medical: more than the first paragraph")


def test_check(tmp):
    sub = os.path.join(tmp, "check")
    os.makedirs(sub)
    d = results_copy(sub)
    out = os.path.join(sub, "workflows.md")
    p, _ = generate(d, out, "--check")
    check(p.returncode == 1 and len(p.stderr.strip().splitlines()) == 1, f"--check, no page: exit {p.returncode}")
    generate(d, out)
    p, _ = generate(d, out, "--check")
    check(p.returncode == 0, f"--check right after writing: exit {p.returncode}: {p.stderr.strip()}")
    with open(out, "a") as f:
        f.write("an edit by hand\n")
    p, _ = generate(d, out, "--check")
    check(p.returncode == 1 and len(p.stderr.strip().splitlines()) == 1 and "workflows_page.py" in p.stderr,
          f"--check, edited page: exit {p.returncode}, stderr {p.stderr!r}")
    with open(os.path.join(d, "distill_raw.jsonl"), "a") as f:  # a result changes: the page is stale
        f.write(open(os.path.join(d, "distill_raw.jsonl")).readline())
    generate(d, out)
    p, _ = generate(d, out, "--check")
    check(p.returncode == 0, "--check after regenerating")


def test_bad_record(tmp):
    sub = os.path.join(tmp, "bad")
    os.makedirs(sub)
    d = results_copy(sub)
    with open(os.path.join(d, "distill_raw.jsonl"), "w") as f:
        f.write('{"name": "base", "bytes": 1}\n')
    p, _ = generate(d, os.path.join(sub, "workflows.md"))
    check(p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1
          and "distill_raw.jsonl" in p.stderr and "params" in p.stderr,
          f"record without params: exit {p.returncode}, stderr {p.stderr!r}")


def main():
    with tempfile.TemporaryDirectory(prefix="mmt-workflows-") as tmp:
        for test in (test_one_missing, test_nothing_measured, test_medical, test_check, test_bad_record):
            before = failed
            test(tmp)
            print(f"{test.__name__}: {'ok' if failed == before else 'FAILED'}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
