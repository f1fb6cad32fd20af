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


#: the dtypes generation runs its matrix products in (``--dtype``)
GENERATION_DTYPES = ("float32", "bfloat16")


def resolve_dtype(dtype: torch.dtype | str) -> torch.dtype:
    """A generation dtype given as a torch dtype or by name (``float32``, ``bfloat16``)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in GENERATION_DTYPES:
        raise FeatprepError(f"dtype must be one of {list(GENERATION_DTYPES)}, found {dtype!r}")
    return getattr(torch, dtype)
