"""NATS URLs without credentials: moved to the variables that never print."""

from __future__ import annotations

from chatwax.core.natsurl import move_credentials, split_credentials, without_credentials
from chatwax.core.settings import Settings


def test_credentials_leave_every_server_of_the_url() -> None:
    split = split_credentials("nats://al%40ice:p%3Aw@h1:4222, tls://h2:4443")
    assert split.url == "nats://h1:4222,tls://h2:4443"
    assert (split.user, split.password, split.token) == ("al@ice", "p:w", None)
    assert split_credentials("nats://s3cr3t-token@h:4222").token == "s3cr3t-token"
    assert without_credentials("nats://u:pw@h:4222") == "nats://h:4222"
    assert without_credentials("nats://127.0.0.1:4222") == "nats://127.0.0.1:4222"


def test_the_environment_keeps_a_clean_url_and_explicit_variables_win() -> None:
    env = {"NATS_URL": "nats://u:pw@h:4222"}
    move_credentials(env)
    assert env == {"NATS_URL": "nats://h:4222", "NATS_USER": "u", "NATS_PASSWORD": "pw"}
    settings = Settings.from_env(env)
    assert "pw" not in repr(settings) and settings.nats_url == "nats://h:4222"
    mine = {"NATS_URL": "nats://u:pw@h:4222", "NATS_USER": "op", "NATS_PASSWORD": "x"}
    move_credentials(mine)
    assert mine == {"NATS_URL": "nats://h:4222", "NATS_USER": "op", "NATS_PASSWORD": "x"}
    token = {"NATS_URL": "nats://tok@h"}
    move_credentials(token)
    assert token == {"NATS_URL": "nats://h", "NATS_TOKEN": "tok"}
