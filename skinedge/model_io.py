"""Reading model files safely: size and structure checks, metadata, checksums, the bundled model."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from skinedge.errors import ModelError
from skinedge.flatbuffer_check import check_tflite_structure
from skinedge.metadata import ModelMetadata, unpack

#: File name of the model bundled with the package (package ``skinedge.bundled``, from ``models/``).
BUNDLED_MODEL = "skinedge_mobilenetv2_int8.tflite"
#: Models larger than this are refused before reading (MobileNetV2 int8 is ~3 MB).
MAX_MODEL_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True)
class LoadedModel:
    """A verified model: the flatbuffer for the interpreter plus what its metadata says."""

    path: Path
    data: bytes
    metadata: ModelMetadata | None
    labels: tuple[str, ...] | None
    files: dict[str, bytes]
    sha256: str


def bundled_model_path() -> Path:
    """Path of the model shipped inside the package."""
    path = Path(str(resources.files("skinedge.bundled").joinpath(BUNDLED_MODEL)))
    if not path.is_file():
        raise ModelError(str(path), "the bundled model is missing from this installation; pass a model path")
    return path


def _recorded_sha256(path: Path) -> str | None:
    sidecar = path.with_name(path.name + ".sha256")
    if not sidecar.is_file():
        return None
    return sidecar.read_text().split()[0].strip().lower()


def read_model(path: str | os.PathLike, *, verify: bool = True) -> LoadedModel:
    """Read and check a ``.tflite`` file before any interpreter sees it.

    Checks: the file exists and is a plausible size; it is a TFLite flatbuffer; its metadata (if
    any) parses and agrees with itself; with ``verify``, the flatbuffer's SHA-256 matches the one in
    the metadata and the whole file matches a ``<name>.sha256`` file beside it, if there is one
    (the bundled model has one), and the flatbuffer passes a structural walk of its graph
    (:func:`skinedge.flatbuffer_check.check_tflite_structure`: indices, buffer sizes, data flow),
    which refuses the damage that crashes an interpreter instead of raising an error.

    Raises:
        ModelError: missing, unreadable, damaged or not a TFLite model.
        MetadataError: metadata malformed or inconsistent.
    """
    p = Path(path)
    name = str(p)
    try:
        size = p.stat().st_size
    except FileNotFoundError:
        raise ModelError(name, "no such model file") from None
    except OSError as exc:
        raise ModelError(name, f"cannot read model ({exc.strerror or exc})") from None
    if p.is_dir():
        raise ModelError(name, "is a directory, not a .tflite model")
    if size > MAX_MODEL_BYTES:
        raise ModelError(name, f"model file is {size} bytes, above the {MAX_MODEL_BYTES}-byte limit")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ModelError(name, f"cannot read model ({exc.strerror or exc})") from None
    digest = hashlib.sha256(data).hexdigest()
    if verify:
        expected = _recorded_sha256(p)
        if expected is not None and expected != digest:
            raise ModelError(name, f"model is damaged or was replaced: SHA-256 {digest[:12]}... does not match "
                                   f"the recorded {expected[:12]}...")
    packed = unpack(data, name, verify_checksum=verify)
    if verify:
        check_tflite_structure(packed.flatbuffer, name)
    return LoadedModel(path=p, data=packed.flatbuffer, metadata=packed.metadata, labels=packed.labels,
                       files=packed.files, sha256=digest)

