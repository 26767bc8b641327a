"""Heatmaps: where a score came from, from the same invoke as the score (no gradients, no second run).

The bundled model has two class-activation map outputs (built in by ``skinedge-tools rebuild``):

* ``class_maps``, 7x7: the classifier head applied at each position of the last feature map (CAM,
  Zhou et al., CVPR 2016). Exact for a global-average-pooled network: its spatial mean is the logits.
* ``class_maps_fine``, 14x14: a linear head, fitted to the logits, applied to the layer before the last
  downsampling. An approximation of the network that sharpens where the exact map puts its weight.

:func:`heatmap_for` fuses them (``zscore_sum``: each map bilinearly brought to the finest grid and
standardised, then summed), spreads the result over the picture with a bicubic filter and scales it to
[0, 1]. Faithfulness is measured, not assumed: ``benchmarks/explain_faithfulness.py`` greys out the
hottest fifth of each photo and checks that the score falls more than for a random fifth.

``Classifier.explain`` computes the heatmap in its one finishing step (the maps come from the same invoke
as the scores); this module holds the map arithmetic and the drawing, and imports no classifier.

What a heatmap is not: a lesion outline, a segmentation, or evidence of a diagnosis. It is a coarse map
of the regions that moved this model's score.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image

from skinedge.preprocess import ImageInput, PreprocessSpec, resize

#: Heatmaps are returned at the decoded picture's size, downscaled (same aspect) to this long side at most:
#: a 14x14 map spread wider holds no more detail, and every pixel costs time (overlays resize it freely).
HEATMAP_MAX_SIDE = 128

# Inferno (perceptually uniform, readable in grey): anchors of a 256-entry lookup table.
_INFERNO = np.array(
    [[0, 0, 4], [40, 11, 84], [101, 21, 110], [159, 42, 99], [212, 72, 66], [245, 125, 21], [250, 193, 39],
     [252, 255, 164]],
    dtype=np.float64,
)
_LUT = np.stack(
    [np.interp(np.linspace(0, 1, 256), np.linspace(0, 1, len(_INFERNO)), _INFERNO[:, c]) for c in range(3)], axis=1
)


def heatmap_size(image_size: tuple[int, int], max_side: int = HEATMAP_MAX_SIDE) -> tuple[int, int]:
    """(width, height) of the heatmap for a picture of ``image_size``: the same aspect, long side capped."""
    w, h = image_size
    scale = min(1.0, max_side / max(w, h))
    return max(1, round(w * scale)), max(1, round(h * scale))


def fuse(maps: list[np.ndarray], index: int) -> np.ndarray:
    """``zscore_sum`` of class ``index``'s maps (coarse to fine, each ``h x w x classes``) on the finest grid."""
    finest = max(maps, key=lambda m: m.shape[0] * m.shape[1])
    gh, gw = finest.shape[:2]
    total = np.zeros((gh, gw), dtype=np.float64)
    for m in maps:
        plane = np.asarray(m[..., index], dtype=np.float64)
        if plane.shape != (gh, gw):
            plane = _bilinear(plane.shape[0], gh) @ plane @ _bilinear(plane.shape[1], gw).T
        std = float(plane.std())
        if std > 0:  # a constant map says nothing about where: it adds nothing
            total += (plane - plane.mean()) / std
    return total


@lru_cache(maxsize=32)
def _bilinear(n_in: int, n_out: int) -> np.ndarray:
    """``n_out x n_in`` linear interpolation between cell centres (edges held), as Pillow's bilinear upscale."""
    pos = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = pos - lo
    m = np.zeros((n_out, n_in))
    m[np.arange(n_out), lo] += 1 - frac
    m[np.arange(n_out), hi] += frac
    m.flags.writeable = False
    return m


def heatmap_for(
    maps: list[np.ndarray], index: int, image_size: tuple[int, int], spec: PreprocessSpec
) -> np.ndarray:
    """The [0, 1] heatmap of class ``index`` over a picture of ``image_size`` (width, height).

    With ``center_crop`` preprocessing the model saw only the central crop: the rest of the picture is 0.
    """
    w, h = heatmap_size(image_size)
    fused = fuse(maps, index)
    x0, y0, x1, y1 = 0, 0, w, h
    if spec.aspect == "center_crop":
        target = spec.width / spec.height
        if w / h > target:
            cw = round(h * target)
            x0, x1 = (w - cw) // 2, (w - cw) // 2 + cw
        else:
            ch = round(w / target)
            y0, y1 = (h - ch) // 2, (h - ch) // 2 + ch
    # Pillow, not a matrix product: a BLAS call this size can spin up threads and cost milliseconds.
    spread = np.asarray(Image.fromarray(fused.astype(np.float32), mode="F").resize(
        (max(1, x1 - x0), max(1, y1 - y0)), Image.Resampling.BICUBIC))
    lo, hi = float(spread.min()), float(spread.max())
    heat = np.zeros((h, w), dtype=np.float32)
    if hi > lo:
        region = heat[y0:y1, x0:x1]
        np.subtract(spread, lo, out=region)
        region /= hi - lo  # a division, not a reciprocal product: the hottest point is exactly 1
    return heat


