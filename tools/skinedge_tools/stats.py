"""Statistics between stages: the paper's paired t-tests, McNemar, and bootstrap confidence intervals."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

# The metrics and the bootstrap are the runtime's (``skinedge evaluate`` reports the same figures).
from skinedge.evaluation import METRICS, accuracy_batch, bootstrap_ci, bootstrap_interval, macro_f1_batch

__all__ = ["METRICS", "accuracy_batch", "bootstrap_ci", "bootstrap_diff_ci", "macro_f1_batch", "mcnemar",
           "paired_t_test"]


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


def bootstrap_diff_ci(
    y: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, metric: str, n_resamples: int = 2000, seed: int = 0
) -> dict[str, float]:
    """95% CI of metric(B) - metric(A) on the same resampled images."""
    fn = METRICS[metric]
    low, high = bootstrap_interval(lambda t, a, b, axis=-1: fn(t, b, axis) - fn(t, a, axis), (y, pred_a, pred_b),
                                   n_resamples=n_resamples, seed=seed)
    return {"diff": float(fn(y, pred_b) - fn(y, pred_a)), "low": low, "high": high}
