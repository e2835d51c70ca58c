"""chatwax frontend: `chatwax ui` (which runs `streamlit run` on this file). Two pages:
Chat and Usage, behind sign-in when CHATWAX_AUTH=oidc."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from chatwax.core.settings import Settings
from chatwax.frontend.shared import gate

HERE = Path(__file__).parent

st.set_page_config(page_title="chatwax", page_icon=":material/forum:", layout="centered")
gate(Settings.from_env())  # signed out: only the sign-in button, and no page runs
page = st.navigation([
    st.Page(HERE / "chat.py", title="Chat", icon=":material/forum:", default=True),
    st.Page(HERE / "usage.py", title="Usage", icon=":material/bar_chart:"),
])
page.run()
