"""Concurrency: eight threads sharing one Classifier get exactly what one thread gets, and nothing deadlocks.

Every join has a timeout: a deadlock fails the test instead of hanging the suite.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from skinedge import Classifier
from skinedge.errors import ClassifierClosedError, ImageError, SkinedgeError
from skinedge.preprocess import prepare

THREADS = 8
JOIN_TIMEOUT_S = 180


@pytest.fixture(scope="module")
def clf(quant_model: Path, imagenet_labels: Path) -> Classifier:
    with Classifier(quant_model, labels=imagenet_labels, num_threads=2) as c:
        yield c


@pytest.fixture(scope="module")
def inputs(reference_dir: Path, skin6_dir: Path) -> list:
    """Real photos as paths, bytes and preprocessed arrays: 16 inputs."""
    images = sorted((reference_dir / "images").glob("*"))
    photos = sorted((skin6_dir / "test").rglob("*.jpg"))[::97][:6]
    out: list = [*images, *photos]
    out += [p.read_bytes() for p in photos[:3]]
    out += [prepare(p) for p in images[:3]]
    return out


def _run_threads(target, n: int = THREADS) -> list:
    results: list = [None] * n
    errors: list = []

    def wrap(i: int) -> None:
        try:
            results[i] = target(i)
        except BaseException as exc:  # reported to the test, not lost in the thread
            errors.append((i, exc))

    threads = [threading.Thread(target=wrap, args=(i,), name=f"worker-{i}", daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=JOIN_TIMEOUT_S)
    alive = [t.name for t in threads if t.is_alive()]
    assert not alive, f"deadlock: {alive} still running after {JOIN_TIMEOUT_S}s"
    assert not errors, errors
    return results


def test_eight_threads_match_one_thread(clf: Classifier, inputs: list) -> None:
    expected = [clf.classify(x).scores for x in inputs]
    start = threading.Barrier(THREADS, timeout=JOIN_TIMEOUT_S)

    def work(i: int) -> list[tuple[int, tuple[float, ...]]]:
        order = list(range(len(inputs)))
        order = order[i:] + order[:i]  # every thread in another order, so different inputs overlap
        start.wait()
        return [(k, clf.classify(inputs[k]).scores) for _ in range(2) for k in order]

    per_thread = _run_threads(work)
    assert sum(len(r) for r in per_thread) == THREADS * 2 * len(inputs)
    for results in per_thread:
        for k, scores in results:
            assert scores == expected[k], k


def test_threads_mixing_invoke_classify_and_batches(clf: Classifier, inputs: list, tmp_path: Path) -> None:
    """invoke, classify and iter_classify (its own decode pool, or its own interpreters) at once, with bad inputs
    mixed in."""
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    arrays = [x for x in inputs if isinstance(x, np.ndarray)]
    expected_invoke = [clf.invoke(a) for a in arrays]
    expected_batch = [clf.classify(x).scores for x in inputs]

    def work(i: int) -> int:
        if i % 3 == 0:
            for _ in range(4):
                for a, e in zip(arrays, expected_invoke, strict=True):
                    assert np.array_equal(clf.invoke(a), e)
        elif i % 3 == 1:  # half of them on the batch's single-thread interpreters, which all batches share
            more = {"interpreters": 2} if i % 2 else {"workers": 2}
            outcomes = list(clf.iter_classify([*inputs, bad], **more))
            assert [o.scores for o in outcomes[:-1]] == expected_batch
            assert isinstance(outcomes[-1], ImageError)
        else:
            for x in inputs:
                clf.classify(x)
            with pytest.raises(ImageError):
                clf.classify(bad)
        return i

    assert _run_threads(work) == list(range(THREADS))


def test_close_while_threads_classify(quant_model: Path, imagenet_labels: Path, inputs: list) -> None:
    """Closing a shared Classifier under load: every call either finishes or raises ClassifierClosedError."""
    shared = Classifier(quant_model, labels=imagenet_labels, num_threads=1)
    arrays = [x for x in inputs if isinstance(x, np.ndarray)]
    started = threading.Barrier(THREADS + 1, timeout=JOIN_TIMEOUT_S)
    done = [0] * THREADS

    def work(i: int) -> str:
        started.wait()
        for k in range(10_000):
            try:
                shared.invoke(arrays[k % len(arrays)])
                done[i] += 1
            except ClassifierClosedError as exc:  # typed, and still the RuntimeError it always was
                assert isinstance(exc, RuntimeError) and exc.reason == "Classifier is closed"
                return "closed"
        return "finished"

    results: list = []
    closer = threading.Thread(target=lambda: results.extend(_run_threads(work)), daemon=True)
    closer.start()
    started.wait()
    deadline = time.monotonic() + JOIN_TIMEOUT_S
    while sum(done) < 2 * THREADS and closer.is_alive() and time.monotonic() < deadline:  # let them get going
        time.sleep(0.01)
    shared.close()
    closer.join(timeout=JOIN_TIMEOUT_S)
    assert not closer.is_alive(), "deadlock after close()"
    assert results and all(r == "closed" for r in results), results
    with pytest.raises(RuntimeError, match="closed"):
        shared.invoke(arrays[0])


def test_one_classifier_per_thread(quant_model: Path, imagenet_labels: Path, inputs: list) -> None:
    """The documented route to parallel invokes: a Classifier per thread, created concurrently."""
    reference = Classifier(quant_model, labels=imagenet_labels, num_threads=1)
    expected = [reference.classify(x).scores for x in inputs[:6]]
    reference.close()

    def work(i: int) -> list:
        with Classifier(quant_model, labels=imagenet_labels, num_threads=1) as own:
            return [own.classify(x).scores for x in inputs[:6]]

    for got in _run_threads(work, 4):
        assert got == expected


def test_errors_from_threads_stay_typed(clf: Classifier, tmp_path: Path) -> None:
    missing = [tmp_path / f"missing-{i}.png" for i in range(THREADS)]

    def work(i: int) -> str:
        try:
            clf.classify(missing[i])
        except SkinedgeError as exc:
            return exc.reason
        return "no error"

    assert _run_threads(work) == ["no such file"] * THREADS
