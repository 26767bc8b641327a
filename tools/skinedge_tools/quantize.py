"""Checkpoint -> float32 and full-integer int8 ``.tflite`` with skinedge metadata, checked in the runtime.

int8: uint8 input (raw pixels: the Rescaling layer lives in the graph, so the calibrated input scale
is 1 and zero point 0), int8 weights per channel (bias-corrected), int8 activations, int8 logits.
Representative data: a class-stratified, seeded sample of training images made by the runtime's
preprocessing. Both files then get a float softmax tail with the fitted temperature (float32
probabilities out) and standard TFLITE_METADATA, so MediaPipe Tasks can load them too.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from skinedge.backend import create_interpreter, invoke_once
from skinedge.classifier import Classifier
from skinedge.metadata import LABELS_NAME, ModelMetadata, pack
from skinedge.postprocess import softmax
from skinedge.selftest import encode_vectors
from skinedge_tools import class_maps
from skinedge_tools import data as data_mod
from skinedge_tools import evaluate as ev
from skinedge_tools import gates as gates_mod
from skinedge_tools.activation_ranges import quantize_with_mse_ranges
from skinedge_tools.artifacts import BACKBONE_TITLES, artifact_names, backbone_title
from skinedge_tools.bias_correction import LayerCorrection, correct_int8_bias
from skinedge_tools.data import Split
from skinedge_tools.gptq import LayerRounding, gptq_round_int8
from skinedge_tools.tflite_edit import add_standard_metadata, append_calibrated_softmax, standard_metadata

log = logging.getLogger(__name__)
DESCRIPTION = (
    "Six-class skin-condition photo classifier (Acne, Eczema, Psoriasis, SkinCancer, Vitiligo, "
    "Unknown_Normal). Research use; scores are not a medical diagnosis."
)


#: Photo-quality limits kept with a training run (``tools/experiments/quality_thresholds.py`` chooses them).
QUALITY_FILE = "quality_thresholds.json"


def representative_sample(x: np.ndarray, y: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """A seeded, class-stratified sample of ``n`` training images (the same every time)."""
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    per = {c: np.flatnonzero(y == c) for c in classes}
    take = []
    for c in classes:
        k = max(1, round(n * len(per[c]) / len(y)))
        take.extend(rng.choice(per[c], size=min(k, len(per[c])), replace=False).tolist())
    return x[np.sort(np.asarray(take))]


def to_tflite(model: keras.Model, representative: np.ndarray | None = None, activation_ranges: str = "minmax") -> bytes:
    """Convert; with ``representative`` data, full-integer int8 (uint8 input, int8 output).

    ``activation_ranges``: ``minmax`` (the converter's observed ranges) or ``mse`` (each activation's
    range chosen for the least quantization error, ``skinedge_tools.activation_ranges``).
    """
    if activation_ranges not in ("minmax", "mse"):
        raise ValueError(f"activation_ranges must be 'minmax' or 'mse', got {activation_ranges!r}")
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if representative is None:
        return converter.convert()
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([img[None].astype(np.float32)] for img in representative)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    converter.inference_output_type = tf.int8
    if activation_ranges == "mse":
        return quantize_with_mse_ranges(converter, representative)[0]
    return converter.convert()


def synthetic_vectors(size: int, n: int = 2) -> list[np.ndarray]:
    """Deterministic, photo-free self-test inputs (no dataset image is ever embedded in the model)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    out = []
    for i in range(n):
        r = 128 + 100 * np.sin(xx / (9.0 + 4 * i)) * np.cos(yy / (13.0 + 3 * i))
        g = 110 + 80 * np.cos((xx + 2 * yy) / (17.0 + 5 * i))
        b = 100 + 90 * np.sin((3 * xx - yy) / (23.0 + 7 * i))
        img = np.clip(np.stack([r, g, b], axis=2), 0, 255)
        # Coarse levels keep the PNGs small (the int8 file's size budget) while still driving every channel.
        out.append((np.round(img / 17.0) * 17).astype(np.uint8))
    return out


