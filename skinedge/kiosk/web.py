"""The kiosk's part of ``skinedge serve``: the access check, sign-in, the case routes, recording each case.

The server (:mod:`skinedge.serve`) calls in here from three places: before routing a request
(:func:`refusal`: is it allowed?), for the kiosk's own routes (:func:`route`), and after a classification
(:func:`record_case`). Everything here answers through the handler's JSON responses.

Public without a token: ``GET /healthz``, the page's fixed files (``/``, ``/static/*``: the same bytes for
everyone, no data in them; the page shows its sign-in form when the API answers 401) and ``POST /api/signin``.
Every other route, known or not, answers 401 JSON without a valid ``Authorization: Bearer`` token or session
cookie (429 with ``Retry-After`` while a client is locked out after repeated failures).

Routes: ``POST /api/signin`` (JSON ``{"token": ...}``; sets the session cookie), ``POST /api/signout``,
``GET /api/cases`` (``?limit=&before=&labelled=``), ``GET /api/cases/<id>``, ``POST /api/cases/<id>/label``
(JSON ``{"label": "Eczema"}`` or ``{"label": null}``).
"""

from __future__ import annotations

import json
import math
import re
import ssl
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from skinedge.kiosk import KioskError
from skinedge.kiosk.auth import Authenticator
from skinedge.kiosk.caselog import CaseLog, CaseLogError, CaseNotFoundError, LabelError

#: Largest JSON body of the kiosk's routes (a label or a token is a few dozen bytes).
MAX_JSON_BODY = 4096
_CASE = re.compile(r"/api/cases/(\d{1,18})")
_LABEL = re.compile(r"/api/cases/(\d{1,18})/label")


class TLSError(KioskError):
    """The certificate or key file cannot be used for HTTPS."""


@dataclass
class Kiosk:
    """What ``skinedge serve`` adds for a kiosk: access control, the case log, HTTPS (each optional)."""

    auth: Authenticator | None = None
    case_log: CaseLog | None = None
    ssl_context: ssl.SSLContext | None = None
    # Writes kept photos while the model runs (--keep-photos): the photo's fsyncs overlap the classification.
    _writer: ThreadPoolExecutor | None = field(default=None, repr=False)

    def writer(self) -> ThreadPoolExecutor:
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=2, thread_name_prefix="skinedge-photos")
        return self._writer

    def close(self) -> None:
        if self._writer is not None:
            self._writer.shutdown(wait=True)
        if self.case_log is not None:
            self.case_log.close()


def server_context(certfile: str | Path, keyfile: str | Path | None = None) -> ssl.SSLContext:
    """A server-side TLS context (TLS 1.2 or newer) from a PEM certificate and key.
    Raises :class:`TLSError` naming the file and the problem."""
    for path in filter(None, (certfile, keyfile)):
        if not Path(path).is_file():
            raise TLSError(str(path), "no such file")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(str(certfile), str(keyfile) if keyfile else None)
    except ssl.SSLError as exc:
        raise TLSError(str(certfile), f"the certificate and key do not make a usable pair ({exc.reason or exc})"
                       ) from None
    except OSError as exc:
        raise TLSError(str(certfile), f"cannot read the certificate or key ({exc.strerror or exc})") from None
    return ctx


