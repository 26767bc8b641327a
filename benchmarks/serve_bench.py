"""``skinedge serve`` under load: POST /api/classify with a 1 MP JPEG at 1, 4 and 16 concurrent clients,
against in-process ``Classifier.classify`` of the same bytes with as many threads, in the same run.

The server is the real command (``python -m skinedge.cli serve``) in its own process, logging as it
does by default; the clients are threads here, each with one keep-alive connection. The in-process
contender is one shared ``Classifier`` with the same interpreter thread count, called from as many
threads as there are clients. Both run in alternating rounds so that drift (other load, thermal)
hits both. Traffic goes to 127.0.0.1 only, and every loop is bounded by a request count.

    python benchmarks/serve_bench.py                 # benchmarks/results/serve.json + the table in docs/serve.md
    python benchmarks/serve_bench.py --requests 60   # a quick look (not figures to quote)
    python benchmarks/serve_bench.py --table-only    # docs/serve.md's table from the JSON

Goal: at 1 client the server's overhead (p50 latency over in-process p50) is at most 15%.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import common

CLIENTS = (1, 4, 16)
ONE_MP = (1155, 866)  # 1.0 megapixel, 4:3


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def _start_server(threads: int, log: Path) -> tuple[subprocess.Popen, str, int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "skinedge.cli", "serve", "--host", "127.0.0.1", "--port", "0", "--threads",
         str(threads)],
        stdout=subprocess.DEVNULL, stderr=log.open("w"), cwd=common.ROOT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        match = re.search(r"serving http://(127\.0\.0\.1):(\d+)/", log.read_text())
        if match:
            return proc, match.group(1), int(match.group(2))
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"server did not start:\n{log.read_text()}")


def _http_round(host: str, port: int, body: bytes, clients: int, per_client: int,
                split: list[tuple[float, float]]) -> tuple[float, list[float]]:
    """(wall seconds, per-request latencies in ms) for ``clients`` threads doing ``per_client`` requests each.

    Appends to ``split`` each request's (round trip - server_ms, server_ms - the result's own timings):
    the time HTTP adds outside the server's handler, and inside it besides classify.
    """
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []
    barrier = threading.Barrier(clients + 1)

    def client(i: int) -> None:
        conn = http.client.HTTPConnection(host, port, timeout=60)
        headers = {"Content-Type": "image/jpeg"}
        try:
            barrier.wait()
            for _ in range(per_client):
                t = time.perf_counter()
                conn.request("POST", "/api/classify", body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                elapsed = (time.perf_counter() - t) * 1000
                latencies[i].append(elapsed)
                if response.status != 200:
                    errors.append(f"{response.status}: {data[:200]!r}")
                    return
                answer = json.loads(data)
                split.append((elapsed - answer["server_ms"], answer["server_ms"] - sum(answer["timings_ms"].values())))
        finally:
            conn.close()

    wall = _run_together(client, clients, barrier)
    if errors:
        raise RuntimeError(f"server errors: {errors[:3]}")
    return wall, [x for per in latencies for x in per]


def _inprocess_round(clf, body: bytes, clients: int, per_client: int) -> tuple[float, list[float]]:
    latencies: list[list[float]] = [[] for _ in range(clients)]
    barrier = threading.Barrier(clients + 1)

    def worker(i: int) -> None:
        barrier.wait()
        for _ in range(per_client):
            t = time.perf_counter()
            clf.classify(body)
            latencies[i].append((time.perf_counter() - t) * 1000)

    return _run_together(worker, clients, barrier), [x for per in latencies for x in per]


def _run_together(target, n: int, barrier: threading.Barrier) -> float:
    """Wall seconds for ``n`` threads running ``target(i)``, timed from the moment the barrier lets them go."""
    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


def _paired_one_client(host: str, port: int, clf, body: bytes, pairs: int) -> dict:
    """One client, HTTP and in-process alternating request by request (order swapped every pair): each pair
    sees the same machine load, so the median of the per-pair differences resists load that comes and goes."""
    conn = http.client.HTTPConnection(host, port, timeout=60)
    http_ms, inproc_ms = [], []
    try:
        for i in range(pairs):
            for mode in (("http", "inprocess") if i % 2 == 0 else ("inprocess", "http")):
                t = time.perf_counter()
                if mode == "http":
                    conn.request("POST", "/api/classify", body=body, headers={"Content-Type": "image/jpeg"})
                    response = conn.getresponse()
                    response.read()
                    assert response.status == 200
                    http_ms.append((time.perf_counter() - t) * 1000)
                else:
                    clf.classify(body)
                    inproc_ms.append((time.perf_counter() - t) * 1000)
    finally:
        conn.close()
    diffs = [h - p for h, p in zip(http_ms, inproc_ms)]
    ratios = [h / p for h, p in zip(http_ms, inproc_ms)]
    return {
        "pairs": pairs,
        "http_p50_ms": round(statistics.median(http_ms), 3),
        "inprocess_p50_ms": round(statistics.median(inproc_ms), 3),
        "added_ms_median": round(statistics.median(diffs), 3),
        "overhead_median": round(statistics.median(ratios) - 1, 4),
    }


def _process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far, all its threads (from /proc; clock-tick resolution)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_per_request(host: str, port: int, pid: int, clf, body: bytes, blocks: int, per_block: int) -> dict:
    """CPU time per request, one client: server process + this client (HTTP) against this process (in-process).

    CPU time is what a request costs the board; unlike wall time it barely moves when other jobs share the
    CPUs. Blocks alternate, and each is long enough for /proc's 10 ms ticks not to matter.
    """
    cpu = {"http": 0.0, "inprocess": 0.0, "server": 0.0}
    done = {"http": 0, "inprocess": 0}
    conn = http.client.HTTPConnection(host, port, timeout=60)
    try:
        for b in range(2 * blocks):
            mode = "http" if b % 2 == 0 else "inprocess"
            server0, own0 = _process_cpu_s(pid), time.process_time()
            for _ in range(per_block):
                if mode == "http":
                    conn.request("POST", "/api/classify", body=body, headers={"Content-Type": "image/jpeg"})
                    response = conn.getresponse()
                    response.read()
                    assert response.status == 200
                else:
                    clf.classify(body)
            own = time.process_time() - own0
            server = _process_cpu_s(pid) - server0 if mode == "http" else 0.0
            cpu[mode] += own + server
            cpu["server"] += server
            done[mode] += per_block
    finally:
        conn.close()
    http_ms, inproc_ms = 1000 * cpu["http"] / done["http"], 1000 * cpu["inprocess"] / done["inprocess"]
    server_ms = 1000 * cpu["server"] / done["http"]
    return {"requests": done["http"], "http_cpu_ms": round(http_ms, 3), "server_cpu_ms": round(server_ms, 3),
            "inprocess_cpu_ms": round(inproc_ms, 3), "overhead": round(http_ms / inproc_ms - 1, 4),
            "server_overhead": round(server_ms / inproc_ms - 1, 4)}


def _summary(walls: list[float], latencies: list[float]) -> dict:
    return {
        "requests": len(latencies),
        "requests_per_s": round(len(latencies) / sum(walls), 2),
        "p50_ms": round(_percentile(latencies, 0.50), 3),
        "p90_ms": round(_percentile(latencies, 0.90), 3),
        "p99_ms": round(_percentile(latencies, 0.99), 3),
        "mean_ms": round(statistics.fmean(latencies), 3),
    }


TABLE_START, TABLE_END = "<!--SERVE_TABLE-->", "<!--/SERVE_TABLE-->"


def markdown_table(data: dict) -> str:
    """The docs' table from a results file (``docs/serve.md`` shows exactly what the JSON holds)."""
    p = data["one_client_paired"]
    lines = [
        f"Run finished {data['date']} on {data['machine']['cpu']} ({data['machine']['usable_cpus']} usable CPUs), "
        f"{data['interpreter_threads']} interpreter threads; load average {data['loadavg_before'][0]} before, "
        f"{data['loadavg_after'][0]} after (other jobs on the machine).",
        "",
        "| clients | HTTP req/s | HTTP p50 / p99 ms | in-process req/s | in-process p50 / p99 ms | p50 overhead "
        "(pooled; per-round median) | HTTP adds outside the handler, p50 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in data["results"]:
        h, i = r["http"], r["inprocess"]
        lines.append(
            f"| {r['clients']} | {h['requests_per_s']:.1f} | {h['p50_ms']:.1f} / {h['p99_ms']:.1f} | "
            f"{i['requests_per_s']:.1f} | {i['p50_ms']:.1f} / {i['p99_ms']:.1f} | "
            f"{100 * r['p50_overhead']:+.1f}%; {100 * r['p50_overhead_paired_median']:+.1f}% | "
            f"{r['outside_handler_ms_p50']:.2f} |")
    lines += [
        "",
        f"One client, HTTP and in-process alternating request by request ({p['pairs']} pairs): p50 "
        f"{p['http_p50_ms']:.1f} ms against {p['inprocess_p50_ms']:.1f} ms; median added time "
        f"{p['added_ms_median']:.2f} ms; median overhead {100 * p['overhead_median']:+.1f}% (goal: at most 15%).",
    ]
    c = data.get("one_client_cpu")
    if c:
        lines += ["", f"One client, CPU time per request ({c['requests']} requests each way, alternating blocks): "
                      f"HTTP {c['http_cpu_ms']:.2f} ms (server process {c['server_cpu_ms']:.2f} + client) against "
                      f"{c['inprocess_cpu_ms']:.2f} ms in-process: {100 * c['overhead']:+.1f}% "
                      f"({100 * c['server_overhead']:+.1f}% for the server process alone, what the board pays when "
                      "the client is a browser elsewhere)."]
    return "\n".join(lines)


def write_table(data: dict, doc: Path) -> None:
    text = doc.read_text()
    start, end = text.find(TABLE_START), text.find(TABLE_END)
    if start < 0 or end < start:
        print(f"{doc} has no {TABLE_START} ... {TABLE_END} block: table not written")
        return
    doc.write_text(text[: start + len(TABLE_START)] + "\n" + markdown_table(data) + "\n" + text[end:])
    print(f"wrote the table into {doc}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=480, help="requests per mode and client count")
    parser.add_argument("--rounds", type=int, default=12, help="alternating server / in-process rounds")
    parser.add_argument("--pairs", type=int, default=400, help="1-client request pairs, alternating")
    parser.add_argument("--threads", type=int, default=common.usable_cpus(), help="interpreter threads")
    parser.add_argument("--out", default="serve", help="results name (benchmarks/results/NAME.json)")
    parser.add_argument("--table-only", action="store_true", help="rewrite docs/serve.md's table from the JSON")
    args = parser.parse_args()
    if args.table_only:
        write_table(json.loads((common.RESULTS / f"{args.out}.json").read_text()), common.DOCS / "serve.md")
        return

    from skinedge import Classifier

    src = common.source_photo()
    photo = common._upscaled(src, ONE_MP, common.CACHE / "photos" / f"serve_{src.stem}_{ONE_MP[0]}x{ONE_MP[1]}.jpg")
    body = photo.read_bytes()
    clf = Classifier(num_threads=args.threads)
    reference = clf.classify(body)
    log = Path(tempfile.mkdtemp(prefix="skinedge-serve-bench-")) / "server.log"
    proc, host, port = _start_server(args.threads, log)
    load_before = os.getloadavg()
    results = []
    try:
        # Warm both (first invokes, connection set-up, lazy imports) and check the server's answer.
        conn = http.client.HTTPConnection(host, port, timeout=60)
        for _ in range(20):
            conn.request("POST", "/api/classify", body=body, headers={"Content-Type": "image/jpeg"})
            answer = json.loads(conn.getresponse().read())
            clf.classify(body)
        conn.close()
        assert answer["label"] == reference.label and abs(answer["score"] - reference.score) < 1e-6, answer
        paired = _paired_one_client(host, port, clf, body, args.pairs)
        print(f" 1 client, paired request by request: http p50 {paired['http_p50_ms']:.2f} ms, in-process p50 "
              f"{paired['inprocess_p50_ms']:.2f} ms, added {paired['added_ms_median']:.2f} ms, overhead "
              f"{100 * paired['overhead_median']:+.1f}%", flush=True)
        cpu = _cpu_per_request(host, port, proc.pid, clf, body, blocks=4, per_block=max(10, args.pairs // 4))
        print(f" 1 client, CPU time per request: http (server + client) {cpu['http_cpu_ms']:.2f} ms, server alone "
              f"{cpu['server_cpu_ms']:.2f} ms, in-process {cpu['inprocess_cpu_ms']:.2f} ms, overhead "
              f"{100 * cpu['overhead']:+.1f}% ({100 * cpu['server_overhead']:+.1f}% the server alone)", flush=True)
        for clients in CLIENTS:
            per_client = max(3, args.requests // (clients * args.rounds))
            pair_ratios: list[float] = []  # per round: HTTP p50 / in-process p50, run back to back
            split: list[tuple[float, float]] = []
            walls = {"http": [], "inprocess": []}
            lat: dict[str, list[float]] = {"http": [], "inprocess": []}
            for r in range(args.rounds):
                order = ("http", "inprocess") if r % 2 == 0 else ("inprocess", "http")
                for mode in order:
                    if mode == "http":
                        wall, values = _http_round(host, port, body, clients, per_client, split)
                    else:
                        wall, values = _inprocess_round(clf, body, clients, per_client)
                    walls[mode].append(wall)
                    lat[mode].extend(values)
                    if mode == order[1]:
                        pair_ratios.append(_percentile(lat["http"][-len(values):], 0.5)
                                           / _percentile(lat["inprocess"][-len(values):], 0.5))
            http_s, inproc_s = _summary(walls["http"], lat["http"]), _summary(walls["inprocess"], lat["inprocess"])
            row = {
                "clients": clients,
                "http": http_s,
                "inprocess": inproc_s,
                "p50_overhead": round(http_s["p50_ms"] / inproc_s["p50_ms"] - 1, 4),
                # Robust to load that comes and goes: the median over rounds of each round's own ratio.
                "p50_overhead_paired_median": round(statistics.median(pair_ratios) - 1, 4),
                "throughput_ratio": round(http_s["requests_per_s"] / inproc_s["requests_per_s"], 4),
                # Absolute: what HTTP adds outside the handler (client, socket, parsing, JSON; with many clients
                # also waiting to be read), and inside it besides classify (body read, content checks, payload,
                # and waiting for one of the server's 4 classification slots when more clients than that).
                "outside_handler_ms_p50": round(statistics.median(a for a, _ in split), 3),
                "handler_besides_classify_ms_p50": round(statistics.median(b for _, b in split), 3),
            }
            results.append(row)
            print(f"{clients:>2} clients: http {http_s['requests_per_s']:7.1f}/s p50 {http_s['p50_ms']:7.2f} "
                  f"p99 {http_s['p99_ms']:7.2f} ms | in-process {inproc_s['requests_per_s']:7.1f}/s "
                  f"p50 {inproc_s['p50_ms']:7.2f} p99 {inproc_s['p99_ms']:7.2f} ms | p50 overhead "
                  f"{100 * row['p50_overhead']:+.1f}% (paired {100 * row['p50_overhead_paired_median']:+.1f}%), "
                  f"throughput ratio {row['throughput_ratio']:.3f}; outside handler "
                  f"{row['outside_handler_ms_p50']:.2f} ms, in it besides classify "
                  f"{row['handler_besides_classify_ms_p50']:.2f} ms", flush=True)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        clf.close()
    one = results[0]
    data = {
        "what": "POST /api/classify (raw JPEG body, keep-alive) vs in-process Classifier.classify of the same bytes",
        "photo": {"source": str(src.relative_to(common.SHARED)), "size": list(ONE_MP), "bytes": len(body),
                  "jpeg_quality": 90, "label": reference.label},
        "server": "python -m skinedge.cli serve (its own process; default logging, one line per request)",
        "interpreter_threads": args.threads,
        "rounds": args.rounds,
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "machine": common.machine(),
        "one_client_paired": paired,
        "one_client_cpu": cpu,
        "results": results,
        "goal": {"overhead_at_1_client_max": 0.15,
                 "met_paired_requests": paired["overhead_median"] <= 0.15,
                 "met_cpu_time": cpu["overhead"] <= 0.15,
                 "met_rounds_pooled_p50": one["p50_overhead"] <= 0.15,
                 "met_rounds_paired_median": one["p50_overhead_paired_median"] <= 0.15},
        "server_exit_code": proc.returncode,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    path = common.write_result(args.out, data)
    print(f"wrote {path}; server exit code {proc.returncode}")
    if args.out == "serve" and path.parent == common.BENCH_DIR / "results":
        write_table(data, common.DOCS / "serve.md")


if __name__ == "__main__":
    main()
