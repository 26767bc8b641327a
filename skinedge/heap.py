"""Keep a few megabytes of freed heap for the next photo instead of handing them back to the OS.

Each photo allocates and frees about 1-2 MB of short-lived buffers (the decoded and resized images, the quality
measures' arrays). With glibc's defaults the heap shrinks after every photo and grows again for the next, so each
photo's buffers arrive as fresh pages the kernel must zero: 500-660 page faults and 1.0-1.25 ms of system time per
photo; without them a photo takes 1.10-1.24x less CPU (docs/benchmarks.md, "Page faults per photo"). A top pad of
a few MB keeps those pages mapped; what it can cost is that much memory more held between photos. The classifier
asks for it once its first photo is done, so that a process that classifies one photo keeps its smaller peak
(asked for at load, it cost ``skinedge predict one.jpg`` 0.9 MiB more).
"""

from __future__ import annotations

import os
import sys

#: Bytes of free heap kept mapped above the highest block in use (glibc's ``M_TOP_PAD``; its default is 128 KiB).
HEAP_PAD_BYTES = 8 * 1024 * 1024

_M_TOP_PAD = -2  # glibc's malloc.h
_applied: bool | None = None


def keep_heap_pad(pad_bytes: int = HEAP_PAD_BYTES) -> bool:
    """Ask glibc's malloc to keep ``pad_bytes`` of freed memory at the top of the heap (once per process).

    Returns whether the setting is in effect: False where the C library is not glibc (musl, macOS, Windows) or
    where the user already chose a pad with the ``MALLOC_TOP_PAD_`` environment variable (theirs is kept).
    """
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if not sys.platform.startswith("linux") or "MALLOC_TOP_PAD_" in os.environ:
        return False
    try:
        glibc = os.confstr("CS_GNU_LIBC_VERSION")
    except (ValueError, OSError):
        glibc = None
    if not glibc:  # musl has a mallopt too, but it does nothing
        return False
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    _applied = bool(mallopt(_M_TOP_PAD, int(pad_bytes)))
    return _applied


__all__ = ["HEAP_PAD_BYTES", "keep_heap_pad"]
