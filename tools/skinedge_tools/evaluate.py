"""Classification metrics, calibration (temperature, ECE) and abstention.

Confusion, per-class scores and coverage are the runtime's (``skinedge.evaluation``, numpy only);
temperature fitting uses scipy."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

from skinedge import Classifier, SkinedgeError
from skinedge.evaluation import ClassScores, confusion_matrix, coverage_and_accuracy


def metrics(
    y_true: np.ndarray, logits: np.ndarray, labels: tuple[str, ...], temperature: float = 1.0
) -> dict[str, Any]:
    """Accuracy, macro P/R/F1, per-class report, confusion matrix, NLL and ECE of ``logits``."""
    y_pred = logits.argmax(1)
    cm = confusion_matrix(y_true, y_pred, len(labels))
    per = ClassScores.of(cm)  # every label counts in the macro averages, present in the split or not
    probs = softmax(logits / temperature, axis=1)
    return {
        "n": int(len(y_true)),
        "accuracy": _accuracy(cm),
        "macro_precision": float(per.precision.mean()),
        "macro_recall": float(per.recall.mean()),
        "macro_f1": float(per.f1.mean()),
        "nll": nll(logits, y_true, temperature),
        "ece": ece(probs, y_true),
        "per_class": _report(cm, per, labels),
        "confusion": cm.tolist(),
    }


def _accuracy(cm: np.ndarray) -> float:
    return float(np.trace(cm) / max(int(cm.sum()), 1))


def _report(cm: np.ndarray, per: ClassScores, labels: tuple[str, ...]) -> dict[str, Any]:
    """scikit-learn's ``classification_report(output_dict=True)`` layout (what rebuild reports store)."""
    total = int(per.support.sum())
    weights = per.support / max(total, 1)
    out: dict[str, Any] = {
        name: {"precision": float(per.precision[i]), "recall": float(per.recall[i]), "f1-score": float(per.f1[i]),
               "support": float(per.support[i])}
        for i, name in enumerate(labels)
    }
    out["accuracy"] = _accuracy(cm)
    for key, avg in (("macro avg", np.mean), ("weighted avg", lambda v: float((v * weights).sum()))):
        out[key] = {"precision": float(avg(per.precision)), "recall": float(avg(per.recall)),
                    "f1-score": float(avg(per.f1)), "support": float(total)}
    return out


def nll(logits: np.ndarray, y: np.ndarray, temperature: float = 1.0) -> float:
    return float(-log_softmax(logits / temperature, axis=1)[np.arange(len(y)), y].mean())


def ece(probs: np.ndarray, y: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error: confidence-vs-accuracy gap averaged over equal-width bins."""
    conf, pred = probs.max(1), probs.argmax(1)
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        m = which == b
        if m.any():
            total += m.mean() * abs((pred[m] == y[m]).mean() - conf[m].mean())
    return float(total)


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """Temperature minimising validation NLL (Guo et al., 2017)."""
    res = minimize_scalar(lambda t: nll(logits, y, t), bounds=(0.05, 20.0), method="bounded")
    return float(res.x)


def coverage_curve(probs: np.ndarray, y: np.ndarray) -> list[dict[str, float]]:
    """Accuracy of the accepted images against the fraction accepted, for thresholds on the top score."""
    conf, correct = probs.max(1), probs.argmax(1) == y
    out = []
    for t in np.round(np.arange(0.0, 1.0, 0.05), 2):
        coverage, accuracy = coverage_and_accuracy(conf >= t, correct)
        out.append({"threshold": float(t), "coverage": coverage, "accuracy": accuracy})
    return out


def pick_abstain_threshold(probs: np.ndarray, y: np.ndarray, target_accuracy: float = 0.9) -> float:
    """Lowest top-score threshold whose accepted validation images reach ``target_accuracy``."""
    conf, correct = probs.max(1), probs.argmax(1) == y
    for t in np.round(np.arange(0.0, 1.0, 0.01), 2):
        keep = conf >= t
        if keep.sum() >= 20 and correct[keep].mean() >= target_accuracy:
            return float(t)
    return 0.99


def evaluate_model(
    model: str | os.PathLike, data_root: str | os.PathLike, split: str = "test"
) -> tuple[dict[str, Any], list[SkinedgeError]]:
    """:func:`metrics` of a ``.tflite`` on a dataset split, every photo decoded and scored by the skinedge
    runtime (calibrated scores, whether the file ends in logits or a softmax). Photos the runtime cannot read
    are left out and returned as errors; ``metrics["failed"]`` counts them."""
    from skinedge_tools import data as data_mod

    errors: list[SkinedgeError] = []
    with Classifier(model) as clf:
        s = data_mod.discover(data_root, clf.labels)[split]
        probs, labels = [], []
        for rel, y in zip(s.paths, s.labels):
            try:
                pixels = clf.preprocess(s.root / rel)[0]
            except SkinedgeError as exc:
                errors.append(exc)
                continue
            probs.append(clf.invoke(pixels))
            labels.append(y)
        # log p are logits whose softmax is p itself: metrics() then scores exactly what users get.
        log_probs = np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-12, None))
        m = metrics(np.asarray(labels), log_probs, clf.labels)
    m["failed"] = len(errors)
    return m, errors
