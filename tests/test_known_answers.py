"""Known answers for every input type the runtime supports, computed independently of skinedge's code.

Each case runs a photo through ``Classifier.classify`` and through a second pipeline written here from the
documented spec (``tests/reference_pipeline.py``: Pillow's decoder, Pillow's resampling re-implemented in numpy,
the documented input conversion, a bare LiteRT interpreter), and asserts the same pixels and the same scores:

* pixels: at most 1 apart on at most 0.1% of values (Pillow rounds fractional crop boxes through float32; squash
  resizes agree exactly here);
* scores: within 1e-6 (the same interpreter kernels on the same input give the same output on any CPU; this
  tolerance only absorbs float64 summation order in the softmax).

Models: ``tests/data/valid_models`` (uint8, int8 and float32 input; always present) and, when ``../shared`` is
there, the reference ImageNet models (uint8) and the bundled skin6 models (uint8 raw pixels, float32), with the
answers ``../shared/reference-models/README.md`` records.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import reference_pipeline as ref
from bundled import bundled
from PIL import Image

from skinedge import Classifier
from skinedge.model_io import BUNDLED_MODELS

ROOT = Path(__file__).resolve().parents[1]
VALID = ROOT / "tests" / "data" / "valid_models"
#: Both bundled models' files: int8 (uint8 input) and float32 (float input).
BUNDLED_FILES = [(b.name, kind, path) for b in map(bundled, BUNDLED_MODELS)
                 for kind, path in (("int8-uint8-input", b.int8), ("float32-input", b.float32))]

# (fixture, input dtype, output kind the runtime infers for a model without metadata)
SMALL_MODELS = [
    ("image_int8_io_uint8.tflite", np.uint8, "logits"),  # uint8 out, scale 4e-4: logits
    ("image_int8_io_int8.tflite", np.int8, "logits"),
    ("image_float32.tflite", np.float32, "logits"),
    ("float_ops_int8_io_uint8.tflite", np.uint8, "probabilities"),  # uint8 out, scale 1/256: a softmax
    ("float_ops_int8_io_int8.tflite", np.int8, "probabilities"),
    ("float_ops_float32.tflite", np.float32, "logits"),
]


def photo_like(width: int, height: int, seed: int) -> np.ndarray:
    """A deterministic photo-like RGB array: smooth colour fields, edges and grain (no two channels alike)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    base = np.stack([128 + 90 * np.sin(xx / 9.0 + yy / 23.0), 110 + 80 * np.cos(yy / 7.0),
                     90 + 60 * np.sin((xx - yy) / 13.0)], axis=2)
    base[: height // 3, : width // 4] += 40  # a hard-edged block: where filters and offsets differ most
    return np.clip(base + rng.normal(0, 14, base.shape), 0, 255).astype(np.uint8)


def write_png(tmp_path: Path, rgb: np.ndarray, name: str = "photo.png") -> Path:
    path = tmp_path / name
    Image.fromarray(rgb, "RGB").save(path)
    return path


def reference_pixels(got: np.ndarray, rgb: np.ndarray, width: int, height: int, name: str = "bilinear",
                     box=None) -> np.ndarray:
    """The reference resize of ``rgb``, after asserting that ``got`` (the runtime's) is the same."""
    expected, worst, share = ref.nearest_resize(got, rgb, width, height, name, box)
    assert worst <= 1 and share <= 1e-3, f"pixels differ from Pillow's {name} resampling: max {worst}, {share:.2%}"
    return expected


def expected_scores(model: Path, pixels: np.ndarray, dtype, kind: str, mean=127.5, std=127.5,
                    temperature: float = 1.0, output: str | None = None) -> np.ndarray:
    raw, _ = ref.raw_litert(model, ref.to_input(pixels, dtype, mean, std), output)
    return ref.softmax(raw, temperature) if kind == "logits" else raw


def assert_scores(result, expected: np.ndarray, labels=None) -> None:
    """Scores, top class, ranking and label names all as the independent computation says."""
    got = np.asarray(result.scores)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    order = sorted(range(len(expected)), key=lambda i: (-expected[i], i))  # descending, ties by index
    assert result.index == order[0] and result.score == pytest.approx(expected[order[0]], abs=1e-6)
    assert [c.index for c in result.top_k] == order[: len(result.top_k)]
    if labels is not None:
        assert result.label == labels[order[0]]
        assert [c.label for c in result.top_k] == [labels[i] for i in order[: len(result.top_k)]]


# -- the small converter-made models: uint8, int8 and float32 inputs, no ../shared needed -------------------------


@pytest.mark.parametrize("fixture, dtype, kind", SMALL_MODELS, ids=[m[0] for m in SMALL_MODELS])
@pytest.mark.parametrize("size", [(97, 61), (12, 20)], ids=["downscale", "upscale"])
def test_small_models_known_answers(tmp_path: Path, fixture: str, dtype, kind: str, size) -> None:
    model = VALID / fixture
    rgb = photo_like(*size, seed=len(fixture))
    path = write_png(tmp_path, rgb)
    with Classifier(model, num_threads=1) as clf:
        side = clf.spec.width
        assert np.dtype(clf.input_details["dtype"]) == np.dtype(dtype) and clf.output_kind == kind
        pixels, _, _ = clf.preprocess(path)
        result = clf.classify(path)
    resized = reference_pixels(pixels, rgb, side, side)
    assert_scores(result, expected_scores(model, resized, dtype, kind))
    assert result.label == str(result.index)  # no labels: output indexes, in output order


@pytest.mark.parametrize("fixture, dtype, kind", SMALL_MODELS, ids=[m[0] for m in SMALL_MODELS])
def test_raw_output_is_the_dequantized_tensor(fixture: str, dtype, kind: str) -> None:
    """``raw_output`` (before calibration) is ``(q - zero_point) * scale`` of the model's own output tensor."""
    model = VALID / fixture
    with Classifier(model, num_threads=1) as clf:
        side = clf.spec.width
        pixels = photo_like(side, side, seed=3)
        got = clf.raw_output(pixels)
    raw, _ = ref.raw_litert(model, ref.to_input(pixels, dtype))
    np.testing.assert_allclose(got, raw, rtol=0, atol=1e-9)


def test_input_conventions_match_the_tensors_quantization() -> None:
    """The documented conventions (uint8: pixels; int8: pixels - 128) are what these models' input quantization
    means: ``round(pixel / 255 / scale) + zero_point``, clipped. So the reference above is the spec, not a copy."""
    pixels = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)
    for fixture, dtype, _ in SMALL_MODELS:
        if dtype == np.float32:
            continue
        with Classifier(VALID / fixture, num_threads=1) as clf:
            scale, zero = clf.input_details["quantization"]
            side = clf.spec.width
        info = np.iinfo(dtype)
        q = np.clip(np.round(np.arange(256) / 255.0 / scale) + zero, info.min, info.max)
        p = pixels if side == 16 else pixels[:side, :side]
        np.testing.assert_array_equal(ref.to_input(p, dtype)[0, ..., 0], q[p[..., 0]].astype(dtype))


