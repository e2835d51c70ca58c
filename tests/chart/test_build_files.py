"""Dockerfiles, skaffold.yaml, the release workflow and kind-config.yaml agree with each
other and the chart; what the images install is what their Dockerfiles say."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import subprocess
import tarfile
import tomllib
from copy import deepcopy
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.conftest import (
    CHART,
    IMAGES,
    ROOT,
    VALUES_KEY,
    WORKFLOW,
    Chart,
    expand_expressions,
    release_workflow,
)

COMPONENTS = ("dataflow", "frontend")
DOCKERFILES = [ROOT / f"Dockerfile.{c}" for c in COMPONENTS]
FLAGS = ROOT / "scripts" / "llama-cpp-flags.amd64"
PIP_CACHE_MOUNT = "--mount=type=cache,target=/root/.cache/pip"
PIP_CERT_MOUNT = "--mount=type=secret,id=pip-cert"
# pip lives in /opt/tools and installs into /opt/venv: the image's venv has no pip.
PIP_INTO_VENV = "/opt/tools/bin/pip --python /opt/venv/bin/python install"
SITE = ("site=$(/opt/venv/bin/python -c "
        """'import sysconfig; print(sysconfig.get_path("purelib"))')""")
BASE_DEFAULT = re.compile(r"python:3\.12-slim-bookworm@sha256:[0-9a-f]{64}")
# The chatwax subpackages no image runs; each image keeps only the one it serves, if any.
NEVER_RUN = {"dev", "bench"}


def _stages(dockerfile: Path) -> list[tuple[str, str, str]]:
    """(stage name, base, text) of every stage, in order."""
    out = []
    for part in re.split(r"^FROM ", dockerfile.read_text(), flags=re.M)[1:]:
        header, _, body = part.partition("\n")
        words = header.split()
        out.append((words[-1] if len(words) == 3 and words[1] == "AS" else "", words[0], body))
    return out


def _stage(image: str) -> str:
    """The text of the stage an image is built from."""
    dockerfile, target = IMAGES[image]
    stages = _stages(ROOT / dockerfile)
    return next(body for name, _, body in stages if name == target) if target else stages[-1][2]


def _instructions(text: str, name: str) -> list[str]:
    """The arguments of every `name` instruction (one line each in our Dockerfiles)."""
    return re.findall(rf"^{name} (.+)$", text, flags=re.M)


def _exec_form(text: str, name: str) -> list[str]:
    found = _instructions(text, name)
    if not found:
        return []
    parsed: list[str] = json.loads(found[-1])  # not JSON means shell form
    return parsed


def _lines(text: str) -> list[str]:
    """The instructions of a stage, continuation lines joined, comments dropped."""
    out, pending = [], ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        out.append(" ".join((pending + line).split()))
        pending = ""
    return out


def _lineage(dockerfile: Path, stage: str | None) -> list[str]:
    """The instructions that build `stage` (None: the last), its base stages' first."""
    stages = _stages(dockerfile)
    by_name = {name: (base, body) for name, base, body in stages if name}
    base, body = by_name[stage] if stage else (stages[-1][1], stages[-1][2])
    lines = _lines(body)
    while base in by_name:
        base, body = by_name[base]
        lines = _lines(body) + lines
    return lines


def _venv_build(image: str) -> list[str]:
    """The instructions that build the venv an image copies (`COPY --from=<stage> /opt/venv`)."""
    dockerfile, _ = IMAGES[image]
    source = re.search(r"^COPY --from=(\S+) /opt/venv /opt/venv$", _stage(image), flags=re.M)
    assert source, image
    return _lineage(ROOT / dockerfile, source.group(1))


def _pip_installs(lines: list[str]) -> list[tuple[int, list[str]]]:
    """(line index, arguments) of every `pip install` into the image's venv (pip runs from
    /opt/tools with --python), in these instructions."""
    out = []
    for i, line in enumerate(lines):
        for part in line.split("&&"):
            if PIP_INTO_VENV in part:
                out.append((i, shlex.split(part.split(PIP_INTO_VENV, 1)[1].split(";")[0])))
    return out


def _requirements(args: list[str]) -> list[str]:
    """The requirements among pip install arguments (options and their values dropped)."""
    out, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg in ("--cache-dir", "--only-binary", "-c", "-r"):
            skip = True
        elif not arg.startswith("-"):
            out.append(arg)
    return out


def _locks(args: list[str]) -> list[str]:
    """The requirement files (-r) among pip install arguments."""
    return [args[i + 1] for i, arg in enumerate(args) if arg == "-r"]


