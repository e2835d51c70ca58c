"""Day 2 on a cluster on one machine: the chart's rendered manifests, installed and then
scaled, upgraded, and hit by a deleted pod and a killed process, while users chat.

The cluster is a model (no API server or container runtime runs on these machines):
- the API server stand-in (tests/support/apiserver.py) holds the objects Helm applies and
  authorizes every request with Kubernetes' RBAC rules and the chart's Roles;
- Helm (helm.py): hooks by event and weight, hook Jobs waited for, delete policies, the
  three-way merge of a StatefulSet's replicas;
- the StatefulSet controller (controllers.py): ordinals, Parallel and OrderedReady,
  RollingUpdate (highest ordinal first, waiting for Ready; partition) and OnDelete,
  volumeClaimTemplates, revisions and status;
- cluster DNS: headless records (with publishNotReadyAddresses) and Service names, one
  second behind the pods, as endpoints lag;
- the kubelet (kubelet.py): a network namespace and IP per pod on a bridge, the rendered
  ports unchanged, each container from its built image (images.py; the official nats
  image: this machine's root) as PID 1 of its own PID namespace with the rendered
  securityContext (user, groups with fsGroup, no capabilities, read-only root), volumes
  at their mount paths with fsGroup applied, service-account tokens, the environment
  resolved as Kubernetes does, the container's command (the image's entrypoint when the
  manifest gives none), startup/liveness/readiness probes as declared, restart back-off
  (10 s doubling, capped at 5 min), SIGTERM and the grace period on deletion.

What it does not model: image tags (the chart's images map to one local image each, so
an "image change" changes the pod template and nothing else), scheduling and nodes
(one node; no affinity, taints, resources or evictions; no Multi-Attach checks of
ReadWriteOnce claims), Deployments (the frontend and local model do not run; the users
below talk to NATS directly), Service virtual IPs and kube-proxy (a Service name resolves
to a ready pod), NetworkPolicy, seccomp profiles, PodDisruption
budgets, ConfigMap updates reaching running pods, and the API server's admission,
validation and defaulting beyond what is written here.

Each scenario reports prompts sent / answered / lost / duplicates shown / history
mismatches, how often the Bytewax cluster re-formed (counted from each pod's log), and the
longest time in which no answer arrived. The table lands in artifacts/cluster/day2.md.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.chart.conftest import Chart
from tests.cluster.controllers import revision, settle
from tests.cluster.helm import edit
from tests.cluster.model import LLM_HOST, ClusterModel, Running, running_cluster
from tests.cluster.traffic import Traffic

NS = "chat"
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "cluster"
DATAFLOW = "-dataflow"


@dataclass
class Row:
    scenario: str
    sent: int
    answered: int
    lost: int
    duplicates_shown: int
    history_mismatches: int
    cluster_restarts: int
    longest_gap_s: float
    settled_s: float


ROWS: list[Row] = []


class Day2:
    """The installed release, the users, and the renders an upgrade applies."""

    def __init__(self, running: Running, chart: Chart) -> None:
        self.running = running
        self.model = running.model
        self.chart = chart
        self.base = (f"llm.baseUrl=http://{LLM_HOST}:{running.llm_port}/v1", "llm.model=echo-1",
                     "dataflow.processes=2", "dataflow.recovery.snapshotIntervalSeconds=2",
                     "llm.retryMaxSeconds=10",
                     # The simulated users chat faster than a person types (several prompts
                     # a second each): no per-user rate limit here.
                     "dataflow.limits.userPromptsPerMinute=0")

    def render(self, *sets: str) -> list[dict[str, Any]]:
        return list(self.chart.render(*self.base, *sets))

    def pods(self) -> list[str]:
        sts = self.model.statefulset(DATAFLOW)
        return sorted(p["metadata"]["name"] for p in self.model.pods(sts)
                      if not p["metadata"].get("deletionTimestamp"))

    def users(self) -> Traffic:
        return self.running.users()

    def scenario(self, name: str, act: Callable[[], None], settle_timeout_s: float = 180
                 ) -> Row:
        """Users chat; `act` happens; the dataflow settles; users chat a little more."""
        model = self.model
        traffic = self.users().start()
        settle(lambda: traffic.window.answered >= 8, 60, "answers before the scenario")
        # Per pod name: a pod removed earlier and now back appends to its old log.
        names = [f"chatwax-dataflow-{i}" for i in range(8)]
        before = {p: model.formations(p) for p in names}
        began = time.time()
        act()
        time.sleep(1.0)  # let the controller and the pods react before looking
        model.wait_settled(DATAFLOW, settle_timeout_s)
        settled = time.time() - began
        answered = traffic.window.answered
        settle(lambda: traffic.window.answered >= answered + 8, 60, "answers after it")
        window = traffic.stop()
        end = time.time()
        restarts = max(model.formations(p) - before[p] for p in self.pods())
        row = Row(name, window.sent, window.answered, window.lost, window.duplicates_shown,
                  traffic.history_mismatches(), restarts,
                  round(window.longest_gap(began, end), 1), round(settled, 1))
        ROWS.append(row)
        print(f"{name}: {asdict(row)}")
        return row


@pytest.fixture(scope="module")
def day2(chart: Chart, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Day2]:
    with running_cluster(tmp_path_factory.mktemp("cluster"), NS, ARTIFACTS / "logs") as running:
        yield Day2(running, chart)


def check(row: Row, restarts: int = 1) -> None:
    assert row.answered > 0
    assert (row.lost, row.duplicates_shown, row.history_mismatches) == (0, 0, 0), row
    assert row.cluster_restarts == restarts, row


def test_install_makes_the_passwords_and_every_pod_comes_up_ready(day2: Day2) -> None:
    model = day2.model
    docs = day2.render()
    model.helm.install(docs)
    assert model.helm.hook_runs == [("pre-install", "chatwax-nats-auth-init", True)]
    passwords = model.secret("chatwax-nats-auth")
    assert sorted(passwords) == ["dataflow-password", "frontend-password", "operator-password",
                                "route-password"]
    model.wait_settled("-nats", 120)
    model.wait_settled(DATAFLOW, 180)
    # Every pod waited for its own DNS record (one second behind) before Bytewax bound it,
    # and read its peers from the StatefulSet through the API with the chart's Role.
    logs = model.kubelet.log_text("chatwax-dataflow-1")
    assert "dataflow process 1 of 2" in logs and "cluster formed" in logs
    assert not any(r == ("pre-install", "chatwax-nats-auth-init", False)
                   for r in model.helm.hook_runs)
    # `helm test`: the test pod's command, with its rendered environment, gets an answer.
    model.helm.test(docs)
    assert model.helm.hook_runs[-1][0] == "test" and model.helm.hook_runs[-1][2]
    assert "echo: ping" in model.kubelet.logs_of(model.helm.hook_runs[-1][1])
    # Passwords made once: an upgrade's pre-upgrade hook leaves them as they are.
    model.helm.upgrade(docs)
    assert model.secret("chatwax-nats-auth") == passwords


def test_kubectl_scale_up_adds_a_process_to_the_cluster(day2: Day2) -> None:
    row = day2.scenario("kubectl scale 2 -> 3", lambda: day2.model.scale(DATAFLOW, 3))
    check(row)
    assert day2.pods() == [f"chatwax-dataflow-{i}" for i in range(3)]
    assert "dataflow process 2 of 3" in day2.model.kubelet.log_text("chatwax-dataflow-2")


def test_kubectl_scale_down_leaves_the_rest_re_formed(day2: Day2) -> None:
    row = day2.scenario("kubectl scale 3 -> 1", lambda: day2.model.scale(DATAFLOW, 1))
    check(row)
    assert day2.pods() == ["chatwax-dataflow-0"]
    assert day2.model.kubelet.log_text("chatwax-dataflow-0").count("of 1, ") >= 1
    row = day2.scenario("kubectl scale 1 -> 2", lambda: day2.model.scale(DATAFLOW, 2))
    check(row)


def self_deleted(model: ClusterModel, since: float) -> list[str]:
    """Pods deleted through the API since `since`, sorted. In this model only the pods
    themselves delete pods through it (controllers, kubectl and Helm act on the store),
    and each may delete only its own name (the chart's Role)."""
    return sorted(r.path.rsplit("/", 1)[1] for r in model.apiserver.log
                  if r.at >= since and r.method == "DELETE" and "/pods/" in r.path
                  and r.status == 200)


def no_rollout_hook(model: ClusterModel) -> None:
    """Nothing ran after the upgrade for the dataflow: no post-upgrade hook, no Job."""
    assert not [r for r in model.helm.hook_runs if r[0] == "post-upgrade"]
    assert not [j for j in model.store.list("Job", NS) if "dataflow" in j["metadata"]["name"]]


def test_helm_upgrade_of_the_image_restarts_the_cluster_once(day2: Day2) -> None:
    """No hook: every pod sees its StatefulSet's new updateRevision on the watch it holds
    and deletes itself; the controller recreates them all from the new template."""
    model = day2.model
    old = revision(model.statefulset(DATAFLOW))
    docs = day2.render("dataflow.image.tag=0.1.1")
    began = time.time()
    row = day2.scenario("helm upgrade (image tag)", lambda: model.helm.upgrade(docs))
    check(row)
    assert revision(model.statefulset(DATAFLOW)) != old
    no_rollout_hook(model)
    # Both pods (the chart says 2, as the last scale left it) deleted themselves, once each.
    assert self_deleted(model, began) == ["chatwax-dataflow-0", "chatwax-dataflow-1"]
    assert day2.pods() == ["chatwax-dataflow-0", "chatwax-dataflow-1"]
    assert "deleting itself to be recreated from the new template" in \
        model.kubelet.log_text("chatwax-dataflow-1")


def test_a_deleted_pod_comes_back_and_the_cluster_re_forms(day2: Day2) -> None:
    model = day2.model
    row = day2.scenario("kubectl delete pod", lambda: model.delete_pod("chatwax-dataflow-1"))
    check(row)


def test_a_killed_process_is_restarted_by_the_kubelet(day2: Day2) -> None:
    model = day2.model
    restarts = [e for e in model.kubelet.events if e[1] == "restart"]
    row = day2.scenario("process killed (SIGKILL)", lambda: model.kill("chatwax-dataflow-0"))
    check(row)
    now = [e for e in model.kubelet.events if e[1] == "restart"]
    assert len(now) == len(restarts) + 1  # the kubelet restarted that one container


def test_rolling_update_would_restart_the_cluster_once_per_pod(day2: Day2) -> None:
    """What the chart did before 0.3.0 (RollingUpdate, nothing restarting the pods
    together), for comparison: the controller replaces one pod at a time and the cluster
    re-forms after each. The Role here lacks `delete` on pods: each pod's own delete is
    refused, logged, and the pod carries on (what a pod beyond maxProcesses does)."""
    model = day2.model
    docs = edit(day2.render("dataflow.image.tag=0.1.2"), "StatefulSet", DATAFLOW,
                lambda s: s["spec"].__setitem__("updateStrategy", {"type": "RollingUpdate"}))
    docs = edit(docs, "Role", DATAFLOW, lambda r: r.__setitem__(
        "rules", [x for x in r["rules"] if x["resources"] != ["pods"]]))
    row = day2.scenario("for comparison: RollingUpdate upgrade, no self-replacement",
                        lambda: model.helm.upgrade(docs))
    check(row, restarts=2)
    assert "403 Forbidden" in model.kubelet.log_text("chatwax-dataflow-0")


def test_write_the_table() -> None:
    """artifacts/cluster/day2.md: the table docs/kubernetes.md reports."""
    assert ROWS, "no scenario ran"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    head = ("scenario", "sent", "answered", "lost", "duplicates shown", "history mismatches",
            "cluster restarts", "longest gap without answers (s)", "settled after (s)")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(v) for v in asdict(r).values()) + " |" for r in ROWS]
    (ARTIFACTS / "day2.md").write_text("\n".join(lines) + "\n")
    (ARTIFACTS / "day2.json").write_text(json.dumps([asdict(r) for r in ROWS], indent=2))
    print("\n".join(lines))
