"""The layout of docs/architecture.md holds: no import cycle, no import from a lower layer to a
higher one, serving never loads training, evaluation or the data sets, and the CLI's parser
loads no heavy library (`digitrec --help` stays fast)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _import_graph():
    spec = importlib.util.spec_from_file_location("import_graph",
                                                  REPO / "scripts" / "import_graph.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_import_graph_keeps_the_layers():
    graph = _import_graph()
    assert graph.problems() == []
    edges = graph.module_edges()
    assert "digitrec.recognizer" in edges["digitrec.web"]  # the checker sees real imports


def test_the_checker_catches_an_upward_import_and_a_cycle(monkeypatch):
    graph = _import_graph()
    real = graph.module_edges()
    fake = {**real, "digitrec.models.cards": real["digitrec.models.cards"]
            | {"digitrec.training.loop"}}
    monkeypatch.setattr(graph, "module_edges", lambda: fake)
    found = graph.problems()
    assert "models → training: a lower layer imports a higher one" in found
    assert any(p.startswith("import cycle") for p in found)
    assert any("serving module" in p and "digitrec.training" in p for p in found)


def test_the_cli_parser_and_errors_load_without_torch():
    code = ("import sys; from digitrec.cli import build_parser; build_parser(); "
            "import digitrec; digitrec.InputError; "
            "heavy = [m for m in ('torch', 'numpy', 'onnxruntime', 'PIL', 'flask') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_test_files_have_unique_names():
    """Test folders have no __init__.py (pytest's default import mode): two test files of one
    name in different folders stop the whole run at collection."""
    names = [p.name for p in (REPO / "tests").rglob("test_*.py")]
    assert sorted(n for n in set(names) if names.count(n) > 1) == []
