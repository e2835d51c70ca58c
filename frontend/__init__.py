"""The Streamlit frontend (`streamlit run frontend/app.py`), shipped in the package as
`chatwax.frontend` so that `chatwax up` finds it in an installed wheel too."""
