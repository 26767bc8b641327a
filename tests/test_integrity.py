"""Integrity: ``skinedge selftest`` on a model packed with test vectors, and damaged or inconsistent models
refused through the command a board operator runs.

The model under test is the reference MobileNetV2 packed here with skinedge metadata and self-test
vectors whose expected raw outputs come from the interpreter itself (what the build tools record).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from skinedge.cli import main
from skinedge.metadata import ModelMetadata, pack, read_labels_file, unpack
from skinedge.preprocess import PreprocessSpec, prepare
from skinedge.selftest import VECTORS_NAME, encode_vectors

IMAGES = ("cat.bmp", "hot_dog.jpg", "grace_hopper.bmp")


@pytest.fixture(scope="module")
def bare_flatbuffer(quant_model: Path) -> bytes:
    return unpack(quant_model.read_bytes(), str(quant_model)).flatbuffer


@pytest.fixture(scope="module")
def metadata(imagenet_labels: Path) -> ModelMetadata:
    labels = tuple(f"{i}:{name}" for i, name in enumerate(read_labels_file(imagenet_labels)))  # unique
    return ModelMetadata(labels=labels, preprocess=PreprocessSpec(jpeg_draft=False), output_kind="probabilities",
                         input_shape=(1, 224, 224, 3), input_dtype="uint8", num_outputs=len(labels),
                         name="reference+vectors", description="packed by tests/test_integrity.py")


@pytest.fixture(scope="module")
def vectors(bare_flatbuffer: bytes, reference_dir: Path) -> tuple[list[np.ndarray], list[np.ndarray], float]:
    """Inputs and the raw (quantized) outputs the interpreter gives for them: what a build records."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=bare_flatbuffer, num_threads=1)
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    inputs, outputs = [], []
    for name in IMAGES:
        x = prepare(reference_dir / "images" / name, PreprocessSpec(jpeg_draft=False))
        interpreter.set_tensor(inp["index"], x[np.newaxis])
        interpreter.invoke()
        inputs.append(x)
        outputs.append(interpreter.get_tensor(out["index"]).reshape(-1).astype(np.int64))
    return inputs, outputs, float(out["quantization"][0])


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("integrity")


@pytest.fixture(scope="module")
def packed_with_vectors(model_dir: Path, bare_flatbuffer: bytes, metadata: ModelMetadata, vectors) -> Path:
    inputs, outputs, scale = vectors
    path = model_dir / "with_vectors.tflite"
    path.write_bytes(pack(bare_flatbuffer, metadata, encode_vectors(inputs, outputs, scale)))
    return path


def _selftest(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["selftest", *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def test_selftest_passes_on_intact_model(packed_with_vectors: Path) -> None:
    code, out, err = _selftest("--model", str(packed_with_vectors), "--threads", "1")
    assert code == 0, out + err
    lines = out.strip().splitlines()
    assert len(lines) == len(IMAGES) + 1
    for i, line in enumerate(lines[:-1]):
        assert line.startswith(f"selftest/{i}.png: ") and line.endswith("PASS"), line
    assert "max difference 0 quantization steps" in lines[0]
    assert lines[-1].startswith(f"selftest PASS: {len(IMAGES)}/{len(IMAGES)} vectors match")


def test_selftest_fails_when_outputs_differ(model_dir: Path, bare_flatbuffer: bytes, metadata: ModelMetadata,
                                            vectors) -> None:
    """A board whose kernels compute something else: simulated by recording different expected outputs."""
    inputs, outputs, scale = vectors
    wrong = [o.copy() for o in outputs]
    wrong[1][int(np.argmax(wrong[1]))] -= 40  # vector 1: off by 40 steps, and its top-1 changes
    wrong[2][0] += 2  # vector 2: off by two steps, same top-1
    path = model_dir / "wrong_vectors.tflite"
    path.write_bytes(pack(bare_flatbuffer, metadata, encode_vectors(inputs, wrong, scale)))
    code, out, _ = _selftest("--model", str(path))
    assert code == 1
    lines = out.strip().splitlines()
    assert lines[0].endswith("PASS")
    assert lines[1].endswith("FAIL") and "max difference 40 quantization steps" in lines[1]
    assert lines[2].endswith("FAIL") and "max difference 2 quantization steps" in lines[2]
    assert lines[-1].startswith(f"selftest FAIL: 1/{len(IMAGES)} vectors match")


def test_selftest_without_vectors_says_so(model_dir: Path, bare_flatbuffer: bytes, metadata: ModelMetadata) -> None:
    path = model_dir / "no_vectors.tflite"
    path.write_bytes(pack(bare_flatbuffer, metadata))
    code, out, err = _selftest("--model", str(path))
    assert code == 2
    assert out == ""
    assert "carries no self-test vectors" in err and VECTORS_NAME in err


def test_selftest_on_third_party_model_without_metadata(quant_model: Path) -> None:
    code, _, err = _selftest("--model", str(quant_model))
    assert code == 2 and "carries no self-test vectors" in err


def test_selftest_malformed_vectors_are_an_error(model_dir: Path, bare_flatbuffer: bytes,
                                                 metadata: ModelMetadata) -> None:
    path = model_dir / "bad_vectors.tflite"
    bogus = {VECTORS_NAME: json.dumps({"output_scale": 1, "vectors": [{"input": "selftest/missing.png"}]}).encode()}
    path.write_bytes(pack(bare_flatbuffer, metadata, bogus))
    code, _, err = _selftest("--model", str(path))
    assert code == 2 and "malformed self-test vectors" in err


def test_selftest_refuses_damaged_model(model_dir: Path, packed_with_vectors: Path) -> None:
    """One flipped bit in the weights: the recorded SHA-256 catches it before the interpreter runs."""
    data = bytearray(packed_with_vectors.read_bytes())
    data[len(data) // 3] ^= 0x10
    path = model_dir / "damaged.tflite"
    path.write_bytes(bytes(data))
    code, out, err = _selftest("--model", str(path))
    assert code == 2  # an unusable model: the same status as predict and info
    assert "SHA-256 does not match" in err
    assert "selftest FAIL: the model could not be loaded" in out


def test_selftest_refuses_model_changed_beside_its_sidecar(model_dir: Path, packed_with_vectors: Path) -> None:
    path = model_dir / "sidecar.tflite"
    path.write_bytes(packed_with_vectors.read_bytes())
    sidecar = path.with_name(path.name + ".sha256")
    sidecar.write_text(hashlib.sha256(b"another model").hexdigest() + "  sidecar.tflite\n")
    code, _, err = _selftest("--model", str(path))
    assert code == 2 and "does not match the recorded" in err


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"labels": tuple(f"class{i}" for i in range(10)), "num_outputs": 10}, "10 labels for 1001 model outputs"),
        ({"input_shape": (1, 192, 192, 3)}, "metadata expects input [1, 192, 192, 3], model has [1, 224, 224, 3]"),
        ({"input_dtype": "int8"}, "metadata expects int8 input, model has uint8"),
        ({"input_dtype": "float32"}, "metadata expects float32 input, model has uint8"),
        ({"preprocess": PreprocessSpec(height=192, width=192)},
         "preprocessing makes 192x192 images, input tensor is 224x224"),
    ],
    ids=["label-count", "input-shape", "dtype-int8", "dtype-float32", "spec-size"],
)
def test_metadata_contradicting_tensors_refused_with_reason(
    model_dir: Path, bare_flatbuffer: bytes, metadata: ModelMetadata, change: dict, reason: str
) -> None:
    path = model_dir / f"contradicting-{abs(hash(reason))}.tflite"
    path.write_bytes(pack(bare_flatbuffer, replace(metadata, **change)))
    code, _, err = _selftest("--model", str(path))
    assert code == 2
    assert reason in err, err


