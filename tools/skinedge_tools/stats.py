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
    return {"n": n, "mean_diff": float(np.mean(np.asarray(b[:n]) - np.asarray(a[:n]))), "t": float(res.statistic),
            "p": float(res.pvalue)}


def mcnemar(y: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray) -> dict[str, Any]:
    """Exact McNemar test on the same images: do A and B err on different images more than chance?"""
    a_ok, b_ok = pred_a == y, pred_b == y
    only_a, only_b = int((a_ok & ~b_ok).sum()), int((~a_ok & b_ok).sum())
    n = only_a + only_b
    p = float(stats.binomtest(only_b, n, 0.5).pvalue) if n else 1.0
    return {"a_right_b_wrong": only_a, "a_wrong_b_right": only_b, "p": p}


def _macro_f1(y, p):
    return f1_score(y, p, average="macro", zero_division=0)


METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {"accuracy": accuracy_score, "macro_f1": _macro_f1}


def bootstrap_ci(y: np.ndarray, pred: np.ndarray, metric: str, n_resamples: int = 2000, seed: int = 0) -> dict[str, float]:
    """Percentile-bootstrap 95% CI of a metric over the test images (resampling images)."""
    fn = METRICS[metric]
    res = stats.bootstrap((y, pred), fn, paired=True, vectorized=False, n_resamples=n_resamples,
                          confidence_level=0.95, method="percentile", random_state=seed)
    return {"value": float(fn(y, pred)), "low": float(res.confidence_interval.low),
            "high": float(res.confidence_interval.high)}


def bootstrap_diff_ci(y: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, metric: str, n_resamples: int = 2000,
                      seed: int = 0) -> dict[str, float]:
    """95% CI of metric(B) - metric(A) on the same resampled images."""
    fn = METRICS[metric]
    res = stats.bootstrap((y, pred_a, pred_b), lambda t, a, b: fn(t, b) - fn(t, a), paired=True, vectorized=False,
                          n_resamples=n_resamples, confidence_level=0.95, method="percentile", random_state=seed)
    return {"diff": float(fn(y, pred_b) - fn(y, pred_a)), "low": float(res.confidence_interval.low),
            "high": float(res.confidence_interval.high)}
