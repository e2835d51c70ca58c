"""Dockerfiles, skaffold.yaml, the release workflow and kind-config.yaml agree with each
other and the chart; what the images install is what their Dockerfiles say."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import tarfile
import tomllib
from copy import deepcopy
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.conftest import CHART, IMAGES, ROOT, VALUES_KEY, Chart
from tests.support.wheels import install_wheel

COMPONENTS = ("dataflow", "frontend")
DOCKERFILES = [ROOT / f"Dockerfile.{c}" for c in COMPONENTS]
WORKFLOW = ROOT / ".github" / "workflows" / "release.yaml"
FLAGS = ROOT / "scripts" / "llama-cpp-flags"
PIP_CACHE_MOUNT = "--mount=type=cache,target=/root/.cache/pip"
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
    """(line index, arguments) of every `pip install` in these instructions."""
    out = []
    for i, line in enumerate(lines):
        for part in line.split("&&"):
            if "/opt/venv/bin/pip install" in part:
                out.append((i, shlex.split(part.split("/opt/venv/bin/pip install", 1)[1])))
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


def _removed(lines: list[str]) -> tuple[set[str], set[str]]:
    """(chatwax subpackages an `rm -r` removes from the venv, site-packages paths used)."""
    names, sites = set(), set()
    for line in lines:
        if line.startswith("RUN rm -r "):
            for site, name in re.findall(r"(/opt/venv/lib/python[\d.]+/site-packages)/chatwax/"
                                         r"(\w+)", line):
                sites.add(site)
                names.add(name)
    return names, sites


def _site_packages(dockerfile: Path) -> str:
    """The venv's site-packages for the Python of the Dockerfile's pinned base image."""
    base = next(b for _, b, _ in _stages(dockerfile) if b.startswith("python:"))
    minor = re.fullmatch(r"python:(3\.\d+)\.\d+-slim-\w+", base)
    assert minor, base
    return f"/opt/venv/lib/python{minor.group(1)}/site-packages"


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
def test_dockerfiles_are_pinned_multi_stage_and_copy_only_what_is_allowed(
        dockerfile: Path) -> None:
    text = dockerfile.read_text()
    seen: list[str] = []
    for name, base, _ in _stages(dockerfile):
        # Python 3.12: bytewax 0.21.1 has no wheels for 3.13; other bases are earlier stages.
        assert re.fullmatch(r"python:3\.12\.\d+-slim-\w+", base) or base in seen, base
        seen.append(name)
    # pip's cache is a BuildKit cache mount on every install (fast rebuilds, in no layer).
    assert "--no-cache-dir" not in text and "PIP_NO_CACHE_DIR" not in text
    installs = [line for _, _, body in _stages(dockerfile) for line in _lines(body)
                if "pip install" in line]
    assert installs and all(line.startswith(f"RUN {PIP_CACHE_MOUNT} ") for line in installs)
    # Everything COPY takes from the context survives .dockerignore.
    allowed = {line[1:].rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.startswith("!")}
    for copy in _instructions(text, "COPY"):
        if copy.startswith("--from"):
            continue
        for item in copy.split()[:-1]:
            assert item.rstrip("/") in allowed and (ROOT / item).exists(), item


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
    """llama.cpp's layer depends on its pinned version and scripts/llama-cpp-flags only: it
    comes before `COPY src` and reads the flags the way `make install` does."""
    lines = _venv_build("local-llm")
    installs = _pip_installs(lines)
    llama = [(i, args) for i, args in installs if any("llama-cpp-python==" in a for a in args)]
    assert len(llama) == 1, installs
    at, args = llama[0]
    copy_src = next(i for i, line in enumerate(lines) if line.startswith("COPY src "))
    assert at < copy_src
    # Nothing from the build context reaches that layer but the flags file.
    assert [line for line in lines[:at] if line.startswith("COPY ")] == [
        "COPY scripts/llama-cpp-flags ./scripts/"]
    # The version is pyproject.toml's pin, given as a build argument.
    version = _pinned("local", "llama-cpp-python")
    assert f"ARG LLAMA_CPP_PYTHON_VERSION={version}" in lines[:at]
    assert _requirements(args) == ["llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION"]
    # The flags: the same pipeline over the same file as scripts/install-local-model.sh,
    # handed to the build as CMAKE_ARGS; the compiled wheel cached per version and flags.
    run = lines[at]
    assert run.startswith(f"RUN {PIP_CACHE_MOUNT} ")
    pipeline = re.compile(r"flags=\$\(([^)]*)\)")
    script = (ROOT / "scripts" / "install-local-model.sh").read_text()
    ours, make_install = pipeline.search(run), pipeline.search(script)
    assert ours and make_install and ours.group(1) == make_install.group(1)
    assert 'CMAKE_ARGS="$flags" /opt/venv/bin/pip install' in run
    assert re.search(r"--cache-dir \"/root/\.cache/pip/llama-cpp-\$key\"", run)
    assert re.search(r'key=\$\(printf .* "\$LLAMA_CPP_PYTHON_VERSION" "\$flags"', run)
    # Run that pipeline: the x86-64-v3 baseline, never native, no AVX-512, AMX or OpenMP.
    out = subprocess.run(["bash", "-o", "pipefail", "-c", ours.group(1)], cwd=ROOT,
                         capture_output=True, text=True, timeout=30, check=True).stdout
    flags = dict(f.removeprefix("-D").split("=", 1) for f in out.split())
    assert {k: flags.get(k) for k in ("GGML_NATIVE", "GGML_AVX", "GGML_AVX2", "GGML_FMA",
                                      "GGML_F16C", "GGML_OPENMP")} == {
        "GGML_NATIVE": "OFF", "GGML_AVX": "ON", "GGML_AVX2": "ON", "GGML_FMA": "ON",
        "GGML_F16C": "ON", "GGML_OPENMP": "OFF"}
    assert {k for k in flags if "AVX512" in k or "AMX" in k} >= {"GGML_AVX512", "GGML_AMX_TILE"}
    assert all(v == "OFF" for k, v in flags.items() if "AVX512" in k or "AMX" in k)
    # The flags file goes into the build context.
    assert "!scripts/llama-cpp-flags" in (ROOT / ".dockerignore").read_text().splitlines()
    # The package and its local extra come after src, and may not compile llama.cpp again
    # (a version other than the one built fails instead of building without the flags).
    after = [(i, a) for i, a in installs if i > copy_src]
    assert [_requirements(a) for _, a in after] == [[".[local]"]]
    assert "--only-binary=llama-cpp-python" in after[0][1]


@pytest.mark.parametrize(("image", "extra", "kept"), [
    ("dataflow", None, set()), ("local-llm", "local", {"local"}),
    ("frontend", "ui", {"frontend"})])
def test_each_image_installs_its_extra_and_drops_the_code_it_never_runs(
        image: str, extra: str | None, kept: set[str]) -> None:
    """dataflow: `pip install .` (no extra) without dev, bench, local, frontend; local-llm:
    `.[local]` without dev, bench, frontend; frontend: `.[ui]` without dev, bench, local."""
    lines = _venv_build(image)
    package = [_requirements(a) for _, a in _pip_installs(lines)
               if any(r.startswith(".") for r in _requirements(a))]
    assert package == [["." if extra is None else f".[{extra}]"]]
    removed, sites = _removed(lines)
    assert removed == {"dev", "bench", "local", "frontend"} - kept
    assert removed >= NEVER_RUN
    # The paths are the venv's for the base image's Python (a wrong one fails the build).
    assert sites == {_site_packages(ROOT / IMAGES[image][0])}
    # The removal follows the install it trims.
    install_at = max(i for i, _ in _pip_installs(lines))
    assert all(i > install_at for i, line in enumerate(lines) if line.startswith("RUN rm -r "))


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


def _workflow() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(WORKFLOW.read_text())
    if True in doc:  # YAML 1.1 reads the key `on` as true
        doc["on"] = doc.pop(True)
    return doc


def _expand(text: str, ctx: dict[str, str]) -> str:
    """`${{ expr }}` replaced from ctx; an expression ctx lacks fails the test."""
    return re.sub(r"\$\{\{\s*(.+?)\s*\}\}", lambda m: ctx[m.group(1)], text)


def _run_step(step: dict[str, Any], ctx: dict[str, str], cwd: Path,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """A `run:` step as a GitHub-hosted runner runs it (bash -eo pipefail), its `env:` and
    `${{ }}` expanded from ctx."""
    step_env = {k: _expand(str(v), ctx) for k, v in step.get("env", {}).items()}
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", _expand(step["run"], ctx)],
        cwd=cwd, capture_output=True, text=True, timeout=120,
        env={"PATH": os.environ["PATH"], "HOME": str(cwd), **step_env, **(env or {})})


def _ref_outputs(tag: str, owner: str, tmp_path: Path) -> tuple[int, dict[str, str], str]:
    """(exit code, outputs, stderr+stdout) of the `ref` job for a pushed tag and owner."""
    job = _workflow()["jobs"]["ref"]
    (step,) = job["steps"]
    out = tmp_path / f"github-output-{tag}"
    out.write_text("")
    res = _run_step(step, {"github.repository_owner": owner}, tmp_path,
                    {"GITHUB_REF_NAME": tag, "GITHUB_OUTPUT": str(out)})
    steps = {f"steps.{step['id']}.outputs.{k}": v for k, v in
             (line.split("=", 1) for line in out.read_text().splitlines())}
    outputs = {k: _expand(v, steps) for k, v in job["outputs"].items()} if steps else {}
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
    """Only a pushed v* tag releases; the token may read the code and write packages,
    nothing more; every action is pinned to a commit (its version in a comment)."""
    wf = _workflow()
    assert wf["on"] == {"push": {"tags": ["v*"]}}
    assert wf["permissions"] == {"contents": "read", "packages": "write"}
    assert not [j for j in wf["jobs"].values() if "permissions" in j]
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
    """The workflow builds each Dockerfile/target skaffold builds, for linux/amd64 with the
    GitHub Actions cache, and pushes it, for owner chatwax, to the repository the chart's
    values default to, tagged with the version the chart's appVersion will carry."""
    wf = _workflow()
    code, ref, _ = _ref_outputs("v1.2.3", "chatwax", tmp_path)
    assert code == 0
    job = wf["jobs"]["images"]
    assert job["needs"] == "ref"
    (build,) = [s for s in job["steps"] if s.get("uses", "").startswith("docker/build-push")]
    assert any(s.get("uses", "").startswith("docker/setup-buildx-action@") for s in job["steps"])
    login = next(s for s in job["steps"] if s.get("uses", "").startswith("docker/login-action@"))
    assert login["with"]["registry"] == "ghcr.io"
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    pushed, built = {}, set()
    for entry in job["strategy"]["matrix"]["include"]:
        ctx = {f"needs.ref.outputs.{k}": v for k, v in ref.items()}
        ctx |= {f"matrix.{k}": str(v) for k, v in entry.items()}
        ctx |= {"github.server_url": "https://github.com", "github.repository": "chatwax/chatwax"}
        step = {k: _expand(str(v), ctx) for k, v in build["with"].items()}
        assert (step["context"], step["platforms"], step["push"]) == (".", "linux/amd64", "True")
        scope = f"scope={entry['image']}"
        assert step["cache-from"] == f"type=gha,{scope}"
        assert step["cache-to"] == f"type=gha,{scope},mode=max"
        assert "org.opencontainers.image.source=https://github.com/chatwax/chatwax" in \
            step["labels"].splitlines()  # links the package to the repository on ghcr.io
        built.add((step["file"], _last_stage(step["file"], step["target"] or None)))
        repository, tag = step["tags"].rsplit(":", 1)
        pushed[entry["image"]] = (repository, tag)
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
    wf = _workflow()
    code, ref, _ = _ref_outputs("v1.2.3", "ChatWax", tmp_path)
    assert code == 0
    job = wf["jobs"]["chart"]
    assert set(job["needs"]) == {"ref", "images"}  # no chart before its images
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
cat >> {shlex.quote(str(tmp_path / "stdin"))}
""")
    (bin_dir / "helm").chmod(0o755)
    ctx = {f"needs.ref.outputs.{k}": v for k, v in ref.items()}
    ctx |= {"github.actor": "octocat", "secrets.GITHUB_TOKEN": "token-sentinel"}
    for step in job["steps"]:
        if "run" in step:
            res = _run_step(step, ctx, work, {"PATH": f"{bin_dir}:{os.environ['PATH']}"})
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


# -- the dataflow image's install, without Docker -------------------------------------------


def _run(*cmd: str | Path, timeout: float = 300, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                          timeout=timeout, **kw)


@pytest.mark.integration
def test_dataflow_image_install_without_docker(tmp_path: Path) -> None:
    """What the dataflow image installs, reproduced in a fresh virtualenv: the files its
    Dockerfile copies built into a wheel, installed as its `pip install` says (no extra),
    then its removals applied (both parsed from the Dockerfile). No Streamlit, no dev,
    bench, local or frontend code; `chatwax dataflow` and its process module load."""
    lines = _venv_build("dataflow")
    installs = _pip_installs(lines)
    assert [_requirements(a) for _, a in installs] == [["."]]
    removed, _ = _removed(lines)
    # The build context: what the stage copies from it, __pycache__ left out as by
    # .dockerignore (the frontend link inside src/ needs frontend/ beside it, as there).
    context = tmp_path / "context"
    context.mkdir()
    for line in lines:
        if line.startswith("COPY ") and "--from=" not in line:
            *sources, dest = line.split()[1:]
            for source in sources:
                assert dest in ("./", f"./{source}"), line  # same place as in the repo
                src = ROOT / source
                if src.is_dir():
                    shutil.copytree(src, context / source, symlinks=True,
                                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
                else:
                    shutil.copy2(src, context / source)
    venv = install_wheel(context, tmp_path)  # no extra, as the Dockerfile installs it
    python = venv / "bin" / "python"
    site = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))")
                .stdout.strip())
    for name in removed:  # `rm -r` fails on a missing path, so must this
        shutil.rmtree(site / "chatwax" / name)

    no_streamlit = _run(python, "-c", "import streamlit")
    assert no_streamlit.returncode != 0 and "ModuleNotFoundError" in no_streamlit.stderr
    specs = _run(python, "-c", "import importlib.util as u, json; print(json.dumps("
                 "{n: u.find_spec(f'chatwax.{n}') is not None for n in "
                 "('dev', 'bench', 'local', 'frontend', 'dataflow', 'client', 'llm', 'core')}))")
    assert json.loads(specs.stdout) == {"dev": False, "bench": False, "local": False,
                                        "frontend": False, "dataflow": True, "client": True,
                                        "llm": True, "core": True}, specs.stderr
    helped = _run(venv / "bin" / "chatwax", "dataflow", "--help", timeout=60)
    assert helped.returncode == 0 and "usage: chatwax dataflow" in helped.stdout, helped.stderr
    top = _run(venv / "bin" / "chatwax", "--help", timeout=60)
    assert top.returncode == 0 and "local-llm" not in top.stdout, top.stderr
    loaded = _run(python, "-c", "import chatwax.dataflow.process", timeout=60)
    assert loaded.returncode == 0, loaded.stderr
    check = _run(python, "-m", "pip", "check", "--disable-pip-version-check")
    assert check.returncode == 0, check.stdout
    listed = _run(python, "-m", "pip", "list", "--format=json", "--disable-pip-version-check")
    dists = sorted(d["name"] for d in json.loads(listed.stdout))
    print(f"\ndataflow image install: {len(dists)} distributions (pip list, pip itself "
          f"included): {', '.join(dists)}")
