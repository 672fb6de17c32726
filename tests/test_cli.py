"""The `digitrec predict` command: one line per file in input order, JSON lines, per-file errors
with exit status 1, directories walked, whole numbers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from digitrec.cli import main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_predict_reads_drawn_digits_and_reports_bad_files_in_order(tmp_path, capsys):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    status = main(["predict", str(EXAMPLES / "seven.png"), str(bad),
                   str(EXAMPLES / "one_transparent.png"), "--json"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert status == 1
    assert [Path(line["file"]).name for line in lines] == ["seven.png", "broken.png",
                                                          "one_transparent.png"]
    assert lines[0]["digit"] == 7 and len(lines[0]["probabilities"]) == 10
    assert abs(sum(lines[0]["probabilities"]) - 1) < 1e-4
    assert "error" in lines[1] and "digit" not in lines[1]
    assert lines[2]["digit"] == 1


def test_predict_walks_directories_in_text_mode(tmp_path, capsys):
    shutil.copy(EXAMPLES / "seven.png", tmp_path / "a.png")
    (tmp_path / "sub").mkdir()
    shutil.copy(EXAMPLES / "one_transparent.png", tmp_path / "sub" / "b.png")
    (tmp_path / "readme.txt").write_text("not an image, and not picked up")
    assert main(["predict", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and out[0].endswith(")") and ": 7 (" in out[0] and ": 1 (" in out[1]


def test_predict_number(capsys):
    assert main(["predict", "--number", "--json", str(EXAMPLES / "forty_two.png")]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["number"] == "42" and len(line["digits"]) == 2