def _runtime_outputs(path: Path, x: np.ndarray, threads: int = 2) -> np.ndarray:
    """What the skinedge runtime reads from the file at ``path`` for each image (dequantized, uncalibrated)."""
    with Classifier(path, num_threads=threads) as clf:
        return np.stack([clf.raw_output(img) for img in x])


# ---------------------------------------------------------------- what a rebuild reports
@dataclass(frozen=True)
class ArtifactReport:
    """One artifact as built and measured through the runtime (the rebuild report's ``int8`` / ``float32``)."""

    file: str
    bytes: int
    flatbuffer_sha256: str
    temperature: float
    abstain_threshold: float
    softmax_tail_max_abs_error: float
    test: dict[str, Any]  # evaluate.metrics on the test split (calibrated)
    val: dict[str, Any]
    coverage_test: list[dict[str, float]]
    test_pred: list[int]
    test_top_score: list[float]
    val_pred: list[int]
    test_ece_uncalibrated: float
    val_ece_uncalibrated: float
    val_ece_calibrated: float
    # gated models (outlier exposure): thresholds chosen on val, and what they do on val and test
    gates: dict[str, Any] | None = None
    test_answered: list[bool] | None = None  # every gate and the abstain threshold passed

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None or k not in ("gates", "test_answered")}


@dataclass(frozen=True)
class RebuildReport:
    """Everything ``rebuild`` measured; :meth:`to_json` is the rebuild report's JSON layout readers expect."""

    provenance: dict[str, Any]
    activation_ranges: str
    weight_rounding_method: str
    int8: ArtifactReport
    float32: ArtifactReport
    agreement_int8_float32_test: float
    answered_int8_test: int
    agreement_int8_float32_test_answered: float  # NaN when int8 answers no test image
    agreement_float32_keras_test: float
    test_labels: list[int]
    test_files: list[str]
    weight_rounding: list[LayerRounding] | None = None  # None: GPTQ not applied
    bias_correction: list[LayerCorrection] | None = None  # None: not applied

    @property
    def size_ratio_int8_float32(self) -> float:
        return self.int8.bytes / self.float32.bytes

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"provenance": self.provenance}
        if self.weight_rounding is not None:
            out["weight_rounding"] = [r.__dict__ for r in self.weight_rounding]
        if self.bias_correction is not None:
            out["bias_correction"] = [c.__dict__ for c in self.bias_correction]
        out.update(
            activation_ranges=self.activation_ranges,
            weight_rounding_method=self.weight_rounding_method,
            int8=self.int8.to_json(),
            float32=self.float32.to_json(),
            agreement_int8_float32_test=self.agreement_int8_float32_test,
            answered_int8_test=self.answered_int8_test,
            agreement_int8_float32_test_answered=self.agreement_int8_float32_test_answered,
            agreement_float32_keras_test=self.agreement_float32_keras_test,
            size_ratio_int8_float32=self.size_ratio_int8_float32,
            test_labels=self.test_labels,
            test_files=self.test_files,
        )
        return out


# ---------------------------------------------------------------- the steps
@contextlib.contextmanager
def _step(name: str):
    """Log how long a step of the rebuild took (wall and this process's CPU), at INFO."""
    wall, cpu = time.perf_counter(), time.process_time()
    yield
    log.info("%s: %.1f s wall, %.1f s CPU", name, time.perf_counter() - wall, time.process_time() - cpu)


