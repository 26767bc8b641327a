"""Suite 1: ``Classifier.invoke`` on a preprocessed array vs a bare LiteRT ``invoke()`` (SDK overhead).

Same method as ``skinedge bench``: the pair is timed in interleaved rounds and the ratio of medians is
the figure (target <= 1.05); the ratio lands in each benchmark's ``extra_info``.
"""

from __future__ import annotations

import pytest
import suites

from conftest import THREADS


@pytest.mark.parametrize("threads", THREADS)
def test_classifier_invoke(benchmark, bench_int8_model, bench_photos, threads):
    from skinedge import Classifier

    benchmark.group = f"invoke, {threads} thread(s)"
    with Classifier(bench_int8_model, num_threads=threads) as clf:
        pixels, _, _ = clf.preprocess(bench_photos["640x480"])
        benchmark.pedantic(clf.invoke, args=(pixels,), rounds=300, warmup_rounds=30)


@pytest.mark.parametrize("threads", THREADS)
def test_bare_interpreter_invoke(benchmark, bench_int8_model, bench_photos, threads):
    import contenders
    from ai_edge_litert.interpreter import Interpreter

    benchmark.group = f"invoke, {threads} thread(s)"
    it = Interpreter(model_path=str(bench_int8_model), num_threads=threads)
    it.allocate_tensors()
    d = it.get_input_details()[0]
    it.set_tensor(d["index"], contenders.to_input(contenders.naive_pixels(bench_photos["640x480"])[0], d["dtype"]))
    benchmark.pedantic(it.invoke, rounds=300, warmup_rounds=30)


@pytest.mark.parametrize("threads", THREADS)
def test_sdk_overhead_interleaved(benchmark, bench_int8_model, bench_photos, threads):
    benchmark.group = f"invoke, {threads} thread(s)"
    res = benchmark.pedantic(suites.suite_invoke, args=(bench_int8_model, bench_photos["640x480"], [threads]),
                             kwargs={"runs": 400}, rounds=1, iterations=1)
    r = res["by_threads"][str(threads)]
    benchmark.extra_info.update({
        "overhead_vs_same_interpreter": r["overhead_vs_same_interpreter"],
        "overhead_vs_bare_set_invoke_get": r["overhead_vs_bare_set_invoke_get"],
        "medians_ms": {k: v["median"] for k, v in r["stats_ms"].items()},
        "target": "<= 1.05",
    })
