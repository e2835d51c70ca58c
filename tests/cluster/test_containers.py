"""The dataflow pod as a container: from the built image, as the chart's securityContext
says (uid 10001, read-only root, no capabilities, no_new_privs), its PID 1 ending on the
kubelet's SIGTERM, and a recovery volume owned by root that only fsGroup makes writable.

A storage driver often hands a pod a fresh volume whose root directory is root:root 0755
(an ext4 file system's root). The dataflow runs as 10001: only the pod's fsGroup, which
the kubelet applies to the volume (group 10001, group-writable, setgid), lets it create
its recovery partitions. Without fsGroup it must say so, not fail inside Bytewax.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chart.conftest import Chart
from tests.cluster.controllers import settle
from tests.cluster.helm import edit
from tests.cluster.kubelet import Image, identity, set_volume_ownership
from tests.cluster.model import LLM_HOST, Running, running_cluster

NS = Chart.namespace  # what the chart is rendered for (--namespace)
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "cluster"
POD = "chatwax-dataflow-0"
CLAIM = "chatwax-dataflow-recovery"
RECOVERY = "/var/lib/chatwax/recovery"


class Release:
    def __init__(self, running: Running, chart: Chart) -> None:
        self.running = running
        self.model = running.model
        self.chart = chart
        self.base = (f"llm.baseUrl=http://{LLM_HOST}:{running.llm_port}/v1",
                     "llm.model=echo-1", "dataflow.processes=1",
                     "dataflow.recovery.snapshotIntervalSeconds=2",
                     "dataflow.limits.userPromptsPerMinute=0")

    def render(self) -> list[dict[str, Any]]:
        return list(self.chart.render(*self.base))

    @property
    def claim(self) -> Path:
        return self.model.kubelet.workdir / "claims" / CLAIM

    def init_pid(self) -> int:
        runner = self.model.kubelet.runner(NS, POD)
        assert runner is not None and runner.containers[0].proc is not None
        pid = runner.containers[0].proc.init_pid()
        assert pid is not None
        return int(pid)


@pytest.fixture(scope="module")
def release(chart: Chart, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    with running_cluster(tmp_path_factory.mktemp("containers"), NS,
                         ARTIFACTS / "logs-containers") as running:
        yield Release(running, chart)


def without_fs_group(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The dataflow's pod without fsGroup. Its secret files (mode 0440, root's) are also
    readable only through fsGroup: without it the pod stops earlier, on a PermissionError
    reading /run/secrets/chatwax/NATS_PASSWORD. Here they are made 0444, so that the
    recovery volume is what fails."""

    def change(sts: dict[str, Any]) -> None:
        pod = sts["spec"]["template"]["spec"]
        pod["securityContext"].pop("fsGroup")
        for volume in pod["volumes"]:
            if "projected" in volume:
                volume["projected"]["defaultMode"] = 0o444

    return edit(docs, "StatefulSet", "-dataflow", change)


def test_without_fs_group_a_root_owned_recovery_volume_is_a_clear_error(
        release: Release) -> None:
    model = release.model
    release.claim.mkdir(parents=True)
    os.chown(release.claim, 0, 0)
    release.claim.chmod(0o755)
    model.helm.install(without_fs_group(release.render()))
    model.wait_settled("-nats", 120)
    settle(lambda: "is not writable" in model.kubelet.log_text(POD), 120,
           "the dataflow refusing its recovery directory")
    log = model.kubelet.log_text(POD)
    assert (f"chatwax: configuration error: the recovery directory {RECOVERY} is not "
            "writable by this process (uid 10001, gid 10001, groups []): it belongs to "
            "0:0 with mode 0755") in log, log[-2000:]
    assert "fsGroup" in log and "unable to open database file" not in log
    assert not model.settled("-dataflow")
    st = release.claim.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o755)
    assert not list(release.claim.iterdir())


def test_fs_group_makes_it_writable_and_the_dataflow_keeps_its_state_there(
        release: Release) -> None:
    model = release.model
    model.helm.upgrade(release.render())  # the chart's podSecurityContext: fsGroup 10001
    model.wait_settled("-dataflow", 180)
    # The kubelet's SetVolumeOwnership: group 10001, group-writable, setgid; owner kept.
    st = release.claim.stat()
    assert (st.st_uid, st.st_gid) == (0, 10001)
    assert stat.S_IMODE(st.st_mode) == 0o2775
    traffic = release.running.users().start()
    settle(lambda: traffic.window.answered >= 8, 60, "answers")
    time.sleep(5)  # two snapshot intervals
    window = traffic.stop()
    assert window.answered >= 8 and window.lost == 0 and traffic.history_mismatches() == 0
    parts = sorted(release.claim.glob("part-*.sqlite3"))
    assert parts
    for part in parts:  # made by the container's user, in the volume's group (setgid)
        assert (part.stat().st_uid, part.stat().st_gid) == (10001, 10001), part
    snapshots = 0
    for part in parts:
        with sqlite3.connect(part) as db:
            snapshots += db.execute("SELECT COUNT(*) FROM snaps").fetchone()[0]
    assert snapshots > 0


