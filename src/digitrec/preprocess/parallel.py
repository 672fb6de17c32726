"""Preprocessing across cores: decoding and normalising images is Python and numpy work on
small arrays that holds the GIL most of the time, so it is spread over worker processes
(forked, so that nothing is re-imported), a chunk of images per task, in input order."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

from digitrec.config import cpu_cores

T = TypeVar("T")
R = TypeVar("R")

MIN_IMAGES = 512  # below this, starting worker processes costs more than it saves


def worker_count(workers: int | None, images: int) -> int:
    """Worker processes for `images` images: `workers` when given, else one per core when
    there are at least MIN_IMAGES (1: preprocess in this process)."""
    if workers is not None:
        return max(1, workers)
    return cpu_cores() if images >= MIN_IMAGES else 1


def parallel_map(function: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[R]:
    """`map(function, items)` in `workers` forked processes, in order, a few items ahead."""
    items = list(items)
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        yield from pool.map(function, items)
