"""EfficientNet-Lite0 / Lite1 in Keras, loaded from PyTorch state-dict arrays (``.npz``) without PyTorch.

EfficientNet-Lite is EfficientNet with what int8 mobile CPUs dislike taken out: ReLU6 instead of swish, no
squeeze-and-excitation, and a stem (3x3 stride-2 conv, 32 channels) and head (1x1 conv, 1280 channels)
that stay fixed when the network is scaled. Lite0 and Lite1 have the same channels (width 1.0); Lite1 is
deeper (depth 1.1) and runs at 240x240. Padding is TensorFlow's SAME, batch norm epsilon 1e-3, and the
network expects ``(x - 127) / 128`` of RGB pixels in 0..255 (:func:`input_rescaling`, which lives in the
graph so that the runtime feeds raw pixels, as with MobileNetV2).

The block list is EfficientNet-B0's seven stages scaled by Lite's rules (:func:`block_args`);
:func:`load_state_dict` derives the same list from the arrays' keys and shapes
(:func:`block_args_from_state_dict`) and refuses a file that disagrees, so a wrong guess cannot load.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import keras
import numpy as np
from keras import layers

#: Name of each variant -> (input size, depth multiplier). Width is 1.0 for both.
VARIANTS: dict[str, tuple[int, float]] = {"efficientnet-lite0": (224, 1.0), "efficientnet-lite1": (240, 1.1)}

# EfficientNet-B0's stages: (kernel, stride of the first block, expansion ratio, output channels, repeats).
_B0_STAGES = ((3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2), (3, 2, 6, 80, 3), (5, 1, 6, 112, 3),
              (5, 2, 6, 192, 4), (3, 1, 6, 320, 1))  # fmt: skip
STEM_CHANNELS, HEAD_CHANNELS = 32, 1280
BN_EPSILON = 1e-3


@dataclass(frozen=True)
class BlockArgs:
    """One MBConv block: 1x1 expand (absent when ``expanded == in_channels``), depthwise, 1x1 project."""

    in_channels: int
    expanded: int
    out_channels: int
    kernel: int
    stride: int

    @property
    def residual(self) -> bool:
        return self.stride == 1 and self.in_channels == self.out_channels


def _check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}; known: {sorted(VARIANTS)}")


def input_size(variant: str) -> int:
    """The variant's native input size in pixels (square)."""
    _check_variant(variant)
    return VARIANTS[variant][0]


def block_args(variant: str) -> list[BlockArgs]:
    """The variant's blocks: B0's stages, repeats scaled by ``ceil(depth * r)`` except the first and last
    stage, which Lite keeps at one block (its fixed stem and head)."""
    _check_variant(variant)
    depth = VARIANTS[variant][1]
    blocks, channels = [], STEM_CHANNELS
    for i, (kernel, stride, ratio, out, repeats) in enumerate(_B0_STAGES):
        n = repeats if i in (0, len(_B0_STAGES) - 1) else int(math.ceil(depth * repeats))
        for j in range(n):
            blocks.append(BlockArgs(channels, channels * ratio, out, kernel, stride if j == 0 else 1))
            channels = out
    return blocks


def block_args_from_state_dict(state: dict[str, np.ndarray]) -> list[BlockArgs]:
    """The block list the arrays describe: channels and kernels from the shapes; a new stage starts where
    the output channels change, and its first block takes that stage's stride in B0 (strides have no
    weights, so they are the one thing the arrays cannot tell)."""
    n = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("_blocks."))
    blocks, prev_out, stage = [], None, -1
    for i in range(n):
        p = f"_blocks.{i}."
        dw = state[p + "_depthwise_conv.weight"]  # (expanded, 1, k, k)
        proj = state[p + "_project_conv.weight"]  # (out, expanded, 1, 1)
        expanded, out = int(dw.shape[0]), int(proj.shape[0])
        in_ch = int(state[p + "_expand_conv.weight"].shape[1]) if p + "_expand_conv.weight" in state else expanded
        first = out != prev_out
        stage += first
        if stage >= len(_B0_STAGES):
            raise ValueError(f"block {i}: more stages than EfficientNet's {len(_B0_STAGES)}")
        blocks.append(BlockArgs(in_ch, expanded, out, int(dw.shape[2]), _B0_STAGES[stage][1] if first else 1))
        prev_out = out
    return blocks


def input_rescaling(name: str = "to_minus1_1") -> layers.Rescaling:
    """``(x - 127) / 128`` on float pixels in [0, 255]: exact in float32 (1/128 and 127/128 are binary)."""
    return layers.Rescaling(1.0 / 128.0, offset=-127.0 / 128.0, name=name)


