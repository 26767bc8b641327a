"""The zipfile-free reader of metadata archives: what it reads is what zipfile reads, and the rest it leaves
to zipfile. zipfile is the independent reference throughout."""

from __future__ import annotations

import io
import subprocess
import sys
import zipfile
from pathlib import Path

from skinedge.appended_zip import read_stored_zip
from skinedge.metadata import MAX_ENTRY_BYTES, ModelMetadata, pack, unpack
from skinedge.model_io import bundled_model_path

# Enough of a flatbuffer for check_flatbuffer: root offset 16, the TFL3 identifier.
FAKE_FLATBUFFER = b"\x10\x00\x00\x00TFL3" + bytes(range(256)) * 2


def _zipfile_reads(data: bytes) -> tuple[int, dict[str, bytes]] | None:
    """(archive start, entries) as zipfile reads them; None where zipfile finds no archive or fails."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
            return (min(i.header_offset for i in infos), {i.filename: zf.read(i) for i in infos}) if infos else None
    except Exception:
        return None


def _packed() -> bytes:
    md = ModelMetadata(labels=("a", "b", "c"), temperature=1.3, abstain_threshold=0.4)
    return pack(FAKE_FLATBUFFER, md, {"selftest/0.png": bytes(range(256)), "selftest/vectors.json": b"{}"})


def test_reads_what_skinedge_packs_as_zipfile_does() -> None:
    data = _packed()
    got = read_stored_zip(data, MAX_ENTRY_BYTES)
    assert got is not None  # the archives skinedge writes take the fast path
    assert got == _zipfile_reads(data)
    assert got[0] == len(FAKE_FLATBUFFER)
    assert sorted(got[1]) == ["labels.txt", "selftest/0.png", "selftest/vectors.json", "skinedge.json"]


def test_bundled_model_archive_as_zipfile_reads_it() -> None:
    data = bundled_model_path().read_bytes()
    got = read_stored_zip(data, MAX_ENTRY_BYTES)
    assert got is not None and got == _zipfile_reads(data)


def test_third_party_archive_as_zipfile_reads_it(quant_model: Path) -> None:
    data = quant_model.read_bytes()  # TFLite standard metadata: imagenet_labels.txt as an associated file
    got = read_stored_zip(data, MAX_ENTRY_BYTES)
    assert got is None or got == _zipfile_reads(data)


def test_every_damaged_byte_read_as_zipfile_reads_it_or_left_to_zipfile() -> None:
    data = _packed()
    start = len(FAKE_FLATBUFFER)
    fast = 0
    for i in range(start, len(data)):
        for flip in (0x01, 0x80, 0xFF):
            damaged = bytearray(data)
            damaged[i] ^= flip
            got = read_stored_zip(bytes(damaged), MAX_ENTRY_BYTES)
            if got is not None:
                fast += 1
                assert got == _zipfile_reads(bytes(damaged)), f"byte {i - start} ^ {flip:#x}"
    assert fast > 0  # flips of fields neither reader checks (times, attributes) still read fast


def test_truncated_or_extended_archives_read_as_zipfile_does() -> None:
    data = _packed()
    for cut in range(1, 200):
        got = read_stored_zip(data[:-cut], MAX_ENTRY_BYTES)
        assert got is None or got == _zipfile_reads(data[:-cut])
    assert read_stored_zip(FAKE_FLATBUFFER, MAX_ENTRY_BYTES) is None  # no archive at all


def test_other_archives_left_to_zipfile_and_still_read() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("labels.txt", "x\ny\n" * 100)
    data = FAKE_FLATBUFFER + buf.getvalue()
    assert read_stored_zip(data, MAX_ENTRY_BYTES) is None  # compressed: not this reader's kind
    assert unpack(data, "m").labels == ("x", "y") * 100  # zipfile reads it, as before
    assert read_stored_zip(_packed(), max_entry_bytes=100) is None  # above the caller's limit: zipfile decides


def test_loading_the_bundled_model_does_not_import_zipfile() -> None:
    code = ("import sys; from skinedge.model_io import bundled_model_path, read_model; "
            "m = read_model(bundled_model_path()); assert m.metadata is not None; print('zipfile' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
