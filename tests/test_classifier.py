"""Classifier behaviour on real ImageNet reference models (known answers) with the real LiteRT interpreter."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from skinedge import ClassificationResult, Classifier
from skinedge.errors import ImageError, SkinedgeError
from skinedge.preprocess import prepare

# README of ../shared/reference-models: (image, model) -> (index, score).
KNOWN = {
    ("cat.bmp", "quant"): (286, 0.79),
    ("cat_720p.jpg", "quant"): (286, 0.82),
    ("grace_hopper.bmp", "quant"): (653, 0.92),
    ("hot_dog.jpg", "quant"): (935, 0.89),
    ("cat.bmp", "ptq"): (286, 0.61),
    ("cat_720p.jpg", "ptq"): (286, 0.60),
    ("grace_hopper.bmp", "ptq"): (653, 0.78),
    ("hot_dog.jpg", "ptq"): (935, 0.38),
}
README_LABELS = {286: "Egyptian cat", 653: "military uniform", 935: "hotdog"}
IMAGES = ("cat.bmp", "cat_720p.jpg", "grace_hopper.bmp", "hot_dog.jpg")


@pytest.fixture(scope="module")
def images(reference_dir: Path) -> dict[str, Path]:
    return {name: reference_dir / "images" / name for name in IMAGES}


@pytest.fixture(scope="module")
def clf(quant_model: Path, imagenet_labels: Path):
    with Classifier(quant_model, labels=imagenet_labels, num_threads=2) as c:
        yield c


@pytest.fixture(scope="module")
def ptq(ptq_model: Path, imagenet_labels: Path):
    with Classifier(ptq_model, labels=imagenet_labels, num_threads=2) as c:
        yield c


@pytest.mark.parametrize("image, model", sorted(KNOWN))
def test_known_answers(image: str, model: str, images: dict[str, Path], request: pytest.FixtureRequest) -> None:
    classifier: Classifier = request.getfixturevalue("clf" if model == "quant" else "ptq")
    index, score = KNOWN[(image, model)]
    result = classifier.classify(images[image])
    assert result.index == index
    assert result.label.startswith(README_LABELS[index])
    assert result.score == pytest.approx(score, abs=0.02)
    assert result.source == str(images[image])


def test_cat_is_egyptian_cat_on_both_models(clf: Classifier, ptq: Classifier, cat_bmp: Path) -> None:
    for classifier in (clf, ptq):
        result = classifier.classify(cat_bmp)
        assert (result.index, result.label) == (286, "Egyptian cat")


def test_model_introspection(clf: Classifier) -> None:
    assert len(clf.labels) == 1001 and clf.labels[0] == "background"
    assert clf.metadata is None
    assert clf.output_kind == "probabilities"  # uint8 output with scale 1/256
    assert clf.input_details["dtype"] == np.uint8
    assert list(clf.input_details["shape"]) == [1, 224, 224, 3]
    assert (clf.spec.height, clf.spec.width) == (224, 224)


def test_delegated_with_litert(clf: Classifier) -> None:
    assert clf.backend.name == "litert"
    assert clf.delegated is True
    assert clf.delegate.partitions >= 1
    assert "XNNPACK" in clf.delegate.describe()


def test_scores_are_probabilities(clf: Classifier, cat_bmp: Path) -> None:
    result = clf.classify(cat_bmp)
    assert len(result.scores) == 1001
    assert sum(result.scores) == pytest.approx(1.0, abs=0.1)  # uint8 outputs round small scores down
    assert all(0.0 <= s <= 1.0 for s in result.scores)
    assert result.scores[result.index] == result.score == max(result.scores)


# -- input kinds ---------------------------------------------------------------------------------


def test_every_input_kind_gives_same_answer(clf: Classifier, cat_bmp: Path) -> None:
    with Image.open(cat_bmp) as im:
        rgb = im.convert("RGB")
    inputs = {
        str(cat_bmp): str(cat_bmp),
        "path": cat_bmp,
        "<bytes>": cat_bmp.read_bytes(),
        "pil": rgb,
        "<array>": np.asarray(rgb),
    }
    results = {kind: clf.classify(value) for kind, value in inputs.items()}
    reference = results[str(cat_bmp)]
    assert reference.index == 286
    for kind, result in results.items():
        assert result.index == 286, kind
        assert result.scores == reference.scores, kind
    assert results["<bytes>"].source == "<bytes>"
    assert results["<array>"].source == "<array>"
    assert results["path"].source == str(cat_bmp)


def test_preprocess_is_prepare(clf: Classifier, images: dict[str, Path]) -> None:
    for path in images.values():
        t = time.perf_counter()
        pixels, decode_ms, resize_ms = clf.preprocess(path)
        wall_ms = (time.perf_counter() - t) * 1000
        assert np.array_equal(pixels, prepare(path, clf.spec))
        # Both steps did work, in ms, within the call (each field's exact interval: test_semantics' fake clock)
        assert 0 < decode_ms and 0 < resize_ms and decode_ms + resize_ms <= wall_ms


def test_invoke_refuses_wrong_array(clf: Classifier) -> None:
    with pytest.raises(ValueError):
        clf.invoke(np.zeros((100, 100, 3), np.uint8))
    with pytest.raises(ValueError):
        clf.invoke(np.zeros((224, 224, 3), np.float32))


# -- batches -------------------------------------------------------------------------------------


def test_classify_many_keeps_order_and_types_errors(clf: Classifier, images: dict[str, Path], tmp_path: Path) -> None:
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    missing = tmp_path / "missing.jpg"
    with Image.open(images["grace_hopper.bmp"]) as im:
        hopper_array = np.asarray(im.convert("RGB"))
    inputs = [
        images["cat.bmp"],
        empty,
        images["hot_dog.jpg"],
        b"this is not an image",
        images["grace_hopper.bmp"].read_bytes(),
        missing,
        hopper_array,
        images["cat_720p.jpg"],
    ]
    outcomes = clf.classify_many(inputs)
    assert len(outcomes) == len(inputs)
    expected = [286, ImageError, 935, ImageError, 653, ImageError, 653, 286]
    for outcome, want in zip(outcomes, expected, strict=True):
        if want is ImageError:
            assert isinstance(outcome, ImageError)
        else:
            assert isinstance(outcome, ClassificationResult)
            assert outcome.index == want
    assert outcomes[1].source == str(empty)
    assert outcomes[3].source == "<bytes>"
    assert outcomes[5].source == str(missing)
    assert outcomes[0].source == str(images["cat.bmp"])
    # Same scores as one at a time.
    assert outcomes[2].scores == clf.classify(images["hot_dog.jpg"]).scores


def test_iter_classify_is_lazy_and_ordered(clf: Classifier, images: dict[str, Path]) -> None:
    def gen():
        for _ in range(3):
            yield from images.values()

    outcomes = list(clf.iter_classify(gen(), workers=1))
    assert [o.index for o in outcomes] == [286, 286, 653, 935] * 3
    assert clf.classify_many([]) == []


# -- top_k, thresholds ---------------------------------------------------------------------------


def test_top_k(quant_model: Path, imagenet_labels: Path, cat_bmp: Path) -> None:
    with Classifier(quant_model, labels=imagenet_labels, num_threads=1, top_k=5) as c:
        result = c.classify(cat_bmp)
    assert len(result.top_k) == 5
    scores = [cat.score for cat in result.top_k]
    assert scores == sorted(scores, reverse=True)
    assert result.top_k[0].index == result.index == 286
    assert result.top_k[0].label == "Egyptian cat"
    for cat in result.top_k:
        assert cat.score == result.scores[cat.index]
        assert cat.label == c.labels[cat.index]
    # Everything left out scores no higher than the last one listed.
    listed = {cat.index for cat in result.top_k}
    assert max(s for i, s in enumerate(result.scores) if i not in listed) <= scores[-1]


def test_default_top_k_is_three(clf: Classifier, cat_bmp: Path) -> None:
    assert len(clf.classify(cat_bmp).top_k) == 3


def test_top_k_capped_at_label_count_and_validated(quant_model: Path, imagenet_labels: Path) -> None:
    with Classifier(quant_model, labels=imagenet_labels, num_threads=1, top_k=5000) as c:
        assert c.top_k == 1001
    with pytest.raises(ValueError):
        Classifier(quant_model, labels=imagenet_labels, top_k=0)


def test_score_threshold(quant_model: Path, imagenet_labels: Path, cat_bmp: Path) -> None:
    with Classifier(quant_model, labels=imagenet_labels, num_threads=1, top_k=10, score_threshold=0.05) as c:
        result = c.classify(cat_bmp)
    # cat.bmp: Egyptian cat 0.79, tabby 0.11, tiger cat 0.035 -> two classes reach 0.05.
    assert [cat.label for cat in result.top_k] == ["Egyptian cat", "tabby, tabby cat"]
    assert all(cat.score >= 0.05 for cat in result.top_k)

    with Classifier(quant_model, labels=imagenet_labels, num_threads=1, score_threshold=0.99) as c:
        result = c.classify(cat_bmp)
    assert result.top_k == ()
    assert (result.index, result.label) == (286, "Egyptian cat")  # the answer itself is still given


def test_uncertain_flag(quant_model: Path, imagenet_labels: Path, cat_bmp: Path, clf: Classifier) -> None:
    assert clf.abstain_threshold == 0.0
    assert not clf.classify(cat_bmp).uncertain
    with Classifier(quant_model, labels=imagenet_labels, num_threads=1, abstain_threshold=0.9) as c:
        result = c.classify(cat_bmp)  # 0.79 < 0.9
        assert result.uncertain and result.index == 286
    with Classifier(quant_model, labels=imagenet_labels, num_threads=1, abstain_threshold=0.5) as c:
        assert not c.classify(cat_bmp).uncertain


def test_timings_and_to_dict(clf: Classifier, cat_bmp: Path) -> None:
    start = time.perf_counter()
    result = clf.classify(cat_bmp)
    wall_ms = (time.perf_counter() - start) * 1000
    t = result.timings
    # Real steps, in ms, inside the call; each field's exact interval is checked with a fake clock (test_semantics)
    assert 0 < t.decode_ms and 0 < t.preprocess_ms and 0 < t.invoke_ms and t.total_ms <= wall_ms
    assert t.total_ms == pytest.approx(t.decode_ms + t.preprocess_ms + t.invoke_ms)
    assert 0 < clf.load_ms
    d = json.loads(json.dumps(result.to_dict()))
    assert d["label"] == "Egyptian cat"
    assert d["source"] == str(cat_bmp)
    assert d["uncertain"] is False
    assert len(d["top_k"]) == 3 and d["top_k"][0]["label"] == "Egyptian cat"
    assert d["timings_ms"] == {"decode": round(t.decode_ms, 3), "preprocess": round(t.preprocess_ms, 3),
                               "invoke": round(t.invoke_ms, 3)}


def test_labels_as_sequence(quant_model: Path, imagenet_labels: Path, cat_bmp: Path) -> None:
    names = [f"class-{i}" for i in range(1001)]
    with Classifier(quant_model, labels=names, num_threads=1) as c:
        assert c.classify(cat_bmp).label == "class-286"


def test_numeric_labels_without_labels_file(quant_model: Path, cat_bmp: Path) -> None:
    with Classifier(quant_model, num_threads=1) as c:
        assert c.classify(cat_bmp).label == "286"


# -- lifecycle, threads --------------------------------------------------------------------------


def test_context_manager_closes(quant_model: Path, imagenet_labels: Path, cat_bmp: Path) -> None:
    with Classifier(quant_model, labels=imagenet_labels, num_threads=1) as c:
        assert c.classify(cat_bmp).index == 286
    with pytest.raises(RuntimeError, match="closed"):
        c.classify(cat_bmp)
    with pytest.raises(RuntimeError):
        c.invoke(np.zeros((224, 224, 3), np.uint8))
    with pytest.raises(RuntimeError):
        c.classify_many([cat_bmp])
    c.close()  # closing twice is harmless


@pytest.mark.parametrize("threads", [1, 2])
def test_num_threads_in_repr(quant_model: Path, imagenet_labels: Path, threads: int) -> None:
    with Classifier(quant_model, labels=imagenet_labels, num_threads=threads) as c:
        assert c.num_threads == threads
        text = repr(c)
    assert f"threads={threads}" in text
    assert "labels=1001" in text
    assert "XNNPACK" in text
    assert quant_model.name in text


def test_default_num_threads_is_usable_cpus(quant_model: Path, imagenet_labels: Path) -> None:
    from skinedge.backend import usable_cpus

    with Classifier(quant_model, labels=imagenet_labels) as c:
        assert c.num_threads == usable_cpus() >= 1


def test_shared_classifier_is_thread_safe(clf: Classifier, images: dict[str, Path]) -> None:
    jobs = list(images.values()) * 4
    single = {path: clf.classify(path).scores for path in images.values()}
    start = threading.Barrier(8)

    def work(i: int) -> list[tuple[Path, tuple[float, ...]]]:
        start.wait()
        out = []
        for path in jobs[i::8] + jobs[: i % 4]:
            out.append((path, clf.classify(path).scores))
        return out

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = [r for chunk in pool.map(work, range(8)) for r in chunk]
    assert len(results) >= len(jobs)
    for path, scores in results:
        assert scores == single[path], path


def test_errors_are_skinedge_errors(clf: Classifier, tmp_path: Path) -> None:
    with pytest.raises(SkinedgeError) as info:
        clf.classify(tmp_path / "nope.png")
    assert str(info.value) == f"{tmp_path / 'nope.png'}: no such file"


def test_bundled_model_or_clear_error(cat_bmp: Path) -> None:
    from skinedge.errors import ModelError
    from skinedge.model_io import bundled_model_path

    try:
        bundled_model_path()
    except ModelError as exc:
        assert "bundled model is missing" in exc.reason
        with pytest.raises(ModelError, match="bundled model is missing"):
            Classifier()
        return
    with Classifier(num_threads=1) as c:  # the shipped model: metadata, labels, verified checksum
        assert c.metadata is not None
        assert len(c.labels) == len(c.classify(cat_bmp).scores)
