"""From a model's output arrays to an answer: pure functions, no interpreter, no state (pycoral's style).

Every surface (``Classifier``, video smoothing, the training tools' reports) scores with these, so a
calibration, a ranking or an abstention rule is written once:

* :func:`softmax` and :func:`calibrate`: raw outputs (logits or probabilities) -> calibrated class scores.
* :func:`ranked`: the best ``k`` classes past a score threshold, best first, ties in label order.
* :func:`decide`: whether to answer, and if not, why (:data:`REASONS`, in order of precedence).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from skinedge.options import ClassifierOptions
from skinedge.quality import PhotoQuality, problems

#: Why a result gives no answer, in order of precedence (the first that applies is reported):
#: a photo too poor to judge says nothing about the skin in it; a photo that is not skin has no skin
#: condition; a condition outside the model's classes has no label to be confident in; only then does a
#: low top score count.
REASONS = ("poor_photo", "not_skin", "other_condition", "low_confidence")
#: The gates skinedge acts on, in order of precedence; each has a ``<name>_threshold`` in ClassifierOptions.
GATES = ("not_skin", "other_condition")


def softmax(logits: np.ndarray, temperature: float = 1.0, axis: int = -1) -> np.ndarray:
    """Probabilities from ``logits`` along ``axis`` at calibration ``temperature``, in float64: the one
    softmax of skinedge and its tools (1-D: one image; 2-D: one row per image)."""
    z = np.asarray(logits).astype(np.float64) / temperature
    z -= z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def calibrate(values: np.ndarray, output_kind: str, temperature: float = 1.0) -> np.ndarray:
    """Calibrated class scores from a model's dequantized scores output.

    ``output_kind`` ``"logits"``: ``softmax(values / temperature)``; ``"probabilities"``: the values as they
    are (a model that ends in its own calibrated softmax, as the bundled ones do).
    """
    if output_kind == "logits":
        return softmax(values, temperature)
    if output_kind == "probabilities":
        return np.asarray(values)
    raise ValueError(f"output_kind must be 'logits' or 'probabilities', got {output_kind!r}")


def split_gates(scores: np.ndarray, gate_labels: tuple[str, ...]) -> tuple[np.ndarray, dict[str, float]]:
    """(class scores, gate scores by name) from a gated model's calibrated output: one softmax over the classes
    then the gates (``gate_labels``, the output's last values). The class scores are the classes' share
    renormalised, so they sum to 1 and rank exactly as before; a model without gates is returned as it is."""
    scores = np.asarray(scores)
    if not gate_labels:
        return scores, {}
    n = scores.size - len(gate_labels)
    known = scores[:n]
    return known / known.sum(), {g: float(v) for g, v in zip(gate_labels, scores[n:])}


def quality_problems(quality: PhotoQuality | None, options: ClassifierOptions) -> tuple[str, ...]:
    """What makes the photo too poor to judge under ``options`` (resolved); empty when fine or not checked."""
    if quality is None or not options.check_quality or options.quality is None:
        return ()
    return problems(quality, options.quality)


def ranked(scores: np.ndarray, k: int, score_threshold: float = 0.0) -> np.ndarray:
    """Indices of the best ``k`` classes whose score is at least ``score_threshold``, best first (a stable
    sort: equal scores keep label order). May be empty; the top class itself is ``ranked(scores, 1)``."""
    scores = np.asarray(scores)
    order = np.argsort(-scores, kind="stable")[:k]
    return order[scores[order] >= score_threshold]


def decide(
    scores: np.ndarray,
    gates: Mapping[str, float],
    quality: Any,
    options: ClassifierOptions,
) -> str | None:
    """Whether to answer: None to answer, else the reason not to, one of :data:`REASONS`.

    The first that applies, in this order of precedence: ``poor_photo`` (``quality`` says the photo cannot
    be judged), ``not_skin`` and ``other_condition`` (the model's gate scores, by name in ``gates``),
    ``low_confidence`` (the top calibrated score is below ``options.abstain_threshold``; a threshold of
    None never abstains). Models without gates give an empty ``gates``, and ``quality`` is None when it
    was not measured: those checks then never fire.

    Args:
        scores: calibrated class scores, label order.
        gates: gate scores by name (e.g. ``"not_skin"``), each in [0, 1].
        quality: the photo's measured quality, or None.
        options: the thresholds, resolved (:meth:`skinedge.Classifier.resolve_options`).
    """
    if quality_problems(quality, options):
        return "poor_photo"
    for gate in GATES:
        t = getattr(options, f"{gate}_threshold")
        if t is not None and gate in gates and gates[gate] >= t:
            return gate
    threshold = options.abstain_threshold
    if threshold is not None and float(np.max(scores)) < threshold:
        return "low_confidence"
    return None


__all__ = ["GATES", "REASONS", "calibrate", "decide", "quality_problems", "ranked", "softmax", "split_gates"]
