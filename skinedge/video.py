"""Classify a camera or a video frame by frame: :func:`watch` yields a smoothed :class:`FrameResult` per frame.

Needs OpenCV (``pip install "skinedge[camera]"``, opencv-python-headless), imported here only: ``import
skinedge`` and photo classification never load it. On Raspberry Pi OS, ``picamera=True`` reads the camera
module through ``picamera2`` instead (``sudo apt install python3-picamera2``).

The pipeline has two threads. A capture thread opens the source, reads frames and hands them over; the
caller's thread classifies them at the model's pace. Live sources (camera devices, URLs, pipes) keep only
the newest frame, so a slow model skips frames instead of falling behind the camera. A video *file* is not
live: by default every frame is classified, in order, and the capture thread decodes and resizes the next
frames while the model runs (``drop_stale`` forces either behaviour). Scores are smoothed over frames with
an exponential moving average, and ``uncertain`` compares the smoothed top score with the classifier's
abstain threshold, as for photos. Outputs are model scores, not a diagnosis.

Less work per frame: cameras are asked for the smallest mode that covers the model's input (``capture_size``).
Motion-JPEG files and streams (MJPEG IP cameras) are read as the JPEG each frame is, and decoded the way a
JPEG photo is: at the smallest DCT scale that covers the model's input, which halves the capture thread's
work on a 640x480 clip. ``FrameResult.frame`` decodes such a frame in full when it is asked for.

Every problem with the source (missing device, unreadable or non-video file, a stream that stalls or dies
mid-way, empty frames, open or read timeouts) raises :class:`SourceError`, naming the source.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import importlib.util
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from skinedge.classifier import ClassificationResult, Classifier, bgr_to_rgb
from skinedge.errors import ImageError, SkinedgeError
from skinedge.options import ClassifierOptions
from skinedge.preprocess import IMAGE_SUFFIXES, Prepared, decode
from skinedge.reasons import live_status

#: OpenCV and FFmpeg print their own warnings on stderr for problems that skinedge reports as a typed
#: error anyway (a missing camera, a damaged frame). Quiet by default; set these variables to see them.
_QUIET_CV2 = {"OPENCV_LOG_LEVEL": "ERROR", "OPENCV_FFMPEG_LOGLEVEL": "-8"}

#: A file that declares N frames may deliver a few fewer (the count is often duration x fps): fewer than
#: this fraction, less two frames, is reported as a truncated file.
_TRUNCATED_BELOW = 0.98

#: In-order mode: frames decoded ahead of the model (enough to hide a slow read, little memory).
_PREFETCH = 4

_NO_PICAMERA2 = ("picamera2 is not installed: on Raspberry Pi OS, sudo apt install python3-picamera2 and create "
                 "the venv with --system-site-packages")

#: Camera modes asked for, smallest first (4:3, which webcams and the Pi camera offer): by default a camera is
#: asked for the smallest that covers the model's input, so that it (the Pi camera's ISP in hardware) does the
#: downscaling rather than the CPU decoding and resizing 640x480 or larger frames.
CAPTURE_SIZES = ((320, 240), (640, 480), (800, 600), (1024, 768), (1280, 960), (1600, 1200), (2048, 1536))

_URL_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt", "rtp")


class SourceError(SkinedgeError):
    """A video source could not be opened or read: ``source`` names it, ``reason`` says what went wrong."""


@dataclass(frozen=True)
class FrameResult:
    """One classified frame.

    Attributes:
        index: frame index in the source (0-based, counting frames skipped as stale).
        time_s: where the frame is: for a video file its position in the video (seconds from the start, as
            the file's timestamps say); for a camera, URL or pipe the capture time, seconds since the source opened.
        frame: the frame, ``HxWx3`` uint8 RGB, at the source's full size (a Motion-JPEG frame is decoded in full
            at the first access: the model's input was made from a reduced-scale decode, as for JPEG photos).
        jpeg: the frame as a Motion-JPEG source sent it (a JPEG file's bytes); None for other sources.
        result: the smoothed result: label, score, scores, top_k and ``uncertain`` from the moving
            average; source, timings (and heatmap, with ``explain``) of this frame.
        raw: this frame's own, unsmoothed result.
        fps: results per second since the source opened.
        latency_ms: from capture to result.
        label_changed: the smoothed label differs from the previous result's (True for the first result).
    """

    index: int
    time_s: float
    result: ClassificationResult
    raw: ClassificationResult
    fps: float
    latency_ms: float
    label_changed: bool
    jpeg: bytes | None = field(default=None, repr=False)
    _rgb: np.ndarray | None = field(default=None, repr=False, compare=False)

    @functools.cached_property
    def frame(self) -> np.ndarray:
        """The frame, ``HxWx3`` uint8 RGB, full size (see the class's attributes)."""
        if self._rgb is not None:
            return self._rgb
        assert self.jpeg is not None
        return np.asarray(decode(self.jpeg))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (used by ``skinedge watch --json``)."""
        return {
            "time_s": round(self.time_s, 4),
            "frame": self.index,
            "label": self.result.label,
            "score": round(self.result.score, 6),
            "uncertain": self.result.uncertain,
            "reason": self.result.reason,
            **({"status": live_status(self.result)} if self.result.reason else {}),
            "gates": {name: round(float(v), 6) for name, v in self.result.gates.items()},
            "fps": round(self.fps, 2),
            "latency_ms": round(self.latency_ms, 2),
            "label_changed": self.label_changed,
        }


@dataclass(frozen=True)
class VideoSource:
    """What :func:`parse_source` made of a source: ``kind`` is ``device``, ``url``, ``file``, ``stream`` (a
    pipe or socket) or ``picamera``; ``target`` is what OpenCV (or picamera2) opens."""

    name: str
    kind: str
    target: int | str

    @property
    def live(self) -> bool:
        """Frames arrive in real time (everything but a file): stale frames are dropped by default."""
        return self.kind != "file"


def parse_source(source: str | int | os.PathLike | None, *, picamera: bool = False) -> VideoSource:
    """Classify ``source``: a device index (``0``), ``/dev/videoN``, a URL, or a video file.

    Raises:
        SourceError: no such device or file, a folder, an empty file, or a photo rather than a video.
    """
    name = "picamera" if source is None else os.fspath(source) if isinstance(source, os.PathLike) else str(source)
    if picamera:
        if source is None:
            return VideoSource("picamera 0", "picamera", 0)
        if not name.isdigit():
            raise SourceError(name, "with --picamera the source is a camera number (0, 1...) or nothing")
        return VideoSource(f"picamera {name}", "picamera", int(name))
    if source is None:
        raise SourceError("<none>", "no video source given")
    if isinstance(source, int) or name.isdigit():
        return VideoSource(name, "device", int(name))
    scheme = name.split("://", 1)[0].lower() if "://" in name else ""
    if scheme:
        if scheme not in _URL_SCHEMES:
            raise SourceError(name, f"unsupported URL scheme {scheme!r} (use one of {', '.join(_URL_SCHEMES)})")
        return VideoSource(name, "url", name)
    path = Path(name)
    is_device_path = name.startswith("/dev/video")
    try:
        st = path.stat()
    except FileNotFoundError:
        raise SourceError(name, "no such device" if is_device_path else "no such file") from None
    except OSError as exc:
        raise SourceError(name, f"cannot read ({exc.strerror or exc})") from None
    import stat

    if stat.S_ISCHR(st.st_mode):
        return VideoSource(name, "device", name)
    if stat.S_ISDIR(st.st_mode):
        raise SourceError(name, "is a directory, not a video")
    if not stat.S_ISREG(st.st_mode):
        return VideoSource(name, "stream", name)  # a named pipe or socket: frames arrive as they are written
    if st.st_size == 0:
        raise SourceError(name, "empty file (0 bytes)")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        raise SourceError(name, "is a photo, not a video: use skinedge predict")
    return VideoSource(name, "file", name)


def _import_cv2(name: str) -> Any:
    for key, value in _QUIET_CV2.items():
        os.environ.setdefault(key, value)
    try:
        import cv2
    except ImportError:
        raise SourceError(name, 'OpenCV is not installed: pip install "skinedge[camera]"') from None
    return cv2


def capture_size_for(width: int, height: int) -> tuple[int, int]:
    """The camera mode to ask for, for a model whose input is ``width x height``: the smallest of
    :data:`CAPTURE_SIZES` that covers it (the input size itself beyond the largest)."""
    return next(((w, h) for w, h in CAPTURE_SIZES if w >= width and h >= height), (width, height))


def check_frame(frame: Any, name: str, index: int) -> np.ndarray:
    """A frame as a reader returned it, validated and made ``HxWx3`` uint8 BGR (grey and BGRA converted).

    Raises:
        SourceError: no frame, an empty (zero-size) frame, or an unusable pixel layout.
    """
    if frame is None or not isinstance(frame, np.ndarray):
        raise SourceError(name, f"frame {index}: the reader returned no image")
    if frame.size == 0 or frame.ndim < 2 or 0 in frame.shape[:2]:
        raise SourceError(name, f"frame {index} is empty (shape {frame.shape})")
    if frame.dtype != np.uint8:
        raise SourceError(name, f"frame {index} has {frame.dtype} pixels, expected uint8")
    if frame.ndim == 2:
        frame = frame[:, :, None]
    channels = frame.shape[2] if frame.ndim == 3 else 0
    if channels == 1:
        return np.repeat(frame, 3, axis=2)
    if channels == 4:
        return np.ascontiguousarray(frame[:, :, :3])  # BGRA: the alpha of a camera frame carries nothing
    if channels != 3:
        raise SourceError(name, f"frame {index} has shape {frame.shape}, expected HxWx3")
    return frame


def read_frames_as_jpeg(cv2: Any, cap: Any) -> bool:
    """Switch an opened FFmpeg capture of a Motion-JPEG source to hand over each frame as its JPEG (undecoded
    packets); True if it did. Other codecs, and other readers (V4L2 devices, picamera2), stay decoded."""
    try:
        if cap.getBackendName() != "FFMPEG":
            return False
        fourcc = int(cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little")
    except (cv2.error, OverflowError, ValueError):
        return False
    return fourcc in (b"MJPG", b"mjpg", b"MJPA") and bool(cap.set(cv2.CAP_PROP_FORMAT, -1))


def check_jpeg_frame(packet: Any, name: str, index: int) -> bytes:
    """A Motion-JPEG frame as read undecoded: its JPEG bytes.

    Raises:
        SourceError: no data, or data that is not a JPEG.
    """
    if not isinstance(packet, np.ndarray) or packet.size == 0:
        raise SourceError(name, f"frame {index}: the reader returned no data")
    data = packet.tobytes()
    if not data.startswith(b"\xff\xd8"):
        raise SourceError(name, f"frame {index}: not a JPEG frame (damaged Motion-JPEG data)")
    return data


class _PiCamera:
    """picamera2 behind the two calls the capture thread makes (``read``, ``release``)."""

    def __init__(self, camera_num: int, name: str, size: tuple[int, int] | None) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError:
            raise SourceError(name, _NO_PICAMERA2) from None
        try:
            self._cam = Picamera2(camera_num)
            # "RGB888" is B, G, R in memory: the same order as OpenCV frames.
            main = {"size": size or (640, 480), "format": "RGB888"}  # the ISP scales to ``size`` in hardware
            self._cam.configure(self._cam.create_video_configuration(main=main))
            self._cam.start()
        except Exception as exc:  # noqa: BLE001 - libcamera raises many types; all mean "cannot open"
            raise SourceError(name, f"cannot open the camera ({type(exc).__name__}: {exc})") from None

    def read(self) -> tuple[bool, np.ndarray | None]:
        try:
            return True, self._cam.capture_array()
        except Exception:  # noqa: BLE001 - reported by the caller as a stream that stopped
            return False, None

    def get(self, prop: int) -> float:
        return 0.0  # no declared frame count: a live camera

    def release(self) -> None:
        self._cam.stop()
        self._cam.close()


@dataclass
class _Frame:
    index: int
    captured: float  # time.monotonic()
    rgb: np.ndarray | None  # decoded frames; None for Motion-JPEG frames, read as their JPEG
    position_s: float | None = None  # a file's own timestamp of the frame
    jpeg: bytes | None = None
    prepared: Prepared | None = None  # prepared on the capture thread (in-order mode)


class _Capture:
    """The capture thread: opens the source, reads frames, and hands the newest (or every) one over.

    OpenCV's open and read can block (a dead stream, a pipe with no writer), so both run here and the
    caller waits for them with a timeout; a thread stuck in OpenCV is a daemon and never holds up exit.
    """

    def __init__(self, src: VideoSource, classifier: Classifier, *, drop_stale: bool, prepare: bool,
                 open_timeout_s: float, read_timeout_s: float, capture_size: tuple[int, int] | None = None) -> None:
        self.src = src
        self._capture_size = capture_size  # cameras only: the mode asked for (None: the camera's default)
        self._classifier = classifier
        self._drop = drop_stale
        self._prepare = prepare
        self._open_timeout_s = open_timeout_s
        self._read_timeout_s = read_timeout_s
        self._cond = threading.Condition()
        self._frames: collections.deque[_Frame] = collections.deque(maxlen=1 if drop_stale else None)
        self._end: SourceError | str | None = None  # "eof" or the error that ended the stream
        self._stop = False
        self._opened = threading.Event()
        self.opened_at = 0.0
        self.dropped = 0
        self._frame_count_prop: int | None = None  # cv2.CAP_PROP_FRAME_COUNT once OpenCV opened the source
        self._position_prop: int | None = None  # cv2.CAP_PROP_POS_MSEC, for files: each frame's place in the video
        self._jpeg_frames = False  # reading a Motion-JPEG source's frames as JPEG files (not decoded by OpenCV)
        self._thread = threading.Thread(target=self._run, name="skinedge-capture", daemon=True)

    # -- caller's side --------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()
        if not self._opened.wait(self._open_timeout_s):
            self.stop(join=False)  # the thread is stuck inside OpenCV's open: leave it, it is a daemon
            raise SourceError(self.src.name, f"timed out opening the source after {self._open_timeout_s:g} s")
        with self._cond:
            if isinstance(self._end, SourceError) and not self._frames:
                raise self._end

    def next(self, timeout_s: float) -> _Frame | None:
        """The next frame; None at a clean end. Raises TimeoutError if none came within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not self._frames:
                if self._end is not None:
                    if isinstance(self._end, SourceError):
                        raise self._end
                    return None
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                self._cond.wait(left)
            frame = self._frames.popleft()
            self._cond.notify_all()  # room for the in-order producer
            return frame

    @property
    def jpeg_frames(self) -> bool:
        """Whether frames come as JPEG files (a Motion-JPEG source) rather than decoded; known once opened."""
        return self._jpeg_frames

    def stop(self, join: bool = True) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if join and self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=1.0)

    # -- capture thread -------------------------------------------------------------------------

    def _open(self) -> Any:
        src = self.src
        if src.kind == "picamera":
            return _PiCamera(int(src.target), src.name, self._capture_size)
        cv2 = _import_cv2(src.name)
        if src.kind == "url":
            # FFmpeg's own timeouts, so a dead server frees this thread too (not only the caller).
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(self._open_timeout_s * 1000),
                      cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(self._read_timeout_s * 1000)]
            cap = cv2.VideoCapture(src.target, cv2.CAP_FFMPEG, params)
        elif src.kind == "device" and isinstance(src.target, str) and hasattr(cv2, "CAP_V4L2"):
            cap = cv2.VideoCapture(src.target, cv2.CAP_V4L2)  # /dev/videoN: Video4Linux, not FFmpeg
        else:
            cap = cv2.VideoCapture(src.target)
        if not cap.isOpened():
            cap.release()
            raise SourceError(src.name, {
                "device": "cannot open the camera (no such device, busy, or no permission)",
                "url": "cannot open the stream (unreachable, refused, or not a video)",
            }.get(src.kind, "cannot open as a video (not a video file, or an unsupported format)"))
        if src.kind == "device":
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # fewer frames queued in the driver: fresher frames
            if self._capture_size is not None:  # a request: the driver picks its nearest mode
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, self._capture_size[0])
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self._capture_size[1])
        self._frame_count_prop = cv2.CAP_PROP_FRAME_COUNT
        if src.kind == "file":
            self._position_prop = cv2.CAP_PROP_POS_MSEC
        self._jpeg_frames = read_frames_as_jpeg(cv2, cap)
        return cap

    def _run(self) -> None:
        try:
            cap = self._open()
        except SourceError as exc:
            self._finish(exc)
            self._opened.set()
            return
        except Exception as exc:  # noqa: BLE001 - OpenCV/libcamera failures become the source's error
            self._finish(SourceError(self.src.name, f"cannot open ({type(exc).__name__}: {exc})"))
            self._opened.set()
            return
        try:
            if self._stop:  # the caller gave up waiting for the open
                return
            self.opened_at = time.monotonic()
            self._opened.set()
            declared = int(cap.get(self._frame_count_prop)) if self._frame_count_prop is not None else 0
            self._read_loop(cap, max(declared, 0))
        except SourceError as exc:
            self._finish(exc)
        except Exception as exc:  # noqa: BLE001 - never die silently: the caller would wait for nothing
            self._finish(SourceError(self.src.name, f"capture failed ({type(exc).__name__}: {exc})"))
        finally:
            cap.release()

    def _read_loop(self, cap: Any, declared: int) -> None:
        name, index = self.src.name, 0
        while not self._stop:
            ok, raw = cap.read()
            captured = time.monotonic()
            if not ok:
                self._finish(self._end_reason(index, declared))
                return
            position = cap.get(self._position_prop) / 1000 if self._position_prop is not None else None
            if self._jpeg_frames:
                frame = _Frame(index, captured, None, position, jpeg=check_jpeg_frame(raw, name, index))
            else:
                frame = _Frame(index, captured, bgr_to_rgb(check_frame(raw, name, index)), position)
            if self._prepare:
                try:
                    frame.prepared = self._classifier.prepare(frame.jpeg if frame.rgb is None else frame.rgb)
                except ImageError as exc:
                    raise SourceError(name, f"frame {index}: {exc.reason}") from None
            with self._cond:
                while not self._drop and len(self._frames) >= _PREFETCH and not self._stop:
                    self._cond.wait()
                if self._drop and self._frames:
                    self.dropped += 1
                self._frames.append(frame)
                self._cond.notify_all()
            index += 1

    def _end_reason(self, delivered: int, declared: int) -> SourceError | str:
        """A failed read: the clean end of a file, or a source that broke."""
        name = self.src.name
        if delivered == 0:
            return SourceError(name, "opened, but no frame could be read (not a video, or damaged)")
        if declared > 0:
            if delivered < declared * _TRUNCATED_BELOW - 2:
                return SourceError(name, f"the video stops after {delivered} of its {declared} frames "
                                         "(truncated or damaged)")
            return "eof"
        if self.src.kind == "file":
            return "eof"  # a file that does not declare its length ends where its data ends
        return SourceError(name, f"the stream stopped delivering frames after {delivered}")

    def _finish(self, end: SourceError | str) -> None:
        with self._cond:
            if self._end is None:
                self._end = end
            self._cond.notify_all()


