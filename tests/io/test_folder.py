"""digitrec.io.folder: labels from file names, from subfolders named by label, or from a
labels.csv; what is not labelled or not there is a DataError that says so."""

from __future__ import annotations

from pathlib import Path

import pytest

from digitrec.errors import DataError
from digitrec.io.folder import LabelledImage, read_folder


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not decoded here")
    return path


def _labels(items: list[LabelledImage], root: Path) -> list[tuple[str, str]]:
    return [(item.path.relative_to(root).as_posix(), item.label) for item in items]


def test_labels_from_names_of_any_image_type(tmp_path):
    for name in ("b_7.png", "a_3.JPG", "4.webp", "c_12.tif", "notes_5.txt", "unlabelled.png",
                 ".hidden_1.png"):
        _touch(tmp_path / name)
    assert _labels(read_folder(tmp_path), tmp_path) == [
        ("4.webp", "4"), ("a_3.JPG", "3"), ("b_7.png", "7"), ("c_12.tif", "12")]


def test_labels_from_subfolders(tmp_path):
    _touch(tmp_path / "3" / "x.png")
    _touch(tmp_path / "3" / "more" / "y.jpeg")
    _touch(tmp_path / "8" / "z.bmp")
    _touch(tmp_path / "8" / "readme.md")
    _touch(tmp_path / "misc" / "w_1.png")  # not a label: not read
    _touch(tmp_path / "top_0.png")
    assert _labels(read_folder(tmp_path), tmp_path) == [
        ("3/more/y.jpeg", "3"), ("3/x.png", "3"), ("8/z.bmp", "8"), ("top_0.png", "0")]
    with pytest.raises(DataError, match="no labels.csv and no image named"):
        read_folder(tmp_path / "misc", subfolders=False, suffixes=(".jpg",))


def test_labels_csv_wins_and_may_name_files_in_subfolders(tmp_path):
    _touch(tmp_path / "one.png")
    _touch(tmp_path / "sub" / "two.jpg")
    _touch(tmp_path / "x_9.png")  # ignored: the table says what is labelled
    (tmp_path / "labels.csv").write_text("file,label,mode\none.png,1,\nsub/two.jpg,2,digit\n")
    items = read_folder(tmp_path)
    assert _labels(items, tmp_path) == [("one.png", "1"), ("sub/two.jpg", "2")]
    assert [item.mode for item in items] == [None, "digit"]
    with pytest.raises(DataError, match="line 3: no image file 'sub/two.jpg'"):
        read_folder(tmp_path, subfolders=False)  # file names only


@pytest.mark.parametrize("table, message", [
    ("name,digit\na.png,1\n", "must name the columns file and label"),
    ("file,label\nmissing.png,1\n", "line 2: no image file 'missing.png'"),
    ("file,label\n../a.png,1\n", "line 2: no image file '../a.png'"),
    ("file,label,mode\na.png,1,word\n", "line 2: mode 'word' is not one of digit, number"),
])
def test_a_bad_labels_csv_names_the_problem(tmp_path, table, message):
    _touch(tmp_path / "a.png")
    (tmp_path / "labels.csv").write_text(table)
    with pytest.raises(DataError, match=message):
        read_folder(tmp_path, modes=("digit", "number"))


def test_an_empty_or_missing_folder_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="no labels.csv, no image named .* no subfolder"):
        read_folder(tmp_path)
    with pytest.raises(DataError, match="no folder"):
        read_folder(tmp_path / "nowhere")
    _touch(tmp_path / "a_1.jpg")  # feedback's layout: PNGs only
    with pytest.raises(DataError, match=r"no labels.csv and no PNG named \*_<label>.png"):
        read_folder(tmp_path, suffixes=(".png",), subfolders=False)


def test_feedback_reads_its_folders_through_io_folder(tmp_path):
    from digitrec.feedback.folder import read_folder as feedback_read_folder
    _touch(tmp_path / "1_7.png")
    _touch(tmp_path / "2_3.jpg")  # not a PNG: not a correction
    _touch(tmp_path / "5" / "a.png")  # no subfolders for corrections
    assert feedback_read_folder(tmp_path) == [LabelledImage(tmp_path / "1_7.png", "7")]
