"""Class-activation map outputs added to converted graphs (``tflite_edit`` + ``class_maps``).

A small Keras network with the shipped model's shape (stride-2 convs, global average pooling, dense head)
is converted here; the known answers come from Keras itself: its feature maps times its dense weights.
"""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow", reason="the training tools need TensorFlow (pip install -e ./tools)")
keras = pytest.importorskip("keras")

from skinedge_tools.class_maps import fit_fine_head  # noqa: E402
from skinedge_tools.quantize import to_tflite  # noqa: E402
from skinedge_tools.tflite_edit import (  # noqa: E402
    CLASS_MAPS,
    CLASS_MAPS_FINE,
    add_class_activation_maps,
    find_classifier_head,
)

from skinedge.backend import create_interpreter, delegate_status, run_on_images  # noqa: E402


@pytest.fixture(scope="module")
def net():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu6")(x)
    fine = keras.layers.Conv2D(12, 1, activation="relu6", name="fine")(x)  # 16x16: input of the last stride-2 op
    feats = keras.layers.DepthwiseConv2D(3, strides=2, padding="same", activation="relu6", name="feats")(fine)
    pooled = keras.layers.GlobalAveragePooling2D()(feats)
    logits = keras.layers.Dense(4, name="head")(pooled)
    model = keras.Model(inputs, logits)
    w, _ = model.get_layer("head").get_weights()
    model.get_layer("head").set_weights([w, np.array([0.5, -0.25, 0.0, 1.0], dtype=np.float32)])  # a real bias
    images = np.random.default_rng(0).integers(0, 256, (24, 32, 32, 3)).astype(np.float32)
    probe = keras.Model(inputs, [model.get_layer("fine").output, model.get_layer("feats").output])
    return model, probe, images


def _run(flat: bytes, images: np.ndarray) -> dict[str, np.ndarray]:
    return run_on_images(create_interpreter(flat, num_threads=1)[0], images)


def test_float_graph_maps_are_the_keras_head_at_every_position(net):
    model, probe, images = net
    flat = to_tflite(model)
    head = find_classifier_head(flat)
    w, b = model.get_layer("head").get_weights()
    np.testing.assert_allclose(head.weights, w.T, atol=1e-6)
    np.testing.assert_allclose(head.bias, b, atol=1e-6)
    fine_w = np.random.default_rng(1).normal(size=(4, 12))
    fine_b = np.array([0.1, -0.2, 0.3, 0.0])
    before = _run(flat, images)
    after = _run(add_class_activation_maps(flat, fine_w, fine_b), images)
    fine, feats = (np.asarray(a, dtype=np.float64) for a in probe.predict(images, verbose=0))
    np.testing.assert_allclose(after[CLASS_MAPS], feats @ w + b, atol=1e-4)
    np.testing.assert_allclose(after[CLASS_MAPS_FINE], fine @ fine_w.T + fine_b, atol=1e-4)
    (logits_name,) = set(before)
    np.testing.assert_array_equal(after[logits_name], before[logits_name])  # the scores are untouched
    np.testing.assert_allclose(after[CLASS_MAPS].mean(axis=(1, 2)), before[logits_name], atol=1e-4)


def test_int8_graph_keeps_its_scores_and_stays_delegated(net):
    model, probe, images = net
    flat = to_tflite(model, images)
    fine_head = fit_fine_head(flat, images)
    edited = add_class_activation_maps(flat, fine_head.weights, fine_head.bias)
    before, after = _run(flat, images), _run(edited, images)
    (logits_name,) = set(before)
    np.testing.assert_array_equal(after[logits_name], before[logits_name])
    interp, _ = create_interpreter(edited, num_threads=1)
    assert delegate_status(interp).partitions == 1  # int8 body and float map tails in one XNNPACK partition
    step = interp.get_output_details()[0]["quantization"][0]
    # The int8 head at each position, averaged, is the int8 logits up to a few rounding steps.
    np.testing.assert_allclose(after[CLASS_MAPS].mean(axis=(1, 2)), before[logits_name], atol=4 * step)
    assert after[CLASS_MAPS_FINE].shape[1:3] == (16, 16) and after[CLASS_MAPS].shape[1:3] == (8, 8)


def test_fine_head_is_the_least_squares_fit_as_ridge_vanishes(net):
    model, probe, images = net
    flat = to_tflite(model)
    head = fit_fine_head(flat, images, ridge=1e-9)
    fine, _ = probe.predict(images, verbose=0)
    x = np.asarray(fine, dtype=np.float64).mean(axis=(1, 2))
    y = model.predict(images, verbose=0).astype(np.float64)
    design = np.hstack([x, np.ones((len(x), 1))])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    np.testing.assert_allclose(x @ head.weights.T + head.bias, design @ coef, atol=1e-3)
    sse, sst = ((design @ coef - y) ** 2).sum(), ((y - y.mean(0)) ** 2).sum()
    assert head.fit_r2 == pytest.approx(1 - sse / sst, abs=1e-4) and head.images == len(images)


def test_a_graph_without_a_pooled_head_is_refused():
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(2, 1)(inputs))
    with pytest.raises(ValueError, match="not a pooled-CNN classifier"):
        find_classifier_head(to_tflite(model))
