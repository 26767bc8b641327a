"""The things compared: interpreter engines (invoke only) and photo-to-label pipelines.

Every import of a backend is lazy, so this module works in each benchmark venv (LiteRT with numpy 2,
tflite-runtime 2.14 with numpy 1.x, ONNX Runtime, MediaPipe). All of them run the same model file
(or its tf2onnx conversion), on the same images, with the same thread count.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

INPUT_SIZE = (224, 224)


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000


# -- preprocessing the way a plain script does it ----------------------------------------------


def naive_pixels(path: str | Path) -> tuple[np.ndarray, float, float]:
    """What users write: PIL full-resolution decode, RGB, bilinear resize to 224x224 (no JPEG draft)."""
    from PIL import Image

    t0 = time.perf_counter()
    img = Image.open(path).convert("RGB")  # convert() forces the full decode
    t1 = time.perf_counter()
    pixels = np.asarray(img.resize(INPUT_SIZE, Image.Resampling.BILINEAR), dtype=np.uint8)
    return pixels, (t1 - t0) * 1000, _ms(t1)


def to_input(pixels: np.ndarray, dtype: Any, norm: tuple[float, float] = (127.5, 127.5)) -> np.ndarray:
    """A 224x224x3 uint8 image as the model's input tensor (batch of one).

    Deliberately not ``skinedge.preprocess.to_input_tensor``: this is the plain script's own conversion, an
    independent contender (and the ONNX / MediaPipe / tflite-runtime venvs it runs in need not have skinedge).
    """
    dtype = np.dtype(dtype)
    if dtype == np.uint8:
        x = pixels
    elif dtype == np.int8:
        x = (pixels.astype(np.int16) - 128).astype(np.int8)
    else:
        x = (pixels.astype(np.float32) - norm[0]) / norm[1]
    return np.ascontiguousarray(x[np.newaxis])


# -- engines: one model, one thread count, invoke on a prepared tensor -------------------------


class TfliteEngine:
    """A TFLite interpreter from ``litert`` (ai_edge_litert), ``tflite_runtime`` or ``tensorflow``."""

    def __init__(self, package: str, model: str | Path, threads: int, xnnpack: bool = True) -> None:
        if package == "litert":
            from ai_edge_litert import interpreter as mod

            resolver = mod.OpResolverType
            import ai_edge_litert as top
        elif package == "tflite_runtime":
            from tflite_runtime import interpreter as mod

            resolver = mod.OpResolverType
            import tflite_runtime as top
        elif package == "tensorflow":
            import tensorflow as top

            mod = top.lite
            resolver = top.lite.experimental.OpResolverType
        else:
            raise ValueError(package)
        kwargs = {} if xnnpack else {"experimental_op_resolver_type": resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
        self.interpreter = mod.Interpreter(model_path=str(model), num_threads=threads, **kwargs)
        self.interpreter.allocate_tensors()
        self.inp = self.interpreter.get_input_details()[0]
        self.out = self.interpreter.get_output_details()[0]
        self.dtype = np.dtype(self.inp["dtype"])
        self.version = f"{package} {getattr(top, '__version__', '?')}"
        ops = self.interpreter._get_ops_details()
        self.delegated = any(op.get("op_name") == "DELEGATE" for op in ops)

    def set(self, x: np.ndarray) -> None:
        self.interpreter.set_tensor(self.inp["index"], x)

    def invoke(self) -> None:
        self.interpreter.invoke()

    def run(self, x: np.ndarray) -> np.ndarray:
        self.interpreter.set_tensor(self.inp["index"], x)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.out["index"])


class OrtEngine:
    """ONNX Runtime, CPU execution provider, ``threads`` intra-op threads, all graph optimizations."""

    def __init__(self, model: str | Path, threads: int) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
        i = self.session.get_inputs()[0]
        self.name = i.name
        self.dtype = np.dtype({"tensor(uint8)": np.uint8, "tensor(int8)": np.int8}.get(i.type, np.float32))
        self.version = f"onnxruntime {ort.__version__}"
        self.delegated = False
        self._x: np.ndarray | None = None

    def set(self, x: np.ndarray) -> None:
        self._x = x

    def invoke(self) -> None:
        self.session.run(None, {self.name: self._x})

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.name: x})[0]


class SkinedgeEngine:
    """``Classifier.invoke`` on a preprocessed array (quantize, invoke, dequantize, softmax)."""

    def __init__(self, model: str | Path, threads: int, backend: str | None = None) -> None:
        from skinedge import Classifier

        self.clf = Classifier(model, num_threads=threads, backend=backend, verify=False)
        self.dtype = np.dtype(np.uint8)  # takes the uint8 image; converts itself
        self.version = f"skinedge on {self.clf.backend.package} {self.clf.backend.version}"
        self.delegated = self.clf.delegated
        self._x: np.ndarray | None = None

    def set(self, x: np.ndarray) -> None:
        self._x = x[0]

    def invoke(self) -> None:
        self.clf.invoke(self._x)

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.clf.invoke(x[0])


def make_engine(name: str, model: str | Path, threads: int) -> Any:
    """``litert``, ``litert-noxnn``, ``tflite_runtime``, ``tflite_runtime-noxnn``, ``tensorflow``,
    ``tensorflow-noxnn``, ``onnxruntime``, ``skinedge``, ``skinedge-tflite_runtime``."""
    if name == "onnxruntime":
        return OrtEngine(model, threads)
    if name.startswith("skinedge"):
        return SkinedgeEngine(model, threads, backend=name.split("-", 1)[1] if "-" in name else None)
    package, _, variant = name.partition("-")
    return TfliteEngine(package, model, threads, xnnpack=variant != "noxnn")


# -- photo-to-label pipelines ------------------------------------------------------------------


class Pipeline:
    """``label(path)`` returns ``(top-1 index, {"decode", "preprocess", "invoke"} ms)``."""

    version = ""

    def label(self, path: str | Path) -> tuple[int, dict[str, float]]:
        raise NotImplementedError


class SkinedgePipeline(Pipeline):
    def __init__(self, model: str | Path, threads: int, **_: Any) -> None:
        from skinedge import Classifier

        self.clf = Classifier(model, num_threads=threads)
        self.version = f"skinedge on {self.clf.backend.package} {self.clf.backend.version}"

    def label(self, path: str | Path) -> tuple[int, dict[str, float]]:
        r = self.clf.classify(path)
        t = r.timings
        return r.index, {"decode": t.decode_ms, "preprocess": t.preprocess_ms, "invoke": t.invoke_ms}


class NaivePipeline(Pipeline):
    """PIL full decode + resize, then an interpreter (or ONNX Runtime) and argmax."""

    def __init__(self, model: str | Path, threads: int, engine: str = "litert",
                 norm: tuple[float, float] = (127.5, 127.5), **_: Any) -> None:
        self.engine = make_engine(engine, model, threads)
        self.norm = norm
        self.version = self.engine.version

    def label(self, path: str | Path) -> tuple[int, dict[str, float]]:
        pixels, decode_ms, resize_ms = naive_pixels(path)
        t0 = time.perf_counter()
        x = to_input(pixels, self.engine.dtype, self.norm)
        out = self.engine.run(x)
        top = int(np.argmax(out.reshape(-1)))
        return top, {"decode": decode_ms, "preprocess": resize_ms, "invoke": _ms(t0)}


class TensorflowPipeline(Pipeline):
    """The TensorFlow way: tf.io decode, tf.image.resize (bilinear), tf.lite.Interpreter."""

    def __init__(self, model: str | Path, threads: int, norm: tuple[float, float] = (127.5, 127.5), **_: Any) -> None:
        import tensorflow as tf

        self.tf = tf
        self.engine = TfliteEngine("tensorflow", model, threads)
        self.norm = norm
        self.version = self.engine.version

    def label(self, path: str | Path) -> tuple[int, dict[str, float]]:
        tf = self.tf
        t0 = time.perf_counter()
        img = tf.io.decode_image(tf.io.read_file(str(path)), channels=3, expand_animations=False)
        t1 = time.perf_counter()
        resized = tf.image.resize(img, INPUT_SIZE)
        pixels = tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8).numpy()
        t2 = time.perf_counter()
        out = self.engine.run(to_input(pixels, self.engine.dtype, self.norm))
        top = int(np.argmax(out.reshape(-1)))
        return top, {"decode": (t1 - t0) * 1000, "preprocess": (t2 - t1) * 1000, "invoke": _ms(t2)}


class MediaPipePipeline(Pipeline):
    """MediaPipe Tasks ImageClassifier on the same .tflite (its own decode, resize and invoke)."""

    def __init__(self, model: str | Path, threads: int, **_: Any) -> None:
        import mediapipe as mp
        from mediapipe.tasks import python as mp_tasks
        from mediapipe.tasks.python import vision

        self.mp = mp
        options = vision.ImageClassifierOptions(
            base_options=mp_tasks.BaseOptions(model_asset_path=str(model)), max_results=1
        )
        self.clf = vision.ImageClassifier.create_from_options(options)
        self.version = f"mediapipe {mp.__version__} (thread count not settable from Python)"

    def label(self, path: str | Path) -> tuple[int, dict[str, float]]:
        t0 = time.perf_counter()
        image = self.mp.Image.create_from_file(str(path))
        t1 = time.perf_counter()
        result = self.clf.classify(image)
        top = result.classifications[0].categories[0].index
        # MediaPipe resizes and invokes in one call: reported as invoke, preprocess 0.
        return int(top), {"decode": (t1 - t0) * 1000, "preprocess": 0.0, "invoke": _ms(t1)}


PIPELINES = {
    "skinedge": (SkinedgePipeline, {}),
    "naive-litert": (NaivePipeline, {"engine": "litert"}),
    "naive-tflite_runtime": (NaivePipeline, {"engine": "tflite_runtime"}),
    "tensorflow": (TensorflowPipeline, {}),
    "onnxruntime": (NaivePipeline, {"engine": "onnxruntime"}),
    "mediapipe": (MediaPipePipeline, {}),
}


def make_pipeline(name: str, model: str | Path, threads: int, norm: tuple[float, float] = (127.5, 127.5)) -> Pipeline:
    cls, kwargs = PIPELINES[name]
    return cls(model, threads, norm=norm, **kwargs)
