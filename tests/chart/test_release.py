"""The release workflow builds every image for linux/amd64 and linux/arm64 on native runners,
merges each into one multi-arch index, attests every digest it pushes, and compiles llama.cpp
for a fixed, portable CPU baseline per architecture (the same flags `make install` uses).

No GitHub runner and no registry here: the workflow's scripts run with stand-ins for docker
and helm; what needs GitHub (OIDC, the attestation API, ghcr.io) is checked as configuration.
"""

from __future__ import annotations

import fnmatch
import itertools
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.chart.conftest import IMAGES, ROOT, WORKFLOW, expand_expressions, release_workflow

SCRIPT = ROOT / "scripts" / "install-local-model.sh"
ARCHES = ("amd64", "arm64")
RUNNERS = {"amd64": "ubuntu-24.04", "arm64": "ubuntu-24.04-arm"}
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
# The CMake options llama.cpp declares, as vendored by llama-cpp-python 0.3.36 (read from its
# sdist: vendor/llama.cpp/ggml/CMakeLists.txt; GGML_CPU_ARM_ARCH becomes -march=<value> in
# ggml/src/ggml-cpu/CMakeLists.txt when GGML_NATIVE is off). Re-read them on a version bump.
LLAMA_CPP_PYTHON = "0.3.36"
GGML_OPTIONS = {"GGML_NATIVE", "GGML_AVX", "GGML_AVX2", "GGML_FMA", "GGML_F16C", "GGML_AVX512",
                "GGML_AMX_TILE", "GGML_AMX_INT8", "GGML_AMX_BF16", "GGML_OPENMP",
                "GGML_CPU_ARM_ARCH", "GGML_CPU_KLEIDIAI"}
# sha256("0.3.36 <amd64 flags>")[:16], the wheel cache's key before the flags were split per
# architecture: existing caches (~/.cache/chatwax/wheels/<key>/) stay valid.
AMD64_KEY = "9eda9a6806efd3a6"




def _matrix(job: dict[str, Any]) -> list[dict[str, str]]:
    """The job's matrix as GitHub expands it: the product of its lists, then each `include`
    entry added to every combination whose original values it does not change, or, when it
    fits none, a combination of its own."""
    matrix = job["strategy"]["matrix"]
    keys = [k for k in matrix if k not in ("include", "exclude")]
    originals = [dict(zip(keys, values, strict=True))
                 for values in itertools.product(*(matrix[k] for k in keys))]
    combos = [dict(c) for c in originals]
    for entry in matrix.get("include", []):
        fits = [i for i, orig in enumerate(originals)
                if all(orig[k] == v for k, v in entry.items() if k in orig)]
        for i in fits:
            combos[i].update(entry)
        if not fits:
            combos.append(dict(entry))
    return [{k: str(v) for k, v in c.items()} for c in combos]


def _last_stage(dockerfile: str) -> str:
    stages = re.findall(r"^FROM \S+(?: AS (\S+))?$", (ROOT / dockerfile).read_text(), flags=re.M)
    return str(stages[-1])


def _step(job: dict[str, Any], uses: str) -> list[dict[str, Any]]:
    return [s for s in job["steps"] if s.get("uses", "").startswith(f"{uses}@")]


def _run(step: dict[str, Any], ctx: dict[str, str], cwd: Path, path: Path | None = None,
         extra: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess[str], str]:
    """A `run:` step as a GitHub-hosted runner runs it (bash -eo pipefail, its `env:`), with
    stand-ins first on PATH; returns the result and what it wrote to $GITHUB_OUTPUT."""
    out = cwd / ".github-output"
    out.write_text("")
    env = {k: expand_expressions(str(v), ctx) for k, v in step.get("env", {}).items()}
    search = f"{path}:{os.environ['PATH']}" if path else os.environ["PATH"]
    res = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c",
         expand_expressions(step["run"], ctx)],
        cwd=cwd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        env={"PATH": search, "HOME": str(cwd), "GITHUB_OUTPUT": str(out), **env,
             **(extra or {})})
    return res, out.read_text()


def _stand_in(bin_dir: Path, name: str, body: str) -> None:
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / name).write_text(f"#!/usr/bin/env bash\n{body}")
    (bin_dir / name).chmod(0o755)


