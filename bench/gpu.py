"""Benchmark: the one prepared GPU check (issue 16 item 5); run it through ``bench/gpu.sh``.

On a CUDA device, each part with its own time budget (all of them under 8 minutes):

- PASE and PASE+ extraction (official architectures, random weights: speed does not depend
  on the values), batched, x real time in fp32 and bf16 autocast, and the ratio;
- SampleRNN generation samples/s at batch 1 and 64 for the small and paper presets, eager
  and with the sample-level MLP under ``torch.compile(mode="reduce-overhead")`` (CUDA
  graphs), both figures, the ratio, and the batch-64 aggregate against batch 1; a compile
  that fails is reported in one line and the eager figure stands;
- SampleRNN training samples/s for both presets under bf16 autocast (forward, backward,
  Adam on synthetic batches; the first step a warm-up), and the ratio to fp32;
- a 2-process DDP run of a few training steps on the one GPU over nccl (if nccl refuses
  two ranks on one device, the refusal is printed and the run repeated over gloo).

Peak GPU memory is printed per part. A part that fails prints the failure in one line and
the others still run. Without CUDA every part runs once on the CPU at its smallest size
(no bf16 extraction: PASE's autocast is CUDA-only; compile with the eager backend), then
the script says so and exits 0.

    python bench/gpu.py [--budget 75]   (seconds per part; PYTHONPATH at the checkout)
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from functools import partial

import numpy as np
import torch
from samplernn_models import PRESETS, peak_rss_mb, preset_model
from torch.nn import functional as F
from train import training_rate

from featprep.samplernn import generate as generation
from featprep.samplernn.model import SampleRNN, quantise

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"


def sync() -> None:
    if CUDA:
        torch.cuda.synchronize()


class PartTimeout(Exception):
    pass


@contextlib.contextmanager
def part(name: str, budget: int) -> Iterator[None]:
    """Run one part within ``budget`` seconds; any failure is one line, then the next part."""

    def expired(_signum: int, _frame: object) -> None:
        raise PartTimeout(f"over its {budget} s budget")

    if CUDA:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(budget)
    start = time.perf_counter()
    print(f"== {name}", flush=True)
    try:
        yield
    except Exception as e:  # noqa: BLE001 - one line, then the next part
        message = str(e).strip().splitlines()[0] if str(e).strip() else ""
        print(f"   {name} FAILED: {type(e).__name__}: {message[:300]}", flush=True)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    peak = (
        f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB"
        if CUDA
        else f"peak RSS {peak_rss_mb():.0f} MB"
    )
    print(f"   {name}: {time.perf_counter() - start:.1f} s, {peak}", flush=True)


def best_time(
    run: Callable[[], object], repeats: int, within: float, warm: Callable[[], object] | None = None
) -> float:
    """Seconds of the fastest of ``repeats`` runs (after a warm-up: ``warm`` or one run),
    stopping once ``within`` seconds are spent."""
    (warm or run)()  # allocator, kernels, compilation
    best, spent = float("inf"), 0.0
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        run()
        sync()
        took = time.perf_counter() - start
        best, spent = min(best, took), spent + took
        if spent > within:
            break
    return best


def pase_part(small: bool) -> None:
    from featprep.pase import load_encoder
    from featprep.pase.extract import extract

    count, seconds = (1, 1.0) if small else (256, 4.0)
    rng = np.random.default_rng(0)
    waves = [(rng.standard_normal(int(seconds * 16000)) * 0.1).astype(np.float32) for _ in range(count)]
    total = count * seconds
    batch = 1 if small else 64
    print(f"   {count} utterances of {seconds:.0f} s (synthetic noise), batch {batch}")
    for arch in ("pase", "pase+"):
        encoder = load_encoder(arch, random_init_seed=0)
        rates = {}
        for precision in ("fp32", "bf16") if CUDA else ("fp32",):
            run = partial(extract, encoder, batch_size=batch, device=DEVICE, precision=precision)
            t = best_time(
                partial(run, waves), repeats=1 if small else 3, within=10.0, warm=partial(run, waves[:batch])
            )
            rates[precision] = total / t
            print(f"   {DEVICE} {arch:<6} {precision} batched {rates[precision]:9.0f}x real time")
        if "bf16" in rates:
            print(f"   {DEVICE} {arch:<6} bf16 / fp32 {rates['bf16'] / rates['fp32']:.2f}")
        else:
            print(f"   {DEVICE} {arch:<6} bf16 skipped: PASE's autocast needs CUDA")
        del encoder, run


def _mlp(layers: list[tuple[torch.Tensor, torch.Tensor]], h: torch.Tensor) -> torch.Tensor:
    for w, b in layers:
        h = F.linear(h.relu(), w, b)
    return h.float()


@contextlib.contextmanager
def compiled_mlp(generator: generation.Generator) -> Iterator[None]:
    """The Generator's sample-level MLP (its per-sample hot spot) under torch.compile."""
    for w, b in generator.layers:  # CUDA graphs: weights at fixed addresses, not copied in each call
        torch._dynamo.mark_static_address(w)
        torch._dynamo.mark_static_address(b)
    if CUDA:
        step = torch.compile(_mlp, mode="reduce-overhead", dynamic=False)
    else:
        step = torch.compile(_mlp, backend="eager")  # exercises dynamo without a C compiler
    original = generation._TorchMLP.__call__
    generation._TorchMLP.__call__ = lambda self, h: step(self.layers, h)
    try:
        yield
    finally:
        generation._TorchMLP.__call__ = original


