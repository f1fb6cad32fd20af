"""The duration model's trainer: its options (`DurationConfig`, presets ``rnn`` and
``merlin``) and `train_duration`, through the loop every featprep model shares.

A step is a batch of whole utterances; the loss is the squared error of the normalised
durations summed over real phones and their states (the loop divides by their count).
Validation reports that mean (``valid_mse``, which the learning rate's plateau watches)
and the RMSE in frames per phone of the whole-frame durations the model would time
labels with (``valid_rmse_frames``). Checkpoints, exact resume, log.jsonl, TensorBoard,
Ctrl-C and torchrun are the shared loop's (`samplernn.loop`, `checkpoint`, `distributed`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ArgumentError, FeatprepError
from ..io import atomic_write_text
from ..recipe_schema import Rule, choice, number
from ..samplernn.checkpoint import (
    CHECKPOINT_KEYS,
    write_checkpoint,
)
from ..samplernn.distributed import Group
from ..samplernn.loop import Optimisation, SharedEpochs, Task, join_run, resume_and_run
from ..samplernn.train import check_options, config_from_preset, has_split, speaker_source
from ..splits import TRAINED_ROLES
from .data import PhoneBatch, PhoneCorpus, UtteranceBatches, make_batch
from .model import KINDS, DurationModel, DurationModelConfig

logger = logging.getLogger(__name__)

#: what a duration run's config.json says it is (`featprep evaluate` and `generate` read it)
KIND = "duration"

PRESETS: dict[str, dict[str, Any]] = {
    # the default: a bidirectional GRU over the utterance's phones
    "rnn": {"model": "rnn", "hidden": 256, "layers": 2},
    # Merlin's duration baseline: 4 x 512 tanh, one phone at a time
    "merlin": {"model": "ffn", "hidden": 512, "layers": 4},
}


@dataclass
class DurationConfig:
    model: str = "rnn"  # rnn (bidirectional GRU over phones) | ffn (Merlin's feed-forward)
    hidden: int = 256
    layers: int = 2
    speaker_mode: str = "embedding"  # none | embedding | pase_seed
    speaker_dim: int = 16
    seed_seconds: float = 1.0  # pase_seed: window of speech the speaker vector comes from
    batch_size: int = 16  # utterances
    lr: float = 1e-3
    clip_norm: float = 5.0
    plateau_patience: int = 3
    plateau_factor: float = 0.5
    valid_every: int = 100
    checkpoint_every: int = 500
    max_bad_steps: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        check_options(self, DURATION_RULES)

    @classmethod
    def from_preset(cls, preset: str, overrides: dict[str, Any] | None = None) -> DurationConfig:
        return config_from_preset(cls, PRESETS, preset, overrides)


DURATION_RULES: dict[str, Rule] = {
    "model": choice(*KINDS),
    "hidden": number(1, integer=True),
    "layers": number(1, integer=True),
    "speaker_mode": choice("none", "embedding", "pase_seed"),
    "speaker_dim": number(1, integer=True),
    "seed_seconds": number(0.1),
    "batch_size": number(1, integer=True),
    "lr": number(0.0, above=True),
    "clip_norm": number(0.0, above=True),
    "plateau_patience": number(0, integer=True),
    "plateau_factor": number(0.0, 1.0, above=True, below=True),
    "valid_every": number(1, integer=True),
    "checkpoint_every": number(1, integer=True),
    "max_bad_steps": number(1, integer=True),
    "seed": number(0, integer=True),
}


def model_config(cfg: DurationConfig, corpus: PhoneCorpus, speaker_input: int) -> DurationModelConfig:
    return DurationModelConfig(
        kind=cfg.model, inputs=len(corpus.questions), outputs=corpus.outputs, hidden=cfg.hidden,
        layers=cfg.layers, speakers=len(corpus.speakers) if cfg.speaker_mode == "embedding" else 0,
        speaker_input=speaker_input, speaker_dim=cfg.speaker_dim,
    )  # fmt: skip


def whole_frames(normalised: np.ndarray, corpus_norm: Any) -> np.ndarray:
    """Normalised durations (phones, units) -> whole frames, at least one per phone (the
    middle unit gets it), as labels are timed."""
    frames = np.maximum(np.rint(corpus_norm.inverse(normalised)), 0).astype(np.int64)
    empty = frames.sum(axis=1) == 0
    frames[empty, frames.shape[1] // 2] = 1
    return frames


def train_duration(
    directory: str | Path,
    out: str | Path,
    cfg: DurationConfig,
    *,
    steps: int | None = None,
    epochs: int | None = None,
    device: str = "auto",
    resume: bool = False,
    verify: bool = True,
    log: Callable[[str], None] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Train a duration model on ``directory`` (prepared with labels, normstats'd) into the
    run folder ``out``; returns the last log record.

    As `featprep.samplernn.train.train`: ``steps`` / ``epochs`` count from the start of
    training, ``resume`` continues exactly, torchrun splits each batch's utterances over
    the ranks, rank 0 writes the log and checkpoints."""
    log = log or logger.info
    directory, out = Path(directory), Path(out)
    if not isinstance(cfg, DurationConfig):
        raise ArgumentError(f"cfg must be a DurationConfig, found {type(cfg).__name__}")
    group = join_run(out, cfg.batch_size, steps, epochs, device)
    corpus = PhoneCorpus(directory, ("train",), verify=verify, roles=TRAINED_ROLES)
    valid = (
        PhoneCorpus(directory, ("valid",), verify=verify, roles=TRAINED_ROLES)
        if has_split(directory, "valid")
        else None
    )
    task = _Steps(cfg, directory, corpus, valid, out, group, log)
    return resume_and_run(
        task, out, directory=directory, kind=KIND, resume=resume, config=asdict(cfg), compared=_compared,
        keys=CHECKPOINT_KEYS,
        announce=lambda: _announce(directory, out, cfg, task, log), board_tags=_BOARD_TAGS,
        checkpoint_every=cfg.checkpoint_every, steps=steps, epochs=epochs, progress=progress, log=log,
    )  # fmt: skip


