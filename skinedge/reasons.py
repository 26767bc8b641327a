"""What a result with no answer says to a person: one wording for every surface (CLI, watch, the page, the API).

A result without an answer never shows a label as if it were one: it says why, in words a clinician or a patient
at a kiosk can act on. ``reason`` precedence and meaning: :data:`skinedge.postprocess.REASONS`.
"""

from __future__ import annotations

from typing import Any

from skinedge.quality import HINTS

#: The sentence a surface shows for each reason.
REASON_TEXT = {
    "not_skin": "This does not look like a skin photo.",
    "other_condition": "This may be a condition this model does not know: see a clinician.",
    "poor_photo": "This photo is too poor to judge.",
    "low_confidence": "No confident answer.",
}

#: A few words for a live view's status line, where the camera can still be moved.
LIVE_TEXT = {
    "not_skin": "no skin in view",
    "other_condition": "not a condition this model knows",
    "low_confidence": "no confident answer",
}
LIVE_QUALITY_TEXT = {
    "too_small": "move closer",
    "no_detail": "nothing in view",
    "too_dark": "more light",
    "too_bright": "less light or glare",
    "blurred": "hold still",
}


def describe(result: Any) -> str:
    """One or two sentences on why ``result`` (a ClassificationResult) gives no answer; empty when it answers."""
    if result.reason is None:
        return ""
    text = REASON_TEXT[result.reason]
    if result.reason == "poor_photo" and result.quality_problems:
        text += " " + "; ".join(HINTS[p] for p in result.quality_problems).capitalize() + "."
    return text


def live_status(result: Any) -> str:
    """A few words for a live view's status line ("hold still", "more light", "no skin in view"); empty when
    the result answers."""
    if result.reason is None:
        return ""
    if result.reason == "poor_photo":
        return ", ".join(LIVE_QUALITY_TEXT[p] for p in result.quality_problems) or "photo too poor to judge"
    return LIVE_TEXT[result.reason]
