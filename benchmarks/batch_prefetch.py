"""``Classifier.classify_many`` against variants of its decode pool, side by side (suite 4's photos and bound).

    python benchmarks/batch_prefetch.py --threads 2 --rounds 6    # results/batch_prefetch.json

Each variant is ``classify_many`` itself: by default one single-thread interpreter per thread, each decoding
its own photos (``interpreters=``); or the classifier's own multi-thread interpreter fed by decode workers
(``interpreters=1``, ``workers=``), at a prefetch depth (``prefetch=``). Rounds alternate the order of the
contenders, so drift and position favour none. Two bounds: suite 4's, the slower of decode+resize alone and
invoke alone, in the same round; and the work bound, every stage's CPU time per image (each measured alone)
spread over the cores, measured before the first round and after every round (each round is also set against
the two measurements that bracket it). Take no measurement while other heavy work runs on the machine (check
``uptime``).
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402


def variant(clf, workers: int, depth: int, interpreters: int = 1):
    """The library's own loop, ``classify_many``, with ``interpreters`` interpreters, ``workers`` decode threads
    (one interpreter only) and ``depth`` images ahead."""
    return lambda images: clf.classify_many(images, workers=workers, prefetch=depth, interpreters=interpreters)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=common.usable_cpus())
    ap.add_argument("--rounds", type=int, default=6)
    args = ap.parse_args()
    from skinedge import Classifier

    folder = common.batch_folder()
    paths = common.batch_paths(folder)
    n = len(paths)
    clf = Classifier(common.int8_model(), num_threads=args.threads)
    t = args.threads
    contenders = {
        f"classify_many (default: {t} interpreters)": clf.classify_many,
        f"{t} interpreters, {2 * t} ahead": variant(clf, t, 2 * t, interpreters=t),
        f"{t} interpreters, {8 * t} ahead": variant(clf, t, 8 * t, interpreters=t),
        f"1 interpreter ({t} threads), 2 decode workers": variant(clf, 2, 4),
        f"1 interpreter ({t} threads), 1 decode worker": variant(clf, 1, 4),
    }
    load0 = os.getloadavg()[0]
    for p in paths[:10]:
        clf.prepare(p)
    # The work bound: each stage's CPU time per image, measured alone (decode+resize on one thread; the invoke
    # with its interpreter threads), spread over the usable cores. The invoke is measured twice: on the
    # classifier's own interpreter (args.threads threads) and on one single-thread interpreter, the way
    # classify_many's interpreters run it. Each gives a work bound; the fractions are quoted against both, and the
    # headline against the higher (stricter) one. The stages are measured before the first round and after each
    # round, so that every round is bracketed by two measurements: the machine's speed drifts over seconds (10-50%
    # on a shared VM), and a round set against the mean of its own two is not set against another minute's.
    prepared = [clf.prepare(p) for p in paths]
    single = Classifier(common.int8_model(), num_threads=1)
    for p in prepared[:10]:
        single.classify(p)

    def stages() -> dict[str, float]:
        return {"decode_resize": common.cpu_ms_per_item(clf.prepare, paths),
                "invoke": common.cpu_ms_per_item(clf.classify, prepared, whole_process=True),
                "invoke_1_thread": common.cpu_ms_per_item(single.classify, prepared, whole_process=True)}

    def bounds(stage_cpu_ms: dict[str, float]) -> dict[str, float]:
        return {f"invoke on {args.threads} threads": common.work_bound_per_s(
                    {k: stage_cpu_ms[k] for k in ("decode_resize", "invoke")}),
                "invoke on 1 thread": common.work_bound_per_s(
                    {k: stage_cpu_ms[k] for k in ("decode_resize", "invoke_1_thread")})}

    stage_samples = [stages()]
    default = next(iter(contenders))
    by_round: list[float] = []
    secs: dict[str, list[float]] = collections.defaultdict(list)
    for r in range(args.rounds):
        decode_s, invoke_s = common.decode_then_invoke_seconds(clf, paths)
        secs["decode"].append(decode_s)
        secs["invoke"].append(invoke_s)
        order = list(contenders.items())
        order = order[r % len(order):] + order[: r % len(order)]
        for name, fn in order:
            t0 = time.perf_counter()
            outcomes = fn(paths)
            secs[name].append(time.perf_counter() - t0)
            assert len(outcomes) == n
        stage_samples.append(stages())
        bracket = {k: (stage_samples[-2][k] + stage_samples[-1][k]) / 2 for k in stage_samples[-1]}
        by_round.append(n / secs[default][-1] / max(bounds(bracket).values()))
    single.close()
    stage_cpu_ms = {k: float(np.median([s[k] for s in stage_samples])) for k in stage_samples[0]}
    work_bounds = bounds(stage_cpu_ms)
    work_bound = max(work_bounds.values())
    clf.close()
    med = {k: float(np.median(v)) for k, v in secs.items()}
    bound = max(med["decode"], med["invoke"])
    res = {
        "folder": str(folder), "images": n, "threads": args.threads, "rounds": args.rounds,
        "images_per_s": {k: round(n / v, 2) for k, v in med.items()},
        "bound_images_per_s": round(n / bound, 2), "bound_is": "decode" if med["decode"] >= med["invoke"] else "invoke",
        "fraction_of_bound": {k: round(bound / med[k], 3) for k in contenders},
        "stage_cpu_ms": {k: round(v, 3) for k, v in stage_cpu_ms.items()},
        "work_bounds_images_per_s": {k: round(v, 2) for k, v in work_bounds.items()},
        "work_bound_images_per_s": round(work_bound, 2),
        "fraction_of_work_bound": {k: round(n / med[k] / work_bound, 3) for k in contenders},
        "fraction_of_each_work_bound": {b: {k: round(n / med[k] / v, 3) for k in contenders}
                                        for b, v in work_bounds.items()},
        # the default against the higher work bound of the stages measured right before and after its round
        "default_fraction_of_work_bound_by_round": [round(x, 3) for x in by_round],
        "default_fraction_of_work_bound_median_of_rounds": round(float(np.median(by_round)), 3),
        "stage_cpu_ms_samples": [{k: round(v, 3) for k, v in s.items()} for s in stage_samples],
        "raw_seconds": {k: [round(x, 3) for x in v] for k, v in secs.items()},
        "meta": {"machine": common.machine(), "load_avg_1m_at_start": load0, "load_avg_1m_at_end": os.getloadavg()[0],
                 "autogroup": Path("/proc/self/autogroup").read_text().strip()
                 if Path("/proc/self/autogroup").exists() else None,
                 "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
    }
    print(common.write_result("batch_prefetch", res))
    ips = res["images_per_s"]
    print(f"threads {args.threads}: decode {ips['decode']}/s, invoke {ips['invoke']}/s, "
          f"bound {res['bound_images_per_s']}/s ({res['bound_is']})")
    print(f"work bounds {res['work_bounds_images_per_s']} (CPU ms per image: {res['stage_cpu_ms']})")
    print(f"default, each round against the stages that bracket it: {res['default_fraction_of_work_bound_by_round']}"
          f" (median {res['default_fraction_of_work_bound_median_of_rounds']})")
    for k in contenders:
        each = ", ".join(f"{v[k]:.3f} ({b})" for b, v in res["fraction_of_each_work_bound"].items())
        print(f"  {k:<46} {res['images_per_s'][k]:7.1f}/s  {res['fraction_of_bound'][k]:.3f} of the bound; "
              f"of the work bound: {each}")


if __name__ == "__main__":
    main()
