"""Micro-batching for servers: concurrent calls from several threads share one model batch."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np


@dataclass
class _Lead:
    """Handed to a waiting caller: it now runs the model, for these calls (its own: no future)."""

    jobs: list[tuple[np.ndarray, Future | None]]


class MicroBatcher:
    """Runs `classify` for many threads at once. A call that finds the model idle runs it at
    once in its own thread; calls that arrive while it is busy wait, and the first of them is
    then handed all the waiting calls to run as one batch. For servers, where a batch costs less
    per image than single images, and where handing work to another thread costs time: an
    uncontended call hands nothing over, a waiting one is woken once."""

    def __init__(self, classify: Callable[[np.ndarray], list], max_batch: int = 64):
        self.classify = classify
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._busy = False
        self._waiting: list[tuple[np.ndarray, Future]] = []

    def __call__(self, images28: np.ndarray) -> list:
        """`classify(images28)`, possibly batched with other threads' calls."""
        with self._lock:
            job = (images28, Future()) if self._busy else None
            if job:
                self._waiting.append(job)
            self._busy = True
        if job is None:
            return self._lead([(images28, None)])
        outcome = job[1].result()
        return self._lead(outcome.jobs) if isinstance(outcome, _Lead) else outcome

    def _lead(self, jobs: list[tuple[np.ndarray, Future | None]]) -> list:
        """Run the model for `jobs`, pass the model on, answer every job; returns the result
        of the job without a future (the calling thread's own)."""
        try:
            results, error = self.classify(np.concatenate([images for images, _ in jobs])), None
        except BaseException as exc:  # every caller gets the error, the batcher lives on
            results, error = None, exc
        self._pass_on()
        own, start = None, 0
        for images, future in jobs:
            part = None if error else results[start:start + len(images)]
            start += len(images)
            if future is None:
                own = part
            elif error:
                future.set_exception(error)
            else:
                future.set_result(part)
        if error:
            raise error
        return own

    def _pass_on(self) -> None:
        """Hand the waiting calls (up to max_batch images) to the first of them, or mark the
        model idle."""
        with self._lock:
            if not self._waiting:
                self._busy = False
                return
            sizes = np.cumsum([len(images) for images, _ in self._waiting])
            taken = int(np.searchsorted(sizes, self.max_batch)) + 1  # the call reaching max_batch
            jobs, self._waiting = self._waiting[:taken], self._waiting[taken:]
        (first_images, first), rest = jobs[0], jobs[1:]
        first.set_result(_Lead([(first_images, None), *rest]))
