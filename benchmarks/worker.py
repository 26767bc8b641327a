"""One measurement in a fresh process, printed as one JSON line: how ``run_all.py`` and the suites time
contenders that live in other virtual environments (tflite-runtime 2.14 with numpy<2, ONNX Runtime,
MediaPipe) or must not share a process with skinedge (TensorFlow).

    python benchmarks/worker.py invoke --engine litert --model M --threads 2 --runs 100 --warmup 10
    python benchmarks/worker.py e2e --pipeline onnxruntime --model M.onnx --threads 1 --runs 10 --images a.jpg,b.jpg
    python benchmarks/worker.py rss --model M --image a.jpg --n 10000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import contenders  # noqa: E402
import numpy as np  # noqa: E402


def _norm(text: str | None) -> tuple[float, float]:
    if not text:
        return (127.5, 127.5)
    mean, std = (float(v) for v in text.split(","))
    return (mean, std)


def task_invoke(args: argparse.Namespace) -> dict:
    """Bare invoke latency on a fixed input (the 640x480 photo, preprocessed as a plain script does)."""
    engine = contenders.make_engine(args.engine, args.model, args.threads)
    pixels = contenders.naive_pixels(args.image)[0] if args.image else np.full((224, 224, 3), 128, np.uint8)
    x = contenders.to_input(pixels, engine.dtype, _norm(args.norm))
    engine.set(x)
    for _ in range(args.warmup):
        engine.invoke()
    samples = []
    for _ in range(args.runs):
        t = time.perf_counter()
        engine.invoke()
        samples.append((time.perf_counter() - t) * 1000)
    top1 = int(np.argmax(np.asarray(engine.run(x)).reshape(-1)))
    return {"engine": args.engine, "version": engine.version, "delegated": engine.delegated,
            "threads": args.threads, "samples_ms": samples, "top1": top1}


def task_e2e(args: argparse.Namespace) -> dict:
    """Photo (a file path) to top-1 label, per image: total wall time and its decode/preprocess/invoke split."""
    pipe = contenders.make_pipeline(args.pipeline, args.model, args.threads, _norm(args.norm))
    per_image = {}
    for image in args.images.split(","):
        for _ in range(args.warmup):
            pipe.label(image)
        rows = []
        for _ in range(args.runs):
            t = time.perf_counter()
            top1, split = pipe.label(image)
            rows.append({"total": (time.perf_counter() - t) * 1000, **split, "top1": top1})
        per_image[image] = rows
    return {"pipeline": args.pipeline, "version": pipe.version, "threads": args.threads, "per_image": per_image}


def task_rss(args: argparse.Namespace) -> dict:
    """RSS over ``n`` photo-to-label classifications with one Classifier (leak check)."""
    from skinedge import Classifier
    from skinedge.profiling import rss_bytes

    clf = Classifier(args.model, num_threads=args.threads)
    data = Path(args.image).read_bytes()
    for _ in range(args.warmup):
        clf.classify(data)
    start = rss_bytes()
    trace = [(0, start)]
    t0 = time.perf_counter()
    for i in range(1, args.n + 1):
        clf.classify(data)
        if i % max(1, args.n // 20) == 0:
            trace.append((i, rss_bytes()))
    return {"n": args.n, "warmup": args.warmup, "threads": args.threads, "rss_start_bytes": start,
            "rss_end_bytes": trace[-1][1], "growth_bytes": trace[-1][1] - start,
            "max_growth_bytes": max(r for _, r in trace) - start, "trace": trace,
            "seconds": time.perf_counter() - t0, "pid": os.getpid()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="task", required=True)
    for name in ("invoke", "e2e", "rss"):
        p = sub.add_parser(name)
        p.add_argument("--model", required=True)
        p.add_argument("--threads", type=int, default=1)
        p.add_argument("--runs", type=int, default=50)
        p.add_argument("--warmup", type=int, default=5)
        p.add_argument("--norm", help="float inputs: mean,std")
    sub.choices["invoke"].add_argument("--engine", required=True)
    sub.choices["invoke"].add_argument("--image")
    sub.choices["e2e"].add_argument("--pipeline", required=True)
    sub.choices["e2e"].add_argument("--images", required=True, help="comma-separated paths")
    sub.choices["rss"].add_argument("--image", required=True)
    sub.choices["rss"].add_argument("--n", type=int, default=10_000)
    args = parser.parse_args(argv)
    out = {"invoke": task_invoke, "e2e": task_e2e, "rss": task_rss}[args.task](args)
    out["python"] = sys.version.split()[0]
    out["numpy"] = np.__version__
    sys.stdout.write("\n" + json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
