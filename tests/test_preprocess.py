"""Preprocessing behaviour on real photos: decoding every common mode, EXIF, draft decoding, crops, spec I/O."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from skinedge.errors import ImageError, ImageTooLargeError, MetadataError
from skinedge.preprocess import (
    DEFAULT_SPEC,
    SPEC_VERSION,
    ImageLimits,
    PreprocessSpec,
    decode,
    prepare,
    resize,
)

# What an EXIF Orientation value asks the viewer to do to the stored pixels to show them upright,
# and the inverse (used to build a stored image from an upright one).
TO_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
TO_STORED = {**TO_UPRIGHT, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}


@pytest.fixture(scope="module")
def photo(reference_dir: Path) -> Image.Image:
    """A real 1280x720 RGB photo."""
    with Image.open(reference_dir / "images" / "cat_720p.jpg") as im:
        return im.convert("RGB")


@pytest.fixture(scope="module")
def small_photo(photo: Image.Image) -> Image.Image:
    """A 320x240 crop of the real photo (not square, so rotations change the shape)."""
    return photo.crop((400, 100, 720, 340))


def _diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.int16) - b.astype(np.int16))


# -- shape, dtype, reference behaviour ------------------------------------------------------------


@pytest.mark.parametrize("size", [(224, 224), (160, 200), (96, 128)])
def test_prepare_shape_and_dtype(cat_bmp: Path, size: tuple[int, int]) -> None:
    spec = PreprocessSpec(height=size[0], width=size[1])
    out = prepare(cat_bmp, spec)
    assert out.shape == (size[0], size[1], 3)
    assert out.dtype == np.uint8
    assert out.flags["C_CONTIGUOUS"]


def test_prepare_is_pil_bilinear_resize_of_rgb(cat_bmp: Path) -> None:
    # The reference models' known answers were computed this way (README): RGB, PIL bilinear to 224.
    with Image.open(cat_bmp) as im:
        expected = np.asarray(im.convert("RGB").resize((224, 224), Image.Resampling.BILINEAR))
    assert np.array_equal(prepare(cat_bmp, PreprocessSpec(jpeg_draft=False)), expected)


def test_all_input_kinds_prepare_identically(cat_bmp: Path) -> None:
    data = cat_bmp.read_bytes()
    with Image.open(cat_bmp) as im:
        array = np.asarray(im.convert("RGB"))
    results = [
        prepare(cat_bmp),
        prepare(str(cat_bmp)),
        prepare(data),
        prepare(bytearray(data)),
        prepare(memoryview(data)),
        prepare(Image.open(cat_bmp)),
        prepare(array),
    ]
    for r in results[1:]:
        assert np.array_equal(r, results[0])


def test_array_of_model_size_passes_through_unchanged() -> None:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, size=(224, 224, 3), dtype=np.uint8)
    assert np.array_equal(prepare(arr), arr)


@pytest.mark.parametrize(
    "bad",
    [np.zeros((10, 10), np.uint8), np.zeros((10, 10, 4), np.uint8), np.zeros((10, 10, 3), np.float32)],
    ids=["2d", "4-channel", "float"],
)
def test_wrong_arrays_refused(bad: np.ndarray) -> None:
    with pytest.raises(ImageError) as info:
        prepare(bad)
    assert info.value.source == "<array>"


# -- EXIF orientation ----------------------------------------------------------------------------


@pytest.mark.parametrize("orientation", sorted(TO_UPRIGHT))
def test_exif_orientation_applied(tmp_path: Path, small_photo: Image.Image, orientation: int) -> None:
    stored = small_photo.transpose(TO_STORED[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"rotated_{orientation}.jpg"
    stored.save(path, "JPEG", quality=95, exif=exif)

    with Image.open(path) as im:
        assert im.getexif()[0x0112] == orientation
        manual = im.convert("RGB").transpose(TO_UPRIGHT[orientation])

    decoded = decode(path)
    assert decoded.mode == "RGB"
    assert decoded.size == small_photo.size == manual.size
    assert np.array_equal(np.asarray(decoded), np.asarray(manual))
    # And it is the upright photo (up to JPEG loss), not merely some transposition of it.
    assert _diff(np.asarray(decoded), np.asarray(small_photo)).mean() < 3
    # Every input kind gets the same treatment, and prepare resizes the upright image.
    spec = PreprocessSpec(height=120, width=160)
    expected = resize(manual, spec)
    assert np.array_equal(prepare(path, spec), expected)
    assert np.array_equal(prepare(path.read_bytes(), spec), expected)
    assert np.array_equal(prepare(Image.open(path), spec), expected)


# -- colour modes ---------------------------------------------------------------------------------


def test_rgba_composited_over_spec_background(tmp_path: Path) -> None:
    rgba = np.zeros((224, 224, 4), np.uint8)
    rgba[:, :, :3] = (200, 10, 30)
    rgba[:, :100, 3] = 0  # transparent
    rgba[:, 100:124, 3] = 128  # half transparent
    rgba[:, 124:, 3] = 255  # opaque
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba, "RGBA").save(path)

    background = (0, 128, 255)
    out = prepare(path, PreprocessSpec(alpha_background=background))
    assert (out[:, :100] == background).all()
    assert (out[:, 124:] == (200, 10, 30)).all()
    blend = out[:, 100:124].reshape(-1, 3)
    expected = np.array([(200 * 128 + 0 * 127) / 255, (10 * 128 + 128 * 127) / 255, (30 * 128 + 255 * 127) / 255])
    assert np.abs(blend - expected).max() <= 1.5

    white = prepare(path)  # default spec: white background
    assert DEFAULT_SPEC.alpha_background == (255, 255, 255)
    assert (white[:, :100] == 255).all()


def test_la_composited_over_background(tmp_path: Path) -> None:
    la = np.zeros((64, 64, 2), np.uint8)
    la[:, :, 0] = 90
    la[:32, :, 1] = 0
    la[32:, :, 1] = 255
    path = tmp_path / "la.png"
    Image.fromarray(la, "LA").save(path)
    out = np.asarray(decode(path, background=(10, 20, 30)))
    assert (out[:32] == (10, 20, 30)).all()
    assert (out[32:] == 90).all()


def test_palette_with_transparency(tmp_path: Path) -> None:
    pal = Image.new("P", (64, 64), 0)
    pal.putpalette([0, 0, 0, 250, 20, 20, 20, 250, 20] + [0] * (256 * 3 - 9))
    pixels = np.zeros((64, 64), np.uint8)
    pixels[:, 16:40] = 1
    pixels[:, 40:] = 2
    pal.putdata(pixels.ravel().tolist())
    path = tmp_path / "palette.png"
    pal.save(path, transparency=0)
    with Image.open(path) as im:
        assert im.mode == "P" and "transparency" in im.info

    out = np.asarray(decode(path, background=(1, 2, 3)))
    assert (out[:, :16] == (1, 2, 3)).all()
    assert (out[:, 16:40] == (250, 20, 20)).all()
    assert (out[:, 40:] == (20, 250, 20)).all()


def test_palette_without_transparency(tmp_path: Path, small_photo: Image.Image) -> None:
    pal = small_photo.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    path = tmp_path / "palette.png"
    pal.save(path)
    out = np.asarray(decode(path))
    assert np.array_equal(out, np.asarray(pal.convert("RGB")))
    assert _diff(out, np.asarray(small_photo)).mean() < 12  # still the photo


def test_grayscale_l(tmp_path: Path, small_photo: Image.Image) -> None:
    gray = small_photo.convert("L")
    path = tmp_path / "gray.png"
    gray.save(path)
    out = np.asarray(decode(path))
    assert out.shape == (240, 320, 3)
    for c in range(3):
        assert np.array_equal(out[:, :, c], np.asarray(gray))


def test_cmyk_jpeg(tmp_path: Path, small_photo: Image.Image) -> None:
    path = tmp_path / "cmyk.jpg"
    small_photo.convert("CMYK").save(path, "JPEG", quality=95)
    with Image.open(path) as im:
        assert im.mode == "CMYK"
    out = np.asarray(decode(path))
    assert out.shape == (240, 320, 3)
    # Colours survive (an inverted or channel-swapped decode would be far off).
    assert _diff(out, np.asarray(small_photo)).mean() < 3
    assert prepare(path).shape == (224, 224, 3)


def test_16bit_grayscale_png_scaled_not_clipped(tmp_path: Path) -> None:
    values = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)
    values[0, 0], values[0, 1], values[0, 2], values[0, 3] = 0, 0x00FF, 0x8000, 0xFFFF
    path = tmp_path / "gray16.png"
    Image.fromarray(values).save(path)
    with Image.open(path) as im:
        assert im.mode.startswith("I")  # really a 16-bit image
    out = np.asarray(decode(path))
    assert out.dtype == np.uint8 and out.shape == (64, 64, 3)
    assert np.array_equal(out[:, :, 0], (values >> 8).astype(np.uint8))
    assert np.array_equal(out[:, :, 0], out[:, :, 2])
    # 0x00FF is dark (0), 0x8000 is mid-grey (128): clipping at 255 would make both 255.
    assert list(out[0, :4, 0]) == [0, 0, 128, 255]


def test_animated_gif_first_frame(tmp_path: Path) -> None:
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    frames = [Image.new("RGB", (64, 48), c) for c in colours]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    with Image.open(path) as im:
        assert im.is_animated and im.n_frames == 3
    out = np.asarray(decode(path))
    assert out.shape == (48, 64, 3)
    assert (out == (255, 0, 0)).all()


# -- JPEG draft ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_jpeg(tmp_path_factory: pytest.TempPathFactory, photo: Image.Image) -> Path:
    """A 4000x3000 JPEG made by upscaling a real photo."""
    path = tmp_path_factory.mktemp("big") / "big.jpg"
    photo.resize((4000, 3000), Image.Resampling.BILINEAR).save(path, "JPEG", quality=90)
    return path


def test_jpeg_draft_decodes_smaller(big_jpeg: Path) -> None:
    assert decode(big_jpeg).size == (4000, 3000)
    small = decode(big_jpeg, draft_size=(224, 224))
    assert small.size[0] <= 1000 and small.size[1] <= 750  # DCT scaling: 1/4 or smaller
    assert min(small.size) >= 224  # still covers the target


def test_jpeg_draft_output_close_to_full_decode(big_jpeg: Path) -> None:
    drafted = prepare(big_jpeg, PreprocessSpec(jpeg_draft=True))
    full = prepare(big_jpeg, PreprocessSpec(jpeg_draft=False))
    assert drafted.shape == full.shape == (224, 224, 3)
    assert not np.array_equal(drafted, full)  # the draft path really ran
    assert _diff(drafted, full).max() <= 8


def test_callers_pil_image_not_modified(big_jpeg: Path) -> None:
    with Image.open(big_jpeg) as im:  # opened lazily: draft() on it would shrink the caller's object
        out = prepare(im, PreprocessSpec(jpeg_draft=True))
        assert im.size == (4000, 3000)
        assert np.array_equal(out, prepare(big_jpeg, PreprocessSpec(jpeg_draft=False)))


def test_jpeg_draft_with_exif_rotation(tmp_path: Path, photo: Image.Image) -> None:
    # Stored 3000x1000 with orientation 6 (upright it is 1000x3000): both sides must stay >= target.
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "tall.jpg"
    photo.resize((3000, 1000)).save(path, "JPEG", quality=90, exif=exif)
    decoded = decode(path, draft_size=(224, 224))
    assert decoded.size[0] < decoded.size[1]  # upright: portrait
    assert min(decoded.size) >= 224
    full = prepare(path, PreprocessSpec(jpeg_draft=False))
    assert _diff(prepare(path), full).mean() < 2


def test_draft_ignored_for_png(tmp_path: Path, photo: Image.Image) -> None:
    path = tmp_path / "big.png"
    photo.save(path)
    assert decode(path, draft_size=(224, 224)).size == photo.size


# -- aspect handling -----------------------------------------------------------------------------


def _bands(w: int, h: int, horizontal: bool) -> Image.Image:
    """Red | green | blue bands; the green one is the centred square."""
    arr = np.zeros((h, w, 3), np.uint8)
    if horizontal:
        side = h
        lo, hi = (w - side) // 2, (w + side) // 2
        arr[:, :lo] = (255, 0, 0)
        arr[:, lo:hi] = (0, 255, 0)
        arr[:, hi:] = (0, 0, 255)
    else:
        side = w
        lo, hi = (h - side) // 2, (h + side) // 2
        arr[:lo] = (255, 0, 0)
        arr[lo:hi] = (0, 255, 0)
        arr[hi:] = (0, 0, 255)
    return Image.fromarray(arr, "RGB")


@pytest.mark.parametrize("horizontal", [True, False], ids=["landscape", "portrait"])
def test_center_crop_vs_squash(horizontal: bool) -> None:
    image = _bands(300, 200, True) if horizontal else _bands(200, 300, False)
    crop = resize(image, PreprocessSpec(aspect="center_crop"))
    squash = resize(image, PreprocessSpec(aspect="squash"))
    assert crop.shape == squash.shape == (224, 224, 3)
    # center_crop keeps only the green square (borders may blend a pixel or two).
    assert (crop[2:-2, 2:-2] == (0, 255, 0)).all()
    # squash keeps the whole picture: red at one end, blue at the other.
    first, last = (squash[:, 0], squash[:, -1]) if horizontal else (squash[0], squash[-1])
    assert (first == (255, 0, 0)).all()
    assert (last == (0, 0, 255)).all()


def test_center_crop_close_to_crop_then_resize(photo: Image.Image) -> None:
    w, h = photo.size  # 1280x720 -> centred 720x720
    expected = np.asarray(photo.crop(((w - h) // 2, 0, (w + h) // 2, h)).resize((224, 224), Image.Resampling.BILINEAR))
    out = resize(photo, PreprocessSpec(aspect="center_crop"))
    assert _diff(out, expected).max() <= 3


def test_non_square_target(photo: Image.Image) -> None:
    out = resize(photo, PreprocessSpec(height=120, width=240, aspect="center_crop"))
    assert out.shape == (120, 240, 3)


# -- limits --------------------------------------------------------------------------------------


def test_pixel_limit_checked_from_header(cat_bmp: Path) -> None:
    with pytest.raises(ImageTooLargeError) as info:
        prepare(cat_bmp, limits=ImageLimits(max_pixels=1000))
    assert info.value.source == str(cat_bmp)
    assert "pixels" in info.value.reason


def test_file_size_limit(cat_bmp: Path) -> None:
    with pytest.raises(ImageTooLargeError):
        prepare(cat_bmp, limits=ImageLimits(max_file_bytes=1000))
    with pytest.raises(ImageTooLargeError):
        prepare(cat_bmp.read_bytes(), limits=ImageLimits(max_file_bytes=1000))


def test_array_pixel_limit() -> None:
    with pytest.raises(ImageTooLargeError):
        prepare(np.zeros((100, 100, 3), np.uint8), limits=ImageLimits(max_pixels=9999))


def test_unsupported_input_type() -> None:
    with pytest.raises(ImageError):
        prepare(12345)  # type: ignore[arg-type]


# -- spec serialisation --------------------------------------------------------------------------


def test_spec_round_trip() -> None:
    spec = PreprocessSpec(
        height=192, width=256, resize_filter="lanczos", aspect="center_crop", jpeg_draft=False,
        alpha_background=(1, 2, 3),
    )
    d = json.loads(json.dumps(spec.to_dict()))  # JSON-ready
    assert d["alpha_background"] == [1, 2, 3]
    assert d["version"] == SPEC_VERSION
    back = PreprocessSpec.from_dict(d)
    assert back == spec
    assert back.alpha_background == (1, 2, 3)
    assert PreprocessSpec.from_dict(DEFAULT_SPEC.to_dict()) == DEFAULT_SPEC
    assert PreprocessSpec.from_dict({}) == DEFAULT_SPEC  # missing fields take defaults


def test_spec_unknown_field_refused() -> None:
    d = {**DEFAULT_SPEC.to_dict(), "gamma": 2.2}
    with pytest.raises(MetadataError, match="gamma"):
        PreprocessSpec.from_dict(d, "model.tflite")


def test_spec_newer_version_refused() -> None:
    d = {**DEFAULT_SPEC.to_dict(), "version": SPEC_VERSION + 1}
    with pytest.raises(MetadataError, match="upgrade") as info:
        PreprocessSpec.from_dict(d, "model.tflite")
    assert info.value.source == "model.tflite"


@pytest.mark.parametrize(
    "field, value",
    [
        ("resize_filter", "cubic"),
        ("aspect", "pad"),
        ("height", 0),
        ("height", "tall"),
        ("alpha_background", "white"),
        ("alpha_background", [255, 255]),
        ("alpha_background", [300, 0, 0]),
        ("std", 0.0),  # (the std check that lived in ModelMetadata until spec v2)
        ("std", [58.4, 57.1, -57.4]),
        ("mean", [123.7, 116.3]),
        ("mean", "grey"),
        ("version", "one"),
    ],
)
def test_spec_invalid_values_refused(field: str, value: object) -> None:
    with pytest.raises(MetadataError):
        PreprocessSpec.from_dict({**DEFAULT_SPEC.to_dict(), field: value})


def test_spec_constructor_validates() -> None:
    with pytest.raises(ValueError):
        PreprocessSpec(resize_filter="cubic")
    with pytest.raises(ValueError):
        PreprocessSpec(aspect="pad")
    with pytest.raises(ValueError):
        PreprocessSpec(width=0)
    with pytest.raises(ValueError):
        PreprocessSpec(alpha_background=(0, 0))  # would silently composite over (0, 0, 255)


def test_bytes_input_from_buffer(small_photo: Image.Image) -> None:
    buf = io.BytesIO()
    small_photo.save(buf, "PNG")
    out = np.asarray(decode(buf.getvalue()))
    assert np.array_equal(out, np.asarray(small_photo))


@pytest.mark.parametrize("fmt", ["PPM", "TGA", "ICO", "PCX"])
def test_non_photo_formats_are_refused_before_decoding(fmt):
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 10, 10)).save(buf, fmt)
    with pytest.raises(ImageError, match="not a readable image in a supported format"):
        prepare(buf.getvalue())


def test_eps_never_reaches_ghostscript():
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"
    with pytest.raises(ImageError, match="not a readable image in a supported format"):
        prepare(eps)
