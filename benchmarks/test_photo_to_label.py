"""Suite 2: photo file to top-1 label for 640x480, 1024x768 and 4000x3000 JPEGs.

skinedge and the plain PIL + LiteRT script run in this process (pytest-benchmark times them). TensorFlow,
ONNX Runtime and MediaPipe run in ``worker.py`` processes in their own venvs: for those the benchmark
time is the whole worker process, and the per-image medians are in ``extra_info``.
"""

from __future__ import annotations

import common
import contenders
import pytest
import suites

from conftest import THREADS

SIZES = [f"{w}x{h}" for w, h in common.PHOTO_SIZES]


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("pipeline", ["skinedge", "naive-litert"])
def test_photo_to_label(benchmark, bench_int8_model, bench_photos, pipeline, size, threads):
    benchmark.group = f"photo to label {size}, {threads} thread(s)"
    pipe = contenders.make_pipeline(pipeline, bench_int8_model, threads)
    path = bench_photos[size]
    rounds = 10 if size == "4000x3000" else 30
    top1, _ = benchmark.pedantic(pipe.label, args=(path,), rounds=rounds, warmup_rounds=2)
    benchmark.extra_info["top1"] = top1


@pytest.mark.parametrize("threads", THREADS)
def test_photo_to_label_other_stacks(benchmark, bench_int8_model, bench_float_model, bench_photos, threads):
    """tf.io + tf.lite, ONNX Runtime (int8 QDQ and float) and MediaPipe, each in its own process."""
    benchmark.group = f"photo to label, other stacks, {threads} thread(s)"
    cands = [c for c in suites.e2e_contenders(bench_int8_model, bench_float_model) if c["python"] is not None]
    if not cands:
        pytest.skip("no other stacks installed (see benchmarks/README.md)")

    def run_all():
        out = {}
        for c in cands:
            args = ["e2e", "--pipeline", c["pipeline"], "--model", str(c["model"]), "--threads", str(threads),
                    "--runs", "7", "--warmup", "2", "--images", ",".join(str(p) for p in bench_photos.values())]
            if c.get("norm"):
                args += ["--norm", ",".join(map(str, c["norm"]))]
            try:
                res = common.run_worker(c["python"], args)
            except Exception as exc:  # noqa: BLE001 - a stack that fails here is reported, not fatal
                out[c["name"]] = {"error": str(exc)[-300:]}
                continue
            out[c["name"]] = {size: round(suites.med([r["total"] for r in res["per_image"][str(p)]]), 3)
                              for size, p in bench_photos.items()}
        return out

    benchmark.extra_info["median_total_ms"] = benchmark.pedantic(run_all, rounds=1, iterations=1)
