"""``skinedge.video`` and ``skinedge watch`` on real video files written with OpenCV from skin6 photos.

The clips are MJPG .avi (and mp4v .mp4 where the OpenCV wheel can encode it), decoded by OpenCV's real
FFmpeg path; no camera is needed. Bad sources are real too: truncated files, a named pipe nobody writes,
a pipe that stalls, a TCP server that never answers.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from skinedge import Classifier
from skinedge.preprocess import prepare

# skinedge.video quiets OpenCV's and FFmpeg's own stderr logging before cv2 loads; this module loads it first.
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
cv2 = pytest.importorskip("cv2", reason="OpenCV is not installed (the camera extra: opencv-python-headless)")

from skinedge.cli import main  # noqa: E402
from skinedge.video import FrameResult, SourceError, check_frame, parse_source, save_frame, watch  # noqa: E402

# Two test photos the bundled model gives different, confident labels (checked in `photos`, not assumed).
PHOTO_A = "test/Acne/MinhKemm__Acne_vulgaris__acne-face-3-15.jpg"
PHOTO_B = "test/Vitiligo/RakeshRoshan__images_(17).jpg"
SIZE = (320, 240)  # clip frame size (width, height)
PER_PHOTO = 8  # frames of each photo in the A-then-B clip


def _rgb(path: Path, size: tuple[int, int] = SIZE) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB").resize(size, Image.Resampling.BILINEAR), dtype=np.uint8)


def write_clip(path: Path, frames_rgb: list[np.ndarray], fourcc: str = "MJPG", fps: float = 30.0) -> Path:
    h, w = frames_rgb[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    if not writer.isOpened():
        pytest.skip(f"this OpenCV wheel cannot encode {fourcc} into {path.suffix}")
    for f in frames_rgb:
        writer.write(np.ascontiguousarray(f[:, :, ::-1]))  # VideoWriter takes BGR
    writer.release()
    return path


def read_all(path: Path) -> list[np.ndarray]:
    """Every frame as OpenCV decodes it (BGR), read here independently of skinedge.video."""
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    cap.release()
    return frames


def read_jpegs(path: Path) -> list[bytes]:
    """Every frame of a Motion-JPEG file as the JPEG it is stored as (OpenCV's FFmpeg reader, undecoded), read
    here independently of skinedge.video."""
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    assert cap.set(cv2.CAP_PROP_FORMAT, -1)
    packets = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        packets.append(f.tobytes())
    cap.release()
    return packets


@pytest.fixture(scope="module")
def clf() -> Classifier:
    with Classifier(num_threads=1) as c:
        yield c


@pytest.fixture(scope="module")
def photos(skin6_dir: Path, clf: Classifier) -> dict[str, tuple[np.ndarray, str]]:
    """name -> (frame-sized RGB picture, the label the model gives that picture as a PNG photo)."""
    out = {}
    for name, rel in (("A", PHOTO_A), ("B", PHOTO_B)):
        rgb = _rgb(skin6_dir / rel)
        out[name] = (rgb, clf.classify(rgb).label)
    assert out["A"][1] != out["B"][1], "the two photos must get different labels for the switch test"
    return out


@pytest.fixture(scope="module")
def clips(tmp_path_factory, photos) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("clips")
    a, b = photos["A"][0], photos["B"][0]
    small_a = np.asarray(Image.fromarray(a).resize((160, 120)))
    out = {
        "ab": write_clip(d / "ab.avi", [a] * PER_PHOTO + [b] * PER_PHOTO),
        "long": write_clip(d / "long.avi", [small_a] * 100),
    }
    data = out["ab"].read_bytes()
    out["truncated"] = d / "truncated.avi"
    out["truncated"].write_bytes(data[: len(data) // 2])  # cut mid-way: the header still says 16 frames
    return out


def _ema(scores: list[np.ndarray], smoothing: float) -> list[np.ndarray]:
    out, s = [], None
    for x in scores:
        s = x if s is None else smoothing * s + (1 - smoothing) * x
        out.append(s)
    return out


# -- preprocessing: a frame is a photo ---------------------------------------------------------------


def test_a_motion_jpeg_frame_is_classified_as_the_jpeg_photo_it_is(clf, clips, tmp_path):
    packet = read_jpegs(clips["ab"])[0]
    assert packet[:2] == b"\xff\xd8"
    photo = tmp_path / "frame0.jpg"
    photo.write_bytes(packet)
    results = list(watch(clf, clips["ab"], max_frames=1))
    assert results[0].jpeg == packet
    # What watch() fed the model is what prepare() makes of the JPEG photo (draft decoding included).
    assert np.allclose(results[0].raw.scores, clf.invoke(prepare(photo, clf.spec)), rtol=0, atol=1e-12)
    assert results[0].raw.scores == clf.classify(photo).scores
    # The frame itself is the JPEG decoded in full, not at the model's draft scale ...
    assert np.array_equal(results[0].frame, np.asarray(Image.open(photo).convert("RGB")))
    assert results[0].frame.shape == (SIZE[1], SIZE[0], 3)
    # ... within JPEG decoders' rounding of what OpenCV's own decoder makes of the frame.
    opencv_rgb = read_all(clips["ab"])[0][:, :, ::-1].astype(np.int16)
    assert np.abs(results[0].frame.astype(np.int16) - opencv_rgb).mean() < 2.0


def test_a_decoded_frame_gives_the_same_input_tensor_as_prepare_on_a_png(clf, photos, tmp_path):
    a = photos["A"][0]
    clip = write_clip(tmp_path / "a.mp4", [a] * 3, "mp4v")  # not Motion-JPEG: OpenCV decodes the frames
    frame_bgr = read_all(clip)[0]
    png = tmp_path / "frame0.png"
    Image.fromarray(np.ascontiguousarray(frame_bgr[:, :, ::-1]), "RGB").save(png)  # lossless
    expected = prepare(png, clf.spec)
    results = list(watch(clf, clip, max_frames=1))
    assert results[0].jpeg is None
    assert np.array_equal(results[0].frame, np.asarray(Image.open(png)))
    # What watch() fed the model is what prepare() makes of the PNG: same tensor, so the same scores.
    assert np.allclose(results[0].raw.scores, clf.invoke(expected), rtol=0, atol=1e-12)
    assert np.allclose(clf.classify_frame(frame_bgr).scores, clf.classify(png).scores, rtol=0, atol=1e-12)
    pixels, _, _ = clf.preprocess(np.ascontiguousarray(frame_bgr[:, :, ::-1]))
    assert np.array_equal(pixels, expected)


def test_bgr_to_rgb_with_and_without_opencv(monkeypatch):
    from skinedge.classifier import bgr_to_rgb

    frame = np.random.default_rng(1).integers(0, 256, (37, 53, 4), dtype=np.uint8)[:, :, :3]  # not contiguous
    expected = np.stack([frame[:, :, 2], frame[:, :, 1], frame[:, :, 0]], axis=2)
    assert np.array_equal(bgr_to_rgb(frame), expected)  # OpenCV's cvtColor (cv2 loaded)
    monkeypatch.delitem(sys.modules, "cv2")
    out = bgr_to_rgb(frame)  # numpy's channel copy
    assert np.array_equal(out, expected) and out.flags.c_contiguous


def test_classify_frame_refuses_a_non_frame(clf):
    from skinedge.errors import ImageError

    with pytest.raises(ImageError, match="HxWx3 uint8 BGR"):
        clf.classify_frame(np.zeros((10, 10), np.uint8))


# -- the pipeline on a clip of photo A then photo B ----------------------------------------------------


@pytest.mark.parametrize("suffix,fourcc", [(".avi", "MJPG"), (".mp4", "mp4v")])
def test_smoothed_label_switches_from_a_to_b(clf, photos, tmp_path, suffix, fourcc):
    (a, label_a), (b, label_b) = photos["A"], photos["B"]
    clip = write_clip(tmp_path / f"ab{suffix}", [a] * PER_PHOTO + [b] * PER_PHOTO, fourcc)
    smoothing = 0.6
    results = list(watch(clf, clip, smoothing=smoothing))
    # A file is not live: every frame, in order.
    assert [r.index for r in results] == list(range(2 * PER_PHOTO))
    # Independent reference: each frame classified as a photo, smoothed here. A Motion-JPEG frame is the JPEG
    # stored in the file; other codecs' frames are what OpenCV decodes.
    if fourcc == "MJPG":
        raw = [np.asarray(clf.classify(j).scores) for j in read_jpegs(clip)]
    else:
        raw = [np.asarray(clf.classify_frame(f).scores) for f in read_all(clip)]
    ema = _ema(raw, smoothing)
    for r, x, s in zip(results, raw, ema):
        assert np.allclose(r.raw.scores, x, rtol=0, atol=1e-9)
        assert np.allclose(r.result.scores, s, rtol=0, atol=1e-9)
        assert r.result.label == clf.labels[int(np.argmax(s))]
        assert r.result.uncertain == (s.max() < clf.abstain_threshold)
    labels = [r.result.label for r in results]
    switch = next(i for i, s in enumerate(ema) if clf.labels[int(np.argmax(s))] == label_b)
    assert labels[0] == label_a and labels[-1] == label_b
    assert labels == [label_a] * switch + [label_b] * (len(labels) - switch)
    assert PER_PHOTO <= switch < PER_PHOTO + 4  # smoothing delays the switch by a frame or two, not more
    assert [r.index for r in results if r.label_changed] == [0, switch]
    # Smoothing shows: right after the cut the raw result is already B, the smoothed one not yet.
    assert results[PER_PHOTO].raw.label == label_b and results[PER_PHOTO].result.label == label_a
    # ... and its top score is split between A and B: below A's own before the cut, and below B's raw score.
    cut = results[PER_PHOTO]
    assert cut.result.score < min(results[PER_PHOTO - 1].result.score, cut.raw.score)


def test_no_smoothing_gives_the_raw_scores(clf, clips):
    for r in watch(clf, clips["ab"], smoothing=0.0):
        assert r.result.scores == r.raw.scores and r.result.label == r.raw.label


def test_frame_results_are_consistent(clf, clips):
    results = list(watch(clf, clips["ab"]))
    # A file's time_s is the frame's place in the video (the clips are written at 30 fps), not processing time.
    assert [r.time_s for r in results] == pytest.approx([r.index / 30 for r in results], abs=1e-6)
    assert results[-1].index == 2 * PER_PHOTO - 1
    for r in results:
        # Capture to result includes the frame's own preprocessing and invoke (rounded to 0.01 ms in timings).
        assert r.latency_ms + 0.02 >= r.raw.timings.preprocess_ms + r.raw.timings.invoke_ms, r
        assert r.fps > 0
    assert all(r.frame.shape == (SIZE[1], SIZE[0], 3) and r.frame.dtype == np.uint8 for r in results)
    assert results[0].result.source.endswith("#0")
    with pytest.raises(dataclasses.FrozenInstanceError):
        results[0].index = 5  # type: ignore[misc]


def test_max_frames_and_duration_stop(clf, clips):
    assert [r.index for r in watch(clf, clips["long"], max_frames=5)] == [0, 1, 2, 3, 4]
    t0 = time.monotonic()
    results = list(watch(clf, clips["long"], duration_s=0.15))  # seconds of running, not of video
    assert 1 <= len(results) < 100  # 100 frames take far longer than 0.15 s at the model's pace
    assert [r.index for r in results] == list(range(len(results)))
    assert time.monotonic() - t0 < 5


def test_live_mode_keeps_only_the_newest_frame(clf, clips):
    # A slow consumer on a source forced live: stale frames are dropped and the last frame still comes.
    seen = []
    for r in watch(clf, clips["long"], drop_stale=True):
        seen.append(r.index)
        time.sleep(0.05)
    assert seen == sorted(set(seen)) and seen[-1] == 99
    assert len(seen) < 100


def test_file_mode_keeps_every_frame_for_a_slow_consumer(clf, clips):
    seen = []
    for r in watch(clf, clips["long"], max_frames=20):
        seen.append(r.index)
        time.sleep(0.01)
    assert seen == list(range(20))


def test_stopping_early_releases_the_source(clf, clips):
    before = {t.name for t in threading.enumerate()}
    it = watch(clf, clips["long"])
    next(it)
    it.close()
    time.sleep(0.1)
    assert sum(t.name == "skinedge-capture" for t in threading.enumerate()) <= sum(
        n == "skinedge-capture" for n in before)


def test_frames_in_order_on_per_core_interpreters_match_one_at_a_time(clips):
    """A file's frames on two single-thread interpreters (each decoding its own frames): the same frames, in
    order, with the same raw and smoothed scores as one frame at a time on one interpreter; heatmaps too; and a
    file that breaks mid-way yields every frame before the break, then the same error."""
    with Classifier(num_threads=2) as clf:
        one = list(watch(clf, clips["ab"], interpreters=1))
        per_core = list(watch(clf, clips["ab"]))  # default: the classifier's 2 threads, 2 interpreters
        assert [r.index for r in per_core] == [r.index for r in one] == list(range(2 * PER_PHOTO))
        for a, b in zip(one, per_core, strict=True):
            assert (b.result.label, b.raw.label, b.result.source, b.time_s) == (
                a.result.label, a.raw.label, a.result.source, a.time_s)
            # int8 arithmetic gives the same integers on 1 or 2 threads; the float softmax may round apart
            np.testing.assert_allclose(b.raw.scores, a.raw.scores, rtol=0, atol=1e-6)
            np.testing.assert_allclose(b.result.scores, a.result.scores, rtol=0, atol=1e-6)
            assert np.array_equal(b.frame, a.frame)
        assert [r.index for r in watch(clf, clips["long"], max_frames=5)] == [0, 1, 2, 3, 4]
        explained = list(watch(clf, clips["ab"], explain=True, max_frames=3))
        alone = [clf.explain(r.frame).heatmap for r in explained]
        for r, heatmap in zip(explained, alone, strict=True):
            np.testing.assert_allclose(r.result.heatmap, heatmap, rtol=0, atol=1e-5)
        err_one, got_one = _source_error(clf, clips["truncated"], interpreters=1)
        err, got = _source_error(clf, clips["truncated"])
        assert 0 < got == got_one < 2 * PER_PHOTO and err.reason == err_one.reason
        with pytest.raises(ValueError, match="interpreters"):
            watch(clf, clips["ab"], interpreters=0)


# -- bad sources ------------------------------------------------------------------------------------


def _source_error(clf, source, **kw) -> tuple[SourceError, int]:
    got = 0
    with pytest.raises(SourceError) as info:
        for _ in watch(clf, source, **kw):
            got += 1
    return info.value, got


def test_missing_file_device_and_folder(clf, tmp_path):
    for source, reason in ((tmp_path / "none.avi", "no such file"), ("/dev/video97", "no such device"),
                           (tmp_path, "is a directory")):
        with pytest.raises(SourceError, match=reason) as info:
            watch(clf, source)
        assert info.value.source == str(source)


def test_camera_index_that_does_not_exist(clf):
    err, got = _source_error(clf, 63, open_timeout_s=5)
    assert got == 0 and err.source == "63" and "cannot open the camera" in err.reason


def test_not_a_video(clf, tmp_path, skin6_dir):
    text = tmp_path / "notes.avi"
    text.write_text("not a video " * 100)
    err, _ = _source_error(clf, text)
    assert err.source == str(text) and "cannot open as a video" in err.reason
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(SourceError, match="empty file"):
        watch(clf, empty)
    with pytest.raises(SourceError, match="is a photo"):
        watch(clf, skin6_dir / PHOTO_A)


def test_truncated_avi_dies_mid_way(clf, clips):
    err, got = _source_error(clf, clips["truncated"])
    assert 0 < got < 2 * PER_PHOTO
    assert err.source == str(clips["truncated"])
    # Read as JPEGs (Motion-JPEG), the cut lands inside the next frame's JPEG, which cannot be decoded; read
    # decoded (other readers), the file ends early against the 16 frames it declares. Either way: the place, why.
    in_a_frame = f"frame {got}:" in err.reason and "truncated" in err.reason
    assert in_a_frame or f"of its {2 * PER_PHOTO} frames" in err.reason


def test_truncated_mp4(clf, photos, tmp_path):
    clip = write_clip(tmp_path / "c.mp4", [photos["A"][0]] * 6, "mp4v")
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])  # the index (moov) is at the end: lost
    err, got = _source_error(clf, cut)
    assert got == 0 and err.source == str(cut)


def test_zero_size_and_odd_frames():
    with pytest.raises(SourceError, match="frame 3 is empty"):
        check_frame(np.zeros((0, 0, 3), np.uint8), "cam", 3)
    with pytest.raises(SourceError, match="no image"):
        check_frame(None, "cam", 0)
    with pytest.raises(SourceError, match="uint16"):
        check_frame(np.zeros((4, 4, 3), np.uint16), "cam", 0)
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert np.array_equal(check_frame(grey, "cam", 0), np.stack([grey] * 3, axis=2))
    bgra = np.random.default_rng(0).integers(0, 255, (3, 4, 4), dtype=np.uint8)
    assert np.array_equal(check_frame(bgra, "cam", 0), bgra[:, :, :3])


needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes (os.mkfifo) are POSIX only")


@needs_fifo
def test_pipe_nobody_writes_times_out_on_open(clf, tmp_path):
    fifo = tmp_path / "cam.fifo"
    os.mkfifo(fifo)
    t0 = time.monotonic()
    try:
        err, _ = _source_error(clf, fifo, open_timeout_s=0.5)
        assert "timed out opening" in err.reason and err.source == str(fifo)
        assert time.monotonic() - t0 < 3
    finally:
        try:  # a writer that opens and closes lets OpenCV's blocked open() return: the capture thread ends
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:  # no reader left: nothing to release
            pass


@needs_fifo
def test_stream_that_stalls_times_out_on_read(clf, clips, tmp_path):
    fifo = tmp_path / "stall.fifo"
    os.mkfifo(fifo)
    data = clips["long"].read_bytes()
    release = threading.Event()

    def writer() -> None:
        with open(fifo, "wb") as f:
            f.write(data[: len(data) // 2])
            f.flush()
            release.wait(10)  # hold the pipe open without writing: the stream stalls

    threading.Thread(target=writer, daemon=True).start()
    try:
        assert parse_source(fifo).live
        err, got = _source_error(clf, fifo, read_timeout_s=0.5, drop_stale=False)
        assert got > 0 and "no frame for 0.5 s" in err.reason
    finally:
        release.set()


def test_url_that_never_answers_times_out(clf):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    port = server.getsockname()[1]
    try:
        t0 = time.monotonic()
        err, _ = _source_error(clf, f"http://127.0.0.1:{port}/live.mjpg", open_timeout_s=0.5)
        assert err.source.endswith("/live.mjpg") and time.monotonic() - t0 < 3
        assert "timed out" in err.reason or "cannot open the stream" in err.reason
    finally:
        server.close()
    with pytest.raises(SourceError, match="unsupported URL scheme"):
        watch(clf, "gopher://example/x")


def test_picamera_without_picamera2(clf):
    try:
        import picamera2  # noqa: F401
    except ImportError:
        with pytest.raises(SourceError, match="picamera2 is not installed"):
            watch(clf, None, picamera=True)
    else:
        pytest.skip("picamera2 is installed: the message for its absence cannot be shown")


def test_capture_size_asks_cameras_for_the_smallest_mode_that_covers_the_input():
    from skinedge.video import capture_size_for

    assert capture_size_for(224, 224) == (320, 240)  # the default models
    assert capture_size_for(240, 240) == (320, 240)  # EfficientNet-Lite1
    assert capture_size_for(260, 260) == (640, 480)
    assert capture_size_for(300, 225) == (320, 240)
    assert capture_size_for(4000, 3000) == (4000, 3000)  # beyond every mode: the input itself


def test_capture_size_leaves_files_as_they_are(clf, clips):
    for size in ("model", "camera", (64, 48)):
        r = next(iter(watch(clf, clips["ab"], max_frames=1, capture_size=size)))
        assert r.frame.shape == (SIZE[1], SIZE[0], 3)


def test_bad_arguments(clf, clips):
    for kw in ({"smoothing": 1.0}, {"smoothing": -0.1}, {"max_frames": 0}, {"duration_s": 0},
               {"capture_size": "full"}, {"capture_size": (640, 0)}, {"capture_size": (640,)}):
        with pytest.raises(ValueError):
            watch(clf, clips["ab"], **kw)


def test_cli_capture_size_is_checked(clips):
    res = CliRunner().invoke(main, ["watch", str(clips["ab"]), "--capture-size", "640by480"])
    assert res.exit_code == 2 and "--capture-size" in res.output and "640by480" in res.output
    res = CliRunner().invoke(main, ["watch", str(clips["ab"]), "--capture-size", "640x480", "--frames", "1", "--json"])
    assert res.exit_code == 0 and len(res.stdout.splitlines()) == 1


# -- the command line --------------------------------------------------------------------------------


def test_cli_json_lines(clips, photos):
    res = CliRunner().invoke(main, ["watch", str(clips["ab"]), "--json", "--threads", "1"])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert [r["frame"] for r in rows] == list(range(2 * PER_PHOTO))
    assert set(rows[0]) >= {"time_s", "frame", "label", "score", "uncertain", "fps"}
    assert rows[0]["label"] == photos["A"][1] and rows[-1]["label"] == photos["B"][1]


def test_cli_frames_and_save_frames(clips, photos, tmp_path):
    out = tmp_path / "changes"
    res = CliRunner().invoke(main, ["watch", str(clips["ab"]), "--threads", "1", "--save-frames", str(out)])
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert len(lines) == 2 * PER_PHOTO and all(line.startswith("frame ") for line in lines)  # not a TTY: plain
    saved = sorted(p.name for p in out.iterdir())
    assert len(saved) == 2 and saved[0] == f"000000_{photos['A'][1]}.png"
    switch = int(saved[1].split("_")[0])
    assert saved[1] == f"{switch:06d}_{photos['B'][1]}.png" and PER_PHOTO <= switch < PER_PHOTO + 4
    decoded = np.asarray(Image.open(io.BytesIO(read_jpegs(clips["ab"])[switch])).convert("RGB"))  # in full
    assert np.array_equal(np.asarray(Image.open(out / saved[1])), decoded)  # the frame where it changed
    res = CliRunner().invoke(main, ["watch", str(clips["long"]), "--threads", "1", "--frames", "3", "--json"])
    assert res.exit_code == 0 and len(res.stdout.splitlines()) == 3


def test_cli_explain_needs_save_frames(clips):
    res = CliRunner().invoke(main, ["watch", str(clips["ab"]), "--explain"])
    assert res.exit_code == 2 and "--save-frames" in res.output


def test_cli_explain_overlays_heatmaps_on_saved_frames(clips, tmp_path):
    plain, explained = tmp_path / "plain", tmp_path / "explained"
    for folder, extra in ((plain, []), (explained, ["--explain"])):
        res = CliRunner().invoke(main, ["watch", str(clips["ab"]), "--threads", "1", "--save-frames", str(folder),
                                        *extra])
        assert res.exit_code == 0, res.output
    names = sorted(p.name for p in plain.iterdir())
    assert names == sorted(p.name for p in explained.iterdir())
    a = np.asarray(Image.open(plain / names[0]), np.int16)
    b = np.asarray(Image.open(explained / names[0]), np.int16)
    assert a.shape == b.shape and np.abs(a - b).mean() > 1  # the overlay changed the picture


def test_save_frame_names_and_pixels(clf, clips, tmp_path):
    r: FrameResult = next(iter(watch(clf, clips["ab"], max_frames=1)))
    path = save_frame(r, tmp_path / "x")
    assert path.name == f"000000_{r.result.label}.png"
    assert np.array_equal(np.asarray(Image.open(path)), r.frame)


def _cli(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "skinedge.cli", *args], capture_output=True, text=True,
                          timeout=60, **kw)


def test_cli_bad_sources_print_one_line_and_exit_1(clips, tmp_path):
    for source in (str(clips["truncated"]), "/dev/video97", str(tmp_path / "missing.mp4")):
        proc = _cli("watch", source, "--threads", "1", "--json")
        assert proc.returncode == 1, proc.stderr
        err = proc.stderr.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"error: {source}: "), proc.stderr
        assert "Traceback" not in proc.stderr

def _sigint_as_in_a_terminal() -> None:
    """Ctrl-C's default action in the child. A suite started as a background job (``cmd &`` in a script, as CI
    runners do) inherits SIGINT ignored, and Python installs no KeyboardInterrupt handler for an ignored signal:
    the child would rightly honour that and never see the test's Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process is POSIX")
def test_cli_ctrl_c_stops_cleanly(photos, tmp_path):
    clip = write_clip(tmp_path / "many.avi", [np.asarray(Image.fromarray(photos["A"][0]).resize((64, 48)))] * 3000)
    proc = subprocess.Popen([sys.executable, "-m", "skinedge.cli", "watch", str(clip), "--threads", "1", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_sigint_as_in_a_terminal)
    first = proc.stdout.readline()
    assert json.loads(first)["frame"] == 0
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("interrupted: ")


def test_photos_never_import_cv2(skin6_dir):
    code = ("import sys, skinedge, skinedge.cli\n"
            "try:\n    skinedge.cli.main(['predict', '--threads', '1', sys.argv[1]])\n"
            "except SystemExit as e:\n    assert e.code == 0, e.code\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'cv2' or m == 'skinedge.video'))")
    proc = subprocess.run([sys.executable, "-c", code, str(skin6_dir / PHOTO_A)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"
