"""digitrec.models.sequence: the sequence reader's network, decoding and weights on disk."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from digitrec.errors import ModelError
from digitrec.models.sequence import (
    CLASSES,
    LineReader,
    greedy_decode,
    load_reader,
    save_reader,
    to_batch,
)
from digitrec.preprocess.line import HEIGHT, STRIDE


def _frames(path: list[int], sure: float = 0.9) -> np.ndarray:
    """Log-probabilities whose best class per frame follows `path` (0 = blank)."""
    p = np.full((len(path), CLASSES), (1 - sure) / (CLASSES - 1))
    p[np.arange(len(path)), path] = sure
    return np.log(p)


def test_best_path_decoding_collapses_repeats_and_drops_blanks():
    # blank 3 3 blank 3 blank blank 7 7 → "337"; a repeat needs a blank between
    read = greedy_decode(_frames([0, 4, 4, 0, 4, 0, 0, 8, 8]))
    assert [d.digit for d in read] == [3, 3, 7]
    assert [d.columns for d in read] == [(1 * STRIDE, 3 * STRIDE), (4 * STRIDE, 5 * STRIDE),
                                         (7 * STRIDE, 9 * STRIDE)]
    assert all(d.confidence == pytest.approx(0.9) for d in read)
    assert np.isclose(sum(read[0].probabilities), 1.0) and np.argmax(read[0].probabilities) == 3
    assert greedy_decode(_frames([0, 0, 0])) == []
    # two digits back to back, no blank between: two digits
    assert [d.digit for d in greedy_decode(_frames([2, 6]))] == [1, 5]


def test_the_network_reads_a_padded_batch_into_frames():
    model = LineReader().eval()
    lines = [np.zeros((HEIGHT, 64), np.uint8), np.full((HEIGHT, 120), 255, np.uint8)]
    x, frames = to_batch(lines)
    assert x.shape == (2, 1, HEIGHT, 120) and frames.tolist() == [32, 60]
    with torch.inference_mode():
        out = model(x)
    assert out.shape == (2, 60, CLASSES)
    assert torch.allclose(out.exp().sum(-1), torch.ones(2, 60), atol=1e-5)


def test_weights_round_trip_and_bad_files_are_model_errors(tmp_path):
    model = LineReader().eval()
    save_reader(model, tmp_path, {"threshold": 0.8})
    loaded, card = load_reader(tmp_path)
    assert card["architecture"] == "crnn" and card["threshold"] == 0.8
    x = torch.rand(1, 1, HEIGHT, 40)
    with torch.inference_mode():
        assert torch.equal(model(x), loaded(x))
    assert load_reader(tmp_path / "nothing") is None
    (tmp_path / "reader.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ModelError, match="sequence reader"):
        load_reader(tmp_path)
