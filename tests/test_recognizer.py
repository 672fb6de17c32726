"""digitrec.recognizer: predict_many answers every input (a PredictionError in place of a bad
one), in parallel as serially; abstention leaves `digit` None with a best guess and a reason;
the MicroBatcher shares model batches across threads, correctly."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from digitrec.data.synth import canvas_png
from digitrec.errors import ImageDecodeError, InputError, NoDigitError
from digitrec.inference.batching import MicroBatcher
from digitrec.recognizer import PredictionError, Recognizer


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    return Recognizer.load()


def test_predict_many_answers_every_input_in_order(recognizer, mnist):
    images = mnist.test_images[:6]
    sources = [canvas_png(img, np.random.default_rng(i)) for i, img in enumerate(images)]
    blank = np.zeros((40, 40), np.uint8)
    mixed = [sources[0], b"not an image", sources[1], blank, sources[2], object()]
    results = recognizer.predict_many(mixed)
    assert len(results) == len(mixed)
    assert [r.ok for r in results] == [True, False, True, False, True, False]
    assert isinstance(results[1].error, ImageDecodeError)
    assert isinstance(results[3].error, NoDigitError) and "no digit" in results[3].message
    assert isinstance(results[5].error, InputError) and "unsupported input type" in \
        results[5].message
    assert [results[k].best_guess for k in (0, 2, 4)] == mnist.test_labels[:3].tolist()
    assert recognizer.predict_many([]) == []
    with pytest.raises(ImageDecodeError):
        recognizer.predict(b"not an image")


def test_predict_many_in_worker_processes_is_the_same(recognizer, mnist):
    sources = [canvas_png(img, np.random.default_rng(i))
               for i, img in enumerate(mnist.test_images[:40])]
    sources[7] = b"\x89PNG broken"
    serial = recognizer.predict_many(sources, batch_size=16, workers=1)
    parallel = recognizer.predict_many(sources, batch_size=16, workers=2)
    assert [r.ok for r in parallel] == [r.ok for r in serial] and not parallel[7].ok
    assert isinstance(parallel[7], PredictionError) and parallel[7].message == serial[7].message
    for a, b in zip(serial, parallel, strict=True):
        if a.ok:
            assert np.array_equal(a.image28, b.image28) and a.probabilities == b.probabilities


def test_abstention_leaves_digit_none_with_a_best_guess_and_a_reason(recognizer, mnist):
    strict = Recognizer(recognizer.ensemble, recognizer.cards, threshold=1.0,
                        backend=recognizer.backend)
    prediction = strict.classify(mnist.test_images[:1])[0]
    assert prediction.abstained and prediction.digit is None
    assert prediction.best_guess == mnist.test_labels[0] and prediction.reason
    assert prediction.to_json()["digit"] is None and prediction.to_json()["best_guess"] == 7
    sure = recognizer.classify(mnist.test_images[:1])[0]
    assert not sure.abstained and sure.digit == sure.best_guess and sure.reason is None


def _gated_model():
    """A classify that records each batch's size and holds every call until `release` is set;
    it reads each image's first pixel, and fails on an image of 13s."""
    release, calls = threading.Event(), []

    def classify(images: np.ndarray) -> list[int]:
        calls.append(len(images))
        release.wait(5)
        if (images == 13).any():
            raise ValueError("unlucky")
        return [int(v) for v in images[:, 0, 0]]

    return release, calls, classify


def _until_busy(calls: list) -> None:
    """Wait until the first call holds the model."""
    while not calls:
        time.sleep(0.001)


def test_waiting_calls_are_served_as_one_batch():
    release, calls, classify = _gated_model()
    batcher = MicroBatcher(classify)
    with ThreadPoolExecutor(6) as pool:
        first = pool.submit(batcher, np.full((1, 28, 28), 100, np.uint8))
        _until_busy(calls)
        rest = [pool.submit(batcher, np.full((n, 28, 28), n, np.uint8)) for n in (1, 2, 3)]
        time.sleep(0.05)  # let them queue behind the busy model
        release.set()
        assert first.result(5) == [100]
        assert [f.result(5) for f in rest] == [[1], [2, 2], [3, 3, 3]]
    assert calls == [1, 6], "the three waiting calls should have shared one batch"


def test_an_idle_model_runs_in_the_calling_thread():
    seen = []

    def classify(images: np.ndarray) -> list[int]:
        seen.append(threading.current_thread())
        return [0] * len(images)

    batcher = MicroBatcher(classify)
    assert batcher(np.zeros((1, 28, 28), np.uint8)) == [0]
    assert seen == [threading.current_thread()]


