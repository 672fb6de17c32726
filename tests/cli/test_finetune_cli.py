"""`digitrec finetune` end to end: corrections stored in a temporary SQLite database (digits and a
number), fine-tuned for a few steps, written where `digitrec serve --weights DIR` serves them
(the version in /api/models and the page footer); refusals exit non-zero and write nothing."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from conftest import weights_dir
from PIL import Image

from digitrec.cli import main
from digitrec.feedback import FeedbackStore, capture
from digitrec.recognizer import Recognizer

FAST = ["--steps", "2", "--limit-mnist-test", "200", "--no-int8"]


@pytest.fixture(autouse=True)
def _restore_db_env(monkeypatch):
    """--db sets $DIGITREC_DB_URL for the process: put it back after each test."""
    monkeypatch.setenv("DIGITREC_DB_URL", "sqlite:////nonexistent/not-used.sqlite3")


def png(pixels: np.ndarray) -> bytes:
    """A white-background PNG of MNIST-style (white on black) pixels, scaled up as drawn."""
    image = Image.fromarray(255 - pixels).resize((pixels.shape[1] * 4, pixels.shape[0] * 4))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


@pytest.fixture()
def db(tmp_path, mnist) -> str:
    """Six one-digit corrections and one two-digit number, as the page would store them."""
    url = f"sqlite:///{tmp_path / 'feedback.sqlite3'}"
    store = FeedbackStore.open(url)
    recognizer = Recognizer.load(weights_dir())
    images, labels = mnist.split("val")
    rows = [capture(recognizer, png(images[k]), str(labels[k]), source="page")
            for k in range(6)]
    pair = np.concatenate([images[10], np.zeros((28, 12), np.uint8), images[11]], axis=1)
    rows.append(capture(recognizer, png(pair), f"{labels[10]}{labels[11]}", source="api"))
    store.add(*rows)
    store.close()
    return url


def test_finetune_then_serve_the_new_version(db, mnist_dir, tmp_path, capsys):
    out = tmp_path / "weights"
    assert main(["finetune", "--db", db, "--out", str(out), "--weights", str(weights_dir()),
                 "--data-dir", str(mnist_dir), *FAST]) == 0
    printed = capsys.readouterr().out
    assert "7 correction(s), 8 digit(s)" in printed
    assert "MNIST test accuracy" in printed and f"digitrec serve --weights {out}" in printed
    cards = {p.stem: json.loads((out / f"{p.stem}.json").read_text())
             for p in out.glob("*.safetensors")}
    assert set(cards) == {p.stem for p in weights_dir().glob("*.safetensors")}
    summary = cards[min(cards)]["finetune"]
    assert all(card["finetune"] == summary for card in cards.values())
    assert summary["corrections"]["source"]["by_mode"] == {"digit": 6, "number": 1}
    assert summary["corrections"]["source"]["by_source"] == {"page": 6, "api": 1}
    assert summary["corrections"]["digits"] == 8 and summary["corrections"]["corrections"] == 7
    # 7 corrections, 20% held out: 1 correction (1 or 2 digits)
    assert summary["corrections"]["held_out_digits"] in (1, 2)
    assert summary["base_version"] == Recognizer.load(weights_dir()).version
    assert not (out / "int8.json").exists()  # --no-int8: served in fp32

    from digitrec.web import create_app
    client = create_app({"WEIGHTS": str(out), "TESTING": True}).test_client()
    models = client.get("/api/models").get_json()
    assert models["version"] == summary["version"] != summary["base_version"]
    assert summary["version"][:12] in client.get("/").get_data(as_text=True)


def test_refused_model_exits_non_zero_and_writes_nothing(db, mnist_dir, tmp_path, capsys):
    out = tmp_path / "weights"
    # a model must gain a point on MNIST test to pass: it cannot on the first 200 images
    assert main(["finetune", "--db", db, "--out", str(out), "--weights", str(weights_dir()),
                 "--data-dir", str(mnist_dir), "--max-mnist-drop", "-1", *FAST]) == 4
    err = capsys.readouterr().err
    assert "digitrec: error: the fine-tuned models lose" in err and "nothing written" in err
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith("feedback.sqlite3")] \
        == []  # no staging directory left behind


def test_no_corrections_and_bad_flags_are_usage_errors(tmp_path, capsys):
    empty = f"sqlite:///{tmp_path / 'empty.sqlite3'}"
    assert main(["finetune", "--db", empty, "--out", str(tmp_path / "w")]) == 2
    assert "no corrections in" in capsys.readouterr().err
    assert main(["finetune", "--db", empty, "--out", str(tmp_path / "w"),
                 "--limit-mnist-test", "0"]) == 2
    with pytest.raises(SystemExit):
        main(["finetune", "--db", empty])  # --out is required
    assert not (tmp_path / "w").exists()
