"""Issue 16: read_number made fast without changing an answer: the cut paths' dynamic programme
as whole-row numpy operations, and one run of the models per number."""

from __future__ import annotations

import numpy as np
import pytest

from digitrec.data.synth import compose_number
from digitrec.errors import NotANumberError
from digitrec.preprocess.segment import _min_paths, segment_digits

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def _reference_paths(crop: np.ndarray, windows: list[tuple[int, int]]
                     ) -> tuple[np.ndarray, np.ndarray]:
    """The least-ink paths, one window and one cell at a time: each row's column within one of
    the one above, ties going to the left, then straight down; the leftmost end among ties."""
    h = crop.shape[0]
    paths, inks = [], []
    for lo, hi in windows:
        total = {c: float(crop[0, c]) for c in range(lo, hi)}
        came = []
        for r in range(1, h):
            step, new = {}, {}
            for c in range(lo, hi):
                options = [(total.get(c + d, np.inf), d) for d in (-1, 0, 1)]
                best = min(options, key=lambda o: o[0])  # the first of equal ones
                step[c], new[c] = best[1], float(crop[r, c]) + best[0]
            came.append(step)
            total = new
        end = min(range(lo, hi), key=lambda c: total[c])
        path = [end]
        for step in reversed(came):
            path.append(path[-1] + step[path[-1]])
        paths.append(path[::-1])
        inks.append(total[end])
    return np.array(paths), np.array(inks)


def test_min_paths_are_the_plain_dynamic_programme():
    rng = np.random.default_rng(16)
    for case in range(60):
        h, w = int(rng.integers(1, 25)), int(rng.integers(2, 40))
        crop = rng.random((h, w)).astype(np.float32) * (rng.random((h, w)) < 0.4)
        if case % 2:
            crop = np.round(crop * 3) / 3  # many ties
        windows = []
        for _ in range(int(rng.integers(1, 6))):
            lo = int(rng.integers(0, w - 1))
            windows.append((lo, int(rng.integers(lo + 1, w + 1))))
        paths, inks = _min_paths(crop, windows)
        expected_paths, expected_inks = _reference_paths(crop, windows)
        assert np.array_equal(paths, expected_paths), case
        assert np.array_equal(inks, expected_inks), case


def test_a_number_is_read_with_one_run_of_the_models(recognizer, mnist):
    images, _ = mnist.split("test")
    rng = np.random.default_rng(5)
    calls = []
    run = recognizer._run

    def counted(images28: np.ndarray) -> list:
        calls.append(len(images28))
        return run(images28)

    recognizer._run = counted
    reader, recognizer.reader = recognizer.reader, None  # the segmenter's own path
    try:
        for _ in range(5):
            page = compose_number(list(images[rng.choice(len(images), 6, replace=False)]), rng)
            calls.clear()
            reading = recognizer.read_number(page)
            assert len(calls) == 1, "the digits chosen are read in the scoring run"
            assert calls[0] >= len(reading.digits)
            again = recognizer.classify(np.stack([d.image28 for d in reading.digits]))
            assert [d.best_guess for d in again] == [d.best_guess for d in reading.digits]
            assert np.allclose([d.confidence for d in again],
                               [d.confidence for d in reading.digits], atol=1e-6)
        recognizer.reader = reader  # with the sequence reader: its quick check, then at most
        for _ in range(5):          # the segmenter's one run
            page = compose_number(list(images[rng.choice(len(images), 6, replace=False)]), rng)
            calls.clear()
            recognizer.read_number(page)
            assert 1 <= len(calls) <= 2
    finally:
        recognizer._run = run
        recognizer.reader = reader


def test_a_page_of_marks_is_refused_without_running_the_models():
    from test_segment import _dots

    calls = []

    def score(images28: np.ndarray) -> np.ndarray:
        calls.append(len(images28))
        return np.full(len(images28), 0.9)

    with pytest.raises(NotANumberError, match="too many for one number"):
        segment_digits(_dots(400), score)
    assert calls == []
