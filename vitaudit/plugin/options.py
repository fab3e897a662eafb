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
    )


def rootdir_relative(config: pytest.Config, path: str) -> str:
    return relative_to(config.rootpath, path)
