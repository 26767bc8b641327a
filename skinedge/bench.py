"""``skinedge bench``: load time, latency, end-to-end split and memory of a model on this machine."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from skinedge.classifier import Classifier
from skinedge.profiling import LatencyStats, cpu_description, interleaved, peak_rss_bytes, rss_bytes, synthetic_photo


def run_bench(
    model: str | os.PathLike | None = None,
    *,
    threads: int | None = None,
    runs: int = 200,
    warmup: int = 20,
    image: str | os.PathLike | None = None,
    backend: str | None = None,
    e2e_runs: int = 30,
) -> dict[str, Any]:
    """Measure a model; returns a JSON-ready dict (see ``skinedge bench --help`` for the fields).

    Invoke latency is timed for the Classifier path (quantize, invoke, dequantize, softmax) and for
    the bare ``interpreter.invoke()`` of the same interpreter, in interleaved rounds; their ratio is
    the SDK's overhead. End-to-end timing decodes ``image`` (default: a synthetic 1280x960 JPEG).
    """
    rss_before = rss_bytes()
    t = time.perf_counter()
    clf = Classifier(model, num_threads=threads, backend=backend)
    load_ms = (time.perf_counter() - t) * 1000
    rss_model = rss_bytes() - rss_before
    photo: Any = Path(image) if image else synthetic_photo()
    pixels, _, _ = clf.preprocess(photo)
    t = time.perf_counter()
    clf.invoke(pixels)
    first_ms = (time.perf_counter() - t) * 1000
    interpreter = clf.interpreter  # the very interpreter the Classifier drives: same model, same threads
    samples = interleaved({"classifier": lambda: clf.invoke(pixels), "interpreter": interpreter.invoke}, runs, warmup)
    sdk, bare = LatencyStats.of(samples["classifier"]), LatencyStats.of(samples["interpreter"])
    e2e = [clf.classify(photo).timings for _ in range(e2e_runs)]
    decode = float(np.median([x.decode_ms for x in e2e]))
    prep = float(np.median([x.preprocess_ms for x in e2e]))
    inv = float(np.median([x.invoke_ms for x in e2e]))
    total = float(np.median([x.total_ms for x in e2e]))
    return {
        "model": str(clf.model_path),
        "model_bytes": clf.model_path.stat().st_size,
        "backend": clf.backend.name,
        "backend_version": clf.backend.version,
        "delegate": clf.delegate.describe(),
        "delegated": clf.delegated,
        "threads": clf.num_threads,
        "cpu": cpu_description(),
        "input": f"{clf.spec.height}x{clf.spec.width}x3 {np.dtype(clf.input_details['dtype']).name}",
        "load_ms": round(load_ms, 2),
        "first_invoke_ms": round(first_ms, 3),
        "invoke_ms": sdk.to_dict(),
        "bare_interpreter_invoke_ms": bare.to_dict(),
        "sdk_overhead_ratio": round(sdk.p50 / bare.p50, 4),
        "throughput_per_s": round(1000.0 / sdk.p50, 1),
        "end_to_end_ms": {
            "image": str(image) if image else "synthetic 1280x960 JPEG",
            "decode": round(decode, 3),
            "preprocess": round(prep, 3),
            "invoke": round(inv, 3),
            "total": round(total, 3),
            "runs": e2e_runs,
        },
        "rss_added_by_model_mb": round(rss_model / 2**20, 2),
        "peak_rss_mb": round(peak_rss_bytes() / 2**20, 2),
    }
