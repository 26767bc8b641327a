"""Fixtures for the on-demand benchmark suites (``pytest benchmarks/``; not part of the test pass).

Fixture names start with ``bench_`` so they cannot clash with fixtures of other folders under
``benchmarks/``. Models, images and venvs come from ``common.py`` (environment variables there).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

THREADS = common.thread_counts()


@pytest.fixture(scope="session")
def bench_int8_model() -> Path:
    try:
        return common.int8_model()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def bench_float_model() -> Path | None:
    return common.float_model()


@pytest.fixture(scope="session")
def bench_photos() -> dict[str, Path]:
    try:
        return common.photos()
    except FileNotFoundError as exc:
        pytest.skip(f"{exc}: the benchmark photos are made from ../shared (set SKINEDGE_SHARED)")


@pytest.fixture(scope="session")
def bench_batch_folder() -> Path:
    return common.batch_folder()


@pytest.fixture(scope="session")
def bench_uses_bundled() -> bool:
    import os

    return "SKINEDGE_BENCH_MODEL" not in os.environ
