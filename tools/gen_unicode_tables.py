#!/usr/bin/env python3
"""Generates src/data/unicode_tables.c: the Unicode data the CLIP BPE tokenizer needs.

Usage:  python3 tools/gen_unicode_tables.py [--out src/data/unicode_tables.c]
Needs:  Python 3.11 (unicodedata 14.0.0), the `regex` module and Hugging Face `tokenizers`.

The two reference tokenizers do not agree on a single Unicode version, so every property is
taken from the library that the corresponding reference pipeline really calls, not from the
Unicode standard in the abstract:

  fast mode (transformers CLIPTokenizerFast = HF tokenizers, Rust)
    - regex classes \\p{L}, \\p{N}, \\s: Oniguruma inside tokenizers -> probed with
      tokenizers.pre_tokenizers.Split (Unicode 16.0 for tokenizers 0.23.3)
    - NFC: the `unicode-normalization-alignments` crate (Unicode 9.0): probed with
      tokenizers.normalizers.NFD/NFC; marks added after 9.0 have ccc 0 there and U+11938
      has no decomposition. Those entries carry a "not in fast" flag.
    - lowercase: Rust char::to_lowercase, char by char (no final-sigma rule): probed with
      tokenizers.normalizers.Lowercase (Unicode 17.0 for the shipped wheel).
  slow mode (transformers 4.x CLIPTokenizer without ftfy = BERT BasicTokenizer + `regex`)
    - control removal, Zs whitespace, NFC, str.lower (with Python's Final_Sigma rule),
      str.isspace: Python's unicodedata (14.0.0 in Python 3.11).
    - regex classes: the `regex` module (its own, newer Unicode data) compiled with
      IGNORECASE, which changes class membership of a few characters (U+0345 matches neither
      [\\p{L}] nor [^\\s\\p{L}\\p{N}] there, so the slow tokenizer drops it).

Layout of the generated tables (all sorted, searched by binary search):
  mmt_unicode_props_table[]   uint32: (first code point << 11) | flags; a range runs to the next entry
  mmt_unicode_ccc_table[]     uint32: (first code point << 9) | (not_in_fast << 8) | ccc
  mmt_unicode_decomp_table[]  {cp | not_in_fast << 31, first, second (0 for a singleton)}
  mmt_unicode_compose_table[] {first, second, composite | not_in_fast << 31}, sorted by (first, second)
  mmt_unicode_lower_table[]   runs {start, count, stride, which, delta}: cp -> cp + delta for
                        start, start + stride, ... ; which = bit 0 Python, bit 1 Rust
  mmt_unicode_lower_multi_table[]  mappings to more than one code point (U+0130 only)
"""
import argparse
import sys
import unicodedata as ud

import regex
import tokenizers
from tokenizers import Regex, normalizers, pre_tokenizers

# Bit names must match src/data/unicode.h.
FAST_LETTER = 1 << 0
FAST_NUMBER = 1 << 1
SPACE = 1 << 2
SLOW_LETTER = 1 << 3
SLOW_NUMBER = 1 << 4
SLOW_PUNCT = 1 << 5
SLOW_REMOVE = 1 << 6
SLOW_WHITESPACE = 1 << 7
PY_SPACE = 1 << 8
CASED = 1 << 9
CASE_IGNORABLE = 1 << 10
FLAG_BITS = 11

ALL = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]


def onig_set(pattern):
    """Code points that the Oniguruma pattern (one character wide) matches, via tokenizers."""
    split = pre_tokenizers.Split(Regex(pattern), behavior="removed", invert=True)
    found = set()
    for i in range(0, len(ALL), 50000):
        text = "".join(chr(c) for c in ALL[i:i + 50000])
        for piece, _ in split.pre_tokenize_str(text):
            found.update(ord(ch) for ch in piece)
    return found


