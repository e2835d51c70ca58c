"""Usage page: tokens over time by model, top users, cost, from the transcripts stream.

With sign-in on, a user sees only their own usage (read through their own transcripts
subject); admins (CHATWAX_AUTH_ADMINS) and open mode see every user's.
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import streamlit as st

from chatwax.core.settings import Settings
from chatwax.core.usage import parse_since, total
from chatwax.frontend.shared import connect, signed_in

WINDOWS = {"Last hour": "1h", "Last 24 hours": "24h", "Last 7 days": "7d", "All time": "all"}

identity = signed_in(Settings.from_env())
own = identity is not None and not identity.admin
st.title("Your usage" if own else "Usage")
if identity is not None and identity.admin:
    st.caption("Admin view: every user's usage.")
client = connect()
if client is None:
    st.stop()

label = st.selectbox("Window", list(WINDOWS), index=1, key="window")
try:
    report = client.usage(parse_since(WINDOWS[label]),
                          identity.user_id if own and identity else None)
except Exception as exc:  # noqa: BLE001 - shown to the user
    st.error(f"Could not read transcripts: {exc}")
    st.stop()

by_user = report.rows("user")
if not by_user:
    st.info("No completed turns in this window yet.")
    st.stop()
by_model = report.rows("model")
overall = total(by_user)

c1, c2, c3, c4 = st.columns(4)
c1.metric("Turns", f"{overall.turns:,}")
c2.metric("Input tokens", f"{overall.input_tokens:,}")
c3.metric("Output tokens", f"{overall.output_tokens:,}")
c4.metric("Cost (USD)", f"${overall.cost_usd:,.4f}")
if overall.summaries:
    st.caption(f"Includes {overall.summaries:,} summaries of long conversations, made in the "
               "background: their tokens count, they are not turns.")
if overall.estimated_tokens:
    st.warning(f"{overall.estimated_tokens:,} of these tokens are counted by chatwax, not "
               "reported by the LLM server (it sent no usage): with the model's tokenizer "
               "where one was available, else estimated.")

st.subheader("Tokens over time by model")
_, buckets = report.series()
series = pd.DataFrame(
    {"time": datetime.fromtimestamp(start), "model": model, "tokens": tokens}
    for start, model, tokens in buckets
)
st.bar_chart(series, x="time", y="tokens", color="model", x_label="time", y_label="tokens")

st.subheader("Your totals" if own else "Top users")
top = pd.DataFrame(
    {"user": r.key, "turns": r.turns, "input tokens": r.input_tokens,
     "output tokens": r.output_tokens, "total tokens": r.total_tokens,
     "of which estimated": r.estimated_tokens, "cost (USD)": round(r.cost_usd, 6)}
    for r in by_user[:20]
)
st.bar_chart(top, x="user", y=["input tokens", "output tokens"], horizontal=True,
             x_label="user", y_label="tokens")
st.dataframe(top, hide_index=True, use_container_width=True)

st.subheader("By model")
st.dataframe(pd.DataFrame(
    {"model": r.key, "turns": r.turns, "total tokens": r.total_tokens,
     "cost (USD)": round(r.cost_usd, 6), "avg latency (ms)": round(r.avg_latency_ms)}
    for r in by_model
), hide_index=True, use_container_width=True)
