"""How one dataflow process finds its place in the bytewax cluster, and its recovery store.

Mirrors `python -m bytewax.run`'s environment contract (BYTEWAX_PROCESS_ID or
BYTEWAX_POD_NAME minus BYTEWAX_STATEFULSET_NAME-, BYTEWAX_ADDRESSES or
BYTEWAX_HOSTFILE_PATH, BYTEWAX_WORKERS_PER_PROCESS, BYTEWAX_RECOVERY_DIRECTORY with
BYTEWAX_SNAPSHOT_INTERVAL and BYTEWAX_RECOVERY_BACKUP_INTERVAL) as pure functions, so
`chatwax dataflow` can check it and fail with a clear message before starting.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from chatwax.core.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_WORKERS_PER_PROCESS = 1
"""Worker threads per process when BYTEWAX_WORKERS_PER_PROCESS is unset."""
DEFAULT_SNAPSHOT_INTERVAL_S = 5
"""Seconds between recovery snapshots when BYTEWAX_SNAPSHOT_INTERVAL is unset."""


@dataclass(frozen=True, slots=True)
class RunSpec:
    process_id: int | None
    addresses: list[str] | None
    workers_per_process: int
    recovery_dir: Path | None
    snapshot_interval: timedelta
    backup_interval: timedelta
    recovery_partitions: int

    @property
    def process_count(self) -> int:
        return len(self.addresses) if self.addresses else 1

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RunSpec:
        process_id = _opt_int(env, "BYTEWAX_PROCESS_ID")
        pod, sts = env.get("BYTEWAX_POD_NAME"), env.get("BYTEWAX_STATEFULSET_NAME")
        if process_id is None and pod and sts:
            ordinal = pod.removeprefix(f"{sts}-")
            if not ordinal.isdigit():
                raise ConfigError(f"pod name {pod!r} is not '{sts}-<ordinal>'")
            process_id = int(ordinal)
        addresses: list[str] | None = None
        if env.get("BYTEWAX_ADDRESSES"):
            addresses = [a.strip() for a in env["BYTEWAX_ADDRESSES"].split(";") if a.strip()]
        elif env.get("BYTEWAX_HOSTFILE_PATH"):
            text = Path(env["BYTEWAX_HOSTFILE_PATH"]).read_text()
            addresses = [line.strip() for line in text.splitlines() if line.strip()]
        if process_id is not None and not addresses:
            raise ConfigError("a process id is set but no peer addresses "
                              "(BYTEWAX_ADDRESSES or BYTEWAX_HOSTFILE_PATH)")
        if addresses and process_id is None:
            raise ConfigError("peer addresses are set but no process id "
                              "(BYTEWAX_PROCESS_ID or BYTEWAX_POD_NAME)")
        if addresses and process_id is not None and not 0 <= process_id < len(addresses):
            raise ConfigError(f"process id {process_id} is outside the {len(addresses)} "
                              "peer addresses")
        recovery = env.get("BYTEWAX_RECOVERY_DIRECTORY") or None
        workers = workers_from_env(env)
        snapshot = _opt_int(env, "BYTEWAX_SNAPSHOT_INTERVAL")
        backup = _opt_int(env, "BYTEWAX_RECOVERY_BACKUP_INTERVAL")
        count = len(addresses) if addresses else 1
        return cls(
            process_id=process_id,
            addresses=addresses,
            workers_per_process=workers,
            recovery_dir=Path(recovery) if recovery else None,
            snapshot_interval=timedelta(seconds=snapshot if snapshot is not None
                                         else DEFAULT_SNAPSHOT_INTERVAL_S),
            backup_interval=timedelta(seconds=backup if backup is not None else 0),
            recovery_partitions=(_opt_int(env, "CHATWAX_RECOVERY_PARTITIONS")
                                 or default_partitions(count)),
        )


MIN_RECOVERY_PARTITIONS = 16
"""Recovery partitions a new store gets at least. Bytewax resumes a partition by reading its
snapshots in pages, and each page is a query over the whole partition, so resuming costs
the square of the keys per partition: with 300,000 conversations, 2 partitions took 29 s
to the first answer and 16 took 14 s (64: 13 s); docs/performance.md has the numbers."""


def default_partitions(processes: int) -> int:
    """Partitions for a new recovery store of `processes` processes."""
    return max(MIN_RECOVERY_PARTITIONS, processes)


def workers_from_env(env: Mapping[str, str]) -> int:
    """Worker threads per process (BYTEWAX_WORKERS_PER_PROCESS, else the default)."""
    return _opt_int(env, "BYTEWAX_WORKERS_PER_PROCESS") or DEFAULT_WORKERS_PER_PROCESS


def _opt_int(env: Mapping[str, str], name: str) -> int | None:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None


READY_MARKER = ".chatwax-recovery-ready"


def recovery_initialized(directory: Path) -> bool:
    return (directory / READY_MARKER).exists()


def check_writable(directory: Path) -> None:
    """The recovery directory must be this process's to write: Bytewax's own error is
    "unable to open database file" deep in a panic. In Kubernetes a volume owned by root is
    writable only through the pod's fsGroup (the kubelet gives the volume that group)."""
    with contextlib.suppress(PermissionError):  # reported below, with the parent's owner
        directory.mkdir(parents=True, exist_ok=True)
    where = directory if directory.exists() else directory.parent
    if os.access(where, os.W_OK | os.X_OK):
        return
    st = where.stat()
    raise ConfigError(
        f"the recovery directory {where} is not writable by this process (uid {os.getuid()}, "
        f"gid {os.getgid()}, groups {sorted(set(os.getgroups()))}): it belongs to "
        f"{st.st_uid}:{st.st_gid} with mode {stat.S_IMODE(st.st_mode):04o}. In Kubernetes "
        "set the pod's securityContext.fsGroup (the chart's podSecurityContext.fsGroup) so "
        "the kubelet makes the volume group-writable, or make the volume this user's")


