"""Image decoding and preprocessing: the only implementation, shared by inference and training.

The training tools (``skinedge_tools``) build their arrays with :func:`prepare`, and the spec that
drove it is written into the model's metadata, so a model and the runtime that feeds it cannot drift
apart (the idea of timm's data config).

Two steps, timed separately by the classifier:

* :func:`decode` turns a path, bytes, PIL image or array into an upright RGB ``PIL.Image``: EXIF
  orientation applied; RGBA, palette, grayscale, CMYK and 16-bit images converted to 8-bit RGB; large
  JPEGs decoded in the DCT domain at a reduced scale (``draft``), which is ~4x faster on a 12 MP photo;
  inputs above :class:`ImageLimits` refused from their header before any pixel is decoded.
* :func:`resize` maps that image to the model's input, an ``HxWx3`` uint8 array, with an
  antialiased filter (Pillow's resize is a true convolution, so a 4000 px photo does not alias).
"""

from __future__ import annotations

import importlib
import io
import os
import re
import stat
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from skinedge.errors import ImageError, ImageTooLargeError, MetadataError
from skinedge.quality import PhotoQuality, assess

#: What :func:`decode` accepts: a file path, encoded bytes, a PIL image or an HxWx3 uint8 RGB array.
ImageInput = str | os.PathLike | bytes | bytearray | memoryview | Image.Image | np.ndarray

#: File suffixes treated as images when scanning folders.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jfif", ".jpe", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})

#: Pillow decoders skinedge lets near untrusted bytes: photo formats only. Others (EPS, which runs
#: Ghostscript; PSD, ICNS, FITS...) are refused as "not a readable image". The JPEG decoder also
#: opens MPO, the multi-picture JPEG that phone cameras write.
DECODE_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")
#: The Pillow plugin that decodes each of those, imported when a file needs it (all six cost a cold start
#: ~8 ms). Each must be imported before Image.open tries its format, or Pillow imports every plugin it has.
_PLUGINS = {"JPEG": "JpegImagePlugin", "PNG": "PngImagePlugin", "WEBP": "WebPImagePlugin", "BMP": "BmpImagePlugin",
            "GIF": "GifImagePlugin", "TIFF": "TiffImagePlugin"}
#: The first bytes each plugin accepts (its ``_accept``; WebP: ``RIFF`` + 4 bytes + ``WEBP``). No two formats
#: share any, so trying only the format a file's first bytes name opens, or refuses, what trying all six would.
_SIGNATURES = {
    "JPEG": (b"\xff\xd8\xff",),
    "PNG": (b"\x89PNG\r\n\x1a\n",),
    "BMP": (b"BM",),
    "GIF": (b"GIF87a", b"GIF89a"),
    "TIFF": (b"MM\x00\x2a", b"II\x2a\x00", b"MM\x2a\x00", b"II\x00\x2a", b"MM\x00\x2b", b"II\x2b\x00"),
}

_EXIF_ORIENTATION = 0x0112
#: ``image.info`` key where :func:`decode` records a drafted picture's full (upright) size.
_FULL_SIZE_KEY = "skinedge_full_size"

#: The newest preprocessing-spec version this runtime implements. v2 added ``mean`` and ``std`` (in v1 they
#: sat in the metadata's ``input`` section; :meth:`PreprocessSpec.from_dict` still reads them from there).
SPEC_VERSION = 2
#: Fields each spec version may hold beyond v1's.
_FIELDS_SINCE = {"mean": 2, "std": 2}

_FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
}
_ASPECTS = ("squash", "center_crop")

#: A normalisation constant: one value for all channels, or one per channel (R, G, B).
Norm = float | tuple[float, float, float]


