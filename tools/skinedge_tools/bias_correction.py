"""Empirical bias correction for int8 post-training quantization (Nagel et al. 2019, "Data-Free
Quantization Through Weight Equalization and Bias Correction", section 4.2, with data).

Rounding weights to int8 is not zero-mean per output channel once it meets real inputs: MobileNetV2's
ReLU6 activations are mostly positive and near-constant, so ``(W_q - W) @ x`` adds a steady offset to a
channel (measured on the shipped model: up to 4 output steps in ``expanded_conv_depthwise``, and the
single largest source of int8/float disagreement). Because convolution is linear, the expected error is
``conv(W_q - W, E[x])``; subtracting it from the layer's bias removes it while leaving the weights,
and therefore their rounding, untouched.

We predict ``W_q`` exactly as the TFLite converter makes it (``skinedge_tools.int8_grid``: batch norm
folded, per-output-channel int8); ``tests/test_tools_bias_correction.py`` checks that prediction against
the weights of a converted model, so a converter that changes its scheme fails a test instead of silently
degrading.
The corrected network is only ever converted to int8; the float artifact keeps the trained weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from skinedge_tools.int8_grid import (
    all_layers,
    batch_norm_after,
    expected_output,
    folded_weights,
    int8_per_channel,
    set_kernel_and_shift_bias,
)
from skinedge_tools.layer_inputs import mean_over_images, sum_over_layer_inputs

_CONV_TYPES = (keras.layers.DepthwiseConv2D, keras.layers.Conv2D, keras.layers.Dense)


@dataclass(frozen=True)
class LayerCorrection:
    """What was subtracted from one layer's bias (in the layer's output units)."""

    layer: str
    max_abs: float
    mean_abs: float


def correct_int8_bias(model: keras.Model, images: np.ndarray, batch_size: int = 50) -> list[LayerCorrection]:
    """Shift each convolution's (or dense layer's) bias by its expected int8 rounding error, in place.

    ``images`` are calibration inputs in the model's input format (the representative data).
    Returns what changed, per layer, for the rebuild report.
    """
    layers = [layer for layer in all_layers(model) if isinstance(layer, _CONV_TYPES)]
    bn_after = batch_norm_after(model)
    sums = sum_over_layer_inputs(model, layers, images, batch_size, lambda layer, x: mean_over_images(x))
    corrections = []
    for layer, (total,) in zip(layers, sums, strict=True):
        bn = bn_after.get(id(layer))
        if bn is None and not layer.use_bias:
            continue  # nowhere to put a correction (not the case in MobileNetV2: every conv has a BN)
        depthwise = isinstance(layer, keras.layers.DepthwiseConv2D)
        weights = folded_weights(layer, bn)
        error = (int8_per_channel(weights, depthwise) - weights).astype(np.float32)
        shift = expected_output(layer, error, (total / len(images)).astype(np.float32))
        set_kernel_and_shift_bias(layer, bn, shift)
        corrections.append(LayerCorrection(layer.name, float(np.abs(shift).max()), float(np.abs(shift).mean())))
    return corrections
