"""The pages' sign-in logic in AppTest (st.user seeded as Streamlit's cookie would fill
it), against the running stack: open mode says it is open, signed-out sessions see a
sign-in button only, a signed-in session is its identity and nobody else."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from chatwax.core.identity import user_id_for
from chatwax.dev.stack import Stack
from tests.support.asks import ask_all, run
from tests.support.procs import NatsServer

APP = str(Path(__file__).resolve().parents[2] / "frontend" / "app.py")
ISSUER = "https://idp.test"


def claims(name: str, **extra: Any) -> dict[str, Any]:
    return {"is_logged_in": True, "iss": ISSUER, "sub": f"sub-{name}", "iat": time.time(),
            "email": f"{name}@example.com", "email_verified": True, "name": name.title(),
            **extra}


def page(monkeypatch: pytest.MonkeyPatch, nats_url: str, user: dict[str, Any] | None = None,
         **env: str) -> AppTest:
    monkeypatch.setenv("NATS_URL", nats_url)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    at = AppTest.from_file(APP, default_timeout=30)
    if user is not None:
        at.user = user
    return at.run()


PROVIDER = {"CHATWAX_OIDC_METADATA_URL": f"{ISSUER}/.well-known/openid-configuration",
            "CHATWAX_OIDC_CLIENT_ID": "chatwax"}


def oidc(monkeypatch: pytest.MonkeyPatch, nats: NatsServer, user: dict[str, Any] | None,
         **env: str) -> AppTest:
    return page(monkeypatch, nats.url, user, CHATWAX_AUTH="oidc", **{**PROVIDER, **env})


def texts(at: AppTest) -> list[str]:
    return [md.value for msg in at.chat_message for md in msg.markdown]


def test_open_mode_says_anyone_can_pick_a_user_id(monkeypatch: pytest.MonkeyPatch,
                                                   nats: NatsServer) -> None:
    at = page(monkeypatch, nats.url)
    assert not at.exception
    # In the main area: a phone collapses the sidebar.
    assert any("Open mode: no sign-in" in w.value for w in at.main.warning)
    assert at.sidebar.text_input(key="user").value == "guest"


def test_open_mode_refuses_a_typed_id_shaped_like_a_signed_in_one(
        monkeypatch: pytest.MonkeyPatch, nats: NatsServer) -> None:
    victim = user_id_for("sub-victim", ISSUER)
    at = page(monkeypatch, nats.url)
    for typed in (victim, victim.upper()):
        at.sidebar.text_input(key="user").input(typed).run()
        assert not at.exception
        assert at.sidebar.text_input(key="user").value == "guest"
        assert any("shaped like a signed-in user's id" in e.value for e in at.error)
        assert any("user `guest`" in c.value for c in at.caption)


def test_sign_in_without_a_provider_lets_nobody_in(monkeypatch: pytest.MonkeyPatch,
                                                   nats: NatsServer) -> None:
    """The chart's default (sign-in on, no provider yet): no page runs, whoever it is."""
    for user in (None, claims("mallory")):
        at = page(monkeypatch, nats.url, user, CHATWAX_AUTH="oidc")
        assert not at.exception
        assert "no OpenID Connect provider is configured" in at.error[0].value
        assert not at.chat_input and not at.text_input and not at.button
        assert not at.sidebar.children and not at.warning


def test_signed_out_sessions_get_only_a_sign_in_button(monkeypatch: pytest.MonkeyPatch,
                                                       nats: NatsServer) -> None:
    at = oidc(monkeypatch, nats, {"is_logged_in": False})
    assert not at.exception
    assert [b.label for b in at.button] == ["Sign in"]
    assert [t.value for t in at.title] == ["chatwax"]
    assert not at.chat_input and not at.text_input and not at.sidebar.children
    assert not at.markdown and not at.caption and not at.warning


def test_a_signed_in_session_is_its_identity(monkeypatch: pytest.MonkeyPatch, cluster: Stack,
                                             nats: NatsServer) -> None:
    name = f"ann{uuid.uuid4().hex[:6]}"
    at = oidc(monkeypatch, nats, claims(name))
    assert not at.exception, at.exception
    mine = user_id_for(f"sub-{name}", ISSUER)
    assert not at.sidebar.text_input  # no user id box
    assert f"Signed in as **{name.title()} ({name}@example.com)**" in [
        m.value for m in at.sidebar.markdown]
    at.chat_input[0].set_value("who am I").run()
    assert any("echo: who am I" in t for t in texts(at))
    assert any(f"user `{mine}`" in c.value for c in at.caption)


def test_a_refused_session_says_why_and_offers_sign_out(monkeypatch: pytest.MonkeyPatch,
                                                        nats: NatsServer) -> None:
    at = oidc(monkeypatch, nats, claims("carl", iat=time.time() - 7200),
              CHATWAX_AUTH_SESSION_MAX_AGE="3600")
    assert [b.label for b in at.button] == ["Sign in again", "Sign out"]
    assert "your sign-in is 2 h old; sessions last 60 min" in at.error[0].value
    assert not at.chat_input
    groups = oidc(monkeypatch, nats, claims("dora", groups=["staff"]),
                  CHATWAX_AUTH_ALLOWED_GROUPS="chat")
    assert [b.label for b in groups.button] == ["Sign out"]
    assert "none of the allowed groups (chat)" in groups.error[0].value


def test_usage_is_the_users_own_unless_admin(monkeypatch: pytest.MonkeyPatch, cluster: Stack,
                                            nats: NatsServer, settings: Any) -> None:
    fay, gus = f"fay{uuid.uuid4().hex[:6]}", f"gus{uuid.uuid4().hex[:6]}"
    for name, turns in ((fay, 2), (gus, 1)):
        for i in range(turns):
            run(ask_all(settings, user_id_for(f"sub-{name}", ISSUER), f"c-{name}",
                        f"turn {i} of {name}"))

    def usage(user: dict[str, Any]) -> AppTest:
        at = oidc(monkeypatch, nats, user, CHATWAX_AUTH_ADMINS="group:ops")
        at.switch_page("usage.py").run()
        at.selectbox(key="window").select("All time").run()
        assert not at.exception, at.exception
        return at

    own = usage(claims(fay))
    assert [t.value for t in own.title] == ["Your usage"]
    assert {m.label: m.value for m in own.metric}["Turns"] == "2"
    admin = usage(claims("root", groups=["ops"]))
    assert [t.value for t in admin.title] == ["Usage"]
    assert "Admin view: every user's usage." in [c.value for c in admin.caption]
    assert int({m.label: m.value for m in admin.metric}["Turns"].replace(",", "")) >= 3
