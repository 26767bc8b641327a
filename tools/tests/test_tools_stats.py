"""The training tools' statistics and calibration helpers, checked against scikit-learn / known cases."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("skinedge_tools", reason="the training tools are not installed (pip install -e ./tools)")
pytest.importorskip("sklearn", reason="the reference figures come from scikit-learn (pip install scikit-learn)")
from skinedge_tools import evaluate as ev  # noqa: E402
from skinedge_tools import stats  # noqa: E402
from sklearn.metrics import accuracy_score, f1_score  # noqa: E402


@pytest.mark.parametrize("seed", range(25))
def test_vectorised_macro_f1_equals_sklearn(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 80))
    y = rng.integers(0, 6, n)
    p = np.where(rng.random(n) < 0.6, y, rng.integers(0, 6, n))
    if seed % 3 == 0:
        p[p == 2] = 4  # a class never predicted
    expected = f1_score(y, p, average="macro", zero_division=0)
    assert stats.macro_f1_batch(y, p) == pytest.approx(expected, abs=1e-12)
    batch = stats.macro_f1_batch(np.stack([y, y]), np.stack([p, y]))
    assert batch[0] == pytest.approx(expected, abs=1e-12) and batch[1] == pytest.approx(1.0)
    assert stats.accuracy_batch(y, p) == pytest.approx(accuracy_score(y, p))


def test_bootstrap_ci_brackets_the_point_estimate_and_narrows_with_data():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 6, 1000)
    p = np.where(rng.random(1000) < 0.8, y, rng.integers(0, 6, 1000))
    small = stats.bootstrap_ci(y[:100], p[:100], "accuracy")
    large = stats.bootstrap_ci(y, p, "accuracy")
    assert small["low"] <= small["value"] <= small["high"]
    assert large["low"] <= large["value"] <= large["high"]
    assert large["high"] - large["low"] < small["high"] - small["low"]


def test_bootstrap_difference_of_identical_models_is_zero_and_of_better_model_positive():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 6, 400)
    worse = np.where(rng.random(400) < 0.5, y, (y + 1) % 6)
    better = np.where(rng.random(400) < 0.9, y, (y + 1) % 6)
    same = stats.bootstrap_diff_ci(y, worse, worse, "macro_f1")
    assert same["diff"] == 0 and same["low"] == 0 and same["high"] == 0
    gain = stats.bootstrap_diff_ci(y, worse, better, "macro_f1")
    assert gain["low"] > 0


def test_mcnemar_counts_discordant_images():
    y = np.zeros(30, int)
    a = np.zeros(30, int)
    b = np.zeros(30, int)
    b[:12] = 1  # B wrong on 12 images A gets right
    res = stats.mcnemar(y, a, b)
    assert (res["a_right_b_wrong"], res["a_wrong_b_right"]) == (12, 0)
    assert res["p"] < 0.001


def test_paired_t_test_pairs_by_epoch_and_truncates():
    res = stats.paired_t_test([0.5, 0.6, 0.7, 0.8], [0.6, 0.72, 0.79])
    assert res["n"] == 3 and res["mean_diff"] == pytest.approx(0.1033333, abs=1e-6)


def test_temperature_scaling_lowers_nll_of_overconfident_logits():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 6, 600)
    logits = rng.normal(0, 1, (600, 6))
    logits[np.arange(600), y] += 1.5
    logits *= 6  # overconfident
    t = ev.fit_temperature(logits, y)
    assert t > 2
    assert ev.nll(logits, y, t) < ev.nll(logits, y, 1.0)
    probs = np.exp(logits / t) / np.exp(logits / t).sum(1, keepdims=True)
    raw = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert ev.ece(probs, y) < ev.ece(raw, y)


def test_abstain_threshold_reaches_target_accuracy_on_accepted():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 6, 500)
    conf = rng.random(500)
    pred = np.where(rng.random(500) < conf, y, (y + 1) % 6)  # confident ones are right more often
    probs = np.full((500, 6), 0.0)
    probs[np.arange(500), pred] = 0.2 + 0.8 * conf
    t = ev.pick_abstain_threshold(probs, y, 0.9)
    keep = probs.max(1) >= t
    assert (pred[keep] == y[keep]).mean() >= 0.9
