"""networkPolicy (on by default): every chatwax pod gets ingress AND egress rules, each
naming only the peers and ports that pod needs. Rendered policies are checked rule by rule
against the pods and ports the same render declares, so a rule that opens more (an empty
`from`/`to`, a missing egress section) fails here."""

from __future__ import annotations

from typing import Any

import pytest

from tests.chart.conftest import OPEN_MODE, SIGN_IN, Chart, Rendered

DNS = [{"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}]


def _spec(docs: Rendered, component: str) -> dict[str, Any]:
    spec: dict[str, Any] = docs.find("NetworkPolicy", f"-{component}")["spec"]
    return spec


def _components(rule: dict[str, Any], key: str) -> list[str | None]:
    """The component label each peer of an ingress (`from`) or egress (`to`) rule selects;
    None for a peer that is no pod of this release."""
    return [(p.get("podSelector") or {}).get("matchLabels", {}).get(
        "app.kubernetes.io/component") if "namespaceSelector" not in p else None
        for p in rule[key]]


def _ports(rule: dict[str, Any]) -> list[Any]:
    return [p["port"] for p in rule["ports"]]


def test_the_bytewax_peer_port_is_reachable_only_from_the_dataflow_pods(chart: Chart) -> None:
    """Port 2101 has no authentication or encryption of its own: the policy is what keeps
    any other pod from joining the cluster or reading conversation state."""
    spec = _spec(chart.render(), "dataflow")
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    peers = [r for r in spec["ingress"] if "process" in _ports(r)]
    assert len(peers) == 1 and _ports(peers[0]) == ["process"]
    assert _components(peers[0], "from") == ["dataflow"]
    # Every other ingress rule names other ports, never the process port.
    assert all("process" not in _ports(r) for r in spec["ingress"] if r is not peers[0])


def test_the_dataflow_reaches_dns_nats_its_peers_the_api_server_and_the_llm(
        chart: Chart) -> None:
    egress = _spec(chart.render("llm.baseUrl=https://llm.example.com:8443/v1"),
                   "dataflow")["egress"]
    assert egress[0] == DNS[0]
    assert _components(egress[1], "to") == ["nats"] and _ports(egress[1]) == [4222]
    assert _components(egress[2], "to") == ["dataflow"] and _ports(egress[2]) == [2101]
    assert egress[3] == {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}],
                         "ports": [{"port": 443}, {"port": 6443}]}
    assert egress[4] == {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"port": 8443}]}
    assert len(egress) == 5
    # OpenAI (no base URL): 443; the local model: its pods only, on its port.
    assert _spec(chart.render(), "dataflow")["egress"][4]["ports"] == [{"port": 443}]
    local = _spec(chart.render("llm.local.enabled=true"), "dataflow")["egress"][4]
    assert _components(local, "to") == ["llm"] and _ports(local) == [8000]
    narrowed = _spec(chart.render("networkPolicy.apiServerCidrs={10.0.0.1/32}",
                                  "networkPolicy.llmCidrs={192.0.2.0/24}"), "dataflow")
    assert narrowed["egress"][3]["to"] == [{"ipBlock": {"cidr": "10.0.0.1/32"}}]
    assert narrowed["egress"][4]["to"] == [{"ipBlock": {"cidr": "192.0.2.0/24"}}]


def test_the_frontend_reaches_dns_nats_and_the_provider_only(chart: Chart) -> None:
    locked = _spec(chart.render(), "frontend")["egress"]  # sign-in on, no provider yet
    assert locked[0] == DNS[0] and len(locked) == 2
    assert _components(locked[1], "to") == ["nats"]
    signed = _spec(chart.render(*SIGN_IN), "frontend")["egress"]
    assert signed[2] == {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"port": 443}]}
    assert len(signed) == 3
    assert len(_spec(chart.render(*OPEN_MODE), "frontend")["egress"]) == 2


def test_nats_monitor_port_is_for_scrapers_only(chart: Chart) -> None:
    """The monitor port lists consumer subjects, which name user ids."""
    spec = _spec(chart.render("nats.replicas=3", "nats.exporter.enabled=true"), "nats")
    monitor = [r for r in spec["ingress"] if "monitor" in _ports(r)]
    assert len(monitor) == 1 and _ports(monitor[0]) == ["monitor", "metrics"]
    assert monitor[0]["from"] == [{"namespaceSelector": {}, "podSelector": {
        "matchLabels": {"app.kubernetes.io/name": "prometheus"}}}]
    routes = [r for r in spec["ingress"] if "cluster" in _ports(r)]
    assert _components(routes[0], "from") == ["nats"]
    assert spec["egress"][0] == DNS[0]
    assert _components(spec["egress"][1], "to") == ["nats"] and _ports(spec["egress"][1]) == [
        6222]
    # No scrapers named: no pod at all may reach it (an empty `from` would mean any).
    none = _spec(chart.render("networkPolicy.scrapers=null"), "nats")
    assert not [r for r in none["ingress"] if "monitor" in _ports(r)]
    metrics = next(r for r in _spec(chart.render(), "dataflow")["ingress"]
                   if "api" in _ports(r))
    assert metrics["from"] == monitor[0]["from"]


@pytest.mark.parametrize("sets", [(), SIGN_IN, ("nats.replicas=3", "llm.local.enabled=true"),
                                  ("nats.enabled=false", "nats.url=nats://nats.other:4333",
                                   "nats.auth.existingSecret=creds")],
                         ids=["default", "sign-in", "clustered-local", "external-nats"])
def test_no_rule_opens_everything(chart: Chart, sets: tuple[str, ...]) -> None:
    """No empty peer list (which Kubernetes reads as 'any'), and no egress rule without
    ports; ingress rules without `from` only for the frontend's HTTP and the health port."""
    docs = chart.render(*sets)
    policies = docs.of_kind("NetworkPolicy")
    assert policies
    for policy in policies:
        spec = policy["spec"]
        assert spec["policyTypes"] == ["Ingress", "Egress"], policy["metadata"]["name"]
        for rule in spec["egress"]:
            assert rule["ports"] and rule.get("to", [None]) != []
        for rule in spec["ingress"]:
            assert rule.get("from", [None]) != []
            if "from" not in rule:
                assert _ports(rule) in (["http"], ["health"]), policy["metadata"]["name"]
    if "nats.enabled=false" in sets:
        assert _spec(docs, "dataflow")["egress"][1] == {"ports": [{"port": 4333}]}


def test_hook_pods_are_not_held_by_the_components_policies(chart: Chart) -> None:
    """The NATS and cookie-secret hooks talk to the API server: their pods carry their own
    component label, so the NATS and frontend policies (no API server egress) miss them."""
    docs = chart.render(*SIGN_IN)
    for job in docs.of_kind("Job"):
        labels = job["spec"]["template"]["metadata"]["labels"]
        assert labels["app.kubernetes.io/component"] not in ("nats", "frontend", "dataflow")
