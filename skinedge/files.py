"""Finding image files in folders: the one scan behind ``skinedge predict``/``evaluate`` and the training
tools' dataset lists, so a folder means the same photos to all of them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from skinedge.errors import ImageError
from skinedge.preprocess import IMAGE_SUFFIXES


def image_files(folder: str | os.PathLike) -> list[Path]:
    """Every file under ``folder``, recursively, whose suffix is an image suffix (:data:`IMAGE_SUFFIXES`,
    any case), sorted by path (component by component, so a sub-folder's photos stay together).

    Regular files and links to them count; folders named like images do not. Whether a file really is
    an image is for the decoder to say: a damaged ``.jpg`` is listed here and reported when classified.
    """
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def expand_inputs(paths: tuple[str, ...]) -> Iterator[str | ImageError]:
    """What ``skinedge predict PATHS`` classifies: files as given; folders recursively (image suffixes only,
    sorted, :func:`image_files`); glob patterns expanded.

    A path that does not exist and matches nothing is yielded as an :class:`ImageError`.
    """
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = [str(f) for f in image_files(p)]
            if not found:
                yield ImageError(raw, "folder contains no images")
            yield from found
        elif p.exists() or p.is_symlink():
            yield raw
        elif any(c in raw for c in "*?["):  # glob.has_magic, without importing glob for plain paths (~1.5 ms)
            import glob

            matches = sorted(glob.glob(raw, recursive=True))
            if not matches:
                yield ImageError(raw, "pattern matches no files")
            for m in matches:
                if Path(m).is_dir():
                    yield from expand_inputs((m,))
                else:
                    yield m
        else:
            yield ImageError(raw, "no such file or folder")
