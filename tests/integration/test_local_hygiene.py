"""Local stack hygiene (`chatwax up`, issue #23): sign-in implies NATS auth, the data
directory and exports are private, no URL that is logged or shown carries a password, and
the frontend process does not hold the LLM key."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path
from typing import Any

from tests.support.oidc import oidc_provider
from tests.support.procs import free_port
from tests.support.up import CHATWAX
from tests.support.waiting import wait_until

SENTINEL = "pw-sentinel-9f8e7d6c"
KEY = "sk-key-sentinel-1a2b3c4d"


def _pids_with(text: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if text.encode() in (proc / "cmdline").read_bytes():
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


def test_sign_in_implies_nats_auth_and_the_pages_hold_no_llm_key(up: Any,
                                                                 tmp_path: Path) -> None:
    with oidc_provider() as idp:
        env = {"CHATWAX_OIDC_METADATA_URL": idp.metadata_url,
               "CHATWAX_OIDC_CLIENT_ID": idp.client.client_id,
               "CHATWAX_OIDC_CLIENT_SECRET": idp.client.client_secret,
               "OPENAI_API_KEY": KEY}
        u = up("--auth", "oidc", env=env)  # no --nats-auth
        u.wait_ready()
        # NATS auth is on: users and passwords made, an anonymous client refused.
        assert "NATS auth" in u.output()
        assert set(json.loads((u.data_dir / "nats-auth.json").read_text())) == {
            "dataflow", "frontend", "operator"}
        anonymous = subprocess.run([*CHATWAX, "ask", "--user", "anon", "hi"], env=u.env,
                                   capture_output=True, text=True, timeout=60)
        assert anonymous.returncode != 0 and "cannot reach NATS" in anonymous.stderr
        # The data directory is the owner's alone.
        assert stat.S_IMODE(u.data_dir.stat().st_mode) == 0o700
        # The pages' process (Streamlit, exec'd by `chatwax ui`) has no LLM key; the
        # dataflow processes, which call the LLM, do.
        [ui] = _pids_with(f"--server.port={u.ui_port}")
        assert KEY.encode() not in Path(f"/proc/{ui}/environ").read_bytes()
        dataflow = _pids_with("dataflow")
        assert any(KEY.encode() in Path(f"/proc/{p}/environ").read_bytes() for p in dataflow
                   if Path(f"/proc/{p}").exists())


def test_no_password_in_a_url_that_is_logged_or_shown_and_exports_are_private(
        up: Any, tmp_path: Path) -> None:
    u = up("--no-ui", "--nats-auth")
    u.wait_ready()
    password = json.loads((u.data_dir / "nats-auth.json").read_text())["operator"]
    base = {k: v for k, v in os.environ.items() if not k.startswith("NATS_")}
    # Credentials in NATS_URL work, as NATS_USER/NATS_PASSWORD do.
    url = f"nats://operator:{password}@127.0.0.1:{u.nats_port}"
    ok = subprocess.run([*CHATWAX, "ask", "--user", "urlcreds", "hi"],
                        env={**base, "NATS_URL": url}, capture_output=True, text=True,
                        timeout=60)
    assert ok.returncode == 0 and ok.stdout.strip() == "echo: hi", ok.stderr
    # An export: written through a private partial file, and private itself.
    out = tmp_path / "export.jsonl"
    export = subprocess.run([*CHATWAX, "export", "--format", "jsonl", "--user", "urlcreds",
                             str(out)], env={**base, "NATS_URL": url},
                            capture_output=True, text=True, timeout=60)
    assert export.returncode == 0, export.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600 and "urlcreds" in out.read_text()
    # A NATS that is not there: the error names the server, never the password.
    closed = free_port()
    bad = subprocess.run([*CHATWAX, "ask", "--user", "x", "--timeout", "5", "hi"],
                         env={**base, "NATS_URL": f"nats://op:{SENTINEL}@127.0.0.1:{closed}"},
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and f"127.0.0.1:{closed}" in bad.stderr
    assert SENTINEL not in bad.stdout + bad.stderr
    # `chatwax up --nats-url` with credentials: its children log retries, it prints the URL.
    log = tmp_path / "up-external.log"
    with log.open("w") as sink:
        proc = subprocess.Popen(
            [*CHATWAX, "up", "--no-ui", "--data-dir", str(tmp_path / "ext"),
             "--nats-url", f"nats://op:{SENTINEL}@127.0.0.1:{closed}",
             "--cluster-port", str(free_port()), "--metrics-port", str(free_port()),
             "--health-port", str(free_port()), "--processes", "1"],
            env={**base, "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}, stdout=sink,
            stderr=subprocess.STDOUT, text=True)
        try:
            wait_until(lambda: f"127.0.0.1:{closed}" in log.read_text(), 30,
                       "the dataflow logging its NATS address", poll=0.5)
        finally:
            proc.terminate()
            proc.wait(30)
    text = log.read_text()
    assert f"127.0.0.1:{closed}" in text, text[-2000:]
    assert SENTINEL not in text
