"""Training-recipe trials of issue 13 side by side: validation chooses, test is read once.

    python tools/experiments/training_trials.py shipped=models/run-efficientnet-lite0 srobust=runs/srobust ... \
        [--ensemble "seeds=shipped+base_s1"] [--stress] [--data ../shared/data/skin6]

Each trial is a run directory written by ``skinedge-tools train`` (or its record without checkpoints). The rows
are the report's (``skinedge_tools.report_trials``: kept stage-3 float32 logits, validation and test macro-F1 with
bootstrap 95% CIs, the test per-source gap, what SWA scored). ``--ensemble`` adds the mean of members' softmax
probabilities (what a distillation teacher built from them would know). ``--stress`` re-runs each trial's Keras
network (it needs the checkpoint) on the test photos changed as in ``source_cue_stress.py`` (JPEG quality 30, a
112 px thumbnail, borders cropped, mirrored): the share of answers each change keeps and the macro-F1 range.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from skinedge_tools import report_trials as rt

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).parent))


def _stress(run: Path, t: rt.Trial, data: Path) -> str:
    from PIL import Image, ImageOps
    from skinedge_tools.stats import bootstrap_ci
    from skinedge_tools.train import load_trained
    from source_cue_stress import PERTURBATIONS

    from skinedge.preprocess import resize

    model, cfg = load_trained(run)
    spec = cfg.spec()
    photos = [ImageOps.exif_transpose(Image.open(data / f)).convert("RGB") for f in t.test_files]
    base, kept, f1 = None, [], []
    for change in PERTURBATIONS.values():
        x = np.stack([resize(change(im), spec) for im in photos]).astype(np.float32)
        pred = model.predict(x, batch_size=32, verbose=0).argmax(1)
        if base is None:
            base = pred
            continue
        kept.append(float((pred == base).mean()))
        f1.append(bootstrap_ci(t.y_test, pred, "macro_f1")["value"])
    return f"{np.mean(kept):.3f} ({', '.join(f'{k:.2f}' for k in kept)}); F1 {min(f1):.3f}-{max(f1):.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("trials", nargs="+", help="name=run_dir")
    ap.add_argument("--ensemble", action="append", default=[], help="name=trialA+trialB[+...]")
    ap.add_argument("--stress", action="store_true")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "skin6"))
    args = ap.parse_args()
    data, manifest = Path(args.data), Path(args.data) / "manifest.csv"
    runs = {t.split("=", 1)[0]: Path(t.split("=", 1)[1]) for t in args.trials}
    trials = {name: rt.load(run, name) for name, run in runs.items()}
    first = next(iter(trials.values()))
    for t in trials.values():  # every run must have scored the same photos in the same order
        assert t.val_files == first.val_files and t.test_files == first.test_files, t.name
    head = "| trial | change | val macro-F1 [95% CI] | test macro-F1 [95% CI] | test per-source gap | SWA (val) |"
    sep = "|---|---|---|---|---|---|"
    if args.stress:
        head += " stress: answers kept (JPEG, thumb, crop, mirror); F1 range |"
        sep += "---|"
    print(head + "\n" + sep)
    for name, t in trials.items():
        cells = rt.row(t, manifest)
        if args.stress:
            cells.append(_stress(runs[name], t, data))
        print("| " + " | ".join(cells) + " |", flush=True)
    for spec in args.ensemble:
        name, members = spec.split("=", 1)
        pv = np.mean([trials[m].probs_val for m in members.split("+")], 0).argmax(1)
        pt = np.mean([trials[m].probs_test for m in members.split("+")], 0).argmax(1)
        cells = [name, "mean of " + ", ".join(members.split("+")), rt.ci(first.y_val, pv), rt.ci(first.y_test, pt),
                 rt.source_gap(manifest, first.test_files, first.y_test, pt), "-"]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
