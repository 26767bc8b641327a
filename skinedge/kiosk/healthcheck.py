"""Wait until ``GET /healthz`` answers ``{"status": "ok"}``: the systemd unit's start check.

``python -m skinedge.kiosk.healthcheck URL [--timeout S]`` exits 0 once the server answers, 1 if it did not
within the timeout (systemd then counts the start as failed, and ``Restart=on-failure`` tries again).
The certificate is not verified: the check runs on the board itself, against its own (often
self-signed) certificate, and only reads ``/healthz``, which carries nothing secret.
"""

from __future__ import annotations

import argparse
import json
import ssl
import sys
import time
import urllib.error
import urllib.request


def healthy(url: str, *, timeout: float = 2.0) -> bool:
    """One try: does ``url`` answer 200 with ``{"status": "ok"}``?"""
    context = ssl._create_unverified_context() if url.startswith("https:") else None  # noqa: S323 - see above
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as resp:
            return resp.status == 200 and json.loads(resp.read(4096)).get("status") == "ok"
    except (OSError, ValueError, urllib.error.URLError):
        return False


def wait_healthy(url: str, *, timeout: float = 60.0, interval: float = 0.5) -> bool:
    """Poll ``url`` until it is healthy (True) or ``timeout`` seconds passed (False)."""
    deadline = time.monotonic() + timeout
    while True:
        if healthy(url):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m skinedge.kiosk.healthcheck", description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    if wait_healthy(args.url, timeout=args.timeout):
        return 0
    print(f"skinedge healthcheck: {args.url} did not answer {{\"status\": \"ok\"}} within {args.timeout:g} s",
          file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
