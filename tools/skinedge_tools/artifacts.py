"""What a rebuild names its files and how it titles each backbone (no TensorFlow: the report and tests read it)."""

from __future__ import annotations

from typing import Any

#: How titles and provenance name each backbone (``model.BACKBONES``).
BACKBONE_TITLES = {
    "mobilenetv2": "MobileNetV2",
    "efficientnet-lite0": "EfficientNet-Lite0",
    "efficientnet-lite1": "EfficientNet-Lite1",
}


def run_backbone(cfg_json: dict[str, Any]) -> str:
    """The backbone a run's ``config.json`` (as a dict) records; runs recorded before the choice existed are
    MobileNetV2 runs (as ``train.TrainConfig.from_json`` reads them)."""
    return cfg_json.get("backbone", "mobilenetv2")


def artifact_names(backbone: str) -> dict[str, str]:
    """The file names of a backbone's artifacts (the int8 ones are what ``skinedge.model_io.BUNDLED_MODELS``
    bundles): ``skinedge_<backbone>_int8.tflite``, ``..._float32.tflite`` and ``..._rebuild_report.json``,
    ``-`` written ``_``, so every backbone's files sit side by side in ``models/``."""
    stem = f"skinedge_{backbone.replace('-', '_')}"
    return {"int8": f"{stem}_int8.tflite", "float32": f"{stem}_float32.tflite", "report": f"{stem}_rebuild_report.json"}


def backbone_title(cfg: Any) -> str:
    """``MobileNetV2 1.0`` (with its width multiplier) or ``EfficientNet-Lite0``; ``cfg`` is a run's config."""
    title = BACKBONE_TITLES[cfg.backbone]
    return f"{title} {cfg.alpha}" if cfg.backbone == "mobilenetv2" else title
