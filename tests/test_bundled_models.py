"""Both bundled models by name: the default and the paper's MobileNetV2, from Python and the command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from bundled import MODELS, bundled
from click.testing import CliRunner

from skinedge import Classifier, ModelError
from skinedge.cli import main
from skinedge.model_io import BUNDLED_MODEL, BUNDLED_MODELS, DEFAULT_MODEL, bundled_model_path, resolve_model
from skinedge.selftest import run_selftest

ROOT = Path(__file__).resolve().parents[1]
TITLES = {"efficientnet-lite0": "EfficientNet-Lite0", "mobilenetv2": "MobileNetV2"}


@pytest.mark.parametrize("name", list(BUNDLED_MODELS))
def test_each_bundled_model_loads_by_name_and_passes_its_selftest(name: str) -> None:
    with Classifier(name, num_threads=1) as clf:
        assert clf.model_path == bundled_model_path(name) == MODELS / BUNDLED_MODELS[name]
        assert TITLES[name] in clf.metadata.name and TITLES[name] in clf.metadata.provenance["backbone"]
        # Runs recorded before the backbone option existed are MobileNetV2 runs (train.TrainConfig.from_json).
        assert clf.metadata.provenance["train_config"].get("backbone", "mobilenetv2") == name
        assert clf.delegated and all(check.passed for check in run_selftest(clf, clf.model_files))


def test_no_model_means_the_default_bundled_one() -> None:
    assert DEFAULT_MODEL == "efficientnet-lite0" and BUNDLED_MODEL == BUNDLED_MODELS[DEFAULT_MODEL]
    assert resolve_model(None) == bundled_model_path() == bundled_model_path(DEFAULT_MODEL)


def test_the_default_is_the_best_bundled_model_on_validation() -> None:
    """The default is whichever bundled model measured best on the validation split (ties: either)."""
    val = {}
    for name in BUNDLED_MODELS:
        with Classifier(name, num_threads=1) as clf:
            val[name] = clf.metadata.metrics["val_macro_f1"]
    assert val[DEFAULT_MODEL] == max(val.values()), val


def test_paths_still_mean_paths_and_a_mistyped_name_says_what_is_bundled(tmp_path: Path) -> None:
    copy = tmp_path / "mobilenetv2"  # a file of a bundled name given as a path: the path wins
    assert resolve_model(copy) == copy and resolve_model(str(MODELS / BUNDLED_MODEL)) == MODELS / BUNDLED_MODEL
    with pytest.raises(ModelError) as err:
        Classifier("mobilenetv3", num_threads=1)
    assert "mobilenetv3" in str(err.value) and "efficientnet-lite0, mobilenetv2" in str(err.value)


@pytest.mark.parametrize("name", list(BUNDLED_MODELS))
def test_cli_model_option_takes_a_bundled_name(name: str, skin6_dir: Path) -> None:
    photo = sorted((skin6_dir / "test" / "Vitiligo").iterdir())[0]
    out = CliRunner().invoke(main, ["predict", str(photo), "--model", name, "--json", "--threads", "1"])
    assert out.exit_code == 0, out.output
    with Classifier(name, num_threads=1) as clf:
        want = clf.classify(photo)
    got = json.loads(out.stdout.splitlines()[0])
    assert got["label"] == want.label and got["score"] == pytest.approx(want.score, abs=1e-6)
    info = CliRunner().invoke(main, ["info", "--model", name, "--json"])
    assert info.exit_code == 0 and json.loads(info.stdout)["model"] == str(bundled_model_path(name))


def test_cli_unknown_name_is_a_typed_error_exit_2() -> None:
    out = CliRunner().invoke(main, ["info", "--model", "resnet50"])
    assert out.exit_code == 2 and "no bundled model of that name" in out.output and "Traceback" not in out.output


def test_package_ships_every_bundled_int8_file_with_its_checksum_and_nothing_else() -> None:
    tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python >= 3.11")
    shipped = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    want = {f for name in BUNDLED_MODELS.values() for f in (name, name + ".sha256")}
    assert set(shipped["skinedge.bundled"]) == want
    assert all((MODELS / f).is_file() for f in want)


def test_benchmarks_default_model_is_the_runtime_default() -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import common
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    assert common.DEFAULT_INT8 == BUNDLED_MODEL and common.float_model() == bundled(DEFAULT_MODEL).float32
