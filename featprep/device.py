"""Which PyTorch device a command runs on."""

from __future__ import annotations

import torch

from .errors import FeatprepError


def resolve_device(device: str) -> torch.device:
    """``auto`` = CUDA when present, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise FeatprepError("--device cuda asked for, but PyTorch sees no CUDA device")
    if device not in ("cpu", "cuda"):
        raise FeatprepError(f'device must be "auto", "cpu" or "cuda", found {device!r}')
    return torch.device(device)
