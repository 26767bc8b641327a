"""The one pipeline: ``postprocess`` (pure functions), ``ClassifierOptions`` (per-call overrides), ``Prepared``
(one prepare step, the decoded picture kept) and the result's ``reason`` / ``gates`` fields.

Expected values are computed here another way: softmax with ``math.exp`` in pure Python, rankings with Python's
``sorted``, and classifications compared with what a freshly built Classifier with those options answers.
"""

from __future__ import annotations

import dataclasses
import io
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import skinedge.classifier as classifier_module
from skinedge import ClassificationResult, Classifier, ClassifierOptions, Prepared
from skinedge.classifier import Timings
from skinedge.errors import ImageError
from skinedge.postprocess import REASONS, calibrate, decide, ranked, softmax
from skinedge.preprocess import DEFAULT_SPEC, prepare, prepare_photo

# -- postprocess: pure functions ------------------------------------------------------------------------------------


def _softmax_py(row: list[float], t: float = 1.0) -> list[float]:
    e = [math.exp(v / t) for v in row]
    return [v / sum(e) for v in e]


def test_softmax_matches_the_definition_per_row_and_per_batch() -> None:
    rows = [[2.0, -1.0, 0.5, 3.25], [0.0, 0.0, 0.0, 0.0], [-7.5, 1.0, 40.0, 39.0]]
    for t in (1.0, 1.7):
        got = softmax(np.asarray(rows), t)
        assert got.dtype == np.float64 and got.shape == (3, 4)
        for row, g in zip(rows, got):
            np.testing.assert_allclose(g, _softmax_py(row, t), rtol=1e-12, atol=0)
            np.testing.assert_array_equal(softmax(np.asarray(row), t), g)  # one image = one row of a batch
    huge = softmax(np.asarray([1000.0, 999.0]))  # shifted by the max: no overflow
    np.testing.assert_allclose(huge, _softmax_py([1.0, 0.0]), rtol=1e-12)


def test_calibrate_by_output_kind() -> None:
    logits = np.asarray([1.0, 2.0, 0.0], np.float32)
    np.testing.assert_allclose(calibrate(logits, "logits", 2.0), _softmax_py([1.0, 2.0, 0.0], 2.0), rtol=1e-12)
    probs = np.asarray([0.2, 0.7, 0.1])
    assert calibrate(probs, "probabilities", 2.0) is not None
    np.testing.assert_array_equal(calibrate(probs, "probabilities", 2.0), probs)  # a calibrated tail: as it is
    with pytest.raises(ValueError, match="output_kind"):
        calibrate(probs, "scores")


def test_ranked_is_best_first_stable_and_thresholded() -> None:
    scores = np.asarray([0.1, 0.3, 0.05, 0.3, 0.25])
    by_python = sorted(range(5), key=lambda i: (-scores[i], i))  # ties in label order
    assert ranked(scores, 5).tolist() == by_python == [1, 3, 4, 0, 2]
    assert ranked(scores, 2).tolist() == [1, 3]
    assert ranked(scores, 5, 0.25).tolist() == [1, 3, 4]  # exactly the threshold is kept
    assert ranked(scores, 5, 0.31).tolist() == []
    assert ranked(scores, 1, -np.inf).tolist() == [1]


def test_decide_abstains_below_the_threshold_only() -> None:
    scores = np.asarray([0.2, 0.5, 0.3])
    assert decide(scores, {}, None, ClassifierOptions(abstain_threshold=0.5)) is None  # equal: answered
    assert decide(scores, {}, None, ClassifierOptions(abstain_threshold=0.51)) == "low_confidence"
    assert decide(scores, {}, None, ClassifierOptions(abstain_threshold=None)) is None
    assert REASONS == ("poor_photo", "not_skin", "other_condition", "low_confidence")  # the documented precedence


# -- options -------------------------------------------------------------------------------------------------------


def test_options_are_frozen_validated_and_replaced_by_name() -> None:
    opts = ClassifierOptions(top_k=2, score_threshold=0, abstain_threshold=1)
    assert (opts.score_threshold, opts.abstain_threshold) == (0.0, 1.0)
    assert isinstance(opts.score_threshold, float)
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.top_k = 3  # type: ignore[misc]
    assert opts.replace(top_k=5) == ClassifierOptions(top_k=5, score_threshold=0.0, abstain_threshold=1.0)
    assert opts.replace() is opts
    with pytest.raises(TypeError, match="unknown classifier option.*topk"):
        opts.replace(topk=5)
    for bad in ({"top_k": 0}, {"top_k": 2.5}, {"top_k": True}, {"score_threshold": float("nan")},
                {"abstain_threshold": "0.5"}):
        with pytest.raises(ValueError):
            ClassifierOptions(**bad)


