"""The kubelet and container runtime of the cluster model.

For each Pod object in the API server stand-in it: gives the pod a network namespace and
an IP; prepares its volumes (emptyDir, configMap, secret, projected, persistent claims as
folders); mounts a service-account token when the pod or its account asks for one; resolves each
container's environment as Kubernetes does (value, $(VAR) expansion, fieldRef,
resourceFieldRef, configMap/secret key refs and envFrom; a missing Secret or ConfigMap
holds the container back until it exists); starts the container's command (the image's
entrypoint when the manifest gives none) through `podinit.py` as a container: the image's
root file system (images.py), PID 1 of its own PID namespace, the user, groups and
capabilities of the pod's and container's securityContext, fsGroup applied to the volumes
as upstream does (set_volume_ownership); runs the startup, liveness
and readiness probes as declared (httpGet, period, timeout, failure threshold); restarts
exited containers per restartPolicy with the kubelet's back-off (10 s doubling to 5 min,
reset after 10 min of running); reports status (podIP, phase, Ready, restart counts); and
deletes a pod with SIGTERM, terminationGracePeriodSeconds, then SIGKILL.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.cluster.network import Network
from tests.support.apiserver import ApiServer, Obj, Store, now_rfc3339

log = logging.getLogger("cluster.kubelet")

PODINIT = Path(__file__).with_name("podinit.py")
ROOT = Path(__file__).resolve().parents[2]
SA_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
# The capabilities a container has unless its securityContext adds or drops some: the
# runtimes' default set (containerd pkg/oci/spec.go defaultUnixCaps, moby
# oci/caps/defaults.go).
DEFAULT_CAPS = ("CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID",
                "SETUID", "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL",
                "AUDIT_WRITE")


class Missing(Exception):
    """A Secret or ConfigMap the container needs does not exist (yet)."""


class ConfigError(Missing):
    """The kubelet will not start the container as specified (CreateContainerConfigError);
    it tries again, as the kubelet's sync loop does."""


class ContainerProcess(subprocess.Popen[bytes]):
    """The runtime's view of a container: waited for through the `unshare` wrapper, whose
    exit is the container's, but signalled at the container's PID 1 (podinit.py writes its
    PID to `pidfile`), so the container's own process gets the kubelet's SIGTERM."""

    def __init__(self, argv: list[str], pidfile: Path, **kwargs: Any) -> None:
        self.pidfile = pidfile
        self._init_pid: int | None = None
        super().__init__(argv, **kwargs)

    def init_pid(self, wait_s: float = 5.0) -> int | None:
        deadline = time.monotonic() + wait_s
        while self._init_pid is None and self.poll() is None:
            with contextlib.suppress(FileNotFoundError, ValueError):
                self._init_pid = int(self.pidfile.read_text())
                break
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)
        return self._init_pid

    def send_signal(self, sig: int) -> None:
        pid = self.init_pid()
        if self.poll() is not None:
            return
        if pid is None:
            super().send_signal(sig)
            return
        # SIGKILL to a PID 1 ends its whole namespace; SIGTERM it must handle itself (a
        # PID 1 has no default action for it).
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


@dataclass
class Image:
    """What the model knows of an image: its entrypoint, command, environment, user and
    working directory, and its extracted root filesystem (None: this machine's root)."""

    entrypoint: list[str]
    cmd: list[str]
    env: dict[str, str] = field(default_factory=dict)
    user: str = ""
    workdir: str = ""
    rootfs: Path | None = None


def quantity(text: str) -> float:
    """A Kubernetes quantity (`512Mi`, `1Gi`, `250m`, `2`) as a number."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6,
             "G": 1e9, "m": 1e-3}
    m = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(text))
    if not m:
        raise ValueError(text)
    return float(m.group(1)) * units.get(m.group(2), 1)


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) references; $$(VAR) escapes; unknown references stay as they are."""
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                  lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), text)


