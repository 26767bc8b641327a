"""The ``skinedge`` command line, through click's runner and as the installed console script."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from skinedge import DISCLAIMER
from skinedge.cli import main

KNOWN = {
    ("mobilenet_v2_1.0_224_quant.tflite", "cat.bmp"): ("Egyptian cat", 0.79),
    ("mobilenet_v2_1.0_224_quant.tflite", "grace_hopper.bmp"): ("military uniform", 0.92),
    ("mobilenet_v2_1.0_224_quant.tflite", "hot_dog.jpg"): ("hotdog, hot dog, red hot", 0.89),
    ("mobilenet_v2_1.0_224_quant.tflite", "cat_720p.jpg"): ("Egyptian cat", 0.82),
    ("tf2_mobilenet_v2_1.0_224_ptq.tflite", "cat.bmp"): ("Egyptian cat", 0.61),
    ("tf2_mobilenet_v2_1.0_224_ptq.tflite", "grace_hopper.bmp"): ("military uniform", 0.78),
    ("tf2_mobilenet_v2_1.0_224_ptq.tflite", "hot_dog.jpg"): ("hotdog, hot dog, red hot", 0.38),
    ("tf2_mobilenet_v2_1.0_224_ptq.tflite", "cat_720p.jpg"): ("Egyptian cat", 0.60),
}
RESULT_LINE = re.compile(r"^(?P<source>.+): (?P<label>.+) (?P<score>[01]\.\d{3})$")
# No answer: the reason on the result's line, the scores (never in the label's place) on the next.
NO_ANSWER_LINE = re.compile(r"^(?P<source>.+): no answer \((?P<reason>[a-z_]+)\): .+$")
NOT_AN_ANSWER = re.compile(r"^    scores, not an answer: (?P<label>.+?) (?P<score>[01]\.\d{3})")


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(scope="module")
def model_args(quant_model: Path, imagenet_labels: Path) -> list[str]:
    return ["--model", str(quant_model), "--labels", str(imagenet_labels), "--threads", "1"]


def _results(stdout: str) -> dict[str, tuple[str, float, bool]]:
    """source -> (label, score, uncertain) from the human-readable output."""
    out, lines = {}, stdout.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(" "):
            continue
        if m := NO_ANSWER_LINE.match(line):
            top = NOT_AN_ANSWER.match(lines[i + 1])
            out[m["source"]] = (top["label"], float(top["score"]), True)
        elif m := RESULT_LINE.match(line):
            out[m["source"]] = (m["label"], float(m["score"]), False)
    return out


def test_predict_cat(runner: CliRunner, model_args: list[str], cat_bmp: Path) -> None:
    result = runner.invoke(main, ["predict", *model_args, str(cat_bmp)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert re.fullmatch(rf"{re.escape(str(cat_bmp))}: Egyptian cat 0\.\d{{3}}", lines[0]), lines[0]
    label, score, uncertain = _results(result.stdout)[str(cat_bmp)]
    assert (label, uncertain) == ("Egyptian cat", False)
    assert score == pytest.approx(0.79, abs=0.02)
    assert lines[1].startswith("    top: Egyptian cat ")
    assert lines[-1] == DISCLAIMER
    assert "classified" not in result.stdout  # no summary for a single image
    assert result.stderr == ""


@pytest.mark.parametrize("model, image", sorted(KNOWN))
def test_predict_known_answers(
    runner: CliRunner, reference_dir: Path, imagenet_labels: Path, model: str, image: str
) -> None:
    path = reference_dir / "images" / image
    args = ["predict", "--model", str(reference_dir / model), "--labels", str(imagenet_labels), str(path)]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    label, score, _ = _results(result.stdout)[str(path)]
    want_label, want_score = KNOWN[(model, image)]
    assert label == want_label
    assert score == pytest.approx(want_score, abs=0.02)


def test_predict_folder_recursively_sorted(runner: CliRunner, model_args: list[str], reference_dir: Path) -> None:
    result = runner.invoke(main, ["predict", *model_args, str(reference_dir)])
    assert result.exit_code == 0, result.output
    found = _results(result.stdout)
    images = sorted(str(p) for p in (reference_dir / "images").iterdir())
    assert list(found) == images  # only images (not .tflite/.txt/.md), in sorted order
    assert found[str(reference_dir / "images" / "grace_hopper.bmp")][0] == "military uniform"
    assert "4 classified, 0 failed" in result.stdout


def test_predict_glob(runner: CliRunner, model_args: list[str], reference_dir: Path) -> None:
    result = runner.invoke(main, ["predict", *model_args, str(reference_dir / "images" / "*.jpg")])
    assert result.exit_code == 0, result.output
    found = _results(result.stdout)
    assert {Path(p).name for p in found} == {"cat_720p.jpg", "hot_dog.jpg"}


def test_predict_glob_matching_nothing(runner: CliRunner, model_args: list[str], tmp_path: Path, cat_bmp: Path) -> None:
    pattern = str(tmp_path / "*.jpg")
    result = runner.invoke(main, ["predict", *model_args, pattern, str(cat_bmp)])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [f"error: {pattern}: pattern matches no files"]
    assert str(cat_bmp) in _results(result.stdout)


def test_predict_json(runner: CliRunner, model_args: list[str], cat_bmp: Path, tmp_path: Path) -> None:
    missing = tmp_path / "missing.jpg"
    result = runner.invoke(main, ["predict", *model_args, "--json", "--top-k", "5", str(cat_bmp), str(missing)])
    assert result.exit_code == 1
    records = [json.loads(line) for line in result.stdout.splitlines()]  # every stdout line is JSON
    by_source = {r["source"]: r for r in records}
    cat = by_source[str(cat_bmp)]
    assert cat["label"] == "Egyptian cat"
    assert cat["score"] == pytest.approx(0.79, abs=0.02)
    assert len(cat["top_k"]) == 5
    assert cat["uncertain"] is False
    bad = by_source[str(missing)]
    assert bad["error"] == "ImageError"
    assert "no such file" in bad["reason"]
    assert result.stderr.splitlines() == [f"error: {missing}: no such file or folder"]


def test_predict_top_k_and_threshold(runner: CliRunner, model_args: list[str], cat_bmp: Path) -> None:
    result = runner.invoke(main, ["predict", *model_args, "--top-k", "5", str(cat_bmp)])
    assert result.exit_code == 0
    top = result.stdout.splitlines()[1]
    assert top.startswith("    top: Egyptian cat ")
    assert len(re.findall(r" [01]\.\d{3}", top)) == 5
    result = runner.invoke(main, ["predict", *model_args, "--top-k", "5", "--threshold", "0.5", str(cat_bmp)])
    assert result.exit_code == 0
    top = result.stdout.splitlines()[1]
    assert re.fullmatch(r"    top: Egyptian cat 0\.\d{3}", top), top


def test_predict_abstain_flag(runner: CliRunner, model_args: list[str], cat_bmp: Path) -> None:
    result = runner.invoke(main, ["predict", *model_args, "--abstain", "0.9", str(cat_bmp)])
    assert result.exit_code == 0
    assert _results(result.stdout)[str(cat_bmp)][2] is True
    assert f"{cat_bmp}: no answer (low_confidence): No confident answer." in result.stdout


def test_predict_mixed_good_and_bad(
    runner: CliRunner, model_args: list[str], reference_dir: Path, tmp_path: Path
) -> None:
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    missing = tmp_path / "missing.jpg"
    cat = reference_dir / "images" / "cat.bmp"
    hot_dog = reference_dir / "images" / "hot_dog.jpg"
    result = runner.invoke(main, ["predict", *model_args, str(cat), str(empty), str(missing), str(hot_dog)])
    assert result.exit_code == 1
    errors = result.stderr.splitlines()
    assert sorted(errors) == sorted(
        [f"error: {empty}: empty file (0 bytes)", f"error: {missing}: no such file or folder"]
    )
    found = _results(result.stdout)
    assert list(found) == [str(cat), str(hot_dog)]
    assert "2 classified, 2 failed" in result.stdout


def test_predict_requires_paths(runner: CliRunner, model_args: list[str]) -> None:
    result = runner.invoke(main, ["predict", *model_args])
    assert result.exit_code == 2  # usage error


def test_info(runner: CliRunner, quant_model: Path, imagenet_labels: Path) -> None:
    result = runner.invoke(main, ["info", "--model", str(quant_model), "--labels", str(imagenet_labels)])
    assert result.exit_code == 0, result.output
    assert "labels      1001: background, tench" in result.stdout
    assert "[1, 224, 224, 3] uint8" in result.stdout
    assert "XNNPACK" in result.stdout
    result = runner.invoke(main, ["info", "--json", "--model", str(quant_model), "--labels", str(imagenet_labels)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["tensors"]["input"]["shape"] == [1, 224, 224, 3]
    assert data["output_kind"] == "probabilities"
    assert data["metadata"] is None
    assert len(data["labels"]) == 1001


def test_info_names_each_tensor_once(runner: CliRunner) -> None:
    """The bundled model: an input row, a scores row and one row per map output, each with its tensor's name;
    a float tensor says no "scale 0"."""
    from skinedge import Classifier

    with Classifier(num_threads=1) as clf:
        want = {"input": clf.input_details, "scores": clf.output_details, **clf.map_output_details}
    out = runner.invoke(main, ["info"]).stdout.splitlines()
    rows = [line for line in out if line.split(" ")[0] in ("input", "scores", "map")]
    assert [r.split()[0] for r in rows] == ["input", "scores", "map", "map"], out
    assert [r.split()[-1] for r in rows] == [d["name"] for d in want.values()]
    assert f"{[int(v) for v in want['scores']['shape']]} float32  " in rows[1] and "scale 0" not in "".join(rows)
    assert rows[0].startswith(f"input       {[int(v) for v in want['input']['shape']]} uint8")
    assert sum(line.startswith("output") for line in out) == 0  # "answer" says what the output means


def test_selftest_names_classes_by_label(runner: CliRunner) -> None:
    from skinedge import Classifier

    with Classifier(num_threads=1) as clf:
        labels = clf.labels
    out = runner.invoke(main, ["selftest", "--threads", "1"])
    assert out.exit_code == 0, out.output
    rows = [line for line in out.stdout.splitlines() if ": top-1 expected " in line]
    assert rows
    for row in rows:
        expected, got = row.split("top-1 expected ")[1].split(";")[0].split(", got ")
        assert expected in labels and got == expected, row


def test_version(runner: CliRunner) -> None:
    result = runner.invoke(main, ["--version"])
    assert result.exit_code == 0
    assert "0.1.0" in result.stdout


def _console_script() -> str:
    script = Path(sys.executable).parent / "skinedge"
    if script.exists():
        return str(script)
    found = shutil.which("skinedge")
    if not found:
        pytest.skip("the skinedge console script is not installed (pip install -e .)")
    return found


def test_console_script_subprocess(quant_model: Path, imagenet_labels: Path, cat_bmp: Path, tmp_path: Path) -> None:
    missing = tmp_path / "missing.jpg"
    cmd = [_console_script(), "predict", "--model", str(quant_model), "--labels", str(imagenet_labels)]
    ok = subprocess.run([*cmd, str(cat_bmp)], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    label, score, _ = _results(ok.stdout)[str(cat_bmp)]
    assert label == "Egyptian cat"
    assert score == pytest.approx(0.79, abs=0.02)
    assert ok.stdout.rstrip().endswith(DISCLAIMER)
    assert ok.stderr == ""  # the interpreter's native INFO banner does not leak

    bad = subprocess.run([*cmd, str(cat_bmp), str(missing)], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1
    assert bad.stderr.splitlines() == [f"error: {missing}: no such file or folder"]
    assert str(cat_bmp) in _results(bad.stdout)


@pytest.fixture(scope="module")
def packed_model(tmp_path_factory: pytest.TempPathFactory, quant_model: Path, imagenet_labels: Path) -> Path:
    """The reference model with skinedge metadata: its own labels, abstain threshold and documentation."""
    from skinedge.metadata import ModelMetadata, pack, read_labels_file, unpack

    names = tuple(f"{i}:{name}" for i, name in enumerate(read_labels_file(imagenet_labels)))
    md = ModelMetadata(
        labels=names, output_kind="probabilities", abstain_threshold=0.9, name="reference-packed",
        description="packed by the CLI tests", metrics={"top1": 0.7}, provenance={"source": "coral"},
    )
    path = tmp_path_factory.mktemp("packed") / "packed.tflite"
    path.write_bytes(pack(unpack(quant_model.read_bytes(), "m").flatbuffer, md))
    return path


def test_predict_uses_model_metadata(runner: CliRunner, packed_model: Path, cat_bmp: Path) -> None:
    result = runner.invoke(main, ["predict", "--model", str(packed_model), str(cat_bmp)])  # no --labels
    assert result.exit_code == 0, result.output
    label, score, uncertain = _results(result.stdout)[str(cat_bmp)]
    assert label == "286:Egyptian cat"
    assert uncertain  # 0.79 is below the packed model's 0.9
    result = runner.invoke(main, ["predict", "--model", str(packed_model), "--abstain", "0.5", str(cat_bmp)])
    assert _results(result.stdout)[str(cat_bmp)][2] is False


def test_info_shows_metadata(runner: CliRunner, packed_model: Path) -> None:
    result = runner.invoke(main, ["info", "--model", str(packed_model)])
    assert result.exit_code == 0, result.output
    assert "name        reference-packed" in result.stdout
    assert "abstain below 0.9" in result.stdout
    assert "top1 0.7" in result.stdout
    assert "source=coral" in result.stdout
    data = json.loads(runner.invoke(main, ["info", "--json", "--model", str(packed_model)]).stdout)
    assert data["metadata"]["name"] == "reference-packed"
    assert data["abstain_threshold"] == 0.9
    assert data["labels"][286] == "286:Egyptian cat"