def test_per_call_options_answer_what_a_classifier_built_with_them_answers(quant_model: Path, imagenet_labels: Path,
                                                                         cat_bmp: Path) -> None:
    with Classifier(quant_model, labels=imagenet_labels, num_threads=1) as clf:
        assert clf.options == ClassifierOptions()
        assert clf.abstain_threshold == 0.0 and clf.model_abstain_threshold == 0.0
        base = clf.classify(cat_bmp)
        for overrides in ({"top_k": 10, "score_threshold": 0.05}, {"abstain_threshold": 0.9}, {"top_k": 1}):
            with Classifier(quant_model, labels=imagenet_labels, num_threads=1, **overrides) as fixed:
                want = fixed.classify(cat_bmp)
            by_keywords = clf.classify(cat_bmp, **overrides)
            by_options = clf.classify(cat_bmp, options=ClassifierOptions(**overrides))
            for got in (by_keywords, by_options):
                assert (got.top_k, got.uncertain, got.reason, got.scores) == (
                    want.top_k, want.uncertain, want.reason, want.scores), overrides
        assert clf.classify(cat_bmp).top_k == base.top_k  # an override lasts one call
        # cat.bmp: Egyptian cat 0.79: abstains at 0.9, not at 0.5
        assert clf.classify(cat_bmp, abstain_threshold=0.9).reason == "low_confidence"
        many = clf.classify_many([cat_bmp, cat_bmp], top_k=1, abstain_threshold=0.9)
        assert [(len(r.top_k), r.reason) for r in many] == [(1, "low_confidence")] * 2
        with pytest.raises(TypeError, match="unknown classifier option"):
            clf.classify(cat_bmp, topk=1)
    opts = ClassifierOptions(top_k=2)
    with Classifier(quant_model, labels=imagenet_labels, num_threads=1, options=opts) as c:
        assert c.options is opts and c.top_k == 2
    with pytest.raises(ValueError, match="either options= or"):
        Classifier(quant_model, labels=imagenet_labels, options=opts, top_k=4)


def test_none_abstain_threshold_means_the_models_own() -> None:
    with Classifier("mobilenetv2", num_threads=1) as clf:  # a bundled model: its metadata's threshold (0.62)
        own = clf.metadata.abstain_threshold
        assert 0 < own < 1 and clf.abstain_threshold == own == clf.model_abstain_threshold
        assert clf.resolve_options().abstain_threshold == own
        assert clf.resolve_options(ClassifierOptions(abstain_threshold=0.2)).abstain_threshold == 0.2
        assert clf.resolve_options(top_k=99).top_k == len(clf.labels)


# -- result fields -------------------------------------------------------------------------------------------------


def _result(**kw) -> ClassificationResult:
    base = dict(source="x", label="a", score=0.4, index=0, top_k=(), uncertain=False, scores=(0.4, 0.6),
                timings=Timings(1.0, 2.0, 3.0))
    return ClassificationResult(**{**base, **kw})


def test_uncertain_is_exactly_a_reason() -> None:
    assert (_result().reason, _result().uncertain) == (None, False)
    assert _result(uncertain=True).reason == "low_confidence"  # built the old way
    assert _result(reason="not_skin").uncertain is True
    with pytest.raises(ValueError, match="reason"):
        _result(reason="blurry")
    d = _result(reason="not_skin", gates={"not_skin": 0.93}).to_dict()
    assert (d["reason"], d["gates"], d["uncertain"]) == ("not_skin", {"not_skin": 0.93}, True)
    plain = _result().to_dict()
    assert plain["reason"] is None and plain["gates"] == {}
    assert hash(_result()) == hash(_result())  # still hashable with a gates dict


# -- Prepared: one prepare step ------------------------------------------------------------------------------------


def _jpeg(size: tuple[int, int], orientation: int = 1) -> bytes:
    rng = np.random.default_rng(3)
    img = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    buf = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = orientation
    img.save(buf, "JPEG", quality=90, exif=exif.tobytes())
    return buf.getvalue()


