"""inrc: a neural image codec built on coordinate networks.

``encode(image) -> bytes`` overfits a small network to one image and entropy-codes its quantized
parameters; ``decode(data, size=None)`` renders the image back at any resolution.
"""
from __future__ import annotations

from .errors import InrcError

__version__ = "0.25.0"
__all__ = ["InrcError", "__version__", "decode", "encode", "encode_image", "export", "info", "read_header"]
_API = ("decode", "encode", "encode_image", "export", "info", "read_header")


def __getattr__(name: str):
    """The API functions load on first use, so ``inrc decode`` of a hybrid file never imports torch."""
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'codec' has no attribute {name!r}")
