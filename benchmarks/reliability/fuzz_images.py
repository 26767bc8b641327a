"""Fuzz campaign: mutated real images through ``decode``, ``prepare`` and ``Classifier.classify``.

Seeds are real photos (the reference test images and a spread of ``skin6`` photos, as they are) and
small re-encodings of a real photo in every format and mode skinedge converts (PNG RGB/RGBA/P/L/16-bit,
baseline and progressive JPEG, JPEG with EXIF orientation, GIF, WebP, TIFF, BMP). Each case applies
one mutation, chosen by its number: bit flips, byte overwrites with boundary values, truncation,
header edits (the width/height fields of PNG, JPEG, BMP and GIF headers set to 0, 1, huge or random),
chunk deletion/duplication, inserted junk, splices of two files, and files written with a wrong
extension. Every case must end in a result or one of skinedge's typed errors
(:mod:`skinedge.errors`), within ``--case-timeout`` seconds.

Cases run in a worker subprocess that reports after each one, so a crash (the worker dies) or a hang
(no answer in time) is attributed to its case and the campaign goes on with a fresh worker.

Usage::

    python benchmarks/reliability/fuzz_images.py --cases 30000
    python benchmarks/reliability/fuzz_images.py --cases 2000 --start 30000 --save-failures /tmp/img-failures

Prints counts per outcome, target and mutation; exit 1 on any crash, hang or untyped error.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import select
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
SHARED = Path(os.environ.get("SKINEDGE_SHARED", ROOT.parent / "shared"))
REFERENCE = SHARED / "reference-models"
SKIN6 = SHARED / "data" / "skin6"

MUTATIONS = ("bitflip", "byte", "truncate", "header", "chunk", "insert", "splice", "wrong_ext")
TARGETS = ("decode", "prepare", "prepare_path", "classify")
# Share of cases per target (classify runs the interpreter too: slower, so rarer).
TARGET_WEIGHTS = (0.45, 0.35, 0.12, 0.08)
SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".jfif")
BOUNDARY = (0, 1, 0x7F, 0x80, 0xFF)


# -- seed corpus ----------------------------------------------------------------------------------


def seed_corpus(n_skin6: int = 12) -> list[tuple[str, bytes]]:
    """(name, bytes) of every seed, deterministic."""
    import numpy as np
    from PIL import Image

    seeds: list[tuple[str, bytes]] = []
    for p in sorted((REFERENCE / "images").glob("*")):
        seeds.append((p.name, p.read_bytes()))
    if SKIN6.is_dir():
        photos = sorted(p for p in SKIN6.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".jfif"})
        by_suffix: dict[str, list[Path]] = {}
        for p in photos:
            by_suffix.setdefault(p.suffix.lower(), []).append(p)
        picked: list[Path] = []
        for suffix in sorted(by_suffix):  # every suffix represented, then an even spread
            picked.append(by_suffix[suffix][0])
        step = max(1, len(photos) // max(1, n_skin6 - len(picked)))
        picked += [p for p in photos[::step] if p not in picked][: max(0, n_skin6 - len(picked))]
        for p in picked:
            if p.stat().st_size <= 3_000_000:
                seeds.append((f"skin6/{p.name}", p.read_bytes()))
    base = Image.open(REFERENCE / "images" / "cat.bmp").convert("RGB")
    small = base.resize((96, 72), Image.Resampling.BILINEAR)
    rgba = small.copy()
    rgba.putalpha(Image.fromarray(np.tile(np.linspace(0, 255, 96, dtype=np.uint8), (72, 1))))

    def enc(img: Image.Image, fmt: str, **kw) -> bytes:
        buf = io.BytesIO()
        img.save(buf, fmt, **kw)
        return buf.getvalue()

    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90
    pal = small.convert("P", palette=Image.Palette.ADAPTIVE, colors=32)
    gray16 = Image.fromarray(np.asarray(small.convert("L"), dtype="<u2") * 257)
    seeds += [
        ("png_rgb.png", enc(small, "PNG")),
        ("png_rgba.png", enc(rgba, "PNG")),
        ("png_p_transparent.png", enc(pal, "PNG", transparency=0)),
        ("png_l.png", enc(small.convert("L"), "PNG")),
        ("png_16bit.png", enc(gray16, "PNG")),
        ("jpeg_baseline.jpg", enc(small, "JPEG", quality=85)),
        ("jpeg_progressive.jpg", enc(small, "JPEG", quality=85, progressive=True)),
        ("jpeg_exif_rot.jpg", enc(small, "JPEG", exif=exif.tobytes())),
        ("jpeg_cmyk.jpg", enc(small.convert("CMYK"), "JPEG")),
        ("gif.gif", enc(pal, "GIF")),
        ("webp_lossy.webp", enc(small, "WEBP", quality=80)),
        ("webp_lossless.webp", enc(rgba, "WEBP", lossless=True)),
        ("tiff_raw.tif", enc(small, "TIFF")),
        ("tiff_lzw.tif", enc(small, "TIFF", compression="tiff_lzw")),
        ("bmp.bmp", enc(small, "BMP")),
    ]
    return seeds


# -- mutations ------------------------------------------------------------------------------------


def _header_edit(data: bytearray, rng: random.Random) -> str:
    """Rewrite a dimension field of a known header (PNG IHDR, JPEG SOF, BMP, GIF, WebP VP8X), else a header byte."""
    value = rng.choice((0, 1, 2, 0xFFFF, 0x7FFF, 50_000, 65_500, 0x7FFFFFFF, 0xFFFFFFFF, rng.randrange(1 << 16)))
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        field = rng.choice((16, 20))
        data[field : field + 4] = struct.pack(">I", value & 0xFFFFFFFF)
        return f"PNG IHDR {'width' if field == 16 else 'height'} = {value}"
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                break
            marker = data[i + 1]
            seg = struct.unpack(">H", data[i + 2 : i + 4])[0]
            if marker in (0xC0, 0xC1, 0xC2):
                field = i + rng.choice((5, 7))
                data[field : field + 2] = struct.pack(">H", value & 0xFFFF)
                return f"JPEG SOF{marker - 0xC0} {'height' if field == i + 5 else 'width'} = {value & 0xFFFF}"
            i += 2 + seg
    if data[:2] == b"BM" and len(data) >= 30:
        field = rng.choice((18, 22, 28, 10))
        if field == 28:
            data[28:30] = struct.pack("<H", rng.choice((0, 1, 4, 8, 16, 24, 32, 64, value & 0xFFFF)))
            return "BMP bits per pixel edited"
        data[field : field + 4] = struct.pack("<i", (value & 0xFFFFFFFF) - (1 << 32) if value >= 1 << 31 else value)
        return f"BMP field {field} = {value}"
    if data[:3] == b"GIF" and len(data) >= 10:
        field = rng.choice((6, 8))
        data[field : field + 2] = struct.pack("<H", value & 0xFFFF)
        return f"GIF screen {'width' if field == 6 else 'height'} = {value & 0xFFFF}"
    if data[:4] == b"RIFF" and data[12:16] == b"VP8X" and len(data) >= 30:
        field = rng.choice((24, 27))
        data[field : field + 3] = (value & 0xFFFFFF).to_bytes(3, "little")
        return f"WebP VP8X canvas {'width' if field == 24 else 'height'} - 1 = {value & 0xFFFFFF}"
    pos = rng.randrange(min(len(data), 64))
    data[pos] = rng.randrange(256)
    return f"header byte {pos} = {data[pos]}"


def _chunk_edit(data: bytearray, rng: random.Random) -> bytes:
    """Delete or duplicate a random span (for PNG: a whole chunk)."""
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        chunks, i = [], 8
        while i + 12 <= len(data):
            length = struct.unpack(">I", data[i : i + 4])[0]
            end = min(len(data), i + 12 + length)
            chunks.append((i, end))
            i = end
        if chunks:
            s, e = rng.choice(chunks)
            if rng.random() < 0.5:
                return bytes(data[:s] + data[e:])
            return bytes(data[:e] + data[s:e] + data[e:])
    s = rng.randrange(len(data))
    e = min(len(data), s + rng.choice((1, 4, 16, 256, 4096)))
    if rng.random() < 0.5:
        return bytes(data[:s] + data[e:])
    return bytes(data[:e] + data[s:e] + data[e:])


def mutate(seeds: list[tuple[str, bytes]], case: int) -> tuple[bytes, str, str, str]:
    """(bytes, seed name, mutation description, target) for case number ``case``: deterministic."""
    rng = random.Random(case)
    name, original = seeds[case % len(seeds)]
    kind = MUTATIONS[(case // len(seeds)) % len(MUTATIONS)]
    target = rng.choices(TARGETS, TARGET_WEIGHTS)[0]
    data = bytearray(original)
    n = len(data)
    # Most damage worth finding is near the start (headers, tables): bias positions there.
    def pos() -> int:
        return rng.randrange(min(n, 4096)) if rng.random() < 0.6 else rng.randrange(n)

    if kind == "bitflip":
        k = rng.choice((1, 2, 4, 8, 16))
        for _ in range(k):
            data[pos()] ^= 1 << rng.randrange(8)
        desc = f"{k} bit flips"
    elif kind == "byte":
        k = rng.choice((1, 2, 4))
        for _ in range(k):
            data[pos()] = rng.choice(BOUNDARY + (rng.randrange(256),))
        desc = f"{k} bytes overwritten"
    elif kind == "truncate":
        cut = pos()
        data = data[:cut]
        desc = f"truncated to {cut} of {n} bytes"
    elif kind == "header":
        desc = _header_edit(data, rng)
    elif kind == "chunk":
        data = bytearray(_chunk_edit(data, rng))
        desc = "chunk deleted or duplicated"
    elif kind == "insert":
        at, k = pos(), rng.choice((1, 3, 64, 1000))
        data[at:at] = bytes(rng.randrange(256) for _ in range(k))
        desc = f"{k} random bytes inserted at {at}"
    elif kind == "splice":
        other = seeds[rng.randrange(len(seeds))][1]
        cut = rng.randrange(1, n)
        data = data[:cut] + bytearray(other[rng.randrange(len(other)) :])
        desc = f"spliced with {seeds[rng.randrange(len(seeds))][0]} at {cut}"
    else:  # wrong_ext: the bytes unchanged or lightly damaged, read from a file with another format's suffix
        if rng.random() < 0.5:
            data[pos()] ^= 1 << rng.randrange(8)
        target = "prepare_path"
        desc = "wrong extension"
    return bytes(data), name, f"{kind}: {desc}", target


# -- worker ---------------------------------------------------------------------------------------


def _classifier():
    from skinedge.classifier import Classifier

    return Classifier(REFERENCE / "mobilenet_v2_1.0_224_quant.tflite", labels=REFERENCE / "imagenet_labels.txt",
                      num_threads=1)


def run_case(seeds, case: int, workdir: Path, clf_holder: dict) -> dict:
    """Run one case in this process; return its outcome record."""
    import numpy as np

    from skinedge import preprocess
    from skinedge.errors import SkinedgeError

    data, seed, desc, target = mutate(seeds, case)
    rng = random.Random(-case - 1)
    t0 = time.perf_counter()
    try:
        if target == "decode":
            img = preprocess.decode(data)
            if img.mode != "RGB" or min(img.size) < 1:
                raise AssertionError(f"decode returned {img.mode} {img.size}")
        elif target == "prepare":
            arr = preprocess.prepare(data)
            if arr.shape != (224, 224, 3) or arr.dtype != np.uint8:
                raise AssertionError(f"prepare returned {arr.shape} {arr.dtype}")
        elif target == "prepare_path":
            path = workdir / f"case{rng.choice(SUFFIXES)}"
            path.write_bytes(data)
            arr = preprocess.prepare(path)
            if arr.shape != (224, 224, 3):
                raise AssertionError(f"prepare returned {arr.shape}")
        else:
            if "clf" not in clf_holder:
                clf_holder["clf"] = _classifier()
            res = clf_holder["clf"].classify(data)
            if not 0.0 <= res.score <= 1.0 + 1e-6:
                raise AssertionError(f"score {res.score}")
        outcome = {"outcome": "ok"}
    except SkinedgeError as exc:
        outcome = {"outcome": "typed", "error": type(exc).__name__, "reason": exc.reason[:160]}
    except Exception as exc:  # anything else escaping skinedge is a bug
        outcome = {"outcome": "untyped", "error": type(exc).__name__, "reason": str(exc)[:300]}
    outcome.update(case=case, seed=seed, mutation=desc, target=target, ms=round((time.perf_counter() - t0) * 1000, 2))
    return outcome


def worker_main() -> None:
    import resource
    import warnings

    warnings.simplefilter("ignore")
    limit = int(os.environ.get("SKINEDGE_FUZZ_AS_LIMIT", str(6 << 30)))
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    seeds = seed_corpus()
    out = sys.stdout
    sys.stdout = sys.stderr
    holder: dict = {}
    with tempfile.TemporaryDirectory(prefix="skinedge-imgfuzz-") as tmp:
        for line in sys.stdin:
            start, stop = json.loads(line)
            for case in range(start, stop):
                out.write(json.dumps(run_case(seeds, case, Path(tmp), holder)) + "\n")
                out.flush()


def campaign(start: int, cases: int, case_timeout: float, log=print, save: Path | None = None) -> dict:
    """Run cases ``start .. start+cases`` in worker subprocesses; return the summary."""
    counts: Counter = Counter()
    by_target: dict = {}
    by_mutation: dict = {}
    by_error: Counter = Counter()
    failures: list[dict] = []
    slowest: list[tuple[float, int]] = []
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    t0 = time.time()
    case, stop = start, start + cases
    seeds = None
    while case < stop:
        proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--worker"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=str(ROOT))
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write((json.dumps([case, stop]) + "\n").encode())
        proc.stdin.flush()
        first = True
        while case < stop:
            # The first answer waits for the worker to start (imports, seed corpus).
            ready, _, _ = select.select([proc.stdout], [], [], case_timeout + (60 if first else 0))
            first = False
            rec: dict
            if not ready:
                proc.kill()
                proc.wait()
                rec = {"outcome": "hang", "case": case}
            else:
                line = proc.stdout.readline()
                if line:
                    rec = json.loads(line)
                else:
                    rc = proc.wait()
                    rec = {"outcome": "crash", "case": case,
                           "signal": signal.Signals(-rc).name if rc < 0 else f"exit {rc}"}
            if rec["outcome"] in ("hang", "crash"):
                seeds = seeds or seed_corpus()
                data, seed, desc, target = mutate(seeds, case)
                rec.update(seed=seed, mutation=desc, target=target)
            counts[rec["outcome"]] += 1
            by_target.setdefault(rec["target"], Counter())[rec["outcome"]] += 1
            by_mutation.setdefault(rec["mutation"].split(":")[0], Counter())[rec["outcome"]] += 1
            if rec["outcome"] == "typed":
                by_error[rec["error"]] += 1
            if "ms" in rec:
                slowest = sorted(slowest + [(rec["ms"], case)], reverse=True)[:5]
            if rec["outcome"] in ("hang", "crash", "untyped"):
                failures.append(rec)
                log(f"FAILURE case {case}: {json.dumps(rec)}")
                if save is not None:
                    seeds = seeds or seed_corpus()
                    save.mkdir(parents=True, exist_ok=True)
                    (save / f"case{case}.bin").write_bytes(mutate(seeds, case)[0])
            case += 1
            if rec["outcome"] in ("hang", "crash"):
                break  # the worker is gone: start a fresh one at the next case
            if (case - start) % 5000 == 0:
                log(f"  {case - start} cases, {time.time() - t0:.0f}s: {dict(counts)}")
        if proc.poll() is None:
            proc.stdin.close()
            proc.wait()
    return {
        "cases": cases, "first_case": start, "seconds": round(time.time() - t0, 1), "counts": dict(counts),
        "by_target": {k: dict(v) for k, v in sorted(by_target.items())},
        "by_mutation": {k: dict(v) for k, v in sorted(by_mutation.items())},
        "typed_errors": dict(by_error), "slowest_ms": slowest, "failures": failures[:50],
        "case_timeout_s": case_timeout,
    }


def main() -> int:
    if "--worker" in sys.argv:
        worker_main()
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=30000)
    ap.add_argument("--start", type=int, default=0, help="first case number (cases are deterministic)")
    ap.add_argument("--case-timeout", type=float, default=10.0, help="seconds before a case counts as a hang")
    ap.add_argument("--save-failures", type=Path, default=None, help="write failing inputs here")
    ap.add_argument("--json", type=Path, default=None, help="write the summary here")
    args = ap.parse_args()
    summary = campaign(args.start, args.cases, args.case_timeout, save=args.save_failures)
    text = json.dumps(summary, indent=1)
    if args.json:
        args.json.write_text(text)
    print(text)
    c = summary["counts"]
    print(f"{args.cases} cases in {summary['seconds']}s: ok {c.get('ok', 0)}, typed errors {c.get('typed', 0)}, "
          f"untyped {c.get('untyped', 0)}, crashes {c.get('crash', 0)}, hangs {c.get('hang', 0)}; "
          f"slowest case {summary['slowest_ms'][0][0] if summary['slowest_ms'] else 0:.0f} ms")
    return 1 if any(c.get(k) for k in ("untyped", "crash", "hang")) else 0


if __name__ == "__main__":
    sys.exit(main())
