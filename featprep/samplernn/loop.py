"""The parts of a training loop that do not know the model.

A trainer (SampleRNN's `train.train`; a duration model's) builds its model, batch source
and loss, describes a step as a `Task` (its loss on a batch, its validation, its
checkpoint) and hands it to `run_steps`, which runs the loop with these: `SharedEpochs`
hands out the batches so that every rank's epoch ends at the same step, `Optimisation`
takes a step on a summed loss (Adam, global-norm clipping, ReduceLROnPlateau on the
validation loss, non-finite losses skipped and counted), `RunLog` writes log.jsonl,
TensorBoard and the console, `CtrlC` turns Ctrl-C into a stop after the current step with a
checkpoint, and `reached` bounds the run by steps or epochs. The checkpoint's format is
`checkpoint.py`'s, the processes `distributed.py`'s.
"""

from __future__ import annotations

import ctypes
import json
import math
import signal
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol, TextIO

import torch

from ..device import resolve_device
from ..errors import ArgumentError, FeatprepError
from ..io import atomic_write_text
from ..progress import progress_bar
from .checkpoint import check_run_folder, restore, resume_checkpoint
from .distributed import Group
from .tensorboard import EventWriter


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


def check_bounds(steps: int | None, epochs: int | None) -> None:
    """``steps`` and ``epochs`` (either may be None, not both) are integers >= 1."""
    if steps is None and epochs is None:
        raise ArgumentError("give steps or epochs (--steps, --epochs): a run without either never ends")
    for name, value in (("steps", steps), ("epochs", epochs)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ArgumentError(f"{name} must be an integer >= 1, found {value!r}")


def reached(step: int, epoch: int, steps: int | None, epochs: int | None) -> bool:
    """Whether a run at ``step`` in ``epoch`` has reached its bound (both counted from the
    start of training, so a resumed run stops where the uninterrupted one would)."""
    return (steps is not None and step >= steps) or (epochs is not None and epoch >= epochs)


class BatchLoader(Protocol):
    """What `SharedEpochs` reads: an iterator of batches, ending with each epoch."""

    epoch: int

    def __next__(self) -> Any: ...

    def empty_batch(self) -> Any: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class SharedEpochs:
    """A rank's batches from ``loader`` (this rank's part of the corpus), in epochs that end
    on every rank at the same step: a rank that has read its part out gets the loader's
    empty batches (no targets) until every rank has."""

    def __init__(self, loader: BatchLoader, group: Group) -> None:
        self.loader, self.group = loader, group
        self.waiting = False  # this rank finished its epoch and waits for the others

    @property
    def epoch(self) -> int:
        """The epoch all ranks are in: a waiting rank's loader has begun the next one."""
        return self.loader.epoch - self.waiting

    def next(self) -> Any:
        """The next batch; None once the epoch has ended on every rank (every rank gets it
        at the same call; the next call reads the next epoch). Every rank calls it once per step."""
        if not self.waiting:
            try:
                batch = next(self.loader)
            except StopIteration:
                self.waiting = True
        if self.waiting:
            # the epoch ends when every rank has finished it (each still reading adds 1, below)
            if self.group.all_sum([0.0])[0] == 0:
                self.waiting = False
                return None
            return self.loader.empty_batch()
        self.group.all_sum([1.0])
        return batch

    def state_dict(self) -> dict[str, Any]:
        return {**self.loader.state_dict(), "waiting": self.waiting}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.loader.load_state_dict(state)
        self.waiting = state.get("waiting", False)


class Optimisation:
    """Adam over ``parameters`` with global-norm clipping at ``clip_norm`` and
    ReduceLROnPlateau on the validation loss, with the run's ``step`` and ``skipped`` counts.
    A step on a non-finite loss is skipped (counted); ``max_bad_steps`` in a row stop
    training with a clear message."""

    def __init__(
        self,
        parameters: Iterable[torch.nn.Parameter],
        *,
        lr: float,
        clip_norm: float,
        plateau_factor: float,
        plateau_patience: int,
        max_bad_steps: int,
        world: int = 1,
    ) -> None:
        self.parameters = list(parameters)
        self.optimizer = torch.optim.Adam(self.parameters, lr=lr)
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, factor=plateau_factor, patience=plateau_patience
        )
        self.clip_norm, self.max_bad_steps, self.world = clip_norm, max_bad_steps, world
        self.step, self.skipped, self.bad = 0, 0, 0

    def take(self, loss: torch.Tensor, total: float, count: float) -> float | None:
        """One step on this rank's summed ``loss``, whose sum over all ranks is ``total``
        over ``count`` targets: the gradient norm before clipping, or None for a step
        skipped (no target, or a non-finite loss)."""
        self.optimizer.zero_grad(set_to_none=True)
        if count == 0 or not math.isfinite(total):
            self.bad, self.skipped = self.bad + 1, self.skipped + 1
            if self.bad >= self.max_bad_steps:
                raise FeatprepError(
                    f"{self.bad} non-finite losses in a row at step {self.step}: training stopped"
                )
            self.step += 1
            return None
        self.bad = 0
        # DistributedDataParallel averages gradients over ranks: scale to the global mean
        (loss * self.world / count).backward()
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.parameters, self.clip_norm))
        self.optimizer.step()
        self.step += 1
        return grad_norm

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def validated(self, loss: float) -> None:
        """The validation loss after this step: the learning rate drops on a plateau."""
        self.scheduler.step(loss)

    def state_dict(self) -> dict[str, Any]:
        """The optimizer's and scheduler's states (the counts: `checkpoint.py` saves them)."""
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        """From a checkpoint: the optimizer, the scheduler, ``step`` and ``skipped``."""
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        self.step, self.skipped = saved["step"], saved["skipped"]


