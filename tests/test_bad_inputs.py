"""Bad and unusual inputs: typed errors from the library, one ``error: <file>: <reason>`` line from the CLI.

Every bad image is checked twice: the library raises the right :class:`SkinedgeError` subclass, and
``skinedge predict bad good`` prints exactly one error line for it, still classifies the good one and
exits 1. Unusual but valid images (CMYK, 16-bit, grayscale, RGBA, palette, animated, EXIF-rotated)
must be classified. An unusable model or labels file gives exit status 2.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from skinedge import Classifier
from skinedge.cli import main
from skinedge.errors import ImageError, ImageTooLargeError, MetadataError, ModelError

CAT = 286


# -- inputs --------------------------------------------------------------------------------------


def _png_header_only(width: int, height: int) -> bytes:
    """A tiny, valid-looking RGB PNG whose IHDR claims ``width x height`` (a decompression bomb)."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1024, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def photo(reference_dir: Path) -> Image.Image:
    """The real cat photo at 640x360 (small enough to quantize to a palette quickly)."""
    with Image.open(reference_dir / "images" / "cat_720p.jpg") as im:
        return im.convert("RGB").resize((640, 360), Image.Resampling.LANCZOS)


@pytest.fixture(scope="module")
def hot_dog(reference_dir: Path, photo: Image.Image) -> Image.Image:
    with Image.open(reference_dir / "images" / "hot_dog.jpg") as im:
        return im.convert("RGB").resize(photo.size)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("inputs")


@dataclass(frozen=True)
class Bad:
    make: Callable[[Path, Path], Path]  # (work dir, real photo path) -> input path
    error: type[Exception]
    reason: str  # expected in the library's error
    cli_reason: str  # expected in the CLI's error line


def _zero_byte(d: Path, _: Path) -> Path:
    (d / "zero.jpg").write_bytes(b"")
    return d / "zero.jpg"


