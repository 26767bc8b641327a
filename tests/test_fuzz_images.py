"""Fuzzed images: damaged real photos give a result or a typed ImageError, never anything else.

A bounded, deterministic slice of ``benchmarks/reliability/fuzz_images.py`` (which runs tens of
thousands of cases in a crash-isolating subprocess): hypothesis mutates small re-encodings of a real
photo in every format skinedge reads, plus fixed regression inputs, plus the resource limits
(a 1 GB file and 50,000 x 50,000 headers refused without reading the pixels, by peak RSS).
"""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from skinedge import preprocess
from skinedge.errors import ImageError, ImageTooLargeError
from skinedge.preprocess import DEFAULT_LIMITS, ImageLimits

# Damaged EXIF/TIFF tags make Pillow warn ("Corrupt EXIF data", "Tag data larger than file") and go on decoding:
# not what these tests judge.
pytestmark = pytest.mark.filterwarnings(r"ignore::UserWarning:PIL\..*")

FORMATS = ("jpeg", "jpeg_progressive", "png_rgb", "png_rgba", "png_p", "png_l", "png_16", "gif", "webp", "bmp", "tiff")


def _encode(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    if fmt == "jpeg":
        img.save(buf, "JPEG", quality=85)
    elif fmt == "jpeg_progressive":
        img.save(buf, "JPEG", quality=85, progressive=True)
    elif fmt == "png_rgb":
        img.save(buf, "PNG")
    elif fmt == "png_rgba":
        rgba = img.copy()
        rgba.putalpha(128)
        rgba.save(buf, "PNG")
    elif fmt == "png_p":
        img.convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(buf, "PNG", transparency=0)
    elif fmt == "png_l":
        img.convert("L").save(buf, "PNG")
    elif fmt == "png_16":
        Image.fromarray(np.asarray(img.convert("L"), dtype="<u2") * 257).save(buf, "PNG")
    elif fmt == "gif":
        img.convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(buf, "GIF")
    elif fmt == "webp":
        img.save(buf, "WEBP", quality=80)
    elif fmt == "bmp":
        img.save(buf, "BMP")
    else:
        img.save(buf, "TIFF", compression="tiff_lzw")
    return buf.getvalue()


@pytest.fixture(scope="module")
def seeds(cat_bmp: Path) -> dict[str, bytes]:
    """A real photo, small (so each example is fast), in every format skinedge converts."""
    with Image.open(cat_bmp) as im:
        small = im.convert("RGB").resize((48, 36), Image.Resampling.BILINEAR)
    return {fmt: _encode(small, fmt) for fmt in FORMATS}


def _check(data: bytes, target: str) -> None:
    """Decode or prepare ``data``: it must give a valid result or raise an ImageError (never anything else)."""
    try:
        if target == "decode":
            img = preprocess.decode(data)
            assert img.mode == "RGB" and img.width >= 1 and img.height >= 1
        else:
            arr = preprocess.prepare(data)
            assert arr.shape == (224, 224, 3) and arr.dtype == np.uint8 and arr.flags.c_contiguous
    except ImageError as exc:
        assert exc.source == "<bytes>" and exc.reason and "\n" not in str(exc)


mutation = st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255), st.booleans())


