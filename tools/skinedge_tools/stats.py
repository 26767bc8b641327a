"""Statistics between stages: the paper's paired t-tests, McNemar, and bootstrap confidence intervals."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import stats
from sklearn.metrics import accuracy_score, f1_score


def paired_t_test(a: list[float], b: list[float]) -> dict[str, Any]:
    """The paper's test: paired t-test on epoch-wise values, paired by epoch index (truncated).

    Weak evidence: successive epochs are not independent samples; see McNemar and the bootstrap.
    """
    n = min(len(a), len(b))
    if n < 2:
        return {"n": n, "t": float("nan"), "p": float("nan")}
    res = stats.ttest_rel(np.asarray(b[:n]), np.asarray(a[:n]))
    return {
        "n": n,
        "mean_diff": float(np.mean(np.asarray(b[:n]) - np.asarray(a[:n]))),
        "t": float(res.statistic),
        "p": float(res.pvalue),
    }


def mcnemar(y: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray) -> dict[str, Any]:
    """Exact McNemar test on the same images: do A and B err on different images more than chance?"""
    a_ok, b_ok = pred_a == y, pred_b == y
    only_a, only_b = int((a_ok & ~b_ok).sum()), int((~a_ok & b_ok).sum())
    n = only_a + only_b
    p = float(stats.binomtest(only_b, n, 0.5).pvalue) if n else 1.0
    return {"a_right_b_wrong": only_a, "a_wrong_b_right": only_b, "p": p}


def accuracy_batch(y: np.ndarray, p: np.ndarray, axis: int = -1) -> np.ndarray:
    """Accuracy along ``axis`` (vectorised over bootstrap resamples)."""
    return (y == p).mean(axis=axis)


def macro_f1_batch(y: np.ndarray, p: np.ndarray, axis: int = -1) -> np.ndarray:
    """Macro-F1 along ``axis``, vectorised over bootstrap resamples.

    Same definition as ``sklearn.metrics.f1_score(average="macro", zero_division=0)`` over the classes
    present in ``y`` or ``p`` of each resample (tests check it against scikit-learn); scikit-learn
    itself would take ~2 ms per resample, minutes for a report's worth of bootstraps.
    """
    y, p = np.moveaxis(np.asarray(y), axis, -1), np.moveaxis(np.asarray(p), axis, -1)
    classes = np.union1d(np.unique(y), np.unique(p))
    yc, pc = y[..., None] == classes, p[..., None] == classes
    tp = (yc & pc).sum(-2)
    fp, fn = (~yc & pc).sum(-2), (yc & ~pc).sum(-2)
    present = (yc | pc).any(-2)
    denom = 2 * tp + fp + fn
    f1 = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
    return (f1 * present).sum(-1) / np.maximum(present.sum(-1), 1)


METRICS: dict[str, Callable[..., np.ndarray]] = {"accuracy": accuracy_batch, "macro_f1": macro_f1_batch}
POINT: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "accuracy": accuracy_score,
    "macro_f1": lambda y, p: f1_score(y, p, average="macro", zero_division=0),
}


def _percentile_ci(samples: tuple[np.ndarray, ...], statistic, n_resamples: int, seed: int) -> tuple[float, float]:
    """Paired percentile-bootstrap 95% CI (resampling test images together across ``samples``)."""
    res = stats.bootstrap(
        samples,
        statistic,
        paired=True,
        vectorized=True,
        n_resamples=n_resamples,
        confidence_level=0.95,
        method="percentile",
        random_state=seed,
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def bootstrap_ci(
    y: np.ndarray, pred: np.ndarray, metric: str, n_resamples: int = 2000, seed: int = 0
) -> dict[str, float]:
    """Percentile-bootstrap 95% CI of a metric over the test images (resampling images)."""
    low, high = _percentile_ci((y, pred), METRICS[metric], n_resamples, seed)
    return {"value": float(POINT[metric](y, pred)), "low": low, "high": high}


def bootstrap_diff_ci(
    y: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, metric: str, n_resamples: int = 2000, seed: int = 0
) -> dict[str, float]:
    """95% CI of metric(B) - metric(A) on the same resampled images."""
    fn, point = METRICS[metric], POINT[metric]
    low, high = _percentile_ci(
        (y, pred_a, pred_b), lambda t, a, b, axis=-1: fn(t, b, axis) - fn(t, a, axis), n_resamples, seed
    )
    return {"diff": float(point(y, pred_b) - point(y, pred_a)), "low": low, "high": high}
