"""The local Prometheus: a scrape config for the dataflow processes, and its command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chatwax.dev import prometheus
from chatwax.dev.prometheus import prometheus_command, prometheus_config


def test_the_config_scrapes_every_target_at_the_interval() -> None:
    config = json.loads(prometheus_config(["127.0.0.1:3030", "127.0.0.1:3031"], 2.5))
    assert config["global"] == {"scrape_interval": "2.5s", "evaluation_interval": "2.5s"}
    [job] = config["scrape_configs"]
    assert job["static_configs"] == [{"targets": ["127.0.0.1:3030", "127.0.0.1:3031"],
                                      "labels": {"app": "chatwax"}}]


def test_the_command_scrapes_the_metrics_urls_and_keeps_its_data_in_the_data_dir(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prometheus.shutil, "which", lambda name: f"/usr/bin/{name}")
    cmd = prometheus_command(["http://127.0.0.1:3030/metrics"], 5.0, tmp_path, 9091)
    config = tmp_path / "prometheus.yml"
    assert cmd == ["/usr/bin/prometheus", f"--config.file={config.resolve()}",
                   f"--storage.tsdb.path={(tmp_path / 'prometheus').resolve()}",
                   "--web.listen-address=127.0.0.1:9091", "--log.level=warn"]
    assert config.read_text() == prometheus_config(["127.0.0.1:3030"], 5.0)
