"""`digitrec evaluate --folder DIR --number`: whole numbers composed of MNIST test digits, read
with read_number; the metrics agree with read_number's own readings, unreadable images are
listed (exit 3), the gallery is written, and bad usage or labels are exit 2."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from digitrec.cli import main
from digitrec.data.synth import compose_number
from digitrec.evaluation.numbers import evaluate_numbers
from digitrec.recognizer import Recognizer

LENGTHS = (2, 3, 4, 5, 2, 3, 4, 5)


def _levenshtein(a: str, b: str) -> int:
    """Edit distance, the textbook full table (independent of the package's)."""
    table = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            table[i][j] = min(table[i - 1][j] + 1, table[i][j - 1] + 1,
                              table[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
    return table[-1][-1]


@pytest.fixture(scope="module")
def folder(mnist, tmp_path_factory):
    """8 numbers of 2-5 MNIST test digits named *_<number>.png (the first with a leading zero),
    one of them again under a wrong label, a corrupt file and a blank image."""
    root = tmp_path_factory.mktemp("numbers")
    images, labels = mnist.split("test")
    rng = np.random.default_rng(4)
    zero = int(np.flatnonzero(labels == 0)[0])
    start = 20
    for k, n in enumerate(LENGTHS):
        picks = list(range(start, start + n))
        start += n
        if k == 0:
            picks[0] = zero
        truth = "".join(str(int(labels[i])) for i in picks)
        page = compose_number([images[i] for i in picks], rng)
        Image.fromarray(page).save(root / f"n{k}_{truth}.png")
        if k == 2:  # the same image, labelled with the digits reversed: a sure misreading
            Image.fromarray(page).save(root / f"mislabelled_{truth[::-1]}.png")
    (root / "corrupt_123.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    Image.new("L", (160, 64), 255).save(root / "blank_45.png")
    return root


@pytest.fixture(scope="module")
def readings(folder):
    """What read_number itself reads in each readable file: {name: (label, NumberReading)}."""
    recognizer = Recognizer.load()
    return {p.name: (p.stem.rsplit("_", 1)[1], recognizer.read_number(p))
            for p in sorted(folder.glob("*.png")) if not p.name.startswith(("corrupt", "blank"))}


def test_number_json_agrees_with_read_number(folder, readings, tmp_path, capsys):
    assert main(["evaluate", "--folder", str(folder), "--number", "--json", "--report",
                 str(tmp_path / "r")]) == 3
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    n = len(readings)
    assert out["mode"] == "number" and out["source"] == f"folder {folder}"
    assert out["n"] == n == 9 and out["unreadable_count"] == 2
    assert {u["file"] for u in out["unreadable"]} == {"corrupt_123.png", "blank_45.png"}
    assert all(u["error"] for u in out["unreadable"])
    assert "2 image(s) could not be read" in captured.err

    exact = [r.best_guess == label for label, r in readings.values()]
    per_digit = [max(0.0, 1 - _levenshtein(label, r.best_guess) / len(label))
                 for label, r in readings.values()]
    answered = [e for e, (_, r) in zip(exact, readings.values(), strict=True) if r.number]
    assert out["exact_match"] == pytest.approx(np.mean(exact))
    assert out["per_digit_accuracy"] == pytest.approx(np.mean(per_digit))
    assert out["right_length_rate"] == pytest.approx(
        np.mean([len(r.best_guess) == len(label) for label, r in readings.values()]))
    assert out["abstention_rate"] == pytest.approx(
        np.mean([r.number is None for _, r in readings.values()]))
    assert out["exact_match_when_answered"] == (pytest.approx(np.mean(answered)) if answered
                                                else None)
    order = sorted(range(n), key=lambda k: -list(readings.values())[k][1].confidence)
    top = order[:round(0.9 * n)]
    assert out["exact_match_at_90_coverage"] == pytest.approx(np.mean([exact[k] for k in top]))
    assert 0 <= out["exact_match_at_95_coverage"] <= 1

    assert next(label for name, (label, _) in readings.items()
                if name.startswith("n0_")).startswith("0")  # a leading zero, kept
    assert set(out["per_length"]) == {"2", "3", "4", "5"}
    assert sum(v["n"] for v in out["per_length"].values()) == n
    assert out["per_length"]["2"]["n"] == 2 and out["per_length"]["4"]["n"] == 3
    wrong = {name for name, (label, r) in readings.items() if r.best_guess != label}
    assert "mislabelled_" in " ".join(wrong)
    assert {c["file"] for c in out["worst_cases"]} == wrong
    case = next(c for c in out["worst_cases"] if c["file"].startswith("mislabelled"))
    assert case["best_guess"] == readings[case["file"]][1].best_guess
    assert case["label"] != case["best_guess"] and not case["per_digit_accuracy"] == 1
    assert (tmp_path / "r" / "number_errors.png").stat().st_size > 1000
    assert "number_errors.png" in captured.err


def test_number_text_report(folder, capsys):
    assert main(["evaluate", "--folder", str(folder), "--number"]) == 3
    out = capsys.readouterr().out
    assert "9 numbers read" in out and "exact match (best guess)" in out
    assert "per-digit accuracy" in out and "per length" in out and "5 digits" in out
    assert "worst cases" in out and "mislabelled_" in out
    assert "corrupt_123.png: not a readable image" in out and "blank_45.png: " in out


def test_labels_csv_keeps_leading_zeros_and_shows_progress(folder, tmp_path, capsys):
    name = next(p.name for p in folder.glob("n0_*.png"))
    (tmp_path / "a.png").write_bytes((folder / name).read_bytes())
    (tmp_path / "labels.csv").write_text(f"file,label\na.png,{name[3:-4]}\n")
    result = evaluate_numbers(Recognizer.load(), tmp_path, progress=True)
    assert result.labels == [name[3:-4]] and result.labels[0].startswith("0")
    assert "reading numbers" in capsys.readouterr().err


def test_a_label_that_is_not_a_number_is_exit_2(tmp_path, folder, capsys):
    name = next(p.name for p in folder.glob("n1_*.png"))
    (tmp_path / "a.png").write_bytes((folder / name).read_bytes())
    (tmp_path / "labels.csv").write_text("file,label\na.png,12a\n")
    assert main(["evaluate", "--folder", str(tmp_path), "--number"]) == 2
    err = capsys.readouterr().err
    assert "a.png" in err and "'12a'" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("argv", [["--number"], ["--number", "--strokes", "x.jsonl"]])
def test_number_without_folder_is_exit_2(argv, capsys):
    assert main(["evaluate", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "digitrec evaluate: error: --number only applies with --folder"
