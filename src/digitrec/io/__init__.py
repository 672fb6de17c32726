"""Input: any image source → a decoded, upright PIL image within the pixel budget."""

from digitrec.io.decode import FULL_SIZE, MAX_PIXELS, WORK_SIDE, ImageSource, load_image

__all__ = ["FULL_SIZE", "MAX_PIXELS", "WORK_SIDE", "ImageSource", "load_image"]