@dataclass(frozen=True)
class PreprocessSpec:
    """How a photo becomes the model's input tensor; stored in the model's metadata.

    Attributes:
        height, width: the model's input size in pixels.
        resize_filter: Pillow resampling filter (antialiased when downscaling): one of
            ``nearest``, ``bilinear``, ``bicubic``, ``lanczos``, ``box``.
        aspect: ``squash`` resizes the whole photo to ``height x width`` (no crop);
            ``center_crop`` first crops the largest centred region of the target aspect ratio.
        jpeg_draft: decode JPEGs at the smallest DCT scale (1/2, 1/4, 1/8) that still covers the
            target size before resizing.
        alpha_background: RGB colour that transparent pixels are composited over.
        mean, std: the normalisation of float input tensors, one value or one per RGB channel (as in timm's
            data config, on the 0..255 scale): ``(pixel - mean) / std`` is fed. Quantized (uint8/int8) input
            tensors ignore them, as they ignore the tensor's scale and zero point: the converter folded the
            normalisation into those, so raw pixel codes are fed (see :func:`to_input_tensor`).
        version: spec version; a model needing a newer one than :data:`SPEC_VERSION` is refused.
    """

    height: int = 224
    width: int = 224
    resize_filter: str = "bilinear"
    aspect: str = "squash"
    jpeg_draft: bool = True
    alpha_background: tuple[int, int, int] = (255, 255, 255)
    mean: Norm = 0.0
    std: Norm = 1.0
    version: int = SPEC_VERSION

    def __post_init__(self) -> None:
        for name in ("mean", "std"):  # one canonical form (float or 3-tuple), so equal specs compare equal
            object.__setattr__(self, name, _norm(name, getattr(self, name)))
        if not all(v > 0 for v in np.atleast_1d(self.std)):
            raise ValueError(f"std must be positive, got {self.std!r}")
        if self.resize_filter not in _FILTERS:
            raise ValueError(f"resize_filter must be one of {sorted(_FILTERS)}, got {self.resize_filter!r}")
        if self.aspect not in _ASPECTS:
            raise ValueError(f"aspect must be one of {_ASPECTS}, got {self.aspect!r}")
        if self.height < 1 or self.width < 1:
            raise ValueError(f"input size must be positive, got {self.height}x{self.width}")
        if len(self.alpha_background) != 3 or not all(0 <= c <= 255 for c in self.alpha_background):
            raise ValueError(f"alpha_background must be an RGB triple in 0..255, got {self.alpha_background!r}")

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form written into model metadata."""
        d = asdict(self)
        for name in ("alpha_background", "mean", "std"):
            if isinstance(d[name], tuple):
                d[name] = list(d[name])
        return d

    @classmethod
    def from_dict(
        cls, d: dict[str, Any], source: str = "<metadata>", *, v1_norm: tuple[Any, Any] = (0.0, 1.0)
    ) -> PreprocessSpec:
        """Read a spec from model metadata; refuse versions and fields this runtime does not know.

        A v1 spec has no ``mean``/``std``: they came from the metadata's ``input`` section, which the caller
        passes as ``v1_norm``. The spec returned is always of the current version (what it means, not how it
        was written), so the same preprocessing compares equal whichever version stored it.
        """
        try:
            version = int(d.get("version", 1))
        except (TypeError, ValueError):
            raise MetadataError(source, f"invalid preprocessing spec version {d.get('version')!r}") from None
        if version > SPEC_VERSION:
            raise MetadataError(
                source,
                f"model needs preprocessing spec v{version}, this skinedge implements v{SPEC_VERSION}: "
                "upgrade skinedge",
            )
        known = {f for f in cls.__dataclass_fields__ if _FIELDS_SINCE.get(f, 1) <= version}
        unknown = set(d) - known
        if unknown:
            raise MetadataError(source, f"unknown preprocessing fields {sorted(unknown)} (spec v{version})")
        kwargs = {**dict(zip(("mean", "std"), v1_norm)), **d} if version < 2 else dict(d)
        kwargs["version"] = SPEC_VERSION
        try:
            if "alpha_background" in kwargs:
                kwargs["alpha_background"] = tuple(int(c) for c in kwargs["alpha_background"])
            return cls(**kwargs)
        except (TypeError, ValueError) as exc:
            raise MetadataError(source, f"invalid preprocessing spec: {exc}") from None


def _norm(name: str, value: Any) -> Norm:
    """``value`` as a float or a tuple of three floats (what ``mean``/``std`` hold); ValueError otherwise."""
    if isinstance(value, (list, tuple)):
        if len(value) != 3:
            raise ValueError(f"{name} must be one value or one per RGB channel, got {list(value)!r}")
        out: Norm = tuple(float(v) for v in value)  # type: ignore[assignment]
    elif isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
        out = float(value)
    else:
        raise ValueError(f"{name} must be a number or three numbers, got {value!r}")
    if not np.all(np.isfinite(out)):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return out


@dataclass(frozen=True)
class ImageLimits:
    """Resource limits checked before decoding (decompression-bomb and huge-file guard).

    The defaults admit a 108 MP phone photo (12000 x 9000) and refuse a 50,000 x 50,000 PNG or a
    1 GB file from the header or file size alone, without reading the pixels.
    """

    max_pixels: int = 120_000_000
    max_file_bytes: int = 100 * 1024 * 1024


# Pillow warns (rather than fails) on these; skinedge decides for itself: its own pixel limit replaces
# the bomb warning (Pillow's hard bomb error still stops us early), and a photo with damaged EXIF is still
# a photo. Module-level filters, because ``warnings.catch_warnings`` is not thread-safe and decoding runs
# on worker threads.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
warnings.filterwarnings("ignore", message="Corrupt EXIF data", category=UserWarning)
warnings.filterwarnings("ignore", message="Possibly corrupt EXIF", category=UserWarning)

DEFAULT_SPEC = PreprocessSpec()
DEFAULT_LIMITS = ImageLimits()


@dataclass
class _Opened:
    image: Image.Image
    source: str
    _keep: list[Any] = field(default_factory=list)


def describe_source(source: ImageInput) -> str:
    """A short name for an input, used in error messages and results."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "<bytes>"
    if isinstance(source, Image.Image):
        return getattr(source, "filename", "") or "<PIL image>"
    if isinstance(source, np.ndarray):
        return "<array>"
    return f"<{type(source).__name__}>"


