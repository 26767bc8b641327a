"""The Keras port of EfficientNet-Lite0 / Lite1 reproduces the original networks.

Known answers: ImageNet logits and pooled features computed with the original PyTorch model code on the
four reference images (../shared/reference-models/efficientnet-lite, its README states the preprocessing,
which is reproduced here exactly, not through skinedge's runtime preprocessing).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="the training tools need TensorFlow (pip install -e ./tools)")

from PIL import Image  # noqa: E402
from skinedge_tools import efficientnet_lite as lite  # noqa: E402
from skinedge_tools.model import backbone_of, build_model  # noqa: E402
from skinedge_tools.train import TrainConfig, load_trained, save_checkpoint  # noqa: E402

IMAGES = ("cat.bmp", "grace_hopper.bmp", "hot_dog.jpg", "cat_720p.jpg")  # the order of the known answers
VARIANTS = ("efficientnet-lite0", "efficientnet-lite1")
TOLERANCE = 1e-3  # float32 on different kernels and summation orders; a wrong port is off by far more


def _weights(weights_dir: Path, variant: str) -> Path:
    path = weights_dir / f"{variant}_imagenet_torch_state_dict.npz"
    if not path.exists():
        pytest.skip(f"{path} not found: this test needs ../shared/weights (or SKINEDGE_SHARED)")
    return path


def _reference_pixels(reference_dir: Path, size: int) -> np.ndarray:
    """The reference README's preprocessing: RGB, PIL bilinear resize to size x size (squash), float32.
    (The (x - 127) / 128 normalisation is the model's own first layer.)"""
    rows = []
    for name in IMAGES:
        with Image.open(reference_dir / "images" / name) as im:
            rows.append(np.asarray(im.convert("RGB").resize((size, size), Image.BILINEAR), dtype=np.float32))
    return np.stack(rows)


@pytest.fixture(scope="module", params=VARIANTS)
def port(request, reference_dir: Path, weights_dir: Path) -> dict:
    variant = request.param
    answers = reference_dir / "efficientnet-lite"
    short = variant.rsplit("-", 1)[1]  # lite0 / lite1
    logits, pooled = lite.imagenet_classifier(variant, _weights(weights_dir, variant))(
        _reference_pixels(reference_dir, lite.input_size(variant)), training=False
    )
    return {
        "variant": variant,
        "weights": _weights(weights_dir, variant),
        "logits": np.asarray(logits),
        "pooled": np.asarray(pooled),
        "ref_logits": np.load(answers / f"{short}_logits.npy"),
        "ref_pooled": np.load(answers / f"{short}_pooled_features.npy"),
        "known": json.loads((answers / "known_answers.json").read_text())[variant],
    }


def test_imagenet_logits_and_pooled_features_match_the_original_network(port):
    logit_err = np.abs(port["logits"] - port["ref_logits"]).max(axis=1)
    feature_err = np.abs(port["pooled"] - port["ref_pooled"]).max(axis=1)
    report = {n: (f"{a:.2e}", f"{b:.2e}") for n, a, b in zip(IMAGES, logit_err, feature_err)}
    assert (logit_err < TOLERANCE).all() and (feature_err < TOLERANCE).all(), f"{port['variant']}: {report}"


def test_top5_classes_and_probabilities_are_the_known_ones(port):
    z = port["logits"].astype(np.float64)
    probs = np.exp(z - z.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    for i, name in enumerate(IMAGES):
        top5 = port["known"]["images"][name]["top5"]
        assert np.argsort(-probs[i])[:5].tolist() == [t["class_index_1000"] for t in top5], name
        np.testing.assert_allclose(
            probs[i][[t["class_index_1000"] for t in top5]], [t["prob"] for t in top5], atol=1e-4
        )


def test_block_list_and_parameter_count_are_the_published_ones(port):
    with np.load(port["weights"]) as z:
        state = {k: z[k] for k in z.files}
    assert lite.block_args_from_state_dict(state) == lite.block_args(port["variant"])
    assert lite.build_backbone(port["variant"]).count_params() + 1280 * 1000 + 1000 == port["known"]["params"]


def test_skinedge_model_feeds_the_head_the_pretrained_feature_map(port, reference_dir: Path):
    """The classifier built for training has the same pooled features, read from a 4-D map before ``pool``
    (where class activation maps come from)."""
    import keras

    model = build_model(6, backbone=port["variant"], size=lite.input_size(port["variant"]), weights=port["weights"])
    assert len(model.get_layer("pool").input.shape) == 4
    assert model.get_layer("pool").input.shape[-1] == lite.HEAD_CHANNELS
    assert backbone_of(model).name == port["variant"].replace("-", "_")
    trunk = keras.Model(model.input, model.get_layer("pool").output)
    pooled = np.asarray(trunk(_reference_pixels(reference_dir, lite.input_size(port["variant"])), training=False))
    assert np.abs(pooled - port["ref_pooled"]).max() < TOLERANCE


def test_arrays_of_another_variant_are_refused(weights_dir: Path):
    backbone = lite.build_backbone("efficientnet-lite0")
    with pytest.raises(ValueError, match="do not match efficientnet-lite0"):
        lite.load_state_dict(backbone, "efficientnet-lite0", _weights(weights_dir, "efficientnet-lite1"))


def test_config_records_backbone_size_and_unfreeze_point_and_old_runs_read_as_mobilenetv2():
    cfg = TrainConfig(data_root="data", backbone="efficientnet-lite1")
    assert cfg.size == 240 and cfg.spec().height == cfg.spec().width == 240
    assert [s.unfreeze_from for s in cfg.stages] == [None, "block_9", "block_9"]
    assert TrainConfig.from_json(cfg.to_json()) == cfg
    old = json.loads(TrainConfig(data_root="data").to_json())
    del old["backbone"]  # a run recorded before the choice existed
    back = TrainConfig.from_json(json.dumps(old))
    assert back.backbone == "mobilenetv2" and back.size == 224
    assert [s.unfreeze_from for s in back.stages] == [None, "block_8", "block_8"]
    with pytest.raises(ValueError, match="unknown backbone"):
        TrainConfig(data_root="data", backbone="resnet50")


def test_checkpoint_round_trip_rebuilds_the_same_network(tmp_path: Path, weights_dir: Path):
    cfg = TrainConfig(data_root="data", backbone="efficientnet-lite0", size=64)
    model = build_model(6, backbone=cfg.backbone, size=64, weights=_weights(weights_dir, cfg.backbone))
    (tmp_path / "config.json").write_text(cfg.to_json())
    (tmp_path / "stage3").mkdir()
    save_checkpoint(model, cfg, tmp_path / "stage3" / "model.weights.h5")
    back, _ = load_trained(tmp_path)
    x = np.random.default_rng(0).integers(0, 256, size=(2, 64, 64, 3)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(back(x, training=False)), np.asarray(model(x, training=False)), atol=1e-6)
