"""Issue 21: where does the model's accuracy fall on poor photos, and which quality thresholds catch that point?

Degrades every validation photo (as decoded, before the model's resize) at increasing strength: Gaussian blur
(sigma as a share of the shorter side), darkening (pixels scaled down), overexposure (pixels scaled up, clipped:
blown out) and haze (blended towards white: glare, washed out). At each level it records the model's top-1
accuracy through the runtime and the quality measures of ``skinedge.quality`` on the model's input.

Thresholds are then set per measure at the point where accuracy falls: a level is *judgeable* while its accuracy is
within ``--keep-drop`` points of the clean photos', and *unjudgeable* once it has dropped by more than
``--reject-drop``; each threshold sits at the ``--keep-quantile`` of the measure over the judgeable copies of its
degradation (so nearly all of them pass), and the report shows how many unjudgeable copies it rejects.

    python tools/experiments/quality_thresholds.py --data ../shared/data/skin6 --split val \\
        --model models/skinedge_efficientnet_lite0_int8.tflite --out tools/experiments/results/quality_val.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from skinedge import Classifier
from skinedge.files import image_files
from skinedge.preprocess import decode, prepare
from skinedge.quality import QualityThresholds, assess, problems

LEVELS = {
    "blur": [0.0, 0.005, 0.01, 0.015, 0.02, 0.03, 0.04, 0.06],  # sigma / shorter side
    "dark": [1.0, 0.6, 0.4, 0.3, 0.2, 0.15, 0.1, 0.05],  # pixel scale
    "overexposed": [1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 6.0],  # pixel gain, clipped: blown out
    "haze": [0.0, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9],  # blend towards white: glare, washed out
}
#: Which measure answers which degradation (and the direction that is bad).
MEASURES = {"blur": ("sharpness", "min"), "dark": ("brightness", "min"),
            "overexposed": ("bright_fraction", "max"), "haze": ("contrast", "min")}  # haze: bright photos only


def degrade(img: Image.Image, kind: str, level: float) -> Image.Image:
    """``img`` (RGB) degraded by ``kind`` at ``level`` (LEVELS)."""
    if kind == "blur":
        return img if level == 0 else img.filter(ImageFilter.GaussianBlur(level * min(img.size)))
    a = np.asarray(img, dtype=np.float32)
    if kind in ("dark", "overexposed"):
        a = a * level
    elif kind == "haze":
        a = (1.0 - level) * a + level * 255.0
    else:
        raise ValueError(kind)
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8))


def run(data: Path, split: str, model: str | None, limit: int | None) -> dict:
    clf = Classifier(model, num_threads=2)
    classes = {c: i for i, c in enumerate(clf.labels)}
    photos = [(p, classes[d.name]) for d in sorted((data / split).iterdir()) if d.name in classes
              for p in image_files(d)]
    if limit:
        photos = photos[::max(1, len(photos) // limit)]
    rows = {k: [[] for _ in v] for k, v in LEVELS.items()}
    for path, y in photos:
        img = decode(path)
        for kind, levels in LEVELS.items():
            for i, level in enumerate(levels):
                d = degrade(img, kind, level)
                x = prepare(d, clf.spec)
                r = clf.classify(x)
                q = assess(x, d.size)
                rows[kind][i].append({"correct": r.index == y, "score": r.score, **q.to_dict()})
    return {"model": str(clf.model_path), "split": split, "n": len(photos), "abstain_threshold": clf.abstain_threshold,
            "rows": rows}


def choose(result: dict, keep_drop: float, reject_drop: float, keep_quantile: float) -> dict:
    out = {}
    for kind, levels in LEVELS.items():
        measure, side = MEASURES[kind]
        acc = [float(np.mean([r["correct"] for r in lv])) for lv in result["rows"][kind]]
        keep = [i for i, a in enumerate(acc) if a >= acc[0] - keep_drop]
        values = np.concatenate([[r[measure] for r in result["rows"][kind][i]] for i in keep])
        t = float(np.quantile(values, keep_quantile if side == "min" else 1.0 - keep_quantile))
        table = []
        for i, level in enumerate(levels):
            v = np.array([r[measure] for r in result["rows"][kind][i]])
            rejected = float((v < t).mean() if side == "min" else (v > t).mean())
            table.append({"level": level, "accuracy": round(acc[i], 4), "rejected": round(rejected, 4),
                          "judgeable": i in keep, "unjudgeable": acc[i] < acc[0] - reject_drop})
        out[kind] = {"measure": measure, "threshold": round(t, 4), "levels": table}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--split", default="val")
    ap.add_argument("--model", default=None)
    ap.add_argument("--limit", type=int, default=None, help="Every n-th photo, about this many.")
    ap.add_argument("--keep-drop", type=float, default=0.05)
    ap.add_argument("--reject-drop", type=float, default=0.15)
    ap.add_argument("--keep-quantile", type=float, default=0.02)
    ap.add_argument("--out", type=Path, default=None, help="Everything measured, as JSON.")
    ap.add_argument("--thresholds-out", type=Path, default=None, help="The chosen thresholds (rebuild --quality).")
    a = ap.parse_args()
    result = run(a.data, a.split, a.model, a.limit)
    chosen = choose(result, a.keep_drop, a.reject_drop, a.keep_quantile)
    for kind, c in chosen.items():
        print(f"{kind}: {c['measure']} threshold {c['threshold']}")
        for row in c["levels"]:
            print(f"  level {row['level']:<6} accuracy {row['accuracy']:.3f}  rejected {row['rejected']:.1%}"
                  f"{'  (judgeable)' if row['judgeable'] else ''}{'  (unjudgeable)' if row['unjudgeable'] else ''}")
    field = {"sharpness": "min_sharpness", "brightness": "min_brightness", "bright_fraction": "max_bright_fraction",
             "contrast": "min_washed_contrast"}
    t = QualityThresholds(**{field[c["measure"]]: c["threshold"] for c in chosen.values()})
    combined = {kind: [round(float(np.mean([bool(problems(_q(r), t)) for r in lv])), 4)
                       for lv in result["rows"][kind]] for kind in LEVELS}
    print(f"all thresholds together {t}: share flagged per level")
    for kind, shares in combined.items():
        print(f"  {kind:12s} " + "  ".join(f"{lv}: {v:.1%}" for lv, v in zip(LEVELS[kind], shares)))
    if a.thresholds_out:
        a.thresholds_out.write_text(json.dumps(t.to_dict(), indent=1) + "\n")
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        summary = {"chosen": chosen, "thresholds": t.to_dict(), "flagged_all_thresholds": combined}
        a.out.write_text(json.dumps({**summary, **result}) + "\n")


def _q(r: dict):
    from skinedge.quality import PhotoQuality

    return PhotoQuality(**{k: r[k] for k in PhotoQuality.__dataclass_fields__})


if __name__ == "__main__":
    main()
