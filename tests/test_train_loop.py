"""The trainer's shared parts (loop, checkpoint, distributed) with a model other than SampleRNN."""

import json

import numpy as np
import pytest
import torch

from featprep.errors import FeatprepError
from featprep.samplernn.checkpoint import CHECKPOINT_KEYS, write_checkpoint
from featprep.samplernn.distributed import Group
from featprep.samplernn.loop import Optimisation, SharedEpochs, Task, join_run, resume_and_run


class Rows:
    """Batches of ``size`` rows of (x, y) in a new order each epoch (a `BatchLoader`)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, size: int) -> None:
        self.x, self.y, self.size, self.epoch, self.next = x, y, size, 0, 0
        self.order = np.random.default_rng([0, 0]).permutation(len(x)).tolist()

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.next >= len(self.order):
            self.epoch += 1
            self.order, self.next = (
                np.random.default_rng([0, self.epoch]).permutation(len(self.x)).tolist(),
                0,
            )
            raise StopIteration
        rows = self.order[self.next : self.next + self.size]
        self.next += self.size
        return self.x[rows], self.y[rows]

    def empty_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[:0], self.y[:0]

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "order": self.order, "next": self.next}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.order, self.next = state["epoch"], list(state["order"]), state["next"]


class Regression(Task):
    """A noisy linear regression (torch's generator draws the noise: resume must restore it)."""

    loss_key, valid_key = "train_mse", "valid_mse"

    def __init__(self, out, x, y) -> None:
        self.group, self.checkpoint, self.x, self.y = (
            Group.join(torch.device("cpu")),
            out / "checkpoint.pt",
            x,
            y,
        )
        torch.manual_seed(0)
        self.model = torch.nn.Linear(3, 1)
        self.optimisation = Optimisation(
            self.model.parameters(),
            lr=0.2,
            clip_norm=5.0,
            plateau_factor=0.5,
            plateau_patience=0,
            max_bad_steps=3,
        )
        self.batches = SharedEpochs(Rows(x, y, 4), self.group)

    def loss(self, batch, step):
        x, y = batch
        return ((self.model(x + 0.01 * torch.randn_like(x)) - y) ** 2).sum(), len(y)

    def validate(self, step):
        if step % 5:
            return {}
        with torch.no_grad():
            return {"valid_mse": float(((self.model(self.x) - self.y) ** 2).mean())}

    def save(self):
        write_checkpoint(self, {"lr": 0.2}, {}, {})


def _train(out, steps, resume=False, config=None):
    x = torch.from_numpy(np.random.default_rng(1).normal(size=(10, 3)).astype(np.float32))
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.3
    join_run(out, 4, steps, None, "cpu")
    task = Regression(out, x, y)
    announced = []
    record = resume_and_run(
        task, out, directory=out, kind="regression", resume=resume, config=config or {"lr": 0.2},
        compared=dict, keys=CHECKPOINT_KEYS,
        announce=lambda: announced.append(True), board_tags={"train_mse": "train/mse"},
        checkpoint_every=5, steps=steps, epochs=None, progress=False, log=lambda _m: None,
    )  # fmt: skip
    assert announced == [True]
    return record


def _records(out):
    return [
        {k: v for k, v in json.loads(line).items() if k != "targets_per_s"}
        for line in (out / "log.jsonl").read_text().splitlines()
    ]


def test_another_model_trains_and_resumes_exactly_with_the_shared_loop(tmp_path):
    whole = tmp_path / "whole"
    last = _train(whole, 30)
    records = _records(whole)
    assert [r["step"] for r in records] == list(range(1, 31))
    assert [r["epoch"] for r in records[::3]] == list(range(10))  # 3 batches an epoch: 4 + 4 + 2 rows
    valid = [r["valid_mse"] for r in records if "valid_mse" in r]
    assert len(valid) == 6 and last["valid_mse"] < valid[0] / 2  # validated every 5 steps; it learns
    assert records[-1]["lr"] == 0.1  # halved on the plateau at step 10, in the scheduler's state
    parts = tmp_path / "parts"
    _train(parts, 12)  # saved at step 10 and at its end, step 12, inside an epoch
    assert torch.load(parts / "checkpoint.pt", weights_only=True)["step"] == 12
    _train(parts, 30, resume=True)
    assert _records(parts) == records  # the same losses, noise draws, epochs and learning rates
    with pytest.raises(FeatprepError, match="holds a trained run"):
        _train(parts, 40)
    with pytest.raises(FeatprepError, match="trained with another configuration"):
        _train(parts, 40, resume=True, config={"lr": 0.1})
