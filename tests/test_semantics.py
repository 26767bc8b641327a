"""What each output field means, checked against values known by construction (not "is it there, is it >= 0").

* timings: a fake clock that each step advances by a known amount, so each field must be exactly its step;
* metadata: a model packed here with a hand-written ``skinedge.json`` (the on-disk format, version 1) whose
  labels, temperature, abstain threshold, input mean/std and preprocessing differ from every default; scores are
  computed beside it from a bare LiteRT interpreter and numpy;
* decoding: photos whose pixels are known exactly (solid colours, quadrants, alpha ramps), encoded with Pillow
  and expected values computed with numpy, so a fault in decoding, orientation or transparency is seen whoever
  made it (skinedge or the library it calls).
"""

from __future__ import annotations

import io
import json
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import reference_pipeline as ref
from PIL import Image

from skinedge import Classifier
from skinedge.preprocess import PreprocessSpec, decode, prepare

ROOT = Path(__file__).resolve().parents[1]
FLOAT_MODEL = ROOT / "tests" / "data" / "valid_models" / "image_float32.tflite"  # 16x16x3 float in, 5 logits out
UINT8_MODEL = ROOT / "tests" / "data" / "valid_models" / "float_ops_int8_io_uint8.tflite"  # 8x8 in, 2 probs out
LABELS = ("zeta", "alpha", "mu", "beta", "omega")  # not sorted: a sorted or shifted list reads differently


def _metadata_json(**changes) -> dict:
    """skinedge.json, format version 1, as the shipped models carry it (preprocess spec v1, mean/std in "input")."""
    d = {
        "format": "skinedge-metadata", "format_version": 1, "name": "test", "description": "",
        "labels": list(LABELS),
        "preprocess": {"height": 16, "width": 16, "resize_filter": "bilinear", "aspect": "squash",
                       "jpeg_draft": False, "alpha_background": [255, 255, 255], "version": 1},
        "output": {"kind": "logits", "temperature": 2.5},
        "abstain_threshold": 0.0,
        "input": {"mean": 100.0, "std": 6.0, "shape": [1, 16, 16, 3], "dtype": "float32"},
        "num_outputs": 5, "provenance": {}, "metrics": {},
    }
    for key, value in changes.items():
        if isinstance(value, dict):
            d[key] = {**d[key], **value}
        else:
            d[key] = value
    return d