def prepare_recovery(spec: RunSpec, wait_s: float = 120.0) -> None:
    """Process 0 creates the partitions once; the others wait until they all exist.

    A marker file written after the last partition makes the set atomic: a process that
    died half-way through creating them leaves no marker, and the next start redoes it.
    """
    from bytewax.recovery import init_db_dir

    directory = spec.recovery_dir
    if directory is None:
        return
    check_writable(directory)
    if recovery_initialized(directory):
        return
    if not spec.process_id:
        for stale in directory.glob("part-*"):
            stale.unlink()
        log.info("creating %d recovery partitions in %s", spec.recovery_partitions, directory)
        init_db_dir(directory, spec.recovery_partitions)
        (directory / READY_MARKER).write_text(f"{spec.recovery_partitions}\n")
        return
    deadline = time.monotonic() + wait_s
    while not recovery_initialized(directory):
        if time.monotonic() > deadline:
            raise ConfigError(f"no recovery partitions appeared in {directory}")
        time.sleep(0.2)


def wait_resolvable(address: str, timeout_s: float = 300.0, retry_s: float = 0.5) -> None:
    """Wait until this process's own address resolves: Bytewax binds it without retrying.

    In Kubernetes a pod's DNS name under its headless Service appears shortly after the
    pod starts; a process that binds before it exists exits at once.
    """
    host = address.rsplit(":", 1)[0]
    deadline = time.monotonic() + timeout_s
    logged = 0.0
    while True:
        try:
            socket.getaddrinfo(host, None)
            return
        except socket.gaierror as exc:
            now = time.monotonic()
            if now > deadline:
                raise ConfigError(f"this process's address {host} did not resolve within "
                                  f"{timeout_s:g}s ({exc.strerror})") from None
            if now - logged >= 10:
                log.info("waiting for %s to resolve (%s)", host, exc.strerror)
                logged = now
            time.sleep(retry_s)
