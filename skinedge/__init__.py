"""skinedge: on-device skin-condition classifier (int8 EfficientNet-Lite0, or the paper's MobileNetV2, on LiteRT
with XNNPACK).

Outputs are scores from a research model, not a medical diagnosis.

    from skinedge import Classifier
    with Classifier() as clf:
        print(clf.classify("photo.jpg").label)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# The public names, imported on first use: ``import skinedge.cli`` then runs the command line's own set-up
# before numpy is imported (see skinedge/cli.py), and ``from skinedge import X`` works as ever.
_EXPORTS = {
    "DISCLAIMER": "skinedge.classifier",
    "Category": "skinedge.classifier",
    "ClassificationResult": "skinedge.classifier",
    "Classifier": "skinedge.classifier",
    "Timings": "skinedge.classifier",
    "ClassifierOptions": "skinedge.options",
    "Prepared": "skinedge.preprocess",
    "ClassifierClosedError": "skinedge.errors",
    "BackendError": "skinedge.errors",
    "ImageError": "skinedge.errors",
    "ImageTooLargeError": "skinedge.errors",
    "MetadataError": "skinedge.errors",
    "ModelError": "skinedge.errors",
    "SkinedgeError": "skinedge.errors",
    "ModelMetadata": "skinedge.metadata",
    "ImageLimits": "skinedge.preprocess",
    "PreprocessSpec": "skinedge.preprocess",
}

__all__ = [
    "DISCLAIMER",
    "BackendError",
    "Category",
    "ClassificationResult",
    "Classifier",
    "ClassifierClosedError",
    "ClassifierOptions",
    "ImageError",
    "ImageLimits",
    "ImageTooLargeError",
    "MetadataError",
    "ModelError",
    "ModelMetadata",
    "Prepared",
    "PreprocessSpec",
    "SkinedgeError",
    "Timings",
]

if TYPE_CHECKING:  # what static checkers and IDEs see
    from skinedge.classifier import DISCLAIMER, Category, ClassificationResult, Classifier, Timings
    from skinedge.errors import (
        BackendError,
        ClassifierClosedError,
        ImageError,
        ImageTooLargeError,
        MetadataError,
        ModelError,
        SkinedgeError,
    )
    from skinedge.metadata import ModelMetadata
    from skinedge.options import ClassifierOptions
    from skinedge.preprocess import ImageLimits, Prepared, PreprocessSpec


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'skinedge' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once imported, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