@pytest.mark.parametrize("name", sorted(ref.FILTERS))
@pytest.mark.parametrize("aspect", ["squash", "center_crop"])
@pytest.mark.parametrize("source, target", [((320, 240), (224, 224)), ((150, 260), (96, 128)), ((61, 40), (64, 48))],
                         ids=["wide-to-square", "tall-to-portrait", "upscale"])
def test_resize_is_pillow_resampling_of_the_spec(name: str, aspect: str, source, target) -> None:
    """Every filter and aspect of the spec, against the numpy re-implementation of Pillow's resampling."""
    from skinedge.preprocess import PreprocessSpec, resize

    if name == "box" and aspect == "center_crop":
        pytest.skip("box weights at exactly +-0.5 flip with float32 crop boxes: nothing to compare at 1 step")
    rgb = photo_like(*source, seed=11)
    height, width = target
    spec = PreprocessSpec(height=height, width=width, resize_filter=name, aspect=aspect, jpeg_draft=False)
    got = resize(Image.fromarray(rgb), spec)
    box = ref.center_crop_box(rgb.shape[1], rgb.shape[0], width, height) if aspect == "center_crop" else None
    reference_pixels(got, rgb, width, height, name, box)


# -- the reference ImageNet models (../shared/reference-models) -----------------------------------------------------

