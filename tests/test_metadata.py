"""Model metadata: packing into a real .tflite, integrity checks, and the runtime obeying what it says."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from skinedge import Classifier
from skinedge.errors import MetadataError, ModelError
from skinedge.metadata import (
    LABELS_NAME,
    METADATA_NAME,
    ModelMetadata,
    pack,
    parse_labels,
    read_labels_file,
    unpack,
)
from skinedge.model_io import read_model
from skinedge.preprocess import PreprocessSpec, prepare

CAT = 286


@pytest.fixture(scope="module")
def bare_flatbuffer(quant_model: Path) -> bytes:
    """The reference model's flatbuffer without its own (TFLite standard) associated-files archive."""
    fb = unpack(quant_model.read_bytes(), str(quant_model)).flatbuffer
    assert fb[4:8] == b"TFL3"
    return fb


@pytest.fixture(scope="module")
def labels(imagenet_labels: Path) -> tuple[str, ...]:
    # ImageNet has two "crane" classes; metadata labels must be unique, so number them.
    return tuple(f"{i}:{name}" for i, name in enumerate(read_labels_file(imagenet_labels)))


@pytest.fixture(scope="module")
def metadata(labels: tuple[str, ...]) -> ModelMetadata:
    return ModelMetadata(
        labels=labels,
        output_kind="probabilities",
        abstain_threshold=0.9,
        input_shape=(1, 224, 224, 3),
        input_dtype="uint8",
        num_outputs=1001,
        name="reference",
        description="MobileNetV2 on ImageNet, packed by the test suite",
        provenance={"source": "google-coral/test_data", "seed": 0},
        metrics={"top1": 0.7},
    )


@pytest.fixture(scope="module")
def packed(bare_flatbuffer: bytes, metadata: ModelMetadata) -> bytes:
    return pack(bare_flatbuffer, metadata)


