"""Latency and memory measurement shared by ``skinedge bench`` and ``benchmarks/``.

Method: warm up, then time each call with ``perf_counter``; the SDK path and the bare interpreter
are timed in interleaved rounds so that machine noise hits both alike, and their ratio is the figure
to quote. Memory is the process RSS read from ``/proc`` (Linux) or ``getrusage`` elsewhere.
"""

from __future__ import annotations

import io
import os
import platform
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class LatencyStats:
    """Summary of latency samples, in milliseconds."""

    n: int
    min: float
    p50: float
    p90: float
    p99: float
    mean: float

    @classmethod
    def of(cls, samples_ms: list[float] | np.ndarray) -> LatencyStats:
        a = np.asarray(samples_ms, dtype=np.float64)
        if a.size == 0:
            raise ValueError("no samples")
        p50, p90, p99 = np.percentile(a, [50, 90, 99])
        return cls(
            n=int(a.size), min=float(a.min()), p50=float(p50), p90=float(p90), p99=float(p99), mean=float(a.mean())
        )

    def to_dict(self) -> dict[str, float]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def rss_bytes() -> int:
    """Current resident set size of this process."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return peak_rss_bytes()


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def open_fds() -> int:
    """Number of open file descriptors (Linux), or -1 where unknown."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1


def cpu_description() -> str:
    """CPU model name and the number of CPUs this process may use."""
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key = line.split(":")[0].strip().lower()
                if key in ("model name", "hardware", "cpu model"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    model = model or platform.processor() or platform.machine()
    from skinedge.backend import usable_cpus

    return f"{model} ({platform.machine()}, {usable_cpus()} usable CPUs)"


def time_calls(fn: Callable[[], Any], runs: int, warmup: int = 0) -> list[float]:
    """Call ``fn`` ``warmup`` times untimed, then ``runs`` times; return each duration in ms."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def interleaved(fns: dict[str, Callable[[], Any]], runs: int, warmup: int, rounds: int = 10) -> dict[str, list[float]]:
    """Time several callables in alternating rounds (A B A B ...) so drift and noise hit all alike."""
    for fn in fns.values():
        time_calls(fn, 0, warmup)
    samples: dict[str, list[float]] = {k: [] for k in fns}
    per_round = max(1, runs // rounds)
    done = 0
    while done < runs:
        n = min(per_round, runs - done)
        for k, fn in fns.items():
            samples[k].extend(time_calls(fn, n))
        done += n
    return samples


def synthetic_photo(width: int = 1280, height: int = 960, seed: int = 0) -> bytes:
    """A deterministic photo-like JPEG (smooth colour fields plus grain) for benchmarks without files.

    Drawn at 1/4 size and upscaled, so making it costs ~1 MB rather than the ~100 MB that full-size
    float arrays would add to the peak RSS that ``bench`` reports.
    """
    from PIL import Image, ImageFilter

    rng = np.random.default_rng(seed)
    w, h = max(1, width // 4), max(1, height // 4)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack(
        [128 + 80 * np.sin(xx / 24.0), 120 + 70 * np.cos(yy / 15.0), 110 + 60 * np.sin((xx + yy) / 36.0)], axis=2
    )
    small = np.clip(base + rng.normal(0, 12, base.shape).astype(np.float32), 0, 255).astype(np.uint8)
    img = Image.fromarray(small, "RGB").resize((width, height), Image.Resampling.BICUBIC)
    img = img.filter(ImageFilter.UnsharpMask(radius=2, percent=60, threshold=2))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()
