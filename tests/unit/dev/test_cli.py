"""`chatwax up`'s flags: their defaults are the options' own, and each sets its option."""

from __future__ import annotations

import argparse
from pathlib import Path

from chatwax.core.settings import Settings
from chatwax.dev import cli
from chatwax.dev.options import DEFAULTS, StackOptions


def parse(*flags: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return parser.parse_args(flags)


def test_no_flags_means_the_options_defaults() -> None:
    args = parse()
    assert {name: getattr(args, name) for name in cli.FROM_FLAGS} == {
        name: DEFAULTS[name] for name in cli.FROM_FLAGS}
    assert args.nats_auth is DEFAULTS["nats_auth"]
    assert args.auth is None and args.auth_file is None  # CHATWAX_AUTH decides, in `up`


def test_each_flag_sets_its_option() -> None:
    args = parse("--processes", "3", "--workers", "2", "--no-ui", "--data-dir", "d",
                 "--nats-port", "1", "--nats-url", "nats://h:4", "--nats-monitor-port", "2",
                 "--cluster-port", "3", "--metrics-port", "4", "--health-port", "5",
                 "--ui-port", "6", "--snapshot-interval", "7", "--with-prometheus",
                 "--prometheus-port", "8", "--llm", "openai", "--llm-port", "9",
                 "--no-restart")
    assert {name: getattr(args, name) for name in cli.FROM_FLAGS} == {
        "processes": 3, "workers": 2, "ui": False, "data_dir": Path("d"), "nats_port": 1,
        "external_nats": "nats://h:4", "nats_monitor_port": 2, "cluster_port": 3,
        "metrics_port": 4, "health_port": 5, "ui_port": 6, "snapshot_interval": 7,
        "prometheus": True, "prometheus_port": 8, "llm": "openai", "llm_port": 9,
        "restart": False}


def test_sign_in_from_the_flag_or_else_the_environment_and_nats_users_with_it() -> None:
    open_mode, oidc = Settings(), Settings(auth="oidc")
    assert cli.stack_options(parse(), open_mode) == StackOptions()
    signed_in = cli.stack_options(parse("--auth-file", "a.env"), oidc)
    assert (signed_in.auth, signed_in.nats_auth, signed_in.auth_file) == (
        "oidc", True, Path("a.env"))
    elsewhere = cli.stack_options(parse("--auth", "oidc", "--nats-url", "nats://h:4"),
                                  open_mode)
    assert (elsewhere.auth, elsewhere.nats_auth) == ("oidc", False)  # that server's users
    assert cli.stack_options(parse("--auth", "none"), oidc).auth == "none"


def test_transcript_retention_goes_to_every_child() -> None:
    opts = cli.stack_options(parse("--transcript-max-age", "12h",
                                   "--transcript-max-bytes", "1KiB"), Settings())
    assert dict(opts.extra_env) == {"CHATWAX_TRANSCRIPT_MAX_AGE": "43200.0",
                                    "CHATWAX_TRANSCRIPT_MAX_BYTES": "1024"}