def _truncated_jpeg(d: Path, photo: Path) -> Path:
    data = photo.read_bytes()
    (d / "truncated.jpg").write_bytes(data[: len(data) // 2])
    return d / "truncated.jpg"


def _text_as_jpeg(d: Path, _: Path) -> Path:
    (d / "notes.jpg").write_text("Patient notes, not a picture.\n" * 20)
    return d / "notes.jpg"


def _missing(d: Path, _: Path) -> Path:
    return d / "does-not-exist.jpg"


def _folder_without_images(d: Path, _: Path) -> Path:
    folder = d / "no-images"
    folder.mkdir(exist_ok=True)
    (folder / "readme.txt").write_text("nothing to see")
    (folder / "model.tflite").write_bytes(b"TFL3")
    return folder


def _bomb(d: Path, _: Path) -> Path:
    (d / "bomb.png").write_bytes(_png_header_only(50_000, 50_000))
    return d / "bomb.png"


def _over_limit(d: Path, _: Path) -> Path:
    # 144 MP: under Pillow's own hard limit (~179 MP) but above skinedge's 120 MP.
    (d / "huge.png").write_bytes(_png_header_only(12_000, 12_000))
    return d / "huge.png"


BAD = {
    "zero-byte": Bad(_zero_byte, ImageError, "empty file (0 bytes)", "empty file (0 bytes)"),
    "truncated-jpeg": Bad(_truncated_jpeg, ImageError, "truncated", "truncated"),
    "text-named-jpg": Bad(_text_as_jpeg, ImageError, "not a readable image", "not a readable image"),
    "missing-path": Bad(_missing, ImageError, "no such file", "no such file or folder"),
    "folder-without-images": Bad(_folder_without_images, ImageError, "is a directory", "folder contains no images"),
    "decompression-bomb": Bad(_bomb, ImageTooLargeError, "decompression bomb", "decompression bomb"),
    "over-pixel-limit": Bad(_over_limit, ImageTooLargeError, "above the limit", "above the limit"),
}


@pytest.fixture(scope="module")
def photo_path(reference_dir: Path) -> Path:
    return reference_dir / "images" / "cat_720p.jpg"


@pytest.fixture(scope="module")
def clf(quant_model: Path, imagenet_labels: Path):
    with Classifier(quant_model, labels=imagenet_labels, num_threads=1) as c:
        yield c


@pytest.fixture(scope="module")
def model_args(quant_model: Path, imagenet_labels: Path) -> list[str]:
    return ["--model", str(quant_model), "--labels", str(imagenet_labels), "--threads", "1"]


@pytest.mark.parametrize("case", sorted(BAD))
def test_library_refuses_bad_image(case: str, clf: Classifier, work: Path, photo_path: Path) -> None:
    bad = BAD[case]
    path = bad.make(work, photo_path)
    with pytest.raises(bad.error) as info:
        clf.classify(path)
    assert type(info.value) is bad.error
    assert info.value.source == str(path)
    assert bad.reason in info.value.reason
    assert "\n" not in str(info.value)
    # In a batch the bad input becomes its error, in place, and the others are classified.
    outcomes = clf.classify_many([photo_path, path, photo_path])
    assert isinstance(outcomes[1], bad.error)
    assert outcomes[0].index == outcomes[2].index == CAT


@pytest.mark.parametrize("case", sorted(BAD))
def test_cli_reports_bad_image_and_goes_on(
    case: str, model_args: list[str], work: Path, photo_path: Path, cat_bmp: Path
) -> None:
    bad = BAD[case]
    path = bad.make(work, photo_path)
    result = CliRunner().invoke(main, ["predict", *model_args, str(path), str(cat_bmp)])
    assert result.exit_code == 1, result.output
    errors = result.stderr.splitlines()
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"error: {path}: ")
    assert bad.cli_reason in errors[0]
    assert f"{cat_bmp}: Egyptian cat" in result.stdout
    assert "1 classified, 1 failed" in result.stdout


def test_bomb_bytes_refused(clf: Classifier) -> None:
    data = _png_header_only(50_000, 50_000)
    assert len(data) < 200
    with pytest.raises(ImageTooLargeError) as info:
        clf.classify(data)
    assert info.value.source == "<bytes>"


# -- unusual but valid images --------------------------------------------------------------------


def _exif_rotated(photo: Image.Image, path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to view"
    photo.transpose(Image.Transpose.ROTATE_90).save(path, "JPEG", quality=95, exif=exif)


def _rgba(photo: Image.Image, path: Path) -> None:
    rgba = np.dstack([np.asarray(photo), np.full(photo.size[::-1], 255, np.uint8)])
    rgba[:40, :, 3] = 0  # a transparent strip
    Image.fromarray(rgba, "RGBA").save(path)


def _gray16(photo: Image.Image, path: Path) -> None:
    gray = np.asarray(photo.convert("L")).astype(np.uint16) * 257  # 8-bit v -> 16-bit v*257
    Image.fromarray(gray).save(path)


GOOD: dict[str, tuple[str, Callable[[Image.Image, Path], None]]] = {
    "cmyk-jpeg": ("cmyk.jpg", lambda im, p: im.convert("CMYK").save(p, "JPEG", quality=95)),
    "16bit-png": ("gray16.png", _gray16),
    "grayscale": ("gray.png", lambda im, p: im.convert("L").save(p)),
    "rgba-png": ("rgba.png", _rgba),
    "palette-png": ("palette.png", lambda im, p: im.convert("P", palette=Image.Palette.ADAPTIVE).save(p)),
    "exif-rotated": ("rotated.jpg", _exif_rotated),
}


@pytest.fixture(scope="module")
def good_files(work: Path, photo: Image.Image, hot_dog: Image.Image) -> dict[str, Path]:
    folder = work / "good"
    folder.mkdir()
    files = {}
    for case, (name, make) in GOOD.items():
        make(photo, folder / name)
        files[case] = folder / name
    # Animated: the cat first, then a hot dog; only the first frame counts.
    photo.save(folder / "anim.gif", save_all=True, append_images=[hot_dog], duration=100, loop=0)
    files["animated-gif"] = folder / "anim.gif"
    return files


def test_good_files_really_are_unusual(good_files: dict[str, Path]) -> None:
    modes = {}
    for case, path in good_files.items():
        with Image.open(path) as im:
            modes[case] = (im.mode, getattr(im, "n_frames", 1), im.getexif().get(0x0112))
    assert modes["cmyk-jpeg"][0] == "CMYK"
    assert modes["16bit-png"][0].startswith("I")
    assert modes["grayscale"][0] == "L"
    assert modes["rgba-png"][0] == "RGBA"
    assert modes["palette-png"][0] == "P"
    assert modes["animated-gif"][1] == 2
    assert modes["exif-rotated"][2] == 6


@pytest.mark.parametrize("case", [*GOOD, "animated-gif"])
def test_unusual_image_classified(case: str, clf: Classifier, good_files: dict[str, Path], photo: Image.Image) -> None:
    result = clf.classify(good_files[case])
    assert result.index == CAT, (case, result.label, result.score)
    assert result.source == str(good_files[case])
    if case in ("cmyk-jpeg", "exif-rotated"):
        # Near-identical pixels to the photo itself: near-identical score.
        assert result.score == pytest.approx(clf.classify(photo).score, abs=0.05)
    if case == "rgba-png":
        # Exactly the photo with its transparent strip painted the (white) background.
        expected = np.array(photo)
        expected[:40] = 255
        assert result.scores == clf.classify(expected).scores


def test_exif_rotation_matters(clf: Classifier, good_files: dict[str, Path], photo: Image.Image) -> None:
    # Ignoring the EXIF tag would feed the sideways pixels: a visibly different answer.
    with Image.open(good_files["exif-rotated"]) as im:
        sideways = np.asarray(im.convert("RGB"))
    assert sideways.shape[:2] == photo.size  # stored sideways: width and height swapped
    assert clf.classify(sideways).score < clf.classify(good_files["exif-rotated"]).score - 0.2


def test_16bit_same_as_8bit(clf: Classifier, good_files: dict[str, Path]) -> None:
    # v*257 >> 8 == v: a 16-bit copy of a grayscale photo must classify exactly like the 8-bit one.
    assert clf.classify(good_files["16bit-png"]).scores == clf.classify(good_files["grayscale"]).scores


@pytest.mark.parametrize("case", [*GOOD, "animated-gif"])
def test_cli_classifies_unusual_image(case: str, model_args: list[str], good_files: dict[str, Path]) -> None:
    path = good_files[case]
    result = CliRunner().invoke(main, ["predict", *model_args, str(path)])
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert result.stdout.startswith(f"{path}: Egyptian cat ")


def test_cli_classifies_unusual_images(model_args: list[str], good_files: dict[str, Path]) -> None:
    paths = [str(p) for p in good_files.values()]
    result = CliRunner().invoke(main, ["predict", *model_args, *paths])
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    for path in paths:
        assert f"{path}: Egyptian cat" in result.stdout
    assert f"{len(paths)} classified, 0 failed" in result.stdout


def test_cli_bad_and_good_folder(
    model_args: list[str], work: Path, photo_path: Path, good_files: dict[str, Path]
) -> None:
    bad = [BAD[c].make(work, photo_path) for c in ("zero-byte", "text-named-jpg", "decompression-bomb")]
    result = CliRunner().invoke(main, ["predict", *model_args, *map(str, bad), str(good_files["rgba-png"].parent)])
    assert result.exit_code == 1
    assert sorted(line.split(": ")[1] for line in result.stderr.splitlines()) == sorted(map(str, bad))
    assert f"{len(good_files)} classified, 3 failed" in result.stdout


# -- unusable models and labels: exit status 2 ---------------------------------------------------


#: A converter-made model whose input is a [1, 6, 4] sequence, not an image (committed, written by
#: benchmarks/reliability/make_valid_models.py): the runtime's check is on the input's rank and channels, the
#: same branch for any non-image shape, so no TensorFlow process has to build one for this test.
NON_IMAGE_MODEL = Path(__file__).resolve().parent / "data" / "valid_models" / "lstm_float32.tflite"


@dataclass(frozen=True)
class BadModel:
    make: Callable[[Path, Path, Path], tuple[Path, Path | None]]  # (dir, model, labels) -> (model, labels)
    error: type[Exception]
    reason: str


def _text_model(d: Path, model: Path, labels: Path) -> tuple[Path, Path | None]:
    (d / "text.tflite").write_text("this is not a model\n" * 10)
    return d / "text.tflite", labels


def _image_as_model(d: Path, model: Path, labels: Path) -> tuple[Path, Path | None]:
    return model.parent / "images" / "cat.bmp", labels


def _empty_model(d: Path, model: Path, labels: Path) -> tuple[Path, Path | None]:
    (d / "empty.tflite").write_bytes(b"")
    return d / "empty.tflite", labels


def _truncated_model(d: Path, model: Path, labels: Path) -> tuple[Path, Path | None]:
    (d / "truncated.tflite").write_bytes(model.read_bytes()[:100_000])
    return d / "truncated.tflite", labels


def _missing_model(d: Path, model: Path, labels: Path) -> tuple[Path, Path | None]:
    return d / "missing.tflite", labels


def _short_labels(d: Path, model: Path, labels: Path) -> tuple[Path, Path | None]:
    lines = labels.read_text().splitlines()[:1000]
    (d / "labels1000.txt").write_text("\n".join(lines) + "\n")
    return model, d / "labels1000.txt"


def _missing_labels(d: Path, model: Path, labels: Path) -> tuple[Path, Path | None]:
    return model, d / "no-labels.txt"


BAD_MODELS = {
    "text-file": BadModel(_text_model, ModelError, "not a TFLite model"),
    "image-file": BadModel(_image_as_model, ModelError, "not a TFLite model"),
    "empty-file": BadModel(_empty_model, ModelError, "too small"),
    "truncated": BadModel(_truncated_model, ModelError, ""),
    "missing": BadModel(_missing_model, ModelError, "no such model file"),
    "labels-count": BadModel(_short_labels, MetadataError, "1000 labels for 1001 model outputs"),
    "labels-missing": BadModel(_missing_labels, MetadataError, "labels file not found"),
}


@pytest.mark.parametrize("case", sorted(BAD_MODELS))
def test_library_refuses_bad_model(case: str, work: Path, quant_model: Path, imagenet_labels: Path) -> None:
    bad = BAD_MODELS[case]
    model, labels = bad.make(work, quant_model, imagenet_labels)
    with pytest.raises(bad.error) as info:
        Classifier(model, labels=labels, num_threads=1)
    assert type(info.value) is bad.error
    assert bad.reason in info.value.reason
    assert info.value.source in (str(model), str(labels))


@pytest.mark.parametrize("case", sorted(BAD_MODELS))
def test_cli_exit_2_for_bad_model(
    case: str, work: Path, quant_model: Path, imagenet_labels: Path, cat_bmp: Path
) -> None:
    model, labels = BAD_MODELS[case].make(work, quant_model, imagenet_labels)
    args = ["predict", "--model", str(model), *(["--labels", str(labels)] if labels else []), str(cat_bmp)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    errors = result.stderr.splitlines()
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"error: {model}: ") or errors[0].startswith(f"error: {labels}: ")
    assert BAD_MODELS[case].reason in errors[0]
    assert result.stdout == ""


def test_non_image_model_refused(cat_bmp: Path) -> None:
    with pytest.raises(ModelError) as info:
        Classifier(NON_IMAGE_MODEL, num_threads=1)
    assert type(info.value) is ModelError
    assert info.value.source == str(NON_IMAGE_MODEL)
    assert "not an image" in info.value.reason
    assert "[1, 6, 4]" in info.value.reason

    result = CliRunner().invoke(main, ["predict", "--model", str(NON_IMAGE_MODEL), str(cat_bmp)])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [f"error: {NON_IMAGE_MODEL}: {info.value.reason}"]


def test_error_message_is_one_line_for_cli(work: Path, photo_path: Path, model_args: list[str]) -> None:
    # Pillow's multi-line messages never reach the user as more than one line.
    path = work / "garbage.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\xff" * 64)
    result = CliRunner().invoke(main, ["predict", *model_args, str(path)])
    assert result.exit_code == 1
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith(f"error: {path}: ")


def test_bytes_inputs_typed(clf: Classifier, photo_path: Path) -> None:
    with pytest.raises(ImageError, match="empty"):
        clf.classify(b"")
    with pytest.raises(ImageError, match="not a readable image"):
        clf.classify(b"plain text")
    data = photo_path.read_bytes()
    with pytest.raises(ImageError, match="truncated"):
        clf.classify(data[: len(data) // 2])
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "PNG")
    assert clf.classify(buf.getvalue()).source == "<bytes>"
