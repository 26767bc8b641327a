"""What the TFLite converter makes of a Keras layer's weights, predicted in numpy: batch norm folded into
the preceding convolution (``W * gamma / sqrt(var + eps)``), then symmetric per-output-channel int8 with
scale ``max|W| / 127``; and where a bias shift goes when the bias lives in that batch norm.

GPTQ (``gptq``) writes weights that already sit on this grid and bias correction (``bias_correction``)
subtracts the expected rounding error from the bias; both rely on this prediction, which
``tests/test_tools_bias_correction.py`` checks against the weights of a converted model.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


def all_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Every layer of ``model``, nested sub-models flattened, in order."""
    out = []
    for layer in model.layers:
        out.extend(all_layers(layer) if isinstance(layer, keras.Model) else [layer])
    return out


def batch_norm_after(model: keras.Model) -> dict[int, keras.layers.BatchNormalization]:
    """Map id(conv) -> the batch-norm layer that consumes it directly (what the converter folds)."""
    found = {}
    for layer in all_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            found[id(layer.input._keras_history.operation)] = layer
    return found


def bn_factor(bn: keras.layers.BatchNormalization) -> np.ndarray:
    """The per-channel factor folding multiplies the kernel by: ``gamma / sqrt(var + eps)`` (float64)."""
    gamma, _, _, var = (np.asarray(w, dtype=np.float64) for w in bn.get_weights())
    return gamma / np.sqrt(var + bn.epsilon)


def folded_weights(layer: keras.layers.Layer, bn: keras.layers.BatchNormalization | None) -> np.ndarray:
    """The float kernel the converter quantizes: batch norm folded in, in Keras layout."""
    kernel = np.asarray(layer.get_weights()[0], dtype=np.float64)
    if bn is None:
        return kernel
    factor = bn_factor(bn)
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return kernel * factor.reshape(1, 1, kernel.shape[2], kernel.shape[3])  # (H, W, C, multiplier)
    return kernel * factor  # Conv2D (H, W, in, out) and Dense (in, out): output axis last


def unfold(layer: keras.layers.Layer, bn: keras.layers.BatchNormalization | None, folded: np.ndarray) -> np.ndarray:
    """The Keras kernel whose folding (:func:`folded_weights`) gives ``folded``."""
    if bn is None:
        return folded
    factor = bn_factor(bn)
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return folded / factor.reshape(1, 1, *folded.shape[2:])
    return folded / factor


def int8_per_channel(weights: np.ndarray, depthwise: bool) -> np.ndarray:
    """``weights`` after symmetric per-output-channel int8 rounding, as the TFLite converter does it."""
    # Depthwise kernels are (H, W, C, multiplier): one scale per output channel = per (C, multiplier).
    axes = (0, 1) if depthwise else tuple(range(weights.ndim - 1))
    scale = np.abs(weights).max(axis=axes, keepdims=True) / 127.0
    scale = np.where(scale == 0, 1.0, scale)
    return np.clip(np.round(weights / scale), -127, 127) * scale


def expected_output(layer: keras.layers.Layer, error: np.ndarray, mean_input: np.ndarray) -> np.ndarray:
    """Mean over positions of ``layer(mean_input)`` computed with ``error`` as its kernel: by linearity, the
    expected change of the layer's output when its (folded) kernel moves by ``error``."""
    x = mean_input[None]
    if isinstance(layer, keras.layers.Dense):
        return (x.reshape(1, -1) @ error).reshape(-1)
    padding = layer.padding.upper()
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        y = tf.nn.depthwise_conv2d(x, error, strides=(1, *layer.strides, 1), padding=padding)
    else:
        y = tf.nn.conv2d(x, error, strides=layer.strides, padding=padding)
    return y.numpy().mean(axis=(0, 1, 2))


def set_kernel_and_shift_bias(
    layer: keras.layers.Layer,
    bn: keras.layers.BatchNormalization | None,
    shift: np.ndarray,
    kernel: np.ndarray | None = None,
) -> None:
    """Subtract ``shift`` from the layer's folded bias (its batch norm's beta, else its own bias, if any) and,
    with ``kernel``, replace its Keras kernel. The folded bias is ``beta - mean * factor``: beta takes the shift."""
    weights = layer.get_weights()
    if bn is not None:
        gamma, beta, mean, var = bn.get_weights()
        bn.set_weights([gamma, beta - shift, mean, var])
    elif layer.use_bias:
        weights[1] = weights[1] - shift
    if kernel is not None:
        weights[0] = kernel.astype(np.float32)
    if kernel is not None or (bn is None and layer.use_bias):
        layer.set_weights(weights)