def generation_rate(generator, model: SampleRNN, batch: int, frames: int, small: bool) -> float:
    f = torch.randn(batch, frames, model.cfg.feature_dim, device=DEVICE)
    s = torch.zeros(batch, dtype=torch.long, device=DEVICE)
    t = best_time(lambda: generator(f, s, frames), repeats=1 if small else 3, within=15.0)
    return batch * frames * model.top_frame / t


def generation_part(small: bool) -> None:
    """Eager figures for every preset and batch first, then the compiled ones (a slow compile
    that runs the part out of its budget loses only compiled figures)."""
    frames = 1 if small else 10  # top frames (80 samples each)
    batches = (1,) if small else (1, 64)
    models = {p: preset_model(p).to(DEVICE) for p in (PRESETS[:1] if small else PRESETS)}
    # the torch backend: the one that runs on a GPU (numpy is the CPU's own path)
    generators = {p: generation.Generator(m, backend="torch") for p, m in models.items()}
    eager: dict[tuple[str, int], float] = {}
    for preset, model in models.items():
        for batch in batches:
            eager[preset, batch] = r = generation_rate(generators[preset], model, batch, frames, small)
            print(f"   {preset:>5} batch {batch:>2}: eager    {r:9.0f} samples/s "
                  f"({r / 16000:6.2f}x real time)", flush=True)  # fmt: skip
        if len(batches) > 1:
            ratio = eager[preset, 64] / eager[preset, 1]
            print(f"   {preset:>5} eager batch 64 aggregate / batch 1: {ratio:.1f}")
    for preset, model in models.items():
        for batch in batches:
            try:
                with compiled_mlp(generators[preset]):
                    r = generation_rate(generators[preset], model, batch, frames, small)
            except PartTimeout:
                raise
            except Exception as e:  # noqa: BLE001 - reported, the eager figure stands
                print(f"   {preset:>5} batch {batch:>2}: compile failed, eager figure stands: "
                      f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:200]}")  # fmt: skip
                continue
            print(f"   {preset:>5} batch {batch:>2}: compiled {r:9.0f} samples/s "
                  f"({r / 16000:6.2f}x real time), compiled / eager {r / eager[preset, batch]:.2f}",
                  flush=True)  # fmt: skip


def training_part(small: bool) -> None:
    batch = 2 if small else 64
    for preset in PRESETS[:1] if small else PRESETS:
        model = preset_model(preset).to(DEVICE).train()
        steps = 1 if small else {"small": 20, "paper": 5}[preset]
        bf16 = training_rate(model, batch, steps, DEVICE, autocast=True)
        fp32 = training_rate(model, batch, steps, DEVICE, autocast=False)
        print(f"   {preset:>5} (hidden {model.cfg.hidden}) train batch {batch}: bf16 autocast "
              f"{bf16:9.0f} samples/s, fp32 {fp32:9.0f}, bf16 / fp32 {bf16 / fp32:.2f}",
              flush=True)  # fmt: skip
        del model


