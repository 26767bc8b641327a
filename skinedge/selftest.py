"""``skinedge selftest``: does this board compute what the build machine computed?

The model's metadata archive carries test vectors recorded when the model was built:
``selftest/vectors.json`` (expected raw output tensors) and ``selftest/<i>.png`` (the exact
preprocessed inputs, lossless). Running them through the local interpreter and comparing the raw
outputs checks the interpreter, its kernels and the model bytes in one go, without any photo.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import numpy as np
from PIL import Image

from skinedge.errors import MetadataError

VECTORS_NAME = "selftest/vectors.json"


@dataclass(frozen=True)
class VectorCheck:
    """One test vector: how far the local raw output is from the recorded one, in quantization steps."""

    name: str
    max_step_diff: float
    top1_expected: int
    top1_got: int

    @property
    def passed(self) -> bool:
        return self.top1_expected == self.top1_got and self.max_step_diff <= SELFTEST_TOLERANCE_STEPS


#: Outputs may differ by one quantization step between CPU kernels (rounding in requantization).
SELFTEST_TOLERANCE_STEPS = 1.0


def encode_vectors(inputs: list[np.ndarray], raw_outputs: list[np.ndarray], output_scale: float) -> dict[str, bytes]:
    """Files to pack into a model's metadata archive (used by the build tools).

    ``output_scale`` is one "step": the output tensor's quantization scale for int8/uint8 outputs,
    or, for float outputs, how far one quantization step of the computation moves them.
    """
    files: dict[str, bytes] = {}
    entries = []
    for i, (x, y) in enumerate(zip(inputs, raw_outputs)):
        buf = io.BytesIO()
        Image.fromarray(x, "RGB").save(buf, "PNG", optimize=False, compress_level=9)
        files[f"selftest/{i}.png"] = buf.getvalue()
        entries.append({"input": f"selftest/{i}.png", "raw_output": np.asarray(y).reshape(-1).tolist()})
    files[VECTORS_NAME] = json.dumps({"output_scale": output_scale, "vectors": entries}, indent=1).encode()
    return files


def decode_vectors(files: dict[str, bytes], source: str) -> tuple[float, list[tuple[str, np.ndarray, np.ndarray]]]:
    """The recorded step size, and (name, input pixels, expected raw output) for each vector."""
    if VECTORS_NAME not in files:
        raise MetadataError(source, "model carries no self-test vectors")
    try:
        spec = json.loads(files[VECTORS_NAME])
        step = float(spec.get("output_scale") or 1.0)
        if not step > 0:
            raise ValueError(f"output_scale {step} is not positive")
        out = []
        for entry in spec["vectors"]:
            pixels = np.asarray(Image.open(io.BytesIO(files[entry["input"]])).convert("RGB"), dtype=np.uint8)
            out.append((entry["input"], pixels, np.asarray(entry["raw_output"], dtype=np.float64)))
        return step, out
    except (KeyError, ValueError, TypeError, OSError) as exc:
        raise MetadataError(source, f"malformed self-test vectors ({type(exc).__name__}: {exc})") from None


def run_selftest(classifier, files: dict[str, bytes]) -> list[VectorCheck]:
    """Run every recorded vector through ``classifier``'s interpreter and compare raw outputs."""
    results = []
    scale, zero = classifier.output_details["quantization"]
    step, vectors = decode_vectors(files, str(classifier.model_path))
    for name, pixels, expected in vectors:
        got = classifier.raw_output(pixels)
        if scale:  # quantized output: compare the integers the interpreter produced
            got_raw, unit = np.round(got / scale + zero), 1.0
        else:  # float output: compare values, in recorded steps
            got_raw, unit = got.astype(np.float64), step
        same_shape = got_raw.shape == expected.shape
        diff = float(np.max(np.abs(got_raw - expected)) / unit) if same_shape else float("inf")
        results.append(VectorCheck(name, diff, int(np.argmax(expected)), int(np.argmax(got_raw))))
    return results
