"""A rendered pod's first container run as a container: the chart's command, env, user,
security context and volumes translated to `docker run` options, the way a kubelet would
apply them, on the host's network (the engine runs without a bridge; every port is a free
one the test put in the chart's values)."""

from __future__ import annotations

import base64
import os
import shlex
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.chart.conftest import Rendered
from tests.support.apiserver import ApiServer

NAMESPACE = "chat"
SA_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"


@dataclass
class Container:
    """One running container; `remove` is safe to call more than once."""

    docker: str
    name: str
    image: str
    argv: list[str]
    exit_code: int | None = None
    stopped_in: float | None = None

    def logs(self) -> str:
        out = subprocess.run([self.docker, "logs", self.name], capture_output=True, text=True,
                             timeout=30)
        return out.stdout + out.stderr

    def running(self) -> bool:
        out = subprocess.run([self.docker, "inspect", "-f", "{{.State.Running}}", self.name],
                             capture_output=True, text=True, timeout=30)
        return out.stdout.strip() == "true"

    def exec(self, *cmd: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.docker, "exec", self.name, *cmd], capture_output=True,
                              text=True, timeout=60)

    def wait_http(self, url: str, timeout: float) -> None:
        """Until `url` answers 200; fails early, with the logs, if the container exits."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if not self.running():
                raise AssertionError(f"{self.image} exited:\n{self.logs()[-4000:]}")
            try:
                with urllib.request.urlopen(url, timeout=5) as resp:
                    if resp.status == 200:
                        return
            except (OSError, urllib.error.URLError) as e:
                last = str(e)
            time.sleep(0.5)
        raise AssertionError(f"{url} did not answer in {timeout} s ({last}):\n"
                             f"{self.logs()[-4000:]}")

    def stop(self, grace: float) -> int:
        """SIGTERM to PID 1, SIGKILL after `grace` seconds as a kubelet does; the exit code
        (137 means the process ignored SIGTERM)."""
        started = time.monotonic()
        subprocess.run([self.docker, "stop", "-t", str(int(grace)), self.name],
                       capture_output=True, timeout=grace + 30)
        self.stopped_in = time.monotonic() - started
        out = subprocess.run([self.docker, "inspect", "-f", "{{.State.ExitCode}}", self.name],
                             capture_output=True, text=True, timeout=30)
        self.exit_code = int(out.stdout.strip())
        return self.exit_code

    def remove(self) -> None:
        subprocess.run([self.docker, "rm", "-f", self.name], capture_output=True, timeout=60)


def _env(rendered: Rendered, pod_name: str, container: dict[str, Any]) -> dict[str, str]:
    """envFrom ConfigMaps, then env (values and the downward API's fields), as a kubelet
    resolves them."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        ref = source["configMapRef"]["name"]
        env.update({k: str(v) for k, v in rendered.find("ConfigMap", ref)["data"].items()})
    fields = {"metadata.name": pod_name, "metadata.namespace": NAMESPACE,
              # the StatefulSet controller's label: any revision name
              "metadata.labels['controller-revision-hash']": f"{pod_name}-local"}
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
        else:
            path = item["valueFrom"]["fieldRef"]["fieldPath"]
            assert path in fields, f"no stand-in for {item}"
            env[item["name"]] = fields[path]
    return env


def _secret_value(rendered: Rendered, name: str, key: str) -> bytes:
    secret = rendered.find("Secret", name)
    if key in secret.get("stringData", {}):
        return str(secret["stringData"][key]).encode()
    return base64.b64decode(secret["data"][key])


def _volume(rendered: Rendered, volume: dict[str, Any], mount: dict[str, Any], work: Path,
            fs_group: int | None) -> list[str]:
    """The `docker run` options of one volume mount. emptyDir is a tmpfs (a fresh, writable
    folder like the kubelet's); a projected Secret is a folder of files with its defaultMode,
    group fsGroup; a claim is a folder owned by root that fsGroup makes writable, as the
    kubelet's ownership change does (group fsGroup, g+rwx, setgid)."""
    target = mount["mountPath"]
    ro = ",readonly" if mount.get("readOnly") else ""
    if "emptyDir" in volume:
        return ["--mount", f"type=tmpfs,destination={target},tmpfs-mode=1777"]
    host = work / volume["name"]
    host.mkdir(parents=True)
    if "projected" in volume:
        mode = int(volume["projected"].get("defaultMode", 0o644))
        for source in volume["projected"]["sources"]:
            secret = source["secret"]
            for item in secret["items"]:
                path = host / item["path"]
                path.write_bytes(_secret_value(rendered, secret["name"], item["key"]))
                os.chown(path, 0, fs_group if fs_group is not None else 0)
                path.chmod(mode)
        host.chmod(0o755)
    elif "persistentVolumeClaim" in volume:
        os.chown(host, 0, 0)
        host.chmod(0o755)
        if fs_group is not None:
            os.chown(host, 0, fs_group)
            host.chmod(0o2775)
    else:
        raise AssertionError(f"no stand-in for volume {volume}")
    return ["--mount", f"type=bind,source={host},destination={target}{ro}"]


def _service_account(pod: dict[str, Any], api: ApiServer, host: Path,
                     fs_group: int | None) -> list[str]:
    """The kube-api-access volume a kubelet mounts (token, namespace, the API server's CA;
    0644 files) and the variables that point the in-cluster config at the API server."""
    host.mkdir(parents=True)
    account = pod.get("serviceAccountName", "default")
    (host / "token").write_text(api.token_for(NAMESPACE, account))
    (host / "namespace").write_text(NAMESPACE)
    (host / "ca.crt").write_bytes(api.ca_pem or b"")
    for f in host.iterdir():
        os.chown(f, 0, fs_group if fs_group is not None else 0)
        f.chmod(0o644)
    return ["--mount", f"type=bind,source={host},destination={SA_PATH},readonly",
            "--env", f"KUBERNETES_SERVICE_HOST={api.host}",
            "--env", f"KUBERNETES_SERVICE_PORT={api.port}"]


def run_pod(docker: str, image: str, rendered: Rendered, kind: str, name_suffix: str,
            work: Path, hosts: tuple[str, ...] = (), api: ApiServer | None = None
            ) -> Container:
    """Start the first container of the rendered `kind` ending in `name_suffix` from
    `image`, as its pod spec says; `hosts` resolve to 127.0.0.1 (the pods' DNS names);
    with `api`, the pod's service account token for that API server is mounted unless the
    pod turns it off."""
    workload = rendered.find(kind, name_suffix)
    pod = workload["spec"]["template"]["spec"]
    container = pod["containers"][0]
    pod_sc: dict[str, Any] = pod.get("securityContext", {})
    sc: dict[str, Any] = {**pod_sc, **container.get("securityContext", {})}
    # StatefulSet pods are <name>-<ordinal>; one replica here.
    pod_name = workload["metadata"]["name"] + ("-0" if kind == "StatefulSet" else "-pod")
    env = _env(rendered, pod_name, container)
    name = f"chatwax-test-{name_suffix.strip('-')}-{uuid.uuid4().hex[:8]}"

    user, group = sc.get("runAsUser"), sc.get("runAsGroup")
    assert user is not None and user != 0 and sc.get("runAsNonRoot"), sc
    # No --rm: a container that exits keeps its logs for the failure message until the
    # fixture removes it (always, in its finally).
    args = [docker, "run", "-d", "--name", name, "--network", "host",
            "--user", f"{user}:{group if group is not None else user}"]
    fs_group = pod_sc.get("fsGroup")
    if fs_group is not None:
        args += ["--group-add", str(fs_group)]
    if sc.get("readOnlyRootFilesystem"):
        args.append("--read-only")
    for cap in sc.get("capabilities", {}).get("drop", []):
        args += ["--cap-drop", cap]
    for cap in sc.get("capabilities", {}).get("add", []):
        args += ["--cap-add", cap]
    if sc.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    # RuntimeDefault is the engine's own default seccomp profile: nothing to add.
    assert sc.get("seccompProfile", {"type": "RuntimeDefault"})["type"] == "RuntimeDefault"
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        args += _volume(rendered, volumes[mount["name"]], mount, work / name, fs_group)
    if api is not None and pod.get("automountServiceAccountToken", True):
        args += _service_account(pod, api, work / name / "serviceaccount", fs_group)
    for host in hosts:
        args += ["--add-host", f"{host}:127.0.0.1"]
    if "workingDir" in container:
        args += ["--workdir", container["workingDir"]]
    # Values come from this process's environment (`-e NAME`): none shows in argv.
    for key in env:
        args += ["--env", key]
    command: list[str] = container.get("command", [])
    if command:
        args += ["--entrypoint", command[0]]
    args += [image, *command[1:], *container.get("args", [])]
    started = subprocess.run(args, capture_output=True, text=True, timeout=120,
                             env={**os.environ, **env})
    container_ = Container(docker, name, image, args)
    if started.returncode != 0:
        container_.remove()  # created but not started: still there
        raise AssertionError(f"{shlex.join(args)}:\n{started.stderr}")
    return container_
