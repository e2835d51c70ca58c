"""A stand-in for the Kubernetes API server, for the real `kubernetes` client.

No API server can run on these machines (no kube-apiserver binary, no container runtime),
so this one holds objects in memory and speaks enough of the REST API for what chatwax's
code and the cluster model use: get, list (label and field selectors), watch (JSON lines,
the current objects first), create, merge patch with a resourceVersion precondition, and
delete, for StatefulSets, Pods, Secrets, ConfigMaps, Services, ServiceAccounts, Roles and
RoleBindings. With `rbac=True` it authorizes each request the way Kubernetes' RBAC does,
from the Roles and RoleBindings it holds and the bearer token's ServiceAccount (verbs,
resources, resourceNames, and the rule that a list or watch limited by resourceNames must
select that name with a `metadata.name` field selector).

It can serve plain HTTP (unit tests) or HTTPS with its own CA (pods' in-cluster config).
"""

from __future__ import annotations

import copy
import json
import queue
import secrets
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

Obj = dict[str, Any]
# resource (URL) -> (kind, apiVersion)
RESOURCES = {
    "statefulsets": ("StatefulSet", "apps/v1"),
    "pods": ("Pod", "v1"),
    "secrets": ("Secret", "v1"),
    "configmaps": ("ConfigMap", "v1"),
    "services": ("Service", "v1"),
    "serviceaccounts": ("ServiceAccount", "v1"),
    "roles": ("Role", "rbac.authorization.k8s.io/v1"),
    "rolebindings": ("RoleBinding", "rbac.authorization.k8s.io/v1"),
    "jobs": ("Job", "batch/v1"),
}
KIND_RESOURCE = {kind: res for res, (kind, _) in RESOURCES.items()}


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def group_of(api_version: str) -> str:
    return api_version.split("/")[0] if "/" in api_version else ""


def labels_match(selector: dict[str, str], labels: dict[str, str] | None) -> bool:
    labels = labels or {}
    return all(labels.get(k) == v for k, v in selector.items())


def parse_selector(text: str | None) -> dict[str, str]:
    """`a=b,c=d` (equality selectors only: what chatwax and kubectl-style calls use)."""
    out: dict[str, str] = {}
    for part in filter(None, (text or "").split(",")):
        key, _, value = part.partition("=")
        out[key.strip()] = value.strip().lstrip("=")
    return out


