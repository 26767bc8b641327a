"""docs/report.md's "Backbones" section: every bundled model side by side, each from its run and its rebuild report.

What it shows (issue 13): per backbone and stage, validation and test macro-F1 with bootstrap CIs; per shipped
artifact, int8 agreement with float32, file size and int8 invoke latency relative to the paper's MobileNetV2
(measured in the same process, interleaved); per-class F1 and per-source accuracy of each int8 file; and McNemar
plus a paired bootstrap between the default and MobileNetV2 on the same test photos. The default is whichever
scores best on validation, so the validation columns come first.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from skinedge_tools import stats
from skinedge_tools.artifacts import BACKBONE_TITLES, artifact_names, run_backbone
from skinedge_tools.report_common import MIN_SOURCE_PHOTOS, class_logits, per_source, source_gap

PAPER = "mobilenetv2"


@dataclass(frozen=True)
class Backbone:
    """One bundled model's run (per-stage Keras logits) and rebuild report (per-image int8/float32 answers)."""

    name: str
    classes: list[str]
    run_dir: Path
    models_dir: Path
    stages: list[str]
    y_val: np.ndarray
    y_test: np.ndarray
    test_files: list[str]
    stage_val: dict[str, np.ndarray]  # stage -> predicted class per validation photo
    stage_test: dict[str, np.ndarray]
    rb: dict[str, Any]

    @property
    def title(self) -> str:
        return BACKBONE_TITLES[self.name]

    def file(self, kind: str) -> Path:
        return self.models_dir / artifact_names(self.name)[kind]

    def pred(self, kind: str, split: str = "test") -> np.ndarray:
        return np.asarray(self.rb[kind][f"{split}_pred"])


def load(run_dir: Path, models_dir: Path) -> Backbone:
    cfg = json.loads((run_dir / "config.json").read_text())
    name, classes = run_backbone(cfg), list(cfg["classes"])
    stages = [s["name"] for s in cfg["stages"]]

    def labels(split: str) -> tuple[list[str], np.ndarray]:
        files = (run_dir / f"{split}_files.txt").read_text().split()
        return files, np.asarray([classes.index(Path(f).parts[1]) for f in files])

    test_files, y_test = labels("test")
    _, y_val = labels("val")
    rb = json.loads((models_dir / artifact_names(name)["report"]).read_text())
    if rb["test_labels"] != y_test.tolist():
        raise ValueError(f"{run_dir}: the rebuild report's test photos are not the run's")
    return Backbone(
        name, classes, run_dir, models_dir, stages, y_val, y_test, test_files,
        {s: class_logits(run_dir / s, "val", len(classes)).argmax(1) for s in stages},
        {s: class_logits(run_dir / s, "test", len(classes)).argmax(1) for s in stages},
        rb,
    )


def _ci(y: np.ndarray, pred: np.ndarray, metric: str = "macro_f1") -> str:
    ci = stats.bootstrap_ci(y, pred, metric)
    return f"{ci['value']:.3f} [{ci['low']:.3f}, {ci['high']:.3f}]"


def _stage_rows(backbones: list[Backbone]) -> list[str]:
    lines = [
        "### Per backbone and stage (float32 Keras, the kept checkpoint of each stage)\n",
        "| backbone | stage | val macro-F1 [95% CI] | test macro-F1 [95% CI] |",
        "|---|---|---|---|",
    ]
    for b in backbones:
        for s in b.stages:
            lines.append(f"| {b.title} | {s} | {_ci(b.y_val, b.stage_val[s])} | {_ci(b.y_test, b.stage_test[s])} |")
    lines.append("")
    return lines


