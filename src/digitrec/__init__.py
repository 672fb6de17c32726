"""digitrec: handwritten digit recognition that works on real handwriting.

`from digitrec import Recognizer` is the API; the errors it raises are in digitrec.errors (and
here). Importing the package is cheap: torch loads only when the Recognizer is asked for."""

from digitrec.errors import (
    ConfigError,
    DigitrecError,
    ImageDecodeError,
    ImageTooLargeError,
    InputError,
    ModelError,
    NoDigitError,
)

__version__ = "0.1.0"
__all__ = ["ConfigError", "DigitrecError", "ImageDecodeError", "ImageTooLargeError",
           "InputError", "ModelError", "NoDigitError", "NumberReading", "Prediction",
           "PredictionError", "Recognizer", "__version__"]
_LAZY = ("Recognizer", "Prediction", "PredictionError", "NumberReading")


def __getattr__(name: str):
    """Import the Recognizer API (and torch with it) only when it is asked for."""
    if name in _LAZY:
        from digitrec import recognizer
        return getattr(recognizer, name)
    raise AttributeError(f"module 'digitrec' has no attribute {name!r}")
