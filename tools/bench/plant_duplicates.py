#!/usr/bin/env python3
"""Plants near-duplicate pairs into a JSONL image-text set, for scripts/bench_curate.sh.

usage: plant_duplicates.py IN.jsonl OUT_DIR FRACTION SEED

Copies round(FRACTION x n) pairs chosen by a seeded draw, in three kinds taken in turn:
  0  the same pixels re-encoded (PNG, another zlib level: other bytes, the same image)
  1  the image upscaled by 4 pixels a side (bilinear), PNG
  2  the same pixels re-encoded, the caption lightly edited (capital letter, full stop)
and writes OUT_DIR/dirty.jsonl (the pairs, then the copies in a seeded order, image paths
relative to OUT_DIR) and OUT_DIR/planted.json ({"copy record": original record}, 0-based).
Standard library only: 8-bit non-interlaced PNGs (grey, grey+alpha, RGB, RGBA) are read and
written here, which is what `mmtune fashion-mnist` and `mmtune synth` write.
"""
import json
import os
import random
import struct
import sys
import zlib


def read_png(path):
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise SystemExit(f"{path}: not a PNG")
    at, idat, hdr = 8, b"", None
    while at < len(data):
        n, kind = struct.unpack(">I4s", data[at:at + 8])
        body = data[at + 8:at + 8 + n]
        if kind == b"IHDR":
            hdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        at += 12 + n
    w, h, depth, colour, _, _, interlace = hdr
    channels = {0: 1, 2: 3, 4: 2, 6: 4}.get(colour)
    if depth != 8 or channels is None or interlace:
        raise SystemExit(f"{path}: only 8-bit non-interlaced grey/RGB(A) PNGs are handled")
    raw, stride, rows, prev = zlib.decompress(idat), w * channels, [], bytearray(w * channels)
    for y in range(h):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for x in range(stride):
            a = line[x - channels] if x >= channels else 0
            b, c = prev[x], prev[x - channels] if x >= channels else 0
            if f == 1: line[x] = (line[x] + a) & 255
            elif f == 2: line[x] = (line[x] + b) & 255
            elif f == 3: line[x] = (line[x] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(line)
        prev = line
    return w, h, channels, colour, rows


def write_png(path, w, h, colour, rows, level):
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    raw = b"".join(b"\x00" + bytes(r) for r in rows)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, colour, 0, 0, 0)) +
                chunk(b"IDAT", zlib.compress(raw, level)) + chunk(b"IEND", b""))


def upscale(w, h, ch, rows, nw, nh):
    """Bilinear (pixel centres aligned) to nw x nh."""
    out = []
    for y in range(nh):
        sy = max(0.0, min(h - 1.0, (y + 0.5) * h / nh - 0.5))
        y0, fy = int(sy), sy - int(sy)
        y1 = min(y0 + 1, h - 1)
        line = bytearray(nw * ch)
        for x in range(nw):
            sx = max(0.0, min(w - 1.0, (x + 0.5) * w / nw - 0.5))
            x0, fx = int(sx), sx - int(sx)
            x1 = min(x0 + 1, w - 1)
            for c in range(ch):
                top = rows[y0][x0 * ch + c] * (1 - fx) + rows[y0][x1 * ch + c] * fx
                bot = rows[y1][x0 * ch + c] * (1 - fx) + rows[y1][x1 * ch + c] * fx
                line[x * ch + c] = int(round(top * (1 - fy) + bot * fy))
        out.append(line)
    return out


def main():
    src, out, frac, seed = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    base = os.path.dirname(os.path.abspath(src))
    recs = [json.loads(l) for l in open(src) if l.strip()]
    for r in recs:
        r["image_path"] = os.path.relpath(os.path.join(base, r["image_path"]), os.path.abspath(out))
    os.makedirs(os.path.join(out, "copies"), exist_ok=True)
    rng = random.Random(seed)
    chosen = rng.sample(range(len(recs)), round(frac * len(recs)))
    copies = []
    for j, i in enumerate(chosen):
        r = recs[i]
        w, h, ch, colour, rows = read_png(os.path.join(out, r["image_path"]))
        name = f"copies/{j:06d}.png"
        text = r["text"]
        if j % 3 == 1:
            write_png(os.path.join(out, name), w + 4, h + 4, colour, upscale(w, h, ch, rows, w + 4, h + 4), 6)
        else:
            write_png(os.path.join(out, name), w, h, colour, rows, 9)
        if j % 3 == 2:
            text = text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")
        c = {"image_path": name, "text": text}
        if "label" in r:
            c["label"] = r["label"]
        copies.append((c, i))
    rng.shuffle(copies)
    planted = {}
    with open(os.path.join(out, "dirty.jsonl"), "w") as f:
        for r in recs:
            f.write(json.dumps(r) + "\n")
        for k, (c, i) in enumerate(copies):
            f.write(json.dumps(c) + "\n")
            planted[len(recs) + k] = i
    json.dump(planted, open(os.path.join(out, "planted.json"), "w"))
    print(f"plant_duplicates: {len(recs)} pairs + {len(copies)} copies -> {out}/dirty.jsonl")


if __name__ == "__main__":
    main()
