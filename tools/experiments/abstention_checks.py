"""Issue 21: the shipped gates through the runtime, on every kind of photo the goals name.

Runs ``skinedge.Classifier`` (the model as users get it: int8, gates, photo-quality check) on a split of:

* skin6 (must be answered): coverage, accuracy of the answers, six-class macro-F1 over all photos (argmax), the
  reasons for the photos not answered, and coverage per photo source (``manifest.csv``): a gate that learned
  "not DermNet = known condition" or the reverse shows up as one source losing its answers;
* skin6 re-encoded the way ``not-skin`` was made (400 px long side, Lanczos, JPEG q90): the gate must not key on
  resolution or JPEG quality;
* ``not-skin`` and ``skin-other`` (must not be answered): share answered, by reason;
* degraded copies of the skin6 photos (blur, dark, overexposed, haze: ``quality_thresholds.LEVELS``): share
  answered at each level, and the accuracy of what is answered.

    python tools/experiments/abstention_checks.py --shared ../shared --split val \\
        --out tools/experiments/results/2026-12-06-abstention/checks_val.json
"""

from __future__ import annotations

import argparse
import csv
import io
import json
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from skinedge import Classifier
from skinedge.evaluation import macro_f1_batch
from skinedge.files import image_files
from skinedge.preprocess import decode

HEAVY = {"blur": [0.01, 0.015, 0.02, 0.03, 0.04], "dark": [0.3, 0.2, 0.15, 0.1, 0.05],
         "overexposed": [2.0, 2.5, 3.0, 4.0, 6.0], "haze": [0.5, 0.6, 0.7, 0.8, 0.9]}


def _reencode(img: Image.Image) -> Image.Image:
    """As ``not-skin`` was made: 400 px long side (Lanczos), JPEG quality 90."""
    img = img.copy()
    img.thumbnail((400, 400), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def _summary(results: list, truth: list[int] | None = None) -> dict:
    answered = [r.reason is None for r in results]
    out = {"n": len(results), "answered": int(sum(answered)), "answered_rate": float(np.mean(answered)),
           "reasons": dict(Counter(r.reason for r in results if r.reason))}
    if truth is not None:
        pred, y = np.array([r.index for r in results]), np.array(truth)
        ok = np.array(answered)
        out["accuracy_all"] = float((pred == y).mean())
        out["macro_f1_all"] = float(macro_f1_batch(y, pred))
        out["accuracy_answered"] = float((pred[ok] == y[ok]).mean()) if ok.any() else None
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shared", type=Path, default=Path("../shared"))
    ap.add_argument("--split", default="val", choices=["val", "test"])
    ap.add_argument("--model", default=None)
    ap.add_argument("--degrade-every", type=int, default=3, help="Degrade every n-th photo (time).")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from quality_thresholds import degrade

    clf = Classifier(a.model, num_threads=2)
    skin6 = a.shared / "data" / "skin6"
    with open(skin6 / "manifest.csv", newline="") as f:
        source_of = {row["path"]: row["source_repo"] for row in csv.DictReader(f)}
    photos = [(p, i) for i, lab in enumerate(clf.labels) for p in image_files(skin6 / a.split / lab)]
    report: dict = {"model": str(clf.model_path), "split": a.split, "gates": list(clf.gate_labels),
                    "options": {k: (v.to_dict() if hasattr(v, "to_dict") else v)
                                for k, v in clf.resolve_options().__dict__.items()}}
    results = [clf.classify(p) for p, _ in photos]
    truth = [y for _, y in photos]
    report["skin6"] = _summary(results, truth)
    by_source: dict[str, list] = {}
    for (p, _), r in zip(photos, results):
        key = source_of.get(str(p.relative_to(skin6)), "?")
        by_source.setdefault(key, []).append(r)
    report["skin6_by_source"] = {k: _summary(v) for k, v in sorted(by_source.items())}
    report["skin6_reencoded_400px_q90"] = _summary([clf.classify(_reencode(decode(p))) for p, _ in photos], truth)
    for name in ("not-skin", "skin-other"):
        report[name] = _summary([clf.classify(p) for p in image_files(a.shared / "data" / name / a.split)])
    degraded: dict = {}
    subset = photos[:: a.degrade_every]
    for kind, levels in HEAVY.items():
        degraded[kind] = {}
        for level in levels:
            rs = [clf.classify(np.asarray(degrade(decode(p), kind, level))) for p, _ in subset]
            degraded[kind][str(level)] = _summary(rs, [y for _, y in subset])
    report["degraded"] = degraded
    print(json.dumps({k: v for k, v in report.items() if k != "options"}, indent=1))
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
