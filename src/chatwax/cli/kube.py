"""`chatwax kube`: the chart's hook commands (rollout, ensure-secret)."""

from __future__ import annotations

import argparse
import sys

from chatwax.core.console import setup_logging


def cmd_kube_rollout(args: argparse.Namespace) -> int:
    """The chart's post-upgrade hook: restart the dataflow's pods together if needed."""
    from chatwax.kube.api import connect
    from chatwax.kube.rollout import Rollout

    setup_logging("INFO")
    try:
        outcome = Rollout(connect(), args.namespace, args.statefulset).run(
            args.timeout, wait=not args.no_wait)
    except TimeoutError as exc:
        print(f"chatwax kube rollout: {exc}", file=sys.stderr)
        return 1
    print(f"{args.statefulset}: revision {outcome.update_revision}; restarted "
          f"{len(outcome.restarted)} pod(s) in {outcome.waited_s:.1f}s", flush=True)
    return 0


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
    """`chatwax kube rollout` and `chatwax kube ensure-secret`."""
    kube = sub.add_parser("kube", help="Kubernetes operations the Helm chart's hooks run")
    kube_sub = kube.add_subparsers(dest="kube_command", required=True)
    rollout = kube_sub.add_parser(
        "rollout", help="restart every pod of the dataflow StatefulSet together when any runs "
        "an older pod template (the chart's post-upgrade hook)")
    rollout.add_argument("--namespace", required=True)
    rollout.add_argument("--statefulset", required=True)
    rollout.add_argument("--timeout", type=float, default=600.0,
                         help="seconds to wait for the pods to be ready (default 600)")
    rollout.add_argument("--no-wait", action="store_true",
                         help="return once the pods are deleted, without waiting for them")
    rollout.set_defaults(func=cmd_kube_rollout)
    secret = kube_sub.add_parser(
        "ensure-secret", help="create a Secret of random values, add missing keys, never "
        "change a value (the chart's pre-install hook for generated passwords)")
    secret.add_argument("--namespace", required=True)
    secret.add_argument("--name", required=True)
    secret.add_argument("--key", action="append", required=True, help="a key to hold")
    secret.add_argument("--label", action="append", default=[], help="key=value label")
    secret.set_defaults(func=cmd_kube_ensure_secret)
