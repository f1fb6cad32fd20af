"""SampleRNN's trainer: its options (`TrainConfig`, presets ``small`` and ``paper``) and `train`.

`train` builds the model, its batch source (`TBPTTLoader`) and speaker vectors, and runs
the loop; what any model's trainer shares lives beside it: `loop` (optimisation, epochs
shared across ranks, logging, Ctrl-C), `checkpoint` (exact resume), `distributed`
(torchrun), and this model's `loss`. A resumed run logs the same losses as one that
never stopped. Losses are NLL in nats over real targets only, reported in bits per sample.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import FRAME_SHIFT
from ..errors import ArgumentError, FeatprepError
from ..io import atomic_write_text, load_into
from ..pase.architectures import ARCHITECTURES
from ..recipe_schema import Rule, choice, flag, integers, number, text
from ..splits import TRAINED_ROLES
from .checkpoint import CHECKPOINT_KEYS, write_checkpoint
from .data import Corpus, TBPTTLoader
from .distributed import Group
from .loop import Optimisation, RunLog, SharedEpochs, Task, join_run, resume_and_run
from .loss import chunk_loss, evaluate_nll
from .model import ModelConfig, SampleRNN
from .speakers import SpeakerSource

logger = logging.getLogger(__name__)


PRESETS: dict[str, dict[str, Any]] = {
    # the SSW 2019 configuration
    "paper": {"hidden": 1024, "batch_size": 128, "seq_len": 13, "lr": 1e-3, "sample_every": 5000},
    # tests, the demo and CPU checks
    "small": {"hidden": 64, "batch_size": 8, "seq_len": 13, "lr": 1e-3, "embedding": 32},
}


@dataclass
class TrainConfig:
    features: str = "ling"  # a feature spec: ling, acoustic, compact, compact_lf0, ling_lf0, A+B[c,..], none
    speaker_mode: str = "embedding"  # none | embedding | pase_seed | pase_trained
    seed_seconds: float = 1.0  # pase modes: window of speech the speaker vector comes from
    pase_arch: str = "pase"  # pase_trained: the encoder fine-tuned in the loop
    pase_checkpoint: str = ""  # pase_trained: its starting weights ("": random, from seed)
    hidden: int = 1024
    layers: int = 1
    tier_hidden: list[int] = field(default_factory=list)  # per frame tier, bottom-up ([]: hidden)
    tier_layers: list[int] = field(default_factory=list)  # per frame tier, bottom-up ([]: layers)
    rnn: str = "gru"
    embedding: int = 256
    ratios: list[int] = field(default_factory=lambda: [20, 4])
    quantisation: str = "mu-law"
    batch_size: int = 128
    seq_len: int = 13
    loader_workers: int = 2  # threads reading batches ahead (0: read in the training loop)
    lr: float = 1e-3
    clip_norm: float = 5.0
    plateau_patience: int = 3
    plateau_factor: float = 0.5
    valid_every: int = 500  # steps
    checkpoint_every: int = 500
    max_bad_steps: int = 10
    sample_every: int = 0  # write RUN/samples/step-N.wav every N steps (0: never)
    sample_seconds: float = 1.0
    seed: int = 0
    bf16: bool = False

    def __post_init__(self) -> None:
        """Every option of the right kind and in its range, checked where it is made, so
        that a notebook's config fails as the command line's does: one line naming it."""
        check_options(self, TRAIN_RULES)
        if math.prod(self.ratios) != FRAME_SHIFT:
            raise FeatprepError(
                f"training option 'ratios' {self.ratios}: their product must be {FRAME_SHIFT} "
                "(the top tier reads one 5 ms frame)"
            )

    @property
    def feature_spec(self) -> str | None:
        """``features`` as `Corpus` takes it: None for ``none``."""
        return None if self.features == "none" else self.features

    @classmethod
    def from_preset(cls, preset: str, overrides: dict[str, Any] | None = None) -> TrainConfig:
        return config_from_preset(cls, PRESETS, preset, overrides)


def check_options(config: Any, rules: dict[str, Rule]) -> None:
    """Every option of a training config (a dataclass) obeys its rule, or one line naming it."""
    for name, rule in rules.items():
        value = getattr(config, name)
        if not rule.test(value):
            raise FeatprepError(f"training option {name!r} must be {rule.expected}, found {value!r}")


def config_from_preset(
    cls: type, presets: dict[str, dict[str, Any]], preset: str, overrides: dict[str, Any] | None
) -> Any:
    """A training config of class ``cls``: the preset's values with ``overrides`` laid over
    them; an unknown preset or option is one line naming it."""
    if preset not in presets:
        raise FeatprepError(f"unknown preset {preset!r}; expected one of {sorted(presets)}")
    values = {**presets[preset], **(overrides or {})}
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise FeatprepError(f"unknown training option {unknown[0]!r}; known: {', '.join(sorted(known))}")
    return cls(**values)


#: the valid values of each `TrainConfig` option
TRAIN_RULES: dict[str, Rule] = {
    "features": text(r"\S+", "a feature spec (ling, compact, acoustic, none, A+B[c,..], ...)"),
    "speaker_mode": choice("none", "embedding", "pase_seed", "pase_trained"),
    "seed_seconds": number(0.1),
    "pase_arch": choice(*ARCHITECTURES),
    "pase_checkpoint": text(),
    "hidden": number(1, integer=True),
    "layers": number(1, integer=True),
    "tier_hidden": integers(1),
    "tier_layers": integers(1),
    "rnn": choice("gru", "lstm"),
    "embedding": number(1, integer=True),
    "ratios": integers(1, empty=False),
    "quantisation": choice("mu-law", "linear"),
    "batch_size": number(1, integer=True),
    "seq_len": number(1, integer=True),
    "loader_workers": number(0, integer=True),
    "lr": number(0.0, above=True),
    "clip_norm": number(0.0, above=True),
    "plateau_patience": number(0, integer=True),
    "plateau_factor": number(0.0, 1.0, above=True, below=True),
    "valid_every": number(1, integer=True),
    "checkpoint_every": number(1, integer=True),
    "max_bad_steps": number(1, integer=True),
    "sample_every": number(0, integer=True),
    "sample_seconds": number(0.0, above=True),
    "seed": number(0, integer=True),
    "bf16": flag(),
}


def _model_config(cfg: TrainConfig, corpus: Corpus, seeds: SpeakerSource | None) -> ModelConfig:
    return ModelConfig(
        ratios=list(cfg.ratios), hidden=cfg.hidden, layers=cfg.layers, rnn=cfg.rnn, embedding=cfg.embedding,
        tier_hidden=list(cfg.tier_hidden), tier_layers=list(cfg.tier_layers),
        quantisation=cfg.quantisation, feature_dim=corpus.feature_dim,
        categorical=corpus.spec.vocabulary_sizes if corpus.spec else [],
        speakers=len(corpus.speakers) if cfg.speaker_mode == "embedding" else 0,
        speaker_input=seeds.dim if seeds is not None else 0,
    )  # fmt: skip


def train(
    directory: str | Path,
    out: str | Path,
    cfg: TrainConfig,
    *,
    steps: int | None = None,
    epochs: int | None = None,
    device: str = "auto",
    resume: bool = False,
    verify: bool = True,
    log: Callable[[str], None] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Train on ``directory`` (a prepared, normstats'd corpus) into the run folder ``out``,
    on the utterances of its ``modeling`` speakers (`TRAINED_ROLES`; every speaker unless
    the recipe's ``split.modeling_per_gender`` picks some).

    Returns the last log record. ``steps`` or ``epochs`` bound the run (counting from
    the start of training, so a resumed run stops where the uninterrupted one would).
    Under ``torchrun`` (DistributedDataParallel; gloo on the CPU, nccl on GPUs) the batch
    slots are split across ranks, each rank walks every world-th utterance, the loss is
    the mean over all ranks' targets, and only rank 0 writes the log and checkpoints.
    Messages go to ``log`` (default: this module's logger); ``progress`` shows a bar of
    the steps (with ``steps``) or epochs on stderr (rank 0).
    """
    log = log or logger.info
    directory, out = Path(directory), Path(out)
    if not isinstance(cfg, TrainConfig):
        raise ArgumentError(f"cfg must be a TrainConfig, found {type(cfg).__name__}")
    group = join_run(out, cfg.batch_size, steps, epochs, device)
    features = cfg.feature_spec
    # checked before the first step; verify=False skips the sha256 of every file
    corpus = Corpus(directory, ("train",), features, verify=verify, roles=TRAINED_ROLES)
    valid = (
        Corpus(directory, ("valid",), features, verify=verify, roles=TRAINED_ROLES)
        if has_split(directory, "valid")
        else None
    )
    task = _Steps(cfg, directory, corpus, valid, out, group, log)
    return resume_and_run(
        task, out, directory=directory, kind="samplernn", resume=resume, config=asdict(cfg),
        compared=_compared, keys=task.keys,
        announce=lambda: _announce(directory, out, cfg, task, steps, epochs, log), board_tags=_BOARD_TAGS,
        checkpoint_every=cfg.checkpoint_every, steps=steps, epochs=epochs, progress=progress, log=log,
    )  # fmt: skip


