"""How many worker processes a command runs, and where (loky on this machine, or Dask);
threads for work inside one process."""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from .errors import ArgumentError

T = TypeVar("T")
R = TypeVar("R")


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
#: seconds to connect to a scheduler and complete Dask's handshake (something else
#: listening on the port never completes it)
CONNECT_S = 30.0


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
        from distributed.comm import parse_address
        from distributed.comm.addressing import parse_host_port
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
                # checked before a Client exists: a half-built one hangs in its finaliser
                parse_host_port(parse_address(scheduler)[1])
                client = stack.enter_context(_connect(Client, scheduler))
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


def _connect(client_class: Any, scheduler: str) -> Any:
    """A client of ``scheduler``; `ArgumentError` after `CONNECT_S` seconds without one.

    distributed's own timeout does not cover a handshake that never completes (another
    server listening on the port): the client is made in a daemon thread that is left
    behind when it does not return in time.
    """
    made: dict[str, Any] = {}

    def connect() -> None:
        try:
            made["client"] = client_class(scheduler, set_as_default=False, timeout=CONNECT_S)
        except Exception as e:  # handed to the caller's thread
            made["error"] = e

    thread = threading.Thread(target=connect, name="featprep-dask-connect", daemon=True)
    thread.start()
    thread.join(CONNECT_S + 5.0)
    if thread.is_alive():
        raise ArgumentError(
            f"no Dask scheduler answered at {scheduler!r} within {CONNECT_S:g} s "
            "(is that the address of a Dask scheduler?)"
        )
    if "error" in made:
        raise made["error"]
    return made["client"]


def parallel_config(backend: str, client: Any = None) -> contextlib.AbstractContextManager:
    """joblib's configuration for ``backend``: loky processes on this machine with one
    BLAS/torch thread each (joblib sets the limits in each worker it starts), or the workers
    of ``client`` (a `dask_client`; their threads are set where they are started)."""
    import joblib

    if backend == "dask":
        return joblib.parallel_config(backend="dask", client=client)
    return joblib.parallel_config(backend="loky", inner_max_num_threads=1)


def ordered_threads(fn: Callable[[T], R], items: Iterable[T], threads: int) -> Iterator[R]:
    """``map(fn, items)`` on ``threads`` threads, results in the order of ``items``, at most
    ``2 * threads`` of them waiting: for work that leaves the GIL (BLAS, numpy's loops,
    compiled kernels, subprocesses) and whose results are combined in a fixed order, so
    that the outcome does not depend on the thread count. No more threads than cores: more
    only contend for them (-j 64 on 2 cores: `featprep align` took 1.4x the memory)."""
    threads = min(threads, os.cpu_count() or 1)
    if threads <= 1:
        yield from map(fn, items)
        return
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        pending: collections.deque[concurrent.futures.Future[R]] = collections.deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) > 2 * threads:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
