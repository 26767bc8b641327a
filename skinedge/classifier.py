"""``Classifier``: photo in, scores out, on a TFLite interpreter with the XNNPACK delegate.

Outputs are model scores for research and triage support, not a medical diagnosis.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

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
from skinedge.batch import prefetched
from skinedge.errors import ClassifierClosedError, ImageError, MetadataError, ModelError, SkinedgeError
from skinedge.heap import keep_heap_pad
from skinedge.metadata import ModelMetadata, read_labels_file
from skinedge.options import ClassifierOptions
from skinedge.postprocess import (
    GATES,
    REASONS,
    calibrate,
    decide,
    quality_problems,
    ranked,
    softmax,  # noqa: F401  (importable from here, as it always was)
    split_gates,
)
from skinedge.preprocess import (
    DEFAULT_LIMITS,
    ImageInput,
    ImageLimits,
    Prepared,
    PreprocessSpec,
    decode_for,
    prepare_photo,
    to_input_tensor,
)
from skinedge.quality import PhotoQuality, QualityThresholds, assess
from skinedge.reasons import describe, live_status

DISCLAIMER = "Scores from a research model, not a medical diagnosis: consult a clinician."
_FEW_IMAGES = 16  # a batch list shorter than this runs on the classifier's own interpreter (iter_classify)
#: On one interpreter per thread, each thread prepares this many images, then invokes them one after the other:
#: switching between decoding and the interpreter once per run instead of once per image keeps more of each in the
#: core's caches (alternately, decoding and invoking cost 3.5-5% more CPU than apart; runs of 8 gave 1.04-1.08x the
#: frames/s of a video file and 1.06-1.09x the images/s of a batch: docs/benchmarks.md, "The core redesign").
_RUN_LENGTH = 8
#: A list's runs are evened out to a multiple of the threads (24 photos on 2 threads: 4 runs of 6, not 8 + 8 + 8, of
#: which one thread would take two): 1.16-1.18x the images/s of 24 photos, 1.03-1.05x of 20 (docs/benchmarks.md).
_EVEN_RUNS = True
#: The threads take turns at preparing while preparing is the shorter step and the images are all of one size (a
#: video's frames): the Python parts of two threads' decoding contend for the GIL (every wait leaves a core idle),
#: their invokes do not. With turns one thread prepares while the others invoke, which costs no time as long as the
#: others' prepares fit in one's invokes: not for large photos, whose decoding takes longer than the model, nor for
#: a folder of mixed sizes, where one large photo would keep the other threads waiting (0.985x the images/s of 500
#: mixed photos without the size rule). `watch` on a 640x480 file at 2 threads: median 91.4% of the work bound in 11
#: runs, against 88.1% in 10 without turns (docs/benchmarks.md, "The core redesign").
_TAKE_TURNS = True


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
        uncertain: no answer: treat the label as "no confident answer". True exactly when ``reason`` is set.
        scores: every class's score, in label order.
        timings: time spent decoding, preprocessing and invoking.
        heatmap: from :meth:`Classifier.explain` only (None from ``classify``): a 2-D float32 array in
            [0, 1] over the image as decoded, the aspect of the upright photo; higher means that region
            weighed more in the score of ``heatmap_label``. A coarse map, not a lesion outline.
        heatmap_label: the class the heatmap explains (the top class unless another was asked for).
        reason: None when the result answers; otherwise why not, one of ``skinedge.postprocess.REASONS``:
            ``"poor_photo"``, ``"not_skin"``, ``"other_condition"``, ``"low_confidence"`` (the top score is
            below the abstain threshold; the only reason models without gates give).
        gates: the model's gate scores by name (empty for models without gates): e.g. ``not_skin``, the
            probability that the photo is not a skin photo, and ``other_condition``, that it shows a condition
            outside the model's classes. ``scores`` are then the classes' share, renormalised.
        quality: the photo's measured quality (:class:`skinedge.quality.PhotoQuality`), None when not measured.
        quality_problems: what makes the photo too poor to judge (``"blurred"``, ``"too_dark"``...; see
            :data:`skinedge.quality.HINTS`), empty when it is fine or the check is off.
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
    reason: str | None = None
    gates: Mapping[str, float] = field(default_factory=dict, hash=False)
    quality: PhotoQuality | None = None
    quality_problems: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # One truth: `uncertain` is "a reason is set". A result built the old way (uncertain=True, no reason)
        # abstained on its top score.
        if self.reason is None and self.uncertain:
            object.__setattr__(self, "reason", "low_confidence")
        if self.reason is not None and self.reason not in REASONS:
            raise ValueError(f"reason must be None or one of {REASONS}, got {self.reason!r}")
        if self.reason is not None and not self.uncertain:
            object.__setattr__(self, "uncertain", True)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (used by ``skinedge predict --json``)."""
        return {
            "source": self.source,
            "label": self.label,
            "score": round(self.score, 6),
            "uncertain": self.uncertain,
            "reason": self.reason,
            **({"reason_text": describe(self), "live_status": live_status(self)} if self.reason else {}),
            "gates": {name: round(float(v), 6) for name, v in self.gates.items()},
            **({"quality": {**self.quality.to_dict(), "problems": list(self.quality_problems)}}
               if self.quality is not None else {}),
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


_T = TypeVar("_T")


def _runs(items: Iterable[Any], length: int) -> Iterator[list[Any]]:
    """``items`` in consecutive lists of ``length`` (the last one shorter)."""
    run: list[Any] = []
    for item in items:
        run.append(item)
        if len(run) == length:
            yield run
            run = []
    if run:
        yield run


def _turns_pay(threads: int, prepare_s: float, invoke_s: float) -> bool:
    """Whether ``threads`` threads, each preparing a run in ``prepare_s`` then invoking it in ``invoke_s``, should
    take turns at preparing: only when the other threads' prepares fit in one thread's invokes (no thread then waits
    for its turn once they are out of step)."""
    return _TAKE_TURNS and (threads - 1) * prepare_s < invoke_s


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
        top_k, score_threshold, abstain_threshold: the default :class:`ClassifierOptions` (how many classes
            ``top_k`` lists; classes below ``score_threshold`` are left out of it; a top score below
            ``abstain_threshold`` gives no answer, None: the model's own threshold).
        options: the same as one :class:`ClassifierOptions` (instead of the three keywords). Every call
            may override them: ``classify(photo, top_k=5)`` or ``classify(photo, options=...)``.
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
        options: ClassifierOptions | None = None,
        output_kind: str | None = None,
        preprocess: PreprocessSpec | None = None,
        limits: ImageLimits = DEFAULT_LIMITS,
        verify: bool = True,
    ) -> None:
        if options is None:
            options = ClassifierOptions(top_k=top_k, score_threshold=score_threshold,
                                        abstain_threshold=abstain_threshold)
        elif (top_k, score_threshold, abstain_threshold) != (3, 0.0, None):
            raise ValueError("pass either options= or the top_k/score_threshold/abstain_threshold keywords, not both")
        t0 = time.perf_counter()
        self.model_path = model_io.resolve_model(model)
        packed = model_io.read_model(self.model_path, verify=verify)
        self.num_threads = int(num_threads) if num_threads else usable_cpus()
        if self.num_threads < 1:
            raise ValueError(f"num_threads must be >= 1, got {num_threads}")
        name = str(self.model_path)
        try:
            self._interpreter, self.backend = create_interpreter(packed.data, self.num_threads, backend)
        except ModelError as exc:
            raise ModelError(name, exc.reason) from None
        self._model_data = packed.data  # held by the interpreter anyway: the batches' own interpreters
        self._batch_lanes: list[tuple[Any, threading.Lock]] = []  # built by the first batch that needs them
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
        #: The model's own abstain threshold (what ``abstain_threshold=None`` means).
        self.model_abstain_threshold: float = self.metadata.abstain_threshold if self.metadata else 0.0
        self._options = options
        self._resolved = self._resolve(options, {})
        self.limits = limits
        self._check_tensors(name)
        self._lock = threading.Lock()
        self._closed = False
        self._classified_one = False  # the heap pad (skinedge.heap) waits for a second photo
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
    def gate_labels(self) -> tuple[str, ...]:
        """The model's abstention gates (``not_skin``, ``other_condition``), empty for a plain classifier."""
        return self.metadata.gate_labels if self.metadata is not None else ()

    @property
    def output_labels(self) -> tuple[str, ...]:
        """What each value of the score output is: the class labels, then the model's abstention gates."""
        return self.labels + (self.metadata.gate_labels if self.metadata is not None else ())

    # -- options --------------------------------------------------------------------------------

    @property
    def options(self) -> ClassifierOptions:
        """The options this classifier was made with (a threshold of None: the model's own)."""
        return self._options

    @property
    def top_k(self) -> int:
        """How many classes ``top_k`` lists by default (``options.top_k``, capped at the number of labels)."""
        return self._resolved.top_k

    @property
    def score_threshold(self) -> float:
        return self._resolved.score_threshold

    @property
    def abstain_threshold(self) -> float:
        """The abstain threshold in force by default: ``options.abstain_threshold``, else the model's own."""
        return self._resolved.abstain_threshold

    def resolve_options(self, options: ClassifierOptions | None = None, **overrides: Any) -> ClassifierOptions:
        """``options`` (default: this classifier's) with ``overrides``, every threshold left at None filled
        with the model's own and ``top_k`` capped at the number of labels: what one call reports with.

        Raises:
            TypeError: an override that is not a :class:`ClassifierOptions` field.
            ValueError: an invalid value (``top_k`` below 1, a threshold that is not a finite number).
        """
        if not overrides and (options is None or options is self._resolved):
            return self._resolved  # the common case, once per frame or photo: already resolved
        return self._resolve(options if options is not None else self._options, overrides)

    def _resolve(self, options: ClassifierOptions, overrides: dict[str, Any]) -> ClassifierOptions:
        opts = options.replace(**overrides)
        if opts.abstain_threshold is None:
            opts = opts.replace(abstain_threshold=self.model_abstain_threshold)
        md = self.metadata
        for gate in GATES:  # the model's own thresholds for the gates it has (None: it lacks the gate)
            if getattr(opts, f"{gate}_threshold") is None and md is not None and gate in md.gate_thresholds:
                opts = opts.replace(**{f"{gate}_threshold": md.gate_thresholds[gate]})
        if opts.quality is None and md is not None and md.quality:  # limits set for this model on its own errors
            opts = opts.replace(quality=QualityThresholds.from_dict(md.quality))
        return opts.replace(top_k=min(opts.top_k, len(self.labels)))

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

    @property
    def map_output_details(self) -> dict[str, dict]:
        """The class-activation map outputs by name (empty for models without them)."""
        return {name: dict(d) for name, d in self._map_outputs.items()}

    @property
    def has_class_maps(self) -> bool:
        """True if the model outputs class-activation maps (what :meth:`explain` needs)."""
        return bool(self._map_outputs)

    def _closed_error(self) -> ClassifierClosedError:
        return ClassifierClosedError(str(self.model_path), "Classifier is closed")

    def _check_pixels(self, pixels: np.ndarray) -> np.ndarray:
        expected = (self.spec.height, self.spec.width, 3)
        if pixels.shape != expected or pixels.dtype != np.uint8:
            raise ValueError(f"expected a {expected} uint8 array, got {pixels.shape} {pixels.dtype}")
        return to_input_tensor(pixels, self.spec, self._input["dtype"])

    def _run(self, tensor: np.ndarray, with_maps: bool = False,
             lane: tuple[Any, threading.Lock] | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """One invoke on an input ``tensor``: the dequantized scores output and, if asked, every map output.
        ``lane``: one of a batch's single-thread interpreters and its lock (default: the classifier's own)."""
        if self._closed:
            raise self._closed_error()
        with self._lock if lane is None else lane[1]:
            if self._closed:  # closed by another thread while this one waited for the lock
                raise self._closed_error()
            interpreter = self._interpreter if lane is None else lane[0]
            try:
                raw, *map_values = invoke_once(interpreter, ((self._input["index"], tensor),),
                                               self._read_with_maps if with_maps else self._read_scores)
            except (RuntimeError, ValueError) as exc:  # a graph that loads but cannot run (damaged model)
                detail = " ".join(str(exc).split())[:300]
                raise ModelError(str(self.model_path), f"the interpreter failed to run the model: {detail}") from None
        if raw.size != len(self.output_labels):  # the run resized the output its declared shape promised
            raise ModelError(str(self.model_path),
                             f"the model gave {raw.size} values for {len(self.output_labels)} labels")
        maps = {name: m[0] for name, m in zip(self._map_outputs, map_values)}
        return dequantize(raw, self._output).reshape(-1), maps

    def raw_output(self, pixels: np.ndarray) -> np.ndarray:
        """Run the model on one preprocessed ``HxWx3`` uint8 array; return its dequantized output
        (logits or probabilities, per ``output_kind``), before calibration."""
        return self._run(self._check_pixels(pixels))[0]

    def invoke(self, pixels: np.ndarray) -> np.ndarray:
        """Run the model on one preprocessed ``HxWx3`` uint8 array; return calibrated class scores (a gated
        model's gate scores left out: :meth:`invoke_with_gates`)."""
        return self.invoke_with_gates(pixels)[0]

    def invoke_with_gates(self, pixels: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
        """Calibrated class scores and the gate scores by name (empty without gates), from one invoke."""
        return split_gates(calibrate(self.raw_output(pixels), self.output_kind, self.temperature), self.gate_labels)

    def invoke_with_maps(self, pixels: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Calibrated class scores and every class-activation map output (``h x w x classes`` float32),
        all from one invoke. Without map outputs the dict is empty."""
        values, maps = self._run(self._check_pixels(pixels), with_maps=True)
        return split_gates(calibrate(values, self.output_kind, self.temperature), self.gate_labels)[0], maps

    def decode_image(self, image: ImageInput) -> Image.Image:
        """Decode ``image`` to the upright RGB picture the model's spec starts from (JPEG draft scale included)."""
        return decode_for(image, self.spec, self.limits)

    def prepare(self, image: ImageInput | Prepared) -> Prepared:
        """The one prepare step: decode ``image``, resize it as the model was trained and make its input tensor
        (timed). Pass the :class:`~skinedge.preprocess.Prepared` to :meth:`classify` or :meth:`explain`; its
        ``image`` is the decoded picture, for overlays. A ``Prepared`` is returned as it is.

        Raises:
            ImageError: the image is missing, unreadable, or above the limits (the message names it).
        """
        if isinstance(image, Prepared):
            return image
        if self._classified_one:
            # From the second photo on, reuse the heap pages the photos before freed (no page faults for every
            # photo's buffers); not for the first, so that a one-photo process keeps its smaller peak memory.
            keep_heap_pad()
        # quality measured here, not at the invoke: batches and video prepare on threads ahead of the interpreter
        return prepare_photo(image, self.spec, self._input["dtype"], self.limits,
                             measure_quality=self.options.check_quality)

    def preprocess(self, image: ImageInput) -> tuple[np.ndarray, float, float]:
        """Decode and resize ``image`` exactly as the model was trained; return (pixels, decode_ms, resize_ms)."""
        p = self.prepare(image)
        return p.pixels, p.decode_ms, p.resize_ms

    def result_from_scores(
        self,
        source: str,
        scores: np.ndarray,
        timings: Timings,
        options: ClassifierOptions | None = None,
        *,
        gates: Mapping[str, float] | None = None,
        quality: PhotoQuality | None = None,
    ) -> ClassificationResult:
        """The result for ``scores`` (calibrated, label order): the top class, ``top_k`` past
        ``score_threshold``, and ``reason``/``uncertain`` from :func:`skinedge.postprocess.decide`, under
        ``options`` (default: this classifier's, resolved). What every path that invokes the model reports with."""
        opts = self.resolve_options(options)
        gates = dict(gates or {})
        best = int(ranked(scores, 1, -np.inf)[0])
        top = tuple(Category(int(i), self.labels[i], float(scores[i]))
                    for i in ranked(scores, opts.top_k, opts.score_threshold))
        reason = decide(scores, gates, quality, opts)
        return ClassificationResult(
            source=source,
            label=self.labels[best],
            score=float(scores[best]),
            index=best,
            top_k=top,
            uncertain=reason is not None,
            scores=tuple(float(s) for s in scores),
            timings=timings,
            reason=reason,
            gates=gates,
            quality=quality,
            quality_problems=quality_problems(quality, opts),
        )

    def _finish(self, prepared: Prepared, opts: ClassifierOptions, *, heatmap: bool = False,
                label: str | None = None, lane: tuple[Any, threading.Lock] | None = None) -> ClassificationResult:
        """The one finishing step: invoke once -> outputs -> postprocess -> result (+ the heatmap when asked)."""
        expected = (1, self.spec.height, self.spec.width, 3)
        tensor = prepared.tensor
        if prepared.spec != self.spec or tensor.shape != expected or tensor.dtype != self._input["dtype"]:
            raise ValueError(f"this Prepared was made for another model: {tensor.shape} {tensor.dtype} by "
                             f"{prepared.spec}; this model takes {expected} {np.dtype(self._input['dtype']).name} "
                             f"by {self.spec}")
        t = time.perf_counter()
        values, maps = self._run(tensor, with_maps=heatmap, lane=lane)
        self._classified_one = True
        scores, gates = split_gates(calibrate(values, self.output_kind, self.temperature), self.gate_labels)
        invoke_ms = (time.perf_counter() - t) * 1000
        timings = Timings(prepared.decode_ms, prepared.resize_ms, invoke_ms)
        # the model's own input, measured (about 0.1 ms); not at all when the check is off
        quality = None
        if opts.check_quality:  # measured while preparing, unless the Prepared came from elsewhere
            quality = prepared.quality if prepared.quality is not None else assess(prepared.pixels, prepared.full_size)
        result = self.result_from_scores(prepared.source, scores, timings, opts, gates=gates, quality=quality)
        if not heatmap:
            return result
        from skinedge import explain  # the maps' arithmetic, loaded by the first heatmap (not by every start)

        t = time.perf_counter()
        index = result.index if label is None else self.labels.index(label)
        ordered = [maps[name] for name in self.metadata.map_outputs]
        heat = explain.heatmap_for(ordered, index, prepared.image.size, self.spec)
        timings = dataclasses.replace(timings, heatmap_ms=(time.perf_counter() - t) * 1000)
        return dataclasses.replace(result, heatmap=heat, heatmap_label=self.labels[index], timings=timings)

    def classify(self, image: ImageInput | Prepared, *, options: ClassifierOptions | None = None,
                 **overrides: Any) -> ClassificationResult:
        """Classify one image: a path, encoded bytes, a PIL image, an ``HxWx3`` uint8 RGB array, or a
        :class:`~skinedge.preprocess.Prepared` from :meth:`prepare`.

        ``options`` / keyword ``overrides`` (``top_k=5``, ``abstain_threshold=0.7``...) replace this
        classifier's :class:`ClassifierOptions` for this call.

        Raises:
            ImageError: the image is missing, unreadable, or above the limits (the message names it).
        """
        opts = self.resolve_options(options, **overrides)
        return self._finish(self.prepare(image), opts)

    def explain(self, image: ImageInput | Prepared, label: str | None = None, *,
                options: ClassifierOptions | None = None, **overrides: Any) -> ClassificationResult:
        """Classify ``image`` and say where the score came from: the result's ``heatmap``.

        One invoke, as :meth:`classify`: the model's class-activation map outputs come with its
        scores (see :mod:`skinedge.explain`). ``label`` picks the class to explain (default: the top one).

        Raises:
            ImageError: as :meth:`classify`.
            ModelError: the model has no class-activation map outputs.
            ValueError: ``label`` is not one of the model's labels.
        """
        self._check_can_explain()
        if label is not None and label not in self.labels:
            raise ValueError(f"unknown label {label!r}; the model's labels are: {', '.join(self.labels)}")
        opts = self.resolve_options(options, **overrides)
        return self._finish(self.prepare(image), opts, heatmap=True, label=label)

    def _check_can_explain(self) -> None:
        if not self.has_class_maps:
            raise ModelError(
                str(self.model_path),
                "this model has no class-activation map outputs, so it cannot explain; "
                "rebuild it with skinedge-tools rebuild (or use the bundled model)",
            )

    def classify_frame(self, frame_bgr: np.ndarray, *, options: ClassifierOptions | None = None,
                       **overrides: Any) -> ClassificationResult:
        """Classify one video frame as ``cv2.VideoCapture.read`` returns it: ``HxWx3`` uint8, BGR order.

        The frame is swapped to RGB and then decoded and resized exactly as a photo is.
        """
        return self.classify(bgr_to_rgb(frame_bgr), options=options, **overrides)

    def iter_classify(self, images: Iterable[ImageInput | Prepared], *, workers: int | None = None,
                      prefetch: int | None = None, interpreters: int | None = None, explain: bool = False,
                      options: ClassifierOptions | None = None, **overrides: Any) -> Iterator[BatchOutcome]:
        """Classify many images in order, yielding a result or the typed error for each (with ``explain``, each
        result carries its heatmap, as from :meth:`explain`).

        ``interpreters`` (default: this classifier's ``num_threads``): with more than one, the batch runs on that
        many single-thread interpreters side by side (built from the same model by the first batch that needs
        them, then kept), each on a thread of its own that takes the next run of up to 8 images, decodes them,
        then invokes them one after the other, at most ``prefetch`` images ahead of the caller (default: two
        runs per interpreter; a smaller ``prefetch`` shortens the runs, and a list's runs are evened out across
        the threads; while the images are all of one size and decoding is the shorter step, the threads take turns
        at decoding). On a few cores this keeps every core busy: a multi-thread invoke leaves cores idle at its
        synchronisation points while decoding waits, one thread per interpreter spends less CPU per image, and
        decoding a run before invoking it keeps each step's data in the core's caches (docs/benchmarks.md, "the
        work bound"). It costs memory: each interpreter packs its own copy of the weights (about 6 MB for the
        bundled model), and each thread holds its run's decoded images.
        With ``interpreters=1``, and by default for a list of fewer than 16 images (too few to repay building the
        other interpreters), the classifier's own interpreter (``num_threads`` threads) invokes while ``workers``
        threads (default: 2) decode ahead of it.
        Either way the results are the same, in input order; one bad image yields its :class:`SkinedgeError` and
        the rest go on.

        Raises:
            ValueError: ``interpreters``, ``workers`` or ``prefetch`` below 1.
            ModelError: ``explain`` with a model that has no class-activation map outputs.
        """
        if explain:
            self._check_can_explain()
        opts = self.resolve_options(options, **overrides)
        n = self.num_threads if interpreters is None else int(interpreters)
        if n < 1 or (workers is not None and workers < 1) or (prefetch is not None and prefetch < 1):
            raise ValueError(f"interpreters, workers and prefetch must be >= 1, got {interpreters}, {workers} and "
                             f"{prefetch}")
        if isinstance(images, (list, tuple)) and len(images) < (_FEW_IMAGES if interpreters is None else 2):
            n = 1  # building the other interpreters (~7 ms each on 2 cores) would cost more than they save
        if n == 1:
            for prepared in prefetched(self.prepare, images, workers=workers or 2, depth=prefetch):
                yield self._outcome(lambda prepared=prepared: self._finish(prepared(), opts, heatmap=explain))
            return
        import queue

        free: queue.SimpleQueue[tuple[Any, threading.Lock]] = queue.SimpleQueue()
        for lane in self._lanes(n):
            free.put(lane)
        run_length = _RUN_LENGTH if prefetch is None else max(1, min(_RUN_LENGTH, prefetch // n))
        if _EVEN_RUNS and isinstance(images, (list, tuple)) and images:
            runs = n * -(-len(images) // (n * run_length))  # a multiple of n runs, none longer than run_length
            run_length = -(-len(images) // runs)

        turn = threading.Lock()  # held by the thread preparing, while the threads take turns (_TAKE_TURNS)
        take_turns = False  # set by each run from its timings: did the others' prepares fit in its invokes?
        sizes: set[tuple[int, int]] = set()  # of the images so far: turns only while they are all alike (a video)

        def prepare_and_classify(run: list[ImageInput | Prepared]) -> list[BatchOutcome]:
            nonlocal take_turns
            lane = free.get()  # as many threads as lanes: one is always free
            try:
                with turn if take_turns else contextlib.nullcontext():
                    t0 = time.perf_counter()  # not counting the wait for the turn
                    prepared = [self._outcome(lambda image=image: self.prepare(image)) for image in run]
                    t1 = time.perf_counter()
                outcomes = [p if isinstance(p, SkinedgeError)
                            else self._outcome(lambda p=p: self._finish(p, opts, heatmap=explain, lane=lane))
                            for p in prepared]
                sizes.update(p.full_size for p in prepared if isinstance(p, Prepared))
                take_turns = len(sizes) == 1 and _turns_pay(n, t1 - t0, time.perf_counter() - t1)
                return outcomes
            finally:
                free.put(lane)

        # In runs: by default two per thread, so that each thread has its next run queued when it ends one.
        depth = 2 * n if prefetch is None else -(-prefetch // run_length)
        for outcomes in prefetched(prepare_and_classify, _runs(images, run_length), workers=n, depth=depth):
            yield from outcomes()

    def _lanes(self, n: int) -> list[tuple[Any, threading.Lock]]:
        """``n`` single-thread interpreters of this model, each with its lock: built once, kept until close."""
        with self._lock:
            if self._closed:
                raise self._closed_error()
            while len(self._batch_lanes) < n:
                interpreter, _ = create_interpreter(self._model_data, 1, self.backend.name)
                self._batch_lanes.append((interpreter, threading.Lock()))
            return self._batch_lanes[:n]

    @staticmethod
    def _outcome(step: Callable[[], _T]) -> _T | SkinedgeError:
        """``step()``'s result, or the input's typed error. A closed classifier is no input's fault: it stops
        the batch."""
        try:
            return step()
        except ClassifierClosedError:
            raise
        except SkinedgeError as exc:
            return exc

    def classify_many(self, images: Iterable[ImageInput | Prepared], *, workers: int | None = None,
                      prefetch: int | None = None, interpreters: int | None = None,
                      options: ClassifierOptions | None = None, **overrides: Any) -> list[BatchOutcome]:
        """List form of :meth:`iter_classify`: one result or typed error per input, in order."""
        return list(self.iter_classify(images, workers=workers, prefetch=prefetch, interpreters=interpreters,
                                       options=options, **overrides))

    # -- lifecycle ------------------------------------------------------------------------------

    def close(self) -> None:
        """Release the interpreter. Further calls raise :class:`~skinedge.errors.ClassifierClosedError`."""
        with self._lock:
            self._closed = True
            self._interpreter = None
            self._batch_lanes = []  # a batch still running finds the classifier closed at its next invoke

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
    "bgr_to_rgb",
]
