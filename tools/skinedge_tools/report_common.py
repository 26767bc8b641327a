"""What the report and its sections (``report_backbones``, ``report_trials``) share: photo labels of a run,
the CI cell format, and the per-source split and gap. Its own module, so the sections import it and not the
report that imports them."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from skinedge_tools import stats


def labels_of(run_dir: Path, split: str, classes: list[str]) -> tuple[list[str], np.ndarray]:
    files = (run_dir / f"{split}_files.txt").read_text().split()
    return files, np.asarray([classes.index(Path(f).parts[1]) for f in files])


def class_logits(stage_dir: Path, split: str, n_classes: int) -> np.ndarray:
    """A stage's saved ``logits_<split>.npy``, the known classes' columns only: a gated run (outlier exposure) saves
    its abstention classes after them, and a softmax over the classes alone is their renormalised share."""
    return np.load(Path(stage_dir) / f"logits_{split}.npy")[:, :n_classes]


def fmt_ci(ci: dict[str, float]) -> str:
    return f"{ci['value']:.3f} [{ci['low']:.3f}, {ci['high']:.3f}]"


def per_source(
    manifest: Path, files: list[str], y: np.ndarray, pred: np.ndarray
) -> list[tuple[str, int, float, float]]:
    if not manifest.exists():
        return []
    with open(manifest) as f:
        source_of = {r["path"]: r["source_repo"] for r in csv.DictReader(f)}
    src = np.asarray([source_of.get(p, "?") for p in files])
    rows = []
    for s in sorted(set(src)):
        m = src == s
        rows.append(
            (
                s,
                int(m.sum()),
                float(stats.accuracy_batch(y[m], pred[m])),
                float(stats.macro_f1_batch(y[m], pred[m])),
            )
        )
    return rows


#: Sources with fewer test photos are left out of the per-source gap (too few photos for an accuracy).
MIN_SOURCE_PHOTOS = 10


def source_gap(rows: list[tuple[str, int, float, float]]) -> float | None:
    """Best minus worst per-source accuracy of ``per_source`` rows, over sources with enough photos."""
    acc = [a for _, n, a, _ in rows if n >= MIN_SOURCE_PHOTOS]
    return max(acc) - min(acc) if acc else None
