"""The report's Training trials section: rows scored from each record's own logits, checked against scikit-learn
and against records built here whose answers are known (all right, or a copy of the shipped run)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from bundled import bundled

pytest.importorskip("skinedge_tools", reason="the training tools are not installed (pip install -e ./tools)")
sk = pytest.importorskip("sklearn.metrics", reason="the reference figures come from scikit-learn")
from skinedge_tools import report_trials  # noqa: E402

SHIPPED = bundled("efficientnet-lite0").run
RECORDS = Path(__file__).resolve().parents[2] / "tools" / "experiments" / "results" / "2026-12-02-training-trials"


def _record(tmp: Path, name: str, logits: dict[str, np.ndarray], **config) -> Path:
    """A trial record: the shipped run's config and photo lists, with ``config`` changes and these logits."""
    out = tmp / name
    (out / "stage3").mkdir(parents=True)
    cfg = json.loads((SHIPPED / "config.json").read_text())
    stages = config.pop("stages", None)
    cfg.update(config)
    if stages:
        for st, change in zip(cfg["stages"], stages, strict=True):
            st.update(change)
    (out / "config.json").write_text(json.dumps(cfg))
    for split in ("val", "test"):
        shutil.copy(SHIPPED / f"{split}_files.txt", out)
        np.save(out / "stage3" / f"logits_{split}.npy", logits[split].astype(np.float32))
    (out / "stage3" / "stage.json").write_text(json.dumps({"swa_epochs": 4, "swa_val_macro_f1": 0.5,
                                                             "kept_val_macro_f1": 0.6, "swa_used": False}))
    return out


def _labels(split: str) -> np.ndarray:
    classes = json.loads((SHIPPED / "config.json").read_text())["classes"]
    return np.asarray([classes.index(Path(f).parts[1]) for f in (SHIPPED / f"{split}_files.txt").read_text().split()])


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip("|").split("|")]


def test_rows_score_known_answers_and_name_what_changed(tmp_path, skin6_dir):
    perfect = {s: np.eye(6)[_labels(s)] * 5 for s in ("val", "test")}
    copy = {s: np.load(SHIPPED / "stage3" / f"logits_{s}.npy") for s in ("val", "test")}
    # outliers={}: the records are six-class runs (the shipped one is gated; its abstention logits are sliced off)
    _record(tmp_path, "a_perfect", perfect, seed=3, source_augment=True, mixup=0.2, teacher="runs/t.npz",
            distill=0.7, stages=[{}, {}, {"average_weights": True}], outliers={})
    fixed = [{"keep_best": None, "early_stop_patience": None, "epochs": e} for e in (12, 10, 3)]
    _record(tmp_path, "b_copy", copy, refit_on_val=True, train_fraction=0.5, stages=fixed, outliers={})
    lines = report_trials.section(SHIPPED, tmp_path, skin6_dir / "manifest.csv")
    rows = {_cells(line)[0]: _cells(line) for line in lines if line.startswith("| ") and "---" not in line}
    assert list(rows) == ["trial", "shipped", "a_perfect", "b_copy"]
    a, b, shipped = rows["a_perfect"], rows["b_copy"], rows["shipped"]
    assert a[1] == ("EfficientNet-Lite0, seed 3, source-cue augmentation, SWA over stage 3, mixup 0.2, "
                    "distilled (0.7) from t.npz")
    assert a[2].startswith("1.000 [1.000, 1.000]") and a[3].startswith("1.000") and a[4] == "0.000"
    assert a[5] == "0.500 vs 0.600 kept (not used)"
    assert b[1] == "EfficientNet-Lite0, seed 0, 50% of the training photos, refit on train + val, epochs 12,10,3"
    assert b[2] == shipped[2] + " (trained on)" and b[3:5] == shipped[3:5]
    y = _labels("test")
    assert float(shipped[3].split()[0]) == pytest.approx(
        sk.f1_score(y, copy["test"][:, :6].argmax(1), average="macro"), abs=5e-4)  # the six class logits


def test_a_record_of_other_photos_is_refused(tmp_path):
    rec = _record(tmp_path, "x", {s: np.zeros((449, 6)) for s in ("val", "test")})
    files = (rec / "test_files.txt").read_text().split()
    (rec / "test_files.txt").write_text("\n".join(files[::-1]) + "\n")
    with pytest.raises(ValueError, match="other photos"):
        report_trials.section(SHIPPED, tmp_path, None)


@pytest.mark.skipif(not RECORDS.exists(), reason="no committed trial records")
def test_committed_records_score_as_scikit_learn_does():
    for rec in sorted(d for d in RECORDS.iterdir() if (d / "config.json").exists()):
        t = report_trials.load(rec)
        cells = report_trials.row(t, None)
        pred = t.probs_val.argmax(1)
        assert float(cells[2].split()[0]) == pytest.approx(sk.f1_score(t.y_val, pred, average="macro"), abs=5e-4)
