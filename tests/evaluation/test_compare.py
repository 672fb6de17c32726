"""`digitrec compare --quick`: one run per module (about a minute), checked from several sides."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from digitrec.cli import main
from digitrec.evaluation.compare import Comparison, ModelResult, deskew
from digitrec.evaluation.report import PLOTS, plot_common_errors
from digitrec.models import list_models

EXPECTED_ROWS = ["svm", "mlp", *list_models(), "ensemble"]


@pytest.fixture(scope="module")
def quick_report(mnist_dir, tmp_path_factory):
    """The output directory of one `digitrec compare --quick` run."""
    out = tmp_path_factory.mktemp("comparison")
    # one thread: on a busy 2-core box, two oversubscribed torch threads ran ~3x slower
    assert main(["compare", "--quick", "--out", str(out), "--data-dir", str(mnist_dir),
                 "--threads", "1"]) == 0
    return out


def _table(markdown: str) -> dict[str, list[str]]:
    rows = [line.strip("|").split("|") for line in markdown.splitlines()
            if line.startswith("| ") and not line.startswith("| Model")]
    return {cells[0].strip(): [c.strip() for c in cells[1:]] for cells in rows}


def test_report_has_a_row_per_model_with_parsable_numbers(quick_report):
    table = _table((quick_report / "report.md").read_text())
    assert list(table) == EXPECTED_ROWS
    for name, (acc, errors, train_s, per_s, latency, params, size) in table.items():
        assert 0.0 <= float(acc) <= 1.0, name
        assert int(errors) == round((1 - float(acc)) * 1000), name
        assert float(train_s) >= 0 and float(latency) > 0, name
        assert float(per_s.replace(",", "")) > 0 and int(params.replace(",", "")) > 0, name
        assert re.fullmatch(r"[\d.]+ (kB|MB)", size), name


def test_every_plot_is_written_and_embedded_in_the_html(quick_report):
    for name in PLOTS:
        assert (quick_report / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert f"]({name})" in (quick_report / "report.md").read_text()
    page = (quick_report / "report.html").read_text()
    sources = re.findall(r"<img [^>]*src='([^']*)'", page)
    assert len(sources) == len(PLOTS)
    assert all(src.startswith("data:image/png;base64,") for src in sources)


def test_results_json_holds_the_numbers(quick_report):
    results = json.loads((quick_report / "results.json").read_text())
    assert results["settings"]["mode"] == "quick"
    assert results["settings"]["test_images"] == 1000
    models = {m["name"]: m for m in results["models"]}
    assert list(models) == EXPECTED_ROWS
    for name, m in models.items():
        assert 0.0 <= m["test_accuracy"] <= 1.0, name
        assert np.array(m["confusion"]).sum() == 1000, name
        assert m["size_bytes"] > 0 and m["throughput_images_per_s"] > 0, name
    for name in ["mlp", *list_models()]:
        assert models[name]["val_accuracy_per_epoch"], name
    assert models["svm"]["test_accuracy"] > 0.85  # deskew + PCA + RBF: ~96% even on 3,000


def test_deskew_straightens_a_slanted_stroke():
    image = np.zeros((1, 28, 28), np.uint8)
    for row in range(6, 22):  # a stroke leaning right by 1 column per 2 rows
        image[0, row, 10 + (21 - row) // 2] = 255
    upright = deskew(image)[0]
    columns = [np.average(np.arange(28), weights=r) for r in upright[6:22] if r.sum() > 0.5]
    assert upright.shape == (28, 28) and upright.dtype == np.float32
    assert max(columns) - min(columns) < 2  # was 7.5 columns of lean


def test_gallery_says_so_when_no_digit_fools_every_model(tmp_path):
    labels = np.arange(10)
    right = ModelResult("a", "cnn", "", 1.0, 0, 1.0, 1.0, 1.0, 1, 1, predictions=labels)
    wrong = ModelResult("b", "cnn", "", 0.0, 10, 1.0, 1.0, 1.0, 1, 1, predictions=labels[::-1])
    comparison = Comparison([right, wrong], {}, np.zeros((10, 28, 28), np.uint8), labels)
    assert len(comparison.common_errors()) == 0
    plot_common_errors(comparison, tmp_path / "gallery.png")
    assert (tmp_path / "gallery.png").stat().st_size > 0


def test_missing_weights_fail_fast_with_a_hint(mnist_dir, tmp_path, capsys):
    assert main(["compare", "--weights", str(tmp_path), "--out", str(tmp_path / "out")]) == 4
    assert "runs/bundle" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_report_paths_are_relative_to_the_working_directory(tmp_path, monkeypatch):
    from digitrec.evaluation.compare import shown_path
    monkeypatch.chdir(tmp_path)
    assert shown_path(tmp_path / "runs" / "bundle") == str(Path("runs") / "bundle")
    assert shown_path(Path("/elsewhere/models")) == "/elsewhere/models"
