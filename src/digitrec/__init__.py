"""digitrec: handwritten digit recognition that works on real handwriting."""

__version__ = "0.1.0"
