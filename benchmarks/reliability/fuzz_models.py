"""Fuzz campaign: mutated .tflite models must be refused with a typed error, never crash the process.

Each case is a deterministic mutation (kind, seed) of a base model: truncation, bit flips anywhere,
bit flips / byte and word overwrites in the flatbuffer's structure (everything but the constant
buffers' data, where most bytes are weights and a flip is harmless), and for a model packed with
skinedge metadata, flips and truncations in the metadata archive. Cases run in a worker subprocess,
restarted when a case kills it, so a segfault is recorded as a crash instead of ending the campaign;
a case that takes longer than ``--case-timeout`` is recorded as a hang.

Modes:

* ``raw``: the bytes go straight to ``ai_edge_litert`` (``Interpreter(model_content=...)``,
  ``allocate_tensors``, one ``invoke``): what crashes an unguarded interpreter;
* ``guarded``: the bytes are written to a file and loaded with ``skinedge.Classifier`` (read_model:
  checksum, metadata, structural walk), then one image is classified: what a skinedge user gets;
* ``probed``: as guarded, with ``SKINEDGE_PROBE_MODELS=1`` (the model is first run in a child
  process); run only on the cases that crashed the raw interpreter, to measure what the probe adds.

Usage::

    python benchmarks/reliability/fuzz_models.py --cases 2000            # both reference models
    python benchmarks/reliability/fuzz_models.py --cases 500 --packed    # plus a metadata-packed model
    python benchmarks/reliability/fuzz_models.py --cases 300 --modes guarded --save-crashers /tmp/crashers
    python benchmarks/reliability/fuzz_models.py --cases 1000 --models --valid-models   # only the small models

Prints one summary line per (model, mode) and a JSON summary; exit 1 if any guarded case crashed,
hung or raised an untyped error.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import select
import signal
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
VALID_MODELS = ROOT / "tests" / "data" / "valid_models"
REFERENCE_MODELS = ("mobilenet_v2_1.0_224_quant.tflite", "tf2_mobilenet_v2_1.0_224_ptq.tflite")

FLATBUFFER_KINDS = ("truncate", "bitflip", "struct_bitflip", "struct_byte", "struct_word",
                    "graph_index", "graph_tensor", "graph_options")
ARCHIVE_KINDS = ("archive_bitflip", "archive_byte", "archive_truncate")
INTERESTING_WORDS = (0, 1, 2, 3, 4, 7, 8, 0xFF, 0x100, 0x7FFF, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF,
                     0xFFFFFFFE, 0xFFFFFF00)


# -- mutations ------------------------------------------------------------------------------------


def data_spans(flatbuffer: bytes) -> list[tuple[int, int]]:
    """(start, end) of every constant buffer's data in a flatbuffer (the weights)."""
    from skinedge.flatbuffer_check import _Reader

    r = _Reader(flatbuffer)
    model = r.table(r.u32(0, "root"), "model")
    spans = []
    for buf in model.tables(4, "buffers"):
        start, length = buf.vector(0, 1, "data")
        if length:
            spans.append((start, start + length))
    return sorted(spans)


def structure_positions(flatbuffer: bytes) -> list[tuple[int, int]]:
    """Byte ranges of the flatbuffer that are structure (tables, vectors of indices, strings), not weights."""
    ranges, pos = [], 0
    for start, end in data_spans(flatbuffer):
        if start > pos:
            ranges.append((pos, start))
        pos = max(pos, end)
    if pos < len(flatbuffer):
        ranges.append((pos, len(flatbuffer)))
    return ranges


def _pick(ranges: list[tuple[int, int]], rng: random.Random) -> int:
    total = sum(e - s for s, e in ranges)
    k = rng.randrange(total)
    for s, e in ranges:
        if k < e - s:
            return s + k
        k -= e - s
    raise AssertionError("unreachable")


