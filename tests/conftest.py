"""Shared fixtures. Tests that need ../shared (real photos, reference models) skip when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SKINEDGE_SHARED", ROOT.parent / "shared"))
REFERENCE = SHARED / "reference-models"
SKIN6 = SHARED / "data" / "skin6"
WEIGHTS = SHARED / "weights"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} not found: this test needs ../shared beside the project (or SKINEDGE_SHARED)")
    return path


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """../shared/reference-models: ImageNet models with known answers."""
    return _need(REFERENCE)


@pytest.fixture(scope="session")
def quant_model(reference_dir: Path) -> Path:
    return reference_dir / "mobilenet_v2_1.0_224_quant.tflite"


@pytest.fixture(scope="session")
def ptq_model(reference_dir: Path) -> Path:
    return reference_dir / "tf2_mobilenet_v2_1.0_224_ptq.tflite"


@pytest.fixture(scope="session")
def imagenet_labels(reference_dir: Path) -> Path:
    return reference_dir / "imagenet_labels.txt"


@pytest.fixture(scope="session")
def cat_bmp(reference_dir: Path) -> Path:
    return reference_dir / "images" / "cat.bmp"


@pytest.fixture(scope="session")
def skin6_dir() -> Path:
    """../shared/data/skin6: real clinical photos with train/val/test splits."""
    return _need(SKIN6)


@pytest.fixture(scope="session")
def weights_dir() -> Path:
    return _need(WEIGHTS)


@pytest.fixture(scope="session")
def run_tflite():
    """``run(flatbuffer, images) -> (dequantized outputs, interpreter)``: a converted model run over images
    with LiteRT, one thread, as the runtime runs it (the tools tests' one loop for this)."""
    from skinedge.backend import create_interpreter, run_on_images

    def run(flatbuffer: bytes, images):
        interp, _ = create_interpreter(flatbuffer, num_threads=1)
        first = interp.get_output_details()[0]["name"]
        return run_on_images(interp, images)[first], interp

    return run


# ---------------------------------------------------------------- the rebuild, in the background
# ``skinedge-tools rebuild`` of the committed run takes minutes, much of them on one core (GPTQ's column loop,
# LiteRT evaluation, decoding photos). It starts as a niced subprocess when collection finds a test that needs
# it, and those tests run last: it uses what the rest of the suite leaves of the 2 cores, and its results are
# usually ready when they are needed.
REBUILD_FIXTURE = "rebuilt_models"
_rebuild: dict = {}


def _rebuild_blocker() -> str | None:
    """Why the committed run cannot be rebuilt here (a skip reason), or None."""
    import importlib.metadata

    if not SKIN6.exists():
        return f"{SKIN6} not found: rebuilding needs ../shared beside the project (or SKINEDGE_SHARED)"
    # Versions from the installed distributions (tensorflow, tensorflow-cpu, ...): importing TensorFlow here
    # would put it in the test process for every test.
    dists = importlib.metadata.packages_distributions()
    if not dists.get("tensorflow") or not dists.get("skinedge_tools"):
        return "rebuilding needs the training tools (pip install -e ./tools)"
    installed = importlib.metadata.version(dists["tensorflow"][0])
    from skinedge import Classifier

    try:
        with Classifier(num_threads=1) as clf:
            recorded = clf.metadata.provenance["tensorflow"]
    except Exception as exc:  # the bundled model's own tests say what is wrong with it
        return f"the bundled model does not load: {exc}"
    if installed != recorded:
        # Another converter may name, fuse and order the graph differently (docs/method.md, "Determinism").
        return f"the committed model was converted with TensorFlow {recorded}, this is {installed}"
    return None


def _start_rebuild() -> None:
    import subprocess
    import sys
    import tempfile

    out = Path(tempfile.mkdtemp(prefix="skinedge-rebuild-"))
    args = ["rebuild", "--run", str(ROOT / "models" / "run"), "--out", str(out / "models"), "--data", str(SKIN6)]
    cmd = [sys.executable, "-m", "skinedge_tools.cli", *args, "--cache-dir", str(out / "cache")]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    nice = (lambda: os.nice(10)) if hasattr(os, "nice") else None
    log = open(out / "rebuild.log", "w")  # closed in _finish_rebuild
    # A fresh process, as the committed files were built: Keras numbers its layers per process, and those
    # names end up in the file's tensor names.
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=nice)
    _rebuild.update(proc=proc, out=out, log=log)


def _finish_rebuild(timeout: float | None) -> int:
    """Wait for the rebuild (killed if it outlives ``timeout``: a hang fails instead of blocking)."""
    proc = _rebuild["proc"]
    try:
        return proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        _rebuild["log"].close()


@pytest.hookimpl(trylast=True)  # after -k / -m deselection: no rebuild for tests that will not run
def pytest_collection_modifyitems(config, items) -> None:
    needs = [item for item in items if REBUILD_FIXTURE in getattr(item, "fixturenames", ())]
    if not needs:
        return
    later = {id(item) for item in needs}
    items[:] = [item for item in items if id(item) not in later] + needs
    blocker = _rebuild_blocker()
    _rebuild["blocker"] = blocker
    if blocker is None and not config.option.collectonly:
        _start_rebuild()


def pytest_sessionfinish(session, exitstatus) -> None:
    if "proc" in _rebuild:  # interrupted, or its tests deselected: never leave it running
        proc = _rebuild["proc"]
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        _rebuild["log"].close()
        import shutil

        shutil.rmtree(_rebuild["out"], ignore_errors=True)


@pytest.fixture(scope="session")
def rebuilt_models() -> Path:
    """The folder where ``skinedge-tools rebuild`` of the committed run (models/run) wrote both artifacts and
    its report, from the background subprocess started at collection (above). Skips, with the reason, when the
    committed run cannot be rebuilt here: no ../shared, no training tools, or another TensorFlow than the one
    that converted the committed model."""
    blocker = _rebuild["blocker"] if "blocker" in _rebuild else _rebuild_blocker()
    if blocker:
        pytest.skip(blocker)
    if "proc" not in _rebuild:  # collected some other way: build now
        _start_rebuild()
    code = _finish_rebuild(timeout=1800)
    log = (_rebuild["out"] / "rebuild.log").read_text(errors="replace")
    assert code == 0, f"skinedge-tools rebuild failed (exit {code}):\n{log[-6000:]}"
    return _rebuild["out"] / "models"
