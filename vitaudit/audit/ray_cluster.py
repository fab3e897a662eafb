"""Joining (or starting) the Ray cluster a dataset pass runs on, and sizing its worker pool.

- ``address="auto"``: the cluster in ``RAY_ADDRESS``, or a Ray head running on this machine;
- ``address="local"``: a one-machine cluster started here, bound to 127.0.0.1 only, with its
  session files in a temporary folder of this run (removed at the end), usage statistics off;
- any other address (``HOST:PORT``, ``ray://HOST:PORT``): that cluster, with its own auth as configured.

A process that already called ``ray.init`` (a test, a notebook) is used as it is. Ray's own
progress bars, INFO logs and worker output on the driver are off unless the user set them.
Problems are one line that names the option (:class:`ClusterError`).
"""
from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

#: A cluster address that answers no TCP connection within this is reported as unreachable.
CONNECT_TIMEOUT_S = 10.0


class ClusterError(RuntimeError):
    """The cluster cannot run the pass as asked; the message is one line naming the option."""


@dataclass(frozen=True)
class RayOptions:
    """How a dataset pass uses Ray (``--audit-ray-*``); ``None``: decided from the cluster."""

    address: str = "auto"
    min_workers: int | None = None  # None: as many as the cluster's resources allow
    max_workers: int | None = None
    gpus_per_worker: float | None = None  # None: 1 where the cluster has GPUs, else 0
    cpus_per_worker: float | None = None  # None: 1


@dataclass
class Cluster:
    """The cluster this process is connected to."""

    address: str
    resources: dict[str, float]
    nodes: int
    started_here: bool  # a ``local`` cluster this process started
    owned: bool  # this process called ray.init (and so calls ray.shutdown)
    temp_dir: str | None = None


@dataclass(frozen=True)
class Pool:
    """The actor pool of one pass: between ``min_size`` and ``max_size`` workers of this size."""

    min_size: int
    max_size: int
    cpus: float
    gpus: float


_lock = threading.Lock()
_state: dict[str, Any] = {}


def _quiet_defaults(local: bool) -> None:
    """Environment defaults read when Ray is imported or started (a user's own settings win)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_DATA_LOG_LEVEL", "ERROR")  # no INFO or notice lines on the console
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")  # its core worker writes to our stderr
    if local:
        # Ray binds a cluster to the machine's network address, never to the loopback, unless it
        # runs "without cluster support"; that switch is read when ray is imported.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        # Token auth, as Ray does by default, but with a token of this run's own, handed to the
        # cluster's processes by the environment, instead of one Ray would save in ~/.ray.
        if not (os.environ.get("RAY_AUTH_MODE") or os.environ.get("RAY_AUTH_TOKEN")
                or os.environ.get("RAY_AUTH_TOKEN_PATH")):
            import secrets

            os.environ["RAY_AUTH_MODE"] = "token"
            os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)


def connect(options: RayOptions) -> Cluster:
    """This process's connection to the cluster of ``options.address`` (made once per process)."""
    with _lock:
        cluster = _state.get("cluster")
        if cluster is not None:
            return cluster
        local = options.address == "local"
        _quiet_defaults(local)
        import ray

        started_here, temp_dir = False, None
        owned = not ray.is_initialized()
        if owned:
            if local:
                temp_dir = tempfile.mkdtemp(prefix="vitaudit-ray-")
                _init(ray, options, address=None, _temp_dir=temp_dir, _node_ip_address="127.0.0.1",
                      include_dashboard=False)
                started_here = True
            else:
                check_address(options)
                if options.address == "auto" and not os.environ.get("RAY_ADDRESS"):
                    _reachable_local_head(options)
                _init(ray, options, address=options.address)
        with quiet_warnings():
            _quiet_data()
        ctx = ray.get_runtime_context()
        address = ctx.gcs_address if hasattr(ctx, "gcs_address") else ""
        cluster = Cluster(address=address or options.address, resources=dict(ray.cluster_resources()),
                          nodes=sum(1 for n in ray.nodes() if n.get("Alive")), started_here=started_here,
                          owned=owned, temp_dir=temp_dir)
        _state["cluster"] = cluster
        return cluster


def _init(ray: Any, options: RayOptions, **kwargs: Any) -> None:
    try:
        ray.init(log_to_driver=False, logging_level=logging.ERROR, configure_logging=True, **kwargs)
    except ConnectionError as exc:
        where = options.address
        raise ClusterError(f"--audit-ray-address {where}: cannot connect to a Ray cluster there: "
                           f"{' '.join(str(exc).split())[:300]}") from None


