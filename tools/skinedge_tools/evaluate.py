"""Classification metrics, calibration (temperature, ECE) and abstention, via scikit-learn / scipy."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, precision_recall_fscore_support


def metrics(
    y_true: np.ndarray, logits: np.ndarray, labels: tuple[str, ...], temperature: float = 1.0
) -> dict[str, Any]:
    """Accuracy, macro P/R/F1, per-class report, confusion matrix, NLL and ECE of ``logits``."""
    y_pred = logits.argmax(1)
    k = len(labels)
    p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, labels=range(k), average="macro", zero_division=0)
    probs = softmax(logits / temperature, axis=1)
    return {
        "n": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_precision": float(p),
        "macro_recall": float(r),
        "macro_f1": float(f),
        "nll": nll(logits, y_true, temperature),
        "ece": ece(probs, y_true),
        "per_class": classification_report(
            y_true, y_pred, labels=range(k), target_names=list(labels), output_dict=True, zero_division=0
        ),
        "confusion": confusion_matrix(y_true, y_pred, labels=range(k)).tolist(),
    }


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
        keep = conf >= t
        out.append(
            {
                "threshold": float(t),
                "coverage": float(keep.mean()),
                "accuracy": float(correct[keep].mean()) if keep.any() else float("nan"),
            }
        )
    return out


def pick_abstain_threshold(probs: np.ndarray, y: np.ndarray, target_accuracy: float = 0.9) -> float:
    """Lowest top-score threshold whose accepted validation images reach ``target_accuracy``."""
    conf, correct = probs.max(1), probs.argmax(1) == y
    for t in np.round(np.arange(0.0, 1.0, 0.01), 2):
        keep = conf >= t
        if keep.sum() >= 20 and correct[keep].mean() >= target_accuracy:
            return float(t)
    return 0.99
