"""MSE-chosen activation ranges: the range search itself, and that the chosen ranges reach the int8 graph."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow", reason="the training tools need TensorFlow (pip install -e ./tools)")
keras = pytest.importorskip("keras")

from skinedge_tools.activation_ranges import best_shrink, fake_quant_int8  # noqa: E402
from skinedge_tools.quantize import to_tflite  # noqa: E402


def test_fake_quant_error_is_half_a_step_inside_the_range():
    x = np.random.default_rng(0).uniform(-3, 5, 10_000)
    step = 8 / 255
    assert np.abs(fake_quant_int8(x, -3, 5) - x).max() <= step / 2 + 1e-12


def test_range_search_clips_rare_outliers_and_keeps_dense_ranges():
    rng = np.random.default_rng(0)
    heavy = np.concatenate([rng.normal(0, 1, 100_000), [-40.0, 40.0]])  # a residual stream's shape
    assert best_shrink(heavy, -40.0, 40.0) < 1.0
    uniform = rng.uniform(-1, 1, 100_000)  # every level in use: nothing to gain by clipping
    assert best_shrink(uniform, -1.0, 1.0) == 1.0


def _network() -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((24, 24, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = keras.layers.Conv2D(16, 3, padding="same")(x)  # linear, like MobileNetV2's bottlenecks
    x = keras.layers.Conv2D(16, 1)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(5)(x))


def _images(n: int, seed: int, outliers: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.clip(rng.normal(128, 4, (n, 24, 24, 3)), 0, 255)  # smooth skin-like patches
    x[:outliers, 8:16, 8:16] = rng.choice([0.0, 255.0], size=(outliers, 8, 8, 3))  # rare sharp spots
    return x.astype(np.float32)


def _activation_scales(flat: bytes) -> dict[str, float]:
    interp = tf.lite.Interpreter(model_content=flat)
    return {
        d["name"]: float(d["quantization_parameters"]["scales"][0])
        for d in interp.get_tensor_details()
        if d["dtype"] == np.int8 and len(d["quantization_parameters"]["scales"]) == 1
    }


def test_mse_ranges_reach_the_int8_graph_and_keep_raw_pixel_input(run_tflite):
    """Outlier-stretched activations get finer steps in the converted graph; the output stays as close
    to float as with the observed ranges (the real model's gain is measured by rebuild: docs/report.md)."""
    model = _network()
    calibration, held_out = _images(64, 1, outliers=3), _images(64, 2)
    flat_minmax, flat_mse = to_tflite(model, calibration, "minmax"), to_tflite(model, calibration, "mse")
    before, after = _activation_scales(flat_minmax), _activation_scales(flat_mse)
    assert before.keys() == after.keys()
    assert all(after[k] <= before[k] * (1 + 1e-6) for k in before)
    assert any(after[k] < 0.8 * before[k] for k in before)  # at least one range was shrunk
    reference = model.predict(held_out, verbose=0)
    minmax, _ = run_tflite(flat_minmax, held_out)
    mse, interp = run_tflite(flat_mse, held_out)
    inp = interp.get_input_details()[0]
    assert inp["dtype"] == np.uint8 and inp["quantization"] == (1.0, 0)  # the pixels go in unchanged
    rmse = {k: float(np.sqrt(((v - reference) ** 2).mean())) for k, v in (("minmax", minmax), ("mse", mse))}
    assert rmse["mse"] <= 1.1 * rmse["minmax"], rmse


def test_unknown_range_mode_is_refused():
    with pytest.raises(ValueError, match="activation_ranges"):
        to_tflite(_network(), _images(4, 0), "percentile")
