"""One dataflow process: what `chatwax dataflow` runs, and what a pod's container runs.

In order: a pod made from an older template deletes itself (`replace_if_stale`, before
the settings are read, so a pod that crash-loops on a bad value still takes the fixed
template); stop signals handled; the health endpoint up (not ready); this process's place
in the cluster, from the StatefulSet's current replicas in Kubernetes; its own address
resolvable; the recovery store ready; NATS connected; then Bytewax runs the flow until the
cluster loses a member or the replica count changes, and the process replaces itself to
re-form the cluster (`chatwax.dataflow.restarts`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping

from chatwax.client.loopthread import LoopThread
from chatwax.core.settings import Settings
from chatwax.dataflow import compat, health
from chatwax.dataflow.flow import build_flow
from chatwax.dataflow.metrics import Metrics
from chatwax.dataflow.restarts import RestartState, exit_on_stop_signals, reexec
from chatwax.dataflow.runspec import (
    RunSpec,
    prepare_recovery,
    wait_resolvable,
    workers_from_env,
)
from chatwax.dataflow.runtime import Runtime
from chatwax.kube import replicas as k8s
from chatwax.kube import revision

log = logging.getLogger("chatwax.dataflow")


def run_spec(env: Mapping[str, str], restart: RestartState, started: float,
             settings: Settings) -> RunSpec:
    """This process's place in the cluster.

    In a pod, the peer list follows the StatefulSet's current replicas, read before the
    run spec is checked: after `kubectl scale`, the pod template still lists the old count.
    A change of the replica count while running restarts the process with the new count;
    a new pod template deletes this pod (chatwax.kube.revision), through the same watch.
    A pod beyond the count (one a scale-down is removing) waits to be deleted.
    """
    target = k8s.target_from_env(env)
    if target is None:
        return RunSpec.from_env(env)
    from chatwax.kube.api import connect

    api_client = connect()
    api = k8s.apps_api(api_client)
    rendered = len([a for a in env.get("BYTEWAX_ADDRESSES", "").split(";") if a.strip()])
    count = k8s.replicas_or_rendered(api, target, rendered or 1,
                                     timeout_s=settings.k8s_api_timeout_s,
                                     wait_s=settings.k8s_api_wait_s)

    def on_change(new: int) -> None:
        reexec(restart, started, f"the StatefulSet now has {new} replicas (was {count})")

    me = revision.self_from_env(env)
    replace = (revision.replacer(revision.core_api(api_client), me,
                                 timeout_s=settings.k8s_api_timeout_s) if me else None)
    k8s.watch_replicas(api, target, count, on_change,
                       timeout_s=settings.k8s_api_timeout_s, replace=replace)
    ordinal = k8s.ordinal(env, target)
    if ordinal is not None and ordinal >= count:
        log.warning("this pod is process %d but the StatefulSet has %d replicas: it is being "
                    "removed; waiting to be deleted", ordinal, count)
        threading.Event().wait()  # until SIGTERM, or a scale back up restarts us
    return RunSpec.from_env(k8s.env_with_replicas(env, target, count))


def replace_if_stale(env: Mapping[str, str]) -> bool:
    """At start, before anything that can fail on the pod's own configuration: a pod made
    from an older template than its StatefulSet's deletes itself. True when it did: the
    caller then waits for the kubelet's SIGTERM (`wait_to_be_stopped`).

    This is how a crash-looping dataflow takes a fixed template: nothing waits for it to
    become Ready. Anything else (no Kubernetes mode, an API that does not answer, a
    refusal) carries on: the StatefulSet watch checks again on every event.
    """
    target, me = k8s.target_from_env(env), revision.self_from_env(env)
    if target is None or me is None:
        return False
    from chatwax.core.errors import ConfigError
    from chatwax.kube.api import connect

    timeout_s = float(Settings.one_from_env("k8s_api_timeout_s", env))
    try:
        api_client = connect()
        sts = k8s.read_statefulset(k8s.apps_api(api_client), target, timeout_s=timeout_s)
        return revision.should_replace(me.revision, sts) and revision.delete_self(
            revision.core_api(api_client), me, sts.status.update_revision,
            timeout_s=timeout_s)
    except (k8s.ApiUnreachable, ConfigError) as exc:
        log.info("revision check at start skipped (%s); the StatefulSet watch checks again",
                 exc)
        return False
    except Exception as exc:  # noqa: BLE001 - this check must never be what stops a start
        log.warning("revision check at start failed (%s: %s); the StatefulSet watch checks "
                    "again", type(exc).__name__, str(exc)[:200])
        return False


def wait_to_be_stopped() -> int:
    """This pod deleted itself: wait for the kubelet's SIGTERM, which ends the process
    (through `exit_on_stop_signals`, in place before the delete was sent)."""
    exit_on_stop_signals()
    threading.Event().wait()
    return 0


MAX_REASON_CHARS = 4000


def stop_reason(exc: BaseException) -> str:
    """The exception that stopped the cluster, with its cause chain, at most a few lines
    of it: Bytewax carries the Python error that made a worker panic in its message."""
    parts: list[str] = []
    seen: BaseException | None = exc
    while seen is not None and len(parts) < 5:
        parts.append(f"{type(seen).__name__}: {seen}")
        seen = seen.__cause__ or seen.__context__
    return " <- caused by ".join(parts)[:MAX_REASON_CHARS]


def run(settings: Settings, env: Mapping[str, str]) -> int:
    """Run this process of the cluster; it never ends but by a signal or a failure."""
    from bytewax._bytewax import cli_main
    from bytewax.recovery import RecoveryConfig

    exit_on_stop_signals()
    started = time.time()
    restart = RestartState.from_env(env)
    loop = LoopThread("chatwax-loop")
    state = health.Health(workers=workers_from_env(env))
    if settings.health_port:
        loop.call(health.serve(state, settings.health_host, settings.health_port))
    spec = run_spec(env, restart, started, settings)
    log.info("dataflow process %s of %d, %d worker(s); settings %s",
             spec.process_id or 0, spec.process_count, spec.workers_per_process,
             settings.redacted())
    if spec.addresses and spec.process_id is not None:
        wait_resolvable(spec.addresses[spec.process_id])
    prepare_recovery(spec)
    metrics = Metrics()
    metrics.prime(settings.model, settings.provider)
    runtime = Runtime.start(settings, metrics, loop)
    state.nats_connected = lambda: bool(runtime.link.nc.is_connected)
    compat.start(runtime.link, settings.compat_subject, settings.max_prompt_chars,
                 timeout=settings.llm_timeout_s + settings.retry_max_time_s + 30)
    recovery = (RecoveryConfig(str(spec.recovery_dir), spec.backup_interval)
                if spec.recovery_dir else None)
    edges = runtime.edges(from_start=recovery is not None, on_poll=state.worker_active)
    flow = build_flow(settings, edges, metrics, runtime.counter)
    try:
        cli_main(
            flow,
            workers_per_process=spec.workers_per_process,
            process_id=spec.process_id,
            addresses=spec.addresses,
            epoch_interval=spec.snapshot_interval,
            recovery_config=recovery,
        )
    except BaseException as exc:
        # Why it stopped, in full, before anything else: a step's exception reaches here
        # only inside Bytewax's panic text (steps are guarded; this is for what is not).
        log.error("the cluster stopped: %s", stop_reason(exc))
        if spec.process_count == 1 and not spec.addresses:
            raise  # no cluster to re-form: a failure of the flow itself
        reexec(restart, started, f"the cluster stopped ({type(exc).__name__}: "
                                  f"{str(exc).splitlines()[0] if str(exc) else ''})")
    return 0