def merge(base: Any, patch: Any) -> Any:
    """JSON merge patch (RFC 7386): maps merge, null deletes, everything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(base) if isinstance(base, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge(out.get(k), v)
    return out


@dataclass
class Event:
    type: str
    obj: Obj


class Store:
    """The objects, their resourceVersions, and who is told of changes."""

    def __init__(self) -> None:
        self._objects: dict[tuple[str, str, str], Obj] = {}
        self._version = 0
        self._lock = threading.RLock()
        self._watchers: list[tuple[str, str | None, queue.Queue[Event]]] = []
        self.listeners: list[Callable[[Event], None]] = []

    def _bump(self, obj: Obj) -> Obj:
        self._version += 1
        obj.setdefault("metadata", {})["resourceVersion"] = str(self._version)
        return obj

    def _emit(self, event: Event) -> None:
        kind, ns = event.obj["kind"], event.obj["metadata"].get("namespace")
        for w_kind, w_ns, q in list(self._watchers):
            if w_kind == kind and (w_ns is None or w_ns == ns):
                q.put(Event(event.type, copy.deepcopy(event.obj)))
        for listener in list(self.listeners):
            listener(Event(event.type, copy.deepcopy(event.obj)))

    def put(self, obj: Obj) -> Obj:
        """Create or replace (what `kubectl apply` of a whole object amounts to here)."""
        with self._lock:
            obj = copy.deepcopy(obj)
            meta = obj.setdefault("metadata", {})
            key = (obj["kind"], meta.get("namespace", ""), meta["name"])
            old = self._objects.get(key)
            if old is None:
                meta.setdefault("uid", secrets.token_hex(8))
                meta.setdefault("creationTimestamp", now_rfc3339())
                meta["generation"] = 1
            else:
                meta["uid"] = old["metadata"]["uid"]
                meta["creationTimestamp"] = old["metadata"]["creationTimestamp"]
                changed = old.get("spec") != obj.get("spec")
                meta["generation"] = old["metadata"].get("generation", 1) + int(changed)
                if "status" not in obj and "status" in old:
                    obj["status"] = old["status"]
            self._objects[key] = self._bump(obj)
            self._emit(Event("MODIFIED" if old else "ADDED", obj))
            return copy.deepcopy(obj)

    def update(self, kind: str, ns: str, name: str, change: Callable[[Obj], None]) -> Obj:
        """Change an object in place under the store's lock (status updates, scales)."""
        with self._lock:
            key = (kind, ns, name)
            obj = copy.deepcopy(self._objects[key])
            before_spec = copy.deepcopy(obj.get("spec"))
            change(obj)
            if obj.get("spec") != before_spec:
                obj["metadata"]["generation"] = obj["metadata"].get("generation", 1) + 1
            self._objects[key] = self._bump(obj)
            self._emit(Event("MODIFIED", obj))
            return copy.deepcopy(obj)

    def get(self, kind: str, ns: str, name: str) -> Obj | None:
        with self._lock:
            obj = self._objects.get((kind, ns, name))
            return copy.deepcopy(obj) if obj else None

    def list(self, kind: str, ns: str | None = None, labels: dict[str, str] | None = None,
             name: str | None = None) -> list[Obj]:
        with self._lock:
            return [copy.deepcopy(o) for (k, o_ns, o_name), o in sorted(self._objects.items())
                    if k == kind and (ns is None or o_ns == ns)
                    and (name is None or o_name == name)
                    and labels_match(labels or {}, o["metadata"].get("labels"))]

    def remove(self, kind: str, ns: str, name: str) -> Obj | None:
        with self._lock:
            obj = self._objects.pop((kind, ns, name), None)
            if obj is not None:
                self._emit(Event("DELETED", self._bump(obj)))
            return obj

    def request_delete(self, kind: str, ns: str, name: str) -> Obj | None:
        """Pods terminate gracefully (the kubelet removes them); other objects go at once."""
        if kind != "Pod":
            return self.remove(kind, ns, name)
        with self._lock:
            if (kind, ns, name) not in self._objects:
                return None

            def mark(o: Obj) -> None:
                o["metadata"].setdefault("deletionTimestamp", now_rfc3339())

            return self.update(kind, ns, name, mark)

    def watch(self, kind: str, ns: str | None) -> tuple[list[Obj], queue.Queue[Event]]:
        """The current objects and a queue of what happens to them from now on."""
        q: queue.Queue[Event] = queue.Queue()
        with self._lock:
            current = self.list(kind, ns)
            self._watchers.append((kind, ns, q))
        return current, q

    def unwatch(self, q: queue.Queue[Event]) -> None:
        with self._lock:
            self._watchers = [w for w in self._watchers if w[2] is not q]

    # -- RBAC --------------------------------------------------------------------------

    def allowed(self, subject: tuple[str, str] | None, verb: str, group: str, resource: str,
                ns: str, name: str | None, field_name: str | None) -> bool:
        """Kubernetes' RBAC for a ServiceAccount (namespace, name): Roles via RoleBindings."""
        if subject is None:
            return False
        sa_ns, sa_name = subject
        for binding in self.list("RoleBinding", ns):
            if not any(s.get("kind") == "ServiceAccount" and s.get("name") == sa_name
                       and s.get("namespace", ns) == sa_ns for s in binding.get("subjects", [])):
                continue
            ref = binding["roleRef"]
            role = self.get("Role", ns, ref["name"]) if ref["kind"] == "Role" else None
            for rule in (role or {}).get("rules", []):
                if not (group in rule.get("apiGroups", []) or "*" in rule.get("apiGroups", [])):
                    continue
                if not (resource in rule.get("resources", []) or "*" in rule["resources"]):
                    continue
                if not (verb in rule.get("verbs", []) or "*" in rule["verbs"]):
                    continue
                names = rule.get("resourceNames")
                if not names:
                    return True
                if verb in ("list", "watch"):
                    if field_name in names:
                        return True
                elif verb != "create" and name in names:
                    return True
        return False


