"""Crash tests of the kiosk with real processes and SIGKILL, shared by the tests (a few kills, in CI) and
``benchmarks/kiosk_bench.py`` (more, for the figures in docs/kiosk.md):

* :func:`run`: ``kill -9`` of a real ``skinedge serve --case-log`` while clients classify: is every acknowledged
  case on disk? (``tests/test_kiosk_kill.py``)
* :func:`install_kills`: ``skinedge models install`` killed at spread-out moments: old model or new, never
  neither? (``tests/test_kiosk_modelstore.py``)

Loopback only; every loop is bounded by time.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import random
import re
import shutil
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


_INSTALL_CHILD = """
import sys, time
from skinedge.classifier import Classifier
from skinedge.kiosk.modelstore import ModelStore
Classifier("mobilenetv2", num_threads=1).close()  # imports and backend loaded before the clock starts
store = ModelStore(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
t = time.perf_counter()
store.install(sys.argv[2], num_threads=1)
print("done", time.perf_counter() - t, flush=True)
"""


def _install_child(store: Path, model: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", _INSTALL_CHILD, str(store), str(model)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env)
    if proc.stdout.readline().strip() != "ready":
        proc.kill()
        raise RuntimeError("the install child did not start")
    return proc


def install_kills(template: Path, model: Path, workdir: Path, *, kills: int, seed: int = 0,
                  uniform: bool = False) -> dict:
    """Copy the store ``template`` (one model active), start ``install model`` in a child and SIGKILL it after a
    delay spread over twice a measured uninterrupted run; ``kills`` times. After each kill the store must have the
    old model or the new one active, complete (it loads and matches its SHA-256); an install that printed "done"
    must have left the new one. ``uniform``: delays drawn uniformly from 0 to 1.5 runs instead (for many kills).
    Returns the outcomes and every violation found (none expected)."""
    import hashlib as _hashlib

    from skinedge.classifier import Classifier
    from skinedge.kiosk.modelstore import ModelStore

    old_sha = ModelStore(template).list()[0].sha256
    new_bytes = model.read_bytes()
    new_sha = _hashlib.sha256(new_bytes).hexdigest()
    root = workdir / "timing"
    shutil.copytree(template, root)
    proc = _install_child(root, model)
    proc.stdin.write("go\n")
    proc.stdin.flush()
    duration = float(proc.stdout.readline().split()[1])
    proc.wait(10)
    rng = random.Random(seed)
    outcomes, violations = [], []
    for i in range(kills):
        root = workdir / f"k{i}"
        shutil.copytree(template, root)
        proc = _install_child(root, model)
        if uniform:
            delay = rng.uniform(0.0, 1.5 * duration)
        else:  # evenly spread over twice the run (loaded machines run slower), jittered
            delay = duration * 2.0 * i / max(kills - 1, 1) * rng.uniform(0.8, 1.0)
        proc.stdin.write("go\n")
        proc.stdin.flush()
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        finished = "done" in proc.stdout.read()  # what it printed before it died
        try:
            store = ModelStore(root)
            active = store.active_path()
            sha = store.list()[0].sha256 if active else None
            if sha not in (old_sha, new_sha):
                violations.append(f"kill {i}: active model is {sha}, neither old nor new")
                continue
            with Classifier(active, num_threads=1) as clf:  # complete and matches its checksum
                if clf.model_sha256 != sha:
                    violations.append(f"kill {i}: the active file's SHA-256 is not the one recorded")
            if sha == new_sha and active.read_bytes() != new_bytes:
                violations.append(f"kill {i}: the new model's bytes differ")
            if finished and sha != new_sha:
                violations.append(f"kill {i}: install reported success but the old model is active")
        except Exception as exc:  # noqa: BLE001 - any failure to load the store is a violation to report
            violations.append(f"kill {i}: {type(exc).__name__}: {exc}")
            continue
        outcomes.append(("finished " if finished else "killed, ") + ("new" if sha == new_sha else "old"))
        if uniform:  # many kills: keep the disk use flat
            shutil.rmtree(root, ignore_errors=True)
    return {"kills": kills, "install_ms": duration * 1000, "outcomes": outcomes, "violations": violations}
