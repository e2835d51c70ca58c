"""Starts one container of the cluster model: run as root inside the pod's network namespace
and a fresh mount namespace (`ip netns exec NS unshare --mount --propagation private`).

    python podinit.py SPEC.json

It builds the container's root filesystem and then becomes the container's process:
- the image is this machine: every top-level directory of / is mounted copy-on-write
  (overlayfs), so the container can write anywhere and the machine stays untouched; /tmp
  and /run are fresh tmpfs, /proc, /dev and /sys the machine's;
- the project's own directories are bound in where a fresh /tmp or /run, or a volume
  (the pods' emptyDir at /tmp), would hide them (a clean clone may live under /tmp);
- each volume is bound at its mountPath (emptyDir, configMap, secret, persistent claims:
  folders the kubelet model prepared); the service account's token folder at
  /var/run/secrets/kubernetes.io/serviceaccount; /etc/hosts links to the model's DNS file
  and /etc/resolv.conf names no reachable server (a name not in that file fails at once);
- then chroot, chdir to workingDir, and exec the command with the container's env.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

SKIP = {"proc", "sys", "dev", "run", "tmp", "lost+found"}


def mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True)


def inside(root: str, path: str) -> str:
    """`path` as seen from the container: symlinks resolved within `root` (on this machine
    /var/run links to /run, which must mean the container's /run, not the machine's)."""
    parts = [p for p in path.split("/") if p]
    resolved: list[str] = []
    for _ in range(40):
        if not parts:
            return root + "/" + "/".join(resolved)
        here = root + "/" + "/".join([*resolved, parts[0]])
        if os.path.islink(here):
            target = os.readlink(here)
            parts = [p for p in target.split("/") if p] + parts[1:]
            if target.startswith("/"):
                resolved = []
        else:
            resolved.append(parts.pop(0))
    raise OSError(f"too many links resolving {path}")


def main() -> None:
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    root, scratch = spec["root"], spec["scratch"]
    os.makedirs(root, exist_ok=True)
    mount("-t", "tmpfs", "tmpfs", root)
    for entry in sorted(os.listdir("/")):
        src, dst = f"/{entry}", f"{root}/{entry}"
        if entry in SKIP:
            os.mkdir(dst)
        elif os.path.islink(src):
            os.symlink(os.readlink(src), dst)
        elif os.path.isdir(src):
            upper, work = f"{scratch}/upper/{entry}", f"{scratch}/work/{entry}"
            os.makedirs(upper, exist_ok=True)
            os.makedirs(work, exist_ok=True)
            os.mkdir(dst)
            mount("-t", "overlay", "overlay", "-o",
                  f"lowerdir={src},upperdir={upper},workdir={work}", dst)
    for fs in ("proc", "dev", "sys"):
        mount("--rbind", f"/{fs}", f"{root}/{fs}")
    for fs in ("tmp", "run"):
        mount("-t", "tmpfs", "tmpfs", f"{root}/{fs}")
    for path, host in spec["mounts"]:
        target = inside(root, path)
        os.makedirs(target, exist_ok=True)
        mount("--bind", host, target)
    # The project and its Python, wherever they live, bound in after the volumes: an
    # emptyDir at /tmp (every chatwax pod has one) hides a clone under /tmp as a fresh
    # /tmp would.
    hidden = ("/tmp/", "/run/", *(p.rstrip("/") + "/" for p, _ in spec["mounts"]))
    for path in spec["keep"]:
        if path.startswith(hidden):
            os.makedirs(root + path, exist_ok=True)
            mount("--rbind", path, root + path)
    os.makedirs(f"{root}/run/cluster-dns", exist_ok=True)
    mount("--bind", spec["dns"], f"{root}/run/cluster-dns")
    for name in ("hosts", "resolv.conf"):
        if os.path.lexists(f"{root}/etc/{name}"):
            os.remove(f"{root}/etc/{name}")
    os.symlink("/run/cluster-dns/hosts", f"{root}/etc/hosts")
    # The model's DNS is the hosts file: a name not (yet) in it fails at once, as a missing
    # record does, instead of waiting on a name server nothing here can reach.
    with open(f"{root}/etc/resolv.conf", "w") as f:
        f.write("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    os.chroot(root)
    os.chdir(spec.get("cwd") or "/")
    command = spec["command"]
    os.execvpe(command[0], command, spec["env"])


if __name__ == "__main__":
    main()
