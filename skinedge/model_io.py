"""Reading model files safely: size and structure checks, metadata, checksums, the bundled model."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

from skinedge.digest import sha256_hex
from skinedge.errors import ModelError
from skinedge.flatbuffer_check import check_tflite_structure
from skinedge.metadata import ModelFile, unpack

#: The int8 models bundled with the package (package ``skinedge.bundled``, from ``models/``), by name.
BUNDLED_MODELS = {
    "efficientnet-lite0": "skinedge_efficientnet_lite0_int8.tflite",
    "mobilenetv2": "skinedge_mobilenetv2_int8.tflite",  # the 2025 paper's network
}
#: The bundled model used when none is named: the one that measured best on validation (docs/report.md).
DEFAULT_MODEL = "efficientnet-lite0"
#: File name of the default bundled model.
BUNDLED_MODEL = BUNDLED_MODELS[DEFAULT_MODEL]
#: Models larger than this are refused before reading (the bundled int8 files are 3-4 MB).
MAX_MODEL_BYTES = 512 * 1024 * 1024
#: Set this environment variable to 1 to probe every model in a child process before loading it.
PROBE_ENV = "SKINEDGE_PROBE_MODELS"
#: Seconds a probe may take to build an interpreter and invoke it once.
PROBE_TIMEOUT_S = 120.0
_probed: set[str] = set()  # SHA-256 of flatbuffers that passed a probe in this process
_probed_lock = threading.Lock()


def bundled_model_path(name: str | None = None) -> Path:
    """Path of a model shipped inside the package: ``name`` is a key of :data:`BUNDLED_MODELS`
    (None: :data:`DEFAULT_MODEL`).

    Raises:
        ModelError: no bundled model has that name, or it is missing from this installation.
    """
    from importlib.util import find_spec  # not importlib.resources: ~2 ms less on every cold start

    name = DEFAULT_MODEL if name is None else name
    if name not in BUNDLED_MODELS:
        raise ModelError(name, f"no bundled model of that name (bundled: {', '.join(BUNDLED_MODELS)})")
    spec = find_spec("skinedge.bundled")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("skinedge.bundled", "the bundled model package is missing from this installation")
    path = Path(list(spec.submodule_search_locations)[0]) / BUNDLED_MODELS[name]
    if not path.is_file():
        raise ModelError(str(path), f"the bundled model {name!r} is missing from this installation; pass a model path")
    return path


def resolve_model(model: str | os.PathLike | None) -> Path:
    """The file a ``model`` argument names: None is the default bundled model, a key of :data:`BUNDLED_MODELS`
    in any case (``"mobilenetv2"``, ``"MobileNetV2"``) that bundled model, unless a file of that name exists;
    anything else a path."""
    if model is None or (isinstance(model, str) and model in BUNDLED_MODELS):
        return bundled_model_path(model)
    path = Path(model)
    if isinstance(model, str) and model.lower() in BUNDLED_MODELS and not path.exists():
        return bundled_model_path(model.lower())
    if isinstance(model, str) and not path.suffix and len(path.parts) == 1 and not path.exists():
        # A bare word that is neither a file nor a bundled name: most likely a mistyped name.
        raise ModelError(model, f"no such model file, and no bundled model of that name "
                                f"(bundled: {', '.join(BUNDLED_MODELS)})")
    return path


def _is_bundled(path: Path) -> bool:
    try:
        bundled = bundled_model_path().parent
        return path.parent.resolve() == bundled.resolve() and path.name in BUNDLED_MODELS.values()
    except (ModelError, OSError):
        return False


def _recorded_sha256(path: Path) -> str | None:
    sidecar = path.with_name(path.name + ".sha256")
    if not sidecar.is_file():
        return None
    return sidecar.read_text().split()[0].strip().lower()


def read_model(path: str | os.PathLike, *, verify: bool = True, probe: bool | None = None) -> ModelFile:
    """Read and check a ``.tflite`` file before any interpreter sees it.

    Checks: the file exists and is a plausible size; it is a TFLite flatbuffer; its metadata (if
    any) parses and agrees with itself; with ``verify``, the flatbuffer's SHA-256 matches the one in
    the metadata and the whole file matches a ``<name>.sha256`` file beside it, if there is one
    (the bundled model has one), and the flatbuffer passes a structural walk of its graph
    (:func:`skinedge.flatbuffer_check.check_tflite_structure`: indices, buffer sizes, data flow),
    which refuses the damage that crashes an interpreter instead of raising an error. With ``probe``
    (default: the ``SKINEDGE_PROBE_MODELS`` environment variable is set to 1), the model is also run
    once in a child process first (:func:`probe_model`): the guard for models from untrusted sources.

    Raises:
        ModelError: missing, unreadable, damaged or not a TFLite model.
        MetadataError: metadata malformed or inconsistent.
    """
    p = Path(path)
    name = str(p)
    try:
        size = p.stat().st_size
    except FileNotFoundError:
        raise ModelError(name, "no such model file") from None
    except OSError as exc:
        raise ModelError(name, f"cannot read model ({exc.strerror or exc})") from None
    if p.is_dir():
        raise ModelError(name, "is a directory, not a .tflite model")
    if size > MAX_MODEL_BYTES:
        raise ModelError(name, f"model file is {size} bytes, above the {MAX_MODEL_BYTES}-byte limit")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ModelError(name, f"cannot read model ({exc.strerror or exc})") from None
    digest = sha256_hex(data)
    expected = _recorded_sha256(p) if verify else None
    if expected is not None and expected != digest:
        raise ModelError(name, f"model is damaged or was replaced: SHA-256 {digest[:12]}... does not match "
                               f"the recorded {expected[:12]}...")
    # A file that matches its recorded SHA-256 is the very file the build verified: hashing its
    # flatbuffer part again against the metadata would prove nothing new (and costs ~12 ms on a Pi).
    model = unpack(data, name, verify_checksum=verify and expected is None, sha256=digest)
    # The bundled model, once its bytes match the SHA-256 shipped beside it, is the very file CI walked
    # and tested (tests/test_bundled_model.py): walking it again on every start would prove nothing.
    if verify and not (expected is not None and _is_bundled(p)):
        check_tflite_structure(model.flatbuffer, name)
    if probe is None:
        probe = os.environ.get(PROBE_ENV, "").strip() not in ("", "0")
    if probe:
        probe_model(model.data, name)  # exactly what the interpreter will be given
    return model


_PROBE_CODE = """
import sys
import numpy as np
from skinedge.backend import create_interpreter, invoke_once
with open(sys.argv[1], "rb") as f:
    data = f.read()