def _passwd(rootfs: Path | None, name: str) -> list[list[str]]:
    """The entries of the image's /etc/passwd or /etc/group (none for this machine's root:
    the model runs nats as the securityContext says or as root)."""
    path = rootfs / "etc" / name if rootfs else None
    if path is None or not path.exists():
        return []
    return [line.split(":") for line in path.read_text().splitlines() if line.count(":") >= 3]


def identity(image: Image, pod_sc: Obj, sc: Obj, who: str) -> dict[str, Any]:
    """User, groups, capabilities and root of one container, as the kubelet and runtime
    make them from the pod's and the container's securityContext and the image.

    runAsUser/runAsGroup: the container's, else the pod's, else the image's USER (a name
    looked up in the image's /etc/passwd); with a user but no group, that user's primary
    group from the image (containerd's WithUser). Supplementary groups: the user's in the
    image's /etc/group, supplementalGroups and fsGroup (k8s.io/cri-api: "the container's
    primary GID, the fsGroup (if specified), and group memberships defined in the container
    image ... in addition to supplementalGroups"). runAsNonRoot refused for uid 0 (kubelet
    pkg/kubelet/kuberuntime/security_context_others.go, verifyRunAsNonRoot).
    """
    passwd, groups = _passwd(image.rootfs, "passwd"), _passwd(image.rootfs, "group")
    user, _, group = image.user.partition(":")
    uid: int | None = sc.get("runAsUser", pod_sc.get("runAsUser"))
    gid: int | None = sc.get("runAsGroup", pod_sc.get("runAsGroup"))
    entry = None
    if uid is None and user:
        entry = next((e for e in passwd if user in (e[0], e[2])), None)
        if entry is None and not user.isdigit():
            raise ConfigError(f"{who}: unable to find user {user} in the image")
        uid = int(entry[2]) if entry else int(user)
    uid = uid or 0
    entry = entry or next((e for e in passwd if e[2] == str(uid)), None)
    if gid is None and group:
        gid = int(group) if group.isdigit() else next(
            (int(g[2]) for g in groups if g[0] == group), 0)
    if gid is None:
        gid = int(entry[3]) if entry else 0
    if sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) and uid == 0:
        raise ConfigError(f"{who}: container has runAsNonRoot and image will run as root")
    extra = [int(g[2]) for g in groups if entry and entry[0] in g[3].split(",")]
    extra += [int(g) for g in pod_sc.get("supplementalGroups") or []]
    if pod_sc.get("fsGroup") is not None:
        extra.append(int(pod_sc["fsGroup"]))
    caps = sc.get("capabilities") or {}
    drop = {c.removeprefix("CAP_") for c in caps.get("drop") or []}
    keep = [] if "ALL" in drop else [c for c in DEFAULT_CAPS if c not in drop]
    keep += [c.removeprefix("CAP_") for c in caps.get("add") or []]
    return {"uid": uid, "gid": gid, "groups": sorted(set(extra)), "caps": keep,
            # allowPrivilegeEscalation false is no_new_privs (it defaults to true).
            "no_new_privs": sc.get("allowPrivilegeEscalation") is False,
            "readonly_root": bool(sc.get("readOnlyRootFilesystem")),
            "home": entry[5] if entry and len(entry) > 5 and entry[5] else "/"}


def set_volume_ownership(path: Path, fs_group: int | None, readonly: bool = False,
                         policy: str | None = None) -> None:
    """fsGroup applied to a volume as the kubelet does (pkg/volume/volume_linux.go,
    SetVolumeOwnership and changeFilePermission): every file and directory gets group
    fsGroup and group read-write (read-only volumes: read; rwMask 0660, roMask 0440),
    directories also execute and setgid, so files made later inherit the group; symlinks
    are only chowned. fsGroupChangePolicy OnRootMismatch skips the walk when the root
    already has the group and the bits (skipPermissionChange)."""
    if fs_group is None:
        return
    mask = 0o440 if readonly else 0o660
    if policy == "OnRootMismatch":
        st = path.stat()
        want = mask | 0o110 | 0o2000
        if st.st_gid == fs_group and st.st_mode & want == want:
            return
    for here in [path, *path.rglob("*")]:
        os.lchown(here, -1, fs_group)
        if here.is_symlink():
            continue
        mode = here.stat().st_mode
        os.chmod(here, (mode | mask | (0o2110 if here.is_dir() else 0)) & 0o7777)


