"""digitrec.evaluation.labelled: the numbers by hand, then the bundled ensemble on a folder of
real MNIST test digits saved as files (with an unreadable one and a number) and on hand-made
pen strokes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from digitrec.errors import DataError, ImageDecodeError
from digitrec.evaluation.labelled import (
    assess,
    coverage_accuracy,
    evaluate_folder,
    evaluate_strokes,
    format_text,
    write_report,
)
from digitrec.recognizer import Prediction, PredictionError, Recognizer

ONE = [[(0.40, 0.35), (0.52, 0.22)], [(0.52, 0.22), (0.52, 0.50), (0.52, 0.78)]]
ZERO = [[(0.5, 0.2), (0.35, 0.3), (0.32, 0.5), (0.35, 0.7), (0.5, 0.8), (0.65, 0.7),
         (0.68, 0.5), (0.65, 0.3), (0.5, 0.2)]]


def _prediction(guess: int, confidence: float, abstained: bool = False) -> Prediction:
    probabilities = [(1 - confidence) / 9] * 10
    probabilities[guess] = confidence
    return Prediction(digit=None if abstained else guess, best_guess=guess,
                      confidence=confidence, probabilities=probabilities, models={},
                      abstained=abstained, image28=np.full((28, 28), guess, np.uint8),
                      reason="unsure" if abstained else None)


def test_the_numbers_by_hand():
    # labels   3    3    3    5    5    7    7    7    ?    8
    # guesses  3    3    5    5    3    7    7    1  error   8
    results = [_prediction(3, 0.99), _prediction(3, 0.95), _prediction(5, 0.60, True),
               _prediction(5, 0.97), _prediction(3, 0.90), _prediction(7, 0.98),
               _prediction(7, 0.50, True), _prediction(1, 0.96),
               PredictionError(ImageDecodeError("not a readable image")), _prediction(8, 0.94)]
    labels = [3, 3, 3, 5, 5, 7, 7, 7, 4, 8]
    names = [f"f{k}" for k in range(10)]
    result = assess(results, labels, names, "by hand", groups=list("aabbbccc" "dd"))
    s = result.summary()
    assert s["n"] == 9 and result.unreadable == [("f8", "not a readable image")]
    assert s["best_guess_accuracy"] == pytest.approx(6 / 9)
    assert s["abstention_rate"] == pytest.approx(2 / 9)
    assert s["accuracy_when_answered"] == pytest.approx(5 / 7)  # 5→3 and 7→1 answered wrong
    # surest first: .99 .98 .97 .96(wrong) .95 .94 .90(wrong) .60(wrong) .50
    assert s["accuracy_at_90_coverage"] == pytest.approx(5 / 8)  # round(0.9 × 9) = 8
    assert s["accuracy_at_95_coverage"] == pytest.approx(6 / 9)  # round(0.95 × 9) = 9
    per_class = result.per_class()
    assert per_class[3]["best_guess_accuracy"] == pytest.approx(2 / 3)
    assert per_class[3]["precision"] == pytest.approx(2 / 3)  # guessed 3 three times, 2 right
    assert per_class[0]["n"] == 0 and per_class[0]["best_guess_accuracy"] is None
    assert result.worst_class() == (5, 0.5)
    assert result.confusion().sum() == 9 and result.confusion()[7, 1] == 1
    assert [(c["true"], c["predicted"], c["count"]) for c in result.confusions()] == [
        (3, 5, 1), (5, 3, 1), (7, 1, 1)]
    assert result.per_group()["c"]["best_guess_accuracy"] == pytest.approx(2 / 3)
    out = json.loads(json.dumps(result.to_json()))
    assert out["worst_class"] == {"digit": 5, "accuracy": 0.5}
    assert out["confusions"][2]["examples"] == ["f7"]
    text = format_text(result)
    assert "66.67%  (6 of 9)" in text and "7 → 1" in text and "f8: not a readable image" in text


def test_coverage_keeps_the_surest():
    right = np.array([False, True, True, True])
    confidence = np.array([0.99, 0.5, 0.8, 0.7])
    assert coverage_accuracy(right, confidence, 0.5) == 0.5  # the .99 (wrong) and the .8
    assert coverage_accuracy(right, confidence, 1.0) == 0.75
    assert coverage_accuracy(right[:0], confidence[:0], 0.9) is None


@pytest.fixture(scope="module")
def recognizer():
    return Recognizer.load()


@pytest.fixture(scope="module")
def folder(mnist, tmp_path_factory):
    """40 MNIST test digits as dark-on-white files in subfolders and named files, one file
    that is not an image, and one labelled with a number."""
    root = tmp_path_factory.mktemp("labelled")
    images, labels = mnist.split("test")
    for k in range(40):
        pixels = 255 - images[k]
        if k % 2:
            (root / str(labels[k])).mkdir(exist_ok=True)
            Image.fromarray(pixels).save(root / str(labels[k]) / f"{k}.png")
        else:
            Image.fromarray(pixels).convert("RGB").save(root / f"d{k}_{labels[k]}.jpg",
                                                         quality=95)
    (root / "broken_5.png").write_bytes(b"not an image at all")
    Image.fromarray(255 - images[0]).save(root / "pair_42.png")
    return root, labels[:40]


def test_a_folder_of_real_digits(recognizer, folder, tmp_path):
    root, labels = folder
    result = evaluate_folder(recognizer, root, progress=False)
    assert result.summary()["n"] == 40 and sorted(result.labels) == sorted(labels)
    assert result.unreadable[0][0] == "broken_5.png" and len(result.unreadable) == 1
    assert result.skipped == [("pair_42.png", "42")]
    # the numbers agree with reading each file on its own
    one_by_one = [recognizer.predict(root / name) for name in result.names]
    guesses = np.array([p.best_guess for p in one_by_one])
    assert np.array_equal(guesses, result.guesses)
    s = result.summary()
    assert s["best_guess_accuracy"] == pytest.approx(float((guesses == result.labels).mean()))
    assert s["best_guess_accuracy"] >= 0.95  # MNIST test digits: the models know them
    assert s["abstention_rate"] == pytest.approx(np.mean([p.abstained for p in one_by_one]))
    paths = write_report(result, tmp_path / "report")
    assert [p.name for p in paths] == ["confusion_matrix.png", "confusions.png"]
    assert all(Image.open(p).size[0] > 300 for p in paths)


def test_limit_and_a_folder_of_numbers_only(recognizer, folder, tmp_path):
    root, _ = folder
    assert evaluate_folder(recognizer, root, limit=5, progress=False).summary()["n"] == 5
    Image.new("L", (40, 40), 255).save(tmp_path / "a_12.png")
    with pytest.raises(DataError, match="no image labelled with a single digit"):
        evaluate_folder(recognizer, tmp_path, progress=False)


def test_strokes_drawn_as_the_canvas_and_scans(recognizer, tmp_path):
    path = tmp_path / "digits.jsonl"
    lines = [{"writer": w, "label": label, "instance": 0, "strokes": strokes}
             for w in ("001", "002") for label, strokes in ((1, ONE), (0, ZERO))]
    path.write_text("\n".join(json.dumps(line) for line in lines))
    for style in ("canvas", "bold", "thin"):
        result = evaluate_strokes(recognizer, path, style=style, progress=False)
        assert result.summary()["n"] == 4 and result.groups == ["001", "001", "002", "002"]
        assert set(result.per_group()) == {"001", "002"}
        assert style in result.source or style == "canvas"
        assert result.summary()["best_guess_accuracy"] == 1.0, (style, result.guesses)
    assert "pen 8 px" in evaluate_strokes(recognizer, path, pen=8, progress=False).source
