"""A cluster on one machine: the API server stand-in, the StatefulSet and Job controllers,
cluster DNS, a kubelet and Helm, wired together, with what an operator does to a release (kubectl
scale, kubectl delete pod, a process killed on a node, helm upgrade)."""

from __future__ import annotations

import base64
import json
import re
import signal
import sys
from pathlib import Path

from tests.cluster.controllers import (
    Dns,
    JobController,
    StatefulSetController,
    is_ready,
    revision,
    settle,
)
from tests.cluster.helm import Helm
from tests.cluster.kubelet import Image, Kubelet, project_paths
from tests.cluster.network import Network
from tests.support.apiserver import ApiServer, Obj

ROOT = Path(__file__).resolve().parents[2]
FORMED = "cluster formed:"


def dockerfile_image(dockerfile: Path, target: str | None = None) -> Image:
    """ENTRYPOINT and CMD of a stage of one of the project's Dockerfiles; its environment
    is this machine's: the project's virtualenv stands for the image's /opt/venv."""
    stages = re.split(r"^FROM ", dockerfile.read_text(), flags=re.M)[1:]
    body = next((s for s in stages if target and s.split("\n", 1)[0].split()[-1] == target),
                stages[-1])

    def exec_form(name: str) -> list[str]:
        found = re.findall(rf"^{name} (.+)$", body, flags=re.M)
        return list(json.loads(found[-1])) if found else []

    venv_bin = str(Path(sys.executable).parent)
    return Image(exec_form("ENTRYPOINT"), exec_form("CMD"), {
        "PATH": f"{venv_bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "PYTHONUNBUFFERED": "1", "HOME": "/tmp"})


def images(ref: str) -> Image:
    repository = ref.rsplit(":", 1)[0]
    if repository.endswith("chatwax-dataflow"):
        return dockerfile_image(ROOT / "Dockerfile.dataflow")
    if repository.endswith("chatwax-local-llm"):
        return dockerfile_image(ROOT / "Dockerfile.dataflow", "local-llm")
    if repository.endswith("chatwax-frontend"):
        return dockerfile_image(ROOT / "Dockerfile.frontend")
    if repository.rsplit("/", 1)[-1] == "nats":  # the official image's entrypoint
        return Image(["nats-server"], [], dockerfile_image(ROOT / "Dockerfile.dataflow").env)
    raise KeyError(f"the model has no image {ref}")


class ClusterModel:
    def __init__(self, workdir: Path, namespace: str, static_names: dict[str, str] | None = None,
                 dns_delay_s: float = 1.0) -> None:
        self.namespace = namespace
        self.network = Network(workdir)
        self.apiserver = ApiServer(host=self.network.gateway, rbac=True, tls_dir=workdir)
        self.store = self.apiserver.store
        self.kubelet = Kubelet(self.apiserver, self.network, workdir, images, project_paths())
        self.statefulsets = StatefulSetController(self.store)
        self.jobs = JobController(self.store)
        self.dns = Dns(self.store, self.network, delay_s=dns_delay_s,
                       static=static_names or {})
        self.helm = Helm(self.store, namespace)
        self.statefulsets.start()
        self.jobs.start()
        self.dns.start()

    def close(self) -> None:
        self.statefulsets.close()
        self.jobs.close()
        self.dns.close()
        self.kubelet.shutdown()
        self.apiserver.close()
        self.network.close()

    # -- what an operator sees ------------------------------------------------------------

    def statefulset(self, suffix: str) -> Obj:
        found = [s for s in self.store.list("StatefulSet", self.namespace)
                 if s["metadata"]["name"].endswith(suffix)]
        assert len(found) == 1, found
        return found[0]

    def pods(self, sts: Obj) -> list[Obj]:
        return self.store.list("Pod", self.namespace, sts["spec"]["selector"]["matchLabels"])

    def settled(self, suffix: str) -> bool:
        """Every wanted pod exists, runs the current template, and is Ready."""
        sts = self.statefulset(suffix)
        pods = [p for p in self.pods(sts) if not p["metadata"].get("deletionTimestamp")]
        rev = revision(sts)
        return (len(pods) == sts["spec"].get("replicas", 1) and all(is_ready(p) for p in pods)
                and all(p["metadata"]["labels"]["controller-revision-hash"] == rev
                        for p in pods))

    def wait_settled(self, suffix: str, timeout_s: float = 180) -> None:
        settle(lambda: self.settled(suffix), timeout_s, f"StatefulSet *{suffix} settling")

    def secret(self, name: str) -> dict[str, str]:
        obj = self.store.get("Secret", self.namespace, name)
        assert obj is not None, name
        return {k: base64.b64decode(v).decode() for k, v in obj["data"].items()}

    def pod_ip(self, name: str) -> str:
        pod = self.store.get("Pod", self.namespace, name)
        assert pod is not None, name
        return str(pod["status"]["podIP"])

    def formations(self, pod: str) -> int:
        """How often this pod's process has seen its Bytewax cluster form."""
        return self.kubelet.log_text(pod).count(FORMED)

    # -- what an operator does ------------------------------------------------------------

    def scale(self, suffix: str, replicas: int) -> None:
        """kubectl scale statefulset --replicas=N"""
        name = self.statefulset(suffix)["metadata"]["name"]
        self.store.update("StatefulSet", self.namespace, name,
                          lambda o: o["spec"].__setitem__("replicas", replicas))

    def delete_pod(self, name: str) -> None:
        """kubectl delete pod NAME"""
        self.store.request_delete("Pod", self.namespace, name)

    def kill(self, pod: str, container: str | None = None) -> None:
        """A container's main process dies (OOM kill, crash): SIGKILL, no warning."""
        runner = self.kubelet.runner(self.namespace, pod)
        assert runner is not None, pod
        target = next(c for c in runner.containers if container in (None, c.name))
        target.signal(signal.SIGKILL)

    def wait_gone(self, name: str, timeout_s: float = 60) -> None:
        settle(lambda: self.store.get("Pod", self.namespace, name) is None, timeout_s,
               f"pod {name} going away")
