"""How a model does on labelled photos, in numpy only: what ``skinedge evaluate`` reports.

:func:`evaluate_folder` classifies a folder of class folders and returns an :class:`EvaluationReport`
(figures, rows, CSV). Beneath it, pure functions on integer class indices (``y_true``, ``y_pred``) and
boolean masks. The definitions are scikit-learn's (``zero_division=0``), checked against it in the tests; the
runtime does not depend on it. The training tools (``skinedge_tools.stats`` / ``evaluate``) use these same
functions for the same ideas.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from skinedge.classifier import ClassificationResult, Classifier
from skinedge.errors import SkinedgeError
from skinedge.files import image_files
from skinedge.postprocess import GATES, decide

#: A statistic over paired samples, vectorised along ``axis`` (one value per bootstrap resample).
Statistic = Callable[..., np.ndarray]


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """``n_classes x n_classes`` counts: row = true class, column = predicted class."""
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred differ in shape: {y_true.shape} vs {y_pred.shape}")
    if y_true.size and (min(y_true.min(), y_pred.min()) < 0 or max(y_true.max(), y_pred.max()) >= n_classes):
        raise ValueError(f"class indices must be in 0..{n_classes - 1}")
    flat = np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes)
    return flat.reshape(n_classes, n_classes)


@dataclass(frozen=True)
class ClassScores:
    """Per-class precision, recall, F1 and support (true count), from a confusion matrix."""

    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    support: np.ndarray

    @classmethod
    def of(cls, confusion: np.ndarray) -> ClassScores:
        cm = np.asarray(confusion, dtype=np.int64)
        tp = np.diag(cm)
        predicted, support = cm.sum(0), cm.sum(1)
        precision = np.where(predicted > 0, tp / np.maximum(predicted, 1), 0.0)
        recall = np.where(support > 0, tp / np.maximum(support, 1), 0.0)
        denom = predicted + support  # 2tp + fp + fn
        f1 = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
        return cls(precision=precision, recall=recall, f1=f1, support=support)


def accuracy_batch(y: np.ndarray, p: np.ndarray, axis: int = -1) -> np.ndarray:
    """Accuracy along ``axis`` (vectorised over bootstrap resamples)."""
    return (np.asarray(y) == np.asarray(p)).mean(axis=axis)


def macro_f1_batch(y: np.ndarray, p: np.ndarray, axis: int = -1, classes: Sequence[int] | None = None
                   ) -> np.ndarray:
    """Macro-F1 along ``axis``, vectorised over bootstrap resamples.

    Same definition as ``sklearn.metrics.f1_score(average="macro", zero_division=0)``: over the classes
    present in ``y`` or ``p`` of each resample, or, given ``classes``, over exactly those
    (``f1_score(labels=classes, ...)``). scikit-learn itself would take ~2 ms per resample.
    """
    y, p = np.moveaxis(np.asarray(y), axis, -1), np.moveaxis(np.asarray(p), axis, -1)
    fixed = classes is not None
    labels = np.asarray(classes) if fixed else np.union1d(np.unique(y), np.unique(p))
    yc, pc = y[..., None] == labels, p[..., None] == labels
    tp = (yc & pc).sum(-2)
    fp, fn = (~yc & pc).sum(-2), (yc & ~pc).sum(-2)
    present = np.ones(tp.shape, bool) if fixed else (yc | pc).any(-2)
    denom = 2 * tp + fp + fn
    f1 = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
    return (f1 * present).sum(-1) / np.maximum(present.sum(-1), 1)


#: The metrics ``bootstrap_ci`` knows by name.
METRICS: dict[str, Statistic] = {"accuracy": accuracy_batch, "macro_f1": macro_f1_batch}


def bootstrap_interval(
    statistic: Statistic,
    samples: Sequence[np.ndarray],
    *,
    n_resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """Paired percentile-bootstrap interval of ``statistic(*samples)``: the images are resampled with
    replacement, the same draw for every sample.

    Numerically the same as ``scipy.stats.bootstrap(samples, statistic, paired=True, vectorized=True,
    method="percentile", random_state=seed)`` (the legacy seeded ``RandomState`` draw, linear quantiles),
    so figures computed with either agree to the last digit.
    """
    arrays = [np.asarray(s) for s in samples]
    n = arrays[0].shape[-1]
    if n == 0 or any(a.shape[-1] != n for a in arrays):
        raise ValueError("samples must be non-empty and of equal length")
    index = np.random.RandomState(seed).randint(0, n, (n_resamples, n), dtype=np.int64)
    values = statistic(*(a[..., index] for a in arrays), axis=-1)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(values, [alpha, 1 - alpha], axis=-1)
    return float(low), float(high)


def bootstrap_ci(
    y: np.ndarray, pred: np.ndarray, metric: str, n_resamples: int = 2000, seed: int = 0,
    classes: Sequence[int] | None = None,
) -> dict[str, float]:
    """``metric`` (``accuracy`` or ``macro_f1``) on all images, and its percentile-bootstrap 95% CI
    (``classes``: the classes macro-F1 averages over, default those present in each resample)."""
    fn = METRICS[metric]
    if classes is not None and metric == "macro_f1":
        def fn(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
            return macro_f1_batch(a, b, axis, classes)
    low, high = bootstrap_interval(fn, (y, pred), n_resamples=n_resamples, seed=seed)
    return {"value": float(fn(np.asarray(y), np.asarray(pred))), "low": low, "high": high}


def coverage_and_accuracy(accepted: np.ndarray, correct: np.ndarray) -> tuple[float, float]:
    """Fraction of images accepted (answered, not abstained on), and the accuracy on those.

    Accuracy is NaN when nothing is accepted."""
    accepted, correct = np.asarray(accepted, dtype=bool), np.asarray(correct, dtype=bool)
    coverage = float(accepted.mean()) if accepted.size else float("nan")
    accuracy = float(correct[accepted].mean()) if accepted.any() else float("nan")
    return coverage, accuracy


def auroc(positive: np.ndarray, negative: np.ndarray) -> float:
    """Area under the ROC curve of a score meant to be higher for ``positive`` than for ``negative``: the
    probability that a random positive outscores a random negative, ties counted half (Mann-Whitney U).
    NaN when either side is empty."""
    pos, neg = np.asarray(positive, dtype=np.float64), np.asarray(negative, dtype=np.float64)
    if not pos.size or not neg.size:
        return float("nan")
    values = np.r_[pos, neg]
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    # midranks: each distinct value's rank is the mean of the ranks its ties occupy
    midrank = np.cumsum(counts) - (counts - 1) / 2.0
    ranks = midrank[inverse]
    return float((ranks[: pos.size].sum() - pos.size * (pos.size + 1) / 2.0) / (pos.size * neg.size))


def reason_counts(results: Sequence[ClassificationResult]) -> dict[str, int]:
    """How many results gave each reason for no answer (only the reasons that occur)."""
    counts: dict[str, int] = {}
    for r in results:
        if r.reason is not None:
            counts[r.reason] = counts.get(r.reason, 0) + 1
    return counts


def present_classes(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Class indices that occur in the truth or the predictions, ascending (scikit-learn's label set)."""
    return np.union1d(np.unique(y_true), np.unique(y_pred)).astype(np.int64)


