"""Starts one container of the cluster model: run as root inside the pod's network namespace
and fresh mount, PID and UTS namespaces
(`ip netns exec NS unshare --mount --propagation private --pid --fork --uts`), so that the
container's command, exec'd by this process, is PID 1 of its PID namespace.

    python podinit.py SPEC.json

It writes its PID as this machine sees it (the kubelet signals that one: the container's
PID 1 gets SIGTERM itself, as from a container runtime), builds the container's root
filesystem and then becomes the container's process:
- an image we build (tests/cluster/images.py): its extracted root filesystem is the lower
  layer of an overlay whose upper layer is this container's own (a restart starts from a
  fresh upper layer, as a new container does);
- an image we do not build (nats): this machine, every top-level directory of / mounted
  copy-on-write, /tmp and /run fresh tmpfs, and the project's own directories bound in where
  a fresh /tmp or /run, or a volume (an emptyDir at /tmp), would hide them;
- a fresh /proc of the new PID namespace, a sysfs read-only, a /dev of the usual nodes, as
  runc's default mounts (runc libcontainer/specconv/example.go: /proc, /dev tmpfs, /dev/pts,
  /dev/shm, /sys read-only);
- each volume bound at its mountPath (read-only when the kubelet says so); the service
  account's token at /var/run/secrets/kubernetes.io/serviceaccount; /etc/hosts links to the
  model's DNS file and /etc/resolv.conf names no reachable server;
- readOnlyRootFilesystem: the root remounted read-only once every mount point exists, as
  runc does last (libcontainer/rootfs_linux.go, setReadonly);
- chroot; supplementary groups, group and user set; capabilities outside the container's
  set dropped from the bounding set, no_new_privs when allowPrivilegeEscalation is false;
  chdir to the working directory and exec the command with the container's env.
Everything this process needs after chroot (ctypes, libc) is loaded before it: the image
has no copy of this machine's Python.
"""

from __future__ import annotations

import ctypes
import json
import os
import socket
import subprocess
import sys

SKIP = {"proc", "sys", "dev", "run", "tmp", "lost+found"}
# capability(7) numbers, for the names a securityContext uses.
CAPS = ["CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID",
        "SETUID", "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST",
        "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO",
        "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
        "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE",
        "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM",
        "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE"]
PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 24, 38, 47, 4
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")


def mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True)


def inside(root: str, path: str) -> str:
    """`path` as seen from the container: symlinks resolved within `root` (/var/run links
    to /run, which must mean the container's /run, not the machine's)."""
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


def host_root(root: str, scratch: str) -> list[str]:
    """This machine's / copy-on-write under `root`; the mounts a read-only root remounts."""
    mount("-t", "tmpfs", "tmpfs", root)
    layers = [root]
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
            layers.append(dst)
    for fs in ("tmp", "run"):
        mount("-t", "tmpfs", "tmpfs", f"{root}/{fs}")
    return layers


def image_root(root: str, scratch: str, rootfs: str) -> list[str]:
    upper, work = f"{scratch}/upper", f"{scratch}/work"
    os.makedirs(upper, exist_ok=True)
    os.makedirs(work, exist_ok=True)
    mount("-t", "overlay", "overlay", "-o",
          f"lowerdir={rootfs},upperdir={upper},workdir={work}", root)
    return [root]


def kernel_filesystems(root: str) -> None:
    """/proc of this PID namespace, sysfs read-only, a /dev with the usual nodes."""
    for d in ("proc", "sys", "dev"):
        os.makedirs(f"{root}/{d}", exist_ok=True)
    mount("-t", "proc", "-o", "nosuid,nodev,noexec", "proc", f"{root}/proc")
    mount("-t", "sysfs", "-o", "ro,nosuid,nodev,noexec", "sysfs", f"{root}/sys")
    dev = f"{root}/dev"
    mount("-t", "tmpfs", "-o", "nosuid,mode=755,size=65536k", "tmpfs", dev)
    for node in DEVICES:
        open(f"{dev}/{node}", "w").close()
        mount("--bind", f"/dev/{node}", f"{dev}/{node}")
    for d in ("pts", "shm"):
        os.mkdir(f"{dev}/{d}")
    mount("-t", "devpts", "-o", "newinstance,ptmxmode=0666,mode=0620,nosuid,noexec", "devpts",
          f"{dev}/pts")
    mount("-t", "tmpfs", "-o", "nosuid,nodev,noexec,mode=1777,size=65536k", "shm", f"{dev}/shm")
    for name, target in (("ptmx", "pts/ptmx"), ("fd", "/proc/self/fd"),
                         ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"{dev}/{name}")