def _ddp_rank(rank: int, backend: str, port: int, steps: int, batch: int, results) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    warnings.simplefilter("ignore", UserWarning)  # e.g. nccl's default timeout on a CPU-only build
    try:
        if CUDA:
            torch.cuda.set_device(0)  # both ranks on the one GPU
        torch.distributed.init_process_group(backend, rank=rank, world_size=2)
        model = preset_model("small").to(DEVICE)
        ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[0] if CUDA else None)
        opt = torch.optim.Adam(ddp.parameters(), 1e-3)
        frames = 13
        x = torch.rand(batch, 80 + frames * 80, device=DEVICE) * 1.6 - 0.8
        f = torch.randn(batch, frames, model.cfg.feature_dim, device=DEVICE)
        s = torch.zeros(batch, dtype=torch.long, device=DEVICE)
        target = quantise(x[:, 80:], model.cfg)
        start = 0.0
        for i in range(steps + 1):
            if i == 1:
                sync()
                start = time.perf_counter()
            logits, _ = ddp(x, f, s, model.initial_state(batch))
            loss = F.cross_entropy(logits.reshape(-1, model.cfg.levels), target.reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
        sync()
        rate = steps * batch * frames * 80 / (time.perf_counter() - start)
        # the ranks' weights must agree after the all-reduced steps
        flat = torch.cat([p.detach().flatten() for p in model.parameters()])
        flat = flat if backend == "nccl" else flat.cpu()  # gloo gathers CPU tensors only
        gathered = [torch.zeros_like(flat) for _ in range(2)]
        torch.distributed.all_gather(gathered, flat)
        agree = bool(torch.equal(gathered[0], gathered[1]))
        peak = torch.cuda.max_memory_allocated() / 2**20 if CUDA else peak_rss_mb()
        results.put((rank, "ok", rate, agree, peak))
        torch.distributed.destroy_process_group()
    except Exception as e:  # noqa: BLE001 - the parent prints it in one line
        results.put(
            (rank, f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:200]}", 0.0, False, 0.0)
        )


def ddp_run(backend: str, port: int, steps: int, batch: int, within: float) -> bool:
    ctx = torch.multiprocessing.get_context("spawn")
    results = ctx.Queue()
    ranks = [ctx.Process(target=_ddp_rank, args=(r, backend, port, steps, batch, results)) for r in (0, 1)]
    for p in ranks:
        p.start()
    got, deadline = [], time.monotonic() + within
    try:
        while len(got) < 2 and time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):  # not PartTimeout: the part must stop
                got.append(results.get(timeout=1.0))
            if any(r[1] != "ok" for r in got):
                break  # the other rank may wait forever in a collective
            if len(got) < 2 and not any(p.is_alive() for p in ranks) and results.empty():
                break
    finally:
        for p in ranks:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join()
    failures = [r for r in got if r[1] != "ok"]
    if len(got) < 2 or failures:
        why = failures[0][1] if failures else f"{2 - len(got)} rank(s) gave no result within {within:.0f} s"
        print(f"   {backend}: 2 ranks on one {DEVICE} device refused or failed: {why}")
        return False
    rate = sum(r[2] for r in got)
    unit = "MiB GPU" if CUDA else "MB RSS"
    print(f"   {backend}: 2 ranks on one {DEVICE} device, {steps} steps of batch {batch} each, "
          f"{rate:9.0f} samples/s together, weights equal across ranks after the steps: "
          f"{'yes' if all(r[3] for r in got) else 'NO'}, peak per rank "
          f"{', '.join(f'{r[4]:.0f}' for r in sorted(got))} {unit}", flush=True)  # fmt: skip
    return True


def ddp_part(small: bool, budget: int) -> None:
    steps, batch = (1, 2) if small else (10, 32)
    port = 29500 + os.getpid() % 1000
    # nccl first on the CPU too: its refusal there exercises the fallback
    if not ddp_run("nccl", port, steps, batch, within=budget * 0.45):
        print(f"   falling back to gloo on the same {DEVICE} device")
        ddp_run("gloo", port + 1, steps, batch, within=budget * 0.45)


def main() -> None:
    budget = 75
    if "--budget" in sys.argv:
        budget = int(sys.argv[sys.argv.index("--budget") + 1])
    small = not CUDA
    name = torch.cuda.get_device_name(0) if CUDA else "none"
    print(f"torch {torch.__version__}, CUDA device: {name}, {torch.get_num_threads()} CPU threads, "
          f"{'full sizes' if CUDA else 'CPU, smallest sizes, one iteration'}", flush=True)  # fmt: skip
    start = time.perf_counter()
    with part("PASE extraction", budget):
        pase_part(small)
    with part("SampleRNN generation", budget * 5 // 2):  # two presets, two batches, eager and compiled
        generation_part(small)
    with part("SampleRNN training", budget):
        training_part(small)
    with part("DDP, 2 processes on one device", budget):
        ddp_part(small, budget)
    print(f"total {time.perf_counter() - start:.1f} s")
    if not CUDA:
        print("no CUDA device: checked the script's syntax and CPU fallbacks")


if __name__ == "__main__":
    main()
