"""Generated credentials that never change once made (`chatwax kube ensure-secret`).

A chart that renders random passwords makes new ones on every render wherever it cannot
look up the old ones (`helm template`, Argo CD, Flux): the Secret would churn and clients
would lock each other out. So the chart renders no password at all: a pre-install and
pre-upgrade hook runs this command, which creates the Secret with random values, adds keys
that are missing, and never changes a value that exists.

The hook's Role allows `create` on secrets and `get` and `patch` on the one Secret.
"""

from __future__ import annotations

import base64
import logging
import secrets
from collections.abc import Iterable, Mapping
from typing import Any

from chatwax.core.errors import ConfigError
from chatwax.kube.api import describe

log = logging.getLogger(__name__)


def new_value() -> str:
    """A random password: 32 URL-safe characters (about 191 bits) starting with a letter.

    nats-server reads a `$VAR` in its config as a config value: one starting with '-' is
    taken for a number and fails to parse, so the first character is never '-', '_' or a
    digit.
    """
    while True:
        value = secrets.token_urlsafe(24)
        if value[0].isalpha():
            return value


def missing(existing: Mapping[str, object] | None, keys: Iterable[str]) -> list[str]:
    have = existing or {}
    return [k for k in dict.fromkeys(keys) if k not in have]


def ensure_secret(api_client: Any, namespace: str, name: str, keys: Iterable[str],
                  labels: Mapping[str, str] | None = None) -> list[str]:
    """Make sure Secret `name` holds every key; returns the keys that were added."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(api_client)
    keys = list(keys)
    for _ in range(5):  # another hook run may create it between our read and our write
        try:
            current = core.read_namespaced_secret(name, namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise ConfigError(f"cannot read Secret {namespace}/{name}: {describe(exc)}"
                                  ) from None
            current = None
        if current is None:
            body = client.V1Secret(
                metadata=client.V1ObjectMeta(name=name, labels=dict(labels or {})),
                type="Opaque", data={k: _b64(new_value()) for k in keys})
            try:
                core.create_namespaced_secret(namespace, body)
            except ApiException as exc:
                if exc.status == 409:
                    continue
                raise ConfigError(f"cannot create Secret {namespace}/{name}: {describe(exc)}"
                                  ) from None
            log.info("created Secret %s/%s with keys %s", namespace, name, ", ".join(keys))
            return keys
        add = missing(current.data, keys)
        if not add:
            log.info("Secret %s/%s already holds %s", namespace, name, ", ".join(keys))
            return []
        # The resourceVersion makes the patch conditional: a concurrent writer's values are
        # never overwritten (409, then read again).
        version = current.metadata.resource_version if current.metadata else None
        patch = {"metadata": {"resourceVersion": version},
                 "data": {k: _b64(new_value()) for k in add}}
        try:
            core.patch_namespaced_secret(name, namespace, patch)
        except ApiException as exc:
            if exc.status == 409:
                continue
            raise ConfigError(f"cannot update Secret {namespace}/{name}: {describe(exc)}"
                              ) from None
        log.info("added keys %s to Secret %s/%s", ", ".join(add), namespace, name)
        return add
    raise ConfigError(f"Secret {namespace}/{name} kept changing while it was being made")


def _b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()
