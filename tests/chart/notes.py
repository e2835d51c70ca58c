"""NOTES.txt as `helm install` prints it (helm 4 renders it without a cluster; helm 3's
install wants one even for a client dry run)."""

from __future__ import annotations

from pathlib import Path

from tests.chart.conftest import Chart


def install_notes(chart: Chart, *sets: str, values: tuple[Path, ...] = ()) -> str:
    """(`helm install` has no --api-versions: the notes see a cluster without CRDs.)"""
    args = ["install", "chatwax", str(chart.path), "--namespace", chart.namespace,
            "--dry-run=client"]
    for v in values:
        args += ["-f", str(v)]
    for s in sets:
        args += ["--set", s]
    res = chart.helm("4", *args)
    assert res.returncode == 0, res.stderr
    return res.stdout[res.stdout.index("NOTES:"):]
