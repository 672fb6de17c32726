"""`digitrec evaluate --folder DIR` and `--strokes FILE`: text and JSON, the report PNGs, and
the exit status (0 done, 2 usage or data, 3 an image that could not be read)."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from digitrec.cli import main

ONE = [[[0.40, 0.35, 0.0], [0.52, 0.22, 0.1]], [[0.52, 0.22, 0.2], [0.52, 0.78, 0.3]]]


@pytest.fixture(scope="module")
def folder(mnist, tmp_path_factory):
    """12 MNIST test digits, dark on white, named *_<label>.png."""
    root = tmp_path_factory.mktemp("own")
    images, labels = mnist.split("test")
    for k in range(12):
        Image.fromarray(255 - images[k]).save(root / f"mine{k}_{labels[k]}.png")
    return root


def test_folder_json(folder, capsys, tmp_path):
    assert main(["evaluate", "--folder", str(folder), "--json", "--report",
                 str(tmp_path / "r")]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert out["n"] == 12 and out["source"] == f"folder {folder}"
    assert 0.9 <= out["best_guess_accuracy"] <= 1 and 0 <= out["abstention_rate"] <= 1
    assert sum(map(sum, out["confusion"])) == 12
    assert sum(c["n"] for c in out["per_class"].values()) == 12
    assert out["unreadable"] == [] and out["skipped"] == []
    assert (tmp_path / "r" / "confusion_matrix.png").exists()
    assert "confusions.png" in captured.err


def test_folder_text_and_an_unreadable_file(folder, tmp_path, capsys):
    for path in folder.iterdir():
        (tmp_path / path.name).write_bytes(path.read_bytes())
    (tmp_path / "oops_3.png").write_bytes(b"this is text")
    assert main(["evaluate", "--folder", str(tmp_path), "--limit", "13"]) == 3
    captured = capsys.readouterr()
    assert "12 images read" in captured.out and "best guess right" in captured.out
    assert "oops_3.png: not a readable image" in captured.out
    assert "1 image(s) could not be read" in captured.err


def test_strokes(tmp_path, capsys):
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps({"writer": w, "label": 1, "instance": 0,
                                          "strokes": ONE}) for w in ("001", "002")))
    assert main(["evaluate", "--strokes", str(path), "--style", "thin", "--pad", "200",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n"] == 2 and set(out["per_group"]) == {"001", "002"}
    assert "thin scan, 200×200" in out["source"]


@pytest.mark.parametrize("argv, message", [
    (["--folder", "{tmp}"], "holds no labels.csv"),
    (["--folder", "{tmp}/nowhere"], "no folder"),
    (["--folder", "{tmp}", "--pen", "9"], "only apply with --strokes"),
    (["--pen", "9"], "only apply with --strokes"),
    (["--strokes", "{tmp}/missing.jsonl"], "cannot read"),
])
def test_bad_input_is_exit_2(tmp_path, capsys, argv, message):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(["evaluate", *argv]) == 2
    assert message in capsys.readouterr().err


def test_folder_and_strokes_exclude_each_other(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--folder", str(tmp_path), "--strokes", "x.jsonl"])
    assert exc.value.code == 2
    assert "not allowed with" in capsys.readouterr().err
