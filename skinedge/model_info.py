"""``ModelInfo``: one description of a loaded model, what ``skinedge info`` prints and ``GET /api/info`` serves
(the same keys in both)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from skinedge.classifier import Classifier
from skinedge.metadata import ModelMetadata
from skinedge.preprocess import PreprocessSpec


@dataclass(frozen=True)
class TensorInfo:
    """One input or output tensor of the model: its name, shape, dtype and quantization (scale 0: not
    quantized)."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: float
    zero_point: int

    @classmethod
    def of(cls, details: dict) -> TensorInfo:
        scale, zero = details["quantization"]
        return cls(str(details["name"]), tuple(int(v) for v in details["shape"]), np.dtype(details["dtype"]).name,
                   float(scale), int(zero))

    @property
    def quantized(self) -> bool:
        return self.scale != 0.0

    def describe(self) -> str:
        """``[1, 224, 224, 3] uint8 (scale 1, zero point 0)`` or ``[1, 6] float32`` (not quantized)."""
        quant = f" (scale {self.scale:.6g}, zero point {self.zero_point})" if self.quantized else ""
        return f"{list(self.shape)} {self.dtype}{quant}"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype, "scale": self.scale,
                "zero_point": self.zero_point}


@dataclass(frozen=True)
class ModelInfo:
    """What a :class:`~skinedge.Classifier` has loaded and how it runs it.

    Attributes:
        model: the model file's path; ``bytes``, ``sha256``: its size and checksum.
        name, description: from the model's metadata ("" without).
        labels, preprocess, output_kind, temperature, abstain_threshold: how photos become answers (the
            abstain threshold in force: the classifier's option, else the model's own).
        backend, delegate, threads: the interpreter package and version, delegate status, threads.
        tensors: ``input``, ``output`` (the class scores) and each class-activation map output, by name.
        heatmaps: the map output names (empty: the model cannot explain).
        metadata: the model's own metadata, or None.
    """

    model: str
    bytes: int
    sha256: str
    name: str
    description: str
    labels: tuple[str, ...]
    preprocess: PreprocessSpec
    output_kind: str
    temperature: float
    abstain_threshold: float
    backend: str
    delegate: str
    threads: int
    tensors: dict[str, TensorInfo]
    heatmaps: tuple[str, ...]
    metadata: ModelMetadata | None
    gates: dict[str, float | None]  # gate -> threshold in force; empty: the model has no gates
    quality: dict[str, Any] | None  # photo-quality limits in force; None: no quality check

    @classmethod
    def of(cls, classifier: Classifier) -> ModelInfo:
        md = classifier.metadata
        opts = classifier.resolve_options()
        tensors = {"input": TensorInfo.of(classifier.input_details), "output": TensorInfo.of(classifier.output_details)}
        maps = classifier.map_output_details
        tensors.update({name: TensorInfo.of(d) for name, d in maps.items()})
        return cls(
            model=str(classifier.model_path), bytes=classifier.model_path.stat().st_size,
            sha256=classifier.model_sha256, name=md.name if md else "", description=md.description if md else "",
            labels=classifier.labels, preprocess=classifier.spec, output_kind=classifier.output_kind,
            temperature=classifier.temperature, abstain_threshold=classifier.abstain_threshold,
            backend=f"{classifier.backend.name} {classifier.backend.version}", delegate=classifier.delegate.describe(),
            threads=classifier.num_threads, tensors=tensors, heatmaps=tuple(maps), metadata=md,
            gates={g: getattr(opts, f"{g}_threshold", None) for g in classifier.gate_labels},
            quality=opts.quality.to_dict() if opts.quality is not None and opts.check_quality else None,
        )

    def to_dict(self, *, public: bool = False) -> dict[str, Any]:
        """JSON-ready. ``public``: the model's file name instead of its path (what a server shows its clients)."""
        from pathlib import Path

        return {
            "model": Path(self.model).name if public else self.model,
            "bytes": self.bytes,
            "model_sha256": self.sha256,
            "name": self.name,
            "description": self.description,
            "labels": list(self.labels),
            "preprocess": self.preprocess.to_dict(),
            "output_kind": self.output_kind,
            "temperature": self.temperature,
            "abstain_threshold": self.abstain_threshold,
            "backend": self.backend,
            "delegate": self.delegate,
            "threads": self.threads,
            "tensors": {key: t.to_dict() for key, t in self.tensors.items()},
            "heatmaps": list(self.heatmaps),
            "gates": dict(self.gates),
            "quality": self.quality,
            "metadata": self.metadata.to_dict() if self.metadata else None,
        }


__all__ = ["ModelInfo", "TensorInfo"]
