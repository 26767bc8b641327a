"""How ``skinedge serve`` answers one request: routing, the classify endpoint, JSON responses and errors.

Every answer outside the page is JSON; an error is ``{"error", "reason", "status"}`` and one log line,
never a traceback. Nothing from a request is used as a filesystem path.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from contextlib import AbstractContextManager
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from skinedge.errors import ClassifierClosedError, ImageError, ImageTooLargeError, SkinedgeError
from skinedge.serve import payload, upload
from skinedge.serve.upload import RequestError

log = logging.getLogger("skinedge.serve")

#: Headers on every response: nothing is loaded from elsewhere, nothing is framed, nothing is sniffed.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; "
                               "base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class ServerState(Protocol):
    """What a request handler reads from its server (``skinedge.serve.server.SkinedgeServer``), named here so
    that the handler does not import the server that imports it."""

    classifier: Any  # the shared skinedge.Classifier
    options: Any  # skinedge.serve.server.ServeOptions
    live: Any  # a skinedge.serve.live.LiveFeed, or None
    heatmap: bool
    pages: dict[str, tuple[bytes, str]]
    info: dict[str, Any]
    stopping: threading.Event

    def work_slot(self) -> AbstractContextManager[None]: ...


class RequestHandler(BaseHTTPRequestHandler):
    """Routes one connection's requests. Nothing from a request is used as a filesystem path."""

    server: ServerState  # type: ignore[assignment]  (socketserver declares a BaseServer)
    protocol_version = "HTTP/1.1"
    # Headers and body go out as two writes: with Nagle's algorithm the second waits for the client's
    # delayed ACK (tens of milliseconds per response on keep-alive connections).
    disable_nagle_algorithm = True
    server_version = "skinedge"  # and not the Python version (see version_string)

    def version_string(self) -> str:
        return self.server_version

    def setup(self) -> None:
        self.timeout = self.server.options.socket_timeout_s  # StreamRequestHandler applies it to the socket
        super().setup()
        if hasattr(self.request, "do_handshake"):  # HTTPS: the TLS handshake here, in this connection's thread
            self.request.do_handshake()

    # -- routing ----------------------------------------------------------------------------------

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        path = urlsplit(self.path).path
        if self._refuse_when_stopping() or self._kiosk(path):
            return
        if path in self.server.pages:
            body, content_type = self.server.pages[path]
            self._send(200, body, content_type)
        elif path == "/healthz":
            self._send_json(200, {"status": "ok"})
        elif path == "/api/info":
            self._send_json(200, self.server.info)
        elif path in ("/api/live", "/api/live.mjpg"):
            self._live(path)
        elif path == "/api/classify":
            self._method_not_allowed("POST")
        else:
            self.send_json_error(404, "NotFound", f"no such page or endpoint: {path[:100]}")

    def do_POST(self) -> None:  # noqa: N802
        self._body_consumed = False
        path = urlsplit(self.path).path
        try:
            if self._kiosk(path):
                return
            if path != "/api/classify":
                known = path in self.server.pages or path in ("/healthz", "/api/info", "/api/live", "/api/live.mjpg")
                if known:
                    raise RequestError(405, "MethodNotAllowed", "POST is not allowed here; use GET")
                raise RequestError(404, "NotFound", f"no such endpoint: {path[:100]}")
            if self.server.stopping.is_set():
                raise RequestError(503, "ServiceUnavailable", "the server is shutting down")
            self._classify()
        except RequestError as exc:
            self._abandon_case()  # before answering: the client may look at once
            if not self._body_consumed:
                # An unread body must not be parsed as the next request, and closing on unread bytes
                # resets the connection before the client reads the answer: read it away (bounded),
                # unless the client is the one too slow to send it.
                self.close_connection = True
                if exc.status != 408:
                    self._discard_body()
            elif exc.status >= 500:
                self.close_connection = True
            extra = {"Allow": "GET"} if exc.status == 405 else None
            self.send_json_error(exc.status, exc.error, exc.reason, extra=extra)
        except OSError:
            raise  # the connection failed: nobody to answer (handle_error logs one line)
        except Exception:  # a bug of ours: the stack trace goes to the log, never into the response
            log.exception("unexpected error in %s %s", self.command, _printable(self.path))
            self.close_connection = True
            self.send_json_error(500, "InternalError", "internal server error; the server's log has the details")
        finally:
            self._abandon_case()  # any other way out (a bug, a dropped connection)

    def _discard_body(self) -> None:
        text = (self.headers.get("Content-Length") or "").strip()
        if self.headers.get("Transfer-Encoding") or not text.isdigit():
            return
        length = int(text)
        if 0 < length <= 4 * self.server.options.max_body_bytes:
            upload.discard_body(self.rfile, length, deadline_s=5.0)

    def _other_method(self) -> None:
        self.close_connection = True
        if self._kiosk_gate(urlsplit(self.path).path):
            return
        self._method_not_allowed("POST" if urlsplit(self.path).path == "/api/classify" else "GET")

    do_PUT = do_DELETE = do_PATCH = _other_method  # noqa: N815

    def handle_expect_100(self) -> bool:
        """Refuse an oversized upload before the client sends it (curl asks first for large bodies)."""
        try:
            upload.declared_length(self.headers.get("Content-Length"), self.headers.get("Transfer-Encoding"),
                                   self.server.options.max_body_bytes)
        except RequestError as exc:
            self.close_connection = True
            self.send_json_error(exc.status, exc.error, exc.reason)
            return False
        return super().handle_expect_100()

    # -- endpoints --------------------------------------------------------------------------------

    def _classify(self) -> None:
        want_heatmap = _flag(parse_qs(urlsplit(self.path).query, keep_blank_values=True), "heatmap")
        if want_heatmap and not self.server.heatmap:
            raise RequestError(501, "NotImplemented", "this server cannot draw heatmaps (this model has no "
                               "class-activation map outputs)")
        options = self.server.options
        length = upload.declared_length(self.headers.get("Content-Length"), self.headers.get("Transfer-Encoding"),
                                        options.max_body_bytes)
        body = upload.read_body(self.rfile, length, options.body_deadline_s)
        self._body_consumed = True
        photo = upload.image_bytes(body, self.headers.get("Content-Type"))
        self._begin_case(photo)
        clf = self.server.classifier
        t0 = time.perf_counter()
        try:
            with self.server.work_slot():
                prepared = clf.prepare(photo)
                result = clf.explain(prepared) if want_heatmap else clf.classify(prepared)
                answer = payload.result_payload(result, clf.labels)
                if want_heatmap:
                    t_png = time.perf_counter()
                    answer["heatmap_png"] = payload.overlay_png(prepared.image, result.heatmap)
                    answer["timings_ms"]["overlay_png"] = round((time.perf_counter() - t_png) * 1000, 3)
        except RequestError:
            raise  # the server's own refusal (busy): already an answer
        except ClassifierClosedError:
            if self.server.stopping.is_set():  # the Classifier was closed under us: the server is stopping
                raise RequestError(503, "ServiceUnavailable", "the server is shutting down") from None
            raise
        except ImageTooLargeError as exc:
            raise RequestError(413, type(exc).__name__, exc.reason) from None
        except ImageError as exc:
            raise RequestError(400, type(exc).__name__, exc.reason) from None
        except SkinedgeError as exc:  # the model failed to run: the server's problem, logged in full
            log.error("classify failed: %s", exc)
            raise RequestError(500, type(exc).__name__, "the model failed to run this photo") from None
        self._record_case(photo, answer)
        answer["server_ms"] = round((time.perf_counter() - t0) * 1000, 3)
        self._send_json(200, answer)

    # -- the kiosk (skinedge.kiosk.web): access check, sign-in and case routes, the case log ----------

    def _kiosk_gate(self, path: str) -> bool:
        """401/429 for a request without a valid token or session; True when it was refused."""
        if getattr(self.server, "kiosk", None) is None:
            return False
        from skinedge.kiosk import web

        return web.gate(self, self.command, path)

    def _kiosk(self, path: str) -> bool:
        """The access check, then the kiosk's own routes; True when the request has been answered."""
        if self._kiosk_gate(path):
            return True
        from skinedge.kiosk import web

        if getattr(self.server, "kiosk", None) is None or not web.handles(path):
            return False
        web.route(self, self.command, path)
        return True

    def _begin_case(self, photo: bytes) -> None:
        """With --keep-photos, start writing the photo now: its disk writes overlap the classification."""
        self._pending_case = None
        if getattr(self.server, "kiosk", None) is not None:
            from skinedge.kiosk.web import begin_case

            self._pending_case = begin_case(self.server, photo)

    def _abandon_case(self) -> None:
        """The request ends without a case: drop the photo written for it (no-op after _record_case)."""
        pending, self._pending_case = getattr(self, "_pending_case", None), None
        if pending is not None:
            from skinedge.kiosk.web import abandon_case

            abandon_case(self.server, pending)

    def _record_case(self, photo: bytes, answer: dict[str, Any]) -> None:
        """With a case log, the answer's ``case_id``: the case is on disk before the answer is sent."""
        if getattr(self.server, "kiosk", None) is None:
            return
        from skinedge.kiosk import KioskError
        from skinedge.kiosk.web import record_case

        try:
            case_id = record_case(self.server, photo, answer, getattr(self, "_pending_case", None))
        except KioskError as exc:
            log.error("case log: %s", exc)
            raise RequestError(500, type(exc).__name__, "the case could not be recorded; the server's log has "
                                                        "the details") from None
        self._pending_case = None  # recorded: the photo is the case's now
        if case_id is not None:
            answer["case_id"] = case_id

    def _live(self, path: str) -> None:
        live = self.server.live
        if live is None:
            self.send_json_error(404, "NotFound", "no live view: start the server with --camera SOURCE")
        elif path == "/api/live":
            self._send_json(200, live.snapshot())
        else:
            from skinedge.serve.live import stream_mjpeg

            stream_mjpeg(self, live, self.server.stopping)

    # -- responses --------------------------------------------------------------------------------

    def _refuse_when_stopping(self) -> bool:
        if self.server.stopping.is_set():
            self.close_connection = True
            self.send_json_error(503, "ServiceUnavailable", "the server is shutting down")
            return True
        return False

    def _method_not_allowed(self, allow: str) -> None:
        self.send_json_error(405, "MethodNotAllowed", f"{self.command} is not allowed here; use {allow}",
                         extra={"Allow": allow})

    def _send(self, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in {**SECURITY_HEADERS, **(extra or {})}.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        buffered = getattr(self, "_headers_buffer", None)  # http.server's pending header lines
        if buffered is not None and self.command != "HEAD":
            buffered.extend((b"\r\n", body))  # headers and body in one send: one syscall, one packet
            self.flush_headers()
            return
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, status: int, body: dict[str, Any], extra: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(body).encode(), "application/json", extra)

    def send_stream_head(self, content_type: str) -> None:
        """Start a response whose body is streamed after (the live MJPEG view): status 200, ``content_type``,
        the security headers every response carries, and ``Connection: close`` (the stream ends with it)."""
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        self.send_header("Connection", "close")
        self.end_headers()

    def send_json_error(self, status: int, error: str, reason: str, extra: dict[str, str] | None = None) -> None:
        """Refuse with the JSON error body (``{"error", "reason", "status"}``) and one log line."""
        log.warning("%s %s %s -> %d %s: %s", self.client_address[0], self.command, _printable(self.path), status,
                    error, _printable(reason, 300))
        self._logged = True
        self._send_json(status, payload.error_payload(status, error, reason), extra)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own refusals (bad request line, unknown method, huge headers) as JSON too."""
        self.close_connection = True
        if getattr(self, "request_version", "HTTP/0.9") == "HTTP/0.9":
            self.request_version = "HTTP/1.0"  # http.server sends no status line to 0.9; nobody speaks 0.9
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "Error"
        if not hasattr(self, "command") or self.command is None:
            self.command = ""
        if not hasattr(self, "path"):
            self.path = ""
        self.send_json_error(code, phrase.replace(" ", ""), message or phrase)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if getattr(self, "_logged", False):  # refusals already have their one line
            self._logged = False
            return
        log.info("%s %s %s -> %s", self.client_address[0], self.command, _printable(self.path), code)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's signature)
        log.info("%s %s", self.client_address[0], _printable(format % args, 300))


def _printable(text: str, limit: int = 100) -> str:
    """A request's text as one safe log line: control characters escaped (no forged lines), length capped."""
    text = text[:limit]
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def _flag(query: dict[str, list[str]], name: str) -> bool:
    values = query.get(name)
    if not values:
        return False
    value = values[-1].strip().lower()
    if value in ("1", "true", "yes", "on", ""):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise RequestError(400, "BadRequest", f"query parameter {name}={value[:20]!r} is not a yes/no value")
