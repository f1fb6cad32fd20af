"""The processes of one training run: a single one, or the ranks ``torchrun`` starts.

A model's trainer asks `Group.join` for its group, wraps what it trains with `Group.wrap`
(DistributedDataParallel under torchrun: gloo on the CPU, nccl on GPUs), sums its losses
with `Group.all_sum`, gathers each rank's data position for a checkpoint with
`Group.gather`, and ends with `Group.leave`. Nothing here knows the model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Group:
    """This process's ``rank`` of ``world``, its ``device``, and whether it ``owns`` the
    process group (made it, so destroys it)."""

    rank: int
    world: int
    device: torch.device
    owns: bool

    @classmethod
    def join(cls, dev: torch.device) -> Group:
        """The group of this process under torchrun (``WORLD_SIZE`` > 1), made if it does not
        exist yet, with this rank's GPU (``LOCAL_RANK``) for a CUDA ``dev``; otherwise the
        process alone on ``dev``."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return cls(0, 1, dev, False)
        import torch.distributed as dist

        if dev.type == "cuda":
            dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(dev)
        made = not dist.is_initialized()
        if made:
            dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
        return cls(dist.get_rank(), world, dev, made)

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        """``module`` for the forward pass: DistributedDataParallel over the group, or
        ``module`` itself for one process."""
        if self.world == 1:
            return module
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(
            module, device_ids=[self.device.index] if self.device.type == "cuda" else None
        )

    def all_sum(self, values: list[float]) -> list[float]:
        """``values`` summed over the ranks (every rank calls it at the same point)."""
        if self.world == 1:
            return values
        import torch.distributed as dist

        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.tolist()

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order (every rank calls it at the same point)."""
        if self.world == 1:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def leave(self) -> None:
        """Destroy the group this process made, with every rank at the same point (PyTorch
        asks for it before a process exits), so no rank leaves while a peer still talks to
        it. A group made by the caller stays."""
        if not self.owns:
            return
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