def _artifact_rows(backbones: list[Backbone], latency: dict[str, Any] | None) -> list[str]:
    lines = [
        "### Shipped artifacts (stage 3, through the skinedge runtime)\n",
        "| backbone | file | val macro-F1 | test macro-F1 [95% CI] | test accuracy | int8 / float32 top-1 agreement, "
        "test (val) | bytes | int8 invoke p50 / MobileNetV2 int8 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for b in backbones:  # sizes of the files as they are (add-maps grew older ones after their rebuild report)
        agree_val = float((b.pred("int8", "val") == b.pred("float32", "val")).mean())
        for kind in ("float32", "int8"):
            r = b.rb[kind]
            agree = f"{b.rb['agreement_int8_float32_test']:.3f} ({agree_val:.3f})" if kind == "int8" else ""
            ratio = ""
            if kind == "int8" and latency:
                ratio = f"{latency['p50_ms'][b.name] / latency['p50_ms'][PAPER]:.2f}"
            lines.append(
                f"| {b.title} | {kind} | {r['val']['macro_f1']:.3f} | {_ci(b.y_test, b.pred(kind))} | "
                f"{r['test']['accuracy']:.3f} | {agree} | {b.file(kind).stat().st_size:,} | {ratio} |"
            )
    lines.append("")
    if latency:
        p50 = ", ".join(f"{BACKBONE_TITLES[k]} {v:.2f} ms" for k, v in latency["p50_ms"].items())
        lines.append(
            f"int8 invoke p50 ({p50}): {latency['threads']} threads, {latency['runs']} interleaved invokes per model "
            f"in one process on {latency['cpu']}, measured by `skinedge-tools report`; ratios, not absolute speeds, "
            "carry to another machine.\n"
        )
    return lines


def _per_class_rows(backbones: list[Backbone], classes: list[str]) -> list[str]:
    head = " | ".join(b.title for b in backbones)
    lines = ["### Per class F1 (int8, test)\n", f"| class | {head} |", "|---|" + "---|" * len(backbones)]
    for c in classes:
        lines.append(f"| {c} | " + " | ".join(f"{b.rb['int8']['test']['per_class'][c]['f1-score']:.3f}"
                                               for b in backbones) + " |")
    lines.append("")
    return lines


def _per_source_rows(backbones: list[Backbone], manifest: Path | None) -> list[str]:
    if manifest is None or not manifest.exists():
        return []

    per = {b.name: per_source(manifest, b.test_files, b.y_test, b.pred("int8")) for b in backbones}
    sources = [row[0] for row in per[backbones[0].name]]
    head = " | ".join(b.title for b in backbones)
    lines = [
        "### Per data source accuracy (int8, test)\n",
        "The gap (best minus worst source) is the issue's measure of how much a model leans on where a photo came "
        f"from; sources with fewer than {MIN_SOURCE_PHOTOS} test photos are left out of the gap.\n",
        f"| source | photos | {head} |",
        "|---|---|" + "---|" * len(backbones),
    ]
    for i, s in enumerate(sources):
        lines.append(f"| {s} | {per[backbones[0].name][i][1]} | "
                     + " | ".join(f"{per[b.name][i][2]:.3f}" for b in backbones) + " |")
    gaps = [f"{source_gap(per[b.name]):.3f}" for b in backbones]
    lines += [f"| **gap** (sources with >= {MIN_SOURCE_PHOTOS} photos) | | {' | '.join(gaps)} |", ""]
    return lines


def _versus_paper(backbones: list[Backbone], default: str) -> list[str]:
    by = {b.name: b for b in backbones}
    if default == PAPER or PAPER not in by or default not in by:
        return []
    new, old = by[default], by[PAPER]
    if new.test_files != old.test_files:
        raise ValueError("the two runs' test photos differ: no paired comparison")
    y = new.y_test
    lines = [f"### {new.title} against the paper's MobileNetV2 (int8 files, the same {len(y)} test photos)\n"]
    for kind in ("int8", "float32"):
        mc = stats.mcnemar(y, old.pred(kind), new.pred(kind))
        f1 = stats.bootstrap_diff_ci(y, old.pred(kind), new.pred(kind), "macro_f1")
        acc = stats.bootstrap_diff_ci(y, old.pred(kind), new.pred(kind), "accuracy")
        lines.append(
            f"- {kind}: macro-F1 {f1['diff']:+.3f} [{f1['low']:+.3f}, {f1['high']:+.3f}], accuracy {acc['diff']:+.3f} "
            f"[{acc['low']:+.3f}, {acc['high']:+.3f}] (paired bootstrap, 2,000 resamples); McNemar exact: "
            f"{mc['a_wrong_b_right']} photos only {new.title} gets right, {mc['a_right_b_wrong']} only MobileNetV2, "
            f"p = {mc['p']:.4f}."
        )
    lines.append("")
    return lines


def section(backbones: list[Backbone], default: str, manifest: Path | None,
            latency: dict[str, Any] | None) -> list[str]:
    """The whole section, as markdown lines."""
    classes = backbones[0].classes
    best = max(backbones, key=lambda b: b.rb["int8"]["val"]["macro_f1"])
    lines = [
        "## Backbones\n",
        f"Bundled models: {', '.join(b.title for b in backbones)}. The default is the one with the best validation "
        f"macro-F1 of its int8 file: {best.title} ({best.rb['int8']['val']['macro_f1']:.3f}). Test figures were "
        "read once, after that choice.\n",
    ]
    if best.name != default:
        raise ValueError(f"the default bundled model is {default}, but {best.name} scores best on validation")
    return (lines + _stage_rows(backbones) + _artifact_rows(backbones, latency) + _per_class_rows(backbones, classes)
            + _per_source_rows(backbones, manifest) + _versus_paper(backbones, default))
