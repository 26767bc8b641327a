"""Training configuration: the augmentation stack it builds, and that recorded runs read back faithfully."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="the training tools need TensorFlow (pip install -e ./tools)")

from skinedge_tools.model import augmenter  # noqa: E402
from skinedge_tools.train import TrainConfig  # noqa: E402


def _layer_types(seq) -> list[str]:
    return [type(layer).__name__ for layer in seq.layers]


def test_augmenter_adds_shift_and_contrast_only_when_asked():
    assert _layer_types(augmenter(0.1, 0.2)) == ["RandomFlip", "RandomRotation", "RandomZoom"]
    full = augmenter(0.1, 0.2, translate=0.1, contrast=0.2)
    assert _layer_types(full) == ["RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation", "RandomContrast"]


def test_augmenter_changes_pixels_in_training_only():
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 256, size=(4, 32, 32, 3)).astype(np.float32)
    aug = augmenter(0.1, 0.2, seed=3, translate=0.1, contrast=0.2)
    assert np.array_equal(np.asarray(aug(batch, training=False)), batch)
    out = np.asarray(aug(batch, training=True))
    assert out.shape == batch.shape and not np.allclose(out, batch)
    assert out.min() >= -1e-3 and out.max() <= 255 + 1e-3  # still pixel values for the model's Rescaling


def test_config_round_trips_and_old_runs_read_as_unaugmented():
    cfg = TrainConfig(data_root="data", translate=0.05, contrast=0.3)
    assert TrainConfig.from_json(cfg.to_json()) == cfg
    old = json.loads(cfg.to_json())
    del old["translate"], old["contrast"], old["source_augment"]  # a run recorded before these options existed
    for stage in old["stages"]:
        del stage["average_weights"]
    back = TrainConfig.from_json(json.dumps(old))
    assert back.translate == 0.0 and back.contrast == 0.0 and back.source_augment is False
    assert not any(s.average_weights for s in back.stages)


def test_a_refit_on_val_refuses_to_pick_checkpoints_on_what_it_trained_on():
    with pytest.raises(ValueError, match="fixed epochs"):
        TrainConfig(data_root="data", refit_on_val=True)  # the paper stages keep the best val epoch
    cfg = TrainConfig(data_root="data")
    for stage in cfg.stages:
        stage.keep_best, stage.early_stop_patience = None, None
    cfg.refit_on_val = True
    assert TrainConfig.from_json(cfg.to_json()).refit_on_val


def test_a_train_fraction_keeps_a_seeded_share_of_every_class():
    from skinedge_tools.data import Split
    from skinedge_tools.train import _fraction

    labels = np.repeat(np.arange(3), [10, 4, 1])
    split = Split(Path("root"), [f"p{i}" for i in range(len(labels))], labels)
    half = _fraction(split, 0.5, 3, seed=0)
    assert np.bincount(half.labels, minlength=3).tolist() == [5, 2, 1]  # rounded, never an empty class
    assert set(half.paths) <= set(split.paths) and half.paths == sorted(half.paths, key=split.paths.index)
    assert _fraction(split, 0.5, 3, seed=0).paths == half.paths and _fraction(split, 0.5, 3, seed=1).paths != half.paths


def test_teacher_probabilities_are_matched_to_photos_by_path(tmp_path):
    from skinedge_tools.train import _teacher_probs

    probs = np.asarray([[0.7, 0.3], [0.2, 0.8], [0.5, 0.5]], np.float32)
    np.savez(tmp_path / "t.npz", paths=np.asarray(["a.jpg", "b.jpg", "c.jpg"]), probs=probs)
    np.testing.assert_array_equal(_teacher_probs(str(tmp_path / "t.npz"), ["c.jpg", "a.jpg"], 2), probs[[2, 0]])
    with pytest.raises(ValueError, match="1 training photos missing"):
        _teacher_probs(str(tmp_path / "t.npz"), ["a.jpg", "z.jpg"], 2)
    with pytest.raises(ValueError, match="2 classes for 3"):
        _teacher_probs(str(tmp_path / "t.npz"), ["a.jpg"], 3)
