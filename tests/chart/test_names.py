"""Object names, label values and the addresses pods give each other stay within Kubernetes'
limits for any release name Helm accepts (up to 53 characters) and any name override, stay
unique, and are those of chart 0.2.0 for every release whose names were valid then."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.conftest import Chart, Rendered, nats_routes

EVERYTHING = Path(__file__).parent / "data" / "everything-values.yaml"
# Helm's rule for release names (helm/pkg/chartutil: at most 53 characters).
RELEASE_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")  # RFC 1123 label
DNS_1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")  # what Service names must be
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
# Kinds whose names end up in a DNS label or a label value, and how long they may be.
NAME_LIMITS = {
    # Pods are <sts>-<ordinal> and carry controller-revision-hash=<sts>-<10 characters>.
    "StatefulSet": 52,
    "CronJob": 52,  # its Jobs are <cronjob>-<11 characters>
    "Service": 63,
    "Deployment": 63,  # pod hostnames are cut from its name
    "Job": 63,  # pods carry job-name=<job>
    "Pod": 63,  # its hostname
}
RELEASES = [
    "c",                                                      # 1
    "chat-prod-eu-west-1a",                                   # 20
    "team-a-customer-support-assistant-prod-1",               # 40
    "my-very-long-release-name-for-the-chatwax-platform-01",  # 53, contains the chart name
    "x" * 53,                                                 # 53, base of 61 characters
    "support.chat-1",                                         # dots are allowed
    "1st-chat",                                               # and a leading digit
]
OVERRIDES = {
    "release-name": (),
    "long-nameOverride": (f"nameOverride={'assistant-' * 7}x",),
    "long-fullnameOverride": (f"fullnameOverride={'platform-' * 9}x",),
}
LONG_NAMESPACE = "n" * 63
# Every (kind, name) of chart 0.2.0 for release chatwax in namespace chat, with
# everything-values.yaml and the dataflow PDB on: upgrades must not rename any of them.
NAMES_0_2_0 = {
    ("ConfigMap", "chatwax-dashboard-dataflow-health"),
    ("ConfigMap", "chatwax-dashboard-token-usage"),
    ("ConfigMap", "chatwax-dataflow-env"), ("ConfigMap", "chatwax-extra"),
    ("ConfigMap", "chatwax-frontend-env"), ("ConfigMap", "chatwax-nats-config"),
    ("Deployment", "chatwax-frontend"), ("Deployment", "chatwax-llm"),
    ("HorizontalPodAutoscaler", "chatwax-frontend"), ("Ingress", "chatwax-frontend"),
    ("NetworkPolicy", "chatwax-dataflow"), ("NetworkPolicy", "chatwax-frontend"),
    ("NetworkPolicy", "chatwax-llm"), ("NetworkPolicy", "chatwax-nats"),
    ("PersistentVolumeClaim", "chatwax-dataflow-recovery"), ("Pod", "chatwax-test-ask"),
    ("PodDisruptionBudget", "chatwax-dataflow"), ("PodDisruptionBudget", "chatwax-frontend"),
    ("PodDisruptionBudget", "chatwax-nats"), ("PodMonitor", "chatwax-dataflow"),
    ("Role", "chatwax-dataflow"), ("RoleBinding", "chatwax-dataflow"),
    ("Secret", "chatwax-llm"), ("Service", "chatwax-dataflow-headless"),
    ("Service", "chatwax-frontend"), ("Service", "chatwax-llm"), ("Service", "chatwax-nats"),
    ("Service", "chatwax-nats-headless"), ("ServiceAccount", "chatwax-dataflow"),
    ("StatefulSet", "chatwax-dataflow"), ("StatefulSet", "chatwax-nats"),
}


def _render(chart: Chart, major: str, release: str, namespace: str, *sets: str,
            values: tuple[Path, ...] = (EVERYTHING,)) -> Rendered:
    args = chart.template_args(*sets, values=values)
    args[1] = release
    args[args.index("--namespace") + 1] = namespace
    res = chart.helm(major, *args)
    assert res.returncode == 0, res.stderr
    return Rendered(d for d in yaml.safe_load_all(res.stdout) if d)


def _label_maps(node: Any) -> Iterator[dict[str, Any]]:
    """Every labels / matchLabels map anywhere in an object (pod templates, selectors,
    claim templates, affinity terms)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("labels", "matchLabels") and isinstance(value, dict):
                yield value
            yield from _label_maps(value)
    elif isinstance(node, list):
        for item in node:
            yield from _label_maps(item)


