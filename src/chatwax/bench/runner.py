"""One scenario against a fresh local stack: the echo server, `chatwax up --no-ui` with the
scenario's processes and workers, the load, then each dataflow process's CPU and memory."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from chatwax.bench.builds import NOW, Build
from chatwax.bench.echo import EchoProcess
from chatwax.bench.load import drive
from chatwax.bench.measure import Result, proc_stats
from chatwax.bench.ports import free_run
from chatwax.bench.pyspy import start_profiles
from chatwax.bench.scenarios import Scenario
from chatwax.dev.options import StackOptions
from chatwax.dev.stack import Stack


def stack_options(sc: Scenario, data_dir: Path, llm_base_url: str, build: Build
                  ) -> StackOptions:
    """A stack on free ports, answering with the echo server, with no per-user limits: the
    load is a machine's, not people's."""
    code = {"PYTHONPATH": str(build.src)} if build.src else {}
    return StackOptions(
        processes=sc.processes, workers=sc.workers, ui=False, data_dir=data_dir,
        nats_port=free_run(1, 24222), nats_monitor_port=free_run(1, 28222),
        cluster_port=free_run(sc.processes, 22101), metrics_port=free_run(sc.processes, 23030),
        health_port=free_run(sc.processes, 23230),
        restart=False,
        dataflow_command=(("-m", "chatwax.bench.baseline") if sc.baseline
                          else StackOptions.dataflow_command),
        extra_env={"OPENAI_BASE_URL": llm_base_url, "CHATWAX_MODEL": "echo-1",
                   "CHATWAX_USER_MAX_CONCURRENT": "0", "CHATWAX_LLM_MAX_CONCURRENCY": "2048",
                   # Load, not people: no per-user rate, quota or conversation cap.
                   "CHATWAX_USER_PROMPTS_PER_MINUTE": "0", "CHATWAX_USER_TOKEN_QUOTA": "0",
                   "CHATWAX_USER_MAX_CONVERSATIONS": "0",
                   "CHATWAX_LOG_LEVEL": "WARNING", **code},
    )


def run_scenario(sc: Scenario, duration: float, latency: float, tokens: int,
                 profile: Path | None = None, build: Build = NOW) -> Result:
    """Run `sc` for its own duration or `duration`; py-spy records into `profile` if set."""
    duration = sc.duration or duration
    result = Result(sc, build=build.label)
    with tempfile.TemporaryDirectory(prefix="chatwax-bench-") as tmp, \
            EchoProcess(latency, tokens) as llm:
        stack = Stack(stack_options(sc, Path(tmp), llm.base_url, build))
        stack.start()
        spies = start_profiles(stack, sc, duration, profile) if profile else []
        try:
            asyncio.run(drive(stack.nats_url, sc, duration, latency, result, llm))
            for spy in spies:
                spy.wait(30)
            for child in stack.children:
                if child.dataflow:
                    cpu, rss = proc_stats(child.proc.pid)
                    result.cpu_s.append(round(cpu, 1))
                    result.peak_rss_mb.append(round(rss, 1))
        finally:
            stack.stop()
    return result
