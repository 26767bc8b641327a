"""Class-activation maps built into the artifact, so ``Classifier.explain`` costs no second invoke.

Two maps come out of every invoke (``tflite_edit.add_class_activation_maps``):

* the last feature map (7x7 for a 224 px MobileNetV2) through the classifier's own head: exact CAM;
* the layer before the last stride-2 op (14x14) through a linear head fitted here, by ridge regression
  from its pooled features to the network's own logits on the representative training images. It is
  an approximation of the network (``fit_r2`` says how good), used only to sharpen where the exact map
  puts its weight; the runtime fuses the two (``skinedge.explain``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from skinedge.backend import create_interpreter, run_on_images
from skinedge_tools.tflite_edit import (
    CLASS_MAPS,
    CLASS_MAPS_FINE,
    add_class_activation_maps,
    expose_tensors,
    find_classifier_head,
)

#: Ridge strength, relative to the mean feature variance times the number of images.
RIDGE = 1.0
#: How the runtime combines the two maps (``skinedge.explain`` implements it).
FUSION = "zscore_sum"

#: Descriptions for the standard TFLite metadata entries of the two map outputs.
MAP_DESCRIPTIONS = (
    (CLASS_MAPS, "Class-activation maps [1, h, w, classes]: the classifier head at each position of the last "
                 "feature map; their spatial mean is the logits. A coarse map of what drove the score."),
    (CLASS_MAPS_FINE, "Finer class maps [1, 2h, 2w, classes] from a linear head fitted to the logits on an "
                      "earlier layer. Used with class_maps for heatmaps; not a lesion outline."),
)


@dataclass(frozen=True)
class FineHead:
    """The fitted head of the finer map and how well it reproduces the logits on the fitting images."""

    weights: np.ndarray  # classes x channels
    bias: np.ndarray
    fit_r2: float
    images: int


def _run_exposed(flat: bytes, images: np.ndarray, indices: list[int]) -> list[np.ndarray]:
    """Dequantized values of the tensors ``indices`` for every image (graph outputs extended to them)."""
    interp, _ = create_interpreter(expose_tensors(flat, indices), num_threads=2)
    name_of = {int(d["index"]): d["name"] for d in interp.get_output_details()}
    values = run_on_images(interp, images)
    return [values[name_of[i]] for i in indices]


def fit_fine_head(flat: bytes, images: np.ndarray, ridge: float = RIDGE) -> FineHead:
    """Ridge regression from the finer layer's pooled features to the model's logits on ``images``."""
    head = find_classifier_head(flat)
    fine, logits = _run_exposed(flat, images, [head.fine_features, head.logits])
    x = fine.mean(axis=(1, 2))
    y = logits.reshape(len(images), -1)
    xm, ym = x.mean(0), y.mean(0)
    xc, yc = x - xm, y - ym
    lam = ridge * len(x) * float(xc.var(0).mean())
    a = np.linalg.solve(xc.T @ xc + lam * np.eye(x.shape[1]), xc.T @ yc)  # channels x classes
    bias = ym - xm @ a
    r2 = 1.0 - float(((x @ a + bias - y) ** 2).sum() / (yc**2).sum())
    return FineHead(weights=a.T.copy(), bias=bias, fit_r2=r2, images=len(images))


def add_maps(flat: bytes, representative: np.ndarray) -> tuple[bytes, dict[str, Any]]:
    """``flat`` with both map outputs, and the ``explain`` entry for the skinedge metadata."""
    head = find_classifier_head(flat)
    fine = fit_fine_head(flat, representative)
    edited = add_class_activation_maps(flat, fine.weights, fine.bias)
    interp, _ = create_interpreter(edited, num_threads=1)
    shapes = {d["name"]: [int(v) for v in d["shape"]] for d in interp.get_output_details()}
    info = {
        "maps": [
            {"output": CLASS_MAPS, "grid": shapes[CLASS_MAPS][1:3], "head": "classifier"},
            {"output": CLASS_MAPS_FINE, "grid": shapes[CLASS_MAPS_FINE][1:3], "head": "ridge fit to the logits",
             "fit_r2": round(fine.fit_r2, 4), "fit_images": fine.images, "ridge": RIDGE},
        ],
        "fusion": FUSION,
        "feature_channels": [int(head.weights.shape[1]), int(fine.weights.shape[1])],
    }
    return edited, info
