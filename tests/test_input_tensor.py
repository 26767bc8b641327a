"""One path from pixels to the input tensor: the spec's mean/std (spec v2, and v1 models' old location), the
conversion per input type, the interpreter helpers, the public interpreter accessor and the one folder scan.

Expected tensors and scores are computed here, independently: numpy arithmetic and a bare LiteRT interpreter.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter
from bundled import bundled

from skinedge import Classifier
from skinedge.backend import dequantize, invoke_once
from skinedge.errors import MetadataError
from skinedge.files import image_files
from skinedge.metadata import LABELS_NAME, METADATA_NAME, ModelMetadata, pack, unpack
from skinedge.preprocess import SPEC_VERSION, PreprocessSpec, to_input_tensor

VALID = Path(__file__).parent / "data" / "valid_models"
FLOAT_MODEL = VALID / "image_float32.tflite"  # 1x16x16x3 float32 in, 5 float32 logits out, no metadata
LABELS = ("a", "b", "c", "d", "e")


def _pixels(seed: int = 0, size: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def _bare_logits(model: Path, x: np.ndarray) -> np.ndarray:
    """The float model's output for input tensor ``x``, from a plain LiteRT interpreter."""
    it = Interpreter(model_path=str(model), num_threads=1)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"]).reshape(-1).astype(np.float64)


def _v1_packed(flatbuffer: bytes, mean: float, std: float) -> bytes:
    """The float model as a v1 packer wrote it: mean/std in "input", a preprocessing spec without them."""
    d = ModelMetadata(labels=LABELS, preprocess=PreprocessSpec(height=16, width=16, jpeg_draft=False)).to_dict()
    d["preprocess"] = {k: v for k, v in d["preprocess"].items() if k not in ("mean", "std")} | {"version": 1}
    d["input"] |= {"mean": mean, "std": std}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr(METADATA_NAME, json.dumps(d))
        zf.writestr(LABELS_NAME, "\n".join(LABELS) + "\n")
    return flatbuffer + buf.getvalue()


# -- the conversion, per input type --------------------------------------------------------------------


def test_quantized_inputs_take_pixel_codes_whatever_the_spec_says() -> None:
    codes = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)
    spec = PreprocessSpec(height=16, width=16, mean=127.5, std=127.5)  # ignored by quantized inputs
    u8 = to_input_tensor(codes, spec, np.uint8)
    assert u8.dtype == np.uint8 and u8.shape == (1, 16, 16, 3) and np.array_equal(u8[0], codes)
    i8 = to_input_tensor(codes, spec, np.int8)
    assert i8.dtype == np.int8 and i8.shape == (1, 16, 16, 3)
    assert np.array_equal(i8[0, :, :, 0].reshape(-1), np.arange(-128, 128))  # pixel - 128, every code


def test_float_inputs_take_the_spec_normalisation_per_channel() -> None:
    pixels = _pixels(1)
    mean, std = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)  # timm's ImageNet config, on 0..255
    x = to_input_tensor(pixels, PreprocessSpec(height=16, width=16, mean=mean, std=std), np.float32)
    expected = (pixels.astype(np.float64) - np.array(mean)) / np.array(std)
    assert x.dtype == np.float32 and x.shape == (1, 16, 16, 3)
    np.testing.assert_allclose(x[0], expected, rtol=0, atol=1e-5)
    scalar = to_input_tensor(pixels, PreprocessSpec(height=16, width=16, mean=127.5, std=127.5), np.float32)
    np.testing.assert_allclose(scalar[0], pixels / 127.5 - 1.0, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="float16"):
        to_input_tensor(pixels, PreprocessSpec(), np.float16)


# -- where mean and std are stored -----------------------------------------------------------------------


def test_packer_writes_mean_std_in_the_v2_spec_only() -> None:
    spec = PreprocessSpec(height=16, width=16, jpeg_draft=False, mean=(1.0, 2.0, 3.0), std=64.0)
    data = pack(FLOAT_MODEL.read_bytes(), ModelMetadata(labels=LABELS, preprocess=spec))
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        d = json.loads(zf.read(METADATA_NAME))
    assert d["preprocess"]["version"] == SPEC_VERSION == 2
    assert d["preprocess"]["mean"] == [1.0, 2.0, 3.0] and d["preprocess"]["std"] == 64.0
    assert "mean" not in d["input"] and "std" not in d["input"]
    assert unpack(data, "m.tflite").metadata.preprocess == spec


def test_v1_metadata_reads_mean_std_from_its_input_section() -> None:
    md = unpack(_v1_packed(FLOAT_MODEL.read_bytes(), 100.0, 50.0), "old.tflite").metadata
    assert (md.preprocess.mean, md.preprocess.std, md.preprocess.version) == (100.0, 50.0, SPEC_VERSION)
    # Absent in v1: 0 and 1, as v1 runtimes read them.
    d = ModelMetadata(labels=LABELS).to_dict()
    d["preprocess"] = {"version": 1}
    spec = ModelMetadata.from_dict(d).preprocess
    assert (spec.mean, spec.std) == (0.0, 1.0)


