"""The images' locks (requirements/*.txt, written by scripts/lock-images.sh) match
pyproject.toml, checked offline: a lock that missed a dependency, pinned a version its
specifier refuses or kept a package nothing needs any more fails here, not in an image build.
Nothing is resolved again (a new release on PyPI never turns this red).

And the frontend image, which installs no Bytewax, never imports it: the code it keeps
imports only what its lock installs, and the pages and the command run with everything else
made unimportable."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import PackageNotFoundError, distribution, packages_distributions
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).parents[2]
REQUIREMENTS = ROOT / "requirements"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
IMAGES = PROJECT["tool"]["chatwax"]["images"]
# Where the images run: Python 3.11 (Debian 12's) and 3.12 (the published base) on linux
# amd64 and arm64.
TARGETS = [
    {"python_version": v, "python_full_version": f"{v}.0", "sys_platform": "linux",
     "platform_system": "Linux", "os_name": "posix", "platform_machine": m,
     "implementation_name": "cpython", "platform_python_implementation": "CPython"}
    for v in ("3.11", "3.12") for m in ("x86_64", "aarch64")]
# The chatwax packages the frontend image keeps (Dockerfile.frontend removes the others).
FRONTEND_KEEPS = {"cli", "core", "client", "frontend"}
DROPPED = {"dev", "bench", "local", "dataflow", "llm", "kube"}


@dataclass
class Entry:
    """One pinned package of a lock (one line; a package can have one per marker)."""

    name: str
    version: str
    marker: Marker | None
    hashes: list[str]
    via: set[str] = field(default_factory=set)

    def applies(self, env: dict[str, str]) -> bool:
        return self.marker is None or self.marker.evaluate(env)


def _parse_lock(path: Path) -> list[Entry]:
    """The entries of a uv/pip-tools lock: `name==version [; marker] \\`, its `--hash=`
    lines and its `# via` annotation."""
    entries: list[Entry] = []
    in_via = False
    for line in path.read_text().splitlines():
        if m := re.match(r"^([A-Za-z0-9][\w.-]*)==([^\s;]+)\s*(?:;\s*(.*?))?\s*\\?$", line):
            marker = m.group(3)
            entries.append(Entry(canonicalize_name(m.group(1)), m.group(2),
                                 Marker(marker) if marker else None, []))
            in_via = False
        elif m := re.match(r"^\s+--hash=(sha256:[0-9a-f]{64})\s*\\?$", line):
            entries[-1].hashes.append(m.group(1))
        elif m := re.match(r"^\s+# via\s*(.*)$", line):
            in_via = True
            if m.group(1):
                entries[-1].via.add(m.group(1).strip())
        elif in_via and (m := re.match(r"^\s+#\s+(\S.*)$", line)):
            entries[-1].via.add(m.group(1).strip())
        elif line.strip() and not line.startswith("#"):
            raise AssertionError(f"{path.name}: a line no lock has: {line!r}")
    return entries


def _of_extra(extra: str) -> list[str]:
    """An extra's requirements, chatwax[...] self-references expanded."""
    out = []
    for spec in PROJECT["project"]["optional-dependencies"][extra]:
        req = Requirement(spec)
        if req.name == "chatwax":
            for inner in sorted(req.extras):
                out += _of_extra(inner)
        else:
            out.append(spec)
    return out


def _image_requirements(image: str) -> list[str]:
    """What pyproject.toml says the image installs: the base dependencies less `without`,
    plus its extras."""
    cfg = IMAGES[image]
    without = {canonicalize_name(w) for w in cfg["without"]}
    deps = PROJECT["project"]["dependencies"]
    assert without <= {canonicalize_name(Requirement(d).name) for d in deps}, image
    specs = [d for d in deps if canonicalize_name(Requirement(d).name) not in without]
    for extra in cfg["extras"]:
        specs += _of_extra(extra)
    return specs


def _in_file(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines()
            if line.strip() and not line.startswith("#")]


def _pick(entries: list[Entry], name: str, env: dict[str, str]) -> Entry | None:
    found = [e for e in entries if e.name == name and e.applies(env)]
    assert len(found) <= 1, (name, env["python_version"], found)
    return found[0] if found else None


@cache
def _installed_requires(name: str, version: str) -> list[str] | None:
    """The requirements `name` declares, from this environment's install of that very
    version (None where it has another version or none: then the lock's own `via` says)."""
    try:
        dist = distribution(name)
    except PackageNotFoundError:
        return None
    if dist.version != version:
        return None
    return dist.requires or []


