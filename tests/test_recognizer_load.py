"""Which weights Recognizer.load() takes: the path given, else $DIGITREC_WEIGHTS, else the
bundled ensemble — as the CLI and the web app choose."""

from __future__ import annotations

import shutil

import pytest
from conftest import weights_dir

from digitrec.errors import ModelError
from digitrec.models import BUNDLED_DIR
from digitrec.recognizer import Recognizer, weights_directory


def test_the_environment_names_the_weights_when_no_path_is_given(tmp_path, monkeypatch):
    copy = tmp_path / "mine"
    shutil.copytree(weights_dir(), copy)
    monkeypatch.setenv("DIGITREC_WEIGHTS", str(copy))
    assert weights_directory() == copy
    assert weights_directory(BUNDLED_DIR) == BUNDLED_DIR  # a path given wins
    assert Recognizer.load().version == Recognizer.load(copy).version


def test_a_missing_directory_in_the_environment_is_a_model_error(tmp_path, monkeypatch):
    monkeypatch.setenv("DIGITREC_WEIGHTS", str(tmp_path / "nowhere"))
    with pytest.raises(ModelError, match="nowhere"):
        Recognizer.load()


def test_without_the_environment_the_bundled_ensemble(monkeypatch):
    monkeypatch.delenv("DIGITREC_WEIGHTS", raising=False)
    assert weights_directory() == BUNDLED_DIR


def test_weights_without_a_reader_use_the_bundled_reader_and_a_broken_one_is_an_error(tmp_path):
    from digitrec.models.sequence import LineReader, save_reader
    mine = tmp_path / "mine"
    shutil.copytree(weights_dir(), mine, ignore=shutil.ignore_patterns("reader", "zoo"))
    bundled = Recognizer.load().reader
    reader = Recognizer.load(mine).reader
    assert (reader is None) == (bundled is None)
    if bundled is not None:
        assert reader.card == bundled.card
    save_reader(LineReader(), mine / "reader", {"threshold": 0.5})
    assert Recognizer.load(mine).reader.threshold == 0.5  # the weights' own reader wins
    (mine / "reader" / "reader.safetensors").write_bytes(b"broken")
    with pytest.raises(ModelError, match="sequence reader"):
        Recognizer.check(mine)
    with pytest.raises(ModelError, match="sequence reader"):
        Recognizer.load(mine)
