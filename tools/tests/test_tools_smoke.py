"""End-to-end smoke run of the training tools: every stage, checkpoint, rebuild, runtime load, report.

Small on purpose (alpha 0.35, 96x96 input, 8 images per class and split, one epoch per stage) so it
runs in a few minutes on 2 CPU cores; it asserts real properties of the artifacts it makes.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import h5py
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow", reason="the training tools need TensorFlow (pip install -e ./tools)")

from skinedge import Classifier  # noqa: E402
from skinedge.selftest import run_selftest  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smoke(tools_smoke_run: Path) -> dict[str, Path]:
    """The smoke run's folders (tests/tools_smoke_run.py, run in the background from collection, conftest.py)."""
    return {name: tools_smoke_run / name for name in ("run", "models", "nearest", "docs", "cache")}


def test_every_stage_writes_checkpoint_history_and_logits(smoke):
    for stage in ("stage1", "stage2", "stage3"):
        d = smoke["run"] / stage
        assert (d / "model.weights.h5").stat().st_size > 100_000
        with h5py.File(d / "model.weights.h5") as h5:  # the network's weights alone: no Adam moments
            assert sorted(h5) == ["layers", "vars"]
        with open(d / "history.csv") as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == 1
        for key in ("loss", "accuracy", "macro_precision", "macro_recall", "macro_f1"):
            assert 0 <= float(rows[0][key]) < 100 and 0 <= float(rows[0][f"val_{key}"]) < 100
        assert np.load(d / "logits_test.npy").shape == (48, 6)


def test_int8_artifact_loads_in_runtime_with_its_metadata(smoke):
    from skinedge_tools.data import DEFAULT_CLASSES

    with Classifier(smoke["models"] / "skinedge_mobilenetv2_int8.tflite", num_threads=1) as clf:
        assert clf.labels == DEFAULT_CLASSES
        assert (clf.spec.height, clf.spec.width) == (96, 96)
        # int8 body, float softmax tail with the fitted temperature: calibrated float32 probabilities out.
        assert clf.input_details["dtype"] == np.uint8 and clf.output_details["dtype"] == np.float32
        assert clf.output_kind == "probabilities" and clf.metadata.metrics["calibration_temperature"] > 0
        scores = clf.invoke(np.zeros((96, 96, 3), np.uint8))
        assert abs(scores.sum() - 1.0) < 1e-5 and (scores >= 0).all()
        assert clf.delegated
        md = clf.metadata
        assert md is not None and md.provenance["checkpoint"] == "stage3/model.weights.h5"
        assert 0.0 <= md.metrics["test_accuracy"] <= 1.0
        assert all(check.passed for check in run_selftest(clf, clf.model_files))


def test_int8_agrees_with_keras_checkpoint_on_most_images(smoke):
    from skinedge_tools.data import load_arrays
    from skinedge_tools.train import discover_splits, load_trained

    model, cfg = load_trained(smoke["run"], "stage3")
    split = discover_splits(cfg)["test"]
    x, kept = load_arrays(split, cfg.spec(), smoke["cache"])
    keras_pred = model.predict(x.astype(np.float32), verbose=0).argmax(1)
    with Classifier(smoke["models"] / "skinedge_mobilenetv2_int8.tflite", num_threads=1) as clf:
        int8_pred = np.asarray([clf.raw_output(img).argmax() for img in x])
    assert (keras_pred == int8_pred).mean() >= 0.6


def test_conversion_is_deterministic(smoke):
    """Two rebuilds of one checkpoint, in two processes, convert it to the same float32 flatbuffer, byte for byte
    (same machine, same representative photos; the metadata holds each rebuild's own measurements)."""
    from skinedge.metadata import unpack

    name = "skinedge_mobilenetv2_float32.tflite"
    first, second = (unpack((smoke[d] / name).read_bytes(), d).flatbuffer for d in ("models", "nearest"))
    assert len(first) > 100_000 and first == second


def test_rebuild_with_nearest_rounding_skips_gptq(smoke):
    """``--weight-rounding nearest`` is the converter's plain rounding: no GPTQ step, other int8 weights."""
    nearest = json.loads((smoke["nearest"] / "skinedge_mobilenetv2_rebuild_report.json").read_text())
    gptq = json.loads((smoke["models"] / "skinedge_mobilenetv2_rebuild_report.json").read_text())
    assert nearest["weight_rounding_method"] == "nearest" and "weight_rounding" not in nearest
    assert gptq["weight_rounding_method"] == "gptq" and len(gptq["weight_rounding"]) > 0
    assert "GPTQ" not in nearest["provenance"]["quantization"] and "GPTQ" in gptq["provenance"]["quantization"]
    assert nearest["int8"]["flatbuffer_sha256"] != gptq["int8"]["flatbuffer_sha256"]


def test_report_has_every_section_and_figure(smoke):
    text = (smoke["docs"] / "report.md").read_text()
    for heading in (
        "## Stages",
        "## Epoch-wise curves",
        "## Statistical comparison of stages",
        "## Float vs int8",
        "## Per class",
        "## Per data source",
        "## Calibration and abstention",
    ):
        assert heading in text
    for png in (
        "curves_stage1.png",
        "curves_stage2.png",
        "curves_stage3.png",
        "confusion_int8.png",
        "confusion_float32.png",
        "coverage.png",
    ):
        assert (smoke["docs"] / "figures" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rb = json.loads((smoke["models"] / "skinedge_mobilenetv2_rebuild_report.json").read_text())
    assert 0 <= rb["agreement_int8_float32_test"] <= 1 and rb["size_ratio_int8_float32"] < 1
