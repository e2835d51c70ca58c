"""A cluster on one machine: the API server stand-in, the StatefulSet and Job controllers,
cluster DNS, a kubelet and Helm, wired together, with what an operator does to a release (kubectl
scale, kubectl delete pod, a process killed on a node, helm upgrade)."""

from __future__ import annotations

import base64
import shutil
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from chatwax.core.settings import Settings
from chatwax.dev.echo_llm import serve_in_thread
from tests.cluster import images as cluster_images
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
from tests.cluster.traffic import Traffic
from tests.support.apiserver import ApiServer, Obj

ROOT = Path(__file__).resolve().parents[2]
FORMED = "cluster formed:"
# The LLM the scenarios' releases talk to: the echo server on the bridge's host side,
# under a cluster name (a Service the model does not run).
LLM_HOST = "llm.models.svc.cluster.local"


def images(ref: str) -> Image:
    """The image the chart names, as the kubelet runs it: tests/cluster/images.py."""
    return cluster_images.image(ref)


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
        # Nothing reacts to the store from here on: a pod created or deleted while the
        # model closes (a controller's last reconcile, a Job's retry) starts no runner the
        # kubelet's shutdown would not see, and that would outlive this model.
        self.store.listeners.clear()
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


@dataclass
class Running:
    """A model cluster with the echo LLM serving, and the users chatting through NATS."""

    model: ClusterModel
    llm_port: int
    traffic: Traffic | None = None

    def users(self) -> Traffic:
        """Simulated users, through chatwax-nats-0 with the frontend's password (made on
        first use: the release must be installed)."""
        if self.traffic is None:
            passwords = self.model.secret("chatwax-nats-auth")
            url = f"nats://{self.model.pod_ip('chatwax-nats-0')}:4222"
            self.traffic = Traffic(Settings(nats_url=url, nats_user="frontend",
                                            nats_password=passwords["frontend-password"]))
        return self.traffic


@contextmanager
def running_cluster(work: Path, namespace: str, logs: Path, *,
                    require_namespaces: bool = False) -> Iterator[Running]:
    """The fixture of the scenario modules: a ClusterModel in `work`, the echo LLM on the
    bridge's host side as LLM_HOST, then on the way out the users stopped, the model
    closed, the pods' logs copied to `logs` (replacing an earlier run's) and `work` removed.
    `require_namespaces`: creates in a missing namespace are refused (the real tools
    create theirs first)."""
    model = ClusterModel(work, namespace)
    model.apiserver.require_namespaces = require_namespaces
    try:
        with serve_in_thread(host=model.network.gateway, model="echo-1",
                             latency_s=0.05) as llm:
            model.dns.static[LLM_HOST] = model.network.gateway
            running = Running(model, llm.port)
            try:
                yield running
            finally:
                if running.traffic is not None:
                    running.traffic.close()
    finally:
        model.close()
        shutil.rmtree(logs, ignore_errors=True)
        shutil.copytree(work / "logs", logs, dirs_exist_ok=True)
        shutil.rmtree(work, ignore_errors=True)
