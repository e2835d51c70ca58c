"""Models of one test session never share pod network names or addresses (the helm 4
race of issue #21: a thread of the previous model's kubelet took the next model's
namespace of the same name)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.cluster.network import Network


def namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split(" ")[0] for line in out.splitlines() if line}


def test_each_model_has_its_own_bridge_namespaces_and_subnet(tmp_path: Path) -> None:
    first = Network(tmp_path / "a")
    ns_a, ip_a = first.add_pod("p")
    second = Network(tmp_path / "b")
    try:
        ns_b, ip_b = second.add_pod("p")
        assert (first.bridge, first.subnet) != (second.bridge, second.subnet)
        assert ns_a != ns_b and ip_a != ip_b
        # What a late thread of the first model does: its pod's namespace goes, the
        # second model's pod keeps its own.
        first.remove_pod(ns_a, ip_a)
        first.close()
        assert ns_b in namespaces()
    finally:
        first.close()
        second.close()
    assert ns_b not in namespaces()
