"""The training tools' tests (``skinedge-tools``, TensorFlow). In a runtime-only environment (``pip install -e
".[test]"``, no ``pip install -e ./tools``) every module here is reported as skipped, with the reason, before any
of it is imported (they import TensorFlow, h5py, scikit-learn at their top). Shared fixtures: ../../conftest.py."""

from __future__ import annotations

import importlib.util

import pytest


def _blocker() -> str | None:
    """Why the tools' tests cannot run here, or None; found without importing TensorFlow."""
    missing = [name for name in ("skinedge_tools", "tensorflow") if importlib.util.find_spec(name) is None]
    if missing:
        return f"the training tools' tests need {' and '.join(missing)} (pip install -e ./tools)"
    return None


BLOCKER = _blocker()


class _SkippedModule(pytest.Module):
    """A test module that is not imported: collecting it reports one skip with :data:`BLOCKER`."""

    def _getobj(self):
        pytest.skip(BLOCKER, allow_module_level=True)


def pytest_pycollect_makemodule(module_path, parent):
    if BLOCKER is not None:
        return _SkippedModule.from_parent(parent, path=module_path)
    return None
