#!/usr/bin/env bash
# Locks what each image installs (and requirements/build.txt, what builds the chatwax
# wheel in them): requirements/<image>.in (written from pyproject.toml's
# dependencies and its [tool.chatwax.images.<image>] table) resolved by uv into
# requirements/<image>.txt, every package pinned with the hashes of all its files on PyPI,
# for Python 3.11 and 3.12 on any platform (--universal: linux amd64 and arm64 included).
# Also requirements/llama-cpp-python.txt, the local-llm lock's llama-cpp-python entry
# alone: the image compiles it in a layer that must not change with the rest of the lock.
#
# Usage: scripts/lock-images.sh [uv pip compile options, e.g. --upgrade]
# Existing pins are kept where they still fit (uv prefers what the output file has);
# --upgrade takes the newest releases. tests/unit/test_image_locks.py checks the result
# against pyproject.toml offline.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${VENV:-.venv}
python=$venv/bin/python
# uv is a tool of this script only: installed into the virtualenv on first use.
[[ -x $venv/bin/uv ]] || "$venv/bin/pip" install --quiet 'uv>=0.5'
mkdir -p requirements
images=$("$python" - <<'EOF'
import re, tomllib
from pathlib import Path

project = tomllib.loads(Path("pyproject.toml").read_text())
deps, extras = project["project"]["dependencies"], project["project"]["optional-dependencies"]


def name(spec: str) -> str:
    return re.sub(r"[-_.]+", "-", re.split(r"[\[<>=!~;\s]", spec, maxsplit=1)[0]).lower()


def of_extra(extra: str) -> list[str]:
    """An extra's requirements, chatwax[...] self-references expanded."""
    out = []
    for spec in extras[extra]:
        if name(spec) == "chatwax":
            for inner in re.search(r"\[(.*)\]", spec).group(1).split(","):
                out += of_extra(inner.strip())
        else:
            out.append(spec)
    return out


for image, cfg in project["tool"]["chatwax"]["images"].items():
    without = {name(w) for w in cfg["without"]}
    unknown = without - {name(d) for d in deps}
    assert not unknown, f"{image}: `without` names no base dependency: {unknown}"
    specs = [d for d in deps if name(d) not in without]
    for extra in cfg["extras"]:
        specs += of_extra(extra)
    Path(f"requirements/{image}.in").write_text(
        f"# The {image} image's requirements: pyproject.toml's, written by "
        "scripts/lock-images.sh; do not edit.\n" + "".join(f"{s}\n" for s in specs))
    print(image)
# The project's build backend (setuptools), which builds the chatwax wheel in each image.
Path("requirements/build.in").write_text(
    "# What builds the chatwax wheel in the images: pyproject.toml's [build-system] "
    "requires,\n# written by scripts/lock-images.sh; do not edit.\n"
    + "".join(f"{s}\n" for s in project["build-system"]["requires"]))
print("build")
EOF
)
for image in $images; do
  echo "locking requirements/$image.txt"
  "$venv/bin/uv" pip compile --quiet --universal --python-version 3.11 --generate-hashes \
    --index-url https://pypi.org/simple --custom-compile-command scripts/lock-images.sh \
    "$@" -o "requirements/$image.txt" "requirements/$image.in"
done
# llama-cpp-python's entry (its line and hash lines) from the local-llm lock.
awk '/^llama-cpp-python==/ {on = 1; print; next} on && /^ +--hash/ {print; next} {on = 0}' \
  requirements/local-llm.txt > requirements/llama-cpp-python.txt
grep -q '^llama-cpp-python==' requirements/llama-cpp-python.txt
