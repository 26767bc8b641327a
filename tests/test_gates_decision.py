"""The "knows when not to answer" decision (skinedge.postprocess) and its metadata, on values worked out by hand."""

import numpy as np
import pytest

from skinedge.errors import MetadataError
from skinedge.metadata import ModelMetadata, pack, unpack
from skinedge.options import ClassifierOptions
from skinedge.postprocess import decide, split_gates
from skinedge.quality import PhotoQuality, QualityThresholds

GOOD = PhotoQuality(sharpness=0.3, brightness=120.0, dark_fraction=0.0, bright_fraction=0.0, contrast=40.0,
                    min_side=480)
BLURRED = PhotoQuality(sharpness=0.01, brightness=120.0, dark_fraction=0.0, bright_fraction=0.0, contrast=40.0,
                       min_side=480)
OPTS = ClassifierOptions(abstain_threshold=0.5, not_skin_threshold=0.4, other_condition_threshold=0.3,
                         quality=QualityThresholds())
CONFIDENT = np.array([0.9, 0.05, 0.05])


def test_split_gates_renormalises_the_classes_and_names_the_gates():
    scores, gates = split_gates(np.array([0.3, 0.1, 0.4, 0.2]), ("not_skin", "other_condition"))
    np.testing.assert_allclose(scores, [0.75, 0.25])
    assert gates == pytest.approx({"not_skin": 0.4, "other_condition": 0.2})
    plain, none = split_gates(np.array([0.6, 0.4]), ())
    np.testing.assert_array_equal(plain, [0.6, 0.4]) and none == {}


@pytest.mark.parametrize(("gates", "quality", "scores", "expected"), [
    ({"not_skin": 0.1, "other_condition": 0.1}, GOOD, CONFIDENT, None),
    ({"not_skin": 0.4, "other_condition": 0.1}, GOOD, CONFIDENT, "not_skin"),  # at the threshold: no answer
    ({"not_skin": 0.39, "other_condition": 0.3}, GOOD, CONFIDENT, "other_condition"),
    ({"not_skin": 0.9, "other_condition": 0.9}, GOOD, CONFIDENT, "not_skin"),  # precedence: not skin first
    ({"not_skin": 0.9, "other_condition": 0.9}, BLURRED, CONFIDENT, "poor_photo"),  # a poor photo before all
    ({"not_skin": 0.1, "other_condition": 0.1}, GOOD, np.array([0.45, 0.35, 0.2]), "low_confidence"),
    ({"not_skin": 0.9}, GOOD, np.array([0.45, 0.35, 0.2]), "not_skin"),  # a gate before a low score
    ({}, GOOD, CONFIDENT, None),  # a model without gates
    ({"not_skin": 0.9}, None, CONFIDENT, "not_skin"),  # quality not measured: that check cannot fire
])
def test_decide_precedence(gates, quality, scores, expected):
    assert decide(scores, gates, quality, OPTS) == expected


def test_each_threshold_is_obeyed():
    gates = {"not_skin": 0.5, "other_condition": 0.5}
    assert decide(CONFIDENT, gates, GOOD, OPTS.replace(not_skin_threshold=0.51, other_condition_threshold=0.51)) is None
    assert decide(CONFIDENT, gates, GOOD, OPTS.replace(not_skin_threshold=None, other_condition_threshold=None)) is None
    assert decide(CONFIDENT, {}, BLURRED, OPTS.replace(check_quality=False)) is None
    assert decide(CONFIDENT, {}, BLURRED, OPTS.replace(quality=QualityThresholds(min_sharpness=0.005))) is None
    assert decide(CONFIDENT, {}, GOOD, OPTS.replace(abstain_threshold=0.95)) == "low_confidence"


def test_options_refuse_what_is_not_a_threshold():
    with pytest.raises(ValueError, match="not_skin_threshold"):
        ClassifierOptions(not_skin_threshold=float("nan"))
    with pytest.raises(ValueError, match="QualityThresholds"):
        ClassifierOptions(quality={"min_sharpness": 0.1})


def _gated(**kw) -> ModelMetadata:
    return ModelMetadata(labels=("a", "b"), gate_labels=("not_skin", "other_condition"), num_outputs=4,
                         gate_thresholds={"not_skin": 0.4, "other_condition": 0.3},
                         quality={"min_sharpness": 0.08}, **kw)


def test_gated_metadata_round_trips_and_writes_every_output_label(quant_model):
    md = _gated()
    d = md.to_dict()
    assert d["format_version"] == 2 and d["gates"] == {"labels": ["not_skin", "other_condition"],
                                                       "thresholds": {"not_skin": 0.4, "other_condition": 0.3}}
    back = ModelMetadata.from_dict(d)
    assert (back.gate_labels, back.gate_thresholds, back.quality) == (md.gate_labels, md.gate_thresholds, md.quality)
    assert back.output_labels == ("a", "b", "not_skin", "other_condition")
    bare = unpack(quant_model.read_bytes(), str(quant_model)).flatbuffer
    packed = unpack(pack(bare, md), "<m>")
    assert packed.labels == ("a", "b", "not_skin", "other_condition")  # labels.txt: what MediaPipe reads
    assert ModelMetadata(labels=("a",)).to_dict()["format_version"] == 1  # plain models keep the old format


@pytest.mark.parametrize(("change", "message"), [
    ({"num_outputs": 3}, "gates included"),
    ({"gates": {"labels": ["not_skin"], "thresholds": {"foo": 0.2}}}, "unknown gates"),
    ({"gates": {"labels": ["not_skin"], "thresholds": {"not_skin": 1.5}}}, r"in \[0, 1\]"),
    ({"gates": {"labels": ["a"], "thresholds": {}}}, "differ"),
])
def test_inconsistent_gate_metadata_is_refused(change, message):
    d = {**_gated().to_dict(), **change}
    with pytest.raises(MetadataError, match=message):
        ModelMetadata.from_dict(d)
