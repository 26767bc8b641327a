"""Interpreter backends: LiteRT, then tflite-runtime, then TensorFlow Lite as a last resort.

All three expose the same ``Interpreter`` API. LiteRT (``ai-edge-litert``) is the default: it hands
int8 graphs to XNNPACK. tflite-runtime 2.14 (its last release) runs int8 graphs on the slower
reference kernels (~18x slower here), so running undelegated is detected and reported.
TensorFlow is only imported if the caller asks for it or nothing else is installed.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from skinedge.errors import BackendError, ModelError

#: Backend names, in the order they are tried.
BACKENDS = ("litert", "tflite_runtime", "tensorflow")
#: Per backend: the module holding ``Interpreter``, the package's top module (for its version), the pip name.
#: TensorFlow's is its own interpreter module: ``import tensorflow.lite`` is the source package, whose
#: ``Interpreter`` attribute TensorFlow 2.21 no longer sets (``tf.lite.Interpreter`` is a lazy API alias).
_MODULES = {
    "litert": ("ai_edge_litert.interpreter", "ai_edge_litert", "ai-edge-litert"),
    "tflite_runtime": ("tflite_runtime.interpreter", "tflite_runtime", "tflite-runtime"),
    "tensorflow": ("tensorflow.lite.python.interpreter", "tensorflow", "tensorflow"),
}


@dataclass(frozen=True)
class BackendInfo:
    """Which interpreter package runs the model."""

    name: str
    package: str
    version: str


@dataclass(frozen=True)
class DelegateStatus:
    """Whether XNNPACK took the graph, read from the interpreter's node list."""

    delegated: bool
    partitions: int  # DELEGATE nodes: 1 means one XNNPACK subgraph ran the whole delegated part

    def describe(self) -> str:
        if not self.delegated:
            return "not delegated (reference kernels)"
        return f"XNNPACK ({self.partitions} partition{'s' * (self.partitions != 1)})"