@dataclass
class Probe:
    path: str
    port: int
    period: float
    timeout: float
    failures: int
    initial_delay: float

    @classmethod
    def of(cls, spec: Obj | None, ports: dict[str, int]) -> Probe | None:
        if not spec:
            return None
        get = spec["httpGet"]
        port = get["port"]
        return cls(get.get("path", "/"), ports[port] if isinstance(port, str) else int(port),
                   float(spec.get("periodSeconds", 10)), float(spec.get("timeoutSeconds", 1)),
                   int(spec.get("failureThreshold", 3)), float(spec.get("initialDelaySeconds", 0)))

    def check(self, ip: str) -> bool:
        try:
            with urllib.request.urlopen(f"http://{ip}:{self.port}{self.path}",
                                        timeout=self.timeout) as resp:
                return 200 <= resp.status < 400
        except (urllib.error.URLError, OSError, ValueError):
            return False


class Container:
    """One container of a pod: started, probed, restarted, stopped."""

    def __init__(self, pod: PodRunner, spec: Obj) -> None:
        self.pod = pod
        self.spec = spec
        self.name = spec["name"]
        self.proc: ContainerProcess | None = None
        self.ready = False
        self.started = False
        self.restarts = 0
        self.exit_code: int | None = None
        self.done = threading.Event()
        ports = {p["name"]: p["containerPort"] for p in spec.get("ports", []) if "name" in p}
        self.startup = Probe.of(spec.get("startupProbe"), ports)
        self.liveness = Probe.of(spec.get("livenessProbe"), ports)
        self.readiness = Probe.of(spec.get("readinessProbe"), ports)
        self._thread = threading.Thread(target=self._run, name=f"ctr-{pod.name}-{self.name}",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        backoff = 0
        policy = self.pod.obj["spec"].get("restartPolicy", "Always")
        while not self.pod.terminating.is_set():
            try:
                argv = self._argv()
            except Missing as exc:
                log.info("%s/%s waits: %s", self.pod.name, self.name, exc)
                self.pod.terminating.wait(1.0)
                continue
            began = time.monotonic()
            pidfile = Path(argv[-1]).with_suffix(".pid")
            pidfile.unlink(missing_ok=True)
            self.proc = ContainerProcess(argv, pidfile, stdout=self.pod.log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            instance = self.proc
            threading.Thread(target=self._probe, args=(instance,), daemon=True).start()
            code = instance.wait()
            self.exit_code = code
            self.ready = self.started = False
            self.pod.changed()
            if self.pod.terminating.is_set():
                break
            if policy == "Never" or (policy == "OnFailure" and code == 0):
                break
            if time.monotonic() - began >= 600:
                backoff = 0
            delay = min(10 * 2**backoff, 300)
            backoff += 1
            self.restarts += 1
            self.pod.model.events.append((time.time(), "restart", self.pod.name, self.name))
            log.info("%s/%s exited with %s; restarting in %ss", self.pod.name, self.name,
                     code, delay)
            self.pod.changed()
            if self.pod.terminating.wait(delay):
                break
        self.done.set()
        self.pod.changed()

    def _argv(self) -> list[str]:
        pod, spec = self.pod, self.spec
        image = pod.model.image(spec["image"])
        ident = identity(image, pod.obj["spec"].get("securityContext") or {},
                         spec.get("securityContext") or {}, f"{pod.name}/{self.name}")
        env = {**image.env, **pod.env(spec)}
        env.setdefault("HOME", ident.pop("home"))  # as runc: the user's home, else /
        command = spec.get("command") or image.entrypoint
        args = spec.get("args") if "args" in spec else (image.cmd if not spec.get("command")
                                                        else [])
        command = [expand(c, env) for c in [*command, *(args or [])]]
        scratch = pod.dir / "containers" / f"{self.name}-{self.restarts}"
        mounts = [[m["mountPath"], str(pod.volume(m["name"]) / m.get("subPath", "")),
                   bool(m.get("readOnly")) or pod.api_data(m["name"])]
                  for m in spec.get("volumeMounts", [])]
        if pod.sa_dir is not None:
            mounts.append([SA_PATH, str(pod.sa_dir), True])
        init = {"root": str(scratch / "root"), "scratch": str(scratch), "mounts": mounts,
                "dns": str(pod.model.network.dns_dir),
                "cwd": spec.get("workingDir") or image.workdir,
                "keep": pod.model.keep, "command": command, "env": env,
                "rootfs": str(image.rootfs) if image.rootfs else None,
                "pidfile": str(pod.dir / f"{self.name}.pid"), "hostname": pod.name, **ident}
        path = pod.dir / f"{self.name}.json"
        path.write_text(json.dumps(init))
        return ["ip", "netns", "exec", pod.netns, "unshare", "--mount", "--propagation",
                "private", "--pid", "--fork", "--kill-child", "--uts", sys.executable,
                str(PODINIT), str(path)]

    def _probe(self, proc: subprocess.Popen[bytes]) -> None:
        """startup, then liveness and readiness, for one run of the container."""
        ip = self.pod.ip

        def alive() -> bool:
            return proc.poll() is None and not self.pod.terminating.is_set()

        def fail(why: str) -> None:
            log.info("%s/%s %s: killing the container", self.pod.name, self.name, why)
            self.pod.model.events.append((time.time(), "probe-kill", self.pod.name, why))
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(self.pod.grace)
            except subprocess.TimeoutExpired:
                proc.kill()

        if self.startup is not None:
            time.sleep(self.startup.initial_delay)
            failures = 0
            while alive() and not self.startup.check(ip):
                failures += 1
                if failures >= self.startup.failures:
                    fail("failed its startup probe")
                    return
                time.sleep(self.startup.period)
        if not alive():
            return
        self.started = True
        self.ready = self.readiness is None
        self.pod.changed()
        # [probe, when it is due, consecutive failures] for liveness and readiness.
        delay = 0.0 if self.startup is not None else None
        checks = [[p, time.monotonic() + (p.initial_delay if delay is None else delay), 0]
                  for p in (self.liveness, self.readiness) if p is not None]
        while alive():
            for check in checks:
                p, when, failed = check
                assert isinstance(p, Probe)
                if time.monotonic() < float(when):
                    continue
                check[1] = time.monotonic() + p.period
                ok = p.check(ip)
                check[2] = failed = 0 if ok else int(failed) + 1
                if p is self.readiness:
                    ready = ok or (self.ready and failed < p.failures)
                    if ready != self.ready:
                        self.ready = ready
                        self.pod.changed()
                elif failed >= p.failures:
                    fail("failed its liveness probe")
                    return
            time.sleep(0.1)

    def signal(self, signum: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signum)


class PodRunner:
    """One pod on the model's node."""

    def __init__(self, model: Kubelet, obj: Obj) -> None:
        self.model = model
        self.obj = obj
        meta = obj["metadata"]
        self.name, self.namespace = meta["name"], meta["namespace"]
        self.dir = model.workdir / "pods" / f"{self.name}-{meta['uid']}"
        self.dir.mkdir(parents=True)
        self.log = (model.workdir / "logs" / f"{self.name}.log").open("ab")
        self.terminating = threading.Event()
        self.grace = float(obj["spec"].get("terminationGracePeriodSeconds", 30))
        self.netns, self.ip = model.network.add_pod(self.name)
        self._owned: set[str] = set()
        self.sa_dir = self._service_account()
        self.containers = [Container(self, c) for c in obj["spec"]["containers"]]
        self._status_lock = threading.Lock()
        self._reported: Obj | None = None
        self.changed()
        for c in self.containers:
            c.start()

    def _service_account(self) -> Path | None:
        spec = self.obj["spec"]
        account = spec.get("serviceAccountName", "default")
        sa = self.model.store.get("ServiceAccount", self.namespace, account) or {}
        mount = spec.get("automountServiceAccountToken",
                         sa.get("automountServiceAccountToken", True))
        if not mount:
            return None
        path = self.dir / "serviceaccount"
        path.mkdir()
        api = self.model.apiserver
        (path / "token").write_text(api.token_for(self.namespace, account))
        (path / "namespace").write_text(self.namespace)
        (path / "ca.crt").write_bytes(api.ca_pem or b"")
        # The projected kube-api-access volume: 0644 files, the directory 0777, fsGroup'd.
        path.chmod(0o777)
        for f in path.iterdir():
            f.chmod(0o644)
        set_volume_ownership(path, self.fs_group, readonly=True)
        return path

    def api_data(self, name: str) -> bool:
        """Secret, configMap, downwardAPI and projected volumes are mounted read-only
        whatever the volumeMount says (pkg/volume/secret/secret.go GetAttributes ReadOnly;
        kubelet ReadOnlyAPIDataVolumes since 1.10)."""
        spec = next(v for v in self.obj["spec"].get("volumes", []) if v["name"] == name)
        return any(k in spec for k in ("secret", "configMap", "downwardAPI", "projected"))

    @property
    def fs_group(self) -> int | None:
        value = (self.obj["spec"].get("securityContext") or {}).get("fsGroup")
        return None if value is None else int(value)

    def volume(self, name: str) -> Path:
        """The folder behind volume `name`, made on first use (fsGroup applied once per
        pod, when the kubelet mounts it)."""
        spec = next(v for v in self.obj["spec"].get("volumes", []) if v["name"] == name)
        policy = (self.obj["spec"].get("securityContext") or {}).get("fsGroupChangePolicy")
        if "persistentVolumeClaim" in spec:
            path = self.model.workdir / "claims" / spec["persistentVolumeClaim"]["claimName"]
            path.mkdir(parents=True, exist_ok=True)
            if name not in self._owned:
                # The model's claims are local folders whose driver supports fsGroup (CSI
                # fsGroupPolicy File, as most block-backed drivers).
                set_volume_ownership(path, self.fs_group, policy=policy)
                self._owned.add(name)
            return path
        path = self.dir / "volumes" / name
        if path.exists():
            return path
        path.mkdir(parents=True)
        # emptyDir and the API data volumes' directories are 0777 (pkg/volume/emptydir/
        # empty_dir.go: perm 0777), then fsGroup'd.
        path.chmod(0o777)
        sources = [(kind, key, spec[kind]) for kind, key in (("configMap", "ConfigMap"),
                                                              ("secret", "Secret"))
                   if kind in spec]
        for source in (spec.get("projected") or {}).get("sources", []):  # projected volumes
            sources += [(kind, key, source[kind]) for kind, key in (("configMap", "ConfigMap"),
                                                                    ("secret", "Secret"))
                        if kind in source]
        for _kind, key, ref_spec in sources:
            ref = ref_spec.get("name") or ref_spec.get("secretName")
            obj = self.model.store.get(key, self.namespace, ref)
            if obj is None:
                shutil.rmtree(path)
                raise Missing(f"{key} {ref} not found")
            data = obj.get("data") or {}
            items = ref_spec.get("items") or [{"key": k, "path": k} for k in data]
            # defaultMode 0644 (pkg/apis/core/types.go SecretVolumeSourceDefaultMode,
            # ConfigMapVolumeSourceDefaultMode, ProjectedVolumeSourceDefaultMode); an item's
            # mode wins; files are root's.
            default = spec.get("projected", ref_spec).get("defaultMode", 0o644)
            for item in items:
                value = data[item["key"]]
                raw = base64.b64decode(value) if key == "Secret" else value.encode()
                target = path / item["path"]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(raw)
                target.chmod(item.get("mode", default))
        set_volume_ownership(path, self.fs_group, readonly=bool(sources))
        return path

    def env(self, spec: Obj) -> dict[str, str]:
        api = self.model.apiserver
        env = {"KUBERNETES_SERVICE_HOST": api.host, "KUBERNETES_SERVICE_PORT": str(api.port),
               "HOSTNAME": self.name}
        for src in spec.get("envFrom", []):
            if "configMapRef" in src:
                env.update(self._data("ConfigMap", src["configMapRef"]["name"]))
            if "secretRef" in src:
                env.update(self._data("Secret", src["secretRef"]["name"]))
        for e in spec.get("env", []):
            if "value" in e:
                env[e["name"]] = expand(str(e["value"]), env)
            elif "valueFrom" in e:
                env[e["name"]] = self._value_from(e["valueFrom"], spec)
        return env

    def _data(self, kind: str, name: str) -> dict[str, str]:
        obj = self.model.store.get(kind, self.namespace, name)
        if obj is None:
            raise Missing(f"{kind} {name} not found")
        data = obj.get("data") or {}
        if kind == "Secret":
            return {k: base64.b64decode(v).decode() for k, v in data.items()}
        return dict(data)

    def _value_from(self, ref: Obj, spec: Obj) -> str:
        if "fieldRef" in ref:
            path = ref["fieldRef"]["fieldPath"]
            meta = self.obj["metadata"]
            if m := re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path):
                return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
            return {"metadata.name": self.name, "metadata.namespace": self.namespace,
                    "metadata.uid": meta["uid"], "status.podIP": self.ip,
                    "spec.nodeName": "model-node",
                    "spec.serviceAccountName": self.obj["spec"].get("serviceAccountName",
                                                                    "default")}[path]
        if "resourceFieldRef" in ref:
            res = ref["resourceFieldRef"]
            section, _, resource = res["resource"].partition(".")
            value = (spec.get("resources", {}).get(section) or {}).get(resource)
            if value is None:  # no limit: the node's allocatable (the model: this machine)
                return "0"
            divisor = quantity(res.get("divisor", "1"))
            return str(math.ceil(quantity(value) / divisor))
        for kind, key in (("Secret", "secretKeyRef"), ("ConfigMap", "configMapKeyRef")):
            if key in ref:
                data = self._data(kind, ref[key]["name"])
                if ref[key]["key"] not in data:
                    raise Missing(f"{kind} {ref[key]['name']} has no key {ref[key]['key']}")
                return data[ref[key]["key"]]
        raise ValueError(f"unsupported valueFrom {ref}")

    @property
    def ready(self) -> bool:
        return all(c.ready for c in self.containers)

    def phase(self) -> str:
        if all(c.done.is_set() for c in self.containers):
            return "Succeeded" if all(c.exit_code == 0 for c in self.containers) else "Failed"
        return "Running"

    def changed(self) -> None:
        """Report the pod's status to the API server (when it changed)."""
        with self._status_lock:
            status = {
                "phase": self.phase(), "podIP": self.ip, "hostIP": self.model.network.gateway,
                "conditions": [{"type": "Ready", "status": str(self.ready),
                                "lastTransitionTime": now_rfc3339()}],
                "containerStatuses": [{"name": c.name, "ready": c.ready, "started": c.started,
                                       "restartCount": c.restarts, "image": c.spec["image"],
                                       "imageID": "", "state": {}}
                                      for c in getattr(self, "containers", [])],
            }
            comparable = {**status, "conditions": [{"type": "Ready",
                                                    "status": str(self.ready)}]}
            if comparable == self._reported:
                return
            self._reported = comparable
            # By uid, as the kubelet's status manager does (it patches the pod it runs, with
            # the uid as a precondition): a deleted pod's last report must never land on
            # the pod that took its name.
            uid = self.obj["metadata"]["uid"]
            current = self.model.store.get("Pod", self.namespace, self.name)
            if current is None or current["metadata"]["uid"] != uid:
                return

            def report(o: Obj) -> None:
                if o["metadata"]["uid"] == uid:
                    o["status"] = status

            with contextlib.suppress(KeyError):  # already removed
                self.model.store.update("Pod", self.namespace, self.name, report)

    def terminate(self) -> None:
        """kubectl delete pod: SIGTERM, the grace period, SIGKILL; then the pod is gone."""
        self.terminating.set()
        for c in self.containers:
            c.signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        for c in self.containers:
            if c.proc is not None:
                try:
                    c.proc.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    # The container did not end on SIGTERM within the grace period.
                    self.model.events.append((time.time(), "grace-kill", self.name, c.name))
                    c.proc.kill()
                    c.proc.wait()
        for c in self.containers:
            c.done.wait(10)
        self.model.network.remove_pod(self.netns, self.ip)
        self.log.close()
        self.model.store.remove("Pod", self.namespace, self.name)


class Kubelet:
    """Runs every Pod the API server stand-in holds, on one node."""

    def __init__(self, apiserver: ApiServer, network: Network, workdir: Path,
                 images: Callable[[str], Image], keep: list[str]) -> None:
        self.apiserver = apiserver
        self.store: Store = apiserver.store
        self.network = network
        self.workdir = workdir
        (workdir / "logs").mkdir(parents=True, exist_ok=True)
        self.image = images
        self.keep = keep
        self.pods: dict[tuple[str, str], PodRunner] = {}
        self._starting: set[str] = set()  # uids handed to a _start thread, not yet in pods
        self.events: list[tuple[float, str, str, str]] = []
        self._lock = threading.Lock()
        self.store.listeners.append(self._on_event)

    def _on_event(self, event: Any) -> None:
        obj = event.obj
        if obj["kind"] != "Pod" or event.type == "DELETED":
            return
        key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
        uid = obj["metadata"]["uid"]
        with self._lock:
            runner = self.pods.get(key)
            if runner is None or runner.obj["metadata"]["uid"] != uid:
                # One start per pod: a second event before the first start registered the
                # runner would set up the same pod twice.
                if obj["metadata"].get("deletionTimestamp") or obj.get("status") or \
                        uid in self._starting:
                    return
                self._starting.add(uid)
                threading.Thread(target=self._start, args=(key, obj), daemon=True).start()
            elif obj["metadata"].get("deletionTimestamp") and not runner.terminating.is_set():
                runner.terminating.set()
                threading.Thread(target=self._stop, args=(key, runner), daemon=True).start()

    def _start(self, key: tuple[str, str], obj: Obj) -> None:
        uid = obj["metadata"]["uid"]
        try:
            runner = PodRunner(self, obj)
        except BaseException:
            with self._lock:
                self._starting.discard(uid)
            raise
        with self._lock:
            self.pods[key] = runner
            self._starting.discard(uid)
        self.events.append((time.time(), "started", key[1], ""))
        now = self.store.get("Pod", *key)
        if now is not None and now["metadata"].get("deletionTimestamp"):
            runner.terminating.set()  # deleted while it was being set up
            self._stop(key, runner)

    def _stop(self, key: tuple[str, str], runner: PodRunner) -> None:
        runner.terminate()
        with self._lock:
            if self.pods.get(key) is runner:
                del self.pods[key]
        self.events.append((time.time(), "deleted", key[1], ""))

    def runner(self, namespace: str, name: str) -> PodRunner | None:
        with self._lock:
            return self.pods.get((namespace, name))

    def shutdown(self) -> None:
        with self._lock:
            runners = list(self.pods.values())
        for r in runners:
            r.terminating.set()
            for c in r.containers:
                c.signal(signal.SIGKILL)
        for r in runners:
            for c in r.containers:
                c.done.wait(10)
            self.network.remove_pod(r.netns, r.ip)
            r.log.close()

    def logs_of(self, prefix: str) -> str:
        """The logs of every pod whose name starts with `prefix` (a Job's pods)."""
        return "".join(p.read_text(errors="replace")
                       for p in sorted((self.workdir / "logs").glob(f"{prefix}*.log")))

    def log_text(self, pod: str) -> str:
        path = self.workdir / "logs" / f"{pod}.log"
        return path.read_text(errors="replace") if path.exists() else ""


def project_paths() -> list[str]:
    """Folders a container must see where a fresh /tmp or /run would hide them."""
    return sorted({str(ROOT), sys.prefix, sys.base_prefix})