def watch(
    classifier: Classifier,
    source: str | int | os.PathLike | None,
    *,
    smoothing: float = 0.6,
    explain: bool = False,
    max_frames: int | None = None,
    duration_s: float | None = None,
    picamera: bool = False,
    open_timeout_s: float = 10.0,
    read_timeout_s: float = 5.0,
    drop_stale: bool | None = None,
    options: ClassifierOptions | None = None,
    capture_size: tuple[int, int] | Literal["model", "camera"] = "model",
    interpreters: int | None = None,
) -> Iterator[FrameResult]:
    """Classify a camera or video frame by frame, yielding one :class:`FrameResult` per classified frame.

    Args:
        classifier: the :class:`~skinedge.Classifier` to run (its abstain threshold sets ``uncertain``).
        source: a device index (``0``), ``/dev/videoN``, an RTSP/HTTP URL or a video file; with
            ``picamera``, a camera number or None.
        smoothing: weight of the past in the moving average of scores, in [0, 1): each result's scores
            are ``smoothing * previous + (1 - smoothing) * this frame``; 0 turns smoothing off.
        explain: classify with ``classifier.explain`` so results carry a heatmap (of the frame's own top
            class, ``heatmap_label``; the smoothed label may differ while it settles).
        max_frames, duration_s: stop after this many results, or this many seconds after the source opened.
        picamera: read the Raspberry Pi camera module through picamera2 instead of OpenCV.
        open_timeout_s, read_timeout_s: give up (SourceError) when the source takes longer to open, or
            to deliver a frame.
        drop_stale: keep only the newest frame (True) or classify every frame in order (False). Default:
            True for live sources (devices, URLs, pipes), False for video files, which are not live.
        options: the :class:`~skinedge.ClassifierOptions` of every result (default: the classifier's).
        capture_size: for cameras (devices and the Pi camera), the frame size to ask for: ``"model"`` (default)
            the smallest 4:3 mode that covers the model's input (:func:`capture_size_for`: 320x240 for a
            224x224 model), ``"camera"`` the camera's own default, or ``(width, height)``. The camera may
            deliver its nearest mode instead. Files and URLs deliver what they hold.
        interpreters: when frames are classified in order (``drop_stale`` False: video files by default), how
            many single-thread interpreters classify them side by side, each decoding its own frames (default:
            the classifier's ``num_threads``; see :meth:`~skinedge.Classifier.iter_classify`). A live source
            (newest frame only) is classified one frame at a time on the classifier's own interpreter, which
            gives each frame the shortest wait.

    The iterator ends at the end of a file, after ``max_frames`` or ``duration_s``, or when the caller
    stops iterating (closing it stops the capture thread and releases the source). The source is opened
    when the first result is asked for.

    Raises:
        SourceError: (from the call) no such file or device, a photo, a folder, OpenCV missing; (while
            iterating) the source cannot be opened, stalls beyond ``read_timeout_s``, stops mid-way, is
            truncated, or delivers empty frames.
    """
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    if duration_s is not None and duration_s <= 0:
        raise ValueError(f"duration_s must be > 0, got {duration_s}")
    if open_timeout_s <= 0 or read_timeout_s <= 0:
        raise ValueError("open_timeout_s and read_timeout_s must be > 0")
    if capture_size == "model":
        size: tuple[int, int] | None = capture_size_for(classifier.spec.width, classifier.spec.height)
    elif capture_size == "camera":
        size = None
    elif (isinstance(capture_size, tuple) and len(capture_size) == 2
          and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in capture_size)):
        size = capture_size
    else:
        raise ValueError(f'capture_size must be "model", "camera" or (width, height) > 0, got {capture_size!r}')
    opts = classifier.resolve_options(options)
    src = parse_source(source, picamera=picamera)
    # Fail here, in the caller's thread, when the reader's package is missing.
    if src.kind != "picamera":
        _import_cv2(src.name)
    elif importlib.util.find_spec("picamera2") is None:
        raise SourceError(src.name, _NO_PICAMERA2)
    if interpreters is not None and interpreters < 1:
        raise ValueError(f"interpreters must be >= 1, got {interpreters}")
    drop = src.live if drop_stale is None else bool(drop_stale)
    lanes = 1 if drop else (classifier.num_threads if interpreters is None else interpreters)
    # In order on one interpreter, the capture thread prepares each frame while the interpreter invokes the last;
    # on several, each interpreter's thread prepares its own.
    capture = _Capture(src, classifier, drop_stale=drop, prepare=not drop and lanes == 1,
                       open_timeout_s=open_timeout_s, read_timeout_s=read_timeout_s, capture_size=size)
    return _results(classifier, capture, smoothing, explain, opts, max_frames, duration_s, read_timeout_s, lanes)


