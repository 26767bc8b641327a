"""The shipped model is what its card and metadata say: its checksum, its provenance, its test figures."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from skinedge import Classifier
from skinedge.model_io import bundled_model_path
from skinedge.selftest import run_selftest

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "models" / "run"


@pytest.fixture(scope="module")
def bundled() -> Classifier:
    with Classifier(num_threads=2) as clf:
        yield clf


def test_bundled_model_is_the_committed_int8_file_and_checks_out(bundled):
    path = bundled_model_path()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert path.with_name(path.name + ".sha256").read_text().split()[0] == digest
    assert bundled.delegated and bundled.input_details["dtype"] == np.uint8
    assert all(check.passed for check in run_selftest(bundled, bundled.model_files))


def test_metadata_names_the_committed_checkpoint(bundled):
    prov = bundled.metadata.provenance
    checkpoint = RUN / prov["checkpoint"]
    assert hashlib.sha256(checkpoint.read_bytes()).hexdigest() == prov["checkpoint_sha256"]
    assert prov["dataset"] == "skin6" and prov["representative_images"] == 500


def test_recorded_test_metrics_reproduce_through_the_runtime(bundled, skin6_dir):
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    labels = bundled.labels
    files = (RUN / "test_files.txt").read_text().split()
    y = np.asarray([labels.index(Path(f).parts[1]) for f in files])
    pred = np.asarray([bundled.classify(skin6_dir / f).index for f in files])
    metrics = bundled.metadata.metrics
    assert metrics["test_n"] == len(files) == 449
    assert round(float((pred == y).mean()), 4) == metrics["test_accuracy"]
    assert round(sklearn_metrics.f1_score(y, pred, average="macro"), 4) == metrics["test_macro_f1"]


def test_evaluate_command_reproduces_recorded_metrics(bundled, skin6_dir):
    """``skinedge-tools evaluate`` scores the calibrated probabilities the file outputs (a second softmax
    over them would flatten every score: ECE 0.48 instead of 0.036 on this model)."""
    pytest.importorskip("sklearn", reason="skinedge-tools evaluate needs the training tools (pip install -e ./tools)")
    import json

    from click.testing import CliRunner
    from skinedge_tools.cli import main

    args = ["evaluate", "--model", str(bundled_model_path()), "--data", str(skin6_dir), "--json"]
    out = CliRunner().invoke(main, args)
    assert out.exit_code == 0, out.output
    got = json.loads(out.output)
    recorded = bundled.metadata.metrics
    assert got["failed"] == 0 and got["n"] == recorded["test_n"]
    assert round(got["accuracy"], 4) == recorded["test_accuracy"]
    assert round(got["macro_f1"], 4) == recorded["test_macro_f1"]
    assert got["ece"] == pytest.approx(recorded["test_ece_calibrated"], abs=1e-3)


@pytest.mark.slow
def test_rebuild_from_committed_checkpoint_is_byte_identical(tmp_path, skin6_dir):
    """The committed artifact is reproducible: same checkpoint + same TensorFlow -> same bytes."""
    pytest.importorskip("tensorflow", reason="rebuilding needs the training tools (pip install -e ./tools)")
    import tensorflow as tf
    from skinedge_tools.quantize import INT8_NAME, rebuild

    recorded_tf = Classifier(bundled_model_path(), num_threads=1).metadata.provenance["tensorflow"]
    if tf.__version__ != recorded_tf:
        pytest.skip(f"committed model was converted with TensorFlow {recorded_tf}, this is {tf.__version__}")
    rebuild(RUN, tmp_path, tmp_path / "cache", data_root=str(skin6_dir))
    assert (tmp_path / INT8_NAME).read_bytes() == bundled_model_path().read_bytes()
