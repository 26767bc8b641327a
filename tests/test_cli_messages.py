"""What a new user meets at the command line: the progress bar in a real terminal (a pty), special and huge
files, exit statuses for an unusable model, when the disclaimer prints, and the hint for models without labels."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from click.testing import CliRunner

import skinedge.classifier
from skinedge import DISCLAIMER
from skinedge.cli import main

SKINEDGE = [sys.executable, "-m", "skinedge.cli"]


def _rendered(raw: str) -> list[str]:
    """What a terminal shows: each line as carriage returns overwrite it from column 0."""
    lines = []
    for line in raw.replace("\r\n", "\n").split("\n"):
        cells: list[str] = []
        col = 0
        for ch in line:
            if ch == "\r":
                col = 0
                continue
            if col < len(cells):
                cells[col] = ch
            else:
                cells.append(ch)
            col += 1
        lines.append("".join(cells).rstrip())
    return lines


def _run_in_pty(cmd: list[str], timeout: float = 120) -> str:
    """Run ``cmd`` with stdout and stderr on one pseudo-terminal, as in an interactive shell."""
    pty = pytest.importorskip("pty", reason="needs a POSIX pseudo-terminal")
    leader, follower = pty.openpty()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=follower, stderr=follower)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    assert proc.wait(timeout=timeout) == 0
    return b"".join(chunks).decode(errors="replace")


@pytest.fixture(scope="module")
def many_photos(tmp_path_factory, skin6_dir: Path) -> Path:
    """25 real photos: more than the 20 above which the progress bar shows."""
    folder = tmp_path_factory.mktemp("many")
    for photo in sorted((skin6_dir / "test" / "Vitiligo").iterdir())[:25]:
        (folder / photo.name).symlink_to(photo)
    return folder


def test_progress_bar_in_a_terminal_never_shares_a_line_with_a_result(many_photos: Path) -> None:
    raw = _run_in_pty([*SKINEDGE, "predict", "--threads", "2", str(many_photos)])
    assert "classifying" in raw  # the bar was drawn: stderr is a terminal
    screen = [line for line in _rendered(raw) if line]
    results = [line for line in screen if line.startswith(str(many_photos))]
    assert len(results) == 25
    assert not [line for line in screen if "classifying" in line], screen  # cleared before every line
    assert screen[-2:] == ["25 classified, 0 failed", DISCLAIMER]


def test_no_progress_bar_when_stderr_is_not_a_terminal(many_photos: Path) -> None:
    proc = subprocess.run([*SKINEDGE, "predict", "--threads", "2", str(many_photos)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and proc.stderr == ""
    assert proc.stdout.count(f"{many_photos}/") == 25


def test_no_progress_bar_when_stdout_is_a_pipe(many_photos: Path) -> None:
    """``skinedge predict DIR | head``: stderr is the terminal, but the pipe's reader prints results there at its own
    pace, after the bar was redrawn, so a bar would share their lines."""
    pty = pytest.importorskip("pty", reason="needs a POSIX pseudo-terminal")
    leader, follower = pty.openpty()
    proc = subprocess.Popen([*SKINEDGE, "predict", "--threads", "2", str(many_photos)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=follower, text=True)
    os.close(follower)
    out, _ = proc.communicate(timeout=120)
    err = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        err.append(data)
    os.close(leader)
    assert proc.returncode == 0 and out.count(f"{many_photos}/") == 25
    assert "classifying" not in b"".join(err).decode(errors="replace")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_fifo_named_like_a_photo_is_not_a_regular_file(tmp_path: Path, skin6_dir: Path) -> None:
    fifo = tmp_path / "x.jpg"
    os.mkfifo(fifo)
    result = CliRunner().invoke(main, ["predict", str(fifo)])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [f"error: {fifo}: is not a regular file (a FIFO), so not an image file"]


def _png_header(width: int, height: int) -> bytes:
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_giant_png_quotes_skinedges_limit_not_pillows(tmp_path: Path) -> None:
    png = tmp_path / "giant.png"
    png.write_bytes(_png_header(60_000, 60_000))
    result = CliRunner().invoke(main, ["predict", str(png)])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"error: {png}: image is 3600000000 pixels, above the limit of 120000000 "
        "(refused from its header as a decompression bomb)"]


@pytest.mark.parametrize("command", ["predict", "info", "selftest", "evaluate"])
def test_unusable_model_exits_2_in_every_command(command: str, tmp_path: Path) -> None:
    model = tmp_path / "broken.tflite"
    model.write_bytes(b"this is not a flatbuffer" * 10)
    (tmp_path / "Acne").mkdir()
    args = {"predict": [str(tmp_path / "a.jpg")], "evaluate": [str(tmp_path)]}.get(command, [])
    result = CliRunner().invoke(main, [command, "--model", str(model), *args])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: {model}: ")


def test_disclaimer_only_when_something_was_classified(tmp_path: Path, skin6_dir: Path) -> None:
    missing = tmp_path / "missing.jpg"
    nothing = CliRunner().invoke(main, ["predict", str(missing)])
    assert nothing.exit_code == 1 and nothing.stdout == ""
    photo = sorted((skin6_dir / "test" / "Acne").iterdir())[0]
    some = CliRunner().invoke(main, ["predict", str(missing), str(photo)])
    assert some.exit_code == 1 and some.stdout.splitlines()[-1] == DISCLAIMER == skinedge.DISCLAIMER


def test_model_without_labels_gets_a_one_line_hint(quant_model: Path, imagenet_labels: Path, cat_bmp: Path) -> None:
    bare = CliRunner().invoke(main, ["predict", "--model", str(quant_model), str(cat_bmp)])
    assert bare.exit_code == 0, bare.output
    assert bare.stderr.splitlines() == [
        f"note: {quant_model} carries no labels, so classes are shown as output indexes; "
        "pass --labels FILE (one label per line)"]
    assert bare.stdout.startswith(f"{cat_bmp}: 286 ")  # index 286: Egyptian cat
    labelled = CliRunner().invoke(main, ["predict", "--model", str(quant_model), "--labels", str(imagenet_labels),
                                         str(cat_bmp)])
    assert labelled.exit_code == 0 and labelled.stderr == ""


def test_classifier_exports_only_what_it_defines() -> None:
    for name in skinedge.classifier.__all__:
        obj = getattr(skinedge.classifier, name)
        assert isinstance(obj, str) or obj.__module__ == "skinedge.classifier", name


def test_mediapipe_interop_script_says_how_to_make_its_venv(tmp_path: Path) -> None:
    """README's ``python benchmarks/interop_mediapipe.py`` without the MediaPipe venv: how to make it, no traceback."""
    root = Path(__file__).resolve().parents[1]
    venv = tmp_path / "no-venv-here"
    env = dict(os.environ, SKINEDGE_BENCH_VENV_MP=str(venv))
    proc = subprocess.run([sys.executable, "benchmarks/interop_mediapipe.py"], cwd=root, capture_output=True,
                          text=True, timeout=120, env=env)
    assert proc.returncode == 2 and proc.stdout == ""
    assert "Traceback" not in proc.stderr
    assert f"error: no MediaPipe environment: {venv / 'bin' / 'python'} does not exist" in proc.stderr
    assert "python benchmarks/interop_mediapipe.py --create-venv" in proc.stderr
    assert f"python3 -m venv {venv} && {venv}/bin/pip install mediapipe" in proc.stderr