def test_prepared_holds_what_prepare_computes_and_the_decoded_picture() -> None:
    photo = _jpeg((1200, 800))
    p = prepare_photo(photo, DEFAULT_SPEC, np.uint8)
    np.testing.assert_array_equal(p.pixels, prepare(photo, DEFAULT_SPEC))  # the training path, exactly
    assert p.tensor.shape == (1, 224, 224, 3) and p.tensor.dtype == np.uint8
    np.testing.assert_array_equal(p.tensor[0], p.pixels)
    # Drafted at 1/2 (1/4 would give 200 px, below the 224 px input), then resized.
    assert p.image.size == (600, 400) and p.drafted and p.full_size == (1200, 800) and p.spec == DEFAULT_SPEC
    assert p.decode_ms > 0 and p.resize_ms > 0 and p.source == "<bytes>"
    int8 = prepare_photo(photo, DEFAULT_SPEC, np.int8)
    np.testing.assert_array_equal(int8.tensor[0].astype(np.int16), p.pixels.astype(np.int16) - 128)
    rotated = prepare_photo(_jpeg((1200, 800), orientation=6), DEFAULT_SPEC)  # stored on its side
    assert rotated.image.size == (400, 600) and rotated.full_size == (800, 1200)
    small = prepare_photo(_jpeg((300, 200)), DEFAULT_SPEC)
    assert not small.drafted and small.full_size == small.image.size == (300, 200)


def test_classify_and_explain_take_a_prepared_photo(test_photos: list[Path]) -> None:
    with Classifier(num_threads=1) as clf:
        for photo in test_photos[:3]:
            prepared = clf.prepare(photo)
            assert isinstance(prepared, Prepared) and clf.prepare(prepared) is prepared
            direct, again = clf.classify(photo), clf.classify(prepared)
            assert (again.scores, again.label, again.source) == (direct.scores, direct.label, str(photo))
            assert again.timings.decode_ms == prepared.decode_ms  # not decoded a second time
            ex, ex_direct = clf.explain(prepared), clf.explain(photo)
            np.testing.assert_array_equal(ex.heatmap, ex_direct.heatmap)
            assert ex.scores == direct.scores
            batch = clf.classify_many([prepared, photo])
            assert [r.scores for r in batch] == [direct.scores, direct.scores]


def test_quality_is_measured_in_the_prepare_step(test_photos: list[Path]) -> None:
    from skinedge.quality import assess

    unchecked_options = ClassifierOptions(check_quality=False)
    with Classifier(num_threads=1) as clf, Classifier(num_threads=1, options=unchecked_options) as unchecked:
        prepared = clf.prepare(test_photos[0])
        assert prepared.quality == assess(prepared.pixels, prepared.full_size)  # ahead of the invoke
        assert clf.classify(prepared).quality == prepared.quality == clf.classify(test_photos[0]).quality
        # a Prepared made without it (another classifier, or by hand) is measured at the invoke instead
        bare = unchecked.prepare(test_photos[0])
        assert bare.quality is None and clf.classify(bare).quality == prepared.quality
        assert clf.classify(prepared, check_quality=False).quality is None


def test_a_prepared_photo_for_another_input_is_refused(quant_model: Path, imagenet_labels: Path,
                                                      cat_bmp: Path) -> None:
    with Classifier(quant_model, labels=imagenet_labels, num_threads=1) as clf:
        for spec in (dataclasses.replace(clf.spec, height=96, width=96),
                     dataclasses.replace(clf.spec, aspect="center_crop")):
            with pytest.raises(ValueError, match="another model"):
                clf.classify(prepare_photo(cat_bmp, spec, clf.input_details["dtype"]))
        with pytest.raises(ValueError, match="another model"):
            clf.classify(prepare_photo(cat_bmp, clf.spec, np.int8))


