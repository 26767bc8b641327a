"""Suite 5: fresh-process ``skinedge predict one.jpg`` against the plain LiteRT script doing the same work
(``plain_litert_predict.py``), interleaved round by round, as a ratio; its imports (no tensorflow, no cv2),
peak RSS and RSS growth over many classifications."""

from __future__ import annotations

import os

import suites


def test_cold_start_vs_plain_script(benchmark, bench_int8_model, bench_photos, bench_uses_bundled):
    benchmark.group = "cold start"
    rounds = int(os.environ.get("SKINEDGE_BENCH_COLD_ROUNDS", "30"))
    commands = suites.cold_start_commands(bench_int8_model, bench_photos["640x480"], bench_uses_bundled)
    res = benchmark.pedantic(suites.cold_start_ratio, args=(commands,), kwargs={"rounds": rounds}, rounds=1,
                             iterations=1)
    assert res["failures"] == [], res["failures"]
    benchmark.extra_info.update({"ratio_vs_plain_script": res["ratio"], "wall_s": res["wall_s"],
                                 "loadavg": res["loadavg"]})


def test_imports_and_rss_growth(benchmark, bench_int8_model, bench_photos, bench_uses_bundled):
    benchmark.group = "cold start"
    n = int(os.environ.get("SKINEDGE_BENCH_RSS_N", "10000"))
    res = benchmark.pedantic(suites.suite_cold, args=(bench_int8_model, bench_photos["640x480"]),
                             kwargs={"runs": 3, "use_bundled": bench_uses_bundled, "rss_n": n}, rounds=1, iterations=1)
    assert res["importtime"]["forbidden_imported"] == [], res["importtime"]
    benchmark.extra_info.update({"importtime": res["importtime"], "rss_growth_bytes": res["rss_growth"]["growth_bytes"],
                                 "peak_rss_mb": res["peak_rss_mb"]["skinedge predict"]})