@settings(max_examples=300, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(fmt=st.sampled_from(FORMATS), edits=st.lists(mutation, min_size=1, max_size=6),
       cut=st.one_of(st.none(), st.floats(0, 1)), target=st.sampled_from(["decode", "prepare"]))
def test_mutated_images_give_result_or_image_error(seeds: dict[str, bytes], fmt: str, edits: list, cut: float | None,
                                                   target: str) -> None:
    data = bytearray(seeds[fmt])
    for where, value, in_header in edits:
        # Half the edits land in the first 64 bytes, where the format's header and sizes are.
        pos = int(where * (min(64, len(data)) if in_header else len(data)))
        data[pos] = value
    if cut is not None:
        data = data[: int(cut * len(data))]
    if not data:
        with pytest.raises(ImageError, match="empty input"):
            preprocess.decode(bytes(data))
        return
    _check(bytes(data), target)


@pytest.fixture(scope="module")
def clf(quant_model: Path, imagenet_labels: Path):
    from skinedge import Classifier

    with Classifier(quant_model, labels=imagenet_labels, num_threads=1) as c:
        yield c


@settings(max_examples=40, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fmt=st.sampled_from(FORMATS), edits=st.lists(mutation, min_size=1, max_size=4))
def test_mutated_images_through_classify(clf, seeds: dict[str, bytes], fmt: str, edits: list) -> None:
    """The same through ``Classifier.classify``: a result with scores for every label, or an ImageError."""
    data = bytearray(seeds[fmt])
    for where, value, in_header in edits:
        data[int(where * (min(64, len(data)) if in_header else len(data)))] = value
    try:
        result = clf.classify(bytes(data))
    except ImageError as exc:
        assert exc.source == "<bytes>" and exc.reason
    else:
        assert len(result.scores) == len(clf.labels) and 0.0 <= result.score <= 1.0


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fmt=st.sampled_from(FORMATS), width=st.sampled_from([0, 1, 255, 65535, 50_000, 2**31 - 1, 2**32 - 1]),
       which=st.sampled_from(["width", "height"]))
def test_header_sizes_edited(seeds: dict[str, bytes], fmt: str, width: int, which: str) -> None:
    """Width/height fields rewritten in PNG, JPEG, BMP and GIF headers: typed errors or a valid image."""
    data = bytearray(seeds[fmt])
    if data[:4] == b"\x89PNG":
        off = 16 if which == "width" else 20
        data[off : off + 4] = struct.pack(">I", width)
    elif data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(data) and data[i] == 0xFF:
            if data[i + 1] in (0xC0, 0xC2):
                off = i + (7 if which == "width" else 5)
                data[off : off + 2] = struct.pack(">H", width & 0xFFFF)
                break
            i += 2 + struct.unpack(">H", data[i + 2 : i + 4])[0]
    elif data[:2] == b"BM":
        off = 18 if which == "width" else 22
        data[off : off + 4] = struct.pack("<I", width)
    elif data[:3] == b"GIF":
        off = 6 if which == "width" else 8
        data[off : off + 2] = struct.pack("<H", width & 0xFFFF)
    _check(bytes(data), "prepare")


def test_wrong_extensions(tmp_path: Path, seeds: dict[str, bytes]) -> None:
    """Content decides, not the suffix: every format read from a file named as every other one."""
    suffixes = (".jpg", ".png", ".gif", ".webp", ".bmp", ".tif", ".jfif")
    reference = {fmt: preprocess.prepare(data) for fmt, data in seeds.items()}
    for fmt, data in seeds.items():
        for suffix in suffixes:
            path = tmp_path / f"{fmt}{suffix}"
            path.write_bytes(data)
            assert np.array_equal(preprocess.prepare(path), reference[fmt]), path.name


def test_non_images_with_image_extensions(tmp_path: Path) -> None:
    cases = {"text.jpg": b"hello, world\n" * 10, "zeros.png": bytes(4096), "html.webp": b"<html></html>",
             "tflite.bmp": b"\x1c\x00\x00\x00TFL3" + bytes(100), "zip.gif": b"PK\x03\x04" + bytes(60)}
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(ImageError, match="not a readable image") as info:
            preprocess.prepare(path)
        assert info.value.source == str(path)


# -- regressions: inputs the campaign ran slowest on or that exercise edge paths ----------------------------


def _jpeg_with_height(seeds: dict[str, bytes], height: int) -> bytes:
    data = bytearray(seeds["jpeg"])
    i = 2
    while data[i + 1] not in (0xC0, 0xC2):
        i += 2 + struct.unpack(">H", data[i + 2 : i + 4])[0]
    data[i + 5 : i + 7] = struct.pack(">H", height)
    return bytes(data)