def _open(source: ImageInput, limits: ImageLimits) -> _Opened:
    name = describe_source(source)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        try:
            st = path.stat()
        except FileNotFoundError:
            raise ImageError(name, "no such file") from None
        except OSError as exc:
            raise ImageError(name, f"cannot read file ({exc.strerror or exc})") from None
        size = st.st_size
        if stat.S_ISDIR(st.st_mode):
            raise ImageError(name, "is a directory, not an image file")
        if not stat.S_ISREG(st.st_mode):  # opening a FIFO would block; a device could stream forever
            raise ImageError(name, f"is not a regular file (a {_file_kind(st.st_mode)}), so not an image file")
        if size == 0:
            raise ImageError(name, "empty file (0 bytes)")
        if size > limits.max_file_bytes:
            raise ImageTooLargeError(name, f"file is {size} bytes, above the limit of {limits.max_file_bytes}")
        try:
            fp: Any = open(path, "rb")
        except OSError as exc:
            raise ImageError(name, f"cannot open file ({exc.strerror or exc})") from None
    elif isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise ImageError(name, "empty input (0 bytes)")
        if len(source) > limits.max_file_bytes:
            raise ImageTooLargeError(name, f"input is {len(source)} bytes, above the limit of {limits.max_file_bytes}")
        fp = io.BytesIO(bytes(source))
    else:
        raise ImageError(name, "expected a path, bytes, a PIL image or an HxWx3 uint8 array")
    try:
        image = Image.open(fp, formats=_formats_to_try(fp))
    except Image.DecompressionBombError as exc:
        fp.close()
        raise _bomb_error(name, exc, limits) from None
    except Image.UnidentifiedImageError:
        fp.close()
        raise ImageError(name, f"not a readable image in a supported format ({', '.join(DECODE_FORMATS)})") from None
    except Exception as exc:  # Pillow raises many types on garbage; all mean "not an image".
        fp.close()
        raise ImageError(name, f"not a readable image ({_short(exc)})") from None
    return _Opened(image=image, source=name, _keep=[fp])


