"""Dataset discovery and cached training arrays, built with the runtime's own preprocessing.

Two layouts are understood:

* skin6 (``train/``, ``val/``, ``test/`` with one folder per class);
* Kaggle "Skin Disease Classification" (``Train/``, ``Test/`` with 22 class folders): the chosen
  classes are selected and a stratified validation split is carved from ``Train/``.

Arrays are produced by :func:`skinedge.preprocess.prepare` (the exact function the runtime uses)
and cached as ``.npy`` files keyed by the file list, file sizes and mtimes, and the spec.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from skinedge.backend import usable_cpus
from skinedge.errors import ImageError
from skinedge.files import image_files
from skinedge.preprocess import PreprocessSpec, prepare

log = logging.getLogger(__name__)

#: The paper's six classes, in output order.
DEFAULT_CLASSES = ("Acne", "Eczema", "Psoriasis", "SkinCancer", "Vitiligo", "Unknown_Normal")


@dataclass
class Split:
    """One split: relative file paths (to the dataset root) and integer labels."""

    root: Path
    paths: list[str]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.paths)


def _split_from(root: Path, split_dir: Path, classes: tuple[str, ...]) -> Split:
    paths, labels = [], []
    for idx, name in enumerate(classes):
        folder = split_dir / name
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: class folder missing")
        for p in image_files(folder):  # the runtime's own scan: skinedge evaluate sees the same photos
            paths.append(str(p.relative_to(root)))
            labels.append(idx)
    return Split(root=root, paths=paths, labels=np.asarray(labels, dtype=np.int64))


def discover(
    root: str | os.PathLike, classes: tuple[str, ...] = DEFAULT_CLASSES, val_fraction: float = 0.15, seed: int = 0
) -> dict[str, Split]:
    """Find the train/val/test splits under ``root`` (skin6 or Kaggle layout)."""
    root = Path(root)
    if (root / "train").is_dir() and (root / "val").is_dir():
        return {s: _split_from(root, root / s, classes) for s in ("train", "val", "test")}
    if (root / "Train").is_dir() and (root / "Test").is_dir():
        from sklearn.model_selection import train_test_split

        full = _split_from(root, root / "Train", classes)
        idx = np.arange(len(full))
        tr, va = train_test_split(idx, test_size=val_fraction, stratify=full.labels, random_state=seed)
        pick = lambda ix: Split(root, [full.paths[i] for i in sorted(ix)], full.labels[sorted(ix)])  # noqa: E731
        return {"train": pick(tr), "val": pick(va), "test": _split_from(root, root / "Test", classes)}
    raise FileNotFoundError(f"{root}: expected train/ val/ test/ (skin6) or Train/ Test/ (Kaggle layout)")


def discover_outliers(root: str | os.PathLike, label: int) -> dict[str, Split]:
    """An outlier set's splits (``train/``, ``val/``, ``test/``, each a flat folder of photos, e.g.
    ``../shared/data/not-skin``), every photo labelled ``label`` (an abstention class after the known ones)."""
    root = Path(root)
    out = {}
    for s in ("train", "val", "test"):
        folder = root / s
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: outlier split folder missing")
        paths = [str(p.relative_to(root)) for p in image_files(folder)]
        out[s] = Split(root=root, paths=paths, labels=np.full(len(paths), label, dtype=np.int64))
    return out


def _cache_key(split: Split, spec: PreprocessSpec) -> str:
    h = hashlib.sha256(json.dumps(spec.to_dict(), sort_keys=True).encode())
    for rel in split.paths:
        st = (split.root / rel).stat()
        h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def load_arrays(split: Split, spec: PreprocessSpec, cache_dir: str | os.PathLike | None) -> tuple[np.ndarray, Split]:
    """Preprocess every image of ``split`` with the runtime's :func:`prepare`, cached on disk.

    Files the runtime cannot decode are left out with a warning (the returned split lists only
    the files in the array).
    """
    key = _cache_key(split, spec)
    cache = Path(cache_dir) / f"{key}.npz" if cache_dir else None
    if cache and cache.exists():
        with np.load(cache, allow_pickle=False) as z:
            keep = list(z["paths"])
            return z["x"], Split(split.root, keep, z["labels"])
    arrays, keep, labels = [], [], []
    for rel, label, pixels in zip(split.paths, split.labels, _prepare_all(split, spec)):
        if isinstance(pixels, ImageError):
            log.warning("skipped %s", pixels)
            continue
        arrays.append(pixels)
        keep.append(rel)
        labels.append(label)
    x = np.stack(arrays) if arrays else np.zeros((0, spec.height, spec.width, 3), np.uint8)
    out = Split(split.root, keep, np.asarray(labels, dtype=np.int64))
    if cache:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npz")
        np.savez(tmp, x=x, labels=out.labels, paths=np.asarray(keep))
        os.replace(tmp, cache)
    return x, out


def _prepare_all(split: Split, spec: PreprocessSpec) -> list[np.ndarray | ImageError]:
    """Every image of ``split`` through :func:`prepare`, in order, or the error that stopped it. In threads:
    Pillow decodes and resizes without holding the GIL, and each image is prepared exactly as alone."""

    def one(rel: str) -> np.ndarray | ImageError:
        try:
            return prepare(split.root / rel, spec)
        except ImageError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=usable_cpus()) as pool:
        return list(pool.map(one, split.paths))


def class_weights(labels: np.ndarray, num_classes: int) -> dict[int, float]:
    """Inverse-frequency weights ``n / (k * n_c)`` (scikit-learn's "balanced")."""
    from sklearn.utils.class_weight import compute_class_weight

    w = compute_class_weight("balanced", classes=np.arange(num_classes), y=labels)
    return {i: float(v) for i, v in enumerate(w)}
