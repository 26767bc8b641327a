"""The evaluation report: figures (PNG) and docs/report.md, generated from a run and its rebuild."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay  # noqa: E402

from skinedge_tools import evaluate as ev  # noqa: E402
from skinedge_tools import stats  # noqa: E402
from skinedge_tools.artifacts import artifact_names, run_backbone  # noqa: E402

CURVES = (
    ("accuracy", "Accuracy"),
    ("loss", "Loss"),
    ("macro_precision", "Macro precision"),
    ("macro_recall", "Macro recall"),
    ("macro_f1", "Macro F1"),
)


def read_history(path: Path) -> dict[str, list[float]]:
    with open(path) as f:
        rows = list(csv.DictReader(f))
    return {k: [float(r[k]) for r in rows] for k in rows[0]} if rows else {}


def _labels_of(run_dir: Path, split: str, classes: list[str]) -> tuple[list[str], np.ndarray]:
    files = (run_dir / f"{split}_files.txt").read_text().split()
    return files, np.asarray([classes.index(Path(f).parts[1]) for f in files])


def plot_curves(history: dict[str, list[float]], title: str, out: Path) -> None:
    fig, axes = plt.subplots(1, len(CURVES), figsize=(4 * len(CURVES), 3.2))
    epochs = history["epoch"]
    for ax, (key, name) in zip(axes, CURVES):
        ax.plot(epochs, history[key], "o-", label="train")
        ax.plot(epochs, history[f"val_{key}"], "s-", label="validation")
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def plot_confusion(cm: list[list[int]], labels: list[str], title: str, out: Path) -> None:
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    ConfusionMatrixDisplay(np.asarray(cm), display_labels=labels).plot(ax=ax, colorbar=False, xticks_rotation=35)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def plot_coverage(curves: dict[str, list[dict[str, float]]], chosen: float, out: Path) -> None:
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for name, pts in curves.items():
        ax.plot([p["coverage"] for p in pts], [p["accuracy"] for p in pts], "o-", ms=3, label=name)
    ax.set_xlabel("coverage (fraction of test images answered)")
    ax.set_ylabel("accuracy on answered images")
    ax.set_title(f"Accuracy vs coverage (test); shipped abstain threshold {chosen:.2f}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def _fmt_ci(ci: dict[str, float]) -> str:
    return f"{ci['value']:.3f} [{ci['low']:.3f}, {ci['high']:.3f}]"


def _per_source(
    manifest: Path, files: list[str], y: np.ndarray, pred: np.ndarray
) -> list[tuple[str, int, float, float]]:
    if not manifest.exists():
        return []
    with open(manifest) as f:
        source_of = {r["path"]: r["source_repo"] for r in csv.DictReader(f)}
    src = np.asarray([source_of.get(p, "?") for p in files])
    rows = []
    for s in sorted(set(src)):
        m = src == s
        rows.append(
            (
                s,
                int(m.sum()),
                float(stats.accuracy_batch(y[m], pred[m])),
                float(stats.macro_f1_batch(y[m], pred[m])),
            )
        )
    return rows


#: Sources with fewer test photos are left out of the per-source gap (too few photos for an accuracy).
MIN_SOURCE_PHOTOS = 10


def _source_gap(rows: list[tuple[str, int, float, float]]) -> float | None:
    """Best minus worst per-source accuracy of ``_per_source`` rows, over sources with enough photos."""
    acc = [a for _, n, a, _ in rows if n >= MIN_SOURCE_PHOTOS]
    return max(acc) - min(acc) if acc else None


@dataclass
class _Inputs:
    """What every section of the report reads: the run, its rebuild report, labels and per-stage predictions."""

    classes: list[str]
    stages: list[str]
    rb: dict[str, Any]
    test_files: list[str]
    y_test: np.ndarray
    y_val: np.ndarray
    hist: dict[str, dict[str, list[float]]]
    logits_test: dict[str, np.ndarray]
    logits_val: dict[str, np.ndarray]
    pred: dict[str, np.ndarray]
    fig_dir: Path


def _load(run_dir: Path, models_dir: Path, fig_dir: Path) -> tuple[dict[str, Any], _Inputs]:
    cfg = json.loads((run_dir / "config.json").read_text())
    classes = list(cfg["classes"])
    rb = json.loads((models_dir / artifact_names(run_backbone(cfg))["report"]).read_text())
    test_files, y_test = _labels_of(run_dir, "test", classes)
    _, y_val = _labels_of(run_dir, "val", classes)
    stages = [s["name"] for s in cfg["stages"]]
    logits_test = {s: np.load(run_dir / s / "logits_test.npy") for s in stages}
    pred = {s: logits_test[s].argmax(1) for s in stages}
    pred["int8"] = np.asarray(rb["int8"]["test_pred"])
    pred["float32 tflite"] = np.asarray(rb["float32"]["test_pred"])
    inputs = _Inputs(
        classes=classes,
        stages=stages,
        rb=rb,
        test_files=test_files,
        y_test=y_test,
        y_val=y_val,
        hist={s: read_history(run_dir / s / "history.csv") for s in stages},
        logits_test=logits_test,
        logits_val={s: np.load(run_dir / s / "logits_val.npy") for s in stages},
        pred=pred,
        fig_dir=fig_dir,
    )
    return cfg, inputs


def _intro(d: _Inputs) -> list[str]:
    return [
        "# Evaluation report\n",
        "Generated by `skinedge-tools report` from the training run and its rebuild report in `models/`; every number",
        "below is computed from the saved per-image predictions. Test split: "
        f"{len(d.y_test)} images, used only for these final numbers. Scores are not a diagnosis.\n",
    ]


def _stages_table(d: _Inputs) -> list[str]:
    lines = ["## Stages\n"]
    w = lines.append
    w("| model | val acc | val macro-F1 | test acc [95% CI] | test macro-F1 [95% CI] | test ECE |")
    w("|---|---|---|---|---|---|")
    for s in d.stages:
        mv = ev.metrics(d.y_val, d.logits_val[s], tuple(d.classes))
        mt = ev.metrics(d.y_test, d.logits_test[s], tuple(d.classes))
        acc = stats.bootstrap_ci(d.y_test, d.pred[s], "accuracy")
        f1 = stats.bootstrap_ci(d.y_test, d.pred[s], "macro_f1")
        w(
            f"| {s} (float, Keras) | {mv['accuracy']:.3f} | {mv['macro_f1']:.3f} | {_fmt_ci(acc)} | {_fmt_ci(f1)} "
            f"| {mt['ece']:.3f} |"
        )
    for kind, name in (("float32", "float32 tflite"), ("int8", "int8")):
        r = d.rb[kind]
        acc = stats.bootstrap_ci(d.y_test, d.pred[name], "accuracy")
        f1 = stats.bootstrap_ci(d.y_test, d.pred[name], "macro_f1")
        w(
            f"| stage3 {kind} .tflite (runtime) | {r['val']['accuracy']:.3f} | {r['val']['macro_f1']:.3f} | "
            f"{_fmt_ci(acc)} | {_fmt_ci(f1)} | {r['test']['ece']:.3f} (calibrated) |"
        )
    w("")
    w("Bootstrap: 2,000 percentile resamples of the test images. ECE: 15 equal-width bins.\n")
    return lines


def _curves(d: _Inputs) -> list[str]:
    lines = ["## Epoch-wise curves\n"]
    for s in d.stages:
        out = d.fig_dir / f"curves_{s}.png"
        plot_curves(d.hist[s], f"{s}: train vs validation", out)
        lines.append(f"![{s} curves](figures/{out.name})\n")
    return lines


def _stage_tests(d: _Inputs) -> list[str]:
    lines = ["## Statistical comparison of stages\n"]
    w = lines.append
    w(
        "The paper's test: paired t-test on the epoch-wise validation values, paired by epoch index "
        "(successive epochs are not independent samples, so this is weak evidence).\n"
    )
    w("| comparison | metric | epochs paired | mean diff | t | p |")
    w("|---|---|---|---|---|---|")
    for a, b in zip(d.stages, d.stages[1:]):
        for key in ("val_accuracy", "val_macro_f1"):
            t = stats.paired_t_test(d.hist[a][key], d.hist[b][key])
            w(
                f"| {b} vs {a} | {key} | {t['n']} | {t.get('mean_diff', float('nan')):+.4f} "
                f"| {t['t']:.2f} | {t['p']:.3g} |"
            )
    w("")
    w(
        "Sounder tests on the same test images: exact McNemar on discordant images, and bootstrap 95% CIs of the "
        "difference (B - A).\n"
    )
    w("| A -> B | A right, B wrong | A wrong, B right | McNemar p | accuracy diff [95% CI] | macro-F1 diff [95% CI] |")
    w("|---|---|---|---|---|---|")
    for a, b in list(zip(d.stages, d.stages[1:])) + [("stage3", "int8")]:
        mc = stats.mcnemar(d.y_test, d.pred[a], d.pred[b])
        da = stats.bootstrap_diff_ci(d.y_test, d.pred[a], d.pred[b], "accuracy")
        df = stats.bootstrap_diff_ci(d.y_test, d.pred[a], d.pred[b], "macro_f1")
        w(
            f"| {a} -> {b} | {mc['a_right_b_wrong']} | {mc['a_wrong_b_right']} | {mc['p']:.3g} | "
            f"{da['diff']:+.3f} [{da['low']:+.3f}, {da['high']:+.3f}] | "
            f"{df['diff']:+.3f} [{df['low']:+.3f}, {df['high']:+.3f}] |"
        )
    w("")
    return lines


def _float_vs_int8_table(rb: dict[str, Any], latency: dict[str, Any] | None) -> list[str]:
    f32, i8 = rb["float32"], rb["int8"]
    lines = [
        "## Float vs int8 (stage 3, both through the skinedge runtime)\n",
        "| | float32 | int8 |",
        "|---|---|---|",
        f"| test accuracy | {f32['test']['accuracy']:.4f} | {i8['test']['accuracy']:.4f} |",
        f"| test macro-F1 | {f32['test']['macro_f1']:.4f} | {i8['test']['macro_f1']:.4f} |",
        f"| file size (bytes) | {f32['bytes']:,} | {i8['bytes']:,} ({rb['size_ratio_int8_float32']:.3f}x) |",
        f"| calibration temperature | {f32['temperature']:.3f} | {i8['temperature']:.3f} |",
        f"| test ECE before / after calibration | {f32['test_ece_uncalibrated']:.3f} / {f32['test']['ece']:.3f} | "
        f"{i8['test_ece_uncalibrated']:.3f} / {i8['test']['ece']:.3f} |",
        f"| val ECE before / after calibration | {f32['val_ece_uncalibrated']:.3f} / {f32['val_ece_calibrated']:.3f} | "
        f"{i8['val_ece_uncalibrated']:.3f} / {i8['val_ece_calibrated']:.3f} |",
    ]
    if latency:
        lines.append(
            f"| invoke p50, {latency['threads']} threads (ms) | {latency['float32_p50_ms']:.2f} | "
            f"{latency['int8_p50_ms']:.2f} "
            f"(float32 / int8 = {latency['float32_p50_ms'] / latency['int8_p50_ms']:.2f}) |"
        )
    lines.append("")
    return lines


def _agreement(rb: dict[str, Any]) -> str:
    f32, i8 = rb["float32"], rb["int8"]
    return (
        f"Top-1 agreement int8 vs float32 on test: **{rb['agreement_int8_float32_test']:.4f}** "
        f"(validation: {np.mean(np.asarray(i8['val_pred']) == np.asarray(f32['val_pred'])):.4f}"
        + (
            f"; on the {rb['answered_int8_test']} test images int8 answers, above its abstain threshold: "
            f"{rb['agreement_int8_float32_test_answered']:.4f}"
            if "answered_int8_test" in rb
            else ""
        )
        + "); float32 .tflite vs "
        f"Keras checkpoint: {rb['agreement_float32_keras_test']:.4f}. Macro-F1 change int8 - float32: "
        f"{(i8['test']['macro_f1'] - f32['test']['macro_f1']) * 100:+.2f} points.\n"
    )


def _quantization_steps(rb: dict[str, Any]) -> list[str]:
    steps = []
    if rb.get("weight_rounding"):
        wr = rb["weight_rounding"]
        ratio = np.median([r["gptq"] / r["nearest"] for r in wr if r["nearest"] > 0])
        steps.append(
            f"GPTQ weight rounding ({len(wr)} convolutions; median layer-output error {ratio:.2f}x that of "
            "nearest rounding on the calibration images)"
        )
    if rb.get("bias_correction"):
        top = max(rb["bias_correction"], key=lambda c: c["max_abs"])
        steps.append(
            f"empirical bias correction ({len(rb['bias_correction'])} layers; "
            f"largest channel shift {top['max_abs']:.3f} in `{top['layer']}`)"
        )
    if rb.get("activation_ranges") == "mse":
        steps.append("MSE-chosen activation ranges")
    if not steps:
        return []
    return ["The int8 file was converted with " + ", ".join(steps) + ": see docs/method.md, Quantization.\n"]


def _float_vs_int8(d: _Inputs, latency: dict[str, Any] | None) -> list[str]:
    lines = [*_float_vs_int8_table(d.rb, latency), _agreement(d.rb), *_quantization_steps(d.rb)]
    if latency:
        lines.append(
            f"Latency measured side by side in one process ({latency['cpu']}), {latency['runs']} interleaved invokes "
            "each, by `skinedge-tools report`.\n"
        )
    for kind in ("float32", "int8"):
        out = d.fig_dir / f"confusion_{kind}.png"
        plot_confusion(d.rb[kind]["test"]["confusion"], d.classes, f"stage 3 {kind} (test)", out)
        lines.append(f"![confusion {kind}](figures/{out.name})")
    lines.append("")
    return lines


def _per_class(d: _Inputs) -> list[str]:
    lines = ["## Per class (int8, test)\n", "| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    for c in d.classes:
        r = d.rb["int8"]["test"]["per_class"][c]
        lines.append(f"| {c} | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1-score']:.3f} | {int(r['support'])} |")
    lines.append("")
    return lines


def _per_source_section(d: _Inputs, manifest: Path) -> list[str]:
    rows = _per_source(manifest, d.test_files, d.y_test, d.pred["int8"])
    if not rows:
        return []
    lines = [
        "## Per data source (int8, test)\n",
        "Sources are confounded with classes (see the model card): a model that learned the source rather than "
        "the disease would look good here and fail elsewhere.\n",
        "| source | images | accuracy | macro-F1 (over classes present) |",
        "|---|---|---|---|",
    ]
    lines += [f"| {s} | {n} | {a:.3f} | {f:.3f} |" for s, n, a, f in rows]
    lines.append("")
    return lines


#: Coverage-table rows: the thresholds shown (on the 0.05 grid of ``evaluate.coverage_curve``).
_COVERAGE_ROWS = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def _calibration(d: _Inputs) -> list[str]:
    i8, f32 = d.rb["int8"], d.rb["float32"]
    curves = {"int8 (calibrated)": i8["coverage_test"], "float32 (calibrated)": f32["coverage_test"]}
    out = d.fig_dir / "coverage.png"
    plot_coverage(curves, i8["abstain_threshold"], out)
    lines = [
        "## Calibration and abstention\n",
        f"Temperature fitted on validation by minimising NLL; abstain threshold = lowest top score at which the "
        f"answered validation images reach 90% accuracy: **{i8['abstain_threshold']:.2f}** (int8).\n",
        "| threshold | coverage (test) | accuracy on answered (test) |",
        "|---|---|---|",
    ]
    for p in i8["coverage_test"]:
        if abs(p["threshold"] * 20 - round(p["threshold"] * 20)) < 1e-9 and p["threshold"] in _COVERAGE_ROWS:
            lines.append(f"| {p['threshold']:.2f} | {p['coverage']:.3f} | {p['accuracy']:.3f} |")
    cov = [p for p in i8["coverage_test"] if p["threshold"] <= i8["abstain_threshold"]]
    lines.append("")
    if cov:
        lines.append(
            f"At the shipped threshold the test coverage is about {cov[-1]['coverage']:.3f} with accuracy "
            f"{cov[-1]['accuracy']:.3f} on the answered images (nearest 0.05 step below the threshold).\n"
        )
    lines.append(f"![coverage](figures/{out.name})\n")
    return lines


def build(
    run_dir: Path,
    models_dir: Path,
    docs_dir: Path,
    data_root: Path | None = None,
    latency: dict[str, Any] | None = None,
    compare: list[Path] = (),
    backbone_latency: dict[str, Any] | None = None,
    trials: Path | None = None,
) -> Path:
    """Write ``docs_dir/report.md`` and ``docs_dir/figures/*.png``; return the report path.

    ``compare``: other bundled models' runs (their rebuilds in ``models_dir`` too), shown beside this one in a
    "Backbones" section (``report_backbones``), with ``backbone_latency`` (int8 invoke p50 per backbone).
    ``trials``: a folder of training-trial records, scored beside this run in a "Training trials" section."""
    run_dir, models_dir, docs_dir = Path(run_dir), Path(models_dir), Path(docs_dir)
    fig_dir = docs_dir / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    cfg, d = _load(run_dir, models_dir, fig_dir)
    manifest = Path(data_root or cfg["data_root"]) / "manifest.csv"
    backbones = []
    if compare:
        from skinedge_tools import report_backbones

        entries = [report_backbones.load(r, models_dir) for r in (run_dir, *map(Path, compare))]
        backbones = report_backbones.section(entries, run_backbone(cfg), manifest, backbone_latency)
    trial_lines = []
    if trials is not None:
        from skinedge_tools import report_trials

        trial_lines = report_trials.section(run_dir, Path(trials), manifest)
    lines = [
        *_intro(d),
        *backbones,
        *trial_lines,
        *_stages_table(d),
        *_curves(d),
        *_stage_tests(d),
        *_float_vs_int8(d, latency),
        *_per_class(d),
        *_per_source_section(d, manifest),
        *_calibration(d),
    ]
    report = docs_dir / "report.md"
    report.write_text("\n".join(lines) + "\n")
    return report
