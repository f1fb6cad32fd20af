"""PASE and PASE+ speech encoders: checkpoint-compatible models and batched extraction.

PyTorch is imported on first use of `load_encoder` or `PaseEncoder`, so that prepare
runs without PASE never pay for it.
"""

from __future__ import annotations

from typing import Any

from .architectures import ARCHITECTURES

__all__ = ["ARCHITECTURES", "PaseEncoder", "load_encoder"]


def __getattr__(name: str) -> Any:
    if name == "load_encoder":
        from .checkpoint import load_encoder

        return load_encoder
    if name == "PaseEncoder":
        from .model import PaseEncoder

        return PaseEncoder
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
