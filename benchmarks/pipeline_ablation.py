"""What each of the pipeline's choices buys, each against the same code without it, in paired rounds in one process.

    python benchmarks/pipeline_ablation.py                    # results/pipeline_ablation.json (about 3 minutes)
    python benchmarks/pipeline_ablation.py --only runs,short_lists

* ``interleave``: one thread, the video suite's 300 clip frames in halves of 150: decoded and invoked one frame at a
  time, against all 150 decoded first and then invoked (CPU ms per frame): what switching between decoding and the
  interpreter costs in the core's caches.
* ``runs``: ``watch`` on the clip (2 threads, per-core interpreters) with runs of 1, 4, 8 and 16 frames
  (``skinedge.classifier._RUN_LENGTH``); frames/s, paired against runs of 1.
* ``batch_runs``: ``classify_many`` on suite 4's 500 photos with runs of 1 and 8.
* ``short_lists``: ``classify_many`` on 20, 24 and 36 of suite 4's photos, with a list's runs evened out across the
  threads (``_EVEN_RUNS``, as shipped) and without (runs of 8, the last one shorter).

Each round runs every variant once, the order reversed every other round; a variant's figure is the median over
rounds of its ratio to the baseline in the same round. Take no measurement while other heavy work runs.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import video_bench  # noqa: E402


def _paired(variants: dict[str, Callable[[], int]], setup: Callable[[str], None], rounds: int) -> dict:
    """Run every variant once per round (order reversed every other round): items/s, CPU ms and context switches
    per item, and each variant's median ratio of items/s to the first variant in the same round."""
    names = list(variants)
    per: dict[str, list[tuple[float, float, float]]] = {k: [] for k in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            setup(name)
            r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            n = variants[name]()
            dt, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
            cpu = r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime
            switches = r1.ru_nvcsw + r1.ru_nivcsw - r0.ru_nvcsw - r0.ru_nivcsw
            per[name].append((n / dt, cpu * 1000 / n, switches / n))
    base = per[names[0]]
    return {name: {"per_s": round(float(np.median([x[0] for x in v])), 1),
                   "cpu_ms_per_item": round(float(np.median([x[1] for x in v])), 3),
                   "context_switches_per_item": round(float(np.median([x[2] for x in v])), 2),
                   "ratio_to_first": round(float(np.median([a[0] / b[0] for a, b in zip(v, base)])), 3),
                   "ratio_to_first_by_round": [round(a[0] / b[0], 3) for a, b in zip(v, base)]}
            for name, v in per.items()}


def interleave(model: Path, rounds: int) -> dict:
    from skinedge import Classifier

    jpegs = video_bench.clip_jpegs(video_bench.clip())
    with Classifier(model, num_threads=1) as clf:
        for j in jpegs[:10]:
            clf.classify(j)
        one_by_one, split = [], []
        for r in range(rounds):
            frames = jpegs[(r % 2) * 150:(r % 2) * 150 + 150]
            t = time.thread_time()
            for j in frames:
                clf.classify(clf.prepare(j))
            one_by_one.append((time.thread_time() - t) * 1000 / len(frames))
            t = time.thread_time()
            prepared = [clf.prepare(j) for j in frames]
            for p in prepared:
                clf.classify(p)
            split.append((time.thread_time() - t) * 1000 / len(frames))
    return {"one_by_one_cpu_ms": round(float(np.median(one_by_one)), 3),
            "decoded_first_cpu_ms": round(float(np.median(split)), 3),
            "ratio": round(float(np.median([a / b for a, b in zip(one_by_one, split)])), 3)}


def runs(model: Path, rounds: int, lengths: tuple[int, ...] = (1, 4, 8, 16)) -> dict:
    import skinedge.classifier as classifier_module
    from skinedge import Classifier
    from skinedge.video import watch

    clip = video_bench.clip()
    shipped = classifier_module._RUN_LENGTH
    with Classifier(model, num_threads=2) as clf:
        sum(1 for _ in watch(clf, clip))

        def setup(name: str) -> None:
            classifier_module._RUN_LENGTH = int(name.split()[-1])

        try:
            return _paired({f"runs of {k}": lambda: sum(1 for _ in watch(clf, clip)) for k in lengths}, setup, rounds)
        finally:
            classifier_module._RUN_LENGTH = shipped


def batch_runs(model: Path, rounds: int) -> dict:
    import skinedge.classifier as classifier_module
    from skinedge import Classifier

    paths = sorted(str(p) for p in common.batch_folder().iterdir() if not p.name.startswith("."))
    shipped = classifier_module._RUN_LENGTH
    with Classifier(model, num_threads=2) as clf:
        clf.classify_many(paths[:40])

        def setup(name: str) -> None:
            classifier_module._RUN_LENGTH = int(name.split()[-1])

        try:
            return _paired({f"runs of {k}": lambda: len(clf.classify_many(paths)) for k in (1, 8)}, setup, rounds)
        finally:
            classifier_module._RUN_LENGTH = shipped


def short_lists(model: Path, rounds: int) -> dict:
    import skinedge.classifier as classifier_module
    from skinedge import Classifier

    paths = sorted(str(p) for p in common.batch_folder().iterdir() if not p.name.startswith("."))
    shipped = classifier_module._EVEN_RUNS
    out = {}
    with Classifier(model, num_threads=2) as clf:
        clf.classify_many(paths[:40])

        def setup(name: str) -> None:
            classifier_module._EVEN_RUNS = name.startswith("even")

        try:
            for size in (20, 24, 36):
                batch = paths[100:100 + size]
                out[str(size)] = _paired({k: lambda batch=batch: len(clf.classify_many(batch))
                                          for k in ("runs of 8", "even runs (as shipped)")}, setup, 2 * rounds)
        finally:
            classifier_module._EVEN_RUNS = shipped
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--only", default="interleave,runs,batch_runs,short_lists")
    args = ap.parse_args()
    model = common.int8_model()
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    load0 = os.getloadavg()[0]
    suites = {"interleave": interleave, "runs": runs, "batch_runs": batch_runs, "short_lists": short_lists}
    res: dict = {}
    for name in args.only.split(","):
        res[name] = suites[name](model, args.rounds)
        print(name, res[name])
    res["meta"] = {"machine": common.machine(), "model": str(model), "rounds": args.rounds, "started_utc": started,
                   "load_avg_1m_at_start": load0, "load_avg_1m_at_end": os.getloadavg()[0]}
    print(common.write_result("pipeline_ablation", res))


if __name__ == "__main__":
    main()
