"""Soak: 10,000 classifications in one process leak neither memory nor file descriptors.

The reference MobileNetV2 on a real photo: most iterations through ``Classifier.invoke`` on the
preprocessed array (the interpreter path), one in ten through ``classify`` on the encoded JPEG bytes
(decode + resize + invoke). After a warm-up (allocator pools, the first XNNPACK runs, lazy imports),
the resident set may not grow by 2 MB more, and the open file descriptors must be the same.
Set ``SKINEDGE_SOAK_N`` to run longer (the campaign figure in docs/reliability.md used 100,000).
"""

from __future__ import annotations

import gc
import os
from pathlib import Path

import numpy as np
import pytest

from skinedge import Classifier
from skinedge.errors import ImageError
from skinedge.preprocess import prepare
from skinedge.profiling import open_fds, rss_bytes

N = int(os.environ.get("SKINEDGE_SOAK_N", "10000"))
WARMUP = 300
BYTES_EVERY = 10  # one classification in ten goes through classify(bytes)
MAX_RSS_GROWTH = 2 * 1024 * 1024


@pytest.mark.slow  # about a minute on 2 cores; CI runs it (README's test command selects every test)
def test_soak_no_rss_growth_no_fd_leak(quant_model: Path, imagenet_labels: Path, reference_dir: Path) -> None:
    photo = (reference_dir / "images" / "cat_720p.jpg").read_bytes()
    broken = photo[: len(photo) // 3]  # typed-error path in the mix: errors must not leak either
    with Classifier(quant_model, labels=imagenet_labels) as clf:
        pixels = prepare(photo, clf.spec)
        expected = clf.invoke(pixels)
        expected_top = clf.classify(photo).index

        def one(i: int) -> None:
            if i % BYTES_EVERY == 0:
                assert clf.classify(photo).index == expected_top
            elif i % 997 == 0:
                with pytest.raises(ImageError):
                    clf.classify(broken)
            else:
                scores = clf.invoke(pixels)
                if i % 500 == 1:
                    assert np.array_equal(scores, expected)

        for i in range(WARMUP):
            one(i)
        gc.collect()
        rss0, fds0 = rss_bytes(), open_fds()
        samples = []
        for i in range(N):
            one(i)
            if i % 1000 == 999:
                samples.append(rss_bytes() - rss0)
        gc.collect()
        growth, fds1 = rss_bytes() - rss0, open_fds()
    print(f"soak: {N} classifications ({N // BYTES_EVERY} from bytes); RSS growth {growth / 1024:.0f} KiB, "
          f"samples (KiB) {[s // 1024 for s in samples]}; fds {fds0} -> {fds1}")
    assert growth < MAX_RSS_GROWTH, f"RSS grew by {growth} bytes over {N} classifications: {samples}"
    assert fds1 == fds0


def test_many_classifiers_created_and_closed(quant_model: Path, imagenet_labels: Path, cat_bmp: Path) -> None:
    """Loading and closing models repeatedly (a server reloading its model) releases them: fds and RSS."""
    pixels = prepare(cat_bmp)

    def cycle() -> None:
        with Classifier(quant_model, labels=imagenet_labels, num_threads=1) as clf:
            clf.invoke(pixels)

    for _ in range(5):
        cycle()
    gc.collect()
    rss0, fds0 = rss_bytes(), open_fds()
    for _ in range(40):
        cycle()
    gc.collect()
    assert open_fds() == fds0
    assert rss_bytes() - rss0 < 8 * MAX_RSS_GROWTH  # 40 loads of a 3.6 MB model: no model-sized growth each
