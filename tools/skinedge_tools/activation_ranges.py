"""MSE-optimal activation ranges for int8 post-training quantization.

The TFLite converter quantizes each activation tensor over the min and max it saw on the calibration
images. A few extreme values then stretch the 256 levels over a range most values never use:
MobileNetV2's linear bottlenecks (the ``project`` outputs and residual adds) span tens of units while
most of their values sit near zero. Shrinking a tensor's range clips those rare values but quantizes
all the others more finely; for each tensor we keep the range (the observed one scaled by a factor in
[0.3, 1]) with the lowest mean squared quantization error over sampled calibration activations, the
criterion TensorRT's and OpenVINO's MSE calibrators use.

Mechanics: convert in calibration-only mode (a float graph annotated with the observed min/max),
record activations by running that graph, rewrite the min/max, then let the converter's own
quantizer (``mlir_quantize``, the same call ``TFLiteConverter`` makes) produce the int8 graph. The
model's input (raw pixels) and output (logits) keep their observed ranges.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from tensorflow.lite.python import convert as tf_convert
from tensorflow.lite.tools import flatbuffer_utils

from skinedge.backend import invoke_once

#: Candidate shrink factors for each tensor's observed range (1.0: keep it).
SHRINK_FACTORS = tuple(float(a) for a in np.linspace(0.3, 1.0, 15))


def quantize_with_mse_ranges(
    converter: tf.lite.TFLiteConverter,
    images: np.ndarray,
    *,
    sample_images: int = 48,
    values_per_image: int = 20_000,
    seed: int = 0,
) -> tuple[bytes, dict[str, float]]:
    """Full-integer int8 conversion with MSE-chosen activation ranges.

    ``converter`` is set up for full-integer conversion (representative data, int8 ops, input and
    output types); ``images`` are calibration inputs in the model's input format, of which a seeded
    ``sample_images`` are replayed to record activations. Returns the int8 flatbuffer and, per tensor
    whose range changed, the factor applied.
    """
    converter._experimental_calibrate_only = True  # noqa: SLF001 (the QuantizationDebugger's path)
    calibrated = converter.convert()
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(calibrated))
    (graph,) = model.subgraphs
    ends = {int(i) for i in graph.inputs} | {int(i) for i in graph.outputs}
    ranged = [
        i
        for i, t in enumerate(graph.tensors)
        if i not in ends and t.quantization is not None and t.quantization.min is not None
        and len(t.quantization.min) == 1
    ]  # fmt: skip
    samples = _record(calibrated, ranged, images, sample_images, values_per_image, seed)
    chosen: dict[str, float] = {}
    for i in ranged:
        tensor = graph.tensors[i]
        lo, hi = float(tensor.quantization.min[0]), float(tensor.quantization.max[0])
        factor = best_shrink(samples[i], lo, hi)
        if factor < 1.0:
            tensor.quantization.min = np.asarray([lo * factor], dtype=np.float32)
            tensor.quantization.max = np.asarray([hi * factor], dtype=np.float32)
            name = tensor.name.decode() if isinstance(tensor.name, bytes) else str(tensor.name)
            chosen[name] = factor
    patched = bytes(flatbuffer_utils.convert_object_to_bytearray(model))
    flat = tf_convert.mlir_quantize(
        patched,
        converter._experimental_disable_per_channel,  # noqa: SLF001
        input_data_type=converter.inference_input_type,
        output_data_type=converter.inference_output_type,
    )
    return flat, chosen


def best_shrink(values: np.ndarray, lo: float, hi: float, factors: tuple[float, ...] = SHRINK_FACTORS) -> float:
    """The factor whose scaled range ``[lo*f, hi*f]`` quantizes ``values`` to int8 with the least MSE."""
    x = values.astype(np.float64)
    scratch = np.empty_like(x)
    errors = [_quantization_mse(x, lo * f, hi * f, scratch) for f in factors]
    return factors[int(np.argmin(errors))]


def _quantization_mse(x: np.ndarray, lo: float, hi: float, scratch: np.ndarray) -> float:
    """``mean((fake_quant_int8(x, lo, hi) - x) ** 2)``, the same operations in place in ``scratch``."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = (hi - lo) / 255.0
    if scale == 0.0:
        return 0.0
    zero = np.round(-128 - lo / scale)
    q = np.divide(x, scale, out=scratch)
    np.round(q, out=q)
    q += zero
    np.clip(q, -128, 127, out=q)
    q -= zero
    q *= scale
    q -= x
    np.square(q, out=q)
    return float(np.mean(q))


def fake_quant_int8(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``x`` quantized to asymmetric int8 over ``[lo, hi]`` (widened to include 0, as TFLite does)."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = (hi - lo) / 255.0
    if scale == 0.0:
        return x.copy()
    zero = np.round(-128 - lo / scale)
    return (np.clip(np.round(x / scale) + zero, -128, 127) - zero) * scale


def _record(
    calibrated: bytes, tensors: list[int], images: np.ndarray, n_images: int, per_image: int, seed: int
) -> dict[int, np.ndarray]:
    """Sampled values of ``tensors`` while the calibrated float graph runs on some of ``images``."""
    # Reference kernels: a delegate (XNNPACK) would compute its partition internally and leave the
    # intermediate tensors undefined, preserve_all_tensors or not.
    interpreter = tf.lite.Interpreter(
        model_content=calibrated,
        experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        experimental_preserve_all_tensors=True,
    )
    interpreter.allocate_tensors()
    index = interpreter.get_input_details()[0]["index"]
    rng = np.random.default_rng(seed)
    picked = images[np.sort(rng.choice(len(images), size=min(n_images, len(images)), replace=False))]
    found: dict[int, list[np.ndarray]] = {i: [] for i in tensors}
    for image in picked:
        values = invoke_once(interpreter, ((index, image[None].astype(np.float32)),), tensors)
        for i, v in zip(tensors, values, strict=True):
            v = v.reshape(-1)
            found[i].append(v[rng.integers(0, v.size, per_image)] if v.size > per_image else v)
    return {i: np.concatenate(v) for i, v in found.items()}