def _removed(lines: list[str]) -> set[str]:
    """What an `rm -r` removes from the venv's site-packages ("chatwax/dev", ...): paths
    under $site, which the same RUN asks of the venv's Python (no version in a path)."""
    removed = set()
    for line in lines:
        for part in line.split("&&"):
            if part.strip().startswith("rm -r "):
                assert SITE in line, line
                removed |= set(re.findall(r'"\$site/([\w/]+)"', part))
    return removed


def _pinned(extra: str, name: str) -> str:
    """The version pyproject.toml pins `name` to in `extra`."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = [d.split("==", 1)[1] for d in project["optional-dependencies"][extra]
            if d.startswith(f"{name}==")]
    assert len(pins) == 1, f"pyproject.toml must pin {name}==X.Y.Z in [{extra}]"
    return pins[0]


def _last_stage(dockerfile: str, target: str | None) -> str:
    """The stage a build ends at: its target, else the last stage's name ("" if unnamed)."""
    return target or _stages(ROOT / dockerfile)[-1][0]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_clean(tools: dict[str, str], dockerfile: Path) -> None:
    res = subprocess.run([tools["hadolint"], str(dockerfile)], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


def test_hadolint_finds_what_it_should(tools: dict[str, str], tmp_path: Path) -> None:
    """hadolint runs for real: an unpinned base and a shell-form entrypoint are reported."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install chatwax\nENTRYPOINT chatwax dataflow\n")
    res = subprocess.run([tools["hadolint"], str(bad)], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode != 0
    assert {"DL3007", "DL3013", "DL3025"} <= set(re.findall(r"DL\d{4}", res.stdout))


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfiles_build_anywhere_pinned_and_copy_only_what_is_allowed(
        dockerfile: Path) -> None:
    """The base is an ARG whose default is the published python image by digest; no
    `# syntax=` line (BuildKit's built-in frontend, no registry); no Python version in a
    path (the base may have 3.11 or 3.12); every install from a hashed lock, through pip's
    cache mount and the optional pip-cert secret, which no layer keeps."""
    text = dockerfile.read_text()
    assert not re.search(r"^#\s*syntax\s*=", text, flags=re.M | re.I)
    assert not re.search(r"python3?\.\d+", text.replace("python:3.12-slim", ""))
    head = text[:text.index("\nFROM ")]
    (default,) = re.findall(r"^ARG BASE_IMAGE=(\S+)$", head, flags=re.M)
    assert BASE_DEFAULT.fullmatch(default), default
    seen: list[str] = []
    for name, base, _ in _stages(dockerfile):
        assert base == "${BASE_IMAGE}" or base in seen, base
        seen.append(name)
    # pip's cache is a BuildKit cache mount on every install (fast rebuilds, in no layer).
    assert "--no-cache-dir" not in text and "PIP_NO_CACHE_DIR" not in text
    lines = [line for _, _, body in _stages(dockerfile) for line in _lines(body)]
    pip_runs = [line for line in lines if re.search(r"/bin/pip( --python \S+)? (install|wheel)",
                                                    line)]
    assert pip_runs and all(line.startswith(f"RUN {PIP_CACHE_MOUNT} ") for line in pip_runs)
    # Every lock install checks hashes and may reach PyPI through a proxy's CA, given as a
    # secret (a file under /run/secrets for that RUN only), never as ENV or ARG.
    lock_runs = [line for line in pip_runs if " -r requirements/" in line]
    assert len(lock_runs) >= 2  # the build tools and the image's lock
    for line in lock_runs:
        assert "--require-hashes" in line and PIP_CERT_MOUNT in line, line
        assert "if [ -f /run/secrets/pip-cert ]; then export PIP_CERT=/run/secrets/pip-cert; fi" \
            in line
    assert not re.search(r"^(ENV|ARG) .*PIP_CERT", text, flags=re.M)
    # Everything COPY takes from the context survives .dockerignore.
    allowed = [line[1:].rstrip("/") for line in
               (ROOT / ".dockerignore").read_text().splitlines() if line.startswith("!")]
    for copy in _instructions(text, "COPY"):
        if copy.startswith("--from"):
            continue
        for item in copy.split()[:-1]:
            item = item.rstrip("/")
            assert any(fnmatch.fnmatch(item, a) or fnmatch.fnmatch(a, item) for a in allowed), item
            # A build argument stands for any value; a wildcard may match nothing.
            assert "[" in item or list(ROOT.glob(re.sub(r"\$\{\w+\}", "*", item))), item


@pytest.mark.parametrize("image", IMAGES)
def test_every_image_runs_a_built_venv_as_non_root(image: str) -> None:
    stage = _stage(image)
    assert re.search(r"^COPY --from=build(-\S+)? /opt/venv /opt/venv$", stage, flags=re.M)
    assert _instructions(stage, "USER") == ["10001:10001"]
    assert _exec_form(stage, "ENTRYPOINT")


def test_the_chart_runs_what_the_images_run(chart: Chart) -> None:
    """The chart's commands are the images' entrypoints, on the ports the images expose,
    as the images' user."""
    docs = chart.render("llm.local.enabled=true")
    for image, kind, suffix in (("dataflow", "StatefulSet", "-dataflow"),
                                ("frontend", "Deployment", "-frontend"),
                                ("local-llm", "Deployment", "-llm")):
        stage = _stage(image)
        container = docs.container(kind, suffix)
        image_command = _exec_form(stage, "ENTRYPOINT") + _exec_form(stage, "CMD")
        exposed = {int(p) for line in _instructions(stage, "EXPOSE") for p in line.split()}
        assert {p["containerPort"] for p in container["ports"]} == exposed, image
        if image == "local-llm":
            # Same program; the chart passes its sizes as flags, the port the image exposes.
            assert container["command"][:2] == image_command[:2] == ["chatwax", "local-llm"]
            assert f"--port={exposed.pop()}" in container["command"]
        else:
            assert container["command"] == image_command, image
        uid = int(_instructions(stage, "USER")[0].split(":")[0])
        pod = docs.find(kind, suffix)["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsUser"] == uid
    # The dataflow works in a writable folder (bytewax writes dataflow.json there).
    dataflow = docs.container("StatefulSet", "-dataflow")
    assert dataflow["workingDir"] in {m["mountPath"] for m in dataflow["volumeMounts"]}


def test_skaffold_builds_every_image_and_sets_the_charts_image_values(chart: Chart) -> None:
    cfg = yaml.safe_load((ROOT / "skaffold.yaml").read_text())
    assert cfg["apiVersion"] in ("skaffold/v4beta13", "skaffold/v4beta14")
    assert cfg["build"]["local"]["push"] is False  # kind loads images; no registry
    by_build = {(a["docker"]["dockerfile"], a["docker"].get("target")): a["image"]
                for a in cfg["build"]["artifacts"]}
    assert sorted(by_build, key=str) == sorted(IMAGES.values(), key=str)
    release = cfg["deploy"]["helm"]["releases"][0]
    assert (ROOT / release["chartPath"]).resolve() == CHART
    values_files = tuple(ROOT / f for f in release["valuesFiles"])
    assert all(f.exists() for f in values_files)
    templates = release["setValueTemplates"]
    sets = []
    values_key = {"dataflow": "dataflow", "frontend": "frontend", "local-llm": "llm.local"}
    for image, build in IMAGES.items():
        # skaffold turns -, /, . and : in an artifact's name into _ in these variables.
        var = re.sub(r"[-/.:]", "_", by_build[build])
        key = values_key[image]
        assert templates[f"{key}.image.repository"] == f"{{{{.IMAGE_REPO_{var}}}}}"
        assert templates[f"{key}.image.tag"] == f"{{{{.IMAGE_TAG_{var}}}}}"
        assert release["setValues"][f"{key}.image.pullPolicy"] == "IfNotPresent"
        sets += [f"{key}.image.repository=local/{image}", f"{key}.image.tag=dev-1"]
    assert len(templates) == 2 * len(IMAGES)
    # What skaffold would set lands in the pods (and the helm test pod uses the dataflow's);
    # the kind values run the local model, so `skaffold dev` needs no API key.
    docs = chart.render(*sets, values=values_files)
    assert docs.container("StatefulSet", "-dataflow")["image"] == "local/dataflow:dev-1"
    assert docs.container("Deployment", "-frontend")["image"] == "local/frontend:dev-1"
    assert docs.container("Deployment", "-llm")["image"] == "local/local-llm:dev-1"
    assert docs.find("Pod", "-test-ask")["spec"]["containers"][0]["image"] == \
        "local/dataflow:dev-1"
    assert "OPENAI_API_KEY" not in docs.secret_files("StatefulSet", "-dataflow")
    # The port-forward names the frontend Service the chart renders for this release.
    forward = cfg["portForward"][0]
    svc = docs.find("Service", "-frontend")
    assert release["name"] == "chatwax" and forward["resourceName"] == svc["metadata"]["name"]
    assert forward["namespace"] == release["namespace"]
    assert forward["port"] == svc["spec"]["ports"][0]["port"]


def test_kind_config_is_ready_for_an_ingress_controller(chart: Chart) -> None:
    cfg = yaml.safe_load((ROOT / "kind-config.yaml").read_text())
    assert (cfg["kind"], cfg["apiVersion"]) == ("Cluster", "kind.x-k8s.io/v1alpha4")
    node = cfg["nodes"][0]
    assert node["labels"]["ingress-ready"] == "true"
    mapped = {(m["containerPort"], m["hostPort"], m["listenAddress"])
              for m in node["extraPortMappings"]}
    assert mapped == {(80, 80, "127.0.0.1"), (443, 443, "127.0.0.1")}
    # The kind values expose the frontend through an Ingress of a configurable class.
    kind_values = chart.path / "ci" / "kind-values.yaml"
    ingress = chart.render(values=(kind_values,)).find("Ingress", "-frontend")
    assert ingress["spec"]["ingressClassName"]


# -- what each image installs ---------------------------------------------------------------


def test_local_llm_compiles_llama_cpp_before_src_with_the_shared_flags() -> None:
    """llama.cpp's layer depends on its pinned version (and hash) and the flags only: it
    comes before `COPY src` and the rest of the lock, reads the flags the way `make install`
    does, and takes a wheel built with them from build/wheels/<key>/ when one loads."""
    lines = _venv_build("local-llm")
    installs = _pip_installs(lines)
    llama = [(i, args) for i, args in installs
             if _locks(args) == ["requirements/llama-cpp-python.txt"]]
    assert len(llama) == 1, installs
    at, args = llama[0]
    assert "--require-hashes" in args and "--no-deps" in args  # the sdist's hash, checked
    copy_src = next(i for i, line in enumerate(lines) if line.startswith("COPY src "))
    copy_lock = lines.index("COPY requirements/local-llm.txt ./requirements/")
    assert at < copy_lock < copy_src
    # Nothing from the build context reaches that layer but the build tools' lock, the
    # flags, llama-cpp-python's own lock and prebuilt wheels.
    assert [line for line in lines[:at] if line.startswith("COPY ")] == [
        "COPY requirements/build.txt ./requirements/",
        "COPY scripts/llama-cpp-flags.${TARGETARCH} ./scripts/",
        "COPY requirements/llama-cpp-python.txt ./requirements/",
        "COPY build/wheel[s] ./wheels/"]
    assert "!build/wheels" in (ROOT / ".dockerignore").read_text().splitlines() or \
        "!build/wheels/" in (ROOT / ".dockerignore").read_text().splitlines()
    # The version is pyproject.toml's pin (and the lock's: test_image_locks.py), given as a
    # build argument for the wheel's key.
    version = _pinned("local", "llama-cpp-python")
    assert f"ARG LLAMA_CPP_PYTHON_VERSION={version}" in lines[:at]
    assert _requirements(args) == []
    # The flags: the same pipeline over the same file as scripts/install-local-model.sh,
    # handed to the build as CMAKE_ARGS; the compiled wheel cached per version and flags.
    run = lines[at]
    assert run.startswith(f"RUN {PIP_CACHE_MOUNT} ")
    pipeline = re.compile(r"flags=\$\(([^)]*)\)")
    script = (ROOT / "scripts" / "install-local-model.sh").read_text()
    ours, make_install = pipeline.search(run), pipeline.search(script)
    assert ours and make_install and ours.group(1) == make_install.group(1)
    assert f'CMAKE_ARGS="$flags" {PIP_INTO_VENV}' in run
    # A wheel in the build context, found by the same key as scripts/install-local-model.sh's
    # cache, is installed and must load; else the branch that compiles runs.
    assert 'set -- wheels/"$key"/llama_cpp_python-"$LLAMA_CPP_PYTHON_VERSION"-*.whl' in run
    assert f'{PIP_INTO_VENV} --no-deps "$1" && /opt/venv/bin/python -c \'import llama_cpp\'' \
        in run
    assert re.search(r"--cache-dir \"/root/\.cache/pip/llama-cpp-\$key\"", run)
    assert re.search(r'key=\$\(printf .* "\$LLAMA_CPP_PYTHON_VERSION" "\$flags"', run)
    # Run that pipeline: the x86-64-v3 baseline, never native, no AVX-512, AMX or OpenMP.
    out = subprocess.run(["bash", "-o", "pipefail", "-c", ours.group(1)], cwd=ROOT,
                         capture_output=True, text=True, timeout=30, check=True,
                         env={"PATH": os.environ["PATH"], "TARGETARCH": "amd64"}).stdout
    flags = dict(f.removeprefix("-D").split("=", 1) for f in out.split())
    assert {k: flags.get(k) for k in ("GGML_NATIVE", "GGML_AVX", "GGML_AVX2", "GGML_FMA",
                                      "GGML_F16C", "GGML_OPENMP")} == {
        "GGML_NATIVE": "OFF", "GGML_AVX": "ON", "GGML_AVX2": "ON", "GGML_FMA": "ON",
        "GGML_F16C": "ON", "GGML_OPENMP": "OFF"}
    assert {k for k in flags if "AVX512" in k or "AMX" in k} >= {"GGML_AVX512", "GGML_AMX_TILE"}
    assert all(v == "OFF" for k, v in flags.items() if "AVX512" in k or "AMX" in k)
    # The flags file goes into the build context.
    assert "!scripts/llama-cpp-flags.*" in (ROOT / ".dockerignore").read_text().splitlines()
    # The rest of the lock may not compile llama.cpp again (binaries only); chatwax comes
    # after src, without dependencies.
    (lock_install,) = [a for i, a in installs if at < i < copy_src]
    assert _locks(lock_install) == ["requirements/local-llm.txt"]
    assert "--only-binary=:all:" in lock_install
    after = [a for i, a in installs if i > copy_src]
    assert after == [["--no-deps", "/tmp/dist/chatwax-*.whl"]]


@pytest.mark.parametrize(("image", "removed"), [
    ("dataflow", {"chatwax/dev", "chatwax/bench", "chatwax/local", "chatwax/frontend",
                  "kubernetes/aio"}),
    ("local-llm", {"chatwax/dev", "chatwax/bench", "chatwax/frontend", "kubernetes/aio"}),
    ("frontend", {"chatwax/dev", "chatwax/bench", "chatwax/local", "chatwax/dataflow",
                  "chatwax/llm", "chatwax/kube", "pandas/tests", "numpy/_core/tests"})])
def test_each_image_installs_its_lock_and_drops_the_code_it_never_runs(
        image: str, removed: set[str]) -> None:
    """Each image installs requirements/<image>.txt with hashes, binaries only, before its
    sources come in (an edit to src/ reinstalls nothing), then the chatwax wheel with
    --no-deps; then drops what it never runs: chatwax's dev tools and benchmarks always,
    the packages of the other images, and the libraries' test suites and unused parts."""
    lines = _venv_build(image)
    installs = _pip_installs(lines)
    copy_src = next(i for i, line in enumerate(lines) if line.startswith("COPY src "))
    locked = [(i, a) for i, a in installs if _locks(a) == [f"requirements/{image}.txt"]]
    assert len(locked) == 1 and locked[0][0] < copy_src
    assert {"--require-hashes", "--only-binary=:all:"} <= set(locked[0][1])
    assert [a for i, a in installs if i > copy_src] == [["--no-deps", "/tmp/dist/chatwax-*.whl"]]
    assert "/opt/tools/bin/pip wheel --no-deps --no-build-isolation -w /tmp/dist ." in \
        lines[-1]
    assert _removed(lines) == removed
    assert {f"chatwax/{p}" for p in NEVER_RUN} <= removed
    # The removal follows the install it trims, in the same RUN.
    assert "rm -r " in lines[-1] and _removed(lines[-1:]) == removed


def test_the_frontend_image_runs_the_installed_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    """The frontend image has no copy of frontend/: its entrypoint, `chatwax ui`, runs the
    installed chatwax/frontend/app.py (the pages resolve; unreachable NATS is reported, not
    raised)."""
    from streamlit.testing.v1 import AppTest

    import chatwax.frontend
    from chatwax.frontend import launch

    final = _lines(_stage("frontend"))
    assert not [line for line in final if line.startswith("COPY ") and "--from=" not in line]
    assert _exec_form(_stage("frontend"), "ENTRYPOINT")[:2] == ["chatwax", "ui"]
    assert Path(chatwax.frontend.__file__).parent / "app.py" == launch.APP
    assert launch.streamlit_command(8501, "0.0.0.0")[3:5] == ["run", str(launch.APP)]
    monkeypatch.setenv("NATS_URL", "nats://127.0.0.1:1")
    monkeypatch.setenv("CHATWAX_AUTH", "none")
    at = AppTest.from_file(str(launch.APP), default_timeout=60).run()
    assert not at.exception  # a page that does not resolve raises StreamlitPageNotFoundError
    # The chat page ran: it says NATS cannot be reached (or, with a client another test
    # left in Streamlit's resource cache, shows its input).
    assert any("Cannot reach NATS" in e.value for e in at.error) or at.chat_input


# -- skaffold's openai profile --------------------------------------------------------------


def _patched(doc: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """`doc` with skaffold's JSON patches applied (add, remove, replace, test)."""
    doc = deepcopy(doc)
    for op in ops:
        *parents, last = [p.replace("~1", "/").replace("~0", "~")
                          for p in op["path"].split("/")[1:]]
        node: Any = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        key: Any = (len(node) if last == "-" else int(last)) if isinstance(node, list) else last
        kind = op.get("op", "replace")
        if kind == "test":
            assert node[key] == op["value"], op
        elif kind == "remove":
            del node[key]  # a missing key or index fails, as in skaffold
        elif kind == "add" and isinstance(node, list):
            node.insert(key, op["value"])
        elif kind in ("add", "replace"):
            node[key] = op["value"]
        else:
            raise AssertionError(f"unsupported patch {op}")
    return doc


def test_the_openai_profile_builds_no_local_llm(chart: Chart) -> None:
    """`skaffold dev -p openai` builds the dataflow and the frontend only, sets no image
    value of the local model, and renders no local model; the default builds all three."""
    cfg = yaml.safe_load((ROOT / "skaffold.yaml").read_text())
    profile = next(p for p in cfg["profiles"] if p["name"] == "openai")
    assert set(profile) == {"name", "patches"}  # patches only: nothing else laid over
    openai = _patched(cfg, profile["patches"])
    builds = {(a["docker"]["dockerfile"], a["docker"].get("target")): a["image"]
              for a in openai["build"]["artifacts"]}
    assert set(builds) == {IMAGES["dataflow"], IMAGES["frontend"]}
    assert len(cfg["build"]["artifacts"]) == len(IMAGES)
    release = openai["deploy"]["helm"]["releases"][0]
    templates, values = release["setValueTemplates"], release["setValues"]
    assert not [k for k in [*templates, *values] if k.startswith("llm.local.image.")]
    assert values["llm.local.enabled"] is False
    # Every image variable left names an artifact the profile still builds.
    built = {re.sub(r"[-/.:]", "_", image) for image in builds.values()}
    used = {m for v in templates.values() for m in re.findall(r"IMAGE_(?:REPO|TAG)_(\w+)", v)}
    assert used == built
    # What skaffold would hand helm renders the two images and no local model.
    sets = [f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in values.items()]
    sets += [f"{k}=local/{k.split('.')[0]}" if k.endswith(".repository") else f"{k}=dev-1"
             for k in templates]
    docs = chart.render(*sets, values=tuple(ROOT / f for f in release["valuesFiles"]))
    assert docs.container("StatefulSet", "-dataflow")["image"] == "local/dataflow:dev-1"
    assert docs.container("Deployment", "-frontend")["image"] == "local/frontend:dev-1"
    assert not [d for d in docs.of_kind("Deployment") if d["metadata"]["name"].endswith("-llm")]


# -- the release workflow -------------------------------------------------------------------




def _run_step(step: dict[str, Any], ctx: dict[str, str], cwd: Path,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """A `run:` step as a GitHub-hosted runner runs it (bash -eo pipefail), its `env:` and
    `${{ }}` expanded from ctx."""
    step_env = {k: expand_expressions(str(v), ctx) for k, v in step.get("env", {}).items()}
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c",
         expand_expressions(step["run"], ctx)],
        cwd=cwd, capture_output=True, text=True, timeout=120,
        env={"PATH": os.environ["PATH"], "HOME": str(cwd), **step_env, **(env or {})})


def _ref_outputs(tag: str, owner: str, tmp_path: Path) -> tuple[int, dict[str, str], str]:
    """(exit code, outputs, stderr+stdout) of the `ref` job for a pushed tag and owner."""
    job = release_workflow()["jobs"]["ref"]
    (step,) = job["steps"]
    out = tmp_path / f"github-output-{tag}"
    out.write_text("")
    res = _run_step(step, {"github.repository_owner": owner}, tmp_path,
                    {"GITHUB_REF_NAME": tag, "GITHUB_OUTPUT": str(out)})
    steps = {f"steps.{step['id']}.outputs.{k}": v for k, v in
             (line.split("=", 1) for line in out.read_text().splitlines())}
    outputs = {k: expand_expressions(v, steps) for k, v in job["outputs"].items()} if steps else {}
    return res.returncode, outputs, res.stdout + res.stderr


@pytest.mark.parametrize("workflow", sorted((ROOT / ".github" / "workflows").glob("*.y*ml")),
                         ids=lambda p: p.name)
def test_actionlint_clean(tools: dict[str, str], workflow: Path) -> None:
    """actionlint, with shellcheck on the `run:` scripts, finds nothing."""
    res = subprocess.run([tools["actionlint"], f"-shellcheck={tools['shellcheck']}",
                          "-pyflakes=", "-oneline", str(workflow)], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


def test_actionlint_finds_what_it_should(tools: dict[str, str], tmp_path: Path) -> None:
    """actionlint runs for real: a misspelled permission, an unknown action input, an
    undefined matrix key, an injectable expression and an unquoted variable are reported."""
    bad = tmp_path / ".github" / "workflows" / "bad.yaml"
    bad.parent.mkdir(parents=True)
    bad.write_text("""\
on:
  push:
    tags: ["v*"]
permissions:
  packages: wrte
jobs:
  build:
    runs-on: ubuntu-24.04
    steps:
      - uses: actions/checkout@v4
        with:
          fetch-dept: 0
      - run: echo "${{ matrix.image }}"
      - run: echo "${{ github.event.head_commit.message }}"
      - run: helm push dist/chatwax-$VERSION.tgz
""")
    res = subprocess.run([tools["actionlint"], f"-shellcheck={tools['shellcheck']}",
                          "-pyflakes=", "-oneline", str(bad)], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 1, res.stdout + res.stderr
    found = res.stdout
    assert {"permissions", "action", "expression", "shellcheck"} <= set(
        re.findall(r"\[([a-z-]+)\]$", found, flags=re.M)), found
    assert '"wrte" is invalid' in found and 'input "fetch-dept" is not defined' in found
    assert 'property "image" is not defined' in found and "potentially untrusted" in found
    assert "SC2086" in found


def test_release_workflow_runs_on_tags_least_privileged_with_pinned_actions() -> None:
    """Only a pushed v* tag releases; the token may read the code, nothing more, unless a
    job asks (test_release.py: packages and signing only where needed); every action is
    pinned to a commit (its version in a comment)."""
    wf = release_workflow()
    assert wf["on"] == {"push": {"tags": ["v*"]}}
    assert wf["permissions"] == {"contents": "read"}
    uses = [s["uses"] for j in wf["jobs"].values() for s in j["steps"] if "uses" in s]
    pinned = re.findall(r"^\s+- uses: ([\w.-]+/[\w.-]+@[0-9a-f]{40}) # v\d+\.\d+\.\d+$",
                        WORKFLOW.read_text(), flags=re.M)
    assert uses and sorted(uses) == sorted(pinned)
    for job in wf["jobs"].values():
        for step in job["steps"]:
            if step.get("uses", "").startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False
            # Secrets reach commands through the environment or an action's input only.
            assert "secrets." not in step.get("run", "")


def test_release_version_comes_from_a_semver_tag(tmp_path: Path) -> None:
    """The `ref` job's script, run as the runner runs it: v1.2.3 gives version 1.2.3 and a
    lower-cased registry (ghcr.io refuses upper case); a tag helm would refuse fails."""
    code, outputs, _ = _ref_outputs("v1.2.3", "ChatWax", tmp_path)
    assert code == 0 and outputs == {"version": "1.2.3", "registry": "ghcr.io/chatwax"}
    code, outputs, _ = _ref_outputs("v2.0.0-rc.1", "chatwax", tmp_path)
    assert code == 0 and outputs["version"] == "2.0.0-rc.1"
    for tag in ("v1.2", "vnext", "v1.2.3.4"):
        code, outputs, log = _ref_outputs(tag, "chatwax", tmp_path)
        assert code != 0 and not outputs and "::error::" in log, tag


def test_release_pushes_what_skaffold_builds_to_the_charts_default_repositories(
        tmp_path: Path) -> None:
    """The workflow builds each Dockerfile/target skaffold builds, with the GitHub Actions
    cache (its amd64 leg here; both architectures: test_release.py), and pushes it, for owner
    chatwax, to the repository the chart's values default to, tagged (the manifests job's
    index) with the version the chart's appVersion will carry."""
    wf = release_workflow()
    code, ref, _ = _ref_outputs("v1.2.3", "chatwax", tmp_path)
    assert code == 0
    job = wf["jobs"]["images"]
    assert job["needs"] == "ref"
    (build,) = [s for s in job["steps"] if s.get("uses", "").startswith("docker/build-push")]
    assert any(s.get("uses", "").startswith("docker/setup-buildx-action@") for s in job["steps"])
    login = next(s for s in job["steps"] if s.get("uses", "").startswith("docker/login-action@"))
    assert login["with"]["registry"] == "ghcr.io"
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    index = next(s for s in wf["jobs"]["manifests"]["steps"] if s.get("id") == "index")
    pushed, built = {}, set()
    for entry in (e for e in job["strategy"]["matrix"]["include"] if "image" in e):
        ctx = {f"needs.ref.outputs.{k}": v for k, v in ref.items()}
        ctx |= {f"matrix.{k}": str(v) for k, v in entry.items()} | {"matrix.arch": "amd64"}
        ctx |= {"github.server_url": "https://github.com", "github.repository": "chatwax/chatwax"}
        step = {k: expand_expressions(str(v), ctx) for k, v in build["with"].items()}
        assert (step["context"], step["platforms"]) == (".", "linux/amd64")
        scope = f"scope={entry['image']}-amd64"
        assert step["cache-from"] == f"type=gha,{scope}"
        assert step["cache-to"] == f"type=gha,{scope},mode=max"
        assert "org.opencontainers.image.source=https://github.com/chatwax/chatwax" in \
            step["labels"].splitlines()  # links the package to the repository on ghcr.io
        built.add((step["file"], _last_stage(step["file"], step["target"] or None)))
        name = re.search(r"(?:^|,)name=([^,]+)", step["outputs"])  # pushed by digest
        assert name and expand_expressions(index["env"]["REPOSITORY"], ctx) == name.group(1)
        pushed[entry["image"]] = (name.group(1), expand_expressions(index["env"]["VERSION"], ctx))
    assert built == {(f, _last_stage(f, t)) for f, t in IMAGES.values()}
    skaffold = yaml.safe_load((ROOT / "skaffold.yaml").read_text())
    assert built == {(a["docker"]["dockerfile"], _last_stage(a["docker"]["dockerfile"],
                                                              a["docker"].get("target")))
                     for a in skaffold["build"]["artifacts"]}
    assert set(pushed) == set(IMAGES)
    for image, (repository, tag) in pushed.items():
        image_values: dict[str, Any] = values
        for part in [*VALUES_KEY[image].split("."), "image"]:
            image_values = image_values[part]
        assert repository == image_values["repository"] == f"ghcr.io/chatwax/chatwax-{image}"
        assert tag == "1.2.3" and image_values["tag"] == ""  # "" = the chart's appVersion


def test_release_packages_the_chart_with_the_tags_version_and_pushes_it_to_ghcr(
        chart: Chart, tmp_path: Path) -> None:
    """The chart job's scripts, run with the real helm (`helm package`) and a recording
    stand-in for what needs the registry: the chart's version and appVersion are the tag's,
    so its pods run the images just pushed; it goes to oci://ghcr.io/chatwax/charts."""
    wf = release_workflow()
    code, ref, _ = _ref_outputs("v1.2.3", "ChatWax", tmp_path)
    assert code == 0
    job = wf["jobs"]["chart"]
    assert set(job["needs"]) == {"ref", "manifests"}  # no chart before its images
    setup = next(s for s in job["steps"] if s.get("uses", "").startswith("Azure/setup-helm@"))
    assert re.fullmatch(r"v[34]\.\d+\.\d+", setup["with"]["version"])
    work = tmp_path / "checkout"
    work.mkdir()
    (work / "charts").symlink_to(ROOT / "charts", target_is_directory=True)
    bin_dir, log = tmp_path / "bin", tmp_path / "helm.log"
    bin_dir.mkdir()
    (bin_dir / "helm").write_text(f"""#!/bin/sh
printf '%s\\n' "$*" >> {shlex.quote(str(log))}
[ "$1" = package ] && exec {shlex.quote(chart.tools["helm3"])} "$@"
[ "$1" = push ] && echo "Digest: sha256:{"0" * 64}" >&2
cat >> {shlex.quote(str(tmp_path / "stdin"))}
""")
    (bin_dir / "helm").chmod(0o755)
    ctx = {f"needs.ref.outputs.{k}": v for k, v in ref.items()}
    ctx |= {"github.actor": "octocat", "secrets.GITHUB_TOKEN": "token-sentinel"}
    for step in job["steps"]:
        if "run" in step:
            res = _run_step(step, ctx, work, {"PATH": f"{bin_dir}:{os.environ['PATH']}",
                                              "GITHUB_OUTPUT": str(tmp_path / "output")})
            assert res.returncode == 0, res.stdout + res.stderr
    calls = [line.split() for line in log.read_text().splitlines()]
    assert [c[0] for c in calls] == ["package", "registry", "push"]
    assert calls[1] == ["registry", "login", "ghcr.io", "--username", "octocat",
                        "--password-stdin"]
    assert (tmp_path / "stdin").read_text() == "token-sentinel"  # never on a command line
    assert calls[2] == ["push", "dist/chatwax-1.2.3.tgz", "oci://ghcr.io/chatwax/charts"]
    package = work / "dist" / "chatwax-1.2.3.tgz"
    with tarfile.open(package) as tgz:
        member = tgz.extractfile("chatwax/Chart.yaml")
        assert member
        meta = yaml.safe_load(member.read())
    assert (meta["version"], meta["appVersion"]) == ("1.2.3", "1.2.3")
    # The packaged chart's pods run the images the images job pushed for this tag.
    res = chart.helm("3", "template", "chatwax", str(package), "--set", "llm.local.enabled=true")
    assert res.returncode == 0, res.stderr
    images = {c["image"] for d in yaml.safe_load_all(res.stdout)
              if d and d["kind"] in ("StatefulSet", "Deployment")
              for c in d["spec"]["template"]["spec"]["containers"]}
    assert {f"ghcr.io/chatwax/chatwax-{i}:1.2.3" for i in IMAGES} <= images