class _Steps(Task):
    """SampleRNN's side of the loop: TBPTT chunks whose hidden state carries over from one
    step to the next, speakers as indices or PASE vectors, NLL in bits per sample."""

    loss_key, valid_key, rate_key, loss_name = "train_bits", "valid_bits", "samples_per_s", "bits"

    def __init__(
        self,
        cfg: TrainConfig,
        directory: Path,
        corpus: Corpus,
        valid: Corpus | None,
        out: Path,
        group: Group,
        log: Callable[[str], Any],
    ) -> None:
        self.cfg, self.corpus, self.valid, self.out, self.group = cfg, corpus, valid, out, group
        self.checkpoint, dev = out / "checkpoint.pt", group.device
        say = log if group.rank == 0 else lambda _m: None
        self.seeds = speaker_source(cfg, directory, corpus.speakers, dev, say)
        self.encoder = self.seeds.encoder if self.seeds is not None else None
        torch.manual_seed(cfg.seed)
        self.model = SampleRNN(_model_config(cfg, corpus, self.seeds)).to(dev)
        self.net = group.wrap(self.model)
        if self.encoder is not None:
            self.seeds.net = group.wrap(self.encoder)
        self.optimisation = Optimisation(
            [*self.model.parameters(), *(self.encoder.parameters() if self.encoder is not None else [])],
            lr=cfg.lr, clip_norm=cfg.clip_norm, plateau_factor=cfg.plateau_factor,
            plateau_patience=cfg.plateau_patience, max_bad_steps=cfg.max_bad_steps, world=group.world,
        )  # fmt: skip
        self.slots = cfg.batch_size // group.world
        loader = TBPTTLoader(
            corpus, self.slots, cfg.seq_len, seed=cfg.seed, rank=group.rank, world=group.world,
            workers=cfg.loader_workers,
        )  # fmt: skip
        self.batches = SharedEpochs(loader, group)
        self.new_epoch()
        #: the parts of its checkpoint
        self.keys = CHECKPOINT_KEYS | {"hidden"}

    def restore(self, saved: dict[str, Any]) -> None:
        super().restore(saved)
        if self.encoder is not None:
            load_into(self.encoder, saved["encoder"], self.checkpoint, "the PASE encoder of these options")
        self.state = [s.to(self.group.device) for s in saved["hidden"][self.group.rank]]

    def new_epoch(self) -> None:
        self.state = [s.to(self.group.device) for s in self.model.initial_state(self.slots)]

    def loss(self, batch, step: int) -> tuple[torch.Tensor, int]:
        cfg, dev, vectors = self.cfg, self.group.device, None
        if self.seeds is not None:  # a new random window per step, reproducible from the step
            self.seeds.train_mode()
            draws = np.random.default_rng([cfg.seed, step, self.group.rank])
            vectors = self.seeds.draw(batch.speakers.numpy(), draws)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cfg.bf16 and dev.type == "cuda"):
            nll, n, state = chunk_loss(self.model, batch, self.state, dev, vectors, forward=self.net)
        self.state = [s.detach() for s in state]
        return nll, n

    def report(self, mean: float) -> float:
        return mean / math.log(2)

    def validate(self, step: int) -> dict[str, float]:
        if self.valid is None or step % self.cfg.valid_every:
            return {}
        loader = TBPTTLoader(self.valid, self.cfg.batch_size, self.cfg.seq_len, seed=0)
        return {"valid_bits": evaluate_nll(self.model, loader, self.group.device, self.seeds)}

    def after_step(self, step: int, run_log: RunLog) -> None:
        cfg = self.cfg
        if self.group.rank == 0 and cfg.sample_every and step % cfg.sample_every == 0:
            corpus = self.valid or self.corpus
            audio = _write_sample(self.out, step, self.model, corpus, self.seeds, cfg.sample_seconds)
            run_log.board.audio(step, "sample", audio, 16000)

    def save(self) -> None:
        extra = {"encoder": self.encoder.state_dict()} if self.encoder is not None else {}
        write_checkpoint(self, asdict(self.cfg), {"hidden": [s.cpu() for s in self.state]}, extra)


