"""The `digitrec predict` command: one line per file in input order, JSON lines, per-file errors
with exit status 3, directories walked, whole numbers; `digitrec export --onnx` writes a graph
that onnxruntime runs, and checks it against the reference."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from conftest import weights_dir

from digitrec.cli import main
from digitrec.models import to_tensor

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_predict_reads_drawn_digits_and_reports_bad_files_in_order(tmp_path, capsys):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    status = main(["predict", str(EXAMPLES / "seven.png"), str(bad),
                   str(EXAMPLES / "one_transparent.png"), "--json"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert status == 3  # an input error among the files
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


def test_export_onnx_writes_a_graph_that_onnxruntime_runs(mnist, tmp_path, capsys, monkeypatch):
    import onnxruntime

    from digitrec.cli import models as cli
    # the check runs on 1,000 images; 200 keep the test quick (tests/test_fast.py checks the
    # same graph, the onnx backend's, on 1,000)
    monkeypatch.setattr(cli, "EXPORT_CHECK_IMAGES", 200)
    out = tmp_path / "tmp" / "x.onnx"
    assert main(["export", "--onnx", "--weights", str(weights_dir()), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "200/200 predictions identical" in printed and "largest probability" in printed
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["x"]
    assert [o.name for o in session.get_outputs()] == ["p"]
    p = session.run(None, {"x": to_tensor(mnist.test_images[:5]).numpy()})[0]
    assert p.shape[1:] == (5, 10) and np.allclose(p.sum(-1), 1, atol=1e-5)


def test_export_needs_a_format_and_fails_when_the_file_disagrees(mnist, tmp_path, capsys,
                                                                 monkeypatch):
    assert main(["export", "--out", str(tmp_path / "x.onnx")]) == 2
    assert "--onnx" in capsys.readouterr().err and not (tmp_path / "x.onnx").exists()

    from digitrec.cli import models as cli
    from digitrec.inference import onnx_backend as fast
    real_session = fast.onnx_session

    class SwappedClasses:  # a graph that reads every digit as another
        def __init__(self, path):
            self.session = real_session(path)

        def run(self, outputs, feeds):
            return [self.session.run(outputs, feeds)[0][..., ::-1]]

    monkeypatch.setattr(cli, "EXPORT_CHECK_IMAGES", 50)
    monkeypatch.setattr(fast, "onnx_session", SwappedClasses)
    assert main(["export", "--onnx", "--weights", str(weights_dir()),
                 "--out", str(tmp_path / "x.onnx")]) == 4  # a model error
    assert "does not predict what the reference" in capsys.readouterr().err


def test_exit_codes_and_no_traceback_for_known_errors(tmp_path):
    """2: usage or configuration, 3: an input that cannot be read, 4: the model; one line on
    stderr, no traceback (with --debug, the traceback)."""
    import os
    import subprocess
    import sys

    def digitrec(*args: str, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "digitrec", *args], capture_output=True,
                              text=True, env={**os.environ, **env}, timeout=120)

    seven, text = str(EXAMPLES / "seven.png"), tmp_path / "notes.txt"
    text.write_text("not an image")
    bogus = digitrec("predict", seven, DIGITREC_INFERENCE="bogus")
    assert bogus.returncode == 2 and "DIGITREC_INFERENCE" in bogus.stderr
    assert "Traceback" not in bogus.stderr and bogus.stdout == ""
    mixed = digitrec("predict", seven, str(text), str(EXAMPLES / "one_transparent.png"))
    lines = mixed.stdout.splitlines()
    assert mixed.returncode == 3 and len(lines) == 3 and "Traceback" not in mixed.stderr
    assert ": 7 (" in lines[0] and "notes.txt: error: not a readable image" in lines[1]
    assert ": 1 (" in lines[2]
    empty = tmp_path / "empty"
    empty.mkdir()
    model = digitrec("predict", seven, "--weights", str(empty))
    assert model.returncode == 4 and "no *.safetensors models" in model.stderr
    assert "Traceback" not in model.stderr
    debug = digitrec("--debug", "predict", seven, "--weights", str(empty))
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "ModelError" in debug.stderr


def test_the_parser_knows_every_architecture():
    from digitrec.cli import ARCHITECTURES
    from digitrec.models import list_models
    assert list(ARCHITECTURES) == list_models()