@dataclass
class RebuildData:
    """The trained network, its run's config, and the preprocessed splits the rebuild works on."""

    model: keras.Model
    cfg: Any  # train.TrainConfig
    x_train: np.ndarray
    train: Split
    x_val: np.ndarray
    val: Split
    x_test: np.ndarray
    test: Split
    representative: np.ndarray
    keras_test_logits: np.ndarray  # the Keras network's own, for the float32 file's agreement with it
    # gated runs: each outlier set's val and test photos, by gate name (its abstention class)
    x_val_out: dict[str, np.ndarray] | None = None
    x_test_out: dict[str, np.ndarray] | None = None

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.cfg.classes)

    @property
    def gate_labels(self) -> tuple[str, ...]:
        return tuple(self.cfg.outliers)


@dataclass
class Calibration:
    """The copy of the network that is converted to int8, and what GPTQ and bias correction did to it."""

    model: keras.Model
    weight_rounding: list[LayerRounding] | None
    bias_correction: list[LayerCorrection] | None


@dataclass(frozen=True)
class Measured:
    """An artifact's logits on val and test through the runtime, and what is fitted on them."""

    val_logits: np.ndarray
    test_logits: np.ndarray
    temperature: float
    abstain_threshold: float
    val_out_logits: dict[str, np.ndarray] | None = None
    test_out_logits: dict[str, np.ndarray] | None = None
    gate_choice: gates_mod.GateChoice | None = None


def load_data(
    run_dir: Path, stage: str, cache_dir: Path | None, n_representative: int, data_root: str | None,
    calibration_seed: int | None = None,
) -> RebuildData:
    """Load ``run_dir/<stage>``'s network, the run's splits (decoded by the runtime's preprocessing, cached),
    the calibration sample, and the Keras network's own test logits."""
    from skinedge_tools.train import discover_splits, load_trained

    model, cfg = load_trained(run_dir, stage)
    if data_root:
        cfg.data_root = data_root
        # the outlier sets sit beside the dataset (../shared/data/{skin6,not-skin,skin-other}): follow it there
        cfg.outliers = {n: str(Path(data_root).parent / Path(p).name) for n, p in cfg.outliers.items()}
    spec = cfg.spec()
    arrays = {k: data_mod.load_arrays(v, spec, cache_dir) for k, v in discover_splits(cfg).items()}
    (xtr, strn), (xv, sval), (xt, stst) = arrays["train"], arrays["val"], arrays["test"]
    seed = cfg.seed if calibration_seed is None else calibration_seed
    # Gated runs calibrate on outlier photos too: their activations must fit the int8 ranges as well.
    rep_x, rep_y, x_val_out, x_test_out = [xtr], [strn.labels], {}, {}
    for j, (name, root) in enumerate(cfg.outliers.items()):
        parts = data_mod.discover_outliers(root, len(cfg.classes) + j)
        x_out, s_out = data_mod.load_arrays(parts["train"], spec, cache_dir)
        rep_x.append(x_out)
        rep_y.append(s_out.labels)
        x_val_out[name] = data_mod.load_arrays(parts["val"], spec, cache_dir)[0]
        x_test_out[name] = data_mod.load_arrays(parts["test"], spec, cache_dir)[0]
    rep = representative_sample(np.concatenate(rep_x), np.concatenate(rep_y), n_representative, seed)
    keras_test = model.predict(xt.astype(np.float32), batch_size=32, verbose=0)
    return RebuildData(model, cfg, xtr, strn, xv, sval, xt, stst, rep, keras_test,
                       x_val_out or None, x_test_out or None)


def calibrate(
    run_dir: Path, stage: str, representative: np.ndarray, bias_correction: bool, weight_rounding: str
) -> Calibration | None:
    """A fresh copy of the network with GPTQ-rounded weights and corrected biases (None: neither asked for)."""
    from skinedge_tools.train import load_trained

    if not bias_correction and weight_rounding != "gptq":
        return None
    model, _ = load_trained(run_dir, stage)  # a copy: its weights end up on the int8 grid
    rounding = gptq_round_int8(model, representative) if weight_rounding == "gptq" else None
    # After GPTQ this only moves the dense head's bias: the convolutions already sit on the grid.
    corrections = correct_int8_bias(model, representative) if bias_correction else None
    return Calibration(model, rounding, corrections)


