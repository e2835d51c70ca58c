"""Every module chatwax imports is a dependency pyproject.toml declares: one that only
arrives through another package's requirements can disappear with that package's next
release, and the images would break on a rebuild."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).parents[2]
# src/chatwax/frontend links to frontend/: read the pages where they are.
SOURCES = [*sorted((ROOT / "src" / "chatwax").rglob("*.py")),
           *sorted((ROOT / "frontend").rglob("*.py"))]


def _imported_top_levels() -> dict[str, set[str]]:
    """Top-level module -> the files importing it (absolute imports outside chatwax)."""
    found: dict[str, set[str]] = {}
    for path in SOURCES:
        if any(p.is_symlink() for p in path.parents):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0
                     and node.module else [])
            for name in names:
                top = name.split(".")[0]
                if top != "chatwax" and top not in sys.stdlib_module_names:
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = [*project["dependencies"],
             *(d for deps in project["optional-dependencies"].values() for d in deps)]
    return {_normal(re.split(r"[\[<>=!~;\s]", s, maxsplit=1)[0]) for s in specs}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_imported_module_is_a_declared_dependency() -> None:
    distributions = packages_distributions()
    declared = _declared()
    missing = {}
    for module, files in _imported_top_levels().items():
        # A module of an extra this install lacks (the bench's matplotlib in the test
        # install) is known by its own name only.
        owners = {_normal(d) for d in distributions.get(module, [])} or {_normal(module)}
        if not owners & declared:
            missing[module] = (sorted(owners), sorted(files))
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


def test_the_check_sees_the_imports_it_must() -> None:
    """The scan finds the dependencies the code is built on (a scan that found nothing
    would pass the test above)."""
    found = _imported_top_levels()
    assert {"nats", "bytewax", "openai", "aiohttp", "backoff", "kubernetes",
            "prometheus_client", "streamlit"} <= set(found)


def test_every_package_is_in_the_wheel() -> None:
    """setuptools takes the packages pyproject.toml lists, no more: a new subpackage left
    out is missing from the wheel and every image (chatwax.core.wire once was)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(project["tool"]["setuptools"]["packages"])
    src = ROOT / "src"
    found = {".".join(p.parent.relative_to(src).parts)
             for p in src.glob("chatwax/**/__init__.py")}
    assert found <= listed, found - listed


def test_no_private_openai_api() -> None:
    """Nothing reaches into the openai SDK's private modules or names (openai._base_client,
    openai._exceptions ...): they change without notice between releases."""
    private = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [f"{node.module}.{a.name}" for a in node.names]
                     if isinstance(node, ast.ImportFrom) and node.module else [])
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                    and node.value.id == "openai":
                names.append(f"openai.{node.attr}")
            private += [f"{path.relative_to(ROOT)}:{node.lineno} {n}" for n in names
                        if n.split(".")[0] == "openai"
                        and any(p.startswith("_") for p in n.split(".")[1:])]
    assert not private, private
