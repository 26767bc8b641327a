"""A second, independent photo-to-tensor pipeline for known-answer tests, written from the documented spec.

Nothing here imports skinedge. Resizing is Pillow's resampling algorithm re-implemented in numpy from its
definition (libImaging/Resample.c: per-axis kernels scaled by the downscale factor, i.e. antialiased; horizontal
pass then vertical pass, each rounded to 8 bits in 22-bit fixed point), so a fault in Pillow's ``resize`` or in
how skinedge calls it shows up as a difference; decoding uses Pillow's decoders (there is no second JPEG decoder
to compare with), and the tests that check decoding compare with pixel values known by construction.
"""

from __future__ import annotations

import math

import numpy as np

_PRECISION_BITS = 32 - 8 - 2  # Resample.c


def _bilinear(x: float) -> float:
    x = abs(x)
    return 1.0 - x if x < 1.0 else 0.0


def _bicubic(x: float, a: float = -0.5) -> float:
    x = abs(x)
    if x < 1.0:
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    if x < 2.0:
        return (((x - 5) * x + 8) * x - 4) * a
    return 0.0


def _sinc(x: float) -> float:
    if x == 0.0:
        return 1.0
    x *= math.pi
    return math.sin(x) / x


def _lanczos(x: float) -> float:
    return _sinc(x) * _sinc(x / 3.0) if -3.0 <= x < 3.0 else 0.0


def _box(x: float) -> float:
    return 1.0 if -0.5 < x <= 0.5 else 0.0


#: filter name -> (kernel, support), as in Resample.c
FILTERS = {"bilinear": (_bilinear, 1.0), "bicubic": (_bicubic, 2.0), "lanczos": (_lanczos, 3.0), "box": (_box, 0.5)}


def _coefficients(in_size: int, in0: float, in1: float, out_size: int, name: str) -> np.ndarray:
    """``out_size x in_size`` fixed-point weights: row ``o`` says how much each input pixel adds to output ``o``."""
    kernel, base_support = FILTERS[name]
    scale = (in1 - in0) / out_size
    filterscale = max(scale, 1.0)  # the kernel widens with the downscale factor: antialiasing
    support = base_support * filterscale
    m = np.zeros((out_size, in_size), dtype=np.int64)
    for o in range(out_size):
        center = in0 + (o + 0.5) * scale
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), in_size)
        w = np.array([kernel((x - center + 0.5) / filterscale) for x in range(lo, hi)], dtype=np.float64)
        total = w.sum()
        if total != 0.0:
            w = w / total
        fixed = np.where(w < 0, -0.5 + w * (1 << _PRECISION_BITS), 0.5 + w * (1 << _PRECISION_BITS))
        m[o, lo:hi] = np.trunc(fixed).astype(np.int64)
    return m


def _pass(m: np.ndarray, a: np.ndarray, axis: int) -> np.ndarray:
    # float64 holds these integer sums exactly (< 2**40), so this is the fixed-point arithmetic, done by BLAS
    moved = np.moveaxis(a.astype(np.float64), axis, 0)  # (in, ...)
    acc = np.tensordot(m.astype(np.float64), moved, axes=(1, 0)) + (1 << (_PRECISION_BITS - 1))
    return np.moveaxis(np.clip(np.floor(acc / (1 << _PRECISION_BITS)), 0, 255).astype(np.uint8), 0, axis)


def resize_candidates(rgb: np.ndarray, width: int, height: int, name: str = "bilinear",
                      box: tuple[float, float, float, float] | None = None) -> list[np.ndarray]:
    """``rgb`` (HxWx3 uint8) resized to ``height x width`` from the region ``box`` (left, top, right, bottom):
    horizontal pass first, and vertical pass first (Pillow 13 picks the order itself; both round in between)."""
    h, w = rgb.shape[:2]
    # Pillow hands the box to C as float32
    x0, y0, x1, y1 = (float(np.float32(v)) for v in box) if box is not None else (0, 0, w, h)
    horizontal = _coefficients(w, x0, x1, width, name) if (width, x0, x1) != (w, 0, w) else None
    vertical = _coefficients(h, y0, y1, height, name) if (height, y0, y1) != (h, 0, h) else None
    out = []
    for order in ((horizontal, 1), (vertical, 0)), ((vertical, 0), (horizontal, 1)):
        a = rgb
        for m, axis in order:
            if m is not None:
                a = _pass(m, a, axis)
        out.append(a)
    return out


def nearest_resize(got: np.ndarray, rgb: np.ndarray, width: int, height: int, name: str = "bilinear",
                   box: tuple[float, float, float, float] | None = None) -> tuple[np.ndarray, int, float]:
    """The pass order's result nearer to ``got``, with (largest difference, fraction of values that differ)."""
    best = None
    for ref in resize_candidates(rgb, width, height, name, box):
        if ref.shape != got.shape:
            return ref, 255, 1.0
        d = np.abs(got.astype(np.int64) - ref)
        cand = (int(d.max()), float((d > 0).mean()))
        if best is None or cand < best[1:]:
            best = (ref, *cand)
    return best


def center_crop_box(w: int, h: int, width: int, height: int) -> tuple[float, float, float, float]:
    """The largest centred region of the target aspect ratio (the spec's ``center_crop``)."""
    target = width / height
    if w / h > target:
        cw = h * target
        return ((w - cw) / 2, 0, (w + cw) / 2, h)
    ch = w / target
    return (0, (h - ch) / 2, w, (h + ch) / 2)


def to_input(pixels: np.ndarray, dtype: np.dtype, mean: float = 127.5, std: float = 127.5) -> np.ndarray:
    """The input tensor by the runtime's documented convention: uint8 models take the pixels, int8 models the
    pixels minus 128 (TFLite's int8 image convention), float models ``(pixel - mean) / std``."""
    if dtype == np.uint8:
        return pixels[None].copy()
    if dtype == np.int8:
        return (pixels.astype(np.int32) - 128).astype(np.int8)[None]
    return ((pixels.astype(np.float64) - mean) / std).astype(np.float32)[None]


def raw_litert(model_path, tensor: np.ndarray, output: str | None = None) -> tuple[np.ndarray, dict]:
    """Output ``output`` (default: the first) of a bare LiteRT interpreter (one thread) for ``tensor``,
    dequantized, and its details."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(model_path), num_threads=1)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    interp.set_tensor(inp["index"], tensor)
    interp.invoke()
    outs = interp.get_output_details()
    out = outs[0] if output is None else next(d for d in outs if d["name"] == output)
    raw = interp.get_tensor(out["index"]).reshape(-1).astype(np.float64)
    scale, zero = out["quantization"]
    if out["dtype"] in (np.uint8, np.int8) and scale:
        raw = (raw - zero) * scale
    return raw, out


def softmax(z: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Softmax with Python's own math.exp: a fault in numpy's exponential cannot hide in both sides."""
    top = max(float(v) for v in z)
    e = [math.exp((float(v) - top) / temperature) for v in z]
    return np.array(e) / math.fsum(e)
