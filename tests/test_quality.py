"""Photo-quality measures (skinedge.quality) against answers worked out by hand, and the problems they name."""

import numpy as np
import pytest

from skinedge.quality import PhotoQuality, QualityThresholds, assess, problems


def _grey(v: float, size: int = 224) -> np.ndarray:
    return np.full((size, size, 3), v, dtype=np.uint8)


def test_flat_grey_has_no_contrast_and_no_detail():
    q = assess(_grey(128))
    assert q.contrast == 0.0 and q.sharpness == 0.0
    assert q.brightness == pytest.approx(128.0, abs=1e-3)  # luma weights sum to 1
    assert problems(q, QualityThresholds()) == ("no_detail",)


def test_black_frame_is_dark_with_no_detail():
    q = assess(_grey(0))
    assert q.dark_fraction == 1.0 and q.bright_fraction == 0.0 and q.brightness == 0.0
    assert problems(q, QualityThresholds()) == ("no_detail", "too_dark")


def test_white_frame_is_blown_out():
    q = assess(_grey(255))
    assert q.bright_fraction == 1.0
    assert "too_bright" in problems(q, QualityThresholds())


def test_checkerboard_known_values():
    # 4x4-pixel squares of 0 and 200 (pure grey, so luma = the value): std 100, mean 100. On the 2x2 means the
    # board is 2x2 squares; the Laplacian at a pixel is 4*v minus its four neighbours, on a 2-px board each
    # interior pixel has two neighbours of the other colour: |lap| = 2*200 = 400, the sharpness (400-0.5)/100.
    yy, xx = np.mgrid[0:224, 0:224]
    board = np.where(((yy // 4) + (xx // 4)) % 2 == 0, 0, 200).astype(np.uint8)
    q = assess(np.repeat(board[:, :, None], 3, axis=2))
    assert q.contrast == pytest.approx(100.0, rel=1e-6)
    assert q.brightness == pytest.approx(100.0, rel=1e-6)
    assert q.sharpness == pytest.approx((400.0 - 0.5) / 100.0, rel=1e-4)
    assert problems(q, QualityThresholds()) == ()


def test_blur_lowers_sharpness_but_not_brightness():
    from PIL import Image, ImageFilter

    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)).filter(ImageFilter.GaussianBlur(1))
    sharp, blurred = assess(np.asarray(img)), assess(np.asarray(img.filter(ImageFilter.GaussianBlur(8))))
    assert blurred.sharpness < QualityThresholds().min_sharpness < sharp.sharpness
    assert blurred.brightness == pytest.approx(sharp.brightness, abs=1.0)
    assert "blurred" in problems(blurred, QualityThresholds(min_contrast=None))


def test_min_side_uses_the_decoded_size():
    q = assess(_grey(100), decoded_size=(300, 20))
    assert q.min_side == 20
    assert "too_small" in problems(q, QualityThresholds())
    assert assess(_grey(100)).min_side == 224


def test_a_threshold_of_none_turns_its_check_off():
    q = PhotoQuality(sharpness=0.0, brightness=0.0, dark_fraction=1.0, bright_fraction=1.0, contrast=0.0, min_side=1)
    off = QualityThresholds(min_sharpness=None, min_brightness=None, max_bright_fraction=None, min_contrast=None,
                            min_washed_contrast=None, min_side=None)
    assert problems(q, off) == ()
    assert set(problems(q, QualityThresholds())) == {"too_small", "no_detail", "too_dark", "too_bright"}


def test_washed_out_counts_only_on_the_bright_side():
    # The same low contrast (std 10, a 20-level step): bright and washed out, or dark and fine by contrast.
    half = np.zeros((224, 224, 3), np.uint8)
    for base, expect in ((200, ("too_bright",)), (60, ())):
        half[:] = base
        half[:, 112:] = base + 20
        q = assess(half)
        assert q.contrast == pytest.approx(10.0, rel=1e-6)
        got = problems(q, QualityThresholds(min_sharpness=None))
        assert got == expect


def test_thresholds_round_trip_and_ignore_unknown_keys():
    t = QualityThresholds(min_sharpness=0.1, min_side=32)
    assert QualityThresholds.from_dict({**t.to_dict(), "future_check": 3}) == t


def test_rejects_non_rgb():
    with pytest.raises(ValueError, match="HxWx3"):
        assess(np.zeros((10, 10), np.uint8))