def test_v1_spec_may_not_hold_v2_fields_and_bad_std_is_refused() -> None:
    with pytest.raises(MetadataError, match=r"unknown preprocessing fields \['mean'\]"):
        PreprocessSpec.from_dict({"version": 1, "mean": 127.5}, "old.tflite")
    with pytest.raises(MetadataError, match="std must be positive"):
        unpack(_v1_packed(FLOAT_MODEL.read_bytes(), 0.0, 0.0), "old.tflite")


@pytest.mark.parametrize("where", ["v1 input section", "v2 spec"])
def test_classifier_feeds_the_stored_normalisation(tmp_path: Path, where: str) -> None:
    flat = FLOAT_MODEL.read_bytes()
    mean, std = 90.0, 40.0
    if where == "v2 spec":
        spec = PreprocessSpec(height=16, width=16, jpeg_draft=False, mean=mean, std=std)
        data = pack(flat, ModelMetadata(labels=LABELS, preprocess=spec))
    else:
        data = _v1_packed(flat, mean, std)
    path = tmp_path / "m.tflite"
    path.write_bytes(data)
    pixels = _pixels(2)
    expected = _bare_logits(FLOAT_MODEL, ((pixels.astype(np.float32) - mean) / std)[None])
    unnormalised = _bare_logits(FLOAT_MODEL, pixels.astype(np.float32)[None])
    assert np.abs(expected - unnormalised).max() > 1e-3  # the normalisation matters to this model
    with Classifier(path, num_threads=1) as clf:
        assert (clf.spec.mean, clf.spec.std) == (mean, std)
        np.testing.assert_allclose(clf.raw_output(pixels), expected, rtol=0, atol=1e-5)


def test_model_without_metadata_takes_float_inputs_in_minus_one_to_one() -> None:
    pixels = _pixels(3)
    with Classifier(FLOAT_MODEL, num_threads=1) as clf:
        assert (clf.spec.mean, clf.spec.std) == (127.5, 127.5)
        got = clf.raw_output(pixels)
    np.testing.assert_allclose(got, _bare_logits(FLOAT_MODEL, (pixels / 127.5 - 1.0).astype(np.float32)[None]),
                               rtol=0, atol=1e-5)


def test_bundled_v1_models_read_as_mean_zero_std_one() -> None:
    """The paper's MobileNetV2 files (written by the v1 packer, not repacked) keep their meaning."""
    for path in (bundled("mobilenetv2").int8, bundled("mobilenetv2").float32):
        with zipfile.ZipFile(path) as zf:
            stored = json.loads(zf.read(METADATA_NAME))
        assert stored["preprocess"]["version"] == 1 and "mean" not in stored["preprocess"]
        spec = unpack(path.read_bytes(), str(path)).metadata.preprocess
        assert (spec.mean, spec.std) == (stored["input"]["mean"], stored["input"]["std"]) == (0.0, 1.0)


# -- running an interpreter ------------------------------------------------------------------------------


def test_invoke_once_and_dequantize_against_bare_litert() -> None:
    model = VALID / "image_int8_io_uint8.tflite"
    it = Interpreter(model_path=str(model), num_threads=1)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    x = _pixels(4)[None]
    (raw,) = invoke_once(it, [(inp["index"], x)], [out["index"]])
    bare = Interpreter(model_path=str(model), num_threads=1)
    bare.allocate_tensors()
    bare.set_tensor(bare.get_input_details()[0]["index"], x)
    bare.invoke()
    assert np.array_equal(raw, bare.get_tensor(bare.get_output_details()[0]["index"]))
    scale, zero = out["quantization"]
    assert scale > 0 and raw.dtype == np.uint8
    np.testing.assert_allclose(dequantize(raw, out), (raw.astype(np.float64) - zero) * scale, rtol=0, atol=0)
    q = {"quantization": (0.5, 128)}
    assert dequantize(np.array([0, 128, 255], np.uint8), q).tolist() == [-64.0, 0.0, 63.5]
    assert dequantize(np.array([1.25], np.float32), {"quantization": (0.0, 0)}).tolist() == [1.25]


def test_interpreter_property_is_the_one_the_classifier_drives() -> None:
    clf = Classifier(FLOAT_MODEL, num_threads=1)
    pixels = _pixels(5)
    scores = clf.raw_output(pixels)
    it = clf.interpreter
    assert it.get_input_details()[0]["index"] == clf.input_details["index"]
    out = it.get_tensor(clf.output_details["index"]).reshape(-1)  # what the classifier's invoke left there
    np.testing.assert_array_equal(out.astype(np.float64), scores)
    clf.close()
    assert clf.interpreter is None


# -- the one folder scan -----------------------------------------------------------------------------------


def test_image_files_lists_image_suffixes_recursively_in_path_order(tmp_path: Path) -> None:
    for rel in ["b.JPG", "a.png", "notes.txt", "sub/c.jpeg", "sub-x/d.webp", "sub/deeper/e.tiff", "f.jpg.bak"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    (tmp_path / "folder.jpg").mkdir()  # a folder named like an image is not one
    got = [p.relative_to(tmp_path).as_posix() for p in image_files(tmp_path)]
    # Component by component: "sub/..." before "sub-x/..." (a string sort would put "sub-x" first).
    assert got == ["a.png", "b.JPG", "sub/c.jpeg", "sub/deeper/e.tiff", "sub-x/d.webp"]
    assert image_files(tmp_path / "sub" / "deeper") == [tmp_path / "sub" / "deeper" / "e.tiff"]