def speaker_source(
    cfg: TrainConfig, directory: Path, speakers: list[str], dev: torch.device, log
) -> SpeakerSource | None:
    """The PASE speaker vectors of the pase modes (None for the lookup modes)."""
    if cfg.speaker_mode not in ("pase_seed", "pase_trained"):
        return None
    seeds = SpeakerSource(cfg.speaker_mode, directory, speakers, cfg, dev)
    if seeds.fallback:
        log(f"PASE seeds from train utterances (no valid ones) for: {', '.join(seeds.fallback)}")
    return seeds


def _announce(
    directory: Path, out: Path, cfg: TrainConfig, task: _Steps, steps: int | None, epochs: int | None, log
) -> None:
    """RUN/config.json (what `run.Run` rebuilds the model from), and what the run trains,
    on what, where."""
    from ..manifest import read_manifest

    corpus, valid, world = task.corpus, task.valid, task.group.world
    features = cfg.feature_spec
    run_info = {
        "train": asdict(cfg),
        "model": task.model.cfg.to_dict(),
        "speakers": corpus.speakers,
        "features": features,
        "corpus": str(directory.resolve()),
        "linguistic": read_manifest(directory)["recipe"].get("linguistic"),
        "processes": world,
    }
    atomic_write_text(out / "config.json", json.dumps(run_info, indent=1))
    n_params = sum(p.numel() for p in task.optimisation.parameters)
    bounds = [f"step {steps}"] * (steps is not None) + [f"epoch {epochs}"] * (epochs is not None)
    log(
        f"train: device {task.group.device}" + (f" x {world} processes" if world > 1 else "")
        + f", {n_params:,} parameters, features {features or 'none'}, speaker {cfg.speaker_mode}"
        + (f", until {' or '.join(bounds)}" if bounds else "")
    )  # fmt: skip
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
    """The options a resumed run must share with its checkpoint: all but the reader
    threads (they change no result), options newer than the checkpoint at their defaults."""
    options = {**asdict(TrainConfig()), **config}
    options.pop("loader_workers")
    return options


