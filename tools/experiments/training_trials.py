"""Training-recipe trials of issue 13 side by side: validation chooses, test is read once.

    python tools/experiments/training_trials.py shipped=models/run-efficientnet-lite0 srobust=runs/srobust ... \
        [--ensemble "seeds=base_s0+base_s1"] [--stress] [--data ../shared/data/skin6]

For each trial (a run directory written by ``skinedge-tools train``) it scores the kept stage-3 checkpoint's
float32 logits (the ones the run saved): validation and test macro-F1 with percentile-bootstrap 95% CIs, test
accuracy per photo source and the gap between the best and the worst source (sources with >= 10 test photos,
as docs/report.md counts it), and, where the run averaged weights, what the average scored against the kept
epoch. ``--ensemble`` adds the mean of members' softmax probabilities (a distillation teacher's knowledge).
``--stress`` re-runs each trial's Keras network on the test photos changed as in ``source_cue_stress.py``
(JPEG quality 30, a 112 px thumbnail, borders cropped, mirrored) and reports the share of answers kept.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from skinedge.evaluation import bootstrap_ci

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).parent))


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _labels(run: Path, split: str, classes: list[str]) -> tuple[list[str], np.ndarray]:
    files = (run / f"{split}_files.txt").read_text().split()
    return files, np.asarray([classes.index(Path(f).parts[1]) for f in files])


def _ci(y: np.ndarray, pred: np.ndarray) -> str:
    ci = bootstrap_ci(y, pred, "macro_f1")
    return f"{ci['value']:.3f} [{ci['low']:.3f}, {ci['high']:.3f}]"


def _gap(manifest: Path, files: list[str], y: np.ndarray, pred: np.ndarray) -> str:
    from skinedge_tools.report import _per_source  # the report's own per-source split

    acc = [a for _, n, a, _ in _per_source(manifest, files, y, pred) if n >= 10]
    return f"{max(acc) - min(acc):.3f}" if acc else "-"


def _swa(run: Path) -> str:
    st = json.loads((run / "stage3" / "stage.json").read_text())
    if "swa_epochs" not in st:
        return "-"
    used = "used" if st["swa_used"] else "not used"
    return f"{st['swa_val_macro_f1']:.3f} vs {st['kept_val_macro_f1']:.3f} ({st['swa_epochs']} ep., {used})"


def _stress(run: Path, files: list[str], y: np.ndarray, data: Path) -> str:
    from PIL import Image, ImageOps
    from skinedge_tools.train import load_trained
    from source_cue_stress import PERTURBATIONS

    from skinedge.preprocess import resize

    model, cfg = load_trained(run)
    spec = cfg.spec()
    photos = [ImageOps.exif_transpose(Image.open(data / f)).convert("RGB") for f in files]
    base, kept, f1 = None, [], []
    for change in PERTURBATIONS.values():
        x = np.stack([resize(change(im), spec) for im in photos]).astype(np.float32)
        pred = model.predict(x, batch_size=32, verbose=0).argmax(1)
        if base is None:
            base = pred
            continue
        kept.append(float((pred == base).mean()))
        f1.append(bootstrap_ci(y, pred, "macro_f1")["value"])
    return f"{np.mean(kept):.3f} ({', '.join(f'{k:.2f}' for k in kept)}); F1 {min(f1):.3f}-{max(f1):.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("trials", nargs="+", help="name=run_dir")
    ap.add_argument("--ensemble", action="append", default=[], help="name=trialA+trialB[+...]")
    ap.add_argument("--stress", action="store_true")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "skin6"))
    args = ap.parse_args()
    data = Path(args.data)
    runs = {t.split("=", 1)[0]: Path(t.split("=", 1)[1]) for t in args.trials}
    first = next(iter(runs.values()))
    classes = json.loads((first / "config.json").read_text())["classes"]
    (fv, yv), (ft, yt) = _labels(first, "val", classes), _labels(first, "test", classes)
    for run in runs.values():  # every run must have scored the same photos in the same order
        assert _labels(run, "val", classes)[0] == fv and _labels(run, "test", classes)[0] == ft, run
    probs = {name: {s: _softmax(np.load(run / "stage3" / f"logits_{s}.npy")) for s in ("val", "test")}
             for name, run in runs.items()}
    for spec in args.ensemble:
        name, members = spec.split("=", 1)
        probs[name] = {s: np.mean([probs[m][s] for m in members.split("+")], 0) for s in ("val", "test")}
    head = "| trial | val macro-F1 [95% CI] | test macro-F1 [95% CI] | test per-source gap | weight average (val) |"
    sep = "|---|---|---|---|---|"
    if args.stress:
        head += " stress: answers kept (JPEG, thumb, crop, mirror); F1 range |"
        sep += "---|"
    print(head + "\n" + sep)
    manifest = data / "manifest.csv"
    for name, p in probs.items():
        run = runs.get(name)
        cells = [name, _ci(yv, p["val"].argmax(1)), _ci(yt, p["test"].argmax(1)),
                 _gap(manifest, ft, yt, p["test"].argmax(1)), _swa(run) if run else "-"]
        if args.stress:
            cells.append(_stress(run, ft, yt, data) if run else "-")
        print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
