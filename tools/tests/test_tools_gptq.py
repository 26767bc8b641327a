"""GPTQ weight rounding: better layer outputs than nearest rounding, on the converter's own int8 grid.

Uses the small MobileNetV2-like network of ``test_tools_bias_correction`` (same layer types and batch-norm
folding); the full model's figures are in docs/report.md.
"""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow", reason="the training tools need TensorFlow (pip install -e ./tools)")
keras = pytest.importorskip("keras")

from skinedge_tools.gptq import _gptq_rows, gptq_round_int8  # noqa: E402
from skinedge_tools.int8_grid import folded_weights, int8_per_channel  # noqa: E402
from skinedge_tools.quantize import to_tflite  # noqa: E402
from test_tools_bias_correction import _images, _int8_weights_by_shape, _interpreter, _network  # noqa: E402


def _correlated_inputs(n: int, mix: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Inputs with correlated features and a non-zero mean, like post-ReLU6 activations."""
    return np.abs(rng.normal(0, 1, (n, len(mix))) @ mix) + 0.5


def test_gptq_rows_stay_on_the_int8_grid_and_cut_held_out_output_error():
    rng = np.random.default_rng(0)
    k = 48
    w = rng.normal(0, 1, (16, k)) * rng.uniform(0.05, 1, (16, 1))
    mix = rng.normal(0, 1, (k, k)) / np.sqrt(k) + np.eye(k)
    x_cal, x_new = _correlated_inputs(4000, mix, rng), _correlated_inputs(4000, mix, rng)  # different draws
    q = _gptq_rows(w, x_cal.T @ x_cal, damp=0.01)

    steps = q / (np.abs(w).max(axis=1, keepdims=True) / 127)
    assert np.abs(steps - np.round(steps)).max() < 1e-9  # on the grid of the original scales
    assert np.abs(steps).max() <= 127 + 1e-9
    assert np.allclose(np.abs(steps).max(axis=1), 127)  # each row keeps its scale (the converter's)
    nearest = int8_per_channel(w.T, depthwise=False).T

    def err(z):
        return np.linalg.norm((z - w) @ x_new.T)

    assert err(q) < 0.7 * err(nearest), (err(q), err(nearest))


def test_converter_keeps_the_integers_gptq_chose():
    model = _network()
    original = [folded_weights(model.get_layer(n), model.get_layer(n + "_bn")) for n in ("conv", "dw")]
    gptq_round_int8(model, _images(32, seed=1))
    conv, dw = (folded_weights(model.get_layer(n), model.get_layer(n + "_bn")) for n in ("conv", "dw"))
    weights = _int8_weights_by_shape(_interpreter(to_tflite(model, _images(16, seed=1))))
    for shape, chosen, before, depthwise in (
        ((16, 3, 3, 3), conv, original[0], False),
        ((1, 3, 3, 16), dw, original[1], True),
    ):
        # The chosen weights are their own int8 rounding, and the converted file holds exactly them.
        assert np.allclose(int8_per_channel(chosen, depthwise), chosen, rtol=0, atol=1e-6 * np.abs(chosen).max())
        actual = weights[shape]
        assert np.abs(actual - chosen.transpose(3, 0, 1, 2)).max() <= 1e-5 * np.abs(chosen).max(), shape
        # ...and they are not simply nearest rounding (else this test would prove nothing).
        assert not np.allclose(chosen, int8_per_channel(before, depthwise)), shape


def test_depth_multiplier_and_layers_without_batch_norm():
    """Layouts MobileNetV2 does not use: a depthwise multiplier of 2, and a conv with its own bias."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((12, 12, 3))
    x = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", use_bias=False, name="dw2")(inputs)
    x = keras.layers.BatchNormalization(name="dw2_bn")(x)
    x = keras.layers.Conv2D(4, 1, use_bias=True, name="biased")(x)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    bias_before = model.get_layer("biased").get_weights()[1].copy()
    images = np.random.default_rng(0).uniform(0, 1, (16, 12, 12, 3)).astype(np.float32)
    report = gptq_round_int8(model, images)

    assert [r.layer for r in report] == ["dw2", "biased"]
    assert all(r.gptq <= r.nearest + 1e-12 for r in report)
    dw = folded_weights(model.get_layer("dw2"), model.get_layer("dw2_bn"))
    conv = folded_weights(model.get_layer("biased"), None)
    assert np.allclose(int8_per_channel(dw, True), dw, rtol=0, atol=1e-6 * np.abs(dw).max())
    assert np.allclose(int8_per_channel(conv, False), conv, rtol=0, atol=1e-6 * np.abs(conv).max())
    assert not np.array_equal(model.get_layer("biased").get_weights()[1], bias_before)  # the mean went here


def _patch_moments(x: np.ndarray, k: int, stride: int, padding: str, depthwise: bool) -> np.ndarray:
    """``sum p pᵀ`` over every k x k patch, by explicit padding and loops in float64 (independent of gptq)."""
    x = x.astype(np.float64)
    if padding == "same":
        pad = [max((-(-s // stride) - 1) * stride + k - s, 0) for s in x.shape[1:3]]
        x = np.pad(x, ((0, 0), (pad[0] // 2, pad[0] - pad[0] // 2), (pad[1] // 2, pad[1] - pad[1] // 2), (0, 0)))
    rows = []
    for i in range(0, x.shape[1] - k + 1, stride):
        for j in range(0, x.shape[2] - k + 1, stride):
            rows.append(x[:, i : i + k, j : j + k, :].reshape(len(x), k * k, -1))  # (B, taps, C)
    p = np.concatenate(rows)  # (positions, taps, C)
    if depthwise:
        return np.einsum("ntc,nsc->cts", p, p)
    flat = p.reshape(len(p), -1)
    return (flat.T @ flat)[None]


@pytest.mark.parametrize(
    "make, k, stride, padding, depthwise",
    [
        (lambda: keras.layers.Conv2D(4, 1), 1, 1, "valid", False),  # the reshape-only path
        (lambda: keras.layers.Conv2D(4, 3, strides=2, padding="same"), 3, 2, "same", False),
        (lambda: keras.layers.DepthwiseConv2D(3, padding="same"), 3, 1, "same", True),  # the shifted-views path
        (lambda: keras.layers.DepthwiseConv2D(3, strides=2), 3, 2, "valid", True),
    ],
)
def test_input_moments_match_patches_computed_by_hand(make, k, stride, padding, depthwise):
    from skinedge_tools.gptq import _moment

    x = np.random.default_rng(3).uniform(0, 6, (2, 9, 7, 5)).astype(np.float32)
    layer = make()
    layer.build(x.shape)
    got = _moment(layer, tf.constant(x)).numpy()
    want = _patch_moments(x, k, stride, padding, depthwise)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


def test_statistics_grouped_within_larger_forward_batches_are_the_same_sums():
    """GPTQ sums moments over 8 images at a time but runs the network on larger batches: the groups, and so
    the sums, must be the ones an 8-image forward pass gives (equal within float32 noise on any CPU)."""
    from skinedge_tools.int8_grid import all_layers
    from skinedge_tools.layer_inputs import sum_over_layer_inputs

    model = _network()
    layers = [layer for layer in all_layers(model) if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))]
    images = _images(20, 0)
    sizes: list[int] = []

    def reduce(layer, x):
        sizes.append(len(x))
        return x.sum(axis=0, dtype=np.float64), (x.astype(np.float64) ** 2).sum()

    small = sum_over_layer_inputs(model, layers, images, 8, reduce)
    assert sizes == [8] * len(layers) + [8] * len(layers) + [4] * len(layers)
    sizes.clear()
    large = sum_over_layer_inputs(model, layers, images, 16, reduce, group_size=8)
    assert sizes == [8] * len(layers) + [8] * len(layers) + [4] * len(layers)  # the same groups, in order
    for a, b in zip(small, large, strict=True):
        np.testing.assert_allclose(a[0], b[0], rtol=1e-6)
        np.testing.assert_allclose(a[1], b[1], rtol=1e-6)
    with pytest.raises(ValueError, match="multiple"):
        sum_over_layer_inputs(model, layers, images, 12, reduce, group_size=8)