def _results(classifier: Classifier, capture: _Capture, smoothing: float, explain: bool, opts: ClassifierOptions,
             max_frames: int | None, duration_s: float | None, read_timeout_s: float,
             interpreters: int = 1) -> Iterator[FrameResult]:
    # A generator apart from watch(), so that bad arguments and sources that parse_source refuses are raised by
    # the call itself; the source is opened at the first next(), so an unused iterator holds nothing open.
    src = capture.src
    capture.start()
    start = capture.opened_at
    stalled = False

    def frames() -> Iterator[_Frame]:
        """The source's frames, until its end, ``max_frames`` or ``duration_s``; SourceError when it stalls."""
        nonlocal stalled
        count = 0
        while max_frames is None or count < max_frames:
            wait = read_timeout_s
            if duration_s is not None:
                left = start + duration_s - time.monotonic()
                if left <= 0:
                    return
                wait = min(wait, left)
            try:
                item = capture.next(wait)
            except TimeoutError:
                if duration_s is not None and time.monotonic() >= start + duration_s:
                    return
                stalled = True
                raise SourceError(src.name, f"no frame for {read_timeout_s:g} s (the stream stalled)") from None
            if item is None:
                return
            count += 1
            yield item

    try:
        ema: np.ndarray | None = None
        previous_label: str | None = None
        count = 0
        # A file's Motion-JPEG frames are small: the interpreters' threads take them in runs (iter_classify's
        # default). Frames OpenCV decoded (megabytes each at HD) go two per interpreter; a live source's (read in
        # order when asked) one per interpreter, so that no frame waits for a run to fill.
        ahead = interpreters if src.live else None if capture.jpeg_frames else 2 * interpreters
        classified = (_on_interpreters(classifier, frames(), explain, opts, src.name, interpreters, ahead)
                      if interpreters > 1
                      else ((item, _classify(classifier, explain, opts, item, src.name)) for item in frames()))
        for item, raw in classified:
            # class and gate scores smoothed together (gates too: one odd frame should not say "no skin")
            scores = np.asarray([*raw.scores, *raw.gates.values()], dtype=np.float64)
            ema = scores if ema is None else smoothing * ema + (1.0 - smoothing) * scores
            result = _smoothed(classifier, raw, ema, opts)
            count += 1
            now = time.monotonic()
            time_s = item.position_s if item.position_s is not None else item.captured - start
            yield FrameResult(index=item.index, time_s=time_s, result=result, raw=raw,
                              fps=count / max(now - start, 1e-9), latency_ms=(now - item.captured) * 1000,
                              label_changed=result.label != previous_label, jpeg=item.jpeg, _rgb=item.rgb)
            previous_label = result.label
    finally:
        capture.stop(join=not stalled)  # a thread stuck in a dead stream's read is left behind (a daemon)


