"""docs/report.md's "Training trials" section: recorded trial runs scored side by side with the shipped run.

A trial record is a run directory without its checkpoints (``config.json``, ``{val,test}_files.txt`` and per stage
``history.csv``, ``stage.json``, ``logits_{val,test}.npy``), as ``tools/experiments/results/*/`` keeps them. Each
row scores the kept stage-3 checkpoint's float32 logits: validation and test macro-F1 with percentile-bootstrap
95% CIs and the test per-source accuracy gap, as the rest of the report counts them. What changed against the
shipped run is read from the configs, not typed by hand.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from skinedge.postprocess import softmax
from skinedge_tools import report_common, stats
from skinedge_tools.artifacts import BACKBONE_TITLES, run_backbone
from skinedge_tools.report_common import class_logits, fmt_ci, labels_of, per_source


@dataclass(frozen=True)
class Trial:
    """One run's kept stage-3 answers on validation and test, with what its config changed."""

    name: str
    config: dict
    val_files: list[str]
    test_files: list[str]
    y_val: np.ndarray
    y_test: np.ndarray
    probs_val: np.ndarray
    probs_test: np.ndarray
    stage3: dict


def load(run_dir: Path, name: str | None = None) -> Trial:
    run_dir = Path(run_dir)
    cfg = json.loads((run_dir / "config.json").read_text())
    (fv, yv), (ft, yt) = (labels_of(run_dir, split, cfg["classes"]) for split in ("val", "test"))
    s3 = run_dir / cfg["stages"][-1]["name"]
    return Trial(
        name or run_dir.name,
        cfg,
        fv,
        ft,
        yv,
        yt,
        softmax(class_logits(s3, "val", len(cfg["classes"]))),
        softmax(class_logits(s3, "test", len(cfg["classes"]))),
        json.loads((s3 / "stage.json").read_text()),
    )


def changes(cfg: dict) -> str:
    """What a run does beyond the paper's three stages, in words, from its ``config.json``."""
    parts = [BACKBONE_TITLES[run_backbone(cfg)], f"seed {cfg['seed']}"]
    if cfg.get("source_augment"):
        parts.append("source-cue augmentation")
    if any(s.get("average_weights") for s in cfg["stages"]):
        parts.append("SWA over stage 3")
    if cfg.get("mixup"):
        parts.append(f"mixup {cfg['mixup']:g}")
    if cfg.get("teacher") and cfg.get("distill"):
        parts.append(f"distilled ({cfg['distill']:g}) from {Path(cfg['teacher']).name}")
    if cfg.get("train_fraction", 1.0) < 1.0:
        parts.append(f"{cfg['train_fraction']:.0%} of the training photos")
    if cfg.get("refit_on_val"):
        parts.append("refit on train + val, epochs " + ",".join(str(s["epochs"]) for s in cfg["stages"]))
    if cfg.get("outliers"):
        parts.append("outlier exposure (" + ", ".join(cfg["outliers"]) + ")")
    return ", ".join(parts)


def ci(y: np.ndarray, pred: np.ndarray) -> str:
    return fmt_ci(stats.bootstrap_ci(y, pred, "macro_f1"))


def source_gap(manifest: Path | None, files: list[str], y: np.ndarray, pred: np.ndarray) -> str:
    """The report's per-source gap (``report_common.source_gap``) as a cell; ``-`` without a manifest."""
    gap = report_common.source_gap(per_source(manifest, files, y, pred)) if manifest is not None else None
    return "-" if gap is None else f"{gap:.3f}"


def swa(stage3: dict) -> str:
    if "swa_epochs" not in stage3:
        return "-"
    used = "used" if stage3["swa_used"] else "not used"
    return f"{stage3['swa_val_macro_f1']:.3f} vs {stage3['kept_val_macro_f1']:.3f} kept ({used})"


def row(t: Trial, manifest: Path | None) -> list[str]:
    """Trial, change, val macro-F1, test macro-F1, test per-source gap, weight average: markdown cells."""
    seen = t.config.get("refit_on_val")
    val = ci(t.y_val, t.probs_val.argmax(1)) + (" (trained on)" if seen else "")
    return [t.name, changes(t.config), val, ci(t.y_test, t.probs_test.argmax(1)),
            source_gap(manifest, t.test_files, t.y_test, t.probs_test.argmax(1)), swa(t.stage3)]


def section(shipped: Path, trials_dir: Path, manifest: Path | None) -> list[str]:
    """The whole section: the shipped run first, then every trial record under ``trials_dir``."""
    trials = [load(shipped, "shipped")] + [load(d) for d in sorted(Path(trials_dir).iterdir())
                                           if (d / "config.json").exists()]
    for t in trials[1:]:  # a row is only comparable if it scored the same photos
        if t.val_files != trials[0].val_files or t.test_files != trials[0].test_files:
            raise ValueError(f"trial {t.name} scored other photos than the shipped run")
    lines = [
        "## Training trials (float32 Keras, the kept stage-3 checkpoint of each run)\n",
        f"Trial records from `{Path(trials_dir).as_posix()}` (configs, histories and logits; the commands and the "
        "reading are in its README.md). Validation chose; test was read once per trial. Rows that differ only in the "
        "seed show how far one recipe moves between runs: differences of that size are noise.\n",
        "| trial | change | val macro-F1 [95% CI] | test macro-F1 [95% CI] | test per-source gap | SWA (val) |",
        "|---|---|---|---|---|---|",
    ]
    lines += ["| " + " | ".join(row(t, manifest)) + " |" for t in trials]
    return lines + [""]


__all__ = ["Trial", "changes", "load", "row", "section"]
