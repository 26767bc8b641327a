"""What each of the pipeline's choices buys, each against the same code without it, in paired rounds in one process.

    python benchmarks/pipeline_ablation.py                    # results/pipeline_ablation.json (about 6 minutes)
    python benchmarks/pipeline_ablation.py --only turns               # that suite rerun, the others kept

* ``interleave``: one thread, the video suite's 300 clip frames in halves of 150: decoded and invoked one frame at a
  time, against all 150 decoded first and then invoked (CPU ms per frame): what switching between decoding and the
  interpreter costs in the core's caches.
* ``runs``: ``watch`` on the clip (2 threads, per-core interpreters) with runs of 1, 4, 8 and 16 frames
  (``skinedge.classifier._RUN_LENGTH``); frames/s, paired against runs of 1.
* ``batch_runs``: ``classify_many`` on suite 4's 500 photos with runs of 1 and 8.
* ``short_lists``: ``classify_many`` on 20, 24 and 36 of suite 4's photos, with a list's runs evened out across the
  threads (``_EVEN_RUNS``, as shipped) and without (runs of 8, the last one shorter).
* ``turns``: ``watch`` on the clip and ``classify_many`` on suite 4's 500 photos, with the threads taking turns at
  preparing while preparing is the shorter step (``_TAKE_TURNS``, as shipped) and preparing at once.

Each round runs every variant once, the order reversed every other round; a variant's figure is the median over
rounds of its ratio to the baseline in the same round. Take no measurement while other heavy work runs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import video_bench  # noqa: E402


def _paired(run: Callable[[], int], knob: str, settings: dict[str, Any], rounds: int) -> dict:
    """``run()`` (which returns how many items it did) once per round under each of ``settings``, values of
    ``skinedge.classifier``'s ``knob`` (order reversed every other round; the shipped value restored after):
    items/s, CPU ms and context switches per item, and each setting's median ratio of items/s to the first one's
    in the same round."""
    import skinedge.classifier as knobs

    names = list(settings)
    shipped = getattr(knobs, knob)
    per: dict[str, list[tuple[float, float, float]]] = {k: [] for k in names}
    try:
        for r in range(rounds):
            for name in names if r % 2 == 0 else names[::-1]:
                setattr(knobs, knob, settings[name])
                r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
                n = run()
                dt, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
                cpu = r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime
                switches = r1.ru_nvcsw + r1.ru_nivcsw - r0.ru_nvcsw - r0.ru_nivcsw
                per[name].append((n / dt, cpu * 1000 / n, switches / n))
    finally:
        setattr(knobs, knob, shipped)
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
    from skinedge import Classifier
    from skinedge.video import watch

    clip = video_bench.clip()
    with Classifier(model, num_threads=2) as clf:
        sum(1 for _ in watch(clf, clip))
        return _paired(lambda: sum(1 for _ in watch(clf, clip)), "_RUN_LENGTH",
                       {f"runs of {k}": k for k in lengths}, rounds)


def batch_runs(model: Path, rounds: int) -> dict:
    from skinedge import Classifier

    paths = common.batch_paths()
    with Classifier(model, num_threads=2) as clf:
        clf.classify_many(paths[:40])
        return _paired(lambda: len(clf.classify_many(paths)), "_RUN_LENGTH", {"runs of 1": 1, "runs of 8": 8}, rounds)


def short_lists(model: Path, rounds: int) -> dict:
    from skinedge import Classifier

    paths = common.batch_paths()
    with Classifier(model, num_threads=2) as clf:
        clf.classify_many(paths[:40])
        return {str(size): _paired(lambda batch=paths[100:100 + size]: len(clf.classify_many(batch)), "_EVEN_RUNS",
                                   {"runs of 8": False, "even runs (as shipped)": True}, 2 * rounds)
                for size in (20, 24, 36)}


def turns(model: Path, rounds: int) -> dict:
    from skinedge import Classifier
    from skinedge.video import watch

    clip, paths = video_bench.clip(), common.batch_paths()
    settings = {"at once": False, "taking turns (as shipped)": True}
    with Classifier(model, num_threads=2) as clf:
        sum(1 for _ in watch(clf, clip))
        clf.classify_many(paths[:40])
        return {"watch": _paired(lambda: sum(1 for _ in watch(clf, clip)), "_TAKE_TURNS", settings, rounds),
                "batch": _paired(lambda: len(clf.classify_many(paths)), "_TAKE_TURNS", settings, rounds)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--only", default=",".join(SUITES), help="comma-separated suites (the others' results are kept)")
    args = ap.parse_args()
    model = common.int8_model()
    # a run of some suites updates theirs in the results file and keeps the others', each with its own meta
    saved = common.RESULTS / "pipeline_ablation.json"
    res: dict = json.loads(saved.read_text()) if saved.exists() else {}
    for name in args.only.split(","):
        started, load0 = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), os.getloadavg()[0]
        res[name] = SUITES[name](model, args.rounds)
        print(name, res[name])
        res[name]["meta"] = {"machine": common.machine(), "model": str(model), "rounds": args.rounds,
                             "started_utc": started, "load_avg_1m_at_start": load0,
                             "load_avg_1m_at_end": os.getloadavg()[0]}
    print(common.write_result("pipeline_ablation", res))


SUITES = {"interleave": interleave, "runs": runs, "batch_runs": batch_runs, "short_lists": short_lists,
          "turns": turns}


if __name__ == "__main__":
    main()
