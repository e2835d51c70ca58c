"""`chatwax up`'s options: frozen, each default declared once, and a default shared with
another command or an environment setting read from that declaration."""

from __future__ import annotations

import dataclasses
from urllib.parse import urlparse

import pytest

from chatwax.core.settings import Settings
from chatwax.dataflow.runspec import RunSpec
from chatwax.dev.options import DEFAULTS, StackOptions
from chatwax.local import cli as local_cli


def test_the_options_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        StackOptions().processes = 3  # type: ignore[misc]


def test_defaults_shared_with_other_commands_are_theirs() -> None:
    opts, settings = StackOptions(), Settings()
    assert f"nats://127.0.0.1:{opts.nats_port}" == settings.nats_url  # `chatwax ask` finds it
    assert urlparse(settings.nats_url).port == opts.nats_port
    assert opts.auth == settings.auth
    spec = RunSpec.from_env({})  # what `chatwax dataflow` does with nothing set
    assert (opts.workers, opts.snapshot_interval) == (
        spec.workers_per_process, spec.snapshot_interval.total_seconds())
    assert opts.llm_port == local_cli.DEFAULT_PORT


def test_defaults_lists_every_plain_default() -> None:
    plain = {f.name for f in dataclasses.fields(StackOptions)} - {"extra_env"}
    assert set(DEFAULTS) == plain
    assert StackOptions(**DEFAULTS) == StackOptions()


def test_only_chatwax_dataflow_is_waited_for_until_ready() -> None:
    assert StackOptions().runs_chatwax_dataflow
    assert not StackOptions(dataflow_command=("-m", "chatwax.bench.baseline")
                            ).runs_chatwax_dataflow