def _formats_to_try(fp: Any) -> tuple[str, ...]:
    """The one format ``fp``'s first bytes name, else all of :data:`DECODE_FORMATS`; their plugins imported."""
    prefix = fp.read(16)
    fp.seek(0)
    if prefix[:4] == b"RIFF" and prefix[8:12] == b"WEBP":
        formats: tuple[str, ...] = ("WEBP",)
    else:
        formats = next(((f,) for f, signatures in _SIGNATURES.items() if prefix.startswith(signatures)), DECODE_FORMATS)
    for f in formats:
        importlib.import_module(f"PIL.{_PLUGINS[f]}")
    # Image.open of a file object would still import Pillow's five common plugins first (``preinit``, ~6 ms).
    # Marking that step done is safe: the plugins needed here are registered, and whenever Pillow finds a
    # format missing later (this process's other opens and saves) it imports every plugin (``init``).
    if getattr(Image, "_initialized", None) == 0:
        Image._initialized = 1
    return formats


def _file_kind(mode: int) -> str:
    kinds = ((stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"),
             (stat.S_ISBLK, "block device"))
    return next((kind for test, kind in kinds if test(mode)), "special file")


def _bomb_error(name: str, exc: Exception, limits: ImageLimits) -> ImageTooLargeError:
    """Pillow's own hard limit fired before skinedge saw the size: word it with skinedge's limit."""
    match = re.search(r"\((\d+) pixels\)", str(exc))
    pixels = int(match.group(1)) if match else None
    if pixels is not None and pixels <= limits.max_pixels:  # limits raised above what Pillow will decode
        limit = "Pillow's own hard limit, which skinedge does not lift"
    else:
        limit = f"the limit of {limits.max_pixels}"
    what = f"{pixels} pixels" if pixels is not None else "too many pixels"
    return ImageTooLargeError(name, f"image is {what}, above {limit} (refused from its header as a decompression bomb)")


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def _check_size(size: tuple[int, int], name: str, limits: ImageLimits) -> None:
    w, h = size
    if w < 1 or h < 1:
        raise ImageError(name, f"image has no pixels ({w}x{h})")
    if w * h > limits.max_pixels:
        raise ImageTooLargeError(name, f"image is {w}x{h} = {w * h} pixels, above the limit of {limits.max_pixels}")


def _to_rgb(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I;16") or mode in ("I", "F"):
        # 16-bit (and 32-bit) grayscale: keep the top 8 bits rather than letting Pillow clip at 255.
        arr = np.asarray(image)
        if mode != "F":
            arr = arr.astype(np.int64) >> 8 if mode.startswith("I;16") or arr.max() > 255 else arr
        gray = np.clip(arr, 0, 255).astype(np.uint8)
        return Image.fromarray(np.repeat(gray[:, :, None], 3, axis=2), "RGB")
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info)
    if has_alpha:
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*background, 255))
        canvas.alpha_composite(rgba)
        return canvas.convert("RGB")
    return image.convert("RGB")


