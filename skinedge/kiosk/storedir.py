"""Where the board's model store lives, and whether one is set up: all that loading a model needs to know of the
store, kept apart from :mod:`skinedge.kiosk.modelstore` (signatures, installs) so that a command's start-up does
not import what only installing a model uses."""

from __future__ import annotations

import os
from pathlib import Path

#: Environment variable naming the store folder.
STORE_ENV = "SKINEDGE_MODEL_STORE"
TRUSTED_KEY = "trusted.pub"
STATE = "state.json"


def default_store_dir() -> Path:
    """The store folder: ``$SKINEDGE_MODEL_STORE``, else ``$XDG_DATA_HOME/skinedge/models`` (``~/.local/share``)."""
    if os.environ.get(STORE_ENV):
        return Path(os.environ[STORE_ENV])
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "skinedge" / "models"


def store_is_set_up(store: str | os.PathLike | None = None) -> bool:
    """True when ``store`` (default: :func:`default_store_dir`) has a state file, i.e. a model was installed."""
    root = Path(store) if store is not None else default_store_dir()
    return (root / STATE).is_file()
