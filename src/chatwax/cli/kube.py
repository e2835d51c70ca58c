"""`chatwax kube`: the chart's hook command (ensure-secret)."""

from __future__ import annotations

import argparse

from chatwax.core.console import setup_logging


def cmd_kube_ensure_secret(args: argparse.Namespace) -> int:
    """The chart's pre-install hook: a Secret of generated values that never change."""
    from chatwax.kube.api import connect
    from chatwax.kube.secrets import ensure_secret

    setup_logging("INFO")
    labels = dict(item.split("=", 1) for item in args.label)
    added = ensure_secret(connect(), args.namespace, args.name, args.key, labels)
    print(f"Secret {args.name}: {len(added)} key(s) added, {len(args.key) - len(added)} kept",
          flush=True)
    return 0


def add_kube(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`chatwax kube ensure-secret`."""
    kube = sub.add_parser("kube", help="Kubernetes operations the Helm chart's hooks run")
    kube_sub = kube.add_subparsers(dest="kube_command", required=True)
    secret = kube_sub.add_parser(
        "ensure-secret", help="create a Secret of random values, add missing keys, never "
        "change a value (the chart's pre-install hook for generated passwords)")
    secret.add_argument("--namespace", required=True)
    secret.add_argument("--name", required=True)
    secret.add_argument("--key", action="append", required=True, help="a key to hold")
    secret.add_argument("--label", action="append", default=[], help="key=value label")
    secret.set_defaults(func=cmd_kube_ensure_secret)