class _Refused(Exception):
    def __init__(self, status: int, error: str, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status, self.error, self.reason, self.headers = status, error, reason, headers or {}


def _send_error(handler: Any, status: int, error: str, reason: str, headers: dict[str, str] | None = None) -> None:
    handler.send_json_error(status, error, reason, extra=headers or None)  # the server's one JSON refusal


def is_public(handler: Any, method: str, path: str) -> bool:
    """Routes open without a token: the health check, the page's fixed files, the sign-in itself."""
    if method in ("GET", "HEAD"):
        return path == "/healthz" or path in handler.server.pages
    return method == "POST" and path == "/api/signin"


def refusal(handler: Any, method: str, path: str) -> tuple[int, str, str, dict[str, str]] | None:
    """Why this request may not proceed (status, error, reason, headers), or None when it may."""
    kiosk: Kiosk | None = getattr(handler.server, "kiosk", None)
    if kiosk is None or kiosk.auth is None or is_public(handler, method, path):
        return None
    decision = kiosk.auth.check(handler.headers, handler.client_address[0])
    if decision.ok:
        return None
    if decision.retry_after > 0 and "too many" in decision.reason:
        return 429, "TooManyRequests", decision.reason, {"Retry-After": str(math.ceil(decision.retry_after))}
    return 401, "Unauthorized", decision.reason, {"WWW-Authenticate": 'Bearer realm="skinedge"'}


def _discard_unread(handler: Any, limit: int) -> None:
    """Read away a body nobody will parse (bounded), so the refusal reaches the client instead of a
    connection reset; the connection is closed after the answer either way."""
    from skinedge.serve.upload import discard_body

    handler.close_connection = True  # an unread body must not be taken for the next request
    if getattr(handler, "_kiosk_body_read", False):
        return
    text = (handler.headers.get("Content-Length") or "").strip()
    if text.isdigit() and 0 < int(text) <= limit and not handler.headers.get("Transfer-Encoding"):
        discard_body(handler.rfile, int(text), deadline_s=2.0)


def gate(handler: Any, method: str, path: str) -> bool:
    """Answer 401/429 if the request is not allowed; True when it was refused (nothing else to do)."""
    why = refusal(handler, method, path)
    if why is None:
        return False
    if method not in ("GET", "HEAD"):
        _discard_unread(handler, handler.server.options.max_body_bytes)
    handler.close_connection = True
    _send_error(handler, *why)
    return True


def handles(path: str) -> bool:
    """Is ``path`` one of the kiosk's own routes?"""
    return path in ("/api/signin", "/api/signout", "/api/cases") or bool(
        _CASE.fullmatch(path) or _LABEL.fullmatch(path))


def route(handler: Any, method: str, path: str) -> None:
    """Answer one of the kiosk's routes (:func:`handles` said yes; the access check has passed)."""
    kiosk: Kiosk | None = getattr(handler.server, "kiosk", None)
    try:
        _route(handler, kiosk, method, path)
    except _Refused as exc:
        if method not in ("GET", "HEAD"):
            _discard_unread(handler, 1024 * 1024)
        _send_error(handler, exc.status, exc.error, exc.reason, exc.headers)


def _route(handler: Any, kiosk: Kiosk | None, method: str, path: str) -> None:
    allowed = "POST" if path in ("/api/signin", "/api/signout") or _LABEL.fullmatch(path) else "GET"
    if method != allowed:
        raise _Refused(405, "MethodNotAllowed", f"{method} is not allowed here; use {allowed}", {"Allow": allowed})
    if path == "/api/signin":
        return _sign_in(handler, kiosk)
    if path == "/api/signout":
        return _sign_out(handler, kiosk)
    log = kiosk.case_log if kiosk is not None else None
    if log is None:
        raise _Refused(404, "NotFound", "this server keeps no case log: start it with --case-log FILE")
    if path == "/api/cases":
        return _list(handler, log)
    label = _LABEL.fullmatch(path)
    if label:
        body = _json_body(handler)
        if not isinstance(body, dict) or set(body) != {"label"}:
            raise _Refused(400, "BadRequest", 'send a JSON object {"label": "<one of the model\'s labels>"} '
                                              '(or {"label": null} to clear it)')
        value = body["label"]
        if value is not None and not isinstance(value, str):
            raise _Refused(400, "BadRequest", "label must be a string or null")
        try:
            case = log.set_label(int(label.group(1)), value)
        except CaseNotFoundError as exc:
            raise _Refused(404, "NotFound", exc.reason) from None
        except LabelError as exc:
            raise _Refused(422, "LabelError", exc.reason) from None
        except CaseLogError as exc:
            raise _Refused(500, "CaseLogError", exc.reason) from None
        return handler._send_json(200, case.to_dict())
    one = _CASE.fullmatch(path)
    try:
        return handler._send_json(200, log.get(int(one.group(1))).to_dict())
    except CaseNotFoundError as exc:
        raise _Refused(404, "NotFound", exc.reason) from None


def _list(handler: Any, log: CaseLog) -> None:
    query = parse_qs(urlsplit(handler.path).query, keep_blank_values=True)

    def number(name: str, default: int | None, low: int, high: int) -> int | None:
        values = query.get(name)
        if not values:
            return default
        text = values[-1].strip()
        if not text.isdigit() or not low <= int(text) <= high:
            raise _Refused(400, "BadRequest", f"{name} must be a whole number from {low} to {high}")
        return int(text)

    labelled_text = (query.get("labelled") or [""])[-1].strip().lower()
    if labelled_text not in ("", "yes", "no", "1", "0", "true", "false"):
        raise _Refused(400, "BadRequest", "labelled must be yes or no")
    labelled = None if not labelled_text else labelled_text in ("yes", "1", "true")
    page = log.list_cases(limit=number("limit", 50, 1, 500), before=number("before", None, 1, 10**18),
                          labelled=labelled)
    handler._send_json(200, {"cases": [c.to_dict() for c in page.cases], "total": page.total,
                             "next_before": page.next_before, "labels": list(log.labels or ())})


def _json_body(handler: Any) -> Any:
    content_type = (handler.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise _Refused(415, "UnsupportedMediaType", "send the body as application/json")
    length_text = (handler.headers.get("Content-Length") or "").strip()
    if handler.headers.get("Transfer-Encoding") or not length_text:
        raise _Refused(411, "LengthRequired", "a Content-Length header is required")
    if not length_text.isdigit():
        raise _Refused(400, "BadRequest", f"invalid Content-Length {length_text[:40]!r}")
    length = int(length_text)
    if length > MAX_JSON_BODY:
        raise _Refused(413, "PayloadTooLarge", f"body is {length} bytes, above the limit of {MAX_JSON_BODY} bytes")
    handler._kiosk_body_read = True  # from here on, whatever happens, nothing is left to read away
    try:
        data = handler.rfile.read(length)
    except TimeoutError:
        raise _Refused(408, "RequestTimeout", "the client stopped sending the body") from None
    if len(data) != length:
        raise _Refused(400, "BadRequest", "the body ended early")
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise _Refused(400, "BadRequest", "the body is not valid JSON") from None


def _sign_in(handler: Any, kiosk: Kiosk | None) -> None:
    if kiosk is None or kiosk.auth is None:
        raise _Refused(404, "NotFound", "this server has no sign-in (it was started without --token-file)")
    body = _json_body(handler)
    token = body.get("token") if isinstance(body, dict) else None
    if not isinstance(token, str) or len(token) > 1024:
        raise _Refused(400, "BadRequest", 'send a JSON object {"token": "..."}')
    decision, cookie = kiosk.auth.sign_in(token, handler.client_address[0])
    if cookie is None:
        if decision.retry_after > 0 and "too many" in decision.reason:
            raise _Refused(429, "TooManyRequests", decision.reason,
                           {"Retry-After": str(math.ceil(decision.retry_after))})
        raise _Refused(401, "Unauthorized", decision.reason)
    handler._send_json(200, {"signed_in": True}, {"Set-Cookie": cookie})


def _sign_out(handler: Any, kiosk: Kiosk | None) -> None:
    if kiosk is None or kiosk.auth is None:
        raise _Refused(404, "NotFound", "this server has no sign-in (it was started without --token-file)")
    kiosk.auth.end_session(handler.headers.get("Cookie"))
    handler._send_json(200, {"signed_in": False}, {"Set-Cookie": kiosk.auth.clear_cookie()})


def begin_case(server: Any, photo: bytes) -> Future | None:
    """Start keeping the photo (``--keep-photos``) in the background while the model runs; None when there is
    nothing to keep. Pass the result to :func:`record_case`, or to :func:`abandon_case` if no case follows."""
    kiosk: Kiosk | None = getattr(server, "kiosk", None)
    if kiosk is None or kiosk.case_log is None or kiosk.case_log.photo_dir is None:
        return None
    return kiosk.writer().submit(kiosk.case_log.keep_photo, photo)


def abandon_case(server: Any, pending: Future | None) -> None:
    """The request ended without a case (its photo could not be classified): drop the photo kept for it."""
    if pending is None:
        return
    try:
        kept = pending.result()
    except Exception:  # noqa: BLE001 - the write failed: nothing was kept
        return
    if kept is not None:
        server.kiosk.case_log.discard_photo(kept)


def record_case(server: Any, photo: bytes, answer: dict[str, Any], pending: Future | None = None) -> int | None:
    """Record a classification in the server's case log (None when it keeps none); returns the case id once
    it is on disk. The heatmap image and timings are not kept: the log holds the result."""
    kiosk: Kiosk | None = getattr(server, "kiosk", None)
    if kiosk is None or kiosk.case_log is None:
        return None
    clf = server.classifier
    result = {k: v for k, v in answer.items() if k not in ("heatmap_png", "server_ms", "timings_ms")}
    name = (clf.metadata.name if clf.metadata and clf.metadata.name else clf.model_path.name)
    t0 = time.perf_counter()
    try:
        kept = pending.result() if pending is not None else None
    except OSError as exc:
        raise CaseLogError(str(kiosk.case_log.photo_dir), f"cannot keep the photo ({exc.strerror or exc})") from None
    case_id = kiosk.case_log.record(result, photo=photo, model_name=name, model_sha256=clf.model_sha256,
                                    model_labels=clf.labels, kept=kept)
    answer.setdefault("timings_ms", {})["case_log"] = round((time.perf_counter() - t0) * 1000, 3)
    return case_id
