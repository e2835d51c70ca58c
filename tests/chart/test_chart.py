"""The Helm chart, proven as far as it can be without a cluster: real helm 3 and helm 4,
kubernetes-validate for two Kubernetes versions, and structural checks on the objects."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.chart.conftest import (
    CHART,
    CI_VALUES,
    HELM_VERSIONS,
    ROOT,
    env_of,
    find,
    render,
    render_text,
    run_helm,
)

SENTINEL = "sk-chatwax-sentinel-0123456789abcdef"
PODMONITOR_SCHEMA = Path(__file__).parent / "data" / "podmonitor-schema.json"


@pytest.mark.parametrize("major", HELM_VERSIONS)
@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_lint_strict(major: str, values: Path) -> None:
    res = run_helm(major, "lint", "--strict", str(CHART), "-f", str(values))
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_helm3_and_helm4_render_the_same_objects(values: Path) -> None:
    docs3 = render(values=(str(values),), major="3")
    docs4 = render(values=(str(values),), major="4")
    key = lambda d: (d["kind"], d["metadata"]["name"])  # noqa: E731 - a sort key
    assert sorted(map(key, docs3)) == sorted(map(key, docs4))
    assert {d["kind"] for d in docs3} >= {"StatefulSet", "Service", "ConfigMap"}


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_every_object_validates_strictly_for_kubernetes_1_30_and_1_34(
    values: Path, tmp_path: Path
) -> None:
    docs = render(values=(str(values),))
    core = [d for d in docs if not d["apiVersion"].startswith("monitoring.coreos.com")]
    path = tmp_path / "render.yaml"
    path.write_text(yaml.safe_dump_all(core))
    res = subprocess.run(
        [str(Path(sys.executable).parent / "kubernetes-validate"), "-k", "1.30.0", "-k",
         "1.34.0", "--strict", "--quiet", str(path)],
        capture_output=True, text=True, timeout=300,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    schema = json.loads(PODMONITOR_SCHEMA.read_text())
    for monitor in (d for d in docs if d["kind"] == "PodMonitor"):
        jsonschema.validate(monitor, schema)


def test_podmonitor_needs_the_crd_and_carries_extra_labels() -> None:
    sets = ("metrics.podMonitor.enabled=true", "metrics.podMonitor.labels.release=kps")
    with_crd = render(*sets)
    monitor = find(with_crd, "PodMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kps"
    assert monitor["spec"]["podMetricsEndpoints"][0]["port"] == "api"
    res = run_helm("3", "template", "chatwax", str(CHART), *(f"--set={s}" for s in sets))
    assert res.returncode == 0 and "kind: PodMonitor" not in res.stdout


@pytest.mark.parametrize("processes", [1, 2, 3, 4, 5])
def test_replicas_process_count_and_peer_list_agree(processes: int) -> None:
    docs = render(f"dataflow.processes={processes}")
    sts = find(docs, "StatefulSet", "-dataflow")
    assert sts["spec"]["replicas"] == processes
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    env = env_of(sts["spec"]["template"]["spec"]["containers"][0])
    peers = env["BYTEWAX_ADDRESSES"].split(";")
    name, headless = sts["metadata"]["name"], sts["spec"]["serviceName"]
    assert peers == [f"{name}-{i}.{headless}.chat.svc.cluster.local:2101"
                     for i in range(processes)]
    assert env["BYTEWAX_STATEFULSET_NAME"] == name
    assert env["BYTEWAX_POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    annotations = sts["spec"]["template"]["metadata"]["annotations"]
    assert annotations["chatwax.io/processes"] == str(processes)
    assert find(docs, "Service", "-dataflow-headless")["metadata"]["name"] == headless


def test_changing_the_process_count_rolls_every_pod() -> None:
    a = find(render("dataflow.processes=2"), "StatefulSet", "-dataflow")
    b = find(render("dataflow.processes=3"), "StatefulSet", "-dataflow")
    assert a["spec"]["template"] != b["spec"]["template"]  # a new template replaces all pods


def test_the_api_key_is_never_in_plain_text() -> None:
    text = render_text(f"llm.apiKey={SENTINEL}")
    assert SENTINEL not in text
    docs = render(f"llm.apiKey={SENTINEL}")
    secret = find(docs, "Secret", "-llm")
    assert base64.b64decode(secret["data"]["api-key"]).decode() == SENTINEL
    env = env_of(find(docs, "StatefulSet", "-dataflow")["spec"]["template"]["spec"]
                 ["containers"][0])
    assert env["OPENAI_API_KEY"] == {"secretKeyRef": {"name": secret["metadata"]["name"],
                                                      "key": "api-key"}}
    for cm in (d for d in docs if d["kind"] == "ConfigMap"):
        assert "OPENAI_API_KEY" not in cm.get("data", {})


def test_an_existing_secret_is_used_and_none_is_made() -> None:
    docs = render("llm.existingSecret=my-key")
    assert not [d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"].endswith("-llm")]
    env = env_of(find(docs, "StatefulSet", "-dataflow")["spec"]["template"]["spec"]
                 ["containers"][0])
    assert env["OPENAI_API_KEY"]["secretKeyRef"]["name"] == "my-key"


def _checksums(*sets: str) -> dict[str, str]:
    out = {}
    for d in render(*sets):
        if d["kind"] in ("StatefulSet", "Deployment"):
            ann = d["spec"]["template"]["metadata"].get("annotations", {})
            out.update({f"{d['metadata']['name']}/{k}": v for k, v in ann.items()
                        if k.startswith("checksum/")})
    return out


def test_checksums_change_when_config_changes() -> None:
    base = _checksums()
    model = _checksums("llm.model=gpt-4.1")
    key = _checksums("llm.apiKey=other")
    nats = _checksums("nats.jetstream.maxMemory=1Gi")
    assert base["chatwax-dataflow/checksum/env"] != model["chatwax-dataflow/checksum/env"]
    secret = "chatwax-dataflow/checksum/llm-secret"
    assert base[secret] != key[secret]
    assert base["chatwax-nats/checksum/config"] != nats["chatwax-nats/checksum/config"]
    assert base == _checksums()  # and only then


def _workloads(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] in ("StatefulSet", "Deployment")]


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_every_service_selects_pods_on_ports_that_exist(values: Path) -> None:
    docs = render(values=(str(values),))
    for svc in (d for d in docs if d["kind"] == "Service"):
        selector = svc["spec"]["selector"]
        pods = [w for w in _workloads(docs)
                if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()]
        assert pods, f"Service {svc['metadata']['name']} selects no pods"
        ports = {p["name"]: p["containerPort"] for w in pods
                 for c in w["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}
        for port in svc["spec"]["ports"]:
            target = port["targetPort"]
            assert target in ports or target in ports.values(), (svc["metadata"]["name"], target)


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_probes_use_declared_ports_and_pods_are_restricted(values: Path) -> None:
    for w in _workloads(render(values=(str(values),))):
        spec = w["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
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


def test_the_schema_rejects_a_misspelled_value() -> None:
    for major in HELM_VERSIONS:
        res = run_helm(major, "template", "chatwax", str(CHART), "--set", "dataflow.procesess=3")
        assert res.returncode != 0
        assert "procesess" in res.stderr


def test_external_nats_renders_no_nats_and_points_clients_at_it() -> None:
    values = str(CHART / "ci" / "external-nats-values.yaml")
    docs = render(values=(values,))
    assert not [d for d in docs if "-nats" in d["metadata"]["name"]]
    cm = find(docs, "ConfigMap", "-dataflow-env")
    assert cm["data"]["NATS_URL"] == "nats://nats.messaging.svc.cluster.local:4222"
    res = run_helm("3", "template", "chatwax", str(CHART), "--set", "nats.enabled=false")
    assert res.returncode != 0 and "nats.url is required" in res.stderr


def test_production_values_cluster_nats_with_auth_and_policies() -> None:
    docs = render(values=(str(CHART / "ci" / "production-values.yaml"),))
    nats = find(docs, "StatefulSet", "-nats")
    assert nats["spec"]["replicas"] == 3
    conf = find(docs, "ConfigMap", "-nats-config")["data"]["nats.conf"]
    assert conf.count("nats://chatwax-nats-") == 3 and "authorization" in conf
    assert "$FRONTEND_PASSWORD" in conf and "password: $DATAFLOW_PASSWORD" in conf
    assert [c["name"] for c in nats["spec"]["template"]["spec"]["containers"]] == [
        "nats", "exporter"]
    assert len([d for d in docs if d["kind"] == "NetworkPolicy"]) == 3
    dataflow_env = env_of(find(docs, "StatefulSet", "-dataflow")["spec"]["template"]["spec"]
                          ["containers"][0])
    assert dataflow_env["NATS_USER"] == "dataflow"
    assert "secretKeyRef" in dataflow_env["NATS_PASSWORD"]
    assert find(docs, "ConfigMap", "-dataflow-env")["data"]["CHATWAX_STREAM_REPLICAS"] == "3"


def test_dashboards_ship_as_labelled_configmaps_untouched() -> None:
    docs = render()
    boards = [d for d in docs if d["kind"] == "ConfigMap"
              and d["metadata"]["labels"].get("grafana_dashboard") == "1"]
    files = sorted(p.name for p in (CHART / "dashboards").glob("*.json"))
    assert sorted(k for b in boards for k in b["data"]) == files
    for b in boards:
        for name, text in b["data"].items():
            assert json.loads(text) == json.loads((CHART / "dashboards" / name).read_text())


def test_helm_test_pod_asks_through_the_pipeline() -> None:
    pod = next(d for d in render() if d["kind"] == "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["containers"][0]["command"][:2] == ["chatwax", "ask"]


def test_every_value_is_documented_and_the_docs_table_is_current() -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import chart_values_table as docs_table
    finally:
        sys.path.pop(0)
    documented = {key for key, _ in docs_table.documented()}

    def leaves(node: Any, path: str) -> list[str]:
        if isinstance(node, dict) and node:
            return [leaf for k, v in node.items() for leaf in leaves(v, f"{path}{k}.")]
        return [path.rstrip(".")]

    for leaf in leaves(yaml.safe_load((CHART / "values.yaml").read_text()), ""):
        parts = leaf.split(".")
        assert any(".".join(parts[:n]) in documented for n in range(1, len(parts) + 1)), (
            f"values.yaml: {leaf} has no '# --' comment")
    doc = (ROOT / "docs" / "kubernetes.md").read_text()
    assert docs_table.table() in doc, "run scripts/chart_values_table.py --write"


def test_schema_documents_every_value() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(node: dict[str, Any], sch: dict[str, Any], path: str) -> None:
        assert sch.get("additionalProperties") is False or "properties" not in sch, path
        for key, value in node.items():
            assert key in sch.get("properties", {}), f"{path}{key} missing from the schema"
            sub = sch["properties"][key]
            if isinstance(value, dict) and "properties" in sub and key != "resources":
                walk(value, sub, f"{path}{key}.")

    walk(values, schema, "")


def test_nats_auth_is_on_by_default_and_passwords_stay_in_secrets() -> None:
    docs = render()
    secret = find(docs, "Secret", "-nats-auth")
    passwords = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert sorted(passwords) == ["dataflow-password", "frontend-password"]
    assert all(len(p) == 32 for p in passwords.values())
    text = render_text()
    # Rendered once per call, so the generated passwords appear only base64-encoded.
    conf = find(docs, "ConfigMap", "-nats-config")["data"]["nats.conf"]
    assert "password: $FRONTEND_PASSWORD" in conf
    for workload, user in (("-dataflow", "dataflow"), ("-frontend", "frontend")):
        kind = "StatefulSet" if workload == "-dataflow" else "Deployment"
        env = env_of(find(docs, kind, workload)["spec"]["template"]["spec"]["containers"][0])
        assert env["NATS_USER"] == user
        assert env["NATS_PASSWORD"]["secretKeyRef"]["key"] == f"{user}-password"
    assert "NATS_PASSWORD" not in str([d for d in docs if d["kind"] == "ConfigMap"])
    assert text.count("kind: Secret") >= 1


def test_chart_client_permissions_match_the_protocols() -> None:
    from chatwax import protocol

    conf = find(render(), "ConfigMap", "-nats-config")["data"]["nats.conf"]
    frontend = conf[conf.index("user: frontend"):]
    allowed = re.findall(r'"([^"]+)",', frontend[frontend.index("allow: [") :
                                                 frontend.index("]")])
    assert tuple(allowed) == protocol.CLIENT_PUBLISH_ALLOW
