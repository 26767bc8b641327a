"""Two of issue 13's techniques that need no training, measured on validation (which chooses) and test (once):

1. test-time flip averaging with the shipped int8 file: the mean of the calibrated scores of the photo and of its
   mirror image (two invokes), against one invoke;
2. an ensemble of the fine-tuned networks (mean of softmax probabilities of the saved Keras logits): what a
   distillation teacher built from them would know, an upper bound on what distilling it could add.

    python tools/experiments/cheap_trials.py [--data ../shared/data/skin6]

Prints one markdown table; macro-F1 and its percentile-bootstrap 95% CI from ``skinedge.evaluation``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from skinedge import Classifier
from skinedge.evaluation import bootstrap_ci
from skinedge.postprocess import softmax

ROOT = Path(__file__).resolve().parents[2]
RUNS = {"Lite0": ROOT / "models" / "run-efficientnet-lite0", "MobileNetV2": ROOT / "models" / "run"}


def _labels(run: Path, split: str, classes: list[str]) -> tuple[list[str], np.ndarray]:
    files = (run / f"{split}_files.txt").read_text().split()
    return files, np.asarray([classes.index(Path(f).parts[1]) for f in files])


def _cell(y: np.ndarray, pred: np.ndarray) -> str:
    ci = bootstrap_ci(y, pred, "macro_f1")
    return f"{ci['value']:.3f} [{ci['low']:.3f}, {ci['high']:.3f}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "skin6"))
    args = ap.parse_args()
    rows = []
    with Classifier(num_threads=2) as clf:
        classes = list(clf.labels)
        for split in ("val", "test"):
            files, y = _labels(RUNS["Lite0"], split, classes)
            one, flip = [], []
            for f in files:
                pixels, _, _ = clf.preprocess(Path(args.data) / f)
                s = np.asarray(clf.invoke(pixels))
                one.append(s)
                flip.append((s + np.asarray(clf.invoke(np.ascontiguousarray(pixels[:, ::-1])))) / 2)
            one, flip = np.asarray(one), np.asarray(flip)
            rows.append((split, "Lite0 int8, one invoke (shipped)", _cell(y, one.argmax(1))))
            rows.append((split, "Lite0 int8, flip average (2 invokes)", _cell(y, flip.argmax(1))))
            changed = int((one.argmax(1) != flip.argmax(1)).sum())
            rows.append((split, "  photos whose top-1 the flip changes", str(changed)))
    for split in ("val", "test"):
        _, y = _labels(RUNS["Lite0"], split, classes)
        probs = {f"{name} {stage}": softmax(np.load(run / stage / f"logits_{split}.npy"))
                 for name, run in RUNS.items() for stage in ("stage2", "stage3")}
        for combo in (("Lite0 stage3", "MobileNetV2 stage3"), ("Lite0 stage2", "Lite0 stage3"),
                      ("Lite0 stage2", "Lite0 stage3", "MobileNetV2 stage2", "MobileNetV2 stage3")):
            mean = np.mean([probs[c] for c in combo], axis=0)
            rows.append((split, "float ensemble: " + " + ".join(combo), _cell(y, mean.argmax(1))))
    print("| split | trial | macro-F1 [95% CI] |\n|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} |")


if __name__ == "__main__":
    main()