def colorize(heatmap: np.ndarray) -> np.ndarray:
    """``HxWx3`` uint8 colours of a [0, 1] heatmap (inferno: dark = little weight, bright = much)."""
    idx = np.clip(np.nan_to_num(heatmap) * 255 + 0.5, 0, 255).astype(np.uint8)
    return _LUT[idx].round().astype(np.uint8)


def overlay(image: Image.Image, heatmap: np.ndarray, alpha: float = 0.5) -> Image.Image:
    """``image`` with ``heatmap`` blended over it, RGB, at the image's size.

    Each pixel is tinted by the heatmap colour in proportion to its heat (``alpha`` at the hottest), so
    regions that did not weigh in stay as photographed.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    heatmap = np.asarray(heatmap, dtype=np.float32)
    if heatmap.ndim != 2:
        raise ValueError(f"heatmap must be 2-D, got shape {heatmap.shape}")
    rgb = image.convert("RGB")
    if heatmap.shape != (rgb.height, rgb.width):
        heatmap = np.asarray(Image.fromarray(heatmap, mode="F").resize(rgb.size, Image.Resampling.BICUBIC))
    heat = np.clip(heatmap, 0.0, 1.0)[..., None]
    base = np.asarray(rgb, dtype=np.float32)
    weight = alpha * heat
    blended = base * (1 - weight) + colorize(heat[..., 0]).astype(np.float32) * weight
    return Image.fromarray(np.clip(blended + 0.5, 0, 255).astype(np.uint8), mode="RGB")


@dataclass(frozen=True)
class DeletionCheck:
    """A deletion test of one heatmap: does greying out its hottest part lower the score most?

    ``hot_drop``: how much the explained class's score falls when the hottest ``fraction`` of the picture
    is greyed out; ``random_drop``: the mean fall for random rectangles of the same area and aspect.
    """

    source: str
    label: str
    score: float
    hot_drop: float
    random_drop: float

    @property
    def hot_hurts_more(self) -> bool:
        return self.hot_drop > self.random_drop


#: The grey that deleted regions are filled with (the middle of the 0-255 range).
DELETION_GREY = 128


def deletion_check(
    classifier: Any,
    image: ImageInput,
    *,
    fraction: float = 0.2,
    random_trials: int = 4,
    seed: int = 0,
) -> DeletionCheck:
    """Measure how faithful :meth:`Classifier.explain`'s heatmap is on ``image`` (its top class), for a
    :class:`~skinedge.Classifier` ``classifier``.

    Costs ``2 + random_trials`` invokes. ``benchmarks/explain_faithfulness.py`` runs it over a dataset.
    """
    prepared = classifier.prepare(image)
    explained = classifier.explain(prepared)
    index, base = explained.index, explained.score
    (hot,) = deletion_drops(classifier, prepared.image, index, base, [explained.heatmap], fraction=fraction)
    rand = random_deletion_drop(classifier, prepared.image, index, base, fraction=fraction, trials=random_trials,
                                seed=seed)
    return DeletionCheck(prepared.source, explained.label, base, hot, rand)


def deletion_drops(
    classifier: Any, decoded: Image.Image, index: int, base: float, heatmaps: list[np.ndarray],
    fraction: float = 0.2,
) -> list[float]:
    """Falls of class ``index``'s score from ``base`` (its score on ``decoded``) when the hottest ``fraction``
    of the picture by each heatmap is greyed out."""
    pixels = np.asarray(decoded)
    k = max(1, round(fraction * pixels.shape[0] * pixels.shape[1]))
    drops = []
    for heat in heatmaps:
        heat = np.asarray(Image.fromarray(np.asarray(heat, np.float32), mode="F").resize(
            decoded.size, Image.Resampling.BICUBIC))
        hottest = np.argpartition(-heat.ravel(), k - 1)[:k]  # exactly k pixels, whatever the ties
        greyed = pixels.copy().reshape(-1, 3)
        greyed[hottest] = DELETION_GREY
        img = Image.fromarray(greyed.reshape(pixels.shape))
        drops.append(base - float(classifier.invoke(resize(img, classifier.spec))[index]))
    return drops


def random_deletion_drop(
    classifier: Any, decoded: Image.Image, index: int, base: float, *, fraction: float = 0.2, trials: int = 4,
    seed: int = 0,
) -> float:
    """Mean score fall of class ``index`` over ``trials`` random rectangles of ``fraction`` of the area
    and the picture's aspect, greyed out (seeded: the same rectangles every run)."""
    pixels = np.asarray(decoded)
    h, w = pixels.shape[:2]
    side = fraction**0.5
    rw, rh = max(1, round(side * w)), max(1, round(side * h))
    rng = np.random.default_rng(seed)
    drops = []
    for _ in range(trials):
        x0, y0 = int(rng.integers(0, w - rw + 1)), int(rng.integers(0, h - rh + 1))
        greyed = pixels.copy()
        greyed[y0:y0 + rh, x0:x0 + rw] = DELETION_GREY
        drops.append(base - float(classifier.invoke(resize(Image.fromarray(greyed), classifier.spec))[index]))
    return float(np.mean(drops))