class _Steps(Task):
    """The duration model's side of the loop: whole utterances, no state between steps."""

    loss_key, valid_key, rate_key, loss_name = "train_mse", "valid_mse", "durations_per_s", "mse"

    def __init__(
        self,
        cfg: DurationConfig,
        directory: Path,
        corpus: PhoneCorpus,
        valid: PhoneCorpus | None,
        out: Path,
        group: Group,
        log: Callable[[str], Any],
    ) -> None:
        self.cfg, self.corpus, self.valid, self.group = cfg, corpus, valid, group
        self.checkpoint, dev = out / "checkpoint.pt", group.device
        say = log if group.rank == 0 else lambda _m: None
        self.seeds = speaker_source(cfg, directory, corpus.speakers, dev, say)
        torch.manual_seed(cfg.seed)
        speaker_input = self.seeds.dim if self.seeds is not None else 0
        try:
            self.model = DurationModel(model_config(cfg, corpus, speaker_input)).to(dev)
        except (MemoryError, RuntimeError) as e:  # torch's allocator, on options beyond the machine
            if not isinstance(e, MemoryError) and "allocate" not in str(e):
                raise
            raise FeatprepError(
                f"a duration model of hidden {cfg.hidden}, layers {cfg.layers} does not fit in memory on "
                f"{dev}: smaller hidden or layers"
            ) from None
        self.net = group.wrap(self.model)
        self.optimisation = Optimisation(
            self.model.parameters(), lr=cfg.lr, clip_norm=cfg.clip_norm, plateau_factor=cfg.plateau_factor,
            plateau_patience=cfg.plateau_patience, max_bad_steps=cfg.max_bad_steps, world=group.world,
        )  # fmt: skip
        loader = UtteranceBatches(
            corpus, cfg.batch_size // group.world, seed=cfg.seed, rank=group.rank, world=group.world
        )
        self.batches = SharedEpochs(loader, group)

    def who(self, batch: PhoneBatch, draws: np.random.Generator | None) -> torch.Tensor:
        """The batch's speakers as the model takes them: indices, or PASE vectors of random
        windows (``draws``) or, without draws, of each speaker's fixed window."""
        if self.seeds is None:
            return batch.speakers
        if draws is None:
            return torch.stack([self.seeds.fixed(int(s)) for s in batch.speakers])
        return self.seeds.draw(batch.speakers.numpy(), draws)

    def loss(self, batch: PhoneBatch, step: int) -> tuple[torch.Tensor, int]:
        dev = self.group.device
        draws = np.random.default_rng([self.cfg.seed, step, self.group.rank])  # reproducible on resume
        predicted = self.net(batch.phones.to(dev), batch.lengths, self.who(batch, draws).to(dev))
        mask = batch.mask.to(dev)
        error = ((predicted - batch.targets.to(dev)) ** 2)[mask].sum()
        return error, int(mask.sum()) * self.corpus.outputs

    @torch.no_grad()
    def validate(self, step: int) -> dict[str, float]:
        if self.valid is None or step % self.cfg.valid_every:
            return {}
        self.model.eval()
        squared, count, frame_errors = 0.0, 0, []
        utterances = self.valid.utterances
        for start in range(0, len(utterances), self.cfg.batch_size):
            chosen = utterances[start : start + self.cfg.batch_size]
            batch = make_batch(self.valid, chosen)
            dev = self.group.device
            predicted = self.model(batch.phones.to(dev), batch.lengths, self.who(batch, None).to(dev)).cpu()
            squared += float(((predicted - batch.targets) ** 2)[batch.mask].sum())
            count += int(batch.mask.sum()) * self.valid.outputs
            for i, u in enumerate(chosen):
                frames = whole_frames(predicted[i, : u.n_phones].numpy(), self.corpus.targets_norm)
                frame_errors.append(frames.sum(axis=1) - self.valid.durations(u).sum(axis=1))
        self.model.train()
        rmse = float(np.sqrt(np.mean(np.concatenate(frame_errors).astype(np.float64) ** 2)))
        return {"valid_mse": squared / count, "valid_rmse_frames": rmse}

    def save(self) -> None:
        write_checkpoint(self, asdict(self.cfg), {}, {})


