"""Abstention gates of the training tools (skinedge_tools.gates): score split, AUROC, threshold choice."""

import numpy as np
import pytest

pytest.importorskip("sklearn", reason="the training tools' extras (scikit-learn) are not installed")

from skinedge_tools import gates  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402


def test_split_scores_renormalises_the_known_classes():
    p = np.array([[0.2, 0.2, 0.1, 0.5], [0.1, 0.3, 0.6, 0.0]])
    cls, gate = gates.split_scores(p, 2)
    np.testing.assert_allclose(cls, [[0.5, 0.5], [0.25, 0.75]])
    np.testing.assert_allclose(gate, [[0.1, 0.5], [0.6, 0.0]])


def test_split_scores_is_the_runtimes_split_row_by_row():
    from skinedge.postprocess import split_gates

    p = np.random.default_rng(3).dirichlet(np.ones(8), size=5)
    cls, gate = gates.split_scores(p, 6)
    for row, c, g in zip(p, cls, gate):
        want_c, want_g = split_gates(row, ("not_skin", "other_condition"))
        np.testing.assert_allclose(c, want_c, rtol=0, atol=1e-15)
        np.testing.assert_allclose(g, list(want_g.values()), rtol=0, atol=0)


def test_auroc_matches_scikit_learn_with_ties():
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, 5, 40).astype(float), rng.integers(1, 7, 30).astype(float)
    expected = roc_auc_score(np.r_[np.ones(40), np.zeros(30)], np.r_[a, b])
    assert gates.auroc(a, b) == pytest.approx(expected, abs=1e-12)


def _probs(top: float, gate: float, n: int) -> np.ndarray:
    """Rows over 2 classes + 1 gate: the gate's probability, the rest split top / (1 - top)."""
    rest = 1.0 - gate
    return np.tile([top * rest, (1 - top) * rest, gate], (n, 1))


def test_choose_thresholds_separates_what_can_be_separated():
    # 95 known photos with gate 0.05 and 5 with gate 0.9; 50 outliers with gate 0.8. At 93% coverage the gate may
    # reject the 5: a threshold between 0.8 and 0.05 answers no outlier and 95% of the known photos.
    known = np.r_[_probs(0.9, 0.05, 95), _probs(0.9, 0.9, 5)]
    out = {"g": _probs(0.9, 0.8, 50)}
    c = gates.choose_thresholds(known, out, 2, ("g",), target_coverage=0.93)
    assert 0.05 < c.gate_thresholds["g"] <= 0.8
    assert c.val_answered == {"g": 0.0}
    assert c.val_coverage == pytest.approx(0.95)


def test_choose_thresholds_keeps_the_coverage_it_is_asked_for():
    # Outliers look exactly like known photos: nothing separates them, so coverage decides and they are answered.
    known, out = _probs(0.9, 0.1, 100), {"g": _probs(0.9, 0.1, 20)}
    c = gates.choose_thresholds(known, out, 2, ("g",), target_coverage=0.93)
    assert c.val_coverage >= 0.93 and c.val_answered["g"] == 1.0


def test_measure_counts_answered_and_correct():
    known = np.r_[_probs(0.9, 0.05, 8), _probs(0.2, 0.05, 2)]  # the last two: top class is class 1
    labels = np.r_[np.zeros(8, int), np.zeros(2, int)]
    m = gates.measure(known, labels, {"g": _probs(0.9, 0.7, 4)}, 2, ("g",), abstain=0.5, gate_t={"g": 0.5})
    assert m["coverage"] == 1.0  # 0.8 top score for the last two (1 - 0.2)
    assert m["accuracy_answered"] == pytest.approx(0.8)
    assert m["answered"]["g"] == 0.0
    assert m["auroc"]["g"]["g"] == 1.0