# log.jsonl keys -> TensorBoard tags
_BOARD_TAGS = {
    "train_bits": "train/nll_bits_per_sample",
    "valid_bits": "valid/nll_bits_per_sample",
    "grad_norm": "train/grad_norm",
    "lr": "train/lr",
    "samples_per_s": "train/samples_per_s",
    "skipped": "train/skipped_steps",
}


def _write_sample(
    out: Path, step: int, model: SampleRNN, corpus: Corpus, seeds, seconds: float
) -> np.ndarray:
    """Generate the first seconds of the first (valid) utterance: RUN/samples/step-N.wav."""
    from ..io import atomic_write_bytes, wav_bytes
    from .generate import generate

    u = corpus.utterances[0]
    frames = min(u.n_frames, max(1, round(seconds * 200)))
    features = torch.from_numpy(corpus.frames(u, 0, frames))[None] if corpus.features else None
    who = torch.tensor([u.speaker]) if seeds is None else seeds.fixed(u.speaker)[None]
    audio = generate(model, features, who, frames, seed=step)
    model.train()
    folder = out / "samples"
    folder.mkdir(exist_ok=True)
    samples = audio[0].numpy()
    atomic_write_bytes(folder / f"step-{step:07d}.wav", wav_bytes(samples, 16000))
    return samples


def has_split(directory: Path, split: str) -> bool:
    """Whether a speaker the trainer learns from has utterances in ``split``."""
    from ..manifest import read_manifest

    return any(
        s.get("role") in TRAINED_ROLES and s.get("utterances", {}).get(split)
        for s in read_manifest(directory)["speakers"]
    )