class RunLog:
    """What a run reports, by rank 0 (``active``; on other ranks nothing): one record per
    step to RUN/log.jsonl, its ``tags`` (record key -> TensorBoard tag) to RUN/tensorboard,
    and a console line through ``log`` every 50 steps and at each validation (a ``valid_``
    key). A resumed run (``step`` > 0) drops the records a killed run wrote after ``step``."""

    def __init__(
        self, out: Path, step: int, log: Callable[[str], Any], tags: dict[str, str], *, active: bool
    ) -> None:
        self.log, self.tags = log, tags
        self._file = _open_log(out / "log.jsonl", step) if active else None
        self.board = EventWriter(out / "tensorboard") if active else None
        if self.board is not None and step:
            self.board.restart(step + 1)

    def write(self, record: dict[str, Any]) -> None:
        if self._file is None:
            return
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        step = record["step"]
        self.board.scalars(step, {self.tags[k]: v for k, v in record.items() if k in self.tags})
        if step % 50 == 0 or any(k.startswith("valid_") for k in record):
            self.log(
                " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items())
            )

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self.board.close()


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


class CtrlC:
    """Ctrl-C (SIGINT) during training: the first asks for a stop after the current step,
    with a checkpoint to resume from exactly; a second stops at once. Only the main
    thread can take signals: elsewhere Ctrl-C keeps its usual effect."""

    def __init__(self, log: Callable[[str], Any]) -> None:
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


class Task:
    """One model's side of `run_steps`: what a step computes, what is validated, what is
    saved. A model's trainer subclasses it; the loop knows nothing else of the model."""

    group: Group  # the processes
    model: torch.nn.Module  # whose weights the checkpoint holds
    optimisation: Optimisation  # of the model's parameters (and whatever else it trains)
    batches: SharedEpochs  # this rank's batches
    checkpoint: Path  # where `save` writes
    #: the record's keys: the training loss (as `report` gives it), the validation figure
    #: the learning rate's plateau is judged on, and targets per second; the progress
    #: bar's name of the training loss
    loss_key, valid_key, rate_key, loss_name = "train_loss", "valid_loss", "targets_per_s", "loss"

    def loss(self, batch: Any, step: int) -> tuple[torch.Tensor, int]:
        """This rank's loss on ``batch`` at ``step``, summed over its targets, and their number."""
        raise NotImplementedError

    def report(self, mean: float) -> float:
        """The logged figure of a mean loss per target (SampleRNN: nats to bits)."""
        return mean

    def new_epoch(self) -> None:
        """Every rank has read the epoch out (a recurrent model resets its state)."""

    def validate(self, step: int) -> dict[str, float]:
        """The validation figures after ``step`` (keys ``valid_...``), none at most steps."""
        return {}

    def after_step(self, step: int, run_log: RunLog) -> None:
        """Anything else written after ``step`` (SampleRNN: audio samples, by rank 0)."""

    def save(self) -> None:
        """The run's checkpoint at this step (`checkpoint.write_checkpoint`): every rank calls it."""
        raise NotImplementedError

    def restore(self, saved: dict[str, Any]) -> None:
        """Go on from the checkpoint ``saved`` (a task with per-rank or extra parts of its
        own restores those too)."""
        restore(self, saved)


def join_run(out: Path, batch_size: int, steps: int | None, epochs: int | None, device: str) -> Group:
    """The processes of a run into the run folder ``out`` (torchrun's, or this one), once
    its bounds and folder are known good and ``batch_size`` splits over them."""
    check_bounds(steps, epochs)
    check_run_folder(out)
    group = Group.join(resolve_device(device))
    if batch_size % group.world:
        raise FeatprepError(f"batch_size {batch_size} does not split into {group.world} processes")
    return group