def _on_interpreters(classifier: Classifier, frames: Iterator[_Frame], explain: bool, opts: ClassifierOptions,
                     name: str, interpreters: int,
                     prefetch: int | None = None) -> Iterator[tuple[_Frame, ClassificationResult]]:
    """Every frame, in order, through ``Classifier.iter_classify`` on ``interpreters`` single-thread interpreters
    (each decoding its own frames). A source that breaks ends the frames handed over; the frames read before it
    are classified and yielded first, then its error is raised, as when frames go one at a time."""
    pending: collections.deque[_Frame] = collections.deque()
    ended: list[SourceError] = []

    def images() -> Iterator[bytes | np.ndarray]:
        try:
            for item in frames:
                pending.append(item)
                yield item.jpeg if item.rgb is None else item.rgb
        except SourceError as exc:
            ended.append(exc)

    for outcome in classifier.iter_classify(images(), interpreters=interpreters, prefetch=prefetch, explain=explain,
                                            options=opts):
        item = pending.popleft()
        yield item, _frame_result(outcome, item, name)
    if ended:
        raise ended[0]


def _classify(classifier: Classifier, explain: bool, opts: ClassifierOptions, item: _Frame,
              name: str) -> ClassificationResult:
    """One frame through the classifier's one path (prepared on the capture thread when in order)."""
    image = item.prepared if item.prepared is not None else item.rgb if item.rgb is not None else item.jpeg
    outcome: ClassificationResult | ImageError
    try:
        outcome = classifier.explain(image, options=opts) if explain else classifier.classify(image, options=opts)
    except ImageError as exc:  # the frame's fault; a ModelError (e.g. no heatmap outputs) stays what it is
        outcome = exc
    return _frame_result(outcome, item, name)