def _flags(arch: str) -> dict[str, str]:
    """The flags as scripts/install-local-model.sh and the Dockerfile read them for arch."""
    pipeline = re.search(r"flags=\$\(([^)]*)\)", SCRIPT.read_text())
    assert pipeline
    res = subprocess.run(["bash", "-o", "pipefail", "-c", pipeline.group(1)], cwd=ROOT,
                         capture_output=True, text=True, timeout=30,
                         env={"PATH": os.environ["PATH"], "TARGETARCH": arch})
    assert res.returncode == 0, res.stderr
    return dict(f.removeprefix("-D").split("=", 1) for f in res.stdout.split())


# -- platforms --------------------------------------------------------------------------------


def test_every_image_is_built_for_both_platforms_on_native_runners() -> None:
    """Six legs, each image on each architecture, on a runner of that architecture (no QEMU:
    the local-llm image compiles llama.cpp), with the Dockerfile and target skaffold builds,
    a cache of its own per image and architecture, pushed by digest to the repository the
    chart's values name, untagged: only the multi-arch index carries the version tag."""
    wf = release_workflow()
    job = wf["jobs"]["images"]
    legs = _matrix(job)
    assert sorted((leg["image"], leg["arch"]) for leg in legs) == sorted(
        itertools.product(IMAGES, ARCHES))
    assert not [s for j in wf["jobs"].values() for s in j["steps"]
                if "setup-qemu-action" in s.get("uses", "")]
    assert job["runs-on"] == "${{ matrix.runner }}"
    (build,) = _step(job, "docker/build-push-action")
    for leg in legs:
        assert leg["runner"] == RUNNERS[leg["arch"]]
        ctx = {f"matrix.{k}": v for k, v in leg.items()}
        ctx |= {"needs.ref.outputs.registry": "ghcr.io/chatwax",
                "needs.ref.outputs.version": "1.2.3", "github.server_url": "https://github.com",
                "github.repository": "chatwax/chatwax"}
        step = {k: expand_expressions(str(v), ctx) for k, v in build["with"].items()}
        assert step["platforms"] == f"linux/{leg['arch']}"
        dockerfile, target = IMAGES[leg["image"]]
        assert step["file"] == dockerfile
        assert (step["target"] or _last_stage(dockerfile)) == (target or _last_stage(dockerfile))
        outputs = dict(kv.split("=", 1) for kv in step["outputs"].split(","))
        assert outputs == {"type": "image", "name": f"ghcr.io/chatwax/chatwax-{leg['image']}",
                           "push-by-digest": "true", "name-canonical": "true", "push": "true"}
        assert "tags" not in step and "push" not in step
        scope = f"scope={leg['image']}-{leg['arch']}"
        assert step["cache-from"] == f"type=gha,{scope}"
        assert step["cache-to"] == f"type=gha,{scope},mode=max"


def test_every_architecture_the_workflow_builds_has_a_flags_file() -> None:
    """BuildKit's TARGETARCH on each leg names an existing scripts/llama-cpp-flags.<arch>."""
    legs = _matrix(release_workflow()["jobs"]["images"])
    built = {leg["arch"] for leg in legs if leg["image"] == "local-llm"}
    files = {p.suffix.lstrip(".") for p in (ROOT / "scripts").glob("llama-cpp-flags.*")}
    assert built == files == set(ARCHES)


def test_each_leg_hands_its_digest_to_the_manifest_job_of_its_image(tmp_path: Path) -> None:
    """The digest step writes <arch> holding the build's digest (a missing or malformed one
    fails), uploaded as digest-<image>-<arch>; each manifests leg downloads exactly the two
    artifacts of its own image."""
    wf = release_workflow()
    images, manifests = wf["jobs"]["images"], wf["jobs"]["manifests"]
    keep = next(s for s in images["steps"] if s.get("name", "").startswith("Keep the digest"))
    (upload,) = _step(images, "actions/upload-artifact")
    digest = "sha256:" + "ab" * 32
    ctx = {"steps.build.outputs.digest": digest, "matrix.arch": "arm64"}
    res, _ = _run(keep, ctx, tmp_path)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "digests" / "arm64").read_text() == digest + "\n"
    for bad in ("", "sha256:xyz"):
        res, _ = _run(keep, ctx | {"steps.build.outputs.digest": bad}, tmp_path)
        assert res.returncode != 0 and "::error::" in res.stdout
    assert upload["with"]["if-no-files-found"] == "error"
    names = [expand_expressions(upload["with"]["name"], {f"matrix.{k}": v for k, v in leg.items()})
             for leg in _matrix(images)]
    (download,) = _step(manifests, "actions/download-artifact")
    assert download["with"]["merge-multiple"] is True
    assert [leg["image"] for leg in _matrix(manifests)] == list(IMAGES)
    for image in IMAGES:
        pattern = expand_expressions(download["with"]["pattern"], {"matrix.image": image})
        assert sorted(fnmatch.filter(names, pattern)) == [
            f"digest-{image}-{arch}" for arch in ARCHES]


