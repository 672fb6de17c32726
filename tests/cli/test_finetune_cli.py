"""`digitrec finetune` end to end: corrections stored in a temporary SQLite database (digits and a
number), fine-tuned for a few steps, written where `digitrec serve --weights DIR` serves them
(the version in /api/models and the page footer); refusals exit non-zero and write nothing. As
two ranks (--nproc 2, DistributedDataParallel on 127.0.0.1) it matches one process, and a rank
killed mid-run restarts the job from the member's last checkpoint."""

from __future__ import annotations

import io
import json
import sys

import numpy as np
import pytest
from conftest import run_ranks, weights_dir
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


def _cards(out) -> dict[str, dict]:
    return {p.stem: json.loads((out / f"{p.stem}.json").read_text())
            for p in out.glob("*.safetensors")}


def test_two_ranks_match_one_process(db, mnist_dir, tmp_path, capsys):
    single, ranks = tmp_path / "single", tmp_path / "ranks"
    flags = ["--db", db, "--weights", str(weights_dir()), "--data-dir", str(mnist_dir),
             "--steps", "6", "--limit-mnist-test", "200", "--no-int8",
             "--max-mnist-drop", "5"]  # what is tested here is the ranks, not the gain
    assert main(["finetune", *flags, "--out", str(single)]) == 0
    capsys.readouterr()
    done = run_ranks([sys.executable, "-m", "digitrec", "finetune", *flags, "--out", str(ranks),
                      "--nproc", "2"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("7 correction(s), 8 digit(s)") == 1  # rank 0 alone reports
    assert done.stdout.count("MNIST test accuracy") == 1
    one, two = _cards(single), _cards(ranks)
    assert set(one) == set(two) == {p.stem for p in weights_dir().glob("*.safetensors")}
    for name in one:
        assert (one[name]["world_size"], two[name]["world_size"]) == (1, 2)
        a, b = one[name]["history"][-1], two[name]["history"][-1]
        assert a["steps"] == b["steps"] == 6 and abs(a["train_loss"] - b["train_loss"]) < 0.05
    s1, s2 = one[min(one)]["finetune"], two[min(two)]["finetune"]
    assert (s1["world_size"], s2["world_size"]) == (1, 2) and s1["mix"] == s2["mix"]
    assert abs(s1["after"]["mnist_test"]["accuracy"] - s2["after"]["mnist_test"]["accuracy"]) \
        <= 0.01  # 2 of 200 images
    assert sorted(p.name for p in single.iterdir()) == sorted(p.name for p in ranks.iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["feedback.sqlite3", "ranks",
                                                          "single"]  # no checkpoints left


def test_a_killed_rank_restarts_from_the_members_checkpoint(db, mnist_dir, tmp_path):
    out = tmp_path / "weights"
    # rank 1 dies (os._exit) after step 4 of 6 of the first member, on the first attempt only
    done = run_ranks([sys.executable, "-m", "digitrec", "finetune", "--db", db, "--out",
                      str(out), "--weights", str(weights_dir()), "--data-dir", str(mnist_dir),
                      "--steps", "6", "--limit-mnist-test", "200", "--no-int8", "--nproc", "2",
                      "--max-mnist-drop", "5",
                      "--max-restarts", "1", "--checkpoint-every", "2"],
                     DIGITREC_FAULT_STEP="4", DIGITREC_FAULT_RANK="1")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resumed from step 4 of 6" in done.stderr
    cards = _cards(out)
    assert all(c["world_size"] == 2 and c["history"][-1]["steps"] == 6 for c in cards.values())
    assert Recognizer.load(out).version == cards[min(cards)]["finetune"]["version"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["feedback.sqlite3", "weights"]


def test_a_refusal_under_ranks_keeps_its_exit_status(db, mnist_dir, tmp_path):
    out = tmp_path / "weights"
    done = run_ranks([sys.executable, "-m", "digitrec", "finetune", "--db", db, "--out",
                      str(out), "--weights", str(weights_dir()), "--data-dir", str(mnist_dir),
                      "--max-mnist-drop", "-1", *FAST, "--nproc", "2"])
    assert done.returncode == 4, done.stderr[-3000:]
    assert "the fine-tuned models lose" in done.stderr and "Traceback" not in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["feedback.sqlite3"]