# README.md of ../shared/reference-models: (image) -> (index, label, score) per model, scores to 2 decimals.
README_ANSWERS = {
    "mobilenet_v2_1.0_224_quant.tflite": {"cat.bmp": (286, "Egyptian cat", 0.79),
                                          "grace_hopper.bmp": (653, "military uniform", 0.92),
                                          "hot_dog.jpg": (935, "hotdog, hot dog, red hot", 0.89)},
    "tf2_mobilenet_v2_1.0_224_ptq.tflite": {"cat.bmp": (286, "Egyptian cat", 0.61),
                                            "grace_hopper.bmp": (653, "military uniform", 0.78),
                                            "hot_dog.jpg": (935, "hotdog, hot dog, red hot", 0.38)},
}


@pytest.mark.parametrize("model_name", sorted(README_ANSWERS))
def test_reference_models_known_answers(reference_dir: Path, imagenet_labels: Path, model_name: str) -> None:
    model = reference_dir / model_name
    labels = [line.strip() for line in imagenet_labels.read_text().splitlines()]
    with Classifier(model, labels=imagenet_labels, num_threads=1, top_k=5) as clf:
        kind = clf.output_kind
        for image, (index, label, score) in README_ANSWERS[model_name].items():
            path = reference_dir / "images" / image
            rgb = np.asarray(Image.open(path).convert("RGB"))
            result = clf.classify(path)
            pixels, _, _ = clf.preprocess(path)
            resized = reference_pixels(pixels, rgb, 224, 224)
            assert_scores(result, expected_scores(model, resized, np.uint8, kind), labels)
            assert (result.index, result.label) == (index, label)
            assert result.score == pytest.approx(score, abs=0.005)


# -- the bundled skin6 models (uint8 raw-pixel input; float32 input) -------------------------------------------------

SKIN6_LABELS = ("Acne", "Eczema", "Psoriasis", "SkinCancer", "Vitiligo", "Unknown_Normal")


def _skin6_photos(skin6_dir: Path) -> list[Path]:
    """One test photo of each class (the first JPEG in name order): fixed inputs with real skin in them."""
    return [sorted((skin6_dir / "test" / label).glob("*.jpg"))[0] for label in SKIN6_LABELS]