def python_case_class(c):
    """Final-sigma classes as CPython's lower() sees them (unicodeobject.c handle_capital_sigma).

    lower("A" + c + "Σ") ends in final sigma iff c is case-ignorable or cased;
    lower(c + "Σ") ends in final sigma iff c is cased and not case-ignorable."""
    ch = chr(c)
    p1 = ("A" + ch + "\u03a3").lower().endswith("\u03c2")
    p2 = (ch + "\u03a3").lower().endswith("\u03c2")
    if not p1:
        return 0
    return CASED if p2 else CASE_IGNORABLE


def build_props(report):
    onig_l, onig_n, onig_s = onig_set(r"\p{L}"), onig_set(r"\p{N}"), onig_set(r"\s")
    re_letter = regex.compile(r"[\p{L}]", regex.IGNORECASE)
    re_number = regex.compile(r"[\p{N}]", regex.IGNORECASE)
    re_punct = regex.compile(r"[^\s\p{L}\p{N}]", regex.IGNORECASE)
    re_space = regex.compile(r"\s")
    flags = [0] * 0x110000
    for c in range(0x110000):
        if 0xD800 <= c <= 0xDFFF:
            flags[c] = SLOW_REMOVE  # never reached: UTF-8 input cannot hold surrogates
            continue
        ch = chr(c)
        f = 0
        if c in onig_l:
            f |= FAST_LETTER
        if c in onig_n:
            f |= FAST_NUMBER
        if c in onig_s:
            f |= SPACE
        if (c in onig_s) != bool(re_space.match(ch)):
            sys.exit(f"\\s differs between Oniguruma and regex at U+{c:04X}; SPACE needs a split")
        if re_letter.match(ch):
            f |= SLOW_LETTER
        if re_number.match(ch):
            f |= SLOW_NUMBER
        if re_punct.match(ch):
            f |= SLOW_PUNCT
        cat = ud.category(ch)
        # transformers tokenization_utils._is_control / BasicTokenizer._clean_text
        if c == 0 or c == 0xFFFD or (cat.startswith("C") and ch not in "\t\n\r"):
            f |= SLOW_REMOVE
        # transformers tokenization_utils._is_whitespace
        if ch in " \t\n\r" or cat == "Zs":
            f |= SLOW_WHITESPACE
        if ch.isspace():
            f |= PY_SPACE
        f |= python_case_class(c)
        flags[c] = f
    letters14 = {c for c in ALL if ud.category(chr(c)).startswith("L")}
    numbers14 = {c for c in ALL if ud.category(chr(c)).startswith("N")}
    report.append(f"Oniguruma \\p{{L}} has {len(onig_l - letters14)} letters that unicodedata "
                  f"{ud.unidata_version} does not ({len(letters14 - onig_l)} the other way)")
    report.append(f"Oniguruma \\p{{N}} has {len(onig_n - numbers14)} extra numbers "
                  f"({len(numbers14 - onig_n)} the other way)")
    odd = [c for c in ALL if not (flags[c] & (SLOW_LETTER | SLOW_NUMBER | SLOW_PUNCT | SPACE))]
    report.append("regex IGNORECASE: matched by no CLIP class (dropped by the slow tokenizer): "
                  + " ".join(f"U+{c:04X}" for c in odd))
    ranges = []
    for c in range(0x110000):
        if c == 0 or flags[c] != flags[c - 1]:
            ranges.append((c, flags[c]))
    return ranges


def build_ccc(report):
    nfd = normalizers.NFD()

    def known_to_fast(c, k):
        # A mark the crate knows moves before U+0334 (ccc 1), or after U+0345 (ccc 240).
        s = "a" + chr(c) + "\u0334" if k > 1 else "a\u0345" + chr(c)
        return nfd.normalize_str(s) != s

    entries = []
    unknown = []
    for c in ALL:
        k = ud.combining(chr(c))
        missing = 1 if k and not known_to_fast(c, k) else 0
        if missing:
            unknown.append(c)
        value = (missing << 8) | k
        if not entries or entries[-1][1] != value:
            entries.append((c, value))
    # Nothing unassigned in unicodedata may reorder in the crate either.
    for c in ALL:
        if ud.category(chr(c)) == "Cn" and nfd.normalize_str("a" + chr(c) + "\u0334") != "a" + chr(c) + "\u0334":
            sys.exit(f"U+{c:04X} has a ccc in tokenizers but not in unicodedata")
    report.append(f"NFC: {len(unknown)} combining marks have ccc 0 in HF tokenizers "
                  f"(unicode-normalization-alignments, Unicode 9.0): "
                  + " ".join(f"U+{c:04X}" for c in unknown))
    return entries


