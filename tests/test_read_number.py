"""Recognizer.read_number with two readers: the segmenter (cut, then the ensemble on each digit)
and the sequence reader (the whole line). They agree → the number; they disagree → the surer
reading as the best guess, and the number uncertain; one digit → read as in digit mode."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from digitrec.data.synth import compose_number
from digitrec.inference.reader import LineReading
from digitrec.models.sequence import ReadDigit
from digitrec.preprocess.ink import ink_and_scale
from digitrec.preprocess.line import line_image

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


class _Says:
    """A sequence reader that reads `text` in any line, each digit `sure`, spread evenly."""

    threshold = 0.9

    def __init__(self, text: str, sure: float):
        self.text, self.sure = text, sure

    def read(self, ink: np.ndarray) -> LineReading:
        line = line_image(ink)
        step = line.pixels.shape[1] / max(len(self.text), 1)
        digits = [ReadDigit(digit=int(c), confidence=self.sure,
                            probabilities=[self.sure if k == int(c) else (1 - self.sure) / 9
                                           for k in range(10)],
                            columns=(int(i * step), int((i + 1) * step)))
                  for i, c in enumerate(self.text)]
        return LineReading(digits=digits, line=line)


@pytest.fixture(scope="module")
def number(mnist) -> tuple[np.ndarray, str]:
    """A clearly written 3-digit number the segmenter reads right."""
    images, labels = mnist.split("test")
    rng = np.random.default_rng(11)
    return compose_number([images[0], images[1], images[2]], rng), "".join(map(str, labels[:3]))


def _with_reader(recognizer, reader):
    twin = copy.copy(recognizer)
    twin.reader = reader
    return twin


def test_readers_that_agree_answer_the_number(recognizer, number):
    page, truth = number
    alone = _with_reader(recognizer, None).read_number(page)
    assert alone.reader == "segmenter" and alone.best_guess == truth
    both = _with_reader(recognizer, _Says(truth, 0.5)).read_number(page)
    assert both.reader == "both" and both.best_guess == truth
    assert both.abstained == alone.abstained and both.boxes == alone.boxes


def test_a_surer_sequence_reader_gives_the_best_guess_but_the_number_is_uncertain(
        recognizer, number):
    page, truth = number
    other = "".join(str((int(c) + 1) % 10) for c in truth) + "4"
    reading = _with_reader(recognizer, _Says(other, 0.98)).read_number(page)
    assert reading.reader == "sequence" and reading.best_guess == other
    assert reading.abstained and reading.number is None
    assert reading.reason.startswith(f"the readers disagree: the segmenter read {truth}")
    assert len(reading.boxes) == len(reading.digits) == 4
    height, width = page.shape
    for d, (x0, y0, x1, y1) in zip(reading.digits, reading.boxes, strict=True):
        assert d.models.keys() == {"sequence"} and d.image28.shape == (28, 28)
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
    assert [b[0] for b in reading.boxes] == sorted(b[0] for b in reading.boxes)


def test_a_less_sure_sequence_reader_leaves_the_segmenters_digits_but_doubts(
        recognizer, number):
    page, truth = number
    reading = _with_reader(recognizer, _Says("12", 0.3)).read_number(page)
    assert reading.reader == "segmenter" and reading.best_guess == truth
    assert reading.abstained and "sequence reader 12" in reading.reason


def test_one_digit_is_read_as_in_digit_mode_whatever_the_sequence_reader_says(
        recognizer, mnist):
    page = compose_number([mnist.test_images[0]], np.random.default_rng(2))
    digit = recognizer.predict(page)
    reading = _with_reader(recognizer, _Says("1", 0.99999)).read_number(page)
    assert reading.reader == "segmenter" and reading.doubt is None
    assert reading.best_guess == str(digit.best_guess)


def test_sure_readers_that_agree_skip_the_segmenter(recognizer, number, monkeypatch):
    page, truth = number
    twin = _with_reader(recognizer, _Says(truth, 0.999))
    monkeypatch.setattr(twin, "_segmented", lambda *_: pytest.fail("the segmenter ran"))
    reading = twin.read_number(page)
    assert reading.reader == "both" and reading.number == truth
    members = set(recognizer.ensemble.members)
    assert all(d.models.keys() == members for d in reading.digits)  # the ensemble's readings
    assert [b[0] for b in reading.boxes] == sorted(b[0] for b in reading.boxes)


def test_a_sure_sequence_reader_the_ensemble_contradicts_is_checked_by_the_segmenter(
        recognizer, number):
    page, truth = number
    other = truth[::-1] if truth != truth[::-1] else truth[1:] + truth[0]
    reading = _with_reader(recognizer, _Says(other, 0.999)).read_number(page)
    assert reading.abstained and reading.reason.startswith("the readers disagree")


def test_a_sequence_reader_sure_of_every_digit_answers_a_number_the_segmenter_cut_otherwise(
        recognizer, number):
    page, truth = number
    longer = truth + "4"  # the segmenter read fewer digits: its cut is in question
    reading = _with_reader(recognizer, _Says(longer, 0.999)).read_number(page)
    assert reading.reader == "sequence" and reading.number == longer
    same_length = truth[::-1] if truth != truth[::-1] else truth[1:] + truth[0]
    twin = _with_reader(recognizer, _Says(same_length, 0.999))
    twin.quick = False  # past the ensemble's check of the quick way
    segmented = twin._segmented(page, *ink_and_scale(page))
    assert not segmented.abstained and segmented.confidence < 0.999 ** len(truth)
    reading = twin.read_number(page)  # the surer reading is the best guess ...
    assert reading.reader == "sequence" and reading.best_guess == same_length
    assert reading.abstained  # ... but a sure segmenter of as many digits leaves it uncertain


def test_a_disagreeing_sequence_reader_that_is_not_the_surer_leaves_the_segmenters_guess(
        recognizer, number):
    page, truth = number
    other = truth[::-1] if truth != truth[::-1] else truth[1:] + truth[0]
    reading = _with_reader(recognizer, _Says(other, 0.5)).read_number(page)
    assert reading.abstained and reading.best_guess == truth and reading.reader == "segmenter"
