"""The network: raw RGB pixels -> Rescaling -> MobileNetV2 backbone -> pooling -> dropout -> logits.

The model takes float pixels in [0, 255] (what ``skinedge.preprocess`` produces, cast to float), so
the int8 export can take uint8 pixels directly. Augmentation is not part of the model: it runs in the
training input pipeline, so the trained model *is* the exported model, with nothing to strip.
The head outputs logits; the runtime applies softmax with a calibration temperature.
"""

from __future__ import annotations

import os

import keras
from keras import layers

BACKBONE_NAME = "mobilenetv2"


def build_model(
    num_classes: int,
    *,
    alpha: float = 1.0,
    size: int = 224,
    weights: str | os.PathLike | None = "imagenet",
    dropout: float = 0.2,
) -> keras.Model:
    """Build the classifier. ``weights`` is ``"imagenet"`` (Keras download), a local ``.h5`` file, or None."""
    w = os.fspath(weights) if weights is not None else None
    local = w not in (None, "imagenet")
    backbone = keras.applications.MobileNetV2(
        input_shape=(size, size, 3), alpha=alpha, include_top=False, weights=None if local else w
    )
    if local:
        backbone.load_weights(w)
    backbone.name = BACKBONE_NAME
    inputs = keras.Input((size, size, 3), dtype="float32", name="pixels")
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="to_minus1_1")(inputs)
    # training=False keeps batch norm in inference mode even when layers are unfrozen: with ~2k
    # images, batch statistics of 32 augmented photos would wreck the ImageNet moving averages.
    x = backbone(x, training=False)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name="skinedge_mobilenetv2")


def backbone_of(model: keras.Model) -> keras.Model:
    return model.get_layer(BACKBONE_NAME)


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
