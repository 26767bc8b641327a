"""Run the server until SIGINT or SIGTERM, then stop cleanly: refuse new work, let classifications
in progress finish, close the sockets and the live feed."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from typing import Any

from skinedge.classifier import Classifier
from skinedge.serve.server import ServeOptions, make_server

log = logging.getLogger("skinedge.serve")


def configure_logging(level: int = logging.INFO) -> None:
    """One line per request and per refusal on stderr (what ``skinedge serve`` shows)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    log.addHandler(handler)
    log.setLevel(level)
    log.propagate = False


def run_server(classifier: Classifier, host: str = "127.0.0.1", port: int = 8080,
               options: ServeOptions | None = None, live: Any = None, kiosk: Any = None) -> int:
    """Serve until SIGINT/SIGTERM (call from the main thread); return the exit status (0 after a clean stop).

    ``live`` is a started :class:`skinedge.serve.live.LiveFeed` or None; it is stopped on exit. ``kiosk`` is a
    :class:`skinedge.kiosk.web.Kiosk` (token check, case log, HTTPS) or None; its case log is closed on exit.
    """
    options = options or ServeOptions()
    server = make_server(classifier, host, port, options, live, kiosk)
    stop = threading.Event()
    received: list[str] = []

    def on_signal(signum: int, _frame: Any) -> None:
        received.append(signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    # serve_forever in a thread: shutdown() must come from another thread than the loop's.
    loop = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="skinedge-serve",
                            daemon=True)
    loop.start()
    log.info("serving %s (model %s, %d interpreter threads); Ctrl-C to stop", server.url,
             classifier.model_path.name, classifier.num_threads)
    try:
        while loop.is_alive() and not stop.wait(0.5):
            pass
    finally:
        log.info("stopping (%s)", received[0] if received else "server loop ended")
        server.stopping.set()
        server.shutdown()
        if not server.drain(options.drain_s):
            log.warning("classifications still running after %.0f s; stopping anyway", options.drain_s)
        server.server_close()
        if live is not None:
            live.stop()
        if kiosk is not None:
            kiosk.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        log.info("stopped")
    return 0