def convert(data: RebuildData, calibration: Calibration | None, activation_ranges: str) -> dict[str, bytes]:
    """Both logits-only flatbuffers: ``int8`` from the calibrated copy, ``float32`` from the trained network."""
    to_quantize = calibration.model if calibration else data.model
    int8 = to_tflite(to_quantize, data.representative, activation_ranges)
    return {"int8": int8, "float32": to_tflite(data.model)}


def _logits_metadata(cfg, interp) -> ModelMetadata:
    inp = interp.get_input_details()[0]
    return ModelMetadata(
        labels=tuple(cfg.classes),
        preprocess=cfg.spec(),
        output_kind="logits",
        temperature=1.0,
        input_shape=tuple(int(v) for v in inp["shape"]),
        input_dtype=np.dtype(inp["dtype"]).name,
        num_outputs=cfg.num_outputs,
        gate_labels=tuple(cfg.outliers),
    )


@dataclass(frozen=True)
class QualityPassed:
    """Which photos of each split pass the runtime's photo-quality check (the others are never answered)."""

    val: np.ndarray
    test: np.ndarray
    val_out: dict[str, np.ndarray]
    test_out: dict[str, np.ndarray]

    @classmethod
    def of(cls, data: RebuildData, quality: dict | None) -> QualityPassed:
        q = gates_mod.quality_passed
        return cls(q(data.x_val, quality), q(data.x_test, quality),
                   {n: q(x, quality) for n, x in (data.x_val_out or {}).items()},
                   {n: q(x, quality) for n, x in (data.x_test_out or {}).items()})


def measure(data: RebuildData, logits_flat: bytes, md: ModelMetadata, name: str,
            passed: QualityPassed | None = None) -> Measured:
    """Run the logits-only file through the runtime on val and test; fit the temperature and abstain threshold
    on val. (The fitted temperature is then built into the file's float softmax tail, so every reader gets
    calibrated scores.)"""
    with tempfile.TemporaryDirectory() as tmp:
        probe_path = Path(tmp) / name
        probe_path.write_bytes(pack(logits_flat, md))
        val_logits, test_logits = _runtime_outputs(probe_path, data.x_val), _runtime_outputs(probe_path, data.x_test)
        if data.x_val_out is None:
            temperature = ev.fit_temperature(val_logits, data.val.labels)
            abstain = ev.pick_abstain_threshold(softmax(val_logits, temperature), data.val.labels)
            return Measured(val_logits, test_logits, temperature, abstain)
        val_out = {n: _runtime_outputs(probe_path, x) for n, x in data.x_val_out.items()}
        test_out = {n: _runtime_outputs(probe_path, x) for n, x in data.x_test_out.items()}
    # One temperature for the whole softmax (classes and gates), fitted on every validation photo.
    k = len(data.classes)
    y_out = [np.full(len(v), k + data.gate_labels.index(n)) for n, v in val_out.items()]
    temperature = ev.fit_temperature(np.concatenate([val_logits, *val_out.values()]),
                                     np.concatenate([data.val.labels, *y_out]))
    choice = gates_mod.choose_thresholds(
        softmax(val_logits, temperature), {n: softmax(v, temperature) for n, v in val_out.items()},
        k, data.gate_labels, in_passed=passed.val if passed else None, out_passed=passed.val_out if passed else None,
    )
    log.info("gates chosen on val: %s", choice)
    return Measured(val_logits, test_logits, temperature, choice.abstain_threshold, val_out, test_out, choice)


