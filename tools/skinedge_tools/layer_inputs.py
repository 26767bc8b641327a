"""Statistics of layer inputs over calibration images, in one batched pass of the float Keras model."""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np

from skinedge_tools.int8_grid import all_layers


def sum_over_layer_inputs(
    model: keras.Model,
    layers: list,
    images: np.ndarray,
    batch_size: int,
    reduce: Callable[..., tuple],
    group_size: int | None = None,
) -> list[tuple]:
    """Run ``images`` through the float model once, in batches, and sum ``reduce(layer, x)`` per layer.

    ``x`` is a group of ``group_size`` consecutive images' inputs to ``layer`` (float32; default: the whole
    batch); ``reduce`` returns a tuple of arrays, summed element by element over groups, in order. Groups
    let a statistic keep its own summation (GPTQ sums moments over 8 images) while the model runs in
    larger batches, which run faster (on the build machine an image's layer inputs are bit-identical
    whatever batch it ran in; another CPU may differ in the last bits, as its rebuild does anyway). Reduce
    in float64: ``x.sum(axis=0, dtype=np.float64)`` adds exactly what a float64 copy would, without making
    it. One pass serves every statistic a caller needs.
    """
    (pixels,) = model.inputs  # one image input, as in every model this project builds
    probe = keras.Model(pixels, symbolic_inputs(model, layers))
    group_size = group_size or batch_size
    if batch_size % group_size:
        raise ValueError(f"batch_size {batch_size} is not a multiple of group_size {group_size}")
    sums: list[tuple] | None = None
    for start in range(0, len(images), batch_size):
        outs = [np.asarray(o) for o in probe(images[start : start + batch_size].astype(np.float32), training=False)]
        for g in range(0, len(outs[0]), group_size):
            group = [reduce(layer, o[g : g + group_size]) for layer, o in zip(layers, outs, strict=True)]
            sums = group if sums is None else [tuple(a + b for a, b in zip(s, t)) for s, t in zip(sums, group)]
    if sums is None:
        raise ValueError("needs at least one calibration image")
    return sums


def mean_over_images(x: np.ndarray) -> tuple[np.ndarray]:
    """A ``reduce`` for :func:`sum_over_layer_inputs`: the batch's sum, per position and channel, in float64."""
    return (x.sum(axis=0, dtype=np.float64),)


def symbolic_inputs(model: keras.Model, layers: list) -> list:
    """Each of ``layers``' inputs as a tensor of ``model``'s graph, reaching into nested sub-models."""
    out: dict[int, object] = {id(layer): layer.input for layer in layers if layer in model.layers}
    for sub in model.layers:
        if not isinstance(sub, keras.Model):
            continue
        inner = [layer for layer in layers if layer in all_layers(sub)]
        if inner:
            sub_probe = keras.Model(sub.inputs, symbolic_inputs(sub, inner))
            tensors = sub_probe(sub._inbound_nodes[0].input_tensors[0])
            out.update({id(layer): t for layer, t in zip(inner, tensors, strict=True)})
    return [out[id(layer)] for layer in layers]
