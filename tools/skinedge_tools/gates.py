"""Abstention gates (issue 21): split a gated model's scores, choose its thresholds on validation, measure them.

A model trained with outlier exposure (``skinedge-tools train --outliers``) ends in one softmax over the known
classes and the abstention classes (``not_skin``, ``other_condition``). The class scores users see are the known
classes' share renormalised (the same ranking, summing to 1); each gate's score is its abstention class's
probability. A photo is answered only when every gate is below its threshold and the top class score reaches the
abstain threshold. All thresholds are chosen together on validation photos: the fewest outlier photos answered
while at least ``target_coverage`` of the known classes' photos are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from skinedge.evaluation import auroc

#: Gate order of precedence when several fire (the runtime's ``reason``): the more basic "no" first.
PRECEDENCE = ("not_skin", "other_condition")


def split_scores(probs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(class scores renormalised over the ``k`` known classes, gate scores) of softmax rows over all outputs: the
    batch form of the runtime's ``skinedge.postprocess.split_gates`` (tools/tests/test_gates.py checks they agree)."""
    known = probs[:, :k]
    return known / known.sum(1, keepdims=True), probs[:, k:]


def answered(class_probs: np.ndarray, gate_probs: np.ndarray, abstain: float, gate_t: np.ndarray,
             passed: np.ndarray | None = None) -> np.ndarray:
    """Which rows are answered: top class score >= ``abstain``, every gate below its threshold, and (``passed``)
    the photo-quality check passed."""
    ok = (class_probs.max(1) >= abstain) & np.all(gate_probs < gate_t[None, :], axis=1)
    return ok if passed is None else ok & passed


def quality_passed(x: np.ndarray, thresholds: dict | None = None) -> np.ndarray:
    """Which model-input arrays (``N x H x W x 3`` uint8) pass the runtime's photo-quality check
    (``skinedge.quality``; the decoded size is not known here, so ``too_small`` cannot fire)."""
    from skinedge.quality import QualityThresholds, assess, problems

    t = QualityThresholds.from_dict(thresholds) if thresholds else QualityThresholds()
    return np.array([not problems(assess(img), t) for img in x], dtype=bool)


@dataclass(frozen=True)
class GateChoice:
    abstain_threshold: float
    gate_thresholds: dict[str, float]
    val_coverage: float
    val_answered: dict[str, float]  # outlier set -> share answered

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _candidates(scores: np.ndarray, max_reject: float) -> np.ndarray:
    """Thresholds on an in-distribution score that reject between 0 and ``max_reject`` of it."""
    qs = np.quantile(scores, 1.0 - np.linspace(0.0, max_reject, 41))
    return np.unique(np.r_[np.clip(qs, 1e-6, 1.0), 1.0 + 1e-9])


def choose_thresholds(
    in_probs: np.ndarray,
    out_probs: dict[str, np.ndarray],
    k: int,
    gate_labels: tuple[str, ...],
    target_coverage: float = 0.93,
    max_gate_reject: float = 0.12,
    in_passed: np.ndarray | None = None,
    out_passed: dict[str, np.ndarray] | None = None,
) -> GateChoice:
    """Grid search over every gate's threshold and the abstain threshold: the least mean share of each outlier set
    answered, with at least ``target_coverage`` of ``in_probs`` (known-class photos) answered (ties: more coverage).

    ``in_probs`` and each ``out_probs`` set are softmax rows over all outputs (known classes then gates).
    ``in_passed`` / ``out_passed``: which photos pass the photo-quality check (the others are never answered)."""
    cin, gin = split_scores(in_probs, k)
    outs = {n: split_scores(p, k) for n, p in out_probs.items()}
    in_ok = np.ones(len(cin), bool) if in_passed is None else in_passed
    out_ok = {n: np.ones(len(c), bool) if not out_passed else out_passed[n] for n, (c, _) in outs.items()}
    grids = [_candidates(gin[:, j], max_gate_reject) for j in range(len(gate_labels))]
    abstains = np.round(np.arange(0.0, 0.95, 0.01), 2)
    best = None
    mesh = np.stack(np.meshgrid(*grids, indexing="ij"), -1).reshape(-1, len(gate_labels)) if grids else np.zeros((1, 0))
    # per gate-threshold combination: which known-class and outlier rows the gates pass
    gate_pass_in = np.all(gin[None, :, :] < mesh[:, None, :], axis=2) & in_ok[None, :]
    gate_pass_out = {n: np.all(g[None, :, :] < mesh[:, None, :], axis=2) & out_ok[n][None, :]
                     for n, (_, g) in outs.items()}
    top_in = cin.max(1)
    top_out = {n: c.max(1) for n, (c, _) in outs.items()}
    for a in abstains:
        cov = (gate_pass_in & (top_in >= a)[None, :]).mean(1)
        ans = np.mean([(gate_pass_out[n] & (top_out[n] >= a)[None, :]).mean(1) for n in outs], axis=0)
        ok = np.flatnonzero(cov >= target_coverage)
        if not ok.size:
            continue
        i = ok[np.lexsort((-cov[ok], ans[ok]))[0]]
        key = (ans[i], -cov[i])
        if best is None or key < best[0]:
            best = (key, float(a), mesh[i], float(cov[i]))
    if best is None:
        raise ValueError(f"no thresholds answer {target_coverage:.0%} of the validation photos")
    _, a, t, cov = best
    val_answered = {n: float(answered(c, g, a, t, out_ok[n]).mean()) for n, (c, g) in outs.items()}
    return GateChoice(a, {g: float(v) for g, v in zip(gate_labels, t)}, cov, val_answered)


def measure(
    in_probs: np.ndarray, in_labels: np.ndarray, out_probs: dict[str, np.ndarray], k: int,
    gate_labels: tuple[str, ...], abstain: float, gate_t: dict[str, float],
    in_passed: np.ndarray | None = None, out_passed: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """What the chosen thresholds do on one split: coverage and accuracy of the known-class photos, the share of
    each outlier set answered, and each gate's AUROC (known-class photos against that outlier set)."""
    t = np.array([gate_t[g] for g in gate_labels])
    cin, gin = split_scores(in_probs, k)
    keep = answered(cin, gin, abstain, t, in_passed)
    correct = cin.argmax(1) == in_labels
    out: dict[str, Any] = {
        "coverage": float(keep.mean()),
        "accuracy_answered": float(correct[keep].mean()) if keep.any() else float("nan"),
        "answered": {},
        "auroc": {},
    }
    for n, p in out_probs.items():
        c, g = split_scores(p, k)
        out["answered"][n] = float(answered(c, g, abstain, t, None if out_passed is None else out_passed[n]).mean())
        out["auroc"][n] = {gl: auroc(-gin[:, j], -g[:, j]) for j, gl in enumerate(gate_labels)}
        out["auroc"][n]["top_class_score"] = auroc(cin.max(1), c.max(1))
    return out