def graph_fields(flatbuffer: bytes) -> dict[str, list[tuple[int, int, int]]]:
    """Positions of the graph's semantic fields, by group: ``(position, size in bytes, range)``.

    ``index``: operator code indices, operator and subgraph input/output tensor indices, tensor buffer
    indices (range: how many things they index); ``tensor``: shape dimensions, types, quantized
    dimensions; ``options``: every byte of the operators' builtin option tables (strides, padding...).
    These are the fields a flatbuffer verifier cannot judge: a flip there leaves a well-formed file.
    """
    from skinedge.flatbuffer_check import _Reader

    r = _Reader(flatbuffer)
    model = r.table(r.u32(0, "root"), "model")
    n_codes = len(model.tables(1, "codes"))
    n_buffers = len(model.tables(4, "buffers"))
    out: dict[str, list[tuple[int, int, int]]] = {"index": [], "tensor": [], "options": []}
    for sg in model.tables(2, "subgraphs"):
        tensors = sg.tables(0, "tensors")
        n = len(tensors)
        for slot in (1, 2):
            start, count = sg.vector(slot, 4, "io")
            out["index"] += [(start + 4 * i, 4, n) for i in range(count)]
        for t in tensors:
            start, count = t.vector(0, 4, "shape")
            out["tensor"] += [(start + 4 * i, 4, 0) for i in range(count)]
            for slot, size, rng in ((1, 1, 23), (2, 4, n_buffers)):
                pos = t.field(slot, size)
                if pos is not None:
                    (out["tensor"] if slot == 1 else out["index"]).append((pos, size, rng))
            qpos = t.ref(4)
            if qpos is not None:
                q = r.table(qpos, "q")
                pos = q.field(6, 4)
                if pos is not None:
                    out["tensor"].append((pos, 4, 4))
        for op in sg.tables(3, "operators"):
            pos = op.field(0, 4)
            if pos is not None:
                out["index"].append((pos, 4, n_codes))
            for slot in (1, 2):
                start, count = op.vector(slot, 4, "io")
                out["index"] += [(start + 4 * i, 4, n) for i in range(count)]
            opt = op.ref(4)
            if opt is not None:
                table = r.table(opt, "options")
                out["options"] += [(opt + k, 1, 256) for k in range(4, table.tsize)]
    return out


