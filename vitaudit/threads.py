"""How many cores this process may use, and torch's share of them under pytest-xdist.

torch's CPU kernels run one thread per core by default, and their threads busy-wait for each
other between parallel operations. ``pytest -n N`` runs N such processes on the same cores: on
this project's 2-core machine under other load, ``pytest audits/ -n 2`` took 52.8 s with torch's
default threads and 15.8 s with one thread per worker (numpy's OpenBLAS threads spin the same
way). So an xdist worker gives torch, and numpy's BLAS, its share of the cores (the cores / the
workers, at least one), unless the user has said how many threads to use (``OMP_NUM_THREADS``,
``MKL_NUM_THREADS`` or ``OPENBLAS_NUM_THREADS``). The audit session applies it when it loads
its first model, so a process that runs no audit keeps torch as it was.
"""
from __future__ import annotations

import os

#: Environment variables by which a user says how many threads torch's CPU kernels may use.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def usable_cpus() -> int:
    """The cores this process may run on: its CPU affinity (a container's cpuset, ``taskset``, a
    Ray worker's), not the machine's count."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def worker_share(workers: int) -> int | None:
    """In one of ``workers`` processes that share this machine's cores, cap torch's threads at its
    share of them (never raising them); the threads now, or ``None`` where the user has set
    them through the environment (or there is nothing to share)."""
    if workers <= 1 or any(os.environ.get(v) for v in THREAD_VARIABLES):
        return None
    import torch
    from threadpoolctl import threadpool_limits

    share = min(torch.get_num_threads(), max(1, usable_cpus() // workers))
    # First the variables, which a BLAS or OpenMP library reads when it loads (scipy's or OpenCV's
    # own OpenBLAS, perhaps loading right now in the background import thread), then the limits
    # of those already loaded (numpy's BLAS, torch's OpenMP; they busy-wait too). The other way
    # round, a library that loaded between the two kept a thread per core (seen under load).
    for name in THREAD_VARIABLES:
        os.environ[name] = str(share)
    threadpool_limits(limits=share)
    if share != torch.get_num_threads():
        torch.set_num_threads(share)
    return share


__all__ = ["THREAD_VARIABLES", "usable_cpus", "worker_share"]
