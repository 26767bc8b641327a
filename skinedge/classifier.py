"""``Classifier``: photo in, scores out, on a TFLite interpreter with the XNNPACK delegate.

Outputs are model scores for research and triage support, not a medical diagnosis.
"""

from __future__ import annotations

import collections
import os
import sys
import threading
import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from skinedge import model_io
from skinedge.backend import (
    DelegateStatus,
    create_interpreter,
    delegate_status,
    dequantize,
    invoke_once,
    usable_cpus,
)
from skinedge.errors import ImageError, MetadataError, ModelError, SkinedgeError
from skinedge.metadata import ModelMetadata, read_labels_file
from skinedge.preprocess import (
    DEFAULT_LIMITS,
    ImageInput,
    ImageLimits,
    PreprocessSpec,
    decode,
    describe_source,
    resize,
    to_input_tensor,
)

DISCLAIMER = "Scores from a research model, not a medical diagnosis: consult a clinician."


@dataclass(frozen=True)
class Category:
    """One class and its score."""

    index: int
    label: str
    score: float


@dataclass(frozen=True)
class Timings:
    """Milliseconds spent in each step of one classification."""

    decode_ms: float
    preprocess_ms: float
    invoke_ms: float
    heatmap_ms: float = 0.0  # explain() only: fusing and spreading the maps

    @property
    def total_ms(self) -> float:
        return self.decode_ms + self.preprocess_ms + self.invoke_ms + self.heatmap_ms


@dataclass(frozen=True)
class ClassificationResult:
    """The outcome for one image.

    Attributes:
        source: what was classified (file path, ``<bytes>``, ``<array>``...).
        label, score, index: the top class and its (calibrated) score.
        top_k: the best ``top_k`` classes whose score is at least ``score_threshold``.
        uncertain: the top score is below the model's abstain threshold: treat as "no answer".
        scores: every class's score, in label order.
        timings: time spent decoding, preprocessing and invoking.
        heatmap: from :meth:`Classifier.explain` only (None from ``classify``): a 2-D float32 array in
            [0, 1] over the image as decoded, the aspect of the upright photo; higher means that region
            weighed more in the score of ``heatmap_label``. A coarse map, not a lesion outline.
        heatmap_label: the class the heatmap explains (the top class unless another was asked for).
    """

    source: str
    label: str
    score: float
    index: int
    top_k: tuple[Category, ...]
    uncertain: bool
    scores: tuple[float, ...]
    timings: Timings
    heatmap: np.ndarray | None = field(default=None, repr=False, compare=False)
    heatmap_label: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (used by ``skinedge predict --json``)."""
        return {
            "source": self.source,
            "label": self.label,
            "score": round(self.score, 6),
            "uncertain": self.uncertain,
            "top_k": [{"label": c.label, "score": round(c.score, 6)} for c in self.top_k],
            "timings_ms": {
                "decode": round(self.timings.decode_ms, 3),
                "preprocess": round(self.timings.preprocess_ms, 3),
                "invoke": round(self.timings.invoke_ms, 3),
                **({"heatmap": round(self.timings.heatmap_ms, 3)} if self.heatmap is not None else {}),
            },
            **({"heatmap_label": self.heatmap_label} if self.heatmap is not None else {}),
        }


#: What ``classify_many`` yields for an input it could not classify.
BatchOutcome = ClassificationResult | SkinedgeError


def bgr_to_rgb(frame: np.ndarray) -> np.ndarray:
    """An ``HxWx3`` uint8 frame in OpenCV's BGR order as a C-contiguous RGB copy (the one channel swap for frames)."""
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        got = f"shape {frame.shape} {frame.dtype}" if isinstance(frame, np.ndarray) else type(frame).__name__
        raise ImageError("<frame>", f"expected an HxWx3 uint8 BGR frame, got {got}")
    cv2 = sys.modules.get("cv2")  # loaded by whoever captured the frame; never imported here
    if cv2 is not None:
        return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)  # the same bytes, ~10x faster than numpy
    rgb = np.empty_like(frame, order="C")
    for i in range(3):  # channel by channel: ~4x faster than copying frame[:, :, ::-1]
        rgb[:, :, i] = frame[:, :, 2 - i]
    return rgb


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Probabilities from 1-D ``logits`` at calibration ``temperature``, in float64: the runtime's one softmax."""
    z = logits.astype(np.float64) / temperature
    z -= z.max()
    e = np.exp(z)
    return e / e.sum()


