"""Augmentation that breaks photo-source cues: JPEG quality, thumbnail size, frames, corner marks, colour cast.

skin6's photos come from a handful of atlases, each with its own JPEG quality, original size (a thumbnail
upscaled to 224 px is blurred), framing (borders) and watermarks in a corner. A network can learn those instead
of the lesion, and a clinic's photos from other sources would then expose it (issue 13). Each change below is
drawn per photo, with probabilities that leave most photos close to what they were, and every draw is made
from a stateless seed so a run is reproducible.

Applied to one ``uint8`` photo ``[H, W, 3]`` at the network's input size, before batching and before the
paper's flips, rotations and zooms (``model.augmenter``). Training only: the runtime never sees this.
"""

from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf


@dataclass(frozen=True)
class SourceAugment:
    """Probabilities and ranges of each change (the defaults are the ones the trial in
    tools/experiments/results/2026-12-02-source-robust used)."""

    thumbnail_p: float = 0.3
    thumbnail_scale: tuple[float, float] = (0.25, 0.7)  # shrunk to this share of the side, then back up
    jpeg_p: float = 0.5
    jpeg_quality: tuple[int, int] = (25, 95)
    frame_p: float = 0.15
    frame_width: tuple[float, float] = (0.02, 0.10)  # share of the side, each side drawn with p 0.5
    mark_p: float = 0.25
    mark_size: tuple[float, float] = (0.08, 0.25)  # share of the width; height a third to a half of it
    mark_opacity: tuple[float, float] = (0.3, 0.8)
    saturation: float = 0.2  # factor in [1 - s, 1 + s]
    brightness: float = 0.08  # shift in [-b, b] of full scale


def _uniform(seed, lo, hi, shape=()):
    return tf.random.stateless_uniform(shape, seed, lo, hi)


def _chance(seed, p: float):
    return _uniform(seed, 0.0, 1.0) < p


def _thumbnail(img, seed, cfg: SourceAugment):
    """Shrink with area averaging and enlarge back: the blur of a small original resized to the input."""
    h, w = tf.shape(img)[0], tf.shape(img)[1]
    s = _uniform(seed, *cfg.thumbnail_scale)
    small = [tf.maximum(1, tf.cast(tf.cast(h, tf.float32) * s, tf.int32)),
             tf.maximum(1, tf.cast(tf.cast(w, tf.float32) * s, tf.int32))]
    out = tf.image.resize(tf.image.resize(img, small, "area"), [h, w], "bilinear")
    return tf.clip_by_value(out, 0.0, 255.0)


def _jpeg(img, seed, cfg: SourceAugment):
    lo, hi = cfg.jpeg_quality
    u8 = tf.cast(tf.round(img), tf.uint8)
    return tf.cast(tf.image.stateless_random_jpeg_quality(u8, lo, hi + 1, seed), tf.float32)


def _frame(img, seed, cfg: SourceAugment):
    """Solid bands on some sides, in black, white or a grey: the mats and borders of atlas pages."""
    h, w = tf.shape(img)[0], tf.shape(img)[1]
    s = tf.random.experimental.stateless_split(seed, 3)
    frac = _uniform(s[0], *cfg.frame_width)
    sides = _uniform(s[1], 0.0, 1.0, [4]) < 0.5
    grey = tf.gather(tf.constant([0.0, 255.0, 128.0]), tf.random.stateless_uniform([], s[2], 0, 3, tf.int32))
    bh = tf.cast(tf.cast(h, tf.float32) * frac, tf.int32)
    bw = tf.cast(tf.cast(w, tf.float32) * frac, tf.int32)
    rows, cols = tf.range(h)[:, None], tf.range(w)[None, :]
    band = (
        (sides[0] & (rows < bh))
        | (sides[1] & (rows >= h - bh))
        | (sides[2] & (cols < bw))
        | (sides[3] & (cols >= w - bw))
    )
    return tf.where(band[..., None], grey, img)


def _mark(img, seed, cfg: SourceAugment):
    """A translucent block in one corner: where atlases put their logo or watermark."""
    h, w = tf.shape(img)[0], tf.shape(img)[1]
    s = tf.random.experimental.stateless_split(seed, 5)
    mw = tf.cast(tf.cast(w, tf.float32) * _uniform(s[0], *cfg.mark_size), tf.int32)
    mh = tf.cast(tf.cast(mw, tf.float32) * _uniform(s[1], 0.33, 0.5), tf.int32)
    corner = tf.random.stateless_uniform([], s[2], 0, 4, tf.int32)
    top = tf.where(corner < 2, 0, h - mh)
    left = tf.where(corner % 2 == 0, 0, w - mw)
    rows, cols = tf.range(h)[:, None], tf.range(w)[None, :]
    inside = (rows >= top) & (rows < top + mh) & (cols >= left) & (cols < left + mw)
    # half the marks near-white, as most logos are; the rest any colour
    s3 = tf.random.experimental.stateless_split(s[3], 2)
    light = _uniform(s3[1], 220.0, 255.0) * tf.ones([3])
    colour = tf.where(_chance(s3[0], 0.5), light, _uniform(s3[1], 0.0, 255.0, [3]))
    alpha = _uniform(s[4], *cfg.mark_opacity)
    return tf.where(inside[..., None], (1.0 - alpha) * img + alpha * colour, img)


def _colour(img, seed, cfg: SourceAugment):
    s = tf.random.experimental.stateless_split(seed, 2)
    out = img / 255.0
    if cfg.saturation:
        out = tf.image.stateless_random_saturation(out, 1.0 - cfg.saturation, 1.0 + cfg.saturation, s[0])
    if cfg.brightness:
        out = tf.image.stateless_random_brightness(out, cfg.brightness, s[1])
    return tf.clip_by_value(out * 255.0, 0.0, 255.0)


def _maybe(change, img, coin, seed, p: float, cfg: SourceAugment):
    return tf.cond(_chance(coin, p), lambda: change(img, seed, cfg), lambda: img)


def source_augment(image, seed, cfg: SourceAugment = SourceAugment()):
    """One photo with its source cues redrawn; ``image`` ``uint8`` or float in [0, 255], ``seed`` int ``[2]``.
    Returns float32 in [0, 255], the same shape. The same seed gives the same photo."""
    img = tf.cast(image, tf.float32)
    s = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 9)
    steps = (
        (cfg.thumbnail_p, _thumbnail),
        (cfg.jpeg_p, _jpeg),
        (cfg.frame_p, _frame),
        (cfg.mark_p, _mark),
    )
    for i, (p, change) in enumerate(steps):
        img = _maybe(change, img, s[2 * i], s[2 * i + 1], p, cfg)
    if cfg.saturation or cfg.brightness:
        img = _colour(img, s[8], cfg)
    return img


__all__ = ["SourceAugment", "source_augment"]