def decode(
    source: ImageInput,
    *,
    draft_size: tuple[int, int] | None = None,
    background: tuple[int, int, int] = DEFAULT_SPEC.alpha_background,
    limits: ImageLimits = DEFAULT_LIMITS,
) -> Image.Image:
    """Decode ``source`` into an upright 8-bit RGB image.

    Args:
        source: file path, encoded bytes, a PIL image, or an ``HxWx3`` uint8 RGB array.
        draft_size: if given and the input is a JPEG file or bytes, decode at the smallest DCT
            scale whose size is still at least this (width, height). A caller's PIL image is
            decoded as it is (drafting it would shrink the caller's object).
        background: colour transparent pixels are composited over.
        limits: pixel and byte limits checked before decoding.

    Raises:
        ImageError: the input is missing, empty, not an image, truncated or undecodable.
        ImageTooLargeError: the input is above ``limits``.
    """
    name = describe_source(source)
    if isinstance(source, np.ndarray):
        if source.dtype != np.uint8 or source.ndim != 3 or source.shape[2] != 3:
            raise ImageError(name, f"expected an HxWx3 uint8 RGB array, got shape {source.shape} {source.dtype}")
        _check_size((source.shape[1], source.shape[0]), name, limits)
        return Image.fromarray(np.ascontiguousarray(source), "RGB")
    if isinstance(source, Image.Image):
        opened = _Opened(image=source, source=name)
    else:
        opened = _open(source, limits)
    try:
        image = opened.image
        _check_size(image.size, name, limits)
        # Draft only what skinedge opened itself: a caller's PIL image is theirs to keep at full size.
        full = image.size
        if draft_size is not None and image.format in ("JPEG", "MPO") and opened._keep:
            side = max(draft_size)  # square request: valid whatever the EXIF rotation is
            image.draft(image.mode, (side, side))
        image.load()
        drafted = image.size != full
        orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
        if orientation != 1:  # exif_transpose copies even when upright
            from PIL import ImageOps  # only for photos stored rotated: its imports cost every start ~1.5 ms

            image = ImageOps.exif_transpose(image)
            if orientation in (5, 6, 7, 8):  # a quarter turn: the upright photo's width is its stored height
                full = full[::-1]
        rgb = _to_rgb(image, background)
        if drafted:  # only on pictures skinedge opened itself (never a caller's PIL image)
            rgb.info[_FULL_SIZE_KEY] = full
        return rgb
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise _bomb_error(name, exc, limits) from None
    except Exception as exc:  # truncated data, bad EXIF, unsupported modes: all typed for the caller
        raise ImageError(name, f"cannot decode image ({_short(exc)})") from None
    finally:
        for fp in opened._keep:
            fp.close()


def resize(image: Image.Image, spec: PreprocessSpec = DEFAULT_SPEC) -> np.ndarray:
    """Map a decoded RGB image to the model input: a C-contiguous ``(height, width, 3)`` uint8 array."""
    w, h = image.size
    box: tuple[float, float, float, float] = (0, 0, w, h)
    if spec.aspect == "center_crop":
        target = spec.width / spec.height
        if w / h > target:
            cw = h * target
            box = ((w - cw) / 2, 0, (w + cw) / 2, h)
        else:
            ch = w / target
            box = (0, (h - ch) / 2, w, (h + ch) / 2)
    if image.size != (spec.width, spec.height) or box != (0, 0, w, h):
        image = image.resize((spec.width, spec.height), _FILTERS[spec.resize_filter], box=box)
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8))


def decode_for(source: ImageInput, spec: PreprocessSpec = DEFAULT_SPEC, limits: ImageLimits = DEFAULT_LIMITS
               ) -> Image.Image:
    """:func:`decode` as ``spec`` asks (JPEG draft scale, alpha background): the picture the model's input is
    resized from."""
    draft = (spec.width, spec.height) if spec.jpeg_draft else None
    return decode(source, draft_size=draft, background=spec.alpha_background, limits=limits)


def prepare(
    source: ImageInput, spec: PreprocessSpec = DEFAULT_SPEC, limits: ImageLimits = DEFAULT_LIMITS
) -> np.ndarray:
    """Decode and resize in one call: exactly what the model sees. Training arrays are built with this."""
    return resize(decode_for(source, spec, limits), spec)