def resume_and_run(
    task: Task,
    out: Path,
    *,
    directory: Path,
    kind: str,
    resume: bool,
    config: dict[str, Any],
    compared: Callable[[dict[str, Any]], dict[str, Any]],
    keys: frozenset[str],
    announce: Callable[[], None],
    board_tags: dict[str, str],
    checkpoint_every: int,
    steps: int | None,
    epochs: int | None,
    progress: bool,
    log: Callable[[str], Any],
) -> dict[str, Any]:
    """Restore ``task`` from ``out``'s checkpoint (`checkpoint.resume_checkpoint`'s rules:
    the same model ``kind``, corpus ``directory`` and options) or start it afresh,
    ``announce`` the run on rank 0 (once the options and the corpus are known good, the
    folder is made), then `run_steps`; returns the last log record."""
    saved = resume_checkpoint(out, directory, kind, resume, config, compared, task.group, keys, log)
    if saved is not None:
        task.restore(saved)
    out.mkdir(parents=True, exist_ok=True)
    if task.group.rank == 0:
        announce()
    run_log = RunLog(out, task.optimisation.step, log, board_tags, active=task.group.rank == 0)
    return run_steps(
        task, run_log, checkpoint_every=checkpoint_every, steps=steps, epochs=epochs, progress=progress
    )


def run_steps(
    task: Task,
    run_log: RunLog,
    *,
    checkpoint_every: int,
    steps: int | None,
    epochs: int | None,
    progress: bool = False,
) -> dict[str, Any]:
    """Train ``task`` until ``steps`` or ``epochs``, saving every ``checkpoint_every`` steps
    and at the end (rank 0 says where), then leave the process group. Returns the last
    record. The loss is the mean over all ranks' targets; a Ctrl-C on any rank stops every
    rank after the same step, saved, and raises KeyboardInterrupt. ``progress``: a bar of
    the steps (with ``steps``) or epochs on stderr (rank 0)."""
    group, optimisation, batches, checkpoint = task.group, task.optimisation, task.batches, task.checkpoint
    say = run_log.log if group.rank == 0 else lambda _m: None
    record: dict[str, Any] = {}
    started, done, saved_step = time.perf_counter(), 0, optimisation.step
    interrupted = False
    ctrl_c = CtrlC(say)
    bar = progress_bar(
        steps if steps is not None else epochs,
        "step" if steps is not None else "epoch",
        enabled=progress and group.rank == 0,
        desc="train",
    )
    bar.update(_position(task, steps) - bar.n)  # a resumed run's bar starts where it stopped
    try:
        while not (interrupted or reached(optimisation.step, batches.epoch, steps, epochs)):
            batch = batches.next()
            if batch is None:
                task.new_epoch()
                continue
            loss, count = task.loss(batch, optimisation.step)
            total, targets, asked = group.all_sum([float(loss.detach()), float(count), float(ctrl_c.asked)])
            interrupted = asked > 0
            grad_norm = optimisation.take(loss, total, targets)
            if grad_norm is None:  # skipped
                continue
            step, done = optimisation.step, done + int(targets)
            record = {
                "step": step,
                "epoch": batches.epoch,
                task.loss_key: task.report(total / targets),
                "grad_norm": grad_norm,
                "lr": optimisation.lr,
                "skipped": optimisation.skipped,
                task.rate_key: done / max(time.perf_counter() - started, 1e-9),
            }
            figures = task.validate(step)
            if task.valid_key in figures:
                optimisation.validated(figures[task.valid_key])
            record.update(figures)
            run_log.write(record)
            bar.set_postfix({task.loss_name: f"{record[task.loss_key]:.3f}"}, refresh=False)
            bar.update(_position(task, steps) - bar.n)
            task.after_step(step, run_log)
            if step % checkpoint_every == 0:
                task.save()
                saved_step = step
        if optimisation.step != saved_step:  # the run's end: the step limit, the last epoch, or Ctrl-C
            task.save()
        if not interrupted:  # (an interrupted run says so below)
            say(f"checkpoint: {checkpoint} (step {optimisation.step})")
    finally:
        bar.close()
        ctrl_c.close()
        run_log.close()
    group.leave()  # every rank ends at the same step, interrupted or not
    if interrupted:
        say(f"interrupted at step {optimisation.step}: {checkpoint} saved; --resume continues from it")
        raise KeyboardInterrupt
    return record


def _position(task: Task, steps: int | None) -> int:
    """How far the run is, in the progress bar's unit: steps with ``steps``, else epochs."""
    return task.optimisation.step if steps is not None else task.batches.epoch
