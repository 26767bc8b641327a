"""The shipped model is what its card and metadata say: its checksum, its provenance, its test figures, and
what a rebuild from the committed checkpoint gives on this machine."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
from bundled import DEFAULT, full_rebuild

from skinedge import Classifier
from skinedge.model_io import bundled_model_path
from skinedge.selftest import run_selftest

ROOT = Path(__file__).resolve().parents[1]
RUN = DEFAULT.run  # the default bundled model's training run
INT8_NAME, FLOAT_NAME = DEFAULT.int8.name, DEFAULT.float32.name


@pytest.fixture(scope="module")
def bundled() -> Classifier:
    with Classifier(num_threads=2) as clf:
        yield clf


@pytest.fixture(scope="session")
def committed_test_results(skin6_dir) -> tuple[list[str], list]:
    """The bundled model's results on the 449 test photos, classified once for every test here (session scope:
    the rebuild tests run at the end of the session, conftest.py)."""
    files = (RUN / "test_files.txt").read_text().split()
    with Classifier(num_threads=2) as clf:
        return files, [clf.classify(skin6_dir / f) for f in files]


def test_bundled_model_is_the_committed_int8_file_and_checks_out(bundled):
    path = bundled_model_path()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert path.with_name(path.name + ".sha256").read_text().split()[0] == digest
    assert bundled.delegated and bundled.input_details["dtype"] == np.uint8
    assert all(check.passed for check in run_selftest(bundled, bundled.model_files))


def test_metadata_names_the_committed_checkpoint(bundled):
    prov = bundled.metadata.provenance
    checkpoint = RUN / prov["checkpoint"]
    assert hashlib.sha256(checkpoint.read_bytes()).hexdigest() == prov["checkpoint_sha256"]
    assert prov["dataset"] == "skin6" and prov["representative_images"] == 500


def test_recorded_test_metrics_reproduce_through_the_runtime(bundled, committed_test_results):
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    labels = bundled.labels
    files, results = committed_test_results
    y = np.asarray([labels.index(Path(f).parts[1]) for f in files])
    pred = np.asarray([r.index for r in results])
    metrics = bundled.metadata.metrics
    assert metrics["test_n"] == len(files) == 449
    assert round(float((pred == y).mean()), 4) == metrics["test_accuracy"]
    assert round(sklearn_metrics.f1_score(y, pred, average="macro"), 4) == metrics["test_macro_f1"]


def test_evaluate_command_reproduces_recorded_metrics(bundled, skin6_dir):
    """``skinedge-tools evaluate`` scores the calibrated probabilities the file outputs (a second softmax
    over them would flatten every score: ECE 0.48 instead of 0.036 on this model)."""
    pytest.importorskip("skinedge_tools", reason="skinedge-tools evaluate needs the tools (pip install -e ./tools)")
    import json

    from click.testing import CliRunner
    from skinedge_tools.cli import main

    args = ["evaluate", "--model", str(bundled_model_path()), "--data", str(skin6_dir), "--json"]
    out = CliRunner().invoke(main, args)
    assert out.exit_code == 0, out.output
    got = json.loads(out.output)
    recorded = bundled.metadata.metrics
    assert got["failed"] == 0 and got["n"] == recorded["test_n"]
    assert round(got["accuracy"], 4) == recorded["test_accuracy"]
    assert round(got["macro_f1"], 4) == recorded["test_macro_f1"]
    assert got["ece"] == pytest.approx(recorded["test_ece_calibrated"], abs=1e-3)


# ---------------------------------------------------------------- rebuild from the committed checkpoint
# TensorFlow's float kernels differ by CPU (oneDNN and Eigen pick AVX2, AVX-512 or NEON code paths), and GPTQ,
# bias correction, the calibration ranges and the finer-map fit all sum floats, so a rebuild on another CPU
# gives a file that is equal in structure and near-equal in numbers, not equal in bytes. The tolerances
# (docs/method.md, "Determinism") were measured on the paper's MobileNetV2, then the default: an AVX-512 rebuild
# against its AVX2-built committed file. The default is now EfficientNet-Lite0, built on an AVX-512 Xeon, whose
# rebuild on another CPU has not been measured yet; the same bounds apply, and the figures below are MobileNetV2's:
#: int8 weights: at most one quantization step apart (measured: 3 of 2.2 million weights moved one step) ...
WEIGHT_MAX_STEPS = 1
#: ... and few of them: a share of all int8 weights, and of any one tensor (measured 1.4e-6; 0.7% of the 288
#: weights of one depthwise kernel, where GPTQ's error feedback carries one changed rounding to its row).
WEIGHT_MAX_MOVED_TOTAL, WEIGHT_MAX_MOVED_PER_TENSOR = 1e-3, 0.02
#: Quantization scales (weights, biases, activations), relative: a scale off by 1e-3 moves the largest int8
#: value (127 steps) by 0.13 of a step (measured 3e-5). Zero points: at most 1 apart (measured: equal).
SCALE_RTOL, ZERO_POINT_MAX = 1e-3, 1
#: int32 biases, dequantized, in steps of the output they are added to (measured 0.031).
BIAS_MAX_OUTPUT_STEPS = 0.25
#: float32 constants, relative L2 (measured 7e-8 for those that come from the checkpoint) ...
FLOAT_RTOL = 1e-4
#: ... except the finer-map head in the int8 file: a ridge fit to the rebuilt int8 body's own features, which
#: moves with them (measured 3.8%); its fit quality (R^2, in the metadata) is held to 0.01 (measured 0.0013).
FITTED_HEAD_RTOL, FIT_R2_TOL = 0.2, 0.01
#: Top-1 agreement with the committed int8 file on the 449 test photos: the project's own goal for int8 against
#: float32 (98%, met at 98.2%); a rebuild must not change answers more than quantizing did (measured 99.3%:
#: 3 photos). And none of the photos that moved may be one the committed file answers (top score at or above
#: its abstain threshold): only near-ties may flip (measured: top scores 0.34-0.48, threshold 0.62).
MIN_TOP1_AGREEMENT = 0.98
#: Recorded metrics: accuracy and macro-F1 within 0.02 (9 of 449 test photos; the 95% bootstrap CIs are about
#: +-0.04 wide each side), ECE within 0.015, temperature within 2%, abstain threshold within 0.02 (2 steps of
#: its 0.01 grid). Measured: 0.0044, 0.0030, 0.0053, 0.4%, 0.01.
METRIC_TOL = {
    **{f"{split}_{m}": 0.02 for split in ("test", "val") for m in ("accuracy", "macro_f1")},
    "test_ece_calibrated": 0.015,
    "test_ece_uncalibrated": 0.015,
    # the gates (issue 21): coverage of the 449 skin6 photos of a split within 0.03 (13 photos); the share of each
    # outlier set answered within 0.05 (3 of 60 not-skin photos; 6 of ~130 other-condition photos)
    **{f"{split}_coverage": 0.03 for split in ("test", "val")},
    **{f"{split}_answered_{g}": 0.05 for split in ("test", "val") for g in ("not_skin", "other_condition")},
}
#: Gate thresholds are chosen on a grid over validation scores: a rebuild may land a few grid points away while
#: answering the same photos (the metrics above hold it to that); measured: see docs/abstention.md.
GATE_THRESHOLD_TOL = 0.1
TEMPERATURE_RTOL, ABSTAIN_TOL = 0.02, 0.02
#: The test-mode rebuild (100 calibration images, conftest.py) differs from the committed file by its calibration,
#: not only by its CPU: 9.6% of the int8 weights sit one step or two away, and the finer map's ridge head, fitted on
#: 100 photos instead of 500, is another fit (relative L2 1.04, R^2 0.87 in-sample against 0.74, MobileNetV2). So it
#: is held to the graph, the float32 constants from the checkpoint, the answers and the metrics. Measured on the
#: default, EfficientNet-Lite0 (AVX-512 Xeon, the build machine): top-1 agreement 98.9% (5 photos moved, committed
#: top scores 0.28-0.49, all below the 0.51 threshold); accuracy 0.8263 against 0.8241, macro-F1 0.8364 against
#: 0.8348, calibrated ECE 0.035 against 0.040, temperature 0.689 against 0.686, abstain threshold equal. (MobileNetV2,
#: when it was the default: 98.2%, 0.7817 / 0.7751, 0.7890 / 0.7838, ECE 0.052 / 0.039.)
TEST_MODE_MIN_TOP1_AGREEMENT = 0.97
NEAR_TIE = 0.1


def _margin(result) -> float:
    """The top score's lead over the second: how far a result is from a tie."""
    first, second = sorted(result.scores, reverse=True)[:2]
    return first - second
