"""The ``--camera`` live view: a background thread consumes ``skinedge.video.watch`` and keeps only the
newest frame and its smoothed result; HTTP clients read that, never the camera itself."""

from __future__ import annotations

import io
import logging
import threading
import time
from typing import Any

from skinedge.classifier import Classifier
from skinedge.errors import SkinedgeError

log = logging.getLogger("skinedge.serve")

#: Longest side of the streamed JPEG frames, and their quality (a Pi encodes ~640 px in a few ms).
STREAM_MAX_SIDE = 640
STREAM_QUALITY = 80
#: MJPEG viewers at once (each holds a connection and a thread for as long as it watches).
MAX_VIEWERS = 4
#: Live classifications per second at most, so uploads still get the shared interpreter promptly.
DEFAULT_MAX_FPS = 10.0
_BOUNDARY = "skinedgeframe"


class LiveFeed:
    """Frames from ``source`` through ``skinedge.video.watch(classifier, source, **watch_options)``.

    Starts at once; :meth:`snapshot` gives the newest smoothed result, :meth:`wait_jpeg` the newest
    frame as JPEG (encoded on demand, once per frame). A source that fails or ends stops the feed;
    the error is reported in :meth:`snapshot`, the server goes on.
    """

    def __init__(self, classifier: Classifier, source: int | str, *, max_fps: float | None = DEFAULT_MAX_FPS,
                 first_frame_timeout_s: float = 15.0, **watch_options: Any) -> None:
        from skinedge.video import watch

        self.source = source
        self._min_interval_s = 1.0 / max_fps if max_fps else 0.0
        self._frames = watch(classifier, source, **watch_options)
        self._changed = threading.Condition()
        self._latest: Any = None  # the newest FrameResult
        self._seq = 0
        self._jpeg: tuple[int, bytes] | None = None
        self._error: str | None = None
        self._ended = False
        self._stop = threading.Event()
        self.viewers = threading.BoundedSemaphore(MAX_VIEWERS)
        self._failure: SkinedgeError | None = None
        self._thread = threading.Thread(target=self._run, name="skinedge-live", daemon=True)
        self._thread.start()
        self._check_started(first_frame_timeout_s)

    def _check_started(self, timeout_s: float) -> None:
        # A camera that cannot be opened fails the command at start, not silently in the page.
        with self._changed:
            self._changed.wait_for(lambda: self._seq > 0 or self._ended, timeout_s)
        if self._failure is not None:
            raise self._failure

    def _run(self) -> None:
        try:
            for frame in self._frames:
                with self._changed:
                    self._latest = frame
                    self._seq += 1
                    self._changed.notify_all()
                # Leave the shared interpreter to uploads between frames (a live camera keeps only the newest
                # frame meanwhile; a file plays at this pace). stop() interrupts the wait.
                if self._stop.wait(self._min_interval_s) if self._min_interval_s else self._stop.is_set():
                    break
        except SkinedgeError as exc:
            self._error = str(exc)
            self._failure = exc
            if self._seq:  # before the first frame, the constructor raises it instead
                log.error("live view stopped: %s", exc)
        except Exception as exc:  # a camera driver failing mid-stream must not take the server down
            self._error = f"{type(exc).__name__}: {exc}"
            log.exception("live view stopped by an unexpected error")
        finally:
            close = getattr(self._frames, "close", None)
            if close is not None:
                close()
            with self._changed:
                self._ended = True
                self._changed.notify_all()

    @property
    def ended(self) -> bool:
        return self._ended

    def snapshot(self) -> dict[str, Any]:
        """``GET /api/live``: the newest frame's smoothed result (``result`` is None before the first)."""
        with self._changed:
            frame, seq = self._latest, self._seq
        body: dict[str, Any] = {"running": not self._ended, "error": self._error, "frames": seq}
        if frame is None:
            body.update(index=None, time_s=None, fps=None, result=None)
        else:
            body.update(index=int(frame.index), time_s=round(float(frame.time_s), 3),
                        fps=round(float(frame.fps), 2) if frame.fps is not None else None,
                        result=frame.result.to_dict())
        return body

    def wait_jpeg(self, after: int, timeout_s: float) -> tuple[int, bytes] | None:
        """The newest frame as JPEG once it is newer than sequence number ``after``; None on timeout or end."""
        end = time.monotonic() + timeout_s
        with self._changed:
            while self._seq <= after and not self._ended:
                left = end - time.monotonic()
                if left <= 0:
                    return None
                self._changed.wait(left)
            if self._seq <= after:
                return None
            frame, seq = self._latest, self._seq
            cached = self._jpeg
        if cached is not None and cached[0] == seq:
            return cached
        encoded = (seq, frame_jpeg(frame))
        self._jpeg = encoded
        return encoded

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop consuming the source (the thread ends after the frame it is on)."""
        self._stop.set()
        self._thread.join(timeout_s)


def frame_jpeg(frame: Any) -> bytes:
    """A ``FrameResult`` as the JPEG to stream: a Motion-JPEG source's own frame as it came when it is small
    enough (no decode and re-encode on the board), else :func:`encode_jpeg` of the frame."""
    if frame.jpeg is not None:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(io.BytesIO(frame.jpeg)) as image:  # reads the header only
                if image.format == "JPEG" and max(image.size) <= STREAM_MAX_SIDE:
                    return frame.jpeg
        except (OSError, UnidentifiedImageError):
            pass  # classified, so decodable at the model's scale: re-encode what decodes
    return encode_jpeg(frame.frame)


def encode_jpeg(frame: Any) -> bytes:
    """An ``HxWx3`` RGB uint8 frame as a JPEG no larger than ``STREAM_MAX_SIDE``."""
    from PIL import Image

    image = Image.fromarray(frame, "RGB")
    image.thumbnail((STREAM_MAX_SIDE, STREAM_MAX_SIDE))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=STREAM_QUALITY)
    return buffer.getvalue()


def stream_mjpeg(handler: Any, live: LiveFeed, stopping: threading.Event) -> None:
    """``GET /api/live.mjpg``: ``multipart/x-mixed-replace`` JPEG frames until the client leaves,
    the feed ends or the server stops. ``handler`` is the request's ``RequestHandler`` (its public
    ``send_stream_head`` / ``send_json_error``: the same headers as every other response)."""
    if not live.viewers.acquire(blocking=False):
        handler.send_json_error(503, "ServiceUnavailable", f"{MAX_VIEWERS} live viewers already connected")
        return
    try:
        handler.send_stream_head(f"multipart/x-mixed-replace; boundary={_BOUNDARY}")
        seq = 0
        while not stopping.is_set():
            got = live.wait_jpeg(seq, timeout_s=1.0)
            if got is None:
                if live.ended:
                    return
                continue
            seq, jpeg = got
            handler.wfile.write(f"--{_BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                                .encode("ascii") + jpeg + b"\r\n")
            handler.wfile.flush()
    except OSError:  # the viewer closed the page
        return
    finally:
        live.viewers.release()