def evaluate(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    accepted: np.ndarray,
    labels: Sequence[str],
    *,
    n_resamples: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """Every figure ``skinedge evaluate`` prints, JSON-ready.

    Args:
        y_true, y_pred: class indices into ``labels``, one per classified image.
        accepted: per image, whether its top score reached the abstain threshold (not ``uncertain``).
        labels: the model's labels.
        n_resamples, seed: the bootstrap (seeded: the same images give the same interval).

    Macro-F1 averages over the classes with photos (present in ``y_true``): a folder of one class is not
    marked down for the classes it has no photos of (scikit-learn's ``f1_score(labels=those, average="macro")``;
    ``macro_f1_classes`` names them). Per-class rows and the confusion matrix cover the classes present in the
    truth or the predictions, in the model's label order.
    """
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    if y_true.size == 0:
        raise ValueError("no images to evaluate")
    classes = present_classes(y_true, y_pred)
    with_photos = np.unique(y_true)
    full = confusion_matrix(y_true, y_pred, len(labels))
    cm = full[np.ix_(classes, classes)]
    per = ClassScores.of(full)
    coverage, answered_accuracy = coverage_and_accuracy(accepted, y_true == y_pred)
    ci = {m: bootstrap_ci(y_true, y_pred, m, n_resamples, seed, classes=with_photos) for m in METRICS}
    return {
        "n": int(y_true.size),
        "accuracy": ci["accuracy"]["value"],
        "accuracy_ci95": [ci["accuracy"]["low"], ci["accuracy"]["high"]],
        "macro_f1": ci["macro_f1"]["value"],
        "macro_f1_ci95": [ci["macro_f1"]["low"], ci["macro_f1"]["high"]],
        "macro_f1_classes": [labels[c] for c in with_photos],
        "bootstrap": {"method": "percentile", "resamples": n_resamples, "seed": seed},
        "per_class": {
            labels[c]: {"precision": float(per.precision[c]), "recall": float(per.recall[c]),
                        "f1": float(per.f1[c]), "support": int(per.support[c])}
            for c in classes
        },
        "confusion": {"labels": [labels[c] for c in classes], "matrix": cm.tolist()},
        "abstain": {
            "answered": int(np.asarray(accepted, dtype=bool).sum()),
            "coverage": coverage,
            "accuracy": None if np.isnan(answered_accuracy) else answered_accuracy,
        },
    }


@dataclass(frozen=True)
class ClassFolders:
    """The class folders of an evaluation folder (one sub-folder per class)."""

    matched: tuple[tuple[Path, int], ...]  # (folder, index of its label), in label order
    unknown: tuple[Path, ...]  # folders named after no label and not mapped
    unused_map: tuple[str, ...]  # mapped folder names that are not there


def class_folders(root: str | os.PathLike, labels: Sequence[str], folder_map: Mapping[str, str] | None = None
                  ) -> ClassFolders:
    """Which sub-folder of ``root`` holds which class.

    A folder counts as the class ``folder_map[name]`` if mapped, else the label it is named after (an exact
    match first, then ignoring case). Hidden folders (``.name``) are ignored.

    Raises:
        ValueError: ``folder_map`` maps a folder to a label the model does not have.
    """
    folder_map = dict(folder_map or {})
    index = {label: i for i, label in enumerate(labels)}
    folded = {label.casefold(): i for i, label in reversed(list(enumerate(labels)))}
    for name, label in folder_map.items():
        if label not in index:
            raise ValueError(f"{name}={label}: {label!r} is not one of the model's labels ({', '.join(labels)})")
    matched, unknown = [], []
    present = set()
    for folder in sorted(p for p in Path(root).iterdir() if p.is_dir() and not p.name.startswith(".")):
        present.add(folder.name)
        if folder.name in folder_map:
            matched.append((folder, index[folder_map[folder.name]]))
        elif folder.name in index:
            matched.append((folder, index[folder.name]))
        elif folder.name.casefold() in folded:
            matched.append((folder, folded[folder.name.casefold()]))
        else:
            unknown.append(folder)
    matched.sort(key=lambda m: (m[1], m[0].name))  # label order: the training tools' order of test photos
    return ClassFolders(matched=tuple(matched), unknown=tuple(unknown),
                        unused_map=tuple(sorted(set(folder_map) - present)))


class NothingToEvaluateError(SkinedgeError):
    """An evaluation folder gave no photo to score (``source``: the folder): no class folder with photos, or
    none of its photos could be classified."""


@dataclass(frozen=True)
class OutlierReport:
    """Photos that must not be answered (``evaluate --ood DIR``): how many were, why the others were not, and how
    well each gate tells them from the class folders' photos.

    ``figures``: ``n``, ``answered``, ``answered_rate``, ``reasons`` (counts), ``auroc`` (per gate score and the
    top class score: the class folders' photos against these), ``curve`` (per gate: that gate's threshold swept,
    the others as set: class-folder coverage and accuracy, and the share of these photos answered)."""

    folder: str
    rows: tuple[tuple[str, ClassificationResult | SkinedgeError], ...] = field(repr=False)
    figures: dict[str, Any] = field(repr=False)

    @property
    def failed(self) -> int:
        return sum(isinstance(o, SkinedgeError) for _, o in self.rows)

    def to_dict(self) -> dict[str, Any]:
        return {"folder": self.folder, "failed": self.failed, **self.figures}


def outlier_figures(classifier: Classifier, inside: Sequence[ClassificationResult], truth: Sequence[int],
                    outside: Sequence[ClassificationResult]) -> dict[str, Any]:
    """The figures of :class:`OutlierReport` for ``outside`` (results on photos that must not be answered),
    against ``inside`` (results on labelled class photos, ``truth`` their classes)."""
    opts = classifier.resolve_options()
    answered = [r for r in outside if r.reason is None]
    scores: dict[str, tuple[list[float], list[float]]] = {
        "top_score": ([r.score for r in inside], [r.score for r in outside])}
    for g in classifier.gate_labels:  # a gate's score is high for what must not be answered: negate it
        scores[g] = ([-r.gates[g] for r in inside], [-r.gates[g] for r in outside])
    curve = {}
    correct = np.array([r.index == y for r, y in zip(inside, truth)])
    for g in (g for g in GATES if g in classifier.gate_labels):
        points = []
        for t in np.round(np.arange(0.05, 1.0, 0.05), 2):
            o = opts.replace(**{f"{g}_threshold": float(t)})
            keep_in = np.array([decide(np.asarray(r.scores), r.gates, r.quality, o) is None for r in inside])
            keep_out = np.array([decide(np.asarray(r.scores), r.gates, r.quality, o) is None for r in outside])
            coverage, acc = coverage_and_accuracy(keep_in, correct)
            points.append({"threshold": float(t), "coverage": coverage,
                           "accuracy": None if np.isnan(acc) else acc, "answered_rate": float(keep_out.mean())})
        curve[g] = points
    return {
        "n": len(outside),
        "answered": len(answered),
        "answered_rate": len(answered) / len(outside) if outside else float("nan"),
        "reasons": reason_counts(outside),
        "answered_labels": {lab: sum(r.label == lab for r in answered) for lab in sorted({r.label for r in answered})},
        "auroc": {name: auroc(np.asarray(a), np.asarray(b)) for name, (a, b) in scores.items()},
        "curve": curve,
    }


@dataclass(frozen=True)
class PhotoRow:
    """One photo of an evaluation: its file, its folder's class, and the result or the error it gave."""

    source: str
    truth: int
    outcome: ClassificationResult | SkinedgeError


@dataclass(frozen=True)
class EvaluationReport:
    """What :func:`evaluate_folder` found: the folders, every photo's row, and the figures (:func:`evaluate`).

    ``to_dict()`` is the JSON ``skinedge evaluate --json`` prints; ``write_csv`` its ``--csv`` rows.
    """

    folder: str
    model: str
    labels: tuple[str, ...]
    abstain_threshold: float
    class_folders: dict[str, str]  # folder name -> label
    unknown_folders: tuple[str, ...]
    unused_map: tuple[str, ...]
    empty_folders: tuple[str, ...]
    rows: tuple[PhotoRow, ...] = field(repr=False)
    figures: dict[str, Any] = field(repr=False)
    outliers: tuple[OutlierReport, ...] = ()

    @property
    def photos(self) -> int:
        return len(self.rows)

    @property
    def failed(self) -> int:
        return sum(isinstance(r.outcome, SkinedgeError) for r in self.rows)

    def to_dict(self) -> dict[str, Any]:
        return {**self.figures, "folder": self.folder, "model": self.model,
                "abstain_threshold": self.abstain_threshold, "photos": self.photos, "failed": self.failed,
                "class_folders": dict(self.class_folders), "unknown_folders": list(self.unknown_folders),
                **({"ood": [o.to_dict() for o in self.outliers]} if self.outliers else {})}

    def write_csv(self, fp: IO[str]) -> None:
        """One row per photo: file, folder_class, predicted, score, uncertain, correct, error."""
        writer = csv.writer(fp)
        writer.writerow(["file", "folder_class", "predicted", "score", "uncertain", "correct", "error"])
        for row in self.rows:
            r, truth = row.outcome, self.labels[row.truth]
            if isinstance(r, SkinedgeError):
                writer.writerow([row.source, truth, "", "", "", "", r.reason])
            else:
                correct = int(r.index == row.truth)
                writer.writerow([row.source, truth, r.label, f"{r.score:.6f}", int(r.uncertain), correct, ""])


def evaluate_folder(
    classifier: Classifier,
    folder: str | os.PathLike,
    *,
    folder_map: Mapping[str, str] | None = None,
    n_resamples: int = 2000,
    seed: int = 0,
    on_row: Callable[[PhotoRow, int], None] | None = None,
    ood: Sequence[str | os.PathLike] = (),
) -> EvaluationReport:
    """Classify every photo of ``folder``'s class folders (:func:`class_folders`) with ``classifier`` and score
    the answers: accuracy and macro-F1 with bootstrap CIs, per-class figures, coverage at the abstain threshold.

    ``on_row(row, total)`` is called with each photo's row as it is classified, and the number of photos
    (progress, errors). Photos that cannot be
    read are rows with their error, left out of the figures. ``ood``: folders of photos that must not be
    answered (not skin photos, conditions outside the model's classes), each scored as an :class:`OutlierReport`;
    their photos are found recursively and their errors reported through ``on_row`` too (``truth`` -1).

    Raises:
        ValueError: ``folder_map`` maps a folder to a label the model does not have.
        NothingToEvaluateError: no class folder has photos, or no photo could be classified.
    """
    found = class_folders(folder, classifier.labels, folder_map)
    sources, truth, empty = [], [], []
    for path, index in found.matched:
        photos = image_files(path)
        if not photos:
            empty.append(path.name)
        sources += [str(p) for p in photos]
        truth += [index] * len(photos)
    if not sources:
        raise NothingToEvaluateError(str(folder), "no photos to evaluate (it needs sub-folders named after the "
                                     f"model's labels: {', '.join(classifier.labels)}; or --map FOLDER=LABEL)")
    rows = []
    for source, y, outcome in zip(sources, truth, classifier.iter_classify(sources)):
        rows.append(PhotoRow(source, y, outcome))
        if on_row is not None:
            on_row(rows[-1], len(sources))
    done = [r for r in rows if not isinstance(r.outcome, SkinedgeError)]
    if not done:
        raise NothingToEvaluateError(str(folder), f"none of its {len(rows)} photos could be classified")
    figures = evaluate([r.truth for r in done], [r.outcome.index for r in done],
                       [not r.outcome.uncertain for r in done], classifier.labels, n_resamples=n_resamples, seed=seed)
    figures["abstain"]["reasons"] = reason_counts([r.outcome for r in done])
    outliers = []
    for out_folder in ood:
        out_sources = [str(p) for p in image_files(out_folder)]
        out_rows = []
        for source, outcome in zip(out_sources, classifier.iter_classify(out_sources)):
            out_rows.append((source, outcome))
            if on_row is not None:
                on_row(PhotoRow(source, -1, outcome), len(out_sources))
        ok = [o for _, o in out_rows if not isinstance(o, SkinedgeError)]
        if not ok:
            raise NothingToEvaluateError(str(out_folder), f"none of its {len(out_rows)} photos could be classified")
        outliers.append(OutlierReport(str(out_folder), tuple(out_rows), outlier_figures(
            classifier, [r.outcome for r in done], [r.truth for r in done], ok)))
    return EvaluationReport(
        folder=str(folder), model=str(classifier.model_path), labels=classifier.labels,
        abstain_threshold=classifier.abstain_threshold,
        class_folders={path.name: classifier.labels[i] for path, i in found.matched},
        unknown_folders=tuple(p.name for p in found.unknown), unused_map=found.unused_map,
        empty_folders=tuple(empty), rows=tuple(rows), figures=figures, outliers=tuple(outliers),
    )