TEST_MODE_ECE_TOL = 0.03
FULL_ONLY = (
    "int8 weights compare only after a rebuild with the committed 500 calibration images (SKINEDGE_FULL_REBUILD=1)"
)


@dataclasses.dataclass
class _Tensor:
    type: int
    shape: tuple[int, ...]
    scale: np.ndarray | None
    zero: np.ndarray | None
    data: np.ndarray | None  # constants only


_NUMPY_TYPES = {0: np.float32, 2: np.int32, 3: np.uint8, 4: np.int64, 7: np.int16, 9: np.int8}


def _graph(path: Path):
    """The flatbuffer as objects (TensorFlow's schema reader), tensors by (subgraph, name), operators by name."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(Path(path).read_bytes()))
    tensors, operators = {}, []
    for s, graph in enumerate(model.subgraphs):
        names = [t.name.decode() for t in graph.tensors]
        for name, t in zip(names, graph.tensors):
            q, buf = t.quantization, model.buffers[t.buffer].data
            data = None
            if buf is not None and len(buf):
                data = np.frombuffer(bytes(buf), _NUMPY_TYPES[t.type]).reshape(() if t.shape is None else t.shape)
            scale = None if q is None or q.scale is None else np.asarray(q.scale, np.float64)
            zero = None if q is None or q.zeroPoint is None else np.asarray(q.zeroPoint, np.int64)
            shape = () if t.shape is None else tuple(int(v) for v in t.shape)
            tensors[(s, name)] = _Tensor(int(t.type), shape, scale, zero, data)
        for op in graph.operators:
            code = model.operatorCodes[op.opcodeIndex]
            ins = tuple(names[i] if i >= 0 else None for i in op.inputs)
            builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
            operators.append((s, builtin, ins, tuple(names[i] for i in op.outputs)))
        operators.append((s, "io", tuple(names[i] for i in graph.inputs), tuple(names[i] for i in graph.outputs)))
    return tensors, operators


def _compare_tensors(rebuilt: Path, committed: Path, fitted: tuple[str, ...] = ()) -> tuple[list[str], dict]:
    """Every way the rebuilt file's graph is further from the committed one's than the tolerances allow, and
    what was measured. ``fitted``: name prefixes of float constants held to FITTED_HEAD_RTOL."""
    got, got_ops = _graph(rebuilt)
    want, want_ops = _graph(committed)
    problems: list[str] = []
    if got_ops != want_ops or {k: (t.type, t.shape) for k, t in got.items()} != {
        k: (t.type, t.shape) for k, t in want.items()
    }:
        return ["graph structure differs (operators, their tensors, or tensor types and shapes)"], {}
    out_scale = {}  # bias -> scale of the output its operator writes
    for s, _, ins, outs in want_ops:
        scale = want[(s, outs[0])].scale
        if len(ins) > 2 and ins[2] is not None and scale is not None and len(scale):
            out_scale[(s, ins[2])] = float(scale[0])
    moved = total = 0
    seen = {"weight_tensors": 0, "weight_max_steps": 0, "weight_moved_per_tensor": 0.0, "scale_rel": 0.0}
    seen.update(biases_in_graph=len(out_scale), bias_tensors=0, bias_output_steps=0.0, float_rel={}, zero_point=0)
    for key, w in want.items():
        g, name = got[key], key[1]
        if w.scale is not None and len(w.scale):
            rel = float(np.max(np.abs(g.scale - w.scale) / np.maximum(np.abs(w.scale), 1e-30)))
            dz = int(np.max(np.abs(g.zero - w.zero))) if w.zero is not None and len(w.zero) else 0
            seen["scale_rel"], seen["zero_point"] = max(seen["scale_rel"], rel), max(seen["zero_point"], dz)
            if rel > SCALE_RTOL or dz > ZERO_POINT_MAX:
                problems.append(f"{name}: scale {rel:.2e} relative, zero point {dz} apart")
        if w.data is None:
            continue
        if w.type in (3, 9) and w.scale is not None:  # int8 / uint8 weights
            steps = np.abs(g.data.astype(np.int32) - w.data.astype(np.int32))
            share = float((steps > 0).mean())
            moved, total = moved + int((steps > 0).sum()), total + steps.size
            seen["weight_tensors"] += 1
            seen["weight_max_steps"] = max(seen["weight_max_steps"], int(steps.max()))
            seen["weight_moved_per_tensor"] = max(seen["weight_moved_per_tensor"], share)
            if steps.max() > WEIGHT_MAX_STEPS or share > WEIGHT_MAX_MOVED_PER_TENSOR:
                problems.append(f"{name}: weights up to {steps.max()} steps apart, {share:.2%} moved")
        elif w.type == 2 and w.scale is not None and len(w.scale) and key in out_scale:  # int32 bias
            apart = np.abs(g.data * g.scale - w.data * w.scale).max() / out_scale[key]
            seen["bias_output_steps"] = max(seen["bias_output_steps"], float(apart))
            seen["bias_tensors"] += 1
            if apart > BIAS_MAX_OUTPUT_STEPS:
                problems.append(f"{name}: bias {apart:.3f} output steps apart")
        elif w.type == 0:
            a, b = g.data.astype(np.float64), w.data.astype(np.float64)
            rel = float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))
            tol = FITTED_HEAD_RTOL if name.startswith(fitted) and fitted else FLOAT_RTOL
            seen["float_rel"][name] = rel
            if rel > tol:
                problems.append(f"{name}: float constant {rel:.2e} apart (relative L2; allowed {tol})")
        elif not np.array_equal(g.data, w.data):  # shapes, axes, anything else: exactly equal
            problems.append(f"{name}: constant differs")
    seen["weights_moved_total"] = moved / max(total, 1)
    if moved > WEIGHT_MAX_MOVED_TOTAL * total:
        problems.append(f"{moved} of {total} int8 weights moved one step ({moved / total:.2e})")
    return problems, seen


def _same_metadata_apart_from_measurements(rebuilt, committed, full: bool = True) -> None:
    """Labels, preprocessing, tensors, provenance and map layout equal; measured numbers within tolerance.
    ``full=False`` (the test-mode rebuild): the calibration count and the finer map's fit are its own."""
    skip = {"metrics", "abstain_threshold", "model_sha256", "explain", "provenance", "gate_thresholds"}
    for field in dataclasses.fields(committed):
        if field.name not in skip:
            assert getattr(rebuilt, field.name) == getattr(committed, field.name), field.name
    calibration = {} if full else {"representative_images": None}
    assert {**rebuilt.provenance, **calibration} == {**committed.provenance, **calibration}
    assert abs(rebuilt.abstain_threshold - committed.abstain_threshold) <= ABSTAIN_TOL + 1e-9
    assert set(rebuilt.gate_thresholds) == set(committed.gate_thresholds)
    for gate, want_t in committed.gate_thresholds.items():
        assert abs(rebuilt.gate_thresholds[gate] - want_t) <= GATE_THRESHOLD_TOL, (gate, rebuilt.gate_thresholds)
    got, want = rebuilt.metrics, committed.metrics
    assert set(got) == set(want)
    for key in want:
        if key == "calibration_temperature":
            assert abs(got[key] - want[key]) <= TEMPERATURE_RTOL * want[key], (key, got[key], want[key])
        elif key in METRIC_TOL:
            tol = METRIC_TOL[key] if full or not key.startswith("test_ece") else TEST_MODE_ECE_TOL
            assert abs(got[key] - want[key]) <= tol, (key, got[key], want[key])
        else:  # counts, and any metric given no tolerance here yet
            assert got[key] == want[key], f"{key}: {got[key]} != {want[key]} (a measured metric needs a tolerance)"
    if committed.explain:
        maps_got, maps_want = rebuilt.explain["maps"], committed.explain["maps"]
        assert {**rebuilt.explain, "maps": None} == {**committed.explain, "maps": None}
        fit = {"fit_r2": None} if full else {"fit_r2": None, "fit_images": None}
        assert [{**m, **fit} for m in maps_got] == [{**m, **fit} for m in maps_want]
        for a, b in zip(maps_got, maps_want):
            if full:
                assert abs(a.get("fit_r2", 0) - b.get("fit_r2", 0)) <= FIT_R2_TOL, (a, b)
            else:  # another fit, on fewer photos: it must still explain most of the logits' variance
                assert a.get("fit_r2", 1) >= 0.5, a


