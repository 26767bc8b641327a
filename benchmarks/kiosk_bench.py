"""The kiosk's figures: what the case log costs ``POST /api/classify`` at one client, and the crash soaks.

1. Overhead: three real ``skinedge serve`` processes on 127.0.0.1 (plain; ``--case-log``; ``--case-log
   --keep-photos``), the same 1 MP JPEG (made unique per request by 8 trailing bytes, so that every kept photo
   is a new file), requests alternating between the three one at a time on keep-alive connections. The
   overhead is the median over rounds of (case-log time - plain time), over the plain median. Goal: <= 5%.
   The same with ``?heatmap=1`` (what the page sends), fewer rounds.
2. ``kill -9`` of ``skinedge serve --case-log --keep-photos`` under 8 clients, ``--kills`` times
   (tests/kiosk_soak.py ``run``): acknowledged cases lost (goal 0), ``PRAGMA integrity_check``.
3. ``models install`` SIGKILLed at uniformly random moments, ``--install-kills`` times (``install_kills``):
   installs that left the board with neither model (goal 0).

    python benchmarks/kiosk_bench.py                  # benchmarks/results/kiosk.json
    python benchmarks/kiosk_bench.py --rounds 50 --kills 2 --install-kills 5   # a quick look
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import common

sys.path.insert(0, str(common.ROOT / "tests"))
import kiosk_soak  # noqa: E402

ONE_MP = (1155, 866)


def overhead(body: bytes, rounds: int, threads: int, workdir: Path, query: str = "") -> dict:
    variants = {
        "plain": [],
        "case_log": ["--case-log", str(workdir / "a.sqlite")],
        "case_log_and_photos": ["--case-log", str(workdir / "b.sqlite"), "--keep-photos", str(workdir / "photos")],
    }
    procs, conns = {}, {}
    try:
        for name, extra in variants.items():
            log = workdir / f"{name}.log"
            proc, port = _start(extra, threads, log)
            procs[name] = proc
            conns[name] = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        times: dict[str, list[float]] = {name: [] for name in variants}
        case_ms: dict[str, list[float]] = {name: [] for name in variants}
        order = list(variants)
        for i in range(rounds + 20):  # the first 20 rounds warm up (first invokes, lazy imports)
            payload = body + i.to_bytes(8, "little")
            order = order[1:] + order[:1]  # rotate who goes first
            for name in order:
                t0 = time.perf_counter()
                conns[name].request("POST", "/api/classify" + query, body=payload,
                                    headers={"Content-Type": "image/jpeg"})
                resp = conns[name].getresponse()
                answer = json.loads(resp.read())
                elapsed = (time.perf_counter() - t0) * 1000
                if resp.status != 200:
                    raise RuntimeError(f"{name}: HTTP {resp.status}: {answer}")
                if i >= 20:
                    times[name].append(elapsed)
                    case_ms[name].append(answer["timings_ms"].get("case_log", 0.0))
    finally:
        for conn in conns.values():
            conn.close()
        for proc in procs.values():
            proc.terminate()
            proc.wait(30)
    plain = statistics.median(times["plain"])
    out = {"request": "POST /api/classify" + query, "rounds": rounds, "interpreter_threads": threads,
           "plain_p50_ms": round(plain, 2)}
    for name in ("case_log", "case_log_and_photos"):
        diffs = [b - a for a, b in zip(times["plain"], times[name])]
        out[name] = {"p50_ms": round(statistics.median(times[name]), 2),
                     "median_added_ms": round(statistics.median(diffs), 3),
                     "overhead_paired_median": round(statistics.median(diffs) / plain, 4),
                     "overhead_p50_ratio": round(statistics.median(times[name]) / plain - 1, 4),
                     "server_case_log_ms_p50": round(statistics.median(case_ms[name]), 3),
                     "server_case_log_ms_p90": round(sorted(case_ms[name])[int(0.9 * len(case_ms[name]))], 3)}
    return out


def fsync_probe(folder: Path, n: int = 200) -> dict:
    """What one durable commit costs this disk: a 4 KB append and fsync, ``n`` times (the floor under the case
    log's cost with synchronous=FULL), measured beside the overhead run."""
    ms = []
    with open(folder / "fsync-probe", "ab") as f:
        for _ in range(n):
            t0 = time.perf_counter()
            f.write(b"x" * 4096)
            f.flush()
            os.fsync(f.fileno())
            ms.append((time.perf_counter() - t0) * 1000)
    ms.sort()
    return {"n": n, "p50_ms": round(ms[n // 2], 3), "p90_ms": round(ms[int(0.9 * n)], 3)}


def _start(extra: list[str], threads: int, log: Path):
    import re
    import subprocess

    env = dict(os.environ, PYTHONPATH=str(common.ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "skinedge.cli", "serve", "--host", "127.0.0.1", "--port", "0",
                             "--threads", str(threads), *extra], stdout=subprocess.DEVNULL, stderr=log.open("w"),
                            env=env, cwd=common.ROOT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = re.search(r"serving http://127\.0\.0\.1:(\d+)/", log.read_text())
        if found:
            return proc, int(found.group(1))
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"server did not start:\n{log.read_text()}")


def install_soak(kills: int, workdir: Path) -> dict:
    import shutil

    from skinedge_tools.sign import keygen, sign_file

    from skinedge.kiosk.modelstore import ModelStore
    from skinedge.model_io import bundled_model_path

    _, pub, _ = keygen(workdir / "k.key")
    models = {}
    for name in ("efficientnet-lite0", "mobilenetv2"):
        models[name] = workdir / f"{name}.tflite"
        shutil.copyfile(bundled_model_path(name), models[name])
        sign_file(models[name], workdir / "k.key")
    store = ModelStore(workdir / "template")
    store.trust(pub)
    store.install(models["efficientnet-lite0"], num_threads=1)
    got = kiosk_soak.install_kills(store.root, models["mobilenetv2"], workdir, kills=kills, uniform=True)
    counts: dict[str, int] = {}
    for o in got["outcomes"]:
        counts[o] = counts.get(o, 0) + 1
    return {"kills": kills, "install_ms": round(got["install_ms"], 1), "outcomes": counts,
            "violations": got["violations"], "neither_model": sum("neither" in v for v in got["violations"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300, help="requests per server in the overhead run")
    parser.add_argument("--heatmap-rounds", type=int, default=100, help="the same with ?heatmap=1")
    parser.add_argument("--threads", type=int, default=common.usable_cpus(), help="interpreter threads")
    parser.add_argument("--kills", type=int, default=20, help="kill -9 of the server under load")
    parser.add_argument("--install-kills", type=int, default=100, help="SIGKILLs of models install")
    parser.add_argument("--out", default="kiosk", help="results name (benchmarks/results/NAME.json)")
    parser.add_argument("--overhead-only", action="store_true", help="skip the two crash soaks")
    args = parser.parse_args()

    src = common.source_photo()
    photo = common._upscaled(src, ONE_MP, common.CACHE / "photos" / f"serve_{src.stem}_{ONE_MP[0]}x{ONE_MP[1]}.jpg")
    body = photo.read_bytes()
    load_before = os.getloadavg()
    result: dict = {"started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                    "photo": {"source": str(src.relative_to(common.SHARED)), "size": list(ONE_MP), "bytes": len(body)},
                    "machine": common.machine()}
    with tempfile.TemporaryDirectory(prefix="skinedge-kiosk-bench-") as tmp:
        work = Path(tmp)
        (work / "o").mkdir()
        result["fsync_before"] = fsync_probe(work / "o")
        result["case_log_overhead"] = overhead(body, args.rounds, args.threads, work / "o")
        result["case_log_overhead"]["goal_max"] = 0.05
        result["case_log_overhead"]["goal_met"] = result["case_log_overhead"]["case_log"][
            "overhead_paired_median"] <= 0.05
        print(json.dumps(result["case_log_overhead"], indent=1), flush=True)
        (work / "h").mkdir()
        result["case_log_overhead_heatmap"] = overhead(body, args.heatmap_rounds, args.threads, work / "h",
                                                       query="?heatmap=1")
        print(json.dumps(result["case_log_overhead_heatmap"], indent=1), flush=True)
        result["fsync_after"] = fsync_probe(work / "o")
        print("fsync", result["fsync_before"], result["fsync_after"], flush=True)
        if args.overhead_only:
            result["note"] = "--overhead-only: no crash soaks in this run"
        else:
            (work / "k").mkdir()
            test_photos = sorted((common.SHARED / "data" / "skin6" / "test").rglob("*.jpg"))
            photos = [p.read_bytes() for p in test_photos[::50][:8]]
            soak = kiosk_soak.run(work / "k", photos, kills=args.kills, clients=8, window_s=(0.5, 2.5))
            result["serve_kill_9"] = {**soak.to_dict(), "lost_count": len(soak.lost), "goal_lost": 0}
            print(json.dumps(result["serve_kill_9"], indent=1), flush=True)
            (work / "i").mkdir()
            result["install_kills"] = install_soak(args.install_kills, work / "i")
            print(json.dumps(result["install_kills"], indent=1), flush=True)
    result["loadavg_before"] = [round(x, 2) for x in load_before]
    result["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    path = common.write_result(args.out, result)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