@pytest.mark.skipif(not shutil.which("jq"), reason="jq (on GitHub's runners) is not installed")
@pytest.mark.parametrize("platforms", [("linux/amd64", "linux/arm64"), ("linux/amd64",)])
def test_the_index_joins_both_architectures_under_the_version_tag(
        tmp_path: Path, platforms: tuple[str, ...]) -> None:
    """The manifests job's script, with a stand-in docker: `imagetools create` tags
    <repo>:<version> from both digests, with the source annotation; the index's digest
    becomes the step's output only when it holds both platforms."""
    job = release_workflow()["jobs"]["manifests"]
    step = next(s for s in job["steps"] if s.get("id") == "index")
    work = tmp_path / "digests"
    work.mkdir()
    per_arch = {arch: f"sha256:{c * 64}" for arch, c in zip(ARCHES, "12", strict=True)}
    for arch, digest in per_arch.items():
        (work / arch).write_text(digest + "\n")
    index = "sha256:" + "9" * 64
    manifest = {"schemaVersion": 2, "digest": index, "manifests": [
        {"digest": "sha256:" + "0" * 64, "platform": dict(zip(("os", "architecture"),
                                                              p.split("/"), strict=True))}
        for p in platforms]}
    log = tmp_path / "docker.log"
    _stand_in(tmp_path / "bin", "docker", f"""printf '%s\\n' "$*" >> {log}
if [[ $3 == inspect ]]; then printf '%s' '{json.dumps(manifest)}'; fi
""")
    ctx = {"needs.ref.outputs.registry": "ghcr.io/chatwax", "needs.ref.outputs.version": "1.2.3",
           "matrix.image": "local-llm", "github.server_url": "https://github.com",
           "github.repository": "chatwax/chatwax"}
    res, output = _run(step, ctx, work, tmp_path / "bin")
    calls = log.read_text().splitlines()
    repo = "ghcr.io/chatwax/chatwax-local-llm"
    assert calls[0].split() == [
        "buildx", "imagetools", "create", "--tag", f"{repo}:1.2.3", "--annotation",
        "index:org.opencontainers.image.source=https://github.com/chatwax/chatwax",
        "--annotation", "index:org.opencontainers.image.version=1.2.3",
        f"{repo}@{per_arch['amd64']}", f"{repo}@{per_arch['arm64']}"]
    assert calls[1].split()[:4] == ["buildx", "imagetools", "inspect", f"{repo}:1.2.3"]
    if len(platforms) == 2:
        assert res.returncode == 0, res.stdout + res.stderr
        assert output == f"digest={index}\n"
    else:
        assert res.returncode != 0 and "::error::" in res.stdout and not output


def test_the_index_needs_both_digests(tmp_path: Path) -> None:
    """A missing architecture's digest stops the job before anything is tagged."""
    job = release_workflow()["jobs"]["manifests"]
    step = next(s for s in job["steps"] if s.get("id") == "index")
    (tmp_path / "amd64").write_text("sha256:" + "1" * 64 + "\n")
    log = tmp_path / "docker.log"
    _stand_in(tmp_path / "bin", "docker", f"printf '%s\\n' \"$*\" >> {log}\n")
    ctx = {"needs.ref.outputs.registry": "ghcr.io/chatwax", "needs.ref.outputs.version": "1.2.3",
           "matrix.image": "frontend", "github.server_url": "https://github.com",
           "github.repository": "chatwax/chatwax"}
    res, output = _run(step, ctx, tmp_path, tmp_path / "bin")
    assert res.returncode != 0 and not output and not log.exists()


# -- attestations and permissions -------------------------------------------------------------


