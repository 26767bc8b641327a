"""pytest plugin (``-p fi_plugin``): applies the library fault named by ``SKINEDGE_FAULT`` before any test runs."""

from __future__ import annotations

import os


def pytest_configure(config) -> None:
    name = os.environ.get("SKINEDGE_FAULT")
    if not name:
        return
    from faults import ALL, Patch

    fault = ALL[name]
    if not isinstance(fault, Patch):
        raise RuntimeError(f"{name} is a source mutation, not a library patch")
    fault.apply()
