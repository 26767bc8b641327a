"""Suite 4: 500 mixed photos through ``Classifier.classify_many`` (decode on worker threads) and a
sequential loop; the full comparison with ``skinedge predict`` and the decode/invoke bound is
``suites.suite_batch`` (run by ``run_all.py``), whose figures land in ``extra_info`` here."""

from __future__ import annotations

import common
import pytest
import suites

from conftest import THREADS


@pytest.mark.parametrize("threads", THREADS)
def test_classify_many(benchmark, bench_int8_model, bench_batch_folder, threads):
    from skinedge import Classifier

    benchmark.group = f"batch of 500, {threads} thread(s)"
    paths = common.batch_paths(bench_batch_folder)
    with Classifier(bench_int8_model, num_threads=threads) as clf:
        out = benchmark.pedantic(clf.classify_many, args=(paths,), rounds=2, iterations=1, warmup_rounds=0)
    assert len(out) == len(paths)


@pytest.mark.parametrize("threads", THREADS)
def test_batch_vs_bound(benchmark, bench_int8_model, bench_batch_folder, bench_uses_bundled, threads):
    benchmark.group = f"batch of 500, {threads} thread(s)"
    res = benchmark.pedantic(suites.suite_batch, args=(bench_int8_model, bench_batch_folder, [threads]),
                             kwargs={"rounds": 1, "use_bundled": bench_uses_bundled}, rounds=1, iterations=1)
    r = res["by_threads"][str(threads)]
    benchmark.extra_info.update({k: r[k] for k in ("images_per_s", "bound_images_per_s", "bound_is",
                                                   "classify_many_fraction_of_bound", "cli_fraction_of_bound",
                                                   "classify_many_speedup_vs_sequential")})
