"""What the server's JSON API answers: results, the model's description, errors, heatmap PNGs."""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
from PIL import Image

from skinedge.classifier import DISCLAIMER, ClassificationResult, Classifier
from skinedge.model_info import ModelInfo

#: Longest side of the heatmap overlay image sent to the page (the photo is only shown, not analysed).
PAGE_OVERLAY_MAX_SIDE = 512


def supports_heatmap(classifier: Classifier) -> bool:
    """True when the model can explain a result (it has class-activation map outputs)."""
    return classifier.has_class_maps


def result_payload(result: ClassificationResult, labels: tuple[str, ...]) -> dict[str, Any]:
    """``result.to_dict()`` (what ``skinedge predict --json`` prints) plus every class's score by label,
    for the page's bars (``top_k`` lists only the best few)."""
    payload = result.to_dict()
    payload.setdefault("scores", {label: round(float(s), 6) for label, s in zip(labels, result.scores)})
    return payload


def error_payload(status: int, error: str, reason: str, source: str | None = None) -> dict[str, Any]:
    """The JSON body of every refusal: the kind of error and a one-line reason, never a traceback."""
    body: dict[str, Any] = {"error": error, "reason": reason, "status": status}
    if source is not None:
        body["source"] = source
    return body


def model_info(classifier: Classifier, *, heatmap: bool, live: bool, max_body_bytes: int) -> dict[str, Any]:
    """``GET /api/info``: the model's :class:`~skinedge.model_info.ModelInfo` (the keys of ``skinedge info
    --json``; the model's file name, not the server's path to it) and what this server offers."""
    return {
        **ModelInfo.of(classifier).to_dict(public=True),
        "disclaimer": DISCLAIMER,
        "heatmap": heatmap,
        "live": live,
        "limits": {
            "max_body_bytes": max_body_bytes,
            "max_pixels": classifier.limits.max_pixels,
        },
    }


def overlay_png(image: Image.Image, heatmap: np.ndarray) -> str:
    """The heatmap drawn over ``image`` (the decoded upload, ``Prepared.image``: no second decode), scaled to
    at most ``PAGE_OVERLAY_MAX_SIDE``, as base64 PNG."""
    from skinedge.explain import overlay

    side = PAGE_OVERLAY_MAX_SIDE
    if max(image.size) > side:
        image = image.copy()
        image.thumbnail((side, side))
    buffer = io.BytesIO()
    # Fastest zlib level: ~4x quicker than the default for ~15% more bytes, on a page served over a LAN.
    overlay(image, heatmap).save(buffer, format="PNG", compress_level=1)
    return base64.b64encode(buffer.getvalue()).decode("ascii")