def test_the_container_runs_as_10001_without_capabilities_on_a_read_only_root(
        release: Release) -> None:
    pid = release.init_pid()
    status = dict(line.split(":\t", 1) for line in
                  Path(f"/proc/{pid}/status").read_text().splitlines() if ":\t" in line)
    assert status["Uid"].split() == ["10001"] * 4
    assert status["Gid"].split() == ["10001"] * 4
    assert status["Groups"].split() == ["10001"]  # fsGroup
    assert int(status["CapEff"], 16) == int(status["CapBnd"], 16) == 0
    assert status["NoNewPrivs"].strip() == "1"
    assert status["NSpid"].split()[-1] == "1"  # PID 1 of its own PID namespace
    assert Path(f"/proc/{pid}/root/opt/venv/bin/chatwax").exists()  # the image's root

    def write(path: str) -> subprocess.CompletedProcess[str]:
        """A write as the container's user, inside its mount namespace and root."""
        return subprocess.run(
            ["nsenter", f"--target={pid}", "--mount", "--root", "--wd",
             "--setuid=10001", "--setgid=10001", "--",
             "python3", "-c", f"open({path!r}, 'w').write('x')"],
            capture_output=True, text=True, timeout=30)

    denied = write("/probe")
    assert denied.returncode != 0 and "Read-only file system" in denied.stderr, denied
    assert write("/tmp/probe").returncode == 0  # the chart's emptyDir
    assert write(f"{RECOVERY}/probe").returncode == 0  # through the group fsGroup gave


def test_the_dataflow_as_pid_1_ends_on_the_kubelets_sigterm(release: Release) -> None:
    model = release.model
    before = len(model.kubelet.events)
    began = time.time()
    model.delete_pod(POD)
    settle(lambda: any(e[1] == "deleted" and e[2] == POD
                       for e in model.kubelet.events[before:]), 60, "the pod ending")
    ended = next(e[0] for e in model.kubelet.events[before:]
                 if e[1] == "deleted" and e[2] == POD)
    assert not [e for e in model.kubelet.events[before:] if e[1] == "grace-kill"]
    assert ended - began < 10, "ended by SIGKILL after the grace period (30 s)?"
    assert "SIGTERM: stopping" in model.kubelet.log_text(POD)


def test_identity_follows_the_runtimes_rules() -> None:
    """User and groups without a cluster: the pod's securityContext over the image's USER,
    the primary group from the image's passwd, fsGroup and supplementalGroups added."""
    image = Image(["chatwax"], [], user="10001:10001")
    chart = identity(image, {"runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001},
                     {"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
                      "capabilities": {"drop": ["ALL"]}}, "p/c")
    assert chart | {"home": "/"} == {
        "uid": 10001, "gid": 10001, "groups": [10001], "caps": [], "no_new_privs": True,
        "readonly_root": True, "home": "/"}
    plain = identity(Image([], [], user="10001:10001"), {"supplementalGroups": [5]}, {}, "p/c")
    assert (plain["uid"], plain["gid"], plain["groups"]) == (10001, 10001, [5])
    assert "NET_RAW" in plain["caps"] and not plain["readonly_root"]
    with pytest.raises(Exception, match="runAsNonRoot and image will run as root"):
        identity(Image([], []), {"runAsNonRoot": True}, {}, "p/c")


def test_set_volume_ownership_as_the_kubelet(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir(mode=0o755)
    (tmp_path / "d" / "f").write_text("x")
    (tmp_path / "d" / "f").chmod(0o600)
    (tmp_path / "d" / "l").symlink_to("f")
    set_volume_ownership(tmp_path / "d", 4242)
    modes = {p.name: (p.lstat().st_gid, stat.S_IMODE(p.lstat().st_mode))
             for p in [tmp_path / "d", *(tmp_path / "d").iterdir()]}
    assert modes["d"] == (4242, 0o2775)
    assert modes["f"] == (4242, 0o660)
    assert modes["l"][0] == 4242
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o755)
    (ro / "key").write_text("s")
    (ro / "key").chmod(0o600)
    set_volume_ownership(ro, 4242, readonly=True)
    assert stat.S_IMODE((ro / "key").stat().st_mode) == 0o640
    assert stat.S_IMODE(ro.stat().st_mode) == 0o2755