try:
    interpreter, _ = create_interpreter(data, 1, sys.argv[2] or None)
    invoke_once(interpreter, [(d["index"], np.zeros(d["shape"], d["dtype"])) for d in interpreter.get_input_details()],
                [d["index"] for d in interpreter.get_output_details()])
except Exception as exc:
    print(getattr(exc, "reason", None) or f"{type(exc).__name__}: {exc}")
    sys.exit(3)
"""


def probe_model(flatbuffer: bytes, source: str = "model", *, backend: str | None = None,
                timeout: float = PROBE_TIMEOUT_S) -> None:
    """Build an interpreter for ``flatbuffer`` and invoke it once, on zeros, in a child process.

    The structural walk refuses the kinds of damage seen to crash LiteRT, but it cannot judge every
    operator's options (docs/reliability.md gives the share it catches). For a model from an untrusted
    source, the probe closes the gap: if the child dies (segfault, abort) or runs past ``timeout``,
    the model is refused and this process is unharmed. It costs one Python start (about a second);
    a flatbuffer that passed is remembered by its SHA-256 for the life of the process.

    Raises:
        ModelError: the child crashed, timed out, or the interpreter refused the model.
    """
    import signal  # imported here: the probe is opt-in, and these cost ~12 ms of every cold start
    import subprocess
    import tempfile

    digest = sha256_hex(flatbuffer)
    with _probed_lock:
        if digest in _probed:
            return
    root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    fd, tmp = tempfile.mkstemp(prefix="skinedge-probe-", suffix=".tflite")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(flatbuffer)
        proc = subprocess.run([sys.executable, "-c", _PROBE_CODE, tmp, backend or ""], capture_output=True,
                              text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        raise ModelError(source, f"the model did not load and run in {timeout:g} s in a probe process") from None
    finally:
        os.unlink(tmp)
    if proc.returncode < 0:
        try:
            what = signal.Signals(-proc.returncode).name
        except ValueError:
            what = f"signal {-proc.returncode}"
        raise ModelError(source, f"the model crashes the interpreter ({what} in a probe process)")
    if proc.returncode != 0:
        detail = " ".join(proc.stdout.split())[:300] or f"exit status {proc.returncode}"
        raise ModelError(source, f"the interpreter refused it in a probe process: {detail}")
    with _probed_lock:
        _probed.add(digest)
