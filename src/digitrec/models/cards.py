"""Weights on disk: NAME.safetensors (never a pickle) beside NAME.json, its model card; the
bundled ensemble ships in the package (digitrec/weights)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from digitrec.errors import ModelError
from digitrec.models.architectures import create_model
from digitrec.models.ensemble import Ensemble, parameter_count

BUNDLED_DIR = Path(__file__).resolve().parents[1] / "weights"


def save_model(model: nn.Module, directory: str | os.PathLike, name: str, card: dict,
               half: bool = False) -> Path:
    """Write NAME.safetensors (optionally fp16) and NAME.json (the model card)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    save_file(state, str(directory / f"{name}.safetensors"))
    card = {"name": name, "architecture": model.arch, "parameters": parameter_count(model),
            "dtype": "float16" if half else "float32", **card}
    (directory / f"{name}.json").write_text(json.dumps(card, indent=2) + "\n")
    return directory / f"{name}.safetensors"


def load_model(path: str | os.PathLike) -> tuple[nn.Module, dict]:
    """Load a model from NAME.safetensors + NAME.json; returns (model in eval mode, card)."""
    path = Path(path)
    card_path = path.with_suffix(".json")
    try:
        card = json.loads(card_path.read_text())
        model = create_model(card["architecture"])
        state = load_file(str(path.with_suffix(".safetensors")))
        state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
        model.load_state_dict(state)
    except FileNotFoundError as exc:
        raise ModelError(f"cannot load model {path.stem}: {exc.filename} does not exist") from None
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, SafetensorError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelError(f"cannot load model {path.stem} from {path.parent}: {reason}") from None
    return model.eval(), card


def load_ensemble(directory: str | os.PathLike | None = None,
                  names: Sequence[str] | None = None) -> tuple[Ensemble, dict[str, dict]]:
    """Load every model in a directory (the bundled weights by default) into an Ensemble."""
    directory = Path(directory) if directory else BUNDLED_DIR
    paths = sorted(directory.glob("*.safetensors"))
    if names:
        paths = [p for p in paths if p.stem in names]
    if not paths:
        raise ModelError(f"no *.safetensors models in {directory}")
    loaded = {p.stem: load_model(p) for p in paths}
    ensemble = Ensemble({n: m for n, (m, _) in loaded.items()}).eval()
    return ensemble, {n: card for n, (_, card) in loaded.items()}