def _check_lock(lock: Path, roots: list[str]) -> list[str]:
    """What is wrong with `lock` for these root requirements, on every target."""
    entries = _parse_lock(lock)
    problems = [f"{e.name}=={e.version} has no hash" for e in entries if not e.hashes]
    reached: set[tuple[str, str]] = set()
    for env in TARGETS:
        where = f"(Python {env['python_version']}, {env['platform_machine']})"
        todo = [(Requirement(r), f"-r {lock.stem}.in") for r in roots]
        seen: set[tuple[str, frozenset[str]]] = set()
        while todo:
            req, parent = todo.pop()
            name = canonicalize_name(req.name)
            entry = _pick(entries, name, env)
            if entry is None:
                problems.append(f"{name} ({req}, for {parent}) is not in the lock {where}")
                continue
            if not req.specifier.contains(entry.version, prereleases=True):
                problems.append(f"{name}=={entry.version} does not satisfy {req} "
                                f"(for {parent}) {where}")
            key = (name, frozenset(req.extras))
            if key in seen:
                continue
            seen.add(key)
            reached.add((entry.name, entry.version))
            declared = _installed_requires(name, entry.version)
            if declared is None:  # not installed here: follow the lock's own annotations
                todo += [(Requirement(e.name), name) for e in entries
                         if name in {canonicalize_name(re.split(r"[\[\s]", v)[0])
                                     for v in e.via}
                         and e.applies(env)]
                continue
            for spec in declared:
                sub = Requirement(spec)
                envs = [{**env, "extra": x} for x in sorted(req.extras)] or [{**env, "extra": ""}]
                if sub.marker is None or any(sub.marker.evaluate(e) for e in envs):
                    todo.append((sub, f"{name}[{','.join(sorted(req.extras))}]"))
    # Packages no target needs: left over from an earlier lock, unless only another
    # platform's (Windows' colorama) or Python's.
    stale = [f"{e.name}=={e.version}" for e in entries if (e.name, e.version) not in reached
             and any(e.applies(env) for env in TARGETS)]
    problems += [f"{s} is in the lock but nothing requires it" for s in stale]
    return problems


@pytest.mark.parametrize("image", [*IMAGES, "build"])
def test_the_lock_inputs_are_pyprojects(image: str) -> None:
    """requirements/<image>.in is what pyproject.toml says now (dependencies, extras,
    [tool.chatwax.images], [build-system]): else scripts/lock-images.sh was not run."""
    wanted = (PROJECT["build-system"]["requires"] if image == "build"
              else _image_requirements(image))
    assert _in_file(REQUIREMENTS / f"{image}.in") == wanted, \
        "pyproject.toml changed: run scripts/lock-images.sh"


@pytest.mark.parametrize("image", [*IMAGES, "build"])
def test_each_lock_pins_its_inputs_with_hashes_and_is_closed(image: str) -> None:
    """Every requirement of the image is pinned, with hashes, at a version its specifier
    allows, on Python 3.11 and 3.12 on linux amd64 and arm64; so is every requirement of a
    pinned package (read from this environment where it has the same version); nothing else
    is pinned."""
    lock = REQUIREMENTS / f"{image}.txt"
    problems = _check_lock(lock, _in_file(lock.with_suffix(".in")))
    assert not problems, "\n".join(problems) + "\n(run scripts/lock-images.sh)"


def test_the_check_finds_what_it_should(tmp_path: Path) -> None:
    """The check runs for real: a missing requirement of a pinned package, a version its
    specifier refuses, a package nothing needs and one without hashes are reported."""
    lock = (REQUIREMENTS / "frontend.txt").read_text()
    # streamlit requires altair; bump pandas below pyproject's >=2.2; add an orphan.
    broken = re.sub(r"^altair==.*?(?=^\S)", "", lock, flags=re.M | re.S)
    broken = re.sub(r"^pandas==\S+", "pandas==2.1.0", broken, flags=re.M)
    broken += "orphan-package==1.0 \\\n    --hash=sha256:" + "0" * 64 + "\nnohash==1.0\n"
    (tmp_path / "frontend.in").write_text((REQUIREMENTS / "frontend.in").read_text())
    (tmp_path / "frontend.txt").write_text(broken)
    problems = "\n".join(_check_lock(tmp_path / "frontend.txt",
                                     _in_file(tmp_path / "frontend.in")))
    assert "altair (" in problems and "is not in the lock" in problems
    assert "pandas==2.1.0 does not satisfy pandas>=2.2" in problems
    assert "orphan-package==1.0 is in the lock but nothing requires it" in problems
    assert "nohash==1.0 has no hash" in problems
    # The real lock has none of these.
    assert not _check_lock(REQUIREMENTS / "frontend.txt", _in_file(REQUIREMENTS /
                                                                   "frontend.in"))


def test_the_llama_cpp_lock_is_the_local_llm_locks_entry() -> None:
    """The local-llm image compiles llama-cpp-python from requirements/llama-cpp-python.txt
    (its own layer): the same pin and hashes as the local-llm lock, pyproject's version."""
    (alone,) = _parse_lock(REQUIREMENTS / "llama-cpp-python.txt")
    (entry,) = [e for e in _parse_lock(REQUIREMENTS / "local-llm.txt")
                if e.name == "llama-cpp-python"]
    assert (alone.version, alone.hashes) == (entry.version, entry.hashes)
    assert f"llama-cpp-python=={entry.version}" in PROJECT["project"][
        "optional-dependencies"]["local"]


