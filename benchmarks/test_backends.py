"""Suite 3: invoke latency per engine and format: int8 vs float32, XNNPACK on vs off, LiteRT vs
tflite-runtime 2.14 (own venv, numpy<2), tf.lite, ONNX Runtime. Each engine runs in a ``worker.py``
process; the benchmark time is that process, and the invoke medians are in ``extra_info``.
"""

from __future__ import annotations

from pathlib import Path

import common
import pytest
import suites

from conftest import THREADS

try:
    _MATRIX = suites.backend_matrix(common.int8_model(), common.float_model())
except FileNotFoundError:
    _MATRIX = []


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("row", _MATRIX, ids=[f"{r['format']}-{r['engine']}" for r in _MATRIX])
def test_invoke_per_backend(benchmark, bench_photos, row, threads):
    benchmark.group = f"backends, {threads} thread(s)"
    args = ["invoke", "--engine", row["engine"], "--model", str(row["model"]), "--threads", str(threads),
            "--runs", "60", "--warmup", "10", "--image", str(bench_photos["640x480"])]
    if row["norm"]:
        args += ["--norm", ",".join(map(str, row["norm"]))]
    if not Path(row["python"]).exists():
        pytest.skip(f"{row['python']} missing")
    res = benchmark.pedantic(common.run_worker, args=(row["python"], args), rounds=1, iterations=1)
    benchmark.extra_info.update({"invoke_median_ms": suites.med(res["samples_ms"]), "version": res["version"],
                                 "delegated": res["delegated"], "label": row["label"]})