def test_every_pushed_digest_is_attested_in_the_registry() -> None:
    """Each architecture's image (the build's digest), each multi-arch index and the chart
    get a build-provenance attestation, pushed to the registry beside the subject: subject
    named as pushed (no tag), its digest the output of the step that pushed it, earlier."""
    wf = release_workflow()
    jobs = wf["jobs"]
    registry = "${{ needs.ref.outputs.registry }}"
    expected = {
        "images": (f"{registry}/chatwax-${{{{ matrix.image }}}}", "build"),
        "manifests": (f"{registry}/chatwax-${{{{ matrix.image }}}}", "index"),
        "chart": (f"{registry}/charts/chatwax", "push"),
    }
    attesting = {name for name, job in jobs.items() if _step(job, "actions/attest")}
    assert attesting == set(expected)
    for name, (subject, producer) in expected.items():
        job = jobs[name]
        (attest,) = _step(job, "actions/attest")
        ids = [s.get("id") for s in job["steps"]]
        assert ids.index(producer) < job["steps"].index(attest)
        assert attest["with"]["subject-name"] == subject
        assert attest["with"]["subject-digest"] == f"${{{{ steps.{producer}.outputs.digest }}}}"
        assert attest["with"]["push-to-registry"] is True
        # Storage records would need artifact-metadata: write, which no job asks for.
        assert attest["with"]["create-storage-record"] is False
    # The build pushes where the attestation names it.
    (build,) = _step(jobs["images"], "docker/build-push-action")
    assert f"name={expected['images'][0]}," in build["with"]["outputs"]
    # The index step tags the repository the attestation names.
    index = next(s for s in jobs["manifests"]["steps"] if s.get("id") == "index")
    assert index["env"]["REPOSITORY"] == expected["manifests"][0]
    push = next(s for s in jobs["chart"]["steps"] if s.get("id") == "push")
    assert 'oci://$REGISTRY/charts"' in push["run"] and push["env"]["REGISTRY"] == registry


def test_permissions_are_per_job_and_signing_only_where_it_attests() -> None:
    """The workflow grants contents: read only; a job that pushes asks for packages: write,
    a job that attests for id-token: write (the OIDC token Sigstore's certificate needs) and
    attestations: write, and nothing else is ever asked for."""
    wf = release_workflow()
    assert wf["permissions"] == {"contents": "read"}
    for name, job in wf["jobs"].items():
        perms = job.get("permissions", {})
        pushes = bool(_step(job, "docker/login-action")) or "helm push" in str(job["steps"])
        attests = bool(_step(job, "actions/attest"))
        checks_out = bool(_step(job, "actions/checkout"))
        want = ({"packages": "write"} if pushes else {}) | (
            {"id-token": "write", "attestations": "write"} if attests else {}) | (
            {"contents": "read"} if checks_out and perms else {})
        assert perms == want, name
    assert "permissions" not in wf["jobs"]["ref"]


@pytest.mark.parametrize("stream", ["1", "2"])
def test_the_chart_push_gives_its_digest_to_the_attestation(tmp_path: Path, stream: str) -> None:
    """helm push's "Digest: sha256:..." line (on either stream) becomes the push step's
    output; a push that prints none fails the job rather than attest nothing."""
    job = release_workflow()["jobs"]["chart"]
    step = next(s for s in job["steps"] if s.get("id") == "push")
    (tmp_path / "dist").mkdir()
    digest = "sha256:" + "c" * 64
    ctx = {"needs.ref.outputs.version": "1.2.3", "needs.ref.outputs.registry": "ghcr.io/chatwax",
           "github.actor": "octocat", "secrets.GITHUB_TOKEN": "token-sentinel"}
    _stand_in(tmp_path / "bin", "helm", f"""cat > /dev/null
if [[ $1 == push ]]; then
  printf 'Pushed: ghcr.io/chatwax/charts/chatwax:1.2.3\\nDigest: {digest}\\n' >&{stream}
fi
""")
    res, output = _run(step, ctx, tmp_path, tmp_path / "bin")
    assert res.returncode == 0, res.stdout + res.stderr
    assert output == f"digest={digest}\n"
    _stand_in(tmp_path / "bin", "helm", "cat > /dev/null\n")
    res, output = _run(step, ctx, tmp_path, tmp_path / "bin")
    assert res.returncode != 0 and "::error::" in res.stdout and not output


def test_new_actions_are_pinned_to_the_commits_of_their_releases() -> None:
    """The actions this workflow added, at the commits their release tags point to (read
    from the actions' own repositories)."""
    text = WORKFLOW.read_text()
    for pin in ("actions/attest@1e69f48acb82d1966a394da916b4c1698aa569d6 # v4.2.2",
                "actions/upload-artifact@bbbca2ddaa5d8feaa63e36b76fdaad77386f024f # v7.0.0",
                "actions/download-artifact@3e5f45b2cfb9172054b4087a40e8e0b5a5461e7c # v8.0.1"):
        assert f"uses: {pin}\n" in text


# -- llama.cpp's CPU baseline per architecture ------------------------------------------------


