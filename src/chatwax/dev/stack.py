"""`chatwax up`: the whole platform as local processes, supervised.

nats-server (JetStream, loopback only), an N-process bytewax cluster on 127.0.0.1, the
Streamlit frontend and, when no LLM is configured, the local model server. Every child is
watched: Ctrl-C/SIGTERM stops them all in order, and a child that dies brings the stack
down with a non-zero exit, never a half-running stack.

This module puts the parts together (`StackOptions` in, a `Stack` that starts, describes,
supervises and stops); each part is its own module: `options`, `llmchoice`, `natsserver`,
`signin`, `prometheus`, `supervise`, `probes` and `datadir`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from chatwax.core.errors import ConfigError
from chatwax.core.natsurl import without_credentials
from chatwax.core.settings import Settings
from chatwax.dev import signin
from chatwax.dev.datadir import private_dir
from chatwax.dev.llmchoice import resolve_llm
from chatwax.dev.natsserver import PASSWORDS_FILE, load_passwords, nats_server_command
from chatwax.dev.options import StackOptions
from chatwax.dev.probes import port_free, wait_http
from chatwax.dev.prometheus import prometheus_command
from chatwax.dev.supervise import Child, Supervisor
from chatwax.frontend import launch


def dataflow_env(opts: StackOptions, index: int, nats_url: str,
                 base: Mapping[str, str]) -> dict[str, str]:
    """The environment one local dataflow process runs with (as a pod would), on top of
    `base` (`LlmChoice.env`)."""
    addresses = ";".join(f"127.0.0.1:{opts.cluster_port + i}" for i in range(opts.processes))
    return {
        **base,
        "NATS_URL": nats_url,
        "BYTEWAX_PROCESS_ID": str(index),
        "BYTEWAX_ADDRESSES": addresses,
        "BYTEWAX_WORKERS_PER_PROCESS": str(opts.workers),
        "BYTEWAX_DATAFLOW_API_ENABLED": "true",
        "BYTEWAX_DATAFLOW_API_PORT": str(opts.metrics_port + index),
        "CHATWAX_HEALTH_PORT": str(opts.health_port + index),
        "CHATWAX_HEALTH_HOST": "127.0.0.1",
        "BYTEWAX_RECOVERY_DIRECTORY": str((opts.data_dir / "recovery").resolve()),
        "BYTEWAX_SNAPSHOT_INTERVAL": str(opts.snapshot_interval),
        "BYTEWAX_RECOVERY_BACKUP_INTERVAL": "0",
    }


def stack_ports(opts: StackOptions, local_model: bool) -> list[tuple[str, int]]:
    """Every port the stack will listen on, each with what listens there."""
    o = opts
    ports = [] if o.external_nats else [("NATS", o.nats_port),
                                        ("NATS monitor", o.nats_monitor_port)]
    ports += [(f"bytewax process {i}", o.cluster_port + i) for i in range(o.processes)]
    ports += [(f"metrics {i}", o.metrics_port + i) for i in range(o.processes)]
    ports += [(f"health {i}", o.health_port + i) for i in range(o.processes)]
    if o.ui:
        ports.append(("frontend", o.ui_port))
    if o.prometheus:
        ports.append(("prometheus", o.prometheus_port))
    if local_model:
        ports.append(("local model", o.llm_port))
    return ports


def port_clashes(ports: list[tuple[str, int]]) -> list[str]:
    """Ports given to more than one listener: the second would fail to bind, and a
    dataflow process restarting on it would hide why."""
    owners: dict[int, list[str]] = {}
    for name, port in ports:
        owners.setdefault(port, []).append(name)
    return [f"{port} ({' and '.join(names)})" for port, names in owners.items()
            if len(names) > 1]


class Stack:
    def __init__(self, opts: StackOptions) -> None:
        self.opts = opts
        self.processes = Supervisor(opts.log_dir, opts.restart, opts.max_restarts,
                                    opts.restart_window_s)
        self.passwords: dict[str, str] = {}
        self.ui_env: dict[str, str] = {}
        self.llm = resolve_llm(opts.llm, opts.llm_port, opts.extra_env, os.environ)

    @property
    def children(self) -> list[Child]:
        """Every running child, in the order they started."""
        return self.processes.children

    def credentials(self, user: str) -> dict[str, str]:
        """NATS_USER/NATS_PASSWORD for a child, when auth is on."""
        if not self.opts.nats_auth:
            return {}
        return {"NATS_USER": user, "NATS_PASSWORD": self.passwords[user]}

    @property
    def nats_url(self) -> str:
        return self.opts.external_nats or f"nats://127.0.0.1:{self.opts.nats_port}"

    @property
    def compat(self) -> bool:
        """The tutorial's `prompts` adapter (`signin.compat_on`)."""
        return signin.compat_on(self.opts.auth, self.llm.env)

    @property
    def ui_url(self) -> str:
        return signin.ui_url(self.opts.auth, self.opts.ui_port)

    def auth_env(self) -> dict[str, str]:
        """The frontend's sign-in settings (`signin.signin_env`)."""
        o = self.opts
        return signin.signin_env(o.auth, o.auth_file, o.ui_port, o.data_dir, self.llm.env)

    def _spawn(self, name: str, cmd: list[str], env: Mapping[str, str] | None = None,
               dataflow: bool = False) -> Child:
        """Start a child with `env`, or else the stack's environment (`self.llm.env`)."""
        return self.processes.spawn(name, cmd, self.llm.env if env is None else env, dataflow)

    def metrics_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{self.opts.metrics_port + i}/metrics"
                for i in range(self.opts.processes)]

    def check_ports(self) -> None:
        ports = stack_ports(self.opts, self.llm.kind == "local")
        if clashes := port_clashes(ports):
            raise ConfigError(f"one port for two listeners: {'; '.join(clashes)}. Process "
                              "i of the dataflow listens on each --*-port base + i; choose "
                              "ports that do not overlap.")
        busy = [f"{name} ({port})" for name, port in ports if not port_free(port)]
        if busy:
            raise ConfigError(f"ports already in use: {', '.join(busy)}; is another "
                              "chatwax running? Choose others with the --*-port flags.")

    def _refuse_what_cannot_start(self) -> None:
        """Options that cannot work together, a missing local model, busy ports."""
        o = self.opts
        self.llm.check_runnable()
        if o.external_nats and o.nats_auth:
            raise ConfigError("--nats-auth configures the NATS chatwax starts; with --nats-url, "
                              "give that server's credentials in NATS_USER/NATS_PASSWORD")
        signin.check_mode(o.auth)
        self.check_ports()

    def start(self) -> None:
        o = self.opts
        self._refuse_what_cannot_start()
        private_dir(o.data_dir)
        # The pages never call the LLM: the frontend does not get its key.
        self.ui_env = {**self.llm.ui_env, "NATS_URL": self.nats_url}
        if o.ui:  # a sign-in that cannot work fails here, before anything starts
            self.ui_env.update(self.auth_env())
            launch.check_oidc(Settings.from_env(self.ui_env))
        if not o.external_nats:
            self._start_nats()
        if self.llm.kind == "local":
            self._start_local_model()
        self._start_dataflow()
        if o.prometheus:
            self._start_prometheus()
        if o.ui:
            self._start_frontend()

    def _start_nats(self) -> None:
        o = self.opts
        if o.nats_auth:
            self.passwords = load_passwords(o.data_dir / PASSWORDS_FILE)
        nats = self._spawn("nats-server", nats_server_command(
            o.data_dir, o.nats_port, o.nats_monitor_port,
            self.passwords if o.nats_auth else None, self.compat))
        wait_http(f"http://127.0.0.1:{o.nats_monitor_port}/healthz", 20, nats.proc, nats.name)

    def _start_local_model(self) -> None:
        port = self.opts.llm_port
        model = self._spawn("local model", [
            sys.executable, "-m", "chatwax", "local-llm", "--port", str(port)])
        wait_http(f"http://127.0.0.1:{port}/health", 120, model.proc, model.name)

    def _start_dataflow(self) -> None:
        o = self.opts
        compat = {} if self.compat else {"CHATWAX_COMPAT_SUBJECT": ""}
        procs = [self._spawn(f"dataflow process {i}", [sys.executable, *o.dataflow_command],
                             {**dataflow_env(o, i, self.nats_url, self.llm.env),
                              **self.credentials("dataflow"), **compat}, dataflow=True)
                 for i in range(o.processes)]
        for i, child in enumerate(procs):
            wait_http(f"http://127.0.0.1:{o.metrics_port + i}/metrics", 60, child.proc, child.name)
        if o.runs_chatwax_dataflow:  # up means the cluster has formed: prompts get answered now
            for i, child in enumerate(procs):
                wait_http(f"http://127.0.0.1:{o.health_port + i}/readyz", o.ready_timeout_s,
                          child.proc, child.name, ok_status=200)

    def _start_prometheus(self) -> None:
        o = self.opts
        prom = self._spawn("prometheus", prometheus_command(
            self.metrics_urls(), o.scrape_interval_s, o.data_dir, o.prometheus_port))
        wait_http(f"http://127.0.0.1:{o.prometheus_port}/-/ready", 30, prom.proc, prom.name)

    def _start_frontend(self) -> None:
        """`chatwax ui`, as the frontend image runs it."""
        o = self.opts
        ui = self._spawn("frontend", [
            sys.executable, "-m", "chatwax", "ui", "--port", str(o.ui_port),
            "--address", "127.0.0.1", "--secrets-dir", str((o.data_dir / "ui").resolve()),
        ], {**self.ui_env, **self.credentials("frontend")})
        wait_http(f"http://127.0.0.1:{o.ui_port}/_stcore/health", 60, ui.proc, ui.name)

    def describe(self) -> str:
        o = self.opts
        monitor = "" if o.external_nats else f"  (monitor http://127.0.0.1:{o.nats_monitor_port})"
        lines = ["chatwax is up:",
                 f"  NATS        {without_credentials(self.nats_url)}{monitor}"]
        for i, url in enumerate(self.metrics_urls()):
            lines.append(f"  metrics {i}   {url}  "
                         f"(health http://127.0.0.1:{o.health_port + i}/readyz)")
        lines.append(f"  LLM         {self.llm.describe()}")
        if o.prometheus:
            lines.append(f"  prometheus  http://127.0.0.1:{o.prometheus_port}")
        if o.ui:
            lines.append(f"  frontend    {self.ui_url}")
            lines.append(f"  sign-in     {launch.describe(Settings.from_env(self.ui_env))}")
        if not self.compat:
            lines.append("  compat      the tutorial's `prompts` subject is off (sign-in on)")
        lines.append(f"  data        {o.data_dir.resolve()}")
        if o.nats_auth:
            lines.append(f"  NATS auth   CLI: NATS_USER=operator, NATS_PASSWORD from "
                         f"{(o.data_dir / PASSWORDS_FILE).resolve()}")
        lines.append("Press Ctrl-C to stop.")
        return "\n".join(lines)

    def stop(self, timeout: float = 10.0) -> None:
        """Frontend and dataflow first, NATS last, so nothing loses its broker mid-write.

        The dataflow processes are signalled together: one that outlives its peers sees
        them vanish and aborts with a panic instead of exiting quietly.
        """
        self.processes.stop(timeout)

    def supervise(self) -> int:
        """Block until a signal (exit 0) or a fatal child death (exit 1); a dead dataflow
        process is started again within the restart budget (`Supervisor.supervise`)."""
        return self.processes.supervise()