def build_decomp(report):
    nfd, nfc = normalizers.NFD(), normalizers.NFC()
    decomp, compose = [], []
    for c in ALL:
        d = ud.decomposition(chr(c))
        if not d or d.startswith("<"):
            continue
        parts = [int(x, 16) for x in d.split()]
        assert 1 <= len(parts) <= 2
        not_fast = 1 if nfd.normalize_str(chr(c)) != ud.normalize("NFD", chr(c)) else 0
        if not_fast:
            report.append(f"NFC: U+{c:04X} has no canonical decomposition in HF tokenizers")
        decomp.append((c | (not_fast << 31), parts[0], parts[1] if len(parts) == 2 else 0))
        if len(parts) == 2 and ud.normalize("NFC", chr(c)) == chr(c):
            pair = chr(parts[0]) + chr(parts[1])
            nf = 0 if nfc.normalize_str(pair) == chr(c) else 1
            compose.append((parts[0], parts[1], c | (nf << 31)))
    compose.sort()
    longest = max(len(ud.normalize("NFD", chr(c))) for c in ALL)
    assert longest <= 4, f"unicode.c assumes decompositions of at most 4 code points, not {longest}"
    return decomp, compose


def build_lower(report):
    low = normalizers.Lowercase()
    maps = {}  # cp -> {which: tuple(out)}
    for c in ALL:
        py = tuple(ord(x) for x in chr(c).lower())
        rs = tuple(ord(x) for x in low.normalize_str(chr(c)))
        for which, out in ((1, py), (2, rs)):
            if out != (c,):
                maps.setdefault(c, {})[which] = out
    single, multi = [], []
    diff = []
    for c in sorted(maps):
        m = maps[c]
        if m.get(1) != m.get(2):
            diff.append(c)
        # merge identical Python/Rust mappings into one entry with both bits
        outs = {}
        for which, out in m.items():
            outs.setdefault(out, 0)
            outs[out] |= which
        for out, which in outs.items():
            if len(out) == 1:
                single.append((c, which, out[0] - c))
            else:
                multi.append((c, which, out))
    report.append(f"lowercase: {len(diff)} code points map differently in Python "
                  f"(unicodedata {ud.unidata_version}) and Rust (tokenizers): "
                  + " ".join(f"U+{c:04X}" for c in diff))
    runs = []
    for c, which, delta in sorted(single):
        if runs:
            start, count, stride, w, d = runs[-1]
            last = start + (count - 1) * stride
            if w == which and d == delta:
                if count == 1 and c - start in (1, 2):
                    runs[-1] = (start, 2, c - start, w, d)
                    continue
                if count > 1 and c - last == stride:
                    runs[-1] = (start, count + 1, stride, w, d)
                    continue
        runs.append((c, 1, 1, which, delta))
    # Runs come from the sorted list, so their spans are disjoint except where one code point
    # maps differently for Python and Rust; the C lookup checks the run found and the one
    # before it, which is enough only under this condition.
    for a, b in zip(runs, runs[1:]):
        a_last = a[0] + (a[1] - 1) * a[2]
        assert a_last < b[0] or (a_last == b[0] and not (a[3] & b[3])), (a, b)
    return runs, multi


