"""Heatmaps: ``Classifier.explain``, its maps, the overlay, the deletion test and ``skinedge explain``.

Known answers are computed here without skinedge's explain code: the raw LiteRT interpreter reads the
model's outputs, Pillow's own bilinear filter checks the map upsampling, and the overlay's colours are
checked pixel by pixel against the blend formula.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from bundled import DEFAULT
from click.testing import CliRunner
from PIL import Image

from skinedge import Classifier, ModelError
from skinedge.cli import main
from skinedge.explain import _LUT, _bilinear, deletion_check, fuse, heatmap_for, heatmap_size, overlay
from skinedge.metadata import unpack
from skinedge.model_io import bundled_model_path
from skinedge.preprocess import PreprocessSpec, prepare

ROOT = Path(__file__).resolve().parents[1]
FLOAT_MODEL = DEFAULT.float32


@pytest.fixture(scope="module")
def clf() -> Classifier:
    with Classifier(num_threads=2) as c:
        yield c


@pytest.fixture(scope="module")
def test_photos(skin6_dir) -> list[Path]:
    files = (DEFAULT.run / "test_files.txt").read_text().split()
    return [skin6_dir / f for f in files]


def _raw_outputs(model: Path, pixels: np.ndarray) -> dict[str, np.ndarray]:
    """Every output of ``model`` on ``pixels`` through a bare LiteRT interpreter (no skinedge code)."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=unpack(model.read_bytes(), str(model)).flatbuffer)
    it.allocate_tensors()
    inp = it.get_input_details()[0]
    it.set_tensor(inp["index"], pixels[None].astype(inp["dtype"]))
    it.invoke()
    return {d["name"]: it.get_tensor(d["index"])[0].astype(np.float64) for d in it.get_output_details()}


@pytest.mark.parametrize("model, tolerance", [(FLOAT_MODEL, 1e-5), (None, 0.02)], ids=["float32", "int8"])
def test_class_maps_average_to_the_scores(model, tolerance, test_photos):
    """CAM's defining property: the head at every position, averaged, is the logits. The float file
    must hold it to float rounding; int8 to its rounding of the pooled features and the logits."""
    path = model or bundled_model_path()
    md = unpack(path.read_bytes(), str(path)).metadata
    assert md.map_outputs == ("class_maps", "class_maps_fine")
    temperature = md.metrics["calibration_temperature"]
    for photo in test_photos[::90]:
        out = _raw_outputs(path, prepare(photo))
        n = len(md.output_labels)  # one map per output: the six classes, then a gated model's gates
        assert out["class_maps"].shape == (7, 7, n) and out["class_maps_fine"].shape == (14, 14, n)
        z = out["class_maps"].mean(axis=(0, 1)) / temperature
        expected = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        np.testing.assert_allclose(out["probabilities"], expected, atol=tolerance)


def test_explain_scores_are_classify_scores_and_heatmap_is_over_the_picture(clf, test_photos):
    photo = test_photos[0]
    plain, explained = clf.classify(photo), clf.explain(photo)
    assert plain.heatmap is None and plain.heatmap_label is None
    assert explained.scores == plain.scores and explained.label == plain.label
    heat = explained.heatmap
    w, h = clf.decode_image(photo).size
    assert heat.dtype == np.float32 and heat.shape == heatmap_size((w, h))[::-1]
    assert abs(heat.shape[1] / heat.shape[0] - w / h) < 0.02  # the photo's aspect
    assert heat.min() == 0.0 and heat.max() == 1.0
    assert explained.heatmap_label == explained.label
    d = explained.to_dict()
    assert d["heatmap_label"] == explained.label and d["timings_ms"]["heatmap"] > 0
    assert "heatmap" not in plain.to_dict()["timings_ms"]


def test_explain_follows_the_requested_label(clf, test_photos):
    photo = test_photos[0]
    top = clf.explain(photo)
    other_label = next(lab for lab in clf.labels if lab != top.label)
    other = clf.explain(photo, label=other_label)
    assert other.heatmap_label == other_label and other.label == top.label
    # The map of another class is another map (its own head weights), not the top class's again.
    assert np.abs(other.heatmap - top.heatmap).mean() > 0.02
    with pytest.raises(ValueError, match="unknown label"):
        clf.explain(photo, label="Measles")


def test_heatmap_is_the_fused_maps_read_independently(clf, test_photos):
    """The heatmap equals the model's two map outputs, fused as documented, recomputed here with
    Pillow's bilinear and bicubic filters on the raw interpreter's outputs."""
    photo = test_photos[5]
    result = clf.explain(photo)
    out = _raw_outputs(bundled_model_path(), prepare(photo))
    c = result.index
    coarse = np.asarray(Image.fromarray(out["class_maps"][..., c].astype(np.float32), "F").resize(
        (14, 14), Image.Resampling.BILINEAR), dtype=np.float64)
    fine = out["class_maps_fine"][..., c]
    fused = (coarse - coarse.mean()) / coarse.std() + (fine - fine.mean()) / fine.std()
    w, h = heatmap_size(clf.decode_image(photo).size)
    spread = np.asarray(Image.fromarray(fused.astype(np.float32), "F").resize((w, h), Image.Resampling.BICUBIC))
    expected = (spread - spread.min()) / (spread.max() - spread.min())
    np.testing.assert_allclose(result.heatmap, expected, atol=2e-3)


