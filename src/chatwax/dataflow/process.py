"""One dataflow process: what `chatwax dataflow` runs, and what a pod's container runs.

In order: find this process's place in the cluster (from the StatefulSet in Kubernetes),
connect to NATS, build the flow on the runtime's edges, and hand it to Bytewax.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from chatwax.core.settings import Settings
from chatwax.dataflow import compat, k8s
from chatwax.dataflow.flow import build_flow
from chatwax.dataflow.metrics import Metrics
from chatwax.dataflow.runspec import RunSpec, prepare_recovery
from chatwax.dataflow.runtime import Runtime

log = logging.getLogger("chatwax.dataflow")


def run_spec(env: Mapping[str, str]) -> RunSpec:
    """This process's place in the cluster.

    In a pod, the peer list follows the StatefulSet's current replicas, read before the
    run spec is checked: after `kubectl scale`, the pod template still lists the old count.
    """
    target = k8s.target_from_env(env)
    if target is None:
        return RunSpec.from_env(env)
    api = k8s.apps_api()
    replicas = k8s.read_replicas(api, target)
    spec = RunSpec.from_env(k8s.env_with_replicas(env, target, replicas))

    def restart(new: int) -> None:
        log.error("process count changed to %d; exiting so every pod restarts with it", new)
        os._exit(3)

    k8s.watch_replicas(api, target, replicas, restart)
    return spec


def run(settings: Settings, env: Mapping[str, str]) -> int:
    """Run this process of the cluster until it fails (a Bytewax cluster never ends)."""
    from bytewax._bytewax import cli_main
    from bytewax.recovery import RecoveryConfig

    spec = run_spec(env)
    log.info("dataflow process %s of %d, %d worker(s); settings %s",
             spec.process_id or 0, spec.process_count, spec.workers_per_process,
             settings.redacted())
    prepare_recovery(spec)
    metrics = Metrics()
    metrics.prime(settings.model, settings.provider)
    runtime = Runtime.start(settings, metrics)
    compat.start(runtime.link, settings.compat_subject, settings.max_prompt_chars,
                 timeout=settings.llm_timeout_s + settings.retry_max_time_s + 30)
    recovery = (RecoveryConfig(str(spec.recovery_dir), spec.backup_interval)
                if spec.recovery_dir else None)
    flow = build_flow(settings, runtime.edges(from_start=recovery is not None), metrics)
    cli_main(
        flow,
        workers_per_process=spec.workers_per_process,
        process_id=spec.process_id,
        addresses=spec.addresses,
        epoch_interval=spec.snapshot_interval,
        recovery_config=recovery,
    )
    return 0