def emit(out_path, props, ccc, decomp, compose, lower, lower_multi, report):
    lines = []
    w = lines.append
    w("/*")
    w(" * unicode_tables.c — GENERATED by tools/gen_unicode_tables.py; do not edit by hand.")
    w(" *")
    w(f" * Sources: Python {sys.version.split()[0]} unicodedata {ud.unidata_version}, regex "
      f"{regex.__version__}, tokenizers {tokenizers.__version__}.")
    w(" * See unicode.h for the meaning of each table and the script's docstring for why each")
    w(" * property comes from the library it does. Differences found while generating:")
    for r in report:
        text = r
        while len(text) > 92:
            cut = text.rfind(" ", 0, 92)
            w(" *   " + text[:cut])
            text = "  " + text[cut + 1:]
        w(" *   " + text)
    w(" */")
    w('#include "data/unicode.h"')
    w("")
    w(f"const uint32_t mmt_unicode_props_table[] = {{")
    row = []
    for c, f in props:
        row.append(f"0x{(c << FLAG_BITS) | f:08x}u")
    for i in range(0, len(row), 7):
        w("    " + ", ".join(row[i:i + 7]) + ",")
    w("};")
    w(f"const int64_t mmt_unicode_props_count = {len(props)};")
    w("")
    w("const uint32_t mmt_unicode_ccc_table[] = {")
    row = [f"0x{(c << 9) | v:08x}u" for c, v in ccc]
    for i in range(0, len(row), 7):
        w("    " + ", ".join(row[i:i + 7]) + ",")
    w("};")
    w(f"const int64_t mmt_unicode_ccc_count = {len(ccc)};")
    w("")
    w("const mmt_unicode_decomp_entry mmt_unicode_decomp_table[] = {")
    row = [f"{{0x{a:x}u, 0x{b:x}, 0x{c:x}}}" for a, b, c in decomp]
    for i in range(0, len(row), 4):
        w("    " + ", ".join(row[i:i + 4]) + ",")
    w("};")
    w(f"const int64_t mmt_unicode_decomp_count = {len(decomp)};")
    w("")
    w("const mmt_unicode_compose_entry mmt_unicode_compose_table[] = {")
    row = [f"{{0x{a:x}, 0x{b:x}, 0x{c:x}u}}" for a, b, c in compose]
    for i in range(0, len(row), 4):
        w("    " + ", ".join(row[i:i + 4]) + ",")
    w("};")
    w(f"const int64_t mmt_unicode_compose_count = {len(compose)};")
    w("")
    w("const mmt_unicode_lower_run mmt_unicode_lower_table[] = {")
    row = [f"{{0x{s:x}, {n}, {st}, {wh}, {d}}}" for s, n, st, wh, d in lower]
    for i in range(0, len(row), 4):
        w("    " + ", ".join(row[i:i + 4]) + ",")
    w("};")
    w(f"const int64_t mmt_unicode_lower_count = {len(lower)};")
    w("")
    w("const mmt_unicode_lower_multi_entry mmt_unicode_lower_multi_table[] = {")
    for c, which, out in lower_multi:
        padded = list(out) + [0] * (3 - len(out))
        w(f"    {{0x{c:x}, {which}, {len(out)}, {{0x{padded[0]:x}, 0x{padded[1]:x}, 0x{padded[2]:x}}}}},")
    w("};")
    w(f"const int64_t mmt_unicode_lower_multi_count = {len(lower_multi)};")
    with open(out_path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="src/data/unicode_tables.c")
    args = ap.parse_args()
    report = []
    props = build_props(report)
    ccc = build_ccc(report)
    decomp, compose = build_decomp(report)
    lower, lower_multi = build_lower(report)
    emit(args.out, props, ccc, decomp, compose, lower, lower_multi, report)
    for r in report:
        print(r[:300] + (" ..." if len(r) > 300 else ""))
    print(f"props {len(props)} ranges, ccc {len(ccc)}, decomp {len(decomp)}, compose "
          f"{len(compose)}, lower runs {len(lower)}, lower multi {len(lower_multi)}")


if __name__ == "__main__":
    main()