def _addresses(docs: Rendered) -> list[str]:
    """Every in-cluster host name the render hands to a process: the Bytewax peer list,
    NATS routes, NATS_URL and the local model's URL."""
    hosts: list[str] = []
    env = docs.env("StatefulSet", "-dataflow")
    hosts += [a.rsplit(":", 1)[0] for a in env["BYTEWAX_ADDRESSES"].split(";")]
    conf = docs.find("ConfigMap", "-nats-config")["data"]["nats.conf"]
    hosts += re.findall(r"nats://([^:\s]+):\d+", conf)
    for cm in docs.of_kind("ConfigMap"):
        for key in ("NATS_URL", "OPENAI_BASE_URL"):
            if key in cm.get("data", {}):
                hosts.append(re.sub(r"^\w+://([^:/]+).*$", r"\1", cm["data"][key]))
    return hosts


def _check_limits(docs: Rendered, namespace: str) -> None:
    names = [(d["kind"], d["metadata"]["name"]) for d in docs]
    assert len(names) == len(set(names)), "two objects of one kind share a name"
    for kind, name in names:
        assert len(name) <= NAME_LIMITS.get(kind, 253), (kind, name, len(name))
        pattern = {"Service": DNS_1035_LABEL}.get(
            kind, DNS_LABEL if kind in NAME_LIMITS else DNS_SUBDOMAIN)
        assert pattern.fullmatch(name), (kind, name)
    for sts in docs.of_kind("StatefulSet"):
        name, last = sts["metadata"]["name"], sts["spec"]["replicas"] - 1
        # What the StatefulSet controller makes from the name.
        pod = f"{name}-{last}"
        assert DNS_LABEL.fullmatch(pod) and len(pod) <= 63, pod
        revision = f"{name}-{'h' * 10}"  # label controller-revision-hash
        assert len(revision) <= 63, revision
        for claim in sts["spec"].get("volumeClaimTemplates", []):
            pvc = f"{claim['metadata']['name']}-{pod}"
            assert DNS_SUBDOMAIN.fullmatch(pvc) and len(pvc) <= 253, pvc
        assert ("Service", sts["spec"]["serviceName"]) in names
    for doc in docs:
        for labels in _label_maps(doc):
            for key, value in labels.items():
                value = str(value)
                assert len(value) <= 63 and LABEL_VALUE.fullmatch(value), (key, value)
    hosts = _addresses(docs)
    assert len(hosts) >= 5, hosts
    for host in hosts:
        assert len(host) <= 253, host
        labels = host.split(".")
        assert all(DNS_LABEL.fullmatch(label) and len(label) <= 63 for label in labels), host
        assert namespace in labels, host


def test_the_release_names_tested_are_ones_helm_accepts() -> None:
    assert {len(r) for r in RELEASES} >= {1, 20, 40, 53}
    assert all(RELEASE_NAME.fullmatch(r) and len(r) <= 53 for r in RELEASES)


