"""Batch runs of the real ``skinedge`` console script: a folder with broken files, and Ctrl-C mid-run.

Each test runs the installed entry point in a subprocess, as a user's shell would, over real photos
from ``skin6`` (linked into a temporary folder) and broken files made from them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

GOOD = 54
BAD = 6  # 10% of the folder


def _skinedge() -> list[str]:
    exe = Path(sys.executable).with_name("skinedge")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "skinedge.cli"]


def _photos(skin6_dir: Path, n: int) -> list[Path]:
    suffixes = {".jpg", ".jpeg", ".png", ".jfif"}
    photos = sorted(p for p in (skin6_dir / "test").rglob("*") if p.suffix.lower() in suffixes)
    step = max(1, len(photos) // n)
    picked = photos[::step][:n]
    assert len(picked) == n
    return picked


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory, skin6_dir: Path) -> tuple[Path, list[Path], dict[Path, str]]:
    """60 files: 54 real photos (linked, with their own names and formats) and 6 broken ones made from them."""
    d = tmp_path_factory.mktemp("batch")
    good = []
    for i, photo in enumerate(_photos(skin6_dir, GOOD + 2)[:GOOD]):
        link = d / f"{i:03d}_{photo.name}"
        link.symlink_to(photo)
        good.append(link)
    src = _photos(skin6_dir, GOOD + 2)[-1].read_bytes()
    png = next(p for p in good if p.suffix.lower() == ".png").read_bytes()
    jpeg = next(p for p in good if p.read_bytes()[:2] == b"\xff\xd8").read_bytes()
    flipped = bytearray(jpeg)
    flipped[2:40] = bytes(38)  # header wiped
    bad = {
        d / "900_truncated.jpg": (jpeg[: len(jpeg) // 2], "truncated"),
        d / "901_empty.jpg": (b"", "empty file (0 bytes)"),
        d / "902_header_wiped.jpg": (bytes(flipped), ""),
        d / "903_notes.png": (b"patient notes, not a photo\n" * 20, "not a readable image"),
        d / "904_png_cut.png": (png[:200], ""),
        d / "905_noise.webp": (bytes((i * 37 + 11) % 256 for i in range(len(src) // 4)), "not a readable image"),
    }
    reasons = {}
    for path, (data, reason) in bad.items():
        path.write_bytes(data)
        reasons[path] = reason
    assert len(bad) == BAD
    return d, good, reasons


def test_folder_with_broken_files(folder: tuple[Path, list[Path], dict[Path, str]], quant_model: Path,
                                  imagenet_labels: Path) -> None:
    d, good, bad = folder
    proc = subprocess.run([*_skinedge(), "predict", str(d), "--model", str(quant_model), "--labels",
                           str(imagenet_labels), "--top-k", "1"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    results = [line for line in proc.stdout.splitlines() if line.startswith(str(d))]
    assert sorted(line.split(": ")[0] for line in results) == sorted(map(str, good))
    errors = proc.stderr.splitlines()
    assert len(errors) == BAD, errors
    for path, reason in bad.items():
        line = next(e for e in errors if e.startswith(f"error: {path}: "))
        assert reason in line
        assert len(line) > len(f"error: {path}: ") + 5  # a reason is given
    assert f"{GOOD} classified, {BAD} failed" in proc.stdout


def test_folder_with_broken_files_json(folder: tuple[Path, list[Path], dict[Path, str]], quant_model: Path,
                                       imagenet_labels: Path) -> None:
    d, good, bad = folder
    proc = subprocess.run([*_skinedge(), "predict", str(d), "--model", str(quant_model), "--labels",
                           str(imagenet_labels), "--json"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(records) == GOOD + BAD
    ok = {r["source"] for r in records if "label" in r}
    failed = {r["source"]: r for r in records if "error" in r}
    assert ok == set(map(str, good))
    assert set(failed) == set(map(str, bad))
    assert all(r["error"] == "ImageError" and r["reason"] for r in failed.values())
    assert [r["source"] for r in records] == sorted(r["source"] for r in records)  # input order kept

def _sigint_as_in_a_terminal() -> None:
    """Ctrl-C's default action in the child. A suite started as a background job (``cmd &`` in a script, as CI
    runners do) inherits SIGINT ignored, and Python installs no KeyboardInterrupt handler for an ignored signal:
    the child would rightly honour that and never see the test's Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_sigint_mid_run_leaves_valid_json_lines(tmp_path: Path, skin6_dir: Path, quant_model: Path,
                                                imagenet_labels: Path) -> None:
    """Ctrl-C during a 300-image run: every line already on stdout is a whole JSON object, exit status 130."""
    for i, photo in enumerate(_photos(skin6_dir, 300)):
        (tmp_path / f"{i:03d}_{photo.name}").symlink_to(photo)
    proc = subprocess.Popen([*_skinedge(), "predict", str(tmp_path), "--model", str(quant_model), "--labels",
                             str(imagenet_labels), "--json", "--threads", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"}, preexec_fn=_sigint_as_in_a_terminal)
    assert proc.stdout is not None
    first = []
    deadline = time.monotonic() + 240
    while len(first) < 3 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        first.append(line)
    assert len(first) == 3, "no output before the deadline"
    proc.send_signal(signal.SIGINT)
    try:
        rest, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("skinedge did not stop after SIGINT")
    lines = first + rest.splitlines(keepends=True)
    assert proc.returncode == 130, err
    assert 3 <= len(lines) < 300
    for line in lines:
        assert line.endswith("\n")
        record = json.loads(line)
        assert record["source"].startswith(str(tmp_path)) and ("label" in record or "error" in record)
    assert "Traceback" not in err
    summary = err.strip().splitlines()[-1]
    assert summary.startswith("interrupted: ") and "not reached" in summary


@pytest.mark.parametrize("as_json", [False, True])
def test_a_reader_that_stops_reading_ends_predict_quietly_with_status_0(skin6_dir: Path, as_json: bool) -> None:
    """``skinedge predict FOLDER | head -1``: the pipe closes after one line; that is no failed input (exit 1)."""
    folder = skin6_dir / "test" / "Acne"
    cmd = [*_skinedge(), "predict", str(folder), "--threads", "1", *(["--json"] if as_json else [])]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stdout.readline()
    proc.stdout.close()  # what head does after its line
    _, err = proc.communicate(timeout=120)
    assert first.strip() and proc.returncode == 0, (proc.returncode, err.decode())
    assert b"Traceback" not in err and b"BrokenPipe" not in err and b"Exception ignored" not in err, err.decode()


def test_predict_ends_without_teardown_yet_delivers_every_line(tmp_path: Path, skin6_dir: Path) -> None:
    """The program skips the interpreter's teardown after ``predict`` (``skinedge.cli.run``): every result line, the
    summary and the disclaimer still reach a block-buffered file, with the right status (a bad input: 1)."""
    from importlib.metadata import entry_points

    assert [e.value for e in entry_points(group="console_scripts", name="skinedge")] == ["skinedge.cli:run"]
    photos = _photos(skin6_dir, 12)
    missing = tmp_path / "missing.jpg"
    for args, status in (([], 0), ([str(missing)], 1)):
        out = tmp_path / f"out{status}.txt"
        with out.open("w") as f:
            proc = subprocess.run([*_skinedge(), "predict", *map(str, photos), *args, "--threads", "1"], stdout=f,
                                  stderr=subprocess.PIPE, text=True, timeout=120)
        lines = out.read_text().splitlines()
        assert proc.returncode == status, proc.stderr
        assert [line.split(": ")[0] for line in lines if not line.startswith(" ")][:12] == list(map(str, photos))
        assert lines[-2] == f"12 classified, {status} failed" and lines[-1].startswith("Scores from a research model")
        assert (str(missing) in proc.stderr) == bool(status) and "Traceback" not in proc.stderr


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux) to make writes fail")
def test_output_that_cannot_be_written_is_one_line_not_a_traceback(skin6_dir: Path) -> None:
    photo = _photos(skin6_dir, 1)[0]
    with open("/dev/full", "w") as full:
        proc = subprocess.run([*_skinedge(), "predict", str(photo), "--threads", "1"], stdout=full,
                              stderr=subprocess.PIPE, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip() == "error: cannot write the output: No space left on device"
