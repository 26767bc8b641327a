"""Soak: 10,000 classifications in one process leak neither memory nor file descriptors.

Two real int8 models share the run: the reference MobileNetV2 on a real photo (500 classifications:
at 10-30 ms each on 2 slow, shared cores, all 10,000 would take minutes) and a small converter-made int8
image model from tests/data/valid_models (9,500, fast), so the per-call path (decode, resize,
set_tensor, invoke, dequantize, softmax, result objects, typed errors) runs 10,000 times in about half a
minute. Each model: 19 in 20 classifications through ``Classifier.invoke`` on the preprocessed array,
1 in 20 through ``classify`` on the encoded 720p JPEG, and every 97th a truncated JPEG (typed error).
After a warm-up of every path (allocator pools, XNNPACK's first runs, lazy imports), RSS may not grow
by 2 MB more, and the open file descriptors must be the same.

Longer runs: ``SKINEDGE_SOAK_REFERENCE_N`` and ``SKINEDGE_SOAK_SMALL_N`` set the two counts
(docs/reliability.md quotes a 10,000-classification run on the reference model alone).
"""

from __future__ import annotations

import ctypes
import gc
import os
from pathlib import Path

import numpy as np
import pytest

from skinedge import Classifier
from skinedge.errors import ImageError
from skinedge.preprocess import prepare
from skinedge.profiling import open_fds, rss_bytes

REFERENCE_N = int(os.environ.get("SKINEDGE_SOAK_REFERENCE_N", "500"))
SMALL_N = int(os.environ.get("SKINEDGE_SOAK_SMALL_N", "9500"))
SMALL_MODEL = Path(__file__).resolve().parent / "data" / "valid_models" / "image_int8_io_uint8.tflite"
WARMUP = 200
BYTES_EVERY = 20  # one classification in twenty goes through classify(bytes)
BROKEN_EVERY = 97
MAX_RSS_GROWTH = 2 * 1024 * 1024


def _settled_rss() -> int:
    """RSS after garbage collection and, on glibc, handing freed heap pages back (``malloc_trim``), so that a
    decoded photo's freed buffer still mapped by the allocator does not read as growth."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: plain RSS
        pass
    return rss_bytes()


class Loop:
    """One model's share of the soak: the same inputs over and over, checking the answers stay the same."""

    def __init__(self, clf: Classifier, photo: bytes) -> None:
        self.clf, self.photo, self.broken = clf, photo, photo[: len(photo) // 3]
        self.pixels = prepare(photo, clf.spec)
        self.expected = clf.invoke(self.pixels)
        self.expected_top = clf.classify(photo).index
        self.done = 0

    def one(self, i: int) -> None:
        if i % BYTES_EVERY == 0:
            assert self.clf.classify(self.photo).index == self.expected_top
        elif i % BROKEN_EVERY == 0:
            with pytest.raises(ImageError):
                self.clf.classify(self.broken)
        else:
            scores = self.clf.invoke(self.pixels)
            if i % 500 == 1:
                assert np.array_equal(scores, self.expected)
        self.done += 1


@pytest.mark.slow  # about half a minute on 2 cores; CI runs it (README's test command selects every test)
def test_soak_no_rss_growth_no_fd_leak(quant_model: Path, imagenet_labels: Path, reference_dir: Path) -> None:
    photo = (reference_dir / "images" / "cat_720p.jpg").read_bytes()
    with Classifier(quant_model, labels=imagenet_labels) as reference, Classifier(SMALL_MODEL) as small:
        loops = [(Loop(reference, photo), REFERENCE_N), (Loop(small, photo), SMALL_N)]
        for loop, _ in loops:
            for i in range(WARMUP):
                loop.one(i)
            loop.one(BROKEN_EVERY)  # the error path too
        rss0, fds0 = _settled_rss(), open_fds()
        samples = []
        for loop, n in loops:
            for i in range(n):
                loop.one(i)
                if i % 1000 == 999:
                    samples.append((_settled_rss() - rss0) // 1024)
        # Growth from the lowest point, so that memory freed early cannot hide a leak later.
        growth, fds1 = _settled_rss() - rss0 - min(0, *samples) * 1024, open_fds()
    total = REFERENCE_N + SMALL_N
    print(f"soak: {total} classifications ({REFERENCE_N} reference, {SMALL_N} small; 1 in {BYTES_EVERY} from bytes); "
          f"RSS growth {growth / 1024:.0f} KiB, samples (KiB) {samples}; open fds {fds0} -> {fds1}")
    assert total >= 10_000 or "SKINEDGE_SOAK_REFERENCE_N" in os.environ or "SKINEDGE_SOAK_SMALL_N" in os.environ
    assert growth < MAX_RSS_GROWTH, f"RSS grew by {growth} bytes over {total} classifications: {samples} KiB"
    assert fds1 == fds0


def test_many_classifiers_created_and_closed(quant_model: Path, imagenet_labels: Path, cat_bmp: Path) -> None:
    """Loading and closing models repeatedly (a server reloading its model) releases them: fds and RSS."""
    pixels = prepare(cat_bmp)

    def cycle() -> None:
        with Classifier(quant_model, labels=imagenet_labels, num_threads=1) as clf:
            clf.invoke(pixels)

    for _ in range(5):
        cycle()
    rss0, fds0 = _settled_rss(), open_fds()
    for _ in range(40):
        cycle()
    assert open_fds() == fds0
    assert _settled_rss() - rss0 < 8 * MAX_RSS_GROWTH  # 40 loads of a 3.6 MB model: no model-sized growth each
