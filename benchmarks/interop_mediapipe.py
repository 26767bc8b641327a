"""Does MediaPipe Tasks load our model file and score what skinedge scores? (standard metadata check)

The model carries standard TFLITE_METADATA (labels, image input, float32 probability output), so
MediaPipe's ImageClassifier should load it unchanged. To compare scores, not resizers, both sides get
the same 224x224 pixels made by ``skinedge.preprocess`` (MediaPipe's own resize is then the identity).

    python benchmarks/interop_mediapipe.py --create-venv   # once: a venv with mediapipe (from PyPI)
    python benchmarks/interop_mediapipe.py [--model models/skinedge_efficientnet_lite0_int8.tflite] \\
        [--data ../shared/data/skin6] [--mp-python VENV/bin/python]

MediaPipe needs its own virtual environment (its pinned numpy and protobuf do not mix with TensorFlow's):
``SKINEDGE_BENCH_VENV_MP``, default as in ``benchmarks/common.py``; ``--create-venv`` makes it there with
``python -m venv`` and ``pip install mediapipe``. Runs the MediaPipe half in that venv (``--worker``),
prints one JSON summary and writes it to ``benchmarks/results/interop_mediapipe_<model name>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import common  # noqa: E402  (imports neither skinedge nor any backend: safe in the MediaPipe venv)


def _venv_dir() -> Path:
    """The MediaPipe venv: the benchmarks' setting (``SKINEDGE_BENCH_VENV_MP`` or common.py's default)."""
    return common.venv_dir("mp")


def _shown(path: Path) -> str:
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


def create_venv(venv: Path) -> int:
    """``python -m venv VENV && VENV/bin/pip install mediapipe``; the exit status of the first step that fails."""
    print(f"creating {venv} (python -m venv; pip install mediapipe)", file=sys.stderr)
    for cmd in ([sys.executable, "-m", "venv", str(venv)],
                [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "mediapipe"]):
        rc = subprocess.call(cmd)
        if rc != 0:
            print(f"failed ({rc}): {' '.join(cmd)}", file=sys.stderr)
            return rc
    return 0


def mediapipe_scores(model: str, pixels_file: str) -> dict:
    """Worker side (MediaPipe venv): every category's score for every image."""
    import mediapipe as mp
    from mediapipe.tasks import python as mp_tasks
    from mediapipe.tasks.python import vision

    options = vision.ImageClassifierOptions(base_options=mp_tasks.BaseOptions(model_asset_path=model), max_results=-1)
    pixels = np.load(pixels_file)["pixels"]
    with vision.ImageClassifier.create_from_options(options) as clf:
        rows, names = [], None
        for img in pixels:
            result = clf.classify(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(img)))
            cats = sorted(result.classifications[0].categories, key=lambda c: c.index)
            names = [c.category_name for c in cats]
            rows.append([c.score for c in cats])
    return {"mediapipe": mp.__version__, "labels": names, "scores": rows}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(HERE.parent / "models" / common.DEFAULT_INT8))
    shared = os.environ.get("SKINEDGE_SHARED", str(HERE.parent.parent / "shared"))
    ap.add_argument("--data", default=f"{shared}/data/skin6")
    ap.add_argument("--mp-python", default=None,
                    help="Python of a venv with mediapipe (default: SKINEDGE_BENCH_VENV_MP/bin/python).")
    ap.add_argument("--create-venv", action="store_true",
                    help="Create the MediaPipe venv (python -m venv, pip install mediapipe) and exit.")
    ap.add_argument("--worker", nargs=2, metavar=("MODEL", "PIXELS_NPZ"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(mediapipe_scores(*args.worker)))
        return 0
    if args.create_venv:
        return create_venv(_venv_dir())
    mp_python = Path(args.mp_python) if args.mp_python else _venv_dir() / "bin" / "python"
    if not mp_python.is_file():
        venv = mp_python.parent.parent
        print(f"error: no MediaPipe environment: {mp_python} does not exist.\n"
              f"Create it with:  python {_shown(Path(__file__))} --create-venv\n"
              f"           (or: python3 -m venv {venv} && {venv}/bin/pip install mediapipe),\n"
              "or point SKINEDGE_BENCH_VENV_MP (or --mp-python) at an existing one.", file=sys.stderr)
        return 2

    from skinedge import Classifier
    from skinedge.postprocess import calibrate
    from skinedge.preprocess import prepare

    files = sorted(p for p in Path(args.data, "test").rglob("*") if p.is_file())
    with Classifier(args.model, num_threads=2) as clf:
        pixels = np.stack([prepare(f, clf.spec) for f in files])
        # the whole score output, as MediaPipe reads it: a gated model's classes and gates in one softmax
        ours = np.stack([calibrate(clf.raw_output(img), clf.output_kind, clf.temperature) for img in pixels])
        labels = list(clf.output_labels)
    with tempfile.TemporaryDirectory() as tmp:
        npz = Path(tmp) / "pixels.npz"
        np.savez(npz, pixels=pixels)
        proc = subprocess.run(
            [str(mp_python), __file__, "--worker", args.model, str(npz)], capture_output=True, text=True, check=False
        )
    if proc.returncode != 0:
        print(json.dumps({"model": args.model, "mediapipe_loads": False, "error": proc.stderr.strip()[-800:]}))
        return 1
    theirs = json.loads(proc.stdout.strip().splitlines()[-1])
    mp_scores = np.asarray(theirs["scores"])
    summary = {
        "model": Path(args.model).name,
        "mediapipe": theirs["mediapipe"],
        "mediapipe_loads": True,
        "images": len(files),
        "labels_match": theirs["labels"] == labels,
        "top1_agreement": float((mp_scores.argmax(1) == ours.argmax(1)).mean()),
        "max_abs_score_difference": float(np.abs(mp_scores - ours).max()),
    }
    out = HERE / "results" / f"interop_mediapipe_{Path(args.model).stem}.json"
    out.write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary))
    return 0 if summary["labels_match"] and summary["top1_agreement"] == 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
