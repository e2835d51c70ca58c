"""The commands the images run, each group in its own module: `dataflow` (a dataflow
pod), `kube` (the chart's hooks), `ui` (the frontend pod), and `ask`, `usage`, `export`,
`forget` (an operator's, against a running platform).

They import no dev tools, benchmarks or the local model, as an import-linter contract
checks: the images drop those packages. `chatwax.cli` adds `up`, `bench` and `local-llm`
from their own packages where they are installed.
"""

from __future__ import annotations

import argparse
import importlib.util

from chatwax.cli import ask, data, dataflow, kube, ui, usage


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Every production command this install can run, in the order `chatwax --help` lists
    them: the frontend image drops the dataflow and Kubernetes code, and lists neither."""
    if importlib.util.find_spec("chatwax.dataflow") is not None:
        dataflow.add_dataflow(sub)
    if importlib.util.find_spec("chatwax.kube") is not None:
        kube.add_kube(sub)
    ask.add_ask(sub)
    usage.add_usage(sub)
    data.add_export(sub)
    data.add_forget(sub)
    ui.add_ui(sub)
