"""The calibrated softmax tail and the standard TFLITE_METADATA written by the build tools.

Runs on a small int8 network converted here (seconds). MediaPipe's own reading of the shipped model is
checked by ``benchmarks/interop_mediapipe.py`` (MediaPipe is too heavy a test dependency).
"""

from __future__ import annotations

import flatbuffers
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow", reason="the training tools need TensorFlow (pip install -e ./tools)")
keras = pytest.importorskip("keras")

from skinedge_tools.quantize import to_tflite  # noqa: E402
from skinedge_tools.tflite_edit import (  # noqa: E402
    STANDARD_METADATA_NAME,
    add_standard_metadata,
    append_calibrated_softmax,
    standard_metadata,
)

from skinedge.backend import delegate_status  # noqa: E402


@pytest.fixture(scope="module")
def int8_logits_model() -> tuple[bytes, np.ndarray]:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu6")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(4)(x))
    images = np.random.default_rng(0).integers(0, 256, (12, 32, 32, 3)).astype(np.float32)
    return to_tflite(model, images), images.astype(np.uint8)


def test_softmax_tail_outputs_calibrated_float_probabilities(int8_logits_model, run_tflite):
    flat, images = int8_logits_model
    logits, interp = run_tflite(flat, images)
    assert interp.get_output_details()[0]["dtype"] == np.int8
    temperature = 0.7
    probs, interp2 = run_tflite(append_calibrated_softmax(flat, temperature), images)
    z = logits / temperature
    expected = np.exp(z - z.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    assert interp2.get_output_details()[0]["dtype"] == np.float32
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    assert np.array_equal(probs.argmax(1), logits.argmax(1))
    assert delegate_status(interp2).partitions >= 1  # the int8 body still goes to XNNPACK


def _table(buf: bytes, pos: int) -> flatbuffers.table.Table:
    return flatbuffers.table.Table(buf, pos)


def _field(t: flatbuffers.table.Table, slot: int) -> int:
    return t.Offset(4 + 2 * slot)


def _string(t, slot: int) -> str:
    off = _field(t, slot)
    return t.String(off + t.Pos).decode() if off else ""


def _vector_tables(t, slot: int) -> list[flatbuffers.table.Table]:
    off = _field(t, slot)
    if not off:
        return []
    start = t.Vector(off)
    return [_table(t.Bytes, t.Indirect(start + 4 * i)) for i in range(t.VectorLen(off))]


def _sub_table(t, slot: int) -> flatbuffers.table.Table:
    return _table(t.Bytes, t.Indirect(_field(t, slot) + t.Pos))


def _byte(t, slot: int) -> int:
    off = _field(t, slot)
    return t.Get(flatbuffers.number_types.Int8Flags, off + t.Pos) if off else 0


@pytest.mark.parametrize("float_input", [False, True])
def test_standard_metadata_is_stored_and_follows_the_schema(int8_logits_model, float_input, run_tflite):
    """Field slots as in TFLite's metadata_schema.fbs (ModelMetadata, SubGraphMetadata, TensorMetadata)."""
    flat, images = int8_logits_model
    meta = standard_metadata(
        name="m",
        description="d",
        version="v1",
        author="a",
        license_text="l",
        input_size=(32, 32),
        float_input=float_input,
        labels_file="labels.txt",
    )
    edited = add_standard_metadata(flat, meta)
    np.testing.assert_array_equal(run_tflite(edited, images)[0], run_tflite(flat, images)[0])  # graph untouched

    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.Model.GetRootAsModel(edited, 0)
    entries = {model.Metadata(i).Name().decode(): model.Metadata(i).Buffer() for i in range(model.MetadataLength())}
    stored = model.Buffers(entries[STANDARD_METADATA_NAME]).DataAsNumpy().tobytes()
    assert stored == meta and meta[4:8] == b"M001"

    root = _table(meta, flatbuffers.encode.Get(flatbuffers.packer.uoffset, meta, 0))
    assert [_string(root, s) for s in (0, 2, 4, 5, 7)] == ["m", "v1", "a", "l", "1.0.0"]
    (subgraph,) = _vector_tables(root, 3)
    (tensor_in,) = _vector_tables(subgraph, 2)
    (tensor_out,) = _vector_tables(subgraph, 3)
    content = _sub_table(tensor_in, 3)
    assert _byte(content, 0) == 2  # ContentProperties.ImageProperties
    assert _byte(_sub_table(content, 1), 0) == 1  # ColorSpaceType.RGB
    units = _vector_tables(tensor_in, 4)
    assert len(units) == (1 if float_input else 0)  # NormalizationOptions only for float inputs
    (label_file,) = _vector_tables(tensor_out, 6)
    assert _string(label_file, 0) == "labels.txt" and _byte(label_file, 2) == 2  # TENSOR_AXIS_LABELS
