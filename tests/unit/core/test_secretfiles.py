"""Secrets as files: what the chart mounts at CHATWAX_SECRETS_DIR becomes the process's
settings, and nothing else does."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

from chatwax import cli
from chatwax.core.secretfiles import SECRET_VARIABLES, SECRETS_DIR_VAR, read_secret_files
from chatwax.core.settings import Settings


def test_every_secret_setting_can_come_from_a_file(tmp_path: Path) -> None:
    expected = {"NATS_PASSWORD", "NATS_TOKEN", "OPENAI_API_KEY",
                "CHATWAX_OIDC_CLIENT_SECRET", "CHATWAX_OIDC_COOKIE_SECRET"}
    assert expected == SECRET_VARIABLES
    (tmp_path / "NATS_PASSWORD").write_text("from-file\n")
    (tmp_path / "OPENAI_API_KEY").write_text("sk-file")
    (tmp_path / "NATS_URL").write_text("nats://evil:4222")  # not a secret: ignored
    (tmp_path / "..data").mkdir()  # what a projected volume also holds
    found = read_secret_files({SECRETS_DIR_VAR: str(tmp_path), "NATS_PASSWORD": "from-env"})
    assert found == {"NATS_PASSWORD": "from-file\n", "OPENAI_API_KEY": "sk-file"}
    settings = Settings.from_env({"NATS_PASSWORD": "from-env", **found})
    assert settings.nats_password is not None
    assert settings.nats_password.get_secret_value() == "from-file"  # a file wins, stripped
    assert read_secret_files({}) == {}  # no folder named: nothing read


def test_the_cli_reads_the_files_before_any_command(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """`chatwax` itself (what every pod runs) puts the files' values where every command's
    Settings.from_env finds them."""
    (tmp_path / "OPENAI_API_KEY").write_text("sk-only-in-a-file")
    environ = {k: v for k, v in os.environ.items() if k not in SECRET_VARIABLES}
    monkeypatch.setattr(os, "environ", {**environ, SECRETS_DIR_VAR: str(tmp_path)})
    seen: dict[str, str | None] = {}
    parser = argparse.ArgumentParser()
    parser.set_defaults(func=lambda _args: seen.update(
        key=Settings.from_env().openai_api_key.get_secret_value()  # type: ignore[union-attr]
    ) or 0)
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    assert cli.main([]) == 0
    assert seen == {"key": "sk-only-in-a-file"}
