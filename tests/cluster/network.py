"""Pod networking for the cluster model: a bridge, a network namespace per pod, and DNS.

Each pod gets its own network namespace with one interface on a bridge in the host's
namespace, so every pod has its own IP and uses the ports its manifest declares, as in a
cluster. The host side of the bridge (the first address of the subnet) stands for
everything outside the pods: the API server, Services the model does not run, the LLM.

DNS is one hosts file in a folder every pod has mounted, with /etc/hosts a link to it: the
model replaces the file atomically as pods come and go, like cluster DNS following
endpoints, and a lookup never sees it half-written.
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import subprocess
import threading
from pathlib import Path


def sh(*args: str) -> None:
    res = subprocess.run(args, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {res.stderr.strip()}")


def require_root() -> None:
    """The model makes network namespaces, veths and mounts: root (CI runs as root)."""
    if os.geteuid() != 0:
        raise RuntimeError("the cluster model needs root: it makes network namespaces, "
                           "veth pairs and mount namespaces (iproute2, util-linux)")


# Models made by one test session, numbered: each gets its own names and subnet.
_MODELS = itertools.count()


class Network:
    """A /24 of pods behind one bridge; names and subnet are unique per model: the test
    session (pid) and the model's number in it.

    One session makes several models one after the other (test_day2, then
    test_real_tools once per helm major). With names per session only, each model reused
    the last one's bridge name, namespace names, subnet and IPs, and a thread of the last
    model's kubelet still finishing (a pod's `ip netns del` after its grace period, a pod
    being set up when the kubelet shut down) deleted or joined the next model's namespace
    of the same name, or took an IP the next model gave another pod: a pod unreachable
    from its probes, never Ready (issue #21, the helm 4 race)."""

    def __init__(self, workdir: Path) -> None:
        require_root()
        self.workdir = workdir
        # 4 digits of pid, 1 of model number: interface names stay under 16 characters.
        tag = (os.getpid() % 10_000) * 10 + next(_MODELS) % 10
        self.prefix = f"cwx{tag}"  # interface names must stay under 16 characters
        self.bridge = f"{self.prefix}br"
        octet = 100 + tag % 150
        self.subnet = ipaddress.ip_network(f"10.{octet}.{tag % 250}.0/24")
        hosts = list(self.subnet.hosts())
        self.gateway = str(hosts[0])
        self._free = [str(h) for h in hosts[1:]]
        self._lock = threading.Lock()
        self._names: dict[str, str] = {}
        self._cleanup_stale()
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        sh("ip", "addr", "add", f"{self.gateway}/{self.subnet.prefixlen}", "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")

    def _cleanup_stale(self) -> None:
        """Leftovers of an earlier run with the same names (a killed test session)."""
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        for ns in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                 text=True).stdout.split("\n"):
            name = ns.split(" ")[0]
            if name.startswith(self.prefix):
                subprocess.run(["ip", "netns", "del", name], capture_output=True)

    def add_pod(self, pod: str) -> tuple[str, str]:
        """A namespace and an IP for `pod`; returns (namespace name, IP)."""
        with self._lock:
            ip = self._free.pop(0)
        index = ip.rsplit(".", 1)[1]
        ns, veth = f"{self.prefix}-{index}", f"{self.prefix}v{index}"
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        sh("ip", "link", "set", veth, "master", self.bridge, "up")
        sh("ip", "netns", "exec", ns, "ip", "addr", "add", f"{ip}/{self.subnet.prefixlen}",
           "dev", "eth0")
        sh("ip", "netns", "exec", ns, "ip", "link", "set", "eth0", "up")
        sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        sh("ip", "netns", "exec", ns, "ip", "route", "add", "default", "via", self.gateway)
        return ns, ip

    def remove_pod(self, ns: str, ip: str) -> None:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        with self._lock:
            self._free.append(ip)

    # -- DNS -------------------------------------------------------------------------------

    @property
    def dns_dir(self) -> Path:
        """Holds `hosts`; pods mount it and link /etc/hosts to the file in it."""
        path = self.workdir / "dns"
        if not path.exists():
            path.mkdir(parents=True)
            self._write()
        return path

    def set_names(self, names: dict[str, str]) -> None:
        """Every pod sees these name -> IP records from now on."""
        with self._lock:
            if names == self._names:
                return
            self._names = dict(names)
            self._write()

    def _write(self) -> None:
        lines = ["127.0.0.1 localhost"]
        lines += [f"{ip} {name}" for name, ip in sorted(self._names.items())]
        (self.workdir / "dns").mkdir(parents=True, exist_ok=True)
        tmp = self.workdir / "dns" / "hosts.tmp"
        tmp.write_text("\n".join(lines) + "\n")
        os.replace(tmp, self.workdir / "dns" / "hosts")

    def close(self) -> None:
        self._cleanup_stale()
