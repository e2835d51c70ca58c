"""How `chatwax up` lays out its processes: the ports it checks before starting, and the
environment each dataflow process gets (as a pod would)."""

from __future__ import annotations

from pathlib import Path

from chatwax.dev.options import StackOptions
from chatwax.dev.stack import dataflow_env, port_clashes, stack_ports


def test_every_port_the_stack_listens_on_is_checked() -> None:
    opts = StackOptions(processes=2, prometheus=True)
    assert stack_ports(opts, local_model=True) == [
        ("NATS", 4222), ("NATS monitor", 8222), ("bytewax process 0", 2101),
        ("bytewax process 1", 2102), ("metrics 0", 3030), ("metrics 1", 3031),
        ("health 0", 8080), ("health 1", 8081), ("frontend", 8501), ("prometheus", 9090),
        ("local model", 8400)]
    small = StackOptions(processes=1, ui=False, external_nats="nats://h:4222")
    assert stack_ports(small, local_model=False) == [
        ("bytewax process 0", 2101), ("metrics 0", 3030), ("health 0", 8080)]


def test_each_dataflow_process_finds_its_peers_and_its_ports(tmp_path: Path) -> None:
    opts = StackOptions(processes=3, workers=2, data_dir=tmp_path, snapshot_interval=7)
    env = dataflow_env(opts, 1, "nats://127.0.0.1:4222", {"CHATWAX_MODEL": "m", "NATS_URL": "x"})
    assert env == {
        "CHATWAX_MODEL": "m", "NATS_URL": "nats://127.0.0.1:4222",
        "BYTEWAX_PROCESS_ID": "1",
        "BYTEWAX_ADDRESSES": "127.0.0.1:2101;127.0.0.1:2102;127.0.0.1:2103",
        "BYTEWAX_WORKERS_PER_PROCESS": "2", "BYTEWAX_DATAFLOW_API_ENABLED": "true",
        "BYTEWAX_DATAFLOW_API_PORT": "3031", "CHATWAX_HEALTH_PORT": "8081",
        "CHATWAX_HEALTH_HOST": "127.0.0.1",
        "BYTEWAX_RECOVERY_DIRECTORY": str((tmp_path / "recovery").resolve()),
        "BYTEWAX_SNAPSHOT_INTERVAL": "7", "BYTEWAX_RECOVERY_BACKUP_INTERVAL": "0"}


def test_a_port_given_to_two_listeners_is_named_with_both() -> None:
    opts = StackOptions(processes=2, cluster_port=5000, metrics_port=5001, health_port=6000,
                        ui_port=6001)
    assert port_clashes(stack_ports(opts, local_model=False)) == [
        "5001 (bytewax process 1 and metrics 0)", "6001 (health 1 and frontend)"]
    assert port_clashes(stack_ports(StackOptions(processes=3), local_model=True)) == []
