"""Upgrading a release first installed by chart 0.2.0, whose dataflow StatefulSet had no
updateStrategy (issue #21: "Upgrading objects first rendered with RollingUpdate to OnDelete
is rejected while the live rollingUpdate.partition remains").

The API server defaulted that StatefulSet to RollingUpdate with rollingUpdate.partition 0
(k8s.io/kubernetes pkg/apis/apps/v1 `SetDefaults_StatefulSet`) and refuses OnDelete with a
rollingUpdate left (pkg/apis/apps/validation `ValidateStatefulSetSpec`: "only allowed for
updateStrategy 'RollingUpdate'"); the stand-in does both (tests/support/apiserver.py
`apply_defaults`, `validate_statefulset`). Neither helm removes the defaulted field by
itself: helm 3's three-way patch deletes only what the previous manifest had, helm 4's
server-side apply only fields it applied before. The chart renders `rollingUpdate: null`,
which deletes it in both.

The real helm 3 and 4 install chart 0.2.0 (commit 39b1e56, from this repository's history)
and upgrade to this chart against the stand-in. `--no-hooks`: no Job controller runs here to
complete the pre-install Jobs helm would wait for; the dataflow's pods play no part in an
update the API server refuses or accepts (tests/cluster/test_real_tools.py runs the pods).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chart.conftest import CHART, NAMESPACE, Chart, chart_at
from tests.support.apiserver import ApiServer

CHART_0_2_0 = "39b1e56"
STS = "chatwax-dataflow"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ApiServer]:
    srv = ApiServer(tls_dir=tmp_path)
    try:
        yield srv
    finally:
        srv.close()


def helm(chart: Chart, major: str, server: ApiServer, work: Path, *args: str
         ) -> subprocess.CompletedProcess[str]:
    kubeconfig = server.kubeconfig(work / "kubeconfig", NAMESPACE)
    return chart.helm(major, *args, "-n", NAMESPACE, "--kubeconfig", str(kubeconfig),
                      "--no-hooks")


def test_an_upgrade_from_chart_0_2_0_moves_the_dataflow_to_on_delete(
        chart: Chart, helm_major: str, server: ApiServer, tmp_path: Path) -> None:
    old = chart_at(CHART_0_2_0, tmp_path / "old")
    res = helm(chart, helm_major, server, tmp_path, "install", "chatwax", str(old))
    assert res.returncode == 0, res.stderr
    sts = server.store.get("StatefulSet", NAMESPACE, STS)
    assert sts is not None
    assert sts["spec"]["updateStrategy"] == {"type": "RollingUpdate",
                                             "rollingUpdate": {"partition": 0}}
    # Without the chart's `rollingUpdate: null` the same upgrade is refused: the line is
    # what makes it go through.
    without = tmp_path / "without" / "chatwax"
    shutil.copytree(CHART, without)
    template = without / "templates" / "dataflow-statefulset.yaml"
    text = template.read_text()
    assert text.count("    rollingUpdate: null\n") == 1
    template.write_text(text.replace("    rollingUpdate: null\n", ""))
    res = helm(chart, helm_major, server, tmp_path, "upgrade", "chatwax", str(without))
    assert res.returncode != 0
    assert (f'StatefulSet.apps "{STS}" is invalid: spec.updateStrategy.rollingUpdate: '
            'Invalid value: {"partition": 0}: only allowed for updateStrategy '
            "'RollingUpdate'") in res.stderr, res.stderr
    sts = server.store.get("StatefulSet", NAMESPACE, STS)
    assert sts is not None and sts["spec"]["updateStrategy"]["type"] == "RollingUpdate"
    res = helm(chart, helm_major, server, tmp_path, "upgrade", "chatwax", str(CHART))
    assert res.returncode == 0, res.stderr
    sts = server.store.get("StatefulSet", NAMESPACE, STS)
    assert sts is not None
    assert sts["spec"]["updateStrategy"] == {"type": "OnDelete"}