def _drafted(path: Path, target: int) -> np.ndarray:
    """The spec's JPEG draft, written from its definition: the smallest DCT scale (1, 1/2, 1/4, 1/8) whose
    size still covers ``target`` on both sides; Pillow's decoder then decodes at that scale."""
    im = Image.open(path)
    w, h = im.size
    scale = max(s for s in (1, 2, 4, 8) if s == 1 or s * target <= min(w, h))  # the scaled photo still covers it
    im.draft(im.mode, (w // scale, h // scale))
    assert im.size == (-(-w // scale), -(-h // scale))  # libjpeg rounds the scaled size up
    return np.asarray(im.convert("RGB"))


@pytest.mark.parametrize("model", [f[2] for f in BUNDLED_FILES], ids=[f"{f[0]}-{f[1]}" for f in BUNDLED_FILES])
def test_bundled_models_known_answers(skin6_dir: Path, model: Path) -> None:
    with Classifier(model, num_threads=1, top_k=6) as clf:
        assert clf.output_kind == "probabilities" and clf.labels == SKIN6_LABELS
        dtype = np.dtype(clf.input_details["dtype"]).type
        for path in _skin6_photos(skin6_dir):
            rgb = _drafted(path, 224)
            decoded = np.asarray(clf.decode_image(path))
            assert decoded.shape == rgb.shape and np.abs(decoded.astype(int) - rgb).max() == 0
            pixels, _, _ = clf.preprocess(path)
            resized = reference_pixels(pixels, rgb, 224, 224)
            # Each network's graph holds its own input normalisation: mean 0 and std 1 in the spec
            everything = expected_scores(model, resized, dtype, "probabilities",
                                         mean=0.0, std=1.0, output="probabilities")
            # A gated model's output is one softmax over the classes, then the gates (its metadata names them): the
            # class scores are the classes' share, renormalised; the gates are the rest, as they are.
            n = len(SKIN6_LABELS)
            expected, gates = everything[:n] / everything[:n].sum(), dict(zip(clf.gate_labels, everything[n:]))
            assert len(everything) == n + len(clf.gate_labels)
            result = clf.classify(path)
            assert_scores(result, expected, SKIN6_LABELS)
            assert result.gates == pytest.approx(gates, abs=1e-6)
            opts = clf.resolve_options()
            closed = [g for g, v in gates.items() if v >= getattr(opts, f"{g}_threshold")]
            assert result.uncertain == (expected.max() < clf.abstain_threshold or bool(closed)
                                        or bool(result.quality_problems))


# Recorded once per bundled int8 model, on this project's development machine (x86-64, LiteRT 2.3.0), so that a
# fault that both pipelines above share (Pillow's decoder itself) still shows. Recorded with:
#   .venv/bin/python -c "import sys; sys.path.insert(0, 'tests'); from pathlib import Path;
#   from test_known_answers import _skin6_photos; from skinedge import Classifier; c = Classifier(NAME, num_threads=1);
#   [print(c.classify(p).label, [round(s, 2) for s in c.classify(p).scores], [round(g, 2) for g in
#   c.classify(p).gates.values()]) for p in
#   _skin6_photos(Path('../shared/data/skin6'))]"
# with NAME "mobilenetv2" or "efficientnet-lite0". The tolerance (0.03) covers int8 kernels that round one step
# differently on another CPU; a channel swap, a missed rotation or a wrong crop moves these scores by far more.
RECORDED_BUNDLED_INT8 = {
    "mobilenetv2": [
        ("Acne", [0.45, 0.06, 0.26, 0.20, 0.02, 0.01]),
        ("Eczema", [0.00, 0.83, 0.05, 0.10, 0.01, 0.01]),
        ("Acne", [0.54, 0.06, 0.22, 0.10, 0.07, 0.01]),  # a Psoriasis photo it gets wrong (and is unsure of)
        ("SkinCancer", [0.06, 0.01, 0.39, 0.52, 0.01, 0.01]),
        ("Vitiligo", [0.03, 0.03, 0.04, 0.03, 0.86, 0.00]),
        ("Unknown_Normal", [0.05, 0.08, 0.08, 0.07, 0.04, 0.69]),
    ],
    "efficientnet-lite0": [  # the gated default (issue 21): class scores, then its two gate scores
        ("Psoriasis", [0.04, 0.01, 0.92, 0.03, 0.00, 0.00], [0.00, 0.03]),  # an Acne photo it gets wrong
        ("Eczema", [0.00, 0.68, 0.11, 0.07, 0.13, 0.01], [0.02, 0.80]),  # not answered: other_condition
        ("Acne", [0.40, 0.07, 0.28, 0.12, 0.13, 0.01], [0.00, 0.40]),  # a Psoriasis photo it gets wrong
        ("Eczema", [0.01, 0.48, 0.12, 0.36, 0.02, 0.00], [0.02, 0.48]),  # a SkinCancer photo it gets wrong
        ("Vitiligo", [0.00, 0.00, 0.01, 0.00, 0.98, 0.00], [0.01, 0.03]),
        ("Vitiligo", [0.05, 0.03, 0.01, 0.02, 0.61, 0.28], [0.16, 0.22]),  # an Unknown_Normal photo it gets wrong
    ],
}


@pytest.mark.parametrize("name", list(RECORDED_BUNDLED_INT8))
def test_bundled_int8_recorded_answers(skin6_dir: Path, name: str) -> None:
    with Classifier(name, num_threads=1) as clf:
        for path, (label, scores, *gates) in zip(_skin6_photos(skin6_dir), RECORDED_BUNDLED_INT8[name], strict=True):
            result = clf.classify(path)
            assert result.label == label, path
            np.testing.assert_allclose(result.scores, scores, rtol=0, atol=0.03, err_msg=str(path))
            np.testing.assert_allclose(list(result.gates.values()), gates[0] if gates else [], rtol=0, atol=0.03)
