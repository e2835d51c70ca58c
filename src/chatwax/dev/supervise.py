"""Child processes, supervised: started so none outlives `chatwax up`, watched, a dead
dataflow process restarted within a budget, and all stopped in order."""

from __future__ import annotations

import ctypes
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

_PR_SET_PDEATHSIG = 1


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    dataflow: bool = False
    cmd: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)


def _die_with_parent() -> None:
    """Linux: a child gets SIGTERM if `chatwax up` itself is killed, so none is orphaned."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def stop_order(children: list[Child]) -> list[list[Child]]:
    """The children in the order they stop: the last started first, with neighbouring
    dataflow processes in one group (signalled together)."""
    groups: list[list[Child]] = []
    for child in reversed(children):
        if child.dataflow and groups and groups[-1][0].dataflow:
            groups[-1].append(child)
        else:
            groups.append([child])
    return groups


@dataclass
class RestartBudget:
    """At most `most` restarts within any `window_s` seconds."""

    most: int
    window_s: float
    times: list[float] = field(default_factory=list)

    def take(self, now: float) -> bool:
        """Spend one restart at `now`, if the budget has one left."""
        self.times = [t for t in self.times if now - t < self.window_s]
        if len(self.times) < self.most:
            self.times.append(now)
            return True
        return False


class Supervisor:
    """The children of one stack, in the order they started."""

    def __init__(self, log_dir: Path | None, restart: bool, max_restarts: int,
                 restart_window_s: float) -> None:
        self.log_dir = log_dir
        """Each child's output to <log_dir>/<child>.log instead of this process's."""
        self.restart = restart
        self.max_restarts = max_restarts
        self.restart_window_s = restart_window_s
        self.children: list[Child] = []

    def spawn(self, name: str, cmd: list[str], env: Mapping[str, str],
              dataflow: bool = False) -> Child:
        env = dict(env)
        out = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            out = (self.log_dir / f"{name.replace(' ', '-')}.log").open("ab")
        child = Child(name, subprocess.Popen(cmd, env=env, start_new_session=True,
                                             preexec_fn=_die_with_parent, stdout=out,
                                             stderr=subprocess.STDOUT if out else None),
                      dataflow, cmd, env)
        if out is not None:
            out.close()  # the child has its own copy
        self.children.append(child)
        return child

    def restart_process(self, dead: Child) -> None:
        """Start a dead dataflow process again, as the kubelet restarts a container.

        Its peers have replaced themselves to re-form the cluster and wait for it
        (chatwax.dataflow.restarts); recovery brings state and stream positions back.
        """
        self.children.remove(dead)
        self.spawn(dead.name, dead.cmd, dead.env, dataflow=True)

    def stop(self, timeout: float = 10.0) -> None:
        """The last started first (`stop_order`): each group is signalled, then waited for
        (killed after `timeout`)."""
        for group in stop_order(self.children):
            for child in group:
                if child.proc.poll() is None:
                    child.proc.send_signal(signal.SIGTERM)
            for child in group:
                try:
                    child.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    child.proc.kill()
                    child.proc.wait()

    def supervise(self) -> int:
        """Block until a signal (exit 0) or a fatal child death (exit 1).

        A dead dataflow process is started again (unless restarts are off or too frequent)
        and the cluster re-forms with it; any other dead child stops them all.
        """
        def on_signal(signum: int, frame: FrameType | None) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, on_signal)
        budget = RestartBudget(self.max_restarts, self.restart_window_s)
        try:
            while True:
                dead = next((c for c in self.children if c.proc.poll() is not None), None)
                if dead is not None:
                    code = dead.proc.returncode
                    if dead.dataflow and self.restart and budget.take(time.monotonic()):
                        print(f"chatwax: {dead.name} exited with code {code}; restarting it "
                              "(the cluster re-forms with it)", file=sys.stderr, flush=True)
                        self.restart_process(dead)
                        continue
                    print(f"chatwax: {dead.name} exited with code {code}; "
                          "stopping the stack", file=sys.stderr, flush=True)
                    self.stop()
                    return 1
                time.sleep(0.2)
        except KeyboardInterrupt:
            print("chatwax: stopping", file=sys.stderr, flush=True)
            self.stop()
            return 0
