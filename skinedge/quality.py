"""Is this photo good enough to judge? Cheap measures of the model's own input, computed on the board.

A photo the model cannot judge (blurred, too dark, blown out, a blank wall, a tiny thumbnail) still gets six
scores, and often a confident one. These measures catch such photos before anyone reads a label. They are computed
on the pixels the model sees (its input tensor, the photo already resized), so a sharp 4000 px photo and the same
photo sent as a small file are judged by what reaches the network; ``min_side`` alone looks at the decoded photo.

The thresholds are set per model (its metadata's ``quality`` entry) on degraded copies of validation photos, at
the point where that model's accuracy actually falls (``tools/experiments/quality_thresholds.py``).
Numpy only, about a quarter of a millisecond for a 224x224 input.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

#: What each problem asks of the person holding the camera (the watch status line and the page show these).
HINTS = {
    "too_small": "photo too small: move closer or send a larger photo",
    "no_detail": "nothing to judge in view: point the camera at the skin",
    "too_dark": "too dark: more light",
    "too_bright": "too bright or glare: less light, avoid reflections",
    "blurred": "blurred: hold still and focus",
}
# ITU-R BT.601 luma, the weights JPEG and Pillow's "L" mode use.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
# Mean |Laplacian| that 8-bit rounding alone leaves on a smooth 2x2-averaged image (measured: 0.4-0.6).
_ROUNDING_FLOOR = 0.5


@dataclass(frozen=True)
class PhotoQuality:
    """Measures of one photo, from the model's input pixels.

    Attributes:
        sharpness: mean absolute Laplacian of the luma (2x2-averaged, less its 8-bit rounding noise) over the
            luma's standard deviation: fine detail relative to the photo's contrast, so a dark but sharp photo is
            still sharp. Falls steeply with blur.
        brightness: mean luma, 0-255.
        dark_fraction: share of pixels with luma below 16 (crushed to black).
        bright_fraction: share of pixels with luma above 245 (blown out).
        contrast: standard deviation of the luma, 0-255 (a blank wall or a black frame is near 0).
        min_side: the decoded photo's shorter side in pixels (before the resize to the model's input).
    """

    sharpness: float
    brightness: float
    dark_fraction: float
    bright_fraction: float
    contrast: float
    min_side: int

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class QualityThresholds:
    """Limits beyond which a photo is too poor to judge. ``None`` turns a check off.

    Attributes:
        min_sharpness: below this ``sharpness`` the photo is ``blurred``.
        min_brightness: below this mean luma it is ``too_dark``.
        max_bright_fraction: above this share of blown-out pixels it is ``too_bright``.
        min_washed_contrast: a bright photo (mean luma above 128) with less contrast than this is washed out by
            glare: ``too_bright`` too. (Darkening lowers contrast as well, but the model copes with it far longer,
            so contrast only counts on the bright side.)
        min_contrast: below this luma standard deviation there is ``no_detail`` (a blank wall, a black frame).
        min_side: a decoded photo whose shorter side is below this is ``too_small``.
    """

    # The defaults: the limits chosen for the bundled EfficientNet-Lite0 on skin6 val (its metadata holds the same).
    min_sharpness: float | None = 0.077
    min_brightness: float | None = 35.6
    max_bright_fraction: float | None = 0.79
    min_washed_contrast: float | None = 11.4
    min_contrast: float | None = 6.0
    min_side: int | None = 32  # a floor, not measured (a 43 px skin6 test photo is answered right)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QualityThresholds:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


def assess(pixels: np.ndarray, decoded_size: tuple[int, int] | None = None) -> PhotoQuality:
    """Measure ``pixels`` (the model's ``HxWx3`` uint8 RGB input). ``decoded_size`` is the photo's ``(width,
    height)`` as decoded; without it ``min_side`` is the input's."""
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"expected HxWx3 RGB pixels, got shape {pixels.shape}")
    y = pixels.astype(np.float32) @ _LUMA
    contrast = float(y.std())
    # The Laplacian of the 2x2 mean: averaging halves the rounding noise that would otherwise put a floor under a
    # blurred photo's detail (about 0.5 grey levels remain, subtracted), and quarters the work.
    h, w = (y.shape[0] // 2) * 2, (y.shape[1] // 2) * 2
    d = (y[0:h:2, 0:w:2] + y[1:h:2, 0:w:2] + y[0:h:2, 1:w:2] + y[1:h:2, 1:w:2]) * 0.25
    lap = 4.0 * d[1:-1, 1:-1] - d[:-2, 1:-1] - d[2:, 1:-1] - d[1:-1, :-2] - d[1:-1, 2:]
    sharpness = max(float(np.abs(lap).mean()) - _ROUNDING_FLOOR, 0.0) / max(contrast, 1.0)
    n = y.size
    side = min(decoded_size) if decoded_size else min(pixels.shape[:2])
    return PhotoQuality(
        sharpness=sharpness,
        brightness=float(y.mean()),
        dark_fraction=float(np.count_nonzero(y < 16.0)) / n,
        bright_fraction=float(np.count_nonzero(y > 245.0)) / n,
        contrast=contrast,
        min_side=int(side),
    )


def problems(q: PhotoQuality, t: QualityThresholds) -> tuple[str, ...]:
    """What is wrong with a photo of quality ``q`` under thresholds ``t``, most basic first (empty: fine).

    The order is the order a person fixes things in: a photo too small or of nothing has no exposure or focus to
    speak of; a dark photo looks blurred too, so ``too_dark``/``too_bright`` come before ``blurred``."""
    found = []
    if t.min_side is not None and q.min_side < t.min_side:
        found.append("too_small")
    if t.min_contrast is not None and q.contrast < t.min_contrast:
        found.append("no_detail")
    if t.min_brightness is not None and q.brightness < t.min_brightness:
        found.append("too_dark")
    washed = t.min_washed_contrast is not None and q.brightness > 128.0 and q.contrast < t.min_washed_contrast
    if washed or (t.max_bright_fraction is not None and q.bright_fraction > t.max_bright_fraction):
        found.append("too_bright")
    if t.min_sharpness is not None and q.sharpness < t.min_sharpness and "no_detail" not in found:
        found.append("blurred")
    return tuple(found)