def test_batches_stop_at_max_batch():
    release, calls, classify = _gated_model()
    batcher = MicroBatcher(classify, max_batch=4)
    with ThreadPoolExecutor(6) as pool:
        first = pool.submit(batcher, np.full((1, 28, 28), 9, np.uint8))
        _until_busy(calls)
        rest = []
        for n in (3, 2, 1):  # queued in this order: 3 + 2 reach max_batch, 1 waits for the next
            rest.append(pool.submit(batcher, np.full((n, 28, 28), n, np.uint8)))
            time.sleep(0.02)
        release.set()
        assert first.result(5) == [9]
        assert [f.result(5) for f in rest] == [[3] * 3, [2] * 2, [1]]
    assert calls == [1, 5, 1]


def test_errors_reach_every_caller_and_the_batcher_lives_on():
    def classify(images: np.ndarray) -> list[int]:
        if (images == 13).any():
            raise ValueError("unlucky")
        return [0] * len(images)

    batcher = MicroBatcher(classify)
    with pytest.raises(ValueError, match="unlucky"):
        batcher(np.full((1, 28, 28), 13, np.uint8))
    assert batcher(np.zeros((2, 28, 28), np.uint8)) == [0, 0]


def test_batched_recognizer_agrees_with_the_plain_one(mnist):
    images, _ = mnist.split("test")
    sources = [canvas_png(img, np.random.default_rng(i)) for i, img in enumerate(images[:24])]
    plain, batched = Recognizer.load(), Recognizer.load(batching=True)
    expected = [p.probabilities for p in plain.predict_many(sources)]
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda s: batched.predict(s).probabilities, sources))
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_an_error_in_a_shared_batch_reaches_each_of_its_callers():
    release, calls, classify = _gated_model()
    batcher = MicroBatcher(classify)
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(batcher, np.zeros((1, 28, 28), np.uint8))
        _until_busy(calls)
        rest = [pool.submit(batcher, np.full((1, 28, 28), v, np.uint8)) for v in (13, 0)]
        time.sleep(0.05)
        release.set()
        assert first.result(5) == [0]
        for future in rest:
            with pytest.raises(ValueError, match="unlucky"):
                future.result(5)
    assert batcher(np.zeros((1, 28, 28), np.uint8)) == [0]


def _drawn_png(strokes: list[list[tuple[float, float]]], size: tuple[int, int]) -> bytes:
    """Round-capped black strokes (fractions of the pad) on a white pad, as the page draws."""
    import io

    from PIL import Image, ImageDraw
    pad = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(pad)
    for stroke in strokes:
        points = [(x * size[0], y * size[1]) for x, y in stroke]
        draw.line(points, fill="black", width=23, joint="curve")
        for x, y in points:
            draw.ellipse([x - 11.5, y - 11.5, x + 11.5, y + 11.5], fill="black")
    out = io.BytesIO()
    pad.save(out, "PNG")
    return out.getvalue()


@pytest.mark.parametrize("size", [(560, 280), (280, 280)], ids=["number-pad", "digit-pad"])
@pytest.mark.parametrize("strokes", [
    [[(0.40, 0.22), (0.55, 0.21), (0.62, 0.22), (0.57, 0.42), (0.53, 0.62), (0.49, 0.82)]],
    [[(0.46, 0.28), (0.52, 0.15), (0.51, 0.5), (0.50, 0.85)]],
    [[(0.48, 0.15), (0.44, 0.6), (0.58, 0.6)], [(0.55, 0.3), (0.55, 0.86)]],
], ids=["seven", "one", "four"])
def test_one_digit_in_number_mode_reads_as_in_digit_mode(recognizer, strokes, size):
    image = _drawn_png(strokes, size)
    digit = recognizer.predict(image)
    reading = recognizer.read_number(image)
    assert len(reading.digits) == 1
    (alone,) = reading.digits
    # the same 28x28 image, so the same digit, probabilities and abstention
    np.testing.assert_array_equal(alone.image28, digit.image28)
    assert (alone.best_guess, alone.abstained) == (digit.best_guess, digit.abstained)
    np.testing.assert_allclose(alone.probabilities, digit.probabilities, rtol=0, atol=1e-6)
    x0, y0, x1, y1 = reading.boxes[0]  # the box still frames the ink
    assert 0 <= x0 < x1 <= size[0] and 0 <= y0 < y1 <= size[1]