def _summary(data: RebuildData, m: Measured, m_test: dict, m_val: dict, gates: dict | None) -> dict[str, Any]:
    """The metrics the file's metadata carries."""
    k = len(data.classes)
    extra = {}
    if gates:
        for split in ("val", "test"):
            extra[f"{split}_coverage"] = round(gates[split]["coverage"], 4)
            for n, v in gates[split]["answered"].items():
                extra[f"{split}_answered_{n}"] = round(v, 4)
    return {
        "test_accuracy": round(m_test["accuracy"], 4),
        "test_macro_f1": round(m_test["macro_f1"], 4),
        "val_accuracy": round(m_val["accuracy"], 4),
        "val_macro_f1": round(m_val["macro_f1"], 4),
        **extra,
        "test_ece_uncalibrated": round(ev.ece(softmax(m.test_logits[:, :k]), data.test.labels), 4),
        "test_ece_calibrated": round(m_test["ece"], 4),
        "test_n": int(len(data.test.labels)),
        "calibration_temperature": round(m.temperature, 6),
    }


def _gates_measured(data: RebuildData, m: Measured, passed: QualityPassed) -> dict[str, Any] | None:
    """The chosen thresholds and what they do on val and test (None for a model without gates)."""
    if m.gate_choice is None:
        return None
    k, c = len(data.classes), m.gate_choice
    out: dict[str, Any] = {"chosen_on_val": c.to_json()}
    for split, logits, labels, outs, ok, ok_out in (
        ("val", m.val_logits, data.val.labels, m.val_out_logits, passed.val, passed.val_out),
        ("test", m.test_logits, data.test.labels, m.test_out_logits, passed.test, passed.test_out),
    ):
        out[split] = gates_mod.measure(
            softmax(logits, m.temperature), labels, {n: softmax(v, m.temperature) for n, v in outs.items()},
            k, data.gate_labels, c.abstain_threshold, c.gate_thresholds, ok, ok_out,
        )
        out[split]["poor_photo"] = int((~ok).sum())
    return out


def package(
    data: RebuildData, kind: str, name: str, logits_flat: bytes, provenance: dict[str, Any], out_dir: Path,
    quality: dict[str, Any] | None = None,
) -> ArtifactReport:
    """Measure, calibrate and write one artifact: softmax tail, class-activation maps, standard and skinedge
    metadata (with self-test vectors for int8); then check the written file scores what was measured."""
    interp, _ = create_interpreter(logits_flat, num_threads=1)
    inp = interp.get_input_details()[0]
    if kind == "int8" and (abs(inp["quantization"][0] - 1.0) > 1e-3 or inp["quantization"][1] != 0):
        raise RuntimeError(f"int8 input quantization {inp['quantization']} is not raw pixels (scale 1, zero 0)")
    md = _logits_metadata(data.cfg, interp)
    passed = QualityPassed.of(data, quality)
    m = measure(data, logits_flat, md, name, passed)
    k = len(data.classes)  # the class scores are the known classes' (gates renormalised away)
    m_test = ev.metrics(data.test.labels, m.test_logits[:, :k], data.classes, m.temperature)
    m_val = ev.metrics(data.val.labels, m.val_logits[:, :k], data.classes, m.temperature)
    gates = _gates_measured(data, m, passed)
    spec = data.cfg.spec()
    title = f"skinedge {backbone_title(data.cfg)} {spec.height}px {kind}"
    flat = append_calibrated_softmax(logits_flat, m.temperature)
    # Heatmaps from the same invoke: class-activation map outputs beside the probabilities.
    flat, explain_info = class_maps.add_maps(flat, data.representative)
    flat = add_standard_metadata(flat, _standard_metadata(title, DESCRIPTION, provenance, spec, inp["dtype"]))
    files = _selftest_files(flat, spec.height, interp, m.temperature) if kind == "int8" else {}
    final = ModelMetadata(
        **{
            **md.__dict__,
            "output_kind": "probabilities",
            "abstain_threshold": m.abstain_threshold,
            "name": title,
            "description": DESCRIPTION,
            "provenance": provenance,
            "metrics": _summary(data, m, m_test, m_val, gates),
            "explain": explain_info,
            "gate_thresholds": m.gate_choice.gate_thresholds if m.gate_choice else {},
            "quality": dict(quality or {}),
        },
    )
    blob = pack(flat, final, files)
    path = out_dir / name
    path.write_bytes(blob)
    (out_dir / (name + ".sha256")).write_text(f"{hashlib.sha256(blob).hexdigest()}  {name}\n")
    test_probs = softmax(m.test_logits, m.temperature)
    tail_error = _check_shipped(path, data.x_test, test_probs, m.test_logits)
    class_probs, gate_probs = gates_mod.split_scores(test_probs, k)
    gate_t = np.array([final.gate_thresholds[g] for g in final.gate_labels])
    test_answered = gates_mod.answered(class_probs, gate_probs, m.abstain_threshold, gate_t, passed.test)
    return ArtifactReport(
        file=name,
        bytes=len(blob),
        flatbuffer_sha256=hashlib.sha256(flat).hexdigest(),
        temperature=m.temperature,
        abstain_threshold=m.abstain_threshold,
        softmax_tail_max_abs_error=tail_error,
        test=m_test,
        val=m_val,
        coverage_test=ev.coverage_curve(class_probs, data.test.labels),
        test_pred=m.test_logits[:, :k].argmax(1).tolist(),
        test_top_score=[round(float(v), 6) for v in class_probs.max(1)],
        val_pred=m.val_logits[:, :k].argmax(1).tolist(),
        test_ece_uncalibrated=round(ev.ece(softmax(m.test_logits[:, :k]), data.test.labels), 4),
        val_ece_uncalibrated=ev.ece(softmax(m.val_logits[:, :k]), data.val.labels),
        val_ece_calibrated=ev.ece(softmax(m.val_logits[:, :k], m.temperature), data.val.labels),
        gates=gates,
        test_answered=test_answered.tolist() if gates else None,
    )


