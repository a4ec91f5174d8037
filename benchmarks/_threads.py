"""What the numpy-side benchmarks share: a BLAS thread limit and the cores this process may use."""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, nullcontext


def blas_threads(n: int | None) -> AbstractContextManager:
    """Limit BLAS to `n` threads for the block (threadpoolctl), or change nothing
    when `n` is None or threadpoolctl is missing."""
    if not n:
        return nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        return nullcontext()
    return threadpool_limits(limits=n)


def usable_cores() -> int | None:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