def test_jpeg_header_claiming_65500_rows_decodes_within_limits(seeds: dict[str, bytes]) -> None:
    """Campaign case: a JPEG whose SOF height was raised to 65500 (48 x 65500 px, under the pixel limit).
    libjpeg pads the missing rows; skinedge gives an image (or a typed error), in bounded time."""
    _check(_jpeg_with_height(seeds, 65500), "prepare")


def test_jpeg_header_claiming_zero_rows(seeds: dict[str, bytes]) -> None:
    with pytest.raises(ImageError):
        preprocess.prepare(_jpeg_with_height(seeds, 0))


# -- resource limits --------------------------------------------------------------------------------------------


def _png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + chunk(b"IEND", b""))


def test_limits_are_documented_values() -> None:
    assert DEFAULT_LIMITS == ImageLimits(max_pixels=120_000_000, max_file_bytes=100 * 1024 * 1024)
    assert 12000 * 9000 <= DEFAULT_LIMITS.max_pixels < 50_000 * 50_000


_PROBE = r"""
import json, sys
from skinedge import preprocess
from skinedge.errors import SkinedgeError
from skinedge.profiling import peak_rss_bytes
preprocess.prepare(sys.argv[1])  # warm up: imports, decoders, the first resize
out = {}
for path in sys.argv[2:]:
    before = peak_rss_bytes()
    try:
        preprocess.prepare(path)
        out[path] = {"error": None}
    except SkinedgeError as exc:
        out[path] = {"error": type(exc).__name__, "reason": exc.reason}
    out[path]["peak_rss_delta"] = peak_rss_bytes() - before
print(json.dumps(out))
"""


def test_huge_inputs_refused_without_reading_them(tmp_path: Path, cat_bmp: Path) -> None:
    """A 1 GB file and 50,000 x 50,000 headers are refused from their size or header alone: the peak RSS of
    the process refusing them grows by less than 16 MB (decoding 50,000 x 50,000 RGB would need 7.5 GB)."""
    sparse = tmp_path / "one_gigabyte.jpg"
    with open(sparse, "wb") as f:
        f.write(b"\xff\xd8\xff\xe0")
        f.truncate(1 << 30)  # sparse: no disk used
    png = tmp_path / "fifty_thousand.png"
    png.write_bytes(_png_header(50_000, 50_000))
    over = tmp_path / "twelve_thousand.png"  # 144 MP: under Pillow's own bomb error, above skinedge's limit
    over.write_bytes(_png_header(12_000, 12_000))
    with Image.open(cat_bmp) as im:
        buf = io.BytesIO()
        im.convert("RGB").resize((32, 32)).save(buf, "JPEG")
    jpeg = bytearray(buf.getvalue())  # a real JPEG whose SOF claims 60,000 x 60,000
    i = 2
    while jpeg[i + 1] != 0xC0:
        i += 2 + struct.unpack(">H", jpeg[i + 2 : i + 4])[0]
    jpeg[i + 5 : i + 9] = struct.pack(">HH", 60000, 60000)
    jpeg_path = tmp_path / "sixty_thousand.jpg"
    jpeg_path.write_bytes(bytes(jpeg))
    proc = subprocess.run([sys.executable, "-c", _PROBE, str(cat_bmp), str(sparse), str(png), str(over),
                           str(jpeg_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result[str(sparse)]["reason"] == f"file is {1 << 30} bytes, above the limit of {100 * 1024 * 1024}"
    assert "50000x50000" in result[str(png)]["reason"] or "decompression bomb" in result[str(png)]["reason"]
    assert result[str(over)]["reason"].startswith("image is 12000x12000 = 144000000 pixels, above the limit")
    for path, r in result.items():
        assert r["error"] == ImageTooLargeError.__name__, (path, r)
        assert r["peak_rss_delta"] < 16 * 1024 * 1024, (path, r)