@dataclass(frozen=True)
class Prepared:
    """A photo made ready for one model, by :func:`prepare_photo` (``Classifier.prepare``): the one prepare step
    of every surface. Pass it to ``Classifier.classify`` / ``explain`` to skip decoding; draw overlays on
    ``image`` instead of decoding the photo again.

    Attributes:
        source: what was prepared (file path, ``<bytes>``, ``<array>``...; see :func:`describe_source`).
        image: the decoded upright RGB picture (JPEGs at their draft scale: what the model's input was
            resized from, so at least the input size when the photo is).
        pixels: the model's view, ``height x width x 3`` uint8 (what :func:`prepare` returns).
        tensor: the input tensor fed to the interpreter, a batch of one (:func:`to_input_tensor`).
        decode_ms: time spent decoding; resize_ms: resizing and making the tensor.
        full_size: the picture's size (width, height) before any draft scaling, upright.
        spec: the preprocessing it was made with (a classifier refuses a ``Prepared`` made for another).
        quality: the input's measured quality (:func:`skinedge.quality.assess`), when measured while preparing:
            on the thread that prepares, so that batches and video measure it ahead of the interpreter.
    """

    source: str
    image: Image.Image = field(repr=False)
    pixels: np.ndarray = field(repr=False)
    tensor: np.ndarray = field(repr=False)
    decode_ms: float
    resize_ms: float
    full_size: tuple[int, int]
    spec: PreprocessSpec = field(repr=False)
    quality: PhotoQuality | None = field(default=None, repr=False)

    @property
    def drafted(self) -> bool:
        """True when ``image`` was decoded below the photo's full size (a JPEG's DCT-domain draft)."""
        return self.image.size != self.full_size


def prepare_photo(
    source: ImageInput,
    spec: PreprocessSpec = DEFAULT_SPEC,
    input_dtype: Any = np.uint8,
    limits: ImageLimits = DEFAULT_LIMITS,
    *,
    measure_quality: bool = False,
) -> Prepared:
    """Decode and resize ``source`` as :func:`prepare` does, and make the ``input_dtype`` tensor: everything
    a classifier needs before it invokes, timed, with the decoded picture kept for overlays (and, with
    ``measure_quality``, the input's quality measured)."""
    t0 = time.perf_counter()
    image = decode_for(source, spec, limits)
    t1 = time.perf_counter()
    pixels = resize(image, spec)
    tensor = to_input_tensor(pixels, spec, input_dtype)
    t2 = time.perf_counter()
    full = image.info.get(_FULL_SIZE_KEY, image.size)
    quality = assess(pixels, full) if measure_quality else None
    return Prepared(describe_source(source), image, pixels, tensor, (t1 - t0) * 1000, (t2 - t1) * 1000, full, spec,
                    quality)


def to_input_tensor(pixels: np.ndarray, spec: PreprocessSpec, dtype: Any) -> np.ndarray:
    """The model's input tensor, a batch of one, from prepared ``HxWx3`` uint8 pixels: the one place this
    conversion is written (what :class:`skinedge.Classifier` feeds its interpreter).

    * ``uint8`` input: the pixels as they are.
    * ``int8`` input: ``pixel - 128``, the same codes shifted into int8's range.
    * ``float32`` input: ``(pixel - spec.mean) / spec.std`` in float32.

    Quantized inputs use neither ``spec.mean``/``std`` nor the tensor's scale and zero point. The convention
    of TFLite's quantized image models is that the normalisation is folded into the input quantization
    (uint8: scale ``1/std``, zero point ``mean``; int8: zero point ``mean - 128``), so the pixel codes are
    what the graph expects.

    Raises:
        ValueError: ``dtype`` is not uint8, int8 or float32.
    """
    if dtype == np.uint8:
        x = pixels
    elif dtype == np.int8:
        x = (pixels.astype(np.int16) - 128).astype(np.int8)
    elif dtype == np.float32:
        mean, std = spec.mean, spec.std
        if isinstance(mean, tuple) or isinstance(std, tuple):
            mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
        x = (pixels.astype(np.float32) - mean) / std
    else:
        raise ValueError(f"no image input conversion for {np.dtype(dtype).name} tensors")
    return x[np.newaxis]