class Base:
    """A base model and where its parts are, computed once per model."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data = path.read_bytes()
        from skinedge.metadata import _zip_start

        start = _zip_start(self.data)
        self.fb_end = start if start is not None else len(self.data)
        self.structure = structure_positions(self.data[: self.fb_end])
        self.fields = graph_fields(self.data[: self.fb_end])


def mutate(base: Base, kind: str, seed: int) -> tuple[bytes, str]:
    """The mutated bytes for case (kind, seed), and a one-line description of what was changed."""
    rng = random.Random(f"{kind}:{seed}")
    data = bytearray(base.data)
    n, fb_end = len(data), base.fb_end
    if kind == "truncate":
        cut = rng.randrange(n) if rng.random() < 0.5 else rng.randrange(min(n, 65536))
        return bytes(data[:cut]), f"truncate to {cut} bytes"
    if kind == "archive_truncate":
        cut = rng.randrange(fb_end, n)
        return bytes(data[:cut]), f"truncate to {cut} bytes (inside the metadata archive)"
    if kind in ("bitflip", "struct_bitflip", "archive_bitflip"):
        flips = []
        for _ in range(rng.choice((1, 1, 2, 3, 8))):
            if kind == "bitflip":
                pos = rng.randrange(fb_end)
            elif kind == "struct_bitflip":
                pos = _pick(base.structure, rng)
            else:
                pos = rng.randrange(fb_end, n)
            bit = rng.randrange(8)
            data[pos] ^= 1 << bit
            flips.append(f"{pos}:{bit}")
        return bytes(data), f"{kind} " + ",".join(flips)
    if kind in ("struct_byte", "archive_byte"):
        pos = _pick(base.structure, rng) if kind == "struct_byte" else rng.randrange(fb_end, n)
        value = rng.choice((0, 0xFF, 0x7F, 0x80, rng.randrange(256)))
        old = data[pos]
        value = value if value != old else old ^ 0xFF
        data[pos] = value
        return bytes(data), f"{kind} byte {pos}: {old:#04x} -> {value:#04x}"
    if kind == "struct_word":
        pos = _pick(base.structure, rng) & ~3
        pos = min(pos, fb_end - 4)
        old = int.from_bytes(data[pos : pos + 4], "little")
        choice = rng.random()
        if choice < 0.5:
            value = rng.choice(INTERESTING_WORDS)
        elif choice < 0.8:
            value = (old + rng.choice((-1, 1, -4, 4, 64, -64, 1000))) & 0xFFFFFFFF
        else:
            value = rng.randrange(1 << 32)
        value = value if value != old else old ^ 1
        data[pos : pos + 4] = value.to_bytes(4, "little")
        return bytes(data), f"struct_word at {pos}: {old:#x} -> {value:#x}"
    if kind.startswith("graph_"):
        pos, size, limit = rng.choice(base.fields[kind[len("graph_"):]])
        old = int.from_bytes(data[pos : pos + size], "little", signed=size == 4)
        if kind == "graph_options":
            value = rng.choice((0, 1, 2, 3, 0xFF, 0x80, 0x7F, old ^ (1 << rng.randrange(8))))
        elif size == 1:
            value = rng.randrange(limit + 3) if rng.random() < 0.8 else rng.randrange(256)
        elif limit:  # an index: another valid one, just past the end, negative or far off
            value = rng.choice((rng.randrange(limit), rng.randrange(limit), limit, limit + 1, -1, -2, old + 1,
                                old - 1, 1 << 20, 0x7FFFFFFF))
        else:  # a shape dimension
            value = rng.choice((0, 1, -1, -2, 2 * old, old + 1, max(old - 1, 0), 3, 1 << 16, 0x7FFFFFFF))
        if value == old:  # every case changes something
            value ^= 1
        if size == 1:
            data[pos] = value & 0xFF
        else:
            data[pos : pos + 4] = (value & 0xFFFFFFFF).to_bytes(4, "little")
        return bytes(data), f"{kind} at {pos}: {old} -> {value}"
    raise ValueError(f"unknown mutation kind {kind!r}")


# -- worker ---------------------------------------------------------------------------------------


def _run_case(case: dict, bases: dict[str, Base], workdir: Path) -> dict:
    import numpy as np

    if case["kind"] == "file":  # a prepared input (regression tests): the file as it is
        data, desc = Path(case["path"]).read_bytes(), case["path"]
    else:
        if case["base"] not in bases:
            bases[case["base"]] = Base(Path(case["base"]))
        data, desc = mutate(bases[case["base"]], case["kind"], case["seed"])
    if case["mode"] == "raw":
        from ai_edge_litert.interpreter import Interpreter

        try:
            interpreter = Interpreter(model_content=data, num_threads=1)
            interpreter.allocate_tensors()
            inp = interpreter.get_input_details()[0]
            interpreter.set_tensor(inp["index"], np.zeros(inp["shape"], dtype=inp["dtype"]))
            interpreter.invoke()
            interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
        except Exception as exc:  # the raw interpreter has no typed errors: any exception is a refusal
            return {"outcome": "refused", "error": type(exc).__name__, "reason": str(exc).splitlines()[0][:200]
                    if str(exc) else "", "desc": desc}
        return {"outcome": "ok", "desc": desc}
    from skinedge.classifier import Classifier
    from skinedge.errors import SkinedgeError

    path = workdir / "case.tflite"
    path.write_bytes(data)
    os.environ["SKINEDGE_PROBE_MODELS"] = "1" if case["mode"] == "probed" else "0"
    try:
        with Classifier(path, num_threads=1) as clf:
            pixels = np.full((clf.spec.height, clf.spec.width, 3), 127, dtype=np.uint8)
            clf.classify(pixels)
    except SkinedgeError as exc:
        return {"outcome": "refused", "error": type(exc).__name__, "reason": exc.reason[:200], "desc": desc}
    except Exception as exc:  # an untyped error escaping skinedge is a bug
        return {"outcome": "untyped", "error": type(exc).__name__, "reason": str(exc)[:200], "desc": desc}
    return {"outcome": "ok", "desc": desc}


def worker_main() -> None:
    """Read one JSON case per line on stdin, answer one JSON line per case on stdout."""
    import resource
    import warnings

    warnings.simplefilter("ignore")
    limit = int(os.environ.get("SKINEDGE_FUZZ_AS_LIMIT", str(8 << 30)))
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))  # a huge tensor fails instead of swapping
    bases: dict[str, Base] = {}
    out = sys.stdout
    sys.stdout = sys.stderr  # nothing else may write to the answer channel
    with tempfile.TemporaryDirectory(prefix="skinedge-fuzz-") as tmp:
        for line in sys.stdin:
            case = json.loads(line)
            out.write(json.dumps(_run_case(case, bases, Path(tmp))) + "\n")
            out.flush()


class Runner:
    """Runs cases in a worker subprocess; a dead worker is a crash, a silent one a hang."""

    def __init__(self, case_timeout: float = 30.0, stderr_path: str | None = None) -> None:
        self.case_timeout = case_timeout
        self.stderr_path = stderr_path
        self.proc: subprocess.Popen | None = None
        self.restarts = 0

    def _start(self) -> subprocess.Popen:
        err = open(self.stderr_path or os.devnull, "ab")
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, env=env, cwd=str(ROOT),
        )
        err.close()
        return proc

    def run(self, case: dict) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = self._start()
        proc = self.proc
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write((json.dumps(case) + "\n").encode())
            proc.stdin.flush()
        except BrokenPipeError:
            pass
        ready, _, _ = select.select([proc.stdout], [], [], self.case_timeout)
        if not ready:
            proc.kill()
            proc.wait()
            self.proc, self.restarts = None, self.restarts + 1
            return {"outcome": "hang"}
        line = proc.stdout.readline()
        if not line:
            rc = proc.wait()
            self.proc, self.restarts = None, self.restarts + 1
            sig = -rc if rc < 0 else None
            name = signal.Signals(sig).name if sig else f"exit {rc}"
            return {"outcome": "crash", "signal": name}
        return json.loads(line)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


# -- campaign -------------------------------------------------------------------------------------


def make_packed_model(reference: Path, out: Path) -> Path:
    """A reference model packed with skinedge metadata (ImageNet labels, squash + bilinear)."""
    from skinedge.metadata import ModelMetadata, pack, read_labels_file
    from skinedge.preprocess import PreprocessSpec

    labels = tuple(f"{i}:{x}" for i, x in enumerate(read_labels_file(REFERENCE / "imagenet_labels.txt")))  # unique
    md = ModelMetadata(labels=labels, preprocess=PreprocessSpec(jpeg_draft=False), output_kind="probabilities",
                       input_shape=(1, 224, 224, 3), input_dtype="uint8", num_outputs=len(labels),
                       name="fuzz-base", description="reference model packed for the model fuzz campaign")
    from skinedge.metadata import unpack

    bare = unpack(reference.read_bytes(), str(reference)).flatbuffer  # without its own TFLite metadata archive
    out.write_bytes(pack(bare, md))
    return out


def cases_for(base: Path, kinds: tuple[str, ...], n: int, seed0: int = 0) -> list[dict]:
    return [{"base": str(base), "kind": kinds[i % len(kinds)], "seed": seed0 + i} for i in range(n)]


def campaign(bases: list[Path], n: int, modes: tuple[str, ...], case_timeout: float, save: Path | None,
             seed0: int = 0, log=print, kinds: tuple[str, ...] | None = None) -> dict:
    summary: dict = {"cases_per_model": n, "models": {}}
    runner = Runner(case_timeout)
    try:
        for base in bases:
            base_kinds = kinds or FLATBUFFER_KINDS + (ARCHIVE_KINDS if _has_archive(base) else ())
            per_mode: dict = {}
            raw_crash_keys: set = set()
            results: dict = {}
            for mode in modes:
                if mode == "probed":
                    continue  # run below, on the cases that crashed the raw interpreter only
                counts: Counter = Counter()
                by_kind: dict = {}
                t0 = time.time()
                examples: dict = {}
                for case in cases_for(base, base_kinds, n, seed0):
                    res = runner.run({**case, "mode": mode})
                    key = (case["kind"], case["seed"])
                    results[(mode, key)] = res
                    counts[res["outcome"]] += 1
                    by_kind.setdefault(case["kind"], Counter())[res["outcome"]] += 1
                    if res["outcome"] in ("crash", "hang", "untyped"):
                        if mode == "raw" and res["outcome"] == "crash":
                            raw_crash_keys.add(key)
                        desc = mutate(Base(base), case["kind"], case["seed"])[1]
                        examples.setdefault(res["outcome"], []).append(
                            {"kind": case["kind"], "seed": case["seed"], "desc": desc, **res})
                        if save is not None:
                            save.mkdir(parents=True, exist_ok=True)
                            data = mutate(Base(base), case["kind"], case["seed"])[0]
                            (save / f"{base.stem}-{mode}-{case['kind']}-{case['seed']}.tflite").write_bytes(data)
                per_mode[mode] = {"counts": dict(counts), "by_kind": {k: dict(v) for k, v in by_kind.items()},
                                  "seconds": round(time.time() - t0, 1),
                                  "examples": {k: v[:5] for k, v in examples.items()}}
                log(f"{base.name} [{mode}] {n} cases in {time.time() - t0:.0f}s: "
                    + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
            if "raw" in modes and "guarded" in modes:
                converted = Counter(results[("guarded", k)]["outcome"] for k in raw_crash_keys)
                per_mode["raw_crashes_under_guard"] = dict(converted)
                if raw_crash_keys:
                    log(f"{base.name}: of {len(raw_crash_keys)} mutations that crash the raw interpreter, the guarded "
                        f"load gives " + ", ".join(f"{k} {v}" for k, v in sorted(converted.items())))
            if "probed" in modes and raw_crash_keys:
                probed = Counter()
                for kind, seed in sorted(raw_crash_keys):
                    res = runner.run({"base": str(base), "kind": kind, "seed": seed, "mode": "probed"})
                    probed[res["outcome"]] += 1
                    if res["outcome"] != "refused":
                        per_mode.setdefault("probed_failures", []).append({"kind": kind, "seed": seed, **res})
                per_mode["raw_crashes_under_guard_and_probe"] = dict(probed)
                log(f"{base.name}: of {len(raw_crash_keys)} mutations that crash the raw interpreter, walk + probe "
                    f"gives " + ", ".join(f"{k} {v}" for k, v in sorted(probed.items())))
            summary["models"][base.name] = per_mode
    finally:
        runner.close()
    return summary


def _has_archive(path: Path) -> bool:
    from skinedge.metadata import _zip_start

    return _zip_start(path.read_bytes()) is not None


def main() -> int:
    if "--worker" in sys.argv:
        worker_main()
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=1000, help="cases per model and mode")
    ap.add_argument("--models", nargs="*", default=None, help="base models (default: both reference models)")
    ap.add_argument("--packed", action="store_true", help="also fuzz a reference model packed with metadata")
    ap.add_argument("--valid-models", action="store_true",
                    help="also fuzz the small converter-made models in tests/data/valid_models (more operator kinds)")
    ap.add_argument("--modes", nargs="+", default=["raw", "guarded", "probed"], choices=["raw", "guarded", "probed"],
                    help="raw: the interpreter alone; guarded: skinedge's default load; probed: guarded plus "
                         "SKINEDGE_PROBE_MODELS=1, run on the cases that crashed the raw interpreter")
    ap.add_argument("--case-timeout", type=float, default=30.0, help="seconds before a case counts as a hang")
    ap.add_argument("--seed", type=int, default=0, help="first case seed")
    ap.add_argument("--kinds", nargs="+", default=None, choices=FLATBUFFER_KINDS + ARCHIVE_KINDS,
                    help="mutation kinds to use (default: all that apply)")
    ap.add_argument("--save-crashers", type=Path, default=None, help="write crashing inputs here")
    ap.add_argument("--json", type=Path, default=None, help="write the summary here")
    args = ap.parse_args()
    bases = [Path(m) for m in args.models] if args.models is not None else [REFERENCE / m for m in REFERENCE_MODELS]
    if args.valid_models:
        bases += sorted(VALID_MODELS.glob("*.tflite"))
    with tempfile.TemporaryDirectory() as tmp:
        if args.packed:
            bases.append(make_packed_model(REFERENCE / REFERENCE_MODELS[0], Path(tmp) / "packed_reference.tflite"))
        summary = campaign(bases, args.cases, tuple(args.modes), args.case_timeout, args.save_crashers, args.seed,
                           kinds=tuple(args.kinds) if args.kinds else None)
    text = json.dumps(summary, indent=1)
    if args.json:
        args.json.write_text(text)
    print(text)
    bad = sum(m.get("guarded", {}).get("counts", {}).get(k, 0) for m in summary["models"].values()
              for k in ("crash", "hang", "untyped"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
