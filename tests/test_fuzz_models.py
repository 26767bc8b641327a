"""Fuzzed models: a damaged .tflite is refused with a typed error; it never kills the process.

Every case runs in the worker subprocess of ``benchmarks/reliability/fuzz_models.py``, so a crash is a
failed test, not a dead test run. Three parts:

* the structural walk accepts every valid model we have (reference models, converter-made models of
  many kinds in tests/data/valid_models, the bundled model when present): no false refusals;
* regressions: each kind of damage that crashed the raw LiteRT interpreter in the campaign, rebuilt
  here by editing the graph field it hit, is refused with its reason;
* a bounded slice of the campaign (60 mutations of a reference model, 24 of a metadata-packed one).
"""

from __future__ import annotations

import importlib.util
import struct
import sys
from pathlib import Path

import pytest

from skinedge import Classifier
from skinedge.errors import ModelError
from skinedge.flatbuffer_check import _Reader, check_tflite_structure
from skinedge.metadata import unpack
from skinedge.model_io import read_model

ROOT = Path(__file__).resolve().parents[1]
VALID = ROOT / "tests" / "data" / "valid_models"


def _load_campaign():
    spec = importlib.util.spec_from_file_location("fuzz_models", ROOT / "benchmarks" / "reliability" / "fuzz_models.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("fuzz_models", module)
    spec.loader.exec_module(module)
    return module


fm = _load_campaign()


@pytest.fixture(scope="module")
def runner():
    r = fm.Runner(case_timeout=120)
    yield r
    r.close()


# -- no false refusals -------------------------------------------------------------------------------------


def _valid_models(reference_dir: Path) -> list[Path]:
    models = [reference_dir / m for m in fm.REFERENCE_MODELS] + sorted(VALID.glob("*.tflite"))
    return models + sorted((ROOT / "models").glob("*.tflite"))  # the shipped models, when built


def test_walk_accepts_every_valid_model(reference_dir: Path) -> None:
    models = _valid_models(reference_dir)
    assert len(models) >= 14
    for path in models:
        check_tflite_structure(unpack(path.read_bytes(), str(path)).flatbuffer, str(path))
        read_model(path)  # the load path runs it too


def test_valid_image_models_load_and_run(reference_dir: Path, cat_bmp: Path) -> None:
    for path in _valid_models(reference_dir):
        if path.name.startswith("lstm"):
            continue  # not an image model: Classifier refuses its input shape, by design
        with Classifier(path, num_threads=1) as clf:
            assert len(clf.classify(cat_bmp).scores) == len(clf.labels)


# -- regressions: damage that crashed the raw interpreter ----------------------------------------------


class Model:
    """Positions of graph fields in a flatbuffer, for surgical edits."""

    def __init__(self, data: bytes) -> None:
        self.data = bytearray(data)
        r = _Reader(bytes(data))
        self.r = r
        model = r.table(r.u32(0, "root"), "model")
        self.codes = [max(c.scalar(0, "b"), c.scalar(3, "i")) for c in model.tables(1, "codes")]
        self.buffers = [b.vector(0, 1, "data")[1] for b in model.tables(4, "buffers")]
        sg = model.tables(2, "subgraphs")[0]
        self.tensors = sg.tables(0, "tensors")
        self.ops = sg.tables(3, "operators")

    def op_io(self, op: int, slot: int) -> list[int]:
        """Positions of the tensor indices in operator ``op``'s inputs (slot 1) or outputs (slot 2)."""
        start, count = self.ops[op].vector(slot, 4, "io")
        return [start + 4 * i for i in range(count)]

    def first_op(self, builtin: int) -> int:
        return next(i for i, op in enumerate(self.ops) if self.codes[op.scalar(0, "I")] == builtin)

    def constant_tensor(self) -> int:
        return next(i for i, t in enumerate(self.tensors) if self.buffers[t.scalar(2, "I")] > 0)

    def set_i32(self, pos: int, value: int) -> bytes:
        self.data[pos : pos + 4] = struct.pack("<i", value)
        return bytes(self.data)


def _guarded(runner, tmp_path: Path, data: bytes, name: str) -> dict:
    path = tmp_path / f"{name}.tflite"
    path.write_bytes(data)
    return runner.run({"kind": "file", "path": str(path), "mode": "guarded"})


def _flatbuffer(path: Path) -> bytes:
    return unpack(path.read_bytes(), str(path)).flatbuffer


def test_operator_writing_a_constant_refused(runner, tmp_path: Path, quant_model: Path) -> None:
    """Campaign: quant model, byte 3548808 0x10 -> 0x80 moved operator 31's outputs onto tensor 1 (weights):
    SIGABRT in the raw interpreter."""
    m = Model(_flatbuffer(quant_model))
    data = m.set_i32(m.op_io(31, 2)[0], m.constant_tensor())
    res = _guarded(runner, tmp_path, data, "writes_constant")
    assert res["outcome"] == "refused", res
    assert res["error"] == "ModelError"
    assert "operators[31] writes tensor" in res["reason"] and "a constant" in res["reason"]


def test_conv_without_weights_refused(runner, tmp_path: Path, ptq_model: Path) -> None:
    """Campaign: ptq model, a CONV_2D's weights input set to -1 ("optional, left out"): SIGSEGV raw."""
    m = Model(_flatbuffer(ptq_model))
    op = m.first_op(3)
    data = m.set_i32(m.op_io(op, 1)[1], -1)
    res = _guarded(runner, tmp_path, data, "conv_no_weights")
    assert res["outcome"] == "refused", res
    assert f"operators[{op}] (builtin operator 3) leaves out its required input 1" in res["reason"]


def test_conv_without_bias_still_accepted(ptq_model: Path) -> None:
    """The bias of a convolution may really be left out: the walk must not refuse that."""
    m = Model(_flatbuffer(ptq_model))
    check_tflite_structure(m.set_i32(m.op_io(m.first_op(3), 1)[2], -1))


def test_zero_point_outside_int8_refused(runner, tmp_path: Path, ptq_model: Path) -> None:
    """Campaign: ptq model, byte 3585817 0xff -> 0xf7 turned tensor 109's zero point -1 into -2049: SIGSEGV raw."""
    m = Model(_flatbuffer(ptq_model))
    q = m.r.table(m.tensors[109].ref(4), "q")
    start, count = q.vector(3, 8, "zero_point")
    assert count == 1
    m.data[start : start + 8] = struct.pack("<q", -2049)
    res = _guarded(runner, tmp_path, bytes(m.data), "zero_point")
    assert res["outcome"] == "refused", res
    assert "tensors[109] has a zero point outside -128..127" in res["reason"]


def test_scale_without_zero_point_refused(runner, tmp_path: Path, quant_model: Path) -> None:
    """Campaign (quant, struct_word 411): a quantized tensor that lost its zero points: SIGABRT raw."""
    m = Model(_flatbuffer(quant_model))
    t = next(i for i, t in enumerate(m.tensors) if t.ref(4) is not None and m.r.table(t.ref(4), "q").field(3, 4))
    q = m.r.table(m.tensors[t].ref(4), "q")
    m.data[q.vtable + 4 + 2 * 3 : q.vtable + 4 + 2 * 3 + 2] = b"\x00\x00"  # zero_point field: absent
    res = _guarded(runner, tmp_path, bytes(m.data), "no_zero_point")
    assert res["outcome"] == "refused", res
    assert "quantization scales and 0 zero points" in res["reason"]


def test_weights_without_data_refused(runner, tmp_path: Path, quant_model: Path) -> None:
    """Campaign (quant, struct_word 44 and 276): a weights tensor pointed at an empty buffer. The raw
    interpreter loads it and fails at invoke with a RuntimeError that escaped skinedge untyped."""
    m = Model(_flatbuffer(quant_model))
    t = m.constant_tensor()
    data = m.set_i32(m.tensors[t].field(2, 4), 0)  # buffer 0: the empty one
    res = _guarded(runner, tmp_path, data, "empty_weights")
    assert res["outcome"] == "refused", res
    assert f"reads tensor {t}, which has no data" in res["reason"]


def test_buffer_size_not_matching_shape_refused(quant_model: Path) -> None:
    m = Model(_flatbuffer(quant_model))
    t = m.constant_tensor()
    shape_start, _ = m.tensors[t].vector(0, 4, "shape")
    first = struct.unpack_from("<i", m.data, shape_start)[0]
    with pytest.raises(ModelError, match=r"needs \d+ bytes, its buffer \d+ holds \d+"):
        check_tflite_structure(m.set_i32(shape_start, first * 2))


def test_operator_code_out_of_range_refused(quant_model: Path) -> None:
    m = Model(_flatbuffer(quant_model))
    op = next(i for i, op in enumerate(m.ops) if op.field(0, 4) is not None)  # code 0 is stored as absent
    data = m.set_i32(m.ops[op].field(0, 4), len(m.codes))
    with pytest.raises(ModelError, match=rf"operators\[{op}\] uses operator code \d+; there are \d+"):
        check_tflite_structure(data)


# Campaign cases on the small converter-made models (tests/data/valid_models): (model, kind, seed, what LiteRT
# 2.3 did with it, the reason skinedge now gives). Rebuilt with the campaign's own deterministic mutation.
CAMPAIGN_REGRESSIONS = [
    ("image_float32", "graph_index", 661, "SIGSEGV: STRIDED_SLICE strides input set to -1",
     "(builtin operator 45) leaves out its required input 3"),
    ("image_int8_io_int8", "graph_index", 261, "SIGSEGV: a MAX_POOL_2D turned into a 1-input STRIDED_SLICE",
     "(builtin operator 45) has 1 inputs; it takes 4"),
    ("float_ops_float16", "struct_byte", 931, "SIGSEGV: fp16 weights dequantized into a [4, 3, 9699331, 3] tensor",
     "dequantizes a [4, 3, 3, 3] constant into a [4, 3, 9699331, 3] tensor"),
    ("image_int16x8", "struct_word", 372, "SIGABRT: a quantization scale of -0.0",
     "has a quantization scale that is not a positive normal float"),
    ("float_ops_int8_io_uint8", "struct_word", 50972, "SIGSEGV: a scale of 1/256 turned into 9.2e-41 (denormal)",
     "has a quantization scale that is not a positive normal float"),
    ("float_ops_int8_io_uint8", "struct_word", 50780, "SIGSEGV: a scale turned into 3.6e-43 (denormal)",
     "has a quantization scale that is not a positive normal float"),
    ("float_ops_float32", "struct_byte", 243, "UnicodeDecodeError escaping skinedge: tensor name not UTF-8",
     "name is not valid UTF-8"),
    ("image_int8_io_uint8", "graph_tensor", 198, "ValueError escaping skinedge: output tensor of type BFLOAT16",
     "has type 18, which no numpy array can hold"),
    ("image_float16", "graph_tensor", 14, "IndexError escaping skinedge: output shape [0, 5], numeric labels",
     "output tensor [0, 5] holds 0 values, not one score per class"),
    ("image_float32", "struct_byte", 59, "60 s and GBs: output shape [16711681, 5], 83M numeric labels built",
     "output tensor [16711681, 5] holds 83558405 values"),
    ("image_float32", "graph_tensor", 654, "IndexError escaping skinedge: declared output [1, 1], computed [1, 5]",
     "the model gave 5 values for 1 labels"),
]


@pytest.mark.parametrize(("model", "kind", "seed", "before", "reason"), CAMPAIGN_REGRESSIONS,
                         ids=[f"{m}-{k}-{s}" for m, k, s, _, _ in CAMPAIGN_REGRESSIONS])
def test_campaign_regression(runner, model: str, kind: str, seed: int, before: str, reason: str) -> None:
    res = runner.run({"base": str(VALID / f"{model}.tflite"), "kind": kind, "seed": seed, "mode": "guarded"})
    assert res["outcome"] == "refused", (before, res)
    assert res["error"] == "ModelError" and reason in res["reason"], (before, res)


# -- bounded campaign ---------------------------------------------------------------------------------------


def test_bounded_campaign_reference_model(runner, quant_model: Path) -> None:
    base = str(quant_model)
    kinds = fm.FLATBUFFER_KINDS + fm.ARCHIVE_KINDS
    outcomes = []
    for case in fm.cases_for(Path(base), kinds, 60, seed0=100_000):
        res = runner.run({**case, "mode": "guarded"})
        assert res["outcome"] in ("ok", "refused"), (case, res)
        if res["outcome"] == "refused":
            assert res["error"] in ("ModelError", "MetadataError"), (case, res)
        outcomes.append(res["outcome"])
    assert "refused" in outcomes


def test_bounded_campaign_packed_model(runner, tmp_path: Path, reference_dir: Path) -> None:
    """A model with skinedge metadata: any change to its flatbuffer is caught by the recorded SHA-256."""
    packed = fm.make_packed_model(reference_dir / fm.REFERENCE_MODELS[0], tmp_path / "packed.tflite")
    kinds = ("bitflip", "struct_bitflip", "struct_word", "graph_index", "graph_options", "archive_bitflip")
    for case in fm.cases_for(packed, kinds, 24, seed0=200_000):
        res = runner.run({**case, "mode": "guarded"})
        assert res["outcome"] == "refused", (case, res)
        if case["kind"].startswith("archive"):
            assert res["error"] == "MetadataError" and "metadata" in res["reason"], (case, res)
        else:
            assert "SHA-256 does not match" in res["reason"], (case, res)


# -- the opt-in probe: what the walk cannot judge ---------------------------------------------------------------


def test_probe_refuses_what_crashes_the_interpreter(runner, tmp_path: Path) -> None:
    """An LSTM whose options were damaged (campaign: lstm_float32 graph_options seed 31) passes the walk and
    segfaults LiteRT 2.3 in allocate_tensors; with the probe, skinedge refuses it and this process lives."""
    base = fm.Base(VALID / "lstm_float32.tflite")
    data, _ = fm.mutate(base, "graph_options", 31)
    check_tflite_structure(data)  # the walk does not judge operator options
    raw = runner.run({"kind": "graph_options", "seed": 31, "base": str(base.path), "mode": "raw"})
    path = tmp_path / "lstm_damaged.tflite"
    path.write_bytes(data)
    try:
        read_model(path, probe=True)
    except ModelError as exc:
        if raw["outcome"] == "crash":
            assert exc.reason == f"the model crashes the interpreter ({raw['signal']} in a probe process)"
    else:
        assert raw["outcome"] != "crash", "the probe passed a model that crashes the interpreter"


def test_probe_passes_valid_models_once(quant_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    import skinedge.model_io as model_io

    calls = []
    real_run = subprocess.run  # the probe imports subprocess when it runs (kept off the cold start)
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: calls.append(a) or real_run(*a, **k))
    monkeypatch.setattr(model_io, "_probed", set())
    monkeypatch.setenv(model_io.PROBE_ENV, "1")
    for _ in range(3):
        read_model(quant_model)  # the environment variable turns the probe on
    assert len(calls) == 1  # remembered by SHA-256
    monkeypatch.setenv(model_io.PROBE_ENV, "0")
    monkeypatch.setattr(model_io, "_probed", set())
    read_model(quant_model)
    assert len(calls) == 1
