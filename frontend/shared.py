"""What every page shares: one NATS client per Streamlit server process."""

from __future__ import annotations

import streamlit as st

from chatwax.client.background import BackgroundClient
from chatwax.core.settings import Settings


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