def test_pinned_llama_cpp_python_is_the_one_whose_cmake_options_were_read() -> None:
    """GGML_OPTIONS were read from this version's sources; a bump must re-read them."""
    assert f'"llama-cpp-python=={LLAMA_CPP_PYTHON}"' in (ROOT / "pyproject.toml").read_text()


@pytest.mark.parametrize("arch", ARCHES)
def test_each_architectures_flags_are_a_fixed_portable_baseline(arch: str) -> None:
    """Never the build machine's CPU: GGML_NATIVE off and no `native` anywhere; only options
    llama.cpp declares; no OpenMP. amd64: x86-64-v3 (AVX2, FMA, F16C; no AVX-512, AMX).
    arm64: -march names a fixed ARMv8.x-A with its extensions, and no x86 option."""
    flags = _flags(arch)
    assert set(flags) <= GGML_OPTIONS
    assert flags["GGML_NATIVE"] == "OFF" and flags["GGML_OPENMP"] == "OFF"
    assert not [v for v in flags.values() if "native" in v.lower()]
    if arch == "amd64":
        x86_64_v3 = ("GGML_AVX", "GGML_AVX2", "GGML_FMA", "GGML_F16C")
        assert {k: flags[k] for k in x86_64_v3} == dict.fromkeys(x86_64_v3, "ON")
        assert all(v == "OFF" for k, v in flags.items() if "AVX512" in k or "AMX" in k)
        assert "GGML_CPU_ARM_ARCH" not in flags
    else:
        assert re.fullmatch(r"armv8\.[0-9]-a(\+[a-z0-9]+)*", flags["GGML_CPU_ARM_ARCH"])
        assert flags["GGML_CPU_ARM_ARCH"] == "armv8.2-a+dotprod+fp16"
        assert flags["GGML_CPU_KLEIDIAI"] == "OFF"  # it downloads sources while building
        assert not [k for k in flags if re.search(r"AVX|FMA|F16C|AMX", k)]


@pytest.mark.parametrize(("machine", "arch"), [
    ("x86_64", "amd64"), ("aarch64", "arm64"), ("riscv64", None)])
def test_make_install_picks_the_flags_of_its_machine(
        tmp_path: Path, machine: str, arch: str | None) -> None:
    """install-local-model.sh maps `uname -m` to the Docker name of the architecture and
    reads that file; the amd64 cache key is the one from before the split; a machine with
    no baseline stops with a message rather than compile natively."""
    text = SCRIPT.read_text()
    start, end = text.index("case $(uname -m)"), text.index("\n", text.index("key=$("))
    _stand_in(tmp_path / "bin", "uname", f'[[ $1 == -m ]] && echo {machine}\n')
    res = subprocess.run(
        ["bash", "-c", f"set -euo pipefail; version={LLAMA_CPP_PYTHON}\n{text[start:end]}\n"
                       'echo "$TARGETARCH $key"'],
        cwd=ROOT, capture_output=True, text=True, timeout=30,
        env={"PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"})
    if arch is None:
        assert res.returncode == 1 and "no llama.cpp CPU baseline for riscv64" in res.stderr
        return
    assert res.returncode == 0, res.stderr
    got_arch, key = res.stdout.split()
    assert got_arch == arch
    if arch == "amd64":
        assert key == AMD64_KEY
    else:
        assert re.fullmatch(r"[0-9a-f]{16}", key) and key != AMD64_KEY


def test_the_image_reads_the_flags_of_its_target_architecture() -> None:
    """The local-llm build stage declares TARGETARCH (BuildKit sets it per platform), copies
    only that architecture's flags file (an edit to the other's keeps this layer cached), and
    reads it with the very pipeline make install uses; .dockerignore lets both files in."""
    dockerfile = (ROOT / "Dockerfile.dataflow").read_text()
    stage = re.search(r"^FROM \S+ AS build-local-llm\n(.*?)(?=^FROM )", dockerfile,
                      flags=re.M | re.S)
    assert stage
    body = stage.group(1)
    arg = re.search(r"^ARG TARGETARCH$", body, flags=re.M)
    copy = re.search(r"^COPY scripts/llama-cpp-flags\.\$\{?TARGETARCH\}? \./scripts/$", body,
                     flags=re.M)
    run = re.search(r"flags=\$\(([^)]*)\)", body)
    assert arg and copy and run
    assert arg.start() < copy.start() < run.start()
    script = re.search(r"flags=\$\(([^)]*)\)", SCRIPT.read_text())
    assert script and run.group(1) == script.group(1)
    assert "scripts/llama-cpp-flags.$TARGETARCH" in run.group(1)
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert "!scripts/llama-cpp-flags.*" in ignore
