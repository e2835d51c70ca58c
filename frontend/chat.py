"""Chat page: pick a conversation, chat, watch the answer stream in.

The user is the signed-in identity's chatwax id with sign-in on (no user id box: a session
can only ever list, load and continue its own conversations), or a typed user id in open
mode. All NATS work goes through the one shared `BackgroundClient` (see shared.py), so
reruns and sessions share a single connection.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import streamlit as st

from chatwax.client.background import BackgroundClient
from chatwax.client.chat import Chunk
from chatwax.core.errors import ChatwaxError, RequestFailed
from chatwax.core.settings import Settings
from chatwax.core.wire import FinalEvent, Usage, check_id
from chatwax.frontend.shared import (
    connect,
    markdown,
    model_label,
    signed_in,
    stream_markdown,
)

NEW = "+ New conversation"

def tokens_text(u: Usage) -> str:
    """Token counts, marked when chatwax counted them (the server reported none)."""
    how = "" if not u.estimated else (
        " (counted by chatwax)" if u.counted == "tokenizer" else " (estimated)")
    return f"{u.input_tokens} in / {u.output_tokens} out tokens{how}"


def usage_caption(final: FinalEvent) -> str:
    ttft = f" · first token {final.ttft_ms:.0f} ms" if final.ttft_ms is not None else ""
    return f"{final.model} · {tokens_text(final.usage)} · {final.latency_ms:.0f} ms{ttft}"


settings = Settings.from_env()
identity = signed_in(settings)
st.title("chatwax")
st.caption(model_label(settings))
client = connect()
if client is None:
    st.stop()
assert client is not None  # st.stop() ends the script run

with st.sidebar:
    if identity is not None:  # sign-in on: the identity's id, never a typed one
        user = identity.user_id
    else:
        user = st.text_input("User id", value=st.session_state.get("user", "guest"),
                             key="user")
    try:
        check_id(user, "user id", 64)
    except ChatwaxError as exc:
        st.error(exc.message)
        st.stop()
    try:
        convs = client.conversations(user)
    except Exception as exc:  # noqa: BLE001 - shown to the user, page stays usable
        st.error(f"Could not load conversations: {exc}")
        convs = []
    labels = {c.conversation_id: f"{c.title} ({c.turns})" for c in convs}
    options = [NEW, *labels]
    picked = st.selectbox("Conversation", options, key="picked",
                          format_func=lambda c: labels.get(c, c))

if picked == NEW:
    if st.session_state.get("new_for") != user:
        st.session_state["new_conv"] = f"c-{uuid.uuid4().hex[:12]}"
        st.session_state["new_for"] = user
    conversation = st.session_state["new_conv"]
elif picked in labels:
    conversation = str(picked)
else:  # only ever one of this user's own conversations, whatever the browser sends
    st.error("That conversation is not one of yours.")
    st.stop()
st.caption(f"user `{user}` · conversation `{conversation}`")

# The conversation as stored, read on every run: an answer is stored before its final reply
# is sent, so the page keeps no copy of its own and a reload shows what the stream has.
try:
    turns = client.history(user, conversation)
except Exception as exc:  # noqa: BLE001 - shown to the user
    st.error(f"Could not load the conversation: {exc}")
    turns = []
for t in turns:
    with st.chat_message("user"):
        markdown(t.prompt)
    with st.chat_message("assistant"):
        markdown(t.answer)
        st.caption(f"{t.model} · {tokens_text(t.usage)} · {t.latency_ms:.0f} ms")

limit = settings.max_prompt_chars
if prompt := st.chat_input(f"Ask anything (up to {limit:,} characters)", max_chars=limit):
    with st.chat_message("user"):
        markdown(prompt)
    with st.chat_message("assistant"):
        outcome: dict[str, FinalEvent | ChatwaxError] = {}

        def chunks(chat: BackgroundClient, text: str) -> Iterator[Chunk]:
            """The answer's chunks (restarts folded in: they add up to the final text)."""
            try:
                for item in chat.ask(user, conversation, text):
                    if isinstance(item, FinalEvent):
                        outcome["end"] = item
                    else:
                        yield item
            except ChatwaxError as exc:
                outcome["end"] = exc

        stream_markdown(chunks(client, prompt))
        end = outcome.get("end")
        if isinstance(end, FinalEvent):
            st.caption(usage_caption(end))
        elif isinstance(end, RequestFailed):
            st.error(f"{end.message} ({end.code.value})")
        elif isinstance(end, ChatwaxError):
            st.error(end.message)
        else:
            st.error("The answer stopped without an end event.")
