"""How much each bundled model's answers lean on photo-source cues: the test photos re-encoded, shrunk to a
thumbnail, or cropped of their borders, classified again through the runtime.

    python tools/experiments/source_cue_stress.py [--data ../shared/data/skin6] [--split test]

skin6's sources differ in JPEG quality, size and framing (watermarks and borders sit at the edges). A model that
reads the lesion should keep its answers when those change; one that reads the source should not. Prints a markdown
table: per model and perturbation, macro-F1 with its bootstrap 95% CI and the share of photos whose top-1 stays.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from skinedge import Classifier
from skinedge.evaluation import bootstrap_ci
from skinedge.model_io import BUNDLED_MODELS

ROOT = Path(__file__).resolve().parents[2]


def _jpeg(im: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


PERTURBATIONS = {
    "none": lambda im: im,
    "JPEG quality 30": lambda im: _jpeg(im, 30),
    "thumbnail (long side 112 px)": lambda im: im.resize(
        (max(1, round(im.width * 112 / max(im.size))), max(1, round(im.height * 112 / max(im.size)))),
        Image.Resampling.BILINEAR),
    "borders cropped (central 80%)": lambda im: im.crop(
        (im.width // 10, im.height // 10, im.width - im.width // 10, im.height - im.height // 10)),
    "mirrored": ImageOps.mirror,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "skin6"))
    ap.add_argument("--split", default="test", choices=["val", "test"])
    args = ap.parse_args()
    files = (ROOT / "models" / "run-efficientnet-lite0" / f"{args.split}_files.txt").read_text().split()
    print("| model | photos changed by | macro-F1 [95% CI] | top-1 unchanged |\n|---|---|---|---|")
    for name in BUNDLED_MODELS:
        with Classifier(name, num_threads=2) as clf:
            y = np.asarray([clf.labels.index(Path(f).parts[1]) for f in files])
            photos = [ImageOps.exif_transpose(Image.open(Path(args.data) / f)).convert("RGB") for f in files]
            base = None
            for what, change in PERTURBATIONS.items():
                pred = np.asarray([clf.classify(change(im)).index for im in photos])
                base = pred if base is None else base
                ci = bootstrap_ci(y, pred, "macro_f1")
                print(f"| {name} | {what} | {ci['value']:.3f} [{ci['low']:.3f}, {ci['high']:.3f}] | "
                      f"{(pred == base).mean():.3f} |")


if __name__ == "__main__":
    main()