def _write(tmp_path: Path, data: bytes, name: str = "model.tflite") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _archive(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _metadata_json(md: ModelMetadata, flatbuffer: bytes) -> bytes:
    return json.dumps(replace(md, model_sha256=hashlib.sha256(flatbuffer).hexdigest()).to_dict()).encode()


def _packed_model(tmp_path: Path, flatbuffer: bytes, md: ModelMetadata, name: str = "model.tflite") -> Path:
    return _write(tmp_path, pack(flatbuffer, md), name)


# -- pack / unpack -------------------------------------------------------------------------------


def test_round_trip(packed: bytes, bare_flatbuffer: bytes, metadata: ModelMetadata) -> None:
    assert packed.startswith(bare_flatbuffer)
    out = unpack(packed, "model.tflite")
    assert out.flatbuffer == bare_flatbuffer
    assert out.metadata == replace(metadata, model_sha256=hashlib.sha256(bare_flatbuffer).hexdigest())
    assert out.labels == metadata.labels
    assert set(out.files) == {METADATA_NAME, LABELS_NAME}
    assert parse_labels(out.files[LABELS_NAME].decode()) == metadata.labels
    # Any zip reader finds the archive.
    with zipfile.ZipFile(io.BytesIO(packed)) as zf:
        assert json.loads(zf.read(METADATA_NAME))["labels"] == list(metadata.labels)


def test_extra_files_round_trip(bare_flatbuffer: bytes, metadata: ModelMetadata) -> None:
    extra = {"selftest/0.png": b"\x89PNG fake", "notes.txt": "ünïcode".encode()}
    out = unpack(pack(bare_flatbuffer, metadata, extra), "m")
    for name, data in extra.items():
        assert out.files[name] == data


def test_pack_is_deterministic(bare_flatbuffer: bytes, metadata: ModelMetadata) -> None:
    a = pack(bare_flatbuffer, metadata)
    b = pack(bare_flatbuffer, metadata)
    assert a == b
    # Dict insertion order does not leak into the bytes either.
    reordered = replace(metadata, provenance={"seed": 0, "source": "google-coral/test_data"})
    assert pack(bare_flatbuffer, reordered) == a
    # ...while a real change does.
    assert pack(bare_flatbuffer, replace(metadata, temperature=1.5)) != a


def test_pack_refuses_packed_model_and_non_tflite(packed: bytes, quant_model: Path, metadata: ModelMetadata) -> None:
    with pytest.raises(ModelError):
        pack(packed, metadata)
    with pytest.raises(ModelError):
        pack(quant_model.read_bytes(), metadata)  # carries a standard TFLite associated-files archive
    with pytest.raises(ModelError):
        pack(b"GIF89a" + b"\0" * 100, metadata)


def test_pack_refuses_invalid_metadata(bare_flatbuffer: bytes, metadata: ModelMetadata) -> None:
    with pytest.raises(MetadataError):
        pack(bare_flatbuffer, replace(metadata, num_outputs=10))


def test_model_without_skinedge_metadata(quant_model: Path) -> None:
    out = unpack(quant_model.read_bytes(), str(quant_model))
    assert out.metadata is None
    assert out.labels is None  # its archive holds imagenet_labels.txt, not labels.txt
    assert "imagenet_labels.txt" in out.files


# -- integrity -----------------------------------------------------------------------------------


def test_sha256_mismatch_refused(tmp_path: Path, packed: bytes, bare_flatbuffer: bytes) -> None:
    damaged = bytearray(packed)
    damaged[len(bare_flatbuffer) // 2] ^= 0x01
    with pytest.raises(ModelError, match="SHA-256"):
        unpack(bytes(damaged), "model.tflite")
    path = _write(tmp_path, bytes(damaged))
    with pytest.raises(ModelError, match="SHA-256") as info:
        Classifier(path, num_threads=1)
    assert info.value.source == str(path)
    # The check can be turned off explicitly (and only then does the damaged model get through).
    assert unpack(bytes(damaged), "m", verify_checksum=False).metadata is not None


def _entry_data_offset(data: bytes, name: str) -> int:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        info = zf.getinfo(name)
    start = info.header_offset
    name_len = int.from_bytes(data[start + 26 : start + 28], "little")
    extra_len = int.from_bytes(data[start + 28 : start + 30], "little")
    return start + 30 + name_len + extra_len


def test_damaged_archive_refused(tmp_path: Path, packed: bytes) -> None:
    damaged = bytearray(packed)
    damaged[_entry_data_offset(packed, METADATA_NAME) + 5] ^= 0xFF
    with pytest.raises(MetadataError, match="damaged"):
        unpack(bytes(damaged), "model.tflite")
    path = _write(tmp_path, bytes(damaged))
    with pytest.raises(MetadataError):
        Classifier(path, num_threads=1)


def test_truncated_archive_refused(packed: bytes) -> None:
    with pytest.raises(ModelError):
        unpack(packed[:-30], "model.tflite")


def test_every_damaged_archive_byte_refused_or_harmless() -> None:
    """Flip each byte of a packed archive: the model must be refused or come out intact, never
    load silently without (or with different) metadata."""
    fake = b"\x10\x00\x00\x00TFL3" + bytes(range(256)) * 2  # enough for the structural check
    md = ModelMetadata(labels=("a", "b", "c"), temperature=1.3, abstain_threshold=0.4)
    data = pack(fake, md, {"selftest/0.png": bytes(range(256))})
    expected = unpack(data, "m")
    outcomes = {"refused": 0, "intact": 0}
    for i in range(len(fake), len(data)):
        damaged = bytearray(data)
        damaged[i] ^= 0xFF
        try:
            out = unpack(bytes(damaged), "m")
        except ModelError:
            outcomes["refused"] += 1
            continue
        assert out.metadata == expected.metadata, f"byte {i - len(fake)} of the archive changed the metadata"
        assert out.flatbuffer == fake
        assert out.labels == md.labels
        outcomes["intact"] += 1
    assert outcomes["refused"] > 0


def test_labels_txt_disagreeing_with_metadata_refused(bare_flatbuffer: bytes, metadata: ModelMetadata) -> None:
    archive = _archive(
        {
            METADATA_NAME: _metadata_json(metadata, bare_flatbuffer),
            LABELS_NAME: ("\n".join(reversed(metadata.labels)) + "\n").encode(),
        }
    )
    with pytest.raises(MetadataError, match="disagree"):
        unpack(bare_flatbuffer + archive, "model.tflite")


def test_labels_txt_alone_is_used(tmp_path: Path, bare_flatbuffer: bytes, labels: tuple[str, ...]) -> None:
    # Third-party packing: a labels.txt and no skinedge.json.
    archive = _archive({LABELS_NAME: ("\n".join(labels) + "\n").encode()})
    path = _write(tmp_path, bare_flatbuffer + archive)
    with Classifier(path, num_threads=1) as clf:
        assert clf.metadata is None
        assert clf.labels == labels


@pytest.mark.parametrize(
    "payload, match",
    [
        (b"{not json", "JSON"),
        (b"[1, 2, 3]", "object"),
        (json.dumps({"format": "other"}).encode(), "not skinedge metadata"),
        (json.dumps({"format": "skinedge-metadata", "format_version": 99, "labels": ["a"]}).encode(), "newer"),
        (json.dumps({"format": "skinedge-metadata", "format_version": 1}).encode(), "malformed"),
    ],
    ids=["not-json", "not-object", "foreign-format", "newer-format", "no-labels"],
)
def test_malformed_metadata_refused(bare_flatbuffer: bytes, payload: bytes, match: str) -> None:
    with pytest.raises(MetadataError, match=match):
        unpack(bare_flatbuffer + _archive({METADATA_NAME: payload}), "model.tflite")


@pytest.mark.parametrize(
    "changes",
    [
        {"labels": ()},
        {"labels": ("a", "a")},
        {"output_kind": "softmax"},
        {"temperature": 0.0},
        {"abstain_threshold": 1.5},
        {"labels": ("a", "b"), "num_outputs": 3},
    ],
    ids=["no-labels", "duplicate-labels", "output-kind", "temperature", "abstain", "num-outputs"],
)
def test_inconsistent_metadata_refused(changes: dict) -> None:
    md = replace(ModelMetadata(labels=("a", "b", "c")), **changes)
    with pytest.raises(MetadataError):
        md.validate()
    with pytest.raises(MetadataError):
        ModelMetadata.from_dict(md.to_dict())


def test_metadata_with_newer_preprocessing_spec_refused(bare_flatbuffer: bytes, metadata: ModelMetadata) -> None:
    d = json.loads(_metadata_json(metadata, bare_flatbuffer))
    d["preprocess"]["version"] = 99
    with pytest.raises(MetadataError, match="upgrade"):
        unpack(bare_flatbuffer + _archive({METADATA_NAME: json.dumps(d).encode()}), "model.tflite")


def test_sidecar_sha256(tmp_path: Path, packed: bytes) -> None:
    path = _write(tmp_path, packed)
    sidecar = tmp_path / "model.tflite.sha256"
    sidecar.write_text(hashlib.sha256(packed).hexdigest() + "  model.tflite\n")
    assert read_model(path).metadata is not None
    sidecar.write_text("0" * 64 + "  model.tflite\n")
    with pytest.raises(ModelError, match="SHA-256"):
        read_model(path)
    assert read_model(path, verify=False).sha256 == hashlib.sha256(packed).hexdigest()


# -- labels files --------------------------------------------------------------------------------


def test_labels_file(tmp_path: Path) -> None:
    path = tmp_path / "labels.txt"
    path.write_text("Acne\n\n  Eczema  \nPsoriasis\n")
    assert read_labels_file(path) == ("Acne", "Eczema", "Psoriasis")
    path.write_text("\n\n")
    with pytest.raises(MetadataError, match="empty"):
        read_labels_file(path)
    with pytest.raises(MetadataError, match="not found"):
        read_labels_file(tmp_path / "missing.txt")


# -- the runtime obeys the metadata --------------------------------------------------------------


def test_packed_model_loads_and_metadata_used(
    tmp_path: Path, packed: bytes, metadata: ModelMetadata, cat_bmp: Path
) -> None:
    path = _write(tmp_path, packed)
    with Classifier(path, num_threads=1) as clf:
        assert clf.metadata is not None
        assert clf.labels == metadata.labels
        assert clf.output_kind == "probabilities"
        assert clf.abstain_threshold == 0.9
        assert clf.spec == metadata.preprocess
        result = clf.classify(cat_bmp)
        assert result.index == CAT
        assert result.label == "286:Egyptian cat"
        assert result.score == pytest.approx(0.79, abs=0.02)
        assert result.uncertain  # 0.79 is below the model's own 0.9 threshold
    # The caller can still override the threshold.
    with Classifier(path, num_threads=1, abstain_threshold=0.5) as clf:
        assert not clf.classify(cat_bmp).uncertain


def test_lower_abstain_threshold_from_metadata(
    tmp_path: Path, bare_flatbuffer: bytes, metadata: ModelMetadata, cat_bmp: Path
) -> None:
    path = _packed_model(tmp_path, bare_flatbuffer, replace(metadata, abstain_threshold=0.5))
    with Classifier(path, num_threads=1) as clf:
        assert clf.abstain_threshold == 0.5
        assert not clf.classify(cat_bmp).uncertain


def test_temperature_from_metadata_applied(
    tmp_path: Path, bare_flatbuffer: bytes, metadata: ModelMetadata, cat_bmp: Path
) -> None:
    # Treat the model's outputs as logits and calibrate them with T=2.
    path = _packed_model(tmp_path, bare_flatbuffer, replace(metadata, output_kind="logits", temperature=2.0))
    with Classifier(path, num_threads=1) as clf:
        assert clf.temperature == 2.0
        assert clf.output_kind == "logits"
        pixels = clf.preprocess(cat_bmp)[0]
        raw = clf.raw_output(pixels)
        z = raw / 2.0
        expected = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        uncalibrated = np.exp(raw - raw.max()) / np.exp(raw - raw.max()).sum()
        result = clf.classify(cat_bmp)
        assert np.allclose(result.scores, expected, atol=1e-9)
        assert not np.allclose(result.scores, uncalibrated, atol=1e-6)
        assert result.index == CAT


def test_preprocessing_spec_from_metadata_used(
    tmp_path: Path, bare_flatbuffer: bytes, metadata: ModelMetadata, reference_dir: Path
) -> None:
    spec = PreprocessSpec(aspect="center_crop", resize_filter="bicubic", jpeg_draft=True)
    path = _packed_model(tmp_path, bare_flatbuffer, replace(metadata, preprocess=spec))
    photo = reference_dir / "images" / "cat_720p.jpg"
    with Classifier(path, num_threads=1) as clf:
        assert clf.spec == spec
        assert np.array_equal(clf.preprocess(photo)[0], prepare(photo, spec))
        assert not np.array_equal(clf.preprocess(photo)[0], prepare(photo))


def test_label_count_not_matching_output_refused(
    tmp_path: Path, bare_flatbuffer: bytes, metadata: ModelMetadata
) -> None:
    md = replace(metadata, labels=metadata.labels[:1000], num_outputs=None)
    path = _packed_model(tmp_path, bare_flatbuffer, md)
    with pytest.raises(MetadataError, match="1000 labels for 1001"):
        Classifier(path, num_threads=1)


def test_metadata_input_shape_mismatch_refused(
    tmp_path: Path, bare_flatbuffer: bytes, metadata: ModelMetadata
) -> None:
    path = _packed_model(tmp_path, bare_flatbuffer, replace(metadata, input_shape=(1, 160, 160, 3)))
    with pytest.raises(MetadataError, match="160"):
        Classifier(path, num_threads=1)


def test_metadata_spec_size_mismatch_refused(tmp_path: Path, bare_flatbuffer: bytes, metadata: ModelMetadata) -> None:
    md = replace(metadata, preprocess=PreprocessSpec(height=160, width=160), input_shape=None)
    path = _packed_model(tmp_path, bare_flatbuffer, md)
    with pytest.raises(MetadataError, match="160x160"):
        Classifier(path, num_threads=1)


def test_metadata_input_dtype_mismatch_refused(
    tmp_path: Path, bare_flatbuffer: bytes, metadata: ModelMetadata
) -> None:
    path = _packed_model(tmp_path, bare_flatbuffer, replace(metadata, input_dtype="float32"))
    with pytest.raises(MetadataError, match="float32"):
        Classifier(path, num_threads=1)
