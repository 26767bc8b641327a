"""What the tools name their files and how they draw the calibration photos, against what the runtime expects."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("skinedge_tools", reason="the training tools are not installed (pip install -e ./tools)")
from skinedge_tools.artifacts import artifact_names  # noqa: E402

from skinedge.model_io import BUNDLED_MODELS  # noqa: E402


@pytest.mark.parametrize("backbone", list(BUNDLED_MODELS))
def test_rebuild_names_its_int8_file_as_the_runtime_bundles_it(backbone: str) -> None:
    names = artifact_names(backbone)
    assert names["int8"] == BUNDLED_MODELS[backbone]
    stem = BUNDLED_MODELS[backbone].removesuffix("_int8.tflite")
    assert names == {"int8": f"{stem}_int8.tflite", "float32": f"{stem}_float32.tflite",
                     "report": f"{stem}_rebuild_report.json"}


def test_calibration_seed_draws_other_photos_in_the_same_class_proportions() -> None:
    pytest.importorskip("tensorflow", reason="skinedge_tools.quantize imports TensorFlow")
    from skinedge_tools.quantize import representative_sample

    y = np.repeat(np.arange(6), [300, 250, 200, 150, 100, 50])
    x = np.arange(len(y))  # each "image" is its own index: the sample says which photos it drew
    a, b, again = (representative_sample(x, y, 100, seed) for seed in (0, 1, 0))
    assert np.array_equal(a, again)  # seeded: the same draw every time
    assert not np.array_equal(a, b) and len(np.intersect1d(a, b)) < 50  # another seed, mostly other photos
    for s in (a, b):  # stratified: 100 photos in the classes' proportions (1,050 photos: 300/1050*100 = 28.6 -> 29)
        assert np.bincount(y[s], minlength=6).tolist() == [29, 24, 19, 14, 10, 5]