def _selftest_files(flat: bytes, size: int, logits_interp, temperature: float) -> dict[str, bytes]:
    """Self-test vectors: synthetic inputs and the raw outputs this build machine's LiteRT gives for them."""
    final_interp, _ = create_interpreter(flat, num_threads=1)
    vectors = synthetic_vectors(size)
    inp, out = final_interp.get_input_details()[0]["index"], final_interp.get_output_details()[0]["index"]
    raw = [invoke_once(final_interp, ((inp, v[None]),), (out,))[0].reshape(-1) for v in vectors]  # not dequantized
    # A 1-step change of every int8 logit moves a probability by at most step / (2 T).
    logit_step = float(logits_interp.get_output_details()[0]["quantization"][0])
    return encode_vectors(vectors, raw, logit_step / (2 * temperature))


def _check_shipped(path: Path, x_test: np.ndarray, test_probs: np.ndarray, test_logits: np.ndarray) -> float:
    """The shipped file must score exactly what was measured: softmax(logits / T), same top-1. Returns the
    largest difference."""
    shipped = _runtime_outputs(path, x_test)
    tail_error = float(np.abs(shipped - test_probs).max())
    if tail_error > 1e-4 or not np.array_equal(shipped.argmax(1), test_logits.argmax(1)):
        raise RuntimeError(f"{path.name}: calibrated softmax tail disagrees with the measured logits ({tail_error})")
    return tail_error


