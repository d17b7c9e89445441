"""Exception hierarchy.

Every failure caused by bad input (an unreadable image, a corrupt or foreign ``.inr`` file, an
out-of-range option) raises a subclass of :class:`InrcError`.  The CLI prints its message on one
line and exits with :attr:`InrcError.exit_code`; library users catch ``InrcError``.
"""
from __future__ import annotations


class InrcError(Exception):
    """Base class of every error raised for bad input, bad files or bad options."""

    exit_code = 1


class FormatError(InrcError):
    """The byte string is not a valid ``.inr`` file."""


class NotInrError(FormatError):
    """The data does not start with the ``.inr`` magic bytes."""


class UnsupportedVersionError(FormatError):
    """The file's format version or flags are unknown to this decoder."""


class TruncatedError(FormatError):
    """The data ends before the structure it announces."""


class ChecksumError(FormatError):
    """The CRC-32 stored in the file does not match its contents."""


class FieldRangeError(FormatError):
    """A header or payload field holds a value outside its allowed range."""


class ImageInputError(InrcError):
    """An input image is missing, unreadable or unsupported."""


class OptionError(InrcError):
    """An option value is invalid (usage error)."""

    exit_code = 2


class LimitError(InrcError):
    """A requested output or input exceeds a resource limit (e.g. ``--max-pixels``)."""
