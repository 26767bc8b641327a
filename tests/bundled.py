"""The bundled models and what the repository keeps beside each in ``models/`` (the runtime's own list is
``skinedge.model_io.BUNDLED_MODELS``; this adds the training run, the float32 comparison file and the rebuild
report, which only the repository has)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from skinedge.model_io import BUNDLED_MODELS, DEFAULT_MODEL

MODELS = Path(__file__).resolve().parents[1] / "models"
#: Each bundled model's training run (config, file lists, per-stage histories, logits and checkpoints).
RUNS = {"efficientnet-lite0": "run-efficientnet-lite0", "mobilenetv2": "run"}


@dataclass(frozen=True)
class Bundled:
    name: str
    int8: Path  # the file that ships
    float32: Path  # the same network unquantized, kept in the repository for comparisons
    report: Path  # what `skinedge-tools rebuild` measured (skinedge_tools.artifacts.artifact_names)
    run: Path


def bundled(name: str = DEFAULT_MODEL) -> Bundled:
    int8 = BUNDLED_MODELS[name]
    stem = int8.removesuffix("_int8.tflite")
    return Bundled(name, MODELS / int8, MODELS / f"{stem}_float32.tflite", MODELS / f"{stem}_rebuild_report.json",
                   MODELS / RUNS[name])


DEFAULT = bundled()


def full_rebuild() -> bool:
    """Whether this session rebuilds exactly as the committed files were built (500 calibration images), not in
    test mode (conftest.py, ``TEST_MODE_CALIBRATION``): ``SKINEDGE_FULL_REBUILD=1`` or ``SKINEDGE_BUILD_MACHINE=1``."""
    return "1" in (os.environ.get("SKINEDGE_FULL_REBUILD"), os.environ.get("SKINEDGE_BUILD_MACHINE"))
