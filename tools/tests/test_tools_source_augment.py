"""Source-cue augmentation: each change does what it says, known answers computed without its code."""

from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("tensorflow", reason="the training tools need TensorFlow (pip install -e ./tools)")

import tensorflow as tf  # noqa: E402
from skinedge_tools.source_augment import SourceAugment, source_augment  # noqa: E402
from skinedge_tools.train import _dataset  # noqa: E402

NOTHING = SourceAugment(thumbnail_p=0, jpeg_p=0, frame_p=0, mark_p=0, saturation=0, brightness=0)


def _aug(img: np.ndarray, seed: int, cfg: SourceAugment) -> np.ndarray:
    return source_augment(tf.constant(img), tf.constant([seed, 7], tf.int64), cfg).numpy()


def _photo(h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    """Smooth colour gradients plus a little noise: JPEG-able like a photo, not like white noise."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    rng = np.random.default_rng(seed)
    base = np.stack([200 * xx + 30, 150 * yy + 50, 100 * (xx + yy) / 2 + 80], -1)
    return np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)


def test_nothing_drawn_is_the_identity_and_a_seed_fixes_the_draw():
    img = _photo()
    assert np.array_equal(_aug(img, 1, NOTHING), img.astype(np.float32))
    a, b = _aug(img, 3, SourceAugment()), _aug(img, 3, SourceAugment())
    assert np.array_equal(a, b)
    others = [_aug(img, s, SourceAugment()) for s in range(4, 10)]
    assert any(not np.array_equal(a, o) for o in others)
    assert all(o.shape == img.shape and o.dtype == np.float32 and o.min() >= 0 and o.max() <= 255 for o in others)


def test_thumbnail_loses_detail_finer_than_its_size():
    # a one-pixel checkerboard averaged over 2x2 blocks is flat mid-grey, and enlarging flat stays flat
    board = ((np.indices((32, 32)).sum(0) % 2) * 255).astype(np.uint8)[..., None].repeat(3, -1)
    cfg = replace(NOTHING, thumbnail_p=1.0, thumbnail_scale=(0.5, 0.5))
    np.testing.assert_allclose(_aug(board, 0, cfg), 127.5, atol=1e-3)


def test_jpeg_matches_an_independent_encoder_at_the_drawn_quality():
    img = _photo()
    cfg = replace(NOTHING, jpeg_p=1.0, jpeg_quality=(25, 25))
    out = _aug(img, 0, cfg)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=25)
    pil = np.asarray(Image.open(buf)).astype(np.float32)
    # two libjpeg builds at one quality agree to about a grey level; quality 25 itself moves pixels far more
    assert np.abs(out - pil).mean() < 1.5
    assert np.abs(out - img).mean() > 2 * np.abs(out - pil).mean()


def test_frames_are_solid_bands_on_the_drawn_sides_only():
    img = _photo(40, 40)
    cfg = replace(NOTHING, frame_p=1.0, frame_width=(0.1, 0.1))  # 4-pixel bands
    sides_seen = set()
    for seed in range(12):
        out = _aug(img, seed, cfg)
        np.testing.assert_array_equal(out[4:-4, 4:-4], img[4:-4, 4:-4])  # the middle never changes
        changed = np.any(out != img, -1)
        if changed.any():
            assert len(np.unique(out[changed])) == 1 and out[changed][0, 0] in (0.0, 128.0, 255.0)
        for name, band in (("top", out[:4]), ("bottom", out[-4:]), ("left", out[:, :4]), ("right", out[:, -4:])):
            if np.all(band == band.flat[0]) and not np.array_equal(band, img[: band.shape[0], : band.shape[1]]):
                sides_seen.add(name)
    assert sides_seen == {"top", "bottom", "left", "right"}


def test_marks_are_one_translucent_block_in_a_corner():
    img = _photo(60, 80)
    cfg = replace(NOTHING, mark_p=1.0, mark_size=(0.25, 0.25), mark_opacity=(0.5, 0.5))
    corners = set()
    for seed in range(16):
        out = _aug(img, seed, cfg)
        rows, cols = np.nonzero(np.any(np.abs(out - img) > 1e-3, -1))
        r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
        assert c1 - c0 == 20 and 6 <= r1 - r0 <= 10  # a quarter of the width, a third to a half as tall
        assert r0 in (0, 60 - (r1 - r0)) and c0 in (0, 80 - 20)
        corners.add((r0 == 0, c0 == 0))
        block = out[r0:r1, c0:c1]
        # alpha 0.5 over one colour: out = (img + colour) / 2, so 2 * out - img is the same colour everywhere
        colour = 2 * block - img[r0:r1, c0:c1]
        np.testing.assert_allclose(colour, np.broadcast_to(colour[0, 0], colour.shape), atol=1e-3)
    assert len(corners) == 4


def test_colour_keeps_grey_grey_and_shifts_brightness_within_its_range():
    grey = np.full((8, 8, 3), 100, np.uint8)
    sat_only = replace(NOTHING, saturation=0.5)
    np.testing.assert_allclose(_aug(grey, 0, sat_only), 100.0, atol=1e-3)
    shifts = [float((_aug(grey, s, replace(NOTHING, brightness=0.08)) - 100).mean()) for s in range(8)]
    assert all(abs(d) <= 0.08 * 255 + 1e-3 for d in shifts) and np.ptp(shifts) > 1


def test_training_pipeline_redraws_every_epoch_and_reproduces_from_its_seed():
    x = np.stack([_photo(32, 32, i) for i in range(8)])
    y = np.eye(8, dtype=np.float32)

    def epochs(seed):
        ds = _dataset(x, y, 4, True, seed, source_aug=True)
        return [np.concatenate([a.numpy() for a, _ in ds]) for _ in range(2)]

    first, again = epochs(5), epochs(5)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], first[1])


def test_mixup_blends_each_photo_with_its_partner_by_its_label_weight():
    from skinedge_tools.train import _mixup

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (6, 4, 4, 3)).astype(np.float32)
    y = np.eye(6, dtype=np.float32)
    mx, my = (t.numpy() for t in _mixup(tf.constant(x), tf.constant(y), tf.constant([1, 2], tf.int64), 0.4))
    lam = my[np.arange(6), np.arange(6)]  # the own class's label weight is lam
    assert np.all(lam >= 0.5) and np.all(lam <= 1) and np.ptp(lam) > 0
    np.testing.assert_allclose(my.sum(1), 1.0, atol=1e-6)
    np.testing.assert_allclose(my[np.arange(6), np.arange(6)[::-1]] + lam, 1.0, atol=1e-6)  # partner: reversed
    expected = lam[:, None, None, None] * x + (1 - lam[:, None, None, None]) * x[::-1]
    np.testing.assert_allclose(mx, expected, rtol=1e-5, atol=1e-3)