def test_the_frontend_lock_has_no_bytewax_and_the_dataflow_lock_no_streamlit() -> None:
    frontend = {e.name for e in _parse_lock(REQUIREMENTS / "frontend.txt")}
    dataflow = {e.name for e in _parse_lock(REQUIREMENTS / "dataflow.txt")}
    assert "streamlit" in frontend and not {"bytewax", "openai", "kubernetes"} & frontend
    assert "bytewax" in dataflow and not {"streamlit", "pandas", "pyarrow"} & dataflow


# -- what the frontend image's code imports ------------------------------------------------


def _frontend_files() -> list[Path]:
    src = ROOT / "src" / "chatwax"
    files = [*src.glob("*.py")]
    for package in sorted(FRONTEND_KEEPS - {"frontend"}):
        files += sorted((src / package).rglob("*.py"))
    return files + sorted((ROOT / "frontend").rglob("*.py"))  # src/chatwax/frontend links


def _module_level(tree: ast.Module) -> set[ast.AST]:
    """The import nodes run when the module is imported (not inside a function)."""
    out: set[ast.AST] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                out.add(child)
            visit(child)

    visit(tree)
    return out


def _frontend_distributions() -> set[str]:
    return {e.name for e in _parse_lock(REQUIREMENTS / "frontend.txt")}


def test_the_frontend_images_code_imports_only_what_its_lock_installs() -> None:
    """Every library the kept packages (chatwax.cli, core, client, frontend) import comes
    with the frontend lock; the dropped packages (the dataflow, LLM, Kubernetes ...) are
    imported only inside a function of chatwax.cli, the command that names them."""
    locked = _frontend_distributions()
    owners = packages_distributions()
    problems = []
    for path in _frontend_files():
        tree = ast.parse(path.read_text(), str(path))
        top_level = _module_level(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                parts = name.split(".")
                where = f"{path.relative_to(ROOT)}:{node.lineno} {name}"
                if parts[0] == "chatwax":
                    if len(parts) > 1 and parts[1] in DROPPED and (
                            node in top_level or "cli" not in path.parts):
                        problems.append(f"{where}: a package the frontend image drops")
                elif parts[0] not in sys.stdlib_module_names:
                    dists = {canonicalize_name(d) for d in owners.get(parts[0], [])}
                    if not dists & locked:
                        problems.append(f"{where}: from {dists or '?'}, not in the lock")
    assert not problems, "\n".join(problems)


_BLOCKED_RUN = r"""
import json, sys

# As if not installed: `import` raises ModuleNotFoundError, importlib.util.find_spec
# answers None (what chatwax.cli asks of the packages the images drop).
for name in json.loads(sys.argv[1]):
    sys.modules[name] = None
import os

os.environ.update(NATS_URL="nats://127.0.0.1:1", CHATWAX_AUTH="none")
from chatwax.cli import build_parser
from chatwax.frontend import launch, shared  # the pages: run by AppTest below
from streamlit.testing.v1 import AppTest

build_parser().parse_args(["ui", "--port", "8501"])
commands = set(build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
assert {"ui", "ask", "export"} <= commands and not {"dataflow", "kube"} & commands, commands
at = AppTest.from_file(str(launch.APP), default_timeout=60).run()
assert not at.exception, at.exception
print(json.dumps(sorted(name for name, module in sys.modules.items() if module is not None)))
"""


def test_the_frontend_runs_with_only_its_lock_importable(tmp_path: Path) -> None:
    """The command's parser and the pages, run in a Python where every library outside the
    frontend lock (Bytewax, openai, kubernetes, the test tools ...) and every chatwax package
    the image drops is unimportable: nothing tries to load them."""
    locked = _frontend_distributions()
    blocked = sorted({module for module, dists in packages_distributions().items()
                      if module.isidentifier() and module not in sys.stdlib_module_names
                      and not {canonicalize_name(d) for d in dists} & locked
                      and "chatwax" not in {canonicalize_name(d) for d in dists}}
                     | {f"chatwax.{p}" for p in DROPPED})
    assert {"bytewax", "openai", "kubernetes", "chatwax.dataflow", "chatwax.llm"} <= set(blocked)
    res = subprocess.run([sys.executable, "-c", _BLOCKED_RUN, json.dumps(blocked)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    loaded = set(json.loads(res.stdout.strip().splitlines()[-1]))
    assert {"streamlit", "nats", "chatwax.frontend.launch", "chatwax.client.chat"} <= loaded
    assert not set(blocked) & loaded