class Classifier:
    """Classify skin photos with a TFLite model (int8 by default, the bundled skinedge model).

    Example::

        from skinedge import Classifier
        with Classifier() as clf:
            result = clf.classify("photo.jpg")
            print(result.label, result.score, result.uncertain)

    Thread safety: one ``Classifier`` may be shared by many threads. Decoding and resizing run in
    the calling thread, in parallel; ``invoke`` is serialized by a lock, because a TFLite
    interpreter is not re-entrant. For parallel invokes, create one ``Classifier`` per thread
    (each with ``num_threads=1``).

    Args:
        model: path to a ``.tflite`` file, or a bundled model's name (``"efficientnet-lite0"``, the
            default; ``"mobilenetv2"``, the 2025 paper's network: ``skinedge.model_io.BUNDLED_MODELS``).
        num_threads: interpreter threads (default: the CPUs this process may use).
        backend: ``litert``, ``tflite_runtime`` or ``tensorflow``; None picks the first installed.
        labels: labels file or sequence, for models without metadata (overrides metadata labels).
        top_k: how many classes ``top_k`` lists.
        score_threshold: classes below this score are left out of ``top_k``.
        abstain_threshold: override the model's abstain threshold (``uncertain`` flag).
        output_kind: ``logits`` or ``probabilities``, for models without metadata (default:
            ``probabilities`` when the output is a uint8/int8 softmax-like tensor, else ``logits``).
        preprocess: override the preprocessing spec, normalisation included (models without metadata
            default to squash + bilinear to the input tensor's size and, for float inputs,
            ``(pixel - 127.5) / 127.5``).
        limits: image pixel and file-size limits.
        verify: check the model's recorded SHA-256 and structure before loading (default True).
    """

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        *,
        num_threads: int | None = None,
        backend: str | None = None,
        labels: str | os.PathLike | Iterable[str] | None = None,
        top_k: int = 3,
        score_threshold: float = 0.0,
        abstain_threshold: float | None = None,
        output_kind: str | None = None,
        preprocess: PreprocessSpec | None = None,
        limits: ImageLimits = DEFAULT_LIMITS,
        verify: bool = True,
    ) -> None:
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        t0 = time.perf_counter()
        self.model_path = model_io.resolve_model(model)
        packed = model_io.read_model(self.model_path, verify=verify)
        self.num_threads = int(num_threads) if num_threads else usable_cpus()
        if self.num_threads < 1:
            raise ValueError(f"num_threads must be >= 1, got {num_threads}")
        name = str(self.model_path)
        try:
            self._interpreter, self.backend = create_interpreter(packed.flatbuffer, self.num_threads, backend)
        except ModelError as exc:
            raise ModelError(name, exc.reason) from None
        self.delegate: DelegateStatus = delegate_status(self._interpreter)
        self._input = self._single(self._interpreter.get_input_details(), "input", name)
        self.metadata: ModelMetadata | None = packed.metadata
        self._output, self._map_outputs = self._split_outputs(self._interpreter.get_output_details(), name)
        self._read_scores = (self._output["index"],)  # what one invoke reads back: scores, then any maps
        self._read_with_maps = self._read_scores + tuple(d["index"] for d in self._map_outputs.values())
        self.model_files: dict[str, bytes] = packed.files  # metadata archive entries (self-test vectors...)
        self.model_sha256: str = packed.sha256
        self.labels: tuple[str, ...] = self._resolve_labels(labels, packed.labels, name)
        self.spec: PreprocessSpec = preprocess or self._default_spec(name)
        self.output_kind = output_kind or (self.metadata.output_kind if self.metadata else self._guess_output_kind())
        if self.output_kind not in ("logits", "probabilities"):
            raise ValueError(f"output_kind must be 'logits' or 'probabilities', got {self.output_kind!r}")
        self.temperature = self.metadata.temperature if self.metadata else 1.0
        self.abstain_threshold = (
            abstain_threshold
            if abstain_threshold is not None
            else (self.metadata.abstain_threshold if self.metadata else 0.0)
        )
        self.top_k = min(top_k, len(self.labels))
        self.score_threshold = float(score_threshold)
        self.limits = limits
        self._check_tensors(name)
        self._lock = threading.Lock()
        self._closed = False
        self.load_ms = (time.perf_counter() - t0) * 1000
        if self._input["dtype"] in (np.uint8, np.int8) and not self.delegate.delegated:
            warnings.warn(
                f"{name}: quantized model runs without the XNNPACK delegate on {self.backend.package} "
                f"{self.backend.version} (expect ~10-20x slower inference); pip install ai-edge-litert",
                RuntimeWarning,
                stacklevel=2,
            )

    # -- set-up helpers -------------------------------------------------------------------------

    @staticmethod
    def _single(details: list[dict], what: str, name: str) -> dict:
        if len(details) != 1:
            raise ModelError(name, f"expected one {what} tensor, found {len(details)}")
        return details[0]

    def _split_outputs(self, details: list[dict], name: str) -> tuple[dict, dict[str, dict]]:
        """The scores output, and the class-activation map outputs the metadata names (if any)."""
        wanted = self.metadata.map_outputs if self.metadata is not None else ()
        maps = {d["name"]: d for d in details if d["name"] in wanted}
        missing = sorted(set(wanted) - set(maps))
        if missing:
            raise MetadataError(name, f"metadata names map outputs the model does not have: {', '.join(missing)}")
        scores = self._single([d for d in details if d["name"] not in maps], "output", name)
        return scores, maps

    def _resolve_labels(self, labels: Any, packed_labels: tuple[str, ...] | None, name: str) -> tuple[str, ...]:
        if labels is not None:
            if isinstance(labels, (str, os.PathLike)):
                return read_labels_file(labels)
            return tuple(str(x) for x in labels)
        if self.metadata is not None:
            return self.metadata.labels
        if packed_labels:
            return packed_labels
        n = int(np.prod(self._output["shape"]))
        if not 1 <= n <= 1_000_000:  # a damaged shape: no labels to number (and no 80M-label tuple)
            raise ModelError(name, f"output tensor {[int(v) for v in self._output['shape']]} holds {n} values, "
                                   "not one score per class")
        return tuple(str(i) for i in range(n))

    def _default_spec(self, name: str) -> PreprocessSpec:
        if self.metadata is not None:
            return self.metadata.preprocess
        shape = [int(v) for v in self._input["shape"]]
        if len(shape) != 4 or shape[3] != 3:
            raise ModelError(name, f"input tensor {shape} is not an image (expected [1, H, W, 3])")
        # Float inputs in [-1, 1]: the Keras MobileNet / TFLite image-classifier convention.
        return PreprocessSpec(height=int(shape[1]), width=int(shape[2]), jpeg_draft=False, mean=127.5, std=127.5)

    def _guess_output_kind(self) -> str:
        # A quantized output with scale 1/256 is the classic uint8/int8 softmax layout.
        scale = self._output["quantization"][0]
        return (
            "probabilities"
            if self._output["dtype"] in (np.uint8, np.int8) and abs(scale - 1 / 256) < 1e-6
            else "logits"
        )

    def _check_tensors(self, name: str) -> None:
        shape = tuple(int(v) for v in self._input["shape"])
        if len(shape) != 4 or shape[0] != 1 or shape[3] != 3:
            raise ModelError(name, f"input tensor {list(shape)} is not an image (expected [1, H, W, 3])")
        if self._input["dtype"] not in (np.uint8, np.int8, np.float32):
            raise ModelError(name, f"unsupported input dtype {np.dtype(self._input['dtype']).name}")
        if (shape[1], shape[2]) != (self.spec.height, self.spec.width):
            raise MetadataError(
                name,
                f"preprocessing makes {self.spec.height}x{self.spec.width} images, "
                f"input tensor is {shape[1]}x{shape[2]}",
            )
        n_out = int(np.prod(self._output["shape"]))
        if len(self.output_labels) != n_out:
            raise MetadataError(name, f"{len(self.output_labels)} labels for {n_out} model outputs")
        md = self.metadata
        if md is not None:
            if md.input_shape is not None and tuple(md.input_shape) != shape:
                raise MetadataError(name, f"metadata expects input {list(md.input_shape)}, model has {list(shape)}")
            if md.input_dtype is not None and md.input_dtype != np.dtype(self._input["dtype"]).name:
                raise MetadataError(
                    name, f"metadata expects {md.input_dtype} input, model has {np.dtype(self._input['dtype']).name}"
                )

    @property
    def output_labels(self) -> tuple[str, ...]:
        """What each value of the score output is: the class labels, then the model's abstention gates."""
        return self.labels + (self.metadata.gate_labels if self.metadata is not None else ())

    # -- inference ------------------------------------------------------------------------------

    @property
    def delegated(self) -> bool:
        """True if XNNPACK runs the graph (see ``delegate`` for details)."""
        return self.delegate.delegated

    @property
    def interpreter(self) -> Any:
        """The TFLite interpreter this classifier drives (for benchmarks and inspection).

        It is shared, not a copy, and not thread-safe: ``invoke`` on it races with the classifier's own
        (locked) invokes and overwrites their tensors. Use it from one thread while nothing else classifies,
        and only until :meth:`close` (which releases it: None afterwards).
        """
        return self._interpreter

    @property
    def input_details(self) -> dict:
        return dict(self._input)

    @property
    def output_details(self) -> dict:
        return dict(self._output)

    def raw_output(self, pixels: np.ndarray) -> np.ndarray:
        """Run the model on one preprocessed ``HxWx3`` uint8 array; return its dequantized output
        (logits or probabilities, per ``output_kind``), before calibration."""
        return self._run(pixels)[0]

    @property
    def has_class_maps(self) -> bool:
        """True if the model outputs class-activation maps (what :meth:`explain` needs)."""
        return bool(self._map_outputs)

    def invoke_with_maps(self, pixels: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Calibrated class scores and every class-activation map output (``h x w x classes`` float32),
        all from one invoke. Without map outputs the dict is empty."""
        values, maps = self._run(pixels, with_maps=True)
        scores = softmax(values, self.temperature) if self.output_kind == "logits" else values
        return scores, maps

    def _run(self, pixels: np.ndarray, with_maps: bool = False) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        if self._closed:
            raise RuntimeError("Classifier is closed")
        expected = (self.spec.height, self.spec.width, 3)
        if pixels.shape != expected or pixels.dtype != np.uint8:
            raise ValueError(f"expected a {expected} uint8 array, got {pixels.shape} {pixels.dtype}")
        tensor = to_input_tensor(pixels, self.spec, self._input["dtype"])
        with self._lock:
            if self._closed:  # closed by another thread while this one waited for the lock
                raise RuntimeError("Classifier is closed")
            try:
                raw, *map_values = invoke_once(self._interpreter, ((self._input["index"], tensor),),
                                               self._read_with_maps if with_maps else self._read_scores)
            except (RuntimeError, ValueError) as exc:  # a graph that loads but cannot run (damaged model)
                detail = " ".join(str(exc).split())[:300]
                raise ModelError(str(self.model_path), f"the interpreter failed to run the model: {detail}") from None
        if raw.size != len(self.output_labels):  # the run resized the output its declared shape promised
            raise ModelError(str(self.model_path),
                             f"the model gave {raw.size} values for {len(self.output_labels)} labels")
        maps = {name: m[0] for name, m in zip(self._map_outputs, map_values)}
        return dequantize(raw, self._output).reshape(-1), maps

    def invoke(self, pixels: np.ndarray) -> np.ndarray:
        """Run the model on one preprocessed ``HxWx3`` uint8 array; return calibrated class scores."""
        values = self.raw_output(pixels)
        return softmax(values, self.temperature) if self.output_kind == "logits" else values

    def decode_image(self, image: ImageInput) -> Image.Image:
        """Decode ``image`` to the upright RGB picture the model's spec starts from (JPEG draft scale included)."""
        draft = (self.spec.width, self.spec.height) if self.spec.jpeg_draft else None
        return decode(image, draft_size=draft, background=self.spec.alpha_background, limits=self.limits)

    def preprocess(self, image: ImageInput) -> tuple[np.ndarray, float, float]:
        """Decode and resize ``image`` exactly as the model was trained; return (pixels, decode_ms, resize_ms)."""
        t0 = time.perf_counter()
        decoded = self.decode_image(image)
        t1 = time.perf_counter()
        pixels = resize(decoded, self.spec)
        t2 = time.perf_counter()
        return pixels, (t1 - t0) * 1000, (t2 - t1) * 1000

    def result_from_scores(self, source: str, scores: np.ndarray, timings: Timings) -> ClassificationResult:
        """The result for ``scores`` (calibrated, label order): top class, ``top_k`` past ``score_threshold``,
        ``uncertain`` below the abstain threshold. What every path that invokes the model reports with."""
        order = np.argsort(-scores, kind="stable")
        top = tuple(
            Category(int(i), self.labels[i], float(scores[i]))
            for i in order[: self.top_k]
            if scores[i] >= self.score_threshold
        )
        best = int(order[0])
        return ClassificationResult(
            source=source,
            label=self.labels[best],
            score=float(scores[best]),
            index=best,
            top_k=top,
            uncertain=bool(scores[best] < self.abstain_threshold),
            scores=tuple(float(s) for s in scores),
            timings=timings,
        )

    def classify(self, image: ImageInput) -> ClassificationResult:
        """Classify one image: a path, encoded bytes, a PIL image or an ``HxWx3`` uint8 RGB array.

        Raises:
            ImageError: the image is missing, unreadable, or above the limits (the message names it).
        """
        pixels, decode_ms, resize_ms = self.preprocess(image)
        t = time.perf_counter()
        scores = self.invoke(pixels)
        invoke_ms = (time.perf_counter() - t) * 1000
        return self.result_from_scores(describe_source(image), scores, Timings(decode_ms, resize_ms, invoke_ms))

    def explain(self, image: ImageInput, label: str | None = None) -> ClassificationResult:
        """Classify ``image`` and say where the score came from: the result's ``heatmap``.

        One invoke, as :meth:`classify`: the model's class-activation map outputs come with its
        scores (see :mod:`skinedge.explain`). ``label`` picks the class to explain (default: the top one).

        Raises:
            ImageError: as :meth:`classify`.
            ModelError: the model has no class-activation map outputs.
            ValueError: ``label`` is not one of the model's labels.
        """
        from skinedge.explain import explain  # the capability lives in its own module

        return explain(self, image, label)

    def classify_frame(self, frame_bgr: np.ndarray) -> ClassificationResult:
        """Classify one video frame as ``cv2.VideoCapture.read`` returns it: ``HxWx3`` uint8, BGR order.

        The frame is swapped to RGB and then decoded and resized exactly as a photo is.
        """
        return self.classify(bgr_to_rgb(frame_bgr))

    def iter_classify(self, images: Iterable[ImageInput], *, workers: int | None = None) -> Iterator[BatchOutcome]:
        """Classify many images in order, yielding a result or the typed error for each.

        Decoding runs on ``workers`` background threads (default: 2) while the interpreter
        invokes, so a batch goes at the pace of the slower of the two. One bad image yields its
        :class:`SkinedgeError` and the rest go on.
        """
        if isinstance(images, (list, tuple)) and len(images) <= 1:
            # One image has nothing to overlap: skip the pool (and ~9 ms of imports on a cold start).
            for item in images:
                try:
                    yield self.classify(item)
                except SkinedgeError as exc:
                    yield exc
            return
        from concurrent.futures import Future, ThreadPoolExecutor

        workers = workers or 2
        pending: collections.deque[tuple[ImageInput, Future]] = collections.deque()
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="skinedge-decode") as pool:
            it = iter(images)
            exhausted = False
            while True:
                while not exhausted and len(pending) < 2 * workers:
                    try:
                        item = next(it)
                    except StopIteration:
                        exhausted = True
                        break
                    pending.append((item, pool.submit(self.preprocess, item)))
                if not pending:
                    return
                item, future = pending.popleft()
                try:
                    pixels, decode_ms, resize_ms = future.result()
                    t = time.perf_counter()
                    scores = self.invoke(pixels)
                    invoke_ms = (time.perf_counter() - t) * 1000
                except SkinedgeError as exc:
                    yield exc
                    continue
                yield self.result_from_scores(describe_source(item), scores, Timings(decode_ms, resize_ms, invoke_ms))

    def classify_many(self, images: Iterable[ImageInput], *, workers: int | None = None) -> list[BatchOutcome]:
        """List form of :meth:`iter_classify`: one result or typed error per input, in order."""
        return list(self.iter_classify(images, workers=workers))

    # -- lifecycle ------------------------------------------------------------------------------

    def close(self) -> None:
        """Release the interpreter. Further calls raise ``RuntimeError``."""
        with self._lock:
            self._closed = True
            self._interpreter = None

    def __enter__(self) -> Classifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"Classifier(model={str(self.model_path)!r}, backend={self.backend.name} {self.backend.version}, "
            f"threads={self.num_threads}, delegate={self.delegate.describe()}, labels={len(self.labels)})"
        )


__all__ = [
    "Category",
    "ClassificationResult",
    "Classifier",
    "DISCLAIMER",
    "Timings",
]
