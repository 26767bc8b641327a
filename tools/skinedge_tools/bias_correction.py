"""Empirical bias correction for int8 post-training quantization (Nagel et al. 2019, "Data-Free
Quantization Through Weight Equalization and Bias Correction", section 4.2, with data).

Rounding weights to int8 is not zero-mean per output channel once it meets real inputs: MobileNetV2's
ReLU6 activations are mostly positive and near-constant, so ``(W_q - W) @ x`` adds a steady offset to a
channel (measured on the shipped model: up to 4 output steps in ``expanded_conv_depthwise``, and the
single largest source of int8/float disagreement). Because convolution is linear, the expected error is
``conv(W_q - W, E[x])``; subtracting it from the layer's bias removes it while leaving the weights,
and therefore their rounding, untouched.

We predict ``W_q`` exactly as the TFLite converter makes it: batch norm folded into the preceding
convolution (``W * gamma / sqrt(var + eps)``), then symmetric per-output-channel int8 with scale
``max|W| / 127``. ``tests/test_tools_bias_correction.py`` checks that prediction against the weights of a
converted model, so a converter that changes its scheme fails a test instead of silently degrading.
The corrected network is only ever converted to int8; the float artifact keeps the trained weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

_CONV_TYPES = (keras.layers.DepthwiseConv2D, keras.layers.Conv2D, keras.layers.Dense)


@dataclass(frozen=True)
class LayerCorrection:
    """What was subtracted from one layer's bias (in the layer's output units)."""

    layer: str
    max_abs: float
    mean_abs: float


def folded_weights(layer: keras.layers.Layer, bn: keras.layers.BatchNormalization | None) -> np.ndarray:
    """The float kernel the converter quantizes: batch norm folded in, in Keras layout."""
    kernel = np.asarray(layer.get_weights()[0], dtype=np.float64)
    if bn is None:
        return kernel
    factor = _bn_factor(bn)
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return kernel * factor.reshape(1, 1, kernel.shape[2], kernel.shape[3])  # (H, W, C, multiplier)
    return kernel * factor  # Conv2D (H, W, in, out) and Dense (in, out): output axis last


def int8_per_channel(weights: np.ndarray, depthwise: bool) -> np.ndarray:
    """``weights`` after symmetric per-output-channel int8 rounding, as the TFLite converter does it."""
    # Depthwise kernels are (H, W, C, multiplier): one scale per output channel = per (C, multiplier).
    axes = (0, 1) if depthwise else tuple(range(weights.ndim - 1))
    scale = np.abs(weights).max(axis=axes, keepdims=True) / 127.0
    scale = np.where(scale == 0, 1.0, scale)
    return np.clip(np.round(weights / scale), -127, 127) * scale


def correct_int8_bias(model: keras.Model, images: np.ndarray, batch_size: int = 50) -> list[LayerCorrection]:
    """Shift each convolution's (or dense layer's) bias by its expected int8 rounding error, in place.

    ``images`` are calibration inputs in the model's input format (the representative data).
    Returns what changed, per layer, for the rebuild report.
    """
    layers = [layer for layer in _all_layers(model) if isinstance(layer, _CONV_TYPES)]
    bn_after = _batch_norm_after(model)
    mean_inputs = _mean_inputs(model, layers, images, batch_size)
    corrections = []
    for layer, mean_input in zip(layers, mean_inputs, strict=True):
        bn = bn_after.get(id(layer))
        if bn is None and not layer.use_bias:
            continue  # nowhere to put a correction (not the case in MobileNetV2: every conv has a BN)
        depthwise = isinstance(layer, keras.layers.DepthwiseConv2D)
        weights = folded_weights(layer, bn)
        error = (int8_per_channel(weights, depthwise) - weights).astype(np.float32)
        shift = _expected_output(layer, error, mean_input.astype(np.float32))
        if bn is not None:
            gamma, beta, mean, var = bn.get_weights()
            bn.set_weights([gamma, beta - shift, mean, var])  # folded bias = beta - mean * factor
        else:
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel, bias - shift])
        corrections.append(LayerCorrection(layer.name, float(np.abs(shift).max()), float(np.abs(shift).mean())))
    return corrections


def _bn_factor(bn: keras.layers.BatchNormalization) -> np.ndarray:
    gamma, _, _, var = (np.asarray(w, dtype=np.float64) for w in bn.get_weights())
    return gamma / np.sqrt(var + bn.epsilon)


def _expected_output(layer: keras.layers.Layer, error: np.ndarray, mean_input: np.ndarray) -> np.ndarray:
    """Mean over positions of ``layer(mean_input)`` computed with ``error`` as its kernel (linearity)."""
    x = mean_input[None]
    if isinstance(layer, keras.layers.Dense):
        return (x.reshape(1, -1) @ error).reshape(-1)
    padding = layer.padding.upper()
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        y = tf.nn.depthwise_conv2d(x, error, strides=(1, *layer.strides, 1), padding=padding)
    else:
        y = tf.nn.conv2d(x, error, strides=layer.strides, padding=padding)
    return y.numpy().mean(axis=(0, 1, 2))


def _mean_inputs(model: keras.Model, layers: list, images: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Each layer's input averaged over ``images`` (per position and channel), from the float model."""
    sums = sum_over_layer_inputs(model, layers, images, batch_size, lambda layer, x: (x.sum(axis=0),))
    return [s / len(images) for (s,) in sums]


