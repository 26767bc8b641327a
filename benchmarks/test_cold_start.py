"""Suite 5: fresh-process ``skinedge predict one.jpg`` (wall time, peak RSS of the child), its imports
(no tensorflow, no cv2) and RSS growth over many classifications."""

from __future__ import annotations

import os

import suites


def test_cold_start(benchmark, bench_int8_model, bench_photos, bench_uses_bundled):
    benchmark.group = "cold start"
    photo = bench_photos["640x480"]
    sk = suites.skinedge_bin()
    cmd = [sk, "predict", str(photo)] if bench_uses_bundled else [sk, "predict", "--model", str(bench_int8_model),
                                                                   str(photo)]
    peak = []

    def once():
        _, rss, code, err = suites._child(cmd)
        assert code == 0, err
        peak.append(rss)

    benchmark.pedantic(once, rounds=10, warmup_rounds=1)
    benchmark.extra_info["peak_rss_mb_median"] = round(suites.med(peak) / 2**20, 2)


def test_imports_and_rss_growth(benchmark, bench_int8_model, bench_photos, bench_uses_bundled):
    benchmark.group = "cold start"
    n = int(os.environ.get("SKINEDGE_BENCH_RSS_N", "10000"))
    res = benchmark.pedantic(suites.suite_cold, args=(bench_int8_model, bench_photos["640x480"]),
                             kwargs={"runs": 3, "use_bundled": bench_uses_bundled, "rss_n": n}, rounds=1, iterations=1)
    assert res["importtime"]["forbidden_imported"] == [], res["importtime"]
    benchmark.extra_info.update({"importtime": res["importtime"], "rss_growth_bytes": res["rss_growth"]["growth_bytes"],
                                 "peak_rss_mb": res["peak_rss_mb"]["skinedge predict"]})
