"""Training: Adam, global-norm clipping, ReduceLROnPlateau on valid NLL, exact resume.

One config (`TrainConfig`, presets ``small`` and ``paper``); one checkpoint dict with
model, optimizer, scheduler, loader position, the slots' hidden states, RNG state, step
and config, written to a temporary name and renamed. A resumed run logs the same losses
as one that never stopped. A non-finite loss skips the step (counted); ``max_bad_steps``
in a row stop training with a clear message. Losses are NLL in nats over real targets
only, reported in bits per sample.
"""

from __future__ import annotations

import ctypes
import json
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch
from torch.nn import functional as F

from .. import FRAME_SHIFT
from ..device import resolve_device
from ..errors import ArgumentError, FeatprepError, OutputError
from ..io import (
    atomic_path,
    atomic_write_text,
    check_output_dir,
    load_into,
    load_weights,
    remove_dead_temporaries,
)
from ..pase.architectures import ARCHITECTURES
from ..progress import progress_bar
from ..recipe_schema import Rule, choice, flag, integers, number, text
from .data import Corpus, TBPTTLoader
from .model import ModelConfig, SampleRNN, quantise
from .speakers import AudioSeeds, PaseSeeds
from .tensorboard import EventWriter

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
        for name, rule in TRAIN_RULES.items():
            value = getattr(self, name)
            if not rule.test(value):
                raise FeatprepError(f"training option {name!r} must be {rule.expected}, found {value!r}")
        if math.prod(self.ratios) != FRAME_SHIFT:
            raise FeatprepError(
                f"training option 'ratios' {self.ratios}: their product must be {FRAME_SHIFT} "
                "(the top tier reads one 5 ms frame)"
            )

    @classmethod
    def from_preset(cls, preset: str, overrides: dict[str, Any] | None = None) -> TrainConfig:
        if preset not in PRESETS:
            raise FeatprepError(f"unknown preset {preset!r}; expected one of {sorted(PRESETS)}")
        values = {**PRESETS[preset], **(overrides or {})}
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


