"""What knowing when not to answer costs: classify latency with the gates and the quality check vs without.

    git show 41f31c8:models/skinedge_efficientnet_lite0_int8.tflite > /tmp/lite0_ungated.tflite
    python benchmarks/gates_bench.py --before /tmp/lite0_ungated.tflite --threads 2

Side by side in one process, interleaved in rounds (so both see the same machine load), on the same skin6 test
photos decoded once (``Classifier.prepare``): ``classify`` of

* ``before``: the model without gates (the previous default, six outputs), the photo-quality check off;
* ``gated``: the shipped model (six class scores and two gate scores from the same invoke) with the check on;
* ``gated_no_quality``: the shipped model with the check off: what the quality measures alone cost.

The ratio of medians ``gated / before`` is the figure of issue 21's goal (<= 1.05x); ``gates_only`` leaves the
quality measures out. Decoding is left out on purpose: it is the same for both and would only dilute the ratio.
Results: ``benchmarks/results/gates.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from skinedge import Classifier
from skinedge.files import image_files
from skinedge.options import ClassifierOptions

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", required=True, help="The model without gates.")
    ap.add_argument("--model", default=None, help="The gated model (default: the bundled default).")
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--photos", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "gates.json")
    a = ap.parse_args()
    before = Classifier(a.before, num_threads=a.threads, options=ClassifierOptions(check_quality=False))
    gated = Classifier(a.model, num_threads=a.threads)
    paths = image_files(a.shared / "data" / "skin6" / "test")[:: max(1, 449 // a.photos)][: a.photos]
    prepared = {"before": [before.prepare(p) for p in paths], "gated": [gated.prepare(p) for p in paths]}
    runs = {
        "before": lambda i: before.classify(prepared["before"][i]),
        "gated": lambda i: gated.classify(prepared["gated"][i]),
        "gated_no_quality": lambda i: gated.classify(prepared["gated"][i], check_quality=False),
    }
    for fn in runs.values():  # warm-up
        for i in range(5):
            fn(i)
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(a.rounds):
        for name, fn in runs.items():
            for i in range(len(paths)):
                t = time.perf_counter()
                fn(i)
                times[name].append((time.perf_counter() - t) * 1000)
    med = {k: float(np.median(v)) for k, v in times.items()}
    result = {
        "what": "classify latency (decoded photo -> result), median ms, interleaved rounds in one process",
        "machine": f"{platform.processor() or platform.machine()}, {a.threads} threads",
        "photos": len(paths), "rounds": a.rounds,
        "before": Path(a.before).name, "gated": str(gated.model_path.name), "gates": list(gated.gate_labels),
        "median_ms": {k: round(v, 3) for k, v in med.items()},
        "p90_ms": {k: round(float(np.percentile(v, 90)), 3) for k, v in times.items()},
        "ratio_gated_over_before": round(med["gated"] / med["before"], 4),
        "ratio_quality_check": round(med["gated"] / med["gated_no_quality"], 4),
        "ratio_gates_only": round(med["gated_no_quality"] / med["before"], 4),
    }
    print(json.dumps(result, indent=1))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