def compare(
    data: RebuildData,
    provenance: dict[str, Any],
    calibration: Calibration | None,
    artifacts: dict[str, ArtifactReport],
    activation_ranges: str,
    weight_rounding: str,
) -> RebuildReport:
    """The artifacts side by side: int8 against float32 (all test images, and those int8 answers), float32
    against the Keras network."""
    i8, f32 = np.asarray(artifacts["int8"].test_pred), np.asarray(artifacts["float32"].test_pred)
    # What users act on: the images the int8 model answers (top score at or above its abstain threshold).
    answered = (np.asarray(artifacts["int8"].test_answered) if artifacts["int8"].test_answered is not None
                else np.asarray(artifacts["int8"].test_top_score) >= artifacts["int8"].abstain_threshold)
    # NaN when no test image is answered (tiny smoke runs), without numpy's empty-mean warning.
    same = i8[answered] == f32[answered]
    return RebuildReport(
        provenance=provenance,
        activation_ranges=activation_ranges,
        weight_rounding_method=weight_rounding,
        int8=artifacts["int8"],
        float32=artifacts["float32"],
        agreement_int8_float32_test=float((i8 == f32).mean()),
        answered_int8_test=int(answered.sum()),
        agreement_int8_float32_test_answered=float(same.mean()) if same.size else float("nan"),
        # the class logits only: a gated network's abstention logits come after them
        agreement_float32_keras_test=float(
            (f32 == data.keras_test_logits[:, : len(data.classes)].argmax(1)).mean()),
        test_labels=data.test.labels.tolist(),
        test_files=data.test.paths,
        weight_rounding=calibration.weight_rounding if calibration else None,
        bias_correction=calibration.bias_correction if calibration else None,
    )


