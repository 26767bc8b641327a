"""``skinedge bench``: load time, latency, end-to-end split and memory of a model on this machine."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from skinedge.classifier import Classifier
from skinedge.profiling import LatencyStats, cpu_description, interleaved, peak_rss_bytes, rss_bytes, synthetic_photo


@dataclass(frozen=True)
class EndToEnd:
    """Median milliseconds of each step of ``classify`` on one photo, over ``runs``."""

    image: str
    decode: float
    preprocess: float
    invoke: float
    total: float
    runs: int


@dataclass(frozen=True)
class BenchReport:
    """What ``skinedge bench`` measured (``to_dict()``: its ``--json``)."""

    model: str
    model_bytes: int
    backend: str
    backend_version: str
    delegate: str
    delegated: bool
    threads: int
    cpu: str
    input: str
    load_ms: float
    first_invoke_ms: float
    invoke_ms: LatencyStats  # the Classifier's invoke path
    bare_interpreter_invoke_ms: LatencyStats  # interpreter.invoke() alone, interleaved with it
    end_to_end_ms: EndToEnd
    rss_added_by_model_mb: float
    peak_rss_mb: float

    @property
    def sdk_overhead_ratio(self) -> float:
        return round(self.invoke_ms.p50 / self.bare_interpreter_invoke_ms.p50, 4)

    @property
    def throughput_per_s(self) -> float:
        return round(1000.0 / self.invoke_ms.p50, 1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "model_bytes": self.model_bytes, "backend": self.backend,
            "backend_version": self.backend_version, "delegate": self.delegate, "delegated": self.delegated,
            "threads": self.threads, "cpu": self.cpu, "input": self.input, "load_ms": self.load_ms,
            "first_invoke_ms": self.first_invoke_ms, "invoke_ms": self.invoke_ms.to_dict(),
            "bare_interpreter_invoke_ms": self.bare_interpreter_invoke_ms.to_dict(),
            "sdk_overhead_ratio": self.sdk_overhead_ratio, "throughput_per_s": self.throughput_per_s,
            "end_to_end_ms": dict(vars(self.end_to_end_ms)),
            "rss_added_by_model_mb": self.rss_added_by_model_mb, "peak_rss_mb": self.peak_rss_mb,
        }


def run_bench(
    model: str | os.PathLike | None = None,
    *,
    threads: int | None = None,
    runs: int = 200,
    warmup: int = 20,
    image: str | os.PathLike | None = None,
    backend: str | None = None,
    e2e_runs: int = 30,
) -> BenchReport:
    """Measure a model (see ``skinedge bench --help``).

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
    pixels = clf.prepare(photo).pixels
    t = time.perf_counter()
    clf.invoke(pixels)
    first_ms = (time.perf_counter() - t) * 1000
    interpreter = clf.interpreter  # the very interpreter the Classifier drives: same model, same threads
    samples = interleaved({"classifier": lambda: clf.invoke(pixels), "interpreter": interpreter.invoke}, runs, warmup)
    e2e = [clf.classify(photo).timings for _ in range(e2e_runs)]
    return BenchReport(
        model=str(clf.model_path),
        model_bytes=clf.model_path.stat().st_size,
        backend=clf.backend.name,
        backend_version=clf.backend.version,
        delegate=clf.delegate.describe(),
        delegated=clf.delegated,
        threads=clf.num_threads,
        cpu=cpu_description(),
        input=f"{clf.spec.height}x{clf.spec.width}x3 {np.dtype(clf.input_details['dtype']).name}",
        load_ms=round(load_ms, 2),
        first_invoke_ms=round(first_ms, 3),
        invoke_ms=LatencyStats.of(samples["classifier"]),
        bare_interpreter_invoke_ms=LatencyStats.of(samples["interpreter"]),
        end_to_end_ms=EndToEnd(
            image=str(image) if image else "synthetic 1280x960 JPEG",
            decode=round(float(np.median([x.decode_ms for x in e2e])), 3),
            preprocess=round(float(np.median([x.preprocess_ms for x in e2e])), 3),
            invoke=round(float(np.median([x.invoke_ms for x in e2e])), 3),
            total=round(float(np.median([x.total_ms for x in e2e])), 3),
            runs=e2e_runs,
        ),
        rss_added_by_model_mb=round(rss_model / 2**20, 2),
        peak_rss_mb=round(peak_rss_bytes() / 2**20, 2),
    )