@pytest.fixture(scope="module")
def test_photos(skin6_dir: Path) -> list[Path]:
    return sorted(p for p in (skin6_dir / "test").rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


# -- the batcher ---------------------------------------------------------------------------------------------------


def test_prefetched_keeps_order_errors_and_its_depth() -> None:
    import threading

    from skinedge.batch import prefetched

    started: list[int] = []
    lock = threading.Lock()

    def step(i: int) -> int:
        with lock:
            started.append(i)
        if i == 3:
            raise KeyError(i)
        return i * i

    got, consumed = [], 0
    for get in prefetched(step, iter(range(10)), workers=2, depth=3):
        consumed += 1
        assert len(started) <= consumed + 2  # never more than `depth` items begun beyond those handed back
        try:
            got.append(get())
        except KeyError as exc:
            got.append(("error", exc.args[0]))
    assert got == [0, 1, 4, ("error", 3), 16, 25, 36, 49, 64, 81]
    lazy = list(prefetched(step, [70], workers=2))  # one item: run when asked, in this thread
    assert 70 not in started and lazy[0]() == 4900 and 70 in started
    with pytest.raises(ValueError):
        list(prefetched(step, [1, 2], workers=1, depth=0))


def test_threads_take_turns_at_preparing_only_when_the_others_prepares_fit_in_ones_invokes() -> None:
    assert classifier_module._turns_pay(2, prepare_s=0.011, invoke_s=0.037)  # video frames: 8 of 640x480
    assert not classifier_module._turns_pay(2, prepare_s=0.8, invoke_s=0.04)  # 12 MP photos: decoding dominates
    assert classifier_module._turns_pay(3, prepare_s=0.011, invoke_s=0.037)
    assert not classifier_module._turns_pay(4, prepare_s=0.013, invoke_s=0.037)  # 3 x 13 ms > 37 ms


def test_threads_take_turns_only_on_images_alike_and_give_the_same_results(test_photos: list[Path],
                                                                           tmp_path: Path) -> None:
    """Turns (forced here, whatever the timings) are considered for images of one size, as a video's frames, and
    change no result, with a bad image in a run; a folder of mixed sizes never takes them."""
    alike = []
    for i, photo in enumerate(test_photos[:20]):
        alike.append(tmp_path / f"{i:02d}.jpg")
        Image.open(photo).convert("RGB").resize((320, 240)).save(alike[-1], quality=90)
    damaged = tmp_path / "damaged.jpg"
    damaged.write_bytes(alike[0].read_bytes()[:200])
    alike.insert(9, damaged)
    asked: list[int] = []

    def always(threads: int, prepare_s: float, invoke_s: float) -> bool:
        asked.append(threads)
        return True

    with Classifier(num_threads=2) as clf, pytest.MonkeyPatch.context() as mp:
        mp.setattr(classifier_module, "_turns_pay", always)
        one = clf.classify_many(alike, interpreters=1)
        in_turns = clf.classify_many(alike, prefetch=6)  # runs of 3
        assert asked and set(asked) == {2}
        asked.clear()
        common = [p for p in test_photos if Image.open(p).size == (640, 480)][:10]
        others = [p for p in test_photos if Image.open(p).size != (640, 480)][:10]
        clf.classify_many([p for pair in zip(common, others, strict=True) for p in pair])  # every run: two sizes
        assert not asked
    assert isinstance(in_turns[9], ImageError) and str(damaged) in str(in_turns[9])
    for a, b in zip(one, in_turns, strict=True):
        if not isinstance(a, ImageError):
            assert (b.source, b.label, b.reason) == (a.source, a.label, a.reason)
            np.testing.assert_allclose(b.scores, a.scores, rtol=0, atol=1e-6)


def test_batches_on_per_core_interpreters_give_the_same_results(test_photos: list[Path], tmp_path: Path) -> None:
    """The default batch (one single-thread interpreter per thread, each decoding its own photos) reports what one
    interpreter fed by decode workers reports, photo for photo, in input order, with a bad input in the middle."""
    from skinedge.errors import ClassifierClosedError, ImageError

    damaged = tmp_path / "damaged.jpg"
    damaged.write_bytes(test_photos[0].read_bytes()[:200])
    photos = [*test_photos[:10], damaged, *test_photos[10:20]]  # 21: enough for the per-core default
    with Classifier(num_threads=2) as clf:
        one = clf.classify_many(photos, interpreters=1)
        per_core = clf.classify_many(photos)  # default: num_threads interpreters
        again = clf.classify_many(iter(photos), interpreters=2, prefetch=1)  # a generator, nothing ahead
        short_runs = clf.classify_many(photos, prefetch=6)  # runs of 3: the bad photo in the middle of one
        for batch in (per_core, again, short_runs):
            assert isinstance(batch[10], ImageError) and str(damaged) in str(batch[10])
            for a, b in zip(one, batch, strict=True):
                if isinstance(a, ImageError):
                    continue
                assert (b.source, b.label, b.reason) == (a.source, a.label, a.reason)
                # int8 arithmetic gives the same integers on 1 or 2 threads; the float softmax may round apart
                np.testing.assert_allclose(b.scores, a.scores, rtol=0, atol=1e-6)
                np.testing.assert_allclose(list(b.gates.values()), list(a.gates.values()), rtol=0, atol=1e-6)
        for bad in ({"interpreters": 0}, {"prefetch": 0}, {"workers": 0}, {"interpreters": 1, "prefetch": 0}):
            with pytest.raises(ValueError, match="must be >= 1"):
                clf.classify_many(photos, **bad)
        outcomes = clf.iter_classify(photos * 3)
        assert isinstance(next(outcomes), ClassificationResult)
        clf.close()  # a batch still running stops with the typed error, not a crash or a wrong answer
        with pytest.raises(ClassifierClosedError):
            for outcome in outcomes:
                assert isinstance(outcome, (ClassificationResult, ImageError))
