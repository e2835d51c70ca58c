"""Re-forming the Bytewax cluster without waiting for a container restart.

A running Bytewax cluster cannot lose or gain a member: when a peer goes away, every other
process fails within a second, and a changed process count needs every process started
again. Left to the kubelet, each such failure is a container restart with a back-off that
grows to five minutes. Instead the process replaces itself (`exec` of the same command,
same PID, same pod) and rejoins at once; its state comes back from recovery as after any
restart. Quick successive failures still back off, so a process that cannot run does not
spin. SIGTERM and SIGINT end the process promptly, whatever it is doing.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

log = logging.getLogger(__name__)

STATE_ENV = "CHATWAX_RESTART_STATE"
"""Carries the restart history across `exec`: `<quick restarts>:<start of the last run>`."""
QUICK_S = 60.0
"""A run shorter than this counts as a quick failure."""
MAX_DELAY_S = 30.0


@dataclass(frozen=True, slots=True)
class RestartState:
    quick: int = 0
    started_at: float = 0.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RestartState:
        raw = env.get(STATE_ENV, "")
        try:
            quick, started = raw.split(":")
            return cls(int(quick), float(started))
        except ValueError:
            return cls()

    def encode(self) -> str:
        return f"{self.quick}:{self.started_at:.3f}"

    def after(self, run_started: float, now: float) -> tuple[float, RestartState]:
        """The delay before the next run, and the state to hand it."""
        if now - run_started >= QUICK_S:
            return 0.0, RestartState(0, now)
        quick = self.quick + 1
        return min(0.5 * 2 ** (quick - 1), MAX_DELAY_S), RestartState(quick, now)


def reexec(state: RestartState, run_started: float, reason: str) -> None:
    """Replace this process with a fresh run of the same command (never returns)."""
    delay, following = state.after(run_started, time.time())
    log.warning("%s: restarting this process%s to re-form the cluster", reason,
                f" in {delay:g}s" if delay else "")
    if delay:
        time.sleep(delay)
    os.environ[STATE_ENV] = following.encode()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os.execv(sys.executable, sys.orig_argv)


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_stop_signals_handled = False


def exit_on_stop_signals() -> None:
    """SIGTERM or SIGINT end the process at once, even inside Bytewax's network set-up.

    The signals are blocked in this thread before any other thread starts (threads inherit
    the mask), and one thread waits for them: Python's own handlers run only on the main
    thread and not while it waits inside Bytewax. Call it first thing in the process;
    later calls do nothing.
    """
    global _stop_signals_handled
    if _stop_signals_handled:
        return
    _stop_signals_handled = True
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)

    def wait() -> None:
        signum = signal.sigwait(STOP_SIGNALS)
        log.info("%s: stopping", signal.Signals(signum).name)
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os._exit(0)

    threading.Thread(target=wait, name="chatwax-signals", daemon=True).start()
