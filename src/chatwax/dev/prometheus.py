"""A local Prometheus (`chatwax up --with-prometheus`) scraping every dataflow process."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from chatwax.core.errors import ConfigError


def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if not found:
        raise ConfigError("prometheus not found: install it (Debian/Ubuntu: "
                          "`sudo apt-get install prometheus`)")
    return found


def prometheus_config(targets: list[str], interval_s: float) -> str:
    """A scrape config for the dataflow processes (JSON is valid YAML)."""
    every = f"{interval_s:g}s"
    return json.dumps({
        "global": {"scrape_interval": every, "evaluation_interval": every},
        "scrape_configs": [{
            "job_name": "chatwax-dataflow",
            "static_configs": [{"targets": targets, "labels": {"app": "chatwax"}}],
        }],
    }, indent=2)


def prometheus_command(metrics_urls: list[str], interval_s: float, data_dir: Path,
                       port: int) -> list[str]:
    """Write the scrape config for `metrics_urls` into `data_dir` and return the command
    that runs Prometheus on 127.0.0.1:`port` with it, its database in `data_dir` too."""
    targets = [u.removeprefix("http://").removesuffix("/metrics") for u in metrics_urls]
    config = data_dir / "prometheus.yml"
    config.write_text(prometheus_config(targets, interval_s))
    return [
        prometheus_binary(), f"--config.file={config.resolve()}",
        f"--storage.tsdb.path={(data_dir / 'prometheus').resolve()}",
        f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn",
    ]
