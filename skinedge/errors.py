"""Typed errors that skinedge raises, so callers can handle bad input without tracebacks.

Every error names what it was given (``source``: a file path, ``"<bytes>"``, ``"<array>"``...) and
what is wrong with it (``reason``); ``str(error)`` is the one line the CLI prints.
"""

from __future__ import annotations


class SkinedgeError(Exception):
    """Base class of every error skinedge raises on purpose."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


class ImageError(SkinedgeError):
    """An input image could not be read, decoded or converted."""


class ImageTooLargeError(ImageError):
    """An input image is above the pixel or file-size limit (decompression-bomb guard)."""


class ModelError(SkinedgeError):
    """A model file is missing, not a valid ``.tflite``, damaged, or unusable as a classifier."""


class MetadataError(ModelError):
    """A model's embedded metadata (or a labels file) is malformed or contradicts its tensors."""


class BackendError(SkinedgeError):
    """No usable TFLite interpreter package is installed, or the requested one is missing."""


class ClassifierClosedError(SkinedgeError, RuntimeError):
    """A closed :class:`~skinedge.Classifier` was asked to classify (a RuntimeError too, as it always was)."""
