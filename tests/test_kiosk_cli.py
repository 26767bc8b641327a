"""The kiosk's commands as a user types them: skinedge models / cases / service, skinedge-tools keygen / sign,
and predict on the store's active model. Real keys, the real bundled models, a real case log."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

pytest.importorskip("cryptography", reason="the kiosk extra (cryptography) is not installed")
pytest.importorskip("skinedge_tools.sign", reason="skinedge-tools keygen/sign are the build machine's: "
                                                  "pip install -e ./tools")

from skinedge import Classifier  # noqa: E402
from skinedge.cli import main  # noqa: E402
from skinedge.kiosk.caselog import CaseLog  # noqa: E402
from skinedge.model_io import bundled_model_path  # noqa: E402


def run(*args: str, env: dict | None = None):
    res = CliRunner().invoke(main, list(args), env=env)
    assert "Traceback" not in res.output, res.output
    return res


def tools(*args: str) -> subprocess.CompletedProcess:
    code = "import sys; from skinedge_tools.cli import main; sys.exit(main())"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def signed(tmp_path_factory) -> dict[str, Path]:
    """skinedge-tools keygen and sign, as on the build machine."""
    d = tmp_path_factory.mktemp("build")
    proc = tools("keygen", str(d / "build.key"))
    assert proc.returncode == 0, proc.stderr
    assert (d / "build.key").stat().st_mode & 0o777 == 0o600 and "key id" in proc.stdout
    again = tools("keygen", str(d / "build.key"))
    assert again.returncode != 0 and "never overwritten" in again.stderr
    lite0, mnv2 = d / "lite0.tflite", d / "mnv2.tflite"
    shutil.copyfile(bundled_model_path("efficientnet-lite0"), lite0)
    shutil.copyfile(bundled_model_path("mobilenetv2"), mnv2)
    proc = tools("sign", str(lite0), str(mnv2), "--key", str(d / "build.key"))
    assert proc.returncode == 0 and proc.stdout.count("signed") == 2, proc.stderr
    return {"pub": d / "build.key.pub", "lite0": lite0, "mnv2": mnv2}


def test_models_commands(signed, tmp_path: Path) -> None:
    store = tmp_path / "store"
    env = {"SKINEDGE_MODEL_STORE": str(store)}
    res = run("models", "list", env=env)
    assert res.exit_code == 0 and "no models installed" in res.output
    res = run("models", "install", str(signed["lite0"]), env=env)
    assert res.exit_code == 2 and "refused" in res.output and "no trusted public key" in res.output
    res = run("models", "trust", str(signed["pub"]), env=env)
    assert res.exit_code == 0 and "trusting key" in res.output
    for model in ("lite0", "mnv2"):
        res = run("models", "install", str(signed[model]), "--threads", "1", env=env)
        assert res.exit_code == 0 and "self-test passed" in res.output, res.output
    listing = json.loads(run("models", "list", "--json", env=env).output)
    assert [m["active"] for m in listing["models"]] == [True, False]
    assert listing["models"][0]["source"] == "mnv2.tflite"
    # A copy altered after signing is refused with the file named, and nothing changes.
    bad = tmp_path / "bad.tflite"
    data = bytearray(signed["mnv2"].read_bytes())
    data[5000] ^= 1
    bad.write_bytes(bytes(data))
    shutil.copyfile(str(signed["mnv2"]) + ".sig", str(bad) + ".sig")
    res = run("models", "install", str(bad), env=env)
    assert res.exit_code == 2 and f"refused: {bad}: the signature does not match" in res.output
    assert "active model is unchanged" in res.output
    assert json.loads(run("models", "list", "--json", env=env).output) == listing
    res = run("models", "rollback", env=env)
    assert res.exit_code == 0 and "active:" in res.output
    assert json.loads(run("models", "list", "--json", env=env).output)["models"][0]["source"] == "lite0.tflite"


def test_predict_and_serve_use_the_active_model(signed, tmp_path: Path, skin6_dir: Path) -> None:
    store = tmp_path / "store"
    env = {"SKINEDGE_MODEL_STORE": str(store)}
    assert run("models", "trust", str(signed["pub"]), env=env).exit_code == 0
    assert run("models", "install", str(signed["mnv2"]), "--threads", "1", env=env).exit_code == 0
    photo = sorted((skin6_dir / "test" / "Vitiligo").glob("*.jpg"))[0]
    with Classifier("mobilenetv2", num_threads=1) as mnv2, Classifier(num_threads=1) as lite0:
        want, other = mnv2.classify(photo), lite0.classify(photo)
    assert (want.label, round(want.score, 6)) != (other.label, round(other.score, 6))  # the test can tell them apart
    res = run("predict", str(photo), "--json", "--threads", "1", env=env)
    got = json.loads(res.stdout.splitlines()[0])
    assert res.exit_code == 0 and got["label"] == want.label and got["score"] == pytest.approx(want.score, abs=1e-6)
    res = run("predict", str(photo), "--json", "--threads", "1", "--model", "efficientnet-lite0", env=env)
    assert json.loads(res.stdout.splitlines()[0])["score"] == pytest.approx(other.score, abs=1e-6)  # --model wins
    (store / "state.json").write_text("{broken")
    res = run("predict", str(photo), env=env)
    assert res.exit_code == 2 and "state.json" in res.output and "unreadable" in res.output


def test_cases_export_and_report_commands(tmp_path: Path, skin6_dir: Path) -> None:
    db = tmp_path / "cases.sqlite"
    photos = [p for label in ("Acne", "Vitiligo") for p in sorted((skin6_dir / "test" / label).glob("*.jpg"))[:3]]
    with Classifier(num_threads=1) as clf, CaseLog(db, photo_dir=tmp_path / "kept", labels=clf.labels) as log:
        for p in photos:
            data = p.read_bytes()
            cid = log.record(clf.classify(data).to_dict(), photo=data, model_name="lite0",
                             model_sha256=clf.model_sha256, model_labels=clf.labels)
            log.set_label(cid, p.parent.name)
    res = run("cases", "report", str(db))
    assert res.exit_code == 0 and "6 with a clinician label" in res.output and "agreement" in res.output
    assert "95% CI" in res.output and "not a clinical validation" in res.output
    rep = json.loads(run("cases", "report", str(db), "--json", "--resamples", "200").output)
    assert rep["models"][0]["agreement"]["n"] == 6
    out = tmp_path / "export"
    res = run("cases", "export", str(db), str(out))  # finds the photos through the folder the log recorded
    assert res.exit_code == 0 and "Acne 3, Vitiligo 3" in res.output, res.output
    assert sorted(p.name for p in out.iterdir()) == ["Acne", "Vitiligo", "cases.csv"]
    res = run("cases", "export", str(db), str(out))
    assert res.exit_code == 2 and "not empty" in res.output
    res = run("cases", "report", str(tmp_path / "missing.sqlite"))
    assert res.exit_code == 2 and "no such case log" in res.output
    assert not (tmp_path / "missing.sqlite").exists()  # a typo does not create an empty log


def test_service_install_print(tmp_path: Path) -> None:
    token = tmp_path / "token"
    res = run("service", "install", "--print", "--host", "0.0.0.0", "--port", "8443", "--token-file", str(token),
              "--case-log", str(tmp_path / "db" / "cases.sqlite"), "--retain-days", "90")
    assert res.exit_code == 0, res.output
    assert "ExecStart=" in res.output and f"--token-file {token}" in res.output and "User=skinedge" in res.output
    assert f"ReadWritePaths={tmp_path / 'db'}" in res.output and "--retain-days 90" in res.output
    assert not (tmp_path / "db").exists()  # --print changes nothing
    res = run("service", "install", "--print", "--host", "0.0.0.0")
    assert res.exit_code == 2 and "--token-file" in res.output
    res = run("service", "install", "--print", "--user", "root")
    assert res.exit_code == 2 and "root" in res.output
