"""Structural checks on the rendered objects: what refers to what must exist, the dataflow's
peer list must match its pod count, secrets stay secret, config changes roll pods."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from chatwax.cli import build_parser
from chatwax.kube.revision import REVISION_ENV
from tests.chart.conftest import (
    OPEN_MODE,
    SIGN_IN,
    Chart,
    Rendered,
    env_of,
    nats_routes,
    secret_files_of,
)

SENTINEL = "sk-chatwax-sentinel-0123456789abcdef"


def _pod_labels(w: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = w["spec"]["template"]["metadata"]["labels"]
    return labels


def _selected(docs: Rendered, selector: dict[str, str]) -> list[dict[str, Any]]:
    return [w for w in docs.workloads() if selector.items() <= _pod_labels(w).items()]


def _container_ports(workloads: list[dict[str, Any]]) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for w in workloads
            for c in w["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}


# -- the dataflow cluster ---------------------------------------------------------------


@pytest.mark.parametrize("processes", [1, 2, 3, 4, 5])
def test_replicas_process_count_and_peer_list_agree(chart: Chart, processes: int) -> None:
    docs = chart.render(f"dataflow.processes={processes}")
    sts = docs.find("StatefulSet", "-dataflow")
    assert sts["spec"]["replicas"] == processes
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    env = docs.env("StatefulSet", "-dataflow")
    name, headless = sts["metadata"]["name"], sts["spec"]["serviceName"]
    port = docs.find("Service", "-dataflow-headless")["spec"]["ports"][0]
    assert port["name"] == "process"
    # One address per pod, in ordinal order, each the pod's stable DNS name.
    assert env["BYTEWAX_ADDRESSES"].split(";") == [
        f"{name}-{i}.{headless}.{chart.namespace}.svc.cluster.local:{port['port']}"
        for i in range(processes)]
    # Each pod finds its own index in that list: its name minus "<statefulset>-".
    assert env["BYTEWAX_STATEFULSET_NAME"] == name
    assert env["BYTEWAX_POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert "BYTEWAX_PROCESS_ID" not in env
    # Recovery partitions: the process's own default (16, or more processes) unless set.
    assert "CHATWAX_RECOVERY_PARTITIONS" not in env
    assert docs.find("Service", "-dataflow-headless")["metadata"]["name"] == headless


def test_a_changed_template_restarts_every_pod_together(chart: Chart) -> None:
    """A new process count (or image, or config) changes the pod template; OnDelete replaces
    nothing by itself, and no hook does either: each pod knows the revision it was made
    from (the controller's label, through the downward API) and deletes itself when its
    StatefulSet's updateRevision differs (chatwax.kube.revision), whoever applied the
    template (Helm, Argo CD, Flux, kubectl)."""
    a = chart.render("dataflow.processes=2").find("StatefulSet", "-dataflow")
    b = chart.render("dataflow.processes=3").find("StatefulSet", "-dataflow")
    assert a["spec"]["template"] != b["spec"]["template"]
    ann = lambda s: s["spec"]["template"]["metadata"]["annotations"]  # noqa: E731
    assert (ann(a)["chatwax.io/processes"], ann(b)["chatwax.io/processes"]) == ("2", "3")
    # rollingUpdate: null deletes a rollingUpdate the API server defaulted on a StatefulSet
    # first made as RollingUpdate (tests/chart/test_upgrade_from_old_charts.py).
    assert a["spec"]["updateStrategy"] == {"type": "OnDelete", "rollingUpdate": None}
    docs = chart.render()
    env = docs.env("StatefulSet", "-dataflow")
    assert env[REVISION_ENV] == {"fieldRef": {
        "fieldPath": "metadata.labels['controller-revision-hash']"}}
    # No hook, no Job: nothing Helm, Argo CD or Flux would wait for after an upgrade.
    assert not docs.of_kind("Job") or all(
        "dataflow" not in j["metadata"]["name"] for j in docs.of_kind("Job"))
    assert not [d for d in docs if "rollout" in d["metadata"]["name"]]
    assert not [d for d in docs
                if "post-upgrade" in (d["metadata"].get("annotations") or {}).get(
                    "helm.sh/hook", "")]


def _pod_delete_names(docs: Rendered) -> list[str]:
    role = docs.find("Role", "-dataflow")
    (rule,) = [r for r in role["rules"] if r["resources"] == ["pods"]]
    assert rule["verbs"] == ["delete"] and rule["apiGroups"] == [""]
    return list(rule["resourceNames"])


def test_a_pod_may_delete_only_the_statefulsets_own_pods_by_name(chart: Chart) -> None:
    """`delete` on pods `<sts>-0` to `-(M-1)`, M = max(processes, maxProcesses): no list,
    no other pod. A pod beyond M (a larger `kubectl scale`) is refused and says so."""
    sts = chart.render().find("StatefulSet", "-dataflow")["metadata"]["name"]
    assert _pod_delete_names(chart.render()) == [f"{sts}-{i}" for i in range(16)]
    assert _pod_delete_names(chart.render("dataflow.replicaLookup.maxProcesses=4")) == [
        f"{sts}-{i}" for i in range(4)]
    assert _pod_delete_names(chart.render("dataflow.replicaLookup.maxProcesses=4",
                                          "dataflow.processes=6")) == [
        f"{sts}-{i}" for i in range(6)]
    refused = chart.helm("3", *chart.template_args("dataflow.replicaLookup.maxProcesses=0"))
    assert refused.returncode != 0 and "maxProcesses" in refused.stderr


def test_the_dataflow_may_read_only_its_own_statefulset(chart: Chart) -> None:
    docs = chart.render()
    sts = docs.find("StatefulSet", "-dataflow")
    pod = sts["spec"]["template"]["spec"]
    role = docs.find("Role", "-dataflow")
    assert role["rules"][0] == {"apiGroups": ["apps"], "resources": ["statefulsets"],
                                "resourceNames": [sts["metadata"]["name"]],
                                "verbs": ["get", "watch"]}
    assert len(role["rules"]) == 2 and _pod_delete_names(docs)  # and its own pods' names
    binding = docs.find("RoleBinding", "-dataflow")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": role["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount",
                                    "name": pod["serviceAccountName"],
                                    "namespace": chart.namespace}]
    account = docs.find("ServiceAccount", "-dataflow")
    assert account["metadata"]["name"] == pod["serviceAccountName"]
    env = docs.env("StatefulSet", "-dataflow")
    assert env["CHATWAX_K8S_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    # Nothing else that runs gets an API token (the hook Jobs have their own accounts).
    for w in docs.workloads():
        if w is not sts:
            assert w["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    own = chart.render("dataflow.serviceAccount.create=false",
                       "dataflow.serviceAccount.name=mine",
                       "nats.auth.enabled=false")
    assert not own.of_kind("ServiceAccount")
    assert own.find("RoleBinding")["subjects"][0]["name"] == "mine"
    # The token is mounted on the pod itself: a `default`-like account that turns
    # automounting off would otherwise leave every pod without credentials.
    assert pod["automountServiceAccountToken"] is True
    assert env["CHATWAX_K8S_API_TIMEOUT"] == "5" and env["CHATWAX_K8S_API_WAIT"] == "30"


def test_the_replica_lookup_and_rbac_can_be_turned_off(chart: Chart) -> None:
    """Without the lookup the pod has no token, no Kubernetes mode and no Role: the
    process count is dataflow.processes. Without rbac.create no Role or RoleBinding is
    rendered at all (their rules are the user's to grant), and nothing else changes."""
    off = chart.render("dataflow.replicaLookup.enabled=false", "dataflow.processes=3")
    pod = off.find("StatefulSet", "-dataflow")["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    env = off.env("StatefulSet", "-dataflow")
    assert "CHATWAX_K8S_NAMESPACE" not in env and "CHATWAX_K8S_API_WAIT" not in env
    assert REVISION_ENV not in env  # no watch: pods keep an old template until deleted
    assert len(env["BYTEWAX_ADDRESSES"].split(";")) == 3
    assert not [r for r in off.of_kind("Role") if r["metadata"]["name"].endswith("-dataflow")]
    assert not [b for b in off.of_kind("RoleBinding")
                if b["metadata"]["name"].endswith("-dataflow")]

    on = chart.render(*EVERYTHING_ON)
    no_rbac = chart.render(*EVERYTHING_ON, "rbac.create=false")
    assert on.of_kind("Role") and on.of_kind("RoleBinding")
    assert not no_rbac.of_kind("Role") and not no_rbac.of_kind("RoleBinding")
    rbac_kinds = ("Role", "RoleBinding")
    assert ([(d["kind"], d["metadata"]["name"]) for d in no_rbac] ==
            [(d["kind"], d["metadata"]["name"]) for d in on if d["kind"] not in rbac_kinds])


def test_recovery_is_one_volume_every_pod_shares(chart: Chart) -> None:
    docs = chart.render("dataflow.recovery.accessMode=ReadWriteMany",
                        "dataflow.recovery.storageClassName=shared-files")
    pod = docs.find("StatefulSet", "-dataflow")["spec"]["template"]["spec"]
    env = env_of(pod["containers"][0])
    mount = next(m for m in pod["containers"][0]["volumeMounts"]
                 if m["mountPath"] == env["BYTEWAX_RECOVERY_DIRECTORY"])
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    pvc = docs.find("PersistentVolumeClaim", "-recovery")
    assert volume["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert env["BYTEWAX_SNAPSHOT_INTERVAL"] == "5"
    assert env["BYTEWAX_RECOVERY_BACKUP_INTERVAL"] == "0"
    off = chart.render("dataflow.recovery.enabled=false")
    assert not off.of_kind("PersistentVolumeClaim")
    assert "BYTEWAX_RECOVERY_DIRECTORY" not in off.env("StatefulSet", "-dataflow")


def test_metrics_are_scraped_from_the_dataflow_api_port(chart: Chart) -> None:
    docs = chart.render()
    sts = docs.find("StatefulSet", "-dataflow")
    env = docs.env("StatefulSet", "-dataflow")
    ports = _container_ports([sts])
    assert env["BYTEWAX_DATAFLOW_API_ENABLED"] == "true"
    assert int(env["BYTEWAX_DATAFLOW_API_PORT"]) == ports["api"]
    ann = sts["spec"]["template"]["metadata"]["annotations"]
    assert ann["prometheus.io/scrape"] == "true"
    assert (int(ann["prometheus.io/port"]), ann["prometheus.io/path"]) == (ports["api"],
                                                                            "/metrics")
    moved = chart.render("dataflow.ports.api=9999").env("StatefulSet", "-dataflow")
    assert moved["BYTEWAX_DATAFLOW_API_PORT"] == "9999"


# -- secrets and checksums --------------------------------------------------------------


def test_the_api_key_is_never_in_plain_text(chart: Chart, helm_major: str,
                                            ci_values: Path) -> None:
    sets = (f"llm.apiKey={SENTINEL}", "llm.existingSecret=", "llm.local.enabled=false")
    text = chart.render_text(*sets, values=(ci_values,), major=helm_major)
    assert SENTINEL not in text
    docs = chart.render(*sets, values=(ci_values,), major=helm_major)
    secret = docs.find("Secret", "-llm")
    assert base64.b64decode(secret["data"]["api-key"]).decode() == SENTINEL
    files = docs.secret_files("StatefulSet", "-dataflow")
    assert files["OPENAI_API_KEY"] == {"name": secret["metadata"]["name"], "key": "api-key"}
    assert "OPENAI_API_KEY" not in docs.env("StatefulSet", "-dataflow")  # a file, not env
    for cm in docs.of_kind("ConfigMap"):
        assert "OPENAI_API_KEY" not in cm.get("data", {})


def test_an_existing_secret_is_used_and_none_is_made(chart: Chart) -> None:
    docs = chart.render("llm.existingSecret=my-key", "llm.existingSecretKey=token")
    assert not [d for d in docs.of_kind("Secret") if d["metadata"]["name"].endswith("-llm")]
    files = docs.secret_files("StatefulSet", "-dataflow")
    assert files["OPENAI_API_KEY"] == {"name": "my-key", "key": "token"}


def _checksums(chart: Chart, *sets: str) -> dict[str, str]:
    out = {}
    for w in chart.render(*sets).workloads():
        ann = w["spec"]["template"]["metadata"].get("annotations", {})
        out.update({f"{w['metadata']['name']}/{k}": v for k, v in ann.items()
                    if k.startswith("checksum/")})
    return out


def test_checksums_change_when_config_changes(chart: Chart) -> None:
    base = _checksums(chart)
    assert set(base) == {"chatwax-dataflow/checksum/env", "chatwax-dataflow/checksum/llm-secret",
                         "chatwax-nats/checksum/config", "chatwax-frontend/checksum/env"}
    changed = {
        # The frontend shows the model's name, so it rolls too.
        "llm.model=gpt-4.1": {"chatwax-dataflow/checksum/env", "chatwax-frontend/checksum/env"},
        "llm.apiKey=other": {"chatwax-dataflow/checksum/llm-secret"},
        "nats.jetstream.maxMemory=1Gi": {"chatwax-nats/checksum/config"},
        "nats.ports.client=4333": {"chatwax-dataflow/checksum/env", "chatwax-nats/checksum/config",
                                   "chatwax-frontend/checksum/env"},
    }
    for change, expected in changed.items():
        after = _checksums(chart, change)
        assert {k for k in base if base[k] != after[k]} == expected, change
    assert base == _checksums(chart, "frontend.replicas=1")  # deterministic otherwise


def test_nats_auth_is_on_by_default_and_passwords_are_made_in_the_cluster(chart: Chart) -> None:
    """No password is ever rendered: a pre-install hook generates the Secret once (so
    `helm template`, Argo CD and Flux cannot churn it), and every consumer reads it."""
    docs = chart.render()
    assert not docs.of_kind("Secret")
    job = docs.find("Job", "-nats-auth-init")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    command = job["spec"]["template"]["spec"]["containers"][0]["command"]
    args = build_parser().parse_args(command[1:])
    assert (args.kube_command, args.namespace) == ("ensure-secret", chart.namespace)
    assert sorted(args.key) == ["dataflow-password", "frontend-password", "operator-password",
                                "route-password"]
    role = docs.find("Role", "-nats-auth-init")
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": [args.name],
         "verbs": ["get", "patch"]}]
    conf = docs.find("ConfigMap", "-nats-config")["data"]["nats.conf"]
    for user in ("dataflow", "frontend", "operator"):
        assert f"password: ${user.upper()}_PASSWORD" in conf
    server = _nats_password_files(docs)
    test_pod = docs.find("Pod", "-test-ask")
    for pod, user in ((docs.find("StatefulSet", "-dataflow"), "dataflow"),
                      (docs.find("Deployment", "-frontend"), "frontend"),
                      (test_pod, "operator")):  # `helm test` asks as the CLI does
        spec = pod["spec"]["template"]["spec"] if "template" in pod["spec"] else pod["spec"]
        assert env_of(spec["containers"][0])["NATS_USER"] == user
        ref = {"name": args.name, "key": f"{user}-password"}
        assert secret_files_of(pod)["NATS_PASSWORD"] == ref
        assert server[user] == ref  # the server checks the same one
    for cm in docs.of_kind("ConfigMap"):
        assert "NATS_PASSWORD" not in cm.get("data", {})
    # Renders agree with each other: nothing random is left in the chart.
    assert chart.render_text() == chart.render_text("frontend.replicas=1")
    existing = chart.render("nats.auth.existingSecret=mine")
    assert not existing.of_kind("Secret")
    assert not [d for d in existing if "auth-init" in d["metadata"]["name"]]
    assert _nats_password_files(existing)["dataflow"]["name"] == "mine"
    off = chart.render("nats.auth.enabled=false")
    assert "NATS_USER" not in off.env("StatefulSet", "-dataflow")
    assert "authorization" not in off.find("ConfigMap", "-nats-config")["data"]["nats.conf"]
    assert not [d for d in off if d["kind"] == "Job" and "auth" in d["metadata"]["name"]]


@pytest.mark.parametrize(("sets", "compat"), [
    (OPEN_MODE, True),
    ((*OPEN_MODE, "dataflow.compatAdapter=false"), False),
    ((), False),  # sign-in on (the default, no provider yet): `prompts` is off...
    (SIGN_IN, False),
    ((*SIGN_IN, "dataflow.compatAdapter=true"), True),  # ...unless explicitly enabled
], ids=["open", "compat-off", "default", "sign-in", "sign-in-compat-on"])
def test_chart_client_permissions_match_the_protocol(chart: Chart, sets: tuple[str, ...],
                                                     compat: bool) -> None:
    """frontend and operator (the CLI) hold the protocol's client allow-list; `prompts` is
    in it exactly when the dataflow serves it."""
    from chatwax.core import wire
    from chatwax.core.wire import permissions

    docs = chart.render(*sets)
    conf = docs.find("ConfigMap", "-nats-config")["data"]["nats.conf"]
    for user in permissions.CLIENT_USERS:
        block = conf[conf.index(f"user: {user}"):]
        allowed = re.findall(r'"([^"]+)",', block[block.index("allow: ["):block.index("]")])
        assert tuple(allowed) == permissions.client_publish_allow(compat, user), user
    subject = docs.find("ConfigMap", "-dataflow-env")["data"]["CHATWAX_COMPAT_SUBJECT"]
    assert subject == (wire.COMPAT_SUBJECT if compat else "")


# -- references between objects ---------------------------------------------------------


def test_every_service_selects_pods_on_ports_that_exist(chart: Chart, ci_values: Path) -> None:
    docs = chart.render(values=(ci_values,))
    for svc in docs.of_kind("Service"):
        pods = _selected(docs, svc["spec"]["selector"])
        assert pods, f"Service {svc['metadata']['name']} selects no pods"
        ports = _container_ports(pods)
        for port in svc["spec"]["ports"]:
            target = port["targetPort"]
            assert target in ports or target in ports.values(), (svc["metadata"]["name"], target)


def test_every_selector_and_reference_points_at_something(chart: Chart,
                                                          ci_values: Path) -> None:
    """PDBs, the PodMonitor and NetworkPolicies select pods; their named ports exist; the
    HPA, Ingress, ConfigMap, Secret and volume references name rendered objects."""
    docs = chart.render(values=(ci_values,))
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for obj in docs.of_kind("PodDisruptionBudget") + docs.of_kind("PodMonitor"):
        assert _selected(docs, obj["spec"]["selector"]["matchLabels"]), obj["metadata"]["name"]
    for monitor in docs.of_kind("PodMonitor"):
        ports = _container_ports(_selected(docs, monitor["spec"]["selector"]["matchLabels"]))
        assert all(e["port"] in ports for e in monitor["spec"]["podMetricsEndpoints"])
    for policy in docs.of_kind("NetworkPolicy"):
        pods = _selected(docs, policy["spec"]["podSelector"]["matchLabels"])
        assert pods, policy["metadata"]["name"]
        ports = _container_ports(pods)
        for rule in policy["spec"]["ingress"]:
            for p in rule["ports"]:
                assert p["port"] in ports, (policy["metadata"]["name"], p["port"])
            for peer in rule.get("from", []):
                if "podSelector" in peer and "namespaceSelector" not in peer:  # this release's
                    assert _selected(docs, peer["podSelector"]["matchLabels"])
    for hpa in docs.of_kind("HorizontalPodAutoscaler"):
        ref = hpa["spec"]["scaleTargetRef"]
        assert (ref["kind"], ref["name"]) in names
    for ingress in docs.of_kind("Ingress"):
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                svc = docs.find("Service", path["backend"]["service"]["name"])
                assert path["backend"]["service"]["port"]["name"] in {
                    p["name"] for p in svc["spec"]["ports"]}
    # Secrets the user makes (named in the values file) are not rendered, nor those a hook
    # Job makes (`chatwax kube ensure-secret --name ...`).
    external = {_value(ci_values, "llm", "existingSecret"),
                _value(ci_values, "nats", "auth", "existingSecret"),
                _value(ci_values, "frontend", "auth", "existingSecret")} - {None}
    for job in docs.of_kind("Job"):
        for c in job["spec"]["template"]["spec"]["containers"]:
            if c["command"][1:3] == ["kube", "ensure-secret"]:
                external.add(build_parser().parse_args(c["command"][1:]).name)
    for w in [*docs.workloads(), *docs.of_kind("Pod")]:
        spec = w["spec"]["template"]["spec"] if "template" in w["spec"] else w["spec"]
        for c in spec["containers"]:
            for src in c.get("envFrom", []):
                assert ("ConfigMap", src["configMapRef"]["name"]) in names
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ("Secret", ref["name"]) in names or ref["name"] in external, ref
        for v in spec.get("volumes", []):
            for source in [v, *(v.get("projected") or {}).get("sources", [])]:
                if "secret" in source:
                    name = source["secret"].get("secretName") or source["secret"].get("name")
                    assert ("Secret", name) in names or name in external, name
            if "configMap" in v:
                assert ("ConfigMap", v["configMap"]["name"]) in names
            if "persistentVolumeClaim" in v:
                assert ("PersistentVolumeClaim", v["persistentVolumeClaim"]["claimName"]) in names
        if w["kind"] == "StatefulSet":
            assert ("Service", w["spec"]["serviceName"]) in names


def _value(values_file: Path, *keys: str) -> Any:
    node: Any = yaml.safe_load(values_file.read_text()) or {}
    for k in keys:
        node = node.get(k, {}) if isinstance(node, dict) else {}
    return node or None


def test_probes_use_declared_ports_and_pods_are_restricted(chart: Chart,
                                                           ci_values: Path) -> None:
    for w in chart.render(values=(ci_values,)).workloads():
        spec = w["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        for c in spec["containers"]:
            names = {p["name"] for p in c.get("ports", [])}
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                if probe in c:
                    port = (c[probe].get("httpGet") or c[probe].get("tcpSocket"))["port"]
                    assert port in names, (w["metadata"]["name"], c["name"], probe, port)
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert sc["seccompProfile"]["type"] == "RuntimeDefault"
            assert "resources" in c and c["resources"]["limits"]["memory"]


def test_probes_hit_the_paths_the_processes_serve(chart: Chart) -> None:
    docs = chart.render()
    nats = docs.container("StatefulSet", "-nats")
    assert [nats[p]["httpGet"]["path"] for p in ("startupProbe", "livenessProbe",
                                                 "readinessProbe")] == [
        "/healthz", "/healthz?js-enabled-only=true", "/healthz?js-server-only=true"]
    frontend = docs.container("Deployment", "-frontend")
    assert {frontend[p]["httpGet"]["path"] for p in ("startupProbe", "livenessProbe",
                                                     "readinessProbe")} == {"/_stcore/health"}
    dataflow = docs.container("StatefulSet", "-dataflow")
    assert [dataflow[p]["httpGet"]["path"] for p in ("startupProbe", "livenessProbe",
                                                     "readinessProbe")] == [
        "/livez", "/livez", "/readyz"]
    env = env_of(dataflow)
    health = next(p for p in dataflow["ports"] if p["name"] == "health")
    assert env["CHATWAX_HEALTH_PORT"] == str(health["containerPort"])
    # Timeouts that survive load, and a liveness that tolerates a minute of trouble.
    assert all(dataflow[p]["timeoutSeconds"] >= 5 for p in ("startupProbe", "livenessProbe",
                                                            "readinessProbe"))
    live = dataflow["livenessProbe"]
    assert live["periodSeconds"] * live["failureThreshold"] >= 60


def test_the_frontend_listens_where_the_chart_says(chart: Chart) -> None:
    docs = chart.render("frontend.port=8600")
    frontend = docs.container("Deployment", "-frontend")
    assert "--port=8600" in frontend["command"]
    assert _container_ports([docs.find("Deployment", "-frontend")])["http"] == 8600
    assert frontend["command"][:2] == ["chatwax", "ui"]  # Streamlit through the launcher
    mounts = {m["mountPath"] for m in frontend["volumeMounts"]}
    assert "/tmp" in mounts and env_of(frontend)["HOME"] == "/tmp"


# -- NATS --------------------------------------------------------------------------------


def test_nats_store_routes_and_services_fit_together(chart: Chart) -> None:
    docs = chart.render("nats.replicas=3", "nats.jetstream.storageSize=7Gi")
    sts = docs.find("StatefulSet", "-nats")
    conf = docs.find("ConfigMap", "-nats-config")["data"]["nats.conf"]
    claim = sts["spec"]["volumeClaimTemplates"][0]
    assert claim["spec"]["resources"]["requests"]["storage"] == "7Gi"
    assert "max_file_store: 7Gi" in conf
    mount = next(m for m in sts["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
                 if m["name"] == claim["metadata"]["name"])
    assert f"store_dir: {mount['mountPath']}" in conf
    name, headless = sts["metadata"]["name"], sts["spec"]["serviceName"]
    assert nats_routes(docs) == [f"{name}-{i}.{headless}.{chart.namespace}.svc.cluster.local:6222"
                                 for i in range(3)]
    assert docs.find("Service", headless)["spec"]["publishNotReadyAddresses"] is True
    assert docs.find("PodDisruptionBudget", "-nats")["spec"]["maxUnavailable"] == 1
    assert not [p for p in chart.render().of_kind("PodDisruptionBudget")
                if p["metadata"]["name"].endswith("-nats")]  # a single server has none
    assert "cluster {" not in chart.render().find("ConfigMap", "-nats-config")["data"][
        "nats.conf"]


def test_production_values_cluster_nats_with_auth_and_policies(chart: Chart) -> None:
    docs = chart.render(values=(chart.path / "ci" / "production-values.yaml",))
    nats = docs.find("StatefulSet", "-nats")
    assert nats["spec"]["replicas"] == 3
    assert docs.find("StatefulSet", "-dataflow")["spec"]["replicas"] == 4
    conf = docs.find("ConfigMap", "-nats-config")["data"]["nats.conf"]
    assert len(nats_routes(docs)) == 3 and "authorization" in conf
    assert [c["name"] for c in nats["spec"]["template"]["spec"]["containers"]] == [
        "nats", "exporter"]
    assert len(docs.of_kind("NetworkPolicy")) == 3
    assert docs.of_kind("PodMonitor") and docs.of_kind("HorizontalPodAutoscaler")
    env = docs.env("StatefulSet", "-dataflow")
    assert env["NATS_USER"] == "dataflow" and "NATS_PASSWORD" not in env
    assert "NATS_PASSWORD" in docs.secret_files("StatefulSet", "-dataflow")
    assert env["BYTEWAX_WORKERS_PER_PROCESS"] == "2"
    assert docs.find("ConfigMap", "-dataflow-env")["data"]["CHATWAX_STREAM_REPLICAS"] == "3"


def test_external_nats_renders_no_nats_and_points_clients_at_it(chart: Chart) -> None:
    docs = chart.render(values=(chart.path / "ci" / "external-nats-values.yaml",))
    assert not [d for d in docs if "-nats" in d["metadata"]["name"]]
    url = "nats://nats.messaging.svc.cluster.local:4222"
    assert docs.find("ConfigMap", "-dataflow-env")["data"]["NATS_URL"] == url
    assert docs.find("ConfigMap", "-frontend-env")["data"]["NATS_URL"] == url
    assert env_of(docs.of_kind("Pod")[0]["spec"]["containers"][0])["NATS_URL"] == url
    assert docs.secret_files("Deployment", "-frontend")["NATS_PASSWORD"] == {
        "name": "chatwax-nats-credentials", "key": "frontend-password"}
    res = chart.helm("3", *chart.template_args("nats.enabled=false"))
    assert res.returncode != 0 and "nats.url is required" in res.stderr
    # Auth is on by default; an external NATS has no chart-made passwords to use.
    external = ("nats.enabled=false", "nats.url=nats://nats:4222")
    res = chart.helm("3", *chart.template_args(*external))
    assert res.returncode != 0 and "needs nats.auth.existingSecret" in res.stderr
    open_nats = chart.render(*external, "nats.auth.enabled=false")
    assert "NATS_USER" not in open_nats.env("StatefulSet", "-dataflow")


# -- helm test and dashboards -------------------------------------------------------------


def test_helm_test_pod_asks_through_the_pipeline(chart: Chart) -> None:
    docs = chart.render()
    pod = docs.find("Pod", "-test-ask")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    container = pod["spec"]["containers"][0]
    command = container["command"]
    assert command[:4] == ["chatwax", "ask", "--user", "helm-test"] and command[-1] == "ping"
    assert container["image"] == docs.container("StatefulSet", "-dataflow")["image"]
    env = env_of(container)
    assert env["NATS_URL"] == docs.find("ConfigMap", "-frontend-env")["data"]["NATS_URL"]
    assert env["NATS_USER"] == "operator"  # the CLI's identity, not the frontend's
    assert pod["spec"]["restartPolicy"] == "Never"


def test_dashboards_ship_as_labelled_configmaps_untouched(chart: Chart) -> None:
    boards = [d for d in chart.render().of_kind("ConfigMap")
              if d["metadata"]["labels"].get("grafana_dashboard") == "1"]
    files = sorted(p.name for p in (chart.path / "dashboards").glob("*.json"))
    assert sorted(k for b in boards for k in b["data"]) == files
    for b in boards:
        for name, text in b["data"].items():
            assert text == (chart.path / "dashboards" / name).read_text().rstrip("\n")
    assert not [d for d in chart.render("metrics.dashboards.enabled=false").of_kind("ConfigMap")
                if "grafana_dashboard" in d["metadata"]["labels"]]
    folder = chart.render("metrics.dashboards.annotations.grafana_folder=chatwax")
    assert all(b["metadata"]["annotations"] == {"grafana_folder": "chatwax"}
               for b in folder.of_kind("ConfigMap") if "grafana_dashboard"
               in b["metadata"]["labels"])


# -- the local model ---------------------------------------------------------------------


def test_the_local_model_serves_the_dataflow_within_its_context(chart: Chart) -> None:
    """llm.local: a Deployment + Service the dataflow is pointed at, with flags the real
    `chatwax local-llm` parser accepts, sizes that fit, and only the dataflow let in."""
    from urllib.parse import urlparse

    from chatwax.cli import build_parser

    docs = chart.render("llm.local.enabled=true", "llm.local.threads=2",
                        "networkPolicy.enabled=true")
    container = docs.container("Deployment", "-llm")
    args = build_parser().parse_args(container["command"][1:])
    assert args.func.__name__ == "serve" and args.threads == 2
    env = docs.find("ConfigMap", "-dataflow-env")["data"]
    assert env["CHATWAX_MODEL"] == args.alias == "smollm2-135m-instruct"
    assert docs.find("ConfigMap", "-frontend-env")["data"]["CHATWAX_MODEL"] == args.alias
    assert env["CHATWAX_PROVIDER"] == "local"
    assert int(env["CHATWAX_CONTEXT_TOKENS"]) == args.context_tokens
    assert int(env["CHATWAX_MAX_OUTPUT_TOKENS"]) <= args.max_tokens
    assert (int(env["CHATWAX_HISTORY_TOKEN_BUDGET"]) + int(env["CHATWAX_MAX_OUTPUT_TOKENS"])
            < args.context_tokens)
    assert "OPENAI_API_KEY" not in docs.secret_files("StatefulSet", "-dataflow")

    url = urlparse(env["OPENAI_BASE_URL"])
    svc = docs.find("Service", "-llm")
    assert url.hostname == f"{svc['metadata']['name']}.{chart.namespace}.svc.cluster.local"
    assert url.path == "/v1"
    assert url.port == svc["spec"]["ports"][0]["port"] == args.port
    assert container["ports"] == [{"name": "http", "containerPort": args.port}]
    pod = docs.find("Deployment", "-llm")["spec"]["template"]
    assert svc["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": "http"}

    policy = docs.find("NetworkPolicy", "-llm")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod["metadata"][
        "labels"].items()
    dataflow_labels = docs.find("StatefulSet", "-dataflow")["spec"]["template"]["metadata"][
        "labels"]
    [rule] = policy["spec"]["ingress"]
    assert rule["ports"] == [{"port": "http"}]
    assert rule["from"][0]["podSelector"]["matchLabels"].items() <= dataflow_labels.items()

    # Off by default; the sizes follow llm.* when they are smaller.
    assert not [d for d in chart.render().of_kind("Deployment")
                if d["metadata"]["name"].endswith("-llm")]
    small = chart.render("llm.local.enabled=true", "llm.maxOutputTokens=100",
                         "llm.historyTokenBudget=300").find("ConfigMap", "-dataflow-env")
    assert (small["data"]["CHATWAX_MAX_OUTPUT_TOKENS"],
            small["data"]["CHATWAX_HISTORY_TOKEN_BUDGET"]) == ("100", "300")


def test_hook_rbac_is_deleted_whatever_the_hook_does(chart: Chart) -> None:
    """Every hook's ServiceAccount, Role and RoleBinding carries hook-succeeded AND
    hook-failed: no hook identity with Secret or pod permissions is meant to outlive its
    hook. (Helm applies hook-failed to the hook object that failed; when a hook Job fails,
    the next install or upgrade removes its RBAC by before-hook-creation: docs/security.md.)"""
    docs = chart.render(values=(chart.root / "tests" / "chart" / "data" /
                                "everything-values.yaml",))
    rbac = [d for d in docs if d["kind"] in ("ServiceAccount", "Role", "RoleBinding")
            and "helm.sh/hook" in (d["metadata"].get("annotations") or {})]
    assert len(rbac) == 6  # nats-auth-init, frontend-auth-init
    for obj in rbac:
        policy = obj["metadata"]["annotations"]["helm.sh/hook-delete-policy"].split(",")
        assert {"before-hook-creation", "hook-succeeded", "hook-failed"} <= set(policy), \
            obj["metadata"]["name"]


def _nats_password_files(docs: Rendered) -> dict[str, dict[str, str]]:
    """user -> Secret and key of the password the NATS server reads from a file."""
    sts = docs.find("StatefulSet", "-nats")["spec"]["template"]["spec"]
    nats = sts["containers"][0]
    mount = next(m for m in nats["volumeMounts"] if m["name"] == "passwords")
    volume = next(v for v in sts["volumes"] if v["name"] == "passwords")["secret"]
    script = nats["command"][2]
    users = {}
    for item in volume["items"]:
        user = item["key"].removesuffix("-password")
        assert f"{mount['mountPath']}/$user-password" in script and user in script
        users[user] = {"name": volume["secretName"], "key": item["key"]}
    return users


def test_no_secret_is_an_environment_variable_of_any_container(chart: Chart,
                                                               ci_values: Path) -> None:
    """Secrets as files: no container of any CI values file, nor of everything switched
    on, has an env entry taken from a Secret; the pods read them from a read-only
    projected volume (core/secretfiles.py), the NATS server from a secret volume."""
    everything = chart.root / "tests" / "chart" / "data" / "everything-values.yaml"
    for docs in (chart.render(values=(ci_values,)), chart.render(values=(everything,))):
        for w in [*docs.workloads(), *docs.of_kind("Pod"), *docs.of_kind("Job")]:
            spec = w["spec"]["template"]["spec"] if "template" in w["spec"] else w["spec"]
            for c in [*spec["containers"], *spec.get("initContainers", [])]:
                assert not [e["name"] for e in c.get("env", [])
                            if "secretKeyRef" in e.get("valueFrom", {})], (w["metadata"], c)
                assert not [s for s in c.get("envFrom", []) if "secretRef" in s]


# -- selectors and the pods they count ----------------------------------------------------

EVERYTHING_ON = (*SIGN_IN, "nats.replicas=3", "dataflow.processes=3", "dataflow.pdb.enabled=true",
                 "frontend.pdb.enabled=true", "frontend.autoscaling.enabled=true")


def _pod_templates(docs: Rendered) -> list[tuple[str, str, dict[str, str]]]:
    """(kind, name, pod labels) of every pod the release can run: workloads, hook Jobs,
    and `helm test` Pods."""
    pods = [(d["kind"], d["metadata"]["name"], d["spec"]["template"]["metadata"]["labels"])
            for d in docs if d["kind"] in ("StatefulSet", "Deployment", "Job")]
    pods += [("Pod", d["metadata"]["name"], d["metadata"].get("labels", {}))
             for d in docs if d["kind"] == "Pod"]
    return pods


@pytest.mark.parametrize("sets", [(), OPEN_MODE, EVERYTHING_ON],
                         ids=["default", "open", "everything-on"])
def test_each_selector_counts_the_pods_of_exactly_one_long_running_workload(
        chart: Chart, sets: tuple[str, ...]) -> None:
    """A Service, PodDisruptionBudget, PodMonitor or workload selector that also matched a
    hook Job's or a `helm test` pod would send traffic to it, count it in a disruption budget
    (a NATS budget counting the auth Job's pod allows 0 disruptions) or let a controller
    claim it; HPA targets are workloads whose selector is checked the same way."""
    docs = chart.render(*sets)
    pods = _pod_templates(docs)
    selectors: list[tuple[str, dict[str, str]]] = []
    for d in docs:
        name = f"{d['kind']}/{d['metadata']['name']}"
        spec = d.get("spec", {})
        if d["kind"] == "Service" and spec.get("selector"):
            selectors.append((name, spec["selector"]))
        elif d["kind"] in ("PodDisruptionBudget", "PodMonitor", "StatefulSet", "Deployment"):
            assert set(spec["selector"]) == {"matchLabels"}, name  # no matchExpressions
            selectors.append((name, spec["selector"]["matchLabels"]))
    assert len(selectors) >= 6
    for name, selector in selectors:
        matched = [(kind, pod) for kind, pod, labels in pods
                   if selector.items() <= labels.items()]
        assert len(matched) == 1, (name, matched)
        assert matched[0][0] in ("StatefulSet", "Deployment"), (name, matched)
    for hpa in docs.of_kind("HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]
        assert target["kind"] in ("StatefulSet", "Deployment")
        assert docs.find(target["kind"], target["name"])
    if "frontend.autoscaling.enabled=true" in sets:
        assert docs.of_kind("HorizontalPodAutoscaler")
        assert len(docs.of_kind("PodDisruptionBudget")) == 3
        assert [k for k, _, _ in pods].count("Job") >= 2