def _announce(
    directory: Path, out: Path, cfg: DurationConfig, task: _Steps, log: Callable[[str], Any]
) -> None:
    """RUN/config.json (what `run.DurationRun` rebuilds the model from), and what the run
    trains, on what, where."""
    from ..manifest import read_manifest

    corpus, valid = task.corpus, task.valid
    run_info = {
        "kind": KIND,
        "train": asdict(cfg),
        "model": task.model.cfg.to_dict(),
        "speakers": corpus.speakers,
        "unit": corpus.unit,
        "questions": corpus.questions,
        "corpus": str(directory.resolve()),
        "linguistic": read_manifest(directory)["recipe"].get("linguistic"),
        "processes": task.group.world,
    }
    atomic_write_text(out / "config.json", json.dumps(run_info, indent=1))
    n_params = sum(p.numel() for p in task.model.parameters())
    log(
        f"train duration: device {task.group.device}, {n_params:,} parameters, model {cfg.model} "
        f"{cfg.layers} x {cfg.hidden}, speaker {cfg.speaker_mode}, {corpus.unit} durations "
        f"from {len(corpus.questions)} questions"
    )
    log(
        f"corpus {directory}: train {len(corpus.utterances)} utterances, {len(corpus.speakers)} speakers"
        + (f", valid {len(valid.utterances)}" if valid is not None else ", no valid split")
    )
    step = task.optimisation.step
    log(
        f"run folder {out}: checkpoint.pt every {cfg.checkpoint_every} steps and at the end"
        + (f", resumed at step {step}" if step else "")
    )


def _compared(config: dict[str, Any]) -> dict[str, Any]:
    """The options a resumed run must share with its checkpoint: all of them (options
    newer than the checkpoint at their defaults)."""
    return {**asdict(DurationConfig()), **config}


# log.jsonl keys -> TensorBoard tags
_BOARD_TAGS = {
    "train_mse": "train/duration_mse",
    "valid_mse": "valid/duration_mse",
    "valid_rmse_frames": "valid/duration_rmse_frames",
    "grad_norm": "train/grad_norm",
    "lr": "train/lr",
    "durations_per_s": "train/durations_per_s",
    "skipped": "train/skipped_steps",
}
