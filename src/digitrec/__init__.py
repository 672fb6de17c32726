"""digitrec: handwritten digit recognition that works on real handwriting."""

__version__ = "0.1.0"
__all__ = ["NumberReading", "Prediction", "Recognizer", "__version__"]


def __getattr__(name: str):
    """Import the Recognizer API (and torch with it) only when it is asked for."""
    if name in ("Recognizer", "Prediction", "NumberReading"):
        from digitrec import recognizer
        return getattr(recognizer, name)
    raise AttributeError(f"module 'digitrec' has no attribute {name!r}")
