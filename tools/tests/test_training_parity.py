"""Training arrays are byte-identical to what the runtime feeds the model, on real skin6 files.

``skinedge_tools.data.load_arrays`` (training, with its on-disk cache) must equal
``skinedge.preprocess.prepare`` and ``Classifier.preprocess`` for the same spec, pixel for pixel,
across the formats the dataset really contains (CMYK JPEG, RGBA PNG, palette PNG, WEBP and JPEG
data behind a .png name, .jfif...).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from skinedge import Classifier
from skinedge.metadata import ModelMetadata, pack, unpack
from skinedge.preprocess import IMAGE_SUFFIXES, PreprocessSpec, prepare

data_mod = pytest.importorskip("skinedge_tools.data")

# (suffix, decoded format, mode) kinds to pick, and how many files of each.
WANTED = {
    (".jpg", "JPEG", "CMYK"): 1,
    (".png", "PNG", "RGBA"): 2,
    (".png", "PNG", "P"): 1,
    (".png", "PNG", "RGB"): 1,
    (".png", "JPEG", "RGB"): 1,
    (".png", "WEBP", "RGB"): 1,
    (".jpg", "PNG", "RGB"): 1,
    (".jfif", "JPEG", "RGB"): 1,
    (".jpeg", "JPEG", "RGB"): 1,
    (".jpg", "JPEG", "RGB"): 3,
}
SPECS = {
    "training-default": PreprocessSpec(),
    "crop-bicubic-black": PreprocessSpec(aspect="center_crop", resize_filter="bicubic", alpha_background=(0, 0, 0)),
}


@pytest.fixture(scope="module")
def picked(skin6_dir: Path) -> list[str]:
    """Relative paths of ~14 real files across formats, found by reading image headers."""
    need = dict(WANTED)
    found: list[str] = []
    for split in ("train", "val", "test"):
        for path in sorted((skin6_dir / split).rglob("*")):
            if not need:
                break
            if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
                continue
            try:
                with Image.open(path) as im:
                    key = (path.suffix.lower(), im.format, im.mode)
            except OSError:
                continue
            if need.get(key, 0) > 0:
                need[key] -= 1
                found.append(str(path.relative_to(skin6_dir)))
                if not need[key]:
                    del need[key]
    kinds = {k for k in WANTED if k not in need}
    if (".jpg", "JPEG", "CMYK") not in kinds or (".png", "PNG", "RGBA") not in kinds:
        pytest.fail(f"skin6 no longer holds a CMYK JPEG and an RGBA PNG; missing {sorted(need)}")
    assert len(found) >= 12, f"only {len(found)} files found; missing kinds {sorted(need)}"
    return found


@pytest.fixture(scope="module")
def bare_flatbuffer(quant_model: Path) -> bytes:
    return unpack(quant_model.read_bytes(), str(quant_model)).flatbuffer


@pytest.fixture(scope="module", params=sorted(SPECS))
def spec_and_classifier(
    request: pytest.FixtureRequest, bare_flatbuffer: bytes, tmp_path_factory: pytest.TempPathFactory
):
    """The spec, and a Classifier whose model carries that spec in its metadata (as training writes it)."""
    spec = SPECS[request.param]
    md = ModelMetadata(labels=tuple(f"class{i}" for i in range(1001)), output_kind="probabilities", preprocess=spec)
    path = tmp_path_factory.mktemp("parity") / f"{request.param}.tflite"
    path.write_bytes(pack(bare_flatbuffer, md))
    with Classifier(path, num_threads=1) as clf:
        assert clf.spec == spec
        yield spec, clf


def test_picked_files_cover_the_formats(picked: list[str], skin6_dir: Path) -> None:
    modes = set()
    for rel in picked:
        with Image.open(skin6_dir / rel) as im:
            modes.add((im.format, im.mode))
    assert {("JPEG", "CMYK"), ("PNG", "RGBA"), ("JPEG", "RGB")} <= modes
    assert any(rel.lower().endswith(".jfif") for rel in picked) or not list(skin6_dir.rglob("*.jfif"))


def test_training_arrays_equal_runtime_preprocessing(
    picked: list[str], skin6_dir: Path, spec_and_classifier, tmp_path: Path
) -> None:
    spec, clf = spec_and_classifier
    split = data_mod.Split(root=skin6_dir, paths=list(picked), labels=np.arange(len(picked), dtype=np.int64))
    cache = tmp_path / "cache"

    x, kept = data_mod.load_arrays(split, spec, cache)
    assert list(kept.paths) == picked  # nothing skipped
    assert list(kept.labels) == list(range(len(picked)))
    assert x.dtype == np.uint8
    assert x.shape == (len(picked), spec.height, spec.width, 3)
    assert len(list(cache.glob("*.npz"))) == 1

    x_cached, kept_cached = data_mod.load_arrays(split, spec, cache)  # second read: from the cache
    assert [str(p) for p in kept_cached.paths] == picked
    assert list(kept_cached.labels) == list(range(len(picked)))
    assert x_cached.tobytes() == x.tobytes()

    for i, rel in enumerate(picked):
        path = skin6_dir / rel
        runtime = prepare(path, spec)
        served = clf.preprocess(path)[0]
        assert runtime.tobytes() == x[i].tobytes(), rel
        assert served.tobytes() == x[i].tobytes(), rel
        assert served.dtype == runtime.dtype == np.uint8


def test_cache_is_keyed_by_spec(picked: list[str], skin6_dir: Path, tmp_path: Path) -> None:
    split = data_mod.Split(root=skin6_dir, paths=picked[:3], labels=np.zeros(3, dtype=np.int64))
    a, _ = data_mod.load_arrays(split, SPECS["training-default"], tmp_path)
    b, _ = data_mod.load_arrays(split, SPECS["crop-bicubic-black"], tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 2  # a different spec never reuses stale arrays
    assert not np.array_equal(a, b)
    c, _ = data_mod.load_arrays(split, replace(SPECS["training-default"], height=96, width=96), tmp_path)
    assert c.shape == (3, 96, 96, 3)
