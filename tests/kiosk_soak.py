"""``kill -9`` of a real ``skinedge serve --case-log`` while clients classify: is every acknowledged case on disk?

Shared by ``tests/test_kiosk_kill.py`` (a few kills, in CI) and ``benchmarks/kiosk_bench.py`` (20 kills, the
figure in docs/kiosk.md). Loopback only; every loop is bounded by time.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class SoakResult:
    kills: int = 0
    requests_answered: int = 0
    acknowledged: dict[int, str] = field(default_factory=dict)  # case id -> photo SHA-256 the client sent
    lost: list[int] = field(default_factory=list)  # acknowledged, not in the database
    wrong: list[int] = field(default_factory=list)  # in the database with another photo's SHA-256
    duplicate_ids: int = 0
    missing_photos: list[int] = field(default_factory=list)
    integrity: str = ""
    cases_in_db: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"kills": self.kills, "requests_answered": self.requests_answered,
                "acknowledged_cases": len(self.acknowledged), "lost": self.lost, "wrong_photo": self.wrong,
                "duplicate_case_ids": self.duplicate_ids, "missing_photos": self.missing_photos,
                "integrity_check": self.integrity, "cases_in_db": self.cases_in_db, "seconds": round(self.seconds, 1)}


def start_server(db: Path, photos: Path, log: Path, extra: list[str] | None = None) -> tuple[subprocess.Popen, int]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "skinedge.cli", "serve", "--host", "127.0.0.1", "--port", "0",
                             "--threads", "1", "--case-log", str(db), "--keep-photos", str(photos), *(extra or [])],
                            stdout=subprocess.DEVNULL, stderr=log.open("w"), env=env, cwd=ROOT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = re.search(r"serving http://127\.0\.0\.1:(\d+)/", log.read_text())
        if found and _listening(int(found.group(1))):
            return proc, int(found.group(1))
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"server did not start:\n{log.read_text()[-2000:]}")


def _listening(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _client(port: int, photo: bytes, digest: str, stop: threading.Event, out: list, lock: threading.Lock) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        while not stop.is_set():
            try:
                conn.request("POST", "/api/classify", body=photo, headers={"Content-Type": "image/jpeg"})
                resp = conn.getresponse()
                body = resp.read()
            except (OSError, http.client.HTTPException):
                return  # the server died: this client is done for this round
            if resp.status == 200:
                with lock:
                    out.append((json.loads(body)["case_id"], digest))
    finally:
        conn.close()


def run(workdir: Path, photos: list[bytes], *, kills: int, clients: int = 8, window_s: tuple[float, float] = (0.4, 1.5),
        seed: int = 0) -> SoakResult:
    """Start the server, let ``clients`` threads classify for a random time in ``window_s``, SIGKILL it; ``kills``
    times on one case log. Then check the database."""
    from skinedge.kiosk.caselog import CaseLog

    rng = random.Random(seed)
    db, kept = workdir / "cases.sqlite", workdir / "photos"
    result = SoakResult()
    acknowledged: list[tuple[int, str]] = []
    lock = threading.Lock()
    started = time.monotonic()
    for k in range(kills):
        proc, port = start_server(db, kept, workdir / f"serve-{k}.log")
        stop = threading.Event()
        threads = []
        for i in range(clients):
            photo = photos[i % len(photos)]
            t = threading.Thread(target=_client, args=(port, photo, hashlib.sha256(photo).hexdigest(), stop,
                                                       acknowledged, lock), daemon=True)
            t.start()
            threads.append(t)
        time.sleep(rng.uniform(*window_s))
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        stop.set()
        for t in threads:
            t.join(15)
        result.kills += 1
    result.seconds = time.monotonic() - started
    result.requests_answered = len(acknowledged)
    ids = [case_id for case_id, _ in acknowledged]
    result.duplicate_ids = len(ids) - len(set(ids))
    result.acknowledged = dict(acknowledged)
    with CaseLog(db) as caselog:
        result.integrity = caselog.integrity_check()
        cases = {c.case_id: c for c in caselog.all_cases()}
    result.cases_in_db = len(cases)
    for case_id, digest in result.acknowledged.items():
        case = cases.get(case_id)
        if case is None:
            result.lost.append(case_id)
        elif case.photo_sha256 != digest:
            result.wrong.append(case_id)
        else:
            kept_photo = kept / case.photo
            if not kept_photo.is_file() or hashlib.sha256(kept_photo.read_bytes()).hexdigest() != digest:
                result.missing_photos.append(case_id)
    return result
