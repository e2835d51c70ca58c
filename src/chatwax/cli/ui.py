"""`chatwax ui`: the Streamlit pages, with options for a container."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

from chatwax.core.console import needs_extra
from chatwax.core.settings import UI_PORT


def cmd_ui(args: argparse.Namespace) -> int:
    """The Streamlit pages, with sign-in when CHATWAX_AUTH=oidc (what the frontend runs)."""
    if importlib.util.find_spec("streamlit") is None:
        return needs_extra("ui", "`chatwax ui`")
    from chatwax.frontend import launch

    extra = args.streamlit_args[1:] if args.streamlit_args[:1] == ["--"] else \
        args.streamlit_args
    secrets_dir = Path(args.secrets_dir) if args.secrets_dir else None
    launch.run(args.port, args.address, args.base_url_path, secrets_dir, extra)


def add_ui(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`chatwax ui`: the Streamlit pages, with options for a container."""
    ui = sub.add_parser(
        "ui", help="run the Streamlit pages (what the frontend image and `chatwax up` run); "
        "CHATWAX_AUTH=oidc and the CHATWAX_OIDC_* variables turn sign-in on")
    ui.add_argument("--port", type=int, default=UI_PORT,
                    help="port to listen on (default %(default)s)")
    ui.add_argument("--address", default="127.0.0.1",
                    help="address to listen on (default 127.0.0.1; 0.0.0.0 in a container)")
    ui.add_argument("--base-url-path", default="",
                    help="serve under this path (Streamlit's server.baseUrlPath)")
    ui.add_argument("--secrets-dir", help="private folder for Streamlit's secrets.toml when "
                    "sign-in is on (default: a new temporary folder)")
    ui.add_argument("streamlit_args", nargs=argparse.REMAINDER,
                    help="after --: more `streamlit run` options")
    ui.set_defaults(func=cmd_ui)