@pytest.mark.slow
def test_rebuilt_int8_graph_is_the_committed_one(rebuilt_models):
    """Operators, tensor names, types and shapes, inputs and outputs: equal, whatever the calibration."""
    problems, _ = _compare_tensors(rebuilt_models / INT8_NAME, bundled_model_path())
    assert not [p for p in problems if p.startswith("graph structure")], problems[:1]


@pytest.mark.slow
def test_rebuilt_int8_weights_and_scales_match_the_committed_file(rebuilt_models):
    """Same graph, tensor by named tensor: int8 weights within one step (and few of them moved), biases within
    a quarter of an output step, scales and zero points within tolerance, float constants within 1e-4."""
    from skinedge_tools.tflite_edit import CLASS_MAPS_FINE

    if not full_rebuild():
        pytest.skip(FULL_ONLY)
    problems, seen = _compare_tensors(rebuilt_models / INT8_NAME, bundled_model_path(), fitted=(CLASS_MAPS_FINE,))
    assert not problems, "\n".join(problems[:30])
    # It compared what it says: int8 weights, and the bias of every quantized convolution and of the dense head
    # (EfficientNet-Lite0: 49 convolutions + the head = 50 biases; MobileNetV2: 52 + 1).
    assert seen["weight_tensors"] >= 50 and seen["bias_tensors"] == seen["biases_in_graph"] >= 50, seen


