"""The model's own metadata: read by the runtime, written by the training tools. No TensorFlow.

Layout: a ``.tflite`` flatbuffer followed by a ZIP archive, the same packing the standard TFLite
metadata uses for its associated files, so interpreters ignore it and any zip reader finds it.
The archive holds:

* ``skinedge.json`` -- :class:`ModelMetadata` (labels, preprocessing spec, output kind,
  calibration temperature, abstain threshold, expected tensors, provenance, metrics, and the
  SHA-256 of the flatbuffer part so a damaged model is refused before an interpreter reads it);
* ``labels.txt`` -- one label per line, the file the TFLite Task Library / MediaPipe look for;
* any extra files (e.g. ``selftest/*.png`` test vectors).

Third-party models with no metadata work with a labels file (:func:`read_labels_file`) and explicit
options; a ``labels.txt`` packed by other tools is picked up too.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skinedge.appended_zip import read_stored_zip
from skinedge.digest import sha256_hex
from skinedge.errors import MetadataError, ModelError
from skinedge.flatbuffer_check import check_flatbuffer
from skinedge.preprocess import PreprocessSpec

METADATA_NAME = "skinedge.json"
LABELS_NAME = "labels.txt"
FORMAT = "skinedge-metadata"
FORMAT_VERSION = 2  # v2: abstention gates (``gates``); files without gates are still written as v1
OUTPUT_KINDS = ("logits", "probabilities")
#: Archive entries larger than this are refused (a self-test PNG is ~100 kB).
MAX_ENTRY_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class ModelMetadata:
    """What the runtime needs to know about a model, stored inside the model file.

    Attributes:
        labels: class names, in output order.
        preprocess: how photos become the input tensor, normalisation included (see :class:`PreprocessSpec`).
        output_kind: ``logits`` (softmax applied by the runtime, with ``temperature``) or
            ``probabilities`` (used as they are).
        temperature: calibration temperature fitted on validation data (1.0: uncalibrated).
        abstain_threshold: results whose top score is below this are flagged ``uncertain``.
        input_shape, input_dtype, num_outputs: what the tensors must look like; checked at load.
        model_sha256: SHA-256 of the flatbuffer part (everything before the metadata archive).
        name, description, provenance, metrics: free-form documentation of the model.
        explain: the model's class-activation map outputs, for ``Classifier.explain``:
            ``{"maps": [{"output": name, "grid": [h, w]}, ...], "fusion": ...}``; empty when it has none.
        gate_labels: abstention classes after the class scores in the same output (outlier exposure, e.g.
            ``not_skin``, ``other_condition``): the output holds ``len(labels) + len(gate_labels)`` values,
            one softmax over all of them. Empty for a plain classifier.
        gate_thresholds: a gate's score at or above its threshold means "do not answer" (set on validation).
        quality: photo-quality thresholds set for this model (:class:`skinedge.quality.QualityThresholds`
            fields); empty: the runtime's defaults.
    """

    labels: tuple[str, ...]
    preprocess: PreprocessSpec = field(default_factory=PreprocessSpec)
    output_kind: str = "logits"
    temperature: float = 1.0
    abstain_threshold: float = 0.0
    input_shape: tuple[int, ...] | None = None
    input_dtype: str | None = None
    num_outputs: int | None = None
    model_sha256: str | None = None
    name: str = ""
    description: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    explain: dict[str, Any] = field(default_factory=dict)
    gate_labels: tuple[str, ...] = ()
    gate_thresholds: dict[str, float] = field(default_factory=dict)
    quality: dict[str, Any] = field(default_factory=dict)

    @property
    def output_labels(self) -> tuple[str, ...]:
        """What each value of the score output is: the class labels, then the gates (``labels.txt``)."""
        return self.labels + self.gate_labels

    @property
    def map_outputs(self) -> tuple[str, ...]:
        """Names of the class-activation map outputs (none for a plain classifier)."""
        return tuple(str(m["output"]) for m in self.explain.get("maps", ()))

    def to_dict(self) -> dict[str, Any]:
        extra = {"explain": self.explain} if self.explain else {}  # older files keep their exact JSON
        if self.gate_labels:
            extra["gates"] = {"labels": list(self.gate_labels), "thresholds": dict(self.gate_thresholds)}
        if self.quality:
            extra["quality"] = dict(self.quality)
        return {
            "format": FORMAT,
            "format_version": 2 if self.gate_labels else 1,
            "name": self.name,
            "description": self.description,
            "labels": list(self.labels),
            "preprocess": self.preprocess.to_dict(),
            "output": {"kind": self.output_kind, "temperature": self.temperature},
            "abstain_threshold": self.abstain_threshold,
            "input": {  # mean and std live in "preprocess" since spec v2
                "shape": list(self.input_shape) if self.input_shape else None,
                "dtype": self.input_dtype,
            },
            "num_outputs": self.num_outputs,
            "model_sha256": self.model_sha256,
            "provenance": self.provenance,
            "metrics": self.metrics,
            **extra,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "<metadata>") -> ModelMetadata:
        if d.get("format") != FORMAT:
            raise MetadataError(source, f"not skinedge metadata (format={d.get('format')!r})")
        if int(d.get("format_version", 0)) > FORMAT_VERSION:
            raise MetadataError(
                source, f"metadata format v{d['format_version']} is newer than this skinedge (v{FORMAT_VERSION})"
            )
        try:
            labels = tuple(str(x) for x in d["labels"])
            out = d.get("output", {})
            inp = d.get("input", {})
            md = cls(
                labels=labels,
                # A v1 spec's mean/std are in "input" (0 and 1 when absent, as v1 read them).
                preprocess=PreprocessSpec.from_dict(d.get("preprocess", {}), source,
                                                    v1_norm=(inp.get("mean", 0.0), inp.get("std", 1.0))),
                output_kind=str(out.get("kind", "logits")),
                temperature=float(out.get("temperature", 1.0)),
                abstain_threshold=float(d.get("abstain_threshold", 0.0)),
                input_shape=tuple(int(v) for v in inp["shape"]) if inp.get("shape") else None,
                input_dtype=inp.get("dtype"),
                num_outputs=int(d["num_outputs"]) if d.get("num_outputs") is not None else None,
                model_sha256=d.get("model_sha256"),
                name=str(d.get("name", "")),
                description=str(d.get("description", "")),
                provenance=dict(d.get("provenance") or {}),
                metrics=dict(d.get("metrics") or {}),
                explain=dict(d.get("explain") or {}),
                gate_labels=tuple(str(x) for x in (d.get("gates") or {}).get("labels", ())),
                gate_thresholds={str(k): float(v) for k, v in (d.get("gates") or {}).get("thresholds", {}).items()},
                quality=dict(d.get("quality") or {}),
            )
        except MetadataError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise MetadataError(source, f"malformed metadata ({type(exc).__name__}: {exc})") from None
        md.validate(source)
        return md

    def validate(self, source: str = "<metadata>") -> None:
        """Check internal consistency (against the model's tensors: :class:`skinedge.Classifier` does that on load)."""
        if not self.labels:
            raise MetadataError(source, "metadata has no labels")
        if len(set(self.labels)) != len(self.labels):
            raise MetadataError(source, "metadata labels are not unique")
        if self.output_kind not in OUTPUT_KINDS:
            raise MetadataError(source, f"output kind must be one of {OUTPUT_KINDS}, got {self.output_kind!r}")
        if not (self.temperature > 0 and self.temperature < 1e3):
            raise MetadataError(source, f"calibration temperature must be positive, got {self.temperature}")
        if not (0.0 <= self.abstain_threshold <= 1.0):
            raise MetadataError(source, f"abstain threshold must be in [0, 1], got {self.abstain_threshold}")
        maps = self.explain.get("maps", []) if self.explain else []
        if not isinstance(maps, list) or not all(
            isinstance(m, dict) and isinstance(m.get("output"), str)
            and isinstance(m.get("grid"), list) and len(m["grid"]) == 2
            and all(isinstance(v, int) and v > 0 for v in m["grid"])
            for m in maps
        ):
            raise MetadataError(source, "explain.maps must list {output: name, grid: [h, w]} entries")
        if len(set(self.output_labels)) != len(self.output_labels):
            raise MetadataError(source, "gate labels must differ from each other and from the class labels")
        if set(self.gate_thresholds) - set(self.gate_labels):
            unknown = sorted(set(self.gate_thresholds) - set(self.gate_labels))
            raise MetadataError(source, f"thresholds for unknown gates: {unknown}")
        if not all(0.0 <= v <= 1.0 for v in self.gate_thresholds.values()):
            raise MetadataError(source, f"gate thresholds must be in [0, 1], got {self.gate_thresholds}")
        if self.num_outputs is not None and self.num_outputs != len(self.output_labels):
            n = len(self.output_labels)
            raise MetadataError(source, f"metadata lists {n} labels (gates included) for {self.num_outputs} outputs")


@dataclass(frozen=True)
class ModelFile:
    """A ``.tflite`` model file, split into the flatbuffer an interpreter runs and what its metadata archive holds.

    :func:`unpack` makes one from bytes; :func:`skinedge.model_io.read_model` from a file, after its checks.

    Attributes:
        data: the whole file. Interpreters are given this: they read the flatbuffer at its start and never the
            archive after it (as for any TFLite file with metadata), and a 4 MB copy of the flatbuffer alone
            would cost every start about 3 ms.
        flatbuffer_size: how many bytes of ``data`` the flatbuffer takes (the archive, if any, starts there).
        metadata: skinedge's metadata (``skinedge.json``), or None for a model without it.
        labels: the archive's ``labels.txt``, if it has one (third-party packing included).
        files: every archive entry by name (``skinedge.json``, ``labels.txt``, self-test vectors...).
        sha256: SHA-256 of the whole file (flatbuffer and archive), as a hex string.
    """

    data: bytes
    flatbuffer_size: int
    metadata: ModelMetadata | None
    labels: tuple[str, ...] | None
    files: dict[str, bytes]
    sha256: str

    @property
    def flatbuffer(self) -> bytes:
        """The model without its metadata archive (a copy, made on each access: the checks and tools use it)."""
        return self.data if self.flatbuffer_size == len(self.data) else self.data[: self.flatbuffer_size]


def _read_archive(data: bytes, source: str) -> tuple[int, dict[str, bytes]] | None:
    """Where the appended archive starts in ``data`` and its entries by name; None if there is none.

    The archives skinedge packs are read without zipfile (a cold start saves its imports); anything
    else, damaged archives included, is read, judged and reported by zipfile as it always was.
    """
    found = read_stored_zip(data, MAX_ENTRY_BYTES)
    if found is not None:
        return found
    start = _zip_start(data, source)
    if start is None:
        return None
    return start, _read_with_zipfile(data, source)


def _zip_start(data: bytes, source: str = "<model>") -> int | None:
    """Offset where an appended ZIP archive starts, or None if there is none.

    A damaged skinedge archive (its entry name still visible in the tail) is refused rather than
    ignored, which would silently load the model without its labels and preprocessing spec.
    """
    tail = data[-(65536 + 22) :]
    ours = METADATA_NAME.encode() in tail or _names_our_file(data)
    if b"PK\x05\x06" not in tail:
        if ours:
            raise MetadataError(source, "damaged metadata archive (its end-of-archive record is missing)")
        return None
    import zipfile  # only for archives read_stored_zip leaves alone (and for pack)

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
        if ours:
            raise MetadataError(source, f"damaged metadata archive ({type(exc).__name__}: {exc})") from None
        return None
    if not infos:
        return None
    return min(i.header_offset for i in infos)


def _names_our_file(data: bytes) -> bool:
    """True if ``data`` holds a ZIP local file header of a file skinedge packs: what is left of our archive
    when a truncation cut off its end (and, with it, the ``skinedge.json`` entry)."""
    i = data.find(b"PK\x03\x04")
    while i != -1:
        name = data[i + 30 : i + 30 + int.from_bytes(data[i + 26 : i + 28], "little")]
        if name in (LABELS_NAME.encode(), METADATA_NAME.encode()) or name.startswith(b"selftest/"):
            return True
        i = data.find(b"PK\x03\x04", i + 4)
    return False


def _read_with_zipfile(data: bytes, source: str) -> dict[str, bytes]:
    import zipfile

    files: dict[str, bytes] = {}
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            for info in zf.infolist():
                if info.file_size > MAX_ENTRY_BYTES:
                    raise MetadataError(source, f"metadata entry {info.filename!r} is implausibly large")
                files[info.filename] = zf.read(info)  # zipfile checks each entry's CRC-32
    except MetadataError:
        raise
    except Exception as exc:  # damaged archive: CRC mismatch, bad headers, bad compression
        raise MetadataError(source, f"damaged metadata archive ({type(exc).__name__}: {exc})") from None
    return files


def unpack(data: bytes, source: str, *, verify_checksum: bool = True, sha256: str | None = None) -> ModelFile:
    """Split ``data`` (a whole model file) into flatbuffer and metadata, verifying the recorded checksum if present.

    ``sha256``: the SHA-256 of ``data`` when the caller has computed it already (it is not hashed again).
    """
    check_flatbuffer(data, source)
    digest = sha256 or sha256_hex(data)
    archive = _read_archive(data, source)
    if archive is None:
        return ModelFile(data=data, flatbuffer_size=len(data), metadata=None, labels=None, files={}, sha256=digest)
    start, files = archive
    flatbuffer = memoryview(data)[:start]  # no copy: hashed here at most, and kept as an offset
    if METADATA_NAME not in files and METADATA_NAME.encode() in data[start:]:
        raise MetadataError(source, f"damaged metadata archive ({METADATA_NAME} is named in it but unreadable)")
    metadata = None
    if METADATA_NAME in files:
        try:
            d = json.loads(files[METADATA_NAME].decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise MetadataError(source, f"metadata is not valid JSON ({exc})") from None
        if not isinstance(d, dict):
            raise MetadataError(source, "metadata is not a JSON object")
        metadata = ModelMetadata.from_dict(d, source)
        if (
            verify_checksum
            and metadata.model_sha256
            and sha256_hex(flatbuffer) != metadata.model_sha256
        ):
            raise ModelError(source, "model is damaged: its SHA-256 does not match the one recorded in its metadata")
    labels = None
    if LABELS_NAME in files:
        labels = parse_labels(files[LABELS_NAME].decode("utf-8", errors="replace"))
    if metadata is not None and labels is not None and tuple(labels) != metadata.output_labels:
        raise MetadataError(source, f"{LABELS_NAME} and {METADATA_NAME} disagree on the labels")
    return ModelFile(data=data, flatbuffer_size=start, metadata=metadata, labels=labels, files=files, sha256=digest)


def pack(flatbuffer: bytes, metadata: ModelMetadata, extra_files: dict[str, bytes] | None = None) -> bytes:
    """Append ``metadata`` (with the flatbuffer's SHA-256 filled in) and extra files to a model.

    Deterministic: the same inputs give byte-identical output (fixed timestamps and order).
    """
    check_flatbuffer(flatbuffer, "<flatbuffer>")
    if _zip_start(flatbuffer) is not None:
        raise ModelError("<flatbuffer>", "model already carries a metadata archive; pack the bare flatbuffer")
    import zipfile
    from dataclasses import replace

    reserved = {METADATA_NAME, LABELS_NAME} & set(extra_files or {})
    if reserved:
        raise ValueError(f"extra files may not replace {sorted(reserved)}")
    metadata = replace(metadata, model_sha256=sha256_hex(flatbuffer))
    metadata.validate()
    entries = {
        METADATA_NAME: json.dumps(metadata.to_dict(), indent=2, sort_keys=True).encode(),
        LABELS_NAME: ("\n".join(metadata.output_labels) + "\n").encode(),
        **(extra_files or {}),
    }
    buf = io.BytesIO()
    # Stored, not deflated: the TFLite metadata standard (MediaPipe, the Task Library) reads associated
    # files in place and refuses compressed entries.
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED
            info.external_attr = 0o644 << 16
            zf.writestr(info, entries[name])
    return flatbuffer + buf.getvalue()


def parse_labels(text: str) -> tuple[str, ...]:
    """Labels from text: one per line, blank lines ignored."""
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def read_labels_file(path: str | os.PathLike) -> tuple[str, ...]:
    """Read a labels file (one label per line)."""
    p = Path(path)
    try:
        labels = parse_labels(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MetadataError(str(p), "labels file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MetadataError(str(p), f"cannot read labels file ({exc})") from None
    if not labels:
        raise MetadataError(str(p), "labels file is empty")
    return labels