def rebuild(
    run_dir: Path,
    out_dir: Path,
    cache_dir: Path | None,
    stage: str = "stage3",
    n_representative: int = 500,
    data_root: str | None = None,
    bias_correction: bool = True,
    activation_ranges: str = "mse",
    weight_rounding: str = "gptq",
    calibration_seed: int | None = None,
    quality: dict[str, Any] | None = None,
) -> RebuildReport:
    """Build both artifacts from ``run_dir/<stage>``, calibrate, evaluate, and write them (and
    its report, :func:`artifact_names`) to ``out_dir``.

    With ``bias_correction`` the int8 artifact is converted from a copy of the network whose biases
    absorb the expected weight-rounding error (``skinedge_tools.bias_correction``); float32 is untouched.
    ``activation_ranges`` is passed to :func:`to_tflite` for the int8 artifact. ``weight_rounding``:
    ``gptq`` rounds the convolutions' int8 weights for the least output error on the representative
    images (``skinedge_tools.gptq``), ``nearest`` leaves the converter's round-to-nearest.
    ``calibration_seed`` draws the representative images (None: the run's training seed); two seeds
    giving the same answers is the check that int8 does not hang on the calibration sample.
    ``quality``: photo-quality thresholds for the metadata (:class:`skinedge.quality.QualityThresholds` fields);
    None: the run's ``quality_thresholds.json`` if it has one.
    """
    if weight_rounding not in ("gptq", "nearest"):
        raise ValueError(f"weight_rounding must be 'gptq' or 'nearest', got {weight_rounding!r}")
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    if quality is None and (run_dir / QUALITY_FILE).exists():  # the run's own limits: a rebuild reproduces them
        quality = json.loads((run_dir / QUALITY_FILE).read_text())
    with _step("load"):
        data = load_data(run_dir, stage, cache_dir, n_representative, data_root, calibration_seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    provenance = _provenance(
        run_dir, data.cfg, stage, n_representative, bias_correction, activation_ranges, weight_rounding
    )
    if calibration_seed is not None and calibration_seed != data.cfg.seed:
        provenance["calibration_seed"] = calibration_seed  # absent: the run's seed (files built before the option)
    with _step("calibrate (GPTQ, bias correction)"):
        calibration = calibrate(run_dir, stage, data.representative, bias_correction, weight_rounding)
    with _step("convert"):
        flats = convert(data, calibration, activation_ranges)
    names = artifact_names(data.cfg.backbone)
    artifacts = {}
    for kind, flat in flats.items():
        with _step(f"package and evaluate {kind}"):
            artifacts[kind] = package(data, kind, names[kind], flat, provenance, out_dir, quality)
    report = compare(data, provenance, calibration, artifacts, activation_ranges, weight_rounding)
    (out_dir / names["report"]).write_text(json.dumps(report.to_json(), indent=1))
    return report


def _standard_metadata(title: str, description: str, provenance: dict, spec, input_dtype) -> bytes:
    return standard_metadata(
        name=title,
        description=description,
        version=str(provenance.get("source_commit") or "unversioned"),
        author="skinedge",
        license_text="Research use only; not a medical device.",
        input_size=(spec.height, spec.width),
        float_input=np.dtype(input_dtype) == np.float32,
        labels_file=LABELS_NAME,
        extra_outputs=class_maps.MAP_DESCRIPTIONS,
    )


def add_maps_to_artifact(path: Path, run_dir: Path, cache_dir: Path | None, data_root: str | None = None) -> dict:
    """Give an existing artifact the class-activation map outputs, leaving its graph and scores as they are.

    The finer map's head is fitted on the same representative images ``rebuild`` calibrates with. Writes
    ``path`` (and its ``.sha256``) in place; returns the metadata's new ``explain`` entry.
    """
    from dataclasses import replace

    from skinedge.metadata import unpack
    from skinedge_tools.train import TrainConfig, discover_splits

    path = Path(path)
    packed = unpack(path.read_bytes(), str(path))
    md = packed.metadata
    if md is None:
        raise ValueError(f"{path}: not a skinedge artifact (no metadata)")
    if md.explain:
        raise ValueError(f"{path}: already has class-activation map outputs")
    cfg = TrainConfig.from_json((Path(run_dir) / "config.json").read_text())
    if data_root:
        cfg.data_root = data_root
    xtr, strn = data_mod.load_arrays(discover_splits(cfg)["train"], cfg.spec(), cache_dir)
    n_rep = int(md.provenance.get("representative_images", 500))
    rep = representative_sample(xtr, strn.labels, n_rep, int(md.provenance.get("calibration_seed", cfg.seed)))
    flat, info = class_maps.add_maps(packed.flatbuffer, rep)
    interp, _ = create_interpreter(flat, num_threads=1)
    flat = add_standard_metadata(
        flat, _standard_metadata(md.name, md.description, md.provenance, md.preprocess,
                                 interp.get_input_details()[0]["dtype"])
    )
    files = {k: v for k, v in packed.files.items() if k not in ("skinedge.json", LABELS_NAME)}
    blob = pack(flat, replace(md, explain=info), files)
    path.write_bytes(blob)
    path.with_name(path.name + ".sha256").write_text(f"{hashlib.sha256(blob).hexdigest()}  {path.name}\n")
    return info


def _provenance(
    run_dir: Path, cfg, stage: str, n_rep: int, bias_correction: bool, activation_ranges: str, weight_rounding: str
) -> dict[str, Any]:
    cfg_json = json.loads((run_dir / "config.json").read_text())
    manifest = Path(cfg.data_root) / "manifest.csv"
    return {
        "dataset": Path(cfg.data_root).name,
        "dataset_manifest_sha256": hashlib.sha256(manifest.read_bytes()).hexdigest() if manifest.exists() else None,
        "backbone": (f"MobileNetV2 alpha {cfg.alpha}" if cfg.backbone == "mobilenetv2"
                     else BACKBONE_TITLES[cfg.backbone]) + ", ImageNet weights",
        "stages": [s["name"] for s in cfg_json["stages"]],
        "checkpoint": f"{stage}/model.weights.h5",
        "checkpoint_sha256": hashlib.sha256((run_dir / stage / "model.weights.h5").read_bytes()).hexdigest(),
        "train_config": cfg_json,
        "source_commit": cfg_json.get("source_commit"),
        "tensorflow": tf.__version__,
        "representative_images": n_rep,
        "quantization": "full-integer int8 PTQ, per-channel weights, uint8 input, int8 logits"
        + (", GPTQ weight rounding" if weight_rounding == "gptq" else "")
        + (", empirical bias correction" if bias_correction else "")
        + (", MSE activation ranges" if activation_ranges == "mse" else ""),
    }
