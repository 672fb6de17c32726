"""digitrec.inference.reader: the sequence reader run by onnxruntime (cached graph) or torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from digitrec.inference.reader import SequenceReader
from digitrec.models.sequence import LineReader
from digitrec.preprocess import NoDigitError


def _line_ink() -> np.ndarray:
    """An ink map with three bars and a ring: something to read."""
    ink = np.zeros((60, 220), np.float32)
    for x in (20, 60, 100):
        ink[10:50, x:x + 6] = 1.0
    yy, xx = np.mgrid[0:60, 0:220]
    ink[np.abs(np.hypot((yy - 30) / 20, (xx - 160) / 14) - 1) < 0.2] = 1.0
    return ink


def test_onnxruntime_and_torch_read_alike_and_the_graph_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("DIGITREC_CACHE", str(tmp_path))
    torch.manual_seed(3)
    model = LineReader().eval()
    fast = SequenceReader(model, {}, engine="onnx")
    slow = SequenceReader(model, {}, engine="torch")
    ink = _line_ink()
    a, b = fast.read(ink), slow.read(ink)
    assert fast._session and not slow._session
    assert a.text == b.text
    np.testing.assert_allclose([d.confidence for d in a.digits],
                               [d.confidence for d in b.digits], atol=1e-4)
    assert len(list((tmp_path / "onnx").glob("reader-*.onnx"))) == 1
    again = SequenceReader(model, {}, engine="onnx")
    again.read(ink)  # the cached graph, not a second export
    assert len(list((tmp_path / "onnx").glob("reader-*.onnx"))) == 1


def test_a_cached_graph_is_reused_and_a_bad_one_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("DIGITREC_CACHE", str(tmp_path))
    torch.manual_seed(4)
    model = LineReader().eval()
    ink = _line_ink()
    want = SequenceReader(model, {}, engine="torch").read(ink)
    SequenceReader(model, {}, engine="onnx").read(ink)
    (path,) = (tmp_path / "onnx").glob("reader-*.onnx")
    good = path.read_bytes()
    export = torch.onnx.export
    monkeypatch.setattr(torch.onnx, "export", lambda *a, **k: pytest.fail("exported again"))
    assert SequenceReader(model, {}, engine="onnx").read(ink).text == want.text
    monkeypatch.setattr(torch.onnx, "export", export)
    other = LineReader().eval()  # another model's graph under this model's name
    SequenceReader(other, {}, engine="onnx").read(ink)
    other_graph = next(p for p in (tmp_path / "onnx").glob("reader-*.onnx") if p != path)
    for bad in (b"", good[:len(good) // 2], other_graph.read_bytes()):
        path.write_bytes(bad)
        got = SequenceReader(model, {}, engine="onnx").read(ink)
        assert got.text == want.text
        np.testing.assert_allclose([d.confidence for d in got.digits],
                                   [d.confidence for d in want.digits], atol=1e-4)
        assert path.read_bytes() == good  # rewritten


def test_a_fresh_graph_that_misreads_is_not_run(tmp_path, monkeypatch):
    monkeypatch.setenv("DIGITREC_CACHE", str(tmp_path))
    torch.manual_seed(5)
    model, other = LineReader().eval(), LineReader().eval()
    ink = _line_ink()
    want = SequenceReader(model, {}, engine="torch").read(ink)
    export = torch.onnx.export

    def export_another(_model, *args, **kwargs):  # a broken exporter: another model's graph
        return export(other, *args, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", export_another)
    reader = SequenceReader(model, {}, engine="onnx")
    got = reader.read(ink)
    assert reader._session is False  # the graph was refused: the model runs in torch
    assert got.text == want.text
    np.testing.assert_allclose([d.confidence for d in got.digits],
                               [d.confidence for d in want.digits], atol=1e-6)


def test_regions_tile_the_line_left_to_right(recognizer):
    if recognizer.reader is None:
        pytest.fail("no bundled sequence reader (src/digitrec/weights/reader)")
    reading = recognizer.reader.read(_line_ink())
    regions = reading.ink_regions()
    assert len(regions) == len(reading.digits)
    for (a0, a1), (b0, b1) in zip(regions, regions[1:], strict=False):
        assert a0 < a1 <= b0 + 1 < b1 + 1
    assert reading.confidence == pytest.approx(np.prod([d.confidence for d in reading.digits]))
    with pytest.raises(NoDigitError):
        recognizer.reader.read(np.zeros((40, 40), np.float32))