def _pack(tmp_path: Path, d: dict, model: Path = FLOAT_MODEL, name: str = "packed.tflite") -> Path:
    """The flatbuffer followed by a stored ZIP with skinedge.json and labels.txt: the documented layout."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("skinedge.json", json.dumps(d))
        zf.writestr("labels.txt", "\n".join(d["labels"]) + "\n")
    path = tmp_path / name
    path.write_bytes(model.read_bytes() + buf.getvalue())
    return path


def _photo(seed: int = 0, size=(40, 30)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)


def _expected(pixels16: np.ndarray, mean: float, std: float, temperature: float) -> tuple[np.ndarray, np.ndarray]:
    """(calibrated scores, uncalibrated scores) from a bare interpreter fed ``(pixel - mean) / std``."""
    logits, _ = ref.raw_litert(FLOAT_MODEL, ref.to_input(pixels16, np.float32, mean, std))
    return ref.softmax(logits, temperature), ref.softmax(logits)


# -- metadata: labels, temperature, mean/std, abstain threshold, preprocessing -------------------------------------


def test_metadata_labels_temperature_and_normalisation_are_applied(tmp_path: Path) -> None:
    model = _pack(tmp_path, _metadata_json())
    rgb = _photo()
    with Classifier(model, num_threads=1, top_k=5) as clf:
        assert clf.labels == LABELS and clf.temperature == 2.5
        pixels, _, _ = clf.preprocess(rgb)
        result = clf.classify(rgb)
        raw = clf.raw_output(pixels)
    pixels16 = ref.nearest_resize(pixels, rgb, 16, 16)[0]
    calibrated, uncalibrated = _expected(pixels16, 100.0, 6.0, 2.5)
    logits, _ = ref.raw_litert(FLOAT_MODEL, ref.to_input(pixels16, np.float32, 100.0, 6.0))
    np.testing.assert_allclose(raw, logits, rtol=0, atol=1e-6)  # raw_output: before calibration
    np.testing.assert_allclose(result.scores, calibrated, rtol=0, atol=1e-6)
    assert np.abs(calibrated - uncalibrated).max() > 0.05  # the temperature matters for this photo
    order = sorted(range(5), key=lambda i: -calibrated[i])
    assert [c.label for c in result.top_k] == [LABELS[i] for i in order]
    assert result.label == LABELS[order[0]] and result.index == order[0]


@pytest.mark.parametrize("mean, std", [(0.0, 255.0), (127.5, 127.5), (30.0, 2.0)])
def test_metadata_mean_and_std_are_what_is_fed(tmp_path: Path, mean: float, std: float) -> None:
    model = _pack(tmp_path, _metadata_json(input={"mean": mean, "std": std}, output={"temperature": 1.0}))
    rgb = _photo(seed=1)
    with Classifier(model, num_threads=1) as clf:
        pixels, _, _ = clf.preprocess(rgb)
        got = clf.raw_output(pixels)
    logits, _ = ref.raw_litert(FLOAT_MODEL, ref.to_input(pixels, np.float32, mean, std))
    np.testing.assert_allclose(got, logits, rtol=0, atol=1e-6)
    other, _ = ref.raw_litert(FLOAT_MODEL, ref.to_input(pixels, np.float32, mean + 8, std * 1.5))
    assert np.abs(other - logits).max() > 1e-3  # this model does tell these normalisations apart


def test_abstention_uses_calibrated_scores_and_the_metadata_threshold(tmp_path: Path) -> None:
    rgb = _photo(seed=2)
    pixels16 = ref.resize_candidates(rgb, 16, 16)[0]
    calibrated, uncalibrated = _expected(pixels16, 100.0, 6.0, 2.5)
    top_cal, top_raw = calibrated.max(), uncalibrated.max()
    assert top_cal < top_raw - 0.02  # a temperature above 1 flattens the scores
    between = round(float(top_cal + top_raw) / 2, 4)
    for threshold, uncertain in ((between, True), (round(float(top_cal) - 0.01, 4), False)):
        model = _pack(tmp_path, _metadata_json(abstain_threshold=threshold), name=f"t{threshold}.tflite")
        with Classifier(model, num_threads=1) as clf:
            assert clf.abstain_threshold == threshold
            result = clf.classify(rgb)
        assert result.score == pytest.approx(top_cal, abs=1e-6)
        assert result.uncertain is uncertain, (threshold, top_cal, top_raw)


def test_abstain_threshold_boundary_and_override(tmp_path: Path) -> None:
    """``uncertain`` means "top score below the threshold": a score equal to it is an answer."""
    model = _pack(tmp_path, _metadata_json(abstain_threshold=0.99))
    rgb = _photo(seed=3)
    with Classifier(model, num_threads=1) as clf:
        result = clf.classify(rgb)
        assert result.uncertain  # nothing here scores 0.99
        top = result.score
    with Classifier(model, num_threads=1, abstain_threshold=top) as clf:
        assert clf.classify(rgb).uncertain is False  # equal: not below
    with Classifier(model, num_threads=1, abstain_threshold=float(np.nextafter(top, 1))) as clf:
        assert clf.classify(rgb).uncertain is True


def test_preprocessing_spec_from_metadata_is_used(tmp_path: Path) -> None:
    """center_crop + bicubic + a coloured background from the metadata, checked pixel by pixel."""
    d = _metadata_json(preprocess={"aspect": "center_crop", "resize_filter": "bicubic",
                                   "alpha_background": [0, 128, 255]})
    model = _pack(tmp_path, d)
    rgba = np.dstack([_photo(seed=4, size=(50, 20)), np.tile(np.linspace(0, 255, 50).astype(np.uint8), (20, 1))])
    path = tmp_path / "a.png"
    Image.fromarray(rgba, "RGBA").save(path)
    with Classifier(model, num_threads=1) as clf:
        pixels, _, _ = clf.preprocess(path)
    flat = _over(rgba, (0, 128, 255))
    box = ref.center_crop_box(50, 20, 16, 16)
    _, worst, share = ref.nearest_resize(pixels, flat, 16, 16, "bicubic", box)
    assert worst <= 1 and share <= 1e-3, (worst, share)


# -- ranking -------------------------------------------------------------------------------------------------------


def test_top_k_is_the_k_best_in_descending_order_and_threshold_is_inclusive(tmp_path: Path) -> None:
    model = _pack(tmp_path, _metadata_json())
    rgb = _photo(seed=5)
    with Classifier(model, num_threads=1, top_k=5) as clf:
        everything = clf.classify(rgb)
    scores = np.asarray(everything.scores)
    order = [int(i) for i in sorted(range(5), key=lambda i: -scores[i])]
    assert [c.index for c in everything.top_k] == order
    assert [c.score for c in everything.top_k] == sorted(scores, reverse=True)
    for k in (1, 2, 3):
        with Classifier(model, num_threads=1, top_k=k) as clf:
            assert [c.index for c in clf.classify(rgb).top_k] == order[:k]
    third = float(scores[order[2]])
    with Classifier(model, num_threads=1, top_k=5, score_threshold=third) as clf:
        assert [c.index for c in clf.classify(rgb).top_k] == order[:3]  # the third is at the threshold: kept


def test_labels_file_order_is_output_order(tmp_path: Path) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(["first", "second"]) + "\n")
    pixels = _photo(seed=6, size=(8, 8))
    probs, _ = ref.raw_litert(UINT8_MODEL, ref.to_input(pixels, np.uint8))
    with Classifier(UINT8_MODEL, num_threads=1, labels=labels) as clf:
        result = clf.classify(pixels)
    np.testing.assert_allclose(result.scores, probs, rtol=0, atol=1e-9)
    best = int(np.argmax(probs))
    assert result.label == ("first", "second")[best] and result.index == best
    assert [c.label for c in result.top_k] == [("first", "second")[best], ("first", "second")[1 - best]]


# -- timings: each field is its own step, in milliseconds ---------------------------------------------------------


class FakeClock:
    """``time.perf_counter`` replaced by a per-thread clock that only the wrapped steps advance."""

    def __init__(self) -> None:
        self._local = threading.local()

    def __call__(self) -> float:
        return getattr(self._local, "now", 1000.0)

    def advance(self, ms: float) -> None:
        self._local.now = self() + ms / 1000


STEPS_MS = {"decode": 7.0, "resize": 3.0, "invoke": 11.0, "heatmap": 5.0}


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    import sys

    from ai_edge_litert.interpreter import Interpreter

    clock = FakeClock()
    monkeypatch.setattr(time, "perf_counter", clock)

    def advancing(fn, ms):
        def wrapped(*args, **kwargs):
            out = fn(*args, **kwargs)
            clock.advance(ms)
            return out
        return wrapped

    # Each step, wherever skinedge's modules imported it from, takes a known time.
    from skinedge import explain, preprocess

    originals = {"decode": preprocess.decode, "resize": preprocess.resize}
    for module in [m for name, m in sys.modules.items() if name.startswith("skinedge") and m is not None]:
        for step, fn in originals.items():
            if getattr(module, step, None) is fn:
                monkeypatch.setattr(module, step, advancing(fn, STEPS_MS[step]))
        if getattr(module, "perf_counter", None) is not None and module.__name__ != "skinedge.profiling":
            monkeypatch.setattr(module, "perf_counter", clock)
    monkeypatch.setattr(Interpreter, "invoke", advancing(Interpreter.invoke, STEPS_MS["invoke"]))
    monkeypatch.setattr(explain, "heatmap_for", advancing(explain.heatmap_for, STEPS_MS["heatmap"]))
    return clock


def _assert_timings(t, heatmap: float = 0.0) -> None:
    assert t.decode_ms == pytest.approx(STEPS_MS["decode"], abs=1e-6)
    assert t.preprocess_ms == pytest.approx(STEPS_MS["resize"], abs=1e-6)
    assert t.invoke_ms == pytest.approx(STEPS_MS["invoke"], abs=1e-6)
    assert t.heatmap_ms == pytest.approx(heatmap, abs=1e-6)
    assert t.total_ms == pytest.approx(STEPS_MS["decode"] + STEPS_MS["resize"] + STEPS_MS["invoke"] + heatmap,
                                       abs=1e-6)


def test_classify_timings_are_each_step_in_ms(tmp_path: Path, clock: FakeClock) -> None:
    model = _pack(tmp_path, _metadata_json())
    with Classifier(model, num_threads=1) as clf:
        result = clf.classify(_photo())
    _assert_timings(result.timings)
    assert result.to_dict()["timings_ms"] == {"decode": 7.0, "preprocess": 3.0, "invoke": 11.0}


def test_batch_timings_are_each_step_in_ms(tmp_path: Path, clock: FakeClock) -> None:
    model = _pack(tmp_path, _metadata_json())
    with Classifier(model, num_threads=1) as clf:
        results = clf.classify_many([_photo(seed=i) for i in range(4)], workers=2)
    assert len(results) == 4
    for r in results:
        _assert_timings(r.timings)


def test_explain_timings_add_the_heatmap_step(clock: FakeClock) -> None:
    with Classifier(num_threads=1) as clf:  # the bundled model: the one with class-activation map outputs
        result = clf.explain(_photo(seed=8, size=(64, 48)))
    _assert_timings(result.timings, heatmap=STEPS_MS["heatmap"])
    assert result.to_dict()["timings_ms"] == {"decode": 7.0, "preprocess": 3.0, "invoke": 11.0, "heatmap": 5.0}


# -- decoding: channel order, orientation, transparency, depth, JPEG draft -----------------------------------------

COLOURS = np.array([[230, 20, 40], [30, 200, 60], [20, 40, 220], [250, 240, 10]], dtype=np.uint8)  # R G B Y


def _quadrants(w: int = 48, h: int = 32) -> np.ndarray:
    """Four solid quadrants (red, green / blue, yellow): a resize keeps each quadrant's centre colour exactly."""
    a = np.empty((h, w, 3), dtype=np.uint8)
    a[: h // 2, : w // 2], a[: h // 2, w // 2 :] = COLOURS[0], COLOURS[1]
    a[h // 2 :, : w // 2], a[h // 2 :, w // 2 :] = COLOURS[2], COLOURS[3]
    return a


def _centres(a: np.ndarray) -> np.ndarray:
    h, w = a.shape[:2]
    return np.array([a[h // 4, w // 4], a[h // 4, 3 * w // 4], a[3 * h // 4, w // 4], a[3 * h // 4, 3 * w // 4]])


@pytest.mark.parametrize("fmt, suffix, tol", [("PNG", "png", 0), ("BMP", "bmp", 0), ("TIFF", "tif", 0),
                                              ("WEBP", "webp", 0), ("JPEG", "jpg", 6)])
def test_decoded_channels_are_rgb(tmp_path: Path, fmt: str, suffix: str, tol: int) -> None:
    path = tmp_path / f"q.{suffix}"
    Image.fromarray(_quadrants(), "RGB").save(path, fmt, **({"lossless": True} if fmt == "WEBP" else {}),
                                              **({"quality": 100} if fmt == "JPEG" else {}))
    for got in (np.asarray(decode(path)), prepare(path, PreprocessSpec(height=16, width=24, jpeg_draft=False))):
        assert np.abs(_centres(got).astype(int) - COLOURS).max() <= tol, fmt


def test_palette_grayscale_and_cmyk_convert_to_the_same_rgb(tmp_path: Path) -> None:
    q = _quadrants()
    Image.fromarray(q, "RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=4).save(tmp_path / "p.png")
    assert np.array_equal(_centres(np.asarray(decode(tmp_path / "p.png"))), COLOURS)
    gray = (q.astype(np.float64) @ [0.299, 0.587, 0.114]).round().astype(np.uint8)
    Image.fromarray(gray, "L").save(tmp_path / "l.png")
    got = np.asarray(decode(tmp_path / "l.png"))
    assert np.array_equal(got, np.repeat(gray[:, :, None], 3, axis=2))
    cmyk = np.concatenate([255 - q, np.zeros(q.shape[:2] + (1,), np.uint8)], axis=2)  # K = 0: RGB = 255 - CMY
    Image.fromarray(cmyk, "CMYK").save(tmp_path / "c.tif")
    assert np.array_equal(_centres(np.asarray(decode(tmp_path / "c.tif"))), COLOURS)


# EXIF orientation -> what the upright picture is, as numpy operations on the stored pixels (the EXIF standard).
ORIENTATIONS = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
    8: lambda a: np.rot90(a, 1),
}


@pytest.mark.parametrize("orientation", sorted(ORIENTATIONS))
@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_exif_orientation_gives_the_upright_picture(tmp_path: Path, orientation: int, fmt: str) -> None:
    stored = _quadrants(48, 32)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}.{fmt.lower()}"
    Image.fromarray(stored, "RGB").save(path, fmt, exif=exif, **({"quality": 100} if fmt == "JPEG" else {}))
    upright = ORIENTATIONS[orientation](stored)
    got = np.asarray(decode(path))
    assert got.shape == upright.shape
    assert np.abs(_centres(got).astype(int) - _centres(upright)).max() <= 6, orientation
    with Classifier(UINT8_MODEL, num_threads=1) as clf:  # and through the classifier's own decode
        assert np.abs(_centres(np.asarray(clf.decode_image(path))).astype(int) - _centres(upright)).max() <= 6


def _over(rgba: np.ndarray, background) -> np.ndarray:
    """Alpha compositing over an opaque background, by its definition: c * a + bg * (1 - a)."""
    a = rgba[..., 3:4].astype(np.float64) / 255
    return np.round(rgba[..., :3] * a + np.asarray(background, np.float64) * (1 - a)).astype(np.uint8)


def _alpha_ramp() -> np.ndarray:
    rgb = np.broadcast_to(np.array([200, 30, 90], np.uint8), (8, 256, 3))
    alpha = np.broadcast_to(np.arange(256, dtype=np.uint8), (8, 256))[..., None]
    return np.concatenate([rgb, alpha], axis=2)


@pytest.mark.parametrize("background", [(255, 255, 255), (0, 128, 255)])
def test_transparency_is_composited_over_the_spec_background(tmp_path: Path, background) -> None:
    rgba = _alpha_ramp()
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    got = np.asarray(decode(tmp_path / "a.png", background=background))
    assert np.abs(got.astype(int) - _over(rgba, background)).max() <= 1
    la = np.stack([rgba[..., 1], rgba[..., 3]], axis=2)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    gray = np.repeat(la[..., :1], 3, axis=2)
    expected = _over(np.concatenate([gray, la[..., 1:]], axis=2), background)
    assert np.abs(np.asarray(decode(tmp_path / "la.png", background=background)).astype(int) - expected).max() <= 1
    spec = PreprocessSpec(height=8, width=256, alpha_background=background, jpeg_draft=False)
    with Classifier(UINT8_MODEL, num_threads=1, preprocess=_with_size(spec, 8, 8)) as clf:
        assert np.abs(np.asarray(clf.decode_image(tmp_path / "a.png")).astype(int) - _over(rgba, background)).max() <= 1


def _with_size(spec: PreprocessSpec, h: int, w: int) -> PreprocessSpec:
    from dataclasses import replace

    return replace(spec, height=h, width=w)


def test_palette_transparency_is_composited(tmp_path: Path) -> None:
    im = Image.new("P", (4, 2))
    im.putpalette([200, 30, 90, 10, 250, 10] + [0, 0, 0] * 254)
    im.putdata([0, 1, 0, 1, 1, 0, 1, 0])
    im.save(tmp_path / "p.png", transparency=1)
    got = np.asarray(decode(tmp_path / "p.png", background=(0, 128, 255)))
    expected = np.where(np.array([0, 1, 0, 1, 1, 0, 1, 0]).reshape(2, 4, 1) == 1, [0, 128, 255], [200, 30, 90])
    assert np.array_equal(got, expected.astype(np.uint8))


def test_16bit_grayscale_keeps_the_top_8_bits(tmp_path: Path) -> None:
    values = np.array([[0, 255, 256, 511, 32768, 65535, 1000, 40000]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    got = np.asarray(decode(tmp_path / "g16.png"))[..., 0]
    np.testing.assert_array_equal(got, (values >> 8).astype(np.uint8))


@pytest.mark.parametrize("size, target, decoded", [((1280, 960), 224, (320, 240)), ((1000, 900), 224, (250, 225)),
                                                   ((895, 700), 224, (448, 350)), ((2000, 1900), 224, (250, 238)),
                                                   ((300, 200), 224, (300, 200))])
def test_jpeg_draft_decodes_at_the_smallest_scale_that_covers_the_input(tmp_path: Path, size, target, decoded) -> None:
    """The spec's draft: the largest DCT reduction (1/2, 1/4, 1/8) for which the photo still has ``target``
    pixels on its short side; libjpeg rounds the scaled size up."""
    path = tmp_path / "big.jpg"
    Image.fromarray(_photo(seed=7, size=size)).save(path, quality=90)
    spec = PreprocessSpec(height=target, width=target, jpeg_draft=True)
    assert decode(path, draft_size=(target, target)).size == decoded
    with Classifier(UINT8_MODEL, num_threads=1, preprocess=_with_size(spec, 8, 8)) as clf:
        # the classifier asks for its own input size (8 px here): 1/8 of the photo
        assert clf.decode_image(path).size == (-(-size[0] // 8), -(-size[1] // 8))


def test_float_grayscale_is_clipped_to_8_bits(tmp_path: Path) -> None:
    values = np.array([[-40.0, 0.0, 12.7, 200.0, 255.0, 300.0, 1000.0, 77.0]], dtype=np.float32)
    Image.fromarray(values, "F").save(tmp_path / "f.tif")
    got = np.asarray(decode(tmp_path / "f.tif"))[..., 0]
    np.testing.assert_array_equal(got, np.clip(values, 0, 255).astype(np.uint8))
