"""What every page shares: one NATS client per Streamlit server process, and who is using
the page (sign-in, docs/security.md)."""

from __future__ import annotations

import time
from collections.abc import Iterable

import streamlit as st

from chatwax.client.background import BackgroundClient
from chatwax.client.chat import Chunk
from chatwax.core.identity import (
    SIGNED_IN_PREFIX,
    AuthPolicy,
    Identity,
    Refusal,
    identify,
    is_signed_in_id,
)
from chatwax.core.markdown import no_remote_images
from chatwax.core.natsurl import without_credentials
from chatwax.core.settings import Settings
from chatwax.frontend.launch import unconfigured

OPEN_MODE_NOTE = (
    "**Open mode: no sign-in.** Anyone who can open this page can pick any user id, and "
    "read and continue that user's conversations and usage. Fine on your own machine; turn "
    "sign-in on (`CHATWAX_AUTH=oidc`, README \"Sign-in\") for anything shared."
)


NOT_CONFIGURED_NOTE = (
    "**Sign-in is on, but no OpenID Connect provider is configured**, so nobody can use "
    "chatwax yet. The operator sets the provider (chart: `frontend.auth.metadataUrl`, "
    "`clientId`, `existingSecret`; otherwise `CHATWAX_OIDC_*`, README \"Sign-in\")."
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
        # In the main area, not the sidebar: phones collapse the sidebar.
        st.warning(OPEN_MODE_NOTE, icon=":material/lock_open:")
        refuse_signed_in_shape()
        return None
    if unconfigured(settings):  # fail closed: no page runs
        st.title("chatwax")
        st.error(NOT_CONFIGURED_NOTE, icon=":material/lock:")
        st.stop()
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


def markdown(text: str) -> None:
    """st.markdown that loads nothing: images in the text become links (core/markdown.py)."""
    st.markdown(no_remote_images(text))


def stream_markdown(chunks: Iterable[Chunk]) -> str:
    """st.write_stream, except that each step shows the whole text so far through
    no_remote_images (an image split over two chunks never renders), and a restarted
    answer replaces what was shown; returns the text."""
    shown = st.empty()
    text = ""
    for chunk in chunks:
        text = chunk.text if chunk.restart else text + chunk.text
        shown.markdown(no_remote_images(text) + " ▌")
    shown.markdown(no_remote_images(text))
    return text


def refuse_signed_in_shape() -> None:
    """Open mode: a typed user id shaped like a signed-in one (`oidc-...`) is put back to
    `guest` before the chat page reads it, so a typed id never reaches a signed-in user's
    conversations (the same NATS may serve both)."""
    typed = st.session_state.get("user")
    if isinstance(typed, str) and is_signed_in_id(typed):
        st.session_state["user"] = "guest"
        st.error(f"`{typed}` is shaped like a signed-in user's id ({SIGNED_IN_PREFIX}...); "
                 "typed ids cannot start so. Using `guest`.", icon=":material/block:")


def signed_in(settings: Settings) -> Identity | None:
    """The page's user with sign-in on (None in open mode); stops the run for anyone else,
    should a page ever run without app.py's gate."""
    if settings.auth != "oidc":
        return None
    who = None if unconfigured(settings) else visitor(settings)
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
        where = without_credentials(Settings.from_env().nats_url)
        st.error(f"Cannot reach NATS at {where}: {exc}. "
                 "Is the stack running (`make run`)?")
        st.button("Retry")
        return None


def model_label(settings: Settings) -> str:
    """Which model answers, as the dataflow is configured (each answer names its own too)."""
    where = {"local": "on this machine or cluster", "openai": "OpenAI",
             "openai_compatible": "OpenAI-compatible server"}.get(settings.provider,
                                                                  settings.provider)
    return f"Answers by **{settings.model}** ({where})"
