"""Shared fixtures. Tests that need ../shared (real photos, reference models) skip when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SKINEDGE_SHARED", ROOT.parent / "shared"))
REFERENCE = SHARED / "reference-models"
SKIN6 = SHARED / "data" / "skin6"
WEIGHTS = SHARED / "weights"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} not found: this test needs ../shared beside the project (or SKINEDGE_SHARED)")
    return path


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """../shared/reference-models: ImageNet models with known answers."""
    return _need(REFERENCE)


@pytest.fixture(scope="session")
def quant_model(reference_dir: Path) -> Path:
    return reference_dir / "mobilenet_v2_1.0_224_quant.tflite"


@pytest.fixture(scope="session")
def ptq_model(reference_dir: Path) -> Path:
    return reference_dir / "tf2_mobilenet_v2_1.0_224_ptq.tflite"


@pytest.fixture(scope="session")
def imagenet_labels(reference_dir: Path) -> Path:
    return reference_dir / "imagenet_labels.txt"


@pytest.fixture(scope="session")
def cat_bmp(reference_dir: Path) -> Path:
    return reference_dir / "images" / "cat.bmp"


@pytest.fixture(scope="session")
def skin6_dir() -> Path:
    """../shared/data/skin6: real clinical photos with train/val/test splits."""
    return _need(SKIN6)


@pytest.fixture(scope="session")
def weights_dir() -> Path:
    return _need(WEIGHTS)


@pytest.fixture(scope="session")
def run_tflite():
    """``run(flatbuffer, images) -> (dequantized outputs, interpreter)``: a converted model run over images
    with LiteRT, one thread, as the runtime runs it (the tools tests' one loop for this)."""
    import numpy as np

    from skinedge.backend import create_interpreter

    def run(flatbuffer: bytes, images):
        interp, _ = create_interpreter(flatbuffer, num_threads=1)
        inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
        scale, zero = out["quantization"]
        rows = []
        for img in images:
            interp.set_tensor(inp["index"], img[None].astype(inp["dtype"]))
            interp.invoke()
            y = interp.get_tensor(out["index"])[0].astype(np.float64)
            rows.append((y - zero) * scale if scale else y)
        return np.stack(rows), interp

    return run
