"""Finding image files in folders: the one scan behind ``skinedge predict``/``evaluate`` and the training
tools' dataset lists, so a folder means the same photos to all of them."""

from __future__ import annotations

import os
from pathlib import Path

from skinedge.preprocess import IMAGE_SUFFIXES


def image_files(folder: str | os.PathLike) -> list[Path]:
    """Every file under ``folder``, recursively, whose suffix is an image suffix (:data:`IMAGE_SUFFIXES`,
    any case), sorted by path (component by component, so a sub-folder's photos stay together).

    Regular files and links to them count; folders named like images do not. Whether a file really is
    an image is for the decoder to say: a damaged ``.jpg`` is listed here and reported when classified.
    """
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
