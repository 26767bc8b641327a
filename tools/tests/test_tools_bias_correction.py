"""Bias correction predicts the converter's int8 weights exactly, and removes the error it targets.

A small conv -> BN -> ReLU6 -> depthwise -> BN -> ReLU6 -> pool -> dense network with ImageNet-like
batch-norm statistics stands in for MobileNetV2 (same layer types, same folding), so this runs in
seconds; the full model's figures are in docs/report.md.
"""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow", reason="the training tools need TensorFlow (pip install -e ./tools)")
keras = pytest.importorskip("keras")

from skinedge_tools.bias_correction import correct_int8_bias  # noqa: E402
from skinedge_tools.int8_grid import folded_weights, int8_per_channel  # noqa: E402
from skinedge_tools.quantize import to_tflite  # noqa: E402


def _network(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    inputs = keras.Input((24, 24, 3), name="pixels")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", use_bias=False, name="conv")(x)
    x = keras.layers.BatchNormalization(name="conv_bn")(x)
    x = keras.layers.ReLU(6.0)(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(x)
    x = keras.layers.BatchNormalization(name="dw_bn")(x)
    x = keras.layers.ReLU(6.0)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(5, name="logits")(x)
    model = keras.Model(inputs, outputs)
    for name, channels in (("conv_bn", 16), ("dw_bn", 16)):
        # Wide gains, offsets that keep ReLU6 mostly active: the regime where rounding error is biased.
        gamma = rng.uniform(0.5, 4.0, channels)
        beta = rng.uniform(1.0, 3.0, channels)
        mean = rng.normal(0, 0.2, channels)
        var = rng.uniform(0.05, 1.0, channels)
        model.get_layer(name).set_weights([gamma, beta, mean, var])
    return model


def _images(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.uniform(60, 200, (n, 1, 1, 3))
    return np.clip(base + rng.normal(0, 25, (n, 24, 24, 3)), 0, 255).astype(np.float32)


def _interpreter(flat: bytes) -> tf.lite.Interpreter:
    interp = tf.lite.Interpreter(model_content=flat)
    interp.allocate_tensors()
    return interp


def _int8_weights_by_shape(interp: tf.lite.Interpreter) -> dict[tuple, np.ndarray]:
    """Dequantized int8 constant tensors of the converted model, keyed by their TFLite shape."""
    found = {}
    for d in interp.get_tensor_details():
        q = d["quantization_parameters"]
        if d["dtype"] != np.int8 or len(q["scales"]) < 2:
            continue  # per-channel weights only (activations are per-tensor)
        values = interp.get_tensor(d["index"]).astype(np.float64)
        shape = [1] * values.ndim
        shape[q["quantized_dimension"]] = -1
        found[tuple(values.shape)] = values * q["scales"].reshape(shape)
    return found


def test_predicted_int8_weights_match_the_converter():
    model = _network()
    flat = to_tflite(model, _images(16, seed=1))
    weights = _int8_weights_by_shape(_interpreter(flat))
    conv, dw, dense = (model.get_layer(n) for n in ("conv", "dw", "logits"))
    cases = {
        # TFLite layouts: conv OHWI, depthwise 1HWC, fully connected (out, in).
        (16, 3, 3, 3): int8_per_channel(folded_weights(conv, model.get_layer("conv_bn")), False).transpose(3, 0, 1, 2),
        (1, 3, 3, 16): int8_per_channel(folded_weights(dw, model.get_layer("dw_bn")), True).transpose(3, 0, 1, 2),
        (5, 16): int8_per_channel(folded_weights(dense, None), False).T,
    }
    for shape, predicted in cases.items():
        actual = weights[shape]
        step = np.abs(predicted).max(axis=tuple(range(1, predicted.ndim)), keepdims=True) / 127
        assert np.abs(actual - predicted).max() <= 1e-4 * step.max(), shape


def test_bias_correction_removes_the_mean_int8_error_and_keeps_the_float_weights(run_tflite):
    calibration, held_out = _images(64, seed=2), _images(64, seed=3)
    plain, corrected = _network(), _network()
    kernels_before = [w.copy() for w in corrected.get_layer("dw").get_weights()]
    changes = correct_int8_bias(corrected, calibration)

    assert {c.layer for c in changes} == {"conv", "dw", "logits"}
    assert all(np.array_equal(a, b) for a, b in zip(kernels_before, corrected.get_layer("dw").get_weights()))
    reference = plain.predict(held_out, verbose=0)

    def mean_abs_bias(model: keras.Model) -> float:
        outputs, _ = run_tflite(to_tflite(model, calibration), held_out)
        return float(np.abs((outputs - reference).mean(axis=0)).mean())

    before, after = mean_abs_bias(plain), mean_abs_bias(corrected)
    assert after < 0.5 * before, (before, after)
