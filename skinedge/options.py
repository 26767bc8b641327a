"""``ClassifierOptions``: what a result reports (top-k, thresholds), apart from which model computes it.

MediaPipe Tasks' split: a ``Classifier`` loads a model once; its options are a frozen value, set at
construction and overridable per call (``clf.classify(photo, top_k=5)`` or ``options=...``). A threshold
left at None takes the model's own value from its metadata (:meth:`skinedge.Classifier.resolve_options`).
A new threshold is one more field here (named ``*_threshold``: validated as a finite number), one more check
in :func:`skinedge.postprocess.decide`, and, if None should mean the model's own value, one line in
``Classifier._resolve``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from skinedge.quality import QualityThresholds


@dataclass(frozen=True)
class ClassifierOptions:
    """How a :class:`~skinedge.Classifier` turns scores into a result.

    Attributes:
        top_k: how many classes ``result.top_k`` lists (capped at the number of labels).
        score_threshold: classes scoring below this are left out of ``top_k`` (the answer itself is kept).
        abstain_threshold: a top score below this gives no answer (``reason="low_confidence"``,
            ``uncertain``); None: the model's own threshold from its metadata (0, never, without one).
        not_skin_threshold: a ``not_skin`` gate score at or above this gives no answer (``reason="not_skin"``);
            None: the model's own (models without that gate never give this reason).
        other_condition_threshold: likewise for the ``other_condition`` gate (a condition outside the classes).
        quality: photo-quality limits (:class:`skinedge.quality.QualityThresholds`) below which a photo is too
            poor to judge (``reason="poor_photo"``); None: the model's own (set where its accuracy falls); a model
            without them (the paper's MobileNetV2, third-party files) is not checked unless limits are given here.
        check_quality: False skips the photo-quality check (and its measures: ``result.quality`` is None).
    """

    top_k: int = 3
    score_threshold: float = 0.0
    abstain_threshold: float | None = None
    not_skin_threshold: float | None = None
    other_condition_threshold: float | None = None
    quality: QualityThresholds | None = None
    check_quality: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 1:
            raise ValueError(f"top_k must be an integer >= 1, got {self.top_k!r}")
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not f.name.endswith("_threshold") or value is None:  # every threshold: a finite float
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{f.name} must be a finite number, got {value!r}")
            object.__setattr__(self, f.name, float(value))
        if self.quality is not None and not isinstance(self.quality, QualityThresholds):
            raise ValueError(f"quality must be a QualityThresholds, got {type(self.quality).__name__}")

    def replace(self, **overrides: Any) -> ClassifierOptions:
        """These options with ``overrides`` (field names) changed; unknown names are refused."""
        unknown = set(overrides) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise TypeError(f"unknown classifier option(s): {', '.join(sorted(unknown))}; "
                            f"the options are {', '.join(f.name for f in dataclasses.fields(self))}")
        return dataclasses.replace(self, **overrides) if overrides else self


__all__ = ["ClassifierOptions"]