def test_bilinear_matrix_matches_pillow():
    x = np.random.default_rng(1).normal(size=(7, 5)).astype(np.float32)
    ours = _bilinear(7, 14) @ x @ _bilinear(5, 10).T
    pillow = np.asarray(Image.fromarray(x, "F").resize((10, 14), Image.Resampling.BILINEAR))
    np.testing.assert_allclose(ours, pillow, atol=1e-5)


def test_fuse_weighs_maps_equally_and_ignores_flat_ones():
    coarse = np.zeros((2, 2, 1))
    coarse[0, 0, 0] = 4.0  # hot top-left
    fine = np.zeros((4, 4, 1))
    fine[3, 3, 0] = 100.0  # hot bottom-right, on another scale entirely
    fused = fuse([coarse, fine], 0)
    assert fused.shape == (4, 4)
    assert fused[0, 0] > 0 and fused[3, 3] > fused[1, 1]  # both maps speak, despite the 25x scale gap
    flat = fuse([np.ones((2, 2, 1)), fine], 0)
    np.testing.assert_allclose(flat, (fine[..., 0] - fine.mean()) / fine.std())


def test_center_crop_heatmap_is_zero_outside_what_the_model_saw():
    maps = [np.random.default_rng(2).normal(size=(7, 7, 3))]
    spec = PreprocessSpec(aspect="center_crop")
    heat = heatmap_for(maps, 1, (120, 60), spec)
    assert heat.shape == (60, 120)
    assert not heat[:, :30].any() and not heat[:, 90:].any()
    assert heat[:, 30:90].max() == 1.0
    assert heatmap_for(maps, 1, (4000, 2000), spec).shape == (64, 128)  # long side capped, same aspect


def test_overlay_blends_by_heat():
    rng = np.random.default_rng(3)
    photo = Image.fromarray(rng.integers(0, 256, (40, 60, 3), dtype=np.uint8))
    heat = np.zeros((40, 60), dtype=np.float32)
    heat[10:20, 20:30] = 1.0
    out = np.asarray(overlay(photo, heat, alpha=0.5), dtype=np.float64)
    src = np.asarray(photo, dtype=np.float64)
    assert out.shape == src.shape
    np.testing.assert_array_equal(out[heat == 0], src[heat == 0])  # cold stays as photographed
    expected = 0.5 * src[15, 25] + 0.5 * _LUT[255]
    np.testing.assert_allclose(out[15, 25], expected, atol=1.0)
    with pytest.raises(ValueError):
        overlay(photo, heat, alpha=1.5)


def test_model_without_maps_cannot_explain(quant_model, imagenet_labels, cat_bmp):
    with Classifier(quant_model, labels=imagenet_labels, num_threads=1) as ref:
        assert not ref.has_class_maps
        with pytest.raises(ModelError, match="no class-activation map outputs"):
            ref.explain(cat_bmp)


def test_deletion_test_on_a_fixed_set(clf, test_photos):
    """Faithfulness, asserted on 24 test photos (every 19th; the whole split is measured by
    benchmarks/explain_bench.py): greying the hottest 20% must hurt the top score more than greying a
    random 20% on most photos, and on average by a wide margin. Measured on this set: the heatmap wins on
    22 of 24 photos, mean drops 0.43 vs 0.22 (the whole split: 0.83 of photos; plain CAM alone 0.73)."""
    checks = [deletion_check(clf, p, seed=i) for i, p in enumerate(test_photos[::19])]
    share = np.mean([c.hot_hurts_more for c in checks])
    hot, rand = np.mean([c.hot_drop for c in checks]), np.mean([c.random_drop for c in checks])
    assert len(checks) == 24
    assert share >= 0.75, (share, hot, rand)
    assert hot > 1.5 * rand, (hot, rand)


def test_cli_explain_writes_an_overlay(tmp_path, test_photos):
    photo = test_photos[0]
    out = tmp_path / "o.png"
    res = CliRunner().invoke(main, ["explain", str(photo), "-o", str(out), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["overlay"] == str(out) and data["heatmap_label"] == data["label"]
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size == Image.open(photo).size  # skin6 photos are under 2048 px


def test_cli_explain_errors(tmp_path, test_photos, quant_model):
    runner = CliRunner()
    bad = tmp_path / "x.jpg"
    bad.write_bytes(b"not a jpeg")
    res = runner.invoke(main, ["explain", str(bad), "-o", str(tmp_path / "o.png")])
    assert res.exit_code == 1 and "x.jpg" in res.output and "Traceback" not in res.output
    res = runner.invoke(main, ["explain", str(test_photos[0]), "--label", "Measles", "-o", str(tmp_path / "o.png")])
    assert res.exit_code == 2 and "Measles" in res.output
    res = runner.invoke(main, ["explain", str(test_photos[0]), "--label", "eczema", "--json", "-o",
                               str(tmp_path / "o.png")])
    assert res.exit_code == 0 and json.loads(res.stdout)["heatmap_label"] == "Eczema"  # case is not a mistake
    res = runner.invoke(main, ["explain", str(test_photos[0]), "--model", "MobileNetV2", "--json", "-o",
                               str(tmp_path / "o.png")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(main, ["explain", str(test_photos[0]), "--model", str(quant_model)])
    assert res.exit_code == 2 and "no class-activation map outputs" in res.output
