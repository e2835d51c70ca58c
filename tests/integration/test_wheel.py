"""`chatwax up` from an installed wheel, not a source checkout: the frontend ships inside
the package, and the whole platform starts from a fresh virtualenv."""

from __future__ import annotations

import subprocess
import urllib.request
from pathlib import Path
from typing import Any

from tests.support.procs import children_of, free_port, free_port_run, stop
from tests.support.waiting import wait_until
from tests.support.wheels import install_wheel, run

ROOT = Path(__file__).resolve().parents[2]


def test_chatwax_up_runs_from_the_installed_wheel(tmp_path: Path, own_llm: Any) -> None:
    venv = install_wheel(ROOT, tmp_path, "[dev]")
    site = run(venv / "bin" / "python", "-c",
                "import chatwax.frontend as f, pathlib; print(pathlib.Path(f.__file__).parent)")
    frontend = Path(site.stdout.strip())
    assert (frontend / "app.py").is_file() and (frontend / "chat.py").is_file()
    assert str(venv) in str(frontend) and not frontend.is_symlink()

    ui, nats = free_port(), free_port()
    log = (tmp_path / "up.log").open("w")
    proc = subprocess.Popen(
        [venv / "bin" / "chatwax", "up", "--llm", own_llm.base_url, "--data-dir",
         tmp_path / "data", "--nats-port", str(nats), "--nats-monitor-port", str(free_port()),
         "--cluster-port", str(free_port_run(2)), "--metrics-port", str(free_port_run(2)),
         "--health-port", str(free_port_run(2)), "--ui-port", str(ui)],
        cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
        env={"PATH": "/usr/bin:/bin", "CHATWAX_MODEL": "echo-1"})
    try:
        wait_until(lambda: "chatwax is up" in (tmp_path / "up.log").read_text(), 120,
                   "chatwax up from the wheel")
        with urllib.request.urlopen(f"http://127.0.0.1:{ui}/_stcore/health", timeout=5) as r:
            assert r.read() == b"ok"
        # The page Streamlit serves is the one inside the installed package.
        cmdlines = [Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                    for pid in children_of(proc.pid)]
        assert any(f"{frontend}/app.py" in c for c in cmdlines), cmdlines
        asked = subprocess.run([venv / "bin" / "chatwax", "ask", "--user", "wheel", "hi"],
                               env={"NATS_URL": f"nats://127.0.0.1:{nats}"},
                               capture_output=True, text=True, timeout=60)
        assert asked.returncode == 0 and asked.stdout.strip() == "echo: hi", asked.stderr
    finally:
        stop(proc, timeout=30)
        log.close()
