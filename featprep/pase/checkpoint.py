"""Loading PASE checkpoints in the forms people have, strictly.

- ``FE_e*.ckpt`` / ``PASE.ckpt``: a raw state dict (``torch.save(frontend.state_dict())``);
- ``weights_*.ckpt``: a dict with ``state_dict`` (and ``step``, ``optimizer``);
- ``fullmodel_e*.ckpt`` or DataParallel saves: keys prefixed ``frontend.`` / ``module.``.

Files are read with ``torch.load(weights_only=True)``: no code in a checkpoint runs. Every
key must match the architecture, name and shape; only a missing ``num_batches_tracked``
(a counter older PyTorch did not save) is tolerated. Random weights are never used
silently: they must be asked for with a seed, and the manifest records it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from ..errors import FeatprepError
from ..io import load_into, load_weights, sha256_file
from .model import ARCHITECTURES, PaseEncoder


class CheckpointError(FeatprepError):
    """A checkpoint file does not fit the architecture."""


def _unwrap(obj: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: not a PASE state dict (expected tensors by parameter name)")
    state = {}
    for key, value in obj.items():
        for prefix in ("module.", "frontend."):
            while key.startswith(prefix):
                key = key[len(prefix) :]
        state[key] = value
    return state


def load_state(model: PaseEncoder, path: str | Path) -> None:
    """Load a checkpoint file into ``model``; errors name the first bad key and shapes."""
    path = Path(path)
    raw = load_weights(path, "PASE checkpoint", error=CheckpointError)
    state = _unwrap(raw, path)
    for key, tensor in model.state_dict().items():
        # BatchNorm's step counter is not in every official checkpoint and changes nothing
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = torch.zeros_like(tensor)
    load_into(model, state, path, model.arch.name, error=CheckpointError)


def load_encoder(
    arch: str, checkpoint: str | Path | None = None, random_init_seed: int | None = None
) -> PaseEncoder:
    """An eval-mode encoder of ``arch`` (``pase``, ``pase+``, ``pase_dense_qrnn``).

    Exactly one of ``checkpoint`` (a file path) and ``random_init_seed`` (random weights,
    asked for explicitly) must be given. The returned module carries ``source``: the
    checkpoint's sha256 or ``random-init:<seed>``, for the manifest.
    """
    if arch not in ARCHITECTURES:
        raise FeatprepError(f"unknown PASE architecture {arch!r}; expected one of {sorted(ARCHITECTURES)}")
    if (checkpoint is None) == (random_init_seed is None):
        raise FeatprepError(
            "a PASE encoder needs a checkpoint file or an explicit random initialisation seed (not both)"
        )
    if random_init_seed is not None:
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(random_init_seed)
        model = PaseEncoder(arch)
        torch.random.set_rng_state(generator_state)
        model.source = f"random-init:{random_init_seed}"
    else:
        model = PaseEncoder(arch)
        load_state(model, checkpoint)
        model.source = f"sha256:{sha256_file(checkpoint)}"
    return model.eval()


def state_digest(model: PaseEncoder) -> str:
    """sha256 of the model's tensors (to tell two encoders apart in tests and logs)."""
    h = hashlib.sha256()
    for key, tensor in model.state_dict().items():
        h.update(key.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()
