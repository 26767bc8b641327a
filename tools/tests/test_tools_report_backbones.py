"""The report's Backbones section, on the two committed runs and their rebuild reports, against figures computed
here independently (scikit-learn, counts by hand)."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
from bundled import bundled

pytest.importorskip("skinedge_tools", reason="the training tools are not installed (pip install -e ./tools)")
sk = pytest.importorskip("sklearn.metrics", reason="the reference figures come from scikit-learn")
from skinedge_tools import report_backbones  # noqa: E402

LITE0, MNV2 = bundled("efficientnet-lite0"), bundled("mobilenetv2")


@pytest.fixture(scope="module")
def entries():
    return [report_backbones.load(b.run, b.int8.parent) for b in (LITE0, MNV2)]


@pytest.fixture(scope="module")
def lines(entries, skin6_dir) -> list[str]:
    """The section, made once (its bootstrap intervals take seconds)."""
    return report_backbones.section(entries, "efficientnet-lite0", skin6_dir / "manifest.csv", None)


def _row(lines: list[str], *starts: str) -> list[str]:
    (row,) = [line for line in lines if line.startswith("| " + " | ".join(starts) + " |")]
    return [c.strip() for c in row.strip("|").split("|")]


def test_stage_and_artifact_rows_are_the_runs_own_figures(entries, lines):
    for b, title in ((LITE0, "EfficientNet-Lite0"), (MNV2, "MobileNetV2")):
        y_val = [Path(f).parts[1] for f in (b.run / "val_files.txt").read_text().split()]
        classes = entries[0].classes
        y_val = np.asarray([classes.index(c) for c in y_val])
        pred = np.load(b.run / "stage2" / "logits_val.npy")[:, :6].argmax(1)  # a gated run's gates come after
        cell = _row(lines, title, "stage2")[2]
        assert float(cell.split()[0]) == pytest.approx(sk.f1_score(y_val, pred, average="macro"), abs=5e-4)
        low, high = map(float, re.findall(r"[\d.]+", cell.split("[")[1]))
        assert low < float(cell.split()[0]) < high
    rb = json.loads(MNV2.report.read_text())
    row = _row(lines, "MobileNetV2", "int8")
    y, p8 = np.asarray(rb["test_labels"]), np.asarray(rb["int8"]["test_pred"])
    p32 = np.asarray(rb["float32"]["test_pred"])
    assert float(row[3].split()[0]) == pytest.approx(sk.f1_score(y, p8, average="macro"), abs=5e-4)
    assert float(row[4]) == pytest.approx(sk.accuracy_score(y, p8), abs=5e-4)
    assert float(row[5].split()[0]) == pytest.approx((p8 == p32).mean(), abs=5e-4)
    assert row[6] == f"{MNV2.int8.stat().st_size:,}"


def test_per_class_and_versus_paper_figures(lines):
    new, old = (json.loads(b.report.read_text()) for b in (LITE0, MNV2))
    y = np.asarray(new["test_labels"])
    pn, po = np.asarray(new["int8"]["test_pred"]), np.asarray(old["int8"]["test_pred"])
    f1 = sk.f1_score(y, pn, average=None)
    assert [float(c) for c in _row(lines, "Eczema")[1:]] == pytest.approx(
        [f1[1], sk.f1_score(y, po, average=None)[1]], abs=5e-4)
    (line,) = [x for x in lines if x.startswith("- int8:")]
    only_new, only_old = int(((pn == y) & (po != y)).sum()), int(((po == y) & (pn != y)).sum())
    assert f"{only_new} photos only EfficientNet-Lite0 gets right, {only_old} only MobileNetV2" in line
    diff = sk.f1_score(y, pn, average="macro") - sk.f1_score(y, po, average="macro")
    assert f"macro-F1 {diff:+.3f} [" in line


def test_per_source_gap_counts_only_sources_with_ten_photos(entries, lines, skin6_dir):
    with open(skin6_dir / "manifest.csv") as f:
        source = {r["path"]: r["source_repo"] for r in csv.DictReader(f)}
    e = entries[0]
    src = np.asarray([source[p] for p in e.test_files])
    right = e.pred("int8") == e.y_test
    acc = {s: float(right[src == s].mean()) for s in set(src) if (src == s).sum() >= 10}
    gap = _row(lines, "**gap** (sources with >= 10 photos)")
    assert float(gap[2]) == pytest.approx(max(acc.values()) - min(acc.values()), abs=5e-4)


def test_refuses_a_default_that_is_not_the_best_on_validation(entries):
    with pytest.raises(ValueError, match="scores best on validation"):
        report_backbones.section(entries, "mobilenetv2", None, None)