def test_selftest_console_script(packed_with_vectors: Path) -> None:
    """The installed entry point, in a fresh process, as a board runs it."""
    exe = Path(sys.executable).with_name("skinedge")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "skinedge.cli"]
    proc = subprocess.run([*cmd, "selftest", "--model", str(packed_with_vectors)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().splitlines()[-1].startswith("selftest PASS")


def test_packed_model_truncated_inside_its_archive_refused(model_dir: Path, packed_with_vectors: Path) -> None:
    """Model campaign: 47 of 136 truncations of a packed model's archive loaded silently as a model without
    metadata (numeric labels, default preprocessing) when the cut removed the ``skinedge.json`` entry too."""
    import io
    import zipfile

    from skinedge import Classifier
    from skinedge.errors import MetadataError

    data = packed_with_vectors.read_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        offsets = sorted(i.header_offset for i in zf.infolist())
    cuts = [offsets[0] + 40, offsets[0] + 200, offsets[1] - 1, offsets[1] + 10, len(data) - 30]
    for cut in cuts:
        path = model_dir / f"cut-{cut}.tflite"
        path.write_bytes(data[:cut])
        with pytest.raises(MetadataError, match="damaged metadata archive"):
            Classifier(path)


def test_selftest_on_bundled_model() -> None:
    """``skinedge selftest`` with no --model: the shipped int8 model and the vectors its build recorded."""
    from skinedge.errors import ModelError
    from skinedge.model_io import bundled_model_path

    try:
        bundled_model_path()
    except ModelError:
        pytest.skip("the bundled model is not built in this checkout")
    code, out, err = _selftest()
    assert code == 0, out + err
    assert out.strip().splitlines()[-1].startswith("selftest PASS")


def test_selftest_on_float_outputs_counts_recorded_steps(tmp_path: Path) -> None:
    """The bundled model outputs float32 probabilities: differences are counted in the step it records
    (how far one int8 logit step moves a probability), so a small drift fails as it would for int8."""
    from skinedge.model_io import bundled_model_path

    packed = unpack(bundled_model_path().read_bytes(), "bundled")
    spec = json.loads(packed.files[VECTORS_NAME])
    step = spec["output_scale"]
    assert 0 < step < 0.05
    extra = {k: v for k, v in packed.files.items() if k.startswith("selftest/")}
    drifted = json.loads(json.dumps(spec))
    drifted["vectors"][0]["raw_output"][0] += 3 * step  # vector 0: three steps off, same top-1
    extra[VECTORS_NAME] = json.dumps(drifted).encode()
    path = tmp_path / "drifted.tflite"
    path.write_bytes(pack(packed.flatbuffer, packed.metadata, extra))
    code, out, _ = _selftest("--model", str(path), "--threads", "1")
    lines = out.strip().splitlines()
    assert code == 1, out
    assert lines[0].endswith("FAIL") and "max difference 3 quantization steps" in lines[0]
    assert lines[1].endswith("PASS")