@pytest.mark.parametrize("override", OVERRIDES, ids=list(OVERRIDES))
@pytest.mark.parametrize("release", RELEASES, ids=lambda r: f"{len(r)}-{r[:12]}")
def test_every_name_label_and_address_fits_its_limit(chart: Chart, helm_major: str,
                                                     release: str, override: str) -> None:
    """Every object name within its kind's limit (StatefulSets 52, Services 63 and RFC 1035,
    others 253), every label value 63, every DNS label of a peer, route or service
    address 63, for the longest namespace; 12 dataflow pods for two-digit ordinals."""
    docs = _render(chart, helm_major, release, LONG_NAMESPACE, "dataflow.processes=12",
                   "dataflow.pdb.enabled=true", *OVERRIDES[override])
    _check_limits(docs, LONG_NAMESPACE)
    # The component stays readable at the end of every cut name.
    for kind, suffix in (("StatefulSet", "-nats"), ("StatefulSet", "-dataflow"),
                         ("Deployment", "-frontend"), ("Service", "-dataflow-headless")):
        assert docs.find(kind, suffix)


def test_production_values_fit_too(chart: Chart) -> None:
    prod = chart.path / "ci" / "production-values.yaml"
    docs = _render(chart, "3", "x" * 53, LONG_NAMESPACE, values=(prod,))
    _check_limits(docs, LONG_NAMESPACE)


def test_long_release_names_that_share_a_prefix_do_not_collide(chart: Chart) -> None:
    """Two releases in one namespace whose names differ only after the cut get different
    names for every object (the hash of the whole name tells them apart)."""
    a = _render(chart, "3", "x" * 52 + "a", "chat")
    b = _render(chart, "3", "x" * 52 + "b", "chat")
    names_a = {(d["kind"], d["metadata"]["name"]) for d in a}
    names_b = {(d["kind"], d["metadata"]["name"]) for d in b}
    assert not names_a & names_b, names_a & names_b
    # And a render is deterministic: the same release gets the same names again.
    again = _render(chart, "3", "x" * 52 + "a", "chat")
    assert names_a == {(d["kind"], d["metadata"]["name"]) for d in again}


def test_chatwax_in_namespace_chat_keeps_the_names_of_chart_0_2_0(
    chart: Chart, helm_major: str
) -> None:
    """No object of a normal release is renamed on upgrade (a rename would replace the
    StatefulSets and orphan their volumes); new objects may appear."""
    docs = _render(chart, helm_major, "chatwax", "chat", "dataflow.pdb.enabled=true")
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert names >= NAMES_0_2_0, NAMES_0_2_0 - names
    env = docs.env("StatefulSet", "-dataflow")
    assert env["BYTEWAX_ADDRESSES"] == ";".join(
        f"chatwax-dataflow-{i}.chatwax-dataflow-headless.chat.svc.cluster.local:2101"
        for i in range(2))
    assert nats_routes(docs) == [
        f"chatwax-nats-{i}.chatwax-nats-headless.chat.svc.cluster.local:6222" for i in range(3)]
    # (tls:// here: the values that render everything turn on nats.tls)
    url = "tls://chatwax-nats.chat.svc.cluster.local:4222"
    assert docs.find("ConfigMap", "-dataflow-env")["data"]["NATS_URL"] == url
    assert docs.find("StatefulSet", "-dataflow")["spec"]["serviceName"] == \
        "chatwax-dataflow-headless"


@pytest.mark.parametrize("release", ["r" * 35, "support-bot", "chatwax-eu"])
def test_names_that_fitted_before_are_unchanged(chart: Chart, release: str) -> None:
    """0.2.0's rule (base "<release>-chatwax" or "<release>" when it contains chatwax, plus
    the component) for every release whose base fits 43 characters: the longest one whose
    dataflow StatefulSet (base + "-dataflow") was within 52 and so worked then."""
    base = release if "chatwax" in release else f"{release}-chatwax"
    assert len(base) <= 43
    docs = _render(chart, "3", release, "chat", "dataflow.pdb.enabled=true")
    expected = {(kind, name.replace("chatwax", base, 1)) for kind, name in NAMES_0_2_0
                if name != "chatwax-extra"}
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert expected <= names, expected - names