class ApiServer:
    """The HTTP side. `tokens` maps bearer tokens to ServiceAccounts (namespace, name)."""

    def __init__(self, store: Store | None = None, *, host: str = "127.0.0.1", port: int = 0,
                 rbac: bool = False, tls_dir: Path | None = None) -> None:
        self.store = store or Store()
        self.rbac = rbac
        self.tokens: dict[str, tuple[str, str]] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.watch_plans: list[int | str] = []
        """For the next watches, in order: an HTTP status to fail with, or "close" to end
        the watch right after the current objects (as API servers end watches now and
        then). With none left, a watch stays open until its timeout or shutdown."""
        self.closing = threading.Event()
        self.ca_pem: bytes | None = None
        outer = self

        class Handler(BaseHTTPRequestHandler):
            # Watches stream in chunks, as a real API server's do: a client reads each
            # event as it comes (an unchunked body would reach it only at the end).
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                outer._serve(self, "GET")

            def do_POST(self) -> None:
                outer._serve(self, "POST")

            def do_PATCH(self) -> None:
                outer._serve(self, "PATCH")

            def do_DELETE(self) -> None:
                outer._serve(self, "DELETE")

            def do_PUT(self) -> None:
                outer._serve(self, "PUT")

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.scheme = "http"
        if tls_dir is not None:
            import trustme

            ca = trustme.CA()
            cert = ca.issue_cert(host)
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            cert.configure_cert(ctx)
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
            self.ca_pem = ca.cert_pem.bytes()
            self.scheme = "https"
        self.host = host
        self.port = self.server.server_port
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def token_for(self, namespace: str, account: str) -> str:
        token = f"sa-{secrets.token_hex(16)}"
        self.tokens[token] = (namespace, account)
        return token

    def close(self) -> None:
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()

    def client(self, token: str | None = None) -> Any:
        """A `kubernetes.client.ApiClient` talking to this server (plain HTTP only)."""
        from kubernetes import client

        cfg = client.Configuration(host=self.url)
        if token:
            cfg.api_key = {"authorization": f"Bearer {token}"}
        return client.ApiClient(cfg)

    # -- request handling -----------------------------------------------------------------

    def _serve(self, h: BaseHTTPRequestHandler, method: str) -> None:
        url = urllib.parse.urlsplit(h.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        self.requests.append((method, url.path, query))
        parts = [p for p in url.path.split("/") if p]
        # /api/v1/namespaces/NS/RES[/NAME] or /apis/GROUP/VERSION/namespaces/NS/RES[/NAME]
        try:
            i = parts.index("namespaces")
            ns, resource = parts[i + 1], parts[i + 2]
            name = parts[i + 3] if len(parts) > i + 3 else None
            kind, api_version = RESOURCES[resource]
        except (ValueError, IndexError, KeyError):
            self._status(h, 404, "NotFound", f"no such path {url.path}")
            return
        field = parse_selector(query.get("fieldSelector")).get("metadata.name")
        watching = query.get("watch") in ("true", "1")
        verb = {"GET": "watch" if watching else ("get" if name else "list"), "POST": "create",
                "PATCH": "patch", "PUT": "update", "DELETE": "delete"}[method]
        if self.rbac:
            scheme, _, token = h.headers.get("Authorization", "").partition(" ")
            subject = self.tokens.get(token.strip()) if scheme.lower() == "bearer" else None
            if not self.store.allowed(subject, verb, group_of(api_version), resource, ns, name,
                                      field):
                who = f"system:serviceaccount:{subject[0]}:{subject[1]}" if subject else "anon"
                self._status(h, 403, "Forbidden",
                             f'{resource} "{name or ""}" is forbidden: User "{who}" cannot '
                             f'{verb} resource "{resource}" in namespace "{ns}"')
                return
        body = None
        if method in ("POST", "PATCH", "PUT"):
            length = int(h.headers.get("Content-Length") or 0)
            body = json.loads(h.rfile.read(length) or b"{}")
        if verb == "watch":
            self._watch(h, kind, ns, field, float(query.get("timeoutSeconds", 300)))
        elif verb == "list":
            items = self.store.list(kind, ns, parse_selector(query.get("labelSelector")), field)
            self._send(h, 200, {"kind": f"{kind}List", "apiVersion": api_version,
                                "metadata": {"resourceVersion": str(self.store._version)},
                                "items": items})
        elif verb == "get":
            assert name is not None
            self._found(h, self.store.get(kind, ns, name), resource, name)
        elif verb == "delete":
            assert name is not None
            self._found(h, self.store.request_delete(kind, ns, name), resource, name)
        elif verb == "create":
            assert body is not None
            body.setdefault("kind", kind)
            body.setdefault("apiVersion", api_version)
            body["metadata"]["namespace"] = ns
            if self.store.get(kind, ns, body["metadata"]["name"]) is not None:
                self._status(h, 409, "AlreadyExists",
                             f'{resource} "{body["metadata"]["name"]}" already exists')
                return
            self._send(h, 201, self.store.put(body))
        else:  # patch / update
            assert name is not None and body is not None
            current = self.store.get(kind, ns, name)
            if current is None:
                self._found(h, None, resource, name)
                return
            want = (body.get("metadata") or {}).get("resourceVersion")
            if want and want != current["metadata"]["resourceVersion"]:
                self._status(h, 409, "Conflict", f'{resource} "{name}": the object has been '
                             "modified; please apply your changes to the latest version")
                return
            patch = body

            def apply(o: Obj) -> None:
                new = merge(o, patch) if method == "PATCH" else patch
                o.clear()
                o.update(new)
                o["metadata"] = merge(current["metadata"], {
                    k: v for k, v in (new.get("metadata") or {}).items()
                    if k not in ("resourceVersion", "uid", "creationTimestamp")})

            self._send(h, 200, self.store.update(kind, ns, name, apply))

    def _watch(self, h: BaseHTTPRequestHandler, kind: str, ns: str, name: str | None,
               timeout_s: float) -> None:
        plan = self.watch_plans.pop(0) if self.watch_plans else None
        if isinstance(plan, int):
            self._status(h, plan, "Failed", f"watch failed with {plan}")
            return
        current, q = self.store.watch(kind, ns)
        try:
            h.send_response(200)
            h.send_header("Content-Type", "application/json")
            h.send_header("Transfer-Encoding", "chunked")
            h.end_headers()
            for obj in current:
                if name is None or obj["metadata"]["name"] == name:
                    self._line(h, "ADDED", obj)
            deadline = time.monotonic() + timeout_s
            while plan != "close" and not self.closing.is_set() and time.monotonic() < deadline:
                try:
                    event = q.get(timeout=0.2)
                except queue.Empty:
                    continue
                if name is None or event.obj["metadata"]["name"] == name:
                    self._line(h, event.type, event.obj)
            h.wfile.write(b"0\r\n\r\n")
            h.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass
        finally:
            self.store.unwatch(q)

    @staticmethod
    def _line(h: BaseHTTPRequestHandler, kind: str, obj: Obj) -> None:
        data = json.dumps({"type": kind, "object": obj}).encode() + b"\n"
        h.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        h.wfile.flush()

    def _found(self, h: BaseHTTPRequestHandler, obj: Obj | None, resource: str,
               name: str) -> None:
        if obj is None:
            self._status(h, 404, "NotFound", f'{resource} "{name}" not found')
        else:
            self._send(h, 200, obj)

    def _status(self, h: BaseHTTPRequestHandler, code: int, reason: str, message: str) -> None:
        self._send(h, code, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                             "reason": reason, "message": message, "code": code})

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, code: int, obj: Obj) -> None:
        body = json.dumps(obj).encode()
        h.send_response(code)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def watch_requests(self) -> list[dict[str, str]]:
        return [q for m, _, q in self.requests if m == "GET" and q.get("watch") == "true"]