@pytest.mark.slow
def test_rebuilt_float32_constants_match_the_committed_file(rebuilt_models):
    """The float32 file is the checkpoint converted: its constants do not depend on the calibration, apart from
    the finer map's ridge head (fitted to the calibration photos), which the test-mode rebuild fits on its own."""
    from skinedge_tools.tflite_edit import CLASS_MAPS_FINE

    problems, seen = _compare_tensors(rebuilt_models / FLOAT_NAME, ROOT / "models" / FLOAT_NAME)
    if not full_rebuild():
        problems = [p for p in problems if not p.startswith(CLASS_MAPS_FINE)]
    assert not problems, "\n".join(problems[:30])
    assert len(seen["float_rel"]) > 100  # every layer's kernel and bias was compared


@pytest.mark.slow
def test_rebuilt_int8_answers_the_test_photos_as_the_committed_file(
    rebuilt_models, bundled, committed_test_results, skin6_dir
):
    files, committed = committed_test_results
    with Classifier(rebuilt_models / INT8_NAME, num_threads=2) as clf:
        assert all(check.passed for check in run_selftest(clf, clf.model_files))  # its own recorded vectors
        rebuilt = [clf.classify(skin6_dir / f) for f in files]
    moved = [i for i, (a, b) in enumerate(zip(rebuilt, committed)) if a.index != b.index]
    least = MIN_TOP1_AGREEMENT if full_rebuild() else TEST_MODE_MIN_TOP1_AGREEMENT
    assert 1 - len(moved) / len(files) >= least, f"{len(moved)} of {len(files)} test photos changed class"
    # The gated default answers low top scores too (its abstain threshold is 0: docs/abstention.md), so a photo it
    # answers may flip, but only a near-tie: top two scores within NEAR_TIE (measured: 0.000 and 0.058, the two
    # photos that moved in a test-mode rebuild).
    answered = [files[i] for i in moved if committed[i].reason is None and _margin(committed[i]) >= NEAR_TIE]
    assert not answered, f"photos the committed model answers clearly changed class: {answered}"


@pytest.mark.slow
@pytest.mark.parametrize("name", [INT8_NAME, FLOAT_NAME])
def test_rebuilt_metadata_and_recorded_metrics_match_within_tolerance(rebuilt_models, name):
    with Classifier(rebuilt_models / name, num_threads=1) as got:
        with Classifier(ROOT / "models" / name, num_threads=1) as want:
            _same_metadata_apart_from_measurements(got.metadata, want.metadata, full=full_rebuild())


@pytest.mark.slow
def test_rebuild_is_byte_identical_on_the_build_machine(rebuilt_models):
    """Byte identity holds only on a CPU whose TensorFlow kernels compute exactly as the build machine's did, so
    it is asserted where ``SKINEDGE_BUILD_MACHINE=1`` says this is that machine (docs/method.md)."""
    if os.environ.get("SKINEDGE_BUILD_MACHINE") != "1":
        pytest.skip("byte identity is checked on the build machine only (SKINEDGE_BUILD_MACHINE=1)")
    for name in (INT8_NAME, FLOAT_NAME):
        assert (rebuilt_models / name).read_bytes() == (ROOT / "models" / name).read_bytes(), name
