"""Preprocessing across cores: decoding and normalising images is Python and numpy work on
small arrays that holds the GIL most of the time, so it is spread over worker processes
(forked, so that nothing is re-imported), a chunk of images per task, in input order.

numpy's BLAS (OpenBLAS) would start a thread per core for the small matrix products of
resampling, and its idle threads spin: a core's worth of CPU for no gain (measured: 4.5 ms of
CPU per canvas PNG with them, 2.3 ms without, the same wall time). Bulk preprocessing
(`Recognizer.predict_many`) therefore runs with one BLAS thread (`one_blas_thread`, once per
chunk), and worker processes are limited to one for good. A single `preprocess` call is left
alone: in the web app's workers, limiting it per call cost 3–8% of throughput (measured)."""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

from threadpoolctl import ThreadpoolController

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


@functools.cache
def _controller() -> ThreadpoolController:
    """The native thread pools of this process (found once: a few ms)."""
    return ThreadpoolController()


def one_blas_thread() -> contextlib.AbstractContextManager:
    """A context in which numpy's BLAS runs on the calling thread alone (about 16 µs)."""
    return _controller().limit(limits=1, user_api="blas")


def _worker_start() -> None:
    """In each worker process: one BLAS thread for good (the workers share the cores)."""
    _controller().limit(limits=1, user_api="blas")


def parallel_map(function: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[R]:
    """`map(function, items)` in `workers` forked processes, in order, a few items ahead."""
    items = list(items)
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_start) as pool:
        yield from pool.map(function, items)
