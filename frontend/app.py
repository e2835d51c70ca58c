"""chatwax frontend: `streamlit run frontend/app.py`. Two pages: Chat and Usage."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

HERE = Path(__file__).parent

st.set_page_config(page_title="chatwax", page_icon=":material/forum:", layout="centered")
page = st.navigation([
    st.Page(HERE / "chat.py", title="Chat", icon=":material/forum:", default=True),
    st.Page(HERE / "usage.py", title="Usage", icon=":material/bar_chart:"),
])
page.run()
