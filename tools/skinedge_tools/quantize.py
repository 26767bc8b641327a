"""Checkpoint -> float32 and full-integer int8 ``.tflite`` with skinedge metadata, checked in the runtime.

int8: uint8 input (raw pixels: the Rescaling layer lives in the graph, so the calibrated input scale
is 1 and zero point 0), int8 weights per channel (bias-corrected), int8 activations, int8 logits.
Representative data: a class-stratified, seeded sample of training images made by the runtime's
preprocessing. Both files then get a float softmax tail with the fitted temperature (float32
probabilities out) and standard TFLITE_METADATA, so MediaPipe Tasks can load them too.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from skinedge.backend import create_interpreter
from skinedge.classifier import Classifier
from skinedge.metadata import LABELS_NAME, ModelMetadata, pack
from skinedge.selftest import encode_vectors
from skinedge_tools import class_maps
from skinedge_tools import data as data_mod
from skinedge_tools import evaluate as ev
from skinedge_tools.activation_ranges import quantize_with_mse_ranges
from skinedge_tools.bias_correction import correct_int8_bias
from skinedge_tools.gptq import gptq_round_int8
from skinedge_tools.tflite_edit import add_standard_metadata, append_calibrated_softmax, standard_metadata

INT8_NAME = "skinedge_mobilenetv2_int8.tflite"
FLOAT_NAME = "skinedge_mobilenetv2_float32.tflite"


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
    with Classifier(path, num_threads=threads) as clf:
        return np.stack([clf.raw_output(img) for img in x])


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
) -> dict[str, Any]:
    """Build both artifacts from ``run_dir/<stage>``, calibrate, evaluate, and write them to ``out_dir``.

    With ``bias_correction`` the int8 artifact is converted from a copy of the network whose biases
    absorb the expected weight-rounding error (``skinedge_tools.bias_correction``); float32 is untouched.
    ``activation_ranges`` is passed to :func:`to_tflite` for the int8 artifact. ``weight_rounding``:
    ``gptq`` rounds the convolutions' int8 weights for the least output error on the representative
    images (``skinedge_tools.gptq``), ``nearest`` leaves the converter's round-to-nearest.
    """
    if weight_rounding not in ("gptq", "nearest"):
        raise ValueError(f"weight_rounding must be 'gptq' or 'nearest', got {weight_rounding!r}")
    from skinedge_tools.train import discover_splits, load_trained

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    model, cfg = load_trained(run_dir, stage)
    if data_root:
        cfg.data_root = data_root
    spec = cfg.spec()
    splits = discover_splits(cfg)
    arrays = {k: data_mod.load_arrays(v, spec, cache_dir) for k, v in splits.items()}
    (xtr, strn), (xv, sval), (xt, stst) = arrays["train"], arrays["val"], arrays["test"]
    rep = representative_sample(xtr, strn.labels, n_representative, cfg.seed)
    keras_test = model.predict(xt.astype(np.float32), batch_size=32, verbose=0)
    out_dir.mkdir(parents=True, exist_ok=True)
    provenance = _provenance(run_dir, cfg, stage, n_representative, bias_correction, activation_ranges, weight_rounding)
    report: dict[str, Any] = {"provenance": provenance}
    to_quantize = model
    if bias_correction or weight_rounding == "gptq":
        to_quantize, _ = load_trained(run_dir, stage)  # a copy: its weights end up on the int8 grid
    if weight_rounding == "gptq":
        report["weight_rounding"] = [r.__dict__ for r in gptq_round_int8(to_quantize, rep)]
    if bias_correction:
        # After GPTQ this only moves the dense head's bias: the convolutions already sit on the grid.
        report["bias_correction"] = [c.__dict__ for c in correct_int8_bias(to_quantize, rep)]
    artifacts = {
        "int8": (INT8_NAME, to_tflite(to_quantize, rep, activation_ranges)),
        "float32": (FLOAT_NAME, to_tflite(model)),
    }
    report["activation_ranges"] = activation_ranges
    report["weight_rounding_method"] = weight_rounding
    description = (
        "Six-class skin-condition photo classifier (Acne, Eczema, Psoriasis, SkinCancer, Vitiligo, "
        "Unknown_Normal). Research use; scores are not a medical diagnosis."
    )
    for kind, (name, logits_flat) in artifacts.items():
        interp, _ = create_interpreter(logits_flat, num_threads=1)
        inp = interp.get_input_details()[0]
        if kind == "int8" and (abs(inp["quantization"][0] - 1.0) > 1e-3 or inp["quantization"][1] != 0):
            raise RuntimeError(f"int8 input quantization {inp['quantization']} is not raw pixels (scale 1, zero 0)")
        md = ModelMetadata(
            labels=tuple(cfg.classes),
            preprocess=spec,
            output_kind="logits",
            temperature=1.0,
            input_shape=tuple(int(v) for v in inp["shape"]),
            input_dtype=np.dtype(inp["dtype"]).name,
            num_outputs=len(cfg.classes),
        )
        # The runtime measures the converted logits first; the temperature fitted on them is then
        # built into the file's float softmax tail (tflite_edit), so every reader gets calibrated scores.
        with tempfile.TemporaryDirectory() as tmp:
            probe_path = Path(tmp) / name
            probe_path.write_bytes(pack(logits_flat, md))
            val_logits, test_logits = _runtime_outputs(probe_path, xv), _runtime_outputs(probe_path, xt)
        temperature = ev.fit_temperature(val_logits, sval.labels)
        val_probs, test_probs = _softmax(val_logits / temperature), _softmax(test_logits / temperature)
        abstain = ev.pick_abstain_threshold(val_probs, sval.labels)
        m_test = ev.metrics(stst.labels, test_logits, tuple(cfg.classes), temperature)
        m_val = ev.metrics(sval.labels, val_logits, tuple(cfg.classes), temperature)
        summary = {
            "test_accuracy": round(m_test["accuracy"], 4),
            "test_macro_f1": round(m_test["macro_f1"], 4),
            "val_accuracy": round(m_val["accuracy"], 4),
            "val_macro_f1": round(m_val["macro_f1"], 4),
            "test_ece_uncalibrated": round(ev.ece(_softmax(test_logits), stst.labels), 4),
            "test_ece_calibrated": round(m_test["ece"], 4),
            "test_n": int(len(stst.labels)),
            "calibration_temperature": round(temperature, 6),
        }
        title = f"skinedge MobileNetV2 {cfg.alpha} {spec.height}px {kind}"
        flat = append_calibrated_softmax(logits_flat, temperature)
        # Heatmaps from the same invoke: class-activation map outputs beside the probabilities.
        flat, explain_info = class_maps.add_maps(flat, rep)
        flat = add_standard_metadata(flat, _standard_metadata(title, description, provenance, spec, inp["dtype"]))
        final_interp, _ = create_interpreter(flat, num_threads=1)
        files = {}
        if kind == "int8":
            vectors = synthetic_vectors(spec.height)
            raw = _raw_outputs(final_interp, vectors)
            # A 1-step change of every int8 logit moves a probability by at most step / (2 T).
            logit_step = float(interp.get_output_details()[0]["quantization"][0])
            files = encode_vectors(vectors, raw, logit_step / (2 * temperature))
        final = ModelMetadata(
            **{
                **md.__dict__,
                "output_kind": "probabilities",
                "abstain_threshold": abstain,
                "name": title,
                "description": description,
                "provenance": provenance,
                "metrics": summary,
                "explain": explain_info,
            },
        )
        blob = pack(flat, final, files)
        path = out_dir / name
        path.write_bytes(blob)
        (out_dir / (name + ".sha256")).write_text(f"{hashlib.sha256(blob).hexdigest()}  {name}\n")
        # The shipped file must score exactly what was measured: softmax(logits / T), same top-1.
        shipped = _runtime_outputs(path, xt)
        tail_error = float(np.abs(shipped - test_probs).max())
        if tail_error > 1e-4 or not np.array_equal(shipped.argmax(1), test_logits.argmax(1)):
            raise RuntimeError(f"{name}: calibrated softmax tail disagrees with the measured logits ({tail_error})")
        report[kind] = {
            "file": name,
            "bytes": len(blob),
            "flatbuffer_sha256": hashlib.sha256(flat).hexdigest(),
            "temperature": temperature,
            "abstain_threshold": abstain,
            "softmax_tail_max_abs_error": tail_error,
            "test": m_test,
            "val": m_val,
            "coverage_test": ev.coverage_curve(test_probs, stst.labels),
            "test_pred": test_logits.argmax(1).tolist(),
            "test_top_score": [round(float(v), 6) for v in test_probs.max(1)],
            "val_pred": val_logits.argmax(1).tolist(),
            "test_ece_uncalibrated": summary["test_ece_uncalibrated"],
            "val_ece_uncalibrated": ev.ece(_softmax(val_logits), sval.labels),
            "val_ece_calibrated": ev.ece(val_probs, sval.labels),
        }
    i8, f32 = np.asarray(report["int8"]["test_pred"]), np.asarray(report["float32"]["test_pred"])
    report["agreement_int8_float32_test"] = float((i8 == f32).mean())
    # What users act on: the images the int8 model answers (top score at or above its abstain threshold).
    answered = np.asarray(report["int8"]["test_top_score"]) >= report["int8"]["abstain_threshold"]
    report["answered_int8_test"] = int(answered.sum())
    # NaN when no test image is answered (tiny smoke runs), without numpy's empty-mean warning.
    same = i8[answered] == f32[answered]
    report["agreement_int8_float32_test_answered"] = float(same.mean()) if same.size else float("nan")
    report["agreement_float32_keras_test"] = float((f32 == keras_test.argmax(1)).mean())
    report["size_ratio_int8_float32"] = report["int8"]["bytes"] / report["float32"]["bytes"]
    report["test_labels"] = stst.labels.tolist()
    report["test_files"] = stst.paths
    (out_dir / "rebuild_report.json").write_text(json.dumps(report, indent=1))
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
    rep = representative_sample(xtr, strn.labels, n_rep, cfg.seed)
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


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def _raw_outputs(interp, vectors: list[np.ndarray]) -> list[np.ndarray]:
    """Raw outputs of the LiteRT/XNNPACK interpreter built for the artifact, on the self-test vectors."""
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    raw = []
    for v in vectors:
        interp.set_tensor(inp["index"], v[None])
        interp.invoke()
        raw.append(interp.get_tensor(out["index"]).reshape(-1).copy())
    return raw


def _provenance(
    run_dir: Path, cfg, stage: str, n_rep: int, bias_correction: bool, activation_ranges: str, weight_rounding: str
) -> dict[str, Any]:
    cfg_json = json.loads((run_dir / "config.json").read_text())
    manifest = Path(cfg.data_root) / "manifest.csv"
    return {
        "dataset": Path(cfg.data_root).name,
        "dataset_manifest_sha256": hashlib.sha256(manifest.read_bytes()).hexdigest() if manifest.exists() else None,
        "backbone": f"MobileNetV2 alpha {cfg.alpha}, ImageNet weights",
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
