"""skinedge: on-device skin-condition classifier (MobileNetV2 int8 on TFLite/LiteRT with XNNPACK).

Outputs are scores from a research model, not a medical diagnosis.

    from skinedge import Classifier
    with Classifier() as clf:
        print(clf.classify("photo.jpg").label)
"""

from skinedge.classifier import DISCLAIMER, Category, ClassificationResult, Classifier, Timings
from skinedge.errors import (
    BackendError,
    ImageError,
    ImageTooLargeError,
    MetadataError,
    ModelError,
    SkinedgeError,
)
from skinedge.metadata import ModelMetadata
from skinedge.preprocess import ImageLimits, PreprocessSpec

__version__ = "0.1.0"

__all__ = [
    "DISCLAIMER",
    "BackendError",
    "Category",
    "ClassificationResult",
    "Classifier",
    "ImageError",
    "ImageLimits",
    "ImageTooLargeError",
    "MetadataError",
    "ModelError",
    "ModelMetadata",
    "PreprocessSpec",
    "SkinedgeError",
    "Timings",
]