class SpeakerSource:
    """Speaker vectors for the PASE modes: stored frames (pase_seed) or an encoder in the
    loop (pase_trained), whose BatchNorm layers keep their running statistics (eval mode)
    while its weights are fine-tuned: tiny batches of one window per slot would make
    batch statistics meaningless (the 2019 code left them in training mode)."""

    def __init__(self, mode: str, directory: Path, speakers: list[str], cfg: TrainConfig, dev) -> None:
        self.mode, self.encoder, self.net = mode, None, None
        if mode == "pase_seed":
            self.windows = PaseSeeds(directory, speakers, seconds=cfg.seed_seconds)
            self.dim = self.windows.dim
        else:
            from ..pase import load_encoder

            self.windows = AudioSeeds(directory, speakers, seconds=cfg.seed_seconds)
            self.encoder = load_encoder(
                cfg.pase_arch,
                checkpoint=cfg.pase_checkpoint or None,
                random_init_seed=None if cfg.pase_checkpoint else cfg.seed,
            ).to(dev)
            self.net = self.encoder
            self.dim = self.encoder.arch.emb_dim
        self.dev = dev

    @property
    def fallback(self) -> list[str]:
        return self.windows.fallback

    def train_mode(self) -> None:
        if self.encoder is not None:
            self.encoder.train()
            for m in self.encoder.modules():
                if isinstance(m, torch.nn.BatchNorm1d):
                    m.eval()

    def _encode(self, windows: np.ndarray, net) -> torch.Tensor:
        wav = torch.from_numpy(windows).to(self.dev)[:, None, :]
        return net(wav).mean(dim=2)

    def draw(self, speakers: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        """(B, E) vectors of random windows, differentiable for pase_trained."""
        if self.encoder is None:
            return torch.from_numpy(self.windows.draw(speakers, rng))
        return self._encode(self.windows.random_windows(speakers, rng), self.net)

    @torch.no_grad()
    def fixed(self, speaker: int) -> torch.Tensor:
        """(E,) inference vector of ``speaker``."""
        if self.encoder is None:
            return torch.from_numpy(self.windows.fixed(speaker))
        was = self.encoder.training
        self.encoder.eval()
        vector = self._encode(self.windows.fixed_window(speaker)[None], self.encoder)[0].cpu()
        if was:
            self.train_mode()
        return vector


def _model_config(cfg: TrainConfig, corpus: Corpus, seeds: SpeakerSource | None) -> ModelConfig:
    return ModelConfig(
        ratios=list(cfg.ratios), hidden=cfg.hidden, layers=cfg.layers, rnn=cfg.rnn, embedding=cfg.embedding,
        tier_hidden=list(cfg.tier_hidden), tier_layers=list(cfg.tier_layers),
        quantisation=cfg.quantisation, feature_dim=corpus.feature_dim,
        categorical=corpus.spec.vocabulary_sizes if corpus.spec else [],
        speakers=len(corpus.speakers) if cfg.speaker_mode == "embedding" else 0,
        speaker_input=seeds.dim if seeds is not None else 0,
    )  # fmt: skip


def chunk_loss(
    model: SampleRNN, batch, state, device, speakers=None, forward=None
) -> tuple[torch.Tensor, int, list[torch.Tensor]]:
    """Summed NLL (nats) over the batch's real targets, their number, the new state.

    ``speakers`` replaces the batch's speaker indices (PASE vectors, say)."""
    state = model.reset_state(state, batch.reset.to(device))
    samples = batch.samples.to(device)
    features = None if batch.features is None else batch.features.to(device)
    who = batch.speakers if speakers is None else speakers
    logits, state = (forward or model)(samples, features, who.to(device), state)
    targets = quantise(samples[:, model.top_frame :], model.cfg)
    mask = batch.mask.to(device)
    nll = F.cross_entropy(logits[mask], targets[mask], reduction="sum")
    return nll, int(mask.sum()), state


@torch.no_grad()
def evaluate_nll(model: SampleRNN, loader: TBPTTLoader, device, seeds: SpeakerSource | None = None) -> float:
    """Mean NLL in bits per sample over one pass of ``loader`` (PASE speakers: fixed seeds)."""
    model.eval()
    state = model.initial_state(loader.batch_size)
    state = [s.to(device) for s in state]
    total, count = 0.0, 0
    fixed = (
        None if seeds is None else torch.stack([seeds.fixed(i) for i in range(len(seeds.windows.utterances))])
    )
    for batch in loader:
        vectors = None if fixed is None else fixed[batch.speakers]
        nll, n, state = chunk_loss(model, batch, state, device, vectors)
        total, count = total + float(nll), count + n
    model.train()
    return total / max(count, 1) / math.log(2)


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory for reuse (``featprep train`` does, for itself).

    By default glibc hands a freed block above 32 MB back to the kernel, and the next
    step's tensor of that size faults its pages in again (zeroed): at hidden 1024 that
    made a CPU training step 1.35-1.45x slower (bench/train.py). The process then keeps
    its peak memory instead of returning it. Returns False where the C library is not
    glibc (nothing is changed)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    trim_threshold, mmap_threshold, most = -1, -3, 2**31 - 1  # malloc.h: M_TRIM_, M_MMAP_THRESHOLD
    return bool(mallopt(mmap_threshold, most)) and bool(mallopt(trim_threshold, most))


def _open_log(path: Path, step: int) -> TextIO:
    """log.jsonl for appending after ``step``: a resumed run drops the records a killed
    run wrote after its last checkpoint (it logs those steps again); a new one starts
    it empty."""
    kept = []
    for line in path.read_text().splitlines(keepends=True) if step and path.is_file() else []:
        if line.endswith("\n") and json.loads(line)["step"] <= step:  # (a kill may cut the last line)
            kept.append(line)
    atomic_write_text(path, "".join(kept))
    return path.open("a")


def _save(path: Path, payload: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def _distributed(dev: torch.device) -> tuple[int, int, torch.device, bool]:
    """(rank, world size, device, whether this call made the process group) under
    torchrun; (0, 1, dev, False) otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, dev, False
    import torch.distributed as dist

    if dev.type == "cuda":
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(dev)
    made = not dist.is_initialized()
    if made:
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return dist.get_rank(), world, dev, made


def _leave_group() -> None:
    """Destroy the process group with every rank at the same point (PyTorch asks for it
    before a process exits), so no rank leaves while a peer still talks to it."""
    import torch.distributed as dist

    dist.barrier()
    dist.destroy_process_group()


def _all_sum(values: list[float], world: int, dev: torch.device) -> list[float]:
    if world == 1:
        return values
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=dev)
    dist.all_reduce(t)
    return t.tolist()


def _gather(obj: Any, world: int) -> list[Any]:
    if world == 1:
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * world
    dist.all_gather_object(out, obj)
    return out


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
    """Train on ``directory`` (a prepared, normstats'd corpus) into the run folder ``out``.

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
    _check_bounds(cfg, steps, epochs)
    check_output_dir(out, "run folder")
    for name in ("checkpoint.pt", "config.json", "log.jsonl"):  # each replaced by a file as training goes
        if (out / name).exists() and not (out / name).is_file():
            raise OutputError(f"run folder {out} is not writable: {out / name} is not a file")
    remove_dead_temporaries(out)
    rank, world, dev, own_group = _distributed(resolve_device(device))
    if cfg.batch_size % world:
        raise FeatprepError(f"batch_size {cfg.batch_size} does not split into {world} processes")
    features = None if cfg.features == "none" else cfg.features
    # checked before the first step; verify=False skips the sha256 of every file
    corpus = Corpus(directory, ("train",), features, verify=verify)
    valid = Corpus(directory, ("valid",), features, verify=verify) if _has_split(directory, "valid") else None
    seeds = (
        SpeakerSource(cfg.speaker_mode, directory, corpus.speakers, cfg, dev)
        if cfg.speaker_mode in ("pase_seed", "pase_trained")
        else None
    )
    if seeds is not None and seeds.fallback and rank == 0:
        log(f"PASE seeds from train utterances (no valid ones) for: {', '.join(seeds.fallback)}")
    torch.manual_seed(cfg.seed)
    model = SampleRNN(_model_config(cfg, corpus, seeds)).to(dev)
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
        if seeds is not None and seeds.encoder is not None:
            seeds.net = DistributedDataParallel(
                seeds.encoder, device_ids=[dev.index] if dev.type == "cuda" else None
            )
    else:
        net = model
    trained = list(model.parameters()) + (list(seeds.encoder.parameters()) if seeds and seeds.encoder else [])
    optimizer = torch.optim.Adam(trained, lr=cfg.lr)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, factor=cfg.plateau_factor, patience=cfg.plateau_patience
    )
    slots = cfg.batch_size // world
    loader = TBPTTLoader(
        corpus, slots, cfg.seq_len, seed=cfg.seed, rank=rank, world=world, workers=cfg.loader_workers
    )
    state = [s.to(dev) for s in model.initial_state(slots)]
    step, bad, skipped = 0, 0, 0
    waiting = False  # this rank finished its epoch and waits for the others
    checkpoint = out / "checkpoint.pt"
    if not resume and checkpoint.is_file():
        raise FeatprepError(f"{out} holds a trained run: --resume to continue it, or another --out")
    if resume and not checkpoint.is_file():
        # killed before its first checkpoint: nothing was kept, so the same run starts afresh
        started = _started_options(out)
        if started is None:
            raise FeatprepError(f"{checkpoint} does not exist: nothing to resume")
        if _compared(started) != _compared(asdict(cfg)):
            raise FeatprepError(f"{out} was started with another configuration; resume with the same options")
        if rank == 0:
            log(f"{out} has no checkpoint yet (stopped before its first): starting it afresh")
        resume = False
    if resume:
        saved = load_weights(checkpoint, "training checkpoint", map_location=dev)
        if not isinstance(saved, dict) or not set(saved) >= _CHECKPOINT_KEYS:
            raise FeatprepError(f"{checkpoint} is not a featprep training checkpoint")
        if _compared(saved["config"]) != _compared(asdict(cfg)):
            raise FeatprepError(
                f"{checkpoint} was trained with another configuration; resume with the same options"
            )
        if len(saved["loader"]) != world:
            raise FeatprepError(f"{checkpoint} was written by {len(saved['loader'])} processes, not {world}")
        load_into(model, saved["model"], checkpoint, "the model of these options")
        if seeds is not None and seeds.encoder is not None:
            load_into(seeds.encoder, saved["encoder"], checkpoint, "the PASE encoder of these options")
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        loader.load_state_dict(saved["loader"][rank])
        state = [s.to(dev) for s in saved["hidden"][rank]]
        torch.random.set_rng_state(saved["rng"])
        step, skipped = saved["step"], saved["skipped"]
        waiting = saved["loader"][rank].get("waiting", False)
    out.mkdir(parents=True, exist_ok=True)  # once the options and the corpus are known good
    if rank == 0:
        from ..manifest import read_manifest

        recipe = read_manifest(directory)["recipe"]
        run_info = {
            "train": asdict(cfg),
            "model": model.cfg.to_dict(),
            "speakers": corpus.speakers,
            "features": features,
            "corpus": str(directory.resolve()),
            "linguistic": recipe.get("linguistic"),
            "processes": world,
        }
        atomic_write_text(out / "config.json", json.dumps(run_info, indent=1))
        n_params = sum(p.numel() for p in trained)
        bounds = [f"step {steps}"] * (steps is not None) + [f"epoch {epochs}"] * (epochs is not None)
        log(
            f"train: device {dev}" + (f" x {world} processes" if world > 1 else "") + f", {n_params:,} "
            f"parameters, features {features or 'none'}, speaker {cfg.speaker_mode}"
            + (f", until {' or '.join(bounds)}" if bounds else "")
        )
        log(
            f"corpus {directory}: train {len(corpus.utterances)} utterances, {len(corpus.speakers)} speakers"
            + (f", valid {len(valid.utterances)}" if valid is not None else ", no valid split")
        )
        log(
            f"run folder {out}: checkpoint.pt every {cfg.checkpoint_every} steps and at the end"
            + (f", resumed at step {step}" if resume else "")
        )
    log_file = _open_log(out / "log.jsonl", step) if rank == 0 else None
    board = EventWriter(out / "tensorboard") if rank == 0 else None
    if board is not None and resume:
        board.restart(step + 1)
    record: dict[str, Any] = {}
    started = time.perf_counter()
    done_samples = 0
    saved_step = step

    def epoch() -> int:
        """The epoch all ranks are in: a waiting rank's loader has begun the next one."""
        return loader.epoch - waiting

    interrupted = False  # Ctrl-C on any rank: every rank stops after the same step

    def stop() -> bool:
        # the same on every rank, so that all leave the loop at the same step
        return (
            interrupted or (steps is not None and step >= steps) or (epochs is not None and epoch() >= epochs)
        )

    def save() -> None:
        """Every rank takes part (the loader positions and states are gathered)."""
        loaders = _gather({**loader.state_dict(), "waiting": waiting}, world)
        hidden = _gather([s.cpu() for s in state], world)
        if rank == 0:
            payload = {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "loader": loaders,
                "hidden": hidden,
                "rng": torch.random.get_rng_state(),
                "step": step,
                "skipped": skipped,
                "config": asdict(cfg),
            }
            if seeds is not None and seeds.encoder is not None:
                payload["encoder"] = seeds.encoder.state_dict()
            _save(checkpoint, payload)

    ctrl_c = _CtrlC(log if rank == 0 else lambda _m: None)
    bar = progress_bar(
        steps if steps is not None else epochs,
        "step" if steps is not None else "epoch",
        enabled=progress and rank == 0,
        desc="train",
    )

    def advance() -> None:
        bar.update((step if steps is not None else epoch()) - bar.n)

    advance()  # a resumed run's bar starts where it stopped
    try:
        while not stop():
            if not waiting:
                try:
                    batch = next(loader)
                except StopIteration:
                    waiting = True
            if waiting:
                # the epoch ends when every rank has finished it (each still reading adds
                # 1, below); until then, empty batches
                if _all_sum([0.0], world, dev)[0] == 0:
                    waiting = False
                    state = [s.to(dev) for s in model.initial_state(slots)]
                    continue
                batch = loader.empty_batch()
            elif world > 1:
                _all_sum([1.0], world, dev)
            vectors = None
            if seeds is not None:  # a new random window per step, reproducible from the step
                seeds.train_mode()
                vectors = seeds.draw(batch.speakers.numpy(), np.random.default_rng([cfg.seed, step, rank]))
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cfg.bf16 and dev.type == "cuda"):
                nll, n, new_state = chunk_loss(model, batch, state, dev, vectors, forward=net)
            total_nll, total, asked = _all_sum(
                [float(nll.detach()), float(n), float(ctrl_c.asked)], world, dev
            )
            interrupted = asked > 0
            state = [s.detach() for s in new_state]
            optimizer.zero_grad(set_to_none=True)
            if total == 0 or not math.isfinite(total_nll):
                bad, skipped = bad + 1, skipped + 1
                if bad >= cfg.max_bad_steps:
                    raise FeatprepError(f"{bad} non-finite losses in a row at step {step}: training stopped")
                step += 1
                continue
            bad = 0
            # DistributedDataParallel averages gradients over ranks: scale to the global mean
            (nll * world / total).backward()
            grad_norm = float(torch.nn.utils.clip_grad_norm_(trained, cfg.clip_norm))
            optimizer.step()
            step += 1
            done_samples += int(total)
            record = {
                "step": step,
                "epoch": epoch(),
                "train_bits": total_nll / total / math.log(2),
                "grad_norm": grad_norm,
                "lr": optimizer.param_groups[0]["lr"],
                "skipped": skipped,
                "samples_per_s": done_samples / max(time.perf_counter() - started, 1e-9),
            }
            if valid is not None and step % cfg.valid_every == 0:
                valid_loader = TBPTTLoader(valid, cfg.batch_size, cfg.seq_len, seed=0)
                record["valid_bits"] = evaluate_nll(model, valid_loader, dev, seeds)
                scheduler.step(record["valid_bits"])
            if log_file is not None:
                log_file.write(json.dumps(record) + "\n")
                log_file.flush()
                board.scalars(step, {_BOARD_TAGS[k]: v for k, v in record.items() if k in _BOARD_TAGS})
                if step % 50 == 0 or "valid_bits" in record:
                    log(
                        " ".join(
                            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()
                        )
                    )
            bar.set_postfix(bits=f"{record['train_bits']:.3f}", refresh=False)
            advance()
            if rank == 0 and cfg.sample_every and step % cfg.sample_every == 0:
                audio = _write_sample(out, step, model, valid or corpus, seeds, cfg.sample_seconds)
                board.audio(step, "sample", audio, 16000)
            if step % cfg.checkpoint_every == 0:
                save()
                saved_step = step
        if step != saved_step:
            save()  # the run's end: the step limit, the last epoch read out, or Ctrl-C
        if rank == 0 and not interrupted:  # (an interrupted run says so below)
            log(f"checkpoint: {checkpoint} (step {step})")
    finally:
        bar.close()
        ctrl_c.close()
        if log_file is not None:
            log_file.close()
            board.close()
    if own_group:  # every rank ends at the same step, interrupted or not
        _leave_group()
    if interrupted:
        if rank == 0:
            log(f"interrupted at step {step}: {checkpoint} saved; --resume continues from it")
        raise KeyboardInterrupt
    return record


_CHECKPOINT_KEYS = {"model", "optimizer", "scheduler", "loader", "hidden", "rng", "step", "skipped", "config"}


class _CtrlC:
    """Ctrl-C (SIGINT) during training: the first asks for a stop after the current step,
    with a checkpoint to resume from exactly; a second stops at once. Only the main
    thread can take signals: elsewhere Ctrl-C keeps its usual effect."""

    def __init__(self, log) -> None:
        self.asked, self._log, self._installed = False, log, False
        if threading.current_thread() is threading.main_thread():
            # None: a handler not set from Python; Python's own is the one to put back
            self._previous = signal.signal(signal.SIGINT, self._handle) or signal.default_int_handler
            self._installed = True

    def _handle(self, _signum: int, _frame: Any) -> None:
        if self.asked:
            raise KeyboardInterrupt
        self.asked = True
        self._log("interrupted: stopping after this step with a checkpoint (Ctrl-C again: at once, without)")

    def close(self) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False


def _check_bounds(cfg: TrainConfig, steps: int | None, epochs: int | None) -> None:
    if not isinstance(cfg, TrainConfig):
        raise ArgumentError(f"cfg must be a TrainConfig, found {type(cfg).__name__}")
    if steps is None and epochs is None:
        raise ArgumentError("give steps or epochs (--steps, --epochs): a run without either never ends")
    for name, value in (("steps", steps), ("epochs", epochs)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ArgumentError(f"{name} must be an integer >= 1, found {value!r}")


def _started_options(out: Path) -> dict[str, Any] | None:
    """The training options of the run started in ``out`` (its config.json), if any."""
    try:
        return json.loads((out / "config.json").read_text())["train"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


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


def _has_split(directory: Path, split: str) -> bool:
    from ..manifest import read_manifest

    return any(s["split"] == split and s["rows"] for s in read_manifest(directory)["shards"])