def sum_over_layer_inputs(model: keras.Model, layers: list, images: np.ndarray, batch_size: int, reduce) -> list:
    """Run ``images`` through the float model once, in batches, and sum ``reduce(layer, x)`` per layer.

    ``x`` is the batch of ``layer``'s inputs (float64); ``reduce`` returns a tuple of arrays, summed
    element by element over batches. One pass serves every statistic a caller needs.
    """
    (pixels,) = model.inputs  # one image input, as in every model this project builds
    probe = keras.Model(pixels, _symbolic_inputs(model, layers))
    sums: list[tuple] | None = None
    for start in range(0, len(images), batch_size):
        outs = probe(images[start : start + batch_size].astype(np.float32), training=False)
        batch = [reduce(layer, np.asarray(o, dtype=np.float64)) for layer, o in zip(layers, outs, strict=True)]
        sums = batch if sums is None else [tuple(a + b for a, b in zip(s, t)) for s, t in zip(sums, batch)]
    if sums is None:
        raise ValueError("needs at least one calibration image")
    return sums


def _symbolic_inputs(model: keras.Model, layers: list) -> list:
    """Each of ``layers``' inputs as a tensor of ``model``'s graph, reaching into nested sub-models."""
    out: dict[int, object] = {id(layer): layer.input for layer in layers if layer in model.layers}
    for sub in model.layers:
        if not isinstance(sub, keras.Model):
            continue
        inner = [layer for layer in layers if layer in _all_layers(sub)]
        if inner:
            sub_probe = keras.Model(sub.inputs, _symbolic_inputs(sub, inner))
            tensors = sub_probe(sub._inbound_nodes[0].input_tensors[0])
            out.update({id(layer): t for layer, t in zip(inner, tensors, strict=True)})
    return [out[id(layer)] for layer in layers]


def _all_layers(model: keras.Model) -> list[keras.layers.Layer]:
    out = []
    for layer in model.layers:
        out.extend(_all_layers(layer) if isinstance(layer, keras.Model) else [layer])
    return out


def _batch_norm_after(model: keras.Model) -> dict[int, keras.layers.BatchNormalization]:
    """Map id(conv) -> the batch-norm layer that consumes it directly (what the converter folds)."""
    found = {}
    for layer in _all_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            found[id(layer.input._keras_history.operation)] = layer
    return found
