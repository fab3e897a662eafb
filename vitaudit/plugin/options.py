"""The plugin's options made into the audit core's session (:class:`vitaudit.audit.session.AuditSession`)."""
from __future__ import annotations

import pytest

from vitaudit.audit.session import AuditSession, relative_to


def worker_device(config: pytest.Config) -> str:
    """``--audit-device``; under xdist with several GPUs, worker i uses GPU i mod n."""
    device = config.getoption("audit_device") or config.getini("audit_device") or "auto"
    worker = getattr(config, "workerinput", {}).get("workerid")
    if device == "auto" and worker:
        import torch

        if torch.cuda.is_available() and torch.cuda.device_count() > 1:
            index = int("".join(ch for ch in worker if ch.isdigit()) or 0)
            return f"cuda:{index % torch.cuda.device_count()}"
    return device


def max_side(config: pytest.Config) -> int | None:
    """``--audit-max-side`` (ini ``audit_max_side``): the working resolution's longest side; 0: full size."""
    given = config.getoption("audit_max_side")
    if given is None:  # the ini default is vitaudit.explanation.DEFAULT_MAX_SIDE (not imported: no torch here)
        given = config.getini("audit_max_side") or "1024"
    try:
        value = int(given)
    except ValueError:
        raise pytest.UsageError(f"--audit-max-side must be a whole number of pixels (0: full size), got {given!r}") from None
    if value < 0 or 0 < value < 32:
        raise pytest.UsageError(f"--audit-max-side must be 0 (full size) or at least 32 pixels, got {value}")
    return value or None


def session_for(config: pytest.Config) -> AuditSession:
    """A new audit session with this run's options (``--audit-device``, ``--audit-batch-size``, ...)."""
    return AuditSession(
        device=worker_device(config),
        batch_size=int(config.getoption("audit_batch_size") or config.getini("audit_batch_size") or 0) or None,
        update_baselines=bool(config.getoption("audit_update_baselines")),
        pictures=not config.getoption("audit_no_report"),
        max_side=max_side(config),
        rootpath=config.rootpath,
        in_worker=hasattr(config, "workerinput"),
        workers=int(getattr(config, "workerinput", {}).get("workercount", 1) or 1),
    )


def rootdir_relative(config: pytest.Config, path: str) -> str:
    return relative_to(config.rootpath, path)


# ------------------------------------------------------------------ executors

EXECUTORS = ("local", "ray")


def _opt(config: pytest.Config, name: str) -> str | None:
    """An option's value from the command line, else its ini key (``None``: neither)."""
    value = config.getoption(name)
    if value is None or value == "":
        value = config.getini(name) or None
    return None if value is None else str(value)


def executor(config: pytest.Config) -> str:
    """``--audit-executor`` (ini ``audit_executor``): where dataset passes run; ``local`` by default."""
    value = (_opt(config, "audit_executor") or "local").strip().lower()
    if value not in EXECUTORS:
        raise pytest.UsageError(f"--audit-executor must be one of {', '.join(EXECUTORS)}, got {value!r}")
    return value


def _number(config: pytest.Config, name: str, flag: str) -> float | None:
    given = _opt(config, name)
    if given is None:
        return None
    try:
        value = float(given)
    except ValueError:
        raise pytest.UsageError(f"{flag} must be a number, got {given!r}") from None
    if value < 0:
        raise pytest.UsageError(f"{flag} must not be negative, got {given}")
    return value


def ray_options(config: pytest.Config):
    """The ``--audit-ray-*`` options as the core's :class:`~vitaudit.audit.ray_cluster.RayOptions`."""
    from vitaudit.audit.ray_cluster import RayOptions

    workers = _opt(config, "audit_ray_workers")
    low = high = None
    if workers is not None:
        lo, sep, hi = workers.partition("-")
        try:
            low, high = int(lo), int(hi) if sep else int(lo)
        except ValueError:
            raise pytest.UsageError(f"--audit-ray-workers must be N or MIN-MAX (whole numbers), got {workers!r}") from None
        if low < 1 or high < low:
            raise pytest.UsageError(f"--audit-ray-workers must be at least 1, and MIN-MAX with MIN <= MAX; got {workers!r}")
    cpus = _number(config, "audit_ray_cpus_per_worker", "--audit-ray-cpus-per-worker")
    if cpus is not None and cpus <= 0:
        raise pytest.UsageError("--audit-ray-cpus-per-worker must be more than 0")
    return RayOptions(address=_opt(config, "audit_ray_address") or "auto", min_workers=low, max_workers=high,
                      gpus_per_worker=_number(config, "audit_ray_gpus_per_worker", "--audit-ray-gpus-per-worker"),
                      cpus_per_worker=cpus)


def add_executor_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("vitaudit")
    group.addoption("--audit-executor", dest="audit_executor", default=None, choices=EXECUTORS,
                    help="where dataset passes run: local (this process, default) or ray (a Ray cluster's "
                         "actor pool; pip install 'vitaudit[ray]')")
    group.addoption("--audit-ray-address", dest="audit_ray_address", default=None, metavar="ADDRESS",
                    help="auto (RAY_ADDRESS, or a Ray head on this machine; default), local (start one here, "
                         "127.0.0.1 only), or HOST:PORT / ray://HOST:PORT")
    group.addoption("--audit-ray-workers", dest="audit_ray_workers", default=None, metavar="N|MIN-MAX",
                    help="actors per dataset pass: N, or MIN-MAX for an autoscaling pool (default: as many as "
                         "the cluster holds)")
    group.addoption("--audit-ray-gpus-per-worker", dest="audit_ray_gpus_per_worker", default=None, metavar="G",
                    help="GPUs per actor (default 1 where the cluster has GPUs, else 0)")
    group.addoption("--audit-ray-cpus-per-worker", dest="audit_ray_cpus_per_worker", default=None, metavar="C",
                    help="CPUs per actor (default 1)")
    parser.addini("audit_executor", "where dataset passes run: local or ray", default="local")
    parser.addini("audit_ray_address", "the Ray cluster: auto, local or an address", default="auto")
    parser.addini("audit_ray_workers", "actors per dataset pass: N or MIN-MAX", default="")
    parser.addini("audit_ray_gpus_per_worker", "GPUs per actor", default="")
    parser.addini("audit_ray_cpus_per_worker", "CPUs per actor", default="")


def check_executor(config: pytest.Config) -> None:
    """Refuse what cannot work, in one line, before anything runs (see docs/scale.md)."""
    if executor(config) != "ray":
        return
    options = ray_options(config)
    if getattr(config.option, "numprocesses", None) or getattr(config.option, "dist", "no") != "no":
        raise pytest.UsageError("--audit-executor ray spreads each dataset over the cluster itself; run it without "
                                "pytest-xdist (-n/--dist), which would make every worker a driver competing for "
                                "the same actors")
    import importlib.util

    if any(importlib.util.find_spec(m) is None for m in ("ray", "pyarrow", "pandas")):  # find, not import:
        # Ray reads some of the settings vitaudit gives it when it is imported (see ray_cluster)
        raise pytest.UsageError("--audit-executor ray needs Ray Data: pip install 'vitaudit[ray]'")
    if hasattr(config, "workerinput"):
        return
    from vitaudit.audit.ray_cluster import ClusterError, check_address

    try:
        check_address(options)
    except ClusterError as exc:
        raise pytest.UsageError(str(exc)) from None
