"""What `chatwax up` is asked to start: every option and its default, declared once.

`chatwax up`'s flags take their defaults from these fields (`DEFAULTS`); a default that is
also another command's or an environment setting's is read from that one declaration:
the NATS port from NATS_URL's default (so `chatwax ask` finds the local NATS), the
sign-in mode from CHATWAX_AUTH's, the dataflow's workers and snapshot interval from
`chatwax dataflow`'s, the local model's port from `chatwax local-llm`'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import urlparse

from chatwax.core.settings import UI_PORT, Settings
from chatwax.dataflow import runspec
from chatwax.local import cli as local_cli


def _setting(name: str) -> Any:
    """The default of a `Settings` field: the environment setting's one declaration."""
    return Settings.model_fields[name].default


def _nats_port() -> int:
    """The port of NATS_URL's default: where every client looks when none is set."""
    port = urlparse(_setting("nats_url")).port
    assert port is not None, "NATS_URL's default names its port"
    return port


@dataclass(frozen=True)
class StackOptions:
    processes: int = 2
    workers: int = runspec.DEFAULT_WORKERS_PER_PROCESS
    ui: bool = True
    data_dir: Path = Path(".chatwax")
    nats_port: int = _nats_port()
    nats_monitor_port: int = 8222
    cluster_port: int = 2101
    metrics_port: int = 3030
    ui_port: int = UI_PORT
    snapshot_interval: int = runspec.DEFAULT_SNAPSHOT_INTERVAL_S
    prometheus: bool = False
    prometheus_port: int = 9090
    scrape_interval_s: float = 5.0
    nats_auth: bool = False
    health_port: int = 8080
    """First health port: process i serves /readyz and /livez on this + i."""
    dataflow_command: tuple[str, ...] = ("-m", "chatwax", "dataflow")
    """What each dataflow process runs, after the Python interpreter."""
    restart: bool = True
    max_restarts: int = 5
    restart_window_s: float = 60.0
    extra_env: Mapping[str, str] = field(default_factory=dict)
    """Set for every child, over this process's environment (the LLM's settings go over it)."""
    ready_timeout_s: float = 120.0
    """How long the cluster may take to form (it loads every conversation's state first)."""
    llm: str = "auto"
    llm_port: int = local_cli.DEFAULT_PORT
    external_nats: str | None = None
    """Use this NATS (with JetStream) instead of starting one."""
    log_dir: Path | None = None
    """Each child's output to <log_dir>/<child>.log instead of this process's."""
    auth: str = _setting("auth")
    """Sign-in on the pages: none (open mode) or oidc (`chatwax ui` with CHATWAX_OIDC_*)."""
    auth_file: Path | None = None
    """NAME=value lines of CHATWAX_AUTH*/CHATWAX_OIDC_* settings; they win over the
    environment."""

    @property
    def runs_chatwax_dataflow(self) -> bool:
        """`chatwax dataflow` serves /readyz; the benchmark's baseline process does not."""
        return self.dataflow_command == DEFAULTS["dataflow_command"]


DEFAULTS: Final[Mapping[str, Any]] = MappingProxyType({
    f.name: f.default for f in fields(StackOptions) if f.default is not MISSING})
"""Each option's default (those with a plain value), for `chatwax up`'s flags."""
