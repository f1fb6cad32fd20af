"""How many worker processes a command runs."""

from __future__ import annotations

import os

from .errors import ArgumentError


def resolve_jobs(jobs: int) -> int:
    """``jobs`` as a count of processes: ``-1`` = one per core, else at least 1.

    Zero and other negative numbers are refused rather than read as "every core" (joblib
    reads -2 as all but one core; featprep does not promise that).
    """
    if not isinstance(jobs, int) or isinstance(jobs, bool) or (jobs < 1 and jobs != -1):
        raise ArgumentError(f"jobs must be a whole number >= 1, or -1 for one per core; found {jobs!r}")
    return jobs if jobs > 0 else os.cpu_count() or 1
