"""Fixtures shared by both test folders: ``tests/`` (the runtime) and ``tools/tests/`` (the training tools, which
skip with a reason where the tools are not installed: tools/tests/conftest.py). Tests that need ../shared (real
photos, reference models) skip when it is absent."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "tests"))  # the tests' helper modules (bundled.py...), for both folders
from bundled import full_rebuild  # noqa: E402

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


# ---------------------------------------------------------------- slow builds, in the background
# Two builds take minutes of TensorFlow: ``skinedge-tools rebuild`` of the committed run (tests/test_bundled_model.py)
# and the training tools' end-to-end smoke run (tools/tests/test_tools_smoke.py). Each starts as a niced subprocess when
# collection finds a test that needs it, and those tests run last: the builds use what the rest of the suite
# leaves of the 2 cores, and their results are usually ready when they are needed.
#: Calibration images of the test-mode rebuild. The committed files were calibrated on 500; GPTQ, bias
#: correction, the ranges and the finer-map fit all scale with that count, so CI rebuilds with 100 (about half
#: the CPU time) and holds the result to what does not depend on the calibration set: the graph, the float32
#: constants, the answers and the metrics (tests/test_bundled_model.py). ``SKINEDGE_FULL_REBUILD=1`` (implied by
#: ``SKINEDGE_BUILD_MACHINE=1``) rebuilds with the committed 500 and compares every int8 weight too.
TEST_MODE_CALIBRATION = 100


def _tools_blocker() -> str | None:
    """Why the training tools cannot run here (a skip reason), or None; without importing TensorFlow, which
    would put it in the test process for every test."""
    import importlib.metadata

    dists = importlib.metadata.packages_distributions()  # tensorflow, tensorflow-cpu, ...
    if not dists.get("tensorflow") or not dists.get("skinedge_tools"):
        return "this needs the training tools (pip install -e ./tools)"
    return None


def _rebuild_blocker() -> str | None:
    """Why the committed run cannot be rebuilt here (a skip reason), or None."""
    import importlib.metadata

    if not SKIN6.exists():
        return f"{SKIN6} not found: rebuilding needs ../shared beside the project (or SKINEDGE_SHARED)"
    if blocker := _tools_blocker():
        return blocker
    installed = importlib.metadata.version(importlib.metadata.packages_distributions()["tensorflow"][0])
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


def _rebuild_commands(out: Path) -> list[list[str]]:
    from bundled import DEFAULT

    args = ["rebuild", "--run", str(DEFAULT.run), "--out", str(out / "models"), "--data", str(SKIN6)]
    if not full_rebuild():
        args += ["--representative", str(TEST_MODE_CALIBRATION)]
    return [[sys.executable, "-m", "skinedge_tools.cli", *args, "--cache-dir", str(out / "cache")]]


def _smoke_blocker() -> str | None:
    for path in (SKIN6, WEIGHTS):
        if not path.exists():
            return f"{path} not found: the smoke run needs ../shared beside the project (or SKINEDGE_SHARED)"
    return _tools_blocker()


def _smoke_commands(out: Path) -> list[list[str]]:
    return [[sys.executable, str(ROOT / "tools" / "tests" / "tools_smoke_run.py"), str(out), str(SKIN6), str(WEIGHTS)]]


class _Background:
    """One slow build: its commands run one after another in a niced subprocess, output in a temporary folder."""

    def __init__(self, blocker, commands) -> None:
        self.blocker_fn, self.commands = blocker, commands
        self.blocker: str | None = None
        self.checked = False
        self.proc = self.out = self.log = None

    def check(self) -> str | None:
        if not self.checked:
            self.blocker, self.checked = self.blocker_fn(), True
        return self.blocker

    def start(self) -> None:
        import shlex
        import subprocess
        import tempfile

        self.out = Path(tempfile.mkdtemp(prefix="skinedge-build-"))
        script = " && ".join(shlex.join(c) for c in self.commands(self.out))
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        nice = (lambda: os.nice(10)) if hasattr(os, "nice") else None
        self.log = open(self.out / "build.log", "w")  # closed in finish/stop
        # Fresh processes, as the committed files were built: Keras numbers its layers per process, and those
        # names end up in the file's tensor names.
        self.proc = subprocess.Popen(
            ["sh", "-c", script], stdout=self.log, stderr=subprocess.STDOUT, env=env, preexec_fn=nice
        )

    def finish(self, timeout: float) -> Path:
        """Wait for the build (killed if it outlives ``timeout``: a hang fails instead of blocking); its folder."""
        if self.check():
            pytest.skip(self.blocker)
        if self.proc is None:  # collected some other way: build now
            self.start()
        try:
            code = self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.log.close()
        log = (self.out / "build.log").read_text(errors="replace")
        assert code == 0, f"{self.commands(self.out)[0][2:4]} failed (exit {code}):\n{log[-6000:]}"
        return self.out

    def stop(self) -> None:
        if self.proc is not None:  # interrupted, or its tests deselected: never leave it running
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.log.close()
            import shutil

            shutil.rmtree(self.out, ignore_errors=True)


#: fixture name -> its build. The tests that use one run last, in this order.
_BUILDS = {"tools_smoke_run": _Background(_smoke_blocker, _smoke_commands),
           "rebuilt_models": _Background(_rebuild_blocker, _rebuild_commands)}


@pytest.hookimpl(trylast=True)  # after -k / -m deselection: no build for tests that will not run
def pytest_collection_modifyitems(config, items) -> None:
    for name, build in _BUILDS.items():
        needs = [item for item in items if name in getattr(item, "fixturenames", ())]
        if not needs:
            continue
        later = {id(item) for item in needs}
        items[:] = [item for item in items if id(item) not in later] + needs
        if build.check() is None and not config.option.collectonly:
            build.start()


def pytest_sessionfinish(session, exitstatus) -> None:
    for build in _BUILDS.values():
        build.stop()


@pytest.fixture(scope="session")
def rebuilt_models() -> Path:
    """The folder where ``skinedge-tools rebuild`` of the default bundled model's committed run wrote both artifacts and
    its report, from the background subprocess started at collection (above). Skips, with the reason, when the
    committed run cannot be rebuilt here: no ../shared, no training tools, or another TensorFlow than the one
    that converted the committed model."""
    return _BUILDS["rebuilt_models"].finish(timeout=1800) / "models"


@pytest.fixture(scope="session")
def tools_smoke_run() -> Path:
    """The folder of the training tools' smoke run (tools/tests/tools_smoke_run.py), from its background subprocess:
    ``run/`` (three stages), ``models/`` (rebuild, GPTQ), ``nearest/`` (rebuild, nearest rounding), ``docs/``
    (report), ``cache/``."""
    return _BUILDS["tools_smoke_run"].finish(timeout=1800)
