"""One table of settings: every DIGITREC_* variable the code, tests and benchmarks read is a row
of it and appears in the README; bad values are ConfigErrors naming the variable."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from digitrec.config import TABLE, markdown_table, read
from digitrec.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_every_variable_in_the_tree_is_in_the_table_and_the_readme():
    used = set()
    for folder in ("src", "tests", "benchmarks", "scripts"):
        for path in (REPO / folder).rglob("*.py"):
            used |= set(re.findall(r"DIGITREC_[A-Z_]+", path.read_text()))
    used |= set(re.findall(r"DIGITREC_[A-Z_]+", (REPO / "Makefile").read_text()))
    table = {s.env for s in TABLE}
    assert used <= table, f"variables missing from digitrec.config.TABLE: {used - table}"
    assert markdown_table() in (REPO / "README.md").read_text(), \
        "the README's settings table is not digitrec.config.markdown_table()"


def test_defaults_and_parsing():
    settings = read({})
    assert settings.port == 8000 and settings.worker_threads == 1 and settings.micro_batch
    assert settings.inference is None and settings.weights is None
    settings = read({"DIGITREC_PORT": "9000", "DIGITREC_INFERENCE": "INT8",
                     "DIGITREC_MICRO_BATCH": "0", "DIGITREC_WEIGHTS": "/w"})
    assert (settings.port, settings.inference, settings.micro_batch) == (9000, "int8", False)
    assert str(settings.weights) == "/w"


@pytest.mark.parametrize(("variable", "value", "words"), [
    ("DIGITREC_INFERENCE", "bogus", "onnx, int8, torch"),
    ("DIGITREC_WORKERS", "many", "whole number"),
    ("DIGITREC_WORKERS", "0", "at least 1"),
    ("DIGITREC_PORT", "70000", "0..65535"),
    ("DIGITREC_MICRO_BATCH", "maybe", "1 or 0"),
])
def test_bad_values_name_the_variable(variable, value, words):
    with pytest.raises(ConfigError) as caught:
        read({variable: value})
    assert variable in str(caught.value) and words in str(caught.value)


def test_files_go_to_the_data_home_never_the_package(tmp_path):
    assert read({"DIGITREC_HOME": str(tmp_path)}).data_home() == tmp_path
    assert "site-packages" not in str(read({}).data_home())
