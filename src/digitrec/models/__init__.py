"""Models: the architectures and their registry, the Ensemble, weights + model cards on disk,
and the input contract (28x28, mean/std) they all share."""

from digitrec.models.architectures import create_model, list_models, register
from digitrec.models.cards import BUNDLED_DIR, load_ensemble, load_model, save_model
from digitrec.models.contract import INPUT_SHAPE, MEAN, SIZE, STD, to_tensor
from digitrec.models.ensemble import Ensemble, parameter_count, weights_digest

__all__ = ["BUNDLED_DIR", "INPUT_SHAPE", "MEAN", "SIZE", "STD", "Ensemble", "create_model",
           "list_models", "load_ensemble", "load_model", "parameter_count", "register",
           "save_model", "to_tensor", "weights_digest"]