def _host_port(address: str) -> tuple[str, int] | None:
    rest = address.split("://", 1)[-1]
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]") or "127.0.0.1", int(port)


def check_address(options: RayOptions) -> None:
    """One line at once for an address nothing answers at (Ray itself retries for a minute or more).

    Imports no Ray: the plugin calls it while configuring."""
    address, source = options.address, f"--audit-ray-address {options.address}"
    if address == "local":
        return
    if address == "auto":
        address = os.environ.get("RAY_ADDRESS", "")
        source = f"--audit-ray-address auto (RAY_ADDRESS={address})"
        if not address or address in ("auto", "local"):
            return
    hp = _host_port(address)
    if hp is None:
        raise ClusterError(f"{source}: expected auto, local, HOST:PORT or ray://HOST:PORT")
    try:
        with socket.create_connection(hp, timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise ClusterError(f"{source}: no Ray cluster answers at {hp[0]}:{hp[1]} ({reason}); start one with "
                           "`ray start --head`, or use --audit-ray-address local") from None


def _reachable_local_head(options: RayOptions) -> None:
    """``auto`` without ``RAY_ADDRESS``: a head must run on this machine (else one line, not a wait)."""
    try:
        from ray._private.services import find_gcs_addresses  # where `ray start --head` left its address
        found = list(find_gcs_addresses())
    except Exception:  # noqa: BLE001 - an internal helper: without it, let ray.init say what it finds
        return
    if not found:
        raise ClusterError("--audit-ray-address auto: RAY_ADDRESS is not set and no Ray cluster runs on this "
                           "machine; start one (`ray start --head`), set RAY_ADDRESS, or use --audit-ray-address local")


@contextmanager
def quiet_warnings():
    """Ray's notes about its own settings and deprecations (not the user's business) unsaid."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"ray(\.|$)")
        warnings.filterwarnings("ignore", message=r".*ray_remote_args.*")
        warnings.filterwarnings("ignore", category=UserWarning, module=r"ray\.data(\.|$)")
        yield


def _quiet_data() -> None:
    """Ray Data's progress bars and console lines off (its log file keeps everything)."""
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    if hasattr(ctx, "print_on_execution_start"):
        ctx.print_on_execution_start = False
    ctx.verbose_stats_logs = False
    for handler in logging.getLogger("ray.data").handlers:
        if type(handler) is logging.StreamHandler:  # the console, not the session's log file
            handler.setLevel(logging.ERROR)


def pool(cluster: Cluster, options: RayOptions) -> Pool:
    """The actor pool the cluster can hold, or one line saying why it cannot hold the one asked for."""
    cpus_total = float(cluster.resources.get("CPU", 0))
    gpus_total = float(cluster.resources.get("GPU", 0))
    gpus = options.gpus_per_worker if options.gpus_per_worker is not None else (1.0 if gpus_total else 0.0)
    cpus = options.cpus_per_worker if options.cpus_per_worker is not None else 1.0
    where = f"the cluster at {cluster.address} has {cpus_total:g} CPUs and {gpus_total:g} GPUs"
    if gpus > gpus_total or (gpus and not gpus_total):
        raise ClusterError(f"--audit-ray-gpus-per-worker {gpus:g}: {where}; use --audit-ray-gpus-per-worker 0 "
                           "for CPU workers")
    if cpus > cpus_total:
        raise ClusterError(f"--audit-ray-cpus-per-worker {cpus:g}: {where}")
    fits = int(min(cpus_total // cpus if cpus else 1 << 30, gpus_total // gpus if gpus else 1 << 30))
    low = options.min_workers if options.min_workers is not None else max(1, fits)
    high = options.max_workers if options.max_workers is not None else low
    if low > fits:
        raise ClusterError(f"--audit-ray-workers {low}: {where}, room for {fits} workers of "
                           f"{cpus:g} CPU{'s' if cpus != 1 else ''}" + (f" and {gpus:g} GPU" if gpus else ""))
    return Pool(min_size=low, max_size=max(low, high), cpus=cpus, gpus=gpus)


def disconnect() -> None:
    """Leave the cluster (stopping it when this process started it) and remove its temporary folder."""
    with _lock:
        cluster = _state.pop("cluster", None)
        if cluster is None:
            return
        if cluster.owned:
            import ray

            ray.shutdown()
        if cluster.temp_dir:
            shutil.rmtree(cluster.temp_dir, ignore_errors=True)


