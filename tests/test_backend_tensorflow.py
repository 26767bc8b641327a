"""``--backend tensorflow``: TensorFlow's own TFLite interpreter runs the model (TensorFlow 2.21 no longer sets
``tensorflow.lite.Interpreter`` on the package skinedge imported), and a TensorFlow without a usable interpreter
is a typed BackendError, not a traceback. TensorFlow runs in child processes only: the test process stays clean."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import pytest

SKINEDGE = [sys.executable, "-m", "skinedge.cli"]
needs_tensorflow = pytest.mark.skipif(find_spec("tensorflow") is None,
                                      reason="TensorFlow is not installed (pip install -e ./tools)")


def _run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*SKINEDGE, *args], capture_output=True, text=True, timeout=300, env=env)


# One child process (one TensorFlow import, ~10 s here) runs both commands through click's runner.
_BOTH = """
import json, sys
from click.testing import CliRunner
from skinedge.cli import main
out = {}
for name, args in (("predict", ["predict", "--backend", "tensorflow", "--json", "--threads", "1", *sys.argv[1:]]),
                   ("selftest", ["selftest", "--backend", "tensorflow", "--threads", "1"])):
    r = CliRunner().invoke(main, args)
    out[name] = {"code": r.exit_code, "stdout": r.stdout, "stderr": r.stderr, "exception": repr(r.exception)}
print(json.dumps(out))
"""


@needs_tensorflow
def test_tensorflow_backend_predicts_what_litert_predicts_and_passes_selftest(skin6_dir: Path) -> None:
    photos = [str(sorted((skin6_dir / "test" / c).iterdir())[0]) for c in ("Acne", "Vitiligo")]
    proc = subprocess.run([sys.executable, "-c", _BOTH, *photos], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # TensorFlow's native start-up banner stays captured
    tf = json.loads(proc.stdout.strip().splitlines()[-1])
    assert tf["predict"]["code"] == 0 and tf["predict"]["stderr"] == "", tf["predict"]
    litert = _run("predict", "--backend", "litert", "--json", "--threads", "1", *photos)
    assert litert.returncode == 0, litert.stderr
    for a, b in zip(tf["predict"]["stdout"].splitlines(), litert.stdout.splitlines(), strict=True):
        ra, rb = json.loads(a), json.loads(b)
        assert ra["label"] == rb["label"]
        assert ra["score"] == pytest.approx(rb["score"], abs=1e-4)
    assert tf["selftest"]["code"] == 0, tf["selftest"]
    verdict = tf["selftest"]["stdout"].strip().splitlines()[-1]
    assert verdict.startswith("selftest PASS") and "; tensorflow 2." in verdict, verdict


def test_tensorflow_without_an_interpreter_is_a_backend_error(tmp_path: Path) -> None:
    """A TensorFlow whose ``tensorflow.lite`` and interpreter module lack ``Interpreter`` (as 2.21's source
    package does): exit 2 with one line naming the backend, before any model or photo is read."""
    fake = tmp_path / "tensorflow"
    (fake / "lite" / "python").mkdir(parents=True)
    (fake / "__init__.py").write_text('__version__ = "0.0-fake"\n')
    (fake / "lite" / "__init__.py").write_text("")
    (fake / "lite" / "python" / "__init__.py").write_text("")
    (fake / "lite" / "python" / "interpreter.py").write_text("")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])))
    for command in (["predict", str(tmp_path / "x.jpg")], ["selftest"], ["info"]):
        proc = _run(command[0], "--backend", "tensorflow", *command[1:], env=env)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: tensorflow: not usable ("), lines
        assert "Interpreter" in lines[0] and lines[0].endswith("pip install tensorflow")