def build_backbone(variant: str, size: int | None = None, name: str | None = None) -> keras.Model:
    """The convolutional network without its classifier: normalised pixels -> 1280-channel feature map
    (ReLU6 after the head's batch norm), randomly initialised. Layer names follow Keras' MobileNetV2
    (``block_{i}_expand``, ``block_{i}_depthwise_BN``, ...) so that stages unfreeze by prefix the same way."""
    size = size or input_size(variant)
    inputs = keras.Input((size, size, 3), dtype="float32", name="normalised_pixels")

    def conv_bn(x, filters, kernel, stride, prefix, act=True, depthwise=False):
        if depthwise:
            x = layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False, name=prefix)(x)
        else:
            x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, name=prefix)(x)
        x = layers.BatchNormalization(epsilon=BN_EPSILON, name=prefix + "_BN")(x)
        return layers.ReLU(6.0, name=prefix + "_relu")(x) if act else x

    x = conv_bn(inputs, STEM_CHANNELS, 3, 2, "stem")
    for i, b in enumerate(block_args(variant)):
        p = f"block_{i}_"
        y = x if b.expanded == b.in_channels else conv_bn(x, b.expanded, 1, 1, p + "expand")
        y = conv_bn(y, None, b.kernel, b.stride, p + "depthwise", depthwise=True)
        y = conv_bn(y, b.out_channels, 1, 1, p + "project", act=False)
        # Inference has no drop-connect: the residual is a plain add.
        x = layers.Add(name=p + "add")([x, y]) if b.residual else y
    x = conv_bn(x, HEAD_CHANNELS, 1, 1, "head")
    return keras.Model(inputs, x, name=name or variant.replace("-", "_"))


def _read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    with np.load(os.fspath(path), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _torch_prefix(keras_name: str) -> str:
    """Keras convolution name -> state-dict key prefix (``block_3_depthwise`` -> ``_blocks.3._depthwise_conv``)."""
    if keras_name == "stem":
        return "_conv_stem"
    if keras_name == "head":
        return "_conv_head"
    i, part = keras_name[len("block_") :].split("_", 1)
    return f"_blocks.{i}._{part}_conv"


# The batch norm after each convolution, in the state dict's names.
_BN_OF = {"_conv_stem": "_bn0", "_conv_head": "_bn1"}
_BLOCK_BN = {"_expand_conv": "_bn0", "_depthwise_conv": "_bn1", "_project_conv": "_bn2"}


def _bn_prefix(conv_prefix: str) -> str:
    """``_blocks.3._depthwise_conv`` -> ``_blocks.3._bn1``; stem and head have their own names."""
    if conv_prefix in _BN_OF:
        return _BN_OF[conv_prefix]
    head, part = conv_prefix.rsplit(".", 1)
    return f"{head}.{_BLOCK_BN[part]}"


def load_state_dict(backbone: keras.Model, variant: str, path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Load the ImageNet arrays of ``path`` into ``backbone`` (from :func:`build_backbone`).

    Kernels go from PyTorch's ``(out, in/groups, kh, kw)`` to Keras' ``(kh, kw, in, out)`` (depthwise:
    ``(kh, kw, in, 1)``). Every array must be used and every layer filled, or ``ValueError`` says which.
    Returns the arrays not part of the backbone (the ImageNet classifier ``_fc.*``).
    """
    state = _read_npz(path)
    derived, expected = block_args_from_state_dict(state), block_args(variant)
    if derived != expected:
        raise ValueError(f"{path}: its blocks do not match {variant}: {derived} != {expected}")
    used = set()
    for layer in backbone.layers:
        if isinstance(layer, layers.BatchNormalization):
            prefix = _bn_prefix(_torch_prefix(layer.name[: -len("_BN")]))
            keys = [f"{prefix}.{s}" for s in ("weight", "bias", "running_mean", "running_var")]
            values = [state[k] for k in keys]
        elif isinstance(layer, (layers.Conv2D, layers.DepthwiseConv2D)):
            keys = [_torch_prefix(layer.name) + ".weight"]
            w = state[keys[0]]
            values = [w.transpose(2, 3, 0, 1) if isinstance(layer, layers.DepthwiseConv2D) else w.transpose(2, 3, 1, 0)]
        else:
            continue
        shapes = [tuple(v.shape) for v in layer.get_weights()]
        if shapes != [v.shape for v in values]:
            raise ValueError(f"{path}: {keys} have shapes {[v.shape for v in values]}, layer {layer.name} {shapes}")
        layer.set_weights(values)
        used.update(keys)
    left = {k: v for k, v in state.items() if k not in used and not k.endswith("num_batches_tracked")}
    if set(left) != {"_fc.weight", "_fc.bias"}:
        raise ValueError(f"{path}: arrays not used by {variant}: {sorted(set(left) - {'_fc.weight', '_fc.bias'})}")
    return left


def imagenet_classifier(variant: str, path: str | os.PathLike) -> keras.Model:
    """The full ImageNet network (for checking the port): float pixels [0, 255] -> ``[logits (1000),
    pooled features (1280)]``, with the same rescaling and backbone the skinedge classifier uses."""
    backbone = build_backbone(variant)
    fc = load_state_dict(backbone, variant, path)
    size = input_size(variant)
    inputs = keras.Input((size, size, 3), dtype="float32", name="pixels")
    pooled = layers.GlobalAveragePooling2D(name="pool")(backbone(input_rescaling()(inputs), training=False))
    dense = layers.Dense(fc["_fc.weight"].shape[0], name="imagenet_logits")
    logits = dense(pooled)
    dense.set_weights([fc["_fc.weight"].T, fc["_fc.bias"]])
    return keras.Model(inputs, [logits, pooled], name=f"{backbone.name}_imagenet")
