"""`chatwax up` decides its LLM once, before anything starts, and every child it starts
(local model, dataflow processes, frontend) gets that one decision: the page's header
names the model the dataflow calls. Children are recorded here, not run."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path
from typing import Any, ClassVar

import pytest

from chatwax.core.settings import Settings
from chatwax.dev import stack as stack_module
from chatwax.dev.options import StackOptions
from chatwax.dev.stack import Stack
from chatwax.frontend.shared import model_label
from chatwax.local import model as local_llm
from chatwax.local.model import MODEL_ALIAS

ECHO = "http://127.0.0.1:9/v1"
MODES = {  # how `make run` picks its LLM: (--llm, environment, page header, LLM line)
    "no key": ("auto", {}, f"Answers by **{MODEL_ALIAS}** (on this machine or cluster)",
               f"{MODEL_ALIAS} (local model, http://127.0.0.1:8400/v1)"),
    "base URL": ("auto", {"OPENAI_BASE_URL": ECHO, "CHATWAX_MODEL": "echo-1"},
                 "Answers by **echo-1** (on this machine or cluster)", f"echo-1 at {ECHO}"),
    "--llm openai": ("openai", {}, "Answers by **gpt-4o-mini** (OpenAI)",
                     "none configured: prompts get an error reply (set OPENAI_API_KEY or --llm)"),
}


class FakeProcess:
    """Stands in for subprocess.Popen: records what would start, and keeps running."""

    started: ClassVar[list[tuple[list[str], dict[str, str]]]] = []

    def __init__(self, cmd: list[str], env: dict[str, str] | None = None, **_: Any) -> None:
        assert env is not None  # every child gets the stack's environment, never an implicit one
        FakeProcess.started.append((cmd, env))
        self.returncode = None

    def poll(self) -> None:
        return None


@pytest.mark.parametrize("mode", MODES)
def test_every_child_gets_the_one_llm_chosen_before_anything_starts(
        mode: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    choice, env, header, llm_line = MODES[mode]
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "CHATWAX_MODEL", "CHATWAX_PROVIDER",
                "CHATWAX_AUTH", "CHATWAX_COMPAT_SUBJECT"):
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    monkeypatch.setattr(subprocess, "Popen", FakeProcess)
    monkeypatch.setattr(stack_module, "wait_http", lambda *a, **k: None)
    monkeypatch.setattr(local_llm, "installed", lambda: True)
    monkeypatch.setattr(FakeProcess, "started", [])
    opts = StackOptions(data_dir=tmp_path, llm=choice)
    before = dataclasses.replace(opts)
    stack = Stack(opts)
    monkeypatch.setattr(stack, "check_ports", lambda: None)

    stack.start()

    assert opts == before  # nothing changed the options...
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.extra_env = {}  # type: ignore[misc]  # ...nor can
    names = [" ".join(cmd[1:4]) for cmd, _ in FakeProcess.started]
    want = ["-m chatwax dataflow"] * 2 + ["-m chatwax ui"]
    assert [n for n in names if n in want] == want
    assert ("-m chatwax local-llm" in names) is (mode == "no key")
    chosen = stack.llm.settings
    for cmd, child_env in FakeProcess.started:
        got = Settings.from_env(child_env)
        assert (got.model, got.openai_base_url, got.provider) == (
            chosen.model, chosen.openai_base_url, chosen.provider), cmd
    ui_env = FakeProcess.started[-1][1]
    assert model_label(Settings.from_env(ui_env)) == header
    assert f"  LLM         {llm_line}\n" in stack.describe()