def usable_cpus() -> int:
    """CPUs this process may run on (respects affinity masks and containers' cpusets)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _load(name: str) -> tuple[Any, BackendInfo]:
    """Import backend ``name``. Raises ImportError when it is absent or unusable (no ``Interpreter``)."""
    module_name, top, package = _MODULES[name]
    if name == "tensorflow":  # its interpreter warns, at every construction, in four lines, that it is deprecated
        warnings.filterwarnings("ignore", r"\s*Warning: tf.lite.Interpreter is deprecated", UserWarning)
    # Captured: TensorFlow's native start-up banner (oneDNN, CUDA, absl) would land on the user's terminal.
    with _captured_native_stderr():
        try:
            module = importlib.import_module(module_name)
            top_module = importlib.import_module(top)
            interpreter_cls = module.Interpreter
        except ImportError:
            raise
        except Exception as exc:  # AttributeError (a release without the API), a broken install's own errors
            raise ImportError(f"{module_name} has no usable Interpreter ({type(exc).__name__}: {exc})") from None
    version = getattr(top_module, "__version__", None)
    if version is None:
        try:
            from importlib.metadata import version as dist_version

            version = dist_version(package)
        except Exception:
            version = "unknown"
    return interpreter_cls, BackendInfo(name=name, package=package, version=str(version))


def load_backend(name: str | None = None) -> tuple[Any, BackendInfo]:
    """Return ``(Interpreter class, BackendInfo)`` for ``name``, or the first installed backend."""
    if name is not None:
        if name not in _MODULES:
            raise BackendError(name, f"unknown backend; choose one of {', '.join(BACKENDS)}")
        try:
            return _load(name)
        except ImportError as exc:
            state = "not installed" if isinstance(exc, ModuleNotFoundError) else "not usable"
            raise BackendError(name, f"{state} ({exc}); pip install {_MODULES[name][2]}") from None
    for candidate in BACKENDS:
        try:
            return _load(candidate)
        except ImportError:
            continue
    raise BackendError(
        "backend",
        "no TFLite interpreter installed: pip install ai-edge-litert "
        "(or tflite-runtime on boards LiteRT has no wheel for)",
    )


def create_interpreter(model_content: bytes, num_threads: int, backend: str | None = None) -> tuple[Any, BackendInfo]:
    """Create and allocate an interpreter with the default (XNNPACK) delegate and ``num_threads``."""
    interpreter_cls, info = load_backend(backend)
    with _captured_native_stderr() as captured:
        try:
            interpreter = interpreter_cls(model_content=model_content, num_threads=num_threads)
            interpreter.allocate_tensors()
        except Exception as exc:
            # The C++ runtime explains itself on stderr (e.g. "Didn't find op for builtin opcode").
            detail = " ".join(captured.text().split())[:300] or str(exc).splitlines()[0][:300]
            raise ModelError("model", f"the interpreter refused it: {detail}") from None
    return interpreter, info


class _Captured:
    def __init__(self, fp: Any) -> None:
        self._fp = fp

    def text(self) -> str:
        self._fp.seek(0)
        data = self._fp.read().decode("utf-8", errors="replace")
        return "\n".join(line for line in data.splitlines() if "Created TensorFlow Lite" not in line)


def _scratch_file() -> Any:
    """An anonymous read/write file: in memory on Linux (memfd), else a temporary file.

    memfd also keeps ``tempfile`` (and the shutil/random/bz2/lzma it imports, ~7 ms) off the cold start."""
    if hasattr(os, "memfd_create"):
        try:
            return open(os.memfd_create("skinedge-stderr"), "w+b")  # noqa: SIM115 (the caller closes it)
        except OSError:
            pass
    import tempfile

    return tempfile.TemporaryFile()


@contextlib.contextmanager
def _captured_native_stderr():
    """Capture what native code writes to fd 2 while building an interpreter (its INFO banner and
    error explanations), so the CLI stays clean and errors can quote the reason."""
    try:
        saved = os.dup(2)
    except OSError:  # no fd 2 (embedded interpreters): nothing to capture
        with _scratch_file() as tmp:
            yield _Captured(tmp)
        return
    with _scratch_file() as tmp:
        sys.stderr.flush()
        os.dup2(tmp.fileno(), 2)
        try:
            yield _Captured(tmp)
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def delegate_status(interpreter: Any) -> DelegateStatus:
    """Count the DELEGATE nodes the delegate left in the graph after ``allocate_tensors``."""
    try:
        # The node names alone: ``_get_ops_details()`` also builds every tensor's details (4 ms of each start).
        wrapper = interpreter._interpreter
        names = [wrapper.NodeName(i) for i in range(wrapper.NumNodes())]
    except Exception:  # private API: fall back to the slower listing, else treat as undelegated
        try:
            names = [op.get("op_name") for op in interpreter._get_ops_details()]
        except Exception:
            return DelegateStatus(delegated=False, partitions=0)
    n = names.count("DELEGATE")
    return DelegateStatus(delegated=n > 0, partitions=n)


def invoke_once(interpreter: Any, inputs: Iterable[tuple[int, Any]], outputs: Iterable[int]) -> list[Any]:
    """Set each ``(tensor index, array)`` of ``inputs``, invoke once, and return the ``outputs`` tensors (copies),
    in order: the one way skinedge runs an interpreter (the classifier's hot path under its lock, the load
    probe, :func:`run_on_images`). No checks, no conversion: callers bring arrays of the input's dtype."""
    for index, tensor in inputs:
        interpreter.set_tensor(index, tensor)
    interpreter.invoke()
    return [interpreter.get_tensor(index) for index in outputs]


def dequantize(raw: Any, detail: dict) -> Any:
    """An output tensor as float64 real values: ``(q - zero_point) * scale`` for a quantized tensor (non-zero
    scale in ``detail["quantization"]``), the values as they are for a float one."""
    scale, zero = detail["quantization"]
    values = raw.astype("float64")
    return (values - zero) * scale if scale else values


def run_on_images(interpreter: Any, images: Any) -> dict[str, Any]:
    """Every output of ``interpreter`` for each of ``images`` (``HxWx3`` arrays, cast to the input type),
    dequantized to float64 and stacked, by output name: the one loop the build tools and tests run a
    converted model with (the classifier's own path adds locking and checks)."""
    import numpy as np

    inp = interpreter.get_input_details()[0]
    outputs = interpreter.get_output_details()
    indices = [d["index"] for d in outputs]
    rows: dict[str, list] = {d["name"]: [] for d in outputs}
    for img in images:
        values = invoke_once(interpreter, ((inp["index"], np.asarray(img)[None].astype(inp["dtype"])),), indices)
        for d, v in zip(outputs, values):
            rows[d["name"]].append(dequantize(v[0], d))
    return {name: np.stack(r) for name, r in rows.items()}
