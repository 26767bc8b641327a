"""The network: raw RGB pixels -> Rescaling -> backbone -> pooling -> dropout -> logits.

The backbone is MobileNetV2 (the paper's) or EfficientNet-Lite0 / Lite1 (``efficientnet_lite``); each ends
in a 4-D feature map, so every model reads class activation maps from the input of ``pool``.
The model takes float pixels in [0, 255] (what ``skinedge.preprocess`` produces, cast to float), so
the int8 export can take uint8 pixels directly: each backbone's input normalisation is in the graph.
Augmentation is not part of the model: it runs in the training input pipeline, so the trained model
*is* the exported model, with nothing to strip.
The head outputs logits; the runtime applies softmax with a calibration temperature.
"""

from __future__ import annotations

import os

import keras
from keras import layers

from skinedge_tools import efficientnet_lite

BACKBONE_NAME = "mobilenetv2"
#: The backbones ``build_model`` knows, in the order the CLI lists them.
BACKBONES = ("mobilenetv2", "efficientnet-lite0", "efficientnet-lite1")
DEFAULT_BACKBONE = "mobilenetv2"

# First layer trained in stages 2-3: the third block at 1/16 input resolution, where MobileNetV2's
# block_8 sits (it leaves ~94-95% of the convolution weights trainable in each; docs/method.md).
UNFREEZE_FROM = {"mobilenetv2": "block_8", "efficientnet-lite0": "block_7", "efficientnet-lite1": "block_9"}


def _check_backbone(backbone: str) -> None:
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; choose one of {', '.join(BACKBONES)}")


def native_size(backbone: str) -> int:
    """The input size the backbone was pretrained at (MobileNetV2 224, Lite0 224, Lite1 240)."""
    _check_backbone(backbone)
    return 224 if backbone == "mobilenetv2" else efficientnet_lite.input_size(backbone)


def _layer_name(backbone: str) -> str:
    return BACKBONE_NAME if backbone == "mobilenetv2" else backbone.replace("-", "_")


def build_model(
    num_classes: int,
    *,
    backbone: str = DEFAULT_BACKBONE,
    alpha: float = 1.0,
    size: int = 224,
    weights: str | os.PathLike | None = "imagenet",
    dropout: float = 0.2,
) -> keras.Model:
    """Build the classifier.

    ``weights``: for MobileNetV2 ``"imagenet"`` (Keras download), a local ``.h5`` file, or None; for
    EfficientNet-Lite the shared state-dict ``.npz`` (``../shared/weights``) or None. ``alpha`` is
    MobileNetV2's width (EfficientNet-Lite takes only 1.0).
    """
    _check_backbone(backbone)
    w = os.fspath(weights) if weights is not None else None
    if backbone == "mobilenetv2":
        local = w not in (None, "imagenet")
        net = keras.applications.MobileNetV2(
            input_shape=(size, size, 3), alpha=alpha, include_top=False, weights=None if local else w
        )
        if local:
            net.load_weights(w)
        rescale = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="to_minus1_1")
    else:
        if alpha != 1.0:
            raise ValueError(f"{backbone} has no width multiplier (alpha must be 1.0, got {alpha})")
        if w == "imagenet":
            raise ValueError(
                f"{backbone} has no Keras download: pass the ImageNet arrays, "
                f"e.g. ../shared/weights/{backbone}_imagenet_torch_state_dict.npz"
            )
        net = efficientnet_lite.build_backbone(backbone, size)
        if w is not None:
            efficientnet_lite.load_state_dict(net, backbone, w)
        rescale = efficientnet_lite.input_rescaling()
    net.name = _layer_name(backbone)
    inputs = keras.Input((size, size, 3), dtype="float32", name="pixels")
    x = rescale(inputs)
    # training=False keeps batch norm in inference mode even when layers are unfrozen: with ~2k
    # images, batch statistics of 32 augmented photos would wreck the ImageNet moving averages.
    x = net(x, training=False)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=f"skinedge_{net.name}")


def backbone_of(model: keras.Model) -> keras.Model:
    """The backbone sub-model of a model from :func:`build_model`, whichever backbone it has."""
    names = {_layer_name(b) for b in BACKBONES}
    return next(layer for layer in model.layers if layer.name in names)


def set_trainable_from(model: keras.Model, first_layer: str | None) -> int:
    """Freeze the backbone below ``first_layer`` (None: freeze it all); batch norm stays frozen.

    Returns the number of backbone layers left trainable.
    """
    backbone = backbone_of(model)
    names = [layer.name for layer in backbone.layers]
    start = (
        len(names) if first_layer is None else next((i for i, n in enumerate(names) if n.startswith(first_layer)), None)
    )
    if start is None:
        raise ValueError(f"no backbone layer starts with {first_layer!r}")
    backbone.trainable = True
    count = 0
    for i, layer in enumerate(backbone.layers):
        layer.trainable = i >= start and not isinstance(layer, layers.BatchNormalization)
        count += layer.trainable
    return count


def augmenter(
    rotation: float,
    zoom: float,
    flip: str = "horizontal_and_vertical",
    seed: int = 0,
    *,
    translate: float = 0.0,
    contrast: float = 0.0,
) -> keras.Sequential:
    """The paper's augmentation (flip, rotation, zoom), plus optional shifts and contrast jitter,
    applied to float pixel batches in [0, 255]."""
    steps = [
        layers.RandomFlip(flip, seed=seed),
        layers.RandomRotation(rotation, fill_mode="reflect", seed=seed + 1),
        layers.RandomZoom(zoom, fill_mode="reflect", seed=seed + 2),
    ]
    if translate:
        steps.append(layers.RandomTranslation(translate, translate, fill_mode="reflect", seed=seed + 3))
    if contrast:
        steps.append(layers.RandomContrast(contrast, seed=seed + 4))
    return keras.Sequential(steps, name="augment")
