"""The batcher behind ``Classifier.iter_classify``: a step (decoding) run ahead of the caller on a few threads,
handed back in input order, so that decoding the next photos overlaps the interpreter's invoke."""

from __future__ import annotations

import collections
import functools
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


def prefetched(step: Callable[[Any], T], items: Iterable[Any], *, workers: int = 2,
               depth: int | None = None) -> Iterator[Callable[[], T]]:
    """One callable per item, in input order, that returns ``step(item)`` or raises what it raised; up to
    ``depth`` items (default: twice ``workers``) are computed ahead on ``workers`` threads.

    A list or tuple of at most one item has nothing to overlap: its step runs in the caller's thread when
    called, and no pool is started (nor its ~9 ms of imports on a cold start).

    Raises:
        ValueError: ``workers`` or ``depth`` below 1.
    """
    depth = 2 * workers if depth is None else depth
    if workers < 1 or depth < 1:
        raise ValueError(f"workers and prefetch depth must be >= 1, got {workers} and {depth}")
    if isinstance(items, (list, tuple)) and len(items) <= 1:
        yield from (functools.partial(step, item) for item in items)
        return
    from concurrent.futures import Future, ThreadPoolExecutor

    pending: collections.deque[Future] = collections.deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="skinedge-decode") as pool:
        it = iter(items)
        exhausted = False
        while True:
            while not exhausted and len(pending) < depth:
                try:
                    item = next(it)
                except StopIteration:
                    exhausted = True
                    break
                pending.append(pool.submit(step, item))
            if not pending:
                return
            yield pending.popleft().result


__all__ = ["prefetched"]
