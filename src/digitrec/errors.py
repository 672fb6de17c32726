"""The error contract: every error digitrec expects is a `DigitrecError`, whose message is meant
for the user. Each kind carries its HTTP status and CLI exit code, mapped here once; the web
app and the CLI read them, so a known error never reaches a user as a traceback or a 500.

Imports nothing of digitrec (every layer may raise these)."""

from __future__ import annotations


class DigitrecError(Exception):
    """An error digitrec expected; `str(error)` says what went wrong in the user's words."""

    http_status = 500
    exit_code = 1


class UsageError(DigitrecError):
    """A command or call that cannot work as given (a missing or contradictory option)."""

    http_status = 400
    exit_code = 2


class ConfigError(UsageError):
    """A setting (flag, environment variable or argument) with a value digitrec cannot use."""


class InputError(DigitrecError, ValueError):
    """The input cannot be read as a digit."""

    http_status = 400
    exit_code = 3


class ImageDecodeError(InputError):
    """Not an image, or a corrupt, truncated or unsupported one."""


class ImageTooLargeError(InputError):
    """The image has more pixels than the budget (digitrec.io.MAX_PIXELS)."""

    http_status = 413


class NoDigitError(InputError):
    """The image holds no ink: blank, uniform, all black or white, or only specks."""

    http_status = 422


class LabelError(InputError):
    """A correction's label that is not a digit or a string of digits (digitrec.feedback)."""


class LabelMismatchError(LabelError):
    """A correction's label whose digit count cannot match the digits read in the image."""

    http_status = 422


class StorageError(DigitrecError):
    """The database of corrections cannot be reached or written (digitrec.feedback)."""

    http_status = 503


class NotANumberError(InputError):
    """An image read as a number that holds far more marks than a number has."""

    http_status = 422


class ModelError(DigitrecError):
    """Weights that cannot be loaded or run: missing, corrupt, for another architecture."""

    exit_code = 4


class QuantizationError(ModelError, ValueError):
    """An int8.json that cannot be used for these weights; the message says why."""


class DataError(DigitrecError):
    """Training or evaluation data that is missing, unreadable or fails verification."""

    exit_code = 2


EXIT_INPUT = InputError.exit_code
