"""PASE and PASE+ speech encoders: checkpoint-compatible models and batched extraction."""

from .checkpoint import load_encoder
from .model import ARCHITECTURES, PaseEncoder

__all__ = ["ARCHITECTURES", "PaseEncoder", "load_encoder"]