def _frame_result(outcome: ClassificationResult | SkinedgeError, item: _Frame, name: str) -> ClassificationResult:
    """A frame's result named ``<source>#<index>``; an image the frame could not give becomes the source's error
    (``frame N: why``), any other error is raised as it is."""
    if isinstance(outcome, ImageError):
        raise SourceError(name, f"frame {item.index}: {outcome.reason}")
    if isinstance(outcome, SkinedgeError):
        raise outcome
    return dataclasses.replace(outcome, source=f"{name}#{item.index}")


def _smoothed(classifier: Classifier, raw: ClassificationResult, ema: np.ndarray,
              opts: ClassifierOptions) -> ClassificationResult:
    """``raw`` with label, score, top_k, gates, reason and scores from the moving average (``ema``: class scores
    then gate scores); timings, heatmap and this frame's quality kept."""
    n = len(raw.scores)
    gates = {g: float(v) for g, v in zip(raw.gates, ema[n:])}
    s = classifier.result_from_scores(raw.source, ema[:n], raw.timings, opts, gates=gates, quality=raw.quality)
    return dataclasses.replace(raw, label=s.label, score=s.score, index=s.index, top_k=s.top_k,
                               uncertain=s.uncertain, reason=s.reason, scores=s.scores, gates=s.gates,
                               quality_problems=s.quality_problems)


def save_frame(frame_result: FrameResult, folder: str | os.PathLike) -> Path:
    """Write a frame as ``<index>_<label>.png`` in ``folder`` (with the heatmap overlaid when the result has
    one); return its path."""
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(frame_result.frame, "RGB")
    heatmap = frame_result.result.heatmap
    if heatmap is not None:
        from skinedge.explain import overlay

        image = overlay(image, heatmap)
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in frame_result.result.label)
    path = folder / f"{frame_result.index:06d}_{safe}.png"
    image.save(path)
    return path


__all__ = ["FrameResult", "SourceError", "VideoSource", "check_frame", "parse_source", "save_frame", "watch"]
