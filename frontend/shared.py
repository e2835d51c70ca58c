"""What every page shares: one NATS client per Streamlit server process, and who is using
the page (sign-in, docs/security.md)."""

from __future__ import annotations

import time

import streamlit as st

from chatwax.client.background import BackgroundClient
from chatwax.core.identity import AuthPolicy, Identity, Refusal, identify
from chatwax.core.settings import Settings

OPEN_MODE_NOTE = (
    "**Open mode: no sign-in.** Anyone who can open this page can pick any user id, and "
    "read and continue that user's conversations and usage. Fine on your own machine; turn "
    "sign-in on (`CHATWAX_AUTH=oidc`, README \"Sign-in\") for anything shared."
)


def visitor(settings: Settings) -> Identity | Refusal | None:
    """Who this browser session is, from Streamlit's signed identity cookie: an Identity, a
    Refusal (signed in, but not allowed or expired), or None (signed out)."""
    if not st.user.is_logged_in:
        return None
    return identify(dict(st.user), AuthPolicy.from_settings(settings), time.time())


def gate(settings: Settings) -> Identity | None:
    """Run first on every page (app.py). Sign-in off: None, after showing the open-mode note.
    Sign-in on: the signed-in Identity, after showing who it is and a sign-out button; a
    signed-out browser sees only a sign-in button, a refused one why, and the run stops."""
    if settings.auth != "oidc":
        st.sidebar.warning(OPEN_MODE_NOTE, icon=":material/lock_open:")
        return None
    who = visitor(settings)
    if who is None:
        st.title("chatwax")
        if st.button("Sign in", type="primary", icon=":material/login:", key="sign-in"):
            _login()
        st.stop()
    if isinstance(who, Refusal):
        st.title("chatwax")
        st.error(f"You cannot use chatwax: {who.reason}", icon=":material/block:")
        if who.expired and st.button("Sign in again", type="primary", key="sign-in-again"):
            _login()
        if st.button("Sign out", key="sign-out-refused"):
            st.logout()
        st.stop()
    assert isinstance(who, Identity)
    with st.sidebar:
        st.markdown(f"Signed in as **{who.label}**")
        st.caption(f"user id `{who.user_id}`" + (" · admin" if who.admin else ""))
        if st.button("Sign out", icon=":material/logout:", key="sign-out"):
            st.logout()
    return who


def signed_in(settings: Settings) -> Identity | None:
    """The page's user with sign-in on (None in open mode); stops the run for anyone else,
    should a page ever run without app.py's gate."""
    if settings.auth != "oidc":
        return None
    who = visitor(settings)
    if not isinstance(who, Identity):
        st.stop()
    assert isinstance(who, Identity)
    return who


def _login() -> None:
    try:
        st.login()
    except Exception as exc:  # noqa: BLE001 - a misconfigured sign-in is shown, not raised
        st.error(f"Sign-in is not configured: {exc}. Start the pages with `chatwax ui`.")


@st.cache_resource(show_spinner="Connecting to NATS…")
def get_client() -> BackgroundClient:
    return BackgroundClient(Settings.from_env())


def connect() -> BackgroundClient | None:
    """The shared client, or None after telling the user NATS cannot be reached."""
    try:
        return get_client()
    except Exception as exc:  # noqa: BLE001 - any failure here means "not reachable"
        get_client.clear()
        st.error(f"Cannot reach NATS at {Settings.from_env().nats_url}: {exc}. "
                 "Is the stack running (`make run`)?")
        st.button("Retry")
        return None


def model_label(settings: Settings) -> str:
    """Which model answers, as the dataflow is configured (each answer names its own too)."""
    where = {"local": "on this machine or cluster", "openai": "OpenAI",
             "openai_compatible": "OpenAI-compatible server"}.get(settings.provider,
                                                                  settings.provider)
    return f"Answers by **{settings.model}** ({where})"
