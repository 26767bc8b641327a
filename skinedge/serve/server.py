"""The HTTP server behind ``skinedge serve``: the standard library's ThreadingHTTPServer, one shared Classifier.

Routes: ``GET /`` (the page) and ``/static/*`` (its script and style, held in memory), ``POST
/api/classify``, ``GET /api/info``, ``GET /healthz``, and with a camera ``GET /api/live`` and
``/api/live.mjpg`` (answered by :mod:`skinedge.serve.handler`). This module holds what outlives a
request: the options, the shared Classifier, connection and classification limits, the drain at shutdown.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http import HTTPStatus
from http.server import ThreadingHTTPServer
from typing import Any

from skinedge.classifier import Classifier
from skinedge.serve import payload
from skinedge.serve.handler import RequestHandler
from skinedge.serve.pages import load_static
from skinedge.serve.upload import RequestError

log = logging.getLogger("skinedge.serve")


@dataclass(frozen=True)
class ServeOptions:
    """Limits and knobs of the server (defaults suit a Raspberry Pi on a clinic's desk).

    Attributes:
        max_body_bytes: largest request body accepted (413 beyond).
        socket_timeout_s: a connection idle this long in one read or write is dropped.
        body_deadline_s: a body not received within this total time gets 408 (trickling clients).
        max_connections: open connections beyond this get 503 at once.
        workers: classifications decoding at once; more requests wait for a slot.
        queue_timeout_s: a request that waited this long for a slot gets 503.
        drain_s: on shutdown, how long to wait for classifications in progress.
    """

    max_body_bytes: int = 20 * 1024 * 1024
    socket_timeout_s: float = 30.0
    body_deadline_s: float = 120.0
    max_connections: int = 64
    workers: int = 4
    queue_timeout_s: float = 60.0
    drain_s: float = 10.0


class SkinedgeServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer that holds the Classifier, the page and the optional live feed."""

    request_queue_size = 128  # socketserver's default backlog (5) resets a burst of 32 clients
    kiosk: Any = None  # a skinedge.kiosk.web.Kiosk (access check, case log, HTTPS), set by make_server
    daemon_threads = True  # a stalled keep-alive client must not hold the process at exit
    block_on_close = False

    def __init__(self, address: tuple[str, int], classifier: Classifier, options: ServeOptions,
                 live: Any = None) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.classifier = classifier
        self.options = options
        self.live = live
        self.heatmap = payload.supports_heatmap(classifier)
        self.pages = load_static()
        self.info = payload.model_info(classifier, heatmap=self.heatmap, live=live is not None,
                                       max_body_bytes=options.max_body_bytes)
        self.stopping = threading.Event()
        self._connections = threading.BoundedSemaphore(options.max_connections)
        self._work = threading.BoundedSemaphore(options.workers)
        self._busy = 0
        self._busy_changed = threading.Condition()
        super().__init__(address, RequestHandler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        scheme = "https" if self.kiosk is not None and self.kiosk.ssl_context is not None else "http"
        return f"{scheme}://[{host}]:{port}/" if ":" in host else f"{scheme}://{host}:{port}/"

    # -- connection accounting ------------------------------------------------------------------

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._connections.acquire(blocking=False):
            log.warning("%s: refused, %d connections open", client_address[0], self.options.max_connections)
            with contextlib.suppress(OSError):
                request.settimeout(1.0)
                request.sendall(_raw_response(503, payload.error_payload(
                    503, "ServiceUnavailable", "too many open connections; try again shortly")))
                request.shutdown(socket.SHUT_WR)
                _drain(request, budget_s=0.5)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._connections.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._connections.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):  # the client went away or the network failed: not our bug
            log.info("%s: connection error: %s", client_address[0], exc)
        else:
            log.exception("%s: unexpected error while handling a request", client_address[0])

    # -- classification slots -------------------------------------------------------------------

    @contextlib.contextmanager
    def work_slot(self) -> Iterator[None]:
        """Bound the classifications decoding at once (memory on a small board); count them for the drain."""
        if not self._work.acquire(timeout=self.options.queue_timeout_s):
            raise RequestError(503, "ServiceUnavailable", "the server is busy; try again shortly")
        with self._busy_changed:
            self._busy += 1
        try:
            yield
        finally:
            with self._busy_changed:
                self._busy -= 1
                self._busy_changed.notify_all()
            self._work.release()

    def drain(self, timeout_s: float) -> bool:
        """Wait until no classification is running; False if some still were after ``timeout_s``."""
        end = time.monotonic() + timeout_s
        with self._busy_changed:
            while self._busy:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._busy_changed.wait(left)
        return True


def _drain(sock: socket.socket, budget_s: float) -> None:
    """Read and drop what the client is still sending (a request body), for at most ``budget_s``: closing a
    socket with unread data resets the connection, and the client would lose the answer already sent."""
    deadline = time.monotonic() + budget_s
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(min(left, 0.1))
        try:
            if not sock.recv(65536):
                return  # the client read the answer and closed
        except TimeoutError:
            continue


def _raw_response(status: int, body: dict[str, Any]) -> bytes:
    data = json.dumps(body).encode()
    head = (f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n")
    return head.encode("latin-1") + data


def make_server(classifier: Classifier, host: str = "127.0.0.1", port: int = 8080,
                options: ServeOptions | None = None, live: Any = None, kiosk: Any = None) -> SkinedgeServer:
    """Bind a server (port 0: a free one; see ``.url``); call ``serve_forever()`` to answer requests.

    ``kiosk``: a :class:`skinedge.kiosk.web.Kiosk` (token check, case log, HTTPS), or None.
    """
    server = SkinedgeServer((host, port), classifier, options or ServeOptions(), live)
    server.kiosk = kiosk
    case_log = kiosk.case_log if kiosk is not None else None
    server.info = {**server.info, "auth": kiosk is not None and kiosk.auth is not None,
                   "case_log": case_log is not None,
                   "photos_kept": case_log is not None and case_log.photo_dir is not None}
    if kiosk is not None and kiosk.ssl_context is not None:
        # Handshakes happen in each connection's thread (RequestHandler.setup), never in the accept loop.
        server.socket = kiosk.ssl_context.wrap_socket(server.socket, server_side=True,
                                                      do_handshake_on_connect=False)
    if kiosk is not None and kiosk.auth is not None:
        log.info("access needs the token (Authorization: Bearer) or a signed-in session%s",
                 "" if kiosk.ssl_context is not None else "; without --certfile it travels unencrypted")
    elif not is_loopback(server.server_address[0]):
        log.warning("listening on %s, beyond this machine: anyone who can reach it can use the classifier "
                    "(no authentication, no TLS). Use --host 127.0.0.1 unless the network is trusted.", server.url)
    return server


def is_loopback(address: str) -> bool:
    """True for 127.0.0.0/8 and ::1 (the default bind); False for 0.0.0.0, :: and real interfaces."""
    import ipaddress

    try:
        return ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        return False


@contextlib.contextmanager
def running(server: SkinedgeServer) -> Iterator[SkinedgeServer]:
    """Serve in a background thread for the ``with`` block, then stop and close the server
    (for embedding in another program, and for tests)."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="skinedge-serve",
                              daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stopping.set()
        server.shutdown()
        server.drain(server.options.drain_s)
        server.server_close()
        thread.join(5)
