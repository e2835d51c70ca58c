"""A cluster on one machine: the API server stand-in, the StatefulSet and Job controllers,
cluster DNS, a kubelet and Helm, wired together, with what an operator does to a release (kubectl
scale, kubectl delete pod, a process killed on a node, helm upgrade)."""

from __future__ import annotations

import base64
import json
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
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

    def chart_values(self, chart: Path) -> list[str]:
        """The values the real tools install the chart with here: ci/kind-values.yaml, the
        local model swapped for this cluster's echo LLM, no per-user rate limit."""
        values = ["-f", str(chart / "ci" / "kind-values.yaml")]
        for s in ("llm.local.enabled=false", f"llm.baseUrl=http://{LLM_HOST}:{self.llm_port}/v1",
                  "llm.model=echo-1", "llm.retryMaxSeconds=10",
                  "dataflow.limits.userPromptsPerMinute=0"):
            values += ["--set", s]
        return values

    def dataflow_replicas(self, suffix: str = "-dataflow") -> int:
        return int(self.model.statefulset(suffix)["spec"]["replicas"])

    def dataflow_pods(self, suffix: str = "-dataflow") -> list[str]:
        """The dataflow pods that are not on their way out."""
        sts = self.model.statefulset(suffix)
        return sorted(p["metadata"]["name"] for p in self.model.pods(sts)
                      if not p["metadata"].get("deletionTimestamp"))

    def update_revision(self, suffix: str = "-dataflow") -> str:
        return str(self.model.statefulset(suffix)["status"]["updateRevision"])

    def pod_revisions(self, suffix: str = "-dataflow") -> set[str]:
        sts = self.model.statefulset(suffix)
        return {p["metadata"]["labels"]["controller-revision-hash"] for p in self.model.pods(sts)}

    def crash_looping(self, revision: str, suffix: str = "-dataflow") -> bool:
        """Every pod is on `revision`, not Ready, and has restarted at least once."""
        pods = self.model.pods(self.model.statefulset(suffix))
        return bool(pods) and all(
            p["metadata"]["labels"]["controller-revision-hash"] == revision
            and not is_ready(p) and any(c.get("restartCount", 0) >= 1 for c in
                                        p["status"].get("containerStatuses") or [])
            for p in pods)

    def measure(self, tool: str, scenario: str, act: Callable[[], str], sts: str,
                settle_s: float = 120, after_s: float = 60) -> Row:
        """Users chat; `act` runs a tool (and says how it ended); the dataflow settles
        (every wanted pod on the current template and Ready); users chat a little more.
        Restarts are Bytewax cluster formations after the act, from the pods' logs."""
        traffic = self.users().start()
        settle(lambda: traffic.window.answered >= 5, 60, "answers before the scenario")
        before = {p: self.model.formations(p) for p in (f"{sts}-{i}" for i in range(6))}
        replicas_before = self.dataflow_replicas()
        began = time.time()
        outcome = act()
        time.sleep(1.0)  # the controllers and the pods react before we look
        self.model.wait_settled("-dataflow", settle_s)
        seconds = time.time() - began
        answered = traffic.window.answered
        settle(lambda: traffic.window.answered >= answered + 5, after_s, "answers after it")
        window = traffic.stop()
        restarts = max(self.model.formations(p) - before[p] for p in self.dataflow_pods())
        return Row(tool, scenario, outcome, replicas_before, self.dataflow_replicas(),
                   window.sent, window.answered, window.lost, restarts, round(seconds, 1))


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


@dataclass(frozen=True)
class Row:
    """One scenario of the real-tools and GitOps tables (docs/kubernetes.md)."""

    tool: str
    scenario: str
    outcome: str
    replicas_before: int
    replicas_after: int
    sent: int
    answered: int
    lost: int
    cluster_restarts: int
    seconds: float


def write_table(rows: list[Row], stem: Path, tool_header: str) -> str:
    """`stem`.md (the table the docs report) and `stem`.json; the table's text."""
    head = (tool_header, "scenario", "outcome", "replicas before", "replicas after", "sent",
            "answered", "lost", "cluster restarts", "settled after (s)")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(v).replace("|", "/") for v in asdict(r).values()) + " |"
              for r in rows]
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    stem.with_suffix(".json").write_text(json.dumps([asdict(r) for r in rows], indent=2))
    return "\n".join(lines)