def become(spec: dict, libc: ctypes.CDLL, last_cap: int) -> None:
    """Groups, user and capabilities of the container (after chroot, before exec)."""
    keep = {CAPS.index(c) for c in spec.get("caps", []) if c in CAPS}
    for cap in range(last_cap + 1):
        if cap not in keep and libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0):
            raise OSError(ctypes.get_errno(), f"dropping capability {cap}")
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    uid, gid = spec.get("uid"), spec.get("gid")
    if gid is not None:
        os.setgroups(spec.get("groups") or [])
        os.setresgid(gid, gid, gid)
    if uid is not None:
        os.setresuid(uid, uid, uid)  # to a non-zero uid: permitted and effective sets cleared
    if uid in (None, 0):  # root: what the bounding set keeps is all it has
        capset(libc, keep)
    if spec.get("no_new_privs") and libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0):
        raise OSError(ctypes.get_errno(), "no_new_privs")


def capset(libc: ctypes.CDLL, keep: set[int]) -> None:
    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                    ("inheritable", ctypes.c_uint32)]

    bits = sum(1 << c for c in keep)
    data = (Data * 2)(*[Data(m, m, 0) for m in (bits & 0xFFFFFFFF, bits >> 32)])
    if libc.capset(ctypes.byref(Header(0x20080522, 0)), data):  # _LINUX_CAPABILITY_VERSION_3
        raise OSError(ctypes.get_errno(), "capset")


def main() -> None:
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    # This process is PID 1 of its namespace; /proc is still the machine's, so /proc/self
    # names it as the kubelet sees it.
    if spec.get("pidfile"):
        with open(spec["pidfile"] + ".tmp", "w") as f:
            f.write(os.readlink("/proc/self"))
        os.rename(spec["pidfile"] + ".tmp", spec["pidfile"])
    libc = ctypes.CDLL(None, use_errno=True)
    with open("/proc/sys/kernel/cap_last_cap") as f:
        last_cap = int(f.read())
    root, scratch = spec["root"], spec["scratch"]
    os.makedirs(root, exist_ok=True)
    rootfs = spec.get("rootfs")
    layers = image_root(root, scratch, rootfs) if rootfs else host_root(root, scratch)
    kernel_filesystems(root)
    for path, host, *ro in spec["mounts"]:
        target = inside(root, path)
        if os.path.isdir(host):
            os.makedirs(target, exist_ok=True)
        else:  # a subPath naming a file
            os.makedirs(os.path.dirname(target), exist_ok=True)
            open(target, "a").close()
        mount("--bind", host, target)
        if ro and ro[0]:
            mount("-o", "remount,bind,ro", target)
    if not rootfs:
        # The project and its Python, wherever they live, bound in after the volumes: an
        # emptyDir at /tmp (every chatwax pod has one) hides a clone under /tmp as a fresh
        # /tmp would.
        hidden = ("/tmp/", "/run/", *(p[0].rstrip("/") + "/" for p in spec["mounts"]))
        for path in spec["keep"]:
            if path.startswith(hidden):
                os.makedirs(root + path, exist_ok=True)
                mount("--rbind", path, root + path)
    os.makedirs(inside(root, "/run/cluster-dns"), exist_ok=True)
    mount("--bind", spec["dns"], inside(root, "/run/cluster-dns"))
    for name in ("hosts", "resolv.conf"):
        if os.path.lexists(f"{root}/etc/{name}"):
            os.remove(f"{root}/etc/{name}")
    os.symlink("/run/cluster-dns/hosts", f"{root}/etc/hosts")
    # The model's DNS is the hosts file: a name not (yet) in it fails at once, as a missing
    # record does, instead of waiting on a name server nothing here can reach.
    with open(f"{root}/etc/resolv.conf", "w") as f:
        f.write("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    if spec.get("hostname"):
        socket.sethostname(spec["hostname"])
    if spec.get("readonly_root"):
        for layer in layers:
            mount("-o", "remount,bind,ro", layer)
    os.chroot(root)
    os.chdir("/")
    become(spec, libc, last_cap)
    command = spec["command"]
    try:
        os.chdir(spec.get("cwd") or "/")
        os.execvpe(command[0], command, spec["env"])
    except OSError as exc:  # what a runtime reports, then the container exits
        print(f"podinit: starting container process {command[0]!r}: {exc}", file=sys.stderr,
              flush=True)
        os._exit(127 if isinstance(exc, FileNotFoundError) else 126)


if __name__ == "__main__":
    main()
