"""How many worker processes a command runs, and where (loky on this machine, or Dask)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from .errors import ArgumentError


def resolve_jobs(jobs: int) -> int:
    """``jobs`` as a count of processes: ``-1`` = one per core, else at least 1.

    Zero and other negative numbers are refused rather than read as "every core" (joblib
    reads -2 as all but one core; featprep does not promise that).
    """
    if not isinstance(jobs, int) or isinstance(jobs, bool) or (jobs < 1 and jobs != -1):
        raise ArgumentError(f"jobs must be a whole number >= 1, or -1 for one per core; found {jobs!r}")
    return jobs if jobs > 0 else os.cpu_count() or 1


#: where prepare's parallel tasks (shards, the aligner's speakers) run
BACKENDS = ("loky", "dask")
#: seconds a run waits for the first worker of a Dask scheduler given by address
WORKER_WAIT_S = 120.0


def check_backend(backend: str, scheduler: str | None) -> None:
    """Raise `ArgumentError` unless ``backend`` is one of `BACKENDS` and ``scheduler`` (a Dask
    scheduler address) comes only with ``dask``."""
    if backend not in BACKENDS:
        raise ArgumentError(f"backend must be one of {', '.join(BACKENDS)}; found {backend!r}")
    if scheduler is not None and (backend != "dask" or not isinstance(scheduler, str) or not scheduler):
        raise ArgumentError(
            f"scheduler (--scheduler) is the address of a Dask scheduler and needs backend 'dask'; "
            f"found {scheduler!r} with backend {backend!r}"
        )


@contextlib.contextmanager
def dask_client(jobs: int, scheduler: str | None = None) -> Iterator[Any]:
    """A `dask.distributed.Client` of the scheduler at ``scheduler``, or of a `LocalCluster`
    of ``jobs`` worker processes with one thread each, listening on the loopback address
    only (no dashboard); closed when the block ends.

    Imports dask only here: it is an optional extra (``featprep[dask]``), and its absence is
    one line. A scheduler that cannot be reached, or that has no worker within
    `WORKER_WAIT_S` seconds, is one line too.
    """
    try:
        from distributed import Client, LocalCluster
    except ImportError as e:
        raise ArgumentError(
            f"backend 'dask' needs the optional packages dask and distributed "
            f"(pip install 'featprep[dask]'): {e}"
        ) from None
    with contextlib.ExitStack() as stack:
        if scheduler is None:
            # one thread per worker, as loky's workers: the parallelism is across tasks, and the
            # stages keep per-shard state (the nanny also sets OMP/MKL/OpenBLAS to 1 thread)
            cluster = LocalCluster(
                n_workers=jobs,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
            )
            stack.enter_context(cluster)
            client = stack.enter_context(Client(cluster, set_as_default=False))
        else:
            try:
                client = stack.enter_context(Client(scheduler, set_as_default=False))
            except (OSError, ValueError, TypeError) as e:
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise ArgumentError(f"cannot reach the Dask scheduler at {scheduler!r}: {first}") from None
            try:
                client.wait_for_workers(1, timeout=WORKER_WAIT_S)
            except TimeoutError:
                raise ArgumentError(
                    f"the Dask scheduler at {scheduler!r} has no worker after {WORKER_WAIT_S:g} s: start "
                    f"some (dask worker {scheduler} --nthreads 1)"
                ) from None
        yield client


def parallel_config(backend: str, client: Any = None) -> contextlib.AbstractContextManager:
    """joblib's configuration for ``backend``: loky processes on this machine with one
    BLAS/torch thread each (joblib sets the limits in each worker it starts), or the workers
    of ``client`` (a `dask_client`; their threads are set where they are started)."""
    import joblib

    if backend == "dask":
        return joblib.parallel_config(backend="dask", client=client)
    return joblib.parallel_config(backend="loky", inner_max_num_threads=1)
